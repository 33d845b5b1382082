// config.c: model hyperparameters: presets, Hugging Face config.json parsing, validation.
//
// Validation runs before any allocation and names the offending field. Parsing accepts the field
// names of DeepSeek-V2/V3 and Qwen2/Llama config.json files plus frugal's own "attention_type",
// "rope_interleave" and "head_dim"; unknown fields are reported through a warning callback.
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/json.h"
#include "model/model.h"
#include "util.h"

static void config_defaults(fg_config *c) {
    memset(c, 0, sizeof *c);
    c->moe_layer_freq = 1;
    c->n_group = 1;
    c->topk_group = 1;
    c->routed_scaling_factor = 1.0f;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->rope_interleave = 1;
    c->rope_factor = 1.0f;
    c->rope_beta_fast = 32.0f;
    c->rope_beta_slow = 1.0f;
    c->rope_mscale = 1.0f;
    c->rope_mscale_all_dim = 0.0f;
    c->scoring_func = FG_SCORE_SOFTMAX;
    c->topk_method = FG_TOPK_GREEDY;
}

int fg_config_preset(fg_config *c, const char *name) {
    config_defaults(c);
    if (!strcmp(name, "tiny")) { // for tests: every feature on, every size small
        c->vocab_size = 300; c->hidden_size = 32; c->num_hidden_layers = 2; c->first_k_dense_replace = 1;
        c->intermediate_size = 64; c->moe_intermediate_size = 16; c->num_attention_heads = 2;
        c->num_key_value_heads = 2; c->attn_type = FG_ATTN_MLA; c->q_lora_rank = 16; c->kv_lora_rank = 16;
        c->qk_nope_head_dim = 8; c->qk_rope_head_dim = 4; c->v_head_dim = 8;
        c->n_routed_experts = 8; c->n_shared_experts = 1; c->num_experts_per_tok = 2;
        c->scoring_func = FG_SCORE_SIGMOID; c->topk_method = FG_TOPK_NOAUX_TC; c->n_group = 2; c->topk_group = 1;
        c->norm_topk_prob = 1; c->routed_scaling_factor = 1.0f; c->max_position_embeddings = 128;
    } else if (!strcmp(name, "demo")) { // the built-in task (docs/task.md): small and fast on 2 cores
        c->vocab_size = 264; c->hidden_size = 128; c->num_hidden_layers = 4; c->first_k_dense_replace = 1;
        c->intermediate_size = 384; c->moe_intermediate_size = 128; c->num_attention_heads = 4;
        c->num_key_value_heads = 4; c->attn_type = FG_ATTN_MLA; c->q_lora_rank = 0; c->kv_lora_rank = 64;
        c->qk_nope_head_dim = 32; c->qk_rope_head_dim = 16; c->v_head_dim = 32;
        c->n_routed_experts = 8; c->n_shared_experts = 1; c->num_experts_per_tok = 2;
        c->scoring_func = FG_SCORE_SIGMOID; c->topk_method = FG_TOPK_NOAUX_TC; c->n_group = 1; c->topk_group = 1;
        c->norm_topk_prob = 1; c->routed_scaling_factor = 1.0f; c->max_position_embeddings = 128;
    } else if (!strcmp(name, "demo-student")) { // the demo's distillation student: dense GQA, ~20% of demo's active
        c->vocab_size = 264; c->hidden_size = 64; c->num_hidden_layers = 3; c->first_k_dense_replace = 3;
        c->intermediate_size = 192; c->num_attention_heads = 4; c->num_key_value_heads = 2; c->attn_type = FG_ATTN_GQA;
        c->n_routed_experts = 0; c->rope_interleave = 0; c->max_position_embeddings = 128;
    } else if (!strcmp(name, "bench-moe")) { // the performance issue's reference shape; keep exact
        c->vocab_size = 4096; c->hidden_size = 512; c->num_hidden_layers = 8; c->first_k_dense_replace = 1;
        c->intermediate_size = 1536; c->moe_intermediate_size = 256; c->num_attention_heads = 8;
        c->num_key_value_heads = 8; c->attn_type = FG_ATTN_MLA; c->q_lora_rank = 256; c->kv_lora_rank = 128;
        c->qk_nope_head_dim = 64; c->qk_rope_head_dim = 32; c->v_head_dim = 64;
        c->n_routed_experts = 16; c->n_shared_experts = 1; c->num_experts_per_tok = 4;
        c->scoring_func = FG_SCORE_SIGMOID; c->topk_method = FG_TOPK_NOAUX_TC; c->n_group = 1; c->topk_group = 1;
        c->norm_topk_prob = 1; c->routed_scaling_factor = 1.0f; c->max_position_embeddings = 512;
    } else {
        return fg_set_error("unknown preset '%s' (hint: use tiny, demo, demo-student or bench-moe, or a config.json path)", name);
    }
    c->head_dim = c->hidden_size / c->num_attention_heads;
    return 0;
}

