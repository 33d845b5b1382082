// backend.c: the two CPU backends (contracts in backend.h) and the fast one's packed weights.
//
// The reference backend is written for reading: one scalar loop per definition, no threads, no
// blocking, products accumulated in double where a sum runs long (so it is a fair judge of the
// fast kernels' fp32 sums). The fast backend routes each entry to the kernels of ops.c, gemm.c
// and quant.c.
#include "ops/backend.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "frugal.h"
#include "ops/gemm.h"
#include "ops/quant.h"

#ifdef _OPENMP
#include <omp.h>
#endif

// ---- the reference ---------------------------------------------------------------------------

// Exact products of the dequantised rows (the op test's budget covers the fast path's bf16
// rounding of products with bf16 / Q8_0 rows or in bf16 precision).
static void ref_matmul(void *ctx, float *out, const float *inp, fg_wref w, const float *bias, int N, int IN, int OUT,
                       int prec) {
    (void)ctx; (void)prec;
    float *row = malloc(sizeof(float) * (size_t)IN);
    if (!row) abort(); // the reference is for tests; a failed small malloc ends them
    size_t rb = w.type == FG_F8_E4M3 ? (size_t)IN : fg_qrow_bytes(w.type, IN);
    for (int o = 0; o < OUT; o++) {
        if (w.type == FG_F8_E4M3) fg_fp8_row(row, w.p, w.scale, IN, o);
        else fg_dequantize_row(row, (const uint8_t *)w.p + (size_t)o * rb, IN, w.type);
        for (int n = 0; n < N; n++) {
            const float *a = inp + (size_t)n * IN;
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < IN; i++) s += (double)a[i] * row[i];
            out[(size_t)n * OUT + o] = (float)s;
        }
    }
    free(row);
}

static void ref_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                const float *w, int N, int IN, int OUT, int prec) {
    (void)prec; // the reference is exact fp32 products (the test's budget covers bf16 rounding)
    for (int n = 0; dinp && n < N; n++)
        for (int i = 0; i < IN; i++) {
            double s = 0;
            for (int o = 0; o < OUT; o++) s += (double)dout[(size_t)n * OUT + o] * w[(size_t)o * IN + i];
            dinp[(size_t)n * IN + i] += (float)s;
        }
    for (int o = 0; dw && o < OUT; o++)
        for (int i = 0; i < IN; i++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += (double)dout[(size_t)n * OUT + o] * inp[(size_t)n * IN + i];
            dw[(size_t)o * IN + i] += (float)s;
        }
    for (int o = 0; dbias && o < OUT; o++) {
        double s = 0;
        for (int n = 0; n < N; n++) s += dout[(size_t)n * OUT + o];
        dbias[o] += (float)s;
    }
}

static void ref_rmsnorm(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        for (int i = 0; i < C; i++) out[(size_t)n * C + i] = w[i] * (x[i] * r);
        if (rstd) rstd[n] = r;
    }
}

static void ref_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                                 const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
        double r = rstd[n], dot = 0; // y = w x r, r = (mean x^2 + eps)^-1/2: dx = r (w d) - r^3 x mean(w d x)
        for (int i = 0; i < C; i++) dot += (double)w[i] * d[i] * x[i];
        for (int i = 0; i < C; i++) {
            if (dinp) dinp[(size_t)n * C + i] += (float)(r * w[i] * d[i] - r * r * r * x[i] * dot / C);
            if (dw) dw[i] += (float)(d[i] * x[i] * r);
        }
    }
}

static void ref_rope(float *x, int N, int heads, long row_stride, int head_stride, const int *pos, const rope_table *r,
                     int inverse) {
    int half = r->D / 2;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < heads; h++) {
            float *v = x + n * row_stride + (long)h * head_stride;
            for (int i = 0; i < half; i++) {
                int i0 = r->interleave ? 2 * i : i, i1 = r->interleave ? 2 * i + 1 : i + half;
                float c = r->cos[(size_t)pos[n] * half + i], s = r->sin[(size_t)pos[n] * half + i];
                if (inverse) s = -s;
                float a = v[i0], b = v[i1];
                v[i0] = a * c - b * s;
                v[i1] = a * s + b * c;
            }
        }
}

