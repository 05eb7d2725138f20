// SPDX-License-Identifier: Apache-2.0
// sketchsgd._core.Aggregator: a split-phase optimizer from the method
// registry (the aggregated gradient as its update) whose rounds Python
// carries with its own collectives (torch.distributed). Each round's buffers
// are NumPy views of the optimizer's own memory: the collective works in
// place, nothing is copied.

#include <memory>
#include <optional>
#include <sstream>
#include <utility>

#include "glue.hpp"

namespace sketchsgd::python {

namespace {

/// What Python holds: the optimizer (split phase), the step in progress, and
/// its gradient (kept alive: the optimizer reads it until the step is done).
struct py_aggregator {
  py_aggregator(int r, int w, method_options<float> o)
      : options(std::move(o)), rank(r), world(w), impl(make_optimizer(r, w, options)) {}
  method_options<float> options;
  int rank;
  int world;
  any_optimizer<float> impl;
  std::optional<round_generator<float>> rounds;
  gradient_values gradient;
};

/// A round as Python sees it.
struct round_view {
  std::string kind;
  py::object values = py::none();
  py::object counts = py::none();
  py::object block = py::none();
  py::object gathered = py::none();
  py::object merge = py::none();
  int root = 0;
  std::uint64_t bytes = 0;  // of values/counts, or of this rank's block
  bool overlap = false;     // may be carried while the step computes, until the next round
  std::string wire;         // sum of floats: "native", or the 16-bit format sketchsgd's ring would send
};

round_view make_round(const collective_round<float>& r, const py::object& owner) {
  static const char* const kinds[] = {"sum", "gather", "reduce", "broadcast"};
  static const char* const wires[] = {"native", "bfloat16", "float16"};
  round_view v{.kind = kinds[static_cast<int>(r.kind)], .root = r.root, .overlap = r.overlap,
               .wire = wires[static_cast<int>(r.wire)]};
  const auto bytes = [&](std::span<std::byte> b) {
    return view(reinterpret_cast<std::uint8_t*>(b.data()), b.size(), owner);
  };
  if (!r.counts.empty()) {
    v.counts = view(r.counts.data(), r.counts.size(), owner);
    v.bytes = r.counts.size_bytes();
  } else if (r.kind == round_kind::sum || (r.kind == round_kind::reduce && !r.combine)) {
    v.values = view(r.values.data(), r.values.size(), owner);
    v.bytes = r.values.size_bytes();
  } else {
    v.block = bytes(r.block);
    v.bytes = r.block.size();
  }
  if (r.kind == round_kind::gather) v.gathered = bytes(r.gathered);
  if (r.combine) {
    v.merge = py::cpp_function(
        [combine = r.combine, size = r.block.size()](const py::array_t<std::uint8_t, py::array::c_style>& in) {
          if (static_cast<std::size_t>(in.size()) != size) {
            throw std::invalid_argument("Round.merge: expected " + std::to_string(size) + " bytes");
          }
          combine(std::as_bytes(std::span<const std::uint8_t>(in.data(), size)));
        },
        py::arg("incoming"));
  }
  return v;
}

}  // namespace

void bind_aggregator(py::module_& m) {
  py::class_<round_view>(m, "Round", R"doc(
One collective of a split-phase step. kind "sum": add `values` (float32) or
`counts` (int64, the non-finite check) element-wise over the ranks, in place.
kind "gather": every rank contributes `block` (same size everywhere) and
`gathered` (world x block bytes) receives them all in rank order. kind
"reduce": `values` summed at rank `root` (others' are left undefined); or,
when `merge` is set, a tree towards `root` in which each rank calls
merge(incoming) with each child's `block` (uint8, as the child holds it after
its own merges) and then sends its `block` to its parent (sketchsgd's
binomial tree gives the same bits: sketchsgd.torch.carry_step). kind
"broadcast": every rank's `block` becomes rank `root`'s. The arrays view the
aggregator's memory; they and merge are valid until the next call of next().)doc")
      .def_readonly("kind", &round_view::kind)
      .def_readonly("values", &round_view::values)
      .def_readonly("counts", &round_view::counts)
      .def_readonly("block", &round_view::block)
      .def_readonly("gathered", &round_view::gathered)
      .def_readonly("merge", &round_view::merge)
      .def_readonly("root", &round_view::root)
      .def_readonly("nbytes", &round_view::bytes)
      .def_readonly("overlap", &round_view::overlap)
      .def_readonly("wire", &round_view::wire)
      .def("__repr__",
           [](const round_view& r) { return "Round(" + r.kind + ", " + std::to_string(r.bytes) + " bytes)"; });

  py::class_<py_aggregator>(m, "Aggregator", R"doc(
A distributed aggregator in split phase (sketchsgd::make_optimizer's, the
aggregated gradient as its update): per step,
begin(gradient), then carry every round next() returns until it returns
None; update() / write_update() then hold the aggregated gradient, identical
on every rank. Construct with (rank, world, options dict): method (sketched,
global-sketch, fetchsgd, local-topk, true-topk, gtopk, dense), dimension,
rows, cols, seed, k, candidates_factor, momentum, nesterov, error_feedback,
mask_momentum, dense ([(offset, length)]), topology (allreduce, root: the
sketched methods' parameter server), root, nonfinite (throw, skip,
unchecked), average, threads.)doc")
      .def(py::init([](int rank, int world, const py::dict& d) {
             return std::make_unique<py_aggregator>(rank, world, parse_options(d));
           }),
           py::arg("rank"), py::arg("world"), py::arg("options"))
      .def_property_readonly("method", [](const py_aggregator& a) { return a.options.method; })
      .def_property_readonly("dimension", [](const py_aggregator& a) { return a.options.dimension; })
      .def_property_readonly("rank", [](const py_aggregator& a) { return a.rank; })
      .def_property_readonly("world", [](const py_aggregator& a) { return a.world; })
      .def(
          "begin",
          [](py_aggregator& a, const py::object& g) {
            gradient_values gradient = gradient_view(g, "Aggregator.begin", false);
            a.rounds.reset();
            a.rounds.emplace(gradient.visit([&](auto values) {
              return a.impl.step_rounds(std::span<const typename decltype(values)::element_type>(values));
            }));
            a.gradient = std::move(gradient);
          },
          py::arg("gradient"),
          "Starts a step on this rank's gradient (d values: a float32 or float16 array, or a float32, bfloat16 or "
          "float16 CPU tensor; 16-bit values are read as float in place, never copied; keep it unchanged until "
          "next() returns None).")
      .def(
          "next",
          [](py::object self) -> py::object {
            auto& a = self.cast<py_aggregator&>();
            if (!a.rounds) throw std::logic_error("Aggregator.next: no step in progress (call begin first)");
            collective_round<float>* r = nullptr;
            try {
              py::gil_scoped_release release;
              r = a.rounds->next();
            } catch (...) {
              a.rounds.reset();
              a.gradient = {};
              throw;
            }
            if (r != nullptr) return py::cast(make_round(*r, self));
            a.rounds.reset();
            a.gradient = {};
            return py::none();
          },
          "Runs the step to its next round and returns it (a Round), or None when the step is done. Raises "
          "NonFiniteError on every rank under nonfinite='throw'.")
      .def_property_readonly("in_step", [](const py_aggregator& a) { return a.rounds.has_value(); })
      .def(
          "write_update",
          [](const py_aggregator& a, const py::object& target) {
            const gradient_values out = gradient_view(target, "Aggregator.write_update", true);
            if (out.size != a.options.dimension) {
              throw std::invalid_argument("Aggregator.write_update: expected " + std::to_string(a.options.dimension) +
                                          " values, got " + std::to_string(out.size));
            }
            py::gil_scoped_release release;
            out.visit([&](auto o) { write_update(a.impl.last_update(), o); });
          },
          py::arg("out"),
          "Writes the last aggregated gradient into out (d values in place, of any dtype begin() takes; 16-bit "
          "rounded to nearest): zeros off its support, all zeros when the step was skipped.")
      .def(
          "update",
          [](const py_aggregator& a) {
            const auto& u = a.impl.last_update();
            py::array_t<std::int64_t> idx(static_cast<py::ssize_t>(u.indices.size()));
            for (std::size_t j = 0; j < u.indices.size(); ++j)
              idx.mutable_data()[j] = static_cast<std::int64_t>(u.indices[j]);
            py::dict d;
            d["indices"] = idx;
            d["values"] = copy_of(std::span<const float>(u.values));
            d["dense"] = u.dense;
            d["skipped"] = u.skipped;
            return d;
          },
          "The last aggregated gradient: indices, values, dense, skipped (copies).")
      .def_property_readonly("fingerprint",
                             [](const py_aggregator& a) {
                               // bits, as a torch int64
                               return static_cast<std::int64_t>(a.impl.fingerprint());
                             })
      .def(
          "check_fingerprints",
          [](const py_aggregator& a, const std::vector<std::int64_t>& all) {
            std::vector<std::uint64_t> u(all.begin(), all.end());
            a.impl.check_fingerprints(u);
          },
          py::arg("all"), "Raises ConfigMismatchError unless every rank's fingerprint (rank order) equals rank 0's.")
      .def(
          "save",
          [](const py_aggregator& a) {
            std::ostringstream os;
            a.impl.save(os);
            return py::bytes(std::move(os).str());
          },
          "This rank's whole state (error memory, sketches, step count) with a checked header.")
      .def(
          "load",
          [](py_aggregator& a, const py::bytes& b) {
            std::istringstream is{std::string(b)};
            a.impl.load(is);
          },
          py::arg("data"),
          "Restores save()'s bytes (same rank, world and configuration; ConfigMismatchError or "
          "SerializationError otherwise, and the state is then unchanged).")
      .def(
          "load_redivided",
          [](py_aggregator& a, const std::vector<py::bytes>& states) {
            std::vector<std::istringstream> streams;
            streams.reserve(states.size());
            for (const auto& b : states) streams.emplace_back(std::string(b));
            std::vector<std::istream*> in;
            for (auto& s : streams) in.push_back(&s);
            a.impl.load_redivided(in);
          },
          py::arg("states"),
          "Restores save()'s bytes of every rank of a world of another size (in rank order): the error memories "
          "summed and divided evenly among this world (their sum kept), the rest checked equal and taken. "
          "ConfigMismatchError or SerializationError otherwise, and the state is then unchanged.")
      .def(
          "stats", [](const py_aggregator& a) { return stats_dict(a.impl.stats()); },
          "Steps (skipped_steps: those skipped for a non-finite gradient), bytes by sketchsgd's own "
          "collectives' model, and time by phase (local, compress, communicate = carrying the rounds, recover).");
}

}  // namespace sketchsgd::python
