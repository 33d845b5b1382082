// cmd_distill.c: `frugal distill` (logit distillation, online or from a teacher cache),
// `frugal distill cache` (run the teacher once, store its top-k) and `frugal distill generate`
// (sequence-level distillation: verified teacher samples as SFT JSONL). docs/distill.md.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"

static int distill_cache(int argc, char **argv);
static int distill_generate(int argc, char **argv);

// Prints what a distill run cost (its ledger) beside the teacher's share.
static void print_bill(const char *dir) {
    fg_ledger_info li;
    if (fg_ledger_read(dir, &li)) return;
    char a[32], b[32], c[32];
    printf("bill: teacher %s FLOPs, student training %s FLOPs, cache %s bytes, wall %.0f s (frugal cost ledger %s)\n",
           fg_si_format(a, sizeof a, li.teacher_flops, 0), fg_si_format(b, sizeof b, li.train_flops + li.eval_flops, 0),
           fg_si_format(c, sizeof c, li.cache_bytes, 0), li.wall_s, dir);
}

int cmd_distill(int argc, char **argv) {
    for (int i = 1; i < argc; i++) if (!strcmp(argv[i], "-o")) argv[i] = "--out"; // -o is --out
    if (argc > 1 && !strcmp(argv[1], "cache")) return distill_cache(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "generate")) return distill_generate(argc - 1, argv + 1);
    fg_train_opts o;
    fg_train_opts_default(&o);
    fg_distill_opts d;
    memset(&d, 0, sizeof d);
    fg_distill_loss_opts_default(&d.loss);
    const char *student = NULL, *div = "fkl", *data = NULL;
    int quiet = 0, no_progress = 0, threads = 0;
    o.seq = 0; o.batch = 32; o.out_dir = "runs/distill";
    cli_opt opts[] = {
        {"teacher", OPT_STR, &d.teacher, "teacher checkpoint (required)"},
        {"student", OPT_STR, &student, "student: preset, config.json, or a checkpoint (.fgck) to continue from (required)"},
        {"cache", OPT_STR, &d.cache, "train from this teacher cache (frugal distill cache) instead of a teacher forward per batch"},
        {"data", OPT_STR, &data, "a text/JSONL data file (more may follow as arguments; none: the built-in task)"},
        {"shards", OPT_STR, &o.shards, "train from a directory written by frugal data prepare (online mode)"},
        {"divergence", OPT_STR, &div, "fkl, rkl, skl (skew KL), srkl (skew reverse KL) or jsd (generalised JSD)"},
        {"temperature", OPT_FLOAT, &d.loss.temperature, "softmax temperature T of teacher and student", "(0,inf)"},
        {"alpha", OPT_FLOAT, &d.loss.alpha, "weight of the label cross-entropy (1 - alpha: T^2 x divergence)", "[0,1]"},
        {"lambda", OPT_FLOAT, &d.loss.lambda, "skl/srkl skew", "[0,1)"},
        {"beta", OPT_FLOAT, &d.loss.beta, "jsd mixture weight", "(0,1)"},
        {"out", OPT_STR, &o.out_dir, "output directory (ckpt.fgck, log.jsonl, ledger.json)"},
        {"steps", OPT_I64, &o.steps, "optimizer steps", "[1,inf)"},
        {"batch", OPT_INT, &o.batch, "sequences per micro-batch", "[1,inf)"},
        {"seq", OPT_INT, &o.seq, "tokens per sequence (0: the cache's, 70 for the task, else min(128, context))", "[0,inf)"},
        {"accum", OPT_INT, &o.accum, "micro-batches per step", "[1,inf)"},
        {"lr", OPT_FLOAT, &o.lr, "peak learning rate", "(0,inf)"},
        {"min-lr", OPT_FLOAT, &o.min_lr, "final learning rate", "[0,inf)"},
        {"warmup", OPT_I64, &o.warmup, "linear warmup steps", "[0,inf)"},
        {"weight-decay", OPT_FLOAT, &o.weight_decay, "AdamW decoupled weight decay", "[0,inf)"},
        {"clip", OPT_FLOAT, &o.clip, "global gradient norm clip (0 = off)", "[0,inf)"},
        {"bias-gamma", OPT_FLOAT, &o.bias_gamma, "aux-loss-free routing bias update speed (MoE students)", "[0,inf)"},
        {"seed", OPT_U64, &o.seed, "seed for initialisation and data order"},
        {"val-fraction", OPT_DOUBLE, &o.val_fraction, "fraction of file data held out for validation", "[0,0.5]"},
        {"eval-every", OPT_INT, &o.eval_every, "validation every N steps", "[0,inf)"},
        {"eval-batches", OPT_INT, &o.eval_batches, "batches per validation", "[1,inf)"},
        {"save-every", OPT_INT, &o.save_every, "checkpoint every N steps (always at the end)", "[0,inf)"},
        {"threads", OPT_INT, &threads, "OpenMP threads (0 = all cores)"},
        {"quiet", OPT_FLAG, &quiet, "no validation lines on stdout"},
        {"no-progress", OPT_FLAG, &no_progress, "no progress bar"},
        {NULL, 0, NULL, NULL},
    };
    const char *files[256];
    int nf = 0;
    int r = cli_parse("distill", "--teacher T.fgck --student S.json|S.fgck [--cache C.fgdc] [--data FILE] [FILES...]\n"
                      "       frugal distill cache --teacher T.fgck -o C.fgdc [--k 32] [FILES...]\n"
                      "       frugal distill generate --teacher T.fgck -o OUT.jsonl [--n 4] [--verifier CMD]",
                      opts, argc, argv, files + 1, 255, &nf);
    if (r) return r < 0 ? 1 : 0;
    cli_set_threads(threads);
    const char **fl = files + 1;
    if (data) { files[0] = data; fl = files; nf++; }
    if (!d.teacher) return cli_fail("distill", "--teacher is required", "frugal distill --teacher runs/demo/ckpt.fgck --student tiny");
    if (!student) return cli_fail("distill", "--student is required", "a preset (tiny), a config.json or a checkpoint");
    if ((d.loss.div = fg_divergence_parse(div)) < 0) return cli_fail("distill", fg_last_error(), NULL);
    if (fg_distill_loss_opts_check(&d.loss)) return cli_fail("distill", fg_last_error(), NULL);
    if (o.steps < 1 || o.accum < 1 || o.batch < 1 || (o.seq != 0 && o.seq < 2) || o.warmup < 0)
        return cli_fail("distill", "--steps, --accum, --batch must be >= 1, --seq >= 2, --warmup >= 0", NULL);
    if (o.shards && nf) return cli_fail("distill", "--shards and data files exclude each other", NULL);
    if (o.shards && d.cache) return cli_fail("distill", "a teacher cache is built from data files or the task, not --shards", NULL);
    o.data = fl; o.n_data = nf; o.quiet = quiet; o.progress = !no_progress;
    fg_model *m = NULL;
    fg_train_state st;
    fg_train_state_init(&st, o.seed);
    size_t sl = strlen(student);
    if (sl > 5 && !strcmp(student + sl - 5, ".fgck")) {
        fg_train_state sst;
        m = fg_ckpt_load(student, NULL, &sst);
        if (!m) return cli_fail("distill", fg_last_error(), "--student takes a preset, a config.json or a checkpoint");
        st.tokenizer_data = sst.tokenizer_data; st.tokenizer_len = sst.tokenizer_len; // keep its tokenizer
        if (st.tokenizer_data) strcpy(st.tokenizer, "bpe");
        sst.tokenizer_data = NULL;
        fg_train_state_free(&sst);
        d.student_trained = 1;
    } else {
        fg_config c;
        if (cli_load_config(&c, student)) return cli_fail("distill", fg_last_error(), "check the config file or use a preset");
        if (!(m = fg_model_create(&c))) return cli_fail("distill", fg_last_error(), NULL);
        fg_model_init_weights(m, o.seed);
    }
    fg_adamw opt;
    if (fg_adamw_init_for(&opt, m)) { fg_model_free(m); return cli_fail("distill", fg_last_error(), NULL); }
    if (o.seq == 0 && !d.cache) o.seq = nf || o.shards ? CLI_MIN(128, fg_model_config(m)->max_position_embeddings) : FG_TASK_LONGEST;
    int64_t total, active;
    fg_config_param_counts(fg_model_config(m), &total, &active);
    fg_config tc;
    int64_t ttotal = 0, tactive = 0;
    if (!fg_ckpt_read_config(d.teacher, &tc)) fg_config_param_counts(&tc, &ttotal, &tactive);
    printf("distill: student %s attention, %lld parameters (%lld active, %.1f%% of the teacher's %lld); %s, %s T=%g alpha=%g; data: %s\n",
           fg_model_config(m)->attn_type == FG_ATTN_MLA ? "MLA" : "GQA", (long long)total, (long long)active,
           tactive ? 100.0 * active / tactive : 0, (long long)tactive, d.cache ? "from the teacher cache" : "online teacher",
           fg_divergence_name(d.loss.div), d.loss.temperature, d.loss.alpha,
           o.shards ? "shards" : nf ? "files" : "built-in arithmetic task");
    cli_trap_signals(1);
    int rc = fg_distill_train(m, &opt, &st, &o, &d);
    cli_trap_signals(0);
    if (rc) cli_fail("distill", fg_last_error(), NULL);
    else {
        printf("checkpoint: %s/ckpt.fgck\nlog: %s/log.jsonl\n", o.out_dir, o.out_dir);
        print_bill(o.out_dir);
    }
    fg_train_state_free(&st);
    fg_adamw_free(&opt);
    fg_model_free(m);
    return rc ? 1 : 0;
}

