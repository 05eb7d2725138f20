// SPDX-License-Identifier: Apache-2.0
// Tests of the Fashion-MNIST example's IDX reader and MLP. They use synthetic
// data only, except one test that checks the real files when they are installed.

#include <zlib.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "idx.hpp"
#include "mlp.hpp"

using Catch::Matchers::Contains;

namespace {

// ---- IDX helpers -------------------------------------------------------------

/// A fresh directory under the system temp dir, removed with its contents on destruction. The name mixes the clock
/// and a counter so parallel ctest processes never collide.
class temp_dir {
 public:
  temp_dir() {
    static std::atomic<std::uint64_t> counter{0};
    const auto ticks = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    const std::uint64_t id = sketchsgd::mix64(ticks ^ sketchsgd::mix64(counter++));
    path_ = std::filesystem::temp_directory_path() / ("fmnist_test_" + std::to_string(id));
    std::filesystem::create_directories(path_);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::vector<std::uint8_t> idx_bytes(std::uint32_t magic, const std::vector<std::uint32_t>& dims,
                                    const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> out;
  const auto put = [&](std::uint32_t v) {
    for (unsigned shift = 24;; shift -= 8) {
      out.push_back(static_cast<std::uint8_t>(v >> shift));
      if (shift == 0) break;
    }
  };
  put(magic);
  for (const auto d : dims) put(d);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

void write_gz(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  if (!bytes.empty()) REQUIRE(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) > 0);
  REQUIRE(gzclose(file) == Z_OK);
}

constexpr std::uint32_t images_magic = 0x00000803;
constexpr std::uint32_t labels_magic = 0x00000801;

// Three 2 x 3 images and their labels.
const std::vector<std::uint8_t> pixels{0, 255, 51, 1, 2, 3, 10, 20, 30, 40, 50, 60, 255, 254, 253, 128, 127, 0};
const std::vector<std::uint8_t> good_labels{0, 9, 4};

struct idx_pair {
  temp_dir dir;
  std::string images = dir.file("images.gz");
  std::string labels = dir.file("labels.gz");
  idx_pair(const std::vector<std::uint8_t>& image_file, const std::vector<std::uint8_t>& label_file) {
    write_gz(images, image_file);
    write_gz(labels, label_file);
  }
};

std::vector<std::uint8_t> good_images() { return idx_bytes(images_magic, {3, 2, 3}, pixels); }
std::vector<std::uint8_t> good_label_file() { return idx_bytes(labels_magic, {3}, good_labels); }

// ---- MLP helpers -------------------------------------------------------------

/// The mean softmax cross-entropy computed independently in double, one example at a time, with the layout
/// documented in mlp.hpp. Also reports which hidden units are active (pre-activation > 0), so a test can make sure
/// a finite difference never crosses a ReLU kink.
double reference_loss(const std::vector<std::size_t>& sizes, const std::vector<double>& params,
                      const std::vector<float>& images, const std::vector<std::uint8_t>& labels, std::size_t batch,
                      std::vector<bool>* active = nullptr) {
  double total = 0;
  if (active != nullptr) active->clear();
  for (std::size_t s = 0; s < batch; ++s) {
    std::vector<double> a(images.begin() + static_cast<std::ptrdiff_t>(s * sizes[0]),
                          images.begin() + static_cast<std::ptrdiff_t>((s + 1) * sizes[0]));
    std::size_t offset = 0;
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
      const std::size_t in = sizes[l];
      const std::size_t out = sizes[l + 1];
      std::vector<double> z(out);
      for (std::size_t o = 0; o < out; ++o) {
        double sum = params[offset + out * in + o];  // bias
        for (std::size_t i = 0; i < in; ++i) sum += params[offset + o * in + i] * a[i];
        z[o] = sum;
      }
      offset += out * in + out;
      if (l + 2 < sizes.size()) {
        for (auto& v : z) {
          if (active != nullptr) active->push_back(v > 0);
          v = std::max(v, 0.0);
        }
      }
      a = std::move(z);
    }
    const double max = *std::max_element(a.begin(), a.end());
    double sum = 0;
    for (const double v : a) sum += std::exp(v - max);
    total += max + std::log(sum) - a[labels[s]];
  }
  return total / static_cast<double>(batch);
}

struct problem {
  std::vector<std::size_t> sizes;
  std::size_t batch;
  std::vector<float> images;
  std::vector<std::uint8_t> labels;
  std::vector<float> params;
};

/// Random inputs in [-1, 1), random labels, He-initialized weights and random biases in [-0.5, 0.5) (init leaves
/// biases at zero, which would hide a bias-gradient bug in the forward pass).
problem make_problem(std::vector<std::size_t> sizes, std::size_t batch, std::uint64_t seed) {
  const fmnist::mlp model(sizes);
  problem p{std::move(sizes), batch, {}, {}, std::vector<float>(model.parameter_count())};
  sketchsgd::splitmix64 rng(seed);
  const auto uniform = [&] { return static_cast<float>(static_cast<double>(rng.next() >> 40U) * 0x1.0p-24); };
  for (std::size_t i = 0; i < batch * p.sizes[0]; ++i) p.images.push_back(2.0F * uniform() - 1.0F);
  for (std::size_t s = 0; s < batch; ++s) p.labels.push_back(static_cast<std::uint8_t>(rng.next_below(p.sizes.back())));
  model.init(p.params, seed);
  for (const auto& [offset, length] : model.bias_ranges()) {
    for (std::size_t i = 0; i < length; ++i) p.params[offset + i] = uniform() - 0.5F;
  }
  return p;
}

}  // namespace

// ---- IDX reader ----------------------------------------------------------------

TEST_CASE("load_idx_pair reads a small gzipped IDX pair", "[idx]") {
  const idx_pair files(good_images(), good_label_file());
  const fmnist::dataset data = fmnist::load_idx_pair(files.images, files.labels);
  REQUIRE(data.size() == 3);
  REQUIRE(data.pixels_per_image == 6);
  REQUIRE(data.labels == good_labels);
  REQUIRE(data.images.size() == pixels.size());
  for (std::size_t i = 0; i < pixels.size(); ++i) REQUIRE(data.images[i] == static_cast<float>(pixels[i]) / 255.0F);
  CHECK(data.images[0] == 0.0F);
  CHECK(data.images[1] == 1.0F);  // 255 maps to exactly 1
}

TEST_CASE("load_idx_pair rejects a bad magic number", "[idx]") {
  SECTION("images file") {
    const idx_pair files(idx_bytes(labels_magic, {3, 2, 3}, pixels), good_label_file());
    REQUIRE_THROWS_WITH(fmnist::load_idx_pair(files.images, files.labels),
                        Contains("bad magic number") && Contains("expected 0x00000803") &&
                            Contains("found 0x00000801") && Contains(files.images));
  }
  SECTION("labels file") {
    const idx_pair files(good_images(), idx_bytes(0x12345678, {3}, good_labels));
    REQUIRE_THROWS_WITH(fmnist::load_idx_pair(files.images, files.labels),
                        Contains("bad magic number") && Contains("expected 0x00000801") &&
                            Contains("found 0x12345678") && Contains(files.labels));
  }
}

TEST_CASE("load_idx_pair rejects truncated files", "[idx]") {
  SECTION("data shorter than the header says") {
    std::vector<std::uint8_t> short_pixels(pixels.begin(), pixels.end() - 4);
    const idx_pair files(idx_bytes(images_magic, {3, 2, 3}, short_pixels), good_label_file());
    REQUIRE_THROWS_WITH(
        fmnist::load_idx_pair(files.images, files.labels),
        Contains("truncated") && Contains("expected 18 data bytes") && Contains("found 14") && Contains(files.images));
  }
  SECTION("header cut inside the dimensions") {
    const idx_pair files(good_images(), std::vector<std::uint8_t>{0, 0, 8, 1, 0, 0});
    REQUIRE_THROWS_WITH(fmnist::load_idx_pair(files.images, files.labels),
                        Contains("truncated") && Contains("dimension") && Contains(files.labels));
  }
  SECTION("empty file") {
    const idx_pair files(std::vector<std::uint8_t>{}, good_label_file());
    REQUIRE_THROWS_WITH(fmnist::load_idx_pair(files.images, files.labels),
                        Contains("truncated") && Contains("magic") && Contains(files.images));
  }
  SECTION("gzip stream cut short") {
    // Incompressible bytes so the cut lands inside the deflate data, not just the gzip trailer.
    sketchsgd::splitmix64 rng(7);
    std::vector<std::uint8_t> noise(6000);
    for (auto& b : noise) b = static_cast<std::uint8_t>(rng.next() >> 56U);
    idx_pair files(idx_bytes(images_magic, {1000, 2, 3}, noise), idx_bytes(labels_magic, {1000}, {}));
    const auto full = std::filesystem::file_size(files.images);
    std::filesystem::resize_file(files.images, full / 2);
    REQUIRE_THROWS_WITH(fmnist::load_idx_pair(files.images, files.labels),
                        Contains("truncated") && Contains(files.images));
  }
}

TEST_CASE("load_idx_pair rejects trailing bytes", "[idx]") {
  std::vector<std::uint8_t> long_labels = good_label_file();
  long_labels.push_back(1);
  long_labels.push_back(2);
  const idx_pair files(good_images(), long_labels);
  REQUIRE_THROWS_WITH(
      fmnist::load_idx_pair(files.images, files.labels),
      Contains("2 trailing bytes") && Contains("expected exactly 3 data bytes") && Contains(files.labels));
}

TEST_CASE("load_idx_pair rejects a label of 10 or more", "[idx]") {
  const idx_pair files(good_images(), idx_bytes(labels_magic, {3}, {0, 10, 4}));
  REQUIRE_THROWS_WITH(
      fmnist::load_idx_pair(files.images, files.labels),
      Contains("bad label") && Contains("expected 0..9") && Contains("found 10 at index 1") && Contains(files.labels));
}

TEST_CASE("load_idx_pair rejects different image and label counts", "[idx]") {
  const idx_pair files(good_images(), idx_bytes(labels_magic, {2}, {0, 9}));
  REQUIRE_THROWS_WITH(fmnist::load_idx_pair(files.images, files.labels),
                      Contains("count mismatch") && Contains("3 images") && Contains("2 labels") &&
                          Contains(files.images) && Contains(files.labels));
}

TEST_CASE("load_idx_pair refuses a forged header before allocating", "[idx]") {
  SECTION("huge image count") {
    const idx_pair files(idx_bytes(images_magic, {0xFFFFFFFFU, 28, 28}, {}), good_label_file());
    REQUIRE_THROWS_WITH(fmnist::load_idx_pair(files.images, files.labels),
                        Contains("implausible shape") && Contains("4294967295 x 28 x 28") && Contains(files.images));
  }
  SECTION("huge side") {
    const idx_pair files(idx_bytes(images_magic, {3, 1, 100000}, {}), good_label_file());
    REQUIRE_THROWS_WITH(fmnist::load_idx_pair(files.images, files.labels), Contains("implausible shape"));
  }
  SECTION("too many pixels in all") {
    const idx_pair files(idx_bytes(images_magic, {1000000, 1000, 1000}, {}), good_label_file());
    REQUIRE_THROWS_WITH(fmnist::load_idx_pair(files.images, files.labels), Contains("implausible shape"));
  }
  SECTION("zero labels") {
    const idx_pair files(good_images(), idx_bytes(labels_magic, {0}, {}));
    REQUIRE_THROWS_WITH(fmnist::load_idx_pair(files.images, files.labels),
                        Contains("implausible shape") && Contains(files.labels));
  }
}

TEST_CASE("a missing file says how to get the data", "[idx]") {
  const temp_dir dir;
  const std::string missing = dir.file("no-such-images.gz");
  REQUIRE_THROWS_WITH(
      fmnist::load_idx_pair(missing, dir.file("no-such-labels.gz")),
      Contains(missing) && Contains("no such file") && Contains("dataset-fashion-mnist") && Contains("--data DIR"));
  REQUIRE_THROWS_WITH(fmnist::load_fashion_mnist(dir.file("nowhere")),
                      Contains("train-images-idx3-ubyte.gz") && Contains("dataset-fashion-mnist"));
}

TEST_CASE("the installed Fashion-MNIST files load, when present", "[idx][data]") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir + "/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; nothing checked");
    return;
  }
  const fmnist::fashion_mnist data = fmnist::load_fashion_mnist(dir);
  REQUIRE(data.train.size() == 60000);
  REQUIRE(data.test.size() == 10000);
  REQUIRE(data.train.pixels_per_image == 784);
  REQUIRE(data.train.images.size() == 60000 * 784);
  std::vector<std::size_t> per_class(10);
  for (const auto label : data.train.labels) ++per_class[label];
  for (const auto count : per_class) REQUIRE(count == 6000);  // Fashion-MNIST is balanced
}

