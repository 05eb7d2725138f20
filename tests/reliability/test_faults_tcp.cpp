// SPDX-License-Identifier: Apache-2.0
// Fault injection over the TCP transport with one process per rank (forked
// by this test, so that it can SIGKILL one and watch the others):
//  - a rank killed at a random moment of a Sketched-SGD run (start-up
//    included): every survivor raises transport_error or timeout_error within
//    its timeout, none hangs, none finishes;
//  - a rank that sleeps through a step for longer than the timeout: the
//    others raise timeout_error (or the transport_error it causes) after
//    about one timeout, nobody returns a result; a shorter sleep is harmless;
//  - a NaN in one rank's gradient: every rank throws nonfinite_error at the
//    same step, or with skip_step every rank skips it and ends bit-identical
//    to the same run over in-process threads.

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "fault_worker.hpp"
#include "sketchsgd/transport/tcp.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string job_secret = "reliability-secret";

struct rank_exit {
  bool killed_by_us = false;
  bool hung = false;
  int status = 0;
  double seconds_after_mark = 0;  // exit time after the kill (or the start)
  test::fault_outcome outcome;
};

/// One rank's process body: join the job, train, report, exit.
[[noreturn]] void tcp_rank(int rank, int world, std::uint16_t port, int port_pipe, const test::fault_plan& plan,
                           tcp_options options, const fs::path& report) {
  test::fault_outcome o;
  {
    options.log = [](const std::string&) {};
    if (rank == 0) {
      options.on_listen = [port_pipe](std::uint16_t p) {
        const ssize_t n = ::write(port_pipe, &p, sizeof p);
        (void)n;
      };
    }
    try {
      tcp_transport t({"127.0.0.1", port}, rank, world, job_secret, options);
      o = test::train_with_faults(t, plan);
    } catch (const timeout_error& e) {
      o.kind = "timeout_error";
      o.what = std::string("rendezvous: ") + e.what();
    } catch (const transport_error& e) {
      o.kind = "transport_error";
      o.what = std::string("rendezvous: ") + e.what();
    }
  }  // the transport is gone (goodbyes sent, sockets closed) before the report
  test::write_outcome(report.string(), o);
  std::_Exit(o.kind == "done" ? 0 : 1);
}

/// Runs a job of `world` processes; kills rank `victim` (if >= 0) after
/// `kill_after`; reaps everyone, SIGKILLing what is still alive at
/// `deadline` (marked hung).
std::vector<rank_exit> run_tcp_job(int world, const test::fault_plan& plan, const tcp_options& options, int victim,
                                   std::chrono::milliseconds kill_after, std::chrono::seconds deadline) {
  static int job_number = 0;
  const fs::path dir = fs::temp_directory_path() /
                       ("sketchsgd-faults-" + std::to_string(::getpid()) + "-" + std::to_string(job_number++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto report = [&](int r) { return dir / ("rank" + std::to_string(r)); };
  int port_pipe[2];
  REQUIRE(::pipe(port_pipe) == 0);
  std::vector<pid_t> pids(static_cast<std::size_t>(world), -1);
  pids[0] = ::fork();
  REQUIRE(pids[0] >= 0);
  if (pids[0] == 0) {
    ::close(port_pipe[0]);
    tcp_rank(0, world, 0, port_pipe[1], plan, options, report(0));
  }
  ::close(port_pipe[1]);
  pollfd pfd{port_pipe[0], POLLIN, 0};
  std::uint16_t port = 0;
  const bool got_port = ::poll(&pfd, 1, 20000) == 1 && ::read(port_pipe[0], &port, sizeof port) == sizeof port;
  ::close(port_pipe[0]);
  if (!got_port) ::kill(pids[0], SIGKILL);
  REQUIRE(got_port);
  for (int r = 1; r < world; ++r) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) tcp_rank(r, world, port, -1, plan, options, report(r));
    pids[static_cast<std::size_t>(r)] = pid;
  }
  auto mark = std::chrono::steady_clock::now();
  std::vector<rank_exit> exits(static_cast<std::size_t>(world));
  if (victim >= 0) {
    std::this_thread::sleep_for(kill_after);
    ::kill(pids[static_cast<std::size_t>(victim)], SIGKILL);
    exits[static_cast<std::size_t>(victim)].killed_by_us = true;
    mark = std::chrono::steady_clock::now();
  }
  const auto end = mark + deadline;
  std::vector<bool> reaped(static_cast<std::size_t>(world), false);
  for (int left = world; left > 0;) {
    for (int r = 0; r < world; ++r) {
      const auto i = static_cast<std::size_t>(r);
      if (reaped[i]) continue;
      int status = 0;
      if (::waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        reaped[i] = true;
        --left;
        exits[i].status = status;
        exits[i].seconds_after_mark = std::chrono::duration<double>(std::chrono::steady_clock::now() - mark).count();
      }
    }
    if (left > 0 && std::chrono::steady_clock::now() > end) {
      for (int r = 0; r < world; ++r) {
        const auto i = static_cast<std::size_t>(r);
        if (reaped[i]) continue;
        ::kill(pids[i], SIGKILL);
        ::waitpid(pids[i], nullptr, 0);
        reaped[i] = true;
        exits[i].hung = true;
        --left;
      }
    }
    std::this_thread::sleep_for(5ms);
  }
  for (int r = 0; r < world; ++r) exits[static_cast<std::size_t>(r)].outcome = test::read_outcome(report(r).string());
  fs::remove_all(dir);
  return exits;
}

