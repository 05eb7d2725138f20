// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Sketched aggregation: Sketched-SGD (Ivkin, Rothchild, Ullah, Braverman,
/// Stoica, Arora, NeurIPS 2019), the variant the authors ran, and
/// global-sketch SGD (Dai, Diao, Li, Xu, arXiv 2108.06004).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/detail/collective_pipeline.hpp"
#include "sketchsgd/device.hpp"
#include "sketchsgd/hash/multiply_shift.hpp"
#include "sketchsgd/optim/aggregate/error_memory.hpp"
#include "sketchsgd/optim/aggregate/slices.hpp"
#include "sketchsgd/optim/concepts.hpp"
#include "sketchsgd/optim/model_update.hpp"
#include "sketchsgd/optim/recover/policies.hpp"
#include "sketchsgd/optim/state/state_io.hpp"
#include "sketchsgd/optim/step/rounds.hpp"
#include "sketchsgd/optim/step/validation.hpp"
#include "sketchsgd/optim/step/wire_entry.hpp"
#include "sketchsgd/sketch/count_sketch.hpp"

namespace sketchsgd {

/// How sketches are aggregated.
enum class topology {
  allreduce,  ///< every rank gets the summed sketch and recovers identically: no root, no single point of failure
  root,       ///< a root reduces, recovers and broadcasts (the paper's parameter server)
};

namespace detail {

/// What every sketch aggregation checks before allocating: the sketch, k, a
/// root and its 4-byte indices, the recovery policy.
template <class HashFamily, class Options, class Context>
void check_sketch_aggregation(const Options& o, const Context& c) {
  validate(o.sketch, HashFamily::max_cols);
  check_k(c.name, o.k, c.split->sparse_count());
  if (o.topology == topology::root) {
    check_root(o.root, c.world, c.name);
    check_wire_indices(c.name, c.split->dimension(), no_index);
  }
  if constexpr (requires { o.recovery.validate(c.name); }) o.recovery.validate(c.name);
}

}  // namespace detail

/// Sketched-SGD's aggregation. Per step, on every worker i with gradient g_i:
///
/// 1. error feedback with local momentum (`error_feedback`): u_i <- m u_i +
///    g_i; v_i <- v_i + u_i;
/// 2. S_i = sketch of v_i (dense coordinates excluded);
/// 3. S = sum of S_i: allreduce (every rank recovers identically) or reduce
///    to a root that recovers and broadcasts;
/// 4. C = the P k coordinates the recovery policy picks from S (top-k of
///    the estimates by default);
/// 5. second round: x_C = sum_i v_i[C] exactly (allreduce, or reduce after
///    the root broadcast C);
/// 6. Delta = the k entries of x_C largest in magnitude (ties to the lower
///    index); with P = 0, Delta = what the recovery picks, with estimates;
///    with HEAVYMIX's `apply_all`, C is the k it picks and Delta = x_C, all
///    of it (the paper's HEAVYMIX; see `heavymix_recovery`);
/// 7. v_i (and u_i, with masking) are zeroed at supp(Delta).
///
/// Bytes per worker per step, root topology, non-root rank: up 4 r c + 4 P k,
/// down 4 P k (candidate indices) + 8 k (indices + values), with 4-byte
/// values; allreduce topology: an allreduce of the r c table (ring: 2 (W-1)/W
/// 4 r c in 2 (W-1) rounds; recursive doubling: log2(W) 4 r c in log2(W)
/// rounds) plus one allreduce of P k values.
/// @tparam Value a `sketch_value`.
/// @tparam HashFamily a `hash_family`.
/// @tparam Recovery a recovery policy (`top_k_recovery`, `heavymix_recovery`, `threshold_recovery`).
/// @tparam Device a `device` tag.
template <sketch_value Value, hash_family HashFamily = multiply_shift, class Recovery = top_k_recovery,
          device Device = cpu_t>
class sketched_aggregation : public error_memory<Value, Device> {  // its memory, and its hooks
  using ops = detail::device_ops<Device>;
  using context = detail::step_context<Value, Device>;

