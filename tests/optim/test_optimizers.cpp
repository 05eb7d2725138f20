// SPDX-License-Identifier: Apache-2.0
// The distributed optimizers over in-process ranks (and the Tier-1
// archetype): exactness against true top-k, convergence to a planted
// optimum, bit-identical parameters on every rank, byte accounting against
// the formulas, checkpoints, configuration agreement and the NaN policy.

#include <catch2/catch.hpp>

#include <chrono>
#include <limits>
#include <sstream>
#include <vector>

#include "../transport/archetype.hpp"
#include "optim_harness.hpp"
#include "sketchsgd/sketchsgd.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;

namespace {

constexpr int world_size = 4;

using test::on_inproc;

/// The planted problem's run of one optimizer on every rank.
template <class Make>
std::vector<test::rank_record> run_all(const test::planted_problem& p, std::uint64_t steps, Make make) {
  std::vector<test::rank_record> records(world_size);
  on_inproc(world_size,
            [&](int r, auto& t) { records[static_cast<std::size_t>(r)] = test::run_rank(t, p, steps, make); });
  return records;
}

void expect_bit_identical_ranks(const std::vector<test::rank_record>& records) {
  for (std::size_t r = 1; r < records.size(); ++r) {
    REQUIRE(records[r].digests == records[0].digests);  // after every step
    REQUIRE(records[r].params == records[0].params);
  }
}

constexpr std::size_t planted_d = 100000;
constexpr std::size_t planted_k = 100;
constexpr float planted_lr = 0.3F;
constexpr float mom = 0.5F;
const sketch_config sketch_cfg{.rows = 5, .cols = 4000, .seed = 11};

template <class Transport>
auto make_dense() {
  return [](communicator<Transport>& c) {
    return dense_sgd<float, Transport>(c, {.dimension = planted_d, .learning_rate = planted_lr, .momentum = mom});
  };
}
template <class Transport>
auto make_true_topk() {
  return [](communicator<Transport>& c) {
    return true_topk_sgd<float, Transport>(
        c, {.dimension = planted_d, .k = planted_k, .learning_rate = planted_lr, .momentum = mom});
  };
}
template <class Transport>
auto make_local_topk() {
  return [](communicator<Transport>& c) {
    return local_topk_sgd<float, Transport>(
        c, {.dimension = planted_d, .k = planted_k, .learning_rate = planted_lr, .momentum = mom});
  };
}
template <class Transport>
auto make_gtopk() {
  return [](communicator<Transport>& c) {
    return gtopk_sgd<float, Transport>(
        c, {.dimension = planted_d, .k = planted_k, .learning_rate = planted_lr, .momentum = mom});
  };
}
template <class Transport>
auto make_sketched(topology topo) {
  return [topo](communicator<Transport>& c) {
    return sketched_sgd<float, Transport>(c, {.dimension = planted_d,
                                              .sketch = sketch_cfg,
                                              .k = planted_k,
                                              .candidates_factor = 3,
                                              .learning_rate = planted_lr,
                                              .momentum = mom,
                                              .topology = topo});
  };
}
template <class Transport>
auto make_global_sketch(std::size_t p) {
  return [p](communicator<Transport>& c) {
    return global_sketch_sgd<float, Transport>(c, {.dimension = planted_d,
                                                   .sketch = sketch_cfg,
                                                   .k = planted_k,
                                                   .candidates_factor = p,
                                                   .learning_rate = planted_lr,
                                                   .momentum = mom});
  };
}
template <class Transport>
auto make_fetch(topology topo) {
  return [topo](communicator<Transport>& c) {
    return fetch_sgd<float, Transport>(c, {.dimension = planted_d,
                                           .sketch = sketch_cfg,
                                           .k = planted_k,
                                           .learning_rate = planted_lr,
                                           .momentum = mom,
                                           .topology = topo});
  };
}

}  // namespace

