// ops.h: the reference CPU operators of frugal, forward and backward, in fp32 with OpenMP.
//
// These are the specification that faster kernels are tested against. Conventions:
// - Signatures list outputs first, then inputs, then weights, then sizes.
// - Weights are stored (OUT, IN) like torch.nn.Linear: out = inp @ w^T (+ bias).
// - Backward functions ACCUMULATE (+=) into every gradient they are given (parameter and input
//   gradients alike), so callers zero buffers once and branches can add their contributions.
//   A NULL gradient pointer means "not needed".
// - N is a number of rows (tokens), C a row width. Shapes use the alphabet of docs/model.md.
#ifndef FG_OPS_H
#define FG_OPS_H

#include <stddef.h>
#include <stdint.h>

// Multiply-add counting (tests/test_cost.c checks the analytic FLOP formulas of src/cost against
// it): while fg_ops_count_macs is nonzero, matmul_forward and attention_forward add the
// multiply-adds they perform to fg_ops_macs (atomically). Off by default: one branch per call.
extern int fg_ops_count_macs;
extern int64_t fg_ops_macs;

// Vector helpers shared by the attention loops: dot(a, b) over n floats, and y += a * x.
float fg_vdot(const float *a, const float *b, int n);
void fg_vaxpy(float *y, float a, const float *x, int n);
void fg_vscale(float *y, int n, float a); // y *= a
// The same between two blocks of rows (attention over cached rows for all heads at once, and the
// small per-head products around it), each in register blocks of 4 x 4 rows or 4 rows x 64
// columns, so an operand vector is loaded once for four products:
//   fg_vdot_block:  out[a*ldo + b] = dot(q_a, x_b) over n, for a < na, b < nb;
//   fg_vaxpy_block: y_a += sum_b p[a*pa + b*pb] x_b over n columns, for a < na, b < nb.
// Rows at strides ldq, ldx, ldy. Sums run in a different order than fg_vdot's.
void fg_vdot_block(float *out, long ldo, const float *q, long ldq, int na, const float *x, long ldx, int nb, int n);
void fg_vaxpy_block(float *y, long ldy, int na, const float *p, long pa, long pb, const float *x, long ldx, int nb, int n);
// Lane space: the scores of all H heads of one query against cached rows, with the heads across
// the vector lanes, so a cached row's element is broadcast (a cheap load) instead of dot products
// that end in horizontal sums. Lane l belongs to head l / r: for H dividing 16, r = 16 / H and the
// r lanes of a head take r consecutive dims (nl = 16 lanes); otherwise r = 1 and nl = H rounded
// up to 16 (the extra lanes are zero). fg_lanes gives nl and r.
//   fg_lane_q:       qt (ceil(n/r), nl) from the heads' queries q_h (rows at stride ldq) of n dims;
//   fg_lane_scores:  s (nb, nl): s[u*nl + l] = dot(q_{l/r}, x_u) over n, in every lane of the head;
//                    smax (nl): each lane's largest score. ahead (may be NULL):
//                    ahead_lines cache lines from there are fetched into L1 meanwhile, spread
//                    over the work (the next rows of a stream: a burst of prefetches stalls it);
//   fg_lane_softmax: the online softmax of one block of scores per lane: s scaled, the running
//                    max m (nl) raised to the block's, s = exp(s - m), l (nl) = l * rescale +
//                    sum_u s; rescale (nl) = exp(old m - new m), to apply to the running outputs.
//                    smax: fg_lane_scores' block maxima (saves a pass; scale > 0), or NULL.
void fg_lanes(int H, int *nl, int *r);
size_t fg_lane_q_floats(int H, int n); // floats fg_lane_q writes: ceil(n/r) * nl
void fg_lane_q(float *qt, const float *q, long ldq, int H, int n);
void fg_lane_scores(float *s, float *smax, const float *qt, int H, const float *x, long ldx, int nb, int n,
                    const void *ahead, int ahead_lines);
void fg_lane_softmax(float *s, int nl, int nb, float scale, const float *smax, float *m, float *l, float *rescale);
// p[u] *= scale for u < n; returns the largest of them and m.
float fg_scale_max(float *p, int n, float scale, float m);
// p[u] = exp(p[u] - m) for u < n (the softmax's vectorised exp); returns their sum.
float fg_exp_sum(float *p, int n, float m);

