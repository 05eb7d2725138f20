// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// `tcp_rendezvous`: the elastic rendezvous, a small service that outlives
/// the workers of a TCP job and forms each generation of its world. Workers
/// (`tcp_elastic_member`, tcp/elastic.hpp) keep one authenticated connection
/// to it for their whole life; when a generation breaks (a rank died, a link
/// was lost) or grows (a worker waits to join), its members ask for the next
/// one, and the rendezvous numbers them: survivors first, in their old
/// order (so rank 0 is a survivor whenever there is one), newcomers after,
/// in order of arrival, at most `max_workers`. A member that does not ask
/// within `join_timeout` of the first that did is left out; fewer than
/// `min_workers` is a refusal, never an endless wait. A SIGKILLed worker's
/// connection closes, so it is never waited for. The generation's ranks then
/// build their own full mesh (tcp_transport) around the new rank 0, with a
/// job secret of that generation: a rank of an older one cannot connect.

#include "sketchsgd/transport/tcp/asio.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sketchsgd/error.hpp"
#include "sketchsgd/transport/elastic.hpp"
#include "sketchsgd/transport/tcp/membership.hpp"
#include "sketchsgd/transport/tcp/options.hpp"
#include "sketchsgd/transport/tcp/stream.hpp"

namespace sketchsgd {

/// Settings of a `tcp_rendezvous`.
struct tcp_rendezvous_options {
  /// The fewest workers a generation may have.
  int min_workers = 1;
  /// The most workers a generation may have (later ones wait for a place).
  int max_workers = 1 << 20;
  /// How long a re-forming waits, from the first member that asked, for the
  /// others of its generation (a silent one, say SIGSTOPped, is left out
  /// after it), and how long it waits for the new rank 0 to listen. Must
  /// exceed the workers' `tcp_options::timeout`, after which a survivor
  /// blocked on a silent peer gives up and asks.
  std::chrono::milliseconds join_timeout{60'000};
  /// The first generation only: once `min_workers` are there, how long to
  /// wait after the last arrival for more (up to `max_workers`).
  std::chrono::milliseconds settle{1'000};
  /// How long one connection's handshake may take.
  std::chrono::milliseconds handshake_timeout{10'000};
  /// Where events and refused connections are reported (stderr when empty).
  std::function<void(const std::string&)> log;
  /// TLS on every member's connection, as `tcp_options::tls`.
  tcp_tls_options tls;
};

/// The elastic rendezvous of a TCP job (see the file comment). Runs on a
/// thread of its own from construction to destruction.
class tcp_rendezvous {
 public:
  /// Listens at `at` (port 0: any; see `port()`) for workers that know
  /// `secret`.
  /// @throws std::invalid_argument for bad options or TLS files;
  /// boost::system::system_error if it cannot listen there.
  tcp_rendezvous(const tcp_endpoint& at, std::string secret, tcp_rendezvous_options o = {})
      : o_(std::move(o)),
        secret_(std::move(secret)),
        acceptor_(io_),
        timer_(io_),
        roster_("tcp_rendezvous", o_.min_workers, o_.max_workers, o_.join_timeout, o_.settle) {
    if (secret_.empty()) throw std::invalid_argument("tcp_rendezvous: the job secret must not be empty");
    if (!o_.log) o_.log = [](const std::string& m) { std::cerr << m << '\n'; };
    if (o_.tls.enabled()) tls_ = detail::make_tls_context(o_.tls);
    tcp::resolver resolver(io_);
    const tcp::endpoint endpoint = resolver.resolve(at.host, std::to_string(at.port))->endpoint();
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    boost::asio::co_spawn(io_, accept_loop(), boost::asio::detached);
    thread_ = std::thread([this] { run(); });
  }
  tcp_rendezvous(const tcp_rendezvous&) = delete;
  tcp_rendezvous& operator=(const tcp_rendezvous&) = delete;
  /// Closes every connection and stops the thread.
  ~tcp_rendezvous() {
    boost::asio::post(io_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      timer_.cancel();
      for (auto& m : members_) m->stream->close();
      io_.stop();
    });
    thread_.join();
  }

  /// The port it listens on.
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// The newest generation formed (0: none yet) and its world size.
  [[nodiscard]] std::pair<std::uint64_t, int> generation() const {
    const std::lock_guard lock(mutex_);
    return {published_generation_, published_size_};
  }
  /// Waits until generation `g` (or a later one) has formed; false after
  /// `limit`.
  bool wait_for_generation(std::uint64_t g, std::chrono::milliseconds limit) const {
    std::unique_lock lock(mutex_);
    return formed_.wait_for(lock, limit, [&] { return published_generation_ >= g; });
  }

 private:
  using tcp = boost::asio::ip::tcp;
  using clock = std::chrono::steady_clock;

  struct member : detail::elastic_seat {
    std::unique_ptr<detail::tcp_stream> stream;
    std::string host;                        // its address, as seen here
    std::deque<std::vector<std::byte>> out;  // encoded frames
    bool writing = false;
    bool close_when_sent = false;
    bool fresh = false;  // a newcomer of a generation that failed to form: still without state
  };
  using member_ptr = std::shared_ptr<member>;

  void run() {
    try {
      io_.run();
    } catch (const std::exception& e) {
      log(std::string("stopped: ") + e.what());
    }
  }
  void log(const std::string& m) const {
    try {
      o_.log("sketchsgd elastic rendezvous: " + m);
    } catch (...) {  // a failing logger must not stop the rendezvous
    }
  }

  boost::asio::awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket socket(io_);
      boost::system::error_code ec;
      co_await acceptor_.async_accept(socket, boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) co_return;
      boost::asio::co_spawn(io_, serve(std::move(socket)), boost::asio::detached);
    }
  }

