// Fused nearest-centre update for exact k-center greedy (CPU).
//
// For every row i in a set of rows of a matrix x (all rows, or the rows listed
// in idx), computes the exact Euclidean distance to one new centre c as
// sqrt(sum_j (x_ij - c_j)^2) (difference form: no cancellation) and, when it
// is strictly smaller than mind[i], writes it to mind[i] and sets
// assign[i] = cid. Rows with mind[i] < 0 (already chosen) are left alone.
// One read of each row; OpenMP over rows, SIMD over features.
//
// Rows may be float32, IEEE float16 or bfloat16 (the two 16-bit formats as
// raw bit patterns, see Half / BFloat16). Each element is widened to float32
// exactly as it is read; the centre and all arithmetic stay float32, so a
// 16-bit matrix gives the same distances as its float32 upcast.
#pragma once
#include <cstdint>

namespace autoal_fast {

// 16-bit row element formats, stored as their bit patterns.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

// x: row-major, row i starts at x + i * ld (ld in elements); d features.
// T: float, Half or BFloat16 (instantiated in distance.cpp).
// idx: nullptr for rows [0, m), else m row ids (int64) into x / mind / assign.
// dist_out: optional (may be nullptr), m distances in row-list order.
template <typename T>
void min_dist_update(const T* x, int64_t ld, int64_t d, const int64_t* idx,
                     int64_t m, const float* c, float* mind, int32_t* assign,
                     int32_t cid, float* dist_out, int num_threads);

// Exact k-center greedy by lazy evaluation (CPU).
//
// mind[i] on entry: the exact distance of row i to its nearest initial centre
// (e.g. the labeled set; +inf with none), < 0 for rows never to pick. A
// point's distance to its nearest centre only falls as centres are added, so
// a stale mind[i] is an upper bound. Bounds sit in a max-heap ordered by
// (bound desc, row asc); the top is refreshed against the pool centres added
// since its last refresh (the distance of min_dist_update, bit for bit) and
// pushed back, until a top is fresh: that row is the exact argmax with ties
// to the lower index, i.e. the plain one-pass-per-step greedy's pick.
// first >= 0: that row is pick 0 and every row is refreshed against it in one
// (OpenMP) pass. Writes k picks; mind / assign end as the final state of the
// rows that were refreshed (stale elsewhere); assign gets cid0 + pick number.
// stats (may be nullptr): [0] refreshes (row-centre distances), [1] heap pops.
template <typename T>
void kcenter_lazy(const T* x, int64_t ld, int64_t n, int64_t d, float* mind,
                  int32_t* assign, int32_t cid0, int64_t k, int64_t first,
                  int64_t* picks, int64_t* stats, int num_threads);


// Exact nearest labeled row of each pool row, pruned by anchor groups (CPU).
//
// The labeled rows lab (nl x d float32, row-major) are ordered by group:
// group g holds rows [start[g], start[g + 1]) and has anchor a_g with
// ||a_g||^2 = anchor_sq[g] (float64) and radius[g] >= the distance of every
// member to a_g. For pool row i (of m rows, x + i * ld), dots[i * G + g] is
// x_i . a_g as a float32 matmul computed it (any summation order): with unit
// roundoff `unit`, |error| <= (d + 2) * unit * ||x_i|| ||a_g||.
// From it a lower bound on d(x_i, a_g) is formed in float64 (error removed);
// groups are visited in increasing (bound - radius) and a group is skipped
// when d(x_i, a_g) - r_g exceeds the best member distance found so far (an
// upper bound, float32 difference form inflated by its rounding error): no
// skipped member can be as near as the nearest. Members are measured in
// float32 difference form; those that could be the nearest after rounding
// are measured again in float64 (difference form) and the smallest float64
// squared distance wins, ties to the lower lab_id. Writes
// mind[i] = float32(sqrt(that float64)) and assign[i] = its lab_id.
// visited (may be nullptr): [0] += member distances computed.
template <typename T>
void nearest_labeled_pruned(const T* x, int64_t ld, int64_t m, int64_t d,
                            const float* lab, const int64_t* lab_id,
                            const int64_t* start, int64_t groups,
                            const float* dots, const double* anchor_sq,
                            const double* radius, double unit, float* mind,
                            int32_t* assign, int64_t* visited, int num_threads);

// out[r] = sum_j (x_rj - c_{col[r], j})^2 in float64, difference form, for
// rows r in [0, m) of x (float32): the float64 distance nearest_labeled_pruned
// ranks by, in the same summation order.
void sq_dist64_rows(const float* x, int64_t ld, int64_t m, int64_t d, const float* c,
                    const int64_t* col, double* out, int num_threads);

}  // namespace autoal_fast
