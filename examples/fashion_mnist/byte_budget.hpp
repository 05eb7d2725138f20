// SPDX-License-Identifier: Apache-2.0
#pragma once

// The byte budget of the Fashion-MNIST trainers (this one and
// examples/libtorch): the sketch and k that fit a target compression, from
// sketchsgd's model of the bytes each allreduce sends.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include <sketchsgd/collective/allreduce.hpp>

#include "cli.hpp"

namespace fmnist {

/// Sketch and k for a target compression X: the largest configuration whose
/// modelled bytes per step fit 1/X of a dense ring allreduce of d floats,
/// counting every round the method makes (bias coordinates, NaN check,
/// second round). Sketched-SGD and gs-SGD with P > 0: c = 19 k per row and
/// P k candidates; FetchSGD and gs-SGD with P = 0: the widest table that
/// fits, k = c / 19 (k costs nothing on the wire there). Local top-k: the
/// largest k whose allgatherv of (index, value) pairs fits; gTop-k: the
// largest k whose broadcast from rank 0 (ceil(log2 W) sends of k pairs, the
// most any rank sends) fits. True top-k moves
/// dense bytes whatever k is; it takes Sketched-SGD's k, as the accuracy
/// bound at that k. (c / k = 19 with one row and P = 4 was the best of a
/// small grid at 10x and 50x; see docs/results.md.)
template <class Config>
void choose_budget(Config& c, std::size_t d, std::size_t dense, int world) {
  const auto allreduce_bytes = [world](double n) { return sketchsgd::allreduce_bytes_model(n, world); };
  if (c.compression <= 0 || world == 1) {
    if (c.cols == 0) c.cols = 19000;
    if (c.k == 0) c.k = 1000;
    return;
  }
  const double budget = allreduce_bytes(4.0 * static_cast<double>(d)) / c.compression;
  const double fixed = allreduce_bytes(4.0 * static_cast<double>(dense)) + allreduce_bytes(8);
  const auto r = static_cast<double>(c.rows);
  const auto p = static_cast<double>(c.candidates);
  const bool second_round =
      c.method == "sketched" || c.method == "true-topk" || (c.method == "global-sketch" && c.candidates > 0);
  const auto bytes = [&](double k) {
    if (c.method == "local-topk") return fixed + (world - 1) * 8.0 + (world - 1) * 8.0 * k;
    if (c.method == "gtopk") return fixed + std::ceil(std::log2(world)) * 8.0 * k;  // rank 0 broadcasts
    const double table = allreduce_bytes(4 * r * c.cols_per_k * k);
    return fixed + table + (second_round ? allreduce_bytes(4 * p * k) : 0.0);
  };
  const auto fits = [&](double k) { return bytes(k) <= budget; };
  if (!fits(1)) {
    const double most = allreduce_bytes(4.0 * static_cast<double>(d)) / bytes(1);
    throw cli::usage_error("--compression " + cli::number_text(c.compression) + ": too high for " + c.method +
                           " with d = " + std::to_string(d) + " and W = " + std::to_string(world) +
                           "; allowed: at most " + cli::number_text(std::floor(most * 10) / 10) +
                           " (k = 1 already sends that much)");
  }
  double k = 1;
  while (fits(k * 2)) k *= 2;
  for (double step = k / 2; step >= 1; step /= 2) {
    if (fits(k + step)) k += step;
  }
  c.k = static_cast<std::size_t>(k);
  c.cols = static_cast<std::uint64_t>(c.cols_per_k * k);
}

}  // namespace fmnist
