// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Configuration fingerprints: a 64-bit digest of everything ranks must agree
/// on, compared across ranks once at setup instead of on every message.

#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "sketchsgd/collective/allgather.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/hash/seed_mixer.hpp"

namespace sketchsgd {

/// The configuration fingerprint's digest: an order-sensitive digest of
/// integers, enums and floating-point values (by bits). Policies add what
/// every rank must agree on (`describe`).
class fingerprint {
 public:
  /// Mixes in `v` (floating point by its bits).
  template <class T>
  requires std::is_arithmetic_v<T> || std::is_enum_v<T> fingerprint& add(T v) noexcept {
    std::uint64_t bits = 0;
    if constexpr (std::is_enum_v<T>) {
      bits = static_cast<std::uint64_t>(v);
    } else if constexpr (std::is_floating_point_v<T>) {
      bits = sizeof(T) == 4 ? std::bit_cast<std::uint32_t>(static_cast<float>(v))
                            : std::bit_cast<std::uint64_t>(static_cast<double>(v));
    } else {
      bits = static_cast<std::uint64_t>(v);
    }
    state_ = mix64(state_ ^ mix64(bits + 0x9E3779B97F4A7C15ULL * ++count_));
    return *this;
  }
  /// The digest so far.
  [[nodiscard]] std::uint64_t value() const noexcept { return state_; }

 private:
  std::uint64_t state_ = 0x736B6574636873ULL;  // "sketchs"
  std::uint64_t count_ = 0;
};

}  // namespace sketchsgd

namespace sketchsgd::detail {

using sketchsgd::fingerprint;

/// Throws `config_mismatch_error` unless every fingerprint in `all` (one
/// per rank, in rank order) equals rank 0's, naming the ranks that differ.
inline void check_fingerprints(std::span<const std::uint64_t> all, const char* who) {
  std::string differing;
  for (std::size_t r = 1; r < all.size(); ++r) {
    if (all[r] != all[0]) differing += (differing.empty() ? "" : ", ") + std::to_string(r);
  }
  if (!differing.empty()) {
    throw config_mismatch_error(std::string(who) + ": rank(s) " + differing +
                                " were configured differently from rank 0 (dimension, sketch, k, P, momentum, "
                                "topology, dense ranges, policies, value or hash type)");
  }
}

/// Allgathers `mine` and throws `config_mismatch_error` on every rank if any
/// rank's differs.
template <class Comm>
void agree_on_fingerprint(Comm& comm, std::uint64_t mine, const char* who) {
  std::vector<std::uint64_t> all(static_cast<std::size_t>(comm.size()));
  allgather(comm, std::span<const std::uint64_t>(&mine, 1), std::span<std::uint64_t>(all));
  check_fingerprints(all, who);
}

}  // namespace sketchsgd::detail
