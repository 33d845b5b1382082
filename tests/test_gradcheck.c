// test_gradcheck.c: finite-difference gradient checks for every parameter type, on tiny configs
// covering MLA (with and without q compression), GQA with biases, softmax/sigmoid scoring, the
// three top-k methods, shared experts, tied embeddings, YaRN, the sequence balance loss and
// multi-token prediction (D = 1 and 2: the MTP blocks, eh_proj, the two input norms, the depth's
// head norm, and the shared embedding and head through every depth).
//
// For each trained tensor we compare the directional derivative along a random direction d:
// (L(p + h d) - L(p - h d)) / 2h  against  <grad, d>. Aggregating over a whole tensor keeps the
// fp32 rounding noise far below the signal; a wrong gradient for any single entry type shows up.
#include <string.h>

#include "model/model.h"
#include "test.h"

static fg_step gc; // the balance weight in, the losses out

static double loss_at(fg_model *m, const int32_t *in, const int32_t *tg, int B, int T) {
    if (fg_model_forward(m, in, tg, B, T, &gc)) { fprintf(stderr, "%s\n", fg_last_error()); exit(1); }
    return gc.loss; // CE + balance + lambda/D * the MTP depths' CE
}

// Routing decisions of the last forward, concatenated over MoE layers (to detect a flip: top-k
// selection is piecewise constant, so a finite difference across a flip is meaningless).
static void routing_of(const fg_model *m, int *out, int N) {
    int K = m->cfg.num_experts_per_tok, o = 0;
    for (int l = 0; l < fg_config_n_blocks(&m->cfg); l++)
        if (fg_config_is_moe_layer(&m->cfg, l)) { memcpy(out + o, m->acts[l].idx, sizeof(int) * N * K); o += N * K; }
}

static void check_config_mtp(const char *label, fg_config *c, float alpha, float mtp_lambda) {
    fg_model *m = fg_model_create(c);
    CHECK_MSG(m != NULL, "%s: %s", label, fg_last_error());
    if (!m) return;
    fg_model_init_weights(m, 7);
    fg_rng r;
    fg_rng_seed(&r, 11);
    // Larger, non-trivial weights than training init so every path carries signal.
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        for (size_t j = 0; j < t->numel; j++) {
            if (t->flags & FG_TENSOR_BUFFER) p[j] = 0.05f * fg_rng_normal(&r);
            else if (t->ndim == 1) p[j] = (strstr(t->name, ".bias") ? 0.0f : 1.0f) + 0.2f * fg_rng_normal(&r);
            else p[j] = 0.15f * fg_rng_normal(&r);
        }
    }
    gc.balance_alpha = alpha;
    gc.mtp_lambda = mtp_lambda;
    int B = 2, T = 9, N = B * T;
    int32_t in[18], tg[18];
    for (int i = 0; i < N; i++) { in[i] = (int32_t)fg_rng_below(&r, c->vocab_size); tg[i] = (int32_t)fg_rng_below(&r, c->vocab_size); }
    tg[3] = -1; // an ignored position
    loss_at(m, in, tg, B, T);
    if (alpha > 0) CHECK_MSG(gc.bal_loss > 1e-3, "%s: balance loss not active (%g)", label, gc.bal_loss);
    for (int k = 0; k < c->num_nextn_predict_layers; k++)
        CHECK_MSG(gc.mtp_ce[k] > 1, "%s: MTP depth %d loss not active (%g)", label, k + 1, gc.mtp_ce[k]);
    fg_model_zero_grad(m);
    CHECK(fg_model_backward(m, 1.0f) == 0);
    size_t route_bytes = sizeof(int) * N * c->num_experts_per_tok * fg_config_n_blocks(c);
    int *route0 = calloc(1, route_bytes), *route_p = calloc(1, route_bytes), *route_m = calloc(1, route_bytes);
    if (c->n_routed_experts) routing_of(m, route0, N);
    float *g = malloc(sizeof(float) * m->n_params);
    memcpy(g, m->grads, sizeof(float) * m->n_params);
    int checked = 0, bad = 0;
    double worst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        if (t->flags & FG_TENSOR_BUFFER) continue;
        float *p = m->params + t->offset;
        float *d = malloc(sizeof(float) * t->numel), *save = malloc(sizeof(float) * t->numel);
        memcpy(save, p, sizeof(float) * t->numel);
        double gn = 0, err = 1e9, fd = 0, gd = 0;
        for (size_t j = 0; j < t->numel; j++) gn += fabs(g[t->offset + j]);
        if (gn == 0) { free(d); free(save); continue; } // e.g. an expert no token chose
        // A wrong gradient is wrong along every direction; fp32 rounding noise in the two losses is
        // not (it can reach ~1% on a tensor with a small gradient). So a tensor past half the
        // tolerance is measured again along a second direction, and the better agreement counts.
        for (int dir = 0; dir < 2 && err > 1e-2; dir++) {
            double gdd = 0;
            for (size_t j = 0; j < t->numel; j++) { d[j] = fg_rng_normal(&r); gdd += (double)g[t->offset + j] * d[j]; }
            double h = 2e-3, lp = 0, lm = 0;
            for (int tries = 0; tries < 6; tries++, h *= 0.5) {
                for (size_t j = 0; j < t->numel; j++) p[j] = save[j] + (float)h * d[j];
                lp = loss_at(m, in, tg, B, T);
                routing_of(m, route_p, N);
                for (size_t j = 0; j < t->numel; j++) p[j] = save[j] - (float)h * d[j];
                lm = loss_at(m, in, tg, B, T);
                routing_of(m, route_m, N);
                if (!memcmp(route_p, route0, route_bytes) && !memcmp(route_m, route0, route_bytes)) break;
            }
            memcpy(p, save, sizeof(float) * t->numel);
            double fdd = (lp - lm) / (2 * h), e = fabs(fdd - gdd) / fmax(fabs(gdd), 1e-3);
            if (e < err) { err = e; fd = fdd; gd = gdd; }
        }
        checked++;
        if (err > worst) worst = err;
        if (err > 2e-2) { bad++; fprintf(stderr, "%s: %s fd %.6g analytic %.6g rel %.3g\n", label, t->name, fd, gd, err); }
        free(d); free(save);
    }
    printf("%-34s %3d tensors checked, worst rel err %.2e\n", label, checked, worst);
    CHECK_MSG(bad == 0, "%s: %d tensors with wrong gradients", label, bad);
    CHECK_MSG(checked > 8, "%s: only %d tensors checked", label, checked);
    free(g); free(route0); free(route_p); free(route_m);
    fg_model_free(m);
}