// Scores of query row (b, t, h) against every key u <= t, scaled, in double.
static void ref_scores(double *s, const float *q, const float *k, int b, int t, int h, int T, int H, int Hkv,
                       int Dk, int sq, int sk, float scale) {
    const float *qr = q + ((size_t)b * T + t) * sq + (size_t)h * Dk;
    int kh = h / (H / Hkv);
    for (int u = 0; u <= t; u++) {
        const float *kr = k + ((size_t)b * T + u) * sk + (size_t)kh * Dk;
        double d = 0;
        for (int i = 0; i < Dk; i++) d += (double)qr[i] * kr[i];
        s[u] = d * scale;
    }
}

static void ref_attention(float *out, float *lse, const float *q, const float *k, const float *v, int B, int T, int H,
                          int Hkv, int Dk, int Dv, int sq, int sk, int sv, float scale) {
    double *s = malloc(sizeof(double) * (size_t)T);
    if (!s) abort();
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                ref_scores(s, q, k, b, t, h, T, H, Hkv, Dk, sq, sk, scale);
                double mx = -INFINITY, sum = 0;
                for (int u = 0; u <= t; u++) mx = s[u] > mx ? s[u] : mx;
                for (int u = 0; u <= t; u++) sum += exp(s[u] - mx);
                if (lse) lse[((size_t)b * H + h) * T + t] = (float)(mx + log(sum));
                float *o = out + (((size_t)b * T + t) * H + h) * Dv;
                int kh = h / (H / Hkv);
                for (int i = 0; i < Dv; i++) {
                    double acc = 0;
                    for (int u = 0; u <= t; u++)
                        acc += exp(s[u] - mx) / sum * v[((size_t)b * T + u) * sv + (size_t)kh * Dv + i];
                    o[i] = (float)acc;
                }
            }
    free(s);
}

static void ref_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                   const float *v, const float *lse, int B, int T, int H, int Hkv, int Dk, int Dv,
                                   int sq, int sk, int sv, float scale) {
    double *s = malloc(sizeof(double) * (size_t)T), *dp = malloc(sizeof(double) * (size_t)T);
    if (!s || !dp) abort();
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                int kh = h / (H / Hkv);
                ref_scores(s, q, k, b, t, h, T, H, Hkv, Dk, sq, sk, scale);
                const float *d = dout + (((size_t)b * T + t) * H + h) * Dv;
                double L = lse[((size_t)b * H + h) * T + t], dot = 0;
                for (int u = 0; u <= t; u++) {
                    s[u] = exp(s[u] - L); // P
                    const float *vr = v + ((size_t)b * T + u) * sv + (size_t)kh * Dv;
                    double a = 0;
                    for (int i = 0; i < Dv; i++) a += (double)d[i] * vr[i];
                    dp[u] = a;
                    dot += a * s[u];
                }
                const float *qr = q + ((size_t)b * T + t) * sq + (size_t)h * Dk;
                for (int u = 0; u <= t; u++) {
                    double ds = s[u] * (dp[u] - dot) * scale;
                    const float *kr = k + ((size_t)b * T + u) * sk + (size_t)kh * Dk;
                    float *dkr = dk + ((size_t)b * T + u) * sk + (size_t)kh * Dk;
                    float *dvr = dv + ((size_t)b * T + u) * sv + (size_t)kh * Dv;
                    float *dqr = dq + ((size_t)b * T + t) * sq + (size_t)h * Dk;
                    for (int i = 0; i < Dk; i++) { dqr[i] += (float)(ds * kr[i]); dkr[i] += (float)(ds * qr[i]); }
                    for (int i = 0; i < Dv; i++) dvr[i] += (float)(s[u] * d[i]);
                }
            }
    free(s);
    free(dp);
}

static void ref_swiglu(float *out, const float *h1, const float *h3, int N, int F) {
    for (size_t i = 0; i < (size_t)N * F; i++) out[i] = (float)(h1[i] / (1.0 + exp(-(double)h1[i])) * h3[i]);
}

