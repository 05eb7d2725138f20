// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The elastic rendezvous's wire protocol (server in tcp/rendezvous.hpp,
/// members in tcp/elastic.hpp): the authenticated handshake of a member with
/// the rendezvous, and the messages they exchange, each a data frame
/// (tcp_protocol.hpp) whose tag names the message. Every field is checked on
/// read; separate from both ends so that tests can speak (and mangle) it.
///
/// Handshake: the transport's three messages with the rendezvous's own
/// roles (acceptor rank -1; connector rank -1, world 0, port 0) under a key
/// derived from the job secret, so a proof made for the rendezvous is no
/// proof for a rank's connection, nor the other way round.
///
/// Messages (little-endian):
/// - join (member -> rendezvous): the generation the member last belonged
///   to (0: none) and its rank there (-1: none), and its name (1-64 bytes);
/// - assignment (rendezvous -> member): the new generation, the member's
///   rank and the world size, whether it comes without state (a newcomer),
///   and where rank 0 listens (port 0 for rank 0 itself: "listen, and say
///   where");
/// - listening (rank 0 -> rendezvous): the generation and rank 0's port;
/// - notice (rendezvous -> member): the world should re-form at the next
///   step boundary (a worker waits to join, or a member left);
/// - refusal (rendezvous -> member): why the member cannot join (text).

#include "sketchsgd/transport/tcp/asio.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sketchsgd/error.hpp"
#include "sketchsgd/serialize/wire.hpp"
#include "sketchsgd/transport/tcp/stream.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

namespace sketchsgd::tcp_membership {

/// Message kinds, carried as the data frame's tag.
enum class message : tag_t {
  join = 1,        ///< member -> rendezvous: place me in the next generation
  assignment = 2,  ///< rendezvous -> member: your rank in the new generation
  listening = 3,   ///< new rank 0 -> rendezvous: where it accepts the others
  notice = 4,      ///< rendezvous -> member: re-form at the next step boundary
  refusal = 5,     ///< rendezvous -> member: why it cannot join
};

/// The largest payload of any message (a refusal's text).
inline constexpr std::size_t max_message_bytes = 1024;
/// The longest member name and host text.
inline constexpr std::size_t max_name_bytes = 64;

/// The key of the rendezvous's handshake: the job secret, domain-separated.
inline std::string rendezvous_key(std::string_view secret) {
  return std::string(secret) + "\nsketchsgd-elastic-rendezvous";
}
/// The job secret of generation `g`'s transport: a rank of an older
/// generation cannot connect to a newer one's ranks.
inline std::string generation_secret(std::string_view secret, std::uint64_t g) {
  return std::string(secret) + "\nsketchsgd-generation-" + std::to_string(g);
}

/// A join request.
struct join_request {
  std::uint64_t generation = 0;  ///< the generation last belonged to (0: none)
  std::int32_t rank = -1;        ///< the rank held in it (-1: none)
  std::string name;              ///< who asks (for logs; 1-64 bytes)
};

/// A place in a new generation.
struct assignment {
  std::uint64_t generation = 0;  ///< the new generation (from 1)
  std::int32_t rank = 0;         ///< the member's rank in it
  std::int32_t size = 0;         ///< its world size
  bool newcomer = false;         ///< not a member of the generation before (it brings no state)
  std::string root_host;         ///< where rank 0 listens (rank 0: where it must listen)
  std::uint16_t root_port = 0;   ///< rank 0's port (0 for rank 0 itself)
};

namespace detail {

[[noreturn]] inline void malformed(const char* what, const std::string& why) {
  throw transport_error(std::string("elastic rendezvous: malformed ") + what + ": " + why);
}

inline void put_text(std::vector<std::byte>& out, std::string_view s, const char* what) {
  if (s.empty() || s.size() > max_name_bytes) {
    throw std::invalid_argument(std::string("elastic rendezvous: ") + what + " '" + std::string(s) +
                                "' must have 1 to 64 bytes");
  }
  out.push_back(static_cast<std::byte>(s.size()));
  const auto* b = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), b, b + s.size());
}

inline std::string get_text(std::span<const std::byte> b, std::size_t at, const char* what) {
  if (at >= b.size()) malformed(what, "no text");
  const auto n = static_cast<std::size_t>(b[at]);
  if (n == 0 || n > max_name_bytes) malformed(what, "text of " + std::to_string(n) + " bytes");
  if (b.size() != at + 1 + n)
    malformed(what, std::to_string(b.size()) + " bytes, expected " + std::to_string(at + 1 + n));
  return {reinterpret_cast<const char*>(b.data() + at + 1), n};
}

}  // namespace detail

