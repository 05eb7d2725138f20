// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The optimizer driver: one class that owns, once, what every distributed
/// optimizer shares, over small policies that own only what differs.

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <functional>
#include <istream>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sketchsgd/collective/collectives.hpp"
#include "sketchsgd/error.hpp"
#include "sketchsgd/optim/concepts.hpp"
#include "sketchsgd/optim/model_update.hpp"
#include "sketchsgd/optim/state/fingerprint.hpp"
#include "sketchsgd/optim/state/state_io.hpp"
#include "sketchsgd/optim/step/accounting.hpp"
#include "sketchsgd/optim/step/context.hpp"
#include "sketchsgd/optim/step/coordinates.hpp"
#include "sketchsgd/optim/step/device_ops.hpp"
#include "sketchsgd/optim/step/nonfinite.hpp"
#include "sketchsgd/optim/step/rounds.hpp"
#include "sketchsgd/optim/step/validation.hpp"
#include "sketchsgd/serialize/wire.hpp"

namespace sketchsgd {

/// Settings of a `composed_optimizer`: what the driver owns, and each
/// policy's own options.
/// @tparam Aggregation an aggregation policy (`sketched_aggregation`, ...).
/// @tparam UpdateRule an update rule (`sgd_update`, `adam_update`, ...).
template <class Aggregation, class UpdateRule>
struct composed_options {
  using value_type = typename Aggregation::value_type;  ///< the value type
  /// Number of parameters d.
  std::uint64_t dimension = 0;
  /// The aggregation policy's options (what is communicated, and its memory).
  typename Aggregation::options_type aggregation{};
  /// The update rule's options.
  typename UpdateRule::options_type update{};
  /// Learning rate eta (see `set_learning_rate`); `schedule` overrides it.
  value_type learning_rate = value_type{1};
  /// eta at each step (given the number of steps taken before it; steps
  /// skipped for a non-finite gradient do not count), if set; resumed
  /// checkpoints continue the schedule where it was.
  std::function<value_type(std::uint64_t)> schedule{};
  /// Divide aggregated sums by W (floating-point values only).
  bool average = false;
  /// Coordinates that skip compression: allreduced in full every step.
  std::vector<dense_range> dense{};
  /// What a NaN or Inf in any rank's gradient does.
  nonfinite_policy nonfinite = nonfinite_policy::throw_error;
  /// How the device's kernels run (CPU: threads; CUDA: stream, accumulation).
  typename detail::device_ops<typename Aggregation::device_type>::execution exec{};
};

namespace detail {

/// A named optimizer's identity: its checkpoint kind, its name in messages,
/// and its version-1 configuration fingerprint (the layout of main before
/// the policy layer, which its checkpoints carry).
struct named_identity {
  optimizer_kind kind;
  const char* name;
  std::function<std::uint64_t(const coordinate_split&, int)> fingerprint;
};

}  // namespace detail

/// A distributed optimizer composed of an aggregation policy and an update
/// rule over a transport. Per step, on every rank:
///
/// 1. the gradient's size is checked; with a non-finite policy, one
///    allreduce of one integer tells every rank whether any gradient holds
///    NaN or Inf (then every rank throws, or skips the step);
/// 2. the aggregation accumulates the gradient into its memory (error
///    feedback, local momentum) and carries out its rounds: what is sent,
///    summed and recovered (`sketched_aggregation`, `fetch_aggregation`, ...);
/// 3. the dense coordinates' values are summed in one more allreduce;
/// 4. sums are divided by W when averaging, and the update rule turns the
///    aggregated gradient into the update (`sgd_update`, `adam_update`, ...).
///
/// The update is identical on every rank. The driver also owns the byte and
/// time accounting, the configuration fingerprint every rank must share
/// (checked with one allgather at construction), learning-rate schedules,
/// and checkpoints (`save`/`load`: every policy's state, all or nothing).
///
/// With `Transport = external_collectives` there is no transport: the
/// caller runs each step with `step_rounds` and carries every round with
/// collectives of its own (split phase).
/// @tparam Aggregation an aggregation policy.
/// @tparam UpdateRule an update rule.
/// @tparam Transport a `transport`, or `external_collectives`.
template <class Aggregation, class UpdateRule, class Transport = external_collectives>
class composed_optimizer {
  static_assert(aggregation_policy<Aggregation>,
                "composed_optimizer: Aggregation is not an aggregation_policy (sketchsgd/optim/concepts.hpp); the "
                "notes name what it lacks");
  static_assert(update_rule<UpdateRule, typename Aggregation::value_type>,
                "composed_optimizer: UpdateRule is not an update_rule (sketchsgd/optim/concepts.hpp); the notes name "
                "what it lacks");
  static_assert(std::is_same_v<detail::rule_device<UpdateRule>, cpu_t> ||
                    std::is_same_v<detail::rule_device<UpdateRule>, typename Aggregation::device_type>,
                "composed_optimizer: the update rule's state lives on another device than the aggregation's");
  using ops = detail::device_ops<typename Aggregation::device_type>;
  static_assert(device_operations<ops, typename Aggregation::value_type>,
                "composed_optimizer: the device's operations are not device_operations (sketchsgd/optim/concepts.hpp)");
  static constexpr bool external = std::is_same_v<Transport, external_collectives>;
  using comm_type = typename detail::communicator_of<Transport>::type;
  using any_gradient = typename ops::template gradient<typename Aggregation::value_type>;
  static constexpr bool takes_any_gradient =
      requires(Aggregation& a, any_gradient g, const detail::step_context<typename Aggregation::value_type,
                                                                          typename Aggregation::device_type>& c) {
        a.accumulate(g, c);
      };

