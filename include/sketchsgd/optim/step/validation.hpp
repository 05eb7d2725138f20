// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Option checks shared by the optimizers, all before any I/O.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace sketchsgd::detail {

/// Throws `std::invalid_argument` prefixed with the optimizer's name.
[[noreturn]] inline void bad_option(const char* who, const std::string& why) {
  throw std::invalid_argument(std::string(who) + ": " + why);
}

/// 0 < k <= the compressed coordinates.
inline void check_k(const char* who, std::size_t k, std::uint64_t sparse) {
  if (k == 0) bad_option(who, "k must be positive");
  if (k > sparse) bad_option(who, "k exceeds the number of compressed coordinates");
}

/// Coordinates travel as 4-byte indices on the wire.
inline void check_wire_indices(const char* who, std::uint64_t dimension, std::uint64_t limit) {
  if (dimension >= limit) bad_option(who, "d must be below 2^32 - 1 (4-byte indices on the wire)");
}

}  // namespace sketchsgd::detail
