// cost.c: the analytic cost model: SI numbers, the accelerator table, presets of published models
// with their published training figures, and parameter / FLOP / memory counts per component.
//
// What it deliberately does not do: simulate a cluster (pipeline bubbles, communication), model
// FlashAttention-style recomputation inside attention, or count element-wise work (norms,
// softmax, SwiGLU, RoPE): FLOPs are matmul FLOPs only, the convention in include/frugal.h and
// docs/cost.md. Invariant: fwd[] summed over every component but MTP == fwd_per_token, and
// params[] over every component but MTP == total == fg_config_param_counts' total.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cost/cost.h"
#include "formats/json.h"
#include "model/model.h"
#include "util.h"

// ---- SI numbers ------------------------------------------------------------------------------

int fg_si_parse(const char *s, double *out) {
    if (!s || !*s) return fg_set_error("'' is not a number (hint: 14.8T, 250G, 2e9)");
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v))
        return fg_set_error("'%s' is not a number (hint: 14.8T, 250G, 2e9)", s);
    static const char suf[] = "KMGTPE";
    if (*end) {
        int u = toupper((unsigned char)end[0]);
        const char *p = u == 'B' ? strchr(suf, 'G') : u ? strchr(suf, u) : NULL;
        if (!p || end[1]) return fg_set_error("'%s' is not a number: unknown suffix '%s' (hint: K, M, G or B, T, P, E)", s, end);
        v *= pow(1000.0, (double)(p - suf + 1));
    }
    if (!isfinite(v)) return fg_set_error("'%s' is out of range", s);
    *out = v;
    return 0;
}

char *fg_si_format(char *buf, size_t cap, double v, int billions) {
    static const char suf[] = " KMGTPEZY";
    double a = fabs(v);
    int i = 0;
    while (a >= 999.95 && i < 8) { a /= 1000; v /= 1000; i++; }
    if (i == 0) snprintf(buf, cap, a >= 100 || a == floor(a) ? "%.0f" : "%.3g", v);
    else {
        char c = billions && i == 3 ? 'B' : suf[i];
        snprintf(buf, cap, a >= 100 ? "%.1f%c" : a >= 10 ? "%.2f%c" : "%.3f%c", v, c);
    }
    return buf;
}

// ---- accelerators ----------------------------------------------------------------------------

#define MAX_ACCEL 64
// Dense peaks (the datasheets' "with sparsity" figures halved). Prices: DeepSeek's own $2 for the
// H800; the others are typical 2025 cloud rental prices and only a default (--price overrides).
static fg_accel ACCEL[MAX_ACCEL] = {
    {"H800", 989.5, 1979, 67, 80, 3.35, 700, 2.00,
     "NVIDIA H100 SXM datasheet (H800 = H100 SXM compute, NVLink cut to 400 GB/s); $2/h: DeepSeek-V3 report (arXiv 2412.19437)"},
    {"H100-SXM", 989.5, 1979, 67, 80, 3.35, 700, 2.50, "NVIDIA H100 Tensor Core GPU datasheet (SXM5); price: typical cloud rental"},
    {"H200", 989.5, 1979, 67, 141, 4.8, 700, 3.50, "NVIDIA H200 Tensor Core GPU datasheet (SXM); price: typical cloud rental"},
    {"A100", 312, 0, 19.5, 80, 2.039, 400, 1.50, "NVIDIA A100 datasheet (80GB SXM4; no FP8); price: typical cloud rental"},
    {"B200", 2250, 4500, 80, 180, 8.0, 1000, 5.00,
     "NVIDIA DGX B200 datasheet (per GPU: 1,440 GB and 64 TB/s over 8 GPUs; 36/72 PFLOPS FP16/FP8 sparse per 8, halved); price: typical"},
    {"MI300X", 1307.4, 2614.9, 163.4, 192, 5.3, 750, 2.50, "AMD Instinct MI300X datasheet (dense, no sparsity); price: typical cloud rental"},
    {"Ascend-910B", 320, 0, 0, 64, 1.6, 400, 1.50,
     "Huawei Ascend 910B as publicly reported (FP16/BF16 ~320 TFLOPS, 64 GB HBM2e, no FP8; no official datasheet); price: assumed"},
};
static int n_accel = 7;

