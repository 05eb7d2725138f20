// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The MPI transport (target `sketchsgd::mpi`): Tier 1 over MPI point-to-point
/// and Tier 2 over MPI's own nonblocking collectives, on a duplicate of the
/// communicator the caller passes. MPI errors are returned, not fatal, and
/// become `transport_error`; every wait has a deadline.
///
/// The caller initializes and finalizes MPI (MPI_Init_thread); destroy the
/// transport before MPI_Finalize. One thread per rank calls the transport.
///
/// Not elastic: Open MPI 4.1 as Debian builds it has no ULFM, so a dead rank
/// ends the job (the survivors fail fast, as the launcher stops them) and no
/// world re-forms; elastic jobs use TCP (transport/tcp/elastic.hpp).

#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "sketchsgd/error.hpp"
#include "sketchsgd/transport/concepts.hpp"

namespace sketchsgd {

/// Settings of an `mpi_transport`.
struct mpi_options {
  /// How long `request::wait()` and the native collectives wait before
  /// throwing `timeout_error`.
  std::chrono::milliseconds timeout{30'000};
};

namespace detail {

[[noreturn]] inline void throw_mpi(int code, const std::string& what) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw transport_error("mpi_transport: " + what + " failed: " + std::string(text, static_cast<std::size_t>(length)));
}

inline void check_mpi(int code, const char* what) {
  if (code != MPI_SUCCESS) throw_mpi(code, what);
}

template <class T>
MPI_Datatype mpi_type_of() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  if constexpr (std::is_same_v<T, std::int32_t>) return MPI_INT32_T;
  if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
  if constexpr (std::is_same_v<T, std::uint32_t>) return MPI_UINT32_T;
  if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
  return MPI_DATATYPE_NULL;
}

template <class T>
inline constexpr bool has_mpi_type =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int32_t> ||
    std::is_same_v<T, std::int64_t> || std::is_same_v<T, std::uint32_t> || std::is_same_v<T, std::uint64_t>;

inline int checked_count(std::size_t n, const char* what) {
  if (n > static_cast<std::size_t>(INT_MAX)) {
    throw std::invalid_argument(std::string("mpi_transport::") + what + ": " + std::to_string(n) +
                                " elements exceed one MPI call's int count");
  }
  return static_cast<int>(n);
}

/// Polls `req` until it completes or `deadline`, yielding between polls so
/// that oversubscribed ranks make progress. Returns whether it completed.
inline bool poll_until(MPI_Request& req, MPI_Status& status, std::chrono::steady_clock::time_point deadline) {
  auto pause = std::chrono::microseconds(0);
  for (;;) {
    int done = 0;
    check_mpi(MPI_Test(&req, &done, &status), "MPI_Test");
    if (done != 0) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (pause.count() == 0) {
      std::this_thread::yield();
      pause = std::chrono::microseconds(1);
    } else {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(200));
    }
  }
}

}  // namespace detail

/// A rank of an MPI communicator as a transport (Tier 1 and Tier 2).
class mpi_transport {
 public:
  /// A pending MPI operation.
  class request {
   public:
    request() = default;
    /// Moves the pending operation.
    request(request&& other) noexcept
        : req_(std::exchange(other.req_, MPI_REQUEST_NULL)), expected_(other.expected_), owner_(other.owner_) {}
    /// Takes `other`'s operation; this one must have completed.
    request& operator=(request&& other) noexcept {
      req_ = std::exchange(other.req_, MPI_REQUEST_NULL);
      expected_ = other.expected_;
      owner_ = other.owner_;
      return *this;
    }
    request(const request&) = delete;
    request& operator=(const request&) = delete;
    /// An operation still pending is waited for (up to the timeout unless the
    /// transport already broke), then cancelled and released, so that a
    /// receive never writes into a buffer its owner gave up.
    ~request() {
      if (req_ == MPI_REQUEST_NULL || owner_ == nullptr) return;
      try {
        if (owner_->broken_.empty() && wait_until(std::chrono::steady_clock::now() + owner_->options_.timeout)) {
          return;
        }
      } catch (...) {  // destructors do not throw; the transport is marked broken
      }
      if (req_ != MPI_REQUEST_NULL) {
        MPI_Cancel(&req_);
        MPI_Request_free(&req_);
      }
    }

