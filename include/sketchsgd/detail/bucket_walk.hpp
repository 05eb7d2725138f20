// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The keys that one row of a `multiply_shift` hash sends to a given bucket,
/// found without hashing any other key.
///
/// For keys below 2^32 the row hashes key x through z(x) = A x + B (mod
/// 2^64) and the bucket is an interval of z: bucket b holds the keys whose z
/// falls in [S_b, S_b + W_b). Consecutive z differ by A, so the keys of a
/// bucket are the return times of a rotation of the circle Z / 2^64 to an
/// interval, and by the three-gap theorem (Slater, "Gaps and steps for the
/// sequence n theta mod 1", 1967) the step from one key of the bucket to the
/// next is one of three values, j1, j2 or j1 + j2, where j1 is the least
/// j >= 1 with A j mod 2^64 in [0, W) and j2 the least with A j mod 2^64 in
/// (2^64 - W, 2^64): whichever of them first lands in the interval. Both
/// come from Euclid's algorithm on (2^64, A), once per bucket width (there
/// are at most two). Walking a bucket then costs a few multiply-adds per key
/// it holds.

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "sketchsgd/detail/wide_multiply.hpp"
#include "sketchsgd/hash/bucket_sign.hpp"
#include "sketchsgd/hash/multiply_shift.hpp"

namespace sketchsgd::detail {

#if defined(__SIZEOF_INT128__) && !defined(__CUDA_ARCH__)
#define SKETCHSGD_HAVE_BUCKET_WALK 1

/// "No such j" from the solvers below (larger than any solution).
inline constexpr uint128_t no_solution = ~uint128_t{0};

/// The least j >= 0 with lo <= (a j) mod m <= hi, for lo <= hi < m, or
/// `no_solution`. Euclid's algorithm: a j lands in [lo, hi] + m y for the
/// least y at which that interval holds a multiple of a, which is the same
/// question about (m mod a, a). O(log m) steps.
inline uint128_t first_multiple_in(uint128_t a, uint128_t m, uint128_t lo, uint128_t hi) noexcept {
  a %= m;
  if (lo == 0) return 0;
  if (a == 0) return no_solution;
  const uint128_t x = (lo + a - 1) / a;  // the least a x >= lo; a x < lo + a <= 2^65
  if (a * x <= hi) return x;
  // No multiple of a in [lo, hi]: so lo % a <= hi % a, both nonzero.
  const uint128_t y = first_multiple_in(m % a, a, a - hi % a, a - lo % a);
  if (y == no_solution) return no_solution;
  const uint128_t my = m * y;  // y < a and m <= 2^64: below 2^128
  return my / a + (my % a + lo + a - 1) / a;
}

/// The least j >= 0 with (a j + c) mod 2^64 in [lo, hi] (lo <= hi), or
/// `no_solution`.
inline uint128_t first_on_line(std::uint64_t a, std::uint64_t c, std::uint64_t lo, std::uint64_t hi) noexcept {
  constexpr uint128_t m = uint128_t{1} << 64U;
  const std::uint64_t from = lo - c;  // the interval moved by -c, mod 2^64
  const std::uint64_t to = hi - c;
  if (from <= to) return first_multiple_in(a, m, from, to);
  return std::min(first_multiple_in(a, m, from, m - 1), first_multiple_in(a, m, 0, to));
}

/// Walks the keys [0, n) (n <= 2^32) of one `multiply_shift` row bucket by
/// bucket; see the file comment.
class bucket_walk {
 public:
  bucket_walk(const multiply_shift::row_hash& h, std::uint64_t n) noexcept
      : line_(h.block_line(0)), cols_(h.cols()), n_(n) {
    usable_ = cols_ >= 2 && n_ <= (std::uint64_t{1} << 32U);
    if (!usable_) return;
    const std::uint64_t narrow = (std::uint64_t{1} << 31U) / cols_;  // widths are narrow or narrow + 1, times 2^33
    const bool one_width = (std::uint64_t{1} << 31U) % cols_ == 0;
    usable_ = gaps_for(narrow, narrow_) && (one_width || gaps_for(narrow + 1, wide_));
  }

