// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Top-k by magnitude over device data: over a dense device span, and
/// unsketch from a device Count Sketch. Same semantics as the CPU `top_k`:
/// exact, ties to the lower index, NaN never selected, indices increasing.
///
/// Method: a radix select (histograms of 11-bit digits of |x|, the CPU's
/// magnitude keys) and an order-preserving tile compaction; see
/// `topk_kernels.cuh`. A full CUB radix sort of (|x|, index) pairs would
/// give the same set but moves every key through memory about eight times
/// (four 8-bit passes, each reading and writing keys and indices); the select
/// reads x five times for 32-bit values (three histogram passes, a count and
/// a scatter) and writes only the k results.

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/cuda/count_sketch.cuh"
#include "sketchsgd/cuda/memory.cuh"
#include "sketchsgd/cuda/topk_kernels.cuh"
#include "sketchsgd/sketch/sparse_update.hpp"

namespace sketchsgd {

/// A sparse vector in device memory whose length is also on the device:
/// what an asynchronous selection writes without a host round trip.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
class device_sparse_update {
 public:
  /// Room for `capacity` entries.
  /// @throws cuda_error if allocation fails.
  explicit device_sparse_update(std::size_t capacity) : indices_(capacity), values_(capacity), count_(1) {
    const detail::stream_scope s{stream_arg{}};
    detail::cuda_check(cudaMemsetAsync(count_.data(), 0, sizeof(std::uint64_t), s.get()),
                       "device_sparse_update: count");
    s.finish("device_sparse_update: count");
  }

  /// Maximum number of entries.
  [[nodiscard]] std::size_t capacity() const noexcept { return indices_.size(); }
  /// Indices (strictly increasing in the first `size()` slots).
  [[nodiscard]] device_span<std::uint64_t> indices() const noexcept { return indices_.span(); }
  /// Values of the first `size()` slots.
  [[nodiscard]] device_span<Value> values() const noexcept { return values_.span(); }
  /// Where the number of entries lives (device memory, one value).
  [[nodiscard]] std::uint64_t* count_data() const noexcept { return count_.data(); }

  /// The number of entries (waits for the stream).
  /// @throws cuda_error.
  [[nodiscard]] std::size_t size(stream_arg stream = {}) const {
    const detail::stream_scope s(stream);
    std::uint64_t n = 0;
    detail::cuda_check(cudaMemcpyAsync(&n, count_.data(), sizeof(n), cudaMemcpyDeviceToHost, s.get()),
                       "device_sparse_update::size");
    s.wait("device_sparse_update::size");
    return static_cast<std::size_t>(n);
  }

  /// A host copy (waits for the stream).
  /// @throws cuda_error.
  [[nodiscard]] sparse_update<Value> to_host(stream_arg stream = {}) const {
    const std::size_t n = size(stream);
    const detail::stream_scope s(stream);
    sparse_update<Value> out;
    out.indices.resize(n);
    out.values.resize(n);
    if (n != 0) {
      detail::cuda_check(cudaMemcpyAsync(out.indices.data(), indices_.data(), n * sizeof(std::uint64_t),
                                         cudaMemcpyDeviceToHost, s.get()),
                         "device_sparse_update::to_host");
      detail::cuda_check(
          cudaMemcpyAsync(out.values.data(), values_.data(), n * sizeof(Value), cudaMemcpyDeviceToHost, s.get()),
          "device_sparse_update::to_host");
    }
    s.wait("device_sparse_update::to_host");
    return out;
  }

