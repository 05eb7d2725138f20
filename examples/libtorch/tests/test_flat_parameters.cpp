// SPDX-License-Identifier: Apache-2.0
// flat_parameters: the parameters and gradients of a LibTorch model really
// live in the two flat tensors, before and after backward() and an in-place
// optimizer update, and the dense ranges name the biases and small tensors.

// LibTorch first: it brings glog, whose one-argument CHECK would shadow Catch2's.
#include "flat_parameters.hpp"
#undef CHECK

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <sketchsgd/sketchsgd.hpp>

// glog's stl_logging.h streams any std::vector, so Catch2 would pick that for
// failure messages and fail to compile it for dense_range: say how instead.
template <>
struct Catch::StringMaker<std::vector<sketchsgd::dense_range>> {
  static std::string convert(const std::vector<sketchsgd::dense_range>& ranges) {
    std::string out = "{";
    for (const auto& r : ranges) out += " [" + std::to_string(r.offset) + ", +" + std::to_string(r.length) + ")";
    return out + " }";
  }
};

namespace {

using sketchsgd_torch::flat_parameters;

/// Whether `t` views `flat` at `offset` (same storage, contiguous).
bool views(const torch::Tensor& t, const torch::Tensor& flat, std::int64_t offset) {
  return t.is_contiguous() && t.storage().is_alias_of(flat.storage()) &&
         t.data_ptr<float>() == flat.data_ptr<float>() + offset;
}

/// A small model with a large tensor, a small one and biases.
struct net_impl : torch::nn::Module {
  net_impl()
      : conv(register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 2, 3)))),
        fc(register_module("fc", torch::nn::Linear(2 * 4 * 4, 40))),
        head(register_module("head", torch::nn::Linear(40, 3))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    return head->forward(torch::relu(fc->forward(torch::relu(conv->forward(x)).flatten(1))));
  }
  torch::nn::Conv2d conv;
  torch::nn::Linear fc;
  torch::nn::Linear head;
};
TORCH_MODULE_IMPL(net, net_impl);

std::vector<torch::Tensor> clones(const std::vector<torch::Tensor>& ts) {
  std::vector<torch::Tensor> out;
  for (const auto& t : ts) out.push_back(t.detach().clone());
  return out;
}

}  // namespace

TEST_CASE("flat_parameters: every tensor views the flat storage and keeps its values", "[flat]") {
  torch::manual_seed(3);
  std::vector<torch::Tensor> ts = {torch::randn({4, 5}).requires_grad_(), torch::randn({5}).requires_grad_(),
                                   torch::randn({40, 40}).requires_grad_(), torch::randn({2, 3, 3}).requires_grad_()};
  const auto before = clones(ts);
  const flat_parameters flat(ts, {.max_small_numel = 20});

  REQUIRE(flat.size() == 20 + 5 + 1600 + 18);
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    CHECK(flat.slots()[i].offset == offset);
    CHECK(views(ts[i], flat.values(), offset));
    CHECK(views(ts[i].grad(), flat.gradients(), offset));
    CHECK(torch::equal(ts[i], before[i]));  // values kept
    CHECK(torch::equal(flat.values().narrow(0, offset, ts[i].numel()), before[i].flatten()));
    CHECK(ts[i].requires_grad());
    CHECK(ts[i].is_leaf());
    offset += ts[i].numel();
  }
  CHECK(flat.aliased());
  CHECK(flat.gradients().abs().sum().item<float>() == 0.0F);
  // 4x5 (20 <= 20) and the 1-D bias are adjacent: one merged range; 40x40 is sparse; 2x3x3 is small.
  const std::vector<sketchsgd::dense_range> expected{{0, 25}, {1625, 18}};
  CHECK(flat.dense() == expected);
  CHECK(flat.dense_count() == 43);
}

TEST_CASE("flat_parameters: an optimizer's in-place update reaches every tensor", "[flat]") {
  torch::manual_seed(4);
  std::vector<torch::Tensor> ts = {torch::randn({30, 40}).requires_grad_(), torch::randn({40}).requires_grad_()};
  const flat_parameters flat(ts);
  const auto before = clones(ts);

  // A gradient written into the flat gradient storage is each tensor's .grad().
  {
    const torch::NoGradGuard no_grad;
    flat.gradients().copy_(torch::linspace(-1, 1, static_cast<std::int64_t>(flat.size())));
  }
  CHECK(torch::equal(ts[0].grad().flatten(), flat.gradients().narrow(0, 0, 1200)));

  // One dense-SGD step on a single in-process rank: params -= lr * grad, written through the span.
  sketchsgd::inproc_world world(1);
  auto transport = world.transport(0);
  sketchsgd::communicator comm(transport);
  sketchsgd::dense_sgd<float, sketchsgd::inproc_transport> opt(
      comm, {.dimension = flat.size(), .learning_rate = 0.5F, .momentum = 0.0F});
  const auto& update = opt.step(flat.gradient_span());
  {
    const torch::NoGradGuard no_grad;
    update.apply(flat.parameter_span());
  }
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const torch::Tensor expected = before[i] - 0.5F * ts[i].grad();
    CHECK(torch::allclose(ts[i], expected, 0.0, 1e-6));
  }
  CHECK(flat.aliased());

  // A sparse update from Sketched-SGD touches exactly its indices, seen through the tensors.
  const auto mid = clones(ts);
  sketchsgd::model_update<float> sparse;
  sparse.indices = {7, 1210};
  sparse.values = {1.0F, -2.0F};
  {
    const torch::NoGradGuard no_grad;
    sparse.apply(flat.parameter_span());
  }
  CHECK(ts[0].flatten()[7].item<float>() == mid[0].flatten()[7].item<float>() - 1.0F);
  CHECK(ts[1][10].item<float>() == mid[1][10].item<float>() + 2.0F);
  CHECK(torch::equal(ts[0].flatten().narrow(0, 8, 100), mid[0].flatten().narrow(0, 8, 100)));
}

