// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Kernels of the device Count Sketch and their dispatch (launch shape from
/// `cuda_tuning`, stream from the caller). Internal: use
/// `count_sketch<Value, HashFamily, cuda_t>` from `sketchsgd/cuda/count_sketch.cuh`.
///
/// Every kernel hashes with the hash family's own `row(r)(key)`, the code
/// the CPU sketch runs, so host and device agree on every bucket and sign.

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#include <cuda_runtime.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include <cub/block/block_reduce.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/util_type.cuh>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/config.hpp"
#include "sketchsgd/cuda/arithmetic.cuh"
#include "sketchsgd/cuda/memory.cuh"
#include "sketchsgd/cuda/tuning.cuh"
#include "sketchsgd/hash/bucket_sign.hpp"
#include "sketchsgd/sketch/sketch_config.hpp"

namespace sketchsgd::detail::cuda_kernels {

/// The per-row hash type of a family.
template <class HashFamily>
using row_hash_of = decltype(std::declval<const HashFamily&>().row(0U));

/// The per-row hash functions of one sketch, built once per block in shared
/// memory: deriving them (splitmix64 per row) costs more than the hashing.
template <class HashFamily>
struct shared_rows {
  using row_type = row_hash_of<HashFamily>;
  alignas(row_type) unsigned char bytes[sketch_config::max_rows * sizeof(row_type)];  // NOLINT(*-avoid-c-arrays)

  /// Called by the whole block; followed by a barrier.
  __device__ void build(const HashFamily& hash, std::uint32_t rows) {
    for (std::uint32_t r = threadIdx.x; r < rows; r += blockDim.x) {
      new (bytes + std::size_t{r} * sizeof(row_type)) row_type(hash.row(r));
    }
    __syncthreads();
  }
  __device__ const row_type& operator[](std::uint32_t r) const {
    return *reinterpret_cast<const row_type*>(bytes + std::size_t{r} * sizeof(row_type));
  }
};

/// Keys of a dense span: coordinate `offset + i`.
struct dense_keys {
  std::uint64_t offset;
  __device__ SKETCHSGD_FORCE_INLINE std::uint64_t operator()(std::uint64_t i) const { return offset + i; }
};

/// Keys of a sparse vector: `indices[i]`.
struct sparse_keys {
  const std::uint64_t* indices;
  __device__ SKETCHSGD_FORCE_INLINE std::uint64_t operator()(std::uint64_t i) const { return indices[i]; }
};

/// The keys of elements `first, first + 1, ...` of a chunk.
constexpr dense_keys shifted(dense_keys k, std::uint64_t first) noexcept { return {k.offset + first}; }
/// The keys of elements `first, first + 1, ...` of a chunk.
constexpr sparse_keys shifted(sparse_keys k, std::uint64_t first) noexcept { return {k.indices + first}; }

/// Unordered accumulate: `T[r][h_r(key(i))] += s_r(key(i)) x[i]` with one
/// atomic per (row, coordinate). Each thread keeps its coordinates in
/// registers and walks the rows, reading each row's hash once per batch.
template <class Value, class HashFamily, class KeyOf>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    accumulate_atomic(Value* table, std::uint64_t cols, std::uint32_t rows, HashFamily hash, const Value* x,
                      std::uint64_t n, KeyOf key_of) {
  constexpr int threads = cuda_tuning::block_threads;
  constexpr int items = cuda_tuning::accumulate_items;
  __shared__ shared_rows<HashFamily> row_hashes;
  row_hashes.build(hash, rows);
  constexpr std::uint64_t per_block = std::uint64_t{threads} * items;
  for (std::uint64_t base = blockIdx.x * per_block; base < n; base += std::uint64_t{gridDim.x} * per_block) {
    Value v[items];            // NOLINT(*-avoid-c-arrays)
    std::uint64_t key[items];  // NOLINT(*-avoid-c-arrays)
#pragma unroll
    for (int j = 0; j < items; ++j) {
      const std::uint64_t i = base + static_cast<std::uint64_t>(j) * threads + threadIdx.x;
      if (i < n) {
        v[j] = x[i];
        key[j] = key_of(i);
      }
    }
    for (std::uint32_t r = 0; r < rows; ++r) {
      const auto h = row_hashes[r];
      Value* const t = table + static_cast<std::uint64_t>(r) * cols;
#pragma unroll
      for (int j = 0; j < items; ++j) {
        if (base + static_cast<std::uint64_t>(j) * threads + threadIdx.x < n) {
          const bucket_sign bs = h(key[j]);
          atomic_add_cell(t + bs.bucket, signed_value(bs.sign, v[j]));
        }
      }
    }
  }
}

/// Ordered accumulate, step 1: for one row and one chunk, the bucket of each
/// coordinate and its signed value, to be sorted by bucket.
template <class Value, class RowHash, class KeyOf>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    bucket_pairs(RowHash h, const Value* x, std::uint64_t n, KeyOf key_of, std::uint32_t* buckets, Value* signed_x) {
  for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::uint64_t{gridDim.x} * blockDim.x) {
    const bucket_sign bs = h(key_of(i));
    buckets[i] = bs.bucket;
    signed_x[i] = signed_value(bs.sign, x[i]);
  }
}

