// test_backend.c: every entry of every backend (ops/backend.h) against the reference backend, on
// random shapes with tails (sizes that are not multiples of any vector width or block), forward
// and gradient; and the reference's own gradients against finite differences of its forward (so
// the judge is judged too). In the spirit of llama.cpp's test-backend-ops.
//
// Budgets: fp32 paths 2e-5 relative L2 (sums in another order); bf16 products 1e-2 (operands
// rounded to 8 bits of mantissa); finite differences 2e-2 (central, fp32 forward).
#include <math.h>
#include <string.h>

#include "ops/backend.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "ops/quant.h"
#include "test.h"

static const fg_backend *backends[] = {&fg_backend_ref, &fg_backend_cpu};
#define NB (int)(sizeof backends / sizeof backends[0])
static fg_rng rng;

static float *rnd(size_t n, float scale) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = scale * fg_rng_normal(&rng);
    return p;
}
static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static float *dup(const float *a, size_t n) { float *p = malloc(sizeof(float) * (n ? n : 1)); memcpy(p, a, sizeof(float) * n); return p; }
static double dotp(const float *a, const float *b, size_t n) { double s = 0; for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i]; return s; }

static void expect(const char *what, const fg_backend *be, const float *got, const float *ref, size_t n, double tol) {
    double e = tst_rel_err(got, ref, n);
    CHECK_MSG(e <= tol, "%s [%s]: rel err %.3g > %.1g", what, be->name, e, tol);
}

// ---- matmul, prepare, matmul_backward --------------------------------------------------------

static void test_matmul(void) {
    // {5, 512, 160}: a few rows over more than 128 KiB of weights (the decode pool's few-rows product)
    static const int shapes[][3] = {{1, 64, 17}, {3, 96, 5}, {8, 32, 64}, {37, 64, 33}, {70, 160, 48}, {5, 512, 160}};
    static const int types[] = {FG_F32, FG_BF16, FG_Q8_0};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int N = shapes[si][0], IN = shapes[si][1], OUT = shapes[si][2];
        float *x = rnd((size_t)N * IN, 1), *w = rnd((size_t)OUT * IN, 0.5f), *bias = rnd(OUT, 1);
        for (int ti = 0; ti < 3; ti++)
            for (int prec = FG_F32; prec <= FG_BF16; prec++) {
                int ty = types[ti];
                if (ty != FG_F32 && prec == FG_F32 && N > 1) continue; // typed rows multiply in bf16
                size_t rb = fg_qrow_bytes(ty, IN);
                uint8_t *wq = malloc(rb * OUT);
                for (int o = 0; o < OUT; o++) fg_quantize_row(wq + (size_t)o * rb, w + (size_t)o * IN, IN, ty);
                fg_wref ref = {ty, wq, NULL};
                fg_packs *packs = fg_packs_create((size_t)1 << 30); // keyed by weight pointer: one per weight
                float *want = zeros((size_t)N * OUT), *got = zeros((size_t)N * OUT);
                fg_backend_ref.matmul(NULL, want, x, ref, si % 2 ? bias : NULL, N, IN, OUT, prec);
                // typed rows: bf16 products on the GEMM; Q8_0 decode rows with x rounded to int8
                // (quant.h's int8 products: about 0.4% here; test_kquant bounds them exactly)
                double tol = ((prec == FG_BF16 || ty != FG_F32) && N > 1) || ty == FG_Q8_0 ? 1e-2 : 2e-5;
                for (int b = 0; b < NB; b++)
                    for (int withctx = 0; withctx < 2; withctx++) {
                        const fg_backend *be = backends[b];
                        if (withctx && be->prepare) be->prepare(packs, ref, IN, OUT, N); // packed before use
                        memset(got, 0, sizeof(float) * (size_t)N * OUT);
                        be->matmul(withctx ? packs : NULL, got, x, ref, si % 2 ? bias : NULL, N, IN, OUT, prec);
                        char what[96];
                        snprintf(what, sizeof what, "matmul %dx%dx%d type %d prec %d ctx %d", N, IN, OUT, ty, prec, withctx);
                        expect(what, be, got, want, (size_t)N * OUT, tol);
                    }
                fg_packs_free(packs);
                free(want); free(got); free(wq);
            }
        // backward: every backend against the reference, the reference against finite differences
        float *dout = rnd((size_t)N * OUT, 1);
        float *rdx = zeros((size_t)N * IN), *rdw = zeros((size_t)OUT * IN), *rdb = zeros(OUT);
        fg_backend_ref.matmul_backward(rdx, rdw, rdb, dout, x, w, N, IN, OUT, FG_F32);
        for (int b = 0; b < NB; b++) {
            const fg_backend *be = backends[b];
            float *dx = rnd((size_t)N * IN, 1), *dw = rnd((size_t)OUT * IN, 1), *db = rnd(OUT, 1);
            float *dx0 = dup(dx, (size_t)N * IN), *dw0 = dup(dw, (size_t)OUT * IN), *db0 = dup(db, OUT);
            be->matmul_backward(dx, dw, db, dout, x, w, N, IN, OUT, FG_F32); // accumulates
            for (size_t i = 0; i < (size_t)N * IN; i++) dx[i] -= dx0[i];
            for (size_t i = 0; i < (size_t)OUT * IN; i++) dw[i] -= dw0[i];
            for (int i = 0; i < OUT; i++) db[i] -= db0[i];
            expect("matmul_backward dinp", be, dx, rdx, (size_t)N * IN, 2e-5);
            expect("matmul_backward dw", be, dw, rdw, (size_t)OUT * IN, 2e-5);
            expect("matmul_backward dbias", be, db, rdb, OUT, 2e-5);
            free(dx); free(dw); free(db); free(dx0); free(dw0); free(db0);
        }
        // finite differences of L = sum(out * dout) along a random direction of x and of w
        float *ux = rnd((size_t)N * IN, 1), *uw = rnd((size_t)OUT * IN, 1);
        float *xp = dup(x, (size_t)N * IN), *out = zeros((size_t)N * OUT);
        double h = 1e-2, lp, lm;
        for (size_t i = 0; i < (size_t)N * IN; i++) xp[i] = x[i] + (float)h * ux[i];
        fg_backend_ref.matmul(NULL, out, xp, (fg_wref){FG_F32, w, NULL}, bias, N, IN, OUT, FG_F32);
        lp = dotp(out, dout, (size_t)N * OUT);
        for (size_t i = 0; i < (size_t)N * IN; i++) xp[i] = x[i] - (float)h * ux[i];
        fg_backend_ref.matmul(NULL, out, xp, (fg_wref){FG_F32, w, NULL}, bias, N, IN, OUT, FG_F32);
        lm = dotp(out, dout, (size_t)N * OUT);
        double fd = (lp - lm) / (2 * h), an = dotp(rdx, ux, (size_t)N * IN);
        CHECK_MSG(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-3, "matmul reference dinp vs finite differences: %g vs %g", an, fd);
        float *wp = dup(w, (size_t)OUT * IN);
        for (size_t i = 0; i < (size_t)OUT * IN; i++) wp[i] = w[i] + (float)h * uw[i];
        fg_backend_ref.matmul(NULL, out, x, (fg_wref){FG_F32, wp, NULL}, bias, N, IN, OUT, FG_F32);
        lp = dotp(out, dout, (size_t)N * OUT);
        for (size_t i = 0; i < (size_t)OUT * IN; i++) wp[i] = w[i] - (float)h * uw[i];
        fg_backend_ref.matmul(NULL, out, x, (fg_wref){FG_F32, wp, NULL}, bias, N, IN, OUT, FG_F32);
        lm = dotp(out, dout, (size_t)N * OUT);
        fd = (lp - lm) / (2 * h); an = dotp(rdw, uw, (size_t)OUT * IN);
        CHECK_MSG(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-3, "matmul reference dw vs finite differences: %g vs %g", an, fd);
        free(ux); free(uw); free(xp); free(wp); free(out);
        free(x); free(w); free(bias); free(dout); free(rdx); free(rdw); free(rdb);
    }
}

