// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// An optimizer step as a sequence of communication rounds. Every
/// aggregation policy is written once, as a coroutine that yields each
/// collective it needs; the transport-driven `step` carries the rounds with
/// sketchsgd's collectives, a split-phase caller with its own
/// (torch.distributed, NCCL, Horovod). Both walk the same code, so for the
/// same sums they give the same bits.

#include <algorithm>
#include <bit>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/concepts.hpp"
#include "sketchsgd/error.hpp"

namespace sketchsgd {

/// What a round asks of the ranks: MPI's four collectives, the fewest that
/// carry every aggregation here (the allreduce topologies and local top-k:
/// sums, gathers; the root topologies: a root's reduce and broadcast;
/// gTop-k: a reduce whose operation merges top-k lists, as MPI_Reduce takes
/// an MPI_Op_create operation, then a broadcast). Point-to-point kinds would
/// hand every caller the tree's shape, and ranks would yield unequal rounds.
enum class round_kind : std::uint8_t {
  sum,        ///< allreduce: every rank's `values` (or `counts`) become their element-wise sum over the ranks
  gather,     ///< allgather: every rank's `block` (one size), into `gathered` in rank order
  reduce,     ///< to `root`: its `values` summed, or its `block` folded by `combine`; others' left undefined
  broadcast,  ///< from `root`: every rank's `block` becomes the root's
};

/// One collective of a split-phase step. Spans point into the optimizer's
/// own buffers and stay valid until the step is resumed.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct collective_round {
  round_kind kind = round_kind::sum;  ///< what to do
  std::span<Value> values{};          ///< sum, reduce: values to add up (empty when `counts` or `block` is used)
  std::span<std::int64_t> counts{};   ///< sum: integers to add up (the non-finite check)
  std::span<std::byte> block{};       ///< gather, broadcast, reduce with `combine`: this rank's bytes, in place
  std::span<std::byte> gathered{};    ///< gather: world x block.size() bytes, filled by the caller
  /// gather: only `block`'s first `*data_bytes` bytes are data, the rest
  /// padding also written into every slot of `gathered`: sketchsgd sends the
  /// data alone (an allgatherv), a caller may gather whole blocks.
  std::optional<std::size_t> data_bytes{};
  int root = 0;                                    ///< reduce, broadcast: the root rank
  tree_algorithm tree = tree_algorithm::binomial;  ///< reduce, broadcast: the shape sketchsgd uses
  /// reduce: folds a child's block (as the child holds it after its own
  /// children's) into this rank's `block` along a tree: `reduce`'s binomial
  /// one in sketchsgd (a caller's gives the same bits, any other tree a valid result).
  std::function<void(std::span<const std::byte>)> combine{};
  std::optional<allreduce_algorithm> algorithm{};  ///< sum: the algorithm the transport-driven form uses
  /// sum of float values: how they travel (a 16-bit format, summed in float32
  /// and rounded at every hop; a split-phase caller carries it as it can).
  wire_format wire = wire_format::native;
  /// The step may compute on while this round is carried, until it yields
  /// its next (sketchsgd carries it on a helper thread); a caller may ignore it.
  bool overlap = false;
};

/// Stands for "no transport": a `composed_optimizer` whose rounds the caller
/// carries with collectives of its own.
struct external_collectives {};

namespace detail {

/// The communicator a transport is driven through; none for
/// `external_collectives`.
template <class Transport>
struct communicator_of {
  using type = communicator<Transport>;
};
template <>
struct communicator_of<external_collectives> {
  using type = external_collectives;
};

}  // namespace detail

/// The rounds of a step (or of an aggregation policy's part of it): a
/// lazily started coroutine; `next()` runs it to the next round.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
class round_generator {
  using Round = collective_round<Value>;

