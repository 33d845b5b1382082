// test.h: the tiny harness every tests/test_*.c uses. Each test file is its own program;
// tests/run.sh runs them all. Exit 0 = pass, 77 = skipped (print why), anything else = fail.
#ifndef FG_TEST_H
#define FG_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int tst_failures = 0;
#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); tst_failures++; } } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); tst_failures++; } } while (0)
#define SKIP(...) do { printf("SKIP: "); printf(__VA_ARGS__); printf("\n"); exit(77); } while (0)
#define TEST_DONE() (tst_failures ? (fprintf(stderr, "%d check(s) failed\n", tst_failures), 1) : 0)

// Relative error of a tensor, |a-b|/|b| with L2 norms taken over the whole tensor.
static inline double tst_rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) { double d = (double)a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
    if (den == 0) return sqrt(num);
    return sqrt(num / den);
}
#endif
