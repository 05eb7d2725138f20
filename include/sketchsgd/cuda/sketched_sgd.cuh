// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Sketched-SGD (allreduce topology) and global-sketch SGD with device
/// gradients: momentum, error feedback, the sketch, unsketching and masking
/// run on the GPU; only the sketch table, the P k candidate values and the
/// update cross to the host (through pinned buffers) for the transport.

#include "sketchsgd/cuda/hash.cuh"  // first: the standard check, then the hash families (see there)

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sketchsgd/cuda/count_sketch.cuh"
#include "sketchsgd/cuda/error.cuh"
#include "sketchsgd/cuda/memory.cuh"
#include "sketchsgd/cuda/optim_kernels.cuh"
#include "sketchsgd/cuda/staging.cuh"
#include "sketchsgd/cuda/topk.cuh"
#include "sketchsgd/optim/accounting.hpp"
#include "sketchsgd/optim/coordinates.hpp"
#include "sketchsgd/optim/fingerprint.hpp"
#include "sketchsgd/optim/global_sketch_sgd.hpp"
#include "sketchsgd/optim/nonfinite.hpp"
#include "sketchsgd/optim/sketched_sgd.hpp"
#include "sketchsgd/optim/state_io.hpp"
#include "sketchsgd/optim/update.hpp"
#include "sketchsgd/serialize/wire.hpp"
#include "sketchsgd/sketch/sparse_update.hpp"
#include "sketchsgd/sketch/topk.hpp"

namespace sketchsgd {

/// How a device optimizer adds v into its sketch.
enum class cuda_accumulation {
  atomic,   ///< `count_sketch<cuda>::accumulate`: fastest; float tables vary in the last bits run to run
  ordered,  ///< `accumulate_ordered`: every cell summed in coordinate order, bit-identical to the CPU optimizer
};

/// Sketched-SGD with the allreduce topology (every rank recovers the same
/// update from the summed sketch) on device gradients: the algorithm of the
/// CPU `sketched_sgd` step for step (see its documentation), with
/// - u, v, the sketch, the d estimates and the candidate selection on the
///   device;
/// - the sketch table, the dense coordinates' v and the P k exact candidate
///   values reduced through `device_allreduce` or pinned staging buffers;
/// - the final choice among the P k candidates (a few thousand values, the
///   same on every rank), the learning rate and the bookkeeping on the host.
///
/// It takes the same options, computes the same configuration fingerprint and
/// writes the same checkpoints as the CPU optimizer of the same kind, so CPU
/// and GPU ranks may share a job and a checkpoint may move between them. With
/// `cuda_accumulation::ordered` (or integer values) every step's update is
/// bit-identical to the CPU optimizer's on the same gradients, provided the
/// CPU build does not fuse `m * u + g` into an FMA (x86-64 without -mfma, or
/// -ffp-contract=off).
///
/// Restrictions: the `root` topology is refused (std::invalid_argument); the
/// caller keeps every step of one optimizer on one stream (or synchronizes
/// between them).
///
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam HashFamily a `hash_family`.
template <sketch_value Value, transport Transport, hash_family HashFamily = multiply_shift>
class cuda_sketched_sgd {
  using optim = detail::cuda_optim_dispatch<Value>;

 public:
  /// The options type (shared with the CPU optimizer).
  using options_type = sketched_sgd_options<Value>;

  /// Sets up the optimizer (zero state on the current device) and checks,
  /// with one allgather, that every rank has the same configuration.
  /// @throws std::invalid_argument for an unusable configuration (before any
  /// I/O); config_mismatch_error on every rank if ranks disagree; cuda_error.
  cuda_sketched_sgd(communicator<Transport>& comm, options_type options,
                    cuda_accumulation accumulation = cuda_accumulation::atomic)
      : cuda_sketched_sgd(comm, std::move(options), accumulation, detail::optimizer_kind::sketched_sgd,
                          "cuda_sketched_sgd") {}

