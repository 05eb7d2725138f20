// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Sketched-SGD (Ivkin, Rothchild, Ullah, Braverman, Stoica, Arora,
/// "Communication-efficient Distributed SGD with Sketching", NeurIPS 2019),
/// the variant the authors ran: local momentum with error feedback, sketch,
/// aggregate, P k candidates, an exact second round, top k, masking.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <istream>
#include <limits>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/hash/multiply_shift.hpp"
#include "sketchsgd/optim/accounting.hpp"
#include "sketchsgd/optim/coordinates.hpp"
#include "sketchsgd/optim/fingerprint.hpp"
#include "sketchsgd/optim/momentum.hpp"
#include "sketchsgd/optim/nonfinite.hpp"
#include "sketchsgd/optim/state_io.hpp"
#include "sketchsgd/optim/update.hpp"
#include "sketchsgd/optim/validation.hpp"
#include "sketchsgd/serialize/wire.hpp"
#include "sketchsgd/sketch/count_sketch.hpp"
#include "sketchsgd/sketch/topk.hpp"

namespace sketchsgd {

/// How sketches are aggregated.
enum class topology {
  allreduce,  ///< every rank gets the summed sketch and recovers identically: no root, no single point of failure
  root,       ///< a root reduces, recovers and broadcasts (the paper's parameter server)
};

/// Settings of `sketched_sgd` and `global_sketch_sgd`.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct sketched_sgd_options {
  /// Number of parameters d.
  std::uint64_t dimension = 0;
  /// Rows, columns and seed of the sketch (the seed must match on all ranks).
  sketch_config sketch{};
  /// Coordinates updated per step.
  std::size_t k = 0;
  /// P: the second round looks at P k candidates; 0 turns it off and applies
  /// the sketch's estimates of its top k.
  std::size_t candidates_factor = 3;
  /// Learning rate eta; the update is eta Delta (set_learning_rate for schedules).
  Value learning_rate = Value{1};
  /// Momentum m.
  Value momentum = Value{0};
  /// Error feedback (v <- v + u); off: v <- u.
  bool error_feedback = true;
  /// Divide the aggregated sum by W (floating-point values only).
  bool average = false;
  /// How sketches are aggregated (ignored by global_sketch_sgd: allreduce).
  sketchsgd::topology topology = sketchsgd::topology::allreduce;
  /// The root of the `root` topology (a parameter server: flat reduce and
  /// broadcast, every worker talks to the root directly).
  int root = 0;
  /// Coordinates that skip the sketch and are allreduced every step.
  std::vector<dense_range> dense{};
  /// What a NaN or Inf in any rank's gradient does.
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;
  /// Threads for the CPU kernels.
  cpu_execution exec{};
  /// Overlap sketching with the table's allreduce (allreduce topology, rows
  /// > 1): rows are sketched a group at a time (one row per thread of `exec`,
  /// at most half the rows) and each finished group is allreduced on a helper thread while the next
  /// is sketched. The transport is then called from that thread (one call at
  /// a time): MPI needs MPI_THREAD_SERIALIZED or above; inproc and tcp always
  /// allow it. Every rank must agree (it is part of the configuration);
  /// results match the non-overlapped step up to floating-point summation
  /// order (exactly for integer values).
  bool overlap_rows = false;
};

namespace detail {

/// Index type on the wire for candidate and update broadcasts: 4 bytes, as in
/// the paper's byte counts (d must stay below 2^32 - 1 for the root topology).
using wire_index = std::uint32_t;
inline constexpr wire_index no_index = std::numeric_limits<wire_index>::max();

template <class Value>
struct wire_entry {
  wire_index index;
  Value value;
};

/// The index of a received wire index or entry.
constexpr wire_index index_of(wire_index i) noexcept { return i; }
template <class Value>
constexpr wire_index index_of(const wire_entry<Value>& e) noexcept {
  return e.index;
}

/// Checks indices a peer sent before they index anything here: below
/// `dimension`, padding (`no_index`) only at the end and, if `increasing`,
/// strictly increasing (as every sender writes them).
/// @throws transport_error naming the optimizer and the bad index.
template <class Item>
void check_received_indices(std::span<const Item> items, std::uint64_t dimension, const char* name,
                            bool increasing = true) {
  std::uint64_t floor = 0;
  bool padding = false;
  for (const Item& item : items) {
    const wire_index i = index_of(item);
    if (i == no_index) {
      padding = true;
      continue;
    }
    if (padding || i >= dimension || (increasing && i < floor)) {
      throw transport_error(std::string(name) + ": a peer sent index " + std::to_string(i) +
                            " (d = " + std::to_string(dimension) +
                            "; indices must stay below d, increase, and come before the padding)");
    }
    floor = std::uint64_t{i} + 1;
  }
}

}  // namespace detail

