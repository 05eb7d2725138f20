// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Frames on a TCP transport stream (header layout in tcp_protocol.hpp): a
/// frame queued for writing, and reading a checked header and then a body
/// that grows only as its bytes arrive.

#include "sketchsgd/transport/tcp/asio.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "sketchsgd/detail/mailbox.hpp"
#include "sketchsgd/transport/tcp/stream.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

namespace sketchsgd::detail {

/// A frame waiting in a peer's send queue. Its payload may point into
/// `owned`, so it must not move once queued (a deque keeps it in place).
struct tcp_outgoing_frame {
  std::array<std::byte, tcp_protocol::frame_header::size> header{};  ///< the encoded header
  std::vector<std::byte> owned;                                      ///< payload the transport owns (tables)
  std::span<const std::byte> payload;                                ///< what to write after the header
  std::shared_ptr<transfer> state;                                   ///< completed when written; may be null

  /// The header and the payload, to write as one.
  [[nodiscard]] std::array<boost::asio::const_buffer, 2> buffers() const {
    return {boost::asio::buffer(header), boost::asio::buffer(payload.data(), payload.size())};
  }
};

/// Reads the next frame header and checks it, its length against
/// `max_frame_bytes` included.
/// @throws transport_error naming a bad field; boost::system::system_error
/// when the stream fails.
inline boost::asio::awaitable<tcp_protocol::frame_header> read_frame_header(tcp_stream& stream,
                                                                            std::uint64_t max_frame_bytes) {
  std::array<std::byte, tcp_protocol::frame_header::size> raw{};
  co_await stream.read(boost::asio::buffer(raw));
  co_return tcp_protocol::frame_header::decode(raw, max_frame_bytes);
}

/// Reads a frame body of `length` bytes in chunks, growing the buffer with
/// what arrives: a header alone cannot make the reader allocate.
/// @throws boost::system::system_error when the stream fails.
inline boost::asio::awaitable<std::vector<std::byte>> read_frame_body(tcp_stream& stream, std::uint64_t length) {
  constexpr std::size_t chunk = std::size_t{1} << 22U;
  std::vector<std::byte> body;
  while (body.size() < length) {
    const std::size_t n = std::min<std::uint64_t>(chunk, length - body.size());
    const std::size_t at = body.size();
    body.resize(at + n);
    co_await stream.read(boost::asio::buffer(body.data() + at, n));
  }
  co_return body;
}

}  // namespace sketchsgd::detail
