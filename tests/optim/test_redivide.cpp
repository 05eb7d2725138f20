// SPDX-License-Identifier: Apache-2.0
// load_redivided: states saved by every rank of one world restored in a world
// of another size. For every named method, W = 3 -> 2 and 2 -> 3: the ranks'
// own memories (u, v) keep their sum over the ranks (to rounding), what every
// rank holds alike (update rule, FetchSGD's sketches, step count) comes across
// unchanged, every new rank gets the same, and training goes on. Bad inputs
// (out of order, another configuration, truncated, different steps) are
// refused and leave the state as it was.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "optim_harness.hpp"
#include "registry_cases.hpp"
#include "sketchsgd/optim/methods.hpp"
#include "sketchsgd/sketchsgd.hpp"

using namespace sketchsgd;

namespace redivide_test {

constexpr std::uint64_t d = 2000;

std::vector<float> gradient(int r, std::uint64_t s) { return test::spiky_gradient(d, r, s); }

method_options<float> options_for(std::string_view method) { return test::memory_options(method, d); }

/// A saved state: its step count and sections.
struct parsed {
  std::uint64_t steps = 0;
  std::vector<std::vector<float>> sections;
};

parsed parse(const std::string& bytes) {
  parsed p;
  std::memcpy(&p.steps, bytes.data() + 16, 8);  // little-endian hosts only (as the tests run)
  std::size_t at = detail::state_header_bytes;
  while (at < bytes.size()) {
    std::uint64_t count = 0;
    std::memcpy(&count, bytes.data() + at, 8);
    at += 16;
    auto& s = p.sections.emplace_back(count);
    std::memcpy(s.data(), bytes.data() + at, count * sizeof(float));
    at += count * sizeof(float);
  }
  return p;
}

/// Every rank's saved state after `steps` steps at world `w`.
std::vector<std::string> saved_after(const method_options<float>& o, int w, std::uint64_t steps) {
  std::vector<std::string> out(static_cast<std::size_t>(w));
  test::on_inproc(w, [&](int r, inproc_transport& t) {
    communicator comm(t);
    any_optimizer<float> opt = make_optimizer(comm, o);
    for (std::uint64_t s = 0; s < steps; ++s) (void)opt.step(gradient(r, s));
    std::ostringstream os;
    opt.save(os);
    out[static_cast<std::size_t>(r)] = std::move(os).str();
  });
  return out;
}

/// Reads `old` into `opt` by load_redivided.
void load_all(any_optimizer<float>& opt, const std::vector<std::string>& old) {
  std::vector<std::istringstream> streams;
  for (const auto& b : old) streams.emplace_back(b);
  std::vector<std::istream*> in;
  for (auto& s : streams) in.push_back(&s);
  opt.load_redivided(in);
}

/// Every rank of a world of `w` restored from `old`, then `steps` more
/// steps: their saved states after the restore, and their last updates.
struct resumed {
  std::vector<std::string> states;
  std::vector<model_update<float>> last;
};
resumed redivided(const method_options<float>& o, int w, const std::vector<std::string>& old, std::uint64_t steps) {
  resumed out{std::vector<std::string>(static_cast<std::size_t>(w)),
              std::vector<model_update<float>>(static_cast<std::size_t>(w))};
  test::on_inproc(w, [&](int r, inproc_transport& t) {
    communicator comm(t);
    any_optimizer<float> opt = make_optimizer(comm, o);
    load_all(opt, old);
    std::ostringstream os;
    opt.save(os);
    out.states[static_cast<std::size_t>(r)] = std::move(os).str();
    for (std::uint64_t s = 0; s < steps; ++s) (void)opt.step(gradient(r, 100 + s));
    out.last[static_cast<std::size_t>(r)] = opt.last_update();
  });
  return out;
}

/// Element-wise sum of section `s` over the states.
std::vector<float> sum_of(const std::vector<parsed>& states, std::size_t s) {
  std::vector<float> sum(states[0].sections[s].size(), 0.0F);
  for (const auto& p : states)
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += p.sections[s][i];
  return sum;
}

}  // namespace redivide_test

