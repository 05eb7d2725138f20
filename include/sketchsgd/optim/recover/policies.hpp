// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Recovery policies: which coordinates a summed sketch yields to the sketch
/// aggregations (Sketched-SGD's candidates, FetchSGD's update). Every rank
/// holding the same sketch selects the same coordinates.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "sketchsgd/hash/seed_mixer.hpp"
#include "sketchsgd/optim/state/fingerprint.hpp"
#include "sketchsgd/sketch/heavy_hitters.hpp"
#include "sketchsgd/sketch/sparse_update.hpp"
#include "sketchsgd/sketch/topk.hpp"

namespace sketchsgd {

/// The `count` coordinates with the largest |estimate| (ties to the lower
/// index): what Sketched-SGD and FetchSGD ran. O(rows d), on the device.
struct top_k_recovery {
  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  template <class Ops, class Sketch, class Scratch>
  [[nodiscard]] auto select(const Sketch& s, std::uint64_t d, std::size_t count, Scratch scratch,
                            typename Ops::context& c, std::uint64_t /*step*/) const {
    return Ops::top_k(s, d, count, scratch, c);
  }
  void describe(detail::fingerprint& f) const { f.add(std::uint8_t{1}); }
  /// @endcond
};

/// HEAVYMIX (Ivkin et al. 2019, the selection their guarantees assume): the
/// l2 heavy hitters for phi = 1 / count, filled up to `count` with
/// coordinates drawn uniformly from the rest (seeded by `seed` and the steps
/// taken, so every rank draws the same). On the sketch's device: its top
/// `count`, kept above the threshold (`detail::keep_above`: the same set as
/// `heavymix`'s), and the estimates of the drawn fill; only those `count`
/// entries and the fill's indices cross to or from the host.
///
/// The paper's HEAVYMIX selects k coordinates (phi = 1 / k) and applies all
/// of them with their exact sums. How close each use comes:
/// - Sketched-SGD with a second round (P >= 1) and `apply_all`: exactly
///   that. The k selected, fill included, are summed exactly (a second
///   round of k values) and all applied.
/// - Sketched-SGD with P >= 1 and `apply_all = false` (the default, what
///   earlier versions did): a deviation. HEAVYMIX picks P k candidates
///   (phi = 1 / (P k), filled up to P k), the second round sums them and only
///   the k largest exact sums are applied, so the fill mostly drops out and
///   the selection is close to a top k of the candidates.
/// - Sketched-SGD with P = 0, and FetchSGD: not faithful, whatever
///   `apply_all` says. There is no exact value to fetch: the k selected are
///   applied with their sketch estimates, which for the uniformly drawn fill
///   are mostly noise, and then the applied coordinates leave the memory
///   (Sketched-SGD zeroes v there; FetchSGD zeroes, or subtracts, their
///   cells), so what the fill held is lost rather than applied.
struct heavymix_recovery {
  std::uint64_t seed = 0;  ///< the fill's seed; the same on every rank
  /// With a second round (Sketched-SGD, P >= 1): select k coordinates, not
  /// P k candidates, and apply every one of them with its exact sum (the
  /// paper's HEAVYMIX; the second round then carries k values). No effect
  /// without a second round.
  bool apply_all = false;

  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  /// The selection is the update: ask for k, apply all of it.
  [[nodiscard]] bool applies_selection() const noexcept { return apply_all; }

  template <class Ops, class Sketch, class Scratch>
  [[nodiscard]] auto select(const Sketch& s, std::uint64_t d, std::size_t count, Scratch scratch,
                            typename Ops::context& c, std::uint64_t step) const {
    detail::check_heavymix_k(count, d);
    const double threshold = detail::heavymix_threshold(Ops::l2_estimate(s, c), count);
    auto heavy = Ops::top_k(s, d, count, scratch, c);
    detail::keep_above(heavy, threshold);
    auto mixed = detail::mix_in_fill(heavy, d, count, mix64(seed ^ (0x9E3779B97F4A7C15ULL * (step + 1))));
    std::vector<std::uint64_t> keys(mixed.fill.size());
    std::vector<typename Sketch::value_type> values(keys.size());
    for (std::size_t j = 0; j < keys.size(); ++j) keys[j] = mixed.update.indices[mixed.fill[j]];
    Ops::estimate(s, std::span<const std::uint64_t>(keys), std::span(values), c);
    for (std::size_t j = 0; j < keys.size(); ++j) mixed.update.values[mixed.fill[j]] = values[j];
    return std::move(mixed.update);
  }
  // Id 4 for `apply_all`: the default's fingerprint stays what it was.
  void describe(detail::fingerprint& f) const { f.add(static_cast<std::uint8_t>(apply_all ? 4 : 2)).add(seed); }
  /// @endcond
};

/// The l2 heavy hitters: every i with estimate(i)^2 >= phi l2_estimate()^2
/// (Charikar et al.: found with high probability once cols = Omega(1/phi)),
/// at most `count` of them (the largest). The number recovered varies from
/// step to step. On the sketch's device: its top `count`, kept above the
/// threshold (`detail::keep_above`).
struct threshold_recovery {
  double phi = 0.0;  ///< in (0, 1]

  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.

  template <class Ops, class Sketch, class Scratch>
  [[nodiscard]] auto select(const Sketch& s, std::uint64_t d, std::size_t count, Scratch scratch,
                            typename Ops::context& c, std::uint64_t /*step*/) const {
    const double l2 = Ops::l2_estimate(s, c);
    auto heavy = Ops::top_k(s, d, static_cast<std::size_t>(std::min<std::uint64_t>(count, d)), scratch, c);
    detail::keep_above(heavy, phi * l2 * l2);
    return heavy;
  }
  void describe(detail::fingerprint& f) const { f.add(std::uint8_t{3}).add(phi); }
  void validate(const char* who) const {
    if (!(phi > 0.0 && phi <= 1.0)) throw std::invalid_argument(std::string(who) + ": threshold phi must be in (0, 1]");
  }
  /// @endcond
};

/// A recovery policy chosen at run time (`method_options::recovery`): it
/// selects, fingerprints and checks as the policy it holds does, so a
/// composition with it gives the bits and fingerprint of one with that
/// policy as its type.
struct any_recovery {
  std::variant<top_k_recovery, heavymix_recovery, threshold_recovery> held{};  ///< the policy in force

  /// @cond POLICY_HOOKS
  // The policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  [[nodiscard]] bool applies_selection() const noexcept {
    return std::holds_alternative<heavymix_recovery>(held) && std::get<heavymix_recovery>(held).apply_all;
  }
  template <class Ops, class Sketch, class Scratch>
  [[nodiscard]] sparse_update<typename Sketch::value_type> select(const Sketch& s, std::uint64_t d, std::size_t count,
                                                                  Scratch scratch, typename Ops::context& c,
                                                                  std::uint64_t step) const {
    return std::visit(
        [&](const auto& r) -> sparse_update<typename Sketch::value_type> {
          return r.template select<Ops>(s, d, count, scratch, c, step);
        },
        held);
  }
  void describe(detail::fingerprint& f) const {
    std::visit([&](const auto& r) { r.describe(f); }, held);
  }
  void validate(const char* who) const {
    if (const auto* t = std::get_if<threshold_recovery>(&held)) t->validate(who);
  }
  /// @endcond
};

}  // namespace sketchsgd
