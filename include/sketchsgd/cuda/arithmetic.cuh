// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Device arithmetic that reproduces the CPU code bit for bit: the IEEE
/// operations rounded once (`add_rn`, ... in sketchsgd/detail/arithmetic.hpp,
/// which host code shares), the median of the per-row estimates exactly as
/// `detail::median_in_place` computes it (including libstdc++'s
/// `std::midpoint` for an even number of rows), and cell atomics.

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sketchsgd/config.hpp"
#include "sketchsgd/detail/arithmetic.hpp"
#include "sketchsgd/detail/median.hpp"

namespace sketchsgd::detail {

/// libstdc++'s `std::midpoint` (GCC 10 to 14), which the CPU median of an
/// even number of rows uses, restated for device code: integers round
/// towards `a`; floating point is `(a + b) / 2` unless that could overflow
/// or lose a subnormal bit.
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE T midpoint_like_std(T a, T b) noexcept {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    int k = 1;
    U m = static_cast<U>(a);
    U big = static_cast<U>(b);
    if (a > b) {
      k = -1;
      m = static_cast<U>(b);
      big = static_cast<U>(a);
    }
    return static_cast<T>(a + k * static_cast<T>(static_cast<U>(big - m) / 2));
  } else {
    // numeric_limits' members are host-only constexpr functions: spell them.
    constexpr T lo = std::is_same_v<T, float> ? T(0x1p-126F) * 2 : T(0x1p-1022) * 2;
    constexpr T hi = std::is_same_v<T, float> ? T(0x1.fffffep127F) / 2 : T(0x1.fffffffffffffp1023) / 2;
    const T abs_a = a < 0 ? -a : a;
    const T abs_b = b < 0 ? -b : b;
    if (abs_a <= hi && abs_b <= hi) return div_rn(add_rn(a, b), T(2));
    if (abs_a < lo) return add_rn(a, div_rn(b, T(2)));
    if (abs_b < lo) return add_rn(div_rn(a, T(2)), b);
    return add_rn(div_rn(a, T(2)), div_rn(b, T(2)));
  }
}

/// `detail::median_in_place` restated for device code (that one is
/// constexpr host code): the same comparisons in the same order, so the
/// same result bits, NaN included.
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE T median_like_cpu(T* v, std::uint32_t n) noexcept {
  if (n == 5) return median5(v[0], v[1], v[2], v[3], v[4]);
  if (n == 3) return median3(v[0], v[1], v[2]);
  for (std::uint32_t i = 1; i < n; ++i) {
    const T x = v[i];
    std::uint32_t j = i;
    for (; j > 0 && x < v[j - 1]; --j) v[j] = v[j - 1];
    v[j] = x;
  }
  return (n % 2 == 1) ? v[n / 2] : midpoint_like_std(v[n / 2 - 1], v[n / 2]);
}

#if defined(__CUDACC__)
/// `*p += v` atomically. Integer cells wrap (through the unsigned atomics),
/// so integer results do not depend on the order of the adds; floating-point
/// results do.
template <class T>
__device__ SKETCHSGD_FORCE_INLINE void atomic_add_cell(T* p, T v) noexcept {
  if constexpr (std::is_floating_point_v<T>) {
    atomicAdd(p, v);
  } else if constexpr (sizeof(T) == 4) {
    atomicAdd(reinterpret_cast<unsigned int*>(p), static_cast<unsigned int>(v));
  } else {
    static_assert(sizeof(unsigned long long) == 8);      // NOLINT(google-runtime-int): atomicAdd's type
    atomicAdd(reinterpret_cast<unsigned long long*>(p),  // NOLINT(google-runtime-int)
              static_cast<unsigned long long>(v));       // NOLINT(google-runtime-int)
  }
}
#endif

}  // namespace sketchsgd::detail
