// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Update rules: how a `composed_optimizer` turns the aggregated gradient
/// (identical on every rank) into the parameter update. Every rank applies
/// the same arithmetic, so parameters stay bit-identical. The stateful rules
/// take a device (`momentum_update<float, cuda_t>`): their state then lives
/// there, and a dense update stays there for `composed_optimizer::apply`
/// (`update_on_device`); with the host's default they run on the host,
/// also under a device optimizer. Either way one per-coordinate function,
/// rounded once per operation, gives the same bits.
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
#include "sketchsgd/detail/arithmetic.hpp"
#include "sketchsgd/device.hpp"
#include "sketchsgd/optim/model_update.hpp"
#include "sketchsgd/optim/state/fingerprint.hpp"
#include "sketchsgd/optim/step/device_ops.hpp"
#include "sketchsgd/optim/step/validation.hpp"

namespace sketchsgd {

namespace detail {

/// The options `o`, after their weight decay is checked (before any state is made).
template <class Options>
const Options& check_decay(const Options& o, const char* who) {
  if (!(static_cast<double>(o.weight_decay) >= 0.0)) bad_option(who, "weight_decay must be >= 0");
  return o;
}

/// `momentum_update` at coordinate i: M_i <- m M_i + g; the update.
template <class Value>
struct momentum_at {
  Value* state;
  Value m, eta;
  bool nesterov, eta_applied;
  SKETCHSGD_HOST_DEVICE Value operator()(std::uint64_t i, Value g) const noexcept {
    const Value mi = add_rn(mul_rn(m, state[i]), g);
    state[i] = mi;
    const Value x = nesterov ? add_rn(g, mul_rn(m, mi)) : mi;
    return eta_applied ? x : mul_rn(eta, x);
  }
};

/// `adam_update` at coordinate i: both moments, then the update.
template <class Value>
struct adam_at {
  Value *first, *second;
  Value beta1, rest1, beta2, rest2, c1, c2, eta, epsilon;  // rest = 1 - beta; c = bias corrections
  SKETCHSGD_HOST_DEVICE Value operator()(std::uint64_t i, Value g) const noexcept {
    const Value m = add_rn(mul_rn(beta1, first[i]), mul_rn(rest1, g));
    const Value s = add_rn(mul_rn(beta2, second[i]), mul_rn(mul_rn(rest2, g), g));
    first[i] = m;
    second[i] = s;
    return div_rn(mul_rn(eta, div_rn(m, c1)), add_rn(sqrt_rn(div_rn(s, c2)), epsilon));
  }
};

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

  sgd_update(const options_type& o, std::uint64_t /*d*/, const char* who) : opt_(detail::check_decay(o, who)) {}
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
/// @tparam Device where M lives and the rule runs (see the file comment).
template <sketch_value Value, device Device = cpu_t>
class momentum_update {
  using ops = detail::device_ops<Device>;

 public:
  /// Where the state lives.
  using device_type = Device;
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
      : opt_(detail::check_decay(o, who)), d_(d), momentum_(ops::template zeros<Value>(static_cast<std::size_t>(d))) {}
  void apply(model_update<Value>& u, Value eta, bool eta_applied,
             std::uint64_t step) requires std::same_as<Device, cpu_t> {
    typename ops::context host;
    apply(u, eta, eta_applied, step, host);
  }
  void apply(model_update<Value>& u, Value eta, bool eta_applied, std::uint64_t /*step*/, typename ops::context& c) {
    ops::map_update(u, d_, true,
                    detail::momentum_at<Value>{momentum_.data(), opt_.momentum, eta, opt_.nesterov, eta_applied}, c);
    u.decay = eta * opt_.weight_decay;
  }
  /// The state: M.
  template <class F>
  void for_each_state(F&& f) {
    f(typename ops::template span<Value>(momentum_.data(), momentum_.size()));
  }
  void describe(detail::fingerprint& f) const {
    f.add(std::uint8_t{2}).add(opt_.momentum).add(opt_.nesterov).add(opt_.weight_decay);
  }

  /// @endcond
 private:
  options_type opt_;
  std::uint64_t d_;
  typename ops::template buffer<Value> momentum_;
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
/// memory (Adam's step size is scale-free). On the host the dense pass
/// vectorizes only where `std::sqrt` need not set errno: a build with
/// `-fno-math-errno` runs it in under a third of the time, with the same
/// bits (docs/performance.md, "Update rules on the host").
/// @tparam Value `float` or `double`.
/// @tparam Device where m and s live and the rule runs (see the file comment).
template <sketch_value Value, device Device = cpu_t>
class adam_update {
  static_assert(std::is_floating_point_v<Value>, "adam_update needs a floating-point value type");
  using ops = detail::device_ops<Device>;

 public:
  /// Where the state lives.
  using device_type = Device;
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
      : opt_(checked(o, who)),
        d_(d),
        m_(ops::template zeros<Value>(static_cast<std::size_t>(d))),
        s_(ops::template zeros<Value>(static_cast<std::size_t>(d))) {}
  void apply(model_update<Value>& u, Value eta, bool eta_applied,
             std::uint64_t step) requires std::same_as<Device, cpu_t> {
    typename ops::context host;
    apply(u, eta, eta_applied, step, host);
  }
  void apply(model_update<Value>& u, Value eta, bool /*eta_applied*/, std::uint64_t step, typename ops::context& c) {
    const auto t = static_cast<Value>(step + 1);
    const detail::adam_at<Value> at{m_.data(),
                                    s_.data(),
                                    opt_.beta1,
                                    Value{1} - opt_.beta1,
                                    opt_.beta2,
                                    Value{1} - opt_.beta2,
                                    Value{1} - std::pow(opt_.beta1, t),
                                    Value{1} - std::pow(opt_.beta2, t),
                                    eta,
                                    opt_.epsilon};
    ops::map_update(u, d_, !opt_.lazy, at, c);
    u.decay = eta * opt_.weight_decay;
  }
  /// The state: m, then s.
  template <class F>
  void for_each_state(F&& f) {
    f(typename ops::template span<Value>(m_.data(), m_.size()));
    f(typename ops::template span<Value>(s_.data(), s_.size()));
  }
  void describe(detail::fingerprint& f) const {
    f.add(std::uint8_t{3}).add(opt_.beta1).add(opt_.beta2).add(opt_.epsilon).add(opt_.weight_decay).add(opt_.lazy);
  }

  /// @endcond
 private:
  static const options_type& checked(const options_type& o, const char* who) {
    if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) {
      detail::bad_option(who, "adam betas must be in [0, 1)");
    }
    if (!(o.epsilon > 0)) detail::bad_option(who, "adam epsilon must be positive");
    return detail::check_decay(o, who);
  }

  options_type opt_;
  std::uint64_t d_;
  typename ops::template buffer<Value> m_;
  typename ops::template buffer<Value> s_;
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
