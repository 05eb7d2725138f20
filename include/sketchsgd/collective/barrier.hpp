// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Barrier: no rank leaves before every rank entered.

#include <cstddef>
#include <span>

#include "sketchsgd/collective/communicator.hpp"
#include "sketchsgd/detail/collective_pipeline.hpp"

namespace sketchsgd {

/// Returns once every rank called it. The transport's own barrier when it
/// has one; else a dissemination barrier: ceil(log2 W) rounds of empty
/// messages.
/// @tparam Transport a `transport`.
/// @throws transport_error/timeout_error.
template <transport Transport>
void barrier(communicator<Transport>& comm) {
  const tag_t tag = comm.next_collective_tag();
  const int size = comm.size();
  if (size == 1) return;
  if constexpr (native_barrier<Transport>) {
    comm.count_native(0, 0, 1);
    comm.underlying().barrier();
    return;
  }
  for (int distance = 1; distance < size; distance <<= 1) {
    auto recv = comm.irecv(detail::wrap_rank(comm.rank() - distance, size), tag, std::span<std::byte>());
    auto send = comm.isend(detail::wrap_rank(comm.rank() + distance, size), tag, std::span<const std::byte>());
    recv.wait();
    send.wait();
  }
}

}  // namespace sketchsgd
