// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Device tags. The storage device is a class template parameter of
/// `count_sketch`; how a call executes (threads on the CPU, a stream on CUDA)
/// is a per-call argument.

#include <concepts>
#include <memory>

namespace sketchsgd {

/// Tag for host memory and CPU execution.
struct cpu_t {
  explicit cpu_t() = default;
};
/// Tag for CUDA device memory and execution (see `sketchsgd/cuda/`).
struct cuda_t {
  explicit cuda_t() = default;
};

/// The CPU device tag.
inline constexpr cpu_t cpu{};
/// The CUDA device tag.
inline constexpr cuda_t cuda{};

/// Per-device facts. Specialized for each device tag.
template <class Device>
struct device_traits;

/// Host memory, ordinary allocators, threads for parallelism.
template <>
struct device_traits<cpu_t> {
  /// Allocator used for host-side tables.
  template <class T>
  using allocator = std::allocator<T>;
  /// Whether the host may dereference the device's memory directly.
  static constexpr bool host_accessible = true;
};

/// CUDA device memory. The allocator and stream types are defined by the CUDA
/// headers, which only a CUDA compiler includes.
template <>
struct device_traits<cuda_t> {
  /// Whether the host may dereference the device's memory directly.
  static constexpr bool host_accessible = false;
};

/// A device tag: one of the types that have `device_traits`.
template <class Device>
concept device = std::same_as<Device, cpu_t> || std::same_as<Device, cuda_t>;

}  // namespace sketchsgd
