// SPDX-License-Identifier: Apache-2.0
// The optimizers' contract: bytes per step against the formulas of
// docs/algorithms.md, checkpoints that continue bit-identically, configuration
// agreement across ranks, the NaN/Inf policy applied on every rank, bad
// arguments refused before any I/O, and the same bits over TCP as in-process
// (the row overlap: test_overlap.cpp).

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "optim_harness.hpp"
#include "sketchsgd/sketchsgd.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;

namespace {

constexpr int W = 4;
using T = inproc_transport;

using test::on_inproc;

/// Bytes one rank sends in our allreduce of `bytes` bytes over a power-of-two
/// world: recursive doubling up to 8 KiB, else the ring (sizes divisible by W).
std::uint64_t allreduce_sent(std::uint64_t bytes, int w) {
  if (bytes <= (8U << 10U)) return static_cast<std::uint64_t>(std::log2(w)) * bytes;
  return 2 * static_cast<std::uint64_t>(w - 1) * bytes / static_cast<std::uint64_t>(w);
}

/// One step's (sent, received) bytes on every rank.
template <class Make>
std::vector<std::pair<std::uint64_t, std::uint64_t>> step_bytes(std::size_t dim, Make make) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out(W);
  on_inproc(W, [&](int r, auto& t) {
    communicator comm(t);
    auto opt = make(comm);
    const auto g = test::normal_vector<float>(dim, static_cast<std::uint64_t>(r) + 1);
    (void)opt.step(g);
    (void)opt.step(g);
    out[static_cast<std::size_t>(r)] = {opt.stats().last_step.bytes_sent, opt.stats().last_step.bytes_received};
  });
  return out;
}

constexpr std::size_t dim = 40000;
constexpr std::uint64_t r_ = 5;
constexpr std::uint64_t c_ = 4000;
constexpr std::size_t k_ = 400;
constexpr std::size_t p_ = 2;
const sketch_config cfg{.rows = r_, .cols = c_, .seed = 9};
constexpr auto unchecked = nonfinite_policy::unchecked;

}  // namespace

