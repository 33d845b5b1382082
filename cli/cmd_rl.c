// cmd_rl.c: `frugal rl`: GRPO on a verifiable task (fg_rl_train, docs/rl.md), from a checkpoint
// (a base model, or one after a cold-start SFT with frugal train --task countdown).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "opts.h"

int cmd_rl(int argc, char **argv) {
    fg_train_opts o;
    fg_train_opts_default(&o);
    fg_rl_opts r;
    fg_rl_opts_default(&r);
    const char *init = NULL, *resume = NULL, *task = "countdown", *sched = "constant";
    int threads = 0, quiet = 0, no_progress = 0, no_std = 0;
    o.steps = 100; o.lr = 1e-4f; o.min_lr = 0; o.warmup = 0; o.weight_decay = 0; o.clip = 1.0f; o.save_every = 10;
    o.eval_every = 0; o.out_dir = "out/rl";
    cli_opt opts[] = {
        {"init", OPT_STR, &init, "the starting policy's checkpoint (also the frozen reference for --beta)"},
        {"resume", OPT_STR, &resume, "continue a run from its checkpoint (with the run's recorded GRPO options)"},
        {"out", OPT_STR, &o.out_dir, "output directory: ckpt.fgck, log.jsonl, rl.jsonl, rl.svg, ledger.json"},
        {"task", OPT_STR, &task, "countdown (reach a target with + - * /) or arith (the 4-digit arithmetic task)"},
        {"level", OPT_INT, &r.level, "Countdown difficulty level (0: each problem a level drawn at random)", "[0,3]"},
        {"steps", OPT_I64, &o.steps, "policy updates in all (a rollout every --mu updates)", "[1,inf)"},
        {"stop-after", OPT_I64, &o.stop_after, "stop this run after N updates (0 = at the end)", "[0,inf)"},
        {"prompts", OPT_INT, &r.prompts, "prompts per rollout", "[1,4096]"},
        {"group", OPT_INT, &r.group, "completions sampled per prompt (G)", "[1,1024]"},
        {"mu", OPT_INT, &r.mu, "policy updates per rollout (the ratio to the sampling policy moves from 1)", "[1,64]"},
        {"max-new", OPT_INT, &r.max_new, "completion tokens at most", "[1,inf)"},
        {"temperature", OPT_FLOAT, &r.temperature, "sampling temperature (log-probabilities are taken at it)", "(0,inf)"},
        {"format-reward", OPT_FLOAT, &r.format_reward, "reward for a well-formed completion (<think>...</think> answer), added to correctness (1)", "[0,inf)"},
        {"clip", OPT_FLOAT, &r.clip_lo, "ratio clip: lower side 1 - clip (and the upper side unless --clip-high)", "[0,1)"},
        {"clip-high", OPT_FLOAT, &r.clip_hi, "ratio clip upper side 1 + clip-high (DAPO: 0.28)", "[0,inf)"},
        {"beta", OPT_FLOAT, &r.beta, "KL coefficient to the reference policy (k3 estimator; 0 = no reference)", "[0,inf)"},
        {"token-level", OPT_FLAG, &r.token_level, "loss averaged over all completion tokens of the batch (DAPO)"},
        {"no-std", OPT_FLAG, &no_std, "advantages not divided by the group's spread (Dr. GRPO)"},
        {"no-len-norm", OPT_FLAG, &r.no_len_norm, "a completion's loss divided by --max-new, not its length (Dr. GRPO)"},
        {"drop-zero-var", OPT_FLAG, &r.drop_zero_var, "DAPO dynamic sampling: groups whose rewards are all equal are replaced by newly sampled ones (up to 8 rounds of prompts per rollout)"},
        {"verifier", OPT_STR, &r.verifier, "shell command: prompt + completion text on stdin, exit 0 correct, 1 wrong"},
        {"verifier-timeout", OPT_DOUBLE, &r.verifier_timeout, "seconds before a hanging verifier is killed (the run stops)", "(0,inf)"},
        {"lr", OPT_FLOAT, &o.lr, "learning rate", "(0,inf)"},
        {"warmup", OPT_I64, &o.warmup, "linear warmup updates", "[0,inf)"},
        {"schedule", OPT_STR, &sched, "constant, cosine or wsd"},
        {"weight-decay", OPT_FLOAT, &o.weight_decay, "AdamW weight decay", "[0,inf)"},
        {"grad-clip", OPT_FLOAT, &o.clip, "clip the global gradient norm to this (0 = off)", "[0,inf)"},
        {"seed", OPT_U64, &o.seed, "seed of the rollouts"},
        {"eval-every", OPT_INT, &r.eval_every, "held-out accuracy (greedy) every N updates, and at the end (0 = never)", "[0,inf)"},
        {"eval-n", OPT_INT, &r.eval_n, "held-out problems per evaluation", "[1,inf)"},
        {"save-every", OPT_INT, &o.save_every, "checkpoint every N updates (always at the end; a multiple of --mu resumes exactly)", "[0,inf)"},
        {"threads", OPT_INT, &threads, "OpenMP threads (0 = all cores)"},
        {"quiet", OPT_FLAG, &quiet, "no per-evaluation lines"},
        {"no-progress", OPT_FLAG, &no_progress, "no progress bar"},
        {NULL, 0, NULL, NULL},
    };
    int r_ = cli_parse("rl", "--init CKPT [options]  (GRPO on the built-in Countdown task)", opts, argc, argv, NULL, 0, NULL);
    if (r_) return r_ < 0 ? 1 : 0;
    cli_set_threads(threads);
    if (!cli_given(argc, argv, "clip-high")) r.clip_hi = r.clip_lo;
    r.std_norm = !no_std;
    o.quiet = 1; o.progress = !no_progress;
    if (!strcmp(task, "countdown")) r.task = FG_RL_TASK_COUNTDOWN;
    else if (!strcmp(task, "arith")) r.task = FG_RL_TASK_ARITH;
    else return cli_fail("rl", "--task must be countdown or arith", "frugal rl --task countdown --level 1");
    if (!strcmp(sched, "cosine")) o.sched = FG_SCHED_COSINE;
    else if (!strcmp(sched, "wsd")) o.sched = FG_SCHED_WSD;
    else if (!strcmp(sched, "constant")) o.sched = FG_SCHED_CONSTANT;
    else return cli_fail("rl", "--schedule must be constant, cosine or wsd", NULL);
    if (!!init == !!resume) return cli_fail("rl", init ? "--init and --resume exclude each other" : "no starting policy",
                                            "frugal rl --init CKPT (a model trained with frugal train), or --resume OUT/ckpt.fgck");
    r.ref = init;
    fg_adamw opt = {0};
    fg_train_state st;
    memset(&st, 0, sizeof st);
    char out_buf[1100];
    fg_model *m;
    if (resume) {
        m = fg_ckpt_load(resume, &opt, &st);
        if (!m) return cli_fail("rl", fg_last_error(), "--resume takes a checkpoint written by frugal rl");
        if (!opt.m) fg_adamw_init_for(&opt, m);
        if (!cli_given(argc, argv, "out")) { // the run's folder is where its checkpoint lies
            const char *slash = strrchr(resume, '/');
            snprintf(out_buf, sizeof out_buf, "%.*s", slash ? (int)(slash - resume) : 1, slash ? resume : ".");
            o.out_dir = out_buf;
        }
    } else {
        m = fg_ckpt_load(init, NULL, NULL);
        if (!m) return cli_fail("rl", fg_last_error(), "--init takes a checkpoint written by frugal train");
        if (fg_adamw_init_for(&opt, m)) { fg_model_free(m); return cli_fail("rl", fg_last_error(), NULL); }
        fg_train_state_init(&st, o.seed);
    }
    printf("GRPO: %s%s, %d prompts x G %d per rollout, mu %d, max_new %d, T %g, beta %g, clip [%g, %g]%s%s%s; out: %s\n",
           task, r.task == FG_RL_TASK_COUNTDOWN ? (r.level == 0 ? " (every level)" : r.level == 1 ? " level 1" : r.level == 2 ? " level 2" : " level 3") : "",
           r.prompts, r.group, r.mu, r.max_new, r.temperature, r.beta, 1 - r.clip_lo, 1 + r.clip_hi,
           r.token_level ? ", token-level" : "", no_std ? ", no std" : "", r.drop_zero_var ? ", dropping zero-variance groups" : "",
           o.out_dir);
    cli_trap_signals(1);
    int rc = fg_rl_train(m, &opt, &st, &o, &r);
    cli_trap_signals(0);
    char hint[1200];
    snprintf(hint, sizeof hint, "continue with frugal rl --resume %s/ckpt.fgck", o.out_dir);
    if (rc) cli_fail("rl", fg_last_error(), fg_train_interrupted() ? hint
                     : r.verifier ? "the verifier reads the prompt and completion on stdin and exits 0 (correct) or 1 (wrong)" : NULL);
    else printf("checkpoint: %s/ckpt.fgck\nlog: %s/rl.jsonl\nplot: %s/rl.svg\n", o.out_dir, o.out_dir, o.out_dir);
    fg_train_state_free(&st);
    fg_adamw_free(&opt);
    fg_model_free(m);
    (void)quiet;
    return rc ? 1 : 0;
}
