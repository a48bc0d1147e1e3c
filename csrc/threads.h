// How many OpenMP threads a job gets: the caller's request (<= 0: OpenMP's
// default), but at most one thread per `min_per_thread` units of work and at
// least one. A thread costs a wake-up and, on a busy machine, a wait for a
// core, so small jobs stay on the calling thread.
#pragma once
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace autoal_fast {

inline int threads_for(int num_threads, int64_t work, int64_t min_per_thread) {
  int nt = 1;
#ifdef _OPENMP
  nt = num_threads > 0 ? num_threads : omp_get_max_threads();
#else
  (void)num_threads;
#endif
  const int64_t cap = std::max<int64_t>(1, work / std::max<int64_t>(1, min_per_thread));
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt, cap)));
}

}  // namespace autoal_fast
