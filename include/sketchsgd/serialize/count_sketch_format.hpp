// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Serialization of a CPU `count_sketch`, serial version 1.
///
/// Layout (all fields little-endian):
///
/// | offset | bytes | field                                                  |
/// |-------:|------:|--------------------------------------------------------|
/// |      0 |     1 | preamble length in bytes = 24                          |
/// |      1 |     1 | serial version = 1                                     |
/// |      2 |     1 | family = 1 (count_sketch)                              |
/// |      3 |     1 | flags: bit 0 = empty (all cells zero, table omitted)   |
/// |      4 |     1 | value type: 1 float32, 2 float64, 3 int32, 4 int64     |
/// |      5 |     1 | hash family id (1 multiply_shift, 2 poly4_hash)        |
/// |      6 |     2 | reserved, zero                                         |
/// |      8 |     4 | rows                                                   |
/// |     12 |     4 | cols                                                   |
/// |     16 |     8 | seed                                                   |
/// |     24 |     * | rows * cols cells, row-major (absent when empty)       |
///
/// A reader checks, in this order: minimum size, family, version, preamble
/// length, flags, value type, hash id, reserved bytes, sane rows and cols,
/// exact total size. Each failure is a `serialization_error` naming the field,
/// the expected and the found value. No allocation happens before the sizes
/// are known to match the input (or, for streams, are below a caller's cap and
/// actually arrive).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sketchsgd/error.hpp"
#include "sketchsgd/serialize/wire.hpp"
#include "sketchsgd/sketch/count_sketch.hpp"

namespace sketchsgd {

namespace detail {

template <class T>
struct is_cpu_count_sketch : std::false_type {};
template <sketch_value Value, hash_family HashFamily>
struct is_cpu_count_sketch<count_sketch<Value, HashFamily, cpu_t>> : std::true_type {};

inline constexpr std::size_t count_sketch_preamble_bytes = 24;
inline constexpr std::uint8_t flag_empty = 0x01;

[[noreturn]] inline void bad_field(const char* field, const std::string& expected, const std::string& got) {
  throw serialization_error(std::string("count_sketch deserialize: field '") + field + "': expected " + expected +
                            ", got " + got);
}

}  // namespace detail

/// A `count_sketch` on the CPU, any value type and hash family.
template <class T>
concept cpu_count_sketch = detail::is_cpu_count_sketch<T>::value;

/// Limits a reader enforces on untrusted input.
struct deserialize_limits {
  /// Largest table, in bytes, that a reader allocates (default 1 GiB): every
  /// table read from a stream, and from a span the table of an empty sketch,
  /// which 24 bytes can announce at up to 64 x 2^31 cells.
  std::uint64_t max_table_bytes = std::uint64_t{1} << 30U;
};

/// The serialized size of `sketch` in bytes.
template <cpu_count_sketch Sketch>
[[nodiscard]] std::size_t serialized_size(const Sketch& sketch) noexcept {
  const auto cells = std::as_bytes(sketch.table());
  const bool empty = std::all_of(cells.begin(), cells.end(), [](std::byte b) { return b == std::byte{0}; });
  return detail::count_sketch_preamble_bytes + (empty ? 0 : cells.size());
}

/// Serializes `sketch` (format above) into a new byte vector.
template <cpu_count_sketch Sketch>
[[nodiscard]] std::vector<std::byte> serialize(const Sketch& sketch) {
  using value = typename Sketch::value_type;
  const std::size_t size = serialized_size(sketch);
  const bool empty = size == detail::count_sketch_preamble_bytes;
  std::vector<std::byte> out(size);
  out[0] = static_cast<std::byte>(detail::count_sketch_preamble_bytes);
  out[1] = static_cast<std::byte>(wire::serial_version);
  out[2] = static_cast<std::byte>(wire::family::count_sketch);
  out[3] = static_cast<std::byte>(empty ? detail::flag_empty : 0);
  out[4] = static_cast<std::byte>(wire::value_type_code<value>);
  out[5] = static_cast<std::byte>(Sketch::hash_type::id);
  wire::store_le(out.data() + 8, static_cast<std::uint32_t>(sketch.config().rows));
  wire::store_le(out.data() + 12, static_cast<std::uint32_t>(sketch.config().cols));
  wire::store_le(out.data() + 16, sketch.config().seed);
  if (!empty) wire::store_array_le(out.data() + detail::count_sketch_preamble_bytes, sketch.table());
  return out;
}

/// Serializes `sketch` to `os`.
/// @throws serialization_error if the stream fails.
template <cpu_count_sketch Sketch>
void serialize(const Sketch& sketch, std::ostream& os) {
  const std::vector<std::byte> bytes = serialize(sketch);
  os.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!os) throw serialization_error("count_sketch serialize: the output stream failed");
}

