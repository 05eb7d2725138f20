// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Exact, deterministic top-k by magnitude on the device: an MSD radix
/// select over the bits of |x| (the keys of `detail::magnitude_key`, as the
/// CPU's `detail::select_top_k`), then an order-preserving compaction.
/// Internal: use `top_k` from `sketchsgd/cuda/topk.cuh`.
///
/// 1. Histogram passes, 11 bits at a time from the top, each counting only
///    the keys that match the boundary prefix found so far; a one-block
///    kernel after each pass moves the boundary down a digit. The state
///    stays on the device, so there is no host round trip: passes after the
///    boundary is exact return at once. Integer atomics only, so the counts,
///    the boundary and everything after it are independent of scheduling.
/// 2. With the boundary key K and `need` (how many keys equal to K to take),
///    tiles count their keys above K and equal to K; one block scans the
///    tile counts, giving each tile its rank among the ties (the lowest
///    indices win) and its output offset.
/// 3. Tiles write their chosen (index, value) pairs at their offsets: the
///    result is in increasing index order with no sort.

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#include <cuda_runtime.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cub/block/block_load.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/config.hpp"
#include "sketchsgd/cuda/memory.cuh"
#include "sketchsgd/cuda/tuning.cuh"
#include "sketchsgd/detail/radix_select.hpp"

namespace sketchsgd::detail {

/// `magnitude_key<Value>::of` for host and device code (that one is a
/// constexpr host function): the same key bits.
template <class Value>
SKETCHSGD_HOST_DEVICE SKETCHSGD_FORCE_INLINE typename magnitude_key<Value>::type magnitude_bits(Value v) noexcept {
  using key = typename magnitude_key<Value>::type;
  if constexpr (std::is_floating_point_v<Value>) {
    constexpr key sign_bit = key{1} << (8 * sizeof(key) - 1);
#if defined(__CUDA_ARCH__)
    key bits = 0;
    if constexpr (sizeof(Value) == 4) {
      bits = __float_as_uint(v);
    } else {
      bits = static_cast<key>(__double_as_longlong(v));
    }
#else
    const key bits = std::bit_cast<key>(v);
#endif
    return static_cast<key>(bits & ~sign_bit);
  } else {
    const auto u = static_cast<key>(v);
    return v < 0 ? static_cast<key>(key{0} - u) : u;
  }
}

/// Where the radix select stands: keys whose bits under `mask` exceed
/// `prefix` are selected; `need` of the keys equal to `prefix` under `mask`
/// are still to be taken (the lowest indices); `done` once no further digit
/// can change that.
template <class Key>
struct select_state {
  Key prefix;
  Key mask;
  std::uint64_t need;
  std::uint32_t done;
};

}  // namespace sketchsgd::detail

namespace sketchsgd::detail::cuda_kernels {

template <class Key>
__global__ void select_init(select_state<Key>* state, std::uint64_t k) {
  *state = {Key{0}, Key{0}, k, 0U};
}

/// Counts one digit (`bins` values at `shift`) of the valid keys that match
/// the current prefix, in shared memory, then adds the block's counts to `hist`.
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::select_histogram_threads)
    select_histogram(const Value* x, std::uint64_t n, const select_state<typename magnitude_key<Value>::type>* state,
                     unsigned long long* hist, unsigned shift, unsigned bins) {  // NOLINT(google-runtime-int)
  using key = typename magnitude_key<Value>::type;
  constexpr int threads = cuda_tuning::select_histogram_threads;
  constexpr int items = cuda_tuning::select_histogram_items;
  if (state->done != 0) return;  // the same for the whole grid
  __shared__ unsigned int counts[cuda_tuning::select_bins];
  for (unsigned b = threadIdx.x; b < bins; b += threads) counts[b] = 0;
  __syncthreads();
  const key prefix = state->prefix;
  const key mask = state->mask;
  constexpr std::uint64_t per_block = std::uint64_t{threads} * items;
  for (std::uint64_t base = blockIdx.x * per_block; base < n; base += std::uint64_t{gridDim.x} * per_block) {
#pragma unroll
    for (int j = 0; j < items; ++j) {
      const std::uint64_t i = base + static_cast<std::uint64_t>(j) * threads + threadIdx.x;
      if (i < n) {
        const key k = magnitude_bits(x[i]);
        if (k <= magnitude_key<Value>::max_valid && (k & mask) == prefix) {
          atomicAdd(&counts[static_cast<unsigned>(k >> shift) & (bins - 1)], 1U);
        }
      }
    }
  }
  __syncthreads();
  for (unsigned b = threadIdx.x; b < bins; b += threads) {
    if (counts[b] != 0) atomicAdd(&hist[b], static_cast<unsigned long long>(counts[b]));  // NOLINT(google-runtime-int)
  }
}