  /// One step with this rank's gradient (d values in device memory, complete
  /// when the step's work starts on `stream`). Returns the update on the
  /// host; `apply` applies it to device parameters.
  /// @throws std::invalid_argument if the gradient has the wrong size;
  /// nonfinite_error (on every rank) under `throw_error`;
  /// transport_error/timeout_error from the transport; cuda_error.
  const model_update<Value>& step(device_span<const Value> gradient, stream_arg stream = {}) {
    if (gradient.size() != opt_.dimension) {
      throw std::invalid_argument(std::string(name_) + "::step: gradient has " + std::to_string(gradient.size()) +
                                  " values, expected " + std::to_string(opt_.dimension));
    }
    const detail::stream_scope s(stream);
    accounting_.begin(comm_->counters());
    update_.indices.clear();
    update_.values.clear();
    applied_ = 0;
    update_.skipped = nonfinite_consensus(gradient, s);
    if (!update_.skipped) {
      optim::momentum_error(u_.data(), v_.data(), gradient.data(), opt_.momentum, opt_.error_feedback, gradient.size(),
                            s.get());
      sketch_v(s);
      recover(s);
      finish_update(s);
    }
    s.finish("cuda optimizer: step");
    accounting_.end(comm_->counters());
    return update_;
  }

  /// `params -= factor * update` on the device for the last step's update
  /// (`params`: d values in device memory).
  /// @throws std::invalid_argument if `params` has the wrong size; cuda_error.
  void apply(device_span<Value> params, Value factor = Value{1}, stream_arg stream = {}) const {
    if (params.size() != opt_.dimension) {
      throw std::invalid_argument(std::string(name_) + "::apply: " + std::to_string(params.size()) +
                                  " parameters, expected " + std::to_string(opt_.dimension));
    }
    const detail::stream_scope s(stream);
    optim::apply(params.data(), update_indices_.data(), update_values_.data(), factor, applied_, s.get());
    s.finish("cuda optimizer: apply");
  }

  /// Communication so far.
  [[nodiscard]] const comm_stats& stats() const noexcept { return accounting_.stats(); }
  /// The options in force.
  [[nodiscard]] const options_type& options() const noexcept { return opt_; }
  /// How v is added into the sketch.
  [[nodiscard]] cuda_accumulation accumulation() const noexcept { return accumulation_; }
  /// Changes eta for the next steps (schedules); every rank must do the same.
  void set_learning_rate(Value eta) noexcept { opt_.learning_rate = eta; }
  /// Momentum u (d device values).
  [[nodiscard]] device_span<const Value> momentum() const noexcept { return u_.span(); }
  /// Error accumulator v (d device values).
  [[nodiscard]] device_span<const Value> error() const noexcept { return v_.span(); }

  /// Writes this rank's whole state, in the CPU optimizer's format.
  /// @throws serialization_error if the stream fails; cuda_error.
  void save(std::ostream& os) const {
    detail::write_state_header(
        os, {kind_, wire::value_type_code<Value>, fingerprint_, accounting_.stats().steps,
             static_cast<std::uint32_t>(comm_->rank()), static_cast<std::uint32_t>(comm_->size()), 2});
    detail::write_state_section(os, std::span<const Value>(to_host(u_)));
    detail::write_state_section(os, std::span<const Value>(to_host(v_)));
  }

  /// Restores a state written by `save` (of this class or of the CPU
  /// optimizer of the same kind) on the same rank of an identically
  /// configured job.
  /// @throws config_mismatch_error, serialization_error as the CPU optimizer
  /// (the state is then unchanged); cuda_error.
  void load(std::istream& is) {
    const std::uint64_t steps = detail::read_state_header(
        is,
        {kind_, wire::value_type_code<Value>, fingerprint_, 0, static_cast<std::uint32_t>(comm_->rank()),
         static_cast<std::uint32_t>(comm_->size()), 2},
        name_);
    std::vector<Value> u(static_cast<std::size_t>(opt_.dimension));
    std::vector<Value> v(static_cast<std::size_t>(opt_.dimension));
    detail::read_state_section(is, std::span<Value>(u), name_);
    detail::read_state_section(is, std::span<Value>(v), name_);
    const detail::stream_scope s{stream_arg{}};
    detail::cuda_check(cudaMemcpyAsync(u_.data(), u.data(), u.size() * sizeof(Value), cudaMemcpyHostToDevice, s.get()),
                       "cuda optimizer: load");
    detail::cuda_check(cudaMemcpyAsync(v_.data(), v.data(), v.size() * sizeof(Value), cudaMemcpyHostToDevice, s.get()),
                       "cuda optimizer: load");
    s.finish("cuda optimizer: load");
    accounting_.stats().steps = steps;
  }

