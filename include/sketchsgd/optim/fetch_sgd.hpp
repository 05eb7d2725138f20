// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// FetchSGD (Rothchild, Panda, Ullah, Ivkin, Stoica, Braverman, Gonzalez,
/// Arora, "FetchSGD: Communication-Efficient Federated Learning with
/// Sketching", ICML 2020) under its stable name: `fetch_aggregation` with
/// `sgd_update`.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "sketchsgd/optim/aggregate/fetch.hpp"
#include "sketchsgd/optim/state/version1.hpp"
#include "sketchsgd/optim/sketched_sgd.hpp"

namespace sketchsgd {

/// Settings of `fetch_sgd`.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct fetch_sgd_options {
  /// Number of parameters d.
  std::uint64_t dimension = 0;
  /// Rows, columns and seed of the sketches (same on all ranks).
  sketch_config sketch{};
  /// Coordinates updated per step.
  std::size_t k = 0;
  /// Learning rate eta, applied inside the error sketch: S_e += eta S_u.
  Value learning_rate = Value{1};
  /// Momentum rho of S_u <- rho S_u + S_g.
  Value momentum = Value{0};
  /// Divide the summed gradient sketch by W (floating-point values only).
  bool average = false;
  /// How applied coordinates leave the error sketch.
  fetch_reset reset = fetch_reset::zero_cells;
  /// Where the server state lives: replicated on every rank, or at a root.
  sketchsgd::topology topology = sketchsgd::topology::allreduce;
  /// The root of the `root` topology.
  int root = 0;
  /// Coordinates that skip the sketch: allreduced every step and applied with
  /// plain momentum SGD (replicated on every rank).
  std::vector<dense_range> dense{};
  /// What a NaN or Inf in any rank's gradient does.
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;
  /// Threads for the CPU kernels.
  cpu_execution exec{};
  /// See `fetch_aggregation::options_type::slices`.
  std::size_t slices = 1;
};

namespace detail {

/// FetchSGD as a `named_optimizer`.
template <class Value, class HashFamily, class Device>
struct fetch_sgd_traits {
  using options_type = fetch_sgd_options<Value>;
  using aggregation = fetch_aggregation<Value, HashFamily, top_k_recovery, Device>;
  using update_rule = sgd_update<Value>;
  static constexpr optimizer_kind kind = optimizer_kind::fetch_sgd;
  static constexpr const char* name = "fetch_sgd";

  static composed_options<aggregation, update_rule> compose(const options_type& o,
                                                            typename device_ops<Device>::execution exec) {
    return named_options<aggregation, update_rule>(o,
                                                   {.sketch = o.sketch,
                                                    .k = o.k,
                                                    .momentum = o.momentum,
                                                    .reset = o.reset,
                                                    .topology = o.topology,
                                                    .root = o.root,
                                                    .slices = o.slices},
                                                   {}, exec);
  }
  static std::uint64_t fingerprint(const options_type& o, const coordinate_split& split, int world) {
    return version1::fetch_sgd<Value, HashFamily>(o, split, world);
  }
};

}  // namespace detail

/// FetchSGD: stateless workers, momentum and error kept in sketch space, the
/// learning rate inside the error sketch (see `fetch_aggregation`); the
/// update is Delta itself: w <- w - Delta. Dense coordinates get plain
/// momentum SGD, replicated.
///
/// `fetch_aggregation<Value, HashFamily, top_k_recovery, Device>` with
/// `sgd_update<Value>` under a stable name: the same bits, bytes and
/// checkpoints (serial version 1) as before the policy layer.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam HashFamily a `hash_family`.
/// @tparam Device a `device` tag.
template <sketch_value Value, transport Transport, hash_family HashFamily = multiply_shift, device Device = cpu_t>
using fetch_sgd = detail::named_optimizer<detail::fetch_sgd_traits<Value, HashFamily, Device>, Transport>;

}  // namespace sketchsgd