// ---- elementwise and row ops -----------------------------------------------------------------

static void test_rmsnorm(void) {
    int N = 7, C = 45;
    float *x = rnd((size_t)N * C, 2), *w = rnd(C, 1), *dout = rnd((size_t)N * C, 1);
    float *ry = zeros((size_t)N * C), *rr = zeros(N), *rdx = zeros((size_t)N * C), *rdw = zeros(C);
    fg_backend_ref.rmsnorm(ry, rr, x, w, N, C, 1e-6f);
    fg_backend_ref.rmsnorm_backward(rdx, rdw, dout, x, w, rr, N, C);
    for (int b = 0; b < NB; b++) {
        const fg_backend *be = backends[b];
        float *y = zeros((size_t)N * C), *r = zeros(N), *dx = zeros((size_t)N * C), *dw = zeros(C);
        be->rmsnorm(y, r, x, w, N, C, 1e-6f);
        expect("rmsnorm", be, y, ry, (size_t)N * C, 2e-6);
        expect("rmsnorm rstd", be, r, rr, N, 2e-6);
        be->rmsnorm_backward(dx, dw, dout, x, w, rr, N, C);
        expect("rmsnorm_backward dinp", be, dx, rdx, (size_t)N * C, 2e-5);
        expect("rmsnorm_backward dw", be, dw, rdw, C, 2e-5);
        free(y); free(r); free(dx); free(dw);
    }
    // finite differences of the reference along a random direction of x
    float *u = rnd((size_t)N * C, 1), *xp = zeros((size_t)N * C), *y = zeros((size_t)N * C);
    double h = 1e-3, l[2];
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < (size_t)N * C; i++) xp[i] = x[i] + (float)(s ? -h : h) * u[i];
        fg_backend_ref.rmsnorm(y, NULL, xp, w, N, C, 1e-6f);
        l[s] = dotp(y, dout, (size_t)N * C);
    }
    double fd = (l[0] - l[1]) / (2 * h), an = dotp(rdx, u, (size_t)N * C);
    CHECK_MSG(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-3, "rmsnorm reference vs finite differences: %g vs %g", an, fd);
    free(u); free(xp); free(y);
    free(x); free(w); free(dout); free(ry); free(rr); free(rdx); free(rdw);
}

