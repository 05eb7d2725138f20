// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Elastic in-process worlds: ranks as threads that re-form their world by
/// the rules a `tcp_rendezvous` applies to processes (transport/tcp/
/// rendezvous.hpp), so that elastic training loops run in tests and
/// simulations without sockets. An `inproc_elastic_world` plays the
/// rendezvous; each thread holds an `inproc_elastic_member` and, at each
/// `join()`, gets its rank in the next generation and that generation's
/// `inproc_transport`. Survivors are numbered first, in their old order,
/// newcomers after, in order of arrival, at most `max_workers`; a member
/// that does not ask within `join_timeout` of the first that did is left
/// out; fewer than `min_workers` is a refusal, never an endless wait. A
/// member destroyed (its thread ends, as a process dies) departs its
/// generation at once: the others' collectives fail and they ask for the
/// next one. The loop around it is tcp_elastic_member's (see its file).

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sketchsgd/error.hpp"
#include "sketchsgd/transport/elastic.hpp"
#include "sketchsgd/transport/inproc.hpp"

namespace sketchsgd {

/// Settings of an `inproc_elastic_world`: the rendezvous's (as
/// `tcp_rendezvous_options`) and every generation's transport.
struct inproc_elastic_options {
  /// The fewest workers a generation may have.
  int min_workers = 1;
  /// The most workers a generation may have (later ones wait for a place).
  int max_workers = 1 << 20;
  /// How long a re-forming waits, from the first member that asked, for the
  /// others of its generation (a silent one is then left out), and how long
  /// one `join()` may wait in all. Should exceed `transport.timeout`, after
  /// which a member blocked on a silent peer gives up and asks.
  std::chrono::milliseconds join_timeout{60'000};
  /// The first generation only: once `min_workers` are there, how long to
  /// wait after the last arrival for more (up to `max_workers`).
  std::chrono::milliseconds settle{100};
  /// Every generation's `inproc_world`.
  inproc_options transport;
};

/// A member's place in a generation.
struct inproc_assignment {
  std::uint64_t generation = 0;  ///< the generation (from 1)
  int rank = 0;                  ///< the member's rank in it
  int size = 0;                  ///< its world size
  bool newcomer = false;         ///< not a member of the generation before (it brings no state)
};

class inproc_elastic_member;

/// The rendezvous of an elastic in-process job (see the file comment). It
/// must outlive its members.
class inproc_elastic_world {
 public:
  /// A job with no member yet.
  /// @throws std::invalid_argument unless 1 <= min_workers <= max_workers.
  explicit inproc_elastic_world(inproc_elastic_options o = {})
      : o_(o), roster_("inproc_elastic_world", o.min_workers, o.max_workers, o.join_timeout, o.settle) {}
  inproc_elastic_world(const inproc_elastic_world&) = delete;
  inproc_elastic_world& operator=(const inproc_elastic_world&) = delete;

  /// The newest generation formed (0: none yet) and its world size.
  [[nodiscard]] std::pair<std::uint64_t, int> generation() const {
    const std::lock_guard lock(mutex_);
    return {roster_.generation(), static_cast<int>(roster_.world().size())};
  }

 private:
  friend class inproc_elastic_member;
  using clock = std::chrono::steady_clock;

  struct member : detail::elastic_seat {
    std::optional<inproc_assignment> given;  // a place, until join() takes it
    std::shared_ptr<inproc_world> world;     // the place's world, until join() takes it
    std::string refusal;                     // why its join is refused, until join() reports it
    bool left_out = false;                   // silent past join_timeout: every later join is refused
  };
  using member_ptr = std::shared_ptr<member>;

  /// Records `m`'s request for a place.
  void ask_locked(member& m) {
    if (roster_.ask(m) || !roster_.full()) reform_wanted_ = true;  // a newcomer waits for the next step boundary
  }

  /// Applies the roster's verdict; returns when to look again.
  clock::time_point evaluate_locked() {
    auto v = roster_.evaluate(members_);
    using kind = detail::elastic_roster<member>::verdict::kind;
    if (v.what == kind::refuse) {
      for (const auto& m : v.members) m->refusal = v.why;
    } else if (v.what == kind::form) {
      for (const auto& m : v.left_out) {
        m->left_out = true;
        m->refusal = "left out of generation " + std::to_string(roster_.generation()) +
                     ": did not ask to re-form within join_timeout";
      }
      const int n = static_cast<int>(v.members.size());
      auto world = std::make_shared<inproc_world>(n, o_.transport);
      for (int r = 0; r < n; ++r) {
        member& m = *v.members[static_cast<std::size_t>(r)];
        m.given = inproc_assignment{.generation = roster_.generation(),
                                    .rank = r,
                                    .size = n,
                                    .newcomer = v.newcomer[static_cast<std::size_t>(r)]};
        m.world = world;
      }
      reform_wanted_ = false;
    }
    if (v.what != kind::wait) changed_.notify_all();
    return v.until;
  }

