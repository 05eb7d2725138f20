// SPDX-License-Identifier: Apache-2.0
// Regression tests for what the fuzzers found (docs/reliability.md), so that
// the fixes stay in place in every build, not only when fuzzing.

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "sketchsgd/hash/multiply_shift.hpp"
#include "sketchsgd/serialize/count_sketch_format.hpp"
#if defined(SKETCHSGD_TEST_HAVE_TCP)
#include "sketchsgd/transport/tcp_protocol.hpp"
#endif

using namespace sketchsgd;

TEST_CASE("an empty sketch announcing a huge table is refused before allocating", "[reliability][serialize]") {
  // 24 bytes: float32, multiply_shift, flag "empty", 64 rows x 2^31 columns:
  // a 512 GiB table that the old reader allocated.
  std::array<std::byte, 24> bytes{};
  bytes[0] = std::byte{24};
  bytes[1] = std::byte{1};
  bytes[2] = std::byte{1};
  bytes[3] = std::byte{1};
  bytes[4] = std::byte{1};
  bytes[5] = std::byte{1};
  wire::store_le(bytes.data() + 8, std::uint32_t{64});
  wire::store_le(bytes.data() + 12, std::uint32_t{1} << 31U);
  using sketch = count_sketch<float, multiply_shift>;
  CHECK_THROWS_WITH(deserialize<sketch>(std::span<const std::byte>(bytes)),
                    Catch::Contains("an empty table of at most 1073741824 bytes"));
  std::istringstream stream(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  CHECK_THROWS_WITH(deserialize<sketch>(stream), Catch::Contains("a table of at most 1073741824 bytes"));
  // Within the limit, an empty sketch still loads.
  wire::store_le(bytes.data() + 8, std::uint32_t{2});
  wire::store_le(bytes.data() + 12, std::uint32_t{1000});
  const auto small = deserialize<sketch>(std::span<const std::byte>(bytes));
  CHECK(small.config().cells() == 2000);
  CHECK_THROWS_AS(deserialize<sketch>(std::span<const std::byte>(bytes), {.max_table_bytes = 7999}),
                  serialization_error);
}

#if defined(SKETCHSGD_TEST_HAVE_TCP)
TEST_CASE("handshake messages with non-zero reserved bytes are refused", "[reliability][tcp]") {
  namespace p = tcp_protocol;
  const p::server_hello server{2, p::fresh_nonce()};
  for (const std::size_t at : {5U, 6U, 7U}) {
    auto b = server.encode();
    CHECK_NOTHROW(p::server_hello::decode(b));
    b[at] = std::byte{1};
    CHECK_THROWS_WITH(p::server_hello::decode(b), Catch::Contains("reserved bytes are not zero"));
  }
  p::client_hello client;
  client.rank = 1;
  client.world_size = 3;
  for (const std::size_t at : {5U, 7U, 18U, 23U}) {
    auto b = client.encode();
    CHECK_NOTHROW(p::client_hello::decode(b));
    b[at] = std::byte{0x80};
    CHECK_THROWS_WITH(p::client_hello::decode(b), Catch::Contains("reserved bytes are not zero"));
  }
  p::listen_table table;
  table.entries = {{std::string(65, 'h'), 1}};
  CHECK_THROWS_AS(table.encode(), std::invalid_argument);
}
#endif
