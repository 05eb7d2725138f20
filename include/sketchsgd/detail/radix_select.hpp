// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Exact, deterministic top-k selection by magnitude in O(n) time and O(k)
/// extra memory: an MSD radix select over the bits of |x|.
///
/// Pass 1 counts the top 16 bits of every key (callers may fuse it into the
/// pass that produces the keys). That fixes a boundary digit D: everything
/// above D is selected, the k-th key lies in D. Pass 2 collects the keys above
/// D and gathers the ones in D as candidates, finished by nth_element. Only
/// when the boundary digit holds too many keys to gather (more than about
/// 2k) does a further 16-bit level refine it first. Typical gradients need
/// exactly two passes.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "sketchsgd/detail/parallel.hpp"

namespace sketchsgd::detail {

/// Order-preserving unsigned key of |v|: a larger key means a larger
/// magnitude. Floating point: the bits without the sign (IEEE order equals
/// magnitude order for non-negative values); NaN keys exceed `max_valid` and
/// are never selected. Integers: the magnitude as unsigned (INT_MIN included).
template <class Value>
struct magnitude_key {
  using type = std::conditional_t<sizeof(Value) == 4, std::uint32_t, std::uint64_t>;

  static constexpr type max_valid = [] {
    if constexpr (std::is_same_v<Value, float>) {
      return type{0x7F800000U};  // +inf
    } else if constexpr (std::is_same_v<Value, double>) {
      return type{0x7FF0000000000000ULL};
    } else {
      return std::numeric_limits<type>::max();
    }
  }();

