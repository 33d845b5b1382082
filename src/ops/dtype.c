// dtype.c: see dtype.h. The row conversions are the reference ones (plain C); the kernels that
// multiply quantised rows without converting them are in quant.c and gemm.c.
#include "ops/dtype.h"

#include <math.h>
#include <stdio.h>

#include "util.h"

// ---- scalars ---------------------------------------------------------------------------------

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

uint16_t fg_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

// FP8 E4M3 (OCP "e4m3fn": bias 7, no infinities, S.1111.111 is NaN).
static float fp8_e4m3_to_f32(uint8_t b) {
    int e = (b >> 3) & 15, mant = b & 7;
    float v = e == 15 && mant == 7 ? NAN : e == 0 ? ldexpf((float)mant, -9) : ldexpf((float)(8 + mant), e - 10);
    return b & 0x80 ? -v : v;
}

// ---- rows ------------------------------------------------------------------------------------

static uint16_t u16_at(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return h; }

static void f32_to(float *d, const uint8_t *s, size_t n) { memcpy(d, s, 4 * n); }
static void f32_from(uint8_t *d, const float *s, size_t n) { memcpy(d, s, 4 * n); }
static void f64_to(float *d, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) { double x; memcpy(&x, s + 8 * i, 8); d[i] = (float)x; }
}
static void bf16_to(float *d, const uint8_t *s, size_t n) { for (size_t i = 0; i < n; i++) d[i] = fg_bf16_to_f32(u16_at(s + 2 * i)); }
static void bf16_from(uint8_t *d, const float *s, size_t n) {
    for (size_t i = 0; i < n; i++) { uint16_t h = fg_f32_to_bf16(s[i]); memcpy(d + 2 * i, &h, 2); }
}
static void f16_to(float *d, const uint8_t *s, size_t n) { for (size_t i = 0; i < n; i++) d[i] = fg_fp16_to_f32(u16_at(s + 2 * i)); }
static void f16_from(uint8_t *d, const float *s, size_t n) {
    for (size_t i = 0; i < n; i++) { uint16_t h = fg_f32_to_fp16(s[i]); memcpy(d + 2 * i, &h, 2); }
}
static void e4m3_to(float *d, const uint8_t *s, size_t n) { for (size_t i = 0; i < n; i++) d[i] = fp8_e4m3_to_f32(s[i]); }

// Q8_0: d = amax / 127, q = round(x / d).
static void q8_0_from(uint8_t *dst, const float *src, size_t n) {
    for (size_t b = 0; b < n / FG_Q8_BLOCK; b++) {
        const float *x = src + b * FG_Q8_BLOCK;
        float amax = 0;
        for (int i = 0; i < FG_Q8_BLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        fg_block_q8_0 blk;
        blk.d = fg_f32_to_fp16(d);
        for (int i = 0; i < FG_Q8_BLOCK; i++) blk.qs[i] = (int8_t)lrintf(x[i] * id);
        memcpy(dst + b * sizeof blk, &blk, sizeof blk);
    }
}
static void q8_0_to(float *dst, const uint8_t *src, size_t n) {
    for (size_t b = 0; b < n / FG_Q8_BLOCK; b++) {
        fg_block_q8_0 blk;
        memcpy(&blk, src + b * sizeof blk, sizeof blk);
        float d = fg_fp16_to_f32(blk.d);
        for (int i = 0; i < FG_Q8_BLOCK; i++) dst[b * FG_Q8_BLOCK + i] = d * blk.qs[i];
    }
}

// Q4_0 (ggml's layout: fp16 scale d, then 16 bytes; low nibbles are values 0..15 of the block,
// high nibbles 16..31; value = d * (nibble - 8)). d = (the value of largest magnitude) / -8, so that
// value maps to nibble 0 exactly and the rest round to nearest within [-8, 7].
static void q4_0_from(uint8_t *dst, const float *src, size_t n) {
    for (size_t b = 0; b < n / 32; b++, dst += 18) {
        const float *x = src + 32 * b;
        float amax = 0, mx = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); mx = x[j]; }
        float d = mx / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint16_t h = fg_f32_to_fp16(d);
        memcpy(dst, &h, 2);
        for (int j = 0; j < 16; j++) {
            int a = (int)(x[j] * id + 8.5f), c = (int)(x[j + 16] * id + 8.5f);
            a = a < 0 ? 0 : a > 15 ? 15 : a;
            c = c < 0 ? 0 : c > 15 ? 15 : c;
            dst[2 + j] = (uint8_t)(a | c << 4);
        }
    }
}
static void q4_0_to(float *dst, const uint8_t *src, size_t n) {
    for (size_t b = 0; b < n / 32; b++, src += 18, dst += 32) {
        float d = fg_fp16_to_f32(u16_at(src));
        for (int j = 0; j < 16; j++) { dst[j] = d * (float)((src[2 + j] & 15) - 8); dst[j + 16] = d * (float)((src[2 + j] >> 4) - 8); }
    }
}

