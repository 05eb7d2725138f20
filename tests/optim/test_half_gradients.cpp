// SPDX-License-Identifier: Apache-2.0
// 16-bit gradients (bfloat16_t, float16_t): every named method takes them,
// transport-driven and in split phase, and gives the bits of the same step on
// those values as floats (each 16-bit value is a float exactly); the
// non-finite check sees a 16-bit NaN; a count sketch of 16-bit values is the
// sketch of their floats; a policy that takes spans only is refused at run
// time through any_optimizer, never silently.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "optim_harness.hpp"
#include "registry_cases.hpp"
#include "sketchsgd/optim/methods.hpp"
#include "sketchsgd/sketchsgd.hpp"

using namespace sketchsgd;

namespace half_test {

using T = inproc_transport;
constexpr std::uint64_t d = 3000;
constexpr int world = 3;

/// Rank r's gradient at step s as H, one value in 97 scaled by 1e-6
/// (float16 subnormals, bfloat16 small normals).
template <class H>
std::vector<H> gradient(int r, std::uint64_t s) {
  const std::vector<float> f = test::spiky_gradient(d, r, s);
  std::vector<H> g(d);
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = H(i % 97 == 0 ? f[i] * 1e-6F : f[i]);
  return g;
}

template <class H>
std::vector<float> widened(const std::vector<H>& g) {
  std::vector<float> f(g.size());
  for (std::size_t i = 0; i < g.size(); ++i) f[i] = static_cast<float>(g[i]);
  return f;
}

method_options<float> options_for(std::string_view method) { return test::registry_options(method, d); }

/// Every rank's updates over three steps with gradients of H (float: the
/// widened 16-bit values), transport-driven or in split phase.
template <class H, class Of>
std::vector<std::vector<model_update<float>>> run(const method_options<float>& o, bool split) {
  std::vector<std::vector<model_update<float>>> seen(world);
  test::on_inproc(world, [&](int r, T& t) {
    communicator comm(t);
    any_optimizer<float> opt = split ? make_optimizer(r, world, o) : make_optimizer(comm, o);
    for (std::uint64_t s = 0; s < 3; ++s) {
      const auto g16 = gradient<Of>(r, s);
      const auto g32 = widened(g16);
      const auto step = [&](auto g) {
        if (split) {
          auto rounds = opt.step_rounds(g);
          while (const collective_round<float>* round = rounds.next()) detail::run_round(comm, *round);
        } else {
          (void)opt.step(g);
        }
      };
      if constexpr (std::is_same_v<H, float>) {
        step(std::span<const float>(g32));
      } else {
        step(std::span<const H>(g16));
      }
      seen[static_cast<std::size_t>(r)].push_back(opt.last_update());
    }
  });
  return seen;
}

template <class H>
void check_every_method() {
  for (const std::string_view name : method_names) {
    for (const bool split : {false, true}) {
      INFO(std::string(name) << (split ? ", split phase" : ", over the transport"));
      const auto o = options_for(name);
      const auto as_float = run<float, H>(o, split);
      CHECK(run<H, H>(o, split) == as_float);
      CHECK(!as_float[0][2].values.empty());
    }
  }
}

/// A policy whose accumulate takes spans only (as user policies written
/// before gradient_span do).
struct span_only_aggregation : dense_aggregation<float> {
  using dense_aggregation<float>::dense_aggregation;
  void accumulate(std::span<const float> g, const detail::step_context<float, cpu_t>& c) {
    dense_aggregation<float>::accumulate(g, c);
  }
};

}  // namespace half_test

TEST_CASE("bfloat16 gradients give the bits of their float values, every method", "[optim][half]") {
  half_test::check_every_method<bfloat16_t>();
}

TEST_CASE("float16 gradients give the bits of their float values, every method", "[optim][half]") {
  half_test::check_every_method<float16_t>();
}

TEST_CASE("a 16-bit NaN or infinity is a non-finite gradient", "[optim][half]") {
  auto o = half_test::options_for("sketched");
  o.nonfinite = nonfinite_policy::throw_error;
  for (const std::uint16_t bits : {std::uint16_t{0x7FC0}, std::uint16_t{0xFF80}}) {  // bfloat16 NaN, -Inf
    test::on_inproc(2, [&](int r, inproc_transport& t) {
      communicator comm(t);
      any_optimizer<float> opt = make_optimizer(comm, o);
      auto g = half_test::gradient<bfloat16_t>(r, 0);
      if (r == 1) g[17] = bfloat16_t::from_bits(bits);
      CHECK_THROWS_AS(opt.step(std::span<const bfloat16_t>(g)), nonfinite_error);
    });
  }
  test::on_inproc(2, [&](int r, inproc_transport& t) {
    communicator comm(t);
    any_optimizer<float> opt = make_optimizer(comm, o);
    auto g = half_test::gradient<float16_t>(r, 0);
    if (r == 0) g[5] = float16_t(1e6F);  // beyond 65,504: infinity
    CHECK_THROWS_AS(opt.step(std::span<const float16_t>(g)), nonfinite_error);
  });
}

TEST_CASE("a count sketch of 16-bit values is the sketch of their floats", "[sketch][half]") {
  for (const std::uint32_t rows : {1U, 5U}) {
    const auto g = half_test::gradient<bfloat16_t>(0, rows);
    const auto f = half_test::widened(g);
    // Long enough for the one-row sketch's parts (2^21 and more) too.
    std::vector<bfloat16_t> long_g(std::size_t{1} << 21U);
    for (std::size_t i = 0; i < long_g.size(); ++i) long_g[i] = g[i % g.size()];
    const auto long_f = half_test::widened(long_g);
    count_sketch<float> a({.rows = rows, .cols = 512, .seed = 5});
    count_sketch<float> b({.rows = rows, .cols = 512, .seed = 5});
    a.accumulate_rows(std::span<const bfloat16_t>(long_g), 100, 0, rows, cpu_execution{.threads = 2});
    b.accumulate_rows(std::span<const float>(long_f), 100, 0, rows, cpu_execution{.threads = 2});
    CHECK(std::vector<float>(a.table().begin(), a.table().end()) ==
          std::vector<float>(b.table().begin(), b.table().end()));
  }
}

TEST_CASE("an aggregation that takes spans only refuses 16-bit gradients, by name", "[optim][half]") {
  using opt_type = composed_optimizer<half_test::span_only_aggregation, sgd_update<float>>;
  STATIC_REQUIRE(!opt_type::takes_16_bit);
  STATIC_REQUIRE(composed_optimizer<dense_aggregation<float>, sgd_update<float>>::takes_16_bit);
  any_optimizer<float> opt{std::in_place_type<opt_type>, 0, 1, opt_type::options_type{.dimension = 8}};
  const std::vector<bfloat16_t> g(8, bfloat16_t(1.0F));
  CHECK_THROWS_WITH(opt.step_rounds(std::span<const bfloat16_t>(g)), Catch::Contains("16-bit"));
  // Its float gradients still work.
  const std::vector<float> f(8, 1.0F);
  auto rounds = opt.step_rounds(std::span<const float>(f));
  CHECK(rounds.next() != nullptr);
}
