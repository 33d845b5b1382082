// rl.c: reinforcement learning with verifiable rewards (fg_rl_train, GRPO; docs/rl.md), and the
// group sampling it runs on (fg_rl_rollout).
//
// fg_rl_train is fg_train with two hooks, as distillation is:
//   batch_fn, every mu updates: a rollout phase. P training problems, G completions of each sampled
//     from the current policy in one batched context (each prompt prefilled once and forked G - 1
//     times: the forks share the prompt's cache blocks); rewards from the task's verifier (or
//     --verifier), group-normalised advantages; then the sampling policy's log-probabilities of
//     the sampled tokens (logp_old) and the frozen reference's (logp_ref), both from the training
//     forward, so the first update's ratio is exactly 1. Between rollouts it hands the same P*G
//     sequences to the trainer again (inner updates).
//   step_fn, every update: the training forward of the P*G sequences, log-probabilities of the
//     sampled tokens at the sampling temperature, the GRPO loss (grpo.c) and its gradient through
//     the log-softmax into fg_model_backward_dlogits.
// Everything else (schedule, clipping, AdamW, checkpoints, resume, the ledger) is fg_train's. The
// rollout of update index k is drawn from a seed of (run seed, k), so a run resumed at a rollout
// boundary continues exactly; resumed between two (save_every not a multiple of mu) it samples
// that rollout again from the policy it resumed with. Per update, OUT/rl.jsonl gets the rollout's
// statistics and OUT/rl.svg plots reward, accuracy and completion length over the updates.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/task.h"
#include "distill/distill.h"
#include "formats/checkpoint.h"
#include "formats/json.h"
#include "model/model.h"
#include "train/grpo.h"
#include "train/train.h"
#include "util.h"
#include "frugal_scale.h"

#define FG_RL_MAX_ROUNDS 8 // --drop-zero-var: sampling rounds per rollout at most (DAPO's dynamic sampling)

#ifndef FG_CD_MAX_PROMPT
#define FG_CD_MAX_PROMPT 32 // Countdown prompts: BOS, up to 6 numbers, the target and separators
#endif

void fg_rl_opts_default(fg_rl_opts *r) {
    memset(r, 0, sizeof *r);
    r->task = FG_RL_TASK_COUNTDOWN;
    r->level = 1;
    r->prompts = 8;
    r->group = 8;
    r->mu = 1;
    r->max_new = 64;
    r->temperature = 1.0f;
    r->format_reward = 0.1f;
    r->clip_lo = 0.2f;
    r->clip_hi = 0.2f;
    r->beta = 0.04f;
    r->std_norm = 1;
    r->verifier_timeout = 10;
    r->eval_every = 10;
    r->eval_n = 200;
}

// ---- group sampling ----------------------------------------------------------------------------

int fg_rl_rollout(const fg_wstore *ws, const int32_t *prompts, const int *plen, int P, int G, int max_new,
                  float temperature, const int32_t *stop, int nstop, uint64_t seed, int32_t *out, int *out_len) {
    const fg_config *c = fg_wstore_config(ws);
    int V = c->vocab_size, S, maxp = 0, tot_p = 0;
    if (P < 1 || G < 1 || max_new < 1 || !(temperature >= 0) || (long)P * G > (1L << 22))
        return fg_set_error("rollout: need P >= 1 prompts, G >= 1 samples (P * G <= 4194304), max_new >= 1 and a temperature >= 0");
    S = P * G;
    for (int p = 0; p < P; p++) {
        if (plen[p] < 1) return fg_set_error("rollout: prompt %d is empty", p);
        maxp = FG_MAX(maxp, plen[p]);
        tot_p += plen[p];
    }
    int len = maxp + max_new;
    if (len > c->max_position_embeddings)
        return fg_set_error("rollout: prompt (%d) + completion (%d) tokens exceed the model's context of %d (hint: lower "
                            "--max-new)", maxp, max_new, c->max_position_embeddings);
    fg_ctx_params cp = {.n_ctx = S * (len + FG_KV_BLOCK) + P * FG_KV_BLOCK, .max_len = len, .max_seqs = S,
                        .max_batch = FG_MAX(S, tot_p), .kind = FG_KV_AUTO, .kv_type = FG_F32};
    fg_ctx *cx = fg_ctx_create(ws, &cp);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)cp.max_batch), *seq = malloc(sizeof(int32_t) * (size_t)cp.max_batch);
    uint8_t *want = calloc((size_t)cp.max_batch, 1);
    float *logits = malloc(sizeof(float) * (size_t)V * S), *scratch = malloc(sizeof(float) * 2 * (size_t)V);
    int *sid = malloc(sizeof(int) * (size_t)S), *live = malloc(sizeof(int) * (size_t)S), rc = -1;
    if (!cx || !tok || !seq || !want || !logits || !scratch || !sid || !live) {
        if (cx) fg_set_error("rollout: out of memory");
        goto done;
    }
    // Every prompt in one batch (their rows in order), logits of each prompt's last row.
    for (int p = 0, n = 0; p < P; p++) {
        int s = fg_ctx_seq_new(cx);
        if (s < 0) goto done;
        sid[p * G] = s;
        for (int i = 0; i < plen[p]; i++, n++) {
            tok[n] = prompts[(size_t)p * maxp + i];
            seq[n] = s;
            want[n] = i == plen[p] - 1;
        }
    }
    fg_batch b = {.n = tot_p, .token = tok, .seq = seq, .logits = want};
    if (fg_ctx_decode(cx, &b, logits)) goto done;
    for (int p = 0; p < P; p++)
        for (int g = 1; g < G; g++)
            if ((sid[p * G + g] = fg_ctx_seq_fork(cx, sid[p * G])) < 0) goto done;
    fg_sample_opts so = {.temperature = temperature, .top_p = 1};
    fg_rng rng;
    fg_rng_seed(&rng, seed);
    // The first token of each sample from its prompt's logits; then one row per live sample per step.
    int nlive = 0;
    for (int s = 0; s < S; s++) {
        int32_t t = fg_sample(logits + (size_t)(s / G) * V, V, &so, &rng, scratch);
        if (t < 0) goto done;
        out[(size_t)s * max_new] = t;
        out_len[s] = 1;
        int stopped = 0;
        for (int k = 0; k < nstop; k++) stopped |= t == stop[k];
        if (!stopped && max_new > 1) live[nlive++] = s;
    }
    for (int s = 0; s < S; s++) want[s] = 1; // (a loop: gcc -O1 -fsanitize=undefined cannot bound S for memset)
    while (nlive > 0) {
        for (int i = 0; i < nlive; i++) {
            int s = live[i];
            tok[i] = out[(size_t)s * max_new + out_len[s] - 1];
            seq[i] = sid[s];
        }
        b = (fg_batch){.n = nlive, .token = tok, .seq = seq, .logits = want};
        if (fg_ctx_decode(cx, &b, logits)) goto done;
        int kept = 0;
        for (int i = 0; i < nlive; i++) {
            int s = live[i];
            int32_t t = fg_sample(logits + (size_t)i * V, V, &so, &rng, scratch);
            if (t < 0) goto done;
            out[(size_t)s * max_new + out_len[s]++] = t;
            int stopped = 0;
            for (int k = 0; k < nstop; k++) stopped |= t == stop[k];
            if (!stopped && out_len[s] < max_new) live[kept++] = s;
        }
        nlive = kept;
    }
    rc = 0;
