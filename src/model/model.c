// model.c: parameter layout, forward and backward of the DeepSeek-style model (docs/model.md).
//
// The forward pass is a flat list: embedding, per layer {rmsnorm, attention (MLA or GQA),
// residual, rmsnorm, FFN (dense SwiGLU or DeepSeekMoE), residual}, final rmsnorm, head, loss.
// Backward walks the same list in reverse. Every activation needed by backward is saved in
// fg_layer_acts; nothing is recomputed. fp32 throughout.
#include "model/model.h"
#include "dist/ep.h"
#include "model/layers.h"
#include "ops/gemm.h"
#include "model/route.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

// ---- tensor table ----------------------------------------------------------------------------

typedef struct {
    fg_tensor *t;
    int n, cap;
    size_t total;
    int layer, expert; // stamped on each added tensor
    int failed;        // out of memory: the builder stops and fg_tensor_table returns NULL
} table_builder;

static void tb_add(table_builder *tb, int flags, int d0, int d1, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#include <stdarg.h>
static void tb_add(table_builder *tb, int flags, int d0, int d1, const char *fmt, ...) {
    if (tb->failed) return;
    if (tb->n == tb->cap) {
        int cap = tb->cap ? tb->cap * 2 : 64;
        fg_tensor *t = realloc(tb->t, sizeof(fg_tensor) * cap);
        if (!t) { tb->failed = 1; return; }
        tb->t = t;
        tb->cap = cap;
    }
    fg_tensor *t = &tb->t[tb->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 0;
    t->numel = (size_t)d0 * (d1 > 0 ? d1 : 1);
    t->offset = tb->total;
    t->flags = flags;
    t->layer = tb->layer;
    t->expert = tb->expert;
    tb->total += t->numel;
}

// One block's tensors: a main layer, or (l >= L) MTP depth l-L+1 with its input projection and
// final norm around the same block (Hugging Face's names for DeepSeek-V3's layer 61).
static void add_block(table_builder *tb, const fg_config *c, int l) {
    int C = c->hidden_size, H = c->num_attention_heads;
    int Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim;
    int Dh = c->head_dim, Hkv = c->num_key_value_heads;
    int E = c->n_routed_experts, Fe = c->moe_intermediate_size, Fs = c->n_shared_experts * Fe;
    const int ND = FG_TENSOR_NO_DECAY;
    const char *p = "model.layers";
    tb->layer = l;
    if (l >= c->num_hidden_layers) {
        tb_add(tb, ND, C, 0, "%s.%d.enorm.weight", p, l);
        tb_add(tb, ND, C, 0, "%s.%d.hnorm.weight", p, l);
        tb_add(tb, 0, C, 2 * C, "%s.%d.eh_proj.weight", p, l);
    }
    tb_add(tb, ND, C, 0, "%s.%d.input_layernorm.weight", p, l);
    if (c->attn_type == FG_ATTN_MLA) {
        if (c->q_lora_rank > 0) {
            tb_add(tb, 0, c->q_lora_rank, C, "%s.%d.self_attn.q_a_proj.weight", p, l);
            tb_add(tb, ND, c->q_lora_rank, 0, "%s.%d.self_attn.q_a_layernorm.weight", p, l);
            tb_add(tb, 0, H * (Dn + Dr), c->q_lora_rank, "%s.%d.self_attn.q_b_proj.weight", p, l);
        } else {
            tb_add(tb, 0, H * (Dn + Dr), C, "%s.%d.self_attn.q_proj.weight", p, l);
        }
        tb_add(tb, 0, c->kv_lora_rank + Dr, C, "%s.%d.self_attn.kv_a_proj_with_mqa.weight", p, l);
        tb_add(tb, ND, c->kv_lora_rank, 0, "%s.%d.self_attn.kv_a_layernorm.weight", p, l);
        tb_add(tb, 0, H * (Dn + Dv), c->kv_lora_rank, "%s.%d.self_attn.kv_b_proj.weight", p, l);
        tb_add(tb, 0, C, H * Dv, "%s.%d.self_attn.o_proj.weight", p, l);
    } else {
        tb_add(tb, 0, H * Dh, C, "%s.%d.self_attn.q_proj.weight", p, l);
        if (c->attention_bias) tb_add(tb, ND, H * Dh, 0, "%s.%d.self_attn.q_proj.bias", p, l);
        tb_add(tb, 0, Hkv * Dh, C, "%s.%d.self_attn.k_proj.weight", p, l);
        if (c->attention_bias) tb_add(tb, ND, Hkv * Dh, 0, "%s.%d.self_attn.k_proj.bias", p, l);
        tb_add(tb, 0, Hkv * Dh, C, "%s.%d.self_attn.v_proj.weight", p, l);
        if (c->attention_bias) tb_add(tb, ND, Hkv * Dh, 0, "%s.%d.self_attn.v_proj.bias", p, l);
        tb_add(tb, 0, C, H * Dh, "%s.%d.self_attn.o_proj.weight", p, l);
    }
    tb_add(tb, ND, C, 0, "%s.%d.post_attention_layernorm.weight", p, l);
    if (!fg_config_is_moe_layer(c, l)) {
        tb_add(tb, 0, c->intermediate_size, C, "%s.%d.mlp.gate_proj.weight", p, l);
        tb_add(tb, 0, C, c->intermediate_size, "%s.%d.mlp.down_proj.weight", p, l);
        tb_add(tb, 0, c->intermediate_size, C, "%s.%d.mlp.up_proj.weight", p, l);
    } else {
        tb_add(tb, 0, E, C, "%s.%d.mlp.gate.weight", p, l);
        if (c->topk_method == FG_TOPK_NOAUX_TC)
            tb_add(tb, FG_TENSOR_BUFFER | ND, E, 0, "%s.%d.mlp.gate.e_score_correction_bias", p, l);
        // stacked: all gate_proj, then all down_proj, then all up_proj
        for (tb->expert = 0; tb->expert < E; tb->expert++)
            tb_add(tb, 0, Fe, C, "%s.%d.mlp.experts.%d.gate_proj.weight", p, l, tb->expert);
        for (tb->expert = 0; tb->expert < E; tb->expert++)
            tb_add(tb, 0, C, Fe, "%s.%d.mlp.experts.%d.down_proj.weight", p, l, tb->expert);
        for (tb->expert = 0; tb->expert < E; tb->expert++)
            tb_add(tb, 0, Fe, C, "%s.%d.mlp.experts.%d.up_proj.weight", p, l, tb->expert);
        tb->expert = -1;
        if (Fs > 0) {
            tb_add(tb, 0, Fs, C, "%s.%d.mlp.shared_experts.gate_proj.weight", p, l);
            tb_add(tb, 0, C, Fs, "%s.%d.mlp.shared_experts.down_proj.weight", p, l);
            tb_add(tb, 0, Fs, C, "%s.%d.mlp.shared_experts.up_proj.weight", p, l);
        }
    }
    if (l >= c->num_hidden_layers) tb_add(tb, ND, C, 0, "%s.%d.shared_head.norm.weight", p, l);
    tb->layer = -1;
}

// The table order is the memory order; fg_weights_bind walks the same sequence: the main model
// as Hugging Face lists it, then the MTP blocks (layers L .. L+D-1).
fg_tensor *fg_tensor_table(const fg_config *c, int *n, size_t *total) {
    table_builder tb = {0};
    tb.layer = tb.expert = -1;
    int C = c->hidden_size, V = c->vocab_size;
    tb_add(&tb, 0, V, C, "model.embed_tokens.weight");
    for (int l = 0; l < c->num_hidden_layers; l++) add_block(&tb, c, l);
    tb_add(&tb, FG_TENSOR_NO_DECAY, C, 0, "model.norm.weight");
    if (!c->tie_word_embeddings) tb_add(&tb, 0, V, C, "lm_head.weight");
    for (int l = c->num_hidden_layers; l < fg_config_n_blocks(c); l++) add_block(&tb, c, l);
    if (tb.failed) { free(tb.t); fg_set_error("out of memory building the tensor table"); return NULL; }
    *n = tb.n;
    *total = tb.total;
    return tb.t;
}

// The float views (backward's weights and gradients) of the allocation at base: the table's order
// comes from the one binder (fg_wview_bind, layers.c), read back as float pointers.
void fg_weights_bind(fg_weights *w, const fg_config *c, const fg_tensor *t, int n, float *base) {
    int L = fg_config_n_blocks(c), E = FG_MAX(1, c->n_routed_experts);
    int *types = calloc(n, sizeof *types);
    const void **data = calloc(n, sizeof *data);
    fg_wview v = {.layers = calloc(L, sizeof(fg_wlayer)), .experts = calloc((size_t)L * 3 * E, sizeof(fg_wref))};
    if (!types || !data || !v.layers || !v.experts) abort(); // a few KiB at model creation
    for (int i = 0; i < n; i++) data[i] = base + t[i].offset;
    fg_wview_bind(&v, c, n, types, data, (const float *const *)data, NULL);
#define F(ref) ((float *)(ref).p)
    w->embed = F(v.embed);
    w->final_norm = (float *)v.final_norm;
    w->lm_head = F(v.lm_head);
    for (int l = 0; l < L; l++) {
        const fg_wlayer *s = &v.layers[l];
        w->layers[l] = (fg_layer_w){
            .attn_norm = (float *)s->attn_norm, .wq = F(s->wq), .wq_a = F(s->wq_a), .q_norm = (float *)s->q_norm,
            .wq_b = F(s->wq_b), .wkv_a = F(s->wkv_a), .kv_norm = (float *)s->kv_norm, .wkv_b = F(s->wkv_b),
            .bq = (float *)s->bq, .wk = F(s->wk), .bk = (float *)s->bk, .wv = F(s->wv), .bv = (float *)s->bv,
            .wo = F(s->wo), .ffn_norm = (float *)s->ffn_norm, .w1 = F(s->w1), .w2 = F(s->w2), .w3 = F(s->w3),
            .gate = F(s->gate), .gate_bias = (float *)s->gate_bias, .ew1 = s->ew1 ? F(s->ew1[0]) : NULL,
            .ew2 = s->ew2 ? F(s->ew2[0]) : NULL, .ew3 = s->ew3 ? F(s->ew3[0]) : NULL, .sw1 = F(s->sw1),
            .sw2 = F(s->sw2), .sw3 = F(s->sw3), .enorm = (float *)s->enorm, .hnorm = (float *)s->hnorm,
            .eh_proj = F(s->eh_proj), .head_norm = (float *)s->head_norm};
    }
#undef F
    free(types); free(data); free(v.layers); free(v.experts);
}

const fg_tensor *fg_model_find_tensor(const fg_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

// ---- create / free ---------------------------------------------------------------------------

// The typed view of the fp32 parameters the shared layers read (every tensor F32, in place).
static int bind_view(fg_model *m) {
    const fg_config *c = &m->cfg;
    int n = m->n_tensors, L = fg_config_n_blocks(c), E = FG_MAX(1, c->n_routed_experts);
    int *types = calloc(n, sizeof *types);
    const void **data = calloc(n, sizeof *data);
    m->view.layers = calloc(L, sizeof *m->view.layers);
    m->view.experts = calloc((size_t)L * 3 * E, sizeof *m->view.experts);
    int ok = types && data && m->view.layers && m->view.experts;
    if (ok) {
        for (int i = 0; i < n; i++) data[i] = m->params + m->tensors[i].offset; // types: FG_F32 (0)
        fg_wview_bind(&m->view, c, n, types, data, (const float *const *)data, NULL);
    }
    free(types);
    free(data);
    return ok ? 0 : fg_set_error("out of memory");
}

void fg_model_set_backend(fg_model *m, const fg_backend *be) { m->be = be; }

int fg_model_set_precision(fg_model *m, int prec) {
    int old = m->prec == FG_BF16 ? FG_BF16 : FG_F32;
    m->prec = prec == FG_BF16 ? FG_BF16 : FG_F32;
    return old;
}

fg_model *fg_model_create(const fg_config *c) {
    if (fg_config_validate(c)) return NULL;
    fg_model *m = calloc(1, sizeof *m);
    if (!m) { fg_set_error("out of memory"); return NULL; }
    m->cfg = *c;
    m->tensors = fg_tensor_table(c, &m->n_tensors, &m->n_params);
    if (!m->tensors) { fg_model_free(m); return NULL; }
    m->params = fg_calloc(m->n_params, sizeof(float), "model weights");
    m->w.layers = calloc(fg_config_n_blocks(c), sizeof(fg_layer_w));
    m->g.layers = calloc(fg_config_n_blocks(c), sizeof(fg_layer_w));
    m->expert_load = calloc((size_t)fg_config_n_blocks(c) * FG_MAX(1, c->n_routed_experts), sizeof(int));
    m->touched = calloc(m->n_tensors, 1);
    if (!m->touched || !m->params || !m->w.layers || !m->g.layers || !m->expert_load) { fg_model_free(m); return NULL; }
    fg_weights_bind(&m->w, c, m->tensors, m->n_tensors, m->params);
    if (bind_view(m)) { fg_model_free(m); return NULL; }
    m->be = &fg_backend_cpu;
    m->prec = FG_F32;
    if (fg_model_rope_init(&m->rope, &m->softmax_scale, c)) { fg_model_free(m); return NULL; }
    return m;
}

// Hugging Face's yarn_get_mscale: 1 for scale <= 1, else 0.1 * mscale * ln(scale) + 1.
static double yarn_get_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0; }

int fg_model_rope_init(rope_table *rope, float *softmax_scale, const fg_config *c) {
    int Drope = c->attn_type == FG_ATTN_MLA ? c->qk_rope_head_dim : c->head_dim;
    int yarn = c->rope_yarn && c->max_position_embeddings > c->rope_original_max_position_embeddings;
    int rc = c->rope_llama3
        ? rope_table_init_llama3(rope, Drope, c->max_position_embeddings, c->rope_interleave, c->rope_theta,
                                 c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                                 c->rope_original_max_position_embeddings)
        : rope_table_init(rope, Drope, c->max_position_embeddings, c->rope_interleave, c->rope_theta, yarn,
                          c->rope_factor, c->rope_original_max_position_embeddings, c->rope_beta_fast,
                          c->rope_beta_slow);
    if (rc) return -1;
    int Dk = c->attn_type == FG_ATTN_MLA ? c->qk_nope_head_dim + c->qk_rope_head_dim : c->head_dim;
    *softmax_scale = 1.0f / sqrtf((float)Dk);
    if (yarn) { // as Hugging Face's DeepSeek modeling (docs/model.md "YaRN")
        double all = yarn_get_mscale(c->rope_factor, c->rope_mscale_all_dim);
        float k = (float)(yarn_get_mscale(c->rope_factor, c->rope_mscale) / all); // 1 when mscale == mscale_all_dim
        *softmax_scale *= (float)(all * all);
        if (k != 1.0f)
            for (size_t i = 0; i < (size_t)rope->T * (size_t)(rope->D / 2); i++) { rope->cos[i] *= k; rope->sin[i] *= k; }
    }
    return 0;
}

static void free_acts(fg_model *m) {
    free(m->acts_mem);
    free(m->acts);
    free(m->mtp);
    m->acts_mem = NULL; m->acts = NULL; m->mtp = NULL;
    m->mtp_live = 0;
    m->B = m->T = 0;
}

void fg_model_free(fg_model *m) {
    if (!m) return;
    free_acts(m);
    free(m->tensors); free(m->params); free(m->grads);
    free(m->w.layers); free(m->g.layers); free(m->expert_load); free(m->touched);
    free(m->view.layers); free(m->view.experts);
    rope_table_free(&m->rope);
    free(m);
}

const fg_config *fg_model_config(const fg_model *m) { return &m->cfg; }

void fg_model_zero_grad(fg_model *m) {
    if (m->grads) memset(m->grads, 0, sizeof(float) * m->n_params);
}

static int ensure_grads(fg_model *m) {
    if (m->grads) return 0;
    m->grads = fg_calloc(m->n_params, sizeof(float), "gradients");
    if (!m->grads) return -1;
    fg_weights_bind(&m->g, &m->cfg, m->tensors, m->n_tensors, m->grads);
    return 0;
}

void fg_model_init_weights(fg_model *m, uint64_t seed) {
    fg_rng r;
    fg_rng_seed(&r, seed);
    const fg_config *c = &m->cfg;
    float out_scale = 1.0f / sqrtf(2.0f * c->num_hidden_layers);
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (t->flags & FG_TENSOR_BUFFER) { memset(p, 0, sizeof(float) * t->numel); continue; }
        if (t->ndim == 1) {
            float v = strstr(t->name, ".bias") ? 0.0f : 1.0f;
            for (size_t j = 0; j < t->numel; j++) p[j] = v;
            continue;
        }
        float std = 0.02f;
        if (strstr(t->name, "o_proj") || strstr(t->name, "down_proj")) std *= out_scale;
        for (size_t j = 0; j < t->numel; j++) p[j] = std * fg_rng_normal(&r);
    }
}

// ---- activations -----------------------------------------------------------------------------

// Sizes every saved activation for (B, T). A two-pass carve: the first pass (base NULL) counts
// bytes, the second assigns pointers.
static size_t carve(fg_model *m, char *base, int B, int T) {
    const fg_config *c = &m->cfg;
    size_t N = (size_t)B * T, off = 0;
    int C = c->hidden_size, H = c->num_attention_heads, V = c->vocab_size;
    int Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Dh = c->head_dim;
    int Hkv = c->num_key_value_heads, E = c->n_routed_experts, K = c->num_experts_per_tok;
    int Fe = c->moe_intermediate_size, Fs = c->n_shared_experts * Fe, Rq = c->q_lora_rank, Rkv = c->kv_lora_rank;
    int mla = c->attn_type == FG_ATTN_MLA;
#define TAKE(ptr, count, type) do { size_t bytes_ = ((size_t)(count) * sizeof(type) + 63) & ~(size_t)63; \
        (ptr) = base ? (type *)(base + off) : (ptr); off += bytes_; } while (0)
    size_t max_layer = 0;
    for (int l = 0; l < fg_config_n_blocks(c); l++) {
        fg_layer_acts *a = base ? &m->acts[l] : &(fg_layer_acts){0};
        size_t layer_start = off;
        int moe = fg_config_is_moe_layer(c, l);
        TAKE(a->x, N * C, float); TAKE(a->xn1, N * C, float); TAKE(a->rstd1, N, float);
        if (mla) {
            if (Rq > 0) { TAKE(a->qa, N * Rq, float); TAKE(a->qan, N * Rq, float); TAKE(a->qa_rstd, N, float); }
            TAKE(a->q, N * H * (Dn + Dr), float);
            TAKE(a->ckv_raw, N * Rkv, float); TAKE(a->ckv, N * Rkv, float); TAKE(a->kv_rstd, N, float);
            TAKE(a->kvb, N * H * (Dn + Dv), float);
            TAKE(a->k, N * H * (Dn + Dr), float);
            TAKE(a->v, N * H * Dv, float);
            TAKE(a->y, N * H * Dv, float);
        } else {
            TAKE(a->q, N * H * Dh, float); TAKE(a->k, N * Hkv * Dh, float); TAKE(a->v, N * Hkv * Dh, float);
            TAKE(a->y, N * H * Dh, float);
        }
        TAKE(a->lse, (size_t)B * H * T, float);
        TAKE(a->x2, N * C, float); TAKE(a->xn2, N * C, float); TAKE(a->rstd2, N, float);
        int F = moe ? Fs : c->intermediate_size;
        if (F > 0) { TAKE(a->h1, N * F, float); TAKE(a->h3, N * F, float); TAKE(a->a, N * F, float); }
        if (moe) {
            TAKE(a->scores, N * E, float); TAKE(a->idx, N * K, int); TAKE(a->wts, N * K, float);
            TAKE(a->slot_tok, N * K, int); TAKE(a->slot_of, N * K, int); TAKE(a->expert_off, E + 1, int);
            TAKE(a->xe, N * K * C, float); TAKE(a->eh1, N * K * Fe, float); TAKE(a->eh3, N * K * Fe, float);
            TAKE(a->ea, N * K * Fe, float); TAKE(a->ey, N * K * C, float);
        }
        max_layer = FG_MAX(max_layer, off - layer_start);
    }
    TAKE(m->xfin, N * C, float); TAKE(m->xf, N * C, float); TAKE(m->xf_rstd, N, float); TAKE(m->logits, N * V, float);
    TAKE(m->inputs, N, int32_t); TAKE(m->targets, N, int32_t); TAKE(m->pos, N, int);
    int D = c->num_nextn_predict_layers;
    for (int k = 0; k < D; k++) { // sized for (B, T) rows; depth k+1 uses B*(T-k-1) of them
        fg_mtp_acts *a = base ? &m->mtp[k] : &(fg_mtp_acts){0};
        TAKE(a->tok, N, int32_t); TAKE(a->tgt, N, int32_t); TAKE(a->cat, 2 * N * C, float);
        TAKE(a->e_rstd, N, float); TAKE(a->h_rstd, N, float); TAKE(a->xfin, N * C, float);
        TAKE(a->xf, N * C, float); TAKE(a->xf_rstd, N, float); TAKE(a->logits, N * V, float);
    }
    if (D) TAKE(m->mtp_pos, N, int);
    // Backward scratch: gradients of one layer's activations (at most as many floats as the
    // layer saved, twice for safety) plus a few (N, C) residual-sized buffers (MTP: 8 more).
    m->scratch_floats = 2 * max_layer / sizeof(float) + (D ? 16 : 8) * N * (size_t)C + (size_t)K * N + 64;
    float *scratch = NULL;
    TAKE(scratch, m->scratch_floats, float);
    if (base) m->scratch = scratch;
#undef TAKE
    return off;
}

