// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// An optimizer step as a sequence of communication rounds. Every
/// aggregation policy is written once, as a coroutine that yields each
/// allreduce or allgather it needs; the transport-driven `step` carries the
/// rounds with sketchsgd's collectives, a split-phase caller with its own
/// (torch.distributed, NCCL, Horovod). Both walk the same code, so for the
/// same sums they give the same bits.

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <stdexcept>
#include <utility>

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/concepts.hpp"

namespace sketchsgd {

/// What a round asks of the ranks.
enum class round_kind : std::uint8_t {
  sum,     ///< replace `values` (or `counts`) on every rank by its element-wise sum over the ranks
  gather,  ///< each rank contributes `block` (the same size everywhere); `gathered` gets them all, in rank order
};

/// One collective of a split-phase step. Spans point into the optimizer's
/// own buffers and stay valid until the step is resumed.
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct collective_round {
  round_kind kind = round_kind::sum;               ///< what to do
  std::span<Value> values{};                       ///< sum: values to add up (empty when `counts` is used)
  std::span<std::int64_t> counts{};                ///< sum: integers to add up (the non-finite check)
  std::span<const std::byte> block{};              ///< gather: this rank's bytes
  std::span<std::byte> gathered{};                 ///< gather: world x block.size() bytes, filled by the caller
  std::optional<allreduce_algorithm> algorithm{};  ///< sum: the algorithm the transport-driven form uses
  /// sum of float values: how they travel (a 16-bit format, summed in float32
  /// and rounded at every hop; a split-phase caller carries it as it can).
  wire_format wire = wire_format::native;
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

namespace detail {

/// Carries `r` with sketchsgd's collectives.
template <transport Transport, class Value>
void run_round(communicator<Transport>& comm, const collective_round<Value>& r) {
  if (r.kind == round_kind::gather) {
    allgather(comm, r.block, r.gathered);
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

/// The bytes one rank sends in sketchsgd's own collective for `r`: what a
/// split-phase optimizer counts, since the caller's collective moves them.
template <class Value>
std::uint64_t modeled_bytes(const collective_round<Value>& r, int world) {
  if (r.kind == round_kind::gather) return static_cast<std::uint64_t>(world - 1) * r.block.size();
  const double bytes = static_cast<double>(r.counts.empty() ? r.values.size() * wire_bytes(r.wire, sizeof(Value))
                                                            : r.counts.size_bytes());
  allreduce_options o;
  if (r.algorithm == allreduce_algorithm::recursive_doubling) o.small_bytes = static_cast<std::size_t>(bytes);
  if (r.wire != wire_format::native) o.small_bytes = 0;  // a 16-bit wire always takes the ring
  return static_cast<std::uint64_t>(allreduce_bytes_model(bytes, world, o));
}

}  // namespace detail
}  // namespace sketchsgd
