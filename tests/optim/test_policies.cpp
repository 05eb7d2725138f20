// SPDX-License-Identifier: Apache-2.0
// The policy layer: split-phase steps equal transport-driven ones bit for
// bit; recovery policies find planted spikes; update rules against
// independent references; learning-rate placement and schedules;
// composed checkpoints (version 2) and their refusal of version 1; the
// optimizer concept and the type-erased holder.

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "optim_harness.hpp"
#include "sketchsgd/sketchsgd.hpp"
#include "test_support.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;

namespace {

using T = inproc_transport;

template <class E, class F>
void expect_throws_with(F f, const std::string& needle) {
  try {
    f();
  } catch (const E& e) {
    if (std::string(e.what()).find(needle) != std::string::npos) return;
    throw std::runtime_error("the message lacks '" + needle + "': " + e.what());
  }
  throw std::runtime_error("nothing was thrown (expected '" + needle + "')");
}

using test::on_inproc;

/// Rank r's gradient at step s: noise plus rank-dependent spikes.
template <class Value>
std::vector<Value> gradient_of(int r, std::uint64_t s, std::size_t d) {
  std::vector<Value> g(d);
  splitmix64 rng(mix64(s * 977 + static_cast<std::uint64_t>(r)));
  for (auto& x : g) {
    const double v = 2.0 * test::uniform01(rng) - 1.0 + (rng.next_below(40) == 0 ? 8.0 : 0.0);
    x = std::is_integral_v<Value> ? static_cast<Value>(std::lround(v * 8)) : static_cast<Value>(v);
  }
  return g;
}

/// What a rank saw: every update, then its saved state.
template <class Value>
struct trace {
  std::vector<model_update<Value>> updates;
  std::string state;
  friend bool operator==(const trace&, const trace&) = default;
};

/// `steps` transport-driven steps of `composed_optimizer<A, R, T>` on `w` ranks.
template <class A, class R>
std::vector<trace<typename A::value_type>> driven(int w, std::size_t d, const composed_options<A, R>& o, int steps) {
  using V = typename A::value_type;
  std::vector<trace<V>> out(static_cast<std::size_t>(w));
  on_inproc(w, [&](int r, T& t) {
    communicator comm(t);
    composed_optimizer<A, R, T> opt(comm, o);
    auto& mine = out[static_cast<std::size_t>(r)];
    for (int s = 0; s < steps; ++s)
      mine.updates.push_back(opt.step(gradient_of<V>(r, static_cast<std::uint64_t>(s), d)));
    std::ostringstream os;
    opt.save(os);
    mine.state = os.str();
  });
  return out;
}

/// The same in split phase: every round carried by `carry(comm, round)`.
template <class A, class R, class Carry>
std::vector<trace<typename A::value_type>> split(int w, std::size_t d, const composed_options<A, R>& o, int steps,
                                                 Carry carry) {
  using V = typename A::value_type;
  std::vector<trace<V>> out(static_cast<std::size_t>(w));
  on_inproc(w, [&](int r, T& t) {
    communicator comm(t);
    composed_optimizer<A, R> opt(r, w, o);
    auto& mine = out[static_cast<std::size_t>(r)];
    for (int s = 0; s < steps; ++s) {
      const auto g = gradient_of<V>(r, static_cast<std::uint64_t>(s), d);
      auto rounds = opt.step_rounds(g);
      while (auto* round = rounds.next()) carry(comm, *round);
      mine.updates.push_back(opt.last_update());
    }
    std::ostringstream os;
    opt.save(os);
    mine.state = os.str();
  });
  return out;
}

/// A collective other than sketchsgd's: gather everything, sum in rank order
/// (a reduce too: every rank gets the sum), take the root's (a broadcast).
template <class Comm, class Value>
void gather_and_sum(Comm& comm, const collective_round<Value>& r) {
  const auto w = static_cast<std::size_t>(comm.size());
  if (r.kind == round_kind::gather) {
    allgather(comm, std::span<const std::byte>(r.block), r.gathered);
    return;
  }
  if (r.kind == round_kind::broadcast) {
    std::vector<std::byte> all(w * r.block.size());
    allgather(comm, std::span<const std::byte>(r.block), std::span<std::byte>(all));
    std::copy_n(all.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(r.root) * r.block.size()),
                r.block.size(), r.block.begin());
    return;
  }
  if (r.combine) {  // a merge tree: any caller's is a tree of the same merges
    detail::run_round(comm, r);
    return;
  }
  const auto sum = [&](auto values) {
    using E = typename decltype(values)::value_type;
    std::vector<E> all(w * values.size());
    allgather(comm, std::span<const E>(values), std::span<E>(all));
    for (std::size_t i = 0; i < values.size(); ++i) {
      E acc{};
      for (std::size_t q = 0; q < w; ++q) acc += all[q * values.size() + i];
      values[i] = acc;
    }
  };
  if (r.counts.empty()) {
    sum(r.values);
  } else {
    sum(r.counts);
  }
}

const sketch_config sketch{.rows = 3, .cols = 600, .seed = 5};
const std::vector<dense_range> ranges{{3, 7}, {900, 20}};

template <class A, class R = sgd_update<typename A::value_type>>
composed_options<A, R> with(typename A::options_type a, bool average = true) {
  return {.dimension = 3000,
          .aggregation = a,
          .learning_rate = typename A::value_type(0.25),
          .average = average && std::is_floating_point_v<typename A::value_type>,
          .dense = std::is_same_v<A, dense_aggregation<typename A::value_type>> ? std::vector<dense_range>{} : ranges,
          .nonfinite = nonfinite_policy::skip_step};
}

/// Split phase equals the transport-driven form (sketchsgd's collectives:
/// every value type; another summation order: integers).
template <class A>
void check_split_phase(typename A::options_type a) {
  using V = typename A::value_type;
  const auto o = with<A>(a);
  const auto reference = driven(3, 3000, o, 5);
  CHECK(split(3, 3000, o, 5, [](auto& comm, const auto& r) { detail::run_round(comm, r); }) == reference);
  if constexpr (std::is_integral_v<V>) {
    CHECK(split(3, 3000, o, 5, [](auto& comm, const auto& r) { gather_and_sum(comm, r); }) == reference);
  }
  CHECK(!reference[0].updates.back().values.empty());
}

}  // namespace

