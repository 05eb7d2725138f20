// SPDX-License-Identifier: Apache-2.0
// The TCP transport on loopback: the conformance suite with the ranks as
// threads of this process (every rank a real tcp_transport with its own I/O
// thread and sockets), then the failure contract: timeouts, departing peers,
// strangers without the secret, and a hostile authenticated peer sending
// garbage, truncated and oversized frames. Then TLS: the suite over mutually
// authenticated TLS, and strangers (a certificate from another CA, plain TCP)
// refused while the job goes on, with certificates made at test time by the
// openssl command-line tool.

#include <catch2/catch.hpp>

#include <utility>  // before Boost.Asio

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "conformance.hpp"
#include "sketchsgd/transport/tcp.hpp"
#include "test_pki.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;
using boost::asio::ip::tcp;

namespace {

const std::string secret = "conformance-secret";

/// Runs `body(transport)` on W threads, each a TCP rank on 127.0.0.1.
template <class Body>
void run_tcp(int w, Body body, tcp_options base = {}) {
  std::promise<std::uint16_t> port_promise;
  auto port = port_promise.get_future().share();
  test::run_threads(w, [&](int r) {
    tcp_options o = base;
    o.log = [](const std::string&) {};
    std::uint16_t root_port = 0;
    if (r == 0) {
      o.on_listen = [&](std::uint16_t p) { port_promise.set_value(p); };
    } else {
      if (port.wait_for(20s) != std::future_status::ready) throw std::runtime_error("rank 0 never listened");
      root_port = port.get();
    }
    tcp_transport t({"127.0.0.1", root_port}, r, w, secret, o);
    body(t);
  });
}

tcp_options with_timeout(std::chrono::milliseconds t) {
  tcp_options o;
  o.timeout = t;
  o.connect_timeout = 20s;
  return o;
}

constexpr int world_sizes[] = {1, 2, 3, 4, 7};

/// A fake rank 1 that completes the handshake with rank 0 (it knows the
/// secret) and returns the authenticated socket for the test to abuse.
tcp::socket authenticated_fake(boost::asio::io_context& io, std::uint16_t port, int world) {
  tcp::socket s(io);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  std::array<std::byte, tcp_protocol::server_hello::size> in{};
  boost::asio::read(s, boost::asio::buffer(in));
  const auto server = tcp_protocol::server_hello::decode(in);
  tcp_protocol::client_hello hello;
  hello.rank = 1;
  hello.world_size = world;
  hello.listen_port = 1;
  hello.challenge = tcp_protocol::fresh_nonce();
  hello.proof = hello.expected_proof(secret, server.challenge, 0);
  boost::asio::write(s, boost::asio::buffer(hello.encode()));
  tcp_protocol::mac proof{};
  boost::asio::read(s, boost::asio::buffer(proof));
  return s;
}

/// Rank 0 of a 2-rank job whose rank 1 is `abuse(socket)`; returns what
/// rank 0's receive from rank 1 threw.
template <class Abuse>
std::string rank0_error_when_peer(Abuse abuse, tcp_options o = with_timeout(5s)) {
  std::promise<std::uint16_t> port_promise;
  o.on_listen = [&](std::uint16_t p) { port_promise.set_value(p); };
  o.log = [](const std::string&) {};
  o.max_frame_bytes = 1 << 20;
  std::string error;
  std::thread rank0([&] {
    try {
      tcp_transport t({"127.0.0.1", 0}, 0, 2, secret, o);
      std::vector<std::byte> buffer(100);
      auto r = t.irecv(1, 1, buffer);
      r.wait();
      error = "no error";
    } catch (const timeout_error& e) {
      error = std::string("timeout: ") + e.what();
    } catch (const transport_error& e) {
      error = e.what();
    }
  });
  boost::asio::io_context io;
  auto port = port_promise.get_future();
  port.wait();
  tcp::socket s = authenticated_fake(io, port.get(), 2);
  abuse(s);
  rank0.join();
  return error;
}

}  // namespace

TEST_CASE("tcp: allreduce, every algorithm, type and size", "[transport][conformance][tcp]") {
  for (const int w : world_sizes) {
    CAPTURE(w);
    run_tcp(
        w, [](auto& t) { test::check_allreduce(t); }, with_timeout(20s));
  }
}

