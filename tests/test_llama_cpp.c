// test_llama_cpp.c: frugal's GGUF exports run in llama.cpp itself, the independent oracle
// (docs/formats.md "Checked against llama.cpp").
//
// tests/llama_cpp.sh fetches the llama.cpp source that the npm package node-llama-cpp (pinned)
// carries and builds libllama + ggml's CPU backend and our harness tests/llama_logits.c, once, into
// the git-ignored .cache/llama-cpp/. For four random models (deepseek2: MLA + MoE with and without
// q compression; dense llama; dense qwen2 with q/k/v biases), each exported in f32, bf16, q8_0 and
// q4_0:
//  - llama.cpp loads the file; its logits at every position of a 64-token input are compared with
//    frugal's on the same file (frugal dequantises to fp32 on import): f32 within 1e-4 (relative
//    L2 per position, the maximum over positions); bf16/q8_0/q4_0 within the budgets BUDGET[]
//    below, which are set against what quantising costs each engine (its logits vs its own f32
//    ones, printed beside);
//  - a 16-token greedy continuation is compared: identical for f32; for the other types the
//    number of agreeing tokens before the first difference is printed and must reach MIN_AGREE[];
//  - the metadata: tests/llama_keys.py lists the keys llama.cpp requires of each architecture,
//    checks that list against llama.cpp's own source (a newer llama.cpp that requires more fails
//    here), and checks every export carries them and a pre-tokenizer name llama.cpp knows;
//  - the Hugging Face checkpoints of tests/ref/hf_cases.py (when python3 has torch) with their
//    real tokenizers, exported in f32: DeepSeek-V3 with YaRN and grouped sigmoid routing,
//    DeepSeek-V2, Qwen2, Llama 3 with its RoPE scaling; the f32 budget over 48 positions;
//  - the reverse: the f32 export quantised by llama.cpp (llama_model_quantize with pure = true, as
//    `llama-quantize --pure F32.gguf OUT.gguf Q8_0|Q4_0`) loads in frugal, with frugal's logits
//    on that file within the same budgets of llama.cpp's.
//  - the K-quant mixtures people download: two 256-wide models quantised by llama.cpp to Q4_K_M,
//    Q5_K_M and Q6_K (its own mixture rules) and to pure Q2_K, Q3_K and IQ4_NL; every tensor's
//    blocks decoded by frugal bit for bit equal to gguf-py's reference dequantiser
//    (tests/gguf_dequant.py), and the logits as above; frugal's own Q4_K / Q5_K / Q6_K exports and
//    its Q4_K_M / Q5_K_M mixtures of them, decoded by gguf-py the same way and run by llama.cpp
//    (the mixtures' Q6_K tensors compared with the ones llama.cpp's own mixture picks).
// Skipped (77) when npm, git, cmake or a C++ compiler is missing, or when FRUGAL_NO_LLAMA_CPP is
// set. The first run builds llama.cpp (5-10 min on 2 cores); later runs reuse it.
#include <string.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "ops/dtype.h"
#include "util.h"
#include "model/model.h"
#include "test.h"

#define T_MAX 64
static int n_in = T_MAX; // prompt length: 64, or 48 for the Hugging Face cases (their context is 64)
#define N_GEN 16
#ifndef INNER_SCALE
#define INNER_SCALE 0.3f
#endif

enum { N_TYPES = 4 };
static const char *const TYPE_NAME[N_TYPES] = {"f32", "bf16", "q8_0", "q4_0"};
static const int TYPE_ID[N_TYPES] = {FG_F32, FG_BF16, FG_Q8_0, FG_Q4_0};
// Budgets for llama.cpp vs frugal on the same file (max over positions of the relative L2 error).
// f32: both compute in fp32. The others: llama.cpp also rounds the activations (to bf16 for bf16
// weights, to Q8_0 blocks for Q8_0/Q4_0 weights) while frugal multiplies fp32 activations with the
// dequantised weights; those roundings are smaller than what the weight type itself costs (the
// f32 -> type error of either engine, printed beside each figure).
static const double BUDGET_MED[N_TYPES] = {1e-4, 1e-2, 3e-2, 3e-2};
static const double BUDGET_MAX[N_TYPES] = {1e-4, 0.3, 0.3, 0.3};
static const int MIN_TF[N_TYPES] = {N_GEN, 12, 12, 12};

typedef struct {
    const char *name, *preset, *json; // preset, then these fields (JSON object members)
} model_case;

static const model_case CASES[] = {
    {"deepseek2 MLA+MoE q_lora 64 softmax", "demo",
     "{\"q_lora_rank\": 64, \"scoring_func\": \"softmax\", \"topk_method\": \"greedy\", \"norm_topk_prob\": false, "
     "\"routed_scaling_factor\": 2.5}"},
    {"deepseek2 MLA+MoE q_lora null sigmoid", "demo", "{}"},
    {"llama dense GQA", "demo-student", "{}"},
    {"qwen2 dense GQA + biases", "demo-student", "{\"attention_bias\": true}"},
};
enum { N_CASES = sizeof CASES / sizeof *CASES };