static void ref_swiglu_backward(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, int N, int F) {
    for (size_t i = 0; i < (size_t)N * F; i++) {
        double sg = 1.0 / (1.0 + exp(-(double)h1[i])), silu = h1[i] * sg;
        if (dh3) dh3[i] += (float)(dout[i] * silu);
        if (dh1) dh1[i] += (float)(dout[i] * h3[i] * (sg + h1[i] * sg * (1.0 - sg)));
    }
}

static void ref_moe_gather(float *xe, const float *x, const int *slot_tok, int S, int C) {
    for (int s = 0; s < S; s++)
        for (int i = 0; i < C; i++) xe[(size_t)s * C + i] = x[(size_t)slot_tok[s] * C + i];
}

static void ref_moe_combine(float *out, const float *ey, const float *wts, const int *slot_of, int N, int K, int C) {
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            for (int i = 0; i < C; i++)
                out[(size_t)n * C + i] += wts[n * K + k] * ey[(size_t)slot_of[n * K + k] * C + i];
}

static double ref_xent(float *probs, const float *logits, const int32_t *targets, int N, int V, int *count) {
    double loss = 0;
    int cnt = 0;
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * V;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++) mx = l[j] > mx ? l[j] : mx;
        for (int j = 0; j < V; j++) sum += exp(l[j] - mx);
        if (targets[n] >= 0) { loss += log(sum) + mx - l[targets[n]]; cnt++; }
        for (int j = 0; j < V; j++) probs[(size_t)n * V + j] = (float)(exp(l[j] - mx) / sum);
    }
    *count = cnt;
    return cnt ? loss / cnt : 0.0;
}

static void ref_xent_backward(float *dlogits, const float *probs, const int32_t *targets, int N, int V, float scale) {
    for (int n = 0; n < N; n++)
        for (int j = 0; j < V; j++)
            dlogits[(size_t)n * V + j] = targets[n] < 0 ? 0.0f : scale * (probs[(size_t)n * V + j] - (j == targets[n]));
}

static void ref_adamw(float *w, float *m, float *v, const float *g, size_t n, const fg_adamw_k *k) {
    for (size_t j = 0; j < n; j++) {
        w[j] *= k->decay;
        m[j] = k->beta1 * m[j] + (1.0f - k->beta1) * g[j];
        v[j] = k->beta2 * v[j] + (1.0f - k->beta2) * g[j] * g[j];
        w[j] -= k->step * m[j] / (sqrtf(v[j]) / k->bc2_sqrt + k->eps);
    }
}

// Paged-cache attention, one (row, head) at a time in double: the scores, the softmax, the
// weighted sum. Scratch (doubles): one row of scores (max_T), a query and an output.
static size_t ref_attn_scratch(const fg_attn_limits *L) {
    size_t kw = L->latent ? (size_t)L->Rkv + L->Dr : (size_t)L->Dk, w = L->latent ? (size_t)L->Rkv : (size_t)L->Dvf;
    return sizeof(double) * ((size_t)L->max_T + kw + w);
}

static float ref_kv(const fg_kv_pages *kv, size_t at) {
    if (kv->type == FG_F32) return ((const float *)kv->arena)[at];
    if (kv->type == FG_BF16) return fg_bf16_to_f32(((const uint16_t *)kv->arena)[at]);
    float blk[32]; // Q8_0: the element's block
    fg_dequantize_row(blk, (const uint8_t *)kv->arena + fg_kv_bytes(FG_Q8_0, at / 32 * 32), 32, FG_Q8_0);
    return blk[at % 32];
}
static size_t ref_row(const fg_kv_pages *kv, const int *tab, int u, size_t off, int w) {
    return (size_t)tab[u / kv->block] * kv->blk_elems + off + (size_t)(u % kv->block) * (size_t)w;
}
// p[0..t] = softmax(scale * q . key(u)) over the row's positions, keys at (off, w) + koff.
static void ref_probs(double *p, const double *q, int n, const fg_kv_pages *kv, const int *tab, int t, size_t off, int w,
                      size_t koff, float scale) {
    double mx = -INFINITY, sum = 0;
    for (int u = 0; u <= t; u++) {
        double d = 0;
        size_t at = ref_row(kv, tab, u, off, w) + koff;
        for (int k = 0; k < n; k++) d += q[k] * ref_kv(kv, at + k);
        p[u] = d * scale;
        mx = fmax(mx, p[u]);
    }
    for (int u = 0; u <= t; u++) sum += p[u] = exp(p[u] - mx);
    for (int u = 0; u <= t; u++) p[u] /= sum;
}

