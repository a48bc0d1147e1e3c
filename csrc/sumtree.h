// Sum tree over n non-negative float64 weights: O(log n) weight updates and
// draws of an index with probability proportional to its weight (exact
// D^2 sampling by rejection from stale bounds, strategies/_greedy.py).
//
// Leaves sit at [size, 2 size) of a heap-ordered array (size = the next power
// of two >= n, padding leaves 0); every inner node is the sum of its two
// children, recomputed from them on each update (no drift from subtracting).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace autoal_fast {

class SumTree {
 public:
  explicit SumTree(int64_t n) : n_(n) {
    if (n < 1) throw std::invalid_argument("SumTree needs n >= 1");
    size_ = 1;
    while (size_ < n) size_ <<= 1;
    node_.assign(static_cast<size_t>(2 * size_), 0.0);
  }

  int64_t size() const { return n_; }
  double total() const { return node_[1]; }
  double get(int64_t i) const { return node_[size_ + i]; }

  // All weights at once (w: n values), O(n).
  void build(const double* w) {
    for (int64_t i = 0; i < n_; ++i) node_[size_ + i] = w[i];
    for (int64_t i = size_ + n_; i < 2 * size_; ++i) node_[i] = 0.0;
    for (int64_t p = size_ - 1; p >= 1; --p) node_[p] = node_[2 * p] + node_[2 * p + 1];
  }

  void set(int64_t i, double w) {
    int64_t p = size_ + i;
    node_[p] = w;
    for (p >>= 1; p >= 1; p >>= 1) node_[p] = node_[2 * p] + node_[2 * p + 1];
  }

  // The leaf where the running sum passes target (0 <= target < total()):
  // the first i with w_0 + ... + w_i > target. Rounding can land on a leaf of
  // weight 0 only at the very top end; the caller treats that as a rejection.
  int64_t find(double target) const {
    int64_t p = 1;
    while (p < size_) {
      const double left = node_[2 * p];
      if (target < left) {
        p = 2 * p;
      } else {
        target -= left;
        p = 2 * p + 1;
      }
    }
    const int64_t i = p - size_;
    return i < n_ ? i : n_ - 1;
  }

 private:
  int64_t n_ = 0, size_ = 1;
  std::vector<double> node_;
};

}  // namespace autoal_fast
