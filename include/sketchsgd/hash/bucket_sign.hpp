// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// What a hash family gives for one (row, key): a bucket and a sign.

#include <cstdint>

#include "sketchsgd/config.hpp"

namespace sketchsgd {

/// A bucket in `[0, cols)` and a sign in {-1, +1}.
struct bucket_sign {
  /// Column of the row's table the key lands in.
  std::uint32_t bucket;
  /// +1 or -1.
  std::int32_t sign;

  /// Component-wise equality.
  friend constexpr bool operator==(const bucket_sign&, const bucket_sign&) = default;
};

namespace detail {

/// +1 when the lowest bit of `h` is 0, -1 when it is 1.
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr std::int32_t sign_of_bit(std::uint64_t h) noexcept {
  return 1 - 2 * static_cast<std::int32_t>(h & 1U);
}

/// Maps a uniform 32-bit `h` to a sign (its lowest bit) and a bucket in
/// `[0, cols)` (its upper 31 bits, by multiply-high: no modulo bias beyond
/// cols / 2^31). Shared by the families whose output is 32 uniform bits.
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr bucket_sign split_hash32(std::uint32_t h,
                                                                                std::uint32_t cols) noexcept {
  return {static_cast<std::uint32_t>((static_cast<std::uint64_t>(h >> 1U) * cols) >> 31U), sign_of_bit(h)};
}

}  // namespace detail
}  // namespace sketchsgd
