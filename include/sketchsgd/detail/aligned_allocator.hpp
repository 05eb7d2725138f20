// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// A cache-line aligned allocator for sketch tables, so rows start on a line
/// and two threads never share one at a table boundary; scratch tables kept
/// apart.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
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

/// Bytes kept free before and after each scratch table of `table_bytes`.
/// Tables that two threads add into at once run at half speed or worse on
/// some machines when they lie within about two of their sizes of each
/// other, with no cache line shared (an AMD EPYC guest: 80 KiB to 3.7 MiB
/// tables, bench_scatter_cores, docs/performance.md): three sizes, at least
/// 1 MiB. Unwritten guard pages cost address space only.
[[nodiscard]] constexpr std::size_t scratch_table_guard(std::size_t table_bytes) noexcept {
  constexpr std::size_t page = 4096;
  return std::max(std::size_t{1} << 20U, (3 * table_bytes + page - 1) / page * page);
}

/// Working tables an object keeps from call to call to avoid fresh pages
/// each time, each `scratch_table_guard` bytes from the others and from any
/// other memory, so threads can fill them at once. A copy starts empty and
/// an assignment keeps its own: they hold no state, only memory.
template <class T>
class scratch_tables {
  static_assert(std::is_trivially_default_constructible_v<T> && std::is_trivially_destructible_v<T>);

 public:
  scratch_tables() = default;
  scratch_tables(const scratch_tables& /*other*/) noexcept {}
  scratch_tables(scratch_tables&&) noexcept = default;
  scratch_tables& operator=(const scratch_tables& /*other*/) noexcept { return *this; }
  scratch_tables& operator=(scratch_tables&&) noexcept = default;
  ~scratch_tables() = default;

  /// Makes room for `count` tables of `n` values (their contents are
  /// unspecified); tables from before are kept when they fit, and a new
  /// block holds what both asked for.
  void reserve(std::size_t count, std::size_t n) {
    if (count <= count_ && n <= n_) return;
    count = std::max(count, count_);
    n = std::max(n, n_);
    constexpr std::size_t page = 4096;
    const std::size_t bytes = (n * sizeof(T) + page - 1) / page * page;
    const std::size_t guard = scratch_table_guard(bytes);
    block_.reset(static_cast<std::byte*>(::operator new (guard + count * (bytes + guard), std::align_val_t{page})));
    count_ = count;
    n_ = n;
    guard_ = guard;
    stride_ = bytes + guard;
  }
  /// Table `p` of those reserved (`p` below the count of a `reserve`).
  [[nodiscard]] T* table(std::size_t p) const noexcept {
    return std::launder(reinterpret_cast<T*>(block_.get() + guard_ + p * stride_));
  }

 private:
  struct page_delete {
    void operator()(std::byte* p) const noexcept { ::operator delete (p, std::align_val_t{4096}); }
  };
  std::unique_ptr<std::byte, page_delete> block_;
  std::size_t count_ = 0;
  std::size_t n_ = 0;
  std::size_t guard_ = 0;
  std::size_t stride_ = 0;
};

}  // namespace sketchsgd::detail