  /// False when the walk does not apply (one column, keys beyond 2^32, a
  /// degenerate slope): hash every key instead.
  [[nodiscard]] bool usable() const noexcept { return usable_; }

  /// Calls `f(key, sign)` for every key of bucket `b` from `first`, its
  /// least key, in increasing order.
  template <class F>
  void keys_of(std::uint32_t b, std::uint64_t first, F&& f) const {
    const std::uint64_t start = y_low(b) << 33U;
    const std::uint64_t width = (y_low(b + 1) - y_low(b)) << 33U;
    const gaps& g = (width >> 33U) == narrow_.units ? narrow_ : wide_;
    std::uint64_t key = first;
    std::uint64_t z = line_.slope * key + line_.intercept;
    for (;;) {
      f(key, sign_of_bit(z >> 32U));
      // The next key is the first of key + j_a, key + j_b, key + j_a + j_b
      // (increasing) whose z lands in the bucket.
      std::uint64_t step = 0;
      std::uint64_t dz = 0;
      for (int c = 0; c < 3; ++c) {
        if (z + g.dz[c] - start < width) {
          step = g.step[c];
          dz = g.dz[c];
          break;
        }
      }
      if (step == 0) {  // cannot happen by the theorem; stay exact regardless
        const uint128_t j = first_on_line(line_.slope, z + line_.slope, start, start + (width - 1));
        if (j == no_solution) return;
        step = static_cast<std::uint64_t>(std::min<uint128_t>(j + 1, n_));
        dz = line_.slope * step;
      }
      if (step >= n_ - key) return;
      key += step;
      z += dz;
    }
  }

  /// Every bucket's least key lies below this: no step exceeds the longest
  /// gap, so a key at or beyond it has another of its bucket before it.
  [[nodiscard]] std::uint64_t least_keys_below() const noexcept {
    return std::min(n_, std::max(narrow_.step[2], wide_.step[2]));
  }

  /// The bucket of `key`.
  [[nodiscard]] std::uint32_t bucket(std::uint64_t key) const noexcept {
    return split_hash32(static_cast<std::uint32_t>((line_.slope * key + line_.intercept) >> 32U), cols_).bucket;
  }

 private:
  /// The three steps of a bucket width, in increasing order, and what each
  /// adds to z.
  struct gaps {
    std::uint64_t units = 0;  // width / 2^33
    std::uint64_t step[3]{};
    std::uint64_t dz[3]{};
  };

  /// The least y (the top 31 bits of z) of bucket b: ceil(b 2^31 / cols).
  [[nodiscard]] std::uint64_t y_low(std::uint64_t b) const noexcept {
    return ((b << 31U) + cols_ - 1) / std::uint64_t{cols_};
  }

  bool gaps_for(std::uint64_t units, gaps& g) const noexcept {
    g.units = units;
    const std::uint64_t width = units << 33U;
    const std::uint64_t a = line_.slope;
    const uint128_t j1 = first_on_line(a, a, 0, width - 1);                        // (j1 - 1): A j in [0, W)
    const uint128_t j2 = first_on_line(a, a, 0 - (width - 1), ~std::uint64_t{0});  // A j in (2^64 - W, 2^64)
    if (j1 >= n_ || j2 >= n_) {
      // A step that long leaves each bucket at most one or two keys of
      // [0, n): the walk would find nothing faster than hashing.
      return false;
    }
    const auto s1 = static_cast<std::uint64_t>(j1) + 1;
    const auto s2 = static_cast<std::uint64_t>(j2) + 1;
    g.step[0] = std::min(s1, s2);
    g.step[1] = std::max(s1, s2);
    g.step[2] = s1 + s2;
    for (int c = 0; c < 3; ++c) g.dz[c] = a * g.step[c];
    return true;
  }

  multiply_shift::row_hash::line line_;
  std::uint32_t cols_;
  std::uint64_t n_;
  gaps narrow_{};
  gaps wide_{};
  bool usable_ = false;
};

#endif

}  // namespace sketchsgd::detail
