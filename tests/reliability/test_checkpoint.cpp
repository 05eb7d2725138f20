// SPDX-License-Identifier: Apache-2.0
// Crash-safe checkpoints (optim/state/checkpoint.hpp): a resumed run continues the
// uninterrupted trajectory bit for bit; every kind of damage is refused with
// a serialization_error naming it, leaving optimizer and parameters alone;
// and a writer killed with SIGKILL at random moments, again and again, never
// leaves a checkpoint that fails to load or that mixes two steps, while the
// run resumed after each kill ends bit-identical to the uninterrupted one. A
// control writer that overwrites the file in place is killed the same way to
// show that the kills do land mid-write and that the checksum catches it.

#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "optim/optim_harness.hpp"
#include "sketchsgd/sketchsgd.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using T = inproc_transport;

/// A fresh empty directory under the system's temporary directory.
fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("sketchsgd-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

sketched_sgd_options<float> options(std::uint64_t d) {
  sketched_sgd_options<float> o;
  o.dimension = d;
  o.sketch = {.rows = 3, .cols = d / 20, .seed = 11};
  o.k = d / 100;
  o.candidates_factor = 2;
  o.learning_rate = 0.4F;
  o.momentum = 0.9F;
  o.average = true;
  return o;
}

std::span<std::byte> bytes_of(std::vector<float>& v) { return std::as_writable_bytes(std::span<float>(v)); }

template <class Optimizer>
std::string state_of(const Optimizer& opt) {
  std::ostringstream out;
  opt.save(out);
  return out.str();
}

/// Steps [from, to) of rank `rank` on `problem`.
template <class Optimizer>
void train(Optimizer& opt, const test::planted_problem& problem, int rank, std::uint64_t from, std::uint64_t to,
           std::vector<float>& params) {
  std::vector<float> g(problem.d);
  for (std::uint64_t s = from; s < to; ++s) {
    problem.gradient(rank, s, params, g);
    opt.step(g).apply(std::span<float>(params));
  }
}

}  // namespace

TEST_CASE("a run resumed from checkpoints continues bit-identically", "[reliability][checkpoint]") {
  constexpr int W = 2;
  constexpr std::uint64_t d = 4000;
  const test::planted_problem problem(d, 40, W, 0.05, 3);
  const fs::path dir = scratch_dir("resume");
  std::vector<std::vector<float>> straight(W, std::vector<float>(d, 0.0F));
  std::vector<std::vector<float>> resumed(W, std::vector<float>(d, 0.0F));
  {
    inproc_world world(W);
    test::run_threads(W, [&](int r) {
      auto t = world.transport(r);
      communicator comm(t);
      sketched_sgd<float, T> opt(comm, options(d));
      train(opt, problem, r, 0, 12, straight[static_cast<std::size_t>(r)]);
    });
  }
  {
    inproc_world world(W);
    test::run_threads(W, [&](int r) {
      auto t = world.transport(r);
      communicator comm(t);
      sketched_sgd<float, T> opt(comm, options(d));
      auto& p = resumed[static_cast<std::size_t>(r)];
      train(opt, problem, r, 0, 6, p);
      save_checkpoint(dir / ("rank" + std::to_string(r)), opt, bytes_of(p));
    });
  }
  for (auto& p : resumed) std::fill(p.begin(), p.end(), -1.0F);  // the new process knows nothing
  {
    inproc_world world(W);
    test::run_threads(W, [&](int r) {
      auto t = world.transport(r);
      communicator comm(t);
      sketched_sgd<float, T> opt(comm, options(d));
      auto& p = resumed[static_cast<std::size_t>(r)];
      load_checkpoint(dir / ("rank" + std::to_string(r)), opt, bytes_of(p));
      test::expect(opt.stats().steps == 6, "the step count was not restored");
      train(opt, problem, r, 6, 12, p);
    });
  }
  for (int r = 0; r < W; ++r) {
    CAPTURE(r);
    CHECK(test::digest_of(resumed[static_cast<std::size_t>(r)]) ==
          test::digest_of(straight[static_cast<std::size_t>(r)]));
  }
  CHECK(test::digest_of(straight[0]) == test::digest_of(straight[1]));
  std::vector<std::string> leftovers;
  for (const auto& e : fs::directory_iterator(dir)) leftovers.push_back(e.path().filename().string());
  std::sort(leftovers.begin(), leftovers.end());
  CHECK(leftovers == std::vector<std::string>{"rank0", "rank1"});  // no temporary file left behind
  fs::remove_all(dir);
}