// Q4_1: fp16 d and m, 16 bytes of nibbles (low: values 0..15, high: 16..31); x = d q + m.
// Q5_0 / Q5_1: the same with a fifth bit per value in a 32-bit word (bit j for value j); Q5_0 has
// no m and centres q at 16. (ggml's layouts; the products are those of ggml's reference code, in
// the same order, so the values are bit for bit ggml's.)
static void q4_1_to(float *dst, const uint8_t *src, size_t n) {
    for (size_t b = 0; b < n / 32; b++, src += 20, dst += 32) {
        float d = fg_fp16_to_f32(u16_at(src)), m = fg_fp16_to_f32(u16_at(src + 2));
        for (int j = 0; j < 16; j++) { dst[j] = (float)(src[4 + j] & 15) * d + m; dst[j + 16] = (float)(src[4 + j] >> 4) * d + m; }
    }
}
static void q5_to(float *dst, const uint8_t *src, size_t n, int with_min) {
    size_t bb = with_min ? 24 : 22;
    for (size_t b = 0; b < n / 32; b++, src += bb, dst += 32) {
        float d = fg_fp16_to_f32(u16_at(src)), m = with_min ? fg_fp16_to_f32(u16_at(src + 2)) : 0;
        const uint8_t *p = src + (with_min ? 4 : 2), *qs = p + 4;
        uint32_t qh = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 15) | (int)(qh >> j & 1) << 4, hi = (qs[j] >> 4) | (int)(qh >> (j + 16) & 1) << 4;
            if (with_min) { dst[j] = (float)lo * d + m; dst[j + 16] = (float)hi * d + m; }
            else { dst[j] = (float)(lo - 16) * d; dst[j + 16] = (float)(hi - 16) * d; }
        }
    }
}
static void q5_0_to(float *dst, const uint8_t *src, size_t n) { q5_to(dst, src, n, 0); }
static void q5_1_to(float *dst, const uint8_t *src, size_t n) { q5_to(dst, src, n, 1); }

// K-quants: super-blocks of 256 values. Q4_K / Q5_K: fp16 d and dmin, 12 bytes packing eight 6-bit
// scales and eight 6-bit mins (one per 32 values), then (Q5_K) 32 bytes of fifth bits, then 128
// bytes of nibbles: x = d*scale_j * q - dmin*min_j. Q6_K: 128 bytes of low nibbles, 64 of high
// bit pairs, sixteen int8 scales (one per 16 values), fp16 d: x = d * scale * (q - 32).
static void q45_k_to(float *y, const uint8_t *src, size_t n, int five) {
    size_t bb = five ? 176 : 144;
    for (size_t b = 0; b < n / 256; b++, src += bb) {
        float d = fg_fp16_to_f32(u16_at(src)), dmin = fg_fp16_to_f32(u16_at(src + 2));
        const uint8_t *qh = src + 16, *q = src + (five ? 48 : 16);
        uint8_t sm[16];
        fg_k_unpack_scales(src + 4, sm);
        for (int g = 0; g < 4; g++, q += 32) { // 64 values: the low nibbles of 32 bytes, then the high ones
            int s0 = sm[2 * g], m0 = sm[8 + 2 * g], s1 = sm[2 * g + 1], m1 = sm[8 + 2 * g + 1];
            float d0 = d * (float)s0, c0 = dmin * (float)m0, d1 = d * (float)s1, c1 = dmin * (float)m1;
            for (int l = 0; l < 32; l++) *y++ = d0 * (float)((q[l] & 15) + (five && (qh[l] >> (2 * g) & 1) ? 16 : 0)) - c0;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] >> 4) + (five && (qh[l] >> (2 * g + 1) & 1) ? 16 : 0)) - c1;
        }
    }
}
static void q4_k_to(float *dst, const uint8_t *src, size_t n) { q45_k_to(dst, src, n, 0); }

