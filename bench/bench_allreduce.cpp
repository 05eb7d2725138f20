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
// Bad values are refused with exit status 2 (examples/common/cli.hpp).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cli.hpp"
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
  bool ranks_given = false;
};

settings parse(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    const std::string_view value = cli::value(argc, argv, i);
    if (key == "--transport") {
      s.transport = cli::choice(key, value, {"inproc", "tcp", "mpi"});
    } else if (key == "--ranks") {
      s.ranks = cli::integer(key, value, 2, 1024, "an allreduce over one rank moves nothing");
      s.ranks_given = true;
    } else if (key == "--sizes") {
      s.sizes_mib.clear();
      for (const auto& v : cli::items(key, value)) s.sizes_mib.push_back(cli::integer<std::size_t>(key, v, 1, 65536));
    } else if (key == "--reps") {
      s.reps = cli::integer(key, value, 1, 10000);
    } else if (key == "--segment-kib") {
      s.segment_kib = cli::integer<std::size_t>(key, value, 1, std::size_t{1} << 20U);
    } else if (key == "--algorithms") {
      s.algorithms.clear();
      for (const auto& v : cli::items(key, value))
        s.algorithms.push_back(cli::choice(key, v, {"ring", "native", "rd"}));
    } else {
      throw cli::usage_error("unknown option " + key);
    }
  }
  if (s.ranks_given && s.transport != "inproc") {
    throw cli::usage_error("--ranks does not apply to --transport " + s.transport + " (the launcher sets the world)");
  }
#if !defined(SKETCHSGD_BENCH_HAVE_TCP)
  if (s.transport == "tcp") throw cli::usage_error("--transport tcp: not built into this program");
#endif
#if !defined(SKETCHSGD_BENCH_HAVE_MPI)
  if (s.transport == "mpi") throw cli::usage_error("--transport mpi: not built into this program");
#endif
  return s;
}

/// Refuses a world of one rank and a run that would not fit in memory: each
/// rank holds the largest buffer, and up to about twice that again in
/// copies in flight (inproc sends are eager copies).
void check_run(const settings& s, std::string_view transport, int world, int here) {
  if (transport != "inproc") cli::check_world(transport, world, 1 << 20);
  const double largest = static_cast<double>(*std::max_element(s.sizes_mib.begin(), s.sizes_mib.end())) * 1048576.0;
  cli::check_memory(3.0 * largest * here,
                    std::to_string(here) + (transport == "inproc" ? " ranks" : " rank") + " with buffers of " +
                        cli::bytes_text(largest),
                    "use smaller --sizes or fewer --ranks");
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

int main(int argc, char** argv) try {
  cli::note_quick_build("bench_allreduce");
  const settings s = parse(argc, argv);
  if (s.transport == "inproc") {
    check_run(s, "inproc", s.ranks, s.ranks);
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
    cli::check_tcp_launched();
    auto t = sketchsgd::tcp_transport::from_environment(options);
    check_run(s, "tcp", t->size(), 1);
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
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    try {
      check_run(s, "mpi", size, 1);
    } catch (...) {
      MPI_Finalize();
      throw;
    }
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
} catch (const cli::usage_error& e) {
  std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
  return cli::usage_exit_code;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
  return 1;
}
