// cmd_convert.c: `frugal convert` (Hugging Face directory or GGUF -> frugal checkpoint) and
// `frugal export` (any model frugal opens -> GGUF or a Hugging Face directory). docs/formats.md
// describes both foreign layouts and what each conversion does to names, shapes and rows.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"

static void notice_cb(const char *msg) { fprintf(stderr, "frugal: %s\n", msg); }

int cmd_convert(int argc, char **argv) {
    const char *out = NULL, *pos[2];
    int npos = 0;
    cli_opt opts[] = {
        {"out", OPT_STR, &out, "output checkpoint (.fgck), written atomically (-o is --out)"},
        {NULL, 0, NULL, NULL},
    };
    char **args = malloc(sizeof(char *) * ((size_t)argc + 1));
    if (!args) return cli_fail("convert", "out of memory", NULL);
    for (int i = 0; i < argc; i++) args[i] = i > 0 && !strcmp(argv[i], "-o") ? "--out" : argv[i];
    int r = cli_parse("convert", "HF_DIR|MODEL.gguf -o OUT.fgck", opts, argc, args, pos, 2, &npos);
    free(args);
    if (r) return r < 0 ? 1 : 0;
    if (npos != 1) return cli_fail("convert", "one source is required", "frugal convert DeepSeek-V2-Lite/ -o v2lite.fgck");
    if (!out) return cli_fail("convert", "-o is required", "frugal convert DIR -o model.fgck");
    if (cli_output_ok("convert", out)) return 1;
    double t0 = fg_now();
    char *td = NULL;
    size_t tl = 0;
    fg_model *m = fg_model_open(pos[0], &td, &tl, notice_cb);
    if (!m) return cli_fail("convert", fg_last_error(), "a Hugging Face directory (config.json + safetensors) or a GGUF file");
    fg_train_state st;
    fg_train_state_init(&st, 0);
    if (td) {
        snprintf(st.tokenizer, sizeof st.tokenizer, "bpe");
        st.tokenizer_data = td;
        st.tokenizer_len = tl;
    }
    int rc = fg_ckpt_save(out, m, NULL, &st);
    int64_t total, active;
    fg_config_param_counts(fg_model_config(m), &total, &active);
    fg_train_state_free(&st);
    fg_model_free(m);
    if (rc) return cli_fail("convert", fg_last_error(), NULL);
    printf("%s -> %s: %.3fM parameters (%.3fM active), tokenizer: %s, %.1f s\n", pos[0], out, total / 1e6, active / 1e6,
           td ? "BPE" : "byte-level", fg_now() - t0);
    return 0;
}

// Removes a directory this export created, with what it wrote there: a failed export leaves
// nothing behind.
static void remove_new_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    char p[2048];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int cmd_export(int argc, char **argv) {
    const char *gguf = NULL, *hf = NULL, *type_s = NULL, *pos[2];
    int npos = 0;
    cli_opt opts[] = {
        {"gguf", OPT_STR, &gguf, "write this GGUF file (deepseek2 for MLA models, qwen2/llama for GQA)"},
        {"hf", OPT_STR, &hf, "write this Hugging Face directory (config.json, model.safetensors, tokenizer.json)"},
        {"type", OPT_STR, &type_s, "weight type: f32 | bf16 | q8_0 | q4_0 | q4_k | q5_k | q6_k | q4_k_m | q5_k_m (GGUF only; "
                                   "the _m mixtures choose per tensor as llama-quantize does) | f16 (safetensors only); default f32"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("export", "--gguf OUT.gguf | --hf DIR [--type f32|bf16|q8_0|q4_0|q4_k|q5_k|q6_k|q4_k_m|q5_k_m|f16] MODEL", opts,
                      argc, argv, pos, 2, &npos);
    if (r) return r < 0 ? 1 : 0;
    if (npos != 1) return cli_fail("export", "one model is required", "frugal export --gguf out.gguf runs/demo/ckpt.fgck");
    if (!gguf == !hf) return cli_fail("export", "give exactly one of --gguf and --hf", NULL);
    // An element type (FG_EXPORT_TYPES), or for GGUF one of llama-quantize's mixtures, which are a
    // per-tensor choice rather than element types (fg_gguf_export decides it).
    const char *ts = type_s ? type_s : "f32";
    int mix = !strcmp(ts, "q4_k_m") ? FG_GGUF_Q4_K_M : !strcmp(ts, "q5_k_m") ? FG_GGUF_Q5_K_M : -1;
    if (mix >= 0 && hf) return cli_fail("export", "q4_k_m and q5_k_m are GGUF mixtures", "--hf takes --type f32, bf16 or f16");
    int type = mix >= 0 ? mix : fg_dtype_parse(ts, FG_EXPORT_TYPES, "export type");
    if (type < 0) return cli_fail("export", fg_last_error(), gguf ? "GGUF also takes the mixtures q4_k_m and q5_k_m" : NULL);
    if (gguf && cli_output_ok("export", gguf)) return 1;
    struct stat sb;
    if (hf && !stat(hf, &sb) && !S_ISDIR(sb.st_mode)) {
        char msg[1200];
        snprintf(msg, sizeof msg, "--hf '%s' exists and is not a directory", hf);
        return cli_fail("export", msg, "name a new or existing directory");
    }
    int hf_new = hf && stat(hf, &sb);
    double t0 = fg_now();
    char *td = NULL;
    size_t tl = 0;
    fg_model *m = fg_model_open(pos[0], &td, &tl, notice_cb);
    if (!m) return cli_fail("export", fg_last_error(), NULL);
    int rc = gguf ? fg_gguf_export(gguf, m, type, td, tl) : fg_hf_export(hf, m, type, td, tl);
    fg_model_free(m);
    free(td);
    if (rc) {
        cli_fail("export", fg_last_error(), NULL);
        if (hf_new) remove_new_dir(hf);
        return 1;
    }
    printf("%s -> %s (%s, %s), %.1f s\n", pos[0], gguf ? gguf : hf, gguf ? "GGUF" : "safetensors", type_s ? type_s : "f32", fg_now() - t0);
    return 0;
}
