// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The Count Sketch (Charikar, Chen, Farach-Colton, "Finding frequent items in
/// data streams", ICALP 2002) on the CPU.

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <concepts>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/detail/aligned_allocator.hpp"
#include "sketchsgd/detail/arithmetic.hpp"
#include "sketchsgd/detail/median.hpp"
#include "sketchsgd/detail/parallel.hpp"
#include "sketchsgd/device.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/execution.hpp"
#include "sketchsgd/half.hpp"
#include "sketchsgd/hash/multiply_shift.hpp"
#include "sketchsgd/sketch/sketch_config.hpp"

namespace sketchsgd {

/// A Count Sketch of `rows x cols` cells of `Value`, hashed by `HashFamily`,
/// stored on `Device`. This primary template is only declared: the CPU
/// specialization is below, the CUDA one in `sketchsgd/cuda/`.
///
/// @tparam Value a `sketch_value`: the cell type.
/// @tparam HashFamily a `hash_family`: how coordinates map to buckets and signs.
/// @tparam Device a `device` tag: where the table lives.
template <sketch_value Value, hash_family HashFamily = multiply_shift, device Device = cpu_t>
class count_sketch;

/// A Count Sketch whose table lives in host memory.
///
/// The sketch of a vector x is the table T with
/// `T[j][h_j(i)] += s_j(i) * x[i]` for every coordinate i and row j. It is
/// linear: S(x) + S(y) = S(x + y) and S(a x) = a S(x), exactly so for integer
/// cells (which wrap modulo 2^bits rather than overflow). A point query takes
/// the median over rows of `s_j(i) * T[j][h_j(i)]`; each row's estimate is
/// unbiased with variance at most ||x||_2^2 / cols, so with rows = O(log(d /
/// delta)) every coordinate is within O(||x||_2 / sqrt(cols)) of the truth with
/// probability 1 - delta (Charikar et al. 2002).
///
/// Every operation taking a `cpu_execution` gives bit-identical results for
/// any thread count: each cell is updated by one thread in coordinate order.
///
/// @tparam Value a `sketch_value`.
/// @tparam HashFamily a `hash_family`.
template <sketch_value Value, hash_family HashFamily>
class count_sketch<Value, HashFamily, cpu_t> {
 public:
  /// The cell type.
  using value_type = Value;
  /// The hash family.
  using hash_type = HashFamily;
  /// The storage device.
  using device_type = cpu_t;

  /// An all-zero sketch.
  /// @throws std::invalid_argument if the configuration is out of range.
  explicit count_sketch(const sketch_config& config)
      : config_(checked(config)),
        hash_(config.seed, static_cast<std::uint32_t>(config.rows), static_cast<std::uint32_t>(config.cols)),
        table_(static_cast<std::size_t>(config.cells()), Value{}) {}

  /// A sketch holding a copy of `table` (row-major, rows * cols cells), e.g.
  /// a table received from a collective.
  /// @throws std::invalid_argument if the configuration is out of range or the
  /// table has the wrong size.
  count_sketch(const sketch_config& config, std::span<const Value> table) : count_sketch(config) {
    if (table.size() != table_.size()) {
      throw std::invalid_argument("count_sketch: table must have rows * cols = " + std::to_string(table_.size()) +
                                  " cells, got " + std::to_string(table.size()));
    }
    std::copy(table.begin(), table.end(), table_.begin());
  }

  /// Rows, columns and seed.
  [[nodiscard]] const sketch_config& config() const noexcept { return config_; }
  /// Number of rows.
  [[nodiscard]] std::size_t rows() const noexcept { return static_cast<std::size_t>(config_.rows); }
  /// Number of columns.
  [[nodiscard]] std::size_t cols() const noexcept { return static_cast<std::size_t>(config_.cols); }
  /// The hash family instance (seeded from the configuration).
  [[nodiscard]] const HashFamily& hash() const noexcept { return hash_; }

  /// The row-major table: what collectives reduce and serialization writes.
  [[nodiscard]] std::span<Value> table() noexcept { return table_; }
  /// The row-major table.
  [[nodiscard]] std::span<const Value> table() const noexcept { return table_; }
  /// Row `r` of the table.
  [[nodiscard]] std::span<Value> row(std::size_t r) noexcept {
    return std::span<Value>(table_).subspan(r * cols(), cols());
  }
  /// Row `r` of the table.
  [[nodiscard]] std::span<const Value> row(std::size_t r) const noexcept {
    return std::span<const Value>(table_).subspan(r * cols(), cols());
  }