 public:
  /// The value type.
  using value_type = typename Aggregation::value_type;
  /// The transport (or `external_collectives`).
  using transport_type = Transport;
  /// Where the gradient and the policies' state live.
  using device_type = typename Aggregation::device_type;
  /// The gradient `step` takes (a device span on CUDA).
  using gradient_type = typename ops::template span<const value_type>;
  /// The options type.
  using options_type = composed_options<Aggregation, UpdateRule>;
  /// What `step_rounds` yields.
  using round_type = collective_round<value_type>;
  /// How one call may run (`step`, `step_rounds`, `apply`): CUDA's stream,
  /// accumulation and host threads (`cuda_execution`), the CPU's threads.
  using execution_type = typename ops::execution;
  /// The split-phase form of a step.
  using step_generator = round_generator<value_type>;
  /// Whether `step` and `step_rounds` also take 16-bit gradients
  /// (`bfloat16_t`, `float16_t`): a float optimizer on the CPU whose
  /// aggregation's `accumulate` takes a `gradient_span` (every named one).
  /// Each value is read as float exactly, on the fly: the result has the bits
  /// of the step on those values as floats, and no float copy is made.
  static constexpr bool takes_16_bit =
      std::is_same_v<device_type, cpu_t> && std::is_same_v<value_type, float> && takes_any_gradient;

  /// Sets up the optimizer over `comm` and checks, with one allgather, that
  /// every rank has the same configuration.
  /// @throws std::invalid_argument for an unusable configuration (before any
  /// I/O); config_mismatch_error on every rank if ranks disagree.
  composed_optimizer(comm_type& comm, options_type options) requires(!external)
      : composed_optimizer(&comm, comm.rank(), comm.size(), std::move(options), {}) {}

  /// Sets up a split-phase optimizer for rank `rank` of `world`; the caller
  /// checks that ranks agree (`fingerprint`, `check_fingerprints`).
  /// @throws std::invalid_argument for an unusable configuration.
  composed_optimizer(int rank, int world, options_type options) requires external
      : composed_optimizer(nullptr, rank, world, std::move(options), {}) {}

  /// One step with this rank's gradient (d values); the update to apply.
  /// @throws std::invalid_argument if the gradient has the wrong size;
  /// nonfinite_error (on every rank) under `throw_error`;
  /// transport_error/timeout_error from the transport.
  const model_update<value_type>& step(gradient_type gradient) requires(!external) {
    return carry(step_rounds(gradient));
  }
  /// The same step run as `how` says, this call only (later calls run as
  /// the options' `exec` again): on CUDA its work is enqueued on
  /// `how.stream` (a stream per call, as CUB takes it; see docs/cuda.md's
  /// stream contract for the ordering the caller owes), on the CPU it uses
  /// `how.threads`. The bits do not depend on it, but for CUDA's choice of
  /// accumulation.
  const model_update<value_type>& step(gradient_type gradient, const execution_type& how) requires(!external) {
    return carry(step_rounds(gradient, how));
  }
  /// The same with a 16-bit gradient (see `takes_16_bit`).
  const model_update<value_type>& step(std::span<const bfloat16_t> gradient) requires(!external && takes_16_bit) {
    return carry(step_rounds(gradient));
  }
  /// The same with a float16 gradient.
  const model_update<value_type>& step(std::span<const float16_t> gradient) requires(!external && takes_16_bit) {
    return carry(step_rounds(gradient));
  }