static void test_rope(void) {
    for (int inter = 0; inter < 2; inter++) {
        rope_table r;
        CHECK(rope_table_init(&r, 12, 40, inter, 10000.0f, 0, 1.0f, 40, 32.0f, 1.0f) == 0);
        int N = 9, H = 3, stride = H * 20, hs = 20; // rope on the last 12 of each head's 20 floats
        int pos[9] = {0, 1, 5, 39, 17, 17, 2, 30, 11};
        float *x = rnd((size_t)N * stride, 1), *want = dup(x, (size_t)N * stride);
        fg_backend_ref.rope(want + 8, N, H, stride, hs, pos, &r, 0);
        for (int b = 0; b < NB; b++) {
            const fg_backend *be = backends[b];
            float *y = dup(x, (size_t)N * stride);
            be->rope(y + 8, N, H, stride, hs, pos, &r, 0);
            expect("rope", be, y, want, (size_t)N * stride, 1e-6);
            be->rope(y + 8, N, H, stride, hs, pos, &r, 1); // the inverse undoes it
            expect("rope inverse", be, y, x, (size_t)N * stride, 1e-6);
            free(y);
        }
        free(x); free(want);
        rope_table_free(&r);
    }
}

static void test_attention(void) {
    static const int cfg[][6] = {{1, 5, 2, 2, 8, 8}, {2, 19, 4, 2, 12, 7}, {1, 70, 2, 1, 16, 16}}; // B T H Hkv Dk Dv
    for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
        int B = cfg[ci][0], T = cfg[ci][1], H = cfg[ci][2], Hkv = cfg[ci][3], Dk = cfg[ci][4], Dv = cfg[ci][5];
        int sq = H * Dk, sk = Hkv * Dk, sv = Hkv * Dv;
        size_t nq = (size_t)B * T * sq, nk = (size_t)B * T * sk, nv = (size_t)B * T * sv, no = (size_t)B * T * H * Dv;
        float scale = 1.0f / sqrtf((float)Dk);
        float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nv, 1), *dout = rnd(no, 1);
        float *ro = zeros(no), *rl = zeros((size_t)B * H * T), *rdq = zeros(nq), *rdk = zeros(nk), *rdv = zeros(nv);
        fg_backend_ref.attention(ro, rl, q, k, v, B, T, H, Hkv, Dk, Dv, sq, sk, sv, scale);
        fg_backend_ref.attention_backward(rdq, rdk, rdv, dout, q, k, v, rl, B, T, H, Hkv, Dk, Dv, sq, sk, sv, scale);
        for (int b = 0; b < NB; b++) {
            const fg_backend *be = backends[b];
            float *o = zeros(no), *l = zeros((size_t)B * H * T), *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nv);
            be->attention(o, l, q, k, v, B, T, H, Hkv, Dk, Dv, sq, sk, sv, scale);
            expect("attention", be, o, ro, no, 2e-5);
            expect("attention lse", be, l, rl, (size_t)B * H * T, 2e-5);
            be->attention_backward(dq, dk, dv, dout, q, k, v, rl, B, T, H, Hkv, Dk, Dv, sq, sk, sv, scale);
            expect("attention_backward dq", be, dq, rdq, nq, 2e-5);
            expect("attention_backward dk", be, dk, rdk, nk, 2e-5);
            expect("attention_backward dv", be, dv, rdv, nv, 2e-5);
            free(o); free(l); free(dq); free(dk); free(dv);
        }
        // the reference's gradients against finite differences along random directions of q, k, v
        float *in[3] = {q, k, v}, *g[3] = {rdq, rdk, rdv};
        size_t n[3] = {nq, nk, nv};
        for (int which = 0; which < 3; which++) {
            float *u = rnd(n[which], 1), *keep = dup(in[which], n[which]), *o = zeros(no);
            double h = 1e-3, L[2];
            for (int s = 0; s < 2; s++) {
                for (size_t i = 0; i < n[which]; i++) in[which][i] = keep[i] + (float)(s ? -h : h) * u[i];
                fg_backend_ref.attention(o, NULL, q, k, v, B, T, H, Hkv, Dk, Dv, sq, sk, sv, scale);
                L[s] = dotp(o, dout, no);
            }
            memcpy(in[which], keep, sizeof(float) * n[which]);
            double fd = (L[0] - L[1]) / (2 * h), an = dotp(g[which], u, n[which]);
            CHECK_MSG(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-3, "attention reference d%c vs finite differences: %g vs %g",
                      "qkv"[which], an, fd);
            free(u); free(keep); free(o);
        }
        free(q); free(k); free(v); free(dout); free(ro); free(rl); free(rdq); free(rdk); free(rdv);
    }
}

// ---- latent_attention, full_attention, attn_scratch (paged caches) ----------------------------

// A random arena of NBLK cache blocks of FG_KV_BLOCK positions for 2 layers (layer 1 is read, so
// the layer offset counts), and NSEQ sequences whose block tables are shuffled block ids.
#define NBLK 24
#define NSEQ 4
typedef struct { int pos[64]; const int *tab[64]; int n; } rowset;

