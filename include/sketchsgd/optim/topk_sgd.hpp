// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The top-k baselines a sketching method is judged against:
/// `true_topk_sgd` (dense traffic, the accuracy upper bound of any top-k
/// scheme), `local_topk_sgd` (DGC-style sparse exchange, whose traffic grows
/// with W) and `gtopk_sgd` (Shi et al.'s global top-k by pairwise merges).

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

/// Settings of `true_topk_sgd` and `local_topk_sgd`.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct topk_sgd_options {
  /// Number of parameters d.
  std::uint64_t dimension = 0;
  /// Coordinates selected per step (per worker for local top-k).
  std::size_t k = 0;
  /// Learning rate eta.
  Value learning_rate = Value{1};
  /// Momentum m.
  Value momentum = Value{0};
  /// Error feedback (v <- v + u); off: v <- u.
  bool error_feedback = true;
  /// Divide the aggregated sum by W (floating-point values only).
  bool average = false;
  /// Coordinates never compressed: allreduced every step and applied in full.
  std::vector<dense_range> dense{};
  /// What a NaN or Inf in any rank's gradient does.
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;
  /// Threads for the selection.
  cpu_execution exec{};
};

namespace detail {

/// Shared by the two baselines: worker state, dense coordinates, accounting,
/// checkpoints. `Derived` provides `select()` filling `update_` with summed
/// values at global indices, and says which coordinates to mask.
template <sketch_value Value, transport Transport>
class topk_baseline {
 public:
  using options_type = topk_sgd_options<Value>;

  [[nodiscard]] const comm_stats& stats() const noexcept { return accounting_.stats(); }
  [[nodiscard]] const options_type& options() const noexcept { return opt_; }
  void set_learning_rate(Value eta) noexcept { opt_.learning_rate = eta; }

  void save(std::ostream& os) const {
    write_state_header(os, header(accounting_.stats().steps));
    write_state_section(os, state_.u());
    write_state_section(os, state_.v());
  }
  void load(std::istream& is) {
    const std::uint64_t steps = read_state_header(is, header(0), name_);
    momentum_error<Value> fresh(static_cast<std::size_t>(opt_.dimension));
    read_state_section(is, std::span<Value>(fresh.u_storage()), name_);
    read_state_section(is, std::span<Value>(fresh.v_storage()), name_);
    state_ = std::move(fresh);
    accounting_.stats().steps = steps;
  }

 protected:
  topk_baseline(communicator<Transport>& comm, options_type o, optimizer_kind kind, const char* name)
      : comm_(&comm),
        opt_(validated(std::move(o), kind, name)),
        kind_(kind),
        name_(name),
        split_(opt_.dimension, opt_.dense),
        state_(static_cast<std::size_t>(opt_.dimension)),
        sparse_v_(needs_sparse_copy() ? static_cast<std::size_t>(split_.sparse_count()) : 0),
        dense_values_(static_cast<std::size_t>(split_.dense_count())) {
    fingerprint f;
    f.add(kind_).add(wire::value_type_code<Value>).add(opt_.dimension).add(opt_.k).add(opt_.momentum);
    f.add(opt_.error_feedback).add(opt_.average).add(opt_.dense.size());
    for (const dense_range& r : split_.dense()) f.add(r.offset).add(r.length);
    f.add(opt_.nonfinite).add(comm_->size());
    fingerprint_ = f.value();
    agree_on_fingerprint(*comm_, fingerprint_, name_);
    accounting_.stats().dense_ring_bytes_per_step =
        detail::dense_ring_bytes(opt_.dimension, comm_->size(), sizeof(Value));
  }

