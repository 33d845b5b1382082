// test_batch.c: the batched inference context (src/infer/ctx.c) against single-sequence decoding.
//
// Oracle: each sequence decoded alone by a single-sequence session (fg_infer, whose logits
// test_generate checks against the training forward). A batch of 8 sequences of different lengths
// is prefilled in one decode call (runs long enough for the GEMM prefill beside rows attended one
// by one), then decoded greedily one row per sequence per step; two of the sequences are forks
// (sharing their parent's blocks, copied on write) and one is truncated and continued with other
// tokens. Every logit row must be within 1e-5 (relative L2) of the lone decode of the same
// tokens, and the greedy continuations identical. Also: logits at every row of a prompt match the
// training forward; errors (bad position, unknown sequence, full cache, too many rows) change
// nothing; removed sequences give their blocks back.
#include <string.h>

#include "infer/generate.h"
#include "infer/wstore.h"
#include "model_fixture.h"
#include "test.h"

#define NSEQ 8
#define STEPS 12
#define MAXTOK 256

static int32_t argmax(const float *x, int V) {
    int32_t b = 0;
    for (int i = 1; i < V; i++) if (x[i] > x[b]) b = i;
    return b;
}

// What the batch produced for one sequence: its tokens, and the logits it returned after each
// position (NULL where none were asked), with the prompt length fed as one chunk.
typedef struct {
    int id, n, prompt;
    int32_t tok[MAXTOK];
    float *lg[MAXTOK];
} track;

// Decodes t's tokens alone (prompt as one feed, then one token at a time) and compares.
// The limit: 1e-5 with an fp32 cache (a batch multiplies its rows on the GEMM where a lone decode
// step runs matrix-vector products: fp32 rounding apart). A bf16 cache rounds each cached value to
// 8 bits of mantissa, so those last-bit differences can move a cached value by one bf16 step
// (measured up to 1.9e-5 after a truncation): 1e-3 there, as test_generate's bf16 cache budget.
static void check_alone(const char *name, const fg_wstore *ws, int kind, int kv_type, const track *t, int V) {
    double tol = kv_type == FG_BF16 ? 1e-3 : 1e-5;
    fg_infer *s = fg_infer_create_store(ws, ws->cfg.max_position_embeddings, kind, kv_type);
    CHECK_MSG(s != NULL, "%s: %s", name, fg_last_error());
    if (!s) return;
    double worst = 0;
    int diverged = 0;
    for (int at = 0; at < t->n;) {
        int k = at == 0 ? t->prompt : 1;
        const float *lg = fg_infer_feed(s, t->tok + at, k);
        CHECK_MSG(lg != NULL, "%s: %s", name, fg_last_error());
        if (!lg) break;
        at += k;
        const float *b = t->lg[at - 1];
        if (!b) continue;
        double e = tst_rel_err(b, lg, V);
        worst = e > worst ? e : worst;
        if (at < t->n && argmax(lg, V) != t->tok[at] && argmax(b, V) == t->tok[at]) diverged++;
    }
    CHECK_MSG(worst < tol, "%s: sequence %d: batched logits vs alone rel err %.3g (limit %.0e)", name, t->id, worst, tol);
    CHECK_MSG(!diverged, "%s: sequence %d: greedy continuation differs alone (%d steps)", name, t->id, diverged);
    printf("  %-44s seq %d (%3d tokens): rel err %.2e\n", name, t->id, t->n, worst);
    fg_infer_free(s);
}