static void ref_full_attention(float *y, const float *q, const fg_kv_pages *kv, const fg_attn_call *a) {
    double *p = a->scratch, *qd = p + a->lim->max_T, *o = qd + a->Dk;
    for (int i = 0; i < a->n; i++)
        for (int h = 0; h < a->H; h++) {
            int kh = h / (a->H / a->Hkv), t = a->pos[i];
            for (int k = 0; k < a->Dk; k++) qd[k] = q[((size_t)i * a->H + h) * a->Dk + k];
            ref_probs(p, qd, a->Dk, kv, a->tab[i], t, kv->key_off, kv->kw, (size_t)kh * a->Dk, a->scale);
            for (int d = 0; d < a->Dv; d++) o[d] = 0;
            for (int u = 0; u <= t; u++) {
                size_t at = ref_row(kv, a->tab[i], u, kv->val_off, kv->vw) + (size_t)kh * a->Dv;
                for (int d = 0; d < a->Dv; d++) o[d] += p[u] * ref_kv(kv, at + d);
            }
            for (int d = 0; d < a->Dv; d++) y[((size_t)i * a->H + h) * a->Dv + d] = (float)o[d];
        }
}

static void ref_latent_attention(float *y, const float *q, const fg_kv_pages *kv, const fg_attn_call *a) {
    int H = a->H, Dn = a->Dn, Dr = a->Dr, Dv = a->Dv, Rkv = a->Rkv, kw = Rkv + Dr;
    double *p = a->scratch, *ql = p + a->lim->max_T, *ol = ql + kw;
    float wt[(size_t)(Dn + Dv) * Rkv];
    for (int h = 0; h < H; h++) {
        size_t rb = fg_qrow_bytes(a->wkv_b.type, Rkv); // head h's rows [W_UK_h ; W_UV_h] in fp32
        for (int r = 0; r < Dn + Dv; r++)
            fg_dequantize_row(wt + (size_t)r * Rkv, (const uint8_t *)a->wkv_b.p + (size_t)(h * (Dn + Dv) + r) * rb, Rkv, a->wkv_b.type);
        for (int i = 0; i < a->n; i++) {
            const float *qh = q + ((size_t)i * H + h) * (Dn + Dr);
            int t = a->pos[i];
            for (int k = 0; k < Rkv; k++) { // q_lat = W_UK_h^T q_nope
                ql[k] = 0;
                for (int d = 0; d < Dn; d++) ql[k] += (double)qh[d] * wt[(size_t)d * Rkv + k];
            }
            for (int d = 0; d < Dr; d++) ql[Rkv + d] = qh[Dn + d];
            ref_probs(p, ql, kw, kv, a->tab[i], t, kv->key_off, kw, 0, a->scale);
            for (int k = 0; k < Rkv; k++) ol[k] = 0;
            for (int u = 0; u <= t; u++) {
                size_t at = ref_row(kv, a->tab[i], u, kv->key_off, kw);
                for (int k = 0; k < Rkv; k++) ol[k] += p[u] * ref_kv(kv, at + k);
            }
            for (int d = 0; d < Dv; d++) { // y_h = W_UV_h o_lat
                double v = 0;
                for (int k = 0; k < Rkv; k++) v += (double)wt[(size_t)(Dn + d) * Rkv + k] * ol[k];
                y[((size_t)i * H + h) * Dv + d] = (float)v;
            }
        }
    }
}