TEST_CASE("tcp: reduce, broadcast, allgather, allgatherv, barrier", "[transport][conformance][tcp]") {
  for (const int w : world_sizes) {
    CAPTURE(w);
    std::atomic<int> arrived{0};
    run_tcp(
        w,
        [&](auto& t) {
          test::check_reduce_and_broadcast(t);
          test::check_allgather(t);
          test::check_barrier(t, &arrived);
        },
        with_timeout(20s));
  }
}

TEST_CASE("tcp: tags route messages and keep per-tag order", "[transport][conformance][tcp]") {
  for (const int w : world_sizes) {
    CAPTURE(w);
    run_tcp(
        w,
        [](auto& t) {
          test::check_tags_and_ordering(t);
          test::check_size_mismatch(t);
        },
        with_timeout(20s));
  }
}

TEST_CASE("tcp: a peer that never answers times out within [timeout/2, 2 timeout]", "[transport][failure][tcp]") {
  std::chrono::steady_clock::duration waited{};
  bool timed_out = false;
  bool peer_failed_fast = false;
  run_tcp(
      2,
      [&](tcp_transport& t) {
        std::uint32_t x = 0;
        if (t.rank() == 0) {
          auto r = t.irecv(1, 5, std::as_writable_bytes(std::span<std::uint32_t>(&x, 1)));
          const auto start = std::chrono::steady_clock::now();
          try {
            r.wait();
          } catch (const timeout_error&) {
            timed_out = true;
          }
          waited = std::chrono::steady_clock::now() - start;
        } else {
          // Rank 1 waits on something rank 0 never sends; rank 0's timeout
          // breaks its transport, which must fail rank 1 long before its own
          // (much longer) wait would end.
          auto r = t.irecv(0, 6, std::as_writable_bytes(std::span<std::uint32_t>(&x, 1)));
          try {
            (void)r.wait_for(20s);
          } catch (const transport_error&) {
            peer_failed_fast = true;
          }
        }
      },
      with_timeout(400ms));
  CHECK(timed_out);
  CHECK(waited >= 200ms);
  CHECK(waited <= 800ms);
  CHECK(peer_failed_fast);
}

TEST_CASE("tcp: a rank that departs mid-collective fails the others promptly", "[transport][failure][tcp]") {
  for (const int w : {2, 3, 4}) {
    CAPTURE(w);
    std::atomic<int> failures{0};
    const auto start = std::chrono::steady_clock::now();
    run_tcp(
        w,
        [&](tcp_transport& t) {
          if (t.rank() == w - 1) return;  // destroys its transport: goodbye frames, closed sockets
          communicator comm(t);
          std::vector<float> data(200000, 1.0F);
          try {
            for (int i = 0; i < 3; ++i) allreduce(comm, std::span<float>(data));
          } catch (const transport_error&) {
            failures.fetch_add(1);
          }
        },
        with_timeout(15s));
    CHECK(failures.load() == w - 1);
    CHECK(std::chrono::steady_clock::now() - start < 10s);
  }
}

TEST_CASE("tcp: a send request dropped before it completed is written whole before its buffer is let go",
          "[transport][failure][tcp]") {
  // The bytes of a send are written from the caller's buffer, not copied: a
  // request dropped early (a collective unwinding from a peer's failure
  // drops its sends) must keep the I/O thread off the buffer once it is
  // gone. Here the buffer is overwritten at once after the drop, while
  // 32 MiB are still on their way: the receiver must see none of it.
  std::size_t wrong = 0;
  run_tcp(2, [&](tcp_transport& t) {
    std::vector<std::byte> data(std::size_t{32} << 20U, std::byte{1});
    if (t.rank() == 0) {
      { auto dropped = t.isend(1, 7, data); }
      std::fill(data.begin(), data.end(), std::byte{2});
    } else {
      std::vector<std::byte> got(data.size());
      t.irecv(0, 7, got).wait();
      wrong = static_cast<std::size_t>(std::count_if(got.begin(), got.end(), [](std::byte b) { return b != std::byte{1}; }));
    }
  });
  CHECK(wrong == 0);
}

