// kquant.c: decode products of quantised weight rows with 8-bit activations (quant.h, "int8
// products"), the way llama.cpp's CPU backend multiplies Q8_0 and K-quant rows: the vector x is
// quantised once per product to int8 (one float scale per block of the weight type's scale
// granularity), and each row's dot product is summed in integers per block, then scaled.
//
// Activation layout (fg_xq): q[IN] int8 values, d[] one float scale per activation block (32
// values for Q8_0, 256 for the K types), s32[IN/32] the sums of each 32 values (natural order),
// s4[IN/4] the sums of each 4 values as the kernels read them (Q6_K's -32 offset, per lane).
// For Q4_K / Q5_K, q is permuted within each 128 values to [0..31, 64..95, 32..63, 96..127]: a
// 64-byte load of the packed nibbles holds, low nibbles, the values 0..31 and 64..95 of its 128,
// and high nibbles the values 32..63 and 96..127, so the permuted x lines up with both halves
// without shuffling the weights. Q6_K and Q8_0 keep natural order.
//
// Three implementations of every kernel: the portable one (plain C over the same integers: the
// reference), an AVX-512 VNNI one (vpdpbusd: unsigned weights x signed activations, 64 products
// per instruction) and an AVX2 one (vpmaddubsw + vpmaddwd), picked at run time. Integer sums are
// exact in all three, so they differ only in the order of the final float sums.
#include "ops/quant.h"
#include "ops/vec.h"

#include <math.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KQ_X86 1
#include <immintrin.h>
#endif

int fg_xq_fast = 1;

// ---- activations ------------------------------------------------------------------------------

#define ALIGN64(n) (((size_t)(n) + 63) & ~(size_t)63)

int fg_xq_block(int type) {
    return type == FG_Q8_0 ? 32 : (type == FG_Q4_K || type == FG_Q5_K || type == FG_Q6_K) ? 256 : 0;
}

size_t fg_xq_bytes(int type, int IN) {
    int ab = fg_xq_block(type);
    if (!ab || IN % ab) return 0;
    // q, s4 (int16), s32 (int16), d (float), each part 64-byte aligned
    return ALIGN64((size_t)IN) + ALIGN64((size_t)IN / 4 * 2) + ALIGN64((size_t)IN / 32 * 2) +
           ALIGN64((size_t)IN / ab * 4);
}

void fg_xq_view(fg_xq *v, void *buf, int type, int IN) {
    int ab = fg_xq_block(type);
    uint8_t *p = buf;
    v->type = type;
    v->IN = IN;
    v->q = (int8_t *)p;
    p += ALIGN64((size_t)IN);
    v->s4 = (int16_t *)p;
    p += ALIGN64((size_t)IN / 4 * 2);
    v->s32 = (int16_t *)p;
    p += ALIGN64((size_t)IN / 32 * 2);
    v->d = (float *)p;
    (void)ab;
}

// Position in q of natural value v (the permutation described at the top).
static inline int xq_pos(int type, int v) {
    if (type != FG_Q4_K && type != FG_Q5_K) return v;
    static const int at[4] = {0, 64, 32, 96}; // sub-block k of a 128 goes to at[k]
    return (v & ~127) + at[(v >> 5) & 3] + (v & 31);
}

static void xq_quantize_ref(fg_xq *v, const float *x) {
    int IN = v->IN, ab = fg_xq_block(v->type);
    for (int b = 0; b < IN / ab; b++) {
        const float *xb = x + (size_t)b * ab;
        float amax = 0;
        for (int i = 0; i < ab; i++) amax = fmaxf(amax, fabsf(xb[i]));
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0;
        v->d[b] = d;
        for (int i = 0; i < ab; i++) {
            int q = (int)lrintf(xb[i] * id);
            v->q[xq_pos(v->type, b * ab + i)] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
    }
    for (int g = 0; g < IN / 32; g++) {
        int s = 0;
        for (int i = 0; i < 32; i++) s += v->q[xq_pos(v->type, 32 * g + i)];
        v->s32[g] = (int16_t)s;
    }
    for (int g = 0; g < IN / 4; g++) v->s4[g] = (int16_t)(v->q[4 * g] + v->q[4 * g + 1] + v->q[4 * g + 2] + v->q[4 * g + 3]);
}

#ifdef KQ_X86
#define KQ_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))
static int have_vnni(void);

// As xq_quantize_ref, 32 values at a time (the same values: vcvtps2dq rounds to nearest even as
// lrintf does in the default rounding mode, and |x / d| <= 127 needs no clamp beyond saturation).
KQ_TARGET static void xq_quantize_avx512(fg_xq *v, const float *x) {
    int IN = v->IN, ab = fg_xq_block(v->type);
    const __m256i ones = _mm256_set1_epi8(1);
    for (int b = 0; b < IN / ab; b++) {
        const float *xb = x + (size_t)b * ab;
        __m512 mx = _mm512_setzero_ps();
        for (int i = 0; i < ab; i += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(xb + i)));
        float amax = _mm512_reduce_max_ps(mx), d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0;
        v->d[b] = d;
        __m512 vid = _mm512_set1_ps(id);
        for (int c = 0; c < ab; c += 32) {
            int at = xq_pos(v->type, b * ab + c); // a chunk of 32 stays together
            __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + c), vid));
            __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + c + 16), vid));
            __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_cvtsepi32_epi8(i0)), _mm512_cvtsepi32_epi8(i1), 1);
            _mm256_storeu_si256((__m256i *)(v->q + at), q);
            v->s32[(b * ab + c) / 32] = (int16_t)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
            _mm_storeu_si128((__m128i *)(v->s4 + at / 4), _mm256_cvtepi32_epi16(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q)));
        }
    }
}
#endif

