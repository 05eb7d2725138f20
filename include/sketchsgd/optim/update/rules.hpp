// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Update rules: how a `composed_optimizer` turns the aggregated gradient
/// (identical on every rank) into the parameter update. They run on the host
/// and keep their state there; every rank applies the same arithmetic, so
/// parameters stay bit-identical.
///
/// Momentum that must act before compression (DGC's momentum correction,
/// Sketched-SGD's local momentum) is part of the aggregation's error
/// feedback (`error_feedback`), FetchSGD's lives in its sketches; these rules
/// act after aggregation.

#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/optim/model_update.hpp"
#include "sketchsgd/optim/state/fingerprint.hpp"
#include "sketchsgd/optim/step/validation.hpp"

namespace sketchsgd {

namespace detail {

/// Makes `u` dense (d values, zero off its support).
template <class Value>
void densify(model_update<Value>& u, std::uint64_t d) {
  if (u.dense) return;
  std::vector<Value> all(static_cast<std::size_t>(d), Value{});
  for (std::size_t j = 0; j < u.indices.size(); ++j) all[u.indices[j]] = u.values[j];
  u.indices.clear();
  u.values = std::move(all);
  u.dense = true;
}

inline void check_decay(double wd, const char* who) {
  if (!(wd >= 0.0)) bad_option(who, "weight_decay must be >= 0");
}

}  // namespace detail

/// w <- w - eta Delta (decoupled weight decay: first w <- w - eta lambda w):
/// plain SGD on the aggregated gradient, which keeps a sparse update sparse.
/// What the Sketched-SGD, FetchSGD and top-k optimizers apply.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
class sgd_update {
 public:
  /// Settings of `sgd_update`.
  struct options_type {
    Value weight_decay = Value{0};  ///< lambda, decoupled
  };
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  static constexpr bool takes_applied_learning_rate = true;

  sgd_update(const options_type& o, std::uint64_t /*d*/, const char* who) : opt_(o) {
    detail::check_decay(static_cast<double>(o.weight_decay), who);
  }
  void apply(model_update<Value>& u, Value eta, bool eta_applied, std::uint64_t /*step*/) {
    if (!eta_applied) {
      for (Value& x : u.values) x *= eta;
    }
    u.decay = eta * opt_.weight_decay;
  }
  void describe(detail::fingerprint& f) const { f.add(std::uint8_t{1}).add(opt_.weight_decay); }

  /// @endcond
 private:
  options_type opt_;
};

/// Heavy-ball momentum on the aggregated gradient, replicated on every rank:
/// M <- m M + Delta; the update is eta M (Nesterov: eta (Delta + m M)). M is
/// dense, so the update is dense. What `dense_sgd` applies.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
class momentum_update {
 public:
  /// Settings of `momentum_update`.
  struct options_type {
    Value momentum = Value{0};      ///< m
    bool nesterov = false;          ///< Sutskever et al.'s form
    Value weight_decay = Value{0};  ///< lambda, decoupled
  };
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  static constexpr bool takes_applied_learning_rate = true;

  momentum_update(const options_type& o, std::uint64_t d, const char* who)
      : opt_(o), d_(d), momentum_(static_cast<std::size_t>(d), Value{}) {
    detail::check_decay(static_cast<double>(o.weight_decay), who);
  }
  void apply(model_update<Value>& u, Value eta, bool eta_applied, std::uint64_t /*step*/) {
    detail::densify(u, d_);
    for (std::size_t i = 0; i < momentum_.size(); ++i) {
      momentum_[i] = opt_.momentum * momentum_[i] + u.values[i];
      const Value x = opt_.nesterov ? u.values[i] + opt_.momentum * momentum_[i] : momentum_[i];
      u.values[i] = eta_applied ? x : eta * x;
    }
    u.decay = eta * opt_.weight_decay;
  }
  /// The state: M.
  template <class F>
  void for_each_state(F&& f) {
    f(std::span<Value>(momentum_));
  }
  void describe(detail::fingerprint& f) const {
    f.add(std::uint8_t{2}).add(opt_.momentum).add(opt_.nesterov).add(opt_.weight_decay);
  }

