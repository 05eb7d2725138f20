// SPDX-License-Identifier: Apache-2.0
// What a user writes: sketch a gradient, recover its heavy coordinates.
// Built by every consumer project with strict warnings as errors.

#include <sketchsgd/sketchsgd.hpp>

#include <cstdio>
#include <vector>

int main() {
  const sketchsgd::sketch_config cfg{.rows = 5, .cols = 2000, .seed = 42};
  sketchsgd::count_sketch<float> sketch(cfg);

  std::vector<float> gradient(100000, 0.01F);
  gradient[123] = 5.0F;
  gradient[98765] = -7.0F;
  sketch.accumulate(gradient);

  const auto heavy = sketchsgd::top_k(sketch, gradient.size(), 2);
  const bool ok = heavy.indices == std::vector<std::uint64_t>{123, 98765} && heavy.values[1] < -6.5F;
  std::printf("top-2 of the sketch: %llu (%g), %llu (%g) -> %s\n", static_cast<unsigned long long>(heavy.indices[0]),
              static_cast<double>(heavy.values[0]), static_cast<unsigned long long>(heavy.indices[1]),
              static_cast<double>(heavy.values[1]), ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
