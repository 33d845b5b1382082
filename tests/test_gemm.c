// test_gemm.c: the packed GEMM (src/ops/gemm.c) against a double-precision reference computed
// here from the definition, for every transpose combination, accumulate/overwrite, bias, shapes
// with tails in every dimension (M, N, K not multiples of the 8 x 32 tile or the 256 block), in
// fp32 and bf16, with the fast (AVX-512 / AVX512-BF16) kernels and the portable ones, and with
// quantised B rows (bf16, Q8_0) as inference uses them. The AMX tile kernel runs every bf16 case
// on the C emulator of the tile instructions (src/ops/amx.c) on any machine, and on the hardware
// where there is AMX; the emulator's TDPBF16PS is checked on numbers worked out by hand, and
// against the instruction bit for bit on an AMX CPU.
//
// Error measure per element: |c - ref| / sum_k |a_ik b_kj| (the scale of the rounding error of any
// summation order). fp32: at most 2e-6 times sqrt-ish growth; we allow K * 2^-24 * 4. bf16 rounds
// the inputs, so the reference uses the same rounded inputs and the bound is the fp32 one.
#include <stdint.h>
#include <string.h>

#include "ops/quant.h"
#include "ops/amx.h"
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
                if (prec == FG_BF16) { a = bf16r((float)a); b = bf16r((float)b); }
                s += a * b;
                mag += fabs(a * b);
            }
            double ref = acc ? C0[(long)i * ldc + j] + s : s + (use_bias ? bias[j] : 0.0);
            double scale = mag + fabs(acc ? C0[(long)i * ldc + j] : use_bias ? bias[j] : 0.0) + 1e-30;
            double e = fabs(C[(long)i * ldc + j] - ref) / scale;
            if (e > worst) worst = e;
            if (!(e <= 4.0 * (K + 2) * 0x1p-24)) { // NaN fails too
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
        if (btype == FG_F32) { memcpy(Q + rb * j, W + (size_t)j * K, rb); memcpy(Wd + (size_t)j * K, W + (size_t)j * K, rb); continue; }
        fg_quantize_row(Q + rb * j, W + (size_t)j * K, K, btype);
        fg_dequantize_row(Wd + (size_t)j * K, Q + rb * j, K, btype);
    }
    fg_gemm_qb(M, N, K, A, K, Q, (long)rb, btype, C, N, bias, prec);
    // The same product on weights packed once (fg_gemm_pack): the same panels, so the same bits;
    // and after switching kernels (packed under others), the fallback still gives the same bits.
    fg_gemm_packed *P = fg_gemm_pack(N, K, Q, (long)rb, btype, prec);
    float *C2 = malloc(sizeof(float) * M * N);
    CHECK(P != NULL && fg_gemm_packed_bytes(P) >= (size_t)N * K * (prec == FG_BF16 ? 2 : 4));
    if (P) {
        fg_gemm_qb_packed(M, A, K, P, C2, N, bias);
        CHECK_MSG(!memcmp(C, C2, sizeof(float) * M * N), "packed qb M=%d N=%d K=%d btype=%d prec=%d differs", M, N, K, btype, prec);
        int old = fg_gemm_amx_emulate(1); // other kernels than the packing's (for bf16)
        fg_gemm_qb(M, N, K, A, K, Q, (long)rb, btype, C, N, bias, prec);
        fg_gemm_qb_packed(M, A, K, P, C2, N, bias);
        fg_gemm_amx_emulate(old);
        CHECK_MSG(!memcmp(C, C2, sizeof(float) * M * N), "packed qb under other kernels M=%d N=%d K=%d differs", M, N, K);
    }
    fg_gemm_packed_free(P);
    free(C2);
    double e = 0;
    for (int i = 0; i < M && e <= 4.0 * (K + 2) * 0x1p-24; i++)
        for (int j = 0; j < N; j++) {
            double s = bias[j], mag = fabs(bias[j]);
            for (int k = 0; k < K; k++) {
                double a = A[(size_t)i * K + k], b = Wd[(size_t)j * K + k];
                if (prec == FG_BF16) { a = bf16r((float)a); b = bf16r((float)b); }
                s += a * b;
                mag += fabs(a * b);
            }
            double ej = fabs(C[(size_t)i * N + j] - s) / mag;
            e = ej <= e ? e : isnan(ej) ? INFINITY : ej; // fmax would drop a NaN
        }
    CHECK_MSG(e <= 4.0 * (K + 2) * 0x1p-24, "qb M=%d N=%d K=%d btype=%d prec=%d: scaled error %g", M, N, K, btype, prec, e);
    free(A); free(W); free(C); free(Wd); free(bias); free(Q);
}

// ---- one TDPBF16PS, emulated (and real, on an AMX CPU) -------------------------------------