TEST_CASE("bytes per step match the formulas", "[optim][bytes]") {
  const std::uint64_t rc4 = 4 * r_ * c_;
  const std::uint64_t pk4 = 4 * p_ * k_;
  SECTION("dense and true top-k: a ring allreduce of d values") {
    const auto dense =
        step_bytes(dim, [](auto& c) { return dense_sgd<float, T>(c, {.dimension = dim, .nonfinite = unchecked}); });
    const auto topk = step_bytes(
        dim, [](auto& c) { return true_topk_sgd<float, T>(c, {.dimension = dim, .k = k_, .nonfinite = unchecked}); });
    for (int r = 0; r < W; ++r) {
      CHECK(dense[static_cast<std::size_t>(r)].first == allreduce_sent(4 * dim, W));
      CHECK(topk[static_cast<std::size_t>(r)].first == allreduce_sent(4 * dim, W));
    }
  }
  SECTION("Sketched-SGD, root topology: up 4rc + 4Pk, down 4Pk + 8k per worker") {
    const auto b = step_bytes(dim, [&](auto& c) {
      return sketched_sgd<float, T>(c, {.dimension = dim,
                                        .sketch = cfg,
                                        .k = k_,
                                        .candidates_factor = p_,
                                        .topology = topology::root,
                                        .root = 0,
                                        .nonfinite = unchecked});
    });
    for (int r = 1; r < W; ++r) {
      CHECK(b[static_cast<std::size_t>(r)].first == rc4 + pk4);
      CHECK(b[static_cast<std::size_t>(r)].second == pk4 + 8 * k_);
    }
    CHECK(b[0].first == (W - 1) * (pk4 + 8 * k_));  // the root sends the downlink to each worker
    CHECK(b[0].second == (W - 1) * (rc4 + pk4));
  }
  SECTION("Sketched-SGD, allreduce topology: allreduce of the table and of P k values") {
    const auto b = step_bytes(dim, [&](auto& c) {
      return sketched_sgd<float, T>(
          c, {.dimension = dim, .sketch = cfg, .k = k_, .candidates_factor = p_, .nonfinite = unchecked});
    });
    for (const auto& [sent, received] : b) {
      CHECK(sent == allreduce_sent(rc4, W) + allreduce_sent(pk4, W));
      CHECK(received == sent);
    }
  }
  SECTION("global-sketch SGD without second round: about 2 (W-1)/W 4 r c, independent of d") {
    for (const std::size_t dd : {dim, 4 * dim}) {
      const auto b = step_bytes(dd, [&](auto& c) {
        return global_sketch_sgd<float, T>(
            c, {.dimension = dd, .sketch = cfg, .k = k_, .candidates_factor = 0, .nonfinite = unchecked});
      });
      for (const auto& [sent, received] : b) CHECK(sent == 2 * (W - 1) * rc4 / W);
    }
  }
  SECTION("FetchSGD: the table up (and k entries down with a root)") {
    const auto all = step_bytes(dim, [&](auto& c) {
      return fetch_sgd<float, T>(c, {.dimension = dim, .sketch = cfg, .k = k_, .nonfinite = unchecked});
    });
    for (const auto& [sent, received] : all) CHECK(sent == allreduce_sent(rc4, W));
    const auto root = step_bytes(dim, [&](auto& c) {
      return fetch_sgd<float, T>(
          c, {.dimension = dim, .sketch = cfg, .k = k_, .topology = topology::root, .nonfinite = unchecked});
    });
    for (int r = 1; r < W; ++r) {
      CHECK(root[static_cast<std::size_t>(r)].first == rc4);
      CHECK(root[static_cast<std::size_t>(r)].second == 8 * k_);
    }
  }
  SECTION("local top-k: everyone's k entries of 8 bytes, growing with W") {
    const auto b = step_bytes(
        dim, [&](auto& c) { return local_topk_sgd<float, T>(c, {.dimension = dim, .k = k_, .nonfinite = unchecked}); });
    for (const auto& [sent, received] : b) {
      CHECK(sent == (W - 1) * 8 + (W - 1) * 8 * k_);  // the sizes, then the entries around the ring
      CHECK(received == sent);
    }
  }
  SECTION("gTop-k: 8k up the tree once, the broadcast of 8k down") {
    const auto b = step_bytes(
        dim, [&](auto& c) { return gtopk_sgd<float, T>(c, {.dimension = dim, .k = k_, .nonfinite = unchecked}); });
    // W = 4: ranks 1 and 3 are leaves of the tree and of the broadcast;
    // rank 2 also forwards the broadcast to rank 3; rank 0 only broadcasts.
    CHECK(b[1].first == 8 * k_);
    CHECK(b[3].first == 8 * k_);
    CHECK(b[2].first == 16 * k_);
    CHECK(b[0].first == 16 * k_);
    CHECK(b[0].second == 16 * k_);  // from ranks 1 and 2
  }
  SECTION("the NaN check costs one 8-byte allreduce round") {
    const auto checked = step_bytes(dim, [&](auto& c) {
      return global_sketch_sgd<float, T>(c, {.dimension = dim, .sketch = cfg, .k = k_, .candidates_factor = 0});
    });
    for (const auto& [sent, received] : checked) CHECK(sent == 2 * (W - 1) * rc4 / W + allreduce_sent(8, W));
  }
}

