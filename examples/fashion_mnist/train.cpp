// SPDX-License-Identifier: Apache-2.0
// Distributed training of an MLP (784-256-128-10) on Fashion-MNIST with any
// of sketchsgd's optimizers, over in-process threads, TCP or MPI. W workers,
// each with a disjoint shard of the training set; the same seeds for every
// method. Rank 0 prints a line per epoch and writes a CSV of every evaluation.
//
//   fashion_mnist --method sketched --compression 10                  (4 in-process workers)
//   scripts/tcp_launch.sh -n 4 -- fashion_mnist --transport tcp ...
//   mpirun -np 4 fashion_mnist --transport mpi ...
//
// Run with --help for every flag.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <sketchsgd/sketchsgd.hpp>

#include "byte_budget.hpp"
#include "cli.hpp"
#include "idx.hpp"
#include "mlp.hpp"
#include "ranks.hpp"
#if defined(FMNIST_HAVE_MPI)
#include <mpi.h>

#include <sketchsgd/transport/mpi.hpp>
#endif
#if defined(FMNIST_HAVE_TCP)
#include <sketchsgd/transport/tcp.hpp>
#endif

namespace {

// ---- configuration ---------------------------------------------------------------

struct config {
  std::string method = "sketched";  // one of sketchsgd::method_names
  std::string transport = "inproc";
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string csv;
  std::string topology = "allreduce";
  std::string update = "sgd";  // sgd|adam|adam-lazy: the update rule on the aggregated gradient
  bool mask = true;            // momentum masking where the update was applied
  int workers = 4;
  std::size_t epochs = 3;
  std::size_t batch = 32;        // per worker
  std::size_t global_batch = 0;  // if given: batch = global_batch / W, whatever W is
  int budget_workers = 0;        // if given: --compression sizes the sketch and k for this W
  float lr = 0.1F;
  float momentum = 0.5F;
  std::uint64_t seed = 1;
  double compression = 0;  // 0: take rows/cols/k as given
  std::uint64_t rows = 1;
  std::size_t slices = 1;
  std::string gradient = "float32";  // or bfloat16, float16: the gradient rounded, as a 16-bit model's
  std::uint64_t cols = 0;
  std::size_t k = 0;
  std::size_t candidates = 4;  // P (global-sketch: 0 unless --P is given)
  bool candidates_given = false;
  double cols_per_k = 19;      // c / k per row under --compression
  std::size_t eval_every = 0;  // steps between evaluations; 0: once per epoch
  std::size_t max_steps = 0;   // stop after this many steps (0: no limit), for smoke tests
  bool quiet = false;
  bool native = false;  // MPI's native allreduce instead of the portable algorithms
  cli::given_options given;
};

const char* usage =
    "fashion_mnist [options]\n"
    "  --method dense|dense-bf16|dense-fp16|true-topk|local-topk|gtopk|sketched|fetchsgd|global-sketch\n"
    "                                      (sketched; dense-bf16/fp16: the sum in 16 bits on the wire)\n"
    "  --transport inproc|tcp|tcp-elastic|mpi   inproc runs --workers threads (inproc); tcp-elastic: this\n"
    "                                 process is a worker of an elastic job (SKETCHSGD_RENDEZVOUS=host:port of\n"
    "                                 a sketchsgd_rendezvous, and its secret): it re-forms when a worker dies\n"
    "                                 or one joins, and the run lasts the steps of --epochs at --workers\n"
    "  --workers W                    in-process workers, at least 2 (4); tcp/mpi take the launcher's\n"
    "                                 world (--workers, if given, must match it)\n"
    "  --compression X                choose cols and k for about X times fewer bytes than dense, X >= 1\n"
    "  --rows R --cols C --k K --P P  sketch and selection (rows 1, P 4); without --compression, cols and\n"
    "                                 k are as given (19000 and 1000 if not)\n"
    "  --cols-per-k Q                 columns per selected coordinate under --compression (19)\n"
    "  --budget-workers W0            under --compression, size the sketch and k for a world of W0 and keep\n"
    "                                 those sizes whatever the world is (scaling studies)\n"
    "  --topology allreduce|root      Sketched-SGD / FetchSGD / global-sketch aggregation (allreduce)\n"
    "  --slices S                     sketch methods: one sketch per slice of the parameters,\n"
    "                                 each allreduced while the next is sketched (1)\n"
    "  --gradient float32|bfloat16|float16   hand the optimizer each gradient rounded to 16 bits, as a\n"
    "                                 16-bit model would (read in place, no float32 copy) (float32)\n"
    "  --update sgd|adam|adam-lazy    the rule applied to the aggregated gradient (sgd: momentum SGD as the\n"
    "                                 paper's method has it; adam: Adam with dense moments, adam-lazy: with\n"
    "                                 moments only where the update is; no local momentum with either Adam)\n"
    "  --no-mask                      keep the momentum running where the update was applied (error feedback)\n"
    "  --epochs E --batch B --lr LR --momentum M --seed S   (3, 32 per worker, 0.1, 0.5, 1)\n"
    "  --global-batch G               G examples per step in all: each worker takes G / W (W must divide G)\n"
    "  --eval-every N                 evaluate every N steps as well as after each epoch\n"
    "  --max-steps N                  stop after N steps (smoke tests)\n"
    "  --data DIR                     the gzipped IDX files (/usr/share/datasets/fashion-mnist)\n"
    "  --csv FILE                     append every evaluation as CSV\n"
    "  --native-collectives           use MPI's own allreduce (different summation order: other bits)\n"
    "  --quiet                        only the final summary line\n"
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
    if (arg == "--native-collectives") {
      c.native = true;
      continue;
    }
    if (arg == "--no-mask") {
      c.mask = false;
      continue;
    }
    const std::string_view v = cli::value(argc, argv, i);
    if (arg == "--method")
      c.method = cli::choice(arg, v, sketchsgd::method_names);
    else if (arg == "--transport")
      c.transport = cli::choice(arg, v, {"inproc", "tcp", "tcp-elastic", "mpi"});
    else if (arg == "--workers")
      c.workers = cli::integer(arg, v, 2, 65536, "a world of one worker communicates nothing");
    else if (arg == "--compression")
      c.compression = cli::real(arg, v, 1, 10000, false, false, "X times fewer bytes than dense");
    else if (arg == "--rows")
      c.rows = cli::integer<std::uint64_t>(arg, v, 1, sketchsgd::sketch_config::max_rows);
    else if (arg == "--gradient")
      c.gradient = cli::choice(arg, v, {"float32", "bfloat16", "float16"});
    else if (arg == "--slices")
      c.slices = cli::integer<std::size_t>(arg, v, 1, 1024, "sketches, one per slice of the parameters");
    else if (arg == "--cols")
      c.cols = cli::integer<std::uint64_t>(arg, v, 1, sketchsgd::multiply_shift::max_cols);
    else if (arg == "--k")
      c.k = cli::integer<std::size_t>(arg, v, 1, index_max);
    else if (arg == "--P")
      c.candidates = cli::integer<std::size_t>(arg, v, 0, 1000), c.candidates_given = true;
    else if (arg == "--topology")
      c.topology = cli::choice(arg, v, {"allreduce", "root"});
    else if (arg == "--update")
      c.update = cli::choice(arg, v, {"sgd", "adam", "adam-lazy"});
    else if (arg == "--epochs")
      c.epochs = cli::integer<std::size_t>(arg, v, 1, 1000);
    else if (arg == "--batch")
      c.batch = cli::integer<std::size_t>(arg, v, 1, 65536);
    else if (arg == "--global-batch")
      c.global_batch = cli::integer<std::size_t>(arg, v, 2, 1 << 22, "examples per step over all workers");
    else if (arg == "--budget-workers")
      c.budget_workers = cli::integer(arg, v, 2, 65536, "the world --compression sizes for");
    else if (arg == "--lr")
      c.lr = static_cast<float>(cli::real(arg, v, 0, 10, true));
    else if (arg == "--momentum")
      c.momentum = static_cast<float>(cli::real(arg, v, 0, 1, false, true));
    else if (arg == "--seed")
      c.seed = cli::integer<std::uint64_t>(arg, v, 0, u64_max);
    else if (arg == "--eval-every")
      c.eval_every = cli::integer<std::size_t>(arg, v, 0, steps_max, "0: once per epoch");
    else if (arg == "--max-steps")
      c.max_steps = cli::integer<std::size_t>(arg, v, 0, steps_max, "0: no limit");
    else if (arg == "--cols-per-k")
      c.cols_per_k = cli::real(arg, v, 1, 1000);
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
    g.refuse({"--compression", "--rows", "--cols", "--k", "--P", "--cols-per-k", "--topology"},
             "to --method " + c.method + " (it sends the whole gradient)");
  }
  if (!sketchsgd::is_sketch_method(c.method)) {
    const std::string no_sketch = "to --method " + c.method + " (no sketch)";
    g.refuse({"--cols", "--topology", "--slices"}, no_sketch);
    // True top-k under --compression takes Sketched-SGD's k, which --rows and --P shape.
    if (c.method != "true-topk" || !g.has("--compression")) g.refuse({"--rows", "--P"}, no_sketch);
  }
  if (c.method == "fetchsgd") g.refuse({"--P"}, "to --method fetchsgd (it has no second round)");
  if (g.has("--compression")) {
    g.refuse({"--cols", "--k"}, "with --compression, which chooses cols and k (give one or the other)");
  } else {
    g.refuse({"--cols-per-k", "--budget-workers"}, "without --compression");
  }
  if (g.has("--global-batch")) g.refuse({"--batch"}, "with --global-batch, which sets the batch of each worker");
  if (c.transport == "tcp-elastic") {
    g.refuse({"--global-batch", "--csv"},
             "to --transport tcp-elastic (each worker keeps its batch; the summary line reports)");
  }
  if (c.transport == "tcp-elastic" && std::getenv("SKETCHSGD_RENDEZVOUS") == nullptr) {
    throw cli::usage_error(
        "--transport tcp-elastic: SKETCHSGD_RENDEZVOUS is not set; start a sketchsgd_rendezvous and give the workers "
        "its host:port (examples/fashion_mnist/elastic.sh)");
  }
  if (c.transport != "mpi") g.refuse({"--native-collectives"}, "to --transport " + c.transport + " (MPI only)");
  if (sketchsgd::is_dense_method(c.method)) g.refuse({"--no-mask"}, "to --method " + c.method + " (no error feedback)");
  if (c.update != "sgd")
    g.refuse({"--momentum", "--no-mask"}, "with --update " + c.update + " (Adam keeps its own moments)");