  /// The same step in split phase: each `next()` returns the next round,
  /// which the caller carries (summing or gathering in place, identically on
  /// every rank) before calling `next()` again; nullptr when the step is
  /// done, then `last_update()` holds the update. Carried with sketchsgd's
  /// collectives the bits equal `step`'s. The gradient must stay valid, and
  /// one step runs at a time (a step abandoned half way leaves the state as
  /// an exception would).
  /// @throws std::invalid_argument at once for a gradient of the wrong size;
  /// from `next()` whatever `step` throws.
  [[nodiscard]] step_generator step_rounds(gradient_type gradient) { return start(gradient); }
  /// The same run as `how` says, from the first `next()` to the last (see `step`).
  [[nodiscard]] step_generator step_rounds(gradient_type gradient, const execution_type& how) {
    return start(gradient, how);
  }
  /// The same with a 16-bit gradient (see `takes_16_bit`).
  [[nodiscard]] step_generator step_rounds(std::span<const bfloat16_t> gradient) requires takes_16_bit {
    return start(gradient);
  }
  /// The same with a float16 gradient.
  [[nodiscard]] step_generator step_rounds(std::span<const float16_t> gradient) requires takes_16_bit {
    return start(gradient);
  }

  /// The last step's update. Where the update rule runs on the device
  /// (`momentum_update<V, cuda_t>`, dense `adam_update<V, cuda_t>`), a dense
  /// update stays there: `dense` is set, `values` is empty, and
  /// `update_on_device()` holds the d values (`apply` applies them).
  [[nodiscard]] const model_update<value_type>& last_update() const noexcept { return update_; }
  /// The last step's dense update kept on the device by a device rule
  /// (d values, valid until the next step), else empty.
  [[nodiscard]] typename ops::template span<const value_type> update_on_device() const noexcept
      requires(!std::is_same_v<device_type, cpu_t>) {
    return ops::dense_update(update_, device_);
  }
  /// Applies the last update to parameters in the device's memory:
  /// `params -= factor * update` (decay first); on the CPU the same as
  /// `last_update().apply(params, factor)`.
  /// @throws std::invalid_argument if the update does not fit `params`.
  void apply(typename ops::template span<value_type> params, value_type factor = value_type{1}) {
    ops::apply(update_, params, factor, device_);
  }
  /// The same run as `how` says, this call only (CUDA: on `how.stream`).
  void apply(typename ops::template span<value_type> params, value_type factor, const execution_type& how) {
    const call_execution call(*this, how);
    ops::apply(update_, params, factor, device_);
  }
  /// Communication and time so far (split phase: bytes as sketchsgd's own
  /// collectives would send them).
  [[nodiscard]] const comm_stats& stats() const noexcept { return accounting_.stats(); }
  /// The options in force.
  [[nodiscard]] const options_type& options() const noexcept { return opt_; }
  /// Changes eta for the next steps (when there is no schedule); every rank
  /// must do the same.
  void set_learning_rate(value_type eta) noexcept { opt_.learning_rate = eta; }
  /// The configuration fingerprint every rank must share.
  [[nodiscard]] std::uint64_t fingerprint() const noexcept { return fingerprint_; }
  /// Throws config_mismatch_error unless every rank's fingerprint (rank
  /// order) equals rank 0's (split phase: after gathering them).
  void check_fingerprints(std::span<const std::uint64_t> all) const { detail::check_fingerprints(all, name_); }
  /// The aggregation policy.
  [[nodiscard]] const Aggregation& aggregation() const noexcept { return agg_; }
  /// The update rule.
  [[nodiscard]] const UpdateRule& update_rule() const noexcept { return rule_; }

