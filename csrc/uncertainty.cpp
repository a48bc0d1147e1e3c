// Fused uncertainty scores on CPU: one read of each logit, one exp per value.
//
// Rows are independent; OpenMP splits them over threads. exp/log are small
// vectorisable polynomials of our own (Cody-Waite + Taylor for exp; atanh
// series for log) so that `omp simd` loops vectorise without -ffast-math,
// which would break the NaN/inf checks. Scores are those of docs/method.md;
// a row with NaN/inf gets NaN scores and a flag (1: logits, 2: mc_logits).
#include "uncertainty.h"
#include "threads.h"

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace autoal_fast {
namespace {
/* exp for x <= 88: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, Taylor to r^7
   (truncation < 1e-8 relative), scale by 2^k built from bits; 0 below -87.33. */
static inline float fexp(float x) {
    float xc = x < -87.33654f ? -87.33654f : (x > 88.0f ? 88.0f : x);
    float kf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = (xc - kf * 0.693359375f) + kf * 2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (static_cast<int32_t>(kf) + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return x < -87.33654f ? 0.0f : p * scale;
}

/* log for normal x > 0: x = 2^k m, m in [sqrt(.5), sqrt(2)), log m = 2 atanh(s), s=(m-1)/(m+1). */
static inline float flog(float x) {
    int32_t bits;
    memcpy(&bits, &x, 4);
    int32_t k = ((bits >> 23) & 0xff) - 127;
    int32_t mb = (bits & 0x7fffff) | 0x3f800000;
    float m;
    memcpy(&m, &mb, 4);
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    k += big;
    float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float poly = s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9 + s2 * (1.0f / 11)))));
    float kf = static_cast<float>(k);
    return kf * 0.693359375f - kf * 2.12194440e-4f + 2.0f * s * (1.0f + poly);
}

/* max, non-finite flag and first argmax of one row */
static inline float row_max(const float* r, int64_t C, int* bad, int64_t* arg) {
    float m = -INFINITY;
    int b = 0;
#pragma omp simd reduction(max : m) reduction(| : b)
    for (int64_t c = 0; c < C; ++c) {
        float v = r[c];
        m = v > m ? v : m;
        b |= !(fabsf(v) <= FLT_MAX);
    }
    *bad = b;
    int64_t a = 0;
    if (!b)
        while (r[a] != m) ++a;
    *arg = a;
    return m;
}

static void unc_logits_rows(const float* z, int64_t sz, int64_t n, int64_t C, float* ent, float* mar, float* lc,
                int32_t* flags) {
    for (int64_t i = 0; i < n; ++i) {
        const float* r = z + i * sz;
        int bad;
        int64_t arg;
        float m = row_max(r, C, &bad, &arg);
        if (bad) {
            flags[i] |= 1;
            ent[i] = mar[i] = lc[i] = NAN;
            continue;
        }
        float m2 = -INFINITY, rest = 0.0f, ts = 0.0f;
#pragma omp simd reduction(max : m2) reduction(+ : rest, ts)
        for (int64_t c = 0; c < C; ++c) {
            float v = r[c];
            float d = v - m;
            float e = fexp(d);
            int top = c == arg;
            float w = top ? -INFINITY : v;
            m2 = w > m2 ? w : m2;
            rest += top ? 0.0f : e;
            ts += e * d;
        }
        float s = 1.0f + rest;
        ent[i] = log1pf(rest) - ts / s;
        lc[i] = rest / s;
        mar[i] = expm1f(m2 - m) / s;
    }
}

/* scratch: (T + 2) * C floats (the T probability rows, mean, sum of squares); args: T int64.
   mean_std is two-pass over the stored rows (mean, then squared deviations). */
