// SPDX-License-Identifier: Apache-2.0
// Composing your own distributed optimizers from sketchsgd's parts: a new
// update rule and a new aggregation policy, each a small class; the driver
// (`composed_optimizer`) gives both the non-finite check, configuration
// fingerprints, byte accounting, dense ranges and checkpoints.
//
// 1. `catch_up_adam`: lazy Adam whose moments catch up on the steps a
//    coordinate missed, over Sketched-SGD's aggregation.
// 2. `random_k_aggregation`: random-k with error feedback (Stich et al.
//    2018): every rank sums v at the same k random coordinates.
//
// Runs 4 in-process workers on a problem with a planted sparse optimum and
// prints, for both, the distance to it, the bytes sent, and whether a
// checkpoint taken half-way resumes to the same bits.

#include <sketchsgd/sketchsgd.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <thread>
#include <unordered_set>
#include <vector>

namespace {

// ---- a new update rule ----------------------------------------------------------

/// Lazy Adam on the aggregated sparse gradient, identical on every rank:
/// moments move only at the coordinates the aggregation returned, first
/// decayed for the steps that coordinate missed (beta^missed), then updated
/// as Adam's. The library's `adam_update` has dense and lazy (no catch-up)
/// moments; this rule shows what a rule provides (`sketchsgd::update_rule`).
/// Adam's step is scale-free: eta must not sit in an error memory, which the
/// default `takes_applied_learning_rate = false` tells the driver.
template <sketchsgd::sketch_value Value>
class catch_up_adam {
 public:
  struct options_type {
    Value beta1 = Value(0.9);
    Value beta2 = Value(0.999);
    Value epsilon = Value(1e-8);
  };

  catch_up_adam(const options_type& o, std::uint64_t d, const char* /*name*/) : opt_(o), m_(d), s_(d), last_(d) {}

  /// The aggregated gradient `u` in, the update out (in place).
  void apply(sketchsgd::model_update<Value>& u, Value eta, bool /*eta_applied*/, std::uint64_t step) {
    const auto t = static_cast<Value>(step + 1);
    for (std::size_t j = 0; j < u.values.size(); ++j) {
      const std::size_t i = u.dense ? j : u.indices[j];
      const Value missed = t - last_[i] - 1;
      const Value g = u.values[j];
      m_[i] = opt_.beta1 * m_[i] * std::pow(opt_.beta1, missed) + (1 - opt_.beta1) * g;
      s_[i] = opt_.beta2 * s_[i] * std::pow(opt_.beta2, missed) + (1 - opt_.beta2) * g * g;
      last_[i] = t;
      const Value m_hat = m_[i] / (1 - std::pow(opt_.beta1, t));
      const Value s_hat = s_[i] / (1 - std::pow(opt_.beta2, t));
      u.values[j] = eta * m_hat / (std::sqrt(s_hat) + opt_.epsilon);
    }
  }
  /// The state a checkpoint holds.
  template <class F>
  void for_each_state(F&& f) {
    f(std::span<Value>(m_));
    f(std::span<Value>(s_));
    f(std::span<Value>(last_));
  }
  /// What every rank must agree on.
  void describe(sketchsgd::fingerprint& f) const {
    f.add(std::uint8_t{0xA1}).add(opt_.beta1).add(opt_.beta2).add(opt_.epsilon);
  }

 private:
  options_type opt_;
  std::vector<Value> m_, s_, last_;  // last_: the step a coordinate last moved (exact below 2^24)
};

// ---- a new aggregation policy ---------------------------------------------------

/// Random-k with error feedback: each step every rank draws the same k
/// coordinates (seed and step), sums its error memory there with one
/// allreduce of k values (a split-phase round too), and resets it there.
/// It writes what `sketchsgd::aggregation_policy` requires and `describe`;
/// its error memory gives it the memory's hooks (accumulate, state, ...)
/// and its value and device types, the driver the rest (kind `custom`, the
/// division by W).
template <sketchsgd::sketch_value Value>
class random_k_aggregation : public sketchsgd::error_memory<Value, sketchsgd::cpu_t> {
  using context = sketchsgd::step_context<Value, sketchsgd::cpu_t>;

 public:
  struct options_type {
    std::size_t k = 0;
    std::uint64_t seed = 0;
    sketchsgd::error_feedback<Value> feedback{};
  };
  static constexpr const char* name = "random_k_aggregation";

  random_k_aggregation(const options_type& o, const context& c)
      : sketchsgd::error_memory<Value, sketchsgd::cpu_t>(o.feedback, c.split->dimension(), *c.device), opt_(o) {
    if (o.k == 0 || o.k > c.split->sparse_count()) throw std::invalid_argument("random_k: k out of range");
  }