 private:
  device_buffer<std::uint64_t> indices_;
  device_buffer<Value> values_;
  device_buffer<std::uint64_t> count_;
};

/// Workspace bytes a device top-k over `n` elements needs (about
/// 24 n / 4096 bytes plus 16 KiB).
template <sketch_value Value>
[[nodiscard]] std::size_t top_k_workspace_bytes(std::uint64_t n) {
  return detail::cuda_select_dispatch<Value>::workspace_bytes(n);
}

/// The `k` elements of the device vector `x` with the largest |value|,
/// written to `out` (device memory, increasing index order) with their
/// number, min(k, non-NaN elements), in `out`'s device-side count.
/// Asynchronous with a stream. Deterministic: the same set as the CPU
/// `top_k` on the same data.
///
/// O(x.size()) work in a fixed sequence of launches with no host
/// synchronization.
/// @throws std::invalid_argument if `out.capacity() < min(k, x.size())`; cuda_error.
template <sketch_value Value>
void top_k_into(device_span<const Value> x, std::size_t k, device_sparse_update<Value>& out, cuda_workspace& ws,
                stream_arg stream = {}) {
  const std::size_t want = k < x.size() ? k : x.size();
  if (out.capacity() < want) {
    throw std::invalid_argument("top_k<cuda>: the output holds " + std::to_string(out.capacity()) +
                                " entries, the selection may return " + std::to_string(want));
  }
  const detail::stream_scope s(stream);
  std::byte* const w = ws.reserve(top_k_workspace_bytes<Value>(x.size()));
  detail::cuda_select_dispatch<Value>::select(x.data(), x.size(), want, out.indices().data(), out.values().data(),
                                              out.count_data(), w, s.get());
  s.finish("top_k<cuda>");
}

/// `top_k_into`, returning a host `sparse_update` (waits for the stream).
/// @throws cuda_error.
template <sketch_value Value>
[[nodiscard]] sparse_update<Value> top_k(device_span<const Value> x, std::size_t k, cuda_workspace& ws,
                                         stream_arg stream = {}) {
  device_sparse_update<Value> out(k < x.size() ? k : x.size());
  top_k_into(x, k, out, ws, stream);
  return out.to_host(stream);
}

/// Unsketch on the device: estimates every coordinate in `[0, d)` into
/// `scratch` (d device values) and selects the `k` with the largest
/// |estimate| into `out` (values = the estimates). Identical sketches give
/// identical results on every rank, GPU or CPU.
/// @throws std::invalid_argument if `scratch.size() != d` or `out` is too
/// small; cuda_error.
template <sketch_value Value, hash_family HashFamily>
void top_k_into(const count_sketch<Value, HashFamily, cuda_t>& sketch, std::uint64_t d, std::size_t k,
                device_span<Value> scratch, device_sparse_update<Value>& out, cuda_workspace& ws,
                stream_arg stream = {}) {
  if (scratch.size() != d) {
    throw std::invalid_argument("top_k<cuda>: scratch must hold d = " + std::to_string(d) + " values, got " +
                                std::to_string(scratch.size()));
  }
  const detail::stream_scope s(stream);
  sketch.estimate_all(scratch, 0, s.get());
  top_k_into(device_span<const Value>(scratch), k, out, ws, s.get());
  s.finish("top_k<cuda>: unsketch");
}

/// Unsketch returning a host `sparse_update` (waits for the stream).
/// @throws std::invalid_argument if `scratch.size() != d`; cuda_error.
template <sketch_value Value, hash_family HashFamily>
[[nodiscard]] sparse_update<Value> top_k(const count_sketch<Value, HashFamily, cuda_t>& sketch, std::uint64_t d,
                                         std::size_t k, device_span<Value> scratch, cuda_workspace& ws,
                                         stream_arg stream = {}) {
  device_sparse_update<Value> out(k < d ? k : static_cast<std::size_t>(d));
  top_k_into(sketch, d, k, scratch, out, ws, stream);
  return out.to_host(stream);
}

/// Unsketch with buffers of its own (d estimates and the workspace, allocated
/// each call; pass them in a training loop).
/// @throws cuda_error.
template <sketch_value Value, hash_family HashFamily>
[[nodiscard]] sparse_update<Value> top_k(const count_sketch<Value, HashFamily, cuda_t>& sketch, std::uint64_t d,
                                         std::size_t k, stream_arg stream = {}) {
  device_buffer<Value> scratch(static_cast<std::size_t>(d));
  cuda_workspace ws;
  return top_k(sketch, d, k, scratch.span(), ws, stream);
}

}  // namespace sketchsgd