TEMPLATE_TEST_CASE("a split-phase step equals the transport-driven step", "[optim][split]", float, std::int64_t) {
  using V = TestType;
  const error_feedback<V> ef{.momentum = V(std::is_integral_v<V> ? 1 : 0)};
  SECTION("dense") { check_split_phase<dense_aggregation<V>>({}); }
  SECTION("true top-k") { check_split_phase<true_topk_aggregation<V>>({.k = 30, .feedback = ef}); }
  SECTION("local top-k") { check_split_phase<local_topk_aggregation<V>>({.k = 30, .feedback = ef}); }
  SECTION("Sketched-SGD") {
    check_split_phase<sketched_aggregation<V>>({.sketch = sketch, .k = 30, .candidates_factor = 3, .feedback = ef});
  }
  SECTION("Sketched-SGD, HEAVYMIX applied whole") {
    check_split_phase<sketched_aggregation<V, multiply_shift, heavymix_recovery>>(
        {.sketch = sketch,
         .k = 30,
         .candidates_factor = 2,
         .feedback = ef,
         .recovery = {.seed = 3, .apply_all = true}});
  }
  SECTION("Sketched-SGD, rows overlapped") {
    check_split_phase<sketched_aggregation<V>>(
        {.sketch = sketch, .k = 30, .candidates_factor = 0, .feedback = ef, .overlap_rows = true});
  }
  SECTION("global sketch, recursive doubling") {
    check_split_phase<global_sketch_aggregation<V>>(
        {.sketch = sketch, .k = 30, .sketch_allreduce = allreduce_algorithm::recursive_doubling});
  }
  SECTION("FetchSGD") {
    check_split_phase<fetch_aggregation<V>>({.sketch = sketch, .k = 30, .momentum = V(std::is_integral_v<V> ? 1 : 0)});
  }
  SECTION("Sketched-SGD, root topology") {
    check_split_phase<sketched_aggregation<V>>(
        {.sketch = sketch, .k = 30, .candidates_factor = 2, .feedback = ef, .topology = topology::root, .root = 1});
  }
  SECTION("Sketched-SGD, root topology, no second round") {
    check_split_phase<sketched_aggregation<V>>(
        {.sketch = sketch, .k = 30, .candidates_factor = 0, .feedback = ef, .topology = topology::root});
  }
  SECTION("FetchSGD, root topology") {
    check_split_phase<fetch_aggregation<V>>({.sketch = sketch,
                                             .k = 30,
                                             .momentum = V(std::is_integral_v<V> ? 1 : 0),
                                             .topology = topology::root,
                                             .root = 2});
  }
  SECTION("gTop-k") { check_split_phase<gtopk_aggregation<V>>({.k = 30, .feedback = ef}); }
}

namespace {

/// A split-phase Sketched-SGD that shows the threads its device calls run with.
struct execution_probe : composed_optimizer<sketched_aggregation<float>, sgd_update<float>> {
  using composed_optimizer::composed_optimizer;
  unsigned threads() { return device_context().exec.threads; }
};

}  // namespace

TEST_CASE("a step or an apply runs as its call says, then as the options say", "[optim][split]") {
  auto o = with<sketched_aggregation<float>>({.sketch = sketch, .k = 30, .candidates_factor = 2});
  o.exec.threads = 1;
  const auto reference = split(3, 3000, o, 3, [](auto& comm, const auto& r) { detail::run_round(comm, r); });
  std::vector<trace<float>> out(3);
  std::vector<std::vector<unsigned>> seen(3);  // threads inside each step's rounds, after it, after each apply
  on_inproc(3, [&](int r, T& t) {
    communicator comm(t);
    execution_probe opt(r, 3, o);
    auto& mine = seen[static_cast<std::size_t>(r)];
    std::vector<float> params(3000, 1.0F);
    for (std::uint64_t s = 0; s < 3; ++s) {
      const auto g = gradient_of<float>(r, s, 3000);
      auto rounds = opt.step_rounds(g, {.threads = 2});
      while (auto* round = rounds.next()) {
        mine.push_back(opt.threads());
        detail::run_round(comm, *round);
      }
      mine.push_back(opt.threads());
      out[static_cast<std::size_t>(r)].updates.push_back(opt.last_update());
      opt.apply(params, 1.0F, {.threads = 2});
      mine.push_back(opt.threads());
    }
    std::ostringstream os;
    opt.save(os);
    out[static_cast<std::size_t>(r)].state = os.str();
  });
  CHECK(out == reference);  // the threads change no bit
  for (const auto& mine : seen) {
    REQUIRE(mine.size() > 6);
    std::size_t at = 0;
    for (int s = 0; s < 3; ++s) {
      const std::size_t first = at;
      while (at < mine.size() && mine[at] == 2) ++at;  // inside the step's rounds
      CHECK(at > first);
      REQUIRE(at + 1 < mine.size());
      CHECK(mine[at] == 1);      // the step done: the options' threads again
      CHECK(mine[at + 1] == 1);  // and after the apply
      at += 2;
    }
    CHECK(at == mine.size());
  }
  // A step abandoned half way leaves the options' execution too.
  execution_probe solo(0, 1, o);
  const auto g = gradient_of<float>(0, 0, 3000);
  {
    auto rounds = solo.step_rounds(g, {.threads = 2});
    REQUIRE(rounds.next() != nullptr);
    CHECK(solo.threads() == 2);
  }
  CHECK(solo.threads() == 1);
}

TEST_CASE("split phase checks sizes and counts modeled bytes", "[optim][split]") {
  using S = sketched_aggregation<float>;
  composed_optimizer<S, sgd_update<float>> opt(0, 1, with<S>({.sketch = sketch, .k = 10}));
  CHECK_THROWS_AS(opt.step_rounds(std::vector<float>(10)), std::invalid_argument);
  CHECK_THROWS_AS((composed_optimizer<S, sgd_update<float>>(2, 2, with<S>({.sketch = sketch, .k = 10}))),
                  std::invalid_argument);  // rank 2 of 2
  const auto g = gradient_of<float>(0, 0, 3000);
  auto rounds = opt.step_rounds(g);
  int n = 0;
  while (rounds.next() != nullptr) ++n;
  CHECK(n == 4);  // the non-finite check, the table, the dense values, the P k candidates
  CHECK(opt.stats().last_step.collectives == 4);
  CHECK(opt.stats().last_step.bytes_sent == 0);  // one rank: nothing to send
}

namespace {

/// Each rank's bytes sent and received per step: transport-driven, and as
/// split phase models them (carried by sketchsgd's collectives).
template <class A>
void check_modeled_bytes(typename A::options_type a, int w) {
  const auto o = with<A>(a);
  std::vector<comm_counters> driven_bytes(static_cast<std::size_t>(w));
  std::vector<comm_counters> modeled(static_cast<std::size_t>(w));
  on_inproc(w, [&](int r, T& t) {
    communicator comm(t);
    composed_optimizer<A, sgd_update<float>, T> opt(comm, o);
    composed_optimizer<A, sgd_update<float>> split_opt(r, w, o);
    for (std::uint64_t s = 0; s < 3; ++s) {
      const auto g = gradient_of<float>(r, s, 3000);
      opt.step(g);
      auto rounds = split_opt.step_rounds(g);
      while (auto* round = rounds.next()) detail::run_round(comm, *round);
    }
    driven_bytes[static_cast<std::size_t>(r)] = opt.stats().last_step;
    modeled[static_cast<std::size_t>(r)] = split_opt.stats().last_step;
  });
  for (int r = 0; r < w; ++r) {
    CAPTURE(r, w);
    const auto& d = driven_bytes[static_cast<std::size_t>(r)];
    const auto& m = modeled[static_cast<std::size_t>(r)];
    CHECK(m.bytes_sent == d.bytes_sent);
    CHECK(m.bytes_received == d.bytes_received);
    CHECK(m.collectives == d.collectives);
    CHECK(d.bytes_sent + d.bytes_received > 0);
  }
}

}  // namespace