/// Ordered accumulate, step 2: after a stable sort by bucket, the first
/// entry of each run adds the run into its cell in coordinate order, exactly
/// the order of the CPU sketch's loop, so floating-point cells come out
/// bit-identical to it.
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    add_sorted_runs(Value* row, const std::uint32_t* buckets, const Value* signed_x, std::uint64_t n) {
  for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::uint64_t{gridDim.x} * blockDim.x) {
    const std::uint32_t b = buckets[i];
    if (i > 0 && buckets[i - 1] == b) continue;
    Value acc = row[b];
    for (std::uint64_t j = i; j < n && buckets[j] == b; ++j) acc = add_rn(acc, signed_x[j]);
    row[b] = acc;
  }
}

/// Point queries: `out[i]` = median over rows of `s_r(key) T[r][h_r(key)]`,
/// `key = key_of(i)`. `Rows` > 0 fixes the row count at compile time (the
/// common 1, 3, 5 keep the per-row values in registers); 0 reads `rows`.
template <class Value, class HashFamily, std::uint32_t Rows, class KeyOf>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    estimate(const Value* __restrict__ table, std::uint64_t cols, std::uint32_t rows, HashFamily hash,
             Value* __restrict__ out, std::uint64_t n, KeyOf key_of) {
  __shared__ shared_rows<HashFamily> row_hashes;
  row_hashes.build(hash, rows);
  for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::uint64_t{gridDim.x} * blockDim.x) {
    const std::uint64_t key = key_of(i);
    if constexpr (Rows > 0) {
      Value g[Rows];  // NOLINT(*-avoid-c-arrays)
#pragma unroll
      for (std::uint32_t r = 0; r < Rows; ++r) {
        const bucket_sign bs = row_hashes[r](key);
        g[r] = signed_value(bs.sign, table[static_cast<std::uint64_t>(r) * cols + bs.bucket]);
      }
      if constexpr (Rows == 1) {
        out[i] = g[0];
      } else if constexpr (Rows == 3) {
        out[i] = median3(g[0], g[1], g[2]);
      } else {
        static_assert(Rows == 5, "fixed row counts: 1, 3, 5");
        out[i] = median5(g[0], g[1], g[2], g[3], g[4]);
      }
    } else {
      Value g[sketch_config::max_rows];  // NOLINT(*-avoid-c-arrays)
      for (std::uint32_t r = 0; r < rows; ++r) {
        const bucket_sign bs = row_hashes[r](key);
        g[r] = signed_value(bs.sign, table[static_cast<std::uint64_t>(r) * cols + bs.bucket]);
      }
      out[i] = median_like_cpu(g, rows);
    }
  }
}

