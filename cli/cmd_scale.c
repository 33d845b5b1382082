// cmd_scale.c: `frugal scale`: runs a sweep of training runs (dense GQA and MLA + MoE at several
// widths and token counts, or iso-FLOP budgets), fits L(N, D) = E + A/N^alpha + B/D^beta per
// family with bootstrap intervals, and reports the compute-optimal tokens per parameter and the
// compute multiplier of MLA + MoE over dense at equal loss, with plots (SVG) and JSON.
// docs/scaling.md explains how to read the output.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "frugal_scale.h"

#define MAXL 32  // entries of a list option
#define NREP 6   // budgets reported in grid mode (log-spaced over the measured range)

// "32,64,96" -> ints; "1M,2.5M" / "1e13,3e13" -> doubles (SI suffixes). -1 after printing the error.
static int parse_list(const char *opt, const char *s, double *v, int cap, int *n) {
    *n = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s ? s : "");
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n == cap) {
            char m[128];
            snprintf(m, sizeof m, "--%s takes at most %d values", opt, cap);
            cli_fail("scale", m, NULL);
            return -1;
        }
        if (fg_si_parse(t, &v[*n]) || !(v[*n] > 0)) {
            char m[256];
            snprintf(m, sizeof m, "--%s: '%s' is not a positive number", opt, t);
            cli_fail("scale", m, "a comma-separated list such as 32,64,96 or 1M,2M (SI suffixes K M G T)");
            return -1;
        }
        (*n)++;
    }
    return 0;
}