static void paged_case(const char *what, int latent, int bf16, int wtype, int form, const rowset *rs) {
    int H = latent ? 3 : 4, Hkv = latent ? 3 : 2, Dn = 16, Dr = 8, Dv = latent ? 12 : 10, Rkv = wtype == FG_Q8_0 ? 64 : 40, Dk = latent ? Dn + Dr : 12;
    int kw = latent ? Rkv + Dr : Hkv * Dk, vw = latent ? 0 : Hkv * Dv, B = FG_KV_BLOCK;
    size_t blk_elems = (size_t)2 * B * (kw + vw), total = NBLK * blk_elems;
    float *arena = rnd(total, 1);
    uint16_t *arena16 = malloc(sizeof(uint16_t) * total);
    for (size_t i = 0; i < total; i++) arena16[i] = fg_f32_to_bf16(arena[i]);
    size_t off = (size_t)B * (kw + vw);
    fg_kv_pages kv = {bf16 ? (const void *)arena16 : arena, bf16, B, kw, vw, blk_elems, off, off + (size_t)B * kw};
    size_t nw = (size_t)H * (Dn + Dv) * Rkv, rb = fg_qrow_bytes(wtype, Rkv);
    float *wf = rnd(nw, 0.2f);
    uint8_t *wq = malloc(rb * (size_t)H * (Dn + Dv));
    for (int r = 0; r < H * (Dn + Dv); r++) fg_quantize_row(wq + r * rb, wf + (size_t)r * Rkv, Rkv, wtype);
    int n = rs->n;
    float *q = rnd((size_t)n * H * Dk, 1), *ref = zeros((size_t)n * H * Dv);
    fg_attn_limits lim = {64, NBLK * B / NSEQ, 4, latent, H, Dn, Dr, latent ? Dv : 0, Rkv, Dk, Dv, wtype == FG_F32};
    int prec = wtype == FG_F32 ? FG_F32 : FG_BF16;
    fg_attn_call a = {n, rs->pos, rs->tab, H, Hkv, Dk, Dv, latent ? Dn : 0, latent ? Dr : 0, latent ? Rkv : 0,
                      1.0f / sqrtf((float)Dk), {wtype, wq, NULL}, form, prec, &lim, NULL};
    for (int b = 0; b < NB; b++) {
        const fg_backend *be = backends[b];
        float *y = b ? zeros((size_t)n * H * Dv) : ref;
        a.scratch = malloc(be->attn_scratch(&lim));
        if (latent) be->latent_attention(y, q, &kv, &a);
        else be->full_attention(y, q, &kv, &a);
        char msg[160];
        snprintf(msg, sizeof msg, "%s attention, %s (%s cache, %s wkv_b, form %d)", latent ? "latent" : "full", what, bf16 ? "bf16" : "f32", fg_dtype_name(wtype), form);
        // bf16 products (the prefill forms with non-fp32 weights) round q, k and p to bf16
        if (b) expect(msg, be, y, ref, (size_t)n * H * Dv, prec == FG_BF16 ? 1e-2 : 2e-5);
        free(a.scratch);
        if (b) free(y);
    }
    free(arena); free(arena16); free(wf); free(wq); free(q); free(ref);
}

