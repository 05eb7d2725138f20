// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The top-k aggregations a sketching method is judged against, each with
/// error feedback: true top-k (dense traffic, the accuracy upper bound of
/// any top-k scheme), local top-k (DGC-style sparse exchange, whose traffic
/// grows with W) and gTop-k (Shi et al.'s global top-k by pairwise merges).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/device.hpp"
#include "sketchsgd/optim/aggregate/error_memory.hpp"
#include "sketchsgd/optim/model_update.hpp"
#include "sketchsgd/optim/state/state_io.hpp"
#include "sketchsgd/optim/step/rounds.hpp"
#include "sketchsgd/optim/step/validation.hpp"
#include "sketchsgd/optim/step/wire_entry.hpp"
#include "sketchsgd/sketch/topk.hpp"

namespace sketchsgd {

namespace detail {

/// What the three share: k, the error memory, and v's sparse coordinates
/// renumbered contiguously (a copy only where v itself will not do).
template <class Value, class Device>
class topk_aggregation_base : public error_memory<Value, Device> {  // its memory, and its hooks
 protected:
  using ops = device_ops<Device>;
  using context = step_context<Value, Device>;

 public:
  /// Settings of the top-k aggregations.
  struct options_type {
    std::size_t k = 0;                 ///< coordinates selected per step (per worker for local top-k and gTop-k)
    error_feedback<Value> feedback{};  ///< local momentum and error feedback
  };

  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  void describe(fingerprint& f) const {
    f.add(opt_.k);
    error_memory<Value, Device>::describe(f);
  }

  /// `own_copy`: the sparse coordinates are copied even without dense
  /// ranges; `wire`: indices travel in 4 bytes (checked before allocating).
  topk_aggregation_base(const options_type& o, const context& c, bool own_copy = false, bool wire = true)
      : error_memory<Value, Device>(checked(o, c, wire).feedback, c.split->dimension(), *c.device),
        opt_(o),
        sparse_(ops::template zeros<Value>(own_copy || c.split->dense_count() != 0 ? c.split->sparse_count() : 0,
                                           *c.device)) {}
  /// @endcond

 protected:
  using entry = wire_entry<Value>;  // an (index, value) pair as local top-k and gTop-k send it

  /// v's sparse coordinates, renumbered contiguously: v itself when there
  /// are no dense ranges (the numbering is then the identity).
  typename ops::template span<Value> sparse_v(const context& c) {
    if (sparse_.size() == 0) return {const_cast<Value*>(this->v().data()), this->v().size()};
    ops::compact(this->v(), *c.split, typename ops::template span<Value>(sparse_.data(), sparse_.size()), *c.device);
    return {sparse_.data(), sparse_.size()};
  }

  /// This rank's own top k of v, at global indices (local top-k, gTop-k).
  sparse_update<Value> own_top_k(const context& c) {
    auto mine = ops::top_k(typename ops::template span<const Value>(sparse_v(c)), opt_.k, *c.device);
    c.split->to_global(mine.indices);
    c.lap(&step_timing::compress);
    return mine;
  }

  static const options_type& checked(const options_type& o, const context& c, bool wire) {
    check_k(c.name, o.k, c.split->sparse_count());
    if (wire) check_wire_indices(c.name, c.split->dimension(), no_index);
    return o;
  }

  options_type opt_;
  typename ops::template buffer<Value> sparse_;
};

}  // namespace detail

/// True top-k with error feedback (Stich et al. 2018; Karimireddy et al.
/// 2019): an allreduce of the dense v (2 (W-1)/W d sizeof(Value) bytes per
/// rank), the global top k of the sum, error reset at its support.
/// @tparam Value a `sketch_value`.
/// @tparam Device a `device` tag.
template <sketch_value Value, device Device = cpu_t>
class true_topk_aggregation : public detail::topk_aggregation_base<Value, Device> {
  using base = detail::topk_aggregation_base<Value, Device>;

 public:
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  static constexpr detail::optimizer_kind kind = detail::optimizer_kind::true_topk_sgd;
  static constexpr const char* name = "true_topk_aggregation";

  true_topk_aggregation(const typename base::options_type& o, const typename base::context& c)
      : base(o, c, /*own_copy=*/true, /*wire=*/false) {}  // the sum is taken in place

  round_generator<Value> rounds(const typename base::context& c, model_update<Value>& out) {
    const auto v = this->sparse_v(c);
    const std::span<Value> sum = base::ops::stage(v, *c.device);
    c.lap(&step_timing::local);
    co_yield sum_round(sum);
    auto best = top_k(std::span<const Value>(sum), this->opt_.k, c.device->exec);  // the sum stays on the host
    c.lap(&step_timing::recover);
    c.split->to_global(best.indices);
    out.indices = best.indices;
    out.values.assign(best.values.begin(), best.values.end());  // out keeps its capacity (map_update)
    this->mask(out.indices, *c.device);
  }
  /// @endcond
};

/// Local top-k with error feedback (DGC-style, Lin et al. 2018): each worker
/// selects the top k of its own v, the (index, value) pairs of all workers
/// are exchanged with one allgatherv and summed (in rank order, identically
/// on every rank), and each worker resets its own selection. Bytes received
/// per rank grow with W: (W-1) k (4 + sizeof(Value)) per step, the cost
/// sketches remove. Split phase: one allgather of k padded entries per rank.
/// @tparam Value a `sketch_value`.
/// @tparam Device a `device` tag.
template <sketch_value Value, device Device = cpu_t>
class local_topk_aggregation : public detail::topk_aggregation_base<Value, Device> {
  using base = detail::topk_aggregation_base<Value, Device>;
  using typename base::entry;

