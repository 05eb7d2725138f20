// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The Count Sketch with its table in CUDA device memory:
/// `count_sketch<Value, HashFamily, cuda_t>`. Include from CUDA translation
/// units only (link `sketchsgd::cuda`).

#include "sketchsgd/cuda/hash.cuh"  // first: the standard check, then the hash families (see there)

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/cuda/error.cuh"
#include "sketchsgd/cuda/memory.cuh"
#include "sketchsgd/cuda/sketch_kernels.cuh"
#include "sketchsgd/detail/median.hpp"
#include "sketchsgd/device.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/sketch/count_sketch.hpp"
#include "sketchsgd/sketch/sketch_config.hpp"

namespace sketchsgd {

/// A Count Sketch whose table lives in CUDA device memory: the same
/// operations and the same results as the CPU `count_sketch` (same hash
/// code, same row-major table, same median), for vectors in device memory.
///
/// Streams: every operation takes an optional `cudaStream_t` (`stream_arg`).
/// Without one it runs on the default stream and its results are ready on
/// return; with one it is only enqueued. Operations on one sketch must be
/// ordered by the caller (one stream, or events), as for any object.
///
/// Determinism, per operation:
/// - `accumulate`: one atomic add per (row, coordinate). Integer cells wrap,
///   so integer tables are exact and equal to the CPU's bit for bit. Float
///   and double cells depend on the order the atomics land in: run to run
///   they may differ in the last bits (the sketch is then still the sketch of
///   x up to rounding).
/// - `accumulate_ordered`: each cell adds its contributions in coordinate
///   order, the CPU loop's order: bit-identical to the CPU sketch for every
///   value type, at the cost of a radix sort per row (see docs/cuda.md).
/// - merge, `+=`, `-=`, `scale`, `zero`, `zero_buckets_of`, `estimate`,
///   `estimate_all`: one thread per cell or per output, no atomics: identical
///   to the CPU results for every value type.
/// - `l2_estimate`: a fixed-shape tree of double sums: the same on every run
///   and GPU; equal to the CPU's sequential sum when the sums are exact
///   (integer cells below 2^26 in magnitude).
///
/// @tparam Value a `sketch_value`.
/// @tparam HashFamily a `hash_family`.
template <sketch_value Value, hash_family HashFamily>
class count_sketch<Value, HashFamily, cuda_t> {
  using dispatch = detail::cuda_sketch_dispatch<Value, HashFamily>;

 public:
  /// The cell type.
  using value_type = Value;
  /// The hash family.
  using hash_type = HashFamily;
  /// The storage device.
  using device_type = cuda_t;
  /// The CPU sketch of the same configuration.
  using host_sketch = count_sketch<Value, HashFamily, cpu_t>;

  /// An all-zero sketch on the current device (synchronous).
  /// @throws std::invalid_argument if the configuration is out of range;
  /// cuda_error if allocation fails.
  explicit count_sketch(const sketch_config& config)
      : config_(checked(config)),
        hash_(config.seed, static_cast<std::uint32_t>(config.rows), static_cast<std::uint32_t>(config.cols)),
        table_(static_cast<std::size_t>(config.cells())) {
    const detail::stream_scope s{stream_arg{}};
    detail::cuda_check(cudaMemsetAsync(table_.data(), 0, table_.span().size_bytes(), s.get()),
                       "count_sketch<cuda>: zeroing the table");
    s.finish("count_sketch<cuda>: constructor");
  }

  /// A copy of a CPU sketch (synchronous).
  /// @throws cuda_error if allocation or the copy fails.
  explicit count_sketch(const host_sketch& host) : count_sketch(host.config()) { copy_table_from(host.table()); }

  /// A deep copy (synchronous).
  count_sketch(const count_sketch& other) : count_sketch(other.config_) {
    const detail::stream_scope s{stream_arg{}};
    detail::cuda_check(cudaMemcpyAsync(table_.data(), other.table_.data(), table_.span().size_bytes(),
                                       cudaMemcpyDeviceToDevice, s.get()),
                       "count_sketch<cuda>: copy");
    s.finish("count_sketch<cuda>: copy");
  }
  /// A deep copy (synchronous).
  count_sketch& operator=(const count_sketch& other) {
    if (this != &other) *this = count_sketch(other);
    return *this;
  }
  /// Takes `other`'s table; `other` is left without one and may only be
  /// destroyed or assigned to.
  count_sketch(count_sketch&&) noexcept = default;
  /// Takes `other`'s table.
  count_sketch& operator=(count_sketch&&) noexcept = default;
  ~count_sketch() = default;