namespace detail {

/// Checks the preamble (the first 24 bytes, or fewer when truncated) and
/// returns the configuration and the table size in bytes it announces.
template <cpu_count_sketch Sketch>
std::pair<sketch_config, std::uint64_t> read_count_sketch_preamble(std::span<const std::byte> p) {
  using value = typename Sketch::value_type;
  const auto u8 = [&](std::size_t i) { return static_cast<unsigned>(p[i]); };
  if (p.size() < 8) bad_field("size", "at least 8 bytes", std::to_string(p.size()) + " bytes");
  if (u8(2) != static_cast<unsigned>(wire::family::count_sketch)) {
    bad_field("family", std::to_string(static_cast<unsigned>(wire::family::count_sketch)) + " (count_sketch)",
              std::to_string(u8(2)));
  }
  if (u8(1) != wire::serial_version) {
    bad_field("serial_version", std::to_string(wire::serial_version), std::to_string(u8(1)));
  }
  if (u8(0) != count_sketch_preamble_bytes) {
    bad_field("preamble_length", std::to_string(count_sketch_preamble_bytes), std::to_string(u8(0)));
  }
  if ((u8(3) & ~unsigned{flag_empty}) != 0) bad_field("flags", "only bit 0 (empty)", std::to_string(u8(3)));
  if (u8(4) != wire::value_type_code<value>) {
    bad_field("value_type", wire::value_type_name(wire::value_type_code<value>),
              wire::value_type_name(static_cast<std::uint8_t>(u8(4))));
  }
  if (u8(5) != Sketch::hash_type::id) {
    bad_field("hash_family", std::to_string(static_cast<unsigned>(Sketch::hash_type::id)), std::to_string(u8(5)));
  }
  if (u8(6) != 0 || u8(7) != 0) bad_field("reserved", "0", std::to_string(u8(6) | (u8(7) << 8U)));
  if (p.size() < count_sketch_preamble_bytes) {
    bad_field("size", "at least " + std::to_string(count_sketch_preamble_bytes) + " bytes",
              std::to_string(p.size()) + " bytes");
  }
  const sketch_config config{.rows = wire::load_le<std::uint32_t>(p.data() + 8),
                             .cols = wire::load_le<std::uint32_t>(p.data() + 12),
                             .seed = wire::load_le<std::uint64_t>(p.data() + 16)};
  if (config.rows < 1 || config.rows > sketch_config::max_rows) {
    bad_field("rows", "1.." + std::to_string(sketch_config::max_rows), std::to_string(config.rows));
  }
  if (config.cols < 1 || config.cols > Sketch::hash_type::max_cols) {
    bad_field("cols", "1.." + std::to_string(Sketch::hash_type::max_cols), std::to_string(config.cols));
  }
  // rows <= 64 and cols <= 2^31 keep this product far below 2^64.
  const std::uint64_t table_bytes = (u8(3) & flag_empty) != 0 ? 0 : config.cells() * sizeof(value);
  return {config, table_bytes};
}

}  // namespace detail

/// Reads a sketch written by `serialize`; `bytes` must hold exactly one.
/// @throws serialization_error naming the first field that does not check,
/// or for an empty sketch whose table would exceed `limits.max_table_bytes`.
template <cpu_count_sketch Sketch>
[[nodiscard]] Sketch deserialize(std::span<const std::byte> bytes, deserialize_limits limits = {}) {
  using value = typename Sketch::value_type;
  const auto [config, table_bytes] = detail::read_count_sketch_preamble<Sketch>(bytes);
  const std::uint64_t expected = detail::count_sketch_preamble_bytes + table_bytes;
  if (bytes.size() != expected) {
    detail::bad_field("size", std::to_string(expected) + " bytes (" + to_string(config) + ")",
                      std::to_string(bytes.size()) + " bytes");
  }
  // A non-empty table is backed by the input; an empty one is not, so its
  // size must be capped before it is allocated.
  if (table_bytes == 0 && config.cells() * sizeof(value) > limits.max_table_bytes) {
    detail::bad_field("size", "an empty table of at most " + std::to_string(limits.max_table_bytes) + " bytes",
                      std::to_string(config.cells() * sizeof(value)) + " bytes (" + to_string(config) + ")");
  }
  Sketch sketch(config);
  if (table_bytes != 0) {
    wire::load_array_le(bytes.data() + detail::count_sketch_preamble_bytes, std::span<value>(sketch.table()));
  }
  return sketch;
}

/// Reads one sketch from `is`, leaving the stream just after it.
/// @throws serialization_error on a malformed preamble, a table (empty or
/// not) above `limits.max_table_bytes`, or a stream that ends early.
template <cpu_count_sketch Sketch>
[[nodiscard]] Sketch deserialize(std::istream& is, deserialize_limits limits = {}) {
  std::vector<std::byte> bytes(detail::count_sketch_preamble_bytes);
  is.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<std::size_t>(is.gcount()));
  const auto [config, table_bytes] = detail::read_count_sketch_preamble<Sketch>(bytes);
  const std::uint64_t memory_bytes = config.cells() * sizeof(typename Sketch::value_type);
  if (memory_bytes > limits.max_table_bytes) {
    detail::bad_field("size", "a table of at most " + std::to_string(limits.max_table_bytes) + " bytes",
                      std::to_string(memory_bytes) + " bytes");
  }
  // Grow with what actually arrives, so a lying header cannot make us
  // allocate more than one chunk beyond the real input.
  constexpr std::size_t chunk = std::size_t{1} << 24U;
  std::uint64_t remaining = table_bytes;
  while (remaining > 0) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, chunk));
    const std::size_t at = bytes.size();
    bytes.resize(at + n);
    is.read(reinterpret_cast<char*>(bytes.data() + at), static_cast<std::streamsize>(n));
    if (static_cast<std::size_t>(is.gcount()) != n) {
      detail::bad_field(
          "size", std::to_string(detail::count_sketch_preamble_bytes + table_bytes) + " bytes",
          "a stream ending after " + std::to_string(at + static_cast<std::size_t>(is.gcount())) + " bytes");
    }
    remaining -= n;
  }
  return deserialize<Sketch>(std::span<const std::byte>(bytes), limits);
}

}  // namespace sketchsgd