#if !defined(FMNIST_HAVE_TCP)
  if (c.transport == "tcp" || c.transport == "tcp-elastic") {
    throw cli::usage_error("--transport " + c.transport + ": not built into this program (no sketchsgd::tcp)");
  }
#endif
#if !defined(FMNIST_HAVE_MPI)
  if (c.transport == "mpi") throw cli::usage_error("--transport mpi: not built into this program (no sketchsgd::mpi)");
#endif
  if (!c.csv.empty()) cli::check_writable("--csv", c.csv);
  if (c.method == "global-sketch" && !c.candidates_given) c.candidates = 0;
  return c;
}

/// What depends on the world's size, once it is known: with --global-batch,
/// each worker's batch.
void size_for_world(config& c, int world) {
  if (c.global_batch == 0) return;
  if (c.global_batch % static_cast<std::size_t>(world) != 0) {
    throw cli::usage_error("--global-batch " + std::to_string(c.global_batch) + ": not a multiple of the " +
                           std::to_string(world) + " workers (each takes an equal share)");
  }
  c.batch = c.global_batch / static_cast<std::size_t>(world);
}

/// The model's biases, which every sparse method sends dense: their ranges
/// and how many coordinates they hold.
std::pair<std::vector<sketchsgd::dense_range>, std::size_t> dense_biases(const fmnist::mlp& model) {
  std::pair<std::vector<sketchsgd::dense_range>, std::size_t> out;
  for (const auto& [offset, length] : model.bias_ranges()) {
    out.first.push_back({offset, length});
    out.second += length;
  }
  return out;
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

  const fmnist::mlp model({784, 256, 128, 10});
  const std::size_t d = model.parameter_count();
  const std::size_t dense = dense_biases(model).second;
  config c = c0;
  fmnist::choose_budget(c, d, dense, c.budget_workers != 0 ? c.budget_workers : world);
  if (!sketchsgd::is_dense_method(c.method)) {
    cli::check_range<std::size_t>("--k", c.k, 1, d - dense,
                                  "k of the " + std::to_string(d - dense) + " weights; the biases are sent dense");
  }

  // Per worker: parameters and gradient, the optimizer, data in flight
  // (up to a gradient), the shuffled example order, a batch; rank 0 also
  // evaluates the 10,000 test images.
  const auto n = static_cast<double>(train_examples);
  const double per_worker =
      4.0 * 3.0 * static_cast<double>(d) +
      cli::optimizer_bytes(static_cast<double>(d), static_cast<double>(c.rows), static_cast<double>(c.cols),
                           static_cast<double>(c.k), static_cast<double>(c.candidates)) +
      8.0 * (n + n / world) + 4.0 * 785.0 * static_cast<double>(c.batch);
  const double bytes = per_worker * here + 4.0 * 10000.0 * (256 + 128 + 10);
  cli::check_memory(bytes,
                    std::to_string(here) + (c.transport == "inproc" ? " in-process workers" : " rank") + " of " +
                        cli::bytes_text(per_worker) + " each (d = " + std::to_string(d) + ", sketch " +
                        std::to_string(c.rows) + " x " + std::to_string(c.cols) + ", k = " + std::to_string(c.k) + ")",
                    "use fewer --workers or a smaller sketch (--rows, --cols, --compression)");
}

