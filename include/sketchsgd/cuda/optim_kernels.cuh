// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Kernels of the device optimizers' per-coordinate state (momentum, error
/// feedback, masking, gathering, averaging, update rules, applying an
/// update, non-finite counts) and their dispatch. Internal: used by `sketchsgd/cuda/optim_ops.cuh`.
///
/// The arithmetic is the CPU code's, one IEEE operation at a time (`mul_rn`,
/// `add_rn`: never fused into an FMA), so a device step equals the CPU step
/// wherever the host compiler does not fuse either (x86-64 without -mfma,
/// or -ffp-contract=off).

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cub/block/block_reduce.cuh>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/cuda/arithmetic.cuh"
#include "sketchsgd/cuda/tuning.cuh"

namespace sketchsgd::detail::cuda_kernels {

/// u <- m u + g;  x = u (or g + m u: Nesterov);  v <- v + s x (error
/// feedback) or v <- s x: the CPU's `device_ops<cpu_t>::momentum_error`.
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    momentum_error(Value* u, Value* v, const Value* g, Value m, Value s, bool error_feedback, bool nesterov,
                   std::uint64_t n) {
  for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::uint64_t{gridDim.x} * blockDim.x) {
    const Value ui = add_rn(mul_rn(m, u[i]), g[i]);
    u[i] = ui;
    const Value x = mul_rn(s, nesterov ? add_rn(g[i], mul_rn(m, ui)) : ui);
    v[i] = error_feedback ? add_rn(v[i], x) : x;
  }
}

/// x[idx[j]] = 0 (masking, error reset).
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    zero_at(Value* x, const std::uint64_t* idx, std::uint64_t n) {
  for (std::uint64_t j = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; j < n;
       j += std::uint64_t{gridDim.x} * blockDim.x) {
    x[idx[j]] = Value{};
  }
}

/// x[i] /= w (averaging).
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::block_threads) divide(Value* x, Value w, std::uint64_t n) {
  for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::uint64_t{gridDim.x} * blockDim.x) {
    x[i] = div_rn(x[i], w);
  }
}

/// params[i] -= factor * decay * params[i] (decoupled weight decay), then
/// params[i] -= factor * values[i] when `values` is set (a dense update).
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    apply_dense(Value* params, const Value* values, Value factor, Value decay, std::uint64_t n) {
  const Value shrink = mul_rn(factor, decay);
  for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::uint64_t{gridDim.x} * blockDim.x) {
    Value p = params[i];
    if (decay != Value{}) p = sub_rn(p, mul_rn(shrink, p));
    if (values != nullptr) p = sub_rn(p, mul_rn(factor, values[i]));
    params[i] = p;
  }
}

/// x[i] = f(i, x[i]): a device update rule's pass over every coordinate.
template <class Value, class F>
__global__ void __launch_bounds__(cuda_tuning::block_threads) map_dense(Value* x, F f, std::uint64_t n) {
  for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::uint64_t{gridDim.x} * blockDim.x) {
    x[i] = f(i, x[i]);
  }
}

/// values[j] = f(idx[j], values[j]): the same over a sparse update's support.
template <class Value, class F>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    map_sparse(const std::uint64_t* idx, Value* values, F f, std::uint64_t n) {
  for (std::uint64_t j = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; j < n;
       j += std::uint64_t{gridDim.x} * blockDim.x) {
    values[j] = f(idx[j], values[j]);
  }
}

/// x[idx[j]] = values[j].
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    scatter(Value* x, const std::uint64_t* idx, const Value* values, std::uint64_t n) {
  for (std::uint64_t j = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; j < n;
       j += std::uint64_t{gridDim.x} * blockDim.x) {
    x[idx[j]] = values[j];
  }
}

/// out[j] = x[idx[j]].
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    gather(const Value* x, const std::uint64_t* idx, Value* out, std::uint64_t n) {
  for (std::uint64_t j = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; j < n;
       j += std::uint64_t{gridDim.x} * blockDim.x) {
    out[j] = x[idx[j]];
  }
}

/// params[idx[j]] -= factor * values[j] (indices distinct).
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    apply_sparse(Value* params, const std::uint64_t* idx, const Value* values, Value factor, std::uint64_t n) {
  for (std::uint64_t j = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; j < n;
       j += std::uint64_t{gridDim.x} * blockDim.x) {
    params[idx[j]] = sub_rn(params[idx[j]], mul_rn(factor, values[j]));
  }
}

