// ops.c: reference CPU operators (see ops.h for the contracts).
//
// The matmuls use GCC/Clang vector extensions (16 floats per vector) with 4x4 register blocking:
// the compiler lowers them to AVX-512, AVX2 or SSE as the target allows, so this file stays
// portable. Everything else is plain loops. Deliberately not here: packing, bf16, AVX-512 and AMX
// kernels (they live in the packed GEMM, src/ops/gemm.c, tested against this reference; its AMX
// kernel so far only through an emulator), flash-style attention (T stays small in training here).
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/gemm.h"
#include "ops/vec.h"
#include "util.h"

// dot(a, b) over n floats: two vector accumulators and a scalar tail. On AVX2, 4 ymm chains
// written out (gcc 12 keeps a loop-carried 64-byte vector in memory there, with scalar inserts);
// the same sums in the same order as the v16 form (chain c holds lanes 8c .. 8c+7 of s0 / s1).
float fg_vdot(const float *a, const float *b, int n) {
#if defined(FG_V16_AVX2)
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    int j = 0;
    for (; j + 2 * VW <= n; j += 2 * VW) {
        c0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), c0);
        c1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), c1);
        c2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 16), _mm256_loadu_ps(b + j + 16), c2);
        c3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 24), _mm256_loadu_ps(b + j + 24), c3);
    }
    for (; j + VW <= n; j += VW) {
        c0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), c0);
        c1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), c1);
    }
    float t = hsum8(_mm256_add_ps(_mm256_add_ps(c0, c2), _mm256_add_ps(c1, c3)));
    for (; j < n; j++) t += a[j] * b[j];
    return t;
#else
    v16 s0 = {0}, s1 = {0};
    int i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) { s0 = vfma(vload(a + i), vload(b + i), s0); s1 = vfma(vload(a + i + VW), vload(b + i + VW), s1); }
    for (; i + VW <= n; i += VW) s0 = vfma(vload(a + i), vload(b + i), s0);
    float s = vsum(s0 + s1);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
#endif
}

// y += a * x over n floats.
void fg_vaxpy(float *y, float a, const float *x, int n) {
    int i = 0;
#if defined(FG_V16_AVX2) // 8 at a time on ymm (see fg_vdot)
    __m256 a8 = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a8, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#else
    v16 av = vbcast(a);
    for (; i + VW <= n; i += VW) vstore(y + i, vfma(av, vload(x + i), vload(y + i)));
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

void fg_vscale(float *y, int n, float a) {
    v16 av = vbcast(a);
    int i = 0;
    for (; i + VW <= n; i += VW) vstore(y + i, vload(y + i) * av);
    for (; i < n; i++) y[i] *= a;
}

#if defined(__AVX512F__)
// Lane r of the result = the sum of v[r]'s lanes, for 16 vectors at once: a transposing tree of
// 15 adds (and 30 shuffles) instead of 16 separate reductions of 8 operations each. After the
// four levels lane 4k+j holds input slot 4j+k, so the caller passes row 4(s%4) + s/4 in slot s.
static inline __m512 hsum16(const __m512 *v) {
    __m512 w[8], x[4], y[2];
    for (int i = 0; i < 8; i++) // chunks (128 bits) 0+2 and 1+3 of slots 2i, 2i+1
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44), _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++) // chunk k of x[i]: four partial sums of slot 4i+k
        x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88), _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++) // within chunks: pairs of lanes of slots 8i+k and 8i+4+k
        y[i] = _mm512_add_ps(_mm512_unpacklo_ps(x[2 * i], x[2 * i + 1]), _mm512_unpackhi_ps(x[2 * i], x[2 * i + 1]));
    return _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x44), _mm512_shuffle_ps(y[0], y[1], 0xEE));
}
#endif

void fg_vdot_block(float *out, long ldo, const float *q, long ldq, int na, const float *x, long ldx, int nb, int n) {
    int a0 = 0;
#if defined(__AVX512F__)
    int n16 = n / VW * VW;
    for (; a0 + 4 <= na; a0 += 4) { // 4 q rows x 4 x rows per pass: 8 loads for 16 FMAs
        int b0 = 0;
        for (; b0 + 4 <= nb; b0 += 4) {
            __m512 acc[16]; // slot s: q row a0 + s%4 with x row b0 + s/4, summed into lane 4(s%4) + s/4
            for (int s = 0; s < 16; s++) acc[s] = _mm512_setzero_ps();
            const float *qa = q + (size_t)a0 * ldq, *xb = x + (size_t)b0 * ldx;
            for (int i = 0; i < n16; i += VW) {
                __m512 qv[4], xv[4];
                for (int k = 0; k < 4; k++) {
                    qv[k] = _mm512_loadu_ps(qa + k * ldq + i); xv[k] = _mm512_loadu_ps(xb + k * ldx + i);
                    VREG(qv[k]); VREG(xv[k]);
                }
                for (int s = 0; s < 16; s++) acc[s] = _mm512_fmadd_ps(qv[s % 4], xv[s / 4], acc[s]);
            }
            __m512 sum = hsum16(acc); // lanes 4a .. 4a+3: q row a0 + a with x rows b0 .. b0+3
            if (n16 < n) {
                float t[16];
                _mm512_storeu_ps(t, sum);
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++)
                        for (int i = n16; i < n; i++) t[4 * a + b] += qa[a * ldq + i] * xb[b * ldx + i];
                sum = _mm512_loadu_ps(t);
            }
            float *o = out + (size_t)a0 * ldo + b0;
            _mm_storeu_ps(o, _mm512_castps512_ps128(sum));
            _mm_storeu_ps(o + ldo, _mm512_extractf32x4_ps(sum, 1));
            _mm_storeu_ps(o + 2 * ldo, _mm512_extractf32x4_ps(sum, 2));
            _mm_storeu_ps(o + 3 * ldo, _mm512_extractf32x4_ps(sum, 3));
        }
        for (int a = a0; a < a0 + 4; a++)
            for (int b = b0; b < nb; b++) out[(size_t)a * ldo + b] = fg_vdot(q + (size_t)a * ldq, x + (size_t)b * ldx, n);
    }
    if (a0 < na && nb >= 4) { // 1..3 q rows left (a 2-row decode step): m x 4 tiles, each x row loaded once
        int m = na - a0, b0 = 0;
        for (; b0 + 4 <= nb; b0 += 4) {
            __m512 acc[12];
            for (int s = 0; s < 12; s++) acc[s] = _mm512_setzero_ps();
            const float *qa = q + (size_t)a0 * ldq, *xb = x + (size_t)b0 * ldx;
            for (int i = 0; i < n16; i += VW) {
                __m512 xv[4];
                for (int k = 0; k < 4; k++) { xv[k] = _mm512_loadu_ps(xb + k * ldx + i); VREG(xv[k]); }
                for (int a = 0; a < m; a++) {
                    __m512 qv = _mm512_loadu_ps(qa + a * ldq + i);
                    VREG(qv);
                    for (int k = 0; k < 4; k++) acc[4 * a + k] = _mm512_fmadd_ps(qv, xv[k], acc[4 * a + k]);
                }
            }
            for (int a = 0; a < m; a++)
                for (int k = 0; k < 4; k++) {
                    float t = _mm512_reduce_add_ps(acc[4 * a + k]);
                    for (int i = n16; i < n; i++) t += qa[a * ldq + i] * xb[k * ldx + i];
                    out[(size_t)(a0 + a) * ldo + b0 + k] = t;
                }
        }
        for (int a = a0; a < na; a++)
            for (int b = b0; b < nb; b++) out[(size_t)a * ldo + b] = fg_vdot(q + (size_t)a * ldq, x + (size_t)b * ldx, n);
        a0 = na;
    }
