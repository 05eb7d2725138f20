// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// A communicator: a transport plus what the collectives above it need, a
/// sequence counter for fresh collective tags and byte/message accounting.

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

#include "sketchsgd/half.hpp"
#include "sketchsgd/transport/concepts.hpp"

namespace sketchsgd {

/// Which algorithm an allreduce uses.
enum class allreduce_algorithm {
  automatic,           ///< native if the transport has one, else by size
  portable,            ///< by size, never native: the same bits over every transport
  ring,                ///< reduce-scatter + allgather around a ring: 2 (W-1)/W n bytes per rank
  recursive_doubling,  ///< log2(W) full exchanges: fewest rounds, for small n
};

/// Tuning of an allreduce.
struct allreduce_options {
  /// Algorithm; `automatic` picks native, then recursive doubling up to
  /// `small_bytes`, then the ring.
  allreduce_algorithm algorithm = allreduce_algorithm::automatic;
  /// Largest message a ring step sends at once; two are in flight.
  std::size_t segment_bytes = std::size_t{1} << 20U;
  /// Buffers up to this size use recursive doubling under `automatic` and
  /// `portable`: log2(W) n bytes in log2(W) rounds beats the ring's
  /// 2 (W-1)/W n bytes in 2 (W-1) rounds only while latency dominates.
  std::size_t small_bytes = std::size_t{8} << 10U;
  /// float values only: carry them as bfloat16 or float16, summed in float32
  /// and rounded once per hop (always the ring; half the bytes).
  wire_format wire = wire_format::native;
};

/// Bytes and messages one rank handed to its transport, and collectives run.
struct comm_counters {
  std::uint64_t bytes_sent = 0;         ///< payload bytes handed to isend
  std::uint64_t bytes_received = 0;     ///< payload bytes handed to irecv
  std::uint64_t messages_sent = 0;      ///< isend calls
  std::uint64_t messages_received = 0;  ///< irecv calls
  std::uint64_t collectives = 0;        ///< collective calls (communication rounds)

  /// Field-wise difference, for per-step figures.
  friend comm_counters operator-(comm_counters a, const comm_counters& b) noexcept {
    a.bytes_sent -= b.bytes_sent;
    a.bytes_received -= b.bytes_received;
    a.messages_sent -= b.messages_sent;
    a.messages_received -= b.messages_received;
    a.collectives -= b.collectives;
    return a;
  }
  /// Field-wise sum.
  friend comm_counters operator+(comm_counters a, const comm_counters& b) noexcept {
    a.bytes_sent += b.bytes_sent;
    a.bytes_received += b.bytes_received;
    a.messages_sent += b.messages_sent;
    a.messages_received += b.messages_received;
    a.collectives += b.collectives;
    return a;
  }
  /// Field-wise equality.
  friend bool operator==(const comm_counters&, const comm_counters&) = default;
};

/// A transport as the collectives see it. Every rank must call the same
/// collectives in the same order (as with MPI): each call draws the next tag
/// of a sequence, which is then the same on every rank.
///
/// @tparam Transport a `transport`; referenced, not owned.
template <transport Transport>
class communicator {
 public:
  /// Wraps `t`, which must outlive the communicator.
  explicit communicator(Transport& t) noexcept : transport_(&t) {}

  /// Wraps `t` with default allreduce options for calls that pass none (for
  /// instance `allreduce_algorithm::ring` to get the same bits over every
  /// transport, MPI included).
  communicator(Transport& t, allreduce_options defaults) noexcept : transport_(&t), defaults_(defaults) {}

  /// Allreduce options used when a call passes none.
  [[nodiscard]] const allreduce_options& allreduce_defaults() const noexcept { return defaults_; }

  /// The underlying transport.
  [[nodiscard]] Transport& underlying() const noexcept { return *transport_; }
  /// This rank.
  [[nodiscard]] int rank() const { return static_cast<int>(transport_->rank()); }
  /// Number of ranks.
  [[nodiscard]] int size() const { return static_cast<int>(transport_->size()); }

  /// Counters since construction.
  [[nodiscard]] const comm_counters& counters() const noexcept { return counters_; }

  /// The base tag of a new collective call; the call may use `base + i` for
  /// i < 256. Tags wrap after 2^22 calls, long after any call completed.
  [[nodiscard]] tag_t next_collective_tag() noexcept {
    ++counters_.collectives;
    const tag_t tag = max_user_tag | static_cast<tag_t>((sequence_ & 0x3FFFFFU) << 8U);
    ++sequence_;
    return tag;
  }

  /// `isend` on the transport, counted.
  auto isend(int dst, tag_t tag, std::span<const std::byte> bytes) {
    ++counters_.messages_sent;
    counters_.bytes_sent += bytes.size();
    return transport_->isend(dst, tag, bytes);
  }
  /// `irecv` on the transport, counted.
  auto irecv(int src, tag_t tag, std::span<std::byte> bytes) {
    ++counters_.messages_received;
    counters_.bytes_received += bytes.size();
    return transport_->irecv(src, tag, bytes);
  }

  /// Adds traffic that a native collective moved inside the transport, as
  /// the transport's own algorithm would (callers pass a model, see docs).
  void count_native(std::uint64_t sent, std::uint64_t received, std::uint64_t messages) noexcept {
    counters_.bytes_sent += sent;
    counters_.bytes_received += received;
    counters_.messages_sent += messages;
    counters_.messages_received += messages;
  }

 private:
  Transport* transport_;
  allreduce_options defaults_{};
  std::uint64_t sequence_ = 0;
  comm_counters counters_;
};

/// `std::invalid_argument` unless `root` is a rank of a world of `world`
/// (the one check of a root: collectives and optimizers alike).
inline void check_root(int root, int world, const char* what) {
  if (root < 0 || root >= world) {
    throw std::invalid_argument(std::string(what) + ": root must be in [0, " + std::to_string(world) + "), got " +
                                std::to_string(root));
  }
}

/// `std::invalid_argument` unless `root` is a rank of `comm`.
template <class Communicator>
void check_root(const Communicator& comm, int root, const char* what) {
  check_root(root, comm.size(), what);
}

}  // namespace sketchsgd
