// SPDX-License-Identifier: Apache-2.0
// The sketch's allreduce overlapped row by row with the sketching of the next
// rows (the `overlap_rows` option): the same bits as without it, over inproc
// and over TCP, where a helper thread drives the transport. Sliced sketches
// (the `slices` option, one row included): the update the slices' estimates
// give, computed here from the summed gradient, and the same bits carried
// with the overlap or in split phase without it. Part of test_optim;
// also built alone as test_optim_overlap for the ThreadSanitizer run
// (scripts/sanitizers.sh).

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <span>
#include <sstream>
#include <type_traits>
#include <vector>

#include "optim_harness.hpp"
#include "sketchsgd/sketchsgd.hpp"

using namespace sketchsgd;
using test::on_inproc;
#if defined(SKETCHSGD_TEST_HAVE_TCP)
using test::on_tcp;
#endif

namespace {

constexpr int overlap_world = 4;

/// Rank r's gradient at `step`: small integers, so every sum of sketches is
/// exact whatever the order of additions (what the overlap changes).
std::vector<float> integer_gradient(std::size_t d, int r, std::uint64_t step) {
  std::vector<float> g(d);
  splitmix64 rng(mix64((step << 8U) ^ static_cast<std::uint64_t>(r)));
  for (auto& x : g) x = static_cast<float>(static_cast<int>(rng.next_below(17)) - 8);
  return g;
}

/// The parameter digests after each step of Sketched-SGD (rows = 4) on
/// the ranks `run_world` starts (overlap_world of them), with or without the
/// row overlap.
template <class Run>
std::vector<std::vector<std::uint64_t>> overlap_digests(Run run_world, bool overlap, unsigned threads) {
  constexpr std::size_t d = 20000;
  std::vector<std::vector<std::uint64_t>> digests(overlap_world);
  run_world([&](int r, auto& t) {
    using Tr = std::remove_reference_t<decltype(t)>;
    communicator comm(t);
    sketched_sgd<float, Tr> opt(comm, {.dimension = d,
                                       .sketch = {.rows = 4, .cols = 1500, .seed = 3},
                                       .k = 50,
                                       .candidates_factor = 2,
                                       .exec = cpu_execution{threads},
                                       .overlap_rows = overlap});
    std::vector<float> params(d, 0.0F);
    for (std::uint64_t s = 0; s < 8; ++s) {
      opt.step(integer_gradient(d, r, s)).apply(std::span<float>(params));
      digests[static_cast<std::size_t>(r)].push_back(test::digest_of(params));
    }
  });
  return digests;
}

}  // namespace

TEST_CASE("overlapping the sketch's allreduce row by row changes nothing but the timing", "[optim][overlap]") {
  const auto inproc = [](auto body) { on_inproc(overlap_world, body); };
  for (const unsigned threads : {1U, 2U, 8U}) {  // 8 >= rows: still two groups of rows
    CAPTURE(threads);
    const auto plain = overlap_digests(inproc, false, threads);
    const auto overlapped = overlap_digests(inproc, true, threads);
    for (int r = 0; r < overlap_world; ++r) {
      CHECK(overlapped[static_cast<std::size_t>(r)] == plain[static_cast<std::size_t>(r)]);
      CHECK(overlapped[static_cast<std::size_t>(r)] == overlapped[0]);
    }
  }
  // Ranks that disagree on the overlap are a configuration mismatch, not a hang.
  std::atomic<int> mismatches{0};
  on_inproc(overlap_world, [&](int r, auto& t) {
    communicator comm(t);
    try {
      sketched_sgd<float, inproc_transport> opt(
          comm, {.dimension = 30000, .sketch = {.rows = 5, .cols = 2000, .seed = 4}, .k = 60, .overlap_rows = r == 1});
    } catch (const config_mismatch_error&) {
      mismatches.fetch_add(1);
    }
  });
  CHECK(mismatches.load() == overlap_world);
}

#if defined(SKETCHSGD_TEST_HAVE_TCP)
TEST_CASE("the row overlap over tcp: the helper thread drives the transport", "[optim][tcp][overlap]") {
  const auto over_tcp = [](auto body) { on_tcp(overlap_world, body); };
  const auto inproc = [](auto body) { on_inproc(overlap_world, body); };
  CHECK(overlap_digests(over_tcp, true, 2) == overlap_digests(inproc, false, 2));
}
#endif