TEST_CASE("split phase models every round's bytes as sketchsgd sends them, per rank", "[optim][split][bytes]") {
  for (const int w : {2, 3, 5}) {
    check_modeled_bytes<sketched_aggregation<float>>(
        {.sketch = sketch, .k = 20, .candidates_factor = 2, .topology = topology::root, .root = w - 1}, w);
    check_modeled_bytes<fetch_aggregation<float>>({.sketch = sketch, .k = 20, .topology = topology::root}, w);
    check_modeled_bytes<gtopk_aggregation<float>>({.k = 20}, w);
    check_modeled_bytes<sketched_aggregation<float>>({.sketch = sketch, .k = 20}, w);
  }
}

namespace {

round_generator<float> two_rounds(std::vector<float>& v, bool fail) {
  co_yield sum_round(std::span<float>(v));
  if (fail) throw std::runtime_error("the step failed");
  co_yield sum_round(std::span<float>(v));
}

}  // namespace

TEST_CASE("a round generator is guarded: after its end, after a throw, once moved from", "[optim][split]") {
  std::vector<float> v(3);
  auto done = two_rounds(v, false);
  CHECK(done.next() != nullptr);
  CHECK(done.next() != nullptr);
  CHECK(done.next() == nullptr);
  CHECK(done.next() == nullptr);  // and again: the end stays the end
  auto failing = two_rounds(v, true);
  CHECK(failing.next() != nullptr);
  CHECK_THROWS_WITH(failing.next(), "the step failed");
  CHECK_THROWS_AS(failing.next(), std::logic_error);  // a failed step has no end to report
  auto moved = two_rounds(v, false);
  auto taken = std::move(moved);
  CHECK_THROWS_AS(moved.next(), std::logic_error);  // NOLINT(bugprone-use-after-move): the point of the test
  CHECK(taken.next() != nullptr);
}

TEST_CASE("a NaN in split phase: every rank skips, as the transport-driven step does", "[optim][split][nonfinite]") {
  using S = sketched_aggregation<float>;
  on_inproc(2, [&](int r, T& t) {
    communicator comm(t);
    composed_optimizer<S, sgd_update<float>> opt(r, 2, with<S>({.sketch = sketch, .k = 10}));
    auto g = gradient_of<float>(r, 0, 3000);
    if (r == 1) g[5] = std::numeric_limits<float>::quiet_NaN();
    auto rounds = opt.step_rounds(g);
    int n = 0;
    while (auto* round = rounds.next()) {
      detail::run_round(comm, *round);
      ++n;
    }
    test::expect(n == 1 && opt.last_update().skipped && opt.last_update().values.empty(), "the step was not skipped");
  });
}

namespace {

/// One aggregation of `w` ranks' gradients (planted spikes in noise) with
/// recovery policy `Recovery` and P = 0; the recovered indices.
template <class Recovery>
std::vector<std::uint64_t> recovered(std::uint64_t seed, Recovery recovery, std::size_t k,
                                     const std::vector<std::uint64_t>& spikes) {
  constexpr std::size_t d = 100'000;
  using A = sketched_aggregation<float, poly4_hash, Recovery>;
  std::vector<std::uint64_t> out;
  on_inproc(2, [&](int r, T& t) {
    communicator comm(t);
    composed_optimizer<A, aggregated_gradient<float>, T> opt(
        comm,
        {.dimension = d,
         .aggregation = {
             .sketch = {.rows = 5, .cols = 2000, .seed = seed}, .k = k, .candidates_factor = 0, .recovery = recovery}});
    auto g = test::normal_vector<float>(d, seed * 2 + static_cast<std::uint64_t>(r));
    for (const auto i : spikes) g[i] += 150.0F;  // both ranks: 300 in the sum
    const auto& u = opt.step(g);
    if (r == 0) out = u.indices;
  });
  return out;
}

}  // namespace

