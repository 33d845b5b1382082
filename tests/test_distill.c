// test_distill.c: the distillation losses against two oracles (an independent float64 implementation
// differentiated by finite differences, and the PyTorch reference tests/ref/distill_ref.py), the
// dlogits entry point of the model, and the teacher cache (round trip, corruption).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "distill/distill.h"
#include "formats/checkpoint.h"
#include "model/model.h"
#include "ops/quant.h"
#include "util.h"
#include "test.h"

// ---- float64 oracle, straight from the definitions (no shared code with loss.c) -------------
static double kl_term(double a, double la, double lb) { return a > 0 ? a * (la - lb) : 0; }

static double oracle_row(const fg_distill_loss_opts *o, const double *z, const double *t, const int32_t *ids, const double *lpk,
                         double lt, int k, int y, int V) {
    double T = o->temperature;
    double *lq = malloc(sizeof(double) * V), mx = -INFINITY, s = 0, s1 = 0;
    for (int j = 0; j < V; j++) mx = fmax(mx, z[j]);
    for (int j = 0; j < V; j++) { s += exp((z[j] - mx) / T); s1 += exp(z[j] - mx); }
    for (int j = 0; j < V; j++) lq[j] = (z[j] - mx) / T - log(s);
    double ce = mx + log(s1) - z[y];
    int nb = t ? V : k + 1;
    double *bp = malloc(sizeof(double) * nb), *bq = malloc(sizeof(double) * nb);
    if (t) {
        double tm = -INFINITY, ts = 0;
        for (int j = 0; j < V; j++) tm = fmax(tm, t[j]);
        for (int j = 0; j < V; j++) ts += exp((t[j] - tm) / T);
        for (int j = 0; j < V; j++) { bp[j] = (t[j] - tm) / T - log(ts); bq[j] = lq[j]; }
    } else {
        double tail = 0;
        for (int j = 0; j < V; j++) {
            int in = 0;
            for (int i = 0; i < k; i++) in |= ids[i] == j;
            if (!in) tail += exp(lq[j]);
        }
        for (int i = 0; i < k; i++) { bp[i] = lpk[i]; bq[i] = lq[ids[i]]; }
        bp[k] = lt; bq[k] = log(tail);
    }
    double D = 0;
    for (int b = 0; b < nb; b++) {
        double lp = bp[b], lqb = bq[b], p = exp(lp), q = exp(lqb), l = o->lambda, be = o->beta;
        switch (o->div) {
        case FG_DIV_FKL: D += kl_term(p, lp, lqb); break;
        case FG_DIV_RKL: D += kl_term(q, lqb, fmax(lp, -1000)); break;
        case FG_DIV_SKL: D += kl_term(p, lp, log(l * p + (1 - l) * q)); break;
        case FG_DIV_SRKL: D += kl_term(q, lqb, log((1 - l) * p + l * q)); break;
        default: { double lm = log(be * p + (1 - be) * q); D += be * kl_term(p, lp, lm) + (1 - be) * kl_term(q, lqb, lm); }
        }
    }
    free(lq); free(bp); free(bq);
    return o->alpha * ce + (1 - o->alpha) * T * T * D;
}

static double oracle(const fg_distill_loss_opts *o, const double *z, const double *t, const int32_t *ids, const double *lpk,
                     const double *lt, int k, const int32_t *y, int N, int V) {
    double sum = 0;
    int cnt = 0;
    for (int n = 0; n < N; n++) {
        if (y[n] < 0) continue;
        sum += oracle_row(o, z + (size_t)n * V, t ? t + (size_t)n * V : NULL, ids ? ids + (size_t)n * k : NULL,
                          lpk ? lpk + (size_t)n * k : NULL, lt ? lt[n] : 0, k, y[n], V);
        cnt++;
    }
    return sum / cnt;
}

static const char *find_python(void) {
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0) return "/usr/bin/python3";
    if (system("python3 -c 'import torch' >/dev/null 2>&1") == 0) return "python3";
    return NULL;
}

static void put(FILE *f, double v) { fwrite(&v, 8, 1, f); }

