// quant.c: see quant.h. Reference kernels in plain C with GCC/Clang vector extensions. Not here:
// a packed int8 dot product (VNNI) or AMX int8 tiles (CPU-speed work not done). Prefill products
// go through the packed GEMM, whose bf16 path has an AMX tile kernel (src/ops/gemm.c, verified
// only through its emulator so far).
#include "ops/quant.h"
#include "ops/pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/gemm.h"
#include "ops/ops.h"
#include "ops/vec.h"
#include "util.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif


// fp16 -> fp32 for the Q8_0 scales, by table (256 KiB, built once before any parallel use).
static float fp16_table[65536];
static int fp16_table_ready;
static void fp16_table_init(void) {
    if (fp16_table_ready) return;
    for (uint32_t h = 0; h < 65536; h++) fp16_table[h] = fg_fp16_to_f32((uint16_t)h);
    fp16_table_ready = 1;
}

// dot(x, dequant(row)): bf16 and Q8_0 without materialising the row; other block types (the
// GGUF types without an int8 kernel) through a decoded copy.
static float qdot(const float *x, const uint8_t *row, int cols, int type) {
    if (type != FG_BF16 && type != FG_Q8_0) {
        float small[4096], *r = cols <= 4096 ? small : malloc(sizeof(float) * (size_t)cols);
        if (!r) return NAN; // no memory for a row wider than 4096: the product is marked, not wrong
        fg_dequantize_row(r, row, cols, type);
        float s = fg_vdot(x, r, cols);
        if (r != small) free(r);
        return s;
    }
    if (type == FG_BF16) {
        typedef uint16_t u16x16 __attribute__((vector_size(32), aligned(2)));
        typedef uint32_t u32x16 __attribute__((vector_size(64)));
        v16 acc = {0};
        int i = 0;
        for (; i + 16 <= cols; i += 16) {
            u16x16 h;
            memcpy(&h, row + 2 * (size_t)i, sizeof h);
            u32x16 w = __builtin_convertvector(h, u32x16) << 16;
            acc += (v16)w * vload(x + i);
        }
        float s = vsum(acc);
        for (; i < cols; i++) {
            uint16_t b;
            memcpy(&b, row + 2 * (size_t)i, 2);
            float w = fg_bf16_to_f32(b);
            s += w * x[i];
        }
        return s;
    }
#if defined(__AVX512F__)
    // int8 -> fp32 with vpmovsxbd + vcvtdq2ps (the generic form below is scalarised by gcc 12)
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < cols / FG_Q8_BLOCK; b++) {
        const fg_block_q8_0 *blk = (const fg_block_q8_0 *)(row + (size_t)b * sizeof(fg_block_q8_0));
        uint16_t dh;
        memcpy(&dh, &blk->d, 2);
        __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)blk->qs)));
        __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk->qs + 16))));
        const float *xb = x + (size_t)b * FG_Q8_BLOCK;
        __m512 p = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xb + 16), _mm512_mul_ps(w0, _mm512_loadu_ps(xb)));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(fp16_table[dh]), p, acc);
    }
    return _mm512_reduce_add_ps(acc);
#else
    typedef int8_t i8x16 __attribute__((vector_size(16), aligned(1)));
    v16 acc = {0};
    for (int b = 0; b < cols / FG_Q8_BLOCK; b++) {
        const fg_block_q8_0 *blk = (const fg_block_q8_0 *)(row + (size_t)b * sizeof(fg_block_q8_0));
        uint16_t dh;
        memcpy(&dh, &blk->d, 2);
        i8x16 q0, q1;
        memcpy(&q0, blk->qs, 16);
        memcpy(&q1, blk->qs + 16, 16);
        v16 w0 = __builtin_convertvector(q0, v16), w1 = __builtin_convertvector(q1, v16);
        acc += fp16_table[dh] * (w0 * vload(x + (size_t)b * FG_Q8_BLOCK) + w1 * vload(x + (size_t)b * FG_Q8_BLOCK + 16));
    }
    return vsum(acc);
#endif
}

// ---- matrix-vector (decode) ------------------------------------------------------------------
// One token's product reads every weight byte once, so it runs at memory speed when the loads
// stream: threads take chunks of consecutive rows (sequential streams, as the hardware
// prefetchers like them) and compute 4 rows at a time against the cached x, which gives 4
// independent accumulator chains per vector step.

