// bytetok.c: see bytetok.h. Specials are few and short, so encoding just tries each one at every
// '<'; that is O(len * 5 * 8) at worst and nothing needs a trie.
#include "data/bytetok.h"

#include <string.h>

static const char *const special_names[] = {
    "<|bos|>", "<|eos|>", "<|pad|>", "<think>", "</think>",
};
#define N_SPECIAL ((int)(sizeof special_names / sizeof special_names[0]))

const char *fg_bytetok_special_name(int32_t id) {
    if (id < FG_TOK_BOS || id >= FG_TOK_BOS + N_SPECIAL) return NULL;
    return special_names[id - FG_TOK_BOS];
}

// If a special string starts at text[i], returns its id and its length in *n; else -1.
static int32_t match_special(const char *text, size_t len, size_t i, size_t *n) {
    if (text[i] != '<') return -1;
    for (int k = 0; k < N_SPECIAL; k++) {
        size_t m = strlen(special_names[k]);
        if (m <= len - i && memcmp(text + i, special_names[k], m) == 0) { *n = m; return FG_TOK_BOS + k; }
    }
    return -1;
}

size_t fg_bytetok_encode(const char *text, size_t len, int parse_special, int32_t *out, size_t cap) {
    size_t count = 0;
    for (size_t i = 0; i < len;) {
        int32_t id = -1;
        size_t n = 1;
        if (parse_special) id = match_special(text, len, i, &n);
        if (id < 0) { id = (unsigned char)text[i]; n = 1; }
        if (count < cap) out[count] = id;
        count++;
        i += n;
    }
    return count;
}

size_t fg_bytetok_decode(int32_t id, char *buf) {
    if (id >= 0 && id < 256) { buf[0] = (char)id; buf[1] = 0; return 1; }
    const char *name = fg_bytetok_special_name(id);
    if (!name) { buf[0] = 0; return 0; }
    size_t n = strlen(name);
    memcpy(buf, name, n + 1);
    return n;
}
