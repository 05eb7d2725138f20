// SPDX-License-Identifier: Apache-2.0
// The elastic TCP world (tcp/rendezvous.hpp, tcp/elastic.hpp) on loopback.
// As threads: a world forms, loses a member, re-forms renumbered, and grows
// when a newcomer waits; min_workers, max_workers and a silent member are
// bounded waits; a wrong secret is refused while the job goes on; a worker
// that dies after its assignment (as rank 0, and as another rank) costs one
// bounded retry. As processes: Sketched-SGD trains at W = 4, one rank is
// SIGKILLed mid-run, the survivors resume at W = 3 within 5 s with their
// error memories' sum kept, a new process joins back to W = 4, and every
// rank ends with the same parameters and no thread or socket left over.

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../optim/registry_cases.hpp"
#include "conformance.hpp"
#include "elastic_scenarios.hpp"
#include "sketchsgd/optim/elastic_loop.hpp"
#include "sketchsgd/optim/state/elastic.hpp"
#include "sketchsgd/sketchsgd.hpp"
#include "sketchsgd/transport/tcp.hpp"
#include "test_pki.hpp"

using namespace sketchsgd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string job_secret = "elastic-secret";

tcp_rendezvous_options quiet_rendezvous(int min_workers = 1, int max_workers = 64) {
  tcp_rendezvous_options o;
  o.min_workers = min_workers;
  o.max_workers = max_workers;
  o.join_timeout = 1500ms;
  o.settle = 300ms;
  o.log = [](const std::string&) {};
  return o;
}

/// What a rendezvous logs, kept for the test to read (the rendezvous logs
/// from its I/O thread).
struct captured_log {
  std::vector<std::string> lines;
  std::mutex mutex;

  /// `o` with its log written here.
  tcp_rendezvous_options into(tcp_rendezvous_options o) {
    o.log = [this](const std::string& m) {
      const std::lock_guard lock(mutex);
      lines.push_back(m);
    };
    return o;
  }
  /// Whether some line holds `what`.
  bool has(const std::string& what) {
    const std::lock_guard lock(mutex);
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& m) { return m.find(what) != std::string::npos; });
  }
};

tcp_elastic_options quiet_member() {
  tcp_elastic_options o;
  o.transport.log = [](const std::string&) {};
  o.transport.timeout = 2s;
  o.transport.connect_timeout = 2s;
  o.join_timeout = 20s;
  return o;
}

using test::sum_of_ranks;
using test::triangle;

/// Makes members of `rdv`'s job, named as asked.
auto members_of(const tcp_rendezvous& rdv, tcp_elastic_options o = quiet_member()) {
  return [&rdv, o](const std::string& name) {
    return std::make_unique<tcp_elastic_member>(tcp_endpoint{"127.0.0.1", rdv.port()}, job_secret, name, o);
  };
}

}  // namespace

TEST_CASE("elastic tcp: a world forms, loses a member, re-forms renumbered, and grows", "[tcp][elastic]") {
  tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, quiet_rendezvous(1, 4));
  test::elastic_forms_loses_and_grows(members_of(rdv), [&] { return rdv.generation(); });
}

TEST_CASE("elastic tcp: too few workers, a full world and a silent member are bounded waits",
          "[tcp][elastic][failure]") {
  SECTION("fewer than min_workers: refused after join_timeout") {
    tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, quiet_rendezvous(3, 4));
    test::run_threads(2, [&](int i) {
      tcp_elastic_member me({"127.0.0.1", rdv.port()}, job_secret, "w" + std::to_string(i), quiet_member());
      const auto start = std::chrono::steady_clock::now();
      CHECK_THROWS_WITH(me.join(), Catch::Contains("min_workers is 3"));
      CHECK(std::chrono::steady_clock::now() - start < 10s);
    });
  }
  SECTION("more than max_workers: the last to arrive waits, then gives up") {
    tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, quiet_rendezvous(1, 2));
    auto o = quiet_member();
    o.join_timeout = 1500ms;
    test::elastic_full_world_is_a_bounded_wait(members_of(rdv, o));
  }
  SECTION("a member that never asks is left out after join_timeout") {
    tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, quiet_rendezvous(1, 4));
    test::elastic_silent_member_is_left_out(members_of(rdv));
  }
  SECTION("every member gone: a newcomer forms the next generation alone") {
    tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, quiet_rendezvous(1, 4));
    test::elastic_newcomer_after_all_left(members_of(rdv));  // before, it waited out its join_timeout
  }
}

