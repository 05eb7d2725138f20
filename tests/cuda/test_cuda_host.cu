// SPDX-License-Identifier: Apache-2.0
// Host-side tests of the CUDA part, run with or without a GPU: the device
// restatements of CPU code (magnitude keys, std::midpoint, the median)
// against the CPU originals, the workspace layout, device_span bounds, the
// transport trait, CUDA failures surfacing as cuda_error, and device update
// rules checking their options before any CUDA call. (Each .cuh
// header is also compiled on its own: the header-check library in
// CMakeLists.txt.)

#include <sketchsgd/cuda/arithmetic.cuh>
#include <sketchsgd/cuda/count_sketch.cuh>
#include <sketchsgd/cuda/cuda.cuh>
#include <sketchsgd/cuda/error.cuh>
#include <sketchsgd/cuda/memory.cuh>
#include <sketchsgd/cuda/optim_kernels.cuh>
#include <sketchsgd/cuda/sketch_kernels.cuh>
#include <sketchsgd/cuda/sketched_sgd.cuh>
#include <sketchsgd/cuda/staging.cuh>
#include <sketchsgd/cuda/topk.cuh>
#include <sketchsgd/cuda/topk_kernels.cuh>
#include <sketchsgd/cuda/tuning.cuh>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <type_traits>
#include <vector>

#include "../test_support.hpp"
#include "gpu_probe.hpp"
#include "sketchsgd/sketchsgd.hpp"

using namespace sketchsgd;

namespace {

template <class Value>
std::vector<Value> edge_values() {
  std::vector<Value> v{Value{0},
                       Value{1},
                       Value{2},
                       Value{3},
                       std::numeric_limits<Value>::max(),
                       std::numeric_limits<Value>::lowest(),
                       std::numeric_limits<Value>::min()};
  if constexpr (std::is_floating_point_v<Value>) {
    for (const Value x :
         {Value(-0.0), std::numeric_limits<Value>::denorm_min(), -std::numeric_limits<Value>::denorm_min(),
          std::numeric_limits<Value>::infinity(), -std::numeric_limits<Value>::infinity(),
          std::numeric_limits<Value>::quiet_NaN(), -std::numeric_limits<Value>::quiet_NaN(),
          std::numeric_limits<Value>::max() / 2, std::numeric_limits<Value>::min() * 2, Value(-1.5), Value(2.5)}) {
      v.push_back(x);
    }
    for (const Value x : test::normal_vector<Value>(200, 1)) v.push_back(x);
    for (const Value x : test::normal_vector<Value>(50, 2)) v.push_back(x * std::numeric_limits<Value>::min());
  } else {
    v.push_back(Value{-1});
    v.push_back(std::numeric_limits<Value>::lowest() + 1);
    for (const Value x : test::integer_vector<Value>(200, 1'000'000, 3)) v.push_back(x);
  }
  return v;
}

/// Equal bits, or both NaN: which NaN an operation on two NaNs returns is
/// up to the hardware and the compiler's operand order (GPUs return the
/// canonical NaN), so NaN bits are not part of the contract.
template <class Value>
bool same_bits(Value a, Value b) {
  if constexpr (std::is_floating_point_v<Value>) {
    using bits = std::conditional_t<sizeof(Value) == 4, std::uint32_t, std::uint64_t>;
    if (std::isnan(a) && std::isnan(b)) return true;
    return std::bit_cast<bits>(a) == std::bit_cast<bits>(b);
  } else {
    return a == b;
  }
}

}  // namespace

TEMPLATE_TEST_CASE("magnitude_bits is the CPU's magnitude key", "[cuda][host]", float, double, std::int32_t,
                   std::int64_t) {
  for (const TestType v : edge_values<TestType>()) {
    INFO(v);
    REQUIRE(detail::magnitude_bits(v) == detail::magnitude_key<TestType>::of(v));
  }
}

TEMPLATE_TEST_CASE("midpoint_like_std is std::midpoint bit for bit", "[cuda][host]", float, double, std::int32_t,
                   std::int64_t) {
  const auto v = edge_values<TestType>();
  for (const TestType a : v) {
    for (const TestType b : v) {
      INFO(a << " " << b);
      REQUIRE(same_bits(detail::midpoint_like_std(a, b), std::midpoint(a, b)));
    }
  }
}

TEMPLATE_TEST_CASE("median_like_cpu is detail::median_in_place bit for bit", "[cuda][host]", float, std::int32_t) {
  splitmix64 rng(5);
  auto pool = edge_values<TestType>();
  for (std::uint32_t n = 1; n <= 64; ++n) {
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<TestType> a(n);
      for (auto& x : a) x = pool[static_cast<std::size_t>(rng.next_below(pool.size()))];
      std::vector<TestType> b = a;
      INFO("n " << n << " trial " << trial);
      REQUIRE(same_bits(detail::median_like_cpu(a.data(), n), detail::median_in_place(b.data(), n)));
    }
  }
}

