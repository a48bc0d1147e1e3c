#include "distance.h"
#include "threads.h"

#include <algorithm>
#include <vector>
#include <cmath>
#include <cstring>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace autoal_fast {

namespace {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// Exact widening of one element to float32. Branch-free (bit masks rather than
// selects the compiler could turn into jumps), so the feature loop below
// vectorises for every element type.
inline float widen(float v) { return v; }

inline float widen(BFloat16 v) { return bits_to_float(uint32_t(v.bits) << 16); }

inline uint32_t mask_if(bool b) { return 0u - static_cast<uint32_t>(b); }

inline float widen(Half v) {
  const uint32_t h = v.bits;
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;  // exponent and mantissa
  // normal: rebias the exponent (127 - 15); inf / NaN: all-ones exponent,
  // mantissa (NaN payload) kept
  const uint32_t infnan = mask_if(em >= 0x7c00u);
  const uint32_t normal = ((em << 13) + 0x38000000u) | (infnan & 0x7f800000u);
  // zero / subnormal: em * 2^-24, exact in float32
  const uint32_t sub = float_to_bits(static_cast<float>(static_cast<int32_t>(em)) * 0x1p-24f);
  const uint32_t small = mask_if(em < 0x0400u);
  return bits_to_float(((sub & small) | (normal & ~small)) | sign);
}

// Partial sums per row: feature j always goes to lane j % kLanes, the last
// partial block is zero-padded (it adds exact zeros) and the lanes are added in
// one fixed tree. The file is built without -ffast-math and without FMA
// contraction (CMakeLists.txt), so the sum is specified by the source alone and
// is the same for every element type: a 16-bit matrix gives bit-for-bit the
// distances of its float32 upcast. Sixteen lanes fill one AVX-512 or two AVX2
// registers; fixed trip counts keep them in registers.
constexpr int kLanes = 16;

template <typename T>
inline void add_block(const T* __restrict a, const float* __restrict c,
                      float* __restrict acc) {
  for (int l = 0; l < kLanes; ++l) {
    const float t = widen(a[l]) - c[l];
    acc[l] += t * t;
  }
}

template <typename T>
inline float sq_dist(const T* __restrict a, const float* __restrict c,
                     int64_t d) {
  float acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= d; j += kLanes) add_block(a + j, c + j, acc);
  if (j < d) {
    T ta[kLanes];
    float tc[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      ta[l] = j + l < d ? a[j + l] : T{};
      tc[l] = j + l < d ? c[j + l] : 0.f;
    }
    add_block(ta, tc, acc);
  }
  for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
  for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
  return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

// Rows listed in idx are scattered through x (a pruned step visits a few
// clusters' points), so each one is a cache miss the hardware prefetcher cannot
// foresee; asking for the row kAhead places down the list hides that latency
// (1000 scattered rows of a 100k x 512 matrix: 0.54 -> 0.23 ms in float16,
// 0.38 -> 0.27 ms in float32, one thread). Contiguous passes need no help.
constexpr int64_t kAhead = 4;

inline void prefetch_row(const void* row, int64_t bytes) {
#if defined(__GNUC__) || defined(__clang__)
  const char* p = static_cast<const char*>(row);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
#else
  (void)row;
  (void)bytes;
#endif
}

}  // namespace

template <typename T>
void min_dist_update(const T* x, int64_t ld, int64_t d, const int64_t* idx,
                     int64_t m, const float* c, float* mind, int32_t* assign,
                     int32_t cid, float* dist_out, int num_threads) {
  // Below ~256 KiB of work a thread team costs more than it saves.
  const int nt = threads_for(num_threads, m * d, int64_t(1) << 15);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
  for (int64_t r = 0; r < m; ++r) {
    const int64_t i = idx ? idx[r] : r;
    if (idx && r + kAhead < m) prefetch_row(x + idx[r + kAhead] * ld, d * int64_t(sizeof(T)));
    const float dist = std::sqrt(sq_dist(x + i * ld, c, d));
    if (dist_out) dist_out[r] = dist;
    const float old = mind[i];
    if (old >= 0.f && dist < old) {
      mind[i] = dist;
      assign[i] = cid;
    }
  }
}

namespace {

struct Bound {
  float v;
  int32_t i;
};

// std heap comparator: "a below b" when a's bound is smaller, or equal with a
// higher row id, so the top is the largest bound, lowest row among equals.
inline bool below(const Bound& a, const Bound& b) {
  return a.v < b.v || (a.v == b.v && a.i > b.i);
}

template <typename T>
inline void widen_row(const T* a, int64_t d, float* out) {
  for (int64_t j = 0; j < d; ++j) out[j] = widen(a[j]);
}

}  // namespace