namespace {

/// Runs `steps` steps; if `cut` < steps, saves every rank's state after `cut`
/// steps, rebuilds everything from the checkpoint in a fresh world, and runs
/// the rest there. Returns every rank's final parameters; `compression`, if
/// given, gets each rank's `stats().compression()` at the end.
template <class Make>
std::vector<std::vector<float>> run_with_checkpoint(std::uint64_t steps, std::uint64_t cut, Make make,
                                                    std::vector<double>* compression = nullptr) {
  const test::planted_problem problem(30000, 30, W, 0.002, 3);
  std::vector<std::vector<float>> params(W, std::vector<float>(problem.d, 0.0F));
  std::vector<std::string> saved(W);
  if (compression != nullptr) compression->assign(W, 0.0);
  std::vector<float> g(problem.d);
  const auto run = [&](std::uint64_t from, std::uint64_t to, bool restore, bool save) {
    on_inproc(W, [&](int r, auto& t) {
      communicator comm(t);
      auto opt = make(comm);
      auto& x = params[static_cast<std::size_t>(r)];
      std::vector<float> grad(problem.d);
      if (restore) {
        std::istringstream in(saved[static_cast<std::size_t>(r)]);
        opt.load(in);
      }
      for (std::uint64_t s = from; s < to; ++s) {
        problem.gradient(r, s, x, grad);
        opt.step(grad).apply(std::span<float>(x));
      }
      if (save) {
        std::ostringstream out;
        opt.save(out);
        saved[static_cast<std::size_t>(r)] = out.str();
      }
      if (compression != nullptr) (*compression)[static_cast<std::size_t>(r)] = opt.stats().compression();
    });
  };
  (void)g;
  if (cut >= steps) {
    run(0, steps, false, false);
  } else {
    run(0, cut, false, true);
    run(cut, steps, true, false);
  }
  return params;
}

template <class Make>
void check_checkpoint(const char* name, Make make) {
  INFO(name);
  std::vector<double> straight_compression;
  std::vector<double> resumed_compression;
  const auto straight = run_with_checkpoint(8, 8, make, &straight_compression);
  const auto resumed = run_with_checkpoint(8, 3, make, &resumed_compression);
  for (int r = 0; r < W; ++r) {
    const auto i = static_cast<std::size_t>(r);
    REQUIRE(straight[i] == resumed[i]);
    // The resumed object's traffic against its own 5 steps, not the 8 its
    // step count says since load (the bytes would be 8/5 short); gTop-k's
    // bytes vary a little from step to step, the others' not at all.
    CHECK(resumed_compression[i] == Approx(straight_compression[i]).epsilon(0.1));
  }
}

constexpr std::size_t cd = 30000;
const sketch_config ccfg{.rows = 5, .cols = 2000, .seed = 4};

}  // namespace

TEST_CASE("save, load into fresh optimizers, continue: bit-identical to the uninterrupted run", "[optim][checkpoint]") {
  check_checkpoint("dense", [](auto& c) {
    return dense_sgd<float, T>(c, {.dimension = cd, .learning_rate = 0.3F, .momentum = 0.9F});
  });
  check_checkpoint("true top-k", [](auto& c) {
    return true_topk_sgd<float, T>(c, {.dimension = cd, .k = 60, .learning_rate = 0.3F, .momentum = 0.9F});
  });
  check_checkpoint("local top-k", [](auto& c) {
    return local_topk_sgd<float, T>(c, {.dimension = cd, .k = 60, .learning_rate = 0.3F, .momentum = 0.9F});
  });
  check_checkpoint("gTop-k", [](auto& c) {
    return gtopk_sgd<float, T>(c, {.dimension = cd, .k = 60, .learning_rate = 0.3F, .momentum = 0.9F});
  });
  check_checkpoint("sketched", [](auto& c) {
    return sketched_sgd<float, T>(c, {.dimension = cd,
                                      .sketch = ccfg,
                                      .k = 60,
                                      .learning_rate = 0.3F,
                                      .momentum = 0.9F,
                                      .dense = {{10, 20}, {29000, 1000}}});
  });
  check_checkpoint("global sketch", [](auto& c) {
    return global_sketch_sgd<float, T>(
        c, {.dimension = cd, .sketch = ccfg, .k = 60, .learning_rate = 0.3F, .momentum = 0.9F});
  });
  check_checkpoint("fetch", [](auto& c) {
    return fetch_sgd<float, T>(
        c, {.dimension = cd, .sketch = ccfg, .k = 60, .learning_rate = 0.3F, .momentum = 0.9F, .dense = {{0, 50}}});
  });
  check_checkpoint("fetch, root", [](auto& c) {
    return fetch_sgd<float, T>(c, {.dimension = cd,
                                   .sketch = ccfg,
                                   .k = 60,
                                   .learning_rate = 0.3F,
                                   .momentum = 0.9F,
                                   .topology = topology::root,
                                   .root = 2});
  });
}