// ---- MLP -----------------------------------------------------------------------

TEST_CASE("mlp layout: parameter_count and bias_ranges", "[mlp]") {
  const fmnist::mlp model({6, 5, 4, 3});
  // Layer 0: W 5x6 at 0, b 5 at 30; layer 1: W 4x5 at 35, b 4 at 55; layer 2: W 3x4 at 59, b 3 at 71.
  REQUIRE(model.parameter_count() == 74);
  using range = std::pair<std::size_t, std::size_t>;
  REQUIRE(model.bias_ranges() == std::vector<range>{{30, 5}, {55, 4}, {71, 3}});

  const fmnist::mlp fashion({784, 256, 128, 10});
  REQUIRE(fashion.parameter_count() == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
  REQUIRE(fashion.bias_ranges() ==
          std::vector<range>{{200704, 256}, {200960 + 32768, 128}, {200960 + 32896 + 1280, 10}});

  REQUIRE_THROWS_AS(fmnist::mlp({784}), std::invalid_argument);
  REQUIRE_THROWS_AS(fmnist::mlp({784, 0, 10}), std::invalid_argument);
}

TEST_CASE("mlp init is deterministic and He-uniform", "[mlp]") {
  const fmnist::mlp model({784, 256, 128, 10});
  std::vector<float> a(model.parameter_count(), -1.0F);
  std::vector<float> b(model.parameter_count(), 7.0F);
  model.init(a, 42);
  model.init(b, 42);
  REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);

  model.init(b, 43);
  REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0);

  // Pinned bits: the stream is splitmix64 and the arithmetic exact or correctly rounded, so every platform agrees.
  CHECK(a[0] == 0x1.1ee45ap-4F);
  CHECK(a[1] == -0x1.aeb0c8p-8F);
  CHECK(a[200960] == -0x1.cc8abp-4F);  // first weight of layer 1

  for (const auto& [offset, length] : model.bias_ranges()) {
    for (std::size_t i = 0; i < length; ++i) REQUIRE(a[offset + i] == 0.0F);
  }
  // Layer 0: U(-l, l) with l = sqrt(6 / 784) has variance l^2 / 3 = 2 / 784. With 200,704 samples the relative
  // standard error of the sample variance is sqrt(0.8 / n) = 0.2%, so 2% is about ten standard errors.
  const double limit = std::sqrt(6.0 / 784.0);
  double sum_sq = 0;
  for (std::size_t i = 0; i < 784 * 256; ++i) {
    REQUIRE(std::abs(static_cast<double>(a[i])) <= limit);
    sum_sq += static_cast<double>(a[i]) * static_cast<double>(a[i]);
  }
  CHECK(sum_sq / (784.0 * 256.0) == Approx(2.0 / 784.0).epsilon(0.02));
}

