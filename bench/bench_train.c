// bench_train.c: training-step throughput of frugal's CPU kernels (`make bench`).
//
// For each config it times full training steps (forward, backward, AdamW) in fp32 and in bf16 mixed
// precision and reports tokens/s, achieved GFLOP/s and MFU against this machine's measured peaks
// (fg_peaks_get: fp32 FMA and AVX512-BF16 register-only loops on every thread), the 1 -> N thread
// scaling on bench-moe, and, when python3 with torch is present, the PyTorch peer
// (tests/ref/ref.py bench, fp32 and torch.autocast bf16) on the same config, batch and sequence
// length, with the ratios. Every figure is appended to build/bench/history.csv so regressions
// show. Speed targets live here, never in the unit tests.
//
// FLOP convention (stated in every report): 6 * N_matmul per token, where N_matmul counts the
// weights a token multiplies (active experts only, the head included, the embedding lookup not),
// plus causal attention 6 * L * (T+1)/2 * H * (Dqk + Dv) per token (both attention matmuls,
// forward and backward).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench/bench.h"
#include "cost/cost.h"
#include "data/task.h"
#include "model/model.h"
#include "train/optim.h"

// fp32 peak: the library's FMA microbenchmark (src/cost/peaks.c), measured in this run.

static double flops_per_token(const fg_config *c, int T) {
    int64_t total, active;
    fg_config_param_counts(c, &total, &active);
    double n = (double)active - (double)c->vocab_size * c->hidden_size * (c->tie_word_embeddings ? 0 : 1);
    if (c->tie_word_embeddings) n += 0; // tied: the head is the embedding matrix, counted once
    int dqk = c->attn_type == FG_ATTN_MLA ? c->qk_nope_head_dim + c->qk_rope_head_dim : c->head_dim;
    int dv = c->attn_type == FG_ATTN_MLA ? c->v_head_dim : c->head_dim;
    return 6.0 * n + 6.0 * c->num_hidden_layers * ((T + 1) / 2.0) * c->num_attention_heads * (dqk + dv);
}

// The PyTorch peer (tests/ref/ref.py bench): same config, batch and sequence; fp32 or bf16 autocast.
// Returns tokens/s (0 when torch is missing) and the parameter count it built in *params.
static double torch_peer(const fg_config *c, const char *name, int B, int T, int bf16, double *params) {
    *params = 0;
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
             "--batch %d --seq %d --steps 1%s", path, B, T, bf16 ? " --bf16" : "");
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[1024] = "";
    double tps = 0;
    while (fgets(line, sizeof line, p)) {
        char *k = strstr(line, "\"tok_per_s\":"), *q = strstr(line, "\"params\":");
        if (k) tps = atof(k + 12);
        if (q) *params = atof(q + 9);
    }
    pclose(p);
    return tps;
}

typedef struct { double tps, ms, gflops; } result;

static result bench_frugal(const char *name, int B, int T, int steps, int precision, int threads) {
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
#ifdef _OPENMP
    int old_threads = omp_get_max_threads();
    omp_set_num_threads(threads);
#endif
    fg_model_set_precision(m, precision);
    double best = 1e30;
    for (int s = 0; s <= steps; s++) {
        double t0 = bench_now();
        fg_model_forward(m, in, tg, B, T, NULL);
        fg_model_zero_grad(m);
        fg_model_backward(m, 1.0f);
        fg_adamw_step(&opt, m, 1e-4f, &ao);
        double dt = bench_now() - t0;
        if (s && dt < best) best = dt; // step 0 warms up (allocations, page faults)
    }
#ifdef _OPENMP
    omp_set_num_threads(old_threads);
#endif
    result res = {B * T / best, best * 1e3, 0};
    res.gflops = res.tps * flops_per_token(&c, T) / 1e9;
    free(in); free(tg);
    fg_adamw_free(&opt);
    fg_model_free(m);
    return res;
}

static FILE *csv;
static void csv_row(const char *config, const char *engine, const char *prec, int threads, int B, int T, result r,
                    double mfu) {
    if (!csv) return;
    char when[32];
    time_t t = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    fprintf(csv, "%s,%s,%s,%s,%d,%d,%d,%.1f,%.2f,%.2f,%.4f\n", when, config, engine, prec, threads, B, T, r.tps, r.ms,
            r.gflops, mfu);
}

