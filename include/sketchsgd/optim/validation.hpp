// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Option checks shared by the optimizers, all before any I/O.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "sketchsgd/optim/coordinates.hpp"

namespace sketchsgd::detail {

/// Throws `std::invalid_argument` prefixed with the optimizer's name.
[[noreturn]] inline void bad_option(const char* who, const std::string& why) {
  throw std::invalid_argument(std::string(who) + ": " + why);
}

/// d > 0, 0 < k <= the compressed coordinates, averaging only for floating
/// point, dense ranges inside [0, d) and disjoint.
template <class Value>
void check_selection(const char* who, std::uint64_t dimension, std::size_t k, bool average,
                     const std::vector<dense_range>& dense) {
  if (dimension == 0) bad_option(who, "dimension must be positive");
  if (k == 0) bad_option(who, "k must be positive");
  if (average && std::is_integral_v<Value>) bad_option(who, "averaging needs a floating-point value type");
  const coordinate_split probe(dimension, dense);  // validates the ranges
  if (k > probe.sparse_count()) bad_option(who, "k exceeds the number of compressed coordinates");
}

/// Coordinates travel as 4-byte indices on the wire.
inline void check_wire_indices(const char* who, std::uint64_t dimension, std::uint64_t limit) {
  if (dimension >= limit) bad_option(who, "d must be below 2^32 - 1 (4-byte indices on the wire)");
}

/// A root that is a rank.
inline void check_root_rank(const char* who, int root, int world) {
  if (root < 0 || root >= world) bad_option(who, "root " + std::to_string(root) + " is not a rank");
}

}  // namespace sketchsgd::detail
