// SPDX-License-Identifier: Apache-2.0
// The elastic in-process world (transport/inproc_elastic.hpp): the rules of
// the TCP rendezvous, with ranks as threads (here, so that the ThreadSanitizer
// run of test_conformance_threads covers it). A world forms, loses a member,
// re-forms renumbered and grows when a newcomer waits; min_workers,
// max_workers and a silent member are bounded waits; a newcomer after every
// member left forms a generation alone. run_elastic over it:
// tests/optim/test_elastic_loop.cpp.

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "conformance.hpp"
#include "elastic_scenarios.hpp"
#include "sketchsgd/collective/communicator.hpp"
#include "sketchsgd/transport/inproc_elastic.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;

namespace inproc_elastic_test {

inproc_elastic_options quick(int min_workers = 1, int max_workers = 64) {
  inproc_elastic_options o;
  o.min_workers = min_workers;
  o.max_workers = max_workers;
  o.join_timeout = 1500ms;
  o.settle = 200ms;  // above the 50 ms between arrivals in elastic_full_world_is_a_bounded_wait
  o.transport.timeout = 1s;
  return o;
}

/// Makes members of `job`.
auto members_of(inproc_elastic_world& job) {
  return [&job](const std::string&) { return std::make_unique<inproc_elastic_member>(job); };
}

}  // namespace inproc_elastic_test

TEST_CASE("elastic inproc: a world forms, loses a member, re-forms renumbered, and grows", "[inproc][elastic]") {
  using namespace inproc_elastic_test;
  inproc_elastic_world job(quick(1, 4));
  test::elastic_forms_loses_and_grows(members_of(job), [&] { return job.generation(); });
}

TEST_CASE("elastic inproc: too few workers, a full world and a silent member are bounded waits",
          "[inproc][elastic][failure]") {
  using namespace inproc_elastic_test;
  SECTION("fewer than min_workers: refused after join_timeout") {
    inproc_elastic_world job(quick(3, 4));
    test::run_threads(2, [&](int) {
      inproc_elastic_member me(job);
      const auto start = std::chrono::steady_clock::now();
      CHECK_THROWS_WITH(me.join(), Catch::Contains("min_workers is 3"));
      CHECK(std::chrono::steady_clock::now() - start < 5s);
    });
  }
  SECTION("more than max_workers: the last to arrive waits, then gives up") {
    inproc_elastic_world job(quick(1, 2));
    test::elastic_full_world_is_a_bounded_wait(members_of(job));
  }
  SECTION("a member that never asks is left out after join_timeout") {
    inproc_elastic_world job(quick(1, 4));
    test::elastic_silent_member_is_left_out(members_of(job));
  }
  SECTION("every member gone: a newcomer forms the next generation alone") {
    inproc_elastic_world job(quick(1, 4));
    test::elastic_newcomer_after_all_left(members_of(job));
  }
  SECTION("options out of range are refused") {
    CHECK_THROWS_AS(inproc_elastic_world(quick(0, 4)), std::invalid_argument);
    CHECK_THROWS_AS(inproc_elastic_world(quick(3, 2)), std::invalid_argument);
  }
}