int fg_accel_count(void) { return n_accel; }
const fg_accel *fg_accel_get(int i) { return i >= 0 && i < n_accel ? &ACCEL[i] : NULL; }

static void accel_names(char *buf, size_t cap) {
    size_t l = 0;
    buf[0] = 0;
    for (int i = 0; i < n_accel; i++) {
        size_t k = strlen(ACCEL[i].name);
        if (l + k + 3 > cap) break;
        if (i) { memcpy(buf + l, ", ", 2); l += 2; }
        memcpy(buf + l, ACCEL[i].name, k + 1);
        l += k;
    }
}

// Names match case-insensitively, ignoring '-', '_' and spaces ("h100sxm" == "H100-SXM").
static int name_eq(const char *a, const char *b) {
    for (;;) {
        while (*a == '-' || *a == '_' || *a == ' ') a++;
        while (*b == '-' || *b == '_' || *b == ' ') b++;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
        if (!*a) return 1;
        a++; b++;
    }
}

static fg_accel *accel_lookup(const char *name) {
    for (int i = 0; i < n_accel; i++)
        if (name_eq(ACCEL[i].name, name)) return &ACCEL[i];
    if (name_eq(name, "h100")) return &ACCEL[1];
    return NULL;
}

const fg_accel *fg_accel_find(const char *name) {
    const fg_accel *a = accel_lookup(name);
    if (!a) {
        char names[512];
        accel_names(names, sizeof names);
        fg_set_error("unknown accelerator '%s' (known: %s; --accelerators FILE.json adds more)", name, names);
    }
    return a;
}

double fg_accel_peak(const fg_accel *a, int precision) {
    double t = precision == FG_F8_E4M3 ? a->fp8_tflops : precision == FG_F32 ? a->fp32_tflops : a->bf16_tflops;
    return t * 1e12;
}

int fg_accel_load(const char *path) {
    size_t len;
    char *text = fg_read_file(path, &len);
    if (!text) return -1;
    fg_json *root = fg_json_parse(text, len, path);
    free(text);
    if (!root) return -1;
    int rc = -1;
    const fg_json *arr = root->type == FG_JSON_OBJECT ? fg_json_get(root, "accelerators") : root;
    if (!arr || arr->type != FG_JSON_ARRAY) {
        fg_set_error("%s: expected an array of accelerators or {\"accelerators\": [...]}", path);
        goto done;
    }
    static const struct { const char *key; size_t off; } NUM[] = {
        {"bf16_tflops", offsetof(fg_accel, bf16_tflops)}, {"fp8_tflops", offsetof(fg_accel, fp8_tflops)},
        {"fp32_tflops", offsetof(fg_accel, fp32_tflops)}, {"mem_gb", offsetof(fg_accel, mem_gb)},
        {"bw_tbs", offsetof(fg_accel, bw_tbs)}, {"watts", offsetof(fg_accel, watts)},
        {"price_hr", offsetof(fg_accel, price_hr)},
    };
    for (const fg_json *e = arr->child; e; e = e->next) {
        const fg_json *nm = fg_json_get(e, "name");
        if (e->type != FG_JSON_OBJECT || !nm || nm->type != FG_JSON_STRING || !nm->len || nm->len >= 32) {
            fg_set_error("%s:%d: each accelerator needs a \"name\" string of 1-31 bytes", path, e->line);
            goto done;
        }
        fg_accel tmp, *a = accel_lookup(nm->str);
        if (a) tmp = *a;
        else {
            memset(&tmp, 0, sizeof tmp);
            snprintf(tmp.name, sizeof tmp.name, "%s", nm->str);
            if (!fg_json_get(e, "bf16_tflops")) { fg_set_error("%s:%d: new accelerator '%s' needs bf16_tflops", path, e->line, nm->str); goto done; }
        }
        for (const fg_json *f = e->child; f; f = f->next) {
            if (!strcmp(f->key, "name")) continue;
            if (!strcmp(f->key, "source")) {
                if (f->type != FG_JSON_STRING) { fg_set_error("%s:%d: source must be a string", path, f->line); goto done; }
                snprintf(tmp.source, sizeof tmp.source, "%s", f->str);
                continue;
            }
            size_t i = 0;
            while (i < sizeof NUM / sizeof *NUM && strcmp(NUM[i].key, f->key)) i++;
            if (i == sizeof NUM / sizeof *NUM) { fg_set_error("%s:%d: unknown accelerator field '%s'", path, f->line, f->key); goto done; }
            if (f->type != FG_JSON_NUMBER || f->num < 0) { fg_set_error("%s:%d: %s must be a number >= 0", path, f->line, f->key); goto done; }
            *(double *)((char *)&tmp + NUM[i].off) = f->num;
        }
        if (!(tmp.bf16_tflops > 0)) { fg_set_error("%s:%d: %s: bf16_tflops must be > 0", path, e->line, tmp.name); goto done; }
        if (!tmp.source[0]) snprintf(tmp.source, sizeof tmp.source, "%s", path);
        if (a) *a = tmp;
        else if (n_accel == MAX_ACCEL) { fg_set_error("%s: more than %d accelerators", path, MAX_ACCEL); goto done; }
        else ACCEL[n_accel++] = tmp;
    }
    rc = 0;
done:
    fg_json_free(root);
    return rc;
}