TEST_CASE("mlp gradient matches central differences of a double-precision reference", "[mlp]") {
  // The reference loss is computed independently in double and differenced with h = 1e-5: truncation error
  // h^2 |f'''| / 6 ~ 1e-11 and rounding error ~ 1e-16 / h = 1e-11, so the reference gradient is exact to ~1e-10.
  // The analytic gradient is computed in float: each entry is a short sum (fan-in <= 20, 3 layers, batch <= 19)
  // of products of values below ~3, so its rounding error is at most a few hundred ulps of 6e-8 relative to
  // |g| <= 0.5, i.e. ~1e-6 in the worst case (observed: 5e-8). Tolerance |g - g_ref| <= 2e-6 + 1e-4 |g_ref|; an
  // indexing, scaling or masking bug errs by O(|g_ref|) ~ 1e-2..1e-1, far above it.
  const auto [sizes, batch] = GENERATE(table<std::vector<std::size_t>, std::size_t>({
      {{6, 5, 4, 3}, 11},    // 4-row blocks plus a 1-row tail, short odd rows
      {{20, 17, 9, 4}, 19},  // several 4-row blocks, vector loops with remainders
      {{10, 3}, 5},          // one layer: softmax regression
  }));
  const problem p = make_problem(sizes, batch, 2024);
  const fmnist::mlp model(p.sizes);
  std::vector<float> grad(model.parameter_count(), NAN);
  const float loss = model.loss_and_gradient(p.params, p.images.data(), p.labels.data(), p.batch, grad);

  std::vector<double> params(p.params.begin(), p.params.end());
  std::vector<bool> active;
  const double ref = reference_loss(p.sizes, params, p.images, p.labels, p.batch, &active);
  CHECK(static_cast<double>(loss) == Approx(ref).epsilon(1e-5));

  constexpr double h = 1e-5;
  std::vector<bool> active_up;
  std::vector<bool> active_down;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const double saved = params[i];
    params[i] = saved + h;
    const double up = reference_loss(p.sizes, params, p.images, p.labels, p.batch, &active_up);
    params[i] = saved - h;
    const double down = reference_loss(p.sizes, params, p.images, p.labels, p.batch, &active_down);
    params[i] = saved;
    const double expected = (up - down) / (2 * h);
    // The loss is smooth between ReLU kinks only: both steps must keep every hidden unit on its side.
    REQUIRE(active_up == active);
    REQUIRE(active_down == active);
    INFO("parameter " << i << " of " << params.size() << ": analytic " << grad[i] << ", reference " << expected);
    REQUIRE(std::abs(static_cast<double>(grad[i]) - expected) <= 2e-6 + 1e-4 * std::abs(expected));
  }
}

