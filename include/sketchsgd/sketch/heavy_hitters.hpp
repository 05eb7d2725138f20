// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Threshold recovery from a Count Sketch: l2 heavy hitters, and HEAVYMIX
/// (the selection the Sketched-SGD paper's theory uses).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "sketchsgd/detail/parallel.hpp"
#include "sketchsgd/execution.hpp"
#include "sketchsgd/hash/seed_mixer.hpp"
#include "sketchsgd/sketch/count_sketch.hpp"
#include "sketchsgd/sketch/sparse_update.hpp"
#include "sketchsgd/sketch/topk.hpp"

namespace sketchsgd {

/// Every coordinate i in `[0, d)` with estimate(i)^2 >= phi * l2_estimate()^2,
/// in increasing index order, values = the estimates (NaN never selected).
///
/// A coordinate holding a phi fraction of ||x||_2^2 is found with high
/// probability once cols = Omega(1 / phi) (Charikar et al. 2002). O(rows * d)
/// time; memory O(result) (estimates are computed in blocks, not stored).
/// @throws std::invalid_argument unless 0 < phi <= 1.
template <sketch_value Value, hash_family HashFamily>
[[nodiscard]] sparse_update<Value> heavy_hitters(const count_sketch<Value, HashFamily, cpu_t>& sketch, std::uint64_t d,
                                                 double phi, cpu_execution exec = {}) {
  if (!(phi > 0.0 && phi <= 1.0)) {
    throw std::invalid_argument("heavy_hitters: phi must be in (0, 1], got " + std::to_string(phi));
  }
  const double l2 = sketch.l2_estimate();
  const double threshold = phi * l2 * l2;
  constexpr std::size_t block = 4096;
  const auto n = static_cast<std::size_t>(d);
  const unsigned workers = detail::useful_workers(exec.resolved_threads(), n, detail::min_select_items);
  std::vector<sparse_update<Value>> parts(workers);
  detail::fork_join(workers, [&](unsigned w, unsigned nw) {
    const detail::index_range r = detail::split_range(n, w, nw);
    std::vector<Value> est(block);
    for (std::size_t begin = r.begin; begin < r.end; begin += block) {
      const std::size_t len = std::min(block, r.end - begin);
      sketch.estimate_all(std::span<Value>(est.data(), len), begin);
      for (std::size_t i = 0; i < len; ++i) {
        const auto e = static_cast<double>(est[i]);
        if (e * e >= threshold) {  // false for NaN
          parts[w].indices.push_back(begin + i);
          parts[w].values.push_back(est[i]);
        }
      }
    }
  });
  sparse_update<Value> out;
  for (auto& p : parts) {
    out.indices.insert(out.indices.end(), p.indices.begin(), p.indices.end());
    out.values.insert(out.values.end(), p.values.begin(), p.values.end());
  }
  return out;
}

namespace detail {

/// `top` (the `count` largest |estimate|, indices increasing, as `top_k`
/// gives them) cut to the coordinates with estimate^2 >= threshold, in
/// place. This is `heavy_hitters` cut to its `count` largest: a coordinate
/// above the threshold outranks every one below it, and both break ties to
/// the lower index. So any device that can take the top k can threshold.
template <class Value>
void keep_above(sparse_update<Value>& top, double threshold) noexcept {
  std::size_t kept = 0;
  for (std::size_t j = 0; j < top.indices.size(); ++j) {
    const auto e = static_cast<double>(top.values[j]);
    if (e * e >= threshold) {  // false for NaN, as in heavy_hitters
      top.indices[kept] = top.indices[j];
      top.values[kept] = top.values[j];
      ++kept;
    }
  }
  top.indices.resize(kept);
  top.values.resize(kept);
}

/// HEAVYMIX's threshold for k: phi = 1 / k, as `heavymix` computes it.
inline double heavymix_threshold(double l2, std::size_t k) noexcept {
  const double phi = 1.0 / static_cast<double>(k);
  return phi * l2 * l2;
}

inline void check_heavymix_k(std::size_t k, std::uint64_t d) {
  if (k == 0 || k > d) {
    throw std::invalid_argument("heavymix: k must be in [1, d = " + std::to_string(d) + "], got " + std::to_string(k));
  }
}

/// A selection and the positions in it of the coordinates drawn as fill.
template <class Value>
struct mixed_selection {
  sparse_update<Value> update;
  std::vector<std::size_t> fill;
};

/// HEAVYMIX's fill: `heavy` (at most k, indices increasing) with k - |heavy|
/// coordinates drawn uniformly without replacement from the other d -
/// |heavy| (Floyd's algorithm: O(k) memory, exactly that many draws from
/// `splitmix64(seed)`), indices increasing. The drawn coordinates' values
/// are left to the caller (the sketch's estimates, on whatever device it
/// lives): their positions in the result are `fill`.
template <class Value>
mixed_selection<Value> mix_in_fill(const sparse_update<Value>& heavy, std::uint64_t d, std::size_t k,
                                   std::uint64_t seed) {
  const std::size_t need = k - heavy.size();
  const std::uint64_t m = d - heavy.size();
  splitmix64 rng(seed);
  std::unordered_set<std::uint64_t> drawn;
  drawn.reserve(need);
  for (std::uint64_t j = m - need; j < m; ++j) {
    const std::uint64_t t = rng.next_below(j + 1);
    drawn.insert(drawn.contains(t) ? j : t);
  }
  std::vector<std::uint64_t> positions(drawn.begin(), drawn.end());
  std::sort(positions.begin(), positions.end());

  // The p-th coordinate outside `heavy` is p plus the heavy indices below it.
  mixed_selection<Value> out;
  out.update.indices.reserve(k);
  out.update.values.reserve(k);
  out.fill.reserve(need);
  std::size_t h = 0;
  auto emit_heavy_below = [&](std::uint64_t bound) {
    for (; h < heavy.size() && heavy.indices[h] < bound; ++h) {
      out.update.indices.push_back(heavy.indices[h]);
      out.update.values.push_back(heavy.values[h]);
    }
  };
  for (const std::uint64_t p : positions) {
    std::uint64_t index = p + h;
    while (h < heavy.size() && heavy.indices[h] <= index) {
      emit_heavy_below(index + 1);
      index = p + h;
    }
    out.fill.push_back(out.update.indices.size());
    out.update.indices.push_back(index);
    out.update.values.push_back(Value{});
  }
  emit_heavy_below(d);
  return out;
}

}  // namespace detail

/// HEAVYMIX (Ivkin et al. 2019, the selection their guarantees assume): the
/// l2 heavy hitters for phi = 1/k (the k largest of them if there are more),
/// filled up to k coordinates drawn uniformly without replacement from the
/// rest with `splitmix64(seed)`, so every rank passing the same seed draws the
/// same ones. Values are the estimates; indices increasing. Computed as the
/// sketch's top k kept above the threshold (`detail::keep_above`, the same
/// set): one unsketch pass, no estimate of every coordinate.
/// @throws std::invalid_argument if k > d or k == 0.
template <sketch_value Value, hash_family HashFamily>
[[nodiscard]] sparse_update<Value> heavymix(const count_sketch<Value, HashFamily, cpu_t>& sketch, std::uint64_t d,
                                            std::size_t k, std::uint64_t seed, cpu_execution exec = {}) {
  detail::check_heavymix_k(k, d);
  sparse_update<Value> heavy = top_k(sketch, d, k, exec);
  detail::keep_above(heavy, detail::heavymix_threshold(sketch.l2_estimate(), k));
  auto mixed = detail::mix_in_fill(heavy, d, k, seed);
  for (const std::size_t j : mixed.fill) mixed.update.values[j] = sketch.estimate(mixed.update.indices[j]);
  return std::move(mixed.update);
}

}  // namespace sketchsgd