  /// The common step around `select` (which sets update_ and `masked`).
  template <class Select>
  const model_update<Value>& run_step(std::span<const Value> gradient, Select select) {
    if (gradient.size() != opt_.dimension) {
      throw std::invalid_argument(std::string(name_) + "::step: gradient has " + std::to_string(gradient.size()) +
                                  " values, expected " + std::to_string(opt_.dimension));
    }
    accounting_.begin(comm_->counters());
    update_.indices.clear();
    update_.values.clear();
    update_.skipped = nonfinite_consensus(*comm_, gradient, opt_.nonfinite, name_);
    accounting_.lap(&step_timing::communicate);
    if (!update_.skipped) {
      state_.accumulate(gradient, opt_.momentum, opt_.error_feedback);
      // The sparse coordinates of v, renumbered contiguously (a copy only
      // where v itself will not do, see needs_sparse_copy).
      if (!sparse_v_.empty()) {
        for (const auto& seg : split_.segments()) {
          std::copy_n(state_.v().begin() + static_cast<std::ptrdiff_t>(seg.global), seg.length,
                      sparse_v_.begin() + static_cast<std::ptrdiff_t>(seg.compact));
        }
      }
      split_.gather_dense(state_.v(), std::span<Value>(dense_values_));
      accounting_.lap(&step_timing::local);
      std::vector<std::uint64_t> masked = select();  // laps its own phases
      if (!dense_values_.empty()) allreduce(*comm_, std::span<Value>(dense_values_));
      accounting_.lap(&step_timing::communicate);
      detail::average_in_place(std::span<Value>(update_.values), comm_->size(), opt_.average);
      for (Value& x : update_.values) x *= opt_.learning_rate;
      state_.mask(masked);
      if (!dense_values_.empty()) {
        detail::average_in_place(std::span<Value>(dense_values_), comm_->size(), opt_.average);
        for (Value& x : dense_values_) x *= opt_.learning_rate;
        for (const dense_range& r : split_.dense()) state_.reset_error(r.offset, r.length);
        merge_with_dense(split_, update_.indices, update_.values, std::span<const Value>(dense_values_));
      }
      accounting_.lap(&step_timing::local);
    }
    accounting_.end(comm_->counters());
    return update_;
  }

  static options_type validated(options_type o, optimizer_kind kind, const char* name) {
    check_selection<Value>(name, o.dimension, o.k, o.average, o.dense);
    // True top-k allreduces a dense vector; the others send 4-byte indices.
    if (kind != optimizer_kind::true_topk_sgd) check_wire_indices(name, o.dimension, no_index);
    return o;
  }

  state_header header(std::uint64_t steps) const {
    return {kind_,
            wire::value_type_code<Value>,
            fingerprint_,
            steps,
            static_cast<std::uint32_t>(comm_->rank()),
            static_cast<std::uint32_t>(comm_->size()),
            2};
  }

  communicator<Transport>* comm_;
  options_type opt_;
  optimizer_kind kind_;
  const char* name_;
  coordinate_split split_;
  momentum_error<Value> state_;
  /// v's sparse coordinates, renumbered contiguously: v itself when there
  /// are no dense ranges (then the numbering is the identity).
  [[nodiscard]] std::span<const Value> sparse_v() const noexcept {
    return sparse_v_.empty() ? state_.v() : std::span<const Value>(sparse_v_);
  }
  /// True top-k sums v's sparse part in place, so it needs its own copy;
  /// the others only read it, and need one only to skip dense ranges.
  [[nodiscard]] bool needs_sparse_copy() const noexcept {
    return kind_ == optimizer_kind::true_topk_sgd || split_.dense_count() != 0;
  }

  std::vector<Value> sparse_v_;
  std::vector<Value> dense_values_;
  std::uint64_t fingerprint_ = 0;
  step_accounting accounting_;
  model_update<Value> update_;
};

}  // namespace detail

/// True top-k with error feedback (Stich et al. 2018; Karimireddy et al.
/// 2019): local momentum and error as in Sketched-SGD, an allreduce of the
/// dense v (2 (W-1)/W d sizeof(Value) bytes per rank), the global top k of
/// the sum, masking at its support. The accuracy upper bound of any top-k
/// scheme, at dense cost.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
template <sketch_value Value, transport Transport>
class true_topk_sgd : public detail::topk_baseline<Value, Transport> {
  using base = detail::topk_baseline<Value, Transport>;

 public:
  /// The options type.
  using options_type = typename base::options_type;

  /// Sets up the optimizer and checks the configuration across ranks.
  /// @throws std::invalid_argument; config_mismatch_error on every rank.
  true_topk_sgd(communicator<Transport>& comm, options_type options)
      : base(comm, std::move(options), detail::optimizer_kind::true_topk_sgd, "true_topk_sgd") {}