#if defined(__AVX512F__)
static inline __m512 bf16_load16(const uint8_t *p) { // 16 bf16 -> 16 fp32 (exact)
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
static inline __m512 q8_load16(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
#endif

#if defined(__AVX512F__)
// x permuted for the AVX-512 bf16 kernel: within each group of 32, the values vpunpcklwd then
// vpunpckhwd bring to the low halves of fp32 lanes: per 128-bit lane k, elements 8k..8k+3, then
// 8k+4..8k+7. (The AVX2 kernel widens the rows in order and reads x as it is.)
static void bf16_perm_x(float *xp, const float *x, int IN) {
    for (int g = 0; g < IN; g += 32)
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < 4; j++) {
                xp[g + 4 * k + j] = x[g + 8 * k + j];
                xp[g + 16 + 4 * k + j] = x[g + 8 * k + 4 + j];
            }
}
#endif

#if defined(__F16C__)
#define FP16_TO_F32(h) _cvtsh_ss(h) // no table competing with the weight stream for the cache
#else
#define FP16_TO_F32(h) fp16_table[h]
#endif

// out[r] = dot(x, row r) + bias[r] for rows [r0, r1). xperm: bf16_perm_x(x) for bf16 rows, or NULL.
static void matvec_rows(float *out, const float *x, const float *xperm, const uint8_t *w, int type, const float *bias, int IN,
                        int r0, int r1) {
    size_t rb = fg_qrow_bytes(type, IN);
    int r = r0;
#if defined(__AVX512F__)
    if (type == FG_F32 && IN % 16 == 0) {
        for (; r + 4 <= r1; r += 4) {
            const float *w0 = (const float *)(w + (size_t)r * rb), *w1 = w0 + IN, *w2 = w1 + IN, *w3 = w2 + IN;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i < IN; i += 16) {
                __m512 xv = _mm512_loadu_ps(x + i);
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i), xv, a0);
                a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w1 + i), xv, a1);
                a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w2 + i), xv, a2);
                a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w3 + i), xv, a3);
            }
            out[r] = _mm512_reduce_add_ps(a0); out[r + 1] = _mm512_reduce_add_ps(a1);
            out[r + 2] = _mm512_reduce_add_ps(a2); out[r + 3] = _mm512_reduce_add_ps(a3);
        }
    } else if (type == FG_BF16 && IN % 32 == 0 && xperm) {
        // 32 bf16 per 64-byte load; interleaving with zeros (vpunpck{l,h}wd) widens them to two
        // vectors of fp32 in lane-interleaved order, which xperm (x permuted once per product)
        // matches: one load, two shuffles and two FMAs per 64 bytes.
        const __m512i zero = _mm512_setzero_si512();
        for (; r + 4 <= r1; r += 4) {
            const uint8_t *w0 = w + (size_t)r * rb, *w1 = w0 + rb, *w2 = w1 + rb, *w3 = w2 + rb;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i < IN; i += 32) {
                __m512 xl = _mm512_loadu_ps(xperm + i), xh = _mm512_loadu_ps(xperm + i + 16);
#define BF16_STEP(a, wr) do { __m512i v = _mm512_loadu_si512((const void *)((wr) + 2 * (size_t)i)); \
                a = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, v)), xl, a); \
                a = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, v)), xh, a); } while (0)
                BF16_STEP(a0, w0); BF16_STEP(a1, w1); BF16_STEP(a2, w2); BF16_STEP(a3, w3);
