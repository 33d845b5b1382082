// sweep.c: the runs behind a scaling-law fit. Two model families at matched width (dense GQA and
// MLA + DeepSeekMoE), a plan of runs (a grid of widths x token counts, or iso-FLOP budgets with
// every width trained for budget / FLOPs-per-token tokens), one ordinary training run per entry
// (run directory with ckpt.fgck, log.jsonl and ledger.json), and readers of what finished runs
// measured (ledger, final validation loss, curves for plotting).
//
// What it deliberately does not do: no printing (the CLI reports progress between runs), no
// choice of learning rate per size (one lr for every run; docs/scaling.md says why that biases
// small and large models alike), no data preparation (byte-level ids of the given files).
// Invariants: a run directory's name fixes its family, width and steps, so a finished run is
// recognised by its ledger and skipped; an interrupted one resumes bit-exactly from its checkpoint.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/json.h"
#include "frugal_scale.h"
#include "util.h"

const char *fg_scale_family_name(int family) { return family == FG_SCALE_DENSE ? "dense" : family == FG_SCALE_MOE ? "moe" : "?"; }

int fg_scale_family_parse(const char *s) {
    if (!strcmp(s, "dense")) return FG_SCALE_DENSE;
    if (!strcmp(s, "moe")) return FG_SCALE_MOE;
    return fg_set_error("unknown family '%s' (hint: dense or moe)", s);
}

int fg_scale_family_config(int family, int d, fg_config *c) {
    if (family != FG_SCALE_DENSE && family != FG_SCALE_MOE) return fg_set_error("unknown family %d", family);
    if (d < 16 || d > 1024 || d % 16) return fg_set_error("width %d must be a multiple of 16 in [16, 1024]", d);
    // Start from the presets the families come from, so defaults (rope, norms) stay theirs.
    if (fg_config_preset(c, family == FG_SCALE_MOE ? "demo" : "demo-student")) return -1;
    int H = FG_MAX(2, d / 32), L = FG_MAX(2, d / 32);
    c->hidden_size = d;
    c->num_hidden_layers = L;
    c->num_attention_heads = H;
    c->intermediate_size = 3 * d; // dense FFN (SwiGLU)
    c->max_position_embeddings = 128;
    if (family == FG_SCALE_DENSE) {
        c->num_key_value_heads = H / 2;
        c->first_k_dense_replace = L;
        c->head_dim = d / H;
    } else {
        // MLA: per-head nope/value dims d/H, rope half of that, latent d/2; MoE from layer 1:
        // 8 routed experts of width d, top-2, one shared: 3 active experts of width d = the dense
        // FFN's 3d, so active parameters match the dense family's at the same width.
        c->qk_nope_head_dim = d / H;
        c->v_head_dim = d / H;
        c->qk_rope_head_dim = FG_MAX(2, d / H / 2);
        c->kv_lora_rank = d / 2;
        c->q_lora_rank = 0;
        c->moe_intermediate_size = d;
        c->first_k_dense_replace = 1;
        c->n_routed_experts = 8; c->num_experts_per_tok = 2; c->n_shared_experts = 1;
        c->head_dim = d / H;
    }
    return fg_config_validate(c);
}

void fg_scale_sweep_opts_default(fg_scale_sweep_opts *o) {
    memset(o, 0, sizeof *o);
    o->out_dir = "runs/scale";
    o->families = 1 << FG_SCALE_DENSE | 1 << FG_SCALE_MOE;
    o->batch = 16; o->seq = 128; o->eval_batches = 8; o->evals = 4;
    o->lr = 3e-3f;
    o->seed = 1337;
}

static double flops_per_token(const fg_config *c, int seq) {
    fg_cost_model cm;
    fg_cost_opts co = {0, seq, 1, seq, FG_F32, 1};
    return fg_cost_model_compute(&cm, c, &co) ? NAN : cm.train_per_token;
}

