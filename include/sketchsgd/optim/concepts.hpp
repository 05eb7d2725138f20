// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The concepts of the optimizer layer: what every optimizer offers, and
/// what a policy must provide to plug into `composed_optimizer`. Each checks
/// what the driver calls, so that a policy lacking a hook fails at the
/// driver's `static_assert`, whose notes name the hook. The hooks a policy
/// may leave out get the driver's defaults (`detail::hooks`); a policy that
/// declares one must declare it callable as the driver calls it.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <type_traits>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/device.hpp"
#include "sketchsgd/optim/model_update.hpp"
#include "sketchsgd/optim/state/fingerprint.hpp"
#include "sketchsgd/optim/state/state_io.hpp"
#include "sketchsgd/optim/step/accounting.hpp"
#include "sketchsgd/optim/step/context.hpp"
#include "sketchsgd/optim/step/rounds.hpp"
#include "sketchsgd/sketch/count_sketch.hpp"
#include "sketchsgd/sketch/sparse_update.hpp"

namespace sketchsgd {

/// A distributed optimizer: one step per gradient, giving the update every
/// rank applies identically; its traffic; checkpoints; learning-rate changes.
template <class O>
concept distributed_optimizer = sketch_value<typename O::value_type> &&
    requires(O& o, const O& co, typename O::gradient_type g, typename O::value_type eta, std::ostream& os,
             std::istream& is) {
  { o.step(g) } -> std::same_as<const model_update<typename O::value_type>&>;
  { co.stats() } -> std::same_as<const comm_stats&>;
  o.set_learning_rate(eta);
  co.save(os);
  o.load(is);
};

/// An optimizer in split phase: `step_rounds(g)` gives a step's rounds for
/// the caller to carry, then `last_update()` holds the update (see
/// `composed_optimizer::step_rounds`).
template <class O>
concept split_phase_optimizer = sketch_value<typename O::value_type> &&
    requires(O& o, const O& co, typename O::gradient_type g) {
  { o.step_rounds(g) } -> std::same_as<round_generator<typename O::value_type>>;
  { co.last_update() } -> std::same_as<const model_update<typename O::value_type>&>;
  { co.stats() } -> std::same_as<const comm_stats&>;
};

namespace detail {

/// Members named as the optional hooks. A policy's own member of such a name
/// makes the name ambiguous in `hook_probe`: so a concept sees that a policy
/// declares a hook, whatever its signature (a final class is not probed).
struct hook_names {
  int averages_itself, learning_rate_in_error, finish_dense, for_each_state, describe;
};
template <class P>
struct hook_probe : P, hook_names {};
template <class P>
concept probed = std::is_class_v<P> && !std::is_final_v<P>;

/// The driver's visitor of state sections (spans of the policy's device: a host rule's are host spans).
template <class Value, class Device>
struct state_visitor {
  void operator()(typename device_ops<Device>::template span<Value> section) const;
};
template <class A>
using context_of = step_context<typename A::value_type, typename A::device_type>;
template <class A>
using gradient_of = typename device_ops<typename A::device_type>::template span<const typename A::value_type>;
template <class A>
using any_gradient_of = typename device_ops<typename A::device_type>::template gradient<typename A::value_type>;
template <class Sketch>
using ops_of = device_ops<typename Sketch::device_type>;
template <class R>
struct rule_device_of {
  using type = cpu_t;
};
template <class R>
requires requires { typename R::device_type; }
struct rule_device_of<R> {
  using type = typename R::device_type;
};
/// Where an update rule's state lives (`device_type`, else the host), and its operations' context.
template <class R>
using rule_device = typename rule_device_of<R>::type;
template <class R>
using rule_context = typename device_ops<rule_device<R>>::context;

// clang-format off
// (clang-format 14 cannot lay out requires-expressions joined by || and &&.)
/// Each optional hook: not declared (the driver's default applies), or declared as the driver calls it.
template <class P>
concept averages_itself_hook = !probed<P> || requires { &hook_probe<P>::averages_itself; } ||
                               requires(const P& p) { { p.averages_itself() } -> std::same_as<bool>; };
template <class P>
concept learning_rate_in_error_hook = !probed<P> || requires { &hook_probe<P>::learning_rate_in_error; } ||
                                      requires(const P& p) { { p.learning_rate_in_error() } -> std::same_as<bool>; };
template <class P, class Value, class Context>
concept finish_dense_hook = !probed<P> || requires { &hook_probe<P>::finish_dense; } ||
                            requires(P& p, std::span<Value> dense, const Context& c) { p.finish_dense(dense, c); };
template <class P, class Visitor>
concept for_each_state_hook = !probed<P> || requires { &hook_probe<P>::for_each_state; } ||
                              requires(P& p, Visitor visit) { p.for_each_state(visit); };
template <class P>
concept describe_hook = !probed<P> || requires { &hook_probe<P>::describe; } ||
                        requires(const P& p, fingerprint& f) { p.describe(f); };

}  // namespace detail

/// An aggregation policy: what is communicated and how, with its memory.
/// Required: `value_type` (a `sketch_value`), `device_type`, `options_type`,
/// `name`, a constructor from (options, `step_context`), `accumulate(gradient,
/// context)`, `source()` (whence the dense coordinates: a span, or the
/// `gradient_span` it was given) and `rounds(context,
/// out)`, a coroutine that yields each collective (rounds.hpp) and fills
/// `out`. Optional, with the driver's defaults: `kind` (`custom`),
/// `averages_itself()` (false: the driver divides by W),
/// `learning_rate_in_error()` (false), `finish_dense(values, context)`
/// (nothing), `for_each_state(visitor)` (no state), a static `rank_sections`
/// (0: how many first state sections are the rank's own, summed over ranks,
/// which `load_redivided` re-divides), `describe(fingerprint&)`
/// (nothing to add). An `accumulate` that takes a `gradient_span<float>`
/// takes 16-bit gradients too (`composed_optimizer::step`).
template <class A>
concept aggregation_policy =
    sketch_value<typename A::value_type> && device<typename A::device_type> &&
    requires(A& a, const A& ca, const detail::context_of<A>& c, detail::gradient_of<A> gradient,
             model_update<typename A::value_type>& out) {
      requires std::constructible_from<A, const typename A::options_type&, const detail::context_of<A>&>;
      { A::name } -> std::convertible_to<const char*>;
      a.accumulate(gradient, c);
      { ca.source() } -> std::convertible_to<detail::any_gradient_of<A>>;
      { a.rounds(c, out) } -> std::same_as<round_generator<typename A::value_type>>;
    } &&
    detail::averages_itself_hook<A> && detail::learning_rate_in_error_hook<A> &&
    detail::finish_dense_hook<A, typename A::value_type, detail::context_of<A>> &&
    detail::for_each_state_hook<A, detail::state_visitor<typename A::value_type, typename A::device_type>> &&
    detail::describe_hook<A>;

/// An update rule: the aggregated gradient in, the update out (in place),
/// the same arithmetic on every rank. Required: `options_type`, a
/// constructor from (options, d, name), `apply(update, eta, eta_applied,
/// step)` or, with the context of its device's operations, `apply(update,
/// eta, eta_applied, step, context)` (the driver's own context, its threads
/// or its stream). Optional, with the driver's defaults: `device_type` (the
/// host: `cpu_t`; else the aggregation's device, where its state lives),
/// `takes_applied_learning_rate` (false: an aggregation that keeps eta in
/// its error memory is refused), `for_each_state(visitor)` (no state),
/// `describe(fingerprint&)` (nothing to add).
template <class R, class Value>
concept update_rule =
    std::constructible_from<R, const typename R::options_type&, std::uint64_t, const char*> &&
    (requires(R& r, model_update<Value>& u, Value eta, std::uint64_t step) { r.apply(u, eta, true, step); } ||
     requires(R& r, model_update<Value>& u, Value eta, std::uint64_t step, detail::rule_context<R>& c) {
       r.apply(u, eta, true, step, c);
     }) &&
    detail::for_each_state_hook<R, detail::state_visitor<Value, detail::rule_device<R>>> && detail::describe_hook<R>;

/// A recovery policy: which coordinates a summed `Sketch` yields, the same
/// on every rank holding the same sketch. Required: `select<Ops>(sketch, d,
/// count, scratch, device context, step)` (at most `count` coordinates with
/// values; `Ops` the device's operations, `scratch` d device values) and
/// `describe(fingerprint&)`. The sketch aggregations also call, where it
/// has them, `validate(name)` (throws for bad options) and
/// `applies_selection()` (the selection is the update: HEAVYMIX's `apply_all`).
template <class R, class Sketch>
concept recovery_policy =
    requires(const R& r, const Sketch& s, std::uint64_t d, std::size_t count,
             typename detail::ops_of<Sketch>::template span<typename Sketch::value_type> scratch,
             typename detail::ops_of<Sketch>::context& c, std::uint64_t step, fingerprint& f) {
      { r.template select<detail::ops_of<Sketch>>(s, d, count, scratch, c, step) }
          -> std::convertible_to<sparse_update<typename Sketch::value_type>>;
      r.describe(f);
    };

namespace detail {
/// The sketch a sketch aggregation keeps, named only with a `Recovery` that
/// can select from it (the check both aggregations need, in one place).
template <class Value, class HashFamily, class Recovery, class Device>
  requires recovery_policy<Recovery, count_sketch<Value, HashFamily, Device>>
using recovered_sketch = count_sketch<Value, HashFamily, Device>;
}  // namespace detail

/// A device's operations (`detail::device_ops<D>`: optim/step/device_ops.hpp,
/// cuda/optim_ops.cuh) as the driver calls them: a `context` from the
/// options' `execution` and `run_as` (one call's own), the non-finite count,
/// the dense coordinates' gather to the host, `apply`, `finish`, and state
/// sections' copies between host and device, for device and host (update
/// rules') sections alike.
template <class Ops, class Value>
concept device_operations =
    requires(typename Ops::execution e, typename Ops::context& c, typename Ops::template gradient<Value> x,
             typename Ops::template span<Value> y, std::span<Value> host, const detail::coordinate_split& split,
             const model_update<Value>& u, Value factor) {
      static_cast<typename Ops::context>(typename Ops::context{e});  // as the driver builds it
      Ops::run_as(c, e);                                              // a call's own execution
      { Ops::count_nonfinite(x, c) } -> std::convertible_to<std::int64_t>;
      Ops::gather_dense(x, split, host, c);
      Ops::apply(u, y, factor, c);
      Ops::finish(c);
      Ops::upload(std::span<const Value>(host), y, c);
      Ops::upload(std::span<const Value>(host), host, c);
      { Ops::download(y, c) } -> std::convertible_to<std::span<const Value>>;
      { Ops::download(host, c) } -> std::convertible_to<std::span<const Value>>;
    };
// clang-format on

namespace detail::hooks {

/// The driver's defaults for the hooks a policy may leave out.
template <class A>
constexpr optimizer_kind kind() noexcept {
  if constexpr (requires { A::kind; }) return A::kind;
  return optimizer_kind::custom;
}
/// How many of the aggregation's first state sections are its rank's own
/// memory, summed over the ranks (error memories): `load_redivided` divides
/// their sum among a new world. The other sections are the same on every rank.
template <class A>
constexpr std::size_t rank_sections() noexcept {
  if constexpr (requires { A::rank_sections; }) return A::rank_sections;
  return 0;
}
template <class A>
bool averages_itself(const A& a) noexcept {
  if constexpr (requires { a.averages_itself(); }) return a.averages_itself();
  return false;
}
template <class A>
bool learning_rate_in_error(const A& a) noexcept {
  if constexpr (requires { a.learning_rate_in_error(); }) return a.learning_rate_in_error();
  return false;
}
template <class A, class Value, class Context>
void finish_dense(A& a, std::span<Value> values, const Context& c) {
  if constexpr (requires { a.finish_dense(values, c); }) a.finish_dense(values, c);
}
template <class P, class F>
void for_each_state(P& p, F&& f) {
  if constexpr (requires { p.for_each_state(f); }) p.for_each_state(f);
}
template <class P>
void describe(const P& p, fingerprint& f) {
  if constexpr (requires { p.describe(f); }) p.describe(f);
}
/// The rule's apply, given the driver's device context where it takes it;
/// a host rule under a device optimizer gets a host context with the step's
/// host threads (the device context's `exec`).
template <class R, class Value, class Context>
void apply_rule(R& r, model_update<Value>& u, Value eta, bool eta_applied, std::uint64_t step, Context& c) {
  if constexpr (requires { r.apply(u, eta, eta_applied, step, c); }) {
    r.apply(u, eta, eta_applied, step, c);
  } else if constexpr (requires(rule_context<R> & host) { r.apply(u, eta, eta_applied, step, host); }) {
    rule_context<R> host{.exec = c.exec};
    r.apply(u, eta, eta_applied, step, host);
  } else {
    r.apply(u, eta, eta_applied, step);
  }
}
template <class R>
constexpr bool takes_applied_learning_rate() noexcept {
  if constexpr (requires { R::takes_applied_learning_rate; }) return R::takes_applied_learning_rate;
  return false;
}

}  // namespace detail::hooks
}  // namespace sketchsgd
