// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Broadcast from a root and sum-reduce to a root, over binomial trees.

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "sketchsgd/collective/allreduce.hpp"
#include "sketchsgd/collective/communicator.hpp"
#include "sketchsgd/detail/collective_pipeline.hpp"

namespace sketchsgd {

/// Shape of a rooted collective.
enum class tree_algorithm {
  binomial,  ///< ceil(log2 W) rounds; inner ranks forward (default)
  flat,      ///< the root talks to every rank directly: a parameter server's star
};

/// Tuning of a rooted collective (`broadcast`, `reduce`), as
/// `allreduce_options` and `allgatherv_options` tune theirs.
struct tree_options {
  /// The tree's shape.
  tree_algorithm algorithm = tree_algorithm::binomial;
};

namespace detail {
/// How many messages rank `vrank` (relative to the root) sends in a binomial
/// broadcast over `size` ranks: one to vrank + m for every power of two m
/// below its lowest set bit (below `size` for the root) with vrank + m < size.
[[nodiscard]] constexpr std::uint64_t binomial_sends(int vrank, int size) noexcept {
  int limit = 1;
  if (vrank == 0) {
    while (limit < size) limit <<= 1;
  } else {
    limit = vrank & -vrank;
  }
  std::uint64_t sends = 0;
  for (int m = 1; m < limit; m <<= 1) sends += vrank + m < size ? 1 : 0;
  return sends;
}
static_assert(binomial_sends(0, 4) == 2 && binomial_sends(2, 4) == 1 && binomial_sends(1, 4) == 0);
static_assert(binomial_sends(0, 5) == 3 && binomial_sends(4, 5) == 0 && binomial_sends(2, 3) == 0);
}  // namespace detail

namespace detail {
/// The binomial tree of `reduce` towards `root` (ceil(log2 W) rounds, n bytes
/// per message): each rank folds what its partners send into `data` with
/// `combine(data, incoming)` (a sum for `reduce`, a top-k merge for gTop-k),
/// then sends the result on. Non-root ranks are left with partial results.
template <class Comm, class T, class Combine>
void binomial_reduce(Comm& comm, std::span<T> data, int root, tag_t tag, Combine combine) {
  const int size = comm.size();
  const int vrank = wrap_rank(comm.rank() - root, size);
  std::vector<T> incoming;
  for (int mask = 1; mask < size; mask <<= 1) {
    if ((vrank & mask) != 0) {
      comm.isend(wrap_rank(vrank - mask + root, size), tag, bytes_of(std::span<const T>(data))).wait();
      return;
    }
    if (vrank + mask < size) {
      incoming.resize(data.size());
      comm.irecv(wrap_rank(vrank + mask + root, size), tag, writable_bytes_of(std::span<T>(incoming))).wait();
      combine(data, std::span<const T>(incoming));
    }
  }
}
}  // namespace detail

/// Copies `data` of rank `root` into `data` of every rank. The transport's
/// own broadcast when it has one (binomial requested); else a binomial tree,
/// ceil(log2 W) rounds, each rank receiving once; or flat: the root sends to
/// every rank, each non-root rank receives n bytes and sends nothing.
/// @tparam Transport a `transport`.
/// @throws std::invalid_argument for a bad root; transport_error/timeout_error.
template <transport Transport, class T>
requires std::is_trivially_copyable_v<T>
void broadcast(communicator<Transport>& comm, std::span<T> data, int root, tree_options options = {}) {
  check_root(root, comm.size(), "broadcast");
  const tree_algorithm algorithm = options.algorithm;
  const tag_t tag = comm.next_collective_tag();
  const int size = comm.size();
  if (size == 1 || data.empty()) return;
  if (algorithm == tree_algorithm::flat) {
    if (comm.rank() != root) {
      comm.irecv(root, tag, detail::writable_bytes_of(data)).wait();
      return;
    }
    using request = decltype(comm.isend(0, tag, detail::bytes_of(std::span<const T>(data))));
    std::vector<request> sends;
    for (int r = 0; r < size; ++r) {
      if (r != root) sends.push_back(comm.isend(r, tag, detail::bytes_of(std::span<const T>(data))));
    }
    for (auto& s : sends) s.wait();
    return;
  }
  const int vrank = detail::wrap_rank(comm.rank() - root, size);
  if constexpr (native_broadcast<Transport, T>) {
    // Counted as the binomial tree below would move it (W - 1 sends in all),
    // so per-rank bytes compare across transports.
    const auto bytes = static_cast<std::uint64_t>(data.size_bytes());
    const std::uint64_t sends = detail::binomial_sends(vrank, size);
    comm.count_native(sends * bytes, vrank == 0 ? 0 : bytes, 1);
    comm.underlying().broadcast(data, root);
    return;
  }
  int mask = 1;
  for (; mask < size; mask <<= 1) {
    if ((vrank & mask) != 0) {
      comm.irecv(detail::wrap_rank(vrank - mask + root, size), tag, detail::writable_bytes_of(data)).wait();
      break;
    }
  }
  for (mask >>= 1; mask > 0; mask >>= 1) {
    if (vrank + mask < size) {
      comm.isend(detail::wrap_rank(vrank + mask + root, size), tag, detail::bytes_of(std::span<const T>(data))).wait();
    }
  }
}

/// Sums `data` over all ranks into `data` of rank `root`; other ranks' `data`
/// is left with partial sums. Binomial tree: ceil(log2 W) rounds, n bytes per
/// message; or flat: every rank sends its n bytes straight to the root, which
/// adds them in rank order.
/// @tparam Transport a `transport`.
/// @throws std::invalid_argument for a bad root; transport_error/timeout_error.
template <transport Transport, reducible T>
void reduce(communicator<Transport>& comm, std::span<T> data, int root, tree_options options = {}) {
  check_root(root, comm.size(), "reduce");
  const tree_algorithm algorithm = options.algorithm;
  const tag_t tag = comm.next_collective_tag();
  const int size = comm.size();
  if (size == 1 || data.empty()) return;
  if (algorithm == tree_algorithm::flat) {
    if (comm.rank() != root) {
      comm.isend(root, tag, detail::bytes_of(std::span<const T>(data))).wait();
      return;
    }
    // Receive into one buffer per peer with all receives posted at once, then
    // add in rank order so the sum does not depend on arrival order.
    std::vector<std::vector<T>> incoming(static_cast<std::size_t>(size));
    using request = decltype(comm.irecv(0, tag, std::span<std::byte>()));
    std::vector<request> recvs;
    for (int r = 0; r < size; ++r) {
      if (r == root) continue;
      auto& buf = incoming[static_cast<std::size_t>(r)];
      buf.resize(data.size());
      recvs.push_back(comm.irecv(r, tag, detail::writable_bytes_of(std::span<T>(buf))));
    }
    for (auto& q : recvs) q.wait();
    for (int r = 0; r < size; ++r) {
      if (r != root) detail::add_into(data, std::span<const T>(incoming[static_cast<std::size_t>(r)]));
    }
    return;
  }
  detail::binomial_reduce(comm, data, root, tag,
                          [](std::span<T> acc, std::span<const T> in) { detail::add_into(acc, in); });
}

/// `broadcast` with the shape as an enum: the spelling before
/// `tree_options`.
template <transport Transport, class T>
requires std::is_trivially_copyable_v<T>
[[deprecated("pass tree_options{.algorithm = ...}")]] void broadcast(communicator<Transport>& comm, std::span<T> data,
                                                                     int root, tree_algorithm algorithm) {
  broadcast(comm, data, root, tree_options{algorithm});
}

/// `reduce` with the shape as an enum: the spelling before `tree_options`.
template <transport Transport, reducible T>
[[deprecated("pass tree_options{.algorithm = ...}")]] void reduce(communicator<Transport>& comm, std::span<T> data,
                                                                  int root, tree_algorithm algorithm) {
  reduce(comm, data, root, tree_options{algorithm});
}

}  // namespace sketchsgd
