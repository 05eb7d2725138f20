// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The per-call CPU execution argument.

#include <cstddef>
#include <thread>

namespace sketchsgd {

/// How a CPU operation runs. Passed per call, never stored in a sketch.
///
/// Every operation gives the same result whatever the thread count: work is
/// split so that each output cell is written by one thread in a fixed order,
/// which makes even floating-point sums independent of `threads`.
struct cpu_execution {
  /// Worker threads; 0 means `std::thread::hardware_concurrency()`.
  unsigned threads = 1;

  /// The thread count after resolving 0, never less than 1.
  [[nodiscard]] unsigned resolved_threads() const noexcept {
    if (threads != 0) return threads;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : hw;
  }
};

/// Use every hardware thread.
inline constexpr cpu_execution all_threads{0};

}  // namespace sketchsgd