  /// Writes this rank's whole state: every policy's, and the step count
  /// (the steps taken, which a resumed run continues from; a named
  /// optimizer's version-1 state keeps counting skipped steps too, as its
  /// released format did: none of them reads the count).
  /// @throws serialization_error if the stream fails.
  void save(std::ostream& os) const {
    auto& self = const_cast<composed_optimizer&>(*this);  // the visitors only read
    const comm_stats& st = accounting_.stats();
    detail::write_state_header(os, header(version_ == 1 ? st.steps : st.taken_steps()));
    self.for_each_state(
        [&](auto s) { detail::write_state_section(os, std::span<const value_type>(ops::download(s, self.device_))); });
  }

  /// Restores a state written by `save` on the same rank of an identically
  /// configured job; afterwards steps continue bit-identically.
  /// @throws config_mismatch_error for another configuration, kind, rank or
  /// world; serialization_error for malformed bytes or another serial
  /// version (the state is then unchanged).
  void load(std::istream& is) {
    const std::uint64_t steps = detail::read_state_header(is, header(0), name_);
    std::vector<std::vector<value_type>> read;
    for_each_state([&](auto s) {
      read.emplace_back(s.size());
      detail::read_state_section(is, std::span<value_type>(read.back()), name_);
    });
    std::size_t at = 0;
    for_each_state([&](auto s) { ops::upload(std::span<const value_type>(read[at++]), s, device_); });
    // The header's count is what the state has taken: it continues from there.
    accounting_.stats().steps = steps;
    accounting_.stats().skipped_steps = 0;
  }

  /// Restores, on this rank, the states that every rank of a job of another
  /// world size saved (`save`, given in rank order; the configuration the
  /// same but for W): the ranks' own memories (error feedback's u and v)
  /// are summed over the old ranks and divided evenly among this world, so
  /// their sum, the gradient mass not yet applied, is kept (to rounding);
  /// the rest (the update rule's state, FetchSGD's sketches, the step
  /// count) is the same on every old rank, checked, and taken as it is.
  /// Every new rank reads all old states and gets the same result.
  /// @throws config_mismatch_error for another configuration or kind, old
  /// states out of rank order or from different steps, or a section that
  /// should be the same on every rank and is not (a root topology keeps its
  /// server's state on the root alone); serialization_error for malformed
  /// bytes. The state is then unchanged.
  void load_redivided(std::span<std::istream* const> old) requires std::is_floating_point_v<value_type> {
    redivide(old, true);
  }

  /// `load_redivided` from the states of some ranks of the old world only
  /// (its survivors, in any order: each header names its rank and world):
  /// their memories summed and divided evenly among this world. What the
  /// missing ranks held of the memories is lost; the rest is whole.
  /// @throws as `load_redivided`, and config_mismatch_error for states of
  /// different worlds or a rank given twice.
  void load_survivors(std::span<std::istream* const> states) requires std::is_floating_point_v<value_type> {
    redivide(states, false);
  }

 protected:
  /// For the named optimizers: their kind, name and version-1 fingerprint.
  composed_optimizer(comm_type& comm, options_type options, detail::named_identity id) requires(!external)
      : composed_optimizer(&comm, comm.rank(), comm.size(), std::move(options), std::move(id)) {}

  /// How the device's calls run (the CUDA stream of the next step, ...).
  [[nodiscard]] typename ops::context& device_context() noexcept { return device_; }

 private:
  composed_optimizer(comm_type* comm, int rank, int world, options_type o, detail::named_identity id)
      : comm_(comm),
        rank_(rank),
        world_(world),
        opt_(std::move(o)),
        kind_(id.name != nullptr ? id.kind : detail::hooks::kind<Aggregation>()),
        name_(id.name != nullptr ? id.name : Aggregation::name),
        split_(checked(opt_, rank_, world_, name_)),
        device_{opt_.exec},
        agg_(opt_.aggregation, context()),
        rule_(opt_.update, opt_.dimension, name_),
        dense_values_(static_cast<std::size_t>(split_.dense_count())) {
    if (detail::hooks::learning_rate_in_error(agg_) && !detail::hooks::takes_applied_learning_rate<UpdateRule>()) {
      detail::bad_option(name_, "this update rule needs the learning rate outside the error memory");
    }
    version_ = id.name != nullptr ? 1 : 2;
    named_fingerprint_ = std::move(id.fingerprint);
    fingerprint_ = fingerprint_at(world_);
    if constexpr (!external) detail::agree_on_fingerprint(*comm_, fingerprint_, name_);
    accounting_.stats().dense_ring_bytes_per_step =
        detail::dense_ring_bytes(opt_.dimension, world_, sizeof(value_type));
    accounting_.begin(counters());  // the setup's exchange is not a step
  }

