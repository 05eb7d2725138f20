// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// `device_ops<cuda_t>`: the optimizer policies' operations on the GPU, so
/// every aggregation policy runs there unchanged (`sketched_sgd<Value,
/// Transport, HashFamily, cuda_t>`, `fetch_sgd<..., cuda_t>`, the top-k
/// baselines, `composed_optimizer` over `..._aggregation<..., cuda_t>`).
///
/// The gradient, the error memory, the sketches and the d estimates stay on
/// the device, as do a device update rule's state and dense update
/// (`map_update`); what a collective or a host update rule needs (a sketch
/// table, P k candidate values, an update) crosses to the host through
/// pinned buffers.
/// With `cuda_accumulation::ordered` (or integer values) a step's update is
/// bit-identical to the CPU optimizer's, provided the CPU build does not fuse
/// multiply-adds (x86-64 without -mfma, or -ffp-contract=off): the kernels
/// round every operation on its own.

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "sketchsgd/cuda/count_sketch.cuh"
#include "sketchsgd/cuda/memory.cuh"
#include "sketchsgd/cuda/optim_kernels.cuh"
#include "sketchsgd/cuda/topk.cuh"
#include "sketchsgd/optim/model_update.hpp"
#include "sketchsgd/optim/step/device_ops.hpp"

namespace sketchsgd {

/// How a device optimizer adds v into its sketch.
enum class cuda_accumulation {
  atomic,   ///< `count_sketch<cuda>::accumulate`: fastest; float tables vary in the last bits run to run
  ordered,  ///< `accumulate_ordered`: every cell summed in coordinate order, bit-identical to the CPU optimizer
};

/// How a device optimizer runs: its stream (none: the default stream, each
/// step complete on return), its sketch accumulation, and the threads of its
/// host-side work.
struct cuda_execution {
  stream_arg stream{};
  cuda_accumulation accumulation = cuda_accumulation::atomic;
  cpu_execution host{};
};

namespace detail {

/// See the file comment.
template <>
struct device_ops<cuda_t> {
  template <class T>
  using buffer = device_buffer<T>;
  template <class T>
  using span = device_span<T>;
  /// A gradient as the caller holds it: values of V on the device.
  template <class V>
  using gradient = device_span<const V>;
  using execution = cuda_execution;

  /// The stream, workspace and staging buffers of one optimizer.
  struct context {
    explicit context(const cuda_execution& e) : exec(e.host), cuda(e) {}
    cpu_execution exec;  ///< host-side work (the final selection, recovery on the host)
    cuda_execution cuda;
    cuda_workspace ws;
    pinned_buffer<std::byte> staging;  ///< host side of rounds
    device_buffer<std::byte> scratch;  ///< uploaded indices and values
    device_buffer<std::byte> update;   ///< a device rule's dense update
    std::size_t update_count = 0;      ///< its values (of the last step's value type)

    [[nodiscard]] cudaStream_t stream() const noexcept { return cuda.stream.value_or(nullptr); }
    void wait(const char* what) const { cuda_check(cudaStreamSynchronize(stream()), what); }
    /// Copies `n` bytes between host and device (or device and device) on the stream.
    void copy(void* to, const void* from, std::size_t n, cudaMemcpyKind kind, const char* what) const {
      if (n != 0) cuda_check(cudaMemcpyAsync(to, from, n, kind, stream()), what);
    }
    /// At least `bytes` of device scratch; what it held is gone.
    std::byte* scratch_for(std::size_t bytes) {
      if (bytes > scratch.size()) {
        wait("cuda optimizer: scratch");  // the stream may still read the old buffer
        scratch = device_buffer<std::byte>(std::max(bytes, 2 * scratch.size()));
      }
      return scratch.data();
    }
    /// Copies `host` to device memory at `to` (on the stream); the copy's first element.
    template <class T>
    T* put(std::span<const T> host, std::byte* to) const {
      copy(to, host.data(), host.size_bytes(), cudaMemcpyHostToDevice, "cuda optimizer: upload");
      return reinterpret_cast<T*>(to);
    }
    /// Host indices in device scratch.
    const std::uint64_t* upload(std::span<const std::uint64_t> indices) {
      return put(indices, scratch_for(indices.size_bytes()));
    }
  };

