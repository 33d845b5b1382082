// test_gemm.c: the packed GEMM (src/ops/gemm.c) against a double-precision reference computed
// here from the definition, for every transpose combination, accumulate/overwrite, bias, shapes
// with tails in every dimension (M, N, K not multiples of the 8 x 32 tile or the 256 block), in
// fp32 and bf16, with the fast (AVX-512 / AVX512-BF16) kernels and the portable ones, and with
// quantised B rows (bf16, Q8_0) as inference uses them.
//
// Error measure per element: |c - ref| / sum_k |a_ik b_kj| (the scale of the rounding error of any
// summation order). fp32: at most 2e-6 times sqrt-ish growth; we allow K * 2^-24 * 4. bf16 rounds
// the inputs, so the reference uses the same rounded inputs and the bound is the fp32 one.
#include <stdint.h>
#include <string.h>

#include "infer/quant.h"
#include "ops/gemm.h"
#include "test.h"
#include "util.h"

static float bf16r(float f) { // round to bf16 and back (nearest even)
    uint32_t x;
    memcpy(&x, &f, 4);
    x = (x + 0x7fff + ((x >> 16) & 1)) & 0xffff0000u;
    memcpy(&f, &x, 4);
    return f;
}

static double worst; // largest scaled error seen in the current group

static void check_one(int ta, int tb, int M, int N, int K, int acc, int use_bias, int prec, fg_rng *r) {
    long lda = ta ? M + 3 : K + 5, ldb = tb ? K + 2 : N + 1, ldc = N + 7; // padded leading dimensions
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb), *C = malloc(sizeof(float) * nc);
    float *C0 = malloc(sizeof(float) * nc), *bias = malloc(sizeof(float) * N);
    for (size_t i = 0; i < na; i++) A[i] = fg_rng_normal(r);
    for (size_t i = 0; i < nb; i++) B[i] = fg_rng_normal(r);
    for (size_t i = 0; i < nc; i++) C0[i] = C[i] = fg_rng_normal(r);
    for (int j = 0; j < N; j++) bias[j] = fg_rng_normal(r);
    fg_gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc, use_bias ? bias : NULL, prec);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(long)k * lda + i] : A[(long)i * lda + k];
                double b = tb ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                if (prec == FG_GEMM_BF16) { a = bf16r((float)a); b = bf16r((float)b); }
                s += a * b;
                mag += fabs(a * b);
            }
            double ref = acc ? C0[(long)i * ldc + j] + s : s + (use_bias ? bias[j] : 0.0);
            double scale = mag + fabs(acc ? C0[(long)i * ldc + j] : use_bias ? bias[j] : 0.0) + 1e-30;
            double e = fabs(C[(long)i * ldc + j] - ref) / scale;
            if (e > worst) worst = e;
            if (e > 4.0 * (K + 2) * 0x1p-24) {
                CHECK_MSG(0, "ta=%d tb=%d M=%d N=%d K=%d acc=%d bias=%d prec=%d: C[%d][%d]=%g want %g", ta, tb, M, N,
                          K, acc, use_bias, prec, i, j, C[(long)i * ldc + j], ref);
                i = M; break;
            }
        }
    }
    // Padding between rows of C is never written.
    for (int i = 0; i < M; i++)
        for (long j = N; j < ldc; j++) CHECK(C[i * ldc + j] == C0[i * ldc + j]);
    free(A); free(B); free(C); free(C0); free(bias);
}

static void check_qb(int M, int N, int K, int btype, int prec, fg_rng *r) {
    float *A = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * N * K), *C = malloc(sizeof(float) * M * N);
    float *Wd = malloc(sizeof(float) * N * K), *bias = malloc(sizeof(float) * N);
    for (int i = 0; i < M * K; i++) A[i] = fg_rng_normal(r);
    for (int i = 0; i < N * K; i++) W[i] = fg_rng_normal(r);
    for (int j = 0; j < N; j++) bias[j] = fg_rng_normal(r);
    size_t rb = fg_qrow_bytes(btype, K);
    uint8_t *Q = malloc(rb * N);
    for (int j = 0; j < N; j++) {
        if (btype == FG_GEMM_B_F32) { memcpy(Q + rb * j, W + (size_t)j * K, rb); memcpy(Wd + (size_t)j * K, W + (size_t)j * K, rb); continue; }
        fg_quantize_row(Q + rb * j, W + (size_t)j * K, K, btype);
        fg_dequantize_row(Wd + (size_t)j * K, Q + rb * j, K, btype);
    }
    fg_gemm_qb(M, N, K, A, K, Q, (long)rb, btype, C, N, bias, prec);
    double e = 0;
    for (int i = 0; i < M && e <= 4.0 * (K + 2) * 0x1p-24; i++)
        for (int j = 0; j < N; j++) {
            double s = bias[j], mag = fabs(bias[j]);
            for (int k = 0; k < K; k++) {
                double a = A[(size_t)i * K + k], b = Wd[(size_t)j * K + k];
                if (prec == FG_GEMM_BF16) { a = bf16r((float)a); b = bf16r((float)b); }
                s += a * b;
                mag += fabs(a * b);
            }
            e = fmax(e, fabs(C[(size_t)i * N + j] - s) / mag);
        }
    CHECK_MSG(e <= 4.0 * (K + 2) * 0x1p-24, "qb M=%d N=%d K=%d btype=%d prec=%d: scaled error %g", M, N, K, btype, prec, e);
    free(A); free(W); free(C); free(Wd); free(bias); free(Q);
}

int main(void) {
    fg_rng r;
    fg_rng_seed(&r, 7);
    static const int Ms[] = {1, 7, 8, 9, 65, 100}, Ns[] = {1, 16, 31, 33, 129, 150}, Ks[] = {1, 2, 3, 255, 256, 257, 520};
    for (int pass = 0; pass < 2; pass++) {
        int old = fg_gemm_force_generic(pass);
        for (int prec = 0; prec < 2; prec++) {
            worst = 0;
            int cases = 0;
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
                        for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
                            for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) {
                                // all shapes for (0,1) (the forward); a spread for the others
                                if ((ta || !tb) && (a + b + c) % 3) continue;
                                int acc = (int)((a + c) & 1), bias = !acc && (b & 1);
                                check_one(ta, tb, Ms[a], Ns[b], Ks[c], acc, bias, prec, &r);
                                cases++;
                            }
            printf("gemm %-12s %-4s: %d cases, worst scaled error %.2e\n", fg_gemm_kernel_name(prec),
                   prec ? "bf16" : "f32", cases, worst);
        }
        for (int prec = 0; prec < 2; prec++)
            for (int bt = 0; bt < 3; bt++) {
                check_qb(37, 70, 96, bt, prec, &r);
                check_qb(300, 33, 512, bt, prec, &r);
            }
        fg_gemm_force_generic(old);
    }
    // A big product crosses many blocks and threads.
    check_one(0, 1, 515, 300, 1030, 0, 1, FG_GEMM_F32, &r);
    check_one(1, 0, 300, 260, 2000, 1, 0, FG_GEMM_F32, &r);
    check_one(0, 0, 260, 520, 300, 1, 0, FG_GEMM_BF16, &r);
    return TEST_DONE();
}
