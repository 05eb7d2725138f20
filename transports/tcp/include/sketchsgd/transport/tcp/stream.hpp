// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// One connection of the TCP transport as a byte stream: a TCP socket, with
/// TLS over it when the job asks for TLS (and the TLS context that asks).
/// Everything above reads and writes the stream without knowing which.

#include "sketchsgd/transport/tcp/asio.hpp"

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "sketchsgd/error.hpp"
#include "sketchsgd/transport/tcp/options.hpp"

namespace sketchsgd::detail {

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

/// One connection: a TCP socket, and a TLS stream over it once TLS started.
/// Lives on the heap, so the TLS stream's reference to the socket stays
/// valid; used only on the transport's I/O thread.
class tcp_stream {
 public:
  /// The socket type.
  using socket_type = boost::asio::ip::tcp::socket;

  /// Takes over a connected socket.
  explicit tcp_stream(socket_type socket) : socket_(std::move(socket)) {}

  /// The TCP socket (endpoints, options, closing).
  [[nodiscard]] socket_type& socket() noexcept { return socket_; }

  /// Closes the socket unless the returned flag is set within `limit`:
  /// bounds a handshake, the TLS handshake included. The flag, not the
  /// stream, is what the timer keeps: set it before the stream goes.
  std::shared_ptr<bool> close_unless_done_within(std::chrono::milliseconds limit) {
    auto done = std::make_shared<bool>(false);
    auto timer = std::make_shared<boost::asio::steady_timer>(socket_.get_executor(), limit);
    timer->async_wait([timer, done, &socket = socket_](const boost::system::error_code&) {
      if (!*done) {
        boost::system::error_code ignored;
        socket.close(ignored);
      }
    });
    return done;
  }

  /// Starts TLS over the socket when `context` is set (as the server when
  /// `accepting`), verifying the peer's certificate as the context says;
  /// with no context the stream stays plain TCP.
  /// @throws transport_error when the TLS handshake fails.
  boost::asio::awaitable<void> start(boost::asio::ssl::context* context, bool accepting) {
    if (context == nullptr) co_return;
    tls_ = std::make_unique<boost::asio::ssl::stream<socket_type&>>(socket_, *context);
    try {
      co_await tls_->async_handshake(
          accepting ? boost::asio::ssl::stream_base::server : boost::asio::ssl::stream_base::client,
          boost::asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      throw transport_error(std::string("TLS handshake failed: ") + e.what());
    }
  }

  /// Reads exactly the buffers' size.
  /// @throws boost::system::system_error on failure or end of stream.
  template <class Buffers>
  boost::asio::awaitable<void> read(const Buffers& buffers) {
    co_await visit([&](auto& s) { return boost::asio::async_read(s, buffers, boost::asio::use_awaitable); });
  }

  /// Writes all of the buffers.
  /// @throws boost::system::system_error on failure.
  template <class Buffers>
  boost::asio::awaitable<void> write(const Buffers& buffers) {
    co_await visit([&](auto& s) { return boost::asio::async_write(s, buffers, boost::asio::use_awaitable); });
  }

  /// Writes all of the buffers, then calls `handler(error_code, bytes)`.
  template <class Buffers, class Handler>
  void async_write(const Buffers& buffers, Handler&& handler) {
    visit([&](auto& s) { boost::asio::async_write(s, buffers, std::forward<Handler>(handler)); });
  }

  /// Shuts the connection down at the TCP level (no TLS close_notify: the
  /// protocol's goodbye frame already ends a clean close).
  void close() noexcept {
    boost::system::error_code ignored;
    socket_.shutdown(socket_type::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  /// `f` applied to what carries the bytes: the TLS stream once TLS started,
  /// else the socket. The one place that tells them apart.
  template <class F>
  decltype(auto) visit(F&& f) {
    return tls_ ? f(*tls_) : f(socket_);
  }

  socket_type socket_;
  std::unique_ptr<boost::asio::ssl::stream<socket_type&>> tls_;
};

}  // namespace sketchsgd::detail
