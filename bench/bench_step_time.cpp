// SPDX-License-Identifier: Apache-2.0
// End-to-end optimizer step time of every method on W processes, split into
// compute and communication, with the bytes each rank sends. One process per
// rank:
//
//   scripts/tcp_launch.sh -n 4 -- bench_step_time --transport tcp --method sketched --d 50000000
//   mpiexec -n 4 bench_step_time --transport mpi --method dense --d 50000000
//
// The gradient is synthetic (fixed per rank, drawn once); every method uses
// the same k = d / 1000 unless --k is given, and the sketches one row of
// 19 k columns with P = 4 (Sketched-SGD) or no second round (FetchSGD,
// global-sketch SGD), as in the Fashion-MNIST study. Rank 0 prints one CSV
// line: medians over the measured steps (after warm-up) of each phase, the
// slowest rank's median taken for each, and the mean bytes sent per rank.
// `--method global-sketch --sketch-allreduce ring|rd` forces the table's
// allreduce: the ring, or recursive doubling (gs-SGD's log2 W rounds).
// `--overlap` (rows > 1) and `--slices S` (any rows) carry the table's
// allreduce on a helper thread while the sketch goes on (sketched_sgd_options).
// Every line also carries the machine's floor under the step, measured in
// the same run just before the steps with the same threads (bench/floors.hpp):
// one read of the gradient, the fused momentum and error-feedback pass
// u = m u + g; v += u, the method's memory floor and, for sketches, the
// scatter into a table of the step's size; compute as a multiple of the
// floor and of the fused pass; and the process's minor page faults a step.
// `--gradient bfloat16|float16` hands the optimizer the same gradient rounded
// to 16 bits (read in place, never copied to float32); the floors stay
// float32's (tell the runs apart with --label). `--update adam|adam-lazy`
// applies Adam to the aggregate instead of the method's SGD (its pass counts
// in compute).
// Bad values are refused with exit status 2 (examples/common/cli.hpp).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>

#include "cli.hpp"
#include "floors.hpp"
#include "ranks.hpp"
#include "sketchsgd/sketchsgd.hpp"
#if defined(SKETCHSGD_BENCH_HAVE_MPI)
#include <mpi.h>

#include "sketchsgd/transport/mpi.hpp"
#endif
#if defined(SKETCHSGD_BENCH_HAVE_TCP)
#include "sketchsgd/transport/tcp.hpp"
#endif

