// SPDX-License-Identifier: Apache-2.0
// The bucket walk of one-row unsketch (detail/bucket_walk.hpp) against brute
// force: Euclid's solver for the least j with (a j) mod m in [lo, hi] on
// every small case, and the keys of every bucket of multiply-shift rows of
// many seeds and widths, walked from their least key, equal to the keys that
// hashing every key finds.

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "sketchsgd/sketchsgd.hpp"
#include "test_support.hpp"

using namespace sketchsgd;

#if defined(SKETCHSGD_HAVE_BUCKET_WALK)

TEST_CASE("Euclid's solver finds the least j with (a j) mod m in [lo, hi]", "[bucket_walk]") {
  for (std::uint64_t m = 1; m <= 40; ++m) {
    for (std::uint64_t a = 0; a < m; ++a) {
      for (std::uint64_t lo = 0; lo < m; ++lo) {
        for (std::uint64_t hi = lo; hi < m; ++hi) {
          std::uint64_t expected = ~std::uint64_t{0};
          for (std::uint64_t j = 0; j < m; ++j) {  // (a j) mod m repeats with period m
            if ((a * j) % m >= lo && (a * j) % m <= hi) {
              expected = j;
              break;
            }
          }
          const detail::uint128_t got = detail::first_multiple_in(a, m, lo, hi);
          CAPTURE(m, a, lo, hi);
          if (expected == ~std::uint64_t{0}) {
            REQUIRE(got == detail::no_solution);
          } else {
            REQUIRE(got == expected);
          }
        }
      }
    }
  }
}

TEST_CASE("the least j with (a j + c) mod 2^64 in an interval, for 64-bit a", "[bucket_walk]") {
  splitmix64 rng(3);
  for (int t = 0; t < 2000; ++t) {
    const std::uint64_t a = rng.next() | 1U;
    const std::uint64_t c = rng.next();
    const std::uint64_t lo = rng.next();
    const std::uint64_t width = std::uint64_t{1} << (44 + rng.next_below(16));  // hits every 2^20 .. 2^5 steps
    const std::uint64_t hi = lo + (width - 1) < lo ? ~std::uint64_t{0} : lo + (width - 1);
    std::uint64_t expected = 0;
    for (std::uint64_t z = c; z - lo > hi - lo; z += a) ++expected;
    CAPTURE(a, c, lo, hi);
    REQUIRE(detail::first_on_line(a, c, lo, hi) == expected);
  }
}

TEST_CASE("walking a bucket visits exactly its keys, in order", "[bucket_walk]") {
  const std::uint64_t n = 60000;
  for (const std::uint32_t cols : {2U, 3U, 97U, 1000U, 4096U, 30011U}) {
    for (std::uint64_t seed = 0; seed < 12; ++seed) {
      const auto h = multiply_shift(seed * 7919 + cols, 1, cols).row(0);
      const detail::bucket_walk walk(h, n);
      if (!walk.usable()) continue;  // a slope whose steps exceed n: the caller hashes instead
      std::vector<std::vector<std::uint64_t>> keys(cols);
      std::vector<std::vector<std::int32_t>> signs(cols);
      h.for_each(0, n, [&](std::uint64_t i, bucket_sign bs) {
        keys[bs.bucket].push_back(i);
        signs[bs.bucket].push_back(bs.sign);
      });
      for (std::uint32_t b = 0; b < cols; ++b) {
        if (keys[b].empty()) continue;
        std::vector<std::uint64_t> walked;
        std::vector<std::int32_t> walked_signs;
        walk.keys_of(b, keys[b].front(), [&](std::uint64_t key, std::int32_t sign) {
          walked.push_back(key);
          walked_signs.push_back(sign);
        });
        CAPTURE(cols, seed, b);
        REQUIRE(walked == keys[b]);
        REQUIRE(walked_signs == signs[b]);
      }
    }
  }
}

// Tables kept across cases as a thread's workspace keeps them: every call
// changes the hash or the number of keys, so a stale answer fails; the cases
// are asked twice, of a table holding them all (the second time from it) and
// of one holding five (the second time recomputed), and of a fresh table
// filled by one thread.
TEST_CASE("the least-key table holds every bucket's least key, on any thread count", "[bucket_walk]") {
  detail::least_key_table all;
  detail::least_key_table five(5);
  for (int pass = 0; pass < 2; ++pass) {
    for (const std::uint32_t cols : {2U, 97U, 4096U, 30011U}) {
      for (std::uint64_t seed = 0; seed < 6; ++seed) {
        const auto h = multiply_shift(seed * 7919 + cols, 1, cols).row(0);
        for (const std::uint64_t n : {std::uint64_t{60000}, std::uint64_t{45000}}) {
          const detail::bucket_walk walk(h, n);
          if (!walk.usable()) continue;
          std::vector<std::uint32_t> least(cols, detail::least_key_table::none);
          h.for_each(0, n, [&](std::uint64_t i, bucket_sign bs) {
            if (least[bs.bucket] == detail::least_key_table::none) least[bs.bucket] = static_cast<std::uint32_t>(i);
          });
          for (const std::uint32_t key : least) {
            if (key != detail::least_key_table::none) CHECK(key < walk.least_keys_below());
          }
          CAPTURE(pass, cols, seed, n);
          REQUIRE(all.of(h, walk, n, 2) == least);
          REQUIRE(five.of(h, walk, n, 2) == least);
          detail::least_key_table one_thread;
          REQUIRE(one_thread.of(h, walk, n, 1) == least);
        }
      }
    }
  }
}

TEST_CASE("the walk declines slopes it cannot serve", "[bucket_walk]") {
  const auto h = multiply_shift(5, 1, 1000).row(0);
  CHECK_FALSE(detail::bucket_walk(h, (std::uint64_t{1} << 32U) + 1).usable());      // keys beyond 2^32
  CHECK_FALSE(detail::bucket_walk(multiply_shift(5, 1, 1).row(0), 1000).usable());  // one column
  CHECK_FALSE(detail::bucket_walk(h, 10).usable());  // steps longer than the keys: nothing to walk
}

#endif
