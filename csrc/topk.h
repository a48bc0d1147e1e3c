// Exact top-k over a 1-D array of floats, no full sort.
//
// Each thread scans a contiguous slice keeping a candidate buffer of at most
// 2k (value, index) pairs; when the buffer fills it is cut back to its best k
// with nth_element and the k-th value becomes a rejection threshold, so almost
// every element costs one comparison. The per-thread survivors are merged and
// the final k are sorted: value first (descending when largest), then lower
// index first. NaN is never ranked: the scan counts NaNs and the caller
// decides (raise or omit).
#pragma once
#include <cstdint>
#include <vector>

namespace autoal_fast {

struct TopKResult {
  std::vector<double> values;    // best first
  std::vector<int64_t> indices;  // positions in the input
  int64_t nan_count = 0;         // NaNs seen (never ranked)
};

// x: pointer to n values; k <= n - (NaN count) must hold for a full result.
// num_threads <= 0 means "use the OpenMP default".
template <typename T>
void topk(const T* x, int64_t n, int64_t k, bool largest, int num_threads,
          std::vector<T>* values, std::vector<int64_t>* indices,
          int64_t* nan_count);

}  // namespace autoal_fast
