// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The spellings of the device optimizers before the policy layer:
/// `cuda_sketched_sgd` and `cuda_global_sketch_sgd` are `sketched_sgd` and
/// `global_sketch_sgd` with `Device = cuda_t` (see sketchsgd/cuda/optim_ops.cuh),
/// plus their per-call stream arguments. Prefer the `cuda_t` spelling.

#include "sketchsgd/cuda/optim_ops.cuh"  // first: the standard check (see there)

#include <utility>

#include "sketchsgd/optim/global_sketch_sgd.hpp"

namespace sketchsgd {

namespace detail {

/// A named device optimizer with the old per-call streams.
template <class Optimizer>
class cuda_named : public Optimizer {
  using Value = typename Optimizer::value_type;

 public:
  using typename Optimizer::options_type;
  cuda_named(communicator<typename Optimizer::transport_type>& comm, options_type o,
             cuda_accumulation accumulation = cuda_accumulation::atomic)
      : Optimizer(comm, std::move(o), cuda_execution{.accumulation = accumulation}) {}

  /// One step on `stream` (none: complete on return).
  const model_update<Value>& step(device_span<const Value> gradient, stream_arg stream = {}) {
    this->device_context().cuda.stream = stream;
    return Optimizer::step(gradient);
  }
  /// The last update applied to device parameters on `stream`.
  void apply(device_span<Value> params, Value factor = Value{1}, stream_arg stream = {}) {
    this->device_context().cuda.stream = stream;
    Optimizer::apply(params, factor);
  }
  /// How v is added into the sketch.
  [[nodiscard]] cuda_accumulation accumulation() noexcept { return this->device_context().cuda.accumulation; }
  /// Momentum u (d device values).
  [[nodiscard]] device_span<const Value> momentum() const noexcept { return this->aggregation().memory().u(); }
  /// Error accumulator v (d device values).
  [[nodiscard]] device_span<const Value> error() const noexcept { return this->aggregation().memory().v(); }
};

}  // namespace detail

/// `sketched_sgd<Value, Transport, HashFamily, cuda_t>` under its old name.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam HashFamily a `hash_family`.
template <sketch_value Value, transport Transport, hash_family HashFamily = multiply_shift>
using cuda_sketched_sgd = detail::cuda_named<sketched_sgd<Value, Transport, HashFamily, cuda_t>>;

/// `global_sketch_sgd<Value, Transport, HashFamily, cuda_t>` under its old name.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam HashFamily a `hash_family`.
template <sketch_value Value, transport Transport, hash_family HashFamily = multiply_shift>
using cuda_global_sketch_sgd = detail::cuda_named<global_sketch_sgd<Value, Transport, HashFamily, cuda_t>>;

}  // namespace sketchsgd
