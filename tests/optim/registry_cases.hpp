// SPDX-License-Identifier: Apache-2.0
#pragma once

// Shared by the tests that run every method of the registry: a gradient of
// noise and spikes, and one set of options that every method takes.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "sketchsgd/hash/seed_mixer.hpp"
#include "sketchsgd/optim/methods.hpp"
#include "sketchsgd/optim/state/state_io.hpp"
#include "test_support.hpp"

namespace sketchsgd::test {

/// Rank r's gradient at step s: d values of noise in [-1, 1), one in 50
/// raised by 6.
inline std::vector<float> spiky_gradient(std::uint64_t d, int r, std::uint64_t s) {
  std::vector<float> g(d);
  splitmix64 rng(mix64(s * 131 + static_cast<std::uint64_t>(r) + 7));
  for (auto& x : g) x = static_cast<float>(2.0 * uniform01(rng) - 1.0 + (rng.next_below(50) == 0 ? 6.0 : 0.0));
  return g;
}

/// Options every method takes: k = 20, a 3 x 400 sketch, momentum 0.5,
/// averaged, skipped steps on NaN, and (but for the dense methods) ten
/// coordinates sent dense.
inline method_options<float> registry_options(std::string_view method, std::uint64_t d) {
  method_options<float> o{.method = std::string(method),
                          .dimension = d,
                          .k = 20,
                          .sketch = {.rows = 3, .cols = 400, .seed = 11},
                          .learning_rate = 0.5F,
                          .momentum = 0.5F,
                          .average = true,
                          .nonfinite = nonfinite_policy::skip_step};
  if (!is_dense_method(method)) o.dense = {{.offset = 0, .length = 10}};
  return o;
}

/// `registry_options` with momentum 0.9 (memories worth keeping) and a
/// non-finite gradient an error: the elastic tests'.
inline method_options<float> memory_options(std::string_view method, std::uint64_t d) {
  auto o = registry_options(method, d);
  o.momentum = 0.9F;
  o.nonfinite = nonfinite_policy::throw_error;
  return o;
}

/// Elastic tests: the sum over `states` (optimizer states, `save`'s bytes) of each of the first two sections (u and v).
inline std::vector<std::vector<double>> memory_sums(const std::vector<std::string>& states) {
  std::vector<std::vector<double>> sums;
  for (const auto& bytes : states) {
    if (bytes.empty()) continue;  // a newcomer's: nothing
    std::size_t at = detail::state_header_bytes;
    for (std::size_t s = 0; s < 2; ++s) {
      std::uint64_t count = 0;
      std::memcpy(&count, bytes.data() + at, 8);
      std::vector<float> x(count);
      std::memcpy(x.data(), bytes.data() + at + 16, count * sizeof(float));
      at += 16 + count * sizeof(float);
      if (sums.size() <= s) sums.emplace_back(count, 0.0);
      for (std::size_t i = 0; i < count; ++i) sums[s][i] += x[i];
    }
  }
  return sums;
}

/// The largest |got - want| over both sums, relative to the largest
/// |want| of each (infinity when a sum is all zero or the shapes differ).
inline double sums_gap(const std::vector<std::vector<double>>& want, const std::vector<std::vector<double>>& got) {
  if (want.size() != got.size()) return std::numeric_limits<double>::infinity();
  double gap = 0;
  for (std::size_t s = 0; s < want.size(); ++s) {
    double scale = 0;
    for (const double x : want[s]) scale = std::max(scale, std::abs(x));
    if (scale == 0 || want[s].size() != got[s].size()) return std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < want[s].size(); ++i) gap = std::max(gap, std::abs(got[s][i] - want[s][i]) / scale);
  }
  return gap;
}

}  // namespace sketchsgd::test