// Runs the PyTorch reference; returns its loss and fills g (N*V); 0 on success.
static int torch_ref(const char *py, const fg_distill_loss_opts *o, const float *z, const float *t, const int32_t *ids,
                     const float *lp, const float *lt, int k, const int32_t *y, int N, int V, double *loss, double *g) {
    char in[] = "/tmp/fg_distill_inXXXXXX", out[64], cmd[512];
    int fd = mkstemp(in);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "wb");
    put(f, N); put(f, V);
    for (int i = 0; i < N * V; i++) put(f, z[i]);
    for (int i = 0; i < N; i++) put(f, y[i]);
    if (t) for (int i = 0; i < N * V; i++) put(f, t[i]);
    else {
        for (int i = 0; i < N * k; i++) put(f, ids[i]);
        for (int i = 0; i < N * k; i++) put(f, lp[i]);
        for (int i = 0; i < N; i++) put(f, lt[i]);
    }
    fclose(f);
    snprintf(out, sizeof out, "%s.out", in);
    snprintf(cmd, sizeof cmd, "%s tests/ref/distill_ref.py %s %s %s %.9g %.9g %.9g %.9g %d", py, in, out,
             fg_divergence_name(o->div), o->temperature, o->alpha, o->lambda, o->beta, t ? 0 : k);
    int rc = system(cmd);
    unlink(in);
    if (rc) { unlink(out); return -1; }
    f = fopen(out, "rb");
    rc = !f || fread(loss, 8, 1, f) != 1 || fread(g, 8, (size_t)N * V, f) != (size_t)N * V;
    if (f) fclose(f);
    unlink(out);
    return rc ? -1 : 0;
}