 public:
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  static constexpr detail::optimizer_kind kind = detail::optimizer_kind::local_topk_sgd;
  static constexpr const char* name = "local_topk_aggregation";
  using base::base;

  round_generator<Value> rounds(const typename base::context& c, model_update<Value>& out) {
    const auto mine = this->own_top_k(c);
    const std::size_t k = this->opt_.k;
    // k entries a rank, padded: a caller gathers whole blocks, sketchsgd's allgatherv the entries alone.
    std::vector<entry> sent = detail::padded_entries(mine, k);
    std::vector<entry> all(k * static_cast<std::size_t>(c.world), {detail::no_index, Value{}});
    co_yield collective_round<Value>{.kind = round_kind::gather,
                                     .block = std::as_writable_bytes(std::span<entry>(sent)),
                                     .gathered = std::as_writable_bytes(std::span<entry>(all)),
                                     .data_bytes = mine.size() * sizeof(entry)};
    for (int r = 0; r < c.world; ++r) {
      detail::check_received_indices(std::span<const entry>(all).subspan(static_cast<std::size_t>(r) * k, k),
                                     c.split->dimension(), c.name);
    }
    std::erase_if(all, [](const entry& e) { return e.index == detail::no_index; });
    // Sum by index in rank order: bit-identical on every rank.
    std::stable_sort(all.begin(), all.end(), [](const entry& a, const entry& b) { return a.index < b.index; });
    for (const entry& e : all) {
      if (out.indices.empty() || out.indices.back() != e.index) {
        out.indices.push_back(e.index);
        out.values.push_back(e.value);
      } else {
        out.values.back() += e.value;
      }
    }
    c.lap(&step_timing::recover);
    this->mask(mine.indices, *c.device);
  }
  /// @endcond
};

/// gTop-k (Shi, Wang, Chu et al., ICDCS 2019) with error feedback: each
/// worker selects the top k of its own v; then ceil(log2 W) rounds of a
/// binomial tree towards rank 0 in which a rank sends its k entries (4-byte
/// index, value) to its partner, which sums common indices and keeps the top
/// k of the union; rank 0 broadcasts the final k. Each worker resets its
/// error (and masks its momentum) where its own selection made it into the
/// final k, so what a merge dropped stays in the error for later steps.
///
/// Bytes per rank per step: at most 8 k sent in the tree (once, by every
/// rank but 0) plus the broadcast of 8 k; 2 ceil(log2 W) rounds. Split
/// phase: a reduce round whose `combine` merges, and a broadcast round.
/// @tparam Value a `sketch_value`.
/// @tparam Device a `device` tag.
template <sketch_value Value, device Device = cpu_t>
class gtopk_aggregation : public detail::topk_aggregation_base<Value, Device> {
  using base = detail::topk_aggregation_base<Value, Device>;
  using typename base::entry;

 public:
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  static constexpr detail::optimizer_kind kind = detail::optimizer_kind::gtopk_sgd;
  static constexpr const char* name = "gtopk_aggregation";
  using base::base;

  round_generator<Value> rounds(const typename base::context& c, model_update<Value>& out) {
    const auto mine = this->own_top_k(c);
    const std::size_t k = this->opt_.k;
    const std::uint64_t d = c.split->dimension();
    std::vector<entry> current = detail::padded_entries(mine, k);
    std::vector<entry> incoming(k);
    // A binomial tree towards rank 0 whose operation merges top-k lists, then a broadcast of the result.
    collective_round<Value> merge{.kind = round_kind::reduce,
                                  .block = std::as_writable_bytes(std::span<entry>(current))};
    merge.combine = [&](std::span<const std::byte> in) {
      if (in.size() != incoming.size() * sizeof(entry))
        throw transport_error(std::string(c.name) + ": a peer sent a list of another size");
      std::memcpy(incoming.data(), in.data(), in.size());
      detail::check_received_indices(std::span<const entry>(incoming), d, c.name);
      c.lap(&step_timing::communicate);
      const auto merged = detail::merge_top_k<Value>(current, incoming, k);
      std::copy(merged.begin(), merged.end(), current.begin());
      c.lap(&step_timing::recover);
    };
    co_yield merge;
    co_yield broadcast_round<Value>(std::span<entry>(current), 0, tree_algorithm::binomial);
    detail::check_received_indices(std::span<const entry>(current), d, c.name);
    std::vector<std::uint64_t> masked;
    for (const entry& e : current) {
      if (e.index == detail::no_index) continue;
      out.indices.push_back(e.index);
      out.values.push_back(e.value);
      if (std::binary_search(mine.indices.begin(), mine.indices.end(), std::uint64_t{e.index})) {
        masked.push_back(e.index);
      }
    }
    c.lap(&step_timing::recover);
    this->mask(masked, *c.device);
  }
  /// @endcond
};

}  // namespace sketchsgd
