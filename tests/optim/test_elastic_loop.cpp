// SPDX-License-Identifier: Apache-2.0
// run_elastic (optim/elastic_loop.hpp) over an elastic in-process world:
// Sketched-SGD and FetchSGD at W = 4, a thread dies mid-run, the three
// survivors resume with their error memories' sum kept (FetchSGD: its
// global sketches whole on every member), a newcomer brings the world back
// to 4, and every rank ends with the same parameters.

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

#include "registry_cases.hpp"
#include "sketchsgd/optim/elastic_loop.hpp"
#include "sketchsgd/sketchsgd.hpp"
#include "sketchsgd/transport/inproc_elastic.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;

TEST_CASE("elastic inproc: a thread dies mid-run, training resumes at W = 3, a newcomer brings it back to 4",
          "[inproc][elastic]") {
  constexpr std::uint64_t d = 4000;
  constexpr std::int64_t total_steps = 40;
  struct thread_ends {};  // thrown by the step of the thread that dies
  for (const std::string_view method : {"sketched", "fetchsgd"}) {
    INFO(method);
    const method_options<float> o = test::memory_options(method, d);
    inproc_elastic_options options;
    options.min_workers = 3;
    options.max_workers = 4;
    options.join_timeout = 10s;
    options.transport.timeout = 1s;
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