TEST_CASE("a checkpoint refuses another configuration, rank or truncated bytes", "[optim][checkpoint]") {
  std::vector<std::string> saved(W);
  on_inproc(W, [&](int r, auto& t) {
    communicator comm(t);
    sketched_sgd<float, T> opt(comm, {.dimension = cd, .sketch = ccfg, .k = 60});
    (void)opt.step(std::vector<float>(cd, 1.0F));
    std::ostringstream out;
    opt.save(out);
    saved[static_cast<std::size_t>(r)] = out.str();
  });
  on_inproc(W, [&](int r, auto& t) {
    communicator comm(t);
    sketched_sgd<float, T> same(comm, {.dimension = cd, .sketch = ccfg, .k = 60});
    sketched_sgd<float, T> other_k(comm, {.dimension = cd, .sketch = ccfg, .k = 61});
    global_sketch_sgd<float, T> other_kind(comm, {.dimension = cd, .sketch = ccfg, .k = 60});
    const auto load = [&](auto& opt, const std::string& bytes) {
      std::istringstream in(bytes);
      opt.load(in);
    };
    const auto& mine = saved[static_cast<std::size_t>(r)];
    const auto& neighbours = saved[static_cast<std::size_t>((r + 1) % W)];
    test::expect(
        [&] {
          try {
            load(other_k, mine);
          } catch (const config_mismatch_error&) {
            return true;
          }
          return false;
        }(),
        "another k loaded");
    test::expect(
        [&] {
          try {
            load(other_kind, mine);
          } catch (const config_mismatch_error&) {
            return true;
          }
          return false;
        }(),
        "another optimizer kind loaded");
    test::expect(
        [&] {
          try {
            load(same, neighbours);
          } catch (const config_mismatch_error&) {
            return true;
          }
          return false;
        }(),
        "another rank's state loaded");
    for (const std::size_t cut : {std::size_t{0}, std::size_t{10}, std::size_t{40}, mine.size() / 2, mine.size() - 1}) {
      test::expect(
          [&] {
            try {
              load(same, mine.substr(0, cut));
            } catch (const serialization_error&) {
              return true;
            }
            return false;
          }(),
          "a truncated state loaded");
    }
    load(same, mine);  // and the intact one loads
  });
}

TEST_CASE("ranks that disagree on the configuration all get config_mismatch_error", "[optim]") {
  std::atomic<int> mismatches{0};
  on_inproc(W, [&](int r, auto& t) {
    communicator comm(t);
    try {
      sketched_sgd<float, T> opt(comm, {.dimension = cd, .sketch = ccfg, .k = r == 2 ? 61U : 60U});
    } catch (const config_mismatch_error& e) {
      if (std::string(e.what()).find("rank(s) 2") != std::string::npos) mismatches.fetch_add(1);
    }
  });
  CHECK(mismatches.load() == W);
  mismatches = 0;
  on_inproc(W, [&](int r, auto& t) {
    communicator comm(t);
    try {
      fetch_sgd<float, T> opt(
          comm, {.dimension = cd, .sketch = {.rows = 5, .cols = 2000, .seed = r == 3 ? 5U : 4U}, .k = 60});
    } catch (const config_mismatch_error&) {
      mismatches.fetch_add(1);
    }
  });
  CHECK(mismatches.load() == W);
}

