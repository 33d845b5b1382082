// layers.h: the model's layers written once, over N rows of tokens, for every caller: the
// training forward (model.c: B sequences of T tokens, activations saved for backward) and the
// batched inference context (infer/ctx.c: rows of many sequences at different positions, nothing
// saved). A row carries its own position (RoPE), so the same code serves a training batch
// (pos = n % T), a prefill chunk and a decode step of 64 sequences.
//
// Written once here: the MLA projections (q with or without compression, the latent c_kv, the
// roped k_pe), the GQA projections, the SwiGLU FFN and DeepSeekMoE's routing + dispatch + expert
// FFNs + combine. Attention itself is not here: its modes (training's flash-style causal attention,
// the cached forms of inference) differ in where keys and values live, see docs/architecture.md.
//
// Every product goes through the exec's backend (ops/backend.h), so a backend that fills the table
// runs the model without touching this file.
#ifndef FG_LAYERS_H
#define FG_LAYERS_H

#include "frugal.h"
#include "ops/backend.h"
#include "ops/ops.h"

// One layer's weights as typed references (fields absent in this architecture are zero). Shapes as
// in fg_layer_w (model.h). The training model binds one over its fp32 parameters; a weight store
// over converted or mapped rows.
typedef struct {
    const float *attn_norm, *q_norm, *kv_norm, *ffn_norm; // (C), (Rq), (Rkv), (C)
    const float *bq, *bk, *bv;                            // GQA biases or NULL
    const float *gate_bias;                               // (E) noaux_tc selection bias or NULL
    fg_wref wq, wq_a, wq_b, wkv_a, wkv_b, wk, wv, wo;
    fg_wref w1, w2, w3, gate, sw1, sw2, sw3;
    fg_wref *ew1, *ew2, *ew3;                             // (E) per routed expert, or NULL
    // MTP blocks only (layer L+k-1 is depth k): x = eh_proj [enorm(emb); hnorm(h)], and the
    // depth's own final norm before the shared head.
    const float *enorm, *hnorm, *head_norm;               // (C) each
    fg_wref eh_proj;                                      // (C, 2C)
} fg_wlayer;

// A whole model's view: what fg_wlayers_bind fills.
typedef struct {
    fg_wref embed, lm_head;     // lm_head == embed when tied
    const float *final_norm;
    fg_wlayer *layers;          // (L + D): the main blocks, then the MTP blocks
    fg_wref *experts;           // ((L + D) * 3 * E) pool behind the layers' ew1/ew2/ew3
} fg_wview;

// Points v at tensor i of c's table (fg_tensor_table order) for every i: matrices as
// {types[i], data[i], scales[i]} (scales NULL: none), vectors as vec[i] (fp32). v->layers
// (fg_config_n_blocks) and v->experts (n_blocks*3*max(E,1)) must be allocated. The one binder of
// the table's order (the trainer's gradients use it too).
void fg_wview_bind(fg_wview *v, const fg_config *c, int n, const int *types, const void *const *data,
                   const float *const *vec, const float *const *scales);

// How the layers run: the backend and its context (packed weights, or NULL), the precision of the
// model's products (FG_F32 / FG_BF16: training's mixed precision; the head and the
// router always run fp32), and from how many rows a MoE layer runs its routed experts side by side
// (one per thread, single-threaded products; 0: one after the other, each product threaded).
typedef struct {
    const fg_backend *be;
    void *bctx;
    int prec;
    int expert_par_rows;
} fg_exec;

static inline void fg_exec_matmul(const fg_exec *x, float *out, const float *inp, fg_wref w, const float *bias,
                                  int N, int IN, int OUT) {
    x->be->matmul(x->bctx, out, inp, w, bias, N, IN, OUT, x->prec);
}

// MLA's projections of N normed rows xn (N, C) at positions pos (N):
//   q (N, H*(Dn+Dr)) with q_pe roped; kva (N, Rkv+Dr) = [c_kv | k_pe] with c_kv NORMED in place
//   of the raw latent and k_pe roped; the raw latent copied to ckv_raw (N, Rkv) when given.
// qa/qan (N, Rq) are the q compression's scratch (saved by training); the rstd outputs (N) may be
// NULL (inference). ckv (N, Rkv), when given, receives a contiguous copy of the normed latent.
typedef struct {
    float *qa, *qan, *qa_rstd;
    float *q;
    float *kva;
    float *ckv_raw, *ckv, *kv_rstd;
} fg_mla_proj;
void fg_mla_project(const fg_exec *x, const fg_mla_proj *o, const float *xn, const fg_wlayer *w,
                    const fg_config *c, const rope_table *rope, const int *pos, int N);
// MLA's per-head keys and values of one row from kvb (H*(Dn+Dv)) = c_kv @ wkv_b^T and the roped
// k_pe (Dr): k (H, Dn+Dr) = [k_nope_h | k_pe], v (H, Dv).
void fg_mla_expand_row(float *k, float *v, const float *kvb, const float *kpe, int H, int Dn, int Dr, int Dv);

// GQA's projections (with biases when the model has them), q and k roped at pos:
// q (N, H*Dh), k (N, Hkv*Dh), v (N, Hkv*Dh).
void fg_gqa_project(const fg_exec *x, float *q, float *k, float *v, const float *xn, const fg_wlayer *w,
                    const fg_config *c, const rope_table *rope, const int *pos, int N);

// out (N, C) = w2(silu(w1 xn) * w3 xn); h1, h3, act (N, F) keep the intermediates (training saves
// them).
void fg_swiglu_ffn(const fg_exec *x, float *out, float *h1, float *h3, float *act, const float *xn,
                   fg_wref w1, fg_wref w2, fg_wref w3, int N, int C, int F);

// DeepSeekMoE over N rows: router scores, top-K (fg_moe_route), slots grouped by expert in row
// order (counting sort), each chosen expert's SwiGLU over its slots as one batch, the shared
// experts, and out (N, C) = shared(xn) + sum_k w_k expert_k(xn). Buffers (training keeps them
// for backward): scores (N, E), wts/idx (N, K), slot_tok/slot_of (N*K), expert_off (E+1), fill
// (E) scratch, xe/ey (N*K, C), eh1/eh3/ea (N*K, Fe), h1/h3/act (N, Fs). load (E), when given,
// receives how many slots each expert got.
typedef struct {
    float *scores, *wts;
    int *idx, *slot_tok, *slot_of, *expert_off, *fill;
    float *xe, *eh1, *eh3, *ea, *ey;
    float *h1, *h3, *act;
} fg_moe_bufs;
void fg_moe_forward(const fg_exec *x, float *out, const fg_moe_bufs *b, int *load, const float *xn,
                    const fg_wlayer *w, const fg_config *c, int N);
// fg_moe_forward's first and last parts, for a caller that runs the routed experts elsewhere
// (expert parallelism, dist/ep.c): dispatch = router, top-K, slots grouped by expert (expert_off,
// slot_tok, slot_of; load) and xe gathered; combine = the shared experts and out from ey.
void fg_moe_dispatch(const fg_exec *x, const fg_moe_bufs *b, int *load, const float *xn, const fg_wlayer *w,
                     const fg_config *c, int N);
void fg_moe_combine(const fg_exec *x, float *out, const fg_moe_bufs *b, const float *xn, const fg_wlayer *w,
                    const fg_config *c, int N);

#endif
