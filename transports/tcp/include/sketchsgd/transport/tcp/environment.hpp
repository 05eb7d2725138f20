// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// A TCP job as the environment describes it (scripts/tcp_launch.sh sets
/// the variables), and rank 0's port published through a file.

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

/// Reads SKETCHSGD_TCP_ROOT (host:port), SKETCHSGD_RANK, SKETCHSGD_SIZE and
/// SKETCHSGD_SECRET (or SKETCHSGD_SECRET_FILE). Rank 0 may be given port 0
/// together with SKETCHSGD_TCP_PORT_FILE: then `options.on_listen` also
/// writes the port it got to that file.
/// @throws std::invalid_argument naming a missing or malformed variable.
inline tcp_environment read_tcp_environment(tcp_options& options) {
  const auto get = [](const char* name) -> std::string {
    const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read once at startup
    return v == nullptr ? std::string() : std::string(v);
  };
  const auto number = [&](const char* name) {
    const std::string v = get(name);
    try {
      std::size_t used = 0;
      const int n = std::stoi(v, &used);
      if (used == v.size()) return n;
    } catch (const std::exception&) {
    }
    throw std::invalid_argument(std::string("tcp_transport: environment variable ") + name +
                                " must be an integer, got '" + v + "'");
  };
  const std::string root = get("SKETCHSGD_TCP_ROOT");
  const auto colon = root.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == root.size()) {
    throw std::invalid_argument("tcp_transport: SKETCHSGD_TCP_ROOT must be host:port, got '" + root + "'");
  }
  std::string secret = get("SKETCHSGD_SECRET");
  if (secret.empty() && !get("SKETCHSGD_SECRET_FILE").empty()) {
    std::ifstream in(get("SKETCHSGD_SECRET_FILE"));
    std::getline(in, secret);
  }
  if (secret.empty()) {
    throw std::invalid_argument("tcp_transport: set SKETCHSGD_SECRET or SKETCHSGD_SECRET_FILE to the job secret");
  }
  int port = -1;
  try {
    port = std::stoi(root.substr(colon + 1));
  } catch (const std::exception&) {
  }
  const int rank = number("SKETCHSGD_RANK");
  // Rank 0 may take any free port (0) and publish it through a file, which
  // is how the launcher avoids guessing a free port.
  const std::string port_file = get("SKETCHSGD_TCP_PORT_FILE");
  if (port < (rank == 0 && !port_file.empty() ? 0 : 1) || port > 65535) {
    throw std::invalid_argument("tcp_transport: bad port in SKETCHSGD_TCP_ROOT '" + root + "'");
  }
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
  return {tcp_endpoint{root.substr(0, colon), static_cast<std::uint16_t>(port)}, rank, number("SKETCHSGD_SIZE"),
          std::move(secret)};
}

}  // namespace sketchsgd::detail
