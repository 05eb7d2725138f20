// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The TCP transport's mutual HMAC handshake (messages in tcp_protocol.hpp)
/// on a connected stream, plain or TLS: the acceptor's side and the
/// connector's, each finished only once both sides proved the job secret.

#include "sketchsgd/transport/tcp/asio.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sketchsgd/error.hpp"
#include "sketchsgd/transport/tcp/stream.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

namespace sketchsgd::detail {

/// Who this rank is, as its handshakes state it.
struct tcp_identity {
  std::string_view secret;        ///< the job secret
  int rank = 0;                   ///< this rank
  int size = 0;                   ///< the world size
  std::uint16_t listen_port = 0;  ///< where this rank accepts higher ranks
};

/// The acceptor's side: greets with a fresh nonce, checks the connector's
/// proof, world size and rank (a higher rank, any but 0 for rank 0), then
/// proves the secret in turn. Returns the connector's hello (its rank and
/// where it listens).
/// @throws transport_error naming what was refused;
/// boost::system::system_error when the stream fails.
inline boost::asio::awaitable<tcp_protocol::client_hello> accept_handshake(tcp_stream& stream,
                                                                           const tcp_identity& self) {
  const tcp_protocol::server_hello hello{self.rank, tcp_protocol::fresh_nonce()};
  const auto out = hello.encode();
  co_await stream.write(boost::asio::buffer(out));
  std::array<std::byte, tcp_protocol::client_hello::size> in{};
  co_await stream.read(boost::asio::buffer(in));
  const auto client = tcp_protocol::client_hello::decode(in);
  if (!tcp_protocol::same_mac(client.proof, client.expected_proof(self.secret, hello.challenge, self.rank))) {
    throw transport_error("authentication failed (wrong job secret?)");
  }
  if (client.world_size != self.size) {
    throw transport_error("peer expects a world of " + std::to_string(client.world_size) + " ranks, not " +
                          std::to_string(self.size));
  }
  const int lowest = self.rank == 0 ? 1 : self.rank + 1;
  if (client.rank < lowest || client.rank >= self.size) {
    throw transport_error("peer claims rank " + std::to_string(client.rank) + ", expected [" + std::to_string(lowest) +
                          ", " + std::to_string(self.size) + ")");
  }
  const auto proof = tcp_protocol::server_proof(self.secret, client.challenge, hello.challenge, self.rank, client.rank);
  co_await stream.write(boost::asio::buffer(proof));
  co_return client;
}

/// The connector's side, to rank `acceptor`: checks that it is who answers,
/// proves the secret over its nonce, and checks its proof over ours.
/// @throws transport_error naming what was refused;
/// boost::system::system_error when the stream fails.
inline boost::asio::awaitable<void> connect_handshake(tcp_stream& stream, const tcp_identity& self, int acceptor) {
  std::array<std::byte, tcp_protocol::server_hello::size> in{};
  co_await stream.read(boost::asio::buffer(in));
  const auto server = tcp_protocol::server_hello::decode(in);
  if (server.acceptor_rank != acceptor) {
    throw transport_error("expected rank " + std::to_string(acceptor) + " to answer, got rank " +
                          std::to_string(server.acceptor_rank));
  }
  tcp_protocol::client_hello hello;
  hello.rank = self.rank;
  hello.world_size = self.size;
  hello.listen_port = self.listen_port;
  hello.challenge = tcp_protocol::fresh_nonce();
  hello.proof = hello.expected_proof(self.secret, server.challenge, acceptor);
  const auto out = hello.encode();
  co_await stream.write(boost::asio::buffer(out));
  tcp_protocol::mac proof{};
  co_await stream.read(boost::asio::buffer(proof));
  if (!tcp_protocol::same_mac(
          proof, tcp_protocol::server_proof(self.secret, hello.challenge, server.challenge, acceptor, self.rank))) {
    throw transport_error("rank " + std::to_string(acceptor) + " failed to prove the job secret");
  }
}

}  // namespace sketchsgd::detail