/// Sets to zero the cell every key hashes to, in every row. Two keys may
/// share a cell: both write zero, so the race is benign.
template <class Value, class HashFamily>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    zero_buckets(Value* table, std::uint64_t cols, std::uint32_t rows, HashFamily hash, const std::uint64_t* keys,
                 std::uint64_t n) {
  __shared__ shared_rows<HashFamily> row_hashes;
  row_hashes.build(hash, rows);
  for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::uint64_t{gridDim.x} * blockDim.x) {
    const std::uint64_t key = keys[i];
    for (std::uint32_t r = 0; r < rows; ++r)
      table[static_cast<std::uint64_t>(r) * cols + row_hashes[r](key).bucket] = Value{};
  }
}

/// Cell-wise operations of `+=`, `-=` and `scale`.
enum class cell_op { add, subtract, scale };

/// `a[i] = a[i] op b[i]` (or `a[i] * factor` for scale), cell by cell.
template <class Value, cell_op Op>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    cellwise(Value* a, const Value* b, Value factor, std::uint64_t n) {
  for (std::uint64_t i = blockIdx.x * std::uint64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::uint64_t{gridDim.x} * blockDim.x) {
    if constexpr (Op == cell_op::add) {
      a[i] = add_rn(a[i], b[i]);
    } else if constexpr (Op == cell_op::subtract) {
      a[i] = sub_rn(a[i], b[i]);
    } else {
      a[i] = mul_rn(a[i], factor);
    }
  }
}

/// First pass of the l2 estimate: block (b, r) sums the squares of its fixed
/// slice of row r in double, in a fixed order (per-thread strided sums, then
/// a block tree), into `partial[r * gridDim.x + b]`.
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::block_threads)
    row_square_sums(const Value* table, std::uint64_t cols, double* partial) {
  using reduce = cub::BlockReduce<double, cuda_tuning::block_threads>;
  __shared__ typename reduce::TempStorage temp;
  const std::uint64_t slice = (cols + gridDim.x - 1) / gridDim.x;
  const std::uint64_t begin = blockIdx.x * slice;
  const std::uint64_t end = begin + slice < cols ? begin + slice : cols;
  const Value* const row = table + std::uint64_t{blockIdx.y} * cols;
  double s = 0;
  for (std::uint64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const auto v = static_cast<double>(row[i]);
    s = __dadd_rn(s, __dmul_rn(v, v));
  }
  const double total = reduce(temp).Sum(s);
  if (threadIdx.x == 0) partial[std::uint64_t{blockIdx.y} * gridDim.x + blockIdx.x] = total;
}

/// The CPU's `l2_estimate` order: thread r adds row r's squares in column
/// order, in double, each operation rounded on its own, into `sums[r]`. One
/// dependent chain of `cols` additions a row: slow, and bit-identical to the
/// CPU.
template <class Value>
__global__ void row_square_sums_in_order(const Value* table, std::uint64_t rows, std::uint64_t cols, double* sums) {
  const std::uint64_t r = std::uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const Value* const row = table + r * cols;
  double s = 0;
  for (std::uint64_t i = 0; i < cols; ++i) {
    const auto v = static_cast<double>(row[i]);
    s = __dadd_rn(s, __dmul_rn(v, v));
  }
  sums[r] = s;
}

}  // namespace sketchsgd::detail::cuda_kernels

namespace sketchsgd::detail {

/// Dispatch of the sketch operations: picks the launch shape and the kernel
/// instantiation, launches on the caller's stream, checks the launch.
template <sketch_value Value, hash_family HashFamily>
struct cuda_sketch_dispatch {
  /// Unordered (atomic) accumulate of `n` values with keys from `keys`.
  template <class KeyOf>
  static void accumulate_atomic(Value* table, const sketch_config& cfg, const HashFamily& hash, const Value* x,
                                std::uint64_t n, KeyOf keys, cudaStream_t stream) {
    if (n == 0) return;
    constexpr std::uint64_t per_block = std::uint64_t{cuda_tuning::block_threads} * cuda_tuning::accumulate_items;
    cuda_kernels::accumulate_atomic<Value, HashFamily, KeyOf>
        <<<cuda_tuning::grid_for(n, per_block), cuda_tuning::block_threads, 0, stream>>>(
            table, cfg.cols, static_cast<std::uint32_t>(cfg.rows), hash, x, n, keys);
    cuda_check_launch("count_sketch<cuda>::accumulate");
  }

