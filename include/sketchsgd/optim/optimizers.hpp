// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The optimizer layer: the driver, its policies, and the named optimizers
/// (Sketched-SGD, FetchSGD, global-sketch SGD and the dense, true top-k,
/// local top-k and gTop-k baselines) as compositions of them, and the
/// registry that picks one by name (methods.hpp).

#include "sketchsgd/optim/any_optimizer.hpp"
#include "sketchsgd/optim/dense_sgd.hpp"
#include "sketchsgd/optim/elastic_loop.hpp"
#include "sketchsgd/optim/fetch_sgd.hpp"
#include "sketchsgd/optim/global_sketch_sgd.hpp"
#include "sketchsgd/optim/methods.hpp"
#include "sketchsgd/optim/sketched_sgd.hpp"
#include "sketchsgd/optim/state/checkpoint.hpp"
#include "sketchsgd/optim/state/elastic.hpp"
#include "sketchsgd/optim/topk_sgd.hpp"
#include "sketchsgd/optim/update/schedule.hpp"
