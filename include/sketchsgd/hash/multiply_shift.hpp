// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The default hash family: Dietzfelbinger's multiply-add-shift, extended to
/// 64-bit keys as Thorup's pair-multiply-shift.

#include <cstdint>

#include "sketchsgd/config.hpp"
#include "sketchsgd/hash/bucket_sign.hpp"
#include "sketchsgd/hash/seed_mixer.hpp"

namespace sketchsgd {

/// Multiply-shift hashing: 2-independent (strongly universal), fast.
///
/// For a key x = (x_hi, x_lo) of two 32-bit halves and per-row 64-bit
/// parameters a0, a1, b drawn from `row_stream(seed, row)` in that order,
///
///     z = ((a0 + x_hi) * (a1 + x_lo) + b) mod 2^64,   h = z >> 32,
///
/// which is strongly universal on 32 output bits (Thorup, "High speed hashing
/// for integers and strings", 2015, pair-multiply-shift). For keys below 2^32
/// it is Dietzfelbinger's multiply-add-shift with multiplier a0. The sign is
/// the lowest bit of h and the bucket the upper 31 bits mapped into
/// `[0, cols)` by multiply-high. Pairwise independence is what the Count
/// Sketch point-query guarantee needs (Charikar, Chen, Farach-Colton 2002);
/// use `poly4_hash` when the l2 estimate's variance bound matters.
///
/// Consecutive keys differ by a constant in z, so a dense pass costs one add
/// and one 32-bit multiply-high per key (`row_hash::for_each`).
class multiply_shift {
 public:
  /// Frozen numeric id written into serialized sketches. Never reuse or change.
  static constexpr std::uint8_t id = 1;
  /// Largest supported number of columns.
  static constexpr std::uint64_t max_cols = std::uint64_t{1} << 31U;

  /// The hash function of one row.
  class row_hash {
   public:
    /// Parameters are normally drawn by `multiply_shift::row`.
    SKETCHSGD_HOST_DEVICE constexpr row_hash(std::uint64_t a0, std::uint64_t a1, std::uint64_t b,
                                             std::uint32_t cols) noexcept
        : a0_(a0), a1_(a1), b_(b), cols_(cols) {}

    /// Bucket and sign of `key`.
    SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr bucket_sign operator()(std::uint64_t key) const noexcept {
      return detail::split_hash32(static_cast<std::uint32_t>(z_of(key) >> 32U), cols_);
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
      for (std::uint64_t i = 0; i < n;) {
        // z advances by (a0 + x_hi) per key while x_hi stays fixed; split the
        // walk where the low half of the key wraps.
        const std::uint64_t key = first + i;
        const std::uint64_t to_carry = (std::uint64_t{1} << 32U) - (key & 0xFFFFFFFFULL);
        const std::uint64_t end = i + ((n - i) < to_carry ? (n - i) : to_carry);
        const std::uint64_t step = a0_ + (key >> 32U);
        for (std::uint64_t z = z_of(key); i < end; ++i, z += step) {
          f(i, detail::split_hash32(static_cast<std::uint32_t>(z >> 32U), cols_));
        }
      }
    }

    /// The keys `hi * 2^32 + lo`, lo in [0, 2^32), hash through the line
    /// z = slope * lo + intercept (mod 2^64), whose top 32 bits split into
    /// bucket and sign as in `operator()`: what lets recovery walk the keys
    /// of one bucket without hashing the others.
    struct line {
      std::uint64_t slope;      ///< a0 + hi: what z gains from one key to the next
      std::uint64_t intercept;  ///< (a0 + hi) a1 + b: z of the key hi * 2^32
    };
    /// The line of the keys whose top 32 bits are `hi`.
    [[nodiscard]] SKETCHSGD_HOST_DEVICE constexpr line block_line(std::uint64_t hi) const noexcept {
      return {a0_ + hi, (a0_ + hi) * a1_ + b_};
    }
    /// Number of columns.
    [[nodiscard]] SKETCHSGD_HOST_DEVICE constexpr std::uint32_t cols() const noexcept { return cols_; }

   private:
    [[nodiscard]] SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr std::uint64_t z_of(
        std::uint64_t key) const noexcept {
      return (a0_ + (key >> 32U)) * (a1_ + (key & 0xFFFFFFFFULL)) + b_;
    }

    std::uint64_t a0_;
    std::uint64_t a1_;
    std::uint64_t b_;
    std::uint32_t cols_;
  };

  /// The family for `rows` rows of `cols` columns (`cols` in `[1, max_cols]`;
  /// checked by `sketch_config`, not here, so that this stays usable on a
  /// device).
  SKETCHSGD_HOST_DEVICE constexpr multiply_shift(std::uint64_t seed, std::uint32_t rows, std::uint32_t cols) noexcept
      : seed_(seed), rows_(rows), cols_(cols) {}

  /// The hash of row `r`.
  [[nodiscard]] SKETCHSGD_HOST_DEVICE constexpr row_hash row(std::uint32_t r) const noexcept {
    splitmix64 stream = row_stream(seed_, r);
    const std::uint64_t a0 = stream.next();
    const std::uint64_t a1 = stream.next();
    const std::uint64_t b = stream.next();
    return row_hash{a0, a1, b, cols_};
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
  std::uint64_t seed_;
  std::uint32_t rows_;
  std::uint32_t cols_;
};

}  // namespace sketchsgd
