// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// A sparse vector: what recovery returns and optimizers apply.

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "sketchsgd/concepts.hpp"

namespace sketchsgd {

/// Coordinates and their values, indices strictly increasing.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct sparse_update {
  /// Coordinates, strictly increasing.
  std::vector<std::uint64_t> indices;
  /// `values[n]` belongs to `indices[n]`.
  std::vector<Value> values;

  /// Number of nonzero coordinates carried.
  [[nodiscard]] std::size_t size() const noexcept { return indices.size(); }
  /// Whether no coordinate is carried.
  [[nodiscard]] bool empty() const noexcept { return indices.empty(); }

  /// Element-wise equality.
  friend bool operator==(const sparse_update&, const sparse_update&) = default;
};

/// Adds `scale * u` to `x`: `x[u.indices[n]] += scale * u.values[n]`.
/// @throws std::invalid_argument if an index is outside `x`, before writing.
template <sketch_value Value>
void add_scaled(std::span<Value> x, const sparse_update<Value>& u, Value scale) {
  if (u.indices.size() != u.values.size()) {
    throw std::invalid_argument("add_scaled: " + std::to_string(u.indices.size()) + " indices but " +
                                std::to_string(u.values.size()) + " values");
  }
  if (!u.indices.empty() && u.indices.back() >= x.size()) {
    throw std::invalid_argument("add_scaled: index " + std::to_string(u.indices.back()) + " is outside a span of " +
                                std::to_string(x.size()));
  }
  for (std::size_t n = 0; n < u.indices.size(); ++n) x[u.indices[n]] += scale * u.values[n];
}

}  // namespace sketchsgd