/// One block: finds the digit holding the `need`-th largest matching key
/// (scanning the histogram from the top) and narrows the state to it. At
/// the first level, if at most k keys are valid at all, takes them all.
template <class Key>
__global__ void __launch_bounds__(cuda_tuning::select_plan_threads)
    select_boundary(select_state<Key>* state, const unsigned long long* hist,  // NOLINT(google-runtime-int)
                    unsigned shift, unsigned bins, bool first_level) {
  constexpr int threads = cuda_tuning::select_plan_threads;
  constexpr int items = static_cast<int>(cuda_tuning::select_bins) / threads;
  using scan = cub::BlockScan<std::uint64_t, threads>;
  __shared__ typename scan::TempStorage temp;
  const select_state<Key> s = *state;
  if (s.done != 0) return;
  std::uint64_t count[items];  // NOLINT(*-avoid-c-arrays): digits in descending order
  std::uint64_t above[items];  // NOLINT(*-avoid-c-arrays)
#pragma unroll
  for (int j = 0; j < items; ++j) {
    const unsigned rank = threadIdx.x * items + static_cast<unsigned>(j);
    count[j] = rank < bins ? hist[bins - 1 - rank] : 0;
  }
  std::uint64_t total = 0;
  scan(temp).ExclusiveSum(count, above, total);  // every thread has read the state before this barrier
  if (first_level && total <= s.need) {
    if (threadIdx.x == 0) *state = {Key{0}, Key{0}, total, 1U};
    return;
  }
#pragma unroll
  for (int j = 0; j < items; ++j) {
    if (count[j] != 0 && above[j] < s.need && s.need <= above[j] + count[j]) {
      const unsigned rank = threadIdx.x * items + static_cast<unsigned>(j);
      const auto digit = static_cast<Key>(bins - 1 - rank);
      select_state<Key> next{};
      next.prefix = static_cast<Key>(s.prefix | static_cast<Key>(digit << shift));
      next.mask = static_cast<Key>(s.mask | static_cast<Key>(static_cast<Key>(bins - 1) << shift));
      next.need = s.need - above[j];
      next.done = (shift == 0 || next.need == count[j]) ? 1U : 0U;
      *state = next;  // exactly one (thread, item) matches
    }
  }
}

/// Per tile: the number of valid keys above the boundary and equal to it.
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::select_tile_threads)
    select_count_tiles(const Value* x, std::uint64_t n, const select_state<typename magnitude_key<Value>::type>* state,
                       std::uint32_t* tile_above, std::uint32_t* tile_ties) {
  using key = typename magnitude_key<Value>::type;
  constexpr int threads = cuda_tuning::select_tile_threads;
  constexpr int items = cuda_tuning::select_tile_items;
  using reduce = cub::BlockReduce<std::uint64_t, threads>;
  __shared__ typename reduce::TempStorage temp;
  const key prefix = state->prefix;
  const key mask = state->mask;
  const std::uint64_t begin = blockIdx.x * cuda_tuning::select_tile;
  std::uint64_t packed = 0;  // above << 32 | ties: each at most a tile
#pragma unroll
  for (int j = 0; j < items; ++j) {
    const std::uint64_t i = begin + static_cast<std::uint64_t>(j) * threads + threadIdx.x;
    if (i < n) {
      const key k = magnitude_bits(x[i]);
      if (k <= magnitude_key<Value>::max_valid) {
        const auto top = static_cast<key>(k & mask);
        if (top > prefix) {
          packed += std::uint64_t{1} << 32U;
        } else if (top == prefix) {
          packed += 1;
        }
      }
    }
  }
  const std::uint64_t total = reduce(temp).Sum(packed);
  if (threadIdx.x == 0) {
    tile_above[blockIdx.x] = static_cast<std::uint32_t>(total >> 32U);
    tile_ties[blockIdx.x] = static_cast<std::uint32_t>(total & 0xFFFFFFFFU);
  }
}

