// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// FetchSGD's aggregation (Rothchild, Panda, Ullah, Ivkin, Stoica, Braverman,
/// Gonzalez, Arora, ICML 2020): stateless workers, momentum and error kept
/// in sketch space.

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "sketchsgd/optim/aggregate/sketched.hpp"

namespace sketchsgd {

/// How FetchSGD removes the applied coordinates from its error sketch.
enum class fetch_reset {
  zero_cells,  ///< zero every cell a coordinate of supp(Delta) hashes to, in S_e and S_u (what the authors found
               ///< stable)
  subtract,    ///< S_e -= S(Delta); S_u's hit cells are zeroed
};

/// FetchSGD's aggregation. Per step:
///
/// 1. each worker sketches its gradient: S_i (no worker state);
/// 2. S_g = sum of S_i (divided by W when averaging);
/// 3. S_u <- rho S_u + S_g;  S_e <- S_e + eta S_u (the learning rate in the
///    error sketch, as in the paper; `learning_rate_in_error = false` puts it
///    on the update instead, as the authors' code does:
///    CommEfficient/fed_aggregator.py, `update * lr`);
/// 4. Delta = what the recovery picks from S_e (top k), with estimates; no
///    second round;
/// 5. the cells of S_e and S_u that supp(Delta) hashes to are zeroed (or,
///    with `fetch_reset::subtract`, S_e -= S(Delta)); `mask_momentum = false`
///    leaves S_u alone.
///
/// With the allreduce topology the server state (S_u, S_e) is replicated on
/// every rank; with the root topology it lives at the root, which broadcasts
/// Delta (k 4-byte indices and k values). Dense coordinates are summed every
/// step and get the same momentum rho in a dense, replicated buffer.
///
/// With `slices` = S > 1 the sketches are S tables, one per slice of the
/// sparse coordinates (as `sketched_aggregation`'s slices): each slice's S_i
/// is summed while the next slice is sketched, momentum and error run on
/// every slice's cells alike (the same as on one table of all of them), and
/// Delta is the top k over all slices' estimates of S_e.
/// @tparam Value a `sketch_value`.
/// @tparam HashFamily a `hash_family`.
/// @tparam Recovery a recovery policy.
/// @tparam Device a `device` tag.
template <sketch_value Value, hash_family HashFamily = multiply_shift, class Recovery = top_k_recovery,
          device Device = cpu_t>
class fetch_aggregation {
  using ops = detail::device_ops<Device>;
  using context = detail::step_context<Value, Device>;
  using entry = detail::wire_entry<Value>;

 public:
  /// The sketch type (Recovery must be a `recovery_policy` over it).
  using sketch_type = detail::recovered_sketch<Value, HashFamily, Recovery, Device>;
  /// Settings of FetchSGD's aggregation.
  struct options_type {
    /// Rows, columns and seed of the sketches (same on all ranks).
    sketch_config sketch{};
    /// Coordinates updated per step.
    std::size_t k = 0;
    /// Momentum rho of S_u <- rho S_u + S_g.
    Value momentum = Value{0};
    /// Which coordinates S_e yields.
    Recovery recovery{};
    /// How applied coordinates leave the error sketch.
    fetch_reset reset = fetch_reset::zero_cells;
    /// Zero S_u's cells at supp(Delta) (momentum masking in sketch space).
    bool mask_momentum = true;
    /// S_e <- S_e + eta S_u (the paper); false: S_e <- S_e + S_u and eta
    /// on the update (the authors' code).
    bool learning_rate_in_error = true;
    /// Where the server state lives: replicated on every rank, or at a root.
    sketchsgd::topology topology = sketchsgd::topology::allreduce;
    /// The root of the `root` topology.
    int root = 0;
    /// Overlap sketching with the table's sum (allreduce topology, CPU,
    /// top-k recovery): one sketch per slice of the sparse coordinates, with
    /// the slice's share of the columns, each summed on a helper thread
    /// while the next is sketched; the same bytes, another estimator (see
    /// `sketched_aggregation::options_type::slices`). 1: one sketch.
    std::size_t slices = 1;
  };
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  using value_type = Value;
  using device_type = Device;
  static constexpr detail::optimizer_kind kind = detail::optimizer_kind::fetch_sgd;
  static constexpr const char* name = "fetch_aggregation";

