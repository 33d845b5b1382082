// test_mtp.c: multi-token prediction at inference and self-speculative decoding.
//
// Oracles:
// - the MTP depths of the batched context (fg_ctx_mtp over the latent cache, chained h^k) against
//   the training forward's MTP probabilities (fg_model_forward with mtp_lambda > 0, itself checked
//   against the PyTorch reference and finite differences in test_reference / test_gradcheck),
//   for D = 2 over MLA + MoE and D = 1 over dense GQA;
// - greedy speculative decoding against plain greedy decoding: identical tokens on 100 prompts,
//   also across calls that continue the same session;
// - speculative sampling against plain sampling at temperature 1 (full, and top_k 4 + top_p 0.9):
//   a chi-square test of homogeneity on the joint distribution of the 2nd and 3rd generated tokens
//   over a 6-token vocabulary (the drafts' rejections and residual draws decide those), 6000
//   samples each (a residual drawn from p instead of max(0, p - q) fails it: chi-square 117 > 67).
#include <math.h>
#include <string.h>

#include "frugal_tools.h"
#include "infer/generate.h"
#include "model_fixture.h"
#include "test.h"

// The context's MTP logits of every position against the training forward's, depth by depth.
static void check_mtp_logits(const char *name, const fg_config *c) {
    fg_model *m = make_model(c, 5);
    int T = 40, V = c->vocab_size, C = c->hidden_size, D = c->num_nextn_predict_layers;
    int32_t tok[40], tgt[40];
    fg_rng r;
    fg_rng_seed(&r, 9);
    for (int i = 0; i < T; i++) tok[i] = (int32_t)fg_rng_below(&r, (uint64_t)V);
    for (int i = 0; i < T; i++) tgt[i] = i + 1 < T ? tok[i + 1] : 0;
    fg_step st = {.mtp_lambda = 0.3f};
    CHECK(fg_model_forward(m, tok, tgt, 1, T, &st) == 0);
    for (int k = 0; k < D; k++) CHECK_MSG(st.mtp_ce[k] > 0, "%s: depth %d has no loss", name, k + 1);
    fg_wstore *ws = fg_wstore_from_model(m, FG_F32);
    fg_ctx_params p = {.n_ctx = 64, .max_len = 64, .max_seqs = 2, .max_batch = 64, .kind = FG_KV_AUTO,
                       .kv_type = FG_F32, .mtp = 1};
    fg_ctx *ctx = fg_ctx_create(ws, &p);
    CHECK_MSG(ctx != NULL, "%s: %s", name, fg_last_error());
    int seq = fg_ctx_seq_new(ctx);
    int32_t seqs[64], pos[64], in[64];
    uint8_t want[64];
    float *h = malloc(sizeof(float) * (size_t)(D + 1) * T * C), *lg = malloc(sizeof(float) * (size_t)T * V);
    float *pr = malloc(sizeof(float) * (size_t)V);
    for (int i = 0; i < T; i++) { seqs[i] = seq; want[i] = 0; }
    fg_batch b = {.n = T, .token = tok, .seq = seqs, .logits = want};
    CHECK(fg_ctx_decode_h(ctx, &b, NULL, h) == 0);
    double worst = 0;
    for (int k = 1; k <= D; k++) {
        int n = T - k;
        // two calls: positions [0, 7) then [7, n), the second continuing the depth's cache
        for (int part = 0; part < 2; part++) {
            int from = part ? 7 : 0, to = part ? n : 7;
            for (int i = from; i < to; i++) { in[i - from] = tok[i + k]; pos[i - from] = i; want[i - from] = 1; }
            fg_batch mb = {.n = to - from, .token = in, .seq = seqs, .pos = pos, .logits = want};
            CHECK_MSG(fg_ctx_mtp(ctx, k, &mb, h + ((size_t)(k - 1) * T + from) * C, h + ((size_t)k * T + from) * C,
                                 lg + (size_t)from * V) == 0, "%s: %s", name, fg_last_error());
        }
        CHECK(fg_ctx_mtp_len(ctx, seq, k) == n);
        for (int i = 0; i < n; i++) { // the training forward keeps probabilities
            const float *row = lg + (size_t)i * V;
            float mx = row[0];
            double sum = 0;
            for (int v = 1; v < V; v++) mx = fmaxf(mx, row[v]);
            for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
            for (int v = 0; v < V; v++) pr[v] = (float)(exp(row[v] - mx) / sum);
            double e = tst_rel_err(pr, m->mtp[k - 1].logits + (size_t)i * V, (size_t)V);
            worst = fmax(worst, e);
        }
    }
    printf("%-28s MTP depths 1..%d of the context vs the training forward: worst rel err %.2e\n", name, D, worst);
    CHECK_MSG(worst < 1e-5, "%s: MTP probabilities differ (%.3g)", name, worst);
    // bad calls: a depth the model lacks, a gap in the depth's positions, a position past the sequence
    in[0] = 1; pos[0] = 0;
    fg_batch bad = {.n = 1, .token = in, .seq = seqs, .pos = pos};
    CHECK(fg_ctx_mtp(ctx, D + 1, &bad, h, NULL, NULL) == -1);
    pos[0] = T;
    CHECK(fg_ctx_mtp(ctx, 1, &bad, h, NULL, NULL) == -1);
    free(h); free(lg); free(pr);
    fg_ctx_free(ctx);
    fg_wstore_free(ws);
    fg_model_free(m);
}

