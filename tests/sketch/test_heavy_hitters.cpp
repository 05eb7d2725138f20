// SPDX-License-Identifier: Apache-2.0
// l2 heavy hitters and HEAVYMIX.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <set>
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