#define BAD(...) return fg_set_error(__VA_ARGS__)

int fg_config_validate(const fg_config *c) {
    if (fg_config_validate_shape(c)) return -1;
    int64_t total, active;
    fg_config_param_counts(c, &total, &active);
    double mem = fg_phys_mem_bytes();
    if (mem > 0 && total * 4.0 > mem)
        BAD("config: the fp32 weights alone need %.1f GiB but this machine has %.1f GiB of memory (hint: a smaller config)",
            total * 4.0 / 1073741824.0, mem / 1073741824.0);
    return 0;
}

int fg_config_validate_shape(const fg_config *c) {
    if (c->vocab_size < 2 || c->vocab_size > (1 << 24)) BAD("config: vocab_size must be in [2, 16777216] (got %d)", c->vocab_size);
    if (c->hidden_size < 1 || c->hidden_size > 65536) BAD("config: hidden_size must be in [1, 65536] (got %d)", c->hidden_size);
    if (c->num_hidden_layers < 1 || c->num_hidden_layers > 1024) BAD("config: num_hidden_layers must be in [1, 1024] (got %d)", c->num_hidden_layers);
    if (c->num_attention_heads < 1 || c->num_attention_heads > 1024) BAD("config: num_attention_heads must be in [1, 1024] (got %d)", c->num_attention_heads);
    if (!(c->rms_norm_eps > 0)) BAD("config: rms_norm_eps must be > 0 (got %g)", c->rms_norm_eps);
    if (!(c->rope_theta > 1)) BAD("config: rope_theta must be > 1 (got %g)", c->rope_theta);
    if (c->max_position_embeddings < 1 || c->max_position_embeddings > (1 << 20))
        BAD("config: max_position_embeddings must be in [1, 1048576] (got %d)", c->max_position_embeddings);
    if (c->attn_type == FG_ATTN_MLA) {
        if (c->q_lora_rank < 0) BAD("config: q_lora_rank must be null or > 0 (got %d)", c->q_lora_rank);
        if (c->kv_lora_rank < 1) BAD("config: kv_lora_rank must be > 0 for MLA (got %d)", c->kv_lora_rank);
        if (c->qk_nope_head_dim < 0) BAD("config: qk_nope_head_dim must be >= 0 (got %d)", c->qk_nope_head_dim);
        if (c->qk_rope_head_dim < 2 || c->qk_rope_head_dim % 2) BAD("config: qk_rope_head_dim must be even and >= 2 (got %d)", c->qk_rope_head_dim);
        if (c->v_head_dim < 1) BAD("config: v_head_dim must be > 0 (got %d)", c->v_head_dim);
    } else if (c->attn_type == FG_ATTN_GQA) {
        if (c->num_key_value_heads < 1 || c->num_attention_heads % c->num_key_value_heads)
            BAD("config: num_key_value_heads must divide num_attention_heads (%d), got %d", c->num_attention_heads, c->num_key_value_heads);
        if (c->head_dim < 2 || c->head_dim % 2) BAD("config: head_dim must be even and >= 2 (got %d)", c->head_dim);
    } else {
        BAD("config: attention_type must be \"mla\" or \"gqa\"");
    }
    if (c->first_k_dense_replace < 0 || c->first_k_dense_replace > c->num_hidden_layers)
        BAD("config: first_k_dense_replace must be in [0, num_hidden_layers=%d] (got %d)", c->num_hidden_layers, c->first_k_dense_replace);
    if (c->moe_layer_freq < 1) BAD("config: moe_layer_freq must be >= 1 (got %d)", c->moe_layer_freq);
    if (c->num_nextn_predict_layers < 0 || c->num_nextn_predict_layers > FG_MTP_MAX)
        BAD("config: num_nextn_predict_layers must be in [0, %d] (got %d)", FG_MTP_MAX, c->num_nextn_predict_layers);
    int any_dense = 0;
    for (int l = 0; l < fg_config_n_blocks(c); l++) any_dense |= !fg_config_is_moe_layer(c, l);
    if (any_dense && c->intermediate_size < 1) BAD("config: intermediate_size must be > 0 (dense FFN layers exist), got %d", c->intermediate_size);
    if (c->n_routed_experts < 0 || c->n_routed_experts > 1024) BAD("config: n_routed_experts must be in [0, 1024] (got %d)", c->n_routed_experts);
    if (c->n_routed_experts > 0) {
        int E = c->n_routed_experts;
        if (c->moe_intermediate_size < 1) BAD("config: moe_intermediate_size must be > 0 (got %d)", c->moe_intermediate_size);
        if (c->n_shared_experts < 0) BAD("config: n_shared_experts must be >= 0 (got %d)", c->n_shared_experts);
        if (c->num_experts_per_tok < 1 || c->num_experts_per_tok > E)
            BAD("config: num_experts_per_tok must be in [1, n_routed_experts=%d] (got %d)", E, c->num_experts_per_tok);
        if (c->topk_method == FG_TOPK_GREEDY && c->n_group > 1)
            BAD("config: topk_method \"greedy\" needs n_group 1 (got %d; hint: use group_limited_greedy)", c->n_group);
        if (c->n_group < 1 || c->n_group > 64 || E % c->n_group)
            BAD("config: n_group must divide n_routed_experts=%d and be in [1, 64] (got %d)", E, c->n_group);
        if (c->topk_group < 1 || c->topk_group > c->n_group)
            BAD("config: topk_group must be in [1, n_group=%d] (got %d)", c->n_group, c->topk_group);
        if (c->num_experts_per_tok > c->topk_group * (E / c->n_group))
            BAD("config: num_experts_per_tok=%d exceeds the experts in topk_group=%d groups (%d)",
                c->num_experts_per_tok, c->topk_group, c->topk_group * (E / c->n_group));
        if (!(c->routed_scaling_factor > 0)) BAD("config: routed_scaling_factor must be > 0 (got %g)", c->routed_scaling_factor);
    }
    if (c->rope_yarn) {
        if (!(c->rope_factor >= 1)) BAD("config: rope_scaling.factor must be >= 1 (got %g)", c->rope_factor);
        if (c->rope_original_max_position_embeddings < 1)
            BAD("config: rope_scaling.original_max_position_embeddings must be > 0 (got %d)", c->rope_original_max_position_embeddings);
        if (!(c->rope_beta_fast > 0) || !(c->rope_beta_slow > 0))
            BAD("config: rope_scaling.beta_fast and beta_slow must be > 0");
        if (c->rope_mscale_all_dim < 0) BAD("config: rope_scaling.mscale_all_dim must be >= 0");
    }
    if (c->rope_llama3) {
        if (c->rope_yarn) BAD("config: rope_scaling cannot be both yarn and llama3");
        if (!(c->rope_factor >= 1)) BAD("config: rope_scaling.factor must be >= 1 (got %g)", c->rope_factor);
        if (c->rope_original_max_position_embeddings < 1)
            BAD("config: rope_scaling.original_max_position_embeddings must be > 0 (got %d)", c->rope_original_max_position_embeddings);
        if (!(c->rope_low_freq_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor))
            BAD("config: rope_scaling needs 0 < low_freq_factor < high_freq_factor (got %g, %g)", c->rope_low_freq_factor,
                c->rope_high_freq_factor);
    }
    // Every size field bounded, whatever the architecture uses, so parameter counts (int64) and
    // the tensor table's int products cannot overflow on hostile input (config.json, checkpoints).
    const struct { const char *name; int v; } dims[] = {
        {"intermediate_size", c->intermediate_size}, {"moe_intermediate_size", c->moe_intermediate_size},
        {"q_lora_rank", c->q_lora_rank}, {"kv_lora_rank", c->kv_lora_rank}, {"qk_nope_head_dim", c->qk_nope_head_dim},
        {"qk_rope_head_dim", c->qk_rope_head_dim}, {"v_head_dim", c->v_head_dim}, {"head_dim", c->head_dim},
        {"num_key_value_heads", c->num_key_value_heads}, {"n_shared_experts", c->n_shared_experts},
    };
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        if (dims[i].v < 0 || dims[i].v > (1 << 18)) BAD("config: %s must be in [0, 262144] (got %d)", dims[i].name, dims[i].v);
    if (c->n_shared_experts > 1024) BAD("config: n_shared_experts must be in [0, 1024] (got %d)", c->n_shared_experts);
    int64_t total, active;
    fg_config_param_counts(c, &total, &active);
    if (total > ((int64_t)1 << 40)) BAD("config: %lld parameters is beyond what frugal supports", (long long)total);
    return 0;
}

