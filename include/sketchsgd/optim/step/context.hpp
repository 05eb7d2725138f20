// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// What a step hands to its policies (`step_context`).

#include <cstdint>

#include "sketchsgd/optim/step/accounting.hpp"
#include "sketchsgd/optim/step/coordinates.hpp"
#include "sketchsgd/optim/step/device_ops.hpp"

namespace sketchsgd {

/// What the driver tells a policy about this step: the world, averaging,
/// the learning rate, the steps taken, the coordinate split, the device's
/// context and the phase timer.
template <class Value, class Device>
struct step_context {
  int rank = 0;                                                    ///< this rank
  int world = 1;                                                   ///< number of ranks
  bool average = false;                                            ///< sums are divided by W
  Value learning_rate = Value{1};                                  ///< this step's eta
  std::uint64_t step = 0;                                          ///< steps taken before this one (not the skipped)
  const detail::coordinate_split* split = nullptr;                 ///< dense ranges and the sparse renumbering
  typename detail::device_ops<Device>::context* device = nullptr;  ///< how device calls run
  detail::step_accounting* timer = nullptr;                        ///< the phase timer
  const char* name = "";                                           ///< the optimizer's, for messages

  /// Charges the time since the last lap to `phase`.
  void lap(double step_timing::*phase) const noexcept { timer->lap(phase); }
};

namespace detail {
using sketchsgd::step_context;
}  // namespace detail

}  // namespace sketchsgd
