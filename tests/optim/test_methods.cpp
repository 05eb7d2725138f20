// SPDX-License-Identifier: Apache-2.0
// The method registry (optim/methods.hpp): every name builds in both forms,
// an unknown name is refused with the list of names, the split-phase
// any_optimizer gives the transport form's bits, the named optimizers keep
// their identity, and a recovery chosen at run time is the typed one.

#include <catch2/catch.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "optim_harness.hpp"
#include "registry_cases.hpp"
#include "sketchsgd/optim/methods.hpp"
#include "sketchsgd/sketchsgd.hpp"

using namespace sketchsgd;

namespace registry_test {

using T = inproc_transport;
constexpr std::uint64_t d = 3000;

std::vector<float> gradient(int r, std::uint64_t s) { return test::spiky_gradient(d, r, s); }
method_options<float> options_for(std::string_view method) { return test::registry_options(method, d); }

/// Every rank's updates over three steps, transport-driven or in split phase
/// (its rounds carried with sketchsgd's collectives).
std::vector<std::vector<model_update<float>>> run(const method_options<float>& o, bool split) {
  std::vector<std::vector<model_update<float>>> seen(3);
  test::on_inproc(3, [&](int r, T& t) {
    communicator comm(t);
    any_optimizer<float> opt = split ? make_optimizer(r, 3, o) : make_optimizer(comm, o);
    for (std::uint64_t s = 0; s < 3; ++s) {
      const auto g = gradient(r, s);
      if (split) {
        auto rounds = opt.step_rounds(g);
        while (const collective_round<float>* round = rounds.next()) detail::run_round(comm, *round);
      } else {
        (void)opt.step(g);
      }
      seen[static_cast<std::size_t>(r)].push_back(opt.last_update());
    }
  });
  return seen;
}

}  // namespace registry_test

TEST_CASE("every method name builds, and in split phase gives the transport form's bits", "[optim][methods]") {
  using namespace registry_test;
  for (const std::string_view name : method_names) {
    for (const update_choice update : {update_choice::sgd, update_choice::adam, update_choice::aggregated_gradient}) {
      INFO(std::string(name) << ", update " << static_cast<int>(update));
      auto o = options_for(name);
      o.update = update;
      if (update != update_choice::sgd) o.momentum = 0.0F;
      if (update == update_choice::adam && is_sketch_method(name)) o.recovery = {heavymix_recovery{.seed = 3}};
      const auto direct = run(o, false);
      CHECK(run(o, true) == direct);
      CHECK(direct[0] == direct[2]);  // the same update on every rank
    }
  }
}

TEST_CASE("an unknown method is refused with the list of names", "[optim][methods]") {
  using namespace registry_test;
  const auto o = options_for("sketch");
  CHECK_THROWS_MATCHES(make_optimizer(0, 2, o), std::invalid_argument,
                       Catch::Matchers::Message("unknown method 'sketch'; expected one of dense, dense-bf16, "
                                                "dense-fp16, true-topk, local-topk, gtopk, sketched, fetchsgd, "
                                                "global-sketch"));
  CHECK_THROWS_AS(test::on_inproc(2,
                                  [&](int, T& t) {
                                    communicator comm(t);
                                    (void)make_optimizer(comm, o);
                                  }),
                  std::invalid_argument);
}

TEST_CASE("the registry's named methods are the named optimizers", "[optim][methods]") {
  using namespace registry_test;
  test::on_inproc(2, [&](int, T& t) {
    communicator comm(t);
    const auto o = options_for("sketched");
    const sketched_sgd<float, T> named(comm, {.dimension = d,
                                              .sketch = o.sketch,
                                              .k = o.k,
                                              .learning_rate = o.learning_rate,
                                              .momentum = o.momentum,
                                              .average = true,
                                              .dense = o.dense,
                                              .nonfinite = o.nonfinite});
    test::expect(make_optimizer(comm, o).fingerprint() == named.fingerprint(), "sketched_sgd's fingerprint");
    auto bf16 = options_for("dense-bf16");
    test::expect(make_optimizer(comm, bf16).fingerprint() ==
                     dense_sgd<float, T>(comm, {.dimension = d,
                                                .learning_rate = 0.5F,
                                                .momentum = 0.5F,
                                                .average = true,
                                                .nonfinite = nonfinite_policy::skip_step,
                                                .wire = wire_format::bfloat16})
                         .fingerprint(),
                 "dense_sgd's fingerprint");
    bf16.dense = {{.offset = 0, .length = 10}};
    CHECK_THROWS_AS(make_optimizer(comm, bf16), std::invalid_argument);
  });
  any_optimizer<float> split = make_optimizer(0, 2, options_for("gtopk"));
  CHECK_THROWS_AS(split.step(registry_test::gradient(0, 0)), std::logic_error);
}

TEST_CASE("a recovery chosen at run time is the typed recovery", "[optim][methods]") {
  using namespace registry_test;
  using A = sketched_aggregation<float, multiply_shift, heavymix_recovery>;
  auto o = options_for("sketched");
  o.recovery = {heavymix_recovery{.seed = 5, .apply_all = true}};
  const composed_optimizer<A, sgd_update<float>> typed(1, 3,
                                                       {.dimension = d,
                                                        .aggregation = {.sketch = o.sketch,
                                                                        .k = o.k,
                                                                        .feedback = {.momentum = o.momentum},
                                                                        .recovery = {.seed = 5, .apply_all = true}},
                                                        .learning_rate = o.learning_rate,
                                                        .average = true,
                                                        .dense = o.dense,
                                                        .nonfinite = o.nonfinite});
  CHECK(make_optimizer(1, 3, o).fingerprint() == typed.fingerprint());
  o.recovery = {threshold_recovery{.phi = 0.0}};
  CHECK_THROWS_AS(make_optimizer(1, 3, o), std::invalid_argument);
}