namespace {

struct settings {
  std::string transport = "tcp";
  std::string method = "sketched";
  std::string label;  // free text copied into the CSV (e.g. the bandwidth)
  std::uint64_t d = 10'000'000;
  std::size_t k = 0;
  std::uint64_t rows = 1;
  double cols_per_k = 19;
  std::size_t candidates = 4;
  int warmup = 1;
  int steps = 3;
  unsigned threads = 1;
  int workers = 1;  // inproc: ranks as threads of this process
  bool header = false;
  bool overlap = false;              // sketched_sgd_options::overlap_rows
  std::size_t slices = 1;            // sketched_sgd_options::slices
  std::string sketch_allreduce;      // global-sketch: ring or rd (recursive doubling); empty: the default
  std::string gradient = "float32";  // or bfloat16, float16: the type step() reads
  std::string update = "sgd";        // or adam, adam-lazy: the rule on the aggregate (its pass counts as local)
};

settings parse(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "--header") {
      s.header = true;
      continue;
    }
    if (key == "--overlap") {
      s.overlap = true;
      continue;
    }
    const std::string_view v = cli::value(argc, argv, i);
    if (key == "--transport")
      s.transport = cli::choice(key, v, {"tcp", "mpi", "inproc"});
    else if (key == "--method")
      s.method = cli::choice(key, v, sketchsgd::method_names);
    else if (key == "--label")
      s.label = v;
    else if (key == "--d")
      s.d = cli::integer<std::uint64_t>(key, v, 1, 0xFFFF'FFFEU, "4-byte indices on the wire");
    else if (key == "--k")
      s.k = cli::integer<std::size_t>(key, v, 1, 0xFFFF'FFFEU);
    else if (key == "--rows")
      s.rows = cli::integer<std::uint64_t>(key, v, 1, sketchsgd::sketch_config::max_rows);
    else if (key == "--cols-per-k")
      s.cols_per_k = cli::real(key, v, 1, 1000);
    else if (key == "--P")
      s.candidates = cli::integer<std::size_t>(key, v, 0, 1000);
    else if (key == "--warmup")
      s.warmup = cli::integer(key, v, 0, 1000);
    else if (key == "--steps")
      s.steps = cli::integer(key, v, 1, 100000);
    else if (key == "--workers")
      s.workers = cli::integer(key, v, 1, 1024, "in-process ranks (threads)");
    else if (key == "--threads")
      s.threads = cli::integer(key, v, 1U, 1024U);
    else if (key == "--slices")
      s.slices = cli::integer<std::size_t>(key, v, 1, 1024);
    else if (key == "--gradient")
      s.gradient = cli::choice(key, v, {"float32", "bfloat16", "float16"});
    else if (key == "--sketch-allreduce")
      s.sketch_allreduce = cli::choice(key, v, {"ring", "rd"});
    else if (key == "--update")
      s.update = cli::choice(key, v, {"sgd", "adam", "adam-lazy"});
    else
      throw cli::usage_error("unknown option " + key);
  }
  if (s.workers != 1 && s.transport != "inproc") {
    throw cli::usage_error("--workers applies to --transport inproc (tcp and mpi take the launcher's world)");
  }
  if (!s.sketch_allreduce.empty() && s.method != "global-sketch") {
    throw cli::usage_error("--sketch-allreduce applies to --method global-sketch only");
  }
  if (s.k == 0) s.k = static_cast<std::size_t>(std::max<std::uint64_t>(1, s.d / 1000));
  cli::check_range<std::size_t>("--k", s.k, 1, s.d, "at most --d");
  const double cols = s.cols_per_k * static_cast<double>(s.k);
  if (cols > static_cast<double>(sketchsgd::multiply_shift::max_cols)) {
    throw cli::usage_error("--cols-per-k " + cli::number_text(s.cols_per_k) + " with k = " + std::to_string(s.k) +
                           " gives " + std::to_string(static_cast<std::uint64_t>(cols)) +
                           " columns; allowed: at most " + std::to_string(sketchsgd::multiply_shift::max_cols));
  }
#if !defined(SKETCHSGD_BENCH_HAVE_TCP)
  if (s.transport == "tcp") throw cli::usage_error("--transport tcp: not built into this program");
#endif
#if !defined(SKETCHSGD_BENCH_HAVE_MPI)
  if (s.transport == "mpi") throw cli::usage_error("--transport mpi: not built into this program");
#endif
  return s;
}

/// Refuses a world of one process over tcp or mpi (--transport inproc is the
/// single-process measurement) and a run that would not fit in memory: the
/// gradient and the optimizer of one rank per process.
void check_run(const settings& s, int world, int here = 1) {
  if (s.transport != "inproc") cli::check_world(s.transport, world, 1 << 20);
  const auto d = static_cast<double>(s.d);
  const auto k = static_cast<double>(s.k);
  const double bytes = 4.0 * 2.0 * d + cli::optimizer_bytes(d, static_cast<double>(s.rows), s.cols_per_k * k, k,
                                                            static_cast<double>(s.candidates));
  cli::check_memory(bytes * here,
                    std::to_string(here) + " rank(s) with d = " + std::to_string(s.d) + ", k = " + std::to_string(s.k) +
                        " and a " + std::to_string(s.rows) + "-row sketch",
                    "use a smaller --d, --k, --rows or --cols-per-k");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class Transport>
void run(Transport& t, const settings& s) {
  using namespace sketchsgd;
  communicator comm(t, {.algorithm = allreduce_algorithm::portable});
  std::vector<float> g(static_cast<std::size_t>(s.d));
  splitmix64 rng(static_cast<std::uint64_t>(comm.rank()) + 11);
  for (auto& x : g) x = static_cast<float>(static_cast<double>(rng.next() >> 11U) * 0x1.0p-53 - 0.5);
  // The floor first, before the optimizer's memory exists: every rank at
  // once, as the steps will run.
  barrier(comm);
  const std::uint64_t cols = static_cast<std::uint64_t>(s.cols_per_k * static_cast<double>(s.k));
  const floors::measured floor = floors::measure(g, s.rows, cols, s.threads);
  std::optional<allreduce_algorithm> table;  // global-sketch: gs-SGD's table in ring or log2 W rounds
  if (!s.sketch_allreduce.empty())
    table = s.sketch_allreduce == "rd" ? allreduce_algorithm::recursive_doubling : allreduce_algorithm::ring;
  auto opt = make_optimizer(
      comm, method_options<float>{.method = s.method,
                                  .dimension = s.d,
                                  .k = s.k,
                                  .sketch = {.rows = s.rows, .cols = cols, .seed = 5},
                                  .candidates_factor = s.method == "global-sketch" ? 0 : s.candidates,
                                  .learning_rate = 0.1F,
                                  .momentum = 0.9F,
                                  .nonfinite = nonfinite_policy::unchecked,  // time the algorithms, not the NaN check
                                  .exec = {s.threads},
                                  .overlap_rows = s.overlap,
                                  .slices = s.slices,
                                  .sketch_allreduce = table,
                                  .update = s.update == "sgd"    ? update_choice::sgd
                                            : s.update == "adam" ? update_choice::adam
                                                                 : update_choice::adam_lazy});

  std::vector<bfloat16_t> g_bf16;
  std::vector<float16_t> g_fp16;
  const auto round_into = [&](auto& out) {
    out.reserve(g.size());
    for (const float x : g) out.emplace_back(x);
  };
  if (s.gradient == "bfloat16") round_into(g_bf16);
  if (s.gradient == "float16") round_into(g_fp16);
  if (s.gradient != "float32") std::vector<float>().swap(g);  // only the 16-bit gradient stays in memory
  const auto step = [&]() -> const model_update<float>& {
    if (!g_bf16.empty()) return opt.step(std::span<const bfloat16_t>(g_bf16));
    if (!g_fp16.empty()) return opt.step(std::span<const float16_t>(g_fp16));
    return opt.step(g);
  };

  std::vector<double> total;
  std::vector<double> compute;
  std::vector<double> communicate;
  std::vector<double> sketch_or_select;
  std::vector<double> recover;
  std::vector<double> faults;
  std::uint64_t bytes = 0;
  const auto minor_faults = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_minflt);
  };
  for (int i = 0; i < s.warmup + s.steps; ++i) {
    barrier(comm);  // every step starts together: times are not skewed by the previous one
    const double faults_before = minor_faults();
    step();
    if (i < s.warmup) continue;
    faults.push_back(minor_faults() - faults_before);
    const auto& st = opt.stats().last_step_time;
    total.push_back(st.total);
    compute.push_back(st.local + st.compress + st.recover);
    communicate.push_back(st.communicate);
    sketch_or_select.push_back(st.compress);
    recover.push_back(st.recover);
    bytes = opt.stats().last_step.bytes_sent;
  }
  // The slowest rank's median per phase; mean bytes per rank.
  const double memory_floor = floors::method_bytes(s.method, s.d) / floor.stream_bytes_per_s;
  const double floor_s = sketchsgd::is_sketch_method(s.method) ? std::max(memory_floor, floor.scatter_s) : memory_floor;
  std::vector<double> mine = {median(total),       median(compute),
                              median(communicate), median(sketch_or_select),
                              median(recover),     4.0 * static_cast<double>(s.d) / floor.stream_bytes_per_s,
                              floor.fused_pass_s,  floor_s,
                              median(faults),      static_cast<double>(bytes)};
  std::vector<double> all(mine.size() * static_cast<std::size_t>(comm.size()));
  allgather(comm, std::span<const double>(mine), std::span<double>(all));
  std::vector<double> worst(mine.size(), 0.0);
  double mean_bytes = 0;
  for (int r = 0; r < comm.size(); ++r) {
    for (std::size_t f = 0; f + 1 < mine.size(); ++f)
      worst[f] = std::max(worst[f], all[static_cast<std::size_t>(r) * mine.size() + f]);
    mean_bytes += all[static_cast<std::size_t>(r) * mine.size() + mine.size() - 1] / comm.size();
  }
  if (comm.rank() == 0) {
    if (s.header) {
      std::printf(
          "label,transport,method,W,d,k,step_s,compute_s,communicate_s,compress_s,recover_s,bytes_per_rank,"
          "read_g_s,fused_pass_s,floor_s,compute_over_floor,compute_over_fused_pass,page_faults_per_step\n");
    }
    std::printf("%s,%s,%s,%d,%llu,%zu,%.6f,%.6f,%.6f,%.6f,%.6f,%.0f,%.6f,%.6f,%.6f,%.2f,%.2f,%.0f\n", s.label.c_str(),
                s.transport.c_str(), s.method.c_str(), comm.size(), static_cast<unsigned long long>(s.d), s.k, worst[0],
                worst[1], worst[2], worst[3], worst[4], mean_bytes, worst[5], worst[6], worst[7], worst[1] / worst[7],
                worst[1] / worst[6], worst[8]);
    std::fflush(stdout);
  }
  barrier(comm);
}

}  // namespace

