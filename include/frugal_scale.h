// frugal_scale.h: the scaling-law lab (src/scale/, docs/scaling.md): fits of
// L(N, D) = E + A / N^alpha + B / D^beta with bootstrap intervals, the compute-optimal frontier and
// the compute multiplier of one family over another, a dependency-free SVG plotter, and the sweep
// of training runs that feeds them. The CLI (`frugal scale`, `frugal plot`) sees only this header
// and include/frugal.h, frugal_tools.h. Nothing here prints; errors go through fg_last_error().
#ifndef FRUGAL_SCALE_H
#define FRUGAL_SCALE_H

#include <stddef.h>
#include <stdint.h>

#include "frugal_tools.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- the law and its fit (src/scale/fit.c) --------------------------------------------------
// One observation: N parameters (frugal uses active parameters per token), D training tokens,
// L the final validation loss (nats/token). All > 0.
typedef struct { double N, D, L; } fg_scale_point;
typedef struct { double E, A, B, alpha, beta; } fg_scale_law;
#define FG_SCALE_NPARAM 5 // E, A, B, alpha, beta (in that order wherever they are indexed)

typedef struct {
    double huber_delta;   // Huber threshold on log-loss residuals (Chinchilla: 1e-3)
    int n_boot;           // bootstrap replicates (resampled points, refitted); 0 = no intervals
    double level;         // interval level, e.g. 0.90 (percentile interval of the replicates)
    uint64_t seed;        // bootstrap resampling
    int max_iter;         // BFGS iterations per start
} fg_scale_fit_opts;
void fg_scale_fit_opts_default(fg_scale_fit_opts *o); // 1e-3, 200 replicates, 0.90, seed 1, 400 iterations

typedef struct {
    fg_scale_law law;     // the point estimate (best of every start)
    fg_scale_law lo, hi;  // percentile interval at opts.level (equal to law when n_boot == 0)
    double objective;     // mean Huber loss at law
    int n_points;
    int n_boot;           // replicates in boot (those whose fit converged to finite values)
    fg_scale_law *boot;   // (n_boot) replicate fits, malloc'd; fg_scale_fit_free releases them
} fg_scale_fit;

// Chinchilla's approach 3: minimises sum_i Huber_delta(log Lhat(N_i, D_i) - log L_i) over
// (log A, log B, log E, alpha, beta) with BFGS from a grid of starts (the best starts of the grid
// are refined; the lowest objective wins); then n_boot replicates, each a fit to n points drawn
// with replacement, started from the point estimate. Deterministic for opts.seed; replicates run
// in parallel (OpenMP) without changing the result. n >= 6 points. Returns 0, or -1 with an error
// (too few points, a point that is not positive and finite, no start converging).
int fg_scale_fit_law(const fg_scale_point *p, int n, const fg_scale_fit_opts *o, fg_scale_fit *out);
void fg_scale_fit_free(fg_scale_fit *f);
static inline double fg_scale_law_param(const fg_scale_law *l, int i) {
    return i == 0 ? l->E : i == 1 ? l->A : i == 2 ? l->B : i == 3 ? l->alpha : l->beta;
}
const char *fg_scale_param_name(int i); // "E", "A", "B", "alpha", "beta"

// Loss the law predicts for N parameters and D tokens.
double fg_scale_law_loss(const fg_scale_law *l, double N, double D);
// The compute-optimal split of a budget C = k * N * D FLOPs (k: training FLOPs per parameter and
// token, about 6): minimises L(N, C / (k N)) in closed form. Any output pointer may be NULL.
void fg_scale_law_optimal(const fg_scale_law *l, double k, double C, double *N, double *D, double *loss);
// The smallest budget whose compute-optimal loss is <= loss; INFINITY when loss <= E (never).
double fg_scale_law_compute_for(const fg_scale_law *l, double k, double loss);
// Compute multiplier of family x over family y at budget C: the budget y needs to reach x's
// compute-optimal loss at C, divided by C (> 1: x saves compute). INFINITY when y cannot reach it.
double fg_scale_multiplier(const fg_scale_law *x, double kx, const fg_scale_law *y, double ky, double C);
// The same over paired replicates (x->boot[i] with y->boot[i]): the percentile interval at level.
// Returns the number of replicate pairs used (0: no intervals; *lo = *hi = NAN).
int fg_scale_multiplier_ci(const fg_scale_fit *x, double kx, const fg_scale_fit *y, double ky, double C, double level,
                           double *lo, double *hi);
// Percentile interval of v[0..n) at level (sorted in place); NAN when n == 0.
void fg_scale_percentiles(double *v, int n, double level, double *lo, double *hi);

