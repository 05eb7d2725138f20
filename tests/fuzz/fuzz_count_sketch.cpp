// SPDX-License-Identifier: Apache-2.0
// Fuzz target: count_sketch deserialize (serialize/count_sketch_format.hpp),
// from a span and from a stream, for every value type and hash family.
// Properties beyond "no crash, no leak, no unbounded allocation":
//  - only serialization_error escapes;
//  - a sketch that loads re-serializes to bytes that load to the same sketch,
//    and to the input itself unless the input spelled out an all-zero table;
//  - the stream reader accepts exactly what the span reader accepts on the
//    bytes it consumed, with the same result.

#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>

#include "fuzz_support.hpp"
#include "sketchsgd/hash/multiply_shift.hpp"
#include "sketchsgd/hash/poly4_hash.hpp"
#include "sketchsgd/serialize/count_sketch_format.hpp"

namespace {

using namespace sketchsgd;

/// The limit the stream reader runs under here (the default is 1 GiB, which
/// libFuzzer's -malloc_limit_mb would rightly call unbounded).
constexpr deserialize_limits limits{.max_table_bytes = std::uint64_t{1} << 20U};

template <class Sketch>
bool same_bits(const Sketch& a, const Sketch& b) {
  const auto x = std::as_bytes(a.table());
  const auto y = std::as_bytes(b.table());
  return a.config() == b.config() && x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size()) == 0;
}

template <class Sketch>
void one_type(std::span<const std::byte> in) {
  bool span_ok = false;
  try {
    const auto s = deserialize<Sketch>(in, limits);
    span_ok = true;
    const auto again = serialize(s);
    fuzz::check(same_bits(deserialize<Sketch>(std::span<const std::byte>(again), limits), s),
                "re-serialized sketch loads differently");
    const bool spelled_zero_table = (static_cast<unsigned>(in[3]) & 1U) == 0 && again.size() != in.size();
    if (!spelled_zero_table) {
      fuzz::check(again.size() == in.size() && std::memcmp(again.data(), in.data(), in.size()) == 0,
                  "re-serialized bytes differ from the input");
    }
  } catch (const serialization_error&) {
  }

  std::istringstream stream(std::string(reinterpret_cast<const char*>(in.data()), in.size()));
  try {
    const auto s = deserialize<Sketch>(stream, limits);
    const auto consumed = static_cast<std::size_t>(stream.tellg() < 0 ? static_cast<std::streamoff>(in.size())
                                                                      : static_cast<std::streamoff>(stream.tellg()));
    fuzz::check(consumed <= in.size(), "stream reader consumed more than the input");
    const auto prefix = deserialize<Sketch>(in.first(consumed), limits);  // must not throw
    fuzz::check(same_bits(prefix, s), "stream and span readers disagree");
    if (consumed == in.size()) fuzz::check(span_ok, "stream reader accepted what the span reader refused");
  } catch (const serialization_error&) {
    fuzz::check(!span_ok, "stream reader refused what the span reader accepted");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto in = fuzz::bytes_of(data, size);
  one_type<count_sketch<float, multiply_shift>>(in);
  one_type<count_sketch<double, multiply_shift>>(in);
  one_type<count_sketch<std::int32_t, multiply_shift>>(in);
  one_type<count_sketch<std::int64_t, multiply_shift>>(in);
  one_type<count_sketch<float, poly4_hash>>(in);
  one_type<count_sketch<double, poly4_hash>>(in);
  one_type<count_sketch<std::int32_t, poly4_hash>>(in);
  one_type<count_sketch<std::int64_t, poly4_hash>>(in);
  return 0;
}