namespace detail {

/// The configuration fingerprint of Sketched-SGD and global-sketch SGD, which
/// every rank must share: the CPU optimizers and the CUDA ones both use it,
/// so CPU and GPU ranks of one job agree.
template <class Value, class HashFamily>
std::uint64_t sketched_sgd_fingerprint(optimizer_kind kind, const sketched_sgd_options<Value>& o,
                                       const coordinate_split& split, int world) {
  fingerprint f;
  f.add(kind).add(wire::value_type_code<Value>).add(HashFamily::id).add(o.dimension);
  f.add(o.sketch.rows).add(o.sketch.cols).add(o.sketch.seed).add(o.k).add(o.candidates_factor);
  f.add(o.momentum).add(o.error_feedback).add(o.average).add(o.topology).add(o.root);
  f.add(o.dense.size());
  for (const dense_range& r : split.dense()) f.add(r.offset).add(r.length);
  f.add(o.nonfinite).add(world);
  if (o.overlap_rows) f.add(std::uint64_t{0x6F7665726C6170});  // only when set: older fingerprints stay valid
  return f.value();
}

}  // namespace detail

/// Sketched-SGD. Per step, on every worker i with local gradient g_i:
///
/// 1. u_i <- m u_i + g_i;  v_i <- v_i + u_i (error feedback on the momentum);
/// 2. S_i = sketch of v_i (dense coordinates excluded);
/// 3. S = sum of S_i: allreduce (every rank recovers identically) or reduce to
///    a root that recovers and broadcasts;
/// 4. C = the P k coordinates with the largest |estimate| in S;
/// 5. second round: x_C = sum_i v_i[C] exactly (allreduce, or reduce after the
///    root broadcast C);
/// 6. Delta = the k entries of x_C largest in magnitude (ties to the lower
///    index); with P = 0, Delta = top k of S with estimated values;
/// 7. the update is eta Delta (eta Delta / W when averaging);
/// 8. u_i and v_i are zeroed at supp(Delta) (momentum masking, error reset);
/// 9. dense coordinates are allreduced every step and applied in full; only
///    their v is reset, their momentum keeps running.
///
/// Bytes per worker per step, root topology, non-root rank: up
/// 4 r c + 4 P k, down 4 P k (candidate indices) + 8 k (indices + values),
/// with 4-byte values; allreduce topology: a ring allreduce of the r c table
/// (2 (W-1)/W 4 r c) plus one allreduce of P k values.
///
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam HashFamily a `hash_family`.
template <sketch_value Value, transport Transport, hash_family HashFamily = multiply_shift>
class sketched_sgd {
 public:
  /// The options type.
  using options_type = sketched_sgd_options<Value>;

  /// Sets up the optimizer and checks, with one allgather, that every rank
  /// has the same configuration.
  /// @throws std::invalid_argument for an unusable configuration (before any
  /// I/O); config_mismatch_error on every rank if ranks disagree.
  sketched_sgd(communicator<Transport>& comm, options_type options)
      : sketched_sgd(comm, std::move(options), detail::optimizer_kind::sketched_sgd, "sketched_sgd") {}

  /// One step with this rank's gradient (d values).
  /// @throws std::invalid_argument if the gradient has the wrong size;
  /// nonfinite_error (on every rank) under `throw_error`;
  /// transport_error/timeout_error from the transport.
  const model_update<Value>& step(std::span<const Value> gradient) {
    if (gradient.size() != opt_.dimension) {
      throw std::invalid_argument(std::string(name_) + "::step: gradient has " + std::to_string(gradient.size()) +
                                  " values, expected " + std::to_string(opt_.dimension));
    }
    accounting_.begin(comm_->counters());
    update_.indices.clear();
    update_.values.clear();
    update_.skipped = detail::nonfinite_consensus(*comm_, gradient, opt_.nonfinite, name_);
    accounting_.lap(&step_timing::communicate);
    if (!update_.skipped) {
      state_.accumulate(gradient, opt_.momentum, opt_.error_feedback);
      accounting_.lap(&step_timing::local);
      if (overlapping()) {
        sketch_v_overlapped();
        step_allreduce(/*table_reduced=*/true);
      } else if (opt_.topology == topology::allreduce) {
        sketch_v();
        accounting_.lap(&step_timing::compress);
        step_allreduce(/*table_reduced=*/false);
      } else {
        sketch_v();
        accounting_.lap(&step_timing::compress);
        step_root();
      }
      finish_update();
      accounting_.lap(&step_timing::local);
    }
    accounting_.end(comm_->counters());
    return update_;
  }

