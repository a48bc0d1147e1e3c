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

}  // namespace autoal_fast
