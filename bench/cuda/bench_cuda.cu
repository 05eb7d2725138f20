// SPDX-License-Identifier: Apache-2.0
// The device Count Sketch at the sizes of docs/cuda.md: d = 10M and 100M
// floats into 5 x 500,000, k = 100,000. Each operation is timed with CUDA
// events (Google Benchmark manual time) and reported as achieved bandwidth
// against the device's peak:
//
//   GB/s    = the operation's compulsory DRAM traffic / time (the model per
//             benchmark below: what any implementation must move at least);
//   peak_%  = GB/s / peak, peak = 2 x memory clock x bus width (queried), or
//             --peak-gbs=N when the query is wrong for the memory type.
//
// Targets on an H100 (docs/cuda.md): accumulate of 10M floats <= 100 us;
// unsketch (estimate_all + top-k) of 10M <= 1 ms.
//
// Run: bench_cuda [--peak-gbs=3350] [--benchmark_filter=...]

#include <sketchsgd/cuda/cuda.cuh>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "sketchsgd/sketchsgd.hpp"

#include "cli.hpp"

namespace {

using namespace sketchsgd;

constexpr std::uint64_t rows = 5;
constexpr std::uint64_t cols = 500'000;
constexpr std::size_t top = 100'000;
const sketch_config cfg{.rows = rows, .cols = cols, .seed = 42};

double peak_gbs = 0;  // set in main

void check(cudaError_t e, const char* what) { detail::cuda_check(e, what); }

/// d approximately normal floats (Irwin-Hall of four uniforms), made on the
/// host from splitmix64 and copied once per size.
const device_buffer<float>& gradient(std::size_t d) {
  static std::size_t made = 0;
  static device_buffer<float> buffer;
  if (made != d) {
    std::vector<float> h(d);
    for (std::size_t i = 0; i < d; ++i) {
      std::uint64_t z = mix64(i + 1);
      float s = 0;
      for (int j = 0; j < 4; ++j, z >>= 16U) s += static_cast<float>(z & 0xFFFFU) * (1.0F / 65536.0F);
      h[i] = (s - 2.0F) * 1.7320508F;
    }
    buffer = device_buffer<float>(d);
    check(cudaMemcpy(buffer.data(), h.data(), d * sizeof(float), cudaMemcpyHostToDevice), "upload");
    made = d;
  }
  return buffer;
}

/// Times `op(stream)` with events; `bytes` of compulsory traffic per call.
template <class Op>
void timed(benchmark::State& state, double bytes, Op op) {
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  op(stream);  // warm-up: workspaces, first-launch costs
  check(cudaStreamSynchronize(stream), "warm-up");
  double total_s = 0;
  for (auto _ : state) {
    check(cudaEventRecord(start, stream), "record");
    op(stream);
    check(cudaEventRecord(stop, stream), "record");
    check(cudaEventSynchronize(stop), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
    state.SetIterationTime(ms / 1e3);
    total_s += ms / 1e3;
  }
  const double per_call = total_s / static_cast<double>(state.iterations());
  const double gbs = bytes / per_call / 1e9;
  state.counters["GB/s"] = gbs;
  state.counters["peak_%"] = peak_gbs > 0 ? 100.0 * gbs / peak_gbs : 0.0;
  check(cudaEventDestroy(start), "event");
  check(cudaEventDestroy(stop), "event");
  check(cudaStreamDestroy(stream), "stream");
}

constexpr double table_bytes = rows * cols * sizeof(float);

// Traffic model: read x once; read and write the table once (it stays in L2).
void bm_accumulate(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  const auto& x = gradient(d);
  count_sketch<float, multiply_shift, cuda_t> sketch(cfg);
  timed(state, static_cast<double>(d) * sizeof(float) + 2 * table_bytes, [&](cudaStream_t s) {
    sketch.zero(s);
    sketch.accumulate(x.span(), 0, s);
  });
}

// Same model; the sort's extra traffic is the price of the order.
void bm_accumulate_ordered(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  const auto& x = gradient(d);
  count_sketch<float, multiply_shift, cuda_t> sketch(cfg);
  cuda_workspace ws;
  timed(state, static_cast<double>(d) * sizeof(float) + 2 * table_bytes, [&](cudaStream_t s) {
    sketch.zero(s);
    sketch.accumulate_ordered(x.span(), 0, ws, s);
  });
}

// Read the table once, write d estimates.
void bm_estimate_all(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  count_sketch<float, multiply_shift, cuda_t> sketch(cfg);
  sketch.accumulate(gradient(d).span());
  device_buffer<float> out(d);
  timed(state, static_cast<double>(d) * sizeof(float) + table_bytes,
        [&](cudaStream_t s) { sketch.estimate_all(out.span(), 0, s); });
}

// Read x once (the select reads it five times: three digit levels, count, scatter).
void bm_top_k(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  const auto& x = gradient(d);
  device_sparse_update<float> out(top);
  cuda_workspace ws;
  timed(state, static_cast<double>(d) * sizeof(float),
        [&](cudaStream_t s) { top_k_into(device_span<const float>(x.span()), top, out, ws, s); });
}

// Unsketch: estimate_all into scratch, then top-k of it.
void bm_unsketch(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  count_sketch<float, multiply_shift, cuda_t> sketch(cfg);
  sketch.accumulate(gradient(d).span());
  device_buffer<float> scratch(d);
  device_sparse_update<float> out(top);
  cuda_workspace ws;
  timed(state, 2.0 * static_cast<double>(d) * sizeof(float) + table_bytes,
        [&](cudaStream_t s) { top_k_into(sketch, d, top, scratch.span(), out, ws, s); });
}

// One global-sketch SGD step of one rank (W = 1: no peers, but the table
// still goes through pinned staging to the host and back). Traffic model:
// the momentum update (read g, u, v; write u, v), one read of v for the
// sketch, the unsketch's.
void bm_gs_sgd_step(benchmark::State& state) {
  const auto d = static_cast<std::size_t>(state.range(0));
  inproc_world world(1);
  auto t = world.transport(0);
  communicator<inproc_transport> comm(t);
  sketched_sgd_options<float> o;
  o.dimension = d;
  o.sketch = cfg;
  o.k = top;
  o.candidates_factor = 3;
  o.momentum = 0.9F;
  o.learning_rate = 0.01F;
  o.nonfinite = nonfinite_policy::unchecked;
  cuda_global_sketch_sgd<float, inproc_transport> opt(comm, o);
  const auto& g = gradient(d);
  timed(state, 9.0 * static_cast<double>(d) * sizeof(float) + 3 * table_bytes,
        [&](cudaStream_t s) { (void)opt.step(device_span<const float>(g.span()), s); });
}

void sizes(benchmark::internal::Benchmark* b) {
  b->Arg(10'000'000)->Arg(100'000'000)->UseManualTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(bm_accumulate)->Apply(sizes);
BENCHMARK(bm_accumulate_ordered)->Apply(sizes);
BENCHMARK(bm_estimate_all)->Apply(sizes);
BENCHMARK(bm_top_k)->Apply(sizes);
BENCHMARK(bm_unsketch)->Apply(sizes);
BENCHMARK(bm_gs_sgd_step)->Apply(sizes);

/// Peak DRAM bandwidth from the device attributes (DDR: two transfers per clock).
double queried_peak_gbs() {
  int device = 0;
  int clock_khz = 0;
  int bus_bits = 0;
  check(cudaGetDevice(&device), "device");
  check(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device), "memory clock");
  check(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device), "bus width");
  return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  // Our flag first; Google Benchmark rejects flags it does not know.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg.starts_with("--peak-gbs=")) {
      try {
        peak_gbs = cli::real("--peak-gbs", arg.substr(std::strlen("--peak-gbs=")), 0, 1e6, true);
      } catch (const cli::usage_error& e) {
        std::fprintf(stderr, "bench_cuda: %s\n", e.what());
        return cli::usage_exit_code;
      }
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::string_view(argv[i]).starts_with("--benchmark_list_tests");
  if (!listing) {
    try {
      if (peak_gbs <= 0) peak_gbs = queried_peak_gbs();
      cudaDeviceProp prop{};
      check(cudaGetDeviceProperties(&prop, 0), "properties");
      std::printf("device: %s, peak %.0f GB/s (override with --peak-gbs=N)\n", prop.name, peak_gbs);
    } catch (const cuda_error& e) {
      std::fprintf(stderr, "bench_cuda needs a GPU: %s\n", e.what());
      return 1;
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
