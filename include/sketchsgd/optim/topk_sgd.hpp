// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The top-k baselines under their stable names: `true_topk_sgd`,
/// `local_topk_sgd` and `gtopk_sgd` (their aggregation with `sgd_update`,
/// or `momentum_update` when the momentum acts after aggregation).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "sketchsgd/optim/aggregate/topk.hpp"
#include "sketchsgd/optim/sketched_sgd.hpp"
#include "sketchsgd/optim/state/version1.hpp"

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
  /// Momentum m (local, before selection: `error_feedback::momentum`;
  /// after aggregation with `momentum_after_aggregation`).
  Value momentum = Value{0};
  /// Where the momentum acts. false (default): on each worker before
  /// selection, u <- m u + g, v <- v + u, u and v zeroed where applied
  /// (DGC's momentum correction). true: on the aggregate, as plain momentum
  /// SGD on the server side: the workers' error feedback takes the raw
  /// gradient (v <- v + g), and every rank keeps the same dense
  /// M <- m M + Delta and applies eta M (a dense update, never masked).
  /// For `gtopk_sgd` that is what gTop-k's authors ran (hclhkbu/gtopkssgd:
  /// momentum correction off, torch.optim.SGD's momentum on the gTop-k sum);
  /// the default is not.
  bool momentum_after_aggregation = false;
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

/// The top-k baselines' update rule: `sgd_update` (their momentum is local,
/// in the error feedback), or `momentum_update` on the aggregate with
/// `topk_sgd_options::momentum_after_aggregation`.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
class topk_update {
 public:
  /// Settings of `topk_update`.
  struct options_type {
    Value momentum = Value{0};       ///< m of the heavy ball on the aggregate
    bool after_aggregation = false;  ///< heavy ball (`momentum_update`), not plain SGD
  };
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  static constexpr bool takes_applied_learning_rate = true;

  topk_update(const options_type& o, std::uint64_t d, const char* who) : sgd_({}, d, who) {
    if (o.after_aggregation)
      heavy_.emplace(typename momentum_update<Value>::options_type{.momentum = o.momentum}, d, who);
  }
  void apply(model_update<Value>& u, Value eta, bool eta_applied, std::uint64_t step) {
    if (heavy_) {
      heavy_->apply(u, eta, eta_applied, step);
    } else {
      sgd_.apply(u, eta, eta_applied, step);
    }
  }
  /// The state: M with the momentum after aggregation, else none.
  template <class F>
  void for_each_state(F&& f) {
    if (heavy_) heavy_->for_each_state(f);
  }
  void describe(fingerprint& f) const {
    if (heavy_) {
      heavy_->describe(f);
    } else {
      sgd_.describe(f);
    }
  }
  /// @endcond

 private:
  sgd_update<Value> sgd_;
  std::optional<momentum_update<Value>> heavy_;
};

/// A top-k aggregation with `topk_update` as a `named_optimizer`.
template <class Aggregation>
struct topk_sgd_traits {
  using Value = typename Aggregation::value_type;
  using options_type = topk_sgd_options<Value>;
  using aggregation = Aggregation;
  using update_rule = topk_update<Value>;
  static constexpr optimizer_kind kind = Aggregation::kind;
  static constexpr const char* name = kind == optimizer_kind::true_topk_sgd    ? "true_topk_sgd"
                                      : kind == optimizer_kind::local_topk_sgd ? "local_topk_sgd"
                                                                               : "gtopk_sgd";

  static composed_options<aggregation, update_rule> compose(
      const options_type& o, typename device_ops<typename Aggregation::device_type>::execution exec) {
    const bool after = o.momentum_after_aggregation;
    return named_options<aggregation, update_rule>(
        o, {.k = o.k, .feedback = {.enabled = o.error_feedback, .momentum = after ? Value{0} : o.momentum}},
        {.momentum = after ? o.momentum : Value{0}, .after_aggregation = after}, exec);
  }
  static std::uint64_t fingerprint(const options_type& o, const coordinate_split& split, int world) {
    return version1::topk_sgd<Value, kind>(o, split, world);
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
/// `sgd_update`): a binomial tree of top-k merges and one broadcast. Its
/// momentum acts before selection by default (DGC's placement); the
/// authors' code puts it after aggregation:
/// `topk_sgd_options::momentum_after_aggregation`.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam Device a `device` tag.
template <sketch_value Value, transport Transport, device Device = cpu_t>
using gtopk_sgd = detail::named_optimizer<detail::topk_sgd_traits<gtopk_aggregation<Value, Device>>, Transport>;

}  // namespace sketchsgd