  static detail::coordinate_split checked(const options_type& o, int rank, int world, const char* name) {
    if (world < 1 || rank < 0 || rank >= world) {
      detail::bad_option(name,
                         "rank " + std::to_string(rank) + " is not a rank of a world of " + std::to_string(world));
    }
    if (o.dimension == 0) detail::bad_option(name, "dimension must be positive");
    if (o.average && std::is_integral_v<value_type>)
      detail::bad_option(name, "averaging needs a floating-point value type");
    return {o.dimension, o.dense};
  }

  /// This step's context. Its step count and the schedule's argument are the
  /// steps taken: a skipped step never happened for Adam's bias correction,
  /// HEAVYMIX's per-step seed or a schedule.
  detail::step_context<value_type, device_type> context() {
    const std::uint64_t taken = accounting_.stats().taken_steps();
    const value_type eta = opt_.schedule ? opt_.schedule(taken) : opt_.learning_rate;
    return {rank_, world_, opt_.average, eta, taken, &split_, &device_, &accounting_, name_};
  }

  [[nodiscard]] comm_counters counters() const noexcept {
    if constexpr (external) {
      return external_counters_;
    } else {
      return comm_->counters();
    }
  }

  /// After the caller carried `r`: its traffic by sketchsgd's byte model.
  void count(const round_type& r) {
    if constexpr (external) external_counters_ = external_counters_ + detail::modeled_bytes(r, rank_, world_);
  }

  /// Carries a step's rounds over the transport: an overlapped round on the
  /// carrier's thread while the step computes on.
  const model_update<value_type>& carry(step_generator rounds) requires(!external) {
    bool in_flight = false;  // an overlapped round on the carrier's thread
    try {
      while (const round_type* r = rounds.next()) {
        if (std::exchange(in_flight, false)) carrier_->wait();  // rounds are carried in order, one at a time
        if (r->overlap) {
          if (!carrier_) carrier_ = std::make_unique<detail::round_carrier>();
          carrier_->start([this, round = *r] { detail::run_round(*comm_, round); });
          in_flight = true;
        } else {
          detail::run_round(*comm_, *r);
        }
      }
    } catch (...) {
      if (in_flight) {
        try {
          carrier_->wait();
        } catch (...) {  // NOLINT(bugprone-empty-catch): the step's own error is the one to report
        }
      }
      throw;
    }
    return update_;
  }

  /// The device runs one call as `how` says, then as the options say.
  class call_execution {
   public:
    call_execution(composed_optimizer& o, const std::optional<execution_type>& how) : o_(how ? &o : nullptr) {
      if (how) ops::run_as(o.device_, *how);
    }
    ~call_execution() {
      if (o_ != nullptr) ops::run_as(o_->device_, o_->opt_.exec);
    }
    call_execution(const call_execution&) = delete;
    call_execution& operator=(const call_execution&) = delete;

   private:
    composed_optimizer* o_;
  };

  /// Checks the gradient's size and starts the step.
  step_generator start(any_gradient gradient, std::optional<execution_type> how = {}) {
    if (gradient.size() != opt_.dimension) {
      throw std::invalid_argument(std::string(name_) + "::step: gradient has " + std::to_string(gradient.size()) +
                                  " values, expected " + std::to_string(opt_.dimension));
    }
    return run(gradient, std::move(how));
  }

