// SPDX-License-Identifier: Apache-2.0
// Golden digests of the named optimizers. Each case runs a fixed job (3
// in-process ranks, 12 steps) and digests, on every rank, every update
// (indices, value bits, flags), the parameters, the byte and message counts
// and the bytes of `save` (checkpoint header with its configuration
// fingerprint, and the state). The expected values were recorded with main at
// 4b3fd31, before the optimizer layer became policy-based: users depend on
// these names giving the same bits, byte counts and checkpoints.
//
// A changed digest means a named optimizer's results changed. To see every
// case's digest, run `test_golden` with SKETCHSGD_GOLDEN_PRINT=1.

#include <catch2/catch.hpp>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../transport/conformance.hpp"
#include "sketchsgd/sketchsgd.hpp"
#include "test_support.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;

namespace {

constexpr int world = 3;
constexpr std::uint64_t golden_steps = 12;
constexpr std::size_t dimension = 2000;
const std::vector<dense_range> dense{{0, 10}, {500, 40}};

class digester {
 public:
  template <class T>
  void add(T v) {
    std::uint64_t bits = 0;
    if constexpr (std::is_floating_point_v<T>) {
      bits = sizeof(T) == 4 ? std::bit_cast<std::uint32_t>(static_cast<float>(v))
                            : std::bit_cast<std::uint64_t>(static_cast<double>(v));
    } else {
      bits = static_cast<std::uint64_t>(v);
    }
    h_ = mix64(h_ ^ mix64(bits + 0x9E3779B97F4A7C15ULL * ++n_));
  }
  void add_bytes(const std::string& s) {
    add(s.size());
    for (const char c : s) add(static_cast<unsigned char>(c));
  }
  [[nodiscard]] std::uint64_t value() const { return h_; }

 private:
  std::uint64_t h_ = 0x676F6C64656EULL;
  std::uint64_t n_ = 0;
};

/// Rank r's gradient at step s for parameters x: a planted quadratic whose
/// workers disagree (heterogeneous scale and zero-sum noise), with a few
/// large spikes so the selections are not trivial. Integers: the same shape
/// rounded.
template <class Value>
void gradient(int rank, std::uint64_t step, std::span<const Value> x, std::span<Value> g) {
  splitmix64 rng(mix64(step * 131 + static_cast<std::uint64_t>(rank)));
  const double scale = rank % 2 == 0 ? 1.3 : 0.7;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double target = (i % 97 == 0) ? 3.0 : 0.0;
    const double noise = 0.2 * (2.0 * test::uniform01(rng) - 1.0);
    const double spike = (rng.next_below(50) == 0) ? 2.0 : 0.0;
    const double v = scale * (static_cast<double>(x[i]) - target) / world + noise + spike;
    if constexpr (std::is_integral_v<Value>) {
      g[i] = static_cast<Value>(std::lround(v * 16.0));
    } else {
      g[i] = static_cast<Value>(v);
    }
  }
}

/// Runs the job; `nan_step` puts a NaN into rank 1's gradient at that step.
template <class Value, class Make>
std::uint64_t golden_run(Make make, std::uint64_t nan_step = std::numeric_limits<std::uint64_t>::max()) {
  inproc_world w(world, {.timeout = 30s});
  std::vector<std::uint64_t> digests(world);
  test::run_threads(world, [&](int r) {
    auto t = w.transport(r);
    communicator comm(t);
    auto opt = make(comm);
    std::vector<Value> x(dimension, Value{});
    std::vector<Value> g(dimension);
    digester dig;
    for (std::uint64_t s = 0; s < golden_steps; ++s) {
      gradient<Value>(r, s, x, g);
      if constexpr (std::is_floating_point_v<Value>) {
        if (s == nan_step && r == 1) g[7] = std::numeric_limits<Value>::quiet_NaN();
      }
      const auto& u = opt.step(std::span<const Value>(g));
      dig.add(u.dense);
      dig.add(u.skipped);
      dig.add(u.indices.size());
      for (const auto i : u.indices) dig.add(i);
      for (const auto v : u.values) dig.add(v);
      u.apply(std::span<Value>(x));
      const auto& st = opt.stats();
      dig.add(st.last_step.bytes_sent);
      dig.add(st.last_step.bytes_received);
      dig.add(st.last_step.messages_sent);
      dig.add(st.last_step.messages_received);
      dig.add(st.last_step.collectives);
    }
    for (const auto v : x) dig.add(v);
    const auto& st = opt.stats();
    dig.add(st.total.bytes_sent);
    dig.add(st.total.bytes_received);
    dig.add(st.steps);
    dig.add(st.compression());
    std::ostringstream saved;
    opt.save(saved);
    dig.add_bytes(saved.str());
    digests[static_cast<std::size_t>(r)] = dig.value();
  });
  digester all;
  for (const auto v : digests) all.add(v);
  return all.value();
}

