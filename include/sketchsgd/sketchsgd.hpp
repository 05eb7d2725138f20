// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Umbrella header for the core. It includes the standard library and, for
/// the crash-safe checkpoints of optim/state/checkpoint.hpp, the POSIX headers
/// <fcntl.h>, <sys/stat.h>, <sys/types.h> and <unistd.h>; nothing else. MPI,
/// Boost and CUDA live behind their own headers and targets.

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/concepts.hpp"
#include "sketchsgd/config.hpp"
#include "sketchsgd/device.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/execution.hpp"
#include "sketchsgd/hash/bucket_sign.hpp"
#include "sketchsgd/hash/multiply_shift.hpp"
#include "sketchsgd/hash/poly4_hash.hpp"
#include "sketchsgd/hash/seed_mixer.hpp"
#include "sketchsgd/optim/optimizers.hpp"
#include "sketchsgd/serialize/count_sketch_format.hpp"
#include "sketchsgd/serialize/wire.hpp"
#include "sketchsgd/sketch/count_sketch.hpp"
#include "sketchsgd/sketch/heavy_hitters.hpp"
#include "sketchsgd/sketch/sketch_config.hpp"
#include "sketchsgd/sketch/sparse_update.hpp"
#include "sketchsgd/sketch/topk.hpp"
#include "sketchsgd/transport/concepts.hpp"
#include "sketchsgd/transport/inproc.hpp"
#include "sketchsgd/transport/inproc_elastic.hpp"
#include "sketchsgd/version.hpp"
