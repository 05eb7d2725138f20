// SPDX-License-Identifier: Apache-2.0
// The conformance suite over the MPI transport: one process per rank,
// launched by ctest through mpiexec with 2, 3 and 4 ranks. Every rank runs
// the same test cases in the same order, so their collectives match.

#include <mpi.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <memory>

#include "catch_runner.hpp"
#include "conformance.hpp"
#include "sketchsgd/transport/mpi.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;

namespace {
std::unique_ptr<mpi_transport> world_transport;

mpi_transport& rank_transport() { return *world_transport; }
}  // namespace

TEST_CASE("mpi: allreduce, native and generic algorithms", "[transport][conformance][mpi]") {
  test::check_allreduce(rank_transport());
}

TEST_CASE("mpi: reduce and broadcast from every root", "[transport][conformance][mpi]") {
  test::check_reduce_and_broadcast(rank_transport());
}

TEST_CASE("mpi: allgather and allgatherv", "[transport][conformance][mpi]") { test::check_allgather(rank_transport()); }

TEST_CASE("mpi: barrier", "[transport][conformance][mpi]") { test::check_barrier(rank_transport(), nullptr); }

TEST_CASE("mpi: tags route messages and keep per-tag order", "[transport][conformance][mpi]") {
  test::check_tags_and_ordering(rank_transport());
}

TEST_CASE("mpi: a communicator of its own, and errors returned not fatal", "[transport][mpi]") {
  // A transport on a split communicator works beside the world's.
  MPI_Comm half = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank_transport().rank() % 2, 0, &half);
  {
    mpi_transport t(half);
    communicator comm(t);
    int one = 1;
    allreduce(comm, std::span<int>(&one, 1));
    int expected = 0;
    MPI_Comm_size(half, &expected);
    CHECK(one == expected);
    std::uint32_t x = 0;
    CHECK_THROWS_AS(t.isend(t.size(), 1, std::as_bytes(std::span<const std::uint32_t>(&x, 1))), std::invalid_argument);
  }
  MPI_Comm_free(&half);
}

TEST_CASE("mpi: a peer that never answers times out within [timeout/2, 2 timeout]", "[transport][failure][mpi]") {
  mpi_transport t(MPI_COMM_WORLD, {.timeout = 400ms});
  if (t.size() > 1 && t.rank() == 0) {
    std::uint32_t x = 0;
    auto r = t.irecv(1, 77, std::as_writable_bytes(std::span<std::uint32_t>(&x, 1)));
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(r.wait(), timeout_error);
    const auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= 200ms);
    CHECK(waited <= 800ms);
    // The transport is now unusable, as documented.
    CHECK_THROWS_AS(t.irecv(1, 78, std::as_writable_bytes(std::span<std::uint32_t>(&x, 1))), transport_error);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_CASE("mpi: a receive of the wrong size is an error", "[transport][failure][mpi]") {
  mpi_transport t(MPI_COMM_WORLD);
  test::check_size_mismatch(t);
  MPI_Barrier(MPI_COMM_WORLD);
}

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  world_transport = std::make_unique<mpi_transport>(MPI_COMM_WORLD, mpi_options{.timeout = 60s});
  // Only rank 0 reports; every rank runs every test.
  if (rank != 0) std::freopen("/dev/null", "w", stdout);
  int failures = sketchsgd::test::run_catch_session(argc, argv);
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  world_transport.reset();
  MPI_Finalize();
  return failures == 0 ? 0 : 1;
}