struct golden_case {
  const char* name;
  std::function<std::uint64_t()> run;
  std::uint64_t expected;
};

using comm_t = communicator<inproc_transport>;
const sketch_config golden_sketch{.rows = 3, .cols = 400, .seed = 11};

sketched_sgd_options<float> sketched_base() {
  return {.dimension = dimension,
          .sketch = golden_sketch,
          .k = 50,
          .candidates_factor = 3,
          .learning_rate = 0.3F,
          .momentum = 0.5F,
          .average = true,
          .dense = dense};
}
fetch_sgd_options<float> fetch_base() {
  return {.dimension = dimension,
          .sketch = golden_sketch,
          .k = 50,
          .learning_rate = 0.3F,
          .momentum = 0.9F,
          .average = true,
          .dense = dense};
}
topk_sgd_options<float> topk_base() {
  return {.dimension = dimension, .k = 50, .learning_rate = 0.3F, .momentum = 0.5F, .average = true, .dense = dense};
}

template <template <class...> class Opt, class Value = float, class Hash = multiply_shift, class Options>
std::function<std::uint64_t()> run_sketch_family(Options o, std::uint64_t nan_step = ~0ULL) {
  return [o, nan_step] {
    return golden_run<Value>([&](comm_t& c) { return Opt<Value, inproc_transport, Hash>(c, o); }, nan_step);
  };
}
template <template <class...> class Opt, class Value = float, class Options>
std::function<std::uint64_t()> run_plain(Options o, std::uint64_t nan_step = ~0ULL) {
  return [o, nan_step] {
    return golden_run<Value>([&](comm_t& c) { return Opt<Value, inproc_transport>(c, o); }, nan_step);
  };
}

