// cmd_tokenizer.c: `frugal tokenizer train`: learns a byte-level BPE (DeepSeek-V3 pre-tokenizer)
// from text and JSONL files and writes a tokenizer.json (docs/tokenizer.md, "Training");
// `frugal tokenizer encode|decode`: text to ids or pieces and back (what llama.cpp's
// llama-tokenize does) with the tokenizer of a tokenizer.json, a GGUF file, a frugal checkpoint or
// quantised model, or a Hugging Face directory (byte-level ids when the model has no tokenizer).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

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

// ---- encode / decode -----------------------------------------------------------------------

// The tokenizer of path: 0 with *tok (NULL: byte-level ids), or prints the error and returns 1.
static int open_tokenizer(const char *cmd, const char *path, fg_tokenizer **tok) {
    *tok = NULL;
    struct stat st;
    char msg[4200];
    snprintf(msg, sizeof msg, "cannot open '%s'", path);
    if (stat(path, &st)) return cli_fail(cmd, msg, "--tokenizer takes a tokenizer.json, GGUF, .fgck, .fgq or Hugging Face directory");
    if (S_ISDIR(st.st_mode)) { // a Hugging Face directory: its tokenizer.json, or byte-level ids without one
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizer.json", path);
        if (stat(p, &st)) {
            snprintf(p, sizeof p, "%s/config.json", path);
            snprintf(msg, sizeof msg, "'%s' has neither tokenizer.json nor config.json", path);
            if (stat(p, &st)) return cli_fail(cmd, msg, "give a tokenizer.json, GGUF, checkpoint or Hugging Face directory");
            return 0;
        }
        snprintf(p, sizeof p, "%s/tokenizer.json", path);
        if (!(*tok = fg_tokenizer_load(p))) return cli_fail(cmd, fg_last_error(), NULL);
        return 0;
    }
    char magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return cli_fail(cmd, msg, "check the path");
    size_t got = fread(magic, 1, 8, f);
    fclose(f);
    if (got == 8 && !memcmp(magic, FG_CKPT_MAGIC, 8)) {
        if (fg_ckpt_read_tokenizer(path, tok)) return cli_fail(cmd, fg_last_error(), NULL);
        return 0;
    }
    if (got == 8 && !memcmp(magic, FG_QMODEL_MAGIC, 8)) {
        cli_weights w;
        if (cli_open_weights(cmd, path, NULL, &w)) return 1;
        *tok = w.tok; // taken over: the rest is closed
        w.tok = NULL;
        cli_weights_close(&w);
        return 0;
    }
    if (!(*tok = fg_tokenizer_load(path))) return cli_fail(cmd, fg_last_error(), "a tokenizer.json, GGUF, .fgck or .fgq file");
    return 0;
}

// Reads all of stdin (malloc'd, caller frees); NULL on failure.
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, stdin);
        n += r;
        if (n < cap) break;
        char *nb = realloc(b, cap *= 2);
        if (!nb) { free(b); return NULL; }
        b = nb;
    }
    *len = n;
    return b;
}

static size_t piece_of(const fg_tokenizer *tok, int32_t id, char *buf, size_t cap) {
    if (tok) {
        size_t n = fg_tokenizer_decode(tok, id, buf, cap);
        return n < cap ? n : cap;
    }
    if (id < 0 || id >= FG_BYTE_VOCAB) return 0;
    return fg_bytetok_decode(id, buf);
}

// s as a JSON string; bytes that are not valid UTF-8 become U+FFFD (a piece may be part of a
// character).
static void put_json_str(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { printf("\\%c", c); i++; continue; }
        if (c < 0x20) { printf("\\u%04x", c); i++; continue; }
        if (c < 0x80) { putchar(c); i++; continue; }
        size_t k = c >= 0xF0 && c < 0xF5 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
        int ok = k && i + k <= n;
        for (size_t j = 1; ok && j < k; j++) ok = ((unsigned char)s[i + j] & 0xC0) == 0x80;
        if (ok && k == 3) { unsigned c1 = (unsigned char)s[i + 1]; ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0); }
        if (ok && k == 4) { unsigned c1 = (unsigned char)s[i + 1]; ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90); }
        if (!ok) { fputs("\xEF\xBF\xBD", stdout); i++; continue; }
        fwrite(s + i, 1, k, stdout);
        i += k;
    }
    putchar('"');
}

// A piece for a terminal line: printable ASCII as is, the rest escaped (\n, \t, \xNN; UTF-8 kept).
static void put_piece(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
}

