// SPDX-License-Identifier: Apache-2.0
#pragma once

// Command-line checks shared by the example trainers (examples/fashion_mnist,
// examples/libtorch) and the benchmark programs (bench/). Every option value
// is parsed whole and range-checked; every refusal is a `cli::usage_error`
// whose message names the option, the value and what is allowed, and the
// programs exit with `cli::usage_exit_code` on it. Worlds of one rank and runs
// that would not fit in memory are refused before anything is allocated.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

namespace cli {

/// A command line that cannot run: a bad value, a missing one, options that
/// do not go together, a world or a run that cannot work.
class usage_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// The exit status of a program that refused its command line.
inline constexpr int usage_exit_code = 2;

/// For a program whose one configuration is fixed in its source: false,
/// with a message on stderr naming `program` and the first argument, when
/// any argument is given (an option would silently change nothing).
[[nodiscard]] inline bool no_options_given(const char* program, int argc, char** argv) {
  if (argc <= 1) return true;
  std::fprintf(stderr, "%s: %s: takes no options (the configuration is fixed: see the source)\n", program, argv[1]);
  return false;
}

/// A number as messages print it: "10", "0.5", "1e+06", "inf".
[[nodiscard]] inline std::string number_text(double x) {
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  std::ostringstream out;
  out.precision(10);
  out << x;
  return out.str();
}

/// An integer as messages print it.
template <std::integral T>
[[nodiscard]] std::string number_text(T x) {
  return std::to_string(x);
}

namespace detail {

// (Strings are built from a std::string on the left: GCC 12 warns falsely,
// -Wrestrict, about "literal" + std::string&&.)
inline std::string why_text(std::string_view why) {
  std::string out;
  if (!why.empty()) out.append(" (").append(why).append(")");
  return out;
}

[[noreturn]] inline void refuse(std::string_view option, std::string_view text, std::string_view problem,
                                const std::string& allowed, std::string_view why) {
  throw usage_error(std::string(option) + " " + std::string(text) + ": " + std::string(problem) +
                    "; allowed: " + allowed + why_text(why));
}

}  // namespace detail

/// "[lo, hi]", with "(" or ")" for an open end.
template <class T>
[[nodiscard]] std::string interval(T lo, T hi, bool lo_open = false, bool hi_open = false) {
  std::string out(lo_open ? "(" : "[");
  out.append(number_text(lo)).append(", ").append(number_text(hi)).append(hi_open ? ")" : "]");
  return out;
}

/// Refuses `value` of `option` unless it is in [lo, hi]; for values known
/// only after parsing (a limit that depends on the data or the world).
/// @throws usage_error "OPTION VALUE: out of range; allowed: [LO, HI] (WHY)".
template <std::integral T>
void check_range(std::string_view option, T value, T lo, T hi, std::string_view why = {}) {
  if (value < lo || value > hi) detail::refuse(option, std::to_string(value), "out of range", interval(lo, hi), why);
}

/// The whole of `text` as a decimal integer in [lo, hi].
/// @throws usage_error naming the option, the text and the range: not an
/// integer (letters, a fraction, trailing characters, nothing), or out of
/// range (including below zero for an unsigned option, and overflow).
template <std::integral T>
[[nodiscard]] T integer(std::string_view option, std::string_view text, T lo, T hi, std::string_view why = {}) {
  const std::string allowed = interval(lo, hi);
  const char* first = text.data();
  const char* last = text.data() + text.size();
  // Negative numbers parse as such, so "-1" for an unsigned option is out of range, not garbage.
  if (!text.empty() && text.front() == '-') {
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(first, last, v);
    if (ec == std::errc::invalid_argument || end != last) detail::refuse(option, text, "not an integer", allowed, why);
    if (ec == std::errc::result_out_of_range || std::cmp_less(v, lo) || std::cmp_greater(v, hi)) {
      detail::refuse(option, text, "out of range", allowed, why);
    }
    return static_cast<T>(v);
  }
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(first, last, v);
  if (text.empty() || ec == std::errc::invalid_argument || end != last) {
    detail::refuse(option, text, "not an integer", allowed, why);
  }
  if (ec == std::errc::result_out_of_range || std::cmp_less(v, lo) || std::cmp_greater(v, hi)) {
    detail::refuse(option, text, "out of range", allowed, why);
  }
  return static_cast<T>(v);
}

/// The whole of `text` as a finite real number in [lo, hi] (an end is
/// excluded when `lo_open` / `hi_open`).
/// @throws usage_error naming the option, the text and the range: not a
/// number, not finite (nan, inf), or out of range.
[[nodiscard]] inline double real(std::string_view option, std::string_view text, double lo, double hi,
                                 bool lo_open = false, bool hi_open = false, std::string_view why = {}) {
  const std::string allowed = interval(lo, hi, lo_open, hi_open);
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec == std::errc::invalid_argument || end != text.data() + text.size()) {
    detail::refuse(option, text, "not a number", allowed, why);
  }
  if (ec == std::errc::result_out_of_range || !std::isfinite(v)) {
    detail::refuse(option, text, "not a finite number", allowed, why);
  }
  if ((lo_open ? v <= lo : v < lo) || (hi_open ? v >= hi : v > hi)) {
    detail::refuse(option, text, "out of range", allowed, why);
  }
  return v;
}

