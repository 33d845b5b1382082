// test_interop.c: Hugging Face directories and GGUF files in and out (docs/formats.md).
//
// tests/ref/hf_cases.py writes tiny random checkpoints of every architecture frugal imports
// (DeepSeek-V2 softmax/greedy sharded F32, DeepSeek-V3 sigmoid/noaux_tc/groups/YaRN in BF16 with an
// MTP layer, a V3 with FP8 block-scaled matrices, Qwen2 with biases in F16, Llama with llama3 RoPE
// scaling) and the logits of the PyTorch reference (ref.py's model code). Checked here:
//  - each loads and its logits are within 1e-5 (relative L2) of the reference computed on the
//    stored values (for FP8: on the dequantised weights); V3's whole MTP layer is loaded, its
//    depth-1 logits (the batched context's MTP over the latent cache) within 1e-5 of the
//    reference's, and speculative greedy decoding equals plain; an MTP layer held only in part
//    (the V2 case) is skipped with a notice;
//  - FP8: logits against the unquantised fp32 weights within the documented budget;
//  - HF -> frugal -> HF: every tensor bit-identical (F32 and BF16 cases, sharded source included);
//  - GGUF export (f32) -> import: logits identical to the HF load (bit for bit), the tokenizer
//    encodes the same ids; bf16 and q8_0 exports import within their rounding budgets.
// Needs python3 with torch (Debian: python3-torch); skipped with a note otherwise.
#include <string.h>
#include <sys/stat.h>

#include "formats/safetensors.h"
#include "infer/generate.h"
#include "infer/wstore.h"
#include "model/model.h"
#include "test.h"

static const char *find_python(void) {
    static const char *cands[] = {"/usr/bin/python3", "python3"};
    for (int i = 0; i < 2; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import torch, numpy' >/dev/null 2>&1", cands[i]);
        if (system(cmd) == 0) return cands[i];
    }
    return NULL;
}

static char notices[8192];
static void collect(const char *msg) {
    size_t n = strlen(notices);
    snprintf(notices + n, sizeof notices - n, "%s\n", msg);
}

// Logits (2, 16, V) of m on the expected file's input ids, into a malloc'd buffer.
static float *run_logits(fg_model *m, const fg_safetensors *exp) {
    const fg_st_tensor *ids = fg_safetensors_find(exp, "input_ids");
    if (!ids || ids->numel != 32) return NULL;
    float f[32];
    int32_t in[32];
    if (fg_safetensors_read_f32(exp, "input_ids", f, 32)) return NULL;
    for (int i = 0; i < 32; i++) in[i] = (int32_t)f[i];
    if (fg_model_forward(m, in, NULL, 2, 16, NULL)) { fprintf(stderr, "forward: %s\n", fg_last_error()); return NULL; }
    size_t n = 32 * (size_t)m->cfg.vocab_size;
    float *out = malloc(sizeof(float) * n);
    memcpy(out, m->logits, sizeof(float) * n);
    return out;
}

// MTP depth 1 of m, run by the batched inference context over the latent cache (each of the two
// sequences: the main model's states, then the depth over positions 0..14 with tokens 1..15),
// against the reference's mtp_logits.1 (2, 15, V): the relative error, or 1e9 on failure.
// The FP8 directory opened as a mapped store (fg_wstore_open_hf): its linear matrices stay FP8 with
// their block scales (ops/fp8.c), and a session over it decodes token by token (matrix-vector
// products on the bytes as stored) to the logits of the fp32 model loaded from the same files
// (fp32 dequantised weights): same weights, so only fp32 summation order differs. Returns the worst
// relative error over 16 positions, or 1 on failure; *fp8 counts the FP8 matrices.
static double fp8_mapped_err(const char *dir, fg_model *m, int *fp8) {
    fg_wstore *ws = fg_wstore_open_hf(dir, NULL);
    *fp8 = 0;
    if (!ws) { fprintf(stderr, "%s: %s\n", dir, fg_last_error()); return 1; }
    for (int i = 0; i < ws->n; i++) *fp8 += ws->type[i] == FG_F8_E4M3;
    int V = m->cfg.vocab_size, T = 16;
    int32_t tok[16];
    for (int i = 0; i < T; i++) tok[i] = (i * 7 + 3) % V;
    double worst = 1;
    fg_infer *s = fg_infer_create_store(ws, T, FG_KV_AUTO, FG_F32);
    if (s && fg_model_forward(m, tok, NULL, 1, T, NULL) == 0) {
        worst = 0;
        for (int t = 0; t < T; t++) {
            const float *lg = fg_infer_feed(s, &tok[t], 1);
            double e = lg ? tst_rel_err(lg, m->logits + (size_t)t * V, V) : 1;
            worst = e > worst ? e : worst;
        }
    }
    fg_infer_free(s);
    fg_wstore_free(ws);
    return worst;
}