static int collect(int32_t id, void *ctx) { (void)id; (void)ctx; return 0; }

// Greedy: speculative == plain, 100 prompts, two calls per session (the second continues).
static void check_greedy(const char *name, const fg_config *c, int drafts) {
    fg_model *m = make_model(c, 17);
    int V = c->vocab_size;
    fg_infer *plain = fg_infer_create(m, 96), *spec = fg_infer_create(m, 96);
    CHECK(plain && spec && fg_infer_mtp_depths(spec) == c->num_nextn_predict_layers);
    fg_rng r;
    fg_rng_seed(&r, 3);
    int same = 1, total = 0;
    for (int p = 0; p < 100; p++) {
        int32_t prompt[12], a[32], b[32];
        int np = 1 + (int)fg_rng_below(&r, 11);
        for (int i = 0; i < np; i++) prompt[i] = (int32_t)fg_rng_below(&r, (uint64_t)V);
        fg_infer_reset(plain);
        fg_infer_reset(spec);
        fg_sample_opts o = {.temperature = 0, .top_p = 1, .max_new_tokens = 16};
        int na = fg_generate(plain, prompt, np, &o, a, 32, collect, NULL);
        o.speculative = drafts;
        int nb = fg_generate(spec, prompt, np, &o, b, 32, collect, NULL);
        same &= na == nb && na > 0 && !memcmp(a, b, sizeof(int32_t) * (size_t)na);
        CHECK(fg_infer_pos(plain) == fg_infer_pos(spec));
        // continue both sessions from their last token (the contract: it was not fed)
        int32_t cont[2] = {a[na - 1], (int32_t)fg_rng_below(&r, (uint64_t)V)};
        o.max_new_tokens = 9 + p % 5;
        o.speculative = 0;
        na = fg_generate(plain, cont, 2, &o, a, 32, NULL, NULL);
        o.speculative = drafts;
        nb = fg_generate(spec, cont, 2, &o, b, 32, NULL, NULL);
        same &= na == nb && !memcmp(a, b, sizeof(int32_t) * (size_t)na);
        total += na;
    }
    fg_spec_stats st;
    fg_infer_spec_stats(spec, &st);
    printf("%-28s greedy, %d drafts: 100 prompts identical to plain decoding: %s (%lld rounds, %.2f tokens each, "
           "draft 1 accepted %.0f%%)\n", name, drafts, same ? "yes" : "NO", st.rounds, (double)st.tokens / (double)st.rounds,
           100.0 * (double)st.accepted[0] / (double)(st.proposed[0] ? st.proposed[0] : 1));
    CHECK_MSG(same, "%s: speculative greedy output differs from plain greedy", name);
    CHECK_MSG(st.rounds > 0 && st.proposed[0] > 0, "%s: nothing was drafted", name);
    if (c->vocab_size < 10) // the accepting paths ran too (whole chains included)
        CHECK_MSG(st.accepted[0] > 0 && (drafts < 2 || st.accepted[1] > 0), "%s: no draft was ever accepted", name);
    CHECK(total > 0);
    fg_infer_free(plain);
    fg_infer_free(spec);
    fg_model_free(m);
}