void fg_xq_quantize(fg_xq *v, const float *x) {
#ifdef KQ_X86
    if (fg_xq_fast == 1 && have_vnni()) { xq_quantize_avx512(v, x); return; }
#endif
    xq_quantize_ref(v, x);
}

// ---- the portable kernels (the reference) -------------------------------------------------------
// Not vectorised by GCC: gcc 12 at -O2/-O3 with -march=native turns an int8 x int8 sum
// (q8_block_dot) into vpdpbusd, which reads one operand as unsigned (wrong sums for negative weights;
// measured: -1228.3 for a dot of 307). The reference must be plain integer arithmetic.
#if defined(__GNUC__) && !defined(__clang__)
#define KQ_REF __attribute__((optimize("no-tree-vectorize")))
#else
#define KQ_REF
#endif

static inline float half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return fg_fp16_to_f32(h);
}

// The integer dot of one Q8_0 block's 32 values with 32 of x.
KQ_REF static int q8_block_dot(const uint8_t *qs, const int8_t *xq) {
    int is = 0;
    for (int i = 0; i < 32; i++) is += (int8_t)qs[i] * xq[i];
    return is;
}

static float dot_q8_0_ref(const uint8_t *row, const fg_xq *x) {
    float s = 0;
    for (int b = 0; b < x->IN / 32; b++) s += half(row + (size_t)b * 34) * x->d[b] * (float)q8_block_dot(row + (size_t)b * 34 + 2, x->q + 32 * b);
    return s;
}

// Q4_K (hbit 0) and Q5_K (hbit 1): y = d * sc_j * q - dmin * m_j per sub-block j of 32.
KQ_REF static float dot_q45_k_ref(const uint8_t *row, const fg_xq *x, int five) {
    int bb = five ? 176 : 144;
    float s = 0;
    for (int b = 0; b < x->IN / 256; b++) {
        const uint8_t *blk = row + (size_t)b * bb, *sc = blk + 4, *qh = blk + 16, *qs = blk + (five ? 48 : 16);
        int isum = 0, msum = 0;
        uint8_t sm[16];
        fg_k_unpack_scales(sc, sm);
        for (int j = 0; j < 8; j++) {
            int scj = sm[j], mj = sm[8 + j], dj = 0;
            for (int l = 0; l < 32; l++) {
                int c = j >> 1, q = (j & 1) ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
                if (five) q |= ((qh[l] >> j) & 1) << 4;
                dj += q * x->q[xq_pos(x->type, 256 * b + 32 * j + l)];
            }
            isum += scj * dj;
            msum += mj * x->s32[8 * b + j];
        }
        s += x->d[b] * (half(blk) * (float)isum - half(blk + 2) * (float)msum);
    }
    return s;
}

