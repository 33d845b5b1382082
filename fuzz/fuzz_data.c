// fuzz_data.c: the training-data loader (UTF-8 validation, JSONL parsing, the split) on arbitrary
// bytes, both as a .jsonl file and as a plain text file, then a few batches from the streams.
#include <stdint.h>
#include <stdlib.h>

#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *names[] = {"fuzz.jsonl", "fuzz.txt"};
    for (int i = 0; i < 2; i++) {
        fg_dataset ds;
        if (fg_dataset_load_mem(&ds, (const char *)data, size, names[i], 0.1)) continue;
        int32_t in[2 * 16], tg[2 * 16];
        fg_sampler sp;
        fg_sampler_init(&sp, &ds.train, 1);
        fg_sampler_next(&sp, in, tg, 2, 16);
        if (ds.val.n_tokens) fg_stream_window(&ds.val, 3, in, tg, 2, 16);
        for (int k = 0; k < 32; k++)
            if (in[k] < 0 || in[k] >= FG_BYTE_VOCAB || tg[k] < -1 || tg[k] >= FG_BYTE_VOCAB) abort();
        fg_dataset_free(&ds);
    }
    return 0;
}
