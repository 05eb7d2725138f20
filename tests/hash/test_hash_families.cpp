// SPDX-License-Identifier: Apache-2.0
// Hash families: pinned values (from an independent Python transcription of
// the documented formulas), constexpr evaluation, the dense walk equal to
// point queries, and the frozen ids.

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/hash/multiply_shift.hpp"
#include "sketchsgd/hash/poly4_hash.hpp"
#include "sketchsgd/hash/seed_mixer.hpp"

using namespace sketchsgd;

namespace {

struct golden {
  std::uint64_t seed;
  std::uint32_t row;
  std::uint32_t cols;
  std::uint64_t key;
  std::uint32_t bucket;
  std::int32_t sign;
};

// Produced by transcribing the formulas of multiply_shift.hpp and
// poly4_hash.hpp into Python big-integer arithmetic. They must never change:
// serialized sketches and every rank of a job depend on them.
constexpr golden multiply_shift_golden[] = {
    {0, 0, 1000, 0, 311, -1},
    {0, 0, 1000, 1, 3, 1},
    {42, 3, 500000, 123456789, 32130, -1},
    {42, 4, 500000, (std::uint64_t{1} << 40U) + 17, 44055, 1},
    {0xDEADBEEF, 0, 7, (std::uint64_t{1} << 63U) + 5, 2, 1},
    {1, 63, 2147483648U, 4294967295U, 122635032, 1},
};
constexpr golden poly4_golden[] = {
    {0, 0, 1000, 0, 692, -1},
    {0, 0, 1000, 1, 534, 1},
    {42, 3, 500000, 123456789, 233666, 1},
    {42, 4, 500000, (std::uint64_t{1} << 40U) + 17, 481101, 1},
    {0xDEADBEEF, 0, 7, (std::uint64_t{1} << 63U) + 5, 6, -1},
    {1, 63, 2147483648U, 4294967295U, 898055188, -1},
};

template <class H>
void check_golden(const golden& g) {
  CAPTURE(g.seed, g.row, g.cols, g.key);
  const H h(g.seed, 64, g.cols);
  CHECK(h(g.row, g.key) == bucket_sign{g.bucket, g.sign});
}

// Walking consecutive keys must give exactly the point queries, including
// across the 2^32 carry of multiply_shift and the wrap at 2^61 - 1 of poly4.
template <class H>
void check_walk_equals_points(std::uint64_t first, std::uint64_t n) {
  const H h(99, 7, 12345);
  for (std::uint32_t r = 0; r < 7; ++r) {
    const auto row = h.row(r);
    std::uint64_t visited = 0;
    row.for_each(first, n, [&](std::uint64_t i, bucket_sign bs) {
      REQUIRE(i == visited);
      REQUIRE(bs == row(first + i));
      ++visited;
    });
    REQUIRE(visited == n);
  }
}

}  // namespace

static_assert(hash_family<multiply_shift>);
static_assert(hash_family<poly4_hash>);
static_assert(multiply_shift::id == 1, "frozen id");
static_assert(poly4_hash::id == 2, "frozen id");
// Usable in constant expressions (and so in device code, which needs the same).
static_assert(multiply_shift(42, 5, 500000)(3, 123456789) == bucket_sign{32130, -1});
static_assert(poly4_hash(42, 5, 500000)(3, 123456789) == bucket_sign{233666, 1});

TEST_CASE("splitmix64 matches the published reference stream", "[hash]") {
  // First outputs of splitmix64 seeded with 0 (Vigna's reference code).
  splitmix64 g(0);
  CHECK(g.next() == 0xE220A8397B1DCDAFULL);
  CHECK(g.next() == 0x6E789E6AA1B965F4ULL);
  CHECK(g.next() == 0x06C45D188009454FULL);
}

TEST_CASE("next_below is unbiased in range and deterministic", "[hash]") {
  splitmix64 a(7);
  splitmix64 b(7);
  for (std::uint64_t bound : {1ULL, 2ULL, 3ULL, 1000ULL, (1ULL << 63U) + 1}) {
    for (int i = 0; i < 1000; ++i) {
      const std::uint64_t x = a.next_below(bound);
      REQUIRE(x < bound);
      REQUIRE(x == b.next_below(bound));
    }
  }
}

TEST_CASE("multiply_shift gives the pinned buckets and signs", "[hash]") {
  for (const golden& g : multiply_shift_golden) check_golden<multiply_shift>(g);
}

TEST_CASE("poly4_hash gives the pinned buckets and signs", "[hash]") {
  for (const golden& g : poly4_golden) check_golden<poly4_hash>(g);
}

