// SPDX-License-Identifier: Apache-2.0
// Quickstart: four simulated workers sketch their gradients, the sketches are
// summed (what an allreduce does), and the heaviest coordinates of the summed
// gradient are recovered from the sum: first P * k candidates from the sketch
// alone, then the exact values of just those candidates (Sketched-SGD's second
// round). Prints how well each step worked and how many bytes a worker sends.

#include <sketchsgd/sketchsgd.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>
#include <vector>

namespace {

// A gradient: small noise everywhere plus a few large shared coordinates.
std::vector<float> worker_gradient(std::size_t d, std::uint64_t worker, const std::vector<std::uint64_t>& heavy) {
  sketchsgd::splitmix64 rng(1000 + worker);
  std::vector<float> g(d);
  for (auto& v : g) v = static_cast<float>(static_cast<double>(rng.next() >> 11U) * 0x1.0p-53 - 0.5) * 0.02F;
  for (const auto i : heavy) g[i] += (i % 2 == 0 ? 1.0F : -1.0F);
  return g;
}

}  // namespace

int main() {
  constexpr std::size_t d = 1'000'000;  // parameters
  constexpr std::size_t k = 1'000;      // coordinates to recover
  constexpr int workers = 4;
  const sketchsgd::sketch_config cfg{.rows = 5, .cols = 20'000, .seed = 2024};

  std::vector<std::uint64_t> heavy;
  sketchsgd::splitmix64 pick(7);
  std::set<std::uint64_t> chosen;
  while (chosen.size() < k) chosen.insert(pick.next_below(d));
  heavy.assign(chosen.begin(), chosen.end());

  const auto start = std::chrono::steady_clock::now();
  sketchsgd::count_sketch<float> sum(cfg);
  std::vector<float> dense_sum(d, 0.0F);
  for (int w = 0; w < workers; ++w) {
    const auto g = worker_gradient(d, static_cast<std::uint64_t>(w), heavy);
    sketchsgd::count_sketch<float> local(cfg);
    local.accumulate(g, 0, sketchsgd::all_threads);
    sum += local;  // an allreduce of the tables, in a real job
    for (std::size_t i = 0; i < d; ++i) dense_sum[i] += g[i];
  }
  constexpr std::size_t candidates_per_k = 3;  // P
  const auto from_sketch = sketchsgd::top_k(sum, d, k, sketchsgd::all_threads);
  const auto candidates = sketchsgd::top_k(sum, d, candidates_per_k * k, sketchsgd::all_threads);
  // Second round: the exact summed values of the candidates only (an
  // allreduce of P * k values in a real job), then the top k of those.
  std::vector<float> exact_candidates(candidates.size());
  for (std::size_t n = 0; n < candidates.size(); ++n) exact_candidates[n] = dense_sum[candidates.indices[n]];
  const auto best = sketchsgd::top_k(exact_candidates, k);
  std::vector<std::uint64_t> recovered;
  for (const auto pos : best.indices) recovered.push_back(candidates.indices[pos]);
  const auto exact = sketchsgd::top_k(dense_sum, k, sketchsgd::all_threads);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const auto recall = [&](const std::vector<std::uint64_t>& got) {
    std::size_t hits = 0;
    for (const auto i : got) hits += std::binary_search(exact.indices.begin(), exact.indices.end(), i) ? 1U : 0U;
    return 100.0 * static_cast<double>(hits) / static_cast<double>(k);
  };
  const double sketch_only = recall(from_sketch.indices);
  const double two_rounds = recall(recovered);
  const auto sent = static_cast<double>(cfg.cells() * sizeof(float) + candidates_per_k * k * sizeof(float));
  const auto dense_bytes = static_cast<double>(d * sizeof(float));
  std::printf("d = %zu, k = %zu, %d workers, sketch %llu x %llu, P = %zu\n", d, k, workers,
              static_cast<unsigned long long>(cfg.rows), static_cast<unsigned long long>(cfg.cols), candidates_per_k);
  std::printf("true top-%zu recovered: %.1f%% from the sketch alone, %.1f%% after the second round\n", k, sketch_only,
              two_rounds);
  std::printf("bytes per worker: %.0f (sketch + candidate values) vs %.0f dense (%.1fx smaller); %.2f s\n", sent,
              dense_bytes, dense_bytes / sent, seconds);
  return two_rounds >= 99.0 ? 0 : 1;
}