static int cmp_run(const void *a, const void *b) {
    const fg_scale_run *x = a, *y = b;
    double cx = x->tokens * x->flops_per_token, cy = y->tokens * y->flops_per_token;
    return cx < cy ? -1 : cx > cy ? 1 : strcmp(x->dir, y->dir);
}

int fg_scale_plan(const fg_scale_sweep_opts *o, fg_scale_run **runs, int *n) {
    *runs = NULL; *n = 0;
    if (!(o->families & 3)) return fg_set_error("no model family selected (hint: --families dense,moe)");
    if (o->n_widths < 1) return fg_set_error("no widths (hint: --widths 32,64,96)");
    if (o->n_budgets < 1 && o->n_tokens < 1) return fg_set_error("neither token counts nor FLOP budgets (hint: --tokens 1M,2M or --budgets 1e13,3e13)");
    if (o->batch < 1 || o->seq < 2 || o->seq > 128 || o->evals < 1 || o->eval_batches < 1 || !(o->lr > 0))
        return fg_set_error("bad sweep options: batch >= 1, 2 <= seq <= 128, evals >= 1, eval batches >= 1, lr > 0");
    int per = o->n_budgets > 0 ? o->n_budgets : o->n_tokens, cap = 2 * o->n_widths * per;
    fg_scale_run *r = calloc((size_t)cap, sizeof *r);
    if (!r) return fg_set_error("out of memory");
    int m = 0;
    double tok_step = (double)o->batch * o->seq;
    for (int fam = 0; fam < FG_SCALE_NFAM; fam++) {
        if (!(o->families & (1 << fam))) continue;
        for (int w = 0; w < o->n_widths; w++) {
            fg_config c;
            if (fg_scale_family_config(fam, o->widths[w], &c)) { free(r); return -1; }
            int64_t tot, act;
            fg_config_param_counts(&c, &tot, &act);
            double fpt = flops_per_token(&c, o->seq);
            for (int j = 0; j < per; j++) {
                double tokens = o->n_budgets > 0 ? o->budgets[j] / fpt : o->tokens[j];
                if (!(tokens > 0) || !isfinite(tokens)) { free(r); return fg_set_error("token count or budget %d is not positive", j); }
                if (o->n_budgets > 0 && ((o->min_tokens_per_param > 0 && tokens < o->min_tokens_per_param * act) ||
                                         (o->max_tokens_per_param > 0 && tokens > o->max_tokens_per_param * act)))
                    continue;
                int64_t steps = (int64_t)llround(tokens / tok_step);
                if (steps < 1) steps = 1;
                int dup = 0;
                for (int k = 0; k < m; k++) dup |= r[k].family == fam && r[k].width == o->widths[w] && r[k].steps == steps;
                if (dup) continue;
                fg_scale_run *x = &r[m++];
                x->family = fam; x->width = o->widths[w]; x->steps = steps; x->tokens = (double)steps * tok_step;
                x->params_active = (double)act; x->params_total = (double)tot; x->flops_per_token = fpt;
                snprintf(x->dir, sizeof x->dir, "%s/%s-w%d-s%lld", o->out_dir, fg_scale_family_name(fam), o->widths[w], (long long)steps);
            }
        }
    }
    if (m == 0) { free(r); return fg_set_error("the plan is empty: every run fell outside the tokens-per-parameter bounds"); }
    qsort(r, (size_t)m, sizeof *r, cmp_run);
    *runs = r; *n = m;
    return 0;
}

int fg_scale_run_done(const fg_scale_run *run) {
    char path[1100];
    snprintf(path, sizeof path, "%s/ledger.json", run->dir);
    struct stat sb;
    if (stat(path, &sb)) return 0;
    fg_ledger_info li;
    if (fg_ledger_read(run->dir, &li)) return -1;
    return li.steps >= (double)run->steps;
}

