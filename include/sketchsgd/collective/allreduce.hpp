// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Sum-allreduce, written once over any Tier-1 transport: a segmented ring
/// for large buffers, recursive doubling for small ones; the transport's own
/// allreduce when it has one (Tier 2) and no algorithm is forced.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "sketchsgd/collective/communicator.hpp"
#include "sketchsgd/detail/arithmetic.hpp"
#include "sketchsgd/detail/collective_pipeline.hpp"
#include "sketchsgd/half.hpp"

namespace sketchsgd {

/// Element types collectives can sum.
template <class T>
concept reducible = std::is_arithmetic_v<T> && !std::same_as<T, bool>;

namespace detail {

template <class T>
void add_into(std::span<T> acc, std::span<const T> x) noexcept {
  for (std::size_t i = 0; i < acc.size(); ++i) acc[i] = cell_add(acc[i], x[i]);
}

/// Ring allreduce. Chunk c of the buffer is reduced along the ring and ends
/// on rank c - 1, which then passes the finished bytes on, so every rank
/// holds bit-identical sums.
template <class Comm, class T>
void ring_allreduce(Comm& comm, std::span<T> data, std::size_t segment_bytes) {
  const int size = comm.size();
  const int rank = comm.rank();
  const auto w = static_cast<std::size_t>(size);
  const int right = wrap_rank(rank + 1, size);
  const int left = wrap_rank(rank - 1, size);
  const std::size_t seg_elems = std::max<std::size_t>(1, segment_bytes / sizeof(T));
  const std::size_t longest_chunk = (data.size() + w - 1) / w;
  const std::size_t nseg = segment_count(longest_chunk, seg_elems);
  const auto segment = [&](std::size_t chunk, std::size_t j) {
    const part_range c = part_of(data.size(), w, chunk);
    const part_range s = part_of(c.size(), nseg, j);
    return data.subspan(c.begin + s.begin, s.size());
  };
  const tag_t tag = comm.next_collective_tag();

  // Reduce-scatter: after step s, chunk (rank - s - 1) holds s + 2 inputs.
  std::vector<T> scratch(2 * (longest_chunk / nseg + 1));
  for (int step = 0; step < size - 1; ++step) {
    const auto send_chunk = static_cast<std::size_t>(wrap_rank(rank - step, size));
    const auto recv_chunk = static_cast<std::size_t>(wrap_rank(rank - step - 1, size));
    auto slot = [&](std::size_t j) {
      return std::span<T>(scratch).subspan((j % 2) * (scratch.size() / 2), segment(recv_chunk, j).size());
    };
    pipelined_exchange(
        comm, right, left, tag, nseg,
        [&](std::size_t j) { return bytes_of(std::span<const T>(segment(send_chunk, j))); },
        [&](std::size_t j) { return writable_bytes_of(slot(j)); },
        [&](std::size_t j) { add_into(segment(recv_chunk, j), std::span<const T>(slot(j))); });
  }
  // Allgather: pass the finished chunks around.
  for (int step = 0; step < size - 1; ++step) {
    const auto send_chunk = static_cast<std::size_t>(wrap_rank(rank + 1 - step, size));
    const auto recv_chunk = static_cast<std::size_t>(wrap_rank(rank - step, size));
    pipelined_exchange(
        comm, right, left, tag + 1, nseg,
        [&](std::size_t j) { return bytes_of(std::span<const T>(segment(send_chunk, j))); },
        [&](std::size_t j) { return writable_bytes_of(segment(recv_chunk, j)); }, [](std::size_t) {});
  }
}

/// The ring of `ring_allreduce` with float values carried in a 16-bit
/// format: each hop sends its partial sums rounded to the format, the
/// receiver adds them to its float32 partial sums; the rank that finishes a
/// chunk rounds it once more and passes those 16-bit values on, so every
/// rank ends with the same bits: sums rounded to the format. Half the bytes
/// of the float32 ring.
template <wire_format W, class Comm>
void ring_allreduce_wire(Comm& comm, std::span<float> data, std::size_t segment_bytes) {
  using codec = wire_codec<W>;
  const int size = comm.size();
  const int rank = comm.rank();
  const auto w = static_cast<std::size_t>(size);
  const int right = wrap_rank(rank + 1, size);
  const int left = wrap_rank(rank - 1, size);
  const std::size_t seg_elems = std::max<std::size_t>(1, segment_bytes / sizeof(std::uint16_t));
  const std::size_t longest_chunk = (data.size() + w - 1) / w;
  const std::size_t nseg = segment_count(longest_chunk, seg_elems);
  const auto segment = [&](std::size_t chunk, std::size_t j) {
    const part_range c = part_of(data.size(), w, chunk);
    const part_range s = part_of(c.size(), nseg, j);
    return data.subspan(c.begin + s.begin, s.size());
  };
  const std::size_t slot_elems = longest_chunk / nseg + 1;
  std::vector<std::uint16_t> outgoing(2 * slot_elems);
  std::vector<std::uint16_t> incoming(2 * slot_elems);
  const auto slot = [&](std::vector<std::uint16_t>& buffer, std::size_t j, std::size_t n) {
    return std::span<std::uint16_t>(buffer).subspan((j % 2) * slot_elems, n);
  };
  const auto encoded = [&](std::span<const float> from, std::span<std::uint16_t> to) {
    for (std::size_t i = 0; i < from.size(); ++i) to[i] = codec::encode(from[i]);
    return bytes_of(std::span<const std::uint16_t>(to));
  };
  const tag_t tag = comm.next_collective_tag();

  for (int step = 0; step < size - 1; ++step) {  // reduce-scatter, as ring_allreduce
    const auto send_chunk = static_cast<std::size_t>(wrap_rank(rank - step, size));
    const auto recv_chunk = static_cast<std::size_t>(wrap_rank(rank - step - 1, size));
    pipelined_exchange(
        comm, right, left, tag, nseg,
        [&](std::size_t j) {
          const std::span<const float> from = segment(send_chunk, j);
          return encoded(from, slot(outgoing, j, from.size()));
        },
        [&](std::size_t j) { return writable_bytes_of(slot(incoming, j, segment(recv_chunk, j).size())); },
        [&](std::size_t j) {
          const std::span<float> to = segment(recv_chunk, j);
          const std::span<const std::uint16_t> got = slot(incoming, j, to.size());
          for (std::size_t i = 0; i < to.size(); ++i) to[i] += codec::decode(got[i]);
        });
  }
  // The chunk this rank finished takes the rounding every other rank sees.
  for (std::size_t j = 0; j < nseg; ++j) {
    for (float& x : segment(static_cast<std::size_t>(wrap_rank(rank + 1, size)), j))
      x = codec::decode(codec::encode(x));
  }
  for (int step = 0; step < size - 1; ++step) {  // allgather of the rounded chunks
    const auto send_chunk = static_cast<std::size_t>(wrap_rank(rank + 1 - step, size));
    const auto recv_chunk = static_cast<std::size_t>(wrap_rank(rank - step, size));
    pipelined_exchange(
        comm, right, left, tag + 1, nseg,
        [&](std::size_t j) {
          const std::span<const float> from = segment(send_chunk, j);  // rounded already: encoding is exact
          return encoded(from, slot(outgoing, j, from.size()));
        },
        [&](std::size_t j) { return writable_bytes_of(slot(incoming, j, segment(recv_chunk, j).size())); },
        [&](std::size_t j) {
          const std::span<float> to = segment(recv_chunk, j);
          const std::span<const std::uint16_t> got = slot(incoming, j, to.size());
          for (std::size_t i = 0; i < to.size(); ++i) to[i] = codec::decode(got[i]);
        });
  }
}

/// Recursive doubling; a non-power-of-two world first folds its extra ranks
/// into partners and hands them the result at the end. IEEE addition is
/// commutative, so both partners of every exchange compute identical bits.
template <class Comm, class T>
void recursive_doubling_allreduce(Comm& comm, std::span<T> data) {
  const int size = comm.size();
  const int rank = comm.rank();
  int pof2 = 1;
  while (pof2 * 2 <= size) pof2 *= 2;
  const int extra = size - pof2;
  const tag_t tag = comm.next_collective_tag();
  std::vector<T> other(data.size());
  const auto out = bytes_of(std::span<const T>(data));
  const auto in = writable_bytes_of(std::span<T>(other));

  // Fold: among the first 2 * extra ranks, even ones hand their data to the
  // next odd one and sit out.
  int vrank = -1;
  if (rank < 2 * extra) {
    if (rank % 2 == 0) {
      comm.isend(rank + 1, tag, out).wait();
    } else {
      comm.irecv(rank - 1, tag, in).wait();
      add_into(data, std::span<const T>(other));
      vrank = rank / 2;
    }
  } else {
    vrank = rank - extra;
  }
  if (vrank >= 0) {
    const auto real = [&](int v) { return v < extra ? 2 * v + 1 : v + extra; };
    for (int mask = 1; mask < pof2; mask <<= 1) {
      const int partner = real(vrank ^ mask);
      auto recv = comm.irecv(partner, tag + 1, in);
      auto send = comm.isend(partner, tag + 1, out);
      recv.wait();
      send.wait();
      add_into(data, std::span<const T>(other));
    }
  }
  // Unfold: the odd ranks return the result to their even partners.
  if (rank < 2 * extra) {
    if (rank % 2 == 1) {
      comm.isend(rank - 1, tag + 2, out).wait();
    } else {
      comm.irecv(rank + 1, tag + 2, writable_bytes_of(data)).wait();
    }
  }
}

}  // namespace detail

/// Replaces `data` on every rank with its element-wise sum over all ranks.
/// Every rank ends with bit-identical values. Integer sums wrap. With a
/// 16-bit `options.wire` (float only), sums are carried as bfloat16 or
/// float16, added in float32 and rounded at every hop, and the result is
/// rounded to the format (also in a world of one).
///
/// Generic cost: ring 2 (W-1)/W n sizeof(T) bytes sent per rank in 2 (W-1)
/// rounds (2 bytes a value on a 16-bit wire); recursive doubling log2(W) n
/// sizeof(T) bytes in log2(W) rounds.
/// @tparam Transport a `transport`.
/// @throws std::invalid_argument before any I/O if the options are invalid;
/// transport_error / timeout_error from the transport.
template <transport Transport, reducible T>
void allreduce(communicator<Transport>& comm, std::span<T> data, allreduce_options options) {
  if (options.wire != wire_format::native) {
    if constexpr (std::is_same_v<T, float>) {
      if (comm.size() == 1 || data.empty()) {
        (void)comm.next_collective_tag();
        for (float& x : data)
          x = options.wire == wire_format::bfloat16 ? from_bfloat16(to_bfloat16(x)) : from_float16(to_float16(x));
      } else if (options.wire == wire_format::bfloat16) {
        detail::ring_allreduce_wire<wire_format::bfloat16>(comm, data, options.segment_bytes);
      } else {
        detail::ring_allreduce_wire<wire_format::float16>(comm, data, options.segment_bytes);
      }
      return;
    } else {
      throw std::invalid_argument("allreduce: a 16-bit wire carries float values only");
    }
  }
  if (comm.size() == 1 || data.empty()) {
    (void)comm.next_collective_tag();
    return;
  }
  if constexpr (native_allreduce<Transport, T>) {
    if (options.algorithm == allreduce_algorithm::automatic) {
      (void)comm.next_collective_tag();
      const auto w = static_cast<std::uint64_t>(comm.size());
      const std::uint64_t ring_bytes = 2 * (w - 1) * data.size_bytes() / w;
      comm.count_native(ring_bytes, ring_bytes, 2 * (w - 1));
      comm.underlying().allreduce(data);
      return;
    }
  }
  const bool small = data.size_bytes() <= options.small_bytes;
  const bool by_size =
      options.algorithm == allreduce_algorithm::automatic || options.algorithm == allreduce_algorithm::portable;
  if (options.algorithm == allreduce_algorithm::recursive_doubling || (by_size && small)) {
    detail::recursive_doubling_allreduce(comm, data);
  } else {
    detail::ring_allreduce(comm, data, options.segment_bytes);
  }
}

/// The most bytes any rank hands to its transport in the portable
/// `allreduce` of `bytes` over `world` ranks: recursive doubling up to
/// `options.small_bytes` (log2 W exchanges of the whole buffer, one more for a
/// rank that folds in an extra rank of a non-power-of-two world), else the
/// ring's 2 (W - 1) / W bytes (its chunks are whole elements, so a rank may
/// send a few bytes more or less). A model for choosing a byte budget.
[[nodiscard]] inline double allreduce_bytes_model(double bytes, int world, const allreduce_options& options = {}) {
  if (world <= 1 || bytes <= 0) return 0;
  if (bytes <= static_cast<double>(options.small_bytes)) {
    int pof2 = 1;
    while (pof2 * 2 <= world) pof2 *= 2;
    return (std::log2(pof2) + (world > pof2 ? 1 : 0)) * bytes;
  }
  return 2.0 * (world - 1) / world * bytes;
}

/// `allreduce` with the communicator's default options.
/// @tparam Transport a `transport`.
/// @throws transport_error / timeout_error from the transport.
template <transport Transport, reducible T>
void allreduce(communicator<Transport>& comm, std::span<T> data) {
  allreduce(comm, data, comm.allreduce_defaults());
}

}  // namespace sketchsgd
