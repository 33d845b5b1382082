// cmd_chat.c: `frugal chat`: an interactive terminal chat with a checkpoint. Turns are rendered in
// the model's chat layout (frugal's own for byte-level models, DeepSeek-V3's for checkpoints that
// carry a BPE tokenizer; docs/tokenizer.md) and fed
// incrementally: the KV cache keeps the whole conversation, so a new turn costs only its own
// tokens. Tokens stream as they are sampled; a <think> block is shown dimmed on a terminal.
// Commands: /reset (forget the conversation), /help, /exit (or end of input). A line is one
// message whatever its length; one that cannot fit the context even after /reset is refused once
// with its token count, and a NUL byte (not text) is reported, never silently cut.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"

// The text codec of the conversation: the byte tokenizer, or the checkpoint's BPE tokenizer.
typedef struct {
    const fg_tokenizer *tok;     // NULL: byte-level
    int32_t eos, think, end_think;
} codec;

typedef struct {
    const codec *cd;
    int tty, in_think;
} chat_view;

static int show_token(int32_t id, void *ctx) {
    chat_view *v = ctx;
    const codec *cd = v->cd;
    if (id == cd->eos) return 0; // the end of the reply: not printed
    if (id == cd->think) { v->in_think = 1; if (v->tty) fputs("\033[2m", stdout); }
    char buf[256];
    size_t n = cd->tok ? fg_tokenizer_decode(cd->tok, id, buf, sizeof buf) : fg_bytetok_decode(id, buf);
    fwrite(buf, 1, n < sizeof buf ? n : sizeof buf, stdout);
    if (id == cd->end_think) { v->in_think = 0; if (v->tty) fputs("\033[0m", stdout); }
    fflush(stdout);
    return 0;
}

// Encodes a rendered piece of the conversation (special strings become their ids).
static int32_t *encode(const codec *cd, const char *text, int *n) {
    size_t len = strlen(text);
    size_t need = cd->tok ? fg_tokenizer_encode(cd->tok, text, len, 1, NULL, 0) : fg_bytetok_encode(text, len, 1, NULL, 0);
    if (need == SIZE_MAX) return NULL;
    int32_t *ids = malloc(sizeof(int32_t) * (need + 1));
    if (ids) {
        if (cd->tok) fg_tokenizer_encode(cd->tok, text, len, 1, ids, need);
        else fg_bytetok_encode(text, len, 1, ids, need);
    }
    *n = (int)need;
    return ids;
}


