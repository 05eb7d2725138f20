// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// `gradient_span`: a rank's gradient in host memory as the caller holds it,
/// in the optimizer's value type or, for a float optimizer, in a 16-bit
/// storage type (`bfloat16_t`, `float16_t`). Kernels `visit` it and read
/// each value as float on the fly (exactly), so a 16-bit gradient is never
/// copied to float32; the optimizer's memory stays in its own value type.

#include <concepts>
#include <cstddef>
#include <span>
#include <type_traits>
#include <utility>

#include "sketchsgd/half.hpp"

namespace sketchsgd {

/// A read-only view of d gradient values stored as `Value` or, when `Value`
/// is float, as bfloat16 or float16 bits. Converts implicitly from any span
/// of those, so a policy's `accumulate(gradient_span<Value>, ...)` takes the
/// gradients it always took.
template <class Value>
class gradient_span {
 public:
  /// No values.
  gradient_span() = default;
  /// Values in the optimizer's own type.
  template <class R>
    requires std::convertible_to<R&&, std::span<const Value>>
  gradient_span(R&& values) noexcept  // NOLINT(google-explicit-constructor): a span in all but name
      : gradient_span(std::span<const Value>(std::forward<R>(values)), wire_format::native) {}
  /// 16-bit storage values, read as float.
  template <half_float H>
    requires std::same_as<Value, float>
  gradient_span(std::span<const H> values) noexcept  // NOLINT(google-explicit-constructor)
      : gradient_span(values, storage_format<H>) {}
  /// The same from a span of mutable values.
  template <half_float H>
    requires std::same_as<Value, float>
  gradient_span(std::span<H> values) noexcept  // NOLINT(google-explicit-constructor)
      : gradient_span(std::span<const H>(values), storage_format<H>) {}

  /// Number of values.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// Whether there are none.
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// How the values are stored (`native`: as `Value`).
  [[nodiscard]] wire_format format() const noexcept { return format_; }
  /// The values as `Value`s; only for the native format.
  [[nodiscard]] std::span<const Value> native() const noexcept {
    return {static_cast<const Value*>(data_), format_ == wire_format::native ? size_ : 0};
  }
  /// `count` values from `offset`, in the same format.
  [[nodiscard]] gradient_span subspan(std::size_t offset, std::size_t count) const noexcept {
    gradient_span s = *this;
    s.data_ = static_cast<const unsigned char*>(data_) + offset * element_bytes();
    s.size_ = count;
    return s;
  }
  /// `f(std::span<const T>)` with T the stored type: `Value`, `bfloat16_t`
  /// or `float16_t`; its result.
  template <class F>
  decltype(auto) visit(F&& f) const {
    if constexpr (std::same_as<Value, float>) {
      if (format_ == wire_format::bfloat16) return f(typed<bfloat16_t>());
      if (format_ == wire_format::float16) return f(typed<float16_t>());
    }
    return f(typed<Value>());
  }

 private:
  template <class T>
  gradient_span(std::span<const T> values, wire_format f) noexcept
      : data_(values.data()), size_(values.size()), format_(f) {}
  template <class T>
  [[nodiscard]] std::span<const T> typed() const noexcept {
    return {static_cast<const T*>(data_), size_};
  }
  [[nodiscard]] std::size_t element_bytes() const noexcept {
    return format_ == wire_format::native ? sizeof(Value) : 2;
  }

  const void* data_ = nullptr;
  std::size_t size_ = 0;
  wire_format format_ = wire_format::native;
};

}  // namespace sketchsgd