/// `text` if it is one of `allowed`.
/// @throws usage_error "OPTION TEXT: not one of a|b|c".
[[nodiscard]] inline std::string choice(std::string_view option, std::string_view text,
                                        std::span<const std::string_view> allowed) {
  if (std::find(allowed.begin(), allowed.end(), text) != allowed.end()) return std::string(text);
  std::string list;
  for (const auto a : allowed) {
    if (!list.empty()) list += '|';
    list += a;
  }
  throw usage_error(std::string(option) + " " + std::string(text) + ": not one of " + list);
}
[[nodiscard]] inline std::string choice(std::string_view option, std::string_view text,
                                        std::initializer_list<std::string_view> allowed) {
  return choice(option, text, std::span<const std::string_view>(allowed.begin(), allowed.size()));
}

/// The comma-separated items of `text`; an empty item is refused.
[[nodiscard]] inline std::vector<std::string> items(std::string_view option, std::string_view text) {
  std::vector<std::string> out;
  for (std::size_t at = 0;;) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    if (comma == at) throw usage_error(std::string(option) + " " + std::string(text) + ": an empty item in the list");
    out.emplace_back(text.substr(at, comma - at));
    if (comma == text.size()) return out;
    at = comma + 1;
  }
}

/// The argument after option `argv[i]` (and `i` moved onto it).
/// @throws usage_error "missing value after OPTION" at the end of the line
/// or when the next argument is an option itself ("--...").
[[nodiscard]] inline std::string_view value(int argc, char** argv, int& i) {
  if (i + 1 >= argc || std::string_view(argv[i + 1]).starts_with("--")) {
    throw usage_error(std::string("missing value after ").append(argv[i]));
  }
  return argv[++i];
}

/// The options given on a command line, for checks of options that only
/// apply together.
class given_options {
 public:
  void add(std::string_view option) { names_.emplace_back(option); }
  [[nodiscard]] bool has(std::string_view option) const {
    return std::find(names_.begin(), names_.end(), option) != names_.end();
  }
  /// Refuses each of `options` that was given: "OPTION does not apply REASON".
  void refuse(std::initializer_list<std::string_view> options, std::string_view reason) const {
    for (const auto o : options) {
      if (has(o)) throw usage_error(std::string(o) + " does not apply " + std::string(reason));
    }
  }

 private:
  std::vector<std::string> names_;
};

/// Refuses `--transport tcp` in a process that scripts/tcp_launch.sh (or an
/// equivalent) did not start: tcp_transport::from_environment needs
/// SKETCHSGD_TCP_ROOT, SKETCHSGD_RANK, SKETCHSGD_SIZE and the secret.
inline void check_tcp_launched() {
  if (std::getenv("SKETCHSGD_TCP_ROOT") == nullptr) {
    throw usage_error(
        "--transport tcp: SKETCHSGD_TCP_ROOT is not set; start the ranks with scripts/tcp_launch.sh -n W -- PROGRAM");
  }
}

