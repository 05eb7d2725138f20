// SPDX-License-Identifier: Apache-2.0
// The conformance suite over the transports whose ranks are threads of this
// process: inproc, and the Tier-1-only archetype (so every collective's
// generic algorithm is exercised). World sizes 1, 2, 3, 4 and 7.

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "archetype.hpp"
#include "conformance.hpp"
#include "sketchsgd/transport/inproc.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;

namespace {

struct inproc_runner {
  template <class Body>
  static void run(int w, Body body) {
    inproc_world world(w, {.timeout = 20s});
    test::run_threads(w, [&](int r) {
      auto t = world.transport(r);
      body(t);
    });
  }
};

struct archetype_runner {
  template <class Body>
  static void run(int w, Body body) {
    inproc_world world(w, {.timeout = 20s});
    test::run_threads(w, [&](int r) {
      test::archetype_transport t(world.transport(r));
      body(t);
    });
  }
};

constexpr int world_sizes[] = {1, 2, 3, 4, 7};

}  // namespace

TEMPLATE_TEST_CASE("allreduce: every algorithm, type and size", "[transport][conformance]", inproc_runner,
                   archetype_runner) {
  for (const int w : world_sizes) {
    CAPTURE(w);
    TestType::run(w, [](auto& t) { test::check_allreduce(t); });
  }
}

TEMPLATE_TEST_CASE("reduce and broadcast from every root", "[transport][conformance]", inproc_runner,
                   archetype_runner) {
  for (const int w : world_sizes) {
    CAPTURE(w);
    TestType::run(w, [](auto& t) { test::check_reduce_and_broadcast(t); });
  }
}

TEMPLATE_TEST_CASE("allgather and allgatherv", "[transport][conformance]", inproc_runner, archetype_runner) {
  for (const int w : world_sizes) {
    CAPTURE(w);
    TestType::run(w, [](auto& t) { test::check_allgather(t); });
  }
}

TEMPLATE_TEST_CASE("barrier holds every rank until all arrived", "[transport][conformance]", inproc_runner,
                   archetype_runner) {
  for (const int w : world_sizes) {
    CAPTURE(w);
    std::atomic<int> arrived{0};
    TestType::run(w, [&](auto& t) { test::check_barrier(t, &arrived); });
  }
}

TEMPLATE_TEST_CASE("tags route messages and keep per-tag order", "[transport][conformance]", inproc_runner,
                   archetype_runner) {
  for (const int w : world_sizes) {
    CAPTURE(w);
    TestType::run(w, [](auto& t) {
      test::check_tags_and_ordering(t);
      test::check_size_mismatch(t);
    });
  }
}

TEST_CASE("inproc: a peer that never answers times out within [timeout/2, 2 timeout]", "[transport][failure]") {
  inproc_world world(2, {.timeout = 300ms});
  auto t0 = world.transport(0);
  auto t1 = world.transport(1);
  std::uint32_t x = 0;
  auto r = t0.irecv(1, 5, std::as_writable_bytes(std::span<std::uint32_t>(&x, 1)));
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(r.wait(), timeout_error);
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 150ms);
  CHECK(waited <= 600ms);
  CHECK_FALSE(r.wait_for(10ms));  // wait_for reports instead of throwing
}

TEST_CASE("inproc: a rank that departs mid-collective fails the others promptly", "[transport][failure]") {
  for (const int w : {2, 3, 4}) {
    CAPTURE(w);
    inproc_world world(w, {.timeout = 10s});
    std::atomic<int> failures{0};
    const auto start = std::chrono::steady_clock::now();
    test::run_threads(w, [&](int r) {
      auto t = world.transport(r);
      if (r == w - 1) return;  // leaves before the collective: its transport is destroyed
      communicator comm(t);
      std::vector<float> data(100000, 1.0F);
      try {
        allreduce(comm, std::span<float>(data));
      } catch (const transport_error&) {
        failures.fetch_add(1);
      }
    });
    CHECK(failures.load() == w - 1);
    CHECK(std::chrono::steady_clock::now() - start < 5s);  // well before the 10 s timeout
  }
}

