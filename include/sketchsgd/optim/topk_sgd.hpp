// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The top-k baselines under their stable names: `true_topk_sgd`,
/// `local_topk_sgd` and `gtopk_sgd` (their aggregation with `sgd_update`).

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "sketchsgd/optim/aggregate/topk.hpp"
#include "sketchsgd/optim/sketched_sgd.hpp"

namespace sketchsgd {

/// Settings of `true_topk_sgd`, `local_topk_sgd` and `gtopk_sgd`.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct topk_sgd_options {
  /// Number of parameters d.
  std::uint64_t dimension = 0;
  /// Coordinates selected per step (per worker for local top-k and gTop-k).
  std::size_t k = 0;
  /// Learning rate eta.
  Value learning_rate = Value{1};
  /// Momentum m (local, before selection: `error_feedback::momentum`).
  Value momentum = Value{0};
  /// Error feedback (v <- v + u); off: v <- u.
  bool error_feedback = true;
  /// Divide the aggregated sum by W (floating-point values only).
  bool average = false;
  /// Coordinates never compressed: allreduced every step and applied in full.
  std::vector<dense_range> dense{};
  /// What a NaN or Inf in any rank's gradient does.
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;
  /// Threads for the selection.
  cpu_execution exec{};
};

namespace detail {

/// A top-k aggregation with `sgd_update` as a `named_optimizer`.
template <class Aggregation>
struct topk_sgd_traits {
  using Value = typename Aggregation::value_type;
  using options_type = topk_sgd_options<Value>;
  using aggregation = Aggregation;
  using update_rule = sgd_update<Value>;
  static constexpr optimizer_kind kind = Aggregation::kind;
  static constexpr const char* name = kind == optimizer_kind::true_topk_sgd    ? "true_topk_sgd"
                                      : kind == optimizer_kind::local_topk_sgd ? "local_topk_sgd"
                                                                               : "gtopk_sgd";

  static composed_options<aggregation, update_rule> compose(
      const options_type& o, typename device_ops<typename Aggregation::device_type>::execution exec) {
    return named_options<aggregation, update_rule>(
        o, {.k = o.k, .feedback = {.enabled = o.error_feedback, .momentum = o.momentum}}, {}, exec);
  }
  static std::uint64_t fingerprint(const options_type& o, const coordinate_split& split, int world) {
    detail::fingerprint f;
    f.add(kind).add(wire::value_type_code<Value>).add(o.dimension).add(o.k).add(o.momentum);
    f.add(o.error_feedback).add(o.average).add(o.dense.size());
    for (const dense_range& r : split.dense()) f.add(r.offset).add(r.length);
    f.add(o.nonfinite).add(world);
    return f.value();
  }
};

}  // namespace detail

/// True top-k with error feedback (`true_topk_aggregation` with
/// `sgd_update`): the accuracy upper bound of any top-k scheme, at dense cost.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam Device a `device` tag.
template <sketch_value Value, transport Transport, device Device = cpu_t>
using true_topk_sgd = detail::named_optimizer<detail::topk_sgd_traits<true_topk_aggregation<Value, Device>>, Transport>;

/// Local top-k with error feedback, DGC-style (`local_topk_aggregation` with
/// `sgd_update`): traffic grows with W.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam Device a `device` tag.
template <sketch_value Value, transport Transport, device Device = cpu_t>
using local_topk_sgd =
    detail::named_optimizer<detail::topk_sgd_traits<local_topk_aggregation<Value, Device>>, Transport>;

/// gTop-k with error feedback, Shi et al. (`gtopk_aggregation` with
/// `sgd_update`): a binomial tree of top-k merges and one broadcast.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam Device a `device` tag.
template <sketch_value Value, transport Transport, device Device = cpu_t>
using gtopk_sgd = detail::named_optimizer<detail::topk_sgd_traits<gtopk_aggregation<Value, Device>>, Transport>;

}  // namespace sketchsgd