size_t fg_model_acts_bytes(fg_model *m, int B, int T) { return carve(m, NULL, B, T); }

int fg_model_ensure_acts(fg_model *m, int B, int T) {
    if (m->B == B && m->T == T && m->acts) return 0;
    if (B < 1 || T < 1) return fg_set_error("batch and sequence length must be >= 1 (got %d x %d)", B, T);
    if (T > m->cfg.max_position_embeddings)
        return fg_set_error("sequence length %d exceeds max_position_embeddings %d", T, m->cfg.max_position_embeddings);
    size_t bytes = carve(m, NULL, B, T);
    double mem = fg_phys_mem_bytes();
    if (mem > 0 && bytes > 0.9 * mem)
        return fg_set_error("activations for batch %d x %d need %.1f GiB but this machine has %.1f GiB "
                            "(hint: lower --batch or --seq)", B, T, bytes / 1073741824.0, mem / 1073741824.0);
    free_acts(m);
    m->acts = calloc(fg_config_n_blocks(&m->cfg), sizeof(fg_layer_acts));
    m->mtp = calloc(FG_MAX(1, m->cfg.num_nextn_predict_layers), sizeof(fg_mtp_acts));
    m->acts_mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!m->acts || !m->mtp || !m->acts_mem) {
        free_acts(m);
        return fg_set_error("out of memory: activations for batch %d x %d need %.1f MiB", B, T, bytes / 1048576.0);
    }
    carve(m, m->acts_mem, B, T);
    m->B = B; m->T = T;
    return 0;
}