static double mtp_err(const fg_model *m, const fg_safetensors *exp) {
    int V = m->cfg.vocab_size, C = m->cfg.hidden_size, T = 16;
    float f[32], *want = malloc(sizeof(float) * 30 * V), *got = malloc(sizeof(float) * 30 * V);
    float *h = malloc(sizeof(float) * T * C);
    int32_t in[32], seqs[16], pos[16];
    uint8_t all[16];
    double e = 1e9;
    fg_wstore *ws = fg_wstore_from_model(m, FG_F32);
    fg_ctx_params p = {.n_ctx = 64, .max_len = 32, .max_seqs = 2, .max_batch = 16, .kv_type = FG_F32, .mtp = 1};
    fg_ctx *ctx = ws ? fg_ctx_create(ws, &p) : NULL;
    if (!ctx || fg_safetensors_read_f32(exp, "input_ids", f, 32) || fg_safetensors_read_f32(exp, "mtp_logits.1", want, 30 * V))
        goto done;
    for (int i = 0; i < 32; i++) in[i] = (int32_t)f[i];
    for (int b = 0; b < 2; b++) {
        int seq = fg_ctx_seq_new(ctx);
        for (int i = 0; i < T; i++) { seqs[i] = seq; pos[i] = i; all[i] = 1; }
        fg_batch main = {.n = T, .token = in + b * T, .seq = seqs}, mtp = {.n = T - 1, .token = in + b * T + 1, .seq = seqs,
                                                                          .pos = pos, .logits = all};
        if (fg_ctx_decode_h(ctx, &main, NULL, h) || fg_ctx_mtp(ctx, 1, &mtp, h, NULL, got + (size_t)b * 15 * V)) goto done;
    }
    e = tst_rel_err(got, want, (size_t)30 * V);
done:
    fg_ctx_free(ctx);
    fg_wstore_free(ws);
    free(want); free(got); free(h);
    return e;
}

static double logits_err(const float *got, const fg_safetensors *exp, const char *name, size_t n) {
    float *want = malloc(sizeof(float) * n);
    double e = fg_safetensors_read_f32(exp, name, want, (int64_t)n) ? 1e9 : tst_rel_err(got, want, n);
    free(want);
    return e;
}

// Every tensor of the exported file equals the source's (dtype, shape, bytes), and every source
// tensor of the main model is exported.
static void check_roundtrip(const char *src_dir, const char *out_dir, int sharded) {
    char p[1100];
    fg_safetensors src[2] = {{0}}, out = {0};
    int ns = sharded ? 2 : 1;
    for (int k = 0; k < ns; k++) {
        if (sharded) snprintf(p, sizeof p, "%s/model-%05d-of-00002.safetensors", src_dir, k + 1);
        else snprintf(p, sizeof p, "%s/model.safetensors", src_dir);
        CHECK_MSG(fg_safetensors_open(&src[k], p) == 0, "%s", fg_last_error());
    }
    snprintf(p, sizeof p, "%s/model.safetensors", out_dir);
    CHECK_MSG(fg_safetensors_open(&out, p) == 0, "%s", fg_last_error());
    int n_src = 0, same = 0, layers = 0;
    for (int i = 0; i < out.n; i++) {
        int l;
        if (sscanf(out.t[i].name, "model.layers.%d.", &l) == 1 && l + 1 > layers) layers = l + 1;
    }
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < src[k].n; i++) {
            int l;
            n_src += !(sscanf(src[k].t[i].name, "model.layers.%d.", &l) == 1 && l >= layers); // MTP layers are skipped
        }
    for (int i = 0; i < out.n; i++) {
        const fg_st_tensor *o = &out.t[i], *s = NULL;
        for (int k = 0; k < ns && !s; k++) s = fg_safetensors_find(&src[k], o->name);
        CHECK_MSG(s != NULL, "exported tensor %s is not in the source", o->name);
        if (!s) continue;
        int ok = s->dtype == o->dtype && s->ndim == o->ndim && s->nbytes == o->nbytes && !memcmp(s->data, o->data, s->nbytes);
        for (int d = 0; d < s->ndim; d++) ok &= s->shape[d] == o->shape[d];
        CHECK_MSG(ok, "%s: tensor %s differs after HF -> frugal -> HF", out_dir, o->name);
        same += ok;
    }
    CHECK_MSG(same == n_src, "%s: %d of %d source tensors round-tripped", out_dir, same, n_src);
    for (int k = 0; k < ns; k++) fg_safetensors_close(&src[k]);
    fg_safetensors_close(&out);
}

