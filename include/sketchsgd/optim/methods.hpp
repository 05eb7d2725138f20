// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The method registry: every optimizer a program picks by name at run time
/// (the trainers' and the bench's --method, the Python package's "method"),
/// built from one flat set of options into an `any_optimizer`, over a
/// transport or in split phase.

#include <algorithm>
#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sketchsgd/optim/any_optimizer.hpp"
#include "sketchsgd/optim/dense_sgd.hpp"
#include "sketchsgd/optim/fetch_sgd.hpp"
#include "sketchsgd/optim/global_sketch_sgd.hpp"
#include "sketchsgd/optim/sketched_sgd.hpp"
#include "sketchsgd/optim/topk_sgd.hpp"

namespace sketchsgd {

/// Every method's name: dense SGD with its sum on a float32, bfloat16 or
/// float16 wire (`dense_sgd`); true top-k, local top-k and gTop-k with error
/// feedback; Sketched-SGD, FetchSGD and global-sketch SGD.
inline constexpr std::array<std::string_view, 9> method_names = {
    "dense", "dense-bf16", "dense-fp16", "true-topk", "local-topk", "gtopk", "sketched", "fetchsgd", "global-sketch"};

/// Whether `method` is dense SGD, on any wire.
[[nodiscard]] constexpr bool is_dense_method(std::string_view method) noexcept {
  return method == "dense" || method == "dense-bf16" || method == "dense-fp16";
}
/// Whether `method` sends a sketch (Sketched-SGD, FetchSGD, global-sketch SGD).
[[nodiscard]] constexpr bool is_sketch_method(std::string_view method) noexcept {
  return method == "sketched" || method == "fetchsgd" || method == "global-sketch";
}

/// The rule that turns a method's aggregated gradient into its update.
enum class update_choice : std::uint8_t {
  sgd,                  ///< the named optimizer's: eta Delta (dense SGD: momentum SGD, `momentum_update`)
  adam,                 ///< `adam_update` with dense moments
  adam_lazy,            ///< `adam_update` with moments only where the update is
  aggregated_gradient,  ///< none: the aggregated gradient itself, eta outside the error memories
};

/// Settings of `make_optimizer`: every method's options, flat. A method
/// reads those it has and ignores the rest.
/// @tparam Value `float` or `double`.
template <std::floating_point Value>
struct method_options {
  std::string method;                                             ///< one of `method_names`
  std::uint64_t dimension = 0;                                    ///< number of parameters d
  std::size_t k = 0;                                              ///< coordinates updated per step (all but dense)
  sketch_config sketch{};                                         ///< the sketch's rows, columns and seed
  std::size_t candidates_factor = 3;                              ///< P (sketched, global-sketch)
  Value learning_rate = Value{1};                                 ///< eta
  Value momentum = Value{0};                                      ///< local momentum (FetchSGD: in sketch space)
  bool nesterov = false;                                          ///< Nesterov's form of the local momentum
  bool error_feedback = true;                                     ///< v <- v + u (off: v <- u)
  bool mask_momentum = true;                                      ///< momentum zeroed where the update was applied
  bool average = false;                                           ///< divide the aggregated sums by W
  sketchsgd::topology topology = sketchsgd::topology::allreduce;  ///< how sketches are aggregated
  int root = 0;                                                   ///< the root of the `root` topology
  std::vector<dense_range> dense{};                               ///< coordinates never compressed (none for dense SGD)
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;     ///< what a NaN or Inf does
  cpu_execution exec{};                                           ///< threads for the CPU kernels
  bool overlap_rows = false;                                      ///< see `sketched_aggregation::options_type`
  std::size_t slices = 1;                                 ///< see `sketched_aggregation::options_type` (FetchSGD too)
  std::optional<allreduce_algorithm> sketch_allreduce{};  ///< the table's allreduce (sketched, global-sketch)
  any_recovery recovery{};                                ///< what a summed sketch yields
  update_choice update = update_choice::sgd;              ///< the update rule
};

namespace detail {

/// `method`'s aggregation, with its recovery chosen at run time.
template <class Value, class F>
decltype(auto) with_method_aggregation(std::string_view method, F&& f) {
  using R = any_recovery;
  if (is_dense_method(method)) return f(std::type_identity<dense_aggregation<Value>>{});
  if (method == "true-topk") return f(std::type_identity<true_topk_aggregation<Value>>{});
  if (method == "local-topk") return f(std::type_identity<local_topk_aggregation<Value>>{});
  if (method == "gtopk") return f(std::type_identity<gtopk_aggregation<Value>>{});
  if (method == "fetchsgd") return f(std::type_identity<fetch_aggregation<Value, multiply_shift, R>>{});
  if (method == "global-sketch") return f(std::type_identity<global_sketch_aggregation<Value, multiply_shift, R>>{});
  if (method == "sketched") return f(std::type_identity<sketched_aggregation<Value, multiply_shift, R>>{});
  std::string names;
  for (const std::string_view n : method_names) names.append(names.empty() ? "" : ", ").append(n);
  throw std::invalid_argument("unknown method '" + std::string(method) + "'; expected one of " + names);
}

/// How dense SGD's sum travels for `method`.
[[nodiscard]] constexpr wire_format dense_wire(std::string_view method) noexcept {
  return method == "dense-bf16"   ? wire_format::bfloat16
         : method == "dense-fp16" ? wire_format::float16
                                  : wire_format::native;
}

/// Options `t` (an aggregation's, or a named optimizer's) with each field it
/// has taken from the flat options `o`.
template <class T, class Value>
T filled(T t, const method_options<Value>& o) {
  if constexpr (requires { t.dimension; }) {  // a named optimizer's: the driver's fields too
    t.dimension = o.dimension;
    t.learning_rate = o.learning_rate;
    t.momentum = o.momentum;
    t.average = o.average;
    t.nonfinite = o.nonfinite;
  }
  if constexpr (requires { t.wire; }) t.wire = dense_wire(o.method);
  if constexpr (requires { t.k; }) t.k = o.k;
  if constexpr (requires { t.dense; }) {
    t.dense = o.dense;
    t.exec = o.exec;
  }
  if constexpr (requires { t.error_feedback; }) t.error_feedback = o.error_feedback;
  if constexpr (requires { t.feedback; })
    t.feedback = {o.error_feedback, o.momentum, o.nesterov, o.mask_momentum, false};
  if constexpr (requires { t.sketch; }) {
    t.sketch = o.sketch;
    t.topology = o.topology;
    t.root = o.root;
    t.slices = o.slices;
  }
  if constexpr (requires { t.recovery; }) t.recovery = o.recovery;
  if constexpr (requires { t.candidates_factor; }) {
    t.candidates_factor = o.candidates_factor;
    t.overlap_rows = o.overlap_rows;
  }
  if constexpr (requires { t.sketch_allreduce; }) t.sketch_allreduce = o.sketch_allreduce;
  if constexpr (requires { t.learning_rate_in_error; }) {  // FetchSGD's aggregation: momentum in sketch space
    t.momentum = o.momentum;
    t.mask_momentum = o.mask_momentum;
    t.learning_rate_in_error = o.update == update_choice::sgd;
  }
  return t;
}

/// The composition `o` names, built from `where` (a communicator; or rank and world).
template <class Transport, class Value, class... Where>
any_optimizer<Value> make_composed(const method_options<Value>& o, Where&... where) {
  return with_method_aggregation<Value>(o.method, [&]<class A>(std::type_identity<A>) {
    const auto make = [&]<class Rule>(std::type_identity<Rule>, typename Rule::options_type rule) {
      return any_optimizer<Value>(std::in_place_type<composed_optimizer<A, Rule, Transport>>, where...,
                                  composed_options<A, Rule>{.dimension = o.dimension,
                                                            .aggregation = filled(typename A::options_type{}, o),
                                                            .update = rule,
                                                            .learning_rate = o.learning_rate,
                                                            .average = o.average,
                                                            .dense = o.dense,
                                                            .nonfinite = o.nonfinite,
                                                            .exec = o.exec});
    };
    if (o.update == update_choice::adam || o.update == update_choice::adam_lazy) {
      return make(std::type_identity<adam_update<Value>>{}, {.lazy = o.update == update_choice::adam_lazy});
    }
    if (o.update == update_choice::aggregated_gradient)
      return make(std::type_identity<aggregated_gradient<Value>>{}, {});
    if (is_dense_method(o.method)) return make(std::type_identity<momentum_update<Value>>{}, {.momentum = o.momentum});
    return make(std::type_identity<sgd_update<Value>>{}, {});
  });
}

/// The named optimizer `o.method` names (its version-1 fingerprint and checkpoints).
template <class Value, class Transport>
any_optimizer<Value> make_named(const method_options<Value>& o, communicator<Transport>& comm) {
  const auto make = [&]<class Opt>(std::type_identity<Opt>) {
    if constexpr (!requires(typename Opt::options_type n) { n.dense; }) {
      if (!o.dense.empty()) bad_option("dense_sgd", "dense ranges mean nothing to dense SGD");
    }
    return any_optimizer<Value>(std::in_place_type<Opt>, comm, filled(typename Opt::options_type{}, o));
  };
  if (is_dense_method(o.method)) return make(std::type_identity<dense_sgd<Value, Transport>>{});
  if (o.method == "true-topk") return make(std::type_identity<true_topk_sgd<Value, Transport>>{});
  if (o.method == "local-topk") return make(std::type_identity<local_topk_sgd<Value, Transport>>{});
  if (o.method == "gtopk") return make(std::type_identity<gtopk_sgd<Value, Transport>>{});
  if (o.method == "fetchsgd") return make(std::type_identity<fetch_sgd<Value, Transport>>{});
  if (o.method == "global-sketch") return make(std::type_identity<global_sketch_sgd<Value, Transport>>{});
  return make(std::type_identity<sketched_sgd<Value, Transport>>{});
}

}  // namespace detail

/// The optimizer `o.method` names, over `comm`. Where a named optimizer
/// (`sketched_sgd`, `fetch_sgd`, ...) has the options asked for (its update
/// rule, masked momentum, top-k recovery, the communicator's table
/// allreduce), it is that optimizer, with its bits, bytes, fingerprint and
/// checkpoints; otherwise the same aggregation composed with the rule and
/// recovery asked for (`composed_optimizer`).
/// @throws std::invalid_argument for an unknown method (the message lists
/// `method_names`), or what the optimizer's constructor throws.
template <std::floating_point Value, transport Transport>
any_optimizer<Value> make_optimizer(communicator<Transport>& comm, const method_options<Value>& o) {
  const bool named = o.update == update_choice::sgd && o.mask_momentum && !o.nesterov && !o.sketch_allreduce &&
                     std::holds_alternative<top_k_recovery>(o.recovery.held);
  if (named && std::ranges::find(method_names, o.method) != method_names.end()) return detail::make_named(o, comm);
  return detail::make_composed<Transport>(o, comm);
}

/// The same method in split phase, for rank `rank` of `world`: the caller
/// carries each step's rounds (`any_optimizer::step_rounds`) and checks the
/// ranks' fingerprints. Always the composition, so its fingerprint is the
/// composition's; carried with sketchsgd's collectives, its updates equal
/// the transport form's bit for bit.
/// @throws std::invalid_argument as the transport form.
template <std::floating_point Value>
any_optimizer<Value> make_optimizer(int rank, int world, const method_options<Value>& o) {
  return detail::make_composed<external_collectives>(o, rank, world);
}

}  // namespace sketchsgd
