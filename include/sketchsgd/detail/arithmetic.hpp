// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Sketch-cell arithmetic. Integer cells wrap modulo 2^bits (through the
/// unsigned type, which C++20 converts back exactly), so integer sketches stay
/// exactly linear even on overflow and never hit signed-overflow UB.

#include <cmath>
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

/// The same operations rounded once each on every compiler: on a CUDA device
/// the `_rn` intrinsics, which nvcc never fuses into an FMA (it contracts
/// `a * b + c` by default; the x86-64 host code they are compared with does
/// not), on the host the operations above. Code that both compile (an
/// update rule's per-coordinate arithmetic) has the same bits on both.
/// `a + b`, rounded once (integers wrap).
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE T add_rn(T a, T b) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    return __fadd_rn(a, b);
  } else if constexpr (std::is_same_v<T, double>) {
    return __dadd_rn(a, b);
  } else {
    return cell_add(a, b);
  }
#else
  return cell_add(a, b);
#endif
}

/// `a - b`, rounded once (integers wrap).
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE T sub_rn(T a, T b) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    return __fsub_rn(a, b);
  } else if constexpr (std::is_same_v<T, double>) {
    return __dsub_rn(a, b);
  } else {
    return cell_sub(a, b);
  }
#else
  return cell_sub(a, b);
#endif
}

/// `a * b`, rounded once and never fused with a following add (integers wrap).
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE T mul_rn(T a, T b) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    return __fmul_rn(a, b);
  } else if constexpr (std::is_same_v<T, double>) {
    return __dmul_rn(a, b);
  } else {
    return cell_mul(a, b);
  }
#else
  return cell_mul(a, b);
#endif
}

/// `a / b` for floating point, correctly rounded.
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE T div_rn(T a, T b) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    return __fdiv_rn(a, b);
  } else {
    return __ddiv_rn(a, b);
  }
#else
  return a / b;
#endif
}

/// The square root, correctly rounded (as IEEE and the host's std::sqrt).
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE T sqrt_rn(T a) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    return __fsqrt_rn(a);
  } else {
    return __dsqrt_rn(a);
  }
#else
  return std::sqrt(a);
#endif
}

}  // namespace sketchsgd::detail
