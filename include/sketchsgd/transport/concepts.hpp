// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The transport concepts. Tier 1 only moves bytes: post a send or a receive,
/// then wait. Tier 2 adds native collectives, which the free functions in
/// `sketchsgd/collective/` use when present (MPI) instead of their generic
/// algorithms written over Tier 1.
///
/// Contract of every Tier-1 transport:
/// - `isend(dst, tag, bytes)` and `irecv(src, tag, bytes)` return at once
///   with a request; the span must stay valid until the request completed.
/// - Messages between one (source, destination) pair with one tag are
///   delivered in the order they were sent and matched to receives in the
///   order those were posted; a receive expects exactly `bytes.size()` bytes
///   (a different size is a `transport_error`).
/// - `request.wait()` returns when the operation completed, throws
///   `timeout_error` after the transport's timeout, and `transport_error` when
///   the peer failed or the transport broke. `request.wait_for(d)` returns
///   whether it completed within `d` and throws only `transport_error`.
/// - After any `transport_error` the transport is in an unknown state and must
///   be recreated; before raising it, a transport marks the failure so that
///   other ranks fail fast instead of hanging.
/// - Tags below `max_user_tag` are the user's; the ones above are taken by
///   collectives from the communicator's sequence counter.

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

namespace sketchsgd {

/// Message tag.
using tag_t = std::uint32_t;

/// Tags at or above this value belong to collectives.
inline constexpr tag_t max_user_tag = tag_t{1} << 30U;

/// What `isend`/`irecv` return.
template <class R>
concept transport_request = std::movable<R> && requires(R& r, std::chrono::nanoseconds d) {
  r.wait();
  { r.wait_for(d) } -> std::same_as<bool>;
};

/// Tier 1: point-to-point bytes between `size()` ranks.
template <class T>
concept transport = requires(T& t, const T& ct, int peer, tag_t tag, std::span<const std::byte> out,
                             std::span<std::byte> in) {
  { ct.rank() } -> std::convertible_to<int>;
  { ct.size() } -> std::convertible_to<int>;
  { t.isend(peer, tag, out) } -> transport_request;
  { t.irecv(peer, tag, in) } -> transport_request;
};

/// Tier 2, one operation at a time: a native sum-allreduce of `E` values in
/// place. The free collectives use a native operation exactly when the
/// transport models the matching concept.
template <class T, class E>
concept native_allreduce = requires(T& t, std::span<E> x) {
  t.allreduce(x);
};
/// A native allgather of equal-size blocks of `E`.
template <class T, class E>
concept native_allgather = requires(T& t, std::span<const E> mine, std::span<E> all) {
  t.allgather(mine, all);
};
/// A native broadcast of `E` values from a root.
template <class T, class E>
concept native_broadcast = requires(T& t, std::span<E> x, int root) {
  t.broadcast(x, root);
};
/// A native barrier.
template <class T>
concept native_barrier = requires(T& t) {
  t.barrier();
};

/// Tier 2: a transport with every native collective (checked for float).
template <class T>
concept collective_transport = transport<T> && native_allreduce<T, float> && native_allgather<T, float> &&
    native_broadcast<T, float> && native_barrier<T>;

}  // namespace sketchsgd