static int distill_cache(int argc, char **argv) {
    fg_train_opts o;
    fg_train_opts_default(&o);
    o.seq = 0;
    fg_distill_cache_opts co = {.k = 32, .temperature = 1.0f, .batch = 16, .seed = 1337};
    const char *data = NULL;
    int threads = 0;
    cli_opt opts[] = {
        {"teacher", OPT_STR, &co.teacher, "teacher checkpoint (required)"},
        {"out", OPT_STR, &co.out, "(or -o) output cache file (required; written atomically)"},
        {"k", OPT_INT, &co.k, "teacher entries stored per token (5 bytes each)", "[1,inf)"},
        {"temperature", OPT_FLOAT, &co.temperature, "temperature of the stored log-probabilities (training must match)", "(0,inf)"},
        {"data", OPT_STR, &data, "a text/JSONL data file (more may follow; none: the built-in task)"},
        {"seqs", OPT_I64, &co.max_seqs, "sequences cached (0: every training window of the data; the task: 4096)", "[0,inf)"},
        {"seq", OPT_INT, &o.seq, "tokens per sequence (0: 70 for the task, else min(128, context))", "[0,inf)"},
        {"val-fraction", OPT_DOUBLE, &o.val_fraction, "fraction of file data held out (must match the distill run)", "[0,0.5]"},
        {"seed", OPT_U64, &co.seed, "task problems drawn from this seed"},
        {"batch", OPT_INT, &co.batch, "teacher forward batch", "[1,inf)"},
        {"threads", OPT_INT, &threads, "OpenMP threads (0 = all cores)"},
        {NULL, 0, NULL, NULL},
    };
    const char *files[256];
    int nf = 0;
    int r = cli_parse("distill cache", "--teacher T.fgck -o C.fgdc [options] [FILES...]", opts, argc, argv, files + 1, 255, &nf);
    if (r) return r < 0 ? 1 : 0;
    cli_set_threads(threads);
    const char **fl = files + 1;
    if (data) { files[0] = data; fl = files; nf++; }
    if (!co.teacher || !co.out) return cli_fail("distill cache", "--teacher and -o are required", "frugal distill cache --teacher T.fgck -o teacher.fgdc");
    o.data = fl; o.n_data = nf;
    if (o.seq == 0) {
        fg_config tc;
        if (fg_ckpt_read_config(co.teacher, &tc)) return cli_fail("distill cache", fg_last_error(), NULL);
        o.seq = nf ? CLI_MIN(128, tc.max_position_embeddings) : FG_TASK_LONGEST;
    }
    fg_distill_cache_info info;
    if (fg_distill_cache_build(&co, &o, &info)) return cli_fail("distill cache", fg_last_error(), NULL);
    char a[32], b[32];
    printf("cache: %s: %lld sequences x %d tokens, k %d of %d, %.0f bytes/token (5 x %d + 2 teacher bytes, 8 token bytes), %s bytes, "
           "teacher %s FLOPs, %.1f s\n", co.out, (long long)info.seqs, info.seq, info.k, info.V, info.bytes_per_token, info.k,
           fg_si_format(a, sizeof a, info.bytes, 0), fg_si_format(b, sizeof b, info.teacher_flops, 0), info.wall_s);
    return 0;
}