// ---- training ----------------------------------------------------------------------

struct summary {
  double accuracy = 0;
  double loss = 0;
  std::uint64_t bytes_sent = 0;
  double compression = 0;
  double seconds = 0;
  std::uint64_t steps = 0;
  // the sizes this run used (--compression, --global-batch and the world choose them)
  int workers = 0;
  std::size_t batch = 0;
  std::size_t k = 0;
  std::uint64_t cols = 0;
};

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// A step on `grad` rounded to a 16-bit type (into `rounded`), as a 16-bit
/// model would hand it over.
template <class Optimizer, class Half>
const sketchsgd::model_update<float>& step_16_bit(Optimizer& opt, const std::vector<float>& grad,
                                                  std::vector<Half>& rounded) {
  rounded.resize(grad.size());
  for (std::size_t i = 0; i < grad.size(); ++i) rounded[i] = Half(grad[i]);
  return opt.step(std::span<const Half>(rounded));
}

/// The optimizer `c` asks for, on `comm`, for a model of `d` parameters
/// whose `biases` are sent dense (but with the dense methods).
template <class Transport>
sketchsgd::any_optimizer<float> make_trainer_optimizer(sketchsgd::communicator<Transport>& comm, const config& c,
                                                       std::size_t d,
                                                       const std::vector<sketchsgd::dense_range>& biases) {
  const bool adam = c.update != "sgd";  // no local momentum with Adam
  return sketchsgd::make_optimizer(
      comm, sketchsgd::method_options<float>{
                .method = c.method,
                .dimension = d,
                .k = c.k,
                .sketch = {.rows = c.rows, .cols = c.cols, .seed = c.seed * 7919 + 17},
                .candidates_factor = c.candidates,
                .learning_rate = c.lr,
                .momentum = adam ? 0.0F : c.momentum,
                .mask_momentum = c.mask,
                .average = true,
                .topology = c.topology == "root" ? sketchsgd::topology::root : sketchsgd::topology::allreduce,
                .dense = sketchsgd::is_dense_method(c.method) ? std::vector<sketchsgd::dense_range>{} : biases,
                .nonfinite = sketchsgd::nonfinite_policy::skip_step,
                .slices = c.slices,
                .update = !adam                ? sketchsgd::update_choice::sgd
                          : c.update == "adam" ? sketchsgd::update_choice::adam
                                               : sketchsgd::update_choice::adam_lazy});
}

