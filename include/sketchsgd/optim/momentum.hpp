// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Worker-side momentum with error feedback (Sketched-SGD's "momentum
/// correction"; Lin et al.'s DGC; Karimireddy et al.'s EF-SGD) and masking.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "sketchsgd/concepts.hpp"

namespace sketchsgd::detail {

/// Dense momentum `u` and error `v` of one worker.
template <sketch_value Value>
class momentum_error {
 public:
  momentum_error() = default;
  explicit momentum_error(std::size_t d) : u_(d, Value{}), v_(d, Value{}) {}

  /// u <- m u + g;  v <- v + u (error feedback) or v <- u (without).
  void accumulate(std::span<const Value> g, Value m, bool error_feedback) noexcept {
    Value* const u = u_.data();
    Value* const v = v_.data();
    const std::size_t n = g.size();
    if (error_feedback) {
      for (std::size_t i = 0; i < n; ++i) {
        u[i] = m * u[i] + g[i];
        v[i] += u[i];
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        u[i] = m * u[i] + g[i];
        v[i] = u[i];
      }
    }
  }

  /// Momentum masking and error reset at the applied coordinates.
  void mask(std::span<const std::uint64_t> indices) noexcept {
    for (const std::uint64_t i : indices) {
      u_[i] = Value{};
      v_[i] = Value{};
    }
  }

  /// Error reset only (momentum keeps running), for coordinates applied in
  /// full every step.
  void reset_error(std::uint64_t offset, std::uint64_t length) noexcept {
    for (std::uint64_t i = offset; i < offset + length; ++i) v_[i] = Value{};
  }

  [[nodiscard]] std::span<const Value> u() const noexcept { return u_; }
  [[nodiscard]] std::span<const Value> v() const noexcept { return v_; }
  [[nodiscard]] std::vector<Value>& u_storage() noexcept { return u_; }
  [[nodiscard]] std::vector<Value>& v_storage() noexcept { return v_; }

 private:
  std::vector<Value> u_;
  std::vector<Value> v_;
};

}  // namespace sketchsgd::detail