const fg_backend fg_backend_ref = {
    .name = "reference",
    .matmul = ref_matmul, .matmul_backward = ref_matmul_backward,
    .rmsnorm = ref_rmsnorm, .rmsnorm_backward = ref_rmsnorm_backward,
    .rope = ref_rope,
    .attention = ref_attention, .attention_backward = ref_attention_backward,
    .latent_attention = ref_latent_attention, .full_attention = ref_full_attention, .attn_scratch = ref_attn_scratch,
    .swiglu = ref_swiglu, .swiglu_backward = ref_swiglu_backward,
    .moe_gather = ref_moe_gather, .moe_combine = ref_moe_combine,
    .xent = ref_xent, .xent_backward = ref_xent_backward,
    .adamw = ref_adamw,
};

// ---- packed weights (the fast backend's context) ---------------------------------------------

struct wpack { const void *w; fg_gemm_packed *p; };
struct fg_packs {
    pthread_mutex_t mu;
    struct wpack *t;            // open addressing by weight pointer, at most half full
    int n, cap;                 // entries, table size (a power of two)
    size_t bytes, budget;       // bytes packed; at most this many
};

fg_packs *fg_packs_create(size_t budget) {
    fg_packs *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->mu, NULL);
    p->budget = budget;
    return p;
}

void fg_packs_free(fg_packs *p) {
    if (!p) return;
    for (int i = 0; i < p->cap; i++) fg_gemm_packed_free(p->t[i].p);
    free(p->t);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

size_t fg_packs_bytes(const fg_packs *p) { return p ? p->bytes : 0; }

static struct wpack *pack_slot(struct wpack *t, int cap, const void *w) { // w's entry or the empty slot for it
    size_t h = ((uintptr_t)w >> 6) & (size_t)(cap - 1);
    while (t[h].w && t[h].w != w) h = (h + 1) & (size_t)(cap - 1);
    return &t[h];
}

// The packed form of w, packing it now when new and `insert` (outside parallel regions). NULL:
// did not fit the budget, or not packed yet inside a parallel region.
static fg_gemm_packed *packs_get(fg_packs *ps, fg_wref w, int IN, int OUT, int insert) {
    if (!ps->budget) return NULL;
    pthread_mutex_lock(&ps->mu);
    fg_gemm_packed *res = NULL;
    struct wpack *e = ps->cap ? pack_slot(ps->t, ps->cap, w.p) : NULL;
    if (e && e->w) { res = e->p; goto done; }
#ifdef _OPENMP
    if (omp_in_parallel()) insert = 0;
#endif
    if (!insert) goto done;
    if (2 * (ps->n + 1) > ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 1024;
        struct wpack *t = calloc((size_t)cap, sizeof *t);
        if (!t) goto done;
        for (int i = 0; i < ps->cap; i++)
            if (ps->t[i].w) *pack_slot(t, cap, ps->t[i].w) = ps->t[i];
        free(ps->t);
        ps->t = t;
        ps->cap = cap;
    }
    int f32 = w.type == FG_F32;
    size_t need = (size_t)OUT * IN * (f32 ? 4 : 2);
    res = ps->bytes + need <= ps->budget
        ? fg_gemm_pack(OUT, IN, w.p, (long)fg_qrow_bytes(w.type, IN), w.type, f32 ? FG_F32 : FG_BF16) : NULL;
    *pack_slot(ps->t, ps->cap, w.p) = (struct wpack){w.p, res};
    ps->n++;
    ps->bytes += fg_gemm_packed_bytes(res);
done:
    pthread_mutex_unlock(&ps->mu);
    return res;
}

static void cpu_prepare(void *ctx, fg_wref w, int IN, int OUT, int rows) {
    if (w.type == FG_F8_E4M3) return; // multiplied in tiles, never packed whole
    if (ctx && rows >= (w.type == FG_F32 ? FG_PACK_MIN_ROWS_F32 : FG_PACK_MIN_ROWS)) packs_get(ctx, w, IN, OUT, 1);
}

// ---- the fast backend ------------------------------------------------------------------------

// One row (decode) is a matrix-vector product in the stored type; a few rows of a small fp32
// matrix (a speculative step's verification on a small model) read each weight row once for all
// of them (fg_qmatmul_few, on the pool like the matrix-vector product); more rows run on the GEMM,
// from packed panels when the context packs this weight (f32 weights only for fp32 products:
// panels hold one precision).
static void cpu_matmul(void *ctx, float *out, const float *inp, fg_wref w, const float *bias, int N, int IN, int OUT,
                       int prec) {
    int f32 = w.type == FG_F32;
    fg_gemm_packed *p;
    if (w.type == FG_F8_E4M3) fg_fp8_matmul(out, inp, w.p, w.scale, bias, N, IN, OUT);
    else if (N == 1 && (ctx || !f32)) fg_qmatvec(out, inp, w.p, w.type, bias, IN, OUT);
    else if (ctx && f32 && N < FG_PACK_MIN_ROWS && (size_t)IN * OUT * 4 <= FG_FEW_MAX_BYTES)
        fg_qmatmul_few(out, inp, w.p, w.type, bias, N, IN, OUT);
    else if (ctx && N >= (f32 ? FG_PACK_MIN_ROWS_F32 : FG_PACK_MIN_ROWS) && (!f32 || prec == FG_F32) && (p = packs_get(ctx, w, IN, OUT, 1)))
        fg_gemm_qb_packed(N, inp, IN, p, out, OUT, bias);
    else if (f32) matmul_forward_prec(out, inp, w.p, bias, N, IN, OUT, prec);
    else fg_qmatmul_forward(out, inp, w.p, w.type, bias, N, IN, OUT);
}

static void cpu_rope(float *x, int N, int heads, long row_stride, int head_stride, const int *pos, const rope_table *r,
                     int inverse) {
#pragma omp parallel for schedule(static) if ((long)N * heads * r->D > 65536)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < heads; h++) rope_apply(x + n * row_stride + (long)h * head_stride, r, pos[n], inverse);
}

static void cpu_moe_gather(float *xe, const float *x, const int *slot_tok, int S, int C) {
#pragma omp parallel for schedule(static) if ((long)S * C > 65536)
    for (int s = 0; s < S; s++) memcpy(xe + (size_t)s * C, x + (size_t)slot_tok[s] * C, sizeof(float) * C);
}

static void cpu_moe_combine(float *out, const float *ey, const float *wts, const int *slot_of, int N, int K, int C) {
#pragma omp parallel for schedule(static) if ((long)N * K * C > 65536)
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            const float *y = ey + (size_t)slot_of[n * K + k] * C;
            float wt = wts[n * K + k], *o = out + (size_t)n * C;
            for (int i = 0; i < C; i++) o[i] += wt * y[i];
        }
}

