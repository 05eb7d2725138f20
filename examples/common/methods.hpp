// SPDX-License-Identifier: Apache-2.0
#pragma once

// The named optimizers that the example trainers (examples/fashion_mnist,
// examples/libtorch) and bench/bench_step_time.cpp pick with --method, built
// from one set of settings, held in one any_optimizer.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <sketchsgd/sketchsgd.hpp>

namespace methods {

/// What a program's --method needs. Every field has the library options'
/// default, so a program sets only what it chooses.
struct settings {
  /// dense, true-topk, local-topk, gtopk, sketched, fetchsgd or global-sketch.
  std::string method;
  std::uint64_t dimension = 0;
  std::size_t k = 0;
  sketchsgd::sketch_config sketch{};
  std::size_t candidates_factor = 3;
  float learning_rate = 1.0F;
  float momentum = 0.0F;
  bool average = false;
  sketchsgd::topology topology = sketchsgd::topology::allreduce;
  std::vector<sketchsgd::dense_range> dense{};
  sketchsgd::nonfinite_policy nonfinite = sketchsgd::nonfinite_policy::throw_error;
  sketchsgd::cpu_execution exec{};
  bool overlap_rows = false;  // Sketched-SGD and global sketch only
};

/// `o` with the fields the named optimizers' options share set from `s`.
template <class Options>
Options with_settings(const settings& s, Options o) {
  o.dimension = s.dimension;
  o.learning_rate = s.learning_rate;
  o.momentum = s.momentum;
  o.average = s.average;
  o.nonfinite = s.nonfinite;
  if constexpr (requires { o.dense; }) {  // every compressing method
    o.k = s.k;
    o.dense = s.dense;
    o.exec = s.exec;
  }
  return o;
}

/// The named optimizer `s.method` names, with `s`'s settings.
/// @throws std::invalid_argument for an unknown method, or what the
/// optimizer's constructor throws.
template <class Transport>
sketchsgd::any_optimizer<float> named_optimizer(const settings& s, sketchsgd::communicator<Transport>& comm) {
  using namespace sketchsgd;
  const auto make = [&]<class Opt>(std::type_identity<Opt>, const typename Opt::options_type& options) {
    return any_optimizer<float>(std::in_place_type<Opt>, comm, with_settings(s, options));
  };
  if (s.method == "dense") return make(std::type_identity<dense_sgd<float, Transport>>{}, {});
  if (s.method == "true-topk") return make(std::type_identity<true_topk_sgd<float, Transport>>{}, {});
  if (s.method == "local-topk") return make(std::type_identity<local_topk_sgd<float, Transport>>{}, {});
  if (s.method == "gtopk") return make(std::type_identity<gtopk_sgd<float, Transport>>{}, {});
  if (s.method == "fetchsgd") {
    return make(std::type_identity<fetch_sgd<float, Transport>>{}, {.sketch = s.sketch, .topology = s.topology});
  }
  const sketched_sgd_options<float> sketched{.sketch = s.sketch,
                                             .candidates_factor = s.candidates_factor,
                                             .topology = s.topology,
                                             .overlap_rows = s.overlap_rows};
  if (s.method == "global-sketch") return make(std::type_identity<global_sketch_sgd<float, Transport>>{}, sketched);
  if (s.method == "sketched") return make(std::type_identity<sketched_sgd<float, Transport>>{}, sketched);
  throw std::invalid_argument("unknown method " + s.method);
}

}  // namespace methods