    /// Waits up to the transport's timeout.
    /// @throws timeout_error after it; transport_error on an MPI error or a
    /// message of the wrong size.
    void wait() {
      if (req_ == MPI_REQUEST_NULL) return;
      if (!wait_until(std::chrono::steady_clock::now() + owner_->options_.timeout)) {
        owner_->broken_ = "a wait timed out";
        throw timeout_error("mpi_transport: request timed out after " +
                            std::to_string(owner_->options_.timeout.count()) + " ms");
      }
    }

    /// Waits at most `d`; returns whether the operation completed.
    /// @throws transport_error on an MPI error or a message of the wrong size.
    bool wait_for(std::chrono::nanoseconds d) {
      if (req_ == MPI_REQUEST_NULL) return true;
      return wait_until(std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(d));
    }

   private:
    friend class mpi_transport;
    request(MPI_Request r, int expected, mpi_transport* owner) : req_(r), expected_(expected), owner_(owner) {}

    bool wait_until(std::chrono::steady_clock::time_point deadline) {
      MPI_Status status{};
      try {
        if (!detail::poll_until(req_, status, deadline)) return false;
      } catch (const transport_error& e) {
        owner_->broken_ = e.what();
        throw;
      }
      if (expected_ >= 0) {
        int got = 0;
        MPI_Get_count(&status, MPI_BYTE, &got);
        if (got != expected_) {
          throw transport_error("mpi_transport: expected " + std::to_string(expected_) + " bytes from rank " +
                                std::to_string(status.MPI_SOURCE) + ", got " + std::to_string(got));
        }
      }
      return true;
    }

    MPI_Request req_ = MPI_REQUEST_NULL;
    int expected_ = -1;  // receive size to check; -1 for sends
    mpi_transport* owner_ = nullptr;
  };

