// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Sketched-SGD (Ivkin, Rothchild, Ullah, Braverman, Stoica, Arora,
/// "Communication-efficient Distributed SGD with Sketching", NeurIPS 2019)
/// under its stable name: `sketched_aggregation` with `sgd_update`.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "sketchsgd/optim/aggregate/sketched.hpp"
#include "sketchsgd/optim/driver.hpp"
#include "sketchsgd/optim/named.hpp"
#include "sketchsgd/optim/state/version1.hpp"
#include "sketchsgd/optim/update/rules.hpp"

namespace sketchsgd {

/// Settings of `sketched_sgd` and `global_sketch_sgd`.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct sketched_sgd_options {
  /// Number of parameters d.
  std::uint64_t dimension = 0;
  /// Rows, columns and seed of the sketch (the seed must match on all ranks).
  sketch_config sketch{};
  /// Coordinates updated per step.
  std::size_t k = 0;
  /// P: the second round looks at P k candidates; 0 turns it off and applies
  /// the sketch's estimates of its top k.
  std::size_t candidates_factor = 3;
  /// Learning rate eta; the update is eta Delta (set_learning_rate for schedules).
  Value learning_rate = Value{1};
  /// Momentum m (local, before the sketch: `error_feedback::momentum`).
  Value momentum = Value{0};
  /// Error feedback (v <- v + u); off: v <- u.
  bool error_feedback = true;
  /// Divide the aggregated sum by W (floating-point values only).
  bool average = false;
  /// How sketches are aggregated (ignored by global_sketch_sgd: allreduce).
  sketchsgd::topology topology = sketchsgd::topology::allreduce;
  /// The root of the `root` topology (a parameter server: flat reduce and
  /// broadcast, every worker talks to the root directly).
  int root = 0;
  /// Coordinates that skip the sketch and are allreduced every step.
  std::vector<dense_range> dense{};
  /// What a NaN or Inf in any rank's gradient does.
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;
  /// Threads for the CPU kernels.
  cpu_execution exec{};
  /// See `sketched_aggregation::options_type::overlap_rows`.
  bool overlap_rows = false;
  /// See `sketched_aggregation::options_type::slices` (one row included).
  std::size_t slices = 1;
};

namespace detail {

/// Sketched-SGD and global-sketch SGD as `named_optimizer`s.
template <class Value, class HashFamily, class Device, optimizer_kind Kind>
struct sketched_sgd_traits {
  using options_type = sketched_sgd_options<Value>;
  using aggregation = sketched_aggregation<Value, HashFamily, top_k_recovery, Device>;
  using update_rule = sgd_update<Value>;
  static constexpr optimizer_kind kind = Kind;
  static constexpr const char* name = Kind == optimizer_kind::sketched_sgd ? "sketched_sgd" : "global_sketch_sgd";

  /// gs-SGD always allreduces.
  static options_type forced(options_type o) {
    if (Kind == optimizer_kind::global_sketch_sgd) o.topology = topology::allreduce;
    return o;
  }
  static composed_options<aggregation, update_rule> compose(const options_type& given,
                                                            typename device_ops<Device>::execution exec) {
    const options_type o = forced(given);
    return named_options<aggregation, update_rule>(o,
                                                   {.sketch = o.sketch,
                                                    .k = o.k,
                                                    .candidates_factor = o.candidates_factor,
                                                    .feedback = {.enabled = o.error_feedback, .momentum = o.momentum},
                                                    .topology = o.topology,
                                                    .root = o.root,
                                                    .overlap_rows = o.overlap_rows,
                                                    .slices = o.slices},
                                                   {}, exec);
  }
  static std::uint64_t fingerprint(const options_type& o, const coordinate_split& split, int world) {
    return version1::sketched_sgd<Value, HashFamily, Kind>(forced(o), split, world);
  }
};

}  // namespace detail

/// Sketched-SGD, the variant the authors ran: local momentum with error
/// feedback, sketch, aggregate, P k candidates, an exact second round, top
/// k, masking (see `sketched_aggregation` for the steps and byte counts);
/// the update is eta Delta (eta Delta / W when averaging). Dense
/// coordinates are allreduced every step and applied in full; only their v
/// is reset, their momentum keeps running.
///
/// `sketched_aggregation<Value, HashFamily, top_k_recovery, Device>` with
/// `sgd_update<Value>` under a stable name (`detail::named_optimizer`): the
/// same bits, bytes and checkpoints (serial version 1) as before the policy
/// layer.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam HashFamily a `hash_family`.
/// @tparam Device a `device` tag (`cuda_t` with sketchsgd/cuda/optim_ops.cuh).
template <sketch_value Value, transport Transport, hash_family HashFamily = multiply_shift, device Device = cpu_t>
using sketched_sgd = detail::named_optimizer<
    detail::sketched_sgd_traits<Value, HashFamily, Device, detail::optimizer_kind::sketched_sgd>, Transport>;

}  // namespace sketchsgd
