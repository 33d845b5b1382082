// loss.c: distillation losses and their gradients with respect to the student's logits.
//
// loss = mean over rows with target >= 0 of
//          alpha * CE(softmax(z), target) + (1 - alpha) * T^2 * D(p_T, q_T)
// where z is a student row (V logits), q_T = softmax(z / T), and p_T the teacher's distribution
// at the same temperature. D is one of (p teacher, q student, over "buckets" b):
//   fkl   KL(p || q)                  = sum p (log p - log q)
//   rkl   KL(q || p)                  = sum q (log q - log p)
//   skl   KL(p || lam p + (1-lam) q)  DistiLLM's skew KL (lambda in [0, 1))
//   srkl  KL(q || (1-lam) p + lam q)  DistiLLM's skew reverse KL
//   jsd   beta KL(p || m) + (1-beta) KL(q || m), m = beta p + (1-beta) q  (GKD, beta in (0, 1))
// A bucket is one token (full-vocabulary loss) or, for the top-k cache, each of the teacher's k
// stored tokens plus ONE tail bucket holding every other token: q_tail = sum of the student's
// probabilities outside the k ids, p_tail = the stored remaining teacher mass. With one token per
// bucket both forms are the same loss.
//
// Gradient: each divergence supplies h_b = q_b * dD/dq_b; since q_b = sum_{j in b} s_j,
// s = softmax(z/T):  dD/dz_j = (1/T) * (s_j / q_b(j) * h_b(j) - s_j * sum_b h_b).
// (Constant terms of dD/dq cancel, which is why q_b * const can be dropped from h.)
// Everything per row runs in double; the teacher's log-probabilities are floored at -1000 where
// a divergence takes log p of a bucket (rkl), so a zero teacher probability costs a finite loss.
// Not done here: the teacher forward, masking other than target < 0, reduction over steps.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/distill.h"
#include "util.h"

#define LOGP_FLOOR (-1000.0)

int fg_divergence_parse(const char *name) {
    static const char *names[] = {"fkl", "rkl", "skl", "srkl", "jsd"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, names[i])) return i;
    return fg_set_error("unknown divergence '%s' (hint: fkl, rkl, skl, srkl or jsd)", name);
}

const char *fg_divergence_name(int d) {
    static const char *names[] = {"fkl", "rkl", "skl", "srkl", "jsd"};
    return d >= 0 && d < 5 ? names[d] : "?";
}

void fg_distill_loss_opts_default(fg_distill_loss_opts *o) {
    o->div = FG_DIV_FKL; o->temperature = 1.0f; o->alpha = 0.5f; o->lambda = 0.1f; o->beta = 0.5f;
}

int fg_distill_loss_opts_check(const fg_distill_loss_opts *o) {
    if (o->div < 0 || o->div > FG_DIV_JSD) return fg_set_error("divergence %d is not one of FG_DIV_*", o->div);
    if (!(o->temperature > 0) || !isfinite(o->temperature))
        return fg_set_error("temperature must be > 0 (got %g)", o->temperature);
    if (!(o->alpha >= 0 && o->alpha <= 1)) return fg_set_error("alpha must be in [0, 1] (got %g)", o->alpha);
    if ((o->div == FG_DIV_SKL || o->div == FG_DIV_SRKL) && !(o->lambda >= 0 && o->lambda < 1))
        return fg_set_error("skew lambda must be in [0, 1) (got %g)", o->lambda);
    if (o->div == FG_DIV_JSD && !(o->beta > 0 && o->beta < 1))
        return fg_set_error("JSD beta must be in (0, 1) (got %g)", o->beta);
    return 0;
}

