// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The exception hierarchy. Misuse (bad sizes, ranks out of range) throws
/// `std::invalid_argument` before any I/O; everything the library detects at
/// run time derives from `sketchsgd::error`.

#include <stdexcept>
#include <string>
#include <type_traits>

namespace sketchsgd {

/// Base of every error the library raises at run time.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Two sketches, optimizers or ranks disagree on a configuration that must
/// match (rows, columns, seed, hash family, value type, ...).
class config_mismatch_error : public error {
 public:
  using error::error;
};

/// Bytes read from a file or the wire are malformed; the message names the
/// offending field, what was expected and what was found.
class serialization_error : public error {
 public:
  using error::error;
};

/// A transport failed. The transport and any collective in flight are then in
/// an unknown state and must be recreated.
class transport_error : public error {
 public:
  using error::error;
};

/// A transport wait ran past its deadline.
class timeout_error : public transport_error {
 public:
  using transport_error::transport_error;
};

namespace detail {
/// "what: name (text)" of a CUDA error code; defined for `cudaError_t` by
/// sketchsgd/cuda/error.cuh, so this header needs no CUDA headers.
template <class Code>
std::string cuda_error_message(Code code, const std::string& what);
}  // namespace detail

/// A CUDA runtime call failed (`sketchsgd/cuda/`): the message names the
/// operation, the CUDA error's name and text. After an asynchronous (sticky)
/// error the CUDA context is unusable and the process must be restarted, as
/// with any CUDA program.
class cuda_error : public error {
 public:
  /// `what`: the operation that failed; the CUDA error name and text are
  /// appended (needs sketchsgd/cuda/error.cuh, as before this class moved here).
  template <class Code>
  requires std::is_enum_v<Code>
  cuda_error(Code code, const std::string& what)
      : error(detail::cuda_error_message(code, what)), code_(static_cast<int>(code)) {}

  /// The CUDA error code: a `cudaError_t`'s value, which compares with
  /// `cudaError_t` enumerators (an `int` so that this header needs no CUDA).
  [[nodiscard]] int code() const noexcept { return code_; }

 private:
  int code_;
};

/// A gradient held NaN or Inf on some rank (`nonfinite_policy::throw_error`);
/// thrown on every rank, before the step changed anything.
class nonfinite_error : public error {
 public:
  using error::error;
};

}  // namespace sketchsgd
