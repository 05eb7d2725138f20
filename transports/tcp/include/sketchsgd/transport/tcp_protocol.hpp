// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The TCP transport's wire protocol: the authenticated handshake and the
/// frame header, with explicit little-endian layouts and every field checked
/// on read. Separate from the transport so that tests and fuzzers can speak
/// (and mangle) it directly.
///
/// Handshake, on every new connection (the acceptor is the lower rank, or
/// rank 0 during rendezvous):
///
/// 1. acceptor -> connector, `server_hello` (44 bytes): magic "SKSH",
///    version, acceptor rank, a fresh 32-byte nonce A.
/// 2. connector -> acceptor, `client_hello` (88 bytes): magic, version,
///    connector rank, world size, its listening port, a fresh nonce C, and
///    HMAC-SHA256(secret, "sketchsgd-connect" | A | C | fields).
/// 3. acceptor -> connector, `server_proof` (32 bytes):
///    HMAC-SHA256(secret, "sketchsgd-accept" | C | A | ranks).
///
/// Both sides prove knowledge of the job secret over nonces the other side
/// chose, so a recorded handshake cannot be replayed and a process without
/// the secret can neither join nor pose as a rank.
///
/// Frame header (24 bytes): magic "SKSF", version, type (data, goodbye,
/// table), reserved zeros, tag, reserved zeros, payload length. The length is
/// checked against the receiver's maximum before any allocation.

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sketchsgd/error.hpp"
#include "sketchsgd/serialize/wire.hpp"
#include "sketchsgd/transport/concepts.hpp"

namespace sketchsgd::tcp_protocol {

/// Protocol version spoken by this header.
inline constexpr std::uint8_t version = 1;
/// "SKSH" little-endian: handshake messages.
inline constexpr std::uint32_t handshake_magic = 0x48534B53U;
/// "SKSF" little-endian: frames.
inline constexpr std::uint32_t frame_magic = 0x46534B53U;

/// Bytes of a nonce and of an HMAC-SHA256.
inline constexpr std::size_t nonce_bytes = 32;
/// Bytes of an HMAC-SHA256 tag.
inline constexpr std::size_t mac_bytes = 32;
/// A nonce.
using nonce = std::array<std::byte, nonce_bytes>;
/// A message authentication code.
using mac = std::array<std::byte, mac_bytes>;

/// Frame types.
enum class frame_type : std::uint8_t {
  data = 1,     ///< a message for irecv
  goodbye = 2,  ///< the sender closes its transport cleanly
  table = 3,    ///< rendezvous: rank 0 tells every rank where the others listen
};

/// A fresh random nonce from OpenSSL's CSPRNG.
/// @throws transport_error if the generator fails.
inline nonce fresh_nonce() {
  nonce n{};
  if (RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), static_cast<int>(n.size())) != 1) {
    throw transport_error("tcp_transport: RAND_bytes failed");
  }
  return n;
}

/// HMAC-SHA256 of the concatenated `parts` keyed with `secret`.
inline mac hmac(std::string_view secret, std::initializer_list<std::span<const std::byte>> parts) {
  std::vector<unsigned char> message;
  for (const auto& p : parts) {
    const auto* b = reinterpret_cast<const unsigned char*>(p.data());
    message.insert(message.end(), b, b + p.size());
  }
  mac out{};
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), message.data(), message.size(),
           reinterpret_cast<unsigned char*>(out.data()), &length) == nullptr ||
      length != out.size()) {
    throw transport_error("tcp_transport: HMAC-SHA256 failed");
  }
  return out;
}

