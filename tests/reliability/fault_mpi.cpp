// SPDX-License-Identifier: Apache-2.0
// Fault injection over the MPI transport, one process per rank under
// mpiexec; fault_mpi.sh runs it and judges the outcome.
//   fault_mpi SCENARIO REPORT_DIR
// Scenarios:
//   kill  a long run; fault_mpi.sh SIGKILLs rank 1 (its pid is written to
//         REPORT_DIR/pid1) after a random delay. Open MPI's launcher then
//         ends the whole job: the survivors are killed, not told, so what is
//         testable is that the job ends (non-zero, promptly) and nobody
//         reports a finished run.
//   kill_self  rank 1 SIGKILLs itself before step 0, right after the
//         optimizers' configuration agreement: the same expectations.
//   slow  rank 0 sleeps 4 s before step 10 under a 1 s timeout: every other
//         rank must report timeout_error after about one timeout (MPI cannot
//         tell peers of a local timeout, so each times out on its own).
//   nan   rank 2 has a NaN at step 5 under throw_error: every rank reports
//         nonfinite_error at step 5 and the job ends cleanly.
// A rank that failed exits without MPI_Finalize (its peers may be stuck in a
// collective that will never finish); mpiexec then ends the job.

#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>

#include "fault_worker.hpp"
#include "sketchsgd/transport/mpi.hpp"

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  if (argc != 3) {
    std::fprintf(stderr, "usage: fault_mpi kill|kill_self|slow|nan REPORT_DIR\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const std::string scenario = argv[1];
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  sketchsgd::test::fault_plan plan;
  auto timeout = std::chrono::milliseconds(20'000);
  if (scenario == "kill") {
    plan.steps = 1'000'000;  // far longer than the test waits
    std::ofstream(std::string(argv[2]) + "/pid" + std::to_string(rank)) << ::getpid() << '\n';
  } else if (scenario == "kill_self") {
    plan.steps = 200;
    plan.suicide_rank = 1;
    plan.suicide_step = 0;
  } else if (scenario == "slow") {
    plan.steps = 30;
    plan.slow_rank = 0;
    plan.slow_step = 10;
    plan.slow_for = std::chrono::milliseconds(4000);
    timeout = std::chrono::milliseconds(1000);
  } else if (scenario == "nan") {
    plan.steps = 12;
    plan.nan_rank = 2;
    plan.nan_step = 5;
  } else {
    std::fprintf(stderr, "fault_mpi: unknown scenario '%s'\n", scenario.c_str());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  sketchsgd::test::fault_outcome outcome;
  {
    sketchsgd::mpi_transport t(MPI_COMM_WORLD, {.timeout = timeout});
    outcome = sketchsgd::test::train_with_faults(t, plan);
    sketchsgd::test::write_outcome(std::string(argv[2]) + "/rank" + std::to_string(rank), outcome);
    std::fprintf(stderr, "fault_mpi rank %d: %s at step %llu after %.3f s %s\n", rank, outcome.kind.c_str(),
                 static_cast<unsigned long long>(outcome.step), outcome.step_seconds, outcome.what.c_str());
    if (outcome.kind != "done" && outcome.kind != "nonfinite_error") std::_Exit(1);
  }
  MPI_Finalize();
  return 0;
}
