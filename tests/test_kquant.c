// test_kquant.c: the int8 decode products of Q8_0 and K-quant rows (ops/kquant.c).
// Oracles: (1) the fp32 dot of the row as the dtype table decodes it (bit-exact with llama.cpp's
// gguf-py, tests/test_llama_cpp.c) and of x; the int8 product may differ from it only by the
// rounding of x, so |int8 - fp32| <= sum_i |w_i| * d_x(i) / 2 (each x_i moves by at most half its
// block's step) plus float rounding; (2) the portable kernel against the AVX-512 VNNI kernel
// (same integer sums, float order only). Rows are random bytes with sane fp16 scales, so every
// bit pattern of the packed values is exercised, not only what a quantiser writes.
#include <string.h>

#include "ops/dtype.h"
#include "ops/quant.h"
#include "test.h"
#include "util.h"

// A random row of `type` over IN values: random bytes, then the fp16 scales set to small sane values.
static void random_row(uint8_t *row, int type, int IN, fg_rng *r) {
    const fg_dtype_traits *t = fg_dtype_info(type);
    size_t bb = (size_t)t->block_bytes, nb = (size_t)IN / (size_t)t->block;
    for (size_t i = 0; i < nb * bb; i++) row[i] = (uint8_t)(fg_rng_u64(r) & 255);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *blk = row + b * bb;
        uint16_t d = fg_f32_to_fp16(0.001f + 0.01f * fg_rng_uniform(r)), m = fg_f32_to_fp16(0.001f + 0.01f * fg_rng_uniform(r));
        switch (type) {
        case FG_Q8_0: memcpy(blk, &d, 2); break;
        case FG_Q4_K:
        case FG_Q5_K: memcpy(blk, &d, 2); memcpy(blk + 2, &m, 2); break;
        case FG_Q6_K: memcpy(blk + 208, &d, 2); break;
        }
    }
}

int main(void) {
    static const int types[] = {FG_Q8_0, FG_Q4_K, FG_Q5_K, FG_Q6_K};
    static const int widths[] = {96, 160, 256, 512, 768, 2048, 4864}; // odd Q8_0 block counts: the kernels' tails
    fg_rng r;
    fg_rng_seed(&r, 7);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
            int type = types[ti], IN = widths[wi], OUT = 13;
            if (IN % fg_xq_block(type)) continue;
            size_t rb = fg_qrow_bytes(type, IN);
            uint8_t *w = malloc(rb * OUT), *buf = aligned_alloc(64, fg_xq_bytes(type, IN));
            float *x = malloc(sizeof(float) * IN), *row = malloc(sizeof(float) * IN), *bias = malloc(sizeof(float) * OUT);
            float *fast = malloc(sizeof(float) * OUT), *fast2 = malloc(sizeof(float) * OUT), *ref = malloc(sizeof(float) * OUT);
            for (int o = 0; o < OUT; o++) { random_row(w + (size_t)o * rb, type, IN, &r); bias[o] = fg_rng_normal(&r); }
            for (int i = 0; i < IN; i++) x[i] = fg_rng_normal(&r) * (i % 97 == 0 ? 8.0f : 1.0f); // some outliers
            fg_xq xq;
            fg_xq_view(&xq, buf, type, IN);
            fg_xq_quantize(&xq, x);
            fg_xq_fast = 1;
            fg_xq_dot_rows(fast, &xq, w, bias, 0, OUT);
            fg_xq_fast = 2; // the AVX2 kernels (the same as 1 on a CPU without VNNI)
            fg_xq_dot_rows(fast2, &xq, w, bias, 0, OUT);
            fg_xq_fast = 0;
            fg_xq_dot_rows(ref, &xq, w, bias, 0, OUT);
            fg_xq_fast = 1;
            int ab = fg_xq_block(type);
            double worst_bound = 0, worst_kern = 0;
            for (int o = 0; o < OUT; o++) {
                fg_dequantize_row(row, w + (size_t)o * rb, IN, type);
                double exact = bias[o], bound = 0, mag = fabs(bias[o]);
                for (int i = 0; i < IN; i++) {
                    exact += (double)row[i] * x[i];
                    bound += fabs(row[i]) * xq.d[i / ab] * 0.5;
                    mag += fabs((double)row[i] * x[i]);
                }
                double tol = bound + 1e-5 * mag;
                CHECK_MSG(fabs(ref[o] - exact) <= tol, "%s IN %d row %d: reference %.6g, fp32 %.6g, bound %.3g",
                          fg_dtype_name(type), IN, o, ref[o], exact, tol);
                CHECK_MSG(fabs(fast[o] - ref[o]) <= 1e-5 * mag, "%s IN %d row %d: fast %.7g, reference %.7g",
                          fg_dtype_name(type), IN, o, fast[o], ref[o]);
                CHECK_MSG(fabs(fast2[o] - ref[o]) <= 1e-5 * mag, "%s IN %d row %d: AVX2 %.7g, reference %.7g",
                          fg_dtype_name(type), IN, o, fast2[o], ref[o]);
                worst_bound = fmax(worst_bound, fabs(ref[o] - exact) / tol);
                worst_kern = fmax(worst_kern, fmax(fabs(fast[o] - ref[o]), fabs(fast2[o] - ref[o])) / mag);
            }
            printf("%-5s IN %5d: |int8 - fp32| at %.0f%% of the rounding bound; fast (VNNI or AVX2) vs reference %.1e of sum|w x|\n",
                   fg_dtype_name(type), IN, 100 * worst_bound, worst_kern);
            free(w); free(buf); free(x); free(row); free(bias); free(fast); free(fast2); free(ref);
        }
    return TEST_DONE();
}
