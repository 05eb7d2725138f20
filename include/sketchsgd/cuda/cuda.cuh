// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Umbrella header of the CUDA part (target `sketchsgd::cuda`): include it
/// from CUDA translation units only. The core umbrella
/// `sketchsgd/sketchsgd.hpp` never includes CUDA.

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#include "sketchsgd/cuda/count_sketch.cuh"
#include "sketchsgd/cuda/memory.cuh"
#include "sketchsgd/cuda/optim_ops.cuh"
#include "sketchsgd/cuda/sketched_sgd.cuh"
#include "sketchsgd/cuda/staging.cuh"
#include "sketchsgd/cuda/topk.cuh"