// Block l's parameters (the router and norms included), all of them and those a token uses.
static void block_params(const fg_config *c, int l, int64_t *total, int64_t *active) {
    int64_t C = c->hidden_size, H = c->num_attention_heads;
    int64_t Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim;
    int64_t Dh = c->head_dim, Hkv = c->num_key_value_heads, Rq = c->q_lora_rank, Rkv = c->kv_lora_rank;
    int64_t E = c->n_routed_experts, K = c->num_experts_per_tok, Fe = c->moe_intermediate_size;
    int64_t Fs = c->n_shared_experts * Fe, F = c->intermediate_size;
    int64_t attn;
    if (c->attn_type == FG_ATTN_MLA) {
        attn = (Rq > 0 ? Rq * C + Rq + H * (Dn + Dr) * Rq : H * (Dn + Dr) * C) + (Rkv + Dr) * C + Rkv +
               H * (Dn + Dv) * Rkv + C * H * Dv;
    } else {
        attn = H * Dh * C + 2 * Hkv * Dh * C + C * H * Dh + (c->attention_bias ? H * Dh + 2 * Hkv * Dh : 0);
    }
    int64_t base = attn + 2 * C;
    if (fg_config_is_moe_layer(c, l)) {
        int64_t shared = 3 * Fs * C, gate = E * C;
        *total = base + gate + shared + E * 3 * Fe * C;
        *active = base + gate + shared + K * 3 * Fe * C;
    } else {
        *total = *active = base + 3 * F * C;
    }
}

