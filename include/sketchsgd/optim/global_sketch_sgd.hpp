// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Global-sketch SGD (Dai, Diao, Li, Xu, "A Distributed SGD Algorithm with
/// Global Sketching for Deep Learning Training Acceleration", arXiv
/// 2108.06004): no parameter server.

#include "sketchsgd/optim/sketched_sgd.hpp"

namespace sketchsgd {

/// Global-sketch SGD (gs-SGD): local momentum and error as in Sketched-SGD;
/// the sketches are allreduced (ring for large tables, recursive doubling for
/// small ones) so every rank holds the same global sketch; each rank
/// unsketches locally with the deterministic tie-break, so all pick the same
/// coordinates without any broadcast; the optional second round (P > 0) is one
/// allreduce of the P k candidate values, which every rank already knows;
/// masking is local.
///
/// Per-worker traffic with the ring: about 2 (W-1)/W 4 r c bytes per step
/// (plus 2 (W-1)/W 4 P k with the second round), independent of d and
/// nearly of W.
///
/// The engine is Sketched-SGD's with the allreduce topology forced; the
/// checkpoint and fingerprint kind differ, so the two never load each
/// other's state.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam HashFamily a `hash_family`.
template <sketch_value Value, transport Transport, hash_family HashFamily = multiply_shift>
class global_sketch_sgd : public sketched_sgd<Value, Transport, HashFamily> {
  using base = sketched_sgd<Value, Transport, HashFamily>;

 public:
  /// The options type (`topology` is ignored: always allreduce).
  using options_type = typename base::options_type;

  /// Sets up the optimizer; see `sketched_sgd`.
  /// @throws std::invalid_argument, config_mismatch_error as sketched_sgd.
  global_sketch_sgd(communicator<Transport>& comm, options_type options)
      : base(comm, forced(std::move(options)), detail::optimizer_kind::global_sketch_sgd, "global_sketch_sgd") {}

 private:
  static options_type forced(options_type o) {
    o.topology = topology::allreduce;
    return o;
  }
};

}  // namespace sketchsgd
