// fuzz_refine.c: libFuzzer target for the data refinery on arbitrary bytes taken as a JSONL file
// (in memory, no output file). Properties beyond "no crash, no sanitizer report": every
// document is either kept or removed by exactly one rule; the bad-line messages carry a line
// number within the input; a second pass over the same bytes keeps nothing (every document kept
// the first time is now an exact duplicate).
#include "frugal.h"
#include "frugal_tools.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fg_refine_opts o;
    fg_refine_opts_default(&o);
    o.min_chars = 1;
    o.num_perm = 16; // fast; LSH layout chosen automatically
    fg_refine *r = fg_refine_new(&o, NULL);
    if (!r) abort();
    if (fg_refine_add_mem(r, (const char *)data, size, "in.jsonl", 1)) abort();
    const fg_refine_stats *s = fg_refine_get_stats(r);
    uint64_t removed = 0, lines = 1;
    for (int k = 0; k < FG_REFINE_NRULES; k++) removed += s->removed[k];
    if (s->docs_kept + removed != s->docs_in) abort();
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    for (int k = 0; fg_refine_bad_line(r, k); k++) {
        const char *m = fg_refine_bad_line(r, k);
        if (strncmp(m, "in.jsonl:", 9)) abort();
        unsigned long long ln = strtoull(m + 9, NULL, 10);
        if (ln < 1 || ln > lines) abort();
    }
    uint64_t kept = s->docs_kept;
    if (fg_refine_add_mem(r, (const char *)data, size, "again.jsonl", 1)) abort();
    if (fg_refine_get_stats(r)->docs_kept != kept) abort();
    fg_refine_free(r);
    return 0;
}
