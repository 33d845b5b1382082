// tokload.c: builds a tokenizer from a Hugging Face tokenizer.json (via fg_json) or from the
// tokenizer.ggml.* metadata of a GGUF file (via formats/gguf.h). Every unsupported feature is
// an error naming it; nothing is silently ignored that would change the ids produced.
#include "formats/gguf.h"
#include "formats/json.h"
#include "tokenizer/bpe.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A JSON string value quoted for a one-line error (static buffer per call site is not
// thread-safe, so callers pass their own).
#define QS(buf, v) ((v) && (v)->type == FG_JSON_STRING ? fg_quote(buf, sizeof buf, (v)->str, (v)->len) : "?")

static int json_id(const fg_json *v, int32_t *out) {
    if (!v || v->type != FG_JSON_NUMBER || !(v->num >= 0) || v->num > 2147483647.0 || v->num != floor(v->num)) return -1;
    *out = (int32_t)v->num;
    return 0;
}
static int json_is(const fg_json *v, const char *s) { return v && v->type == FG_JSON_STRING && !strcmp(v->str, s); }
static int json_true(const fg_json *o, const char *k) { const fg_json *v = fg_json_get(o, k); return v && v->type == FG_JSON_BOOL && v->boolean; }

static int add_pretok(fg_pretok *p, const fg_json *pt, const char *where, int depth) {
    const fg_json *ty = fg_json_get(pt, "type");
    if (!ty || ty->type != FG_JSON_STRING)
        return fg_set_error("%s:%d: pre_tokenizer: missing \"type\"", where, pt->line);
    if (!strcmp(ty->str, "Sequence") && depth == 0) {
        const fg_json *list = fg_json_get(pt, "pretokenizers");
        if (!list || list->type != FG_JSON_ARRAY) return fg_set_error("%s:%d: pre_tokenizer Sequence: \"pretokenizers\" must be an array", where, pt->line);
        for (const fg_json *c = list->child; c; c = c->next)
            if (c->type != FG_JSON_OBJECT || add_pretok(p, c, where, depth + 1)) return c->type != FG_JSON_OBJECT ?
                fg_set_error("%s:%d: pre_tokenizer Sequence: each entry must be an object", where, c->line) : -1;
        return 0;
    }
    if (!strcmp(ty->str, "Split")) {
        const fg_json *pat = fg_json_get(pt, "pattern"), *beh = fg_json_get(pt, "behavior");
        const fg_json *rx = pat ? fg_json_get(pat, "Regex") : NULL;
        if (!rx || rx->type != FG_JSON_STRING)
            return fg_set_error("%s:%d: pre_tokenizer Split: only {\"Regex\": ...} patterns are supported", where, pt->line);
        char q[80];
        if (!json_is(beh, "Isolated"))
            return fg_set_error("%s:%d: pre_tokenizer Split: behavior \"%s\" is not supported (only \"Isolated\")", where,
                                pt->line, QS(q, beh));
        if (json_true(pt, "invert")) return fg_set_error("%s:%d: pre_tokenizer Split: invert=true is not supported", where, pt->line);
        if (fg_pretok_add_split(p, rx->str, rx->len)) return fg_wrap_error("%s:%d", where, rx->line);
        return 0;
    }
    if (!strcmp(ty->str, "ByteLevel")) {
        if (json_true(pt, "add_prefix_space"))
            return fg_set_error("%s:%d: pre_tokenizer ByteLevel: add_prefix_space=true is not supported", where, pt->line);
        const fg_json *ur = fg_json_get(pt, "use_regex");
        if (!ur || (ur->type == FG_JSON_BOOL && ur->boolean)) return fg_pretok_add_gpt2(p);
        return 0;
    }
    if (!strcmp(ty->str, "Digits")) return fg_pretok_add_digits(p, json_true(pt, "individual_digits"));
    char q[80];
    return fg_set_error("%s:%d: unknown pre_tokenizer type \"%s\" (supported: Sequence, Split, ByteLevel, Digits)",
                        where, ty->line, QS(q, ty));
}