  /// Bytes of workspace the ordered accumulate of a chunk needs.
  static std::size_t ordered_workspace_bytes(const sketch_config& cfg) {
    workspace_carver c;
    layout_ordered(c, cfg);
    return c.used();
  }

  /// Ordered accumulate: per chunk of coordinates and per row, (bucket,
  /// signed value) pairs, a stable radix sort by bucket, then each run added
  /// in order. `ws` must hold `ordered_workspace_bytes(cfg)`.
  template <class KeyOf>
  static void accumulate_ordered(Value* table, const sketch_config& cfg, const HashFamily& hash, const Value* x,
                                 std::uint64_t n, KeyOf keys_of, std::byte* ws, cudaStream_t stream) {
    workspace_carver c(ws);
    const ordered_layout l = layout_ordered(c, cfg);
    const int end_bit = bucket_bits(cfg);
    for (std::uint64_t first = 0; first < n; first += cuda_tuning::ordered_chunk) {
      const std::uint64_t len = n - first < cuda_tuning::ordered_chunk ? n - first : cuda_tuning::ordered_chunk;
      const KeyOf chunk_keys = cuda_kernels::shifted(keys_of, first);
      for (std::uint32_t r = 0; r < static_cast<std::uint32_t>(cfg.rows); ++r) {
        const unsigned grid = cuda_tuning::grid_for(len, cuda_tuning::block_threads);
        cuda_kernels::bucket_pairs<Value, cuda_kernels::row_hash_of<HashFamily>, KeyOf>
            <<<grid, cuda_tuning::block_threads, 0, stream>>>(hash.row(r), x + first, len, chunk_keys, l.buckets[0],
                                                              l.values[0]);
        cuda_check_launch("count_sketch<cuda>::accumulate_ordered: bucket pairs");
        cub::DoubleBuffer<std::uint32_t> kb(l.buckets[0], l.buckets[1]);
        cub::DoubleBuffer<Value> vb(l.values[0], l.values[1]);
        std::size_t temp_bytes = l.sort_bytes;
        cuda_check(
            cub::DeviceRadixSort::SortPairs(l.sort_temp, temp_bytes, kb, vb, static_cast<int>(len), 0, end_bit, stream),
            "count_sketch<cuda>::accumulate_ordered: radix sort");
        cuda_kernels::add_sorted_runs<Value><<<grid, cuda_tuning::block_threads, 0, stream>>>(
            table + static_cast<std::uint64_t>(r) * cfg.cols, kb.Current(), vb.Current(), len);
        cuda_check_launch("count_sketch<cuda>::accumulate_ordered: add runs");
      }
    }
  }

  /// `out[i]` = estimate of `keys(i)`, i < n.
  template <class KeyOf>
  static void estimate(const Value* table, const sketch_config& cfg, const HashFamily& hash, Value* out,
                       std::uint64_t n, KeyOf keys, cudaStream_t stream) {
    if (n == 0) return;
    const unsigned grid =
        cuda_tuning::grid_for(n, std::uint64_t{cuda_tuning::block_threads} * cuda_tuning::estimate_items);
    const auto rows = static_cast<std::uint32_t>(cfg.rows);
    const auto launch = [&](auto kernel) {
      kernel<<<grid, cuda_tuning::block_threads, 0, stream>>>(table, cfg.cols, rows, hash, out, n, keys);
      cuda_check_launch("count_sketch<cuda>::estimate");
    };
    switch (rows) {
      case 1:
        launch(cuda_kernels::estimate<Value, HashFamily, 1, KeyOf>);
        break;
      case 3:
        launch(cuda_kernels::estimate<Value, HashFamily, 3, KeyOf>);
        break;
      case 5:
        launch(cuda_kernels::estimate<Value, HashFamily, 5, KeyOf>);
        break;
      default:
        launch(cuda_kernels::estimate<Value, HashFamily, 0, KeyOf>);
    }
  }

