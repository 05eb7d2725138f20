// SPDX-License-Identifier: Apache-2.0
// The optimizers over MPI (one process per rank, through mpiexec with 4
// ranks): the same seeded run gives the same parameters, bit for bit, as the
// in-process run of the same 4 ranks, which rank 0 also simulates. Both use
// the generic ring allreduce (MPI's native allreduce sums in its own order).

#include <mpi.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "catch_runner.hpp"
#include "optim_harness.hpp"
#include "sketchsgd/sketchsgd.hpp"
#include "sketchsgd/transport/mpi.hpp"

using namespace sketchsgd;

namespace {
std::unique_ptr<mpi_transport> world_transport;

/// Compares this rank's digests over MPI with the in-process simulation's.
template <class Make>
void same_as_inproc(Make make) {
  auto& t = *world_transport;
  const int w = t.size();
  const test::planted_problem problem(30000, 30, w, 0.002, 21);
  const allreduce_options ring{.algorithm = allreduce_algorithm::ring};
  constexpr std::uint64_t steps = 5;
  const auto mine = test::run_rank(t, problem, steps, make, ring);
  std::vector<std::uint64_t> expected(static_cast<std::size_t>(w) * steps);
  if (t.rank() == 0) {
    inproc_world world(w);
    std::vector<test::rank_record> sim(static_cast<std::size_t>(w));
    test::run_threads(w, [&](int r) {
      auto it = world.transport(r);
      sim[static_cast<std::size_t>(r)] = test::run_rank(it, problem, steps, make, ring);
    });
    for (int r = 0; r < w; ++r) {
      std::copy(sim[static_cast<std::size_t>(r)].digests.begin(), sim[static_cast<std::size_t>(r)].digests.end(),
                expected.begin() + static_cast<std::ptrdiff_t>(static_cast<std::uint64_t>(r) * steps));
    }
  }
  communicator comm(t);
  broadcast(comm, std::span<std::uint64_t>(expected), 0);
  const auto me = static_cast<std::uint64_t>(t.rank());
  const std::vector<std::uint64_t> want(expected.begin() + static_cast<std::ptrdiff_t>(me * steps),
                                        expected.begin() + static_cast<std::ptrdiff_t>((me + 1) * steps));
  CHECK(mine.digests == want);
}

constexpr std::size_t d = 30000;
const sketch_config cfg{.rows = 5, .cols = 2000, .seed = 4};
}  // namespace

TEST_CASE("mpi: Sketched-SGD matches the in-process run bit for bit", "[optim][mpi]") {
  same_as_inproc([](auto& c) {
    using Tr = std::remove_reference_t<decltype(c.underlying())>;
    return sketched_sgd<float, Tr>(c,
                                   {.dimension = d, .sketch = cfg, .k = 60, .learning_rate = 0.3F, .momentum = 0.9F});
  });
}

TEST_CASE("mpi: Sketched-SGD with a root matches the in-process run", "[optim][mpi]") {
  same_as_inproc([](auto& c) {
    using Tr = std::remove_reference_t<decltype(c.underlying())>;
    return sketched_sgd<float, Tr>(c, {.dimension = d,
                                       .sketch = cfg,
                                       .k = 60,
                                       .learning_rate = 0.3F,
                                       .momentum = 0.9F,
                                       .topology = topology::root,
                                       .root = 1});
  });
}

TEST_CASE("mpi: FetchSGD, global sketch, dense and local top-k match the in-process run", "[optim][mpi]") {
  same_as_inproc([](auto& c) {
    using Tr = std::remove_reference_t<decltype(c.underlying())>;
    return fetch_sgd<float, Tr>(c, {.dimension = d, .sketch = cfg, .k = 60, .learning_rate = 0.3F, .momentum = 0.9F});
  });
  same_as_inproc([](auto& c) {
    using Tr = std::remove_reference_t<decltype(c.underlying())>;
    return global_sketch_sgd<float, Tr>(c, {.dimension = d, .sketch = cfg, .k = 60, .learning_rate = 0.3F});
  });
  same_as_inproc([](auto& c) {
    using Tr = std::remove_reference_t<decltype(c.underlying())>;
    return dense_sgd<float, Tr>(c, {.dimension = d, .learning_rate = 0.3F, .momentum = 0.9F});
  });
  same_as_inproc([](auto& c) {
    using Tr = std::remove_reference_t<decltype(c.underlying())>;
    return local_topk_sgd<float, Tr>(c, {.dimension = d, .k = 60, .learning_rate = 0.3F, .momentum = 0.9F});
  });
}

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  world_transport = std::make_unique<mpi_transport>(MPI_COMM_WORLD, mpi_options{.timeout = std::chrono::seconds(60)});
  if (rank != 0) std::freopen("/dev/null", "w", stdout);
  int failures = sketchsgd::test::run_catch_session(argc, argv);
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  world_transport.reset();
  MPI_Finalize();
  return failures == 0 ? 0 : 1;
}