// ---- forward ---------------------------------------------------------------------------------

// Adds src (N, C) into dst.
static void add_into(float *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

// How the training forward runs its products: the model's backend, no packed weights (they
// change every step), the mixed-precision switch for the model's matmuls.
static fg_exec train_exec(const fg_model *m) { return (fg_exec){m->be, NULL, m->prec, 0}; }

static void mla_forward(fg_model *m, int l) {
    const fg_config *c = &m->cfg;
    fg_layer_acts *a = &m->acts[l];
    const fg_wlayer *w = &m->view.layers[l];
    fg_exec x = train_exec(m);
    int B = m->B, T = m->T, N = B * T, C = c->hidden_size, H = c->num_attention_heads;
    int Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Dq = Dn + Dr;
    int Rkv = c->kv_lora_rank;
    float *kva = m->scratch; // (N, Rkv+Dr), free during forward
    fg_mla_proj o = {a->qa, a->qan, a->qa_rstd, a->q, kva, a->ckv_raw, a->ckv, a->kv_rstd};
    fg_mla_project(&x, &o, a->xn1, w, c, &m->rope, m->pos, N);
    fg_exec_matmul(&x, a->kvb, a->ckv, w->wkv_b, NULL, N, Rkv, H * (Dn + Dv));
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        fg_mla_expand_row(a->k + (size_t)n * H * Dq, a->v + (size_t)n * H * Dv, a->kvb + (size_t)n * H * (Dn + Dv),
                          kva + (size_t)n * (Rkv + Dr) + Rkv, H, Dn, Dr, Dv);
    m->be->attention(a->y, a->lse, a->q, a->k, a->v, B, T, H, H, Dq, Dv, H * Dq, H * Dq, H * Dv, m->softmax_scale);
    fg_exec_matmul(&x, a->x2, a->y, w->wo, NULL, N, H * Dv, C);
    add_into(a->x2, a->x, (size_t)N * C);
}

static void gqa_forward(fg_model *m, int l) {
    const fg_config *c = &m->cfg;
    fg_layer_acts *a = &m->acts[l];
    const fg_wlayer *w = &m->view.layers[l];
    fg_exec x = train_exec(m);
    int B = m->B, T = m->T, N = B * T, C = c->hidden_size, H = c->num_attention_heads;
    int Hkv = c->num_key_value_heads, Dh = c->head_dim;
    fg_gqa_project(&x, a->q, a->k, a->v, a->xn1, w, c, &m->rope, m->pos, N);
    m->be->attention(a->y, a->lse, a->q, a->k, a->v, B, T, H, Hkv, Dh, Dh, H * Dh, Hkv * Dh, Hkv * Dh, m->softmax_scale);
    fg_exec_matmul(&x, a->x2, a->y, w->wo, NULL, N, H * Dh, C);
    add_into(a->x2, a->x, (size_t)N * C);
}

static void swiglu_ffn_backward(const fg_model *m, float *dxn, float *dw1, float *dw2, float *dw3, float *tmp3F,
                                const float *dout, const float *xn, const float *h1, const float *h3,
                                const float *act, const float *w1, const float *w2, const float *w3,
                                int N, int C, int F) {
    const fg_backend *be = m->be;
    float *dact = tmp3F, *dh1 = tmp3F + (size_t)N * F, *dh3 = tmp3F + 2 * (size_t)N * F;
    memset(tmp3F, 0, sizeof(float) * 3 * (size_t)N * F);
    be->matmul_backward(dact, dw2, NULL, dout, act, w2, N, F, C, m->prec);
    be->swiglu_backward(dh1, dh3, dact, h1, h3, N, F);
    be->matmul_backward(dxn, dw1, NULL, dh1, xn, w1, N, C, F, m->prec);
    be->matmul_backward(dxn, dw3, NULL, dh3, xn, w3, N, C, F, m->prec);
}

// Expert parallelism (dist/ep.h): the routed experts of these rows run on the ranks holding them;
// this rank runs its held experts over every row the group sends it. Saved for backward in
// m->ep->layers[l]. A failed exchange marks m->ep_failed (the forward then fails).
static void ep_moe_forward(fg_model *m, int l, const fg_exec *x, const fg_moe_bufs *b, float *out) {
    const fg_config *c = &m->cfg;
    fg_layer_acts *a = &m->acts[l];
    fg_ep *ep = m->ep;
    int N = m->B * m->T, C = c->hidden_size, Fe = c->moe_intermediate_size, E = c->n_routed_experts;
    const fg_wlayer *w = &m->view.layers[l];
    fg_moe_dispatch(x, b, m->expert_load + (size_t)l * E, a->xn2, w, c, N);
    fg_ep_layer *L = &ep->layers[l];
    int K = c->num_experts_per_tok, El = E / ep->size;
    for (int n = 0; n < N; n++) { // how many ranks this token's experts are on (device-limited routing bounds it)
        int seen = 0;
        for (int k = 0; k < K; k++) {
            int r = a->idx[n * K + k] / El, dup = 0;
            for (int j = 0; j < k; j++) dup |= a->idx[n * K + j] / El == r;
            seen += !dup;
        }
        ep->max_ranks = FG_MAX(ep->max_ranks, seen);
    }
    if (m->ep_failed || fg_ep_route(ep, l, a->expert_off) || fg_ep_send(ep, l, a->xe, C, L->xr)) { m->ep_failed = 1; return; }
    for (int j = 0; j < ep->e_hi - ep->e_lo; j++) {
        int o = L->eoff[j], ne = L->eoff[j + 1] - o, e = ep->e_lo + j;
        if (ne)
            fg_swiglu_ffn(x, L->y + (size_t)o * C, L->h1 + (size_t)o * Fe, L->h3 + (size_t)o * Fe, L->a + (size_t)o * Fe,
                          L->xr + (size_t)o * C, w->ew1[e], w->ew2[e], w->ew3[e], ne, C, Fe);
    }
    if (fg_ep_recv(ep, l, L->y, C, a->ey)) { m->ep_failed = 1; return; }
    fg_moe_combine(x, out, b, a->xn2, w, c, N);
}

static void moe_forward(fg_model *m, int l, float *out, double *bal_loss) {
    const fg_config *c = &m->cfg;
    fg_layer_acts *a = &m->acts[l];
    fg_exec x = train_exec(m);
    int B = m->B, T = m->T, E = c->n_routed_experts, K = c->num_experts_per_tok;
    fg_moe_bufs bufs = {a->scores, a->wts, a->idx, a->slot_tok, a->slot_of, a->expert_off, (int *)m->scratch,
                        a->xe, a->eh1, a->eh3, a->ea, a->ey, a->h1, a->h3, a->a}; // scratch is free during forward
    if (m->ep) ep_moe_forward(m, l, &x, &bufs, out);
    else fg_moe_forward(&x, out, &bufs, m->expert_load + (size_t)l * E, a->xn2, &m->view.layers[l], c, B * T);
    // Sequence-wise balance loss: alpha * mean_b sum_i f_i P_i (docs/model.md).
    if (m->fwd_alpha > 0) {
        double total = 0;
        for (int b = 0; b < B; b++) {
            for (int e = 0; e < E; e++) {
                int cnt = 0;
                double P = 0;
                for (int t = 0; t < T; t++) {
                    int n = b * T + t;
                    const float *s = a->scores + (size_t)n * E;
                    double S = 0;
                    for (int j = 0; j < E; j++) S += s[j];
                    P += s[e] / S;
                    for (int k = 0; k < K; k++) cnt += a->idx[n * K + k] == e;
                }
                double f = (double)E / ((double)K * T) * cnt;
                total += f * (P / T);
            }
        }
        *bal_loss += m->fwd_alpha * total / B;
    }
}

// One block (attention + FFN, both pre-normed, residuals added) of the current (m->B, m->T)
// rows: acts[l].x in, out (N, C) out.
static void block_forward(fg_model *m, int l, float *out, double *bal) {
    const fg_config *c = &m->cfg;
    fg_layer_acts *a = &m->acts[l];
    const fg_wlayer *vw = &m->view.layers[l];
    fg_exec x = train_exec(m);
    const fg_backend *be = m->be;
    int N = m->B * m->T, C = c->hidden_size;
    be->rmsnorm(a->xn1, a->rstd1, a->x, vw->attn_norm, N, C, c->rms_norm_eps);
    if (c->attn_type == FG_ATTN_MLA) mla_forward(m, l); else gqa_forward(m, l);
    be->rmsnorm(a->xn2, a->rstd2, a->x2, vw->ffn_norm, N, C, c->rms_norm_eps);
    if (fg_config_is_moe_layer(c, l)) moe_forward(m, l, out, bal);
    else fg_swiglu_ffn(&x, out, a->h1, a->h3, a->a, a->xn2, vw->w1, vw->w2, vw->w3, N, C, c->intermediate_size);
    add_into(out, a->x2, (size_t)N * C);
}

// MTP depth k runs its block over (B, T-k) rows: m->T and the row positions are switched for it
// (every layer function reads them from m) and switched back after.
static int mtp_enter(fg_model *m, int k, int *saved_T, int **saved_pos) {
    int Tk = m->T - k;
    *saved_T = m->T;
    *saved_pos = m->pos;
    for (int n = 0; n < m->B * Tk; n++) m->mtp_pos[n] = n % Tk;
    m->T = Tk;
    m->pos = m->mtp_pos;
    return m->B * Tk;
}
static void mtp_leave(fg_model *m, int T, int *pos) { m->T = T; m->pos = pos; }

// The D MTP depths after the main model's forward (docs/model.md "Multi-token prediction"):
// h^0 = the main model's normed final state m->xf; depth k: x = eh_proj [enorm(emb(t_{i+k})) |
// hnorm(h^{k-1}_i)], one block, h^k = shared_head.norm(block out), logits = the shared head's.
// Returns the depths run (those with T - k >= 1).
static int mtp_forward(fg_model *m, const int32_t *targets, double *bal, fg_step *st) {
    const fg_config *c = &m->cfg;
    const fg_backend *be = m->be;
    fg_exec x = train_exec(m);
    int B = m->B, T = m->T, C = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers, run = 0;
    for (int k = 1; k <= c->num_nextn_predict_layers && T - k >= 1; k++, run++) {
        fg_mtp_acts *a = &m->mtp[k - 1];
        const fg_wlayer *w = &m->view.layers[L + k - 1];
        int Tk = T - k, Tp = T - k + 1, Nk = B * Tk; // Tp: the previous depth's rows per sequence
        const float *prev = k == 1 ? m->xf : m->mtp[k - 2].xf;
        float *e = m->scratch, *en = e + (size_t)Nk * C, *hp = en + (size_t)Nk * C, *hn = hp + (size_t)Nk * C;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Tk; t++) {
                int n = b * Tk + t, src = b * T + t + k;
                a->tok[n] = m->inputs[src];
                a->tgt[n] = targets[src];
                memcpy(e + (size_t)n * C, m->w.embed + (size_t)a->tok[n] * C, sizeof(float) * C);
                memcpy(hp + (size_t)n * C, prev + ((size_t)b * Tp + t) * C, sizeof(float) * C);
            }
        be->rmsnorm(en, a->e_rstd, e, w->enorm, Nk, C, c->rms_norm_eps);
        be->rmsnorm(hn, a->h_rstd, hp, w->hnorm, Nk, C, c->rms_norm_eps);
        for (int n = 0; n < Nk; n++) {
            memcpy(a->cat + (size_t)n * 2 * C, en + (size_t)n * C, sizeof(float) * C);
            memcpy(a->cat + (size_t)n * 2 * C + C, hn + (size_t)n * C, sizeof(float) * C);
        }
        int T0, *pos0;
        mtp_enter(m, k, &T0, &pos0);
        fg_exec_matmul(&x, m->acts[L + k - 1].x, a->cat, w->eh_proj, NULL, Nk, 2 * C, C);
        block_forward(m, L + k - 1, a->xfin, bal);
        mtp_leave(m, T0, pos0);
        be->rmsnorm(a->xf, a->xf_rstd, a->xfin, w->head_norm, Nk, C, c->rms_norm_eps);
        be->matmul(NULL, a->logits, a->xf, m->view.lm_head, NULL, Nk, C, V, FG_F32);
        double ce = be->xent(a->logits, a->logits, a->tgt, Nk, V, &a->n_counted);
        if (st) st->mtp_ce[k - 1] = a->n_counted ? ce : 0;
    }
    return run;
}

