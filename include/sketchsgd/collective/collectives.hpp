// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Every collective: allreduce, reduce, broadcast, allgather, allgatherv,
/// barrier, written once over the Tier-1 transport concept.

#include "sketchsgd/collective/allgather.hpp"
#include "sketchsgd/collective/allreduce.hpp"
#include "sketchsgd/collective/barrier.hpp"
#include "sketchsgd/collective/broadcast.hpp"
#include "sketchsgd/collective/communicator.hpp"
