// fp8.c: products with FP8 E4M3 weights in DeepSeek-V3's layout (one byte per value, one float
// scale per 128 x 128 block; fg_wref in backend.h), read as stored: a 671B model's FP8 checkpoint
// is 1 byte per parameter in its mapping, not 4 in memory.
//
// E4M3 (bias 7, 3 mantissa bits, no infinities) widens exactly through IEEE half: the byte's low 7
// bits shifted left by 7 are a half's exponent and top mantissa bits with the half's bias 15, so
// half(bits) = e4m3 * 2^-8 for normal and subnormal values alike (NaN, 0x7f / 0xff, becomes 480,
// which no trained weight holds); the 2^8 goes into the block's scale. AVX-512 F16C widens 16 at
// a time; the portable path reads a 256-entry table built from the dtype table's decoder.
#include "ops/quant.h"
#include "ops/pool.h"
#include "ops/backend.h"

#include <stdlib.h>
#include <string.h>

#include "ops/dtype.h"
#include "ops/gemm.h"
#include "ops/vec.h"
#include "util.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FP8_X86 1
#include <immintrin.h>
#endif

#define B FG_FP8_BLOCK

static float lut[256];
static int lut_ready;
static void lut_init(void) { // before any parallel use (fg_fp8_matmul's first call)
    if (lut_ready) return;
    uint8_t all[256];
    for (int b = 0; b < 256; b++) all[b] = (uint8_t)b;
    fg_dequantize_row(lut, all, 256, FG_F8_E4M3);
    lut_ready = 1;
}

void fg_fp8_row(float *dst, const uint8_t *w, const float *scale, int IN, int r) {
    lut_init();
    int nbc = (IN + B - 1) / B;
    const uint8_t *row = w + (size_t)r * IN;
    const float *s = scale + (size_t)(r / B) * nbc;
    for (int c = 0; c < IN; c++) dst[c] = lut[row[c]] * s[c / B];
}

// dot(x, row) over columns [c0, c1) without the scale.
static float dot_ref(const uint8_t *row, const float *x, int c0, int c1) {
    float s = 0;
    for (int c = c0; c < c1; c++) s += lut[row[c]] * x[c];
    return s;
}

#ifdef FP8_X86
#define FP8_TARGET __attribute__((target("avx512f,avx512bw,f16c,fma")))
// 16 e4m3 bytes as 16 floats * 2^-8.
FP8_TARGET static inline __m512 widen16(const uint8_t *p) {
    __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8),
                                _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7f)), 7));
    return _mm512_cvtph_ps(h);
}
FP8_TARGET static float dot_row_avx512(const uint8_t *row, const float *x, const float *s, int IN) {
    __m512 acc = _mm512_setzero_ps();
    float tail = 0;
    for (int c0 = 0; c0 < IN; c0 += B) {
        int c1 = FG_MIN(IN, c0 + B), c = c0;
        __m512 a = _mm512_setzero_ps();
        for (; c + 16 <= c1; c += 16) a = _mm512_fmadd_ps(widen16(row + c), _mm512_loadu_ps(x + c), a);
        acc = _mm512_fmadd_ps(a, _mm512_set1_ps(256.0f * s[c0 / B]), acc);
        if (c < c1) tail += s[c0 / B] * dot_ref(row, x, c, c1);
    }
    return _mm512_reduce_add_ps(acc) + tail;
}
static int have_avx512(void) {
    static int v = -1;
    if (v < 0) v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"); // F16C: every AVX-512 CPU has it (clang 14 cannot ask)
    return v;
}
#endif

static float dot_row(const uint8_t *w, const float *scale, const float *x, int IN, int r) {
    const uint8_t *row = w + (size_t)r * IN;
    const float *s = scale + (size_t)(r / B) * ((IN + B - 1) / B);
#ifdef FP8_X86
    if (have_avx512()) return dot_row_avx512(row, x, s, IN);
#endif
    float acc = 0;
    for (int c0 = 0; c0 < IN; c0 += B) acc += s[c0 / B] * dot_ref(row, x, c0, FG_MIN(IN, c0 + B));
    return acc;
}

typedef struct { float *out; const float *x; const uint8_t *w; const float *scale, *bias; int IN, OUT, chunk; } mv_job;
static void mv_chunk(void *ctx, int k, int tid) {
    (void)tid;
    const mv_job *j = ctx;
    for (int r = k * j->chunk; r < FG_MIN(j->OUT, (k + 1) * j->chunk); r++)
        j->out[r] = dot_row(j->w, j->scale, j->x, j->IN, r) + (j->bias ? j->bias[r] : 0.0f);
}

void fg_fp8_matmul(float *out, const float *inp, const uint8_t *w, const float *scale, const float *bias, int N, int IN, int OUT) {
    lut_init();
    if (N == 1) { // rows in chunks on the decode pool, as fg_qmatvec
        int chunk = fg_pool_chunk_rows((size_t)IN, OUT);
        mv_job j = {out, inp, w, scale, bias, IN, OUT, chunk};
        int nchunks = (OUT + chunk - 1) / chunk;
        if ((size_t)IN * OUT > FG_POOL_MIN_BYTES) fg_pool_for(nchunks, mv_chunk, &j);
        else for (int k = 0; k < nchunks; k++) mv_chunk(&j, k, 0);
        return;
    }
    // Tiles of one block row (128 weight rows) dequantised to fp32, multiplied on the GEMM.
    float *tile = malloc(sizeof(float) * (size_t)B * IN);
    if (!tile) { // no memory for a tile: one row at a time
        for (int n = 0; n < N; n++) fg_fp8_matmul(out + (size_t)n * OUT, inp + (size_t)n * IN, w, scale, bias, 1, IN, OUT);
        return;
    }
    for (int r0 = 0; r0 < OUT; r0 += B) {
        int rows = FG_MIN(B, OUT - r0);
#pragma omp parallel for schedule(static) if ((size_t)rows * IN > 65536)
        for (int r = 0; r < rows; r++) fg_fp8_row(tile + (size_t)r * IN, w, scale, IN, r0 + r);
        fg_gemm_qb(N, rows, IN, inp, IN, tile, (long)sizeof(float) * IN, FG_F32, out + r0, OUT, bias ? bias + r0 : NULL, FG_BF16);
    }
    free(tile);
}
