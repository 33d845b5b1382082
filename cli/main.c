// main.c: the frugal command line. One dispatch table; each command lives in cli/<command>.c
// and sees only the public header include/frugal.h.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static const fg_command COMMANDS[] = {
    {"demo", "train + evaluate an MLA + MoE model on the built-in task, then distil it (make demo)", cmd_demo},
    {"train", "pretrain or fine-tune a model from text/JSONL files or the built-in task", cmd_train},
    {"distill", "distil a teacher into a student: logits (online or cached top-k) or verified samples", cmd_distill},
    {"rl", "reinforcement learning with verifiable rewards: GRPO on the Countdown task (the R1-Zero step)", cmd_rl},
    {"eval", "held-out exact match on the task, or --text FILE: perplexity (and --top1-against REF)", cmd_eval},
    {"generate", "sample text from a checkpoint (greedy, temperature, top-k, top-p, seed)", cmd_generate},
    {"serve", "an OpenAI-compatible HTTP server with continuous batching and prefix reuse (docs/serve.md)", cmd_serve},
    {"chat", "interactive chat with a checkpoint (streams tokens, keeps the KV cache across turns)", cmd_chat},
    {"quantize", "convert a checkpoint to a quantised model file (bf16 or Q8_0) that inference maps", cmd_quantize},
    {"bench", "inference speed: prefill and decode tokens/s, KV bytes per token, bandwidth", cmd_bench},
    {"data", "prepare token shards from text/JSONL/chat files (prepare), or refine a corpus (refine)", cmd_data},
    {"config", "show a model config (preset or config.json) and its parameter counts", cmd_config},
    {"cost", "parameters, FLOPs, memory and the price of training a model; ledgers of runs", cmd_cost},
    {"tokenizer", "train a byte-level BPE tokenizer into tokenizer.json; encode / decode text with any model's tokenizer", cmd_tokenizer},
    {"convert", "convert a Hugging Face directory or GGUF file into a frugal checkpoint", cmd_convert},
    {"export", "write a model as GGUF (llama.cpp) or as a Hugging Face safetensors directory", cmd_export},
    {"scale", "scaling-law lab: a sweep of runs, fits of L(N, D), the compute multiplier of MLA + MoE over dense", cmd_scale},
    {"plot", "SVG plots of runs: loss curves (train, validation) and per-layer expert load", cmd_plot},
    {"version", "print frugal's version", cmd_version},
    {"help", "show commands, or every option of one command", cmd_help},
};

const fg_command *cli_commands(int *n) {
    *n = (int)(sizeof COMMANDS / sizeof *COMMANDS);
    return COMMANDS;
}

int cmd_help(int argc, char **argv) {
    int n;
    const fg_command *cmds = cli_commands(&n);
    if (argc > 1) {
        for (int i = 0; i < n; i++)
            if (!strcmp(cmds[i].name, argv[1])) {
                // `frugal help data refine`: the subcommand's own help (the command word, the
                // subcommand words, then --help)
                char *sub[8] = {argv[1]};
                int n_sub = 1;
                for (int k = 2; k < argc && n_sub < 6; k++) sub[n_sub++] = argv[k];
                sub[n_sub++] = "--help";
                return cmds[i].run(n_sub, sub);
            }
        fprintf(stderr, "frugal: unknown command '%s' (hint: frugal help)\n", argv[1]);
        return 2;
    }
    printf("frugal %s: train, distill, run and price DeepSeek-style models\n\nusage: frugal <command> [options]\n\ncommands:\n", FG_VERSION);
    for (int i = 0; i < n; i++) printf("  %-10s %s\n", cmds[i].name, cmds[i].summary);
    printf("\n`frugal help <command>` lists every option of a command with its default.\n");
    return 0;
}

int cmd_version(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) { printf("usage: frugal version\n"); return 0; }
    if (argc > 1) return cli_fail("version", "takes no arguments", NULL);
    printf("frugal %s\n", FG_VERSION);
    return 0;
}

static void on_signal(int sig) {
    if (fg_train_interrupted()) _exit(128 + sig); // the second signal: stop now (the last checkpoint stays)
    fg_train_interrupt(sig);
    static const char msg[] = "\nfrugal: stopping after this step and saving a checkpoint (signal again to stop at once)\n";
    if (fg_dist_rank() > 0) return; // every rank got it from mpirun: rank 0 speaks for them
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
}

void cli_trap_signals(int on) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on ? on_signal : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_output_ok(const char *cmd, const char *path) {
    if (!fg_output_check(path)) return 0;
    return cli_fail(cmd, fg_last_error(), NULL);
}

// A command's output is only delivered once stdout took it: a full disk or a closed pipe is an
// error (exit 1), not a silent success.
static int finish_stdout(int rc) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
    fprintf(stderr, "frugal: cannot write to standard output: %s\n", errno ? strerror(errno) : "write error");
    return rc ? rc : 1;
}

void cli_set_threads(int threads) {
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

// The library's log callback (fg_set_log): progress lines overwrite each other on a terminal
// (stderr) and are dropped otherwise; the run's record lines go to stdout, after clearing a
// progress line that is showing.
static void cli_log(void *ud, int level, const char *text) {
    static int shown;
    (void)ud;
    if (level == FG_LOG_PROGRESS) {
        if (!isatty(2)) return;
        fprintf(stderr, "\r%s", text);
        fflush(stderr);
        shown = 1;
    } else if (level == FG_LOG_PROGRESS_END) {
        if (shown) fputc('\n', stderr);
        shown = 0;
    } else {
        if (shown) fprintf(stderr, "\r%*s\r", 110, "");
        shown = 0;
        fputs(text, stdout);
        fflush(stdout);
    }
}

int main(int argc, char **argv) {
    fg_set_log(cli_log, NULL);
    if (argc < 2) return cmd_help(1, argv);
    int n;
    const fg_command *cmds = cli_commands(&n);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return cmd_help(1, argv);
    if (!strcmp(argv[1], "--version")) return finish_stdout(cmd_version(1, argv));
    for (int i = 0; i < n; i++)
        if (!strcmp(cmds[i].name, argv[1])) {
            // Under mpirun every rank runs this same command line; only training splits its work
            // over them, and rank 0 alone prints the run's record.
            if (fg_dist_init(&argc, &argv)) { fprintf(stderr, "frugal: %s\n", fg_last_error()); return 1; }
            int size = fg_dist_size();
            if (size > 1 && strcmp(argv[1], "train")) {
                if (fg_dist_rank() == 0)
                    fprintf(stderr, "frugal %s: runs on one process, not across %d ranks (hint: run it without mpirun; "
                                    "frugal train is the command that runs over MPI)\n", argv[1], size);
                fg_dist_finalize();
                return 2;
            }
            if (fg_dist_rank() > 0 && !freopen("/dev/null", "w", stdout)) return 1;
            int rc = cmds[i].run(argc - 1, argv + 1);
            if (rc && fg_train_interrupted()) rc = 128 + fg_train_interrupted();
            rc = finish_stdout(rc);
            // A rank that fails alone must not leave the others waiting in a collective.
            // (An interruption is agreed on by every rank, which all stop after the same step.)
            if (rc && size > 1 && !fg_train_interrupted()) fg_dist_abort(rc);
            fg_dist_finalize();
            return rc;
        }
    fprintf(stderr, "frugal: unknown command '%s' (hint: frugal help lists the commands)\n", argv[1]);
    return 2;
}
