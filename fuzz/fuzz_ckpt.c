// fuzz_ckpt.c: libFuzzer target for the .fgck checkpoint reader (fg_ckpt_load_mem).
//
// Each input is loaded twice: as it is (the header, the section scan, the CRC checks), and with
// every section CRC recomputed, so that mutations also reach the CONF/META/TTAB parsers, the size
// checks and the value checks instead of stopping at a checksum. Seeds: fuzz/seeds/ckpt/.
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc -I. fuzz/fuzz_ckpt.c \
//       src/*.c src/*/*.c -lm -o /tmp/fuzz_ckpt && /tmp/fuzz_ckpt fuzz/seeds/ckpt
// One harness limit, not a reader bug: a CONF may describe a legitimate model whose rope table
// (max_position_embeddings x rope dim floats, not bounded by the file size) exceeds the fuzzer's
// memory limit; such inputs are skipped.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/checkpoint.h"
#include "fuzz/sections.h"
#include "util.h"

static void load(const uint8_t *b, size_t n) {
    fg_adamw o;
    fg_train_state st;
    fg_model *m = fg_ckpt_load_mem(b, n, "fuzz.fgck", &o, &st);
    if (m) {
        fg_model_free(m);
        fg_adamw_free(&o);
        free(st.train_json);
    }
    m = fg_ckpt_load_mem(b, n, "fuzz.fgck", NULL, NULL);
    fg_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (!fuzz_walk_sections(copy, size, 1, (uint64_t)256 << 20, 0)) {
        load(data, size);
        if (memcmp(copy, data, size)) load(copy, size);
    }
    free(copy);
    return 0;
}
