// sft.c: supervised fine-tuning on prompt/completion pairs (fg_train_sft, `frugal train --sft`),
// the second half of sequence-level distillation: the student learns the verified teacher samples
// that fg_distill_generate wrote, on completion tokens only.
//
// Each example is one row from position 0: prompt ids (BOS first) then completion ids (ending in
// EOS), inputs padded past the end; targets are -1 for every position whose next token is still
// prompt, so the loss (which ignores -1) covers exactly the completion. Rows longer than T are cut.
// Batches are drawn with replacement by a hash of (seed, micro-batch index, row), so a resume
// continues the same sequence. Validation uses a held-out share of the examples chosen by a hash of
// their ids. When PATH.stats.json (written by fg_distill_generate) exists, its teacher FLOPs go into
// the run's ledger. Not done here: chat templates (fg_data_prepare --sft covers chat JSONL).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "distill/distill.h"
#include "formats/json.h"
#include "model/model.h"
#include "train/train.h"
#include "util.h"

typedef struct { int32_t *ids; int n, prompt; } sft_ex;
typedef struct { sft_ex *train, *val; int n_train, n_val; uint64_t seed; int32_t pad; } sft_set;

static int ids_from_json(const fg_json *a, int32_t **out, int *n, int V) {
    if (!a || a->type != FG_JSON_ARRAY) return -1;
    *out = malloc(sizeof(int32_t) * (size_t)(a->n + 1));
    if (!*out) return -1;
    int i = 0;
    for (const fg_json *e = a->child; e; e = e->next, i++) {
        if (e->type != FG_JSON_NUMBER || e->num < 0 || e->num >= V || e->num != (int32_t)e->num) { free(*out); *out = NULL; return -2; }
        (*out)[i] = (int32_t)e->num;
    }
    *n = i;
    return 0;
}

static int32_t *encode(const fg_tokenizer *tok, const char *s, size_t len, int *n) {
    size_t need = tok ? fg_tokenizer_encode(tok, s, len, 0, NULL, 0) : fg_bytetok_encode(s, len, 0, NULL, 0);
    int32_t *ids = malloc(sizeof(int32_t) * (need + 1));
    if (!ids) return NULL;
    if (tok) fg_tokenizer_encode(tok, s, len, 0, ids, need); else fg_bytetok_encode(s, len, 0, ids, need);
    *n = (int)need;
    return ids;
}

static void free_set(sft_set *s) {
    for (int i = 0; i < s->n_train; i++) free(s->train[i].ids);
    for (int i = 0; i < s->n_val; i++) free(s->val[i].ids);
    free(s->train); free(s->val);
    memset(s, 0, sizeof *s);
}

static int load_set(sft_set *set, const char *path, const fg_tokenizer *tok, int V, double val_fraction) {
    memset(set, 0, sizeof *set);
    size_t len;
    char *text = fg_read_file(path, &len);
    if (!text) return -1;
    int32_t bos = tok ? fg_tokenizer_token_id(tok, FG_DS_BOS) : FG_TOK_BOS, eos = tok ? fg_tokenizer_token_id(tok, FG_DS_EOS) : FG_TOK_EOS;
    set->pad = tok ? eos : FG_TOK_PAD;
    int cap_t = 0, cap_v = 0, line = 0, rc = 0;
    size_t l;
    for (char *at = text, *s; !rc && (s = fg_next_line(&at, text + len, &l));) {
        line++;
        if (!l) continue;
        fg_json *j = fg_json_parse(s, l, path);
        if (!j) { rc = -1; break; }
        int32_t *p = NULL, *c = NULL;
        int np = 0, nc = 0, r1 = ids_from_json(fg_json_get(j, "prompt_ids"), &p, &np, V);
        int r2 = ids_from_json(fg_json_get(j, "completion_ids"), &c, &nc, V);
        if (r1 == -2 || r2 == -2) rc = fg_set_error("%s:%d: a token id is not an integer in [0, %d)", path, line, V);
        else if (r1 || r2) {
            free(p); free(c); p = c = NULL;
            const fg_json *pt = fg_json_get(j, "prompt"), *ct = fg_json_get(j, "completion");
            if (!pt || pt->type != FG_JSON_STRING || !ct || ct->type != FG_JSON_STRING)
                rc = fg_set_error("%s:%d: expected {\"prompt\": \"...\", \"completion\": \"...\"} or prompt_ids/completion_ids arrays",
                                  path, line);
            else {
                int32_t *pp = encode(tok, pt->str, pt->len, &np), *cc = encode(tok, ct->str, ct->len, &nc);
                p = pp ? malloc(sizeof(int32_t) * (size_t)(np + 1)) : NULL;
                c = cc ? malloc(sizeof(int32_t) * (size_t)(nc + 1)) : NULL;
                if (p) { p[0] = bos; memcpy(p + 1, pp, sizeof(int32_t) * np); np++; }
                if (c) { memcpy(c, cc, sizeof(int32_t) * nc); c[nc++] = eos; }
                free(pp); free(cc);
                if (!p || !c) rc = fg_set_error("out of memory");
            }
        }
        fg_json_free(j);
        if (!rc && (np < 1 || nc < 1)) rc = fg_set_error("%s:%d: an empty prompt or completion", path, line);
        if (rc) { free(p); free(c); break; }
        sft_ex ex = {malloc(sizeof(int32_t) * (size_t)(np + nc)), np + nc, np};
        if (!ex.ids) { free(p); free(c); rc = fg_set_error("out of memory"); break; }
        memcpy(ex.ids, p, sizeof(int32_t) * np); memcpy(ex.ids + np, c, sizeof(int32_t) * nc);
        free(p); free(c);
        uint64_t h = fg_fnv64(FG_FNV_OFFSET, ex.ids, sizeof(int32_t) * ex.n);
        int to_val = (double)(h >> 11) / 9007199254740992.0 < val_fraction;
        sft_ex **arr = to_val ? &set->val : &set->train;
        int *n = to_val ? &set->n_val : &set->n_train, *cap = to_val ? &cap_v : &cap_t;
        if (*n == *cap) {
            *cap = *cap ? 2 * *cap : 64;
            sft_ex *q = realloc(*arr, sizeof(sft_ex) * *cap);
            if (!q) { free(ex.ids); rc = fg_set_error("out of memory"); break; }
            *arr = q;
        }
        (*arr)[(*n)++] = ex;
    }
    free(text);
    if (!rc && set->n_train == 0) {
        if (set->n_val) { set->train = set->val; set->n_train = set->n_val; set->val = NULL; set->n_val = 0; }
        else rc = fg_set_error("%s: no examples (hint: the file is empty; frugal distill generate writes one line per accepted sample)", path);
    }
    if (rc) free_set(set);
    return rc;
}