template <typename T>
void kcenter_lazy(const T* x, int64_t ld, int64_t n, int64_t d, float* mind,
                  int32_t* assign, int32_t cid0, int64_t k, int64_t first,
                  int64_t* picks, int64_t* stats, int num_threads) {
  std::vector<float> centres(static_cast<size_t>(std::max<int64_t>(k, 1) * d));
  std::vector<int32_t> seen(static_cast<size_t>(n), 0);  // pool centres refreshed against
  int64_t refreshes = 0, pops = 0, t = 0;
  if (first >= 0 && k > 0) {
    widen_row(x + first * ld, d, centres.data());
    mind[first] = -1.f;
    assign[first] = cid0;
    picks[0] = first;
    t = 1;
    min_dist_update<T>(x, ld, d, nullptr, n, centres.data(), mind, assign, cid0, nullptr,
                       num_threads);
    std::fill(seen.begin(), seen.end(), 1);
    refreshes += n;
  }
  std::vector<Bound> heap;
  heap.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (mind[i] >= 0.f) heap.push_back({mind[i], static_cast<int32_t>(i)});
  }
  std::make_heap(heap.begin(), heap.end(), below);
  while (t < k && !heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), below);
    const int32_t i = heap.back().i;
    ++pops;
    if (seen[i] == t) {  // fresh: the exact argmax
      heap.pop_back();
      picks[t] = i;
      widen_row(x + int64_t(i) * ld, d, centres.data() + t * d);
      mind[i] = -1.f;
      assign[i] = cid0 + static_cast<int32_t>(t);
      ++t;
      continue;
    }
    const T* row = x + int64_t(i) * ld;
    float best = mind[i];
    int32_t who = assign[i];
    for (int64_t j = seen[i]; j < t; ++j) {
      const float dist = std::sqrt(sq_dist(row, centres.data() + j * d, d));
      if (dist < best) {
        best = dist;
        who = cid0 + static_cast<int32_t>(j);
      }
    }
    refreshes += t - seen[i];
    seen[i] = static_cast<int32_t>(t);
    mind[i] = best;
    assign[i] = who;
    heap.back().v = best;
    std::push_heap(heap.begin(), heap.end(), below);
  }
  if (stats) {
    stats[0] = refreshes;
    stats[1] = pops;
  }
}


namespace {

// Squared distance in float64, difference form (each element widened exactly).
template <typename T>
inline double sq_dist64(const T* __restrict a, const float* __restrict c, int64_t d) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t j = 0;
  for (; j + 4 <= d; j += 4) {
    for (int l = 0; l < 4; ++l) {
      const double t = double(widen(a[j + l])) - double(c[j + l]);
      acc[l] += t * t;
    }
  }
  for (; j < d; ++j) {
    const double t = double(widen(a[j])) - double(c[j]);
    acc[0] += t * t;
  }
  return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

template <typename T>
inline double sq_norm64(const T* __restrict a, int64_t d) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t j = 0;
  for (; j + 4 <= d; j += 4) {
    for (int l = 0; l < 4; ++l) {
      const double t = double(widen(a[j + l]));
      acc[l] += t * t;
    }
  }
  for (; j < d; ++j) {
    const double t = double(widen(a[j]));
    acc[0] += t * t;
  }
  return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

struct GroupKey {
  double key;  // lower bound on the distance of any member
  int64_t g;
};

}  // namespace