int main(int argc, char** argv) try {
  cli::note_quick_build("bench_step_time");
  const settings s = parse(argc, argv);
#if defined(SKETCHSGD_BENCH_HAVE_TCP)
  if (s.transport == "tcp") {
    sketchsgd::tcp_options o;
    o.timeout = std::chrono::minutes(10);
    cli::check_tcp_launched();
    auto t = sketchsgd::tcp_transport::from_environment(o);
    check_run(s, t->size());
    run(*t, s);
    return 0;
  }
#endif
#if defined(SKETCHSGD_BENCH_HAVE_MPI)
  if (s.transport == "mpi") {
    int provided = 0;
    // --overlap and --slices call MPI from a helper thread, one call at a time.
    const int needed = s.overlap || s.slices > 1 ? MPI_THREAD_SERIALIZED : MPI_THREAD_FUNNELED;
    MPI_Init_thread(&argc, &argv, needed, &provided);
    if (provided < needed) {
      std::fprintf(stderr, "MPI provides thread level %d, --overlap needs %d\n", provided, needed);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    try {
      check_run(s, size);
    } catch (...) {
      MPI_Finalize();
      throw;
    }
    {
      sketchsgd::mpi_transport t(MPI_COMM_WORLD, {.timeout = std::chrono::minutes(10)});
      run(t, s);
    }
    MPI_Finalize();
    return 0;
  }
#endif
  if (s.transport == "inproc") {
    // The compute cost in one process: W = 1 (no communication), or --workers
    // ranks as threads, whose merges then run for real (local top-k's W k
    // entries, gTop-k's tree) while the bytes move through memory.
    check_run(s, s.workers, s.workers);
    cli::run_inproc(s.workers, std::chrono::minutes(10), [&](int, auto& t) { run(t, s); });
    return 0;
  }
  std::fprintf(stderr, "transport %s is not built in\n", s.transport.c_str());
  return 2;
} catch (const cli::usage_error& e) {
  std::fprintf(stderr, "bench_step_time: %s\n", e.what());
  return cli::usage_exit_code;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_step_time: %s\n", e.what());
  return 1;
}