  static constexpr type of(Value v) noexcept {
    if constexpr (std::is_floating_point_v<Value>) {
      constexpr type sign_bit = type{1} << (8 * sizeof(type) - 1);
      return static_cast<type>(std::bit_cast<type>(v) & ~sign_bit);
    } else {
      const auto u = static_cast<type>(v);
      return v < 0 ? static_cast<type>(type{0} - u) : u;
    }
  }
};

/// Bits per radix digit, and the number of digit values.
inline constexpr unsigned radix_digit_bits = 16;
inline constexpr std::size_t radix_buckets = std::size_t{1} << radix_digit_bits;

/// Counts of the top digit of keys; one per worker, summed by the caller.
using radix_histogram = std::vector<std::size_t>;

/// `workers` zeroed histograms, kept by the calling thread from one selection
/// to the next (workers x 512 KiB for the thread's life): fresh ones cost more
/// in page faults than counting does for inputs of a few 100k keys. Each
/// worker zeroes its own (`zero_histogram`), in parallel.
inline std::vector<radix_histogram>& thread_histograms(unsigned workers) {
  thread_local std::vector<radix_histogram> parts;
  if (parts.size() < workers) parts.resize(workers);
  return parts;
}
inline std::size_t* zero_histogram(radix_histogram& h) {
  h.assign(radix_buckets, 0);  // in place after the first time
  return h.data();
}

/// Sums histograms 1..workers-1 into histogram 0.
inline void sum_histograms(std::vector<radix_histogram>& parts, unsigned workers) {
  for (unsigned w = 1; w < workers; ++w) {
    for (std::size_t b = 0; b < radix_buckets; ++b) parts[0][b] += parts[w][b];
  }
}

/// Adds to `hist` the top digit of every valid key `key_at(i)`, i in
/// `[begin, end)`.
template <class Key, class KeyAt>
void count_top_digits(std::size_t begin, std::size_t end, KeyAt key_at, Key max_valid,
                      std::size_t* hist) {  // NOLINT(readability-non-const-parameter): it counts into hist
  constexpr unsigned shift = 8 * sizeof(Key) - radix_digit_bits;
  for (std::size_t i = begin; i < end; ++i) {
    const Key key = key_at(i);
    if (key <= max_valid) ++hist[key >> shift];
  }
}

/// Indices, in increasing order, of the `k` valid keys that come first in the
/// order (key descending, index ascending); all valid keys when there are at
/// most k. `key_at(i)` gives the key of element i of n, valid when at most
/// `max_valid`. `top_histogram`, when given, holds the counts of the top
/// digit of all valid keys (a pass the caller fused with producing them); it
/// may be `thread_histograms(workers)[0]`, which the deeper levels reuse.
template <class Key, class KeyAt>
std::vector<std::size_t> select_top_k(std::size_t n, std::size_t k, Key max_valid, KeyAt key_at, unsigned workers,
                                      const radix_histogram* top_histogram = nullptr) {
  constexpr unsigned key_bits = 8 * sizeof(Key);
  std::vector<std::size_t> selected;
  if (k == 0 || n == 0) return selected;
  const std::size_t gather_cap = std::max<std::size_t>(2 * k, radix_buckets);

  // Small inputs: sort (key desc, index asc) directly; the 64 Ki-bucket
  // histograms would cost more than the data.
  if (n <= radix_buckets && top_histogram == nullptr) {
    std::vector<std::size_t> order;
    order.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (key_at(i) <= max_valid) order.push_back(i);
    }
    if (order.size() > k) {
      const auto by_rank = [&](std::size_t a, std::size_t b) {
        const Key ka = key_at(a);
        const Key kb = key_at(b);
        return ka != kb ? ka > kb : a < b;
      };
      std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - 1), order.end(), by_rank);
      order.resize(k);
      std::sort(order.begin(), order.end());
    }
    return order;
  }

  // Per-worker histograms of one digit level, summed into `hist`.
  const std::size_t* hist = top_histogram != nullptr ? top_histogram->data() : nullptr;
  auto count_level = [&](Key prefix, Key mask, unsigned shift) {
    auto& parts = thread_histograms(workers);
    fork_join(workers, [&](unsigned w, unsigned nw) {
      const index_range r = split_range(n, w, nw);
      std::size_t* h = zero_histogram(parts[w]);
      for (std::size_t i = r.begin; i < r.end; ++i) {
        const Key key = key_at(i);
        if (key <= max_valid && (key & mask) == prefix) ++h[(key >> shift) & (radix_buckets - 1)];
      }
    });
    sum_histograms(parts, workers);
    hist = parts[0].data();
  };

  if (hist == nullptr) count_level(Key{0}, Key{0}, key_bits - radix_digit_bits);
  std::size_t valid = 0;
  for (std::size_t b = 0; b < radix_buckets; ++b) valid += hist[b];
  const bool take_all = valid <= k;

  Key prefix = 0;        // the boundary's fixed top bits
  Key mask = 0;          // which bits `prefix` fixes
  std::size_t need = k;  // how many to take from inside the boundary
  // NOLINTNEXTLINE(bugprone-infinite-loop): it ends by break, at shift 0 at the latest
  for (unsigned shift = key_bits - radix_digit_bits; !take_all; shift -= radix_digit_bits) {
    std::size_t digit = radix_buckets - 1;
    for (; hist[digit] < need; --digit) need -= hist[digit];
    prefix = static_cast<Key>(prefix | (static_cast<Key>(digit) << shift));
    mask = static_cast<Key>(mask | (static_cast<Key>(radix_buckets - 1) << shift));
    if (hist[digit] <= gather_cap || shift == 0) break;  // gather the boundary digit now
    count_level(prefix, mask, shift - radix_digit_bits);
  }
  // At full resolution every candidate has the same key: the lowest indices
  // win, so no worker needs to keep more than `need` of them.
  const bool full_resolution = mask == std::numeric_limits<Key>::max();

  // Final pass: keys whose top bits beat the boundary are in; keys equal to
  // it are candidates.
  struct candidate {
    Key key;
    std::size_t index;
  };
  std::vector<std::vector<std::size_t>> above(workers);
  std::vector<std::vector<candidate>> tied(workers);
  fork_join(workers, [&](unsigned w, unsigned nw) {
    const index_range r = split_range(n, w, nw);
    if (take_all) {
      for (std::size_t i = r.begin; i < r.end; ++i) {
        if (key_at(i) <= max_valid) above[w].push_back(i);
      }
      return;
    }
    // One predictable test per element: only keys at or above the boundary
    // (about k + a bucket of them) take the slow path.
    for (std::size_t i = r.begin; i < r.end; ++i) {
      const Key key = key_at(i);
      if (static_cast<Key>(key & mask) < prefix || key > max_valid) continue;
      if (static_cast<Key>(key & mask) > prefix) {
        above[w].push_back(i);
      } else if (!full_resolution || tied[w].size() < need) {
        tied[w].push_back({key, i});
      }
    }
  });
  std::vector<candidate> candidates;
  for (const auto& t : tied) candidates.insert(candidates.end(), t.begin(), t.end());

  // The `need` best candidates by (key desc, index asc), back in index order.
  std::vector<std::size_t> chosen;
  if (!take_all && need > 0) {
    const auto by_rank = [](const candidate& a, const candidate& b) {
      return a.key != b.key ? a.key > b.key : a.index < b.index;
    };
    const auto nth = candidates.begin() + static_cast<std::ptrdiff_t>(need - 1);
    std::nth_element(candidates.begin(), nth, candidates.end(), by_rank);
    const candidate cut = *nth;
    for (const candidate& c : candidates) {
      if (!by_rank(cut, c)) chosen.push_back(c.index);  // c ranks at or before the cut
    }
    std::sort(chosen.begin(), chosen.end());
  }

  std::size_t total = chosen.size();
  for (const auto& a : above) total += a.size();
  selected.reserve(total);
  for (const auto& a : above) selected.insert(selected.end(), a.begin(), a.end());
  const auto middle = selected.insert(selected.end(), chosen.begin(), chosen.end());
  std::inplace_merge(selected.begin(), middle, selected.end());
  return selected;
}

}  // namespace sketchsgd::detail
