// SPDX-License-Identifier: Apache-2.0
// Fuzz target: checkpoint files (optim/state/checkpoint.hpp) through
// load_checkpoint into every optimizer. Input: one selector byte, then the
// file. Selector bits 0-2 pick the optimizer (modulo six); bit 3 asks for the
// checksum to be recomputed first, so that mutations reach the size checks
// and the optimizer's state reader instead of stopping at the checksum.
// Properties beyond "no crash, no leak, no unbounded allocation":
//  - only serialization_error and config_mismatch_error escape;
//  - a refused load leaves the optimizer's state and the parameters unchanged;
//  - an accepted load saves back to exactly the file it read.

#include <unistd.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "fuzz_support.hpp"
#include "optimizer_zoo.hpp"
#include "sketchsgd/optim/state/checkpoint.hpp"

namespace {

constexpr std::size_t parameter_bytes = 64;

/// A directory of this process's own, removed at exit.
struct scratch_directory {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("sketchsgd-fuzz-checkpoint-" + std::to_string(::getpid()));
  scratch_directory() { std::filesystem::create_directories(path); }
  scratch_directory(const scratch_directory&) = delete;
  scratch_directory& operator=(const scratch_directory&) = delete;
  ~scratch_directory() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

const std::filesystem::path& scratch_dir() {
  static const scratch_directory dir;
  return dir.path;
}

void write_file(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): ofstream writes chars
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  sketchsgd::fuzz::check(static_cast<bool>(out), "could not write the scratch file");
}

std::vector<std::byte> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto bytes = std::as_bytes(std::span<const char>(raw));
  return {bytes.begin(), bytes.end()};
}

/// Recomputes the trailing checksum over everything before it.
void repair_checksum(std::vector<std::byte>& file) {
  if (file.size() < sketchsgd::detail::checkpoint_head_bytes + sketchsgd::detail::checkpoint_tail_bytes) return;
  sketchsgd::detail::checkpoint_checksum sum;
  sum.update(std::span<const std::byte>(file).first(file.size() - 8));
  sketchsgd::wire::store_le(file.data() + file.size() - 8, sum.value());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static sketchsgd::fuzz::optimizer_zoo zoo;
  if (size == 0) return 0;
  const auto input = sketchsgd::fuzz::bytes_of(data, size);
  const auto selector = static_cast<unsigned>(input[0]);
  std::vector<std::byte> file(input.begin() + 1, input.end());
  if ((selector & 8U) != 0) repair_checksum(file);
  const std::filesystem::path path = scratch_dir() / "input.ckpt";
  write_file(path, file);

  unsigned index = 0;
  zoo.for_each([&](const char*, auto& optimizer) {
    if (index++ != (selector & 7U) % 6U) return;
    std::array<std::byte, parameter_bytes> parameters{};
    parameters.fill(std::byte{0xA5});
    const auto parameters_before = parameters;
    std::ostringstream before;
    optimizer.save(before);
    bool loaded = false;
    try {
      sketchsgd::load_checkpoint(path, optimizer, parameters);
      loaded = true;
    } catch (const sketchsgd::serialization_error&) {
    } catch (const sketchsgd::config_mismatch_error&) {
    }
    if (!loaded) {
      std::ostringstream after;
      optimizer.save(after);
      sketchsgd::fuzz::check(before.str() == after.str(), "a refused checkpoint changed the optimizer");
      sketchsgd::fuzz::check(parameters == parameters_before, "a refused checkpoint changed the parameters");
      return;
    }
    const std::filesystem::path again = scratch_dir() / "again.ckpt";
    sketchsgd::save_checkpoint(again, optimizer, std::span<const std::byte>(parameters));
    sketchsgd::fuzz::check(read_file(again) == file, "a loaded checkpoint saves back to other bytes");
    // Leave the zoo as it was for the next input.
    std::istringstream restore(before.str());
    optimizer.load(restore);
  });
  return 0;
}
