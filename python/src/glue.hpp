// SPDX-License-Identifier: Apache-2.0
#pragma once

// The Python extension's shared parts: the options every aggregator takes
// (parsed once from a dict into the method registry's), and array helpers
// that view C++ memory without copies.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstddef>
#include <span>
#include <type_traits>

#include <sketchsgd/optim/methods.hpp>

namespace sketchsgd::python {

namespace py = pybind11;

/// A C-contiguous float32 NumPy array.
using f32_array = py::array_t<float, py::array::c_style>;

/// `x` as a float32 array sharing its memory: a C-contiguous float32 NumPy
/// array as it is, a CPU torch.Tensor through `.detach().numpy()`. Nothing
/// is ever copied behind the caller's back.
/// @throws py::type_error naming `what` for anything that would need a copy.
f32_array f32_view(const py::handle& x, const char* what);

/// A 1-d C-contiguous CPU array of gradient values as Python holds it,
/// viewed in place: float32 (NumPy or torch), float16 (NumPy or torch) or
/// bfloat16 (torch, which NumPy cannot hold).
struct gradient_values {
  void* data = nullptr;
  std::size_t size = 0;
  wire_format format = wire_format::native;
  py::object owner = py::none();  // keeps the memory alive

  /// f(std::span<T>) with T float, bfloat16_t or float16_t; its result.
  template <class F>
  decltype(auto) visit(F&& f) const {
    if (format == wire_format::bfloat16) return f(std::span<bfloat16_t>(static_cast<bfloat16_t*>(data), size));
    if (format == wire_format::float16) return f(std::span<float16_t>(static_cast<float16_t*>(data), size));
    return f(std::span<float>(static_cast<float*>(data), size));
  }
  /// "float32", "bfloat16" or "float16".
  [[nodiscard]] const char* dtype() const noexcept;
};

/// `x` viewed as gradient values (see `gradient_values`).
/// @throws py::type_error naming `what` for anything else: another dtype, a
/// tensor off the CPU, one not C-contiguous or not 1-d, or (`writable`) a
/// read-only array.
gradient_values gradient_view(const py::handle& x, const char* what, bool writable);

/// Reads a method's options (the dict `sketchsgd.Aggregator` takes) with the
/// aggregated gradient as the update; unknown keys are refused by name.
method_options<float> parse_options(const py::dict& d);

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

/// Writes `u` (sparse or dense; zeros when skipped) into `out` of d values,
/// rounded to nearest for 16-bit T.
template <class T>
void write_update(const model_update<float>& u, std::span<T> out);

/// Statistics as a dict.
py::dict stats_dict(const comm_stats& s);

void bind_sketch(py::module_& m);
void bind_aggregator(py::module_& m);
void bind_reference(py::module_& m);

}  // namespace sketchsgd::python
