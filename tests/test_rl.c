// test_rl.c: GRPO's rollouts and training loop (src/train/rl.c). The loss itself is checked
// against the PyTorch reference in test_grpo.c; here:
//   - group sampling (fg_rl_rollout: prompts prefilled together, forked G - 1 times, one batched
//     step per token) against fg_generate, one sequence at a time, through the single-sequence
//     session: greedy, every one of the G forks must produce exactly fg_generate's tokens; sampled,
//     the same seed gives the same samples, and the G samples of a prompt differ;
//   - a stop id ends a sample (included) and the others go on;
//   - the gradient fg_rl_train feeds back: with mu = 1 the first update's ratio is exactly 1 (the
//     sampling policy's log-probabilities come from the same training forward), and a few updates
//     on a tiny model write rl.jsonl lines with finite statistics, the ledger's rollout and
//     reference FLOPs, rl.svg, and resume from a checkpoint to the same next rollout statistics as
//     the uninterrupted run.
#include <string.h>
#include <unistd.h>

#include "formats/checkpoint.h"
#include "frugal_tools.h"
#include "model_fixture.h"
#include "test.h"
#include "util.h"

static fg_config demo_cfg(void) {
    fg_config c;
    fg_config_preset(&c, "tiny");
    c.vocab_size = FG_BYTE_VOCAB;
    c.max_position_embeddings = 128;
    return c;
}

static void test_rollout_greedy(void) {
    fg_config c = demo_cfg();
    fg_model *m = make_model(&c, 3);
    fg_wstore *ws = fg_wstore_from_model(m, FG_F32);
    enum { P = 3, G = 4, MAXP = 9, NEW = 20 };
    int plen[P] = {5, 9, 1};
    int32_t pr[P * MAXP];
    fg_rng r;
    fg_rng_seed(&r, 5);
    for (int i = 0; i < P * MAXP; i++) pr[i] = (int32_t)fg_rng_below(&r, 256);
    int32_t out[P * G * NEW];
    int olen[P * G];
    CHECK(fg_rl_rollout(ws, pr, plen, P, G, NEW, 0, NULL, 0, 1, out, olen) == 0);
    fg_infer *s = fg_infer_create_store(ws, MAXP + NEW, FG_KV_AUTO, FG_F32);
    for (int p = 0; p < P; p++) {
        int32_t ref[NEW];
        fg_sample_opts so = {.temperature = 0, .top_p = 1, .max_new_tokens = NEW};
        fg_infer_reset(s);
        int n = fg_generate(s, pr + p * MAXP, plen[p], &so, ref, NEW, NULL, NULL);
        CHECK(n == NEW);
        for (int g = 0; g < G; g++) {
            int k = p * G + g;
            CHECK_MSG(olen[k] == NEW && !memcmp(out + (size_t)k * NEW, ref, sizeof ref), "prompt %d fork %d differs from fg_generate", p, g);
        }
    }
    // a stop id: the samples that hit it end there (the id included), the rest run on
    int32_t stop = out[2];
    CHECK(fg_rl_rollout(ws, pr, plen, P, G, NEW, 0, &stop, 1, 1, out, olen) == 0);
    for (int p = 0; p < P; p++) {
        int32_t ref[NEW];
        fg_sample_opts so = {.temperature = 0, .top_p = 1, .max_new_tokens = NEW, .stop_ids = &stop, .n_stop = 1};
        fg_infer_reset(s);
        int n = fg_generate(s, pr + p * MAXP, plen[p], &so, ref, NEW, NULL, NULL);
        for (int g = 0; g < G; g++) {
            int k = p * G + g;
            CHECK_MSG(olen[k] == n && !memcmp(out + (size_t)k * NEW, ref, sizeof(int32_t) * (size_t)n), "stop: prompt %d fork %d", p, g);
        }
    }
    // sampled: reproducible for a seed; the forks of a prompt do not all agree
    int32_t a[P * G * NEW], b[P * G * NEW];
    int la[P * G], lb[P * G];
    CHECK(fg_rl_rollout(ws, pr, plen, P, G, NEW, 1.0f, NULL, 0, 77, a, la) == 0);
    CHECK(fg_rl_rollout(ws, pr, plen, P, G, NEW, 1.0f, NULL, 0, 77, b, lb) == 0);
    CHECK(!memcmp(a, b, sizeof a) && !memcmp(la, lb, sizeof la));
    for (int p = 0; p < P; p++) {
        int differ = 0;
        for (int g = 1; g < G; g++) differ |= memcmp(a + (size_t)(p * G) * NEW, a + (size_t)(p * G + g) * NEW, sizeof(int32_t) * NEW) != 0;
        CHECK_MSG(differ, "prompt %d: all %d samples identical at temperature 1", p, G);
    }
    // bad arguments are refused
    CHECK(fg_rl_rollout(ws, pr, plen, P, 0, NEW, 1.0f, NULL, 0, 1, a, la) == -1);
    CHECK(fg_rl_rollout(ws, pr, plen, P, G, 500, 1.0f, NULL, 0, 1, a, la) == -1);
    fg_infer_free(s);
    fg_wstore_free(ws);
    fg_model_free(m);
}

// The value of key in the last line of path that has it.
static double last_num(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    char line[8192], pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    double v = NAN;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, pat);
        if (p) v = strncmp(p + strlen(pat), "null", 4) ? strtod(p + strlen(pat), NULL) : NAN;
    }
    fclose(f);
    return v;
}