int fg_model_forward(fg_model *m, const int32_t *inputs, const int32_t *targets, int B, int T, fg_step *st) {
    const fg_config *c = &m->cfg;
    if (fg_model_ensure_acts(m, B, T)) return -1;
    int N = B * T, C = c->hidden_size, V = c->vocab_size;
    for (int n = 0; n < N; n++)
        if (inputs[n] < 0 || inputs[n] >= V)
            return fg_set_error("token id %d at position %d is outside the vocabulary [0, %d)", inputs[n], n, V);
    memcpy(m->inputs, inputs, sizeof(int32_t) * N);
    if (targets) memcpy(m->targets, targets, sizeof(int32_t) * N);
    for (int n = 0; n < N; n++) {
        memcpy(m->acts[0].x + (size_t)n * C, m->w.embed + (size_t)inputs[n] * C, sizeof(float) * C);
        m->pos[n] = n % T;
    }
    double bal = 0;
    m->fwd_alpha = st ? st->balance_alpha : 0;
    m->mtp_live = 0;
    m->ep_failed = 0;
    if (st) memset(st->mtp_ce, 0, sizeof st->mtp_ce);
    for (int l = 0; l < c->num_hidden_layers; l++)
        block_forward(m, l, l + 1 < c->num_hidden_layers ? m->acts[l + 1].x : m->xfin, &bal);
    m->be->rmsnorm(m->xf, m->xf_rstd, m->xfin, m->view.final_norm, N, C, c->rms_norm_eps);
    m->be->matmul(NULL, m->logits, m->xf, m->view.lm_head, NULL, N, C, V, FG_F32); // the head stays fp32
    if (m->ep_failed) return -1; // the exchange's error is set
    m->fwd_live = 1;
    if (st) { st->bal_loss = bal; st->ce_loss = 0; st->loss = bal; }
    if (!targets) { m->n_counted = 0; return 0; }
    for (int n = 0; n < N; n++)
        if (targets[n] >= V) return fg_set_error("target id %d at position %d is outside the vocabulary", targets[n], n);
    double ce = m->be->xent(m->logits, m->logits, targets, N, V, &m->n_counted);
    double mtp = 0;
    if (st && st->mtp_lambda > 0 && c->num_nextn_predict_layers > 0) { // after the main CE: scratch is free
        m->mtp_lambda = st->mtp_lambda;
        m->mtp_live = mtp_forward(m, targets, &bal, st);
        for (int k = 0; k < m->mtp_live; k++) mtp += st->mtp_ce[k];
        mtp *= st->mtp_lambda / c->num_nextn_predict_layers;
    }
    if (st) { st->bal_loss = bal; st->ce_loss = ce; st->loss = ce + bal + mtp; }
    return m->ep_failed ? -1 : 0;
}

