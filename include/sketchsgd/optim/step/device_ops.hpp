// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The per-coordinate operations optimizer policies need, one interface for
/// every device: `device_ops<cpu_t>` here, `device_ops<cuda_t>` in
/// sketchsgd/cuda/optim_ops.cuh. Policies hold `buffer`s, compute through
/// these functions and get every result a collective or a rule needs (an
/// update, candidates, gathered values) in host memory.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "sketchsgd/detail/parallel.hpp"
#include "sketchsgd/device.hpp"
#include "sketchsgd/execution.hpp"
#include "sketchsgd/optim/model_update.hpp"
#include "sketchsgd/optim/step/coordinates.hpp"
#include "sketchsgd/optim/step/gradient.hpp"
#include "sketchsgd/sketch/count_sketch.hpp"
#include "sketchsgd/sketch/topk.hpp"

namespace sketchsgd::detail {

/// Specialized per device tag.
template <class Device>
struct device_ops;

/// Host memory, loops and the CPU kernels; `context` is the thread count.
template <>
struct device_ops<cpu_t> {
  template <class T>
  using buffer = std::vector<T>;
  template <class T>
  using span = std::span<T>;
  /// A gradient as the caller holds it (16-bit storage too, for float).
  template <class V>
  using gradient = gradient_span<V>;
  /// How kernels run, as options give it.
  using execution = cpu_execution;
  /// What every call runs with (CUDA: stream, workspace, staging).
  struct context {
    cpu_execution exec{};
  };
  /// The calls that follow run as `e` says (a step's own threads).
  static void run_as(context& c, const execution& e) noexcept { c.exec = e; }
  template <class T>
  static buffer<T> zeros(std::size_t n) {
    return buffer<T>(n, T{});
  }
  template <class T>
  static buffer<T> zeros(std::size_t n, context&) {
    return zeros<T>(n);
  }

  /// u <- m u + g;  v <- v + s x (error feedback) or v <- s x, where x = u,
  /// or g + m u with `nesterov`; s = 1 leaves v += u bit for bit. Element by
  /// element, so the threads of `c.exec` split it with the same bits. A
  /// 16-bit g is read as V on the fly (exactly): the same bits as from its
  /// values in V.
  template <class V>
  static void momentum_error(span<V> u, span<V> v, gradient<V> g, V m, V s, bool feedback, bool nesterov, context& c) {
    g.visit([&](auto typed) { momentum_error(u, v, typed, m, s, feedback, nesterov, c); });
  }
  template <class V, class G>
  static void momentum_error(span<V> u, span<V> v, span<const G> g, V m, V s, bool feedback, bool nesterov,
                             context& c) {
    const auto run = [&](auto with_feedback, auto with_nesterov, std::size_t begin, std::size_t end) {
      V* const up = u.data();
      V* const vp = v.data();
      const G* const gp = g.data();
      for (std::size_t i = begin; i < end; ++i) {
        const V gi = static_cast<V>(gp[i]);
        up[i] = m * up[i] + gi;
        const V x = with_nesterov ? gi + m * up[i] : up[i];
        vp[i] = with_feedback ? vp[i] + s * x : s * x;
      }
    };
    using yes = std::true_type;
    using no = std::false_type;
    const unsigned workers = useful_workers(c.exec.resolved_threads(), g.size(), std::size_t{1} << 18U);
    fork_join(workers, [&](unsigned w, unsigned nw) {
      const index_range r = split_range(g.size(), w, nw);
      if (feedback) {
        nesterov ? run(yes{}, yes{}, r.begin, r.end) : run(yes{}, no{}, r.begin, r.end);
      } else {
        nesterov ? run(no{}, yes{}, r.begin, r.end) : run(no{}, no{}, r.begin, r.end);
      }
    });
  }

  template <class V>
  static void zero_at(span<V> x, std::span<const std::uint64_t> indices, context&) noexcept {
    for (const std::uint64_t i : indices) x[i] = V{};
  }
  template <class V>
  static void zero_ranges(span<V> x, const coordinate_split& split, context&) noexcept {
    for (const dense_range& r : split.dense())
      std::fill_n(x.begin() + static_cast<std::ptrdiff_t>(r.offset), r.length, V{});
  }
  /// x at `indices`, in host memory.
  template <class V>
  static std::vector<V> gather(span<const V> x, std::span<const std::uint64_t> indices, context&) {
    std::vector<V> out(indices.size());
    for (std::size_t j = 0; j < out.size(); ++j) out[j] = x[indices[j]];
    return out;
  }
  /// The dense coordinates of x, in range order, into host `out`.
  template <class V>
  static void gather_dense(span<const V> x, const coordinate_split& split, std::span<V> out, context&) noexcept {
    split.gather_dense(x, out);
  }
  template <class V>
  static void gather_dense(gradient<V> x, const coordinate_split& split, std::span<V> out, context&) noexcept {
    x.visit([&](auto typed) { split.gather_dense(typed, out); });
  }
  /// The sparse coordinates of x, renumbered contiguously, into `out`.
  template <class V>
  static void compact(span<const V> x, const coordinate_split& split, span<V> out, context&) noexcept {
    for (const auto& seg : split.segments()) {
      std::copy_n(x.begin() + static_cast<std::ptrdiff_t>(seg.global), seg.length,
                  out.begin() + static_cast<std::ptrdiff_t>(seg.compact));
    }
  }
  /// `out` becomes a host copy of x (one pass: no zero-fill first).
  template <class V>
  static void assign(gradient<V> x, std::vector<V>& out, context&) {
    x.visit([&](auto typed) {
      if constexpr (std::is_same_v<typename decltype(typed)::value_type, V>) {
        out.assign(typed.begin(), typed.end());
      } else {
        out.resize(typed.size());
        std::transform(typed.begin(), typed.end(), out.begin(), [](auto h) { return static_cast<V>(h); });
      }
    });
  }
  /// Copies host values into a state section, and a host view of one.
  template <class V>
  static void upload(std::span<const V> from, span<V> to, context&) noexcept {
    std::copy(from.begin(), from.end(), to.begin());
  }
  template <class V>
  static span<V> download(span<V> x, context&) noexcept {
    return x;
  }
  /// Host memory holding x for a round (x itself here), and back.
  template <class V>
  static std::span<V> stage(span<V> x, context&) noexcept {
    return x;
  }
  template <class V>
  static void unstage(std::span<V>, span<V>, context&) noexcept {}

