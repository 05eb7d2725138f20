// SPDX-License-Identifier: Apache-2.0
// sketchsgd._core.inproc_steps: the same aggregator driven by sketchsgd's own
// collectives over in-process ranks (threads): the reference a framework's
// split-phase carrying is checked against.

#include <exception>
#include <thread>

#include <sketchsgd/collective/communicator.hpp>
#include <sketchsgd/transport/inproc.hpp>

#include "glue.hpp"

namespace sketchsgd::python {

void bind_reference(py::module_& m) {
  m.def(
      "inproc_steps",
      [](const py::dict& d, int world, const py::object& g) {
        const f32_array gradients = f32_view(g, "inproc_steps");
        const method_options<float> o = parse_options(d);
        if (gradients.ndim() != 3 || gradients.shape(1) != world ||
            static_cast<std::uint64_t>(gradients.shape(2)) != o.dimension) {
          throw std::invalid_argument("inproc_steps: gradients must have shape (steps, world, dimension)");
        }
        const auto steps = static_cast<std::size_t>(gradients.shape(0));
        const std::size_t dim = o.dimension;
        py::array_t<float> out({gradients.shape(0), gradients.shape(1), gradients.shape(2)});
        const float* in = gradients.data();
        float* res = out.mutable_data();
        {
          py::gil_scoped_release release;
          inproc_world w(world);
          std::vector<std::exception_ptr> errors(static_cast<std::size_t>(world));
          std::vector<std::thread> threads;
          for (int r = 0; r < world; ++r) {
            threads.emplace_back([&, r] {
              try {
                auto t = w.transport(r);
                communicator comm(t);
                any_optimizer<float> opt = make_optimizer(comm, o);
                for (std::size_t s = 0; s < steps; ++s) {
                  const std::size_t at = (s * static_cast<std::size_t>(world) + static_cast<std::size_t>(r)) * dim;
                  const auto& u = opt.step(std::span<const float>(in + at, dim));
                  write_update(u, std::span<float>(res + at, dim));
                }
              } catch (...) {
                errors[static_cast<std::size_t>(r)] = std::current_exception();
              }
            });
          }
          for (auto& t : threads) t.join();
          for (auto& e : errors) {
            if (e) std::rethrow_exception(e);
          }
        }
        return out;
      },
      py::arg("options"), py::arg("world"), py::arg("gradients"),
      "Runs the aggregator transport-driven (sketchsgd's collectives over `world` in-process ranks) on "
      "gradients[step, rank] and returns every rank's aggregated gradient, shape (steps, world, dimension).");
}

}  // namespace sketchsgd::python