// ---- presets and published figures -----------------------------------------------------------

static void preset_base(fg_config *c) {
    // The defaults fg_config_from_json starts from.
    static const char empty[] = "{\"vocab_size\": 2, \"hidden_size\": 2, \"num_hidden_layers\": 1, "
                                "\"num_attention_heads\": 1, \"kv_lora_rank\": 1, \"qk_rope_head_dim\": 2, "
                                "\"v_head_dim\": 1, \"intermediate_size\": 1, \"max_position_embeddings\": 1}";
    if (fg_config_from_json_ex(c, empty, sizeof empty - 1, "preset", NULL, 0)) memset(c, 0, sizeof *c);
}

// Hugging Face config.json values of the released checkpoints (MODEL.md; Llama: meta-llama).
static int cost_preset(fg_config *c, int *mtp, const char *name) {
    preset_base(c);
    *mtp = 0;
    if (!strncmp(name, "deepseek-", 9)) {
        int v3 = !strcmp(name, "deepseek-v3"), v2 = !strcmp(name, "deepseek-v2"), lite = !strcmp(name, "deepseek-v2-lite");
        if (!v3 && !v2 && !lite) return -1;
        c->attn_type = FG_ATTN_MLA; c->rope_interleave = 1;
        c->vocab_size = v3 ? 129280 : 102400;
        c->hidden_size = v3 ? 7168 : v2 ? 5120 : 2048;
        c->num_hidden_layers = v3 ? 61 : v2 ? 60 : 27;
        c->first_k_dense_replace = v3 ? 3 : 1;
        c->intermediate_size = v3 ? 18432 : v2 ? 12288 : 10944;
        c->moe_intermediate_size = v3 ? 2048 : v2 ? 1536 : 1408;
        c->num_attention_heads = v3 || v2 ? 128 : 16;
        c->num_key_value_heads = c->num_attention_heads;
        c->q_lora_rank = lite ? 0 : 1536; c->kv_lora_rank = 512;
        c->qk_nope_head_dim = 128; c->qk_rope_head_dim = 64; c->v_head_dim = 128;
        c->n_routed_experts = v3 ? 256 : v2 ? 160 : 64;
        c->n_shared_experts = v3 ? 1 : 2;
        c->num_experts_per_tok = v3 ? 8 : 6;
        c->scoring_func = v3 ? FG_SCORE_SIGMOID : FG_SCORE_SOFTMAX;
        c->topk_method = v3 ? FG_TOPK_NOAUX_TC : v2 ? FG_TOPK_GROUP_LIMITED_GREEDY : FG_TOPK_GREEDY;
        c->n_group = lite ? 1 : 8; c->topk_group = v3 ? 4 : v2 ? 3 : 1;
        c->norm_topk_prob = v3; c->routed_scaling_factor = v3 ? 2.5f : v2 ? 16.0f : 1.0f;
        c->max_position_embeddings = 163840; c->rope_theta = 10000;
        c->rope_yarn = 1; c->rope_factor = 40; c->rope_original_max_position_embeddings = 4096;
        c->rope_beta_fast = 32; c->rope_beta_slow = 1;
        c->rope_mscale = v3 ? 1.0f : 0.707f; c->rope_mscale_all_dim = v3 ? 1.0f : 0.707f;
        c->head_dim = c->hidden_size / c->num_attention_heads;
        *mtp = v3;
        return 0;
    }
    if (!strcmp(name, "llama3-8b") || !strcmp(name, "llama3-405b")) {
        int big = name[7] == '4';
        c->attn_type = FG_ATTN_GQA; c->rope_interleave = 0;
        c->vocab_size = 128256;
        c->hidden_size = big ? 16384 : 4096;
        c->num_hidden_layers = big ? 126 : 32;
        c->num_attention_heads = big ? 128 : 32;
        c->num_key_value_heads = 8;
        c->head_dim = 128;
        c->intermediate_size = big ? 53248 : 14336;
        c->rope_theta = 500000; c->rms_norm_eps = 1e-5f;
        c->max_position_embeddings = 131072;
        return 0;
    }
    return -1;
}

