// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Launch shapes of the CUDA kernels, in one place (CUB's "tuning policy"
/// layer between dispatch and kernels). One policy serves sm_80 and newer;
/// per-architecture policies belong here once the GPU benchmarks
/// (bench/cuda) have measured a reason for them.
///
/// None of these change a result: integer results and every "ordered" or
/// selection result are identical for any launch shape, and the float atomic
/// accumulate is unordered whatever the shape.

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#include <cstddef>
#include <cstdint>

namespace sketchsgd::detail::cuda_tuning {

/// Threads per block of the streaming kernels (accumulate, estimate,
/// element-wise, optimizer state).
inline constexpr int block_threads = 256;

/// Coordinates per thread in accumulate: held in registers while the thread
/// walks the rows, so each row's hash parameters are read once per item batch.
inline constexpr int accumulate_items = 8;

/// Coordinates per thread in estimate_all.
inline constexpr int estimate_items = 4;

/// Elements per thread of the element-wise kernels (grid-stride).
inline constexpr int elementwise_items = 8;

/// Coordinates per chunk of the ordered (sort-based) accumulate: bounds its
/// workspace to about chunk * 2 * (4 + sizeof(Value)) bytes plus CUB's.
inline constexpr std::size_t ordered_chunk = std::size_t{1} << 22U;

/// Blocks per row of the l2 estimate's first pass. Fixed (not derived from
/// the SM count) so that the summation order, hence the result, is the same
/// on every GPU.
inline constexpr unsigned l2_blocks_per_row = 64;

/// Radix select: bits per digit. 11 bits give 2048 bins (8 KiB of shared
/// memory per block), so 32-bit keys resolve in 3 histogram passes and 64-bit
/// keys in 6.
inline constexpr unsigned select_digit_bits = 11;
/// Radix select: number of bins per digit.
inline constexpr unsigned select_bins = 1U << select_digit_bits;
/// Radix select: threads of the histogram kernel.
inline constexpr int select_histogram_threads = 512;
/// Radix select: items per thread of the histogram kernel.
inline constexpr int select_histogram_items = 16;
/// Radix select: threads and items per thread of the tile kernels (count,
/// scatter); a tile is their product.
inline constexpr int select_tile_threads = 256;
/// Radix select: items per thread in a tile.
inline constexpr int select_tile_items = 16;
/// Radix select: elements per tile.
inline constexpr std::size_t select_tile = std::size_t{select_tile_threads} * select_tile_items;
/// Radix select: threads of the single-block kernels (boundary search, tile plan).
inline constexpr int select_plan_threads = 256;

/// Grid size for `n` items handled `per_block` at a time (at least 1).
constexpr unsigned grid_for(std::uint64_t n, std::uint64_t per_block) noexcept {
  const std::uint64_t g = (n + per_block - 1) / per_block;
  return g == 0 ? 1U : static_cast<unsigned>(g);
}

}  // namespace sketchsgd::detail::cuda_tuning