using protocol_messages = std::vector<std::pair<tcp_membership::message, std::vector<std::byte>>>;

/// An authenticated member that sends `messages`, then reads until the
/// rendezvous hangs up, which sets `hung_up`. (A coroutine function: a
/// lambda coroutine's captures die with the lambda.)
boost::asio::awaitable<void> send_and_wait_for_hang_up(std::uint16_t port, protocol_messages messages, bool& hung_up) {
  boost::asio::ip::tcp::socket s(co_await boost::asio::this_coro::executor);
  co_await s.async_connect({boost::asio::ip::make_address("127.0.0.1"), port}, boost::asio::use_awaitable);
  detail::tcp_stream stream(std::move(s));
  co_await tcp_membership::connect_member(stream, job_secret);
  for (const auto& [kind, body] : messages) co_await tcp_membership::write_message(stream, kind, body);
  try {
    for (;;) (void)co_await tcp_membership::read_message(stream);
  } catch (const std::exception&) {
    hung_up = true;
  }
}

/// Whether the rendezvous at `port` hangs up on a member that sends `messages`.
bool breaks_protocol(std::uint16_t port, protocol_messages messages) {
  boost::asio::io_context io;
  bool hung_up = false;
  boost::asio::co_spawn(io, send_and_wait_for_hang_up(port, std::move(messages), hung_up), boost::asio::detached);
  io.run_for(10s);
  return hung_up;
}

TEST_CASE("elastic tcp: a member that breaks the protocol is dropped, logged, and the job goes on",
          "[tcp][elastic][failure]") {
  captured_log log;
  tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, log.into(quiet_rendezvous(2, 2)));
  using tcp_membership::message;
  const auto join = tcp_membership::encode(tcp_membership::join_request{0, -1, "rogue"});
  CHECK(breaks_protocol(rdv.port(), {{message::join, join}, {message::join, join}}));
  CHECK(breaks_protocol(rdv.port(), {{message::notice, tcp_membership::encode_notice(1)}}));
  CHECK(breaks_protocol(rdv.port(), {{message::listening, tcp_membership::encode_listening(1, 4242)}}));
  CHECK(breaks_protocol(rdv.port(), {{message::join, std::vector<std::byte>(3, std::byte{0xFF})}}));
  test::run_threads(2, [&](int i) {
    tcp_elastic_member me({"127.0.0.1", rdv.port()}, job_secret, "w" + std::to_string(i), quiet_member());
    CHECK(sum_of_ranks(me.join()) == triangle(2));
  });
  CHECK(rdv.wait_for_generation(1, 1s));
  CHECK_FALSE(rdv.wait_for_generation(2, 50ms));
  for (const char* why : {"a second join while the first waits", "a member may send only join and listening messages",
                          "an unexpected listening message", "malformed"}) {
    INFO(why);
    CHECK(log.has(why));
  }
}

TEST_CASE("elastic tcp: a wrong secret is refused and the job goes on", "[tcp][elastic][failure]") {
  captured_log log;
  tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, log.into(quiet_rendezvous(2, 2)));
  CHECK_THROWS_AS(tcp_elastic_member({"127.0.0.1", rdv.port()}, "not-the-secret", "intruder", quiet_member()),
                  transport_error);
  test::run_threads(2, [&](int i) {
    tcp_elastic_member me({"127.0.0.1", rdv.port()}, job_secret, "w" + std::to_string(i), quiet_member());
    CHECK(sum_of_ranks(me.join()) == triangle(2));
  });
  CHECK(log.has("authentication failed"));
}