TEST_CASE("a NaN on one rank: every rank throws, or every rank skips the step", "[optim][nonfinite]") {
  const auto gradient = [](int r, std::uint64_t step) {
    auto g = test::normal_vector<float>(cd, mix64(step * 8 + static_cast<std::uint64_t>(r)));
    if (r == 1 && step == 2) g[123] = std::numeric_limits<float>::quiet_NaN();
    if (r == 3 && step == 4) g[5] = std::numeric_limits<float>::infinity();
    return g;
  };
  SECTION("throw_error") {
    std::atomic<int> thrown{0};
    on_inproc(W, [&](int r, auto& t) {
      communicator comm(t);
      sketched_sgd<float, T> opt(comm, {.dimension = cd, .sketch = ccfg, .k = 60});
      for (std::uint64_t s = 0; s < 3; ++s) {
        try {
          (void)opt.step(gradient(r, s));
        } catch (const nonfinite_error&) {
          if (s == 2) thrown.fetch_add(1);
        }
      }
    });
    CHECK(thrown.load() == W);
  }
  SECTION("skip_step: no state change anywhere, as if the step never happened") {
    std::vector<std::vector<float>> skipped(W);
    std::vector<std::vector<float>> clean(W);
    const auto run = [&](std::vector<std::vector<float>>& out, bool with_bad_steps) {
      on_inproc(W, [&](int r, auto& t) {
        communicator comm(t);
        global_sketch_sgd<float, T> opt(comm, {.dimension = cd,
                                               .sketch = ccfg,
                                               .k = 60,
                                               .learning_rate = 0.1F,
                                               .momentum = 0.9F,
                                               .nonfinite = nonfinite_policy::skip_step});
        std::vector<float> x(cd, 0.0F);
        for (std::uint64_t s = 0; s < 7; ++s) {
          if (!with_bad_steps && (s == 2 || s == 4)) continue;
          const auto& u = opt.step(gradient(r, s));
          test::expect(u.skipped == (s == 2 || s == 4), "skipped flag");
          u.apply(std::span<float>(x));
        }
        out[static_cast<std::size_t>(r)] = x;
      });
    };
    run(skipped, true);
    run(clean, false);
    for (int r = 0; r < W; ++r) CHECK(skipped[static_cast<std::size_t>(r)] == clean[static_cast<std::size_t>(r)]);
  }
}

