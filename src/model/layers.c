// layers.c: the model's layers, written once for training and inference (contracts in layers.h).
#include "model/layers.h"

#include <assert.h>
#include <string.h>

#include "model/route.h"
#include "ops/gemm.h"
#include "util.h"

void fg_wview_bind(fg_wview *v, const fg_config *c, int n, const int *types, const void *const *data,
                   const float *const *vec, const float *const *scales) {
    int i = 0, E = c->n_routed_experts;
#define REF() (i++, (fg_wref){types[i - 1], data[i - 1], scales ? scales[i - 1] : NULL})
#define VEC() (vec[i++])
    v->embed = REF();
    int L = c->num_hidden_layers;
    for (int l = 0; l < fg_config_n_blocks(c); l++) {
        if (l == L) { // the main model's tail comes before the MTP blocks (fg_tensor_table)
            v->final_norm = VEC();
            v->lm_head = c->tie_word_embeddings ? v->embed : REF();
        }
        fg_wlayer *w = &v->layers[l];
        memset(w, 0, sizeof *w);
        if (l >= L) { w->enorm = VEC(); w->hnorm = VEC(); w->eh_proj = REF(); }
        w->attn_norm = VEC();
        if (c->attn_type == FG_ATTN_MLA) {
            if (c->q_lora_rank > 0) { w->wq_a = REF(); w->q_norm = VEC(); w->wq_b = REF(); }
            else w->wq = REF();
            w->wkv_a = REF(); w->kv_norm = VEC(); w->wkv_b = REF(); w->wo = REF();
        } else {
            w->wq = REF(); if (c->attention_bias) w->bq = VEC();
            w->wk = REF(); if (c->attention_bias) w->bk = VEC();
            w->wv = REF(); if (c->attention_bias) w->bv = VEC();
            w->wo = REF();
        }
        w->ffn_norm = VEC();
        if (!fg_config_is_moe_layer(c, l)) {
            w->w1 = REF(); w->w2 = REF(); w->w3 = REF();
        } else {
            w->gate = REF();
            if (c->topk_method == FG_TOPK_NOAUX_TC) w->gate_bias = VEC();
            fg_wref *pool = v->experts + (size_t)l * 3 * E;
            w->ew1 = pool; w->ew2 = pool + E; w->ew3 = pool + 2 * E;
            for (int e = 0; e < E; e++) w->ew1[e] = REF();
            for (int e = 0; e < E; e++) w->ew2[e] = REF();
            for (int e = 0; e < E; e++) w->ew3[e] = REF();
            if (c->n_shared_experts > 0) { w->sw1 = REF(); w->sw2 = REF(); w->sw3 = REF(); }
        }
        if (l >= L) w->head_norm = VEC();
    }
    if (fg_config_n_blocks(c) == L) {
        v->final_norm = VEC();
        v->lm_head = c->tie_word_embeddings ? v->embed : REF();
    }
#undef REF
#undef VEC
    assert(i == n && "tensor table and binder disagree");
    (void)n;
}

