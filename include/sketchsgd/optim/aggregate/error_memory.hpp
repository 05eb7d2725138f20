// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The worker-side error-feedback memory with local momentum that
/// Sketched-SGD, global-sketch SGD and the top-k baselines share
/// (Karimireddy et al.'s EF-SGD; Lin et al.'s DGC momentum correction and
/// masking; Sketched-SGD's variant).

#include <cstdint>
#include <span>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/optim/state/fingerprint.hpp"
#include "sketchsgd/optim/step/context.hpp"
#include "sketchsgd/optim/step/device_ops.hpp"

namespace sketchsgd {

/// How a worker accumulates what compression leaves behind.
///
/// Per step, with gradient g: u <- m u + g (local momentum: DGC's
/// "momentum correction", accumulated before compression); x = u (or
/// g + m u with `nesterov`); v <- v + x (error feedback) or v <- x; the
/// aggregation compresses v and, where its update was applied, zeroes v and
/// (with `mask_momentum`, DGC's momentum factor masking) u.
///
/// Learning rate: Sketched-SGD applies eta to the recovered update (this
/// library's default and the authors' code, SketchedSGD/worker.py:
/// `weightUpdate * lr`); `learning_rate_in_error` moves it into the
/// memory, v <- v + eta x, as in Stich et al.'s memory SGD, so the update
/// is applied as recovered.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct error_feedback {
  /// Accumulate into v (true) or replace v (false: plain top-k of u).
  bool enabled = true;
  /// Local momentum m (0: none).
  Value momentum = Value{0};
  /// Nesterov's form of the local momentum: x = g + m u.
  bool nesterov = false;
  /// Zero u too where the update was applied (momentum factor masking).
  bool mask_momentum = true;
  /// v <- v + eta x and the update is applied without eta.
  bool learning_rate_in_error = false;

  /// Field-wise equality.
  friend bool operator==(const error_feedback&, const error_feedback&) = default;
};

/// A worker's momentum u and error v over all d coordinates, as
/// `error_feedback` describes: the memory of an aggregation policy, and the
/// hooks of one that derives from it (`accumulate`, `source`, `finish_dense`,
/// `learning_rate_in_error`, `for_each_state`, `describe`).
template <class Value, class Device>
class error_memory {
  using ops = detail::device_ops<Device>;

 public:
  using value_type = Value;    ///< the value type (the aggregation's)
  using device_type = Device;  ///< where u and v live (the aggregation's device)

  /// Zero u and v of d values on the device of `c`.
  error_memory(const error_feedback<Value>& o, std::uint64_t d, typename ops::context& c)
      : opt_(o), u_(ops::template zeros<Value>(d, c)), v_(ops::template zeros<Value>(d, c)) {}

  /// The step's first phase: momentum and error feedback with gradient g
  /// (a 16-bit g is read as float on the fly).
  void accumulate(typename ops::template gradient<Value> g, const step_context<Value, Device>& c) {
    const Value s = opt_.learning_rate_in_error ? c.learning_rate : Value{1};
    ops::momentum_error(span(u_), span(v_), g, opt_.momentum, s, opt_.enabled, opt_.nesterov, *c.device);
  }
  /// Zeroes v (and u with masking) where an update was applied.
  void mask(std::span<const std::uint64_t> applied, typename ops::context& c) {
    ops::zero_at(span(v_), applied, c);
    if (opt_.mask_momentum) ops::zero_at(span(u_), applied, c);
  }
  /// Dense coordinates were applied in full: zero their v, keep u running.
  void finish_dense(std::span<Value> /*values*/, const step_context<Value, Device>& c) {
    ops::zero_ranges(span(v_), *c.split, *c.device);
  }
  /// u and v, the state's first two sections, are this rank's own: summed
  /// over the ranks, re-divided when the world changes (`load_redivided`).
  static constexpr std::size_t rank_sections = 2;
  /// Whether eta sits in the memory (v <- v + eta x).
  [[nodiscard]] bool learning_rate_in_error() const noexcept { return opt_.learning_rate_in_error; }
  /// Where the dense coordinates are read: v.
  [[nodiscard]] typename ops::template span<const Value> source() const noexcept { return v(); }

  /// The momentum u.
  [[nodiscard]] typename ops::template span<const Value> u() const noexcept { return {u_.data(), u_.size()}; }
  /// The error v (what the aggregation compresses).
  [[nodiscard]] typename ops::template span<const Value> v() const noexcept { return {v_.data(), v_.size()}; }
  /// The options in force.
  [[nodiscard]] const error_feedback<Value>& options() const noexcept { return opt_; }

  /// The state: u, then v.
  template <class F>
  void for_each_state(F&& f) {
    f(span(u_));
    f(span(v_));
  }
  /// Adds the options to a configuration fingerprint.
  void describe(sketchsgd::fingerprint& f) const {
    f.add(opt_.enabled).add(opt_.momentum).add(opt_.nesterov).add(opt_.mask_momentum).add(opt_.learning_rate_in_error);
  }

 private:
  static typename ops::template span<Value> span(typename ops::template buffer<Value>& b) noexcept {
    return {b.data(), b.size()};
  }

  error_feedback<Value> opt_;
  typename ops::template buffer<Value> u_;
  typename ops::template buffer<Value> v_;
};

namespace detail {
using sketchsgd::error_memory;
}  // namespace detail

}  // namespace sketchsgd
