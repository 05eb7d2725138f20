// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Unsketch top-k without a d-sized array of estimates: a threshold from a
/// sample of estimates, one pass that keeps only the coordinates at or above
/// it and the exact selection among the few kept, or, for one multiply-shift
/// row, a walk over the keys of the heaviest buckets, largest first, from
/// each bucket's least key (found once per hash and kept).

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "sketchsgd/detail/arithmetic.hpp"
#include "sketchsgd/detail/bucket_walk.hpp"
#include "sketchsgd/detail/median.hpp"
#include "sketchsgd/detail/parallel.hpp"
#include "sketchsgd/detail/radix_select.hpp"
#include "sketchsgd/execution.hpp"
#include "sketchsgd/hash/bucket_sign.hpp"
#include "sketchsgd/hash/multiply_shift.hpp"
#include "sketchsgd/sketch/sparse_update.hpp"

namespace sketchsgd::detail {

/// Per row, one bit per column: is the cell's magnitude key at least a
/// threshold? A row of 1 M columns takes 128 KB, so a pass over the d
/// coordinates tests bits in L2 instead of loading cells from the table.
struct hot_cells {
  std::size_t words_per_row = 0;
  std::vector<std::uint64_t> bits;

  template <class Value, class Key>
  void assign(std::span<const Value> table, std::size_t rows, std::size_t cols, Key threshold, bool finite_only) {
    using traits = magnitude_key<Value>;
    words_per_row = (cols + 63) / 64;
    bits.resize(rows * words_per_row);
    const Key top = finite_only ? traits::max_valid : std::numeric_limits<Key>::max();
    for (std::size_t r = 0; r < rows; ++r) {
      std::uint64_t* const row = bits.data() + r * words_per_row;
      const Value* const cells = table.data() + r * cols;
      const auto hot = [&](std::size_t cell) {
        const Key key = traits::of(cells[cell]);
        return key >= threshold && key <= top;
      };
      for (std::size_t word = 0; word < words_per_row; ++word) {
        const std::size_t first = word * 64;
        const std::size_t count = std::min<std::size_t>(64, cols - first);
        std::uint64_t w = 0;
        if (count == 64 && std::endian::native == std::endian::little) {
          // A byte per cell (a loop that vectorizes), then eight bytes of 0
          // or 1 to eight bits by one multiply (byte j to bit j): 3.5x
          // faster than a bit at a time here.
          std::array<std::uint8_t, 64> flags;  // NOLINT(cppcoreguidelines-pro-type-member-init): written before read
          for (std::size_t j = 0; j < 64; ++j) flags[j] = static_cast<std::uint8_t>(hot(first + j));
          for (std::size_t b = 0; b < 8; ++b) {
            std::uint64_t eight = 0;
            std::memcpy(&eight, flags.data() + 8 * b, 8);
            w |= ((eight * 0x0102040810204080ULL) >> 56U) << (8 * b);
          }
        } else {
          for (std::size_t j = 0; j < count; ++j) w |= std::uint64_t{hot(first + j)} << j;
        }
        row[word] = w;
      }
    }
  }
  [[nodiscard]] const std::uint64_t* row(std::size_t r) const noexcept { return bits.data() + r * words_per_row; }
  [[nodiscard]] static bool test(const std::uint64_t* row, std::uint32_t c) noexcept {
    return ((row[c / 64] >> (c % 64)) & 1U) != 0;
  }
};

#if defined(SKETCHSGD_HAVE_BUCKET_WALK)
/// The least key of every bucket of one `multiply_shift` row over [0, d),
/// kept for the next calls: a training run unsketches with the same hashes
/// every step (one per slice), and finding a bucket's first key is the only
/// part of the walk that hashes keys other than its own. 4 bytes per
/// column, for the last `capacity` rows asked (the least recently used
/// replaced).
class least_key_table {
 public:
  static constexpr std::uint32_t none = ~std::uint32_t{0};  ///< no key of [0, d) in the bucket