// A dense GQA model with YaRN RoPE scaling survives GGUF export and import (llama.cpp's
// rope.scaling.* keys for llama/qwen2 too): same config fields, bit-identical logits.
static void check_dense_yarn(const char *dir) {
    static const char json[] = "{\"attention_type\": \"gqa\", \"vocab_size\": 64, \"hidden_size\": 32, \"num_hidden_layers\": 2,"
        " \"intermediate_size\": 48, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 8,"
        " \"attention_bias\": true, \"rope_interleave\": false, \"max_position_embeddings\": 256,"
        " \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4, \"original_max_position_embeddings\": 64,"
        " \"beta_fast\": 32, \"beta_slow\": 1, \"mscale\": 1, \"mscale_all_dim\": 1}}";
    fg_config c;
    CHECK_MSG(fg_config_from_json(&c, json, strlen(json), "dense-yarn", NULL) == 0, "%s", fg_last_error());
    fg_model *m = fg_model_create(&c);
    if (!m) { CHECK_MSG(0, "%s", fg_last_error()); return; }
    CHECK(m->cfg.rope_yarn);
    fg_model_init_weights(m, 3);
    char g[512];
    snprintf(g, sizeof g, "%s/dense_yarn.gguf", dir);
    CHECK_MSG(fg_gguf_export(g, m, FG_F32, NULL, 0) == 0, "%s: %s", g, fg_last_error());
    fg_model *mg = fg_model_open(g, NULL, NULL, NULL);
    CHECK_MSG(mg != NULL, "%s: %s", g, fg_last_error());
    if (mg) {
        CHECK(mg->cfg.rope_yarn && mg->cfg.rope_factor == 4 && mg->cfg.rope_original_max_position_embeddings == 64);
        int32_t tok[100];
        for (int i = 0; i < 100; i++) tok[i] = (i * 7 + 3) % 64;
        size_t n = 100 * (size_t)c.vocab_size;
        float *a = malloc(sizeof(float) * n);
        CHECK(fg_model_forward(m, tok, NULL, 1, 100, NULL) == 0);
        memcpy(a, m->logits, sizeof(float) * n);
        CHECK(fg_model_forward(mg, tok, NULL, 1, 100, NULL) == 0);
        double e = tst_rel_err(mg->logits, a, n);
        printf("dense GQA + YaRN: GGUF f32 round trip, logits rel err %.1e\n", e);
        CHECK_MSG(e == 0, "dense YaRN GGUF round trip: logits relative error %.3e", e);
        free(a);
        fg_model_free(mg);
    }
    fg_model_free(m);
}

