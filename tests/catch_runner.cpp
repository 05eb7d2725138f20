// SPDX-License-Identifier: Apache-2.0
// Catch2's implementation without a main, compiled once into the static
// library sketchsgd_catch_runner (tests/CMakeLists.txt) for the test programs
// that bring their own main (catch_runner.hpp). Defining CATCH_CONFIG_RUNNER
// in each of them compiled all of Catch2 again per program: about 27
// CPU-seconds each at -O3.

#define CATCH_CONFIG_RUNNER
#include "catch_runner.hpp"

#include <catch2/catch.hpp>

namespace sketchsgd::test {

int run_catch_session(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }

}  // namespace sketchsgd::test
