// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The TCP transport (target `sketchsgd::tcp`): a full mesh of authenticated
/// TCP connections driven by Boost.Asio on one background I/O thread.
///
/// Rendezvous: every rank knows rank 0's host:port, its own rank, the world
/// size and a job secret. Ranks connect to rank 0, which answers once all
/// arrived with a table of where each rank listens; then every rank connects
/// to the lower ranks and accepts the higher ones. Every connection starts
/// with the mutual HMAC-SHA256 handshake of tcp_protocol.hpp: a process
/// without the secret is refused and logged, and the job goes on.
///
/// With `tcp_options::tls` set, every connection is first wrapped in TLS 1.3
/// (Boost.Asio SSL over OpenSSL) with mutual authentication: both sides
/// present a certificate and verify the other's against the job's CA, so a
/// peer without a certificate from that CA is refused before it sends a
/// byte of the HMAC handshake, which then runs inside the encrypted stream.
///
/// Frames are length-prefixed with a checked header (tcp_protocol.hpp); a
/// length above `tcp_options::max_frame_bytes` is refused before anything is
/// allocated, and bodies are read in chunks as they arrive. Unmatched data is
/// bounded by `max_buffered_bytes`. Any protocol violation, a closed
/// connection or a timed-out wait fails the peer (or the whole transport),
/// which closes connections so that the other ranks fail fast too.

#include <utility>  // before Boost.Asio: its coroutine support needs it

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sketchsgd/detail/mailbox.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/transport/concepts.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

namespace sketchsgd {

/// Where rank 0 listens.
struct tcp_endpoint {
  /// Host name or address.
  std::string host = "127.0.0.1";
  /// Port; rank 0 binds it.
  std::uint16_t port = 0;
};

/// TLS settings of a `tcp_transport` (PEM files); TLS is on when any of
/// them is set, and then all three must be. Every rank presents its
/// certificate and accepts a peer only if the peer's certificate chains to
/// the CA in `ca_file`; host names are not checked (ranks are named by the
/// HMAC handshake), so use a CA that signs nothing but this job's or
/// cluster's ranks.
struct tcp_tls_options {
  /// The CA certificate(s) that every rank's certificate must chain to.
  std::string ca_file;
  /// This rank's certificate (chain), signed by that CA.
  std::string certificate_file;
  /// The certificate's private key (unencrypted PEM).
  std::string private_key_file;