  /// Communication so far.
  [[nodiscard]] const comm_stats& stats() const noexcept { return accounting_.stats(); }
  /// The options in force.
  [[nodiscard]] const options_type& options() const noexcept { return opt_; }
  /// Changes eta for the next steps (schedules); every rank must do the same.
  void set_learning_rate(Value eta) noexcept { opt_.learning_rate = eta; }
  /// The paper's compression ratio 2 d / (r c + P k + k), in elements.
  [[nodiscard]] double paper_compression() const noexcept {
    const double p = static_cast<double>(opt_.candidates_factor);
    const double k = static_cast<double>(opt_.k);
    return 2.0 * static_cast<double>(opt_.dimension) / (static_cast<double>(opt_.sketch.cells()) + p * k + k);
  }

  /// Writes this rank's whole state (momentum, error, step count).
  /// @throws serialization_error if the stream fails.
  void save(std::ostream& os) const {
    detail::write_state_header(
        os, {kind_, wire::value_type_code<Value>, fingerprint_, accounting_.stats().steps,
             static_cast<std::uint32_t>(comm_->rank()), static_cast<std::uint32_t>(comm_->size()), 2});
    detail::write_state_section(os, state_.u());
    detail::write_state_section(os, state_.v());
  }

  /// Restores a state written by `save` on the same rank of an identically
  /// configured job; afterwards steps continue bit-identically.
  /// @throws config_mismatch_error for another configuration, rank or world;
  /// serialization_error for malformed bytes (the state is then unchanged).
  void load(std::istream& is) {
    const std::uint64_t steps = detail::read_state_header(
        is,
        {kind_, wire::value_type_code<Value>, fingerprint_, 0, static_cast<std::uint32_t>(comm_->rank()),
         static_cast<std::uint32_t>(comm_->size()), 2},
        name_);
    detail::momentum_error<Value> fresh(static_cast<std::size_t>(opt_.dimension));
    detail::read_state_section(is, std::span<Value>(fresh.u_storage()), name_);
    detail::read_state_section(is, std::span<Value>(fresh.v_storage()), name_);
    state_ = std::move(fresh);
    accounting_.stats().steps = steps;
  }

 protected:
  /// For `global_sketch_sgd`: the same engine under another name and kind.
  sketched_sgd(communicator<Transport>& comm, options_type options, detail::optimizer_kind kind, const char* name)
      : comm_(&comm),
        opt_(validated(std::move(options), comm.size(), name)),
        kind_(kind),
        name_(name),
        split_(opt_.dimension, opt_.dense),
        state_(static_cast<std::size_t>(opt_.dimension)),
        sketch_(opt_.sketch),
        scratch_(static_cast<std::size_t>(split_.sparse_count())),
        dense_values_(static_cast<std::size_t>(split_.dense_count())) {
    fingerprint_ = make_fingerprint();
    detail::agree_on_fingerprint(*comm_, fingerprint_, name_);
    accounting_.stats().dense_ring_bytes_per_step =
        detail::dense_ring_bytes(opt_.dimension, comm_->size(), sizeof(Value));
    accounting_.begin(comm_->counters());  // the setup's exchange is not a step
  }

 private:
  static options_type validated(options_type o, int world, const char* name) {
    validate(o.sketch, HashFamily::max_cols);
    detail::check_selection<Value>(name, o.dimension, o.k, o.average, o.dense);
    if (o.topology == topology::root) {
      detail::check_root_rank(name, o.root, world);
      detail::check_wire_indices(name, o.dimension, detail::no_index);
    }
    return o;
  }