// Q6_K: y = d * sc_i * (q - 32) per 16 values i, q 6 bits from ql (low 4) and qh (high 2).
KQ_REF static float dot_q6_k_ref(const uint8_t *row, const fg_xq *x) {
    float s = 0;
    for (int b = 0; b < x->IN / 256; b++) {
        const uint8_t *blk = row + (size_t)b * 210, *ql = blk, *qh = blk + 128;
        const int8_t *sc = (const int8_t *)(blk + 192);
        int isum = 0;
        for (int i = 0; i < 16; i++) {
            int di = 0;
            for (int l = 0; l < 16; l++) {
                int v = 16 * i + l, h = v >> 7, r = v & 127, k = r >> 5, t = r & 31; // quarter k of half h
                int lo = ql[64 * h + (k & 1) * 32 + t], q = (k < 2 ? lo & 15 : lo >> 4) | ((qh[32 * h + t] >> (2 * k)) & 3) << 4;
                di += (q - 32) * x->q[256 * b + v];
            }
            isum += sc[i] * di;
        }
        s += x->d[b] * half(blk + 208) * (float)isum;
    }
    return s;
}

static float dot_ref(const uint8_t *row, const fg_xq *x) {
    switch (x->type) {
    case FG_Q8_0: return dot_q8_0_ref(row, x);
    case FG_Q4_K: return dot_q45_k_ref(row, x, 0);
    case FG_Q5_K: return dot_q45_k_ref(row, x, 1);
    default: return dot_q6_k_ref(row, x);
    }
}

// ---- AVX-512 VNNI ----------------------------------------------------------------------------
#ifdef KQ_X86
KQ_TARGET static inline float half_hw(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// Two Q8_0 blocks per step: |w| (unsigned) times x with w's sign (vpdpbusd takes one unsigned
// operand; |w| <= 127 and x in [-127, 127], so nothing overflows), lanes 0-7 block b, 8-15 b + 1.
KQ_TARGET static float dot_q8_0_vnni(const uint8_t *row, const fg_xq *x) {
    int nb = x->IN / 32, b = 0;
    __m512 acc = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *b0 = row + (size_t)b * 34, *b1 = b0 + 34;
        __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),
                                       _mm256_loadu_si256((const __m256i *)(b1 + 2)), 1);
        __m512i xv = _mm512_loadu_si512((const void *)(x->q + 32 * b));
        __mmask64 neg = _mm512_movepi8_mask(w);
        __m512i p = _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(w), _mm512_mask_sub_epi8(xv, neg, zero, xv));
        __m512 sc = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(half_hw(b0) * x->d[b]), _mm512_set1_ps(half_hw(b1) * x->d[b + 1]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
    }
    float s = _mm512_reduce_add_ps(acc);
    for (; b < nb; b++) s += half_hw(row + (size_t)b * 34) * x->d[b] * (float)q8_block_dot(row + (size_t)b * 34 + 2, x->q + 32 * b);
    return s;
}

// 16-bit shift counts: lo in the low 256 bits, hi in the high.
KQ_TARGET static inline __m512i cnt16(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)lo)), _mm256_set1_epi16((short)hi), 1);
}

// Q4_K / Q5_K: per 128 values one 64-byte load of nibbles; low nibbles hold sub-blocks (0, 2) of
// the 128, high nibbles (1, 3), matching the permuted x; scales broadcast to their 8 lanes each.
KQ_TARGET static float dot_q45_k_vnni(const uint8_t *row, const fg_xq *x, int five) {
    int bb = five ? 176 : 144;
    const __m512i m4 = _mm512_set1_epi8(15), one = _mm512_set1_epi16(0x0101);
    // lanes 0-7 take scale a, 8-15 scale b: (0,2), (1,3), (4,6), (5,7)
    const __m512i i02 = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i i13 = _mm512_add_epi32(i02, _mm512_set1_epi32(1)), i46 = _mm512_add_epi32(i02, _mm512_set1_epi32(4)),
                  i57 = _mm512_add_epi32(i02, _mm512_set1_epi32(5));
    // Q5_K's fifth bits: chunk c of 64 values takes bit 2c (low nibbles) and 2c + 1 (high) of qh[l];
    // the 16-bit shifts per 256-bit half give, in each byte, bit (2c) at bit 0
    __m512 acc = _mm512_setzero_ps();
    __m128 mins = _mm_setzero_ps();
    for (int b = 0; b < x->IN / 256; b++) {
        const uint8_t *blk = row + (size_t)b * bb, *qs = blk + (five ? 48 : 16);
        uint8_t sm[16];
        fg_k_unpack_scales(blk + 4, sm);
        __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)sm)); // lanes 0-7 scales
        __m128i mv = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(sm + 8))),
                                    _mm_loadu_si128((const __m128i *)(x->s32 + 8 * b)));
        __m512i qh = five ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 16))) : _mm512_setzero_si512();
        __m512i isum = _mm512_setzero_si512();
        for (int p = 0; p < 2; p++) {
            __m512i q = _mm512_loadu_si512((const void *)(qs + 64 * p));
            __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            if (five) {
                lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, cnt16(4 * p, 4 * p + 2)), one), 4));
                hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, cnt16(4 * p + 1, 4 * p + 3)), one), 4));
            }
            const int8_t *xq = x->q + 256 * b + 128 * p;
            __m512i dlo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512((const void *)xq));
            __m512i dhi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, _mm512_loadu_si512((const void *)(xq + 64)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dlo, _mm512_permutexvar_epi32(p ? i46 : i02, sc)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dhi, _mm512_permutexvar_epi32(p ? i57 : i13, sc)));
        }
        float dx = x->d[b];
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(half_hw(blk) * dx), acc);
        mins = _mm_fmadd_ps(_mm_cvtepi32_ps(mv), _mm_set1_ps(half_hw(blk + 2) * dx), mins);
    }
    return _mm512_reduce_add_ps(acc) - hsum4(mins);
}