/// The encoded join request.
/// @throws std::invalid_argument for a name of 0 or more than 64 bytes.
inline std::vector<std::byte> encode(const join_request& j) {
  std::vector<std::byte> out(12);
  wire::store_le(out.data(), j.generation);
  wire::store_le(out.data() + 8, j.rank);
  detail::put_text(out, j.name, "member name");
  return out;
}
/// @throws transport_error naming the bad field.
inline join_request decode_join(std::span<const std::byte> b) {
  if (b.size() < 13) detail::malformed("join", std::to_string(b.size()) + " bytes");
  join_request j;
  j.generation = wire::load_le<std::uint64_t>(b.data());
  j.rank = wire::load_le<std::int32_t>(b.data() + 8);
  j.name = detail::get_text(b, 12, "join");
  if (j.rank < -1 || (j.generation == 0) != (j.rank == -1)) {
    detail::malformed("join", "rank " + std::to_string(j.rank) + " in generation " + std::to_string(j.generation));
  }
  return j;
}

/// The encoded assignment.
/// @throws std::invalid_argument for a host of 0 or more than 64 bytes.
inline std::vector<std::byte> encode(const assignment& a) {
  std::vector<std::byte> out(19);
  wire::store_le(out.data(), a.generation);
  wire::store_le(out.data() + 8, a.rank);
  wire::store_le(out.data() + 12, a.size);
  out[16] = static_cast<std::byte>(a.newcomer ? 1 : 0);
  wire::store_le(out.data() + 17, a.root_port);
  detail::put_text(out, a.root_host, "host");
  return out;
}
/// @throws transport_error naming the bad field.
inline assignment decode_assignment(std::span<const std::byte> b) {
  if (b.size() < 20) detail::malformed("assignment", std::to_string(b.size()) + " bytes");
  assignment a;
  a.generation = wire::load_le<std::uint64_t>(b.data());
  a.rank = wire::load_le<std::int32_t>(b.data() + 8);
  a.size = wire::load_le<std::int32_t>(b.data() + 12);
  const auto flag = static_cast<unsigned>(b[16]);
  a.root_port = wire::load_le<std::uint16_t>(b.data() + 17);
  a.root_host = detail::get_text(b, 19, "assignment");
  if (a.generation == 0 || a.size < 1 || a.rank < 0 || a.rank >= a.size || flag > 1 ||
      (a.rank == 0) != (a.root_port == 0)) {
    detail::malformed("assignment", "rank " + std::to_string(a.rank) + " of " + std::to_string(a.size) +
                                        ", generation " + std::to_string(a.generation) + ", port " +
                                        std::to_string(a.root_port));
  }
  a.newcomer = flag == 1;
  return a;
}

/// The encoded `listening` message: rank 0 of `generation` accepts at `port`.
inline std::vector<std::byte> encode_listening(std::uint64_t generation, std::uint16_t port) {
  std::vector<std::byte> out(10);
  wire::store_le(out.data(), generation);
  wire::store_le(out.data() + 8, port);
  return out;
}
/// The generation and port of a `listening` message.
/// @throws transport_error naming the bad field.
inline std::pair<std::uint64_t, std::uint16_t> decode_listening(std::span<const std::byte> b) {
  if (b.size() != 10) detail::malformed("listening", std::to_string(b.size()) + " bytes");
  const auto port = wire::load_le<std::uint16_t>(b.data() + 8);
  if (port == 0) detail::malformed("listening", "port 0");
  return {wire::load_le<std::uint64_t>(b.data()), port};
}

/// The encoded notice for members of `generation`.
inline std::vector<std::byte> encode_notice(std::uint64_t generation) {
  std::vector<std::byte> out(8);
  wire::store_le(out.data(), generation);
  return out;
}
/// The generation a notice is for.
/// @throws transport_error naming the bad field.
inline std::uint64_t decode_notice(std::span<const std::byte> b) {
  if (b.size() != 8) detail::malformed("notice", std::to_string(b.size()) + " bytes");
  return wire::load_le<std::uint64_t>(b.data());
}

/// The encoded refusal (its text cut to `max_message_bytes`).
inline std::vector<std::byte> encode_refusal(std::string_view why) {
  why = why.substr(0, max_message_bytes);
  const auto* b = reinterpret_cast<const std::byte*>(why.data());
  return {b, b + why.size()};
}

