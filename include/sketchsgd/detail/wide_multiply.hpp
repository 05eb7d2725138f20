// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// 64 x 64 -> 128-bit multiplication, on the host and in CUDA device code.

#include <cstdint>

#include "sketchsgd/config.hpp"

namespace sketchsgd::detail {

#if defined(__SIZEOF_INT128__) && !defined(__CUDA_ARCH__)
// __extension__ keeps -Wpedantic quiet about the GCC/Clang 128-bit type.
__extension__ typedef unsigned __int128 uint128_t;  // NOLINT(modernize-use-using)
#endif

/// The high and low 64-bit halves of a 128-bit product.
struct u128_parts {
  std::uint64_t high;
  std::uint64_t low;
};

/// The full 128-bit product `a * b`.
SKETCHSGD_HOST_DEVICE constexpr u128_parts multiply_wide(std::uint64_t a, std::uint64_t b) noexcept {
#if defined(__CUDA_ARCH__)
  return {__umul64hi(a, b), a * b};
#elif defined(__SIZEOF_INT128__)
  const uint128_t p = static_cast<uint128_t>(a) * b;
  return {static_cast<std::uint64_t>(p >> 64U), static_cast<std::uint64_t>(p)};
#else
  // Portable schoolbook product on 32-bit halves.
  const std::uint64_t a_lo = a & 0xFFFFFFFFULL;
  const std::uint64_t a_hi = a >> 32U;
  const std::uint64_t b_lo = b & 0xFFFFFFFFULL;
  const std::uint64_t b_hi = b >> 32U;
  const std::uint64_t lo_lo = a_lo * b_lo;
  const std::uint64_t hi_lo = a_hi * b_lo;
  const std::uint64_t lo_hi = a_lo * b_hi;
  const std::uint64_t cross = (lo_lo >> 32U) + (hi_lo & 0xFFFFFFFFULL) + lo_hi;
  return {a_hi * b_hi + (hi_lo >> 32U) + (cross >> 32U), (cross << 32U) | (lo_lo & 0xFFFFFFFFULL)};
#endif
}

}  // namespace sketchsgd::detail
