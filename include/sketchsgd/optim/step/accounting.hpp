// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Communication accounting every optimizer reports: what this rank really
/// handed to its transport, per step and in total, against a dense ring
/// allreduce of the d parameters.

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "sketchsgd/collective/communicator.hpp"

namespace sketchsgd {

/// Where one step's wall-clock time went, in seconds.
struct step_timing {
  double local = 0;        ///< momentum, error feedback, masking, copies
  double compress = 0;     ///< sketching, or the local top-k selection
  double communicate = 0;  ///< inside collectives, waiting for peers included
  double recover = 0;      ///< unsketch (estimate_all + top-k), merges, final selection
  double total = 0;        ///< the whole step

  /// Field-wise sum.
  friend step_timing operator+(step_timing a, const step_timing& b) noexcept {
    a.local += b.local;
    a.compress += b.compress;
    a.communicate += b.communicate;
    a.recover += b.recover;
    a.total += b.total;
    return a;
  }
};

/// Traffic of one rank.
struct comm_stats {
  /// The last step's bytes, messages and collective calls (rounds).
  comm_counters last_step;
  /// Everything since construction, the setup's fingerprint exchange excluded.
  comm_counters total;
  /// Steps run (skipped ones included); `load` sets it to the checkpoint's count.
  std::uint64_t steps = 0;
  /// Steps this object ran, whose traffic `total` holds: what
  /// `compression()` counts (unlike `steps`, not restored by `load`).
  std::uint64_t steps_run_here = 0;
  /// Of `steps`, those every rank skipped because a gradient held NaN or Inf
  /// (`nonfinite_policy::skip_step`); they changed no state.
  std::uint64_t skipped_steps = 0;
  /// Bytes one rank sends per step in a ring allreduce of the d parameters:
  /// 2 (W-1)/W d sizeof(Value), the dense baseline.
  double dense_ring_bytes_per_step = 0;
  /// The last step's time by phase.
  step_timing last_step_time;
  /// All steps' time by phase.
  step_timing total_time;

  /// The steps that changed the state, `steps - skipped_steps`: the count
  /// the driver hands to update rules (Adam's bias correction), recovery
  /// policies (HEAVYMIX's per-step seed) and learning-rate schedules, so a
  /// run with skipped steps equals the run without them.
  [[nodiscard]] std::uint64_t taken_steps() const noexcept { return steps - skipped_steps; }

  /// Achieved compression: dense ring bytes over bytes really sent.
  [[nodiscard]] double compression() const noexcept {
    return total.bytes_sent == 0
               ? 0.0
               : dense_ring_bytes_per_step * static_cast<double>(steps_run_here) /
                     static_cast<double>(total.bytes_sent);
  }
};

namespace detail {

/// Bytes one rank sends in a ring allreduce of d values of `value_bytes`.
[[nodiscard]] inline double dense_ring_bytes(std::uint64_t d, int world, std::size_t value_bytes) noexcept {
  const auto w = static_cast<double>(world);
  return 2.0 * (w - 1.0) / w * static_cast<double>(d) * static_cast<double>(value_bytes);
}

/// Snapshots a communicator's counters around each step, and times its
/// phases: `lap(&step_timing::x)` charges the time since the previous lap to
/// phase x.
class step_accounting {
 public:
  using clock = std::chrono::steady_clock;

  void begin(const comm_counters& now) noexcept {
    at_begin_ = now;
    stats_.last_step_time = {};
    started_ = last_lap_ = clock::now();
  }
  void lap(double step_timing::*phase) noexcept {
    const auto now = clock::now();
    stats_.last_step_time.*phase += std::chrono::duration<double>(now - last_lap_).count();
    last_lap_ = now;
  }
  /// Closes a step; `skipped`: it changed no state (a non-finite gradient).
  void end(const comm_counters& now, bool skipped) noexcept {
    stats_.last_step = now - at_begin_;
    stats_.total = stats_.total + stats_.last_step;
    ++stats_.steps;
    ++stats_.steps_run_here;
    if (skipped) ++stats_.skipped_steps;
    stats_.last_step_time.total = std::chrono::duration<double>(clock::now() - started_).count();
    stats_.total_time = stats_.total_time + stats_.last_step_time;
  }
  comm_stats& stats() noexcept { return stats_; }
  [[nodiscard]] const comm_stats& stats() const noexcept { return stats_; }

 private:
  comm_counters at_begin_;
  comm_stats stats_;
  clock::time_point started_{};
  clock::time_point last_lap_{};
};

}  // namespace detail
}  // namespace sketchsgd
