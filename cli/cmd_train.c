// cmd_train.c: `frugal train`: pretrain or fine-tune from text/JSONL files or a built-in task
// (--task arith, the default, or countdown).
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"

static void warn_cb(const char *msg) { fprintf(stderr, "frugal: warning: %s\n", msg); }

int cli_load_config(fg_config *c, const char *spec) {
    if (strchr(spec, '/') || strstr(spec, ".json")) return fg_config_load(c, spec, warn_cb);
    return fg_config_preset(c, spec);
}

static void notice_cb(const char *msg) { fprintf(stderr, "frugal: %s\n", msg); }

// Opens a model for inference: a frugal checkpoint, a Hugging Face directory or a GGUF file (no
// optimizer state). *tok (may be NULL) gets its tokenizer, NULL for byte-level ids. Prints the
// error; NULL on failure.
fg_model *cli_open_ckpt(const char *cmd, const char *path, fg_tokenizer **tok) {
    if (tok) *tok = NULL;
    char *td = NULL;
    size_t tl = 0;
    fg_model *m = fg_model_open(path, tok ? &td : NULL, &tl, notice_cb);
    if (!m) {
        cli_fail(cmd, fg_last_error(), strstr(fg_last_error(), "hint:") ? NULL : "pass a checkpoint written by frugal train "
                 "(runs/demo/ckpt.fgck), a Hugging Face directory or a GGUF file");
        return NULL;
    }
    if (td && !(*tok = fg_tokenizer_load_mem(td, tl, path))) {
        cli_fail(cmd, fg_last_error(), NULL);
        fg_model_free(m);
        m = NULL;
    }
    free(td);
    return m;
}

static const char *sched_name(int s) { return s == FG_SCHED_WSD ? "wsd" : s == FG_SCHED_CONSTANT ? "constant" : "cosine"; }
static const char *task_name(int t) { return t == FG_TRAIN_COUNTDOWN ? "countdown" : "arith"; }

// What a run without data files trains on, for the one-line summaries.
static const char *task_text(const fg_train_opts *o, char *buf, size_t cap) {
    if (o->task != FG_TRAIN_COUNTDOWN) return "built-in arithmetic task";
    if (o->task_level) snprintf(buf, cap, "built-in Countdown task, level %d", o->task_level);
    else snprintf(buf, cap, "built-in Countdown task, levels 1-%d mixed", FG_CD_LEVELS);
    return buf;
}

// Prints a formatted one-line error; returns -1.
__attribute__((format(printf, 1, 2))) static int merge_fail(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_fail("train", msg, NULL);
    return -1;
}

// Options a resumed run may change: how long it runs and how often it reports and saves. Every
// other option shapes the math and must agree with the run's record.
static int changeable(const char *name) {
    static const char *ok[] = {"steps", "stop-after", "eval-every", "eval-batches", "save-every", "out", "zero", "ep", "overlap", NULL};
    for (int i = 0; ok[i]; i++)
        if (!strcmp(ok[i], name)) return 1;
    return 0;
}

// Compares two paths by what they name (realpath), falling back to the text.
static int same_path(const char *a, const char *b) {
    if (!a || !b) return a == b;
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    int same = !strcmp(ra ? ra : a, rb ? rb : b);
    free(ra); free(rb);
    return same;
}

