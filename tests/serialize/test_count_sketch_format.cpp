// SPDX-License-Identifier: Apache-2.0
// Serialization of count_sketch: golden bytes per serial version, round
// trips, and every malformed-input path naming its field.

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "sketchsgd/sketchsgd.hpp"
#include "test_support.hpp"

using namespace sketchsgd;

namespace {

template <class Sketch>
Sketch golden_sketch() {
  using value = typename Sketch::value_type;
  Sketch s({.rows = 3, .cols = 16, .seed = 0x0123456789ABCDEFULL});
  std::vector<value> x(100);
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<value>(static_cast<double>(i % 17) * 0.25 * (i % 2 == 0 ? 1 : -1) *
                              (std::is_integral_v<value> ? 4 : 1));
  }
  s.accumulate(x);
  return s;
}

std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  const std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

// Compares with tests/data/<name>; SKETCHSGD_WRITE_GOLDEN=1 (re)creates the
// file, which is only ever right when a new serial version is introduced.
template <class Sketch>
void check_golden(const Sketch& s, const std::string& name) {
  const std::string path = std::string(SKETCHSGD_TEST_DATA_DIR) + "/" + name;
  const std::vector<std::byte> bytes = serialize(s);
  if (std::getenv("SKETCHSGD_WRITE_GOLDEN") != nullptr) {  // NOLINT(concurrency-mt-unsafe): single-threaded test
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  CAPTURE(path);
  const std::vector<std::byte> golden = read_file(path);
  CHECK(bytes == golden);
  CHECK(deserialize<Sketch>(golden) == s);
}

std::vector<std::byte> valid_blob() { return serialize(golden_sketch<count_sketch<float>>()); }

// Runs `f`, which must throw a serialization_error whose message contains `needle`.
template <class F>
void expect_serialization_error(F&& f, const std::string& needle) {
  try {
    f();
    FAIL("no serialization_error thrown; expected one mentioning " << needle);
  } catch (const serialization_error& e) {
    CHECK_THAT(e.what(), Catch::Contains(needle));
  }
}

template <class Sketch = count_sketch<float>>
void expect_field_error(const std::vector<std::byte>& bytes, const std::string& field) {
  CAPTURE(field, bytes.size());
  expect_serialization_error([&] { (void)deserialize<Sketch>(bytes); }, "'" + field + "'");
}

}  // namespace

TEST_CASE("serial version 1 golden files", "[serialize]") {
  check_golden(golden_sketch<count_sketch<float>>(), "count_sketch_v1_float32_multiply_shift.bin");
  check_golden(golden_sketch<count_sketch<double, poly4_hash>>(), "count_sketch_v1_float64_poly4.bin");
  check_golden(golden_sketch<count_sketch<std::int32_t>>(), "count_sketch_v1_int32_multiply_shift.bin");
  check_golden(golden_sketch<count_sketch<std::int64_t, poly4_hash>>(), "count_sketch_v1_int64_poly4.bin");
  check_golden(count_sketch<float>({.rows = 5, .cols = 1000, .seed = 7}), "count_sketch_v1_float32_empty.bin");
}

TEST_CASE("the preamble is laid out as documented", "[serialize]") {
  const auto b = valid_blob();
  REQUIRE(b.size() == 24 + 3 * 16 * 4);
  const std::vector<unsigned> head = {24, 1, 1, 0, 1,    1,    0,    0,    3,    0,    0,    0,
                                      16, 0, 0, 0, 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01};
  for (std::size_t i = 0; i < head.size(); ++i) CHECK(static_cast<unsigned>(b[i]) == head[i]);
  const auto empty = serialize(count_sketch<std::int64_t, poly4_hash>({.rows = 2, .cols = 9, .seed = 1}));
  CHECK(empty.size() == 24);
  CHECK(static_cast<unsigned>(empty[3]) == 1);  // empty flag
  CHECK(static_cast<unsigned>(empty[4]) == 4);  // int64
  CHECK(static_cast<unsigned>(empty[5]) == 2);  // poly4_hash
}

TEMPLATE_TEST_CASE("round trips are exact", "[serialize]", (count_sketch<float, multiply_shift>),
                   (count_sketch<double, poly4_hash>), (count_sketch<std::int32_t, poly4_hash>),
                   (count_sketch<std::int64_t, multiply_shift>)) {
  const auto s = golden_sketch<TestType>();
  CHECK(deserialize<TestType>(serialize(s)) == s);
  std::stringstream stream;
  serialize(s, stream);
  serialize(TestType({.rows = 1, .cols = 1, .seed = 2}), stream);  // two back to back
  CHECK(deserialize<TestType>(stream) == s);
  CHECK(deserialize<TestType>(stream) == TestType({.rows = 1, .cols = 1, .seed = 2}));
}