namespace {

/// A worker that takes its place and dies before building the mesh: speaks
/// the rendezvous protocol by hand, reads its assignment, and hangs up.
/// (A coroutine function, not a lambda: a lambda's captures die with it.)
boost::asio::awaitable<void> take_place_and_hang_up(std::uint16_t port, std::atomic<int>& rank) {
  boost::asio::ip::tcp::socket s(co_await boost::asio::this_coro::executor);
  co_await s.async_connect({boost::asio::ip::make_address("127.0.0.1"), port}, boost::asio::use_awaitable);
  detail::tcp_stream stream(std::move(s));
  co_await tcp_membership::connect_member(stream, job_secret);
  const std::vector<std::byte> join = tcp_membership::encode(tcp_membership::join_request{0, -1, "doomed"});
  co_await tcp_membership::write_message(stream, tcp_membership::message::join, join);
  for (;;) {
    auto [kind, body] = co_await tcp_membership::read_message(stream);
    if (kind != tcp_membership::message::assignment) continue;
    rank = tcp_membership::decode_assignment(body).rank;
    break;
  }
  stream.close();
}

int die_after_assignment(std::uint16_t port) {
  boost::asio::io_context io;
  std::atomic<int> rank{-1};
  boost::asio::co_spawn(io, take_place_and_hang_up(port, rank), boost::asio::detached);
  io.run();
  return rank;
}

}  // namespace

TEST_CASE("elastic tcp: a worker that dies after its assignment costs one bounded retry", "[tcp][elastic][failure]") {
  for (const bool doomed_first : {true, false}) {  // as rank 0 (before it listens), then as rank 2 (the mesh fails)
    INFO("the doomed worker arrives " << (doomed_first ? "first" : "last"));
    tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, quiet_rendezvous(2, 3));
    std::vector<std::unique_ptr<tcp_elastic_member>> m;
    for (int i = 0; i < 2; ++i)
      m.push_back(std::make_unique<tcp_elastic_member>(tcp_endpoint{"127.0.0.1", rdv.port()}, job_secret,
                                                       "w" + std::to_string(i), quiet_member()));
    std::atomic<int> doomed_rank{-1};
    const auto start = std::chrono::steady_clock::now();
    test::run_threads(3, [&](int i) {
      if (i == 2) {  // arrives 100 ms before the others, or 100 ms after
        if (!doomed_first) std::this_thread::sleep_for(100ms);
        doomed_rank = die_after_assignment(rdv.port());
        return;
      }
      if (doomed_first) std::this_thread::sleep_for(100ms);
      tcp_transport& t = m[static_cast<std::size_t>(i)]->join();
      CHECK(t.size() == 2);
      CHECK(m[static_cast<std::size_t>(i)]->membership()->generation == 2);
      CHECK(sum_of_ranks(t) == triangle(2));
    });
    // Doomed as rank 0: the others ask again at once; as rank 2: after the mesh's connect_timeout (2 s).
    CHECK(std::chrono::steady_clock::now() - start < (doomed_first ? 2s : 5s));
    CHECK(doomed_rank == (doomed_first ? 0 : 2));
    CHECK(rdv.generation() == std::pair<std::uint64_t, int>{2, 2});
  }
}

namespace {

constexpr std::uint64_t model_size = 2000;
constexpr std::int64_t total_steps = 60;

double now_ms() {  // CLOCK_MONOTONIC: one clock for every process of the test
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::uint64_t fnv(std::span<const float> x) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const std::byte b : std::as_bytes(x)) h = (h ^ static_cast<std::uint64_t>(b)) * 1099511628211ULL;
  return h;
}

void write_file(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }
std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Threads and sockets this process still has.
std::pair<int, int> threads_and_sockets() {
  int threads = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/task")) ++threads;
  int sockets = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (fs::read_symlink(e.path(), ec).string().rfind("socket:", 0) == 0) ++sockets;
  }
  return {threads, sockets};
}

