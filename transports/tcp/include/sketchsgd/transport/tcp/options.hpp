// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Settings of a `tcp_transport`: where rank 0 listens, timeouts, limits,
/// logging, and the TLS files. Plain structs, no Boost.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace sketchsgd {

/// Where rank 0 listens.
struct tcp_endpoint {
  /// Host name or address.
  std::string host = "127.0.0.1";
  /// Port; rank 0 binds it.
  std::uint16_t port = 0;
};

/// TLS settings of a `tcp_transport` (PEM files); TLS is on when any of
/// them is set, and then all three must be. Every rank presents its
/// certificate and accepts a peer only if the peer's certificate chains to
/// the CA in `ca_file`; host names are not checked (ranks are named by the
/// HMAC handshake), so use a CA that signs nothing but this job's or
/// cluster's ranks.
struct tcp_tls_options {
  /// The CA certificate(s) that every rank's certificate must chain to.
  std::string ca_file;
  /// This rank's certificate (chain), signed by that CA.
  std::string certificate_file;
  /// The certificate's private key (unencrypted PEM).
  std::string private_key_file;

  /// Whether TLS is asked for.
  [[nodiscard]] bool enabled() const noexcept {
    return !ca_file.empty() || !certificate_file.empty() || !private_key_file.empty();
  }
};

/// Settings of a `tcp_transport`.
struct tcp_options {
  /// How long `request::wait()` waits before throwing `timeout_error`.
  std::chrono::milliseconds timeout{30'000};
  /// How long the whole rendezvous may take.
  std::chrono::milliseconds connect_timeout{60'000};
  /// How long one connection's handshake may take (a silent stranger is
  /// dropped after it).
  std::chrono::milliseconds handshake_timeout{10'000};
  /// Largest frame payload accepted; larger headers fail the peer at once.
  std::uint64_t max_frame_bytes = std::uint64_t{1} << 30U;
  /// Largest total of received but unmatched payload bytes.
  std::uint64_t max_buffered_bytes = std::uint64_t{1} << 31U;
  /// Where refused connections and peer failures are reported (stderr when
  /// empty).
  std::function<void(const std::string&)> log;
  /// Called on the I/O thread once this rank listens, with its port (rank 0
  /// may ask for port 0 and learn the one it got here).
  std::function<void(std::uint16_t)> on_listen;
  /// TLS with mutual certificate authentication on every connection (the
  /// HMAC handshake still runs, inside TLS); plain TCP when no file is set.
  /// Every rank of a job must agree.
  tcp_tls_options tls;
};

}  // namespace sketchsgd
