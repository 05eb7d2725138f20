// SPDX-License-Identifier: Apache-2.0
// Writes the fuzz targets' seed corpus: valid inputs of every kind plus a few
// near misses, so that libFuzzer starts past the magic numbers and
// fingerprints. Deterministic except for the handshake nonces.
//   make_corpus OUTPUT_DIR   (writes OUTPUT_DIR/<target>/<name>)

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "handshake_fixture.hpp"
#include "optimizer_zoo.hpp"
#include "sketchsgd/optim/state/checkpoint.hpp"
#include "sketchsgd/serialize/count_sketch_format.hpp"
#include "sketchsgd/transport/tcp/membership.hpp"
#include "sketchsgd/transport/tcp_protocol.hpp"

namespace {

using namespace sketchsgd;
namespace p = sketchsgd::tcp_protocol;
namespace fs = std::filesystem;

fs::path root;

void write(const std::string& target, const std::string& name, std::span<const std::byte> bytes) {
  fs::create_directories(root / target);
  std::ofstream out(root / target / name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write(const std::string& target, const std::string& name, const std::string& bytes) {
  write(target, name, std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

template <class Sketch>
void sketch_seeds(const std::string& name) {
  using value = typename Sketch::value_type;
  Sketch s({.rows = 3, .cols = 5, .seed = 0x5EED});
  write("count_sketch", name + "_empty", serialize(s));
  for (std::size_t i = 0; i < s.table().size(); ++i) s.table()[i] = static_cast<value>(static_cast<int>(i) - 7);
  const auto bytes = serialize(s);
  write("count_sketch", name, bytes);
  write("count_sketch", name + "_truncated", std::span<const std::byte>(bytes).first(bytes.size() - 3));
}

void count_sketch_seeds() {
  sketch_seeds<count_sketch<float, multiply_shift>>("float_ms");
  sketch_seeds<count_sketch<double, poly4_hash>>("double_p4");
  sketch_seeds<count_sketch<std::int32_t, multiply_shift>>("int32_ms");
  sketch_seeds<count_sketch<std::int64_t, poly4_hash>>("int64_p4");
}

void optimizer_seeds() {
  fuzz::optimizer_zoo zoo;
  zoo.for_each([](const char* name, auto& optimizer) {
    std::ostringstream out;
    optimizer.save(out);
    write("optimizer_state", name, out.str());
    write("optimizer_state", std::string(name) + "_truncated", out.str().substr(0, out.str().size() / 2));
  });
}

void checkpoint_seeds() {
  // Each seed: the selector byte of fuzz_checkpoint.cpp (optimizer index,
  // bit 3 = recompute the checksum), then a checkpoint that optimizer wrote.
  fuzz::optimizer_zoo zoo;
  const std::filesystem::path scratch = std::filesystem::path(root) / "checkpoint" / "scratch.ckpt";
  std::filesystem::create_directories(scratch.parent_path());
  std::vector<std::byte> parameters(64);
  for (std::size_t i = 0; i < parameters.size(); ++i) parameters[i] = static_cast<std::byte>(i * 3 + 1);
  unsigned index = 0;
  zoo.for_each([&](const char* name, auto& optimizer) {
    save_checkpoint(scratch, optimizer, std::span<const std::byte>(parameters));
    std::ifstream in(scratch, std::ios::binary);
    const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string selector(1, static_cast<char>(index++));
    write("checkpoint", name, selector + file);
    write("checkpoint", std::string(name) + "_repaired_truncated",
          std::string(1, static_cast<char>(8U | (index - 1))) + file.substr(0, file.size() - 20));
  });
  std::filesystem::remove(scratch);
}

void frame_seeds() {
  const std::uint64_t limit = std::uint64_t{1} << 20U;
  for (const auto& [name, header] : {std::pair{"data", p::frame_header{p::frame_type::data, 42, 100}},
                                     std::pair{"goodbye", p::frame_header{p::frame_type::goodbye, 0, 0}},
                                     std::pair{"table", p::frame_header{p::frame_type::table, 0, 36}},
                                     std::pair{"too_long", p::frame_header{p::frame_type::data, 1, limit + 1}}}) {
    std::vector<std::byte> bytes(p::frame_header::size + 8);
    const auto h = header.encode();
    std::copy(h.begin(), h.end(), bytes.begin());
    wire::store_le(bytes.data() + p::frame_header::size, limit);
    write("tcp_frame_header", name, bytes);
  }
}

void handshake_seeds() {
  const p::server_hello server{3, p::fresh_nonce()};
  std::vector<std::byte> s{std::byte{0}};
  const auto se = server.encode();
  s.insert(s.end(), se.begin(), se.end());
  write("tcp_handshake", "server_hello", s);
  const p::nonce acceptor = fuzz::handshake_acceptor_nonce();
  p::client_hello client;
  client.rank = 2;
  client.world_size = 4;
  client.listen_port = 29500;
  client.challenge = p::fresh_nonce();
  client.proof = client.expected_proof(fuzz::handshake_secret, acceptor, 0);
  std::vector<std::byte> c{std::byte{1}};
  const auto ce = client.encode();
  c.insert(c.end(), ce.begin(), ce.end());
  write("tcp_handshake", "client_hello", c);
}

void table_seeds() {
  const std::vector<std::vector<p::listen_table::entry>> tables = {
      {{"127.0.0.1", 29500}},
      {{"127.0.0.1", 29500}, {"10.1.2.3", 40001}},
      {{"::1", 1}, {"fe80::1ff:fe23:4567:890a", 65535}, {"192.168.100.200", 80}, {"127.0.0.1", 2}}};
  for (const auto& entries : tables) {
    p::listen_table t;
    t.entries = entries;
    std::vector<std::byte> bytes{static_cast<std::byte>(entries.size())};
    const auto e = t.encode();
    bytes.insert(bytes.end(), e.begin(), e.end());
    write("tcp_listen_table", "world" + std::to_string(entries.size()), bytes);
  }
}

void membership_seeds() {
  namespace m = sketchsgd::tcp_membership;
  const auto seed = [](std::uint8_t kind, const std::vector<std::byte>& payload) {
    std::vector<std::byte> bytes{std::byte{kind}};
    bytes.insert(bytes.end(), payload.begin(), payload.end());
    return bytes;
  };
  write("tcp_membership", "join_newcomer", seed(0, m::encode(m::join_request{0, -1, "worker-7"})));
  write("tcp_membership", "join_survivor", seed(0, m::encode(m::join_request{3, 2, "host-a:4242"})));
  write("tcp_membership", "assignment_rank0",
        seed(1, m::encode(m::assignment{.generation = 1, .rank = 0, .size = 4, .root_host = "127.0.0.1"})));
  write("tcp_membership", "assignment_rank2",
        seed(1, m::encode(m::assignment{
                    .generation = 5, .rank = 2, .size = 3, .newcomer = true, .root_host = "::1", .root_port = 40001})));
  write("tcp_membership", "listening", seed(2, m::encode_listening(7, 29500)));
  write("tcp_membership", "notice", seed(3, m::encode_notice(2)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_corpus OUTPUT_DIR\n";
    return 2;
  }
  root = argv[1];
  count_sketch_seeds();
  optimizer_seeds();
  checkpoint_seeds();
  frame_seeds();
  handshake_seeds();
  table_seeds();
  membership_seeds();
  return 0;
}