done:
    fg_ctx_free(cx);
    free(tok); free(seq); free(want); free(logits); free(scratch); free(sid); free(live);
    return rc;
}

// ---- problems and rewards ------------------------------------------------------------------------

typedef struct { int task; fg_countdown cd; fg_task_problem ar; } problem;

static void problem_sample(problem *p, fg_rng *r, int task, int level, int heldout) {
    p->task = task;
    if (task == FG_RL_TASK_COUNTDOWN) fg_countdown_sample(r, level, heldout, &p->cd);
    else fg_task_sample(r, heldout, &p->ar);
}

// The prompt's ids into out (capacity FG_CD_MAX_TOKENS); returns the count.
static int problem_prompt(const problem *p, int32_t *out) {
    if (p->task == FG_RL_TASK_COUNTDOWN) return fg_countdown_prompt(&p->cd, out);
    int32_t full[FG_TASK_MAX_TOKENS];
    int pl;
    fg_task_render(&p->ar, full, &pl);
    memcpy(out, full, sizeof(int32_t) * (size_t)pl);
    return pl;
}

// Built-in check of a completion: 1 correct; *fmt 1 when well formed (<think> ... </think> answer EOS).
static int problem_check(const problem *p, const int32_t *gen, int n, int *fmt) {
    if (p->task == FG_RL_TASK_COUNTDOWN) return fg_countdown_check(&p->cd, gen, n, fmt);
    int ok = fg_task_check(&p->ar, gen, n), end = -1;
    for (int i = 0; i < n; i++)
        if (gen[i] == FG_TOK_END_THINK) { end = i; break; }
    *fmt = n > 0 && gen[0] == FG_TOK_THINK && end > 0 && n == end + 1 + FG_TASK_ANSWER_LEN + 1 && gen[n - 1] == FG_TOK_EOS;
    return ok;
}

// ids as text (specials by name), appended to *buf at *k; 0, or -1 out of memory.
static int ids_append(char **buf, size_t *cap, size_t *k, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) {
        char piece[FG_BYTETOK_MAX_PIECE];
        size_t l = fg_bytetok_decode(ids[i], piece);
        if (*k + l + 1 > *cap) {
            size_t nc = 2 * (*k + l + 64);
            char *nb = realloc(*buf, nc);
            if (!nb) return fg_set_error("out of memory");
            *buf = nb; *cap = nc;
        }
        memcpy(*buf + *k, piece, l);
        *k += l;
    }
    if (*buf) (*buf)[*k] = 0;
    return 0;
}