static void unc_mc_rows(const float* x, int64_t sxt, int64_t sxn, int64_t n, int64_t C, int64_t T, float* vr,
            float* bald, float* mstd, int32_t* flags, float* scratch, int64_t* args) {
    float* mean = scratch + T * C;
    float* m2 = scratch + (T + 1) * C;
    for (int64_t i = 0; i < n; ++i) {
        int bad = 0;
        float hsum = 0.0f;
        memset(mean, 0, sizeof(float) * C);
        memset(m2, 0, sizeof(float) * C);
        for (int64_t t = 0; t < T && !bad; ++t) {
            const float* r = x + t * sxt + i * sxn;
            float* e = scratch + t * C;
            int64_t arg;
            float m = row_max(r, C, &bad, &arg);
            if (bad) break;
            float rest = 0.0f, ts = 0.0f;
#pragma omp simd reduction(+ : rest, ts)
            for (int64_t c = 0; c < C; ++c) {
                float d = r[c] - m;
                float ev = fexp(d);
                e[c] = ev;
                rest += c == arg ? 0.0f : ev;
                ts += ev * d;
            }
            float s = 1.0f + rest, inv = 1.0f / s;
            hsum += log1pf(rest) - ts * inv;
            args[t] = arg;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                float p = e[c] * inv;
                e[c] = p;
                mean[c] += p;
            }
        }
        if (!bad) {
            float invT = 1.0f / static_cast<float>(T);
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) mean[c] *= invT;
            for (int64_t t = 0; t < T; ++t) {
                const float* e = scratch + t * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) {
                    float dv = e[c] - mean[c];
                    m2[c] += dv * dv;
                }
            }
        }
        if (bad) {
            flags[i] |= 2;
            vr[i] = bald[i] = mstd[i] = NAN;
            continue;
        }
        float hb = 0.0f, ss = 0.0f, invT = 1.0f / static_cast<float>(T);
#pragma omp simd reduction(+ : hb, ss)
        for (int64_t c = 0; c < C; ++c) {
            float pb = mean[c];
            hb -= pb >= FLT_MIN ? pb * flog(pb) : 0.0f;
            float v = m2[c] * invT;
            ss += sqrtf(v > 0.0f ? v : 0.0f); /* rounding can leave -0.0-ish */
        }
        int64_t best = 0;
        for (int64_t a = 0; a < T; ++a) {
            int64_t cnt = 0;
            for (int64_t b = 0; b < T; ++b) cnt += args[b] == args[a];
            best = cnt > best ? cnt : best;
        }
        vr[i] = static_cast<float>(T - best) / static_cast<float>(T); /* exact 0 when all samples agree */
        bald[i] = hb - hsum * invT;
        mstd[i] = ss / static_cast<float>(C);
    }
}

// Runs fn(a, b) over contiguous row ranges [a, b), one per thread, with at
// least 512 rows per thread.
template <typename Fn>
void for_row_ranges(int64_t n, int num_threads, Fn fn) {
  const int nt = threads_for(num_threads, n, 512);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
  for (int t = 0; t < nt; ++t) fn(n * t / nt, n * (t + 1) / nt);
}

}  // namespace

void uncertainty_logits(const float* z, int64_t stride, int64_t n, int64_t C,
                        float* ent, float* mar, float* lc, int32_t* flags,
                        int num_threads) {
  for_row_ranges(n, num_threads, [&](int64_t a, int64_t b) {
    unc_logits_rows(z + a * stride, stride, b - a, C, ent + a, mar + a, lc + a,
                    flags + a);
  });
}

void uncertainty_mc(const float* x, int64_t stride_t, int64_t stride_n,
                    int64_t n, int64_t C, int64_t T, float* var_ratio,
                    float* bald, float* mean_std, int32_t* flags,
                    int num_threads) {
  for_row_ranges(n, num_threads, [&](int64_t a, int64_t b) {
    std::vector<float> scratch(static_cast<size_t>((T + 2) * C));
    std::vector<int64_t> args(static_cast<size_t>(T));
    unc_mc_rows(x + a * stride_n, stride_t, stride_n, b - a, C, T,
                var_ratio + a, bald + a, mean_std + a, flags + a,
                scratch.data(), args.data());
  });
}

}  // namespace autoal_fast
