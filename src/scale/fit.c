// fit.c: the scaling law L(N, D) = E + A / N^alpha + B / D^beta, fitted the way Chinchilla's
// approach 3 does (Hoffmann et al. 2022, and the replication by Besiroglu et al. 2024): a Huber
// loss (delta 1e-3) on the residuals of log-loss, the law written as
//     log Lhat = LSE(a - alpha log N, b - beta log D, e),   A = exp(a), B = exp(b), E = exp(e),
// minimised by BFGS from the best points of a grid of starts. Intervals are percentile bootstrap
// intervals: each replicate reweights the points by a multinomial draw (the same as resampling
// them with replacement) and is refitted from the point estimate.
//
// What it deliberately does not do: no constraints (a fit with alpha or beta <= 0 is reported as
// it is; the frontier functions then return NAN), no weighting of points by their compute.
// Invariants: everything is deterministic for a seed; replicate i draws from its own RNG stream,
// so the OpenMP schedule never changes a result.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal_scale.h"
#include "util.h"

#define NP FG_SCALE_NPARAM // theta = (e, a, b, alpha, beta)

typedef struct {
    const double *lnN, *lnD, *lnL; // (n) logs of the points
    const double *w;               // (n) weights (multinomial counts), NULL = all 1
    int n;
    double delta;
} fit_problem;

static double huber(double r, double d, double *dr) {
    double ar = fabs(r);
    if (ar <= d) { *dr = r; return 0.5 * r * r; }
    *dr = r > 0 ? d : -d;
    return d * (ar - 0.5 * d);
}

// Objective (mean Huber / delta, so its scale does not depend on delta) and, when g != NULL, its
// gradient with respect to theta.
static double objective(const fit_problem *fp, const double *th, double *g) {
    double f = 0, wsum = 0;
    if (g) memset(g, 0, sizeof(double) * NP);
    for (int i = 0; i < fp->n; i++) {
        double w = fp->w ? fp->w[i] : 1;
        if (w == 0) continue;
        double t0 = th[0], t1 = th[1] - th[3] * fp->lnN[i], t2 = th[2] - th[4] * fp->lnD[i];
        double mx = fmax(t0, fmax(t1, t2));
        double e0 = exp(t0 - mx), e1 = exp(t1 - mx), e2 = exp(t2 - mx), s = e0 + e1 + e2;
        double r = mx + log(s) - fp->lnL[i], dr;
        f += w * huber(r, fp->delta, &dr);
        wsum += w;
        if (g) {
            double c = w * dr / s;
            g[0] += c * e0; g[1] += c * e1; g[2] += c * e2;
            g[3] -= c * e1 * fp->lnN[i]; g[4] -= c * e2 * fp->lnD[i];
        }
    }
    double scale = 1.0 / (wsum * fp->delta);
    if (g) for (int k = 0; k < NP; k++) g[k] *= scale;
    return f * scale;
}