TEST_CASE("flat_parameters: backward() accumulates into the flat gradient storage", "[flat]") {
  torch::manual_seed(5);
  net model;
  net reference;
  {
    const torch::NoGradGuard no_grad;
    auto src = model->parameters();
    auto dst = reference->parameters();
    for (std::size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  }
  const flat_parameters flat(model->named_parameters());
  const torch::Tensor x = torch::randn({8, 1, 6, 6});
  const torch::Tensor y = torch::randint(0, 3, {8}, torch::kInt64);

  flat.zero_grad();
  torch::nn::functional::cross_entropy(model->forward(x), y).backward();
  torch::nn::functional::cross_entropy(reference->forward(x), y).backward();
  REQUIRE(flat.aliased());
  const auto mine = model->named_parameters();
  const auto ref = reference->parameters();
  for (std::size_t i = 0; i < ref.size(); ++i) {
    INFO(mine[i].key());
    CHECK(views(mine[i].value().grad(), flat.gradients(), flat.slots()[i].offset));
    CHECK(torch::allclose(flat.gradients().narrow(0, flat.slots()[i].offset, ref[i].numel()), ref[i].grad().flatten(),
                          1e-5, 1e-7));
  }
  CHECK(flat.gradients().abs().sum().item<float>() > 0.0F);

  // A second backward adds to the same buffer.
  const torch::Tensor once = flat.gradients().clone();
  torch::nn::functional::cross_entropy(model->forward(x), y).backward();
  CHECK(flat.aliased());
  CHECK(torch::allclose(flat.gradients(), 2 * once, 1e-5, 1e-7));

  // Zeroing in place, ours or the module's (LibTorch 1.13: set_to_none = false), keeps the views.
  flat.zero_grad();
  CHECK(flat.gradients().abs().sum().item<float>() == 0.0F);
  torch::nn::functional::cross_entropy(model->forward(x), y).backward();
  model->zero_grad();
  CHECK(flat.aliased());
  CHECK(flat.gradients().abs().sum().item<float>() == 0.0F);

  // Dense: the biases, the 18-value conv filter; the 32x40 fc weight and 40x3 head weight are compressed.
  // Order: conv.weight (18), conv.bias (2), fc.weight (1280), fc.bias (40), head.weight (120), head.bias (3).
  const std::vector<sketchsgd::dense_range> expected{{0, 20}, {1300, 163}};
  CHECK(flat.dense() == expected);

  // Dropping the gradients breaks the aliasing, and aliased() says so.
  model->zero_grad(/*set_to_none=*/true);
  CHECK_FALSE(flat.aliased());
}

TEST_CASE("flat_parameters: dense policy knobs", "[flat]") {
  net model;
  const flat_parameters none(model->named_parameters(),
                             {.max_small_numel = 0, .one_dimensional = false, .biases_by_name = false});
  CHECK(none.dense().empty());
  net other;
  const flat_parameters by_name(other->named_parameters(), {.max_small_numel = 0, .one_dimensional = false});
  const std::vector<sketchsgd::dense_range> expected{{18, 2}, {1300, 40}, {1460, 3}};
  CHECK(by_name.dense() == expected);
}

TEST_CASE("flat_parameters: rejects what sketchsgd cannot take", "[flat]") {
  const torch::Tensor t = torch::zeros({3});
  CHECK_THROWS_AS(flat_parameters(std::vector<torch::Tensor>{t, t}), std::invalid_argument);
  CHECK_THROWS_AS(flat_parameters(std::vector<torch::Tensor>{torch::zeros({3}, torch::kFloat64)}),
                  std::invalid_argument);
  CHECK_THROWS_AS(flat_parameters(std::vector<torch::Tensor>{torch::Tensor()}), std::invalid_argument);
}

TEST_CASE("flat_parameters: training steps through sketched_sgd keep the views", "[flat]") {
  torch::manual_seed(6);
  net model;
  const flat_parameters flat(model->named_parameters());
  const torch::Tensor x = torch::randn({16, 1, 6, 6});
  const torch::Tensor y = torch::randint(0, 3, {16}, torch::kInt64);
  sketchsgd::inproc_world world(1);
  auto transport = world.transport(0);
  sketchsgd::communicator comm(transport);
  sketchsgd::sketched_sgd<float, sketchsgd::inproc_transport> opt(comm, {.dimension = flat.size(),
                                                                         .sketch = {.rows = 1, .cols = 2000, .seed = 1},
                                                                         .k = 100,
                                                                         .candidates_factor = 4,
                                                                         .learning_rate = 0.1F,
                                                                         .momentum = 0.5F,
                                                                         .dense = flat.dense()});
  double first = 0;
  double last = 0;
  for (int step = 0; step < 30; ++step) {
    flat.zero_grad();
    const torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    REQUIRE(flat.aliased());
    (step == 0 ? first : last) = loss.item<double>();
    const auto& update = opt.step(flat.gradient_span());
    const torch::NoGradGuard no_grad;
    update.apply(flat.parameter_span());
  }
  CHECK(flat.aliased());
  CHECK(last < first);  // the model the tensors hold is the model that was trained
}
