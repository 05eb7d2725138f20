// SPDX-License-Identifier: Apache-2.0
// Allreduce throughput of every transport, set against the ring cost model
// (each rank sends and receives 2 (W-1)/W n bytes). Prints one Markdown row
// per (algorithm, size) from rank 0.
//
//   bench_allreduce --transport inproc --ranks 4            (threads)
//   scripts/tcp_launch.sh -n 4 -- bench_allreduce --transport tcp
//   mpiexec -n 4 bench_allreduce --transport mpi            (native MPI_Iallreduce and our ring over MPI)
//
// Options: --sizes 1,4,16,64 (MiB of float), --reps N (median of N after one
// warm-up), --algorithms ring,native,rd, --segment-kib K (ring segment).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/transport/inproc.hpp"
#if defined(SKETCHSGD_BENCH_HAVE_MPI)
#include <mpi.h>

#include "sketchsgd/transport/mpi.hpp"
#endif
#if defined(SKETCHSGD_BENCH_HAVE_TCP)
#include "sketchsgd/transport/tcp.hpp"
#endif

namespace {

struct settings {
  std::string transport = "inproc";
  int ranks = 4;  // inproc only; tcp and mpi take the launcher's world
  std::vector<std::size_t> sizes_mib = {1, 4, 16, 64};
  int reps = 5;
  std::vector<std::string> algorithms = {"ring", "native"};
  std::size_t segment_kib = 1024;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

settings parse(int argc, char** argv) {
  settings s;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const std::string value = argv[i + 1];
    if (key == "--transport") {
      s.transport = value;
    } else if (key == "--ranks") {
      s.ranks = std::stoi(value);
    } else if (key == "--sizes") {
      s.sizes_mib.clear();
      for (const auto& v : split(value)) s.sizes_mib.push_back(std::stoul(v));
    } else if (key == "--reps") {
      s.reps = std::stoi(value);
    } else if (key == "--segment-kib") {
      s.segment_kib = std::stoul(value);
    } else if (key == "--algorithms") {
      s.algorithms = split(value);
    } else {
      std::fprintf(stderr, "unknown option %s\n", key.c_str());
      std::exit(2);
    }
  }
  return s;
}

/// Runs the whole table on one rank; rank 0 prints.
template <class Transport>
void run_rank(Transport& t, const settings& s, const std::string& transport_name) {
  using namespace sketchsgd;
  communicator comm(t);
  const int w = comm.size();
  if (comm.rank() == 0) {
    std::printf(
        "| transport | algorithm | W | MiB | median ms | GB/s (n / t) | bus GB/s (2(W-1)/W n / t) | "
        "bytes sent per rank / model |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
  }
  for (const std::string& algorithm_name : s.algorithms) {
    allreduce_options options;
    options.segment_bytes = s.segment_kib << 10U;
    if (algorithm_name == "ring") {
      options.algorithm = allreduce_algorithm::ring;
    } else if (algorithm_name == "rd") {
      options.algorithm = allreduce_algorithm::recursive_doubling;
    } else {
      options.algorithm = allreduce_algorithm::automatic;  // native where the transport has one
      if constexpr (!collective_transport<Transport>) continue;
    }
    for (const std::size_t mib : s.sizes_mib) {
      const std::size_t n = mib * (std::size_t{1} << 20U) / sizeof(float);
      std::vector<float> data(n, 1.0F);
      std::vector<double> ms;
      std::uint64_t sent = 0;
      for (int rep = 0; rep <= s.reps; ++rep) {
        barrier(comm);
        const auto before = comm.counters();
        const auto start = std::chrono::steady_clock::now();
        allreduce(comm, std::span<float>(data), options);
        const double elapsed =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        sent = (comm.counters() - before).bytes_sent;
        if (rep > 0) ms.push_back(elapsed);  // the first run warms up
      }
      // Each rank's median, averaged over the ranks (they differ by the
      // skew of the last step only).
      std::sort(ms.begin(), ms.end());
      double median = ms[ms.size() / 2];
      allreduce(comm, std::span<double>(&median, 1));
      median /= w;
      if (comm.rank() == 0) {
        const double bytes = static_cast<double>(n * sizeof(float));
        const double model = 2.0 * (w - 1) / w * bytes;
        std::printf("| %s | %s | %d | %zu | %.2f | %.2f | %.2f | %.3f |\n", transport_name.c_str(),
                    algorithm_name.c_str(), w, mib, median, bytes / median / 1e6, model / median / 1e6,
                    model > 0 ? static_cast<double>(sent) / model : 0.0);
        std::fflush(stdout);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const settings s = parse(argc, argv);
  if (s.transport == "inproc") {
    sketchsgd::inproc_world world(s.ranks, {.timeout = std::chrono::seconds(120)});
    std::vector<std::jthread> threads;
    for (int r = 0; r < s.ranks; ++r) {
      threads.emplace_back([&, r] {
        auto t = world.transport(r);
        run_rank(t, s, "inproc");
      });
    }
    return 0;
  }
#if defined(SKETCHSGD_BENCH_HAVE_TCP)
  if (s.transport == "tcp") {
    sketchsgd::tcp_options options;
    options.timeout = std::chrono::seconds(120);
    auto t = sketchsgd::tcp_transport::from_environment(options);
    run_rank(*t, s, "tcp");
    sketchsgd::communicator comm(*t);
    sketchsgd::barrier(comm);
    return 0;
  }
#endif
#if defined(SKETCHSGD_BENCH_HAVE_MPI)
  if (s.transport == "mpi") {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    {
      sketchsgd::mpi_transport t(MPI_COMM_WORLD, {.timeout = std::chrono::seconds(120)});
      run_rank(t, s, "mpi");
    }
    MPI_Finalize();
    return 0;
  }
#endif
  std::fprintf(stderr, "transport %s is not built in\n", s.transport.c_str());
  return 2;
}
