// SPDX-License-Identifier: Apache-2.0
// sketchsgd._core.CountSketch (float32, multiply-shift hashes) and a dense
// top-k: thin bindings over count_sketch, top_k and the wire format. Inputs
// are float32 arrays or CPU tensors (accumulate: 16-bit too), used in place.

#include <cstring>

#include <sketchsgd/serialize/count_sketch_format.hpp>
#include <sketchsgd/sketch/count_sketch.hpp>
#include <sketchsgd/sketch/topk.hpp>

#include "glue.hpp"

namespace sketchsgd::python {

namespace {

using sketch_t = count_sketch<float>;

/// `x` as a 1-d float32 view (`keep` holds the array while the view is used).
std::span<const float> in(const py::handle& x, f32_array& keep, const char* what) {
  keep = f32_view(x, what);
  if (keep.ndim() != 1) {
    throw std::invalid_argument(std::string(what) + ": expected 1 dimension, got " + std::to_string(keep.ndim()));
  }
  return {keep.data(), static_cast<std::size_t>(keep.size())};
}

std::vector<std::uint64_t> indices_of(const py::array_t<std::int64_t, py::array::c_style>& a) {
  std::vector<std::uint64_t> out(static_cast<std::size_t>(a.size()));
  for (py::ssize_t i = 0; i < a.size(); ++i) {
    if (a.data()[i] < 0) throw std::invalid_argument("indices must be non-negative");
    out[static_cast<std::size_t>(i)] = static_cast<std::uint64_t>(a.data()[i]);
  }
  return out;
}

py::tuple as_tuple(const sparse_update<float>& u) {
  py::array_t<std::int64_t> idx(static_cast<py::ssize_t>(u.indices.size()));
  for (std::size_t j = 0; j < u.indices.size(); ++j) idx.mutable_data()[j] = static_cast<std::int64_t>(u.indices[j]);
  return py::make_tuple(idx, copy_of(std::span<const float>(u.values)));
}

}  // namespace

void bind_sketch(py::module_& m) {
  py::class_<sketch_t>(m, "CountSketch", R"doc(
A Count Sketch of float32 values (multiply-shift hashes): rows x cols cells.
Same (rows, cols, seed) on every rank gives the same hashes, so tables add up:
sketch(x) + sketch(y) == sketch(x + y).)doc")
      .def(py::init([](std::uint64_t rows, std::uint64_t cols, std::uint64_t seed) {
             return sketch_t(sketch_config{.rows = rows, .cols = cols, .seed = seed});
           }),
           py::arg("rows"), py::arg("cols"), py::arg("seed") = 0)
      .def_property_readonly("rows", &sketch_t::rows)
      .def_property_readonly("cols", &sketch_t::cols)
      .def_property_readonly("seed", [](const sketch_t& s) { return s.config().seed; })
      .def_property_readonly(
          "table",
          [](py::object self) {
            auto& s = self.cast<sketch_t&>();
            py::array_t<float> a({static_cast<py::ssize_t>(s.rows()), static_cast<py::ssize_t>(s.cols())},
                                 {static_cast<py::ssize_t>(s.cols() * sizeof(float)), py::ssize_t{sizeof(float)}},
                                 s.table().data(), self);
            return a;
          },
          "The rows x cols table as a writable NumPy view (no copy); allreduce it to merge sketches.")
      .def(
          "accumulate",
          [](sketch_t& s, const py::object& x, std::uint64_t offset, unsigned threads) {
            const gradient_values xs = gradient_view(x, "CountSketch.accumulate", false);
            py::gil_scoped_release release;
            xs.visit([&](auto values) {
              using E = typename decltype(values)::element_type;
              s.accumulate_rows(std::span<const E>(values), offset, 0, s.rows(), cpu_execution{threads});
            });
          },
          py::arg("x"), py::arg("offset") = 0, py::arg("threads") = 1,
          "Adds x (coordinates offset, offset+1, ...) to the sketch: a float32 or float16 array, or a float32, "
          "bfloat16 or float16 CPU tensor, read in place (16-bit values as floats, exactly).")
      .def(
          "accumulate_sparse",
          [](sketch_t& s, const py::array_t<std::int64_t, py::array::c_style>& indices, const py::object& values) {
            const auto idx = indices_of(indices);
            f32_array keep;
            s.accumulate(std::span<const std::uint64_t>(idx), in(values, keep, "CountSketch.accumulate_sparse"));
          },
          py::arg("indices"), py::arg("values"), "Adds values at the given coordinates.")
      .def("merge", &sketch_t::merge, py::arg("other"),
           "Adds another sketch's table (same rows, cols, seed; ConfigMismatchError otherwise).")
      .def(
          "__iadd__", [](sketch_t& s, const sketch_t& o) -> sketch_t& { return s += o; }, py::is_operator())
      .def("scale", &sketch_t::scale, py::arg("a"))
      .def("zero", &sketch_t::zero)
      .def(
          "zero_buckets_of",
          [](sketch_t& s, const py::array_t<std::int64_t, py::array::c_style>& indices) {
            const auto idx = indices_of(indices);
            s.zero_buckets_of(idx);
          },
          py::arg("indices"), "Zeroes, in every row, the cell each coordinate hashes to (FetchSGD's reset).")
      .def("estimate", &sketch_t::estimate, py::arg("i"), "Median over rows of sign * cell.")
      .def(
          "estimate_all",
          [](const sketch_t& s, std::uint64_t d, std::uint64_t offset, unsigned threads) {
            py::array_t<float> out(static_cast<py::ssize_t>(d));
            const std::span<float> o(out.mutable_data(), static_cast<std::size_t>(d));
            py::gil_scoped_release release;
            s.estimate_all(o, offset, cpu_execution{threads});
            return out;
          },
          py::arg("d"), py::arg("offset") = 0, py::arg("threads") = 1)
      .def("l2_estimate", &sketch_t::l2_estimate)
      .def(
          "top_k",
          [](const sketch_t& s, std::uint64_t d, std::size_t k, unsigned threads) {
            sparse_update<float> u;
            {
              py::gil_scoped_release release;
              u = top_k(s, d, k, cpu_execution{threads});
            }
            return as_tuple(u);
          },
          py::arg("d"), py::arg("k"), py::arg("threads") = 1,
          "The k coordinates of [0, d) with the largest |estimate| (ties to the lower index): (indices, values).")
      .def("serialize",
           [](const sketch_t& s) {
             const std::vector<std::byte> b = serialize(s);
             return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
           },
           "The little-endian wire format of docs/serialization.md.")
      .def_static(
          "deserialize",
          [](const py::bytes& b) {
            const std::string_view v = b;
            return deserialize<sketch_t>(std::as_bytes(std::span<const char>(v.data(), v.size())));
          },
          py::arg("data"), "Reads a sketch written by serialize (SerializationError names a bad field).")
      .def("__eq__", [](const sketch_t& a, const sketch_t& b) { return a == b; })
      .def("__repr__", [](const sketch_t& s) {
        return "CountSketch(rows=" + std::to_string(s.rows()) + ", cols=" + std::to_string(s.cols()) +
               ", seed=" + std::to_string(s.config().seed) + ")";
      });

  m.def(
      "top_k",
      [](const py::object& x, std::size_t k, unsigned threads) {
        f32_array keep;
        const auto xs = in(x, keep, "top_k");
        sparse_update<float> u;
        {
          py::gil_scoped_release release;
          u = top_k(xs, k, cpu_execution{threads});
        }
        return as_tuple(u);
      },
      py::arg("x"), py::arg("k"), py::arg("threads") = 1,
      "The k entries of x with the largest |value| (ties to the lower index, NaN never): (indices, values).");
}

}  // namespace sketchsgd::python