TEST_CASE("with an exact sketch, Sketched-SGD makes exactly the updates of true top-k", "[optim]") {
  // Integer gradients and 2^18 columns for about 1000 live coordinates: every
  // estimate is exact (a coordinate is wrong only if 3 of its 5 rows collide),
  // so the P k candidates contain the true top k and the second round gives
  // their exact sums. Both pick ties by the lower index.
  constexpr std::size_t dim = 1000;
  constexpr std::uint64_t steps = 12;
  for (const topology topo : {topology::allreduce, topology::root}) {
    CAPTURE(static_cast<int>(topo));
    std::vector<std::vector<model_update<std::int64_t>>> sketched(world_size);
    std::vector<std::vector<model_update<std::int64_t>>> exact(world_size);
    on_inproc(world_size, [&](int r, auto& t) {
      communicator comm(t);
      using T = std::remove_cvref_t<decltype(t)>;
      sketched_sgd<std::int64_t, T> s(comm, {.dimension = dim,
                                             .sketch = {.rows = 5, .cols = 1 << 18, .seed = 3},
                                             .k = 25,
                                             .candidates_factor = 2,
                                             .learning_rate = 1,
                                             .momentum = 1,
                                             .topology = topo});
      true_topk_sgd<std::int64_t, T> e(comm, {.dimension = dim, .k = 25, .learning_rate = 1, .momentum = 1});
      for (std::uint64_t step = 0; step < steps; ++step) {
        const auto g = test::integer_vector<std::int64_t>(dim, 100, mix64(step * 16 + static_cast<std::uint64_t>(r)));
        sketched[static_cast<std::size_t>(r)].push_back(s.step(g));
        exact[static_cast<std::size_t>(r)].push_back(e.step(g));
      }
    });
    for (int r = 0; r < world_size; ++r) {
      for (std::uint64_t step = 0; step < steps; ++step) {
        CAPTURE(r, step);
        const auto& a = sketched[static_cast<std::size_t>(r)][step];
        REQUIRE(a.size() == 25);
        REQUIRE(a == exact[static_cast<std::size_t>(r)][step]);
        REQUIRE(a == sketched[0][step]);
      }
    }
  }
}

TEST_CASE("every optimizer reaches the planted optimum, bit-identical on every rank", "[optim]") {
  // Heterogeneous workers (gradients scaled by 1.3 and 0.7 in turn) whose
  // gradients vanish at x*, 50 planted coordinates among 100,000.
  const test::planted_problem problem(planted_d, 50, world_size, 0.0, 7);
  constexpr std::uint64_t steps = 150;
  using T = inproc_transport;
  const auto dense = run_all(problem, steps, make_dense<T>());
  const auto check = [&](const char* name, const std::vector<test::rank_record>& records, double max_error) {
    INFO(name << ": relative error " << problem.relative_error(records[0].params) << ", bytes " << records[0].bytes_sent
              << " vs dense " << dense[0].bytes_sent);
    CHECK(problem.relative_error(records[0].params) < max_error);
    expect_bit_identical_ranks(records);
  };
  check("dense", dense, 1e-4);
  const auto compressed = [&](const char* name, const std::vector<test::rank_record>& records) {
    check(name, records, 1e-4);
    CHECK(static_cast<double>(records[0].bytes_sent) < 0.25 * static_cast<double>(dense[0].bytes_sent));
  };
  check("true top-k", run_all(problem, steps, make_true_topk<T>()), 1e-4);
  compressed("local top-k", run_all(problem, steps, make_local_topk<T>()));
  compressed("gTop-k", run_all(problem, steps, make_gtopk<T>()));
  compressed("sketched, allreduce", run_all(problem, steps, make_sketched<T>(topology::allreduce)));
  compressed("sketched, root", run_all(problem, steps, make_sketched<T>(topology::root)));
  compressed("global sketch, P = 0", run_all(problem, steps, make_global_sketch<T>(0)));
  compressed("global sketch, P = 3", run_all(problem, steps, make_global_sketch<T>(3)));
  compressed("fetch, allreduce", run_all(problem, steps, make_fetch<T>(topology::allreduce)));
  compressed("fetch, root", run_all(problem, steps, make_fetch<T>(topology::root)));
}

TEST_CASE("the sketching methods cancel zero-sum worker noise that local top-k cannot", "[optim]") {
  // Each worker's gradient also carries noise (std 0.003 per coordinate)
  // that sums to zero over the workers. Aggregating before selecting (the
  // sketches, true top-k) sees only the exact sum; local top-k selects each
  // worker's own noise. Recorded, not asserted, for local top-k.
  const test::planted_problem problem(planted_d, 50, world_size, 0.003, 9);
  constexpr std::uint64_t steps = 200;
  using T = inproc_transport;
  const auto error = [&](auto make) { return problem.relative_error(run_all(problem, steps, make)[0].params); };
  CHECK(error(make_true_topk<T>()) < 1e-4);
  CHECK(error(make_sketched<T>(topology::allreduce)) < 1e-4);
  CHECK(error(make_sketched<T>(topology::root)) < 1e-4);
  CHECK(error(make_fetch<T>(topology::allreduce)) < 1e-3);
  CHECK(error(make_global_sketch<T>(0)) < 1e-2);
  WARN("local top-k under zero-sum noise: relative error " << error(make_local_topk<T>()));
}

