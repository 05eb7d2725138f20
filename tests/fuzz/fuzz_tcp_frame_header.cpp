// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the TCP transport's frame header parser
// (tcp_protocol::frame_header::decode). The first 24 bytes are the header;
// 8 more, when present, are the receiver's maximum length. Properties:
// only transport_error escapes; an accepted header has a known type and a
// length within the maximum, and re-encodes to exactly the input.

#include <cstdint>
#include <cstring>

#include "fuzz_support.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace p = sketchsgd::tcp_protocol;
  const auto in = sketchsgd::fuzz::bytes_of(data, size);
  if (in.size() < p::frame_header::size) return 0;
  const std::uint64_t max_length = in.size() >= p::frame_header::size + 8
                                       ? sketchsgd::wire::load_le<std::uint64_t>(in.data() + p::frame_header::size)
                                       : std::uint64_t{1} << 20U;
  try {
    const auto h = p::frame_header::decode(in.first<p::frame_header::size>(), max_length);
    sketchsgd::fuzz::check(h.length <= max_length, "accepted a length above the maximum");
    sketchsgd::fuzz::check(
        h.type == p::frame_type::data || h.type == p::frame_type::goodbye || h.type == p::frame_type::table,
        "accepted an unknown frame type");
    const auto again = h.encode();
    sketchsgd::fuzz::check(std::memcmp(again.data(), in.data(), again.size()) == 0,
                           "an accepted header re-encodes to other bytes");
  } catch (const sketchsgd::transport_error&) {
  }
  return 0;
}