TEST_CASE("mlp evaluate agrees with loss_and_gradient and counts argmax hits", "[mlp]") {
  const problem p = make_problem({6, 5, 4, 3}, 300, 5);  // more than one evaluation chunk of 256
  const fmnist::mlp model(p.sizes);
  fmnist::dataset data;
  data.images = p.images;
  data.labels = p.labels;
  data.pixels_per_image = 6;
  std::vector<float> grad(model.parameter_count());
  const float loss = model.loss_and_gradient(p.params, p.images.data(), p.labels.data(), p.batch, grad);
  CHECK(model.mean_loss(p.params, data) == Approx(static_cast<double>(loss)).epsilon(1e-5));
  const double acc = model.accuracy(p.params, data);
  CHECK(acc >= 0.0);
  CHECK(acc <= 1.0);
  CHECK(acc * 300.0 == Approx(std::round(acc * 300.0)).margin(1e-9));

  // Labels set to each example's argmax give accuracy 1; that argmax comes from the double reference.
  std::vector<double> params(p.params.begin(), p.params.end());
  fmnist::dataset relabeled = data;
  for (std::size_t s = 0; s < p.batch; ++s) {
    const std::vector<float> one(p.images.begin() + static_cast<std::ptrdiff_t>(s * 6),
                                 p.images.begin() + static_cast<std::ptrdiff_t>((s + 1) * 6));
    std::uint8_t best_class = 0;
    double best_nll = INFINITY;
    for (std::uint8_t c = 0; c < 3; ++c) {
      const double nll = reference_loss(p.sizes, params, one, {c}, 1);
      if (nll < best_nll) {
        best_nll = nll;
        best_class = c;
      }
    }
    relabeled.labels[s] = best_class;
  }
  CHECK(model.accuracy(p.params, relabeled) == 1.0);
}

