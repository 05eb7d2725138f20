// SPDX-License-Identifier: Apache-2.0
// Distributed training of a small LibTorch CNN on Fashion-MNIST with
// sketchsgd's dense SGD, Sketched-SGD or FetchSGD, over in-process threads or
// MPI processes. LibTorch computes the gradient; sketchsgd communicates it and
// hands back the update. The model's parameters and gradients live in two flat
// tensors (flat_parameters.hpp), so the gradient reaches the optimizer and the
// update reaches the model with no copy.
//
//   torch_fashion_mnist --method sketched --compression 10 --workers 4      (4 in-process workers)
//   mpirun -np 2 torch_fashion_mnist --transport mpi --method sketched ...
//
// Run with --help for every flag.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <sketchsgd/sketchsgd.hpp>

#include "byte_budget.hpp"
#include "cli.hpp"
#include "flat_parameters.hpp"
#include "idx.hpp"
#include "ranks.hpp"
#if defined(TORCH_FMNIST_HAVE_MPI)
#include <mpi.h>

#include <sketchsgd/transport/mpi.hpp>
#endif

namespace {

// ---- configuration ---------------------------------------------------------------

struct config {
  std::string method = "sketched";  // dense|sketched|fetchsgd
  std::string transport = "inproc";
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string csv;
  int workers = 2;
  std::size_t epochs = 1;
  std::size_t steps = 0;   // stop after this many steps (0: run --epochs)
  std::size_t batch = 32;  // per worker
  float lr = 0.1F;
  float momentum = 0.5F;
  double decay_at = 0.75;  // learning rate x 0.1 from this fraction of the steps on; 0: constant
  std::uint64_t seed = 1;
  double compression = 10;  // 0: take --cols/--k as given
  std::uint64_t rows = 1;
  std::uint64_t cols = 0;
  std::size_t k = 0;
  std::size_t candidates = 4;     // P
  double cols_per_k = 19;         // c / k per row under --compression
  std::int64_t hidden = 128;      // width of the hidden fully connected layer; 0: none
  std::int64_t dense_max = 1024;  // tensors with at most this many elements are sent dense
  int threads = 1;                // LibTorch intra-op threads per worker
  std::size_t eval_every = 0;     // steps between evaluations; 0: at the end of each epoch
  bool quiet = false;
  cli::given_options given;
};

const char* usage =
    "torch_fashion_mnist [options]\n"
    "  --method dense|dense-bf16|dense-fp16|sketched|fetchsgd   (sketched)\n"
    "  --transport inproc|mpi         inproc runs --workers threads (inproc); mpi takes mpirun's world\n"
    "  --workers W                    in-process workers, at least 2 (2); with mpi, if given, it must\n"
    "                                 match mpirun's world\n"
    "  --compression X                choose cols and k for about X times fewer bytes than dense, X >= 1\n"
    "                                 (10); giving --cols or --k instead takes them as given\n"
    "  --rows R --cols C --k K --P P  sketch and selection (rows 1, P 4; cols 19000 and k 1000 when\n"
    "                                 only one of them is given)\n"
    "  --cols-per-k Q                 columns per selected coordinate under --compression (19)\n"
    "  --epochs E | --steps N         train E epochs of each worker's shard (1), or stop after N steps\n"
    "  --batch B --lr LR --momentum M --seed S   (32 per worker, 0.1, 0.5, 1)\n"
    "  --decay-at F                   learning rate x 0.1 after a fraction F of the steps, 0 for never (0.75)\n"
    "  --hidden H                     hidden fully connected layer width, 0 for none (128)\n"
    "  --dense-max N                  tensors of at most N elements (and biases) are sent dense (1024)\n"
    "  --threads T                    LibTorch intra-op threads per worker (1)\n"
    "  --eval-every N                 evaluate every N steps as well as at the end of each epoch\n"
    "  --data DIR                     the gzipped IDX files (/usr/share/datasets/fashion-mnist)\n"
    "  --csv FILE                     append every evaluation as CSV\n"
    "  --quiet                        only the final RESULT line\n"
    "A bad value, or an option that does not apply, is refused with exit status 2.\n";

config parse(int argc, char** argv) {
  config c;
  constexpr auto u64_max = std::numeric_limits<std::uint64_t>::max();
  constexpr std::size_t index_max = 0xFFFF'FFFEU;  // 4-byte indices on the wire
  constexpr std::size_t steps_max = 1'000'000'000;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    c.given.add(arg);
    if (arg == "--quiet") {
      c.quiet = true;
      continue;
    }
    const std::string_view v = cli::value(argc, argv, i);
    if (arg == "--method")
      c.method = cli::choice(arg, v, {"dense", "dense-bf16", "dense-fp16", "sketched", "fetchsgd"});
    else if (arg == "--transport")
      c.transport = cli::choice(arg, v, {"inproc", "mpi"});
    else if (arg == "--workers")
      c.workers = cli::integer(arg, v, 2, 65536, "a world of one worker communicates nothing");
    else if (arg == "--compression")
      c.compression = cli::real(arg, v, 1, 10000, false, false, "X times fewer bytes than dense");
    else if (arg == "--rows")
      c.rows = cli::integer<std::uint64_t>(arg, v, 1, sketchsgd::sketch_config::max_rows);
    else if (arg == "--cols")
      c.cols = cli::integer<std::uint64_t>(arg, v, 1, sketchsgd::multiply_shift::max_cols);
    else if (arg == "--k")
      c.k = cli::integer<std::size_t>(arg, v, 1, index_max);
    else if (arg == "--P")
      c.candidates = cli::integer<std::size_t>(arg, v, 0, 1000);
    else if (arg == "--cols-per-k")
      c.cols_per_k = cli::real(arg, v, 1, 1000);
    else if (arg == "--epochs")
      c.epochs = cli::integer<std::size_t>(arg, v, 1, 1000);
    else if (arg == "--steps")
      c.steps = cli::integer<std::size_t>(arg, v, 1, steps_max);
    else if (arg == "--batch")
      c.batch = cli::integer<std::size_t>(arg, v, 1, 65536);
    else if (arg == "--lr")
      c.lr = static_cast<float>(cli::real(arg, v, 0, 10, true));
    else if (arg == "--momentum")
      c.momentum = static_cast<float>(cli::real(arg, v, 0, 1, false, true));
    else if (arg == "--decay-at")
      c.decay_at = cli::real(arg, v, 0, 1, false, true, "0: a constant learning rate");
    else if (arg == "--seed")
      c.seed = cli::integer<std::uint64_t>(arg, v, 0, u64_max);
    else if (arg == "--hidden")
      c.hidden = cli::integer<std::int64_t>(arg, v, 0, 65536, "0: no hidden layer");
    else if (arg == "--dense-max")
      c.dense_max = cli::integer<std::int64_t>(arg, v, 0, 1'000'000'000);
    else if (arg == "--threads")
      c.threads = cli::integer(arg, v, 1, 1024);
    else if (arg == "--eval-every")
      c.eval_every = cli::integer<std::size_t>(arg, v, 0, steps_max, "0: at the end of each epoch");
    else if (arg == "--data")
      c.data = v;
    else if (arg == "--csv")
      c.csv = v;
    else
      throw cli::usage_error("unknown option " + arg + "\n" + usage);
  }
  // Options that do not apply are refused rather than ignored.
  const auto& g = c.given;
  if (sketchsgd::is_dense_method(c.method)) {
    g.refuse({"--compression", "--rows", "--cols", "--k", "--P", "--cols-per-k"},
             "to --method " + c.method + " (it sends the whole gradient)");
    c.compression = 0;  // nothing to choose; reported as 0
  }
  if (c.method == "fetchsgd") g.refuse({"--P"}, "to --method fetchsgd (it has no second round)");
  if (g.has("--cols") || g.has("--k")) {
    g.refuse({"--compression"}, "with --cols or --k, which set the sketch by hand (give one or the other)");
    g.refuse({"--cols-per-k"}, "with --cols or --k (it shapes the sketch --compression chooses)");
    c.compression = 0;  // take --cols and --k as given
  }
  if (g.has("--epochs")) g.refuse({"--steps"}, "with --epochs (give one or the other)");
#if !defined(TORCH_FMNIST_HAVE_MPI)
  if (c.transport == "mpi") throw cli::usage_error("--transport mpi: not built into this program (no sketchsgd::mpi)");
#endif
  if (!c.csv.empty()) cli::check_writable("--csv", c.csv);
  return c;
}

// ---- the model -----------------------------------------------------------------------

/// conv 1->16 5x5, max-pool 2, conv 16->32 5x5, max-pool 2, [fc 512->H, ReLU,] fc ->10.
struct cnn_impl : torch::nn::Module {
  explicit cnn_impl(std::int64_t hidden)
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 5)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 5)))) {
    if (hidden > 0) fc1 = register_module("fc1", torch::nn::Linear(32 * 4 * 4, hidden));
    out = register_module("out", torch::nn::Linear(hidden > 0 ? hidden : 32 * 4 * 4, 10));
  }

  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2->forward(x)), 2);
    x = x.flatten(1);
    if (!fc1.is_empty()) x = torch::relu(fc1->forward(x));
    return out->forward(x);
  }

  torch::nn::Conv2d conv1;
  torch::nn::Conv2d conv2;
  torch::nn::Linear fc1{nullptr};
  torch::nn::Linear out{nullptr};
};
TORCH_MODULE_IMPL(cnn, cnn_impl);

