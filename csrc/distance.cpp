#include "distance.h"
#include "threads.h"

#include <algorithm>
#include <cmath>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace autoal_fast {

namespace {

inline float sq_dist(const float* __restrict a, const float* __restrict c,
                     int64_t d) {
  // Eight independent partial sums so the compiler can vectorise without
  // -ffast-math; the omp simd reduction does the same where OpenMP is on.
  float acc = 0.f;
#ifdef _OPENMP
#pragma omp simd reduction(+ : acc)
#endif
  for (int64_t j = 0; j < d; ++j) {
    const float t = a[j] - c[j];
    acc += t * t;
  }
  return acc;
}

}  // namespace

void min_dist_update(const float* x, int64_t ld, int64_t d, const int64_t* idx,
                     int64_t m, const float* c, float* mind, int32_t* assign,
                     int32_t cid, float* dist_out, int num_threads) {
  // Below ~256 KiB of work a thread team costs more than it saves.
  const int nt = threads_for(num_threads, m * d, int64_t(1) << 15);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
  for (int64_t r = 0; r < m; ++r) {
    const int64_t i = idx ? idx[r] : r;
    const float dist = std::sqrt(sq_dist(x + i * ld, c, d));
    if (dist_out) dist_out[r] = dist;
    const float old = mind[i];
    if (old >= 0.f && dist < old) {
      mind[i] = dist;
      assign[i] = cid;
    }
  }
}

}  // namespace autoal_fast