// ---- backward --------------------------------------------------------------------------------

// Bump allocator over m->scratch; every take is zeroed. Reset per layer.
typedef struct { float *base; size_t used, cap; } bump;
static float *take(bump *b, size_t n) {
    n = (n + 15) & ~(size_t)15;
    assert(b->used + n <= b->cap && "backward scratch too small (see carve)");
    float *p = b->base + b->used;
    b->used += n;
    memset(p, 0, sizeof(float) * n);
    return p;
}

static void mla_backward(fg_model *m, int l, float *dres, bump *sc) {
    const fg_backend *be = m->be;
    const fg_config *c = &m->cfg;
    fg_layer_acts *a = &m->acts[l];
    const fg_layer_w *w = &m->w.layers[l];
    fg_layer_w *g = &m->g.layers[l];
    int B = m->B, T = m->T, N = B * T, C = c->hidden_size, H = c->num_attention_heads;
    int Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim, Dv = c->v_head_dim, Dq = Dn + Dr;
    int Rq = c->q_lora_rank, Rkv = c->kv_lora_rank;
    float *dy = take(sc, (size_t)N * H * Dv);
    be->matmul_backward(dy, g->wo, NULL, dres, a->y, w->wo, N, H * Dv, C, m->prec);
    float *dq = take(sc, (size_t)N * H * Dq), *dk = take(sc, (size_t)N * H * Dq), *dv = take(sc, (size_t)N * H * Dv);
    be->attention_backward(dq, dk, dv, dy, a->q, a->k, a->v, a->lse, B, T, H, H, Dq, Dv, H * Dq, H * Dq, H * Dv, m->softmax_scale);
    float *dkvb = take(sc, (size_t)N * H * (Dn + Dv)), *dkva = take(sc, (size_t)N * (Rkv + Dr));
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *dkpe = dkva + (size_t)n * (Rkv + Dr) + Rkv;
        for (int h = 0; h < H; h++) {
            const float *dkh = dk + ((size_t)n * H + h) * Dq;
            float *d = dkvb + ((size_t)n * H + h) * (Dn + Dv);
            memcpy(d, dkh, sizeof(float) * Dn);
            memcpy(d + Dn, dv + ((size_t)n * H + h) * Dv, sizeof(float) * Dv);
            for (int i = 0; i < Dr; i++) dkpe[i] += dkh[Dn + i]; // k_pe is shared by all heads
        }
    }
    be->rope(dq + Dn, N, H, (long)H * Dq, Dq, m->pos, &m->rope, 1);
    be->rope(dkva + Rkv, N, 1, Rkv + Dr, 0, m->pos, &m->rope, 1);
    float *dckv = take(sc, (size_t)N * Rkv), *dckv_raw = take(sc, (size_t)N * Rkv);
    be->matmul_backward(dckv, g->wkv_b, NULL, dkvb, a->ckv, w->wkv_b, N, Rkv, H * (Dn + Dv), m->prec);
    be->rmsnorm_backward(dckv_raw, g->kv_norm, dckv, a->ckv_raw, w->kv_norm, a->kv_rstd, N, Rkv);
    for (int n = 0; n < N; n++) memcpy(dkva + (size_t)n * (Rkv + Dr), dckv_raw + (size_t)n * Rkv, sizeof(float) * Rkv);
    float *dxn1 = take(sc, (size_t)N * C);
    be->matmul_backward(dxn1, g->wkv_a, NULL, dkva, a->xn1, w->wkv_a, N, C, Rkv + Dr, m->prec);
    if (Rq > 0) {
        float *dqan = take(sc, (size_t)N * Rq), *dqa = take(sc, (size_t)N * Rq);
        be->matmul_backward(dqan, g->wq_b, NULL, dq, a->qan, w->wq_b, N, Rq, H * Dq, m->prec);
        be->rmsnorm_backward(dqa, g->q_norm, dqan, a->qa, w->q_norm, a->qa_rstd, N, Rq);
        be->matmul_backward(dxn1, g->wq_a, NULL, dqa, a->xn1, w->wq_a, N, C, Rq, m->prec);
    } else {
        be->matmul_backward(dxn1, g->wq, NULL, dq, a->xn1, w->wq, N, C, H * Dq, m->prec);
    }
    be->rmsnorm_backward(dres, g->attn_norm, dxn1, a->x, w->attn_norm, a->rstd1, N, C);
}

