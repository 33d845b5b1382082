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
// bf16 rows (the bf16 KV cache): dot(a, b) over n values, y += a * x.
float fg_bf16_dot(const float *a, const uint16_t *b, int n);
void fg_bf16_axpy(float *y, float a, const uint16_t *x, int n);

#endif