/// A step on `grad`, handed over as `gradient` says (float32, or rounded
/// to bfloat16 or float16 into the buffer of that type).
template <class Optimizer>
const sketchsgd::model_update<float>& take_step(Optimizer& opt, const std::string& gradient,
                                                const std::vector<float>& grad,
                                                std::vector<sketchsgd::bfloat16_t>& bf16,
                                                std::vector<sketchsgd::float16_t>& fp16) {
  if (gradient == "bfloat16") return step_16_bit(opt, grad, bf16);
  if (gradient == "float16") return step_16_bit(opt, grad, fp16);
  return opt.step(grad);
}

/// Worker `rank`'s shard of `world`: a disjoint share of one seeded
/// shuffle of the training set.
std::vector<std::size_t> shard_of(std::size_t examples, std::uint64_t seed, int rank, int world) {
  const std::size_t shard = examples / static_cast<std::size_t>(world);
  std::vector<std::size_t> order(examples);
  std::iota(order.begin(), order.end(), std::size_t{0});
  sketchsgd::splitmix64 shuffle(seed);
  for (std::size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[shuffle.next_below(i + 1)]);
  return {order.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(rank) * shard),
          order.begin() + static_cast<std::ptrdiff_t>((static_cast<std::size_t>(rank) + 1) * shard)};
}