namespace {

constexpr std::size_t sliced_d = 20000;

/// Step 0 mod 3: `integer_gradient` (small integers, many tied estimates);
/// 1: integers up to 2^15 in magnitude (few ties); 2: those in the first
/// eighth of the coordinates only, small integers elsewhere (the top k sit in
/// one slice, which must then give them all). Every sum of up to 4 ranks x
/// 20 coordinates in a cell stays exact in float.
std::vector<float> sliced_gradient(int r, std::uint64_t step) {
  std::vector<float> g = integer_gradient(sliced_d, r, step);
  if (step % 3 == 0) return g;
  splitmix64 rng(mix64((step << 8U) ^ static_cast<std::uint64_t>(r) ^ 0x5A5AU));
  const std::size_t wide = step % 3 == 1 ? sliced_d : sliced_d / 8;
  for (std::size_t i = 0; i < wide; ++i) g[i] = static_cast<float>(static_cast<int>(rng.next_below(1U << 16U)) - (1 << 15));
  return g;
}

/// The ranks' gradients at `step`, summed (exactly: small integers).
std::vector<float> summed_gradient(std::uint64_t step) {
  std::vector<float> sum(sliced_d, 0.0F);
  for (int r = 0; r < overlap_world; ++r) {
    const auto g = sliced_gradient(r, step);
    for (std::size_t i = 0; i < sliced_d; ++i) sum[i] += g[i];
  }
  return sum;
}

sketched_sgd_options<float> sliced_options(std::uint64_t rows, std::size_t slices, unsigned threads) {
  return {.dimension = sliced_d,
          .sketch = {.rows = rows, .cols = 1500, .seed = 3},
          .k = 400,                // more than a slice's first share: slices are asked again
          .candidates_factor = 0,  // the update is the estimates: the slices' tables are what it shows
          .error_feedback = false,
          .exec = cpu_execution{threads},
          .slices = slices};
}

/// The k largest |x| (ties to the lower index) with their values, in index order.
model_update<float> largest(const std::vector<float>& x, std::size_t k) {
  std::vector<std::uint64_t> order(x.size());
  std::iota(order.begin(), order.end(), std::uint64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint64_t a, std::uint64_t b) { return std::abs(x[a]) > std::abs(x[b]); });
  order.resize(k);
  std::sort(order.begin(), order.end());
  model_update<float> top;
  for (const std::uint64_t i : order) {
    top.indices.push_back(i);
    top.values.push_back(x[i]);
  }
  return top;
}

/// What the sliced sketch of the ranks' summed gradient at `step` yields:
/// slice s (coordinates [d s / S, d (s + 1) / S)) sketched alone, as keys from
/// 0, into cols (s + 1) / S - cols s / S columns with seed + s; the k largest
/// |estimate| over all slices, ties to the lower index.
model_update<float> sliced_reference(const sketched_sgd_options<float>& o, std::uint64_t step) {
  const std::vector<float> sum = summed_gradient(step);
  std::vector<float> estimate(sliced_d);
  for (std::size_t s = 0; s < o.slices; ++s) {
    const std::size_t lo = sliced_d * s / o.slices;
    const std::size_t hi = sliced_d * (s + 1) / o.slices;
    const std::uint64_t cols = o.sketch.cols * (s + 1) / o.slices - o.sketch.cols * s / o.slices;
    count_sketch<float> slice({.rows = o.sketch.rows, .cols = cols, .seed = o.sketch.seed + s});
    slice.accumulate(std::span<const float>(sum).subspan(lo, hi - lo));
    for (std::size_t i = lo; i < hi; ++i) estimate[i] = slice.estimate(i - lo);
  }
  return largest(estimate, o.k);
}