static void check_loss(const char *py) {
    enum { N = 5, V = 23, K = 6 };
    fg_rng r;
    fg_rng_seed(&r, 7);
    float z[N * V], t[N * V], d[N * V], lp[N * K], lt[N];
    int32_t y[N] = {3, -1, 0, 22, 7}, ids[N * K];
    double zd[N * V], td[N * V], lpd[N * K], ltd[N], g[N * V];
    for (int i = 0; i < N * V; i++) { z[i] = 2.5f * (fg_rng_uniform(&r) - 0.5f) * 2; t[i] = 4.0f * (fg_rng_uniform(&r) - 0.5f) * 2; }
    const float temps[] = {1.0f, 2.0f};
    for (int ti = 0; ti < 2; ti++)
        for (int div = 0; div <= FG_DIV_JSD; div++)
            for (int topk = 0; topk < 2; topk++) {
                fg_distill_loss_opts o = {div, temps[ti], 0.3f, 0.2f, 0.4f};
                // the top-k teacher: the K largest teacher logits at T, tail = the rest's mass
                for (int n = 0; n < N; n++) {
                    const float *tr = t + n * V;
                    double mx = -INFINITY, s = 0;
                    for (int j = 0; j < V; j++) mx = fmax(mx, tr[j]);
                    for (int j = 0; j < V; j++) s += exp((tr[j] - mx) / o.temperature);
                    unsigned char used[V];
                    memset(used, 0, sizeof used);
                    double tail = 1;
                    for (int i = 0; i < K; i++) {
                        int best = -1;
                        for (int j = 0; j < V; j++) if (!used[j] && (best < 0 || tr[j] > tr[best])) best = j;
                        used[best] = 1;
                        ids[n * K + i] = best;
                        lp[n * K + i] = (float)((tr[best] - mx) / o.temperature - log(s));
                        tail -= exp(lp[n * K + i]);
                    }
                    lt[n] = (float)log(tail);
                }
                for (int i = 0; i < N * V; i++) { zd[i] = z[i]; td[i] = t[i]; }
                for (int i = 0; i < N * K; i++) lpd[i] = lp[i];
                for (int i = 0; i < N; i++) ltd[i] = lt[i];
                fg_distill_loss_out out;
                int rc = topk ? fg_distill_loss_topk(&o, z, ids, lp, lt, K, y, N, V, 1.0f, d, &out)
                              : fg_distill_loss(&o, z, t, y, N, V, 1.0f, d, &out);
                CHECK_MSG(rc == 0, "%s", fg_last_error());
                CHECK(out.count == 4);
                double L = oracle(&o, zd, topk ? NULL : td, topk ? ids : NULL, lpd, ltd, K, y, N, V);
                CHECK_MSG(fabs(out.loss - L) < 1e-9 * fmax(1, fabs(L)), "%s topk %d T %g: loss %.12g vs oracle %.12g",
                          fg_divergence_name(div), topk, o.temperature, out.loss, L);
                // finite differences of the float64 oracle (central, h = 1e-5)
                double num = 0, den = 0;
                for (int i = 0; i < N * V; i++) {
                    double keep = zd[i], h = 1e-5;
                    zd[i] = keep + h;
                    double lp1 = oracle(&o, zd, topk ? NULL : td, topk ? ids : NULL, lpd, ltd, K, y, N, V);
                    zd[i] = keep - h;
                    double lm1 = oracle(&o, zd, topk ? NULL : td, topk ? ids : NULL, lpd, ltd, K, y, N, V);
                    zd[i] = keep;
                    double fd = (lp1 - lm1) / (2 * h);
                    num += (d[i] - fd) * (d[i] - fd); den += fd * fd;
                }
                CHECK_MSG(sqrt(num / den) < 1e-6, "%s topk %d T %g: gradient vs finite differences rel err %.3g",
                          fg_divergence_name(div), topk, o.temperature, sqrt(num / den));
                if (py) {
                    double tl;
                    if (torch_ref(py, &o, z, topk ? NULL : t, ids, lp, lt, K, y, N, V, &tl, g)) { CHECK_MSG(0, "reference failed"); continue; }
                    float gf[N * V];
                    for (int i = 0; i < N * V; i++) gf[i] = (float)g[i];
                    double e = tst_rel_err(d, gf, N * V);
                    CHECK_MSG(fabs(out.loss - tl) < 1e-9 * fmax(1, fabs(tl)), "%s topk %d: loss %.12g vs torch %.12g",
                              fg_divergence_name(div), topk, out.loss, tl);
                    CHECK_MSG(e < 1e-6, "%s topk %d T %g: gradient vs torch rel err %.3g", fg_divergence_name(div), topk,
                              o.temperature, e);
                }
            }
    // A top-k equal to the whole vocabulary but one gives the full loss when the tail is exact.
    // Bad inputs: duplicate ids, ids out of range, k >= V.
    fg_distill_loss_opts o;
    fg_distill_loss_opts_default(&o);
    fg_distill_loss_out out;
    int32_t dup[N * K];
    memcpy(dup, ids, sizeof dup);
    dup[1] = dup[0];
    CHECK(fg_distill_loss_topk(&o, z, dup, lp, lt, K, y, N, V, 1, d, &out) == -1 && strstr(fg_last_error(), "twice"));
    dup[1] = V;
    CHECK(fg_distill_loss_topk(&o, z, dup, lp, lt, K, y, N, V, 1, d, &out) == -1 && strstr(fg_last_error(), "outside"));
    CHECK(fg_distill_loss_topk(&o, z, ids, lp, lt, V, y, N, V, 1, d, &out) == -1);
    o.alpha = 1.5f;
    CHECK(fg_distill_loss(&o, z, t, y, N, V, 1, d, &out) == -1);
}