static const fg_cost_published PUBLISHED[] = {
    {"deepseek-v3", "H800", 14.8e12, 2.664e6, {0.119e6, 0.005e6}, {"context extension", "post-training"}, 2.0, 2048,
     "DeepSeek-V3 technical report (arXiv 2412.19437), Table 1"},
    {"llama3-405b", "H100-SXM", 15.6e12, 30.84e6, {0, 0}, {NULL, NULL}, 0, 16384,
     "Llama 3 paper (arXiv 2407.21783) and the Llama 3.1 model card (30.84M H100-80GB hours for 405B)"},
    {"llama3-8b", "H100-SXM", 15e12, 1.46e6, {0, 0}, {NULL, NULL}, 0, 0,
     "Llama 3.1 model card (1.46M H100-80GB hours for 8B, ~15T tokens)"},
};

const fg_cost_published *fg_cost_published_find(const char *preset) {
    for (size_t i = 0; i < sizeof PUBLISHED / sizeof *PUBLISHED; i++)
        if (!strcmp(PUBLISHED[i].preset, preset)) return &PUBLISHED[i];
    return NULL;
}

int fg_cost_config(fg_config *c, int *mtp_layers, const char *spec, void (*warn)(const char *)) {
    *mtp_layers = 0;
    if (strchr(spec, '/') || strstr(spec, ".json")) {
        size_t len;
        char *text = fg_read_file(spec, &len);
        if (!text) return -1;
        int rc = fg_config_from_json_ex(c, text, len, spec, warn, 0);
        if (!rc) *mtp_layers = c->num_nextn_predict_layers; // priced apart from the main model
        free(text);
        return rc;
    }
    if (!cost_preset(c, mtp_layers, spec)) return 0;
    if (!fg_config_preset(c, spec)) return 0;
    return fg_set_error("unknown model '%s' (known presets: deepseek-v3, deepseek-v2, deepseek-v2-lite, llama3-405b, "
                        "llama3-8b, tiny, demo, bench-moe; or a config.json path)", spec);
}

// ---- counts ----------------------------------------------------------------------------------

