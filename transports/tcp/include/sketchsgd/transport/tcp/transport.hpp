// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// `tcp_transport`: the rendezvous that builds the full mesh of connections,
/// and the read loop that takes each peer's frames into the mailbox, over the
/// links of links.hpp, which write the frame queues and fail peers (overview
/// in tcp.hpp).

#include "sketchsgd/transport/tcp/asio.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sketchsgd/detail/mailbox.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/transport/concepts.hpp"
#include "sketchsgd/transport/tcp/environment.hpp"
#include "sketchsgd/transport/tcp/framing.hpp"
#include "sketchsgd/transport/tcp/handshake.hpp"
#include "sketchsgd/transport/tcp/links.hpp"
#include "sketchsgd/transport/tcp/options.hpp"
#include "sketchsgd/transport/tcp/request.hpp"
#include "sketchsgd/transport/tcp/stream.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

namespace sketchsgd {

/// A rank of a TCP job: a Tier-1 transport.
class tcp_transport : private detail::tcp_links {
 public:
  /// A pending send or receive. Must not outlive its transport.
  using request = detail::tcp_request<tcp_transport>;

  /// Joins the job as `rank` of `size`, meeting the others through rank 0 at
  /// `root`. Blocks until the full mesh is up.
  /// @throws std::invalid_argument for a bad rank, size or empty secret, or
  /// TLS files that cannot be used; timeout_error if the rendezvous does not
  /// finish within
  /// `options.connect_timeout`; transport_error if it fails.
  tcp_transport(tcp_endpoint root, int rank, int size, std::string secret, tcp_options options = {})
      : tcp_links(std::move(options), rank, size), root_(std::move(root)), secret_(std::move(secret)) {
    if (size < 1) throw std::invalid_argument("tcp_transport: size must be at least 1, got " + std::to_string(size));
    if (rank < 0 || rank >= size) {
      throw std::invalid_argument("tcp_transport: rank must be in [0, " + std::to_string(size) + "), got " +
                                  std::to_string(rank));
    }
    if (secret_.empty()) throw std::invalid_argument("tcp_transport: the job secret must not be empty");
    if (!options_.log) options_.log = [](const std::string& m) { std::cerr << m << '\n'; };
    if (options_.tls.enabled()) tls_context_ = detail::make_tls_context(options_.tls);
    peers_.resize(static_cast<std::size_t>(size));
    if (size == 1) return;

    boost::asio::co_spawn(io_, bootstrap(), boost::asio::detached);
    io_thread_ = std::thread([this] { run_io(); });
    std::unique_lock lock(mutex_);
    const bool settled = changed_.wait_until(lock, std::chrono::steady_clock::now() + options_.connect_timeout,
                                             [&] { return connected_ == size_ - 1 || !broken_.empty(); });
    if (connected_ == size_ - 1 && broken_.empty()) {
      lock.unlock();
      boost::asio::post(io_, [this] { close_acceptor(); });
      return;
    }
    const std::string why = settled ? broken_ : missing_ranks_locked();
    lock.unlock();
    shutdown();
    if (!settled) throw timeout_error("tcp_transport: rendezvous timed out; " + why);
    throw transport_error("tcp_transport: rendezvous failed: " + why);
  }

  /// Builds the transport from the environment: SKETCHSGD_TCP_ROOT
  /// (host:port), SKETCHSGD_RANK, SKETCHSGD_SIZE and SKETCHSGD_SECRET (or
  /// SKETCHSGD_SECRET_FILE); rank 0 may be given port 0 together with
  /// SKETCHSGD_TCP_PORT_FILE, where it writes the port it got. The launcher
  /// script scripts/tcp_launch.sh sets them.
  /// @throws std::invalid_argument naming a missing or malformed variable.
  static std::unique_ptr<tcp_transport> from_environment(tcp_options options = {}) {
    auto job = detail::read_tcp_environment(options);
    return std::make_unique<tcp_transport>(std::move(job.root), job.rank, job.size, std::move(job.secret),
                                           std::move(options));
  }

  tcp_transport(const tcp_transport&) = delete;
  tcp_transport& operator=(const tcp_transport&) = delete;
  tcp_transport(tcp_transport&&) = delete;
  tcp_transport& operator=(tcp_transport&&) = delete;

