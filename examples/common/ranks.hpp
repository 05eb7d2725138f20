// SPDX-License-Identifier: Apache-2.0
#pragma once

// In-process worlds for the example trainers and the benchmark programs: one
// thread per rank, as the library's in-process transport expects.

#include <chrono>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

#include "sketchsgd/transport/inproc.hpp"

namespace cli {

/// Runs `body(rank, transport)` on one thread per rank of an in-process
/// world of `size` ranks whose receives wait at most `timeout`. Returns when
/// every rank has finished; then rethrows the error of the lowest rank that
/// threw (a rank that fails makes its peers time out or fail, not hang).
template <class Body>
void run_inproc(int size, std::chrono::milliseconds timeout, Body body) {
  sketchsgd::inproc_world world(size, {.timeout = timeout});
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(size));
  {
    std::vector<std::jthread> ranks;
    for (int r = 0; r < size; ++r) {
      ranks.emplace_back([&, r] {
        try {
          auto t = world.transport(r);
          body(r, t);
        } catch (...) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
        }
      });
    }
  }
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace cli
