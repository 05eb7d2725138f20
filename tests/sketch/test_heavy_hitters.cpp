// SPDX-License-Identifier: Apache-2.0
// l2 heavy hitters and HEAVYMIX, and the recovery policies that select as they do.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <span>
#include <type_traits>
#include <vector>

#include "sketchsgd/sketchsgd.hpp"
#include "test_support.hpp"

using namespace sketchsgd;

namespace {

count_sketch<float, poly4_hash> spiky_sketch(std::size_t d, std::uint64_t seed) {
  auto x = test::normal_vector<float>(d, seed);
  for (std::size_t i = 0; i < d; i += d / 10) x[i] = 500.0F;  // ten planted spikes
  count_sketch<float, poly4_hash> s({.rows = 5, .cols = 4000, .seed = seed});
  s.accumulate(x);
  return s;
}

}  // namespace

TEST_CASE("heavy_hitters returns every coordinate over the threshold, in order", "[heavy_hitters]") {
  const std::size_t d = 100000;
  const auto s = spiky_sketch(d, 4);
  const double phi = 0.01;
  std::vector<float> est(d);
  s.estimate_all(est);
  const double l2 = s.l2_estimate();
  sparse_update<float> expected;
  for (std::size_t i = 0; i < d; ++i) {
    if (static_cast<double>(est[i]) * static_cast<double>(est[i]) >= phi * l2 * l2) {
      expected.indices.push_back(i);
      expected.values.push_back(est[i]);
    }
  }
  REQUIRE(expected.size() >= 10);  // the spikes hold most of the mass
  CHECK(heavy_hitters(s, d, phi) == expected);
  CHECK(heavy_hitters(s, d, phi, {2}) == expected);
  CHECK_THROWS_AS(heavy_hitters(s, d, 0.0), std::invalid_argument);
  CHECK_THROWS_AS(heavy_hitters(s, d, 1.5), std::invalid_argument);
}

TEST_CASE("heavymix keeps the heavy hitters and fills up to k from a shared seed", "[heavy_hitters]") {
  const std::size_t d = 100000;
  const std::size_t k = 50;
  const auto s = spiky_sketch(d, 6);
  const auto heavy = heavy_hitters(s, d, 1.0 / static_cast<double>(k));
  const auto a = heavymix(s, d, k, 77);
  const auto b = heavymix(s, d, k, 77, {2});
  const auto c = heavymix(s, d, k, 78);
  CHECK(a == b);
  CHECK(a.indices != c.indices);
  REQUIRE(a.size() == k);
  CHECK(std::is_sorted(a.indices.begin(), a.indices.end()));
  CHECK(std::adjacent_find(a.indices.begin(), a.indices.end()) == a.indices.end());
  for (const auto i : heavy.indices) CHECK(std::binary_search(a.indices.begin(), a.indices.end(), i));
  for (std::size_t n = 0; n < a.size(); ++n) CHECK(a.values[n] == s.estimate(a.indices[n]));
  CHECK_THROWS_AS(heavymix(s, d, 0, 1), std::invalid_argument);
  CHECK_THROWS_AS(heavymix(s, 10, 11, 1), std::invalid_argument);
}

TEST_CASE("heavymix with k = d returns every coordinate", "[heavy_hitters]") {
  const auto s = spiky_sketch(1000, 2);
  const auto all = heavymix(s, 1000, 1000, 5);
  REQUIRE(all.size() == 1000);
  for (std::size_t i = 0; i < 1000; ++i) REQUIRE(all.indices[i] == i);
}