 public:
  /// @cond COROUTINE
  struct promise_type {
    Round current{};
    std::exception_ptr error;
    bool failed = false;
    round_generator get_return_object() noexcept {
      return round_generator(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(Round r) noexcept {
      current = std::move(r);
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept {
      error = std::current_exception();
      failed = true;
    }
  };

  /// @endcond

  /// Takes `other`'s rounds over; `other` is left without any.
  round_generator(round_generator&& other) noexcept : h_(std::exchange(other.h_, {})) {}
  /// Takes `other`'s rounds over.
  round_generator& operator=(round_generator other) noexcept {
    std::swap(h_, other.h_);
    return *this;
  }
  ~round_generator() {
    if (h_) h_.destroy();
  }

  /// Runs to the next round and returns it, or nullptr once the step is
  /// done (and again on every later call); rethrows whatever the step threw.
  /// @throws std::logic_error on a moved-from generator, and after the step
  /// threw (a failed step has no more rounds, nor an end).
  Round* next() {
    if (!h_) throw std::logic_error("round_generator::next: this generator was moved from");
    if (h_.done()) {
      if (h_.promise().failed) throw std::logic_error("round_generator::next: the step threw; it has no more rounds");
      return nullptr;
    }
    h_.resume();
    if (h_.promise().error) std::rethrow_exception(std::exchange(h_.promise().error, {}));
    return h_.done() ? nullptr : &h_.promise().current;
  }

 private:
  explicit round_generator(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

/// A sum round over `values` (with the algorithm the transport-driven form
/// should use, if any).
template <class Value>
collective_round<Value> sum_round(std::span<Value> values, std::optional<allreduce_algorithm> algorithm = {}) {
  return {.kind = round_kind::sum, .values = values, .algorithm = algorithm};
}

/// A reduce round: `values` summed at `root` (flat: the parameter server's
/// star, what the root topologies send).
template <class Value>
collective_round<Value> reduce_round(std::span<Value> values, int root, tree_algorithm tree = tree_algorithm::flat) {
  return {.kind = round_kind::reduce, .values = values, .root = root, .tree = tree};
}

/// A broadcast round of `items` from `root` (flat unless told).
template <class Value, class T>
collective_round<Value> broadcast_round(std::span<T> items, int root, tree_algorithm tree = tree_algorithm::flat) {
  return {.kind = round_kind::broadcast, .block = std::as_writable_bytes(items), .root = root, .tree = tree};
}

namespace detail {

/// Carries overlapped rounds on one helper thread, one at a time, kept from
/// step to step (starting a thread for each round cost more than a small
/// round: about a millisecond a step with four slices).
class round_carrier {
 public:
  round_carrier() : thread_([this] { loop(); }) {}
  round_carrier(const round_carrier&) = delete;
  round_carrier& operator=(const round_carrier&) = delete;
  ~round_carrier() {
    {
      const std::lock_guard lock(m_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();  // after the job in hand, if any
  }

  /// Runs `job` on the helper thread; the previous job must have been waited for.
  void start(std::function<void()> job) {
    {
      const std::lock_guard lock(m_);
      job_ = std::move(job);
    }
    cv_.notify_all();
  }
  /// Waits for the job started last; rethrows what it threw.
  void wait() {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return !job_; });
    if (error_) std::rethrow_exception(std::exchange(error_, {}));
  }

 private:
  void loop() {
    std::unique_lock lock(m_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || job_; });
      if (!job_) return;
      lock.unlock();
      std::exception_ptr error;
      try {
        job_();  // job_ is not touched by others until it is cleared
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      error_ = error;
      job_ = nullptr;
      cv_.notify_all();
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::function<void()> job_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;  // last: it starts once the members it uses exist
};

/// Carries `r` with sketchsgd's collectives.
/// @throws transport_error for a gather whose peer sent more than a block.
template <transport Transport, class Value>
void run_round(communicator<Transport>& comm, const collective_round<Value>& r) {
  const std::span<const std::byte> block(r.block);
  if (r.kind == round_kind::gather && r.data_bytes) {
    const auto all = allgatherv(comm, block.first(*r.data_bytes), {.max_total_elements = r.gathered.size()});
    for (int q = 0; q < comm.size(); ++q) {
      if (all.of(q).size() > block.size())
        throw transport_error("gather: rank " + std::to_string(q) + " sent more than a block");
      std::ranges::copy(all.of(q),
                        r.gathered.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(q) * block.size()));
    }
  } else if (r.kind == round_kind::gather) {
    allgather(comm, block, r.gathered);
  } else if (r.kind == round_kind::broadcast) {
    broadcast(comm, r.block, r.root, tree_options{.algorithm = r.tree});
  } else if (r.kind == round_kind::reduce && r.combine) {
    check_root(r.root, comm.size(), "reduce");
    binomial_reduce(comm, r.block, r.root, comm.next_collective_tag(),
                    [&](std::span<std::byte>, std::span<const std::byte> in) { r.combine(in); });
  } else if (r.kind == round_kind::reduce) {
    reduce(comm, r.values, r.root, tree_options{.algorithm = r.tree});
  } else if (!r.counts.empty()) {
    allreduce(comm, r.counts);
  } else if (r.algorithm || r.wire != wire_format::native) {
    allreduce_options o = comm.allreduce_defaults();
    if (r.algorithm) o.algorithm = *r.algorithm;
    o.wire = r.wire;
    allreduce(comm, r.values, o);
  } else {
    allreduce(comm, r.values);
  }
}

/// The bytes rank `rank` of `world` sends and receives in sketchsgd's own
/// collective for `r`, one collective: what a split-phase optimizer counts,
/// since the caller's collective moves them (a gather as whole blocks).
template <class Value>
comm_counters modeled_bytes(const collective_round<Value>& r, int rank, int world) {
  const auto w = static_cast<std::uint64_t>(world);
  const auto bytes = [](std::uint64_t sent, std::uint64_t received) {
    return comm_counters{.bytes_sent = sent, .bytes_received = received, .collectives = 1};
  };
  if (r.kind == round_kind::gather) return bytes((w - 1) * r.block.size(), (w - 1) * r.block.size());
  if (r.kind == round_kind::reduce || r.kind == round_kind::broadcast) {
    const std::uint64_t n = r.values.empty() ? r.block.size() : r.values.size_bytes();
    const int vrank = wrap_rank(rank - r.root, world);
    // Messages away from the root (a star's root is at every edge), and towards it: a reduce sends up.
    const std::uint64_t down =
        r.tree == tree_algorithm::flat && !r.combine ? (vrank == 0 ? w - 1 : 0) : binomial_sends(vrank, world);
    const std::uint64_t up = vrank == 0 || n == 0 ? 0 : 1;
    return r.kind == round_kind::reduce ? bytes(up * n, down * n) : bytes(down * n, up * n);
  }
  // A sum: the algorithm `allreduce` takes with default options, rank by rank.
  const std::uint64_t n = r.counts.empty() ? r.values.size() : r.counts.size();
  const std::uint64_t unit = r.counts.empty() ? wire_bytes(r.wire, sizeof(Value)) : sizeof(std::int64_t);
  if (world == 1 || n == 0) return bytes(0, 0);
  const bool by_size =
      !r.algorithm || r.algorithm == allreduce_algorithm::automatic || r.algorithm == allreduce_algorithm::portable;
  if (r.wire == wire_format::native && (r.algorithm == allreduce_algorithm::recursive_doubling ||
                                        (by_size && n * unit <= allreduce_options{}.small_bytes))) {
    int pof2 = 1;
    while (pof2 * 2 <= world) pof2 *= 2;
    const bool folded = rank < 2 * (world - pof2);  // a pair of which the even rank sits out
    const auto exchanges = static_cast<std::uint64_t>(std::countr_zero(static_cast<unsigned>(pof2)));
    const std::uint64_t times = folded && rank % 2 == 0 ? 1 : exchanges + (folded ? 1 : 0);
    return bytes(times * n * unit, times * n * unit);
  }
  const auto chunk = [&](int c) {  // the ring's chunk c, as `part_of` cuts it
    const auto i = static_cast<std::uint64_t>(wrap_rank(c, world));
    return n * (i + 1) / w - n * i / w;
  };
  // Each ring phase sends every chunk but one: reduce-scatter all but rank + 1's, allgather all but rank + 2's.
  return bytes((2 * n - chunk(rank + 1) - chunk(rank + 2)) * unit, (2 * n - chunk(rank) - chunk(rank + 1)) * unit);
}

}  // namespace detail
}  // namespace sketchsgd
