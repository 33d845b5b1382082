// llama_logits.c: a small harness of frugal's own around llama.cpp's C API, the independent oracle
// of tests/test_llama_cpp.c. Not part of the frugal build: tests/llama_cpp.sh compiles it against
// the libllama it builds from the llama.cpp source that the npm package node-llama-cpp carries.
//
//   llama_logits logits MODEL.gguf IDS.txt N_GEN OUT.bin
//       loads MODEL.gguf (CPU), evaluates the token ids of IDS.txt (whitespace-separated) in one
//       batch with logits at every position, then N_GEN greedy steps (argmax, lowest id on ties,
//       as frugal's fg_sample at temperature 0). OUT.bin: int32 T, int32 V, T*V float32 logits
//       (position-major), int32 N_GEN, N_GEN int32 ids.
//   llama_logits quantize IN.gguf OUT.gguf q8_0|q4_0|q4_k_m|q5_k_m|q6_k
//       llama_model_quantize: q8_0 and q4_0 with pure = true, what `llama-quantize --pure IN OUT
//       Q4_0` does (every matrix in the one type); the K types as `llama-quantize IN OUT Q4_K_M`
//       does (llama.cpp's own mixture and fallbacks). The router and the vectors stay F32 by
//       llama.cpp's rules.
// Exit 0 on success; 1 with one line on stderr otherwise. llama.cpp's log goes to stderr only
// when LLAMA_LOGITS_VERBOSE is set.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        b.n_tokens = 1;
        b.token[0] = next;
        b.pos[0] = T + s;
        b.logits[0] = 1;
        if (llama_decode(ctx, b)) { fprintf(stderr, "llama_logits: llama_decode failed at step %d\n", s); goto out; }
        next = argmax(llama_get_logits_ith(ctx, 0), V);
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
    struct llama_model_quantize_params qp = llama_model_quantize_default_params();
    if (!strcmp(type, "q8_0")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q8_0;
    else if (!strcmp(type, "q4_0")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q4_0;
    else if (!strcmp(type, "q4_k_m")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q4_K_M;
    else if (!strcmp(type, "q5_k_m")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q5_K_M;
    else if (!strcmp(type, "q6_k")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q6_K;
    else { fprintf(stderr, "llama_logits: quantize type must be q8_0, q4_0, q4_k_m, q5_k_m or q6_k, not %s\n", type); return 1; }
    qp.pure = !strcmp(type, "q8_0") || !strcmp(type, "q4_0");
    qp.nthread = 2;
    if (llama_model_quantize(in, out, &qp)) { fprintf(stderr, "llama_logits: llama_model_quantize %s -> %s failed\n", in, out); return 1; }
    return 0;
}

int main(int argc, char **argv) {
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    int rc;
    if (argc == 6 && !strcmp(argv[1], "logits")) rc = do_logits(argv[2], argv[3], atoi(argv[4]), argv[5]);
    else if (argc == 5 && !strcmp(argv[1], "quantize")) rc = do_quantize(argv[2], argv[3], argv[4]);
    else {
        fprintf(stderr, "usage: llama_logits logits MODEL.gguf IDS.txt N_GEN OUT.bin | quantize IN.gguf OUT.gguf q8_0|q4_0|q4_k_m|q5_k_m|q6_k\n");
        rc = 1;
    }
    llama_backend_free();
    return rc;
}