const char *fg_cost_component_name(int comp) {
    static const char *const names[FG_COMP_N] = {
        "embedding", "attention projections", "attention scores+values", "dense FFN", "routed experts",
        "shared experts", "router", "norms and biases", "output head", "MTP module",
    };
    return comp >= 0 && comp < FG_COMP_N ? names[comp] : "?";
}

// Per-layer pieces: attention projection weights, the norm weights inside attention.
static void attn_counts(const fg_config *c, double *w, double *norm) {
    double C = c->hidden_size, H = c->num_attention_heads;
    if (c->attn_type == FG_ATTN_MLA) {
        double Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim;
        double Rq = c->q_lora_rank, Rkv = c->kv_lora_rank;
        *w = (Rq > 0 ? Rq * C + H * (Dn + Dr) * Rq : H * (Dn + Dr) * C) + (Rkv + Dr) * C + H * (Dn + Dv) * Rkv + C * H * Dv;
        *norm = Rq + Rkv;
    } else {
        double Dh = c->head_dim, Hkv = c->num_key_value_heads;
        *w = H * Dh * C + 2 * Hkv * Dh * C + C * H * Dh;
        *norm = c->attention_bias ? H * Dh + 2 * Hkv * Dh : 0; // biases: no matmul FLOPs either
    }
}

static double attn_dims(const fg_config *c) { // H * (Dqk + Dv)
    if (c->attn_type == FG_ATTN_MLA) return (double)c->num_attention_heads * (c->qk_nope_head_dim + c->qk_rope_head_dim + c->v_head_dim);
    return (double)c->num_attention_heads * 2 * c->head_dim;
}

