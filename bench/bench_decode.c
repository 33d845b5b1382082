// bench_decode.c: the decode matrix-vector kernel (fg_qmatvec) against this machine's streaming
// read bandwidth, both measured in the same run (so a busy machine slows both): for each weight
// type, a matrix of about --mb MiB (default 1024, beyond every cache) times a vector, repeated;
// prints GB/s of weights read and the fraction of the streaming bandwidth (fg_peak_mem_measure).
//   make build/bench/bench_decode && OMP_NUM_THREADS=2 ./build/bench/bench_decode [MB]
#include <stdlib.h>
#include <string.h>

#include "cost/cost.h"
#include "ops/dtype.h"
#include "ops/quant.h"
#include "util.h"

int main(int argc, char **argv) {
    int mb = argc > 1 ? atoi(argv[1]) : 1024, IN = 4096;
    double peak = fg_peak_mem_measure(256);
    printf("streaming read bandwidth (fg_peak_mem_measure, this run): %.2f GB/s\n", peak);
    static const int types[] = {FG_F32, FG_BF16, FG_Q8_0, FG_Q4_K, FG_Q6_K};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        int type = types[ti];
        size_t rb = fg_qrow_bytes(type, IN);
        int OUT = (int)((size_t)mb * 1048576 / rb);
        uint8_t *w = aligned_alloc(64, rb * OUT);
        float *x = malloc(sizeof(float) * IN), *out = malloc(sizeof(float) * OUT), row[4096];
        if (!w || !x || !out) { fprintf(stderr, "out of memory\n"); return 1; }
        fg_rng r;
        fg_rng_seed(&r, 1);
        for (int i = 0; i < IN; i++) { x[i] = fg_rng_normal(&r); row[i] = fg_rng_normal(&r); }
#pragma omp parallel for schedule(static)
        for (int o = 0; o < OUT; o++) {
            if (type == FG_F32) memcpy(w + (size_t)o * rb, row, rb);
            else fg_quantize_row(w + (size_t)o * rb, row, IN, type);
        }
        double best = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = fg_now();
            fg_qmatvec(out, x, w, type, NULL, IN, OUT);
            double dt = fg_now() - t0;
            best = dt < best ? dt : best;
        }
        double gbs = (double)rb * OUT / best / 1e9;
        printf("%-5s %5.0f MB: %.2f ms, %.2f GB/s = %.1f%% of streaming bandwidth\n",
               fg_dtype_name(type), (double)rb * OUT / 1e6, best * 1e3,
               gbs, 100 * gbs / peak);
        free(w); free(x); free(out);
    }
    return 0;
}
