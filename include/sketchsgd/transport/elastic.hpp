// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// What every elastic worker has, whatever its transport: the
/// `elastic_member` concept (`tcp_elastic_member`, transport/tcp/elastic.hpp;
/// `inproc_elastic_member`, transport/inproc_elastic.hpp) and
/// `reform_agreed`, the step boundary at which a generation's ranks leave it
/// together.

#include <concepts>
#include <cstdint>
#include <span>
#include <type_traits>

#include "sketchsgd/collective/allreduce.hpp"
#include "sketchsgd/collective/communicator.hpp"
#include "sketchsgd/transport/concepts.hpp"

namespace sketchsgd {

/// A worker of an elastic job: `join()` leaves the current generation of
/// the world and returns its transport in the next one; `membership()`
/// points to its place there (`generation`, `rank`, `size`, `newcomer`);
/// `reform_requested()` says whether its generation was asked to re-form (a
/// worker waits to join, or a member left).
template <class M>
concept elastic_member = requires(M& m, const M& cm) {
  requires transport<std::remove_reference_t<decltype(m.join())>>;
  { cm.membership()->generation } -> std::convertible_to<std::uint64_t>;
  { cm.membership()->newcomer } -> std::convertible_to<bool>;
  { cm.reform_requested() } -> std::convertible_to<bool>;
};

/// Whether any rank of `comm` was asked to re-form (`reform_requested`):
/// one allreduce of a flag, so that every rank leaves the generation at the
/// same step boundary (ranks hear of a re-forming at different steps).
/// @throws what the allreduce throws.
template <transport Transport, elastic_member Member>
bool reform_agreed(communicator<Transport>& comm, const Member& me) {
  std::int32_t flag = me.reform_requested() ? 1 : 0;
  allreduce(comm, std::span<std::int32_t>(&flag, 1));  // a sum: the number of ranks asked
  return flag != 0;
}

}  // namespace sketchsgd