static void fmt_dur(char *b, size_t cap, double s) {
    if (!(s >= 0) || !isfinite(s)) snprintf(b, cap, "?");
    else if (s < 60) snprintf(b, cap, "%.0fs", s);
    else if (s < 3600) snprintf(b, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(b, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

static const char *si(char *b, double v) { return fg_si_format(b, 32, v, 0); }

typedef struct {
    int n;                 // points
    fg_scale_point p[512];
    double C[512];         // the ledger's training FLOPs of each point's run
    double k;              // median training FLOPs per active parameter and token
    double cmin, cmax;     // measured compute range
    int fitted;
    fg_scale_fit fit;
} family_data;

static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

// Percentile interval over replicates of a function of one family's law.
typedef double (*law_fn)(const fg_scale_law *l, double k, double arg);
static double f_tpp(const fg_scale_law *l, double k, double C) { double N, D; fg_scale_law_optimal(l, k, C, &N, &D, NULL); return D / N; }
static double f_cfor(const fg_scale_law *l, double k, double L) { return fg_scale_law_compute_for(l, k, L); }
static void boot_ci(const family_data *f, law_fn fn, double arg, double level, double *lo, double *hi) {
    double *v = malloc(sizeof(double) * (size_t)(f->fit.n_boot + 1));
    int m = 0;
    for (int i = 0; v && i < f->fit.n_boot; i++) { double x = fn(&f->fit.boot[i], f->k, arg); if (!isnan(x)) v[m++] = x; }
    fg_scale_percentiles(v, m, level, lo, hi);
    free(v);
}

static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.6g", v);
    else if (isinf(v) && v > 0) fprintf(f, "\"inf\"");
    else fprintf(f, "null");
}

int cmd_scale(int argc, char **argv) {
    fg_scale_sweep_opts so;
    fg_scale_sweep_opts_default(&so);
    fg_scale_fit_opts fo;
    fg_scale_fit_opts_default(&fo);
    const char *families = "dense,moe", *widths_s = "16,32,48,64", *tokens_s = "0.5M,1M,2M,4M", *budgets_s = NULL;
    const char *at_budget_s = NULL, *corpus = "build/bench-distill/corpus.jsonl", *params_s = "active";
    double at_loss = 0, min_tpp = 0, max_tpp = 0;
    int threads = 1, plan_only = 0, no_train = 0, json = 0;
    cli_opt opts[] = {
        {"out", OPT_STR, &so.out_dir, "sweep directory: one run directory per run, scale.json, plots/"},
        {"families", OPT_STR, &families, "families to train: dense (GQA), moe (MLA + DeepSeekMoE), comma-separated"},
        {"widths", OPT_STR, &widths_s, "hidden sizes (multiples of 16); layers and heads max(2, width/32)"},
        {"tokens", OPT_STR, &tokens_s, "training tokens of each run (grid: every width x every count)"},
        {"budgets", OPT_STR, &budgets_s, "iso-FLOP budgets instead of --tokens: each width trained to each budget"},
        {"min-tpp", OPT_DOUBLE, &min_tpp, "iso-FLOP: skip runs under this many tokens per active parameter (0 = no bound)"},
        {"max-tpp", OPT_DOUBLE, &max_tpp, "iso-FLOP: skip runs over this many tokens per active parameter (0 = no bound)"},
        {"batch", OPT_INT, &so.batch, "sequences per step"},
        {"seq", OPT_INT, &so.seq, "tokens per sequence (<= 128)"},
        {"lr", OPT_FLOAT, &so.lr, "peak learning rate of every run (cosine to lr/10)"},
        {"evals", OPT_INT, &so.evals, "validation points per run (the last one, at the end, is the run's loss)"},
        {"eval-batches", OPT_INT, &so.eval_batches, "batches per validation"},
        {"seed", OPT_U64, &so.seed, "initialisation and data-order seed of every run"},
        {"corpus", OPT_STR, &corpus, "training text when no files are given (make bench-distill builds it)"},
        {"params", OPT_STR, &params_s, "N of the law: active (per token), total, or flops (training FLOPs per token / 6, DeepSeek LLM's M/6)"},
        {"boot", OPT_INT, &fo.n_boot, "bootstrap replicates of each fit"},
        {"level", OPT_DOUBLE, &fo.level, "interval level"},
        {"at-loss", OPT_DOUBLE, &at_loss, "also report the compute each family needs for this loss (0 = off)"},
        {"at-budget", OPT_STR, &at_budget_s, "also report the multiplier at these budgets (FLOPs, comma-separated)"},
        {"threads", OPT_INT, &threads, "OpenMP threads per run (0 = all cores; these small models train best on 1, measured in docs/scaling.md)"},
        {"plan", OPT_FLAG, &plan_only, "print the plan (runs, tokens, FLOPs) and exit"},
        {"no-train", OPT_FLAG, &no_train, "fit what has finished; train nothing"},
        {"json", OPT_FLAG, &json, "print scale.json (every fitted number) instead of the text report"},
        {NULL, 0, NULL, NULL},
    };
    const char *files[64];
    int nf = 0;
    int r = cli_parse("scale", "[options] [DATA_FILES...]  (no files: --corpus)", opts, argc, argv, files, 64, &nf);
    if (r) return r < 0 ? 1 : 0;
    cli_set_threads(threads);
    double wv[MAXL], tv[MAXL], bv[MAXL], av[MAXL];
    int nw, nt = 0, nb = 0, na = 0;
    if (parse_list("widths", widths_s, wv, MAXL, &nw)) return 1;
    if (budgets_s ? parse_list("budgets", budgets_s, bv, MAXL, &nb) : parse_list("tokens", tokens_s, tv, MAXL, &nt)) return 1;
    if (at_budget_s && parse_list("at-budget", at_budget_s, av, MAXL, &na)) return 1;
    int wi[MAXL];
    for (int i = 0; i < nw; i++) wi[i] = (int)wv[i];
    so.widths = wi; so.n_widths = nw;
    so.tokens = tv; so.n_tokens = nt; so.budgets = bv; so.n_budgets = nb;
    so.min_tokens_per_param = min_tpp; so.max_tokens_per_param = max_tpp;
    so.families = 0;
    {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", families);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int fam = fg_scale_family_parse(t);
            if (fam < 0) return cli_fail("scale", fg_last_error(), "--families dense,moe");
            so.families |= 1 << fam;
        }
    }
    int pmode = !strcmp(params_s, "active") ? 0 : !strcmp(params_s, "total") ? 1 : !strcmp(params_s, "flops") ? 2 : -1;
    if (pmode < 0) return cli_fail("scale", "--params must be active, total or flops", NULL);
    if (fo.n_boot < 0 || !(fo.level > 0 && fo.level < 1)) return cli_fail("scale", "--boot must be >= 0 and --level in (0, 1)", NULL);
    const char *data[64];
    int nd = nf;
    for (int i = 0; i < nf; i++) data[i] = files[i];
    if (!nf) data[nd++] = corpus;
    so.data = data; so.n_data = nd;
    fg_scale_run *runs;
    int n;
    if (fg_scale_plan(&so, &runs, &n)) return cli_fail("scale", fg_last_error(), NULL);
    double plan_flops = 0;
    for (int i = 0; i < n; i++) plan_flops += runs[i].tokens * runs[i].flops_per_token;
    char b1[32], b2[32], b3[32];
    if (plan_only) {
        printf("plan: %d runs, %s training FLOPs in all (model FLOPs, docs/cost.md)\n", n, si(b1, plan_flops));
        printf("  %-26s %8s %10s %10s %8s %10s\n", "run", "width", "active", "tokens", "tok/par", "FLOPs");
        for (int i = 0; i < n; i++)
            printf("  %-26s %8d %10s %10s %8.1f %10s%s\n", strrchr(runs[i].dir, '/') + 1, runs[i].width, si(b1, runs[i].params_active),
                   si(b2, runs[i].tokens), runs[i].tokens / runs[i].params_active, si(b3, runs[i].tokens * runs[i].flops_per_token),
                   fg_scale_run_done(&runs[i]) == 1 ? "  (done)" : "");
        free(runs);
        return 0;
    }
    if (!no_train) {
        struct stat sb;
        for (int i = 0; i < nd; i++)
            if (stat(data[i], &sb)) {
                char m[1200];
                snprintf(m, sizeof m, "no training data at '%s'", data[i]);
                free(runs);
                return cli_fail("scale", m, nf ? "check the path" : "build the project's corpus: python3 bench/distill_corpus.py "
                                "build/bench-distill/corpus.jsonl (or pass text/JSONL files)");
            }
    }
    // ---- the sweep: cheapest run first; ETA from this session's measured seconds per FLOP --------
    double t0 = fg_now(), done_flops = 0, done_s = 0, todo = 0;
    for (int i = 0; i < n; i++) if (fg_scale_run_done(&runs[i]) != 1) todo += runs[i].tokens * runs[i].flops_per_token;
    if (!no_train && todo > 0)
        fprintf(stderr, "scale: %d runs in %s (%s training FLOPs still to run)\n", n, so.out_dir, si(b1, todo));
    for (int i = 0; i < n && !no_train; i++) {
        const fg_scale_run *x = &runs[i];
        int d = fg_scale_run_done(x);
        if (d < 0) { free(runs); return cli_fail("scale", fg_last_error(), "delete the run directory to start it again"); }
        if (d == 1) continue;
        double c = x->tokens * x->flops_per_token, ts = fg_now();
        char eta[32];
        fmt_dur(eta, sizeof eta, done_flops > 0 ? done_s / done_flops * todo : NAN);
        fprintf(stderr, "[%d/%d] %s: %s active parameters, %s tokens, %s FLOPs (ETA for the rest %s)\n", i + 1, n,
                strrchr(x->dir, '/') + 1, si(b1, x->params_active), si(b2, x->tokens), si(b3, c), eta);
        if (fg_scale_run_train(&so, x)) {
            char m[1400];
            snprintf(m, sizeof m, "%s: %s", x->dir, fg_last_error());
            free(runs);
            return cli_fail("scale", m, "rerun the same command to resume; finished runs are skipped");
        }
        double dt = fg_now() - ts;
        done_flops += c; done_s += dt; todo -= c;
        fg_scale_result res;
        if (!fg_scale_result_read(x->dir, &res)) {
            char dur[32];
            fmt_dur(dur, sizeof dur, dt);
            fprintf(stderr, "        val loss %.4f in %s\n", res.final_val_loss, dur);
        }
    }
    if (!no_train) { fmt_dur(b1, sizeof b1, fg_now() - t0); fprintf(stderr, "scale: sweep done in %s\n", b1); }
    // ---- collect the finished runs per family ---------------------------------------------------
    family_data *fd = calloc(FG_SCALE_NFAM, sizeof *fd);
    if (!fd) { free(runs); return cli_fail("scale", "out of memory", NULL); }
    double total_wall = 0;
    int nres = 0;
    for (int i = 0; i < n; i++) {
        fg_scale_result res;
        if (fg_scale_run_done(&runs[i]) != 1 || fg_scale_result_read(runs[i].dir, &res)) continue;
        family_data *f = &fd[runs[i].family];
        if (f->n == 512) continue;
        double N = pmode == 0 ? res.params_active : pmode == 1 ? res.params_total : res.flops_per_token / 6;
        f->p[f->n] = (fg_scale_point){N, res.tokens, res.final_val_loss};
        f->C[f->n] = res.train_flops;
        f->n++; nres++;
        total_wall += res.wall_s;
    }
    if (!nres) {
        free(fd); free(runs);
        return cli_fail("scale", "no finished runs to fit", no_train ? "run without --no-train first, with the same --out" : NULL);
    }
    int rc = 0;
    for (int fam = 0; fam < FG_SCALE_NFAM; fam++) {
        family_data *f = &fd[fam];
        if (f->n == 0) continue;
        double kk[512];
        f->cmin = INFINITY; f->cmax = 0;
        for (int i = 0; i < f->n; i++) {
            kk[i] = f->C[i] / (f->p[i].N * f->p[i].D);
            f->cmin = fmin(f->cmin, f->C[i]); f->cmax = fmax(f->cmax, f->C[i]);
        }
        qsort(kk, (size_t)f->n, sizeof *kk, cmp_d);
        f->k = kk[f->n / 2];
        if (f->n < 6) {
            fprintf(stderr, "frugal scale: %s has %d finished runs; a fit needs 6 (hint: add widths or token counts)\n",
                    fg_scale_family_name(fam), f->n);
            continue;
        }
        if (fg_scale_fit_law(f->p, f->n, &fo, &f->fit)) { fprintf(stderr, "frugal scale: %s fit: %s\n", fg_scale_family_name(fam), fg_last_error()); rc = 1; continue; }
        f->fitted = 1;
    }
    // ---- report budgets ---------------------------------------------------------------------------
    double cmin = INFINITY, cmax = 0;
    for (int fam = 0; fam < FG_SCALE_NFAM; fam++)
        if (fd[fam].n) { cmin = fmin(cmin, fd[fam].cmin); cmax = fmax(cmax, fd[fam].cmax); }
    double rb[MAXL + NREP];
    int nrb = 0;
    if (nb) for (int i = 0; i < nb; i++) rb[nrb++] = bv[i];
    else if (nres) for (int i = 0; i < NREP; i++) rb[nrb++] = cmin * pow(cmax / cmin, (double)i / (NREP - 1));
    for (int i = 0; i < na; i++) rb[nrb++] = av[i];
    family_data *fdn = &fd[FG_SCALE_DENSE], *fmo = &fd[FG_SCALE_MOE];
    int both = fdn->fitted && fmo->fitted;
    // ---- scale.json ---------------------------------------------------------------------------------
    char path[1300];
    snprintf(path, sizeof path, "%s/scale.json", so.out_dir);
    FILE *jf = fopen(path, "w");
    if (!jf) { free(runs); free(fd); return cli_fail("scale", "cannot write scale.json", "check --out"); }
    fprintf(jf, "{\n  \"version\": 1,\n  \"law\": \"L(N, D) = E + A / N^alpha + B / D^beta; D = training tokens\",\n  \"N\": \"%s\",\n",
            pmode == 0 ? "active parameters" : pmode == 1 ? "total parameters" : "training FLOPs per token / 6");
    fprintf(jf, "  \"fit\": {\"loss\": \"huber on log-loss\", \"huber_delta\": %g, \"bootstrap\": %d, \"level\": %g},\n", fo.huber_delta,
            fo.n_boot, fo.level);
    fprintf(jf, "  \"measured_compute\": [");
    json_num(jf, nres ? cmin : NAN); fprintf(jf, ", "); json_num(jf, nres ? cmax : NAN);
    fprintf(jf, "],\n  \"families\": {");
    int firstf = 1;
    for (int fam = 0; fam < FG_SCALE_NFAM; fam++) {
        family_data *f = &fd[fam];
        if (!f->n) continue;
        fprintf(jf, "%s\n    \"%s\": {\"points\": [", firstf ? "" : ",", fg_scale_family_name(fam));
        firstf = 0;
        for (int i = 0; i < f->n; i++)
            fprintf(jf, "%s{\"N\": %.6g, \"D\": %.6g, \"loss\": %.6g, \"flops\": %.6g}", i ? ", " : "", f->p[i].N, f->p[i].D, f->p[i].L, f->C[i]);
        fprintf(jf, "],\n      \"flops_per_param_token\": %.6g", f->k);
        if (f->fitted) {
            fprintf(jf, ",\n      \"params\": {");
            for (int k = 0; k < FG_SCALE_NPARAM; k++) {
                fprintf(jf, "%s\"%s\": {\"value\": ", k ? ", " : "", fg_scale_param_name(k));
                json_num(jf, fg_scale_law_param(&f->fit.law, k)); fprintf(jf, ", \"lo\": ");
                json_num(jf, fg_scale_law_param(&f->fit.lo, k)); fprintf(jf, ", \"hi\": ");
                json_num(jf, fg_scale_law_param(&f->fit.hi, k)); fprintf(jf, "}");
            }
            fprintf(jf, "},\n      \"objective\": %.6g, \"replicates\": %d,\n      \"optimal\": [", f->fit.objective, f->fit.n_boot);
            for (int i = 0; i < nrb; i++) {
                double N, D, L, lo, hi;
                fg_scale_law_optimal(&f->fit.law, f->k, rb[i], &N, &D, &L);
                boot_ci(f, f_tpp, rb[i], fo.level, &lo, &hi);
                fprintf(jf, "%s{\"budget\": %.6g, \"extrapolated\": %s, \"N\": ", i ? ", " : "", rb[i],
                        rb[i] > cmax * 1.0001 || rb[i] < cmin * 0.9999 ? "true" : "false");
                json_num(jf, N); fprintf(jf, ", \"D\": "); json_num(jf, D); fprintf(jf, ", \"loss\": "); json_num(jf, L);
                fprintf(jf, ", \"tokens_per_param\": "); json_num(jf, D / N); fprintf(jf, ", \"tokens_per_param_lo\": "); json_num(jf, lo);
                fprintf(jf, ", \"tokens_per_param_hi\": "); json_num(jf, hi); fprintf(jf, "}");
            }
            fprintf(jf, "]");
            if (at_loss > 0) {
                double c = fg_scale_law_compute_for(&f->fit.law, f->k, at_loss), lo, hi;
                boot_ci(f, f_cfor, at_loss, fo.level, &lo, &hi);
                fprintf(jf, ",\n      \"at_loss\": {\"loss\": %g, \"compute\": ", at_loss); json_num(jf, c);
                fprintf(jf, ", \"lo\": "); json_num(jf, lo); fprintf(jf, ", \"hi\": "); json_num(jf, hi);
                fprintf(jf, ", \"extrapolated\": %s}", !(c <= cmax && c >= cmin) ? "true" : "false");
            }
        }
        fprintf(jf, "}");
    }
    fprintf(jf, "\n  },\n  \"multiplier\": {\"of\": \"moe\", \"over\": \"dense\", \"definition\": \"compute dense needs for moe's "
                "compute-optimal loss at the budget, divided by the budget\", \"at\": [");
    for (int i = 0; both && i < nrb; i++) {
        double m = fg_scale_multiplier(&fmo->fit.law, fmo->k, &fdn->fit.law, fdn->k, rb[i]), lo, hi;
        fg_scale_multiplier_ci(&fmo->fit, fmo->k, &fdn->fit, fdn->k, rb[i], fo.level, &lo, &hi);
        fprintf(jf, "%s{\"budget\": %.6g, \"extrapolated\": %s, \"value\": ", i ? ", " : "", rb[i],
                rb[i] > cmax * 1.0001 || rb[i] < cmin * 0.9999 ? "true" : "false");
        json_num(jf, m); fprintf(jf, ", \"lo\": "); json_num(jf, lo); fprintf(jf, ", \"hi\": "); json_num(jf, hi);
        fprintf(jf, ", \"excludes_1\": %s}", lo > 1 || hi < 1 ? "true" : "false");
    }
    fprintf(jf, "]},\n  \"runs\": %d, \"wall_s\": %.1f\n}\n", nres, total_wall);
    fclose(jf);
    // ---- plots --------------------------------------------------------------------------------------
    char pdir[1100];
    snprintf(pdir, sizeof pdir, "%s/plots", so.out_dir);
    mkdir(pdir, 0755);
    int prc = 0;
    {   // loss vs compute: every run, and each family's fitted frontier (dashed beyond the measured range)
        fg_plot *p = fg_plot_new("Validation loss vs training compute", "training compute (FLOPs, model FLOPs of the ledger)",
                                 "final validation loss (nats/token)", 1, 1);
        if (!p) { free(runs); free(fd); return cli_fail("scale", fg_last_error(), NULL); }
        fg_plot_note(p, "points: runs; lines: compute-optimal frontier of the fit; dashed: extrapolation");
        for (int fam = 0; fam < FG_SCALE_NFAM; fam++) {
            family_data *f = &fd[fam];
            if (!f->n) continue;
            double x[512], y[512];
            for (int i = 0; i < f->n; i++) { x[i] = f->C[i]; y[i] = f->p[i].L; }
            char nm[64];
            snprintf(nm, sizeof nm, "%s runs", fam == FG_SCALE_MOE ? "MLA+MoE" : "dense GQA");
            prc |= fg_plot_add(p, nm, x, y, f->n, FG_PLOT_POINTS, fam);
            if (!f->fitted) continue;
            double fx[64], fy[64], ex[64], ey[64];
            int ni = 0, ne = 0;
            double lo = cmin / 3, hi = cmax * 100;
            for (int i = 0; i < 64; i++) {
                double c = lo * pow(hi / lo, i / 63.0), L;
                fg_scale_law_optimal(&f->fit.law, f->k, c, NULL, NULL, &L);
                if (c <= cmax) { fx[ni] = c; fy[ni++] = L; }
                if (c >= cmax * 0.9) { ex[ne] = c; ey[ne++] = L; }
            }
            snprintf(nm, sizeof nm, "%s frontier", fam == FG_SCALE_MOE ? "MLA+MoE" : "dense GQA");
            prc |= fg_plot_add(p, nm, fx, fy, ni, FG_PLOT_LINE, fam);
            prc |= fg_plot_add(p, NULL, ex, ey, ne, FG_PLOT_DASHED, fam);
        }
        snprintf(path, sizeof path, "%s/loss_vs_compute.svg", pdir);
        if (nres) prc |= fg_plot_write(p, path);
        fg_plot_free(p);
    }
    if (fdn->fitted || fmo->fitted) { // iso-FLOP curves of the fit at the report budgets, with their minima
        fg_plot *p = fg_plot_new("Iso-FLOP curves of the fitted laws", "active parameters N", "loss at N, D = C / (k N)", 1, 1);
        fg_plot_note(p, "one curve per budget C and family; diamonds: compute-optimal N; points: runs");
        for (int fam = 0; fam < FG_SCALE_NFAM; fam++) {
            family_data *f = &fd[fam];
            if (!f->fitted) continue;
            double x[512], y[512];
            for (int i = 0; i < f->n; i++) { x[i] = f->p[i].N; y[i] = f->p[i].L; }
            prc |= fg_plot_add(p, fam == FG_SCALE_MOE ? "MLA+MoE runs" : "dense GQA runs", x, y, f->n, FG_PLOT_POINTS, fam);
            for (int i = 0; i < nrb && i < NREP; i++) {
                double Nopt, Lopt, cx[48], cy[48];
                fg_scale_law_optimal(&f->fit.law, f->k, rb[i], &Nopt, NULL, &Lopt);
                if (!isfinite(Nopt)) continue;
                for (int j = 0; j < 48; j++) { // a decade either side of the optimum, cut where the loss passes 1.5x the optimum
                    cx[j] = Nopt * pow(10, (j - 24) / 24.0);
                    cy[j] = fg_scale_law_loss(&f->fit.law, cx[j], rb[i] / (f->k * cx[j]));
                    if (cy[j] > 1.5 * Lopt) cy[j] = NAN;
                }
                char nm[64];
                snprintf(nm, sizeof nm, "%s C=%s", fam == FG_SCALE_MOE ? "moe" : "dense", si(b1, rb[i]));
                prc |= fg_plot_add(p, i == 0 || i == nrb - 1 || i == NREP - 1 ? nm : NULL, cx, cy, 48, FG_PLOT_LINE, fam);
                prc |= fg_plot_mark(p, Nopt, Lopt, NULL, fam);
            }
        }
        snprintf(path, sizeof path, "%s/isoflop.svg", pdir);
        prc |= fg_plot_write(p, path);
        fg_plot_free(p);
    }
    if (both) { // multiplier vs budget with its interval
        fg_plot *p = fg_plot_new("Compute multiplier of MLA+MoE over dense at equal loss", "training compute of MLA+MoE (FLOPs)",
                                 "dense compute / MLA+MoE compute", 1, 1);
        char note[160];
        snprintf(note, sizeof note, "shaded: %.0f%% bootstrap interval; right of the dashed line: extrapolation", fo.level * 100);
        fg_plot_note(p, note);
        double x[64], y[64], lo[64], hi[64];
        for (int i = 0; i < 64; i++) {
            x[i] = cmin * pow(cmax * 100 / cmin, i / 63.0);
            y[i] = fg_scale_multiplier(&fmo->fit.law, fmo->k, &fdn->fit.law, fdn->k, x[i]);
            fg_scale_multiplier_ci(&fmo->fit, fmo->k, &fdn->fit, fdn->k, x[i], fo.level, &lo[i], &hi[i]);
        }
        prc |= fg_plot_band(p, x, lo, hi, 64, 1);
        prc |= fg_plot_add(p, "multiplier (fit)", x, y, 64, FG_PLOT_LINE, 1);
        prc |= fg_plot_hline(p, 1, "1 = no saving");
        prc |= fg_plot_vline(p, cmax, "largest run");
        snprintf(path, sizeof path, "%s/multiplier.svg", pdir);
        prc |= fg_plot_write(p, path);
        fg_plot_free(p);
    }
    if (prc) fprintf(stderr, "frugal scale: a plot failed: %s\n", fg_last_error());
    // ---- report --------------------------------------------------------------------------------------
    if (json) {
        snprintf(path, sizeof path, "%s/scale.json", so.out_dir);
        FILE *f = fopen(path, "r");
        int ch;
        while (f && (ch = fgetc(f)) != EOF) putchar(ch);
        if (f) fclose(f);
    } else {
        fmt_dur(b1, sizeof b1, total_wall);
        printf("scale: %d finished runs (dense %d, moe %d), %s of training in their ledgers; measured compute %s .. %s FLOPs\n",
               nres, fdn->n, fmo->n, b1, si(b2, cmin), si(b3, cmax));
        printf("fit: L(N, D) = E + A/N^alpha + B/D^beta, N = %s, Huber (delta %g) on log-loss, %d bootstrap "
               "replicates, %.0f%% intervals\n",
               pmode == 0 ? "active parameters" : pmode == 1 ? "total parameters" : "training FLOPs per token / 6", fo.huber_delta, fo.n_boot, fo.level * 100);
        for (int fam = 0; fam < FG_SCALE_NFAM; fam++) {
            family_data *f = &fd[fam];
            if (!f->fitted) continue;
            printf("  %-5s (%d runs, k = %.2f FLOPs per N and token)\n", fg_scale_family_name(fam), f->n, f->k);
            for (int k = 0; k < FG_SCALE_NPARAM; k++)
                printf("      %-5s %10.4g  [%.4g, %.4g]\n", fg_scale_param_name(k), fg_scale_law_param(&f->fit.law, k),
                       fg_scale_law_param(&f->fit.lo, k), fg_scale_law_param(&f->fit.hi, k));
        }
        if (nrb && (fdn->fitted || fmo->fitted)) {
            printf("compute-optimal allocation (C = k N D), tokens per active parameter [%.0f%% interval]:\n", fo.level * 100);
            printf("  %10s %6s %10s %10s %8s  %s\n", "budget", "family", "N_opt", "D_opt", "loss", "tokens/param");
            for (int i = 0; i < nrb; i++)
                for (int fam = 0; fam < FG_SCALE_NFAM; fam++) {
                    family_data *f = &fd[fam];
                    if (!f->fitted) continue;
                    double N, D, L, lo, hi;
                    fg_scale_law_optimal(&f->fit.law, f->k, rb[i], &N, &D, &L);
                    boot_ci(f, f_tpp, rb[i], fo.level, &lo, &hi);
                    printf("  %10s %6s %10s %10s %8.4f  %.3g [%.3g, %.3g]%s\n", si(b1, rb[i]), fg_scale_family_name(fam), si(b2, N),
                           si(b3, D), L, D / N, lo, hi, rb[i] > cmax * 1.0001 || rb[i] < cmin * 0.9999 ? "  EXTRAPOLATED" : "");
                }
        }
        if (both) {
            printf("compute multiplier of MLA+MoE over dense at equal loss (dense compute needed / MLA+MoE compute) [%.0f%% interval]:\n",
                   fo.level * 100);
            for (int i = 0; i < nrb; i++) {
                double m = fg_scale_multiplier(&fmo->fit.law, fmo->k, &fdn->fit.law, fdn->k, rb[i]), lo, hi;
                fg_scale_multiplier_ci(&fmo->fit, fmo->k, &fdn->fit, fdn->k, rb[i], fo.level, &lo, &hi);
                printf("  %10s  %.3g [%.3g, %.3g]  %s%s\n", si(b1, rb[i]), m, lo, hi,
                       lo > 1 ? "interval above 1" : hi < 1 ? "interval below 1" : "interval includes 1",
                       rb[i] > cmax * 1.0001 || rb[i] < cmin * 0.9999 ? "  EXTRAPOLATED" : "");
            }
        }
        if (at_loss > 0)
            for (int fam = 0; fam < FG_SCALE_NFAM; fam++) {
                family_data *f = &fd[fam];
                if (!f->fitted) continue;
                double c = fg_scale_law_compute_for(&f->fit.law, f->k, at_loss), lo, hi;
                boot_ci(f, f_cfor, at_loss, fo.level, &lo, &hi);
                printf("loss %g: %s needs %s FLOPs [%s, %s]%s\n", at_loss, fg_scale_family_name(fam), si(b1, c), si(b2, lo), si(b3, hi),
                       c <= cmax && c >= cmin ? "" : "  EXTRAPOLATED");
            }
        printf("json: %s/scale.json  plots: %s/*.svg\n", so.out_dir, pdir);
    }
    for (int fam = 0; fam < FG_SCALE_NFAM; fam++) fg_scale_fit_free(&fd[fam].fit);
    free(fd);
    free(runs);
    return rc;
}
