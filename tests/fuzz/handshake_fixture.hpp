// SPDX-License-Identifier: Apache-2.0
#pragma once

// The acceptor's side of the fixed handshake the tcp_handshake fuzz target
// checks proofs against, shared with the corpus generator so that the seed's
// client_hello carries a proof that verifies.

#include <cstddef>

#include "sketchsgd/transport/tcp_protocol.hpp"

namespace sketchsgd::fuzz {

inline constexpr const char* handshake_secret = "fuzz-job-secret";

/// The acceptor's nonce: fixed, so a seed's proof stays valid.
inline tcp_protocol::nonce handshake_acceptor_nonce() {
  tcp_protocol::nonce n{};
  for (std::size_t i = 0; i < n.size(); ++i) n[i] = static_cast<std::byte>(i * 7 + 1);
  return n;
}

}  // namespace sketchsgd::fuzz