TEST_CASE("workspace layout", "[cuda][host]") {
  detail::workspace_carver measure;
  REQUIRE(measure.take<float>(1) == nullptr);
  REQUIRE(measure.used() == detail::workspace_alignment);
  (void)measure.take<double>(1000);
  REQUIRE(measure.used() == detail::workspace_alignment + detail::workspace_round(8000));
  alignas(256) static std::byte arena[4096];
  detail::workspace_carver carve(arena);
  auto* const a = carve.take<std::uint32_t>(3);
  auto* const b = carve.take<std::uint64_t>(5);
  REQUIRE(reinterpret_cast<std::byte*>(a) == arena);
  REQUIRE(reinterpret_cast<std::byte*>(b) == arena + detail::workspace_alignment);

  // Top-k scratch grows with n by about 24 bytes per 4096-element tile.
  const std::size_t small = top_k_workspace_bytes<float>(1000);
  const std::size_t big = top_k_workspace_bytes<float>(100'000'000);
  REQUIRE(small < big);
  REQUIRE(big < small + 100'000'000 / 4096 * 24 + 4 * detail::workspace_alignment);
  REQUIRE(detail::cuda_tuning::grid_for(0, 256) == 1);
  REQUIRE(detail::cuda_tuning::grid_for(257, 256) == 2);
}

TEST_CASE("device_span bounds and conversions", "[cuda][host]") {
  float storage[10]{};
  const device_span<float> s(storage, 10);
  const device_span<const float> c = s;  // to const
  REQUIRE(c.size() == 10);
  REQUIRE(s.subspan(3).size() == 7);
  REQUIRE(s.subspan(3, 2).data() == storage + 3);
  REQUIRE(s.first(4).size_bytes() == 16);
  REQUIRE_THROWS_AS(s.subspan(11), std::out_of_range);
  REQUIRE_THROWS_AS(s.subspan(5, 6), std::out_of_range);
  REQUIRE_THROWS_AS(s.first(11), std::out_of_range);
  STATIC_REQUIRE(!std::is_convertible_v<device_span<float>, std::span<float>>);
  STATIC_REQUIRE(!std::is_convertible_v<device_span<const float>, device_span<float>>);
}

namespace cuda_host_test {
/// A transport whose native allreduce would take device pointers.
struct device_aware_transport : inproc_transport {
  void allreduce(std::span<float> /*data*/) {}
  void allgather(std::span<const float> /*in*/, std::span<float> /*out*/) {}
  void broadcast(std::span<float> /*data*/, int /*root*/) {}
  void barrier() {}
};
}  // namespace cuda_host_test

namespace sketchsgd {
template <>
struct transport_reads_device_memory<cuda_host_test::device_aware_transport> : std::true_type {};
}  // namespace sketchsgd

TEST_CASE("transport_reads_device_memory defaults to false", "[cuda][host]") {
  STATIC_REQUIRE(!transport_reads_device_memory_v<inproc_transport>);
  STATIC_REQUIRE(transport_reads_device_memory_v<cuda_host_test::device_aware_transport>);
}

TEST_CASE("CUDA failures are cuda_error, a sketchsgd::error", "[cuda][host]") {
  const cuda_error e(cudaErrorInvalidValue, "doing something");
  REQUIRE(e.code() == cudaErrorInvalidValue);
  REQUIRE(std::string(e.what()).find("doing something: cudaErrorInvalidValue") == 0);
  STATIC_REQUIRE(std::is_base_of_v<error, cuda_error>);
  REQUIRE_THROWS_AS(detail::cuda_check(cudaErrorMemoryAllocation, "x"), cuda_error);
  REQUIRE_NOTHROW(detail::cuda_check(cudaSuccess, "x"));

  // Without a usable GPU the first device operation throws cuda_error (never
  // crashes); with one it works. Either way the outcome matches the probe.
  const bool gpu = test::cuda_unavailable_reason().empty();
  const sketch_config cfg{.rows = 3, .cols = 100, .seed = 1};
  if (gpu) {
    const count_sketch<float, multiply_shift, cuda_t> s(cfg);
    REQUIRE(s.to_cpu() == count_sketch<float>(cfg));
  } else {
    REQUIRE_THROWS_AS((count_sketch<float, multiply_shift, cuda_t>(cfg)), cuda_error);
  }
  // Bad arguments are std::invalid_argument before any CUDA call.
  REQUIRE_THROWS_AS((count_sketch<float, multiply_shift, cuda_t>(sketch_config{.rows = 0, .cols = 10, .seed = 1})),
                    std::invalid_argument);
}

TEST_CASE("device update rules: update_rules, options checked before any CUDA call", "[cuda][host]") {
  STATIC_REQUIRE(update_rule<momentum_update<float, cuda_t>, float>);
  STATIC_REQUIRE(update_rule<adam_update<double, cuda_t>, double>);
  STATIC_REQUIRE(std::is_same_v<detail::rule_device<adam_update<float, cuda_t>>, cuda_t>);
  STATIC_REQUIRE(std::is_same_v<detail::rule_device<sgd_update<float>>, cpu_t>);
  REQUIRE_THROWS_AS((momentum_update<float, cuda_t>({.weight_decay = -1.0F}, 10, "t")), std::invalid_argument);
  REQUIRE_THROWS_AS((adam_update<float, cuda_t>({.beta1 = 1.0F}, 10, "t")), std::invalid_argument);
  if (test::cuda_unavailable_reason().empty()) {
    REQUIRE_NOTHROW(adam_update<float, cuda_t>({}, 10, "t"));
  } else {  // the state is made on the device: without one, cuda_error
    REQUIRE_THROWS_AS((adam_update<float, cuda_t>({}, 10, "t")), cuda_error);
  }
}