  /// A transport over a duplicate of `comm` (never assumes MPI_COMM_WORLD).
  /// @throws transport_error if MPI is not initialized or refuses.
  explicit mpi_transport(MPI_Comm comm, mpi_options options = {}) : options_(options) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized == 0) throw transport_error("mpi_transport: MPI is not initialized (call MPI_Init_thread first)");
    detail::check_mpi(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    detail::check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    detail::check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    void* tag_ub = nullptr;
    int found = 0;
    MPI_Comm_get_attr(comm_, MPI_TAG_UB, &tag_ub, &found);
    if (found != 0 && *static_cast<int*>(tag_ub) < static_cast<int>(max_user_tag | 0x3FFFFFFFU)) {
      MPI_Comm_free(&comm_);
      throw transport_error("mpi_transport: this MPI's MPI_TAG_UB is below 2^31 - 1");
    }
  }

  mpi_transport(const mpi_transport&) = delete;
  mpi_transport& operator=(const mpi_transport&) = delete;
  mpi_transport(mpi_transport&&) = delete;
  mpi_transport& operator=(mpi_transport&&) = delete;
  /// Frees the duplicated communicator (unless MPI was finalized already).
  ~mpi_transport() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized == 0 && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  /// This rank.
  [[nodiscard]] int rank() const noexcept { return rank_; }
  /// Number of ranks.
  [[nodiscard]] int size() const noexcept { return size_; }
  /// The duplicated communicator.
  [[nodiscard]] MPI_Comm native_handle() const noexcept { return comm_; }

  /// Sends `bytes` to `dst`; the span must stay valid until the request
  /// completed.
  request isend(int dst, tag_t tag, std::span<const std::byte> bytes) {
    check_usable(dst, "isend");
    MPI_Request r = MPI_REQUEST_NULL;
    detail::check_mpi(MPI_Isend(bytes.data(), detail::checked_count(bytes.size(), "isend"), MPI_BYTE, dst,
                                static_cast<int>(tag), comm_, &r),
                      "MPI_Isend");
    return {r, -1, this};
  }

  /// Receives exactly `bytes.size()` bytes from `src`.
  request irecv(int src, tag_t tag, std::span<std::byte> bytes) {
    check_usable(src, "irecv");
    MPI_Request r = MPI_REQUEST_NULL;
    const int count = detail::checked_count(bytes.size(), "irecv");
    detail::check_mpi(MPI_Irecv(bytes.data(), count, MPI_BYTE, src, static_cast<int>(tag), comm_, &r), "MPI_Irecv");
    return {r, count, this};
  }

  /// Native sum-allreduce (MPI_Iallreduce, in place).
  template <class T>
  requires detail::has_mpi_type<T>
  void allreduce(std::span<T> data) {
    check_usable(rank_, "allreduce");
    MPI_Request r = MPI_REQUEST_NULL;
    detail::check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data.data(), detail::checked_count(data.size(), "allreduce"),
                                     detail::mpi_type_of<T>(), MPI_SUM, comm_, &r),
                      "MPI_Iallreduce");
    finish(r, "allreduce");
  }

  /// Native allgather (MPI_Iallgather) of equal-sized contributions.
  template <class T>
  requires std::is_trivially_copyable_v<T>
  void allgather(std::span<const T> mine, std::span<T> all) {
    check_usable(rank_, "allgather");
    MPI_Request r = MPI_REQUEST_NULL;
    const int count = detail::checked_count(mine.size_bytes(), "allgather");
    detail::check_mpi(MPI_Iallgather(mine.data(), count, MPI_BYTE, all.data(), count, MPI_BYTE, comm_, &r),
                      "MPI_Iallgather");
    finish(r, "allgather");
  }

  /// Native broadcast (MPI_Ibcast).
  template <class T>
  requires std::is_trivially_copyable_v<T>
  void broadcast(std::span<T> data, int root) {
    check_usable(root, "broadcast");
    MPI_Request r = MPI_REQUEST_NULL;
    detail::check_mpi(
        MPI_Ibcast(data.data(), detail::checked_count(data.size_bytes(), "broadcast"), MPI_BYTE, root, comm_, &r),
        "MPI_Ibcast");
    finish(r, "broadcast");
  }

  /// Native barrier (MPI_Ibarrier).
  void barrier() {
    check_usable(rank_, "barrier");
    MPI_Request r = MPI_REQUEST_NULL;
    detail::check_mpi(MPI_Ibarrier(comm_, &r), "MPI_Ibarrier");
    finish(r, "barrier");
  }

 private:
  void check_usable(int peer, const char* what) const {
    if (peer < 0 || peer >= size_) {
      throw std::invalid_argument(std::string("mpi_transport::") + what + ": rank must be in [0, " +
                                  std::to_string(size_) + "), got " + std::to_string(peer));
    }
    if (!broken_.empty()) {
      throw transport_error(std::string("mpi_transport::") + what + ": transport unusable after an error (" + broken_ +
                            "); recreate it");
    }
  }

  void finish(MPI_Request& r, const char* what) {
    request pending(r, -1, this);
    try {
      pending.wait();
    } catch (const timeout_error&) {
      broken_ = std::string(what) + " timed out";
      pending.owner_ = nullptr;  // the collective cannot be cancelled; leave it to MPI
      throw timeout_error(std::string("mpi_transport: ") + what + " timed out after " +
                          std::to_string(options_.timeout.count()) + " ms");
    }
  }

  mpi_options options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::string broken_;  // non-empty once the transport must be recreated
};

static_assert(collective_transport<mpi_transport>);

}  // namespace sketchsgd