// fg_model_backward_dlogits with the plain CE gradient (alpha 1) reproduces fg_model_backward.
static void check_backward_entry(void) {
    fg_config c;
    fg_config_preset(&c, "tiny");
    fg_model *a = fg_model_create(&c), *b = fg_model_create(&c);
    fg_model_init_weights(a, 3);
    fg_model_init_weights(b, 3);
    int B = 2, T = 9, N = B * T, V = c.vocab_size;
    int32_t in[18], tg[18];
    fg_rng r;
    fg_rng_seed(&r, 11);
    for (int i = 0; i < N; i++) { in[i] = (int32_t)(fg_rng_uniform(&r) * 250); tg[i] = i % 5 == 0 ? -1 : (int32_t)(fg_rng_uniform(&r) * 250); }
    fg_step sa = {.balance_alpha = 0.01f}, sb = sa;
    CHECK(fg_model_forward(a, in, tg, B, T, &sa) == 0);
    CHECK(fg_model_backward(a, 0.5f) == 0);
    CHECK(fg_model_forward(b, in, NULL, B, T, &sb) == 0);
    fg_distill_loss_opts o;
    fg_distill_loss_opts_default(&o);
    o.alpha = 1;
    fg_distill_loss_out out;
    float *teacher = calloc((size_t)N * V, sizeof(float));
    CHECK(fg_distill_loss(&o, b->logits, teacher, tg, N, V, 0.5f, b->logits, &out) == 0);
    CHECK_MSG(fabs(out.ce - sa.ce_loss) < 1e-5, "ce %g vs %g", out.ce, sa.ce_loss);
    CHECK(fg_model_backward_dlogits(b, b->logits, 0.5f) == 0);
    double e = tst_rel_err(b->grads, a->grads, a->n_params);
    CHECK_MSG(e < 1e-5, "dlogits backward vs CE backward: rel err %g", e);
    CHECK(fg_model_backward_dlogits(b, b->logits, 0.5f) == -1); // consumed: needs a new forward
    free(teacher);
    fg_model_free(a); fg_model_free(b);
}

// Cache: build from a tiny teacher on the task, read back, compare with the teacher's own top-k;
// corruption and truncation are refused.
static void check_cache(void) {
    fg_config c;
    fg_config_preset(&c, "tiny");
    fg_model *m = fg_model_create(&c);
    fg_model_init_weights(m, 5);
    char dir[] = "/tmp/fg_distill_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0); return; }
    char ck[128], cp[128];
    snprintf(ck, sizeof ck, "%s/t.fgck", dir);
    snprintf(cp, sizeof cp, "%s/c.fgdc", dir);
    fg_train_state st;
    fg_train_state_init(&st, 1);
    CHECK(fg_ckpt_save(ck, m, NULL, &st) == 0);
    fg_train_opts o;
    fg_train_opts_default(&o);
    o.seq = 70;
    fg_distill_cache_opts co = {ck, cp, 8, 2.0f, 5, 9, 2};
    fg_distill_cache_info info;
    CHECK_MSG(fg_distill_cache_build(&co, &o, &info) == 0, "%s", fg_last_error());
    CHECK(info.seqs == 5 && info.k == 8 && info.bytes == 128 + 5 * 70 * (8 + 42));
    fg_dcache dc;
    CHECK_MSG(fg_dcache_open(&dc, cp) == 0, "%s", fg_last_error());
    int32_t in[70], tg[70], ids[8];
    float lp[8], lt;
    fg_dcache_tokens(&dc, 3, in, tg);
    CHECK(fg_model_forward(m, in, NULL, 1, 70, NULL) == 0);
    double worst = 0;
    for (int t = 0; t < 70; t += 7) {
        fg_dcache_entry(&dc, 3, t, ids, lp, &lt);
        const float *z = m->logits + (size_t)t * c.vocab_size;
        double mx = -INFINITY, s = 0, top = 0;
        for (int j = 0; j < c.vocab_size; j++) mx = fmax(mx, z[j]);
        for (int j = 0; j < c.vocab_size; j++) s += exp((z[j] - mx) / 2.0);
        for (int i = 0; i < 8; i++) {
            double want = (z[ids[i]] - mx) / 2.0 - log(s);
            worst = fmax(worst, fabs(lp[i] - want));
            top += exp(want);
            if (i) CHECK(z[ids[i]] <= z[ids[i - 1]]);
            int larger = 0; // no token outside the top-8 beats the 8th
            for (int j = 0; j < c.vocab_size; j++) larger += z[j] > z[ids[7]];
            CHECK(larger <= 7);
        }
        worst = fmax(worst, fabs(lt - log(1 - top)));
    }
    CHECK_MSG(worst < 4e-3, "cached log-probs differ from the teacher's by %g (fp16 budget)", worst);
    CHECK(dc.teacher_hash == fg_distill_teacher_hash(m));
    // every byte of the image matters: flip one in the header, the tokens, the entries; truncate
    uint8_t *img = malloc(dc.len);
    memcpy(img, dc.base, dc.len);
    size_t len = dc.len;
    fg_dcache_close(&dc);
    fg_dcache x;
    size_t spots[] = {20, 100, 128 + 40, len - 3};
    for (int i = 0; i < 4; i++) {
        img[spots[i]] ^= 0x10;
        CHECK_MSG(fg_dcache_parse(&x, img, len, "c.fgdc") == -1, "flip at %zu accepted", spots[i]);
        img[spots[i]] ^= 0x10;
    }
    CHECK(fg_dcache_parse(&x, img, len - 1, "c.fgdc") == -1 && strstr(fg_last_error(), "truncated"));
    CHECK(fg_dcache_parse(&x, img, len, "c.fgdc") == 0);
    free(img);
    co.k = c.vocab_size; // k >= V
    CHECK(fg_distill_cache_build(&co, &o, &info) == -1 && strstr(fg_last_error(), "--k"));
    unlink(cp); unlink(ck); rmdir(dir);
    fg_train_state_free(&st);
    fg_model_free(m);
}