void fg_config_param_counts(const fg_config *c, int64_t *total, int64_t *active) {
    int64_t C = c->hidden_size, V = c->vocab_size;
    int64_t t = V * C + C + (c->tie_word_embeddings ? 0 : V * C), a = t;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        int64_t bt, ba;
        block_params(c, l, &bt, &ba);
        t += bt;
        a += ba;
    }
    *total = t;
    *active = a;
}

int64_t fg_config_mtp_params(const fg_config *c) {
    int64_t C = c->hidden_size, n = 0;
    for (int l = c->num_hidden_layers; l < fg_config_n_blocks(c); l++) {
        int64_t bt, ba;
        block_params(c, l, &bt, &ba);
        n += bt + 2 * C + 2 * C * C + C; // enorm, hnorm, eh_proj, shared_head.norm
    }
    return n;
}

// ---- JSON ------------------------------------------------------------------------------------

static int get_int(const fg_json *v, const char *key, int *out, const char *where) {
    if (v->type == FG_JSON_NULL) { *out = 0; return 0; }
    if (v->type != FG_JSON_NUMBER || v->num != floor(v->num) || fabs(v->num) > 2147483647.0)
        return fg_set_error("%s:%d: field '%s' must be an integer", where, v->line, key);
    *out = (int)v->num;
    return 0;
}
static int get_float(const fg_json *v, const char *key, float *out, const char *where) {
    if (v->type != FG_JSON_NUMBER) return fg_set_error("%s:%d: field '%s' must be a number", where, v->line, key);
    if (fabs(v->num) > FLT_MAX) return fg_set_error("%s:%d: field '%s' is out of the float range", where, v->line, key);
    *out = (float)v->num;
    return 0;
}
static int get_bool(const fg_json *v, const char *key, int *out, const char *where) {
    if (v->type != FG_JSON_BOOL) return fg_set_error("%s:%d: field '%s' must be true or false", where, v->line, key);
    *out = v->boolean;
    return 0;
}
static int get_enum(const fg_json *v, const char *key, int *out, const char *where, const char *const *names, int n) {
    if (v->type == FG_JSON_STRING)
        for (int i = 0; i < n; i++)
            if (!strcmp(v->str, names[i])) { *out = i; return 0; }
    char opts[256] = "";
    for (int i = 0; i < n; i++) { strcat(opts, i ? ", " : ""); strcat(opts, names[i]); }
    return fg_set_error("%s:%d: field '%s' must be one of: %s", where, v->line, key, opts);
}