static int tokenizer_encode(int argc, char **argv) {
    const char *cmd = "tokenizer encode", *tpath = NULL, *file = NULL;
    int pieces = 0, json = 0, no_special = 0;
    const cli_opt opts[] = {
        {"tokenizer", OPT_STR, &tpath, "tokenizer.json, GGUF, .fgck/.fgq or Hugging Face directory (required)"},
        {"file", OPT_STR, &file, "encode this file's bytes (default: the TEXT arguments, else stdin)"},
        {"pieces", OPT_FLAG, &pieces, "one line per token: id, a tab, its text (escaped)"},
        {"json", OPT_FLAG, &json, "one JSON object: {\"ids\": [...], \"pieces\": [...]}"},
        {"no-special", OPT_FLAG, &no_special, "treat special-token text as plain text"},
        {NULL, 0, NULL, NULL}};
    const char *pos[256];
    int npos = 0, r = cli_parse(cmd, "--tokenizer PATH [--pieces|--json] [--file F | TEXT...]", opts, argc, argv, pos, 256, &npos);
    if (r) return r > 0 ? 0 : 1;
    if (!tpath) return cli_fail(cmd, "--tokenizer is required", "frugal tokenizer encode --tokenizer tokenizer.json \"Hello\"");
    if (file && npos) return cli_fail(cmd, "give --file or TEXT, not both", NULL);
    fg_tokenizer *tok;
    if (open_tokenizer(cmd, tpath, &tok)) return 1;
    char *text = NULL;
    size_t len = 0;
    if (file) {
        FILE *f = fopen(file, "rb");
        if (!f) {
            char m2[4200];
            snprintf(m2, sizeof m2, "cannot open --file '%s'", file);
            fg_tokenizer_free(tok);
            return cli_fail(cmd, m2, "check the path");
        }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        text = malloc(n > 0 ? (size_t)n : 1);
        len = text && n > 0 ? fread(text, 1, (size_t)n, f) : 0;
        fclose(f);
    } else if (npos) {
        for (int i = 0; i < npos; i++) len += strlen(pos[i]) + 1;
        text = malloc(len + 1);
        len = 0;
        for (int i = 0; text && i < npos; i++) len += (size_t)sprintf(text + len, "%s%s", i ? " " : "", pos[i]);
    } else text = read_stdin(&len);
    if (!text) { fg_tokenizer_free(tok); return cli_fail(cmd, "out of memory reading the text", NULL); }
    size_t n = tok ? fg_tokenizer_encode(tok, text, len, !no_special, NULL, 0) : fg_bytetok_encode(text, len, !no_special, NULL, 0);
    int32_t *ids = n == SIZE_MAX ? NULL : malloc(sizeof(int32_t) * (n ? n : 1));
    if (!ids) { free(text); fg_tokenizer_free(tok); return cli_fail(cmd, "out of memory encoding the text", NULL); }
    if (tok) fg_tokenizer_encode(tok, text, len, !no_special, ids, n);
    else fg_bytetok_encode(text, len, !no_special, ids, n);
    char buf[4096];
    if (json) {
        printf("{\"ids\": [");
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
        printf("], \"pieces\": [");
        for (size_t i = 0; i < n; i++) {
            if (i) printf(", ");
            put_json_str(buf, piece_of(tok, ids[i], buf, sizeof buf));
        }
        printf("]}\n");
    } else if (pieces) {
        for (size_t i = 0; i < n; i++) {
            printf("%d\t", ids[i]);
            put_piece(buf, piece_of(tok, ids[i], buf, sizeof buf));
            putchar('\n');
        }
    } else {
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        putchar('\n');
    }
    free(ids);
    free(text);
    fg_tokenizer_free(tok);
    return 0;
}

