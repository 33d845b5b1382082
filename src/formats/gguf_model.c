// gguf_model.c: models in and out of GGUF, llama.cpp's format (docs/formats.md "GGUF models").
//
// Names: frugal's table uses Hugging Face names; GGUF uses llama.cpp's (blk.N.attn_q.weight, ...).
// Shapes: GGUF lists dimensions innermost first, so a (rows, cols) matrix has ne = {cols, rows} and
// the routed experts of a layer are one 3-D tensor ne = {in, out, E} (frugal stores them stacked the
// same way, expert by expert). Conventions of llama.cpp's converter that change values:
//  - llama: the rows of attn_q and attn_k (and their biases) are permuted per head so that llama.cpp's
//    interleaved ("normal") RoPE computes Hugging Face's rotate-half RoPE. Import undoes it (frugal then
//    runs rotate-half on the original rows); export applies it to rotate-half models. A GQA model
//    with interleaved RoPE (rope_interleave true) is exported as llama without the permutation.
//  - qwen2: rotate-half ("neox") RoPE in llama.cpp, rows as in Hugging Face.
//  - deepseek2: interleaved RoPE, rows as in Hugging Face. kv_b_proj is either one attn_kv_b
//    (older files) or split into attn_k_b (per head the transposed k_nope rows: ne {Dn, Rkv, H}) and
//    attn_v_b (ne {Rkv, Dv, H}) for llama.cpp's absorbed MLA; import reads both, export writes the split
//    form with head_count_kv 1, key_length Rkv+Dr, value_length Rkv, key/value_length_mla Dn+Dr / Dv.
//  - Llama 3 RoPE scaling is the tensor rope_freqs.weight (per-frequency divisors): export writes it
//    (plus frugal.rope.llama3.* keys with the exact parameters); import reads those keys, or fits the
//    tensor against Llama 3.1's rule (low 1, high 4, original context 8192) and refuses a mismatch.
// Tensor types read: FG_GGUF_READ_TYPES (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K
// Q6_K IQ4_NL); any other is refused by name. Written: F32 for vectors and the router; matrices in
// F32, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K, or per tensor by the Q4_K_M / Q5_K_M mixtures
// (mix_type); rows that a K-quant's 256-value super-blocks cannot hold fall back to Q8_0, others
// that blocks cannot hold stay F32.
// The tokenizer: tokenizer.ggml.* keys. Import hands them back as a metadata-only GGUF (what
// fg_tokenizer_load_mem and a frugal checkpoint's TOKN section take); export copies them from such
// bytes, converts a tokenizer.json, or describes frugal's byte-level ids as a 256-token BPE.
#include "formats/gguf.h"
#include "formats/interop.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "infer/wstore.h"
#include "ops/quant.h"
#include "model/model.h"
#include "tokenizer/bpe.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- names -----------------------------------------------------------------------------------

// GGUF name of a table tensor; *expert_kind = 0 for a normal tensor, 1 for a routed-expert matrix
// (the 3-D tensor covers every expert; only expert 0's table entry maps to it).
static int gguf_name(const char *hf, char *out, size_t cap) {
    static const struct { const char *hf, *gg; } MAP[] = {
        {"input_layernorm.weight", "attn_norm.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"}, {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.weight", "attn_k.weight"}, {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.weight", "attn_v.weight"}, {"self_attn.v_proj.bias", "attn_v.bias"},
        {"self_attn.o_proj.weight", "attn_output.weight"}, {"self_attn.q_a_proj.weight", "attn_q_a.weight"},
        {"self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"}, {"self_attn.q_b_proj.weight", "attn_q_b.weight"},
        {"self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"},
        {"self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"}, {"self_attn.kv_b_proj.weight", "attn_kv_b.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"}, {"mlp.down_proj.weight", "ffn_down.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"}, {"mlp.gate.weight", "ffn_gate_inp.weight"},
        {"mlp.gate.e_score_correction_bias", "exp_probs_b.bias"},
        {"mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight"},
        {"mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight"},
        {"mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight"},
        // MTP blocks (layers L .. L+D-1): llama.cpp's nextn names for DeepSeek-V3 / GLM-4.5
        {"enorm.weight", "nextn.enorm.weight"}, {"hnorm.weight", "nextn.hnorm.weight"},
        {"eh_proj.weight", "nextn.eh_proj.weight"}, {"shared_head.norm.weight", "nextn.shared_head_norm.weight"},
    };
    if (!strcmp(hf, "model.embed_tokens.weight")) { snprintf(out, cap, "token_embd.weight"); return 0; }
    if (!strcmp(hf, "model.norm.weight")) { snprintf(out, cap, "output_norm.weight"); return 0; }
    if (!strcmp(hf, "lm_head.weight")) { snprintf(out, cap, "output.weight"); return 0; }
    int l, e, off = 0;
    if (sscanf(hf, "model.layers.%d.%n", &l, &off) != 1 || !off) return -1;
    const char *rest = hf + off;
    char kind[16];
    if (sscanf(rest, "mlp.experts.%d.%15[a-z]_proj.weight", &e, kind) == 2) {
        snprintf(out, cap, "blk.%d.ffn_%s_exps.weight", l, kind);
        return 1;
    }
    for (size_t i = 0; i < sizeof MAP / sizeof *MAP; i++)
        if (!strcmp(rest, MAP[i].hf)) { snprintf(out, cap, "blk.%d.%s", l, MAP[i].gg); return 0; }
    return -1;
}

// ---- import ----------------------------------------------------------------------------------

// The GGUF tensor types frugal reads (FG_GGUF_READ_TYPES), dequantised to fp32 at load.
static int gguf_readable(uint32_t ggml) {
    int t = fg_dtype_from_ggml(ggml);
    return t >= 0 && (FG_GGUF_READ_TYPES >> t & 1);
}
#define GGUF_TYPES_HINT "(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL; hint: llama-quantize IN.gguf OUT.gguf Q4_K_M writes only those)"

// Decodes n elements of t starting at element `first` into dst (first and n are multiples of the
// type's block: rows are whole blocks, checked by fg_gguf_read_tensors).
static int gguf_decode(const fg_gguf *g, const fg_gguf_tensor *t, float *dst, uint64_t first, uint64_t n) {
    char tb[16];
    if (!gguf_readable(t->type))
        return fg_set_error("%s: GGUF tensor '%.*s' has type %s, which frugal does not read " GGUF_TYPES_HINT,
                            g->where, (int)t->name.len, t->name.s, fg_ggml_type_name(t->type, tb));
    const fg_dtype_traits *d = fg_dtype_info(fg_dtype_from_ggml(t->type));
    d->to_f32(dst, t->data + first / (uint64_t)d->block * (uint64_t)d->block_bytes, n);
    return 0;
}

static const fg_gguf_tensor *need_tensor(const fg_gguf *g, const char *name, int nd, uint64_t n0, uint64_t n1, uint64_t n2) {
    const fg_gguf_tensor *t = fg_gguf_find_tensor(g, name);
    if (!t) { fg_set_error("%s: GGUF tensor '%s' is missing", g->where, name); return NULL; }
    uint64_t want[4] = {n0, n1, n2, 1};
    int ok = 1;
    for (int d = 0; d < 4; d++) ok &= t->ne[d] == (d < nd ? want[d] : 1);
    if (!ok) {
        fg_set_error("%s: GGUF tensor '%s' has ne [%llu,%llu,%llu,%llu], the config expects [%llu,%llu,%llu] (innermost first)",
                     g->where, name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
                     (unsigned long long)t->ne[3], (unsigned long long)n0, (unsigned long long)(nd > 1 ? n1 : 1),
                     (unsigned long long)(nd > 2 ? n2 : 1));
        return NULL;
    }
    char tb[16];
    if (!t->data || !gguf_readable(t->type)) {
        fg_set_error("%s: GGUF tensor '%s' has type %s, which frugal does not read " GGUF_TYPES_HINT, g->where, name,
                     fg_ggml_type_name(t->type, tb));
        return NULL;
    }
    return t;
}

// Reorders the rows of a (H*D, cols) matrix between llama.cpp's per-head interleaved order and
// Hugging Face's rotate-half order: HF row h*D + j*D/2 + i <-> GGUF row h*D + 2i + j.
// Rows of rs bytes (any type: a row is permuted whole); tmp holds D rows.
static void permute_rows(uint8_t *w, int H, int D, size_t rs, int to_hf, uint8_t *tmp) {
    for (int h = 0; h < H; h++) {
        uint8_t *base = w + (size_t)h * D * rs;
        memcpy(tmp, base, rs * D);
        for (int i = 0; i < D / 2; i++)
            for (int j = 0; j < 2; j++) {
                int hf = j * (D / 2) + i, gg = 2 * i + j;
                if (to_hf) memcpy(base + (size_t)hf * rs, tmp + (size_t)gg * rs, rs);
                else memcpy(base + (size_t)gg * rs, tmp + (size_t)hf * rs, rs);
            }
    }
}
static void unpermute_rows(float *w, int H, int D, int cols, int to_hf, float *tmp) {
    permute_rows((uint8_t *)w, H, D, sizeof(float) * (size_t)cols, to_hf, (uint8_t *)tmp);
}