/// The same initial weights on every rank: LibTorch initializes from its
/// global generator, so seeding and constructing must not interleave with
/// another in-process worker doing the same.
cnn make_model(const config& c) {
  static std::mutex generator;
  const std::lock_guard lock(generator);
  torch::manual_seed(c.seed);
  return cnn(c.hidden);
}

// ---- training ----------------------------------------------------------------------

struct summary {
  double accuracy = 0;
  double loss = 0;
  std::uint64_t bytes_sent = 0;
  double compression = 0;
  double seconds = 0;
  std::uint64_t steps = 0;
};

struct evaluation {
  double accuracy = 0;
  double loss = 0;
};

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Test-set accuracy and mean cross-entropy, in batches of 1000.
evaluation evaluate_model(cnn& model, const fmnist::dataset& test) {
  const torch::NoGradGuard no_grad;
  model->eval();
  const auto n = static_cast<std::int64_t>(test.size());
  const auto pixels = static_cast<std::int64_t>(test.pixels_per_image);
  std::int64_t correct = 0;
  double loss = 0;
  for (std::int64_t at = 0; at < n; at += 1000) {
    const std::int64_t b = std::min<std::int64_t>(1000, n - at);
    // from_blob wants a mutable pointer; the test set is only read.
    const torch::Tensor x =
        torch::from_blob(const_cast<float*>(test.images.data()) + at * pixels, {b, 1, 28, 28}, torch::kFloat32);
    const torch::Tensor y =
        torch::from_blob(const_cast<std::uint8_t*>(test.labels.data()) + at, {b}, torch::kUInt8).to(torch::kInt64);
    const torch::Tensor logits = model->forward(x);
    loss += torch::nn::functional::cross_entropy(
                logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<std::int64_t>();
  }
  model->train();
  return {static_cast<double>(correct) / static_cast<double>(n), loss / static_cast<double>(n)};
}

/// One worker's whole run. Every rank trains; rank 0 evaluates and reports.
template <class Transport>
summary train_rank(Transport& transport, const config& c0, const fmnist::fashion_mnist& data) {
  // W workers already fill the cores (2 on our machines): LibTorch's own intra-op threads would oversubscribe them.
  torch::set_num_threads(c0.threads);
  const int rank = static_cast<int>(transport.rank());
  const int world = static_cast<int>(transport.size());
  // The portable algorithms on every transport (MPI's native allreduce sums
  // in its own order), so a seeded run ends with the same bits over inproc and MPI.
  sketchsgd::communicator comm(transport, {.algorithm = sketchsgd::allreduce_algorithm::portable});

  cnn model = make_model(c0);
  const sketchsgd_torch::flat_parameters flat(model->named_parameters(), {.max_small_numel = c0.dense_max});
  const std::size_t d = flat.size();
  config c = c0;
  fmnist::choose_budget(c, d, flat.dense_count(), world);
  auto opt = sketchsgd::make_optimizer(
      comm, sketchsgd::method_options<float>{
                .method = c.method,
                .dimension = d,
                .k = c.k,
                .sketch = {.rows = c.rows, .cols = c.cols, .seed = c.seed * 7919 + 17},
                .candidates_factor = c.candidates,
                .learning_rate = c.lr,
                .momentum = c.momentum,
                .average = true,
                .dense = sketchsgd::is_dense_method(c.method) ? std::vector<sketchsgd::dense_range>{} : flat.dense(),
                .nonfinite = sketchsgd::nonfinite_policy::skip_step});

  // A disjoint shard per worker, from one seeded shuffle of the training set (as train.cpp).
  const std::size_t shard = data.train.size() / static_cast<std::size_t>(world);
  std::vector<std::size_t> order(data.train.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  sketchsgd::splitmix64 shuffle(c.seed);
  for (std::size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[shuffle.next_below(i + 1)]);
  std::vector<std::size_t> mine(
      order.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(rank) * shard),
      order.begin() + static_cast<std::ptrdiff_t>((static_cast<std::size_t>(rank) + 1) * shard));

  const auto batch = static_cast<std::int64_t>(c.batch);
  std::vector<float> images(c.batch * 784);
  std::vector<std::int64_t> labels(c.batch);
  const torch::Tensor x = torch::from_blob(images.data(), {batch, 1, 28, 28}, torch::kFloat32);
  const torch::Tensor y = torch::from_blob(labels.data(), {batch}, torch::kInt64);
  const std::size_t steps_per_epoch = shard / c.batch;
  if (steps_per_epoch == 0) throw std::invalid_argument("--batch is larger than a worker's shard");
  const std::size_t total_steps = c.steps != 0 ? c.steps : c.epochs * steps_per_epoch;
  // One step decay, the same for every method: a constant rate leaves the last evaluation a point or two noisy.
  const auto decay_step = static_cast<std::uint64_t>(c.decay_at * static_cast<double>(total_steps));

  std::ofstream csv;
  if (rank == 0 && !c.csv.empty()) {
    const bool fresh = !std::ifstream(c.csv).good();
    csv.open(c.csv, std::ios::app);
    if (fresh) {
      csv << "method,transport,workers,seed,target_compression,rows,cols,k,P,step,train_loss,test_loss,test_accuracy,"
             "bytes_sent,achieved_compression,seconds\n";
    }
  }
  if (rank == 0 && !c.quiet) {
    std::printf("%s over %s, W = %d, LibTorch CNN d = %zu (%zu coordinates sent dense: biases and tensors of <= %lld)",
                c.method.c_str(), c.transport.c_str(), world, d, flat.dense_count(),
                static_cast<long long>(c.dense_max));
    if (!sketchsgd::is_dense_method(c.method)) {
      std::printf(", sketch %llu x %llu, k = %zu", static_cast<unsigned long long>(c.rows),
                  static_cast<unsigned long long>(c.cols), c.k);
    }
    if (c.method == "sketched") std::printf(", P = %zu", c.candidates);
    std::printf(", %zu steps of %zu x %d examples, lr %g momentum %g", total_steps, c.batch, world, c.lr, c.momentum);
    if (c.decay_at > 0) std::printf(" (lr x 0.1 from step %llu)", static_cast<unsigned long long>(decay_step));
    std::printf("\n");
    std::fflush(stdout);
  }

  summary result;
  const auto t0 = std::chrono::steady_clock::now();
  double loss_sum = 0;
  std::size_t loss_count = 0;
  auto report = [&](std::uint64_t step) {
    if (rank != 0) return;
    const evaluation e = evaluate_model(model, data.test);
    const auto& st = opt.stats();
    result = {e.accuracy, e.loss, st.total.bytes_sent, st.compression(), since(t0), step};
    const double train_loss = loss_count == 0 ? 0.0 : loss_sum / static_cast<double>(loss_count);
    if (csv.is_open()) {
      csv << c.method << ',' << c.transport << ',' << world << ',' << c.seed << ',' << c.compression << ',' << c.rows
          << ',' << c.cols << ',' << c.k << ',' << c.candidates << ',' << step << ',' << train_loss << ',' << e.loss
          << ',' << e.accuracy << ',' << st.total.bytes_sent << ',' << st.compression() << ',' << result.seconds
          << '\n';
      csv.flush();
    }
    if (!c.quiet) {
      std::printf(
          "step %llu: train loss %.4f, test loss %.4f, test accuracy %.2f%%, %.2f MB sent, compression %.1fx, "
          "%.1f s\n",
          static_cast<unsigned long long>(step), train_loss, e.loss, 100 * e.accuracy,
          static_cast<double>(st.total.bytes_sent) / 1e6, st.compression(), result.seconds);
      std::fflush(stdout);
    }
    loss_sum = 0;
    loss_count = 0;
  };

  for (std::uint64_t step = 0; step < total_steps;) {
    const std::size_t epoch = step / steps_per_epoch;  // reshuffle this worker's shard every epoch
    const std::size_t s = step % steps_per_epoch;
    if (s == 0) {
      sketchsgd::splitmix64 rng(sketchsgd::mix64(c.seed ^ ((epoch + 1) << 16U) ^ static_cast<std::uint64_t>(rank)));
      for (std::size_t i = mine.size() - 1; i > 0; --i) std::swap(mine[i], mine[rng.next_below(i + 1)]);
    }
    for (std::size_t b = 0; b < c.batch; ++b) {
      const std::size_t example = mine[s * c.batch + b];
      std::copy_n(data.train.images.begin() + static_cast<std::ptrdiff_t>(example * 784), 784,
                  images.begin() + static_cast<std::ptrdiff_t>(b * 784));
      labels[b] = data.train.labels[example];
    }

    if (c.decay_at > 0 && step == decay_step) opt.set_learning_rate(c.lr * 0.1F);

    flat.zero_grad();
    const torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();  // accumulates into flat.gradients(): no copy
    if (!flat.aliased()) throw std::logic_error("a parameter or gradient no longer views the flat storage");
    loss_sum += loss.item<double>();
    ++loss_count;

    const auto& update = opt.step(flat.gradient_span());
    {
      const torch::NoGradGuard no_grad;
      update.apply(flat.parameter_span());  // in place: every parameter tensor sees it
    }
    ++step;
    const bool epoch_end = step % steps_per_epoch == 0;
    if (epoch_end || step == total_steps || (c.eval_every != 0 && step % c.eval_every == 0)) report(step);
  }
  return result;
}

void print_summary(const config& c, int world, const summary& s) {
  std::printf(
      "RESULT method=%s transport=%s workers=%d compression_target=%g accuracy=%.4f loss=%.4f bytes=%llu "
      "compression=%.2f seconds=%.1f steps=%llu seed=%llu\n",
      c.method.c_str(), c.transport.c_str(), world, c.compression, s.accuracy, s.loss,
      static_cast<unsigned long long>(s.bytes_sent), s.compression, s.seconds, static_cast<unsigned long long>(s.steps),
      static_cast<unsigned long long>(c.seed));
  std::fflush(stdout);
}

/// Refuses, before anything is allocated, a run that cannot work: a world
/// too large for the training set, a sketch or k the model cannot take, or
/// more memory than the machine has. `world` ranks in all, `here` of them in
/// this process.
void check_run(const config& c0, int world, int here, std::size_t train_examples) {
  cli::check_range<std::size_t>(
      "--batch", c0.batch, 1, train_examples / 2,
      "two workers need a batch each from the " + std::to_string(train_examples) + " training examples");
  const auto most = static_cast<int>(std::min<std::size_t>(train_examples / c0.batch, 65536));
  const std::string why = "each worker needs a batch of " + std::to_string(c0.batch) + " from the " +
                          std::to_string(train_examples) + " training examples";
  if (c0.transport == "inproc") {
    cli::check_range("--workers", world, 2, most, why);
  } else {
    cli::check_world(c0.transport, world, most, why);
    if (c0.given.has("--workers") && world != c0.workers) {
      throw cli::usage_error("--workers " + std::to_string(c0.workers) + ": the " + c0.transport + " world has " +
                             std::to_string(world) + " ranks (leave --workers out, or make them agree)");
    }
  }

  std::size_t d = 0;
  std::size_t dense = 0;
  {
    cnn model = make_model(c0);
    const sketchsgd_torch::flat_parameters flat(model->named_parameters(), {.max_small_numel = c0.dense_max});
    d = flat.size();
    dense = flat.dense_count();
  }
  config c = c0;
  fmnist::choose_budget(c, d, dense, world);
  if (!sketchsgd::is_dense_method(c.method)) {
    cli::check_range<std::size_t>("--k", c.k, 1, d - dense,
                                  "k of the " + std::to_string(d - dense) + " coordinates not sent dense");
  }

  // Per worker: flat parameters and gradients, the optimizer, data in flight
  // (up to a gradient), the shuffled example order, a batch and its
  // activations (forward, backward); rank 0 also evaluates batches of 1,000.
  const auto n = static_cast<double>(train_examples);
  const double activations =
      4.0 * (16 * 24 * 24 + 16 * 12 * 12 + 32 * 8 * 8 + 32 * 4 * 4 + 10 + static_cast<double>(c.hidden));
  const double per_worker =
      4.0 * 3.0 * static_cast<double>(d) +
      cli::optimizer_bytes(static_cast<double>(d), static_cast<double>(c.rows), static_cast<double>(c.cols),
                           static_cast<double>(c.k), static_cast<double>(c.candidates)) +
      8.0 * (n + n / world) + static_cast<double>(c.batch) * (4.0 * 785 + 3.0 * activations);
  const double bytes = per_worker * here + 1000.0 * activations;
  cli::check_memory(bytes,
                    std::to_string(here) + (c.transport == "inproc" ? " in-process workers" : " rank") + " of " +
                        cli::bytes_text(per_worker) + " each (d = " + std::to_string(d) + ", sketch " +
                        std::to_string(c.rows) + " x " + std::to_string(c.cols) + ", k = " + std::to_string(c.k) + ")",
                    "use fewer --workers or a smaller sketch (--rows, --cols, --compression) or --batch");
}

}  // namespace