void fg_mla_project(const fg_exec *x, const fg_mla_proj *o, const float *xn, const fg_wlayer *w,
                    const fg_config *c, const rope_table *rope, const int *pos, int N) {
    const fg_backend *be = x->be;
    int C = c->hidden_size, H = c->num_attention_heads, Dn = c->qk_nope_head_dim, Dr = c->qk_rope_head_dim;
    int Dq = Dn + Dr, Rq = c->q_lora_rank, Rkv = c->kv_lora_rank, kw = Rkv + Dr;
    float eps = c->rms_norm_eps;
    if (Rq > 0) { // q = wq_b(rmsnorm(wq_a xn))
        fg_exec_matmul(x, o->qa, xn, w->wq_a, NULL, N, C, Rq);
        be->rmsnorm(o->qan, o->qa_rstd, o->qa, w->q_norm, N, Rq, eps);
        fg_exec_matmul(x, o->q, o->qan, w->wq_b, NULL, N, Rq, H * Dq);
    } else {
        fg_exec_matmul(x, o->q, xn, w->wq, NULL, N, C, H * Dq);
    }
    fg_exec_matmul(x, o->kva, xn, w->wkv_a, NULL, N, C, kw); // [c_kv raw | k_pe]
    float *raw = o->ckv_raw ? o->ckv_raw : o->ckv; // inference normalises in place
#pragma omp parallel for schedule(static) if ((long)N * Rkv > 65536)
    for (int i = 0; i < N; i++) memcpy(raw + (size_t)i * Rkv, o->kva + (size_t)i * kw, sizeof(float) * Rkv);
    be->rmsnorm(o->ckv, o->kv_rstd, raw, w->kv_norm, N, Rkv, eps);
#pragma omp parallel for schedule(static) if ((long)N * Rkv > 65536)
    for (int i = 0; i < N; i++) memcpy(o->kva + (size_t)i * kw, o->ckv + (size_t)i * Rkv, sizeof(float) * Rkv);
    be->rope(o->kva + Rkv, N, 1, kw, 0, pos, rope, 0);      // k_pe, one per row (shared by the heads)
    be->rope(o->q + Dn, N, H, (long)H * Dq, Dq, pos, rope, 0); // q_pe of every head
}

void fg_mla_expand_row(float *k, float *v, const float *kvb, const float *kpe, int H, int Dn, int Dr, int Dv) {
    for (int h = 0; h < H; h++) {
        const float *src = kvb + (size_t)h * (Dn + Dv);
        memcpy(k + (size_t)h * (Dn + Dr), src, sizeof(float) * Dn);
        memcpy(k + (size_t)h * (Dn + Dr) + Dn, kpe, sizeof(float) * Dr); // k_pe is shared by all heads
        memcpy(v + (size_t)h * Dv, src + Dn, sizeof(float) * Dv);
    }
}

void fg_gqa_project(const fg_exec *x, float *q, float *k, float *v, const float *xn, const fg_wlayer *w,
                    const fg_config *c, const rope_table *rope, const int *pos, int N) {
    int C = c->hidden_size, H = c->num_attention_heads, Hkv = c->num_key_value_heads, Dh = c->head_dim;
    fg_exec_matmul(x, q, xn, w->wq, w->bq, N, C, H * Dh);
    fg_exec_matmul(x, k, xn, w->wk, w->bk, N, C, Hkv * Dh);
    fg_exec_matmul(x, v, xn, w->wv, w->bv, N, C, Hkv * Dh);
    x->be->rope(q, N, H, (long)H * Dh, Dh, pos, rope, 0);
    x->be->rope(k, N, Hkv, (long)Hkv * Dh, Dh, pos, rope, 0);
}

void fg_swiglu_ffn(const fg_exec *x, float *out, float *h1, float *h3, float *act, const float *xn,
                   fg_wref w1, fg_wref w2, fg_wref w3, int N, int C, int F) {
    fg_exec_matmul(x, h1, xn, w1, NULL, N, C, F);
    fg_exec_matmul(x, h3, xn, w3, NULL, N, C, F);
    x->be->swiglu(act, h1, h3, N, F);
    fg_exec_matmul(x, out, act, w2, NULL, N, F, C);
}

static void run_expert(const fg_exec *x, const fg_moe_bufs *b, const fg_wlayer *w, int e, int C, int Fe) {
    int o = b->expert_off[e], ne = b->expert_off[e + 1] - o;
    fg_swiglu_ffn(x, b->ey + (size_t)o * C, b->eh1 + (size_t)o * Fe, b->eh3 + (size_t)o * Fe, b->ea + (size_t)o * Fe,
                  b->xe + (size_t)o * C, w->ew1[e], w->ew2[e], w->ew3[e], ne, C, Fe);
}

