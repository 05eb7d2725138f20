// SPDX-License-Identifier: Apache-2.0
// Statistical tier: properties that hold with high probability, checked over
// a fixed list of seeds with tolerances derived from the Count Sketch
// analysis (Charikar, Chen, Farach-Colton 2002; Alon, Matias, Szegedy 1996).
// The rows' hash functions have independently seeded parameters and are
// treated as independent; within a row the families give pairwise (and for
// poly4_hash 4-wise) independent (bucket, sign) pairs.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "sketchsgd/sketchsgd.hpp"
#include "test_support.hpp"

using namespace sketchsgd;

namespace {

/// Failures allowed among n trials that each fail with probability at most
/// p: the mean plus four standard deviations, plus one for small means.
double binomial_tolerance(double n, double p) { return n * p + 4.0 * std::sqrt(n * p * (1.0 - p)) + 1.0; }

/// Probability that at least 3 of 5 independent rows fail, each with
/// probability at most p: the median of 5 is off only then.
double median5_failure(double p) { return std::min(1.0, 10.0 * p * p * p); }

double squared_norm(const std::vector<float>& x) {
  double s = 0;
  for (const float v : x) s += static_cast<double>(v) * static_cast<double>(v);
  return s;
}

}  // namespace

TEMPLATE_TEST_CASE("each row's estimate is unbiased with variance ||x||^2 / c", "[statistical]", multiply_shift,
                   poly4_hash) {
  // Pairwise independence gives E[err_j(i)] = 0 and E[err_j(i)^2] =
  // ||x_{-i}||^2 / c. Averaged over the d coordinates of one row, the squared
  // error concentrates around (d-1)/d ||x||^2 / c with relative spread about
  // sqrt(2 / c) (c cells of ~d/c items each); six of those is the tolerance.
  const std::size_t d = 100000;
  const std::uint64_t c = 1000;
  for (const std::uint64_t seed : test::statistical_seeds) {
    CAPTURE(seed);
    const auto x = test::normal_vector<float>(d, seed);
    const double norm2 = squared_norm(x);
    count_sketch<float, TestType> s({.rows = 5, .cols = c, .seed = seed});
    s.accumulate(x);
    for (std::uint32_t r = 0; r < 5; ++r) {
      CAPTURE(r);
      const auto row = s.hash().row(r);
      double sum_err = 0;
      double sum_err2 = 0;
      row.for_each(0, d, [&](std::uint64_t i, bucket_sign bs) {
        const double err = bs.sign * static_cast<double>(s.row(r)[bs.bucket]) - static_cast<double>(x[i]);
        sum_err += err;
        sum_err2 += err * err;
      });
      const double expected2 = norm2 / static_cast<double>(c);
      CHECK(std::abs(sum_err2 / static_cast<double>(d) / expected2 - 1.0) <=
            6.0 * std::sqrt(2.0 / static_cast<double>(c)));
      // sum_i err_i = sum over colliding pairs {i, l} of s_i s_l (x_i + x_l):
      // mean zero, variance about d ||x||^2 / c, so the mean error has
      // standard deviation sqrt(expected2 / d); six of those is the tolerance.
      CHECK(std::abs(sum_err / static_cast<double>(d)) <= 6.0 * std::sqrt(expected2 / static_cast<double>(d)));
    }
  }
}

TEMPLATE_TEST_CASE("point estimates stay within 3 ||x|| / sqrt(c) except for a binomial few", "[statistical]",
                   multiply_shift, poly4_hash) {
  // Chebyshev per row: P(|err| >= eps) <= ||x||^2 / (c eps^2) = 1/9 for
  // eps = 3 ||x|| / sqrt(c); the median of 5 fails with at most 10 / 9^3.
  const std::size_t d = 100000;
  const std::uint64_t c = 2000;
  const double delta = median5_failure(1.0 / 9.0);
  for (const std::uint64_t seed : test::statistical_seeds) {
    CAPTURE(seed);
    const auto x = test::normal_vector<float>(d, seed);
    const double eps = 3.0 * std::sqrt(squared_norm(x) / static_cast<double>(c));
    count_sketch<float, TestType> s({.rows = 5, .cols = c, .seed = seed});
    s.accumulate(x);
    std::vector<float> est(d);
    s.estimate_all(est);
    std::size_t failures = 0;
    for (std::size_t i = 0; i < d; ++i) failures += std::abs(static_cast<double>(est[i] - x[i])) > eps ? 1U : 0U;
    CHECK(static_cast<double>(failures) <= binomial_tolerance(static_cast<double>(d), delta));
  }
}

