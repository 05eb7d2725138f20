// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The matching engine the byte-moving transports share (inproc, TCP):
/// posted receives are matched in post order by (source, tag), and messages
/// that arrive before their receive wait in a buffer bounded in bytes. It has
/// no lock of its own: each transport calls it under the lock that also
/// guards its failure state.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sketchsgd/transport/concepts.hpp"

namespace sketchsgd::detail {

/// One send or receive, shared by the request that waits for it and the
/// transport that completes it (under the transport's lock).
struct transfer {
  int peer = 0;                 ///< the source of a receive, the destination of a send
  tag_t tag = 0;                ///< the message tag
  std::span<std::byte> buffer;  ///< receives: where the message goes
  bool is_recv = true;          ///< a receive, else a send
  bool receiving = false;       ///< being filled outside the mailbox (read straight into `buffer`)
  bool sending = false;         ///< sends: its bytes are being written by an I/O thread
  bool done = false;            ///< completed, with `error` or without
  std::string error;            ///< non-empty: completed with this error
};

/// The posted receives and unmatched messages of one rank.
class mailbox {
 public:
  /// The mailbox of a `who` (named in errors) that holds at most
  /// `max_buffered_bytes` of unmatched messages.
  mailbox(const char* who, std::uint64_t max_buffered_bytes) noexcept
      : who_(who), max_buffered_bytes_(max_buffered_bytes) {}

  /// Bytes of unmatched messages held.
  [[nodiscard]] std::uint64_t buffered_bytes() const noexcept { return buffered_bytes_; }
  /// The limit on them.
  [[nodiscard]] std::uint64_t max_buffered_bytes() const noexcept { return max_buffered_bytes_; }
  /// Whether `bytes` more unmatched bytes stay within the limit.
  [[nodiscard]] bool fits(std::uint64_t bytes) const noexcept { return buffered_bytes_ + bytes <= max_buffered_bytes_; }

  /// Completes receive `r` with the oldest unmatched message for its (peer,
  /// tag), if there is one; returns whether it did.
  bool take_unexpected(transfer& r) {
    const auto found = unexpected_.find({r.peer, r.tag});
    if (found == unexpected_.end()) return false;
    const std::vector<std::byte> message = std::move(found->second.front());
    found->second.pop_front();
    if (found->second.empty()) unexpected_.erase(found);
    buffered_bytes_ -= message.size();
    complete(r, message);
    return true;
  }

  /// Queues receive `r` for a message still to come.
  void post(std::shared_ptr<transfer> r) { posted_.push_back(std::move(r)); }

  /// Takes receive `r` off the queue: withdrawn by its request, or claimed to
  /// be filled outside the mailbox.
  void withdraw(const std::shared_ptr<transfer>& r) { posted_.remove(r); }

  /// The first queued receive for (source, tag), or null.
  [[nodiscard]] std::shared_ptr<transfer> first_posted(int source, tag_t tag) const {
    for (const auto& r : posted_) {
      if (r->peer == source && r->tag == tag) return r;
    }
    return nullptr;
  }

  /// Completes the first receive queued for (source, tag) with `message`, or
  /// else keeps the message for a later receive. Returns false, keeping
  /// nothing, when that would pass the byte limit.
  /// @tparam Message `std::span<const std::byte>` (copied if kept), or a
  /// `std::vector<std::byte>` rvalue (kept without a copy).
  template <class Message>
  bool deliver(int source, tag_t tag, Message&& message) {
    if (const auto r = first_posted(source, tag)) {
      complete(*r, message);
      withdraw(r);
      return true;
    }
    if (!fits(message.size())) return false;
    buffered_bytes_ += message.size();
    auto& queue = unexpected_[{source, tag}];
    if constexpr (std::is_same_v<Message, std::vector<std::byte>>) {
      queue.push_back(std::move(message));
    } else {
      queue.emplace_back(message.begin(), message.end());
    }
    return true;
  }

  /// Completes receive `r` with `message`: copied into its buffer, or an
  /// error when the sizes differ.
  void complete(transfer& r, std::span<const std::byte> message) const {
    r.done = true;
    if (message.size() != r.buffer.size()) {
      r.error = std::string(who_) + ": expected " + std::to_string(r.buffer.size()) + " bytes from rank " +
                std::to_string(r.peer) + " tag " + std::to_string(r.tag) + ", got " + std::to_string(message.size());
      return;
    }
    if (!message.empty()) std::memcpy(r.buffer.data(), message.data(), message.size());
  }

 private:
  const char* who_;
  std::uint64_t max_buffered_bytes_;
  std::uint64_t buffered_bytes_ = 0;
  std::map<std::pair<int, tag_t>, std::deque<std::vector<std::byte>>> unexpected_;
  std::list<std::shared_ptr<transfer>> posted_;  // in post order
};

}  // namespace sketchsgd::detail