TEST_CASE("every recovery policy finds planted heavy hitters", "[optim][recovery][statistical]") {
  // The sum has noise of norm ~ sqrt(2 d) = 447 and 10 spikes of 300: each
  // holds 9e4 / 1e6 of ||x||^2, above HEAVYMIX's phi = 1/k = 0.05 and the
  // threshold's 0.02. A row's estimate errs by about ||x|| / sqrt(c) = 22
  // (Charikar et al.), the median of 5 rows less: a spike's estimate stays
  // far above every threshold and above every noise coordinate (whose
  // estimates stay below ~5 sigma = 110) for every seed.
  for (const auto seed : test::statistical_seeds) {
    CAPTURE(seed);
    splitmix64 rng(seed);
    std::vector<std::uint64_t> spikes;
    while (spikes.size() < 10) {
      const std::uint64_t i = rng.next_below(100'000);
      if (std::find(spikes.begin(), spikes.end(), i) == spikes.end()) spikes.push_back(i);
    }
    std::sort(spikes.begin(), spikes.end());
    const auto found = [&](const std::vector<std::uint64_t>& got) {
      return std::all_of(spikes.begin(), spikes.end(),
                         [&](std::uint64_t s) { return std::binary_search(got.begin(), got.end(), s); });
    };
    CHECK(found(recovered(seed, top_k_recovery{}, 20, spikes)));
    const auto mix = recovered(seed, heavymix_recovery{.seed = 3}, 20, spikes);
    CHECK(mix.size() == 20);  // 10 heavy hitters, 10 drawn uniformly from the rest
    CHECK(found(mix));
    const auto heavy = recovered(seed, threshold_recovery{.phi = 0.02}, 20, spikes);
    CHECK(heavy == spikes);  // exactly the heavy hitters
  }
}

namespace {

constexpr std::size_t mix_d = 3000;
constexpr std::size_t mix_k = 30;
const sketch_config mix_sketch{.rows = 3, .cols = 600, .seed = 5};

/// The j-th of 10 coordinates planted as l2 heavy hitters (phi = 1 / mix_k).
constexpr std::size_t planted(std::size_t j) { return 37 + 211 * j; }

/// Rank r's first gradient for the HEAVYMIX tests: noise and the planted spikes.
std::vector<std::int64_t> mix_gradient(int r) {
  auto g = gradient_of<std::int64_t>(r, 0, mix_d);
  for (std::size_t j = 0; j < 10; ++j) g[planted(j)] += 2000;
  return g;
}

/// One step of Sketched-SGD's aggregation with HEAVYMIX (seed 7) on 3 ranks
/// (integers: the sums are exact); rank 0's update, and its error v after it.
std::pair<model_update<std::int64_t>, std::vector<std::int64_t>> mix_step(heavymix_recovery recovery,
                                                                          std::size_t candidates_factor,
                                                                          topology topo = topology::allreduce) {
  using A = sketched_aggregation<std::int64_t, multiply_shift, heavymix_recovery>;
  std::pair<model_update<std::int64_t>, std::vector<std::int64_t>> out;
  on_inproc(3, [&](int r, T& t) {
    communicator comm(t);
    composed_optimizer<A, aggregated_gradient<std::int64_t>, T> opt(
        comm, {.dimension = mix_d,
               .aggregation = {.sketch = mix_sketch,
                               .k = mix_k,
                               .candidates_factor = candidates_factor,
                               .recovery = recovery,
                               .topology = topo}});
    const auto& u = opt.step(mix_gradient(r));
    if (r == 0) {
      out.first = u;
      const auto v = opt.aggregation().memory().v();
      out.second.assign(v.begin(), v.end());
    }
  });
  return out;
}

}  // namespace

TEST_CASE("HEAVYMIX with a second round: the k it selects, fill included, are summed exactly and all applied",
          "[optim][recovery]") {
  // The summed gradient, its sketch, and HEAVYMIX's selection of k from it:
  // P = 0 applies exactly that selection (with estimates).
  std::vector<std::int64_t> sum(mix_d, 0);
  for (int r = 0; r < 3; ++r) {
    const auto g = mix_gradient(r);
    for (std::size_t i = 0; i < mix_d; ++i) sum[i] += g[i];
  }
  count_sketch<std::int64_t, multiply_shift> summed(mix_sketch);
  summed.accumulate(std::span<const std::int64_t>(sum));
  const auto heavy = heavy_hitters(summed, mix_d, 1.0 / static_cast<double>(mix_k)).indices;
  const auto selection = mix_step({.seed = 7}, 0).first.indices;
  REQUIRE(selection.size() == mix_k);
  REQUIRE((heavy.size() >= 10 && heavy.size() < mix_k));  // the planted ones (and where the ranks' spikes meet)
  REQUIRE(std::includes(selection.begin(), selection.end(), heavy.begin(), heavy.end()));
  std::vector<std::uint64_t> fill;
  std::set_difference(selection.begin(), selection.end(), heavy.begin(), heavy.end(), std::back_inserter(fill));

  // apply_all at P = 2: that selection, fill included, with exact sums.
  for (const topology topo : {topology::allreduce, topology::root}) {
    CAPTURE(topo == topology::root);
    const auto [u, v] = mix_step({.seed = 7, .apply_all = true}, 2, topo);
    CHECK(u.indices == selection);  // the heavy hitters and the whole fill
    for (std::size_t j = 0; j < u.indices.size(); ++j) {
      CHECK(u.values[j] == sum[u.indices[j]]);  // exact sums
      CHECK(v[u.indices[j]] == 0);              // applied, so the error is reset
    }
  }
  // The default (the documented deviation): P k candidates, of which the k
  // largest exact sums are applied; the planted coordinates stay, the fill
  // mostly goes.
  const auto kept = mix_step({.seed = 7}, 2).first.indices;
  CHECK(kept.size() == mix_k);
  for (std::size_t j = 0; j < 10; ++j) CHECK(std::binary_search(kept.begin(), kept.end(), planted(j)));
  std::vector<std::uint64_t> kept_fill;
  std::set_intersection(kept.begin(), kept.end(), fill.begin(), fill.end(), std::back_inserter(kept_fill));
  CHECK(kept_fill.size() < fill.size() / 2);
}

namespace {

/// W = 2 dense aggregation with rule R for `steps` steps; rank 0's updates.
template <class R>
std::vector<model_update<float>> dense_run(typename R::options_type rule, float lr, int steps, std::size_t d = 64) {
  std::vector<model_update<float>> out;
  on_inproc(2, [&](int r, T& t) {
    communicator comm(t);
    composed_optimizer<dense_aggregation<float>, R, T> opt(
        comm, {.dimension = d, .update = rule, .learning_rate = lr, .average = true});
    for (int s = 0; s < steps; ++s) {
      const auto& u = opt.step(gradient_of<float>(r, static_cast<std::uint64_t>(s), d));
      if (r == 0) out.push_back(u);
    }
  });
  return out;
}

/// The averaged gradient both ranks see at step s, in double.
std::vector<double> mean_gradient(std::uint64_t s, std::size_t d = 64) {
  const auto a = gradient_of<float>(0, s, d);
  const auto b = gradient_of<float>(1, s, d);
  std::vector<double> g(d);
  for (std::size_t i = 0; i < d; ++i) g[i] = (static_cast<double>(a[i]) + b[i]) / 2;
  return g;
}

}  // namespace

TEST_CASE("update rules against references in double precision", "[optim][rules]") {
  constexpr int steps = 6;
  constexpr std::size_t d = 64;
  SECTION("Adam and AdamW (dense moments)") {
    const auto got = dense_run<adam_update<float>>({.weight_decay = 0.01F}, 0.01F, steps);
    std::vector<double> m(d, 0.0);
    std::vector<double> v(d, 0.0);
    for (int s = 0; s < steps; ++s) {
      const auto g = mean_gradient(static_cast<std::uint64_t>(s));
      REQUIRE(got[static_cast<std::size_t>(s)].dense);
      CHECK(got[static_cast<std::size_t>(s)].decay == Approx(0.01 * 0.01));
      for (std::size_t i = 0; i < d; ++i) {
        m[i] = 0.9 * m[i] + 0.1 * g[i];
        v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
        const double mh = m[i] / (1 - std::pow(0.9, s + 1));
        const double vh = v[i] / (1 - std::pow(0.999, s + 1));
        CHECK(got[static_cast<std::size_t>(s)].values[i] ==
              Approx(0.01 * mh / (std::sqrt(vh) + 1e-8)).epsilon(1e-4).margin(1e-7));
      }
    }
  }
  SECTION("heavy ball and Nesterov") {
    for (const bool nesterov : {false, true}) {
      const auto got = dense_run<momentum_update<float>>({.momentum = 0.9F, .nesterov = nesterov}, 0.1F, steps);
      std::vector<double> b(d, 0.0);
      for (int s = 0; s < steps; ++s) {
        const auto g = mean_gradient(static_cast<std::uint64_t>(s));
        for (std::size_t i = 0; i < d; ++i) {
          b[i] = 0.9 * b[i] + g[i];
          const double want = 0.1 * (nesterov ? g[i] + 0.9 * b[i] : b[i]);
          CHECK(got[static_cast<std::size_t>(s)].values[i] == Approx(want).epsilon(1e-5).margin(1e-6));
        }
      }
    }
  }
  SECTION("decoupled weight decay: params lose eta lambda of themselves, then the update") {
    const auto got = dense_run<sgd_update<float>>({.weight_decay = 0.5F}, 0.1F, 1);
    std::vector<float> params(d, 2.0F);
    got[0].apply(std::span<float>(params));
    const auto g = mean_gradient(0);
    for (std::size_t i = 0; i < d; ++i) CHECK(params[i] == Approx(2.0 - 0.1 * 0.5 * 2.0 - 0.1 * g[i]).epsilon(1e-5));
  }
}

TEST_CASE("lazy Adam moves only the aggregated coordinates", "[optim][rules]") {
  using A = sketched_aggregation<float>;
  on_inproc(2, [&](int r, T& t) {
    communicator comm(t);
    composed_optimizer<A, adam_update<float>, T> opt(comm, {.dimension = 3000,
                                                            .aggregation = {.sketch = sketch, .k = 25},
                                                            .update = {.lazy = true},
                                                            .learning_rate = 0.01F,
                                                            .average = true});
    for (std::uint64_t s = 0; s < 3; ++s) {
      const auto& u = opt.step(gradient_of<float>(r, s, 3000));
      test::expect(!u.dense && u.indices.size() == 25, "lazy Adam's update keeps the aggregated support");
      for (const float v : u.values) test::expect(std::abs(v) <= 0.01F * 1.01F, "|Adam step| <= eta");
    }
  });
}

TEST_CASE("momentum masking can be switched off", "[optim][rules]") {
  for (const bool mask : {true, false}) {
    using A = sketched_aggregation<float>;
    on_inproc(2, [&](int r, T& t) {
      communicator comm(t);
      composed_optimizer<A, sgd_update<float>, T> opt(
          comm, {.dimension = 3000,
                 .aggregation = {.sketch = sketch, .k = 25, .feedback = {.momentum = 0.9F, .mask_momentum = mask}}});
      const auto& u = opt.step(gradient_of<float>(r, 0, 3000));
      const auto momentum = opt.aggregation().memory().u();
      const auto error = opt.aggregation().memory().v();
      for (const auto i : u.indices) {
        test::expect(error[i] == 0.0F, "the error is reset where applied");
        test::expect((momentum[i] == 0.0F) == mask, "the momentum is masked iff asked");
      }
    });
  }
}

namespace {

/// The same updates with eta = 2 on the update (`on_update`) and in the
/// error memory (`in_error`).
template <class A>
void check_eta_placement(typename A::options_type on_update, typename A::options_type in_error) {
  auto o = with<A>(on_update);
  o.learning_rate = 2.0F;
  const auto a = driven(3, 3000, o, 4);
  o.aggregation = in_error;
  const auto b = driven(3, 3000, o, 4);
  for (std::size_t r = 0; r < 3; ++r) CHECK(b[r].updates == a[r].updates);
}

}  // namespace

TEST_CASE("the learning rate inside the error memory gives the same updates (eta a power of two)", "[optim][rules]") {
  // eta = 2 scales exactly: v <- v + eta u holds eta times what v <- v + u
  // holds, every sum and estimate scales with it, and the same coordinates
  // are chosen; the update is the same either way.
  const error_feedback<float> update_side{.momentum = 0.5F};
  error_feedback<float> error_side = update_side;
  error_side.learning_rate_in_error = true;
  check_eta_placement<sketched_aggregation<float>>({.sketch = sketch, .k = 20, .feedback = update_side},
                                                   {.sketch = sketch, .k = 20, .feedback = error_side});
  check_eta_placement<true_topk_aggregation<float>>({.k = 20, .feedback = update_side},
                                                    {.k = 20, .feedback = error_side});
  check_eta_placement<fetch_aggregation<float>>(
      {.sketch = sketch, .k = 20, .momentum = 0.5F, .learning_rate_in_error = false},
      {.sketch = sketch, .k = 20, .momentum = 0.5F, .learning_rate_in_error = true});
}

TEST_CASE("a learning-rate schedule is followed, and resumed from a checkpoint", "[optim][schedule]") {
  using O = composed_optimizer<dense_aggregation<float>, sgd_update<float>, T>;
  const auto schedule = [](std::uint64_t t) { return 1.0F / static_cast<float>(1U << t); };
  on_inproc(1, [&](int, T& t) {
    communicator comm(t);
    const composed_options<dense_aggregation<float>, sgd_update<float>> o{.dimension = 4, .schedule = schedule};
    O opt(comm, o);
    const std::vector<float> g(4, 1.0F);
    test::expect(opt.step(g).values[0] == 1.0F && opt.step(g).values[0] == 0.5F, "the schedule's first steps");
    std::stringstream saved;
    opt.save(saved);
    O resumed(comm, o);
    resumed.load(saved);
    test::expect(resumed.step(g).values[0] == 0.25F, "a resumed optimizer continues the schedule");
  });
}

namespace {

/// What a rank ends with in `run_with_skips`.
struct skip_run {
  std::vector<float> params;
  std::string saved;  // the checkpoint after step 6
  friend bool operator==(const skip_run&, const skip_run&) = default;
};

/// Steps 0-6 of `composed_optimizer<A, R>` on 3 ranks, a checkpoint, a
/// fresh optimizer that loads it, and steps 7-8. At steps 2 and 5 rank 1's
/// gradient holds a NaN, so every rank skips them (`bad_steps`), or those
/// steps are left out altogether (`!bad_steps`): the two runs must end with
/// the same bits and write the same checkpoint.
template <class A, class R>
std::vector<skip_run> run_with_skips(const composed_options<A, R>& o, bool bad_steps) {
  std::vector<skip_run> out(3);
  on_inproc(3, [&](int r, T& t) {
    communicator comm(t);
    auto& mine = out[static_cast<std::size_t>(r)];
    mine.params.assign(static_cast<std::size_t>(o.dimension), 0.0F);
    const auto step = [&](composed_optimizer<A, R, T>& opt, std::uint64_t s) {
      const bool bad = s == 2 || s == 5;
      if (bad && !bad_steps) return;
      auto g = gradient_of<float>(r, s, static_cast<std::size_t>(o.dimension));
      if (bad && r == 1) g[17] = std::numeric_limits<float>::quiet_NaN();
      const auto& u = opt.step(g);
      test::expect(u.skipped == bad, "skipped exactly at the bad steps");
      u.apply(std::span<float>(mine.params));
    };
    composed_optimizer<A, R, T> opt(comm, o);
    for (std::uint64_t s = 0; s < 7; ++s) step(opt, s);
    const comm_stats& st = opt.stats();
    test::expect(
        st.steps == (bad_steps ? 7U : 5U) && st.skipped_steps == (bad_steps ? 2U : 0U) && st.taken_steps() == 5,
        "every step is counted, the skipped ones apart");
    std::ostringstream os;
    opt.save(os);
    mine.saved = os.str();
    composed_optimizer<A, R, T> resumed(comm, o);
    std::istringstream is(mine.saved);
    resumed.load(is);
    test::expect(resumed.stats().taken_steps() == 5, "a resumed optimizer continues from the steps taken");
    for (std::uint64_t s = 7; s < 9; ++s) step(resumed, s);
  });
  return out;
}

template <class A, class R>
void check_skips_leave_no_trace(const composed_options<A, R>& o) {
  const auto skipped = run_with_skips(o, true);
  const auto clean = run_with_skips(o, false);
  for (std::size_t r = 0; r < 3; ++r) {
    CAPTURE(r);
    CHECK((skipped[r].params == clean[r].params));  // (( )): no dump of 3000 values
    CHECK((skipped[r].saved == clean[r].saved));
  }
}

}  // namespace

TEST_CASE("skipped steps are not steps: Adam, HEAVYMIX and schedules see only the steps taken",
          "[optim][nonfinite][schedule]") {
  // Steps 2 and 5 of 7 are skipped (a NaN on rank 1): the parameters and
  // the checkpoint (its step count included) equal, bit for bit, those of
  // the run that never had those steps, also after a resume.
  using S = sketched_aggregation<float>;
  using H = sketched_aggregation<float, multiply_shift, heavymix_recovery>;
  SECTION("plain SGD") { check_skips_leave_no_trace(with<S>({.sketch = sketch, .k = 20})); }
  SECTION("Adam: bias correction by the steps taken") {
    check_skips_leave_no_trace(
        with<S, adam_update<float>>({.sketch = sketch, .k = 20, .feedback = {.momentum = 0.5F}}));
    check_skips_leave_no_trace(with<dense_aggregation<float>, adam_update<float>>({}));
  }
  SECTION("HEAVYMIX in Sketched-SGD: the fill's seed by the steps taken") {
    check_skips_leave_no_trace(with<H>({.sketch = sketch, .k = 20, .candidates_factor = 0, .recovery = {.seed = 7}}));
    check_skips_leave_no_trace(
        with<H>({.sketch = sketch, .k = 20, .candidates_factor = 2, .recovery = {.seed = 7, .apply_all = true}}));
  }
  SECTION("HEAVYMIX in FetchSGD") {
    using F = fetch_aggregation<float, multiply_shift, heavymix_recovery>;
    check_skips_leave_no_trace(with<F>({.sketch = sketch, .k = 20, .momentum = 0.5F, .recovery = {.seed = 7}}));
  }
  SECTION("a learning-rate schedule") {
    auto o = with<S>({.sketch = sketch, .k = 20, .feedback = {.momentum = 0.5F}});
    o.schedule = [](std::uint64_t t) { return 0.5F / static_cast<float>(t + 1); };
    check_skips_leave_no_trace(o);
    o.aggregation.feedback.learning_rate_in_error = true;  // eta enters the error memory at each step's value
    check_skips_leave_no_trace(o);
  }
}

TEST_CASE("composed checkpoints: version 2, all or nothing, and version 1 refused by name", "[optim][checkpoint]") {
  using A = sketched_aggregation<float>;
  using O = composed_optimizer<A, adam_update<float>, T>;
  const auto o = with<A, adam_update<float>>({.sketch = sketch, .k = 20, .feedback = {.momentum = 0.5F}});
  std::vector<std::string> at3(3);
  std::vector<std::vector<model_update<float>>> straight(3);
  std::vector<std::vector<model_update<float>>> resumed(3);
  on_inproc(3, [&](int r, T& t) {
    communicator comm(t);
    O opt(comm, o);
    for (std::uint64_t s = 0; s < 6; ++s) {
      if (s == 3) {
        std::ostringstream os;
        opt.save(os);
        at3[static_cast<std::size_t>(r)] = os.str();
      }
      straight[static_cast<std::size_t>(r)].push_back(opt.step(gradient_of<float>(r, s, 3000)));
    }
    O fresh(comm, o);
    std::istringstream is(at3[static_cast<std::size_t>(r)]);
    fresh.load(is);
    for (std::uint64_t s = 3; s < 6; ++s)
      resumed[static_cast<std::size_t>(r)].push_back(fresh.step(gradient_of<float>(r, s, 3000)));
  });
  for (std::size_t r = 0; r < 3; ++r) {
    CHECK(static_cast<unsigned>(at3[r][4]) == 2U);  // serial version 2
    CHECK(std::equal(resumed[r].begin(), resumed[r].end(), straight[r].begin() + 3));
  }
  on_inproc(3, [&](int r, T& t) {
    communicator comm(t);
    O opt(comm, o);
    std::string truncated = at3[static_cast<std::size_t>(r)];
    truncated.resize(truncated.size() - 5);
    std::istringstream bad(truncated);
    std::ostringstream before;
    opt.save(before);
    expect_throws_with<serialization_error>([&] { opt.load(bad); }, "truncated");
    std::ostringstream after;
    opt.save(after);
    test::expect(before.str() == after.str(), "a refused load changes nothing");
    // A named optimizer's checkpoint (version 1) names its version.
    std::ifstream v1(
        std::string(SKETCHSGD_TEST_DATA_DIR) + "/optim_state_v1_sketched_sgd_rank" + std::to_string(r) + ".bin",
        std::ios::binary);
    expect_throws_with<serialization_error>([&] { opt.load(v1); }, "version 1");
  });
}

TEST_CASE("ranks that compose differently all get config_mismatch_error", "[optim]") {
  using A = sketched_aggregation<float>;
  on_inproc(3, [&](int r, T& t) {
    communicator comm(t);
    auto o = with<A, adam_update<float>>({.sketch = sketch, .k = 20});
    if (r == 2) o.update.lazy = true;
    expect_throws_with<config_mismatch_error>([&] { composed_optimizer<A, adam_update<float>, T> opt(comm, o); },
                                              "configured differently");
  });
}

TEST_CASE("global-sketch SGD's table in log2(W) rounds (recursive doubling) or 2 (W-1) (ring)", "[optim][bytes]") {
  using A = global_sketch_aggregation<float>;
  const sketch_config big{.rows = 2, .cols = 8000, .seed = 3};  // 64 KB: the ring by default
  const std::uint64_t table = 4 * big.cells();
  for (const auto algorithm : {allreduce_algorithm::ring, allreduce_algorithm::recursive_doubling}) {
    on_inproc(4, [&](int r, T& t) {
      communicator comm(t);
      composed_optimizer<A, sgd_update<float>, T> opt(
          comm, {.dimension = 20'000,
                 .aggregation = {.sketch = big, .k = 10, .candidates_factor = 0, .sketch_allreduce = algorithm},
                 .nonfinite = nonfinite_policy::unchecked});
      (void)opt.step(gradient_of<float>(r, 0, 20'000));
      const auto sent = opt.stats().last_step.bytes_sent;
      const auto messages = opt.stats().last_step.messages_sent;
      if (algorithm == allreduce_algorithm::ring) {
        test::expect(sent == 2 * 3 * table / 4, "ring: 2 (W-1)/W of the table");
      } else {
        test::expect(sent == 2 * table && messages == 2, "recursive doubling: log2 W = 2 exchanges of the table");
      }
    });
  }
}

namespace {

/// An aggregation with only the required hooks: the sum of the gradient.
template <class Value>
struct plain_sum final {  // final: its optional hooks are found by their calls alone
  using value_type = Value;
  using device_type = cpu_t;
  struct options_type {};
  static constexpr const char* name = "plain_sum";
  plain_sum(const options_type& /*o*/, const step_context<Value, cpu_t>& /*c*/) {}
  void accumulate(std::span<const Value> g, const step_context<Value, cpu_t>& /*c*/) { gradient = g; }
  [[nodiscard]] std::span<const Value> source() const noexcept { return gradient; }
  round_generator<Value> rounds(const step_context<Value, cpu_t>& /*c*/, model_update<Value>& out) {
    out.dense = true;
    out.values.assign(gradient.begin(), gradient.end());
    co_yield sum_round(std::span<Value>(out.values));
  }
  std::span<const Value> gradient{};
};

/// An update rule with only the required hooks: the update is eta times the aggregate.
template <class Value>
struct plain_step {
  struct options_type {};
  plain_step(const options_type& /*o*/, std::uint64_t /*d*/, const char* /*name*/) {}
  void apply(model_update<Value>& u, Value eta, bool /*eta_applied*/, std::uint64_t /*step*/) {
    for (Value& x : u.values) x *= eta;
  }
};

/// An update rule that takes its device's context: it records the threads the driver hands it.
template <class Value>
struct context_step : plain_step<Value> {
  using plain_step<Value>::plain_step;
  using plain_step<Value>::apply;
  void apply(model_update<Value>& u, Value eta, bool applied, std::uint64_t step,
             detail::device_ops<cpu_t>::context& c) {
    threads.push_back(c.exec.threads);
    apply(u, eta, applied, step);
  }
  std::vector<unsigned> threads;
};

/// Hooks declared in a form the driver cannot call.
template <class Value>
struct wrong_hooks : plain_step<Value> {
  using plain_step<Value>::plain_step;
  [[nodiscard]] int describe() const { return 0; }  // the driver passes a fingerprint
};

}  // namespace

TEST_CASE("a policy with only the required hooks gets the driver's defaults", "[optim][concepts]") {
  using A = plain_sum<float>;
  using R = plain_step<float>;
  std::vector<std::string> states(2);
  on_inproc(2, [&](int r, T& t) {
    communicator comm(t);
    composed_optimizer<A, R, T> opt(comm, {.dimension = 5, .learning_rate = 0.5F, .average = true});
    const std::vector<float> g(5, static_cast<float>(r + 1));
    const auto& u = opt.step(g);
    test::expect(u.dense && u.values == std::vector<float>(5, 0.75F), "the average (the driver divides), times eta");
    std::ostringstream os;
    opt.save(os);  // no state sections
    std::istringstream is(os.str());
    opt.load(is);
    states[static_cast<std::size_t>(r)] = os.str();
  });
  CHECK(states[0].size() == states[1].size());
  composed_optimizer<A, R> split(0, 1, {.dimension = 5});
  CHECK(split.fingerprint() == composed_optimizer<A, R>(0, 1, {.dimension = 5}).fingerprint());
  CHECK_THROWS_AS(
      (composed_optimizer<sketched_aggregation<float>, R>(
          0, 1,
          {.dimension = 50, .aggregation = {.sketch = sketch, .k = 5, .feedback = {.learning_rate_in_error = true}}})),
      std::invalid_argument);  // takes_applied_learning_rate defaults to false: eta in the memory refused
}

TEST_CASE("a rule that takes the device's context gets the driver's, as each call runs", "[optim][concepts]") {
  composed_optimizer<plain_sum<float>, context_step<float>> opt(0, 1, {.dimension = 5, .exec = {.threads = 3}});
  const std::vector<float> g(5, 1.0F);
  for (const auto& how : {std::optional<cpu_execution>{}, std::optional<cpu_execution>{{.threads = 2}}}) {
    auto rounds = how ? opt.step_rounds(g, *how) : opt.step_rounds(g);
    while (const auto* r = rounds.next()) static_cast<void>(r);  // one rank: a sum is the value itself
  }
  CHECK(opt.update_rule().threads == std::vector<unsigned>{3, 2});
  CHECK(opt.last_update().values == g);
  // Under another device's context (a CUDA optimizer's carries its host threads as `exec`), a host rule
  // gets a host context with those threads.
  struct device_context {
    cpu_execution exec;
  } device{.exec = {.threads = 4}};
  context_step<float> rule({}, 5, "test");
  model_update<float> u;
  u.values = g;
  u.dense = true;
  detail::hooks::apply_rule(rule, u, 1.0F, true, 0, device);
  CHECK(rule.threads == std::vector<unsigned>{4});
}

TEST_CASE("the stateful rules: the same bits as their formulas in float, on any thread count", "[optim][rules]") {
  // Each rule's documented arithmetic, one float operation at a time: the loop these rules ran before
  // their per-coordinate functions were shared with the device. d spans two workers' shares.
  constexpr std::uint64_t d = 600'000;
  const auto g = test::normal_vector<float>(d, 7);
  const std::vector<std::uint64_t> support{3, 70'000, 333'333, 599'999};
  for (const bool sparse : {false, true}) {
    for (const unsigned threads : {1U, 2U}) {
      INFO("sparse input " << sparse << ", threads " << threads);
      detail::device_ops<cpu_t>::context c{.exec = {.threads = threads}};
      const auto input = [&](model_update<float>& u) {  // refilled as the driver does: its capacity kept
        u.indices.clear();
        u.values.clear();
        u.dense = !sparse;
        if (sparse) {
          u.indices = support;
          for (const std::uint64_t i : support) u.values.push_back(g[i]);
        } else {
          u.values = g;
        }
      };
      const auto gradient_at = [&](std::size_t i) {
        return !sparse ? g[i] : std::find(support.begin(), support.end(), i) != support.end() ? g[i] : 0.0F;
      };
      momentum_update<float> heavy({.momentum = 0.9F, .nesterov = true}, d, "test");
      adam_update<float> adam({.weight_decay = 0.01F}, d, "test");
      adam_update<float> lazy({.lazy = true}, d, "test");
      std::vector<float> mom(d, 0.0F), m(d, 0.0F), s(d, 0.0F), lm(d, 0.0F), ls(d, 0.0F);
      model_update<float> a, b, l;
      for (std::uint64_t step = 0; step < 3; ++step) {
        input(a);
        input(b);
        input(l);
        const float* const buffers[] = {a.values.data(), b.values.data()};
        heavy.apply(a, 0.1F, false, step, c);
        adam.apply(b, 0.01F, false, step, c);
        lazy.apply(l, 0.01F, false, step, c);
        if (step > 0) {  // a sparse input densified in its own buffer, which has room for d since step 0
          CHECK(a.values.data() == buffers[0]);
          CHECK(b.values.data() == buffers[1]);
        }
        REQUIRE((a.dense && b.dense && a.values.size() == d && b.values.size() == d));
        REQUIRE((l.dense == !sparse && l.size() == (sparse ? support.size() : d)));
        const auto t = static_cast<float>(step + 1);
        const float c1 = 1.0F - std::pow(0.9F, t);
        const float c2 = 1.0F - std::pow(0.999F, t);
        const auto adam_at = [&](float& mi, float& si, float gi) {
          mi = 0.9F * mi + (1.0F - 0.9F) * gi;
          si = 0.999F * si + (1.0F - 0.999F) * gi * gi;
          return 0.01F * (mi / c1) / (std::sqrt(si / c2) + 1e-8F);
        };
        const auto same = [](float x, float y) {
          return std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y);
        };
        std::size_t mismatches = 0;
        for (std::size_t i = 0; i < d; ++i) {
          const float gi = gradient_at(i);
          mom[i] = 0.9F * mom[i] + gi;
          mismatches += !same(a.values[i], 0.1F * (gi + 0.9F * mom[i]));
          mismatches += !same(b.values[i], adam_at(m[i], s[i], gi));
        }
        for (std::size_t j = 0; j < l.size(); ++j) {
          const std::size_t i = sparse ? support[j] : j;
          mismatches += !same(l.values[j], adam_at(lm[i], ls[i], gradient_at(i)));
        }
        REQUIRE(mismatches == 0);
        CHECK(b.decay == 0.01F * 0.01F);
      }
    }
  }
}

TEST_CASE("a stateful rule refuses an update that does not fit its d coordinates, before any write", "[optim][rules]") {
  momentum_update<float> heavy({.momentum = 0.5F}, 4, "test");
  adam_update<float> lazy({.lazy = true}, 4, "test");
  model_update<float> too_long;
  too_long.values.assign(5, 1.0F);
  too_long.dense = true;
  model_update<float> outside;
  outside.indices = {1, 4};
  outside.values = {1.0F, 1.0F};
  CHECK_THROWS_WITH(heavy.apply(too_long, 1.0F, false, 0), "update rule: dense update of 5 values for 4 parameters");
  CHECK_THROWS_WITH(heavy.apply(outside, 1.0F, false, 0), "update rule: index 4 outside 4 parameters");
  CHECK_THROWS_WITH(lazy.apply(outside, 1.0F, false, 0), "update rule: index 4 outside 4 parameters");
  CHECK((!outside.dense && outside.values == std::vector<float>{1.0F, 1.0F}));  // left as it was
  model_update<float> fits;  // and the state is untouched: the first fitting step is a first step
  fits.values.assign(4, 2.0F);
  fits.dense = true;
  heavy.apply(fits, 1.0F, false, 0);
  CHECK(fits.values == std::vector<float>(4, 2.0F));
}

static_assert(aggregation_policy<plain_sum<float>> && update_rule<plain_step<float>, float>);
static_assert(update_rule<context_step<float>, float>);
static_assert(std::is_same_v<momentum_update<float>, momentum_update<float, cpu_t>>);
static_assert(!update_rule<wrong_hooks<float>, float>);  // declared, but not callable as the driver calls it
static_assert(!aggregation_policy<dense_sgd<float, T>>);
static_assert(recovery_policy<top_k_recovery, count_sketch<float, multiply_shift, cpu_t>>);
static_assert(recovery_policy<heavymix_recovery, count_sketch<double, poly4_hash, cpu_t>>);
static_assert(recovery_policy<threshold_recovery, count_sketch<std::int64_t, multiply_shift, cpu_t>>);
static_assert(!recovery_policy<sgd_update<float>, count_sketch<float, multiply_shift, cpu_t>>);
static_assert(device_operations<detail::device_ops<cpu_t>, float>);
static_assert(aggregation_policy<global_sketch_aggregation<double>> && aggregation_policy<gtopk_aggregation<float>>);
static_assert(update_rule<aggregated_gradient<float>, float> && update_rule<adam_update<double>, double>);

static_assert(distributed_optimizer<sketched_sgd<float, T>>);
static_assert(distributed_optimizer<global_sketch_sgd<double, T, poly4_hash>>);
static_assert(distributed_optimizer<fetch_sgd<float, T>>);
static_assert(distributed_optimizer<dense_sgd<std::int64_t, T>>);
static_assert(distributed_optimizer<true_topk_sgd<float, T>>);
static_assert(distributed_optimizer<local_topk_sgd<float, T>>);
static_assert(distributed_optimizer<gtopk_sgd<float, T>>);
static_assert(distributed_optimizer<composed_optimizer<fetch_aggregation<float>, adam_update<float>, T>>);
static_assert(!distributed_optimizer<composed_optimizer<fetch_aggregation<float>, adam_update<float>>>);  // split phase
static_assert(aggregation_policy<sketched_aggregation<float, poly4_hash, heavymix_recovery>>);
static_assert(update_rule<momentum_update<double>, double>);

TEST_CASE("any_optimizer holds every optimizer and steps it unchanged", "[optim]") {
  using O = sketched_sgd<float, T>;
  const sketched_sgd_options<float> o{.dimension = 3000, .sketch = sketch, .k = 20, .momentum = 0.5F};
  std::vector<trace<float>> direct(2);
  std::vector<trace<float>> held(2);
  on_inproc(2, [&](int r, T& t) {
    communicator comm(t);
    O plain(comm, o);
    any_optimizer<float> erased(std::in_place_type<O>, comm, o);
    any_optimizer<float> moved(fetch_sgd<float, T>(comm, {.dimension = 3000, .sketch = sketch, .k = 5}));
    for (std::uint64_t s = 0; s < 3; ++s) {
      const auto g = gradient_of<float>(r, s, 3000);
      direct[static_cast<std::size_t>(r)].updates.push_back(plain.step(g));
      held[static_cast<std::size_t>(r)].updates.push_back(erased.step(g));
      (void)moved.step(g);
    }
    test::expect(moved.stats().steps == 3 && erased.stats().steps == 3, "steps counted");
  });
  CHECK(held == direct);
}