// Resume: the options the checkpoint recorded (st->train_json) fill every option not given again;
// one given again must agree unless changeable(); changes are printed. Data files, --shards and
// --sft come from the record too (given again, they must name the same files). *arena owns the
// recorded strings. Returns 0, or prints the error and returns -1.
static int resume_merge(fg_train_opts *o, const char **sched, const char **sft, const cli_opt *opts, int argc, char **argv,
                        const fg_train_state *st, const char *resume, void **arena) {
    int task_given = cli_given(argc, argv, "task");
    fg_train_opts saved = *o;
    const char *saved_sft = NULL;
    int full = st->train_json ? fg_train_opts_from_json(&saved, &saved_sft, st->train_json, arena) : 0;
    if (full < 0) return cli_fail("train", fg_last_error(), NULL), -1;
    if (!full)
        fprintf(stderr, "frugal train: note: %s predates recorded data sources: pass the run's data files and options again\n", resume);
    for (const cli_opt *p = opts; p->name; p++) {
        char *d = p->dst;
        if (d < (char *)o || d >= (char *)(o + 1) || p->type == OPT_STR || p->type == OPT_FLAG) continue;
        char *sv = (char *)&saved + (d - (char *)o);
        size_t sz = p->type == OPT_INT ? sizeof(int) : p->type == OPT_FLOAT ? sizeof(float) : 8;
        if (!memcmp(d, sv, sz)) continue;
        char was[64], now[64];
        cli_opt_format(p, sv, was, sizeof was);
        cli_opt_format(p, d, now, sizeof now);
        if (!cli_given(argc, argv, p->name)) { memcpy(d, sv, sz); continue; }
        if (changeable(p->name)) { printf("resume: --%s %s -> %s\n", p->name, was, now); continue; }
        return merge_fail("--%s %s differs from the run's %s (hint: drop --%s to continue the run as it was, or start a "
                            "new run from its weights with --init %s)", p->name, now, was, p->name, resume);
    }
    if (saved.sched != o->sched) {
        if (cli_given(argc, argv, "schedule"))
            return merge_fail("--schedule %s differs from the run's %s (hint: drop --schedule)", sched_name(o->sched), sched_name(saved.sched));
        o->sched = saved.sched;
        *sched = sched_name(saved.sched);
    }
    if (saved.task != o->task) {
        if (task_given)
            return merge_fail("--task %s differs from the run's %s (hint: drop --task)", task_name(o->task), task_name(saved.task));
        o->task = saved.task;
    }
    if (saved.precision != o->precision) {
        if (cli_given(argc, argv, "precision"))
            return merge_fail("--precision differs from the run's %s (hint: drop --precision)", saved.precision == FG_BF16 ? "bf16" : "fp32");
        o->precision = saved.precision;
    }
    if (!full) return 0;
    if (o->n_data) {
        int same = o->n_data == saved.n_data;
        for (int i = 0; same && i < o->n_data; i++) same = same_path(o->data[i], saved.data[i]);
        if (!same)
            return merge_fail("the data files given differ from the run's (%d file%s, first '%s') (hint: give none to continue on "
                                "the run's own data, or start a new run with --init %s)", saved.n_data, saved.n_data == 1 ? "" : "s",
                                saved.n_data ? saved.data[0] : "none: the built-in task", resume);
    } else {
        o->data = saved.data; o->n_data = saved.n_data;
    }
    if (o->shards && !same_path(o->shards, saved.shards))
        return merge_fail("--shards %s differs from the run's %s (hint: drop --shards)", o->shards, saved.shards ? saved.shards : "(none)");
    if (!o->shards) o->shards = saved.shards;
    if (*sft && !same_path(*sft, saved_sft))
        return merge_fail("--sft %s differs from the run's %s (hint: drop --sft)", *sft, saved_sft ? saved_sft : "(none)");
    if (!*sft) *sft = saved_sft;
    return 0;
}

