// bench_train.c: training-step throughput of frugal's CPU kernels (`make bench`).
//
// For each config it times full training steps (forward, backward, AdamW) and reports tokens/s,
// achieved GFLOP/s and the fraction of this machine's fp32 peak, measured in the same run with a
// register-only FMA loop on every thread. When python3 with torch is present, the PyTorch
// reference (tests/ref/ref.py bench) runs the same config, batch and sequence length as the peer
// and the ratio is printed. Speed targets live here, never in the unit tests.
//
// FLOP convention (stated in every report): 6 * N_matmul per token, where N_matmul counts the
// weights a token multiplies (active experts only, the head included, the embedding lookup not),
// plus causal attention 6 * L * (T+1)/2 * H * (Dqk + Dv) per token (both attention matmuls,
// forward and backward).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cost/cost.h"
#include "data/task.h"
#include "model/model.h"
#include "train/optim.h"

// fp32 peak: the library's FMA microbenchmark (src/cost/peaks.c), measured in this run.
// FG_BENCH_CPUTIME=1: step time by process CPU seconds per thread instead of wall time (for tuning
// while other jobs share the machine; wall time is the honest figure otherwise).
static double now(void) {
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("FG_BENCH_CPUTIME") && atoi(getenv("FG_BENCH_CPUTIME"));
    if (!cpu) return fg_now();
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    return (double)clock() / CLOCKS_PER_SEC / threads;
}

static double measure_peak_gflops(void) { return fg_peak_fp32_measure(0.5); }

static double flops_per_token(const fg_config *c, int T) {
    int64_t total, active;
    fg_config_param_counts(c, &total, &active);
    double n = (double)active - (double)c->vocab_size * c->hidden_size * (c->tie_word_embeddings ? 0 : 1);
    if (c->tie_word_embeddings) n += 0; // tied: the head is the embedding matrix, counted once
    int dqk = c->attn_type == FG_ATTN_MLA ? c->qk_nope_head_dim + c->qk_rope_head_dim : c->head_dim;
    int dv = c->attn_type == FG_ATTN_MLA ? c->v_head_dim : c->head_dim;
    return 6.0 * n + 6.0 * c->num_hidden_layers * ((T + 1) / 2.0) * c->num_attention_heads * (dqk + dv);
}

static double torch_peer(const fg_config *c, const char *name, int B, int T) {
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) return 0;
    char path[256], cmd[768];
    snprintf(path, sizeof path, "build/bench/%s.json", name);
    FILE *f = fopen(path, "w");
    char *json = fg_config_to_json(c);
    if (!f || !json) { if (f) fclose(f); free(json); return 0; }
    fputs(json, f);
    fclose(f);
    free(json);
    // Debian's OpenBLAS misdetects some AVX-512 CPUs; SkylakeX is the fair kernel choice there.
    snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 tests/ref/ref.py bench --config %s "
             "--batch %d --seq %d --steps 1", path, B, T);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[512] = "";
    double tps = 0;
    while (fgets(line, sizeof line, p)) {
        char *k = strstr(line, "\"tok_per_s\":");
        if (k) tps = atof(k + 12);
    }
    pclose(p);
    return tps;
}

static void bench_config(const char *name, int B, int T, int steps, double peak, int peer) {
    fg_config c;
    fg_config_preset(&c, name);
    fg_model *m = fg_model_create(&c);
    fg_adamw opt;
    if (!m || fg_adamw_init_for(&opt, m)) { fprintf(stderr, "%s: %s\n", name, fg_last_error()); exit(1); }
    fg_model_init_weights(m, 1);
    fg_adamw_opts ao = {0.9f, 0.95f, 1e-8f, 0.1f};
    int32_t *in = malloc(sizeof(int32_t) * B * T), *tg = malloc(sizeof(int32_t) * B * T);
    fg_rng r;
    fg_rng_seed(&r, 1);
    for (int i = 0; i < B * T; i++) { in[i] = (int32_t)fg_rng_below(&r, c.vocab_size); tg[i] = (int32_t)fg_rng_below(&r, c.vocab_size); }
    double best = 1e30;
    for (int s = 0; s <= steps; s++) {
        double t0 = now();
        fg_model_forward(m, in, tg, B, T, NULL);
        fg_model_zero_grad(m);
        fg_model_backward(m, 1.0f);
        fg_adamw_step(&opt, m, 1e-4f, &ao);
        double dt = now() - t0;
        if (s && dt < best) best = dt; // step 0 warms up (allocations, page faults)
    }
    double tps = B * T / best, gf = tps * flops_per_token(&c, T) / 1e9;
    printf("%-10s B=%-3d T=%-4d  %8.1f ms/step  %9.0f tok/s  %6.1f GFLOP/s  %5.1f%% of peak", name, B, T,
           best * 1e3, tps, gf, 100 * gf / peak);
    fflush(stdout);
    double ptps = peer ? torch_peer(&c, name, B, T) : 0;
    if (ptps > 0) printf("  | PyTorch %8.0f tok/s  frugal/PyTorch %.2fx\n", ptps, tps / ptps);
    else if (peer) printf("  | PyTorch peer not available (apt install python3-torch)\n");
    else printf("  | PyTorch peer skipped (--full runs it; several minutes)\n");
    free(in); free(tg);
    fg_adamw_free(&opt);
    fg_model_free(m);
}

int main(int argc, char **argv) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    double peak = measure_peak_gflops();
    printf("frugal bench: training step = forward + backward + AdamW, fp32, %d threads\n", threads);
    printf("machine fp32 FMA peak (measured): %.1f GFLOP/s\n", peak);
    printf("FLOPs/token = 6 * active matmul weights + 6 * L * (T+1)/2 * H * (Dqk+Dv) (causal attention)\n\n");
    int quick = 0, full = 0;
    for (int i = 1; i < argc; i++) { quick |= !strcmp(argv[i], "--quick"); full |= !strcmp(argv[i], "--full"); }
    printf("peer: tests/ref/ref.py in eager PyTorch, the correctness reference (clear, not tuned: per-expert\n"
           "Python loops), so the ratio measures frugal against a straightforward framework implementation.\n\n");
    bench_config("demo", 32, FG_TASK_LONGEST, 5, peak, 1);
    if (!quick) bench_config("bench-moe", 8, 512, 2, peak, full);
    return 0;
}