typedef struct { const fg_gguf *g; char arch[32]; } kctx;
static const fg_gguf_kv *akv(const kctx *k, const char *key) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    return fg_gguf_find(k->g, full);
}
static int aint(const kctx *k, const char *key, int *out, int required) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    if (!fg_gguf_find(k->g, full) && !required) return 0;
    int64_t v;
    if (fg_gguf_get_int(k->g, full, &v)) return -1;
    if (v < 0 || v > (1 << 30)) return fg_set_error("%s: GGUF key '%s' is out of range (%lld)", k->g->where, full, (long long)v);
    *out = (int)v;
    return 0;
}
static int aflt(const kctx *k, const char *key, float *out, int required) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", k->arch, key);
    if (!fg_gguf_find(k->g, full) && !required) return 0;
    return fg_gguf_get_f32(k->g, full, out);
}

// The config from the metadata. tie is decided by the presence of output.weight.
static int gguf_config(const fg_gguf *g, fg_config *c, int *arch_id, int *mtp, void (*notice)(const char *)) {
    static const char *const ARCHS[] = {"deepseek2", "llama", "qwen2"};
    fg_gguf_str a;
    if (fg_gguf_get_str(g, "general.architecture", &a)) return -1;
    kctx k = {g, ""};
    snprintf(k.arch, sizeof k.arch, "%.*s", (int)FG_MIN(a.len, 31), a.s);
    *arch_id = -1;
    for (int i = 0; i < 3; i++)
        if (a.len == strlen(ARCHS[i]) && !memcmp(a.s, ARCHS[i], a.len)) *arch_id = i;
    if (*arch_id < 0)
        return fg_set_error("%s: GGUF architecture '%s' is not supported (known: deepseek2, llama, qwen2)", g->where, k.arch);
    memset(c, 0, sizeof *c); // config.c's defaults for what GGUF does not say; the rest comes from the file
    c->moe_layer_freq = 1; c->n_group = c->topk_group = 1; c->routed_scaling_factor = 1; c->rope_factor = 1;
    c->rope_beta_fast = 32; c->rope_beta_slow = 1; c->rope_mscale = 1; c->rms_norm_eps = 1e-6f; c->rope_theta = 10000;
    const fg_gguf_tensor *emb = fg_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2 || emb->ne[1] > (1u << 24)) return fg_set_error("%s: GGUF tensor 'token_embd.weight' is missing or not a matrix", g->where);
    c->vocab_size = (int)emb->ne[1];
    int L = 0;
    if (aint(&k, "block_count", &L, 1) || aint(&k, "context_length", &c->max_position_embeddings, 1) ||
        aint(&k, "embedding_length", &c->hidden_size, 1) || aint(&k, "attention.head_count", &c->num_attention_heads, 1) ||
        aint(&k, "feed_forward_length", &c->intermediate_size, 0) ||
        aflt(&k, "attention.layer_norm_rms_epsilon", &c->rms_norm_eps, 1) || aflt(&k, "rope.freq_base", &c->rope_theta, 0))
        return -1;
    if (c->num_attention_heads < 1 || c->hidden_size < 1)
        return fg_set_error("%s: GGUF %s.attention.head_count and embedding_length must be >= 1", g->where, k.arch);
    c->head_dim = c->hidden_size / c->num_attention_heads;
    *mtp = 0;
    if (aint(&k, "nextn_predict_layers", mtp, 0)) return -1;
    if (*mtp >= L) return fg_set_error("%s: GGUF nextn_predict_layers %d >= block_count %d", g->where, *mtp, L);
    c->num_hidden_layers = L - *mtp;
    if (*mtp) { // loaded when the file holds them (llama.cpp's own probe) and frugal builds that depth
        char probe[64];
        snprintf(probe, sizeof probe, "blk.%d.nextn.eh_proj.weight", L - *mtp);
        if (*mtp <= FG_MTP_MAX && fg_gguf_find_tensor(g, probe)) c->num_nextn_predict_layers = *mtp;
        else if (notice) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s: skipping %d multi-token-prediction block(s) (%s): running the main model only",
                     g->where, *mtp, *mtp > FG_MTP_MAX ? "deeper than frugal builds" : "their nextn tensors are absent");
            notice(msg);
        }
    }
    c->tie_word_embeddings = fg_gguf_find_tensor(g, "output.weight") == NULL;
    if (*arch_id == 0) { // deepseek2
        c->attn_type = FG_ATTN_MLA;
        c->rope_interleave = 1;
        int kl = 0, vl = 0, klm = 0, vlm = 0, gating = 1, norm = 0;
        if (aint(&k, "attention.kv_lora_rank", &c->kv_lora_rank, 1) || aint(&k, "attention.q_lora_rank", &c->q_lora_rank, 0) ||
            aint(&k, "rope.dimension_count", &c->qk_rope_head_dim, 1) || aint(&k, "attention.key_length", &kl, 1) ||
            aint(&k, "attention.value_length", &vl, 1) || aint(&k, "attention.key_length_mla", &klm, 0) ||
            aint(&k, "attention.value_length_mla", &vlm, 0) || aint(&k, "leading_dense_block_count", &c->first_k_dense_replace, 0) ||
            aint(&k, "expert_count", &c->n_routed_experts, 0) || aint(&k, "expert_used_count", &c->num_experts_per_tok, 0) ||
            aint(&k, "expert_shared_count", &c->n_shared_experts, 0) ||
            aint(&k, "expert_feed_forward_length", &c->moe_intermediate_size, 0) ||
            aflt(&k, "expert_weights_scale", &c->routed_scaling_factor, 0) || aint(&k, "expert_gating_func", &gating, 0) ||
            aint(&k, "expert_weights_norm", &norm, 0) || aint(&k, "expert_group_count", &c->n_group, 0) ||
            aint(&k, "expert_group_used_count", &c->topk_group, 0))
            return -1;
        int dk = klm ? klm : kl;
        c->qk_nope_head_dim = dk - c->qk_rope_head_dim;
        c->v_head_dim = vlm ? vlm : vl;
        c->num_key_value_heads = c->num_attention_heads;
        c->norm_topk_prob = norm != 0;
        if (gating != 1 && gating != 2) return fg_set_error("%s: GGUF %s.expert_gating_func %d is not softmax (1) or sigmoid (2)", g->where, k.arch, gating);
        c->scoring_func = gating == 2 ? FG_SCORE_SIGMOID : FG_SCORE_SOFTMAX;
        int has_bias = 0;
        for (int l = 0; l < L && !has_bias; l++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.exp_probs_b.bias", l);
            has_bias = fg_gguf_find_tensor(g, nm) != NULL;
        }
        c->topk_method = has_bias ? FG_TOPK_NOAUX_TC : c->n_group > 1 ? FG_TOPK_GROUP_LIMITED_GREEDY : FG_TOPK_GREEDY;
    } else { // llama, qwen2
        c->attn_type = FG_ATTN_GQA;
        c->rope_interleave = 0; // llama: rows are un-permuted on import
        c->num_key_value_heads = c->num_attention_heads;
        if (aint(&k, "attention.head_count_kv", &c->num_key_value_heads, 0) || aint(&k, "attention.key_length", &c->head_dim, 0)) return -1;
        c->attention_bias = fg_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
        const fg_gguf_kv *fr = fg_gguf_find(g, "frugal.rope_interleave");
        if (fr && fr->type == FG_GGUF_BOOL && fr->val[0]) c->rope_interleave = 1; // exported without the permutation
        const fg_gguf_tensor *rf = fg_gguf_find_tensor(g, "rope_freqs.weight");
        if (rf) {
            c->rope_llama3 = 1;
            c->rope_factor = 8; c->rope_low_freq_factor = 1; c->rope_high_freq_factor = 4;
            c->rope_original_max_position_embeddings = 8192;
            const fg_gguf_kv *fl = fg_gguf_find(g, "frugal.rope.llama3.factor");
            if (fl) {
                if (fg_gguf_get_f32(g, "frugal.rope.llama3.factor", &c->rope_factor) ||
                    fg_gguf_get_f32(g, "frugal.rope.llama3.low_freq_factor", &c->rope_low_freq_factor) ||
                    fg_gguf_get_f32(g, "frugal.rope.llama3.high_freq_factor", &c->rope_high_freq_factor))
                    return -1;
                int64_t o;
                if (fg_gguf_get_int(g, "frugal.rope.llama3.original_max_position_embeddings", &o)) return -1;
                c->rope_original_max_position_embeddings = (int)FG_MIN(o, 1 << 30);
            } else if (fg_dtype_from_ggml(rf->type) == FG_F32 && rf->data) {
                float mx = 1;
                for (uint64_t i = 0; i < rf->ne[0]; i++) { float v; memcpy(&v, rf->data + 4 * i, 4); mx = FG_MAX(mx, v); }
                c->rope_factor = mx;
            }
        }
    }
    // RoPE scaling, any architecture (llama.cpp's rope.scaling.* keys).
    const fg_gguf_kv *st = akv(&k, "rope.scaling.type");
    if (st && st->type == FG_GGUF_STRING) {
        fg_gguf_str s;
        char full[128];
        snprintf(full, sizeof full, "%s.rope.scaling.type", k.arch);
        fg_gguf_get_str(g, full, &s);
        if (s.len == 4 && !memcmp(s.s, "yarn", 4)) {
            float lm = 0;
            c->rope_yarn = 1;
            if (aflt(&k, "rope.scaling.factor", &c->rope_factor, 1) ||
                aint(&k, "rope.scaling.original_context_length", &c->rope_original_max_position_embeddings, 1) ||
                aflt(&k, "rope.scaling.yarn_log_multiplier", &lm, 0) || aflt(&k, "rope.scaling.yarn_beta_fast", &c->rope_beta_fast, 0) ||
                aflt(&k, "rope.scaling.yarn_beta_slow", &c->rope_beta_slow, 0))
                return -1;
            c->rope_mscale = c->rope_mscale_all_dim = lm / 0.1f;
        } else if (!(s.len == 4 && !memcmp(s.s, "none", 4))) {
            return fg_set_error("%s: GGUF %s.rope.scaling.type '%.*s' is not supported (yarn, none)", g->where, k.arch, (int)FG_MIN(s.len, 40), s.s);
        }
    }
    if (fg_config_validate(c)) return fg_wrap_error("%s", g->where);
    return 0;
}

