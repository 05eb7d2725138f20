// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// `tcp_elastic_member`: a worker of an elastic TCP job. It keeps one
/// authenticated connection to the job's `tcp_rendezvous` (tcp/rendezvous.hpp)
/// and, at each `join()`, gets its rank in the next generation of the world
/// and builds that generation's `tcp_transport`. The training loop around it
/// (tested in tests/transport/test_tcp_elastic.cpp, documented in
/// docs/reliability.md, "Elastic"):
///
///     tcp_elastic_member me(rendezvous, secret, name);
///     elastic_commit commit;
///     for (;;) {
///       communicator comm(me.join());           // a new generation: rank, size
///       auto opt = make_optimizer(comm.rank(), comm.size());
///       if (any_commit(comm, commit)) resume_resized(comm, opt, commit);
///       try {
///         while (!done && !reform_agreed(comm, me)) { step; commit.commit(opt); }
///         if (done) break;
///       } catch (const transport_error&) {}     // a rank died: re-form
///     }

#include "sketchsgd/transport/tcp/asio.hpp"

#include <unistd.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/transport/elastic.hpp"
#include "sketchsgd/transport/tcp/environment.hpp"
#include "sketchsgd/transport/tcp/membership.hpp"
#include "sketchsgd/transport/tcp/options.hpp"
#include "sketchsgd/transport/tcp/stream.hpp"
#include "sketchsgd/transport/tcp/transport.hpp"