  /// One step with this rank's gradient (d values).
  /// @throws std::invalid_argument; nonfinite_error; transport errors.
  const model_update<Value>& step(std::span<const Value> gradient) {
    return this->run_step(gradient, [this] {
      allreduce(*this->comm_, std::span<Value>(this->sparse_v_));
      this->accounting_.lap(&step_timing::communicate);
      auto best = top_k(this->sparse_v_, this->opt_.k, this->opt_.exec);
      this->accounting_.lap(&step_timing::recover);
      this->split_.to_global(best.indices);
      this->update_.indices = best.indices;
      this->update_.values = std::move(best.values);
      return std::move(best.indices);
    });
  }
};

/// Local top-k with error feedback (DGC-style, Lin et al. 2018): each worker
/// selects the top k of its own v_i, the (index, value) pairs of all workers
/// are exchanged with one allgatherv and summed (identically on every rank),
/// and each worker masks its own support. Bytes received per rank grow with
/// W: (W-1) k (4 + sizeof(Value)) per step, the cost sketches remove.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
template <sketch_value Value, transport Transport>
class local_topk_sgd : public detail::topk_baseline<Value, Transport> {
  using base = detail::topk_baseline<Value, Transport>;

 public:
  /// The options type.
  using options_type = typename base::options_type;

  /// Sets up the optimizer and checks the configuration across ranks.
  /// @throws std::invalid_argument; config_mismatch_error on every rank.
  local_topk_sgd(communicator<Transport>& comm, options_type options)
      : base(comm, std::move(options), detail::optimizer_kind::local_topk_sgd, "local_topk_sgd") {}

  /// One step with this rank's gradient (d values).
  /// @throws std::invalid_argument; nonfinite_error; transport errors.
  const model_update<Value>& step(std::span<const Value> gradient) {
    return this->run_step(gradient, [this] {
      auto mine = top_k(this->sparse_v(), this->opt_.k, this->opt_.exec);
      this->split_.to_global(mine.indices);
      std::vector<detail::wire_entry<Value>> out(mine.size());
      for (std::size_t j = 0; j < out.size(); ++j) {
        out[j] = {static_cast<detail::wire_index>(mine.indices[j]), mine.values[j]};
      }
      this->accounting_.lap(&step_timing::compress);
      const auto all = allgatherv(*this->comm_, std::span<const detail::wire_entry<Value>>(out),
                                  {.max_total_elements = this->opt_.k * static_cast<std::size_t>(this->comm_->size())});
      this->accounting_.lap(&step_timing::communicate);
      // Sum by index; the gathered order is the same everywhere, so the sums
      // are bit-identical on every rank.
      // Each rank's list is sorted, the concatenation is not.
      detail::check_received_indices(std::span<const detail::wire_entry<Value>>(all.values), this->opt_.dimension,
                                     "local_topk_sgd", /*increasing=*/false);
      std::vector<detail::wire_entry<Value>> entries = all.values;
      std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
      for (const auto& e : entries) {
        if (this->update_.indices.empty() || this->update_.indices.back() != e.index) {
          this->update_.indices.push_back(e.index);
          this->update_.values.push_back(e.value);
        } else {
          this->update_.values.back() += e.value;
        }
      }
      this->accounting_.lap(&step_timing::recover);
      return std::move(mine.indices);
    });
  }
};

namespace detail {

/// Union of two index-sorted entry lists (padding `no_index` ignored), values
/// summed at common indices (`a`'s first), then the k largest by magnitude
/// (ties to the lower index), back in index order and padded to k.
template <class Value>
std::vector<wire_entry<Value>> merge_top_k(std::span<const wire_entry<Value>> a, std::span<const wire_entry<Value>> b,
                                           std::size_t k) {
  std::vector<std::uint64_t> index;
  std::vector<Value> value;
  std::size_t i = 0;
  std::size_t j = 0;
  const auto live = [](const wire_entry<Value>& e) { return e.index != no_index; };
  while (i < a.size() || j < b.size()) {
    if (i < a.size() && !live(a[i])) {
      i = a.size();
      continue;
    }
    if (j < b.size() && !live(b[j])) {
      j = b.size();
      continue;
    }
    if (j >= b.size() || (i < a.size() && a[i].index < b[j].index)) {
      index.push_back(a[i].index);
      value.push_back(a[i++].value);
    } else if (i >= a.size() || b[j].index < a[i].index) {
      index.push_back(b[j].index);
      value.push_back(b[j++].value);
    } else {
      index.push_back(a[i].index);
      value.push_back(a[i++].value + b[j++].value);
    }
  }
  const auto best = top_k(value, k);
  std::vector<wire_entry<Value>> out(k, {no_index, Value{}});
  for (std::size_t n = 0; n < best.size(); ++n) {
    out[n] = {static_cast<wire_index>(index[best.indices[n]]), best.values[n]};
  }
  return out;
}

}  // namespace detail

