// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// FetchSGD (Rothchild, Panda, Ullah, Ivkin, Stoica, Braverman, Gonzalez,
/// Arora, "FetchSGD: Communication-Efficient Federated Learning with
/// Sketching", ICML 2020): stateless workers, momentum and error kept in
/// sketch space.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "sketchsgd/optim/sketched_sgd.hpp"

namespace sketchsgd {

/// How FetchSGD removes the applied coordinates from its error sketch.
enum class fetch_reset {
  zero_cells,  ///< zero every cell a coordinate of supp(Delta) hashes to, in S_e and S_u (what the authors found
               ///< stable)
  subtract,    ///< S_e -= S(Delta); S_u's hit cells are zeroed
};

/// Settings of `fetch_sgd`.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct fetch_sgd_options {
  /// Number of parameters d.
  std::uint64_t dimension = 0;
  /// Rows, columns and seed of the sketches (same on all ranks).
  sketch_config sketch{};
  /// Coordinates updated per step.
  std::size_t k = 0;
  /// Learning rate eta, applied inside the error sketch: S_e += eta S_u.
  Value learning_rate = Value{1};
  /// Momentum rho of S_u <- rho S_u + S_g.
  Value momentum = Value{0};
  /// Divide the summed gradient sketch by W (floating-point values only).
  bool average = false;
  /// How applied coordinates leave the error sketch.
  fetch_reset reset = fetch_reset::zero_cells;
  /// Where the server state lives: replicated on every rank, or at a root.
  sketchsgd::topology topology = sketchsgd::topology::allreduce;
  /// The root of the `root` topology.
  int root = 0;
  /// Coordinates that skip the sketch: allreduced every step and applied with
  /// plain momentum SGD (replicated on every rank).
  std::vector<dense_range> dense{};
  /// What a NaN or Inf in any rank's gradient does.
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;
  /// Threads for the CPU kernels.
  cpu_execution exec{};
};

/// FetchSGD. Per step:
///
/// 1. each worker sketches its gradient: S_i (no worker state);
/// 2. S_g = sum of S_i (divided by W when averaging);
/// 3. S_u <- rho S_u + S_g;  S_e <- S_e + eta S_u (the learning rate lives in
///    the error sketch, as in the paper);
/// 4. Delta = top k of S_e with estimated values; no second round;
/// 5. every cell of S_e and S_u that a coordinate of supp(Delta) hashes to is
///    zeroed (or, with `fetch_reset::subtract`, S_e -= S(Delta));
/// 6. the update is Delta itself: w <- w - Delta.
///
/// With the allreduce topology the server state (S_u, S_e) is replicated on
/// every rank and kept identical; with the root topology it lives at the
/// root, which broadcasts Delta (k 4-byte indices and k values).
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam HashFamily a `hash_family`.
template <sketch_value Value, transport Transport, hash_family HashFamily = multiply_shift>
class fetch_sgd {
 public:
  /// The options type.
  using options_type = fetch_sgd_options<Value>;

  /// Sets up the optimizer and checks the configuration across ranks.
  /// @throws std::invalid_argument for an unusable configuration;
  /// config_mismatch_error on every rank if ranks disagree.
  fetch_sgd(communicator<Transport>& comm, options_type options)
      : comm_(&comm),
        opt_(validated(std::move(options), comm.size())),
        split_(opt_.dimension, opt_.dense),
        s_g_(opt_.sketch),
        s_u_(opt_.sketch),
        s_e_(opt_.sketch),
        scratch_(static_cast<std::size_t>(split_.sparse_count())),
        dense_grad_(static_cast<std::size_t>(split_.dense_count())),
        dense_momentum_(static_cast<std::size_t>(split_.dense_count())) {
    fingerprint_ = make_fingerprint();
    detail::agree_on_fingerprint(*comm_, fingerprint_, "fetch_sgd");
    accounting_.stats().dense_ring_bytes_per_step =
        detail::dense_ring_bytes(opt_.dimension, comm_->size(), sizeof(Value));
  }