static char tmpdir[] = "/tmp/frugal-llamacpp-XXXXXX";

// Random weights with O(1) logits (std 1/sqrt(in) for matrices; norms, biases and the routing
// bias random too, so that every one of them is exercised).
static void init_model(fg_model *m, uint64_t seed) {
    fg_rng r;
    fg_rng_seed(&r, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        int bias = strstr(t->name, "bias") != NULL;
        int outer = strstr(t->name, "embed_tokens") || strstr(t->name, "lm_head");
        float std = t->ndim == 2 ? (outer ? 1.0f : INNER_SCALE) / sqrtf((float)t->shape[1]) : 0.1f;
        for (size_t j = 0; j < t->numel; j++) p[j] = (t->ndim == 1 && !bias ? 1.0f : 0.0f) + std * fg_rng_normal(&r);
    }
}

static fg_model *make_model(const model_case *mc, uint64_t seed) {
    fg_config c;
    if (fg_config_preset(&c, mc->preset)) return NULL;
    char *base = fg_config_to_json(&c);
    if (!base) return NULL;
    // merge: base object without its closing brace, then the overrides' members
    size_t nb = strlen(base), no = strlen(mc->json);
    char *js = malloc(nb + no + 4);
    while (nb && base[nb - 1] != '}') nb--;
    memcpy(js, base, nb - 1);
    size_t k = nb - 1;
    if (no > 2) { js[k++] = ','; memcpy(js + k, mc->json + 1, no - 1); k += no - 1; } else js[k++] = '}';
    js[k] = 0;
    free(base);
    fg_config c2;
    int rc = fg_config_from_json(&c2, js, k, mc->name, NULL);
    free(js);
    if (rc) return NULL;
    fg_model *m = fg_model_create(&c2);
    if (m) init_model(m, seed);
    return m;
}