  /// Adds the dense vector `x`, whose element i is coordinate `offset + i`.
  /// O(rows * x.size()). Rows go to threads whole; for an x of at least
  /// 4 cols each thread adds its rows in a table of its own, copied in and
  /// out, since threads adding into nearby memory slow each other on some
  /// machines (docs/performance.md). A one-row sketch of at
  /// least 2^21 coordinates is summed in parts so threads can share it: up
  /// to 8 contiguous parts of at least 2^20 coordinates, part 0 added to the
  /// table, each other part to a table of its own, those summed in a fixed
  /// binary tree; every cell's bits are the same for any thread count (in
  /// floating point not those of one sequential sum). The sketch keeps those
  /// tables of one row between calls (up to 7, or one per thread for whole
  /// rows; each 3 table sizes from the others; not copied:
  /// `detail::scratch_tables`).
  /// @throws std::invalid_argument if `offset + x.size()` overflows 64 bits.
  void accumulate(std::span<const Value> x, std::uint64_t offset = 0, cpu_execution exec = {}) {
    accumulate_rows(x, offset, 0, rows(), exec);
  }

  /// `accumulate` into rows `first_row .. first_row + row_count` only. Rows
  /// are independent, so a caller may reduce finished rows across workers
  /// while it sketches the next ones; over all rows this is `accumulate`.
  /// @throws std::invalid_argument for rows outside the table or if
  /// `offset + x.size()` overflows 64 bits.
  void accumulate_rows(std::span<const Value> x, std::uint64_t offset, std::size_t first_row, std::size_t row_count,
                       cpu_execution exec = {}) {
    accumulate_rows_of(x, offset, first_row, row_count, exec);
  }
  /// The same with 16-bit storage values (a float sketch), each read as
  /// float exactly: the same cells as from those values as floats.
  template <half_float H>
    requires std::same_as<Value, float>
  void accumulate_rows(std::span<const H> x, std::uint64_t offset, std::size_t first_row, std::size_t row_count,
                       cpu_execution exec = {}) {
    accumulate_rows_of(x, offset, first_row, row_count, exec);
  }

  /// Adds the sparse vector with `values[n]` at coordinate `indices[n]`
  /// (repeated indices add up). O(rows * indices.size()).
  /// @throws std::invalid_argument if the spans differ in length.
  void accumulate(std::span<const std::uint64_t> indices, std::span<const Value> values, cpu_execution exec = {}) {
    if (indices.size() != values.size()) {
      throw std::invalid_argument("count_sketch::accumulate: " + std::to_string(indices.size()) + " indices but " +
                                  std::to_string(values.size()) + " values");
    }
    for_rows_parallel(indices.size(), exec, [&](std::uint32_t r) {
      Value* const t = row_data(r);
      const auto h = hash_.row(r);
      for (std::size_t n = 0; n < indices.size(); ++n) {
        const bucket_sign bs = h(indices[n]);
        t[bs.bucket] = detail::cell_add(t[bs.bucket], detail::signed_value(bs.sign, values[n]));
      }
    });
  }

  /// Adds `other`'s table to this one: afterwards this is the sketch of the
  /// sum of both inputs.
  /// @throws config_mismatch_error if the configurations differ.
  void merge(const count_sketch& other) { *this += other; }

  /// Same as `merge`.
  /// @throws config_mismatch_error if the configurations differ.
  count_sketch& operator+=(const count_sketch& other) {
    check_compatible(other, "merge");
    std::transform(table_.begin(), table_.end(), other.table_.begin(), table_.begin(),
                   [](Value a, Value b) { return detail::cell_add(a, b); });
    return *this;
  }

  /// Subtracts `other`'s table: the sketch of the difference.
  /// @throws config_mismatch_error if the configurations differ.
  count_sketch& operator-=(const count_sketch& other) {
    check_compatible(other, "subtract");
    std::transform(table_.begin(), table_.end(), other.table_.begin(), table_.begin(),
                   [](Value a, Value b) { return detail::cell_sub(a, b); });
    return *this;
  }

  /// Multiplies every cell by `a`: the sketch of `a * x`.
  void scale(Value a) noexcept {
    for (Value& v : table_) v = detail::cell_mul(v, a);
  }

  /// Sets every cell to zero.
  void zero() noexcept { std::fill(table_.begin(), table_.end(), Value{}); }

