// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Crash-safe checkpoint files: one optimizer's state (its `save`) and the
/// caller's parameters (as bytes), written atomically and verified on load.
///
/// Writing: a temporary file in the destination's directory
/// (`<name>.tmp.<pid>.<n>`), fsync of the file, rename over the destination,
/// fsync of the directory. A crash at any point leaves either the previous
/// checkpoint or the new one under the name, never a mix; a crashed writer
/// may leave its temporary file behind (never read; safe to delete).
///
/// Layout (little-endian):
///
/// | offset | bytes | field |
/// |---:|---:|---|
/// | 0 | 8 | magic "SKSGDCKP" |
/// | 8 | 4 | format version = 1 |
/// | 12 | 4 | reserved, 0 |
/// | 16 | S | the optimizer's state, as its `save` writes it |
/// | 16 + S | P | the parameters |
/// | 16 + S + P | 8 | S |
/// | 24 + S + P | 8 | P |
/// | 32 + S + P | 8 | checksum of every byte before it |
///
/// Sizes sit at the end so the writer streams the state without buffering
/// it. The checksum is a 64-bit chain over splitmix64's `mix64`
/// (hash/seed_mixer.hpp): h = 0x736B63686B707431 ("skchkpt1"); for each
/// 8-byte little-endian word w of the covered bytes (the last one
/// zero-padded), h = mix64(h ^ w); finally h = mix64(h ^ covered length).
/// `mix64` is a bijection, so any change confined to one word is always
/// detected, and a truncated or torn file fails the size or checksum check;
/// it protects against accidents, not against an attacker who can rewrite the
/// file (who could recompute it).

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <istream>
#include <span>
#include <sstream>
#include <streambuf>
#include <string>
#include <vector>

#include "sketchsgd/error.hpp"
#include "sketchsgd/hash/seed_mixer.hpp"
#include "sketchsgd/serialize/wire.hpp"

namespace sketchsgd {

namespace detail {

inline constexpr std::array<char, 8> checkpoint_magic = {'S', 'K', 'S', 'G', 'D', 'C', 'K', 'P'};
inline constexpr std::uint32_t checkpoint_version = 1;
inline constexpr std::uint64_t checkpoint_head_bytes = 16;
inline constexpr std::uint64_t checkpoint_tail_bytes = 24;
inline constexpr std::size_t checkpoint_chunk = std::size_t{1} << 16U;

/// The checkpoint checksum (see the file comment), fed in pieces of any size.
class checkpoint_checksum {
 public:
  /// Adds `bytes` to the covered data.
  void update(std::span<const std::byte> bytes) noexcept {
    for (const std::byte b : bytes) {
      pending_[fill_++] = b;
      if (fill_ == pending_.size()) {
        h_ = mix64(h_ ^ wire::load_le<std::uint64_t>(pending_.data()));
        fill_ = 0;
      }
    }
    length_ += bytes.size();
  }
  /// The checksum of everything added.
  [[nodiscard]] std::uint64_t value() const noexcept {
    std::uint64_t h = h_;
    if (fill_ != 0) {
      std::array<std::byte, 8> last{};
      std::copy_n(pending_.begin(), fill_, last.begin());
      h = mix64(h ^ wire::load_le<std::uint64_t>(last.data()));
    }
    return mix64(h ^ length_);
  }