// BFGS on the inverse Hessian with a backtracking (Armijo) line search. theta is refined in place;
// returns the objective there.
static double bfgs(const fit_problem *fp, double *th, int max_iter) {
    double H[NP][NP], g[NP], gn[NP], d[NP], x[NP], s[NP], y[NP];
    double f = objective(fp, th, g);
    memset(H, 0, sizeof H);
    for (int k = 0; k < NP; k++) H[k][k] = 1;
    int fresh = 1, stalls = 0;
    for (int it = 0; it < max_iter; it++) {
        double gmax = 0, slope = 0, dn = 0;
        for (int k = 0; k < NP; k++) gmax = fmax(gmax, fabs(g[k]));
        if (gmax < 1e-12) break;
        for (int k = 0; k < NP; k++) {
            d[k] = 0;
            for (int j = 0; j < NP; j++) d[k] -= H[k][j] * g[j];
            slope += d[k] * g[k];
            dn += d[k] * d[k];
        }
        if (slope >= 0) { // not a descent direction: fall back to steepest descent
            for (int k = 0; k < NP; k++) { d[k] = -g[k]; }
            slope = 0; dn = 0;
            for (int k = 0; k < NP; k++) { slope += d[k] * g[k]; dn += d[k] * d[k]; }
        }
        double step = 1;
        if (fresh && sqrt(dn) > 0.5) step = 0.5 / sqrt(dn); // first step of a fresh Hessian: at most 0.5
        double fn = f;
        int ok = 0;
        for (int ls = 0; ls < 60; ls++, step *= 0.5) {
            for (int k = 0; k < NP; k++) x[k] = th[k] + step * d[k];
            fn = objective(fp, x, gn);
            if (isfinite(fn) && fn <= f + 1e-4 * step * slope) { ok = 1; break; }
        }
        if (!ok) {
            if (fresh) break; // no progress even along the steepest direction
            memset(H, 0, sizeof H);
            for (int k = 0; k < NP; k++) H[k][k] = 1;
            fresh = 1;
            continue;
        }
        double sy = 0, yy = 0;
        for (int k = 0; k < NP; k++) { s[k] = x[k] - th[k]; y[k] = gn[k] - g[k]; sy += s[k] * y[k]; yy += y[k] * y[k]; }
        stalls = f - fn <= 1e-13 * (1 + fabs(f)) ? stalls + 1 : 0;
        memcpy(th, x, sizeof x);
        memcpy(g, gn, sizeof g);
        f = fn;
        if (stalls >= 8) break;
        if (sy <= 1e-16) continue; // curvature condition fails: keep H
        if (fresh) { // Nocedal & Wright (6.20): scale the identity before the first update
            for (int k = 0; k < NP; k++) H[k][k] = sy / yy;
            fresh = 0;
        }
        double Hy[NP], yHy = 0;
        for (int k = 0; k < NP; k++) {
            Hy[k] = 0;
            for (int j = 0; j < NP; j++) Hy[k] += H[k][j] * y[j];
            yHy += y[k] * Hy[k];
        }
        double rho = 1 / sy;
        for (int k = 0; k < NP; k++)
            for (int j = 0; j < NP; j++)
                H[k][j] += rho * ((1 + rho * yHy) * s[k] * s[j] - Hy[k] * s[j] - s[k] * Hy[j]);
    }
    return f;
}

static void theta_to_law(const double *th, fg_scale_law *l) {
    l->E = exp(th[0]); l->A = exp(th[1]); l->B = exp(th[2]); l->alpha = th[3]; l->beta = th[4];
}

static int law_finite(const fg_scale_law *l) {
    return isfinite(l->E) && isfinite(l->A) && isfinite(l->B) && isfinite(l->alpha) && isfinite(l->beta);
}

void fg_scale_fit_opts_default(fg_scale_fit_opts *o) {
    o->huber_delta = 1e-3;
    o->n_boot = 200;
    o->level = 0.90;
    o->seed = 1;
    o->max_iter = 400;
}

const char *fg_scale_param_name(int i) {
    static const char *names[NP] = {"E", "A", "B", "alpha", "beta"};
    return i >= 0 && i < NP ? names[i] : "?";
}

