// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// What every optimizer's `step` returns: the exact amount to subtract from
/// the parameters, learning rate included.

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/detail/arithmetic.hpp"

namespace sketchsgd {

/// One step's parameter update: `params -= decay * params`, then
/// `params -= update`. Sparse for the compressed methods (indices strictly
/// increasing), dense for `dense_sgd` and rules with dense moments. The
/// learning rate is already applied. Identical on every rank. Integer values
/// wrap modulo 2^bits, as sketch cells do (detail/arithmetic.hpp).
/// @tparam Value a `sketch_value`.
template <sketch_value Value>
struct model_update {
  /// Coordinates, strictly increasing; empty when `dense`.
  std::vector<std::uint64_t> indices;
  /// Amount to subtract at each index (or at every coordinate when `dense`).
  std::vector<Value> values;
  /// Whether `values` covers every coordinate.
  bool dense = false;
  /// Whether the step was skipped on every rank (a non-finite gradient under
  /// `nonfinite_policy::skip_step`); then nothing is to be applied.
  bool skipped = false;
  /// Decoupled weight decay (Loshchilov and Hutter), learning rate
  /// included: every parameter first loses `decay` times itself (0: none).
  Value decay = Value{0};

  /// Number of coordinates the update touches.
  [[nodiscard]] std::size_t size() const noexcept { return values.size(); }

  /// @throws std::invalid_argument, the message starting with `who`, unless
  /// the update fits d parameters: d values if dense, else indices (ascending)
  /// below d.
  void check_fits(std::size_t d, const char* who) const {
    if (dense && values.size() != d) {
      throw std::invalid_argument(std::string(who) + ": dense update of " + std::to_string(values.size()) +
                                  " values for " + std::to_string(d) + " parameters");
    }
    if (!dense && !indices.empty() && indices.back() >= d) {
      throw std::invalid_argument(std::string(who) + ": index " + std::to_string(indices.back()) + " outside " +
                                  std::to_string(d) + " parameters");
    }
  }

  /// `params -= factor * decay * params`, then `params -= factor * update`.
  /// @throws std::invalid_argument if the update does not fit `params`
  /// (checked before writing).
  void apply(std::span<Value> params, Value factor = Value{1}) const {
    check_fits(params.size(), "model_update::apply");
    using detail::cell_mul;
    using detail::cell_sub;
    if (decay != Value{0}) {
      for (Value& p : params) p = cell_sub(p, cell_mul(cell_mul(factor, decay), p));
    }
    if (dense) {
      for (std::size_t i = 0; i < values.size(); ++i) params[i] = cell_sub(params[i], cell_mul(factor, values[i]));
    } else {
      for (std::size_t n = 0; n < indices.size(); ++n) {
        params[indices[n]] = cell_sub(params[indices[n]], cell_mul(factor, values[n]));
      }
    }
  }

  /// Field-wise equality.
  friend bool operator==(const model_update&, const model_update&) = default;
};

}  // namespace sketchsgd
