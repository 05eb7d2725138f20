// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Dense coordinates (biases, small tensors) that skip compression: the
/// optimizers allreduce them in full every step. The remaining "sparse"
/// coordinates are renumbered contiguously, so sketches never see the dense
/// ones and recovery can never pick them.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace sketchsgd {

/// A half-open run of coordinates `[offset, offset + length)`.
struct dense_range {
  std::uint64_t offset = 0;  ///< first coordinate
  std::uint64_t length = 0;  ///< number of coordinates

  /// Field-wise equality.
  friend bool operator==(const dense_range&, const dense_range&) = default;
};

namespace detail {

/// The split of [0, d) into dense ranges and renumbered sparse segments.
class coordinate_split {
 public:
  /// A run of sparse coordinates: global [global, global + length) are
  /// compact [compact, compact + length).
  struct segment {
    std::uint64_t global;
    std::uint64_t compact;
    std::uint64_t length;
  };

  coordinate_split() = default;

  /// @throws std::invalid_argument if a range is empty, leaves [0, d), or
  /// overlaps another.
  coordinate_split(std::uint64_t d, std::vector<dense_range> dense) : d_(d), dense_(std::move(dense)) {
    std::sort(dense_.begin(), dense_.end(),
              [](const dense_range& a, const dense_range& b) { return a.offset < b.offset; });
    std::uint64_t at = 0;
    for (const dense_range& r : dense_) {
      if (r.length == 0 || r.offset > d || r.length > d - r.offset) {
        throw std::invalid_argument("dense range [" + std::to_string(r.offset) + ", +" + std::to_string(r.length) +
                                    ") is empty or outside [0, " + std::to_string(d) + ")");
      }
      if (r.offset < at) throw std::invalid_argument("dense ranges overlap at coordinate " + std::to_string(r.offset));
      if (r.offset > at) segments_.push_back({at, at - dense_count_, r.offset - at});
      dense_count_ += r.length;
      at = r.offset + r.length;
    }
    if (at < d) segments_.push_back({at, at - dense_count_, d - at});
  }

  [[nodiscard]] std::uint64_t dimension() const noexcept { return d_; }
  [[nodiscard]] std::uint64_t sparse_count() const noexcept { return d_ - dense_count_; }
  [[nodiscard]] std::uint64_t dense_count() const noexcept { return dense_count_; }
  [[nodiscard]] const std::vector<segment>& segments() const noexcept { return segments_; }
  [[nodiscard]] const std::vector<dense_range>& dense() const noexcept { return dense_; }

  /// Maps increasing compact indices to global ones, in place.
  void to_global(std::span<std::uint64_t> compact) const noexcept {
    std::size_t s = 0;
    for (std::uint64_t& i : compact) {
      while (i >= segments_[s].compact + segments_[s].length) ++s;
      i = segments_[s].global + (i - segments_[s].compact);
    }
  }

  /// Copies the dense coordinates of `x` (in range order) into `out`, as T.
  template <class T, class U>
  void gather_dense(std::span<const U> x, std::span<T> out) const noexcept {
    std::size_t at = 0;
    for (const dense_range& r : dense_) {
      for (std::uint64_t i = 0; i < r.length; ++i) out[at++] = static_cast<T>(x[r.offset + i]);
    }
  }

 private:
  std::uint64_t d_ = 0;
  std::uint64_t dense_count_ = 0;
  std::vector<dense_range> dense_;
  std::vector<segment> segments_;
};

/// Merges a sparse update (increasing `idx`, `val`) with the dense
/// coordinates' values into one increasing index list.
template <class Value>
void merge_with_dense(const coordinate_split& split, std::vector<std::uint64_t>& idx, std::vector<Value>& val,
                      std::span<const Value> dense_values) {
  if (split.dense_count() == 0) return;
  std::vector<std::uint64_t> out_idx;
  std::vector<Value> out_val;
  out_idx.reserve(idx.size() + dense_values.size());
  out_val.reserve(idx.size() + dense_values.size());
  std::size_t s = 0;
  std::size_t d = 0;
  for (const dense_range& r : split.dense()) {
    for (std::uint64_t i = r.offset; i < r.offset + r.length; ++i, ++d) {
      for (; s < idx.size() && idx[s] < i; ++s) {
        out_idx.push_back(idx[s]);
        out_val.push_back(val[s]);
      }
      out_idx.push_back(i);
      out_val.push_back(dense_values[d]);
    }
  }
  for (; s < idx.size(); ++s) {
    out_idx.push_back(idx[s]);
    out_val.push_back(val[s]);
  }
  idx = std::move(out_idx);
  val = std::move(out_val);
}

}  // namespace detail
}  // namespace sketchsgd
