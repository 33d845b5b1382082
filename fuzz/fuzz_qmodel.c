// fuzz_qmodel.c: libFuzzer target for the quantised model reader (fg_qmodel_open_mem).
//
// Each input is opened twice: as it is (header, section scan, CRCs), and with every section CRC
// recomputed so that mutations reach the CONF parser and the tensor-table checks (types, block
// counts, offsets). An accepted file then runs a 3-token decode through a session: every tensor
// pointer the reader accepted is dereferenced over its whole extent (embedding row, every matrix
// row of a dense layer, the chosen experts), so a bound the reader failed to check is an ASan
// report. Seeds: fuzz/seeds/qmodel/ (tiny q8_0 and bf16 files).
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc -I. fuzz/fuzz_qmodel.c \
//       src/*.c src/*/*.c -lm -o /tmp/fuzz_qmodel && /tmp/fuzz_qmodel fuzz/seeds/qmodel
// Harness limit, as in fuzz_ckpt.c: a CONF whose rope table or decoding scratch would exceed the
// fuzzer's memory (not bounded by the file size) is skipped.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/checkpoint.h"
#include "infer/wstore.h"
#include "util.h"

static uint64_t rd64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

// Walks the sections of b[0..n); fix: rewrite each CRC. Returns 1 if CONF describes a model too
// big for the harness.
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
                huge |= (uint64_t)c.max_position_embeddings * rope * sizeof(float) > ((uint64_t)64 << 20);
                huge |= (uint64_t)c.vocab_size * 12 + (uint64_t)c.hidden_size * c.num_attention_heads * 64 > ((uint64_t)64 << 20);
            }
        }
        off += 12 + (size_t)len + 4;
    }
    return huge;
}

static void open_and_run(const uint8_t *b, size_t n) {
    fg_wstore *ws = fg_qmodel_open_mem(b, n, "fuzz.fgq");
    if (!ws) return;
    const fg_config *c = fg_wstore_config(ws);
    fg_infer *s = fg_infer_create_store(ws, 3, FG_KV_AUTO, FG_WEIGHTS_BF16);
    if (s) {
        int32_t tok[3] = {0, c->vocab_size - 1, c->vocab_size / 2};
        fg_infer_feed(s, tok, 2);
        fg_infer_feed(s, tok + 2, 1);
        fg_infer_free(s);
    }
    fg_wstore_free(ws);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (!walk(copy, size, 1)) {
        open_and_run(data, size);
        if (memcmp(copy, data, size)) open_and_run(copy, size);
    }
    free(copy);
    return 0;
}