/// One worker process: trains Sketched-SGD with `run_elastic` until `total_steps`,
/// reporting each generation, each resume (with the states it gave and got)
/// and, at the end, its parameters' hash and what it leaked. The worker
/// holding rank 1 of the first generation SIGKILLs itself after step 8.
[[noreturn]] void elastic_worker(const std::string& name, std::uint16_t port, const fs::path& dir) {
  std::ofstream report(dir / (name + ".txt"));
  report << std::fixed << std::setprecision(3);  // times in ms, to the microsecond
  int code = 0;
  try {
    const method_options<float> o = test::memory_options("sketched", model_size);
    std::vector<float> x(model_size, 0.0F);
    {
      tcp_elastic_member me({"127.0.0.1", port}, job_secret, name, quiet_member());
      using comm_t = communicator<tcp_transport>;
      const auto make = [&](comm_t& comm) { return make_optimizer(comm, o); };
      const auto reset = [&](comm_t&, any_optimizer<float>& opt, const elastic_generation& g) {
        report << "gen " << g.generation << " rank " << g.rank << " size " << g.size << " newcomer " << g.newcomer
               << " t " << now_ms() << std::endl;
        if (!g.resumed) return;
        write_file(dir / ("before-" + std::to_string(g.generation) + "-" + name), g.brought ? *g.brought : "");
        std::ostringstream got;
        opt.save(got);
        write_file(dir / ("after-" + std::to_string(g.generation) + "-" + name), got.str());
        report << "resumed " << g.generation << " steps " << g.step << " old_world " << g.resumed->old_world
               << " contributors " << g.resumed->contributors << " t " << now_ms() << std::endl;
      };
      std::uint64_t generation = 0;
      const auto step = [&](comm_t& comm, any_optimizer<float>& opt, std::int64_t s) {
        if (s > 0) std::this_thread::sleep_for(40ms);
        generation = me.membership()->generation;
        if (generation == 1 && comm.rank() == 1 && s == 8) {  // after its eighth commit
          report << "killed t " << now_ms() << std::endl;
          ::kill(::getpid(), SIGKILL);
        }
        (void)opt.step(test::spiky_gradient(model_size, comm.rank(), static_cast<std::uint64_t>(s)));
        opt.last_update().apply(std::span<float>(x), 0.1F);
      };
      const elastic_run_report r = run_elastic(me, std::span<float>(x), total_steps, make, step, reset);
      report << "done steps " << r.steps << " hash " << fnv(x) << std::endl;
    }
    const auto [threads, sockets] = threads_and_sockets();
    report << "leaks threads " << threads << " sockets " << sockets << std::endl;
  } catch (const std::exception& e) {
    report << "error " << e.what() << std::endl;
    code = 1;
  }
  report.close();
  std::_Exit(code);
}

/// Lines of `file` that start with `key`.
std::vector<std::string> lines_with(const fs::path& file, const std::string& key) {
  std::vector<std::string> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) out.push_back(line);
  return out;
}

/// The number after `key` in `line`.
double field(const std::string& line, const std::string& key) {
  const auto at = line.find(" " + key + " ");
  REQUIRE(at != std::string::npos);
  return std::stod(line.substr(at + key.size() + 2));
}

}  // namespace

