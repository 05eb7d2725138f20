// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The links of a TCP transport once connected: each peer's connection and
/// frame queue, the I/O thread that writes the queues, the failure of a peer
/// or of the whole transport, and the settling of requests, all under one
/// lock (the rendezvous and the read loop are in transport.hpp).

#include "sketchsgd/transport/tcp/asio.hpp"

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sketchsgd/detail/mailbox.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/transport/concepts.hpp"
#include "sketchsgd/transport/tcp/framing.hpp"
#include "sketchsgd/transport/tcp/options.hpp"
#include "sketchsgd/transport/tcp/stream.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

namespace sketchsgd::detail {

/// The state `tcp_transport` shares between its callers and its I/O thread,
/// and what acts on it: the base of `tcp_transport`, which adds the
/// rendezvous and the read loop. Every socket on `io_` (the acceptor and the
/// peers' streams) and the TLS context they use live here, declared around
/// `io_` so that they are destroyed in the order Asio needs.
class tcp_links {
 protected:
  /// One peer's connection and send queue, guarded by `mutex_`.
  struct peer_link {
    std::unique_ptr<tcp_stream> stream;    ///< set once the handshake passed
    std::deque<tcp_outgoing_frame> queue;  ///< frames to write, oldest first
    bool writing = false;                  ///< a write_next chain is running
    bool up = false;                       ///< connected (stays true once it failed)
    std::string failure;                   ///< non-empty once the peer failed
  };

  /// Links for `rank` of `size` (checked by the transport), with no peer yet.
  tcp_links(tcp_options options, int rank, int size) : options_(std::move(options)), rank_(rank), size_(size) {}

  // ---- requests (called by request) ----------------------------------------------
  /// Waits until `op` is done, or its peer or the transport failed, or
  /// `deadline`; false at the deadline.
  /// @throws transport_error if the peer failed or the size was wrong.
  bool settle(transfer& op, std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    auto& peer = peers_[static_cast<std::size_t>(op.peer)];
    const bool settled =
        changed_.wait_until(lock, deadline, [&] { return op.done || !peer.failure.empty() || !broken_.empty(); });
    if (!settled) return false;
    if (op.done) {
      if (!op.error.empty()) throw transport_error(op.error);
      return true;
    }
    // A failed send is done once no write reads its buffer any more: the
    // failure closed the socket, which ends a write in progress at once.
    if (!op.is_recv) changed_.wait(lock, [&] { return op.done; });
    throw transport_error("tcp_transport: rank " + std::to_string(op.peer) +
                          " failed: " + (peer.failure.empty() ? broken_ : peer.failure));
  }

  /// Waits until send `op`, whose request is going away, no longer reads its
  /// buffer: written, or failed and out of the I/O thread's hands.
  void abandon(const std::shared_ptr<transfer>& op) noexcept {
    std::unique_lock lock(mutex_);
    const auto done = [&] { return op->done; };
    if (!changed_.wait_until(lock, std::chrono::steady_clock::now() + options_.timeout, done)) {
      fail_peer_locked(op->peer, "send dropped while its data was still queued after " +
                                     std::to_string(options_.timeout.count()) + " ms");
      changed_.wait(lock, done);
    }
  }

  /// Withdraws receive `op`, whose request is going away.
  void withdraw(const std::shared_ptr<transfer>& op) noexcept {
    std::unique_lock lock(mutex_);
    // A read straight into the buffer must end before the buffer is
    // released. It ends when the data arrives or the link fails; a peer that
    // stalls mid-body is failed after the timeout, and closing its link ends
    // the read.
    const auto not_receiving = [&] { return !op->receiving; };
    if (!changed_.wait_until(lock, std::chrono::steady_clock::now() + options_.timeout, not_receiving)) {
      fail_peer_locked(op->peer, "receive withdrawn while its data was still arriving after " +
                                     std::to_string(options_.timeout.count()) + " ms");
      changed_.wait(lock, not_receiving);
    }
    if (!op->done) mailbox_.withdraw(op);
  }

