// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// What every elastic job has, whatever its transport: the `elastic_member`
/// concept (`tcp_elastic_member`, transport/tcp/elastic.hpp;
/// `inproc_elastic_member`, transport/inproc_elastic.hpp), `reform_agreed`,
/// the step boundary at which a generation's ranks leave it together, and
/// the rules by which a rendezvous forms each generation
/// (`detail::elastic_roster`, which `tcp_rendezvous` and
/// `inproc_elastic_world` both apply).

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sketchsgd/collective/allreduce.hpp"
#include "sketchsgd/collective/communicator.hpp"
#include "sketchsgd/transport/concepts.hpp"

namespace sketchsgd {

/// A worker of an elastic job: `join()` leaves the current generation of
/// the world and returns its transport in the next one; `membership()`
/// points to its place there (`generation`, `rank`, `size`, `newcomer`);
/// `reform_requested()` says whether its generation was asked to re-form (a
/// worker waits to join, or a member left).
template <class M>
concept elastic_member = requires(M& m, const M& cm) {
  requires transport<std::remove_reference_t<decltype(m.join())>>;
  { cm.membership()->generation } -> std::convertible_to<std::uint64_t>;
  { cm.membership()->newcomer } -> std::convertible_to<bool>;
  { cm.reform_requested() } -> std::convertible_to<bool>;
};

/// Whether any rank of `comm` was asked to re-form (`reform_requested`):
/// one allreduce of a flag, so that every rank leaves the generation at the
/// same step boundary (ranks hear of a re-forming at different steps).
/// @throws what the allreduce throws.
template <transport Transport, elastic_member Member>
bool reform_agreed(communicator<Transport>& comm, const Member& me) {
  std::int32_t flag = me.reform_requested() ? 1 : 0;
  allreduce(comm, std::span<std::int32_t>(&flag, 1));  // a sum: the number of ranks asked
  return flag != 0;
}

namespace detail {

/// A member as the roster sees it (a rendezvous's member type derives from it).
struct elastic_seat {
  std::optional<std::uint64_t> asks;  ///< its arrival number, while it waits for a place
  std::uint64_t generation = 0;       ///< the generation it has a rank in (0: none)
  int rank = -1;                      ///< its rank there
  bool gone = false;                  ///< it left the job
};

/// The rules by which a rendezvous forms each generation of an elastic
/// world, apart from how its members reach it. Survivors are numbered
/// first, in their old order (rank 0 is a survivor whenever there is one),
/// newcomers after, in order of arrival, at most `max_workers`. A re-forming
/// starts when a member of the newest generation asks (or any member, for
/// the first generation, or when every member of the newest is gone) and
/// waits up to `join_timeout` for the newest generation's other members; a
/// silent one is then left out. Fewer than `min_workers` by then is a
/// refusal. The first generation waits `settle` after the last arrival once
/// `min_workers` are there. A newcomer alone starts nothing: the running
/// world re-forms when it agrees to.
/// @tparam Member derived from `elastic_seat`.
template <class Member>
class elastic_roster {
 public:
  using clock = std::chrono::steady_clock;     ///< the roster's clock
  using member_ptr = std::shared_ptr<Member>;  ///< how members are held

  /// What `evaluate` decided.
  struct verdict {
    enum class kind { wait, form, refuse };
    kind what = kind::wait;                              ///< the decision
    clock::time_point until = clock::time_point::max();  ///< wait: when to evaluate again
    std::vector<member_ptr> members;   ///< form: the new generation, by rank; refuse: the members refused
    std::vector<bool> newcomer;        ///< form: per rank, not a member of the generation before
    std::vector<member_ptr> left_out;  ///< form: the old members left out (silent past join_timeout)
    std::string why;                   ///< refuse: the reason to give them
  };

  /// Rules `who` (named in errors) applies.
  /// @throws std::invalid_argument unless 1 <= min_workers <= max_workers.
  elastic_roster(const char* who, int min_workers, int max_workers, std::chrono::milliseconds join_timeout,
                 std::chrono::milliseconds settle)
      : min_workers_(min_workers), max_workers_(max_workers), join_timeout_(join_timeout), settle_(settle) {
    if (min_workers < 1 || max_workers < min_workers) {
      throw std::invalid_argument(std::string(who) + ": need 1 <= min_workers <= max_workers, got " +
                                  std::to_string(min_workers) + " and " + std::to_string(max_workers));
    }
  }

