// SPDX-License-Identifier: Apache-2.0
// Sanity check of the data reader and the MLP without any distribution: plain
// single-threaded minibatch SGD with momentum on Fashion-MNIST, then the test
// accuracy. One epoch of 784-256-128-10 should reach about 84-87%.
//   fmnist_sanity [--data DIR] [--epochs N] [--seed S] [--lr 0.1] [--momentum 0.9]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"
#include "idx.hpp"
#include "mlp.hpp"

namespace {

struct options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::size_t epochs = 1;
  std::uint64_t seed = 1;
  float learning_rate = 0.1F;
  float momentum = 0.9F;
};

options parse(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const std::string_view value = cli::value(argc, argv, i);
    if (arg == "--data") {
      opt.data = value;
    } else if (arg == "--epochs") {
      opt.epochs = cli::integer<std::size_t>(arg, value, 1, 1000);
    } else if (arg == "--seed") {
      opt.seed = cli::integer<std::uint64_t>(arg, value, 0, std::numeric_limits<std::uint64_t>::max());
    } else if (arg == "--lr") {
      opt.learning_rate = static_cast<float>(cli::real(arg, value, 0, 10, true));
    } else if (arg == "--momentum") {
      opt.momentum = static_cast<float>(cli::real(arg, value, 0, 1, false, true));
    } else {
      throw cli::usage_error("unknown option " + arg +
                             " (expected --data DIR, --epochs N, --seed S, --lr LR, --momentum M)");
    }
  }
  return opt;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) try {
  const options opt = parse(argc, argv);
  constexpr std::size_t batch = 64;
  const float learning_rate = opt.learning_rate;
  const float momentum = opt.momentum;

  auto start = std::chrono::steady_clock::now();
  const fmnist::fashion_mnist data = fmnist::load_fashion_mnist(opt.data);
  std::printf("loaded %zu training and %zu test images in %.2f s\n", data.train.size(), data.test.size(),
              seconds_since(start));

  const fmnist::mlp model({data.train.pixels_per_image, 256, 128, 10});
  const std::size_t pixels = data.train.pixels_per_image;
  std::vector<float> params(model.parameter_count());
  std::vector<float> grad(params.size());
  std::vector<float> velocity(params.size(), 0.0F);
  model.init(params, opt.seed);

  std::vector<std::size_t> order(data.train.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::vector<float> images(batch * pixels);
  std::vector<std::uint8_t> labels(batch);
  sketchsgd::splitmix64 rng(opt.seed ^ 0x5A17'C0DEULL);

  for (std::size_t epoch = 0; epoch < opt.epochs; ++epoch) {
    start = std::chrono::steady_clock::now();
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.next_below(i)]);  // Fisher-Yates
    double loss_sum = 0;
    std::size_t steps = 0;
    for (std::size_t first = 0; first < order.size(); first += batch) {
      const std::size_t n = std::min(batch, order.size() - first);
      for (std::size_t s = 0; s < n; ++s) {
        const std::size_t example = order[first + s];
        std::copy_n(data.train.images.begin() + static_cast<std::ptrdiff_t>(example * pixels), pixels,
                    images.begin() + static_cast<std::ptrdiff_t>(s * pixels));
        labels[s] = data.train.labels[example];
      }
      loss_sum += model.loss_and_gradient(params, images.data(), labels.data(), n, grad);
      ++steps;
      // Heavy-ball momentum as in PyTorch: v = mu * v + g; p -= lr * v.
      for (std::size_t p = 0; p < params.size(); ++p) {
        velocity[p] = momentum * velocity[p] + grad[p];
        params[p] -= learning_rate * velocity[p];
      }
    }
    const double train_seconds = seconds_since(start);
    start = std::chrono::steady_clock::now();
    const fmnist::evaluation test = model.evaluate(params, data.test);
    std::printf(
        "epoch %zu: mean training loss %.4f, %.2f s training (%zu steps of %zu); test loss %.4f, test accuracy "
        "%.2f%% (%.2f s)\n",
        epoch + 1, loss_sum / static_cast<double>(steps), train_seconds, steps, batch, test.loss, 100.0 * test.accuracy,
        seconds_since(start));
  }
  return EXIT_SUCCESS;
} catch (const cli::usage_error& e) {
  static_cast<void>(std::fprintf(stderr, "fmnist_sanity: %s\n", e.what()));
  return cli::usage_exit_code;
} catch (const std::exception& e) {
  static_cast<void>(std::fprintf(stderr, "fmnist_sanity: %s\n", e.what()));
  return EXIT_FAILURE;
}
