// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Building blocks of the generic collectives: byte views, balanced
/// partitions and a send/receive pipeline with two segments in flight.

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

#include "sketchsgd/transport/concepts.hpp"

namespace sketchsgd::detail {

template <class T>
std::span<const std::byte> bytes_of(std::span<const T> s) noexcept {
  return std::as_bytes(s);
}
template <class T>
std::span<std::byte> writable_bytes_of(std::span<T> s) noexcept {
  return std::as_writable_bytes(s);
}

/// Part `i` of `n` of the range [0, total), balanced: [begin, end).
struct part_range {
  std::size_t begin;
  std::size_t end;
  [[nodiscard]] std::size_t size() const noexcept { return end - begin; }
};
[[nodiscard]] constexpr part_range part_of(std::size_t total, std::size_t n, std::size_t i) noexcept {
  return {total * i / n, total * (i + 1) / n};
}

/// Number of segments of at most `segment` elements covering `longest`.
[[nodiscard]] constexpr std::size_t segment_count(std::size_t longest, std::size_t segment) noexcept {
  if (segment == 0) segment = 1;
  const std::size_t n = (longest + segment - 1) / segment;
  return n == 0 ? 1 : n;
}

/// Positive modulo.
[[nodiscard]] constexpr int wrap_rank(int r, int size) noexcept { return ((r % size) + size) % size; }

/// For j in [0, count): sends `outgoing(j)` to `dst` and receives
/// `incoming(j)` from `src` on `tag`, keeping two (send, receive) pairs in
/// flight, and calls `received(j)` once segment j has arrived, in order.
/// `incoming(j)` may reuse the buffer of segment j - 2: it is only asked for
/// after `received(j - 2)` returned. Sends to self are not allowed.
template <class Comm, class Outgoing, class Incoming, class Received>
void pipelined_exchange(Comm& comm, int dst, int src, tag_t tag, std::size_t count, Outgoing outgoing,
                        Incoming incoming, Received received) {
  using send_request = decltype(comm.isend(dst, tag, outgoing(0)));
  using recv_request = decltype(comm.irecv(src, tag, incoming(0)));
  struct in_flight {
    recv_request recv;
    send_request send;
  };
  constexpr std::size_t depth = 2;
  std::array<std::optional<in_flight>, depth> slots;
  auto finish = [&](std::size_t j) {
    auto& slot = slots[j % depth];
    slot->recv.wait();
    slot->send.wait();
    slot.reset();
    received(j);
  };
  for (std::size_t j = 0; j < count; ++j) {
    if (j >= depth) finish(j - depth);
    // Post the receive first so a fast peer's data lands in place.
    auto recv = comm.irecv(src, tag, incoming(j));
    auto send = comm.isend(dst, tag, outgoing(j));
    slots[j % depth].emplace(in_flight{std::move(recv), std::move(send)});
  }
  for (std::size_t j = count > depth ? count - depth : 0; j < count; ++j) finish(j);
}

}  // namespace sketchsgd::detail
