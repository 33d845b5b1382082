// dtype.h: the traits of the element types (the enum itself, fg_dtype, is public: frugal.h). One
// table says, for every type, its names in frugal, GGUF and safetensors, its block geometry and
// how a row converts to and from f32. Every reader, writer and kernel that needs to know a type
// asks it: there is no second enum of types anywhere in src/.
#ifndef FG_DTYPE_H
#define FG_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "frugal.h"

typedef struct {
    const char *name, *alias;   // frugal's name ("q8_0") and another it accepts ("q8"), or NULL
    const char *st;             // safetensors dtype ("BF16"); NULL: safetensors has none
    int ggml;                   // GGML type id; -1: GGUF has none
    int block, block_bytes;     // elements per block and the bytes of one
    // n elements (a multiple of block) of a row; NULL: frugal does not convert this type
    void (*to_f32)(float *dst, const uint8_t *src, size_t n);
    void (*from_f32)(uint8_t *dst, const float *src, size_t n);
} fg_dtype_traits;

const fg_dtype_traits *fg_dtype_info(int t); // NULL for a value outside the enum
int fg_dtype_from_ggml(uint32_t id);         // the type of a GGML id, -1 if frugal has none
int fg_dtype_from_st(const char *s, size_t len); // the type of a safetensors dtype string, or -1

// Rows of `cols` values of type t (cols a multiple of its block): bytes, and conversions.
size_t fg_qrow_bytes(int t, int cols);
void fg_quantize_row(uint8_t *dst, const float *src, int cols, int t);
void fg_dequantize_row(float *dst, const uint8_t *src, int cols, int t);

// Scalars: fp16 (IEEE half) both ways, f32 -> bf16 rounded to nearest even (NaN kept quiet).
float fg_fp16_to_f32(uint16_t h);
uint16_t fg_f32_to_fp16(float f);
uint16_t fg_f32_to_bf16(float f);
static inline float fg_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Q4_K / Q5_K: the 12 packed scale bytes of a super-block as 8 scales (out[0..7]) and 8 mins
// (out[8..15]), all 6-bit. Scales 0-3 and mins 0-3 are the low 6 bits of bytes 0-3 and 4-7; scales
// 4-7 take their low 4 bits from bytes 8-11 and their top 2 from bits 6-7 of bytes 0-3, mins 4-7 the
// high nibbles of bytes 8-11 and bits 6-7 of bytes 4-7 (done on 32-bit words).
static inline void fg_k_unpack_scales(const uint8_t *s, uint8_t out[16]) {
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    uint32_t w[4] = {a & 0x3f3f3f3fu, (c & 0x0f0f0f0fu) | ((a >> 6) & 0x03030303u) << 4, b & 0x3f3f3f3fu,
                     ((c >> 4) & 0x0f0f0f0fu) | ((b >> 6) & 0x03030303u) << 4};
    memcpy(out, w, 16);
}

// Q8_0 (ggml's layout): 32 int8 values sharing one fp16 scale, 34 bytes per block.
#define FG_Q8_BLOCK 32
typedef struct {
    uint16_t d;                 // fp16 scale
    int8_t qs[FG_Q8_BLOCK];     // value = d * qs[i]
} fg_block_q8_0;

#endif