/// One block: running scans over the tiles of the tie counts (each tile's
/// first tie rank) and of the selected counts (each tile's output offset);
/// writes the total selected to `count`.
template <class Key>
__global__ void __launch_bounds__(cuda_tuning::select_plan_threads)
    select_plan(const select_state<Key>* state, const std::uint32_t* tile_above, const std::uint32_t* tile_ties,
                std::uint64_t tiles, std::uint64_t* tie_base, std::uint64_t* out_base, std::uint64_t* count) {
  constexpr int threads = cuda_tuning::select_plan_threads;
  using scan = cub::BlockScan<std::uint64_t, threads>;
  __shared__ typename scan::TempStorage temp;
  const std::uint64_t need = state->need;
  std::uint64_t tie_carry = 0;
  std::uint64_t out_carry = 0;
  for (std::uint64_t first = 0; first < tiles; first += threads) {
    const std::uint64_t t = first + threadIdx.x;
    const std::uint64_t ties = t < tiles ? tile_ties[t] : 0;
    const std::uint64_t above = t < tiles ? tile_above[t] : 0;
    std::uint64_t my_tie_base = 0;
    std::uint64_t tie_total = 0;
    scan(temp).ExclusiveSum(ties, my_tie_base, tie_total);
    __syncthreads();
    my_tie_base += tie_carry;
    const std::uint64_t left = my_tie_base >= need ? 0 : need - my_tie_base;
    const std::uint64_t selected = above + (ties < left ? ties : left);
    std::uint64_t my_out_base = 0;
    std::uint64_t out_total = 0;
    scan(temp).ExclusiveSum(selected, my_out_base, out_total);
    __syncthreads();
    if (t < tiles) {
      tie_base[t] = my_tie_base;
      out_base[t] = my_out_base + out_carry;
    }
    tie_carry += tie_total;
    out_carry += out_total;
  }
  if (threadIdx.x == 0) *count = out_carry;
}

/// Per tile: writes the selected (index, value) pairs, in index order, at
/// the tile's offset. Items are loaded in blocked order (thread t holds
/// elements t * items ...), so scans over threads follow the index order.
template <class Value>
__global__ void __launch_bounds__(cuda_tuning::select_tile_threads)
    select_scatter(const Value* x, std::uint64_t n, const select_state<typename magnitude_key<Value>::type>* state,
                   const std::uint64_t* tie_base, const std::uint64_t* out_base, std::uint64_t* out_index,
                   Value* out_value) {
  using key = typename magnitude_key<Value>::type;
  constexpr int threads = cuda_tuning::select_tile_threads;
  constexpr int items = cuda_tuning::select_tile_items;
  using load = cub::BlockLoad<Value, threads, items, cub::BLOCK_LOAD_TRANSPOSE>;
  using scan = cub::BlockScan<std::uint32_t, threads>;
  __shared__ union {
    typename load::TempStorage load;
    typename scan::TempStorage scan;
  } temp;
  const std::uint64_t begin = blockIdx.x * cuda_tuning::select_tile;
  const std::uint64_t rest = n - begin;
  const int valid =
      rest < cuda_tuning::select_tile ? static_cast<int>(rest) : static_cast<int>(cuda_tuning::select_tile);
  Value v[items];  // NOLINT(*-avoid-c-arrays)
  load(temp.load).Load(x + begin, v, valid, Value{});
  __syncthreads();

  const key prefix = state->prefix;
  const key mask = state->mask;
  const std::uint64_t need = state->need;
  enum : unsigned char { skip, above, tie, chosen };
  unsigned char kind[items];  // NOLINT(*-avoid-c-arrays)
  std::uint32_t my_ties = 0;
#pragma unroll
  for (int j = 0; j < items; ++j) {
    kind[j] = skip;
    if (static_cast<int>(threadIdx.x) * items + j < valid) {
      const key k = magnitude_bits(v[j]);
      if (k <= magnitude_key<Value>::max_valid) {
        const auto top = static_cast<key>(k & mask);
        if (top > prefix) {
          kind[j] = above;
        } else if (top == prefix) {
          kind[j] = tie;
          ++my_ties;
        }
      }
    }
  }
  std::uint32_t tie_offset = 0;
  scan(temp.scan).ExclusiveSum(my_ties, tie_offset);
  __syncthreads();
  std::uint64_t rank = tie_base[blockIdx.x] + tie_offset;
  std::uint32_t my_selected = 0;
#pragma unroll
  for (int j = 0; j < items; ++j) {
    if (kind[j] == tie) {
      if (rank < need) kind[j] = chosen;
      ++rank;
    }
    if (kind[j] == above || kind[j] == chosen) ++my_selected;
  }
  std::uint32_t selected_offset = 0;
  scan(temp.scan).ExclusiveSum(my_selected, selected_offset);
  std::uint64_t at = out_base[blockIdx.x] + selected_offset;
#pragma unroll
  for (int j = 0; j < items; ++j) {
    if (kind[j] == above || kind[j] == chosen) {
      out_index[at] = begin + threadIdx.x * std::uint64_t{items} + static_cast<std::uint64_t>(j);
      out_value[at] = v[j];
      ++at;
    }
  }
}

}  // namespace sketchsgd::detail::cuda_kernels