#undef BF16_STEP
            }
            out[r] = _mm512_reduce_add_ps(a0); out[r + 1] = _mm512_reduce_add_ps(a1);
            out[r + 2] = _mm512_reduce_add_ps(a2); out[r + 3] = _mm512_reduce_add_ps(a3);
        }
    } else if (type == FG_Q8_0) {
        int nb = IN / FG_Q8_BLOCK;
        for (; r + 2 <= r1; r += 2) {
            const fg_block_q8_0 *b0 = (const fg_block_q8_0 *)(w + (size_t)r * rb), *b1 = (const fg_block_q8_0 *)(w + (size_t)(r + 1) * rb);
            __m512 a0 = _mm512_setzero_ps(), a1 = a0;
            for (int b = 0; b < nb; b++) {
                __m512 x0 = _mm512_loadu_ps(x + (size_t)b * FG_Q8_BLOCK), x1 = _mm512_loadu_ps(x + (size_t)b * FG_Q8_BLOCK + 16);
                uint16_t d0, d1;
                memcpy(&d0, &b0[b].d, 2);
                memcpy(&d1, &b1[b].d, 2);
                __m512 p0 = _mm512_fmadd_ps(q8_load16(b0[b].qs + 16), x1, _mm512_mul_ps(q8_load16(b0[b].qs), x0));
                __m512 p1 = _mm512_fmadd_ps(q8_load16(b1[b].qs + 16), x1, _mm512_mul_ps(q8_load16(b1[b].qs), x0));
                a0 = _mm512_fmadd_ps(_mm512_set1_ps(FP16_TO_F32(d0)), p0, a0);
                a1 = _mm512_fmadd_ps(_mm512_set1_ps(FP16_TO_F32(d1)), p1, a1);
            }
            out[r] = _mm512_reduce_add_ps(a0); out[r + 1] = _mm512_reduce_add_ps(a1);
        }
    }
#elif defined(FG_V16_AVX2)
    // AVX2 (16 ymm registers): 4 rows x 2 accumulators each (8 chains), x loaded once for the 4;
    // bf16 widened in place (8 at a time: zero-extend to 32 bits, shift into the high half).
    if ((type == FG_F32 || type == FG_BF16) && IN % 16 == 0) {
        int bf = type == FG_BF16;
        for (; r + 4 <= r1; r += 4) {
            const uint8_t *wr[4] = {w + (size_t)r * rb, w + (size_t)(r + 1) * rb, w + (size_t)(r + 2) * rb, w + (size_t)(r + 3) * rb};
            __m256 acc[4][2];
            for (int k = 0; k < 4; k++) acc[k][0] = acc[k][1] = _mm256_setzero_ps();
            for (int i = 0; i < IN; i += 16) {
                __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
                for (int k = 0; k < 4; k++) {
                    __m256 w0, w1;
                    if (bf) {
                        __m256i h = _mm256_loadu_si256((const __m256i *)(wr[k] + 2 * (size_t)i));
                        w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16));
                        w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16));
                    } else {
                        w0 = _mm256_loadu_ps((const float *)wr[k] + i);
                        w1 = _mm256_loadu_ps((const float *)wr[k] + i + 8);
                    }
                    acc[k][0] = _mm256_fmadd_ps(w0, x0, acc[k][0]);
                    acc[k][1] = _mm256_fmadd_ps(w1, x1, acc[k][1]);
                }
            }
            for (int k = 0; k < 4; k++) out[r + k] = hsum8(_mm256_add_ps(acc[k][0], acc[k][1]));
        }
    }
#endif
    for (; r < r1; r++) // the reference (and the tails)
        out[r] = type == FG_F32 ? fg_vdot(x, (const float *)(w + (size_t)r * rb), IN) : qdot(x, w + (size_t)r * rb, IN, type);
    if (bias)
        for (r = r0; r < r1; r++) out[r] += bias[r];
}

typedef struct {
    float *out; const float *x, *xperm; const uint8_t *w; int type; const float *bias; int IN, OUT, chunk;
} mv_job;
static void mv_chunk(void *ctx, int k, int tid) {
    (void)tid;
    const mv_job *j = ctx;
    int r0 = k * j->chunk, r1 = FG_MIN(j->OUT, r0 + j->chunk);
    matvec_rows(j->out, j->x, j->xperm, j->w, j->type, j->bias, j->IN, r0, r1);
}

// The int8 form (kquant.c): x quantised once, rows summed in integers, chunks as below.
typedef struct { float *out; const fg_xq *x; const uint8_t *w; const float *bias; int OUT, chunk; } xq_job;
static void xq_chunk(void *ctx, int k, int tid) {
    (void)tid;
    const xq_job *j = ctx;
    fg_xq_dot_rows(j->out, j->x, j->w, j->bias, k * j->chunk, FG_MIN(j->OUT, (k + 1) * j->chunk));
}

