// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// A type-erased optimizer, so that a program can pick a method at run time
/// (see `make_optimizer` in methods.hpp), over a transport or in split phase.

#include <cstdint>
#include <istream>
#include <memory>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "sketchsgd/optim/concepts.hpp"
#include "sketchsgd/optim/step/gradient.hpp"

namespace sketchsgd {

/// Holds any `distributed_optimizer` or `split_phase_optimizer` with value
/// type `Value` and gradient type `Gradient` behind one interface (one
/// virtual call per step). A composed optimizer over a transport has both
/// forms; one with `external_collectives` only `step_rounds`. A member the
/// held optimizer lacks throws std::logic_error.
/// @tparam Value a `sketch_value`.
/// @tparam Gradient the gradient the held optimizers take.
template <sketch_value Value, class Gradient = std::span<const Value>>
class any_optimizer {
  static constexpr bool host_float = std::is_same_v<Gradient, std::span<const float>>;  // 16-bit steps too

 public:
  using value_type = Value;        ///< the value type
  using gradient_type = Gradient;  ///< what `step` takes

  /// Takes `opt` over.
  template <class O>
  requires(!std::is_same_v<std::remove_cvref_t<O>, any_optimizer> &&
           (distributed_optimizer<std::remove_cvref_t<O>> || split_phase_optimizer<std::remove_cvref_t<O>>))
      any_optimizer(O&& opt)  // NOLINT(google-explicit-constructor): like std::function
      : self_(std::make_unique<model<std::remove_cvref_t<O>>>(std::forward<O>(opt))) {}

  /// Constructs an `O` from `args` in place.
  template <class O, class... Args>
  requires(distributed_optimizer<O> ||
           split_phase_optimizer<O>) explicit any_optimizer(std::in_place_type_t<O> /*type*/, Args&&... args)
      : self_(std::make_unique<model<O>>(std::forward<Args>(args)...)) {}

  /// See `composed_optimizer::step`.
  const model_update<Value>& step(Gradient g) { return self_->step(g); }
  /// See `composed_optimizer::step_rounds`: the step's rounds, for the
  /// caller to carry; then `last_update()` holds the update.
  [[nodiscard]] round_generator<Value> step_rounds(Gradient g) { return self_->step_rounds(g); }
  /// The same with a 16-bit gradient, for host float optimizers (see
  /// `composed_optimizer::takes_16_bit`); one that takes none throws
  /// std::logic_error.
  const model_update<Value>& step(std::span<const bfloat16_t> g) requires host_float { return self_->step16(g); }
  /// The same with float16 values.
  const model_update<Value>& step(std::span<const float16_t> g) requires host_float { return self_->step16(g); }
  /// `step_rounds` of a bfloat16 gradient (see `step`).
  [[nodiscard]] round_generator<Value> step_rounds(std::span<const bfloat16_t> g) requires host_float {
    return self_->step_rounds16(g);
  }
  /// `step_rounds` of a float16 gradient (see `step`).
  [[nodiscard]] round_generator<Value> step_rounds(std::span<const float16_t> g) requires host_float {
    return self_->step_rounds16(g);
  }
  /// See `composed_optimizer::last_update`.
  [[nodiscard]] const model_update<Value>& last_update() const { return self_->last_update(); }
  /// See `composed_optimizer::stats`.
  [[nodiscard]] const comm_stats& stats() const { return self_->stats(); }
  /// See `composed_optimizer::set_learning_rate`.
  void set_learning_rate(Value eta) { self_->set_learning_rate(eta); }
  /// See `composed_optimizer::fingerprint`.
  [[nodiscard]] std::uint64_t fingerprint() const { return self_->fingerprint(); }
  /// See `composed_optimizer::check_fingerprints`.
  /// @throws config_mismatch_error
  void check_fingerprints(std::span<const std::uint64_t> all) const { self_->check_fingerprints(all); }
  /// See `composed_optimizer::save`.
  void save(std::ostream& os) const { self_->save(os); }
  /// See `composed_optimizer::load`.
  void load(std::istream& is) { self_->load(is); }
  /// See `composed_optimizer::load_redivided`.
  void load_redivided(std::span<std::istream* const> old) { self_->load_redivided(old); }
  /// See `composed_optimizer::load_survivors`.
  void load_survivors(std::span<std::istream* const> states) { self_->load_survivors(states); }