/// Batch `s` of the shuffled shard `mine` into `images` and `labels`.
void fill_batch(const fmnist::fashion_mnist& data, const std::vector<std::size_t>& mine, std::size_t s,
                std::size_t batch, std::vector<float>& images, std::vector<std::uint8_t>& labels) {
  for (std::size_t b = 0; b < batch; ++b) {
    const std::size_t example = mine[s * batch + b];
    std::copy_n(data.train.images.begin() + static_cast<std::ptrdiff_t>(example * 784), 784,
                images.begin() + static_cast<std::ptrdiff_t>(b * 784));
    labels[b] = data.train.labels[example];
  }
}

/// One worker's whole run. Every rank trains; rank 0 evaluates and reports.
template <class Transport>
summary train_rank(Transport& transport, const config& c0, const fmnist::fashion_mnist& data) {
  const int rank = static_cast<int>(transport.rank());
  const int world = static_cast<int>(transport.size());
  // The generic algorithms everywhere (MPI's native allreduce sums in its own
  // order), so a seeded run ends with the same bits over every transport.
  sketchsgd::communicator comm(transport, {.algorithm = c0.native ? sketchsgd::allreduce_algorithm::automatic
                                                                  : sketchsgd::allreduce_algorithm::portable});
  const fmnist::mlp model({784, 256, 128, 10});
  const std::size_t d = model.parameter_count();
  const auto biases_of_model = dense_biases(model);  // no structured binding: lambdas may capture these
  const std::vector<sketchsgd::dense_range>& biases = biases_of_model.first;
  const std::size_t dense = biases_of_model.second;
  config c = c0;
  fmnist::choose_budget(c, d, dense, c.budget_workers != 0 ? c.budget_workers : world);
  auto opt = make_trainer_optimizer(comm, c, d, biases);

  // A disjoint shard per worker, from one seeded shuffle of the training set.
  std::vector<std::size_t> mine = shard_of(data.train.size(), c.seed, rank, world);
  const std::size_t shard = mine.size();

  std::vector<float> params(d);
  model.init(params, c.seed);
  std::vector<float> grad(d);
  std::vector<sketchsgd::bfloat16_t> grad_bf16;  // the gradient rounded (--gradient)
  std::vector<sketchsgd::float16_t> grad_fp16;
  std::vector<float> images(c.batch * 784);
  std::vector<std::uint8_t> labels(c.batch);
  const std::size_t steps_per_epoch = shard / c.batch;
  std::ofstream csv;
  if (rank == 0 && !c.csv.empty()) {
    const bool fresh = !std::ifstream(c.csv).good();
    csv.open(c.csv, std::ios::app);
    if (fresh) {
      csv << "method,transport,workers,target_compression,rows,cols,k,P,epoch,step,train_loss,test_loss,"
             "test_accuracy,bytes_sent,achieved_compression,seconds,update,mask,seed\n";
    }
  }
  if (rank == 0 && !c.quiet) {
    std::printf("%s over %s, W = %d, d = %zu (%zu bias coordinates sent dense)", c.method.c_str(), c.transport.c_str(),
                world, d, dense);
    if (sketchsgd::is_sketch_method(c.method)) {
      std::printf(", sketch %llu x %llu", static_cast<unsigned long long>(c.rows),
                  static_cast<unsigned long long>(c.cols));
    }
    if (!sketchsgd::is_dense_method(c.method)) std::printf(", k = %zu", c.k);
    if (c.method == "sketched" || c.method == "global-sketch") std::printf(", P = %zu", c.candidates);
    if (c.global_batch != 0) std::printf(", batch %zu per worker", c.batch);
    std::printf("\n");
  }

  summary result;
  const auto t0 = std::chrono::steady_clock::now();
  double loss_sum = 0;
  std::size_t loss_count = 0;
  auto evaluate = [&](std::size_t epoch, std::uint64_t step) {
    if (rank != 0) return;
    const auto e = model.evaluate(params, data.test);
    const auto& st = opt.stats();
    result = {e.accuracy, e.loss, st.total.bytes_sent, st.compression(), since(t0), step, world, c.batch, c.k, c.cols};
    const double train_loss = loss_count == 0 ? 0.0 : loss_sum / static_cast<double>(loss_count);
    if (csv.is_open()) {
      csv << c.method << ',' << c.transport << ',' << world << ',' << c.compression << ',' << c.rows << ',' << c.cols
          << ',' << c.k << ',' << c.candidates << ',' << epoch << ',' << step << ',' << train_loss << ',' << e.loss
          << ',' << e.accuracy << ',' << st.total.bytes_sent << ',' << st.compression() << ',' << result.seconds << ','
          << c.update << ',' << (c.mask ? 1 : 0) << ',' << c.seed << '\n';
      csv.flush();
    }
    if (!c.quiet) {
      std::printf(
          "epoch %zu step %llu: train loss %.4f, test loss %.4f, test accuracy %.2f%%, %.1f MB sent, "
          "compression %.1fx, %.1f s\n",
          epoch, static_cast<unsigned long long>(step), train_loss, e.loss, 100 * e.accuracy,
          static_cast<double>(st.total.bytes_sent) / 1e6, st.compression(), result.seconds);
      std::fflush(stdout);
    }
  };

  std::uint64_t step = 0;
  for (std::size_t epoch = 1; epoch <= c.epochs && (c.max_steps == 0 || step < c.max_steps); ++epoch) {
    sketchsgd::splitmix64 rng(sketchsgd::mix64(c.seed ^ (epoch << 16U) ^ static_cast<std::uint64_t>(rank)));
    for (std::size_t i = mine.size() - 1; i > 0; --i) std::swap(mine[i], mine[rng.next_below(i + 1)]);
    loss_sum = 0;
    loss_count = 0;
    const std::size_t this_epoch =
        c.max_steps == 0 ? steps_per_epoch : std::min<std::size_t>(steps_per_epoch, c.max_steps - step);
    for (std::size_t s = 0; s < this_epoch; ++s) {
      fill_batch(data, mine, s, c.batch, images, labels);
      loss_sum += model.loss_and_gradient(params, images.data(), labels.data(), c.batch, grad);
      ++loss_count;
      take_step(opt, c.gradient, grad, grad_bf16, grad_fp16).apply(std::span<float>(params));
      ++step;
      if (c.eval_every != 0 && step % c.eval_every == 0 && s + 1 != this_epoch) evaluate(epoch, step);
    }
    evaluate(epoch, step);
  }
  return result;
}

