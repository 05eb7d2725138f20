// SPDX-License-Identifier: Apache-2.0
// Compile-fail test (tests/optim/compile_fail/expect_compile_error.cmake): an
// aggregation policy without `rounds` is refused at composed_optimizer's
// static_assert, whose notes name the hook. With SKETCHSGD_WITH_HOOK defined
// it compiles: the hook is all it lacks.

#include <span>

#include <sketchsgd/sketchsgd.hpp>

template <class Value>
class no_rounds {
  using context = sketchsgd::step_context<Value, sketchsgd::cpu_t>;

 public:
  using value_type = Value;
  using device_type = sketchsgd::cpu_t;
  struct options_type {};
  static constexpr const char* name = "no_rounds";

  no_rounds(const options_type& /*o*/, const context& /*c*/) {}
  void accumulate(std::span<const Value> g, const context& /*c*/) { g_ = g; }
  [[nodiscard]] std::span<const Value> source() const noexcept { return g_; }
#if defined(SKETCHSGD_WITH_HOOK)
  sketchsgd::round_generator<Value> rounds(const context& /*c*/, sketchsgd::model_update<Value>& /*out*/) { co_return; }
#endif

 private:
  std::span<const Value> g_{};
};

int main() {
  sketchsgd::composed_optimizer<no_rounds<float>, sketchsgd::sgd_update<float>> opt(0, 1, {.dimension = 10});
  return opt.fingerprint() == 0 ? 1 : 0;
}