static void check_batch(const char *name, const fg_config *c, int kind, int kv_type) {
    fg_model *m = make_model(c, 42);
    fg_wstore *ws = fg_wstore_from_model(m, FG_F32);
    int V = c->vocab_size, T = c->max_position_embeddings;
    fg_ctx_params p = {.n_ctx = NSEQ * T, .max_seqs = NSEQ + 2, .max_batch = 256, .kind = kind, .kv_type = kv_type};
    fg_ctx *ctx = fg_ctx_create(ws, &p);
    CHECK_MSG(ctx != NULL, "%s: %s", name, fg_last_error());
    if (!ctx) { fg_wstore_free(ws); fg_model_free(m); return; }
    int free0 = fg_ctx_free_positions(ctx);
    // Six prompts of different lengths (1 .. 70: runs above and below the GEMM's 16 rows, and across
    // 32-position blocks), prefilled in one call; seqs 6 and 7 are forks made after it.
    static const int plen[NSEQ - 2] = {40, 3, 17, 1, 70, 33};
    track *tr = calloc(NSEQ, sizeof *tr);
    fg_rng r;
    fg_rng_seed(&r, 7);
    int32_t tok[256], seq[256], pos[256];
    uint8_t want[256];
    float *out = malloc(sizeof(float) * (size_t)V * 256);
    int n = 0;
    for (int i = 0; i < NSEQ - 2; i++) {
        tr[i].id = fg_ctx_seq_new(ctx);
        tr[i].prompt = plen[i];
        for (int k = 0; k < plen[i]; k++) {
            tr[i].tok[tr[i].n++] = (int32_t)fg_rng_below(&r, (uint64_t)V);
            tok[n] = tr[i].tok[k]; seq[n] = tr[i].id; pos[n] = k; want[n] = k == plen[i] - 1; n++;
        }
    }
    fg_batch b = {.n = n, .token = tok, .seq = seq, .pos = pos, .logits = want};
    CHECK_MSG(fg_ctx_decode(ctx, &b, out) == 0, "%s: prefill: %s", name, fg_last_error());
    for (int i = 0, w = 0; i < NSEQ - 2; i++) {
        tr[i].lg[tr[i].n - 1] = malloc(sizeof(float) * V);
        memcpy(tr[i].lg[tr[i].n - 1], out + (size_t)w++ * V, sizeof(float) * V);
    }
    // Forks of seq 0 (40 positions: a partly filled shared block) and of seq 4.
    for (int f = 0; f < 2; f++) {
        track *src = &tr[f == 0 ? 0 : 4], *d = &tr[NSEQ - 2 + f];
        *d = *src;
        d->id = fg_ctx_seq_fork(ctx, src->id);
        CHECK_MSG(d->id >= 0, "%s: fork: %s", name, fg_last_error());
        for (int k = 0; k < d->n; k++)
            if (src->lg[k]) { d->lg[k] = malloc(sizeof(float) * V); memcpy(d->lg[k], src->lg[k], sizeof(float) * V); }
    }
    CHECK(fg_ctx_seq_len(ctx, tr[NSEQ - 2].id) == 40);
    // Greedy steps, one row per sequence. A fork's first step takes another token than its parent
    // (the next best), so the two diverge inside their shared block. Seq 2 is truncated back by 4
    // positions after step 5 and continues with other tokens.
    for (int step = 0; step < STEPS; step++) {
        n = 0;
        for (int i = 0; i < NSEQ; i++) {
            track *t = &tr[i];
            const float *lg = t->lg[t->n - 1];
            int32_t next;
            if (!lg) next = (int32_t)((t->tok[t->n - 1] + 1) % V); // after the truncation: no logits there
            else {
                next = argmax(lg, V);
                if (step == 0 && i >= NSEQ - 2) { // the second best
                    int32_t second = next == 0 ? 1 : 0;
                    for (int v = 0; v < V; v++) if (v != next && lg[v] > lg[second]) second = v;
                    next = second;
                }
            }
            t->tok[t->n] = next;
            tok[n] = next; seq[n] = t->id; pos[n] = t->n; want[n] = 1; n++;
            t->n++;
        }
        b = (fg_batch){.n = n, .token = tok, .seq = seq, .pos = pos, .logits = want};
        CHECK_MSG(fg_ctx_decode(ctx, &b, out) == 0, "%s: step %d: %s", name, step, fg_last_error());
        for (int i = 0; i < NSEQ; i++) {
            tr[i].lg[tr[i].n - 1] = malloc(sizeof(float) * V);
            memcpy(tr[i].lg[tr[i].n - 1], out + (size_t)i * V, sizeof(float) * V);
        }
        if (step == 5) {
            track *t = &tr[2];
            CHECK(fg_ctx_seq_truncate(ctx, t->id, t->n - 4) == 0);
            for (int k = t->n - 4; k < t->n; k++) { free(t->lg[k]); t->lg[k] = NULL; }
            t->n -= 4;
            free(t->lg[t->n - 1]); // continue with another token than the greedy one
            t->lg[t->n - 1] = NULL;
            CHECK(fg_ctx_seq_len(ctx, t->id) == t->n);
        }
    }
    for (int i = 0; i < NSEQ; i++) {
        CHECK(fg_ctx_seq_len(ctx, tr[i].id) == tr[i].n);
        check_alone(name, ws, kind, kv_type, &tr[i], V);
    }
    // Errors change nothing: a wrong position, an unknown sequence, too many rows, a full cache.
    int len0 = fg_ctx_seq_len(ctx, tr[0].id), freeb = fg_ctx_free_positions(ctx);
    int32_t t2[2] = {1, 2}, s2[2] = {tr[0].id, tr[0].id}, p2[2] = {len0 + 1, len0 + 2};
    b = (fg_batch){.n = 2, .token = t2, .seq = s2, .pos = p2};
    CHECK(fg_ctx_decode(ctx, &b, NULL) != 0 && strstr(fg_last_error(), "position"));
    s2[1] = 999;
    b.pos = NULL;
    CHECK(fg_ctx_decode(ctx, &b, NULL) != 0 && strstr(fg_last_error(), "sequence"));
    b.n = 300;
    CHECK(fg_ctx_decode(ctx, &b, NULL) != 0 && strstr(fg_last_error(), "max_batch"));
    CHECK(fg_ctx_seq_len(ctx, tr[0].id) == len0 && fg_ctx_free_positions(ctx) == freeb);
    CHECK(fg_ctx_seq_truncate(ctx, tr[0].id, len0 + 1) != 0);
    // Removing every sequence gives every block back.
    for (int i = 0; i < NSEQ; i++) CHECK(fg_ctx_seq_remove(ctx, tr[i].id) == 0);
    CHECK_MSG(fg_ctx_free_positions(ctx) == free0, "%s: %d of %d positions free after removing all", name,
              fg_ctx_free_positions(ctx), free0);
    for (int i = 0; i < NSEQ; i++)
        for (int k = 0; k < MAXTOK; k++) free(tr[i].lg[k]);
    free(tr);
    free(out);
    fg_ctx_free(ctx);
    fg_wstore_free(ws);
    fg_model_free(m);
}