/// Constant-time equality of two MACs.
inline bool same_mac(const mac& a, const mac& b) noexcept { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

/// The bytes of `s` (no terminator).
inline std::span<const std::byte> text_bytes(std::string_view s) noexcept {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

/// Step 1 of the handshake.
struct server_hello {
  static constexpr std::size_t size = 44;  ///< encoded bytes
  std::int32_t acceptor_rank = 0;          ///< who answers
  nonce challenge{};                       ///< nonce A

  /// The encoded message.
  [[nodiscard]] std::array<std::byte, size> encode() const {
    std::array<std::byte, size> b{};
    wire::store_le(b.data(), handshake_magic);
    b[4] = static_cast<std::byte>(version);
    wire::store_le(b.data() + 8, acceptor_rank);
    std::copy(challenge.begin(), challenge.end(), b.begin() + 12);
    return b;
  }
  /// @throws transport_error naming the bad field.
  static server_hello decode(std::span<const std::byte, size> b) {
    check_magic_version(b.data(), "server hello");
    check_reserved(b.subspan<5, 3>(), "server hello");
    server_hello h;
    h.acceptor_rank = wire::load_le<std::int32_t>(b.data() + 8);
    std::copy(b.begin() + 12, b.begin() + 12 + nonce_bytes, h.challenge.begin());
    return h;
  }

  /// Checks that reserved bytes are zero: they are outside the HMAC, so a
  /// later version may give them meaning only if this one refuses them.
  /// @throws transport_error naming the message.
  static void check_reserved(std::span<const std::byte> reserved, const char* what) {
    if (std::any_of(reserved.begin(), reserved.end(), [](std::byte x) { return x != std::byte{0}; })) {
      throw transport_error(std::string("tcp handshake: ") + what + ": reserved bytes are not zero");
    }
  }

  /// Checks the magic and version shared by every handshake message.
  /// @throws transport_error naming what is wrong.
  static void check_magic_version(const std::byte* b, const char* what) {
    const auto magic = wire::load_le<std::uint32_t>(b);
    if (magic != handshake_magic) {
      throw transport_error(std::string("tcp handshake: ") + what + ": bad magic " + std::to_string(magic));
    }
    if (static_cast<std::uint8_t>(b[4]) != version) {
      throw transport_error(std::string("tcp handshake: ") + what + ": version " +
                            std::to_string(static_cast<unsigned>(b[4])) + ", expected " + std::to_string(version));
    }
  }
};

/// Step 2 of the handshake.
struct client_hello {
  static constexpr std::size_t size = 88;  ///< encoded bytes
  std::int32_t rank = 0;                   ///< the connector's rank
  std::int32_t world_size = 0;             ///< the world size it expects
  std::uint16_t listen_port = 0;           ///< where it accepts higher ranks
  nonce challenge{};                       ///< nonce C
  mac proof{};                             ///< HMAC over A, C and the fields

  /// The MAC the connector must present for acceptor nonce `a`.
  [[nodiscard]] mac expected_proof(std::string_view secret, const nonce& a, std::int32_t acceptor_rank) const {
    std::array<std::byte, 14> fields{};
    wire::store_le(fields.data(), rank);
    wire::store_le(fields.data() + 4, world_size);
    wire::store_le(fields.data() + 8, listen_port);
    wire::store_le(fields.data() + 10, acceptor_rank);
    return hmac(secret, {text_bytes("sketchsgd-connect"), a, challenge, fields});
  }

  /// The encoded message.
  [[nodiscard]] std::array<std::byte, size> encode() const {
    std::array<std::byte, size> b{};
    wire::store_le(b.data(), handshake_magic);
    b[4] = static_cast<std::byte>(version);
    wire::store_le(b.data() + 8, rank);
    wire::store_le(b.data() + 12, world_size);
    wire::store_le(b.data() + 16, listen_port);
    std::copy(challenge.begin(), challenge.end(), b.begin() + 24);
    std::copy(proof.begin(), proof.end(), b.begin() + 56);
    return b;
  }
  /// @throws transport_error naming the bad field.
  static client_hello decode(std::span<const std::byte, size> b) {
    server_hello::check_magic_version(b.data(), "client hello");
    server_hello::check_reserved(b.subspan<5, 3>(), "client hello");
    server_hello::check_reserved(b.subspan<18, 6>(), "client hello");
    client_hello h;
    h.rank = wire::load_le<std::int32_t>(b.data() + 8);
    h.world_size = wire::load_le<std::int32_t>(b.data() + 12);
    h.listen_port = wire::load_le<std::uint16_t>(b.data() + 16);
    std::copy(b.begin() + 24, b.begin() + 56, h.challenge.begin());
    std::copy(b.begin() + 56, b.begin() + 88, h.proof.begin());
    return h;
  }
};

/// Step 3: the acceptor's proof over the connector's nonce.
inline mac server_proof(std::string_view secret, const nonce& connector_nonce, const nonce& acceptor_nonce,
                        std::int32_t acceptor_rank, std::int32_t connector_rank) {
  std::array<std::byte, 8> ranks{};
  wire::store_le(ranks.data(), acceptor_rank);
  wire::store_le(ranks.data() + 4, connector_rank);
  return hmac(secret, {text_bytes("sketchsgd-accept"), connector_nonce, acceptor_nonce, ranks});
}

/// A frame header.
struct frame_header {
  static constexpr std::size_t size = 24;  ///< encoded bytes
  frame_type type = frame_type::data;      ///< what the payload is
  tag_t tag = 0;                           ///< message tag (data frames)
  std::uint64_t length = 0;                ///< payload bytes that follow

  /// The encoded header.
  [[nodiscard]] std::array<std::byte, size> encode() const {
    std::array<std::byte, size> b{};
    wire::store_le(b.data(), frame_magic);
    b[4] = static_cast<std::byte>(version);
    b[5] = static_cast<std::byte>(type);
    wire::store_le(b.data() + 8, tag);
    wire::store_le(b.data() + 16, length);
    return b;
  }

  /// Decodes and checks a header: magic, version, type, reserved bytes, and
  /// a length of at most `max_length`.
  /// @throws transport_error naming the bad field.
  static frame_header decode(std::span<const std::byte, size> b, std::uint64_t max_length) {
    const auto magic = wire::load_le<std::uint32_t>(b.data());
    if (magic != frame_magic) throw transport_error("tcp frame: bad magic " + std::to_string(magic));
    if (static_cast<std::uint8_t>(b[4]) != version) {
      throw transport_error("tcp frame: version " + std::to_string(static_cast<unsigned>(b[4])) + ", expected " +
                            std::to_string(version));
    }
    const auto type = static_cast<std::uint8_t>(b[5]);
    if (type < 1 || type > 3) throw transport_error("tcp frame: unknown type " + std::to_string(type));
    if (b[6] != std::byte{0} || b[7] != std::byte{0} || wire::load_le<std::uint32_t>(b.data() + 12) != 0) {
      throw transport_error("tcp frame: reserved bytes are not zero");
    }
    frame_header h;
    h.type = static_cast<frame_type>(type);
    h.tag = wire::load_le<tag_t>(b.data() + 8);
    h.length = wire::load_le<std::uint64_t>(b.data() + 16);
    if (h.length > max_length) {
      throw transport_error("tcp frame: length " + std::to_string(h.length) + " exceeds the maximum of " +
                            std::to_string(max_length));
    }
    return h;
  }
};

/// Where each rank listens, sent by rank 0 in a table frame: per rank an
/// IPv4/IPv6 address as text (length-prefixed, at most 64 bytes) and a port.
struct listen_table {
  /// One rank's listening address.
  struct entry {
    std::string host;        ///< address as text
    std::uint16_t port = 0;  ///< port
  };
  std::vector<entry> entries;  ///< by rank

  /// The most bytes one encoded entry takes (a 64-byte host).
  static constexpr std::size_t max_entry_bytes = 3 + 64;

  /// The encoded table.
  /// @throws std::invalid_argument for a host of 0 or more than 64 bytes,
  /// which `decode` would refuse.
  [[nodiscard]] std::vector<std::byte> encode() const {
    std::vector<std::byte> out;
    for (const auto& e : entries) {
      if (e.host.empty() || e.host.size() > 64) {
        throw std::invalid_argument("tcp rendezvous: host '" + e.host + "' must have 1 to 64 bytes");
      }
      const auto at = out.size();
      out.resize(at + 3 + e.host.size());
      out[at] = static_cast<std::byte>(e.host.size());
      wire::store_le(out.data() + at + 1, e.port);
      std::memcpy(out.data() + at + 3, e.host.data(), e.host.size());
    }
    return out;
  }
  /// @throws transport_error if the table is malformed or not for `world` ranks.
  static listen_table decode(std::span<const std::byte> b, int world) {
    listen_table t;
    std::size_t at = 0;
    while (at < b.size()) {
      if (static_cast<int>(t.entries.size()) >= world) {
        throw transport_error("tcp rendezvous: table has more entries than the " + std::to_string(world) + " ranks");
      }
      if (b.size() - at < 3) throw transport_error("tcp rendezvous: truncated table entry");
      const auto n = static_cast<std::size_t>(b[at]);
      if (n == 0 || n > 64 || b.size() - at - 3 < n) throw transport_error("tcp rendezvous: bad host length");
      entry e;
      e.port = wire::load_le<std::uint16_t>(b.data() + at + 1);
      e.host.assign(reinterpret_cast<const char*>(b.data() + at + 3), n);
      t.entries.push_back(std::move(e));
      at += 3 + n;
    }
    if (static_cast<int>(t.entries.size()) != world) {
      throw transport_error("tcp rendezvous: table has " + std::to_string(t.entries.size()) + " ranks, expected " +
                            std::to_string(world));
    }
    return t;
  }
};

}  // namespace sketchsgd::tcp_protocol