TEST_CASE("bad arguments are refused before any I/O", "[optim]") {
  inproc_world world(1);
  auto t = world.transport(0);
  communicator comm(t);
  using S = sketched_sgd<float, T>;
  CHECK_THROWS_AS(S(comm, {.dimension = 0, .sketch = ccfg, .k = 1}), std::invalid_argument);
  CHECK_THROWS_AS(S(comm, {.dimension = 100, .sketch = ccfg, .k = 0}), std::invalid_argument);
  CHECK_THROWS_AS(S(comm, {.dimension = 100, .sketch = ccfg, .k = 101}), std::invalid_argument);
  CHECK_THROWS_AS(S(comm, {.dimension = 100, .sketch = {.rows = 0, .cols = 10, .seed = 0}, .k = 1}),
                  std::invalid_argument);
  CHECK_THROWS_AS(S(comm, {.dimension = 100, .sketch = ccfg, .k = 1, .topology = topology::root, .root = 1}),
                  std::invalid_argument);
  CHECK_THROWS_AS(S(comm, {.dimension = 100, .sketch = ccfg, .k = 1, .dense = {{10, 5}, {12, 3}}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(S(comm, {.dimension = 100, .sketch = ccfg, .k = 1, .dense = {{95, 10}}}), std::invalid_argument);
  CHECK_THROWS_AS((sketched_sgd<std::int32_t, T>(comm, {.dimension = 100, .sketch = ccfg, .k = 1, .average = true})),
                  std::invalid_argument);
  // 4-byte indices on the wire: d >= 2^32 - 1 is refused before anything is allocated.
  constexpr std::uint64_t huge = std::uint64_t{1} << 32U;
  CHECK_THROWS_WITH((local_topk_sgd<float, T>(comm, {.dimension = huge, .k = 1})), Catch::Contains("2^32"));
  CHECK_THROWS_WITH((gtopk_sgd<float, T>(comm, {.dimension = huge, .k = 1})), Catch::Contains("2^32"));
  CHECK_THROWS_WITH(S(comm, {.dimension = huge, .sketch = ccfg, .k = 1, .topology = topology::root}),
                    Catch::Contains("2^32"));
  S ok(comm, {.dimension = 100, .sketch = ccfg, .k = 5});
  CHECK_THROWS_AS(ok.step(std::vector<float>(99)), std::invalid_argument);
  CHECK(ok.stats().total.bytes_sent == 0);
  const auto& u = ok.step(std::vector<float>(100, 1.0F));  // W = 1 still works
  CHECK(u.size() == 5);
  std::vector<float> params(3);  // the update touches coordinates 0..4 (ties go low)
  CHECK_THROWS_AS(u.apply(std::span<float>(params)), std::invalid_argument);
  CHECK(params == std::vector<float>(3, 0.0F));  // nothing written
}

TEST_CASE("dense ranges are applied in full every step and never selected by the sketch", "[optim]") {
  on_inproc(W, [&](int r, auto& t) {
    communicator comm(t);
    sketched_sgd<float, T> opt(comm, {.dimension = 1000,
                                      .sketch = {.rows = 5, .cols = 200, .seed = 1},
                                      .k = 10,
                                      .learning_rate = 1.0F,
                                      .dense = {{0, 10}, {500, 5}}});
    std::vector<float> g(1000, 0.01F);
    for (std::size_t i = 0; i < 10; ++i) g[i] = 100.0F;  // huge, but dense: not competing for k
    g[700] = 5.0F;
    const auto& u = opt.step(g);
    test::expect(u.size() == 25, "10 sparse + 15 dense coordinates");
    for (std::size_t i = 0; i < 10; ++i) test::expect(u.indices[i] == i && u.values[i] == 4 * 100.0F, "dense head");
    test::expect(std::find(u.indices.begin(), u.indices.end(), 700U) != u.indices.end(), "the sparse spike");
    test::expect(std::is_sorted(u.indices.begin(), u.indices.end()), "sorted");
    (void)r;
  });
}

TEST_CASE("indices received from a peer are checked before they index anything", "[optim][wire]") {
  using detail::no_index;
  using entry = detail::wire_entry<float>;
  const auto check = [](std::vector<entry> e) {
    detail::check_received_indices(std::span<const entry>(e), 100, "test");
  };
  CHECK_NOTHROW(check({{3, 1.0F}, {7, 2.0F}, {99, 3.0F}, {no_index, 0.0F}}));
  CHECK_THROWS_AS(check({{3, 1.0F}, {100, 2.0F}}), transport_error);                  // outside d
  CHECK_THROWS_AS(check({{7, 1.0F}, {3, 2.0F}}), transport_error);                    // decreasing
  CHECK_THROWS_AS(check({{3, 1.0F}, {3, 2.0F}}), transport_error);                    // repeated
  CHECK_THROWS_AS(check({{3, 1.0F}, {no_index, 0.0F}, {5, 1.0F}}), transport_error);  // after padding
  const std::vector<detail::wire_index> candidates = {1, 2, 5000};
  CHECK_THROWS_WITH(detail::check_received_indices(std::span<const detail::wire_index>(candidates), 100, "test"),
                    Catch::Contains("index 5000"));
}

#if defined(SKETCHSGD_TEST_HAVE_TCP)
using test::on_tcp;

TEST_CASE("the same seeded run gives the same parameters over inproc and tcp", "[optim][tcp]") {
  const test::planted_problem problem(30000, 30, W, 0.002, 12);
  const auto make = [](auto& c) {
    using Tr = std::remove_reference_t<decltype(c.underlying())>;
    return sketched_sgd<float, Tr>(c,
                                   {.dimension = cd, .sketch = ccfg, .k = 60, .learning_rate = 0.3F, .momentum = 0.9F});
  };
  std::vector<test::rank_record> in(W);
  on_inproc(W, [&](int r, auto& t) { in[static_cast<std::size_t>(r)] = test::run_rank(t, problem, 6, make); });
  std::vector<test::rank_record> over_tcp(W);
  on_tcp(W, [&](int r, auto& t) { over_tcp[static_cast<std::size_t>(r)] = test::run_rank(t, problem, 6, make); });
  for (int r = 0; r < W; ++r)
    CHECK(in[static_cast<std::size_t>(r)].digests == over_tcp[static_cast<std::size_t>(r)].digests);
}
#endif