static void bench_config(const char *name, int B, int T, int steps, const fg_peaks *pk, int threads, int peer,
                         int scaling) {
    fg_config c;
    fg_config_preset(&c, name);
    int64_t total, active;
    fg_config_param_counts(&c, &total, &active);
    printf("%s: %.2fM parameters (%.2fM active), B=%d T=%d, %d threads\n", name, total / 1e6, active / 1e6, B, T, threads);
    result f32 = bench_frugal(name, B, T, steps, FG_F32, threads);
    result b16 = bench_frugal(name, B, T, steps, FG_BF16, threads);
    double mf = f32.gflops / pk->fp32_gflops, mb = pk->bf16_gflops > 0 ? b16.gflops / pk->bf16_gflops : 0;
    printf("  frugal  fp32           %9.0f tok/s %9.1f ms/step %7.1f GFLOP/s  MFU %5.1f%% of fp32 peak\n", f32.tps, f32.ms,
           f32.gflops, 100 * mf);
    printf("  frugal  bf16 mixed     %9.0f tok/s %9.1f ms/step %7.1f GFLOP/s  MFU %5.1f%% of bf16 peak (%.1f%% of fp32)\n",
           b16.tps, b16.ms, b16.gflops, 100 * mb, 100 * b16.gflops / pk->fp32_gflops);
    csv_row(name, "frugal", "fp32", threads, B, T, f32, mf);
    csv_row(name, "frugal", "bf16", threads, B, T, b16, mb);
    if (scaling && threads > 1) {
        result one = bench_frugal(name, B, T, steps, FG_F32, 1);
        printf("  frugal  fp32 1 thread  %9.0f tok/s  -> %d-thread scaling %.2fx\n", one.tps, threads, f32.tps / one.tps);
        csv_row(name, "frugal", "fp32", 1, B, T, one, one.gflops / pk->fp32_gflops);
    }
    fflush(stdout);
    if (!peer) { printf("  PyTorch peer skipped (--quick)\n\n"); return; }
    for (int bf = 0; bf < 2; bf++) {
        double params;
        double tps = torch_peer(&c, name, B, T, bf, &params);
        if (tps <= 0) { printf("  PyTorch peer not available (apt install python3-torch)\n"); break; }
        result pr = {tps, B * T / tps * 1e3, tps * flops_per_token(&c, T) / 1e9};
        double best = bf ? fmax(b16.tps, f32.tps) : f32.tps;
        printf("  PyTorch %-14s %9.0f tok/s %9.1f ms/step %7.1f GFLOP/s  (%.2fM params)  frugal %s / PyTorch = %.2fx\n",
               bf ? "bf16 autocast" : "fp32", tps, pr.ms, pr.gflops, params / 1e6, bf ? "best" : "fp32", best / tps);
        if (params != (double)total) printf("  WARNING: the peer built %.0f parameters, frugal %lld\n", params, (long long)total);
        csv_row(name, "pytorch", bf ? "bf16" : "fp32", threads, B, T, pr, pr.gflops / (bf ? pk->bf16_gflops : pk->fp32_gflops));
        fflush(stdout);
    }
    printf("\n");
}

int main(int argc, char **argv) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    int quick = 0;
    for (int i = 1; i < argc; i++) quick |= !strcmp(argv[i], "--quick");
    fg_peaks pk;
    if (fg_peaks_get(&pk, 0)) { fprintf(stderr, "bench_train: %s\n", fg_last_error()); return 1; }
    printf("frugal bench: training step = forward + backward + AdamW\n");
    char amx[64];
    if (pk.amx_gflops > 0) snprintf(amx, sizeof amx, "%.1f GFLOP/s", pk.amx_gflops);
    else snprintf(amx, sizeof amx, "%s", pk.amx_present ? "present, not usable" : "absent");
    printf("machine peaks (measured, %d threads%s): fp32 FMA %.1f GFLOP/s, AVX512-BF16 %.1f GFLOP/s, AMX %s\n",
           pk.threads, pk.cached ? ", cached" : "", pk.fp32_gflops, pk.bf16_gflops, amx);
    printf("FLOPs/token = 6 * active matmul weights + 6 * L * (T+1)/2 * H * (Dqk+Dv) (causal attention)\n");
    printf("peer: tests/ref/ref.py bench in eager PyTorch (grouped per-expert MoE, as Hugging Face's DeepSeek code),\n"
           "fp32 and torch.autocast bf16, same config, batch and sequence length, %d threads\n\n", threads);
    mkdir("build", 0777);
    mkdir("build/bench", 0777);
    const char *csv_path = "build/bench/history.csv";
    int fresh = access(csv_path, F_OK) != 0;
    csv = fopen(csv_path, "a");
    if (csv && fresh) fprintf(csv, "time,config,engine,precision,threads,batch,seq,tok_per_s,ms_per_step,gflops,mfu\n");
    bench_config("demo", 32, FG_TASK_LONGEST, 5, &pk, threads, !quick, 0);
    if (!quick) bench_config("bench-moe", 8, 512, 4, &pk, threads, 1, 1);
    if (csv) { fclose(csv); printf("results appended to %s\n", csv_path); }
    return 0;
}
