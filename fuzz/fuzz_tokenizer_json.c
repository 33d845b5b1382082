// fuzz_tokenizer_json.c: libFuzzer target for the tokenizer.json loader and the encoder.
// An input that loads must encode its own bytes (with and without added tokens) and every
// id must decode; an input that fails must leave a one-line error naming the source.
#include "frugal.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fg_tokenizer *t = fg_tokenizer_load_mem((const char *)data, size, "fuzz");
    if (!t) {
        if (strncmp(fg_last_error(), "fuzz", 4) || strchr(fg_last_error(), '\n')) abort();
        return 0;
    }
    for (int special = 0; special < 2; special++) {
        size_t n = fg_tokenizer_encode(t, (const char *)data, size, special, NULL, 0);
        if (n == SIZE_MAX) abort();
        int32_t *ids = malloc((n + 1) * sizeof *ids);
        if (fg_tokenizer_encode(t, (const char *)data, size, special, ids, n) != n) abort();
        size_t total = 0;
        char buf[64];
        for (size_t i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= fg_tokenizer_vocab_size(t)) abort();
            total += fg_tokenizer_decode(t, ids[i], buf, sizeof buf);
        }
        if (!special && total != size) abort(); // byte round trip: lengths must agree
        free(ids);
    }
    fg_tokenizer_free(t);
    return 0;
}
