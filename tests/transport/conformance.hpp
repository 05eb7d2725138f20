// SPDX-License-Identifier: Apache-2.0
#pragma once

// The transport conformance suite, written once. Each check is the body one
// rank runs; a "runner" starts it on every rank of a world: threads for the
// in-process, archetype and threaded-TCP runners, or this process's single
// rank under mpiexec or the TCP launcher. Rank bodies report problems by
// throwing (Catch2 assertions are not thread-safe); the runner rethrows on
// the test's thread. Expected results are in closed form.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/hash/seed_mixer.hpp"

namespace sketchsgd::test {

/// Throws with `what` unless `ok`.
inline void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

/// Runs `body(r)` for each rank r of `n` on its own thread; rethrows the
/// first failure (by rank) after all threads finished.
template <class Body>
void run_threads(int n, Body body) {
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n));
  {
    std::vector<std::jthread> threads;
    for (int r = 0; r < n; ++r) {
      threads.emplace_back([&, r] {
        try {
          body(r);
        } catch (...) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
        }
      });
    }
  }
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

/// Sizes of the buffers every collective is checked with: empty, one
/// element, odd, and several segments long (segments are set small).
inline const std::vector<std::size_t> conformance_lengths = {0, 1, 13, 5000};
inline constexpr std::size_t small_segment_bytes = 1024;

/// A value rank r holds at index i, exact in every value type.
template <class T>
T contribution(int r, std::size_t i) {
  return static_cast<T>((r + 1) * 3 + static_cast<int>(i % 97) - 40);
}
template <class T>
T sum_of_contributions(int world, std::size_t i) {
  T s{};
  for (int r = 0; r < world; ++r) s = static_cast<T>(s + contribution<T>(r, i));
  return s;
}

/// Every rank holds identical bytes in `data` (checked by gathering a digest).
template <class Transport, class T>
void expect_identical_everywhere(communicator<Transport>& comm, std::span<const T> data, const std::string& what) {
  std::uint64_t digest = 0x9E3779B97F4A7C15ULL;
  const auto bytes = std::as_bytes(data);
  for (const std::byte b : bytes) digest = mix64(digest ^ static_cast<std::uint64_t>(b));
  std::vector<std::uint64_t> all(static_cast<std::size_t>(comm.size()));
  allgather(comm, std::span<const std::uint64_t>(&digest, 1), std::span<std::uint64_t>(all));
  for (const auto d : all) expect(d == digest, what + ": ranks hold different bytes");
}

template <class T, class Transport>
void check_allreduce_type(Transport& t) {
  communicator comm(t);
  const int w = comm.size();
  for (const auto algorithm :
       {allreduce_algorithm::automatic, allreduce_algorithm::ring, allreduce_algorithm::recursive_doubling}) {
    for (const std::size_t n : conformance_lengths) {
      std::vector<T> data(n);
      for (std::size_t i = 0; i < n; ++i) data[i] = contribution<T>(comm.rank(), i);
      allreduce(comm, std::span<T>(data), {.algorithm = algorithm, .segment_bytes = small_segment_bytes});
      for (std::size_t i = 0; i < n; ++i) {
        expect(data[i] == sum_of_contributions<T>(w, i), "allreduce (algorithm " +
                                                             std::to_string(static_cast<int>(algorithm)) + ", n " +
                                                             std::to_string(n) + ") wrong at " + std::to_string(i));
      }
    }
    // Non-integer floats: not exact, but bit-identical on every rank.
    if constexpr (std::is_floating_point_v<T>) {
      splitmix64 rng(static_cast<std::uint64_t>(comm.rank()) + 1);
      std::vector<T> noisy(3001);
      for (auto& v : noisy) v = static_cast<T>(static_cast<double>(rng.next() >> 11U) * 0x1.0p-53 - 0.5);
      allreduce(comm, std::span<T>(noisy), {.algorithm = algorithm, .segment_bytes = small_segment_bytes});
      expect_identical_everywhere(comm, std::span<const T>(noisy), "allreduce of non-integer floats");
    }
  }
}