  /// The calls that follow run as `e` says: its stream (a step's own, as
  /// CUB takes one per call), its accumulation and host threads. Work already
  /// enqueued on the stream before stays there: the caller orders the two.
  static void run_as(context& c, const cuda_execution& e) noexcept {
    c.exec = e.host;
    c.cuda = e;
  }
  /// n zeros (an update rule's state: made before any context, on the default stream).
  template <class T>
  static buffer<T> zeros(std::size_t n) {
    buffer<T> b(n);
    cuda_check(cudaMemset(b.data(), 0, n * sizeof(T)), "cuda optimizer: state");
    cuda_check(cudaDeviceSynchronize(), "cuda optimizer: state");
    return b;
  }
  template <class T>
  static buffer<T> zeros(std::size_t n, context& c) {
    buffer<T> b(n);
    cuda_check(cudaMemsetAsync(b.data(), 0, n * sizeof(T), c.stream()), "cuda optimizer: state");
    c.wait("cuda optimizer: state");
    return b;
  }

  template <class V>
  static void momentum_error(span<V> u, span<V> v, span<const V> g, V m, V s, bool feedback, bool nesterov,
                             context& c) {
    cuda_optim_dispatch<V>::momentum_error(u.data(), v.data(), g.data(), m, s, feedback, nesterov, g.size(),
                                           c.stream());
  }
  template <class V>
  static void zero_at(span<V> x, std::span<const std::uint64_t> indices, context& c) {
    cuda_optim_dispatch<V>::zero_at(x.data(), c.upload(indices), indices.size(), c.stream());
  }
  template <class V>
  static void zero_ranges(span<V> x, const coordinate_split& split, context& c) {
    for (const dense_range& r : split.dense()) {
      cuda_check(cudaMemsetAsync(x.data() + r.offset, 0, r.length * sizeof(V), c.stream()), "cuda optimizer: reset");
    }
  }
  template <class V>
  static std::vector<V> gather(span<const V> x, std::span<const std::uint64_t> indices, context& c) {
    std::vector<V> out(indices.size());
    const std::size_t at = workspace_round(indices.size_bytes());
    std::byte* base = c.scratch_for(at + out.size() * sizeof(V));
    auto* values = reinterpret_cast<V*>(base + at);
    cuda_optim_dispatch<V>::gather(x.data(), c.put(indices, base), values, indices.size(), c.stream());
    c.copy(out.data(), values, out.size() * sizeof(V), cudaMemcpyDeviceToHost, "cuda optimizer: gather");
    c.wait("cuda optimizer: gather");
    return out;
  }
  template <class V>
  static void gather_dense(span<const V> x, const coordinate_split& split, std::span<V> out, context& c) {
    std::size_t at = 0;
    for (const dense_range& r : split.dense()) {
      c.copy(out.data() + at, x.data() + r.offset, r.length * sizeof(V), cudaMemcpyDeviceToHost,
             "cuda optimizer: dense");
      at += static_cast<std::size_t>(r.length);
    }
    c.wait("cuda optimizer: dense");
  }
  template <class V>
  static void compact(span<const V> x, const coordinate_split& split, span<V> out, context& c) {
    for (const auto& seg : split.segments()) {
      c.copy(out.data() + seg.compact, x.data() + seg.global, seg.length * sizeof(V), cudaMemcpyDeviceToDevice,
             "cuda optimizer: compact");
    }
  }
  template <class V>
  static void to_host(span<const V> x, std::span<V> out, context& c) {
    c.copy(out.data(), x.data(), x.size_bytes(), cudaMemcpyDeviceToHost, "cuda optimizer: to host");
    c.wait("cuda optimizer: to host");
  }
  template <class V>
  static void assign(span<const V> x, std::vector<V>& out, context& c) {
    out.resize(x.size());
    to_host(x, std::span<V>(out), c);
  }
  template <class V>
  static std::vector<V> download(span<V> x, context& c) {
    std::vector<V> out(x.size());
    to_host(span<const V>(x), std::span<V>(out), c);
    return out;
  }
  template <class V>
  static void upload(std::span<const V> from, span<V> to, context& c) {
    c.copy(to.data(), from.data(), from.size_bytes(), cudaMemcpyHostToDevice, "cuda optimizer: load");
    c.wait("cuda optimizer: load");
  }
  /// Host state (an update rule's, FetchSGD's dense momentum): no copy.
  template <class V>
  static void upload(std::span<const V> from, std::span<V> to, context& /*c*/) {
    std::copy(from.begin(), from.end(), to.begin());
  }
  template <class V>
  static std::span<V> download(std::span<V> x, context& /*c*/) noexcept {
    return x;
  }
  /// Pinned host memory holding x for a round; `unstage` copies it back.
  template <class V>
  static std::span<V> stage(span<V> x, context& c) {
    if (c.staging.size() < x.size_bytes()) c.staging = pinned_buffer<std::byte>(x.size_bytes());
    const std::span<V> host(reinterpret_cast<V*>(c.staging.data()), x.size());
    to_host(span<const V>(x), host, c);
    return host;
  }
  template <class V>
  static void unstage(std::span<V> host, span<V> x, context& c) {
    upload(std::span<const V>(host), x, c);
  }

