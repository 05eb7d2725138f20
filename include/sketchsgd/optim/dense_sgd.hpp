// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The dense baseline: allreduce the full gradient, momentum SGD.

#include <cstddef>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/execution.hpp"
#include "sketchsgd/optim/accounting.hpp"
#include "sketchsgd/optim/fingerprint.hpp"
#include "sketchsgd/optim/nonfinite.hpp"
#include "sketchsgd/optim/state_io.hpp"
#include "sketchsgd/optim/update.hpp"
#include "sketchsgd/optim/validation.hpp"
#include "sketchsgd/serialize/wire.hpp"

namespace sketchsgd {

/// Settings of `dense_sgd`.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct dense_sgd_options {
  /// Number of parameters d.
  std::uint64_t dimension = 0;
  /// Learning rate eta.
  Value learning_rate = Value{1};
  /// Momentum m.
  Value momentum = Value{0};
  /// Divide the summed gradient by W (floating-point values only).
  bool average = false;
  /// What a NaN or Inf in any rank's gradient does.
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;
};

/// Dense distributed SGD: G = sum of the gradients (allreduce, / W when
/// averaging), u <- m u + G, update = eta u on every coordinate. Bytes per
/// rank per step: a ring allreduce of d values, 2 (W-1)/W d sizeof(Value).
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
template <sketch_value Value, transport Transport>
class dense_sgd {
 public:
  /// The options type.
  using options_type = dense_sgd_options<Value>;

  /// Sets up the optimizer and checks the configuration across ranks.
  /// @throws std::invalid_argument; config_mismatch_error on every rank.
  dense_sgd(communicator<Transport>& comm, options_type options)
      : comm_(&comm), opt_(validated(std::move(options))), momentum_(static_cast<std::size_t>(opt_.dimension)) {
    detail::fingerprint f;
    f.add(detail::optimizer_kind::dense_sgd).add(wire::value_type_code<Value>).add(opt_.dimension);
    f.add(opt_.momentum).add(opt_.average).add(opt_.nonfinite).add(comm_->size());
    fingerprint_ = f.value();
    detail::agree_on_fingerprint(*comm_, fingerprint_, "dense_sgd");
    accounting_.stats().dense_ring_bytes_per_step =
        detail::dense_ring_bytes(opt_.dimension, comm_->size(), sizeof(Value));
    update_.dense = true;
  }

  /// One step with this rank's gradient (d values); the update is dense.
  /// @throws std::invalid_argument; nonfinite_error; transport errors.
  const model_update<Value>& step(std::span<const Value> gradient) {
    if (gradient.size() != opt_.dimension) {
      throw std::invalid_argument("dense_sgd::step: gradient has " + std::to_string(gradient.size()) +
                                  " values, expected " + std::to_string(opt_.dimension));
    }
    accounting_.begin(comm_->counters());
    update_.skipped = detail::nonfinite_consensus(*comm_, gradient, opt_.nonfinite, "dense_sgd");
    if (update_.skipped) {
      update_.values.clear();
      update_.dense = false;  // nothing to apply
    } else {
      update_.dense = true;
      update_.values.assign(gradient.begin(), gradient.end());
      accounting_.lap(&step_timing::local);
      allreduce(*comm_, std::span<Value>(update_.values));  // the communicator's default algorithm
      accounting_.lap(&step_timing::communicate);
      const Value scale = average_factor();
      for (std::size_t i = 0; i < update_.values.size(); ++i) {
        momentum_[i] = opt_.momentum * momentum_[i] + update_.values[i] / scale;
        update_.values[i] = opt_.learning_rate * momentum_[i];
      }
      accounting_.lap(&step_timing::local);
    }
    accounting_.end(comm_->counters());
    return update_;
  }

  /// Communication so far.
  [[nodiscard]] const comm_stats& stats() const noexcept { return accounting_.stats(); }
  /// The options in force.
  [[nodiscard]] const options_type& options() const noexcept { return opt_; }
  /// Changes eta for the next steps; every rank must do the same.
  void set_learning_rate(Value eta) noexcept { opt_.learning_rate = eta; }

  /// Writes the momentum and step count.
  /// @throws serialization_error if the stream fails.
  void save(std::ostream& os) const {
    detail::write_state_header(os, header(accounting_.stats().steps));
    detail::write_state_section(os, std::span<const Value>(momentum_));
  }
  /// Restores a state written by `save`.
  /// @throws config_mismatch_error, serialization_error (state unchanged).
  void load(std::istream& is) {
    const std::uint64_t steps = detail::read_state_header(is, header(0), "dense_sgd");
    std::vector<Value> m(momentum_.size());
    detail::read_state_section(is, std::span<Value>(m), "dense_sgd");
    momentum_ = std::move(m);
    accounting_.stats().steps = steps;
  }

 private:
  static options_type validated(options_type o) {
    detail::check_selection<Value>("dense_sgd", o.dimension, 1, o.average, {});
    return o;
  }
  [[nodiscard]] Value average_factor() const noexcept {
    return opt_.average ? static_cast<Value>(comm_->size()) : Value{1};
  }
  detail::state_header header(std::uint64_t steps) const {
    return {detail::optimizer_kind::dense_sgd,
            wire::value_type_code<Value>,
            fingerprint_,
            steps,
            static_cast<std::uint32_t>(comm_->rank()),
            static_cast<std::uint32_t>(comm_->size()),
            1};
  }

  communicator<Transport>* comm_;
  options_type opt_;
  std::vector<Value> momentum_;
  std::uint64_t fingerprint_ = 0;
  detail::step_accounting accounting_;
  model_update<Value> update_;
};

}  // namespace sketchsgd
