// quant.h: inference weight formats: fp32, bf16, and 8-bit blocks (the Q8_0 layout of ggml:
// 32 int8 values sharing one fp16 scale, 34 bytes per block).
//
// These are the row formats and kernels; which tensor gets which type, and where the rows live,
// is the weight store's business (wstore.h).
#ifndef FG_QUANT_H
#define FG_QUANT_H

#include "frugal.h"

#include <stddef.h>
#include <stdint.h>

#define FG_Q8_BLOCK 32
typedef struct {
    uint16_t d;                 // fp16 scale
    int8_t qs[FG_Q8_BLOCK];     // value = d * qs[i]
} fg_block_q8_0;

// out (N, OUT) = inp (N, IN) @ dequant(w)^T + bias, w being OUT quantised rows of IN values
// (type FG_WEIGHTS_BF16 / Q8_0; N == 1 also takes FG_WEIGHTS_F32 and runs fg_qmatvec).
void fg_qmatmul_forward(float *out, const float *inp, const uint8_t *w, int type, const float *bias,
                        int N, int IN, int OUT);
// out (OUT) = dequant(w) (OUT, IN) @ x (IN) + bias (may be NULL), w of any FG_WEIGHTS_* type: the
// decode product. Threads split the rows into contiguous blocks; AVX-512 kernels for IN a multiple
// of 16 (Q8_0: any block count), the scalar-vector reference (fg_vdot / qdot) otherwise.
void fg_qmatvec(float *out, const float *x, const uint8_t *w, int type, const float *bias, int IN, int OUT);
// bf16 rows (the bf16 KV cache): dot(a, b) over n values, y += a * x.
float fg_bf16_dot(const float *a, const uint16_t *b, int n);
void fg_bf16_axpy(float *y, float a, const uint16_t *x, int n);
uint16_t fg_f32_to_bf16(float f); // round to nearest even
// Row conversions (exposed for tests). F32 rows are plain floats.
size_t fg_qrow_bytes(int type, int cols);
void fg_quantize_row(uint8_t *dst, const float *src, int cols, int type);
void fg_dequantize_row(float *dst, const uint8_t *src, int cols, int type);
float fg_fp16_to_f32(uint16_t h);
uint16_t fg_f32_to_fp16(float f);

#endif