// Q6_K: per 128 values one 64-byte load of ql and 32 bytes of qh give the 6-bit values in natural
// order (low nibbles 0..63, high nibbles 64..127 with qh's bit pairs 0-1 / 2-3 and 4-5 / 6-7);
// unsigned q times x, less 32 times x's 4-value sums, times the scale of each 16 values (4 lanes).
KQ_TARGET static float dot_q6_k_vnni(const uint8_t *row, const fg_xq *x) {
    const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3);
    const __m512i sh_a = cnt16(0, 2), sh_b = cnt16(4, 6);
    const __m512i quarter = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < x->IN / 256; b++) {
        const uint8_t *blk = row + (size_t)b * 210;
        __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 192)));
        __m512i isum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512((const void *)(blk + 64 * h));
            __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h)));
            __m512i v0 = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                         _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh_a), m3), 4));
            __m512i v1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                         _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh_b), m3), 4));
            const int8_t *xq = x->q + 256 * b + 128 * h;
            const int16_t *s4 = x->s4 + 64 * b + 32 * h;
            __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v0, _mm512_loadu_si512((const void *)xq));
            __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v1, _mm512_loadu_si512((const void *)(xq + 64)));
            d0 = _mm512_sub_epi32(d0, _mm512_slli_epi32(_mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)s4)), 5));
            d1 = _mm512_sub_epi32(d1, _mm512_slli_epi32(_mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(s4 + 16))), 5));
            __m512i i0 = _mm512_add_epi32(quarter, _mm512_set1_epi32(8 * h)), i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(4));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(d0, _mm512_permutexvar_epi32(i0, sc)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(d1, _mm512_permutexvar_epi32(i1, sc)));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(half_hw(blk + 208) * x->d[b]), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

static int have_vnni(void) { // (declared above)
    static int v = -1;
    if (v < 0) v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"); // F16C: every AVX-512 CPU has it (clang 14 cannot ask)
    return v;
}
#endif

// ---- AVX2 (no AVX-512: Zen 1-3, Intel since Haswell) -----------------------------------------
// vpmaddubsw (unsigned x signed bytes, adjacent pairs summed to int16) in place of vpdpbusd, and
// vpmaddwd with the scales (or ones) to int32, llama.cpp's AVX2 scheme. No int16 sum saturates:
// a pair is at most 2 * 128 * 127 = 32512 (Q8_0's |w|), 2 * 15 * 127 (Q4_K), 2 * 31 * 127 (Q5_K)
// or 2 * 32 * 127 (Q6_K's q - 32).
#ifdef KQ_X86
#define KQ2_TARGET __attribute__((target("avx2,fma,f16c")))

KQ2_TARGET static inline float half_f16c(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// One Q8_0 block per step: |w| times x with w's sign moved onto it.
KQ2_TARGET static float dot_q8_0_avx2(const uint8_t *row, const fg_xq *x) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < x->IN / 32; b++) {
        const uint8_t *blk = row + (size_t)b * 34;
        __m256i w = _mm256_loadu_si256((const __m256i *)(blk + 2)), xv = _mm256_loadu_si256((const __m256i *)(x->q + 32 * b));
        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w)), ones);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(half_f16c(blk) * x->d[b]), acc);
    }
    return hsum8(acc);
}