// Temperature 1: the joint law of tokens 2 and 3 after a fixed prompt, speculative vs plain.
static void check_sampling(const fg_config *c, int top_k, float top_p) {
    fg_model *m = make_model(c, 23);
    int V = c->vocab_size, N = 6000;
    fg_infer *s = fg_infer_create(m, 32);
    long *cnt[2];
    for (int k = 0; k < 2; k++) cnt[k] = calloc((size_t)V * V, sizeof(long));
    int32_t prompt[3] = {1, 4, 2}, out[8];
    for (int spec = 0; spec < 2; spec++)
        for (int i = 0; i < N; i++) {
            fg_infer_reset(s);
            fg_sample_opts o = {.temperature = 1, .top_k = top_k, .top_p = top_p, .max_new_tokens = 3,
                                .seed = 1000003u * (uint64_t)i + 77, .speculative = spec};
            int n = fg_generate(s, prompt, 3, &o, out, 8, NULL, NULL);
            CHECK(n == 3);
            cnt[spec][out[1] * V + out[2]]++;
        }
    fg_spec_stats st;
    fg_infer_spec_stats(s, &st);
    // chi-square of homogeneity over the cells either sample hit (equal sample sizes)
    double chi = 0;
    int cells = 0;
    for (int j = 0; j < V * V; j++) {
        long a = cnt[0][j], b = cnt[1][j];
        if (a + b == 0) continue;
        chi += (double)(a - b) * (a - b) / (double)(a + b);
        cells++;
    }
    int dof = cells - 1;
    // Wilson-Hilferty: the chi-square quantile at p = 0.999
    double z = 3.090, crit = dof * pow(1 - 2.0 / (9 * dof) + z * sqrt(2.0 / (9 * dof)), 3);
    double acc = (double)st.accepted[0] / (double)(st.proposed[0] ? st.proposed[0] : 1);
    printf("speculative sampling vs plain (T = 1, top_k %d, top_p %.2f, V = %d, %d samples each): chi-square %.1f on %d "
           "dof (0.999 quantile %.1f); draft accepted %.0f%% of %lld\n", top_k, top_p, V, N, chi, dof, crit, 100 * acc,
           st.proposed[0]);
    CHECK_MSG(chi < crit, "speculative sampling changes the distribution: chi-square %.1f > %.1f", chi, crit);
    CHECK_MSG(acc > 0.05 && acc < 0.95, "the test needs both accepted and rejected drafts (accepted %.2f)", acc);
    free(cnt[0]); free(cnt[1]);
    fg_infer_free(s);
    fg_model_free(m);
}

// fg_config_mtp_params (a formula) against the tensor table's MTP blocks; the main count unchanged.
static void check_param_count(const fg_config *c) {
    fg_config main = *c;
    main.num_nextn_predict_layers = 0;
    int n;
    size_t total;
    fg_tensor *t = fg_tensor_table(c, &n, &total);
    int64_t in_table = 0, mt, ma, t0, a0;
    for (int i = 0; i < n; i++)
        if (t[i].layer >= c->num_hidden_layers && !(t[i].flags & FG_TENSOR_BUFFER)) in_table += (int64_t)t[i].numel;
    free(t);
    fg_config_param_counts(c, &mt, &ma);
    fg_config_param_counts(&main, &t0, &a0);
    CHECK_MSG(fg_config_mtp_params(c) == in_table && in_table > 0, "MTP parameters %lld, the table's %lld",
              (long long)fg_config_mtp_params(c), (long long)in_table);
    CHECK(mt == t0 && ma == a0);
    // and the cost model's own count of V3's MTP module (its unique parameters: 11.61B)
    fg_config v3;
    int mtp = 0;
    CHECK(fg_cost_config(&v3, &mtp, "deepseek-v3", NULL) == 0 && mtp == 1);
    v3.num_nextn_predict_layers = mtp;
    fg_cost_model r;
    fg_cost_opts o = {mtp, 4096, 1, 4096, FG_BF16, 1};
    CHECK(fg_cost_model_compute(&r, &v3, &o) == 0);
    CHECK_MSG((double)fg_config_mtp_params(&v3) == r.mtp_unique, "V3 MTP parameters %lld, the cost model's %.0f",
              (long long)fg_config_mtp_params(&v3), r.mtp_unique);
}

int main(void) {
    fg_config c;
    fg_config_preset(&c, "tiny"); // MLA + q-LoRA, MoE with sigmoid noaux_tc; two MoE MTP depths
    c.num_nextn_predict_layers = 2;
    check_param_count(&c);
    check_mtp_logits("tiny MLA+MoE, D = 2", &c);
    check_greedy("tiny MLA+MoE, D = 2", &c, 2);
    check_greedy("tiny MLA+MoE, D = 2 (1 draft)", &c, 1);

    fg_config_preset(&c, "tiny"); // dense GQA, D = 1
    c.attn_type = FG_ATTN_GQA; c.num_attention_heads = 4; c.num_key_value_heads = 2; c.head_dim = 8;
    c.rope_interleave = 0; c.n_routed_experts = 0; c.num_nextn_predict_layers = 1;
    check_mtp_logits("tiny GQA dense, D = 1", &c);
    check_greedy("tiny GQA dense, D = 1", &c, 1);

    fg_config_preset(&c, "tiny"); // a 6-token vocabulary: drafts are often accepted, chains too
    c.vocab_size = 6; c.num_nextn_predict_layers = 2;
    check_greedy("tiny V = 6, D = 2", &c, 2);
    c.num_nextn_predict_layers = 1; // and the sampling law
    check_sampling(&c, 0, 1.0f);
    check_sampling(&c, 4, 0.9f); // the truncated distributions: drafts outside p's support
    return TEST_DONE();
}
