// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Every distributed optimizer: Sketched-SGD, FetchSGD, global-sketch SGD,
/// and the dense, true top-k and local top-k baselines.

#include "sketchsgd/optim/checkpoint.hpp"
#include "sketchsgd/optim/dense_sgd.hpp"
#include "sketchsgd/optim/fetch_sgd.hpp"
#include "sketchsgd/optim/global_sketch_sgd.hpp"
#include "sketchsgd/optim/sketched_sgd.hpp"
#include "sketchsgd/optim/topk_sgd.hpp"
#include "sketchsgd/optim/update.hpp"