  explicit least_key_table(std::size_t capacity = 64) : capacity_(std::max<std::size_t>(capacity, 1)) {}

  /// Bucket b's least key, or `none`, for this row and d (d < 2^32);
  /// valid until the next call.
  const std::vector<std::uint32_t>& of(const multiply_shift::row_hash& h, const bucket_walk& walk, std::uint64_t d,
                                       unsigned workers) {
    const auto line = h.block_line(0);
    const auto same = [&](const entry& e) {
      return e.slope == line.slope && e.intercept == line.intercept && e.cols == h.cols() && e.d == d;
    };
    ++clock_;
    auto found = std::find_if(entries_.begin(), entries_.end(), same);
    if (found != entries_.end()) {
      found->used = clock_;
      return found->least;
    }
    if (entries_.size() < capacity_) {
      found = entries_.insert(entries_.end(), entry{});
    } else {
      found = std::min_element(entries_.begin(), entries_.end(),
                               [](const entry& a, const entry& b) { return a.used < b.used; });
    }
    found->slope = line.slope, found->intercept = line.intercept, found->cols = h.cols(), found->d = d;
    found->used = clock_;
    std::vector<std::uint32_t>& least = found->least;  // a replaced entry's memory is reused
    least.assign(h.cols(), none);
    // Every least key lies below least_keys_below(): hash those keys on all
    // threads, each bucket keeping the least key any thread saw in it.
    const auto below = static_cast<std::size_t>(walk.least_keys_below());
    fork_join(workers, [&](unsigned w, unsigned nw) {
      const index_range range = split_range(below, w, nw);
      h.for_each(range.begin, range.end - range.begin, [&](std::uint64_t i, bucket_sign bs) {
        const auto key = static_cast<std::uint32_t>(range.begin + i);
        const std::atomic_ref<std::uint32_t> cell(least[bs.bucket]);
        std::uint32_t seen = cell.load(std::memory_order_relaxed);
        while (key < seen && !cell.compare_exchange_weak(seen, key, std::memory_order_relaxed)) {
        }
      });
    });
    return least;
  }

 private:
  struct entry {
    std::uint64_t slope = 0;
    std::uint64_t intercept = 0;
    std::uint32_t cols = 0;
    std::uint64_t d = 0;
    std::uint64_t used = 0;
    std::vector<std::uint32_t> least;
  };
  std::vector<entry> entries_;
  std::size_t capacity_;
  std::uint64_t clock_ = 0;
};
#else
struct least_key_table {};
#endif

/// The estimate of one key from precomputed row hashes: the same median, in
/// the same row order, as `count_sketch::estimate` and `estimate_all`.
template <class Value, class RowHash>
Value estimate_with(const std::vector<RowHash>& rows, const Value* table, std::size_t cols,
                    std::uint64_t key) noexcept {
  const auto n = static_cast<std::uint32_t>(rows.size());
  if (n == 1) {
    const auto bs = rows[0](key);
    return signed_value(bs.sign, table[bs.bucket]);
  }
  Value v[64]{};
  for (std::uint32_t r = 0; r < n; ++r) {
    const auto bs = rows[r](key);
    v[r] = signed_value(bs.sign, table[r * cols + bs.bucket]);
  }
  return median_in_place(v, n);
}

/// Coordinates kept by a threshold pass, with their estimates.
template <class Value>
struct kept_estimates {
  std::vector<std::uint64_t> indices;
  std::vector<Value> values;

  void clear() noexcept {
    indices.clear();
    values.clear();
  }
  void push_back(std::uint64_t i, Value v) {
    indices.push_back(i);
    values.push_back(v);
  }
  [[nodiscard]] std::size_t size() const noexcept { return indices.size(); }
};

/// Everything a threshold pass needs beyond O(1), kept by the calling
/// thread from one selection to the next like the radix histograms: on the
/// machines this was tuned on a fresh page costs about 10 us to fault in,
/// more than the work done on it.
template <class Value>
struct unsketch_workspace {
  std::vector<typename magnitude_key<Value>::type> sample;
  hot_cells hot;
  least_key_table least_keys;
  std::vector<std::pair<typename magnitude_key<Value>::type, std::uint32_t>> hot_buckets;  // magnitude, bucket
  std::vector<kept_estimates<Value>> parts;                                                // one per thread
  std::vector<std::pair<std::uint64_t, Value>> tied;
  kept_estimates<Value> all;
  kept_estimates<Value> sorted;
  std::vector<std::uint32_t> digit_start;