  template <class V>
  static std::int64_t count_nonfinite(span<const V> x, context& c) {
    auto* count = reinterpret_cast<unsigned long long*>(c.ws.reserve(sizeof(unsigned long long)));  // NOLINT
    cuda_check(cudaMemsetAsync(count, 0, sizeof(*count), c.stream()), "cuda optimizer: non-finite count");
    cuda_optim_dispatch<V>::count_nonfinite(x.data(), x.size(), count, c.stream());
    unsigned long long host = 0;  // NOLINT(google-runtime-int)
    c.copy(&host, count, sizeof(host), cudaMemcpyDeviceToHost, "cuda optimizer: non-finite count");
    c.wait("cuda optimizer: non-finite count");
    return static_cast<std::int64_t>(host);
  }
  template <class V>
  static void divide(span<V> x, V w, context& c) {
    cuda_optim_dispatch<V>::divide(x.data(), w, x.size(), c.stream());
  }

  template <class Sketch, class V>
  static void sketch(Sketch& s, span<const V> x, const coordinate_split& split, std::size_t /*first*/,
                     std::size_t /*count: all rows, overlap is refused on devices*/, context& c) {
    for (const auto& seg : split.segments()) {
      const auto part = x.subspan(static_cast<std::size_t>(seg.global), static_cast<std::size_t>(seg.length));
      if (c.cuda.accumulation == cuda_accumulation::ordered) {
        s.accumulate_ordered(part, seg.compact, c.ws, c.stream());
      } else {
        s.accumulate(part, seg.compact, c.stream());
      }
    }
  }
  template <class Sketch>
  static void zero(Sketch& s, context& c) {
    s.zero(c.stream());
  }
  template <class Sketch, class V>
  static sparse_update<V> top_k(const Sketch& s, std::uint64_t d, std::size_t count, span<V> scratch, context& c) {
    return sketchsgd::top_k(s, d, count, scratch, c.ws, c.stream());
  }
  template <class V>
  static sparse_update<V> top_k(span<const V> x, std::size_t count, context& c) {
    return sketchsgd::top_k(x, count, c.ws, c.stream());
  }
  /// The sketch's estimate of ||x||_2, the CPU's bits (`l2_estimate_in_order`).
  template <class Sketch>
  static double l2_estimate(const Sketch& s, context& c) {
    return s.l2_estimate_in_order(c.ws, c.stream());
  }
  /// The sketch's estimates at host `keys` (through device scratch), into host `out`.
  template <class Sketch, class V>
  static void estimate(const Sketch& s, std::span<const std::uint64_t> keys, std::span<V> out, context& c) {
    if (keys.empty()) return;
    const std::size_t at = workspace_round(keys.size_bytes());
    std::byte* base = c.scratch_for(at + out.size_bytes());
    auto* values = reinterpret_cast<V*>(base + at);
    s.estimate(device_span<const std::uint64_t>(c.put(keys, base), keys.size()), device_span<V>(values, out.size()),
               c.stream());
    c.copy(out.data(), values, out.size_bytes(), cudaMemcpyDeviceToHost, "cuda optimizer: estimates");
    c.wait("cuda optimizer: estimates");
  }
  template <class Sketch>
  static void zero_buckets_of(Sketch& s, std::span<const std::uint64_t> indices, context& c) {
    s.zero_buckets_of(device_span<const std::uint64_t>(c.upload(indices), indices.size()), c.stream());
  }
  template <class Sketch, class V>
  static void add_sparse(Sketch& s, std::span<const std::uint64_t> indices, std::span<const V> values, context& c) {
    const std::size_t at = workspace_round(indices.size_bytes());
    std::byte* base = c.scratch_for(at + values.size_bytes());
    const device_span<const std::uint64_t> idx(c.put(indices, base), indices.size());
    const device_span<const V> val(c.put(values, base + at), values.size());
    if (c.cuda.accumulation == cuda_accumulation::ordered) {
      s.accumulate_ordered(idx, val, c.ws, c.stream());
    } else {
      s.accumulate(idx, val, c.stream());
    }
  }

