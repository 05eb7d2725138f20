// SPDX-License-Identifier: Apache-2.0
#pragma once

// Shared helpers for the tests: deterministic random data from splitmix64
// (std:: distributions are implementation-defined, so never used for data a
// test pins), and the fixed seed list of the statistical tier.

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <vector>

#include "sketchsgd/hash/seed_mixer.hpp"

namespace sketchsgd::test {

/// Seeds every statistical test runs over; a failure prints the seed.
inline constexpr std::array<std::uint64_t, 8> statistical_seeds = {1, 2, 3, 5, 8, 13, 21, 34};

/// Uniform double in [0, 1) from 53 random bits.
inline double uniform01(splitmix64& rng) { return static_cast<double>(rng.next() >> 11U) * 0x1.0p-53; }

/// Standard normal by Box-Muller.
inline double normal(splitmix64& rng) {
  const double u1 = 1.0 - uniform01(rng);  // (0, 1]
  const double u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

/// n standard normal values.
template <class Value>
std::vector<Value> normal_vector(std::size_t n, std::uint64_t seed) {
  splitmix64 rng(seed);
  std::vector<Value> v(n);
  for (auto& x : v) x = static_cast<Value>(normal(rng));
  return v;
}

/// n integers uniform in [-bound, bound].
template <class Value>
std::vector<Value> integer_vector(std::size_t n, std::int64_t bound, std::uint64_t seed) {
  splitmix64 rng(seed);
  std::vector<Value> v(n);
  for (auto& x : v)
    x = static_cast<Value>(static_cast<std::int64_t>(rng.next_below(2 * static_cast<std::uint64_t>(bound) + 1)) -
                           bound);
  return v;
}

}  // namespace sketchsgd::test
