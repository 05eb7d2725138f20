// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Exact top-k by magnitude over a dense span, and top-k recovery
/// ("unsketch") from a Count Sketch.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "sketchsgd/detail/parallel.hpp"
#include "sketchsgd/detail/radix_select.hpp"
#include "sketchsgd/detail/unsketch.hpp"
#include "sketchsgd/execution.hpp"
#include "sketchsgd/sketch/count_sketch.hpp"
#include "sketchsgd/sketch/sparse_update.hpp"

namespace sketchsgd {

namespace detail {
/// Elements per worker below which selection runs on one thread.
inline constexpr std::size_t min_select_items = std::size_t{1} << 17U;

/// The sparse update holding `x[i]` for each of the (increasing) `indices`.
template <class Value>
sparse_update<Value> gather_update(std::span<const Value> x, const std::vector<std::size_t>& indices) {
  sparse_update<Value> out;
  out.indices.assign(indices.begin(), indices.end());
  out.values.reserve(indices.size());
  for (const std::size_t i : indices) out.values.push_back(x[i]);
  return out;
}
}  // namespace detail

/// The `k` elements of `x` with the largest |value|, as (index, value) pairs
/// in increasing index order. Ties go to the lower index, so every rank
/// holding the same data selects the same set; NaN is never selected (fewer
/// than k entries come back when fewer than k are not NaN).
///
/// O(x.size()) time (a radix select over the magnitude bits: two passes for
/// typical data, not a sort), O(k) extra memory.
/// @tparam Values a contiguous sized range of a `sketch_value`.
template <std::ranges::contiguous_range Values>
requires std::ranges::sized_range<Values> && sketch_value<std::remove_cvref_t<std::ranges::range_value_t<Values>>>
[[nodiscard]] auto top_k(const Values& x, std::size_t k, cpu_execution exec = {}) {
  using value = std::remove_cvref_t<std::ranges::range_value_t<Values>>;
  using traits = detail::magnitude_key<value>;
  const std::span<const value> xs(std::ranges::data(x), std::ranges::size(x));

  const unsigned workers = detail::useful_workers(exec.resolved_threads(), xs.size(), detail::min_select_items);
  const auto key_at = [p = xs.data()](std::size_t i) { return traits::of(p[i]); };
  return detail::gather_update(xs, detail::select_top_k(xs.size(), k, traits::max_valid, key_at, workers));
}

namespace detail {
/// Unsketch the direct way: every estimate written to `scratch` (d values),
/// the top digits counted while each chunk is in cache, then the radix
/// select over them.
template <sketch_value Value, hash_family HashFamily>
sparse_update<Value> top_k_from_estimates(const count_sketch<Value, HashFamily, cpu_t>& sketch, std::uint64_t d,
                                          std::size_t k, std::span<Value> scratch, unsigned workers) {
  using traits = magnitude_key<Value>;
  const auto n = static_cast<std::size_t>(d);
  const auto key_at = [p = scratch.data()](std::size_t i) { return traits::of(p[i]); };
  constexpr std::size_t chunk = std::size_t{1} << 16U;
  auto& parts = thread_histograms(workers);
  fork_join(workers, [&](unsigned w, unsigned nw) {
    const index_range r = split_range(n, w, nw);
    std::size_t* h = zero_histogram(parts[w]);
    for (std::size_t begin = r.begin; begin < r.end; begin += chunk) {
      const std::size_t len = std::min(chunk, r.end - begin);
      sketch.estimate_all(scratch.subspan(begin, len), begin);
      count_top_digits(begin, begin + len, key_at, traits::max_valid, h);
    }
  });
  sum_histograms(parts, workers);
  return gather_update(std::span<const Value>(scratch),
                       select_top_k(n, k, traits::max_valid, key_at, workers, parts.data()));
}
}  // namespace detail

/// Unsketch: the `k` coordinates of `[0, d)` with the largest |estimate|,
/// values = the estimates (ties to the lower index, NaN never selected).
/// Identical sketches give identical results on every rank and for any
/// thread count.
///
/// Usually no estimate is stored: a threshold drawn from a sample of
/// estimates lets one pass keep only the coordinates that can be among the
/// k, about 1.25 k of them, and the exact selection runs on those
/// (`detail::top_k_by_threshold`). Where that cannot be sure of the answer
/// (k a large share of d, ties at zero, NaN cells in a sketch of several
/// rows) every estimate is written to `scratch` (d values, reusable from
/// step to step) and selected from there. O(rows * d) time, O(k) extra
/// memory beyond scratch.
/// @throws std::invalid_argument if `scratch.size() != d`.
template <sketch_value Value, hash_family HashFamily>
[[nodiscard]] sparse_update<Value> top_k(const count_sketch<Value, HashFamily, cpu_t>& sketch, std::uint64_t d,
                                         std::size_t k, std::span<Value> scratch, cpu_execution exec = {}) {
  if (scratch.size() != d) {
    throw std::invalid_argument("top_k: scratch must hold d = " + std::to_string(d) + " values, got " +
                                std::to_string(scratch.size()));
  }
  const unsigned workers =
      detail::useful_workers(exec.resolved_threads(), static_cast<std::size_t>(d), detail::min_select_items);
  if (auto found = detail::top_k_by_threshold(sketch, d, k, workers)) return std::move(*found);
  return detail::top_k_from_estimates(sketch, d, k, scratch, workers);
}

/// Unsketch with an internal buffer of d estimates (4 d bytes for float),
/// allocated only where the threshold pass cannot be sure of the answer.
template <sketch_value Value, hash_family HashFamily>
[[nodiscard]] sparse_update<Value> top_k(const count_sketch<Value, HashFamily, cpu_t>& sketch, std::uint64_t d,
                                         std::size_t k, cpu_execution exec = {}) {
  const unsigned workers =
      detail::useful_workers(exec.resolved_threads(), static_cast<std::size_t>(d), detail::min_select_items);
  if (auto found = detail::top_k_by_threshold(sketch, d, k, workers)) return std::move(*found);
  std::vector<Value> estimates(static_cast<std::size_t>(d));
  return detail::top_k_from_estimates(sketch, d, k, std::span<Value>(estimates), workers);
}

}  // namespace sketchsgd