/// Each rank's updates over 4 steps, transport-driven (slices carried while
/// the next is sketched) or in split phase (carried by hand, one at a time).
template <class Run>
std::vector<std::vector<model_update<float>>> sliced_updates(Run run_world, const sketched_sgd_options<float>& o,
                                                             bool split_phase) {
  std::vector<std::vector<model_update<float>>> out(overlap_world);
  run_world([&](int r, auto& t) {
    using Tr = std::remove_reference_t<decltype(t)>;
    communicator comm(t);
    auto& mine = out[static_cast<std::size_t>(r)];
    if (split_phase) {
      using traits = detail::sketched_sgd_traits<float, multiply_shift, cpu_t, detail::optimizer_kind::sketched_sgd>;
      composed_optimizer<traits::aggregation, traits::update_rule> opt(r, overlap_world, traits::compose(o, o.exec));
      for (std::uint64_t s = 0; s < 4; ++s) {
        const auto g = sliced_gradient(r, s);
        auto rounds = opt.step_rounds(g);
        while (auto* round = rounds.next()) detail::run_round(comm, *round);
        mine.push_back(opt.last_update());
      }
    } else {
      sketched_sgd<float, Tr> opt(comm, o);
      for (std::uint64_t s = 0; s < 4; ++s) mine.push_back(opt.step(sliced_gradient(r, s)));
    }
  });
  return out;
}

void check_updates(const model_update<float>& got, const model_update<float>& expected) {
  CHECK(got.indices == expected.indices);
  CHECK(got.values == expected.values);
}

}  // namespace

TEST_CASE("sliced sketches: each slice's table carried while the next is sketched, the update their top k",
          "[optim][overlap][slices]") {
  const auto inproc = [](auto body) { on_inproc(overlap_world, body); };
  for (const std::uint64_t rows : {1U, 3U}) {
    for (const std::size_t slices : {2U, 4U, 7U}) {
      for (const unsigned threads : {1U, 2U}) {
        CAPTURE(rows, slices, threads);
        const auto o = sliced_options(rows, slices, threads);
        const auto driven = sliced_updates(inproc, o, false);
        const auto carried = sliced_updates(inproc, o, true);
        for (std::uint64_t s = 0; s < 4; ++s) {
          CAPTURE(s);
          const auto expected = sliced_reference(o, s);
          for (int r = 0; r < overlap_world; ++r) {
            check_updates(driven[static_cast<std::size_t>(r)][s], expected);
            check_updates(carried[static_cast<std::size_t>(r)][s], expected);
          }
        }
      }
    }
  }
}

TEST_CASE("a peer lost during an overlapped round: the step raises, the helper thread ends", "[optim][slices]") {
  // Rank 1 agrees on the configuration and leaves; rank 0's first table is
  // carried on the helper thread, fails there (the peer departed, or the
  // 200 ms timeout), and step() rethrows it.
  inproc_world peers(2, {.timeout = std::chrono::milliseconds(200)});
  std::atomic<bool> raised{false};
  test::run_threads(2, [&](int r) {
    auto t = peers.transport(r);
    communicator comm(t);
    auto o = sliced_options(1, 4, 1);
    o.nonfinite = nonfinite_policy::unchecked;  // the first round is then an overlapped table
    sketched_sgd<float, inproc_transport> opt(comm, o);
    if (r == 1) return;
    try {
      opt.step(sliced_gradient(0, 0));
    } catch (const transport_error&) {  // timeout_error is one too
      raised = true;
    }
  });  // the optimizer, and its helper thread, are gone without a hang or an abort
  CHECK(raised.load());
}


