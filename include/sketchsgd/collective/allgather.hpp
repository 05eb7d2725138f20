// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Allgather (equal contributions) and allgatherv (contributions of different
/// sizes, e.g. sparse top-k exchanges), around a ring.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "sketchsgd/collective/communicator.hpp"
#include "sketchsgd/detail/collective_pipeline.hpp"
#include "sketchsgd/error.hpp"

namespace sketchsgd {

/// What allgatherv returns: rank r's contribution is
/// `values[offsets[r] .. offsets[r + 1])`.
template <class T>
struct gathered {
  /// All contributions, concatenated in rank order.
  std::vector<T> values;
  /// size() + 1 offsets into `values`.
  std::vector<std::size_t> offsets;

  /// Rank r's contribution.
  [[nodiscard]] std::span<const T> of(int r) const {
    const auto i = static_cast<std::size_t>(r);
    return std::span<const T>(values).subspan(offsets[i], offsets[i + 1] - offsets[i]);
  }
};

namespace detail {

/// Ring allgather of slots whose sizes every rank knows: slot r of `all`
/// (`slot(r)`) starts as rank r's contribution and ends everywhere.
template <class Comm, class T, class Slot>
void ring_allgather_slots(Comm& comm, Slot slot, std::size_t longest, std::size_t segment_bytes, tag_t tag) {
  const int size = comm.size();
  const int rank = comm.rank();
  const std::size_t nseg = segment_count(longest, std::max<std::size_t>(1, segment_bytes / sizeof(T)));
  const auto piece = [&](int r, std::size_t j) {
    const std::span<T> s = slot(r);
    const part_range p = part_of(s.size(), nseg, j);
    return s.subspan(p.begin, p.size());
  };
  for (int step = 0; step < size - 1; ++step) {
    const int send_slot = wrap_rank(rank - step, size);
    const int recv_slot = wrap_rank(rank - step - 1, size);
    pipelined_exchange(
        comm, wrap_rank(rank + 1, size), wrap_rank(rank - 1, size), tag, nseg,
        [&](std::size_t j) { return bytes_of(std::span<const T>(piece(send_slot, j))); },
        [&](std::size_t j) { return writable_bytes_of(piece(recv_slot, j)); }, [](std::size_t) {});
  }
}

}  // namespace detail

/// Gathers every rank's `mine` (the same size everywhere) into `all`, rank
/// r's at `all[r * mine.size()]`. The transport's own allgather when it has
/// one; else a ring: (W-1) n bytes per rank in W-1 rounds.
/// @tparam Transport a `transport`.
/// @throws std::invalid_argument if `all.size() != W * mine.size()`;
/// transport_error/timeout_error.
template <transport Transport, class T>
requires std::is_trivially_copyable_v<T>
void allgather(communicator<Transport>& comm, std::span<const T> mine, std::span<T> all) {
  const auto w = static_cast<std::size_t>(comm.size());
  if (all.size() != w * mine.size()) {
    throw std::invalid_argument("allgather: output must hold " + std::to_string(w) + " x " +
                                std::to_string(mine.size()) + " elements, got " + std::to_string(all.size()));
  }
  const tag_t tag = comm.next_collective_tag();
  if constexpr (native_allgather<Transport, T>) {
    const auto bytes = static_cast<std::uint64_t>(mine.size_bytes());
    comm.count_native((w - 1) * bytes, (w - 1) * bytes, w - 1);
    comm.underlying().allgather(mine, all);
    return;
  }
  std::copy(mine.begin(), mine.end(),
            all.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(comm.rank()) * mine.size()));
  if (w == 1 || mine.empty()) return;
  detail::ring_allgather_slots<communicator<Transport>, T>(
      comm, [&](int r) { return all.subspan(static_cast<std::size_t>(r) * mine.size(), mine.size()); }, mine.size(),
      std::size_t{1} << 20U, tag);
}

/// Limits for allgatherv, whose total size comes from the peers.
struct allgatherv_options {
  /// Largest total number of elements accepted from all ranks together.
  std::size_t max_total_elements = std::size_t{1} << 32U;
  /// Largest message of the ring; two are in flight.
  std::size_t segment_bytes = std::size_t{1} << 20U;
};

/// Gathers every rank's `mine`, whose size may differ per rank, on every
/// rank. First an allgather of the sizes, then a ring over the data:
/// sum of the others' sizes received per rank.
/// @tparam Transport a `transport`.
/// @throws transport_error if the announced total exceeds
/// `options.max_total_elements` (nothing is allocated for it), or from the
/// transport.
template <transport Transport, class T>
requires std::is_trivially_copyable_v<T> gathered<T> allgatherv(communicator<Transport>& comm, std::span<const T> mine,
                                                                allgatherv_options options = {}) {
  const int size = comm.size();
  const auto w = static_cast<std::size_t>(size);
  std::vector<std::uint64_t> counts(w);
  const std::uint64_t my_count = mine.size();
  allgather(comm, std::span<const std::uint64_t>(&my_count, 1), std::span<std::uint64_t>(counts));

  gathered<T> out;
  out.offsets.resize(w + 1, 0);
  std::size_t longest = 0;
  for (std::size_t r = 0; r < w; ++r) {
    if (counts[r] > options.max_total_elements - out.offsets[r]) {
      throw transport_error("allgatherv: ranks announce more than " + std::to_string(options.max_total_elements) +
                            " elements in total (rank " + std::to_string(r) + " sends " + std::to_string(counts[r]) +
                            ")");
    }
    out.offsets[r + 1] = out.offsets[r] + static_cast<std::size_t>(counts[r]);
    longest = std::max(longest, static_cast<std::size_t>(counts[r]));
  }
  if (counts[static_cast<std::size_t>(comm.rank())] != mine.size()) {
    throw transport_error("allgatherv: own count came back changed");
  }
  out.values.resize(out.offsets[w]);
  std::copy(mine.begin(), mine.end(),
            out.values.begin() + static_cast<std::ptrdiff_t>(out.offsets[static_cast<std::size_t>(comm.rank())]));
  const tag_t tag = comm.next_collective_tag();
  if (size > 1 && longest > 0) {
    const std::span<T> all(out.values);
    detail::ring_allgather_slots<communicator<Transport>, T>(
        comm,
        [&](int r) {
          const auto i = static_cast<std::size_t>(r);
          return all.subspan(out.offsets[i], out.offsets[i + 1] - out.offsets[i]);
        },
        longest, options.segment_bytes, tag);
  }
  return out;
}

}  // namespace sketchsgd
