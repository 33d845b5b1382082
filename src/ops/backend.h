// backend.h: the table of operations the model's forward and backward run on.
//
// The model code (model/layers.c, model/model.c, infer/ctx.c) never calls a kernel directly for
// these operations: it calls them through a backend, so another implementation (CUDA) fills the
// same table without touching the model. Two CPU backends:
//   fg_backend_ref  the reference: plain scalar loops, written for reading, the executable spec;
//   fg_backend_cpu  the fast one: packed GEMM (AVX-512, AVX512-BF16, AMX), quantised rows,
//                   vectorised exp, OpenMP.
// tests/test_backend.c runs every entry of every backend against the reference on random shapes
// with tails, forward and gradient (in the spirit of llama.cpp's test-backend-ops).
//
// Conventions are ops.h's: outputs first; weights (OUT, IN) as torch.nn.Linear; every backward
// ACCUMULATES into the gradients it is given (NULL: not needed).
#ifndef FG_BACKEND_H
#define FG_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "frugal.h"
#include "ops/ops.h"

// A matrix of OUT rows of IN values stored as a weight type (FG_STORE_TYPES); row r at
// p + r * fg_qrow_bytes(type, IN). FG_F8_E4M3 (DeepSeek-V3's FP8): one byte per value and scale,
// one float per 128 x 128 block, row-major over the (ceil(OUT/128), ceil(IN/128)) blocks:
// value (r, c) = e4m3(p[r * IN + c]) * scale[(r / 128) * ceil(IN / 128) + c / 128].
typedef struct { int type; const void *p; const float *scale; } fg_wref;
#define FG_FP8_BLOCK 128

// AdamW's constants for one tensor update (bias corrections folded in by the caller).
typedef struct {
    float beta1, beta2, eps;
    float step;      // lr / (1 - beta1^t)
    float bc2_sqrt;  // sqrt(1 - beta2^t)
    float decay;     // 1 - lr * weight_decay (1 for no decay)
} fg_adamw_k;

// Positions the latent decode kernels score together; a cache block holds a whole number of them.
#define FG_ATTN_ROW_BLOCK 32

// A paged KV cache as the attention entries read it (the batched context's layout, infer/ctx.c):
// fixed blocks of `block` positions in one arena; position u of a sequence whose block table is
// tab has its key row at element tab[u / block] * blk_elems + key_off + (u % block) * kw and its
// value row at ... + val_off + (u % block) * vw (one layer's offsets). Elements f32, bf16 or Q8_0
// (blocks of 32 values, 34 bytes: element e of a Q8_0 arena is in block e / 32, rows are whole blocks).
// Latent (MLA) rows are [c_kv (Rkv) | roped k_pe (Dr)], kw = Rkv + Dr, no values; full rows are
// the Hkv heads' keys (kw = Hkv*Dk) and values (vw = Hkv*Dv).
typedef struct {
    const void *arena;
    int type;                       // FG_F32, FG_BF16 or FG_Q8_0
    int block, kw, vw;
    size_t blk_elems, key_off, val_off;
} fg_kv_pages;
// Bytes before element e of an arena of type t (e a multiple of 32 for Q8_0).
static inline size_t fg_kv_bytes(int t, size_t e) { return t == FG_Q8_0 ? e / 32 * 34 : e * (t == FG_BF16 ? 2 : 4); }

// What the attention entries may be asked for at most, fixed when a context is created: the
// caller carves attn_scratch(limits) bytes once and passes them to every call (a decode never
// allocates).
typedef struct {
    int max_rows, max_T, threads;   // rows per call, positions a row may see, workers (tid < threads)
    int latent;                     // 1: MLA latent cache (dims below), 0: full cache
    int H, Dn, Dr, Dv, Rkv;         // MLA dims (latent)
    int Dk, Dvf;                    // full cache: key and value widths per head
    int wkv_b_f32;                  // latent: wkv_b is stored fp32 (else heads are dequantised)
} fg_attn_limits;

// One attention call over a paged cache: n query rows; row i at position pos[i] of the sequence
// whose block table is tab[i] (rows of one sequence share the pointer) sees that sequence's
// positions [0, pos[i]], its own cache row included (written before the call).
typedef struct {
    int n;
    const int *pos;
    const int *const *tab;
    int H, Hkv, Dk, Dv;             // heads, cached heads (full), key and value width per head
    int Dn, Dr, Rkv;                // latent: MLA dims (Dk = Dn + Dr)
    float scale;
    fg_wref wkv_b;                  // latent: (H*(Dn+Dv), Rkv), [W_UK_h ; W_UV_h] per head
    int form;                       // latent prefill runs: FG_MLA_AUTO / _ABSORBED / _EXPANDED
    int prec;                       // FG_F32 / FG_BF16: products of the prefill forms (bf16 operands, fp32 sums)
    const fg_attn_limits *lim;
    void *scratch;                  // attn_scratch(lim) bytes
} fg_attn_call;

