// SPDX-License-Identifier: Apache-2.0
// The elastic in-process world (transport/inproc_elastic.hpp): the rules of
// the TCP rendezvous, with ranks as threads. A world forms, loses a member,
// re-forms renumbered and grows when a newcomer waits; min_workers,
// max_workers and a silent member are bounded waits; and `run_elastic`
// (optim/elastic_loop.hpp) trains Sketched-SGD and FetchSGD at W = 4, a
// thread dies mid-run, the three survivors resume with their error memories'
// sum kept, a newcomer brings the world back to 4, and every rank ends with
// the same parameters.

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../optim/registry_cases.hpp"
#include "conformance.hpp"
#include "sketchsgd/optim/elastic.hpp"
#include "sketchsgd/optim/elastic_loop.hpp"
#include "sketchsgd/sketchsgd.hpp"
#include "sketchsgd/transport/inproc_elastic.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;

namespace inproc_elastic_test {

inproc_elastic_options quick(int min_workers = 1, int max_workers = 64) {
  inproc_elastic_options o;
  o.min_workers = min_workers;
  o.max_workers = max_workers;
  o.join_timeout = 1500ms;
  o.settle = 50ms;
  o.transport.timeout = 1s;
  return o;
}

/// One allreduce over the generation: every rank adds its rank + 1.
std::int64_t sum_of_ranks(inproc_transport& t) {
  communicator comm(t);
  std::int64_t x = comm.rank() + 1;
  allreduce(comm, std::span<std::int64_t>(&x, 1));
  return x;
}

std::int64_t triangle(int n) { return static_cast<std::int64_t>(n) * (n + 1) / 2; }

}  // namespace inproc_elastic_test

