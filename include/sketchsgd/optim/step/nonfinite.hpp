// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// What optimizers do when a gradient holds NaN or Inf: every rank learns of
/// it in the same step and reacts the same way, so no rank hangs in a
/// collective the others abandoned.

#include <span>
#include <type_traits>

#include "sketchsgd/error.hpp"

namespace sketchsgd {

/// Reaction to a non-finite gradient on any rank.
enum class nonfinite_policy {
  throw_error,  ///< every rank throws `nonfinite_error` (default)
  skip_step,    ///< every rank skips the step: no state changes, an empty update
  unchecked,    ///< no check and no extra round: NaN spreads (fastest)
};

namespace detail {

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

}  // namespace detail
}  // namespace sketchsgd
