// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// A cache-line aligned allocator for sketch tables, so rows start on a line
/// and two threads never share one at a table boundary; scratch tables.

#include <cstddef>
#include <new>
#include <vector>

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

/// Working tables an object keeps from call to call to avoid fresh pages
/// each time. A copy starts empty and an assignment keeps its own: they hold
/// no state, only memory.
template <class T>
struct scratch_tables {
  std::vector<std::vector<T, aligned_allocator<T>>> tables;

  scratch_tables() = default;
  scratch_tables(const scratch_tables& /*other*/) noexcept {}
  scratch_tables(scratch_tables&&) noexcept = default;
  scratch_tables& operator=(const scratch_tables& /*other*/) noexcept { return *this; }
  scratch_tables& operator=(scratch_tables&&) noexcept = default;
  ~scratch_tables() = default;
};

}  // namespace sketchsgd::detail
