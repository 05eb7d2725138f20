// SPDX-License-Identifier: Apache-2.0
// Elastic state (optim/state/elastic.hpp) over in-process worlds: a rank of four
// fails mid-run; the three survivors, whose step failed, re-form a world of
// three from their last commits (the memories they held summed and shared,
// the dead rank's lost) and train on identically; a new rank joins at a step
// boundary (W = 3 -> 4, the memories' sum kept whole). Survivors one commit
// apart resume from the older; a world without any commit is refused.

#include <catch2/catch.hpp>

#include <chrono>
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

namespace elastic_test {

using test::memory_sums;

constexpr std::uint64_t d = 2000;

std::vector<float> gradient(int r, std::uint64_t s) { return test::spiky_gradient(d, r, s); }

method_options<float> options_for(std::string_view method) { return test::memory_options(method, d); }

void check_equal_sums(const std::vector<std::vector<double>>& want, const std::vector<std::vector<double>>& got) {
  REQUIRE(test::sums_gap(want, got) <= 1e-5);
}

std::string saved(const any_optimizer<float>& opt) {
  std::ostringstream os;
  opt.save(os);
  return std::move(os).str();
}

}  // namespace elastic_test

TEST_CASE("a rank dies: the survivors re-form from their commits, and a newcomer joins", "[optim][elastic]") {
  using namespace elastic_test;
  for (const std::string_view method : {"sketched", "local-topk", "fetchsgd"}) {
    INFO(method);
    const auto o = options_for(method);
    const bool has_memory = method != "fetchsgd";
    std::vector<elastic_commit> commits(4);
    // Four ranks; three steps with a commit after each; then rank 3 dies and
    // the others' fourth step fails (bounded by the world's timeout).
    inproc_world four(4, {.timeout = std::chrono::milliseconds(300)});
    std::vector<int> failed(4, 0);
    test::run_threads(4, [&](int r) {
      auto t = four.transport(r);
      communicator comm(t);
      any_optimizer<float> opt = make_optimizer(comm, o);
      for (std::uint64_t s = 0; s < 3; ++s) {
        (void)opt.step(gradient(r, s));
        commits[static_cast<std::size_t>(r)].commit(opt);
      }
      if (r == 3) {
        four.fail(3, "killed");
        return;
      }
      try {
        (void)opt.step(gradient(r, 3));
      } catch (const transport_error&) {  // timeout_error is one too
        failed[static_cast<std::size_t>(r)] = 1;
      }
    });
    CHECK(failed == std::vector<int>{1, 1, 1, 0});
    std::vector<std::string> survivors_commits;
    for (int r = 0; r < 3; ++r) survivors_commits.push_back(*commits[static_cast<std::size_t>(r)].at(3));

    // The survivors re-form a world of three.
    inproc_world three(3);
    std::vector<std::string> after_shrink(3);
    std::vector<model_update<float>> last(3);
    test::run_threads(3, [&](int r) {
      auto t = three.transport(r);
      communicator comm(t);
      any_optimizer<float> opt = make_optimizer(comm, o);
      elastic_commit& mine = commits[static_cast<std::size_t>(r)];
      const resize_report report = resume_resized(comm, opt, mine);
      CHECK(report.steps == 3);
      CHECK(report.old_world == 4);
      CHECK(report.contributors == 3);
      after_shrink[static_cast<std::size_t>(r)] = saved(opt);
      for (std::uint64_t s = 3; s < 5; ++s) {
        (void)opt.step(gradient(r, s));
        mine.commit(opt);
      }
      last[static_cast<std::size_t>(r)] = opt.last_update();
    });
    CHECK(last[1] == last[0]);
    CHECK(last[2] == last[0]);
    if (has_memory) check_equal_sums(memory_sums(survivors_commits), memory_sums(after_shrink));  // rank 3's is lost
    std::vector<std::string> before_join;
    for (int r = 0; r < 3; ++r) before_join.push_back(*commits[static_cast<std::size_t>(r)].at(5));

    // A newcomer joins at the step boundary: four again.
    commits[3] = elastic_commit{};
    last.resize(4);
    inproc_world again(4);
    std::vector<std::string> after_join(4);
    test::run_threads(4, [&](int r) {
      auto t = again.transport(r);
      communicator comm(t);
      any_optimizer<float> opt = make_optimizer(comm, o);
      const resize_report report = resume_resized(comm, opt, commits[static_cast<std::size_t>(r)]);
      CHECK(report.steps == 5);
      CHECK(report.old_world == 3);
      CHECK(report.contributors == 3);
      after_join[static_cast<std::size_t>(r)] = saved(opt);
      (void)opt.step(gradient(r, 5));
      last[static_cast<std::size_t>(r)] = opt.last_update();
    });
    for (int r = 1; r < 4; ++r) CHECK(last[static_cast<std::size_t>(r)] == last[0]);
    if (has_memory) check_equal_sums(memory_sums(before_join), memory_sums(after_join));  // nothing lost
    if (!has_memory) {               // FetchSGD: everything replicated, every member the same
      for (int r = 1; r < 4; ++r) {  // past the header, which names the rank
        CHECK(after_join[static_cast<std::size_t>(r)].substr(detail::state_header_bytes) ==
              after_join[0].substr(detail::state_header_bytes));
      }
    }
  }
}

TEST_CASE("survivors one commit apart resume from the older, and no commit at all is refused", "[optim][elastic]") {
  using namespace elastic_test;
  const auto o = options_for("sketched");
  std::vector<elastic_commit> commits(2);
  test::on_inproc(2, [&](int r, inproc_transport& t) {
    communicator comm(t);
    any_optimizer<float> opt = make_optimizer(comm, o);
    for (std::uint64_t s = 0; s < 3; ++s) {
      (void)opt.step(gradient(r, s));
      if (r == 0 || s < 2) commits[static_cast<std::size_t>(r)].commit(opt);  // rank 1 died before its last commit
    }
  });
  test::on_inproc(2, [&](int r, inproc_transport& t) {
    communicator comm(t);
    any_optimizer<float> opt = make_optimizer(comm, o);
    CHECK(resume_resized(comm, opt, commits[static_cast<std::size_t>(r)]).steps == 2);
  });
  test::on_inproc(2, [&](int /*r*/, inproc_transport& t) {
    communicator comm(t);
    any_optimizer<float> opt = make_optimizer(comm, o);
    CHECK_THROWS_AS(resume_resized(comm, opt, elastic_commit{}), std::logic_error);
  });
  // More than one commit apart: rank 1 committed after the first step only,
  // rank 0 after every step and twice after the last (it holds steps 3 and 3):
  // no step both hold, refused on both before any state moves.
  std::vector<elastic_commit> apart(2);
  test::on_inproc(2, [&](int r, inproc_transport& t) {
    communicator comm(t);
    any_optimizer<float> opt = make_optimizer(comm, o);
    for (std::uint64_t s = 0; s < 3; ++s) {
      (void)opt.step(gradient(r, s));
      if (r == 0 || s == 0) apart[static_cast<std::size_t>(r)].commit(opt);
    }
    if (r == 0) apart[0].commit(opt);
  });
  test::on_inproc(2, [&](int r, inproc_transport& t) {
    communicator comm(t);
    any_optimizer<float> opt = make_optimizer(comm, o);
    CHECK_THROWS_WITH(resume_resized(comm, opt, apart[static_cast<std::size_t>(r)]), Catch::Contains("not of step 1"));
  });
  elastic_commit none;
  any_optimizer<float> opt = make_optimizer(0, 1, o);
  CHECK_THROWS_AS(none.restore(opt), std::logic_error);
}
