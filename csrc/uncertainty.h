// Fused CPU uncertainty scores (see uncertainty.cpp).
#pragma once
#include <cstdint>

namespace autoal_fast {

// logits z: n rows of C floats, row stride `stride` (elements), class stride 1.
// Writes entropy, margin score, least-confidence score; flags |= 1 on NaN/inf.
void uncertainty_logits(const float* z, int64_t stride, int64_t n, int64_t C,
                        float* ent, float* mar, float* lc, int32_t* flags,
                        int num_threads);

// mc logits x: [T, n, C] with strides (stride_t, stride_n, 1) in elements.
// Writes var_ratio, bald, mean_std; flags |= 2 on NaN/inf.
void uncertainty_mc(const float* x, int64_t stride_t, int64_t stride_n,
                    int64_t n, int64_t C, int64_t T, float* var_ratio,
                    float* bald, float* mean_std, int32_t* flags,
                    int num_threads);

}  // namespace autoal_fast