static fg_tokenizer *from_json_tree(const fg_json *root, const char *where) {
    if (root->type != FG_JSON_OBJECT) { fg_set_error("%s: tokenizer.json must be an object", where); return NULL; }
    const fg_json *model = fg_json_get(root, "model");
    if (!model || model->type != FG_JSON_OBJECT) { fg_set_error("%s: missing \"model\" object", where); return NULL; }
    const fg_json *mt = fg_json_get(model, "type");
    if (mt && !json_is(mt, "BPE")) {
        char q[80];
        fg_set_error("%s:%d: model type \"%s\" is not supported (only \"BPE\")", where, mt->line,
                     mt->type == FG_JSON_STRING ? QS(q, mt) : fg_json_type_name(mt->type));
        return NULL;
    }
    static const char *unsupported[] = {"continuing_subword_prefix", "end_of_word_suffix", "dropout"};
    for (int k = 0; k < 3; k++) {
        const fg_json *v = fg_json_get(model, unsupported[k]);
        if (v && v->type != FG_JSON_NULL && !(v->type == FG_JSON_STRING && v->len == 0)) {
            fg_set_error("%s:%d: model.%s is not supported", where, v->line, unsupported[k]);
            return NULL;
        }
    }
    if (json_true(model, "byte_fallback")) { fg_set_error("%s: model.byte_fallback=true is not supported", where); return NULL; }
    const fg_json *vocab = fg_json_get(model, "vocab"), *merges = fg_json_get(model, "merges");
    if (!vocab || vocab->type != FG_JSON_OBJECT) { fg_set_error("%s: model.vocab must be an object", where); return NULL; }
    if (!merges || merges->type != FG_JSON_ARRAY) { fg_set_error("%s: model.merges must be an array", where); return NULL; }
    const fg_json *added = fg_json_get(root, "added_tokens");
    if (added && added->type != FG_JSON_ARRAY && added->type != FG_JSON_NULL) { fg_set_error("%s: added_tokens must be an array", where); return NULL; }
    const fg_json *norm = fg_json_get(root, "normalizer");
    if (norm && norm->type != FG_JSON_NULL) {
        const fg_json *nt = fg_json_get(norm, "type"), *nl = fg_json_get(norm, "normalizers");
        if (!json_is(nt, "Sequence") || !nl || nl->type != FG_JSON_ARRAY || nl->n != 0) {
            char q[80];
            fg_set_error("%s:%d: normalizer \"%s\" is not supported (only none or an empty Sequence)", where, norm->line, QS(q, nt));
            return NULL;
        }
    }
    const fg_json *dec = fg_json_get(root, "decoder");
    if (dec && dec->type != FG_JSON_NULL && !json_is(fg_json_get(dec, "type"), "ByteLevel")) {
        const fg_json *dt = fg_json_get(dec, "type");
        char q[80];
        fg_set_error("%s:%d: decoder \"%s\" is not supported (only ByteLevel)", where, dec->line, QS(q, dt));
        return NULL;
    }
    // Vocabulary size: largest id + 1 over vocab and added tokens.
    int32_t maxid = -1, id;
    for (const fg_json *v = vocab->child; v; v = v->next) {
        char q[80];
        if (json_id(v, &id)) { fg_set_error("%s:%d: model.vocab[\"%s\"]: id must be an integer in [0, 2^31)", where, v->line, fg_quote(q, sizeof q, v->key, v->key_len)); return NULL; }
        if (id > maxid) maxid = id;
    }
    for (const fg_json *a = added && added->type == FG_JSON_ARRAY ? added->child : NULL; a; a = a->next) {
        if (json_id(fg_json_get(a, "id"), &id)) { fg_set_error("%s:%d: added_tokens: \"id\" must be an integer in [0, 2^31)", where, a->line); return NULL; }
        if (id > maxid) maxid = id;
    }
    if (maxid < 0) { fg_set_error("%s: empty vocabulary", where); return NULL; }
    if (maxid >= (1 << 26)) { fg_set_error("%s: token id %d is too large (at most 2^26)", where, maxid); return NULL; }
    fg_tokenizer *t = fg_tok_new(maxid + 1, where);
    if (!t) return NULL;
    for (const fg_json *v = vocab->child; v; v = v->next) {
        json_id(v, &id);
        if (fg_tok_set_token(t, id, v->key, v->key_len)) goto fail;
    }
    for (const fg_json *a = added && added->type == FG_JSON_ARRAY ? added->child : NULL; a; a = a->next) {
        const fg_json *c = fg_json_get(a, "content");
        if (!c || c->type != FG_JSON_STRING) { fg_set_error("%s:%d: added_tokens: \"content\" must be a string", where, a->line); goto fail; }
        static const char *flags[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++)
            if (json_true(a, flags[k])) { char q[80]; fg_set_error("%s:%d: added token \"%s\": %s=true is not supported", where, a->line, QS(q, c), flags[k]); goto fail; }
        json_id(fg_json_get(a, "id"), &id);
        if (fg_tok_add_added(t, id, c->str, c->len, json_true(a, "special"))) goto fail;
    }
    int32_t rank = 0;
    for (const fg_json *m = merges->child; m; m = m->next, rank++) {
        if (m->type == FG_JSON_STRING) {
            const char *sp = memchr(m->str, ' ', m->len);
            if (!sp || memchr(sp + 1, ' ', m->len - (size_t)(sp + 1 - m->str))) {
                char q[80];
                fg_set_error("%s:%d: merge %d \"%s\" must be two tokens separated by one space", where, m->line, rank, QS(q, m));
                goto fail;
            }
            if (fg_tok_add_merge(t, m->str, (size_t)(sp - m->str), sp + 1, m->len - (size_t)(sp + 1 - m->str), rank)) goto fail;
        } else if (m->type == FG_JSON_ARRAY && m->n == 2 && m->child->type == FG_JSON_STRING && m->child->next->type == FG_JSON_STRING) {
            if (fg_tok_add_merge(t, m->child->str, m->child->len, m->child->next->str, m->child->next->len, rank)) goto fail;
        } else {
            fg_set_error("%s:%d: merge %d must be \"a b\" or [\"a\", \"b\"]", where, m->line, rank);
            goto fail;
        }
    }
    fg_tok_set_ignore_merges(t, json_true(model, "ignore_merges"));
    const fg_json *pt = fg_json_get(root, "pre_tokenizer");
    if (pt && pt->type == FG_JSON_OBJECT) { if (add_pretok(fg_tok_pretok(t), pt, where, 0)) goto fail; }
    else if (pt && pt->type != FG_JSON_NULL) { fg_set_error("%s:%d: pre_tokenizer must be an object or null", where, pt->line); goto fail; }
    if (fg_tok_finish(t)) goto fail;
    return t;
fail:
    fg_tokenizer_free(t);
    return NULL;
}