TEST_CASE("elastic inproc: a world forms, loses a member, re-forms renumbered, and grows", "[inproc][elastic]") {
  using namespace inproc_elastic_test;
  inproc_elastic_world job(quick(1, 4));
  std::vector<std::unique_ptr<inproc_elastic_member>> members;
  for (int i = 0; i < 3; ++i) members.push_back(std::make_unique<inproc_elastic_member>(job));
  std::vector<int> first_rank(3);
  test::run_threads(3, [&](int i) {
    inproc_transport& t = members[static_cast<std::size_t>(i)]->join();
    first_rank[static_cast<std::size_t>(i)] = t.rank();
    CHECK(t.size() == 3);
    CHECK(sum_of_ranks(t) == triangle(3));
  });
  CHECK(job.generation() == std::pair<std::uint64_t, int>{1, 3});

  // The member holding rank 1 departs; the others' next collective fails and they re-form.
  const int leaver = static_cast<int>(std::find(first_rank.begin(), first_rank.end(), 1) - first_rank.begin());
  members[static_cast<std::size_t>(leaver)].reset();
  std::vector<int> second_rank(3, -1);
  test::run_threads(3, [&](int i) {
    if (i == leaver) return;
    auto& me = *members[static_cast<std::size_t>(i)];
    CHECK(me.reform_requested());
    CHECK_THROWS_AS(sum_of_ranks(*me.transport()), transport_error);
    inproc_transport& t = me.join();
    second_rank[static_cast<std::size_t>(i)] = t.rank();
    CHECK(t.size() == 2);
    CHECK(me.membership()->generation == 2);
    CHECK_FALSE(me.membership()->newcomer);
    CHECK(sum_of_ranks(t) == triangle(2));
  });
  for (int i = 0; i < 3; ++i) {  // survivors keep their order: old rank 0 stays 0, old rank 2 becomes 1
    if (i != leaver)
      CHECK(second_rank[static_cast<std::size_t>(i)] == (first_rank[static_cast<std::size_t>(i)] == 0 ? 0 : 1));
  }

  // A newcomer asks; the world learns it at a step boundary, agrees, and grows.
  members[static_cast<std::size_t>(leaver)] = std::make_unique<inproc_elastic_member>(job);
  test::run_threads(3, [&](int i) {
    auto& me = *members[static_cast<std::size_t>(i)];
    if (i != leaver) {
      communicator comm(*me.transport());
      int boundaries = 0;
      while (!reform_agreed(comm, me)) {
        REQUIRE(++boundaries < 500);
        std::this_thread::sleep_for(2ms);
      }
    }
    inproc_transport& t = me.join();
    CHECK(t.size() == 3);
    CHECK(me.membership()->generation == 3);
    CHECK(me.membership()->newcomer == (i == leaver));
    if (i == leaver) CHECK(t.rank() == 2);  // newcomers come after the survivors
    CHECK(sum_of_ranks(t) == triangle(3));
  });
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
    std::atomic<int> placed{0};
    std::atomic<int> timed_out{0};
    test::run_threads(3, [&](int i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20 * i));  // arrival order
      inproc_elastic_member me(job);
      try {
        inproc_transport& t = me.join();
        CHECK(t.size() == 2);
        ++placed;
        std::this_thread::sleep_for(2000ms);  // stay while the third waits
      } catch (const timeout_error&) {
        CHECK(i == 2);
        ++timed_out;
      }
    });
    CHECK(placed == 2);
    CHECK(timed_out == 1);
  }
  SECTION("a member that never asks is left out after join_timeout") {
    inproc_elastic_world job(quick(1, 4));
    std::vector<std::unique_ptr<inproc_elastic_member>> m;
    for (int i = 0; i < 3; ++i) m.push_back(std::make_unique<inproc_elastic_member>(job));
    test::run_threads(3, [&](int i) { (void)m[static_cast<std::size_t>(i)]->join(); });
    const auto start = std::chrono::steady_clock::now();
    test::run_threads(2, [&](int i) {  // members 0 and 1 re-form; member 2 stays silent (as if stopped)
      CHECK(m[static_cast<std::size_t>(i)]->join().size() == 2);
    });
    const auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= 1400ms);  // the join_timeout of 1.5 s
    CHECK(waited < 5s);
    CHECK_THROWS_WITH(m[2]->join(), Catch::Contains("left out of generation 2"));
  }
  SECTION("every member gone: a newcomer forms the next generation alone") {
    inproc_elastic_world job(quick(1, 4));
    {
      std::vector<std::unique_ptr<inproc_elastic_member>> m;
      for (int i = 0; i < 2; ++i) m.push_back(std::make_unique<inproc_elastic_member>(job));
      test::run_threads(2, [&](int i) { (void)m[static_cast<std::size_t>(i)]->join(); });
    }
    inproc_elastic_member late(job);
    const auto start = std::chrono::steady_clock::now();
    CHECK(late.join().size() == 1);
    CHECK(std::chrono::steady_clock::now() - start < 1s);  // no join_timeout waited out
    CHECK(late.membership()->generation == 2);
    CHECK(late.membership()->newcomer);
  }
  SECTION("options out of range are refused") {
    CHECK_THROWS_AS(inproc_elastic_world(quick(0, 4)), std::invalid_argument);
    CHECK_THROWS_AS(inproc_elastic_world(quick(3, 2)), std::invalid_argument);
  }
}

