// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The request a TCP transport hands back for a send or receive: a move-only
/// handle that waits with the transport's timeout and, when dropped,
/// withdraws a pending receive or waits out a pending send, so that its
/// buffer is never touched after.

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "sketchsgd/detail/mailbox.hpp"
#include "sketchsgd/error.hpp"

namespace sketchsgd::detail {

/// A pending send or receive of `Owner`, which waits for and withdraws it
/// under its own lock. Must not outlive its owner.
/// @tparam Owner `tcp_transport`, a parameter only so that this header needs
/// none of it: it gives `timeout()` and, to its request, `settle(op,
/// deadline)`, `withdraw(op)`, `abandon(op)` and `break_all(why)`.
template <class Owner>
class tcp_request {
 public:
  tcp_request() = default;
  /// Moves the pending operation.
  tcp_request(tcp_request&& other) noexcept
      : state_(std::move(other.state_)), owner_(std::exchange(other.owner_, nullptr)) {}
  /// Withdraws this request's pending receive, then takes `other`'s.
  tcp_request& operator=(tcp_request&& other) noexcept {
    cancel();
    state_ = std::move(other.state_);
    owner_ = std::exchange(other.owner_, nullptr);
    return *this;
  }
  tcp_request(const tcp_request&) = delete;
  tcp_request& operator=(const tcp_request&) = delete;
  /// A receive still pending is withdrawn and a send still pending waited
  /// for (failed after the timeout), so its buffer is never touched after
  /// the request is gone.
  ~tcp_request() { cancel(); }

  /// Waits up to the transport's timeout.
  /// @throws timeout_error after it (the transport then fails every peer);
  /// transport_error if the peer failed or the size was wrong.
  void wait() {
    if (!state_) return;
    if (!owner_->settle(*state_, std::chrono::steady_clock::now() + owner_->timeout())) {
      const std::string why = std::string(state_->is_recv ? "receive from" : "send to") + " rank " +
                              std::to_string(state_->peer) + " tag " + std::to_string(state_->tag) +
                              " timed out after " + std::to_string(owner_->timeout().count()) + " ms";
      owner_->break_all(why);
      cancel();  // a send's buffer is released before the caller hears of it
      throw timeout_error("tcp_transport: " + why);
    }
  }

  /// Waits at most `d`; returns whether the operation completed.
  /// @throws transport_error if the peer failed or the size was wrong.
  bool wait_for(std::chrono::nanoseconds d) {
    if (!state_) return true;
    return owner_->settle(*state_,
                          std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(d));
  }

 private:
  friend Owner;
  tcp_request(std::shared_ptr<transfer> state, Owner* owner) : state_(std::move(state)), owner_(owner) {}

  void cancel() noexcept {
    if (!state_ || owner_ == nullptr) return;
    if (state_->is_recv) {
      owner_->withdraw(state_);
    } else {
      owner_->abandon(state_);
    }
    state_.reset();
  }

  std::shared_ptr<transfer> state_;
  Owner* owner_ = nullptr;
};

}  // namespace sketchsgd::detail