namespace {

/// Equal indices, and values equal or both NaN (a drawn fill coordinate may share a NaN cell).
template <class V>
bool same_selection(const sparse_update<V>& a, const sparse_update<V>& b) {
  if (a.indices != b.indices || a.values.size() != b.values.size()) return false;
  for (std::size_t j = 0; j < a.values.size(); ++j) {
    if (!(a.values[j] == b.values[j] || (a.values[j] != a.values[j] && b.values[j] != b.values[j]))) return false;
  }
  return true;
}

/// What HEAVYMIX and threshold recovery select, by definition: every
/// coordinate whose estimate clears phi l2^2 (heavy_hitters), the `count`
/// largest of them if there are more.
template <class V, class Sketch>
sparse_update<V> heavy_reference(const Sketch& s, std::uint64_t d, double phi, std::size_t count) {
  sparse_update<V> heavy = heavy_hitters(s, d, phi);
  if (heavy.size() <= count) return heavy;
  const auto best = top_k(heavy.values, count);  // positions in index order: ties to the lower index
  sparse_update<V> kept;
  kept.values = best.values;
  for (const std::uint64_t pos : best.indices) kept.indices.push_back(heavy.indices[pos]);
  return kept;
}

}  // namespace

TEMPLATE_TEST_CASE("heavymix and the threshold and HEAVYMIX policies select by their definition",
                   "[heavy_hitters][recovery]", float, double, std::int64_t) {
  // heavymix and the policies take the sketch's top count and keep it above
  // the threshold (so any device that can take a top k runs them): the same
  // set and values as thresholding every estimate.
  using V = TestType;
  using ops = detail::device_ops<cpu_t>;
  ops::context ctx{};
  const std::size_t d = 20000;
  std::size_t cut = 0;  // threshold cases where more than count were heavy: the cut is exercised
  std::size_t whole = 0;  // and where all of a non-empty heavy set was kept
  for (const std::size_t rows : {std::size_t{1}, std::size_t{3}, std::size_t{5}}) {
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
      std::vector<V> x(d);
      splitmix64 rng(seed * 31 + rows);
      for (auto& e : x) e = static_cast<V>(static_cast<std::int64_t>(rng.next_below(9)) - 4);  // many ties
      for (std::size_t i = 0; i < d; i += 997) x[i] = static_cast<V>(300 + static_cast<int>(i % 7));  // heavy, tied
      if constexpr (std::is_floating_point_v<V>) {
        if (seed == 4) x[5] = std::numeric_limits<V>::quiet_NaN();
      }
      count_sketch<V, multiply_shift> s({.rows = rows, .cols = 500, .seed = seed});
      s.accumulate(std::span<const V>(x));
      std::vector<V> scratch(d);
      for (const std::size_t count : {std::size_t{1}, std::size_t{7}, std::size_t{25}, std::size_t{60},
                                      std::size_t{400}}) {
        INFO("rows " << rows << ", seed " << seed << ", count " << count);
        for (const double phi : {0.001, 0.01, 0.2}) {
          INFO("phi " << phi);
          const std::size_t heavy = heavy_hitters(s, d, phi).size();
          if (heavy != 0) ++(heavy > count ? cut : whole);
          CHECK(same_selection(threshold_recovery{.phi = phi}.select<ops>(s, d, count, std::span<V>(scratch), ctx, 0),
                               heavy_reference<V>(s, d, phi, count)));
        }
        for (const std::uint64_t step : {std::uint64_t{0}, std::uint64_t{5}}) {
          INFO("step " << step);
          const std::uint64_t fill_seed = mix64(seed ^ (0x9E3779B97F4A7C15ULL * (step + 1)));
          auto mixed = detail::mix_in_fill(heavy_reference<V>(s, d, 1.0 / static_cast<double>(count), count), d,
                                           count, fill_seed);
          for (const std::size_t j : mixed.fill) mixed.update.values[j] = s.estimate(mixed.update.indices[j]);
          CHECK(same_selection(heavymix(s, d, count, fill_seed), mixed.update));
          CHECK(same_selection(
              heavymix_recovery{.seed = seed}.select<ops>(s, d, count, std::span<V>(scratch), ctx, step),
              mixed.update));
        }
      }
    }
  }
  CHECK(cut > 10);
  CHECK(whole > 10);
}
