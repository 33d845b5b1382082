// quant.h: inference weight formats: fp32, bf16, and 8-bit blocks (the Q8_0 layout of ggml:
// 32 int8 values sharing one fp16 scale, 34 bytes per block).
//
// A quantised copy of a model is built tensor by tensor in the model's table order: every matrix
// whose rows fit the format (Q8_0: columns a multiple of 32) is converted; vectors (norms,
// biases, the routing bias) and the embedding table (a lookup, not a product) stay fp32, and so
// does MLA's wkv_b, which absorbed decoding reads row by row in fp32. The fp32 model stays
// untouched; a session reads the quantised rows through fg_qweights_find.
#ifndef FG_QUANT_H
#define FG_QUANT_H

#include "model/model.h"

#define FG_Q8_BLOCK 32
typedef struct {
    uint16_t d;                 // fp16 scale
    int8_t qs[FG_Q8_BLOCK];     // value = d * qs[i]
} fg_block_q8_0;

typedef struct {
    int type;                   // FG_WEIGHTS_* of the whole copy
    int n;                      // tensors of the model's table
    const float **base;         // (n) fp32 start of tensor i in the model (for pointer lookup)
    size_t *numel, *cols;       // (n)
    int *ttype;                 // (n) FG_WEIGHTS_F32 (kept) or the copy's type
    uint8_t **data;             // (n) quantised rows, or NULL when kept in fp32
    size_t bytes;               // quantised bytes in all
} fg_qweights;

// Builds the copy (type FG_WEIGHTS_BF16 or FG_WEIGHTS_Q8_0). Returns NULL with an error.
fg_qweights *fg_qweights_create(const fg_model *m, int type);
void fg_qweights_free(fg_qweights *q);
// For a pointer to the start of a row of a model weight: that row's quantised bytes and type, or
// NULL when the row is kept in fp32.
const uint8_t *fg_qweights_find(const fg_qweights *q, const float *w, int *type);
// out (N, OUT) = inp (N, IN) @ dequant(w)^T + bias, w being OUT quantised rows of IN values.
void fg_qmatmul_forward(float *out, const float *inp, const uint8_t *w, int type, const float *bias,
                        int N, int IN, int OUT);
// Row conversions (exposed for tests).
size_t fg_qrow_bytes(int type, int cols);
void fg_quantize_row(uint8_t *dst, const float *src, int cols, int type);
void fg_dequantize_row(float *dst, const uint8_t *src, int cols, int type);
float fg_fp16_to_f32(uint16_t h);
uint16_t fg_f32_to_fp16(float f);

#endif
