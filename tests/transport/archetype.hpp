// SPDX-License-Identifier: Apache-2.0
#pragma once

// The archetype transport: exactly Tier 1 and nothing else (no native
// collectives, no timeout accessor, a request with only wait and wait_for).
// Every collective and optimizer must compile and pass over it.

#include <chrono>
#include <cstddef>
#include <span>
#include <utility>

#include "sketchsgd/transport/concepts.hpp"
#include "sketchsgd/transport/inproc.hpp"

namespace sketchsgd::test {

class archetype_transport {
 public:
  class request {
   public:
    void wait() { inner_.wait(); }
    bool wait_for(std::chrono::nanoseconds d) { return inner_.wait_for(d); }

   private:
    friend class archetype_transport;
    explicit request(inproc_transport::request r) : inner_(std::move(r)) {}
    inproc_transport::request inner_;
  };

  explicit archetype_transport(inproc_transport t) : inner_(std::move(t)) {}

  [[nodiscard]] int rank() const { return inner_.rank(); }
  [[nodiscard]] int size() const { return inner_.size(); }
  request isend(int dst, tag_t tag, std::span<const std::byte> bytes) { return request(inner_.isend(dst, tag, bytes)); }
  request irecv(int src, tag_t tag, std::span<std::byte> bytes) { return request(inner_.irecv(src, tag, bytes)); }

 private:
  inproc_transport inner_;
};

static_assert(transport<archetype_transport>);
static_assert(!collective_transport<archetype_transport>);

}  // namespace sketchsgd::test