static uint16_t bf16_of(float f) { // f is exactly a bf16 value here
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)(x >> 16);
}
static uint32_t pair_bits(uint16_t lo, uint16_t hi) { return lo | (uint32_t)hi << 16; } // element 2k low
static uint32_t pair(float lo, float hi) { return pair_bits(bf16_of(lo), bf16_of(hi)); }

// hw = 0: the emulator; 1: the instruction. Numbers worked out by hand, independent of gemm.c.
static void check_tile_dp(int hw) {
    // C (2 x 2) += A (2 x 4) @ B (4 x 2), small integers: exact in bf16 and fp32 in any order.
    static const float A[2][4] = {{1, 2, 3, 4}, {5, 6, 7, 8}}, B[4][2] = {{1, 2}, {3, 4}, {5, 6}, {7, 8}};
    float C[2][2] = {{0.5f, -1}, {2, 0}};
    // C[0][0] = 0.5 + 1*1 + 2*3 + 3*5 + 4*7, C[0][1] = -1 + 1*2 + 2*4 + 3*6 + 4*8,
    // C[1][0] = 2 + 5*1 + 6*3 + 7*5 + 8*7, C[1][1] = 0 + 5*2 + 6*4 + 7*6 + 8*8
    static const float want[2][2] = {{50.5f, 59}, {116, 140}};
    uint32_t a[2][2], b[2][2];
    for (int m = 0; m < 2; m++)
        for (int k = 0; k < 2; k++) a[m][k] = pair(A[m][2 * k], A[m][2 * k + 1]);
    for (int k = 0; k < 2; k++)
        for (int n = 0; n < 2; n++) b[k][n] = pair(B[2 * k][n], B[2 * k + 1][n]);
    CHECK(fg_amx_dp_once(&C[0][0], &a[0][0], &b[0][0], 2, 2, 2, hw) == 0);
    for (int m = 0; m < 2; m++)
        for (int n = 0; n < 2; n++) CHECK_MSG(C[m][n] == want[m][n], "hw=%d C[%d][%d] = %g, want %g", hw, m, n, C[m][n], want[m][n]);

    // Rounding order (Intel SDM): even and odd products go into separate fp32 sums from 0, whose
    // sum is then added to C. 1 + (2^24 - 2^24) = 1 in both columns; adding the products into C one
    // at a time would round 1 + 2^24 away (0 in column 0 even first, in column 1 odd first).
    float c2[2] = {1, 1};
    uint32_t a2 = pair(1, 1), b2[2] = {pair(0x1p24f, -0x1p24f), pair(-0x1p24f, 0x1p24f)};
    CHECK(fg_amx_dp_once(c2, &a2, b2, 1, 2, 1, hw) == 0);
    CHECK_MSG(c2[0] == 1 && c2[1] == 1, "hw=%d order: %g %g, want 1 1", hw, c2[0], c2[1]);

    // DAZ: a denormal bf16 input (0x0001, about 9e-41) reads as 0, so 0 and not 9e-41 * 2^100.
    // FTZ: 2^-70 * 2^-70 = 2^-140 (an fp32 denormal) is flushed to 0. A denormal C comes out 0.
    float c3[3] = {0, 0, 0x1p-140f};
    uint32_t a3 = pair_bits(0x0001, 0), b3[3] = {pair(0x1p100f, 0), 0, 0};
    CHECK(fg_amx_dp_once(c3, &a3, b3, 1, 3, 1, hw) == 0);
    uint32_t a4 = pair(0x1p-70f, 0);
    uint32_t b4[3] = {0, pair(0x1p-70f, 0), 0};
    CHECK(fg_amx_dp_once(c3, &a4, b4, 1, 3, 1, hw) == 0);
    CHECK_MSG(c3[0] == 0 && c3[1] == 0 && c3[2] == 0, "hw=%d DAZ/FTZ: %g %g %g, want 0 0 0", hw, c3[0], c3[1], c3[2]);
}

// On an AMX CPU: the emulator and the instruction agree bit for bit on full 16 x 16 x 32 tiles.
static void check_tile_dp_bits(fg_rng *r) {
    static float c_hw[16 * 16], c_emu[16 * 16];
    static uint32_t a[16 * 16], b[16 * 16];
    for (int rep = 0; rep < 20; rep++) {
        for (int i = 0; i < 256; i++) {
            c_hw[i] = c_emu[i] = fg_rng_normal(r) * (rep & 1 ? 1e3f : 1.0f);
            a[i] = pair(bf16r(fg_rng_normal(r)), bf16r(fg_rng_normal(r)));
            b[i] = pair(bf16r(fg_rng_normal(r)), bf16r(fg_rng_normal(r)));
        }
        CHECK(fg_amx_dp_once(c_hw, a, b, 16, 16, 16, 1) == 0);
        CHECK(fg_amx_dp_once(c_emu, a, b, 16, 16, 16, 0) == 0);
        CHECK_MSG(!memcmp(c_hw, c_emu, sizeof c_hw), "the AMX emulator differs from this CPU's TDPBF16PS (rep %d)", rep);
    }
}