int fg_rl_eval(const fg_wstore *ws, int task, int level, int n, uint64_t seed, double *accuracy, double *format) {
    int maxp = FG_CD_MAX_TOKENS, ctx = fg_wstore_config(ws)->max_position_embeddings;
    int longest_example = task == FG_RL_TASK_COUNTDOWN ? fg_countdown_max_len(level) : FG_TASK_LONGEST;
    problem *pb = malloc(sizeof(problem) * (size_t)n);
    int32_t *pr = malloc(sizeof(int32_t) * (size_t)n * maxp), *out = NULL;
    int *pl = malloc(sizeof(int) * (size_t)n), *ol = malloc(sizeof(int) * (size_t)n), rc = -1, longest = 1;
    if (!pb || !pr || !pl || !ol) { fg_set_error("out of memory"); goto done; }
    fg_rng r;
    fg_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        problem_sample(&pb[i], &r, task, level, 1);
        int32_t ids[FG_CD_MAX_TOKENS];
        pl[i] = problem_prompt(&pb[i], ids);
        longest = FG_MAX(longest, pl[i]);
        memcpy(pr + (size_t)i * maxp, ids, sizeof(int32_t) * (size_t)pl[i]);
    }
    for (int i = 0; i < n; i++) // rows of `longest` ids (fg_rl_rollout's layout)
        memmove(pr + (size_t)i * longest, pr + (size_t)i * maxp, sizeof(int32_t) * (size_t)pl[i]);
    // room for the longest example's completion and a little more; within the model's context
    int max_new = FG_MIN(longest_example - 1 + 8, ctx - longest);
    if (max_new < 1) { fg_set_error("the model's context (%d) is too short for the task's prompts", ctx); goto done; }
    out = malloc(sizeof(int32_t) * (size_t)n * max_new);
    if (!out) { fg_set_error("out of memory"); goto done; }
    int32_t eos = FG_TOK_EOS;
    if (fg_rl_rollout(ws, pr, pl, n, 1, max_new, 0, &eos, 1, seed, out, ol)) goto done;
    int good = 0, fmt = 0;
    for (int i = 0; i < n; i++) {
        int f;
        good += problem_check(&pb[i], out + (size_t)i * max_new, ol[i], &f) == 1;
        fmt += f;
    }
    *accuracy = (double)good / n;
    if (format) *format = (double)fmt / n;
    rc = 0;
done:
    free(pb); free(pr); free(out); free(pl); free(ol);
    return rc;
}

// ---- the training hooks --------------------------------------------------------------------------

// P problems with G sampled completions each, their rewards and group advantages: a rollout's
// batch, and one sampling round that fills it.
typedef struct {
    problem *pb;             // (P)
    int32_t *prompts;        // (P, FG_CD_MAX_TOKENS)
    int *plen;               // (P)
    int32_t *gen;            // (S, max_new)
    int *glen;               // (S)
    float *rewards, *adv;    // (S)
    uint8_t *keep;           // (P) 0: the group's rewards are all equal
} groups;

static int groups_alloc(groups *g, int P, int G, int mx) {
    size_t S = (size_t)P * G;
    g->pb = malloc(sizeof(problem) * P);
    g->prompts = malloc(sizeof(int32_t) * (size_t)P * FG_CD_MAX_TOKENS);
    g->plen = malloc(sizeof(int) * P);
    g->gen = malloc(sizeof(int32_t) * S * mx);
    g->glen = malloc(sizeof(int) * S);
    g->rewards = malloc(sizeof(float) * S);
    g->adv = malloc(sizeof(float) * S);
    g->keep = malloc(P);
    return g->pb && g->prompts && g->plen && g->gen && g->glen && g->rewards && g->adv && g->keep ? 0 : -1;
}

static void groups_free(groups *g) {
    free(g->pb); free(g->prompts); free(g->plen); free(g->gen); free(g->glen); free(g->rewards); free(g->adv); free(g->keep);
}

// Group p of src into slot k of dst.
static void group_copy(groups *dst, int k, const groups *src, int p, int G, int mx) {
    dst->pb[k] = src->pb[p];
    memcpy(dst->prompts + (size_t)k * FG_CD_MAX_TOKENS, src->prompts + (size_t)p * FG_CD_MAX_TOKENS, sizeof(int32_t) * FG_CD_MAX_TOKENS);
    dst->plen[k] = src->plen[p];
    memcpy(dst->gen + (size_t)k * G * mx, src->gen + (size_t)p * G * mx, sizeof(int32_t) * (size_t)G * mx);
    memcpy(dst->glen + (size_t)k * G, src->glen + (size_t)p * G, sizeof(int) * G);
    memcpy(dst->rewards + (size_t)k * G, src->rewards + (size_t)p * G, sizeof(float) * G);
    memcpy(dst->adv + (size_t)k * G, src->adv + (size_t)p * G, sizeof(float) * G);
    dst->keep[k] = src->keep[p];
}

// A rollout's statistics over every completion sampled (all rounds).
typedef struct {
    double reward_sum, reward_sum2, gen_tokens, prompt_tokens, seconds;
    long good, fmt, samples;
    int dropped, rounds; // zero-variance groups sampled, sampling rounds
} roll_sums;

typedef struct {
    fg_rl_opts r;
    fg_grpo_opts go;
    fg_train_opts *o;        // the run's options: the hooks add rollout and reference FLOPs to them
    fg_model *policy, *ref;  // ref: NULL when beta == 0
    int S, T;                // sequences per rollout (P*G), positions per sequence
    int64_t rollout_at;      // update index of the rollout in the buffers (-1: none)
    groups batch, round;     // the groups the updates train on; the sampling round filling them
    int32_t *in, *tg;        // (S, T) the sequences: inputs and next-token targets (-1 off the completion)
    uint8_t *mask;           // (S, T) completion tokens that count (0 for dropped groups)
    float *logp_old, *logp_ref, *logp, *dlogp, *ent; // (S, T)
    int32_t *safe;           // (S, T) targets with -1 replaced by 0 (masked out of the loss)
    char *text; size_t text_cap;
    double act_flops;        // forward FLOPs per token (2 x active parameters)
    // the rollout's statistics, logged with every update it feeds
    double reward_mean, reward_std, acc, fmt, len_mean, roll_tok_s, roll_s;
    int dropped, rounds;
    double eval_acc, eval_fmt;  // held-out accuracy measured before this update (NAN: not this one)
    int64_t updates;            // updates done (the trainer's step)
    FILE *log;
    char log_path[1100], svg_path[1100];
} rl_ctx;

