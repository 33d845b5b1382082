// model.h: the model's three structs (config, weights, activations) and its two call lists
// (forward, backward). Internal header: tests and the trainer use it; the CLI uses frugal.h.
//
// Weights live in ONE float allocation described by a tensor table (Hugging Face names, shapes,
// offsets). Gradients use a second allocation with the same offsets, so every fg_weights pointer
// has a twin in the gradient struct. Routed experts are stored stacked per layer, (E, Fe, C),
// and the table lists each expert separately so names map 1:1 to DeepSeek checkpoints.
#ifndef FG_MODEL_H
#define FG_MODEL_H

#include "frugal.h"
#include "model/layers.h"
#include "ops/backend.h"
#include "ops/ops.h"
#include "util.h"

typedef struct {
    float *attn_norm;                  // (C)
    // MLA
    float *wq;                         // (H*(Dn+Dr), C)  when Rq == 0
    float *wq_a, *q_norm, *wq_b;       // (Rq, C), (Rq), (H*(Dn+Dr), Rq)
    float *wkv_a;                      // (Rkv+Dr, C)
    float *kv_norm;                    // (Rkv)
    float *wkv_b;                      // (H*(Dn+Dv), Rkv)
    // GQA (wq is shared with MLA's no-compression query: (H*Dh, C))
    float *bq, *wk, *bk, *wv, *bv;     // (H*Dh), (Hkv*Dh, C), (Hkv*Dh), (Hkv*Dh, C), (Hkv*Dh)
    float *wo;                         // (C, H*Dv) or (C, H*Dh)
    float *ffn_norm;                   // (C)
    float *w1, *w2, *w3;               // dense: (F, C), (C, F), (F, C)
    float *gate;                       // (E, C)
    float *gate_bias;                  // (E) selection-only bias (noaux_tc); a buffer, not trained
    float *ew1, *ew2, *ew3;            // (E, Fe, C), (E, C, Fe), (E, Fe, C)
    float *sw1, *sw2, *sw3;            // shared: (Fs, C), (C, Fs), (Fs, C)
    float *enorm, *hnorm, *eh_proj;    // MTP blocks: (C), (C), (C, 2C)
    float *head_norm;                  // MTP blocks: shared_head.norm (C)
} fg_layer_w;

typedef struct {
    float *embed;                      // (V, C)
    float *final_norm;                 // (C)
    float *lm_head;                    // (V, C); aliases embed when tied
    fg_layer_w *layers;                // (L + D): main blocks, then MTP blocks
} fg_weights;

enum { FG_TENSOR_NO_DECAY = 1, FG_TENSOR_BUFFER = 2 }; // BUFFER: state, never trained (routing bias)

typedef struct {
    char name[96];                     // Hugging Face name
    int ndim;
    int shape[2];
    size_t offset, numel;              // in floats, into the weight (and gradient) allocation
    int flags;
    int layer, expert;                 // expert >= 0 for a routed expert's matrix, else -1
} fg_tensor;

// Saved activations of one layer for a (B, T) batch; N = B*T.
typedef struct {
    float *x, *xn1, *rstd1;            // (N, C), (N, C), (N): layer input and attention norm
    float *qa, *qan, *qa_rstd;         // MLA q compression: (N, Rq), (N, Rq), (N)
    float *q;                          // (N, H*(Dn+Dr)) MLA or (N, H*Dh) GQA, rope applied
    float *ckv_raw, *ckv, *kv_rstd;    // (N, Rkv) x2, (N)
    float *kvb;                        // (N, H*(Dn+Dv))
    float *k;                          // (N, H*(Dn+Dr)) MLA full keys, or (N, Hkv*Dh) GQA, roped
    float *v;                          // (N, H*Dv) or (N, Hkv*Dh)
    float *lse;                        // (B, H, T) attention row log-sum-exps (flash-style backward)
    float *y;                          // (N, H*Dv) attention output before wo
    float *x2, *xn2, *rstd2;           // after attention: (N, C), (N, C), (N)
    float *h1, *h3, *a;                // dense FFN (N, F), or shared expert (N, Fs)
    // MoE
    float *scores;                     // (N, E) softmax/sigmoid scores (no bias)
    int *idx;                          // (N, K) chosen experts
    float *wts;                        // (N, K) final routing weights
    int *slot_tok;                     // (N*K) token of each slot, slots grouped by expert
    int *slot_of;                      // (N*K) slot index of (token n, choice k) = slot_of[n*K+k]
    int *expert_off;                   // (E+1) slot range per expert
    float *xe, *eh1, *eh3, *ea, *ey;   // (N*K, C), (N*K, Fe) x3, (N*K, C)
} fg_layer_acts;

// MTP depth k (1..D) over the B sequences cut to Tk = T - k positions (N_k = B*Tk rows): row (b, t)
// reads the main input token at t+k and predicts the target at t+k (docs/model.md). Its block's
// activations are acts[L+k-1] (laid out for (B, Tk)).
typedef struct {
    int32_t *tok, *tgt;                // (N_k) token embedded, target (-1 ignored)
    float *cat;                        // (N_k, 2C) [enorm(emb(tok)) | hnorm(h^{k-1})]
    float *e_rstd, *h_rstd;            // (N_k)
    float *xfin, *xf, *xf_rstd;        // (N_k, C) block output, (N_k, C) h^k = shared_head.norm(xfin), (N_k)
    float *logits;                     // (N_k, V); probabilities after the forward
    int n_counted;
} fg_mtp_acts;