TEST_CASE("mlp loss_and_gradient is safe to call from several threads at once", "[mlp]") {
  const problem p = make_problem({20, 17, 9, 4}, 64, 11);
  const fmnist::mlp model(p.sizes);
  std::vector<float> serial(model.parameter_count());
  const float serial_loss = model.loss_and_gradient(p.params, p.images.data(), p.labels.data(), p.batch, serial);

  constexpr std::size_t threads = 4;
  std::vector<std::vector<float>> grads(threads, std::vector<float>(model.parameter_count()));
  std::vector<float> losses(threads);
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int rep = 0; rep < 50; ++rep) {
        losses[t] = model.loss_and_gradient(p.params, p.images.data(), p.labels.data(), p.batch, grads[t]);
      }
    });
  }
  for (auto& th : pool) th.join();
  for (std::size_t t = 0; t < threads; ++t) {
    REQUIRE(losses[t] == serial_loss);
    REQUIRE(std::memcmp(grads[t].data(), serial.data(), serial.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("mlp rejects misuse before computing", "[mlp]") {
  const fmnist::mlp model({6, 5, 3});
  std::vector<float> params(model.parameter_count());
  std::vector<float> grad(model.parameter_count());
  std::vector<float> images(2 * 6, 0.5F);
  const std::vector<std::uint8_t> labels{0, 3};
  REQUIRE_THROWS_WITH(model.loss_and_gradient(params, images.data(), labels.data(), 2, grad),
                      Contains("labels below 3") && Contains("got 3"));
  REQUIRE_THROWS_WITH(model.loss_and_gradient(params, images.data(), labels.data(), 0, grad), Contains("at least one"));
  std::vector<float> short_grad(model.parameter_count() - 1);
  REQUIRE_THROWS_WITH(model.loss_and_gradient(params, images.data(), labels.data(), 1, short_grad),
                      Contains("grad") && Contains(std::to_string(model.parameter_count())));
}