  sketchsgd::round_generator<Value> rounds(const context& c, sketchsgd::model_update<Value>& out) {
    std::vector<std::uint64_t> chosen;  // k distinct sparse coordinates, the same on every rank
    std::unordered_set<std::uint64_t> seen(2 * opt_.k);
    sketchsgd::splitmix64 rng(sketchsgd::mix64(opt_.seed ^ c.step));
    while (chosen.size() < opt_.k) {
      const std::uint64_t i = rng.next_below(c.split->sparse_count());
      if (seen.insert(i).second) chosen.push_back(i);
    }
    std::sort(chosen.begin(), chosen.end());
    c.split->to_global(chosen);
    out.values.resize(chosen.size());
    for (std::size_t j = 0; j < chosen.size(); ++j) out.values[j] = this->v()[chosen[j]];
    co_yield sketchsgd::sum_round(std::span<Value>(out.values));
    out.indices = chosen;
    this->mask(chosen, *c.device);
  }

  void describe(sketchsgd::fingerprint& f) const {  // what every rank must agree on
    f.add(opt_.k).add(opt_.seed);
    sketchsgd::error_memory<Value, sketchsgd::cpu_t>::describe(f);
  }

 private:
  options_type opt_;
};

// ---- running both ---------------------------------------------------------------

constexpr int workers = 4;
constexpr std::size_t d = 200'000;
constexpr int steps = 150;

/// Trains with the optimizer `make(comm)` builds; returns rank 0's distance
/// to the optimum, its bytes sent, and whether resuming from the checkpoint
/// taken at step 75 reproduced the last step's parameters bit for bit.
template <class Make>
void run(const char* what, Make make) {
  std::vector<float> target(d, 0.0F);
  sketchsgd::splitmix64 rng(3);
  for (int n = 0; n < 100; ++n) target[rng.next_below(d)] = (rng.next() & 1U) != 0 ? 1.0F : -1.0F;
  sketchsgd::inproc_world world(workers);
  double distance = 0;
  std::uint64_t bytes = 0;
  bool resumed_same = true;
  {
    std::vector<std::jthread> threads;
    for (int r = 0; r < workers; ++r) {
      threads.emplace_back([&, r] {
        auto transport = world.transport(r);
        sketchsgd::communicator comm(transport);
        auto opt = make(comm);
        auto copy = make(comm);  // resumes from the half-way checkpoint
        std::vector<float> x(d, 0.0F), x_copy;
        std::vector<float> g(d);
        std::stringstream checkpoint;
        for (int step = 0; step < steps; ++step) {
          if (step == steps / 2) {
            opt.save(checkpoint);
            copy.load(checkpoint);
            x_copy = x;
          }
          // Worker r sees the gradient of 1/2 |x - target|^2 scaled by its share.
          const float share = (r % 2 == 0 ? 1.3F : 0.7F) / workers;
          for (std::size_t i = 0; i < d; ++i) g[i] = share * (x[i] - target[i]);
          opt.step(g).apply(std::span<float>(x));
          if (step >= steps / 2) {
            for (std::size_t i = 0; i < d; ++i) g[i] = share * (x_copy[i] - target[i]);
            copy.step(g).apply(std::span<float>(x_copy));
          }
        }
        if (r != 0) return;
        double sq = 0;
        for (std::size_t i = 0; i < d; ++i) sq += (x[i] - target[i]) * (x[i] - target[i]);
        distance = std::sqrt(sq / 100.0);
        bytes = opt.stats().total.bytes_sent;
        resumed_same = x == x_copy;
      });
    }
  }
  const double dense_bytes = steps * 2.0 * (workers - 1) / workers * 4.0 * d;
  std::printf("%s: relative distance %.2e, %.2f MB sent per worker (%.1fx less than dense), resumed run %s\n", what,
              distance, static_cast<double>(bytes) / 1e6, dense_bytes / static_cast<double>(bytes),
              resumed_same ? "identical" : "DIFFERENT");
  if (distance > 0.05 || !resumed_same) std::exit(1);
}

}  // namespace

int main() {
  using T = sketchsgd::inproc_transport;
  run("Sketched-SGD aggregation + catch-up Adam", [](sketchsgd::communicator<T>& comm) {
    return sketchsgd::composed_optimizer<sketchsgd::sketched_aggregation<float>, catch_up_adam<float>, T>(
        comm, {.dimension = d,
               .aggregation = {.sketch = {.rows = 5, .cols = 4000, .seed = 7}, .k = 200},
               .learning_rate = 0.05F,
               .average = true});
  });
  run("random-k aggregation + SGD", [](sketchsgd::communicator<T>& comm) {
    return sketchsgd::composed_optimizer<random_k_aggregation<float>, sketchsgd::sgd_update<float>, T>(
        comm, {.dimension = d, .aggregation = {.k = 20'000, .seed = 9}, .learning_rate = 0.12F, .average = true});
  });
}
