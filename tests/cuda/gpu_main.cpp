// SPDX-License-Identifier: Apache-2.0
// Catch2 main of the GPU tests: without a usable GPU every test exits with
// the skip code instead of failing. Listing (ctest's test discovery at build
// time) needs no GPU.

#include <cstdio>
#include <string_view>

#include "../catch_runner.hpp"
#include "gpu_probe.hpp"

int main(int argc, char* argv[]) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);  // NOLINT(cppcoreguidelines-pro-bounds-pointer-arithmetic)
    listing = listing || arg.starts_with("--list") || arg == "-l" || arg == "-t" || arg == "-h" || arg == "--help";
  }
  if (!listing) {
    const std::string reason = sketchsgd::test::cuda_unavailable_reason();
    if (!reason.empty()) {
      std::printf("SKIPPED: no usable GPU (%s)\n", reason.c_str());
      return sketchsgd::test::skip_return_code;
    }
  }
  return sketchsgd::test::run_catch_session(argc, argv);
}
