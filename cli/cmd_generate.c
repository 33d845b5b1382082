// cmd_generate.c: `frugal generate`: sample text from a checkpoint with a KV cache.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"

// Streams each token's text; stops once the text generated so far ends with the stop string.
// tok: the checkpoint's BPE tokenizer, or NULL for byte-level ids.
typedef struct { const char *stop; size_t stop_len; char tail[512]; size_t n; const fg_tokenizer *tok; } stream_ctx;

static int print_token(int32_t id, void *ctx) {
    stream_ctx *sc = ctx;
    char small[FG_BYTETOK_MAX_PIECE + 256], *buf = small;
    size_t n = sc->tok ? fg_tokenizer_decode(sc->tok, id, small, sizeof small) : fg_bytetok_decode(id, small);
    if (n > sizeof small) { // a long BPE piece (rare): decode it whole
        if (!(buf = malloc(n))) return 1;
        fg_tokenizer_decode(sc->tok, id, buf, n);
    }
    fwrite(buf, 1, n, stdout);
    fflush(stdout);
    int hit = 0;
    for (size_t i = 0; i < n && sc->stop_len; i++) { // keep the last bytes, enough to hold the stop string
        if (sc->n == sizeof sc->tail) { memmove(sc->tail, sc->tail + 256, sc->n - 256); sc->n -= 256; }
        sc->tail[sc->n++] = buf[i];
        hit |= sc->n >= sc->stop_len && !memcmp(sc->tail + sc->n - sc->stop_len, sc->stop, sc->stop_len);
    }
    if (buf != small) free(buf);
    return hit;
}

// Writes s[0..n) as a JSON string literal: quotes, backslashes and control bytes escaped, valid
// UTF-8 passed through, any other byte as U+FFFD.
static void json_string(FILE *f, const char *s, size_t n) {
    size_t cap = 6 * n + 3, pos = 0; // the longest literal s can become
    char small[1024], *buf = cap <= sizeof small ? small : malloc(cap);
    if (!buf) { fprintf(stderr, "frugal generate: out of memory writing the JSON output\n"); exit(1); } // the CLI may exit
    fg_json_append_string(buf, cap, &pos, s, n);
    fwrite(buf, 1, pos, f);
    if (buf != small) free(buf);
}