static int matvec_int8(float *out, const float *x, const uint8_t *w, int type, const float *bias, int IN, int OUT) {
    size_t need = fg_xq_bytes(type, IN), bytes = fg_qrow_bytes(type, IN) * (size_t)OUT;
    if (!need) return 0;
    _Alignas(64) uint8_t small[24576];
    void *buf = need <= sizeof small ? small : aligned_alloc(64, (need + 63) & ~(size_t)63);
    if (!buf) return 0; // the fp32 form below needs no scratch
    fg_xq xq;
    fg_xq_view(&xq, buf, type, IN);
    fg_xq_quantize(&xq, x);
    xq_job job = {out, &xq, w, bias, OUT, fg_pool_chunk_rows(fg_qrow_bytes(type, IN), OUT)};
    int nchunks = (OUT + job.chunk - 1) / job.chunk;
    if (bytes > FG_POOL_MIN_BYTES) fg_pool_for(nchunks, xq_chunk, &job);
    else fg_xq_dot_rows(out, &xq, w, bias, 0, OUT);
    if (buf != small) free(buf);
    return 1;
}

void fg_qmatvec(float *out, const float *x, const uint8_t *w, int type, const float *bias, int IN, int OUT) {
    fp16_table_init();
    if (matvec_int8(out, x, w, type, bias, IN, OUT)) return;
    size_t bytes = fg_qrow_bytes(type, IN) * (size_t)OUT;
    float xp_small[4096], *xperm = NULL;
#if defined(__AVX512F__)
    if (type == FG_BF16 && IN % 32 == 0) {
        xperm = IN <= 4096 ? xp_small : malloc(sizeof(float) * (size_t)IN); // NULL: the generic path
        if (xperm) bf16_perm_x(xperm, x, IN);
    }
#endif
    // Rows in chunks of 16-256 KiB (at least 16 chunks; a multiple of 4 rows) claimed one at a time by the caller
    // and the decode helpers (pool.h): each chunk is one sequential stream, and a helper the OS
    // has not scheduled never holds the caller back.
    mv_job job = {out, x, xperm, w, type, bias, IN, OUT, fg_pool_chunk_rows(fg_qrow_bytes(type, IN), OUT)};
    int nchunks = (OUT + job.chunk - 1) / job.chunk;
    if (bytes > FG_POOL_MIN_BYTES) fg_pool_for(nchunks, mv_chunk, &job);
    else matvec_rows(out, x, xperm, w, type, bias, IN, 0, OUT);
    if (xperm != xp_small) free(xperm);
}

// A few rows (2..7: a small decode batch, or the rows a batch routes to one expert): FEW_ROWS
// weight rows at a time are expanded to fp32 in a small buffer (L1; fp32 rows are read in place)
// and dotted with every input row in 4 x 4 register blocks (fg_vdot_block), so the weights are
// read once for all of them (not once per row), in chunks claimed as fg_qmatvec's.
#define FEW_ROWS 16
typedef struct {
    float *out; const float *inp; const uint8_t *w; int type; const float *bias; int N, IN, OUT, chunk;
} mm_few_job;
static void mm_few_chunk(void *ctx, int k, int tid) {
    (void)tid;
    const mm_few_job *j = ctx;
    int r0 = k * j->chunk, r1 = FG_MIN(j->OUT, r0 + j->chunk), IN = j->IN;
    size_t rb = fg_qrow_bytes(j->type, IN);
    int step = IN <= 1024 ? FEW_ROWS : 4;
    float small[FEW_ROWS * 1024], *rows = (size_t)step * IN <= sizeof small / sizeof(float) ? small : malloc(sizeof(float) * (size_t)step * IN);
    for (int g = r0; g < r1; g += step) {
        int m = FG_MIN(step, r1 - g);
        if (j->type == FG_F32) { // fp32 rows are dotted in place
            fg_vdot_block(j->out + g, j->OUT, j->inp, IN, j->N, (const float *)(j->w + (size_t)g * rb), IN, m, IN);
        } else if (!rows) { // no memory for the expanded rows: one fused dot per (row, weight row)
            for (int r = g; r < g + m; r++)
                for (int n = 0; n < j->N; n++) j->out[(size_t)n * j->OUT + r] = qdot(j->inp + (size_t)n * IN, j->w + (size_t)r * rb, IN, j->type);
        } else {
            for (int r = 0; r < m; r++) {
                float *row = rows + (size_t)r * IN;
                const uint8_t *src = j->w + (size_t)(g + r) * rb;
                if (j->type == FG_BF16) { // the common case, widened 16 at a time
                    const uint16_t *h = (const uint16_t *)src;
                    int i = 0;
#if defined(__AVX512F__)
                    for (; i + 16 <= IN; i += 16) _mm512_storeu_ps(row + i, bf16_load16((const uint8_t *)(h + i)));
#endif
                    for (; i < IN; i++) { uint16_t b; memcpy(&b, h + i, 2); row[i] = fg_bf16_to_f32(b); }
                } else fg_dequantize_row(row, src, IN, j->type);
            }
            fg_vdot_block(j->out + g, j->OUT, j->inp, IN, j->N, rows, IN, m, IN);
        }
        if (j->bias)
            for (int n = 0; n < j->N; n++)
                for (int r = g; r < g + m; r++) j->out[(size_t)n * j->OUT + r] += j->bias[r];
    }
    if (rows != small) free(rows);
}