// The line of update u in path (into buf), 0 when found.
static int line_of(const char *path, int u, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char pat[64];
    snprintf(pat, sizeof pat, "{\"update\":%d,\"rollout\"", u);
    int rc = -1;
    while (fgets(buf, (int)cap, f))
        if (!strncmp(buf, pat, strlen(pat))) { rc = 0; break; }
    fclose(f);
    return rc;
}

static int run_rl(const char *dir, const char *init, const char *resume, int64_t steps, int64_t stop_after, double *ratio1) {
    fg_train_opts o;
    fg_train_opts_default(&o);
    o.steps = steps; o.stop_after = stop_after; o.lr = 3e-3f; o.sched = FG_SCHED_CONSTANT; o.warmup = 0;
    o.out_dir = dir; o.save_every = 2; o.eval_every = 0; o.progress = 0; o.quiet = 1; o.seed = 9;
    fg_rl_opts r;
    fg_rl_opts_default(&r);
    r.task = FG_RL_TASK_COUNTDOWN; r.level = 1; r.prompts = 3; r.group = 4; r.mu = 2; r.max_new = 24;
    r.beta = 0.05f; r.ref = init; r.eval_every = 2; r.eval_n = 8;
    fg_adamw opt = {0};
    fg_train_state st;
    memset(&st, 0, sizeof st);
    fg_model *m = fg_ckpt_load(resume ? resume : init, resume ? &opt : NULL, resume ? &st : NULL);
    if (!m) { fprintf(stderr, "load: %s\n", fg_last_error()); return -1; }
    if (!resume) { fg_adamw_init_for(&opt, m); fg_train_state_init(&st, o.seed); }
    int rc = fg_rl_train(m, &opt, &st, &o, &r);
    if (rc) fprintf(stderr, "fg_rl_train: %s\n", fg_last_error());
    char path[512];
    snprintf(path, sizeof path, "%s/rl.jsonl", dir);
    char line[8192];
    if (ratio1 && !line_of(path, 1, line, sizeof line)) *ratio1 = strtod(strstr(line, "\"ratio_mean\":") + 13, NULL);
    fg_train_state_free(&st);
    fg_adamw_free(&opt);
    fg_model_free(m);
    return rc;
}

static void test_train(void) {
    char base[] = "/tmp/frugal_rl_XXXXXX";
    if (!mkdtemp(base)) { CHECK(0); return; }
    char init[600], a[600], b[600], path[700], resume[700];
    snprintf(init, sizeof init, "%s/init.fgck", base);
    snprintf(a, sizeof a, "%s/a", base);
    snprintf(b, sizeof b, "%s/b", base);
    fg_config c = demo_cfg();
    fg_model *m = make_model(&c, 4);
    CHECK(fg_ckpt_save(init, m, NULL, NULL) == 0);
    fg_model_free(m);
    double ratio1 = NAN;
    CHECK(run_rl(a, init, NULL, 6, 0, &ratio1) == 0);
    CHECK_MSG(ratio1 == 1.0, "first update's mean ratio %.9g, not 1", ratio1);
    snprintf(path, sizeof path, "%s/rl.jsonl", a);
    const char *keys[] = {"reward_mean", "reward_std", "accuracy", "format", "len_mean", "loss", "kl", "entropy", "clip_frac",
                          "rollout_tok_s", "update_tok_s"};
    char line[8192];
    CHECK(line_of(path, 6, line, sizeof line) == 0);
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        char pat[64];
        snprintf(pat, sizeof pat, "\"%s\":", keys[k]);
        char *p = strstr(line, pat);
        CHECK_MSG(p && isfinite(strtod(p + strlen(pat), NULL)), "update 6: %s missing or not finite", keys[k]);
    }
    CHECK(isfinite(last_num(path, "heldout_accuracy")));
    snprintf(path, sizeof path, "%s/ledger.json", a);
    fg_ledger_info li;
    CHECK(fg_ledger_read(a, &li) == 0 && li.rollout_flops > 0 && li.reference_flops > 0);
    snprintf(path, sizeof path, "%s/rl.svg", a);
    CHECK(access(path, R_OK) == 0);
    // stopped after 4 updates (a rollout boundary, a checkpoint), resumed to 6: the same updates 5, 6
    CHECK(run_rl(b, init, NULL, 6, 4, NULL) == 0);
    snprintf(resume, sizeof resume, "%s/ckpt.fgck", b);
    CHECK(run_rl(b, init, resume, 6, 0, NULL) == 0);
    for (int u = 5; u <= 6; u++) {
        char la[8192], lb[8192], pa[700], pb[700];
        snprintf(pa, sizeof pa, "%s/rl.jsonl", a);
        snprintf(pb, sizeof pb, "%s/rl.jsonl", b);
        CHECK(line_of(pa, u, la, sizeof la) == 0 && line_of(pb, u, lb, sizeof lb) == 0);
        const char *same[] = {"reward_mean", "accuracy", "len_mean", "loss", "kl"};
        for (size_t k = 0; k < sizeof same / sizeof *same; k++) {
            char pat[64];
            snprintf(pat, sizeof pat, "\"%s\":", same[k]);
            char *x = strstr(la, pat), *y = strstr(lb, pat);
            CHECK_MSG(x && y && strtod(x + strlen(pat), NULL) == strtod(y + strlen(pat), NULL), "update %d: %s differs after resume", u, same[k]);
        }
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
}

int main(void) {
    test_rollout_greedy();
    test_train();
    return TEST_DONE();
}
