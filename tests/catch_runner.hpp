// SPDX-License-Identifier: Apache-2.0
#pragma once

// For the test programs with a main of their own (MPI, TCP processes, the GPU
// tests' skip logic): Catch2's session, whose implementation is compiled once
// in tests/catch_runner.cpp (the library sketchsgd_catch_runner) instead of
// in every such program through CATCH_CONFIG_RUNNER.

namespace sketchsgd::test {

/// `Catch::Session().run(argc, argv)`: runs the test cases the command line
/// selects and returns the number of failures.
int run_catch_session(int argc, char* argv[]);

}  // namespace sketchsgd::test
