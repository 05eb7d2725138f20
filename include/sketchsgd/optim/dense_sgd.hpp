// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The dense baseline under its stable name: `dense_aggregation` with
/// `momentum_update`.

#include <cstdint>
#include <utility>

#include "sketchsgd/optim/aggregate/dense.hpp"
#include "sketchsgd/optim/named.hpp"
#include "sketchsgd/optim/state/version1.hpp"
#include "sketchsgd/optim/update/rules.hpp"

namespace sketchsgd {

/// Settings of `dense_sgd`.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct dense_sgd_options {
  /// Number of parameters d.
  std::uint64_t dimension = 0;
  /// Learning rate eta.
  Value learning_rate = Value{1};
  /// Momentum m.
  Value momentum = Value{0};
  /// Divide the summed gradient by W (floating-point values only).
  bool average = false;
  /// What a NaN or Inf in any rank's gradient does.
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;
  /// How the sum travels: `bfloat16` or `float16` (float only) halve the
  /// bytes, summed in float32 and rounded at every hop.
  wire_format wire = wire_format::native;
};

namespace detail {

/// Dense SGD as a `named_optimizer`.
template <class Value, class Device>
struct dense_sgd_traits {
  using options_type = dense_sgd_options<Value>;
  using aggregation = dense_aggregation<Value, Device>;
  using update_rule = momentum_update<Value>;
  static constexpr optimizer_kind kind = optimizer_kind::dense_sgd;
  static constexpr const char* name = "dense_sgd";

  static composed_options<aggregation, update_rule> compose(const options_type& o,
                                                            typename device_ops<Device>::execution exec) {
    return named_options<aggregation, update_rule>(o, {.wire = o.wire}, {.momentum = o.momentum}, exec);
  }
  static std::uint64_t fingerprint(const options_type& o, const coordinate_split& /*split*/, int world) {
    return version1::dense_sgd<Value>(o, world);
  }
};

}  // namespace detail

/// Dense distributed SGD: G = sum of the gradients (allreduce, / W when
/// averaging), u <- m u + G, update = eta u on every coordinate. Bytes per
/// rank per step: a ring allreduce of d values, 2 (W-1)/W d sizeof(Value)
/// (2 bytes a value with a 16-bit `wire`).
/// `dense_aggregation` with `momentum_update` under a stable name (version-1
/// fingerprint and checkpoints).
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam Device a `device` tag.
template <sketch_value Value, transport Transport, device Device = cpu_t>
using dense_sgd = detail::named_optimizer<detail::dense_sgd_traits<Value, Device>, Transport>;

}  // namespace sketchsgd