TEST_CASE("elastic inproc: a thread dies mid-run, training resumes at W = 3, a newcomer brings it back to 4",
          "[inproc][elastic]") {
  using namespace inproc_elastic_test;
  constexpr std::uint64_t d = 4000;
  constexpr std::int64_t total_steps = 40;
  struct thread_ends {};  // thrown by the step of the thread that dies
  for (const std::string_view method : {"sketched", "fetchsgd"}) {
    INFO(method);
    const method_options<float> o = test::memory_options(method, d);
    auto options = quick(3, 4);
    options.join_timeout = 10s;
    inproc_elastic_world job(options);
    std::mutex mutex;                                                 // guards what the threads report below
    std::map<std::uint64_t, std::vector<std::string>> before, after;  // by generation: the states given and got
    std::map<std::uint64_t, int> sizes;
    std::set<std::vector<float>> finals;
    std::vector<elastic_run_report> reports;
    std::vector<std::string> errors;
    std::atomic<bool> shrunk{false};
    using comm_t = communicator<inproc_transport>;
    const auto worker = [&](bool dies) {
      try {
        inproc_elastic_member me(job);
        std::vector<float> x(d, 0.0F);
        const auto make = [&](comm_t& comm) { return make_optimizer(comm, o); };
        const auto reset = [&](comm_t&, any_optimizer<float>& opt, const elastic_generation& g) {
          if (!g.resumed) return;
          std::ostringstream got;
          opt.save(got);
          const std::lock_guard lock(mutex);
          before[g.generation].push_back(g.brought != nullptr ? *g.brought : "");
          after[g.generation].push_back(got.str());
          sizes[g.generation] = g.size;
          if (g.size == 3) shrunk = true;
        };
        const auto step = [&](comm_t& comm, any_optimizer<float>& opt, std::int64_t s) {
          if (dies && s == 8) throw thread_ends{};  // its member departs, as a killed process's
          (void)opt.step(test::spiky_gradient(d, comm.rank(), static_cast<std::uint64_t>(s)));
          opt.last_update().apply(std::span<float>(x), 0.1F);
        };
        const elastic_run_report r = run_elastic(me, std::span<float>(x), total_steps, make, step, reset);
        const std::lock_guard lock(mutex);
        finals.insert(x);
        reports.push_back(r);
      } catch (const thread_ends&) {
      } catch (const std::exception& e) {
        const std::lock_guard lock(mutex);
        errors.emplace_back(e.what());
      }
    };
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) threads.emplace_back(worker, i == 1);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!shrunk && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
    REQUIRE(shrunk);
    threads.emplace_back(worker, false);  // the newcomer
    for (auto& t : threads) t.join();
    CHECK(errors.empty());
    for (const auto& e : errors) UNSCOPED_INFO(e);

    REQUIRE(finals.size() == 1);  // every rank that finished ends with the same parameters
    REQUIRE(reports.size() == 4);
    for (const auto& r : reports) {
      CHECK(r.steps == total_steps);
      CHECK(r.world == 4);
    }
    REQUIRE(before.size() == 2);  // two changes: 4 -> 3, 3 -> 4
    const auto shrink = before.begin()->first;
    const auto grow = std::next(before.begin())->first;
    CHECK(sizes[shrink] == 3);
    CHECK(sizes[grow] == 4);
    CHECK(std::count(before[grow].begin(), before[grow].end(), std::string()) == 1);  // the newcomer brought nothing
    for (const auto g : {shrink, grow}) {
      CAPTURE(g);
      if (method == "fetchsgd") {  // its sketches are global: every member takes a survivor's whole
        const auto given =
            std::find_if(before[g].begin(), before[g].end(), [](const std::string& b) { return !b.empty(); });
        for (const auto& a : after[g]) CHECK(test::sums_gap(test::memory_sums({*given}), test::memory_sums({a})) == 0);
      } else {  // no gradient mass lost: the survivors' memories re-divided
        CHECK(test::sums_gap(test::memory_sums(before[g]), test::memory_sums(after[g])) <= 1e-5);
      }
    }
  }
}

TEST_CASE("run_elastic refuses agree_every below 1", "[inproc][elastic]") {
  inproc_elastic_world job;
  inproc_elastic_member me(job);
  std::vector<float> x(4, 0.0F);
  const auto make = [](communicator<inproc_transport>& comm) {
    return make_optimizer(comm, test::memory_options("sketched", 4));
  };
  const auto step = [](auto&, auto&, std::int64_t) {};
  CHECK_THROWS_AS(run_elastic(me, std::span<float>(x), 1, make, step, no_elastic_reset{},
                              elastic_run_options{.agree_every = 0, .allreduce = {}, .log = {}}),
                  std::invalid_argument);
}