namespace sketchsgd::detail {

/// Dispatch of the device top-k: workspace layout, the fixed sequence of
/// launches, launch checks.
template <sketch_value Value>
struct cuda_select_dispatch {
  using key = typename magnitude_key<Value>::type;
  static constexpr unsigned key_bits = 8 * sizeof(key);

  /// Workspace bytes to select from `n` elements.
  static std::size_t workspace_bytes(std::uint64_t n) {
    workspace_carver c;
    (void)layout(c, n);
    return c.used();
  }

  /// Writes the `k` elements of `x[0, n)` with the largest |value| (ties to
  /// the lower index, NaN never) to `out_index`/`out_value` in increasing
  /// index order, and their number (min(k, valid elements)) to `*count`.
  static void select(const Value* x, std::uint64_t n, std::uint64_t k, std::uint64_t* out_index, Value* out_value,
                     std::uint64_t* count, std::byte* ws, cudaStream_t stream) {
    if (k == 0 || n == 0) {
      cuda_check(cudaMemsetAsync(count, 0, sizeof(std::uint64_t), stream), "top_k<cuda>: count");
      return;
    }
    workspace_carver c(ws);
    const parts p = layout(c, n);
    cuda_kernels::select_init<key><<<1, 1, 0, stream>>>(p.state, k);
    cuda_check_launch("top_k<cuda>: init");

    constexpr std::uint64_t per_block =
        std::uint64_t{cuda_tuning::select_histogram_threads} * cuda_tuning::select_histogram_items;
    const unsigned hist_grid = cuda_tuning::grid_for(n, per_block);
    bool first = true;
    for (unsigned taken = 0; taken < key_bits;) {
      const unsigned bits =
          key_bits - taken < cuda_tuning::select_digit_bits ? key_bits - taken : cuda_tuning::select_digit_bits;
      const unsigned shift = key_bits - taken - bits;
      const unsigned bins = 1U << bits;
      cuda_check(cudaMemsetAsync(p.hist, 0, cuda_tuning::select_bins * sizeof(*p.hist), stream),
                 "top_k<cuda>: histogram reset");
      cuda_kernels::select_histogram<Value>
          <<<hist_grid, cuda_tuning::select_histogram_threads, 0, stream>>>(x, n, p.state, p.hist, shift, bins);
      cuda_check_launch("top_k<cuda>: histogram");
      cuda_kernels::select_boundary<key>
          <<<1, cuda_tuning::select_plan_threads, 0, stream>>>(p.state, p.hist, shift, bins, first);
      cuda_check_launch("top_k<cuda>: boundary");
      first = false;
      taken += bits;
    }

    const auto grid = static_cast<unsigned>(p.tiles);
    cuda_kernels::select_count_tiles<Value>
        <<<grid, cuda_tuning::select_tile_threads, 0, stream>>>(x, n, p.state, p.tile_above, p.tile_ties);
    cuda_check_launch("top_k<cuda>: tile counts");
    cuda_kernels::select_plan<key><<<1, cuda_tuning::select_plan_threads, 0, stream>>>(
        p.state, p.tile_above, p.tile_ties, p.tiles, p.tie_base, p.out_base, count);
    cuda_check_launch("top_k<cuda>: plan");
    cuda_kernels::select_scatter<Value><<<grid, cuda_tuning::select_tile_threads, 0, stream>>>(
        x, n, p.state, p.tie_base, p.out_base, out_index, out_value);
    cuda_check_launch("top_k<cuda>: scatter");
  }

 private:
  struct parts {
    select_state<key>* state;
    unsigned long long* hist;  // NOLINT(google-runtime-int): atomicAdd's type
    std::uint64_t tiles;
    std::uint32_t* tile_above;
    std::uint32_t* tile_ties;
    std::uint64_t* tie_base;
    std::uint64_t* out_base;
  };

  static parts layout(workspace_carver& c, std::uint64_t n) {
    parts p{};
    p.tiles = (n + cuda_tuning::select_tile - 1) / cuda_tuning::select_tile;
    if (p.tiles > 0x7FFFFFFFU) throw std::invalid_argument("top_k<cuda>: too many elements for one selection");
    const auto tiles = static_cast<std::size_t>(p.tiles);
    p.state = c.take<select_state<key>>(1);
    p.hist = c.take<unsigned long long>(cuda_tuning::select_bins);  // NOLINT(google-runtime-int)
    p.tile_above = c.take<std::uint32_t>(tiles);
    p.tile_ties = c.take<std::uint32_t>(tiles);
    p.tie_base = c.take<std::uint64_t>(tiles);
    p.out_base = c.take<std::uint64_t>(tiles);
    return p;
  }
};

}  // namespace sketchsgd::detail
