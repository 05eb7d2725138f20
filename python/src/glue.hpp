// SPDX-License-Identifier: Apache-2.0
#pragma once

// The Python extension's shared parts: the options every aggregator takes
// (parsed once from a dict), the dispatch from a method name to its
// aggregation policy, and array helpers that view C++ memory without copies.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <sketchsgd/optim/aggregate/dense.hpp>
#include <sketchsgd/optim/aggregate/fetch.hpp>
#include <sketchsgd/optim/aggregate/sketched.hpp>
#include <sketchsgd/optim/aggregate/topk.hpp>
#include <sketchsgd/optim/driver.hpp>
#include <sketchsgd/optim/update_rules.hpp>

namespace sketchsgd::python {

namespace py = pybind11;

/// A C-contiguous float32 NumPy array.
using f32_array = py::array_t<float, py::array::c_style>;

/// `x` as a float32 array sharing its memory: a C-contiguous float32 NumPy
/// array as it is, a CPU torch.Tensor through `.detach().numpy()`. Nothing
/// is ever copied behind the caller's back.
/// @throws py::type_error naming `what` for anything that would need a copy.
f32_array f32_view(const py::handle& x, const char* what);

/// What every aggregator is built from (the dict `sketchsgd.Aggregator` takes).
struct aggregator_options {
  std::string method;
  std::uint64_t dimension = 0;
  std::uint64_t rows = 1;
  std::uint64_t cols = 0;
  std::uint64_t seed = 0;
  std::size_t k = 0;
  std::size_t candidates_factor = 0;
  float momentum = 0.0F;
  bool nesterov = false;
  bool error_feedback = true;
  bool mask_momentum = true;
  std::vector<dense_range> dense;
  sketchsgd::topology topology = sketchsgd::topology::allreduce;
  int root = 0;
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;
  bool average = true;
  unsigned threads = 1;
};

/// Reads the options from a dict; unknown keys are refused by name.
aggregator_options parse_options(const py::dict& d);

/// The method names, for messages.
inline constexpr const char* method_names = "sketched, global-sketch, fetchsgd, local-topk, true-topk, gtopk, dense";

/// Calls `f(std::type_identity<Aggregation>{})` for the method's aggregation.
template <class F>
decltype(auto) with_aggregation(const std::string& method, F&& f) {
  if (method == "sketched") return f(std::type_identity<sketched_aggregation<float>>{});
  if (method == "global-sketch") return f(std::type_identity<global_sketch_aggregation<float>>{});
  if (method == "fetchsgd") return f(std::type_identity<fetch_aggregation<float>>{});
  if (method == "local-topk") return f(std::type_identity<local_topk_aggregation<float>>{});
  if (method == "true-topk") return f(std::type_identity<true_topk_aggregation<float>>{});
  if (method == "gtopk") return f(std::type_identity<gtopk_aggregation<float>>{});
  if (method == "dense") return f(std::type_identity<dense_aggregation<float>>{});
  throw std::invalid_argument("unknown method '" + method + "'; expected one of " + method_names);
}

/// The composed options of `Aggregation` with the aggregated gradient as the
/// update (the framework's optimizer applies the learning rate).
template <class Aggregation>
composed_options<Aggregation, aggregated_gradient<float>> composed(const aggregator_options& o) {
  composed_options<Aggregation, aggregated_gradient<float>> c;
  c.dimension = o.dimension;
  c.average = o.average;
  c.dense = o.dense;
  c.nonfinite = o.nonfinite;
  c.exec = cpu_execution{o.threads};
  auto& a = c.aggregation;  // each option where the aggregation has it
  if constexpr (requires { a.sketch; }) {
    a.sketch = {.rows = o.rows, .cols = o.cols, .seed = o.seed};
    a.topology = o.topology;
    a.root = o.root;
  }
  if constexpr (requires { a.k; }) a.k = o.k;
  if constexpr (requires { a.candidates_factor; }) a.candidates_factor = o.candidates_factor;
  if constexpr (requires { a.feedback; }) {
    a.feedback = {.enabled = o.error_feedback,
                  .momentum = o.momentum,
                  .nesterov = o.nesterov,
                  .mask_momentum = o.mask_momentum,
                  .learning_rate_in_error = false};
  }
  if constexpr (requires { a.mask_momentum; }) {  // FetchSGD: momentum in sketch space, eta outside it
    a.momentum = o.momentum;
    a.mask_momentum = o.mask_momentum;
    a.learning_rate_in_error = false;
  }
  return c;
}

/// A NumPy array viewing `n` values at `data`, kept alive by `owner`.
template <class T>
py::array view(T* data, std::size_t n, const py::object& owner, bool writable = true) {
  py::array_t<std::remove_const_t<T>> a({static_cast<py::ssize_t>(n)}, {static_cast<py::ssize_t>(sizeof(T))},
                                        const_cast<std::remove_const_t<T>*>(data), owner);
  if (!writable) a.attr("setflags")(py::arg("write") = false);
  return a;
}

/// A copy of `values` as a new NumPy array.
template <class T>
py::array_t<T> copy_of(std::span<const T> values) {
  py::array_t<T> a(static_cast<py::ssize_t>(values.size()));
  std::copy(values.begin(), values.end(), a.mutable_data());
  return a;
}

/// Writes `u` (sparse or dense; zeros when skipped) into `out` of d values.
void write_update(const model_update<float>& u, std::span<float> out);

/// Statistics as a dict.
py::dict stats_dict(const comm_stats& s);

void bind_sketch(py::module_& m);
void bind_aggregator(py::module_& m);
void bind_reference(py::module_& m);

}  // namespace sketchsgd::python
