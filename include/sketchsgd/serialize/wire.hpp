// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Wire-format constants and explicit little-endian encoding. Every multi-byte
/// field the library writes, to a file or a socket, is little-endian whatever
/// the host; values are IEEE-754 bit patterns or two's complement integers.

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

#include "sketchsgd/concepts.hpp"
#include "sketchsgd/error.hpp"

namespace sketchsgd::wire {

/// Serial version of the formats this header family writes. Bumped only when
/// bytes change; golden files of every released version live in tests/data/.
inline constexpr std::uint8_t serial_version = 1;

/// Frozen family ids: the first thing a reader checks after the size.
enum class family : std::uint8_t {
  count_sketch = 1,
  optimizer_state = 2,
};

/// Frozen value-type codes.
template <sketch_value Value>
inline constexpr std::uint8_t value_type_code = std::same_as<Value, float>          ? 1
                                                : std::same_as<Value, double>       ? 2
                                                : std::same_as<Value, std::int32_t> ? 3
                                                                                    : 4;

/// Name of a value-type code, for messages.
[[nodiscard]] inline std::string value_type_name(std::uint8_t code) {
  switch (code) {
    case 1:
      return "float32";
    case 2:
      return "float64";
    case 3:
      return "int32";
    case 4:
      return "int64";
    default:
      return "unknown(" + std::to_string(code) + ")";
  }
}

/// Stores `v` little-endian at `out` (sizeof(T) bytes).
template <class T>
requires std::integral<T> || std::floating_point<T>
void store_le(std::byte* out, T v) noexcept {
  using U = std::make_unsigned_t<
      std::conditional_t<std::floating_point<T>, std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>, T>>;
  const auto u = std::bit_cast<U>(v);
  for (std::size_t i = 0; i < sizeof(T); ++i) out[i] = static_cast<std::byte>((u >> (8 * i)) & 0xFFU);
}

/// Loads a little-endian T from `in` (sizeof(T) bytes).
template <class T>
requires std::integral<T> || std::floating_point<T>
[[nodiscard]] T load_le(const std::byte* in) noexcept {
  using U = std::make_unsigned_t<
      std::conditional_t<std::floating_point<T>, std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>, T>>;
  U u = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) u = static_cast<U>(u | (static_cast<U>(in[i]) << (8 * i)));
  return std::bit_cast<T>(u);
}

/// Writes `values` little-endian to `out` (values.size() * sizeof(T) bytes);
/// a plain copy on little-endian hosts.
template <class T>
void store_array_le(std::byte* out, std::span<const T> values) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    if (!values.empty()) std::memcpy(out, values.data(), values.size_bytes());
  } else {
    for (std::size_t i = 0; i < values.size(); ++i) store_le(out + i * sizeof(T), values[i]);
  }
}

/// Reads `values.size()` little-endian T from `in`.
template <class T>
void load_array_le(const std::byte* in, std::span<T> values) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    if (!values.empty()) std::memcpy(values.data(), in, values.size_bytes());
  } else {
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = load_le<T>(in + i * sizeof(T));
  }
}

}  // namespace sketchsgd::wire