// Log-probabilities at the sampling temperature of the targets of the forward's logits (in place:
// logits are divided by the temperature), entropy (may be NULL).
static void logp_of(rl_ctx *d, fg_model *m, float *logp, float *ent) {
    int N = d->S * d->T, V = m->cfg.vocab_size;
    if (d->r.temperature != 1.0f) {
        float inv = 1.0f / d->r.temperature;
        for (size_t i = 0; i < (size_t)N * V; i++) m->logits[i] *= inv;
    }
    for (int i = 0; i < N; i++) d->safe[i] = d->tg[i] >= 0 ? d->tg[i] : 0; // off the completion: masked out
    fg_logp_rows(logp, ent, m->logits, d->safe, N, V);
}

static int verify(rl_ctx *d, const groups *g, int s, const int32_t *gen, int n, int *fmt) {
    const problem *p = &g->pb[s / d->r.group];
    int ok = problem_check(p, gen, n, fmt);
    if (!d->r.verifier) return ok;
    size_t k = 0;
    int nt = n && gen[n - 1] == FG_TOK_EOS ? n - 1 : n;
    if (ids_append(&d->text, &d->text_cap, &k, g->prompts + (size_t)(s / d->r.group) * FG_CD_MAX_TOKENS + 1,
                   g->plen[s / d->r.group] - 1) ||
        ids_append(&d->text, &d->text_cap, &k, gen, nt))
        return -1;
    int v = fg_run_verifier(d->r.verifier, d->text ? d->text : "", k, d->r.verifier_timeout);
    return v < 0 ? -1 : v == 0;
}

// One round of sampling from the policy's weights ws: P problems, G completions of each, their
// rewards and group advantages into d->round; the statistics added to *st.
static int sample_round(rl_ctx *d, const fg_wstore *ws, fg_rng *r, roll_sums *st) {
    groups *g = &d->round;
    int P = d->r.prompts, G = d->r.group, S = d->S, T = d->T, mx = d->r.max_new;
    int longest = 1;
    for (int p = 0; p < P; p++) {
        problem_sample(&g->pb[p], r, d->r.task, d->r.level, 0);
        g->plen[p] = problem_prompt(&g->pb[p], g->prompts + (size_t)p * FG_CD_MAX_TOKENS);
        longest = FG_MAX(longest, g->plen[p]);
        if (g->plen[p] > T - mx) return fg_set_error("rl: a prompt of %d tokens is longer than the %d planned", g->plen[p], T - mx);
    }
    int32_t *pr = malloc(sizeof(int32_t) * (size_t)P * longest);
    if (!pr) return fg_set_error("out of memory");
    for (int p = 0; p < P; p++) memcpy(pr + (size_t)p * longest, g->prompts + (size_t)p * FG_CD_MAX_TOKENS, sizeof(int32_t) * (size_t)g->plen[p]);
    int32_t eos = FG_TOK_EOS;
    double t0 = fg_now();
    int rc = fg_rl_rollout(ws, pr, g->plen, P, G, mx, d->r.temperature, &eos, 1, fg_rng_u64(r), g->gen, g->glen);
    st->seconds += fg_now() - t0;
    free(pr);
    if (rc) return fg_wrap_error("rollout");
    for (int s = 0; s < S; s++) {
        int f = 0, ok = verify(d, g, s, g->gen + (size_t)s * mx, g->glen[s], &f);
        if (ok < 0) return fg_wrap_error("verifier");
        g->rewards[s] = (float)ok + d->r.format_reward * (float)f;
        st->good += ok; st->fmt += f; st->samples++;
        st->reward_sum += g->rewards[s]; st->reward_sum2 += (double)g->rewards[s] * g->rewards[s];
        st->gen_tokens += g->glen[s];
    }
    for (int p = 0; p < P; p++) st->prompt_tokens += g->plen[p];
    st->dropped += fg_grpo_advantages(g->adv, g->keep, g->rewards, P, G, d->r.std_norm);
    st->rounds++;
    return 0;
}