  /// @endcond
 private:
  options_type opt_;
  std::uint64_t d_;
  std::vector<Value> momentum_;
};

/// Adam (Kingma and Ba) on the aggregated gradient, with decoupled weight
/// decay (AdamW, Loshchilov and Hutter) when `weight_decay` > 0:
/// m <- b1 m + (1 - b1) g;  s <- b2 s + (1 - b2) g^2;
/// update = eta (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + epsilon).
///
/// Dense moments (default): every coordinate's moments decay every step, as
/// dense Adam would, and the update is dense. Lazy moments (`lazy`): only
/// the aggregated gradient's coordinates move, as in torch's SparseAdam, and
/// the update keeps its support. The learning rate must not sit in an error
/// memory (Adam's step size is scale-free).
/// @tparam Value `float` or `double`.
template <sketch_value Value>
class adam_update {
  static_assert(std::is_floating_point_v<Value>, "adam_update needs a floating-point value type");

 public:
  /// Settings of `adam_update`.
  struct options_type {
    Value beta1 = Value(0.9);       ///< the first moment's decay
    Value beta2 = Value(0.999);     ///< the second moment's decay
    Value epsilon = Value(1e-8);    ///< added to sqrt(s)
    Value weight_decay = Value{0};  ///< lambda, decoupled (AdamW)
    bool lazy = false;              ///< moments only where the aggregated gradient is
  };
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer; eta must not sit in an
  // error memory (takes_applied_learning_rate's default).
  adam_update(const options_type& o, std::uint64_t d, const char* who)
      : opt_(o), d_(d), m_(static_cast<std::size_t>(d), Value{}), s_(static_cast<std::size_t>(d), Value{}) {
    if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) {
      detail::bad_option(who, "adam betas must be in [0, 1)");
    }
    if (!(o.epsilon > 0)) detail::bad_option(who, "adam epsilon must be positive");
    detail::check_decay(static_cast<double>(o.weight_decay), who);
  }
  void apply(model_update<Value>& u, Value eta, bool /*eta_applied*/, std::uint64_t step) {
    const auto t = static_cast<Value>(step + 1);
    const Value c1 = Value{1} - std::pow(opt_.beta1, t);
    const Value c2 = Value{1} - std::pow(opt_.beta2, t);
    const auto moment = [&](std::size_t i, Value g) {
      m_[i] = opt_.beta1 * m_[i] + (Value{1} - opt_.beta1) * g;
      s_[i] = opt_.beta2 * s_[i] + (Value{1} - opt_.beta2) * g * g;
      return eta * (m_[i] / c1) / (std::sqrt(s_[i] / c2) + opt_.epsilon);
    };
    if (!opt_.lazy) detail::densify(u, d_);
    for (std::size_t j = 0; j < u.values.size(); ++j) u.values[j] = moment(u.dense ? j : u.indices[j], u.values[j]);
    u.decay = eta * opt_.weight_decay;
  }
  /// The state: m, then s.
  template <class F>
  void for_each_state(F&& f) {
    f(std::span<Value>(m_));
    f(std::span<Value>(s_));
  }
  void describe(detail::fingerprint& f) const {
    f.add(std::uint8_t{3}).add(opt_.beta1).add(opt_.beta2).add(opt_.epsilon).add(opt_.weight_decay).add(opt_.lazy);
  }

  /// @endcond
 private:
  options_type opt_;
  std::uint64_t d_;
  std::vector<Value> m_;
  std::vector<Value> s_;
};

/// No rule: the update is the aggregated gradient itself (divided by W when
/// averaging), for a framework's own optimizer to consume. This rule applies
/// no learning rate, but an aggregation that keeps eta in its error memory
/// has applied it already: FetchSGD by default
/// (`fetch_aggregation`'s `learning_rate_in_error`), the others with
/// `error_feedback::learning_rate_in_error`. Set those to false (or eta to
/// 1) for the gradient without eta.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
class aggregated_gradient {
 public:
  /// No options.
  struct options_type {};
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  static constexpr bool takes_applied_learning_rate = true;

  aggregated_gradient(const options_type&, std::uint64_t, const char*) {}
  void apply(model_update<Value>&, Value, bool, std::uint64_t) {}
  void describe(detail::fingerprint& f) const { f.add(std::uint8_t{4}); }
  /// @endcond
};

}  // namespace sketchsgd
