// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Puts the parameters of a LibTorch model into one flat float tensor and
/// their gradients into another, so that sketchsgd's optimizers see the model
/// as one `std::span` with no per-step copy.
///
/// Every parameter becomes a view into the flat parameter storage
/// (`Tensor::set_data` with a slice of it) and every `.grad()` a view into the
/// flat gradient storage. Autograd accumulates into a defined gradient in
/// place (`grad += new_grad`) when no graph of the backward pass is being
/// built, so after `loss.backward()` the flat gradient *is* the gradient. The
/// header also lists the coordinates that should skip compression (biases and
/// small tensors) as `sketchsgd::dense_range`s.
///
/// Needs LibTorch, which is why it lives with the example and not in the
/// header-only core.

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <sketchsgd/optim/step/coordinates.hpp>

namespace sketchsgd_torch {

/// Which tensors are sent dense (every coordinate, every step) instead of compressed.
struct dense_policy {
  /// Tensors with at most this many elements (first-layer filters, small heads) are dense; 0: none by size.
  std::int64_t max_small_numel = 1024;
  /// One-dimensional tensors (biases, normalization scales and shifts) are dense.
  bool one_dimensional = true;
  /// With named tensors: names ending in "bias" are dense whatever their shape.
  bool biases_by_name = true;
};

/// One tensor's place in the flat storage.
struct flat_slot {
  std::string name;         ///< the parameter's name ("" when built from unnamed tensors)
  std::int64_t offset = 0;  ///< first coordinate in the flat storage
  std::int64_t numel = 0;   ///< number of coordinates
  bool dense = false;       ///< whether `dense_policy` marked it dense
};

/// A model's parameters and gradients, each in one contiguous float tensor.
///
/// Construct it after the model (and after loading any checkpoint into it)
/// and before the first forward pass; the tensors keep their values, their
/// gradients start at zero. An optimizer writes the flat values through
/// `parameter_span()` under `torch::NoGradGuard`, between steps (no autograd
/// graph alive: raw writes do not bump LibTorch's version counters). Zero the
/// gradients with `zero_grad()` (or `Module::zero_grad()`, which zeroes in
/// place in LibTorch 1.13 by default); `set_to_none` would detach them from
/// the flat storage, which `aliased()` detects.
class flat_parameters {
 public:
  /// Flattens `tensors` in order; their names are empty, so only shape and size decide what is dense.
  /// @throws std::invalid_argument if a tensor is not a defined float32 CPU tensor or appears twice.
  explicit flat_parameters(const std::vector<torch::Tensor>& tensors, dense_policy policy = {}) {
    std::vector<std::pair<std::string, torch::Tensor>> named;
    named.reserve(tensors.size());
    for (const auto& t : tensors) named.emplace_back(std::string{}, t);
    build(named, policy);
  }

  /// Flattens a module's named parameters (`module->named_parameters()`), in their order.
  /// @throws std::invalid_argument as the other constructor.
  explicit flat_parameters(const torch::OrderedDict<std::string, torch::Tensor>& named_tensors,
                           dense_policy policy = {}) {
    std::vector<std::pair<std::string, torch::Tensor>> named;
    named.reserve(named_tensors.size());
    for (const auto& item : named_tensors) named.emplace_back(item.key(), item.value());
    build(named, policy);
  }

  /// Number of coordinates, d.
  [[nodiscard]] std::size_t size() const noexcept { return static_cast<std::size_t>(values_.numel()); }

  /// The flat parameters: a 1-D float tensor of d values whose storage every parameter views.
  [[nodiscard]] const torch::Tensor& values() const noexcept { return values_; }
  /// The flat gradients: a 1-D float tensor of d values whose storage every `.grad()` views.
  [[nodiscard]] const torch::Tensor& gradients() const noexcept { return gradients_; }

  /// The parameters as a span, for `model_update::apply` (write under `torch::NoGradGuard`).
  [[nodiscard]] std::span<float> parameter_span() const noexcept { return {values_.data_ptr<float>(), size()}; }
  /// The gradient as a span, for an optimizer's `step`.
  [[nodiscard]] std::span<const float> gradient_span() const noexcept { return {gradients_.data_ptr<float>(), size()}; }

