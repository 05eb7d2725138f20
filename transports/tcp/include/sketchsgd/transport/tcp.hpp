// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The TCP transport (target `sketchsgd::tcp`): a full mesh of authenticated
/// TCP connections driven by Boost.Asio on one background I/O thread.
///
/// Rendezvous: every rank knows rank 0's host:port, its own rank, the world
/// size and a job secret. Ranks connect to rank 0, which answers once all
/// arrived with a table of where each rank listens; then every rank connects
/// to the lower ranks and accepts the higher ones. Every connection starts
/// with the mutual HMAC-SHA256 handshake of tcp_protocol.hpp: a process
/// without the secret is refused and logged, and the job goes on.
///
/// With `tcp_options::tls` set, every connection is first wrapped in TLS 1.3
/// (Boost.Asio SSL over OpenSSL) with mutual authentication: both sides
/// present a certificate and verify the other's against the job's CA, so a
/// peer without a certificate from that CA is refused before it sends a
/// byte of the HMAC handshake, which then runs inside the encrypted stream.
///
/// Frames are length-prefixed with a checked header (tcp_protocol.hpp); a
/// length above `tcp_options::max_frame_bytes` is refused before anything is
/// allocated, and bodies are read in chunks as they arrive. Unmatched data is
/// bounded by `max_buffered_bytes`. Any protocol violation, a closed
/// connection or a timed-out wait fails the peer (or the whole transport),
/// which closes connections so that the other ranks fail fast too.
///
/// Elastic jobs: a `tcp_rendezvous` (tcp/rendezvous.hpp) outlives the
/// workers and forms each generation of the world; a `tcp_elastic_member`
/// (tcp/elastic.hpp) joins the next generation when its world broke or
/// grows, renumbered, over a fresh mesh (docs/reliability.md, "Elastic").
///
/// The parts, one job each, are under sketchsgd/transport/tcp/; the wire
/// format is tcp_protocol.hpp, and the matching of receives to messages is
/// the core's detail/mailbox.hpp, shared with inproc.

#include "sketchsgd/transport/tcp/elastic.hpp"
#include "sketchsgd/transport/tcp/options.hpp"
#include "sketchsgd/transport/tcp/rendezvous.hpp"
#include "sketchsgd/transport/tcp/transport.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"