TEST_CASE("elastic tcp: a SIGKILLed rank, training resumes at W = 3, a newcomer brings it back to 4",
          "[tcp][elastic][processes]") {
  const fs::path dir = fs::temp_directory_path() / ("sketchsgd-elastic-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  int port_pipe[2];
  REQUIRE(::pipe(port_pipe) == 0);
  const pid_t rendezvous = ::fork();
  REQUIRE(rendezvous >= 0);
  if (rendezvous == 0) {  // the rendezvous process: serves until killed
    ::close(port_pipe[0]);
    auto o = quiet_rendezvous(3, 4);
    o.join_timeout = 10s;
    o.settle = 500ms;
    tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, o);
    const std::uint16_t p = rdv.port();
    if (::write(port_pipe[1], &p, sizeof p) != sizeof p) std::_Exit(1);
    for (;;) ::pause();
  }
  ::close(port_pipe[1]);
  std::uint16_t port = 0;
  REQUIRE(::read(port_pipe[0], &port, sizeof port) == sizeof port);
  ::close(port_pipe[0]);

  std::map<std::string, pid_t> workers;
  const auto start = [&](const std::string& name) {
    const pid_t pid = ::fork();
    if (pid == 0) elastic_worker(name, port, dir);
    workers[name] = pid;
  };
  for (int i = 0; i < 4; ++i) start("w" + std::to_string(i));
  // The newcomer starts once a survivor resumed at W = 3.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  bool shrunk = false;
  while (!shrunk && std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 4 && !shrunk; ++i)
      shrunk = !lines_with(dir / ("w" + std::to_string(i) + ".txt"), "resumed 2").empty();
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE(shrunk);
  start("newcomer");
  std::map<std::string, int> status;
  while (status.size() < workers.size() && std::chrono::steady_clock::now() < deadline) {
    for (const auto& [name, pid] : workers) {
      int s = 0;
      if (!status.contains(name) && ::waitpid(pid, &s, WNOHANG) == pid) status[name] = s;
    }
    std::this_thread::sleep_for(20ms);
  }
  for (const auto& [name, pid] : workers) {
    if (!status.contains(name)) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      FAIL_CHECK(name << " hung");
    }
  }
  ::kill(rendezvous, SIGKILL);
  ::waitpid(rendezvous, nullptr, 0);

  // One worker was killed (the first generation's rank 1); the others and the newcomer finished.
  std::string victim;
  for (const auto& [name, s] : status) {
    INFO(name << ": " << read_file(dir / (name + ".txt")));
    if (WIFSIGNALED(s)) {
      CHECK(WTERMSIG(s) == SIGKILL);
      CHECK(victim.empty());
      victim = name;
    } else {
      CHECK(WIFEXITED(s));
      CHECK(WEXITSTATUS(s) == 0);
    }
  }
  REQUIRE(!victim.empty());
  const double killed_at = field(lines_with(dir / (victim + ".txt"), "killed").at(0), "t");
  std::set<std::string> hashes;
  std::vector<std::string> before2, after2, before3, after3;
  for (const auto& [name, s] : status) {
    if (name == victim) continue;
    const fs::path file = dir / (name + ".txt");
    INFO(name << ": " << read_file(file));
    const auto done = lines_with(file, "done");
    REQUIRE(done.size() == 1);
    CHECK(field(done[0], "steps") == total_steps);
    hashes.insert(done[0].substr(done[0].find("hash")));
    const auto leaks = lines_with(file, "leaks");
    REQUIRE(leaks.size() == 1);
    CHECK(field(leaks[0], "threads") == 1);
    CHECK(field(leaks[0], "sockets") == 0);
    if (name != "newcomer") {  // a survivor: resumed at W = 3 within 5 s of the kill
      const auto resumed = lines_with(file, "resumed 2");
      REQUIRE(resumed.size() == 1);
      CHECK(field(resumed[0], "old_world") == 4);
      CHECK(field(resumed[0], "contributors") == 3);
      const double seconds = (field(resumed[0], "t") - killed_at) / 1000;
      INFO("resumed " << seconds << " s after the SIGKILL");
      CHECK(seconds < 5);
      std::printf("elastic tcp: %s resumed at W = 3 %.3f s after the SIGKILL\n", name.c_str(), seconds);
      before2.push_back(read_file(dir / ("before-2-" + name)));
      after2.push_back(read_file(dir / ("after-2-" + name)));
    }
    const auto grown = lines_with(file, "gen 3");
    REQUIRE(grown.size() == 1);
    CHECK(field(grown[0], "size") == 4);
    CHECK(field(grown[0], "newcomer") == (name == "newcomer" ? 1 : 0));
    before3.push_back(read_file(dir / ("before-3-" + name)));
    after3.push_back(read_file(dir / ("after-3-" + name)));
  }
  CHECK(hashes.size() == 1);  // every rank ends with the same parameters
  // No gradient mass lost at either change: the survivors' memories re-divided.
  CHECK(test::sums_gap(test::memory_sums(before2), test::memory_sums(after2)) <= 1e-5);
  CHECK(test::sums_gap(test::memory_sums(before3), test::memory_sums(after3)) <= 1e-5);
  fs::remove_all(dir);
}

