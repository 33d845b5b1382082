// bench_attn.c: the batched decode step's latent attention (fg_cpu_latent_attention, src/ops/attn.c)
// against this machine's measured fp32 FMA peak and streaming read bandwidth (same run).
//
// B sequences at context T each decode one row through L layers of bench-moe's MLA dims (H = 8,
// Rkv = 128, Dr = 32, Dn = Dv = 64): per layer one call with B rows, the cache laid out as the
// batched context's (layer-major blocks of FG_KV_BLOCK positions, a sequence's blocks adjacent,
// 2 MiB-aligned for huge pages). Two cases:
//   cold: every sequence has its own cache (B * L * T rows streamed from DRAM each step, as in
//         `frugal bench --batch`);
//   hot:  every sequence reads the same cache (L * T rows, from L2/L3): the kernels' ceiling.
// FLOPs: scores (Rkv + Dr) and weighted sum (Rkv) per cached row and head, plus the absorbed
// projections (Dn + Dv) * Rkv per row and head.
//   make bench-attn    (or ./build/bench/bench_attn [B [T]])
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench/bench.h"
#include "cost/cost.h"
#include "frugal_tools.h"
#include "ops/backend.h"
#include "util.h"

enum { H = 8, DN = 64, DR = 32, DV = 64, RKV = 128, KW = RKV + DR, L = 8 };

// Best seconds per step (L calls of B rows) over reps.
static double time_step(const float *arena, size_t layer_elems, int **tab, const int *pos, int B, const float *q,
                        float *y, const float *wkvb, const fg_attn_limits *lim, void *scratch, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        for (int l = 0; l < L; l++) {
            fg_kv_pages kv = {.arena = arena, .type = FG_F32, .block = FG_KV_BLOCK, .kw = KW, .vw = 0,
                              .blk_elems = (size_t)FG_KV_BLOCK * KW, .key_off = (size_t)l * layer_elems};
            fg_attn_call a = {.n = B, .pos = pos, .tab = (const int *const *)tab, .H = H, .Hkv = H, .Dk = DN + DR, .Dv = DV,
                              .Dn = DN, .Dr = DR, .Rkv = RKV, .scale = 0.1f, .wkv_b = {FG_F32, wkvb, NULL},
                              .lim = lim, .scratch = scratch};
            fg_cpu_latent_attention(y, q, &kv, &a);
        }
        double dt = bench_now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 64, T = argc > 2 ? atoi(argv[2]) : 512;
    if (B < 2 || B > 1024 || T < 1 || T > 16384) { fprintf(stderr, "usage: bench_attn [B in 2..1024 [T in 1..16384]]\n"); return 1; }
    fg_peaks pk;
    if (fg_peaks_get(&pk, 0)) { fprintf(stderr, "bench_attn: %s\n", fg_last_error()); return 1; }
    double bw = fg_peak_mem_measure(256);
    int nblk = (T + FG_KV_BLOCK - 1) / FG_KV_BLOCK, threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    size_t layer_elems = (size_t)B * nblk * FG_KV_BLOCK * KW, huge = (size_t)2 << 20;
    size_t bytes = ((size_t)L * layer_elems * sizeof(float) + huge - 1) / huge * huge;
    float *arena = aligned_alloc(huge, bytes);
    float *wkvb = malloc(sizeof(float) * H * (DN + DV) * RKV), *q = malloc(sizeof(float) * B * H * (DN + DR));
    float *y = malloc(sizeof(float) * B * H * DV);
    int **tab = malloc(sizeof(int *) * B), **shared = malloc(sizeof(int *) * B), *pos = malloc(sizeof(int) * B);
    if (!arena || !wkvb || !q || !y || !tab || !shared || !pos) { fprintf(stderr, "bench_attn: out of memory\n"); return 1; }
#ifdef MADV_HUGEPAGE
    madvise(arena, bytes, MADV_HUGEPAGE);
#endif
    fg_rng r;
    fg_rng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)L * layer_elems; i++) arena[i] = 0.5f * fg_rng_normal(&r);
    for (int i = 0; i < H * (DN + DV) * RKV; i++) wkvb[i] = 0.05f * fg_rng_normal(&r);
    for (int i = 0; i < B * H * (DN + DR); i++) q[i] = fg_rng_normal(&r);
    for (int b = 0; b < B; b++) {
        tab[b] = malloc(sizeof(int) * nblk);
        if (!tab[b]) { fprintf(stderr, "bench_attn: out of memory\n"); return 1; }
        for (int k = 0; k < nblk; k++) tab[b][k] = b * nblk + k; // a sequence's blocks adjacent, as the context hands them out
        shared[b] = tab[0];
        pos[b] = T - 1;
    }
    fg_attn_limits lim = {.max_rows = B, .max_T = T, .threads = threads, .latent = 1, .H = H, .Dn = DN, .Dr = DR,
                          .Dv = DV, .Rkv = RKV, .wkv_b_f32 = 1};
    void *scratch = malloc(fg_cpu_attn_scratch(&lim));
    if (!scratch) { fprintf(stderr, "bench_attn: out of memory\n"); return 1; }
    double flops = 2.0 * B * L * H * ((double)T * (KW + RKV) + (double)(DN + DV) * RKV);
    printf("latent decode attention: %d sequences x context %d x %d layers (H %d, Rkv %d, Dr %d), %d threads\n", B, T, L,
           H, RKV, DR, threads);
    printf("peaks (measured): fp32 %.1f GFLOP/s, streaming read %.1f GB/s\n", pk.fp32_gflops, bw);
    printf("  %-6s %10s %10s %8s %12s %8s\n", "cache", "ms/step", "GFLOP/s", "of peak", "cache GB/s", "of bw");
    for (int hot = 0; hot < 2; hot++) {
        int reps = hot ? 30 : 10;
        time_step(arena, layer_elems, hot ? shared : tab, pos, B, q, y, wkvb, &lim, scratch, 2); // warm up
        double s = time_step(arena, layer_elems, hot ? shared : tab, pos, B, q, y, wkvb, &lim, scratch, reps);
        double gbs = (double)B * L * T * KW * sizeof(float) / s * 1e-9;
        printf("  %-6s %10.3f %10.1f %7.1f%% %12.1f %7.1f%%\n", hot ? "hot" : "cold", s * 1e3, flops / s * 1e-9,
               100 * flops / s * 1e-9 / pk.fp32_gflops, gbs, 100 * gbs / bw);
    }
    printf("(cold: every sequence its own cache, streamed from memory; hot: all share one, from L2/L3)\n");
    for (int b = 0; b < B; b++) free(tab[b]);
    free(tab); free(shared); free(pos); free(arena); free(wkvb); free(q); free(y); free(scratch);
    return 0;
}