// Fields we read: name -> kind and destination offset.
enum { K_INT, K_FLOAT, K_BOOL };
typedef struct { const char *name; int kind; size_t off; } field_spec;
#define F_(name, kind) {#name, kind, offsetof(fg_config, name)}
static const field_spec FIELDS[] = {
    F_(vocab_size, K_INT), F_(hidden_size, K_INT), F_(num_hidden_layers, K_INT), F_(intermediate_size, K_INT),
    F_(moe_intermediate_size, K_INT), F_(first_k_dense_replace, K_INT), F_(moe_layer_freq, K_INT),
    F_(num_attention_heads, K_INT), F_(num_key_value_heads, K_INT), F_(q_lora_rank, K_INT), F_(kv_lora_rank, K_INT),
    F_(qk_nope_head_dim, K_INT), F_(qk_rope_head_dim, K_INT), F_(v_head_dim, K_INT), F_(head_dim, K_INT),
    F_(attention_bias, K_BOOL), F_(n_routed_experts, K_INT), F_(n_shared_experts, K_INT),
    F_(num_experts_per_tok, K_INT), F_(n_group, K_INT), F_(topk_group, K_INT), F_(norm_topk_prob, K_BOOL),
    F_(routed_scaling_factor, K_FLOAT), F_(rms_norm_eps, K_FLOAT), F_(rope_theta, K_FLOAT),
    F_(max_position_embeddings, K_INT), F_(rope_interleave, K_BOOL), F_(tie_word_embeddings, K_BOOL),
    F_(num_nextn_predict_layers, K_INT),
};
// Fields of real config.json files that do not change the math frugal computes.
static const char *const IGNORED[] = {
    "architectures", "model_type", "torch_dtype", "transformers_version", "bos_token_id", "eos_token_id",
    "pad_token_id", "use_cache", "initializer_range", "auto_map", "attention_dropout", "pretraining_tp",
    "ep_size", "aux_loss_alpha", "seq_aux", "quantization_config",
    "use_sliding_window", "sliding_window", "max_window_layers", "rope_type", "mlp_bias", "_name_or_path",
    "hidden_act", "attention_type", "rope_scaling",
};

