// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Library version. Bumped with every release; the wire format has its own
/// version (see serialize/wire.hpp) that changes only when bytes change.

/// Major version: incompatible API changes.
#define SKETCHSGD_VERSION_MAJOR 0
/// Minor version: compatible additions.
#define SKETCHSGD_VERSION_MINOR 1
/// Patch version: fixes.
#define SKETCHSGD_VERSION_PATCH 0

namespace sketchsgd {

/// The library version as `major * 10000 + minor * 100 + patch`.
inline constexpr int version =
    SKETCHSGD_VERSION_MAJOR * 10000 + SKETCHSGD_VERSION_MINOR * 100 + SKETCHSGD_VERSION_PATCH;

}  // namespace sketchsgd
