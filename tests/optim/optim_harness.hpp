// SPDX-License-Identifier: Apache-2.0
#pragma once

// Shared by the optimizer tests: a synthetic problem with a known optimum,
// and a driver that runs any optimizer on every rank of a world and records
// what each rank saw.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <future>
#include <span>
#include <string>
#include <vector>

#include "../transport/conformance.hpp"
#include "sketchsgd/hash/seed_mixer.hpp"
#include "sketchsgd/optim/model_update.hpp"
#include "sketchsgd/transport/inproc.hpp"
#include "test_support.hpp"
#if defined(SKETCHSGD_TEST_HAVE_TCP)
#include "sketchsgd/transport/tcp.hpp"
#endif

namespace sketchsgd::test {

/// Runs `body(rank, transport)` on every rank of an in-process world.
template <class Body>
void on_inproc(int w, Body body) {
  inproc_world world(w, {.timeout = std::chrono::seconds(30)});
  run_threads(w, [&](int r) {
    auto t = world.transport(r);
    body(r, t);
  });
}

#if defined(SKETCHSGD_TEST_HAVE_TCP)
/// Runs `body(rank, transport)` on w threads, each with a tcp_transport of
/// one loopback job.
template <class Body>
void on_tcp(int w, Body body) {
  std::promise<std::uint16_t> port_promise;
  auto port = port_promise.get_future().share();
  run_threads(w, [&](int r) {
    tcp_options o;
    o.log = [](const std::string&) {};
    if (r == 0) o.on_listen = [&](std::uint16_t p) { port_promise.set_value(p); };
    // Rank 0 may fail before it listens: the others wait for its port a
    // bounded time instead of for ever.
    if (r != 0 && port.wait_for(std::chrono::seconds(30)) != std::future_status::ready)
      throw timeout_error("on_tcp: rank 0 did not listen within 30 s");
    tcp_transport t({"127.0.0.1", r == 0 ? std::uint16_t{0} : port.get()}, r, w, "optim-test", o);
    body(r, t);
  });
}
#endif

/// f(x) = 1/2 sum_i h_i (x_i - x*_i)^2 with x* sparse (a planted solution).
/// Worker r's gradient is (1 + s_r) h (x - x*) / W plus noise, where the
/// heterogeneity s_r and the noise both sum to zero over the workers: the
/// summed gradient is exact and the optimum is x*, but no two workers see the
/// same gradient.
struct planted_problem {
  std::size_t d = 0;
  int world = 1;
  double noise = 0.0;
  std::vector<float> x_star;
  std::vector<float> h;

  planted_problem(std::size_t dim, std::size_t nonzeros, int w, double noise_level, std::uint64_t seed)
      : d(dim), world(w), noise(noise_level), x_star(dim, 0.0F), h(dim, 1.0F) {
    splitmix64 rng(seed);
    for (std::size_t n = 0; n < nonzeros; ++n) {
      x_star[rng.next_below(dim)] =
          static_cast<float>((rng.next() & 1U) != 0 ? 1.0 + uniform01(rng) : -1.0 - uniform01(rng));
    }
    for (auto& v : h) v = static_cast<float>(0.5 + uniform01(rng));
  }

  void gradient(int rank, std::uint64_t step, std::span<const float> x, std::span<float> g) const {
    // s_r = 0.3, -0.3, 0.3, ... (the last rank balances an odd world).
    double s = (rank % 2 == 0 ? 0.3 : -0.3);
    if (world % 2 == 1 && rank == world - 1) s = 0.0;
    const auto scale = static_cast<float>((1.0 + s) / world);
    for (std::size_t i = 0; i < d; ++i) g[i] = scale * h[i] * (x[i] - x_star[i]);
    if (noise == 0.0) return;
    // zeta_r - mean over r of zeta: zero-sum noise, identical on every rank's view.
    std::vector<float> mean(d, 0.0F);
    std::vector<float> mine(d, 0.0F);
    for (int r = 0; r < world; ++r) {
      splitmix64 rng(mix64((step << 8U) ^ static_cast<std::uint64_t>(r)));
      for (std::size_t i = 0; i < d; ++i) {
        const auto z =
            static_cast<float>(noise * 1.7320508075688772 * (2.0 * uniform01(rng) - 1.0));  // variance noise^2
        mean[i] += z / static_cast<float>(world);
        if (r == rank) mine[i] = z;
      }
    }
    for (std::size_t i = 0; i < d; ++i) g[i] += mine[i] - mean[i];
  }

  [[nodiscard]] double relative_error(std::span<const float> x) const {
    double num = 0;
    double den = 0;
    for (std::size_t i = 0; i < d; ++i) {
      num += (static_cast<double>(x[i]) - x_star[i]) * (static_cast<double>(x[i]) - x_star[i]);
      den += static_cast<double>(x_star[i]) * x_star[i];
    }
    return std::sqrt(num / den);
  }
};

/// What one rank saw in a run.
struct rank_record {
  std::vector<float> params;
  std::vector<std::uint64_t> digests;  // of the parameters after every step
  std::uint64_t bytes_sent = 0;
  std::uint64_t last_step_bytes_sent = 0;
  std::uint64_t last_step_bytes_received = 0;
  double compression = 0;
};

inline std::uint64_t digest_of(std::span<const float> x) {
  std::uint64_t h = 0x243F6A8885A308D3ULL;
  for (const float v : x) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    h = mix64(h ^ bits);
  }
  return h;
}

/// Runs `steps` steps of the optimizer `make(comm)` builds on the rank whose
/// transport is `t`, on `problem`, recording the rank's view. `defaults`
/// become the communicator's allreduce options.
template <class Transport, class Make>
rank_record run_rank(Transport& t, const planted_problem& problem, std::uint64_t steps, Make make,
                     allreduce_options defaults = {}) {
  communicator comm(t, defaults);
  auto opt = make(comm);
  rank_record rec;
  rec.params.assign(problem.d, 0.0F);
  std::vector<float> g(problem.d);
  for (std::uint64_t s = 0; s < steps; ++s) {
    problem.gradient(comm.rank(), s, rec.params, g);
    const auto& u = opt.step(g);
    u.apply(std::span<float>(rec.params));
    rec.digests.push_back(digest_of(rec.params));
  }
  rec.bytes_sent = opt.stats().total.bytes_sent;
  rec.last_step_bytes_sent = opt.stats().last_step.bytes_sent;
  rec.last_step_bytes_received = opt.stats().last_step.bytes_received;
  rec.compression = opt.stats().compression();
  return rec;
}

}  // namespace sketchsgd::test