  /// Rows, columns and seed.
  [[nodiscard]] const sketch_config& config() const noexcept { return config_; }
  /// Number of rows.
  [[nodiscard]] std::size_t rows() const noexcept { return static_cast<std::size_t>(config_.rows); }
  /// Number of columns.
  [[nodiscard]] std::size_t cols() const noexcept { return static_cast<std::size_t>(config_.cols); }
  /// The hash family instance (seeded from the configuration).
  [[nodiscard]] const HashFamily& hash() const noexcept { return hash_; }

  /// The row-major table in device memory: what collectives reduce (through
  /// `device_allreduce`).
  [[nodiscard]] device_span<Value> table() noexcept { return table_.span(); }
  /// The row-major table in device memory.
  [[nodiscard]] device_span<const Value> table() const noexcept { return table_.span(); }
  /// Row `r` of the table.
  [[nodiscard]] device_span<Value> row(std::size_t r) { return table().subspan(r * cols(), cols()); }

  /// Copies the table to host memory (`rows * cols` values).
  /// @throws std::invalid_argument on a size mismatch; cuda_error.
  void copy_table_to(std::span<Value> host, stream_arg stream = {}) const {
    check_cells(host.size(), "copy_table_to");
    const detail::stream_scope s(stream);
    detail::cuda_check(cudaMemcpyAsync(host.data(), table_.data(), host.size_bytes(), cudaMemcpyDeviceToHost, s.get()),
                       "count_sketch<cuda>::copy_table_to");
    s.finish("count_sketch<cuda>::copy_table_to");
  }

  /// Replaces the table with `host` (`rows * cols` values, row-major), e.g. a
  /// table received from a collective.
  /// @throws std::invalid_argument on a size mismatch; cuda_error.
  void copy_table_from(std::span<const Value> host, stream_arg stream = {}) {
    check_cells(host.size(), "copy_table_from");
    const detail::stream_scope s(stream);
    detail::cuda_check(cudaMemcpyAsync(table_.data(), host.data(), host.size_bytes(), cudaMemcpyHostToDevice, s.get()),
                       "count_sketch<cuda>::copy_table_from");
    s.finish("count_sketch<cuda>::copy_table_from");
  }

  /// The same sketch in host memory (synchronous).
  /// @throws cuda_error.
  [[nodiscard]] host_sketch to_cpu() const {
    std::vector<Value> t(table_.size());
    copy_table_to(t);
    return host_sketch(config_, std::span<const Value>(t));
  }

  /// Adds the dense device vector `x`, whose element i is coordinate
  /// `offset + i`: one atomic add per (row, coordinate), unordered for
  /// floating point (see the class notes). O(rows * x.size()) work.
  /// @throws std::invalid_argument if `offset + x.size()` overflows 64 bits; cuda_error.
  void accumulate(device_span<const Value> x, std::uint64_t offset = 0, stream_arg stream = {}) {
    check_key_range(offset, x.size());
    const detail::stream_scope s(stream);
    dispatch::accumulate_atomic(table_.data(), config_, hash_, x.data(), x.size(),
                                detail::cuda_kernels::dense_keys{offset}, s.get());
    s.finish("count_sketch<cuda>::accumulate");
  }

  /// Adds the sparse vector with `values[n]` at coordinate `indices[n]`
  /// (both in device memory; repeated indices add up).
  /// @throws std::invalid_argument if the spans differ in length; cuda_error.
  void accumulate(device_span<const std::uint64_t> indices, device_span<const Value> values, stream_arg stream = {}) {
    check_same_length(indices.size(), values.size());
    const detail::stream_scope s(stream);
    dispatch::accumulate_atomic(table_.data(), config_, hash_, values.data(), values.size(),
                                detail::cuda_kernels::sparse_keys{indices.data()}, s.get());
    s.finish("count_sketch<cuda>::accumulate");
  }

  /// Workspace bytes `accumulate_ordered` needs (independent of the input
  /// length: it works in chunks).
  [[nodiscard]] std::size_t ordered_workspace_bytes() const { return dispatch::ordered_workspace_bytes(config_); }

  /// Adds `x` as `accumulate` does, but with every cell summing its
  /// contributions in coordinate order: the result is bit-identical to the
  /// CPU sketch's `accumulate` for every value type. Costs a stable radix
  /// sort per row and chunk, and `ordered_workspace_bytes()` of workspace.
  /// @throws std::invalid_argument if `offset + x.size()` overflows 64 bits; cuda_error.
  void accumulate_ordered(device_span<const Value> x, std::uint64_t offset, cuda_workspace& ws,
                          stream_arg stream = {}) {
    check_key_range(offset, x.size());
    const detail::stream_scope s(stream);
    dispatch::accumulate_ordered(table_.data(), config_, hash_, x.data(), x.size(),
                                 detail::cuda_kernels::dense_keys{offset}, ws.reserve(ordered_workspace_bytes()),
                                 s.get());
    s.finish("count_sketch<cuda>::accumulate_ordered");
  }