 private:
  std::uint64_t h_ = 0x736B63686B707431ULL;
  std::array<std::byte, 8> pending_{};
  std::size_t fill_ = 0;
  std::uint64_t length_ = 0;
};

/// A number no other temporary file of this process has used.
inline std::uint64_t next_checkpoint_serial() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return counter.fetch_add(1);
}

[[noreturn]] inline void checkpoint_fail(const std::filesystem::path& path, const std::string& what) {
  throw serialization_error("checkpoint '" + path.string() + "': " + what);
}

[[noreturn]] inline void checkpoint_fail_errno(const std::filesystem::path& path, const std::string& what) {
  const int e = errno;
  checkpoint_fail(path, what + ": " + std::strerror(e));  // NOLINT(concurrency-mt-unsafe): message only
}

/// A file descriptor closed on scope exit.
class unique_fd {
 public:
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const noexcept { return fd_; }
  /// Closes now, reporting the error a deferred write may surface here.
  int close() noexcept {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

/// Writes everything to `fd`, retrying short writes and EINTR.
inline void write_all(int fd, std::span<const std::byte> bytes, const std::filesystem::path& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      checkpoint_fail_errno(path, "write failed");
    }
    bytes = bytes.subspan(static_cast<std::size_t>(n));
  }
}

/// Reads exactly `into.size()` bytes at `offset`.
inline void read_all(int fd, std::uint64_t offset, std::span<std::byte> into, const std::filesystem::path& path) {
  while (!into.empty()) {
    const ssize_t n = ::pread(fd, into.data(), into.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      checkpoint_fail_errno(path, "read failed");
    }
    if (n == 0) checkpoint_fail(path, "the file shrank while being read");
    into = into.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
}

/// An output stream buffer that writes to a file descriptor, checksumming
/// and counting what passes through.
class checkpoint_writer_buf : public std::streambuf {
 public:
  checkpoint_writer_buf(int fd, const std::filesystem::path& path, checkpoint_checksum& sum)
      : fd_(fd), path_(&path), sum_(&sum), buffer_(checkpoint_chunk) {
    setp(buffer_.data(), buffer_.data() + buffer_.size());
  }
  /// Bytes written so far (including buffered ones).
  [[nodiscard]] std::uint64_t written() const noexcept {
    return flushed_ + static_cast<std::uint64_t>(pptr() - pbase());
  }
  /// Writes what is buffered; throws on failure.
  void drain() {
    const auto n = static_cast<std::size_t>(pptr() - pbase());
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(pbase()), n);
    sum_->update(bytes);
    write_all(fd_, bytes, *path_);
    flushed_ += n;
    setp(buffer_.data(), buffer_.data() + buffer_.size());
  }

 protected:
  int_type overflow(int_type ch) override {
    drain();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  int sync() override {
    drain();
    return 0;
  }

 private:
  int fd_;
  const std::filesystem::path* path_;
  checkpoint_checksum* sum_;
  std::vector<char> buffer_;
  std::uint64_t flushed_ = 0;
};

/// An input stream buffer over bytes [begin, end) of a file: a reader that
/// expects more than the region holds sees the stream end, not the bytes
/// after it.
class checkpoint_region_buf : public std::streambuf {
 public:
  checkpoint_region_buf(int fd, std::uint64_t begin, std::uint64_t end, const std::filesystem::path& path)
      : fd_(fd), next_(begin), end_(end), path_(&path), buffer_(checkpoint_chunk) {
    setg(buffer_.data(), buffer_.data(), buffer_.data());
  }
  /// Bytes of the region not yet consumed by the reader.
  [[nodiscard]] std::uint64_t unread() const noexcept {
    return end_ - next_ + static_cast<std::uint64_t>(egptr() - gptr());
  }

 protected:
  int_type underflow() override {
    if (next_ == end_) return traits_type::eof();
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer_.size(), end_ - next_));
    read_all(fd_, next_, std::as_writable_bytes(std::span<char>(buffer_.data(), n)), *path_);
    next_ += n;
    setg(buffer_.data(), buffer_.data(), buffer_.data() + n);
    return traits_type::to_int_type(*gptr());
  }

 private:
  int fd_;
  std::uint64_t next_;
  std::uint64_t end_;
  const std::filesystem::path* path_;
  std::vector<char> buffer_;
};

}  // namespace detail