TEST_CASE("every optimizer runs over the Tier-1 archetype with the same results as inproc", "[optim]") {
  const test::planted_problem problem(20000, 20, world_size, 0.0, 5);
  constexpr std::uint64_t steps = 5;
  const auto both = [&](auto make_inproc, auto make_archetype) {
    const auto a = run_all(problem, steps, make_inproc);
    std::vector<test::rank_record> b(world_size);
    inproc_world world(world_size);
    test::run_threads(world_size, [&](int r) {
      test::archetype_transport t(world.transport(r));
      b[static_cast<std::size_t>(r)] = test::run_rank(t, problem, steps, make_archetype);
    });
    // Ring vs native: inproc has no native collectives, so the bits agree.
    for (int r = 0; r < world_size; ++r)
      REQUIRE(a[static_cast<std::size_t>(r)].params == b[static_cast<std::size_t>(r)].params);
  };
  using A = test::archetype_transport;
  using T = inproc_transport;
  const auto small = [](auto make) { return make; };
  both(small([](communicator<T>& c) {
         return dense_sgd<float, T>(c, {.dimension = 20000, .learning_rate = planted_lr});
       }),
       [](communicator<A>& c) { return dense_sgd<float, A>(c, {.dimension = 20000, .learning_rate = planted_lr}); });
  both(
      [](communicator<T>& c) {
        return true_topk_sgd<float, T>(c, {.dimension = 20000, .k = 30, .learning_rate = planted_lr});
      },
      [](communicator<A>& c) {
        return true_topk_sgd<float, A>(c, {.dimension = 20000, .k = 30, .learning_rate = planted_lr});
      });
  both(
      [](communicator<T>& c) {
        return local_topk_sgd<float, T>(c, {.dimension = 20000, .k = 30, .learning_rate = planted_lr});
      },
      [](communicator<A>& c) {
        return local_topk_sgd<float, A>(c, {.dimension = 20000, .k = 30, .learning_rate = planted_lr});
      });
  const sketch_config sc{.rows = 5, .cols = 500, .seed = 2};
  for (const topology topo : {topology::allreduce, topology::root}) {
    both(
        [&](communicator<T>& c) {
          return sketched_sgd<float, T>(
              c, {.dimension = 20000, .sketch = sc, .k = 30, .learning_rate = planted_lr, .topology = topo});
        },
        [&](communicator<A>& c) {
          return sketched_sgd<float, A>(
              c, {.dimension = 20000, .sketch = sc, .k = 30, .learning_rate = planted_lr, .topology = topo});
        });
    both(
        [&](communicator<T>& c) {
          return fetch_sgd<float, T>(
              c, {.dimension = 20000, .sketch = sc, .k = 30, .learning_rate = planted_lr, .topology = topo});
        },
        [&](communicator<A>& c) {
          return fetch_sgd<float, A>(
              c, {.dimension = 20000, .sketch = sc, .k = 30, .learning_rate = planted_lr, .topology = topo});
        });
  }
  both([&](communicator<T>& c) { return global_sketch_sgd<float, T>(c, {.dimension = 20000, .sketch = sc, .k = 30}); },
       [&](communicator<A>& c) { return global_sketch_sgd<float, A>(c, {.dimension = 20000, .sketch = sc, .k = 30}); });
}

TEST_CASE("gTop-k equals true top-k when every worker has the same gradient, for any W", "[optim]") {
  // Identical local selections merge into their exact sums, so the global top
  // k is the true top k of the summed v (ties to the lower index both ways).
  constexpr std::size_t dim = 3000;
  for (const int w : {1, 2, 3, 5, 7}) {
    CAPTURE(w);
    std::vector<std::vector<model_update<std::int64_t>>> g_updates(static_cast<std::size_t>(w));
    std::vector<std::vector<model_update<std::int64_t>>> t_updates(static_cast<std::size_t>(w));
    on_inproc(w, [&](int r, auto& t) {
      communicator comm(t);
      using Tr = std::remove_cvref_t<decltype(t)>;
      gtopk_sgd<std::int64_t, Tr> g(comm, {.dimension = dim, .k = 40, .learning_rate = 1, .momentum = 1});
      true_topk_sgd<std::int64_t, Tr> e(comm, {.dimension = dim, .k = 40, .learning_rate = 1, .momentum = 1});
      for (std::uint64_t step = 0; step < 6; ++step) {
        const auto grad = test::integer_vector<std::int64_t>(dim, 1000, mix64(step + 99));
        g_updates[static_cast<std::size_t>(r)].push_back(g.step(grad));
        t_updates[static_cast<std::size_t>(r)].push_back(e.step(grad));
      }
    });
    for (int r = 0; r < w; ++r) {
      for (std::size_t s = 0; s < 6; ++s) {
        REQUIRE(g_updates[static_cast<std::size_t>(r)][s] == t_updates[static_cast<std::size_t>(r)][s]);
      }
    }
  }
}

