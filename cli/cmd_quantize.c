// cmd_quantize.c: `frugal quantize` (a checkpoint to a quantised model file, .fgq) and the opener
// that every inference command uses, so generate, chat, bench and eval take a checkpoint, a
// quantised file (told apart by the file's magic) or a Hugging Face directory (mapped, weights as
// stored, unless --weights asks for a conversion) alike.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/opts.h"

static void notice_cb(const char *msg) { fprintf(stderr, "frugal: %s\n", msg); }

static int file_is_gguf(const char *path) {
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(magic, "GGUF", 4);
}

int cli_open_weights(const char *cmd, const char *path, const char *weights_s, cli_weights *w) {
    memset(w, 0, sizeof *w);
    int weights = FG_F32;
    if (weights_s && (weights = fg_dtype_parse(weights_s, FG_WEIGHT_TYPES, "weight type")) < 0) return cli_fail(cmd, fg_last_error(), NULL);
    struct stat sb;
    if (!stat(path, &sb) && S_ISDIR(sb.st_mode) && (!weights_s || weights == FG_BF16)) {
        // A Hugging Face directory runs from its mapped shards, weights as stored (BF16 stays BF16);
        // --weights bf16 over F32/F16 shards falls through to the converting path below.
        if (!(w->ws = fg_wstore_open_hf(path, notice_cb)))
            return cli_fail(cmd, fg_last_error(), strstr(fg_last_error(), "hint:") ? NULL : "check the directory's config.json and shards");
        if (!weights_s || fg_wstore_weights(w->ws) == weights) {
            if (fg_wstore_tokenizer(w->ws, &w->tok)) { cli_weights_close(w); return cli_fail(cmd, fg_last_error(), NULL); }
            return 0;
        }
        cli_weights_close(w);
    }
    if (!weights_s && file_is_gguf(path)) { // a GGUF file runs from its mapping, blocks as stored
        if (!(w->ws = fg_wstore_open_gguf(path, NULL))) return cli_fail(cmd, fg_last_error(), NULL);
        if (fg_wstore_tokenizer(w->ws, &w->tok)) { cli_weights_close(w); return cli_fail(cmd, fg_last_error(), NULL); }
        return 0;
    }
    if (fg_file_is_qmodel(path)) {
        if (!(w->ws = fg_qmodel_open(path)))
            return cli_fail(cmd, fg_last_error(), "re-create it with frugal quantize CKPT -o OUT --type q8_0");
        int stored = fg_wstore_weights(w->ws);
        if (weights_s && weights != stored) {
            char msg[1200];
            snprintf(msg, sizeof msg, "%s is a quantised model stored as %s; --weights %s converts checkpoints only", path,
                     fg_dtype_name(stored), weights_s);
            cli_weights_close(w);
            return cli_fail(cmd, msg, "drop --weights, or quantize the checkpoint to the type you want");
        }
        if (fg_wstore_tokenizer(w->ws, &w->tok)) { cli_weights_close(w); return cli_fail(cmd, fg_last_error(), NULL); }
        return 0;
    }
    if (!(w->m = cli_open_ckpt(cmd, path, &w->tok))) return -1;
    if (!(w->ws = fg_wstore_from_model(w->m, weights))) {
        cli_weights_close(w);
        return cli_fail(cmd, fg_last_error(), NULL);
    }
    return 0;
}

int cli_random_weights(const char *cmd, const char *config, int weights, int min_ctx, cli_weights *w) {
    memset(w, 0, sizeof *w);
    fg_config c;
    if (cli_load_config(&c, config)) return cli_fail(cmd, fg_last_error(), NULL);
    if (min_ctx > c.max_position_embeddings) c.max_position_embeddings = min_ctx;
    if (!(w->m = fg_model_create(&c))) return cli_fail(cmd, fg_last_error(), NULL);
    fg_model_init_weights(w->m, 1);
    if (!(w->ws = fg_wstore_from_model(w->m, weights))) { cli_weights_close(w); return cli_fail(cmd, fg_last_error(), NULL); }
    return 0;
}

