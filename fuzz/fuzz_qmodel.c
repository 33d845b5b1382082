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
#include "fuzz/sections.h"
#include "infer/wstore.h"
#include "util.h"

static void open_and_run(const uint8_t *b, size_t n) {
    fg_wstore *ws = fg_qmodel_open_mem(b, n, "fuzz.fgq");
    if (!ws) return;
    const fg_config *c = fg_wstore_config(ws);
    fg_infer *s = fg_infer_create_store(ws, 3, FG_KV_AUTO, FG_BF16);
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
    if (!fuzz_walk_sections(copy, size, 1, (uint64_t)64 << 20, 1)) {
        open_and_run(data, size);
        if (memcmp(copy, data, size)) open_and_run(copy, size);
    }
    free(copy);
    return 0;
}