int fg_config_from_json(fg_config *c, const char *json, size_t len, const char *where, void (*warn)(const char *)) {
    return fg_config_from_json_ex(c, json, len, where, warn, 1);
}

int fg_config_from_json_ex(fg_config *c, const char *json, size_t len, const char *where, void (*warn)(const char *),
                           int check_memory) {
    config_defaults(c);
    fg_json *root = fg_json_parse(json, len, where);
    if (!root) return -1;
    int rc = -1;
    if (root->type != FG_JSON_OBJECT) { fg_set_error("%s: config must be a JSON object", where); goto done; }
    // Architecture first: it sets convention defaults that explicit fields may override.
    const fg_json *mt = fg_json_get(root, "model_type"), *at = fg_json_get(root, "attention_type");
    c->attn_type = FG_ATTN_MLA;
    if (mt && mt->type == FG_JSON_STRING && (!strcmp(mt->str, "llama") || !strcmp(mt->str, "qwen2") || !strcmp(mt->str, "mistral")))
        c->attn_type = FG_ATTN_GQA;
    if (at) {
        static const char *const names[] = {"mla", "gqa"};
        if (get_enum(at, "attention_type", &c->attn_type, where, names, 2)) goto done;
    }
    c->rope_interleave = c->attn_type == FG_ATTN_MLA;
    int have_hkv = 0, have_hd = 0;
    for (const fg_json *f = root->child; f; f = f->next) {
        const field_spec *spec = NULL;
        for (size_t i = 0; i < sizeof FIELDS / sizeof *FIELDS; i++)
            if (!strcmp(f->key, FIELDS[i].name)) spec = &FIELDS[i];
        void *dst = spec ? (char *)c + spec->off : NULL;
        if (spec) {
            int bad = spec->kind == K_INT ? get_int(f, f->key, dst, where)
                    : spec->kind == K_FLOAT ? get_float(f, f->key, dst, where)
                    : get_bool(f, f->key, dst, where);
            if (bad) goto done;
            have_hkv |= !strcmp(f->key, "num_key_value_heads");
            have_hd |= !strcmp(f->key, "head_dim");
        } else if (!strcmp(f->key, "scoring_func")) {
            static const char *const names[] = {"softmax", "sigmoid"};
            if (get_enum(f, f->key, &c->scoring_func, where, names, 2)) goto done;
        } else if (!strcmp(f->key, "topk_method")) {
            static const char *const names[] = {"greedy", "group_limited_greedy", "noaux_tc"};
            if (get_enum(f, f->key, &c->topk_method, where, names, 3)) goto done;
        } else if (!strcmp(f->key, "hidden_act")) {
            if (f->type != FG_JSON_STRING || strcmp(f->str, "silu")) {
                fg_set_error("%s:%d: hidden_act must be \"silu\" (frugal implements SwiGLU)", where, f->line);
                goto done;
            }
        } else if (!strcmp(f->key, "rope_scaling")) {
            if (f->type == FG_JSON_NULL) continue;
            if (f->type != FG_JSON_OBJECT) { fg_set_error("%s:%d: rope_scaling must be null or an object", where, f->line); goto done; }
            const fg_json *ty = fg_json_get(f, "type");
            if (!ty) ty = fg_json_get(f, "rope_type");
            int llama3 = ty && ty->type == FG_JSON_STRING && !strcmp(ty->str, "llama3");
            if (!ty || ty->type != FG_JSON_STRING || (strcmp(ty->str, "yarn") && !llama3)) {
                fg_set_error("%s:%d: rope_scaling.type must be \"yarn\" or \"llama3\" (the scalings frugal implements)", where, f->line);
                goto done;
            }
            if (llama3) {
                c->rope_llama3 = 1;
                c->rope_low_freq_factor = 1.0f;
                c->rope_high_freq_factor = 4.0f;
                for (const fg_json *r = f->child; r; r = r->next) {
                    int bad = 0;
                    if (!strcmp(r->key, "factor")) bad = get_float(r, "rope_scaling.factor", &c->rope_factor, where);
                    else if (!strcmp(r->key, "original_max_position_embeddings"))
                        bad = get_int(r, "rope_scaling.original_max_position_embeddings", &c->rope_original_max_position_embeddings, where);
                    else if (!strcmp(r->key, "low_freq_factor")) bad = get_float(r, "rope_scaling.low_freq_factor", &c->rope_low_freq_factor, where);
                    else if (!strcmp(r->key, "high_freq_factor")) bad = get_float(r, "rope_scaling.high_freq_factor", &c->rope_high_freq_factor, where);
                    else if (strcmp(r->key, "type") && strcmp(r->key, "rope_type") && warn) {
                        char msg[256];
                        snprintf(msg, sizeof msg, "%s: unknown field 'rope_scaling.%s' ignored", where, r->key);
                        warn(msg);
                    }
                    if (bad) goto done;
                }
                continue;
            }
            c->rope_yarn = 1;
            c->rope_mscale_all_dim = 0;
            for (const fg_json *r = f->child; r; r = r->next) {
                int bad = 0;
                if (!strcmp(r->key, "factor")) bad = get_float(r, "rope_scaling.factor", &c->rope_factor, where);
                else if (!strcmp(r->key, "original_max_position_embeddings"))
                    bad = get_int(r, "rope_scaling.original_max_position_embeddings", &c->rope_original_max_position_embeddings, where);
                else if (!strcmp(r->key, "beta_fast")) bad = get_float(r, "rope_scaling.beta_fast", &c->rope_beta_fast, where);
                else if (!strcmp(r->key, "beta_slow")) bad = get_float(r, "rope_scaling.beta_slow", &c->rope_beta_slow, where);
                else if (!strcmp(r->key, "mscale")) bad = get_float(r, "rope_scaling.mscale", &c->rope_mscale, where);
                else if (!strcmp(r->key, "mscale_all_dim")) bad = get_float(r, "rope_scaling.mscale_all_dim", &c->rope_mscale_all_dim, where);
                else if (strcmp(r->key, "type") && strcmp(r->key, "rope_type") && warn) {
                    char msg[256];
                    snprintf(msg, sizeof msg, "%s: unknown field 'rope_scaling.%s' ignored", where, r->key);
                    warn(msg);
                }
                if (bad) goto done;
            }
        } else {
            int known = 0;
            for (size_t i = 0; i < sizeof IGNORED / sizeof *IGNORED; i++) known |= !strcmp(f->key, IGNORED[i]);
            if (!known && warn) {
                char msg[256];
                snprintf(msg, sizeof msg, "%s: unknown field '%s' ignored", where, f->key);
                warn(msg);
            }
        }
    }
    if (!have_hkv || c->attn_type == FG_ATTN_MLA) c->num_key_value_heads = have_hkv ? c->num_key_value_heads : c->num_attention_heads;
    if (!have_hd && c->num_attention_heads > 0) c->head_dim = c->hidden_size / c->num_attention_heads;
    if (c->vocab_size == 0) { fg_set_error("%s: missing required field 'vocab_size'", where); goto done; }
    if (c->hidden_size == 0) { fg_set_error("%s: missing required field 'hidden_size'", where); goto done; }
    if (check_memory ? fg_config_validate(c) : fg_config_validate_shape(c)) { fg_wrap_error("%s", where); goto done; }
    rc = 0;
done:
    fg_json_free(root);
    return rc;
}