/// Writes `optimizer`'s state (its `save`) and `parameters` to `path`
/// atomically and durably: through a temporary file in the same directory,
/// fsync'ed, renamed over `path`, and the directory fsync'ed. Until the
/// rename, `path` keeps its previous content; after the call returns, the new
/// checkpoint survives a crash or power loss (as far as the file system
/// honours fsync).
///
/// In a multi-rank job every rank writes its own file (the state is per
/// rank); name them by rank and step and resume from the newest step every
/// rank completed.
/// @tparam Optimizer any sketchsgd optimizer (anything with
/// `save(std::ostream&) const`).
/// @throws serialization_error naming the file and the failed system call
/// (the temporary file is removed); whatever `optimizer.save` throws.
template <class Optimizer>
void save_checkpoint(const std::filesystem::path& path, const Optimizer& optimizer,
                     std::span<const std::byte> parameters) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::filesystem::path temp = path;
  temp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(detail::next_checkpoint_serial());

  detail::unique_fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) detail::checkpoint_fail_errno(temp, "cannot create the temporary file");
  try {
    detail::checkpoint_checksum sum;
    detail::checkpoint_writer_buf buf(fd.get(), temp, sum);
    std::ostream out(&buf);
    out.exceptions(std::ios::badbit);  // a failed write inside save surfaces as its exception
    std::array<std::byte, detail::checkpoint_head_bytes> head{};
    std::memcpy(head.data(), detail::checkpoint_magic.data(), detail::checkpoint_magic.size());
    wire::store_le(head.data() + 8, detail::checkpoint_version);
    out.write(reinterpret_cast<const char*>(head.data()), static_cast<std::streamsize>(head.size()));
    optimizer.save(out);
    out.flush();
    const std::uint64_t state_bytes = buf.written() - detail::checkpoint_head_bytes;
    out.write(reinterpret_cast<const char*>(parameters.data()), static_cast<std::streamsize>(parameters.size()));
    std::array<std::byte, 16> sizes{};
    wire::store_le(sizes.data(), state_bytes);
    wire::store_le(sizes.data() + 8, static_cast<std::uint64_t>(parameters.size()));
    out.write(reinterpret_cast<const char*>(sizes.data()), static_cast<std::streamsize>(sizes.size()));
    buf.drain();
    std::array<std::byte, 8> check{};
    wire::store_le(check.data(), sum.value());
    detail::write_all(fd.get(), check, temp);
    if (::fsync(fd.get()) != 0) detail::checkpoint_fail_errno(temp, "fsync failed");
    if (fd.close() != 0) detail::checkpoint_fail_errno(temp, "close failed");
    if (::rename(temp.c_str(), path.c_str()) != 0) detail::checkpoint_fail_errno(path, "rename failed");
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  // The rename is durable only once the directory entry is.
  detail::unique_fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0) detail::checkpoint_fail_errno(dir, "cannot open the directory to fsync it");
  // EINVAL: a file system that cannot sync directories (the rename is then
  // as durable as it can make it).
  if (::fsync(dir_fd.get()) != 0 && errno != EINVAL) detail::checkpoint_fail_errno(dir, "directory fsync failed");
}