  /// The newest generation (0: none yet).
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }
  /// Its members, by rank (gone ones included).
  [[nodiscard]] const std::vector<member_ptr>& world() const noexcept { return world_; }
  /// Whether `m` has a rank in the newest generation.
  [[nodiscard]] bool old_member(const elastic_seat& m) const noexcept {
    return generation_ > 0 && m.generation == generation_;
  }
  /// Whether the newest generation is full.
  [[nodiscard]] bool full() const noexcept { return static_cast<int>(world_.size()) >= max_workers_; }

  /// Records that `m` asks for a place; true if that starts or joins a
  /// re-forming (a member of the newest generation, or the first), false
  /// for a newcomer, who waits for the running world to agree.
  bool ask(Member& m) {
    m.asks = ++arrivals_;
    last_arrival_ = clock::now();
    if (!old_member(m) && generation_ != 0) return false;
    if (!forming_since_) forming_since_ = last_arrival_;
    return true;
  }

  /// The generation just formed failed before it started: its members
  /// other than `except` (its rank 0) ask again at once, as survivors.
  void reform_without(int except) {
    forming_since_ = clock::now();
    for (std::size_t r = 0; r < world_.size(); ++r) {
      if (world_[r]->gone || static_cast<int>(r) == except) continue;
      world_[r]->asks = ++arrivals_;
    }
    world_[static_cast<std::size_t>(except)]->generation = 0;
  }

  /// Forms the next generation when its members are all there, or the wait
  /// is over; refuses them when too few asked in time; else says when to
  /// look again. `members`: every member alive.
  verdict evaluate(const std::vector<member_ptr>& members) {
    const auto now = clock::now();
    std::vector<member_ptr> waiting;
    for (const auto& m : members)
      if (m->asks) waiting.push_back(m);
    if (waiting.empty()) return {};
    if (!forming_since_) {  // only newcomers: wait for the running world, unless none of it is left
      if (!std::all_of(world_.begin(), world_.end(), [](const member_ptr& m) { return m->gone; })) return {};
      forming_since_ = now;
    }
    const int n = static_cast<int>(waiting.size());
    const bool all_old =
        std::all_of(world_.begin(), world_.end(), [](const member_ptr& m) { return m->gone || m->asks; });
    const bool settled = generation_ > 0 || n >= max_workers_ || now - last_arrival_ >= settle_;
    const auto deadline = *forming_since_ + join_timeout_;
    if (n >= min_workers_ && ((all_old && settled) || now >= deadline)) return form(std::move(waiting));
    if (now >= deadline) {
      verdict v;
      v.what = verdict::kind::refuse;
      v.why = "only " + std::to_string(n) + " worker(s) asked within join_timeout; min_workers is " +
              std::to_string(min_workers_);
      for (const auto& m : waiting) m->asks.reset();
      v.members = std::move(waiting);
      forming_since_.reset();
      return v;
    }
    verdict v;
    v.until = all_old && n >= min_workers_ ? std::min(deadline, last_arrival_ + settle_) : deadline;
    return v;
  }

 private:
  verdict form(std::vector<member_ptr> waiting) {
    std::stable_sort(waiting.begin(), waiting.end(), [&](const member_ptr& a, const member_ptr& b) {
      const bool sa = old_member(*a);
      const bool sb = old_member(*b);
      if (sa != sb) return sa;
      return sa ? a->rank < b->rank : *a->asks < *b->asks;
    });
    if (static_cast<int>(waiting.size()) > max_workers_) waiting.resize(static_cast<std::size_t>(max_workers_));
    verdict v;
    v.what = verdict::kind::form;
    for (const auto& m : world_) {
      if (!m->gone && !m->asks) {
        m->generation = 0;
        v.left_out.push_back(m);
      }
    }
    for (const auto& m : waiting) v.newcomer.push_back(!old_member(*m));
    ++generation_;
    for (std::size_t r = 0; r < waiting.size(); ++r) {
      waiting[r]->asks.reset();
      waiting[r]->generation = generation_;
      waiting[r]->rank = static_cast<int>(r);
    }
    world_ = waiting;
    v.members = std::move(waiting);
    forming_since_.reset();
    return v;
  }

  int min_workers_;
  int max_workers_;
  std::chrono::milliseconds join_timeout_;
  std::chrono::milliseconds settle_;
  std::vector<member_ptr> world_;  // the newest generation, by rank
  std::uint64_t generation_ = 0;
  std::uint64_t arrivals_ = 0;
  clock::time_point last_arrival_{};
  std::optional<clock::time_point> forming_since_;  // a re-forming began (its first member asked)
};

}  // namespace detail

}  // namespace sketchsgd