namespace {

fetch_sgd_options<float> fetch_sliced_options(std::uint64_t rows, std::size_t slices, unsigned threads) {
  return {.dimension = sliced_d,
          .sketch = {.rows = rows, .cols = 1500, .seed = 3},
          .k = 400,  // more than a slice's first share: slices are asked again
          .momentum = 0.5F,
          .exec = cpu_execution{threads},
          .slices = slices};
}

/// FetchSGD on sliced sketches, step by step from the ranks' summed
/// gradients: slice s of the sum sketched alone (keys from 0, its share of
/// the columns, seed + s); S_u <- rho S_u + S_g and S_e <- S_e + S_u on every
/// slice's cells (eta = 1); Delta the k largest |estimate| of S_e over all
/// slices, ties to the lower index; the cells of supp(Delta) zeroed in S_e and
/// S_u of its slice.
std::vector<model_update<float>> fetch_sliced_reference(const fetch_sgd_options<float>& o, std::uint64_t steps) {
  std::vector<count_sketch<float>> s_u;
  std::vector<count_sketch<float>> s_e;
  std::vector<std::size_t> lo;
  for (std::size_t s = 0; s <= o.slices; ++s) lo.push_back(sliced_d * s / o.slices);
  for (std::size_t s = 0; s < o.slices; ++s) {
    const std::uint64_t cols = o.sketch.cols * (s + 1) / o.slices - o.sketch.cols * s / o.slices;
    s_u.emplace_back(sketch_config{o.sketch.rows, cols, o.sketch.seed + s});
    s_e.emplace_back(sketch_config{o.sketch.rows, cols, o.sketch.seed + s});
  }
  std::vector<model_update<float>> out;
  for (std::uint64_t step = 0; step < steps; ++step) {
    const std::vector<float> sum = summed_gradient(step);
    std::vector<float> estimate(sliced_d);
    for (std::size_t s = 0; s < o.slices; ++s) {
      count_sketch<float> s_g(s_u[s].config());
      s_g.accumulate(std::span<const float>(sum).subspan(lo[s], lo[s + 1] - lo[s]));
      auto u = s_u[s].table();
      auto e = s_e[s].table();
      for (std::size_t j = 0; j < u.size(); ++j) {
        u[j] = o.momentum * u[j] + s_g.table()[j];
        e[j] = e[j] + u[j];
      }
      for (std::size_t i = lo[s]; i < lo[s + 1]; ++i) estimate[i] = s_e[s].estimate(i - lo[s]);
    }
    model_update<float> delta = largest(estimate, o.k);
    for (const std::uint64_t i : delta.indices) {
      const auto s = static_cast<std::size_t>(std::upper_bound(lo.begin(), lo.end(), i) - lo.begin() - 1);
      const std::uint64_t key[] = {i - lo[s]};
      s_e[s].zero_buckets_of(key);
      s_u[s].zero_buckets_of(key);
    }
    out.push_back(std::move(delta));
  }
  return out;
}

/// Each rank's FetchSGD updates over `steps`, transport-driven (slices
/// carried while the next is sketched), in split phase (carried by hand), or
/// restored from a checkpoint taken after two steps.
enum class fetch_run { driven, split_phase, resumed };
template <class Run>
std::vector<std::vector<model_update<float>>> fetch_sliced_updates(Run run_world, const fetch_sgd_options<float>& o,
                                                                   fetch_run how, std::uint64_t steps) {
  std::vector<std::vector<model_update<float>>> out(overlap_world);
  run_world([&](int r, auto& t) {
    using Tr = std::remove_reference_t<decltype(t)>;
    communicator comm(t);
    auto& mine = out[static_cast<std::size_t>(r)];
    if (how == fetch_run::split_phase) {
      using traits = detail::fetch_sgd_traits<float, multiply_shift, cpu_t>;
      composed_optimizer<traits::aggregation, traits::update_rule> opt(r, overlap_world, traits::compose(o, o.exec));
      for (std::uint64_t s = 0; s < steps; ++s) {
        const auto g = sliced_gradient(r, s);
        auto rounds = opt.step_rounds(g);
        while (auto* round = rounds.next()) detail::run_round(comm, *round);
        mine.push_back(opt.last_update());
      }
      return;
    }
    fetch_sgd<float, Tr> opt(comm, o);
    std::uint64_t s = 0;
    if (how == fetch_run::resumed) {
      for (; s < 2; ++s) mine.push_back(opt.step(sliced_gradient(r, s)));
      std::stringstream saved;
      opt.save(saved);
      fetch_sgd<float, Tr> restored(comm, o);
      restored.load(saved);
      for (; s < steps; ++s) mine.push_back(restored.step(sliced_gradient(r, s)));
      return;
    }
    for (; s < steps; ++s) mine.push_back(opt.step(sliced_gradient(r, s)));
  });
  return out;
}

}  // namespace

