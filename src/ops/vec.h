// vec.h: the portable 16-float vector of the plain kernels (GCC/Clang vector extensions: lowered
// to AVX-512, AVX2 or SSE as the target allows).
//
// Loads and stores dereference a may_alias, 4-byte-aligned vector type rather than memcpy into a
// v16: with -march=native on CPUs whose tuning prefers 256-bit vectors (gcc 12 calls this EPYC
// "rocketlake"), a 64-byte memcpy is lowered to two ymm stores into a stack slot and one zmm load
// back, a store-forwarding stall on every load. That made fg_vdot about 10x slower than the loop.
#ifndef FG_OPS_VEC_H
#define FG_OPS_VEC_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
// Lane sums as trees, for kernels of any x86 width (the runtime-dispatched ones included: hsum8
// needs only AVX, so it inlines into any AVX2 / AVX-512 target). hsum4: (l0 + l2) + (l1 + l3).
static inline float hsum4(__m128 q) {
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
}
__attribute__((target("avx"))) static inline float hsum8(__m256 h) {
    return hsum4(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
#endif

typedef float v16 __attribute__((vector_size(64), aligned(4)));
// AVX2 (no AVX-512): a v16 lives in two ymm registers; its halves, for the operations the vector
// extensions do not fuse (FMA) or lower well (broadcast, max). __builtin_shufflevector keeps
// them in registers (a union or memcpy would go through the stack).
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#define FG_V16_AVX2 1
typedef float v8f __attribute__((vector_size(32)));
#define V16_LO(v) ((__m256)__builtin_shufflevector((v), (v), 0, 1, 2, 3, 4, 5, 6, 7))
#define V16_HI(v) ((__m256)__builtin_shufflevector((v), (v), 8, 9, 10, 11, 12, 13, 14, 15))
#define V16_JOIN(lo, hi) ((v16)__builtin_shufflevector((v8f)(lo), (v8f)(hi), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#endif
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
#define VW 16

#if defined(FG_V16_AVX2)
// Two ymm loads / stores: gcc 12 lowers the 64-byte may_alias access on AVX2 into one ymm load and
// 8 scalar inserts for the other half, and keeps accumulators in memory around it.
static inline v16 vload(const float *p) { return V16_JOIN(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)); }
static inline void vstore(float *p, v16 v) { _mm256_storeu_ps(p, V16_LO(v)); _mm256_storeu_ps(p + 8, V16_HI(v)); }
#else
static inline v16 vload(const float *p) { return *(const v16u *)p; }
static inline void vstore(float *p, v16 v) { *(v16u *)p = v; }
#endif
// x in every lane: a broadcast (straight from memory when x is loaded), not `(v16){0} + x`,
// which GCC lowers to a scalar add and a register broadcast, a shuffle competing with the FMAs.
static inline v16 vbcast(float x) {
#if defined(__AVX512F__)
    return (v16)_mm512_set1_ps(x);
#elif defined(FG_V16_AVX2)
    __m256 h = _mm256_set1_ps(x);
    return V16_JOIN(h, h);
#else
    return (v16){0} + x;
#endif
}
// acc + a * b as one fused multiply-add: -std=c11 turns off contraction (-ffp-contract=off), so
// `acc += a * b` on vectors is a multiply and an add, half the FMA units' rate.
static inline v16 vfma(v16 a, v16 b, v16 acc) {
#if defined(__AVX512F__)
    return (v16)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
#elif defined(FG_V16_AVX2)
    return V16_JOIN(_mm256_fmadd_ps(V16_LO(a), V16_LO(b), V16_LO(acc)), _mm256_fmadd_ps(V16_HI(a), V16_HI(b), V16_HI(acc)));
#else
    return acc + a * b;
#endif
}
// A running sum of v16s across a loop: on AVX2 two ymm values (a loop-carried v16 would stay in
// memory there, with scalar inserts: see vload), elsewhere the v16 itself. Same adds, same order.
#if defined(FG_V16_AVX2)
typedef struct { __m256 lo, hi; } vacc;
static inline vacc vacc_zero(void) { return (vacc){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
static inline vacc vacc_add(vacc a, v16 x) { return (vacc){_mm256_add_ps(a.lo, V16_LO(x)), _mm256_add_ps(a.hi, V16_HI(x))}; }
static inline v16 vacc_get(vacc a) { return V16_JOIN(a.lo, a.hi); }
#else
typedef v16 vacc;
static inline vacc vacc_zero(void) { return (v16){0}; }
static inline vacc vacc_add(vacc a, v16 x) { return a + x; }
static inline v16 vacc_get(vacc a) { return a; }
#endif

// Lane-wise max; where either is NaN, b (maxps's rule): vmax(x, m) keeps m when x is NaN.
static inline v16 vmax(v16 a, v16 b) {
#if defined(__AVX512F__)
    return (v16)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(FG_V16_AVX2)
    return V16_JOIN(_mm256_max_ps(V16_LO(a), V16_LO(b)), _mm256_max_ps(V16_HI(a), V16_HI(b)));
#else
    v16 r;
    for (int i = 0; i < VW; i++) r[i] = a[i] > b[i] ? a[i] : b[i];
    return r;
#endif
}
// Keeps v in a register. Where several FMAs read one loaded vector, GCC folds the load into each
// FMA as a memory operand; on Zen 4 a 512-bit load per FMA halves the FMA rate (measured: the 4 x
// 4 dot block ran at 34% of the core's peak with the folded loads, the 4 x 64 axpy block at 52%;
// at 99% once the loaded vectors stay in registers).
#if defined(__x86_64__) && defined(__AVX512F__)
#define VREG(v) __asm__("" : "+v"(v))
#else
#define VREG(v) ((void)0)
#endif

// r consecutive floats p[0..r) repeated across the 16 lanes (lane l = p[l % r]), r in {1, 2, 4,
// 8, 16}: one broadcast load. r is a constant where it is called (the kernels are specialised).
static inline v16 vbcast_chunk(const float *p, int r) {
#if defined(__AVX512F__)
    switch (r) {
    case 1: return (v16)_mm512_set1_ps(*p);
    case 2: { double d; __builtin_memcpy(&d, p, 8); return (v16)_mm512_castpd_ps(_mm512_set1_pd(d)); }
    case 4: return (v16)_mm512_broadcast_f32x4(_mm_loadu_ps(p));
    case 8: return (v16)_mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd((const double *)p)));
    default: return vload(p);
    }
#else // (AVX2's lane kernel broadcasts into ymm halves itself: bcast8 in ops.c)
    v16 v;
    for (int i = 0; i < VW; i++) v[i] = p[i % r];
    return v;
#endif
}

// The sum of the lanes as a tree (log depth): the plain loop is 16 dependent adds, which cost more
// than the 8 products of a 128-long dot product before them.
static inline float vsum(v16 v) {
#if defined(__AVX512F__)
    return _mm512_reduce_add_ps((__m512)v);
#elif defined(FG_V16_AVX2)
    return hsum8(_mm256_add_ps(V16_LO(v), V16_HI(v)));
#else
    float s[VW];
    for (int i = 0; i < VW; i++) s[i] = v[i];
    for (int w = VW / 2; w > 0; w /= 2)
        for (int i = 0; i < w; i++) s[i] += s[i + w];
    return s[0];
#endif
}

#endif