#elif defined(FG_V16_AVX2)
    // AVX2: 2 q rows x 4 x rows in 8 accumulators (each x row loaded once for both q rows; 16 ymm
    // registers hold no 4 x 4 block); a last odd q row as 1 x 4.
    int n8 = n / 8 * 8;
    for (; a0 < na && nb >= 4; a0 += 2) {
        int two = a0 + 1 < na, b0 = 0;
        const float *q0 = q + (size_t)a0 * ldq, *q1 = two ? q0 + ldq : q0;
        for (; b0 + 4 <= nb; b0 += 4) {
            __m256 acc[2][4];
            for (int k = 0; k < 4; k++) acc[0][k] = acc[1][k] = _mm256_setzero_ps();
            const float *xb = x + (size_t)b0 * ldx;
            for (int i = 0; i < n8; i += 8) {
                __m256 qa = _mm256_loadu_ps(q0 + i), qb = _mm256_loadu_ps(q1 + i);
                for (int k = 0; k < 4; k++) {
                    __m256 xv = _mm256_loadu_ps(xb + k * ldx + i);
                    acc[0][k] = _mm256_fmadd_ps(qa, xv, acc[0][k]);
                    acc[1][k] = _mm256_fmadd_ps(qb, xv, acc[1][k]);
                }
            }
            for (int a = 0; a < 1 + two; a++)
                for (int k = 0; k < 4; k++) {
                    const float *qa = a ? q1 : q0;
                    float t = hsum8(acc[a][k]);
                    for (int i = n8; i < n; i++) t += qa[i] * xb[k * ldx + i];
                    out[(size_t)(a0 + a) * ldo + b0 + k] = t;
                }
        }
        for (int a = a0; a < FG_MIN(na, a0 + 2); a++)
            for (int b = b0; b < nb; b++) out[(size_t)a * ldo + b] = fg_vdot(q + (size_t)a * ldq, x + (size_t)b * ldx, n);
    }
#endif
    for (; a0 < na; a0++)
        for (int b = 0; b < nb; b++) out[(size_t)a0 * ldo + b] = fg_vdot(q + (size_t)a0 * ldq, x + (size_t)b * ldx, n);
}

void fg_vaxpy_block(float *y, long ldy, int na, const float *p, long pa, long pb, const float *x, long ldx, int nb, int n) {
    int a0 = 0;
    for (; a0 + 4 <= na; a0 += 4) { // 4 y rows x 64 columns in 16 accumulators: 4 loads for 16 FMAs per x row
        float *ya = y + (size_t)a0 * ldy;
        const float *pr = p + (size_t)a0 * pa;
        int c = 0;
#if defined(FG_V16_AVX2)
        // AVX2: 4 y rows x 16 columns in 8 ymm accumulators (a 4 x 64 block would need 32)
        for (; c + 16 <= n; c += 16) {
            __m256 acc[4][2];
            for (int a = 0; a < 4; a++) {
                acc[a][0] = _mm256_loadu_ps(ya + a * ldy + c);
                acc[a][1] = _mm256_loadu_ps(ya + a * ldy + c + 8);
            }
            for (int b = 0; b < nb; b++) {
                const float *xb = x + (size_t)b * ldx + c;
                __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
                for (int a = 0; a < 4; a++) {
                    __m256 pv = _mm256_broadcast_ss(pr + a * pa + b * pb);
                    acc[a][0] = _mm256_fmadd_ps(pv, x0, acc[a][0]);
                    acc[a][1] = _mm256_fmadd_ps(pv, x1, acc[a][1]);
                }
            }
            for (int a = 0; a < 4; a++) {
                _mm256_storeu_ps(ya + a * ldy + c, acc[a][0]);
                _mm256_storeu_ps(ya + a * ldy + c + 8, acc[a][1]);
            }
        }
#endif
        for (; c + 4 * VW <= n; c += 4 * VW) {
            v16 acc[4][4];
            for (int a = 0; a < 4; a++)
                for (int v = 0; v < 4; v++) acc[a][v] = vload(ya + a * ldy + c + v * VW);
            for (int b = 0; b < nb; b++) {
                const float *xb = x + (size_t)b * ldx + c;
                v16 xv[4] = {vload(xb), vload(xb + VW), vload(xb + 2 * VW), vload(xb + 3 * VW)};
                for (int v = 0; v < 4; v++) VREG(xv[v]);
                for (int a = 0; a < 4; a++) {
                    v16 pv = vbcast(pr[a * pa + b * pb]);
                    for (int v = 0; v < 4; v++) acc[a][v] = vfma(pv, xv[v], acc[a][v]);
                }
            }
            for (int a = 0; a < 4; a++)
                for (int v = 0; v < 4; v++) vstore(ya + a * ldy + c + v * VW, acc[a][v]);
        }
        for (; c + VW <= n; c += VW) {
            v16 acc[4];
            for (int a = 0; a < 4; a++) acc[a] = vload(ya + a * ldy + c);
            for (int b = 0; b < nb; b++) {
                v16 xv = vload(x + (size_t)b * ldx + c);
                for (int a = 0; a < 4; a++) acc[a] = vfma(vbcast(pr[a * pa + b * pb]), xv, acc[a]);
            }
            for (int a = 0; a < 4; a++) vstore(ya + a * ldy + c, acc[a]);
        }
        for (; c < n; c++)
            for (int a = 0; a < 4; a++) {
                float v = ya[a * ldy + c];
                for (int b = 0; b < nb; b++) v += pr[a * pa + b * pb] * x[(size_t)b * ldx + c];
                ya[a * ldy + c] = v;
            }
    }
    for (; a0 < na; a0++)
        for (int b = 0; b < nb; b++) fg_vaxpy(y + (size_t)a0 * ldy, p[(size_t)a0 * pa + (size_t)b * pb], x + (size_t)b * ldx, n);
}