tcp_options with_timeout(std::chrono::milliseconds timeout) {
  tcp_options o;
  o.timeout = timeout;
  o.connect_timeout = timeout;
  o.handshake_timeout = timeout;
  return o;
}

bool is_transport_failure(const std::string& kind) { return kind == "transport_error" || kind == "timeout_error"; }

}  // namespace

TEST_CASE("tcp processes: a rank SIGKILLed at a random moment fails every survivor within its timeout",
          "[reliability][faults][tcp]") {
  const auto timeout = 3s;
  splitmix64 rng(2024);
  double worst = 0;
  int trials = 0;
  int during_training = 0;
  for (const int world : {3, 4}) {
    for (int trial = 0; trial < 5; ++trial) {
      test::fault_plan plan;
      plan.steps = 1'000'000;  // never finishes on its own
      const int victim = static_cast<int>(rng.next_below(static_cast<std::uint64_t>(world)));
      // Even trials aim at the start-up (rendezvous, configuration
      // agreement), odd ones at the training loop.
      const auto delay = std::chrono::milliseconds(trial % 2 == 0 ? rng.next_below(15) : 100 + rng.next_below(1100));
      CAPTURE(world, trial, victim, delay.count());
      const auto exits = run_tcp_job(world, plan, with_timeout(timeout), victim, delay, 30s);
      ++trials;
      bool trained = false;
      for (int r = 0; r < world; ++r) {
        const auto& e = exits[static_cast<std::size_t>(r)];
        CAPTURE(r, e.outcome.kind, e.outcome.step, e.outcome.what, e.seconds_after_mark);
        if (r == victim) {
          CHECK(WIFSIGNALED(e.status));
          continue;
        }
        CHECK_FALSE(e.hung);
        CHECK(is_transport_failure(e.outcome.kind));
        // Within the timeout (plus the process's own teardown).
        CHECK(e.seconds_after_mark < std::chrono::duration<double>(timeout).count() + 1.0);
        worst = std::max(worst, e.seconds_after_mark);
        trained = trained || e.outcome.step > 0;
      }
      during_training += trained ? 1 : 0;
    }
  }
  WARN(trials << " kills (" << during_training << " mid-training, the rest during start-up); slowest survivor exit "
              << worst << " s after the kill (timeout " << timeout.count() << " s)");
  CHECK(during_training >= 2);  // the random moments do reach the training loop
}

