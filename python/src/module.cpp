// SPDX-License-Identifier: Apache-2.0
// sketchsgd._core: the module, its exceptions and the shared helpers.

#include <algorithm>
#include <string>

#include <sketchsgd/error.hpp>
#include <sketchsgd/version.hpp>

#include "glue.hpp"

namespace sketchsgd::python {

namespace {

template <class T>
T get(const py::dict& d, const char* key, T fallback) {
  return d.contains(key) ? d[key].cast<T>() : fallback;
}

nonfinite_policy policy_named(const std::string& name) {
  if (name == "throw" || name == "throw_error") return nonfinite_policy::throw_error;
  if (name == "skip" || name == "skip_step") return nonfinite_policy::skip_step;
  if (name == "unchecked") return nonfinite_policy::unchecked;
  throw std::invalid_argument("nonfinite must be 'throw', 'skip' or 'unchecked', got '" + name + "'");
}

}  // namespace

f32_array f32_view(const py::handle& x, const char* what) {
  py::object a = py::reinterpret_borrow<py::object>(x);
  const std::string module = py::str(py::type::of(x).attr("__module__"));
  if (module.rfind("torch", 0) == 0 && py::hasattr(x, "numpy")) {  // torch.Tensor, nn.Parameter
    if (std::string(py::str(x.attr("device").attr("type"))) != "cpu") {
      throw py::type_error(std::string(what) + ": a tensor on " + std::string(py::str(x.attr("device"))) +
                           "; this build takes CPU tensors (docs/python.md)");
    }
    a = x.attr("detach")().attr("numpy")();  // shares the tensor's memory
  }
  if (!py::isinstance<f32_array>(a)) {
    throw py::type_error(std::string(what) + ": expected a C-contiguous float32 NumPy array or CPU tensor (it is " +
                         "used in place, never copied), got " + std::string(py::repr(x)).substr(0, 80));
  }
  return py::reinterpret_borrow<f32_array>(a);
}

method_options<float> parse_options(const py::dict& d) {
  static const char* const known[] = {
      "method",    "dimension", "rows",           "cols",          "seed",  "k",        "candidates_factor",
      "momentum",  "nesterov",  "error_feedback", "mask_momentum", "dense", "topology", "root",
      "nonfinite", "average",   "threads",        "slices"};
  for (const auto& item : d) {
    const auto key = item.first.cast<std::string>();
    if (std::none_of(std::begin(known), std::end(known), [&](const char* k) { return key == k; })) {
      throw std::invalid_argument("unknown aggregator option '" + key + "'");
    }
  }
  if (!d.contains("method")) throw std::invalid_argument("the aggregator options need a 'method'");
  method_options<float> o{.method = d["method"].cast<std::string>(),
                          .dimension = get<std::uint64_t>(d, "dimension", 0),
                          .k = get<std::size_t>(d, "k", 0),
                          .sketch = {.rows = get<std::uint64_t>(d, "rows", 1),
                                     .cols = get<std::uint64_t>(d, "cols", 0),
                                     .seed = get<std::uint64_t>(d, "seed", 0)},
                          .candidates_factor = get<std::size_t>(d, "candidates_factor", 0),
                          .momentum = get<float>(d, "momentum", 0.0F),
                          .nesterov = get<bool>(d, "nesterov", false),
                          .error_feedback = get<bool>(d, "error_feedback", true),
                          .mask_momentum = get<bool>(d, "mask_momentum", true),
                          .average = get<bool>(d, "average", true),
                          .root = get<int>(d, "root", 0),
                          .exec = {get<unsigned>(d, "threads", 1)},
                          .slices = get<std::size_t>(d, "slices", 1),
                          .update = update_choice::aggregated_gradient};
  if (d.contains("dense")) {
    for (const auto& r : d["dense"].cast<std::vector<std::pair<std::uint64_t, std::uint64_t>>>()) {
      o.dense.push_back({.offset = r.first, .length = r.second});
    }
  }
  const auto shape = get<std::string>(d, "topology", "allreduce");
  if (shape != "allreduce" && shape != "root") {
    throw std::invalid_argument("topology must be 'allreduce' or 'root', got '" + shape + "'");
  }
  o.topology = shape == "root" ? topology::root : topology::allreduce;
  if (d.contains("nonfinite")) o.nonfinite = policy_named(d["nonfinite"].cast<std::string>());
  return o;
}

template <class T>
void write_update(const model_update<float>& u, std::span<T> out) {
  const auto as_t = [](float x) { return T(x); };
  if (u.skipped) {
    std::fill(out.begin(), out.end(), T(0.0F));
    return;
  }
  if (u.dense) {
    if (u.values.size() != out.size()) {
      throw std::invalid_argument("write_update: a dense update of " + std::to_string(u.values.size()) +
                                  " values for an output of " + std::to_string(out.size()));
    }
    std::transform(u.values.begin(), u.values.end(), out.begin(), as_t);
    return;
  }
  if (!u.indices.empty() && u.indices.back() >= out.size()) {
    throw std::invalid_argument("write_update: index " + std::to_string(u.indices.back()) + " outside an output of " +
                                std::to_string(out.size()));
  }
  std::fill(out.begin(), out.end(), T(0.0F));
  for (std::size_t j = 0; j < u.indices.size(); ++j) out[u.indices[j]] = as_t(u.values[j]);
}
template void write_update(const model_update<float>&, std::span<float>);
template void write_update(const model_update<float>&, std::span<bfloat16_t>);
template void write_update(const model_update<float>&, std::span<float16_t>);

const char* gradient_values::dtype() const noexcept {
  static const char* const names[] = {"float32", "bfloat16", "float16"};
  return names[static_cast<int>(format)];
}

gradient_values gradient_view(const py::handle& x, const char* what, bool writable) {
  const auto refuse = [&](const std::string& why) {
    throw py::type_error(std::string(what) + ": " + why + " (gradients are used in place, never copied), got " +
                         std::string(py::repr(x)).substr(0, 80));
  };
  gradient_values v;
  v.owner = py::reinterpret_borrow<py::object>(x);
  const std::string module = py::str(py::type::of(x).attr("__module__"));
  if (module.rfind("torch", 0) == 0 && py::hasattr(x, "data_ptr")) {  // torch.Tensor, nn.Parameter
    if (std::string(py::str(x.attr("device").attr("type"))) != "cpu") {
      throw py::type_error(std::string(what) + ": a tensor on " + std::string(py::str(x.attr("device"))) +
                           "; this build takes CPU tensors (docs/python.md)");
    }
    const std::string dtype = py::str(x.attr("dtype"));
    if (dtype == "torch.float32") {
      v.format = wire_format::native;
    } else if (dtype == "torch.bfloat16") {
      v.format = wire_format::bfloat16;
    } else if (dtype == "torch.float16") {
      v.format = wire_format::float16;
    } else {
      refuse("expected a float32, bfloat16 or float16 tensor");
    }
    if (x.attr("dim")().cast<int>() != 1 || !x.attr("is_contiguous")().cast<bool>()) {
      refuse("expected a 1-d contiguous float32, bfloat16 or float16 tensor");
    }
    v.data = reinterpret_cast<void*>(x.attr("data_ptr")().cast<std::uintptr_t>());
    v.size = x.attr("numel")().cast<std::size_t>();
    return v;
  }
  if (!py::isinstance<py::array>(x)) refuse("expected a 1-d C-contiguous NumPy array or CPU tensor");
  const auto a = py::reinterpret_borrow<py::array>(x);
  if (a.dtype().is(py::dtype::of<float>())) {
    v.format = wire_format::native;
  } else if (a.dtype().kind() == 'f' && a.itemsize() == 2) {
    v.format = wire_format::float16;
  } else {
    refuse("expected a float32 or float16 array");
  }
  if (a.ndim() != 1 || (a.flags() & py::array::c_style) == 0) {
    refuse("expected a 1-d C-contiguous float32 or float16 array");
  }
  if (writable && !a.writeable()) refuse("the array is read-only");
  v.data = const_cast<void*>(a.data());
  v.size = static_cast<std::size_t>(a.size());
  return v;
}

py::dict stats_dict(const comm_stats& s) {
  const auto counters = [](const comm_counters& c) {
    py::dict d;
    d["bytes_sent"] = c.bytes_sent;
    d["bytes_received"] = c.bytes_received;
    d["collectives"] = c.collectives;
    return d;
  };
  const auto timing = [](const step_timing& t) {
    py::dict d;
    d["local"] = t.local;
    d["compress"] = t.compress;
    d["communicate"] = t.communicate;
    d["recover"] = t.recover;
    d["total"] = t.total;
    return d;
  };
  py::dict d;
  d["steps"] = s.steps;
  d["skipped_steps"] = s.skipped_steps;
  d["last_step"] = counters(s.last_step);
  d["total"] = counters(s.total);
  d["dense_ring_bytes_per_step"] = s.dense_ring_bytes_per_step;
  d["compression"] = s.compression();
  d["last_step_time"] = timing(s.last_step_time);
  d["total_time"] = timing(s.total_time);
  return d;
}

}  // namespace sketchsgd::python