TEST_CASE("tcp: a stranger without the secret is refused, logged, and the job goes on", "[transport][failure][tcp]") {
  std::promise<std::uint16_t> port_promise;
  auto port = port_promise.get_future().share();
  std::mutex log_mutex;
  std::vector<std::string> refused;
  std::vector<float> results(3, 0.0F);
  test::run_threads(4, [&](int r) {
    if (r == 3) {  // the stranger: wrong secret, claims rank 1
      port.wait();
      boost::asio::io_context io;
      tcp::socket s(io);
      s.connect({boost::asio::ip::make_address("127.0.0.1"), port.get()});
      std::array<std::byte, tcp_protocol::server_hello::size> in{};
      boost::asio::read(s, boost::asio::buffer(in));
      const auto server = tcp_protocol::server_hello::decode(in);
      tcp_protocol::client_hello hello;
      hello.rank = 1;
      hello.world_size = 3;
      hello.challenge = tcp_protocol::fresh_nonce();
      hello.proof = hello.expected_proof("not-the-secret", server.challenge, 0);
      boost::asio::write(s, boost::asio::buffer(hello.encode()));
      tcp_protocol::mac proof{};
      boost::system::error_code ec;
      boost::asio::read(s, boost::asio::buffer(proof), ec);
      test::expect(static_cast<bool>(ec), "the stranger got an answer to a wrong proof");
      return;
    }
    tcp_options o = with_timeout(20s);
    o.log = [&](const std::string& m) {
      const std::lock_guard lock(log_mutex);
      refused.push_back(m);
    };
    std::uint16_t root_port = 0;
    if (r == 0) {
      o.on_listen = [&](std::uint16_t p) { port_promise.set_value(p); };
    } else {
      root_port = port.get();
      std::this_thread::sleep_for(200ms);  // let the stranger try first
    }
    tcp_transport t({"127.0.0.1", root_port}, r, 3, secret, o);
    communicator comm(t);
    float x = static_cast<float>(r + 1);
    allreduce(comm, std::span<float>(&x, 1));
    results[static_cast<std::size_t>(r)] = x;
  });
  CHECK(results == std::vector<float>{6.0F, 6.0F, 6.0F});
  REQUIRE_FALSE(refused.empty());
  CHECK_THAT(refused.front(), Catch::Contains("refused") && Catch::Contains("authentication failed"));
}

TEST_CASE("tcp: garbage bytes from a peer are a transport_error, not a crash", "[transport][failure][tcp]") {
  const auto error = rank0_error_when_peer([](tcp::socket& s) {
    const std::string junk(64, 'x');
    boost::asio::write(s, boost::asio::buffer(junk));
    std::this_thread::sleep_for(300ms);
  });
  CHECK_THAT(error, Catch::Contains("bad magic"));
}

TEST_CASE("tcp: a frame longer than the maximum is refused before allocating", "[transport][failure][tcp]") {
  const auto error = rank0_error_when_peer([](tcp::socket& s) {
    tcp_protocol::frame_header h{tcp_protocol::frame_type::data, 1, std::uint64_t{1} << 40U};
    boost::asio::write(s, boost::asio::buffer(h.encode()));
    std::this_thread::sleep_for(300ms);
  });
  CHECK_THAT(error, Catch::Contains("exceeds the maximum"));
}

TEST_CASE("tcp: a truncated frame is a transport_error", "[transport][failure][tcp]") {
  const auto error = rank0_error_when_peer([](tcp::socket& s) {
    tcp_protocol::frame_header h{tcp_protocol::frame_type::data, 1, 100};
    boost::asio::write(s, boost::asio::buffer(h.encode()));
    const std::array<char, 10> part{};
    boost::asio::write(s, boost::asio::buffer(part));
    s.close();
  });
  CHECK_THAT(error, Catch::Contains("rank 1 failed"));
}

TEST_CASE("tcp: a message of the wrong size fails only that receive", "[transport][failure][tcp]") {
  const auto error = rank0_error_when_peer([](tcp::socket& s) {
    const std::array<std::byte, 7> payload{};
    tcp_protocol::frame_header h{tcp_protocol::frame_type::data, 1, payload.size()};
    boost::asio::write(s, boost::asio::buffer(h.encode()));
    boost::asio::write(s, boost::asio::buffer(payload));
    std::this_thread::sleep_for(300ms);
  });
  CHECK_THAT(error, Catch::Contains("expected 100 bytes") && Catch::Contains("got 7"));
}