int main(void) {
    const char *py = find_python();
    if (!py) SKIP("python3 with torch and numpy not found: Hugging Face import tests not run (apt install python3-torch python3-numpy)");
    const char *dir = "build/hfcases";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s tests/ref/hf_cases.py %s >/dev/null", py, dir);
    if (system(cmd) != 0) { fprintf(stderr, "case generation failed: %s\n", cmd); return 1; }
    static const struct { const char *name; const char *rt; int sharded; double q8_budget; } cases[] = {
        {"dsv2_softmax", "f32", 1, 5e-2}, {"dsv3_yarn_bf16", "bf16", 0, 0.1}, {"dsv3_fp8", NULL, 0, 0.25},
        {"qwen2_f16", NULL, 0, 5e-2}, {"llama3", "f32", 0, 5e-2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char path[512], exp_path[512];
        snprintf(path, sizeof path, "%s/%s", dir, cases[c].name);
        snprintf(exp_path, sizeof exp_path, "%s/%s.expected.safetensors", dir, cases[c].name);
        fg_safetensors exp;
        if (fg_safetensors_open(&exp, exp_path)) { fprintf(stderr, "%s\n", fg_last_error()); return 1; }
        notices[0] = 0;
        char *td = NULL;
        size_t tl = 0;
        fg_model *m = fg_model_open(path, &td, &tl, collect);
        CHECK_MSG(m != NULL, "%s: %s", path, fg_last_error());
        if (!m) { fg_safetensors_close(&exp); continue; }
        size_t n = 32 * (size_t)m->cfg.vocab_size;
        float *hf = run_logits(m, &exp);
        CHECK(hf != NULL);
        double e = hf ? logits_err(hf, &exp, "logits", n) : 1;
        printf("%-15s HF load: logits rel err %.2e", cases[c].name, e);
        CHECK_MSG(e < 1e-5, "%s: logits relative error %.3e", cases[c].name, e);
        if (fg_safetensors_find(&exp, "logits_fp32")) {
            double e0 = logits_err(hf, &exp, "logits_fp32", n);
            printf(", vs unquantised fp32 weights %.2e", e0);
            CHECK_MSG(e0 < 0.5, "%s: FP8 logits relative error %.3e beyond the documented budget 0.5", cases[c].name, e0);
            int nf;
            double em = fp8_mapped_err(path, m, &nf);
            printf(", mapped FP8 (%d matrices) decode vs fp32 load %.2e", nf, em);
            CHECK_MSG(nf > 0, "%s: no matrix stayed FP8 in the mapped store", cases[c].name);
            CHECK_MSG(em < 1e-5, "%s: mapped FP8 decode vs the fp32 load: relative error %.3e", cases[c].name, em);
        }
        if (strstr(cases[c].name, "dsv2")) { // an MTP layer held in part: the main model alone, with a notice
            CHECK_MSG(strstr(notices, "multi-token-prediction layer but the files lack") != NULL, "no MTP notice: %s", notices);
            CHECK(m->cfg.num_nextn_predict_layers == 0);
        }
        if (strstr(cases[c].name, "dsv3_yarn")) { // a whole MTP layer: loaded, its logits as the reference's, and it drafts
            CHECK(td != NULL);
            CHECK_MSG(m->cfg.num_nextn_predict_layers == 1, "%s: MTP layer not loaded (%s)", cases[c].name, notices);
            double em = mtp_err(m, &exp);
            printf(", MTP depth 1 %.2e", em);
            CHECK_MSG(em < 1e-5, "%s: MTP logits relative error %.3e", cases[c].name, em);
            fg_infer *sa = fg_infer_create(m, 32), *sb = fg_infer_create(m, 32);
            int32_t prompt[6] = {3, 17, 5, 99, 42, 7}, a[12], b[12];
            fg_sample_opts o = {.temperature = 0, .top_p = 1, .max_new_tokens = 10};
            int na = sa ? fg_generate(sa, prompt, 6, &o, a, 12, NULL, NULL) : -1;
            o.speculative = 1;
            int nb = sb ? fg_generate(sb, prompt, 6, &o, b, 12, NULL, NULL) : -2;
            fg_spec_stats st;
            if (sb) fg_infer_spec_stats(sb, &st);
            CHECK_MSG(na == 10 && na == nb && !memcmp(a, b, sizeof a[0] * 10) && sb && st.rounds > 0,
                      "%s: speculative greedy differs from plain (%d vs %d tokens)", cases[c].name, na, nb);
            fg_infer_free(sa);
            fg_infer_free(sb);
        }
        // HF -> frugal -> HF
        if (cases[c].rt) {
            char out[512];
            snprintf(out, sizeof out, "%s/%s.rt", dir, cases[c].name);
            int type = !strcmp(cases[c].rt, "bf16") ? FG_BF16 : FG_F32;
            CHECK_MSG(fg_hf_export(out, m, type, td, tl) == 0, "%s", fg_last_error());
            check_roundtrip(path, out, cases[c].sharded);
            fg_model *m2 = fg_model_open(out, NULL, NULL, NULL);
            CHECK_MSG(m2 != NULL, "%s: %s", out, fg_last_error());
            float *l2 = m2 ? run_logits(m2, &exp) : NULL;
            CHECK(l2 && hf && !memcmp(l2, hf, sizeof(float) * n));
            free(l2);
            fg_model_free(m2);
        }
        // GGUF: f32 round trip is exact; bf16 and q8_0 within rounding
        static const char *const types[] = {"f32", "bf16", "q8_0", "q4_0"};
        static const int tcode[] = {FG_F32, FG_BF16, FG_Q8_0, FG_Q4_0};
        for (int t = 0; t < 4; t++) {
            char g[512];
            snprintf(g, sizeof g, "%s/%s.%s.gguf", dir, cases[c].name, types[t]);
            CHECK_MSG(fg_gguf_export(g, m, tcode[t], td, tl) == 0, "%s: %s", g, fg_last_error());
            char *gtd = NULL;
            size_t gtl = 0;
            fg_model *mg = fg_model_open(g, &gtd, &gtl, NULL);
            CHECK_MSG(mg != NULL, "%s: %s", g, fg_last_error());
            if (!mg) continue;
            float *lg = run_logits(mg, &exp);
            double eg = lg && hf ? tst_rel_err(lg, hf, n) : 1;
            printf(", gguf %s %.1e", types[t], eg);
            if (t == 0) CHECK_MSG(lg && hf && !memcmp(lg, hf, sizeof(float) * n), "%s: GGUF f32 logits differ (rel %.3e)", g, eg);
            if (t == 0 && m->cfg.num_nextn_predict_layers) { // the MTP layer under llama.cpp's nextn names
                CHECK_MSG(mg->cfg.num_nextn_predict_layers == m->cfg.num_nextn_predict_layers, "%s: MTP layer lost", g);
                CHECK_MSG(mtp_err(mg, &exp) < 1e-5, "%s: MTP logits after the GGUF round trip", g);
            }
            else if (t < 3) CHECK_MSG(eg < (t == 1 ? 2e-2 : cases[c].q8_budget), "%s: GGUF %s logits relative error %.3e", g, types[t], eg);
            else { // Q4_0 moves random tiny models' logits by 0.3-0.6: check the weights instead
                double ew = tst_rel_err(mg->params, m->params, m->n_params);
                printf(" (weights %.1e)", ew);
                CHECK_MSG(ew > 0.02 && ew < 0.12, "%s: Q4_0 weights relative error %.3e outside [0.02, 0.12]", g, ew);
            }
            CHECK((td == NULL) == (gtd == NULL));
            if (td && gtd) { // the same tokenizer, through GGUF metadata
                fg_tokenizer *a = fg_tokenizer_load_mem(td, tl, "a"), *b = fg_tokenizer_load_mem(gtd, gtl, "b");
                CHECK(a && b);
                const char *text = "Hello world 12345, <\xef\xbd\x9c" "User\xef\xbd\x9c> caf\xc3\xa9";
                int32_t ia[64], ib[64];
                size_t na = a ? fg_tokenizer_encode(a, text, strlen(text), 1, ia, 64) : 0;
                size_t nb = b ? fg_tokenizer_encode(b, text, strlen(text), 1, ib, 64) : 1;
                CHECK(na == nb && na <= 64 && !memcmp(ia, ib, sizeof(int32_t) * na));
                fg_tokenizer_free(a);
                fg_tokenizer_free(b);
            }
            free(gtd);
            free(lg);
            fg_model_free(mg);
        }
        printf("\n");
        free(hf);
        free(td);
        fg_model_free(m);
        fg_safetensors_close(&exp);
    }
    check_dense_yarn(dir);
    return TEST_DONE();
}