  template <class V>
  static std::int64_t count_nonfinite(gradient<V> x, context&) noexcept {
    return x.visit([](auto typed) {
      std::int64_t bad = 0;
      if constexpr (std::is_floating_point_v<V>) {
        for (const auto e : typed) bad += std::isfinite(static_cast<V>(e)) ? 0 : 1;
      }
      return bad;
    });
  }
  /// x /= w, element by element (how averages are taken everywhere).
  template <class V>
  static void divide(span<V> x, V w, context&) noexcept {
    for (V& e : x) e /= w;
  }

  /// `params -= factor * u` (decay first).
  template <class V>
  static void apply(const model_update<V>& u, span<V> params, V factor, context&) {
    u.apply(params, factor);
  }
  /// The end of a step: its device work complete (CUDA without a stream).
  static void finish(context&) noexcept {}

  /// An update rule's pass: each value x of `u` at coordinate i becomes
  /// f(i, x); with `dense`, at all d coordinates (zero off u's support).
  /// f reads and writes the rule's state at i only, so threads split it.
  template <class V, class F>
  static void map_update(model_update<V>& u, std::uint64_t d, bool dense, const F& f, context& c) {
    u.check_fits(static_cast<std::size_t>(d), "update rule");  // f indexes d-sized state
    if (dense && !u.dense) {
      // In u's own buffer, whose capacity the driver and the aggregations
      // keep from step to step: no d-sized allocation (and page faults)
      // after the first step.
      const std::vector<V> support(u.values);
      u.values.assign(static_cast<std::size_t>(d), V{});
      for (std::size_t j = 0; j < u.indices.size(); ++j) u.values[u.indices[j]] = support[j];
      u.indices.clear();
      u.dense = true;
    }
    const unsigned workers = useful_workers(c.exec.resolved_threads(), u.values.size(), std::size_t{1} << 18U);
    fork_join(workers, [&](unsigned w, unsigned nw) {
      const index_range r = split_range(u.values.size(), w, nw);
      V* const x = u.values.data();
      if (u.dense) {  // a loop of its own: the compiler vectorizes it
        for (std::size_t i = r.begin; i < r.end; ++i) x[i] = f(i, x[i]);
      } else {
        for (std::size_t j = r.begin; j < r.end; ++j) x[j] = f(u.indices[j], x[j]);
      }
    });
  }

  /// The sketch of x's sparse coordinates (rows [first, first + count)).
  template <class Sketch, class V>
  static void sketch(Sketch& s, span<const V> x, const coordinate_split& split, std::size_t first, std::size_t count,
                     context& c) {
    sketch(s, gradient<V>(x), split, first, count, c);
  }
  template <class Sketch, class V>
  static void sketch(Sketch& s, gradient<V> x, const coordinate_split& split, std::size_t first, std::size_t count,
                     context& c) {
    x.visit([&](auto typed) {
      for (const auto& seg : split.segments()) {
        s.accumulate_rows(typed.subspan(static_cast<std::size_t>(seg.global), static_cast<std::size_t>(seg.length)),
                          seg.compact, first, count, c.exec);
      }
    });
  }
  template <class Sketch>
  static void zero(Sketch& s, context&) noexcept {
    s.zero();
  }
  /// The `count` largest |estimate| of the first d coordinates; `scratch`
  /// holds d values.
  template <class Sketch, class V>
  static sparse_update<V> top_k(const Sketch& s, std::uint64_t d, std::size_t count, span<V> scratch, context& c) {
    return sketchsgd::top_k(s, d, count, scratch, c.exec);
  }
  template <class V>
  static sparse_update<V> top_k(span<const V> x, std::size_t count, context& c) {
    return sketchsgd::top_k(x, count, c.exec);
  }
  /// The sketch's estimate of ||x||_2.
  template <class Sketch>
  static double l2_estimate(const Sketch& s, context&) noexcept {
    return s.l2_estimate();
  }
  /// The sketch's estimates at host `keys`, into host `out`.
  template <class Sketch, class V>
  static void estimate(const Sketch& s, std::span<const std::uint64_t> keys, std::span<V> out, context&) noexcept {
    for (std::size_t j = 0; j < keys.size(); ++j) out[j] = s.estimate(keys[j]);
  }
  template <class Sketch>
  static void zero_buckets_of(Sketch& s, std::span<const std::uint64_t> indices, context&) noexcept {
    s.zero_buckets_of(indices);
  }
  /// s += the sketch of (indices, values).
  template <class Sketch, class V>
  static void add_sparse(Sketch& s, std::span<const std::uint64_t> indices, std::span<const V> values, context&) {
    s.accumulate(indices, values);
  }
};

}  // namespace sketchsgd::detail