int fg_cost_model_compute(fg_cost_model *r, const fg_config *c, const fg_cost_opts *o) {
    memset(r, 0, sizeof *r);
    if (o->context < 1 || o->batch < 1 || o->seq < 1 || o->devices < 1 || o->mtp_layers < 0)
        return fg_set_error("cost: context, batch, seq and devices must be >= 1 (got %d, %d, %d, %d)", o->context, o->batch,
                            o->seq, o->devices);
    double C = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers;
    double E = c->n_routed_experts, K = c->num_experts_per_tok, Fe = c->moe_intermediate_size, F = c->intermediate_size;
    double Fs = c->n_shared_experts * Fe;
    double aw, an;
    attn_counts(c, &aw, &an);
    double *p = r->params, *a = r->active;
    p[FG_COMP_EMBED] = V * C;
    p[FG_COMP_HEAD] = c->tie_word_embeddings ? 0 : V * C;
    p[FG_COMP_NORM] = C; // final norm
    int moe_layers = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        p[FG_COMP_ATTN] += aw;
        p[FG_COMP_NORM] += an + 2 * C;
        if (fg_config_is_moe_layer(c, l)) {
            moe_layers++;
            p[FG_COMP_ROUTED] += E * 3 * Fe * C;
            a[FG_COMP_ROUTED] += K * 3 * Fe * C;
            p[FG_COMP_SHARED] += 3 * Fs * C;
            p[FG_COMP_ROUTER] += E * C;
        } else {
            p[FG_COMP_DENSE_FFN] += 3 * F * C;
        }
    }
    for (int i = 0; i < FG_COMP_N; i++)
        if (i != FG_COMP_ROUTED) a[i] = p[i];
    a[FG_COMP_ROUTED] = p[FG_COMP_ROUTED] > 0 ? a[FG_COMP_ROUTED] : 0;
    // Forward FLOPs per token: 2 per multiply-add of every matmul the token goes through.
    double *f = r->fwd;
    f[FG_COMP_ATTN] = 2 * p[FG_COMP_ATTN];
    f[FG_COMP_SDPA] = 2 * L * attn_dims(c) * (o->context + 1) / 2.0;
    f[FG_COMP_DENSE_FFN] = 2 * p[FG_COMP_DENSE_FFN];
    f[FG_COMP_ROUTED] = 2 * a[FG_COMP_ROUTED];
    f[FG_COMP_SHARED] = 2 * p[FG_COMP_SHARED];
    f[FG_COMP_ROUTER] = 2 * p[FG_COMP_ROUTER];
    f[FG_COMP_HEAD] = 2 * V * C; // a tied head is still a matmul
    // MTP (V3): per module, enorm + hnorm + eh_proj (C, 2C) + one MoE block + the shared head's
    // norm; the released checkpoint stores its own copies of the embedding and output head.
    if (o->mtp_layers > 0) {
        double block_w = aw + (E > 0 ? E * 3 * Fe * C + 3 * Fs * C + E * C : 3 * F * C);
        double block_a = aw + (E > 0 ? K * 3 * Fe * C + 3 * Fs * C + E * C : 3 * F * C);
        double unique = block_w + an + 2 * C + 2 * C * C + 3 * C;
        r->mtp_unique = o->mtp_layers * unique;
        p[FG_COMP_MTP] = o->mtp_layers * (unique + 2 * V * C);
        a[FG_COMP_MTP] = o->mtp_layers * (block_a + an + 2 * C + 2 * C * C + 3 * C + 2 * V * C);
        f[FG_COMP_MTP] = o->mtp_layers * (2 * (block_a + 2 * C * C + V * C) + 2 * attn_dims(c) * (o->context + 1) / 2.0);
    }
    for (int i = 0; i < FG_COMP_N; i++) {
        if (i == FG_COMP_MTP) continue;
        r->total += p[i];
        r->total_active += a[i];
        r->fwd_per_token += f[i];
    }
    r->train_per_token = 3 * r->fwd_per_token;
    // Caches and memory.
    double bytes = o->precision == FG_F32 ? 4 : 2; // fp8 training keeps bf16 activations and caches
    if (c->attn_type == FG_ATTN_MLA) r->kv_bytes_per_token = L * (c->kv_lora_rank + c->qk_rope_head_dim) * bytes;
    else r->kv_bytes_per_token = L * 2.0 * c->num_key_value_heads * c->head_dim * bytes;
    r->kv_mha_bytes_per_token = L * attn_dims(c) * bytes;
    double wb = o->precision == FG_F32 ? 4 : o->precision == FG_BF16 ? 2 : 1;
    double gb = o->precision == FG_F32 ? 4 : 2;
    double ob = o->precision == FG_F32 ? 8 : 12; // AdamW m, v (+ fp32 master weights in mixed precision)
    double np = r->total + r->mtp_unique, D = o->devices;
    r->mem_weights = np * wb / D;
    r->mem_grads = np * gb / D;
    r->mem_optim = np * ob / D;
    // Activations saved for backward per token and layer (elements), as frugal's trainer keeps
    // them, attention probabilities excluded (flash-style attention recomputes them).
    double H = c->num_attention_heads, per_attn;
    if (c->attn_type == FG_ATTN_MLA) {
        double Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim;
        double Rq = c->q_lora_rank, Rkv = c->kv_lora_rank;
        per_attn = 2 * Rq + 2 * H * (Dn + Dr) + (Rkv + Dr) + Rkv + H * (Dn + Dv) + H * Dv;
    } else {
        double Dh = c->head_dim, Hkv = c->num_key_value_heads;
        per_attn = 2 * H * Dh + 2 * Hkv * Dh;
    }
    double acts = 0, biggest = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        double x = 4 * C + per_attn + (fg_config_is_moe_layer(c, l) ? E + K * (2 * C + 3 * Fe) + 3 * Fs : 3 * F);
        acts += x;
        biggest = FG_MAX(biggest, x);
    }
    acts += 2 * C + V; // final norm and logits
    double tok = (double)o->batch * o->seq;
    r->mem_acts = acts * tok * bytes;
    r->mem_acts_recompute = (L * C + biggest + 2 * C + V) * tok * bytes;
    (void)moe_layers;
    return 0;
}
