// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The seed mixer every hash family derives its per-row parameters from.
///
/// splitmix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014) is fully specified by the constants below, so the
/// parameters are identical on every platform, compiler and device. Never use
/// `std::` random engines or distributions for anything that must agree
/// across ranks: their output is implementation-defined.

#include <cstdint>

#include "sketchsgd/config.hpp"

namespace sketchsgd {

/// The splitmix64 finalizer: a bijective 64-bit mixer.
SKETCHSGD_HOST_DEVICE constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31U);
}

/// The splitmix64 generator: a Weyl sequence passed through `mix64`.
class splitmix64 {
 public:
  /// The Weyl increment (2^64 / golden ratio, odd).
  static constexpr std::uint64_t gamma = 0x9E3779B97F4A7C15ULL;

  /// Starts the stream at `state`.
  SKETCHSGD_HOST_DEVICE constexpr explicit splitmix64(std::uint64_t state) noexcept : state_(state) {}

  /// The next 64-bit output.
  SKETCHSGD_HOST_DEVICE constexpr std::uint64_t next() noexcept {
    state_ += gamma;
    return mix64(state_);
  }

  /// A value uniform in `[0, bound)` for `bound > 0` (Lemire's
  /// multiply-high with rejection, so without modulo bias).
  constexpr std::uint64_t next_below(std::uint64_t bound) noexcept;

 private:
  std::uint64_t state_;
};

/// The parameter stream of row `row` of a hash family seeded with `seed`.
/// Rows get unrelated streams because the row number is mixed before it
/// meets the seed.
SKETCHSGD_HOST_DEVICE constexpr splitmix64 row_stream(std::uint64_t seed, std::uint32_t row) noexcept {
  return splitmix64{mix64(seed ^ mix64(0x5851F42D4C957F2DULL + row))};
}

}  // namespace sketchsgd

#include "sketchsgd/detail/wide_multiply.hpp"

namespace sketchsgd {

constexpr std::uint64_t splitmix64::next_below(std::uint64_t bound) noexcept {
  // Lemire, "Fast random integer generation in an interval", TOMACS 2019.
  std::uint64_t x = next();
  detail::u128_parts m = detail::multiply_wide(x, bound);
  if (m.low < bound) {
    const std::uint64_t threshold = (0 - bound) % bound;
    while (m.low < threshold) {
      x = next();
      m = detail::multiply_wide(x, bound);
    }
  }
  return m.high;
}

}  // namespace sketchsgd
