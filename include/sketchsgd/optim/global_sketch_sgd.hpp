// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Global-sketch SGD (Dai, Diao, Li, Xu, "A Distributed SGD Algorithm with
/// Global Sketching for Deep Learning Training Acceleration", arXiv
/// 2108.06004) under its stable name.

#include "sketchsgd/optim/sketched_sgd.hpp"

namespace sketchsgd {

/// Global-sketch SGD (gs-SGD): Sketched-SGD with the allreduce topology
/// forced (`global_sketch_aggregation` with `sgd_update`); its checkpoint
/// kind and fingerprint differ, so the two never load each other's state.
/// For the paper's log2(W)-round aggregation, compose
/// `global_sketch_aggregation` with `sketch_allreduce =
/// allreduce_algorithm::recursive_doubling`.
/// @tparam Value a `sketch_value`.
/// @tparam Transport a `transport`.
/// @tparam HashFamily a `hash_family`.
/// @tparam Device a `device` tag.
template <sketch_value Value, transport Transport, hash_family HashFamily = multiply_shift, device Device = cpu_t>
using global_sketch_sgd = detail::named_optimizer<
    detail::sketched_sgd_traits<Value, HashFamily, Device, detail::optimizer_kind::global_sketch_sgd>, Transport>;

}  // namespace sketchsgd