int cmd_train(int argc, char **argv) {
    fg_train_opts o;
    fg_train_opts_default(&o);
    const char *config = "demo", *resume = NULL, *init = NULL, *sched = "cosine", *precision = "fp32", *sft = NULL;
    const char *task = "arith";
    int quiet = 0, no_progress = 0, threads = 0, mtp = -1, ep_limit = 0;
    o.seq = 0; o.batch = 32; o.ep = 1; // seq 0: chosen below from the data source
    cli_opt opts[] = {
        {"config", OPT_STR, &config, "model: preset (tiny, demo, demo-student, bench-moe) or config.json path"},
        {"out", OPT_STR, &o.out_dir, "output directory for ckpt.fgck and log.jsonl"},
        {"resume", OPT_STR, &resume, "continue a run from its checkpoint (bit-exact)"},
        {"init", OPT_STR, &init, "start from a checkpoint's weights with a fresh optimizer (fine-tuning)"},
        {"steps", OPT_I64, &o.steps, "total optimizer steps of the schedule", "[1,inf)"},
        {"stop-after", OPT_I64, &o.stop_after, "stop this run after N steps (0 = at the end)", "[0,inf)"},
        {"batch", OPT_INT, &o.batch, "sequences per micro-batch", "[1,inf)"},
        {"seq", OPT_INT, &o.seq, "tokens per sequence (0: 70 for arith, the level's longest example for countdown, "
                                 "else min(128, context))", "[0,inf)"},
        {"accum", OPT_INT, &o.accum, "micro-batches per optimizer step, split over the ranks under mpirun "
                                     "(default: 1, or one per rank)", "[1,inf)"},
        {"lr", OPT_FLOAT, &o.lr, "peak learning rate", "(0,inf)"},
        {"min-lr", OPT_FLOAT, &o.min_lr, "final learning rate", "[0,inf)"},
        {"warmup", OPT_I64, &o.warmup, "linear warmup steps", "[0,inf)"},
        {"schedule", OPT_STR, &sched, "cosine, wsd (warmup-stable-decay) or constant"},
        {"decay-frac", OPT_FLOAT, &o.decay_frac, "wsd: fraction of steps in the final decay", "[0,1]"},
        {"weight-decay", OPT_FLOAT, &o.weight_decay, "AdamW decoupled weight decay (not on norms, biases, routing bias)", "[0,inf)"},
        {"beta1", OPT_FLOAT, &o.beta1, "AdamW beta1", "[0,1)"},
        {"beta2", OPT_FLOAT, &o.beta2, "AdamW beta2", "[0,1)"},
        {"eps", OPT_FLOAT, &o.eps, "AdamW epsilon", "(0,inf)"},
        {"clip", OPT_FLOAT, &o.clip, "clip the global gradient norm to this (0 = off)", "[0,inf)"},
        {"balance-alpha", OPT_FLOAT, &o.balance_alpha, "sequence-wise balance loss weight (0 = off)", "[0,inf)"},
        {"bias-gamma", OPT_FLOAT, &o.bias_gamma, "aux-loss-free routing bias update speed (0 = off)", "[0,inf)"},
        {"mtp", OPT_INT, &mtp, "multi-token prediction depths D added to the config (V3: 1; a new model only)", "[0,4]"},
        {"mtp-lambda", OPT_FLOAT, &o.mtp_lambda, "MTP loss weight lambda (loss = CE + lambda/D sum of the depths' CE)", "[0,inf)"},
        {"mtp-lambda-late", OPT_FLOAT, &o.mtp_lambda_late, "MTP loss weight after --mtp-late-frac of the steps (V3: 0.3 then 0.1)", "[0,inf)"},
        {"mtp-late-frac", OPT_FLOAT, &o.mtp_late_frac, "fraction of the steps trained with --mtp-lambda", "[0,1]"},
        {"seed", OPT_U64, &o.seed, "seed for initialisation and data order"},
        {"tokenizer", OPT_STR, &o.tokenizer, "encode the data files with this BPE tokenizer.json / GGUF (stored in the checkpoint)"},
        {"shards", OPT_STR, &o.shards, "train from a directory written by frugal data prepare"},
        {"task", OPT_STR, &task, "without data files: arith (4-digit + and -) or countdown (reach a target with + - * /)"},
        {"level", OPT_INT, &o.task_level, "--task countdown: difficulty 1-3 (3, 4, 5 numbers), 0 = all levels mixed", "[0,3]"},
        {"sft", OPT_STR, &sft, "fine-tune on completion tokens only of a prompt/completion JSONL (frugal distill generate)"},
        {"val-fraction", OPT_DOUBLE, &o.val_fraction, "fraction of file data held out for validation", "[0,0.5]"},
        {"eval-every", OPT_INT, &o.eval_every, "validation loss and bits-per-byte every N steps", "[0,inf)"},
        {"eval-batches", OPT_INT, &o.eval_batches, "batches per validation", "[1,inf)"},
        {"save-every", OPT_INT, &o.save_every, "checkpoint every N steps (always at the end)", "[0,inf)"},
        {"precision", OPT_STR, &precision, "matmul precision: fp32, or bf16 (mixed: bf16 products, fp32 weights/optimizer)"},
        {"threads", OPT_INT, &threads, "OpenMP threads (0 = all cores; under mpirun: per rank)"},
        {"zero", OPT_FLAG, &o.zero, "under mpirun: ZeRO-1, each rank keeps 1/N of the AdamW state (docs/distributed.md)"},
        {"overlap", OPT_FLAG, &o.overlap, "under mpirun: start the gradient all-reduce block by block during the backward "
                                          "(nonblocking MPI; for networks that move data without the CPU)"},
        {"ep-limit", OPT_INT, &ep_limit, "with --ep, a new model: device-limited routing (DeepSeek-V2), each token's experts "
                                         "on at most M of the group's ranks (sets n_group = ep, topk_group = M)", "[0,inf)"},
        {"ep", OPT_INT, &o.ep, "under mpirun: routed experts split over groups of this many ranks (1: every rank holds "
                                 "every expert)", "[1,inf)"},
        {"quiet", OPT_FLAG, &quiet, "no validation lines on stdout"},
        {"no-progress", OPT_FLAG, &no_progress, "no progress bar"},
        {NULL, 0, NULL, NULL},
    };
    const char *files[256];
    int nf = 0;
    int r = cli_parse("train", "[options] [DATA_FILES...]  (no files: the built-in task of --task)", opts, argc,
                      argv, files, 256, &nf);
    if (r) return r < 0 ? 1 : 0;
    cli_set_threads(threads);
    // Over N ranks a step is N micro-batches unless --accum says otherwise: the same run as
    // `--accum N` on one process (a resume keeps the run's own count).
    if (!cli_given(argc, argv, "accum") && !resume) o.accum = fg_dist_size();
    o.data = files; o.n_data = nf; o.quiet = quiet; o.progress = !no_progress;
    o.precision = fg_dtype_parse(precision, FG_PRECISIONS, "precision");
    if (o.precision != FG_F32 && o.precision != FG_BF16)
        return cli_fail("train", "--precision must be fp32 or bf16 (fp8 is a cost-model setting, not a CPU training mode)", NULL);
    if (!strcmp(sched, "cosine")) o.sched = FG_SCHED_COSINE;
    else if (!strcmp(sched, "wsd")) o.sched = FG_SCHED_WSD;
    else if (!strcmp(sched, "constant")) o.sched = FG_SCHED_CONSTANT;
    else return cli_fail("train", "--schedule must be cosine, wsd or constant", NULL);
    if (resume && init) return cli_fail("train", "--resume and --init exclude each other", "resume continues a run; init starts a new one from weights");
    if (!strcmp(task, "countdown")) o.task = FG_TRAIN_COUNTDOWN;
    else if (strcmp(task, "arith")) {
        char msg[300];
        snprintf(msg, sizeof msg, "--task %.200s is not a built-in task", task);
        return cli_fail("train", msg, "--task arith (the default) or --task countdown");
    }

    if (ep_limit && (resume || init))
        return cli_fail("train", "--ep-limit shapes a new model's routing; a checkpoint keeps its own", "drop --ep-limit");
    if (mtp >= 0 && (resume || init))
        return cli_fail("train", "--mtp shapes a new model; a checkpoint keeps its own MTP depths", "drop --mtp");

    fg_model *m = NULL;
    fg_adamw opt = {0};
    fg_train_state st;
    memset(&st, 0, sizeof st);
    void *arena = NULL; // the resumed run's recorded paths (o.data, o.shards, sft)
    char out_buf[1100];
#define FAIL(...) do { fg_model_free(m); fg_adamw_free(&opt); fg_train_state_free(&st); free(arena); \
                       return cli_fail("train", __VA_ARGS__); } while (0)
    if (resume) {
        m = fg_ckpt_load(resume, &opt, &st);
        if (!m) return cli_fail("train", fg_last_error(), "--resume takes a checkpoint written by frugal train");
        if (cli_given(argc, argv, "config")) {
            fg_config c;
            if (cli_load_config(&c, config)) FAIL(fg_last_error(), NULL);
            char *a = fg_config_to_json(&c), *b = fg_config_to_json(fg_model_config(m));
            int same = a && b && !strcmp(a, b);
            free(a); free(b);
            if (!same) FAIL("--config differs from the checkpoint's config", "drop --config when resuming");
        }
        if (!opt.m) fg_adamw_init_for(&opt, m);
        if (resume_merge(&o, &sched, &sft, opts, argc, argv, &st, resume, &arena)) {
            fg_model_free(m); fg_adamw_free(&opt); fg_train_state_free(&st); free(arena);
            return 1;
        }
        if (!cli_given(argc, argv, "out")) { // the run's folder is where its checkpoint lies
            const char *slash = strrchr(resume, '/');
            snprintf(out_buf, sizeof out_buf, "%.*s", slash ? (int)(slash - resume) : 1, slash ? resume : ".");
            if (!out_buf[0]) snprintf(out_buf, sizeof out_buf, "/");
            o.out_dir = out_buf;
        }
        nf = o.n_data;
    }
    int auto_seq = o.seq == 0;
    if (o.steps < 1 || o.accum < 1 || o.batch < 1 || (o.seq < 2 && !auto_seq) || o.warmup < 0)
        FAIL("--steps, --accum, --batch must be >= 1, --seq >= 2, --warmup >= 0", NULL);
    if (o.shards && nf) FAIL("--shards and data files exclude each other", "prepare all files into the shards");
    if (o.shards && o.tokenizer) FAIL("--shards carries its own tokenizer", "drop --tokenizer");
    if (o.task != FG_TRAIN_COUNTDOWN && cli_given(argc, argv, "level")) FAIL("--level goes with --task countdown", "add --task countdown, or drop --level");
    if (o.task == FG_TRAIN_COUNTDOWN && (nf || o.shards || sft || o.tokenizer))
        FAIL("--task countdown trains on its own generated problems, not on data files, --shards, --sft or --tokenizer",
             "drop them, or drop --task countdown");
    char task_buf[96];
    if (resume) {
        printf("resuming %s at step %lld of %lld; data: %s%s; out: %s\n", resume, (long long)st.step, (long long)o.steps,
               o.shards ? o.shards : nf ? o.data[0] : sft ? sft : task_text(&o, task_buf, sizeof task_buf), nf > 1 ? " (+ more)" : "", o.out_dir);
    } else {
        if (init) {
            m = fg_ckpt_load(init, NULL, NULL);
            if (!m) return cli_fail("train", fg_last_error(), "--init takes a checkpoint written by frugal train");
        } else {
            fg_config c;
            if (cli_load_config(&c, config)) return cli_fail("train", fg_last_error(), "check the config file or use a preset: tiny, demo, demo-student, bench-moe");
            if (mtp >= 0) c.num_nextn_predict_layers = mtp;
            if (ep_limit) { // device-limited routing: the routing groups are the ranks of the group
                if (o.ep < 2) return cli_fail("train", "--ep-limit needs --ep 2 or more", NULL);
                if (ep_limit >= o.ep) return cli_fail("train", "--ep-limit must be below --ep (it bounds the ranks a token reaches)", NULL);
                c.n_group = o.ep; c.topk_group = ep_limit;
                if (c.topk_method == FG_TOPK_GREEDY) c.topk_method = FG_TOPK_GROUP_LIMITED_GREEDY;
                if (fg_config_validate(&c)) return cli_fail("train", fg_last_error(), "a smaller --ep, or a larger --ep-limit");
            }
            m = fg_model_create(&c);
            if (!m) return cli_fail("train", fg_last_error(), NULL);
            fg_model_init_weights(m, o.seed);
        }
        if (fg_adamw_init_for(&opt, m)) { fg_model_free(m); return cli_fail("train", fg_last_error(), NULL); }
        fg_train_state_init(&st, o.seed);
    }
    if (auto_seq) o.seq = nf || o.shards ? CLI_MIN(128, fg_model_config(m)->max_position_embeddings)
                        : o.task == FG_TRAIN_COUNTDOWN ? fg_countdown_max_len(o.task_level) : FG_TASK_LONGEST;
    free(st.train_json);
    if (!(st.train_json = fg_train_opts_to_json(&o, sft))) FAIL(fg_last_error(), NULL);
