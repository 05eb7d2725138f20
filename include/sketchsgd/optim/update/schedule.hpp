// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Learning-rate schedules for `composed_options::schedule`: functions of
/// the number of steps taken, so a resumed checkpoint continues them.

#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>

namespace sketchsgd {

/// eta = base * factor^(t / every) (t: steps taken).
template <class Value>
std::function<Value(std::uint64_t)> step_decay(Value base, Value factor, std::uint64_t every) {
  return [=](std::uint64_t t) { return static_cast<Value>(base * std::pow(factor, static_cast<Value>(t / every))); };
}

/// Linear warm-up from peak / warmup to `peak` over `warmup` steps, then a
/// cosine decay to `floor` at step `total` (and `floor` after).
template <class Value>
std::function<Value(std::uint64_t)> warmup_cosine(Value peak, std::uint64_t warmup, std::uint64_t total,
                                                  Value floor = Value{0}) {
  return [=](std::uint64_t t) {
    if (t < warmup) return static_cast<Value>(peak * static_cast<double>(t + 1) / static_cast<double>(warmup));
    if (t >= total) return floor;
    const double p = static_cast<double>(t - warmup) / static_cast<double>(total - warmup);
    return static_cast<Value>(floor + (peak - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * p)));
  };
}

}  // namespace sketchsgd