void fg_scale_fit_free(fg_scale_fit *f) {
    if (!f) return;
    free(f->boot);
    f->boot = NULL;
    f->n_boot = 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void fg_scale_percentiles(double *v, int n, double level, double *lo, double *hi) {
    if (n <= 0) { *lo = *hi = NAN; return; }
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double q[2] = {(1 - level) / 2, (1 + level) / 2}, out[2];
    for (int k = 0; k < 2; k++) { // linear interpolation between order statistics (numpy's default)
        double pos = q[k] * (n - 1);
        int i = (int)floor(pos);
        if (i >= n - 1) { out[k] = v[n - 1]; continue; }
        double frac = pos - i;
        // equal or infinite neighbours are taken as they are: inf - inf must not give NAN
        out[k] = frac == 0 || v[i + 1] == v[i] || isinf(v[i + 1]) || isinf(v[i]) ? (frac == 0 ? v[i] : v[i + 1]) : v[i] + frac * (v[i + 1] - v[i]);
    }
    *lo = out[0]; *hi = out[1];
}

// The start grid (Chinchilla's, shifted to cover small models): every combination is scored and
// the best KEEP are refined.
#define KEEP 8
static int fit_point(const fit_problem *fp, int max_iter, double *best) {
    static const double ALPHA[] = {0.1, 0.3, 0.5, 1.0, 1.5}, EG[] = {-1, -0.5, 0, 0.5, 1, 1.5},
                        AG[] = {0, 2.5, 5, 10, 15, 20, 25};
    const int na = 5, ne = 6, nA = 7;
    double top_f[KEEP], top_th[KEEP][NP];
    int nt = 0;
    for (int ia = 0; ia < na; ia++)
        for (int ib = 0; ib < na; ib++)
            for (int ie = 0; ie < ne; ie++)
                for (int iA = 0; iA < nA; iA++)
                    for (int iB = 0; iB < nA; iB++) {
                        double th[NP] = {EG[ie], AG[iA], AG[iB], ALPHA[ia], ALPHA[ib]};
                        double f = objective(fp, th, NULL);
                        if (!isfinite(f)) continue;
                        if (nt < KEEP) { top_f[nt] = f; memcpy(top_th[nt], th, sizeof th); nt++; }
                        else {
                            int w = 0;
                            for (int k = 1; k < KEEP; k++) if (top_f[k] > top_f[w]) w = k;
                            if (f < top_f[w]) { top_f[w] = f; memcpy(top_th[w], th, sizeof th); }
                        }
                    }
    double bf = INFINITY;
    for (int k = 0; k < nt; k++) {
        double th[NP];
        memcpy(th, top_th[k], sizeof th);
        double f = bfgs(fp, th, max_iter);
        if (isfinite(f) && f < bf) { bf = f; memcpy(best, th, sizeof th); }
    }
    return isfinite(bf) ? 0 : -1;
}

int fg_scale_fit_law(const fg_scale_point *p, int n, const fg_scale_fit_opts *o, fg_scale_fit *out) {
    memset(out, 0, sizeof *out);
    if (n < 6) return fg_set_error("a scaling-law fit needs at least 6 points (got %d) (hint: add runs to the sweep)", n);
    if (!(o->huber_delta > 0) || !(o->level > 0 && o->level < 1) || o->n_boot < 0 || o->max_iter < 1)
        return fg_set_error("bad fit options: huber_delta > 0, 0 < level < 1, n_boot >= 0, max_iter >= 1");
    for (int i = 0; i < n; i++)
        if (!(p[i].N > 0 && p[i].D > 0 && p[i].L > 0) || !isfinite(p[i].N) || !isfinite(p[i].D) || !isfinite(p[i].L))
            return fg_set_error("point %d (N %g, D %g, L %g) is not positive and finite", i, p[i].N, p[i].D, p[i].L);
    double *lg = malloc(sizeof(double) * 3 * (size_t)n);
    if (!lg) return fg_set_error("out of memory");
    for (int i = 0; i < n; i++) { lg[i] = log(p[i].N); lg[n + i] = log(p[i].D); lg[2 * n + i] = log(p[i].L); }
    fit_problem fp = {lg, lg + n, lg + 2 * n, NULL, n, o->huber_delta};
    double th[NP];
    if (fit_point(&fp, o->max_iter, th)) { free(lg); return fg_set_error("the scaling-law fit did not converge from any start"); }
    out->n_points = n;
    out->objective = objective(&fp, th, NULL) * o->huber_delta;
    theta_to_law(th, &out->law);
    out->lo = out->hi = out->law;
    int nb = o->n_boot;
    if (nb == 0) { free(lg); return 0; }
    fg_scale_law *boot = malloc(sizeof *boot * (size_t)nb);
    int *ok = calloc((size_t)nb, sizeof *ok);
    if (!boot || !ok) { free(lg); free(boot); free(ok); return fg_set_error("out of memory"); }
    int oom = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : oom)
    for (int r = 0; r < nb; r++) {
        double *w = calloc((size_t)n, sizeof *w);
        if (!w) { oom = 1; continue; }
        fg_rng rng;
        fg_rng_seed(&rng, o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)r + 1);
        for (int i = 0; i < n; i++) w[fg_rng_below(&rng, (uint64_t)n)] += 1;
        fit_problem bp = fp;
        bp.w = w;
        double t[NP];
        memcpy(t, th, sizeof t);
        double f = bfgs(&bp, t, o->max_iter);
        theta_to_law(t, &boot[r]);
        ok[r] = isfinite(f) && law_finite(&boot[r]);
        free(w);
    }
    free(lg);
    if (oom) { free(boot); free(ok); return fg_set_error("out of memory"); }
    int m = 0;
    for (int r = 0; r < nb; r++) if (ok[r]) boot[m++] = boot[r];
    free(ok);
    out->boot = boot;
    out->n_boot = m;
    double *v = malloc(sizeof(double) * (size_t)(m ? m : 1));
    if (!v) { fg_scale_fit_free(out); return fg_set_error("out of memory"); }
    double lo[NP], hi[NP];
    for (int k = 0; k < NP; k++) {
        for (int r = 0; r < m; r++) v[r] = fg_scale_law_param(&boot[r], k);
        fg_scale_percentiles(v, m, o->level, &lo[k], &hi[k]);
    }
    free(v);
    out->lo = (fg_scale_law){lo[0], lo[1], lo[2], lo[3], lo[4]};
    out->hi = (fg_scale_law){hi[0], hi[1], hi[2], hi[3], hi[4]};
    return 0;
}