  std::uint64_t make_fingerprint() const {
    return detail::sketched_sgd_fingerprint<Value, HashFamily>(kind_, opt_, split_, comm_->size());
  }

  /// Sketch of v over the sparse coordinates, and the dense coordinates' v.
  void sketch_v() {
    sketch_.zero();
    const std::span<const Value> v = state_.v();
    for (const auto& seg : split_.segments()) {
      sketch_.accumulate(v.subspan(static_cast<std::size_t>(seg.global), static_cast<std::size_t>(seg.length)),
                         seg.compact, opt_.exec);
    }
    split_.gather_dense(v, std::span<Value>(dense_values_));
  }

  [[nodiscard]] bool overlapping() const noexcept {
    return opt_.overlap_rows && opt_.topology == topology::allreduce && sketch_.rows() > 1;
  }

  /// sketch_v with the table allreduced a group of rows at a time, each group
  /// on a helper thread while the next is sketched. Timing: `compress` is the
  /// sketching, `communicate` only the wait for the reduction it did not hide.
  void sketch_v_overlapped() {
    sketch_.zero();
    const std::span<const Value> v = state_.v();
    const std::size_t rows = sketch_.rows();
    const std::size_t cols = sketch_.cols();
    // A row per thread, but at least two groups, or nothing would overlap.
    const std::size_t group = std::clamp<std::size_t>(opt_.exec.resolved_threads(), 1, (rows + 1) / 2);
    std::future<void> in_flight;  // its destructor waits, also when we throw
    double waited = 0;
    for (std::size_t first = 0; first < rows; first += group) {
      const std::size_t n = std::min(group, rows - first);
      for (const auto& seg : split_.segments()) {
        sketch_.accumulate_rows(v.subspan(static_cast<std::size_t>(seg.global), static_cast<std::size_t>(seg.length)),
                                seg.compact, first, n, opt_.exec);
      }
      if (in_flight.valid()) {
        const auto start = std::chrono::steady_clock::now();
        in_flight.get();
        waited += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
      const std::span<Value> finished = sketch_.table().subspan(first * cols, n * cols);
      in_flight = std::async(std::launch::async, [this, finished] { allreduce(*comm_, finished); });
    }
    split_.gather_dense(v, std::span<Value>(dense_values_));
    accounting_.lap(&step_timing::compress);
    accounting_.reattribute(&step_timing::compress, &step_timing::communicate, waited);
    in_flight.get();  // step_allreduce laps this last wait as communication
  }

  [[nodiscard]] std::size_t candidate_count() const noexcept {
    return static_cast<std::size_t>(std::min<std::uint64_t>(opt_.candidates_factor * opt_.k, split_.sparse_count()));
  }

  /// Sets update_ (global indices, exact or estimated summed values) from
  /// the chosen compact indices and their values.
  void set_delta(std::vector<std::uint64_t> compact, std::vector<Value> values) {
    split_.to_global(compact);
    update_.indices = std::move(compact);
    update_.values = std::move(values);
  }

  void step_allreduce(bool table_reduced) {
    if (!table_reduced) allreduce(*comm_, sketch_.table());
    if (!dense_values_.empty()) allreduce(*comm_, std::span<Value>(dense_values_));
    accounting_.lap(&step_timing::communicate);
    const std::uint64_t ds = split_.sparse_count();
    if (opt_.candidates_factor == 0) {
      auto best = top_k(sketch_, ds, opt_.k, std::span<Value>(scratch_), opt_.exec);
      set_delta(std::move(best.indices), std::move(best.values));
      accounting_.lap(&step_timing::recover);
      return;
    }
    auto candidates = top_k(sketch_, ds, candidate_count(), std::span<Value>(scratch_), opt_.exec);
    split_.to_global(candidates.indices);
    std::vector<Value> exact(candidates.size());
    for (std::size_t j = 0; j < exact.size(); ++j) exact[j] = state_.v()[candidates.indices[j]];
    accounting_.lap(&step_timing::recover);
    allreduce(*comm_, std::span<Value>(exact));  // second round: P k values
    accounting_.lap(&step_timing::communicate);
    const auto best = top_k(exact, opt_.k);
    accounting_.lap(&step_timing::recover);
    update_.indices.reserve(best.size());
    for (const std::uint64_t pos : best.indices) update_.indices.push_back(candidates.indices[pos]);
    update_.values = best.values;
  }

  void step_root() {
    const bool is_root = comm_->rank() == opt_.root;
    reduce(*comm_, sketch_.table(), opt_.root, tree_algorithm::flat);
    if (!dense_values_.empty()) allreduce(*comm_, std::span<Value>(dense_values_));
    accounting_.lap(&step_timing::communicate);
    const std::uint64_t ds = split_.sparse_count();
    const std::size_t k = std::min<std::size_t>(opt_.k, static_cast<std::size_t>(ds));
    std::vector<detail::wire_entry<Value>> delta(k, {detail::no_index, Value{}});
    if (opt_.candidates_factor == 0) {
      if (is_root) {
        auto best = top_k(sketch_, ds, k, std::span<Value>(scratch_), opt_.exec);
        split_.to_global(best.indices);
        for (std::size_t j = 0; j < best.size(); ++j) {
          delta[j] = {static_cast<detail::wire_index>(best.indices[j]), best.values[j]};
        }
      }
    } else {
      std::vector<detail::wire_index> candidates(candidate_count(), detail::no_index);
      if (is_root) {
        auto c = top_k(sketch_, ds, candidates.size(), std::span<Value>(scratch_), opt_.exec);
        split_.to_global(c.indices);
        for (std::size_t j = 0; j < c.size(); ++j) candidates[j] = static_cast<detail::wire_index>(c.indices[j]);
      }
      broadcast(*comm_, std::span<detail::wire_index>(candidates), opt_.root, tree_algorithm::flat);  // down: 4 P k
      detail::check_received_indices(std::span<const detail::wire_index>(candidates), opt_.dimension, name_);
      std::vector<Value> exact(candidates.size(), Value{});
      for (std::size_t j = 0; j < exact.size(); ++j) {
        if (candidates[j] != detail::no_index) exact[j] = state_.v()[candidates[j]];
      }
      reduce(*comm_, std::span<Value>(exact), opt_.root, tree_algorithm::flat);  // up: 4 P k
      if (is_root) {
        // Padding slots carry zeros; drop them before choosing.
        std::vector<Value> real;
        std::vector<detail::wire_index> real_index;
        for (std::size_t j = 0; j < exact.size(); ++j) {
          if (candidates[j] != detail::no_index) {
            real.push_back(exact[j]);
            real_index.push_back(candidates[j]);
          }
        }
        const auto best = top_k(real, k);
        for (std::size_t j = 0; j < best.size(); ++j) delta[j] = {real_index[best.indices[j]], best.values[j]};
      }
    }
    accounting_.lap(&step_timing::recover);
    broadcast(*comm_, std::span<detail::wire_entry<Value>>(delta), opt_.root, tree_algorithm::flat);  // down: 8 k
    detail::check_received_indices(std::span<const detail::wire_entry<Value>>(delta), opt_.dimension, name_);
    accounting_.lap(&step_timing::communicate);
    for (const auto& e : delta) {
      if (e.index == detail::no_index) continue;
      update_.indices.push_back(e.index);
      update_.values.push_back(e.value);
    }
  }

  /// Scales Delta by eta (and 1/W), masks the state, adds the dense part.
  void finish_update() {
    detail::average_in_place(std::span<Value>(update_.values), comm_->size(), opt_.average);
    for (Value& x : update_.values) x *= opt_.learning_rate;
    state_.mask(update_.indices);
    if (split_.dense_count() != 0) {
      detail::average_in_place(std::span<Value>(dense_values_), comm_->size(), opt_.average);
      for (Value& x : dense_values_) x *= opt_.learning_rate;
      for (const dense_range& r : split_.dense()) state_.reset_error(r.offset, r.length);
      detail::merge_with_dense(split_, update_.indices, update_.values, std::span<const Value>(dense_values_));
    }
  }

  communicator<Transport>* comm_;
  options_type opt_;
  detail::optimizer_kind kind_;
  const char* name_;
  detail::coordinate_split split_;
  detail::momentum_error<Value> state_;
  count_sketch<Value, HashFamily, cpu_t> sketch_;
  std::vector<Value> scratch_;       // d_sparse estimates, reused every step
  std::vector<Value> dense_values_;  // the dense coordinates' v, then their update
  std::uint64_t fingerprint_ = 0;
  detail::step_accounting accounting_;
  model_update<Value> update_;
};

}  // namespace sketchsgd