  /// Sets to zero, in every row, the cell each of `indices` hashes to
  /// (FetchSGD's reset of the coordinates it just applied).
  void zero_buckets_of(std::span<const std::uint64_t> indices) noexcept {
    for (std::uint32_t r = 0; r < rows32(); ++r) {
      Value* const t = row_data(r);
      const auto h = hash_.row(r);
      for (const std::uint64_t i : indices) t[h(i).bucket] = Value{};
    }
  }

  /// The estimate of coordinate `i`: the median over rows of
  /// `s_j(i) * T[j][h_j(i)]` (even rows: the mean of the two middle values,
  /// rounded down for integers). O(rows).
  [[nodiscard]] Value estimate(std::uint64_t i) const noexcept {
    Value v[sketch_config::max_rows]{};
    for (std::uint32_t r = 0; r < rows32(); ++r) {
      const bucket_sign bs = hash_(r, i);
      v[r] = detail::signed_value(bs.sign, row_data(r)[bs.bucket]);
    }
    return detail::median_in_place(v, rows32());
  }

  /// Writes `estimate(offset + i)` to `out[i]` for every i, in one pass.
  /// O(rows * out.size()) time, O(rows) extra memory per thread.
  /// @throws std::invalid_argument if `offset + out.size()` overflows 64 bits.
  void estimate_all(std::span<Value> out, std::uint64_t offset = 0, cpu_execution exec = {}) const {
    check_key_range(offset, out.size());
    const unsigned workers = detail::useful_workers(exec.resolved_threads(), out.size(), min_parallel_items);
    detail::fork_join(workers, [&](unsigned w, unsigned n) {
      const detail::index_range range = detail::split_range(out.size(), w, n);
      std::vector<Value> gathered(rows() * estimate_block);
      for (std::size_t begin = range.begin; begin < range.end; begin += estimate_block) {
        const std::size_t len = std::min(estimate_block, range.end - begin);
        estimate_block_into(out.data() + begin, offset + begin, len, gathered.data());
      }
    });
  }

  /// An estimate of ||x||_2: the square root of the median over rows of the
  /// row's sum of squared cells (Alon, Matias, Szegedy 1996). Unbiased per row
  /// with bounded variance when the signs are 4-wise independent
  /// (`poly4_hash`); with `multiply_shift` it is a heuristic. O(rows * cols).
  [[nodiscard]] double l2_estimate() const noexcept {
    double sums[sketch_config::max_rows]{};
    for (std::uint32_t r = 0; r < rows32(); ++r) {
      double s = 0;
      for (const Value v : row(r)) s += static_cast<double>(v) * static_cast<double>(v);
      sums[r] = s;
    }
    return std::sqrt(detail::median_in_place(sums, rows32()));
  }

  /// Same configuration and equal cells.
  friend bool operator==(const count_sketch& a, const count_sketch& b) noexcept {
    return a.config_ == b.config_ && a.table_ == b.table_;
  }

 private:
  /// Items below which one thread does the whole job: starting a thread
  /// costs about as much as this many cell updates.
  static constexpr std::size_t min_parallel_items = std::size_t{1} << 16U;
  /// Coordinates per block of `estimate_all`: small enough that the gathered
  /// per-row values stay in L1, large enough to amortize the row setup.
  static constexpr std::size_t estimate_block = 256;
  /// A one-row sketch of a long vector is accumulated in up to `max_parts`
  /// parts of at least `min_part` coordinates (`accumulate_in_parts`).
  static constexpr std::size_t max_parts = 8;
  static constexpr std::size_t min_part = std::size_t{1} << 20U;

  static const sketch_config& checked(const sketch_config& config) {
    validate(config, HashFamily::max_cols);
    return config;
  }

  static void check_key_range(std::uint64_t offset, std::size_t n) {
    if (n > std::numeric_limits<std::uint64_t>::max() - offset) {
      throw std::invalid_argument("count_sketch: offset " + std::to_string(offset) + " + " + std::to_string(n) +
                                  " coordinates overflows 64-bit keys");
    }
  }

  void check_compatible(const count_sketch& other, const char* what) const {
    if (config_ != other.config_) {
      throw config_mismatch_error(std::string("count_sketch: cannot ") + what +
                                  " sketches of different configuration: " + to_string(config_) + " vs " +
                                  to_string(other.config_));
    }
  }

