// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Communication accounting every optimizer reports: what this rank really
/// handed to its transport, per step and in total, against a dense ring
/// allreduce of the d parameters.

#include <cstdint>

#include "sketchsgd/collective/communicator.hpp"

namespace sketchsgd {

/// Traffic of one rank.
struct comm_stats {
  /// The last step's bytes, messages and collective calls (rounds).
  comm_counters last_step;
  /// Everything since construction, the setup's fingerprint exchange excluded.
  comm_counters total;
  /// Steps taken (skipped ones included).
  std::uint64_t steps = 0;
  /// Bytes one rank sends per step in a ring allreduce of the d parameters:
  /// 2 (W-1)/W d sizeof(Value), the dense baseline.
  double dense_ring_bytes_per_step = 0;

  /// Achieved compression: dense ring bytes over bytes really sent.
  [[nodiscard]] double compression() const noexcept {
    return total.bytes_sent == 0
               ? 0.0
               : dense_ring_bytes_per_step * static_cast<double>(steps) / static_cast<double>(total.bytes_sent);
  }
};

namespace detail {

/// Snapshots a communicator's counters around each step.
class step_accounting {
 public:
  void begin(const comm_counters& now) noexcept { at_begin_ = now; }
  void end(const comm_counters& now) noexcept {
    stats_.last_step = now - at_begin_;
    stats_.total = stats_.total + stats_.last_step;
    ++stats_.steps;
  }
  comm_stats& stats() noexcept { return stats_; }
  [[nodiscard]] const comm_stats& stats() const noexcept { return stats_; }

 private:
  comm_counters at_begin_;
  comm_stats stats_;
};

}  // namespace detail
}  // namespace sketchsgd