// The prompt from a file, or from standard input for "-": malloc'd, NUL-terminated (caller frees);
// *len its bytes. A NUL byte inside is refused (the prompt is text). Prints the error; NULL on failure.
static char *read_prompt(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    char msg[1200];
    if (!f) {
        snprintf(msg, sizeof msg, "cannot open --prompt-file '%s'", path);
        cli_fail("generate", msg, "give a text file, or - for standard input");
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) { char *nb = realloc(buf, cap *= 2); if (!nb) { free(buf); buf = NULL; } else buf = nb; }
    }
    int err = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || err) {
        free(buf);
        snprintf(msg, sizeof msg, "cannot read --prompt-file '%s'%s", path, buf ? "" : ": out of memory");
        cli_fail("generate", msg, NULL);
        return NULL;
    }
    buf[n] = 0;
    if (strlen(buf) != n) {
        snprintf(msg, sizeof msg, "--prompt-file '%s' holds a NUL byte at offset %zu", path, strlen(buf));
        cli_fail("generate", msg, "the prompt must be text");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

// --json: the tokens' text is collected instead of streamed.
typedef struct { stream_ctx sc; char *text; size_t n, cap; int oom; } json_ctx;

static int collect_token(int32_t id, void *ctx) {
    json_ctx *jc = ctx;
    char small[FG_BYTETOK_MAX_PIECE + 256];
    size_t n = jc->sc.tok ? fg_tokenizer_decode(jc->sc.tok, id, NULL, 0) : fg_bytetok_decode(id, small);
    if (jc->n + n + 1 > jc->cap) {
        size_t cap = (jc->n + n + 1) * 2;
        char *t = realloc(jc->text, cap);
        if (!t) { jc->oom = 1; return 1; }
        jc->text = t; jc->cap = cap;
    }
    if (jc->sc.tok) fg_tokenizer_decode(jc->sc.tok, id, jc->text + jc->n, n);
    else memcpy(jc->text + jc->n, small, n);
    jc->n += n;
    jc->text[jc->n] = 0;
    return jc->sc.stop_len && jc->n >= jc->sc.stop_len && !memcmp(jc->text + jc->n - jc->sc.stop_len, jc->sc.stop, jc->sc.stop_len);
}

int cmd_generate(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "", *stop_str = NULL, *weights_s = NULL, *kv_s = "f32";
    fg_sample_opts so = {.temperature = 0.8f, .top_k = 0, .top_p = 0.95f, .seed = 1, .max_new_tokens = 200,
                         .min_p = 0.0f, .repetition_penalty = 1.0f};
    const char *prompt_file = NULL;
    int threads = 0, no_bos = 0, json = 0;
    cli_opt opts[] = {
        {"ckpt", OPT_STR, &ckpt, "checkpoint or quantised model (.fgq) to sample from (required)"},
        {"prompt", OPT_STR, &prompt, "prompt text; special tokens are parsed (<think>, <|eos|>; with a BPE checkpoint its own, e.g. <｜User｜>)"},
        {"prompt-file", OPT_STR, &prompt_file, "read the prompt from this file (- = standard input)"},
        {"json", OPT_FLAG, &json, "print one JSON object (prompt, text, token counts, why it stopped) instead of streaming"},
        {"max-tokens", OPT_INT, &so.max_new_tokens, "maximum new tokens", "[0,inf)"},
        {"temperature", OPT_FLOAT, &so.temperature, "sampling temperature (0 = greedy)", "[0,inf)"},
        {"top-k", OPT_INT, &so.top_k, "keep the k most likely tokens (0 = all)", "[0,inf)"},
        {"top-p", OPT_FLOAT, &so.top_p, "nucleus sampling threshold (1 = off)", "(0,1]"},
        {"min-p", OPT_FLOAT, &so.min_p, "drop tokens below min-p times the best one's probability (0 = off)", "[0,1]"},
        {"repeat-penalty", OPT_FLOAT, &so.repetition_penalty, "penalise ids already in the context (1 = off)", "(0,inf)"},
        {"speculative", OPT_INT, &so.speculative, "draft up to N tokens per step with the model's MTP depths, verified in one batch (same output distribution; 0 = off)", "[0,4]"},
        {"stop", OPT_STR, &stop_str, "stop once the output ends with this text (<|eos|> always stops)"},
        {"seed", OPT_U64, &so.seed, "sampling seed (same seed, same text)"},
        {"no-bos", OPT_FLAG, &no_bos, "do not start with <|bos|>"},
        {"weights", OPT_STR, &weights_s, "weight format for a checkpoint: f32 (default), bf16 or q8_0 (converted at load); a quantised model runs as stored"},
        {"kv-type", OPT_STR, &kv_s, "KV cache values: f32, bf16 or q8_0 (32-value blocks with an fp16 scale, 1.06 bytes per value)"},
        {"threads", OPT_INT, &threads, "OpenMP threads (0 = all cores)"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("generate", "--ckpt PATH [--prompt TEXT | --prompt-file FILE|-] [--json] [options]", opts, argc, argv, NULL, 0, NULL);
    if (r) return r < 0 ? 1 : 0;
    cli_set_threads(threads);
    if (!ckpt) return cli_fail("generate", "--ckpt is required", "frugal generate --ckpt runs/demo/ckpt.fgck --prompt '0123+4567='");
    if (prompt_file && cli_given(argc, argv, "prompt"))
        return cli_fail("generate", "--prompt and --prompt-file exclude each other", "give one of them");
    if (stop_str && (!*stop_str || strlen(stop_str) > 256))
        return cli_fail("generate", "--stop must be 1 to 256 bytes", NULL);
    int kv_type = cli_kv_type("generate", kv_s);
    if (kv_type < 0) return 1;
    cli_weights cw;
    if (cli_open_weights("generate", ckpt, weights_s, &cw)) return 1;
    fg_tokenizer *tok = cw.tok;
    int32_t bos = FG_TOK_BOS, stop = FG_TOK_EOS;
    if (tok) { // the run's BPE tokenizer: DeepSeek's document markers
        bos = fg_tokenizer_token_id(tok, FG_DS_BOS);
        stop = fg_tokenizer_token_id(tok, FG_DS_EOS);
    }
    char *prompt_buf = NULL;
    size_t plen = strlen(prompt);
    if (prompt_file) {
        if (!(prompt_buf = read_prompt(prompt_file, &plen))) { cli_weights_close(&cw); return 1; }
        prompt = prompt_buf;
    }
    size_t need = tok ? fg_tokenizer_encode(tok, prompt, plen, 1, NULL, 0) : plen;
    int32_t *ids = need == SIZE_MAX ? NULL : malloc(sizeof(int32_t) * (need + 2));
    if (!ids) { free(prompt_buf); cli_weights_close(&cw); return cli_fail("generate", "out of memory encoding the prompt", NULL); }
    int n = 0;
    if (!no_bos) ids[n++] = bos;
    n += (int)(tok ? fg_tokenizer_encode(tok, prompt, plen, 1, ids + n, need) : fg_bytetok_encode(prompt, plen, 1, ids + n, plen + 1));
    int max_T = fg_wstore_config(cw.ws)->max_position_embeddings;
    if (n == 0) { free(ids); free(prompt_buf); cli_weights_close(&cw); return cli_fail("generate", "the prompt is empty", "give --prompt TEXT, or drop --no-bos"); }
    if (n >= max_T) {
        char msg[200];
        snprintf(msg, sizeof msg, "the prompt is %d tokens, longer than the model's context of %d tokens (it needs room for one more)", n, max_T);
        free(ids); free(prompt_buf); cli_weights_close(&cw);
        return cli_fail("generate", msg, "shorten the prompt");
    }
    if (n + so.max_new_tokens > max_T) so.max_new_tokens = max_T - n;
    so.stop_ids = &stop; so.n_stop = 1;
    // The cache needs room for this prompt and reply only (a 160k-token context would reserve GiBs).
    max_T = CLI_MIN(max_T, n + so.max_new_tokens + 1);
    fg_infer *s = fg_infer_create_store(cw.ws, max_T, FG_KV_AUTO, kv_type);
    int32_t *out = malloc(sizeof(int32_t) * (so.max_new_tokens + 1));
    int rc = 0;
    if (!s || !out) rc = cli_fail("generate", fg_last_error(), NULL);
    else if (so.speculative && !fg_infer_mtp_depths(s))
        rc = cli_fail("generate", "--speculative needs a model with multi-token prediction (num_nextn_predict_layers > 0)",
                      "train one with frugal train --mtp 1, or drop --speculative");
    else if (json) {
        json_ctx jc = {.sc = {.stop = stop_str, .stop_len = stop_str ? strlen(stop_str) : 0, .tok = tok}};
        int ng = fg_generate(s, ids, n, &so, out, so.max_new_tokens + 1, collect_token, &jc);
        if (ng < 0 || jc.oom) rc = cli_fail("generate", jc.oom ? "out of memory collecting the text" : fg_last_error(), NULL);
        else {
            int eos = ng > 0 && out[ng - 1] == stop;
            int hit = jc.sc.stop_len && jc.n >= jc.sc.stop_len && !memcmp(jc.text + jc.n - jc.sc.stop_len, stop_str, jc.sc.stop_len);
            printf("{\"prompt\": ");
            json_string(stdout, prompt, plen);
            printf(", \"text\": ");
            json_string(stdout, jc.text ? jc.text : "", jc.n);
            printf(", \"prompt_tokens\": %d, \"tokens\": %d, \"stop\": \"%s\", \"seed\": %llu", n, ng,
                   hit ? "stop" : eos ? "eos" : "max_tokens", (unsigned long long)so.seed);
            fg_spec_stats st;
            fg_infer_spec_stats(s, &st);
            if (st.rounds) {
                printf(", \"speculative\": {\"steps\": %lld, \"tokens_per_step\": %.4f, \"accepted\": [", st.rounds,
                       (double)st.tokens / (double)st.rounds);
                for (int k = 0; k < so.speculative && k < FG_MTP_MAX; k++)
                    printf("%s%.4f", k ? ", " : "", st.proposed[k] ? (double)st.accepted[k] / (double)st.proposed[k] : 0.0);
                printf("]}");
            }
            printf("}\n");
        }
        free(jc.text);
    } else {
        fwrite(prompt, 1, plen, stdout);
        stream_ctx sc = {.stop = stop_str, .stop_len = stop_str ? strlen(stop_str) : 0, .tok = tok};
        if (fg_generate(s, ids, n, &so, out, so.max_new_tokens + 1, print_token, &sc) < 0)
            rc = cli_fail("generate", fg_last_error(), NULL);
        printf("\n");
    }
    fg_infer_free(s);
    free(out); free(ids); free(prompt_buf);
    cli_weights_close(&cw);
    return rc;
}
