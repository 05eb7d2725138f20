// SPDX-License-Identifier: Apache-2.0
// The 16-bit formats of the allreduce wire (sketchsgd/half.hpp): every
// binary16 and bfloat16 value converts to float and back unchanged, and
// float to either rounds to the nearest value, ties to even, checked against
// a search over the format's ordered values.

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "sketchsgd/half.hpp"
#include "sketchsgd/hash/seed_mixer.hpp"

using namespace sketchsgd;

namespace {

// The nearest of the non-negative values decode(0) .. decode(largest) (in
// increasing order) to |x|, ties to the even bit pattern; `overflow` from
// where the rounded magnitude is infinity.
template <class Decode>
std::uint16_t nearest(float x, Decode decode, std::uint16_t largest, double overflow, std::uint16_t infinity) {
  const double a = std::fabs(static_cast<double>(x));
  const std::uint16_t sign = std::signbit(x) ? 0x8000U : 0U;
  if (a >= overflow) return static_cast<std::uint16_t>(sign | infinity);
  std::uint32_t lo = 0;
  std::uint32_t hi = largest;
  while (lo < hi) {  // the largest h with decode(h) <= a
    const std::uint32_t mid = (lo + hi + 1) / 2;
    if (static_cast<double>(decode(static_cast<std::uint16_t>(mid))) <= a) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  std::uint32_t h = lo;
  if (h < largest) {
    const double below = a - decode(static_cast<std::uint16_t>(h));
    const double above = static_cast<double>(decode(static_cast<std::uint16_t>(h + 1))) - a;
    if (above < below || (above == below && (h & 1U) != 0)) ++h;
  }
  return static_cast<std::uint16_t>(sign | h);
}

float random_float(splitmix64& rng) {
  // Every exponent equally likely: finite floats of all magnitudes.
  auto bits = static_cast<std::uint32_t>(rng.next());
  while ((bits & 0x7F800000U) == 0x7F800000U) bits = static_cast<std::uint32_t>(rng.next());
  return std::bit_cast<float>(bits);
}

}  // namespace

static_assert(to_float16(1.0F) == 0x3C00U && to_float16(-2.0F) == 0xC000U && to_float16(65504.0F) == 0x7BFFU);
static_assert(to_float16(65520.0F) == 0x7C00U && to_float16(0x1.0p-24F) == 0x0001U && to_float16(0x1.0p-25F) == 0);
static_assert(to_bfloat16(1.0F) == 0x3F80U && from_bfloat16(0x3F80U) == 1.0F && from_float16(0x3C00U) == 1.0F);

TEST_CASE("every float16 and bfloat16 value converts to float and back unchanged", "[half]") {
  for (std::uint32_t h = 0; h <= 0xFFFFU; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    CAPTURE(h);
    const float f16 = from_float16(bits);
    const float b16 = from_bfloat16(bits);
    const std::uint32_t e = (h >> 10U) & 0x1FU;
    const std::uint32_t m = h & 0x3FFU;
    if (e != 0x1FU) {  // the value by its definition, in double: (e ? 1024 + m : m) 2^(max(e, 1) - 25)
      const double magnitude = std::ldexp(e != 0 ? 1024.0 + m : m, static_cast<int>(std::max(e, 1U)) - 25);
      REQUIRE(static_cast<double>(f16) == ((h & 0x8000U) != 0 ? -magnitude : magnitude));
      REQUIRE(std::signbit(f16) == ((h & 0x8000U) != 0));
    }
    if ((h & 0x7C00U) == 0x7C00U && (h & 0x03FFU) != 0) {
      REQUIRE(std::isnan(f16));
      REQUIRE((to_float16(f16) & 0x7E00U) == 0x7E00U);  // stays a (quiet) NaN
    } else {
      REQUIRE(to_float16(f16) == bits);
    }
    if ((h & 0x7F80U) == 0x7F80U && (h & 0x007FU) != 0) {
      REQUIRE(std::isnan(b16));
      REQUIRE((to_bfloat16(b16) & 0x7FC0U) == 0x7FC0U);
    } else {
      REQUIRE(to_bfloat16(b16) == bits);
    }
  }
}

TEST_CASE("float to float16 and bfloat16 rounds to nearest, ties to even", "[half]") {
  splitmix64 rng(11);
  for (int t = 0; t < 200000; ++t) {
    float x = random_float(rng);
    if (t % 4 == 1) x = std::ldexp(x, -std::ilogb(x) + static_cast<int>(rng.next_below(50)) - 30);  // fp16's range
    if (t % 4 == 2) {  // exactly halfway between two float16 values: a tie
      const auto h = static_cast<std::uint16_t>(rng.next_below(0x7BFFU));
      x = static_cast<float>((static_cast<double>(from_float16(h)) + from_float16(static_cast<std::uint16_t>(h + 1))) /
                             2);
    }
    CAPTURE(x);
    REQUIRE(to_float16(x) == nearest(x, from_float16, 0x7BFFU, 65520.0, 0x7C00U));
    REQUIRE(to_bfloat16(x) == nearest(x, from_bfloat16, 0x7F7FU, 0x1.FFp127, 0x7F80U));
  }
  CHECK(to_float16(std::numeric_limits<float>::infinity()) == 0x7C00U);
  CHECK(to_bfloat16(-std::numeric_limits<float>::infinity()) == 0xFF80U);
  CHECK(std::isnan(from_float16(to_float16(std::numeric_limits<float>::quiet_NaN()))));
}