static int tokenizer_decode(int argc, char **argv) {
    const char *cmd = "tokenizer decode", *tpath = NULL;
    int pieces = 0, json = 0;
    const cli_opt opts[] = {
        {"tokenizer", OPT_STR, &tpath, "tokenizer.json, GGUF, .fgck/.fgq or Hugging Face directory (required)"},
        {"pieces", OPT_FLAG, &pieces, "one line per id: id, a tab, its text (escaped)"},
        {"json", OPT_FLAG, &json, "one JSON object: {\"text\": \"...\", \"pieces\": [...]}"},
        {NULL, 0, NULL, NULL}};
    const char *pos[4096];
    int npos = 0, r = cli_parse(cmd, "--tokenizer PATH [--pieces|--json] [IDS... | ids on stdin]", opts, argc, argv, pos, 4096, &npos);
    if (r) return r > 0 ? 0 : 1;
    if (!tpath) return cli_fail(cmd, "--tokenizer is required", "frugal tokenizer decode --tokenizer tokenizer.json 19923 2058");
    fg_tokenizer *tok;
    if (open_tokenizer(cmd, tpath, &tok)) return 1;
    char *in = NULL;
    size_t len = 0;
    if (npos) {
        for (int i = 0; i < npos; i++) len += strlen(pos[i]) + 1;
        in = malloc(len + 1);
        len = 0;
        for (int i = 0; in && i < npos; i++) len += (size_t)sprintf(in + len, "%s ", pos[i]);
    } else in = read_stdin(&len);
    if (!in) { fg_tokenizer_free(tok); return cli_fail(cmd, "out of memory reading the ids", NULL); }
    char *t = realloc(in, len + 1); // room for the terminator
    if (!t) { free(in); fg_tokenizer_free(tok); return cli_fail(cmd, "out of memory", NULL); }
    in = t;
    in[len] = 0;
    int32_t V = tok ? fg_tokenizer_vocab_size(tok) : FG_BYTE_VOCAB;
    size_t cap = len / 2 + 1, n = 0;
    int32_t *ids = malloc(sizeof(int32_t) * cap);
    char *p = in, bad[64] = "";
    while (ids && *p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',' || *p == '[' || *p == ']') p++;
        if (!*p) break;
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p || v < 0 || v >= V) { snprintf(bad, sizeof bad, "%.*s", (int)strcspn(p, " \t\n\r,]"), p); break; }
        ids[n++] = (int32_t)v;
        p = e;
    }
    free(in);
    if (!ids || bad[0]) {
        char msg[160];
        snprintf(msg, sizeof msg, "'%s' is not a token id of this tokenizer (0..%d)", bad, V - 1);
        free(ids);
        fg_tokenizer_free(tok);
        return cli_fail(cmd, ids ? msg : "out of memory", "ids are decimal numbers separated by spaces or commas");
    }
    char buf[4096];
    if (json) {
        size_t tl = 0, tc = 4096;
        char *all = malloc(tc);
        for (size_t i = 0; all && i < n; i++) {
            size_t k = piece_of(tok, ids[i], buf, sizeof buf);
            if (tl + k > tc) { char *na = realloc(all, tc = 2 * (tl + k)); if (!na) { free(all); all = NULL; break; } all = na; }
            memcpy(all + tl, buf, k);
            tl += k;
        }
        if (!all) { free(ids); fg_tokenizer_free(tok); return cli_fail(cmd, "out of memory", NULL); }
        printf("{\"text\": ");
        put_json_str(all, tl);
        printf(", \"pieces\": [");
        for (size_t i = 0; i < n; i++) {
            if (i) printf(", ");
            put_json_str(buf, piece_of(tok, ids[i], buf, sizeof buf));
        }
        printf("]}\n");
        free(all);
    } else if (pieces) {
        for (size_t i = 0; i < n; i++) {
            printf("%d\t", ids[i]);
            put_piece(buf, piece_of(tok, ids[i], buf, sizeof buf));
            putchar('\n');
        }
    } else {
        for (size_t i = 0; i < n; i++) fwrite(buf, 1, piece_of(tok, ids[i], buf, sizeof buf), stdout);
        putchar('\n');
    }
    free(ids);
    fg_tokenizer_free(tok);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "train")) return tokenizer_train(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "encode")) return tokenizer_encode(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "decode")) return tokenizer_decode(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "--help") && strcmp(argv[1], "-h")) {
        fprintf(stderr, "frugal tokenizer: unknown subcommand '%s' (hint: train, encode or decode; frugal help tokenizer)\n", argv[1]);
        return 2;
    }
    printf("usage: frugal tokenizer train|encode|decode [options]\n\nsubcommands:\n"
           "  train      learn a byte-level BPE and write tokenizer.json\n"
           "  encode     text -> token ids (or pieces, --json) with a model's or file's tokenizer\n"
           "  decode     token ids -> text\n\n");
    char *sub[] = {"train", "--help"}, *enc[] = {"encode", "--help"}, *dec[] = {"decode", "--help"};
    tokenizer_train(2, sub);
    printf("\n");
    tokenizer_encode(2, enc);
    printf("\n");
    return tokenizer_decode(2, dec);
}
