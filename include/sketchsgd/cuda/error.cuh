// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// CUDA errors as sketchsgd exceptions, and the per-call stream argument.
///
/// Every CUDA runtime call of the library is checked at the host boundary;
/// a failure becomes a `cuda_error` (a `sketchsgd::error`). Kernel faults are
/// asynchronous: they surface at the next synchronizing call, which may be a
/// later library call or the caller's own `cudaStreamSynchronize`.

#if __cplusplus < 202002L
#error \
    "sketchsgd's CUDA headers need C++20: compile with -std=c++20 (CMake: set_target_properties(t PROPERTIES CUDA_STANDARD 20))"
#endif

#include <cuda_runtime.h>

#include <optional>
#include <string>

#include "sketchsgd/error.hpp"

namespace sketchsgd {

/// Where a CUDA operation runs. No stream (the default): the operation runs on
/// the default stream and its results are ready when it returns. A stream
/// (the legacy default stream `nullptr` included): the work is only enqueued,
/// and results are ready once the stream reaches that point; the caller must
/// keep every span it passed alive until then. Operations that return host
/// values (an l2 estimate, a host `sparse_update`) always wait for their own
/// work on the stream.
using stream_arg = std::optional<cudaStream_t>;

namespace detail {

/// `cuda_error`'s message (error.hpp): the operation, then the CUDA error's
/// name and text.
template <>
inline std::string cuda_error_message<cudaError_t>(cudaError_t code, const std::string& what) {
  return what + ": " + cudaGetErrorName(code) + " (" + cudaGetErrorString(code) + ")";
}

/// Throws `cuda_error` unless `code` is `cudaSuccess`.
inline void cuda_check(cudaError_t code, const char* what) {
  if (code != cudaSuccess) throw cuda_error(code, what);
}

/// Checks the launch of the kernel just started (configuration errors are
/// reported at once; faults inside the kernel only at the next sync).
inline void cuda_check_launch(const char* what) { cuda_check(cudaGetLastError(), what); }

/// The stream an operation runs on, and whether it must wait before
/// returning (no stream given).
class stream_scope {
 public:
  explicit stream_scope(stream_arg s) noexcept : stream_(s.value_or(nullptr)), wait_(!s.has_value()) {}

  [[nodiscard]] cudaStream_t get() const noexcept { return stream_; }

  /// Waits for the stream when the caller gave none.
  void finish(const char* what) const {
    if (wait_) cuda_check(cudaStreamSynchronize(stream_), what);
  }

  /// Waits for the stream unconditionally (the result goes to the host).
  void wait(const char* what) const { cuda_check(cudaStreamSynchronize(stream_), what); }

 private:
  cudaStream_t stream_;
  bool wait_;
};

}  // namespace detail
}  // namespace sketchsgd
