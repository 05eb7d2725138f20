// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Fork-join helper for the CPU kernels: run `f(worker, workers)` on
/// `workers` threads (the caller is worker 0) and rethrow the first exception.

#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace sketchsgd::detail {

/// Runs `f(w, n)` for every worker `w` in `[0, n)`; worker 0 runs on the
/// calling thread. Returns after all workers finished.
template <class F>
void fork_join(unsigned workers, F&& f) {
  if (workers <= 1) {
    f(0U, 1U);
    return;
  }
  std::exception_ptr first_error;
  std::mutex error_mutex;
  auto guarded = [&](unsigned w) {
    try {
      f(w, workers);
    } catch (...) {
      const std::lock_guard lock(error_mutex);
      if (!first_error) first_error = std::current_exception();
    }
  };
  {
    std::vector<std::jthread> pool;
    pool.reserve(workers - 1);
    for (unsigned w = 1; w < workers; ++w) pool.emplace_back(guarded, w);
    guarded(0);
  }  // jthreads join here
  if (first_error) std::rethrow_exception(first_error);
}

/// The half-open range `[begin, end)` of `n` items that worker `w` of
/// `workers` owns under a contiguous, balanced split.
struct index_range {
  std::size_t begin;
  std::size_t end;
};

[[nodiscard]] constexpr index_range split_range(std::size_t n, unsigned w, unsigned workers) noexcept {
  const std::size_t base = n / workers;
  const std::size_t extra = n % workers;
  const std::size_t begin = w * base + (w < extra ? w : extra);
  return {begin, begin + base + (w < extra ? 1 : 0)};
}

/// Number of workers worth starting for `work` items when each worker should
/// get at least `min_per_worker` of them.
[[nodiscard]] constexpr unsigned useful_workers(unsigned requested, std::size_t work,
                                                std::size_t min_per_worker) noexcept {
  const std::size_t cap = work / (min_per_worker == 0 ? 1 : min_per_worker);
  if (cap == 0) return 1;
  return cap < requested ? static_cast<unsigned>(cap) : requested;
}

}  // namespace sketchsgd::detail