static void gqa_backward(fg_model *m, int l, float *dres, bump *sc) {
    const fg_backend *be = m->be;
    const fg_config *c = &m->cfg;
    fg_layer_acts *a = &m->acts[l];
    const fg_layer_w *w = &m->w.layers[l];
    fg_layer_w *g = &m->g.layers[l];
    int B = m->B, T = m->T, N = B * T, C = c->hidden_size, H = c->num_attention_heads;
    int Hkv = c->num_key_value_heads, Dh = c->head_dim;
    float *dy = take(sc, (size_t)N * H * Dh);
    be->matmul_backward(dy, g->wo, NULL, dres, a->y, w->wo, N, H * Dh, C, m->prec);
    float *dq = take(sc, (size_t)N * H * Dh), *dk = take(sc, (size_t)N * Hkv * Dh), *dv = take(sc, (size_t)N * Hkv * Dh);
    be->attention_backward(dq, dk, dv, dy, a->q, a->k, a->v, a->lse, B, T, H, Hkv, Dh, Dh, H * Dh, Hkv * Dh, Hkv * Dh, m->softmax_scale);
    be->rope(dq, N, H, (long)H * Dh, Dh, m->pos, &m->rope, 1);
    be->rope(dk, N, Hkv, (long)Hkv * Dh, Dh, m->pos, &m->rope, 1);
    float *dxn1 = take(sc, (size_t)N * C);
    be->matmul_backward(dxn1, g->wq, g->bq, dq, a->xn1, w->wq, N, C, H * Dh, m->prec);
    be->matmul_backward(dxn1, g->wk, g->bk, dk, a->xn1, w->wk, N, C, Hkv * Dh, m->prec);
    be->matmul_backward(dxn1, g->wv, g->bv, dv, a->xn1, w->wv, N, C, Hkv * Dh, m->prec);
    be->rmsnorm_backward(dres, g->attn_norm, dxn1, a->x, w->attn_norm, a->rstd1, N, C);
}