// Checks rope_freqs.weight against the config's llama3 rule (what frugal will compute).
static int check_rope_freqs(const fg_gguf *g, const fg_config *c) {
    const fg_gguf_tensor *rf = fg_gguf_find_tensor(g, "rope_freqs.weight");
    if (!rf) return 0;
    int half = c->head_dim / 2;
    if (!(rf = need_tensor(g, "rope_freqs.weight", 1, (uint64_t)half, 1, 1))) return -1;
    float *f = malloc(sizeof(float) * half);
    if (!f) return fg_set_error("out of memory");
    gguf_decode(g, rf, f, 0, (uint64_t)half);
    double lo_wl = c->rope_original_max_position_embeddings / (double)c->rope_low_freq_factor;
    double hi_wl = c->rope_original_max_position_embeddings / (double)c->rope_high_freq_factor;
    int bad = -1;
    for (int i = 0; i < half && bad < 0; i++) {
        double base = 1.0 / pow((double)c->rope_theta, 2.0 * i / c->head_dim), wl = 2 * M_PI / base, fr = base;
        if (wl > lo_wl) fr = base / c->rope_factor;
        else if (wl >= hi_wl) {
            double sm = (c->rope_original_max_position_embeddings / wl - c->rope_low_freq_factor) /
                        (c->rope_high_freq_factor - c->rope_low_freq_factor);
            fr = (1 - sm) * base / c->rope_factor + sm * base;
        }
        if (fabs(base / fr - f[i]) > 1e-4 * fabs(f[i])) bad = i;
    }
    free(f);
    if (bad >= 0)
        return fg_set_error("%s: GGUF rope_freqs.weight[%d] does not follow the llama3 rule with factor %g, low_freq_factor %g, "
                            "high_freq_factor %g, original context %d (the only per-frequency scaling frugal computes)",
                            g->where, bad, c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                            c->rope_original_max_position_embeddings);
    return 0;
}

// Writes a metadata-only GGUF holding the tokenizer.* entries of g (malloc'd).
static int tokenizer_bytes(const fg_gguf *g, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    if (!fg_gguf_find(g, "tokenizer.ggml.tokens")) return 0;
    size_t n = 24, cnt = 0;
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len > 10 && !memcmp(g->kv[i].key.s, "tokenizer.", 10)) { n += g->kv[i].raw_len; cnt++; }
    uint8_t *b = malloc(n);
    if (!b) return fg_set_error("out of memory");
    uint32_t v = 3;
    uint64_t nt = 0, nk = cnt;
    memcpy(b, "GGUF", 4); memcpy(b + 4, &v, 4); memcpy(b + 8, &nt, 8); memcpy(b + 16, &nk, 8);
    size_t o = 24;
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len > 10 && !memcmp(g->kv[i].key.s, "tokenizer.", 10)) { memcpy(b + o, g->kv[i].raw, g->kv[i].raw_len); o += g->kv[i].raw_len; }
    *out = (char *)b;
    *len = n;
    return 0;
}

// MLA's kv_b_proj (H*(Dn+Dv), Rkv) in fp32 from llama.cpp's split form: attn_k_b ne {Dn, Rkv, H}
// (per head the transposed k_nope rows) and attn_v_b ne {Rkv, Dv, H}.
static int kv_b_from_split(const fg_gguf *g, const fg_config *c, int layer, float *dst) {
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    char kb[64], vb[64];
    snprintf(kb, sizeof kb, "blk.%d.attn_k_b.weight", layer);
    snprintf(vb, sizeof vb, "blk.%d.attn_v_b.weight", layer);
    const fg_gguf_tensor *tk = need_tensor(g, kb, 3, (uint64_t)Dn, (uint64_t)Rkv, (uint64_t)H), *tv;
    if (!tk || !(tv = need_tensor(g, vb, 3, (uint64_t)Rkv, (uint64_t)Dv, (uint64_t)H)))
        return fg_wrap_error("%s: neither attn_kv_b nor attn_k_b + attn_v_b of layer %d", g->where, layer);
    float *k = malloc(sizeof(float) * (size_t)H * Rkv * Dn), *v = malloc(sizeof(float) * (size_t)H * Dv * Rkv);
    int rc = !k || !v ? fg_set_error("out of memory") : gguf_decode(g, tk, k, 0, (uint64_t)H * Rkv * Dn) ? -1 :
             gguf_decode(g, tv, v, 0, (uint64_t)H * Dv * Rkv);
    if (!rc)
        for (int h = 0; h < H; h++) {
            for (int d = 0; d < Dn; d++)
                for (int r = 0; r < Rkv; r++) dst[((size_t)h * (Dn + Dv) + d) * Rkv + r] = k[((size_t)h * Rkv + r) * Dn + d];
            memcpy(dst + ((size_t)h * (Dn + Dv) + Dn) * Rkv, v + (size_t)h * Dv * Rkv, sizeof(float) * (size_t)Dv * Rkv);
        }
    free(k); free(v);
    return rc;
}

static int load_weights(const fg_gguf *g, fg_model *m, int arch) {
    const fg_config *c = &m->cfg;
    int H = c->num_attention_heads;
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        float *dst = m->params + t->offset;
        char name[128];
        int kind = gguf_name(t->name, name, sizeof name);
        if (kind < 0) return fg_set_error("%s: no GGUF name for tensor '%s'", g->where, t->name);
        if (kind == 1 && t->expert > 0) continue; // filled with expert 0
        const fg_gguf_tensor *gt;
        if (kind == 1) {
            int E = c->n_routed_experts;
            if (!(gt = need_tensor(g, name, 3, (uint64_t)t->shape[1], (uint64_t)t->shape[0], (uint64_t)E))) return -1;
            if (gguf_decode(g, gt, dst, 0, (uint64_t)E * t->numel)) return -1;
            continue;
        }
        if (strstr(name, "attn_kv_b") && !fg_gguf_find_tensor(g, name)) {
            if (kv_b_from_split(g, c, t->layer, dst)) return -1;
            continue;
        }
        gt = t->ndim == 1 ? need_tensor(g, name, 1, (uint64_t)t->shape[0], 1, 1)
                          : need_tensor(g, name, 2, (uint64_t)t->shape[1], (uint64_t)t->shape[0], 1);
        if (!gt || gguf_decode(g, gt, dst, 0, t->numel)) return -1;
        if (arch == 1 && !c->rope_interleave && (strstr(name, "attn_q.") || strstr(name, "attn_k."))) {
            int heads = strstr(name, "attn_q.") ? H : c->num_key_value_heads, cols = t->ndim == 1 ? 1 : t->shape[1];
            float *tmp = malloc(sizeof(float) * (size_t)c->head_dim * cols);
            if (!tmp) return fg_set_error("out of memory");
            unpermute_rows(dst, heads, c->head_dim, cols, 1, tmp);
            free(tmp);
        }
    }
    return 0;
}

