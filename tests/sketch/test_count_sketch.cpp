// SPDX-License-Identifier: Apache-2.0
// count_sketch, deterministic tier: the definition, exact integer linearity,
// merge laws bit for bit, thread-count independence, exact recovery when the
// table is far larger than the support, and the error contract.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "sketchsgd/sketchsgd.hpp"
#include "test_support.hpp"

using namespace sketchsgd;

namespace {

// The sketch by its definition, one point query per (row, coordinate).
template <class Sketch, class Value>
std::vector<Value> reference_table(const sketch_config& cfg, const std::vector<Value>& x, std::uint64_t offset) {
  const typename Sketch::hash_type h(cfg.seed, static_cast<std::uint32_t>(cfg.rows),
                                     static_cast<std::uint32_t>(cfg.cols));
  std::vector<Value> t(cfg.rows * cfg.cols, Value{});
  for (std::uint32_t r = 0; r < cfg.rows; ++r) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      const bucket_sign bs = h(r, offset + i);
      auto& cell = t[r * cfg.cols + bs.bucket];
      cell = detail::cell_add(cell, detail::signed_value(bs.sign, x[i]));
    }
  }
  return t;
}

template <class Sketch>
std::vector<typename Sketch::value_type> table_of(const Sketch& s) {
  return {s.table().begin(), s.table().end()};
}

