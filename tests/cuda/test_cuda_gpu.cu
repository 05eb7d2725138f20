// SPDX-License-Identifier: Apache-2.0
// The CUDA device against the CPU reference, on a GPU (skipped without one,
// see gpu_main.cpp): bit-identical integer tables and estimates; ordered
// float accumulation bit-identical to the CPU; float estimates from the same
// table identical; top-k the same set as the CPU (ties, NaN, -0, integers);
// device allreduce equal to the host one; every aggregation policy's steps
// on the device equal to its CPU steps, also inside one job with CPU ranks.

#include <sketchsgd/cuda/cuda.cuh>

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../test_support.hpp"
#include "sketchsgd/sketchsgd.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;

namespace {

template <class T>
device_buffer<T> upload(const std::vector<T>& h) {
  device_buffer<T> d(h.size());
  if (!h.empty()) {
    detail::cuda_check(cudaMemcpy(d.data(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "test upload");
  }
  return d;
}

template <class T>
std::vector<T> download(device_span<const T> d) {
  std::vector<T> h(d.size());
  if (!h.empty()) {
    detail::cuda_check(cudaMemcpy(h.data(), d.data(), d.size_bytes(), cudaMemcpyDeviceToHost), "test download");
  }
  return h;
}

template <class T>
device_span<const T> cspan(const device_buffer<T>& b) {
  return b.span();
}

template <class Sketch>
auto table_of(const Sketch& s) {
  using value = typename Sketch::value_type;
  if constexpr (std::is_same_v<typename Sketch::device_type, cuda_t>) {
    return download(s.table());
  } else {
    return std::vector<value>(s.table().begin(), s.table().end());
  }
}

/// Bitwise equality (NaN-safe, distinguishes -0 from +0).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

std::vector<std::uint64_t> random_keys(std::size_t n, std::uint64_t bound, std::uint64_t seed) {
  splitmix64 rng(seed);
  std::vector<std::uint64_t> k(n);
  for (auto& x : k) x = rng.next_below(bound);
  return k;
}

/// Every operation of the device sketch against the CPU sketch, integer cells.
template <class Value, class Hash>
void check_integer_sketch(const sketch_config& cfg) {
  INFO("rows " << cfg.rows << ", cols " << cfg.cols);
  constexpr std::size_t n = 100'003;
  const auto x = test::integer_vector<Value>(n, 1000, 1);
  const auto dx = upload(x);
  count_sketch<Value, Hash> cpu(cfg);
  count_sketch<Value, Hash, cuda_t> gpu(cfg);

  cpu.accumulate(x, 7);
  gpu.accumulate(cspan(dx), 7);
  REQUIRE(gpu.to_cpu() == cpu);

  // Sparse, with repeated and large keys.
  const auto keys = random_keys(5000, std::uint64_t{1} << 40U, 2);
  std::vector<std::uint64_t> idx(keys);
  idx.insert(idx.end(), keys.begin(), keys.begin() + 100);
  const auto vals = test::integer_vector<Value>(idx.size(), 500, 3);
  const auto didx = upload(idx);
  const auto dvals = upload(vals);
  cpu.accumulate(std::span<const std::uint64_t>(idx), std::span<const Value>(vals));
  gpu.accumulate(cspan(didx), cspan(dvals));
  REQUIRE(gpu.to_cpu() == cpu);

  // Ordered accumulation of integers is the same table too.
  cuda_workspace ws;
  count_sketch<Value, Hash> cpu2(cfg);
  count_sketch<Value, Hash, cuda_t> gpu2(cfg);
  cpu2.accumulate(x, 0);
  gpu2.accumulate_ordered(cspan(dx), 0, ws);
  cpu2.accumulate(std::span<const std::uint64_t>(idx), std::span<const Value>(vals));
  gpu2.accumulate_ordered(cspan(didx), cspan(dvals), ws);
  REQUIRE(gpu2.to_cpu() == cpu2);

  // Estimates: dense with an offset, and point queries.
  std::vector<Value> est(n + 50);
  cpu.estimate_all(std::span<Value>(est), 3);
  device_buffer<Value> dest(est.size());
  gpu.estimate_all(dest.span(), 3);
  REQUIRE(download(cspan(dest)) == est);
  std::vector<Value> point(keys.size());
  for (std::size_t j = 0; j < keys.size(); ++j) point[j] = cpu.estimate(keys[j]);
  const auto dkeys = upload(keys);
  device_buffer<Value> dpoint(keys.size());
  gpu.estimate(cspan(dkeys), dpoint.span());
  REQUIRE(download(cspan(dpoint)) == point);

  REQUIRE(gpu.l2_estimate(ws) == cpu.l2_estimate());  // sums of squares below 2^53: exact both ways

  // Linear operations.
  cpu += cpu2;
  gpu += gpu2;
  REQUIRE(gpu.to_cpu() == cpu);
  cpu -= cpu2;
  cpu -= cpu2;
  gpu -= gpu2;
  gpu.subtract(gpu2);
  REQUIRE(gpu.to_cpu() == cpu);
  cpu.scale(Value{-3});
  gpu.scale(Value{-3});
  REQUIRE(gpu.to_cpu() == cpu);
  cpu.zero_buckets_of(std::span<const std::uint64_t>(keys).first(1000));
  gpu.zero_buckets_of(cspan(dkeys).first(1000));
  REQUIRE(gpu.to_cpu() == cpu);

  // Copies, and a device sketch built from a CPU one.
  const count_sketch<Value, Hash, cuda_t> copy(gpu);
  REQUIRE(copy.to_cpu() == cpu);
  const count_sketch<Value, Hash, cuda_t> from_cpu(cpu2);
  REQUIRE(from_cpu.to_cpu() == cpu2);
  gpu.zero();
  REQUIRE(gpu.to_cpu() == count_sketch<Value, Hash>(cfg));

  count_sketch<Value, Hash, cuda_t> other(sketch_config{cfg.rows, cfg.cols, cfg.seed + 1});
  REQUIRE_THROWS_AS(gpu.merge(other), config_mismatch_error);
}

/// Runs `body(rank, transport)` on every rank of an in-process world in
/// threads; Catch2 assertions stay on the main thread, so bodies only record.
template <class Body>
void on_ranks(int w, Body body) {
  inproc_world world(w, {.timeout = 120s});
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(w));
  std::vector<std::thread> threads;
  for (int r = 0; r < w; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto t = world.transport(r);
        body(r, t);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
        world.fail(r, "the test body threw");
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace

TEST_CASE("device sketch: integer tables, estimates and operations equal the CPU's bit for bit", "[cuda][sketch]") {
  for (const std::uint64_t rows : std::initializer_list<std::uint64_t>{1, 3, 4, 5, 7}) {
    check_integer_sketch<std::int32_t, multiply_shift>({.rows = rows, .cols = 1000, .seed = 42});
  }
  check_integer_sketch<std::int64_t, multiply_shift>({.rows = 5, .cols = 777, .seed = 7});
  check_integer_sketch<std::int32_t, poly4_hash>({.rows = 5, .cols = 1000, .seed = 9});
  check_integer_sketch<std::int64_t, poly4_hash>({.rows = 6, .cols = 333, .seed = 10});
}

TEST_CASE("device sketch: ordered float accumulation is the CPU sketch bit for bit", "[cuda][sketch]") {
  const sketch_config cfg{.rows = 5, .cols = 500'000, .seed = 3};
  // More than one chunk of the ordered path (4 Mi coordinates).
  constexpr std::size_t n = 5'000'000;
  const auto x = test::normal_vector<float>(n, 5);
  const auto dx = upload(x);
  count_sketch<float> cpu(cfg);
  count_sketch<float, multiply_shift, cuda_t> gpu(cfg);
  cuda_workspace ws;
  cpu.accumulate(x, 11);
  gpu.accumulate_ordered(cspan(dx), 11, ws);
  cpu.accumulate(x, 12);  // onto a non-zero table
  gpu.accumulate_ordered(cspan(dx), 12, ws);
  REQUIRE(same_bits(table_of(gpu), table_of(cpu)));

  const auto keys = random_keys(200'000, 1000, 6);  // many repeats per cell
  const auto vals = test::normal_vector<float>(keys.size(), 7);
  const auto dkeys = upload(keys);
  const auto dvals = upload(vals);
  cpu.accumulate(std::span<const std::uint64_t>(keys), std::span<const float>(vals));
  gpu.accumulate_ordered(cspan(dkeys), cspan(dvals), ws);
  REQUIRE(same_bits(table_of(gpu), table_of(cpu)));

  // On a stream of the caller's.
  cudaStream_t stream = nullptr;
  detail::cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  count_sketch<float, multiply_shift, cuda_t> async(cfg);
  async.accumulate_ordered(cspan(dx), 11, ws, stream);
  async.accumulate_ordered(cspan(dx), 12, ws, stream);
  async.accumulate_ordered(cspan(dkeys), cspan(dvals), ws, stream);
  detail::cuda_check(cudaStreamSynchronize(stream), "sync");
  detail::cuda_check(cudaStreamDestroy(stream), "stream");
  REQUIRE(same_bits(table_of(async), table_of(cpu)));
}

TEST_CASE("device sketch: atomic float accumulation is the CPU sketch up to rounding", "[cuda][sketch]") {
  const sketch_config cfg{.rows = 5, .cols = 10'000, .seed = 4};
  constexpr std::size_t n = 1'000'000;
  const auto x = test::normal_vector<float>(n, 8);
  const auto dx = upload(x);
  count_sketch<float> cpu(cfg);
  count_sketch<float, multiply_shift, cuda_t> gpu(cfg);
  cpu.accumulate(x);
  gpu.accumulate(cspan(dx));
  const auto back = gpu.to_cpu();
  // About 100 terms of |x| < 6 per cell: any summation order is within 1e-3.
  double worst = 0;
  for (std::size_t i = 0; i < cpu.table().size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(back.table()[i]) - cpu.table()[i]));
  }
  REQUIRE(worst < 1e-3);
}

TEST_CASE("device sketch: float estimates and l2 from the same table equal the CPU's", "[cuda][sketch]") {
  for (const std::uint64_t rows : std::initializer_list<std::uint64_t>{1, 3, 4, 5, 8}) {
    const sketch_config cfg{.rows = rows, .cols = 20'000, .seed = 12};
    count_sketch<float> cpu(cfg);
    cpu.accumulate(test::normal_vector<float>(300'000, 13));
    const count_sketch<float, multiply_shift, cuda_t> gpu(cpu);
    std::vector<float> est(300'000);
    cpu.estimate_all(std::span<float>(est));
    device_buffer<float> dest(est.size());
    gpu.estimate_all(dest.span());
    INFO("rows " << rows);
    REQUIRE(same_bits(download(cspan(dest)), est));
    // Sums of squares of floats round differently in a tree: close, not equal.
    REQUIRE(gpu.l2_estimate() == Approx(cpu.l2_estimate()).epsilon(1e-9));
    // In the CPU's order (what thresholding recovery uses): equal.
    cuda_workspace ws;
    REQUIRE(gpu.l2_estimate_in_order(ws) == cpu.l2_estimate());
  }
}

namespace {

template <class Value>
void check_top_k(const std::vector<Value>& x, std::size_t k, cuda_workspace& ws) {
  INFO("n " << x.size() << ", k " << k);
  const auto dx = upload(x);
  const auto want = top_k(x, k);
  const auto got = top_k(cspan(dx), k, ws);
  REQUIRE(got.indices == want.indices);
  REQUIRE(same_bits(got.values, want.values));
}

}  // namespace

TEST_CASE("device top-k: the CPU's set, ties to the lower index, NaN never", "[cuda][topk]") {
  cuda_workspace ws;
  SECTION("normal floats, several tiles and every digit level") {
    const auto x = test::normal_vector<float>(3'000'001, 21);
    for (const std::size_t k : std::initializer_list<std::size_t>{1, 100, 100'000, 1'000'000}) check_top_k(x, k, ws);
  }
  SECTION("heavy ties: quarter steps") {
    auto x = test::normal_vector<float>(1'000'000, 22);
    for (float& v : x) v = std::round(v * 4) / 4;
    for (const std::size_t k : std::initializer_list<std::size_t>{1, 1000, 77'777, 999'999, 1'000'000, 1'000'005})
      check_top_k(x, k, ws);
  }
  SECTION("NaN, infinities and signed zeros") {
    auto x = test::normal_vector<float>(200'000, 23);
    splitmix64 rng(24);
    for (float& v : x) {
      const auto r = rng.next_below(10);
      if (r == 0) v = std::numeric_limits<float>::quiet_NaN();
      if (r == 1) v = -0.0F;
      if (r == 2) v = 0.0F;
    }
    x[5] = std::numeric_limits<float>::infinity();
    x[6] = -std::numeric_limits<float>::infinity();
    x[7] = -std::numeric_limits<float>::quiet_NaN();
    for (const std::size_t k : std::initializer_list<std::size_t>{1, 2, 3, 1000, 150'000, 170'000, 200'000})
      check_top_k(x, k, ws);
  }
  SECTION("all equal: the lowest indices") {
    const std::vector<float> x(100'000, 1.5F);
    check_top_k(x, 10, ws);
    const std::vector<float> zeros(100'000, 0.0F);
    check_top_k(zeros, 4097, ws);
  }
  SECTION("empty input and k = 0") {
    check_top_k(std::vector<float>{}, 5, ws);
    check_top_k(test::normal_vector<float>(1000, 25), 0, ws);
  }
  SECTION("double and integers, minimum values included") {
    check_top_k(test::normal_vector<double>(500'000, 26), 12'345, ws);
    auto i32 = test::integer_vector<std::int32_t>(500'000, 1000, 27);
    i32[10] = std::numeric_limits<std::int32_t>::min();
    i32[20] = std::numeric_limits<std::int32_t>::max();
    for (const std::size_t k : std::initializer_list<std::size_t>{1, 2, 5000}) check_top_k(i32, k, ws);
    auto i64 = test::integer_vector<std::int64_t>(500'000, 1'000'000'000'000, 28);
    i64[30] = std::numeric_limits<std::int64_t>::min();
    check_top_k(i64, 4321, ws);
  }
  SECTION("asynchronous on a caller's stream") {
    const auto x = test::normal_vector<float>(1'000'000, 29);
    const auto dx = upload(x);
    cudaStream_t stream = nullptr;
    detail::cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
    device_sparse_update<float> out(5000);
    top_k_into(cspan(dx), 5000, out, ws, stream);
    const auto got = out.to_host(stream);
    detail::cuda_check(cudaStreamDestroy(stream), "stream");
    const auto want = top_k(x, 5000);
    REQUIRE(got.indices == want.indices);
    REQUIRE(same_bits(got.values, want.values));
  }
}

TEST_CASE("device unsketch equals the CPU unsketch of the same table", "[cuda][topk]") {
  const sketch_config cfg{.rows = 5, .cols = 50'000, .seed = 31};
  constexpr std::uint64_t d = 2'000'000;
  count_sketch<float> cpu(cfg);
  cpu.accumulate(test::normal_vector<float>(d, 32));
  const count_sketch<float, multiply_shift, cuda_t> gpu(cpu);
  const auto want = top_k(cpu, d, 10'000);
  const auto got = top_k(gpu, d, 10'000);
  REQUIRE(got.indices == want.indices);
  REQUIRE(same_bits(got.values, want.values));
}

TEST_CASE("device allreduce through pinned staging equals the host allreduce", "[cuda][collective]") {
  constexpr int w = 3;
  constexpr std::size_t n = 100'000;
  std::vector<std::vector<float>> device_result(w);
  std::vector<std::vector<float>> host_result(w);
  on_ranks(w, [&](int r, inproc_transport& t) {
    communicator<inproc_transport> comm(t);
    auto host = test::normal_vector<float>(n, 40 + static_cast<std::uint64_t>(r));
    auto dev = upload(host);
    pinned_buffer<float> staging(10);  // grows
    device_allreduce(comm, dev.span(), staging);
    allreduce(comm, std::span<float>(host));
    device_result[static_cast<std::size_t>(r)] = download(cspan(dev));
    host_result[static_cast<std::size_t>(r)] = host;
  });
  for (int r = 0; r < w; ++r) {
    REQUIRE(same_bits(device_result[static_cast<std::size_t>(r)], host_result[0]));
    REQUIRE(same_bits(host_result[static_cast<std::size_t>(r)], host_result[0]));
  }
}

namespace {

constexpr std::uint64_t opt_d = 200'000;

/// Gradient of rank r at step s.
template <class Value>
std::vector<Value> gradient_of(int r, int s) {
  const auto seed = 1000 + 100 * static_cast<std::uint64_t>(r) + static_cast<std::uint64_t>(s);
  if constexpr (std::is_floating_point_v<Value>) {
    return test::normal_vector<Value>(opt_d, seed);
  } else {
    return test::integer_vector<Value>(opt_d, 100, seed);
  }
}

template <class Value>
struct rank_trace {
  std::vector<std::vector<std::uint64_t>> indices;
  std::vector<std::vector<Value>> values;
  std::string checkpoint;
  std::vector<Value> params;
};

/// Runs `steps` steps; rank r runs the device optimizer (`make_gpu(comm)`,
/// parameters in device memory) iff `on_gpu[r]`, else the CPU one.
template <class Value, class MakeCpu, class MakeGpu>
std::vector<rank_trace<Value>> run_job(const std::vector<bool>& on_gpu, MakeCpu make_cpu, MakeGpu make_gpu, int steps) {
  const int w = static_cast<int>(on_gpu.size());
  std::vector<rank_trace<Value>> traces(static_cast<std::size_t>(w));
  on_ranks(w, [&](int r, inproc_transport& t) {
    communicator<inproc_transport> comm(t);
    rank_trace<Value>& trace = traces[static_cast<std::size_t>(r)];
    std::vector<Value> params(opt_d, Value{1});
    const auto record = [&](const model_update<Value>& u) {
      trace.indices.push_back(u.indices);
      trace.values.push_back(u.values);
    };
    std::ostringstream os;
    if (on_gpu[static_cast<std::size_t>(r)]) {
      auto opt = make_gpu(comm);
      auto dparams = upload(params);
      for (int s = 0; s < steps; ++s) {
        const auto g = upload(gradient_of<Value>(r, s));
        model_update<Value> u = opt.step(cspan(g));
        if constexpr (requires { opt.update_on_device(); }) {
          if (u.dense && u.values.empty()) u.values = download(opt.update_on_device());  // a device rule's
        }
        record(u);
        opt.apply(dparams.span());
      }
      opt.save(os);
      params = download(cspan(dparams));
    } else {
      auto opt = make_cpu(comm);
      for (int s = 0; s < steps; ++s) {
        const auto g = gradient_of<Value>(r, s);
        const auto& u = opt.step(std::span<const Value>(g));
        record(u);
        u.apply(std::span<Value>(params));
      }
      opt.save(os);
    }
    trace.checkpoint = os.str();
    trace.params = params;
  });
  return traces;
}

/// The device run equals the CPU run: bit for bit (integers, ordered or
/// sketch-free floats: updates, parameters, checkpoints), also with CPU and
/// GPU ranks in one job; or, for atomically accumulated float sketches,
/// every rank applies the same update and the parameters stay within 1e-3
/// (relative, l2) of the CPU run's: the table's cells then differ from the
/// CPU's by summation order (about 1e-7 relative each), which can flip the
/// choice between coordinates whose estimates are that close.
template <class Value, class MakeCpu, class MakeGpu>
void check_device_equals_cpu(MakeCpu make_cpu, MakeGpu make_gpu, bool exact) {
  constexpr int steps = 4;
  const auto cpu = run_job<Value>({false, false}, make_cpu, make_gpu, steps);
  const auto gpu = run_job<Value>({true, true}, make_cpu, make_gpu, steps);
  REQUIRE(cpu[0].indices.size() == steps);
  REQUIRE_FALSE(cpu[0].values.back().empty());
  REQUIRE(gpu[1].values == gpu[0].values);
  REQUIRE(same_bits(gpu[1].params, gpu[0].params));
  if (!exact) {
    double diff = 0;
    double norm = 0;
    for (std::size_t i = 0; i < opt_d; ++i) {
      diff += std::pow(static_cast<double>(gpu[0].params[i]) - static_cast<double>(cpu[0].params[i]), 2);
      norm += std::pow(static_cast<double>(cpu[0].params[i]), 2);
    }
    REQUIRE(std::sqrt(diff / norm) < 1e-3);
    return;
  }
  const auto mixed = run_job<Value>({false, true}, make_cpu, make_gpu, steps);
  for (const auto* job : {&mixed, &gpu}) {
    for (std::size_t r = 0; r < 2; ++r) {
      INFO("rank " << r);
      REQUIRE((*job)[r].indices == cpu[r].indices);
      REQUIRE(same_bits((*job)[r].values.back(), cpu[r].values.back()));
      REQUIRE(same_bits((*job)[r].params, cpu[r].params));
      REQUIRE((*job)[r].checkpoint == cpu[r].checkpoint);  // the same fingerprint, steps and state bits
    }
  }
}

/// The same optimizer type `Cpu` and `Gpu` (on cuda_t, with `exec`), built from `o`.
template <class Cpu, class Gpu, class Options>
void check_pair(const Options& o, const cuda_execution& exec, bool exact) {
  check_device_equals_cpu<typename Cpu::value_type>([&](auto& comm) { return Cpu(comm, o); },
                                                    [&](auto& comm) { return Gpu(comm, o, exec); }, exact);
}

using T = inproc_transport;
using ms = multiply_shift;

template <class D>
using sketched_on = sketched_aggregation<float, ms, top_k_recovery, D>;
template <class D>
using dense_on = dense_aggregation<float, D>;

/// An update rule on the host (CPU ranks) against one on the device (GPU
/// ranks) over `Aggregation<device>`, `set` filling both rules' options.
template <class CpuRule, class GpuRule, template <class> class Aggregation, class Set>
void check_device_rule(Set set) {
  const auto make = [&](auto& comm, auto device) {
    using D = decltype(device);
    using O = composed_optimizer<Aggregation<D>, std::conditional_t<std::is_same_v<D, cuda_t>, GpuRule, CpuRule>, T>;
    typename O::options_type o{.dimension = opt_d, .learning_rate = 0.05F, .average = true};
    if constexpr (std::is_same_v<D, cuda_t>) o.exec.accumulation = cuda_accumulation::ordered;
    if constexpr (requires { o.aggregation.sketch; }) {
      o.aggregation = {.sketch = {.rows = 5, .cols = 20'000, .seed = 83}, .k = 400};
      o.dense = {{.offset = 30, .length = 40}};
    }
    set(o.update);
    return O(comm, o);
  };
  check_device_equals_cpu<float>([&](auto& comm) { return make(comm, cpu_t{}); },
                                 [&](auto& comm) { return make(comm, cuda_t{}); }, true);
}

/// Heavy ball, Nesterov (with weight decay), dense and lazy AdamW: on the device as on the host.
template <template <class> class Aggregation>
void check_device_rules() {
  for (const bool nesterov : {false, true}) {
    INFO("momentum, nesterov " << nesterov);
    check_device_rule<momentum_update<float>, momentum_update<float, cuda_t>, Aggregation>([&](auto& u) {
      u.momentum = 0.9F;
      u.nesterov = nesterov;
      u.weight_decay = 0.01F;
    });
  }
  for (const bool lazy : {false, true}) {
    INFO("adam, lazy " << lazy);
    check_device_rule<adam_update<float>, adam_update<float, cuda_t>, Aggregation>([&](auto& u) {
      u.weight_decay = 0.01F;
      u.lazy = lazy;
    });
  }
}
constexpr cuda_execution ordered{.accumulation = cuda_accumulation::ordered};
constexpr cuda_execution atomic{.accumulation = cuda_accumulation::atomic};

sketched_sgd_options<float> sketched_float() {
  return {.dimension = opt_d,
          .sketch = {.rows = 5, .cols = 20'000, .seed = 77},
          .k = 500,
          .candidates_factor = 3,
          .learning_rate = 0.1F,
          .momentum = 0.9F,
          .average = true,
          .dense = {{.offset = 1000, .length = 50}, {.offset = 150'000, .length = 7}}};
}

}  // namespace

TEST_CASE("device Sketched-SGD and gs-SGD equal the CPU's (ordered float, atomic int32, root)", "[cuda][optim]") {
  using cpu = sketched_sgd<float, T>;
  using gpu = sketched_sgd<float, T, ms, cuda_t>;
  check_pair<cpu, gpu>(sketched_float(), ordered, true);
  check_pair<global_sketch_sgd<float, T>, global_sketch_sgd<float, T, ms, cuda_t>>(sketched_float(), ordered, true);
  auto root = sketched_float();
  root.topology = topology::root;
  root.root = 1;
  check_pair<cpu, gpu>(root, ordered, true);
  check_pair<sketched_sgd<std::int32_t, T>, sketched_sgd<std::int32_t, T, ms, cuda_t>>(
      sketched_sgd_options<std::int32_t>{.dimension = opt_d,
                                         .sketch = {.rows = 3, .cols = 10'000, .seed = 78},
                                         .k = 300,
                                         .candidates_factor = 0,
                                         .momentum = 1},
      atomic, true);
  check_pair<global_sketch_sgd<float, T>, global_sketch_sgd<float, T, ms, cuda_t>>(sketched_float(), atomic, false);
}

TEST_CASE("device FetchSGD equals the CPU's (ordered float with both resets and a root, atomic int32)",
          "[cuda][optim]") {
  fetch_sgd_options<float> o{.dimension = opt_d,
                             .sketch = {.rows = 5, .cols = 20'000, .seed = 79},
                             .k = 500,
                             .learning_rate = 0.1F,
                             .momentum = 0.9F,
                             .average = true,
                             .dense = {{.offset = 3, .length = 40}}};
  using cpu = fetch_sgd<float, T>;
  using gpu = fetch_sgd<float, T, ms, cuda_t>;
  check_pair<cpu, gpu>(o, ordered, true);
  o.reset = fetch_reset::subtract;
  o.topology = topology::root;
  check_pair<cpu, gpu>(o, ordered, true);
  check_pair<fetch_sgd<std::int32_t, T>, fetch_sgd<std::int32_t, T, ms, cuda_t>>(
      fetch_sgd_options<std::int32_t>{
          .dimension = opt_d, .sketch = {.rows = 3, .cols = 10'000, .seed = 80}, .k = 300, .momentum = 1},
      atomic, true);
}

TEST_CASE("device baselines equal the CPU's (dense, true top-k, local top-k, gTop-k)", "[cuda][optim]") {
  check_pair<dense_sgd<float, T>, dense_sgd<float, T, cuda_t>>(
      dense_sgd_options<float>{.dimension = opt_d, .learning_rate = 0.1F, .momentum = 0.9F, .average = true}, {}, true);
  const topk_sgd_options<float> o{.dimension = opt_d,
                                  .k = 500,
                                  .learning_rate = 0.1F,
                                  .momentum = 0.9F,
                                  .average = true,
                                  .dense = {{.offset = 10, .length = 20}}};
  check_pair<true_topk_sgd<float, T>, true_topk_sgd<float, T, cuda_t>>(o, {}, true);
  check_pair<local_topk_sgd<float, T>, local_topk_sgd<float, T, cuda_t>>(o, {}, true);
  check_pair<gtopk_sgd<float, T>, gtopk_sgd<float, T, cuda_t>>(o, {}, true);
}

TEST_CASE("device compositions: HEAVYMIX recovery with lazy AdamW equals the CPU's", "[cuda][optim]") {
  using rule = adam_update<float>;
  const auto options = [](auto device) {
    using A = sketched_aggregation<float, poly4_hash, heavymix_recovery, decltype(device)>;
    composed_options<A, rule> o{
        .dimension = opt_d,
        .aggregation = {.sketch = {.rows = 5, .cols = 20'000, .seed = 81}, .k = 400, .recovery = {.seed = 5}},
        .update = {.weight_decay = 0.01F, .lazy = true},
        .learning_rate = 0.01F,
        .average = true};
    if constexpr (std::is_same_v<decltype(device), cuda_t>) o.exec.accumulation = cuda_accumulation::ordered;
    return o;
  };
  check_device_equals_cpu<float>(
      [&](auto& comm) {
        return composed_optimizer<sketched_aggregation<float, poly4_hash, heavymix_recovery, cpu_t>, rule,
                                  inproc_transport>(comm, options(cpu_t{}));
      },
      [&](auto& comm) {
        return composed_optimizer<sketched_aggregation<float, poly4_hash, heavymix_recovery, cuda_t>, rule,
                                  inproc_transport>(comm, options(cuda_t{}));
      },
      true);
}

TEST_CASE("device update rules equal the CPU's: momentum, Nesterov, dense and lazy AdamW", "[cuda][optim][rules]") {
  check_device_rules<sketched_on>();  // a sparse aggregate in
  check_device_rules<dense_on>();     // a dense one in
}

TEST_CASE("a device rule's dense update stays on the device and is applied there", "[cuda][optim][rules]") {
  inproc_world world(1);
  auto t = world.transport(0);
  communicator<inproc_transport> comm(t);
  using A = sketched_aggregation<float, ms, top_k_recovery, cuda_t>;
  constexpr std::uint64_t d = 5000;
  composed_optimizer<A, momentum_update<float, cuda_t>, T> opt(
      comm, {.dimension = d,
             .aggregation = {.sketch = {.rows = 3, .cols = 400, .seed = 4}, .k = 40},
             .update = {.momentum = 0.9F},
             .learning_rate = 0.1F});
  auto params = upload(std::vector<float>(d, 1.0F));
  const auto g = upload(test::normal_vector<float>(d, 3));
  const model_update<float>& u = opt.step(cspan(g));
  REQUIRE((u.dense && u.values.empty() && u.indices.empty()));  // no d values came to the host
  const std::vector<float> update = download(opt.update_on_device());
  REQUIRE(update.size() == d);
  opt.apply(params.span(), 0.5F);
  const std::vector<float> after = download(cspan(params));
  for (std::size_t i = 0; i < d; ++i) REQUIRE(same_bits(std::vector<float>{after[i]}, {1.0F - 0.5F * update[i]}));
  REQUIRE_THROWS_AS(opt.apply(device_span<float>(params.data(), d - 1)), std::invalid_argument);
}

TEST_CASE("device optimizers: a stream per call gives the options' stream's bits", "[cuda][optim]") {
  inproc_world world(1);
  auto t = world.transport(0);
  communicator<inproc_transport> comm(t);
  using gpu_opt = sketched_sgd<float, inproc_transport, multiply_shift, cuda_t>;
  const sketched_sgd_options<float> o{.dimension = 5000, .sketch = {.rows = 3, .cols = 400, .seed = 2}, .k = 40};
  gpu_opt usual(comm, o, {.accumulation = cuda_accumulation::ordered});
  gpu_opt per_call(comm, o, {.accumulation = cuda_accumulation::ordered});
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  const cuda_execution on_stream{.stream = stream, .accumulation = cuda_accumulation::ordered};
  auto a = upload(std::vector<float>(5000, 1.0F));
  auto b = upload(std::vector<float>(5000, 1.0F));
  for (std::uint64_t s = 0; s < 3; ++s) {
    const auto g = upload(test::normal_vector<float>(5000, 40 + s));
    const model_update<float> expected = usual.step(cspan(g));
    REQUIRE(per_call.step(cspan(g), on_stream) == expected);  // a step returns its update on the host, complete
    usual.apply(a.span());
    per_call.apply(b.span(), 1.0F, on_stream);
    REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
    REQUIRE(same_bits(download(cspan(b)), download(cspan(a))));
  }
  REQUIRE(cudaStreamDestroy(stream) == cudaSuccess);
}

TEST_CASE("device optimizers: options are checked before any I/O, NaN is caught", "[cuda][optim]") {
  inproc_world world(1);
  auto t = world.transport(0);
  communicator<inproc_transport> comm(t);
  using gpu_opt = sketched_sgd<float, inproc_transport, multiply_shift, cuda_t>;
  sketched_sgd_options<float> o{.dimension = 1000, .sketch = {.rows = 3, .cols = 100, .seed = 1}, .k = 10};
  o.overlap_rows = true;
  REQUIRE_THROWS_AS(gpu_opt(comm, o, {}), std::invalid_argument);  // overlap runs on the CPU only
  o.overlap_rows = false;
  o.k = 0;
  REQUIRE_THROWS_AS(gpu_opt(comm, o, {}), std::invalid_argument);
  o.k = 10;
  cuda_sketched_sgd<float, inproc_transport> opt(comm, o);  // the old spelling
  std::vector<float> g(1000, 1.0F);
  g[17] = std::numeric_limits<float>::quiet_NaN();
  const auto dg = upload(g);
  REQUIRE_THROWS_AS(opt.step(cspan(dg)), nonfinite_error);
}

// Compile-only instantiation of every member for value and hash types the
// tests above do not run.
template class sketchsgd::count_sketch<double, sketchsgd::poly4_hash, sketchsgd::cuda_t>;
template class sketchsgd::composed_optimizer<
    sketchsgd::fetch_aggregation<double, sketchsgd::poly4_hash, sketchsgd::threshold_recovery, sketchsgd::cuda_t>,
    sketchsgd::momentum_update<double>, sketchsgd::inproc_transport>;
template class sketchsgd::composed_optimizer<
    sketchsgd::fetch_aggregation<double, sketchsgd::poly4_hash, sketchsgd::threshold_recovery, sketchsgd::cuda_t>,
    sketchsgd::momentum_update<double, sketchsgd::cuda_t>, sketchsgd::inproc_transport>;
template class sketchsgd::composed_optimizer<sketchsgd::dense_aggregation<double, sketchsgd::cuda_t>,
                                             sketchsgd::adam_update<double, sketchsgd::cuda_t>>;
template class sketchsgd::detail::cuda_named<sketchsgd::global_sketch_sgd<
    std::int64_t, sketchsgd::inproc_transport, sketchsgd::multiply_shift, sketchsgd::cuda_t>>;