// The backward of routed experts e0 .. e0+n-1 of block l over rows grouped by expert (expert j's
// rows are [off[j], off[j+1]) of dy, x and the saved h1, h3, act): dx (rows, C) accumulates, the
// experts' weight gradients accumulate. tmp: 3 x (the most rows of one expert) x Fe floats.
static void experts_backward(fg_model *m, int l, int e0, int n, const int *off, float *dx, float *tmp, const float *dy,
                             const float *x, const float *h1, const float *h3, const float *act) {
    const fg_config *c = &m->cfg;
    const fg_layer_w *w = &m->w.layers[l];
    fg_layer_w *g = &m->g.layers[l];
    int C = c->hidden_size, Fe = c->moe_intermediate_size;
    for (int j = 0; j < n; j++) {
        int o = off[j], ne = off[j + 1] - o;
        size_t e = (size_t)(e0 + j);
        if (!ne) continue;
        swiglu_ffn_backward(m, dx + (size_t)o * C, g->ew1 + e * Fe * C, g->ew2 + e * C * Fe, g->ew3 + e * Fe * C, tmp,
                            dy + (size_t)o * C, x + (size_t)o * C, h1 + (size_t)o * Fe, h3 + (size_t)o * Fe,
                            act + (size_t)o * Fe, w->ew1 + e * Fe * C, w->ew2 + e * C * Fe, w->ew3 + e * Fe * C, ne, C, Fe);
    }
}

static void moe_backward(fg_model *m, int l, const float *dout, float *dxn2, float grad_scale, bump *sc) {
    const fg_backend *be = m->be;
    const fg_config *c = &m->cfg;
    fg_layer_acts *a = &m->acts[l];
    const fg_layer_w *w = &m->w.layers[l];
    fg_layer_w *g = &m->g.layers[l];
    int B = m->B, T = m->T, N = B * T, C = c->hidden_size, E = c->n_routed_experts;
    int K = c->num_experts_per_tok, Fe = c->moe_intermediate_size, Fs = c->n_shared_experts * Fe;
    if (Fs > 0)
        swiglu_ffn_backward(m, dxn2, g->sw1, g->sw2, g->sw3, take(sc, 3 * (size_t)N * Fs), dout, a->xn2, a->h1,
                            a->h3, a->a, w->sw1, w->sw2, w->sw3, N, C, Fs);
    // Through the weighted sum: dey = w * dout, dwts = dout . ey.
    float *dey = take(sc, (size_t)N * K * C), *dwts = take(sc, (size_t)N * K);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            int s = a->slot_of[n * K + k];
            const float *d = dout + (size_t)n * C, *y = a->ey + (size_t)s * C;
            float *de = dey + (size_t)s * C, wt = a->wts[n * K + k], dot = 0;
            for (int i = 0; i < C; i++) { de[i] = wt * d[i]; dot += d[i] * y[i]; }
            dwts[n * K + k] = dot;
        }
    float *dxe = take(sc, (size_t)N * K * C), *tmp = take(sc, 3 * (size_t)N * K * Fe);
    if (!m->ep) {
        experts_backward(m, l, 0, E, a->expert_off, dxe, tmp, dey, a->xe, a->eh1, a->eh3, a->ea);
    } else { // the held experts' backward over the rows the group sent (ep_moe_forward)
        fg_ep *ep = m->ep;
        fg_ep_layer *L = &ep->layers[l];
        if (m->ep_failed || fg_ep_send(ep, l, dey, C, L->dy)) { m->ep_failed = 1; return; }
        memset(L->dx, 0, sizeof(float) * (size_t)L->R * C);
        experts_backward(m, l, ep->e_lo, ep->e_hi - ep->e_lo, L->eoff, L->dx, L->tmp, L->dy, L->xr, L->h1, L->h3, L->a);
        if (fg_ep_recv(ep, l, L->dx, C, dxe)) { m->ep_failed = 1; return; }
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) add_into(dxn2 + (size_t)n * C, dxe + (size_t)a->slot_of[n * K + k] * C, C);
    // Gate: d(scores) from the gathered weights (and their normalisation), plus the balance loss.
    float *ds = take(sc, (size_t)N * E);
    float bal_coef = m->fwd_alpha * grad_scale / B;
    float *fcount = take(sc, (size_t)B * E);
    if (m->fwd_alpha > 0)
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) fcount[(n / T) * E + a->idx[n * K + k]] += 1.0f;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *s = a->scores + (size_t)n * E;
        const int *idx = a->idx + (size_t)n * K;
        float *d = ds + (size_t)n * E, rs = c->routed_scaling_factor;
        const float *dw = dwts + (size_t)n * K;
        if (c->norm_topk_prob) { // w_k = rs * s_k / S, S = sum_j s_j over the chosen
            float S = 0, dot = 0;
            for (int k = 0; k < K; k++) { S += s[idx[k]]; dot += dw[k] * s[idx[k]]; }
            for (int k = 0; k < K; k++) d[idx[k]] += rs * (dw[k] / S - dot / (S * S));
        } else {
            for (int k = 0; k < K; k++) d[idx[k]] += rs * dw[k];
        }
        if (m->fwd_alpha > 0) { // P_i = mean_t s_i / S_t;  dL/dP_i = coef * f_i
            const float *f = fcount + (size_t)(n / T) * E;
            float S = 0, dot = 0, fs = (float)E / ((float)K * T);
            for (int e = 0; e < E; e++) S += s[e];
            for (int e = 0; e < E; e++) dot += f[e] * fs * s[e];
            for (int e = 0; e < E; e++)
                d[e] += bal_coef / T * (f[e] * fs / S - dot / (S * S));
        }
        // through the activation, in place: d becomes d(logits)
        if (c->scoring_func == FG_SCORE_SOFTMAX) {
            float dot = 0;
            for (int e = 0; e < E; e++) dot += d[e] * s[e];
            for (int e = 0; e < E; e++) d[e] = s[e] * (d[e] - dot);
        } else {
            for (int e = 0; e < E; e++) d[e] *= s[e] * (1.0f - s[e]);
        }
    }
    be->matmul_backward(dxn2, g->gate, NULL, ds, a->xn2, w->gate, N, C, E, FG_F32);
}

static int backward_from_logits(fg_model *m, float grad_scale, bump *psc, float *dres, size_t mark);

int fg_model_backward(fg_model *m, float grad_scale) {
    const fg_backend *be = m->be;
    const fg_config *c = &m->cfg;
    if (!m->acts || !m->n_counted) return fg_set_error("backward needs a forward with targets first");
    if (ensure_grads(m)) return -1;
    int N = m->B * m->T, C = c->hidden_size, V = c->vocab_size;
    bump sc = {m->scratch, 0, m->scratch_floats};
    float *dres = take(&sc, (size_t)N * C);
    size_t mark = sc.used;
    float *dlogits = m->logits; // in place over the probabilities
    be->xent_backward(dlogits, m->logits, m->targets, N, V, grad_scale / m->n_counted);
    return backward_from_logits(m, grad_scale, &sc, dres, mark);
}

int fg_model_backward_dlogits(fg_model *m, const float *dlogits, float grad_scale) {
    const fg_config *c = &m->cfg;
    if (!m->acts || !m->fwd_live) return fg_set_error("backward needs a forward first");
    if (ensure_grads(m)) return -1;
    int N = m->B * m->T, C = c->hidden_size, V = c->vocab_size;
    bump sc = {m->scratch, 0, m->scratch_floats};
    float *dres = take(&sc, (size_t)N * C);
    size_t mark = sc.used;
    if (dlogits != m->logits) memcpy(m->logits, dlogits, sizeof(float) * (size_t)N * V);
    return backward_from_logits(m, grad_scale, &sc, dres, mark);
}

