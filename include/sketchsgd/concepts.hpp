// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The core concepts: `sketch_value` and `hash_family`. (`device` lives in
/// device.hpp, the transport concepts in transport/.)

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "sketchsgd/hash/bucket_sign.hpp"

namespace sketchsgd {

/// A type a sketch table may hold. Integers make sketch addition exact, which
/// is what bit-exact tests of linearity and of collectives use.
template <class T>
concept sketch_value =
    std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, std::int32_t> || std::same_as<T, std::int64_t>;

namespace detail {
/// A callable shaped like the visitor that `row_hash::for_each` receives.
struct bucket_visitor_archetype {
  void operator()(std::uint64_t /*i*/, bucket_sign /*bs*/) const noexcept {}
};
}  // namespace detail

/// A family of per-row hash functions giving each (row, key) a bucket in
/// `[0, cols)` and a sign +-1.
///
/// Built from `(seed, rows, cols)`; deterministic and platform-independent;
/// trivially copyable so that it can be passed to CUDA kernels; a frozen
/// numeric `id` that serialized sketches and configuration fingerprints carry.
/// `row(r)` returns the function of one row, with a point query
/// `operator()(key)` and a dense walk `for_each(first, n, f)` that must equal
/// point queries on `first, first + 1, ...`.
template <class H>
concept hash_family = std::is_trivially_copyable_v<H> &&
    std::constructible_from<H, std::uint64_t, std::uint32_t, std::uint32_t> &&
    requires(const H h, std::uint32_t r, std::uint64_t key, detail::bucket_visitor_archetype visit) {
  { H::id } -> std::convertible_to<std::uint8_t>;
  { H::max_cols } -> std::convertible_to<std::uint64_t>;
  { h.row(r)(key) } -> std::same_as<bucket_sign>;
  { h(r, key) } -> std::same_as<bucket_sign>;
  h.row(r).for_each(key, key, visit);
  { h.seed() } -> std::same_as<std::uint64_t>;
  { h.rows() } -> std::same_as<std::uint32_t>;
  { h.cols() } -> std::same_as<std::uint32_t>;
};

}  // namespace sketchsgd