TEST_CASE("a damaged checkpoint is refused by name and changes nothing", "[reliability][checkpoint]") {
  constexpr std::uint64_t d = 2000;
  const fs::path dir = scratch_dir("damage");
  const fs::path good = dir / "good";
  const test::planted_problem problem(d, 20, 1, 0.0, 5);
  inproc_world world(1);
  auto t = world.transport(0);
  communicator comm(t);
  sketched_sgd<float, T> saved(comm, options(d));
  std::vector<float> params(d, 0.0F);
  train(saved, problem, 0, 0, 3, params);
  save_checkpoint(good, saved, bytes_of(params));
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t state_bytes = bytes.size() - 16 - 24 - d * sizeof(float);

  sketched_sgd<float, T> target(comm, options(d));
  std::vector<float> target_params(d, 7.0F);
  train(target, problem, 0, 0, 1, target_params);
  const std::string target_state = state_of(target);
  const std::uint64_t target_digest = test::digest_of(target_params);
  const auto write_variant = [&](const std::string& content) {
    std::ofstream out(dir / "bad", std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
  };
  const auto flip = [&](std::size_t at) {
    std::string b = bytes;
    b[at] = static_cast<char>(b[at] ^ 0x10);
    return b;
  };
  const auto expect_refused = [&](const std::string& why) {
    CAPTURE(why);
    CHECK_THROWS_WITH(load_checkpoint(dir / "bad", target, bytes_of(target_params)), Catch::Contains(why));
    CHECK(state_of(target) == target_state);
    CHECK(test::digest_of(target_params) == target_digest);
  };

  write_variant(flip(0));
  expect_refused("field 'magic'");
  write_variant(flip(8));
  expect_refused("field 'version'");
  write_variant(flip(16 + 20));  // inside the optimizer's header
  expect_refused("checksum mismatch");
  write_variant(flip(16 + state_bytes - 1));  // the last state byte
  expect_refused("checksum mismatch");
  write_variant(flip(16 + state_bytes + 5));  // a parameter
  expect_refused("checksum mismatch");
  write_variant(flip(bytes.size() - 1));  // the checksum itself
  expect_refused("checksum mismatch");
  write_variant(flip(bytes.size() - 20));  // the state size
  expect_refused("do not match the file");
  write_variant(bytes.substr(0, bytes.size() - 1));
  expect_refused("do not match the file");
  write_variant(bytes.substr(0, bytes.size() / 2));
  expect_refused("do not match the file");
  write_variant(bytes.substr(0, 30));
  expect_refused("truncated");
  write_variant(bytes + "x");
  expect_refused("do not match the file");
  write_variant("");
  expect_refused("truncated");
  fs::remove(dir / "bad");
  expect_refused("cannot open");

  SECTION("sizes that move the boundary, with a valid checksum: the state is restored") {
    // 4 parameter bytes claimed by the state: the optimizer reads its state
    // fine, then the checkpoint finds bytes left over and undoes the load.
    std::string b = bytes.substr(0, bytes.size() - 24);
    std::array<std::byte, 16> sizes{};
    wire::store_le(sizes.data(), static_cast<std::uint64_t>(state_bytes + 4));
    wire::store_le(sizes.data() + 8, static_cast<std::uint64_t>(d * sizeof(float) - 4));
    b.append(reinterpret_cast<const char*>(sizes.data()), sizes.size());
    detail::checkpoint_checksum sum;
    sum.update(std::as_bytes(std::span<const char>(b.data(), b.size())));
    std::array<std::byte, 8> check{};
    wire::store_le(check.data(), sum.value());
    b.append(reinterpret_cast<const char*>(check.data()), check.size());
    write_variant(b);
    std::vector<std::byte> short_params(d * sizeof(float) - 4, std::byte{0x55});
    CHECK_THROWS_WITH(load_checkpoint(dir / "bad", target, short_params),
                      Catch::Contains("bytes before the parameters"));
    CHECK(state_of(target) == target_state);
    CHECK(std::all_of(short_params.begin(), short_params.end(), [](std::byte x) { return x == std::byte{0x55}; }));
  }
  SECTION("the caller's parameters of another size: config_mismatch_error") {
    std::vector<float> wrong(d + 1, 0.0F);
    CHECK_THROWS_AS(load_checkpoint(good, target, bytes_of(wrong)), config_mismatch_error);
    CHECK(state_of(target) == target_state);
  }
  SECTION("another configuration: config_mismatch_error from the optimizer") {
    auto other_options = options(d);
    other_options.sketch.seed = 12;
    sketched_sgd<float, T> other(comm, other_options);
    const std::string before = state_of(other);
    CHECK_THROWS_AS(load_checkpoint(good, other, bytes_of(target_params)), config_mismatch_error);
    CHECK(state_of(other) == before);
    CHECK(test::digest_of(target_params) == target_digest);
  }
  SECTION("the good file loads") {
    load_checkpoint(good, target, bytes_of(target_params));
    CHECK(state_of(target) == state_of(saved));
    CHECK(test::digest_of(target_params) == test::digest_of(params));
  }
  fs::remove_all(dir);
}

namespace {

constexpr std::uint64_t kill_d = std::uint64_t{1} << 18U;  // state 2 MiB + parameters 1 MiB per checkpoint
constexpr std::uint64_t kill_steps = 120;

/// The child: resumes from `path` if it exists, then trains to `kill_steps`,
/// checkpointing after every step and writing a byte to `progress` after
/// each checkpoint. `atomic` false: the control writer that overwrites the
/// file in place. Never returns.
[[noreturn]] void checkpointing_child(const fs::path& path, bool atomic, int progress) {
  int code = 0;
  try {
    const test::planted_problem problem(kill_d, 200, 1, 0.05, 17);
    inproc_world world(1);
    auto t = world.transport(0);
    communicator comm(t);
    sketched_sgd<float, T> opt(comm, options(kill_d));
    std::vector<float> params(kill_d, 0.0F);
    if (fs::exists(path)) load_checkpoint(path, opt, bytes_of(params));
    for (std::uint64_t s = opt.stats().steps; s < kill_steps; ++s) {
      train(opt, problem, 0, s, s + 1, params);
      if (atomic) {
        save_checkpoint(path, opt, bytes_of(params));
      } else {
        // What a naive program does: truncate and rewrite in place.
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        const fs::path side = path.string() + ".side";
        save_checkpoint(side, opt, bytes_of(params));  // the same bytes, written safely elsewhere
        std::ifstream whole(side, std::ios::binary);
        out << whole.rdbuf();
      }
      const char tick = 1;
      if (::write(progress, &tick, 1) != 1) throw std::runtime_error("progress pipe closed");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpointing child: %s\n", e.what());
    code = 3;
  }
  std::_Exit(code);
}

struct kill_report {
  int kills = 0;
  int completed_runs = 0;
  int refused_loads = 0;
  std::vector<std::uint64_t> generations;
};

/// Waits up to `limit` for a byte on `fd`; false at end of file or timeout.
bool wait_tick(int fd, std::chrono::milliseconds limit) {
  pollfd p{fd, POLLIN, 0};
  char tick = 0;
  return ::poll(&p, 1, static_cast<int>(limit.count())) == 1 && ::read(fd, &tick, 1) == 1;
}

/// Starts the child again and again and SIGKILLs it at a random moment of
/// its step-and-checkpoint cycle: after its second checkpoint of the run,
/// a uniform delay over 1.5 times the interval between its first two (so
/// the moment adapts to the machine's speed, sanitizers included). After
/// every run the checkpoint is loaded here and checked against the reference
/// trajectory.
kill_report kill_repeatedly(const fs::path& path, bool atomic, int kills, const std::vector<std::uint64_t>& reference,
                            std::uint64_t seed) {
  kill_report report;
  splitmix64 rng(seed);
  inproc_world world(1);
  auto t = world.transport(0);
  communicator comm(t);
  std::uint64_t last_generation = 0;
  for (int round = 0; round <= kills; ++round) {
    int progress[2];
    REQUIRE(::pipe(progress) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::close(progress[0]);
      checkpointing_child(path, atomic, progress[1]);
    }
    ::close(progress[1]);
    int status = 0;
    if (round < kills && wait_tick(progress[0], 120s)) {
      const auto first = std::chrono::steady_clock::now();
      if (wait_tick(progress[0], 120s)) {
        const auto cycle =
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - first);
        std::this_thread::sleep_for(
            std::chrono::microseconds(rng.next_below(static_cast<std::uint64_t>(cycle.count()) * 3 / 2 + 1)));
        ::kill(child, SIGKILL);
      }
    }
    REQUIRE(::waitpid(child, &status, 0) == child);
    ::close(progress[0]);
    if (WIFSIGNALED(status)) {
      ++report.kills;
    } else {
      REQUIRE(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
      ++report.completed_runs;
    }
    if (!fs::exists(path)) continue;  // killed before the first checkpoint
    sketched_sgd<float, T> opt(comm, options(kill_d));
    std::vector<float> params(kill_d, 0.0F);
    try {
      load_checkpoint(path, opt, bytes_of(params));
    } catch (const serialization_error&) {
      ++report.refused_loads;
      fs::remove(path);  // the control writer's torn file: start over
      last_generation = 0;
      continue;
    }
    const std::uint64_t g = opt.stats().steps;
    report.generations.push_back(g);
    REQUIRE(g >= 1);
    REQUIRE(g <= kill_steps);
    CHECK(g >= last_generation);                         // never back in time
    CHECK(test::digest_of(params) == reference[g - 1]);  // state and parameters of the same step
    last_generation = g;
  }
  return report;
}

}  // namespace

TEST_CASE("a checkpoint writer killed at random moments never leaves a bad checkpoint",
          "[reliability][checkpoint][kill]") {
  // The uninterrupted run's parameters after every step.
  std::vector<std::uint64_t> reference;
  {
    const test::planted_problem problem(kill_d, 200, 1, 0.05, 17);
    inproc_world world(1);
    auto t = world.transport(0);
    communicator comm(t);
    sketched_sgd<float, T> opt(comm, options(kill_d));
    std::vector<float> params(kill_d, 0.0F);
    for (std::uint64_t s = 0; s < kill_steps; ++s) {
      train(opt, problem, 0, s, s + 1, params);
      reference.push_back(test::digest_of(params));
    }
  }
  const fs::path dir = scratch_dir("kill");

  const auto atomic = kill_repeatedly(dir / "ckpt", true, 25, reference, 99);
  WARN("atomic writer: " << atomic.kills << " kills, " << atomic.generations.size() << " checkpoints checked, "
                         << atomic.refused_loads << " refused");
  CHECK(atomic.kills >= 20);  // fewer only if the run reached its end before all 25
  CHECK(atomic.refused_loads == 0);
  CHECK(atomic.generations.size() == 26);  // every run left a checkpoint that loads
  REQUIRE_FALSE(atomic.generations.empty());
  CHECK(atomic.generations.back() == kill_steps);  // the last (unkilled) run finished the trajectory

  const auto naive = kill_repeatedly(dir / "naive", false, 25, reference, 100);
  WARN("in-place control writer: " << naive.kills << " kills, " << naive.refused_loads
                                   << " torn files refused by the checksum or size check");
  CHECK(naive.refused_loads >= 1);  // the kills do land mid-write, and load notices
  fs::remove_all(dir);
}
