// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Checkpoints of optimizer state (little-endian). Serial version 1 is what
/// the named optimizers write (the layout and fingerprints of main before
/// the policy layer, kept so their checkpoints stay valid); version 2 is a
/// composed optimizer's: the same layout, sections listed by its policies
/// (aggregation first, then update rule), a fingerprint built from them.
///
/// | offset | bytes | field |
/// |---:|---:|---|
/// | 0 | 4 | magic "SKOS" |
/// | 4 | 1 | serial version: 1 (named optimizer) or 2 (composed) |
/// | 5 | 1 | family = 2 (optimizer state) |
/// | 6 | 1 | optimizer kind |
/// | 7 | 1 | value type code |
/// | 8 | 8 | configuration fingerprint |
/// | 16 | 8 | steps taken (version 1: skipped steps included) |
/// | 24 | 4 | rank |
/// | 28 | 4 | world size |
/// | 32 | 4 | number of sections |
/// | 36 | 4 | reserved, 0 |
/// | 40 | * | sections: u64 element count, u32 element bytes, u32 reserved, elements |
///
/// A reader checks every field against the optimizer it loads into; a
/// different configuration, rank or world size is a `config_mismatch_error`,
/// malformed bytes a `serialization_error`. Section sizes must equal what the
/// configuration implies, so nothing is allocated from a length in the file.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "sketchsgd/error.hpp"
#include "sketchsgd/serialize/wire.hpp"

namespace sketchsgd {

/// Frozen ids of the optimizers in checkpoints and fingerprints: the
/// aggregation's (`custom` for user-defined aggregation policies, which
/// their fingerprint tells apart).
enum class optimizer_kind : std::uint8_t {
  sketched_sgd = 1,
  fetch_sgd = 2,
  global_sketch_sgd = 3,
  dense_sgd = 4,
  true_topk_sgd = 5,
  local_topk_sgd = 6,
  gtopk_sgd = 7,
  custom = 255,
};

}  // namespace sketchsgd