/// Loads a checkpoint written by `save_checkpoint`: verifies the whole file
/// (magic, version, sizes, checksum) before touching anything, then restores
/// `optimizer` (its `load`, which checks kind, configuration, rank and world)
/// and copies the parameters into `parameters`. On any failure neither the
/// optimizer nor `parameters` changes (for that the optimizer's state is
/// snapshotted with its `save` and the parameters read into a buffer first:
/// one extra copy of each in memory while loading).
/// @tparam Optimizer any sketchsgd optimizer (`save` and `load`).
/// @throws serialization_error naming the file and what is wrong (missing,
/// truncated, bad magic/version/sizes, checksum mismatch, a state section
/// that does not end where the file says); config_mismatch_error if the
/// parameters have another size than `parameters` or the state belongs to
/// another configuration, rank or world.
template <class Optimizer>
void load_checkpoint(const std::filesystem::path& path, Optimizer& optimizer, std::span<std::byte> parameters) {
  detail::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) detail::checkpoint_fail_errno(path, "cannot open");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) detail::checkpoint_fail_errno(path, "fstat failed");
  const auto file_bytes = static_cast<std::uint64_t>(st.st_size);
  constexpr std::uint64_t frame = detail::checkpoint_head_bytes + detail::checkpoint_tail_bytes;
  if (file_bytes < frame) {
    detail::checkpoint_fail(path, "truncated: " + std::to_string(file_bytes) + " bytes, a checkpoint has at least " +
                                      std::to_string(frame));
  }
  std::array<std::byte, detail::checkpoint_head_bytes> head{};
  detail::read_all(fd.get(), 0, head, path);
  if (std::memcmp(head.data(), detail::checkpoint_magic.data(), detail::checkpoint_magic.size()) != 0) {
    detail::checkpoint_fail(path, "field 'magic': not a sketchsgd checkpoint");
  }
  if (wire::load_le<std::uint32_t>(head.data() + 8) != detail::checkpoint_version) {
    detail::checkpoint_fail(path, "field 'version': expected " + std::to_string(detail::checkpoint_version) + ", got " +
                                      std::to_string(wire::load_le<std::uint32_t>(head.data() + 8)));
  }
  if (wire::load_le<std::uint32_t>(head.data() + 12) != 0) detail::checkpoint_fail(path, "field 'reserved' is not 0");
  std::array<std::byte, detail::checkpoint_tail_bytes> tail{};
  detail::read_all(fd.get(), file_bytes - tail.size(), tail, path);
  const auto state_bytes = wire::load_le<std::uint64_t>(tail.data());
  const auto param_bytes = wire::load_le<std::uint64_t>(tail.data() + 8);
  if (state_bytes > file_bytes - frame || param_bytes != file_bytes - frame - state_bytes) {
    detail::checkpoint_fail(path, "sizes (state " + std::to_string(state_bytes) + ", parameters " +
                                      std::to_string(param_bytes) + " bytes) do not match the file's " +
                                      std::to_string(file_bytes) + " bytes (truncated or torn?)");
  }
  {
    detail::checkpoint_checksum sum;
    std::vector<std::byte> chunk(detail::checkpoint_chunk);
    const std::uint64_t covered = file_bytes - 8;
    for (std::uint64_t at = 0; at < covered;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), covered - at));
      detail::read_all(fd.get(), at, std::span<std::byte>(chunk.data(), n), path);
      sum.update(std::span<const std::byte>(chunk.data(), n));
      at += n;
    }
    const auto stored = wire::load_le<std::uint64_t>(tail.data() + 16);
    if (sum.value() != stored) {
      detail::checkpoint_fail(path, "checksum mismatch: the file is corrupt (stored " + std::to_string(stored) +
                                        ", computed " + std::to_string(sum.value()) + ")");
    }
  }
  if (param_bytes != parameters.size()) {
    throw config_mismatch_error("checkpoint '" + path.string() + "': holds " + std::to_string(param_bytes) +
                                " parameter bytes, the caller has " + std::to_string(parameters.size()));
  }
  std::ostringstream snapshot;
  optimizer.save(snapshot);
  detail::checkpoint_region_buf region(fd.get(), detail::checkpoint_head_bytes,
                                       detail::checkpoint_head_bytes + state_bytes, path);
  std::istream in(&region);
  optimizer.load(in);  // throws with the state unchanged
  try {
    if (region.unread() != 0) {
      detail::checkpoint_fail(
          path, "the optimizer state ends " + std::to_string(region.unread()) + " bytes before the parameters");
    }
    std::vector<std::byte> read(parameters.size());  // so a failed read leaves `parameters` alone
    detail::read_all(fd.get(), detail::checkpoint_head_bytes + state_bytes, read, path);
    std::copy(read.begin(), read.end(), parameters.begin());
  } catch (...) {
    std::istringstream restore(snapshot.str());
    optimizer.load(restore);
    throw;
  }
}

}  // namespace sketchsgd