  /// The end of a step: without a stream, its device work is complete.
  static void finish(context& c) {
    if (!c.cuda.stream) c.wait("cuda optimizer: step");
  }

  /// An update rule's pass (see `device_ops<cpu_t>::map_update`) on the
  /// device, f at each coordinate: a sparse update's values come back to
  /// the host; a dense one (`dense`) stays in the context's `update` buffer,
  /// `u` then dense with no values.
  template <class V, class F>
  static void map_update(model_update<V>& u, std::uint64_t d, bool dense, const F& f, context& c) {
    u.check_fits(static_cast<std::size_t>(d), "update rule");  // f indexes d-sized state
    const std::span<const std::uint64_t> indices(u.indices);
    const std::span<const V> values(u.values);
    if (dense) {
      if (c.update.size() < d * sizeof(V)) {
        c.wait("cuda optimizer: update");  // the stream may still read the old buffer
        c.update = device_buffer<std::byte>(static_cast<std::size_t>(d) * sizeof(V));
      }
      c.update_count = static_cast<std::size_t>(d);
    }
    auto* out = reinterpret_cast<V*>(c.update.data());
    if (dense && u.dense) {
      c.copy(out, values.data(), values.size_bytes(), cudaMemcpyHostToDevice, "cuda optimizer: update");
    } else {
      const std::size_t at = workspace_round(indices.size_bytes());
      std::byte* base = c.scratch_for(at + values.size_bytes());
      const std::uint64_t* idx = c.put(indices, base);
      V* staged = c.put(values, base + at);
      if (!dense) {  // a dense u has no indices: its j is the coordinate
        if (u.dense) {
          cuda_optim_dispatch<V>::map_dense(staged, f, values.size(), c.stream());
        } else {
          cuda_optim_dispatch<V>::map_sparse(idx, staged, f, values.size(), c.stream());
        }
        c.copy(u.values.data(), staged, values.size_bytes(), cudaMemcpyDeviceToHost, "cuda optimizer: update");
        c.wait("cuda optimizer: update");
        return;
      }
      cuda_check(cudaMemsetAsync(out, 0, d * sizeof(V), c.stream()), "cuda optimizer: update");
      cuda_optim_dispatch<V>::scatter(out, idx, staged, values.size(), c.stream());
    }
    cuda_optim_dispatch<V>::map_dense(out, f, d, c.stream());
    u.indices.clear();
    u.values.clear();
    u.dense = true;
  }
  /// The dense update `map_update` left on the device, when `u` is that
  /// update (dense, its values not on the host); else empty.
  template <class V>
  static span<const V> dense_update(const model_update<V>& u, const context& c) noexcept {
    if (!u.dense || !u.values.empty()) return {};
    return {reinterpret_cast<const V*>(c.update.data()), c.update_count};
  }

  /// `params -= factor * u` (decay first) for parameters in device memory;
  /// a dense `u` without values is the one a device rule left there.
  template <class V>
  static void apply(const model_update<V>& u, span<V> params, V factor, context& c) {
    const span<const V> on_device = dense_update(u, c);
    const std::size_t dense_size = on_device.empty() ? u.values.size() : on_device.size();
    if (u.dense && dense_size != params.size()) {
      throw std::invalid_argument("apply: dense update of " + std::to_string(dense_size) + " values for " +
                                  std::to_string(params.size()) + " parameters");
    }
    if (!u.dense && !u.indices.empty() && u.indices.back() >= params.size()) {
      throw std::invalid_argument("apply: index " + std::to_string(u.indices.back()) + " outside " +
                                  std::to_string(params.size()) + " parameters");
    }
    const std::span<const std::uint64_t> indices(u.indices);
    const std::span<const V> values(u.values);
    const std::size_t at = workspace_round(indices.size_bytes());
    std::byte* base = c.scratch_for(at + values.size_bytes());
    const V* device_values = on_device.empty() ? c.put(values, base + at) : on_device.data();
    if (u.dense || u.decay != V{}) {
      cuda_optim_dispatch<V>::apply_dense(params.data(), u.dense ? device_values : nullptr, factor, u.decay,
                                          params.size(), c.stream());
    }
    if (!u.dense) {
      cuda_optim_dispatch<V>::apply(params.data(), c.put(indices, base), device_values, factor, indices.size(),
                                    c.stream());
    }
    if (!c.cuda.stream) c.wait("cuda optimizer: apply");
  }
};

}  // namespace detail
}  // namespace sketchsgd
