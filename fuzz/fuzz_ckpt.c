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
#include "util.h"

static uint64_t rd64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

// Walks the sections of b[0..n) as far as they are well formed. fix: rewrite each CRC. Returns 1
// if CONF was found and describes a model whose rope table is too big for the fuzzer.
static int walk(uint8_t *b, size_t n, int fix) {
    size_t off = 16;
    int huge = 0;
    while (n >= 16 && off <= n && n - off >= 16) {
        uint64_t len = rd64(b + off + 4);
        if (len > n - off - 16) break;
        const uint8_t *p = b + off + 12;
        if (fix) {
            uint32_t c = fg_crc32(0, p, (size_t)len);
            for (int i = 0; i < 4; i++) b[off + 12 + len + i] = (uint8_t)(c >> (8 * i));
        }
        if (!memcmp(b + off, "CONF", 4)) {
            fg_config c;
            if (fg_config_from_json(&c, (const char *)p, (size_t)len, "fuzz", NULL) == 0) {
                uint64_t rope = c.attn_type == FG_ATTN_MLA ? (uint64_t)c.qk_rope_head_dim : (uint64_t)c.head_dim;
                huge |= (uint64_t)c.max_position_embeddings * rope * sizeof(float) > ((uint64_t)256 << 20);
            }
        }
        off += 12 + (size_t)len + 4;
    }
    return huge;
}

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
    if (!walk(copy, size, 1)) {
        load(data, size);
        if (memcmp(copy, data, size)) load(copy, size);
    }
    free(copy);
    return 0;
}