template <class Value>
std::vector<Value> test_vector(std::size_t n, std::uint64_t seed) {
  if constexpr (std::is_integral_v<Value>) {
    return test::integer_vector<Value>(n, 1000, seed);
  } else {
    return test::normal_vector<Value>(n, seed);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("accumulate follows the definition", "[count_sketch]", (count_sketch<float, multiply_shift>),
                   (count_sketch<double, multiply_shift>), (count_sketch<std::int32_t, multiply_shift>),
                   (count_sketch<std::int64_t, multiply_shift>), (count_sketch<float, poly4_hash>),
                   (count_sketch<std::int64_t, poly4_hash>)) {
  using value = typename TestType::value_type;
  const sketch_config cfg{.rows = 5, .cols = 97, .seed = 17};
  const auto x = test_vector<value>(3000, 5);
  for (const std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{4294967000}}) {
    CAPTURE(offset);
    TestType s(cfg);
    s.accumulate(x, offset);
    CHECK(table_of(s) == reference_table<TestType>(cfg, x, offset));
  }
}

TEMPLATE_TEST_CASE("results do not depend on the thread count", "[count_sketch]", float, double, std::int32_t,
                   std::int64_t) {
  const sketch_config cfg{.rows = 5, .cols = 4099, .seed = 3};
  const auto x = test_vector<TestType>(300000, 9);
  const auto first = test_vector<TestType>(20000, 10);  // rows added in tables of their own start from these
  count_sketch<TestType> one(cfg);
  one.accumulate(first, 0, {1});
  one.accumulate(x, 7, {1});
  std::vector<TestType> est_one(x.size());
  one.estimate_all(est_one, 7, {1});
  for (const unsigned threads : {2U, 3U, 7U, 0U}) {
    CAPTURE(threads);
    count_sketch<TestType> many(cfg);
    many.accumulate(first, 0, {threads});
    many.accumulate(x, 7, {threads});
    REQUIRE(many == one);
    std::vector<TestType> est_many(x.size());
    many.estimate_all(est_many, 7, {threads});
    REQUIRE(est_many == est_one);
  }
}

// A one-row sketch of at least 2^21 coordinates is accumulated in parts so
// that threads can share it (count_sketch::accumulate_in_parts): part 0 onto
// the table, the others into tables of their own, summed in a fixed binary
// tree. The definition, spelled out here, fixes every bit for any threads.
TEMPLATE_TEST_CASE("a long one-row sketch is the tree sum of its parts, for any thread count", "[count_sketch]", float,
                   double) {
  const sketch_config cfg{.rows = 1, .cols = 50021, .seed = 12};
  const std::size_t n = (std::size_t{1} << 23U) + 12345;  // eight parts of just over 2^20
  const auto x = test_vector<TestType>(n, 21);
  const auto before = test_vector<TestType>(1000, 22);  // the table is not empty to begin with
  constexpr std::size_t parts = 8;

  std::vector<std::vector<TestType>> part_table(parts);
  for (std::size_t p = 0; p < parts; ++p) {
    const detail::index_range r = detail::split_range(n, static_cast<unsigned>(p), parts);
    count_sketch<TestType> one(cfg);
    if (p == 0) one.accumulate(before, 3);
    one.accumulate(std::span<const TestType>(x).subspan(r.begin, r.end - r.begin), 40 + r.begin);  // serial
    part_table[p] = table_of(one);
  }
  for (std::size_t span = 1; span < parts; span *= 2) {
    for (std::size_t p = 0; p + span < parts; p += 2 * span) {
      for (std::size_t c = 0; c < cfg.cols; ++c) part_table[p][c] += part_table[p + span][c];
    }
  }
  for (const unsigned threads : {1U, 2U, 3U, 8U}) {
    CAPTURE(threads);
    count_sketch<TestType> s(cfg);
    s.accumulate(before, 3);
    s.accumulate(x, 40, {threads});
    CHECK(table_of(s) == part_table[0]);
  }
}

// The parts' tables are kept from call to call and grown when a longer x
// needs more of them; exact integers make any stale cell show.
TEST_CASE("a one-row sketch reuses its parts' tables over calls of any length", "[count_sketch]") {
  const sketch_config cfg{.rows = 1, .cols = 4099, .seed = 31};
  const auto two_parts = test_vector<std::int32_t>(std::size_t{1} << 21U, 32);
  const auto eight_parts = test_vector<std::int32_t>((std::size_t{1} << 23U) + 5, 33);
  count_sketch<std::int32_t> s(cfg);
  count_sketch<std::int32_t> serial(cfg);  // pieces below the parts' threshold
  const auto both = [&](const std::vector<std::int32_t>& x, std::uint64_t offset) {
    s.accumulate(x, offset, {2});
    for (std::size_t at = 0; at < x.size(); at += std::size_t{1} << 20U) {
      const std::size_t len = std::min(std::size_t{1} << 20U, x.size() - at);
      serial.accumulate(std::span<const std::int32_t>(x).subspan(at, len), offset + at);
    }
  };
  both(two_parts, 0);
  both(eight_parts, 7);
  both(two_parts, 11);
  CHECK(table_of(s) == table_of(serial));
}

// Tables that threads fill at once lie a guard apart: on some machines two
// threads adding into nearby tables run at half speed (docs/performance.md).
TEST_CASE("scratch tables lie a guard apart and keep their place when they fit", "[count_sketch]") {
  detail::scratch_tables<float> tables;
  tables.reserve(3, 1000);
  const auto apart = [&](std::size_t p, std::size_t q) {
    return reinterpret_cast<std::uintptr_t>(tables.table(q)) - reinterpret_cast<std::uintptr_t>(tables.table(p));
  };
  CHECK(apart(0, 1) >= 1000 * sizeof(float) + (std::size_t{1} << 20U));  // at least 1 MiB between
  CHECK(apart(1, 2) == apart(0, 1));
  float* const first = tables.table(0);
  std::fill_n(tables.table(2), 1000, 1.0F);  // every table is writable
  tables.reserve(2, 500);
  CHECK(tables.table(0) == first);
  tables.reserve(4, 1000);
  CHECK(apart(2, 3) == apart(0, 1));
  tables.reserve(2, std::size_t{1} << 20U);  // 4 MiB tables: three of their sizes between
  CHECK(apart(0, 1) >= 4 * (std::size_t{4} << 20U));
  float* const grown = tables.table(0);
  tables.reserve(4, 1000);  // the grown block still holds the 4 tables asked for before
  CHECK(tables.table(0) == grown);
  detail::scratch_tables<float> copy(tables);  // a copy starts empty: memory of its own
  copy.reserve(1, 10);
  CHECK(copy.table(0) != tables.table(0));
}

TEMPLATE_TEST_CASE("sparse accumulate equals dense accumulate", "[count_sketch]", std::int32_t, std::int64_t, float) {
  const sketch_config cfg{.rows = 4, .cols = 50, .seed = 8};
  std::vector<std::uint64_t> idx = {3, 900, 3, 17, 899, 0};
  std::vector<TestType> val = {5, -2, 7, 1, 4, -9};
  std::vector<TestType> dense(1000, TestType{});
  for (std::size_t n = 0; n < idx.size(); ++n) dense[idx[n]] += val[n];

  count_sketch<TestType> sparse_s(cfg);
  sparse_s.accumulate(idx, val);
  count_sketch<TestType> dense_s(cfg);
  dense_s.accumulate(dense);
  CHECK(sparse_s == dense_s);
  CHECK_THROWS_AS(sparse_s.accumulate(idx, std::span<const TestType>(val).first(2)), std::invalid_argument);
}

TEMPLATE_TEST_CASE("integer sketches are exactly linear", "[count_sketch]", std::int32_t, std::int64_t) {
  const sketch_config cfg{.rows = 5, .cols = 211, .seed = 99};
  const auto a = test::integer_vector<TestType>(5000, 1 << 20, 1);
  const auto b = test::integer_vector<TestType>(5000, 1 << 20, 2);
  std::vector<TestType> sum(a.size());
  std::vector<TestType> diff(a.size());
  std::vector<TestType> tripled(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    sum[i] = a[i] + b[i];
    diff[i] = a[i] - b[i];
    tripled[i] = 3 * a[i];
  }
  count_sketch<TestType> sa(cfg);
  count_sketch<TestType> sb(cfg);
  count_sketch<TestType> ssum(cfg);
  count_sketch<TestType> sdiff(cfg);
  count_sketch<TestType> striple(cfg);
  sa.accumulate(a);
  sb.accumulate(b);
  ssum.accumulate(sum);
  sdiff.accumulate(diff);
  striple.accumulate(tripled);

  auto merged = sa;
  merged.merge(sb);
  CHECK(merged == ssum);
  auto subtracted = sa;
  subtracted -= sb;
  CHECK(subtracted == sdiff);
  auto scaled = sa;
  scaled.scale(3);
  CHECK(scaled == striple);
}

TEST_CASE("integer cells wrap instead of overflowing, so linearity survives", "[count_sketch]") {
  const sketch_config cfg{.rows = 3, .cols = 1, .seed = 1};  // one column: every value meets
  const std::vector<std::int32_t> big = {std::numeric_limits<std::int32_t>::max(),
                                         std::numeric_limits<std::int32_t>::max(),
                                         std::numeric_limits<std::int32_t>::min()};
  count_sketch<std::int32_t> whole(cfg);
  whole.accumulate(big);
  count_sketch<std::int32_t> parts(cfg);
  for (std::size_t i = 0; i < big.size(); ++i) {
    parts.accumulate(std::span<const std::int32_t>(&big[i], 1), i);
  }
  CHECK(whole == parts);
}

TEMPLATE_TEST_CASE("merge is commutative and associative bit for bit on integers", "[count_sketch]", std::int32_t,
                   std::int64_t) {
  const sketch_config cfg{.rows = 5, .cols = 301, .seed = 4};
  std::vector<count_sketch<TestType>> s;
  for (std::uint64_t k = 0; k < 3; ++k) {
    s.emplace_back(cfg);
    s.back().accumulate(test::integer_vector<TestType>(2000, 100000, 10 + k));
  }
  auto ab = s[0];
  ab += s[1];
  auto ba = s[1];
  ba += s[0];
  CHECK(ab == ba);
  auto ab_c = ab;
  ab_c += s[2];
  auto bc = s[1];
  bc += s[2];
  auto a_bc = s[0];
  a_bc += bc;
  CHECK(ab_c == a_bc);
}

TEST_CASE("sketches of different configuration refuse to merge", "[count_sketch]") {
  const sketch_config base{.rows = 5, .cols = 100, .seed = 1};
  count_sketch<float> a(base);
  for (const sketch_config other :
       {sketch_config{.rows = 4, .cols = 100, .seed = 1}, sketch_config{.rows = 5, .cols = 101, .seed = 1},
        sketch_config{.rows = 5, .cols = 100, .seed = 2}}) {
    const count_sketch<float> b(other);
    CHECK_THROWS_AS(a.merge(b), config_mismatch_error);
    CHECK_THROWS_AS(a += b, config_mismatch_error);
    CHECK_THROWS_AS(a -= b, config_mismatch_error);
    CHECK_THROWS_WITH(a.merge(b), Catch::Contains("5 x 100, seed 1"));
  }
  CHECK(std::all_of(a.table().begin(), a.table().end(), [](float v) { return v == 0; }));
}

TEST_CASE("configurations out of range are rejected before allocating", "[count_sketch]") {
  CHECK_THROWS_AS(count_sketch<float>({.rows = 0, .cols = 10, .seed = 0}), std::invalid_argument);
  CHECK_THROWS_AS(count_sketch<float>({.rows = 65, .cols = 10, .seed = 0}), std::invalid_argument);
  CHECK_THROWS_AS(count_sketch<float>({.rows = 5, .cols = 0, .seed = 0}), std::invalid_argument);
  CHECK_THROWS_AS(count_sketch<float>({.rows = 5, .cols = (1ULL << 31U) + 1, .seed = 0}), std::invalid_argument);
  CHECK_THROWS_WITH(count_sketch<float>({.rows = 0, .cols = 10, .seed = 0}), Catch::Contains("got 0"));
  const std::vector<float> wrong(7);
  CHECK_THROWS_AS(count_sketch<float>({.rows = 2, .cols = 4, .seed = 0}, wrong), std::invalid_argument);
  count_sketch<float> s({.rows = 2, .cols = 4, .seed = 0});
  const std::vector<float> x(10);
  CHECK_THROWS_AS(s.accumulate(x, std::numeric_limits<std::uint64_t>::max() - 5), std::invalid_argument);
}

TEMPLATE_TEST_CASE("estimates are exact when cols far exceeds the support", "[count_sketch]", std::int32_t,
                   std::int64_t, double) {
  // 30 nonzeros in d = 200000 with c = 100000: a coordinate's estimate is
  // wrong only if 3 of its 5 rows collide (each with probability < 3e-4).
  const std::size_t d = 200000;
  std::vector<TestType> x(d, TestType{});
  splitmix64 rng(21);
  for (int n = 0; n < 30; ++n) x[rng.next_below(d)] = static_cast<TestType>(rng.next_below(999) + 1);
  count_sketch<TestType> s({.rows = 5, .cols = 100000, .seed = 6});
  s.accumulate(x, 0, {2});
  std::vector<TestType> est(d);
  s.estimate_all(est, 0, {2});
  CHECK(est == x);
  for (std::size_t i = 0; i < d; i += 997) REQUIRE(s.estimate(i) == x[i]);
}

TEMPLATE_TEST_CASE("estimate_all equals estimate, with an offset", "[count_sketch]", float, std::int64_t) {
  for (const std::uint64_t rows : {1U, 2U, 3U, 4U, 5U, 6U, 7U}) {
    CAPTURE(rows);
    count_sketch<TestType> s({.rows = rows, .cols = 64, .seed = rows});
    s.accumulate(test_vector<TestType>(1000, 3), 100);
    std::vector<TestType> est(700);
    s.estimate_all(est, 250);
    for (std::size_t i = 0; i < est.size(); ++i) REQUIRE(est[i] == s.estimate(250 + i));
  }
}

TEST_CASE("the median of an even number of rows is the mean of the middle two", "[count_sketch]") {
  const sketch_config cfg{.rows = 4, .cols = 1, .seed = 0};
  const multiply_shift h(0, 4, 1);
  // With one column every key lands in cell r; place values so that the
  // signed row estimates for key 0 are {10, -4, 7, 1}.
  const std::int64_t wanted[] = {10, -4, 7, 1};
  std::vector<std::int64_t> table(4);
  std::vector<double> dtable(4);
  for (std::uint32_t r = 0; r < 4; ++r) {
    table[r] = h(r, 0).sign * wanted[r];
    dtable[r] = static_cast<double>(table[r]);
  }
  CHECK(count_sketch<std::int64_t>(cfg, table).estimate(0) == 4);  // floor((1 + 7) / 2)
  CHECK(count_sketch<double>(cfg, dtable).estimate(0) == 4.0);
  table[3] = h(3, 0).sign * 2;  // {10, -4, 7, 2}: (2 + 7) / 2 = 4.5
  dtable[3] = static_cast<double>(table[3]);
  CHECK(count_sketch<std::int64_t>(cfg, table).estimate(0) == 4);
  CHECK(count_sketch<double>(cfg, dtable).estimate(0) == 4.5);
}

TEST_CASE("zero_buckets_of clears exactly the hit cells", "[count_sketch]") {
  const sketch_config cfg{.rows = 5, .cols = 1000, .seed = 12};
  count_sketch<std::int64_t> s(cfg);
  s.accumulate(test::integer_vector<std::int64_t>(50000, 100, 4));
  const auto before = table_of(s);
  const std::vector<std::uint64_t> hit = {7, 4242, 49999};
  s.zero_buckets_of(hit);
  std::vector<bool> cleared(before.size(), false);
  for (std::uint32_t r = 0; r < 5; ++r) {
    for (const auto i : hit) cleared[r * cfg.cols + s.hash()(r, i).bucket] = true;
  }
  for (std::size_t c = 0; c < before.size(); ++c) REQUIRE(s.table()[c] == (cleared[c] ? 0 : before[c]));
  for (const auto i : hit) CHECK(s.estimate(i) == 0);
}

TEST_CASE("l2_estimate is exact for a single spike and scales linearly", "[count_sketch]") {
  count_sketch<double, poly4_hash> s({.rows = 5, .cols = 1000, .seed = 2});
  const std::vector<std::uint64_t> idx = {123456};
  const std::vector<double> val = {-3.5};
  s.accumulate(idx, val);
  CHECK(s.l2_estimate() == 3.5);
  s.scale(2.0);
  CHECK(s.l2_estimate() == 7.0);
  s.zero();
  CHECK(s.l2_estimate() == 0.0);
}