  /// The step as a coroutine: see the class comment.
  step_generator run(any_gradient gradient, std::optional<execution_type> how) {
    const call_execution call(*this, how);  // in the frame: from the first next() to the end
    accounting_.begin(counters());
    update_.indices.clear();  // keeps the capacity
    update_.values.clear();
    update_.dense = update_.skipped = false;
    update_.decay = value_type{0};
    if (opt_.nonfinite != nonfinite_policy::unchecked) {
      bad_ = ops::count_nonfinite(gradient, device_);
      const round_type check{.counts = std::span<std::int64_t>(&bad_, 1)};
      co_yield check;
      count(check);
      if (bad_ != 0 && opt_.nonfinite == nonfinite_policy::throw_error) {
        throw nonfinite_error(std::string(name_) + ": " + std::to_string(bad_) +
                              " non-finite gradient values across the ranks; the step was not taken");
      }
      update_.skipped = bad_ != 0;
    }
    accounting_.lap(&step_timing::communicate);
    if (!update_.skipped) {
      const auto c = context();
      if constexpr (takes_any_gradient) {
        agg_.accumulate(gradient, c);
      } else {  // a policy that takes its value type only
        agg_.accumulate(gradient.native(), c);
      }
      ops::gather_dense(agg_.source(), split_, std::span<value_type>(dense_values_), device_);
      accounting_.lap(&step_timing::local);
      auto rounds = agg_.rounds(c, update_);
      while (round_type* r = rounds.next()) {
        co_yield *r;
        count(*r);
        accounting_.lap(&step_timing::communicate);
      }
      if (!dense_values_.empty()) {
        const round_type dense = sum_round(std::span<value_type>(dense_values_));
        co_yield dense;
        count(dense);
        accounting_.lap(&step_timing::communicate);
      }
      if (opt_.average && !detail::hooks::averages_itself(agg_)) average(update_.values);
      if (opt_.average) average(dense_values_);
      detail::hooks::finish_dense(agg_, std::span<value_type>(dense_values_), c);
      detail::merge_with_dense(split_, update_.indices, update_.values, std::span<const value_type>(dense_values_));
      detail::hooks::apply_rule(rule_, update_, c.learning_rate, detail::hooks::learning_rate_in_error(agg_), c.step,
                                device_);
      ops::finish(device_);
      accounting_.lap(&step_timing::local);
    }
    accounting_.end(counters(), update_.skipped);
  }

  void average(std::vector<value_type>& x) const noexcept {
    detail::average_in_place(std::span<value_type>(x), world_, true);
  }

  /// Visits every policy's state: the aggregation's, then the rule's.
  template <class F>
  void for_each_state(F&& f) {
    detail::hooks::for_each_state(agg_, f);
    detail::hooks::for_each_state(rule_, f);
  }
  [[nodiscard]] std::uint32_t section_count() {
    std::uint32_t n = 0;
    for_each_state([&](auto) { ++n; });
    return n;
  }

  detail::state_header header(std::uint64_t steps) const {
    return {kind_,
            wire::value_type_code<value_type>,
            fingerprint_,
            steps,
            static_cast<std::uint32_t>(rank_),
            static_cast<std::uint32_t>(world_),
            const_cast<composed_optimizer*>(this)->section_count(),
            version_};
  }

