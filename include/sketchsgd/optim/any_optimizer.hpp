// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// A type-erased optimizer, so that a program can pick a method at run time.

#include <istream>
#include <memory>
#include <ostream>
#include <span>
#include <type_traits>
#include <utility>

#include "sketchsgd/optim/concepts.hpp"

namespace sketchsgd {

/// Holds any `distributed_optimizer` with value type `Value` and gradient
/// type `Gradient` behind one interface (one virtual call per step).
/// @tparam Value a `sketch_value`.
/// @tparam Gradient the gradient the held optimizers take.
template <sketch_value Value, class Gradient = std::span<const Value>>
class any_optimizer {
 public:
  using value_type = Value;        ///< the value type
  using gradient_type = Gradient;  ///< what `step` takes

  /// Takes `opt` over.
  template <distributed_optimizer O>
  requires(!std::is_same_v<std::remove_cvref_t<O>, any_optimizer>)
      any_optimizer(O&& opt)  // NOLINT(google-explicit-constructor): like std::function
      : self_(std::make_unique<model<std::remove_cvref_t<O>>>(std::forward<O>(opt))) {}

  /// Constructs an `O` from `args` in place.
  template <distributed_optimizer O, class... Args>
  explicit any_optimizer(std::in_place_type_t<O> /*type*/, Args&&... args)
      : self_(std::make_unique<model<O>>(std::forward<Args>(args)...)) {}

  /// See `composed_optimizer::step`.
  const model_update<Value>& step(Gradient g) { return self_->step(g); }
  /// See `composed_optimizer::stats`.
  [[nodiscard]] const comm_stats& stats() const { return self_->stats(); }
  /// See `composed_optimizer::set_learning_rate`.
  void set_learning_rate(Value eta) { self_->set_learning_rate(eta); }
  /// See `composed_optimizer::save`.
  void save(std::ostream& os) const { self_->save(os); }
  /// See `composed_optimizer::load`.
  void load(std::istream& is) { self_->load(is); }

 private:
  struct held {
    held() = default;
    held(const held&) = delete;
    held& operator=(const held&) = delete;
    virtual ~held() = default;
    virtual const model_update<Value>& step(Gradient g) = 0;
    [[nodiscard]] virtual const comm_stats& stats() const = 0;
    virtual void set_learning_rate(Value eta) = 0;
    virtual void save(std::ostream& os) const = 0;
    virtual void load(std::istream& is) = 0;
  };
  template <class O>
  struct model final : held {
    template <class... Args>
    explicit model(Args&&... args) : opt(std::forward<Args>(args)...) {}
    const model_update<Value>& step(Gradient g) override { return opt.step(g); }
    [[nodiscard]] const comm_stats& stats() const override { return opt.stats(); }
    void set_learning_rate(Value eta) override { opt.set_learning_rate(eta); }
    void save(std::ostream& os) const override { opt.save(os); }
    void load(std::istream& is) override { opt.load(is); }
    O opt;
  };
  std::unique_ptr<held> self_;
};

}  // namespace sketchsgd
