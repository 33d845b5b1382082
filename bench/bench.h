// bench.h: what the benchmark programs share.
#ifndef FG_BENCH_H
#define FG_BENCH_H
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "frugal.h"

// Seconds for timing. FG_BENCH_CPUTIME=1: process CPU seconds per thread instead of wall time
// (for tuning kernels while other jobs share the machine; wall time is the honest figure).
static inline double bench_now(void) {
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("FG_BENCH_CPUTIME") && atoi(getenv("FG_BENCH_CPUTIME"));
    if (!cpu) return fg_now();
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    return (double)clock() / CLOCKS_PER_SEC / threads;
}
#endif