// frugal's Q4_K / Q5_K writer (not llama.cpp's search, a direct fit): per 32 values the range
// [min(0, lo), hi] in `top` steps (15: Q4_K, 31: Q5_K); the eight steps and eight offsets as 6-bit
// multiples of the super-block's d and dmin (the largest of each / 63, rounded to fp16 first so the
// codes are fitted to what a reader sees); each value to the nearest of its top + 1 levels.
// Writes d, dmin and the 12 scale bytes of one super-block (src: 256 values); code[256]: 0..top.
static void k_fit(uint8_t *dst, uint8_t *code, const float *src, int top) {
    float step[8], off[8], smax = 0, omax = 0;
    for (int j = 0; j < 8; j++) {
        float lo = 0, hi = -INFINITY;
        for (int l = 0; l < 32; l++) { lo = fminf(lo, src[32 * j + l]); hi = fmaxf(hi, src[32 * j + l]); }
        step[j] = (hi - lo) / (float)top;
        off[j] = -lo;
        smax = fmaxf(smax, step[j]);
        omax = fmaxf(omax, off[j]);
    }
    uint16_t hd = fg_f32_to_fp16(smax / 63.0f), hm = fg_f32_to_fp16(omax / 63.0f);
    float d = fg_fp16_to_f32(hd), dmin = fg_fp16_to_f32(hm);
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = d > 0 ? (int)fminf(63.0f, ceilf(step[j] / d - 1e-3f)) : 0; // round up: the range fits
        mn[j] = dmin > 0 ? (int)fminf(63.0f, lrintf(off[j] / dmin)) : 0;
    }
    memcpy(dst, &hd, 2);
    memcpy(dst + 2, &hm, 2);
    uint8_t *s = dst + 4;
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
    for (int j = 0; j < 8; j++) {
        float d1 = d * (float)sc[j], m1 = dmin * (float)mn[j], id = d1 > 0 ? 1.0f / d1 : 0;
        for (int l = 0; l < 32; l++) {
            int v = (int)lrintf((src[32 * j + l] + m1) * id);
            code[32 * j + l] = (uint8_t)(v < 0 ? 0 : v > top ? top : v);
        }
    }
}
// Packs the codes as q45_k_to reads them: per 64 values the low nibbles of 32 bytes, then the
// high ones; Q5_K's fifth bits in qh (bit 2g of byte l: value 64g + l, bit 2g+1: 64g + 32 + l).
static void q4_k_from(uint8_t *dst, const float *src, size_t n) {
    uint8_t code[256];
    for (size_t b = 0; b < n / 256; b++, src += 256, dst += 144) {
        k_fit(dst, code, src, 15);
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) dst[16 + 32 * g + l] = (uint8_t)(code[64 * g + l] | code[64 * g + 32 + l] << 4);
    }
}
static void q5_k_from(uint8_t *dst, const float *src, size_t n) {
    uint8_t code[256];
    for (size_t b = 0; b < n / 256; b++, src += 256, dst += 176) {
        k_fit(dst, code, src, 31);
        uint8_t *qh = dst + 16, *q = dst + 48;
        memset(qh, 0, 32);
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                int lo = code[64 * g + l], hi = code[64 * g + 32 + l];
                q[32 * g + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                qh[l] |= (uint8_t)((lo >> 4) << (2 * g) | (hi >> 4) << (2 * g + 1));
            }
    }
}
static void q5_k_to(float *dst, const uint8_t *src, size_t n) { q45_k_to(dst, src, n, 1); }
// frugal's Q6_K writer: per 16 values a signed step (the value of largest magnitude / -32, so it
// maps to -32 exactly), the sixteen steps as int8 multiples of the super-block's d (the largest
// step magnitude / 127, rounded to fp16 first), each value to the nearest level in [-32, 31].
static void q6_k_from(uint8_t *dst, const float *src, size_t n) {
    for (size_t b = 0; b < n / 256; b++, src += 256, dst += 210) {
        float step[16], smax = 0;
        for (int i = 0; i < 16; i++) {
            float amax = 0, mx = 0;
            for (int l = 0; l < 16; l++)
                if (fabsf(src[16 * i + l]) > amax) { amax = fabsf(src[16 * i + l]); mx = src[16 * i + l]; }
            step[i] = mx / -32.0f;
            smax = fmaxf(smax, fabsf(step[i]));
        }
        uint16_t hd = fg_f32_to_fp16(smax / 127.0f);
        float d = fg_fp16_to_f32(hd);
        int8_t *sc = (int8_t *)(dst + 192);
        uint8_t code[256];
        for (int i = 0; i < 16; i++) {
            long v = d > 0 ? lrintf(step[i] / d) : 0;
            sc[i] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
            float d1 = d * (float)sc[i], id = d1 != 0 ? 1.0f / d1 : 0;
            for (int l = 0; l < 16; l++) {
                int q = (int)lrintf(src[16 * i + l] * id);
                code[16 * i + l] = (uint8_t)((q < -32 ? -32 : q > 31 ? 31 : q) + 32);
            }
        }
        uint8_t *ql = dst, *qh = dst + 128;
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *c = code + 128 * h + l;
                ql[64 * h + l] = (uint8_t)((c[0] & 15) | (c[64] & 15) << 4);
                ql[64 * h + 32 + l] = (uint8_t)((c[32] & 15) | (c[96] & 15) << 4);
                qh[32 * h + l] = (uint8_t)(c[0] >> 4 | (c[32] >> 4) << 2 | (c[64] >> 4) << 4 | (c[96] >> 4) << 6);
            }
        memcpy(dst + 208, &hd, 2);
    }
}

