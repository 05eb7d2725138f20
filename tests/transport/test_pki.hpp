// SPDX-License-Identifier: Apache-2.0
#pragma once

// A throwaway PKI for the TLS tests (test_tcp.cpp, test_tcp_elastic.cpp),
// made once per test process with the openssl command-line tool.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>

#include "sketchsgd/transport/tcp/options.hpp"

namespace sketchsgd::test {

/// Throwaway PKI: CA 1 signs the job's certificate, CA 2 the stranger's.
struct test_pki {
  std::filesystem::path dir;
  tcp_tls_options job;       // the ranks' files (certificate from CA 1, trusting CA 1)
  tcp_tls_options stranger;  // a certificate from CA 2, trusting CA 1
};

inline void run_openssl(const std::filesystem::path& dir, const std::string& args) {
  const std::string command = "cd '" + dir.string() + "' && openssl " + args + " >> openssl.log 2>&1";
  if (std::system(command.c_str()) != 0) {  // NOLINT(concurrency-mt-unsafe): test set-up, one thread
    std::ifstream log(dir / "openssl.log");
    throw std::runtime_error("openssl " + args + " failed:\n" +
                             std::string((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>()));
  }
}

/// Makes the certificates once per test process.
inline const test_pki& pki() {
  static const test_pki made = [] {
    test_pki p;
    p.dir = std::filesystem::temp_directory_path() / ("sketchsgd-tls-" + std::to_string(::getpid()));
    std::filesystem::remove_all(p.dir);
    std::filesystem::create_directories(p.dir);
    std::ofstream(p.dir / "leaf.cnf") << "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                         "extendedKeyUsage=serverAuth,clientAuth\n";
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    for (const char* ca : {"ca1", "ca2"}) {
      run_openssl(p.dir, "req -x509 " + ec + " -days 2 -subj /CN=sketchsgd-test-" + ca + " -keyout " + ca +
                             ".key -out " + ca + ".pem -addext basicConstraints=critical,CA:TRUE" +
                             " -addext keyUsage=critical,keyCertSign");
    }
    for (const auto& [leaf, ca] : {std::pair{"rank", "ca1"}, std::pair{"stranger", "ca2"}}) {
      run_openssl(p.dir, std::string("req ") + ec + " -subj /CN=sketchsgd-" + leaf + " -keyout " + leaf + ".key -out " +
                             leaf + ".csr");
      run_openssl(p.dir, std::string("x509 -req -in ") + leaf + ".csr -CA " + ca + ".pem -CAkey " + ca +
                             ".key -CAcreateserial -days 2 -extfile leaf.cnf -out " + leaf + ".pem");
    }
    const auto file = [&](const char* name) { return (p.dir / name).string(); };
    p.job = {file("ca1.pem"), file("rank.pem"), file("rank.key")};
    p.stranger = {file("ca1.pem"), file("stranger.pem"), file("stranger.key")};
    return p;
  }();
  return made;
}

}  // namespace sketchsgd::test
