// oracle_case.h: checks frugal against one "case directory" in the oracle layout
// (config.json, model.safetensors, expected.safetensors, optional train.json), as produced by
// ../shared/testdata/oracle (DeepSeek-pinned reference) and tests/ref/ref.py (our PyTorch reference).
// Budgets: logits and loss 1e-5, each gradient 1e-4, loss trajectory 1e-4 (relative, L2 per tensor).
#include <string.h>

#include "formats/json.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "test.h"
#include "train/optim.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, clip, alpha, gamma, mtp_lambda;
    int steps;
} case_train;

static void case_train_load(case_train *t, const char *dir) {
    *t = (case_train){1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 10};
    char path[1024];
    snprintf(path, sizeof path, "%s/train.json", dir);
    size_t len;
    char *text = fg_read_file(path, &len);
    if (!text) return;
    fg_json *j = fg_json_parse(text, len, path);
    free(text);
    if (!j) return;
    const char *names[] = {"lr", "beta1", "beta2", "eps", "weight_decay", "clip", "alpha", "gamma", "mtp_lambda"};
    float *dst[] = {&t->lr, &t->beta1, &t->beta2, &t->eps, &t->weight_decay, &t->clip, &t->alpha, &t->gamma,
                    &t->mtp_lambda};
    for (int i = 0; i < 9; i++) {
        const fg_json *v = fg_json_get(j, names[i]);
        if (v && v->type == FG_JSON_NUMBER) *dst[i] = (float)v->num;
    }
    const fg_json *v = fg_json_get(j, "steps");
    if (v && v->type == FG_JSON_NUMBER) t->steps = (int)v->num;
    fg_json_free(j);
}

static float *read_all(const fg_safetensors *st, const char *name, int64_t *numel) {
    const fg_st_tensor *t = fg_safetensors_find(st, name);
    if (!t) return NULL;
    float *out = malloc(sizeof(float) * (t->numel ? t->numel : 1));
    if (fg_safetensors_read_f32(st, name, out, t->numel)) { free(out); return NULL; }
    if (numel) *numel = t->numel;
    return out;
}

// Returns the number of failed checks for this case.
static int check_case(const char *dir, int verbose) {
    char path[1024];
    int fails = 0;
    fg_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (fg_config_load(&cfg, path, NULL)) { fprintf(stderr, "%s\n", fg_last_error()); return 1; }
    fg_model *m = fg_model_create(&cfg);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!m || fg_model_load_safetensors(m, path)) { fprintf(stderr, "%s\n", fg_last_error()); return 1; }
    fg_safetensors ex;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (fg_safetensors_open(&ex, path)) { fprintf(stderr, "%s\n", fg_last_error()); return 1; }
    case_train tr;
    case_train_load(&tr, dir);
    fg_step ms = {.balance_alpha = tr.alpha, .mtp_lambda = tr.mtp_lambda};
    const fg_st_tensor *it = fg_safetensors_find(&ex, "input_ids");
    int B = (int)it->shape[0], T = (int)it->shape[1], N = B * T, V = cfg.vocab_size;
    float *fin = read_all(&ex, "input_ids", NULL), *ftg = read_all(&ex, "targets", NULL);
    int32_t *in = malloc(sizeof(int32_t) * N), *tg = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) { in[i] = (int32_t)fin[i]; tg[i] = (int32_t)ftg[i]; }

    // logits
    float *want = read_all(&ex, "logits", NULL);
    CHECK(fg_model_forward(m, in, NULL, B, T, &ms) == 0);
    double e_logits = tst_rel_err(m->logits, want, (size_t)N * V);
    CHECK_MSG(e_logits <= 1e-5, "%s: logits rel err %.3g", dir, e_logits);
    fails += e_logits > 1e-5;
    free(want);
    // loss and gradients
    float loss = 0, *wl = read_all(&ex, "loss", NULL);
    CHECK(fg_model_forward(m, in, tg, B, T, &ms) == 0);
    loss = (float)ms.loss;
    double e_loss = fabs(loss - wl[0]) / fabs(wl[0]);
    CHECK_MSG(e_loss <= 1e-5, "%s: loss %.8f want %.8f (rel %.3g)", dir, loss, wl[0], e_loss);
    fails += e_loss > 1e-5;
    fg_model_zero_grad(m);
    CHECK(fg_model_backward(m, 1.0f) == 0);
    double e_grad_max = 0;
    const char *worst = "";
    int n_grads = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        if (t->flags & FG_TENSOR_BUFFER) continue;
        char gname[128];
        snprintf(gname, sizeof gname, "grad.%s", t->name);
        int64_t numel = 0;
        float *g = read_all(&ex, gname, &numel);
        CHECK_MSG(g != NULL, "%s: expected gradient %s missing", dir, gname);
        if (!g) { fails++; continue; }
        double e = tst_rel_err(m->grads + t->offset, g, t->numel);
        n_grads++;
        if (e > e_grad_max) { e_grad_max = e; worst = t->name; }
        CHECK_MSG(e <= 1e-4, "%s: gradient %s rel err %.3g", dir, t->name, e);
        fails += e > 1e-4;
        free(g);
    }
    // AdamW trajectory on the same batch
    int64_t nsteps = 0;
    float *traj = read_all(&ex, "adamw_losses", &nsteps);
    fg_adamw opt;
    fg_adamw_init(&opt, m->n_params, m->n_tensors);
    fg_adamw_opts ao = {tr.beta1, tr.beta2, tr.eps, tr.weight_decay};
    double e_traj = 0;
    for (int s = 0; s < nsteps; s++) {
        CHECK(fg_model_forward(m, in, tg, B, T, &ms) == 0);
        loss = (float)ms.loss;
        double e = fabs(loss - traj[s]) / fabs(traj[s]);
        if (verbose > 1) printf("  step %d loss %.7f want %.7f\n", s, loss, traj[s]);
        e_traj = e > e_traj ? e : e_traj;
        fg_model_zero_grad(m);
        fg_model_backward(m, 1.0f);
        fg_grad_clip(m, tr.clip);
        fg_adamw_step(&opt, m, tr.lr, &ao);
        fg_model_update_routing_bias(m, NULL, tr.gamma);
    }
    CHECK_MSG(e_traj <= 1e-4, "%s: AdamW loss trajectory rel err %.3g", dir, e_traj);
    fails += e_traj > 1e-4;
    if (verbose)
        printf("%-40s logits %.2e  loss %.2e  grads(%d) max %.2e (%s)  adamw(%d) %.2e  %s\n", dir, e_logits, e_loss,
               n_grads, e_grad_max, worst, (int)nsteps, e_traj, fails ? "FAIL" : "ok");
    fg_adamw_free(&opt);
    free(traj); free(fin); free(ftg); free(in); free(tg); free(wl);
    fg_safetensors_close(&ex);
    fg_model_free(m);
    return fails;
}