// The K padding of the packed operands is zero on both sides: Inf left in the packing buffers by
// an earlier product must not come back as Inf * 0 = NaN (the buffers are reused per thread).
static void check_stale_padding(fg_rng *r) {
    int n = 64;
    float *X = malloc(sizeof(float) * n * n), *C = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) X[i] = INFINITY;
    fg_gemm(0, 1, n, n, n, X, n, X, n, C, n, 0, NULL, FG_BF16);
    free(X); free(C);
    check_one(0, 1, n, n, 33, 0, 0, FG_BF16, r);
}

// ---- the GEMM through each kernel ------------------------------------------------------------

static void run_cases(int do_f32, fg_rng *r) {
    static const int Ms[] = {1, 7, 8, 9, 65, 100}, Ns[] = {1, 16, 31, 33, 129, 150}, Ks[] = {1, 2, 3, 255, 256, 257, 520};
    for (int prec = do_f32 ? 0 : 1; prec < 2; prec++) {
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
                            check_one(ta, tb, Ms[a], Ns[b], Ks[c], acc, bias, prec, r);
                            cases++;
                        }
        printf("gemm %-17s %-4s: %d cases, worst scaled error %.2e\n", fg_gemm_kernel_name(prec), prec ? "bf16" : "f32",
               cases, worst);
    }
    for (int prec = do_f32 ? 0 : 1; prec < 2; prec++)
        for (int bt = 0; bt < 3; bt++) {
            check_qb(37, 70, 96, bt, prec, r);
            check_qb(300, 33, 512, bt, prec, r);
            check_qb(20, 45, 1056, bt, prec, r); // two blocks of K, the second 32 long
            // 9..16 rows on packed fp32 weights: the 16-row kernel (N and K tails, two K blocks)
            check_qb(9, 70, 96, bt, prec, r);
            check_qb(12, 33, bt == FG_Q8_0 ? 288 : 257, bt, prec, r); // Q8_0 rows: whole blocks of 32
            check_qb(16, 45, 1056, bt, prec, r);
            check_qb(16, 16, bt == FG_Q8_0 ? 32 : 1, bt, prec, r);
        }
    // K beyond the 1024 block: a second block of 6 (padding within a tile step), 3 blocks ending odd
    check_one(0, 1, 40, 50, 1030, 0, 1, FG_BF16, r);
    check_one(1, 0, 33, 70, 2051, 1, 0, FG_BF16, r);
    check_stale_padding(r);
}

int main(void) {
    fg_rng r;
    fg_rng_seed(&r, 7);
    const char *why;
    int amx_hw = fg_amx_usable(&why);
    check_tile_dp(0);
    printf("amx emulator: tdpbf16ps hand-computed example, SDM rounding order, DAZ, FTZ checked\n");
    if (amx_hw) {
        check_tile_dp(1);
        check_tile_dp_bits(&r);
        printf("amx hardware: the same checks, and the emulator matches tdpbf16ps bit for bit\n");
    } else {
        printf("amx hardware: skipped: no AMX (%s)\n", why);
    }

    // The default (fast) kernels, the portable ones, the AMX kernel on the emulator, and on an AMX
    // CPU the AVX512-BF16 kernel as well (the default there is AMX).
    run_cases(1, &r);
    int old = fg_gemm_force_generic(1);
    run_cases(1, &r);
    fg_gemm_force_generic(old);
    if (strcmp(fg_gemm_kernel_name(FG_F32), "avx512") == 0) { // an AVX-512 CPU runs the AVX2 kernels too
        old = fg_gemm_force_avx2(1);
        if (strcmp(fg_gemm_kernel_name(FG_F32), "avx2") == 0) run_cases(1, &r);
        fg_gemm_force_avx2(old);
    }
    old = fg_gemm_amx_emulate(1);
    run_cases(0, &r);
    fg_gemm_amx_emulate(-1);
    if (amx_hw) run_cases(0, &r);
    fg_gemm_amx_emulate(old);
    if (!amx_hw) printf("gemm amx-bf16 (hardware): skipped: no AMX\n");

    // A big product crosses many blocks and threads.
    check_one(0, 1, 515, 300, 1030, 0, 1, FG_F32, &r);
    check_one(1, 0, 300, 260, 2000, 1, 0, FG_F32, &r);
    check_one(0, 0, 260, 520, 300, 1, 0, FG_BF16, &r);
    old = fg_gemm_amx_emulate(1);
    check_one(0, 0, 260, 520, 300, 1, 0, FG_BF16, &r);
    fg_gemm_amx_emulate(old);
    return TEST_DONE();
}