TEST_CASE("tcp: unmatched data above max_buffered_bytes fails the peer at the header", "[transport][failure][tcp]") {
  tcp_options o = with_timeout(5s);
  o.max_buffered_bytes = 1000;
  const auto start = std::chrono::steady_clock::now();
  const auto error = rank0_error_when_peer(
      [](tcp::socket& s) {
        // A header for 5000 unmatched bytes (rank 0 waits on tag 1), and no
        // body: rank 0 must refuse it without waiting for (or allocating) it.
        tcp_protocol::frame_header h{tcp_protocol::frame_type::data, 2, 5000};
        boost::asio::write(s, boost::asio::buffer(h.encode()));
        std::this_thread::sleep_for(300ms);
      },
      o);
  CHECK_THAT(error, Catch::Contains("rank 1 failed") && Catch::Contains("max_buffered_bytes"));
  CHECK(std::chrono::steady_clock::now() - start < 3s);
}

TEST_CASE("tcp: a table frame from a rank other than 0 is refused at its header", "[transport][failure][tcp]") {
  const auto start = std::chrono::steady_clock::now();
  const auto error = rank0_error_when_peer([](tcp::socket& s) {
    // Only the header: rank 0 must not wait for the body.
    tcp_protocol::frame_header h{tcp_protocol::frame_type::table, 0, 1000};
    boost::asio::write(s, boost::asio::buffer(h.encode()));
    std::this_thread::sleep_for(300ms);
  });
  CHECK_THAT(error, Catch::Contains("unexpected rendezvous table"));
  CHECK(std::chrono::steady_clock::now() - start < 3s);
}

