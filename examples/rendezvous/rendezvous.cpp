// SPDX-License-Identifier: Apache-2.0
// The elastic rendezvous of a TCP job (sketchsgd::tcp_rendezvous) as a
// process of its own: it outlives the workers and forms each generation of
// their world. Workers find it through SKETCHSGD_RENDEZVOUS=host:port and
// share its secret (SKETCHSGD_SECRET or SKETCHSGD_SECRET_FILE). Runs until
// SIGINT or SIGTERM; events go to stderr.
//
//   SKETCHSGD_SECRET_FILE=secret sketchsgd_rendezvous --port-file port --min-workers 3 --max-workers 4 &
//   SKETCHSGD_RENDEZVOUS=127.0.0.1:$(cat port) SKETCHSGD_SECRET_FILE=secret fashion_mnist --transport tcp-elastic

#include <csignal>
#include <cstdio>
#include <exception>
#include <fstream>
#include <string>

#include <sketchsgd/transport/tcp.hpp>

#include "cli.hpp"

namespace {

const char* usage =
    "sketchsgd_rendezvous [options]   (the secret: SKETCHSGD_SECRET or SKETCHSGD_SECRET_FILE)\n"
    "  --host H                 the address to listen on (127.0.0.1)\n"
    "  --port P                 the port (0: any free one, see --port-file) (0)\n"
    "  --port-file F            write the port there once listening\n"
    "  --min-workers N          the fewest workers of a generation (1)\n"
    "  --max-workers N          the most (65536)\n"
    "  --join-timeout-ms T      how long a re-forming waits for the last generation's members (60000)\n"
    "  --settle-ms S            the first generation: the wait after the last arrival (1000)\n";

}  // namespace

int main(int argc, char** argv) try {
  sketchsgd::tcp_endpoint at{"127.0.0.1", 0};
  std::string port_file;
  sketchsgd::tcp_rendezvous_options o;
  o.max_workers = 65536;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      return 0;
    }
    const std::string_view v = cli::value(argc, argv, i);
    if (arg == "--host")
      at.host = v;
    else if (arg == "--port")
      at.port = cli::integer<std::uint16_t>(arg, v, 0, 65535);
    else if (arg == "--port-file")
      port_file = v;
    else if (arg == "--min-workers")
      o.min_workers = cli::integer(arg, v, 1, 65536);
    else if (arg == "--max-workers")
      o.max_workers = cli::integer(arg, v, 1, 65536);
    else if (arg == "--join-timeout-ms")
      o.join_timeout = std::chrono::milliseconds(cli::integer(arg, v, 1, 86'400'000));
    else if (arg == "--settle-ms")
      o.settle = std::chrono::milliseconds(cli::integer(arg, v, 0, 86'400'000));
    else
      throw cli::usage_error("unknown option " + arg + "\n" + usage);
  }
  if (o.max_workers < o.min_workers) throw cli::usage_error("--max-workers is below --min-workers");
  if (!port_file.empty()) cli::check_writable("--port-file", port_file);
  const std::string secret = sketchsgd::detail::read_tcp_secret("sketchsgd_rendezvous");

  // Block the stop signals before the rendezvous starts its thread, which
  // inherits the mask; then wait for one here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  sketchsgd::tcp_rendezvous rendezvous(at, secret, o);
  if (!port_file.empty()) {
    {
      std::ofstream out(port_file + ".tmp");
      out << rendezvous.port() << '\n';
    }
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  std::fprintf(stderr, "sketchsgd_rendezvous: listening on %s:%u\n", at.host.c_str(), rendezvous.port());
  int received = 0;
  sigwait(&stop, &received);
  return 0;
} catch (const cli::usage_error& e) {
  std::fprintf(stderr, "sketchsgd_rendezvous: %s\n", e.what());
  return cli::usage_exit_code;
} catch (const std::exception& e) {
  std::fprintf(stderr, "sketchsgd_rendezvous: %s\n", e.what());
  return 1;
}