static void test_paged_attention(void) {
    // block tables: sequence s owns blocks perm[s*6 .. s*6+5] (6 blocks: up to 192 positions)
    static int tab[NSEQ][NBLK / NSEQ];
    int perm[NBLK];
    for (int i = 0; i < NBLK; i++) perm[i] = i;
    for (int i = NBLK - 1; i > 0; i--) { int j = (int)fg_rng_below(&rng, (uint64_t)i + 1), t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
    for (int s = 0; s < NSEQ; s++)
        for (int k = 0; k < NBLK / NSEQ; k++) tab[s][k] = perm[s * (NBLK / NSEQ) + k];
    rowset one_long = {{150}, {tab[2]}, 1};                                  // one token, long context: the span kernels
    rowset one_short = {{9}, {tab[1]}, 1};                                   // one token, short context
    rowset decode = {{0, 37, 191, 100, 64}, {tab[0], tab[1], tab[2], tab[3], tab[0]}, 5}; // a batched step
    rowset prefill = {{0}, {0}, 0};                                          // a chunk of 20 rows + 2 decode rows
    for (int i = 0; i < 20; i++) { prefill.pos[i] = 45 + i; prefill.tab[i] = tab[3]; }
    prefill.pos[20] = 70; prefill.tab[20] = tab[0];
    prefill.pos[21] = 3; prefill.tab[21] = tab[1];
    prefill.n = 22;
    rowset fresh = {{0}, {0}, 0};                                            // a prompt from position 0 (expanded form wins)
    for (int i = 0; i < 40; i++) { fresh.pos[i] = i; fresh.tab[i] = tab[2]; }
    fresh.n = 40;
    const rowset *sets[] = {&one_long, &one_short, &decode, &prefill, &fresh};
    const char *names[] = {"1 row at 150", "1 row at 9", "5 decode rows", "20-row run + 2 rows", "40-row prompt"};
    for (int bf = 0; bf < 2; bf++)
        for (size_t k = 0; k < sizeof sets / sizeof *sets; k++) {
            paged_case(names[k], 1, bf, FG_F32, FG_MLA_AUTO, sets[k]);
            paged_case(names[k], 1, bf, FG_BF16, FG_MLA_AUTO, sets[k]);
            if (k >= 3) {
                paged_case(names[k], 1, bf, FG_F32, FG_MLA_ABSORBED, sets[k]);
                paged_case(names[k], 1, bf, FG_F32, FG_MLA_EXPANDED, sets[k]);
                paged_case(names[k], 1, bf, FG_Q8_0, FG_MLA_AUTO, sets[k]);
            }
            paged_case(names[k], 0, bf, FG_F32, 0, sets[k]); // full cache, 4 heads over 2
        }
}

static void test_swiglu(void) {
    int N = 5, F = 37;
    size_t n = (size_t)N * F;
    float *h1 = rnd(n, 2), *h3 = rnd(n, 1), *dout = rnd(n, 1);
    float *ry = zeros(n), *rd1 = zeros(n), *rd3 = zeros(n);
    fg_backend_ref.swiglu(ry, h1, h3, N, F);
    fg_backend_ref.swiglu_backward(rd1, rd3, dout, h1, h3, N, F);
    for (int b = 0; b < NB; b++) {
        const fg_backend *be = backends[b];
        float *y = zeros(n), *d1 = zeros(n), *d3 = zeros(n);
        be->swiglu(y, h1, h3, N, F);
        expect("swiglu", be, y, ry, n, 2e-6);
        be->swiglu_backward(d1, d3, dout, h1, h3, N, F);
        expect("swiglu_backward dh1", be, d1, rd1, n, 2e-6);
        expect("swiglu_backward dh3", be, d3, rd3, n, 2e-6);
        free(y); free(d1); free(d3);
    }
    float *u = rnd(n, 1), *p = zeros(n), *y = zeros(n);
    double h = 1e-3, L[2];
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < n; i++) p[i] = h1[i] + (float)(s ? -h : h) * u[i];
        fg_backend_ref.swiglu(y, p, h3, N, F);
        L[s] = dotp(y, dout, n);
    }
    double fd = (L[0] - L[1]) / (2 * h), an = dotp(rd1, u, n);
    CHECK_MSG(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-3, "swiglu reference dh1 vs finite differences: %g vs %g", an, fd);
    free(u); free(p); free(y);
    free(h1); free(h3); free(dout); free(ry); free(rd1); free(rd3);
}

static void test_moe(void) {
    int N = 11, K = 3, C = 21, S = N * K;
    float *x = rnd((size_t)N * C, 1), *ey = rnd((size_t)S * C, 1), *wts = rnd((size_t)N * K, 1);
    int slot_tok[33], slot_of[33];
    for (int s = 0; s < S; s++) { slot_tok[s] = (int)fg_rng_below(&rng, N); slot_of[s] = (s * 7) % S; } // a permutation
    float *rxe = zeros((size_t)S * C), *rout = rnd((size_t)N * C, 1), *out0 = dup(rout, (size_t)N * C);
    fg_backend_ref.moe_gather(rxe, x, slot_tok, S, C);
    fg_backend_ref.moe_combine(rout, ey, wts, slot_of, N, K, C);
    for (int s = 0; s < S; s++) CHECK(rxe[(size_t)s * C + 3] == x[(size_t)slot_tok[s] * C + 3]); // the definition
    for (int b = 0; b < NB; b++) {
        const fg_backend *be = backends[b];
        float *xe = zeros((size_t)S * C), *out = dup(out0, (size_t)N * C);
        be->moe_gather(xe, x, slot_tok, S, C);
        expect("moe_gather", be, xe, rxe, (size_t)S * C, 0);
        be->moe_combine(out, ey, wts, slot_of, N, K, C);
        expect("moe_combine", be, out, rout, (size_t)N * C, 1e-6);
        free(xe); free(out);
    }
    free(x); free(ey); free(wts); free(rxe); free(rout); free(out0);
}

