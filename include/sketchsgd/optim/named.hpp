// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// How the named optimizers (`sketched_sgd`, `fetch_sgd`, ...) are made from
/// compositions: each keeps its options struct, its checkpoint kind and name,
/// and the version-1 fingerprint of main before the policy layer, so the same
/// options give the same bits, bytes and checkpoints.

#include <cstdint>
#include <type_traits>
#include <utility>

#include "sketchsgd/optim/driver.hpp"

namespace sketchsgd::detail {

/// The composed options of a named optimizer: its aggregation's and rule's
/// options, and the fields all named optimizers' options share.
template <class Aggregation, class Rule, class Options, class Execution>
composed_options<Aggregation, Rule> named_options(const Options& o, typename Aggregation::options_type aggregation,
                                                  typename Rule::options_type rule, Execution exec) {
  composed_options<Aggregation, Rule> c{.dimension = o.dimension,
                                        .aggregation = std::move(aggregation),
                                        .update = std::move(rule),
                                        .learning_rate = o.learning_rate,
                                        .average = o.average,
                                        .nonfinite = o.nonfinite,
                                        .exec = exec};
  if constexpr (requires { o.dense; }) c.dense = o.dense;
  return c;
}

/// A composition under a stable name. `Traits` gives `options_type` (the
/// named optimizer's options), `aggregation`, `update_rule`, `kind`, `name`,
/// `compose(options, execution)` (the composed options) and
/// `fingerprint(options, split, world)` (version 1).
template <class Traits, class Transport>
class named_optimizer
    : public composed_optimizer<typename Traits::aggregation, typename Traits::update_rule, Transport> {
  using base = composed_optimizer<typename Traits::aggregation, typename Traits::update_rule, Transport>;
  using Value = typename base::value_type;
  static constexpr bool on_cpu = std::is_same_v<typename base::device_type, cpu_t>;

 public:
  /// The options type.
  using options_type = typename Traits::options_type;
  /// How the device's kernels run (on the CPU, `options_type::exec` counts).
  using execution_type = typename device_ops<typename base::device_type>::execution;

  /// Sets up the optimizer and checks, with one allgather, that every rank
  /// has the same configuration.
  /// @throws std::invalid_argument for an unusable configuration (before any
  /// I/O); config_mismatch_error on every rank if ranks disagree.
  named_optimizer(communicator<Transport>& comm, options_type o)
      : named_optimizer(comm, std::move(o), execution_type{}, 0) {}
  /// The same on a device, with its execution settings.
  named_optimizer(communicator<Transport>& comm, options_type o, execution_type exec) requires(!on_cpu)
      : named_optimizer(comm, std::move(o), exec, 0) {}

  /// The options in force.
  [[nodiscard]] const options_type& options() const noexcept { return opt_; }
  /// Changes eta for the next steps; every rank must do the same.
  void set_learning_rate(Value eta) noexcept {
    base::set_learning_rate(eta);
    opt_.learning_rate = eta;
  }
  /// Sketched-SGD's compression ratio in the paper, 2 d / (r c + P k + k),
  /// in elements.
  [[nodiscard]] double paper_compression() const noexcept requires requires(const options_type& o) {
    o.candidates_factor;
  }
  {
    const auto p = static_cast<double>(opt_.candidates_factor);
    const auto k = static_cast<double>(opt_.k);
    return 2.0 * static_cast<double>(opt_.dimension) / (static_cast<double>(opt_.sketch.cells()) + p * k + k);
  }
  /// FetchSGD's error sketch S_e (on every rank with the allreduce topology,
  /// at the root otherwise).
  [[nodiscard]] const auto& error_sketch() const noexcept requires requires(const options_type& o) { o.reset; }
  { return this->aggregation().error_sketch(); }

 private:
  named_optimizer(communicator<Transport>& comm, options_type o, execution_type exec, int /*private*/)
      : base(comm, Traits::compose(o, execution_of(o, exec)),
             {Traits::kind, Traits::name,
              [o](const coordinate_split& split, int world) { return Traits::fingerprint(o, split, world); }}),
        opt_(std::move(o)) {}

  static execution_type execution_of(const options_type& o, execution_type exec) {
    if constexpr (on_cpu && requires { o.exec; }) {
      return o.exec;
    } else {
      return exec;
    }
  }

  options_type opt_;
};

}  // namespace sketchsgd::detail