/// Writes message `kind` with `payload` as one data frame. (`payload` by
/// reference, kept alive by the caller: g++ 12 may destroy a temporary
/// argument of a co_await expression twice.)
/// @throws boost::system::system_error when the stream fails.
inline boost::asio::awaitable<void> write_message(sketchsgd::detail::tcp_stream& stream, message kind,
                                                  const std::vector<std::byte>& payload) {
  const auto header =
      tcp_protocol::frame_header{tcp_protocol::frame_type::data, static_cast<tag_t>(kind), payload.size()}.encode();
  const std::array<boost::asio::const_buffer, 2> buffers{boost::asio::buffer(header), boost::asio::buffer(payload)};
  co_await stream.write(buffers);
}

/// Reads the next message: its kind and payload (at most
/// `max_message_bytes`).
/// @throws transport_error for a frame that is not a known message;
/// boost::system::system_error when the stream fails.
inline boost::asio::awaitable<std::pair<message, std::vector<std::byte>>> read_message(
    sketchsgd::detail::tcp_stream& stream) {
  std::array<std::byte, tcp_protocol::frame_header::size> raw{};
  co_await stream.read(boost::asio::buffer(raw));
  const auto h = tcp_protocol::frame_header::decode(raw, max_message_bytes);
  if (h.type != tcp_protocol::frame_type::data || h.tag < 1 || h.tag > 5) {
    throw transport_error("elastic rendezvous: unexpected frame (type " + std::to_string(static_cast<int>(h.type)) +
                          ", tag " + std::to_string(h.tag) + ")");
  }
  std::vector<std::byte> body(h.length);
  co_await stream.read(boost::asio::buffer(body));
  co_return std::pair{static_cast<message>(h.tag), std::move(body)};
}

/// The rendezvous's side of the handshake.
/// @throws transport_error if the member fails to prove the secret;
/// boost::system::system_error when the stream fails.
inline boost::asio::awaitable<void> accept_member(sketchsgd::detail::tcp_stream& stream, std::string_view secret) {
  const std::string key = rendezvous_key(secret);
  const tcp_protocol::server_hello hello{-1, tcp_protocol::fresh_nonce()};
  const auto out = hello.encode();
  co_await stream.write(boost::asio::buffer(out));
  std::array<std::byte, tcp_protocol::client_hello::size> in{};
  co_await stream.read(boost::asio::buffer(in));
  const auto client = tcp_protocol::client_hello::decode(in);
  if (!tcp_protocol::same_mac(client.proof, client.expected_proof(key, hello.challenge, -1))) {
    throw transport_error("authentication failed (wrong job secret?)");
  }
  if (client.rank != -1 || client.world_size != 0 || client.listen_port != 0) {
    throw transport_error("not a member's hello (a rank's connection to the rendezvous?)");
  }
  const auto proof = tcp_protocol::server_proof(key, client.challenge, hello.challenge, -1, -1);
  co_await stream.write(boost::asio::buffer(proof));
}

/// A member's side of the handshake.
/// @throws transport_error if the other side is not the rendezvous or
/// fails to prove the secret; boost::system::system_error when the stream
/// fails.
inline boost::asio::awaitable<void> connect_member(sketchsgd::detail::tcp_stream& stream, std::string_view secret) {
  const std::string key = rendezvous_key(secret);
  std::array<std::byte, tcp_protocol::server_hello::size> in{};
  co_await stream.read(boost::asio::buffer(in));
  const auto server = tcp_protocol::server_hello::decode(in);
  if (server.acceptor_rank != -1) throw transport_error("a rank, not the elastic rendezvous, answered");
  tcp_protocol::client_hello hello;
  hello.rank = -1;
  hello.challenge = tcp_protocol::fresh_nonce();
  hello.proof = hello.expected_proof(key, server.challenge, -1);
  const auto out = hello.encode();
  co_await stream.write(boost::asio::buffer(out));
  tcp_protocol::mac proof{};
  co_await stream.read(boost::asio::buffer(proof));
  if (!tcp_protocol::same_mac(proof, tcp_protocol::server_proof(key, hello.challenge, server.challenge, -1, -1))) {
    throw transport_error("the elastic rendezvous failed to prove the job secret");
  }
}

}  // namespace sketchsgd::tcp_membership
