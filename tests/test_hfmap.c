// test_hfmap.c: Hugging Face directories opened as mapped weight stores (fg_wstore_open_hf,
// docs/formats.md "Hugging Face directory").
//
// Random models (MLA + MoE with a routing bias, and a Qwen2-style GQA model with biases) are rounded
// to bf16 and exported as BF16 HF directories by frugal's own writer, so no Python is needed. Checked:
//  - the mapped store reads every matrix in place: BF16, pointing inside one of the store's
//    mappings, with only the fp32 vectors in owned memory (a small fraction of the weights);
//  - its logits, a prompt chunk then token by token, match a store of bf16 weights converted from
//    the fp32 load of the same directory within 1e-5 (relative L2 per step);
//  - sharded (two files + index): two mappings, logits bit-identical to the single file;
//  - a data area at an odd offset (BF16 misaligned): matrices copied into owned memory, same logits;
//  - F16 shards: converted to fp32 in owned memory, logits equal to the fp32 load's;
//  - bad input: a truncated shard and a tensor of an unsupported dtype give one-line errors that
//    name the file and the tensor; a session whose KV cache cannot fit in memory is refused.
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "ops/quant.h"
#include "infer/wstore.h"
#include "model/model.h"
#include "test.h"
#include "util.h"

#define PROMPT 5
#define STEPS 10

static char dir[] = "/tmp/fg_hfmapXXXXXX";

static void path_of(char *out, size_t n, const char *a, const char *b) { snprintf(out, n, "%s/%s/%s", dir, a, b); }

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int spit(const char *path, const void *a, size_t na, const void *b, size_t nb) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(a, 1, na, f) == na && (!nb || fwrite(b, 1, nb, f) == nb);
    return fclose(f) == 0 && ok ? 0 : -1;
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    uint8_t *b = slurp(from, &n);
    CHECK(b && spit(to, b, n, NULL, 0) == 0);
    free(b);
}

// A random model of preset `preset` whose weights are exactly bf16 values.
static fg_model *bf16_model(const char *preset, int qwen2) {
    fg_config c;
    if (fg_config_preset(&c, preset)) { fprintf(stderr, "%s\n", fg_last_error()); exit(1); }
    if (qwen2) { c.attention_bias = 1; c.rope_interleave = 0; }
    fg_model *m = fg_model_create(&c);
    if (!m) { fprintf(stderr, "%s\n", fg_last_error()); exit(1); }
    fg_model_init_weights(m, 11);
    for (size_t i = 0; i < m->n_params; i++) {
        // biases and the routing bias start at zero: give them values so that reading them matters
        float v = m->params[i] == 0 ? 0.01f * (float)((i * 2654435761u) % 97) - 0.48f : m->params[i];
        uint32_t bits = (uint32_t)fg_f32_to_bf16(v) << 16;
        memcpy(&m->params[i], &bits, 4);
    }
    return m;
}

// Logits of two stores over the same tokens: a PROMPT-token chunk, then STEPS single tokens.
// Returns the largest per-step relative error; *same = 1 when every step is bit-identical.
static double compare_stores(const fg_wstore *a, const fg_wstore *b, int *same) {
    const fg_config *c = fg_wstore_config(a);
    fg_infer *sa = fg_infer_create_store(a, PROMPT + STEPS, FG_KV_AUTO, FG_F32);
    fg_infer *sb = fg_infer_create_store(b, PROMPT + STEPS, FG_KV_AUTO, FG_F32);
    CHECK_MSG(sa && sb, "%s", fg_last_error());
    if (!sa || !sb) { fg_infer_free(sa); fg_infer_free(sb); *same = 0; return 1e9; }
    int32_t tok[PROMPT + STEPS];
    for (int i = 0; i < PROMPT + STEPS; i++) tok[i] = (int32_t)((i * 37 + 5) % c->vocab_size);
    double worst = 0;
    *same = 1;
    for (int step = 0; step <= STEPS; step++) {
        int at = step ? PROMPT + step - 1 : 0, n = step ? 1 : PROMPT;
        if (step == STEPS) break;
        const float *la = fg_infer_feed(sa, tok + at, n), *lb = fg_infer_feed(sb, tok + at, n);
        CHECK_MSG(la && lb, "%s", fg_last_error());
        if (!la || !lb) { worst = 1e9; break; }
        double e = tst_rel_err(la, lb, (size_t)c->vocab_size);
        worst = e > worst ? e : worst;
        *same &= !memcmp(la, lb, sizeof(float) * c->vocab_size);
    }
    fg_infer_free(sa);
    fg_infer_free(sb);
    return worst;
}