// ---- lane space: all heads of one query against cached rows --------------------------------------

void fg_lanes(int H, int *nl, int *r) {
    *r = H < VW && VW % H == 0 ? VW / H : 1;
    *nl = *r > 1 ? VW : (H + VW - 1) / VW * VW;
}

size_t fg_lane_q_floats(int H, int n) {
    int nl, r;
    fg_lanes(H, &nl, &r);
    return (size_t)(n + r - 1) / r * nl;
}

void fg_lane_q(float *qt, const float *q, long ldq, int H, int n) {
    int nl, r;
    fg_lanes(H, &nl, &r);
    int ng = (n + r - 1) / r;
    if (n % r || nl != H * r) memset(qt, 0, sizeof(float) * fg_lane_q_floats(H, n)); // padding lanes or a short group
    for (int g = 0; g < ng; g++) { // group g: dims [g*r, g*r + r) of every head, side by side (no divisions)
        float *t = qt + (size_t)g * nl;
        int k = FG_MIN(r, n - g * r);
        for (int h = 0; h < H; h++)
            for (int e = 0; e < k; e++) t[h * r + e] = q[(size_t)h * ldq + (size_t)g * r + e];
    }
}

// Lanes of one group of r summed, the sum in each of them (a butterfly over the group).
static inline v16 lane_group_sum(v16 v, int r) {
#if defined(__AVX512F__)
    __m512 x = (__m512)v;
    if (r >= 2) x = _mm512_add_ps(x, _mm512_permute_ps(x, 0xB1));          // swap neighbours
    if (r >= 4) x = _mm512_add_ps(x, _mm512_permute_ps(x, 0x4E));          // swap pairs
    if (r >= 8) x = _mm512_add_ps(x, _mm512_shuffle_f32x4(x, x, 0xB1));    // swap 128-bit chunks
    if (r >= 16) x = _mm512_add_ps(x, _mm512_shuffle_f32x4(x, x, 0x4E));   // swap 256-bit halves
    return (v16)x;
#elif defined(FG_V16_AVX2)
    __m256 lo = V16_LO(v), hi = V16_HI(v);
    if (r >= 2) { lo = _mm256_add_ps(lo, _mm256_permute_ps(lo, 0xB1)); hi = _mm256_add_ps(hi, _mm256_permute_ps(hi, 0xB1)); }
    if (r >= 4) { lo = _mm256_add_ps(lo, _mm256_permute_ps(lo, 0x4E)); hi = _mm256_add_ps(hi, _mm256_permute_ps(hi, 0x4E)); }
    if (r >= 8) { lo = _mm256_add_ps(lo, _mm256_permute2f128_ps(lo, lo, 1)); hi = _mm256_add_ps(hi, _mm256_permute2f128_ps(hi, hi, 1)); }
    if (r >= 16) { lo = _mm256_add_ps(lo, hi); hi = lo; }
    return V16_JOIN(lo, hi);
#else
    float t[VW], o[VW];
    for (int i = 0; i < VW; i++) t[i] = v[i];
    for (int i = 0; i < VW; i++) {
        o[i] = 0;
        for (int k = 0; k < r; k++) o[i] += t[i / r * r + k];
    }
    return vload(o);
#endif
}

#if defined(FG_V16_AVX2)
#define LANE_ROWS 4 // AVX2: a v16 is two of the 16 ymm registers, so 4 accumulators (8 ymm)
#else
#define LANE_ROWS 8 // cached rows per register block: 8 accumulators, one broadcast load per FMA
#endif

// Rows b0 .. b0+m-1 (m <= LANE_ROWS) of x against lane vector v of qt: per group of r dims, one
// load of qt and m broadcasts. The tail of n (not a whole group) goes through a zero-padded copy,
// so no row is read past its end. Inlined with m = LANE_ROWS (a constant: the loop unrolls into
// 8 accumulators) for whole blocks, with the remainder's m for the last. Meanwhile, one line of
// `ahead` per group (at most nahead) is fetched into L1; mx (lane vector v) is raised to the scores.
#if defined(FG_V16_AVX2)
// r consecutive floats broadcast across a ymm (r in {1, 2, 4, 8}: one load), or 8 of 16 (r = 16)
static inline __m256 bcast8(const float *p, int r, int half) {
    switch (r) {
    case 1: return _mm256_broadcast_ss(p);
    case 2: return _mm256_castpd_ps(_mm256_broadcast_sd((const double *)p));
    case 4: return _mm256_broadcast_ps((const __m128 *)p);
    case 8: return _mm256_loadu_ps(p);
    default: return _mm256_loadu_ps(p + 8 * half);
    }
}