TEST_CASE("FetchSGD on sliced sketches: momentum and error slice by slice, Delta their top k, each table carried "
          "while the next is sketched",
          "[optim][overlap][slices][fetchsgd]") {
  const auto inproc = [](auto body) { on_inproc(overlap_world, body); };
  constexpr std::uint64_t steps = 5;
  for (const std::uint64_t rows : {1U, 3U}) {
    for (const std::size_t slices : {2U, 4U, 7U}) {
      const unsigned threads = slices == 4 ? 2 : 1;
      CAPTURE(rows, slices, threads);
      const auto o = fetch_sliced_options(rows, slices, threads);
      const auto expected = fetch_sliced_reference(o, steps);
      for (const fetch_run how : {fetch_run::driven, fetch_run::split_phase, fetch_run::resumed}) {
        CAPTURE(static_cast<int>(how));
        const auto got = fetch_sliced_updates(inproc, o, how, steps);
        for (std::uint64_t s = 0; s < steps; ++s) {
          CAPTURE(s);
          for (int r = 0; r < overlap_world; ++r) check_updates(got[static_cast<std::size_t>(r)][s], expected[s]);
        }
      }
    }
  }
}

namespace {

/// Slices out of range or on the root topology are refused by `Opt`, and
/// ranks that disagree on them all raise config_mismatch_error.
template <template <class, class> class Opt, class Options>
void check_slices_refused(Options (*options)(std::uint64_t, std::size_t, unsigned)) {
  const auto make = [](const Options& o) {
    on_inproc(1, [&](int, auto& t) {
      communicator comm(t);
      Opt<float, inproc_transport> opt(comm, o);
    });
  };
  auto o = options(1, 0, 1);
  CHECK_THROWS_AS(make(o), std::invalid_argument);
  o.slices = 1501;  // more slices than columns
  CHECK_THROWS_AS(make(o), std::invalid_argument);
  o.slices = 2;
  o.topology = topology::root;
  CHECK_THROWS_AS(make(o), std::invalid_argument);
  std::atomic<int> mismatches{0};
  on_inproc(overlap_world, [&](int r, auto& t) {
    communicator comm(t);
    try {
      Opt<float, inproc_transport> opt(comm, options(1, r == 1 ? 2 : 1, 1));
    } catch (const config_mismatch_error&) {
      mismatches.fetch_add(1);
    }
  });
  CHECK(mismatches.load() == overlap_world);
}

template <class V, class T>
using sketched_sgd_of = sketched_sgd<V, T>;
template <class V, class T>
using fetch_sgd_of = fetch_sgd<V, T>;

}  // namespace

TEST_CASE("sliced sketches are refused where they cannot run, and ranks must agree on them", "[optim][slices]") {
  check_slices_refused<sketched_sgd_of>(&sliced_options);
  auto o = sliced_options(3, 2, 1);
  o.overlap_rows = true;
  CHECK_THROWS_AS(on_inproc(1,
                            [&](int, auto& t) {
                              communicator comm(t);
                              sketched_sgd<float, inproc_transport> opt(comm, o);
                            }),
                  std::invalid_argument);
  check_slices_refused<fetch_sgd_of>(&fetch_sliced_options);
}

#if defined(SKETCHSGD_TEST_HAVE_TCP)
TEST_CASE("sliced sketches over tcp (Sketched-SGD and FetchSGD): the helper thread drives the transport", "[optim][tcp][slices]") {
  const auto over_tcp = [](auto body) { on_tcp(overlap_world, body); };
  const auto o = sliced_options(1, 4, 2);
  const auto driven = sliced_updates(over_tcp, o, false);
  for (std::uint64_t s = 0; s < 4; ++s) {
    const auto expected = sliced_reference(o, s);
    for (int r = 0; r < overlap_world; ++r) check_updates(driven[static_cast<std::size_t>(r)][s], expected);
  }
  const auto f = fetch_sliced_options(3, 4, 2);
  const auto fetch_expected = fetch_sliced_reference(f, 4);
  const auto fetch_driven = fetch_sliced_updates(over_tcp, f, fetch_run::driven, 4);
  for (std::uint64_t s = 0; s < 4; ++s) {
    for (int r = 0; r < overlap_world; ++r) check_updates(fetch_driven[static_cast<std::size_t>(r)][s], fetch_expected[s]);
  }
}
#endif
