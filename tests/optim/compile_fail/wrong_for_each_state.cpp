// SPDX-License-Identifier: Apache-2.0
// Compile-fail test (tests/optim/compile_fail/expect_compile_error.cmake): an
// update rule may leave `for_each_state` out (no state), but one that
// declares it must take the driver's visitor; this one does not, and is
// refused at composed_optimizer's static_assert, whose notes name the hook.
// With SKETCHSGD_WITH_HOOK defined it compiles.

#include <cstdint>
#include <span>
#include <vector>

#include <sketchsgd/sketchsgd.hpp>

template <class Value>
class counting_rule {
 public:
  struct options_type {};

  counting_rule(const options_type& /*o*/, std::uint64_t /*d*/, const char* /*name*/) {}
  void apply(sketchsgd::model_update<Value>& /*u*/, Value /*eta*/, bool /*eta_applied*/, std::uint64_t /*step*/) {
    steps_[0] += Value{1};
  }
#if defined(SKETCHSGD_WITH_HOOK)
  template <class F>
  void for_each_state(F&& f) {
    f(std::span<Value>(steps_));
  }
#else
  void for_each_state(std::vector<Value>& out) const { out = steps_; }  // not what the driver calls
#endif

 private:
  std::vector<Value> steps_ = std::vector<Value>(1);
};

int main() {
  sketchsgd::composed_optimizer<sketchsgd::dense_aggregation<float>, counting_rule<float>> opt(0, 1, {.dimension = 10});
  return opt.fingerprint() == 0 ? 1 : 0;
}