int cmd_chat(int argc, char **argv) {
    const char *ckpt = NULL, *system = NULL, *weights_s = NULL, *kv_s = "f32";
    fg_sample_opts so = {.temperature = 0.7f, .top_p = 0.95f, .seed = 1, .max_new_tokens = 512, .repetition_penalty = 1.0f};
    int threads = 0;
    cli_opt opts[] = {
        {"ckpt", OPT_STR, &ckpt, "checkpoint or quantised model (.fgq) to chat with (required)"},
        {"system", OPT_STR, &system, "system prompt"},
        {"temperature", OPT_FLOAT, &so.temperature, "sampling temperature (0 = greedy)", "[0,inf)"},
        {"top-k", OPT_INT, &so.top_k, "keep the k most likely tokens (0 = all)", "[0,inf)"},
        {"top-p", OPT_FLOAT, &so.top_p, "nucleus sampling threshold (1 = off)", "(0,1]"},
        {"min-p", OPT_FLOAT, &so.min_p, "drop tokens below min-p times the best one's probability", "[0,1]"},
        {"max-tokens", OPT_INT, &so.max_new_tokens, "maximum tokens per reply", "[1,inf)"},
        {"seed", OPT_U64, &so.seed, "sampling seed"},
        {"speculative", OPT_INT, &so.speculative, "draft up to N tokens per step with the model's MTP depths (0 = off)", "[0,4]"},
        {"weights", OPT_STR, &weights_s, "weight format for a checkpoint: f32 (default), bf16 or q8_0 (converted at load); a quantised model runs as stored"},
        {"kv-type", OPT_STR, &kv_s, "KV cache values: f32, bf16 or q8_0 (32-value blocks with an fp16 scale, 1.06 bytes per value)"},
        {"threads", OPT_INT, &threads, "OpenMP threads (0 = all cores)"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("chat", "--ckpt PATH [options]   (then type; /reset, /help, /exit)", opts, argc, argv, NULL, 0, NULL);
    if (r) return r < 0 ? 1 : 0;
    cli_set_threads(threads);
    if (!ckpt) return cli_fail("chat", "--ckpt is required", "frugal chat --ckpt runs/demo/ckpt.fgck");
    int kv_type = cli_kv_type("chat", kv_s);
    if (kv_type < 0) return 1;
    cli_weights cw;
    if (cli_open_weights("chat", ckpt, weights_s, &cw)) return 1;
    fg_tokenizer *tok = cw.tok;
    codec cd = {tok, FG_TOK_EOS, FG_TOK_THINK, FG_TOK_END_THINK};
    if (tok) {
        cd.eos = fg_tokenizer_token_id(tok, FG_DS_EOS);
        cd.think = fg_tokenizer_token_id(tok, "<think>");
        cd.end_think = fg_tokenizer_token_id(tok, "</think>");
        if (cd.eos < 0 || fg_tokenizer_token_id(tok, FG_DS_USER) < 0 || fg_tokenizer_token_id(tok, FG_DS_ASSISTANT) < 0) {
            cli_weights_close(&cw);
            return cli_fail("chat", "the checkpoint's tokenizer lacks DeepSeek's chat tokens", "chat needs <｜User｜>, <｜Assistant｜> and <｜end▁of▁sentence｜>");
        }
    }
    int max_T = fg_wstore_config(cw.ws)->max_position_embeddings;
    fg_infer *s = fg_infer_create_store(cw.ws, max_T, FG_KV_AUTO, kv_type);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(so.max_new_tokens + 1));
    if (!s || !out) { free(out); fg_infer_free(s); cli_weights_close(&cw); return cli_fail("chat", fg_last_error(), NULL); }
    int32_t stop = cd.eos;
    so.stop_ids = &stop; so.n_stop = 1;
    int max_reply = so.max_new_tokens;
    chat_view view = {.cd = &cd, .tty = isatty(1)};
    int32_t pending[2]; // tokens the cache still needs before the next turn: the reply's last
    int npend = 0;      // token (fg_generate does not feed it) and, for a cut reply, its <|eos|>
    int turn = 0, rc = 0;
    char *line = NULL;
    size_t line_cap = 0;
    if (view.tty) printf("frugal chat: %s (context %d tokens). /help lists the commands.\n", ckpt, max_T);
    for (;;) {
        if (view.tty) { printf("\n> "); fflush(stdout); }
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) break;
        size_t len = (size_t)got;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (strlen(line) != len) {
            printf("(message not sent: it holds a NUL byte at offset %zu; chat takes text)\n", strlen(line));
            continue;
        }
        if (!strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) { fg_infer_reset(s); turn = 0; npend = 0; printf("(conversation reset)\n"); continue; }
        if (!strcmp(line, "/help")) {
            printf("commands: /reset forgets the conversation, /exit quits (so does end of input), /help shows this.\n"
                   "context: %d of %d tokens used; replies up to %d tokens.\n", fg_infer_pos(s), max_T, max_reply);
            continue;
        }
        if (line[0] == '/' && line[1] && !strchr(line, ' ')) {
            printf("(unknown command %s: /help lists the commands)\n", line);
            continue;
        }
        if (!line[0]) continue;
        // The new turn, rendered in the model's layout: the opening (first turn) and the user
        // message, then the assistant opener; the previous reply's end token is pending.
        size_t cap = strlen(line) + (system ? strlen(system) : 0) + 128;
        char *text = malloc(cap);
        if (tok) // DeepSeek-V3: <｜begin▁of▁sentence｜>{system}<｜User｜>{msg}<｜Assistant｜>
            snprintf(text, cap, "%s%s" FG_DS_USER "%s" FG_DS_ASSISTANT, turn == 0 ? FG_DS_BOS : "",
                     turn == 0 && system ? system : "", line);
        else // frugal's own layout
            snprintf(text, cap, "%s%s%s%s<|user|>%s<|eos|>\n<|assistant|>", turn == 0 ? "<|bos|>" : "\n",
                     turn == 0 && system ? "<|system|>" : "", turn == 0 && system ? system : "",
                     turn == 0 && system ? "<|eos|>\n" : "", line);
        int n;
        int32_t *ids = encode(&cd, text, &n);
        free(text);
        if (!ids) { rc = cli_fail("chat", "out of memory encoding the turn", NULL); break; }
        int32_t *feed = malloc(sizeof(int32_t) * (size_t)(n + 2));
        int nf = 0;
        for (int i = 0; i < npend; i++) feed[nf++] = pending[i];
        memcpy(feed + nf, ids, sizeof(int32_t) * n);
        nf += n;
        free(ids);
        if (n + 1 >= max_T) { // too long for any conversation: /reset cannot help
            printf("(message not sent: it is %d tokens, the context holds %d; shorten it)\n", n, max_T);
            free(feed);
            continue;
        }
        if (fg_infer_pos(s) + nf + 1 >= max_T) {
            printf("(context full: %d of %d tokens used and this message needs %d; /reset to start a new conversation)\n",
                   fg_infer_pos(s), max_T, nf);
            free(feed);
            continue;
        }
        so.max_new_tokens = CLI_MIN(max_reply, max_T - fg_infer_pos(s) - nf);
        view.in_think = 0;
        int ng = fg_generate(s, feed, nf, &so, out, so.max_new_tokens + 1, show_token, &view);
        free(feed);
        if (view.in_think && view.tty) fputs("\033[0m", stdout);
        printf("\n");
        if (ng < 0) { rc = cli_fail("chat", fg_last_error(), NULL); break; }
        npend = 0;
        if (ng > 0) pending[npend++] = out[ng - 1];
        if (ng == 0 || out[ng - 1] != cd.eos) { // cut by --max-tokens or the context: close it
            pending[npend++] = cd.eos;
            printf("(reply cut at %d tokens)\n", ng);
        }
        turn++;
    }
    free(line);
    free(out);
    fg_infer_free(s);
    cli_weights_close(&cw);
    return rc;
}