fg_model *fg_gguf_model_from(fg_gguf *g, char **tok_data, size_t *tok_len, void (*notice)(const char *)) {
    const char *path = g->where;
    if (tok_data) *tok_data = NULL;
    if (tok_len) *tok_len = 0;
    fg_model *m = NULL;
    fg_config c;
    int arch, mtp;
    if (fg_gguf_read_tensors(g)) return NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++) { // refuse what cannot be decoded, by name, up front
        const fg_gguf_tensor *t = &g->tensors[i];
        char tb[16];
        if (!gguf_readable(t->type)) {
            fg_set_error("%s: GGUF tensor '%.*s' has type %s, which frugal does not read " GGUF_TYPES_HINT, path,
                         (int)FG_MIN(t->name.len, 200), t->name.s, fg_ggml_type_name(t->type, tb));
            return NULL;
        }
    }
    if (gguf_config(g, &c, &arch, &mtp, notice) || check_rope_freqs(g, &c)) return NULL;
    // A hostile header must not make us allocate more than the file could fill: every parameter
    // is at least half a byte (Q4_0) of tensor data in the file.
    int64_t total, active;
    fg_config_param_counts(&c, &total, &active);
    uint64_t have = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].data) have += g->tensors[i].ne[0] * g->tensors[i].ne[1] * g->tensors[i].ne[2] * g->tensors[i].ne[3];
    if ((uint64_t)total > have) {
        fg_set_error("%s: the metadata describes %lld parameters but the file's tensors hold %llu values", path, (long long)total,
                     (unsigned long long)have);
        return NULL;
    }
    if (!(m = fg_model_create(&c))) { fg_wrap_error("%s", path); return NULL; }
    if (load_weights(g, m, arch)) goto fail;
    const fg_gguf_kv *bl = fg_gguf_find(g, "frugal.byte_level_ids");
    if (tok_data && !(bl && bl->type == FG_GGUF_BOOL && bl->val[0])) { // frugal's byte-level ids need no tokenizer
        size_t n;
        if (tokenizer_bytes(g, tok_data, &n)) goto fail;
        if (*tok_data) {
            fg_tokenizer *t = fg_tokenizer_load_mem(*tok_data, n, path);
            if (!t) { free(*tok_data); *tok_data = NULL; goto fail; }
            fg_tokenizer_free(t);
        }
        if (tok_len) *tok_len = n;
    }
    return m;
fail:
    fg_model_free(m);
    return NULL;
}

// ---- a GGUF file as a weight store ------------------------------------------------------------

// Where table tensor t is in the file: its GGUF tensor and, for a routed expert, the byte offset
// of its slice of the 3-D tensor; *split = 1 for MLA's kv_b in llama.cpp's split form (no tensor).
static const fg_gguf_tensor *store_source(const fg_gguf *g, const fg_config *c, const fg_tensor *t, size_t *off, int *split) {
    char name[128];
    int kind = gguf_name(t->name, name, sizeof name);
    *off = 0;
    *split = 0;
    if (kind < 0) { fg_set_error("%s: no GGUF name for tensor '%s'", g->where, t->name); return NULL; }
    if (kind == 1) {
        const fg_gguf_tensor *gt = need_tensor(g, name, 3, (uint64_t)t->shape[1], (uint64_t)t->shape[0], (uint64_t)c->n_routed_experts);
        if (gt) *off = (size_t)t->expert * (size_t)t->shape[0] * fg_qrow_bytes(fg_dtype_from_ggml(gt->type), t->shape[1]);
        return gt;
    }
    if (strstr(name, "attn_kv_b") && !fg_gguf_find_tensor(g, name)) { *split = 1; return NULL; }
    return t->ndim == 1 ? need_tensor(g, name, 1, (uint64_t)t->shape[0], 1, 1)
                        : need_tensor(g, name, 2, (uint64_t)t->shape[1], (uint64_t)t->shape[0], 1);
}

// llama.cpp's per-head row order of a GQA model's q / k projections (its llama / qwen2 export
// permutes them): these rows are copied and put back in Hugging Face order.
static int store_permuted(const fg_config *c, int arch, const fg_tensor *t) {
    return arch == 1 && !c->rope_interleave && (strstr(t->name, "q_proj.") || strstr(t->name, "k_proj."));
}

fg_wstore *fg_wstore_open_gguf(const char *path, void (*notice)(const char *)) {
    fg_gguf *g = fg_gguf_open(path);
    if (!g) return NULL;
    fg_wstore *ws = NULL;
    fg_tensor *t = NULL;
    int *types = NULL, n = 0, arch, mtp;
    const void **data = NULL;
    const fg_gguf_tensor **src = NULL; // per table tensor: its GGUF tensor (NULL: kv_b in split form)
    size_t *src_off = NULL;            // and the byte offset of its slice (routed experts)
    uint8_t *arena = NULL;
    char *tok = NULL;
    size_t total, tok_len = 0;
    fg_config c;
    if (fg_gguf_read_tensors(g) || gguf_config(g, &c, &arch, &mtp, notice) || check_rope_freqs(g, &c) ||
        !(t = fg_tensor_table(&c, &n, &total)))
        goto fail;
    types = calloc((size_t)n, sizeof *types);
    data = calloc((size_t)n, sizeof *data);
    src = calloc((size_t)n, sizeof *src);
    src_off = calloc((size_t)n, sizeof *src_off);
    if (!types || !data || !src || !src_off) { fg_set_error("out of memory"); goto fail; }
    // Pass 1: each tensor in place when the store holds its type and it needs no reordering; else
    // decoded to fp32 (a type the kernels do not take, kv_b in split form) or copied and permuted
    // (GQA q / k), into one arena sized here.
    size_t own = 0, mapped = 0;
    for (int i = 0; i < n; i++) {
        int split;
        const fg_gguf_tensor *gt = src[i] = store_source(g, &c, &t[i], &src_off[i], &split);
        if (!gt && !split) goto fail;
        int ty = gt ? fg_dtype_from_ggml(gt->type) : FG_F32;
        if (gt && !fg_wstore_type_check(&t[i], ty) && !store_permuted(&c, arch, &t[i])) {
            types[i] = ty;
            data[i] = gt->data + src_off[i];
            mapped += fg_wstore_tensor_bytes(&t[i], ty);
            continue;
        }
        types[i] = gt && !fg_wstore_type_check(&t[i], ty) ? ty : FG_F32;
        own += (fg_wstore_tensor_bytes(&t[i], types[i]) + 63) & ~(size_t)63;
    }
    if (own && !(arena = aligned_alloc(64, own))) { fg_set_error("%s: out of memory (%.1f MiB)", path, own / 1048576.0); goto fail; }
    // Pass 2: fill the arena.
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (data[i]) continue;
        size_t off = src_off[i], bytes = fg_wstore_tensor_bytes(&t[i], types[i]);
        const fg_gguf_tensor *gt = src[i];
        uint8_t *dst = arena + at;
        if (!gt) { // kv_b in split form
            if (kv_b_from_split(g, &c, t[i].layer, (float *)dst)) goto fail;
        } else if (types[i] == fg_dtype_from_ggml(gt->type)) {
            memcpy(dst, gt->data + off, bytes);
        } else {
            const fg_dtype_traits *d = fg_dtype_info(fg_dtype_from_ggml(gt->type));
            uint64_t first = off / (uint64_t)d->block_bytes * (uint64_t)d->block;
            if (gguf_decode(g, gt, (float *)dst, first, t[i].numel)) goto fail;
        }
        if (store_permuted(&c, arch, &t[i])) {
            int heads = strstr(t[i].name, "q_proj.") ? c.num_attention_heads : c.num_key_value_heads;
            size_t rs = t[i].ndim == 1 ? fg_qrow_bytes(types[i], 1) : fg_qrow_bytes(types[i], t[i].shape[1]);
            uint8_t *tmp = malloc(rs * (size_t)c.head_dim);
            if (!tmp) { fg_set_error("out of memory"); goto fail; }
            permute_rows(dst, heads, c.head_dim, rs, 1, tmp);
            free(tmp);
        }
        data[i] = dst;
        at += (bytes + 63) & ~(size_t)63;
    }
    if (!(ws = fg_wstore_create(&c, t, n, types, data))) { fg_wrap_error("%s", path); goto fail; }
    if (arena && fg_wstore_keep(ws, arena)) goto fail;
    arena = NULL;
    ws->owned_bytes += own;
    if (fg_wstore_keep_mapping(ws, g->owned, g->owned_len)) goto fail;
    g->owned = NULL; // the store unmaps it
    const fg_gguf_kv *bl = fg_gguf_find(g, "frugal.byte_level_ids");
    if (!(bl && bl->type == FG_GGUF_BOOL && bl->val[0])) {
        if (tokenizer_bytes(g, &tok, &tok_len)) goto fail;
        if (tok && fg_wstore_set_tokenizer(ws, tok, tok_len)) goto fail;
    }
    if (notice) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %.1f MiB of weights mapped as stored, %.1f MiB decoded or reordered into memory", path,
                 mapped / 1048576.0, own / 1048576.0);
        notice(msg);
    }
    free(tok); free(t); free(types); free(data); free(src); free(src_off);
    fg_gguf_free(g);
    return ws;
