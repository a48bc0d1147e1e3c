#include "topk.h"
#include "threads.h"

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
// Per-thread scan state: a candidate buffer of at most 2k items and, once it
// has been cut to k, a rejection threshold (the k-th kept value).
template <typename T>
struct ScanState {
  std::vector<Item<T>> buf;
  bool have_thr = false;
  T thr = T(0);
  int64_t nans = 0;
};

// Scans x[lo, hi) into st. A thread's slices arrive in increasing index order
// (OpenMP hands out loop iterations in order), so once the buffer has been cut
// to k, an element equal to the k-th value ranks after all k kept ones and is
// rejected: the fast path is one comparison per element.
template <typename T, bool Largest>
void scan_slice(const T* x, int64_t lo, int64_t hi, int64_t k, ScanState<T>* st) {
  if (k == 0) {
    for (int64_t j = lo; j < hi; ++j) st->nans += std::isnan(x[j]) ? 1 : 0;
    return;
  }
  const int64_t cap = 2 * k;
  std::vector<Item<T>>& buf = st->buf;
  T thr = st->thr;
  bool have_thr = st->have_thr;
  int64_t nans = 0;
  for (int64_t j = lo; j < hi; ++j) {
    const T v = x[j];
    if (have_thr) {
      // NaN compares false with everything, so it falls through to the check.
      if (Largest ? !(v > thr) : !(v < thr)) {
        if (v != v) ++nans;
        continue;
      }
    } else if (v != v) {
      ++nans;
      continue;
    }
    buf.push_back(Item<T>{v, j});
    if (static_cast<int64_t>(buf.size()) >= cap) {
      cut_to_k<T, Largest>(&buf, k);
      // nth_element at k-1 then resize(k): the k-th best sits at k-1.
      thr = buf[k - 1].v;
      have_thr = true;
    }
  }
  st->thr = thr;
  st->have_thr = have_thr;
  st->nans += nans;
}

template <typename T, bool Largest>
void topk_impl(const T* x, int64_t n, int64_t k, int num_threads,
               std::vector<T>* values, std::vector<int64_t>* indices,
               int64_t* nan_count) {
  // Threads only with at least 2M elements each.
  const int nt = threads_for(num_threads, n, int64_t(1) << 21);
  // Slices are handed out dynamically, so a thread that is scheduled late
  // (another process on its core) takes fewer of them instead of stalling all.
  const int64_t slice = std::max<int64_t>(int64_t(1) << 18, n / (int64_t(nt) * 16) + 1);
  const int64_t n_slices = (n + slice - 1) / slice;
  std::vector<ScanState<T>> states(nt);
  if (nt == 1) {
    scan_slice<T, Largest>(x, 0, n, k, &states[0]);
  } else {
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
      ScanState<T>& st = states[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1)
      for (int64_t s = 0; s < n_slices; ++s) {
        const int64_t lo = s * slice;
        scan_slice<T, Largest>(x, lo, std::min(n, lo + slice), k, &st);
      }
    }
#endif
  }
  std::vector<Item<T>> all;
  size_t total = 0;
  int64_t nn = 0;
  for (auto& st : states) {
    total += st.buf.size();
    nn += st.nans;
  }
  all.reserve(total);
  for (auto& st : states) all.insert(all.end(), st.buf.begin(), st.buf.end());
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