// Q4_K / Q5_K: per 128 values two 32-byte loads of nibbles; in the load at byte 32h of the 128's
// 64, low nibbles are sub-block 2h of the 128 (x at 32h, permuted), high nibbles 2h + 1 (x at 64 + 32h).
KQ2_TARGET static float dot_q45_k_avx2(const uint8_t *row, const fg_xq *x, int five) {
    int bb = five ? 176 : 144;
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    __m128 mins = _mm_setzero_ps();
    for (int b = 0; b < x->IN / 256; b++) {
        const uint8_t *blk = row + (size_t)b * bb, *qs = blk + (five ? 48 : 16);
        uint8_t sm[16];
        fg_k_unpack_scales(blk + 4, sm);
        __m128i mv = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(sm + 8))),
                                    _mm_loadu_si128((const __m128i *)(x->s32 + 8 * b)));
        __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
        __m256i isum = _mm256_setzero_si256();
        for (int p = 0; p < 2; p++)
            for (int h = 0; h < 2; h++) {
                int j = 4 * p + 2 * h; // sub-blocks j (low nibbles) and j + 1 (high)
                __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 64 * p + 32 * h));
                __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (five) {
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, j), one), 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, j + 1), one), 4));
                }
                const int8_t *xq = x->q + 256 * b + 128 * p + 32 * h;
                __m256i dlo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)xq));
                __m256i dhi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + 64)));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(dlo, _mm256_set1_epi16(sm[j])));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(dhi, _mm256_set1_epi16(sm[j + 1])));
            }
        float dx = x->d[b];
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(half_f16c(blk) * dx), acc);
        mins = _mm_fmadd_ps(_mm_cvtepi32_ps(mv), _mm_set1_ps(half_f16c(blk + 2) * dx), mins);
    }
    return hsum8(acc) - hsum4(mins);
}

// Q6_K: per 128 values (half h) ql's two 32-byte loads and qh's one give the four quarters k of
// 32 in natural order (k = 0, 1: low nibbles of the loads; 2, 3: high; qh's bit pair k); (q - 32)
// x summed in pairs, then times the scale of each 16 values (the two 128-bit lanes).
KQ2_TARGET static float dot_q6_k_avx2(const uint8_t *row, const fg_xq *x) {
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), c32 = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < x->IN / 256; b++) {
        const uint8_t *blk = row + (size_t)b * 210;
        const int8_t *sc = (const int8_t *)(blk + 192);
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i qa = _mm256_loadu_si256((const __m256i *)(blk + 64 * h)), qb = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
            for (int k = 0; k < 4; k++) {
                __m256i l = k & 1 ? qb : qa;
                if (k >= 2) l = _mm256_srli_epi16(l, 4);
                __m256i q = _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m3), 4));
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x->q + 256 * b + 128 * h + 32 * k));
                __m256i d = _mm256_sub_epi16(_mm256_maddubs_epi16(q, xv), _mm256_maddubs_epi16(c32, xv));
                int i = 8 * h + 2 * k; // the scales of values 16i..16i+15 and the next 16
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(d, _mm256_set_m128i(_mm_set1_epi16(sc[i + 1]), _mm_set1_epi16(sc[i]))));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(half_f16c(blk + 208) * x->d[b]), acc);
    }
    return hsum8(acc);
}

static int have_avx2(void) {
    static int v = -1;
    if (v < 0) v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); // F16C: every AVX2 CPU has it (clang 14 cannot ask)
    return v;
}
#endif

void fg_xq_dot_rows(float *out, const fg_xq *x, const uint8_t *w, const float *bias, int r0, int r1) {
    size_t rb = fg_qrow_bytes(x->type, x->IN);
#ifdef KQ_X86
    if (fg_xq_fast == 1 && have_vnni()) {
        for (int r = r0; r < r1; r++) {
            const uint8_t *row = w + (size_t)r * rb;
            out[r] = x->type == FG_Q8_0 ? dot_q8_0_vnni(row, x) : x->type == FG_Q6_K ? dot_q6_k_vnni(row, x)
                                                                 : dot_q45_k_vnni(row, x, x->type == FG_Q5_K);
        }
        goto bias;
    }
    if (fg_xq_fast && have_avx2()) {
        for (int r = r0; r < r1; r++) {
            const uint8_t *row = w + (size_t)r * rb;
            out[r] = x->type == FG_Q8_0 ? dot_q8_0_avx2(row, x) : x->type == FG_Q6_K ? dot_q6_k_avx2(row, x)
                                                                 : dot_q45_k_avx2(row, x, x->type == FG_Q5_K);
        }
        goto bias;
    }
#endif
    for (int r = r0; r < r1; r++) out[r] = dot_ref(w + (size_t)r * rb, x);
#ifdef KQ_X86
bias:
#endif
    if (bias)
        for (int r = r0; r < r1; r++) out[r] += bias[r];
}
