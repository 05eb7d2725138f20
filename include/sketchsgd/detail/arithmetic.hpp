// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Sketch-cell arithmetic. Integer cells wrap modulo 2^bits (through the
/// unsigned type, which C++20 converts back exactly), so integer sketches stay
/// exactly linear even on overflow and never hit signed-overflow UB.

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "sketchsgd/config.hpp"

namespace sketchsgd::detail {

template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr T cell_add(T a, T b) noexcept {
  if constexpr (std::integral<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  } else {
    return a + b;
  }
}

template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr T cell_sub(T a, T b) noexcept {
  if constexpr (std::integral<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
  } else {
    return a - b;
  }
}

template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr T cell_mul(T a, T b) noexcept {
  if constexpr (std::integral<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
  } else {
    return a * b;
  }
}

template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr T cell_neg(T a) noexcept {
  return cell_sub(T{0}, a);
}

/// `sign * v` for a sign in {-1, +1}, without a multiplication. Written as a
/// select: compilers turn it into a branch over one negation, which measured
/// faster than a branch-free sign-bit flip in the accumulate loop (the
/// multiply-shift sign sequence along consecutive keys is predictable).
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr T signed_value(std::int32_t sign, T v) noexcept {
  return sign < 0 ? cell_neg(v) : v;
}

}  // namespace sketchsgd::detail
