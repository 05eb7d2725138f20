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
#include "handshake_fixture.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

namespace {

namespace p = sketchsgd::tcp_protocol;

const p::nonce acceptor_nonce = sketchsgd::fuzz::handshake_acceptor_nonce();
constexpr const char* job_secret = sketchsgd::fuzz::handshake_secret;

template <class Message>
void round_trip(std::span<const std::byte> body) {
  if (body.size() != Message::size) return;
  try {
    const auto m = Message::decode(body.first<Message::size>());
    const auto again = m.encode();
    sketchsgd::fuzz::check(std::memcmp(again.data(), body.data(), again.size()) == 0,
                           "an accepted handshake message re-encodes to other bytes");
    if constexpr (std::is_same_v<Message, p::client_hello>) {
      // What acceptor_handshake checks: the proof is deterministic, and one
      // made with any other secret never verifies (a seed holds one genuine
      // hello, so mutations of it reach the verifying branch).
      const auto expected = m.expected_proof(job_secret, acceptor_nonce, 0);
      sketchsgd::fuzz::check(p::same_mac(expected, m.expected_proof(job_secret, acceptor_nonce, 0)),
                             "the HMAC is not deterministic");
      sketchsgd::fuzz::check(!p::same_mac(m.expected_proof("not-the-job-secret", acceptor_nonce, 0), expected),
                             "a proof made without the secret verifies");
      if (p::same_mac(m.proof, expected)) {
        sketchsgd::fuzz::check(m.proof == expected, "same_mac accepted a proof that differs");
      }
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