// train --sft: every row of a one-example file is that example, prompt targets -1, so the first
// step's logged cross-entropy equals a forward over the completion tokens alone.
static void check_sft_mask(void) {
    fg_config c;
    fg_config_preset(&c, "tiny");
    fg_model *m = fg_model_create(&c), *ref = fg_model_create(&c);
    fg_model_init_weights(m, 21);
    fg_model_init_weights(ref, 21);
    char dir[] = "/tmp/fg_sft_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0); return; }
    char path[128], out[128], logp[160];
    snprintf(path, sizeof path, "%s/sft.jsonl", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(logp, sizeof logp, "%s/run/log.jsonl", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"prompt_ids\": [256, 49, 43, 50, 61], \"completion_ids\": [51, 10, 257]}\n");
    fclose(f);
    fg_train_opts o;
    fg_train_opts_default(&o);
    o.batch = 2; o.seq = 12; o.steps = 1; o.warmup = 0; o.val_fraction = 0; o.eval_every = 0; o.eval_batches = 1;
    o.out_dir = out; o.progress = 0; o.quiet = 1;
    fg_adamw opt;
    fg_adamw_init_for(&opt, m);
    fg_train_state st;
    fg_train_state_init(&st, 1);
    CHECK_MSG(fg_train_sft(m, &opt, &st, &o, path) == 0, "%s", fg_last_error());
    int32_t in[24], tg[24];
    const int32_t ex[8] = {256, 49, 43, 50, 61, 51, 10, 257};
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 12; t++) {
            in[b * 12 + t] = t < 8 ? ex[t] : FG_TOK_PAD;
            tg[b * 12 + t] = t + 1 < 8 && t + 1 >= 5 ? ex[t + 1] : -1; // 51, 10, 257 only
        }
    fg_step rs = {0};
    CHECK(fg_model_forward(ref, in, tg, 2, 12, &rs) == 0);
    CHECK(ref->n_counted == 6);
    size_t len;
    char *log = fg_read_file(logp, &len);
    const char *ce = log ? strstr(log, "\"ce\":") : NULL;
    CHECK_MSG(ce && fabs(atof(ce + 5) - rs.ce_loss) < 2e-6, "sft ce %s vs completion-only %.6f", ce ? ce : "(none)", rs.ce_loss);
    free(log);
    fg_train_state_free(&st);
    fg_adamw_free(&opt);
    fg_model_free(m); fg_model_free(ref);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    const char *py = find_python();
    check_loss(py);
    check_backward_entry();
    check_cache();
    check_sft_mask();
    // Without torch every other check still ran; a pass then is partial and says so, as a skip
    // (tests/run.sh shows the SKIP line; it would hide a note in a passing test's output).
    if (!py && !tst_failures) {
        printf("SKIP: python3 with torch not found: the PyTorch comparison of the losses was skipped (every other check passed)\n");
        return 77;
    }
    return TEST_DONE();
}
