// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Device memory: a span type the host cannot dereference by accident, RAII
/// owners of device and pinned host memory, and the caller-owned workspace
/// that operations needing temporary storage carve up (CUB's "temporary
/// storage passed by the caller", without the size-query round trip).

#include "sketchsgd/cuda/error.cuh"  // first: it checks the language standard

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace sketchsgd {

/// A contiguous run of `T` in device memory. Deliberately not a `std::span`:
/// host code (a generic collective, a CPU sketch) must not be handed device
/// pointers by an implicit conversion.
template <class T>
class device_span {
 public:
  /// The element type.
  using element_type = T;

  /// An empty span.
  constexpr device_span() noexcept = default;
  /// `size` elements at device address `data`.
  constexpr device_span(T* data, std::size_t size) noexcept : data_(data), size_(size) {}
  /// From a span of a convertible element type (`T` to `const T`).
  template <class U>
  requires(!std::is_same_v<U, T> && std::is_convertible_v<U (*)[], T (*)[]>)  // NOLINT(*-avoid-c-arrays)
      constexpr device_span(device_span<U> other) noexcept  // NOLINT(google-explicit-constructor): like std::span
      : data_(other.data()), size_(other.size()) {}

  /// The device address of the first element.
  [[nodiscard]] constexpr T* data() const noexcept { return data_; }
  /// Number of elements.
  [[nodiscard]] constexpr std::size_t size() const noexcept { return size_; }
  /// Number of bytes.
  [[nodiscard]] constexpr std::size_t size_bytes() const noexcept { return size_ * sizeof(T); }
  /// Whether the span is empty.
  [[nodiscard]] constexpr bool empty() const noexcept { return size_ == 0; }
  /// Elements `[offset, offset + count)`; `count` defaults to the rest.
  /// @throws std::out_of_range if the range leaves the span.
  [[nodiscard]] device_span subspan(std::size_t offset,
                                    std::size_t count = std::numeric_limits<std::size_t>::max()) const {
    if (offset > size_) throw std::out_of_range("device_span::subspan: offset past the end");
    if (count == std::numeric_limits<std::size_t>::max()) count = size_ - offset;
    if (count > size_ - offset) throw std::out_of_range("device_span::subspan: count past the end");
    return {data_ + offset, count};
  }
  /// The first `count` elements.
  /// @throws std::out_of_range if `count > size()`.
  [[nodiscard]] device_span first(std::size_t count) const { return subspan(0, count); }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Owns `size()` elements of `T` in device memory (cudaMalloc/cudaFree).
/// Movable, not copyable. The memory is uninitialized.
///
/// `cudaFree` waits for the device, so freeing never races with kernels
/// still using the memory; it also makes destruction a synchronization point
/// (keep buffers alive across steps, as the sketch and the optimizers do).
template <class T>
class device_buffer {
  static_assert(std::is_trivially_copyable_v<T>, "device_buffer holds trivially copyable types");

 public:
  /// No memory.
  device_buffer() noexcept = default;
  /// `n` uninitialized elements on the current device.
  /// @throws cuda_error if the allocation fails.
  explicit device_buffer(std::size_t n) : size_(n) {
    if (n == 0) return;
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) {
      throw std::invalid_argument("device_buffer: " + std::to_string(n) + " elements overflow size_t bytes");
    }
    void* p = nullptr;
    detail::cuda_check(cudaMalloc(&p, n * sizeof(T)), "device_buffer: cudaMalloc");
    data_ = static_cast<T*>(p);
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  /// Takes `other`'s memory; `other` is left empty.
  device_buffer(device_buffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  /// Frees this buffer's memory and takes `other`'s.
  device_buffer& operator=(device_buffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~device_buffer() { release(); }

  /// The device address (null when empty).
  [[nodiscard]] T* data() const noexcept { return data_; }
  /// Number of elements.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// The whole buffer as a span.
  [[nodiscard]] device_span<T> span() const noexcept { return {data_, size_}; }

 private:
  void release() noexcept {
    // A failure here (a context already torn down at exit) cannot be
    // reported from a destructor; the memory is gone with the context.
    if (data_ != nullptr) (void)cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Owns `size()` elements of `T` in page-locked host memory
/// (cudaMallocHost): the staging area for copies between the device and a
/// transport that reads host memory. Copies from and to pinned memory run
/// at full PCIe/NVLink speed and can be asynchronous.
template <class T>
class pinned_buffer {
  static_assert(std::is_trivially_copyable_v<T>, "pinned_buffer holds trivially copyable types");

 public:
  /// No memory.
  pinned_buffer() noexcept = default;
  /// `n` uninitialized elements.
  /// @throws cuda_error if the allocation fails.
  explicit pinned_buffer(std::size_t n) : size_(n) {
    if (n == 0) return;
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) {
      throw std::invalid_argument("pinned_buffer: " + std::to_string(n) + " elements overflow size_t bytes");
    }
    void* p = nullptr;
    detail::cuda_check(cudaMallocHost(&p, n * sizeof(T)), "pinned_buffer: cudaMallocHost");
    data_ = static_cast<T*>(p);
  }
  pinned_buffer(const pinned_buffer&) = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;
  /// Takes `other`'s memory; `other` is left empty.
  pinned_buffer(pinned_buffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  /// Frees this buffer's memory and takes `other`'s.
  pinned_buffer& operator=(pinned_buffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~pinned_buffer() { release(); }

  /// Number of elements.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// The memory, readable and writable by the host.
  [[nodiscard]] std::span<T> span() const noexcept { return {data_, size_}; }
  /// The host address (null when empty).
  [[nodiscard]] T* data() const noexcept { return data_; }

 private:
  void release() noexcept {
    if (data_ != nullptr) (void)cudaFreeHost(data_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

namespace detail {

/// Alignment of every piece carved from a workspace (what CUB and vector
/// loads want).
inline constexpr std::size_t workspace_alignment = 256;

/// `n` rounded up to the workspace alignment.
constexpr std::size_t workspace_round(std::size_t n) noexcept {
  return (n + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
}

/// Bump allocation over a byte range: the layout of one operation's
/// temporary storage. With a null base it only measures.
class workspace_carver {
 public:
  explicit workspace_carver(std::byte* base = nullptr) noexcept : base_(base) {}

  /// Reserves `n` elements of `T`; null when only measuring.
  template <class T>
  T* take(std::size_t n) noexcept {
    std::byte* p = base_ == nullptr ? nullptr : base_ + used_;
    used_ += workspace_round(n * sizeof(T));
    return reinterpret_cast<T*>(p);  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast): raw device bytes
  }
  /// Bytes reserved so far.
  [[nodiscard]] std::size_t used() const noexcept { return used_; }

 private:
  std::byte* base_;
  std::size_t used_ = 0;
};

}  // namespace detail

/// Caller-owned temporary device storage, reused across calls: operations
/// that need scratch space (top-k, ordered accumulation, l2 estimates) take
/// one and grow it when it is too small. Growing frees the old memory
/// (`cudaFree` waits for the device) and allocates anew; steady-state calls
/// of the same sizes allocate nothing.
///
/// One workspace must not serve two operations in flight at once: give each
/// stream its own.
class cuda_workspace {
 public:
  /// An empty workspace; the first operation sizes it.
  cuda_workspace() = default;
  /// A workspace of `bytes` bytes up front.
  /// @throws cuda_error if the allocation fails.
  explicit cuda_workspace(std::size_t bytes) : buffer_(bytes) {}

  /// Current capacity in bytes.
  [[nodiscard]] std::size_t capacity() const noexcept { return buffer_.size(); }

  /// At least `bytes` bytes of device memory, valid until the next call.
  /// @throws cuda_error if growing fails.
  std::byte* reserve(std::size_t bytes) {
    if (bytes > buffer_.size()) {
      buffer_ = device_buffer<std::byte>();  // free first: peak memory stays at the new size
      buffer_ = device_buffer<std::byte>(bytes);
    }
    return buffer_.data();
  }

 private:
  device_buffer<std::byte> buffer_;
};

}  // namespace sketchsgd
