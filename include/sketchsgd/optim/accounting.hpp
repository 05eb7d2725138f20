// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Moved to `sketchsgd/optim/step/accounting.hpp` (optim/ is laid out by role); this
/// path stays so that code written against it compiles unchanged.

#include "sketchsgd/optim/step/accounting.hpp"
