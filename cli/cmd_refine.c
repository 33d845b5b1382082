// cmd_refine.c: `frugal data refine IN... -o OUT.jsonl`: the data refinery (docs/data.md).
// Dispatched by `frugal data` (cli/cmd_data.c); argv[0] is "refine".
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "cli/opts.h"

#define MAX_INPUTS 4096

int cmd_data_refine(int argc, char **argv) {
    const char *cmd = "data refine";
    fg_refine_opts o;
    fg_refine_opts_default(&o);
    const char *out = NULL, *report = NULL;
    const cli_opt opts[] = {
        {"out", OPT_STR, &out, "kept documents as JSONL {\"text\": ...} (also -o)"},
        {"report", OPT_STR, &report, "write the JSON report here (counts, bytes, examples per rule)"},
        {"jaccard", OPT_DOUBLE, &o.jaccard, "near-duplicate threshold on 5-word-shingle Jaccard", "(0,1]"},
        {"num-perm", OPT_INT, &o.num_perm, "MinHash signature length", "[1,inf)"},
        {"bands", OPT_INT, &o.bands, "LSH bands (0: auto, P(candidate) >= 0.95 at the threshold)", "[0,inf)"},
        {"min-chars", OPT_INT, &o.min_chars, "drop documents shorter than this (characters)", "[0,inf)"},
        {"max-chars", OPT_INT, &o.max_chars, "drop documents longer than this (characters)", "[0,inf)"},
        {"max-symbols", OPT_DOUBLE, &o.max_symbols, "max ASCII symbol fraction of non-space characters", "[0,1]"},
        {"max-digits", OPT_DOUBLE, &o.max_digits, "max digit fraction of non-space characters", "[0,1]"},
        {"max-repeated-lines", OPT_DOUBLE, &o.max_repeated_lines, "max fraction of repeated non-blank lines", "[0,1]"},
        {"max-repeated-ngrams", OPT_DOUBLE, &o.max_repeated_ngrams, "max fraction of repeated 5-word shingles", "[0,1]"},
        {"max-control", OPT_DOUBLE, &o.max_control, "max fraction of control bytes (not tab/CR/LF)", "[0,1]"},
        {"perplexity-model", OPT_STR, &o.ppl_model, "checkpoint scoring documents (byte tokenizer)"},
        {"max-perplexity", OPT_DOUBLE, &o.max_perplexity, "drop documents above this perplexity", "(0,inf)"},
        {"perplexity-tokens", OPT_INT, &o.ppl_tokens, "tokens scored per document (from its start)", "[1,inf)"},
        {"examples", OPT_INT, &o.examples, "examples kept per rule in the report (<= 8)", "[0,8]"},
        {NULL, 0, NULL, NULL}};
    const char *usage = "IN... -o OUT.jsonl [--report report.json] [--jaccard 0.8] [--num-perm 128] [--bands B] "
                        "[--min-chars N] [--perplexity-model CKPT --max-perplexity X]";
    char **args = malloc(((size_t)argc + 1) * sizeof *args);
    if (!args) return cli_fail(cmd, "out of memory", NULL);
    for (int i = 0; i < argc; i++) args[i] = i > 0 && !strcmp(argv[i], "-o") ? "--out" : argv[i];
    const char *in[MAX_INPUTS];
    int n_in = 0;
    int rc = cli_parse(cmd, usage, opts, argc, args, in, MAX_INPUTS, &n_in);
    free(args);
    if (rc) return rc > 0 ? 0 : 1;
    if (!out) return cli_fail(cmd, "no output file", "pass -o refined.jsonl");
    if (cli_output_ok(cmd, out)) return 1;
    if (n_in == 0) return cli_fail(cmd, "no input files", "pass .jsonl files ({\"text\": ...} per line) or text files");
    fg_refine *r = fg_refine_new(&o, out);
    if (!r) return cli_fail(cmd, fg_last_error(), "see frugal help data refine");
    double t0 = fg_now();
    for (int i = 0; i < n_in; i++)
        if (fg_refine_add_file(r, in[i])) {
            char msg[700];
            snprintf(msg, sizeof msg, "%s", fg_last_error());
            fg_refine_free(r);
            return cli_fail(cmd, msg, "check the path and free disk space");
        }
    if (fg_refine_get_stats(r)->docs_in == 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "no documents in the inputs (%llu bad JSONL lines)",
                 (unsigned long long)fg_refine_get_stats(r)->bad_lines);
        fg_refine_free(r); // removes the unfinished output
        return cli_fail(cmd, msg, "inputs are .jsonl files with {\"text\": ...} per line, or non-empty text files");
    }
    if (fg_refine_finish(r) || (report && fg_refine_write_report(r, report))) {
        char msg[700];
        snprintf(msg, sizeof msg, "%s", fg_last_error());
        fg_refine_free(r);
        return cli_fail(cmd, msg, "check that the output folder exists and is writable");
    }
    double dt = fg_now() - t0;
    const fg_refine_stats *s = fg_refine_get_stats(r);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("refined %llu documents (%.1f MB) in %.1f s, peak RSS %.0f MB: kept %llu (%.1f MB) in %s\n",
           (unsigned long long)s->docs_in, s->bytes_in / 1e6, dt, ru.ru_maxrss / 1024.0, (unsigned long long)s->docs_kept,
           s->bytes_kept / 1e6, out);
    printf("near-duplicates: MinHash %d permutations, LSH %d bands x %d rows, Jaccard >= %g (%llu candidates checked)\n",
           o.num_perm, s->bands, s->rows, o.jaccard, (unsigned long long)s->candidates);
    printf("%-18s %10s %12s\n", "removed by", "documents", "bytes");
    for (int k = 0; k < FG_REFINE_NRULES; k++) {
        if (!s->removed[k]) continue;
        printf("%-18s %10llu %12llu\n", fg_refine_rule_name(k), (unsigned long long)s->removed[k],
               (unsigned long long)s->removed_bytes[k]);
        for (int e = 0; fg_refine_example(r, k, e); e++) printf("    e.g. %s\n", fg_refine_example(r, k, e));
    }
    if (s->bad_lines) {
        printf("%-18s %10llu lines (skipped)\n", "bad JSONL", (unsigned long long)s->bad_lines);
        for (int e = 0; fg_refine_bad_line(r, e); e++) printf("    %s\n", fg_refine_bad_line(r, e));
    }
    fg_refine_free(r);
    return 0;
}