void fg_qmatmul_few(float *out, const float *inp, const uint8_t *w, int type, const float *bias, int N, int IN, int OUT) {
    fp16_table_init();
    size_t rb = fg_qrow_bytes(type, IN), bytes = rb * (size_t)OUT;
    mm_few_job job = {out, inp, w, type, bias, N, IN, OUT, fg_pool_chunk_rows(rb, OUT)};
    int nchunks = (OUT + job.chunk - 1) / job.chunk;
    if (bytes > FG_POOL_MIN_BYTES) fg_pool_for(nchunks, mm_few_chunk, &job);
    else for (int k = 0; k < nchunks; k++) mm_few_chunk(&job, k, 0);
}

void fg_qmatmul_forward(float *out, const float *inp, const uint8_t *w, int type, const float *bias,
                        int N, int IN, int OUT) {
    fp16_table_init();
    if (N == 1) { fg_qmatvec(out, inp, w, type, bias, IN, OUT); return; }
    size_t rb = fg_qrow_bytes(type, IN);
    if (N >= 8) { // many rows (prefill): the packed GEMM converts the rows to bf16 panels as it packs
        // them and multiplies with bf16 activations and fp32 accumulation (AVX512-BF16 where present).
        fg_gemm_qb(N, OUT, IN, inp, IN, w, (long)rb, type, out, OUT, bias, FG_BF16);
        return;
    }
    if (fg_xq_block(type) && IN % fg_xq_block(type) == 0) { // int8 kernels: one product per row
        for (int n = 0; n < N; n++) fg_qmatvec(out + (size_t)n * OUT, inp + (size_t)n * IN, w, type, bias, IN, OUT);
        return;
    }
    if (type != FG_F32) { fg_qmatmul_few(out, inp, w, type, bias, N, IN, OUT); return; }
    // Q8_0 and the rest: qdot's fused AVX-512 forms beat expanding a row first (measured), so these
    // read the weights once per row
#pragma omp parallel for collapse(2) schedule(static) if ((long)N * OUT * IN > 32768)
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++)
            out[(size_t)n * OUT + o] = qdot(inp + (size_t)n * IN, w + (size_t)o * rb, IN, type) + (bias ? bias[o] : 0.0f);
}

// ---- bf16 rows of the KV cache ----------------------------------------------------------------

float fg_bf16_dot(const float *a, const uint16_t *b, int n) {
    int i = 0;
    float s = 0;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), bf16_load16((const uint8_t *)(b + i)), acc);
    s = _mm512_reduce_add_ps(acc);
#endif
    for (; i < n; i++) s += a[i] * fg_bf16_to_f32(b[i]);
    return s;
}

void fg_bf16_axpy(float *y, float a, const uint16_t *x, int n) {
    int i = 0;
#if defined(__AVX512F__)
    __m512 av = _mm512_set1_ps(a);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, bf16_load16((const uint8_t *)(x + i)), _mm512_loadu_ps(y + i)));
#endif
    for (; i < n; i++) y[i] += a * fg_bf16_to_f32(x[i]);
}