// The rollout feeding updates index .. index + mu - 1 into d->batch. Without --drop-zero-var: one
// round, every group in the batch. With it, DAPO's dynamic sampling: rounds of P more problems
// until the batch holds P groups whose rewards differ (at most FG_RL_MAX_ROUNDS rounds; slots
// still empty then take zero-variance groups of the last round, masked out), so every update
// spends its compute on groups that carry a signal. The statistics cover every completion sampled.
static int rollout_phase(rl_ctx *d, int64_t index) {
    int P = d->r.prompts, S = d->S, T = d->T, G = d->r.group, mx = d->r.max_new;
    fg_model *m = d->policy;
    fg_rng r;
    fg_rng_seed(&r, d->o->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(index + 1)));
    fg_wstore *ws = fg_wstore_from_model(m, FG_F32); // a view of the policy's weights, for every round
    if (!ws) return -1;
    roll_sums st = {0};
    int filled = 0, rc = 0;
    if (!d->r.drop_zero_var) { // one round is the batch
        rc = sample_round(d, ws, &r, &st);
        groups t = d->batch; d->batch = d->round; d->round = t;
        filled = P;
    }
    while (!rc && filled < P && st.rounds < FG_RL_MAX_ROUNDS) {
        rc = sample_round(d, ws, &r, &st);
        for (int p = 0; !rc && p < P && filled < P; p++)
            if (d->round.keep[p]) group_copy(&d->batch, filled++, &d->round, p, G, mx);
    }
    fg_wstore_free(ws);
    if (rc) return -1;
    for (int p = 0; filled < P; p++) group_copy(&d->batch, filled++, &d->round, p, G, mx); // zero-variance groups
    d->reward_mean = st.reward_sum / st.samples;
    d->reward_std = sqrt(FG_MAX(0.0, st.reward_sum2 / st.samples - d->reward_mean * d->reward_mean));
    d->acc = (double)st.good / st.samples;
    d->fmt = (double)st.fmt / st.samples;
    d->len_mean = st.gen_tokens / st.samples;
    d->roll_tok_s = st.gen_tokens / FG_MAX(st.seconds, 1e-9);
    d->dropped = st.dropped;
    d->rounds = st.rounds;
    double gen_tokens = st.gen_tokens, prompt_tokens = st.prompt_tokens;
    const groups *b = &d->batch;
    // the sequences: prompt + completion, inputs shifted by one against targets
    for (int s = 0; s < S; s++) {
        int p = s / G, pl = b->plen[p], n = pl + b->glen[s];
        const int32_t *pp = b->prompts + (size_t)p * FG_CD_MAX_TOKENS, *g = b->gen + (size_t)s * mx;
        int32_t *in = d->in + (size_t)s * T, *tg = d->tg + (size_t)s * T;
        uint8_t *mk = d->mask + (size_t)s * T;
        int use = !d->r.drop_zero_var || b->keep[p];
        for (int t = 0; t < T; t++) {
            int32_t cur = t < pl ? pp[t] : t < n ? g[t - pl] : FG_TOK_PAD;
            int32_t next = t + 1 < pl ? pp[t + 1] : t + 1 < n ? g[t + 1 - pl] : -1;
            in[t] = cur;
            int comp = t + 1 >= pl && t + 1 < n; // target t+1 is a sampled token
            tg[t] = comp ? next : -1;
            mk[t] = (uint8_t)(comp && use);
        }
    }
    // The sampling policy's and the reference's log-probabilities, from the training forward. With
    // mu = 1 the update's own forward (the same weights, the same arithmetic) gives logp_old: rl_step
    // copies it, one forward fewer.
    double fwd = d->act_flops * (double)S * T;
    d->o->rollout_flops += d->act_flops * (gen_tokens + prompt_tokens);
    if (d->r.mu > 1) {
        if (fg_model_forward(m, d->in, NULL, S, T, NULL)) return -1;
        logp_of(d, m, d->logp_old, NULL);
        d->o->rollout_flops += fwd;
    }
    if (d->ref) {
        if (fg_model_forward(d->ref, d->in, NULL, S, T, NULL)) return fg_wrap_error("reference forward");
        logp_of(d, d->ref, d->logp_ref, NULL);
        d->o->reference_flops += fwd;
    }
    d->rollout_at = index;
    return 0;
}

static int write_svg(const rl_ctx *d);

static int run_eval(rl_ctx *d) {
    fg_wstore *ws = fg_wstore_from_model(d->policy, FG_F32);
    int rc = ws ? fg_rl_eval(ws, d->r.task, d->r.level, d->r.eval_n, 0xe7a1u, &d->eval_acc, &d->eval_fmt) : -1;
    fg_wstore_free(ws);
    return rc ? fg_wrap_error("held-out evaluation") : 0;
}

static int rl_batch(void *ctx, int64_t index, int32_t *in, int32_t *tg, int B, int T) {
    rl_ctx *d = ctx;
    if (index < 0) return 1; // validation: fg_train's own (the task's held-out batches)
    d->updates = index;
    d->eval_acc = d->eval_fmt = NAN;
    if (d->r.eval_every > 0 && index % d->r.eval_every == 0 && run_eval(d)) return -1;
    if (d->rollout_at < 0 || index / d->r.mu != d->rollout_at / d->r.mu)
        if (rollout_phase(d, index / d->r.mu * d->r.mu)) return -1;
    memcpy(in, d->in, sizeof(int32_t) * (size_t)B * T);
    memcpy(tg, d->tg, sizeof(int32_t) * (size_t)B * T);
    return 0;
}

static void json_num(FILE *f, const char *key, double v) {
    if (isfinite(v)) fprintf(f, ",\"%s\":%.6f", key, v);
    else fprintf(f, ",\"%s\":null", key);
}