static void test_xent(void) {
    int N = 6, V = 53;
    float *lg = rnd((size_t)N * V, 3);
    int32_t tg[6] = {0, 52, -1, 7, 7, 30};
    float *rp = zeros((size_t)N * V), *rd = zeros((size_t)N * V);
    int rc = 0;
    double rl = fg_backend_ref.xent(rp, lg, tg, N, V, &rc);
    fg_backend_ref.xent_backward(rd, rp, tg, N, V, 0.5f);
    CHECK(rc == 5);
    for (int b = 0; b < NB; b++) {
        const fg_backend *be = backends[b];
        float *p = dup(lg, (size_t)N * V), *d = zeros((size_t)N * V);
        int cnt = 0;
        double l = be->xent(p, p, tg, N, V, &cnt); // in place, as the model calls it
        CHECK_MSG(cnt == rc && fabs(l - rl) <= 1e-5 * fabs(rl), "xent [%s]: %g vs %g", be->name, l, rl);
        expect("xent probs", be, p, rp, (size_t)N * V, 2e-6);
        be->xent_backward(d, rp, tg, N, V, 0.5f);
        expect("xent_backward", be, d, rd, (size_t)N * V, 2e-6);
        free(p); free(d);
    }
    // d(mean loss)/d(logit) against finite differences of the reference's loss, one logit per row
    for (int n = 0; n < N; n++) {
        int j = (n * 11) % V;
        float *p = dup(lg, (size_t)N * V), *tmp = zeros((size_t)N * V);
        double h = 1e-2, L[2];
        int c;
        for (int s = 0; s < 2; s++) {
            p[(size_t)n * V + j] = lg[(size_t)n * V + j] + (float)(s ? -h : h);
            L[s] = fg_backend_ref.xent(tmp, p, tg, N, V, &c);
        }
        double fd = (L[0] - L[1]) / (2 * h), an = rd[(size_t)n * V + j] / 0.5 / rc; // backward scaled by 0.5, mean over rc
        CHECK_MSG(fabs(fd - an) <= 2e-2 * fabs(an) + 1e-4, "xent reference gradient row %d: %g vs %g", n, an, fd);
        free(p); free(tmp);
    }
    free(lg); free(rp); free(rd);
}

static void test_adamw(void) {
    size_t n = 70001; // above the fast backend's threading threshold, with a tail
    float *w = rnd(n, 1), *m = rnd(n, 0.1f), *v = zeros(n), *g = rnd(n, 1);
    for (size_t i = 0; i < n; i++) v[i] = 0.01f * (1 + (float)(i % 7));
    fg_adamw_k k = {0.9f, 0.95f, 1e-8f, 1e-3f / 0.1f, sqrtf(1 - 0.95f), 1 - 1e-3f * 0.1f};
    float *rw = dup(w, n), *rm = dup(m, n), *rv = dup(v, n);
    fg_backend_ref.adamw(rw, rm, rv, g, n, &k);
    // the definition at one index, written out
    double mm = 0.9 * m[5] + 0.1 * g[5], vv = 0.95 * v[5] + 0.05 * (double)g[5] * g[5];
    double ww = w[5] * (double)k.decay - k.step * mm / (sqrt(vv) / k.bc2_sqrt + k.eps);
    CHECK_MSG(fabs(ww - rw[5]) <= 1e-5 * fabs(ww) + 1e-7, "adamw reference: %g vs %g", rw[5], ww);
    for (int b = 0; b < NB; b++) {
        const fg_backend *be = backends[b];
        float *bw = dup(w, n), *bm = dup(m, n), *bv = dup(v, n);
        be->adamw(bw, bm, bv, g, n, &k);
        expect("adamw w", be, bw, rw, n, 0);
        expect("adamw m", be, bm, rm, n, 0);
        expect("adamw v", be, bv, rv, n, 0);
        free(bw); free(bm); free(bv);
    }
    free(w); free(m); free(v); free(g); free(rw); free(rm); free(rv);
}