 public:
  /// The sketch type (Recovery must be a `recovery_policy` over it).
  using sketch_type = detail::recovered_sketch<Value, HashFamily, Recovery, Device>;
  /// Settings of the sketched aggregation.
  struct options_type {
    /// Rows, columns and seed of the sketch (the seed must match on all ranks).
    sketch_config sketch{};
    /// Coordinates updated per step.
    std::size_t k = 0;
    /// P: the second round looks at P k candidates; 0 turns it off.
    std::size_t candidates_factor = 3;
    /// Local momentum and error feedback.
    error_feedback<Value> feedback{};
    /// Which coordinates the summed sketch yields.
    Recovery recovery{};
    /// How sketches are aggregated.
    sketchsgd::topology topology = sketchsgd::topology::allreduce;
    /// The root of the `root` topology (flat reduce and broadcast).
    int root = 0;
    /// The algorithm of the table's allreduce (unset: the communicator's).
    /// `recursive_doubling` is global-sketch SGD as its paper describes it:
    /// log2(W) rounds, each sending the whole table. The second round (P k
    /// values) keeps the communicator's algorithm.
    std::optional<allreduce_algorithm> sketch_allreduce{};
    /// Overlap sketching with the table's allreduce (allreduce topology, CPU,
    /// rows > 1): rows are sketched a group at a time (one row per thread, at
    /// least two groups) and each finished group is allreduced on a helper
    /// thread while the next is sketched. MPI then needs
    /// MPI_THREAD_SERIALIZED or above. Results match the plain step up to
    /// floating-point summation order (exactly for integers).
    bool overlap_rows = false;
    /// Overlap sketching with the table's allreduce at any row count, one
    /// row included (allreduce topology, CPU, top-k recovery): the sparse
    /// coordinates are cut into `slices` equal slices, each sketched into a
    /// table of its own (the same rows, its share of the columns: the bytes
    /// stay those of one r x c table), and each slice's table is allreduced
    /// on a helper thread while the next slice is sketched. Candidates are
    /// the top P k of all slices' estimates together. This changes the
    /// estimator: a coordinate's error is its slice's l2 mass over the
    /// slice's columns, not the whole gradient's over all columns (the same
    /// where mass spreads evenly, up to sqrt(slices) worse where it sits in
    /// one slice). 1 (the default): one sketch.
    std::size_t slices = 1;
  };
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  static constexpr detail::optimizer_kind kind = detail::optimizer_kind::sketched_sgd;
  static constexpr const char* name = "sketched_aggregation";

  sketched_aggregation(const options_type& o, const context& c)
      : error_memory<Value, Device>(checked(o, c).feedback, c.split->dimension(), *c.device),
        opt_(o),
        sketches_(detail::slice_sketches<sketch_type>(o.sketch, o.slices)),
        scratch_(ops::template zeros<Value>(c.split->sparse_count(), *c.device)) {}