void print_summary(const config& c, const summary& s) {
  std::printf(
      "RESULT method=%s transport=%s compression_target=%g accuracy=%.4f bytes=%llu compression=%.2f "
      "seconds=%.1f steps=%llu update=%s mask=%d seed=%llu workers=%d batch=%zu k=%zu cols=%llu\n",
      c.method.c_str(), c.transport.c_str(), c.compression, s.accuracy, static_cast<unsigned long long>(s.bytes_sent),
      s.compression, s.seconds, static_cast<unsigned long long>(s.steps), c.update.c_str(), c.mask ? 1 : 0,
      static_cast<unsigned long long>(c.seed), s.workers, s.batch, s.k, static_cast<unsigned long long>(s.cols));
}

#if defined(FMNIST_HAVE_TCP)
/// Seconds on the wall clock (for logs another process compares with).
double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// --transport tcp-elastic: this process is one worker of an elastic job
/// (sketchsgd/transport/tcp/elastic.hpp). It joins a generation of the world
/// through the rendezvous, trains, and when the world breaks (a worker died)
/// or grows (one waits to join: checked every 10 steps), joins the next
/// generation and resumes from the newest step every survivor committed:
/// the optimizer's memories re-divided (`resume_resized`), the parameters
/// from rank 0, a survivor. The run lasts the steps of --epochs epochs at
/// --workers, whatever the world becomes; the sketch and k stay those of
/// --workers. Whoever is rank 0 at the end evaluates and prints the summary
/// (its bytes: what it sent in every generation it was in).
int train_elastic(const config& c0, const fmnist::fashion_mnist& data) {
  sketchsgd::tcp_elastic_options eo;
  eo.transport.timeout = std::chrono::seconds(30);
  auto me = sketchsgd::tcp_elastic_member::from_environment(eo);
  const fmnist::mlp model({784, 256, 128, 10});
  const std::size_t d = model.parameter_count();
  const auto biases_of_model = dense_biases(model);  // no structured binding: lambdas may capture these
  const std::vector<sketchsgd::dense_range>& biases = biases_of_model.first;
  const std::size_t dense = biases_of_model.second;
  config c = c0;
  fmnist::choose_budget(c, d, dense, c.budget_workers != 0 ? c.budget_workers : c.workers);
  const std::size_t epoch_steps = data.train.size() / static_cast<std::size_t>(c.workers) / c.batch;
  const std::uint64_t total =
      c.max_steps != 0 ? std::min<std::uint64_t>(c.max_steps, c.epochs * epoch_steps) : c.epochs * epoch_steps;
  std::vector<float> params(d);
  model.init(params, c.seed);
  std::vector<float> grad(d);
  std::vector<sketchsgd::bfloat16_t> grad_bf16;
  std::vector<sketchsgd::float16_t> grad_fp16;
  std::vector<float> images(c.batch * 784);
  std::vector<std::uint8_t> labels(c.batch);
  std::uint64_t bytes = 0;         // sent by this rank in every generation, the steps taken again included
  std::uint64_t bytes_before = 0;  // in the generations before this one
  double dense_bytes = 0;          // what a dense ring allreduce would have sent for those steps
  int rank = 0;
  int world = 0;
  std::vector<std::size_t> shard;  // this rank's examples in this generation
  std::size_t per_epoch = 0;
  std::vector<std::size_t> mine;  // the current epoch's order of them
  std::size_t shuffled = 0;       // the epoch `mine` is for (0: none)
  const auto t0 = std::chrono::steady_clock::now();
  using comm_t = sketchsgd::communicator<sketchsgd::tcp_transport>;
  const auto make = [&](comm_t& comm) { return make_trainer_optimizer(comm, c, d, biases); };
  const auto reset = [&](comm_t&, auto&, const sketchsgd::elastic_generation& g) {
    std::fprintf(stderr, "elastic: generation %llu: rank %d of %d%s, wall %.3f\n",
                 static_cast<unsigned long long>(g.generation), g.rank, g.size, g.newcomer ? " (newcomer)" : "",
                 wall_seconds());
    if (g.resumed) {
      std::fprintf(stderr, "elastic: resumed at step %lld, W = %d from W = %d (%d ranks' memories), wall %.3f\n",
                   static_cast<long long>(g.step), g.size, g.resumed->old_world, g.resumed->contributors,
                   wall_seconds());
    }
    rank = g.rank;
    world = g.size;
    shard = shard_of(data.train.size(), c.seed, rank, world);
    per_epoch = shard.size() / c.batch;
    shuffled = 0;
    bytes_before = bytes;
  };
  const auto step = [&](comm_t&, auto& opt, std::int64_t s) {
    const auto at = static_cast<std::size_t>(s);
    const std::size_t epoch = at / per_epoch + 1;
    if (epoch != shuffled) {  // the epoch's order of this rank's shard: each epoch shuffles the last's, as train_rank
      mine = shard;
      for (std::size_t e = 1; e <= epoch; ++e) {
        sketchsgd::splitmix64 rng(sketchsgd::mix64(c.seed ^ (e << 16U) ^ static_cast<std::uint64_t>(rank)));
        for (std::size_t i = mine.size() - 1; i > 0; --i) std::swap(mine[i], mine[rng.next_below(i + 1)]);
      }
      shuffled = epoch;
    }
    fill_batch(data, mine, at % per_epoch, c.batch, images, labels);
    (void)model.loss_and_gradient(params, images.data(), labels.data(), c.batch, grad);
    take_step(opt, c.gradient, grad, grad_bf16, grad_fp16).apply(std::span<float>(params));
    bytes = bytes_before + opt.stats().total.bytes_sent;
    dense_bytes += opt.stats().dense_ring_bytes_per_step;
    const auto taken = static_cast<unsigned long long>(s + 1);
    if (rank == 0 && taken % 10 == 0)
      std::fprintf(stderr, "elastic: step %llu, W = %d\n", taken, world);  // elastic.sh waits on it
    if (rank == 0 && c.eval_every != 0 && taken % c.eval_every == 0 && !c.quiet) {
      const auto e = model.evaluate(params, data.test);
      std::printf("step %llu: W = %d, test accuracy %.2f%%, %.1f s\n", taken, world, 100 * e.accuracy, since(t0));
      std::fflush(stdout);
    }
  };
  sketchsgd::elastic_run_options o;
  o.agree_every = 10;
  o.allreduce = {.algorithm = sketchsgd::allreduce_algorithm::portable};
  o.log = [](const std::string& m) { std::fprintf(stderr, "elastic: %s\n", m.c_str()); };
  const sketchsgd::elastic_run_report r =
      sketchsgd::run_elastic(*me, std::span<float>(params), static_cast<std::int64_t>(total), make, step, reset, o);
  if (rank == 0) {
    const auto e = model.evaluate(params, data.test);
    print_summary(c, {e.accuracy, e.loss, bytes, bytes == 0 ? 0.0 : dense_bytes / static_cast<double>(bytes), since(t0),
                      static_cast<std::uint64_t>(r.steps), r.world, c.batch, c.k, c.cols});
  }
  return 0;
}
#endif

}  // namespace

