// SPDX-License-Identifier: Apache-2.0
#pragma once

// One small optimizer of every kind on a one-rank in-process world, shared by
// the optimizer-state fuzz target (which loads into them) and the corpus
// generator (which saves them): a seed and the optimizer it was written by
// must agree on the configuration fingerprint.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sketchsgd/hash/seed_mixer.hpp"
#include "sketchsgd/sketchsgd.hpp"

namespace sketchsgd::fuzz {

/// The optimizers, each after two steps so that its state is not all zero.
struct optimizer_zoo {
  static constexpr std::uint64_t d = 64;
  inproc_world world{1};
  inproc_transport transport = world.transport(0);
  communicator<inproc_transport> comm{transport};
  sketched_sgd<float, inproc_transport> sketched;
  global_sketch_sgd<float, inproc_transport, poly4_hash> global;
  fetch_sgd<float, inproc_transport> fetch;
  dense_sgd<double, inproc_transport> dense;
  true_topk_sgd<float, inproc_transport> true_topk;
  local_topk_sgd<float, inproc_transport> local_topk;

  // Options built in functions: g++ 12 crashes on these aggregates as
  // default member initializers.
  static sketched_sgd_options<float> sketched_options() {
    sketched_sgd_options<float> o;
    o.dimension = d;
    o.sketch = {.rows = 2, .cols = 16, .seed = 7};
    o.k = 4;
    o.candidates_factor = 2;
    o.learning_rate = 0.5F;
    o.momentum = 0.9F;
    o.dense = {{.offset = 60, .length = 4}};
    return o;
  }
  static sketched_sgd_options<float> global_options() {
    sketched_sgd_options<float> o;
    o.dimension = d;
    o.sketch = {.rows = 3, .cols = 8, .seed = 8};
    o.k = 3;
    o.momentum = 0.5F;
    return o;
  }
  static fetch_sgd_options<float> fetch_options() {
    fetch_sgd_options<float> o;
    o.dimension = d;
    o.sketch = {.rows = 2, .cols = 12, .seed = 9};
    o.k = 4;
    o.momentum = 0.9F;
    o.dense = {{.offset = 0, .length = 2}};
    return o;
  }
  static topk_sgd_options<float> topk_options() {
    topk_sgd_options<float> o;
    o.dimension = d;
    o.k = 5;
    o.momentum = 0.9F;
    return o;
  }

  optimizer_zoo()
      : sketched(comm, sketched_options()),
        global(comm, global_options()),
        fetch(comm, fetch_options()),
        dense(comm, {.dimension = d, .momentum = 0.9}),
        true_topk(comm, topk_options()),
        local_topk(comm, topk_options()) {
    for (std::uint64_t step = 0; step < 2; ++step) {
      std::vector<float> g(d);
      std::vector<double> gd(d);
      splitmix64 rng(step + 1);
      for (std::size_t i = 0; i < g.size(); ++i) {
        gd[i] = static_cast<double>(static_cast<std::int64_t>(rng.next() >> 40U) - (std::int64_t{1} << 23)) / 1e6;
        g[i] = static_cast<float>(gd[i]);
      }
      (void)sketched.step(g);
      (void)global.step(g);
      (void)fetch.step(g);
      (void)dense.step(gd);
      (void)true_topk.step(g);
      (void)local_topk.step(g);
    }
  }

  /// Calls `f(name, optimizer)` for each optimizer.
  template <class F>
  void for_each(F f) {
    f("sketched_sgd", sketched);
    f("global_sketch_sgd", global);
    f("fetch_sgd", fetch);
    f("dense_sgd", dense);
    f("true_topk_sgd", true_topk);
    f("local_topk_sgd", local_topk);
  }
};

}  // namespace sketchsgd::fuzz