TEST_CASE("tcp: a rendezvous table longer than the world is refused", "[transport][failure][tcp]") {
  tcp_protocol::listen_table table;
  for (int i = 0; i < 3; ++i) table.entries.push_back({"127.0.0.1", static_cast<std::uint16_t>(1000 + i)});
  const auto bytes = table.encode();
  CHECK(tcp_protocol::listen_table::decode(bytes, 3).entries.size() == 3);
  CHECK_THROWS_WITH(tcp_protocol::listen_table::decode(bytes, 2), Catch::Contains("more entries"));
  CHECK(bytes.size() <= 3 * tcp_protocol::listen_table::max_entry_bytes);

  // A fake rank 0 that authenticates, then announces a table far longer
  // than 3 ranks can need: rank 2's rendezvous fails at once.
  boost::asio::io_context io;
  tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acceptor.local_endpoint().port();
  std::thread fake([&] {
    tcp::socket s(io);
    acceptor.accept(s);
    const tcp_protocol::server_hello hello{0, tcp_protocol::fresh_nonce()};
    boost::asio::write(s, boost::asio::buffer(hello.encode()));
    std::array<std::byte, tcp_protocol::client_hello::size> in{};
    boost::asio::read(s, boost::asio::buffer(in));
    const auto client = tcp_protocol::client_hello::decode(in);
    boost::asio::write(
        s, boost::asio::buffer(tcp_protocol::server_proof(secret, client.challenge, hello.challenge, 0, client.rank)));
    tcp_protocol::frame_header h{tcp_protocol::frame_type::table, 0, 100000};
    boost::asio::write(s, boost::asio::buffer(h.encode()));
    std::array<std::byte, 1> any{};
    boost::system::error_code ec;
    boost::asio::read(s, boost::asio::buffer(any), ec);  // until rank 1 hangs up
  });
  tcp_options o = with_timeout(5s);
  o.connect_timeout = 10s;
  o.log = [](const std::string&) {};
  const auto start = std::chrono::steady_clock::now();
  std::string error;
  try {
    tcp_transport t({"127.0.0.1", port}, 2, 3, secret, o);
  } catch (const transport_error& e) {
    error = e.what();
  }
  fake.join();
  CHECK_THAT(error, Catch::Contains("too long"));
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("tcp: two authenticated connections claiming one rank: the second is refused", "[transport][failure][tcp]") {
  std::promise<std::uint16_t> port_promise;
  tcp_options o = with_timeout(5s);
  o.on_listen = [&](std::uint16_t p) { port_promise.set_value(p); };
  std::mutex log_mutex;
  std::vector<std::string> logged;
  o.log = [&](const std::string& m) {
    const std::lock_guard lock(log_mutex);
    logged.push_back(m);
  };
  std::string error;
  std::vector<std::byte> received(100);
  std::thread rank0([&] {
    try {
      tcp_transport t({"127.0.0.1", 0}, 0, 2, secret, o);
      auto r = t.irecv(1, 1, received);
      r.wait();
      error = "no error";
    } catch (const timeout_error& e) {
      error = std::string("timeout: ") + e.what();
    } catch (const transport_error& e) {
      error = e.what();
    }
  });
  boost::asio::io_context io;
  auto port = port_promise.get_future();
  port.wait();
  const tcp::endpoint root{boost::asio::ip::make_address("127.0.0.1"), port.get()};
  // Both claim rank 1 and send their client hellos back to back, so rank 0
  // has both before either connection is registered.
  std::array<tcp::socket, 2> sockets{tcp::socket(io), tcp::socket(io)};
  std::array<tcp_protocol::server_hello, 2> servers{};
  for (std::size_t i = 0; i < 2; ++i) {
    sockets[i].connect(root);
    std::array<std::byte, tcp_protocol::server_hello::size> in{};
    boost::asio::read(sockets[i], boost::asio::buffer(in));
    servers[i] = tcp_protocol::server_hello::decode(in);
  }
  std::array<std::array<std::byte, tcp_protocol::client_hello::size>, 2> hellos{};
  for (std::size_t i = 0; i < 2; ++i) {
    tcp_protocol::client_hello hello;
    hello.rank = 1;
    hello.world_size = 2;
    hello.listen_port = 1;
    hello.challenge = tcp_protocol::fresh_nonce();
    hello.proof = hello.expected_proof(secret, servers[i].challenge, 0);
    hellos[i] = hello.encode();
  }
  for (std::size_t i = 0; i < 2; ++i) boost::asio::write(sockets[i], boost::asio::buffer(hellos[i]));
  // Whichever connection rank 0 kept delivers the message; the refused one
  // is closed (its writes fail or go nowhere).
  const std::vector<std::byte> payload(100, std::byte{7});
  tcp_protocol::frame_header h{tcp_protocol::frame_type::data, 1, payload.size()};
  for (auto& s : sockets) {
    boost::system::error_code ec;
    tcp_protocol::mac proof{};
    boost::asio::read(s, boost::asio::buffer(proof), ec);
    if (!ec) boost::asio::write(s, boost::asio::buffer(h.encode()), ec);
    if (!ec) boost::asio::write(s, boost::asio::buffer(payload), ec);
  }
  rank0.join();
  CHECK(error == "no error");
  CHECK(received == payload);
  const std::lock_guard lock(log_mutex);
  INFO("log: " << Catch::Detail::stringify(logged));
  CHECK(std::any_of(logged.begin(), logged.end(), [](const std::string& m) {
    return m.find("refused connection") != std::string::npos && m.find("already connected") != std::string::npos;
  }));
}

TEST_CASE("tcp: withdrawing a receive whose body stalls ends after the timeout", "[transport][failure][tcp]") {
  std::promise<std::uint16_t> port_promise;
  std::promise<void> posted;
  std::promise<void> header_sent;
  tcp_options o = with_timeout(300ms);
  o.on_listen = [&](std::uint16_t p) { port_promise.set_value(p); };
  o.log = [](const std::string&) {};
  std::chrono::steady_clock::duration withdrawing{};
  bool peer_failed = false;
  std::thread rank0([&] {
    tcp_transport t({"127.0.0.1", 0}, 0, 2, secret, o);
    std::vector<std::byte> buffer(100);
    {
      auto r = t.irecv(1, 1, buffer);
      posted.set_value();
      header_sent.get_future().wait();
      std::this_thread::sleep_for(100ms);  // the body is now being read into `buffer`
      const auto start = std::chrono::steady_clock::now();
      r = {};  // withdraws the receive
      withdrawing = std::chrono::steady_clock::now() - start;
    }
    try {
      (void)t.irecv(1, 2, buffer);
    } catch (const transport_error&) {
      peer_failed = true;
    }
  });
  boost::asio::io_context io;
  auto port = port_promise.get_future();
  port.wait();
  tcp::socket s = authenticated_fake(io, port.get(), 2);
  posted.get_future().wait();
  tcp_protocol::frame_header h{tcp_protocol::frame_type::data, 1, 100};
  boost::asio::write(s, boost::asio::buffer(h.encode()));
  const std::array<char, 10> part{};
  boost::asio::write(s, boost::asio::buffer(part));
  header_sent.set_value();
  // Stall: the rest of the body never comes while rank 0 withdraws.
  std::array<std::byte, 1> any{};
  boost::system::error_code ec;
  std::atomic<bool> hung_up{false};
  std::thread closer([&] {
    for (int i = 0; i < 500 && !hung_up.load(); ++i) std::this_thread::sleep_for(10ms);
    if (!hung_up.load()) {  // rank 0 never closed: end the read so that the test fails instead of hanging
      boost::system::error_code ignored;
      s.shutdown(tcp::socket::shutdown_both, ignored);
    }
  });
  boost::asio::read(s, boost::asio::buffer(any), ec);  // until rank 0 closes (or the closer gives up)
  hung_up.store(true);
  rank0.join();
  closer.join();
  CHECK(withdrawing < 3s);
  CHECK(withdrawing >= 200ms);
  CHECK(peer_failed);
}

TEST_CASE("tcp: bad arguments are refused before any I/O", "[transport][tcp]") {
  CHECK_THROWS_AS(tcp_transport({"127.0.0.1", 1}, 2, 2, secret), std::invalid_argument);
  CHECK_THROWS_AS(tcp_transport({"127.0.0.1", 1}, 0, 0, secret), std::invalid_argument);
  CHECK_THROWS_AS(tcp_transport({"127.0.0.1", 1}, 0, 2, ""), std::invalid_argument);
  tcp_transport alone({"127.0.0.1", 0}, 0, 1, secret);
  std::uint32_t x = 0;
  CHECK_THROWS_AS(alone.isend(0, 1, std::as_bytes(std::span<const std::uint32_t>(&x, 1))), std::invalid_argument);
  CHECK_THROWS_AS(alone.irecv(1, 1, std::as_writable_bytes(std::span<std::uint32_t>(&x, 1))), std::invalid_argument);
}

TEST_CASE("tcp: a rendezvous that cannot complete times out", "[transport][failure][tcp]") {
  tcp_options o;
  o.connect_timeout = 500ms;
  o.log = [](const std::string&) {};
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(tcp_transport({"127.0.0.1", 0}, 0, 2, secret, o), timeout_error);  // rank 1 never comes
  CHECK(std::chrono::steady_clock::now() - start < 3s);
}

// ---- TLS ----------------------------------------------------------------------

namespace {

using test::pki;

tcp_options with_tls(std::chrono::milliseconds timeout) {
  tcp_options o = with_timeout(timeout);
  o.tls = pki().job;
  return o;
}

}  // namespace

TEST_CASE("tcp+tls: the collectives over mutually authenticated TLS", "[transport][conformance][tcp][tls]") {
  for (const int w : {2, 3}) {
    CAPTURE(w);
    run_tcp(
        w,
        [](auto& t) {
          test::check_allreduce(t);
          test::check_tags_and_ordering(t);
          test::check_size_mismatch(t);
        },
        with_tls(20s));
  }
}

TEST_CASE("tcp+tls: a certificate from another CA and a plain-TCP peer are refused, and the job goes on",
          "[transport][failure][tcp][tls]") {
  std::promise<std::uint16_t> port_promise;
  auto port = port_promise.get_future().share();
  std::mutex log_mutex;
  std::vector<std::string> logged;
  std::vector<float> results(3, 0.0F);
  std::atomic<int> strangers_done{0};
  test::run_threads(5, [&](int r) {
    if (r == 3) {
      // Knows the job secret and trusts the job's CA, but its own
      // certificate comes from CA 2: the acceptor's verification refuses it
      // and it never sees a server hello.
      port.wait();
      boost::asio::io_context io;
      boost::asio::ssl::context context(boost::asio::ssl::context::tls);
      context.load_verify_file(pki().stranger.ca_file);
      context.use_certificate_chain_file(pki().stranger.certificate_file);
      context.use_private_key_file(pki().stranger.private_key_file, boost::asio::ssl::context::pem);
      context.set_verify_mode(boost::asio::ssl::verify_peer);
      boost::asio::ssl::stream<tcp::socket> s(io, context);
      s.next_layer().connect({boost::asio::ip::make_address("127.0.0.1"), port.get()});
      boost::system::error_code ec;
      s.handshake(boost::asio::ssl::stream_base::client, ec);  // TLS 1.3: the refusal may come after it
      std::array<std::byte, tcp_protocol::server_hello::size> in{};
      if (!ec) boost::asio::read(s, boost::asio::buffer(in), ec);
      test::expect(static_cast<bool>(ec), "the stranger with another CA's certificate got a server hello");
      strangers_done.fetch_add(1);
      return;
    }
    if (r == 4) {
      // Plain TCP against a TLS job: the acceptor waits for a TLS client
      // hello, gets none, and drops the connection at the handshake timeout.
      port.wait();
      boost::asio::io_context io;
      tcp::socket s(io);
      s.connect({boost::asio::ip::make_address("127.0.0.1"), port.get()});
      std::array<std::byte, tcp_protocol::server_hello::size> in{};
      boost::system::error_code ec;
      boost::asio::read(s, boost::asio::buffer(in), ec);
      test::expect(static_cast<bool>(ec), "a plain-TCP peer got a server hello from a TLS job");
      strangers_done.fetch_add(1);
      return;
    }
    tcp_options o = with_tls(20s);
    o.handshake_timeout = 1s;
    o.log = [&](const std::string& m) {
      const std::lock_guard lock(log_mutex);
      logged.push_back(m);
    };
    std::uint16_t root_port = 0;
    if (r == 0) {
      o.on_listen = [&](std::uint16_t p) { port_promise.set_value(p); };
    } else {
      root_port = port.get();
      std::this_thread::sleep_for(200ms);  // let the strangers try first
    }
    tcp_transport t({"127.0.0.1", root_port}, r, 3, secret, o);
    communicator comm(t);
    float x = static_cast<float>(r + 1);
    allreduce(comm, std::span<float>(&x, 1));
    results[static_cast<std::size_t>(r)] = x;
    // Stay up until both strangers have been turned away.
    for (int i = 0; i < 400 && strangers_done.load() < 2; ++i) std::this_thread::sleep_for(10ms);
    barrier(comm);
  });
  CHECK(results == std::vector<float>{6.0F, 6.0F, 6.0F});
  CHECK(strangers_done.load() == 2);
  const auto refused_with = [&](const std::string& what) {
    return std::any_of(logged.begin(), logged.end(), [&](const std::string& m) {
      return m.find("refused connection") != std::string::npos && m.find(what) != std::string::npos;
    });
  };
  INFO("log: " << Catch::Detail::stringify(logged));
  CHECK(refused_with("TLS handshake failed: certificate verify failed"));  // the other CA's certificate
  CHECK(std::count_if(logged.begin(), logged.end(), [](const std::string& m) {
          return m.find("refused connection") != std::string::npos &&
                 m.find("TLS handshake failed") != std::string::npos;
        }) == 2);  // and the plain-TCP peer, at the handshake timeout
}

TEST_CASE("tcp+tls: unusable TLS files are refused before any I/O", "[transport][tcp][tls]") {
  tcp_tls_options missing = pki().job;
  missing.ca_file = (pki().dir / "no-such-ca.pem").string();
  tcp_tls_options mismatched = pki().job;
  mismatched.private_key_file = pki().stranger.private_key_file;
  tcp_tls_options partial;
  partial.ca_file = pki().job.ca_file;
  for (const auto& [name, tls] : {std::pair{"missing CA", missing}, std::pair{"key of another certificate", mismatched},
                                  std::pair{"only a CA", partial}}) {
    CAPTURE(name);
    tcp_options o;
    o.tls = tls;
    CHECK_THROWS_AS(tcp_transport({"127.0.0.1", 1}, 1, 2, secret, o), std::invalid_argument);
  }
}