// Is p inside one of the store's mappings?
static int in_mapping(const fg_wstore *ws, const void *p) {
    for (int k = 0; k < ws->n_maps; k++)
        if ((const uint8_t *)p >= (const uint8_t *)ws->maps[k] && (const uint8_t *)p < (const uint8_t *)ws->maps[k] + ws->map_lens[k])
            return 1;
    return 0;
}

static size_t matrix_bf16_bytes(const fg_wstore *ws) {
    size_t b = 0;
    for (int i = 0; i < ws->n; i++)
        if (ws->t[i].ndim == 2) b += 2 * ws->t[i].numel;
    return b;
}

static char notices[4096];
static void collect(const char *msg) {
    size_t n = strlen(notices);
    snprintf(notices + n, sizeof notices - n, "%s\n", msg);
}

// Opens path (mapped) and expects failure with an error containing want, on one line.
static void expect_error(const char *path, const char *want) {
    fg_wstore *ws = fg_wstore_open_hf(path, NULL);
    CHECK_MSG(ws == NULL, "%s: opened, expected an error with '%s'", path, want);
    fg_wstore_free(ws);
    if (ws) return;
    const char *e = fg_last_error();
    CHECK_MSG(strstr(e, want) != NULL, "%s: error '%s' lacks '%s'", path, e, want);
    CHECK_MSG(strchr(e, '\n') == NULL, "error is not one line: %s", e);
}

// Writes dir/<name>_sharded: the model's table split into two BF16 shards (vectors as exported:
// the routing bias F32) with model.safetensors.index.json.
static void write_sharded(const fg_model *m, const char *name) {
    char d[512], p[600];
    snprintf(d, sizeof d, "%s/%s_sharded", dir, name);
    CHECK(mkdir(d, 0755) == 0);
    char src[600];
    path_of(src, sizeof src, name, "config.json");
    snprintf(p, sizeof p, "%s/config.json", d);
    copy_file(src, p);
    int half = m->n_tensors / 2;
    FILE *ix = NULL;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    CHECK((ix = fopen(p, "w")) != NULL);
    if (!ix) return;
    fprintf(ix, "{\"metadata\": {}, \"weight_map\": {");
    for (int k = 0; k < 2; k++) {
        int lo = k ? half : 0, hi = k ? m->n_tensors : half;
        fg_st_out *o = calloc((size_t)(hi - lo), sizeof *o);
        for (int i = lo; i < hi; i++) {
            const fg_tensor *t = &m->tensors[i];
            o[i - lo] = (fg_st_out){t->name, t->ndim, {t->shape[0], t->shape[1]}, m->params + t->offset,
                                    (t->flags & FG_TENSOR_BUFFER) ? FG_F32 : FG_BF16};
            fprintf(ix, "%s\"%s\": \"model-%05d-of-00002.safetensors\"", i ? ", " : "", t->name, k + 1);
        }
        snprintf(p, sizeof p, "%s/model-%05d-of-00002.safetensors", d, k + 1);
        CHECK_MSG(fg_safetensors_write_f32(p, o, hi - lo) == 0, "%s", fg_last_error());
        free(o);
    }
    fprintf(ix, "}}\n");
    fclose(ix);
}

// Writes dir/<name>_odd: the single file with its header one byte longer (a trailing space), so
// the data area starts at an odd offset and no BF16 matrix is 2-byte aligned.
static void write_odd(const char *name) {
    char d[512], p[600], src[600];
    snprintf(d, sizeof d, "%s/%s_odd", dir, name);
    CHECK(mkdir(d, 0755) == 0);
    path_of(src, sizeof src, name, "config.json");
    snprintf(p, sizeof p, "%s/config.json", d);
    copy_file(src, p);
    path_of(src, sizeof src, name, "model.safetensors");
    size_t n;
    uint8_t *b = slurp(src, &n);
    CHECK(b != NULL);
    if (!b) return;
    uint64_t hlen;
    memcpy(&hlen, b, 8);
    uint8_t *o = malloc(n + 1);
    uint64_t h2 = hlen + 1;
    memcpy(o, &h2, 8);
    memcpy(o + 8, b + 8, hlen);
    o[8 + hlen] = ' ';
    memcpy(o + 9 + hlen, b + 8 + hlen, n - 8 - hlen);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    CHECK(spit(p, o, n + 1, NULL, 0) == 0);
    free(o);
    free(b);
}