// out (N, OUT) = inp (N, IN) @ w^T (OUT, IN) + bias (OUT) [bias may be NULL]. Overwrites out.
void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int IN, int OUT);
// dinp (N, IN) += dout @ w; dw (OUT, IN) += dout^T @ inp; dbias (OUT) += column sums of dout.
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int N, int IN, int OUT);
// The same with an explicit precision (FG_F32 / FG_BF16, gemm.h; the two above are fp32).
void matmul_forward_prec(float *out, const float *inp, const float *w, const float *bias, int N, int IN, int OUT, int prec);
void matmul_backward_prec(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, int N, int IN, int OUT, int prec);

// out (N, C) = w * inp / sqrt(mean(inp^2) + eps); rstd (N) saved for backward.
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
// dinp += , dw += . inp/rstd as saved by forward.
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int N, int C);

// RoPE tables for positions [0, T): cos/sin (T, D/2). freq[i] from rope_theta and (optionally)
// YaRN, see rope_freqs in ops.c and docs/model.md.
typedef struct {
    int D;            // rotated width (Dr for MLA, Dh for GQA), even
    int T;            // positions available
    int interleave;   // 1: pairs (2i, 2i+1); 0: pairs (i, i + D/2)
    float *cos, *sin; // (T, D/2), owned
} rope_table;
int rope_table_init(rope_table *r, int D, int T, int interleave, float theta, int yarn, float factor,
                    int orig_max_pos, float beta_fast, float beta_slow);
// The same with Llama 3's frequency rule (rope_type "llama3"): wavelengths below
// orig/high keep their frequency, above orig/low are divided by factor, in between blend
// smoothly (docs/model.md).
int rope_table_init_llama3(rope_table *r, int D, int T, int interleave, float theta, float factor,
                           float low_freq_factor, float high_freq_factor, int orig_max_pos);
void rope_table_free(rope_table *r);
// Rotates x (D floats) in place for position pos; inverse=1 applies the transpose (for backward).
void rope_apply(float *x, const rope_table *r, int pos, int inverse);

// Causal softmax attention. q (B, T, H, Dk) row stride sq per token, k (B, T, Hkv, Dk) stride sk,
// v (B, T, Hkv, Dv) stride sv; head h reads kv head h / (H / Hkv). out (B, T, H, Dv) contiguous,
// lse (B, H, T) the log-sum-exp of each row's scaled scores (all the backward keeps: it rebuilds
// the probabilities block by block).
void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       int B, int T, int H, int Hkv, int Dk, int Dv, int sq, int sk, int sv, float scale);
// p (n) = softmax(scale * p) in place (max-subtracted; the order of operations attention uses).
// Returns the row's log-sum-exp, max + log(sum of exp(scale * p - max)).
float fg_softmax_scaled(float *p, int n, float scale);
// One query row: p (n) = softmax(scale * q . k_u) over n keys (row stride sk), o (Dv) = p @ v
// (row stride sv). Leaves the normalised probabilities in p. Shared by training and decoding.
void attention_row(float *o, float *p, const float *q, const float *k, int sk, const float *v, int sv,
                   int n, int Dk, int Dv, float scale);
// dq, dk, dv accumulate, with the same strides as q, k, v; lse from attention_forward.
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *lse,
                        int B, int T, int H, int Hkv, int Dk, int Dv, int sq, int sk, int sv, float scale);

// out (N, F) = silu(h1) * h3.
void swiglu_forward(float *out, const float *h1, const float *h3, int N, int F);
// dh1 +=, dh3 +=.
void swiglu_backward(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, int N, int F);

// Cross-entropy over N rows of V logits; targets < 0 are ignored. Writes probs (N, V) (may alias
// logits) and returns the mean loss over counted rows; *count = rows counted.
double crossentropy_forward(float *probs, const float *logits, const int32_t *targets, int N, int V, int *count);
// dlogits (N, V) = scale * (probs - onehot(target)) for counted rows, 0 for ignored. Overwrites.
void crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N, int V, float scale);

#endif
