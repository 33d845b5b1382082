// test_train.c: the trainer: bit-exact resume (20 steps == 10 + resume + 10), gradient
// accumulation equivalence, learning-rate schedules, load statistics, and that training learns.
#include <string.h>
#include <unistd.h>

#include "formats/checkpoint.h"
#include "test.h"
#include "train/train.h"

static void fresh(fg_model **m, fg_adamw *opt, fg_train_state *st, uint64_t seed) {
    fg_config c;
    fg_config_preset(&c, "tiny");
    *m = fg_model_create(&c);
    fg_model_init_weights(*m, seed);
    fg_adamw_init(opt, (*m)->n_params, (*m)->n_tensors);
    memset(st, 0, sizeof *st);
    fg_rng_seed(&st->rng, seed ^ 1);
    fg_rng_seed(&st->data_rng, seed ^ 2);
    strcpy(st->tokenizer, "byte");
}

static void base_opts(fg_train_opts *o, const char *dir) {
    fg_train_opts_default(o);
    o->batch = 4; o->seq = 70; o->steps = 20; o->warmup = 3; o->lr = 3e-3f; o->eval_every = 5; o->eval_batches = 1;
    o->save_every = 0; o->out_dir = dir; o->progress = 0; o->quiet = 1; o->balance_alpha = 0.01f;
}

