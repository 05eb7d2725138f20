// SPDX-License-Identifier: Apache-2.0
// Compile-fail test (tests/optim/compile_fail/expect_compile_error.cmake): a
// recovery policy must say what every rank has to agree on (`describe`);
// this one does not, and the sketch aggregation refuses it where it names
// its sketch type (`detail::recovered_sketch`), with recovery_policy in the
// notes. With SKETCHSGD_WITH_HOOK defined it compiles.

#include <cstddef>
#include <cstdint>

#include <sketchsgd/sketchsgd.hpp>

struct first_k_recovery {  // the first `count` coordinates, whatever the sketch says
  template <class Ops, class Sketch, class Scratch, class Context>
  sketchsgd::sparse_update<typename Sketch::value_type> select(const Sketch& /*s*/, std::uint64_t d, std::size_t count,
                                                               Scratch /*scratch*/, Context& /*c*/,
                                                               std::uint64_t /*step*/) const {
    sketchsgd::sparse_update<typename Sketch::value_type> out;
    for (std::uint64_t i = 0; i < count && i < d; ++i) {
      out.indices.push_back(i);
      out.values.push_back(typename Sketch::value_type{});
    }
    return out;
  }
#if defined(SKETCHSGD_WITH_HOOK)
  void describe(sketchsgd::fingerprint& /*f*/) const {}
#endif
};

int main() {
  using aggregation = sketchsgd::sketched_aggregation<float, sketchsgd::multiply_shift, first_k_recovery>;
  return sizeof(aggregation::sketch_type) == 0 ? 1 : 0;
}