// The v16 kernel below on ymm halves (a loop-carried v16 stays in memory on AVX2: vec.h): the
// same FMAs in the same order, lane for lane.
static inline __attribute__((always_inline)) void lane_block(float *s, float *mx, int nl, const float *qt, int v,
                                                             const float *x, long ldx, int m, int n, const int r,
                                                             const char *ahead, int nahead) {
    __m256 acc[LANE_ROWS][2];
    for (int u = 0; u < LANE_ROWS; u++) acc[u][0] = acc[u][1] = _mm256_setzero_ps();
    int ng = n / r, d = 0;
    const float *qv = qt + (size_t)v * VW;
    for (int g = 0; g < ng; g++, d += r) {
        if (g < nahead) __builtin_prefetch(ahead + (size_t)g * 64, 0, 3);
        __m256 q0 = _mm256_loadu_ps(qv + (size_t)g * nl), q1 = _mm256_loadu_ps(qv + (size_t)g * nl + 8);
        for (int u = 0; u < m; u++) {
            acc[u][0] = _mm256_fmadd_ps(bcast8(x + u * ldx + d, r, 0), q0, acc[u][0]);
            acc[u][1] = _mm256_fmadd_ps(bcast8(x + u * ldx + d, r, 1), q1, acc[u][1]);
        }
    }
    if (d < n) {
        __m256 q0 = _mm256_loadu_ps(qv + (size_t)ng * nl), q1 = _mm256_loadu_ps(qv + (size_t)ng * nl + 8);
        for (int u = 0; u < m; u++) {
            float t[VW] = {0};
            memcpy(t, x + u * ldx + d, sizeof(float) * (size_t)(n - d));
            acc[u][0] = _mm256_fmadd_ps(bcast8(t, r, 0), q0, acc[u][0]);
            acc[u][1] = _mm256_fmadd_ps(bcast8(t, r, 1), q1, acc[u][1]);
        }
    }
    v16 top = vload(mx + (size_t)v * VW);
    for (int u = 0; u < m; u++) {
        v16 sc = lane_group_sum(V16_JOIN(acc[u][0], acc[u][1]), r);
        vstore(s + (size_t)u * nl + (size_t)v * VW, sc);
        top = vmax(sc, top);
    }
    vstore(mx + (size_t)v * VW, top);
}
#else
static inline __attribute__((always_inline)) void lane_block(float *s, float *mx, int nl, const float *qt, int v,
                                                             const float *x, long ldx, int m, int n, const int r,
                                                             const char *ahead, int nahead) {
    v16 acc[LANE_ROWS];
    for (int u = 0; u < LANE_ROWS; u++) acc[u] = (v16){0};
    int ng = n / r, d = 0;
    const float *qv = qt + (size_t)v * VW;
    for (int g = 0; g < ng; g++, d += r) {
        if (g < nahead) __builtin_prefetch(ahead + (size_t)g * 64, 0, 3);
        v16 q = vload(qv + (size_t)g * nl);
        VREG(q);
        for (int u = 0; u < m; u++) acc[u] = vfma(vbcast_chunk(x + u * ldx + d, r), q, acc[u]);
    }
    if (d < n) {
        v16 q = vload(qv + (size_t)ng * nl);
        for (int u = 0; u < m; u++) {
            float t[VW] = {0};
            memcpy(t, x + u * ldx + d, sizeof(float) * (size_t)(n - d));
            acc[u] = vfma(vbcast_chunk(t, r), q, acc[u]);
        }
    }
    v16 top = vload(mx + (size_t)v * VW);
    for (int u = 0; u < m; u++) {
        v16 sc = lane_group_sum(acc[u], r);
        vstore(s + (size_t)u * nl + (size_t)v * VW, sc);
        top = vmax(sc, top);
    }
    vstore(mx + (size_t)v * VW, top);
}

#endif

// `ahead` is spread over the blocks of the first lane vector (the rows' loop).
static void lane_scores_r(float *s, float *mx, int nl, const float *qt, const float *x, long ldx, int nb, int n,
                          const int r, const char *ahead, int nahead) {
    int nblk = (nb + LANE_ROWS - 1) / LANE_ROWS, per = (nahead + nblk - 1) / nblk;
    for (int v = 0; v < nl / VW; v++) {
        int b0 = 0, k = 0;
#define FETCH_SHARE (v ? 0 : FG_MAX(0, FG_MIN(per, nahead - k * per))) // block k's lines of `ahead`
#define FETCH_AT(na) ((na) ? ahead + (size_t)k * per * 64 : NULL)
        for (; b0 + LANE_ROWS <= nb; b0 += LANE_ROWS, k++) {
            int na = FETCH_SHARE;
            lane_block(s + (size_t)b0 * nl, mx, nl, qt, v, x + (size_t)b0 * ldx, ldx, LANE_ROWS, n, r, FETCH_AT(na), na);
        }
        if (b0 < nb) {
            int na = FETCH_SHARE;
            lane_block(s + (size_t)b0 * nl, mx, nl, qt, v, x + (size_t)b0 * ldx, ldx, nb - b0, n, r, FETCH_AT(na), na);
        }
#undef FETCH_SHARE
#undef FETCH_AT
    }
}