 protected:
  /// For `cuda_global_sketch_sgd`: the same engine under another name and kind.
  cuda_sketched_sgd(communicator<Transport>& comm, options_type options, cuda_accumulation accumulation,
                    detail::optimizer_kind kind, const char* name)
      : comm_(&comm),
        opt_(validated(std::move(options), name)),
        accumulation_(accumulation),
        kind_(kind),
        name_(name),
        split_(opt_.dimension, opt_.dense),
        u_(zeroed(static_cast<std::size_t>(opt_.dimension))),
        v_(zeroed(static_cast<std::size_t>(opt_.dimension))),
        sketch_(opt_.sketch),
        estimates_(static_cast<std::size_t>(split_.sparse_count())),
        selection_(std::max(candidate_count(), std::min<std::size_t>(opt_.k, split_.sparse_count()))),
        update_indices_(selection_.capacity()),
        update_values_(selection_.capacity()),
        exact_(selection_.capacity()),
        host_indices_(selection_.capacity()),
        host_values_(std::max<std::size_t>(selection_.capacity(), static_cast<std::size_t>(split_.dense_count()))),
        staging_(static_cast<std::size_t>(opt_.sketch.cells())) {
    fingerprint_ = make_fingerprint();
    detail::agree_on_fingerprint(*comm_, fingerprint_, name_);
    accounting_.stats().dense_ring_bytes_per_step =
        detail::dense_ring_bytes(opt_.dimension, comm_->size(), sizeof(Value));
    accounting_.begin(comm_->counters());  // the setup's exchange is not a step
  }

 private:
  static options_type validated(options_type o, const char* name) {
    const auto fail = [&](const std::string& why) { throw std::invalid_argument(std::string(name) + ": " + why); };
    if (o.dimension == 0) fail("dimension must be positive");
    validate(o.sketch, HashFamily::max_cols);
    if (o.k == 0) fail("k must be positive");
    if (o.average && std::is_integral_v<Value>) fail("averaging needs a floating-point value type");
    if (o.topology != topology::allreduce) fail("the device optimizers support the allreduce topology only");
    if (o.overlap_rows) fail("the device optimizers do not overlap rows (overlap_rows must be false)");
    const detail::coordinate_split probe(o.dimension, o.dense);  // validates the ranges
    if (o.k > probe.sparse_count()) fail("k exceeds the number of sketched coordinates");
    return o;
  }

  static device_buffer<Value> zeroed(std::size_t n) {
    device_buffer<Value> b(n);
    const detail::stream_scope s{stream_arg{}};
    detail::cuda_check(cudaMemsetAsync(b.data(), 0, n * sizeof(Value), s.get()), "cuda optimizer: state");
    s.finish("cuda optimizer: state");
    return b;
  }

  static std::vector<Value> to_host(const device_buffer<Value>& b) {
    std::vector<Value> h(b.size());
    const detail::stream_scope s{stream_arg{}};
    detail::cuda_check(cudaMemcpyAsync(h.data(), b.data(), h.size() * sizeof(Value), cudaMemcpyDeviceToHost, s.get()),
                       "cuda optimizer: copy to host");
    s.finish("cuda optimizer: copy to host");
    return h;
  }

  [[nodiscard]] std::uint64_t make_fingerprint() const {
    return detail::sketched_sgd_fingerprint<Value, HashFamily>(kind_, opt_, split_, comm_->size());
  }

  [[nodiscard]] std::size_t candidate_count() const noexcept {
    return static_cast<std::size_t>(std::min<std::uint64_t>(opt_.candidates_factor * opt_.k, split_.sparse_count()));
  }

  /// The CPU's `nonfinite_consensus` with the count taken on the device:
  /// the same single allreduce of one integer.
  bool nonfinite_consensus(device_span<const Value> gradient, const detail::stream_scope& s) {
    if (opt_.nonfinite == nonfinite_policy::unchecked) return false;
    auto* const count = reinterpret_cast<unsigned long long*>(  // NOLINT: one counter in the workspace
        ws_.reserve(sizeof(unsigned long long)));               // NOLINT(google-runtime-int)
    detail::cuda_check(cudaMemsetAsync(count, 0, sizeof(*count), s.get()), "cuda optimizer: non-finite count");
    optim::count_nonfinite(gradient.data(), gradient.size(), count, s.get());
    unsigned long long host = 0;  // NOLINT(google-runtime-int)
    detail::cuda_check(cudaMemcpyAsync(&host, count, sizeof(host), cudaMemcpyDeviceToHost, s.get()),
                       "cuda optimizer: non-finite count");
    s.wait("cuda optimizer: non-finite count");
    auto bad = static_cast<std::int64_t>(host);
    allreduce(*comm_, std::span<std::int64_t>(&bad, 1));
    if (bad == 0) return false;
    if (opt_.nonfinite == nonfinite_policy::throw_error) {
      throw nonfinite_error(std::string(name_) + ": " + std::to_string(bad) +
                            " non-finite gradient values across the ranks; the step was not taken");
    }
    return true;
  }

