#include "topk.h"

#include <algorithm>
#include <cmath>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace autoal_fast {
namespace {

template <typename T>
struct Item {
  T v;
  int64_t i;
};

// "a ranks before b": better value first, then lower index.
template <typename T, bool Largest>
struct Before {
  bool operator()(const Item<T>& a, const Item<T>& b) const {
    if (Largest) {
      if (a.v > b.v) return true;
      if (a.v < b.v) return false;
    } else {
      if (a.v < b.v) return true;
      if (a.v > b.v) return false;
    }
    return a.i < b.i;
  }
};

// Keep the best k of buf (unordered).
template <typename T, bool Largest>
void cut_to_k(std::vector<Item<T>>* buf, int64_t k) {
  if (static_cast<int64_t>(buf->size()) <= k) return;
  std::nth_element(buf->begin(), buf->begin() + (k - 1), buf->end(),
                   Before<T, Largest>());
  buf->resize(k);
}

// Scans x[lo, hi) and returns its best k (unordered). Elements arrive in
// increasing index order, so once the buffer has been cut to k, an element
// equal to the k-th value ranks after all k kept ones and is rejected.
template <typename T, bool Largest>
void scan_slice(const T* x, int64_t lo, int64_t hi, int64_t k,
                std::vector<Item<T>>* buf, int64_t* nans) {
  buf->clear();
  if (k == 0) {
    for (int64_t j = lo; j < hi; ++j) *nans += std::isnan(x[j]) ? 1 : 0;
    return;
  }
  const int64_t cap = 2 * k;
  buf->reserve(static_cast<size_t>(std::min<int64_t>(cap, hi - lo)));
  bool have_thr = false;
  // The rejection threshold is the k-th kept value after a cut.
  T thr = T(0);
  int64_t local_nans = 0;
  for (int64_t j = lo; j < hi; ++j) {
    const T v = x[j];
    if (have_thr) {
      // Fast path: one comparison rejects most elements. NaN compares false
      // with everything, so it falls through to the explicit check.
      if (Largest ? !(v > thr) : !(v < thr)) {
        if (v == v) continue;
        ++local_nans;
        continue;
      }
    } else if (v != v) {
      ++local_nans;
      continue;
    }
    buf->push_back(Item<T>{v, j});
    if (static_cast<int64_t>(buf->size()) >= cap) {
      cut_to_k<T, Largest>(buf, k);
      // After nth_element at k-1 and resize(k), the k-th best sits at k-1.
      thr = (*buf)[k - 1].v;
      have_thr = true;
    }
  }
  cut_to_k<T, Largest>(buf, k);
  *nans += local_nans;
}

template <typename T, bool Largest>
void topk_impl(const T* x, int64_t n, int64_t k, int num_threads,
               std::vector<T>* values, std::vector<int64_t>* indices,
               int64_t* nan_count) {
  int nt = 1;
#ifdef _OPENMP
  nt = num_threads > 0 ? num_threads : omp_get_max_threads();
#else
  (void)num_threads;
#endif
  // Small inputs are not worth a thread; keep at least 64k elements per slice.
  const int64_t min_slice = 1 << 16;
  nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt, n / min_slice)));
  std::vector<std::vector<Item<T>>> bufs(nt);
  std::vector<int64_t> nans(nt, 0);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1)
#endif
  for (int t = 0; t < nt; ++t) {
    const int64_t lo = n * t / nt;
    const int64_t hi = n * (t + 1) / nt;
    scan_slice<T, Largest>(x, lo, hi, k, &bufs[t], &nans[t]);
  }
  std::vector<Item<T>> all;
  size_t total = 0;
  for (auto& b : bufs) total += b.size();
  all.reserve(total);
  for (auto& b : bufs) all.insert(all.end(), b.begin(), b.end());
  int64_t nn = 0;
  for (auto c : nans) nn += c;
  *nan_count = nn;
  const int64_t kk = std::min<int64_t>(k, static_cast<int64_t>(all.size()));
  cut_to_k<T, Largest>(&all, kk);
  std::sort(all.begin(), all.end(), Before<T, Largest>());
  values->resize(kk);
  indices->resize(kk);
  for (int64_t j = 0; j < kk; ++j) {
    (*values)[j] = all[j].v;
    (*indices)[j] = all[j].i;
  }
}

}  // namespace

template <typename T>
void topk(const T* x, int64_t n, int64_t k, bool largest, int num_threads,
          std::vector<T>* values, std::vector<int64_t>* indices,
          int64_t* nan_count) {
  if (largest) {
    topk_impl<T, true>(x, n, k, num_threads, values, indices, nan_count);
  } else {
    topk_impl<T, false>(x, n, k, num_threads, values, indices, nan_count);
  }
}

template void topk<float>(const float*, int64_t, int64_t, bool, int,
                          std::vector<float>*, std::vector<int64_t>*, int64_t*);
template void topk<double>(const double*, int64_t, int64_t, bool, int,
                           std::vector<double>*, std::vector<int64_t>*,
                           int64_t*);

}  // namespace autoal_fast