void fg_lane_scores(float *s, float *smax, const float *qt, int H, const float *x, long ldx, int nb, int n,
                    const void *ahead, int ahead_lines) {
    int nl, r;
    fg_lanes(H, &nl, &r);
    for (int l = 0; l < nl; l++) smax[l] = -INFINITY;
    const char *a = ahead;
    if (!a) ahead_lines = 0;
    switch (r) { // one specialised kernel per group size
    case 1: lane_scores_r(s, smax, nl, qt, x, ldx, nb, n, 1, a, ahead_lines); break;
    case 2: lane_scores_r(s, smax, nl, qt, x, ldx, nb, n, 2, a, ahead_lines); break;
    case 4: lane_scores_r(s, smax, nl, qt, x, ldx, nb, n, 4, a, ahead_lines); break;
    case 8: lane_scores_r(s, smax, nl, qt, x, ldx, nb, n, 8, a, ahead_lines); break;
    default: lane_scores_r(s, smax, nl, qt, x, ldx, nb, n, 16, a, ahead_lines); break;
    }
}

// ---- matmul ----------------------------------------------------------------------------------

// out[n, o] = dot(inp[n, :], w[o, :]) for a tile of up to 4 x 4 outputs.
static void dot_tile(float *out, const float *inp, const float *w, const float *bias,
                     int n0, int nn, int o0, int no, int IN, int OUT) {
    if (nn == 4 && no == 4) {
        v16 acc[4][4] = {{{0}}};
        const float *a0 = inp + (size_t)n0 * IN, *b0 = w + (size_t)o0 * IN;
        int i = 0;
        for (; i + VW <= IN; i += VW) {
            v16 a[4], b[4];
            for (int r = 0; r < 4; r++) a[r] = vload(a0 + (size_t)r * IN + i);
            for (int c = 0; c < 4; c++) b[c] = vload(b0 + (size_t)c * IN + i);
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 4; c++) acc[r][c] = vfma(a[r], b[c], acc[r][c]);
        }
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++) {
                float s = vsum(acc[r][c]);
                for (int j = i; j < IN; j++) s += a0[(size_t)r * IN + j] * b0[(size_t)c * IN + j];
                out[(size_t)(n0 + r) * OUT + o0 + c] = s + (bias ? bias[o0 + c] : 0.0f);
            }
        return;
    }
    for (int r = 0; r < nn; r++)
        for (int c = 0; c < no; c++) {
            const float *a = inp + (size_t)(n0 + r) * IN, *b = w + (size_t)(o0 + c) * IN;
            v16 acc = {0};
            int i = 0;
            for (; i + VW <= IN; i += VW) acc = vfma(vload(a + i), vload(b + i), acc);
            float s = vsum(acc);
            for (; i < IN; i++) s += a[i] * b[i];
            out[(size_t)(n0 + r) * OUT + o0 + c] = s + (bias ? bias[o0 + c] : 0.0f);
        }
}

int fg_ops_count_macs = 0;
int64_t fg_ops_macs = 0;

// Products of more than a few rows go to the packed GEMM (gemm.c); a handful of rows (decoding)
// keeps the dot-product tiles above, which read each weight once without packing it.
#define GEMM_MIN_ROWS 8

void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int IN, int OUT) {
    matmul_forward_prec(out, inp, w, bias, N, IN, OUT, FG_F32);
}

void matmul_forward_prec(float *out, const float *inp, const float *w, const float *bias, int N, int IN, int OUT,
                         int prec) {
    if (fg_ops_count_macs) __atomic_fetch_add(&fg_ops_macs, (int64_t)N * IN * OUT, __ATOMIC_RELAXED);
    if (N >= GEMM_MIN_ROWS) {
        fg_gemm(0, 1, N, OUT, IN, inp, IN, w, IN, out, OUT, 0, bias, prec);
        return;
    }
    int nb = (N + 3) / 4, ob = (OUT + 3) / 4;
    long tiles = (long)nb * ob;
#pragma omp parallel for schedule(static) if (tiles * IN > 32768)
    for (long t = 0; t < tiles; t++) {
        int n0 = (int)(t / ob) * 4, o0 = (int)(t % ob) * 4;
        dot_tile(out, inp, w, bias, n0, FG_MIN(4, N - n0), o0, FG_MIN(4, OUT - o0), IN, OUT);
    }
}

void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int N, int IN, int OUT) {
    matmul_backward_prec(dinp, dw, dbias, dout, inp, w, N, IN, OUT, FG_F32);
}

void matmul_backward_prec(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, int N, int IN, int OUT, int prec) {
    if (dinp) fg_gemm(0, 0, N, IN, OUT, dout, OUT, w, IN, dinp, IN, 1, NULL, prec);   // dinp += dout @ w
    if (dw) fg_gemm(1, 0, OUT, IN, N, dout, OUT, inp, IN, dw, IN, 1, NULL, prec);     // dw += dout^T @ inp
    if (dbias)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OUT; o++) dbias[o] += dout[(size_t)n * OUT + o];
}

// ---- rmsnorm ---------------------------------------------------------------------------------

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static) if ((long)N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        for (int i = 0; i < C; i++) y[i] = w[i] * (x[i] * r);
        if (rstd) rstd[n] = r;
    }
}

// y_i = w_i x_i r, r = (mean(x^2)+eps)^-1/2.  dx_j = r (w_j dy_j) - x_j r^3/C sum_i(w_i dy_i x_i).
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static) if ((long)N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float r = rstd[n];
        double dot = 0;
        for (int i = 0; i < C; i++) dot += (double)w[i] * dy[i] * x[i];
        float k = (float)(dot * r * r * r / C);
        if (dinp) {
            float *dx = dinp + (size_t)n * C;
            for (int i = 0; i < C; i++) dx[i] += r * w[i] * dy[i] - k * x[i];
        }
    }
    if (dw) // serial over rows so the sum order (and result) is independent of thread count
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float r = rstd[n];
            for (int i = 0; i < C; i++) dw[i] += dy[i] * x[i] * r;
        }
}

// ---- rope ------------------------------------------------------------------------------------

// Frequencies as in DeepSeek's precompute_freqs_cis: base frequencies theta^(-2i/D); with YaRN,
// dimensions between the correction range blend linearly from interpolated (freq / factor) to
// original frequencies.
static double yarn_corr_dim(double rot, int D, double base, int max_pos) {
    return D * log(max_pos / (rot * 2 * M_PI)) / (2 * log(base));
}