  /// One member's connection: the handshake, then its messages until it goes.
  boost::asio::awaitable<void> serve(tcp::socket socket) {
    auto m = std::make_shared<member>();
    std::string from = "unknown";
    try {
      from = socket.remote_endpoint().address().to_string() + ":" + std::to_string(socket.remote_endpoint().port());
      m->host = socket.remote_endpoint().address().to_string();
      socket.set_option(tcp::no_delay(true));
      m->stream = std::make_unique<detail::tcp_stream>(std::move(socket));
      auto done = m->stream->close_unless_done_within(o_.handshake_timeout);
      co_await m->stream->start(tls_.get(), true);
      co_await tcp_membership::accept_member(*m->stream, secret_);
      *done = true;
    } catch (const std::exception& e) {
      log("refused connection from " + from + ": " + e.what());
      co_return;
    }
    members_.push_back(m);
    try {
      for (;;) {
        auto [kind, body] = co_await tcp_membership::read_message(*m->stream);
        if (kind == tcp_membership::message::join) {
          on_join(m, tcp_membership::decode_join(body));
        } else if (kind == tcp_membership::message::listening) {
          const auto [g, port] = tcp_membership::decode_listening(body);
          on_listening(m, g, port);
        } else {
          throw transport_error("a member may send only join and listening messages");
        }
      }
    } catch (const std::exception& e) {
      if (!m->gone) log("member at " + from + " left: " + e.what());
    }
    on_gone(m);
  }

  void on_join(const member_ptr& m, tcp_membership::join_request j) {
    if (m->asks) throw transport_error("a second join while the first waits");
    log(j.name + " asks to join (was rank " + std::to_string(j.rank) + " of generation " +
        std::to_string(j.generation) + ")");
    // Members still in a step learn that the world re-forms; a newcomer
    // waits for the next step boundary.
    if (roster_.ask(*m) || !roster_.full()) notify_world();
    evaluate();
  }

  void on_listening(const member_ptr& m, std::uint64_t g, std::uint16_t port) {
    if (m != awaiting_root_ || g != roster_.generation()) throw transport_error("an unexpected listening message");
    awaiting_root_.reset();
    const auto& world = roster_.world();
    for (std::size_t r = 1; r < world.size(); ++r) {
      auto a = pending_[r];
      a.root_host = m->host;
      a.root_port = port;
      send(world[r], tcp_membership::message::assignment, tcp_membership::encode(a));
    }
    log("generation " + std::to_string(g) + " formed: " + std::to_string(world.size()) + " ranks, rank 0 at " +
        m->host + ":" + std::to_string(port));
    publish();
    if (std::any_of(members_.begin(), members_.end(), [](const member_ptr& x) { return x->asks.has_value(); }) &&
        !roster_.full()) {
      notify_world();
    }
    evaluate();
  }

  void on_gone(const member_ptr& m) {
    m->gone = true;
    std::erase(members_, m);
    if (m == awaiting_root_) {
      // The new rank 0 left before it listened: the others of its generation
      // ask again at once (they are its survivors).
      log("rank 0 of generation " + std::to_string(roster_.generation()) + " left before it listened");
      abort_formation();
    } else if (roster_.old_member(*m)) {
      notify_world();
    }
    evaluate();
  }

