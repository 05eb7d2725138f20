// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Coordinates on the wire: 4-byte indices (as in the papers' byte counts),
/// (index, value) entries, the checks every received index passes before it
/// indexes anything, and the merge of two top-k lists (gTop-k).

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "sketchsgd/error.hpp"
#include "sketchsgd/sketch/topk.hpp"

namespace sketchsgd::detail {

/// Index type on the wire (d must stay below 2^32 - 1 where indices travel).
using wire_index = std::uint32_t;
/// Padding: no coordinate.
inline constexpr wire_index no_index = std::numeric_limits<wire_index>::max();

template <class Value>
struct wire_entry {
  wire_index index;
  Value value;
};

/// `u` (global indices) as `k` entries, padded with `no_index`.
template <class Value>
std::vector<wire_entry<Value>> padded_entries(const sparse_update<Value>& u, std::size_t k) {
  std::vector<wire_entry<Value>> out(k, {no_index, Value{}});
  for (std::size_t j = 0; j < u.size(); ++j) out[j] = {static_cast<wire_index>(u.indices[j]), u.values[j]};
  return out;
}

/// The index of a received wire index or entry.
constexpr wire_index index_of(wire_index i) noexcept { return i; }
template <class Value>
constexpr wire_index index_of(const wire_entry<Value>& e) noexcept {
  return e.index;
}

/// Checks indices a peer sent before they index anything here: below
/// `dimension`, padding (`no_index`) only at the end, strictly increasing
/// (as every sender writes them).
/// @throws transport_error naming the optimizer and the bad index.
template <class Item>
void check_received_indices(std::span<const Item> items, std::uint64_t dimension, const char* name) {
  std::uint64_t floor = 0;
  bool padding = false;
  for (const Item& item : items) {
    const wire_index i = index_of(item);
    if (i == no_index) {
      padding = true;
      continue;
    }
    if (padding || i >= dimension || i < floor) {
      throw transport_error(std::string(name) + ": a peer sent index " + std::to_string(i) +
                            " (d = " + std::to_string(dimension) +
                            "; indices must stay below d, increase, and come before the padding)");
    }
    floor = std::uint64_t{i} + 1;
  }
}

/// Union of two index-sorted entry lists (padding `no_index` ignored), values
/// summed at common indices (`a`'s first), then the k largest by magnitude
/// (ties to the lower index), back in index order and padded to k.
template <class Value>
std::vector<wire_entry<Value>> merge_top_k(std::span<const wire_entry<Value>> a, std::span<const wire_entry<Value>> b,
                                           std::size_t k) {
  std::vector<std::uint64_t> index;
  std::vector<Value> value;
  std::size_t i = 0;
  std::size_t j = 0;
  const auto live = [](const wire_entry<Value>& e) { return e.index != no_index; };
  while (i < a.size() || j < b.size()) {
    if (i < a.size() && !live(a[i])) {
      i = a.size();
      continue;
    }
    if (j < b.size() && !live(b[j])) {
      j = b.size();
      continue;
    }
    if (j >= b.size() || (i < a.size() && a[i].index < b[j].index)) {
      index.push_back(a[i].index);
      value.push_back(a[i++].value);
    } else if (i >= a.size() || b[j].index < a[i].index) {
      index.push_back(b[j].index);
      value.push_back(b[j++].value);
    } else {
      index.push_back(a[i].index);
      value.push_back(a[i++].value + b[j++].value);
    }
  }
  const auto best = top_k(value, k);
  std::vector<wire_entry<Value>> out(k, {no_index, Value{}});
  for (std::size_t n = 0; n < best.size(); ++n) {
    out[n] = {static_cast<wire_index>(index[best.indices[n]]), best.values[n]};
  }
  return out;
}

}  // namespace sketchsgd::detail