std::vector<golden_case> cases() {
  std::vector<golden_case> out;
  auto add = [&](const char* name, std::function<std::uint64_t()> run, std::uint64_t expected) {
    out.push_back({name, std::move(run), expected});
  };
  add("dense_sgd",
      run_plain<dense_sgd>(
          dense_sgd_options<float>{.dimension = dimension, .learning_rate = 0.3F, .momentum = 0.5F, .average = true}),
      0x6DE2D7E20FBF6F19ULL);
  add("dense_sgd sum, no momentum",
      run_plain<dense_sgd>(dense_sgd_options<float>{.dimension = dimension, .learning_rate = 0.01F}),
      0xC572F453C1D37207ULL);
  add("true_topk_sgd", run_plain<true_topk_sgd>(topk_base()), 0x12D95D487C87F4BDULL);
  add("local_topk_sgd", run_plain<local_topk_sgd>(topk_base()), 0x9CADEEE751C40BADULL);
  add("gtopk_sgd", run_plain<gtopk_sgd>(topk_base()), 0xA41FCF47C6B7187EULL);
  {
    auto o = topk_base();
    o.dense.clear();
    o.error_feedback = false;
    add("local_topk_sgd no ranges, no error feedback", run_plain<local_topk_sgd>(o), 0x1680AAC766784AFBULL);
    o.error_feedback = true;
    o.average = false;
    add("gtopk_sgd no ranges, sum", run_plain<gtopk_sgd>(o), 0x89E45EA566A33627ULL);
  }
  add("sketched_sgd allreduce", run_sketch_family<sketched_sgd>(sketched_base()), 0xA138B94EEB73CC58ULL);
  {
    auto o = sketched_base();
    o.topology = topology::root;
    o.root = 1;
    add("sketched_sgd root", run_sketch_family<sketched_sgd>(o), 0xC52097F5248ECA28ULL);
    o.candidates_factor = 0;
    add("sketched_sgd root P=0", run_sketch_family<sketched_sgd>(o), 0x79C01C88D7B33ABCULL);
  }
  {
    auto o = sketched_base();
    o.candidates_factor = 0;
    add("sketched_sgd P=0", run_sketch_family<sketched_sgd>(o), 0xD7BFA5547F551FEDULL);
    o = sketched_base();
    o.error_feedback = false;
    o.dense.clear();
    add("sketched_sgd no error feedback, no ranges", run_sketch_family<sketched_sgd>(o), 0xFFE9E54CAED22F3CULL);
    o = sketched_base();
    o.overlap_rows = true;
    o.exec = cpu_execution{2};
    add("sketched_sgd overlap_rows", run_sketch_family<sketched_sgd>(o), 0x6C495D93E09EB15FULL);
    o = sketched_base();
    add("sketched_sgd poly4", run_sketch_family<sketched_sgd, float, poly4_hash>(o), 0xA766A36D26447B8AULL);
    o.nonfinite = nonfinite_policy::skip_step;
    add("sketched_sgd NaN skipped at step 5", run_sketch_family<sketched_sgd>(o, 5), 0x21BC90DCC6829CD1ULL);
  }
  {
    auto o = sketched_base();
    add("global_sketch_sgd P=3", run_sketch_family<global_sketch_sgd>(o), 0x889F02B944F3FD9CULL);
    o.candidates_factor = 0;
    o.topology = topology::root;  // ignored: gs-SGD always allreduces
    add("global_sketch_sgd P=0", run_sketch_family<global_sketch_sgd>(o), 0x043BFC5462DB6D13ULL);
  }
  add("fetch_sgd allreduce", run_sketch_family<fetch_sgd>(fetch_base()), 0x9E09E2C6C41EDD6BULL);
  {
    auto o = fetch_base();
    o.topology = topology::root;
    o.root = 2;
    o.reset = fetch_reset::subtract;
    add("fetch_sgd root, subtract", run_sketch_family<fetch_sgd>(o), 0xA4F9B8C85DB5A497ULL);
    o = fetch_base();
    o.dense.clear();
    o.average = false;
    o.nonfinite = nonfinite_policy::skip_step;
    add("fetch_sgd no ranges, sum, NaN skipped at step 3", run_sketch_family<fetch_sgd>(o, 3), 0x908ECC34D55D9546ULL);
  }
  {
    sketched_sgd_options<std::int32_t> o{
        .dimension = dimension, .sketch = golden_sketch, .k = 40, .candidates_factor = 2, .dense = dense};
    add("sketched_sgd int32", run_sketch_family<sketched_sgd, std::int32_t>(o), 0x79652C55AF7278A5ULL);
    fetch_sgd_options<double> f{
        .dimension = dimension, .sketch = golden_sketch, .k = 40, .learning_rate = 0.1, .momentum = 0.9};
    add("fetch_sgd double", run_sketch_family<fetch_sgd, double>(f), 0x4313D3771E5CADE4ULL);
    add("dense_sgd int64",
        run_plain<dense_sgd, std::int64_t>(dense_sgd_options<std::int64_t>{.dimension = dimension, .momentum = 1}),
        0x598339C38265AA74ULL);
  }
  return out;
}

}  // namespace