TEST_CASE("l2_estimate is within 30% with 4-wise independent signs", "[statistical]") {
  // AMS: each row's sum of squares is unbiased for ||x||^2 with variance at
  // most 2 ||x||^4 / c. Chebyshev at 30%: p <= 2 / (c 0.09) = 0.022 for
  // c = 1000, so the median of 5 fails with probability about 1e-4.
  const std::size_t d = 100000;
  for (const std::uint64_t seed : test::statistical_seeds) {
    CAPTURE(seed);
    auto x = test::normal_vector<float>(d, seed);
    x[seed * 100] = 300.0F;  // a spike must not upset it
    count_sketch<float, poly4_hash> s({.rows = 5, .cols = 1000, .seed = seed});
    s.accumulate(x);
    const double ratio = s.l2_estimate() * s.l2_estimate() / squared_norm(x);
    CHECK(std::abs(ratio - 1.0) <= 0.3);
  }
}

TEST_CASE("recall of planted spikes in noise follows c / k", "[statistical]") {
  // k spikes of magnitude M among d - k standard normals. A spike is lost
  // only if (A) its own estimate is off by M/2 or (B) a non-spike's estimate
  // reaches M/2 in magnitude and outranks it. Per row, (A) needs a collision
  // with another spike or noise of M/2: p <= (k-1)/c + 4 (d/c) / M^2
  // (Chebyshev). (B) needs three rows pushed to M/2 with one sign: per row
  // q <= k/(2c) + (d/c) / (M/2 - max|noise|)^2. So
  //   E[misses] <= k 10 p^3 + (d - k) 2 * 10 q^3,
  // asserted (with a binomial tolerance over the seeds) wherever it is below
  // k. Below that ratio the sketch alone cannot promise recall: that is what
  // the second round of Sketched-SGD (P k candidates) is for.
  const std::size_t d = 100000;
  const std::size_t k = 100;
  const double M = 200.0;
  double previous_recall = 1.0;
  for (const std::uint64_t ratio : {100U, 20U, 10U, 5U}) {
    const std::uint64_t c = ratio * k;
    std::size_t misses = 0;
    double bound = 0;
    for (const std::uint64_t seed : test::statistical_seeds) {
      auto x = test::normal_vector<float>(d, seed);
      double max_noise = 0;
      for (const float v : x) max_noise = std::max(max_noise, std::abs(static_cast<double>(v)));
      splitmix64 rng(seed * 1000 + 1);
      std::set<std::uint64_t> planted;
      while (planted.size() < k) {
        const std::uint64_t i = rng.next_below(d);
        if (planted.insert(i).second) x[i] = static_cast<float>((rng.next() & 1U) != 0 ? M : -M);
      }
      count_sketch<float, poly4_hash> s({.rows = 5, .cols = c, .seed = seed});
      s.accumulate(x);
      const auto got = top_k(s, d, k);
      std::size_t hits = 0;
      for (const auto i : got.indices) hits += planted.count(i);
      misses += k - hits;

      const double dc = static_cast<double>(d) / static_cast<double>(c);
      const double p = static_cast<double>(k - 1) / static_cast<double>(c) + 4.0 * dc / (M * M);
      const double q =
          static_cast<double>(k) / (2.0 * static_cast<double>(c)) + dc / ((M / 2 - max_noise) * (M / 2 - max_noise));
      bound += static_cast<double>(k) * median5_failure(p) + static_cast<double>(d - k) * 2.0 * median5_failure(q);
    }
    const double trials = static_cast<double>(k * test::statistical_seeds.size());
    const double recall = 1.0 - static_cast<double>(misses) / trials;
    INFO("c/k = " << ratio << ": recall " << recall << ", expected misses at most " << bound);
    if (bound < trials) {
      CHECK(static_cast<double>(misses) <= binomial_tolerance(trials, std::min(1.0, bound / trials)));
    }
    CHECK(recall <= previous_recall + 0.02);  // recall falls with c / k
    previous_recall = recall;
  }
}