int main(int argc, char** argv) try {
  config c = parse(argc, argv);
  const fmnist::fashion_mnist data = fmnist::load_fashion_mnist(c.data);

  if (c.transport == "inproc") {
    size_for_world(c, c.workers);
    check_run(c, c.workers, c.workers, data.train.size());
    std::vector<summary> results(static_cast<std::size_t>(c.workers));
    cli::run_inproc(c.workers, std::chrono::minutes(5),
                    [&](int r, auto& t) { results[static_cast<std::size_t>(r)] = train_rank(t, c, data); });
    print_summary(c, results[0]);
    return 0;
  }
#if defined(FMNIST_HAVE_TCP)
  if (c.transport == "tcp-elastic") {
    check_run(c, c.workers, 1, data.train.size());
    return train_elastic(c, data);
  }
  if (c.transport == "tcp") {
    sketchsgd::tcp_options options;
    options.timeout = std::chrono::minutes(5);
    cli::check_tcp_launched();
    auto t = sketchsgd::tcp_transport::from_environment(options);
    size_for_world(c, static_cast<int>(t->size()));
    check_run(c, static_cast<int>(t->size()), 1, data.train.size());
    const summary s = train_rank(*t, c, data);
    if (t->rank() == 0) print_summary(c, s);
    sketchsgd::communicator comm(*t);
    sketchsgd::barrier(comm);  // nobody leaves while another still expects data
    return 0;
  }
#endif
#if defined(FMNIST_HAVE_MPI)
  if (c.transport == "mpi") {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    try {
      size_for_world(c, size);
      check_run(c, size, 1, data.train.size());
    } catch (...) {
      MPI_Finalize();
      throw;
    }
    int rank = 0;
    {
      sketchsgd::mpi_transport t(MPI_COMM_WORLD, {.timeout = std::chrono::minutes(5)});
      rank = t.rank();
      const summary s = train_rank(t, c, data);
      if (rank == 0) print_summary(c, s);
    }
    MPI_Finalize();
    return 0;
  }
#endif
  throw std::invalid_argument("transport " + c.transport + " is not built into this program");
} catch (const cli::usage_error& e) {
  std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
  return cli::usage_exit_code;
} catch (const std::exception& e) {
  std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
  return 1;
}
