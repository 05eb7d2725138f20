// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// What optimizers do when a gradient holds NaN or Inf: every rank learns of
/// it in the same step and reacts the same way, so no rank hangs in a
/// collective the others abandoned.

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "sketchsgd/collective/allreduce.hpp"
#include "sketchsgd/error.hpp"

namespace sketchsgd {

/// Reaction to a non-finite gradient on any rank.
enum class nonfinite_policy {
  throw_error,  ///< every rank throws `nonfinite_error` (default)
  skip_step,    ///< every rank skips the step: no state changes, an empty update
  unchecked,    ///< no check and no extra round: NaN spreads (fastest)
};

/// A gradient held NaN or Inf on some rank; thrown on every rank.
class nonfinite_error : public error {
 public:
  using error::error;
};

namespace detail {

/// Number of non-finite elements of `x` (0 for integer types).
template <class Value>
std::uint64_t count_nonfinite(std::span<const Value> x) noexcept {
  if constexpr (std::is_floating_point_v<Value>) {
    std::uint64_t bad = 0;
    for (const Value v : x) bad += std::isfinite(v) ? 0U : 1U;
    return bad;
  } else {
    return 0;
  }
}

/// Divides aggregated sums by the world size when averaging is on (floating
/// point only; the options' validation refuses averaging of integers).
template <class Value>
void average_in_place(std::span<Value> x, int world, bool average) noexcept {
  if constexpr (std::is_floating_point_v<Value>) {
    if (average) {
      const Value w = static_cast<Value>(world);
      for (Value& e : x) e /= w;
    }
  }
}

/// Checks `gradient` on every rank at once (one allreduce of one integer,
/// counted as a round). Returns true when the step must be skipped.
/// @throws nonfinite_error on every rank under `throw_error`.
template <class Comm, class Value>
bool nonfinite_consensus(Comm& comm, std::span<const Value> gradient, nonfinite_policy policy, const char* who) {
  if (policy == nonfinite_policy::unchecked) return false;
  std::int64_t bad = static_cast<std::int64_t>(count_nonfinite(gradient));
  allreduce(comm, std::span<std::int64_t>(&bad, 1));
  if (bad == 0) return false;
  if (policy == nonfinite_policy::throw_error) {
    throw nonfinite_error(std::string(who) + ": " + std::to_string(bad) +
                          " non-finite gradient values across the ranks; the step was not taken");
  }
  return true;
}

}  // namespace detail
}  // namespace sketchsgd