template <typename T>
void nearest_labeled_pruned(const T* x, int64_t ld, int64_t m, int64_t d,
                            const float* lab, const int64_t* lab_id,
                            const int64_t* start, int64_t groups,
                            const float* dots, const double* anchor_sq,
                            const double* radius, double unit, float* mind,
                            int32_t* assign, int64_t* visited, int num_threads) {
  const double dd = static_cast<double>(d);
  // float32 matmul dot: |error| <= gamma_{d+2} ||x|| ||a|| (any summation order)
  const double gamma = (dd + 2.0) * unit / (1.0 - (dd + 2.0) * unit);
  // float32 difference form (sum of d non-negative terms): relative error
  // <= gamma_{d+4} with u = 2^-24, plus an absolute term for subnormals
  // flushed to zero
  const double u32 = std::ldexp(1.0, -24);
  const double rel32 = (dd + 4.0) * u32 / (1.0 - (dd + 4.0) * u32);
  const double abs32 = (dd + 4.0) * std::ldexp(1.0, -125);
  const double rel64 = 4.0 * (dd + 2.0) * std::ldexp(1.0, -53);  // float64 norms and sums
  const double abs_mm = 4.0 * (dd + 2.0) * std::ldexp(1.0, -125);  // flushed products
  const int64_t nl = start[groups];
  std::vector<double> anorm(static_cast<size_t>(groups));
  for (int64_t g = 0; g < groups; ++g) anorm[g] = std::sqrt(anchor_sq[g]);
  int64_t total = 0;
  const int nt = threads_for(num_threads, m * d * 16, int64_t(1) << 15);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(+ : total)
#endif
  {
    std::vector<double> lo2(static_cast<size_t>(groups));
    std::vector<GroupKey> live;
    live.reserve(static_cast<size_t>(groups));
    std::vector<std::pair<float, int64_t>> seen;  // (float32 d^2, lab row)
    seen.reserve(static_cast<size_t>(std::min<int64_t>(nl, 4096)));
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 64)
#endif
    for (int64_t i = 0; i < m; ++i) {
      const T* row = x + i * ld;
      const float* dot = dots + i * groups;
      const double xn2 = sq_norm64(row, d);
      const double xn = std::sqrt(xn2);
      // lo2[g]: a lower bound on d(x, a_g)^2; first visit the group of the nearest anchor
      int64_t gmin = 0;
      for (int64_t g = 0; g < groups; ++g) {
        const double s = xn2 + anchor_sq[g] - 2.0 * double(dot[g]);
        const double err = 2.0 * gamma * xn * anorm[g] + rel64 * (xn2 + anchor_sq[g]) + abs_mm;
        lo2[g] = s - err;
        if (lo2[g] < lo2[gmin]) gmin = g;
      }
      float best = INFINITY;
      seen.clear();
      auto visit = [&](int64_t g) {
        for (int64_t r = start[g]; r < start[g + 1]; ++r) {
          const float v = sq_dist(row, lab + r * d, d);
          seen.emplace_back(v, r);
          if (v < best) best = v;
        }
      };
      // an upper bound on the true distance of the best member so far
      auto upper = [&]() {
        return std::sqrt(double(best) * (1.0 + rel32) + abs32) * (1.0 + 1e-12);
      };
      visit(gmin);
      double ub = upper();
      live.clear();
      for (int64_t g = 0; g < groups; ++g) {
        // skipped when d(x, a_g) - r_g > ub, tested without a square root first
        if (g == gmin || lo2[g] <= 0.0) {
          if (g != gmin) live.push_back({-radius[g], g});
          continue;
        }
        const double reach = ub + radius[g];
        if (lo2[g] > reach * reach * (1.0 + 1e-12)) continue;
        live.push_back({std::sqrt(lo2[g]) * (1.0 - 1e-12) - radius[g], g});
      }
      std::sort(live.begin(), live.end(), [](const GroupKey& a, const GroupKey& b) {
        return a.key < b.key || (a.key == b.key && a.g < b.g);
      });
      for (const GroupKey& gk : live) {
        if (gk.key > ub) break;  // sorted: every later group is skipped too
        visit(gk.g);
        ub = upper();
      }
      total += static_cast<int64_t>(seen.size());
      // every member that may be the nearest once rounding is undone
      const double cut = (double(best) * (1.0 + rel32) + abs32) / (1.0 - rel32) + abs32;
      double b64 = INFINITY;
      int64_t who = -1;
      for (const auto& sv : seen) {
        if (!(double(sv.first) <= cut)) continue;
        const double v = sq_dist64(row, lab + sv.second * d, d);
        const int64_t id = lab_id[sv.second];
        if (v < b64 || (v == b64 && id < who) || who < 0) {
          b64 = v;
          who = id;
        }
      }
      mind[i] = static_cast<float>(std::sqrt(b64));
      assign[i] = static_cast<int32_t>(who);
    }
  }
  if (visited) visited[0] += total;
}

void sq_dist64_rows(const float* x, int64_t ld, int64_t m, int64_t d, const float* c,
                    const int64_t* col, double* out, int num_threads) {
  const int nt = threads_for(num_threads, m * d, int64_t(1) << 15);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
  for (int64_t r = 0; r < m; ++r) out[r] = sq_dist64(x + r * ld, c + col[r] * d, d);
}

#define AUTOAL_FAST_MIN_DIST_UPDATE(T)                                        \
  template void min_dist_update<T>(const T*, int64_t, int64_t, const int64_t*, \
                                   int64_t, const float*, float*, int32_t*,   \
                                   int32_t, float*, int);
AUTOAL_FAST_MIN_DIST_UPDATE(float)
AUTOAL_FAST_MIN_DIST_UPDATE(Half)
AUTOAL_FAST_MIN_DIST_UPDATE(BFloat16)
#undef AUTOAL_FAST_MIN_DIST_UPDATE

#define AUTOAL_FAST_KCENTER_LAZY(T)                                               \
  template void kcenter_lazy<T>(const T*, int64_t, int64_t, int64_t, float*, int32_t*, \
                                int32_t, int64_t, int64_t, int64_t*, int64_t*, int);
AUTOAL_FAST_KCENTER_LAZY(float)
AUTOAL_FAST_KCENTER_LAZY(Half)
AUTOAL_FAST_KCENTER_LAZY(BFloat16)
#undef AUTOAL_FAST_KCENTER_LAZY

#define AUTOAL_FAST_NEAREST_PRUNED(T)                                                    \
  template void nearest_labeled_pruned<T>(const T*, int64_t, int64_t, int64_t, const float*, \
                                          const int64_t*, const int64_t*, int64_t,            \
                                          const float*, const double*, const double*, double, \
                                          float*, int32_t*, int64_t*, int);
AUTOAL_FAST_NEAREST_PRUNED(float)
AUTOAL_FAST_NEAREST_PRUNED(Half)
AUTOAL_FAST_NEAREST_PRUNED(BFloat16)
#undef AUTOAL_FAST_NEAREST_PRUNED

}  // namespace autoal_fast
