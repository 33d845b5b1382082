// fuzz_json.c: libFuzzer target for fg_json_parse and fg_json_write_string.
// Properties checked beyond "no crash, no sanitizer report":
//   - a failed parse leaves a "<where>:<line>:<col>: ..." message;
//   - a parsed tree, written back out (strings with fg_json_write_string, numbers with %.17g),
//     parses again to the same tree (types, numbers bit for bit, strings and keys byte for byte);
//   - fg_json_write_string of the raw input always yields a valid JSON string;
//   - fg_json_dup_key names a member whose key an earlier member has.
#include "formats/json.h"
#include "util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void emit(FILE *f, const fg_json *j) {
    switch (j->type) {
    case FG_JSON_NULL: fputs("null", f); break;
    case FG_JSON_BOOL: fputs(j->boolean ? "true" : "false", f); break;
    case FG_JSON_NUMBER: fprintf(f, "%.17g", j->num); break;
    case FG_JSON_STRING: fg_json_write_string(f, j->str, j->len); break;
    case FG_JSON_ARRAY:
    case FG_JSON_OBJECT:
        fputc(j->type == FG_JSON_ARRAY ? '[' : '{', f);
        for (const fg_json *c = j->child; c; c = c->next) {
            if (c != j->child) fputc(',', f);
            if (j->type == FG_JSON_OBJECT) { fg_json_write_string(f, c->key, c->key_len); fputc(':', f); }
            emit(f, c);
        }
        fputc(j->type == FG_JSON_ARRAY ? ']' : '}', f);
        break;
    }
}

static int same(const fg_json *a, const fg_json *b) {
    if (a->type != b->type || a->n != b->n) return 0;
    if ((a->key == NULL) != (b->key == NULL)) return 0;
    if (a->key && (a->key_len != b->key_len || memcmp(a->key, b->key, a->key_len))) return 0;
    switch (a->type) {
    case FG_JSON_BOOL: return a->boolean == b->boolean;
    case FG_JSON_NUMBER: return !memcmp(&a->num, &b->num, sizeof a->num);
    case FG_JSON_STRING: return a->len == b->len && !memcmp(a->str, b->str, a->len) && !a->str[a->len];
    case FG_JSON_ARRAY:
    case FG_JSON_OBJECT: {
        const fg_json *x = a->child, *y = b->child;
        int n = 0;
        for (; x && y; x = x->next, y = y->next, n++)
            if (!same(x, y)) return 0;
        return !x && !y && n == a->n;
    }
    default: return 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fg_json *j = fg_json_parse((const char *)data, size, "fuzz");
    char *out = NULL;
    size_t olen = 0;
    if (!j) {
        if (strncmp(fg_last_error(), "fuzz:", 5)) abort();
    } else {
        FILE *m = open_memstream(&out, &olen);
        if (!m) abort();
        emit(m, j);
        fclose(m);
        fg_json *k = fg_json_parse(out, olen, "reparse");
        if (!k || !same(j, k)) {
            fprintf(stderr, "round trip failed: %s\n", k ? "trees differ" : fg_last_error());
            abort();
        }
        fg_json_free(k);
        free(out);
        // fg_json_dup_key: a member whose key an earlier member of the same object has
        const fg_json *d = fg_json_dup_key(j);
        if (d) {
            int seen = 0;
            for (const fg_json *c = j->child; c != d; c = c->next) seen |= c->key_len == d->key_len && !memcmp(c->key, d->key, d->key_len);
            if (!seen) abort();
        }
        fg_json_free(j);
    }
    // Any bytes, written as a JSON string, must parse back as one string.
    out = NULL;
    FILE *m = open_memstream(&out, &olen);
    if (!m) abort();
    fg_json_write_string(m, (const char *)data, size);
    fclose(m);
    fg_json *s = fg_json_parse(out, olen, "written");
    if (!s || s->type != FG_JSON_STRING) abort();
    if (fg_utf8_check((const char *)data, size) == size && (s->len != size || memcmp(s->str, data, size))) abort();
    fg_json_free(s);
    free(out);
    return 0;
}