  inproc_elastic_options o_;
  mutable std::mutex mutex_;         // guards everything below
  std::condition_variable changed_;  // a place given, a refusal, a member gone
  std::vector<member_ptr> members_;  // every member alive
  detail::elastic_roster<member> roster_;
  bool reform_wanted_ = false;  // the newest generation was asked to re-form
};

/// A thread's worker in an `inproc_elastic_world` (see the file comment); an
/// `elastic_member`.
class inproc_elastic_member {
 public:
  /// Registers a worker of `world`, which must outlive it.
  explicit inproc_elastic_member(inproc_elastic_world& world)
      : world_(&world), me_(std::make_shared<inproc_elastic_world::member>()) {
    const std::lock_guard lock(world_->mutex_);
    world_->members_.push_back(me_);
  }
  inproc_elastic_member(const inproc_elastic_member&) = delete;
  inproc_elastic_member& operator=(const inproc_elastic_member&) = delete;
  /// Departs its generation (the others' operations with it fail) and the job.
  ~inproc_elastic_member() {
    transport_.reset();
    generation_world_.reset();
    const std::lock_guard lock(world_->mutex_);
    me_->gone = true;
    std::erase(world_->members_, me_);
    if (world_->roster_.old_member(*me_)) world_->reform_wanted_ = true;
    (void)world_->evaluate_locked();
    world_->changed_.notify_all();
  }

  /// Leaves the current generation, if any, and joins the next one: blocks
  /// until this worker has a rank in it, within `join_timeout`.
  /// @throws transport_error if refused (too few workers, left out);
  /// timeout_error after `join_timeout` without a place (the world is full
  /// or never re-forms).
  inproc_transport& join() {
    transport_.reset();  // departs: the others' operations with this rank fail
    generation_world_.reset();
    auto& w = *world_;
    std::unique_lock lock(w.mutex_);
    if (me_->left_out) throw transport_error("inproc_elastic_member: " + me_->refusal);
    w.ask_locked(*me_);
    const auto deadline = inproc_elastic_world::clock::now() + w.o_.join_timeout;
    for (;;) {
      const auto wake = w.evaluate_locked();
      if (me_->given) break;
      if (!me_->refusal.empty()) throw transport_error("inproc_elastic_member: " + std::exchange(me_->refusal, {}));
      if (inproc_elastic_world::clock::now() >= deadline) {
        me_->asks.reset();
        throw timeout_error("inproc_elastic_member: no place in a generation within join_timeout (" +
                            std::to_string(w.o_.join_timeout.count()) + " ms)");
      }
      w.changed_.wait_until(lock, std::min(wake, deadline));
    }
    place_ = *std::exchange(me_->given, std::nullopt);
    generation_world_ = std::exchange(me_->world, nullptr);
    lock.unlock();
    transport_.emplace(generation_world_->transport(place_->rank));
    return *transport_;
  }

  /// The place of this worker in the newest generation it joined (nullopt
  /// before the first `join()`).
  [[nodiscard]] const std::optional<inproc_assignment>& membership() const noexcept { return place_; }
  /// The newest generation's transport (null before the first `join()`).
  [[nodiscard]] inproc_transport* transport() noexcept { return transport_ ? &*transport_ : nullptr; }
  /// Whether this worker's generation was asked to re-form (a worker waits
  /// to join, or a member left); agree on it with `reform_agreed`.
  [[nodiscard]] bool reform_requested() const {
    const std::lock_guard lock(world_->mutex_);
    return world_->reform_wanted_ && world_->roster_.old_member(*me_);
  }

 private:
  inproc_elastic_world* world_;
  std::shared_ptr<inproc_elastic_world::member> me_;
  std::optional<inproc_assignment> place_;
  std::shared_ptr<inproc_world> generation_world_;  // outlives transport_
  std::optional<inproc_transport> transport_;
};

}  // namespace sketchsgd
