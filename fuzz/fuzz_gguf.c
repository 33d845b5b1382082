// fuzz_gguf.c: libFuzzer target for the GGUF metadata reader and the GGUF tokenizer loader.
// Every accepted file's keys, strings and arrays must lie inside the buffer.
#include "formats/gguf.h"
#include "frugal.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fg_gguf *g = fg_gguf_parse(data, size, "fuzz");
    if (!g) {
        if (strncmp(fg_last_error(), "fuzz", 4)) abort();
    } else {
        for (size_t i = 0; i < g->n_kv; i++) {
            const fg_gguf_kv *kv = &g->kv[i];
            if ((const uint8_t *)kv->key.s < data || (const uint8_t *)kv->key.s + kv->key.len > data + size) abort();
            if (kv->type == FG_GGUF_ARRAY && kv->elem_type == FG_GGUF_STRING) {
                fg_gguf_str *a = fg_gguf_str_array(g, kv);
                for (uint64_t k = 0; a && k < kv->n; k++)
                    if ((const uint8_t *)a[k].s < data || (const uint8_t *)a[k].s + a[k].len > data + size) abort();
                free(a);
            }
        }
        fg_gguf_free(g);
    }
    fg_tokenizer *t = fg_tokenizer_load_mem((const char *)data, size, "fuzz");
    if (t) {
        int32_t ids[64];
        fg_tokenizer_encode(t, "Hello world 123 你好", 22, 1, ids, 64);
        fg_tokenizer_free(t);
    }
    return 0;
}