/// gTop-k (Shi, Wang, Chu et al., "A Distributed Synchronous SGD Algorithm
/// with Global Top-k Sparsification", ICDCS 2019) with error feedback: each
/// worker selects the top k of its own v_i; then ceil(log2 W) rounds of a
/// binomial tree towards rank 0 in which a rank sends its current k entries
/// (4-byte index, value) to its partner, which sums common indices and keeps
/// the top k of the union; rank 0 broadcasts the final k. Any W works (the
/// tree handles non-powers of two). Each worker masks its momentum and error
/// where its own selection made it into the final k, so the contributions
/// dropped by a merge stay in the error for later steps.
///
/// Bytes per rank per step: at most 8 k sent in the tree (once, by every
/// rank but 0) plus the broadcast of 8 k; 2 ceil(log2 W) rounds.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
template <sketch_value Value, transport Transport>
class gtopk_sgd : public detail::topk_baseline<Value, Transport> {
  using base = detail::topk_baseline<Value, Transport>;

 public:
  /// The options type.
  using options_type = typename base::options_type;

  /// Sets up the optimizer and checks the configuration across ranks.
  /// @throws std::invalid_argument; config_mismatch_error on every rank.
  gtopk_sgd(communicator<Transport>& comm, options_type options)
      : base(comm, std::move(options), detail::optimizer_kind::gtopk_sgd, "gtopk_sgd") {}

  /// One step with this rank's gradient (d values).
  /// @throws std::invalid_argument; nonfinite_error; transport errors.
  const model_update<Value>& step(std::span<const Value> gradient) {
    return this->run_step(gradient, [this] {
      auto& comm = *this->comm_;
      const std::size_t k = this->opt_.k;
      auto mine = top_k(this->sparse_v(), k, this->opt_.exec);
      this->split_.to_global(mine.indices);
      std::vector<detail::wire_entry<Value>> current(k, {detail::no_index, Value{}});
      for (std::size_t j = 0; j < mine.size(); ++j) {
        current[j] = {static_cast<detail::wire_index>(mine.indices[j]), mine.values[j]};
      }
      this->accounting_.lap(&step_timing::compress);

      // Binomial tree towards rank 0: merge what the partners send.
      using entry = detail::wire_entry<Value>;
      detail::binomial_reduce(comm, std::span<entry>(current), 0, comm.next_collective_tag(),
                              [&](std::span<entry> acc, std::span<const entry> in) {
                                detail::check_received_indices(in, this->opt_.dimension, "gtopk_sgd");
                                this->accounting_.lap(&step_timing::communicate);
                                const auto merged = detail::merge_top_k<Value>(acc, in, k);
                                std::copy(merged.begin(), merged.end(), acc.begin());
                                this->accounting_.lap(&step_timing::recover);
                              });
      broadcast(comm, std::span<detail::wire_entry<Value>>(current), 0);
      detail::check_received_indices(std::span<const detail::wire_entry<Value>>(current), this->opt_.dimension,
                                     "gtopk_sgd");
      this->accounting_.lap(&step_timing::communicate);

      std::vector<std::uint64_t> masked;
      for (const auto& e : current) {
        if (e.index == detail::no_index) continue;
        this->update_.indices.push_back(e.index);
        this->update_.values.push_back(e.value);
        if (std::binary_search(mine.indices.begin(), mine.indices.end(), std::uint64_t{e.index})) {
          masked.push_back(e.index);
        }
      }
      this->accounting_.lap(&step_timing::recover);
      return masked;
    });
  }
};

}  // namespace sketchsgd
