// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// `run_elastic`: the elastic training loop, as Horovod's `hvd.elastic.run`
/// runs a State. Over any `elastic_member` (`tcp_elastic_member`,
/// `inproc_elastic_member`) it joins each generation of the world, builds
/// the optimizer for it, resumes from the members' in-memory commits
/// (`resume_resized`: error memories re-divided, the rest taken whole), puts
/// the parameters back to the step resumed from and broadcasts them from
/// rank 0 (a survivor whenever there is one, so a newcomer gets them), calls
/// the reset callback, and steps, committing after every step, until the
/// world must re-form (a rank died: a `transport_error`; a worker waits to
/// join: `reform_agreed`) or the run is done.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sketchsgd/collective/allreduce.hpp"
#include "sketchsgd/collective/barrier.hpp"
#include "sketchsgd/collective/broadcast.hpp"
#include "sketchsgd/collective/communicator.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/optim/state/elastic.hpp"
#include "sketchsgd/transport/elastic.hpp"

namespace sketchsgd {

/// What `run_elastic`'s reset callback learns of the generation that starts.
struct elastic_generation {
  std::uint64_t generation = 0;          ///< its number (from 1)
  int rank = 0;                          ///< this rank in it
  int size = 0;                          ///< its world size
  bool newcomer = false;                 ///< this rank was not in the generation before
  std::int64_t step = 0;                 ///< the steps taken before it: those of the commit it resumed from
  std::optional<resize_report> resumed;  ///< how it resumed (none when no member held a commit)
  /// The commit this rank gave the re-division (null: none). It points into
  /// the member's own commits: valid during the reset callback only (copy
  /// what is needed beyond it).
  const std::string* brought = nullptr;
};

/// Settings of `run_elastic`.
struct elastic_run_options {
  /// Steps between two checks whether to re-form (one allreduce of a flag
  /// each): a waiting worker joins at most this many steps late.
  std::int64_t agree_every = 1;
  /// The allreduce options of every generation's communicator.
  allreduce_options allreduce{};
  /// Told why a generation ended early (the `transport_error`'s message,
  /// with the generation and the step); none when empty.
  std::function<void(const std::string&)> log;
};

/// How `run_elastic` ended.
struct elastic_run_report {
  std::int64_t steps = 0;         ///< steps taken: `total_steps`
  std::uint64_t generations = 0;  ///< generations this rank joined
  int world = 0;                  ///< the last generation's world size
};

/// A reset callback that does nothing.
struct no_elastic_reset {
  /// Does nothing.
  template <class... Args>
  void operator()(Args&&...) const noexcept {}
};

/// Trains elastically until `total_steps` steps are taken (see the file
/// comment). `parameters` are the model's, the same on every rank at the
/// start; `make_optimizer(comm)` builds the optimizer for a generation's
/// communicator (scale the learning rate with `comm.size()` there);
/// `on_reset(comm, opt, generation)` runs once a generation has resumed,
/// before its first step (re-shard the data there); `step(comm, opt, s)`
/// takes step `s`: computes this rank's gradient at `parameters`, steps
/// `opt` and applies its update to `parameters`. A step cut short by a
/// failure is taken again in the next generation, from the last commit
/// every survivor holds.
/// What is lost at a change of world size: a dead rank's error memory since
/// its last commit (docs/reliability.md, "Elastic").
/// @throws what `join()` throws (refused, timed out); any error other than
/// `transport_error` from the callbacks or the optimizer.
template <elastic_member Member, class MakeOptimizer, class Step, class OnReset = no_elastic_reset>
elastic_run_report run_elastic(Member& me, std::span<float> parameters, std::int64_t total_steps,
                               MakeOptimizer make_optimizer, Step step, OnReset on_reset = {},
                               elastic_run_options o = {}) {
  using Transport = std::remove_reference_t<decltype(me.join())>;
  if (o.agree_every < 1) throw std::invalid_argument("run_elastic: agree_every must be at least 1");
  elastic_commit commit;
  std::map<std::int64_t, std::vector<float>> parameters_at;  // at the last two commits
  elastic_run_report report;
  std::int64_t steps = 0;
  for (;;) {
    communicator<Transport> comm(me.join(), o.allreduce);
    ++report.generations;
    const auto& place = *me.membership();
    elastic_generation g;
    g.generation = place.generation;
    g.rank = comm.rank();
    g.size = comm.size();
    g.newcomer = place.newcomer;
    try {
      auto opt = make_optimizer(comm);
      std::int64_t committed = commit.empty() ? 0 : 1;
      allreduce(comm, std::span<std::int64_t>(&committed, 1));
      steps = 0;
      if (committed > 0) {
        g.resumed = resume_resized(comm, opt, commit);
        steps = g.resumed->steps;
        g.brought = commit.at(steps);
        if (const auto at = parameters_at.find(steps); at != parameters_at.end()) {
          std::copy(at->second.begin(), at->second.end(), parameters.begin());
        }
      }
      broadcast(comm, parameters, 0);  // rank 0 is a survivor whenever there is one
      g.step = steps;
      on_reset(comm, opt, std::as_const(g));
      while (steps < total_steps) {
        if (steps % o.agree_every == 0 && reform_agreed(comm, me)) break;
        step(comm, opt, steps);
        ++steps;
        commit.commit(opt);
        // The parameters at this commit, in the buffer of the one two steps
        // back, which no member resumes from any more: no allocation a step.
        auto node = parameters_at.extract(steps - 2);
        std::vector<float> kept = node.empty() ? std::vector<float>() : std::move(node.mapped());
        kept.assign(parameters.begin(), parameters.end());
        parameters_at.insert_or_assign(steps, std::move(kept));
      }
      if (steps < total_steps) continue;  // the world re-forms at this step boundary
      report.steps = steps;
      report.world = comm.size();
      try {
        barrier(comm);                    // nobody leaves while another may still expect its data
      } catch (const transport_error&) {  // a rank died after the last step: the run is done all the same
      }
      return report;
    } catch (const transport_error& e) {  // a rank died: the next generation
      if (o.log) {
        o.log("generation " + std::to_string(g.generation) + " failed at step " + std::to_string(steps) + ": " +
              e.what());
      }
    }
  }
}

}  // namespace sketchsgd