fail:
    fg_wstore_free(ws);
    free(arena); free(tok); free(t); free(types); free(data); free(src); free(src_off);
    fg_gguf_free(g);
    return NULL;
}

fg_model *fg_gguf_load(const char *path, char **tok_data, size_t *tok_len, void (*notice)(const char *)) {
    if (tok_data) *tok_data = NULL;
    if (tok_len) *tok_len = 0;
    fg_gguf *g = fg_gguf_open(path);
    if (!g) return NULL;
    fg_model *m = fg_gguf_model_from(g, tok_data, tok_len, notice);
    fg_gguf_free(g);
    return m;
}

// ---- export ----------------------------------------------------------------------------------

typedef struct { uint8_t *p; size_t n, cap; int oom; } wbuf;
static void wb_put(wbuf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = FG_MAX(b->cap * 2, b->n + n + 4096);
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p; b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void wb_u32(wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(wbuf *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_str(wbuf *b, const char *s, size_t n) { wb_u64(b, n); wb_put(b, s, n); }

typedef struct { wbuf b; uint64_t n_kv; const char *arch; } kvw;
static void kv_key(kvw *w, const char *key, uint32_t type) {
    char full[160];
    if (!strncmp(key, "general.", 8) || !strncmp(key, "tokenizer.", 10) || !strncmp(key, "frugal.", 7)) snprintf(full, sizeof full, "%s", key);
    else snprintf(full, sizeof full, "%s.%s", w->arch, key);
    wb_str(&w->b, full, strlen(full));
    wb_u32(&w->b, type);
    w->n_kv++;
}
static void kv_u32(kvw *w, const char *key, uint32_t v) { kv_key(w, key, FG_GGUF_U32); wb_u32(&w->b, v); }
static void kv_f32(kvw *w, const char *key, float v) { kv_key(w, key, FG_GGUF_F32); wb_put(&w->b, &v, 4); }
static void kv_bool(kvw *w, const char *key, int v) { uint8_t x = v != 0; kv_key(w, key, FG_GGUF_BOOL); wb_put(&w->b, &x, 1); }
static void kv_str(kvw *w, const char *key, const char *s) { kv_key(w, key, FG_GGUF_STRING); wb_str(&w->b, s, strlen(s)); }

// The tokenizer.ggml.* entries of a vocabulary (tok/type by id, n entries; missing ids become
// unused padding) with pre-tokenizer name pre. -1 on a malformed merge.
static int emit_tok(kvw *w, const char *pre, char **tok, int32_t *type, int32_t n, const fg_json *merges) {
    kv_str(w, "tokenizer.ggml.model", "gpt2");
    kv_str(w, "tokenizer.ggml.pre", pre);
    kv_key(w, "tokenizer.ggml.tokens", FG_GGUF_ARRAY);
    wb_u32(&w->b, FG_GGUF_STRING); wb_u64(&w->b, (uint64_t)n);
    for (int32_t i = 0; i < n; i++) {
        char pad[32];
        if (!tok[i]) { snprintf(pad, sizeof pad, "[PAD%d]", i); wb_str(&w->b, pad, strlen(pad)); type[i] = 5; }
        else wb_str(&w->b, tok[i], strlen(tok[i]));
    }
    kv_key(w, "tokenizer.ggml.token_type", FG_GGUF_ARRAY);
    wb_u32(&w->b, FG_GGUF_I32); wb_u64(&w->b, (uint64_t)n);
    wb_put(&w->b, type, sizeof(int32_t) * (size_t)n);
    kv_key(w, "tokenizer.ggml.merges", FG_GGUF_ARRAY);
    wb_u32(&w->b, FG_GGUF_STRING); wb_u64(&w->b, (uint64_t)merges->n);
    for (const fg_json *mg = merges->child; mg; mg = mg->next) {
        if (mg->type == FG_JSON_STRING) wb_str(&w->b, mg->str, mg->len);
        else if (mg->type == FG_JSON_ARRAY && mg->n == 2 && mg->child->type == FG_JSON_STRING && mg->child->next->type == FG_JSON_STRING) {
            wb_u64(&w->b, mg->child->len + 1 + mg->child->next->len);
            wb_put(&w->b, mg->child->str, mg->child->len); wb_put(&w->b, " ", 1); wb_put(&w->b, mg->child->next->str, mg->child->next->len);
        } else { fg_set_error("tokenizer.json: a merge is neither \"a b\" nor [\"a\", \"b\"]"); return -1; }
    }
    static const char *const BOS[] = {FG_DS_BOS, "<|begin_of_text|>", "<|endoftext|>"}, *const EOS[] = {FG_DS_EOS, "<|end_of_text|>", "<|endoftext|>"};
    for (int k = 0; k < 3; k++)
        for (int32_t i = 0; i < n; i++)
            if (tok[i] && !strcmp(tok[i], BOS[k])) { kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)i); goto bos_done; }
bos_done:
    for (int k = 0; k < 3; k++)
        for (int32_t i = 0; i < n; i++)
            if (tok[i] && !strcmp(tok[i], EOS[k])) { kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)i); goto eos_done; }
eos_done:
    kv_bool(w, "tokenizer.ggml.add_bos_token", 0);
    return 0;
}

// llama.cpp's name for a pre-tokenizer whose regexes are spelled differently from the named sets
// (DeepSeek-LLM's files hold characters where frugal's copy has \u escapes): the named set that
// splits the probe texts into exactly the same pieces (vocabulary-independent). NULL when none does.
typedef struct { size_t ends[1024]; int n; } piece_ends;
static int collect_end(void *ctx, size_t start, size_t end) {
    piece_ends *e = ctx;
    (void)start;
    if (e->n >= 1024) return 1;
    e->ends[e->n++] = end;
    return 0;
}
static const char *probe_pre(const char *const *pats, int np, int bytelevel_regex) {
    static const char *const CANDS[] = {"deepseek-v3", "deepseek-llm", "deepseek-coder", "qwen2", "llama-bpe", "gpt-2"};
    static const char *const PROBES[] = {
        "Hello world! It's 12345 or 3.14159, isn't it? I'll DO it's\n\n  two  spaces\tand\ttabs\r\n \n",
        ("caf\xc3\xa9 na\xc3\xafve \xc3\x84rger \xce\xb1\xce\xb2\xce\xb3 \xd0\x94\xd0\xb6 \xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c "
        "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 1234567890 \xef\xbd\x81\xef\xbc\x81"), // one probe in two lines
        "def f(x):\n    return x**2 + 10000 # comment\n\tprint('ok');;  !!!??? $$$ \"quoted\" `tick` {a:[1,2]}   ",
        "\xe1\xbd\x9f\xe1\xbd\xbd \xe2\x84\xa6 \xe2\x84\xaa \xe1\xbe\xbe x\xc2\xb2 \xe2\x85\xa0 \xf0\x9f\x98\x80\xf0\x9f\x98\x80 end.",
    };
    fg_pretok *ref = fg_pretok_new();
    int ok = ref != NULL;
    for (int i = 0; ok && i < np; i++) ok = !fg_pretok_add_split(ref, pats[i], strlen(pats[i]));
    if (ok && bytelevel_regex) ok = !fg_pretok_add_gpt2(ref);
    const char *found = NULL;
    piece_ends *x = malloc(sizeof *x), *y = malloc(sizeof *y);
    for (size_t k = 0; ok && x && y && k < sizeof CANDS / sizeof *CANDS && !found; k++) {
        fg_pretok *c = fg_pretok_new();
        int same = c && !fg_pretok_add_named(c, CANDS[k]);
        for (size_t p = 0; same && p < sizeof PROBES / sizeof *PROBES; p++) {
            x->n = y->n = 0;
            same = !fg_pretok_run(ref, PROBES[p], strlen(PROBES[p]), collect_end, x) &&
                   !fg_pretok_run(c, PROBES[p], strlen(PROBES[p]), collect_end, y) && x->n == y->n &&
                   !memcmp(x->ends, y->ends, sizeof(size_t) * (size_t)x->n);
        }
        if (same) found = CANDS[k];
        fg_pretok_free(c);
    }
    free(x); free(y);
    fg_pretok_free(ref);
    return found;
}

