// SPDX-License-Identifier: Apache-2.0
// The conformance suite over the TCP transport with one process per rank,
// started by scripts/tcp_launch.sh (which ctest runs with 2, 3 and 4 ranks).
// Every rank runs the same test cases in the same order.

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <memory>

#include "conformance.hpp"
#include "sketchsgd/transport/tcp.hpp"

using namespace sketchsgd;

namespace {
std::unique_ptr<tcp_transport> world_transport;
tcp_transport& rank_transport() { return *world_transport; }
}  // namespace

TEST_CASE("tcp processes: allreduce", "[transport][conformance][tcp]") { test::check_allreduce(rank_transport()); }

TEST_CASE("tcp processes: reduce and broadcast", "[transport][conformance][tcp]") {
  test::check_reduce_and_broadcast(rank_transport());
}

TEST_CASE("tcp processes: allgather and allgatherv", "[transport][conformance][tcp]") {
  test::check_allgather(rank_transport());
}

TEST_CASE("tcp processes: barrier", "[transport][conformance][tcp]") { test::check_barrier(rank_transport(), nullptr); }

TEST_CASE("tcp processes: tags and ordering, then a size mismatch", "[transport][conformance][tcp]") {
  test::check_tags_and_ordering(rank_transport());
  test::check_size_mismatch(rank_transport());
}

int main(int argc, char** argv) {
  tcp_options options;
  options.timeout = std::chrono::seconds(60);
  world_transport = tcp_transport::from_environment(options);
  if (world_transport->rank() != 0) std::freopen("/dev/null", "w", stdout);
  Catch::Session session;
  const int failures = session.run(argc, argv);
  // Agree on the outcome before anyone leaves, so no rank sees a goodbye
  // while it still expects data.
  communicator comm(*world_transport);
  std::int32_t worst = failures;
  allreduce(comm, std::span<std::int32_t>(&worst, 1));
  world_transport.reset();
  return worst == 0 ? 0 : 1;
}