namespace sketchsgd {

/// Settings of a `tcp_elastic_member`.
struct tcp_elastic_options {
  /// Every generation's transport (timeouts, limits, log, TLS; TLS also on
  /// the connection to the rendezvous). Its `connect_timeout` bounds the
  /// building of one generation's mesh: a rank that dies meanwhile costs
  /// that long, and then the others ask for the next generation.
  tcp_options transport = mesh_defaults();
  /// How long one `join()` may take, all attempts together.
  std::chrono::milliseconds join_timeout{120'000};

  /// `tcp_options` with a connect timeout of 10 s.
  static tcp_options mesh_defaults() {
    tcp_options o;
    o.connect_timeout = std::chrono::milliseconds(10'000);
    return o;
  }
};

/// A worker of an elastic TCP job (see the file comment).
class tcp_elastic_member {
 public:
  /// Connects to the rendezvous at `rendezvous` and proves `secret`; `name`
  /// (1-64 bytes) names this worker in the rendezvous's log.
  /// @throws std::invalid_argument for an empty secret or a bad name;
  /// transport_error or timeout_error if the rendezvous cannot be reached
  /// or refuses the secret.
  tcp_elastic_member(tcp_endpoint rendezvous, std::string secret, std::string name, tcp_elastic_options o = {})
      : o_(std::move(o)), secret_(std::move(secret)), name_(std::move(name)), work_(io_.get_executor()) {
    if (secret_.empty()) throw std::invalid_argument("tcp_elastic_member: the job secret must not be empty");
    (void)tcp_membership::encode(tcp_membership::join_request{0, -1, name_});  // checks the name
    if (o_.transport.tls.enabled()) tls_ = detail::make_tls_context(o_.transport.tls);
    thread_ = std::thread([this] {
      try {
        io_.run();
      } catch (const std::exception& e) {  // never std::terminate from this thread: the next join() reports it
        const std::lock_guard lock(mutex_);
        lost_ = std::string("I/O thread error: ") + e.what();
        changed_.notify_all();
      }
    });
    try {
      auto connected = boost::asio::co_spawn(io_, connect(std::move(rendezvous)), boost::asio::use_future);
      if (connected.wait_for(o_.transport.handshake_timeout + std::chrono::seconds(1)) != std::future_status::ready) {
        throw timeout_error("tcp_elastic_member: the rendezvous did not answer in time");
      }
      connected.get();
    } catch (const boost::system::system_error& e) {
      stop();
      throw transport_error(std::string("tcp_elastic_member: cannot reach the rendezvous: ") + e.what());
    } catch (...) {
      stop();
      throw;
    }
  }
  /// Builds the member from the environment: SKETCHSGD_RENDEZVOUS
  /// (host:port of the `tcp_rendezvous`), SKETCHSGD_SECRET (or
  /// SKETCHSGD_SECRET_FILE) and SKETCHSGD_NAME (default: host name and
  /// process id).
  /// @throws std::invalid_argument naming a missing or malformed variable;
  /// what the constructor throws.
  static std::unique_ptr<tcp_elastic_member> from_environment(tcp_elastic_options o = {}) {
    const std::string who = "tcp_elastic_member";
    tcp_endpoint at = detail::read_tcp_endpoint(who, "SKETCHSGD_RENDEZVOUS", 1);
    std::string secret = detail::read_tcp_secret(who);
    std::string name = detail::environment_variable("SKETCHSGD_NAME");
    if (name.empty()) {
      std::array<char, 65> host{};
      if (::gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
      name = (std::string(host.data()) + ":" + std::to_string(::getpid())).substr(0, 64);
      if (name.front() == ':') name = "pid" + name;
    }
    return std::make_unique<tcp_elastic_member>(std::move(at), std::move(secret), std::move(name), std::move(o));
  }
  tcp_elastic_member(const tcp_elastic_member&) = delete;
  tcp_elastic_member& operator=(const tcp_elastic_member&) = delete;
  /// Leaves the world (the transport says goodbye) and the rendezvous.
  ~tcp_elastic_member() {
    transport_.reset();
    stop();
  }

  /// Leaves the current generation, if any, and joins the next one: blocks
  /// until the rendezvous gives this worker a rank and that generation's
  /// mesh is up. Asks again when the mesh cannot form (a rank died while
  /// it did), within `join_timeout` in all.
  /// @throws transport_error if the rendezvous refuses (too few workers,
  /// left out) or is lost; timeout_error after `join_timeout`.
  tcp_transport& join() {
    transport_.reset();
    const auto deadline = std::chrono::steady_clock::now() + o_.join_timeout;
    for (;;) {
      {
        const std::lock_guard lock(mutex_);
        assigned_.reset();
      }
      send(tcp_membership::message::join, tcp_membership::encode(tcp_membership::join_request{
                                              place_ ? place_->generation : 0, place_ ? place_->rank : -1, name_}));
      place_ = wait_for_assignment(deadline);
      tcp_options t = o_.transport;
      t.connect_timeout = std::min(t.connect_timeout, remaining(deadline));
      if (place_->rank == 0) {
        t.on_listen = [this, g = place_->generation](std::uint16_t port) {
          send(tcp_membership::message::listening, tcp_membership::encode_listening(g, port));
        };
      }
      const tcp_endpoint root{place_->root_host, place_->root_port};
      try {
        transport_ = std::make_unique<tcp_transport>(root, place_->rank, place_->size,
                                                     tcp_membership::generation_secret(secret_, place_->generation),
                                                     std::move(t));
        return *transport_;
      } catch (const std::exception& e) {  // transport_error or timeout_error: a rank died while the mesh formed
        if (std::chrono::steady_clock::now() >= deadline) throw;
        log("generation " + std::to_string(place_->generation) + " did not form (" + e.what() + "); asking again");
      }
    }
  }

  /// The place of this worker in the newest generation it joined (nullopt
  /// before the first `join()`).
  [[nodiscard]] const std::optional<tcp_membership::assignment>& membership() const noexcept { return place_; }
  /// The newest generation's transport (null before the first `join()`).
  [[nodiscard]] tcp_transport* transport() noexcept { return transport_.get(); }
  /// Whether the rendezvous asked this generation to re-form (a worker
  /// waits to join, or a member left). Ranks may learn it at different
  /// steps: agree on it with `reform_agreed` before acting on it. A lost
  /// rendezvous is no reason to stop a working world: the next `join()`
  /// reports it.
  [[nodiscard]] bool reform_requested() const {
    const std::lock_guard lock(mutex_);
    return place_ && noticed_ == place_->generation;
  }

 private:
  using tcp = boost::asio::ip::tcp;

  static std::chrono::milliseconds remaining(std::chrono::steady_clock::time_point deadline) {
    const auto left = deadline - std::chrono::steady_clock::now();
    return std::max(std::chrono::milliseconds(1), std::chrono::duration_cast<std::chrono::milliseconds>(left));
  }

  void log(const std::string& m) const {
    if (!o_.transport.log) return;
    try {
      o_.transport.log("sketchsgd elastic member " + name_ + ": " + m);
    } catch (...) {  // a failing logger must not take the member down
    }
  }

  boost::asio::awaitable<void> connect(tcp_endpoint at) {
    tcp::resolver resolver(io_);
    const std::string service = std::to_string(at.port);  // named: no temporary inside a co_await (g++ 12)
    const auto endpoints = co_await resolver.async_resolve(at.host, service, boost::asio::use_awaitable);
    tcp::socket socket(io_);
    co_await boost::asio::async_connect(socket, endpoints, boost::asio::use_awaitable);
    socket.set_option(tcp::no_delay(true));
    stream_ = std::make_unique<detail::tcp_stream>(std::move(socket));
    auto done = stream_->close_unless_done_within(o_.transport.handshake_timeout);
    co_await stream_->start(tls_.get(), false);
    co_await tcp_membership::connect_member(*stream_, secret_);
    *done = true;
    boost::asio::co_spawn(io_, read_loop(), boost::asio::detached);
  }

  boost::asio::awaitable<void> read_loop() {
    try {
      for (;;) {
        auto [kind, body] = co_await tcp_membership::read_message(*stream_);
        const std::lock_guard lock(mutex_);
        if (kind == tcp_membership::message::assignment) {
          assigned_ = tcp_membership::decode_assignment(body);
        } else if (kind == tcp_membership::message::notice) {
          noticed_ = std::max(noticed_, tcp_membership::decode_notice(body));
        } else if (kind == tcp_membership::message::refusal) {
          refused_ = std::string(reinterpret_cast<const char*>(body.data()), body.size());
        } else {
          throw transport_error("the rendezvous sent a member's message");
        }
        changed_.notify_all();
      }
    } catch (const std::exception& e) {
      const std::lock_guard lock(mutex_);
      lost_ = e.what();
      changed_.notify_all();
    }
  }

  tcp_membership::assignment wait_for_assignment(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, deadline, [&] { return assigned_ || !refused_.empty() || !lost_.empty(); });
    if (assigned_) return *std::exchange(assigned_, std::nullopt);
    if (!refused_.empty()) throw transport_error("tcp_elastic_member: refused: " + std::exchange(refused_, {}));
    if (!lost_.empty()) throw transport_error("tcp_elastic_member: lost the rendezvous: " + lost_);
    throw timeout_error("tcp_elastic_member: no place in a generation within join_timeout");
  }

  /// Queues a message to the rendezvous (any thread).
  void send(tcp_membership::message kind, std::vector<std::byte> payload) {
    boost::asio::post(io_, [this, kind, payload = std::move(payload)]() mutable {
      outbox_.emplace_back(kind, std::move(payload));
      if (outbox_.size() == 1) boost::asio::co_spawn(io_, write_all(), boost::asio::detached);
    });
  }
  boost::asio::awaitable<void> write_all() {
    try {
      while (!outbox_.empty()) {
        co_await tcp_membership::write_message(*stream_, outbox_.front().first, outbox_.front().second);
        outbox_.pop_front();
      }
    } catch (const std::exception& e) {
      outbox_.clear();
      const std::lock_guard lock(mutex_);
      lost_ = e.what();
      changed_.notify_all();
    }
  }

  void stop() {
    boost::asio::post(io_, [this] {
      if (stream_) stream_->close();
      work_.reset();
      io_.stop();
    });
    if (thread_.joinable()) thread_.join();
  }

  tcp_elastic_options o_;
  std::string secret_;
  std::string name_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::thread thread_;
  std::unique_ptr<detail::tcp_stream> stream_;  // to the rendezvous; the I/O thread's
  std::deque<std::pair<tcp_membership::message, std::vector<std::byte>>> outbox_;  // the I/O thread's

  std::optional<tcp_membership::assignment> place_;  // the caller's thread
  std::unique_ptr<tcp_transport> transport_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<tcp_membership::assignment> assigned_;
  std::uint64_t noticed_ = 0;  // the newest generation told to re-form
  std::string refused_;
  std::string lost_;
};

}  // namespace sketchsgd