static void rope_fill(rope_table *r, const float *freq) {
    int half = r->D / 2;
    for (int t = 0; t < r->T; t++)
        for (int i = 0; i < half; i++) {
            float a = (float)t * freq[i]; // float product, as the reference's torch.outer
            r->cos[(size_t)t * half + i] = (float)cos((double)a);
            r->sin[(size_t)t * half + i] = (float)sin((double)a);
        }
}

// Sets up r's shape and tables for D (even) x T; returns a (D/2) frequency scratch the caller fills,
// passes to rope_fill and frees, or NULL with an error (r then owns nothing).
static float *rope_alloc(rope_table *r, int D, int T, int interleave) {
    memset(r, 0, sizeof *r);
    if (D <= 0 || D % 2) { fg_set_error("rope dimension must be even and > 0 (got %d)", D); return NULL; }
    int half = D / 2;
    r->D = D; r->T = T; r->interleave = interleave;
    r->cos = malloc(sizeof(float) * (size_t)T * half);
    r->sin = malloc(sizeof(float) * (size_t)T * half);
    float *freq = malloc(sizeof(float) * half);
    if (!r->cos || !r->sin || !freq) { free(freq); rope_table_free(r); fg_set_error("out of memory for rope table"); return NULL; }
    return freq;
}

int rope_table_init(rope_table *r, int D, int T, int interleave, float theta, int yarn, float factor,
                    int orig_max_pos, float beta_fast, float beta_slow) {
    int half = D / 2;
    float *freq = rope_alloc(r, D, T, interleave);
    if (!freq) return -1;
    for (int i = 0; i < half; i++) freq[i] = (float)(1.0 / pow((double)theta, (2.0 * i) / D));
    if (yarn) {
        double lo = floor(yarn_corr_dim(beta_fast, D, theta, orig_max_pos));
        double hi = ceil(yarn_corr_dim(beta_slow, D, theta, orig_max_pos));
        lo = FG_MAX(lo, 0); hi = FG_MIN(hi, D - 1);
        if (lo == hi) hi += 0.001;
        for (int i = 0; i < half; i++) {
            double ramp = (i - lo) / (hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            double smooth = 1 - ramp;
            freq[i] = (float)(freq[i] / factor * (1 - smooth) + freq[i] * smooth);
        }
    }
    rope_fill(r, freq);
    free(freq);
    return 0;
}

int rope_table_init_llama3(rope_table *r, int D, int T, int interleave, float theta, float factor,
                           float low_freq_factor, float high_freq_factor, int orig_max_pos) {
    int half = D / 2;
    float *freq = rope_alloc(r, D, T, interleave);
    if (!freq) return -1;
    double lo_wl = orig_max_pos / (double)low_freq_factor, hi_wl = orig_max_pos / (double)high_freq_factor;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow((double)theta, (2.0 * i) / D), wl = 2 * M_PI / f;
        if (wl > lo_wl) f /= factor;
        else if (wl >= hi_wl) {
            double smooth = (orig_max_pos / wl - low_freq_factor) / (high_freq_factor - low_freq_factor);
            f = (1 - smooth) * f / factor + smooth * f;
        }
        freq[i] = (float)f;
    }
    rope_fill(r, freq);
    free(freq);
    return 0;
}

void rope_table_free(rope_table *r) {
    free(r->cos); free(r->sin);
    r->cos = r->sin = NULL;
}

void rope_apply(float *x, const rope_table *r, int pos, int inverse) {
    int half = r->D / 2;
    const float *c = r->cos + (size_t)pos * half, *s = r->sin + (size_t)pos * half;
    for (int i = 0; i < half; i++) {
        int i0 = r->interleave ? 2 * i : i, i1 = r->interleave ? 2 * i + 1 : i + half;
        float a = x[i0], b = x[i1], sn = inverse ? -s[i] : s[i];
        x[i0] = a * c[i] - b * sn;
        x[i1] = a * sn + b * c[i];
    }
}

// ---- attention -------------------------------------------------------------------------------

// exp on 16 lanes (softmax, SiLU): x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so r is
// exact to ~1e-10), e^r by its degree-7 Taylor polynomial (truncation < 7e-9 relative) evaluated
// as 1 + r + r^2 q(r), 2^n put into the exponent bits. About 1 ulp, as expf: less would show as
// noise in test_gradcheck's finite differences. x is clamped to [-87.3, 88.3]: below,
// 2^-126 instead of smaller values or 0 (nothing a softmax sum or SiLU notices), above, ~2e38
// instead of inf; NaN stays NaN. Branch-free and written with vector extensions, so
// -march=native turns it into AVX-512 (or AVX2 / SSE elsewhere).
typedef int32_t vi16 __attribute__((vector_size(64), aligned(4)));
static inline v16 vselect(vi16 take_b, v16 a, v16 b) { return (v16)(((vi16)a & ~take_b) | ((vi16)b & take_b)); }
static inline v16 vexp(v16 x) {
    const float magic = 12582912.0f; // 1.5 * 2^23: adding it rounds to an integer in the low bits
    x = vselect(x < -87.3f, x, vbcast(-87.3f));
    x = vselect(x > 88.3f, x, vbcast(88.3f));
    v16 t = x * 1.44269504f + magic, n = t - magic;
    v16 r = x - n * 0.693145752f - n * 1.42860677e-6f;
    v16 q = r * (1.0f / 5040) + 1.0f / 720; // e^r = 1 + r + r^2 q(r), 1 + r added last (rounding)
    q = q * r + 1.0f / 120;
    q = q * r + 1.0f / 24;
    q = q * r + 1.0f / 6;
    q = q * r + 0.5f;
    v16 p = (q * (r * r) + r) + 1.0f;
    vi16 e = ((vi16)t - (vi16)vbcast(magic) + 127) << 23;
    return p * (v16)e;
}