TEST_CASE("Mersenne arithmetic reduces correctly at the edges", "[hash]") {
  using detail::mersenne61;
  CHECK(detail::mod_mersenne61(mersenne61) == 0);
  CHECK(detail::mod_mersenne61(mersenne61 + 1) == 1);
  CHECK(detail::mod_mersenne61(~std::uint64_t{0}) == (~std::uint64_t{0}) % mersenne61);
  CHECK(detail::mul_mersenne61(mersenne61 - 1, mersenne61 - 1) == 1);  // (-1)^2
  CHECK(detail::mul_mersenne61(mersenne61 - 1, 2) == mersenne61 - 2);
  CHECK(detail::add_mersenne61(mersenne61 - 1, 1) == 0);
  splitmix64 g(3);
  for (int i = 0; i < 10000; ++i) {
    const std::uint64_t a = g.next() % mersenne61;
    const std::uint64_t b = g.next() % mersenne61;
    // Reference: schoolbook on 32-bit halves with explicit reduction.
    const detail::u128_parts p = detail::multiply_wide(a, b);
    std::uint64_t r = 0;  // (high * 2^64 + low) mod p, 2^64 = 8 (mod p)
    r = detail::add_mersenne61(r, detail::mod_mersenne61(p.low));
    r = detail::add_mersenne61(r, detail::mul_mersenne61(detail::mod_mersenne61(p.high), 8));
    REQUIRE(detail::mul_mersenne61(a, b) == r);
  }
}

TEST_CASE("multiply_wide equals the schoolbook product", "[hash]") {
  splitmix64 g(11);
  for (int i = 0; i < 10000; ++i) {
    const std::uint64_t a = g.next();
    const std::uint64_t b = g.next();
    const detail::u128_parts p = detail::multiply_wide(a, b);
    const std::uint64_t a_lo = a & 0xFFFFFFFFU;
    const std::uint64_t a_hi = a >> 32U;
    const std::uint64_t b_lo = b & 0xFFFFFFFFU;
    const std::uint64_t b_hi = b >> 32U;
    const std::uint64_t mid = (a_lo * b_lo >> 32U) + (a_hi * b_lo & 0xFFFFFFFFU) + a_lo * b_hi;
    REQUIRE(p.low == a * b);
    REQUIRE(p.high == a_hi * b_hi + (a_hi * b_lo >> 32U) + (mid >> 32U));
  }
}

TEST_CASE("dense walks equal point queries", "[hash]") {
  check_walk_equals_points<multiply_shift>(0, 5000);
  check_walk_equals_points<multiply_shift>((std::uint64_t{1} << 32U) - 100, 300);  // carry into x_hi
  check_walk_equals_points<multiply_shift>(~std::uint64_t{0} - 50, 51);
  check_walk_equals_points<poly4_hash>(0, 5000);
  check_walk_equals_points<poly4_hash>(detail::mersenne61 - 100, 300);  // keys wrap mod p
  check_walk_equals_points<poly4_hash>(123456789012345ULL, 1000);
}

TEST_CASE("buckets stay in range and signs are +-1 for extreme column counts", "[hash]") {
  for (std::uint32_t cols : {1U, 2U, 3U, 1000U, 2147483648U}) {
    const multiply_shift ms(5, 3, cols);
    const poly4_hash p4(5, 3, cols);
    for (std::uint64_t key = 0; key < 2000; ++key) {
      for (std::uint32_t r = 0; r < 3; ++r) {
        const bucket_sign a = ms(r, key * 2654435761ULL);
        const bucket_sign b = p4(r, key * 2654435761ULL);
        REQUIRE(a.bucket < cols);
        REQUIRE(b.bucket < cols);
        REQUIRE((a.sign == 1 || a.sign == -1));
        REQUIRE((b.sign == 1 || b.sign == -1));
      }
    }
  }
}

TEST_CASE("rows and seeds give different functions", "[hash]") {
  // Two rows (or two seeds) agreeing on many keys would mean correlated rows.
  for (int family = 0; family < 2; ++family) {
    const auto bucket = [&](std::uint64_t seed, std::uint32_t r, std::uint64_t key) {
      return family == 0 ? multiply_shift(seed, 8, 1U << 20U)(r, key) : poly4_hash(seed, 8, 1U << 20U)(r, key);
    };
    int same_rows = 0;
    int same_seeds = 0;
    for (std::uint64_t key = 0; key < 1000; ++key) {
      same_rows += bucket(1, 0, key) == bucket(1, 1, key) ? 1 : 0;
      same_seeds += bucket(1, 0, key) == bucket(2, 0, key) ? 1 : 0;
    }
    // Expected about 1000 / 2^21 of agreement; 3 is already very unlikely.
    CHECK(same_rows < 3);
    CHECK(same_seeds < 3);
  }
}