TEST_CASE("tcp processes: a rank slower than the timeout gives timeout_error, not a result",
          "[reliability][faults][tcp]") {
  const auto timeout = 1000ms;
  test::fault_plan plan;
  plan.steps = 30;
  plan.slow_rank = 1;
  plan.slow_step = 10;
  SECTION("a sleep of 3 timeouts") {
    plan.slow_for = 3 * timeout;
    const auto exits = run_tcp_job(3, plan, with_timeout(timeout), -1, 0ms, 60s);
    int timeouts = 0;
    for (int r = 0; r < 3; ++r) {
      const auto& o = exits[static_cast<std::size_t>(r)].outcome;
      CAPTURE(r, o.kind, o.step, o.step_seconds, o.what);
      CHECK_FALSE(exits[static_cast<std::size_t>(r)].hung);
      CHECK(is_transport_failure(o.kind));
      CHECK(o.step == 10);  // nobody got past the slow step
      REQUIRE(o.digests.size() == 10);
      CHECK(o.digests == exits[0].outcome.digests);  // identical up to the failure
      if (r != plan.slow_rank) {
        timeouts += o.kind == "timeout_error" ? 1 : 0;
        CHECK(o.step_seconds >= 0.5);  // [timeout / 2, 2 timeout]
        CHECK(o.step_seconds <= 2.0);
      }
    }
    CHECK(timeouts >= 1);
  }
  SECTION("a sleep of a third of the timeout is harmless") {
    plan.slow_for = timeout / 3;
    const auto exits = run_tcp_job(3, plan, with_timeout(timeout), -1, 0ms, 60s);
    for (int r = 0; r < 3; ++r) {
      const auto& o = exits[static_cast<std::size_t>(r)].outcome;
      CAPTURE(r, o.kind, o.what);
      CHECK(o.kind == "done");
      CHECK(o.digests.size() == plan.steps);
      CHECK(o.digests == exits[0].outcome.digests);
    }
  }
}

TEST_CASE("tcp processes: a NaN on one rank gets the same policy on every rank", "[reliability][faults][tcp]") {
  constexpr int world = 3;
  test::fault_plan plan;
  plan.steps = 12;
  plan.nan_rank = 2;
  plan.nan_step = 5;
  SECTION("throw_error: every rank throws nonfinite_error at that step") {
    const auto exits = run_tcp_job(world, plan, with_timeout(20s), -1, 0ms, 60s);
    for (int r = 0; r < world; ++r) {
      const auto& o = exits[static_cast<std::size_t>(r)].outcome;
      CAPTURE(r, o.kind, o.what);
      CHECK(o.kind == "nonfinite_error");
      CHECK(o.step == plan.nan_step);
      CHECK(o.digests == exits[0].outcome.digests);
    }
  }
  SECTION("skip_step: every rank skips it and ends as the in-process run does") {
    plan.policy = nonfinite_policy::skip_step;
    std::vector<test::fault_outcome> inproc(world);
    {
      inproc_world w(world);
      test::run_threads(world, [&](int r) {
        auto t = w.transport(r);
        inproc[static_cast<std::size_t>(r)] = test::train_with_faults(t, plan);
      });
    }
    const auto exits = run_tcp_job(world, plan, with_timeout(20s), -1, 0ms, 60s);
    for (int r = 0; r < world; ++r) {
      const auto& o = exits[static_cast<std::size_t>(r)].outcome;
      CAPTURE(r, o.kind, o.what);
      CHECK(o.kind == "done");
      REQUIRE(o.digests.size() == plan.steps);
      CHECK(o.digests[plan.nan_step] == o.digests[plan.nan_step - 1]);  // the step changed nothing
      CHECK(o.digests == exits[0].outcome.digests);
      CHECK(o.digests == inproc[static_cast<std::size_t>(r)].digests);
    }
  }
}