PYBIND11_MODULE(_core, m) {
  namespace sp = sketchsgd::python;
  namespace py = pybind11;
  m.doc() = "sketchsgd's C++ core: Count Sketch and the split-phase aggregators";
  m.attr("__version__") = std::to_string(SKETCHSGD_VERSION_MAJOR) + "." + std::to_string(SKETCHSGD_VERSION_MINOR) +
                          "." + std::to_string(SKETCHSGD_VERSION_PATCH);
  static py::exception<sketchsgd::error> error(m, "Error", PyExc_RuntimeError);
  static py::exception<sketchsgd::config_mismatch_error> mismatch(m, "ConfigMismatchError", error.ptr());
  static py::exception<sketchsgd::serialization_error> serialization(m, "SerializationError", error.ptr());
  static py::exception<sketchsgd::nonfinite_error> nonfinite(m, "NonFiniteError", error.ptr());
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const sketchsgd::config_mismatch_error& e) {
      mismatch(e.what());
    } catch (const sketchsgd::serialization_error& e) {
      serialization(e.what());
    } catch (const sketchsgd::nonfinite_error& e) {
      nonfinite(e.what());
    } catch (const sketchsgd::error& e) {
      error(e.what());
    }
  });
  sp::bind_sketch(m);
  sp::bind_aggregator(m);
  sp::bind_reference(m);
}