  /// Zeroes the cells of `n` keys in every row.
  static void zero_buckets(Value* table, const sketch_config& cfg, const HashFamily& hash, const std::uint64_t* keys,
                           std::uint64_t n, cudaStream_t stream) {
    if (n == 0) return;
    cuda_kernels::zero_buckets<Value, HashFamily>
        <<<cuda_tuning::grid_for(n, cuda_tuning::block_threads), cuda_tuning::block_threads, 0, stream>>>(
            table, cfg.cols, static_cast<std::uint32_t>(cfg.rows), hash, keys, n);
    cuda_check_launch("count_sketch<cuda>::zero_buckets_of");
  }

  /// Cell-wise `a op= b` or `a *= factor` over n cells.
  template <cuda_kernels::cell_op Op>
  static void cellwise(Value* a, const Value* b, Value factor, std::uint64_t n, cudaStream_t stream) {
    if (n == 0) return;
    const unsigned grid =
        cuda_tuning::grid_for(n, std::uint64_t{cuda_tuning::block_threads} * cuda_tuning::elementwise_items);
    cuda_kernels::cellwise<Value, Op><<<grid, cuda_tuning::block_threads, 0, stream>>>(a, b, factor, n);
    cuda_check_launch("count_sketch<cuda>: cell-wise operation");
  }

  /// Partial sums of squares, `rows * l2_blocks_per_row` doubles into `partial`.
  static void row_square_sums(const Value* table, const sketch_config& cfg, double* partial, cudaStream_t stream) {
    const dim3 grid(cuda_tuning::l2_blocks_per_row, static_cast<unsigned>(cfg.rows));
    cuda_kernels::row_square_sums<Value><<<grid, cuda_tuning::block_threads, 0, stream>>>(table, cfg.cols, partial);
    cuda_check_launch("count_sketch<cuda>::l2_estimate");
  }
  /// Each row's sum of squares in the CPU's order, `rows` doubles into `sums`.
  static void row_square_sums_in_order(const Value* table, const sketch_config& cfg, double* sums,
                                       cudaStream_t stream) {
    constexpr unsigned threads = 32;  // one a row
    const auto blocks = static_cast<unsigned>((cfg.rows + threads - 1) / threads);
    cuda_kernels::row_square_sums_in_order<Value><<<blocks, threads, 0, stream>>>(table, cfg.rows, cfg.cols, sums);
    cuda_check_launch("count_sketch<cuda>::l2_estimate_in_order");
  }

 private:
  struct ordered_layout {
    std::uint32_t* buckets[2];  // NOLINT(*-avoid-c-arrays)
    Value* values[2];           // NOLINT(*-avoid-c-arrays)
    void* sort_temp;
    std::size_t sort_bytes;
  };

  /// Bits of a bucket number: the radix sort looks at no others.
  static int bucket_bits(const sketch_config& cfg) {
    return cfg.cols <= 1 ? 1 : static_cast<int>(std::bit_width(cfg.cols - 1));
  }

  static ordered_layout layout_ordered(workspace_carver& c, const sketch_config& cfg) {
    constexpr std::size_t chunk = cuda_tuning::ordered_chunk;
    ordered_layout l{};
    l.buckets[0] = c.take<std::uint32_t>(chunk);
    l.buckets[1] = c.take<std::uint32_t>(chunk);
    l.values[0] = c.take<Value>(chunk);
    l.values[1] = c.take<Value>(chunk);
    cub::DoubleBuffer<std::uint32_t> kb(l.buckets[0], l.buckets[1]);
    cub::DoubleBuffer<Value> vb(l.values[0], l.values[1]);
    std::size_t bytes = 0;
    cuda_check(cub::DeviceRadixSort::SortPairs(nullptr, bytes, kb, vb, static_cast<int>(chunk), 0, bucket_bits(cfg)),
               "count_sketch<cuda>::accumulate_ordered: sort size query");
    l.sort_bytes = bytes;
    l.sort_temp = c.take<std::byte>(bytes);
    return l;
  }
};

}  // namespace sketchsgd::detail