static void q6_k_to(float *y, const uint8_t *src, size_t n) {
    for (size_t b = 0; b < n / 256; b++, src += 210) {
        float d = fg_fp16_to_f32(u16_at(src + 208));
        const uint8_t *ql = src, *qh = src + 128;
        const int8_t *sc = (const int8_t *)(src + 192);
        for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8) // 128 values per half
            for (int l = 0; l < 32; l++) {
                int s = l / 16;
                int q1 = ((ql[l] & 15) | (qh[l] & 3) << 4) - 32, q2 = ((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) - 32;
                int q3 = ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32, q4 = ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32;
                y[l] = d * (float)sc[s] * (float)q1;
                y[l + 32] = d * (float)sc[s + 2] * (float)q2;
                y[l + 64] = d * (float)sc[s + 4] * (float)q3;
                y[l + 96] = d * (float)sc[s + 6] * (float)q4;
            }
    }
}

// Q2_K (84 bytes): sixteen scale bytes (low nibble: the step of 16 values, high: their offset),
// 64 bytes of 2-bit codes, fp16 d and dmin: x = d*step * q - dmin*offset. Q3_K (110 bytes): 32
// bytes of third bits, 64 of 2-bit codes, sixteen 6-bit scales in 12 bytes, fp16 d:
// x = d*(scale - 32) * (q - 4 + 4*third bit). Both order 16-value sub-blocks i = 0..15 alike: half
// h = i/8 of the codes (32 bytes), bits 2s..2s+1 with s = (i%8)/2, bytes 16*(i%2) .. +15; Q3_K's third
// bit of byte l of those is bit 4h + s of hmask[l].
static void q2_k_to(float *y, const uint8_t *src, size_t n) {
    for (size_t b = 0; b < n / 256; b++, src += 84) {
        float d = fg_fp16_to_f32(u16_at(src + 80)), dmin = fg_fp16_to_f32(u16_at(src + 82));
        for (int i = 0; i < 16; i++) {
            const uint8_t *q = src + 16 + 32 * (i / 8) + 16 * (i % 2);
            int sh = 2 * ((i % 8) / 2);
            float dl = d * (float)(src[i] & 15), ml = dmin * (float)(src[i] >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * (float)(q[l] >> sh & 3) - ml;
        }
    }
}
// Q3_K's scale i: low 4 bits in the nibbles of bytes 0..7 (i < 8 low, else high nibble of i - 8),
// high 2 bits at bit 2*(i/4) of byte 8 + i%4.
static int q3_k_scale(const uint8_t *s, int i) {
    int lo = i < 8 ? s[i] & 15 : s[i - 8] >> 4;
    return (lo | (s[8 + i % 4] >> (2 * (i / 4)) & 3) << 4) - 32;
}
static void q3_k_to(float *y, const uint8_t *src, size_t n) {
    for (size_t b = 0; b < n / 256; b++, src += 110) {
        float d = fg_fp16_to_f32(u16_at(src + 108));
        for (int i = 0; i < 16; i++) {
            int h = i / 8, s = (i % 8) / 2, o = 16 * (i % 2);
            const uint8_t *q = src + 32 + 32 * h + o, *hm = src + o;
            float dl = d * (float)q3_k_scale(src + 96, i);
            for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l] >> (2 * s) & 3) - (hm[l] >> (4 * h + s) & 1 ? 0 : 4));
        }
    }
}
// IQ4_NL (18 bytes per 32 values): fp16 d, then 16 bytes of 4-bit indices into a fixed non-linear
// table (low nibbles: values 0..15, high: 16..31): x = d * table[index].
static void iq4_nl_to(float *y, const uint8_t *src, size_t n) {
    static const int8_t KV[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    for (size_t b = 0; b < n / 32; b++, src += 18, y += 32) {
        float d = fg_fp16_to_f32(u16_at(src));
        for (int j = 0; j < 16; j++) { y[j] = d * (float)KV[src[2 + j] & 15]; y[j + 16] = d * (float)KV[src[2 + j] >> 4]; }
    }
}

// ---- the table -------------------------------------------------------------------------------

static const fg_dtype_traits TYPES[FG_DTYPE_COUNT] = {
    //             name       alias   safetensors  ggml blk bytes  to_f32     from_f32
    [FG_F32]     = {"f32",     "fp32", "F32",      0,  1,  4,     f32_to,    f32_from},
    [FG_BF16]    = {"bf16",    NULL,   "BF16",     30, 1,  2,     bf16_to,   bf16_from},
    [FG_Q8_0]    = {"q8_0",    "q8",   NULL,       8,  32, 34,    q8_0_to,   q8_0_from},
    [FG_F16]     = {"f16",     "fp16", "F16",      1,  1,  2,     f16_to,    f16_from},
    [FG_Q4_0]    = {"q4_0",    "q4",   NULL,       2,  32, 18,    q4_0_to,   q4_0_from},
    [FG_F8_E4M3] = {"f8_e4m3", "fp8",  "F8_E4M3",  -1, 1,  1,     e4m3_to,   NULL},
    [FG_F8_E5M2] = {"f8_e5m2", NULL,   "F8_E5M2",  -1, 1,  1,     NULL,      NULL},
    [FG_F64]     = {"f64",     NULL,   "F64",      28, 1,  8,     f64_to,    NULL},
    [FG_I8]      = {"i8",      NULL,   "I8",       24, 1,  1,     NULL,      NULL},
    [FG_U8]      = {"u8",      NULL,   "U8",       -1, 1,  1,     NULL,      NULL},
    [FG_I16]     = {"i16",     NULL,   "I16",      25, 1,  2,     NULL,      NULL},
    [FG_U16]     = {"u16",     NULL,   "U16",      -1, 1,  2,     NULL,      NULL},
    [FG_I32]     = {"i32",     NULL,   "I32",      26, 1,  4,     NULL,      NULL},
    [FG_U32]     = {"u32",     NULL,   "U32",      -1, 1,  4,     NULL,      NULL},
    [FG_I64]     = {"i64",     NULL,   "I64",      27, 1,  8,     NULL,      NULL},
    [FG_U64]     = {"u64",     NULL,   "U64",      -1, 1,  8,     NULL,      NULL},
    [FG_BOOL]    = {"bool",    NULL,   "BOOL",     -1, 1,  1,     NULL,      NULL},
    [FG_Q4_1]    = {"q4_1",    NULL,   NULL,       3,  32, 20,    q4_1_to,   NULL},
    [FG_Q5_0]    = {"q5_0",    NULL,   NULL,       6,  32, 22,    q5_0_to,   NULL},
    [FG_Q5_1]    = {"q5_1",    NULL,   NULL,       7,  32, 24,    q5_1_to,   NULL},
    [FG_Q4_K]    = {"q4_k",    NULL,   NULL,       12, 256, 144,  q4_k_to,   q4_k_from},
    [FG_Q5_K]    = {"q5_k",    NULL,   NULL,       13, 256, 176,  q5_k_to,   q5_k_from},
    [FG_Q6_K]    = {"q6_k",    NULL,   NULL,       14, 256, 210,  q6_k_to,   q6_k_from},
    [FG_Q2_K]    = {"q2_k",    NULL,   NULL,       10, 256, 84,   q2_k_to,   NULL},
    [FG_Q3_K]    = {"q3_k",    NULL,   NULL,       11, 256, 110,  q3_k_to,   NULL},
    [FG_IQ4_NL]  = {"iq4_nl",  NULL,   NULL,       20, 32,  18,   iq4_nl_to, NULL},
};

const fg_dtype_traits *fg_dtype_info(int t) { return t >= 0 && t < FG_DTYPE_COUNT ? &TYPES[t] : NULL; }
const char *fg_dtype_name(int t) { return t >= 0 && t < FG_DTYPE_COUNT ? TYPES[t].name : "?"; }

int fg_dtype_from_ggml(uint32_t id) {
    for (int t = 0; t < FG_DTYPE_COUNT; t++)
        if (TYPES[t].ggml >= 0 && (uint32_t)TYPES[t].ggml == id) return t;
    return -1;
}

int fg_dtype_from_st(const char *s, size_t len) {
    for (int t = 0; t < FG_DTYPE_COUNT; t++)
        if (TYPES[t].st && strlen(TYPES[t].st) == len && !memcmp(TYPES[t].st, s, len)) return t;
    return -1;
}

int fg_dtype_parse(const char *name, unsigned allowed, const char *what) {
    char list[160] = "";
    size_t o = 0;
    for (int t = 0; t < FG_DTYPE_COUNT; t++) {
        if (!(allowed >> t & 1)) continue;
        if (name && (!strcmp(name, TYPES[t].name) || (TYPES[t].alias && !strcmp(name, TYPES[t].alias)))) return t;
        if (o < sizeof list)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s%s%s%s", o ? ", " : "", TYPES[t].name,
                                  TYPES[t].alias ? " (" : "", TYPES[t].alias ? TYPES[t].alias : "", TYPES[t].alias ? ")" : "");
    }
    return fg_set_error("unknown %s '%s' (use %s)", what, name ? name : "", list);
}

size_t fg_qrow_bytes(int t, int cols) { return (size_t)(cols / TYPES[t].block) * (size_t)TYPES[t].block_bytes; }
void fg_quantize_row(uint8_t *dst, const float *src, int cols, int t) { TYPES[t].from_f32(dst, src, (size_t)cols); }
void fg_dequantize_row(float *dst, const uint8_t *src, int cols, int t) { TYPES[t].to_f32(dst, src, (size_t)cols); }