static int rl_step(void *ctx, fg_model *m, const int32_t *in, const int32_t *tg, int B, int T, float grad_scale,
                   fg_step *st) {
    rl_ctx *d = ctx;
    int N = B * T, V = m->cfg.vocab_size;
    double t0 = fg_now();
    if (fg_model_forward(m, in, NULL, B, T, st)) return -1;
    logp_of(d, m, d->logp, d->ent);
    if (d->r.mu == 1) memcpy(d->logp_old, d->logp, sizeof(float) * (size_t)N);
    fg_grpo_stats gs;
    double loss = fg_grpo_loss(d->dlogp, d->logp, d->logp_old, d->ref ? d->logp_ref : NULL, d->mask, d->batch.adv, B, T, &d->go, &gs);
    for (int i = 0; i < N; i++) d->safe[i] = tg[i] >= 0 ? tg[i] : 0;
    fg_logp_backward(m->logits, m->logits, d->safe, d->dlogp, N, V); // in place
    if (d->r.temperature != 1.0f) { // the logits were divided by the temperature: d/d(raw) = d/d(scaled) / T
        float inv = 1.0f / d->r.temperature;
        for (size_t i = 0; i < (size_t)N * V; i++) m->logits[i] *= inv;
    }
    if (fg_model_backward_dlogits(m, m->logits, grad_scale)) return -1;
    double ent = 0;
    long cnt = 0;
    for (int i = 0; i < N; i++)
        if (d->mask[i]) { ent += d->ent[i]; cnt++; }
    st->loss = (float)(loss + st->bal_loss);
    st->ce_loss = (float)gs.pg_loss;
    double upd_s = fg_now() - t0;
    fprintf(d->log, "{\"update\":%lld,\"rollout\":%lld", (long long)d->updates + 1, (long long)(d->rollout_at / d->r.mu));
    json_num(d->log, "reward_mean", d->reward_mean); json_num(d->log, "reward_std", d->reward_std);
    json_num(d->log, "accuracy", d->acc); json_num(d->log, "format", d->fmt); json_num(d->log, "len_mean", d->len_mean);
    fprintf(d->log, ",\"dropped_groups\":%d,\"rounds\":%d", d->dropped, d->rounds);
    json_num(d->log, "loss", loss); json_num(d->log, "pg_loss", gs.pg_loss); json_num(d->log, "kl", gs.kl);
    json_num(d->log, "entropy", cnt ? ent / cnt : NAN); json_num(d->log, "clip_frac", gs.clip_frac);
    json_num(d->log, "ratio_mean", gs.ratio_mean); json_num(d->log, "rollout_tok_s", d->roll_tok_s);
    json_num(d->log, "update_tok_s", N / FG_MAX(upd_s, 1e-9));
    json_num(d->log, "heldout_accuracy", d->eval_acc); json_num(d->log, "heldout_format", d->eval_fmt);
    fprintf(d->log, "}\n");
    if (fflush(d->log) || ferror(d->log)) return fg_set_error("cannot write '%s': %s", d->log_path, strerror(errno));
    if (isfinite(d->eval_acc)) write_svg(d);
    return 0;
}

// ---- the log and its plot -------------------------------------------------------------------------

// The value of "key": in a JSON line (NAN when absent or null).
static double line_num(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return NAN;
    p += strlen(pat);
    if (!strncmp(p, "null", 4)) return NAN;
    return strtod(p, NULL);
}