  /// Where each tensor lives, in construction order.
  [[nodiscard]] const std::vector<flat_slot>& slots() const noexcept { return slots_; }
  /// The dense tensors' coordinates, adjacent tensors merged, increasing; pass as the optimizers' `dense`.
  [[nodiscard]] const std::vector<sketchsgd::dense_range>& dense() const noexcept { return dense_; }
  /// Number of dense coordinates.
  [[nodiscard]] std::size_t dense_count() const noexcept {
    std::size_t n = 0;
    for (const auto& r : dense_) n += static_cast<std::size_t>(r.length);
    return n;
  }

  /// Zeroes every gradient in one pass over the flat gradient storage.
  void zero_grad() const {
    torch::NoGradGuard no_grad;
    gradients_.zero_();
  }

  /// Whether every tensor and every gradient still views the flat storages at
  /// its own offset (false after, e.g., `zero_grad(true)` or an assignment to
  /// `.grad()`); a cheap check for every step.
  [[nodiscard]] bool aliased() const noexcept {
    const float* v = values_.data_ptr<float>();
    const float* g = gradients_.data_ptr<float>();
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const torch::Tensor& t = tensors_[i];
      const torch::Tensor& grad = t.grad();
      if (slots_[i].numel == 0) continue;  // an empty tensor has no address to compare
      if (!t.is_contiguous() || t.data_ptr<float>() != v + slots_[i].offset) return false;
      if (!grad.defined() || !grad.is_contiguous() || grad.data_ptr<float>() != g + slots_[i].offset) return false;
    }
    return true;
  }

 private:
  void build(const std::vector<std::pair<std::string, torch::Tensor>>& named, const dense_policy& policy) {
    std::int64_t total = 0;
    for (const auto& [name, t] : named) {
      if (!t.defined() || t.scalar_type() != torch::kFloat32 || !t.device().is_cpu()) {
        throw std::invalid_argument("flat_parameters: tensor '" + name +
                                    "' must be a defined float32 CPU tensor (sketchsgd works on float spans)");
      }
      for (const auto& seen : tensors_) {
        if (seen.is_same(t)) throw std::invalid_argument("flat_parameters: tensor '" + name + "' appears twice");
      }
      const bool bias_name = policy.biases_by_name && name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
      const bool dense = bias_name || (policy.one_dimensional && t.dim() <= 1) || t.numel() <= policy.max_small_numel;
      slots_.push_back({name, total, t.numel(), dense});
      tensors_.push_back(t);
      total += t.numel();
    }

    const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCPU);
    values_ = torch::empty({total}, options);
    gradients_ = torch::zeros({total}, options);
    torch::NoGradGuard no_grad;  // the views must carry no autograd history of the copies
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      torch::Tensor& t = tensors_[i];
      const auto& s = slots_[i];
      torch::Tensor value_view = values_.narrow(0, s.offset, s.numel).view(t.sizes());
      value_view.copy_(t);
      // set_data swaps the storage under the same TensorImpl: the module's
      // parameter object, its requires_grad and its grad accumulator stay.
      t.set_data(value_view);
      // A defined gradient is accumulated in place by autograd, so it stays this view.
      t.mutable_grad() = gradients_.narrow(0, s.offset, s.numel).view(t.sizes());
      if (s.dense) {
        const auto offset = static_cast<std::uint64_t>(s.offset);
        const auto length = static_cast<std::uint64_t>(s.numel);
        if (length == 0) continue;
        if (!dense_.empty() && dense_.back().offset + dense_.back().length == offset) {
          dense_.back().length += length;
        } else {
          dense_.push_back({offset, length});
        }
      }
    }
  }

  std::vector<torch::Tensor> tensors_;  // shallow handles to the caller's tensors
  std::vector<flat_slot> slots_;
  std::vector<sketchsgd::dense_range> dense_;
  torch::Tensor values_;
  torch::Tensor gradients_;
};

}  // namespace sketchsgd_torch