/// A 16-bit wire: sums of small integers are exact in both formats (every
/// partial sum below 256), any floats end bit-identical everywhere and
/// within the format's rounding of the float32 sum, at half the bytes.
template <class Transport>
void check_allreduce_wire(Transport& t) {
  communicator comm(t);
  const int w = comm.size();
  for (const wire_format wire : {wire_format::bfloat16, wire_format::float16}) {
    const std::string name = wire == wire_format::bfloat16 ? "bfloat16" : "float16";
    for (const std::size_t n : conformance_lengths) {
      std::vector<float> data(n);
      for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<float>(comm.rank() + 1 + static_cast<int>(i % 7));
      const comm_counters before = comm.counters();
      allreduce(comm, std::span<float>(data), {.segment_bytes = small_segment_bytes, .wire = wire});
      const std::uint64_t sent = comm.counters().bytes_sent - before.bytes_sent;
      for (std::size_t i = 0; i < n; ++i) {
        const auto exact = static_cast<float>(w * (w + 1) / 2 + w * static_cast<int>(i % 7));
        expect(data[i] == exact,
               "allreduce on a " + name + " wire, n " + std::to_string(n) + ": wrong at " + std::to_string(i));
      }
      if (w > 1) {
        // The ring's 2 (W-1)/W n values at 2 bytes each; chunks are whole
        // values, so a rank sends at most 2 (W-1) values more or fewer.
        const double model = 2.0 * (w - 1) / w * 2.0 * static_cast<double>(n);
        expect(std::abs(static_cast<double>(sent) - model) <= 4.0 * (w - 1),
               "allreduce on a " + name + " wire sent " + std::to_string(sent) + " bytes for n " + std::to_string(n));
      }
    }
    splitmix64 rng(static_cast<std::uint64_t>(comm.rank()) + 5);
    std::vector<float> noisy(3001);
    for (auto& v : noisy) v = static_cast<float>(static_cast<double>(rng.next() >> 11U) * 0x1.0p-53 - 0.5);
    std::vector<float> exact = noisy;
    allreduce(comm, std::span<float>(exact), {.algorithm = allreduce_algorithm::ring});
    allreduce(comm, std::span<float>(noisy), {.segment_bytes = small_segment_bytes, .wire = wire});
    expect_identical_everywhere(comm, std::span<const float>(noisy), "allreduce on a " + name + " wire");
    // Each of the W hops rounds a partial sum of magnitude at most W / 2 by
    // half a unit in the last place: 2^-8 (bfloat16) or 2^-11 (float16).
    const double ulp = wire == wire_format::bfloat16 ? 0x1.0p-8 : 0x1.0p-11;
    for (std::size_t i = 0; i < noisy.size(); ++i) {
      expect(std::abs(static_cast<double>(noisy[i]) - exact[i]) <= w * (w / 2.0) * ulp,
             "allreduce on a " + name + " wire: too far from the float32 sum at " + std::to_string(i));
    }
  }
  std::vector<double> doubles(4, 1.0);
  bool refused = false;
  try {
    allreduce(comm, std::span<double>(doubles), {.wire = wire_format::bfloat16});
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  expect(refused, "allreduce of doubles on a 16-bit wire must be refused");
}

template <class Transport>
void check_allreduce(Transport& t) {
  check_allreduce_wire(t);
  check_allreduce_type<float>(t);
  check_allreduce_type<double>(t);
  check_allreduce_type<std::int32_t>(t);
  check_allreduce_type<std::int64_t>(t);
}

template <class Transport>
void check_reduce_and_broadcast(Transport& t) {
  communicator comm(t);
  const int w = comm.size();
  for (int root = 0; root < w; ++root) {
    for (const std::size_t n : conformance_lengths) {
      std::vector<std::int64_t> data(n);
      for (std::size_t i = 0; i < n; ++i) data[i] = contribution<std::int64_t>(comm.rank(), i);
      reduce(comm, std::span<std::int64_t>(data), root);
      if (comm.rank() == root) {
        for (std::size_t i = 0; i < n; ++i) {
          expect(data[i] == sum_of_contributions<std::int64_t>(w, i), "reduce to root " + std::to_string(root));
        }
      }
      std::vector<float> b(n, -1.0F);
      if (comm.rank() == root) {
        for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<float>(i) * 0.5F + static_cast<float>(root);
      }
      broadcast(comm, std::span<float>(b), root);
      for (std::size_t i = 0; i < n; ++i) {
        expect(b[i] == static_cast<float>(i) * 0.5F + static_cast<float>(root),
               "broadcast from root " + std::to_string(root));
      }
    }
  }
}

template <class Transport>
void check_allgather(Transport& t) {
  communicator comm(t);
  const auto w = static_cast<std::size_t>(comm.size());
  for (const std::size_t n : conformance_lengths) {
    std::vector<std::int32_t> mine(n);
    for (std::size_t i = 0; i < n; ++i) mine[i] = contribution<std::int32_t>(comm.rank(), i);
    std::vector<std::int32_t> all(w * n);
    allgather(comm, std::span<const std::int32_t>(mine), std::span<std::int32_t>(all));
    for (std::size_t r = 0; r < w; ++r) {
      for (std::size_t i = 0; i < n; ++i) {
        expect(all[r * n + i] == contribution<std::int32_t>(static_cast<int>(r), i), "allgather");
      }
    }
  }
  // allgatherv: rank r contributes (r * 1700) % 4001 elements, rank 0 none.
  const auto count_of = [](std::size_t r) { return (r * 1700) % 4001; };
  std::vector<std::uint64_t> mine(count_of(static_cast<std::size_t>(comm.rank())));
  for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = (static_cast<std::uint64_t>(comm.rank()) << 32U) | i;
  const auto got = allgatherv(comm, std::span<const std::uint64_t>(mine), {.segment_bytes = small_segment_bytes});
  expect(got.offsets.size() == w + 1, "allgatherv offsets");
  for (std::size_t r = 0; r < w; ++r) {
    const auto part = got.of(static_cast<int>(r));
    expect(part.size() == count_of(r), "allgatherv size of rank " + std::to_string(r));
    for (std::size_t i = 0; i < part.size(); ++i) expect(part[i] == ((r << 32U) | i), "allgatherv value");
  }
  // A limit below the announced total is refused before allocating.
  if (w > 1) {
    std::vector<std::uint64_t> two(2);
    bool refused = false;
    try {
      (void)allgatherv(comm, std::span<const std::uint64_t>(two), {.max_total_elements = 2 * w - 1});
    } catch (const transport_error&) {
      refused = true;
    }
    expect(refused, "allgatherv accepted more than max_total_elements");
  }
}

template <class Transport>
void check_barrier(Transport& t, std::atomic<int>* arrived) {
  communicator comm(t);
  for (int round = 1; round <= 3; ++round) {
    if (arrived != nullptr) arrived->fetch_add(1);
    barrier(comm);
    if (arrived != nullptr) {
      expect(arrived->load() >= round * comm.size(), "a rank left the barrier before every rank entered");
    }
    barrier(comm);  // keep the next round's increments after everyone checked
  }
}

/// Receives posted in one order match sends made in another, by tag; and
/// messages with one tag keep their order.
template <class Transport>
void check_tags_and_ordering(Transport& t) {
  const int w = static_cast<int>(t.size());
  if (w < 2) return;
  const int r = static_cast<int>(t.rank());
  const int peer = r ^ 1;
  if (peer >= w) return;  // the odd rank out of an odd world sits this one out
  std::vector<std::uint32_t> out(4);
  for (std::uint32_t i = 0; i < 4; ++i) out[i] = static_cast<std::uint32_t>(r) * 100 + i;
  std::vector<std::uint32_t> in(4, 0);
  const auto b = [](std::uint32_t& x) { return std::as_writable_bytes(std::span<std::uint32_t>(&x, 1)); };
  const auto cb = [](const std::uint32_t& x) { return std::as_bytes(std::span<const std::uint32_t>(&x, 1)); };
  // Two messages on tag 7, then one on tag 9 and one on tag 8.
  auto s0 = t.isend(peer, 7, cb(out[0]));
  auto s1 = t.isend(peer, 7, cb(out[1]));
  auto s2 = t.isend(peer, 9, cb(out[2]));
  auto s3 = t.isend(peer, 8, cb(out[3]));
  // Receive tag 8 first, then 9, then the two tag-7 messages in order.
  auto r3 = t.irecv(peer, 8, b(in[3]));
  auto r2 = t.irecv(peer, 9, b(in[2]));
  auto r0 = t.irecv(peer, 7, b(in[0]));
  auto r1 = t.irecv(peer, 7, b(in[1]));
  for (auto* q : {&r3, &r2, &r0, &r1}) q->wait();
  for (auto* q : {&s0, &s1, &s2, &s3}) q->wait();
  for (std::uint32_t i = 0; i < 4; ++i) {
    expect(in[i] == static_cast<std::uint32_t>(peer) * 100 + i, "message " + std::to_string(i) + " misrouted");
  }
}

/// A receive whose size differs from the message is a transport_error.
/// Run last: after a transport_error a transport may need recreating.
template <class Transport>
void check_size_mismatch(Transport& t) {
  const int w = static_cast<int>(t.size());
  const int r = static_cast<int>(t.rank());
  const int peer = r ^ 1;
  if (w < 2 || peer >= w) return;
  std::uint64_t eight = 42;
  auto send = t.isend(peer, 11, std::as_bytes(std::span<const std::uint64_t>(&eight, 1)));
  std::uint32_t four = 0;
  bool refused = false;
  try {
    auto recv = t.irecv(peer, 11, std::as_writable_bytes(std::span<std::uint32_t>(&four, 1)));
    recv.wait();
  } catch (const transport_error&) {
    refused = true;
  }
  try {
    send.wait();
  } catch (const transport_error&) {
  }
  expect(refused, "a 4-byte receive accepted an 8-byte message");
}

}  // namespace sketchsgd::test