  /// Sketch of v over the sparse coordinates; the dense coordinates' v to
  /// the host.
  void sketch_v(const detail::stream_scope& s) {
    sketch_.zero(s.get());
    const device_span<const Value> v = v_.span();
    for (const auto& seg : split_.segments()) {
      const auto part = v.subspan(static_cast<std::size_t>(seg.global), static_cast<std::size_t>(seg.length));
      if (accumulation_ == cuda_accumulation::ordered) {
        sketch_.accumulate_ordered(part, seg.compact, ws_, s.get());
      } else {
        sketch_.accumulate(part, seg.compact, s.get());
      }
    }
    std::size_t at = 0;
    for (const dense_range& r : split_.dense()) {
      detail::cuda_check(cudaMemcpyAsync(host_values_.data() + at, v_.data() + r.offset, r.length * sizeof(Value),
                                         cudaMemcpyDeviceToHost, s.get()),
                         "cuda optimizer: dense coordinates");
      at += static_cast<std::size_t>(r.length);
    }
  }

  /// Aggregation and recovery: the CPU `step_allreduce`.
  void recover(const detail::stream_scope& s) {
    device_allreduce(*comm_, sketch_.table(), staging_, s.get());  // waits: the dense values are on the host too
    dense_values_.assign(host_values_.data(), host_values_.data() + split_.dense_count());
    if (!dense_values_.empty()) allreduce(*comm_, std::span<Value>(dense_values_));
    const std::uint64_t ds = split_.sparse_count();
    if (opt_.candidates_factor == 0) {
      top_k_into(sketch_, ds, opt_.k, estimates_.span(), selection_, ws_, s.get());
      sparse_update<Value> best = selection_.to_host(s.get());
      split_.to_global(best.indices);
      update_.indices = std::move(best.indices);
      update_.values = std::move(best.values);
      return;
    }
    top_k_into(sketch_, ds, candidate_count(), estimates_.span(), selection_, ws_, s.get());
    sparse_update<Value> candidates = selection_.to_host(s.get());
    split_.to_global(candidates.indices);
    const std::size_t n = candidates.size();
    std::copy(candidates.indices.begin(), candidates.indices.end(), host_indices_.data());
    detail::cuda_check(cudaMemcpyAsync(update_indices_.data(), host_indices_.data(), n * sizeof(std::uint64_t),
                                       cudaMemcpyHostToDevice, s.get()),
                       "cuda optimizer: candidates");
    optim::gather(v_.data(), update_indices_.data(), exact_.data(), n, s.get());
    detail::cuda_check(
        cudaMemcpyAsync(host_values_.data(), exact_.data(), n * sizeof(Value), cudaMemcpyDeviceToHost, s.get()),
        "cuda optimizer: candidate values");
    s.wait("cuda optimizer: candidate values");
    std::vector<Value> exact(host_values_.data(), host_values_.data() + n);
    allreduce(*comm_, std::span<Value>(exact));  // second round: P k values
    const auto best = top_k(exact, opt_.k);
    update_.indices.reserve(best.size());
    for (const std::uint64_t pos : best.indices) update_.indices.push_back(candidates.indices[pos]);
    update_.values = best.values;
  }

  /// The CPU `finish_update`: eta (and 1/W) on the host, masking on the
  /// device; the update is also left on the device for `apply`.
  void finish_update(const detail::stream_scope& s) {
    detail::average_in_place(std::span<Value>(update_.values), comm_->size(), opt_.average);
    for (Value& x : update_.values) x *= opt_.learning_rate;
    const std::size_t masked = update_.indices.size();
    std::copy(update_.indices.begin(), update_.indices.end(), host_indices_.data());
    detail::cuda_check(cudaMemcpyAsync(update_indices_.data(), host_indices_.data(), masked * sizeof(std::uint64_t),
                                       cudaMemcpyHostToDevice, s.get()),
                       "cuda optimizer: mask indices");
    optim::mask(u_.data(), v_.data(), update_indices_.data(), masked, s.get());
    if (split_.dense_count() != 0) {
      detail::average_in_place(std::span<Value>(dense_values_), comm_->size(), opt_.average);
      for (Value& x : dense_values_) x *= opt_.learning_rate;
      for (const dense_range& r : split_.dense()) {
        detail::cuda_check(cudaMemsetAsync(v_.data() + r.offset, 0, r.length * sizeof(Value), s.get()),
                           "cuda optimizer: dense error reset");
      }
      detail::merge_with_dense(split_, update_.indices, update_.values, std::span<const Value>(dense_values_));
    }
    upload_update(s);
  }

