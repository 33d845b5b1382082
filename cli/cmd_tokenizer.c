// cmd_tokenizer.c: `frugal tokenizer train`: learns a byte-level BPE (DeepSeek-V3 pre-tokenizer)
// from text and JSONL files and writes a tokenizer.json (docs/tokenizer.md, "Training").
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "cli/opts.h"

#define MAX_FILES 4096
#define MAX_SPECIALS 256

static int tokenizer_train(int argc, char **argv) {
    const char *cmd = "tokenizer train";
    fg_bpe_train_opts o;
    fg_bpe_train_opts_default(&o);
    const char *out = NULL, *special_help = "the six DeepSeek-V3 tokens";
    int64_t max_words = (int64_t)o.max_words;
    const cli_opt opts[] = {
        {"vocab-size", OPT_INT, &o.vocab_size, "ids in total: 256 bytes + merges + special tokens"},
        {"min-frequency", OPT_INT, &o.min_frequency, "never merge a pair seen fewer times"},
        {"special", OPT_STR, &special_help, "an added special token (repeat the option for several)"},
        {"max-words", OPT_I64, &max_words, "distinct pre-tokens kept while counting (rarest pruned)"},
        {"out", OPT_STR, &out, "where to write tokenizer.json (also -o)"},
        {NULL, 0, NULL, NULL}};
    const char *usage = "--vocab-size N [--min-frequency F] [--special TOKEN ...] -o tokenizer.json FILES...";
    // --special may repeat and -o is short for --out: collect those before the table parser.
    const char *specials[MAX_SPECIALS];
    int n_special = 0, n = 0;
    char **args = malloc(((size_t)argc + 1) * sizeof *args);
    if (!args) return cli_fail(cmd, "out of memory", NULL);
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--special") && i + 1 < argc) {
            if (n_special == MAX_SPECIALS) { free(args); return cli_fail(cmd, "too many --special tokens", "at most 256"); }
            specials[n_special++] = argv[++i];
        } else if (i > 0 && !strncmp(argv[i], "--special=", 10)) {
            if (n_special == MAX_SPECIALS) { free(args); return cli_fail(cmd, "too many --special tokens", "at most 256"); }
            specials[n_special++] = argv[i] + 10;
        } else args[n++] = !strcmp(argv[i], "-o") && i > 0 ? "--out" : argv[i];
    }
    const char *files[MAX_FILES];
    int n_files = 0;
    int rc = cli_parse(cmd, usage, opts, n, args, files, MAX_FILES, &n_files);
    free(args);
    if (rc) return rc > 0 ? 0 : 1;
    if (!out) return cli_fail(cmd, "no output file", "pass -o tokenizer.json");
    if (cli_output_ok(cmd, out)) return 1;
    if (n_files == 0) return cli_fail(cmd, "no input files", "pass text or .jsonl files to learn from");
    if (max_words < 1024) return cli_fail(cmd, "--max-words must be >= 1024", NULL);
    o.max_words = (size_t)max_words;
    if (n_special) { o.specials = specials; o.n_specials = n_special; }
    fg_bpe_trainer *t = fg_bpe_trainer_new(&o);
    if (!t) return cli_fail(cmd, fg_last_error(), "see frugal help tokenizer");
    double t0 = fg_now();
    for (int i = 0; i < n_files; i++)
        if (fg_bpe_trainer_add_file(t, files[i])) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s", fg_last_error());
            fg_bpe_trainer_free(t);
            return cli_fail(cmd, msg, "check the path; inputs are text files or .jsonl with a \"text\" field per line");
        }
    const fg_bpe_train_stats *st = fg_bpe_trainer_stats(t);
    if (st->bytes == 0) { fg_bpe_trainer_free(t); return cli_fail(cmd, "the input files hold no text", "pass non-empty files"); }
    for (uint64_t i = 0; i < st->bad_lines && i < FG_BPE_BAD_LINES_KEPT; i++)
        fprintf(stderr, "frugal %s: skipped %s\n", cmd, st->bad_line_msg[i]);
    if (st->bad_lines) fprintf(stderr, "frugal %s: skipped %llu bad JSONL line(s) in all\n", cmd, (unsigned long long)st->bad_lines);
    double t1 = fg_now();
    if (fg_bpe_trainer_train(t) || fg_bpe_trainer_write(t, out)) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", fg_last_error());
        fg_bpe_trainer_free(t);
        return cli_fail(cmd, msg, NULL);
    }
    double t2 = fg_now();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s: vocab %d (%d merges, %d special) from %llu documents, %.1f MB, %llu pre-tokens (%llu distinct)\n", out,
           st->vocab_size, st->merges, n_special ? n_special : 6, (unsigned long long)st->docs, st->bytes / 1e6,
           (unsigned long long)st->pieces, (unsigned long long)st->distinct_pieces);
    if (st->vocab_size < o.vocab_size)
        printf("note: vocabulary is %d, not %d: no pair left with count >= %d (--min-frequency)\n", st->vocab_size,
               o.vocab_size, o.min_frequency);
    if (st->prunes)
        printf("note: the pre-token table was pruned %llu times (pieces seen < %lld times may be undercounted)\n",
               (unsigned long long)st->prunes, (long long)st->prune_threshold);
    printf("time: counting %.1f s, merging %.1f s; peak RSS %.0f MB\n", t1 - t0, t2 - t1, ru.ru_maxrss / 1024.0);
    fg_bpe_trainer_free(t);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "train")) return tokenizer_train(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "--help") && strcmp(argv[1], "-h")) {
        fprintf(stderr, "frugal tokenizer: unknown subcommand '%s' (hint: frugal tokenizer train --help)\n", argv[1]);
        return 2;
    }
    printf("usage: frugal tokenizer train [options] FILES...\n\nsubcommands:\n  train      learn a byte-level BPE and write tokenizer.json\n\n");
    char *sub[] = {"train", "--help"};
    return tokenizer_train(2, sub);
}