  fetch_aggregation(const options_type& o, const context& c)
      : opt_(checked(o, c)),
        s_g_(detail::slice_sketches<sketch_type>(o.sketch, o.slices)),
        s_u_(detail::slice_sketches<sketch_type>(o.sketch, o.slices)),
        s_e_(detail::slice_sketches<sketch_type>(o.sketch, o.slices)),
        scratch_(ops::template zeros<Value>(c.split->sparse_count(), *c.device)),
        dense_momentum_(static_cast<std::size_t>(c.split->dense_count()), Value{}) {}

  void accumulate(typename ops::template gradient<Value> g, const context& /*c*/) noexcept { gradient_ = g; }
  [[nodiscard]] typename ops::template gradient<Value> source() const noexcept { return gradient_; }

  round_generator<Value> rounds(const context& c, model_update<Value>& out) {
    auto& dev = *c.device;
    const bool root = opt_.topology == topology::root;
    for (sketch_type& s : s_g_) ops::zero(s, dev);
    if (s_g_.size() > 1) {
      if constexpr (std::is_same_v<Device, cpu_t>) {  // slices are refused on devices
        // Each slice's table is carried while the next slice is sketched (not the last's).
        for (std::size_t s = 0; s < s_g_.size(); ++s) {
          detail::sketch_slice(s_g_, s, gradient_, *c.split, dev.exec);
          c.lap(&step_timing::compress);
          auto sum = sum_round(s_g_[s].table());
          sum.overlap = s + 1 < s_g_.size();
          co_yield sum;
        }
      }
    } else {
      sketch_type& whole = s_g_.front();
      ops::sketch(whole, gradient_, *c.split, 0, whole.rows(), dev);
      c.lap(&step_timing::compress);
      const std::span<Value> table = ops::stage(whole.table(), dev);
      co_yield root ? reduce_round(table, opt_.root) : sum_round(table);
      ops::unstage(table, whole.table(), dev);
    }
    if (!root || c.rank == opt_.root) server_step(c, out);
    c.lap(&step_timing::recover);
    if (root) {  // the root broadcasts Delta: k 4-byte indices and k values
      std::vector<entry> delta(opt_.k, {detail::no_index, Value{}});
      for (std::size_t j = 0; j < out.indices.size(); ++j) {
        delta[j] = {static_cast<detail::wire_index>(out.indices[j]), out.values[j]};
      }
      co_yield broadcast_round<Value>(std::span<entry>(delta), opt_.root);
      detail::check_received_indices(std::span<const entry>(delta), c.split->dimension(), c.name);
      out.indices.clear();
      out.values.clear();
      for (const entry& e : delta) {
        if (e.index == detail::no_index) continue;
        out.indices.push_back(e.index);
        out.values.push_back(e.value);
      }
    }
  }