static int distill_generate(int argc, char **argv) {
    fg_distill_gen_opts g = {.n_prompts = 256, .n_samples = 4, .temperature = 0.7f, .max_new_tokens = FG_TASK_LONGEST,
                             .seed = 1337, .verifier_timeout = 10};
    int threads = 0;
    const char *task = "arith";
    cli_opt opts[] = {
        {"teacher", OPT_STR, &g.teacher, "teacher checkpoint (required)"},
        {"out", OPT_STR, &g.out, "(or -o) SFT JSONL output (required; statistics in OUT.stats.json)"},
        {"task", OPT_STR, &task, "without --prompts: arith (the arithmetic task) or countdown problems, checked by the task"},
        {"level", OPT_INT, &g.task_level, "--task countdown: difficulty level (0: mixed)", "[0,3]"},
        {"prompts", OPT_STR, &g.prompts, "JSONL of {\"prompt\": ...} (none: problems of the built-in task)"},
        {"n-prompts", OPT_INT, &g.n_prompts, "task problems drawn from the training split", "[1,inf)"},
        {"n", OPT_INT, &g.n_samples, "completions sampled per prompt", "[1,inf)"},
        {"temperature", OPT_FLOAT, &g.temperature, "sampling temperature (0 = greedy)", "[0,inf)"},
        {"max-new-tokens", OPT_INT, &g.max_new_tokens, "tokens per completion at most", "[1,inf)"},
        {"seed", OPT_U64, &g.seed, "sampling seed"},
        {"verifier", OPT_STR, &g.verifier, "shell command: reads a completion on stdin, exit 0 accepts (task: answer check)"},
        {"verifier-timeout", OPT_DOUBLE, &g.verifier_timeout, "seconds before a hanging verifier is killed (the run then stops with an error)", "(0,inf)"},
        {"threads", OPT_INT, &threads, "OpenMP threads (0 = all cores)"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("distill generate", "--teacher T.fgck -o OUT.jsonl [options]", opts, argc, argv, NULL, 0, NULL);
    if (r) return r < 0 ? 1 : 0;
    cli_set_threads(threads);
    if (!g.teacher || !g.out) return cli_fail("distill generate", "--teacher and -o are required", NULL);
    if (!strcmp(task, "countdown")) g.task = FG_TRAIN_COUNTDOWN;
    else if (strcmp(task, "arith")) return cli_fail("distill generate", "--task must be arith or countdown", NULL);
    if (g.task == FG_TRAIN_COUNTDOWN && !cli_given(argc, argv, "max-new-tokens")) g.max_new_tokens = fg_countdown_max_len(g.task_level);
    fg_distill_gen_stats s;
    if (fg_distill_generate(&g, &s)) return cli_fail("distill generate", fg_last_error(), NULL);
    printf("generate: %lld prompts, %lld samples: %lld accepted (%.1f%%), %lld rejected; %lld prompts with >= 1 accepted; "
           "%.0f teacher tokens, %.3g FLOPs, %.1f s\nwrote %s (+ %s.stats.json)\n",
           (long long)s.prompts, (long long)s.samples, (long long)s.accepted, s.samples ? 100.0 * s.accepted / s.samples : 0,
           (long long)s.rejected, (long long)s.prompts_with_one, s.tokens,
           s.teacher_flops, s.wall_s, g.out, g.out);
    return 0;
}

// ---- the demo's distillation stage (called by `frugal demo`, cli/cmd_eval.c) ----------------
// Distils the demo teacher in teacher_dir into the demo-student preset (dense GQA, ~20% of the
// teacher's active parameters) from a top-k teacher cache, evaluates it on the same held-out
// problems and prints both models side by side with their bills.
int cli_demo_distill(const char *teacher_dir, double teacher_acc, int n, int64_t steps, int64_t cache_seqs) {
    char ckpt[1100], sdir[1100], cache[1200];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.fgck", teacher_dir);
    snprintf(sdir, sizeof sdir, "%s/student", teacher_dir);
    snprintf(cache, sizeof cache, "%s/student.fgdc", teacher_dir);
    fg_config sc, tc;
    fg_config_preset(&sc, "demo-student");
    if (fg_ckpt_read_config(ckpt, &tc)) return cli_fail("demo", fg_last_error(), NULL);
    int64_t st_total, st_act, tt_total, tt_act;
    fg_config_param_counts(&sc, &st_total, &st_act);
    fg_config_param_counts(&tc, &tt_total, &tt_act);
    printf("\n---- distillation: the teacher above into a dense GQA student with %.0f%% of its active parameters ----\n",
           100.0 * st_act / tt_act);
    double t0 = fg_now();
    fg_train_opts o;
    fg_train_opts_default(&o);
    o.batch = 32; o.seq = FG_TASK_LONGEST;
    o.steps = steps; o.warmup = 100; o.lr = 3e-3f; o.min_lr = 1e-4f;
    o.eval_every = 250; o.eval_batches = 4; o.save_every = 0;
    o.out_dir = sdir;
    fg_distill_cache_opts co = {.teacher = ckpt, .out = cache, .k = 8, .temperature = 1.0f, .max_seqs = cache_seqs,
                                .seed = 4242, .batch = 32};
    fg_distill_cache_info ci;
    if (fg_distill_cache_build(&co, &o, &ci)) return cli_fail("demo", fg_last_error(), NULL);
    char a[32], b[32];
    printf("teacher cache: %lld problems, top-%d log-probs, %.0f bytes/token, %s bytes, %s teacher FLOPs, %.0f s\n",
           (long long)ci.seqs, ci.k, ci.bytes_per_token, fg_si_format(a, sizeof a, ci.bytes, 0),
           fg_si_format(b, sizeof b, ci.teacher_flops, 0), ci.wall_s);
    fg_model *m = fg_model_create(&sc);
    if (!m) return cli_fail("demo", fg_last_error(), NULL);
    fg_model_init_weights(m, o.seed);
    fg_adamw opt;
    fg_train_state st;
    fg_train_state_init(&st, o.seed);
    if (fg_adamw_init_for(&opt, m)) { fg_model_free(m); return cli_fail("demo", fg_last_error(), NULL); }
    fg_distill_opts d;
    memset(&d, 0, sizeof d);
    fg_distill_loss_opts_default(&d.loss);
    d.teacher = ckpt; d.cache = cache;
    cli_trap_signals(1);
    int rc = fg_distill_train(m, &opt, &st, &o, &d);
    cli_trap_signals(0);
    double acc = 0;
    fg_wstore *ws = rc ? NULL : fg_wstore_from_model(m, FG_F32);
    if (!rc && ws) rc = cli_task_eval(ws, FG_TRAIN_ARITH, 0, n, 2024, 0, &acc, NULL);
    else rc = -1;
    fg_wstore_free(ws);
    if (rc) rc = cli_fail("demo", fg_last_error(), NULL);
    else {
        if (fg_ledger_record_accuracy(sdir, &sc, acc)) fprintf(stderr, "frugal demo: warning: ledger: %s\n", fg_last_error());
        fg_ledger_info tl, sl;
        memset(&tl, 0, sizeof tl); memset(&sl, 0, sizeof sl);
        fg_ledger_read(teacher_dir, &tl);
        fg_ledger_read(sdir, &sl);
        char x[32], y[32];
        printf("\n%-34s %18s %18s\n", "", "teacher (MLA+MoE)", "student (GQA)");
        printf("%-34s %18lld %18lld\n", "active parameters per token", (long long)tt_act, (long long)st_act);
        printf("%-34s %17.1f%% %17.1f%%\n", "held-out exact match", 100 * teacher_acc, 100 * acc);
        printf("%-34s %18s %17.0f%%\n", "  student / teacher", "", teacher_acc > 0 ? 100 * acc / teacher_acc : 0);
        printf("%-34s %18s %18s\n", "training FLOPs (own, incl. eval)", fg_si_format(x, sizeof x, tl.train_flops + tl.eval_flops, 0),
               fg_si_format(y, sizeof y, sl.train_flops + sl.eval_flops, 0));
        printf("%-34s %18s %18s\n", "teacher forward FLOPs (cache)", "-", fg_si_format(x, sizeof x, sl.teacher_flops, 0));
        printf("%-34s %18s %18s\n", "teacher cache bytes", "-", fg_si_format(x, sizeof x, sl.cache_bytes, 0));
        printf("%-34s %17.0fs %17.0fs\n", "wall time (student: cache + train)", tl.wall_s, fg_now() - t0);
        printf("student: %s/ckpt.fgck (ledger %s/ledger.json; frugal cost ledger %s %s)\n", sdir, sdir, teacher_dir, sdir);
    }
    fg_train_state_free(&st);
    fg_adamw_free(&opt);
    fg_model_free(m);
    return rc ? 1 : 0;
}
