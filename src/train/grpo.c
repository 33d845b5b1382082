// grpo.c: the GRPO objective's math (formulas and normalisations: grpo.h and docs/rl.md).
//
// Sources: DeepSeekMath (Shao et al. 2024), eq. 3 (the GRPO objective: PPO's clipped surrogate
// with a group-relative advantage and a k3 KL penalty inside the per-token sum) and eq. 4 (the
// k3 estimator); DAPO (Yu et al. 2025): asymmetric clip ("clip-higher"), token-level
// normalisation, dynamic sampling (groups whose rewards are all equal are dropped); Dr. GRPO
// (Liu et al. 2025): no std division of the advantage and a constant length normaliser.
//
// Not here: sampling, rewards, the model forward, the optimizer step, any reduction across
// micro-batches (a caller that splits a batch must pass its own consistent weights, e.g. one call
// over the whole batch). Invariants: dlogp is 0 off the mask; an all-zero mask (one sequence or
// the batch) never divides by zero. Every sum runs in double. Nothing here parses untrusted
// bytes, so there is no fuzz target.
#include <assert.h>
#include <math.h>
#include <string.h>

#include "train/grpo.h"

int fg_grpo_advantages(float *adv, uint8_t *keep, const float *rewards, int ngroups, int G, int std_norm) {
    assert(ngroups >= 0 && G >= 1);
    int flat = 0;
    for (int g = 0; g < ngroups; g++) {
        const float *r = rewards + (size_t)g * G;
        float *a = adv + (size_t)g * G;
        int same = 1;
        for (int i = 1; i < G; i++) same &= r[i] == r[0];
        if (keep) keep[g] = !same;
        if (same) { // exactly 0, not (r - mean) rounded: no signal, and DAPO drops the group
            for (int i = 0; i < G; i++) a[i] = 0;
            flat++;
            continue;
        }
        double mean = 0, var = 0;
        for (int i = 0; i < G; i++) mean += r[i];
        mean /= G;
        for (int i = 0; i < G; i++) var += ((double)r[i] - mean) * ((double)r[i] - mean);
        var /= G; // population variance
        double den = std_norm ? sqrt(var) + FG_GRPO_ADV_EPS : 1.0;
        for (int i = 0; i < G; i++) a[i] = (float)(((double)r[i] - mean) / den);
    }
    return flat;
}

static long mask_count(const uint8_t *m, int T) {
    long n = 0;
    for (int t = 0; t < T; t++) n += m[t] != 0;
    return n;
}

double fg_grpo_loss(float *dlogp, const float *logp, const float *logp_old, const float *logp_ref, const uint8_t *mask,
                    const float *adv, int S, int T, const fg_grpo_opts *o, fg_grpo_stats *st) {
    assert(o && S >= 0 && T >= 1);
    assert(o->clip_lo >= 0 && o->clip_lo < 1 && o->clip_hi >= 0 && o->beta >= 0);
    assert(!o->no_len_norm || o->max_len > 0);
    assert(o->beta == 0 || logp_ref);
    const double lo = 1.0 - o->clip_lo, hi = 1.0 + o->clip_hi, beta = o->beta;
    // M tokens in S' non-empty sequences: the denominators of the three normalisations
    long M = 0, Sn = 0;
    for (int s = 0; s < S; s++) {
        long n = mask_count(mask + (size_t)s * T, T);
        M += n;
        Sn += n > 0;
    }
    double pg = 0, kl = 0, rsum = 0;
    long nclip = 0;
    for (int s = 0; s < S; s++) {
        size_t off = (size_t)s * T;
        const uint8_t *m = mask + off;
        float *d = dlogp + off;
        long n = mask_count(m, T);
        if (n == 0) { memset(d, 0, sizeof(float) * T); continue; }
        // w: the weight of each of this sequence's tokens in the loss (grpo.h)
        double w = o->no_len_norm ? 1.0 / ((double)Sn * o->max_len) : o->token_level ? 1.0 / (double)M : 1.0 / ((double)Sn * n);
        double A = adv[s];
        for (int t = 0; t < T; t++) {
            if (!m[t]) { d[t] = 0; continue; }
            double lp = logp[off + t], r = exp(lp - (double)logp_old[off + t]);
            double rc = r < lo ? lo : r > hi ? hi : r;
            double s1 = r * A, s2 = rc * A, surr, g; // g = d l / d logp
            if (s2 < s1) { surr = s2; g = 0; nclip++; } // clipped branch active: constant in logp
            else { surr = s1; g = -s1; }                // d(r A)/d logp = r A
            if (beta != 0) {
                double x = (double)logp_ref[off + t] - lp, e = exp(x);
                kl += w * (e - x - 1); // k3 >= 0; d k3 / d logp = 1 - e
                g += beta * (1 - e);
            }
            pg -= w * surr;
            rsum += r;
            d[t] = (float)(w * g);
        }
    }
    double loss = pg + beta * kl;
    if (st) {
        st->loss = loss;
        st->pg_loss = pg;
        st->kl = kl;
        st->clip_frac = M ? (double)nclip / M : 0;
        st->ratio_mean = M ? rsum / M : 0;
        st->tokens = M;
    }
    return loss;
}

void fg_logp_rows(float *logp, float *entropy, const float *logits, const int32_t *tok, int N, int V) {
    assert(N >= 0 && V >= 1);
#pragma omp parallel for schedule(static) if ((long)N * V > 65536)
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * V;
        assert(tok[i] < V);
        double mx = -INFINITY, s = 0, sz = 0;
        for (int v = 0; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        for (int v = 0; v < V; v++) {
            double x = z[v] - mx, e = exp(x);
            s += e;
            if (e > 0) sz += e * x; // a -inf logit has p = 0 and adds nothing (not 0 * -inf)
        }
        double ls = log(s);
        logp[i] = tok[i] < 0 ? 0.0f : (float)((double)z[tok[i]] - mx - ls);
        if (entropy) entropy[i] = (float)(ls - sz / s); // -sum p log p, log p = x - log s
    }
}

void fg_logp_backward(float *dlogits, const float *logits, const int32_t *tok, const float *dlogp, int N, int V) {
    assert(N >= 0 && V >= 1);
#pragma omp parallel for schedule(static) if ((long)N * V > 65536)
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * V;
        float *d = dlogits + (size_t)i * V;
        double g = dlogp[i];
        if (g == 0) { memset(d, 0, sizeof(float) * V); continue; }
        assert(tok[i] >= 0 && tok[i] < V); // a row without a token (-1) must have dlogp 0
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        for (int v = 0; v < V; v++) s += exp(z[v] - mx);
        double inv = 1.0 / s;
        // z[v] is read before d[v] is written, so d == z (in place) is fine
        for (int v = 0; v < V; v++) d[v] = (float)(g * ((v == tok[i]) - exp(z[v] - mx) * inv));
    }
}