  /// The sparse `accumulate` with contributions added in the order of the
  /// spans, as the CPU sketch does: bit-identical to it.
  /// @throws std::invalid_argument if the spans differ in length; cuda_error.
  void accumulate_ordered(device_span<const std::uint64_t> indices, device_span<const Value> values, cuda_workspace& ws,
                          stream_arg stream = {}) {
    check_same_length(indices.size(), values.size());
    const detail::stream_scope s(stream);
    dispatch::accumulate_ordered(table_.data(), config_, hash_, values.data(), values.size(),
                                 detail::cuda_kernels::sparse_keys{indices.data()},
                                 ws.reserve(ordered_workspace_bytes()), s.get());
    s.finish("count_sketch<cuda>::accumulate_ordered");
  }

  /// Adds `other`'s table to this one (cell by cell, deterministic).
  /// @throws config_mismatch_error if the configurations differ; cuda_error.
  void merge(const count_sketch& other, stream_arg stream = {}) {
    check_compatible(other, "merge");
    const detail::stream_scope s(stream);
    dispatch::template cellwise<detail::cuda_kernels::cell_op::add>(table_.data(), other.table_.data(), Value{},
                                                                    table_.size(), s.get());
    s.finish("count_sketch<cuda>::merge");
  }

  /// Subtracts `other`'s table: the sketch of the difference.
  /// @throws config_mismatch_error if the configurations differ; cuda_error.
  void subtract(const count_sketch& other, stream_arg stream = {}) {
    check_compatible(other, "subtract");
    const detail::stream_scope s(stream);
    dispatch::template cellwise<detail::cuda_kernels::cell_op::subtract>(table_.data(), other.table_.data(), Value{},
                                                                         table_.size(), s.get());
    s.finish("count_sketch<cuda>::subtract");
  }

  /// Same as `merge` (synchronous).
  /// @throws config_mismatch_error if the configurations differ; cuda_error.
  count_sketch& operator+=(const count_sketch& other) {
    merge(other);
    return *this;
  }

  /// Same as `subtract` (synchronous).
  /// @throws config_mismatch_error if the configurations differ; cuda_error.
  count_sketch& operator-=(const count_sketch& other) {
    subtract(other);
    return *this;
  }

  /// Multiplies every cell by `a`: the sketch of `a * x`.
  /// @throws cuda_error.
  void scale(Value a, stream_arg stream = {}) {
    const detail::stream_scope s(stream);
    dispatch::template cellwise<detail::cuda_kernels::cell_op::scale>(table_.data(), nullptr, a, table_.size(),
                                                                      s.get());
    s.finish("count_sketch<cuda>::scale");
  }

  /// Sets every cell to zero.
  /// @throws cuda_error.
  void zero(stream_arg stream = {}) {
    const detail::stream_scope s(stream);
    detail::cuda_check(cudaMemsetAsync(table_.data(), 0, table_.span().size_bytes(), s.get()),
                       "count_sketch<cuda>::zero");
    s.finish("count_sketch<cuda>::zero");
  }

  /// Sets to zero, in every row, the cell each of `indices` (device memory)
  /// hashes to (FetchSGD's reset).
  /// @throws cuda_error.
  void zero_buckets_of(device_span<const std::uint64_t> indices, stream_arg stream = {}) {
    const detail::stream_scope s(stream);
    dispatch::zero_buckets(table_.data(), config_, hash_, indices.data(), indices.size(), s.get());
    s.finish("count_sketch<cuda>::zero_buckets_of");
  }

  /// Point queries: `out[n]` = the estimate of coordinate `keys[n]` (both in
  /// device memory), equal to the CPU's `estimate(keys[n])`.
  /// @throws std::invalid_argument if the spans differ in length; cuda_error.
  void estimate(device_span<const std::uint64_t> keys, device_span<Value> out, stream_arg stream = {}) const {
    check_same_length(keys.size(), out.size());
    const detail::stream_scope s(stream);
    dispatch::estimate(table_.data(), config_, hash_, out.data(), out.size(),
                       detail::cuda_kernels::sparse_keys{keys.data()}, s.get());
    s.finish("count_sketch<cuda>::estimate");
  }

  /// Writes the estimate of coordinate `offset + i` to `out[i]` for every i
  /// (device memory), equal to the CPU's `estimate_all`. O(rows * out.size()).
  /// @throws std::invalid_argument if `offset + out.size()` overflows 64 bits; cuda_error.
  void estimate_all(device_span<Value> out, std::uint64_t offset = 0, stream_arg stream = {}) const {
    check_key_range(offset, out.size());
    const detail::stream_scope s(stream);
    dispatch::estimate(table_.data(), config_, hash_, out.data(), out.size(), detail::cuda_kernels::dense_keys{offset},
                       s.get());
    s.finish("count_sketch<cuda>::estimate_all");
  }