int fg_config_load(fg_config *c, const char *path, void (*warn)(const char *)) {
    size_t len;
    char *text = fg_read_file(path, &len);
    if (!text) return -1;
    int rc = fg_config_from_json(c, text, len, path, warn);
    free(text);
    return rc;
}

char *fg_config_to_json(const fg_config *c) {
    static const char *const score[] = {"softmax", "sigmoid"}, *const topk[] = {"greedy", "group_limited_greedy", "noaux_tc"};
    char *buf = malloc(4096);
    if (!buf) { fg_set_error("out of memory"); return NULL; }
    int n = snprintf(buf, 4096,
        "{\n  \"model_type\": \"%s\",\n  \"attention_type\": \"%s\",\n  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n"
        "  \"num_hidden_layers\": %d,\n  \"intermediate_size\": %d,\n  \"moe_intermediate_size\": %d,\n"
        "  \"first_k_dense_replace\": %d,\n  \"moe_layer_freq\": %d,\n  \"num_attention_heads\": %d,\n"
        "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n  \"attention_bias\": %s,\n",
        c->attn_type == FG_ATTN_MLA ? (c->topk_method == FG_TOPK_NOAUX_TC ? "deepseek_v3" : "deepseek_v2") : "qwen2",
        c->attn_type == FG_ATTN_MLA ? "mla" : "gqa", c->vocab_size, c->hidden_size, c->num_hidden_layers,
        c->intermediate_size, c->moe_intermediate_size, c->first_k_dense_replace, c->moe_layer_freq,
        c->num_attention_heads, c->num_key_value_heads, c->head_dim, c->attention_bias ? "true" : "false");
    char qr[32];
    if (c->q_lora_rank > 0) snprintf(qr, sizeof qr, "%d", c->q_lora_rank); else strcpy(qr, "null");
    n += snprintf(buf + n, 4096 - n,
        "  \"q_lora_rank\": %s,\n  \"kv_lora_rank\": %d,\n  \"qk_nope_head_dim\": %d,\n  \"qk_rope_head_dim\": %d,\n"
        "  \"v_head_dim\": %d,\n  \"n_routed_experts\": %d,\n  \"n_shared_experts\": %d,\n  \"num_experts_per_tok\": %d,\n"
        "  \"scoring_func\": \"%s\",\n  \"topk_method\": \"%s\",\n  \"n_group\": %d,\n  \"topk_group\": %d,\n"
        "  \"norm_topk_prob\": %s,\n  \"routed_scaling_factor\": %.9g,\n  \"rms_norm_eps\": %.9g,\n  \"rope_theta\": %.9g,\n"
        "  \"max_position_embeddings\": %d,\n  \"rope_interleave\": %s,\n  \"tie_word_embeddings\": %s,\n"
        "  \"hidden_act\": \"silu\",\n  \"num_nextn_predict_layers\": %d,\n",
        qr, c->kv_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim, c->v_head_dim, c->n_routed_experts,
        c->n_shared_experts, c->num_experts_per_tok, score[c->scoring_func], topk[c->topk_method], c->n_group,
        c->topk_group, c->norm_topk_prob ? "true" : "false", c->routed_scaling_factor, c->rms_norm_eps,
        c->rope_theta, c->max_position_embeddings, c->rope_interleave ? "true" : "false",
        c->tie_word_embeddings ? "true" : "false", c->num_nextn_predict_layers);
    if (c->rope_yarn)
        n += snprintf(buf + n, 4096 - n,
            "  \"rope_scaling\": {\"type\": \"yarn\", \"factor\": %.9g, \"original_max_position_embeddings\": %d, "
            "\"beta_fast\": %.9g, \"beta_slow\": %.9g, \"mscale\": %.9g, \"mscale_all_dim\": %.9g}\n}\n",
            c->rope_factor, c->rope_original_max_position_embeddings, c->rope_beta_fast, c->rope_beta_slow,
            c->rope_mscale, c->rope_mscale_all_dim);
    else if (c->rope_llama3)
        n += snprintf(buf + n, 4096 - n,
            "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": %.9g, \"low_freq_factor\": %.9g, "
            "\"high_freq_factor\": %.9g, \"original_max_position_embeddings\": %d}\n}\n",
            c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_position_embeddings);
    else
        n += snprintf(buf + n, 4096 - n, "  \"rope_scaling\": null\n}\n");
    return buf;
}
