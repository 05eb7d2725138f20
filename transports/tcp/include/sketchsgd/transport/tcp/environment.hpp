// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// A TCP job as the environment describes it (scripts/tcp_launch.sh sets
/// the variables), and rank 0's port published through a file; the
/// rendezvous and the secret of an elastic job (tcp/elastic.hpp).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "sketchsgd/transport/tcp/options.hpp"

namespace sketchsgd::detail {

/// What `tcp_transport`'s constructor takes besides the options.
struct tcp_environment {
  tcp_endpoint root;   ///< SKETCHSGD_TCP_ROOT
  int rank = 0;        ///< SKETCHSGD_RANK
  int size = 0;        ///< SKETCHSGD_SIZE
  std::string secret;  ///< SKETCHSGD_SECRET, or the first line of SKETCHSGD_SECRET_FILE
};

/// The value of environment variable `name` ("" when unset).
inline std::string environment_variable(const char* name) {
  const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read once at startup
  return v == nullptr ? std::string() : std::string(v);
}

/// The job secret: SKETCHSGD_SECRET, or the first line of
/// SKETCHSGD_SECRET_FILE.
/// @throws std::invalid_argument (prefixed with `who`) if neither is set.
inline std::string read_tcp_secret(const std::string& who) {
  std::string secret = environment_variable("SKETCHSGD_SECRET");
  if (secret.empty() && !environment_variable("SKETCHSGD_SECRET_FILE").empty()) {
    std::ifstream in(environment_variable("SKETCHSGD_SECRET_FILE"));
    std::getline(in, secret);
  }
  if (secret.empty()) {
    throw std::invalid_argument(who + ": set SKETCHSGD_SECRET or SKETCHSGD_SECRET_FILE to the job secret");
  }
  return secret;
}

/// Variable `name` as host:port, the port in [`lowest_port`, 65535].
/// @throws std::invalid_argument (prefixed with `who`) naming the variable.
inline tcp_endpoint read_tcp_endpoint(const std::string& who, const char* name, int lowest_port) {
  const std::string v = environment_variable(name);
  const auto colon = v.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == v.size()) {
    throw std::invalid_argument(who + ": " + name + " must be host:port, got '" + v + "'");
  }
  int port = -1;
  try {
    std::size_t used = 0;
    port = std::stoi(v.substr(colon + 1), &used);
    if (used != v.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
  }
  if (port < lowest_port || port > 65535) throw std::invalid_argument(who + ": bad port in " + name + " '" + v + "'");
  return {v.substr(0, colon), static_cast<std::uint16_t>(port)};
}

/// Reads SKETCHSGD_TCP_ROOT (host:port), SKETCHSGD_RANK, SKETCHSGD_SIZE and
/// SKETCHSGD_SECRET (or SKETCHSGD_SECRET_FILE). Rank 0 may be given port 0
/// together with SKETCHSGD_TCP_PORT_FILE: then `options.on_listen` also
/// writes the port it got to that file.
/// @throws std::invalid_argument naming a missing or malformed variable.
inline tcp_environment read_tcp_environment(tcp_options& options) {
  const std::string who = "tcp_transport";
  const auto number = [&](const char* name) {
    const std::string v = environment_variable(name);
    try {
      std::size_t used = 0;
      const int n = std::stoi(v, &used);
      if (used == v.size()) return n;
    } catch (const std::exception&) {
    }
    throw std::invalid_argument(who + ": environment variable " + name + " must be an integer, got '" + v + "'");
  };
  // Check the root's form before the secret: a missing launcher shows first.
  (void)read_tcp_endpoint(who, "SKETCHSGD_TCP_ROOT", 0);
  std::string secret = read_tcp_secret(who);
  const int rank = number("SKETCHSGD_RANK");
  // Rank 0 may take any free port (0) and publish it through a file, which
  // is how the launcher avoids guessing a free port.
  const std::string port_file = environment_variable("SKETCHSGD_TCP_PORT_FILE");
  const tcp_endpoint root = read_tcp_endpoint(who, "SKETCHSGD_TCP_ROOT", rank == 0 && !port_file.empty() ? 0 : 1);
  if (rank == 0 && !port_file.empty()) {
    options.on_listen = [port_file, chained = std::move(options.on_listen)](std::uint16_t p) {
      {
        std::ofstream out(port_file + ".tmp");
        out << p << '\n';
      }
      std::rename((port_file + ".tmp").c_str(), port_file.c_str());
      if (chained) chained(p);
    };
  }
  return {root, rank, number("SKETCHSGD_SIZE"), std::move(secret)};
}

}  // namespace sketchsgd::detail
