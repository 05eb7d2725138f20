// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The concepts of the optimizer layer: what every optimizer offers, and
/// what a policy must provide to plug into `composed_optimizer`.

#include <concepts>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/device.hpp"
#include "sketchsgd/optim/accounting.hpp"
#include "sketchsgd/optim/error_feedback.hpp"
#include "sketchsgd/optim/rounds.hpp"
#include "sketchsgd/optim/state_io.hpp"
#include "sketchsgd/optim/update.hpp"

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

/// An aggregation policy: what is communicated and how, with its memory.
/// `rounds` is a coroutine yielding each collective it needs (see
/// rounds.hpp).
template <class A>
concept aggregation_policy = sketch_value<typename A::value_type> && device<typename A::device_type> &&
    requires(A& a, const A& ca, const detail::step_context<typename A::value_type, typename A::device_type>& c,
             typename detail::device_ops<typename A::device_type>::template span<const typename A::value_type> g,
             model_update<typename A::value_type>& out, std::span<typename A::value_type> dense,
             detail::fingerprint& f) {
  typename A::options_type;
  { A::kind } -> std::convertible_to<detail::optimizer_kind>;
  { A::name } -> std::convertible_to<const char*>;
  a.accumulate(g, c);
  { ca.source() } -> std::convertible_to<decltype(g)>;
  a.rounds(c, out).next();
  a.finish_dense(dense, c);
  { ca.learning_rate_in_error() } -> std::same_as<bool>;
  { ca.averages_itself() } -> std::same_as<bool>;
  ca.describe(f);
};

/// An update rule: the aggregated gradient in, the update out (in place),
/// the same arithmetic on every rank.
template <class R, class Value>
concept update_rule = requires(R& r, const R& cr, model_update<Value>& u, Value eta, std::uint64_t step,
                               detail::fingerprint& f) {
  typename R::options_type;
  { R::takes_applied_learning_rate } -> std::convertible_to<bool>;
  r.apply(u, eta, true, step);
  cr.describe(f);
};

}  // namespace sketchsgd