  [[nodiscard]] std::uint32_t rows32() const noexcept { return static_cast<std::uint32_t>(config_.rows); }
  [[nodiscard]] Value* row_data(std::uint32_t r) noexcept { return table_.data() + std::size_t{r} * cols(); }
  [[nodiscard]] const Value* row_data(std::uint32_t r) const noexcept {
    return table_.data() + std::size_t{r} * cols();
  }

  /// Runs `per_row(r)` (or `per_row(r, worker)`) for every row, the rows
  /// split among threads; each row is handled whole by one thread, which
  /// keeps results independent of the thread count.
  template <class PerRow>
  void for_rows_parallel(std::size_t items, cpu_execution exec, PerRow&& per_row) {
    for_rows_parallel(items, 0, rows(), exec, std::forward<PerRow>(per_row));
  }
  /// The same over rows `first .. first + count`.
  template <class PerRow>
  void for_rows_parallel(std::size_t items, std::size_t first, std::size_t count, cpu_execution exec,
                         PerRow&& per_row) {
    if (count == 0) return;
    const unsigned by_work = detail::useful_workers(exec.resolved_threads(), items * count, min_parallel_items);
    const unsigned workers = static_cast<unsigned>(std::min<std::size_t>(by_work, count));
    detail::fork_join(workers, [&](unsigned w, unsigned n) {
      const detail::index_range mine = detail::split_range(count, w, n);
      for (std::size_t r = first + mine.begin; r < first + mine.end; ++r) {
        if constexpr (std::is_invocable_v<PerRow&, std::uint32_t, unsigned>) {
          per_row(static_cast<std::uint32_t>(r), w);
        } else {
          per_row(static_cast<std::uint32_t>(r));
        }
      }
    });
  }

  /// `accumulate_rows` of values stored as In.
  template <class In>
  void accumulate_rows_of(std::span<const In> x, std::uint64_t offset, std::size_t first_row, std::size_t row_count,
                          cpu_execution exec) {
    if (first_row > rows() || row_count > rows() - first_row) {
      throw std::invalid_argument("count_sketch::accumulate_rows: rows " + std::to_string(first_row) + " + " +
                                  std::to_string(row_count) + " outside a table of " + std::to_string(rows()));
    }
    check_key_range(offset, x.size());
    if (row_count == 0) return;
    const std::size_t parts = part_count(x.size());
    const unsigned workers = detail::useful_workers(exec.resolved_threads(), x.size() * row_count, min_parallel_items);
    if (parts > 1) {
      accumulate_in_parts(x, offset, parts, workers);
    } else if (workers <= 1) {
      accumulate_serial(row_data(static_cast<std::uint32_t>(first_row)), x, offset, first_row, row_count);
    } else {  // whole rows per thread
      // Each thread adds its rows in a scratch table kept apart from the
      // others' (rows lie next to each other in the table), copied in and
      // back: the same additions on the same values, the same bits. For a
      // short x the 2 cols copies a row would outweigh its x.size() adds.
      const bool apart = x.size() >= 4 * cols();
      // As many tables as for_rows_parallel starts threads.
      if (apart) part_tables_.reserve(std::min<std::size_t>(workers, row_count), cols());
      for_rows_parallel(x.size(), first_row, row_count, exec, [&](std::uint32_t r, unsigned w) {
        Value* const row = table_.data() + std::size_t{r} * cols();
        if (!apart) {
          scatter_row(row, r, x, offset);
          return;
        }
        Value* const scratch = part_tables_.table(w);
        std::copy_n(row, cols(), scratch);
        scatter_row(scratch, r, x, offset);
        std::copy_n(scratch, cols(), row);
      });
    }
  }

  /// Adds `x` (coordinates from `offset`) to `t`, row `r`'s cells, in
  /// coordinate order.
  template <class In>
  void scatter_row(Value* t, std::uint32_t r, std::span<const In> x, std::uint64_t offset) const noexcept {
    if constexpr (!std::is_same_v<In, Value>) {
      // 16-bit values: widened a block at a time (a loop that vectorizes),
      // then scattered as Values in the same order: the same cells.
      constexpr std::size_t block = 2048;
      std::array<Value, block> widened;  // NOLINT(cppcoreguidelines-pro-type-member-init): written before read
      for (std::size_t at = 0; at < x.size(); at += block) {
        const std::size_t n = std::min(block, x.size() - at);
        for (std::size_t i = 0; i < n; ++i) widened[i] = static_cast<Value>(x[at + i]);
        scatter_row(t, r, std::span<const Value>(widened.data(), n), offset + at);
      }
    } else {
      const Value* const xs = x.data();
      hash_.row(r).for_each(offset, x.size(), [t, xs](std::uint64_t i, bucket_sign bs) {
        t[bs.bucket] = detail::cell_add(t[bs.bucket], detail::signed_value(bs.sign, xs[i]));
      });
    }
  }