#undef FAIL
    int64_t total, active;
    fg_config_param_counts(fg_model_config(m), &total, &active);
    int D = fg_model_config(m)->num_nextn_predict_layers;
    char mtp_note[96] = "";
    if (D) snprintf(mtp_note, sizeof mtp_note, " + %d MTP depth%s (%.2fM parameters; lambda %g, then %g)", D, D > 1 ? "s" : "",
                    fg_config_mtp_params(fg_model_config(m)) / 1e6, o.mtp_lambda, o.mtp_lambda_late);
    printf("model: %s attention, %lld parameters (%lld active per token), %d layers%s; data: %s\n",
           fg_model_config(m)->attn_type == FG_ATTN_MLA ? "MLA" : "GQA", (long long)total, (long long)active,
           fg_model_config(m)->num_hidden_layers, mtp_note, o.shards ? "shards" : nf ? "files" : task_text(&o, task_buf, sizeof task_buf));
    int ranks = fg_dist_size();
    if (ranks > 1 || cli_given(argc, argv, "zero"))
        printf("distributed: %d rank%s (%s), layout dp=%d ep=%d, ZeRO-1 %s, %d micro-batch%s of %d x %d per step\n", ranks,
               ranks > 1 ? "s" : "", fg_dist_backend(), ranks, o.ep, o.zero && ranks > 1 ? "on (AdamW state sharded)" : "off",
               o.accum, o.accum > 1 ? "es" : "", o.batch, o.seq);
    const fg_config *mc = fg_model_config(m);
    if (o.ep > 1 && ranks > 1 && mc->n_group > 1 && mc->n_group % o.ep == 0 && mc->topk_group < o.ep)
        printf("device-limited routing: each token's experts on at most %d of the %d ranks of its group (n_group %d, topk_group %d)\n",
               mc->topk_group, o.ep, mc->n_group, mc->topk_group);
    cli_trap_signals(1);
    int rc = sft ? fg_train_sft(m, &opt, &st, &o, sft) : fg_train(m, &opt, &st, &o);
    cli_trap_signals(0);
    char hint[1200];
    snprintf(hint, sizeof hint, "continue with frugal train --resume %s/ckpt.fgck", o.out_dir);
    if (!rc) printf("checkpoint: %s/ckpt.fgck\nlog: %s/log.jsonl\n", o.out_dir, o.out_dir);
    else if (!(fg_train_interrupted() && fg_dist_rank() > 0)) // an interruption: rank 0 reports for every rank
        cli_fail("train", fg_last_error(), fg_train_interrupted() ? hint : NULL);
    free(arena);
    fg_train_state_free(&st);
    fg_adamw_free(&opt);
    fg_model_free(m);
    return rc ? 1 : 0;
}
