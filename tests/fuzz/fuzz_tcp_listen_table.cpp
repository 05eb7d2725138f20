// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the rendezvous table rank 0 sends (tcp_protocol::listen_table
// decode). The first byte is the world size the receiver expects, the rest
// the table frame's payload. Properties: only transport_error escapes; an
// accepted table has one entry per rank, hosts of 1..64 bytes, and
// re-encodes to exactly the input.

#include <cstdint>
#include <cstring>

#include "fuzz_support.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace p = sketchsgd::tcp_protocol;
  const auto in = sketchsgd::fuzz::bytes_of(data, size);
  if (in.empty()) return 0;
  const int world = static_cast<int>(in[0]);
  const auto body = in.subspan(1);
  try {
    const auto t = p::listen_table::decode(body, world);
    sketchsgd::fuzz::check(static_cast<int>(t.entries.size()) == world, "a table of the wrong world size");
    for (const auto& e : t.entries) {
      sketchsgd::fuzz::check(!e.host.empty() && e.host.size() <= 64, "a host length out of range");
    }
    const auto again = t.encode();
    sketchsgd::fuzz::check(
        again.size() == body.size() && (body.empty() || std::memcmp(again.data(), body.data(), body.size()) == 0),
        "an accepted table re-encodes to other bytes");
  } catch (const sketchsgd::transport_error&) {
  }
  return 0;
}
