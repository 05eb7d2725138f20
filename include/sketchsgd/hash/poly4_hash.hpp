// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The "strong" hash family: a degree-3 polynomial over the Mersenne prime
/// 2^61 - 1, 4-wise independent.

#include <cstdint>

#include "sketchsgd/config.hpp"
#include "sketchsgd/detail/wide_multiply.hpp"
#include "sketchsgd/hash/bucket_sign.hpp"
#include "sketchsgd/hash/seed_mixer.hpp"

namespace sketchsgd {

namespace detail {

/// The Mersenne prime 2^61 - 1.
inline constexpr std::uint64_t mersenne61 = (std::uint64_t{1} << 61U) - 1;

/// `x mod (2^61 - 1)` for any 64-bit x.
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr std::uint64_t mod_mersenne61(std::uint64_t x) noexcept {
  x = (x & mersenne61) + (x >> 61U);  // < 2^61 + 8
  return x >= mersenne61 ? x - mersenne61 : x;
}

/// `(a * b) mod (2^61 - 1)` for a, b < 2^61 - 1, via the 128-bit product:
/// 2^61 = 1 (mod p), so the product folds as low 61 bits + the rest.
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr std::uint64_t mul_mersenne61(std::uint64_t a,
                                                                                    std::uint64_t b) noexcept {
  const u128_parts p = multiply_wide(a, b);  // < 2^122
  const std::uint64_t low = p.low & mersenne61;
  const std::uint64_t high = (p.low >> 61U) | (p.high << 3U);  // < 2^61
  return mod_mersenne61(low + high);
}

/// `(a + b) mod (2^61 - 1)` for a, b < 2^61 - 1.
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr std::uint64_t add_mersenne61(std::uint64_t a,
                                                                                    std::uint64_t b) noexcept {
  const std::uint64_t s = a + b;
  return s >= mersenne61 ? s - mersenne61 : s;
}

/// Maps a value uniform in `[0, 2^61 - 1)` to a sign (lowest bit) and a
/// bucket (top 32 bits, multiply-high into `[0, cols)`).
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr bucket_sign split_hash61(std::uint64_t h,
                                                                                std::uint32_t cols) noexcept {
  return {static_cast<std::uint32_t>(((h >> 29U) * cols) >> 32U), sign_of_bit(h)};
}

}  // namespace detail

/// Polynomial hashing: h(x) = c3 x^3 + c2 x^2 + c1 x + c0 mod (2^61 - 1),
/// with coefficients drawn from `row_stream(seed, row)` in the order c0, c1,
/// c2, c3 (each the stream output shifted right by 3, reduced mod p).
///
/// A random degree-3 polynomial over a prime field is 4-wise independent
/// (Wegman and Carter 1981), which the variance bound of the l2 estimate
/// needs (Alon, Matias, Szegedy 1996; Charikar et al. 2002). Keys are taken
/// mod p, so keys at or above 2^61 - 1 collide with smaller ones. The sign is
/// the lowest bit of h, the bucket the top 32 of its 61 bits mapped into
/// `[0, cols)` by multiply-high.
///
/// A dense pass uses forward differences (three modular additions per key),
/// so it costs little more than `multiply_shift` there; a point query costs
/// three 128-bit products.
class poly4_hash {
 public:
  /// Frozen numeric id written into serialized sketches. Never reuse or change.
  static constexpr std::uint8_t id = 2;
  /// Largest supported number of columns.
  static constexpr std::uint64_t max_cols = std::uint64_t{1} << 31U;

  /// The hash function of one row.
  class row_hash {
   public:
    /// Coefficients are normally drawn by `poly4_hash::row`; each must be
    /// below 2^61 - 1.
    SKETCHSGD_HOST_DEVICE constexpr row_hash(std::uint64_t c0, std::uint64_t c1, std::uint64_t c2, std::uint64_t c3,
                                             std::uint32_t cols) noexcept
        : c0_(c0), c1_(c1), c2_(c2), c3_(c3), cols_(cols) {}

    /// Bucket and sign of `key`.
    SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr bucket_sign operator()(std::uint64_t key) const noexcept {
      return detail::split_hash61(value(detail::mod_mersenne61(key)), cols_);
    }