namespace sketchsgd::detail {

using sketchsgd::optimizer_kind;

inline constexpr std::uint32_t state_magic = 0x534F4B53U;  // "SKOS"
inline constexpr std::size_t state_header_bytes = 40;

struct state_header {
  optimizer_kind kind;
  std::uint8_t value_code;
  std::uint64_t fingerprint;
  std::uint64_t steps;
  std::uint32_t rank;
  std::uint32_t world;
  std::uint32_t sections;
  std::uint8_t version = 1;
};

inline void write_state_header(std::ostream& os, const state_header& h) {
  std::array<std::byte, state_header_bytes> b{};
  wire::store_le(b.data(), state_magic);
  b[4] = static_cast<std::byte>(h.version);
  b[5] = static_cast<std::byte>(wire::family::optimizer_state);
  b[6] = static_cast<std::byte>(h.kind);
  b[7] = static_cast<std::byte>(h.value_code);
  wire::store_le(b.data() + 8, h.fingerprint);
  wire::store_le(b.data() + 16, h.steps);
  wire::store_le(b.data() + 24, h.rank);
  wire::store_le(b.data() + 28, h.world);
  wire::store_le(b.data() + 32, h.sections);
  os.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

template <class T>
void write_state_section(std::ostream& os, std::span<const T> data) {
  std::array<std::byte, 16> head{};
  wire::store_le(head.data(), static_cast<std::uint64_t>(data.size()));
  wire::store_le(head.data() + 8, static_cast<std::uint32_t>(sizeof(T)));
  os.write(reinterpret_cast<const char*>(head.data()), static_cast<std::streamsize>(head.size()));
  constexpr std::size_t chunk = 1 << 16;
  std::vector<std::byte> buffer(std::min(chunk, data.size()) * sizeof(T));
  for (std::size_t at = 0; at < data.size(); at += chunk) {
    const auto part = data.subspan(at, std::min(chunk, data.size() - at));
    wire::store_array_le(buffer.data(), part);
    os.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(part.size_bytes()));
  }
  if (!os) throw serialization_error("optimizer save: the output stream failed");
}

[[noreturn]] inline void bad_state(const char* who, const std::string& what) {
  throw serialization_error(std::string(who) + " load: " + what);
}

/// Reads and checks the header against `expected` (steps are returned).
inline std::uint64_t read_state_header(std::istream& is, const state_header& expected, const char* who) {
  std::array<std::byte, state_header_bytes> b{};
  is.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (static_cast<std::size_t>(is.gcount()) != b.size()) bad_state(who, "truncated header");
  if (wire::load_le<std::uint32_t>(b.data()) != state_magic) bad_state(who, "field 'magic': not an optimizer state");
  if (static_cast<std::uint8_t>(b[5]) != static_cast<std::uint8_t>(wire::family::optimizer_state)) {
    bad_state(who, "field 'family': expected 2 (optimizer state), got " + std::to_string(static_cast<unsigned>(b[5])));
  }
  if (static_cast<std::uint8_t>(b[4]) != expected.version) {
    const auto version = [](unsigned v) {
      return std::to_string(v) + (v == 1 ? " (a named optimizer's)" : v == 2 ? " (a composed optimizer's)" : "");
    };
    bad_state(who, "field 'serial_version': this optimizer reads version " + version(expected.version) +
                       ", the state is version " + version(static_cast<unsigned>(b[4])));
  }
  if (static_cast<std::uint8_t>(b[6]) != static_cast<std::uint8_t>(expected.kind)) {
    throw config_mismatch_error(std::string(who) + " load: the state is of optimizer kind " +
                                std::to_string(static_cast<unsigned>(b[6])) + ", not " +
                                std::to_string(static_cast<unsigned>(expected.kind)));
  }
  if (static_cast<std::uint8_t>(b[7]) != expected.value_code) {
    throw config_mismatch_error(std::string(who) + " load: the state holds " +
                                wire::value_type_name(static_cast<std::uint8_t>(b[7])) + " values, not " +
                                wire::value_type_name(expected.value_code));
  }
  if (wire::load_le<std::uint64_t>(b.data() + 8) != expected.fingerprint) {
    throw config_mismatch_error(std::string(who) + " load: the state was saved under another configuration");
  }
  if (wire::load_le<std::uint32_t>(b.data() + 24) != expected.rank ||
      wire::load_le<std::uint32_t>(b.data() + 28) != expected.world) {
    throw config_mismatch_error(std::string(who) + " load: the state is rank " +
                                std::to_string(wire::load_le<std::uint32_t>(b.data() + 24)) + " of " +
                                std::to_string(wire::load_le<std::uint32_t>(b.data() + 28)) + ", this is rank " +
                                std::to_string(expected.rank) + " of " + std::to_string(expected.world));
  }
  if (wire::load_le<std::uint32_t>(b.data() + 32) != expected.sections) {
    bad_state(who, "field 'sections': expected " + std::to_string(expected.sections) + ", got " +
                       std::to_string(wire::load_le<std::uint32_t>(b.data() + 32)));
  }
  if (wire::load_le<std::uint32_t>(b.data() + 36) != 0) bad_state(who, "field 'reserved' is not zero");
  return wire::load_le<std::uint64_t>(b.data() + 16);
}

/// Reads one section into `into`, whose size the configuration fixed.
template <class T>
void read_state_section(std::istream& is, std::span<T> into, const char* who) {
  std::array<std::byte, 16> head{};
  is.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  if (static_cast<std::size_t>(is.gcount()) != head.size()) bad_state(who, "truncated section header");
  const auto count = wire::load_le<std::uint64_t>(head.data());
  const auto element = wire::load_le<std::uint32_t>(head.data() + 8);
  if (count != into.size() || element != sizeof(T) || wire::load_le<std::uint32_t>(head.data() + 12) != 0) {
    bad_state(who, "section of " + std::to_string(count) + " x " + std::to_string(element) + " bytes, expected " +
                       std::to_string(into.size()) + " x " + std::to_string(sizeof(T)));
  }
  constexpr std::size_t chunk = 1 << 16;
  std::vector<std::byte> buffer(std::min(chunk, into.size()) * sizeof(T));
  for (std::size_t at = 0; at < into.size(); at += chunk) {
    const auto part = into.subspan(at, std::min(chunk, into.size() - at));
    is.read(reinterpret_cast<char*>(buffer.data()), static_cast<std::streamsize>(part.size_bytes()));
    if (static_cast<std::size_t>(is.gcount()) != part.size_bytes()) bad_state(who, "truncated section");
    wire::load_array_le(buffer.data(), part);
  }
}

}  // namespace sketchsgd::detail
