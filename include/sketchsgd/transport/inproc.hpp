// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The in-process transport: W ranks run as threads of one process and
/// exchange bytes through per-rank mailboxes. No dependency beyond the
/// standard library. Used for tests, single-machine simulation of a
/// distributed job, and as the default transport of the examples.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sketchsgd/detail/mailbox.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/transport/concepts.hpp"

namespace sketchsgd {

/// Settings of an in-process world.
struct inproc_options {
  /// How long `request::wait()` waits before throwing `timeout_error`.
  std::chrono::milliseconds timeout{30'000};
  /// Bytes a rank may have received but not yet matched to a receive; above
  /// it a send fails with `transport_error` instead of growing memory without
  /// bound.
  std::uint64_t max_buffered_bytes = std::uint64_t{1} << 30U;
};

namespace detail {

/// State shared by every rank of a world. One mutex: the transport exists to
/// test and simulate, and a single lock makes its failure semantics simple.
struct inproc_shared {
  explicit inproc_shared(int n, inproc_options o)
      : options(o),
        mailboxes(static_cast<std::size_t>(n), mailbox("inproc_transport", o.max_buffered_bytes)),
        failed(static_cast<std::size_t>(n), false) {}
  inproc_options options;
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<mailbox> mailboxes;
  std::vector<bool> failed;
  std::vector<std::string> failure_reason = std::vector<std::string>(failed.size());
};

}  // namespace detail

class inproc_transport;

/// A world of `size` in-process ranks. Create one, hand `transport(r)` to the
/// thread playing rank r. The world must outlive its transports.
class inproc_world {
 public:
  /// A world of `size` ranks.
  /// @throws std::invalid_argument if size < 1.
  explicit inproc_world(int size, inproc_options options = {}) : shared_(make_shared_state(size, options)) {}

  /// Number of ranks.
  [[nodiscard]] int size() const noexcept { return static_cast<int>(shared_->mailboxes.size()); }

  /// The transport of rank `rank`.
  /// @throws std::invalid_argument if rank is out of range.
  [[nodiscard]] inproc_transport transport(int rank);

  /// Failure injection: marks `rank` failed. Every pending and later
  /// operation that involves it, on any rank, fails with `transport_error`.
  void fail(int rank, const std::string& reason = "failed by fault injection") {
    check_rank(rank);
    const std::lock_guard lock(shared_->mutex);
    mark_failed_locked(*shared_, rank, reason);
  }

  /// Whether `rank` has been marked failed.
  [[nodiscard]] bool failed(int rank) const {
    check_rank(rank);
    const std::lock_guard lock(shared_->mutex);
    return shared_->failed[static_cast<std::size_t>(rank)];
  }

  /// @cond INTERNAL
  static void mark_failed_locked(detail::inproc_shared& s, int rank, const std::string& reason) {
    const auto r = static_cast<std::size_t>(rank);
    if (s.failed[r]) return;
    s.failed[r] = true;
    s.failure_reason[r] = reason;
    s.changed.notify_all();
  }
  /// @endcond

 private:
  static std::shared_ptr<detail::inproc_shared> make_shared_state(int size, inproc_options options) {
    if (size < 1) throw std::invalid_argument("inproc_world: size must be at least 1, got " + std::to_string(size));
    return std::make_shared<detail::inproc_shared>(size, options);
  }
  void check_rank(int rank) const {
    if (rank < 0 || rank >= size()) {
      throw std::invalid_argument("inproc_world: rank must be in [0, " + std::to_string(size()) + "), got " +
                                  std::to_string(rank));
    }
  }

  std::shared_ptr<detail::inproc_shared> shared_;
};

/// Rank `rank()` of an `inproc_world`: a Tier-1 transport. Sends are eager
/// (the bytes are copied at `isend`), so a send request is complete at once.
/// Destroying a transport marks its rank departed, as a process exit would.
class inproc_transport {
 public:
  /// A pending or completed operation.
  class request {
   public:
    request() = default;

    /// Waits up to the world's timeout.
    /// @throws timeout_error after the timeout; transport_error if the peer
    /// failed or the message had the wrong size.
    void wait() {
      if (!state_) return;
      if (!wait_until(std::chrono::steady_clock::now() + shared_->options.timeout)) {
        throw timeout_error("inproc_transport: receive from rank " + std::to_string(state_->peer) + " tag " +
                            std::to_string(state_->tag) + " timed out after " +
                            std::to_string(shared_->options.timeout.count()) + " ms");
      }
    }

    /// Waits at most `d`; returns whether the operation completed.
    /// @throws transport_error if the peer failed or the size was wrong.
    bool wait_for(std::chrono::nanoseconds d) {
      if (!state_) return true;
      return wait_until(std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(d));
    }

    /// Moves the pending operation.
    request(request&&) noexcept = default;
    /// Withdraws this request's pending receive, then takes `other`'s.
    request& operator=(request&& other) noexcept {
      cancel();
      state_ = std::move(other.state_);
      shared_ = std::move(other.shared_);
      rank_ = other.rank_;
      return *this;
    }
    request(const request&) = delete;
    request& operator=(const request&) = delete;
    /// A receive still pending is withdrawn, so its buffer is never written
    /// after the request is gone.
    ~request() { cancel(); }