float fg_softmax_scaled(float *p, int n, float scale) {
    float mx = fg_scale_max(p, n, scale, -INFINITY), sum = fg_exp_sum(p, n, mx);
    fg_vscale(p, n, 1.0f / sum);
    return mx + logf(sum);
}

float fg_scale_max(float *p, int n, float scale, float m) {
    int n16 = n & ~(VW - 1);
    v16 vm = vbcast(m);
    for (int u = 0; u < n16; u += VW) {
        v16 x = vload(p + u) * scale;
        vstore(p + u, x);
        vm = vselect(x > vm, vm, x);
    }
    for (int i = 0; i < VW; i++) m = vm[i] > m ? vm[i] : m;
    for (int u = n16; u < n; u++) { p[u] *= scale; m = p[u] > m ? p[u] : m; }
    return m;
}

float fg_exp_sum(float *p, int n, float m) {
    int n16 = n & ~(VW - 1), tail = n - n16;
    vacc vs = vacc_zero();
    for (int u = 0; u < n16; u += VW) {
        v16 e = vexp(vload(p + u) - m);
        vstore(p + u, e);
        vs = vacc_add(vs, e);
    }
    float sum = vsum(vacc_get(vs));
    if (tail) {
        float t[VW];
        for (int i = 0; i < VW; i++) t[i] = i < tail ? p[n16 + i] : m;
        v16 e = vexp(vload(t) - m);
        for (int i = 0; i < tail; i++) { p[n16 + i] = e[i]; sum += e[i]; }
    }
    return sum;
}

void fg_lane_softmax(float *s, int nl, int nb, float scale, const float *smax, float *m, float *l, float *rescale) {
    for (int v = 0; v < nl; v += VW) {
        v16 m0 = vload(m + v), mx = m0;
        vacc sum = vacc_zero();
        if (smax) { // the block's largest raw scores: scaled (scale > 0), they are the largest scaled ones
            mx = vmax(vload(smax + v) * scale, mx);
        } else {
            for (int u = 0; u < nb; u++) mx = vmax(vload(s + (size_t)u * nl + v) * scale, mx);
        }
        v16 r = vexp(m0 - mx); // m0 = -inf (nothing yet): clamped, a tiny factor on zero sums
        for (int u = 0; u < nb; u++) {
            v16 x = vload(s + (size_t)u * nl + v) * scale;
            v16 e = vexp(x - mx);
            vstore(s + (size_t)u * nl + v, e);
            sum = vacc_add(sum, e);
        }
        vstore(l + v, vload(l + v) * r + vacc_get(sum));
        vstore(m + v, mx);
        vstore(rescale + v, r);
    }
}

// p[u] = exp(scale * p[u] - lse) for u < n: a softmax row rebuilt from its scores and the
// log-sum-exp the forward kept (the same exp; p sums to 1 up to rounding).
static void softmax_from_lse(float *p, int n, float scale, float lse) {
    int n16 = n & ~(VW - 1);
    for (int u = 0; u < n16; u += VW) vstore(p + u, vexp(vload(p + u) * scale - lse));
    if (n16 < n) {
        float t[VW] = {0};
        memcpy(t, p + n16, sizeof(float) * (n - n16));
        v16 e = vexp(vload(t) * scale - lse);
        memcpy(p + n16, &e, sizeof(float) * (n - n16));
    }
}

void attention_row(float *o, float *p, const float *q, const float *k, int sk, const float *v, int sv,
                   int n, int Dk, int Dv, float scale) {
    for (int u = 0; u < n; u++) p[u] = fg_vdot(q, k + (size_t)u * sk, Dk);
    fg_softmax_scaled(p, n, scale);
    for (int i = 0; i < Dv; i++) o[i] = 0;
    for (int u = 0; u < n; u++) fg_vaxpy(o, p[u], v + (size_t)u * sv, Dv);
}

