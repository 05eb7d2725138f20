// SPDX-License-Identifier: Apache-2.0
#pragma once

// The machine's floor under an optimizer step, measured in the same process
// right before the steps, with the step's threads (bench_step_time):
//
// - stream bandwidth: one read of the d-float gradient;
// - the fused momentum and error-feedback pass u = m u + g; v += u over d
//   (reads g, u, v, writes u, v: the pass issue 25's target is stated in);
// - the scatter: d x rows adds of precomputed random (bucket, value) pairs
//   into a table of the step's rows x cols, every thread into a table of its
//   own (kept apart, as the sketch keeps its own) over its share of the
//   coordinates (the best any sketch can do on this cache; measured on
//   min(d, 2^22) adds per thread and scaled).
//
// A method's memory floor is the bytes it must stream once (error-feedback
// methods: g, u and v, 20 d bytes; FetchSGD: g, 4 d; dense: g and the update,
// 8 d) at the measured bandwidth; a sketch method's floor is the larger of
// that and its scatter.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sketchsgd/sketchsgd.hpp"

namespace floors {

struct measured {
  double stream_bytes_per_s = 0;
  double fused_pass_s = 0;
  double scatter_s = 0;
};

template <class F>
double median_seconds(int reps, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

/// `f(begin, end, worker)` on `threads` threads over a balanced split of [0, n).
template <class F>
void split(std::size_t n, unsigned threads, F&& f) {
  sketchsgd::detail::fork_join(threads, [&](unsigned w, unsigned nw) {
    const auto r = sketchsgd::detail::split_range(n, w, nw);
    f(r.begin, r.end, w);
  });
}

inline measured measure(std::span<const float> g, std::uint64_t rows, std::uint64_t cols, unsigned threads) {
  measured m;
  const std::size_t d = g.size();
  volatile float sink = 0;
  std::vector<float> sums(threads);
  m.stream_bytes_per_s = 4.0 * static_cast<double>(d) / median_seconds(5, [&] {
                           split(d, threads, [&](std::size_t b, std::size_t e, unsigned w) {
                             float acc[8]{};
                             std::size_t i = b;
                             for (; i + 8 <= e; i += 8) {
                               for (int j = 0; j < 8; ++j) acc[j] += g[i + static_cast<std::size_t>(j)];
                             }
                             for (; i < e; ++i) acc[0] += g[i];
                             float s = 0;
                             for (const float a : acc) s += a;
                             sums[w] = s;
                           });
                           sink = sink + sums[0];
                         });

  std::vector<float> u(d, 0.0F);
  std::vector<float> v(d, 0.0F);
  m.fused_pass_s = median_seconds(5, [&] {
    split(d, threads, [&](std::size_t b, std::size_t e, unsigned) {
      float* const up = u.data();
      float* const vp = v.data();
      for (std::size_t i = b; i < e; ++i) {
        up[i] = 0.9F * up[i] + g[i];
        vp[i] += up[i];
      }
    });
  });
  u = {};
  v = {};

  const std::size_t sample = std::min(std::size_t{1} << 22U, d);
  const std::size_t table_cells = static_cast<std::size_t>(rows * cols);
  // Tables kept apart as the sketch keeps its own (threads adding into nearby
  // tables slow each other on some machines: docs/performance.md).
  sketchsgd::detail::scratch_tables<float> tables;
  tables.reserve(threads, table_cells);
  for (unsigned w = 0; w < threads; ++w) std::fill_n(tables.table(w), table_cells, 0.0F);
  std::vector<std::uint32_t> cells(sample);
  sketchsgd::splitmix64 rng(7);
  for (std::uint32_t& c : cells) c = static_cast<std::uint32_t>(rng.next_below(table_cells));
  const double per_thread = median_seconds(3, [&] {
    split(static_cast<std::size_t>(threads) * sample, threads, [&](std::size_t, std::size_t, unsigned w) {
      float* const t = tables.table(w);
      for (std::size_t i = 0; i < sample; ++i) t[cells[i]] += g[i];
    });
  });
  // d x rows adds split over the threads, at the rate each thread showed.
  m.scatter_s = per_thread * static_cast<double>(d * rows) / static_cast<double>(sample) / threads;
  return m;
}

/// Bytes a method must stream once per step (see the file comment).
inline double method_bytes(const std::string& method, std::uint64_t d) {
  const auto n = static_cast<double>(d);
  if (method == "fetchsgd") return 4.0 * n;
  if (sketchsgd::is_dense_method(method)) return 8.0 * n;
  return 20.0 * n;
}

}  // namespace floors
