// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Medians of the per-row estimates of a Count Sketch point query.

#include <cstddef>
#include <cstdint>
#include <numeric>

#include "sketchsgd/config.hpp"

namespace sketchsgd::detail {

template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr T min_of(T a, T b) noexcept {
  return b < a ? b : a;
}
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr T max_of(T a, T b) noexcept {
  return a < b ? b : a;
}

/// Median of three, branch-free.
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr T median3(T a, T b, T c) noexcept {
  return max_of(min_of(a, b), min_of(max_of(a, b), c));
}

/// Median of five with seven comparisons: the median of e and the two middle
/// candidates that {a, b} and {c, d} leave.
template <class T>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE constexpr T median5(T a, T b, T c, T d, T e) noexcept {
  return median3(e, max_of(min_of(a, b), min_of(c, d)), min_of(max_of(a, b), max_of(c, d)));
}

/// Mean of the two middle values `lo <= hi` of an even-sized set: exact
/// halfway for floating point, rounded down for integers (std::midpoint
/// rounds towards its first argument), without overflow either way.
template <class T>
constexpr T middle_mean(T lo, T hi) noexcept {
  return std::midpoint(lo, hi);
}

/// Median of `v[0..n)`, reordering `v`. Odd n: the middle value; even n: the
/// mean of the two middle values. Insertion sort: n is a row count (<= 64).
template <class T>
constexpr T median_in_place(T* v, std::uint32_t n) noexcept {
  if (n == 5) return median5(v[0], v[1], v[2], v[3], v[4]);
  if (n == 3) return median3(v[0], v[1], v[2]);
  for (std::uint32_t i = 1; i < n; ++i) {
    const T x = v[i];
    std::uint32_t j = i;
    for (; j > 0 && x < v[j - 1]; --j) v[j] = v[j - 1];
    v[j] = x;
  }
  return (n % 2 == 1) ? v[n / 2] : middle_mean(v[n / 2 - 1], v[n / 2]);
}

/// Column-wise medians: `out[i]` = median of `g[r * stride + i]` over rows r,
/// for i in `[0, n)`. The common row counts run branch-free and vectorize.
template <class T>
void median_of_rows(const T* g, std::size_t stride, std::uint32_t rows, std::size_t n, T* out) noexcept {
  switch (rows) {
    case 1:
      for (std::size_t i = 0; i < n; ++i) out[i] = g[i];
      return;
    case 3:
      for (std::size_t i = 0; i < n; ++i) out[i] = median3(g[i], g[stride + i], g[2 * stride + i]);
      return;
    case 5:
      for (std::size_t i = 0; i < n; ++i) {
        out[i] = median5(g[i], g[stride + i], g[2 * stride + i], g[3 * stride + i], g[4 * stride + i]);
      }
      return;
    default: {
      T v[64]{};
      for (std::size_t i = 0; i < n; ++i) {
        for (std::uint32_t r = 0; r < rows; ++r) v[r] = g[r * stride + i];
        out[i] = median_in_place(v, rows);
      }
    }
  }
}

}  // namespace sketchsgd::detail