// ---- the latent decode's vector kernels (ops.h) against double loops -------------------------
// Block sizes around the 4 x 4 register blocks (and the 64-column pass), widths with vector
// tails, row strides wider than the row.
static void test_vector_rows(void) {
    static const int na_s[] = {1, 2, 3, 4, 5, 6, 7, 8, 13}, nb_s[] = {1, 3, 4, 7, 16, 17, 37}, n_s[] = {7, 16, 128, 160, 171};
    char what[128];
    for (size_t ia = 0; ia < sizeof na_s / sizeof na_s[0]; ia++)
        for (size_t ib = 0; ib < sizeof nb_s / sizeof nb_s[0]; ib++)
            for (size_t in = 0; in < sizeof n_s / sizeof n_s[0]; in++) {
                int na = na_s[ia], nb = nb_s[ib], n = n_s[in];
                long ldq = n + 3, ldx = n + 5, ldo = nb + 2, ldy = n + 1, ldp = nb + 4;
                float *q = rnd((size_t)na * ldq, 1), *x = rnd((size_t)nb * ldx, 1), *p = rnd((size_t)na * ldp, 1);
                float *out = rnd((size_t)na * ldo, 1), *ref = dup(out, (size_t)na * ldo);
                float *y = rnd((size_t)na * ldy, 1), *yref = dup(y, (size_t)na * ldy);
                fg_vdot_block(out, ldo, q, ldq, na, x, ldx, nb, n);
                for (int a = 0; a < na; a++) // only out[a][b < nb] is written; the padding keeps its value
                    for (int b = 0; b < nb; b++) ref[a * ldo + b] = (float)dotp(q + a * ldq, x + b * ldx, (size_t)n);
                snprintf(what, sizeof what, "fg_vdot_block %d x %d rows of %d", na, nb, n);
                expect(what, &fg_backend_cpu, out, ref, (size_t)na * ldo, 2e-6);
                long pa = ldp, pb = 1; // p row-major, or (every other case) column-major
                if ((ia + ib) % 2) { pa = 1; pb = na; }
                fg_vaxpy_block(y, ldy, na, p, pa, pb, x, ldx, nb, n);
                for (int a = 0; a < na; a++)
                    for (int i = 0; i < n; i++) {
                        double acc = yref[a * ldy + i];
                        for (int b = 0; b < nb; b++) acc += (double)p[a * pa + b * pb] * x[b * ldx + i];
                        yref[a * ldy + i] = (float)acc;
                    }
                snprintf(what, sizeof what, "fg_vaxpy_block %d x %d rows of %d", na, nb, n);
                expect(what, &fg_backend_cpu, y, yref, (size_t)na * ldy, 2e-6);
                free(q); free(x); free(p); free(out); free(ref); free(y); free(yref);
            }
    for (size_t in = 0; in < sizeof n_s / sizeof n_s[0]; in++) {
        int n = n_s[in];
        float *x = rnd((size_t)n, 1), *e = dup(x, (size_t)n), *s = dup(x, (size_t)n);
        double sum = 0;
        float got = fg_exp_sum(e, n, 0.5f);
        for (int i = 0; i < n; i++) {
            double want = exp((double)x[i] - 0.5);
            sum += want;
            CHECK_MSG(fabs(e[i] - want) <= 2e-6 * want, "fg_exp_sum n=%d: exp(%g) = %g, want %g", n, x[i] - 0.5, e[i], want);
        }
        CHECK_MSG(fabs(got - sum) <= 1e-5 * sum, "fg_exp_sum n=%d: sum %g, want %g", n, got, sum);
        // fg_scale_max: scaled in place, the largest of them and the given floor
        double mx = -1e30;
        for (int i = 0; i < n; i++) mx = fmax(mx, (double)x[i] * 0.37f);
        float m = fg_scale_max(s, n, 0.37f, -1e30f);
        CHECK_MSG(fabs(m - mx) <= 1e-6 * fabs(mx), "fg_scale_max n=%d: %g, want %g", n, m, mx);
        for (int i = 0; i < n; i++) CHECK_MSG(s[i] == x[i] * 0.37f, "fg_scale_max n=%d: p[%d] = %g, want %g", n, i, s[i], x[i] * 0.37f);
        CHECK_MSG(fg_scale_max(s, n, 1.0f, 5.0f) == 5.0f, "fg_scale_max n=%d: the floor 5 was not returned", n);
        fg_vscale(s, n, -2.0f);
        for (int i = 0; i < n; i++) CHECK_MSG(s[i] == x[i] * 0.37f * -2.0f, "fg_vscale n=%d: p[%d] = %g", n, i, s[i]);
        free(x); free(e); free(s);
    }
}

// Lane space (ops.h): every head count's layout (r = 16/H lanes per head, or one lane per head
// padded to 16), scores against double loops, the padding lanes zero, and one online-softmax step
// per lane against its formula, from nothing (m = -inf) and from a running state.
static void test_lanes(void) {
    static const int H_s[] = {1, 2, 3, 4, 8, 12, 16, 32}, nb_s[] = {1, 3, 8, 13, 32}, n_s[] = {7, 16, 160, 171};
    char what[128];
    for (size_t ih = 0; ih < sizeof H_s / sizeof H_s[0]; ih++)
        for (size_t in = 0; in < sizeof n_s / sizeof n_s[0]; in++)
            for (size_t ib = 0; ib < sizeof nb_s / sizeof nb_s[0]; ib++) {
                int H = H_s[ih], n = n_s[in], nb = nb_s[ib], nl, r;
                fg_lanes(H, &nl, &r);
                CHECK_MSG(nl % 16 == 0 && nl >= H * r && (r == 1 || H * r == 16), "fg_lanes(%d): nl %d r %d", H, nl, r);
                long ldq = n + 3, ldx = n + 5;
                float *q = rnd((size_t)H * ldq, 1), *x = rnd((size_t)nb * ldx, 1), *qt = rnd((size_t)(n + 16) * nl, 1);
                float *sc = rnd((size_t)nb * nl, 1), *ref = dup(sc, (size_t)nb * nl);
                float *smax = rnd((size_t)nl, 1);
                fg_lane_q(qt, q, ldq, H, n);
                fg_lane_scores(sc, smax, qt, H, x, ldx, nb, n, x, (int)((size_t)nb * ldx * sizeof(float) / 64)); // fetching changes nothing
                for (int u = 0; u < nb; u++)
                    for (int l = 0; l < nl; l++)
                        ref[u * nl + l] = l / r < H ? (float)dotp(q + (l / r) * ldq, x + u * ldx, (size_t)n) : 0.0f;
                snprintf(what, sizeof what, "fg_lane_scores H=%d, %d rows of %d", H, nb, n);
                expect(what, &fg_backend_cpu, sc, ref, (size_t)nb * nl, 2e-6);
                for (int u = 0; u < nb; u++)
                    for (int l = H * r; l < nl; l++) CHECK_MSG(sc[u * nl + l] == 0, "%s: padding lane %d is %g", what, l, sc[u * nl + l]);
                for (int l = 0; l < nl; l++) {
                    float top = -INFINITY;
                    for (int u = 0; u < nb; u++) top = fmaxf(top, sc[u * nl + l]);
                    CHECK_MSG(smax[l] == top, "%s: lane %d's largest score %g, want %g", what, l, smax[l], top);
                }
                for (int fresh = 0; fresh < 4; fresh++) { // from nothing or a running state, block max given or not
                    float *m = rnd((size_t)nl, 1), *lsum = rnd((size_t)nl, 1), *rs = rnd((size_t)nl, 1), *s2 = dup(sc, (size_t)nb * nl);
                    float *m0 = dup(m, (size_t)nl), *l0 = dup(lsum, (size_t)nl), scale = 0.3f;
                    for (int l = 0; l < nl; l++) {
                        if (fresh & 1) { m[l] = m0[l] = -INFINITY; lsum[l] = l0[l] = 0; } else lsum[l] = l0[l] = fabsf(l0[l]);
                    }
                    fg_lane_softmax(s2, nl, nb, scale, fresh & 2 ? smax : NULL, m, lsum, rs);
                    for (int l = 0; l < nl; l++) {
                        double mx = m0[l], sum = 0;
                        for (int u = 0; u < nb; u++) mx = fmax(mx, (double)(sc[u * nl + l] * scale));
                        for (int u = 0; u < nb; u++) {
                            double e = exp((double)(sc[u * nl + l] * scale) - mx);
                            sum += e;
                            CHECK_MSG(fabs(s2[u * nl + l] - e) <= 2e-6 * e, "fg_lane_softmax %s lane %d row %d: %g, want %g", what, l, u, s2[u * nl + l], e);
                        }
                        double rr = (fresh & 1) ? 0 : exp(m0[l] - mx), lw = l0[l] * rr + sum;
                        CHECK_MSG(m[l] == (float)mx, "fg_lane_softmax %s lane %d: max %g, want %g", what, l, m[l], mx);
                        CHECK_MSG((fresh & 1) ? rs[l] <= 1e-30f : fabs(rs[l] - rr) <= 2e-6 * rr, "fg_lane_softmax %s lane %d: rescale %g, want %g", what, l, rs[l], rr);
                        CHECK_MSG(fabs(lsum[l] - lw) <= 1e-5 * lw, "fg_lane_softmax %s lane %d: sum %g, want %g", what, l, lsum[l], lw);
                    }
                    free(m); free(lsum); free(rs); free(s2); free(m0); free(l0);
                }
                free(q); free(x); free(qt); free(sc); free(ref); free(smax);
            }
}