static void check_model(const char *name, const char *preset, int qwen2) {
    fg_model *m = bf16_model(preset, qwen2);
    char d[512];
    snprintf(d, sizeof d, "%s/%s", dir, name);
    CHECK_MSG(fg_hf_export(d, m, FG_BF16, NULL, 0) == 0, "%s", fg_last_error());

    // The mapped store: matrices BF16 in place, vectors (fp32) the only owned bytes.
    notices[0] = 0;
    fg_wstore *ws = fg_wstore_open_hf(d, collect);
    CHECK_MSG(ws != NULL, "%s: %s", d, fg_last_error());
    if (!ws) exit(1);
    CHECK(strstr(notices, "mapped from 1 file") != NULL);
    CHECK(ws->n_maps == 1);
    int in_place = 0, matrices = 0;
    for (int i = 0; i < ws->n; i++) {
        if (ws->t[i].ndim != 2) continue;
        matrices++;
        in_place += ws->type[i] == FG_BF16 && in_mapping(ws, ws->data[i]);
    }
    CHECK_MSG(in_place == matrices, "%s: %d of %d matrices read in place", name, in_place, matrices);
    size_t wb = matrix_bf16_bytes(ws);
    printf("%-8s mapped: %zu bytes owned of %zu bytes of bf16 matrices", name, fg_wstore_owned_bytes(ws), wb);
    CHECK_MSG(fg_wstore_owned_bytes(ws) * 20 < wb, "%s: the store owns %zu bytes (weights %zu)", name, fg_wstore_owned_bytes(ws), wb);

    // Against the converting path: fp32 load of the same directory, matrices converted to bf16.
    fg_model *m2 = fg_hf_load(d, NULL, NULL, NULL);
    CHECK_MSG(m2 != NULL, "%s", fg_last_error());
    fg_wstore *ref = m2 ? fg_wstore_from_model(m2, FG_BF16) : NULL;
    CHECK(ref != NULL);
    int same;
    double e = ref ? compare_stores(ws, ref, &same) : 1;
    printf(", logits vs converted bf16 store: rel err %.2e", e);
    CHECK_MSG(e < 1e-5, "%s: mapped store logits differ from the converted bf16 store by %.3e", name, e);

    // Sharded: two mappings, identical logits.
    write_sharded(m, name);
    snprintf(d, sizeof d, "%s/%s_sharded", dir, name);
    fg_wstore *sh = fg_wstore_open_hf(d, NULL);
    CHECK_MSG(sh != NULL, "%s: %s", d, fg_last_error());
    if (sh) {
        CHECK(sh->n_maps == 2);
        int ok = 0;
        for (int i = 0; i < sh->n; i++) ok += sh->t[i].ndim != 2 || in_mapping(sh, sh->data[i]);
        CHECK(ok == sh->n);
        compare_stores(sh, ws, &same);
        CHECK_MSG(same, "%s: sharded logits differ from the single file's", name);
    }
    fg_wstore_free(sh);

    // Misaligned data area: matrices copied into owned memory, identical logits.
    write_odd(name);
    snprintf(d, sizeof d, "%s/%s_odd", dir, name);
    fg_wstore *odd = fg_wstore_open_hf(d, NULL);
    CHECK_MSG(odd != NULL, "%s: %s", d, fg_last_error());
    if (odd) {
        CHECK_MSG(fg_wstore_owned_bytes(odd) >= wb, "%s: misaligned matrices not copied (%zu owned)", name, fg_wstore_owned_bytes(odd));
        for (int i = 0; i < odd->n; i++) // (vectors may stay in the mapping: the store reads them as fp32 copies)
            if (odd->t[i].ndim == 2) CHECK(!in_mapping(odd, odd->data[i]) && (uintptr_t)odd->data[i] % 2 == 0);
        compare_stores(odd, ws, &same);
        CHECK_MSG(same, "%s: logits of the misaligned copy differ", name);
    }
    fg_wstore_free(odd);

    // F16 shards: converted to fp32 into owned memory; logits as the fp32 load's.
    snprintf(d, sizeof d, "%s/%s_f16", dir, name);
    CHECK_MSG(fg_hf_export(d, m, FG_F16, NULL, 0) == 0, "%s", fg_last_error());
    fg_wstore *f16 = fg_wstore_open_hf(d, NULL);
    fg_model *m3 = fg_hf_load(d, NULL, NULL, NULL);
    fg_wstore *ref3 = m3 ? fg_wstore_from_model(m3, FG_F32) : NULL;
    CHECK_MSG(f16 && ref3, "%s: %s", d, fg_last_error());
    if (f16 && ref3) {
        CHECK(fg_wstore_owned_bytes(f16) >= 2 * wb);
        for (int i = 0; i < f16->n; i++)
            if (f16->t[i].ndim == 2) CHECK(f16->type[i] == FG_F32 && !in_mapping(f16, f16->data[i]));
        double e3 = compare_stores(f16, ref3, &same);
        printf(", F16 (converted) rel err %.2e", e3);
        CHECK_MSG(e3 < 1e-5, "%s: F16 store logits differ by %.3e", name, e3);
    }
    printf("\n");
    fg_wstore_free(f16); fg_wstore_free(ref3); fg_model_free(m3);
    fg_wstore_free(ref); fg_model_free(m2);
    fg_wstore_free(ws);
    fg_model_free(m);
}