  /// One step with this rank's gradient (d values).
  /// @throws std::invalid_argument for a gradient of the wrong size;
  /// nonfinite_error on every rank under `throw_error`; transport errors.
  const model_update<Value>& step(std::span<const Value> gradient) {
    if (gradient.size() != opt_.dimension) {
      throw std::invalid_argument("fetch_sgd::step: gradient has " + std::to_string(gradient.size()) +
                                  " values, expected " + std::to_string(opt_.dimension));
    }
    accounting_.begin(comm_->counters());
    update_.indices.clear();
    update_.values.clear();
    update_.skipped = detail::nonfinite_consensus(*comm_, gradient, opt_.nonfinite, "fetch_sgd");
    accounting_.lap(&step_timing::communicate);
    if (!update_.skipped) {
      s_g_.zero();
      for (const auto& seg : split_.segments()) {
        s_g_.accumulate(gradient.subspan(static_cast<std::size_t>(seg.global), static_cast<std::size_t>(seg.length)),
                        seg.compact, opt_.exec);
      }
      split_.gather_dense(gradient, std::span<Value>(dense_grad_));
      accounting_.lap(&step_timing::compress);
      if (opt_.topology == topology::allreduce) {
        allreduce(*comm_, s_g_.table());
        accounting_.lap(&step_timing::communicate);
        server_step();
        accounting_.lap(&step_timing::recover);
      } else {
        reduce(*comm_, s_g_.table(), opt_.root, tree_algorithm::flat);
        accounting_.lap(&step_timing::communicate);
        std::vector<detail::wire_entry<Value>> delta(opt_.k, {detail::no_index, Value{}});
        if (comm_->rank() == opt_.root) {
          server_step();
          for (std::size_t j = 0; j < update_.indices.size(); ++j) {
            delta[j] = {static_cast<detail::wire_index>(update_.indices[j]), update_.values[j]};
          }
        }
        accounting_.lap(&step_timing::recover);
        broadcast(*comm_, std::span<detail::wire_entry<Value>>(delta), opt_.root, tree_algorithm::flat);
        detail::check_received_indices(std::span<const detail::wire_entry<Value>>(delta), opt_.dimension, "fetch_sgd");
        accounting_.lap(&step_timing::communicate);
        update_.indices.clear();
        update_.values.clear();
        for (const auto& e : delta) {
          if (e.index == detail::no_index) continue;
          update_.indices.push_back(e.index);
          update_.values.push_back(e.value);
        }
      }
      dense_step();
      accounting_.lap(&step_timing::communicate);
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
  /// The error sketch S_e (meaningful on every rank with the allreduce
  /// topology, at the root otherwise).
  [[nodiscard]] const count_sketch<Value, HashFamily, cpu_t>& error_sketch() const noexcept { return s_e_; }

  /// Writes the whole state (S_u, S_e, dense momentum, step count).
  /// @throws serialization_error if the stream fails.
  void save(std::ostream& os) const {
    detail::write_state_header(os, header(accounting_.stats().steps));
    detail::write_state_section(os, s_u_.table());
    detail::write_state_section(os, s_e_.table());
    detail::write_state_section(os, std::span<const Value>(dense_momentum_));
  }

  /// Restores a state written by `save` on the same rank of an identically
  /// configured job.
  /// @throws config_mismatch_error, serialization_error (state unchanged).
  void load(std::istream& is) {
    const std::uint64_t steps = detail::read_state_header(is, header(0), "fetch_sgd");
    count_sketch<Value, HashFamily, cpu_t> u(opt_.sketch);
    count_sketch<Value, HashFamily, cpu_t> e(opt_.sketch);
    std::vector<Value> dm(dense_momentum_.size());
    detail::read_state_section(is, u.table(), "fetch_sgd");
    detail::read_state_section(is, e.table(), "fetch_sgd");
    detail::read_state_section(is, std::span<Value>(dm), "fetch_sgd");
    s_u_ = std::move(u);
    s_e_ = std::move(e);
    dense_momentum_ = std::move(dm);
    accounting_.stats().steps = steps;
  }

 private:
  static options_type validated(options_type o, int world) {
    validate(o.sketch, HashFamily::max_cols);
    detail::check_selection<Value>("fetch_sgd", o.dimension, o.k, o.average, o.dense);
    if (o.topology == topology::root) {
      detail::check_root_rank("fetch_sgd", o.root, world);
      detail::check_wire_indices("fetch_sgd", o.dimension, detail::no_index);
    }
    return o;
  }

  detail::state_header header(std::uint64_t steps) const {
    return {detail::optimizer_kind::fetch_sgd,
            wire::value_type_code<Value>,
            fingerprint_,
            steps,
            static_cast<std::uint32_t>(comm_->rank()),
            static_cast<std::uint32_t>(comm_->size()),
            3};
  }

  std::uint64_t make_fingerprint() const {
    detail::fingerprint f;
    f.add(detail::optimizer_kind::fetch_sgd).add(wire::value_type_code<Value>).add(HashFamily::id);
    f.add(opt_.dimension).add(opt_.sketch.rows).add(opt_.sketch.cols).add(opt_.sketch.seed).add(opt_.k);
    f.add(opt_.momentum).add(opt_.average).add(opt_.reset).add(opt_.topology).add(opt_.root);
    f.add(opt_.dense.size());
    for (const dense_range& r : split_.dense()) f.add(r.offset).add(r.length);
    f.add(opt_.nonfinite).add(comm_->size());
    return f.value();
  }

  /// Momentum and error in sketch space, top k, reset; fills update_.
  void server_step() {
    detail::average_in_place(s_g_.table(), comm_->size(), opt_.average);
    const std::span<const Value> g = s_g_.table();
    const std::span<Value> u = s_u_.table();
    const std::span<Value> e = s_e_.table();
    for (std::size_t i = 0; i < u.size(); ++i) {
      u[i] = opt_.momentum * u[i] + g[i];
      e[i] += opt_.learning_rate * u[i];
    }
    auto delta = top_k(s_e_, split_.sparse_count(), opt_.k, std::span<Value>(scratch_), opt_.exec);
    if (opt_.reset == fetch_reset::zero_cells) {
      s_e_.zero_buckets_of(delta.indices);
    } else {
      std::vector<Value> negated(delta.values.size());
      for (std::size_t j = 0; j < negated.size(); ++j) negated[j] = Value{} - delta.values[j];
      s_e_.accumulate(delta.indices, negated);
    }
    s_u_.zero_buckets_of(delta.indices);
    split_.to_global(delta.indices);
    update_.indices = std::move(delta.indices);
    update_.values = std::move(delta.values);
  }

  /// The dense coordinates: allreduced gradient, momentum SGD, replicated.
  void dense_step() {
    if (dense_grad_.empty()) return;
    allreduce(*comm_, std::span<Value>(dense_grad_));
    detail::average_in_place(std::span<Value>(dense_grad_), comm_->size(), opt_.average);
    for (std::size_t i = 0; i < dense_grad_.size(); ++i) {
      dense_momentum_[i] = opt_.momentum * dense_momentum_[i] + dense_grad_[i];
      dense_grad_[i] = opt_.learning_rate * dense_momentum_[i];
    }
    detail::merge_with_dense(split_, update_.indices, update_.values, std::span<const Value>(dense_grad_));
  }

  communicator<Transport>* comm_;
  options_type opt_;
  detail::coordinate_split split_;
  count_sketch<Value, HashFamily, cpu_t> s_g_;
  count_sketch<Value, HashFamily, cpu_t> s_u_;
  count_sketch<Value, HashFamily, cpu_t> s_e_;
  std::vector<Value> scratch_;
  std::vector<Value> dense_grad_;
  std::vector<Value> dense_momentum_;
  std::uint64_t fingerprint_ = 0;
  detail::step_accounting accounting_;
  model_update<Value> update_;
};

}  // namespace sketchsgd