// FP8 E4M3 weights with 128 x 128 block scales (DeepSeek-V3's layout): the fast backend's matrix-vector
// product and its tiled GEMM against the reference, which dequantises through the dtype table's
// E4M3 decoder (independent of fp8.c's half-precision widening). Bytes are random except NaN
// (0x7f / 0xff), so every finite code and the subnormals are read; shapes leave partial blocks.
static void test_matmul_fp8(void) {
    static const int shapes[][3] = {{1, 300, 200}, {1, 128, 129}, {3, 200, 150}, {20, 256, 140}, {1, 2048, 520}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int N = shapes[si][0], IN = shapes[si][1], OUT = shapes[si][2];
        int nbr = (OUT + 127) / 128, nbc = (IN + 127) / 128;
        uint8_t *w = malloc((size_t)OUT * IN);
        float *sc = malloc(sizeof(float) * nbr * nbc), *x = rnd((size_t)N * IN, 1), *bias = rnd(OUT, 1);
        for (size_t i = 0; i < (size_t)OUT * IN; i++) {
            uint8_t b = (uint8_t)fg_rng_below(&rng, 256);
            w[i] = (b & 0x7f) == 0x7f ? 0x7e : b;
        }
        for (int i = 0; i < nbr * nbc; i++) sc[i] = 1e-3f * (1 + fg_rng_uniform(&rng));
        fg_wref ref = {FG_F8_E4M3, w, sc};
        float *want = zeros((size_t)N * OUT), *got = zeros((size_t)N * OUT);
        fg_backend_ref.matmul(NULL, want, x, ref, bias, N, IN, OUT, FG_F32);
        fg_backend_cpu.matmul(NULL, got, x, ref, bias, N, IN, OUT, FG_F32);
        char what[96];
        snprintf(what, sizeof what, "matmul fp8 %dx%dx%d", N, IN, OUT);
        expect(what, &fg_backend_cpu, got, want, (size_t)N * OUT, N == 1 ? 2e-5 : 1e-2); // more rows: bf16 products
        free(w); free(sc); free(x); free(bias); free(want); free(got);
    }
}

int main(void) {
    fg_rng_seed(&rng, 1234);
    test_matmul();
    test_matmul_fp8();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_paged_attention();
    test_swiglu();
    test_moe();
    test_xent();
    test_adamw();
    test_vector_rows();
    test_lanes();
    // Every entry of the table is exercised above; a new entry must be added here (this counts them).
    size_t entries = (sizeof(fg_backend) - sizeof(const char *)) / sizeof(void (*)(void));
    CHECK_MSG(entries == 18, "fg_backend has %zu operations; test_backend.c covers 18: add the new one's test", entries);
    printf("backends %s and %s: every operation matches the reference (forward and gradient); the reference's "
           "gradients match finite differences\n", fg_backend_ref.name, fg_backend_cpu.name);
    return TEST_DONE();
}