TEST_CASE("dense SGD on a 16-bit wire: the float32 step rounded per hop, at half the bytes", "[optim]") {
  constexpr int w = 3;
  constexpr std::size_t d = 5000;
  for (const wire_format wire : {wire_format::bfloat16, wire_format::float16}) {
    CAPTURE(static_cast<int>(wire));
    std::vector<std::vector<float>> updates(w);
    std::vector<std::uint64_t> sent(w);
    std::vector<std::uint64_t> sent_float32(w);
    test::on_inproc(w, [&](int r, auto& t) {
      communicator comm(t);
      using T = std::remove_reference_t<decltype(t)>;
      const auto unchecked = nonfinite_policy::unchecked;  // only the gradient's round travels
      dense_sgd<float, T> half(comm, {.dimension = d, .learning_rate = 1.0F, .nonfinite = unchecked, .wire = wire});
      dense_sgd<float, T> full(comm, {.dimension = d, .learning_rate = 1.0F, .nonfinite = unchecked});
      // Small integers: every partial sum is exact in both formats.
      std::vector<float> g(d);
      for (std::size_t i = 0; i < d; ++i) g[i] = static_cast<float>(r + static_cast<int>(i % 5));
      std::vector<float> x(d, 0.0F);
      half.step(g).apply(x);
      updates[static_cast<std::size_t>(r)] = x;
      sent[static_cast<std::size_t>(r)] = half.stats().last_step.bytes_sent;
      (void)full.step(g);
      sent_float32[static_cast<std::size_t>(r)] = full.stats().last_step.bytes_sent;
      CHECK(half.fingerprint() != full.fingerprint());  // ranks on other wires refuse each other
    });
    for (int r = 0; r < w; ++r) {
      const auto& x = updates[static_cast<std::size_t>(r)];
      for (std::size_t i = 0; i < d; ++i) REQUIRE(x[i] == -static_cast<float>(3 + 3 * static_cast<int>(i % 5)));
      // The same ring chunks, 2 bytes a value instead of 4.
      CHECK(2 * sent[static_cast<std::size_t>(r)] == sent_float32[static_cast<std::size_t>(r)]);
    }
  }
}

TEST_CASE("gTop-k with the momentum after aggregation, as its authors ran it: a case worked by hand", "[optim]") {
  // W = 2, d = 4, k = 1, m = 1/2, eta = 1; every step rank 0's gradient is
  // (4, 0, 3, 0) and rank 1's (4, 0, 0, 3). Error feedback on the raw
  // gradient, v <- v + g; each rank selects its top 1; the tree sums common
  // indices and keeps the top 1 (ties to the lower index); a rank resets v
  // where its own selection made the final; then M <- m M + Delta, update M.
  //   step 0: v0 = (4,0,3,0), v1 = (4,0,0,3); both pick 0: Delta = {0: 8};
  //           v0 = (0,0,3,0), v1 = (0,0,0,3); M = (8,0,0,0)
  //   step 1: v0 = (4,0,6,0), v1 = (4,0,0,6); picks 2 and 3, tie: Delta = {2: 6};
  //           v0 = (4,0,0,0), v1 keeps (4,0,0,6); M = (4,0,6,0)
  //   step 2: v0 = (8,0,3,0), v1 = (8,0,0,9); picks 0 and 3: Delta = {3: 9};
  //           M = (2,0,3,9)
  // With the default placement (momentum before selection, masked) step 1
  // selects from v0 = (4,0,7.5,0) and v1 = (4,0,0,7.5): Delta = {2: 7.5}.
  const std::vector<std::vector<float>> want{{8, 0, 0, 0}, {4, 0, 6, 0}, {2, 0, 3, 9}};
  for (const bool after : {true, false}) {
    CAPTURE(after);
    std::vector<std::vector<model_update<float>>> got(2);
    on_inproc(2, [&](int r, auto& t) {
      communicator comm(t);
      using Tr = std::remove_cvref_t<decltype(t)>;
      gtopk_sgd<float, Tr> opt(
          comm, {.dimension = 4, .k = 1, .learning_rate = 1, .momentum = 0.5F, .momentum_after_aggregation = after});
      const std::vector<float> g = r == 0 ? std::vector<float>{4, 0, 3, 0} : std::vector<float>{4, 0, 0, 3};
      for (std::size_t s = 0; s < want.size(); ++s) got[static_cast<std::size_t>(r)].push_back(opt.step(g));
    });
    for (std::size_t r = 0; r < 2; ++r) {
      CAPTURE(r);
      for (std::size_t s = 0; s < want.size(); ++s) {
        CAPTURE(s);
        const auto& u = got[r][s];
        if (after) {
          CHECK(u.dense);  // M, on every coordinate
          CHECK(u.values == want[s]);
        } else if (s == 1) {
          CHECK(!u.dense);
          CHECK(u.indices == std::vector<std::uint64_t>{2});
          CHECK(u.values == std::vector<float>{7.5F});
        }
      }
    }
  }
}
