// SPDX-License-Identifier: Apache-2.0
#pragma once

// Shared by the fuzz targets: a property check that aborts (so libFuzzer
// records the input as a crash), and the byte helpers every target needs.
// Each target defines LLVMFuzzerTestOneInput; built with
// -fsanitize=fuzzer by scripts/fuzz.sh, or linked with replay_main.cpp
// into a plain program that ctest runs over the seed corpus.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

namespace sketchsgd::fuzz {

/// Aborts with `what` unless `ok`: a broken property is a finding.
inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz property violated: %s\n", what);
    std::abort();
  }
}

/// The fuzzer's input as bytes.
inline std::span<const std::byte> bytes_of(const std::uint8_t* data, std::size_t size) {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the fuzzer hands raw bytes
  return {reinterpret_cast<const std::byte*>(data), size};
}

}  // namespace sketchsgd::fuzz

/// The entry point every target defines (libFuzzer's interface).
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