TEST_CASE("a negative zero is not an empty sketch", "[serialize]") {
  count_sketch<float> s({.rows = 1, .cols = 2, .seed = 0});
  s.table()[1] = -0.0F;
  const auto b = serialize(s);
  CHECK(b.size() == 24 + 8);
  CHECK(std::signbit(deserialize<count_sketch<float>>(b).table()[1]));
}

TEST_CASE("malformed input names the offending field", "[serialize]") {
  const auto good = valid_blob();
  auto with = [&](std::size_t at, unsigned v) {
    auto b = good;
    b[at] = static_cast<std::byte>(v);
    return b;
  };
  auto with_u32 = [&](std::size_t at, std::uint32_t v) {
    auto b = good;
    wire::store_le(b.data() + at, v);
    return b;
  };
  expect_field_error({}, "size");
  expect_field_error(std::vector<std::byte>(good.begin(), good.begin() + 7), "size");
  expect_field_error(with(2, 9), "family");
  expect_field_error(with(1, 2), "serial_version");
  expect_field_error(with(0, 32), "preamble_length");
  expect_field_error(with(3, 0x80), "flags");
  expect_field_error<count_sketch<double>>(good, "value_type");  // float bytes read as double
  CHECK_THROWS_WITH(deserialize<count_sketch<double>>(good), Catch::Contains("float64") && Catch::Contains("float32"));
  expect_field_error<count_sketch<float, poly4_hash>>(good, "hash_family");
  expect_field_error(with(6, 1), "reserved");
  expect_field_error(std::vector<std::byte>(good.begin(), good.begin() + 20), "size");
  expect_field_error(with_u32(8, 0), "rows");
  expect_field_error(with_u32(8, 1000), "rows");
  expect_field_error(with_u32(12, 0), "cols");
  expect_field_error(with_u32(12, 0xFFFFFFFFU), "cols");
  // 3 x 2^31 floats would be 24 GiB: refused by the size check, not by an allocation.
  expect_field_error(with_u32(12, 0x80000000U), "size");
  expect_field_error(std::vector<std::byte>(good.begin(), good.end() - 1), "size");
  auto trailing = good;
  trailing.push_back(std::byte{0});
  expect_field_error(trailing, "size");
  auto empty_with_table = with(3, 1);  // flagged empty yet carrying a table
  expect_field_error(empty_with_table, "size");
}

TEST_CASE("stream readers cap the table and stop at the end of the data", "[serialize]") {
  const auto good = valid_blob();
  const std::string bytes(reinterpret_cast<const char*>(good.data()), good.size());
  {
    std::istringstream truncated(bytes.substr(0, bytes.size() - 3));
    expect_serialization_error([&] { (void)deserialize<count_sketch<float>>(truncated); }, "stream ending after");
  }
  {
    std::istringstream in(bytes);
    expect_serialization_error([&] { (void)deserialize<count_sketch<float>>(in, {.max_table_bytes = 100}); },
                               "at most 100");
  }
  {
    // A header announcing 2^31 columns followed by nothing: fails after at
    // most one chunk, with no 8 GiB allocation.
    auto lying = good;
    wire::store_le(lying.data() + 12, std::uint32_t{0x80000000U});
    lying.resize(24);
    std::istringstream in(std::string(reinterpret_cast<const char*>(lying.data()), lying.size()));
    CHECK_THROWS_AS(deserialize<count_sketch<float>>(in, {.max_table_bytes = std::uint64_t{1} << 40U}),
                    serialization_error);
  }
  {
    std::istringstream short_header(bytes.substr(0, 5));
    CHECK_THROWS_AS(deserialize<count_sketch<float>>(short_header), serialization_error);
  }
}

TEST_CASE("random corruption never crashes: it parses or throws serialization_error", "[serialize]") {
  const auto good = valid_blob();
  splitmix64 rng(2024);
  for (int trial = 0; trial < 20000; ++trial) {
    auto b = good;
    const auto flips = 1 + rng.next_below(4);
    for (std::uint64_t f = 0; f < flips; ++f) {
      b[rng.next_below(b.size())] = static_cast<std::byte>(rng.next() & 0xFFU);
    }
    if (rng.next_below(4) == 0) b.resize(rng.next_below(b.size() + 8));
    try {
      (void)deserialize<count_sketch<float>>(b);
    } catch (const serialization_error&) {
    }
  }
  SUCCEED("no crash, no other exception");
}