  /// Workspace bytes `l2_estimate` needs.
  [[nodiscard]] std::size_t l2_workspace_bytes() const noexcept {
    return detail::workspace_round(partials() * sizeof(double));
  }

  /// An estimate of ||x||_2, as the CPU's `l2_estimate`: the square root of
  /// the median over rows of each row's sum of squares (summed in double by
  /// a fixed-shape tree on the device, then per row in order on the host).
  /// Returns a host value, so it always waits for its work on the stream.
  /// @throws cuda_error.
  [[nodiscard]] double l2_estimate(cuda_workspace& ws, stream_arg stream = {}) const {
    const detail::stream_scope s(stream);
    auto* const partial = reinterpret_cast<double*>(ws.reserve(l2_workspace_bytes()));  // NOLINT: raw device bytes
    dispatch::row_square_sums(table_.data(), config_, partial, s.get());
    std::vector<double> host(partials());
    detail::cuda_check(
        cudaMemcpyAsync(host.data(), partial, host.size() * sizeof(double), cudaMemcpyDeviceToHost, s.get()),
        "count_sketch<cuda>::l2_estimate: copy");
    s.wait("count_sketch<cuda>::l2_estimate");
    double sums[sketch_config::max_rows]{};  // NOLINT(*-avoid-c-arrays)
    for (std::size_t r = 0; r < rows(); ++r) {
      double total = 0;
      for (unsigned b = 0; b < detail::cuda_tuning::l2_blocks_per_row; ++b) {
        total += host[r * detail::cuda_tuning::l2_blocks_per_row + b];
      }
      sums[r] = total;
    }
    return std::sqrt(detail::median_in_place(sums, static_cast<std::uint32_t>(rows())));
  }

  /// `l2_estimate` summed in the CPU's order (a thread a row, its squares
  /// in column order): equal to the CPU's bit for bit for every value type,
  /// at the cost of a dependent chain of `cols` additions a row
  /// (milliseconds at a million columns). Recovery that thresholds uses it,
  /// so that CPU and GPU ranks of one job select alike.
  /// @throws cuda_error.
  [[nodiscard]] double l2_estimate_in_order(cuda_workspace& ws, stream_arg stream = {}) const {
    const detail::stream_scope s(stream);
    // NOLINTNEXTLINE(*-reinterpret-cast): raw device bytes
    auto* const sums = reinterpret_cast<double*>(ws.reserve(detail::workspace_round(rows() * sizeof(double))));
    dispatch::row_square_sums_in_order(table_.data(), config_, sums, s.get());
    double host[sketch_config::max_rows]{};  // NOLINT(*-avoid-c-arrays)
    detail::cuda_check(cudaMemcpyAsync(host, sums, rows() * sizeof(double), cudaMemcpyDeviceToHost, s.get()),
                       "count_sketch<cuda>::l2_estimate_in_order: copy");
    s.wait("count_sketch<cuda>::l2_estimate_in_order");
    return std::sqrt(detail::median_in_place(host, static_cast<std::uint32_t>(rows())));
  }

  /// `l2_estimate` with a workspace of its own (allocates each call).
  /// @throws cuda_error.
  [[nodiscard]] double l2_estimate(stream_arg stream = {}) const {
    cuda_workspace ws;
    return l2_estimate(ws, stream);
  }

 private:
  static const sketch_config& checked(const sketch_config& config) {
    validate(config, HashFamily::max_cols);
    return config;
  }

  [[nodiscard]] std::size_t partials() const noexcept { return rows() * detail::cuda_tuning::l2_blocks_per_row; }

  static void check_key_range(std::uint64_t offset, std::size_t n) {
    if (n > std::numeric_limits<std::uint64_t>::max() - offset) {
      throw std::invalid_argument("count_sketch<cuda>: offset " + std::to_string(offset) + " + " + std::to_string(n) +
                                  " coordinates overflows 64-bit keys");
    }
  }

  static void check_same_length(std::size_t keys, std::size_t values) {
    if (keys != values) {
      throw std::invalid_argument("count_sketch<cuda>: " + std::to_string(keys) + " indices but " +
                                  std::to_string(values) + " values");
    }
  }

  void check_cells(std::size_t n, const char* what) const {
    if (n != table_.size()) {
      throw std::invalid_argument(std::string("count_sketch<cuda>::") + what + ": table must have rows * cols = " +
                                  std::to_string(table_.size()) + " cells, got " + std::to_string(n));
    }
  }

  void check_compatible(const count_sketch& other, const char* what) const {
    if (config_ != other.config_) {
      throw config_mismatch_error(std::string("count_sketch<cuda>: cannot ") + what +
                                  " sketches of different configuration: " + to_string(config_) + " vs " +
                                  to_string(other.config_));
    }
  }

  sketch_config config_;
  HashFamily hash_;
  device_buffer<Value> table_;
};

}  // namespace sketchsgd