  /// `parts` for `workers` threads, emptied.
  void reset_parts(unsigned workers) {
    if (parts.size() < workers) parts.resize(workers);
    for (auto& p : parts) p.clear();
  }
  /// `all` = the parts, in thread order.
  void gather_parts(unsigned workers) {
    all.clear();
    for (unsigned w = 0; w < workers; ++w) {
      all.indices.insert(all.indices.end(), parts[w].indices.begin(), parts[w].indices.end());
      all.values.insert(all.values.end(), parts[w].values.begin(), parts[w].values.end());
    }
  }
  /// Sorts `all` by index: LSD radix on 11-bit digits of indices below
  /// `bound` (2,048 write streams stay in cache; 16-bit digits would not).
  void sort_all_by_index(std::uint64_t bound) {
    constexpr unsigned digit_bits = 11;
    constexpr std::size_t digits = std::size_t{1} << digit_bits;
    const std::size_t n = all.size();
    sorted.indices.resize(n);
    sorted.values.resize(n);
    digit_start.resize(digits);
    for (unsigned shift = 0; shift < 64 && (bound - 1) >> shift != 0; shift += digit_bits) {
      const std::uint64_t* const from_i = all.indices.data();
      const Value* const from_v = all.values.data();
      std::uint64_t* const to_i = sorted.indices.data();
      Value* const to_v = sorted.values.data();
      std::uint32_t* const at = digit_start.data();  // 32-bit: no store of an index can alias a count
      std::fill_n(at, digits, std::uint32_t{0});
      for (std::size_t j = 0; j < n; ++j) ++at[(from_i[j] >> shift) & (digits - 1)];
      std::uint32_t sum = 0;
      for (std::size_t c = 0; c < digits; ++c) sum += std::exchange(at[c], sum);
      for (std::size_t j = 0; j < n; ++j) {
        const std::uint32_t to = at[(from_i[j] >> shift) & (digits - 1)]++;
        to_i[to] = from_i[j];
        to_v[to] = from_v[j];
      }
      all.indices.swap(sorted.indices);
      all.values.swap(sorted.values);
    }
  }
};

template <class Value>
unsketch_workspace<Value>& thread_unsketch_workspace() {
  thread_local unsketch_workspace<Value> ws;
  return ws;
}

/// What `top_k_by_walking` found.
enum class walk_outcome {
  declined,  ///< the walk does not apply, or it would keep more than `cap` keys: scan instead
  too_few,   ///< fewer than k keys reach the threshold: lower it
  done,      ///< the top k
};

/// One row of `multiply_shift`: the top k (as `take_top_k` orders them) of
/// the keys in the buckets at or above the threshold, found by walking
/// buckets (`bucket_walk`) instead of hashing the d keys. All the keys of a
/// bucket share one magnitude, its cell's: so the hot buckets are sorted by
/// magnitude and walked largest first, from their least keys
/// (`least_key_table`), until k keys are in hand; the buckets tied with the
/// last one walked are walked too, and among the keys at the k-th's
/// magnitude the lowest indices are taken. Only the k chosen are then sorted
/// by index. O(cols + k) with the least keys known, no pass over d.
template <class Value, class Key>
walk_outcome top_k_by_walking(const multiply_shift::row_hash& h, std::span<const Value> row, std::uint64_t d,
                              Key threshold, std::size_t k, std::size_t cap, unsigned workers,
                              unsketch_workspace<Value>& ws, sparse_update<Value>& out) {
#if defined(SKETCHSGD_HAVE_BUCKET_WALK)
  using traits = magnitude_key<Value>;
  if (k == 0) {
    out = {};
    return walk_outcome::done;
  }
  const bucket_walk walk(h, d);
  if (!walk.usable() || d >= least_key_table::none) return walk_outcome::declined;  // keys must fit 32 bits
  const std::vector<std::uint32_t>& least = ws.least_keys.of(h, walk, d, workers);

  // The buckets at or above the threshold, largest first; the order among
  // equal magnitudes does not matter (their keys are ordered below).
  ws.hot.assign(row, 1, row.size(), threshold, true);
  auto& hot = ws.hot_buckets;
  hot.clear();
  for (std::size_t word = 0; word < ws.hot.words_per_row; ++word) {
    for (std::uint64_t bits = ws.hot.bits[word]; bits != 0; bits &= bits - 1) {
      const auto b = static_cast<std::uint32_t>(word * 64 + static_cast<std::size_t>(std::countr_zero(bits)));
      if (least[b] != least_key_table::none) hot.emplace_back(traits::of(row[b]), b);
    }
  }
  std::sort(hot.begin(), hot.end(), [](const auto& a, const auto& b) { return a.first > b.first; });

  // Walk until k keys are in hand, then on through the buckets tied with
  // the last; `tied_from` is where the keys at the k-th's magnitude begin.
  auto& all = ws.all;
  all.clear();
  std::size_t tied_from = 0;
  std::size_t next = 0;
  for (; next < hot.size(); ++next) {
    const auto [magnitude, b] = hot[next];
    if (all.size() >= k && magnitude != hot[next - 1].first) break;
    if (next == 0 || magnitude != hot[next - 1].first) tied_from = all.size();
    const Value cell = row[b];
    walk.keys_of(b, least[b],
                 [&](std::uint64_t key, std::int32_t sign) { all.push_back(key, signed_value(sign, cell)); });
    if (all.size() > cap) return walk_outcome::declined;
  }
  if (all.size() < k) return walk_outcome::too_few;

  // Of the keys at the k-th's magnitude, the lowest indices.
  const std::size_t need = k - tied_from;
  ws.tied.clear();
  for (std::size_t j = tied_from; j < all.size(); ++j) ws.tied.emplace_back(all.indices[j], all.values[j]);
  std::nth_element(ws.tied.begin(), ws.tied.begin() + static_cast<std::ptrdiff_t>(need - 1), ws.tied.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  all.indices.resize(tied_from);
  all.values.resize(tied_from);
  for (std::size_t e = 0; e < need; ++e) all.push_back(ws.tied[e].first, ws.tied[e].second);
  ws.sort_all_by_index(d);
  out.indices.assign(all.indices.begin(), all.indices.end());
  out.values.assign(all.values.begin(), all.values.end());
  return walk_outcome::done;
#else
  (void)h, (void)row, (void)d, (void)threshold, (void)k, (void)cap, (void)workers, (void)ws, (void)out;
  return walk_outcome::declined;
#endif
}

/// Any sketch: into `ws.all`, in index order, every coordinate whose
/// |estimate| is at least the threshold, by one parallel pass over [0, d):
/// one row tests hot-cell bits (L2) instead of loading cells (L3); several
/// rows estimate a cache-sized block at a time, as `estimate_all` does, and
/// keep what reaches the threshold, so no estimate is stored or read back.
/// False when more than `cap` keys per thread would be kept.
template <class Sketch, class RowHash, class Key>
bool keep_by_scanning(const Sketch& sketch, const std::vector<RowHash>& row_hash, std::uint64_t d, Key threshold,
                      std::size_t cap, unsigned workers, unsketch_workspace<typename Sketch::value_type>& ws) {
  using Value = typename Sketch::value_type;
  using traits = magnitude_key<Value>;
  const std::size_t rows = sketch.rows();
  const std::span<const Value> table = sketch.table();
  if (rows == 1) ws.hot.assign(table, 1, sketch.cols(), threshold, false);
  ws.reset_parts(workers);
  std::atomic<bool> over{false};
  fork_join(workers, [&](unsigned w, unsigned nw) {
    const index_range range = split_range(static_cast<std::size_t>(d), w, nw);
    kept_estimates<Value> mine = std::move(ws.parts[w]);  // a local while it grows, as in the walk
    const auto keep = [&](std::uint64_t i, Value v) {
      if (traits::of(v) >= threshold && traits::of(v) <= traits::max_valid) mine.push_back(i, v);
    };
    constexpr std::size_t block = 4096;
    std::vector<Value> estimates(rows == 1 ? 0 : block);
    for (std::size_t begin = range.begin; begin < range.end && !over.load(std::memory_order_relaxed); begin += block) {
      const std::size_t len = std::min(block, range.end - begin);
      if (rows == 1) {
        const std::uint64_t* const bits = ws.hot.row(0);
        row_hash[0].for_each(begin, len, [&](std::uint64_t i, bucket_sign bs) {
          if (hot_cells::test(bits, bs.bucket)) keep(begin + i, signed_value(bs.sign, table[bs.bucket]));
        });
      } else {
        sketch.estimate_all(std::span<Value>(estimates).first(len), begin, cpu_execution{1});
        for (std::size_t i = 0; i < len; ++i) keep(begin + i, estimates[i]);
      }
      if (mine.size() > cap) over.store(true, std::memory_order_relaxed);
    }
    ws.parts[w] = std::move(mine);
  });
  if (over.load()) return false;
  ws.gather_parts(workers);
  return true;
}

/// The k of `ws.all` (in index order, all valid, at least k of them) first
/// in the order (key descending, index ascending), in index order: the k-th
/// key K by nth_element, then one pass takes every key above K and the
/// first (lowest-index) keys equal to K.
template <class Value>
sparse_update<Value> take_top_k(unsketch_workspace<Value>& ws, std::size_t k) {
  using traits = magnitude_key<Value>;
  using key_type = typename traits::type;
  auto& keys = ws.sample;  // the sample is spent: its memory holds the kept keys
  keys.resize(ws.all.size());
  for (std::size_t j = 0; j < keys.size(); ++j) keys[j] = traits::of(ws.all.values[j]);
  std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(k - 1), keys.end(),
                   [](key_type a, key_type b) { return a > b; });
  const key_type kth = keys[k - 1];
  std::size_t equal_wanted =
      k - static_cast<std::size_t>(std::count_if(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(k),
                                                 [kth](key_type key) { return key > kth; }));
  sparse_update<Value> out;
  out.indices.reserve(k);
  out.values.reserve(k);
  for (std::size_t j = 0; j < ws.all.size(); ++j) {
    const key_type key = traits::of(ws.all.values[j]);
    if (key > kth || (key == kth && equal_wanted > 0)) {
      if (key == kth) --equal_wanted;
      out.indices.push_back(ws.all.indices[j]);
      out.values.push_back(ws.all.values[j]);
    }
  }
  return out;
}

/// The `k` coordinates of `[0, d)` with the largest |estimate| in `sketch`
/// (ties to the lower index, NaN never selected), exactly as the full
/// estimate-and-select path gives them, or nothing when this way does not
/// apply and the caller must take that path (k a large share of d, zero or
/// tied estimates around the k-th).
///
/// How: the estimates of 65,536 evenly spaced coordinates (one
/// multiply-shift row: as many evenly spaced cells) give a threshold t
/// that about 1.25 k + 4 sqrt(k) coordinates reach (in expectation); every
/// coordinate whose |estimate| is at least t is kept. One row of
/// `multiply_shift` walks the keys of the buckets at or above t and selects
/// bucket by bucket (`top_k_by_walking`: O(cols + k), no pass over d);
/// otherwise one pass over the d coordinates keeps them as it goes
/// (`keep_by_scanning`) and `take_top_k` selects. When at least k
/// are kept, the k-th largest is at least t, so the kept set holds the whole
/// answer; fewer than k: t is lowered once, then the caller falls back.
/// Memory, kept by the calling thread for the next call: O(k) kept entries
/// (at most about 4 k + 65,536 per thread; beyond, the caller falls back),
/// r c / 8 bytes of bits and, for one `multiply_shift` row, its least keys
/// (4 c bytes; `least_key_table` keeps those of the last 64 rows).
template <class Sketch>
std::optional<sparse_update<typename Sketch::value_type>> top_k_by_threshold(const Sketch& sketch, std::uint64_t d,
                                                                             std::size_t k, unsigned workers) {
  using Value = typename Sketch::value_type;
  using traits = magnitude_key<Value>;
  using key_type = typename traits::type;
  constexpr std::size_t sample_size = std::size_t{1} << 16U;
  const auto n = static_cast<std::size_t>(d);
  if (k == 0 || n <= 4 * sample_size) return std::nullopt;  // the direct path is as cheap
  const std::size_t rows = sketch.rows();
  const std::size_t cols = sketch.cols();
  const std::span<const Value> table = sketch.table();
  std::vector<decltype(sketch.hash().row(0))> row_hash;
  for (std::uint32_t r = 0; r < rows; ++r) row_hash.push_back(sketch.hash().row(r));
  auto& ws = thread_unsketch_workspace<Value>();

  // The sample: evenly spaced keys' estimates or, for one multiply-shift
  // row, evenly spaced cells (no hashing, read in order), since a bucket's
  // keys share its cell's magnitude and every bucket holds d / cols of the
  // keys, give or take a few.
  ws.sample.clear();
  std::size_t drawn = sample_size;
  if (std::is_same_v<typename Sketch::hash_type, multiply_shift> && rows == 1) {
    drawn = std::min(sample_size, cols);
    for (std::size_t j = 0; j < drawn; ++j) {
      const key_type key = traits::of(table[j * cols / drawn]);
      if (key <= traits::max_valid) ws.sample.push_back(key);
    }
  } else {
    const std::uint64_t stride = d / sample_size;
    const std::uint64_t extra = d % sample_size;
    for (std::uint64_t j = 0; j < sample_size; ++j) {
      const key_type key =
          traits::of(estimate_with(row_hash, table.data(), cols, j * stride + j * extra / sample_size));
      if (key <= traits::max_valid) ws.sample.push_back(key);
    }
  }
  const double expected = static_cast<double>(k) * static_cast<double>(drawn) / static_cast<double>(d);
  std::size_t rank = static_cast<std::size_t>(std::ceil(1.25 * expected + 4.0 * std::sqrt(expected) + 4.0));

  for (int attempt = 0; attempt < 2; ++attempt, rank *= 4) {
    // Keeping more than an eighth of d would cost more memory than the
    // scratch of the direct path saves.
    if (rank > ws.sample.size() || rank > drawn / 8) return std::nullopt;
    std::nth_element(ws.sample.begin(), ws.sample.begin() + static_cast<std::ptrdiff_t>(rank - 1), ws.sample.end(),
                     [](key_type a, key_type b) { return a > b; });
    const key_type threshold = ws.sample[rank - 1];
    if (threshold == 0) return std::nullopt;  // zeros tie: the direct path orders them by index
    const std::size_t cap = std::max<std::size_t>(k, 3 * rank * (n / drawn + 1)) + sample_size;

    if constexpr (std::is_same_v<typename Sketch::hash_type, multiply_shift>) {
      if (rows == 1) {
        sparse_update<Value> best;
        const walk_outcome walked = top_k_by_walking(row_hash[0], table, d, threshold, k, cap, workers, ws, best);
        if (walked == walk_outcome::done) return best;
        if (walked == walk_outcome::too_few) continue;
      }
    }
    if (!keep_by_scanning(sketch, row_hash, d, threshold, cap, workers, ws)) return std::nullopt;
    if (ws.all.size() < k) continue;  // the sample put t too high: lower it

    return take_top_k(ws, k);
  }
  return std::nullopt;
}

}  // namespace sketchsgd::detail