void fg_moe_dispatch(const fg_exec *x, const fg_moe_bufs *b, int *load, const float *xn, const fg_wlayer *w,
                     const fg_config *c, int N) {
    const fg_backend *be = x->be;
    int C = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok;
    be->matmul(x->bctx, b->scores, xn, w->gate, NULL, N, C, E, FG_F32); // the router stays fp32
#pragma omp parallel for schedule(static) if (N >= 16)
    for (int n = 0; n < N; n++)
        fg_moe_route(b->idx + (size_t)n * K, b->wts + (size_t)n * K, b->scores + (size_t)n * E, w->gate_bias, c);
    // Slots (row, choice) grouped by expert, in row order (counting sort).
    int *fill = b->fill;
    memset(fill, 0, sizeof(int) * E);
    for (int j = 0; j < N * K; j++) fill[b->idx[j]]++;
    if (load) memcpy(load, fill, sizeof(int) * E);
    b->expert_off[0] = 0;
    for (int e = 0; e < E; e++) b->expert_off[e + 1] = b->expert_off[e] + fill[e];
    memcpy(fill, b->expert_off, sizeof(int) * E);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            int slot = fill[b->idx[n * K + k]]++;
            b->slot_tok[slot] = n;
            b->slot_of[n * K + k] = slot;
        }
    be->moe_gather(b->xe, xn, b->slot_tok, N * K, C);
}

void fg_moe_combine(const fg_exec *x, float *out, const fg_moe_bufs *b, const float *xn, const fg_wlayer *w,
                    const fg_config *c, int N) {
    int C = c->hidden_size, K = c->num_experts_per_tok, Fs = c->n_shared_experts * c->moe_intermediate_size;
    if (Fs > 0) fg_swiglu_ffn(x, out, b->h1, b->h3, b->act, xn, w->sw1, w->sw2, w->sw3, N, C, Fs);
    else memset(out, 0, sizeof(float) * (size_t)N * C);
    x->be->moe_combine(out, b->ey, b->wts, b->slot_of, N, K, C);
}

void fg_moe_forward(const fg_exec *x, float *out, const fg_moe_bufs *b, int *load, const float *xn,
                    const fg_wlayer *w, const fg_config *c, int N) {
    const fg_backend *be = x->be;
    int C = c->hidden_size, E = c->n_routed_experts, Fe = c->moe_intermediate_size;
    fg_moe_dispatch(x, b, load, xn, w, c, N);
    // The chosen experts, busiest first. With many rows (a prefill) they run side by side, one per
    // thread with single-threaded products: an expert sees about N*K/E rows, too few to split one
    // product over the threads without paying more in barriers than it gains. Otherwise (decode,
    // training) one after the other, each product on all threads.
    int nact = 0, *order = b->fill; // free again after the dispatch
    for (int e = 0; e < E; e++) {
        int ne = b->expert_off[e + 1] - b->expert_off[e];
        if (!ne) continue; // an expert no row picked is never read
        int at = nact++;
        for (; at > 0 && b->expert_off[order[at - 1] + 1] - b->expert_off[order[at - 1]] < ne; at--) order[at] = order[at - 1];
        order[at] = e;
    }
    int par = x->expert_par_rows > 0 && N >= x->expert_par_rows && nact > 1;
    if (par && be->prepare)
        for (int j = 0; j < nact; j++) {
            int e = order[j], ne = b->expert_off[e + 1] - b->expert_off[e];
            be->prepare(x->bctx, w->ew1[e], C, Fe, ne);
            be->prepare(x->bctx, w->ew3[e], C, Fe, ne);
            be->prepare(x->bctx, w->ew2[e], Fe, C, ne);
        }
    // (Not an `if` clause: products inside an inactive region would start nested thread teams.)
    if (par) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int j = 0; j < nact; j++) run_expert(x, b, w, order[j], C, Fe);
    } else {
        for (int j = 0; j < nact; j++) run_expert(x, b, w, order[j], C, Fe);
    }
    fg_moe_combine(x, out, b, xn, w, c, N);
}
