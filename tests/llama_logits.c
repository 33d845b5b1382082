// llama_logits.c: a small harness of frugal's own around llama.cpp's C API, the independent oracle
// of tests/test_llama_cpp.c. Not part of the frugal build: tests/llama_cpp.sh compiles it against
// the libllama it builds from the llama.cpp source that the npm package node-llama-cpp carries.
//
//   llama_logits logits MODEL.gguf IDS.txt N_GEN OUT.bin
//       loads MODEL.gguf (CPU), evaluates the token ids of IDS.txt (whitespace-separated) in one
//       batch with logits at every position, then N_GEN greedy steps (argmax, lowest id on ties,
//       as frugal's fg_sample at temperature 0). OUT.bin: int32 T, int32 V, T*V float32 logits
//       (position-major), int32 N_GEN, N_GEN int32 ids.
//   llama_logits quantize IN.gguf OUT.gguf TYPE
//       llama_model_quantize. Pure types (every matrix in the one type, what `llama-quantize --pure
//       IN OUT Q4_0` does): q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k iq4_nl. Mixtures (as
//       `llama-quantize IN OUT Q4_K_M` does, llama.cpp's own choice per tensor and fallbacks):
//       q4_k_m q4_k_s q5_k_m q3_k_m q2_k_mix (llama.cpp's Q2_K file type) q6_k_mix. The router and
//       the vectors stay F32 by llama.cpp's rules.
//   llama_logits bench MODEL.gguf THREADS N_PROMPT N_GEN
//       speed as llama-bench measures it, llama.cpp's default context settings (F16 cache, its own
//       choice of flash attention and weight repacking): a prompt of N_PROMPT tokens in one batch
//       (after one untimed warm-up run of it and an emptied cache, as llama-bench's warm-up), then
//       N_GEN single-token decode steps at positions N_PROMPT .. N_PROMPT+N_GEN-1, the first a
//       warm-up, the other N_GEN-1 timed; prints one line "prefill_tok_s=X decode_tok_s=Y".
// Exit 0 on success; 1 with one line on stderr otherwise. llama.cpp's log goes to stderr only
// when LLAMA_LOGITS_VERBOSE is set.
#define _POSIX_C_SOURCE 200809L // clock_gettime under -std=c11
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama.h"

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (getenv("LLAMA_LOGITS_VERBOSE") || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

// One greedy decode step: feeds *next at pos, then *next = the argmax of its logits. 1 on failure.
static int greedy_step(struct llama_context *ctx, struct llama_batch *b, int pos, int V, int32_t *next) {
    b->n_tokens = 1;
    b->token[0] = *next;
    b->pos[0] = pos;
    b->logits[0] = 1;
    if (llama_decode(ctx, *b)) { fprintf(stderr, "llama_logits: llama_decode failed at position %d\n", pos); return 1; }
    *next = argmax(llama_get_logits_ith(ctx, 0), V);
    return 0;
}

static int do_logits(const char *model_path, const char *ids_path, int n_gen, const char *out_path) {
    int32_t ids[4096];
    int T = 0;
    FILE *f = fopen(ids_path, "r");
    if (!f) { fprintf(stderr, "llama_logits: cannot open %s\n", ids_path); return 1; }
    while (T < 4096 && fscanf(f, "%d", &ids[T]) == 1) T++;
    fclose(f);
    if (T < 1) { fprintf(stderr, "llama_logits: no token ids in %s\n", ids_path); return 1; }
    struct llama_model_params mp = llama_model_default_params();
    // No repacked or AMX weight buffers: ggml 0.23.0's AMX Q8_0/Q4_0 matmul crashes on these small
    // matrices (SIGSEGV in ggml_backend_amx_mul_mat on a Sapphire Rapids CPU); the plain CPU
    // kernels are what every llama.cpp build has.
    mp.use_extra_bufts = 0;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) { fprintf(stderr, "llama_logits: llama.cpp cannot load %s\n", model_path); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int V = llama_vocab_n_tokens(vocab);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(T + n_gen + 16);
    cp.n_batch = cp.n_ubatch = (uint32_t)T;
    cp.n_threads = cp.n_threads_batch = 2;
    cp.no_perf = 1;
    cp.type_k = cp.type_v = GGML_TYPE_F32; // the default F16 cache would round every key and value
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "llama_logits: cannot create a context for %s\n", model_path); llama_model_free(model); return 1; }
    FILE *o = fopen(out_path, "wb");
    if (!o) { fprintf(stderr, "llama_logits: cannot create %s\n", out_path); return 1; }
    struct llama_batch b = llama_batch_init(T, 0, 1);
    for (int i = 0; i < T; i++) {
        b.token[i] = ids[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = T;
    int rc = 1;
    if (llama_decode(ctx, b)) { fprintf(stderr, "llama_logits: llama_decode failed on %s\n", model_path); goto out; }
    int32_t hdr[2] = {T, V};
    fwrite(hdr, 4, 2, o);
    for (int i = 0; i < T; i++) fwrite(llama_get_logits_ith(ctx, i), 4, (size_t)V, o);
    int32_t ng = n_gen, next = argmax(llama_get_logits_ith(ctx, T - 1), V);
    fwrite(&ng, 4, 1, o);
    for (int s = 0; s < n_gen; s++) {
        fwrite(&next, 4, 1, o);
        if (s + 1 == n_gen) break;
        if (greedy_step(ctx, &b, T + s, V, &next)) goto out;
    }
    rc = 0;
out:
    if (fclose(o)) rc = 1;
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    return rc;
}

static int do_quantize(const char *in, const char *out, const char *type) {
    static const struct { const char *name; enum llama_ftype ftype; int pure; } types[] = {
        {"q8_0", LLAMA_FTYPE_MOSTLY_Q8_0, 1},     {"q4_0", LLAMA_FTYPE_MOSTLY_Q4_0, 1},
        {"q4_1", LLAMA_FTYPE_MOSTLY_Q4_1, 1},     {"q5_0", LLAMA_FTYPE_MOSTLY_Q5_0, 1},
        {"q5_1", LLAMA_FTYPE_MOSTLY_Q5_1, 1},     {"q2_k", LLAMA_FTYPE_MOSTLY_Q2_K, 1},
        {"q3_k", LLAMA_FTYPE_MOSTLY_Q3_K_S, 1},   {"q4_k", LLAMA_FTYPE_MOSTLY_Q4_K_S, 1},
        {"q5_k", LLAMA_FTYPE_MOSTLY_Q5_K_S, 1},   {"q6_k", LLAMA_FTYPE_MOSTLY_Q6_K, 0},
        {"iq4_nl", LLAMA_FTYPE_MOSTLY_IQ4_NL, 1}, {"q4_k_m", LLAMA_FTYPE_MOSTLY_Q4_K_M, 0},
        {"q4_k_s", LLAMA_FTYPE_MOSTLY_Q4_K_S, 0}, {"q5_k_m", LLAMA_FTYPE_MOSTLY_Q5_K_M, 0},
        {"q3_k_m", LLAMA_FTYPE_MOSTLY_Q3_K_M, 0}, {"q2_k_mix", LLAMA_FTYPE_MOSTLY_Q2_K, 0},
        {"q6_k_pure", LLAMA_FTYPE_MOSTLY_Q6_K, 1},
    };
    struct llama_model_quantize_params qp = llama_model_quantize_default_params();
    int k = 0, n = (int)(sizeof types / sizeof types[0]);
    while (k < n && strcmp(type, types[k].name)) k++;
    if (k == n) { fprintf(stderr, "llama_logits: unknown quantize type %s (see the list at the top of tests/llama_logits.c)\n", type); return 1; }
    qp.ftype = types[k].ftype;
    qp.pure = types[k].pure;
    qp.nthread = 2;
    if (llama_model_quantize(in, out, &qp)) { fprintf(stderr, "llama_logits: llama_model_quantize %s -> %s failed\n", in, out); return 1; }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int do_bench(const char *model_path, int threads, int n_prompt, int n_gen) {
    if (threads < 1 || n_prompt < 1 || n_gen < 2) { fprintf(stderr, "llama_logits: bench needs THREADS >= 1, N_PROMPT >= 1, N_GEN >= 2\n"); return 1; }
    struct llama_model *model = llama_model_load_from_file(model_path, llama_model_default_params());
    if (!model) { fprintf(stderr, "llama_logits: llama.cpp cannot load %s\n", model_path); return 1; }
    int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_prompt + n_gen + 16);
    cp.n_batch = cp.n_ubatch = (uint32_t)n_prompt;
    cp.n_threads = cp.n_threads_batch = threads;
    cp.no_perf = 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "llama_logits: cannot create a context for %s\n", model_path); llama_model_free(model); return 1; }
    struct llama_batch b = llama_batch_init(n_prompt, 0, 1);
    for (int i = 0; i < n_prompt; i++) {
        b.token[i] = (int32_t)((i * 7919 + 13) % V); // a fixed, vocabulary-wide prompt
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = i == n_prompt - 1;
    }
    b.n_tokens = n_prompt;
    int rc = 1;
    // A warm-up run of the whole prompt, then an empty cache, as llama-bench does (and frugal bench):
    // the first llama_decode of a shape also allocates and plans its graph.
    if (llama_decode(ctx, b)) { fprintf(stderr, "llama_logits: llama_decode failed on %s\n", model_path); goto out; }
    llama_memory_clear(llama_get_memory(ctx), 0);
    double t0 = now_s();
    if (llama_decode(ctx, b)) { fprintf(stderr, "llama_logits: llama_decode failed on %s\n", model_path); goto out; }
    double t_prefill = now_s() - t0, t1 = 0;
    int32_t next = argmax(llama_get_logits_ith(ctx, -1), V);
    for (int s = 0; s < n_gen; s++) {
        if (s == 1) t1 = now_s(); // the first step warms up; n_gen - 1 timed
        if (greedy_step(ctx, &b, n_prompt + s, V, &next)) goto out;
    }
    printf("prefill_tok_s=%.2f decode_tok_s=%.2f\n", n_prompt / t_prefill, (n_gen - 1) / (now_s() - t1));
    rc = 0;
out:
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    return rc;
}

int main(int argc, char **argv) {
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    int rc;
    if (argc == 6 && !strcmp(argv[1], "logits")) rc = do_logits(argv[2], argv[3], atoi(argv[4]), argv[5]);
    else if (argc == 5 && !strcmp(argv[1], "quantize")) rc = do_quantize(argv[2], argv[3], argv[4]);
    else if (argc == 6 && !strcmp(argv[1], "bench")) rc = do_bench(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    else {
        fprintf(stderr, "usage: llama_logits logits MODEL.gguf IDS.txt N_GEN OUT.bin | quantize IN.gguf OUT.gguf TYPE | bench MODEL.gguf THREADS N_PROMPT N_GEN\n");
        rc = 1;
    }
    llama_backend_free();
    return rc;
}
