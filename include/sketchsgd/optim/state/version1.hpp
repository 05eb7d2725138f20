// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The named optimizers' version-1 configuration fingerprints, all in one
/// place: the digests of main before the policy layer, which checkpoints of
/// serial version 1 carry and ranks compare at setup. Options added since
/// enter a digest only when set away from their default, so every job that
/// ran before keeps its fingerprint; a change here breaks resuming such
/// checkpoints (the golden test and tests/data/ say so).

#include <cstdint>

#include "sketchsgd/optim/state/fingerprint.hpp"
#include "sketchsgd/optim/state/state_io.hpp"
#include "sketchsgd/optim/step/coordinates.hpp"
#include "sketchsgd/serialize/wire.hpp"

namespace sketchsgd::detail::version1 {

/// What every sparse method's digest ends with: the dense ranges as split,
/// the non-finite policy and the world.
template <class Options>
void add_tail(fingerprint& f, const Options& o, const coordinate_split& split, int world) {
  f.add(o.dense.size());
  for (const dense_range& r : split.dense()) f.add(r.offset).add(r.length);
  f.add(o.nonfinite).add(world);
}

/// `dense_sgd`'s.
template <class Value, class Options>
std::uint64_t dense_sgd(const Options& o, int world) {
  fingerprint f;
  f.add(optimizer_kind::dense_sgd).add(wire::value_type_code<Value>).add(o.dimension);
  f.add(o.momentum).add(o.average).add(o.nonfinite).add(world);
  if (o.wire != wire_format::native) f.add(o.wire);  // float32 jobs keep theirs
  return f.value();
}

/// `sketched_sgd`'s and `global_sketch_sgd`'s (`Kind`), shared by CPU and
/// GPU ranks; `o` as forced (gs-SGD: the allreduce topology).
template <class Value, class HashFamily, optimizer_kind Kind, class Options>
std::uint64_t sketched_sgd(const Options& o, const coordinate_split& split, int world) {
  fingerprint f;
  f.add(Kind).add(wire::value_type_code<Value>).add(HashFamily::id).add(o.dimension);
  f.add(o.sketch.rows).add(o.sketch.cols).add(o.sketch.seed).add(o.k).add(o.candidates_factor);
  f.add(o.momentum).add(o.error_feedback).add(o.average).add(o.topology).add(o.root);
  add_tail(f, o, split, world);
  if (o.overlap_rows) f.add(std::uint64_t{0x6F7665726C6170});  // "overlap"
  if (o.slices > 1) f.add(std::uint64_t{0x736C69636573}).add(o.slices);  // "slices"
  return f.value();
}

/// `fetch_sgd`'s.
template <class Value, class HashFamily, class Options>
std::uint64_t fetch_sgd(const Options& o, const coordinate_split& split, int world) {
  fingerprint f;
  f.add(optimizer_kind::fetch_sgd).add(wire::value_type_code<Value>).add(HashFamily::id);
  f.add(o.dimension).add(o.sketch.rows).add(o.sketch.cols).add(o.sketch.seed).add(o.k);
  f.add(o.momentum).add(o.average).add(o.reset).add(o.topology).add(o.root);
  add_tail(f, o, split, world);
  if (o.slices > 1) f.add(std::uint64_t{0x736C69636573}).add(o.slices);  // "slices"
  return f.value();
}

/// `true_topk_sgd`'s, `local_topk_sgd`'s and `gtopk_sgd`'s (`Kind`).
template <class Value, optimizer_kind Kind, class Options>
std::uint64_t topk_sgd(const Options& o, const coordinate_split& split, int world) {
  fingerprint f;
  f.add(Kind).add(wire::value_type_code<Value>).add(o.dimension).add(o.k).add(o.momentum);
  f.add(o.error_feedback).add(o.average);
  add_tail(f, o, split, world);
  if (o.momentum_after_aggregation) f.add(std::uint8_t{1});
  return f.value();
}

}  // namespace sketchsgd::detail::version1
