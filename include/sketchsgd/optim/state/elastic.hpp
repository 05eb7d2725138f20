// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Elastic training's optimizer state, kept as Horovod's elastic State keeps
/// it: each rank commits its optimizer's state in memory between steps
/// (`elastic_commit`); when the world re-forms (a rank died, or one joins),
/// every member of the new world calls `resume_resized`, which gathers the
/// members' commits and re-divides them (`load_survivors`): the error
/// memories the survivors held are summed and split evenly among the new
/// world, the rest (update rule, FetchSGD's sketches, step count) is taken
/// whole. The transport re-forms apart: `tcp_elastic_member`
/// (transport/tcp/elastic.hpp) or `inproc_elastic_member`
/// (transport/inproc_elastic.hpp).

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sketchsgd/collective/allgather.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/optim/state/state_io.hpp"
#include "sketchsgd/serialize/wire.hpp"

namespace sketchsgd {

/// A rank's last two commits of an optimizer's state, in memory: a rank
/// that died in a step may leave the others one commit apart, and they then
/// resume from the older, which all of them still hold.
class elastic_commit {
 public:
  /// Keeps `opt`'s state (`save`'s bytes): call it between steps, on every
  /// rank at the same step.
  template <class Optimizer>
  void commit(const Optimizer& opt) {
    std::ostringstream os;
    opt.save(os);
    previous_ = std::exchange(latest_, std::move(os).str());
  }
  /// Puts `opt` back to the last commit, in the same world (`load`).
  /// @throws std::logic_error without a commit; what `load` throws.
  template <class Optimizer>
  void restore(Optimizer& opt) const {
    if (latest_.empty()) throw std::logic_error("elastic_commit::restore: nothing was committed");
    std::istringstream is(latest_);
    opt.load(is);
  }
  /// Whether nothing was committed (a rank that joins).
  [[nodiscard]] bool empty() const noexcept { return latest_.empty(); }
  /// The steps the newest and the one before were taken after (-1: none).
  [[nodiscard]] std::array<std::int64_t, 2> steps() const noexcept { return {steps_of(latest_), steps_of(previous_)}; }
  /// The commit taken after `steps` steps, or nullptr if not held.
  [[nodiscard]] const std::string* at(std::int64_t steps) const noexcept {
    if (steps_of(latest_) == steps) return &latest_;
    if (steps_of(previous_) == steps) return &previous_;
    return nullptr;
  }

 private:
  static std::int64_t steps_of(const std::string& b) noexcept {
    if (b.size() < detail::state_header_bytes) return -1;
    return static_cast<std::int64_t>(wire::load_le<std::uint64_t>(reinterpret_cast<const std::byte*>(b.data()) + 16));
  }
  std::string latest_;
  std::string previous_;
};

/// What `resume_resized` resumed from.
struct resize_report {
  std::int64_t steps = 0;  ///< the step every member resumed after
  int old_world = 0;       ///< the world the commits were taken in
  int contributors = 0;    ///< old ranks whose memories came along (the other old ranks' are lost)
};

/// Every member of a re-formed world calls this, with `opt` built for its
/// rank of the new world and its own commits (a joining rank's are empty):
/// the step is the newest every surviving member still holds a commit of;
/// those commits are gathered (one allgather of the step numbers, one
/// allgatherv of the states: every member holds all of them for a moment)
/// and `opt.load_survivors` re-divides them. Every member ends with the
/// same replicated state and an even share of the memories.
/// @throws std::logic_error on every member if none has a commit;
/// config_mismatch_error if the survivors hold no common step; what the
/// collectives and `load_survivors` throw.
template <transport Transport, class Optimizer>
resize_report resume_resized(communicator<Transport>& comm, Optimizer& opt, const elastic_commit& mine) {
  const auto w = static_cast<std::size_t>(comm.size());
  const std::array<std::int64_t, 2> my_steps = mine.steps();
  std::vector<std::int64_t> all(2 * w);
  allgather(comm, std::span<const std::int64_t>(my_steps), std::span<std::int64_t>(all));
  std::int64_t step = std::numeric_limits<std::int64_t>::max();
  for (std::size_t r = 0; r < w; ++r)
    if (all[2 * r] >= 0) step = std::min(step, all[2 * r]);
  if (step == std::numeric_limits<std::int64_t>::max()) {
    throw std::logic_error("resume_resized: no member of the new world holds a commit");
  }
  for (std::size_t r = 0; r < w; ++r) {
    if (all[2 * r] >= 0 && all[2 * r] != step && all[2 * r + 1] != step) {
      throw config_mismatch_error("resume_resized: member " + std::to_string(r) + " holds commits of steps " +
                                  std::to_string(all[2 * r]) + " and " + std::to_string(all[2 * r + 1]) +
                                  ", not of step " + std::to_string(step) + ", which another member resumes from");
    }
  }
  const std::string* chosen = mine.at(step);
  const std::span<const std::byte> bytes =
      chosen != nullptr ? std::as_bytes(std::span<const char>(chosen->data(), chosen->size()))
                        : std::span<const std::byte>();
  const gathered<std::byte> states = allgatherv(comm, bytes);
  std::vector<std::istringstream> streams;
  for (std::size_t r = 0; r < w; ++r) {
    const std::span<const std::byte> s = states.of(static_cast<int>(r));
    if (!s.empty()) streams.emplace_back(std::string(reinterpret_cast<const char*>(s.data()), s.size()));
  }
  std::vector<std::istream*> in;
  for (auto& s : streams) in.push_back(&s);
  opt.load_survivors(std::span<std::istream* const>(in));
  resize_report report{.steps = step, .contributors = static_cast<int>(streams.size())};
  for (std::size_t r = 0; r < w; ++r) {
    const std::span<const std::byte> s = states.of(static_cast<int>(r));
    if (s.size() >= detail::state_header_bytes) {
      report.old_world = static_cast<int>(wire::load_le<std::uint32_t>(s.data() + 28));
      break;
    }
  }
  return report;
}

}  // namespace sketchsgd
