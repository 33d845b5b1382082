// fuzz_dcache.c: the teacher cache reader (header fields, offsets, CRCs, token range) on arbitrary
// bytes; a cache that parses is then read entry by entry and, for small vocabularies, fed to the
// top-k loss, which must either accept the entries or report a bad id (never crash).
// Each input is also parsed with both CRCs recomputed, so mutations reach the checks behind them.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "distill/distill.h"
#include "formats/checkpoint.h"

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }

static void exercise(const uint8_t *data, size_t size) {
    fg_dcache c;
    if (fg_dcache_parse(&c, data, size, "fuzz.fgdc")) return;
    int T = (int)c.T, k = (int)c.k, V = (int)c.V;
    int32_t *in = malloc(sizeof(int32_t) * T), *tg = malloc(sizeof(int32_t) * T), *ids = malloc(sizeof(int32_t) * (size_t)T * k);
    float *lp = malloc(sizeof(float) * (size_t)T * k), *lt = malloc(sizeof(float) * T);
    float *z = V <= 4096 ? calloc((size_t)T * V, sizeof(float)) : NULL, *d = V <= 4096 ? malloc(sizeof(float) * (size_t)T * V) : NULL;
    for (uint64_t s = 0; s < c.S && s < 64; s++) {
        fg_dcache_tokens(&c, s, in, tg);
        for (int t = 0; t < T; t++) fg_dcache_entry(&c, s, t, ids + (size_t)t * k, lp + (size_t)t * k, lt + t);
        if (z && d) {
            fg_distill_loss_opts o;
            fg_distill_loss_opts_default(&o);
            fg_distill_loss_out out;
            fg_distill_loss_topk(&o, z, ids, lp, lt, k, tg, T, V, 1.0f, d, &out);
        }
    }
    free(in); free(tg); free(ids); free(lp); free(lt); free(z); free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    exercise(data, size);
    if (size >= FG_DCACHE_HEADER) {
        uint8_t *fixed = malloc(size);
        memcpy(fixed, data, size);
        put32(fixed + 96, fg_crc32(0, fixed + FG_DCACHE_HEADER, size - FG_DCACHE_HEADER));
        put32(fixed + 124, fg_crc32(0, fixed, 124));
        exercise(fixed, size);
        free(fixed);
    }
    return 0;
}