// The reference's loop (it is elementwise), on the threads in contiguous chunks: bit for bit the same.
static void cpu_adamw(float *w, float *m, float *v, const float *g, size_t n, const fg_adamw_k *k) {
    const size_t chunk = 16384;
    long nc = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long c = 0; c < nc; c++) {
        size_t o = (size_t)c * chunk, len = n - o < chunk ? n - o : chunk;
        ref_adamw(w + o, m + o, v + o, g + o, len, k);
    }
}

const fg_backend fg_backend_cpu = {
    .name = "cpu",
    .matmul = cpu_matmul, .prepare = cpu_prepare, .matmul_backward = matmul_backward_prec,
    .rmsnorm = rmsnorm_forward, .rmsnorm_backward = rmsnorm_backward,
    .rope = cpu_rope,
    .attention = attention_forward, .attention_backward = attention_backward,
    .latent_attention = fg_cpu_latent_attention, .full_attention = fg_cpu_full_attention,
    .attn_scratch = fg_cpu_attn_scratch,
    .swiglu = swiglu_forward, .swiglu_backward = swiglu_backward,
    .moe_gather = cpu_moe_gather, .moe_combine = cpu_moe_combine,
    .xent = crossentropy_forward, .xent_backward = crossentropy_backward,
    .adamw = cpu_adamw,
};