// Tokenizer metadata from tokenizer.json text.
static int tok_from_json(kvw *w, const char *data, size_t len, int V) {
    fg_json *root = fg_json_parse(data, len, "tokenizer.json");
    if (!root) return -1;
    int rc = -1;
    char **tok = NULL;
    int32_t *type = NULL;
    const fg_json *model = fg_json_get(root, "model"), *vocab = model ? fg_json_get(model, "vocab") : NULL;
    const fg_json *merges = model ? fg_json_get(model, "merges") : NULL, *added = fg_json_get(root, "added_tokens");
    if (!vocab || vocab->type != FG_JSON_OBJECT || !merges || merges->type != FG_JSON_ARRAY) {
        fg_set_error("tokenizer.json: model.vocab and model.merges are required for GGUF export");
        goto done;
    }
    int32_t n = V; // llama.cpp wants one token per embedding row: ids the tokenizer lacks are padding
    for (const fg_json *v = vocab->child; v; v = v->next) if (v->type == FG_JSON_NUMBER && v->num >= 0 && v->num < (1 << 26)) n = FG_MAX(n, (int32_t)v->num + 1);
    for (const fg_json *a = added && added->type == FG_JSON_ARRAY ? added->child : NULL; a; a = a->next) {
        const fg_json *id = fg_json_get(a, "id");
        if (id && id->type == FG_JSON_NUMBER && id->num >= 0 && id->num < (1 << 26)) n = FG_MAX(n, (int32_t)id->num + 1);
    }
    tok = calloc((size_t)n + 1, sizeof *tok);
    type = calloc((size_t)n + 1, sizeof *type);
    if (!tok || !type) { fg_set_error("out of memory"); goto done; }
    for (const fg_json *v = vocab->child; v; v = v->next) if (v->type == FG_JSON_NUMBER && v->num >= 0 && v->num < n) { tok[(int)v->num] = v->key; type[(int)v->num] = 1; }
    for (const fg_json *a = added && added->type == FG_JSON_ARRAY ? added->child : NULL; a; a = a->next) {
        const fg_json *id = fg_json_get(a, "id"), *ct = fg_json_get(a, "content"), *sp = fg_json_get(a, "special");
        if (!id || id->type != FG_JSON_NUMBER || !ct || ct->type != FG_JSON_STRING || id->num < 0 || id->num >= n) continue;
        tok[(int)id->num] = ct->str;
        type[(int)id->num] = sp && sp->type == FG_JSON_BOOL && sp->boolean ? 3 : 4;
    }
    // pre-tokenizer name: compare the Split regexes with llama.cpp's named sets
    const char *pats[16];
    int np = 0, bytelevel_regex = 0;
    const fg_json *pt = fg_json_get(root, "pre_tokenizer");
    const fg_json *list = pt && pt->type == FG_JSON_OBJECT ? fg_json_get(pt, "pretokenizers") : NULL;
    for (const fg_json *p = list ? list->child : pt; p && np < 16; p = list ? p->next : NULL) {
        const fg_json *ty = fg_json_get(p, "type");
        if (ty && ty->type == FG_JSON_STRING && !strcmp(ty->str, "Split")) {
            const fg_json *pat = fg_json_get(p, "pattern"), *rx = pat ? fg_json_get(pat, "Regex") : NULL;
            if (rx && rx->type == FG_JSON_STRING) pats[np++] = rx->str;
        } else if (ty && ty->type == FG_JSON_STRING && !strcmp(ty->str, "Digits")) {
            const fg_json *ind = fg_json_get(p, "individual_digits");
            pats[np++] = ind && ind->type == FG_JSON_BOOL && ind->boolean ? "\\p{N}" : "\\p{N}+";
        } else if (ty && ty->type == FG_JSON_STRING && !strcmp(ty->str, "ByteLevel")) {
            const fg_json *ur = fg_json_get(p, "use_regex");
            bytelevel_regex = !ur || (ur->type == FG_JSON_BOOL && ur->boolean);
        }
        if (!list) break;
    }
    const char *pre = fg_pretok_name_of(pats, np, bytelevel_regex);
    if (!pre) pre = probe_pre(pats, np, bytelevel_regex);
    if (!pre) { fg_set_error("tokenizer.json: its pre-tokenizer matches none of llama.cpp's named ones (deepseek-v3, deepseek-llm, "
                             "deepseek-coder, qwen2, llama-bpe, gpt-2): GGUF cannot describe it"); goto done; }
    if (emit_tok(w, pre, tok, type, n, merges)) goto done;
    rc = 0;
done:
    free(tok); free(type);
    fg_json_free(root);
    return rc;
}

// frugal's byte-level ids as a BPE without merges: id b < 256 is byte b in GPT-2's byte alphabet,
// the specials follow, unused ids up to V are padding. Every byte string encodes to its bytes.
static int tok_bytelevel(kvw *w, int V) {
    fg_byte_chars_init();
    kv_str(w, "tokenizer.ggml.model", "gpt2");
    kv_str(w, "tokenizer.ggml.pre", "gpt-2"); // llama.cpp's name (it refuses "gpt2")
    kv_key(w, "tokenizer.ggml.tokens", FG_GGUF_ARRAY);
    wb_u32(&w->b, FG_GGUF_STRING); wb_u64(&w->b, (uint64_t)V);
    for (int i = 0; i < V; i++) {
        char s[32];
        if (i < 256) {
            unsigned cp = fg_byte_char_tab[i];
            size_t n = cp < 0x80 ? (s[0] = (char)cp, 1) : (s[0] = (char)(0xC0 | cp >> 6), s[1] = (char)(0x80 | (cp & 63)), 2);
            wb_str(&w->b, s, n);
        } else {
            const char *sp = fg_bytetok_special_name(i);
            if (sp) wb_str(&w->b, sp, strlen(sp));
            else { snprintf(s, sizeof s, "[PAD%d]", i); wb_str(&w->b, s, strlen(s)); }
        }
    }
    kv_key(w, "tokenizer.ggml.token_type", FG_GGUF_ARRAY);
    wb_u32(&w->b, FG_GGUF_I32); wb_u64(&w->b, (uint64_t)V);
    for (int i = 0; i < V; i++) wb_u32(&w->b, i < 256 ? 1u : fg_bytetok_special_name(i) ? 3u : 5u);
    kv_key(w, "tokenizer.ggml.merges", FG_GGUF_ARRAY);
    wb_u32(&w->b, FG_GGUF_STRING); wb_u64(&w->b, 0);
    if (V > FG_TOK_BOS) kv_u32(w, "tokenizer.ggml.bos_token_id", FG_TOK_BOS);
    if (V > FG_TOK_EOS) kv_u32(w, "tokenizer.ggml.eos_token_id", FG_TOK_EOS);
    kv_bool(w, "tokenizer.ggml.add_bos_token", 0);
    return 0;
}

// One tensor to write: its GGUF name, ne, type and where its floats come from.
typedef struct {
    char name[96];
    uint32_t n_dims;
    int type;             // fg_dtype of its rows
    uint64_t ne[3];
    const float *src;     // numel floats (NULL: data is owned below)
    float *own;           // rearranged copy (llama permutation, k_b/v_b split, rope_freqs)
    uint64_t offset, nbytes;
} out_tensor;

// The mixtures, llama-quantize's Q4_K_M / Q5_K_M rule (llama_tensor_get_type in llama.cpp's
// llama-quant.cpp) in spirit: every matrix in the base type, Q4_K (Q5_K for Q5_K_M), except those
// whose quantisation error costs the most per byte saved, which get Q6_K:
//  - the output head (output.weight, or token_embd when the embeddings are tied and it is the head):
//    its error lands directly on every logit;
//  - the value projections, attn_v (GQA) and for MLA attn_k_b / attn_v_b (llama.cpp's attn_kv_b,
//    which frugal writes split), in the layers more_bits picks: the values are averaged into every
//    output without the softmax's selectivity to damp their error, and they are small;
//  - ffn_down (dense, routed experts and shared experts) in the layers more_bits picks: it writes
//    the residual stream directly, and its inputs (the SwiGLU products) have the heaviest outliers.
// The router, norms and biases stay F32 (the caller's rule for every type), and rows that hold no
// 256-value super-block fall back to Q8_0 there as well. Not copied: llama.cpp's special cases for
// 8-expert models (Mixtral: attn_v / attn_k to Q8_0, attn_output to Q5_K), 70B GQA and Falcon.
static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }
static int mix_type(int mix, const char *name, const fg_config *c) {
    int base = mix == FG_GGUF_Q4_K_M ? FG_Q4_K : FG_Q5_K, l = -1;
    if (!strcmp(name, "output.weight") || (c->tie_word_embeddings && !strcmp(name, "token_embd.weight"))) return FG_Q6_K;
    if (sscanf(name, "blk.%d.", &l) != 1) return base;
    int value = strstr(name, ".attn_v.") || strstr(name, ".attn_k_b.") || strstr(name, ".attn_v_b.") || strstr(name, ".attn_kv_b.");
    int down = strstr(name, ".ffn_down") != NULL;
    return (value || down) && more_bits(l, fg_config_n_blocks(c)) ? FG_Q6_K : base;
}