// ---- SVG plots (src/scale/svg.c) -------------------------------------------------------------
// A figure: one set of axes (linear or log10 each), a title, axis labels, series drawn as lines,
// markers or both, shaded bands (an interval around a line), and a legend. Written as plain SVG
// 1.1 that any browser opens; no fonts or scripts are referenced beyond generic sans-serif.
typedef struct fg_plot fg_plot;
enum { FG_PLOT_LINE = 1, FG_PLOT_POINTS = 2, FG_PLOT_DASHED = 4 };
// NULL only when memory runs out. Free with fg_plot_free.
fg_plot *fg_plot_new(const char *title, const char *xlabel, const char *ylabel, int logx, int logy);
void fg_plot_free(fg_plot *p);
// Adds a series (copied). style: FG_PLOT_* bits; color: index into the palette (-1: next).
// Points that are not finite (or not > 0 on a log axis) are skipped. name may be NULL (no legend).
int fg_plot_add(fg_plot *p, const char *name, const double *x, const double *y, int n, int style, int color);
// Adds a shaded band between lo and hi over x (copied), in color's tint.
int fg_plot_band(fg_plot *p, const double *x, const double *lo, const double *hi, int n, int color);
// A labelled marker (e.g. an iso-FLOP minimum) and a horizontal or vertical reference line.
int fg_plot_mark(fg_plot *p, double x, double y, const char *label, int color);
int fg_plot_hline(fg_plot *p, double y, const char *label);
// A note under the title (e.g. "shaded: 90% interval; right of the dashed line: extrapolation").
void fg_plot_note(fg_plot *p, const char *note);
int fg_plot_vline(fg_plot *p, double x, const char *label);
// Writes the figure to path (atomically: path.tmp, renamed). -1 with an error when nothing can
// be drawn (no finite point) or the file cannot be written.
int fg_plot_write(const fg_plot *p, const char *path);

// ---- the sweep (src/scale/sweep.c) -----------------------------------------------------------
// Two families at matched width: dense GQA, and MLA + DeepSeekMoE (8 routed experts, top-2, one
// shared expert; the experts are as wide as the dense FFN / 3, so both have about the same active
// parameters at the same width and the MoE model about 2.5x the FFN parameters in total).
enum { FG_SCALE_DENSE = 0, FG_SCALE_MOE = 1, FG_SCALE_NFAM = 2 };
const char *fg_scale_family_name(int family); // "dense", "moe"
int fg_scale_family_parse(const char *s);     // "dense" | "moe" -> FG_SCALE_*, -1 with an error
// The config of a family at width d (hidden size; multiple of 16, 16..1024): layers max(2, d / 32),
// heads max(2, d / 32), byte-level vocabulary, context 128. -1 with an error for a bad width.
int fg_scale_family_config(int family, int width, fg_config *c);

typedef struct {
    int family, width;
    double tokens;        // planned training tokens (steps * batch * seq)
    int64_t steps;
    double params_active, params_total;
    double flops_per_token; // training FLOPs per token (the ledger's convention, at seq)
    char dir[1024];       // OUT/<family>-w<width>-t<tokens>
} fg_scale_run;

typedef struct {
    const char *const *data; int n_data;  // corpus files (text or JSONL {"text"}); byte-level
    const char *out_dir;
    int families;          // bit mask: 1 << FG_SCALE_DENSE | 1 << FG_SCALE_MOE
    const int *widths; int n_widths;      // grid mode: every width x every token count
    const double *tokens; int n_tokens;
    const double *budgets; int n_budgets; // iso-FLOP mode (when n_budgets > 0): for every budget,
                                          //   each width, trained for budget / flops_per_token tokens
    double min_tokens_per_param;          // iso-FLOP mode: skip runs with fewer tokens per active
    double max_tokens_per_param;          //   parameter than this, or more (0 = no bound)
    int batch, seq, eval_batches, evals;  // evals: validation points per run (the last at the end)
    float lr;
    uint64_t seed;
} fg_scale_sweep_opts;
void fg_scale_sweep_opts_default(fg_scale_sweep_opts *o);

// The plan: every run of the sweep, cheapest first. *runs is malloc'd (caller frees). -1 with an
// error for bad options (no family, no widths, no tokens/budgets, a bad width).
int fg_scale_plan(const fg_scale_sweep_opts *o, fg_scale_run **runs, int *n);
// 1 when run->dir holds a finished run (its ledger at the planned steps), 0 when not, -1 on error.
int fg_scale_run_done(const fg_scale_run *run);
// Trains one run (a fresh start, or a resume from the checkpoint an interrupted run left), quietly.
int fg_scale_run_train(const fg_scale_sweep_opts *o, const fg_scale_run *run);

// What a finished run measured, read from RUN_DIR/ledger.json and RUN_DIR/log.jsonl.
typedef struct {
    char dir[1024];
    int family;           // from the run's config (attention type and experts); -1 if neither
    double params_active, params_total, tokens, train_flops, flops_per_token, wall_s;
    double final_val_loss; // the last validation loss of the log (NAN: none)
} fg_scale_result;
int fg_scale_result_read(const char *run_dir, fg_scale_result *r);

// A run's curves from log.jsonl for `frugal plot`: training loss per step, validation loss per
// step, and per MoE layer the coefficient of variation of its routed-expert load per step (0 =
// perfectly balanced). Arrays malloc'd; fg_scale_curves_free releases them.
typedef struct {
    int n_train, n_val, n_layers, n_load; // n_load steps with load statistics
    double *train_step, *train_loss, *val_step, *val_loss;
    int *layer;           // (n_layers) MoE layer indices
    double *load_step;    // (n_load)
    double *load_cv;      // (n_layers, n_load)
} fg_scale_curves;
int fg_scale_curves_read(const char *run_dir, fg_scale_curves *c);
void fg_scale_curves_free(fg_scale_curves *c);

#ifdef __cplusplus
}
#endif
#endif