// Keeps the lines of OUT/rl.jsonl up to update `upto` (a resumed run rewrites what came after).
static int log_cut(const char *path, int64_t upto) {
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? 0 : fg_set_error("cannot read '%s': %s", path, strerror(errno));
    char tmp[1200], line[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *o = fopen(tmp, "w");
    if (!o) { fclose(f); return fg_set_error("cannot write '%s': %s", tmp, strerror(errno)); }
    while (fgets(line, sizeof line, f))
        if (line_num(line, "update") <= (double)upto) fputs(line, o);
    fclose(f);
    if (fclose(o) || rename(tmp, path)) return fg_set_error("cannot rewrite '%s'", path);
    return 0;
}

// OUT/rl.svg: rollout reward, rollout accuracy and held-out accuracy (left axis, 0..1) and the mean
// completion length over the longest (dashed) against updates, from OUT/rl.jsonl.
static int write_svg(const rl_ctx *d) {
    FILE *f = fopen(d->log_path, "r");
    if (!f) return fg_set_error("cannot read '%s'", d->log_path);
    int n = 0, ne = 0, cap = 256;
    double *x = malloc(sizeof(double) * cap), *rw = malloc(sizeof(double) * cap), *ac = malloc(sizeof(double) * cap);
    double *ln = malloc(sizeof(double) * cap), *ex = malloc(sizeof(double) * cap), *ey = malloc(sizeof(double) * cap);
    char line[4096];
    int rc = -1;
    while (x && rw && ac && ln && ex && ey && fgets(line, sizeof line, f)) {
        if (n == cap) {
            cap *= 2;
            double **v[] = {&x, &rw, &ac, &ln, &ex, &ey};
            for (int i = 0; i < 6; i++) {
                double *nv = realloc(*v[i], sizeof(double) * cap);
                if (!nv) goto done;
                *v[i] = nv;
            }
        }
        x[n] = line_num(line, "update");
        rw[n] = line_num(line, "reward_mean");
        ac[n] = line_num(line, "accuracy");
        ln[n] = line_num(line, "len_mean") / d->r.max_new;
        double e = line_num(line, "heldout_accuracy");
        if (isfinite(e)) { ex[ne] = x[n] - 1; ey[ne++] = e; } // measured before the update
        n++;
    }
    if (!n) { rc = 0; goto done; }
    char title[160];
    snprintf(title, sizeof title, "GRPO: %s, G = %d, %d prompts per rollout", d->r.task == FG_RL_TASK_COUNTDOWN ? "Countdown" : "arithmetic",
             d->r.group, d->r.prompts);
    fg_plot *pl = fg_plot_new(title, "update", "reward / accuracy / length (fraction of max)", 0, 0);
    if (!pl) goto done;
    fg_plot_add(pl, "rollout reward", x, rw, n, FG_PLOT_LINE, 0);
    fg_plot_add(pl, "rollout accuracy", x, ac, n, FG_PLOT_LINE, 1);
    if (ne) fg_plot_add(pl, "held-out accuracy (greedy)", ex, ey, ne, FG_PLOT_LINE | FG_PLOT_POINTS, 2);
    fg_plot_add(pl, "completion length / max_new", x, ln, n, FG_PLOT_DASHED, 3);
    rc = fg_plot_write(pl, d->svg_path);
    fg_plot_free(pl);
done:
    fclose(f);
    free(x); free(rw); free(ac); free(ln); free(ex); free(ey);
    return rc;
}

// ---- the run ---------------------------------------------------------------------------------------

// OUT/rl_opts.json: the run's GRPO options (the reference as an absolute path). A resumed run
// reads them back: everything but how often it evaluates and the verifier's timeout is the run's.
static int opts_save(const char *dir, const fg_rl_opts *r) {
    char path[1100], tmp[1200], ref[4096] = "";
    snprintf(path, sizeof path, "%s/rl_opts.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (r->ref && !realpath(r->ref, ref)) return fg_set_error("cannot resolve the reference '%s': %s", r->ref, strerror(errno));
    FILE *f = fopen(tmp, "w");
    if (!f) return fg_set_error("cannot write '%s': %s", tmp, strerror(errno));
    fprintf(f, "{\"ref\":");
    if (r->ref) fg_json_write_string(f, ref, strlen(ref));
    else fprintf(f, "null");
    fprintf(f, ",\"verifier\":");
    if (r->verifier) fg_json_write_string(f, r->verifier, strlen(r->verifier));
    else fprintf(f, "null");
    fprintf(f, ",\"task\":%d,\"level\":%d,\"prompts\":%d,\"group\":%d,\"mu\":%d,\"max_new\":%d,\"temperature\":%.9g,"
               "\"format_reward\":%.9g,\"clip_lo\":%.9g,\"clip_hi\":%.9g,\"beta\":%.9g,\"token_level\":%d,\"std_norm\":%d,"
               "\"no_len_norm\":%d,\"drop_zero_var\":%d}\n", r->task, r->level, r->prompts, r->group, r->mu, r->max_new,
            r->temperature, r->format_reward, r->clip_lo, r->clip_hi, r->beta, r->token_level, r->std_norm, r->no_len_norm,
            r->drop_zero_var);
    if (fclose(f) || rename(tmp, path)) return fg_set_error("cannot write '%s'", path);
    return 0;
}

// Reads them into *r; strings into *arena (the caller frees it).
static int opts_load(const char *dir, fg_rl_opts *r, char **arena) {
    char path[1100];
    snprintf(path, sizeof path, "%s/rl_opts.json", dir);
    size_t len;
    char *text = fg_read_file(path, &len);
    if (!text) return fg_wrap_error("cannot resume: the run's GRPO options are missing");
    fg_json *j = fg_json_parse(text, len, path);
    free(text);
    if (!j) return -1;
#define NUM(key, field, ty) do { const fg_json *v_ = fg_json_get(j, key); if (v_ && v_->type == FG_JSON_NUMBER) r->field = (ty)v_->num; } while (0)
    NUM("task", task, int); NUM("level", level, int); NUM("prompts", prompts, int); NUM("group", group, int);
    NUM("mu", mu, int); NUM("max_new", max_new, int); NUM("temperature", temperature, float);
    NUM("format_reward", format_reward, float); NUM("clip_lo", clip_lo, float); NUM("clip_hi", clip_hi, float);
    NUM("beta", beta, float); NUM("token_level", token_level, int); NUM("std_norm", std_norm, int);
    NUM("no_len_norm", no_len_norm, int); NUM("drop_zero_var", drop_zero_var, int);
#undef NUM
    const fg_json *ref = fg_json_get(j, "ref"), *ver = fg_json_get(j, "verifier");
    size_t need = (ref && ref->type == FG_JSON_STRING ? ref->len + 1 : 0) + (ver && ver->type == FG_JSON_STRING ? ver->len + 1 : 0);
    *arena = malloc(need + 1);
    if (!*arena) { fg_json_free(j); return fg_set_error("out of memory"); }
    char *at = *arena;
    r->ref = r->verifier = NULL;
    if (ref && ref->type == FG_JSON_STRING) { memcpy(at, ref->str, ref->len + 1); r->ref = at; at += ref->len + 1; }
    if (ver && ver->type == FG_JSON_STRING) { memcpy(at, ver->str, ver->len + 1); r->verifier = at; }
    fg_json_free(j);
    return 0;
}

int fg_rl_opts_check(const fg_rl_opts *r) {
    if (r->task != FG_RL_TASK_COUNTDOWN && r->task != FG_RL_TASK_ARITH) return fg_set_error("rl: unknown task %d", r->task);
    if (r->task == FG_RL_TASK_COUNTDOWN && (r->level < 0 || r->level > FG_CD_LEVELS))
        return fg_set_error("--level must be in [0, %d] (0: every level) (got %d)", FG_CD_LEVELS, r->level);
    if (r->prompts < 1 || r->group < 1 || r->mu < 1 || r->max_new < 1)
        return fg_set_error("--prompts, --group, --mu and --max-new must be >= 1");
    if (!(r->temperature > 0) || !isfinite(r->temperature))
        return fg_set_error("--temperature must be > 0 for sampling (got %g)", r->temperature);
    if (!(r->clip_lo >= 0 && r->clip_lo < 1) || !(r->clip_hi >= 0))
        return fg_set_error("--clip must be in [0, 1) and --clip-high >= 0 (got %g, %g)", r->clip_lo, r->clip_hi);
    if (!(r->beta >= 0)) return fg_set_error("--beta must be >= 0 (got %g)", r->beta);
    if (r->beta > 0 && !r->ref) return fg_set_error("--beta > 0 needs the reference policy's checkpoint");
    if (r->eval_every > 0 && r->eval_n < 1) return fg_set_error("--eval-n must be >= 1");
    return 0;
}

int fg_rl_train(fg_model *m, fg_adamw *opt, fg_train_state *st, const fg_train_opts *o_in, const fg_rl_opts *r_in) {
    fg_rl_opts rr = *r_in, *r = &rr;
    char *arena = NULL;
    if (st->step > 0 && opts_load(o_in->out_dir, r, &arena)) return -1;
    r->eval_every = r_in->eval_every; r->eval_n = r_in->eval_n; r->verifier_timeout = r_in->verifier_timeout;
    if (fg_rl_opts_check(r)) { free(arena); return -1; }
    if (m->cfg.vocab_size < FG_BYTE_VOCAB || st->tokenizer_data) {
        free(arena);
        return fg_set_error("rl: the built-in tasks are byte-level: the model needs the byte tokenizer and vocab_size >= %d",
                            FG_BYTE_VOCAB);
    }
    fg_train_opts o = *o_in;
    rl_ctx d;
    memset(&d, 0, sizeof d);
    d.r = *r;
    d.go = (fg_grpo_opts){r->clip_lo, r->clip_hi, r->beta, r->token_level, r->no_len_norm, r->max_new};
    d.o = &o;
    d.policy = m;
    d.rollout_at = -1;
    int P = r->prompts, G = r->group, S = P * G, mx = r->max_new;
    int longest_prompt = r->task == FG_RL_TASK_COUNTDOWN ? FG_CD_MAX_PROMPT : FG_TASK_PROMPT_LEN;
    d.S = S;
    d.T = longest_prompt + mx; // inputs: prompt + completion but the last token
    if (d.T > m->cfg.max_position_embeddings) {
        free(arena);
        return fg_set_error("rl: prompts of up to %d tokens + --max-new %d exceed the model's context of %d (hint: --max-new %d)",
                            longest_prompt, mx, m->cfg.max_position_embeddings, m->cfg.max_position_embeddings - longest_prompt);
    }
    o.batch = S;
    o.seq = d.T;
    o.accum = 1;
    int64_t tt, ta;
    fg_config_param_counts(&m->cfg, &tt, &ta);
    d.act_flops = 2.0 * (double)ta;
    int rc = -1;
    size_t ST = (size_t)S * d.T;
    d.in = malloc(sizeof(int32_t) * ST); d.tg = malloc(sizeof(int32_t) * ST); d.safe = malloc(sizeof(int32_t) * ST);
    d.mask = malloc(ST);
    d.logp_old = malloc(sizeof(float) * ST); d.logp_ref = malloc(sizeof(float) * ST); d.logp = malloc(sizeof(float) * ST);
    d.dlogp = malloc(sizeof(float) * ST); d.ent = malloc(sizeof(float) * ST);
    int grc = groups_alloc(&d.batch, P, G, mx) | groups_alloc(&d.round, P, G, mx);
    if (grc || !d.in || !d.tg || !d.safe || !d.mask || !d.logp_old || !d.logp_ref || !d.logp || !d.dlogp || !d.ent) {
        fg_set_error("rl: out of memory for %d sequences of %d tokens", S, d.T);
        goto done;
    }
    if (r->beta > 0) {
        d.ref = fg_ckpt_load(r->ref, NULL, NULL);
        if (!d.ref) { fg_wrap_error("reference policy %s", r->ref); goto done; }
        if (memcmp(&d.ref->cfg, &m->cfg, sizeof m->cfg)) {
            fg_set_error("the reference policy %s has another config than the policy (hint: --ref is the checkpoint the run "
                         "started from)", r->ref);
            goto done;
        }
    }
    if (fg_mkdir_p(o.out_dir) || (st->step == 0 && opts_save(o.out_dir, r))) goto done;
    snprintf(d.log_path, sizeof d.log_path, "%s/rl.jsonl", o.out_dir);
    snprintf(d.svg_path, sizeof d.svg_path, "%s/rl.svg", o.out_dir);
    if (st->step > 0) {
        if (log_cut(d.log_path, st->step)) goto done;
        fg_ledger_info li; // the rollout and reference FLOPs of the segments before this one
        if (!fg_ledger_read(o.out_dir, &li)) { o.rollout_flops = li.rollout_flops; o.reference_flops = li.reference_flops; }
    }
    d.log = fopen(d.log_path, st->step > 0 ? "a" : "w");
    if (!d.log) { fg_set_error("cannot write '%s': %s", d.log_path, strerror(errno)); goto done; }
    o.batch_fn = rl_batch;
    o.step_fn = rl_step;
    o.hook_ctx = &d;
    rc = fg_train(m, opt, st, &o);
    if (!rc && r->eval_every > 0) { // the final policy's held-out accuracy
        rc = run_eval(&d);
        if (!rc) {
            fprintf(d.log, "{\"update\":%lld", (long long)st->step);
            json_num(d.log, "heldout_accuracy", d.eval_acc); json_num(d.log, "heldout_format", d.eval_fmt);
            fprintf(d.log, ",\"final\":true}\n");
            fflush(d.log);
        }
    }
    if (!rc) rc = write_svg(&d);
done:
    if (d.log) fclose(d.log);
    fg_model_free(d.ref);
    groups_free(&d.batch); groups_free(&d.round);
    free(d.in); free(d.tg); free(d.safe); free(d.mask);
    free(d.logp_old); free(d.logp_ref); free(d.logp); free(d.dlogp); free(d.ent);
    free(d.text); free(arena);
    return rc;
}
