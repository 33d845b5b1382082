// quant.h: inference weight formats: fp32, bf16, and 8-bit blocks (the Q8_0 layout of ggml:
// 32 int8 values sharing one fp16 scale, 34 bytes per block).
//
// These are the row formats and kernels; which tensor gets which type, and where the rows live,
// is the weight store's business (wstore.h).
#ifndef FG_QUANT_H
#define FG_QUANT_H

#include "frugal.h"
#include "ops/dtype.h"

#include <stddef.h>
#include <stdint.h>


// out (N, OUT) = inp (N, IN) @ dequant(w)^T + bias, w being OUT quantised rows of IN values
// (type FG_BF16 / Q8_0; N == 1 also takes FG_F32 and runs fg_qmatvec).
void fg_qmatmul_forward(float *out, const float *inp, const uint8_t *w, int type, const float *bias,
                        int N, int IN, int OUT);
// out (OUT) = dequant(w) (OUT, IN) @ x (IN) + bias (may be NULL), w of any weight type (FG_WEIGHT_TYPES): the
// decode product. Threads split the rows into contiguous blocks; AVX-512 kernels for IN a multiple
// of 16 (Q8_0: any block count), the scalar-vector reference (fg_vdot / qdot) otherwise.
void fg_qmatvec(float *out, const float *x, const uint8_t *w, int type, const float *bias, int IN, int OUT);
// out (N, OUT) = inp (N, IN) @ w^T for a few rows (any type, N small): each weight row is read once
// (expanded to fp32 once when stored otherwise) and dotted with every input row, on the decode pool.
void fg_qmatmul_few(float *out, const float *inp, const uint8_t *w, int type, const float *bias, int N, int IN, int OUT);
// ---- int8 products (kquant.c) ----------------------------------------------------------------
// Decode products of Q8_0 and K-quant rows with the vector quantised to int8, as llama.cpp does:
// fg_xq_bytes of scratch, fg_xq_view over it, fg_xq_quantize(x) once, then fg_xq_dot_rows for any
// rows of any matrix of that type and width. Types: FG_Q8_0 (IN % 32 == 0), FG_Q4_K, FG_Q5_K,
// FG_Q6_K (IN % 256 == 0).
typedef struct {
    int type, IN;
    int8_t *q;        // (IN) the int8 values, in the order the type's kernel reads them (kquant.c)
    int16_t *s4;      // (IN/4) sums of each 4 stored values
    int16_t *s32;     // (IN/32) sums of each 32 values in natural order
    float *d;         // (IN / fg_xq_block(type)) scales: value = d * q
} fg_xq;
int fg_xq_block(int type);            // values per activation scale: 32 (Q8_0), 256 (K types), 0: no int8 path
size_t fg_xq_bytes(int type, int IN); // scratch bytes; 0 when type or IN has no int8 path
void fg_xq_view(fg_xq *v, void *buf, int type, int IN);
void fg_xq_quantize(fg_xq *v, const float *x);
// out[r] = dot(row r of w, x) + bias[r] (bias may be NULL) for r in [r0, r1).
void fg_xq_dot_rows(float *out, const fg_xq *x, const uint8_t *w, const float *bias, int r0, int r1);
// 1 (default): the AVX-512 VNNI kernels where the CPU has them, else the AVX2 ones; 2: AVX2 even
// where VNNI is there (tests: both on one machine); 0: the portable reference (tests).
extern int fg_xq_fast;

// ---- FP8 E4M3 with 128 x 128 block scales (fp8.c) ----------------------------------------------
// out (N, OUT) = inp (N, IN) @ dequant(w, scale)^T + bias (fg_wref's FP8 layout, backend.h): one row
// is a matrix-vector product reading the bytes in place (e4m3 widened in registers: AVX-512 F16C,
// or a table), more rows a GEMM over tiles of 128 weight rows dequantised at a time (never the
// whole matrix), bf16 products with fp32 sums as the other typed weights' prefill.
void fg_fp8_matmul(float *out, const float *inp, const uint8_t *w, const float *scale, const float *bias, int N, int IN, int OUT);
// Row r of such a matrix as fp32 (IN values).
void fg_fp8_row(float *dst, const uint8_t *w, const float *scale, int IN, int r);

// bf16 rows (the bf16 KV cache): dot(a, b) over n values, y += a * x.
float fg_bf16_dot(const float *a, const uint16_t *b, int n);
void fg_bf16_axpy(float *y, float a, const uint16_t *x, int n);

#endif
