// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// A cache-line aligned allocator for sketch tables, so rows start on a line
/// and two threads never share one at a table boundary.

#include <cstddef>
#include <new>

namespace sketchsgd::detail {

inline constexpr std::size_t cache_line = 64;

/// `std::allocator` with `cache_line` alignment.
template <class T>
struct aligned_allocator {
  using value_type = T;

  aligned_allocator() noexcept = default;
  template <class U>
  explicit aligned_allocator(const aligned_allocator<U>& /*other*/) noexcept {}

  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{cache_line}));
  }
  void deallocate(T* p, std::size_t /*n*/) noexcept { ::operator delete (p, std::align_val_t{cache_line}); }

  template <class U>
  friend bool operator==(const aligned_allocator& /*a*/, const aligned_allocator<U>& /*b*/) noexcept {
    return true;
  }
};

}  // namespace sketchsgd::detail
