// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Compiler portability macros. Every macro carries the `SKETCHSGD_` prefix.

/// Marks a function callable from both host and CUDA device code.
#if defined(__CUDACC__)
#define SKETCHSGD_HOST_DEVICE __host__ __device__
#else
#define SKETCHSGD_HOST_DEVICE
#endif

/// Inlining hint for the few hot inner functions (hash evaluation, medians).
#if defined(__CUDA_ARCH__)
#define SKETCHSGD_FORCE_INLINE __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define SKETCHSGD_FORCE_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define SKETCHSGD_FORCE_INLINE __forceinline
#else
#define SKETCHSGD_FORCE_INLINE inline
#endif