TEST_CASE("elastic tcp: a rank that dies during the re-division: the others re-form again from the same commits",
          "[tcp][elastic][failure]") {
  tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, quiet_rendezvous(1, 4));
  const method_options<float> o = test::memory_options("sketched", model_size);
  std::vector<std::unique_ptr<tcp_elastic_member>> m;
  for (int i = 0; i < 4; ++i)
    m.push_back(std::make_unique<tcp_elastic_member>(tcp_endpoint{"127.0.0.1", rdv.port()}, job_secret,
                                                     "w" + std::to_string(i), quiet_member()));
  std::vector<elastic_commit> commits(4);
  std::vector<std::string> after(4);
  std::vector<int> resumed_in(4, 0);
  test::run_threads(4, [&](int i) {
    auto& me = *m[static_cast<std::size_t>(i)];
    auto& commit = commits[static_cast<std::size_t>(i)];
    {  // generation 1: three steps, committed; then every rank asks to re-form (as after a failure)
      communicator comm(me.join());
      any_optimizer<float> opt = make_optimizer(comm, o);
      for (std::uint64_t s = 0; s < 3; ++s) {
        (void)opt.step(test::spiky_gradient(model_size, comm.rank(), s));
        commit.commit(opt);
      }
    }
    for (;;) {
      communicator comm(me.join());
      if (me.membership()->generation == 2 && comm.rank() == 3) {
        m[static_cast<std::size_t>(i)].reset();  // dies as the re-division begins
        return;
      }
      try {
        any_optimizer<float> opt = make_optimizer(comm, o);  // agrees on the configuration: a collective
        (void)resume_resized(comm, opt, commit);
        resumed_in[static_cast<std::size_t>(i)] = static_cast<int>(me.membership()->generation);
        std::ostringstream os;
        opt.save(os);
        after[static_cast<std::size_t>(i)] = os.str();
        return;
      } catch (const transport_error&) {
        continue;  // the commits are untouched: re-form and re-divide again
      }
    }
  });
  std::vector<std::string> given;
  std::vector<std::string> got;
  for (int i = 0; i < 4; ++i) {
    if (resumed_in[static_cast<std::size_t>(i)] == 0) continue;  // the one that died
    CHECK(resumed_in[static_cast<std::size_t>(i)] == 3);
    given.push_back(*commits[static_cast<std::size_t>(i)].at(3));
    got.push_back(after[static_cast<std::size_t>(i)]);
  }
  REQUIRE(got.size() == 3);
  CHECK(test::sums_gap(test::memory_sums(given), test::memory_sums(got)) <=
        1e-5);  // the three survivors' memories, whole
}

TEST_CASE("elastic tcp+tls: a world re-forms over TLS, and a member without the job's certificate is refused",
          "[tcp][elastic][tls]") {
  auto ro = quiet_rendezvous(1, 3);
  ro.tls = test::pki().job;
  tcp_rendezvous rdv({"127.0.0.1", 0}, job_secret, ro);
  auto with_tls = [](const tcp_tls_options& files) {
    auto o = quiet_member();
    o.transport.tls = files;
    return o;
  };
  // A stranger with the secret but a certificate from another CA: refused in the TLS handshake.
  CHECK_THROWS_AS(tcp_elastic_member({"127.0.0.1", rdv.port()}, job_secret, "stranger", with_tls(test::pki().stranger)),
                  transport_error);
  // Without TLS at all: the rendezvous speaks TLS first, so no handshake completes.
  auto plain = quiet_member();
  plain.transport.handshake_timeout = 1s;
  CHECK_THROWS(tcp_elastic_member({"127.0.0.1", rdv.port()}, job_secret, "plain", plain));
  std::vector<std::unique_ptr<tcp_elastic_member>> m;
  for (int i = 0; i < 3; ++i)
    m.push_back(std::make_unique<tcp_elastic_member>(tcp_endpoint{"127.0.0.1", rdv.port()}, job_secret,
                                                     "w" + std::to_string(i), with_tls(test::pki().job)));
  test::run_threads(3, [&](int i) { CHECK(sum_of_ranks(m[static_cast<std::size_t>(i)]->join()) == triangle(3)); });
  m[2].reset();
  test::run_threads(2, [&](int i) {
    auto& me = *m[static_cast<std::size_t>(i)];
    CHECK_THROWS_AS(sum_of_ranks(*me.transport()), transport_error);
    tcp_transport& t = me.join();  // the new generation's mesh: TLS again
    CHECK(t.size() == 2);
    CHECK(sum_of_ranks(t) == triangle(2));
  });
}