  round_generator<Value> rounds(const context& c, model_update<Value>& out) {
    using entry = detail::wire_entry<Value>;
    auto& dev = *c.device;
    const bool root = opt_.topology == topology::root;
    const bool recovers = !root || c.rank == opt_.root;  // every rank, or the root, which broadcasts
    for (sketch_type& s : sketches_) ops::zero(s, dev);
    sketch_type& whole = sketches_.front();
    if (sketches_.size() > 1) {
      if constexpr (std::is_same_v<Device, cpu_t>) {  // slices are refused on devices
        // Each slice's table is carried while the next slice is sketched (not the last's).
        for (std::size_t s = 0; s < sketches_.size(); ++s) {
          detail::sketch_slice(sketches_, s, gradient_span<Value>(this->v()), *c.split, dev.exec);
          c.lap(&step_timing::compress);
          auto sum = sum_round(sketches_[s].table(), opt_.sketch_allreduce);
          sum.overlap = s + 1 < sketches_.size();
          co_yield sum;
        }
      }
    } else if (overlapping()) {
      if constexpr (std::is_same_v<Device, cpu_t>) {  // overlap is refused on devices
        // A group of rows at a time; each group's sum is carried while the next is sketched (not the last's).
        const std::size_t rows = whole.rows();
        const std::size_t group = std::clamp<std::size_t>(dev.exec.resolved_threads(), 1, (rows + 1) / 2);
        for (std::size_t first = 0; first < rows; first += group) {
          const std::size_t n = std::min(group, rows - first);
          ops::sketch(whole, this->v(), *c.split, first, n, dev);
          c.lap(&step_timing::compress);
          auto sum = sum_round(whole.table().subspan(first * whole.cols(), n * whole.cols()), opt_.sketch_allreduce);
          sum.overlap = first + n < rows;
          co_yield sum;
        }
      }
    } else {
      ops::sketch(whole, this->v(), *c.split, 0, whole.rows(), dev);
      c.lap(&step_timing::compress);
      const std::span<Value> table = ops::stage(whole.table(), dev);
      co_yield root ? reduce_round(table, opt_.root) : sum_round(table, opt_.sketch_allreduce);  // root: up 4 r c
      ops::unstage(table, whole.table(), dev);
    }
    sparse_update<Value> best;  // Delta (at the root: until it is broadcast)
    if (opt_.candidates_factor == 0) {
      if (recovers) best = recover(opt_.k, c);
      c.split->to_global(best.indices);
    } else {
      sparse_update<Value> chosen;
      if (recovers) chosen = recover(candidate_count(), c);
      c.split->to_global(chosen.indices);
      std::vector<std::uint64_t> candidates = std::move(chosen.indices);
      std::vector<detail::wire_index> sent(root ? candidate_count() : 0, detail::no_index);
      if (root) {
        for (std::size_t j = 0; j < candidates.size(); ++j) sent[j] = static_cast<detail::wire_index>(candidates[j]);
        co_yield broadcast_round<Value>(std::span<detail::wire_index>(sent), opt_.root);  // down: 4 P k
        detail::check_received_indices(std::span<const detail::wire_index>(sent), c.split->dimension(), c.name);
        // Padding comes last: the real candidates are a prefix.
        candidates.assign(sent.begin(), std::find(sent.begin(), sent.end(), detail::no_index));
      }
      exact_ = ops::gather(this->v(), candidates, dev);
      exact_.resize(root ? sent.size() : exact_.size(), Value{});  // padding slots carry zeros
      c.lap(&step_timing::recover);
      co_yield root ? reduce_round(std::span<Value>(exact_), opt_.root) : sum_round(std::span<Value>(exact_));
      exact_.resize(candidates.size());  // second round: P k values (k when all are applied); root: up 4 P k
      if (recovers) best = exact_best(std::move(candidates));
    }
    c.lap(&step_timing::recover);
    if (root) {
      std::vector<entry> delta = detail::padded_entries(best, opt_.k);
      co_yield broadcast_round<Value>(std::span<entry>(delta), opt_.root);  // down: 8 k
      detail::check_received_indices(std::span<const entry>(delta), c.split->dimension(), c.name);
      best = {};
      for (const entry& e : delta) {
        if (e.index == detail::no_index) continue;
        best.indices.push_back(e.index);
        best.values.push_back(e.value);
      }
    }
    out.indices = std::move(best.indices);
    out.values.assign(best.values.begin(), best.values.end());  // out keeps its capacity (map_update)
    this->mask(out.indices, dev);
  }

  void describe(detail::fingerprint& f) const {
    f.add(HashFamily::id).add(opt_.sketch.rows).add(opt_.sketch.cols).add(opt_.sketch.seed);
    f.add(opt_.k).add(opt_.candidates_factor).add(opt_.topology).add(opt_.root).add(opt_.overlap_rows);
    f.add(opt_.sketch_allreduce ? static_cast<int>(*opt_.sketch_allreduce) : -1);
    if (opt_.slices > 1) f.add(std::uint64_t{0x736C69636573}).add(opt_.slices);  // only then: fingerprints stay
    memory().describe(f);
    opt_.recovery.describe(f);
  }
  /// @endcond
  /// The options in force.
  [[nodiscard]] const options_type& options() const noexcept { return opt_; }
  /// The error memory (u and v).
  [[nodiscard]] const error_memory<Value, Device>& memory() const noexcept { return *this; }

