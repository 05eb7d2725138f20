// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Sliced sketches, shared by the sketch aggregations (`slices` of
/// `sketched_aggregation` and `fetch_aggregation`): the sparse coordinates
/// cut into S equal slices [d s / S, d (s + 1) / S), slice s sketched alone
/// (keys from 0) into its share of the columns with seed + s, so each
/// slice's table can be summed while the next slice is sketched; recovery
/// takes the top count over all slices' estimates together.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "sketchsgd/detail/collective_pipeline.hpp"
#include "sketchsgd/device.hpp"
#include "sketchsgd/optim/recover/policies.hpp"
#include "sketchsgd/optim/step/coordinates.hpp"
#include "sketchsgd/optim/step/gradient.hpp"
#include "sketchsgd/optim/step/validation.hpp"
#include "sketchsgd/sketch/count_sketch.hpp"
#include "sketchsgd/sketch/topk.hpp"

namespace sketchsgd::detail {

/// Whether the recovery policy picks the top k of the estimates (the only
/// one slices combine exactly).
template <class Recovery>
[[nodiscard]] bool selects_top_k(const Recovery& r) noexcept {
  if constexpr (std::is_same_v<Recovery, any_recovery>) return std::holds_alternative<top_k_recovery>(r.held);
  return std::is_same_v<Recovery, top_k_recovery>;
}

/// What `slices > 1` needs, checked before allocating: at most one slice per
/// column and per sparse coordinate, the CPU, top-k recovery and the
/// allreduce topology.
template <class Device, class Recovery>
void check_slices(const char* name, std::size_t slices, std::uint64_t cols, std::uint64_t sparse_count,
                  const Recovery& recovery, bool allreduce_topology) {
  if (slices == 0 || slices > cols || slices > sparse_count) {
    bad_option(name, "slices must be in [1, min(cols, sparse coordinates)], got " + std::to_string(slices));
  }
  if (slices > 1 && (!std::is_same_v<Device, cpu_t> || !selects_top_k(recovery) || !allreduce_topology)) {
    bad_option(name, "slices > 1 needs the CPU, top-k recovery and the allreduce topology");
  }
}

/// One sketch of the whole table (`slices` = 1: the configuration itself),
/// or one per slice with the slice's share of the columns and seed + s.
template <class Sketch>
std::vector<Sketch> slice_sketches(const sketch_config& whole, std::size_t slices) {
  std::vector<Sketch> all;
  all.reserve(slices);
  for (std::size_t s = 0; s < slices; ++s) {
    all.emplace_back(sketch_config{whole.rows, part_of(whole.cols, slices, s).size(), whole.seed + s});
  }
  return all;
}

/// Adds slice `s` of x's sparse coordinates (compact numbering) to
/// `sketches[s]`, as keys from 0, every row.
template <class Sketch, class V>
void sketch_slice(std::vector<Sketch>& sketches, std::size_t s, gradient_span<V> x, const coordinate_split& split,
                  cpu_execution exec) {
  const part_range slice = part_of(split.sparse_count(), sketches.size(), s);  // not a binding: clang 14 captures none
  const std::uint64_t lo = slice.begin;
  const std::uint64_t hi = slice.end;
  x.visit([&](auto typed) {
    for (const auto& seg : split.segments()) {
      const std::uint64_t a = std::max<std::uint64_t>(seg.compact, lo);
      const std::uint64_t b = std::min<std::uint64_t>(seg.compact + seg.length, hi);
      if (a >= b) continue;
      sketches[s].accumulate_rows(typed.subspan(seg.global + (a - seg.compact), b - a), a - lo, 0, sketches[s].rows(),
                                  exec);
    }
  });
}

/// Calls `f(s, keys, values)` for every slice of a split of `d` sparse
/// coordinates into `slices` that holds some of `indices` (compact
/// coordinates, with `values`): the keys are those indices less the slice's
/// first coordinate. One slice: `indices` and `values` themselves, uncopied.
template <class V, class F>
void for_each_slice_of(std::span<const std::uint64_t> indices, std::span<const V> values, std::uint64_t d,
                       std::size_t slices, F&& f) {
  if (slices == 1) {
    f(std::size_t{0}, indices, values);
    return;
  }
  std::vector<std::vector<std::uint64_t>> keys(slices);
  std::vector<std::vector<V>> held(slices);
  for (std::size_t j = 0; j < indices.size(); ++j) {
    const std::uint64_t i = indices[j];
    auto s = static_cast<std::size_t>(std::min<std::uint64_t>(i * slices / d, slices - 1));  // d s / S <= i: near
    while (s + 1 < slices && part_of(d, slices, s).end <= i) ++s;
    while (s > 0 && part_of(d, slices, s).begin > i) --s;
    keys[s].push_back(i - part_of(d, slices, s).begin);
    held[s].push_back(values[j]);
  }
  for (std::size_t s = 0; s < slices; ++s) {
    if (!keys[s].empty()) f(s, std::span<const std::uint64_t>(keys[s]), std::span<const V>(held[s]));
  }
}

/// The `count` largest |estimate| over all slices' sketches of `d` sparse
/// coordinates (ties to the lower index), with their estimates. Each slice
/// first gives its share of `count` with room for chance (its top fair +
/// fair / 4 + 4 sqrt(fair) + 16); a slice cut short whose last kept estimate
/// reaches the merged count-th may hold more, and only such a slice is asked
/// again, for all `count`. `scratch` holds d values.
template <class Ops, class Recovery, class Sketch, class V>
sparse_update<V> top_over_slices(const Recovery& recovery, const std::vector<Sketch>& sketches, std::uint64_t d,
                                 std::size_t count, std::span<V> scratch, typename Ops::context& dev,
                                 std::uint64_t step) {
  const std::size_t slices = sketches.size();
  std::vector<sparse_update<V>> kept(slices);
  std::vector<bool> cut(slices, false);  // kept fewer than both its coordinates and count
  const auto select = [&](std::size_t s, std::uint64_t want) {
    const auto [lo, end] = part_of(d, slices, s);
    const std::uint64_t n = end - lo;
    const std::uint64_t most = std::min<std::uint64_t>(n, count);
    want = std::min(want, most);
    kept[s] = recovery.template select<Ops>(sketches[s], n, want, scratch.subspan(lo, n), dev, step);
    for (std::uint64_t& i : kept[s].indices) i += lo;
    cut[s] = kept[s].indices.size() == want && want < most;
  };
  const double fair = static_cast<double>(count) / static_cast<double>(slices);
  for (std::size_t s = 0; s < slices; ++s) select(s, static_cast<std::uint64_t>(1.25 * fair + 4 * std::sqrt(fair)) + 16);
  const auto least = [](const std::vector<V>& values) {  // the smallest |value| (no std::views: clang 14)
    double m = std::numeric_limits<double>::infinity();
    for (const V x : values) m = std::min(m, std::abs(static_cast<double>(x)));
    return m;
  };
  for (;;) {
    sparse_update<V> all;  // in index order: slices ascend, each in index order
    for (const auto& k : kept) {
      all.indices.insert(all.indices.end(), k.indices.begin(), k.indices.end());
      all.values.insert(all.values.end(), k.values.begin(), k.values.end());
    }
    sparse_update<V> best = std::move(all);
    if (best.indices.size() > count) {
      auto top = top_k(best.values, count, dev.exec);
      for (std::uint64_t& i : top.indices) i = best.indices[i];  // positions to coordinates
      best = std::move(top);
    }
    double last = 0;  // the merged count-th magnitude (0 when fewer were kept: every cut slice is asked again)
    if (best.values.size() == count) last = least(best.values);
    bool again = false;
    for (std::size_t s = 0; s < slices; ++s) {
      if (!cut[s] || least(kept[s].values) < last) continue;
      select(s, count);
      again = true;
    }
    if (!again) return best;
  }
}

}  // namespace sketchsgd::detail
