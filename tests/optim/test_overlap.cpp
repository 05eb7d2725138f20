// SPDX-License-Identifier: Apache-2.0
// The sketch's allreduce overlapped row by row with the sketching of the next
// rows (the `overlap_rows` option): the same bits as without it, over inproc
// and over TCP, where a helper thread drives the transport. Part of test_optim;
// also built alone as test_optim_overlap for the ThreadSanitizer run
// (scripts/sanitizers.sh).

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <span>
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