// Runs a shell command, returns its exit status; its stdout's last line into last (may be NULL).
static int run(const char *cmd, char *last, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[4096];
    if (last) last[0] = 0;
    while (fgets(line, sizeof line, p)) {
        if (last) {
            size_t n = strcspn(line, "\n");
            if (n >= cap) n = cap - 1;
            memcpy(last, line, n);
            last[n] = 0;
        }
        if (!strncmp(line, "SKIP:", 5)) { fputs(line, stdout); }
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct { int T, V, n_gen; float *logits; int32_t gen[N_GEN]; } llama_out;

static int llama_run(const char *harness, const char *gguf, const char *ids_path, llama_out *o) {
    char cmd[4096], out[1100];
    snprintf(out, sizeof out, "%s/out.bin", tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' logits '%s' '%s' %d '%s' 2>&1", harness, gguf, ids_path, N_GEN, out);
    char last[1024];
    if (run(cmd, last, sizeof last)) { fprintf(stderr, "llama.cpp on %s: %s\n", gguf, last); return -1; }
    FILE *f = fopen(out, "rb");
    if (!f) return -1;
    int32_t hdr[2];
    int ok = fread(hdr, 4, 2, f) == 2 && hdr[0] == n_in && hdr[1] > 0 && hdr[1] < (1 << 20);
    if (ok) {
        o->T = hdr[0]; o->V = hdr[1];
        o->logits = malloc(sizeof(float) * (size_t)o->T * o->V);
        ok = o->logits && fread(o->logits, sizeof(float), (size_t)o->T * o->V, f) == (size_t)o->T * o->V &&
             fread(&o->n_gen, 4, 1, f) == 1 && o->n_gen == N_GEN && fread(o->gen, 4, N_GEN, f) == N_GEN;
    }
    fclose(f);
    return ok ? 0 : -1;
}

// frugal on the same file: logits of the prompt and of llama.cpp's continuation after it (one
// forward over n_in + N_GEN tokens: tf[s] is frugal's argmax where llama.cpp chose its s-th
// token, the greedy comparison without the cascade of a single early difference), and frugal's own
// greedy continuation (gen, from a decoding session).
// mapped: the same file run from its mapping as stored (fg_wstore_open_gguf: blocks multiplied
// natively, decode steps with int8 activations): logits of the prompt in one batch, then of
// llama.cpp's continuation fed one token per step (mdec) next to the fp32 forward's (dec).
typedef struct { float *logits, *mlogits, *mdec, *dec; int32_t gen[N_GEN], tf[N_GEN]; int V; } frugal_out;
static void frugal_out_free(frugal_out *o) { free(o->logits); free(o->mlogits); free(o->mdec); free(o->dec); }

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int mapped_run(const char *gguf, const int32_t *all, frugal_out *o) {
    fg_wstore *ws = fg_wstore_open_gguf(gguf, NULL);
    if (!ws) return -1;
    fg_ctx_params p = {.n_ctx = n_in + N_GEN + FG_KV_BLOCK, .max_seqs = 1, .max_batch = n_in, .kind = FG_KV_AUTO, .kv_type = FG_F32};
    fg_ctx *c = fg_ctx_create(ws, &p);
    int rc = -1, seq = c ? fg_ctx_seq_new(c) : -1;
    int32_t seqs[T_MAX] = {0};
    uint8_t want[T_MAX];
    memset(want, 1, sizeof want);
    o->mlogits = malloc(sizeof(float) * n_in * (size_t)o->V);
    o->mdec = malloc(sizeof(float) * N_GEN * (size_t)o->V);
    if (seq < 0 || !o->mlogits || !o->mdec) goto out;
    fg_batch b = {.n = n_in, .token = all, .seq = seqs, .logits = want};
    if (fg_ctx_decode(c, &b, o->mlogits)) goto out;
    for (int s = 0; s < N_GEN; s++) {
        fg_batch one = {.n = 1, .token = all + n_in + s, .seq = seqs, .logits = want};
        if (fg_ctx_decode(c, &one, o->mdec + (size_t)s * o->V)) goto out;
    }
    rc = 0;
out:
    fg_ctx_free(c);
    fg_wstore_free(ws);
    return rc;
}

static int frugal_run(const char *gguf, const int32_t *ids, const int32_t *llama_gen, frugal_out *o) {
    fg_model *m = fg_model_open(gguf, NULL, NULL, NULL);
    if (!m) { fprintf(stderr, "frugal on %s: %s\n", gguf, fg_last_error()); return -1; }
    o->V = m->cfg.vocab_size;
    int32_t all[T_MAX + N_GEN];
    memcpy(all, ids, sizeof(int32_t) * n_in);
    memcpy(all + n_in, llama_gen, sizeof(int32_t) * N_GEN);
    int rc = fg_model_forward(m, all, NULL, 1, n_in + N_GEN, NULL);
    if (!rc) {
        o->logits = malloc(sizeof(float) * n_in * (size_t)o->V);
        memcpy(o->logits, m->logits, sizeof(float) * n_in * (size_t)o->V);
        for (int s = 0; s < N_GEN; s++) o->tf[s] = argmax(m->logits + (size_t)(n_in - 1 + s) * o->V, o->V);
        o->dec = malloc(sizeof(float) * N_GEN * (size_t)o->V);
        memcpy(o->dec, m->logits + (size_t)n_in * o->V, sizeof(float) * N_GEN * (size_t)o->V);
        rc = mapped_run(gguf, all, o);
        fg_infer *s = fg_infer_create(m, n_in + N_GEN);
        fg_sample_opts so = {0};
        so.top_k = 0; so.top_p = 1; so.max_new_tokens = N_GEN;
        rc = !s || fg_generate(s, ids, n_in, &so, o->gen, N_GEN, NULL, NULL) != N_GEN;
        fg_infer_free(s);
    }
    if (rc) fprintf(stderr, "frugal on %s: %s\n", gguf, fg_last_error());
    fg_model_free(m);
    return rc ? -1 : 0;
}

// Max over positions of |a - b| / |b| (L2 over the vocabulary).
static double max_rel(const float *a, const float *b, int T, int V) {
    double worst = 0;
    for (int t = 0; t < T; t++) {
        double e = tst_rel_err(a + (size_t)t * V, b + (size_t)t * V, (size_t)V);
        if (e > worst) worst = e;
    }
    return worst;
}
static int agree(const int32_t *a, const int32_t *b) { // tokens before the first difference
    int n = 0;
    while (n < N_GEN && a[n] == b[n]) n++;
    return n;
}
static int same(const int32_t *a, const int32_t *b) { // positions that agree
    int n = 0;
    for (int i = 0; i < N_GEN; i++) n += a[i] == b[i];
    return n;
}
// Median over positions of the per-position relative L2 error.
static double med_rel(const float *a, const float *b, int T, int V) {
    double e[T_MAX];
    for (int t = 0; t < T; t++) e[t] = tst_rel_err(a + (size_t)t * V, b + (size_t)t * V, (size_t)V);
    for (int i = 1; i < T; i++) // insertion sort: T is 64
        for (int j = i; j > 0 && e[j - 1] > e[j]; j--) { double x = e[j]; e[j] = e[j - 1]; e[j - 1] = x; }
    return T % 2 ? e[T / 2] : 0.5 * (e[T / 2 - 1] + e[T / 2]);
}

// n_in random token ids below V (seeded) into ids and, whitespace-separated, into path.
static void write_ids(const char *path, int32_t *ids, uint64_t seed, int V) {
    fg_rng r;
    fg_rng_seed(&r, seed);
    for (int i = 0; i < n_in; i++) ids[i] = (int32_t)(fg_rng_uniform(&r) * (float)V) % V;
    FILE *f = fopen(path, "w");
    for (int i = 0; i < n_in && f; i++) fprintf(f, "%d ", ids[i]);
    if (f) fclose(f);
}

// One file in both engines: a row of the table, and the checks. l32/f32: each engine's results on
// the f32 export (NULL for that export itself). lo/fo receive this file's results (caller frees).
static void compare_file(const char *model, const char *label, int ti, const char *harness, const char *path, const char *ids_path,
                         const int32_t *ids, llama_out *lo, frugal_out *fo, const llama_out *l32, const frugal_out *f32) {
    int lr = llama_run(harness, path, ids_path, lo);
    int fr = lr ? -1 : frugal_run(path, ids, lo->gen, fo);
    CHECK_MSG(lr == 0, "%s %s: llama.cpp could not run the file", model, label);
    CHECK_MSG(lr || fr == 0, "%s %s: frugal could not run the file", model, label);
    if (lr || fr) return;
    CHECK_MSG(lo->V == fo->V, "%s %s: vocabulary %d vs %d", model, label, lo->V, fo->V);
    if (lo->V != fo->V) return;
    int V = fo->V;
    double emax = max_rel(lo->logits, fo->logits, n_in, V), emed = med_rel(lo->logits, fo->logits, n_in, V);
    double ef = f32 && f32->logits ? med_rel(fo->logits, f32->logits, n_in, V) : 0;
    double el = l32 && l32->logits ? med_rel(lo->logits, l32->logits, n_in, V) : 0;
    int tf = same(lo->gen, fo->tf), run = agree(lo->gen, fo->gen);
    // the mapped store: its prompt logits against llama.cpp's, its decode steps against the fp32 forward
    double mmax = max_rel(lo->logits, fo->mlogits, n_in, V), mmed = med_rel(lo->logits, fo->mlogits, n_in, V);
    double dmax = max_rel(fo->mdec, fo->dec, N_GEN, V), dmed = med_rel(fo->mdec, fo->dec, N_GEN, V);
    printf("%-36s %-7s %9.2e %9.2e %9.2e %9.2e %5d/%d %5d/%d | mapped %9.2e %9.2e, decode %9.2e %9.2e\n", model, label, emax, emed,
           ef, el, tf, N_GEN, run, N_GEN, mmax, mmed, dmax, dmed);
    CHECK_MSG(mmed <= BUDGET_MED[ti] && mmax <= BUDGET_MAX[ti], "%s %s: mapped store vs llama.cpp: median %.3g, max %.3g, budgets %.3g, %.3g",
              model, label, mmed, mmax, BUDGET_MED[ti], BUDGET_MAX[ti]);
    CHECK_MSG(dmed <= BUDGET_MED[ti] && dmax <= BUDGET_MAX[ti], "%s %s: mapped decode vs fp32: median %.3g, max %.3g, budgets %.3g, %.3g",
              model, label, dmed, dmax, BUDGET_MED[ti], BUDGET_MAX[ti]);
    CHECK_MSG(emed <= BUDGET_MED[ti], "%s %s: median llama.cpp vs frugal %.3g > budget %.3g", model, label, emed, BUDGET_MED[ti]);
    CHECK_MSG(emax <= BUDGET_MAX[ti], "%s %s: max llama.cpp vs frugal %.3g > budget %.3g", model, label, emax, BUDGET_MAX[ti]);
    CHECK_MSG(tf >= MIN_TF[ti], "%s %s: frugal picks llama.cpp's greedy token at %d of %d steps, want >= %d", model, label, tf, N_GEN,
              MIN_TF[ti]);
    if (ti == 0) CHECK_MSG(run == N_GEN, "%s %s: greedy continuations differ after %d tokens", model, label, run);
}

// The Hugging Face checkpoints of tests/ref/hf_cases.py (needs python3 with torch), converted with
// their real tokenizers and exported in f32: DeepSeek-V3 with YaRN, sigmoid routing in groups and
// DeepSeek-V3's tokenizer; DeepSeek-V2 softmax; Qwen2 with biases; Llama 3 with its RoPE scaling
// (rope_freqs). Same f32 budget, 48 positions (their context is 64).
static void hf_cases(const char *harness, char *keys_cmd, size_t keys_cap) {
    char cmd[2048], dir[1100], path[1200], ids_path[1100];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1 && /usr/bin/python3 tests/ref/hf_cases.py '%s/hf' >/dev/null 2>&1",
             tmpdir);
    if (system(cmd)) { printf("note: python3 with torch missing: the Hugging Face cases were not run\n"); return; }
    static const char *const HF[] = {"dsv3_yarn_bf16", "dsv2_softmax", "qwen2_f16", "llama3"};
    n_in = 48;
    for (int k = 0; k < 4; k++) {
        snprintf(dir, sizeof dir, "%s/hf/%s", tmpdir, HF[k]);
        char *td = NULL;
        size_t tl = 0;
        fg_model *m = fg_model_open(dir, &td, &tl, NULL);
        CHECK_MSG(m != NULL, "%s: %s", dir, fg_last_error());
        if (!m) continue;
        snprintf(path, sizeof path, "%s/hf-%s.gguf", tmpdir, HF[k]);
        int rc = fg_gguf_export(path, m, FG_F32, td, tl);
        CHECK_MSG(rc == 0, "export %s: %s", HF[k], fg_last_error());
        int32_t ids[T_MAX];
        snprintf(ids_path, sizeof ids_path, "%s/hf-ids.txt", tmpdir);
        write_ids(ids_path, ids, 500 + (uint64_t)k, m->cfg.vocab_size);
        if (!rc) {
            size_t kl = strlen(keys_cmd);
            snprintf(keys_cmd + kl, keys_cap - kl, " '%s'", path);
            llama_out lo = {0};
            frugal_out fo = {0};
            char name[64];
            snprintf(name, sizeof name, "HF %s (+tokenizer)", HF[k]);
            compare_file(name, "f32", 0, harness, path, ids_path, ids, &lo, &fo, NULL, NULL);
            free(lo.logits);
            frugal_out_free(&fo);
        }
        fg_model_free(m);
        free(td);
    }
    n_in = T_MAX;
}

// The quantised files people download: llama.cpp's own Q4_K_M, Q5_K_M and Q6_K mixtures of two
// models whose rows hold whole 256-value super-blocks (and some that do not, which llama.cpp
// writes as Q5_0 / Q5_1 / Q8_0 instead), and its pure Q2_K, Q3_K and IQ4_NL (`llama-quantize
// --pure`; rows without whole super-blocks fall back to IQ4_NL). For each file: every tensor frugal
// decodes is compared bit for bit with llama.cpp's reference dequantiser (gguf-py's
// gguf.quants.dequantize, run by tests/gguf_dequant.py), and the logits of both engines on the file
// as above (the q4_0 budget for the 2- to 5-bit files, the q8_0 budget for Q6_K). And frugal's own
// Q4_K, Q5_K and Q6_K exports and Q4_K_M / Q5_K_M mixtures of the same models: decoded by gguf-py
// as frugal decodes them, and run by llama.cpp within those budgets.
static const model_case KCASES[] = {
    {"llama dense GQA, 256 wide", "demo-student", "{\"hidden_size\": 256, \"intermediate_size\": 512}"},
    // kv_lora_rank 256: attn_v_b {Rkv, Dv, H} holds whole super-blocks, so the mixtures' value rule reaches it
    {"deepseek2 MLA+MoE, 256 wide", "demo",
     "{\"hidden_size\": 256, \"intermediate_size\": 512, \"moe_intermediate_size\": 256, \"kv_lora_rank\": 256}"},
};

// Bit-exact blocks: frugal's fp32 values of every tensor of path against gguf-py's. Returns the
// number of values compared; counts the block types seen in seen[type].
static long blocks_exact(const char *src, const char *path, const char *label, int *seen) {
    char cmd[4096], last[1024], out[1300];
    snprintf(out, sizeof out, "%s.deq", path);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/gguf_dequant.py '%s/gguf-py' '%s' '%s' 2>&1", src, path, out);
    if (run(cmd, last, sizeof last)) { CHECK_MSG(0, "%s: gguf_dequant.py: %s", label, last); return 0; }
    size_t len = 0;
    uint8_t *ref = (uint8_t *)fg_read_file(out, &len);
    fg_gguf *g = fg_gguf_open(path);
    CHECK_MSG(ref && g && fg_gguf_read_tensors(g) == 0, "%s: %s", label, fg_last_error());
    long compared = 0;
    size_t at = 0;
    for (uint64_t i = 0; ref && g && g->tensors && i < g->n_tensors; i++) {
        const fg_gguf_tensor *t = &g->tensors[i];
        uint32_t nl, type;
        uint64_t n;
        if (at + 4 > len) break;
        memcpy(&nl, ref + at, 4);
        if (at + 4 + nl + 12 > len) break;
        memcpy(&type, ref + at + 4 + nl, 4);
        memcpy(&n, ref + at + 8 + nl, 8);
        const uint8_t *name = ref + at + 4;
        const float *want = (const float *)(name + nl + 12);
        at += 16 + nl + 4 * n;
        CHECK_MSG(nl == t->name.len && !memcmp(name, t->name.s, nl) && type == t->type,
                  "%s: tensor %llu differs between the readers", label, (unsigned long long)i);
        int dt = fg_dtype_from_ggml(t->type);
        CHECK_MSG(dt >= 0 && (FG_GGUF_READ_TYPES >> dt & 1), "%s: llama.cpp wrote type %u, which frugal does not read", label, t->type);
        if (dt < 0 || !(FG_GGUF_READ_TYPES >> dt & 1) || at > len) continue;
        seen[dt]++;
        float *got = malloc(sizeof(float) * (n ? n : 1));
        fg_dequantize_row(got, t->data, (int)n, dt); // rows are whole blocks, so the tensor is one long row
        long bad = 0;
        for (uint64_t k = 0; k < n; k++) bad += memcmp(&got[k], &want[k], 4) != 0;
        CHECK_MSG(bad == 0, "%s: %.*s (%s): %ld of %llu values differ from gguf-py's", label, (int)t->name.len, t->name.s,
                  fg_dtype_name(dt), bad, (unsigned long long)n);
        compared += (long)n;
        free(got);
    }
    CHECK_MSG(ref && at == len, "%s: %s has %zu bytes, %zu read", label, out, len, at);
    fg_gguf_free(g);
    free(ref);
    return compared;
}

// " q4_k:12 q6_k:4 ...": the tensors of each type in seen[type].
static void type_counts(char *out, size_t cap, const int *seen) {
    out[0] = 0;
    for (int t = 0; t < FG_DTYPE_COUNT; t++)
        if (seen[t]) snprintf(out + strlen(out), cap - strlen(out), " %s:%d", fg_dtype_name(t), seen[t]);
}

// frugal's mixture (fg_path) gives Q6_K to the tensors llama.cpp's (ll_path) does, except MLA's
// attn_k_b / attn_v_b: llama.cpp's rule names only the unsplit attn_kv_b, and frugal treats the split
// halves as attn_kv_b (gguf_model.c, mix_type).
static void same_q6k(const char *ll_path, const char *fg_path, const char *model, const char *mix) {
    fg_gguf *a = fg_gguf_open(ll_path), *b = fg_gguf_open(fg_path);
    int ok = a && b && !fg_gguf_read_tensors(a) && !fg_gguf_read_tensors(b), n6 = 0, differ = 0;
    CHECK_MSG(ok, "%s %s: %s", model, mix, fg_last_error());
    for (uint64_t i = 0; ok && i < a->n_tensors; i++) {
        const fg_gguf_tensor *t = &a->tensors[i];
        char nm[128];
        snprintf(nm, sizeof nm, "%.*s", (int)FG_MIN(t->name.len, 127), t->name.s);
        const fg_gguf_tensor *u = fg_gguf_find_tensor(b, nm);
        CHECK_MSG(u != NULL, "%s %s: frugal's file has no %s", model, mix, nm);
        if (!u || strstr(nm, "attn_k_b") || strstr(nm, "attn_v_b")) continue;
        int l6 = fg_dtype_from_ggml(t->type) == FG_Q6_K, f6 = fg_dtype_from_ggml(u->type) == FG_Q6_K;
        n6 += l6;
        differ += l6 != f6;
        CHECK_MSG(l6 == f6, "%s %s: %s is %s in llama.cpp's mixture, %s in frugal's", model, mix, nm, fg_dtype_name(fg_dtype_from_ggml(t->type)),
                  fg_dtype_name(fg_dtype_from_ggml(u->type)));
    }
    if (ok) printf("%-36s %-9s Q6_K tensors: llama.cpp's mixture %d, frugal's differs in %d\n", model, mix, n6, differ);
    fg_gguf_free(a);
    fg_gguf_free(b);
}

static void kquant_cases(const char *harness, const char *src) {
    enum { N_KT = 9, N_FT = 5 };
    // llama.cpp's files: its mixtures, then pure types; each with its main type and budget row
    // (q4_0's for 2- to 5-bit files, q8_0's for Q6_K)
    static const char *const KT[N_KT] = {"q4_k_m", "q5_k_m", "q6_k", "q2_k", "q3_k", "iq4_nl", "q4_1", "q5_0", "q5_1"};
    static const int KT_MAIN[N_KT] = {FG_Q4_K, FG_Q5_K, FG_Q6_K, FG_Q2_K, FG_Q3_K, FG_IQ4_NL, FG_Q4_1, FG_Q5_0, FG_Q5_1};
    static const int KB[N_KT] = {3, 3, 2, 3, 3, 3, 3, 3, 3};
    // frugal's exports (run first: same_q6k compares the mixtures with llama.cpp's)
    static const char *const FT[N_FT] = {"q4_k", "q5_k", "q6_k", "q4_k_m", "q5_k_m"};
    static const int FT_ID[N_FT] = {FG_Q4_K, FG_Q5_K, FG_Q6_K, FG_GGUF_Q4_K_M, FG_GGUF_Q5_K_M};
    static const int FT_B[N_FT] = {3, 3, 2, 3, 3};
    char cmd[4096], last[1024], in[1100], path[1200], ids_path[1100];
    if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1")) { printf("note: python3 numpy missing: K-quant cases not run\n"); return; }
    for (size_t ci = 0; ci < sizeof KCASES / sizeof *KCASES; ci++) {
        fg_model *m = make_model(&KCASES[ci], 3000 + (uint64_t)ci);
        CHECK_MSG(m != NULL, "%s: %s", KCASES[ci].name, fg_last_error());
        if (!m) continue;
        snprintf(in, sizeof in, "%s/k%zu-f32.gguf", tmpdir, ci);
        CHECK_MSG(fg_gguf_export(in, m, FG_F32, NULL, 0) == 0, "export %s: %s", KCASES[ci].name, fg_last_error());
        int32_t ids[T_MAX];
        snprintf(ids_path, sizeof ids_path, "%s/kids.txt", tmpdir);
        write_ids(ids_path, ids, 900 + (uint64_t)ci, 256);
        llama_out l32 = {0};
        frugal_out f32 = {0};
        compare_file(KCASES[ci].name, "f32", 0, harness, in, ids_path, ids, &l32, &f32, NULL, NULL);
        for (int k = 0; k < N_FT; k++) { // frugal's own K-quant writers and mixtures, read by llama.cpp
            snprintf(path, sizeof path, "%s/k%zu-fg-%s.gguf", tmpdir, ci, FT[k]);
            if (fg_gguf_export(path, m, FT_ID[k], NULL, 0)) { CHECK_MSG(0, "export %s: %s", FT[k], fg_last_error()); continue; }
            int seen[FG_DTYPE_COUNT] = {0};
            char label[160], types[160];
            snprintf(label, sizeof label, "%s frugal %s", KCASES[ci].name, FT[k]);
            long nv = blocks_exact(src, path, label, seen);
            type_counts(types, sizeof types, seen);
            printf("%-36s fg-%-6s blocks bit-exact vs gguf-py: %ld values, tensors by type%s\n", KCASES[ci].name, FT[k], nv, types);
            int main_t = FT_ID[k] == FG_GGUF_Q4_K_M ? FG_Q4_K : FT_ID[k] == FG_GGUF_Q5_K_M ? FG_Q5_K : FT_ID[k];
            CHECK_MSG(seen[main_t] > 0, "%s: no tensor of the export's main type", label);
            if (FT_ID[k] >= FG_DTYPE_COUNT) CHECK_MSG(seen[FG_Q6_K] > 0, "%s: the mixture gave no tensor more bits (Q6_K)", label);
            llama_out l = {0};
            frugal_out fq = {0};
            snprintf(label, sizeof label, "fg-%s", FT[k]);
            compare_file(KCASES[ci].name, label, FT_B[k], harness, path, ids_path, ids, &l, &fq, &l32, &f32);
            free(l.logits);
            frugal_out_free(&fq);
        }
        for (int k = 0; k < N_KT; k++) {
            snprintf(path, sizeof path, "%s/k%zu-%s.gguf", tmpdir, ci, KT[k]);
            snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' %s 2>&1", harness, in, path, KT[k]);
            if (run(cmd, last, sizeof last)) { CHECK_MSG(0, "llama_model_quantize %s: %s", KT[k], last); continue; }
            int seen[FG_DTYPE_COUNT] = {0};
            char label[160], types[160];
            snprintf(label, sizeof label, "%s %s", KCASES[ci].name, KT[k]);
            long nv = blocks_exact(src, path, label, seen);
            type_counts(types, sizeof types, seen);
            printf("%-36s %-9s blocks bit-exact vs gguf-py: %ld values, tensors by type%s\n", KCASES[ci].name, KT[k], nv, types);
            CHECK_MSG(seen[KT_MAIN[k]] > 0, "%s: no tensor of the file's main type", label);
            if (k < 2) { // the mixtures: frugal's gives more bits (Q6_K) to the tensors llama.cpp's does
                snprintf(label, sizeof label, "%s/k%zu-fg-%s.gguf", tmpdir, ci, KT[k]);
                same_q6k(path, label, KCASES[ci].name, KT[k]);
            }
            llama_out l = {0};
            frugal_out fq = {0};
            compare_file(KCASES[ci].name, KT[k], KB[k], harness, path, ids_path, ids, &l, &fq, &l32, &f32);
            free(l.logits);
            frugal_out_free(&fq);
        }
        free(l32.logits);
        frugal_out_free(&f32);
        fg_model_free(m);
    }
}

int main(void) {
    if (getenv("FRUGAL_NO_LLAMA_CPP")) SKIP("FRUGAL_NO_LLAMA_CPP is set");
    char harness[1024], src[1024];
    int rc = run("sh tests/llama_cpp.sh build", harness, sizeof harness);
    if (rc == 77) return 77; // its SKIP line was printed
    if (rc) { fprintf(stderr, "tests/llama_cpp.sh failed (exit %d): %s\n", rc, harness); return 1; }
    if (run("sh tests/llama_cpp.sh src", src, sizeof src)) { fprintf(stderr, "tests/llama_cpp.sh src failed\n"); return 1; }
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    char ids_path[1100], path[1100], keys_cmd[16384];
    snprintf(keys_cmd, sizeof keys_cmd, "/usr/bin/python3 tests/llama_keys.py '%s'", src);
    printf("llama.cpp (node-llama-cpp@%s) vs frugal on the same GGUF, %d positions; relative L2 logit errors: max and median over\n"
           "positions; fg/ll-f32: median error of frugal / llama.cpp against its own f32 logits (what the type costs);\n"
           "greedy: steps where frugal picks llama.cpp's token given the same context, then free-running agreement\n",
           "3.21.1", n_in);
    printf("%-36s %-7s %9s %9s %9s %9s %7s %7s\n", "model", "file", "max", "median", "fg-f32", "ll-f32", "greedy", "free");
    for (int ci = 0; ci < N_CASES; ci++) {
        fg_model *m = make_model(&CASES[ci], 1000 + (uint64_t)ci);
        CHECK_MSG(m != NULL, "%s: %s", CASES[ci].name, fg_last_error());
        if (!m) continue;
        int32_t ids[T_MAX];
        snprintf(ids_path, sizeof ids_path, "%s/ids.txt", tmpdir);
        write_ids(ids_path, ids, 77 + (uint64_t)ci, 256);
        llama_out lo[N_TYPES] = {{0}};
        frugal_out fo[N_TYPES] = {{0}};
        for (int ti = 0; ti < N_TYPES; ti++) {
            snprintf(path, sizeof path, "%s/m%d-%s.gguf", tmpdir, ci, TYPE_NAME[ti]);
            if (fg_gguf_export(path, m, TYPE_ID[ti], NULL, 0)) { CHECK_MSG(0, "export %s %s: %s", CASES[ci].name, TYPE_NAME[ti], fg_last_error()); continue; }
            size_t kl = strlen(keys_cmd);
            snprintf(keys_cmd + kl, sizeof keys_cmd - kl, " '%s'", path);
            compare_file(CASES[ci].name, TYPE_NAME[ti], ti, harness, path, ids_path, ids, &lo[ti], &fo[ti], ti ? &lo[0] : NULL,
                         ti ? &fo[0] : NULL);
        }
        // the reverse: llama.cpp quantises the f32 export, frugal reads the result
        for (int ti = 2; ti < N_TYPES; ti++) {
            char in[1100], cmd[4096], last[1024], label[32];
            snprintf(in, sizeof in, "%s/m%d-f32.gguf", tmpdir, ci);
            snprintf(path, sizeof path, "%s/m%d-llq-%s.gguf", tmpdir, ci, TYPE_NAME[ti]);
            snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' %s 2>&1", harness, in, path, TYPE_NAME[ti]);
            if (run(cmd, last, sizeof last)) { CHECK_MSG(0, "llama_model_quantize %s: %s", TYPE_NAME[ti], last); continue; }
            snprintf(label, sizeof label, "ll-%s", TYPE_NAME[ti]);
            llama_out l = {0};
            frugal_out fq = {0};
            compare_file(CASES[ci].name, label, ti, harness, path, ids_path, ids, &l, &fq, &lo[0], &fo[0]);
            free(l.logits);
            frugal_out_free(&fq);
        }
        for (int ti = 0; ti < N_TYPES; ti++) { free(lo[ti].logits); frugal_out_free(&fo[ti]); }
        fg_model_free(m);
    }
    kquant_cases(harness, src);
    hf_cases(harness, keys_cmd, sizeof keys_cmd);
    char last[1024];
    int kr = run(keys_cmd, last, sizeof last);
    printf("metadata keys: %s\n", last);
    CHECK_MSG(kr == 0, "tests/llama_keys.py: %s", last);
    char rm[1200];
    snprintf(rm, sizeof rm, "rm -rf '%s'", tmpdir);
    if (getenv("FRUGAL_KEEP_TMP")) printf("files kept in %s\n", tmpdir); // for debugging
    else if (system(rm)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return TEST_DONE();
}
