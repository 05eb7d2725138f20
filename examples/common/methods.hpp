// SPDX-License-Identifier: Apache-2.0
#pragma once

// The named optimizers that the example trainers (examples/fashion_mnist,
// examples/libtorch) and bench/bench_step_time.cpp pick with --method, built
// from one set of settings, held in one any_optimizer. dense-bf16 and
// dense-fp16 are dense SGD with its sum carried in 16 bits (summed in
// float32, rounded at every hop): the fair baseline for compression.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sketchsgd/sketchsgd.hpp>

namespace methods {

/// What a program's --method needs. Every field has the library options'
/// default, so a program sets only what it chooses.
struct settings {
  /// dense, dense-bf16, dense-fp16, true-topk, local-topk, gtopk, sketched,
  /// fetchsgd or global-sketch.
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
  std::size_t slices = 1;     // Sketched-SGD and global sketch only
};

/// Every --method name, in the order the programs list them.
inline const std::vector<std::string_view> names = {"dense", "dense-bf16", "dense-fp16", "true-topk",    "local-topk",
                                                    "gtopk", "sketched",   "fetchsgd",   "global-sketch"};

/// Dense SGD, with the gradient on a float32 or a 16-bit wire.
[[nodiscard]] inline bool is_dense(std::string_view method) {
  return method == "dense" || method == "dense-bf16" || method == "dense-fp16";
}
/// How dense SGD's sum travels for `method`.
[[nodiscard]] inline sketchsgd::wire_format dense_wire(std::string_view method) {
  if (method == "dense-bf16") return sketchsgd::wire_format::bfloat16;
  if (method == "dense-fp16") return sketchsgd::wire_format::float16;
  return sketchsgd::wire_format::native;
}

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
  if (is_dense(s.method))
    return make(std::type_identity<dense_sgd<float, Transport>>{}, {.wire = dense_wire(s.method)});
  if (s.method == "true-topk") return make(std::type_identity<true_topk_sgd<float, Transport>>{}, {});
  if (s.method == "local-topk") return make(std::type_identity<local_topk_sgd<float, Transport>>{}, {});
  if (s.method == "gtopk") return make(std::type_identity<gtopk_sgd<float, Transport>>{}, {});
  if (s.method == "fetchsgd") {
    return make(std::type_identity<fetch_sgd<float, Transport>>{}, {.sketch = s.sketch, .topology = s.topology});
  }
  const sketched_sgd_options<float> sketched{.sketch = s.sketch,
                                             .candidates_factor = s.candidates_factor,
                                             .topology = s.topology,
                                             .overlap_rows = s.overlap_rows,
                                             .slices = s.slices};
  if (s.method == "global-sketch") return make(std::type_identity<global_sketch_sgd<float, Transport>>{}, sketched);
  if (s.method == "sketched") return make(std::type_identity<sketched_sgd<float, Transport>>{}, sketched);
  throw std::invalid_argument("unknown method " + s.method);
}

}  // namespace methods
