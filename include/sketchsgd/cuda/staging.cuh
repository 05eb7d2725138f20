// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Collectives over device data. Most transports (inproc, TCP, MPI without
/// CUDA support) read and write host memory only: their data goes through a
/// pinned host staging buffer. A transport whose native allreduce takes
/// device pointers (CUDA-aware MPI, NCCL behind a transport) opts in with
/// `transport_reads_device_memory` and is handed the device span directly.

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <type_traits>

#include "sketchsgd/collective/allreduce.hpp"
#include "sketchsgd/collective/communicator.hpp"
#include "sketchsgd/cuda/memory.cuh"
#include "sketchsgd/transport/concepts.hpp"

namespace sketchsgd {

/// Whether `Transport`'s native `allreduce(std::span<T>)` accepts spans of
/// device memory. False unless specialized: a specialization to true is a
/// promise that the transport's native allreduce handles device pointers
/// (the generic collectives never see them: `device_allreduce` forces the
/// native path).
/// @tparam Transport a `transport`.
template <class Transport>
struct transport_reads_device_memory : std::false_type {};

/// `transport_reads_device_memory<Transport>::value`.
template <class Transport>
inline constexpr bool transport_reads_device_memory_v = transport_reads_device_memory<Transport>::value;

/// Sum-allreduce of a device span over any transport; every rank ends with
/// bit-identical sums, equal to `allreduce` of the same values in host
/// memory (the same algorithm runs on the staged copy).
///
/// Host-memory transports: the data is copied into `staging` (grown to
/// `data.size()` if smaller), reduced there, and copied back. The stream is
/// waited for before the exchange (the data must be complete); the copy back
/// is enqueued on it, so with a stream `staging` must not be touched again
/// until the stream has passed this call. Device-memory transports: the
/// stream is waited for and the device span goes to the native allreduce.
///
/// @tparam Transport a `transport`.
/// @throws transport_error / timeout_error from the transport; cuda_error.
template <transport Transport, reducible T>
void device_allreduce(communicator<Transport>& comm, device_span<T> data, pinned_buffer<T>& staging,
                      stream_arg stream = {}) {
  const detail::stream_scope s(stream);
  if constexpr (transport_reads_device_memory_v<Transport>) {
    static_assert(
        requires(Transport & t, std::span<T> x) { t.allreduce(x); },
        "transport_reads_device_memory needs a native allreduce: the generic algorithms reduce on the host");
    s.wait("device_allreduce");
    allreduce_options native = comm.allreduce_defaults();
    native.algorithm = allreduce_algorithm::automatic;
    allreduce(comm, std::span<T>(data.data(), data.size()), native);
  } else {
    if (staging.size() < data.size()) staging = pinned_buffer<T>(data.size());
    const std::span<T> host = staging.span().first(data.size());
    detail::cuda_check(cudaMemcpyAsync(host.data(), data.data(), data.size_bytes(), cudaMemcpyDeviceToHost, s.get()),
                       "device_allreduce: copy to host");
    s.wait("device_allreduce: copy to host");
    allreduce(comm, host);
    detail::cuda_check(cudaMemcpyAsync(data.data(), host.data(), data.size_bytes(), cudaMemcpyHostToDevice, s.get()),
                       "device_allreduce: copy to device");
    s.finish("device_allreduce");
  }
}

}  // namespace sketchsgd
