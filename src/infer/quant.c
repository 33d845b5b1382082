// quant.c: see quant.h. Reference kernels in plain C with GCC/Clang vector extensions; a packed
// int8 dot product (VNNI) and AMX belong to the CPU-speed work.
#include "infer/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/gemm.h"
#include "ops/ops.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

typedef float v16 __attribute__((vector_size(64), aligned(4)));

float fg_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { // subnormal: renormalise
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t fg_f32_to_fp16(float f) { // round to nearest even; saturates to inf
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - exp;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | (uint32_t)exp << 10 | man >> 13, rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)half;
}

static uint16_t f32_to_bf16(float f) { // round to nearest even (NaN kept quiet)
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

size_t fg_qrow_bytes(int type, int cols) {
    if (type == FG_WEIGHTS_BF16) return 2 * (size_t)cols;
    if (type == FG_WEIGHTS_Q8_0) return (size_t)(cols / FG_Q8_BLOCK) * sizeof(fg_block_q8_0);
    return 4 * (size_t)cols;
}

void fg_quantize_row(uint8_t *dst, const float *src, int cols, int type) {
    if (type == FG_WEIGHTS_BF16) {
        for (int i = 0; i < cols; i++) { uint16_t b = f32_to_bf16(src[i]); memcpy(dst + 2 * (size_t)i, &b, 2); }
        return;
    }
    for (int b = 0; b < cols / FG_Q8_BLOCK; b++) {
        const float *x = src + (size_t)b * FG_Q8_BLOCK;
        float amax = 0;
        for (int i = 0; i < FG_Q8_BLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        fg_block_q8_0 blk;
        blk.d = fg_f32_to_fp16(d);
        for (int i = 0; i < FG_Q8_BLOCK; i++) blk.qs[i] = (int8_t)lrintf(x[i] * id);
        memcpy(dst + (size_t)b * sizeof blk, &blk, sizeof blk);
    }
}

void fg_dequantize_row(float *dst, const uint8_t *src, int cols, int type) {
    if (type == FG_WEIGHTS_BF16) {
        for (int i = 0; i < cols; i++) {
            uint16_t b;
            memcpy(&b, src + 2 * (size_t)i, 2);
            uint32_t x = (uint32_t)b << 16;
            memcpy(&dst[i], &x, 4);
        }
        return;
    }
    for (int b = 0; b < cols / FG_Q8_BLOCK; b++) {
        fg_block_q8_0 blk;
        memcpy(&blk, src + (size_t)b * sizeof blk, sizeof blk);
        float d = fg_fp16_to_f32(blk.d);
        for (int i = 0; i < FG_Q8_BLOCK; i++) dst[(size_t)b * FG_Q8_BLOCK + i] = d * blk.qs[i];
    }
}

// fp16 -> fp32 for the Q8_0 scales, by table (256 KiB, built once before any parallel use).
static float fp16_table[65536];
static int fp16_table_ready;
static void fp16_table_init(void) {
    if (fp16_table_ready) return;
    for (uint32_t h = 0; h < 65536; h++) fp16_table[h] = fg_fp16_to_f32((uint16_t)h);
    fp16_table_ready = 1;
}

// dot(x, dequant(row)) without materialising the row.
static float qdot(const float *x, const uint8_t *row, int cols, int type) {
    if (type == FG_WEIGHTS_BF16) {
        typedef uint16_t u16x16 __attribute__((vector_size(32), aligned(2)));
        typedef uint32_t u32x16 __attribute__((vector_size(64)));
        v16 acc = {0};
        int i = 0;
        for (; i + 16 <= cols; i += 16) {
            u16x16 h;
            memcpy(&h, row + 2 * (size_t)i, sizeof h);
            u32x16 w = __builtin_convertvector(h, u32x16) << 16;
            v16 wf, xv;
            memcpy(&wf, &w, sizeof wf);
            memcpy(&xv, x + i, sizeof xv);
            acc += wf * xv;
        }
        float s = 0;
        for (int j = 0; j < 16; j++) s += acc[j];
        for (; i < cols; i++) {
            uint16_t b;
            memcpy(&b, row + 2 * (size_t)i, 2);
            uint32_t u = (uint32_t)b << 16;
            float w;
            memcpy(&w, &u, 4);
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
        v16 w0 = __builtin_convertvector(q0, v16), w1 = __builtin_convertvector(q1, v16), x0, x1;
        memcpy(&x0, x + (size_t)b * FG_Q8_BLOCK, sizeof x0);
        memcpy(&x1, x + (size_t)b * FG_Q8_BLOCK + 16, sizeof x1);
        acc += fp16_table[dh] * (w0 * x0 + w1 * x1);
    }
    float s = 0;
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
#endif
}

void fg_qmatmul_forward(float *out, const float *inp, const uint8_t *w, int type, const float *bias,
                        int N, int IN, int OUT) {
    fp16_table_init();
    size_t rb = fg_qrow_bytes(type, IN);
    if (N >= 8) { // many rows (prefill): the packed GEMM converts the rows to bf16 panels as it packs
        // them and multiplies with bf16 activations and fp32 accumulation (AVX512-BF16 where present).
        fg_gemm_qb(N, OUT, IN, inp, IN, w, (long)rb, type, out, OUT, bias, FG_GEMM_BF16);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static) if ((long)N * OUT * IN > 32768)
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++)
            out[(size_t)n * OUT + o] = qdot(inp + (size_t)n * IN, w + (size_t)o * rb, IN, type) + (bias ? bias[o] : 0.0f);
}

fg_qweights *fg_qweights_create(const fg_model *m, int type) {
    if (type != FG_WEIGHTS_BF16 && type != FG_WEIGHTS_Q8_0) { fg_set_error("quantise: unknown weight type %d", type); return NULL; }
    fp16_table_init();
    fg_qweights *q = calloc(1, sizeof *q);
    if (!q) { fg_set_error("out of memory"); return NULL; }
    q->type = type;
    q->n = m->n_tensors;
    q->base = calloc(q->n, sizeof *q->base);
    q->numel = calloc(q->n, sizeof *q->numel);
    q->cols = calloc(q->n, sizeof *q->cols);
    q->ttype = calloc(q->n, sizeof *q->ttype);
    q->data = calloc(q->n, sizeof *q->data);
    if (!q->base || !q->numel || !q->cols || !q->ttype || !q->data) { fg_qweights_free(q); fg_set_error("out of memory"); return NULL; }
    for (int i = 0; i < q->n; i++) {
        const fg_tensor *t = &m->tensors[i];
        q->base[i] = m->params + t->offset;
        q->numel[i] = t->numel;
        q->cols[i] = t->ndim == 2 ? (size_t)t->shape[1] : t->numel;
        q->ttype[i] = FG_WEIGHTS_F32;
        int keep = t->ndim != 2 || (t->flags & FG_TENSOR_BUFFER) || !strcmp(t->name, "model.embed_tokens.weight") ||
                   strstr(t->name, "kv_b_proj") || (type == FG_WEIGHTS_Q8_0 && t->shape[1] % FG_Q8_BLOCK);
        if (keep) continue;
        size_t rows = (size_t)t->shape[0], rb = fg_qrow_bytes(type, t->shape[1]);
        q->data[i] = malloc(rows * rb);
        if (!q->data[i]) { fg_qweights_free(q); fg_set_error("out of memory quantising the weights"); return NULL; }
        for (size_t r = 0; r < rows; r++) fg_quantize_row(q->data[i] + r * rb, q->base[i] + r * t->shape[1], t->shape[1], type);
        q->ttype[i] = type;
        q->bytes += rows * rb;
    }
    return q; // a tied head reads the (fp32) embedding table: it stays fp32 too
}

void fg_qweights_free(fg_qweights *q) {
    if (!q) return;
    for (int i = 0; q->data && i < q->n; i++) free(q->data[i]);
    free(q->base); free(q->numel); free(q->cols); free(q->ttype); free(q->data);
    free(q);
}

const uint8_t *fg_qweights_find(const fg_qweights *q, const float *w, int *type) {
    int lo = 0, hi = q->n - 1; // tensors are laid out in increasing address order
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (q->base[mid] <= w) lo = mid; else hi = mid - 1;
    }
    if (w < q->base[lo] || w >= q->base[lo] + q->numel[lo] || !q->data[lo]) return NULL;
    size_t off = (size_t)(w - q->base[lo]);
    *type = q->ttype[lo];
    return q->data[lo] + off / q->cols[lo] * fg_qrow_bytes(q->ttype[lo], (int)q->cols[lo]);
}

int fg_weights_type_parse(const char *name) {
    if (!strcmp(name, "f32") || !strcmp(name, "fp32")) return FG_WEIGHTS_F32;
    if (!strcmp(name, "bf16")) return FG_WEIGHTS_BF16;
    if (!strcmp(name, "q8_0") || !strcmp(name, "q8")) return FG_WEIGHTS_Q8_0;
    return fg_set_error("unknown weight type '%s' (hint: f32, bf16 or q8_0)", name);
}
