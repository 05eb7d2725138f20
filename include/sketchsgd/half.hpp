// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// 16-bit floating-point formats as bits: bfloat16 (8 exponent bits, the
/// float32 range with 8 significant bits) and IEEE binary16 (5 exponent bits,
/// 11 significant bits), with exact, portable conversions to and from float.
/// What the 16-bit wire of `allreduce` (`wire_format`) carries, and the
/// storage types of 16-bit gradients (`bfloat16_t`, `float16_t`).

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>

namespace sketchsgd {

/// How a collective's floating-point values travel between ranks: as they
/// are, or rounded to a 16-bit format at every hop and summed in float32.
enum class wire_format : std::uint8_t {
  native,    ///< the values' own type
  bfloat16,  ///< 8 exponent bits, 7 stored mantissa bits: float32's range, 2-3 significant digits
  float16,   ///< IEEE binary16: 5 exponent bits, 10 stored mantissa bits; finite up to 65,504
};

/// Bytes a value of type float takes on the wire in `w` (native: `native_bytes`).
[[nodiscard]] constexpr std::size_t wire_bytes(wire_format w, std::size_t native_bytes) noexcept {
  return w == wire_format::native ? native_bytes : 2;
}

/// bfloat16 bits of `x`, rounded to nearest, ties to even. NaN stays a
/// quiet NaN with the top of its payload.
[[nodiscard]] constexpr std::uint16_t to_bfloat16(float x) noexcept {
  const std::uint32_t f = std::bit_cast<std::uint32_t>(x);
  if ((f & 0x7FFFFFFFU) > 0x7F800000U) return static_cast<std::uint16_t>((f >> 16U) | 0x0040U);
  const std::uint32_t rounded = f + 0x7FFFU + ((f >> 16U) & 1U);
  return static_cast<std::uint16_t>(rounded >> 16U);
}

/// The float of bfloat16 bits `h` (exact).
[[nodiscard]] constexpr float from_bfloat16(std::uint16_t h) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16U);
}

/// IEEE binary16 bits of `x`, rounded to nearest, ties to even; beyond
/// 65,504 (after rounding) it becomes infinity, below 2^-24 / 2 zero, and
/// NaN a quiet NaN with the top of its payload.
[[nodiscard]] constexpr std::uint16_t to_float16(float x) noexcept {
  const std::uint32_t f = std::bit_cast<std::uint32_t>(x);
  const auto sign = static_cast<std::uint16_t>((f >> 16U) & 0x8000U);
  const std::uint32_t a = f & 0x7FFFFFFFU;
  if (a > 0x7F800000U) return static_cast<std::uint16_t>(sign | 0x7E00U | ((a >> 13U) & 0x03FFU));  // NaN
  if (a >= 0x477FF000U) return static_cast<std::uint16_t>(sign | 0x7C00U);  // rounds to 65,536 or more: infinity
  if (a < 0x38800000U) {
    // Below 2^-14: a subnormal of 2^-24 units. Rounding a / 2^-24 to an
    // integer, ties to even, by hand on the significand.
    const std::uint32_t exponent = a >> 23U;
    if (exponent < 102U) return sign;  // below 2^-25: rounds to zero
    const std::uint32_t significand = (a & 0x007FFFFFU) | 0x00800000U;
    const std::uint32_t shift = 126U - exponent;  // 14 .. 24
    const std::uint32_t kept = significand >> shift;
    const std::uint32_t rest = significand & ((1U << shift) - 1U);
    const std::uint32_t half = 1U << (shift - 1U);
    const std::uint32_t up = (rest > half || (rest == half && (kept & 1U) != 0)) ? 1U : 0U;
    return static_cast<std::uint16_t>(sign | (kept + up));
  }
  // Normal: rebias the exponent, round the 13 dropped bits, ties to even (a
  // carry into the exponent is the right result).
  const std::uint32_t rebiased = a - (112U << 23U);
  const std::uint32_t rounded = rebiased + 0x0FFFU + ((rebiased >> 13U) & 1U);
  return static_cast<std::uint16_t>(sign | (rounded >> 13U));
}

/// The float of IEEE binary16 bits `h` (exact). Branch-free, so loops that
/// read float16 gradients vectorize: the bits move into float32's places
/// and the exponent is rebiased; infinity and NaN get the rest of the bias,
/// and a subnormal is renormalized by one exact float subtraction.
[[nodiscard]] constexpr float from_float16(std::uint16_t h) noexcept {
  constexpr std::uint32_t exponent_mask = 0x7C00U << 13U;
  std::uint32_t o = (static_cast<std::uint32_t>(h) & 0x7FFFU) << 13U;
  const std::uint32_t exponent = o & exponent_mask;
  const std::uint32_t special = 0U - static_cast<std::uint32_t>(exponent == exponent_mask);  // Inf, NaN
  const std::uint32_t small = 0U - static_cast<std::uint32_t>(exponent == 0);               // zero, subnormal
  o += (112U << 23U) + (special & (112U << 23U));
  const std::uint32_t renormalized =
      std::bit_cast<std::uint32_t>(std::bit_cast<float>(o + (1U << 23U)) - std::bit_cast<float>(113U << 23U));
  o = (small & renormalized) | (~small & o);
  return std::bit_cast<float>(o | (static_cast<std::uint32_t>(h & 0x8000U) << 16U));
}

namespace detail {

/// Float to and from a 16-bit wire format, one type per format.
template <wire_format W>
struct wire_codec;
template <>
struct wire_codec<wire_format::bfloat16> {
  static constexpr std::uint16_t encode(float x) noexcept { return to_bfloat16(x); }
  static constexpr float decode(std::uint16_t h) noexcept { return from_bfloat16(h); }
};
template <>
struct wire_codec<wire_format::float16> {
  static constexpr std::uint16_t encode(float x) noexcept { return to_float16(x); }
  static constexpr float decode(std::uint16_t h) noexcept { return from_float16(h); }
};

}  // namespace detail

/// A 16-bit floating-point value as stored (torch's bfloat16 and float16
/// bits): the storage types of 16-bit gradients, read as float exactly.
/// Arithmetic happens in float, never in these types.
template <wire_format Format>
struct half_value {
  std::uint16_t bits;  ///< the format's bits

  half_value() = default;
  /// `x` rounded to nearest, ties to even (float16: beyond 65,504, infinity).
  constexpr explicit half_value(float x) noexcept : bits(detail::wire_codec<Format>::encode(x)) {}
  /// The value, exactly.
  constexpr explicit operator float() const noexcept { return detail::wire_codec<Format>::decode(bits); }
  /// The value of `b` as stored bits.
  static constexpr half_value from_bits(std::uint16_t b) noexcept {
    half_value h{};
    h.bits = b;
    return h;
  }
};
/// bfloat16 as stored: sign, 8 exponent bits, 7 mantissa bits.
using bfloat16_t = half_value<wire_format::bfloat16>;
/// IEEE binary16 as stored (NumPy's float16 too): sign, 5 exponent bits, 10 mantissa bits.
using float16_t = half_value<wire_format::float16>;

/// The 16-bit storage types a float optimizer takes gradients in.
template <class T>
concept half_float = std::same_as<T, bfloat16_t> || std::same_as<T, float16_t>;

/// The format of a storage type: `native` for the arithmetic types.
template <class T>
inline constexpr wire_format storage_format =
    std::same_as<T, bfloat16_t> ? wire_format::bfloat16
                                : (std::same_as<T, float16_t> ? wire_format::float16 : wire_format::native);

}  // namespace sketchsgd