static void check_config(const char *label, fg_config *c, float alpha) { check_config_mtp(label, c, alpha, 0); }

int main(void) {
    fg_config c;
    fg_config_preset(&c, "tiny"); // MLA + q-LoRA, sigmoid, noaux_tc with 2 groups, shared expert
    check_config("tiny (sigmoid noaux_tc groups)", &c, 0.0f);
    check_config("tiny + balance loss", &c, 0.1f);

    fg_config_preset(&c, "tiny"); // softmax greedy, no q compression, 2 shared, YaRN
    c.q_lora_rank = 0; c.scoring_func = FG_SCORE_SOFTMAX; c.topk_method = FG_TOPK_GREEDY; c.n_group = 1;
    c.topk_group = 1; c.n_shared_experts = 2; c.norm_topk_prob = 0; c.routed_scaling_factor = 2.0f;
    c.rope_yarn = 1; c.rope_factor = 4; c.rope_original_max_position_embeddings = 16; c.rope_mscale_all_dim = 0.707f;
    check_config("softmax greedy no-qlora yarn", &c, 0.05f);

    fg_config_preset(&c, "tiny"); // group-limited greedy, softmax, 4 groups, 3 layers all MoE
    c.scoring_func = FG_SCORE_SOFTMAX; c.topk_method = FG_TOPK_GROUP_LIMITED_GREEDY; c.n_group = 4;
    c.topk_group = 2; c.num_experts_per_tok = 3; c.num_hidden_layers = 3; c.first_k_dense_replace = 0;
    check_config("group_limited_greedy", &c, 0.0f);

    fg_config_preset(&c, "tiny"); // dense GQA with biases, rotate-half, tied embeddings
    c.attn_type = FG_ATTN_GQA; c.num_attention_heads = 4; c.num_key_value_heads = 2; c.head_dim = 8;
    c.attention_bias = 1; c.rope_interleave = 0; c.n_routed_experts = 0; c.tie_word_embeddings = 1;
    check_config("gqa dense bias tied", &c, 0.0f);
    c.num_nextn_predict_layers = 1;
    check_config_mtp("gqa dense tied + MTP D=1", &c, 0.0f, 0.3f);

    fg_config_preset(&c, "tiny"); // MLA + MoE with two MTP depths (MoE blocks), balance loss on
    c.num_nextn_predict_layers = 2;
    check_config_mtp("tiny + MTP D=2 + balance", &c, 0.05f, 0.3f);
    return TEST_DONE();
}