  /// Rows `first .. first + count` of `x` into `t` (those rows' cells) on
  /// one thread.
  template <class In>
  void accumulate_serial(Value* t, std::span<const In> x, std::uint64_t offset, std::size_t first,
                         std::size_t count) const noexcept {
    for (std::size_t r = 0; r < count; ++r) {
      scatter_row(t + r * cols(), static_cast<std::uint32_t>(first + r), x, offset);
    }
  }

  /// Parts a one-row sketch of `n` coordinates is accumulated in: a power of
  /// two, at most `max_parts`, each part at least `min_part` coordinates.
  /// A function of the sketch and n only, never of the thread count.
  [[nodiscard]] std::size_t part_count(std::size_t n) const noexcept {
    std::size_t parts = 1;
    if (rows() != 1) return parts;
    while (parts < max_parts && n / (2 * parts) >= min_part) parts *= 2;
    return parts;
  }

  /// The one-row sketch of a long x as the sum of its contiguous parts'
  /// sketches: part 0 is added to the table, part p > 0 to a zeroed table
  /// of its own, and the parts' tables are summed in a fixed binary tree
  /// (pairs, then pairs of pairs, ...) onto the table. Every cell's value is
  /// thus the same for any thread count; threads take parts as they come
  /// free, so a slow or descheduled thread delays only the parts it holds.
  template <class In>
  void accumulate_in_parts(std::span<const In> x, std::uint64_t offset, std::size_t parts, unsigned workers) {
    const std::size_t c = cols();
    part_tables_.reserve(parts - 1, c);
    const auto table_of = [&](std::size_t p) { return p == 0 ? table_.data() : part_tables_.table(p - 1); };
    std::atomic<std::size_t> next_part{0};
    detail::fork_join(static_cast<unsigned>(std::min<std::size_t>(workers, parts)), [&](unsigned, unsigned) {
      for (std::size_t p = next_part++; p < parts; p = next_part++) {
        const detail::index_range r =
            detail::split_range(x.size(), static_cast<unsigned>(p), static_cast<unsigned>(parts));
        Value* const t = table_of(p);
        if (p != 0) std::fill_n(t, c, Value{});
        accumulate_serial(t, x.subspan(r.begin, r.end - r.begin), offset + r.begin, 0, 1);
      }
    });
    // The tree: table(p) += table(p + span) for every p a multiple of 2 span.
    // Columns are independent: split them among the threads.
    detail::fork_join(detail::useful_workers(workers, c * parts, min_parallel_items), [&](unsigned w, unsigned n) {
      const detail::index_range mine = detail::split_range(c, w, n);
      for (std::size_t span = 1; span < parts; span *= 2) {
        for (std::size_t p = 0; p + span < parts; p += 2 * span) {
          Value* const into = table_of(p);
          const Value* const from = table_of(p + span);
          for (std::size_t j = mine.begin; j < mine.end; ++j) into[j] = detail::cell_add(into[j], from[j]);
        }
      }
    });
  }

  /// Estimates of keys `first .. first + len` into `out`, `len <=
  /// estimate_block`; `gathered` holds rows * estimate_block values.
  void estimate_block_into(Value* out, std::uint64_t first, std::size_t len, Value* gathered) const {
    for (std::uint32_t r = 0; r < rows32(); ++r) {
      const Value* const t = row_data(r);
      Value* const g = gathered + std::size_t{r} * estimate_block;
      hash_.row(r).for_each(
          first, len, [t, g](std::uint64_t i, bucket_sign bs) { g[i] = detail::signed_value(bs.sign, t[bs.bucket]); });
    }
    detail::median_of_rows(gathered, estimate_block, rows32(), len, out);
  }

  sketch_config config_;
  HashFamily hash_;
  std::vector<Value, detail::aligned_allocator<Value>> table_;
  /// The parts' tables of `accumulate_in_parts`, kept from call to call
  /// (never copied): at most max_parts - 1 tables of one row.
  detail::scratch_tables<Value> part_tables_;
};

}  // namespace sketchsgd
