// bench_gemm.c: the packed GEMM (src/ops/gemm.c) against this machine's measured peaks
// (`make bench-gemm`, also part of `make bench`). Reports GFLOP/s and the fraction of the fp32
// FMA peak (fp32) or the AVX512-BF16 peak (bf16) for 1024-cubed products in the three layouts
// training uses, and for the model's own shapes. FLOPs = 2*M*N*K. Best of several repetitions.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "frugal.h"
#include "frugal_tools.h"
#include "bench/bench.h"
#include "ops/gemm.h"
#include "util.h"

static double time_gemm(int ta, int tb, int M, int N, int K, int prec, const float *A, const float *B, float *C) {
    double best = 1e30, total = 0;
    for (int rep = 0; rep < 50 && (rep < 3 || total < 0.6); rep++) {
        double t0 = bench_now();
        fg_gemm(ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, C, N, 0, NULL, prec);
        double dt = bench_now() - t0;
        total += dt;
        if (rep && dt < best) best = dt;
    }
    return 2.0 * M * N * K / best / 1e9;
}

int main(int argc, char **argv) {
    fg_peaks pk;
    if (fg_peaks_get(&pk, 0)) { fprintf(stderr, "bench_gemm: %s\n", fg_last_error()); return 1; }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("gemm: %d threads; peaks (measured): fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s; kernels %s / %s\n", threads,
           pk.fp32_gflops, pk.bf16_gflops, fg_gemm_kernel_name(FG_F32), fg_gemm_kernel_name(FG_BF16));
    static const struct { const char *what; int ta, tb, M, N, K; } shapes[] = {
        {"1024^3 forward (A B^T)", 0, 1, 1024, 1024, 1024},
        {"1024^3 dinp    (A B)", 0, 0, 1024, 1024, 1024},
        {"1024^3 dweight (A^T B)", 1, 0, 1024, 1024, 1024},
        {"expert up   4096x256x512", 0, 1, 1024, 256, 512},
        {"expert down 1024x512x256", 0, 1, 1024, 512, 256},
        {"lm head 4096x4096x512", 0, 1, 4096, 4096, 512},
    };
    size_t mx = 4096 * 4096;
    float *A = malloc(sizeof(float) * mx), *B = malloc(sizeof(float) * mx), *C = malloc(sizeof(float) * mx);
    fg_rng r;
    fg_rng_seed(&r, 1);
    for (size_t i = 0; i < mx; i++) { A[i] = fg_rng_normal(&r); B[i] = fg_rng_normal(&r); }
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    if (argc == 6) { // bench_gemm M N K ta tb: one shape
        int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]), ta = atoi(argv[4]), tb = atoi(argv[5]);
        if ((size_t)M * K > mx || (size_t)N * K > mx || (size_t)M * N > mx) { fprintf(stderr, "bench_gemm: shape too large\n"); return 1; }
        double f = time_gemm(ta, tb, M, N, K, FG_F32, A, B, C), b = time_gemm(ta, tb, M, N, K, FG_BF16, A, B, C);
        printf("%dx%dx%d ta=%d tb=%d: fp32 %.1f GFLOP/s (%.1f%%), bf16 %.1f GFLOP/s (%.1f%%)\n", M, N, K, ta, tb, f,
               100 * f / pk.fp32_gflops, b, pk.bf16_gflops > 0 ? 100 * b / pk.bf16_gflops : 0.0);
        free(A); free(B); free(C);
        return 0;
    }
    printf("%-28s %10s %8s %10s %8s\n", "shape (M x N x K)", "fp32 GF/s", "% peak", "bf16 GF/s", "% peak");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes && (!quick || s < 1); s++) {
        double f = time_gemm(shapes[s].ta, shapes[s].tb, shapes[s].M, shapes[s].N, shapes[s].K, FG_F32, A, B, C);
        double b = time_gemm(shapes[s].ta, shapes[s].tb, shapes[s].M, shapes[s].N, shapes[s].K, FG_BF16, A, B, C);
        printf("%-28s %10.1f %7.1f%% %10.1f %7.1f%%\n", shapes[s].what, f, 100 * f / pk.fp32_gflops, b,
               pk.bf16_gflops > 0 ? 100 * b / pk.bf16_gflops : 0.0);
    }
    free(A); free(B); free(C);
    return 0;
}