 private:
  struct held {
    held() = default;
    held(const held&) = delete;
    held& operator=(const held&) = delete;
    virtual ~held() = default;
    virtual const model_update<Value>& step(Gradient g) = 0;
    virtual round_generator<Value> step_rounds(Gradient g) = 0;
    virtual const model_update<Value>& step16(gradient_span<Value> g) = 0;
    virtual round_generator<Value> step_rounds16(gradient_span<Value> g) = 0;
    [[nodiscard]] virtual const model_update<Value>& last_update() const = 0;
    [[nodiscard]] virtual const comm_stats& stats() const = 0;
    virtual void set_learning_rate(Value eta) = 0;
    [[nodiscard]] virtual std::uint64_t fingerprint() const = 0;
    virtual void check_fingerprints(std::span<const std::uint64_t> all) const = 0;
    virtual void save(std::ostream& os) const = 0;
    virtual void load(std::istream& is) = 0;
    virtual void load_redivided(std::span<std::istream* const> old) = 0;
    virtual void load_survivors(std::span<std::istream* const> states) = 0;
  };
  template <class O>
  struct model final : held {
    template <class... Args>
    explicit model(Args&&... args) : opt(std::forward<Args>(args)...) {}
    [[noreturn]] static void lacks(const char* what) {
      throw std::logic_error(std::string("any_optimizer: the optimizer held has no ") + what);
    }
    const model_update<Value>& step(Gradient g) override {
      if constexpr (requires { opt.step(g); }) return opt.step(g);
      lacks("transport (split phase: use step_rounds)");
    }
    round_generator<Value> step_rounds(Gradient g) override {
      if constexpr (requires { opt.step_rounds(g); }) return opt.step_rounds(g);
      lacks("split-phase form");
    }
    const model_update<Value>& step16(gradient_span<Value> g) override {
      return g.visit([&](auto typed) -> const model_update<Value>& {
        if constexpr (requires { opt.step(typed); }) return opt.step(typed);
        lacks("step taking this 16-bit gradient (a transport, and an aggregation that takes gradient_span)");
      });
    }
    round_generator<Value> step_rounds16(gradient_span<Value> g) override {
      return g.visit([&](auto typed) -> round_generator<Value> {
        if constexpr (requires { opt.step_rounds(typed); }) return opt.step_rounds(typed);
        lacks("split-phase step taking this 16-bit gradient (an aggregation that takes gradient_span)");
      });
    }
    [[nodiscard]] const model_update<Value>& last_update() const override {
      if constexpr (requires { opt.last_update(); }) return opt.last_update();
      lacks("last_update");
    }
    [[nodiscard]] const comm_stats& stats() const override { return opt.stats(); }
    void set_learning_rate(Value eta) override { opt.set_learning_rate(eta); }
    [[nodiscard]] std::uint64_t fingerprint() const override {
      if constexpr (requires { opt.fingerprint(); }) return opt.fingerprint();
      lacks("fingerprint");
    }
    void check_fingerprints(std::span<const std::uint64_t> all) const override {
      if constexpr (requires { opt.check_fingerprints(all); }) return opt.check_fingerprints(all);
      lacks("fingerprint");
    }
    void save(std::ostream& os) const override { opt.save(os); }
    void load(std::istream& is) override { opt.load(is); }
    void load_redivided(std::span<std::istream* const> old) override {
      if constexpr (requires { opt.load_redivided(old); }) return opt.load_redivided(old);
      lacks("load_redivided");
    }
    void load_survivors(std::span<std::istream* const> states) override {
      if constexpr (requires { opt.load_survivors(states); }) return opt.load_survivors(states);
      lacks("load_survivors");
    }
    O opt;
  };
  std::unique_ptr<held> self_;
};

}  // namespace sketchsgd