  /// The dense coordinates' summed gradient: momentum rho, replicated; eta
  /// too when it sits in the error.
  void finish_dense(std::span<Value> values, const context& c) noexcept {
    for (std::size_t i = 0; i < values.size(); ++i) {
      dense_momentum_[i] = opt_.momentum * dense_momentum_[i] + values[i];
      values[i] = opt_.learning_rate_in_error ? c.learning_rate * dense_momentum_[i] : dense_momentum_[i];
    }
  }
  [[nodiscard]] bool learning_rate_in_error() const noexcept { return opt_.learning_rate_in_error; }
  [[nodiscard]] bool averages_itself() const noexcept { return true; }
  /// The state: S_u, S_e (slice by slice), the dense coordinates' momentum.
  template <class F>
  void for_each_state(F&& f) {
    for (sketch_type& s : s_u_) f(s.table());
    for (sketch_type& s : s_e_) f(s.table());
    f(std::span<Value>(dense_momentum_));
  }
  void describe(detail::fingerprint& f) const {
    f.add(HashFamily::id).add(opt_.sketch.rows).add(opt_.sketch.cols).add(opt_.sketch.seed).add(opt_.k);
    f.add(opt_.momentum).add(opt_.reset).add(opt_.mask_momentum).add(opt_.learning_rate_in_error);
    f.add(opt_.topology).add(opt_.root);
    if (opt_.slices > 1) f.add(std::uint64_t{0x736C69636573}).add(opt_.slices);  // only then: fingerprints stay
    opt_.recovery.describe(f);
  }
  /// @endcond
  /// The error sketch S_e (meaningful on every rank with the allreduce
  /// topology, at the root otherwise); with slices, slice 0's.
  [[nodiscard]] const sketch_type& error_sketch() const noexcept { return s_e_.front(); }
  /// The error sketches S_e, one per slice (one with `slices` = 1).
  [[nodiscard]] std::span<const sketch_type> error_sketches() const noexcept { return s_e_; }

 private:
  static const options_type& checked(const options_type& o, const context& c) {
    detail::check_sketch_aggregation<HashFamily>(o, c);
    detail::check_slices<Device>(c.name, o.slices, o.sketch.cols, c.split->sparse_count(), o.recovery,
                                 o.topology == topology::allreduce);
    return o;
  }

  /// Momentum and error in sketch space, recovery, reset; fills `out`.
  void server_step(const context& c, model_update<Value>& out) {
    auto& dev = *c.device;
    const Value s = opt_.learning_rate_in_error ? c.learning_rate : Value{1};
    for (std::size_t p = 0; p < s_g_.size(); ++p) {  // every slice's cells alike
      if (c.average && std::is_floating_point_v<Value>) ops::divide(s_g_[p].table(), static_cast<Value>(c.world), dev);
      ops::momentum_error(s_u_[p].table(), s_e_[p].table(), typename ops::template span<const Value>(s_g_[p].table()),
                          opt_.momentum, s, true, false, dev);
    }
    const auto scratch = typename ops::template span<Value>(scratch_.data(), scratch_.size());
    const std::uint64_t d = c.split->sparse_count();
    sparse_update<Value> delta;
    if constexpr (std::is_same_v<Device, cpu_t>) {  // slices are refused on devices
      if (s_e_.size() > 1) delta = detail::top_over_slices<ops>(opt_.recovery, s_e_, d, opt_.k, scratch, dev, c.step);
    }
    if (s_e_.size() == 1) delta = opt_.recovery.template select<ops>(s_e_.front(), d, opt_.k, scratch, dev, c.step);
    const auto reset = [&](std::size_t p, std::span<const std::uint64_t> keys, std::span<const Value> values) {
      if (opt_.reset == fetch_reset::zero_cells) {
        ops::zero_buckets_of(s_e_[p], keys, dev);
      } else {
        std::vector<Value> negated(values.size());
        for (std::size_t j = 0; j < negated.size(); ++j) negated[j] = Value{} - values[j];
        ops::add_sparse(s_e_[p], keys, std::span<const Value>(negated), dev);
      }
      if (opt_.mask_momentum) ops::zero_buckets_of(s_u_[p], keys, dev);
    };
    detail::for_each_slice_of(std::span<const std::uint64_t>(delta.indices), std::span<const Value>(delta.values), d,
                              s_e_.size(), reset);
    c.split->to_global(delta.indices);
    out.indices = std::move(delta.indices);
    out.values.assign(delta.values.begin(), delta.values.end());  // out keeps its capacity (map_update)
  }

  options_type opt_;
  std::vector<sketch_type> s_g_;  // one table, or one per slice
  std::vector<sketch_type> s_u_;
  std::vector<sketch_type> s_e_;
  typename ops::template buffer<Value> scratch_;
  std::vector<Value> dense_momentum_;
  typename ops::template gradient<Value> gradient_{};
};

}  // namespace sketchsgd