// llama.cpp's general.file_type (enum llama_ftype) of an export type or mixture.
static uint32_t gguf_file_type(int type) {
    switch (type) {
    case FG_F32: return 0;      // ALL_F32
    case FG_BF16: return 32;    // MOSTLY_BF16
    case FG_Q8_0: return 7;     // MOSTLY_Q8_0
    case FG_Q4_0: return 2;     // MOSTLY_Q4_0
    case FG_Q4_K: return 14;    // MOSTLY_Q4_K_S (every matrix Q4_K)
    case FG_Q5_K: return 16;    // MOSTLY_Q5_K_S
    case FG_Q6_K: return 18;    // MOSTLY_Q6_K
    case FG_GGUF_Q4_K_M: return 15;
    default: return 17;         // FG_GGUF_Q5_K_M: MOSTLY_Q5_K_M
    }
}

int fg_gguf_export(const char *path, const fg_model *m, int type, const char *tok_data, size_t tok_len) {
    const fg_config *c = &m->cfg;
    if (type != FG_F32 && type != FG_BF16 && type != FG_Q8_0 && type != FG_Q4_0 && type != FG_Q4_K && type != FG_Q5_K &&
        type != FG_Q6_K && type != FG_GGUF_Q4_K_M && type != FG_GGUF_Q5_K_M)
        return fg_set_error("GGUF export: type must be f32, bf16, q8_0, q4_0, q4_k, q5_k, q6_k, q4_k_m or q5_k_m");
    int mla = c->attn_type == FG_ATTN_MLA;
    const char *arch = mla ? "deepseek2" : (c->attention_bias && !c->rope_interleave) ? "qwen2" : "llama";
    int permute = !mla && !strcmp(arch, "llama") && !c->rope_interleave;
    if (mla && c->moe_layer_freq > 1) return fg_set_error("GGUF export: deepseek2 cannot describe moe_layer_freq %d", c->moe_layer_freq);
    if (mla && c->rope_llama3) return fg_set_error("GGUF export: deepseek2 cannot describe llama3 RoPE scaling");
    if (!mla && c->num_nextn_predict_layers)
        return fg_set_error("GGUF export: llama.cpp reads multi-token-prediction (nextn) blocks for deepseek2 models only, and this "
                            "%s model has %d; hint: export --hf, which keeps them", arch, c->num_nextn_predict_layers);
    if (c->rope_yarn && c->rope_mscale != c->rope_mscale_all_dim)
        return fg_set_error("GGUF export: rope_scaling.mscale %g differs from mscale_all_dim %g, which llama.cpp cannot describe "
                            "(its yarn_log_multiplier assumes they are equal); hint: export --hf instead", c->rope_mscale,
                            c->rope_mscale_all_dim);
    kvw w = {{0}, 0, arch};
    int n_out = 0, rc = -1;
    out_tensor *ot = calloc((size_t)m->n_tensors * 2 + 2, sizeof *ot);
    FILE *f = NULL;
    char *tmp = NULL;
    if (!ot) return fg_set_error("out of memory");
    // ---- metadata
    kv_str(&w, "general.architecture", arch);
    kv_str(&w, "general.name", "frugal");
    kv_u32(&w, "general.file_type", gguf_file_type(type));
    kv_u32(&w, "general.alignment", 32);
    kv_u32(&w, "context_length", (uint32_t)c->max_position_embeddings);
    kv_u32(&w, "embedding_length", (uint32_t)c->hidden_size);
    kv_u32(&w, "block_count", (uint32_t)fg_config_n_blocks(c)); // llama.cpp counts the MTP (nextn) blocks in
    if (c->num_nextn_predict_layers) kv_u32(&w, "nextn_predict_layers", (uint32_t)c->num_nextn_predict_layers);
    kv_u32(&w, "feed_forward_length", (uint32_t)c->intermediate_size);
    kv_u32(&w, "attention.head_count", (uint32_t)c->num_attention_heads);
    kv_f32(&w, "rope.freq_base", c->rope_theta);
    kv_f32(&w, "attention.layer_norm_rms_epsilon", c->rms_norm_eps);
    kv_u32(&w, "vocab_size", (uint32_t)c->vocab_size);
    if (mla) {
        int Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
        kv_u32(&w, "attention.head_count_kv", 1);
        kv_u32(&w, "leading_dense_block_count", (uint32_t)(c->n_routed_experts ? c->first_k_dense_replace : c->num_hidden_layers));
        // Written even without q compression: 0 selects llama.cpp's attn_q path, which it only
        // assumes for the layer counts of DeepSeek's Lite models when the key is absent.
        kv_u32(&w, "attention.q_lora_rank", (uint32_t)(c->q_lora_rank > 0 ? c->q_lora_rank : 0));
        kv_u32(&w, "attention.kv_lora_rank", (uint32_t)Rkv);
        kv_u32(&w, "attention.key_length", (uint32_t)(Rkv + Dr));
        kv_u32(&w, "attention.value_length", (uint32_t)Rkv);
        kv_u32(&w, "attention.key_length_mla", (uint32_t)(Dn + Dr));
        kv_u32(&w, "attention.value_length_mla", (uint32_t)Dv);
        kv_u32(&w, "rope.dimension_count", (uint32_t)Dr);
        kv_u32(&w, "expert_feed_forward_length", (uint32_t)c->moe_intermediate_size);
        kv_u32(&w, "expert_count", (uint32_t)c->n_routed_experts);
        kv_u32(&w, "expert_shared_count", (uint32_t)c->n_shared_experts);
        kv_u32(&w, "expert_used_count", (uint32_t)c->num_experts_per_tok);
        kv_f32(&w, "expert_weights_scale", c->routed_scaling_factor);
        kv_bool(&w, "expert_weights_norm", c->norm_topk_prob);
        kv_u32(&w, "expert_gating_func", c->scoring_func == FG_SCORE_SIGMOID ? 2 : 1);
        kv_u32(&w, "expert_group_count", (uint32_t)c->n_group);
        kv_u32(&w, "expert_group_used_count", (uint32_t)c->topk_group);
    } else {
        kv_u32(&w, "attention.head_count_kv", (uint32_t)c->num_key_value_heads);
        kv_u32(&w, "rope.dimension_count", (uint32_t)c->head_dim);
        kv_u32(&w, "attention.key_length", (uint32_t)c->head_dim);
        kv_u32(&w, "attention.value_length", (uint32_t)c->head_dim);
        if (!strcmp(arch, "llama") && c->rope_interleave) kv_bool(&w, "frugal.rope_interleave", 1);
        if (c->rope_llama3) {
            kv_f32(&w, "frugal.rope.llama3.factor", c->rope_factor);
            kv_f32(&w, "frugal.rope.llama3.low_freq_factor", c->rope_low_freq_factor);
            kv_f32(&w, "frugal.rope.llama3.high_freq_factor", c->rope_high_freq_factor);
            kv_u32(&w, "frugal.rope.llama3.original_max_position_embeddings", (uint32_t)c->rope_original_max_position_embeddings);
        }
    }
    if (c->rope_yarn) { // every architecture: llama.cpp's rope.scaling.* keys
        kv_str(&w, "rope.scaling.type", "yarn");
        kv_f32(&w, "rope.scaling.factor", c->rope_factor);
        kv_u32(&w, "rope.scaling.original_context_length", (uint32_t)c->rope_original_max_position_embeddings);
        kv_f32(&w, "rope.scaling.yarn_log_multiplier", 0.1f * c->rope_mscale_all_dim);
        kv_f32(&w, "rope.scaling.yarn_beta_fast", c->rope_beta_fast);
        kv_f32(&w, "rope.scaling.yarn_beta_slow", c->rope_beta_slow);
    }
    if (tok_data && tok_len >= 4 && !memcmp(tok_data, "GGUF", 4)) {
        fg_gguf *tg = fg_gguf_parse((const uint8_t *)tok_data, tok_len, "tokenizer");
        if (!tg) goto done;
        for (size_t i = 0; i < tg->n_kv; i++)
            if (tg->kv[i].key.len > 10 && !memcmp(tg->kv[i].key.s, "tokenizer.", 10)) { wb_put(&w.b, tg->kv[i].raw, tg->kv[i].raw_len); w.n_kv++; }
        fg_gguf_free(tg);
    } else if (tok_data && tok_len) {
        if (tok_from_json(&w, tok_data, tok_len, c->vocab_size)) goto done;
    } else {
        if (tok_bytelevel(&w, c->vocab_size)) goto done;
        kv_bool(&w, "frugal.byte_level_ids", 1);
    }
    // ---- tensors
    int H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dv = c->v_head_dim, Rkv = c->kv_lora_rank;
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        char name[96];
        int kind = gguf_name(t->name, name, sizeof name);
        if (kind < 0) { fg_set_error("GGUF export: no GGUF name for '%s'", t->name); goto done; }
        if (kind == 1 && t->expert > 0) continue;
        out_tensor *o = &ot[n_out];
        const float *src = m->params + t->offset;
        uint64_t cols = t->ndim == 1 ? (uint64_t)t->shape[0] : (uint64_t)t->shape[1], rows = t->ndim == 1 ? 1 : (uint64_t)t->shape[0];
        if (mla && strstr(name, "attn_kv_b")) { // split into k_b {Dn, Rkv, H} and v_b {Rkv, Dv, H}
            out_tensor *ov = &ot[n_out + 1];
            o->own = malloc(sizeof(float) * (size_t)H * Rkv * Dn);
            ov->own = malloc(sizeof(float) * (size_t)H * Dv * Rkv);
            if (!o->own || !ov->own) { fg_set_error("out of memory"); goto done; }
            for (int h = 0; h < H; h++) {
                for (int d = 0; d < Dn; d++)
                    for (int r = 0; r < Rkv; r++) o->own[((size_t)h * Rkv + r) * Dn + d] = src[((size_t)h * (Dn + Dv) + d) * Rkv + r];
                memcpy(ov->own + (size_t)h * Dv * Rkv, src + ((size_t)h * (Dn + Dv) + Dn) * Rkv, sizeof(float) * (size_t)Dv * Rkv);
            }
            snprintf(o->name, sizeof o->name, "blk.%d.attn_k_b.weight", t->layer);
            snprintf(ov->name, sizeof ov->name, "blk.%d.attn_v_b.weight", t->layer);
            o->n_dims = ov->n_dims = 3;
            o->ne[0] = (uint64_t)Dn; o->ne[1] = (uint64_t)Rkv; o->ne[2] = (uint64_t)H;
            ov->ne[0] = (uint64_t)Rkv; ov->ne[1] = (uint64_t)Dv; ov->ne[2] = (uint64_t)H;
            o->src = o->own; ov->src = ov->own;
            n_out += 2;
            continue;
        }
        snprintf(o->name, sizeof o->name, "%s", name);
        o->src = src;
        if (kind == 1) { o->n_dims = 3; o->ne[0] = cols; o->ne[1] = rows; o->ne[2] = (uint64_t)c->n_routed_experts; }
        else { o->n_dims = t->ndim; o->ne[0] = cols; o->ne[1] = rows; o->ne[2] = 1; }
        if (permute && (strstr(name, "attn_q.") || strstr(name, "attn_k."))) {
            int heads = strstr(name, "attn_q.") ? H : c->num_key_value_heads;
            float *tmpw = malloc(sizeof(float) * (size_t)c->head_dim * cols);
            o->own = malloc(sizeof(float) * t->numel);
            if (!o->own || !tmpw) { free(tmpw); fg_set_error("out of memory"); goto done; }
            memcpy(o->own, src, sizeof(float) * t->numel);
            unpermute_rows(o->own, heads, c->head_dim, (int)(t->ndim == 1 ? 1 : cols), 0, tmpw);
            free(tmpw);
            o->src = o->own;
        }
        n_out++;
    }
    if (c->rope_llama3) { // llama.cpp's per-frequency divisors: base frequency / scaled frequency
        out_tensor *o = &ot[n_out++];
        int half = c->head_dim / 2;
        if (!(o->own = malloc(sizeof(float) * half))) { fg_set_error("out of memory"); goto done; }
        double lo_wl = c->rope_original_max_position_embeddings / (double)c->rope_low_freq_factor;
        double hi_wl = c->rope_original_max_position_embeddings / (double)c->rope_high_freq_factor;
        for (int i = 0; i < half; i++) {
            double base = 1.0 / pow((double)c->rope_theta, 2.0 * i / c->head_dim), wl = 2 * M_PI / base, fr = base;
            if (wl > lo_wl) fr = base / c->rope_factor;
            else if (wl >= hi_wl) {
                double sm = (c->rope_original_max_position_embeddings / wl - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
                fr = (1 - sm) * base / c->rope_factor + sm * base;
            }
            o->own[i] = (float)(base / fr);
        }
        snprintf(o->name, sizeof o->name, "rope_freqs.weight");
        o->n_dims = 1; o->ne[0] = (uint64_t)half; o->ne[1] = o->ne[2] = 1;
        o->src = o->own;
    }
    uint64_t off = 0;
    for (int i = 0; i < n_out; i++) {
        out_tensor *o = &ot[i];
        // The router stays F32 in every type, as llama.cpp's converter and llama-quantize keep it:
        // a flipped expert choice costs far more than its bytes save. Rows the type's blocks cannot
        // hold fall back to Q8_0 (K-quants, as llama.cpp falls back) or stay F32.
        int mat = o->n_dims >= 2 && !strstr(o->name, "ffn_gate_inp.");
        int want = type == FG_GGUF_Q4_K_M || type == FG_GGUF_Q5_K_M ? mix_type(type, o->name, c) : type;
        int kq = want == FG_Q4_K || want == FG_Q5_K || want == FG_Q6_K;
        o->type = !mat ? FG_F32 : o->ne[0] % (uint64_t)fg_dtype_info(want)->block == 0 ? want
                : kq && o->ne[0] % 32 == 0 ? FG_Q8_0 : FG_F32;
        o->nbytes = fg_qrow_bytes(o->type, (int)o->ne[0]) * o->ne[1] * o->ne[2];
        o->offset = off;
        off += (o->nbytes + 31) / 32 * 32;
    }
    // ---- header
    wbuf hb = {0};
    wb_put(&hb, "GGUF", 4);
    wb_u32(&hb, 3);
    wb_u64(&hb, (uint64_t)n_out);
    wb_u64(&hb, w.n_kv);
    wb_put(&hb, w.b.p, w.b.n);
    for (int i = 0; i < n_out; i++) {
        out_tensor *o = &ot[i];
        wb_str(&hb, o->name, strlen(o->name));
        wb_u32(&hb, o->n_dims);
        for (uint32_t d = 0; d < o->n_dims; d++) wb_u64(&hb, o->ne[d]);
        wb_u32(&hb, (uint32_t)fg_dtype_info(o->type)->ggml);
        wb_u64(&hb, o->offset);
    }
    static const uint8_t zeros[32];
    wb_put(&hb, zeros, (32 - hb.n % 32) % 32);
    if (hb.oom || w.b.oom) { free(hb.p); fg_set_error("out of memory building the GGUF header"); goto done; }
    tmp = malloc(strlen(path) + 5);
    if (!tmp) { free(hb.p); fg_set_error("out of memory"); goto done; }
    sprintf(tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) { free(hb.p); fg_set_error("cannot create '%s': %s", tmp, strerror(errno)); goto done; }
    int ok = fwrite(hb.p, 1, hb.n, f) == hb.n;
    free(hb.p);
    uint64_t max_rb = 0;
    for (int i = 0; i < n_out; i++) max_rb = FG_MAX(max_rb, fg_qrow_bytes(ot[i].type, (int)ot[i].ne[0]));
    uint8_t *row = malloc((size_t)max_rb + 64);
    if (!row) { ok = 0; errno = ENOMEM; }
    for (int i = 0; ok && i < n_out; i++) {
        out_tensor *o = &ot[i];
        uint64_t nrows = o->ne[1] * o->ne[2], cols = o->ne[0], rb = fg_qrow_bytes(o->type, (int)cols);
        for (uint64_t r = 0; ok && r < nrows; r++) {
            const float *s = o->src + r * cols;
            fg_quantize_row(row, s, (int)cols, o->type);
            ok = fwrite(row, 1, rb, f) == rb;
        }
        if (ok) ok = fwrite(zeros, 1, (32 - o->nbytes % 32) % 32, f) == (32 - o->nbytes % 32) % 32;
    }
    free(row);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f)) ok = 0;
    f = NULL;
    if (!ok || rename(tmp, path)) { fg_set_error("cannot write '%s': %s", path, strerror(ok ? errno : e)); unlink(tmp); goto done; }
    rc = 0;
done:
    for (int i = 0; i < m->n_tensors * 2 + 2; i++) free(ot[i].own);
    free(ot);
    free(tmp);
    free(w.b.p);
    return rc;
}