  /// Whether TLS is asked for.
  [[nodiscard]] bool enabled() const noexcept {
    return !ca_file.empty() || !certificate_file.empty() || !private_key_file.empty();
  }
};

/// Settings of a `tcp_transport`.
struct tcp_options {
  /// How long `request::wait()` waits before throwing `timeout_error`.
  std::chrono::milliseconds timeout{30'000};
  /// How long the whole rendezvous may take.
  std::chrono::milliseconds connect_timeout{60'000};
  /// How long one connection's handshake may take (a silent stranger is
  /// dropped after it).
  std::chrono::milliseconds handshake_timeout{10'000};
  /// Largest frame payload accepted; larger headers fail the peer at once.
  std::uint64_t max_frame_bytes = std::uint64_t{1} << 30U;
  /// Largest total of received but unmatched payload bytes.
  std::uint64_t max_buffered_bytes = std::uint64_t{1} << 31U;
  /// Where refused connections and peer failures are reported (stderr when
  /// empty).
  std::function<void(const std::string&)> log;
  /// Called on the I/O thread once this rank listens, with its port (rank 0
  /// may ask for port 0 and learn the one it got here).
  std::function<void(std::uint16_t)> on_listen;
  /// TLS with mutual certificate authentication on every connection (the
  /// HMAC handshake still runs, inside TLS); plain TCP when no file is set.
  /// Every rank of a job must agree.
  tcp_tls_options tls;
};

namespace detail {

/// One connection: a TCP socket, and a TLS stream over it once TLS started.
/// Lives on the heap, so the TLS stream's reference to the socket stays
/// valid; used only on the transport's I/O thread.
class tcp_link {
 public:
  /// The socket type.
  using socket_type = boost::asio::ip::tcp::socket;

  /// Takes over a connected socket.
  explicit tcp_link(socket_type socket) : socket_(std::move(socket)) {}

  /// The TCP socket (endpoints, options, closing).
  [[nodiscard]] socket_type& socket() noexcept { return socket_; }

  /// Runs the TLS handshake, as the server when `accepting`, verifying the
  /// peer's certificate as `context` says.
  /// @throws boost::system::system_error when the handshake fails.
  boost::asio::awaitable<void> start_tls(boost::asio::ssl::context& context, bool accepting) {
    tls_ = std::make_unique<boost::asio::ssl::stream<socket_type&>>(socket_, context);
    co_await tls_->async_handshake(
        accepting ? boost::asio::ssl::stream_base::server : boost::asio::ssl::stream_base::client,
        boost::asio::use_awaitable);
  }

  /// Reads exactly the buffers' size.
  /// @throws boost::system::system_error on failure or end of stream.
  template <class Buffers>
  boost::asio::awaitable<void> read(const Buffers& buffers) {
    if (tls_) {
      co_await boost::asio::async_read(*tls_, buffers, boost::asio::use_awaitable);
    } else {
      co_await boost::asio::async_read(socket_, buffers, boost::asio::use_awaitable);
    }
  }

  /// Writes all of the buffers.
  /// @throws boost::system::system_error on failure.
  template <class Buffers>
  boost::asio::awaitable<void> write(const Buffers& buffers) {
    if (tls_) {
      co_await boost::asio::async_write(*tls_, buffers, boost::asio::use_awaitable);
    } else {
      co_await boost::asio::async_write(socket_, buffers, boost::asio::use_awaitable);
    }
  }

  /// Writes all of the buffers, then calls `handler(error_code, bytes)`.
  template <class Buffers, class Handler>
  void async_write(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      boost::asio::async_write(*tls_, buffers, std::forward<Handler>(handler));
    } else {
      boost::asio::async_write(socket_, buffers, std::forward<Handler>(handler));
    }
  }

  /// Shuts the connection down at the TCP level (no TLS close_notify: the
  /// protocol's goodbye frame already ends a clean close).
  void close() noexcept {
    boost::system::error_code ignored;
    socket_.shutdown(socket_type::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  socket_type socket_;
  std::unique_ptr<boost::asio::ssl::stream<socket_type&>> tls_;
};

/// The TLS context for `tls`: TLS 1.3 only, this rank's certificate and key,
/// the CA, and peer verification that fails without a peer certificate.
/// @throws std::invalid_argument naming the file that cannot be used.
inline std::unique_ptr<boost::asio::ssl::context> make_tls_context(const tcp_tls_options& tls) {
  auto context = std::make_unique<boost::asio::ssl::context>(boost::asio::ssl::context::tls);
  const auto use = [&](const char* what, const std::string& file, auto&& load) {
    if (file.empty()) throw std::invalid_argument(std::string("tcp_transport: tls.") + what + " is empty");
    try {
      load(file);
    } catch (const boost::system::system_error& e) {
      throw std::invalid_argument(std::string("tcp_transport: tls.") + what + " '" + file + "': " + e.what());
    }
  };
  if (SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_3_VERSION) != 1) {
    throw std::invalid_argument("tcp_transport: this OpenSSL cannot require TLS 1.3");
  }
  use("ca_file", tls.ca_file, [&](const std::string& f) { context->load_verify_file(f); });
  use("certificate_file", tls.certificate_file, [&](const std::string& f) { context->use_certificate_chain_file(f); });
  use("private_key_file", tls.private_key_file,
      [&](const std::string& f) { context->use_private_key_file(f, boost::asio::ssl::context::pem); });
  if (SSL_CTX_check_private_key(context->native_handle()) != 1) {
    throw std::invalid_argument("tcp_transport: tls.private_key_file '" + tls.private_key_file +
                                "' does not match tls.certificate_file '" + tls.certificate_file + "'");
  }
  context->set_verify_mode(boost::asio::ssl::verify_peer | boost::asio::ssl::verify_fail_if_no_peer_cert);
  return context;
}

}  // namespace detail

/// A rank of a TCP job: a Tier-1 transport.
class tcp_transport {
  using op_state = detail::transfer;

 public:
  /// A pending send or receive. Must not outlive its transport.
  class request {
   public:
    request() = default;
    /// Moves the pending operation.
    request(request&& other) noexcept : state_(std::move(other.state_)), owner_(std::exchange(other.owner_, nullptr)) {}
    /// Withdraws this request's pending receive, then takes `other`'s.
    request& operator=(request&& other) noexcept {
      cancel();
      state_ = std::move(other.state_);
      owner_ = std::exchange(other.owner_, nullptr);
      return *this;
    }
    request(const request&) = delete;
    request& operator=(const request&) = delete;
    /// A receive still pending is withdrawn, so its buffer is never written
    /// after the request is gone.
    ~request() { cancel(); }

    /// Waits up to the transport's timeout.
    /// @throws timeout_error after it (the transport then fails every peer);
    /// transport_error if the peer failed or the size was wrong.
    void wait() {
      if (!state_) return;
      if (!wait_until(std::chrono::steady_clock::now() + owner_->options_.timeout)) {
        const std::string why = std::string(state_->is_recv ? "receive from" : "send to") + " rank " +
                                std::to_string(state_->peer) + " tag " + std::to_string(state_->tag) +
                                " timed out after " + std::to_string(owner_->options_.timeout.count()) + " ms";
        owner_->break_all(why);
        throw timeout_error("tcp_transport: " + why);
      }
    }

    /// Waits at most `d`; returns whether the operation completed.
    /// @throws transport_error if the peer failed or the size was wrong.
    bool wait_for(std::chrono::nanoseconds d) {
      if (!state_) return true;
      return wait_until(std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(d));
    }

   private:
    friend class tcp_transport;
    request(std::shared_ptr<op_state> s, tcp_transport* owner) : state_(std::move(s)), owner_(owner) {}

    bool wait_until(std::chrono::steady_clock::time_point deadline) {
      std::unique_lock lock(owner_->mutex_);
      auto& peer = owner_->peers_[static_cast<std::size_t>(state_->peer)];
      const bool settled = owner_->changed_.wait_until(
          lock, deadline, [&] { return state_->done || !peer.failure.empty() || !owner_->broken_.empty(); });
      if (!settled) return false;
      if (state_->done) {
        if (!state_->error.empty()) throw transport_error(state_->error);
        return true;
      }
      throw transport_error("tcp_transport: rank " + std::to_string(state_->peer) +
                            " failed: " + (peer.failure.empty() ? owner_->broken_ : peer.failure));
    }

    void cancel() noexcept {
      if (!state_ || owner_ == nullptr) return;
      if (state_->is_recv) {
        std::unique_lock lock(owner_->mutex_);
        // A read straight into the buffer must end before the buffer is
        // released. It ends when the data arrives or the link fails; a peer
        // that stalls mid-body is failed after the timeout, and closing its
        // link ends the read.
        const auto not_receiving = [&] { return !state_->receiving; };
        if (!owner_->changed_.wait_until(lock, std::chrono::steady_clock::now() + owner_->options_.timeout,
                                         not_receiving)) {
          owner_->fail_peer_locked(state_->peer, "receive withdrawn while its data was still arriving after " +
                                                     std::to_string(owner_->options_.timeout.count()) + " ms");
          owner_->changed_.wait(lock, not_receiving);
        }
        if (!state_->done) owner_->mailbox_.withdraw(state_);
      }
      state_.reset();
    }

    std::shared_ptr<op_state> state_;
    tcp_transport* owner_ = nullptr;
  };

  /// Joins the job as `rank` of `size`, meeting the others through rank 0 at
  /// `root`. Blocks until the full mesh is up.
  /// @throws std::invalid_argument for a bad rank, size or empty secret, or
  /// TLS files that cannot be used; timeout_error if the rendezvous does not
  /// finish within
  /// `options.connect_timeout`; transport_error if it fails.
  tcp_transport(tcp_endpoint root, int rank, int size, std::string secret, tcp_options options = {})
      : options_(std::move(options)), root_(std::move(root)), rank_(rank), size_(size), secret_(std::move(secret)) {
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
    const auto get = [](const char* name) -> std::string {
      const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read once at startup
      return v == nullptr ? std::string() : std::string(v);
    };
    const auto number = [&](const char* name) {
      const std::string v = get(name);
      try {
        std::size_t used = 0;
        const int n = std::stoi(v, &used);
        if (used == v.size()) return n;
      } catch (const std::exception&) {
      }
      throw std::invalid_argument(std::string("tcp_transport: environment variable ") + name +
                                  " must be an integer, got '" + v + "'");
    };
    const std::string root = get("SKETCHSGD_TCP_ROOT");
    const auto colon = root.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == root.size()) {
      throw std::invalid_argument("tcp_transport: SKETCHSGD_TCP_ROOT must be host:port, got '" + root + "'");
    }
    std::string secret = get("SKETCHSGD_SECRET");
    if (secret.empty() && !get("SKETCHSGD_SECRET_FILE").empty()) {
      std::ifstream in(get("SKETCHSGD_SECRET_FILE"));
      std::getline(in, secret);
    }
    if (secret.empty()) {
      throw std::invalid_argument("tcp_transport: set SKETCHSGD_SECRET or SKETCHSGD_SECRET_FILE to the job secret");
    }
    int port = -1;
    try {
      port = std::stoi(root.substr(colon + 1));
    } catch (const std::exception&) {
    }
    const int rank = number("SKETCHSGD_RANK");
    // Rank 0 may take any free port (0) and publish it through a file, which
    // is how the launcher avoids guessing a free port.
    const std::string port_file = get("SKETCHSGD_TCP_PORT_FILE");
    if (port < (rank == 0 && !port_file.empty() ? 0 : 1) || port > 65535) {
      throw std::invalid_argument("tcp_transport: bad port in SKETCHSGD_TCP_ROOT '" + root + "'");
    }
    if (rank == 0 && !port_file.empty()) {
      options.on_listen = [port_file, chained = std::move(options.on_listen)](std::uint16_t p) {
        {
          std::ofstream out(port_file + ".tmp");
          out << p << '\n';
        }
        std::rename((port_file + ".tmp").c_str(), port_file.c_str());
        if (chained) chained(p);
      };
    }
    return std::make_unique<tcp_transport>(tcp_endpoint{root.substr(0, colon), static_cast<std::uint16_t>(port)}, rank,
                                           number("SKETCHSGD_SIZE"), std::move(secret), std::move(options));
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
    auto state = std::make_shared<op_state>();
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
    auto state = std::make_shared<op_state>();
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
  using tcp = boost::asio::ip::tcp;
  template <class T>
  using awaitable = boost::asio::awaitable<T>;

  struct outgoing {
    std::array<std::byte, tcp_protocol::frame_header::size> header{};
    std::vector<std::byte> owned;        // payload the transport owns (tables)
    std::span<const std::byte> payload;  // what to write after the header
    std::shared_ptr<op_state> state;     // completed when written; may be null
  };

  struct peer_link {
    std::unique_ptr<detail::tcp_link> link;
    std::deque<outgoing> queue;
    bool writing = false;
    bool up = false;
    std::string failure;  // non-empty once the peer failed
  };

  // ---- I/O thread ------------------------------------------------------------
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

  void shutdown() {
    boost::asio::post(io_, [this] {
      close_acceptor();
      for (auto& p : peers_) {
        if (p.link) p.link->close();
      }
      io_.stop();
    });
    if (io_thread_.joinable()) io_thread_.join();
  }

  void close_acceptor() {
    if (acceptor_) {
      boost::system::error_code ignored;
      acceptor_->close(ignored);
    }
  }

  void log(const std::string& message) const {
    try {
      options_.log("sketchsgd tcp rank " + std::to_string(rank_) + ": " + message);
    } catch (...) {  // a failing logger must not take the transport down
    }
  }

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
        const auto local = socket->local_endpoint().address();
        open_acceptor(tcp::endpoint(local, 0));
        boost::asio::co_spawn(io_, accept_loop(), boost::asio::detached);
        co_await connector_handshake(std::move(socket), 0);
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

  awaitable<std::unique_ptr<tcp::socket>> connect_with_retry(const std::string& host, std::uint16_t port) {
    const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
    for (;;) {
      try {
        const auto endpoint = co_await resolve(host, port);
        auto socket = std::make_unique<tcp::socket>(io_);
        co_await socket->async_connect(endpoint, boost::asio::use_awaitable);
        socket->set_option(tcp::no_delay(true));
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
      auto socket = std::make_unique<tcp::socket>(io_);
      boost::system::error_code ec;
      co_await acceptor_->async_accept(*socket, boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) co_return;  // closed: rendezvous over or shutting down
      boost::asio::co_spawn(io_, acceptor_handshake(std::move(socket)), boost::asio::detached);
    }
  }

  /// Closes `socket` unless `done` is set first: bounds a handshake's time
  /// (the TLS handshake included).
  std::shared_ptr<bool> arm_handshake_timer(tcp::socket& socket) {
    auto done = std::make_shared<bool>(false);
    auto timer = std::make_shared<boost::asio::steady_timer>(io_, options_.handshake_timeout);
    timer->async_wait([timer, done, &socket](const boost::system::error_code&) {
      if (!*done) {
        boost::system::error_code ignored;
        socket.close(ignored);
      }
    });
    return done;
  }

  awaitable<void> acceptor_handshake(std::unique_ptr<tcp::socket> socket) {
    std::string from = "unknown";
    auto link = std::make_unique<detail::tcp_link>(std::move(*socket));
    auto finished = arm_handshake_timer(link->socket());
    try {
      const auto remote = link->socket().remote_endpoint();
      from = remote.address().to_string() + ":" + std::to_string(remote.port());
      link->socket().set_option(tcp::no_delay(true));
      if (tls_context_) {
        try {
          co_await link->start_tls(*tls_context_, /*accepting=*/true);
        } catch (const boost::system::system_error& e) {
          throw transport_error(std::string("TLS handshake failed: ") + e.what());
        }
      }
      const tcp_protocol::server_hello hello{rank_, tcp_protocol::fresh_nonce()};
      const auto out = hello.encode();
      co_await link->write(boost::asio::buffer(out));
      std::array<std::byte, tcp_protocol::client_hello::size> in{};
      co_await link->read(boost::asio::buffer(in));
      const auto client = tcp_protocol::client_hello::decode(in);
      if (!tcp_protocol::same_mac(client.proof, client.expected_proof(secret_, hello.challenge, rank_))) {
        throw transport_error("authentication failed (wrong job secret?)");
      }
      if (client.world_size != size_) {
        throw transport_error("peer expects a world of " + std::to_string(client.world_size) + " ranks, not " +
                              std::to_string(size_));
      }
      const int lowest = rank_ == 0 ? 1 : rank_ + 1;
      if (client.rank < lowest || client.rank >= size_) {
        throw transport_error("peer claims rank " + std::to_string(client.rank) + ", expected [" +
                              std::to_string(lowest) + ", " + std::to_string(size_) + ")");
      }
      const auto proof = tcp_protocol::server_proof(secret_, client.challenge, hello.challenge, rank_, client.rank);
      co_await link->write(boost::asio::buffer(proof));
      *finished = true;
      // The duplicate check is in register_peer, under the lock, after the
      // last co_await: two connections claiming one rank cannot both pass.
      if (!register_peer(client.rank, std::move(link),
                         listen_entry{remote.address().to_string(), client.listen_port})) {
        throw transport_error("rank " + std::to_string(client.rank) + " is already connected");
      }
    } catch (const std::exception& e) {
      *finished = true;
      log("refused connection from " + from + ": " + e.what());
    }
  }

  awaitable<void> connector_handshake(std::unique_ptr<tcp::socket> socket, int acceptor) {
    auto link = std::make_unique<detail::tcp_link>(std::move(*socket));
    auto finished = arm_handshake_timer(link->socket());
    try {
      if (tls_context_) {
        try {
          co_await link->start_tls(*tls_context_, /*accepting=*/false);
        } catch (const boost::system::system_error& e) {
          throw transport_error(std::string("TLS handshake failed: ") + e.what());
        }
      }
      std::array<std::byte, tcp_protocol::server_hello::size> in{};
      co_await link->read(boost::asio::buffer(in));
      const auto server = tcp_protocol::server_hello::decode(in);
      if (server.acceptor_rank != acceptor) {
        throw transport_error("expected rank " + std::to_string(acceptor) + " to answer, got rank " +
                              std::to_string(server.acceptor_rank));
      }
      tcp_protocol::client_hello hello;
      hello.rank = rank_;
      hello.world_size = size_;
      hello.listen_port = listen_port_;
      hello.challenge = tcp_protocol::fresh_nonce();
      hello.proof = hello.expected_proof(secret_, server.challenge, acceptor);
      const auto out = hello.encode();
      co_await link->write(boost::asio::buffer(out));
      tcp_protocol::mac proof{};
      co_await link->read(boost::asio::buffer(proof));
      if (!tcp_protocol::same_mac(
              proof, tcp_protocol::server_proof(secret_, hello.challenge, server.challenge, acceptor, rank_))) {
        throw transport_error("rank " + std::to_string(acceptor) + " failed to prove the job secret");
      }
      *finished = true;
      if (!register_peer(acceptor, std::move(link))) {
        throw transport_error("rank " + std::to_string(acceptor) + " is already connected");
      }
    } catch (const std::exception& e) {
      *finished = true;
      fail_bootstrap("handshake with rank " + std::to_string(acceptor) + ": " + e.what());
    }
  }

  using listen_entry = std::pair<std::string, std::uint16_t>;

  /// Makes `link` the connection to rank `r`, unless `r` already has one (or
  /// had one): then closes `link` and returns false. `where` is where `r`
  /// listens (rank 0, during rendezvous).
  bool register_peer(int r, std::unique_ptr<detail::tcp_link> link, std::optional<listen_entry> where = {}) {
    bool all_to_root = false;
    {
      const std::lock_guard lock(mutex_);
      auto& peer = peers_[static_cast<std::size_t>(r)];
      if (peer.up || peer.link) {
        link->close();  // the first connection's read loop still uses peer.link
        return false;
      }
      if (rank_ == 0 && where) {
        listen_table_.resize(static_cast<std::size_t>(size_));
        listen_table_[static_cast<std::size_t>(r)] = std::move(*where);
      }
      peer.link = std::move(link);
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
              co_await connector_handshake(std::move(socket), lower);
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
    auto& link = *peers_[static_cast<std::size_t>(r)].link;
    std::shared_ptr<op_state> direct;  // a receive being filled straight from the socket
    try {
      for (;;) {
        std::array<std::byte, tcp_protocol::frame_header::size> raw{};
        co_await link.read(boost::asio::buffer(raw));
        const auto header = tcp_protocol::frame_header::decode(raw, options_.max_frame_bytes);
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
            co_await link.read(boost::asio::buffer(direct->buffer.data(), direct->buffer.size()));
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
        // Grow with what arrives: a header alone cannot make us allocate.
        std::vector<std::byte> body;
        constexpr std::size_t chunk = std::size_t{1} << 22U;
        while (body.size() < header.length) {
          const std::size_t n = std::min<std::uint64_t>(chunk, header.length - body.size());
          const std::size_t at = body.size();
          body.resize(at + n);
          co_await link.read(boost::asio::buffer(body.data() + at, n));
        }
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

  void enqueue_locked(int dst, tcp_protocol::frame_type type, tag_t tag, std::span<const std::byte> payload,
                      std::shared_ptr<op_state> state, std::vector<std::byte> owned = {}) {
    auto& peer = peers_[static_cast<std::size_t>(dst)];
    outgoing& o = peer.queue.emplace_back();
    o.owned = std::move(owned);
    o.payload = o.owned.empty() ? payload : std::span<const std::byte>(o.owned);
    o.header = tcp_protocol::frame_header{type, tag, o.payload.size()}.encode();
    o.state = std::move(state);
    if (peer.up && !peer.writing) {
      peer.writing = true;
      boost::asio::post(io_, [this, dst] { write_next(dst); });
    }
  }

  void write_next(int dst) {
    auto& peer = peers_[static_cast<std::size_t>(dst)];
    std::array<boost::asio::const_buffer, 2> buffers;
    {
      const std::lock_guard lock(mutex_);
      if (peer.queue.empty() || !peer.failure.empty()) {
        peer.writing = false;
        return;
      }
      const outgoing& o = peer.queue.front();  // deque: stays put while we push at the back
      buffers = {boost::asio::buffer(o.header), boost::asio::buffer(o.payload.data(), o.payload.size())};
    }
    peer.link->async_write(buffers, [this, dst](const boost::system::error_code& ec, std::size_t) {
      auto& p = peers_[static_cast<std::size_t>(dst)];
      if (ec) {
        fail_peer(dst, "write failed: " + ec.message());
        return;
      }
      {
        const std::lock_guard lock(mutex_);
        if (p.queue.front().state) p.queue.front().state->done = true;
        p.queue.pop_front();
        changed_.notify_all();
      }
      write_next(dst);
    });
  }

  // ---- failure -------------------------------------------------------------------
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
        o.state->done = true;
        o.state->error = "tcp_transport: send to rank " + std::to_string(r) + " failed: " + why;
      }
    }
    if (peer.link) {
      boost::asio::post(io_, [this, r] { peers_[static_cast<std::size_t>(r)].link->close(); });
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

  void check_peer(int peer, const char* what) const {
    if (peer < 0 || peer >= size_) {
      throw std::invalid_argument(std::string("tcp_transport::") + what + ": rank must be in [0, " +
                                  std::to_string(size_) + "), got " + std::to_string(peer));
    }
    if (peer == rank_) {
      throw std::invalid_argument(std::string("tcp_transport::") + what + ": a rank cannot message itself");
    }
  }

  void check_alive_locked(int peer) const {
    if (!broken_.empty()) throw transport_error("tcp_transport: transport broken: " + broken_ + "; recreate it");
    const auto& p = peers_[static_cast<std::size_t>(peer)];
    if (!p.failure.empty()) {
      throw transport_error("tcp_transport: rank " + std::to_string(peer) + " failed: " + p.failure);
    }
  }

  tcp_options options_;
  tcp_endpoint root_;
  int rank_;
  int size_;
  std::string secret_;

  std::unique_ptr<boost::asio::ssl::context> tls_context_;  // set when options_.tls is enabled
  boost::asio::io_context io_;
  std::thread io_thread_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::uint16_t listen_port_ = 0;
  std::string listen_host_;
  std::vector<std::pair<std::string, std::uint16_t>> listen_table_;  // rank 0, during rendezvous
  bool table_received_ = false;                                      // I/O thread only

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<peer_link> peers_;
  int connected_ = 0;
  std::string broken_;  // non-empty once the whole transport failed
  bool closing_ = false;
  detail::mailbox mailbox_{"tcp_transport", options_.max_buffered_bytes};
};

static_assert(transport<tcp_transport>);

}  // namespace sketchsgd