/// Refuses a world that cannot run: one rank (nothing to communicate: a
/// launcher was probably not used), or more than `max_ranks`.
/// @param transport "inproc", "mpi" or "tcp": the message says how to start more ranks.
inline void check_world(std::string_view transport, std::int64_t ranks, std::int64_t max_ranks,
                        std::string_view why_max = {}) {
  const std::string what =
      transport == "inproc" ? "--workers" : std::string("--transport ").append(transport).append(": the world size");
  if (ranks < 2) {
    std::string how = "start 2 or more ranks";
    if (transport == "mpi") how += " with mpirun -np W (was the program started without mpirun?)";
    if (transport == "tcp") how += " with scripts/tcp_launch.sh -n W --";
    if (transport == "inproc") how = "give --workers 2 or more";
    throw usage_error(what + " is " + std::to_string(ranks) + ": a world of one rank communicates nothing; " + how);
  }
  if (ranks > max_ranks) {
    throw usage_error(what + " is " + std::to_string(ranks) +
                      ": out of range; allowed: " + interval<std::int64_t>(2, max_ranks) + detail::why_text(why_max));
  }
}

/// "2.1 TB", "1.5 GB", "300 MB".
[[nodiscard]] inline std::string bytes_text(double bytes) {
  char buffer[32];
  if (bytes >= 1e12) {
    std::snprintf(buffer, sizeof buffer, "%.1f TB", bytes / 1e12);
  } else if (bytes >= 1e9) {
    std::snprintf(buffer, sizeof buffer, "%.1f GB", bytes / 1e9);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.0f MB", std::ceil(bytes / 1e6));
  }
  return buffer;
}

/// Memory a new allocation can get without swapping, in bytes: Linux's
/// MemAvailable, else free physical pages; 0 when unknown.
[[nodiscard]] inline double available_memory() {
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    double kib = 0;
    std::string unit;
    meminfo >> kib >> unit;
    if (key == "MemAvailable:") return kib * 1024.0;
  }
#if defined(_SC_AVPHYS_PAGES)
  const long pages = sysconf(_SC_AVPHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<double>(pages) * static_cast<double>(page);
#endif
  return 0;
}

/// Refuses a run whose estimated memory, `bytes`, exceeds what is available.
/// `what` says what needs it ("4 in-process workers, each with ..."),
/// `advice` what to change.
inline void check_memory(double bytes, std::string_view what, std::string_view advice) {
  const double available = available_memory();
  if (available > 0 && bytes > available) {
    throw usage_error(std::string(what) + ": about " + bytes_text(bytes) + " of memory needed, " +
                      bytes_text(available) + " available; " + std::string(advice));
  }
}

/// A generous estimate of the memory one rank's optimizer holds over a
/// gradient of d floats: up to four d-sized vectors (momentum, error
/// feedback, estimates, the update), three rows x cols sketches (FetchSGD's
/// momentum, error and gradient sketches), and the k-sized and P k-sized
/// buffers of a step, with 8-byte indices beside 4-byte values.
[[nodiscard]] inline double optimizer_bytes(double d, double rows, double cols, double k, double candidates) {
  return 4.0 * (4.0 * d + 3.0 * rows * cols) + 12.0 * (candidates + 2.0) * k;
}

/// Refuses an output file that cannot be written (its directory missing or
/// not writable), before the run starts. Writes nothing.
inline void check_writable(std::string_view option, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (fs::exists(p, ec)) {
    if (fs::is_directory(p, ec) || access(path.c_str(), W_OK) != 0) {
      throw usage_error(std::string(option) + " " + path + ": not a writable file");
    }
    return;
  }
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec) || access(dir.c_str(), W_OK) != 0) {
    throw usage_error(std::string(option) + " " + path + ": cannot create it (" + dir.string() +
                      " is not a writable directory)");
  }
}

/// Timing programs call this first: built with SKETCHSGD_QUICK_BUILD
/// (scripts/test.sh's build, -O1) they say that their times are not for comparison.
inline void note_quick_build([[maybe_unused]] std::string_view program) {
#ifdef SKETCHSGD_QUICK_BUILD
  std::fprintf(stderr, "%.*s: built with SKETCHSGD_QUICK_BUILD (-O1, scripts/test.sh's build): time a Release build\n",
               static_cast<int>(program.size()), program.data());
#endif
}

}  // namespace cli