int fg_scale_run_train(const fg_scale_sweep_opts *o, const fg_scale_run *run) {
    fg_config c;
    if (fg_scale_family_config(run->family, run->width, &c)) return -1;
    char ckpt[1100];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.fgck", run->dir);
    struct stat sb;
    fg_model *m = NULL;
    fg_adamw opt;
    fg_train_state st;
    memset(&opt, 0, sizeof opt);
    memset(&st, 0, sizeof st);
    if (!stat(ckpt, &sb)) { // an interrupted run: continue it
        if (!(m = fg_ckpt_load(ckpt, &opt, &st))) return -1;
        if (!opt.m && fg_adamw_init_for(&opt, m)) { fg_model_free(m); fg_train_state_free(&st); return -1; }
    } else {
        if (!(m = fg_model_create(&c))) return -1;
        fg_model_init_weights(m, o->seed);
        if (fg_adamw_init_for(&opt, m)) { fg_model_free(m); return -1; }
        fg_train_state_init(&st, o->seed);
    }
    fg_train_opts t;
    fg_train_opts_default(&t);
    t.data = o->data; t.n_data = o->n_data;
    t.batch = o->batch; t.seq = o->seq; t.steps = run->steps;
    t.lr = o->lr; t.min_lr = o->lr / 10;
    t.warmup = FG_MIN(50, FG_MAX(1, run->steps / 10));
    t.eval_every = (int)FG_MAX(1, run->steps / o->evals);
    t.eval_batches = o->eval_batches;
    t.save_every = (int)FG_MAX(1, run->steps / 4);
    t.out_dir = run->dir;
    t.progress = 0; t.quiet = 1;
    t.seed = o->seed;
    char tj[256];
    snprintf(tj, sizeof tj, "{\"scale\":{\"family\":\"%s\",\"width\":%d},\"batch\":%d,\"seq\":%d,\"steps\":%lld,\"lr\":%g,\"seed\":%llu}",
             fg_scale_family_name(run->family), run->width, t.batch, t.seq, (long long)t.steps, t.lr, (unsigned long long)t.seed);
    free(st.train_json);
    st.train_json = strdup(tj);
    int rc = st.step >= run->steps ? 0 : fg_train(m, &opt, &st, &t);
    fg_train_state_free(&st);
    fg_adamw_free(&opt);
    fg_model_free(m);
    return rc;
}

// ---- readers ----------------------------------------------------------------------------------
static double jnum(const fg_json *o, const char *k, double def) {
    const fg_json *v = fg_json_get(o, k);
    return v && v->type == FG_JSON_NUMBER ? v->num : def;
}

// Calls fn for every JSON line of run_dir/log.jsonl (torn or foreign lines are skipped).
static int log_each(const char *run_dir, int (*fn)(const fg_json *j, void *ctx), void *ctx) {
    char path[1100];
    snprintf(path, sizeof path, "%s/log.jsonl", run_dir);
    FILE *f = fopen(path, "r");
    if (!f) return fg_set_error("cannot open '%s': %s (hint: pass a directory written by frugal train)", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) > 0) {
        fg_json *j = fg_json_parse(line, (size_t)len, path);
        if (!j) continue;
        rc = fn(j, ctx);
        fg_json_free(j);
    }
    free(line);
    fclose(f);
    return rc;
}

static int last_val(const fg_json *j, void *ctx) {
    double v = jnum(j, "val_loss", NAN);
    if (!isnan(v)) *(double *)ctx = v;
    return 0;
}

int fg_scale_result_read(const char *run_dir, fg_scale_result *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s", run_dir);
    fg_ledger_info li;
    if (fg_ledger_read(run_dir, &li)) return -1;
    r->params_active = li.params_active; r->params_total = li.params_total; r->tokens = li.tokens;
    r->train_flops = li.train_flops; r->flops_per_token = li.flops_per_token; r->wall_s = li.wall_s;
    // MoE when some parameters are inactive per token (routed experts), else dense.
    r->family = li.params_total > li.params_active * 1.0001 ? FG_SCALE_MOE : FG_SCALE_DENSE;
    r->final_val_loss = NAN;
    if (log_each(run_dir, last_val, &r->final_val_loss)) return -1;
    if (isnan(r->final_val_loss)) return fg_set_error("%s/log.jsonl has no validation loss (hint: the run must finish)", run_dir);
    return 0;
}