 private:
  static const options_type& checked(const options_type& o, const context& c) {
    detail::check_sketch_aggregation<HashFamily>(o, c);
    if (o.overlap_rows && !std::is_same_v<Device, cpu_t>) {
      detail::bad_option(c.name, "overlap_rows runs on the CPU only (must be false on a device)");
    }
    detail::check_slices<Device>(c.name, o.slices, o.sketch.cols, c.split->sparse_count(), o.recovery,
                                 o.topology == topology::allreduce);
    if (o.slices > 1 && o.overlap_rows) detail::bad_option(c.name, "slices > 1 and overlap_rows exclude each other");
    return o;
  }

  [[nodiscard]] bool overlapping() const noexcept {
    return opt_.overlap_rows && opt_.topology == topology::allreduce && opt_.sketch.rows > 1;
  }
  /// Whether the recovery's selection is the update (HEAVYMIX's
  /// `apply_all`): then it selects k, and the second round only replaces
  /// their estimates by exact sums, with no top k after it.
  [[nodiscard]] bool applies_selection() const noexcept {
    if constexpr (requires(const Recovery& r) { r.applies_selection(); }) {
      return opt_.recovery.applies_selection();
    } else {
      return false;
    }
  }
  [[nodiscard]] std::size_t candidate_count() const noexcept {
    const std::size_t factor = applies_selection() ? 1 : opt_.candidates_factor;
    return static_cast<std::size_t>(std::min<std::uint64_t>(factor * opt_.k, scratch_.size()));
  }
  sparse_update<Value> recover(std::size_t count, const context& c) {
    const auto scratch = typename ops::template span<Value>(scratch_.data(), scratch_.size());
    const std::uint64_t d = c.split->sparse_count();
    if constexpr (std::is_same_v<Device, cpu_t>) {  // slices are refused on devices
      if (sketches_.size() > 1) {
        return detail::top_over_slices<ops>(opt_.recovery, sketches_, d, count, scratch, *c.device, c.step);
      }
    }
    return opt_.recovery.template select<ops>(sketches_.front(), d, count, scratch, *c.device, c.step);
  }

  /// Delta from the candidates' exact sums (in `exact_`): all of them with
  /// HEAVYMIX's `apply_all`, else the k largest (ties to the lower index).
  sparse_update<Value> exact_best(std::vector<std::uint64_t> candidates) const {
    if (applies_selection()) return {std::move(candidates), exact_};
    auto best = top_k(exact_, opt_.k);
    for (std::uint64_t& i : best.indices) i = candidates[i];  // positions among the candidates to coordinates
    return best;
  }

  options_type opt_;
  std::vector<sketch_type> sketches_;             // the whole table, or one per slice
  typename ops::template buffer<Value> scratch_;  // d_sparse estimates, reused every step
  std::vector<Value> exact_;                      // the candidates' summed v (the second round)
};

/// Global-sketch SGD (gs-SGD, Dai et al.): Sketched-SGD's aggregation with
/// no parameter server. The sketches are allreduced (ring for large tables,
/// recursive doubling for small ones; `sketch_allreduce =
/// recursive_doubling` for the paper's log2(W) rounds) so every rank holds
/// the same global sketch; each rank unsketches locally with the
/// deterministic tie-break, so all pick the same coordinates without any
/// broadcast; the optional second round (P > 0) is one allreduce of the P k
/// candidate values. Per-worker traffic with the ring: about 2 (W-1)/W 4 r c
/// bytes per step (plus 2 (W-1)/W 4 P k), independent of d and nearly of W.
/// `topology` is ignored (always allreduce).
/// @tparam Value a `sketch_value`.
/// @tparam HashFamily a `hash_family`.
/// @tparam Recovery a recovery policy.
/// @tparam Device a `device` tag.
template <sketch_value Value, hash_family HashFamily = multiply_shift, class Recovery = top_k_recovery,
          device Device = cpu_t>
class global_sketch_aggregation : public sketched_aggregation<Value, HashFamily, Recovery, Device> {
  using base = sketched_aggregation<Value, HashFamily, Recovery, Device>;

 public:
  using typename base::options_type;
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  static constexpr detail::optimizer_kind kind = detail::optimizer_kind::global_sketch_sgd;
  static constexpr const char* name = "global_sketch_aggregation";

  global_sketch_aggregation(options_type o, const detail::step_context<Value, Device>& c)
      : base((o.topology = topology::allreduce, o), c) {}
  /// @endcond
};

}  // namespace sketchsgd