TEST_CASE("inproc: fault injection fails pending and later operations", "[transport][failure]") {
  inproc_world world(3, {.timeout = 10s});
  auto t0 = world.transport(0);
  auto t1 = world.transport(1);
  auto t2 = world.transport(2);
  std::uint32_t x = 0;
  auto pending = t0.irecv(2, 1, std::as_writable_bytes(std::span<std::uint32_t>(&x, 1)));
  world.fail(2);
  CHECK(world.failed(2));
  CHECK_THROWS_AS(pending.wait(), transport_error);
  CHECK_THROWS_AS(t1.isend(2, 1, std::as_bytes(std::span<const std::uint32_t>(&x, 1))), transport_error);
  CHECK_THROWS_AS(t0.irecv(2, 1, std::as_writable_bytes(std::span<std::uint32_t>(&x, 1))), transport_error);
  // Ranks 0 and 1 still talk to each other.
  std::uint32_t y = 7;
  auto s = t0.isend(1, 3, std::as_bytes(std::span<const std::uint32_t>(&y, 1)));
  auto r = t1.irecv(0, 3, std::as_writable_bytes(std::span<std::uint32_t>(&x, 1)));
  r.wait();
  CHECK(x == 7);
}

TEST_CASE("inproc: unmatched data is bounded and bad ranks are refused", "[transport][failure]") {
  inproc_world world(2, {.timeout = 1s, .max_buffered_bytes = 1000});
  auto t0 = world.transport(0);
  auto t1 = world.transport(1);
  std::vector<std::byte> big(600);
  (void)t0.isend(1, 1, big);
  CHECK_THROWS_AS(t0.isend(1, 1, big), transport_error);
  CHECK_THROWS_AS(t0.isend(2, 1, big), std::invalid_argument);
  CHECK_THROWS_AS(t0.irecv(-1, 1, big), std::invalid_argument);
  CHECK_THROWS_AS(inproc_world(0), std::invalid_argument);
}

TEST_CASE("a withdrawn receive never writes into its buffer", "[transport]") {
  inproc_world world(2);
  auto t0 = world.transport(0);
  auto t1 = world.transport(1);
  std::uint32_t x = 0;
  { auto r = t1.irecv(0, 4, std::as_writable_bytes(std::span<std::uint32_t>(&x, 1))); }  // destroyed pending
  std::uint32_t y = 99;
  (void)t0.isend(1, 4, std::as_bytes(std::span<const std::uint32_t>(&y, 1)));
  CHECK(x == 0);
  std::uint32_t z = 0;
  t1.irecv(0, 4, std::as_writable_bytes(std::span<std::uint32_t>(&z, 1))).wait();
  CHECK(z == 99);
}

TEST_CASE("allreduce_bytes_model is the most bytes a rank sends", "[transport][bytes]") {
  for (const int w : world_sizes) {
    for (const std::size_t n : {std::size_t{16}, std::size_t{2048}, std::size_t{2049}, std::size_t{100'000}}) {
      CAPTURE(w, n);
      std::vector<std::uint64_t> sent(static_cast<std::size_t>(w));
      inproc_runner::run(w, [&](auto& t) {
        communicator comm(t, {.algorithm = allreduce_algorithm::portable});
        std::vector<float> data(n, 1.0F);
        allreduce(comm, std::span<float>(data));
        sent[static_cast<std::size_t>(comm.rank())] = comm.counters().bytes_sent;
      });
      const double most = static_cast<double>(*std::max_element(sent.begin(), sent.end()));
      const double model = allreduce_bytes_model(4.0 * static_cast<double>(n), w);
      // The ring's chunks are whole floats: at most one float per chunk sent off.
      CHECK(std::abs(most - model) <= 4.0 * 2 * w);
    }
  }
}

TEST_CASE("the enum spelling of the rooted collectives' shape still works", "[transport][compat]") {
  inproc_runner::run(3, [&](auto& t) {
    communicator comm(t);
    std::vector<int> data(5, comm.rank() == 1 ? 7 : 0);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    broadcast(comm, std::span<int>(data), 1, tree_algorithm::flat);
    reduce(comm, std::span<int>(data), 2, tree_algorithm::flat);
#pragma GCC diagnostic pop
    if (comm.rank() == 2) test::expect(data == std::vector<int>(5, 21), "flat broadcast then flat reduce");
  });
}

static_assert(!native_allreduce<inproc_transport, float>, "inproc has no native collectives: the generic ones run");
