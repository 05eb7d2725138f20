// SPDX-License-Identifier: Apache-2.0
// The conformance suite over the TCP transport with one process per rank,
// started by scripts/tcp_launch.sh (which ctest runs with 2, 3 and 4 ranks).
// Every rank runs the same test cases in the same order.

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "catch_runner.hpp"
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

namespace {

/// `--crash-test`: the last rank dies without a word (_exit, no goodbye)
/// before the collective; every other rank must see a transport_error within
/// seconds, far below its 60 s timeout. Exit 0 when it behaved so.
int crash_test() {
  if (world_transport->rank() == world_transport->size() - 1) std::_Exit(0);
  communicator comm(*world_transport);
  std::vector<float> data(1 << 20, 1.0F);
  const auto start = std::chrono::steady_clock::now();
  try {
    allreduce(comm, std::span<float>(data));
  } catch (const transport_error& e) {
    const auto waited = std::chrono::steady_clock::now() - start;
    std::fprintf(stderr, "rank %d: transport_error after %.2f s: %s\n", world_transport->rank(),
                 std::chrono::duration<double>(waited).count(), e.what());
    return waited < std::chrono::seconds(10) ? 0 : 3;
  }
  std::fprintf(stderr, "rank %d: the collective completed without the dead rank\n", world_transport->rank());
  return 4;
}

}  // namespace

int main(int argc, char** argv) {
  tcp_options options;
  options.timeout = std::chrono::seconds(60);
  options.log = [](const std::string&) {};
  world_transport = tcp_transport::from_environment(options);
  if (argc > 1 && std::string(argv[1]) == "--crash-test") {
    const int status = crash_test();
    std::_Exit(status);  // the transport's peers are gone; skip the goodbyes
  }
  if (world_transport->rank() != 0) std::freopen("/dev/null", "w", stdout);
  const int failures = sketchsgd::test::run_catch_session(argc, argv);
  // Agree on the outcome before anyone leaves, so no rank sees a goodbye
  // while it still expects data.
  communicator comm(*world_transport);
  std::int32_t worst = failures;
  allreduce(comm, std::span<std::int32_t>(&worst, 1));
  world_transport.reset();
  return worst == 0 ? 0 : 1;
}