fg_tokenizer *fg_tok_from_json(const char *text, size_t len, const char *where) {
    fg_json *root = fg_json_parse(text, len, where);
    if (!root) return NULL;
    fg_tokenizer *t = from_json_tree(root, where);
    fg_json_free(root);
    return t;
}

fg_tokenizer *fg_tok_from_gguf(const char *data, size_t len, const char *where) {
    fg_gguf *g = fg_gguf_parse((const uint8_t *)data, len, where);
    if (!g) return NULL;
    fg_tokenizer *t = NULL;
    fg_gguf_str *toks = NULL, *merges = NULL;
    fg_gguf_str model, pre;
    if (fg_gguf_get_str(g, "tokenizer.ggml.model", &model)) goto done;
    if (model.len != 4 || memcmp(model.s, "gpt2", 4)) {
        char q[80];
        fg_set_error("%s: tokenizer.ggml.model \"%s\" is not supported (only \"gpt2\", byte-level BPE)", where, fg_quote(q, sizeof q, model.s, model.len));
        goto done;
    }
    const fg_gguf_kv *kt = fg_gguf_find(g, "tokenizer.ggml.tokens"), *km = fg_gguf_find(g, "tokenizer.ggml.merges");
    const fg_gguf_kv *ky = fg_gguf_find(g, "tokenizer.ggml.token_type");
    if (!kt || !km) { fg_set_error("%s: GGUF key 'tokenizer.ggml.%s' is missing", where, kt ? "merges" : "tokens"); goto done; }
    if (!(toks = fg_gguf_str_array(g, kt)) || !(merges = fg_gguf_str_array(g, km))) goto done;
    if (kt->n == 0 || kt->n > (1u << 26)) { fg_set_error("%s: tokenizer.ggml.tokens: %llu tokens (need 1 .. 2^26)", where, (unsigned long long)kt->n); goto done; }
    if (ky && (ky->type != FG_GGUF_ARRAY || ky->n != kt->n || (ky->elem_type != FG_GGUF_I32 && ky->elem_type != FG_GGUF_U32))) {
        fg_set_error("%s: tokenizer.ggml.token_type must be an i32 array with one entry per token", where);
        goto done;
    }
    if (fg_gguf_get_str(g, "tokenizer.ggml.pre", &pre)) goto done;
    if (!(t = fg_tok_new((int32_t)kt->n, where))) goto done;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)FG_MIN(pre.len, 60), pre.s);
    if (fg_pretok_add_named(fg_tok_pretok(t), name)) { fg_wrap_error("%s: tokenizer.ggml.pre", where); goto fail; }
    for (uint64_t i = 0; i < kt->n; i++) {
        int64_t ty = ky ? fg_gguf_int_at(ky, i) : 1;
        // llama.cpp token types: 3 control, 4 user-defined: the Hugging Face added tokens.
        int rc = (ty == 3 || ty == 4) ? fg_tok_add_added(t, (int32_t)i, toks[i].s, toks[i].len, ty == 3)
                                      : fg_tok_set_token(t, (int32_t)i, toks[i].s, toks[i].len);
        if (rc) goto fail;
    }
    for (uint64_t i = 0; i < km->n; i++) {
        const char *s = merges[i].s, *sp = memchr(s, ' ', merges[i].len);
        if (!sp || i > INT32_MAX) { fg_set_error("%s: tokenizer.ggml.merges[%llu] must be two tokens separated by a space", where, (unsigned long long)i); goto fail; }
        if (fg_tok_add_merge(t, s, (size_t)(sp - s), sp + 1, merges[i].len - (size_t)(sp + 1 - s), (int32_t)i)) goto fail;
    }
    if (fg_tok_finish(t)) goto fail;
    goto done;
fail:
    fg_tokenizer_free(t);
    t = NULL;
done:
    free(toks); free(merges);
    fg_gguf_free(g);
    return t;
}

fg_tokenizer *fg_tokenizer_load_mem(const char *data, size_t len, const char *where) {
    if (len >= 4 && !memcmp(data, "GGUF", 4)) return fg_tok_from_gguf(data, len, where);
    return fg_tok_from_json(data, len, where);
}

fg_tokenizer *fg_tokenizer_load(const char *path) {
    size_t len;
    char *data = fg_read_file(path, &len);
    if (!data) return NULL;
    fg_tokenizer *t = fg_tokenizer_load_mem(data, len, path);
    free(data);
    return t;
}