void cli_weights_close(cli_weights *w) {
    fg_wstore_free(w->ws);
    fg_tokenizer_free(w->tok);
    fg_model_free(w->m);
    memset(w, 0, sizeof *w);
}

int cli_kv_type(const char *cmd, const char *s) {
    int t = fg_dtype_parse(s, FG_WEIGHT_TYPES, "weight type");
    if (t != FG_F32 && t != FG_BF16 && t != FG_Q8_0) {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown KV cache type '%.200s'", s);
        cli_fail(cmd, msg, "--kv-type f32, bf16 or q8_0");
        return -1;
    }
    return t;
}

int cmd_quantize(int argc, char **argv) {
    const char *cmd = "quantize", *out = NULL, *type_s = "q8_0";
    const cli_opt opts[] = {
        {"out", OPT_STR, &out, "the quantised model file to write (also -o)"},
        {"type", OPT_STR, &type_s, "matrix format: bf16, q8_0, q4_0, q4_k, q5_k or q6_k (norms, biases, the router and MLA's wkv_b stay f32; rows that are not whole blocks fall back to q8_0 or f32)"},
        {NULL, 0, NULL, NULL}};
    char **args = malloc(((size_t)argc + 1) * sizeof *args);
    if (!args) return cli_fail(cmd, "out of memory", NULL);
    for (int i = 0; i < argc; i++) args[i] = i > 0 && !strcmp(argv[i], "-o") ? "--out" : argv[i];
    const char *pos[2];
    int npos = 0;
    int r = cli_parse(cmd, "CKPT -o OUT.fgq [--type bf16|q8_0|q4_0|q4_k|q5_k|q6_k]", opts, argc, args, pos, 2, &npos);
    free(args);
    if (r) return r < 0 ? 1 : 0;
    if (npos != 1) return cli_fail(cmd, "expected exactly one checkpoint", "frugal quantize runs/demo/ckpt.fgck -o demo-q8.fgq --type q8_0");
    if (!out) return cli_fail(cmd, "-o OUT is required", "frugal quantize runs/demo/ckpt.fgck -o demo-q8.fgq");
    if (cli_output_ok(cmd, out)) return 1;
    int type = fg_dtype_parse(type_s, FG_WEIGHT_TYPES, "weight type");
    if (type < 0) return cli_fail(cmd, fg_last_error(), NULL);
    if (type == FG_F32) return cli_fail(cmd, "--type f32 is the checkpoint itself", "--type bf16, q8_0, q4_0, q4_k, q5_k or q6_k");
    if (fg_file_is_qmodel(pos[0])) return cli_fail(cmd, "the input is already a quantised model", "quantize the checkpoint it came from");
    fg_model *m = cli_open_ckpt(cmd, pos[0], NULL);
    if (!m) return 1;
    char *tok = NULL;
    size_t tok_len = 0;
    fg_wstore *ws = NULL;
    int rc = fg_ckpt_read_tokenizer_bytes(pos[0], &tok, &tok_len) || !(ws = fg_wstore_from_model(m, type)) ||
             fg_wstore_set_tokenizer(ws, tok, tok_len) || fg_qmodel_save(out, ws);
    if (rc) cli_fail(cmd, fg_last_error(), NULL);
    else {
        int64_t total, active;
        fg_config_param_counts(fg_model_config(m), &total, &active);
        FILE *f = fopen(out, "rb");
        long size = 0;
        if (f) { fseek(f, 0, SEEK_END); size = ftell(f); fclose(f); }
        printf("wrote %s: %.2fM parameters as %s, %.2f MB (fp32 weights: %.2f MB)%s\n", out, total / 1e6, type_s, size / 1e6,
               4.0 * total / 1e6, tok ? ", with the checkpoint's tokenizer" : "");
    }
    free(tok);
    fg_wstore_free(ws);
    fg_model_free(m);
    return rc ? 1 : 0;
}