static void put_row(const sft_ex *ex, int32_t pad, int32_t *in, int32_t *tg, int T) {
    for (int t = 0; t < T; t++) {
        in[t] = t < ex->n ? ex->ids[t] : pad;
        tg[t] = t + 1 < ex->n && t + 1 >= ex->prompt ? ex->ids[t + 1] : -1;
    }
}

static int sft_batch(void *ctx, int64_t index, int32_t *in, int32_t *tg, int B, int T) {
    sft_set *s = ctx;
    if (index < 0) {
        if (!s->n_val) return 1;
        int64_t i = -1 - index;
        for (int b = 0; b < B; b++) put_row(&s->val[(i * B + b) % s->n_val], s->pad, in + (size_t)b * T, tg + (size_t)b * T, T);
        return 0;
    }
    for (int b = 0; b < B; b++) {
        uint64_t key[2] = {(uint64_t)index, (uint64_t)b};
        uint64_t h = fg_fnv64(FG_FNV_OFFSET ^ s->seed, key, sizeof key);
        put_row(&s->train[h % (uint64_t)s->n_train], s->pad, in + (size_t)b * T, tg + (size_t)b * T, T);
    }
    return 0;
}

int fg_train_sft(fg_model *m, fg_adamw *opt, fg_train_state *st, const fg_train_opts *o_in, const char *path) {
    if (o_in->n_data || o_in->shards) return fg_set_error("--sft takes its examples from the SFT file: drop data files and --shards");
    fg_tokenizer *tok = NULL;
    if (st->tokenizer_data && !(tok = fg_tokenizer_load_mem(st->tokenizer_data, st->tokenizer_len, "the checkpoint's tokenizer")))
        return -1;
    sft_set set;
    int rc = load_set(&set, path, tok, m->cfg.vocab_size, o_in->val_fraction);
    fg_tokenizer_free(tok);
    if (rc) return -1;
    fg_train_opts o = *o_in;
    set.seed = o.seed;
    // the bill: what generating the examples cost the teacher (fg_distill_generate's statistics)
    char sp[1100];
    snprintf(sp, sizeof sp, "%s.stats.json", path);
    size_t sl;
    char *stats = access(sp, R_OK) == 0 ? fg_read_file(sp, &sl) : NULL;
    fg_json *sj = stats ? fg_json_parse(stats, sl, sp) : NULL;
    const fg_json *tf = sj ? fg_json_get(sj, "teacher_flops") : NULL;
    if (tf && tf->type == FG_JSON_NUMBER && tf->num >= 0) o.teacher_flops_base = tf->num;
    fg_json_free(sj);
    free(stats);
    o.batch_fn = sft_batch;
    o.hook_ctx = &set;
    rc = fg_train(m, opt, st, &o);
    free_set(&set);
    return rc;
}