static double logaddexp(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

// One bucket's contribution: D term and h = q * dD/dq, from log p (teacher) and log q (student).
static double bucket_term(const fg_distill_loss_opts *o, double lp, double lq, double *h) {
    double p = exp(lp), q = exp(lq), lm, m;
    switch (o->div) {
    case FG_DIV_FKL:
        *h = -p;
        return p > 0 ? p * (lp - lq) : 0;
    case FG_DIV_RKL:
        lp = lp < LOGP_FLOOR ? LOGP_FLOOR : lp;
        *h = q * (lq - lp + 1);
        return q > 0 ? q * (lq - lp) : 0;
    case FG_DIV_SKL: {
        double lam = o->lambda;
        lm = logaddexp(lam > 0 ? log(lam) + lp : -INFINITY, log1p(-lam) + lq);
        m = exp(lm);
        *h = m > 0 ? -(1 - lam) * p * q / m : 0;
        return p > 0 ? p * (lp - lm) : 0;
    }
    case FG_DIV_SRKL: {
        double lam = o->lambda;
        lm = logaddexp(log1p(-lam) + lp, lam > 0 ? log(lam) + lq : -INFINITY);
        m = exp(lm);
        *h = q > 0 ? q * (lq + 1 - lm - (m > 0 ? lam * q / m : 0)) : 0;
        return q > 0 ? q * (lq - lm) : 0;
    }
    default: { // jsd
        double b = o->beta;
        lm = logaddexp(log(b) + lp, log1p(-b) + lq);
        *h = q > 0 ? (1 - b) * q * (lq - lm) : 0;
        return b * (p > 0 ? p * (lp - lm) : 0) + (1 - b) * (q > 0 ? q * (lq - lm) : 0);
    }
    }
}

// One row. z (V) student logits; teacher as a full row (t_logits, V) or as k buckets (ids, logp)
// plus a tail (log mass). ls: (V) double scratch; mark: (V) byte scratch, zero on entry and exit.
// Writes d(row loss)/dz * scale into d (V); returns the row's CE and D in *ce, *dv.
static int row_loss(const fg_distill_loss_opts *o, const float *z, const float *t_logits, const int32_t *ids,
                    const float *t_logp, float t_logtail, int k, int tg, int V, double scale, float *d, double *ls,
                    unsigned char *mark, double *ce, double *dv) {
    double T = o->temperature, alpha = o->alpha, wd = (1 - alpha) * T * T;
    // student: log-softmax at T (ls) and at 1 (for CE)
    double mx = -INFINITY;
    for (int j = 0; j < V; j++) mx = z[j] > mx ? z[j] : mx;
    double s1 = 0, sT = 0;
    for (int j = 0; j < V; j++) { s1 += exp((double)z[j] - mx); sT += exp(((double)z[j] - mx) / T); }
    double lse1 = mx + log(s1), lseT = mx / T + log(sT);
    for (int j = 0; j < V; j++) ls[j] = z[j] / T - lseT;
    *ce = lse1 - z[tg];
    double H = 0, D = 0;
    if (t_logits) { // full vocabulary: one bucket per token (two passes: H first, then d)
        double tmx = -INFINITY, ts = 0, h;
        for (int j = 0; j < V; j++) tmx = t_logits[j] > tmx ? t_logits[j] : tmx;
        for (int j = 0; j < V; j++) ts += exp(((double)t_logits[j] - tmx) / T);
        double tlse = tmx / T + log(ts);
        for (int j = 0; j < V; j++) { D += bucket_term(o, t_logits[j] / T - tlse, ls[j], &h); H += h; }
        for (int j = 0; j < V; j++) {
            bucket_term(o, t_logits[j] / T - tlse, ls[j], &h);
            double g = wd * (h - exp(ls[j]) * H) / T + alpha * (exp((double)z[j] - lse1) - (j == tg));
            d[j] = (float)(g * scale);
        }
    } else { // top-k buckets + tail
        double hb[FG_DISTILL_MAX_K], qtail = 0, htail = 0;
        for (int i = 0; i < k; i++) {
            int bad = ids[i] < 0 || ids[i] >= V || mark[ids[i]];
            if (bad) {
                for (int r = 0; r < i; r++) mark[ids[r]] = 0;
                if (ids[i] < 0 || ids[i] >= V) return fg_set_error("teacher id %d outside the vocabulary [0, %d)", ids[i], V);
                return fg_set_error("teacher id %d appears twice among the top-%d", ids[i], k);
            }
            mark[ids[i]] = 1;
            D += bucket_term(o, t_logp[i], ls[ids[i]], &hb[i]);
            H += hb[i];
        }
        for (int j = 0; j < V; j++)
            if (!mark[j]) qtail += exp(ls[j]);
        if (qtail > 0 || t_logtail > -INFINITY) {
            D += bucket_term(o, t_logtail, qtail > 0 ? log(qtail) : -INFINITY, &htail);
            H += htail;
        }
        for (int j = 0; j < V; j++) {
            if (mark[j]) continue;
            double sj = exp(ls[j]);
            double g = alpha * (exp((double)z[j] - lse1) - (j == tg)) + wd * ((qtail > 0 ? sj / qtail * htail : 0) - sj * H) / T;
            d[j] = (float)(g * scale);
        }
        for (int i = 0; i < k; i++) {
            int j = ids[i];
            double g = alpha * (exp((double)z[j] - lse1) - (j == tg)) + wd * (hb[i] - exp(ls[j]) * H) / T;
            d[j] = (float)(g * scale);
            mark[j] = 0;
        }
    }
    *dv = D;
    return 0;
}

// Shared driver: rows in parallel, each thread with its own scratch.
static int loss_rows(const fg_distill_loss_opts *o, const float *student, const float *t_logits, const int32_t *ids,
                     const float *t_logp, const float *t_logtail, int k, const int32_t *targets, int N, int V, float scale,
                     float *dlogits, fg_distill_loss_out *out) {
    if (fg_distill_loss_opts_check(o)) return -1;
    if (N < 0 || V < 1) return fg_set_error("distill loss: bad sizes N %d, V %d", N, V);
    if (!t_logits && (k < 1 || k >= V || k > FG_DISTILL_MAX_K))
        return fg_set_error("top-k %d must be in [1, min(%d, V-1 = %d)]", k, FG_DISTILL_MAX_K, V - 1);
    int count = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] >= V) return fg_set_error("target id %d at row %d is outside the vocabulary [0, %d)", targets[n], n, V);
        count += targets[n] >= 0;
    }
    double ce = 0, dv = 0;
    int err = 0;
    char msg[256] = "";