double fg_scale_law_loss(const fg_scale_law *l, double N, double D) {
    return l->E + l->A * pow(N, -l->alpha) + l->B * pow(D, -l->beta);
}

// With C = k N D the optimum is N = G (C/k)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)),
// and the optimal loss is E + K C^-gamma with gamma = alpha beta / (alpha + beta).
void fg_scale_law_optimal(const fg_scale_law *l, double k, double C, double *N, double *D, double *loss) {
    double n = NAN, d = NAN, L = NAN;
    if (l->alpha > 0 && l->beta > 0 && l->A > 0 && l->B > 0 && k > 0 && C > 0) {
        double s = l->alpha + l->beta;
        double lnG = (log(l->alpha * l->A) - log(l->beta * l->B)) / s;
        double lnN = lnG + l->beta / s * log(C / k);
        n = exp(lnN);
        d = exp(log(C / k) - lnN);
        L = l->E + l->A * exp(-l->alpha * lnN) + l->B * pow(d, -l->beta);
    }
    if (N) *N = n;
    if (D) *D = d;
    if (loss) *loss = L;
}

double fg_scale_law_compute_for(const fg_scale_law *l, double k, double loss) {
    const double C0 = 1e20;
    double L0;
    fg_scale_law_optimal(l, k, C0, NULL, NULL, &L0);
    if (isnan(L0)) return NAN;
    if (loss <= l->E) return INFINITY;
    double gamma = l->alpha * l->beta / (l->alpha + l->beta);
    // L*(C) - E = (L0 - E) (C / C0)^-gamma
    return C0 * exp(log((L0 - l->E) / (loss - l->E)) / gamma);
}

double fg_scale_multiplier(const fg_scale_law *x, double kx, const fg_scale_law *y, double ky, double C) {
    double Lx;
    fg_scale_law_optimal(x, kx, C, NULL, NULL, &Lx);
    if (isnan(Lx)) return NAN;
    return fg_scale_law_compute_for(y, ky, Lx) / C;
}

int fg_scale_multiplier_ci(const fg_scale_fit *x, double kx, const fg_scale_fit *y, double ky, double C, double level,
                           double *lo, double *hi) {
    int n = FG_MIN(x->n_boot, y->n_boot), m = 0;
    *lo = *hi = NAN;
    if (n <= 0) return 0;
    double *v = malloc(sizeof(double) * (size_t)n);
    if (!v) return 0;
    for (int i = 0; i < n; i++) {
        double r = fg_scale_multiplier(&x->boot[i], kx, &y->boot[i], ky, C);
        if (!isnan(r)) v[m++] = r; // INFINITY sorts last and is kept: "y never gets there" is an answer
    }
    fg_scale_percentiles(v, m, level, lo, hi);
    free(v);
    return m;
}