// The shared body: m->logits holds d(loss)/d(logits) (N, V); grad_scale scales the model's own
// extra terms (the balance loss).
// Block l's backward over the current (m->B, m->T) rows: dres (N, C) holds d(block output) and
// becomes d(block input). Scratch above mark is reused.
static void block_backward(fg_model *m, int l, float *dres, float grad_scale, bump *sc, size_t mark) {
    const fg_config *c = &m->cfg;
    fg_layer_acts *a = &m->acts[l];
    const fg_layer_w *w = &m->w.layers[l];
    fg_layer_w *g = &m->g.layers[l];
    int N = m->B * m->T, C = c->hidden_size;
    sc->used = mark;
    float *dxn2 = take(sc, (size_t)N * C);
    if (fg_config_is_moe_layer(c, l)) moe_backward(m, l, dres, dxn2, grad_scale, sc);
    else swiglu_ffn_backward(m, dxn2, g->w1, g->w2, g->w3, take(sc, 3 * (size_t)N * c->intermediate_size), dres,
                             a->xn2, a->h1, a->h3, a->a, w->w1, w->w2, w->w3, N, C, c->intermediate_size);
    m->be->rmsnorm_backward(dres, g->ffn_norm, dxn2, a->x2, w->ffn_norm, a->rstd2, N, C);
    sc->used = mark;
    if (c->attn_type == FG_ATTN_MLA) mla_backward(m, l, dres, sc); else gqa_backward(m, l, dres, sc);
}

// The MTP depths' backward, deepest first: each depth's CE (weight lambda/D) through the shared
// head, its final norm, its block, eh_proj and the two input norms; the embedding rows get their
// gradient and d(h^{k-1}) flows to the depth before, d(h^0) into dxf (N, C), the main model's
// d(normed final state).
static void mtp_backward(fg_model *m, float grad_scale, bump *sc, float *dxf) {
    const fg_backend *be = m->be;
    const fg_config *c = &m->cfg;
    int B = m->B, T = m->T, N = B * T, C = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers;
    float *dh = take(sc, (size_t)N * C), *dblk = take(sc, (size_t)N * C), *dcat = take(sc, 2 * (size_t)N * C);
    float *dpart = take(sc, (size_t)N * C), *din = take(sc, (size_t)N * C), *rows = take(sc, (size_t)N * C);
    size_t mark = sc->used;
    for (int k = m->mtp_live; k >= 1; k--) { // dh: d(h^k) from depth k+1 (zero for the deepest)
        fg_mtp_acts *a = &m->mtp[k - 1];
        const fg_layer_w *w = &m->w.layers[L + k - 1];
        fg_layer_w *g = &m->g.layers[L + k - 1];
        int Tk = T - k, Tp = T - k + 1, Nk = B * Tk;
        if (a->n_counted) {
            be->xent_backward(a->logits, a->logits, a->tgt, Nk, V,
                              grad_scale * m->mtp_lambda / c->num_nextn_predict_layers / a->n_counted);
            be->matmul_backward(dh, m->g.lm_head, NULL, a->logits, a->xf, m->w.lm_head, Nk, C, V, FG_F32);
        }
        memset(dblk, 0, sizeof(float) * (size_t)Nk * C);
        be->rmsnorm_backward(dblk, g->head_norm, dh, a->xfin, w->head_norm, a->xf_rstd, Nk, C);
        int T0, *pos0;
        mtp_enter(m, k, &T0, &pos0);
        block_backward(m, L + k - 1, dblk, grad_scale, sc, mark);
        memset(dcat, 0, sizeof(float) * 2 * (size_t)Nk * C);
        be->matmul_backward(dcat, g->eh_proj, NULL, dblk, a->cat, w->eh_proj, Nk, 2 * C, C, m->prec);
        mtp_leave(m, T0, pos0);
        // the embedding half: d(emb rows) into the embedding's gradient
        for (int n = 0; n < Nk; n++) {
            memcpy(dpart + (size_t)n * C, dcat + (size_t)n * 2 * C, sizeof(float) * C);
            memcpy(rows + (size_t)n * C, m->w.embed + (size_t)a->tok[n] * C, sizeof(float) * C);
        }
        memset(din, 0, sizeof(float) * (size_t)Nk * C);
        be->rmsnorm_backward(din, g->enorm, dpart, rows, w->enorm, a->e_rstd, Nk, C);
        for (int n = 0; n < Nk; n++) add_into(m->g.embed + (size_t)a->tok[n] * C, din + (size_t)n * C, C);
        // the hidden half: d(h^{k-1}) on the previous depth's (B, Tp) rows (t < Tk; the rest get 0)
        const float *prev = k == 1 ? m->xf : m->mtp[k - 2].xf;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Tk; t++) {
                memcpy(dpart + ((size_t)b * Tk + t) * C, dcat + ((size_t)b * Tk + t) * 2 * C + C, sizeof(float) * C);
                memcpy(rows + ((size_t)b * Tk + t) * C, prev + ((size_t)b * Tp + t) * C, sizeof(float) * C);
            }
        memset(din, 0, sizeof(float) * (size_t)Nk * C);
        be->rmsnorm_backward(din, g->hnorm, dpart, rows, w->hnorm, a->h_rstd, Nk, C);
        float *dprev = k == 1 ? dxf : dh; // dh is free again: it becomes d(h^{k-1})
        if (k > 1) memset(dh, 0, sizeof(float) * (size_t)B * Tp * C);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Tk; t++)
                add_into(dprev + ((size_t)b * Tp + t) * C, din + ((size_t)b * Tk + t) * C, C);
    }
    sc->used = mark;
}

// The shared body: m->logits holds d(loss)/d(logits) (N, V); grad_scale scales the model's own
// extra terms (the balance loss, the MTP losses).
static int backward_from_logits(fg_model *m, float grad_scale, bump *psc, float *dres, size_t mark) {
    const fg_backend *be = m->be;
    const fg_config *c = &m->cfg;
    int N = m->B * m->T, C = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers;
    bump sc = *psc;
    float *dlogits = m->logits;
    float *dxf = take(&sc, (size_t)N * C);
    if (m->mtp_live) mtp_backward(m, grad_scale, &sc, dxf);
    for (int l = L; m->block_done && m->mtp_live && l < fg_config_n_blocks(c); l++) m->block_done(m->block_ctx, l);
    be->matmul_backward(dxf, m->g.lm_head, NULL, dlogits, m->xf, m->w.lm_head, N, C, V, FG_F32);
    be->rmsnorm_backward(dres, m->g.final_norm, dxf, m->xfin, m->w.final_norm, m->xf_rstd, N, C);
    m->n_counted = 0; // probabilities are consumed
    m->fwd_live = 0;
    for (int l = L - 1; l >= 0; l--) {
        block_backward(m, l, dres, grad_scale, &sc, mark);
        if (m->block_done) m->block_done(m->block_ctx, l);
    }
    for (int n = 0; n < N; n++) add_into(m->g.embed + (size_t)m->inputs[n] * C, dres + (size_t)n * C, C);
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        if (t->layer >= L && !m->mtp_live) continue; // MTP blocks that did not run
        m->touched[i] |= t->expert < 0 || m->expert_load[(size_t)t->layer * c->n_routed_experts + t->expert] > 0;
    }
    m->mtp_live = 0;
    return m->ep_failed ? -1 : 0;
}

void fg_model_update_routing_bias(fg_model *m, const int *loads, float gamma) {
    const fg_config *c = &m->cfg;
    if (gamma == 0 || c->topk_method != FG_TOPK_NOAUX_TC) return;
    int E = c->n_routed_experts;
    for (int l = 0; l < fg_config_n_blocks(c); l++) {
        float *bias = m->w.layers[l].gate_bias;
        if (!bias) continue;
        const int *load = (loads ? loads : m->expert_load) + (size_t)l * E;
        double mean = 0;
        for (int e = 0; e < E; e++) mean += load[e];
        mean /= E;
        for (int e = 0; e < E; e++) bias[e] += load[e] > mean ? -gamma : load[e] < mean ? gamma : 0.0f;
    }
}