int main(int argc, char** argv) try {
  const config c = parse(argc, argv);
  const fmnist::fashion_mnist data = fmnist::load_fashion_mnist(c.data);

  if (c.transport == "inproc") {
    check_run(c, c.workers, c.workers, data.train.size());
    std::vector<summary> results(static_cast<std::size_t>(c.workers));
    cli::run_inproc(c.workers, std::chrono::minutes(5),
                    [&](int r, auto& t) { results[static_cast<std::size_t>(r)] = train_rank(t, c, data); });
    print_summary(c, c.workers, results[0]);
    return 0;
  }
#if defined(TORCH_FMNIST_HAVE_MPI)
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  try {
    check_run(c, size, 1, data.train.size());
  } catch (...) {
    MPI_Finalize();
    throw;
  }
  {
    sketchsgd::mpi_transport t(MPI_COMM_WORLD, {.timeout = std::chrono::minutes(5)});
    const summary s = train_rank(t, c, data);
    if (t.rank() == 0) print_summary(c, static_cast<int>(t.size()), s);
  }
  MPI_Finalize();
  return 0;
#else
  throw std::invalid_argument("this program was built without MPI (sketchsgd::mpi)");
#endif
} catch (const cli::usage_error& e) {
  std::fprintf(stderr, "torch_fashion_mnist: %s\n", e.what());
  return cli::usage_exit_code;
} catch (const std::exception& e) {
  std::fprintf(stderr, "torch_fashion_mnist: %s\n", e.what());
  return 1;
}
