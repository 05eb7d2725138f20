// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the elastic rendezvous's messages (tcp/membership.hpp). The
// first byte picks the decoder (join, assignment, listening, notice), the
// rest is the payload. Properties: only transport_error escapes; what is
// accepted re-encodes to exactly the input, and an assignment's fields are
// in range (a rank of its world, a host of 1..64 bytes, port 0 for rank 0
// alone).

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "fuzz_support.hpp"
#include "sketchsgd/transport/tcp/membership.hpp"

namespace {

void same_bytes(const std::vector<std::byte>& again, std::span<const std::byte> body, const char* what) {
  sketchsgd::fuzz::check(
      again.size() == body.size() && (body.empty() || std::memcmp(again.data(), body.data(), body.size()) == 0), what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace m = sketchsgd::tcp_membership;
  const auto in = sketchsgd::fuzz::bytes_of(data, size);
  if (in.empty()) return 0;
  const auto body = in.subspan(1);
  try {
    switch (static_cast<unsigned>(in[0]) % 4) {
      case 0: {
        const m::join_request j = m::decode_join(body);
        sketchsgd::fuzz::check(!j.name.empty() && j.name.size() <= m::max_name_bytes, "a name length out of range");
        same_bytes(m::encode(j), body, "an accepted join re-encodes to other bytes");
        break;
      }
      case 1: {
        const m::assignment a = m::decode_assignment(body);
        sketchsgd::fuzz::check(a.size >= 1 && a.rank >= 0 && a.rank < a.size, "a rank outside its world");
        sketchsgd::fuzz::check((a.rank == 0) == (a.root_port == 0), "port 0 for a rank other than 0");
        sketchsgd::fuzz::check(!a.root_host.empty() && a.root_host.size() <= m::max_name_bytes, "a bad host");
        same_bytes(m::encode(a), body, "an accepted assignment re-encodes to other bytes");
        break;
      }
      case 2: {
        const auto [g, port] = m::decode_listening(body);
        sketchsgd::fuzz::check(port != 0, "port 0 accepted");
        same_bytes(m::encode_listening(g, port), body, "an accepted listening message re-encodes to other bytes");
        break;
      }
      default:
        same_bytes(m::encode_notice(m::decode_notice(body)), body, "an accepted notice re-encodes to other bytes");
    }
  } catch (const sketchsgd::transport_error&) {
  }
  return 0;
}