  // ---- I/O thread ------------------------------------------------------------
  /// The I/O thread's body: runs `io_` until it is stopped; an exception
  /// escaping a handler breaks the transport, and the thread goes on.
  void run_io() {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        break_all(std::string("I/O thread error: ") + e.what());
      }
    }
  }

  /// Closes the acceptor and every connection on the I/O thread, stops it
  /// and joins it.
  void shutdown() {
    boost::asio::post(io_, [this] {
      close_acceptor();
      for (auto& p : peers_) {
        if (p.stream) p.stream->close();
      }
      io_.stop();
    });
    if (io_thread_.joinable()) io_thread_.join();
  }

  /// Closes the acceptor, if open (I/O thread).
  void close_acceptor() {
    if (acceptor_) {
      boost::system::error_code ignored;
      acceptor_->close(ignored);
    }
  }

  /// Hands `message`, prefixed with this rank, to `options_.log`.
  void log(const std::string& message) const {
    try {
      options_.log("sketchsgd tcp rank " + std::to_string(rank_) + ": " + message);
    } catch (...) {  // a failing logger must not take the transport down
    }
  }

  // ---- send queue ----------------------------------------------------------------
  /// Queues a frame for `dst` (with `mutex_` held): `payload`, or `owned`
  /// when given; `state`, if any, is done once it was written. Starts the
  /// writes if the peer is up and none is running.
  void enqueue_locked(int dst, tcp_protocol::frame_type type, tag_t tag, std::span<const std::byte> payload,
                      std::shared_ptr<transfer> state, std::vector<std::byte> owned = {}) {
    auto& peer = peers_[static_cast<std::size_t>(dst)];
    tcp_outgoing_frame& o = peer.queue.emplace_back();
    o.owned = std::move(owned);
    o.payload = o.owned.empty() ? payload : std::span<const std::byte>(o.owned);
    o.header = tcp_protocol::frame_header{type, tag, o.payload.size()}.encode();
    o.state = std::move(state);
    if (peer.up && !peer.writing) {
      peer.writing = true;
      boost::asio::post(io_, [this, dst] { write_next(dst); });
    }
  }

  /// Writes the front of `dst`'s queue, then the next, until it is empty or
  /// the peer failed (I/O thread; `writing` is set while it runs).
  void write_next(int dst) {
    auto& peer = peers_[static_cast<std::size_t>(dst)];
    std::array<boost::asio::const_buffer, 2> buffers;
    {
      const std::lock_guard lock(mutex_);
      if (peer.queue.empty() || !peer.failure.empty()) {
        peer.writing = false;
        return;
      }
      buffers = peer.queue.front().buffers();  // deque: stays put while we push at the back
      if (peer.queue.front().state) peer.queue.front().state->sending = true;
    }
    peer.stream->async_write(buffers, [this, dst](const boost::system::error_code& ec, std::size_t) {
      auto& p = peers_[static_cast<std::size_t>(dst)];
      {
        const std::lock_guard lock(mutex_);
        if (auto& state = p.queue.front().state) {
          state->sending = false;
          state->done = true;
          if (ec && state->error.empty()) state->error = "tcp_transport: send to rank " + std::to_string(dst) + " failed";
        }
        changed_.notify_all();
        if (ec) {
          fail_peer_locked(dst, "write failed: " + ec.message());
          return;
        }
        p.queue.pop_front();
      }
      write_next(dst);
    });
  }

  // ---- failure -------------------------------------------------------------------
  /// fail_peer_locked, taking `mutex_`.
  void fail_peer(int r, const std::string& why) {
    const std::lock_guard lock(mutex_);
    fail_peer_locked(r, why);
  }

  /// Marks peer `r` failed (a clean goodbye too: later operations with it
  /// must fail), errors its queued sends and closes its socket.
  void fail_peer_locked(int r, const std::string& why, bool quiet = false) {
    auto& peer = peers_[static_cast<std::size_t>(r)];
    if (!peer.failure.empty()) return;
    peer.failure = why;
    if (broken_.empty() && !quiet && !closing_) log("rank " + std::to_string(r) + " failed: " + why);
    for (auto& o : peer.queue) {
      if (o.state && !o.state->done) {
        // The frame being written is done when its write ends, which
        // closing the socket below brings about.
        o.state->done = !o.state->sending;
        o.state->error = "tcp_transport: send to rank " + std::to_string(r) + " failed: " + why;
      }
    }
    if (peer.stream) {
      boost::asio::post(io_, [this, r] { peers_[static_cast<std::size_t>(r)].stream->close(); });
    }
    changed_.notify_all();
  }

  /// Fails every peer and closes every connection, so the other ranks see
  /// this rank fail at once instead of waiting out their own timeouts.
  void break_all(const std::string& why) {
    const std::lock_guard lock(mutex_);
    if (broken_.empty()) broken_ = why;
    for (int r = 0; r < size_; ++r) {
      if (r != rank_) fail_peer_locked(r, "transport broken: " + why);
    }
    changed_.notify_all();
  }

  /// @throws std::invalid_argument unless `peer` is another rank of the job
  /// (`what` names the operation).
  void check_peer(int peer, const char* what) const {
    if (peer < 0 || peer >= size_) {
      throw std::invalid_argument(std::string("tcp_transport::") + what + ": rank must be in [0, " +
                                  std::to_string(size_) + "), got " + std::to_string(peer));
    }
    if (peer == rank_) {
      throw std::invalid_argument(std::string("tcp_transport::") + what + ": a rank cannot message itself");
    }
  }

  /// @throws transport_error if the transport or `peer` failed (with
  /// `mutex_` held).
  void check_alive_locked(int peer) const {
    if (!broken_.empty()) throw transport_error("tcp_transport: transport broken: " + broken_ + "; recreate it");
    const auto& p = peers_[static_cast<std::size_t>(peer)];
    if (!p.failure.empty()) {
      throw transport_error("tcp_transport: rank " + std::to_string(peer) + " failed: " + p.failure);
    }
  }

  tcp_options options_;  ///< the job's options (a default logger set by the transport)
  int rank_;             ///< this rank
  int size_;             ///< number of ranks

  // Declared before io_, so that it outlives the streams that io_'s
  // handlers may still hold when io_ is destroyed.
  std::unique_ptr<boost::asio::ssl::context> tls_context_;    ///< set when options_.tls is enabled
  boost::asio::io_context io_;                                ///< runs every socket, on io_thread_
  std::thread io_thread_;                                     ///< runs run_io(); none when size is 1
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;  ///< open during the rendezvous

  mutable std::mutex mutex_;         ///< guards everything below, and the transfers
  std::condition_variable changed_;  ///< notified whenever anything below or a transfer changes
  std::vector<peer_link> peers_;     ///< one per rank (this rank's unused)
  std::string broken_;               ///< non-empty once the whole transport failed
  bool closing_ = false;             ///< the destructor runs: peers closing too are no news
  mailbox mailbox_{"tcp_transport", options_.max_buffered_bytes};  ///< posted receives, unmatched data
};

}  // namespace sketchsgd::detail
