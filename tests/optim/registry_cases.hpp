// SPDX-License-Identifier: Apache-2.0
#pragma once

// Shared by the tests that run every method of the registry: a gradient of
// noise and spikes, and one set of options that every method takes.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sketchsgd/hash/seed_mixer.hpp"
#include "sketchsgd/optim/methods.hpp"
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

}  // namespace sketchsgd::test