TEST_CASE("re-dividing the state among another world keeps the memories' sum, every method", "[optim][elastic]") {
  using namespace redivide_test;
  for (const std::string_view name : method_names) {
    const bool has_memory = !is_dense_method(name) && name != "fetchsgd";
    for (const auto& [from, to] : {std::pair{3, 2}, std::pair{2, 3}}) {
      INFO(std::string(name) << ", W = " << from << " -> " << to);
      const auto o = options_for(name);
      const auto old = saved_after(o, from, 3);
      std::vector<parsed> before;
      for (const auto& b : old) before.push_back(parse(b));
      const resumed next = redivided(o, to, old, 2);
      std::vector<parsed> after;
      for (const auto& b : next.states) after.push_back(parse(b));
      REQUIRE(after[0].sections.size() == before[0].sections.size());
      for (std::size_t s = 0; s < before[0].sections.size(); ++s) {
        CAPTURE(s);
        for (const auto& p : after) CHECK(p.steps == 3);
        for (int r = 1; r < to; ++r) CHECK(after[static_cast<std::size_t>(r)].sections[s] == after[0].sections[s]);
        if (has_memory && s < 2) {  // u, v: the sum kept, to float rounding
          const auto want = sum_of(before, s);
          const auto got = sum_of(after, s);
          float scale = 0;
          for (const float x : want) scale = std::max(scale, std::abs(x));
          REQUIRE(scale > 0);  // the memories hold something to keep
          for (std::size_t i = 0; i < want.size(); ++i) REQUIRE(std::abs(got[i] - want[i]) <= 1e-5F * scale);
        } else {  // the same on every rank: taken as it is
          CHECK(after[0].sections[s] == before[0].sections[s]);
        }
      }
      // Training went on in the new world, identically on its ranks.
      for (int r = 1; r < to; ++r) CHECK(next.last[static_cast<std::size_t>(r)] == next.last[0]);
    }
  }
}

TEST_CASE("re-division refuses states it cannot use and leaves the state as it was", "[optim][elastic]") {
  using namespace redivide_test;
  const auto o = options_for("sketched");
  const auto old = saved_after(o, 3, 2);
  auto other = o;
  other.sketch.seed = 10;
  const auto elsewhere = saved_after(other, 3, 2);
  const auto later = saved_after(o, 3, 3);
  test::on_inproc(2, [&](int /*r*/, inproc_transport& t) {
    communicator comm(t);
    any_optimizer<float> opt = make_optimizer(comm, o);
    (void)opt.step(gradient(0, 0));
    std::ostringstream before;
    opt.save(before);
    const auto attempt = [&](const std::vector<std::string>& states) { load_all(opt, states); };
    CHECK_THROWS_WITH(attempt({old[1], old[0], old[2]}), Catch::Contains("rank 1 of 3, this is rank 0 of 3"));
    CHECK_THROWS_AS(attempt({old[0], old[1]}), config_mismatch_error);  // two of three: their rank 0 is of 3
    CHECK_THROWS_AS(attempt(elsewhere), config_mismatch_error);
    CHECK_THROWS_AS(attempt({old[0], old[1], old[2].substr(0, old[2].size() - 5)}), serialization_error);
    CHECK_THROWS_WITH(attempt({old[0], old[1], later[2]}), Catch::Contains("after 3 steps, rank 0 after 2"));
    CHECK_THROWS_AS(attempt({}), std::invalid_argument);
    const auto survivors = [&](const std::vector<std::string>& states) {
      std::vector<std::istringstream> streams;
      for (const auto& b : states) streams.emplace_back(b);
      std::vector<std::istream*> in;
      for (auto& st : streams) in.push_back(&st);
      opt.load_survivors(in);
    };
    CHECK_THROWS_WITH(survivors({old[2], old[0], old[2]}), Catch::Contains("rank 2 of 3 is given twice"));
    std::string outside = old[1];
    outside[24] = 7;  // rank 7 of 3
    CHECK_THROWS_WITH(survivors({old[0], outside}), Catch::Contains("a state of rank 7 of 3"));
    std::ostringstream after;
    opt.save(after);
    CHECK(after.str() == before.str());
  });
}