    /// Calls `f(i, bucket_sign)` for the keys `first + i`, `i` in `[0, n)`,
    /// in increasing order; equal to calling `operator()` on each key.
#if defined(__CUDACC__)
// The visitor may be host-only (the CPU sketch passes host lambdas): no
// warning about calling it from this host-device function.
#pragma nv_exec_check_disable
#endif
    template <class F>
    SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr void for_each(std::uint64_t first, std::uint64_t n,
                                                                         F&& f) const {
      using detail::add_mersenne61;
      using detail::mersenne61;
      if (n == 0) return;
      const std::uint64_t x = detail::mod_mersenne61(first);
      if (n > mersenne61 - x) {  // the keys wrap around p: no finite differences
        for (std::uint64_t i = 0; i < n; ++i) f(i, (*this)(first + i));
        return;
      }
      // Forward differences of a cubic: f(x), and its 1st, 2nd, 3rd
      // differences at x; the 3rd is the constant 6 * c3.
      // The arguments stay below 2^61 + 3, which value() reduces correctly.
      const std::uint64_t f0 = value(x);
      const std::uint64_t f1 = value(x + 1);
      const std::uint64_t f2 = value(x + 2);
      const std::uint64_t f3 = value(x + 3);
      std::uint64_t h = f0;
      std::uint64_t d1 = sub(f1, f0);
      std::uint64_t d2 = sub(sub(f2, f1), d1);
      const std::uint64_t d3 = sub(sub(sub(f3, f2), sub(f2, f1)), d2);
      for (std::uint64_t i = 0; i < n; ++i) {
        f(i, detail::split_hash61(h, cols_));
        h = add_mersenne61(h, d1);
        d1 = add_mersenne61(d1, d2);
        d2 = add_mersenne61(d2, d3);
      }
    }

   private:
    /// The polynomial at x mod p, by Horner's rule, for x < 2^61 + 4.
    [[nodiscard]] SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr std::uint64_t value(
        std::uint64_t x) const noexcept {
      using detail::add_mersenne61;
      using detail::mul_mersenne61;
      std::uint64_t h = c3_;
      h = add_mersenne61(mul_mersenne61(h, x), c2_);
      h = add_mersenne61(mul_mersenne61(h, x), c1_);
      return add_mersenne61(mul_mersenne61(h, x), c0_);
    }

    SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE static constexpr std::uint64_t sub(std::uint64_t a,
                                                                                    std::uint64_t b) noexcept {
      return a >= b ? a - b : a + detail::mersenne61 - b;
    }

    std::uint64_t c0_;
    std::uint64_t c1_;
    std::uint64_t c2_;
    std::uint64_t c3_;
    std::uint32_t cols_;
  };

  /// The family for `rows` rows of `cols` columns (`cols` in `[1, max_cols]`).
  SKETCHSGD_HOST_DEVICE constexpr poly4_hash(std::uint64_t seed, std::uint32_t rows, std::uint32_t cols) noexcept
      : seed_(seed), rows_(rows), cols_(cols) {}

  /// The hash of row `r`.
  [[nodiscard]] SKETCHSGD_HOST_DEVICE constexpr row_hash row(std::uint32_t r) const noexcept {
    splitmix64 stream = row_stream(seed_, r);
    const std::uint64_t c0 = coefficient(stream);
    const std::uint64_t c1 = coefficient(stream);
    const std::uint64_t c2 = coefficient(stream);
    const std::uint64_t c3 = coefficient(stream);
    return row_hash{c0, c1, c2, c3, cols_};
  }

  /// Bucket and sign of `key` in row `r`.
  [[nodiscard]] SKETCHSGD_HOST_DEVICE constexpr bucket_sign operator()(std::uint32_t r,
                                                                       std::uint64_t key) const noexcept {
    return row(r)(key);
  }

  /// The seed.
  [[nodiscard]] SKETCHSGD_HOST_DEVICE constexpr std::uint64_t seed() const noexcept { return seed_; }
  /// Number of rows.
  [[nodiscard]] SKETCHSGD_HOST_DEVICE constexpr std::uint32_t rows() const noexcept { return rows_; }
  /// Number of columns.
  [[nodiscard]] SKETCHSGD_HOST_DEVICE constexpr std::uint32_t cols() const noexcept { return cols_; }

 private:
  SKETCHSGD_HOST_DEVICE static constexpr std::uint64_t coefficient(splitmix64& stream) noexcept {
    return detail::mod_mersenne61(stream.next() >> 3U);
  }

  std::uint64_t seed_;
  std::uint32_t rows_;
  std::uint32_t cols_;
};

}  // namespace sketchsgd
