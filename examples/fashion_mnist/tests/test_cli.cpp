// SPDX-License-Identifier: Apache-2.0
// Tests of the command-line checks shared by the trainers and the benchmarks
// (examples/common/cli.hpp): what is accepted, and that every refusal names
// the option, the value and what is allowed.

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>

#include "cli.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::Equals;

TEST_CASE("cli::integer takes whole decimal integers in range", "[cli]") {
  CHECK(cli::integer("--workers", "4", 2, 8) == 4);
  CHECK(cli::integer("--workers", "2", 2, 8) == 2);
  CHECK(cli::integer("--workers", "8", 2, 8) == 8);
  CHECK(cli::integer<std::int64_t>("--hidden", "-1", -1, 5) == -1);
  constexpr auto u64_max = std::numeric_limits<std::uint64_t>::max();
  CHECK(cli::integer<std::uint64_t>("--seed", "18446744073709551615", 0, u64_max) == u64_max);
}

TEST_CASE("cli::integer refuses with the option, the value and the range", "[cli]") {
  const auto refusal = [](const char* text) {
    try {
      (void)cli::integer("--workers", text, 2, 8, "why");
    } catch (const cli::usage_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK_THAT(refusal("abc"), Equals("--workers abc: not an integer; allowed: [2, 8] (why)"));
  CHECK_THAT(refusal("1"), Equals("--workers 1: out of range; allowed: [2, 8] (why)"));
  CHECK_THAT(refusal("9"), Equals("--workers 9: out of range; allowed: [2, 8] (why)"));
  CHECK_THAT(refusal("-3"), Contains("out of range"));
  CHECK_THAT(refusal("99999999999999999999999"), Contains("out of range"));
  CHECK_THAT(refusal("-99999999999999999999999"), Contains("out of range"));
  for (const char* garbage : {"", "4.5", "4x", " 4", "+4", "0x4", "1e3", "--"}) {
    CHECK_THAT(refusal(garbage), Contains("not an integer"));
  }
  CHECK_THROWS_WITH(cli::integer<std::uint64_t>("--seed", "-1", 0, 10), Contains("--seed -1: out of range"));
}

TEST_CASE("cli::real takes finite numbers in range, open or closed at each end", "[cli]") {
  CHECK(cli::real("--compression", "10", 1, 100) == 10.0);
  CHECK(cli::real("--compression", "1", 1, 100) == 1.0);
  CHECK(cli::real("--compression", "1e2", 1, 100) == 100.0);
  CHECK(cli::real("--momentum", "0", 0, 1, false, true) == 0.0);
  CHECK_THROWS_WITH(cli::real("--momentum", "1", 0, 1, false, true),
                    Equals("--momentum 1: out of range; allowed: [0, 1)"));
  CHECK_THROWS_WITH(cli::real("--lr", "0", 0, 10, true), Equals("--lr 0: out of range; allowed: (0, 10]"));
  CHECK_THROWS_WITH(cli::real("--lr", "-1", 0, 10, true), Contains("out of range"));
  CHECK_THROWS_WITH(cli::real("--compression", "0.5", 1, 100), Contains("--compression 0.5: out of range"));
  for (const char* not_finite : {"nan", "inf", "-inf", "1e999"}) {
    CHECK_THROWS_WITH(cli::real("--compression", not_finite, 1, 100), Contains("not a finite number"));
  }
  for (const char* garbage : {"", "ten", "10x", " 10", "1,5"}) {
    CHECK_THROWS_WITH(cli::real("--compression", garbage, 1, 100), Contains("not a number"));
  }
}

TEST_CASE("cli::choice, cli::items and cli::value", "[cli]") {
  CHECK(cli::choice("--method", "dense", {"dense", "sketched"}) == "dense");
  CHECK_THROWS_WITH(cli::choice("--method", "foo", {"dense", "sketched"}),
                    Equals("--method foo: not one of dense|sketched"));
  CHECK(cli::items("--sizes", "1,4,16") == std::vector<std::string>{"1", "4", "16"});
  CHECK_THROWS_AS(cli::items("--sizes", "1,,4"), cli::usage_error);
  CHECK_THROWS_AS(cli::items("--sizes", ""), cli::usage_error);

  char program[] = "p";
  char lr[] = "--lr";
  char value[] = "0.1";
  char quiet[] = "--quiet";
  char* argv[] = {program, lr, value, lr, quiet, lr};
  int i = 1;
  CHECK(cli::value(6, argv, i) == "0.1");
  CHECK(i == 2);
  i = 3;
  CHECK_THROWS_WITH(cli::value(6, argv, i), Equals("missing value after --lr"));  // the next is an option
  i = 5;
  CHECK_THROWS_WITH(cli::value(6, argv, i), Equals("missing value after --lr"));  // the end
}

TEST_CASE("cli::given_options refuses options that do not apply", "[cli]") {
  cli::given_options given;
  given.add("--k");
  CHECK(given.has("--k"));
  CHECK_FALSE(given.has("--cols"));
  CHECK_NOTHROW(given.refuse({"--cols"}, "to dense"));
  CHECK_THROWS_WITH(given.refuse({"--cols", "--k"}, "to dense"), Equals("--k does not apply to dense"));
}

TEST_CASE("cli::check_world refuses a world of one rank and says how to start more", "[cli]") {
  CHECK_NOTHROW(cli::check_world("mpi", 2, 8));
  CHECK_THROWS_WITH(cli::check_world("mpi", 1, 8),
                    Contains("the world size is 1: a world of one rank communicates nothing") && Contains("mpirun"));
  CHECK_THROWS_WITH(cli::check_world("tcp", 1, 8), Contains("tcp_launch.sh"));
  CHECK_THROWS_WITH(cli::check_world("mpi", 9, 8, "why"), Contains("is 9: out of range; allowed: [2, 8] (why)"));
}

TEST_CASE("cli::check_memory refuses more than is available, and nothing else", "[cli]") {
  const double available = cli::available_memory();
  REQUIRE(available > 0);  // Linux: MemAvailable
  CHECK_NOTHROW(cli::check_memory(1e6, "a run", "advice"));
  CHECK_THROWS_WITH(
      cli::check_memory(available * 2 + 1e12, "2 workers", "use fewer"),
      Contains("2 workers: about ") && Contains(" of memory needed, ") && Contains(" available; use fewer"));
  CHECK(cli::bytes_text(2.5e12) == "2.5 TB");
  CHECK(cli::bytes_text(1.5e9) == "1.5 GB");
  CHECK(cli::bytes_text(3e8) == "300 MB");
}

TEST_CASE("cli::check_writable refuses an output file that cannot be created", "[cli]") {
  CHECK_NOTHROW(cli::check_writable("--csv", "relative-name-in-the-working-directory.csv"));
  CHECK_THROWS_WITH(cli::check_writable("--csv", "/nonexistent-directory/x.csv"),
                    Contains("--csv /nonexistent-directory/x.csv: cannot create it"));
  CHECK_THROWS_WITH(cli::check_writable("--csv", "/"), Contains("not a writable file"));
}