typedef struct fg_backend {
    const char *name;
    // out (N, OUT) = inp (N, IN) @ dequant(w)^T + bias (may be NULL). prec (FG_F32 /
    // FG_BF16) is the precision of products with f32 weights; bf16/Q8_0 rows multiply in
    // bf16 on the GEMM. ctx: the backend's per-store state (packed weights) or NULL.
    void (*matmul)(void *ctx, float *out, const float *inp, fg_wref w, const float *bias, int N, int IN, int OUT, int prec);
    // Optional (NULL: nothing to do): readies w for a product of `rows` rows that will run inside a
    // parallel region (the fast backend packs it now: products in parallel regions never pack).
    void (*prepare)(void *ctx, fg_wref w, int IN, int OUT, int rows);
    // dinp (N, IN) +=, dw (OUT, IN) +=, dbias (OUT) += for f32 weights w.
    void (*matmul_backward)(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                            int N, int IN, int OUT, int prec);
    // out (N, C) = w * inp / sqrt(mean(inp^2) + eps); rstd (N) may be NULL. Rows at stride C.
    void (*rmsnorm)(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
    void (*rmsnorm_backward)(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                             const float *rstd, int N, int C);
    // Rotates, for each row n < N, the `heads` vectors of r->D floats at x + n*row_stride +
    // h*head_stride, by position pos[n] (inverse: the transpose, for backward).
    void (*rope)(float *x, int N, int heads, long row_stride, int head_stride, const int *pos, const rope_table *r,
                 int inverse);
    // Causal attention over B sequences of T rows, as attention_forward / attention_backward (ops.h).
    void (*attention)(float *out, float *lse, const float *q, const float *k, const float *v,
                      int B, int T, int H, int Hkv, int Dk, int Dv, int sq, int sk, int sv, float scale);
    void (*attention_backward)(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                               const float *v, const float *lse, int B, int T, int H, int Hkv, int Dk, int Dv,
                               int sq, int sk, int sv, float scale);
    // Inference attention over a paged cache (the modes of one operation): y (n, H*Dv) from q
    // (n, H*Dk) roped. latent_attention: MLA's absorbed form over the latent cache, q per head
    // [q_nope | q_pe]: q_lat = W_UK_h^T q_nope, score(u) = (q_lat . c_kv(u) + q_pe . k_pe(u)) *
    // scale, softmax, y_h = W_UV_h sum_u p(u) c_kv(u) (the fast backend picks per run of one
    // sequence's rows the absorbed or the expanded form by counting multiply-adds, and for decode
    // rows the one-pass-for-all-heads kernels). full_attention: softmax attention over the full
    // cache, head h reading cached head h / (H / Hkv).
    void (*latent_attention)(float *y, const float *q, const fg_kv_pages *kv, const fg_attn_call *a);
    void (*full_attention)(float *y, const float *q, const fg_kv_pages *kv, const fg_attn_call *a);
    size_t (*attn_scratch)(const fg_attn_limits *lim);
    // out (N, F) = silu(h1) * h3; backward dh1 +=, dh3 +=.
    void (*swiglu)(float *out, const float *h1, const float *h3, int N, int F);
    void (*swiglu_backward)(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, int N, int F);
    // MoE dispatch: xe (S, C) row s = x row slot_tok[s]. Combine: out (N, C) += sum_k wts[n,k] *
    // ey[slot_of[n,k]] (K choices per row).
    void (*moe_gather)(float *xe, const float *x, const int *slot_tok, int S, int C);
    void (*moe_combine)(float *out, const float *ey, const float *wts, const int *slot_of, int N, int K, int C);
    // Softmax cross-entropy as crossentropy_forward / crossentropy_backward (ops.h).
    double (*xent)(float *probs, const float *logits, const int32_t *targets, int N, int V, int *count);
    void (*xent_backward)(float *dlogits, const float *probs, const int32_t *targets, int N, int V, float scale);
    // One tensor's AdamW step over n values: w *= decay; m, v moments; w -= step * m / (sqrt(v)/bc2_sqrt + eps).
    void (*adamw)(float *w, float *m, float *v, const float *g, size_t n, const fg_adamw_k *k);
} fg_backend;

// The fast backend's attention entries (ops/attn.c).
void fg_cpu_latent_attention(float *y, const float *q, const fg_kv_pages *kv, const fg_attn_call *a);
void fg_cpu_full_attention(float *y, const float *q, const fg_kv_pages *kv, const fg_attn_call *a);
size_t fg_cpu_attn_scratch(const fg_attn_limits *lim);

extern const fg_backend fg_backend_ref;
extern const fg_backend fg_backend_cpu;

// The fast backend's per-store state: weight matrices packed once into GEMM panels at their first
// product of at least FG_PACK_MIN_ROWS rows, within a byte budget (0: never pack). Shared by every
// context reading the store (lookups and insertions are locked); a weight must outlive it.
typedef struct fg_packs fg_packs;
#define FG_PACK_MIN_ROWS 8
// fp32 weights from 2 rows: their packed product is the same fp32 arithmetic (a decode batch's
// few rows per expert gain the streamed panels); bf16 / Q8_0 panels would round the activations
// of a 2..7-row product to bf16, which the unpacked path does not.
#define FG_PACK_MIN_ROWS_F32 2
// ...except small fp32 matrices (at most this many bytes: cache-resident), whose 2..7-row products
// read the rows in place (fg_qmatmul_few): packing and an OpenMP region cost more than the product.
// Measured: the demo model's 2-row decode step 372 -> 252 us; bench-moe's batches unchanged.
#define FG_FEW_MAX_BYTES (256u << 10)
fg_packs *fg_packs_create(size_t budget);
void fg_packs_free(fg_packs *p);                 // NULL is fine
size_t fg_packs_bytes(const fg_packs *p);

#endif