typedef struct { double *v; int n, cap; } dvec;
static int dpush(dvec *a, double x) {
    if (a->n == a->cap) {
        int nc = a->cap ? 2 * a->cap : 64;
        double *nv = realloc(a->v, sizeof(double) * (size_t)nc);
        if (!nv) return fg_set_error("out of memory");
        a->v = nv; a->cap = nc;
    }
    a->v[a->n++] = x;
    return 0;
}

typedef struct { dvec ts, tl, vs, vl, ls, cv; int layers[64], nl; } curves_ctx;

static int curve_line(const fg_json *j, void *p) {
    curves_ctx *c = p;
    double step = jnum(j, "step", NAN), v = jnum(j, "val_loss", NAN), l = jnum(j, "loss", NAN);
    if (isnan(step)) return 0;
    if (!isnan(v)) return dpush(&c->vs, step) || dpush(&c->vl, v);
    if (isnan(l)) return 0;
    if (dpush(&c->ts, step) || dpush(&c->tl, l)) return -1;
    const fg_json *el = fg_json_get(j, "expert_load");
    if (!el || el->type != FG_JSON_ARRAY || el->n == 0) return 0;
    if (c->nl == 0) {
        for (const fg_json *e = el->child; e && c->nl < 64; e = e->next) c->layers[c->nl++] = (int)jnum(e, "layer", -1);
    }
    if (el->n != c->nl) return 0; // a line that does not match the first: skipped
    if (dpush(&c->ls, step)) return -1;
    for (const fg_json *e = el->child; e; e = e->next)
        if (dpush(&c->cv, jnum(e, "cv", NAN))) return -1;
    return 0;
}

int fg_scale_curves_read(const char *run_dir, fg_scale_curves *out) {
    memset(out, 0, sizeof *out);
    curves_ctx c;
    memset(&c, 0, sizeof c);
    if (log_each(run_dir, curve_line, &c)) {
        free(c.ts.v); free(c.tl.v); free(c.vs.v); free(c.vl.v); free(c.ls.v); free(c.cv.v);
        return -1;
    }
    out->n_train = c.ts.n; out->train_step = c.ts.v; out->train_loss = c.tl.v;
    out->n_val = c.vs.n; out->val_step = c.vs.v; out->val_loss = c.vl.v;
    out->n_load = c.ls.n; out->load_step = c.ls.v;
    out->n_layers = c.ls.n ? c.nl : 0;
    out->layer = malloc(sizeof(int) * (size_t)(c.nl ? c.nl : 1));
    out->load_cv = malloc(sizeof(double) * (size_t)(c.cv.n ? c.cv.n : 1));
    if (!out->layer || !out->load_cv) { free(c.cv.v); fg_scale_curves_free(out); return fg_set_error("out of memory"); }
    memcpy(out->layer, c.layers, sizeof(int) * (size_t)c.nl);
    // transpose (n_load, n_layers) -> (n_layers, n_load)
    for (int s = 0; s < c.ls.n; s++)
        for (int l = 0; l < out->n_layers; l++) out->load_cv[(size_t)l * c.ls.n + s] = c.cv.v[(size_t)s * c.nl + l];
    free(c.cv.v);
    if (out->n_train == 0 && out->n_val == 0) {
        fg_scale_curves_free(out);
        return fg_set_error("%s/log.jsonl has no training or validation lines", run_dir);
    }
    return 0;
}

void fg_scale_curves_free(fg_scale_curves *c) {
    free(c->train_step); free(c->train_loss); free(c->val_step); free(c->val_loss);
    free(c->layer); free(c->load_step); free(c->load_cv);
    memset(c, 0, sizeof *c);
}