  /// Acts on the roster's verdict: forms the next generation, refuses its
  /// members, or waits for the next event or the deadline.
  void evaluate() {
    if (awaiting_root_) {
      if (clock::now() >= root_deadline_) {
        log("rank 0 of generation " + std::to_string(roster_.generation()) + " did not listen within join_timeout");
        const member_ptr root = awaiting_root_;
        abort_formation();
        drop(root);
      } else {
        return arm(root_deadline_);
      }
    }
    auto v = roster_.evaluate(members_);
    using kind = detail::elastic_roster<member>::verdict::kind;
    if (v.what == kind::wait) {
      if (v.until != clock::time_point::max()) arm(v.until);
    } else if (v.what == kind::refuse) {
      log(v.why);
      for (const auto& m : v.members) send(m, tcp_membership::message::refusal, tcp_membership::encode_refusal(v.why));
    } else {
      form(v);
    }
  }

  void form(const detail::elastic_roster<member>::verdict& v) {
    const std::uint64_t g = roster_.generation();
    for (const auto& m : v.left_out) {
      log("rank " + std::to_string(m->rank) + " of generation " + std::to_string(g - 1) +
          " did not ask within join_timeout and is left out");
      send(m, tcp_membership::message::refusal,
           tcp_membership::encode_refusal("left out of generation " + std::to_string(g) +
                                          ": did not ask to re-form within join_timeout"));
      m->close_when_sent = true;
    }
    const auto& world = v.members;
    pending_.assign(world.size(), {});
    for (std::size_t r = 0; r < world.size(); ++r) {
      member& m = *world[r];
      pending_[r] = {.generation = g,
                     .rank = static_cast<std::int32_t>(r),
                     .size = static_cast<std::int32_t>(world.size()),
                     .newcomer = v.newcomer[r] || m.fresh,
                     .root_host = world[0]->host,
                     .root_port = 0};
      m.fresh = false;
    }
    noticed_ = false;
    awaiting_root_ = world[0];
    root_deadline_ = clock::now() + o_.join_timeout;
    send(world[0], tcp_membership::message::assignment, tcp_membership::encode(pending_[0]));
    arm(root_deadline_);
  }

  /// The generation being formed failed before its rank 0 listened: its
  /// other members are its survivors and ask again, as if they had.
  void abort_formation() {
    awaiting_root_.reset();
    const auto& world = roster_.world();
    for (std::size_t r = 1; r < world.size(); ++r) world[r]->fresh = pending_[r].newcomer;
    roster_.reform_without(0);
  }

  /// Tells the running generation, once, to re-form at its next step boundary.
  void notify_world() {
    if (noticed_ || roster_.generation() == 0 || awaiting_root_) return;
    noticed_ = true;
    for (const auto& m : roster_.world()) {
      if (!m->gone && !m->asks) {
        send(m, tcp_membership::message::notice, tcp_membership::encode_notice(roster_.generation()));
      }
    }
  }

  void arm(clock::time_point at) {
    timer_.expires_at(at);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) evaluate();
    });
  }

  void publish() {
    const std::lock_guard lock(mutex_);
    published_generation_ = roster_.generation();
    published_size_ = static_cast<int>(roster_.world().size());
    formed_.notify_all();
  }

  void send(const member_ptr& m, tcp_membership::message kind, const std::vector<std::byte>& payload) {
    if (m->gone) return;
    const auto header =
        tcp_protocol::frame_header{tcp_protocol::frame_type::data, static_cast<tag_t>(kind), payload.size()}.encode();
    std::vector<std::byte> frame(header.begin(), header.end());
    frame.insert(frame.end(), payload.begin(), payload.end());
    m->out.push_back(std::move(frame));
    if (!m->writing) write_next(m);
  }

  void write_next(const member_ptr& m) {
    if (m->out.empty() || m->gone) {
      m->writing = false;
      if (m->close_when_sent) drop(m);
      return;
    }
    m->writing = true;
    m->stream->async_write(boost::asio::buffer(m->out.front()),
                           [this, m](const boost::system::error_code& ec, std::size_t) {
                             if (ec) return drop(m);
                             m->out.pop_front();
                             write_next(m);
                           });
  }

  /// Closes `m`'s connection; its reader then ends and calls on_gone.
  void drop(const member_ptr& m) {
    m->writing = false;
    m->stream->close();
  }

  tcp_rendezvous_options o_;
  std::string secret_;
  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  boost::asio::steady_timer timer_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::uint16_t port_ = 0;
  std::thread thread_;

  // The I/O thread's alone.
  std::vector<member_ptr> members_;                  // every authenticated connection
  detail::elastic_roster<member> roster_;            // the generations and the rules that form them
  std::vector<tcp_membership::assignment> pending_;  // the newest generation's assignments
  member_ptr awaiting_root_;                         // the new rank 0, until it says where it listens
  clock::time_point root_deadline_{};
  bool noticed_ = false;  // the newest generation was told to re-form

  mutable std::mutex mutex_;
  mutable std::condition_variable formed_;
  std::uint64_t published_generation_ = 0;
  int published_size_ = 0;
};

}  // namespace sketchsgd