// Training attention runs blocked on the packed GEMM, flash-style: per (b, h) and block of ATT_QB
// query rows [t0, t1), S = Q K[0, t1)^T into a per-thread block, a causal softmax row by row
// (keeping each row's log-sum-exp), then O = P V[0, t1). Only the causal blocks are computed (plus
// the triangle inside each diagonal block, masked to 0), and no (T, T) matrix is kept: the
// backward rebuilds each block of P from Q, K and the log-sum-exps (one more Q K^T product), so
// activation memory grows with T, not T^2.
#define ATT_QB 64

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       int B, int T, int H, int Hkv, int Dk, int Dv, int sq, int sk, int sv, float scale) {
    int g = H / Hkv;
    // q.k over the causal window, then p @ v: T(T+1)/2 pairs per (b, h).
    if (fg_ops_count_macs)
        __atomic_fetch_add(&fg_ops_macs, (int64_t)B * H * T * (T + 1) / 2 * (Dk + Dv), __ATOMIC_RELAXED);
#pragma omp parallel
    {
        float *P = malloc(sizeof(float) * (size_t)ATT_QB * T);
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                int kh = h / g;
                const float *kb = k + (size_t)b * T * sk + (size_t)kh * Dk, *vb = v + (size_t)b * T * sv + (size_t)kh * Dv;
                float *L = lse + ((size_t)b * H + h) * T;
                for (int t0 = 0; t0 < T && P; t0 += ATT_QB) {
                    int t1 = FG_MIN(T, t0 + ATT_QB), nq = t1 - t0;
                    fg_gemm(0, 1, nq, t1, Dk, q + ((size_t)b * T + t0) * sq + (size_t)h * Dk, sq, kb, sk, P, t1, 0, NULL,
                            FG_F32);
                    for (int t = t0; t < t1; t++) {
                        float *p = P + (size_t)(t - t0) * t1;
                        L[t] = fg_softmax_scaled(p, t + 1, scale);
                        for (int u = t + 1; u < t1; u++) p[u] = 0;
                    }
                    fg_gemm(0, 0, nq, Dv, t1, P, t1, vb, sv, out + (((size_t)b * T + t0) * H + h) * Dv, (long)H * Dv, 0,
                            NULL, FG_F32);
                }
            }
        if (!P) abort(); // a few hundred KB per thread: nothing sane to do without them
        free(P);
    }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *lse,
                        int B, int T, int H, int Hkv, int Dk, int Dv, int sq, int sk, int sv, float scale) {
    int g = H / Hkv;
    // Parallel over (b, kv head): every write to dk/dv of that kv head stays in one thread.
    // Per query block: P rebuilt (S = Q K^T, exp(scale S - lse)), dP = dO V^T, dV += P^T dO,
    // dS = P (dP - rowsum(P dP)) scale, dQ += dS K, dK += dS^T Q.
#pragma omp parallel
    {
        float *P = malloc(sizeof(float) * (size_t)ATT_QB * T), *dS = malloc(sizeof(float) * (size_t)ATT_QB * T);
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int kh = 0; kh < Hkv; kh++) {
                size_t ko = (size_t)b * T * sk + (size_t)kh * Dk, vo = (size_t)b * T * sv + (size_t)kh * Dv;
                for (int h = kh * g; h < (kh + 1) * g && P && dS; h++) {
                    const float *L = lse + ((size_t)b * H + h) * T;
                    for (int t0 = 0; t0 < T; t0 += ATT_QB) {
                        int t1 = FG_MIN(T, t0 + ATT_QB), nq = t1 - t0;
                        const float *dO = dout + (((size_t)b * T + t0) * H + h) * Dv;
                        size_t qo = ((size_t)b * T + t0) * sq + (size_t)h * Dk;
                        long ldo = (long)H * Dv;
                        fg_gemm(0, 1, nq, t1, Dk, q + qo, sq, k + ko, sk, P, t1, 0, NULL, FG_F32);
                        for (int i = 0; i < nq; i++) {
                            float *p = P + (size_t)i * t1;
                            int n = t0 + i + 1;
                            softmax_from_lse(p, n, scale, L[t0 + i]);
                            for (int u = n; u < t1; u++) p[u] = 0;
                        }
                        fg_gemm(0, 1, nq, t1, Dv, dO, ldo, v + vo, sv, dS, t1, 0, NULL, FG_F32);
                        fg_gemm(1, 0, t1, Dv, nq, P, t1, dO, ldo, dv + vo, sv, 1, NULL, FG_F32);
                        for (int i = 0; i < nq; i++) {
                            const float *p = P + (size_t)i * t1;
                            float *d = dS + (size_t)i * t1, sum = 0;
                            int n = t0 + i + 1;
                            for (int u = 0; u < n; u++) sum += p[u] * d[u];
                            for (int u = 0; u < n; u++) d[u] = p[u] * (d[u] - sum) * scale;
                            for (int u = n; u < t1; u++) d[u] = 0;
                        }
                        fg_gemm(0, 0, nq, Dk, t1, dS, t1, k + ko, sk, dq + qo, sq, 1, NULL, FG_F32);
                        fg_gemm(1, 0, t1, Dk, nq, dS, t1, q + qo, sq, dk + ko, sk, 1, NULL, FG_F32);
                    }
                }
            }
        if (!P || !dS) abort(); // as in the forward
        free(P);
        free(dS);
    }
}

// ---- swiglu ----------------------------------------------------------------------------------

// SiLU(a) = a / (1 + e^-a) with the vector exp, 16 at a time (the tail padded with zeros).
void swiglu_forward(float *out, const float *h1, const float *h3, int N, int F) {
    size_t n = (size_t)N * F, nv = (n + VW - 1) / VW;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < nv; b++) {
        size_t i = b * VW;
        if (i + VW <= n) {
            v16 a = vload(h1 + i);
            vstore(out + i, a / (1.0f + vexp(-a)) * vload(h3 + i));
            continue;
        }
        float a[VW] = {0}, g[VW] = {0};
        memcpy(a, h1 + i, sizeof(float) * (n - i));
        memcpy(g, h3 + i, sizeof(float) * (n - i));
        v16 r = vload(a) / (1.0f + vexp(-vload(a))) * vload(g);
        memcpy(out + i, &r, sizeof(float) * (n - i));
    }
}

void swiglu_backward(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, int N, int F) {
    size_t n = (size_t)N * F;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < (n + VW - 1) / VW; b++) {
        size_t i = b * VW, m = n - i < VW ? n - i : VW;
        float av[VW] = {0}, sv[VW];
        memcpy(av, h1 + i, sizeof(float) * m);
        v16 sg = 1.0f / (1.0f + vexp(-vload(av)));
        vstore(sv, sg);
        for (size_t j = 0; j < m; j++) {
            float a = av[j], g = sv[j], silu = a * g;
            dh3[i + j] += dout[i + j] * silu;
            dh1[i + j] += dout[i + j] * h3[i + j] * g * (1.0f + a * (1.0f - g));
        }
    }
}

// ---- cross-entropy ---------------------------------------------------------------------------

double crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int N, int V, int *count) {
    double total = 0;
    int cnt = 0;
#pragma omp parallel for schedule(static) reduction(+ : total, cnt)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V;
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        double sum = 0;
        for (int i = 0; i < V; i++) sum += exp((double)x[i] - mx);
        int tg = targets ? targets[n] : -1;
        if (tg >= 0) { total += log(sum) - ((double)x[tg] - mx); cnt++; }
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < V; i++) p[i] = expf(x[i] - mx) * inv;
    }
    if (count) *count = cnt;
    return cnt ? total / cnt : 0.0;
}

void crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N, int V, float scale) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *d = dlogits + (size_t)n * V;
        const float *p = probs + (size_t)n * V;
        int tg = targets[n];
        if (tg < 0) { memset(d, 0, sizeof(float) * V); continue; }
        for (int i = 0; i < V; i++) d[i] = scale * p[i];
        d[tg] -= scale;
    }
}
