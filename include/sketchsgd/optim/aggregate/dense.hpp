// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Dense aggregation: the uncompressed baseline.

#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "sketchsgd/device.hpp"
#include "sketchsgd/half.hpp"
#include "sketchsgd/optim/aggregate/error_memory.hpp"
#include "sketchsgd/optim/model_update.hpp"
#include "sketchsgd/optim/state/state_io.hpp"
#include "sketchsgd/optim/step/rounds.hpp"
#include "sketchsgd/optim/step/validation.hpp"

namespace sketchsgd {

/// The sum of every rank's gradient, by one allreduce of d values:
/// 2 (W-1)/W d sizeof(Value) bytes per rank with the ring. No memory; the
/// aggregated gradient is dense.
/// @tparam Value a `sketch_value`.
/// @tparam Device a `device` tag.
template <sketch_value Value, device Device = cpu_t>
class dense_aggregation {
  using ops = detail::device_ops<Device>;
  using context = detail::step_context<Value, Device>;

 public:
  /// Settings of the dense aggregation.
  struct options_type {
    /// How the sum travels: float values may go as bfloat16 or float16,
    /// summed in float32 and rounded at every hop (half the bytes; the
    /// honest baseline of Han et al. 2024). Float only.
    wire_format wire = wire_format::native;
  };

  /// @cond POLICY_HOOKS
  // The aggregation_policy interface (sketchsgd/optim/concepts.hpp), for composed_optimizer.
  using value_type = Value;
  using device_type = Device;
  static constexpr detail::optimizer_kind kind = detail::optimizer_kind::dense_sgd;
  static constexpr const char* name = "dense_aggregation";

  dense_aggregation(const options_type& o, const context& c) : opt_(o) {
    if (c.split->dense_count() != 0) detail::bad_option(name, "dense ranges mean nothing to dense aggregation");
    if (o.wire != wire_format::native && !std::is_same_v<Value, float>) {
      detail::bad_option(name, "a 16-bit wire carries float values only");
    }
  }

  void accumulate(typename ops::template gradient<Value> g, const context& /*c*/) noexcept { gradient_ = g; }
  [[nodiscard]] typename ops::template gradient<Value> source() const noexcept { return gradient_; }

  round_generator<Value> rounds(const context& c, model_update<Value>& out) {
    out.dense = true;
    ops::assign(gradient_, out.values, *c.device);
    c.lap(&step_timing::local);
    auto sum = sum_round(std::span<Value>(out.values));
    sum.wire = opt_.wire;
    co_yield sum;
  }

  void describe(detail::fingerprint& f) const {
    if (opt_.wire != wire_format::native) f.add(opt_.wire);  // the float32 wire keeps its earlier fingerprint
  }
  /// @endcond

 private:
  options_type opt_;
  typename ops::template gradient<Value> gradient_{};
};

}  // namespace sketchsgd