   private:
    friend class inproc_transport;
    request(std::shared_ptr<detail::transfer> s, std::shared_ptr<detail::inproc_shared> sh, int rank)
        : state_(std::move(s)), shared_(std::move(sh)), rank_(rank) {}

    bool wait_until(std::chrono::steady_clock::time_point deadline) {
      std::unique_lock lock(shared_->mutex);
      const auto src = static_cast<std::size_t>(state_->peer);
      const auto me = static_cast<std::size_t>(rank_);
      const bool settled = shared_->changed.wait_until(
          lock, deadline, [&] { return state_->done || shared_->failed[src] || shared_->failed[me]; });
      if (!settled) return false;
      if (!state_->done) {
        const std::size_t who = shared_->failed[src] ? src : me;
        throw transport_error("inproc_transport: rank " + std::to_string(who) +
                              " failed: " + shared_->failure_reason[who]);
      }
      if (!state_->error.empty()) throw transport_error(state_->error);
      return true;
    }

    void cancel() noexcept {
      if (!state_ || !shared_) return;
      const std::lock_guard lock(shared_->mutex);
      if (!state_->done) shared_->mailboxes[static_cast<std::size_t>(rank_)].withdraw(state_);
      state_.reset();
    }

    std::shared_ptr<detail::transfer> state_;
    std::shared_ptr<detail::inproc_shared> shared_;
    int rank_ = -1;  // the receiving rank
  };

  /// Moves rank ownership; the moved-from transport no longer departs.
  inproc_transport(inproc_transport&& other) noexcept
      : shared_(std::move(other.shared_)), rank_(std::exchange(other.rank_, -1)) {}
  inproc_transport& operator=(inproc_transport&&) = delete;
  inproc_transport(const inproc_transport&) = delete;
  inproc_transport& operator=(const inproc_transport&) = delete;
  ~inproc_transport() {
    if (shared_ && rank_ >= 0) {
      const std::lock_guard lock(shared_->mutex);
      inproc_world::mark_failed_locked(*shared_, rank_, "rank departed (its transport was destroyed)");
    }
  }

  /// This rank.
  [[nodiscard]] int rank() const noexcept { return rank_; }
  /// Number of ranks.
  [[nodiscard]] int size() const noexcept { return static_cast<int>(shared_->mailboxes.size()); }
  /// The world's timeout for `request::wait()`.
  [[nodiscard]] std::chrono::milliseconds timeout() const noexcept { return shared_->options.timeout; }

  /// Sends `bytes` to rank `dst` (copied now; the request is complete).
  /// @throws std::invalid_argument for a bad rank; transport_error if either
  /// rank failed or the receiver's buffer limit would be exceeded.
  request isend(int dst, tag_t tag, std::span<const std::byte> bytes) {
    check_peer(dst, "isend");
    const std::lock_guard lock(shared_->mutex);
    check_alive_locked(dst);
    auto& box = shared_->mailboxes[static_cast<std::size_t>(dst)];
    if (!box.deliver(rank_, tag, bytes)) {
      const std::string why = "inproc_transport: rank " + std::to_string(dst) + " has " +
                              std::to_string(box.buffered_bytes()) + " unmatched bytes; " +
                              std::to_string(bytes.size()) + " more would exceed the limit of " +
                              std::to_string(box.max_buffered_bytes());
      inproc_world::mark_failed_locked(*shared_, rank_, why);
      throw transport_error(why);
    }
    shared_->changed.notify_all();
    return {};
  }

  /// Receives exactly `bytes.size()` bytes from rank `src` with `tag`.
  /// @throws std::invalid_argument for a bad rank; transport_error if a rank
  /// failed or a matched message has another size.
  request irecv(int src, tag_t tag, std::span<std::byte> bytes) {
    check_peer(src, "irecv");
    auto state = std::make_shared<detail::transfer>();
    state->peer = src;
    state->tag = tag;
    state->buffer = bytes;
    const std::lock_guard lock(shared_->mutex);
    auto& box = shared_->mailboxes[static_cast<std::size_t>(rank_)];
    if (!box.take_unexpected(*state)) {
      check_alive_locked(src);
      box.post(state);
    }
    return request(std::move(state), shared_, rank_);
  }

 private:
  friend class inproc_world;
  inproc_transport(std::shared_ptr<detail::inproc_shared> shared, int rank) : shared_(std::move(shared)), rank_(rank) {}

  void check_peer(int peer, const char* what) const {
    if (peer < 0 || peer >= size()) {
      throw std::invalid_argument(std::string("inproc_transport::") + what + ": rank must be in [0, " +
                                  std::to_string(size()) + "), got " + std::to_string(peer));
    }
  }

  void check_alive_locked(int peer) const {
    for (const int r : {rank_, peer}) {
      if (shared_->failed[static_cast<std::size_t>(r)]) {
        throw transport_error("inproc_transport: rank " + std::to_string(r) +
                              " failed: " + shared_->failure_reason[static_cast<std::size_t>(r)]);
      }
    }
  }

  std::shared_ptr<detail::inproc_shared> shared_;
  int rank_;
};

inline inproc_transport inproc_world::transport(int rank) {
  check_rank(rank);
  return inproc_transport(shared_, rank);
}

static_assert(transport<inproc_transport>);

}  // namespace sketchsgd