int main(void) {
    char dir_a[] = "/tmp/fg_train_a_XXXXXX", dir_b[] = "/tmp/fg_train_b_XXXXXX";
    CHECK(mkdtemp(dir_a) && mkdtemp(dir_b));
    // --- resume: 20 steps in one run == 10, save, load, 10 more ---------------------------------
    fg_model *ma, *mb;
    fg_adamw oa, ob;
    fg_train_state sa, sb;
    fg_train_opts o;
    fresh(&ma, &oa, &sa, 5);
    base_opts(&o, dir_a);
    CHECK_MSG(fg_train(ma, &oa, &sa, &o) == 0, "%s", fg_last_error());
    CHECK(sa.step == 20);
    fresh(&mb, &ob, &sb, 5);
    base_opts(&o, dir_b);
    o.stop_after = 10;
    CHECK_MSG(fg_train(mb, &ob, &sb, &o) == 0, "%s", fg_last_error());
    CHECK(sb.step == 10);
    fg_adamw_free(&ob);
    fg_model_free(mb);
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt.fgck", dir_b);
    fg_train_state sb2;
    mb = fg_ckpt_load(path, &ob, &sb2);
    CHECK_MSG(mb != NULL, "%s", fg_last_error());
    if (mb) {
        CHECK(sb2.step == 10);
        o.stop_after = 0;
        CHECK_MSG(fg_train(mb, &ob, &sb2, &o) == 0, "%s", fg_last_error());
        CHECK(sb2.step == 20 && sb2.tokens_seen == sa.tokens_seen);
        CHECK_MSG(memcmp(ma->params, mb->params, sizeof(float) * ma->n_params) == 0, "weights differ after resume");
        CHECK(memcmp(oa.m, ob.m, sizeof(float) * ma->n_params) == 0 && memcmp(oa.v, ob.v, sizeof(float) * ma->n_params) == 0);
        // byte-identical weight files
        char pa[256], pb[256];
        snprintf(pa, sizeof pa, "%s/w.safetensors", dir_a);
        snprintf(pb, sizeof pb, "%s/w.safetensors", dir_b);
        fg_model_save_safetensors(ma, pa);
        fg_model_save_safetensors(mb, pb);
        size_t la, lb;
        char *fa = fg_read_file(pa, &la), *fb = fg_read_file(pb, &lb);
        CHECK(fa && fb && la == lb && memcmp(fa, fb, la) == 0);
        free(fa); free(fb);
        free(sb2.train_json);
        // the log has one JSON line per step plus validation lines
        snprintf(path, sizeof path, "%s/log.jsonl", dir_b);
        size_t ll;
        char *log = fg_read_file(path, &ll);
        int steps = 0, vals = 0;
        for (char *p = log; p && (p = strstr(p, "\"step\":")); p++) steps++;
        for (char *p = log; p && (p = strstr(p, "\"val_loss\"")); p++) vals++;
        CHECK_MSG(steps - vals == 20 && vals == 4, "log has %d step lines and %d validation lines", steps - vals, vals);
        CHECK(log && strstr(log, "\"expert_load\":[{\"layer\":1,") && strstr(log, "\"cv\":") && strstr(log, "\"grad_norm\":"));
        free(log);
        fg_adamw_free(&ob);
        fg_model_free(mb);
    }
    // --- training learns: validation loss falls ----------------------------------------------------
    {
        double l0, b0, l1, b1;
        base_opts(&o, dir_a);
        fg_model *m;
        fg_adamw opt;
        fg_train_state st;
        fresh(&m, &opt, &st, 9);
        CHECK(fg_train_eval(m, &o, NULL, &l0, &b0) == 0);
        o.steps = 60;
        CHECK(fg_train(m, &opt, &st, &o) == 0);
        CHECK(fg_train_eval(m, &o, NULL, &l1, &b1) == 0);
        CHECK_MSG(l1 < 0.6 * l0 && b1 < b0, "validation loss %.3f -> %.3f", l0, l1);
        fg_adamw_free(&opt);
        fg_model_free(m);
    }
    // --- gradient accumulation: 2 x B/2 == 1 x B on file data (all targets count) ------------------
    {
        snprintf(path, sizeof path, "%s/data.txt", dir_a);
        FILE *f = fopen(path, "w");
        for (int i = 0; i < 300; i++) fprintf(f, "line %d: the quick brown fox jumps over the lazy dog %d.\n", i, i * 7);
        fclose(f);
        const char *files[] = {path};
        fg_model *m1, *m2;
        fg_adamw o1, o2;
        fg_train_state s1, s2;
        fresh(&m1, &o1, &s1, 3);
        fresh(&m2, &o2, &s2, 3);
        base_opts(&o, dir_a);
        o.data = files; o.n_data = 1; o.steps = 3; o.eval_every = 0; o.val_fraction = 0; o.bias_gamma = 0; o.balance_alpha = 0;
        o.batch = 4;
        CHECK_MSG(fg_train(m1, &o1, &s1, &o) == 0, "%s", fg_last_error());
        o.batch = 2; o.accum = 2;
        CHECK(fg_train(m2, &o2, &s2, &o) == 0);
        double e = tst_rel_err(m2->params, m1->params, m1->n_params);
        CHECK_MSG(e < 1e-5, "accumulated weights differ from full-batch weights: rel %.3g", e);
        fg_adamw_free(&o1); fg_adamw_free(&o2);
        fg_model_free(m1); fg_model_free(m2);
    }
    // --- schedules ---------------------------------------------------------------------------------
    CHECK(fabsf(fg_lr_at(FG_SCHED_COSINE, 0, 100, 10, 1.0f, 0.1f, 0) - 0.1f) < 1e-6);
    CHECK(fabsf(fg_lr_at(FG_SCHED_COSINE, 9, 100, 10, 1.0f, 0.1f, 0) - 1.0f) < 1e-6);
    CHECK(fabsf(fg_lr_at(FG_SCHED_COSINE, 55, 100, 10, 1.0f, 0.1f, 0) - 0.55f) < 1e-5); // midpoint of the cosine
    CHECK(fabsf(fg_lr_at(FG_SCHED_WSD, 50, 100, 10, 1.0f, 0.1f, 0.2f) - 1.0f) < 1e-6);
    CHECK(fabsf(fg_lr_at(FG_SCHED_WSD, 90, 100, 10, 1.0f, 0.1f, 0.2f) - 0.55f) < 1e-5);
    // --- load statistics ---------------------------------------------------------------------------
    {
        fg_config c;
        fg_config_preset(&c, "tiny"); // 2 layers, layer 1 is MoE, E = 8
        int load[16] = {0};
        int l1[8] = {2, 4, 6, 8, 2, 4, 6, 8};
        memcpy(load + 8, l1, sizeof l1);
        fg_load_stats ls[2];
        CHECK(fg_load_stats_compute(&c, load, ls) == 1);
        CHECK(ls[0].layer == 1 && ls[0].min == 2 && ls[0].max == 8 && fabs(ls[0].cv - sqrt(5.0) / 5.0) < 1e-9);
    }
    fg_adamw_free(&oa);
    fg_model_free(ma);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir_a, dir_b);
    CHECK(system(cmd) == 0);
    return TEST_DONE();
}