  /// load_redivided (`complete`: every old rank, in rank order) and
  /// load_survivors: see there.
  void redivide(std::span<std::istream* const> old, bool complete) {
    if (old.empty()) throw std::invalid_argument(std::string(name_) + " load_redivided: no states given");
    int old_world = static_cast<int>(old.size());
    std::vector<bool> seen;
    std::uint64_t steps = 0;
    int first_rank = 0;
    for (std::size_t i = 0; i < old.size(); ++i) {
      std::string head(detail::state_header_bytes, '\0');
      old[i]->read(head.data(), static_cast<std::streamsize>(head.size()));
      if (static_cast<std::size_t>(old[i]->gcount()) != head.size()) detail::bad_state(name_, "truncated header");
      const auto* b = reinterpret_cast<const std::byte*>(head.data());
      const auto rank = static_cast<int>(wire::load_le<std::uint32_t>(b + 24));
      const auto world = static_cast<int>(wire::load_le<std::uint32_t>(b + 28));
      if (!complete) {
        if (i == 0) old_world = world;
        if (seen.empty()) seen.assign(static_cast<std::size_t>(std::max(old_world, 1)), false);
        if (rank < 0 || rank >= old_world) {
          throw config_mismatch_error(std::string(name_) + " load_survivors: a state of rank " + std::to_string(rank) +
                                      " of " + std::to_string(world) + " among states of a world of " +
                                      std::to_string(old_world));
        }
        if (seen[static_cast<std::size_t>(rank)]) {
          throw config_mismatch_error(std::string(name_) + " load_survivors: rank " + std::to_string(rank) +
                                      " of " + std::to_string(world) + " is given twice");
        }
      }
      detail::state_header expected = header(0);
      expected.fingerprint = fingerprint_at(old_world);
      expected.rank = static_cast<std::uint32_t>(complete ? static_cast<int>(i) : rank);
      expected.world = static_cast<std::uint32_t>(old_world);
      std::istringstream checked(head);
      const std::uint64_t s = detail::read_state_header(checked, expected, name_);
      if (!complete) seen[static_cast<std::size_t>(rank)] = true;
      if (i > 0 && s != steps) {
        throw config_mismatch_error(std::string(name_) + " load_redivided: rank " + std::to_string(rank) +
                                    " saved after " + std::to_string(s) + " steps, rank " +
                                    std::to_string(first_rank) + " after " + std::to_string(steps));
      }
      if (i == 0) first_rank = rank;
      steps = s;
    }
    constexpr std::size_t own = detail::hooks::rank_sections<Aggregation>();
    std::vector<std::vector<value_type>> read;
    for_each_state([&](auto s) {
      const std::size_t section = read.size();
      const bool per_rank = [&] {  // (no comparison with a constant 0: nvcc -Werror calls it pointless)
        if constexpr (own == 0) return false;
        else return section < own;
      }();
      std::vector<value_type>& mine = read.emplace_back(s.size());
      std::vector<value_type> other(s.size());
      detail::read_state_section(*old[0], std::span<value_type>(mine), name_);
      for (std::size_t r = 1; r < old.size(); ++r) {
        detail::read_state_section(*old[r], std::span<value_type>(other), name_);
        if (per_rank) {
          for (std::size_t i = 0; i < mine.size(); ++i) mine[i] += other[i];
        } else if (other != mine) {
          throw config_mismatch_error(std::string(name_) + " load_redivided: state section " + std::to_string(section) +
                                      " differs between the old ranks' states 0 and " + std::to_string(r) +
                                      ", though every rank should hold the same (a root topology's server state "
                                      "lives on the root alone)");
        }
      }
      if (per_rank) {
        for (value_type& x : mine) x /= static_cast<value_type>(world_);
      }
    });
    std::size_t at = 0;
    for_each_state([&](auto s) { ops::upload(std::span<const value_type>(read[at++]), s, device_); });
    accounting_.stats().steps = steps;
    accounting_.stats().skipped_steps = 0;
  }

  /// The fingerprint of this configuration in a world of `world` ranks.
  [[nodiscard]] std::uint64_t fingerprint_at(int world) const {
    return version_ == 1 ? named_fingerprint_(split_, world) : composed_fingerprint(world);
  }

  /// Version 2: every field of the driver and of each policy.
  [[nodiscard]] std::uint64_t composed_fingerprint(int world) const {
    detail::fingerprint f;
    f.add(std::uint8_t{2}).add(kind_).add(wire::value_type_code<value_type>).add(opt_.dimension).add(opt_.average);
    f.add(split_.dense().size());
    for (const dense_range& r : split_.dense()) f.add(r.offset).add(r.length);
    f.add(opt_.nonfinite).add(world);
    detail::hooks::describe(agg_, f);
    detail::hooks::describe(rule_, f);
    return f.value();
  }

  comm_type* comm_;
  int rank_;
  int world_;
  options_type opt_;
  detail::optimizer_kind kind_;
  const char* name_;
  detail::coordinate_split split_;
  typename ops::context device_;
  detail::step_accounting accounting_;
  Aggregation agg_;
  UpdateRule rule_;
  std::vector<value_type> dense_values_;  // the dense coordinates' values, then their update
  std::int64_t bad_ = 0;                  // non-finite values across the ranks
  comm_counters external_counters_;
  std::uint8_t version_ = 2;
  std::function<std::uint64_t(const detail::coordinate_split&, int)> named_fingerprint_;  // version 1
  std::uint64_t fingerprint_ = 0;
  model_update<value_type> update_;
  std::unique_ptr<detail::round_carrier> carrier_;  // carries overlapped rounds; started with the first
};

}  // namespace sketchsgd
