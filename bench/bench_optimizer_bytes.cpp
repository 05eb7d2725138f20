// SPDX-License-Identifier: Apache-2.0
// Bytes per step of every optimizer, measured by comm_stats() next to the
// formula, for d = 10^6, W = 4 in-process ranks, r = 5, c = 50,000,
// k = 10,000, P = 2 (float values, NaN check off so only the algorithm's
// traffic counts). Prints the Markdown table of docs/algorithms.md.
//   bench_optimizer_bytes

#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"
#include "sketchsgd/sketchsgd.hpp"

using namespace sketchsgd;

namespace {

constexpr int w = 4;
constexpr std::uint64_t d = 1'000'000;
constexpr std::uint64_t r = 5;
constexpr std::uint64_t c = 50'000;
constexpr std::size_t k = 10'000;
constexpr std::size_t p = 2;
const sketch_config cfg{.rows = r, .cols = c, .seed = 1};

/// Our allreduce's bytes sent per rank: recursive doubling up to 8 KiB,
/// else the ring.
double allreduce_model(double bytes) { return bytes <= 8192 ? std::log2(w) * bytes : 2.0 * (w - 1) / w * bytes; }

/// A row: the registry's `o.method` with the table's d, sketch and k.
void row(const char* method, const std::string& formula, double model, method_options<float> o) {
  o.dimension = d;
  o.sketch = cfg;
  o.k = k;
  o.nonfinite = nonfinite_policy::unchecked;
  std::vector<comm_stats> stats(w);
  inproc_world world(w);
  {
    std::vector<std::jthread> threads;
    for (int rank = 0; rank < w; ++rank) {
      threads.emplace_back([&, rank] {
        auto t = world.transport(rank);
        communicator comm(t);
        auto opt = make_optimizer(comm, o);
        splitmix64 rng(static_cast<std::uint64_t>(rank) + 1);
        std::vector<float> g(d);
        for (int step = 0; step < 3; ++step) {
          for (auto& x : g) x = static_cast<float>(static_cast<double>(rng.next() >> 11U) * 0x1.0p-53 - 0.5);
          (void)opt.step(g);
        }
        stats[static_cast<std::size_t>(rank)] = opt.stats();
      });
    }
  }
  const auto& s = stats[1];
  std::printf("| %s | %llu | %llu | %s = %.0f | %.1f |\n", method,
              static_cast<unsigned long long>(s.last_step.bytes_sent),
              static_cast<unsigned long long>(s.last_step.bytes_received), formula.c_str(), model, s.compression());
}

}  // namespace

int main(int argc, char** argv) {
  if (!cli::no_options_given("bench_optimizer_bytes", argc, argv)) return cli::usage_exit_code;
  std::printf(
      "| method (rank 1 of 4) | bytes sent / step | bytes received / step | formula | compression vs dense ring |\n");
  std::printf("|---|---:|---:|---|---:|\n");
  const double rc4 = 4.0 * r * c;
  const double pk4 = 4.0 * p * k;
  row("dense_sgd", "2(W-1)/W 4d", allreduce_model(4.0 * d), {.method = "dense"});
  row("true_topk_sgd", "2(W-1)/W 4d", allreduce_model(4.0 * d), {.method = "true-topk"});
  row("local_topk_sgd", "(W-1) 8 + (W-1) 8k", (w - 1) * 8.0 + (w - 1) * 8.0 * k, {.method = "local-topk"});
  row("sketched_sgd, root (worker)", "up 4rc + 4Pk", rc4 + pk4,
      {.method = "sketched", .candidates_factor = p, .topology = topology::root});
  std::printf("| ... same run, received by the worker | | | down 4Pk + 8k = %.0f | |\n", pk4 + 8.0 * k);
  row("sketched_sgd, allreduce", "ring(4rc) + ring(4Pk)", allreduce_model(rc4) + allreduce_model(pk4),
      {.method = "sketched", .candidates_factor = p});
  row("global_sketch_sgd, P = 2", "ring(4rc) + ring(4Pk)", allreduce_model(rc4) + allreduce_model(pk4),
      {.method = "global-sketch", .candidates_factor = p});
  row("global_sketch_sgd, P = 0", "2(W-1)/W 4rc", allreduce_model(rc4),
      {.method = "global-sketch", .candidates_factor = 0});
  row("fetch_sgd, allreduce", "2(W-1)/W 4rc", allreduce_model(rc4), {.method = "fetchsgd"});
  row("fetch_sgd, root (worker)", "up 4rc", rc4, {.method = "fetchsgd", .topology = topology::root});
  std::printf("\nThe paper's compression ratio 2d / (rc + Pk + k) in elements: %.2f\n",
              2.0 * d / (static_cast<double>(r * c) + static_cast<double>(p * k) + static_cast<double>(k)));
}