  /// Says goodbye to every peer (so they fail fast if they still expected
  /// data), then closes the connections and stops the I/O thread.
  ~tcp_transport() {
    if (!io_thread_.joinable()) return;
    {
      std::unique_lock lock(mutex_);
      closing_ = true;  // peers closing at the same time are no news
      if (broken_.empty()) {
        for (int p = 0; p < size_; ++p) {
          auto& peer = peers_[static_cast<std::size_t>(p)];
          if (p != rank_ && peer.failure.empty()) {
            enqueue_locked(p, tcp_protocol::frame_type::goodbye, 0, {}, nullptr);
          }
        }
        changed_.wait_for(lock, std::chrono::milliseconds(500), [&] {
          return std::all_of(peers_.begin(), peers_.end(),
                             [](const peer_link& l) { return l.queue.empty() || !l.failure.empty(); });
        });
      }
    }
    shutdown();
  }

  /// This rank.
  [[nodiscard]] int rank() const noexcept { return rank_; }
  /// Number of ranks.
  [[nodiscard]] int size() const noexcept { return size_; }
  /// The timeout of `request::wait()`.
  [[nodiscard]] std::chrono::milliseconds timeout() const noexcept { return options_.timeout; }

  /// Sends `bytes` to `dst`; the span must stay valid until the request
  /// completed (the bytes are written from it, not copied).
  /// @throws std::invalid_argument for a bad rank; transport_error if the
  /// peer or the transport failed.
  request isend(int dst, tag_t tag, std::span<const std::byte> bytes) {
    check_peer(dst, "isend");
    auto state = std::make_shared<detail::transfer>();
    state->is_recv = false;
    state->peer = dst;
    state->tag = tag;
    const std::lock_guard lock(mutex_);
    check_alive_locked(dst);
    enqueue_locked(dst, tcp_protocol::frame_type::data, tag, bytes, state);
    return {std::move(state), this};
  }

  /// Receives exactly `bytes.size()` bytes from `src` with `tag`.
  /// @throws std::invalid_argument for a bad rank; transport_error if the
  /// peer or the transport failed, or (at wait) the message size differs.
  request irecv(int src, tag_t tag, std::span<std::byte> bytes) {
    check_peer(src, "irecv");
    auto state = std::make_shared<detail::transfer>();
    state->peer = src;
    state->tag = tag;
    state->buffer = bytes;
    const std::lock_guard lock(mutex_);
    if (!mailbox_.take_unexpected(*state)) {
      check_alive_locked(src);
      mailbox_.post(state);
    }
    return {std::move(state), this};
  }

 private:
  friend request;
  using tcp = boost::asio::ip::tcp;
  template <class T>
  using awaitable = boost::asio::awaitable<T>;
  using listen_entry = std::pair<std::string, std::uint16_t>;

  // ---- rendezvous (on the I/O thread) ------------------------------------------
  awaitable<void> bootstrap() {
    try {
      if (rank_ == 0) {
        const auto address = co_await resolve(root_.host, root_.port);
        open_acceptor(address);
        listen_host_ = address.address().to_string();
        boost::asio::co_spawn(io_, accept_loop(), boost::asio::detached);
      } else {
        auto socket = co_await connect_with_retry(root_.host, root_.port);
        const auto local = socket.local_endpoint().address();
        open_acceptor(tcp::endpoint(local, 0));
        boost::asio::co_spawn(io_, accept_loop(), boost::asio::detached);
        co_await handshake(std::move(socket), 0);
      }
    } catch (const std::exception& e) {
      fail_bootstrap(e.what());
    }
  }

  awaitable<tcp::endpoint> resolve(const std::string& host, std::uint16_t port) {
    tcp::resolver resolver(io_);
    const auto results = co_await resolver.async_resolve(host, std::to_string(port), boost::asio::use_awaitable);
    if (results.empty()) throw transport_error("cannot resolve " + host);
    co_return results.begin()->endpoint();
  }

  void open_acceptor(const tcp::endpoint& at) {
    acceptor_ = std::make_unique<tcp::acceptor>(io_);
    acceptor_->open(at.protocol());
    acceptor_->set_option(tcp::acceptor::reuse_address(true));
    acceptor_->bind(at);
    acceptor_->listen();
    listen_port_ = acceptor_->local_endpoint().port();
    if (options_.on_listen) options_.on_listen(listen_port_);
  }

  awaitable<tcp::socket> connect_with_retry(const std::string& host, std::uint16_t port) {
    const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
    for (;;) {
      try {
        const auto endpoint = co_await resolve(host, port);
        tcp::socket socket(io_);
        co_await socket.async_connect(endpoint, boost::asio::use_awaitable);
        socket.set_option(tcp::no_delay(true));
        co_return socket;
      } catch (const boost::system::system_error&) {
        if (std::chrono::steady_clock::now() >= deadline) throw;
      }
      boost::asio::steady_timer pause(io_, std::chrono::milliseconds(50));
      co_await pause.async_wait(boost::asio::use_awaitable);
    }
  }

  awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket socket(io_);
      boost::system::error_code ec;
      co_await acceptor_->async_accept(socket, boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) co_return;  // closed: rendezvous over or shutting down
      boost::asio::co_spawn(io_, handshake(std::move(socket)), boost::asio::detached);
    }
  }

  /// Opens a new connection: TLS when the job asks, then the HMAC handshake
  /// as the connector to rank `*acceptor`, or as the acceptor when it is
  /// empty; all of it bounded by the handshake timeout. A refused stranger is
  /// logged and the job goes on; a failed connection to a rank fails the
  /// rendezvous.
  awaitable<void> handshake(tcp::socket socket, std::optional<int> acceptor = {}) {
    const bool accepting = !acceptor;
    std::string from = "unknown";
    auto stream = std::make_unique<detail::tcp_stream>(std::move(socket));
    auto finished = stream->close_unless_done_within(options_.handshake_timeout);
    try {
      std::optional<listen_entry> where;
      if (accepting) {
        const auto remote = stream->socket().remote_endpoint();
        from = remote.address().to_string() + ":" + std::to_string(remote.port());
        where = listen_entry{remote.address().to_string(), 0};
        stream->socket().set_option(tcp::no_delay(true));
      }
      co_await stream->start(tls_context_.get(), accepting);
      const detail::tcp_identity self{secret_, rank_, size_, listen_port_};
      int peer = acceptor.value_or(0);
      if (accepting) {
        const auto client = co_await detail::accept_handshake(*stream, self);
        peer = client.rank;
        where->second = client.listen_port;
      } else {
        co_await detail::connect_handshake(*stream, self, *acceptor);
      }
      *finished = true;
      // The duplicate check is in register_peer, under the lock, after the
      // last co_await: two connections claiming one rank cannot both pass.
      if (!register_peer(peer, std::move(stream), std::move(where))) {
        throw transport_error("rank " + std::to_string(peer) + " is already connected");
      }
    } catch (const std::exception& e) {
      *finished = true;
      if (accepting) {
        log("refused connection from " + from + ": " + e.what());
      } else {
        fail_bootstrap("handshake with rank " + std::to_string(*acceptor) + ": " + e.what());
      }
    }
  }

  /// Makes `stream` the connection to rank `r`, unless `r` already has one
  /// (or had one): then closes `stream` and returns false. `where` is where
  /// `r` listens (rank 0, during rendezvous).
  bool register_peer(int r, std::unique_ptr<detail::tcp_stream> stream, std::optional<listen_entry> where = {}) {
    bool all_to_root = false;
    {
      const std::lock_guard lock(mutex_);
      auto& peer = peers_[static_cast<std::size_t>(r)];
      if (peer.up || peer.stream) {
        stream->close();  // the first connection's read loop still uses peer.stream
        return false;
      }
      if (rank_ == 0 && where) {
        listen_table_.resize(static_cast<std::size_t>(size_));
        listen_table_[static_cast<std::size_t>(r)] = std::move(*where);
      }
      peer.stream = std::move(stream);
      peer.up = true;
      ++connected_;
      all_to_root = rank_ == 0 && connected_ == size_ - 1;
      if (!peer.queue.empty() && !peer.writing) {
        peer.writing = true;
        boost::asio::post(io_, [this, r] { write_next(r); });
      }
      changed_.notify_all();
    }
    boost::asio::co_spawn(io_, read_loop(r), boost::asio::detached);
    if (all_to_root) send_tables();
    return true;
  }

  void send_tables() {
    tcp_protocol::listen_table table;
    listen_table_.resize(static_cast<std::size_t>(size_));
    listen_table_[0] = {listen_host_, listen_port_};
    for (const auto& [host, port] : listen_table_) table.entries.push_back({host, port});
    const std::vector<std::byte> bytes = table.encode();
    const std::lock_guard lock(mutex_);
    for (int r = 1; r < size_; ++r) {
      enqueue_locked(r, tcp_protocol::frame_type::table, 0, {}, nullptr, bytes);
    }
  }

  void on_table(std::span<const std::byte> body) {
    const auto table = tcp_protocol::listen_table::decode(body, size_);
    for (int lower = 1; lower < rank_; ++lower) {
      const auto& e = table.entries[static_cast<std::size_t>(lower)];
      boost::asio::co_spawn(
          io_,
          [this, e, lower]() -> awaitable<void> {
            try {
              auto socket = co_await connect_with_retry(e.host, e.port);
              co_await handshake(std::move(socket), lower);
            } catch (const std::exception& ex) {
              fail_bootstrap("cannot reach rank " + std::to_string(lower) + " at " + e.host + ":" +
                             std::to_string(e.port) + ": " + ex.what());
            }
          },
          boost::asio::detached);
    }
  }

  void fail_bootstrap(const std::string& why) {
    const std::lock_guard lock(mutex_);
    if (broken_.empty()) broken_ = why;
    changed_.notify_all();
  }

  std::string missing_ranks_locked() const {
    std::string missing;
    for (int r = 0; r < size_; ++r) {
      if (r != rank_ && !peers_[static_cast<std::size_t>(r)].up)
        missing += (missing.empty() ? "" : ", ") + std::to_string(r);
    }
    return "not connected to rank(s) " + missing;
  }

  // ---- frames ------------------------------------------------------------------
  awaitable<void> read_loop(int r) {
    auto& stream = *peers_[static_cast<std::size_t>(r)].stream;
    std::shared_ptr<detail::transfer> direct;  // a receive being filled straight from the socket
    try {
      for (;;) {
        const auto header = co_await detail::read_frame_header(stream, options_.max_frame_bytes);
        if (header.type == tcp_protocol::frame_type::table) {
          // Only rank 0 sends a table, once, during the rendezvous, and no
          // longer than `size_` entries of the longest host decode accepts.
          if (r != 0 || rank_ == 0 || table_received_) refuse_table("unexpected rendezvous table");
          if (header.length > static_cast<std::uint64_t>(size_) * tcp_protocol::listen_table::max_entry_bytes) {
            refuse_table("rendezvous table of " + std::to_string(header.length) + " bytes is too long for " +
                         std::to_string(size_) + " ranks");
          }
          table_received_ = true;
        }
        if (header.type == tcp_protocol::frame_type::data) {
          {
            // The first receive posted for it takes it straight from the
            // socket if its size is right (else the mismatch is reported on
            // delivery); with none posted it will be buffered, so it is
            // refused here, before any read or allocation, if it cannot be.
            const std::lock_guard lock(mutex_);
            direct = mailbox_.first_posted(r, header.tag);
            if (!direct && !mailbox_.fits(header.length)) {
              throw transport_error("rank " + std::to_string(r) + " sent more unmatched data than max_buffered_bytes");
            }
            if (direct && direct->buffer.size() == header.length) {
              mailbox_.withdraw(direct);
              direct->receiving = true;
            } else {
              direct.reset();
            }
          }
          if (direct) {
            co_await stream.read(boost::asio::buffer(direct->buffer.data(), direct->buffer.size()));
            const std::lock_guard lock(mutex_);
            direct->receiving = false;
            direct->done = true;
            direct.reset();
            changed_.notify_all();
            continue;
          }
        }
        if (header.type == tcp_protocol::frame_type::goodbye) {
          const std::lock_guard lock(mutex_);
          fail_peer_locked(r, "rank " + std::to_string(r) + " closed its transport", /*quiet=*/true);
          co_return;
        }
        auto body = co_await detail::read_frame_body(stream, header.length);
        if (header.type == tcp_protocol::frame_type::table) {
          try {
            on_table(body);
          } catch (const std::exception& e) {
            refuse_table(e.what());
          }
          continue;
        }
        const std::lock_guard lock(mutex_);
        if (!mailbox_.deliver(r, header.tag, std::move(body))) {
          fail_peer_locked(r, "rank " + std::to_string(r) + " sent more unmatched data than max_buffered_bytes");
        }
        changed_.notify_all();
      }
    } catch (const std::exception& e) {
      const std::lock_guard lock(mutex_);
      if (direct) direct->receiving = false;  // not done: its waiter sees the failure
      fail_peer_locked(r, e.what());
      changed_.notify_all();  // also when the peer had already failed: a withdrawing request waits on `receiving`
    }
  }

  /// Throws `why` as a transport_error (failing the peer), and fails the
  /// rendezvous too while it is under way, so the constructor reports it
  /// instead of waiting out the connect timeout.
  [[noreturn]] void refuse_table(const std::string& why) {
    {
      const std::lock_guard lock(mutex_);
      if (connected_ < size_ - 1 && broken_.empty()) {
        broken_ = "rank 0: " + why;
        changed_.notify_all();
      }
    }
    throw transport_error(why);
  }

  tcp_endpoint root_;
  std::string secret_;

  std::uint16_t listen_port_ = 0;
  std::string listen_host_;
  std::vector<listen_entry> listen_table_;  // rank 0, during rendezvous
  bool table_received_ = false;             // I/O thread only
  int connected_ = 0;                       // guarded by mutex_
};

static_assert(transport<tcp_transport>);

}  // namespace sketchsgd
