// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// A multilayer perceptron in plain C++: ReLU hidden layers, softmax
/// cross-entropy on the last. All parameters live in one flat float span so a
/// distributed optimizer can treat them as one vector; the `mlp` object only
/// holds the shape, so any number of threads may use it at once, each with its
/// own parameter and gradient buffers.

#include <sketchsgd/hash/seed_mixer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "idx.hpp"

namespace fmnist {

namespace detail {

/// `c[m][n] += sum_k a(m, k) * b[k][n]` for row-major `b` and `c`, with `a(m, k) = a[m * a_row + k * a_col]`, so
/// `a` may be a matrix or its transpose. Four rows of `c` are updated together from each row of `b` (one load of `b`
/// per four multiply-adds); the innermost loop runs along contiguous rows of `b` and `c`, which `__restrict` lets
/// the compiler vectorize without alias checks (about 3x the speed of a register-tiled kernel that g++ 12
/// vectorizes along `k` instead). Each element is summed over `k` in increasing order, so no reassociation
/// (no -ffast-math) is needed.
/// @pre `c` overlaps neither `a` nor `b`.
inline void gemm_accumulate(std::size_t rows, std::size_t cols, std::size_t depth, const float* a, std::size_t a_row,
                            std::size_t a_col, const float* b, std::size_t ldb, float* c, std::size_t ldc) noexcept {
  std::size_t m = 0;
  for (; m + 4 <= rows; m += 4) {
    float* __restrict c0 = c + m * ldc;
    float* __restrict c1 = c0 + ldc;
    float* __restrict c2 = c1 + ldc;
    float* __restrict c3 = c2 + ldc;
    for (std::size_t k = 0; k < depth; ++k) {
      const float* __restrict b_row = b + k * ldb;
      const float* a_k = a + m * a_row + k * a_col;
      const float a0 = a_k[0];
      const float a1 = a_k[a_row];
      const float a2 = a_k[2 * a_row];
      const float a3 = a_k[3 * a_row];
      for (std::size_t n = 0; n < cols; ++n) {
        const float bn = b_row[n];
        c0[n] += a0 * bn;
        c1[n] += a1 * bn;
        c2[n] += a2 * bn;
        c3[n] += a3 * bn;
      }
    }
  }
  for (; m < rows; ++m) {
    float* __restrict c_row = c + m * ldc;
    for (std::size_t k = 0; k < depth; ++k) {
      const float av = a[m * a_row + k * a_col];
      const float* __restrict b_row = b + k * ldb;
      for (std::size_t n = 0; n < cols; ++n) c_row[n] += av * b_row[n];
    }
  }
}

/// `out[c][r] = in[r][c]` for a `rows x cols` row-major `in`.
inline void transpose(const float* in, std::size_t rows, std::size_t cols, float* out) noexcept {
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < cols; ++c) out[c * rows + r] = in[r * cols + c];
  }
}

}  // namespace detail

/// Loss and accuracy of a parameter vector on a data set, from one forward pass.
struct evaluation {
  double loss = 0;      ///< mean softmax cross-entropy
  double accuracy = 0;  ///< fraction of examples whose largest logit is the label (ties to the lower class)
};

/// A fully connected network: `layer_sizes = {inputs, hidden..., classes}`, ReLU after every layer but the last,
/// softmax cross-entropy on the last.
///
/// Parameter layout, for each layer in order: weights (`out x in`, row-major), then bias (`out`).
///
/// Thread safety: every member function is const and keeps its scratch memory on the call's own stack/heap, so
/// threads may share one `mlp` as long as each writes its own `grad`.
class mlp {
 public:
  /// @throws std::invalid_argument for fewer than two sizes, a zero size, or a parameter count over 2^31.
  explicit mlp(std::vector<std::size_t> layer_sizes) : sizes_(std::move(layer_sizes)) {
    if (sizes_.size() < 2) {
      throw std::invalid_argument("fmnist::mlp: expected at least 2 layer sizes (inputs, classes), got " +
                                  std::to_string(sizes_.size()));
    }
    for (std::size_t l = 0; l < sizes_.size(); ++l) {
      if (sizes_[l] == 0 || sizes_[l] > max_width) {
        throw std::invalid_argument("fmnist::mlp: expected layer sizes in 1.." + std::to_string(max_width) + ", got " +
                                    std::to_string(sizes_[l]) + " at position " + std::to_string(l));
      }
    }
    std::size_t offset = 0;
    for (std::size_t l = 0; l + 1 < sizes_.size(); ++l) {
      weight_offsets_.push_back(offset);
      offset += sizes_[l + 1] * sizes_[l];
      bias_offsets_.push_back(offset);
      offset += sizes_[l + 1];
      if (offset > max_parameters) {
        throw std::invalid_argument("fmnist::mlp: expected at most " + std::to_string(max_parameters) +
                                    " parameters, the layer sizes need more");
      }
    }
    parameter_count_ = offset;
  }