/// Adds the number of NaN and Inf elements of `x` to `*count`.
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    count_nonfinite(const Value* x, std::uint64_t n, unsigned long long* count) {   // NOLINT(google-runtime-int)
  using reduce = cub::BlockReduce<unsigned long long, cuda_tuning::block_threads>;  // NOLINT(google-runtime-int)
  __shared__ typename reduce::TempStorage temp;
  unsigned long long bad = 0;  // NOLINT(google-runtime-int)
  for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::uint64_t{gridDim.x} * blockDim.x) {
    bad += isfinite(x[i]) ? 0U : 1U;
  }
  const unsigned long long total = reduce(temp).Sum(bad);  // NOLINT(google-runtime-int)
  if (threadIdx.x == 0 && total != 0) atomicAdd(count, total);
}

}  // namespace sketchsgd::detail::cuda_kernels

namespace sketchsgd::detail {

/// Launches of the optimizer-state kernels.
template <sketch_value Value>
struct cuda_optim_dispatch {
  static unsigned grid(std::uint64_t n) {
    return cuda_tuning::grid_for(n, std::uint64_t{cuda_tuning::block_threads} * cuda_tuning::elementwise_items);
  }

  static void momentum_error(Value* u, Value* v, const Value* g, Value m, Value s, bool ef, bool nesterov,
                             std::uint64_t n, cudaStream_t stream) {
    if (n == 0) return;
    cuda_kernels::momentum_error<Value>
        <<<grid(n), cuda_tuning::block_threads, 0, stream>>>(u, v, g, m, s, ef, nesterov, n);
    cuda_check_launch("cuda optimizer: momentum");
  }

  static void zero_at(Value* x, const std::uint64_t* idx, std::uint64_t n, cudaStream_t stream) {
    if (n == 0) return;
    cuda_kernels::zero_at<Value><<<grid(n), cuda_tuning::block_threads, 0, stream>>>(x, idx, n);
    cuda_check_launch("cuda optimizer: zero at indices");
  }

  static void divide(Value* x, Value w, std::uint64_t n, cudaStream_t stream) {
    if (n == 0) return;
    cuda_kernels::divide<Value><<<grid(n), cuda_tuning::block_threads, 0, stream>>>(x, w, n);
    cuda_check_launch("cuda optimizer: average");
  }

  static void apply_dense(Value* params, const Value* values, Value factor, Value decay, std::uint64_t n,
                          cudaStream_t stream) {
    if (n == 0) return;
    cuda_kernels::apply_dense<Value>
        <<<grid(n), cuda_tuning::block_threads, 0, stream>>>(params, values, factor, decay, n);
    cuda_check_launch("cuda optimizer: apply");
  }

  static void gather(const Value* x, const std::uint64_t* idx, Value* out, std::uint64_t n, cudaStream_t stream) {
    if (n == 0) return;
    cuda_kernels::gather<Value><<<grid(n), cuda_tuning::block_threads, 0, stream>>>(x, idx, out, n);
    cuda_check_launch("cuda optimizer: gather");
  }

  template <class F>
  static void map_dense(Value* x, const F& f, std::uint64_t n, cudaStream_t stream) {
    if (n == 0) return;
    cuda_kernels::map_dense<Value, F><<<grid(n), cuda_tuning::block_threads, 0, stream>>>(x, f, n);
    cuda_check_launch("cuda optimizer: update rule");
  }

  template <class F>
  static void map_sparse(const std::uint64_t* idx, Value* values, const F& f, std::uint64_t n, cudaStream_t stream) {
    if (n == 0) return;
    cuda_kernels::map_sparse<Value, F><<<grid(n), cuda_tuning::block_threads, 0, stream>>>(idx, values, f, n);
    cuda_check_launch("cuda optimizer: update rule");
  }

  static void scatter(Value* x, const std::uint64_t* idx, const Value* values, std::uint64_t n, cudaStream_t stream) {
    if (n == 0) return;
    cuda_kernels::scatter<Value><<<grid(n), cuda_tuning::block_threads, 0, stream>>>(x, idx, values, n);
    cuda_check_launch("cuda optimizer: update");
  }

  static void apply(Value* params, const std::uint64_t* idx, const Value* values, Value factor, std::uint64_t n,
                    cudaStream_t stream) {
    if (n == 0) return;
    cuda_kernels::apply_sparse<Value>
        <<<grid(n), cuda_tuning::block_threads, 0, stream>>>(params, idx, values, factor, n);
    cuda_check_launch("cuda optimizer: apply");
  }

  /// Adds the non-finite count of x to `*count` (nothing for integers).
  static void count_nonfinite(const Value* x, std::uint64_t n, unsigned long long* count,  // NOLINT(google-runtime-int)
                              cudaStream_t stream) {
    if constexpr (std::is_floating_point_v<Value>) {
      if (n == 0) return;
      cuda_kernels::count_nonfinite<Value><<<grid(n), cuda_tuning::block_threads, 0, stream>>>(x, n, count);
      cuda_check_launch("cuda optimizer: non-finite count");
    }
  }
};

}  // namespace sketchsgd::detail