  /// Copies the final update to the device for `apply` (the dense
  /// coordinates make it longer than the selection).
  void upload_update(const detail::stream_scope& s) {
    const std::size_t n = update_.indices.size();
    if (n > update_indices_.size()) {
      // Wait before replacing buffers the stream may still read.
      s.wait("cuda optimizer: update buffers");
      update_indices_ = device_buffer<std::uint64_t>(n);
      update_values_ = device_buffer<Value>(n);
      host_indices_ = pinned_buffer<std::uint64_t>(n);
      host_values_ = pinned_buffer<Value>(n);
    }
    // The mask kernel reads update_indices_ and host_indices_ was the source
    // of that copy: wait before overwriting the pinned buffers.
    s.wait("cuda optimizer: update");
    std::copy(update_.indices.begin(), update_.indices.end(), host_indices_.data());
    std::copy(update_.values.begin(), update_.values.end(), host_values_.data());
    detail::cuda_check(cudaMemcpyAsync(update_indices_.data(), host_indices_.data(), n * sizeof(std::uint64_t),
                                       cudaMemcpyHostToDevice, s.get()),
                       "cuda optimizer: update indices");
    detail::cuda_check(
        cudaMemcpyAsync(update_values_.data(), host_values_.data(), n * sizeof(Value), cudaMemcpyHostToDevice, s.get()),
        "cuda optimizer: update values");
    applied_ = n;
  }

  communicator<Transport>* comm_;
  options_type opt_;
  cuda_accumulation accumulation_;
  detail::optimizer_kind kind_;
  const char* name_;
  detail::coordinate_split split_;
  device_buffer<Value> u_;  // momentum
  device_buffer<Value> v_;  // error accumulator
  count_sketch<Value, HashFamily, cuda_t> sketch_;
  device_buffer<Value> estimates_;               // d_sparse estimates, reused every step
  device_sparse_update<Value> selection_;        // candidates (or the top k when P = 0)
  device_buffer<std::uint64_t> update_indices_;  // candidates' global indices, then the update's
  device_buffer<Value> update_values_;           // the update's values, for apply
  device_buffer<Value> exact_;                   // v at the candidates
  pinned_buffer<std::uint64_t> host_indices_;    // staging of indices to the device
  pinned_buffer<Value> host_values_;             // staging of values (candidates, dense v, update)
  pinned_buffer<Value> staging_;                 // the sketch table for host-memory transports
  cuda_workspace ws_;
  std::vector<Value> dense_values_;
  std::size_t applied_ = 0;
  std::uint64_t fingerprint_ = 0;
  detail::step_accounting accounting_;
  model_update<Value> update_;
};

/// Global-sketch SGD (Dai et al.) on device gradients: `cuda_sketched_sgd`
/// under gs-SGD's name, checkpoint kind and fingerprint (the CPU
/// `global_sketch_sgd`'s), `topology` forced to allreduce.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam HashFamily a `hash_family`.
template <sketch_value Value, transport Transport, hash_family HashFamily = multiply_shift>
class cuda_global_sketch_sgd : public cuda_sketched_sgd<Value, Transport, HashFamily> {
  using base = cuda_sketched_sgd<Value, Transport, HashFamily>;

 public:
  /// The options type (`topology` is ignored: always allreduce).
  using options_type = typename base::options_type;

  /// Sets up the optimizer; see `cuda_sketched_sgd`.
  /// @throws std::invalid_argument, config_mismatch_error, cuda_error.
  cuda_global_sketch_sgd(communicator<Transport>& comm, options_type options,
                         cuda_accumulation accumulation = cuda_accumulation::atomic)
      : base(comm, forced(std::move(options)), accumulation, detail::optimizer_kind::global_sketch_sgd,
             "cuda_global_sketch_sgd") {}

 private:
  static options_type forced(options_type o) {
    o.topology = topology::allreduce;
    return o;
  }
};

}  // namespace sketchsgd
