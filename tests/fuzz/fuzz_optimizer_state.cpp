// SPDX-License-Identifier: Apache-2.0
// Fuzz target: optimizer checkpoints (optim/state/state_io.hpp) through every
// optimizer's `load`. Properties beyond "no crash, no leak, no unbounded
// allocation":
//  - only serialization_error and config_mismatch_error escape;
//  - a refused load leaves the state unchanged (save before == save after);
//  - an accepted load re-saves to exactly the bytes it consumed.

#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>

#include "fuzz_support.hpp"
#include "optimizer_zoo.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static sketchsgd::fuzz::optimizer_zoo zoo;
  const std::string input(reinterpret_cast<const char*>(data), size);
  zoo.for_each([&](const char*, auto& optimizer) {
    std::ostringstream before;
    optimizer.save(before);
    std::istringstream in(input);
    bool loaded = false;
    try {
      optimizer.load(in);
      loaded = true;
    } catch (const sketchsgd::serialization_error&) {
    } catch (const sketchsgd::config_mismatch_error&) {
    }
    std::ostringstream after;
    optimizer.save(after);
    if (!loaded) {
      sketchsgd::fuzz::check(before.str() == after.str(), "a refused load changed the state");
      return;
    }
    const auto consumed = in.tellg() < 0 ? input.size() : static_cast<std::size_t>(in.tellg());
    sketchsgd::fuzz::check(after.str() == input.substr(0, consumed), "a loaded state re-saves to other bytes");
  });
  return 0;
}
