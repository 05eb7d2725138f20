// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The shape and seed of a Count Sketch.

#include <cstdint>
#include <stdexcept>
#include <string>

namespace sketchsgd {

/// Rows, columns and hash seed of a Count Sketch. Two sketches can be merged
/// only when their configurations (and value and hash types) are equal.
struct sketch_config {
  /// Largest supported number of rows (the median is taken on the stack).
  static constexpr std::uint64_t max_rows = 64;

  /// Number of rows r: independent estimates a point query takes the median
  /// of; r = O(log(d / delta)) for failure probability delta.
  std::uint64_t rows = 5;
  /// Number of columns c: each row's estimate has variance at most
  /// ||x||_2^2 / c (Charikar, Chen, Farach-Colton 2002).
  std::uint64_t cols = 0;
  /// Seed of the hash family; every rank must use the same one.
  std::uint64_t seed = 0;

  /// Number of table cells, rows * cols.
  [[nodiscard]] constexpr std::uint64_t cells() const noexcept { return rows * cols; }

  /// Field-wise equality.
  friend constexpr bool operator==(const sketch_config&, const sketch_config&) = default;
};

/// Throws `std::invalid_argument` unless `rows` is in `[1, max_rows]` and
/// `cols` in `[1, max_cols]`.
inline void validate(const sketch_config& cfg, std::uint64_t max_cols) {
  if (cfg.rows < 1 || cfg.rows > sketch_config::max_rows) {
    throw std::invalid_argument("sketch_config: rows must be in [1, " + std::to_string(sketch_config::max_rows) +
                                "], got " + std::to_string(cfg.rows));
  }
  if (cfg.cols < 1 || cfg.cols > max_cols) {
    throw std::invalid_argument("sketch_config: cols must be in [1, " + std::to_string(max_cols) + "], got " +
                                std::to_string(cfg.cols));
  }
}

/// "rows x cols, seed s", for messages.
[[nodiscard]] inline std::string to_string(const sketch_config& cfg) {
  return std::to_string(cfg.rows) + " x " + std::to_string(cfg.cols) + ", seed " + std::to_string(cfg.seed);
}

}  // namespace sketchsgd