static void check_bad_input(void) {
    char p[600], q[600], d[512];
    // A truncated shard.
    snprintf(d, sizeof d, "%s/trunc", dir);
    CHECK(mkdir(d, 0755) == 0);
    path_of(p, sizeof p, "mla", "config.json");
    snprintf(q, sizeof q, "%s/config.json", d);
    copy_file(p, q);
    path_of(p, sizeof p, "mla", "model.safetensors");
    size_t n;
    uint8_t *b = slurp(p, &n);
    CHECK(b != NULL);
    if (!b) return;
    snprintf(q, sizeof q, "%s/model.safetensors", d);
    CHECK(spit(q, b, n - 100, NULL, 0) == 0);
    expect_error(d, "is not within the data area");
    expect_error(d, "trunc/model.safetensors");
    // A tensor of a dtype frugal does not read (the embedding's BF16 relabelled I16, same size).
    uint64_t hlen;
    memcpy(&hlen, b, 8);
    char *h = (char *)b + 8, *at = NULL;
    for (char *x = h; x + 30 < h + hlen && !at; x++)
        if (!memcmp(x, "\"model.embed_tokens.weight\":{\"dtype\":\"BF16\"", 43)) at = x + 37;
    CHECK(at != NULL);
    if (at) {
        memcpy(at, "\"I16\" ", 6);
        CHECK(spit(q, b, n, NULL, 0) == 0);
        expect_error(d, "tensor 'model.embed_tokens.weight': dtype I16 is not supported");
    }
    free(b);
    // A missing directory and a directory without weights.
    snprintf(q, sizeof q, "%s/none", dir);
    expect_error(q, "not a Hugging Face checkpoint directory");
}

// A session whose KV cache cannot fit in this machine's memory is refused with the numbers,
// before anything is allocated (full per-head cache of a wide MLA layer over 2^18 positions: 43 GB).
static void check_session_memory(void) {
    fg_config c;
    CHECK(fg_config_preset(&c, "tiny") == 0);
    c.num_hidden_layers = 1; c.first_k_dense_replace = 1; c.num_attention_heads = 128;
    c.qk_nope_head_dim = 128; c.qk_rope_head_dim = 64; c.v_head_dim = 128; c.max_position_embeddings = 1 << 18;
    c.head_dim = c.hidden_size / c.num_attention_heads ? c.hidden_size / c.num_attention_heads : 1;
    fg_model *m = fg_model_create(&c);
    CHECK_MSG(m != NULL, "%s", fg_last_error());
    fg_wstore *ws = m ? fg_wstore_from_model(m, FG_F32) : NULL;
    CHECK(ws != NULL);
    double kv = 4.0 * c.max_position_embeddings * c.num_attention_heads * (128 + 64 + 128), mem = fg_phys_mem_bytes();
    if (ws && mem > 0 && kv > 0.95 * mem) {
        fg_infer *s = fg_infer_create_store(ws, c.max_position_embeddings, FG_KV_FULL, FG_F32);
        CHECK_MSG(s == NULL, "a %.1f GiB KV cache was accepted on a %.1f GiB machine", kv / 1073741824.0, mem / 1073741824.0);
        fg_infer_free(s);
        CHECK_MSG(strstr(fg_last_error(), "decoding session: the KV cache (40.0 GiB for 262144 positions)") != NULL, "%s", fg_last_error());
        // a short context of the same model is fine
        s = fg_infer_create_store(ws, 64, FG_KV_FULL, FG_F32);
        CHECK_MSG(s != NULL, "%s", fg_last_error());
        fg_infer_free(s);
    } else {
        printf("(session memory refusal not checked: this machine has %.0f GiB)\n", mem / 1073741824.0);
    }
    fg_wstore_free(ws);
    fg_model_free(m);
}

int main(void) {
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    check_model("mla", "demo", 0);
    check_model("gqa", "demo-student", 1);
    check_bad_input();
    check_session_memory();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return TEST_DONE();
}