/// Rank r's state after `steps` steps of the job, as `save` writes it; with
/// `load_from`, each rank first loads the state in that file pattern (%d =
/// rank) and the run continues from there for `steps` more steps.
template <class Value, class Make>
std::vector<std::string> states_after(Make make, std::uint64_t first, std::uint64_t count, const std::string& load_from,
                                      std::vector<std::vector<Value>>* params) {
  inproc_world w(world, {.timeout = 30s});
  std::vector<std::string> states(world);
  test::run_threads(world, [&](int r) {
    auto t = w.transport(r);
    communicator comm(t);
    auto opt = make(comm);
    std::vector<Value> x(dimension, Value{});
    if (!load_from.empty()) {
      char path[512];
      std::snprintf(path, sizeof path, load_from.c_str(), r);
      std::ifstream in(path, std::ios::binary);
      if (!in) throw std::runtime_error(std::string("cannot open ") + path);
      opt.load(in);
      x = (*params)[static_cast<std::size_t>(r)];
    }
    std::vector<Value> g(dimension);
    for (std::uint64_t s = first; s < first + count; ++s) {
      gradient<Value>(r, s, x, g);
      opt.step(std::span<const Value>(g)).apply(std::span<Value>(x));
    }
    std::ostringstream saved;
    opt.save(saved);
    states[static_cast<std::size_t>(r)] = saved.str();
    if (params != nullptr && load_from.empty()) (*params)[static_cast<std::size_t>(r)] = x;
  });
  return states;
}

/// Checkpoints of rank 0..2 after 12 steps, written by main at 4b3fd31
/// (tests/data/optim_state_v1_<name>_rank<r>.bin): each loads into today's
/// optimizer, saves back the same bytes, and continues exactly as the
/// uninterrupted run.
template <class Make>
void check_old_checkpoint(const std::string& name, Make make) {
  const std::string pattern = std::string(SKETCHSGD_TEST_DATA_DIR) + "/optim_state_v1_" + name + "_rank%d.bin";
  std::vector<std::vector<float>> params(world);
  const auto at12 = states_after<float>(make, 0, golden_steps, "", &params);
  if (std::getenv("SKETCHSGD_GOLDEN_WRITE") != nullptr) {
    for (int r = 0; r < world; ++r) {
      char path[512];
      std::snprintf(path, sizeof path, pattern.c_str(), r);
      std::ofstream(path, std::ios::binary) << at12[static_cast<std::size_t>(r)];
    }
    return;
  }
  for (int r = 0; r < world; ++r) {
    char path[512];
    std::snprintf(path, sizeof path, pattern.c_str(), r);
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CAPTURE(name, r);
    CHECK(file == at12[static_cast<std::size_t>(r)]);  // today's run writes the old bytes
  }
  const auto resumed = states_after<float>(make, golden_steps, 3, pattern, &params);
  const auto straight = states_after<float>(make, 0, golden_steps + 3, "", nullptr);
  CHECK(resumed == straight);
}

TEST_CASE("checkpoints written before the policy layer load and continue bit-identically",
          "[optim][golden][checkpoint]") {
  check_old_checkpoint("sketched_sgd",
                       [](comm_t& c) { return sketched_sgd<float, inproc_transport>(c, sketched_base()); });
  check_old_checkpoint("fetch_sgd", [](comm_t& c) { return fetch_sgd<float, inproc_transport>(c, fetch_base()); });
  check_old_checkpoint("dense_sgd", [](comm_t& c) {
    return dense_sgd<float, inproc_transport>(
        c, {.dimension = dimension, .learning_rate = 0.3F, .momentum = 0.5F, .average = true});
  });
  check_old_checkpoint("gtopk_sgd", [](comm_t& c) { return gtopk_sgd<float, inproc_transport>(c, topk_base()); });
}

TEST_CASE("the named optimizers give the bits, bytes and checkpoints recorded before the policy layer",
          "[optim][golden]") {
  const bool print = std::getenv("SKETCHSGD_GOLDEN_PRINT") != nullptr;
  for (const auto& c : cases()) {
    const std::uint64_t got = c.run();
    if (print) std::printf("  add(\"%s\", ..., 0x%016llXULL);\n", c.name, static_cast<unsigned long long>(got));
    CAPTURE(c.name);
    if (!print) CHECK(got == c.expected);
  }
}
