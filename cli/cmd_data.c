// cmd_data.c: `frugal data prepare` (token shards for training) and the `frugal data refine`
// entry (the refinery lives in cli/cmd_refine.c).
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"

static void warn_cb(const char *msg) { fprintf(stderr, "frugal data prepare: warning: %s\n", msg); }

static int cmd_data_prepare(int argc, char **argv) {
    fg_prepare_opts o = {.shard_tokens = 16 << 20, .val_fraction = 0.0, .warn = warn_cb};
    cli_opt opts[] = {
        {"out", OPT_STR, &o.out_dir, "(or -o) output directory (shards, manifest.json, a copy of the tokenizer)"},
        {"tokenizer", OPT_STR, &o.tokenizer, "BPE tokenizer.json or GGUF (default: byte-level ids)"},
        {"sft", OPT_FLAG, &o.sft, "inputs are chat JSONL {\"conversations\": [...]}; only assistant tokens are trained"},
        {"shard-tokens", OPT_I64, &o.shard_tokens, "tokens per shard (whole documents)"},
        {"val-fraction", OPT_DOUBLE, &o.val_fraction, "fraction of documents held out in val shards, [0, 0.5]"},
        {NULL, 0, NULL, NULL},
    };
    const char *files[4096];
    char *args[4096];
    int nf = 0;
    if (argc > 4096) return cli_fail("data prepare", "too many arguments", "at most 4096");
    for (int i = 0; i < argc; i++) args[i] = strcmp(argv[i], "-o") ? argv[i] : "--out"; // -o is --out
    int r = cli_parse("data prepare", "-o OUTDIR [options] FILES...  (.txt: one document; .jsonl: one per line)", opts,
                      argc, args, files, 4096, &nf);
    if (r) return r < 0 ? 1 : 0;
    if (!o.out_dir) return cli_fail("data prepare", "-o OUTDIR is required", "frugal data prepare -o shards/ corpus.jsonl");
    if (!nf) return cli_fail("data prepare", "no input files", "pass .txt or .jsonl files");
    fg_prepare_report rep;
    if (fg_data_prepare(&o, files, nf, &rep)) return cli_fail("data prepare", fg_last_error(), NULL);
    printf("%llu documents (%llu in val), %llu tokens in %llu train + %llu val shards; %llu JSONL line(s) skipped\n"
           "manifest: %s/manifest.json\n",
           (unsigned long long)rep.documents, (unsigned long long)rep.val_documents, (unsigned long long)rep.tokens,
           (unsigned long long)rep.train_shards, (unsigned long long)rep.val_shards, (unsigned long long)rep.skipped_lines,
           o.out_dir);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "prepare")) return cmd_data_prepare(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "refine")) return cmd_data_refine(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: frugal data prepare -o OUTDIR [options] FILES...\n       frugal data refine IN... -o OUT\n"
               "`frugal data prepare --help` lists the options.\n");
        return 0;
    }
    fprintf(stderr, "frugal data: expected 'prepare' or 'refine'%s%s (hint: frugal data --help)\n", argc >= 2 ? ", got " : "",
            argc >= 2 ? argv[1] : "");
    return 2;
}
