// SPDX-License-Identifier: Apache-2.0
// Does the machine's second core scatter as fast as its first? The sketch's
// scatter (a read-modify-write at a hashed column per coordinate) is what
// issue 25's two-thread compute target hinges on (docs/performance.md,
// "Where the time goes"). Each kind of work runs on half of d = 50M keys per
// thread, with the thread pinned to CPU 0 or CPU 1, first alone, then both
// at once; min of 3 runs, ms. A core that keeps its time when the other is
// busy scales; one whose time doubles shares what that work needs.
//
//   build/bench/bench_scatter_cores
//
// Rows: the sketch's scatter (the library's multiply_shift walk, as
// count_sketch::accumulate does it for one row) into a 3.8 MB and a 240 KB
// table, the same into precomputed columns (no hashing), the walk without
// the stores, and an ALU-bound loop. A second table places the two threads'
// tables of the sketch scatter in one block, 4 KiB, one table's size or
// three apart (the gap from the end of one to the start of the other), at
// three sizes: on the AMD EPYC guest tables closer than about two of their
// sizes slowed each other, apart ones did not (count_sketch keeps its parts'
// tables apart for that: detail::scratch_table_guard). Linux only
// (pthread_setaffinity_np).

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"
#include "sketchsgd/hash/multiply_shift.hpp"

namespace {

using sketchsgd::bucket_sign;
using row_hash = sketchsgd::multiply_shift::row_hash;

constexpr std::uint64_t d = 50'000'000;
constexpr std::uint64_t half = d / 2;

// One thread's work: keys [first, first + half), into its own table.
using work = std::function<void(std::uint64_t first, float* table)>;

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<std::size_t>(cpu), &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

double ms_of(const std::function<void()>& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// Milliseconds of `w` on CPU 0 and CPU 1: each alone, then both at once.
std::array<double, 4> measure(const work& w, std::array<float*, 2> tables) {
  std::array<double, 4> best{1e30, 1e30, 1e30, 1e30};
  for (int rep = 0; rep < 3; ++rep) {
    for (int cpu = 0; cpu < 2; ++cpu) {
      double took = 0;
      std::thread([&, cpu] {
        pin(cpu);
        took = ms_of([&] { w(static_cast<std::uint64_t>(cpu) * half, tables[static_cast<std::size_t>(cpu)]); });
      }).join();
      best[static_cast<std::size_t>(cpu)] = std::min(best[static_cast<std::size_t>(cpu)], took);
    }
    std::array<double, 2> took{};
    std::array<std::thread, 2> both;
    for (int cpu = 0; cpu < 2; ++cpu) {
      both[static_cast<std::size_t>(cpu)] = std::thread([&, cpu] {
        pin(cpu);
        took[static_cast<std::size_t>(cpu)] =
            ms_of([&] { w(static_cast<std::uint64_t>(cpu) * half, tables[static_cast<std::size_t>(cpu)]); });
      });
    }
    for (auto& t : both) t.join();
    best[2] = std::min(best[2], took[0]);
    best[3] = std::min(best[3], took[1]);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (!cli::no_options_given("bench_scatter_cores", argc, argv)) return cli::usage_exit_code;
  bool pinned = false;
  std::thread([&] { pinned = pin(0) && pin(1); }).join();
  if (!pinned) {
    std::fprintf(stderr, "bench_scatter_cores: cannot pin threads to CPUs 0 and 1 (it needs both)\n");
    return 1;
  }
  std::vector<float> g(d);
  for (std::uint64_t i = 0; i < d; ++i) g[i] = static_cast<float>(i % 1000U) * 1e-3F - 0.5F;
  std::vector<std::uint32_t> columns(d);
  volatile float sink = 0;
  std::printf("| work, half of d = 50M keys a thread | CPU 0 alone | CPU 1 alone | CPU 0, both at once | "
              "CPU 1, both at once |\n|---|---:|---:|---:|---:|\n");
  const auto row = [&](const char* name, std::uint32_t cols, const work& w) {
    std::vector<float> t0(cols, 0.0F);
    std::vector<float> t1(cols, 0.0F);
    const auto ms = measure(w, {t0.data(), t1.data()});
    sink = sink + t0[0] + t1[0];
    std::printf("| %s | %.1f | %.1f | %.1f | %.1f |\n", name, ms[0], ms[1], ms[2], ms[3]);
  };
  const auto scatter = [&](std::uint32_t cols) -> work {
    return [&g, h = sketchsgd::multiply_shift(42, 1, cols).row(0)](std::uint64_t first, float* table) {
      const float* v = g.data() + first;
      h.for_each(first, half, [&](std::uint64_t i, bucket_sign bs) { table[bs.bucket] += bs.sign > 0 ? v[i] : -v[i]; });
    };
  };
  for (const std::uint32_t cols : {950'000U, 60'000U}) {
    const std::string name = "sketch scatter, " + std::to_string(cols) + " columns";
    row(name.c_str(), cols, scatter(cols));
  }
  const row_hash wide = sketchsgd::multiply_shift(42, 1, 950'000U).row(0);
  wide.for_each(0, d, [&](std::uint64_t i, bucket_sign bs) { columns[i] = bs.bucket; });
  row("scatter at precomputed columns, 950000 columns", 950'000U, [&](std::uint64_t first, float* table) {
    for (std::uint64_t i = first; i < first + half; ++i) table[columns[i]] += g[i];
  });
  row("the sketch's walk without the stores", 1, [&](std::uint64_t first, float* table) {
    float sum = 0;
    std::uint32_t mix = 0;
    const float* v = g.data() + first;
    wide.for_each(first, half, [&](std::uint64_t i, bucket_sign bs) {
      mix ^= bs.bucket;
      sum += bs.sign > 0 ? v[i] : -v[i];
    });
    table[0] = sum + static_cast<float>(mix & 1U);
  });
  row("ALU only: 8 independent multiply-add chains", 1, [&](std::uint64_t first, float* table) {
    std::array<std::uint64_t, 8> z{};
    for (std::size_t j = 0; j < z.size(); ++j) z[j] = first + j;
    std::uint64_t acc = 0;
    for (std::uint64_t i = 0; i < half; ++i) {
      for (auto& x : z) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      acc += z[i & 7U] >> 33U;
    }
    table[0] = static_cast<float>(acc & 1U);
  });
  std::printf("\n| sketch scatter, two tables in one block | gap | CPU 0 alone | CPU 1 alone | CPU 0, both at once | "
              "CPU 1, both at once | slowest at once / slowest alone |\n|---|---:|---:|---:|---:|---:|---:|\n");
  for (const std::uint32_t cols : {19'531U, 190'000U, 950'000U}) {
    const std::size_t page_floats = 1024;
    const std::size_t table_floats = (cols + page_floats - 1) / page_floats * page_floats;
    for (const std::size_t gap_floats : {page_floats, table_floats, 3 * table_floats}) {
      std::vector<float> block(2 * table_floats + gap_floats + page_floats, 0.0F);
      float* const first = block.data() + (page_floats - reinterpret_cast<std::uintptr_t>(block.data()) / 4 % page_floats);
      const auto ms = measure(scatter(cols), {first, first + table_floats + gap_floats});
      sink = sink + first[0];
      std::printf("| %u columns (%zu KiB) | %zu KiB | %.1f | %.1f | %.1f | %.1f | %.2f |\n", cols, table_floats / 256,
                  gap_floats / 256, ms[0], ms[1], ms[2], ms[3], std::max(ms[2], ms[3]) / std::max(ms[0], ms[1]));
    }
  }
}