struct fg_model {
    fg_config cfg;
    int n_tensors;
    fg_tensor *tensors;
    size_t n_params;                   // floats in the weight allocation (trained + buffers)
    float *params, *grads;             // grads allocated on first backward
    // touched[i]: tensor i has received a gradient at least once (sticky; saved in checkpoints).
    // A routed expert that no token has chosen yet has no gradient and the optimizer skips it,
    // step count included, as PyTorch does with grad=None; once chosen, zero gradients count.
    // This is what the oracle's AdamW trajectories require.
    unsigned char *touched;
    fg_weights w, g;                   // float views of the weights and gradients (backward)
    fg_wview view;                     // the typed view of the weights the shared layers read (layers.h)
    const fg_backend *be;              // what forward and backward run on (fg_backend_cpu unless set)
    int prec;                          // FG_F32 / FG_BF16: the model's products (fg_model_set_precision)
    rope_table rope;
    float softmax_scale;
    // activations for the current batch shape
    int B, T;
    fg_layer_acts *acts;
    float *xfin, *xf, *xf_rstd;        // (N, C) last layer's output, (N, C) normed, (N)
    float *logits;                     // (N, V); probabilities after a forward with targets
    int32_t *inputs, *targets;         // (N) copies of the last batch
    int *pos;                          // (N) position of each row, n % T
    int n_counted;                     // targets counted by the last loss
    float *scratch;                    // backward scratch (see model.c)
    size_t scratch_floats;
    void *acts_mem;
    float fwd_alpha;                   // the balance loss weight the live forward ran with (its backward's)
    int fwd_live;                      // a forward's activations await a backward (dlogits entry)
    int *expert_load;                  // (L+D, E) selections per expert in the last forward (its routing)
    fg_mtp_acts *mtp;                  // (D) MTP activations
    int *mtp_pos;                      // (N) positions of the depth being run (t of (B, Tk) rows)
    int mtp_live;                      // depths the live forward ran (0: MTP off), for backward
    float mtp_lambda;                  // the weight it ran with
    struct fg_ep *ep;                  // expert parallelism (dist/ep.h): routed experts on other ranks; NULL: all here
    int ep_failed;                     // an expert-parallel exchange failed in the last forward or backward
    // Called by the backward once block l's gradients are final for this backward (dist/dp.h uses
    // it to start their reduction while the blocks below run); NULL: none.
    void (*block_done)(void *ctx, int block);
    void *block_ctx;
};

// Config parsing and validation without the check that fp32 weights fit this machine's memory
// (for costing models far bigger than it): fg_config_from_json / fg_config_validate less that.
int fg_config_from_json_ex(fg_config *c, const char *json, size_t len, const char *where,
                           void (*warn)(const char *msg), int check_memory);
int fg_config_validate_shape(const fg_config *c);

// Builds the tensor table for cfg. Returns malloc'd array (caller frees), count in *n, total floats
// in *total. Pure: no weights are allocated.
fg_tensor *fg_tensor_table(const fg_config *c, int *n, size_t *total);
// Points every field of w into base using the offsets of c's tensor table t (n entries).
void fg_weights_bind(fg_weights *w, const fg_config *c, const fg_tensor *t, int n, float *base);
// The RoPE table and attention softmax scale of config c (what fg_model_create sets in m->rope and
// m->softmax_scale); for readers that run a model without an fg_model. Free with rope_table_free.
int fg_model_rope_init(rope_table *rope, float *softmax_scale, const fg_config *c);
const fg_tensor *fg_model_find_tensor(const fg_model *m, const char *name);

// Bytes of saved activations (and backward scratch) for batch shape (B, T).
size_t fg_model_acts_bytes(fg_model *m, int B, int T);
// Allocates activations for batch shape (B, T) if it differs from the current one; refuses up
// front (with the numbers) when they cannot fit in this machine's memory.
int fg_model_ensure_acts(fg_model *m, int B, int T);
// Forward over inputs (B, T) with st's settings (NULL: no balance loss). With targets (B, T; < 0
// ignored) fills st->loss (CE + balance), ce_loss and bal_loss and keeps probabilities for
// backward; without targets keeps logits in m->logits (st->bal_loss still filled).
int fg_model_forward(fg_model *m, const int32_t *inputs, const int32_t *targets, int B, int T, fg_step *st);
// Backward of the last forward (which had targets): gradients ACCUMULATE into m->grads, scaled by
// grad_scale (1/accumulation steps). Allocates m->grads on first use.
int fg_model_backward(fg_model *m, float grad_scale);
// Backward from caller-provided dlogits (N, V) = d(loss)/d(logits) of the last forward (with or
// without targets), already scaled as the caller wants them accumulated (distillation). They are
// copied into m->logits (no copy when dlogits == m->logits). grad_scale scales only the model's
// own extra term, the balance loss. Gradients ACCUMULATE as in fg_model_backward.
int fg_model_backward_dlogits(fg_model *m, const float *dlogits, float grad_scale);
void fg_model_zero_grad(fg_model *m);
// Aux-loss-free balancing: bias_e -= gamma*sign(load_e - mean) from load (L, E): the selections
// per expert of the step's micro-batches (NULL: the last forward's, m->expert_load).
void fg_model_update_routing_bias(fg_model *m, const int *load, float gamma);
// Runs the model's forward and backward on backend be (tests run the reference backend).
void fg_model_set_backend(fg_model *m, const fg_backend *be);


#endif
