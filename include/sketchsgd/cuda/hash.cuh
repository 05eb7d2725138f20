// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The hash families, included for the CUDA part.
///
/// `row_hash::for_each` is `__host__ __device__` so that kernels can use it;
/// the CPU sketch calls it with host lambdas, and nvcc warns (20013) when it
/// instantiates that host-only use in a CUDA translation unit. nvcc reports
/// the warning at `for_each`'s definition, so it is silenced around the
/// first inclusion of the hash headers, which is here when a sketchsgd .cuh
/// header comes before any core header in the translation unit. (The fix
/// inside the core would be `#pragma nv_exec_check_disable` on `for_each`.)

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#if defined(__NVCC__)
#pragma nv_diagnostic push
#pragma nv_diag_suppress 20013
#endif
#include "sketchsgd/hash/multiply_shift.hpp"
#include "sketchsgd/hash/poly4_hash.hpp"
#if defined(__NVCC__)
#pragma nv_diagnostic pop
#endif
