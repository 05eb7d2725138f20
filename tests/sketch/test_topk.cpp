// SPDX-License-Identifier: Apache-2.0
// Exact top-k over dense spans and unsketch from a Count Sketch, checked
// against a sort-based reference: ties to the lower index, NaN never chosen,
// results independent of the thread count.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "sketchsgd/sketchsgd.hpp"
#include "test_support.hpp"

using namespace sketchsgd;

namespace {

template <class Value>
bool is_nan(Value v) {
  if constexpr (std::is_floating_point_v<Value>) {
    return std::isnan(v);
  } else {
    return false;
  }
}

template <class Value>
long double magnitude(Value v) {
  return std::fabs(static_cast<long double>(v));
}

// Sort-based reference: order by (|x| desc, index asc), skip NaN, keep k,
// return in index order.
template <class Value>
sparse_update<Value> reference_top_k(const std::vector<Value>& x, std::size_t k) {
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!is_nan(x[i])) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return magnitude(x[a]) > magnitude(x[b]); });
  order.resize(std::min(k, order.size()));
  std::sort(order.begin(), order.end());
  sparse_update<Value> out;
  for (const std::size_t i : order) {
    out.indices.push_back(i);
    out.values.push_back(x[i]);
  }
  return out;
}

template <class Value>
void check_against_reference(const std::vector<Value>& x, std::size_t k) {
  const auto expected = reference_top_k(x, k);
  for (const unsigned threads : {1U, 2U, 3U}) {
    CAPTURE(x.size(), k, threads);
    const auto got = top_k(x, k, {threads});
    REQUIRE(got.indices == expected.indices);
    // Compare bit patterns so -0.0 vs 0.0 and NaN payloads would show.
    for (std::size_t n = 0; n < got.size(); ++n)
      REQUIRE(std::memcmp(&got.values[n], &expected.values[n], sizeof(Value)) == 0);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("dense top_k equals the sort-based reference", "[topk]", float, double, std::int32_t, std::int64_t) {
  for (const std::size_t n : {std::size_t{1}, std::size_t{10}, std::size_t{1000}, std::size_t{300000}}) {
    for (const std::uint64_t seed : {1ULL, 2ULL}) {
      std::vector<TestType> x;
      if constexpr (std::is_integral_v<TestType>) {
        x = test::integer_vector<TestType>(n, 50, seed);  // many ties
      } else {
        x = test::normal_vector<TestType>(n, seed);
      }
      for (const std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{7}, n / 3, n, n + 5}) {
        check_against_reference(x, k);
      }
    }
  }
}

TEST_CASE("NaN is never selected, and infinities and signed zeros are ordered by magnitude", "[topk]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {nan, -0.0F, 3.0F, -inf, nan, 0.0F, -3.0F, 1e-40F, -nan};
  check_against_reference(x, 3);  // -inf, 3 (index 2), -3 (index 6)
  const auto all = top_k(x, 100);
  CHECK(all.size() == 6);  // every non-NaN
  CHECK(std::none_of(all.values.begin(), all.values.end(), [](float v) { return std::isnan(v); }));
  CHECK(top_k(x, 1).indices == std::vector<std::uint64_t>{3});
}

TEST_CASE("the most negative integer is the largest magnitude", "[topk]") {
  const std::vector<std::int32_t> x = {5, std::numeric_limits<std::int32_t>::min(),
                                       std::numeric_limits<std::int32_t>::max(), -5};
  CHECK(top_k(x, 1).indices == std::vector<std::uint64_t>{1});
  check_against_reference(x, 2);
  const std::vector<std::int64_t> y = {std::numeric_limits<std::int64_t>::max(),
                                       std::numeric_limits<std::int64_t>::min()};
  CHECK(top_k(y, 1).indices == std::vector<std::uint64_t>{1});
}

TEST_CASE("huge tie groups resolve to the lowest indices", "[topk]") {
  // 400000 equal magnitudes: the boundary bucket never shrinks below the
  // gather cap, so the selection goes down to the last digit and scans ties.
  std::vector<float> x(400000, 1.0F);
  for (std::size_t i = 0; i < x.size(); i += 3) x[i] = -1.0F;
  x[123456] = 2.0F;
  x[7] = std::numeric_limits<float>::quiet_NaN();
  check_against_reference(x, 50000);
  std::vector<std::int64_t> zeros(200000, 0);
  zeros[199999] = 1;
  check_against_reference(zeros, 100000);
}

TEST_CASE("keys that differ only in their low bits are separated", "[topk]") {
  // Consecutive floats share every digit but the last.
  std::vector<float> x(100000);
  float v = 1.0F;
  for (auto& e : x) {
    e = v;
    v = std::nextafter(v, 2.0F);
  }
  std::reverse(x.begin(), x.end());
  check_against_reference(x, 33333);
  std::vector<double> y(70000);
  double w = 1.0;
  for (auto& e : y) {
    e = -w;
    w = std::nextafter(w, 2.0);
  }
  check_against_reference(y, 1234);
}

TEMPLATE_TEST_CASE("unsketch equals top_k of estimate_all", "[topk]", float, std::int32_t) {
  const std::size_t d = 200000;
  count_sketch<TestType> s({.rows = 5, .cols = 20000, .seed = 31});
  if constexpr (std::is_integral_v<TestType>) {
    s.accumulate(test::integer_vector<TestType>(d, 1000, 8));
  } else {
    s.accumulate(test::normal_vector<TestType>(d, 8));
  }
  std::vector<TestType> est(d);
  s.estimate_all(est);
  const auto expected = top_k(est, 500);
  CHECK(top_k(s, d, 500) == expected);
  CHECK(top_k(s, d, 500, {2}) == expected);
  std::vector<TestType> scratch(d);
  CHECK(top_k(s, d, 500, std::span<TestType>(scratch), {2}) == expected);
  std::vector<TestType> wrong(d - 1);
  CHECK_THROWS_AS(top_k(s, d, 500, std::span<TestType>(wrong)), std::invalid_argument);
}

// The threshold pass (detail::top_k_by_threshold) must give exactly what the
// estimate-everything path gives wherever it answers, and must decline where
// it cannot be sure. Inputs: noise with planted spikes, integers with many
// equal estimates, sketches of 1 to 5 rows, k from 1 to a few percent of d.
TEMPLATE_TEST_CASE("the threshold pass of unsketch equals the estimate-everything path", "[topk]", float, double,
                   std::int32_t, std::int64_t) {
  const std::size_t d = 300000;
  for (const std::uint64_t rows : {1U, 2U, 3U, 5U}) {
    for (const std::uint64_t seed : test::statistical_seeds) {
      INFO("rows " << rows << ", seed " << seed);
      count_sketch<TestType> s({.rows = rows, .cols = 30000 / rows, .seed = seed});
      std::vector<TestType> x;
      if constexpr (std::is_integral_v<TestType>) {
        x = test::integer_vector<TestType>(d, 6, seed);  // small values: estimates tie often
      } else {
        x = test::normal_vector<TestType>(d, seed);
      }
      splitmix64 rng(seed + 100);
      for (int spike = 0; spike < 300; ++spike) x[rng.next_below(d)] = static_cast<TestType>(40 + spike % 7);
      s.accumulate(x);
      for (const std::size_t k : {std::size_t{1}, std::size_t{100}, std::size_t{5000}}) {
        INFO("k " << k);
        std::vector<TestType> scratch(d);
        const auto expected = detail::top_k_from_estimates(s, d, k, std::span<TestType>(scratch), 1);
        const auto fast = detail::top_k_by_threshold(s, d, k, 2);
        REQUIRE(fast.has_value());  // these inputs are what it is for: it must answer
        CHECK(*fast == expected);
        CHECK(detail::top_k_by_threshold(s, d, k, 1) == fast);
        CHECK(top_k(s, d, k, {2}) == expected);
      }
    }
  }
}

// The walk of one multiply-shift row answers by itself (no scan behind it),
// on either thread count (they build its least-key table, tested on its
// own), with the k-th's magnitude shared by many buckets (small integers)
// or by one (noise), and says so when too few keys reach the threshold, more
// than the cap would be kept or the keys do not fit 32 bits; k = 0 is empty.
TEMPLATE_TEST_CASE("the bucket walk selects exactly the top k", "[topk]", float, std::int32_t) {
  const std::size_t d = 300000;
  for (const std::uint64_t seed : test::statistical_seeds) {
    count_sketch<TestType> s({.rows = 1, .cols = 20000, .seed = seed});
    if constexpr (std::is_integral_v<TestType>) {
      s.accumulate(test::integer_vector<TestType>(d, 6, seed));
    } else {
      s.accumulate(test::normal_vector<TestType>(d, seed));
    }
    std::vector<TestType> est(d);
    s.estimate_all(est);
    for (const std::size_t k : {std::size_t{1}, std::size_t{777}, std::size_t{6000}}) {
      INFO("seed " << seed << ", k " << k);
      const auto expected = top_k(est, k);
      using key = detail::magnitude_key<TestType>;
      const auto threshold = key::of(expected.values[static_cast<std::size_t>(
          std::min_element(expected.values.begin(), expected.values.end(),
                           [](TestType a, TestType b) { return key::of(a) < key::of(b); }) -
          expected.values.begin())]);
      for (const unsigned workers : {1U, 2U}) {
        sparse_update<TestType> best;
        auto& ws = detail::thread_unsketch_workspace<TestType>();
        const auto row = std::span<const TestType>(s.table());
        REQUIRE(detail::top_k_by_walking(s.hash().row(0), row, d, threshold, k, d, workers, ws, best) ==
                detail::walk_outcome::done);
        CHECK(best == expected);
        CHECK(detail::top_k_by_walking(s.hash().row(0), row, d, threshold, d, d, workers, ws, best) ==
              detail::walk_outcome::too_few);
        // More keys than the cap allows: it declines (the caller scans).
        CHECK(detail::top_k_by_walking(s.hash().row(0), row, d, threshold, k, k / 4, workers, ws, best) ==
              detail::walk_outcome::declined);
      }
      // Keys beyond 32 bits (a walk that would apply): declined before any
      // table is built for them.
      const std::uint64_t wide = detail::least_key_table::none;
      REQUIRE(detail::bucket_walk(s.hash().row(0), wide).usable());
      sparse_update<TestType> best;
      auto& ws = detail::thread_unsketch_workspace<TestType>();
      const auto row = std::span<const TestType>(s.table());
      CHECK(detail::top_k_by_walking(s.hash().row(0), row, wide, threshold, k, d, 2, ws, best) ==
            detail::walk_outcome::declined);
      best.indices.assign(3, 7);
      REQUIRE(detail::top_k_by_walking(s.hash().row(0), row, d, threshold, 0, d, 2, ws, best) ==
              detail::walk_outcome::done);
      CHECK(best.indices.empty());
      CHECK(best.values.empty());
    }
  }
}

TEST_CASE("the threshold pass declines what it cannot be sure of, and the result is still exact", "[topk]") {
  const std::size_t d = 300000;
  SECTION("NaN cells in a sketch of several rows: estimated as estimate_all does, never selected") {
    count_sketch<float> s({.rows = 3, .cols = 10000, .seed = 4});
    s.accumulate(test::normal_vector<float>(d, 4));
    for (std::size_t c = 0; c < 40; ++c) s.row(c % 3)[17 + 101 * c] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> est(d);
    s.estimate_all(est);
    const auto fast = detail::top_k_by_threshold(s, d, 100, 2);
    REQUIRE(fast.has_value());
    CHECK(*fast == top_k(est, 100));
  }
  SECTION("a NaN cell in one row is never selected") {
    count_sketch<float> s({.rows = 1, .cols = 10000, .seed = 4});
    s.accumulate(test::normal_vector<float>(d, 4));
    s.row(0)[17] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> est(d);
    s.estimate_all(est);
    const auto fast = detail::top_k_by_threshold(s, d, 100, 2);
    REQUIRE(fast.has_value());
    CHECK(*fast == top_k(est, 100));
  }
  SECTION("k beyond an eighth of d, and ties at zero") {
    count_sketch<std::int32_t> s({.rows = 1, .cols = 1000, .seed = 4});
    std::vector<std::int32_t> x(d, 0);
    for (std::size_t i = 0; i < d; i += 1000) x[i] = 1;  // most buckets stay zero
    s.accumulate(x);
    CHECK_FALSE(detail::top_k_by_threshold(s, d, d / 4, 2).has_value());
    CHECK_FALSE(detail::top_k_by_threshold(s, d, d / 2 + 1, 2).has_value());
    std::vector<std::int32_t> est(d);
    s.estimate_all(est);
    CHECK(top_k(s, d, d / 2 + 1, {2}) == top_k(est, d / 2 + 1));
  }
}

TEST_CASE("add_scaled applies a sparse update and checks bounds first", "[topk]") {
  std::vector<float> w = {1, 1, 1, 1};
  sparse_update<float> u{{1, 3}, {2.0F, -4.0F}};
  add_scaled(std::span<float>(w), u, -0.5F);
  CHECK(w == std::vector<float>{1, 0, 1, 3});
  u.indices = {1, 4};
  CHECK_THROWS_AS(add_scaled(std::span<float>(w), u, 1.0F), std::invalid_argument);
  CHECK(w == std::vector<float>{1, 0, 1, 3});
}
