// test_bytetok.c: byte-level tokenizer: exact round trips, special-token parsing on and off,
// capacity handling, decode of every id.
#include "test.h"
#include "data/bytetok.h"
#include "util.h"

#include <string.h>

// Concatenates the decoded pieces of ids into out; returns the length.
static size_t decode_all(const int32_t *ids, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char piece[FG_BYTETOK_MAX_PIECE];
        size_t m = fg_bytetok_decode(ids[i], piece);
        memcpy(out + k, piece, m);
        k += m;
    }
    return k;
}

int main(void) {
    // Every byte value, alone and all together, with specials parsed and not.
    char all[256];
    int32_t ids[4096];
    char back[8192];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    for (int ps = 0; ps < 2; ps++) {
        size_t n = fg_bytetok_encode(all, 256, ps, ids, 4096);
        CHECK(n == 256);
        for (int i = 0; i < 256; i++) CHECK(ids[i] == i);
        CHECK(decode_all(ids, n, back) == 256 && memcmp(back, all, 256) == 0);
    }
    for (int i = 0; i < 256; i++) {
        char piece[FG_BYTETOK_MAX_PIECE];
        CHECK(fg_bytetok_decode(i, piece) == 1 && (unsigned char)piece[0] == i);
        CHECK(fg_bytetok_special_name(i) == NULL);
    }

    // Specials: names, decode, ids in range.
    const char *names[] = { "<|bos|>", "<|eos|>", "<|pad|>", "<think>", "</think>" };
    for (int32_t id = FG_TOK_BOS; id < FG_BYTE_VOCAB; id++) {
        char piece[FG_BYTETOK_MAX_PIECE];
        CHECK(fg_bytetok_special_name(id) && strcmp(fg_bytetok_special_name(id), names[id - 256]) == 0);
        size_t m = fg_bytetok_decode(id, piece);
        CHECK(m == strlen(names[id - 256]) && strcmp(piece, names[id - 256]) == 0);
        CHECK(m + 1 <= FG_BYTETOK_MAX_PIECE);
        int32_t one[4];
        CHECK(fg_bytetok_encode(names[id - 256], m, 1, one, 4) == 1 && one[0] == id);
        CHECK(fg_bytetok_encode(names[id - 256], m, 0, one, 0) == m);
    }
    CHECK(FG_TOK_BOS == 256 && FG_TOK_EOS == 257 && FG_TOK_PAD == 258 && FG_TOK_THINK == 259 &&
          FG_TOK_END_THINK == 260 && FG_BYTE_VOCAB == 261);
    int32_t bad_ids[] = { -1, FG_BYTE_VOCAB, 1000, INT32_MIN, INT32_MAX };
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        char piece[FG_BYTETOK_MAX_PIECE] = "x";
        CHECK(fg_bytetok_decode(bad_ids[i], piece) == 0 && piece[0] == 0);
        CHECK(fg_bytetok_special_name(bad_ids[i]) == NULL);
    }

    // Special parsing on / off on mixed text, including near misses.
    const char *mix = "a<think>b</think><|eos|><thin<|bos|<|pad|>>";
    int32_t want_on[] = { 'a', FG_TOK_THINK, 'b', FG_TOK_END_THINK, FG_TOK_EOS,
                          '<', 't', 'h', 'i', 'n', '<', '|', 'b', 'o', 's', '|', FG_TOK_PAD, '>' };
    size_t n_on = fg_bytetok_encode(mix, strlen(mix), 1, ids, 4096);
    CHECK(n_on == sizeof want_on / sizeof want_on[0]);
    CHECK(memcmp(ids, want_on, sizeof want_on) == 0);
    CHECK(decode_all(ids, n_on, back) == strlen(mix) && memcmp(back, mix, strlen(mix)) == 0);
    size_t n_off = fg_bytetok_encode(mix, strlen(mix), 0, ids, 4096);
    CHECK(n_off == strlen(mix));
    for (size_t i = 0; i < n_off; i++) CHECK(ids[i] == (unsigned char)mix[i]);
    // A special string cut by the end of the input stays bytes.
    CHECK(fg_bytetok_encode("</think>", 7, 1, ids, 4096) == 7);

    // Capacity: the full count comes back, only cap ids are written.
    for (int i = 0; i < 16; i++) ids[i] = -7;
    CHECK(fg_bytetok_encode(mix, strlen(mix), 1, ids, 3) == n_on);
    CHECK(ids[0] == 'a' && ids[1] == FG_TOK_THINK && ids[2] == 'b' && ids[3] == -7);
    CHECK(fg_bytetok_encode(mix, strlen(mix), 1, NULL, 0) == n_on);
    CHECK(fg_bytetok_encode("", 0, 1, NULL, 0) == 0);

    // Random byte strings round-trip exactly without special parsing; random strings built
    // from special fragments round-trip with it (specials decode back to their names).
    fg_rng r;
    fg_rng_seed(&r, 42);
    const char *frags[] = { "<", "|", ">", "/", "think", "bos", "<|eos|>", "<think>", "</think>", "x", "\xc3\xa9" };
    for (int trial = 0; trial < 2000; trial++) {
        char text[600];
        size_t len = (size_t)fg_rng_below(&r, 300);
        for (size_t i = 0; i < len; i++) text[i] = (char)fg_rng_below(&r, 256);
        size_t n = fg_bytetok_encode(text, len, 0, ids, 4096);
        CHECK(n == len && decode_all(ids, n, back) == len && memcmp(back, text, len) == 0);
        len = 0;
        for (int k = (int)fg_rng_below(&r, 40); k > 0; k--) {
            const char *f = frags[fg_rng_below(&r, sizeof frags / sizeof frags[0])];
            memcpy(text + len, f, strlen(f));
            len += strlen(f);
        }
        n = fg_bytetok_encode(text, len, 1, ids, 4096);
        CHECK(n <= len && decode_all(ids, n, back) == len && memcmp(back, text, len) == 0);
    }
    return TEST_DONE();
}