  /// The sizes given to the constructor.
  [[nodiscard]] const std::vector<std::size_t>& layer_sizes() const noexcept { return sizes_; }
  /// The number of layers with parameters (`layer_sizes().size() - 1`).
  [[nodiscard]] std::size_t layers() const noexcept { return sizes_.size() - 1; }
  /// The number of classes (the last layer size).
  [[nodiscard]] std::size_t classes() const noexcept { return sizes_.back(); }
  /// The length of the flat parameter (and gradient) vector.
  [[nodiscard]] std::size_t parameter_count() const noexcept { return parameter_count_; }

  /// (offset, length) of each layer's bias vector in the flat layout, in layer order.
  [[nodiscard]] std::vector<std::pair<std::size_t, std::size_t>> bias_ranges() const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    for (std::size_t l = 0; l < layers(); ++l) out.emplace_back(bias_offsets_[l], sizes_[l + 1]);
    return out;
  }

  /// He-uniform weights (uniform on `±sqrt(6 / fan_in)`, He et al., ICCV 2015), zero biases. The random numbers
  /// come from splitmix64, one stream per layer, so the bytes depend only on `seed` and the shape, on every
  /// platform.
  /// @throws std::invalid_argument if `params.size() != parameter_count()`.
  void init(std::span<float> params, std::uint64_t seed) const {
    check_size("params", params.size());
    for (std::size_t l = 0; l < layers(); ++l) {
      sketchsgd::splitmix64 rng(sketchsgd::mix64(seed ^ sketchsgd::mix64(0xF1A5'7000'0000'0000ULL + l)));
      const double limit = std::sqrt(6.0 / static_cast<double>(sizes_[l]));
      const std::size_t weights = sizes_[l + 1] * sizes_[l];
      for (std::size_t i = 0; i < weights; ++i) {
        // 24 random bits give a uniform in [-1, 1) that every platform computes exactly.
        const double u = static_cast<double>(rng.next() >> 40U) * 0x1.0p-23 - 1.0;
        params[weight_offsets_[l] + i] = static_cast<float>(u * limit);
      }
      std::fill_n(params.begin() + static_cast<std::ptrdiff_t>(bias_offsets_[l]), sizes_[l + 1], 0.0F);
    }
  }

  /// Mean softmax cross-entropy over `batch` examples (`images`: `batch * layer_sizes()[0]` floats, one example
  /// after another; `labels`: `batch` classes). Writes d(mean loss)/d(params) into `grad`, overwriting it.
  /// Complexity: about 3 * batch * parameter_count() multiply-adds.
  /// @throws std::invalid_argument for a span of the wrong size, `batch == 0` or a label >= classes().
  float loss_and_gradient(std::span<const float> params, const float* images, const std::uint8_t* labels,
                          std::size_t batch, std::span<float> grad) const {
    check_size("params", params.size());
    check_size("grad", grad.size());
    check_batch(labels, batch);
    const std::size_t n_layers = layers();
    // Scratch: activations of every layer, feature-major (features x batch), then the backward buffers.
    std::vector<std::size_t> act_offsets(n_layers + 1);
    std::size_t total = 0;
    for (std::size_t l = 0; l <= n_layers; ++l) {
      act_offsets[l] = total;
      total += sizes_[l] * batch;
    }
    const std::size_t widest = *std::max_element(sizes_.begin(), sizes_.end());
    std::vector<float> scratch(total + 3 * widest * batch);
    float* const acts = scratch.data();
    float* delta = acts + total;                  // d(loss)/d(pre-activation) of the current layer
    float* delta_below = delta + widest * batch;  // the same for the layer below
    float* sample_major = delta_below + widest * batch;

    detail::transpose(images, batch, sizes_[0], acts);
    forward(params, acts, act_offsets, batch);

    // Softmax cross-entropy; delta = (softmax - onehot) / batch.
    const float* logits = acts + act_offsets[n_layers];
    const double loss = softmax_delta(logits, labels, batch, delta);

    for (std::size_t l = n_layers; l-- > 0;) {
      const std::size_t in = sizes_[l];
      const std::size_t out = sizes_[l + 1];
      const float* a = acts + act_offsets[l];
      float* dw = grad.data() + weight_offsets_[l];
      float* db = grad.data() + bias_offsets_[l];
      for (std::size_t o = 0; o < out; ++o) {
        float sum = 0;
        for (std::size_t s = 0; s < batch; ++s) sum += delta[o * batch + s];
        db[o] = sum;
      }
      // dW = delta (out x batch) * a^T (batch x in); a^T is the input itself for the first layer.
      const float* a_t = images;
      if (l > 0) {
        detail::transpose(a, in, batch, sample_major);
        a_t = sample_major;
      }
      std::fill_n(dw, out * in, 0.0F);
      detail::gemm_accumulate(out, in, batch, delta, batch, 1, a_t, in, dw, in);
      if (l == 0) break;
      // delta_below = (W^T (in x out) * delta) masked by ReLU' (a > 0 exactly where the pre-activation was > 0).
      std::fill_n(delta_below, in * batch, 0.0F);
      detail::gemm_accumulate(in, batch, out, params.data() + weight_offsets_[l], 1, in, delta, batch, delta_below,
                              batch);
      for (std::size_t i = 0; i < in * batch; ++i) {
        if (!(a[i] > 0.0F)) delta_below[i] = 0.0F;
      }
      std::swap(delta, delta_below);
    }
    return static_cast<float>(loss);
  }

  /// Mean loss and accuracy over `data`, from one forward pass in chunks.
  /// @throws std::invalid_argument if `params` has the wrong size or the images do not match `layer_sizes()[0]`.
  [[nodiscard]] evaluation evaluate(std::span<const float> params, const dataset& data) const {
    check_size("params", params.size());
    if (data.pixels_per_image != sizes_[0]) {
      throw std::invalid_argument("fmnist::mlp: expected images of " + std::to_string(sizes_[0]) + " pixels, got " +
                                  std::to_string(data.pixels_per_image));
    }
    if (data.images.size() != data.size() * data.pixels_per_image) {
      throw std::invalid_argument("fmnist::mlp: expected " + std::to_string(data.size() * data.pixels_per_image) +
                                  " pixels for " + std::to_string(data.size()) + " labels, got " +
                                  std::to_string(data.images.size()));
    }
    evaluation result;
    if (data.size() == 0) return result;
    constexpr std::size_t chunk = 256;
    const std::size_t n_layers = layers();
    std::vector<std::size_t> act_offsets(n_layers + 1);
    std::size_t total = 0;
    for (std::size_t l = 0; l <= n_layers; ++l) {
      act_offsets[l] = total;
      total += sizes_[l] * chunk;
    }
    std::vector<float> acts(total);
    std::size_t correct = 0;
    double loss_sum = 0;
    for (std::size_t first = 0; first < data.size(); first += chunk) {
      const std::size_t batch = std::min(chunk, data.size() - first);
      const std::uint8_t* labels = data.labels.data() + first;
      check_batch(labels, batch);
      // Offsets laid out for `chunk` columns still fit a smaller batch.
      detail::transpose(data.images.data() + first * sizes_[0], batch, sizes_[0], acts.data());
      forward(params, acts.data(), act_offsets, batch);
      const float* logits = acts.data() + act_offsets[n_layers];
      for (std::size_t s = 0; s < batch; ++s) {
        std::size_t best = 0;
        float max = logits[s];
        for (std::size_t o = 1; o < classes(); ++o) {
          if (logits[o * batch + s] > max) {
            max = logits[o * batch + s];
            best = o;
          }
        }
        double sum = 0;
        for (std::size_t o = 0; o < classes(); ++o) sum += std::exp(static_cast<double>(logits[o * batch + s] - max));
        loss_sum += static_cast<double>(max) + std::log(sum) - static_cast<double>(logits[labels[s] * batch + s]);
        correct += best == labels[s] ? 1U : 0U;
      }
    }
    result.loss = loss_sum / static_cast<double>(data.size());
    result.accuracy = static_cast<double>(correct) / static_cast<double>(data.size());
    return result;
  }

  /// Fraction of `data` classified correctly.
  [[nodiscard]] double accuracy(std::span<const float> params, const dataset& data) const {
    return evaluate(params, data).accuracy;
  }
  /// Mean softmax cross-entropy over `data`.
  [[nodiscard]] double mean_loss(std::span<const float> params, const dataset& data) const {
    return evaluate(params, data).loss;
  }

 private:
  static constexpr std::size_t max_width = std::size_t{1} << 20U;
  static constexpr std::size_t max_parameters = std::size_t{1} << 31U;

  void check_size(const char* what, std::size_t got) const {
    if (got != parameter_count_) {
      throw std::invalid_argument(std::string("fmnist::mlp: expected ") + what + " of " +
                                  std::to_string(parameter_count_) + " floats, got " + std::to_string(got));
    }
  }

  void check_batch(const std::uint8_t* labels, std::size_t batch) const {
    if (batch == 0) throw std::invalid_argument("fmnist::mlp: expected a batch of at least one example, got 0");
    for (std::size_t s = 0; s < batch; ++s) {
      if (labels[s] >= classes()) {
        throw std::invalid_argument("fmnist::mlp: expected labels below " + std::to_string(classes()) + ", got " +
                                    std::to_string(labels[s]) + " at position " + std::to_string(s));
      }
    }
  }

  /// Fills layers 1.. of `acts` (feature-major, `batch` columns) from layer 0; ReLU on all but the last.
  void forward(std::span<const float> params, float* acts, const std::vector<std::size_t>& act_offsets,
               std::size_t batch) const {
    for (std::size_t l = 0; l < layers(); ++l) {
      const std::size_t in = sizes_[l];
      const std::size_t out = sizes_[l + 1];
      const float* bias = params.data() + bias_offsets_[l];
      float* z = acts + act_offsets[l + 1];
      for (std::size_t o = 0; o < out; ++o) std::fill_n(z + o * batch, batch, bias[o]);
      detail::gemm_accumulate(out, batch, in, params.data() + weight_offsets_[l], in, 1, acts + act_offsets[l], batch,
                              z, batch);
      if (l + 1 < layers()) {
        for (std::size_t i = 0; i < out * batch; ++i) z[i] = std::max(z[i], 0.0F);
      }
    }
  }

  /// Writes `(softmax - onehot) / batch` into `delta` (classes x batch) and returns the mean loss.
  double softmax_delta(const float* logits, const std::uint8_t* labels, std::size_t batch, float* delta) const {
    const std::size_t k = classes();
    const float scale = 1.0F / static_cast<float>(batch);
    double loss = 0;
    for (std::size_t s = 0; s < batch; ++s) {
      float max = -std::numeric_limits<float>::infinity();
      for (std::size_t o = 0; o < k; ++o) max = std::max(max, logits[o * batch + s]);
      float sum = 0;
      for (std::size_t o = 0; o < k; ++o) {
        const float e = std::exp(logits[o * batch + s] - max);
        delta[o * batch + s] = e;
        sum += e;
      }
      loss += static_cast<double>(max) + std::log(static_cast<double>(sum)) -
              static_cast<double>(logits[labels[s] * batch + s]);
      const float inv = scale / sum;
      for (std::size_t o = 0; o < k; ++o) delta[o * batch + s] *= inv;
      delta[labels[s] * batch + s] -= scale;
    }
    return loss / static_cast<double>(batch);
  }

  std::vector<std::size_t> sizes_;
  std::vector<std::size_t> weight_offsets_;
  std::vector<std::size_t> bias_offsets_;
  std::size_t parameter_count_ = 0;
};

}  // namespace fmnist
