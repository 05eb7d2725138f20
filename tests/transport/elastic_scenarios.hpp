// SPDX-License-Identifier: Apache-2.0
#pragma once
// The membership scenarios every elastic world must pass, over any
// `elastic_member` (test_tcp_elastic.cpp runs them over tcp_rendezvous,
// test_inproc_elastic.cpp over inproc_elastic_world). `make(name)` returns
// a new member (a std::unique_ptr); `generation()` the rendezvous's
// (generation, size).

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "conformance.hpp"
#include "sketchsgd/collective/allreduce.hpp"
#include "sketchsgd/transport/elastic.hpp"

namespace sketchsgd::test {

/// One allreduce over a generation: every rank adds its rank + 1.
template <transport Transport>
std::int64_t sum_of_ranks(Transport& t) {
  communicator comm(t);
  std::int64_t x = comm.rank() + 1;
  allreduce(comm, std::span<std::int64_t>(&x, 1));
  return x;
}

/// 1 + 2 + ... + n: `sum_of_ranks` in a world of n.
inline std::int64_t triangle(int n) { return static_cast<std::int64_t>(n) * (n + 1) / 2; }

/// A world of three forms, loses the member holding rank 1, re-forms as two
/// with the survivors' order kept (old rank 0 stays 0, old rank 2 becomes
/// 1), and grows back to three when a newcomer waits: the others agree at a
/// step boundary, the newcomer is numbered last and flagged.
template <class Make, class Generation>
void elastic_forms_loses_and_grows(Make make, Generation generation) {
  std::vector<decltype(make(std::string()))> members;
  for (int i = 0; i < 3; ++i) members.push_back(make("worker-" + std::to_string(i)));
  std::vector<int> first_rank(3);
  run_threads(3, [&](int i) {
    auto& t = members[static_cast<std::size_t>(i)]->join();
    first_rank[static_cast<std::size_t>(i)] = t.rank();
    CHECK(t.size() == 3);
    CHECK(sum_of_ranks(t) == triangle(3));
  });
  CHECK(generation() == std::pair<std::uint64_t, int>{1, 3});

  // The member holding rank 1 leaves; the others' next collective fails and they re-form.
  const int leaver = static_cast<int>(std::find(first_rank.begin(), first_rank.end(), 1) - first_rank.begin());
  members[static_cast<std::size_t>(leaver)].reset();
  std::vector<int> second_rank(3, -1);
  run_threads(3, [&](int i) {
    if (i == leaver) return;
    auto& me = *members[static_cast<std::size_t>(i)];
    CHECK_THROWS_AS(sum_of_ranks(*me.transport()), transport_error);
    auto& t = me.join();
    second_rank[static_cast<std::size_t>(i)] = t.rank();
    CHECK(t.size() == 2);
    CHECK(me.membership()->generation == 2);
    CHECK_FALSE(me.membership()->newcomer);
    CHECK(sum_of_ranks(t) == triangle(2));
  });
  for (int i = 0; i < 3; ++i) {
    if (i != leaver)
      CHECK(second_rank[static_cast<std::size_t>(i)] == (first_rank[static_cast<std::size_t>(i)] == 0 ? 0 : 1));
  }

  // A newcomer asks; the world learns it at a step boundary, agrees, and grows.
  members[static_cast<std::size_t>(leaver)] = make("newcomer");
  run_threads(3, [&](int i) {
    auto& me = *members[static_cast<std::size_t>(i)];
    if (i != leaver) {
      communicator comm(*me.transport());
      int boundaries = 0;
      while (!reform_agreed(comm, me)) {
        REQUIRE(++boundaries < 1000);  // the notice arrives within 5 s
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    auto& t = me.join();
    CHECK(t.size() == 3);
    CHECK(me.membership()->generation == 3);
    CHECK(me.membership()->newcomer == (i == leaver));
    if (i == leaver) CHECK(t.rank() == 2);  // newcomers come after the survivors
    CHECK(sum_of_ranks(t) == triangle(3));
  });
}

/// With max_workers 2 and a member join_timeout of about 1.5 s, three
/// workers arrive in turn: the first two get places, the third waits, then
/// gives up with timeout_error.
template <class Make>
void elastic_full_world_is_a_bounded_wait(Make make) {
  std::atomic<int> placed{0};
  std::atomic<int> timed_out{0};
  run_threads(3, [&](int i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50 * i));  // arrival order
    auto me = make("w" + std::to_string(i));
    try {
      const int size = me->join().size();  // outside CHECK, which would catch the timeout
      CHECK(size == 2);
      ++placed;
      std::this_thread::sleep_for(std::chrono::milliseconds(2000));  // stay while the third waits
    } catch (const timeout_error&) {
      CHECK(i == 2);
      ++timed_out;
    }
  });
  CHECK(placed == 2);
  CHECK(timed_out == 1);
}

/// With a rendezvous join_timeout of 1.5 s: three form a world, two re-form
/// while the third stays silent (as if stopped); it is left out after the
/// join_timeout, and its later join() is refused with transport_error.
template <class Make>
void elastic_silent_member_is_left_out(Make make) {
  std::vector<decltype(make(std::string()))> m;
  for (int i = 0; i < 3; ++i) m.push_back(make("w" + std::to_string(i)));
  run_threads(3, [&](int i) { (void)m[static_cast<std::size_t>(i)]->join(); });
  const auto start = std::chrono::steady_clock::now();
  run_threads(2, [&](int i) { CHECK(m[static_cast<std::size_t>(i)]->join().size() == 2); });
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= std::chrono::milliseconds(1400));  // the join_timeout of 1.5 s
  CHECK(waited < std::chrono::seconds(8));
  CHECK_THROWS_AS(m[2]->join(), transport_error);
}

/// Every member of a world of two leaves; a newcomer then forms the next
/// generation alone at once, not after its join_timeout.
template <class Make>
void elastic_newcomer_after_all_left(Make make) {
  {
    std::vector<decltype(make(std::string()))> m;
    for (int i = 0; i < 2; ++i) m.push_back(make("w" + std::to_string(i)));
    run_threads(2, [&](int i) { (void)m[static_cast<std::size_t>(i)]->join(); });
  }
  auto late = make("late");
  const auto start = std::chrono::steady_clock::now();
  CHECK(late->join().size() == 1);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  CHECK(late->membership()->generation == 2);
  CHECK(late->membership()->newcomer);
}

}  // namespace sketchsgd::test