// Logits at every row of one prompt (perplexity, draft verification) against the training forward,
// and a cache too small for the batch refused without a change.
static void check_all_rows(const char *name, const fg_config *c, int kind) {
    fg_model *m = make_model(c, 5);
    fg_wstore *ws = fg_wstore_from_model(m, FG_F32);
    int V = c->vocab_size, T = 50;
    int32_t tok[64], seq[64] = {0};
    uint8_t want[64];
    fg_rng r;
    fg_rng_seed(&r, 3);
    for (int i = 0; i < T; i++) { tok[i] = (int32_t)fg_rng_below(&r, (uint64_t)V); want[i] = 1; }
    CHECK(fg_model_forward(m, tok, NULL, 1, T, NULL) == 0);
    fg_ctx_params p = {.n_ctx = 64, .max_seqs = 2, .max_batch = 64, .kind = kind, .kv_type = FG_F32};
    fg_ctx *ctx = fg_ctx_create(ws, &p);
    float *out = malloc(sizeof(float) * (size_t)V * T);
    int id = ctx ? fg_ctx_seq_new(ctx) : -1;
    fg_batch b = {.n = T, .token = tok, .seq = seq, .logits = want};
    CHECK_MSG(ctx && id == 0 && fg_ctx_decode(ctx, &b, out) == 0, "%s: %s", name, fg_last_error());
    double worst = 0;
    for (int i = 0; i < T; i++) {
        double e = tst_rel_err(out + (size_t)i * V, m->logits + (size_t)i * V, V);
        worst = e > worst ? e : worst;
    }
    CHECK_MSG(worst < 1e-5, "%s: every-row logits vs training forward: rel err %.3g", name, worst);
    printf("  %-44s logits at all %d rows vs the training forward: rel err %.2e\n", name, T, worst);
    // 64 positions = 2 blocks: a second sequence of 30 tokens needs a third one.
    int id2 = fg_ctx_seq_new(ctx);
    for (int i = 0; i < 30; i++) seq[i] = id2;
    b = (fg_batch){.n = 30, .token = tok, .seq = seq};
    CHECK(fg_ctx_decode(ctx, &b, NULL) != 0 && strstr(fg_last_error(), "full"));
    CHECK(fg_ctx_seq_len(ctx, id2) == 0 && fg_ctx_seq_len(ctx, id) == T);
    free(out);
    fg_ctx_free(ctx);
    fg_wstore_free(ws);
    fg_model_free(m);
}

int main(void) {
    fg_config tiny, mla2, gqa;
    if (fg_config_preset(&tiny, "tiny")) { fprintf(stderr, "%s\n", fg_last_error()); return 1; }
    mla2 = tiny; // MLA without q-LoRA, softmax greedy routing, no shared expert
    mla2.q_lora_rank = 0; mla2.scoring_func = FG_SCORE_SOFTMAX; mla2.topk_method = FG_TOPK_GREEDY;
    mla2.n_group = 1; mla2.topk_group = 1; mla2.n_shared_experts = 0; mla2.num_experts_per_tok = 3;
    gqa = tiny; // dense GQA: 2 query heads sharing 1 kv head, biases, rotate-half rope
    gqa.attn_type = FG_ATTN_GQA; gqa.num_attention_heads = 2; gqa.num_key_value_heads = 1;
    gqa.head_dim = gqa.hidden_size / 2; gqa.attention_bias = 1; gqa.rope_interleave = 0;
    gqa.n_routed_experts = 0; gqa.n_shared_experts = 0; gqa.first_k_dense_replace = 0;

    printf("batched decode vs each sequence alone (8 sequences, 2 forks, 1 truncation, %d greedy steps):\n", STEPS);
    check_batch("tiny MLA+MoE, latent cache", &tiny, FG_KV_LATENT, FG_F32);
    check_batch("tiny MLA+MoE, latent cache, bf16", &tiny, FG_KV_LATENT, FG_BF16);
    check_batch("tiny MLA+MoE, full cache", &tiny, FG_KV_FULL, FG_F32);
    check_batch("MLA no q-LoRA, softmax routing, latent", &mla2, FG_KV_LATENT, FG_F32);
    check_batch("GQA 2/1 heads, biases, dense", &gqa, FG_KV_FULL, FG_F32);
    check_all_rows("tiny MLA+MoE, latent cache", &tiny, FG_KV_LATENT);
    check_all_rows("GQA 2/1 heads", &gqa, FG_KV_FULL);
    return TEST_DONE();
}
