// SPDX-License-Identifier: Apache-2.0
#pragma once

// The rank body the fault-injection tests run, as a process over TCP (forked
// by test_faults_tcp.cpp) or MPI (fault_mpi.cpp): Sketched-SGD on a planted
// problem with an optional fault — a NaN in one rank's gradient, one rank
// sleeping through a step, one rank killing itself — and a one-line report of
// how it ended, written to a file the harness reads after the rank exited.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "optim/optim_harness.hpp"
#include "sketchsgd/sketchsgd.hpp"

namespace sketchsgd::test {

/// What goes wrong, where.
struct fault_plan {
  std::uint64_t steps = 50;                                 ///< steps of a run that completes
  nonfinite_policy policy = nonfinite_policy::throw_error;  ///< the optimizers' NaN policy
  int nan_rank = -1;                                        ///< this rank's gradient gets a NaN ...
  std::uint64_t nan_step = 0;                               ///< ... at this step
  int slow_rank = -1;                                       ///< this rank sleeps ...
  std::uint64_t slow_step = 0;                              ///< ... before this step ...
  std::chrono::milliseconds slow_for{0};                    ///< ... this long
  int suicide_rank = -1;                                    ///< this rank SIGKILLs itself ...
  std::uint64_t suicide_step = 0;                           ///< ... before this step
  std::uint64_t d = 20000;                                  ///< parameters
};

/// How a rank's run ended.
struct fault_outcome {
  std::string kind = "none";           ///< done, transport_error, timeout_error, nonfinite_error, other
  std::uint64_t step = 0;              ///< the step that threw (steps taken when done)
  double step_seconds = 0;             ///< how long the step that threw ran before it threw
  std::vector<std::uint64_t> digests;  ///< parameters after every completed step
  std::string what;                    ///< the exception's message
};

inline sketched_sgd_options<float> fault_options(const fault_plan& plan) {
  sketched_sgd_options<float> o;
  o.dimension = plan.d;
  o.sketch = {.rows = 3, .cols = plan.d / 20, .seed = 21};
  o.k = plan.d / 200;
  o.candidates_factor = 2;
  o.learning_rate = 0.5F;
  o.momentum = 0.9F;
  o.average = true;
  o.nonfinite = plan.policy;
  return o;
}

/// Runs the plan on this rank; never throws.
template <class Transport>
fault_outcome train_with_faults(Transport& t, const fault_plan& plan) {
  fault_outcome out;
  auto step_start = std::chrono::steady_clock::now();
  const auto failed = [&](const char* kind, const std::exception& e) {
    out.kind = kind;
    out.what = e.what();
    out.step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
  };
  try {
    const planted_problem problem(plan.d, 50, t.size(), 0.0, 31);
    communicator comm(t);
    sketched_sgd<float, Transport> opt(comm, fault_options(plan));
    std::vector<float> params(plan.d, 0.0F);
    std::vector<float> g(plan.d);
    for (std::uint64_t s = 0; s < plan.steps; ++s) {
      out.step = s;
      step_start = std::chrono::steady_clock::now();
      problem.gradient(t.rank(), s, params, g);
      if (t.rank() == plan.nan_rank && s == plan.nan_step) g[7] = std::numeric_limits<float>::quiet_NaN();
      if (t.rank() == plan.slow_rank && s == plan.slow_step) std::this_thread::sleep_for(plan.slow_for);
      if (t.rank() == plan.suicide_rank && s == plan.suicide_step) ::raise(SIGKILL);
      opt.step(g).apply(std::span<float>(params));
      out.digests.push_back(digest_of(params));
    }
    out.kind = "done";
    out.step = plan.steps;
  } catch (const timeout_error& e) {  // before transport_error: it is one
    failed("timeout_error", e);
  } catch (const transport_error& e) {
    failed("transport_error", e);
  } catch (const nonfinite_error& e) {
    failed("nonfinite_error", e);
  } catch (const std::exception& e) {
    failed("other", e);
  }
  return out;
}

/// Writes `o` as three lines: kind and step; digests; message.
inline void write_outcome(const std::string& path, const fault_outcome& o) {
  std::ofstream f(path + ".tmp");
  f << o.kind << ' ' << o.step << ' ' << o.step_seconds << '\n';
  for (const auto d : o.digests) f << d << ' ';
  f << '\n' << o.what << '\n';
  f.close();
  std::rename((path + ".tmp").c_str(), path.c_str());
}

/// Reads what `write_outcome` wrote; kind "missing" when there is no file.
inline fault_outcome read_outcome(const std::string& path) {
  fault_outcome o;
  std::ifstream f(path);
  if (!f) {
    o.kind = "missing";
    return o;
  }
  std::string line;
  std::getline(f, line);
  std::istringstream(line) >> o.kind >> o.step >> o.step_seconds;
  std::getline(f, line);
  std::istringstream digests(line);
  for (std::uint64_t d = 0; digests >> d;) o.digests.push_back(d);
  std::getline(f, o.what);
  return o;
}

}  // namespace sketchsgd::test