#pragma omp parallel reduction(+ : ce, dv)
    {
        double *ls = malloc(sizeof(double) * V);
        unsigned char *mark = calloc((size_t)V, 1);
        if (!ls || !mark) {
#pragma omp atomic write
            err = 1;
        }
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            float *d = dlogits + (size_t)n * V;
            if (targets[n] < 0 || !ls || !mark) { memset(d, 0, sizeof(float) * V); continue; }
            double c, v;
            int rc = row_loss(o, student + (size_t)n * V, t_logits ? t_logits + (size_t)n * V : NULL,
                              ids ? ids + (size_t)n * k : NULL, t_logp ? t_logp + (size_t)n * k : NULL,
                              t_logtail ? t_logtail[n] : 0, k, targets[n], V, (double)scale / count, d, ls, mark, &c, &v);
            if (rc) {
#pragma omp critical
                { if (!err) { err = 2; snprintf(msg, sizeof msg, "row %d: %s", n, fg_last_error()); } }
                memset(d, 0, sizeof(float) * V);
                continue;
            }
            ce += c; dv += v;
        }
        free(ls); free(mark);
    }
    if (err == 1) return fg_set_error("out of memory");
    if (err == 2) return fg_set_error("%s", msg);
    double T = o->temperature;
    out->count = count;
    out->ce = count ? ce / count : 0;
    out->div = count ? dv / count : 0;
    out->loss = o->alpha * out->ce + (1 - o->alpha) * T * T * out->div;
    return 0;
}

int fg_distill_loss(const fg_distill_loss_opts *o, const float *student, const float *teacher, const int32_t *targets,
                    int N, int V, float scale, float *dlogits, fg_distill_loss_out *out) {
    return loss_rows(o, student, teacher, NULL, NULL, NULL, 0, targets, N, V, scale, dlogits, out);
}

int fg_distill_loss_topk(const fg_distill_loss_opts *o, const float *student, const int32_t *ids, const float *logp,
                         const float *logtail, int k, const int32_t *targets, int N, int V, float scale, float *dlogits,
                         fg_distill_loss_out *out) {
    return loss_rows(o, student, NULL, ids, logp, logtail, k, targets, N, V, scale, dlogits, out);
}
