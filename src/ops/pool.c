// pool.c: see pool.h. A job is published as one 64-bit word, generation (32 bits) | chunk count
// n (16) | next chunk index (16), and chunks are claimed by compare-and-swap on it. Because the
// count travels with the index, a helper that wakes late can neither claim a chunk of a newer job
// under an older job's parameters nor claim past the end of a job: either the swap fails or the
// word itself says the job is exhausted. The caller rewrites the job (fn, ctx) only after every
// chunk of the current one has finished (done == n), so a helper holding a claimed chunk reads
// stable parameters.
#include "ops/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define POOL_MAX 63               // helpers
#define SPIN_BEFORE_SLEEP 20000   // pauses (a few hundred microseconds) a helper waits for the next job

static struct {
    void (*fn)(void *, int, int); // the current job (stable while any of its chunks is claimed)
    void *ctx;
    _Atomic uint64_t word;        // generation << 32 | n << 16 | next index
    _Atomic int done;             // chunks of the current generation finished
    _Atomic uint32_t gen;         // last published generation
    _Atomic int sleepers;
    pthread_mutex_t mu;           // for sleeping helpers
    pthread_cond_t cv;
    pthread_mutex_t busy;         // one caller at a time
    int helpers;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .busy = PTHREAD_MUTEX_INITIALIZER};
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

// Claims and runs chunks of generation g until none is left (or a newer job replaced it).
static void run_chunks(uint32_t g, int tid) {
    for (;;) {
        uint64_t cur = atomic_load_explicit(&P.word, memory_order_acquire);
        uint32_t i = (uint32_t)(cur & 0xffff), n = (uint32_t)((cur >> 16) & 0xffff);
        if ((uint32_t)(cur >> 32) != g || i >= n) return;
        if (!atomic_compare_exchange_weak_explicit(&P.word, &cur, cur + 1, memory_order_acq_rel, memory_order_acquire)) continue;
        P.fn(P.ctx, (int)i, tid);
        atomic_fetch_add_explicit(&P.done, 1, memory_order_release);
    }
}

static void *helper(void *arg) {
    int tid = (int)(intptr_t)arg;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_BEFORE_SLEEP) { CPU_RELAX(); continue; }
            pthread_mutex_lock(&P.mu);
            atomic_fetch_add(&P.sleepers, 1);
            while (atomic_load(&P.gen) == seen) pthread_cond_wait(&P.cv, &P.mu);
            atomic_fetch_sub(&P.sleepers, 1);
            pthread_mutex_unlock(&P.mu);
            spins = 0;
        }
        seen = g;
        run_chunks(g, tid);
    }
    return NULL;
}

static void pool_start(void) {
#ifdef _OPENMP
    int want = omp_get_max_threads() - 1;
#else
    int want = 0;
#endif
    want = want > POOL_MAX ? POOL_MAX : want;
    for (int i = 0; i < want; i++) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, helper, (void *)(intptr_t)(P.helpers + 1)) == 0) P.helpers++;
        pthread_attr_destroy(&a);
    }
}

int fg_pool_threads(void) {
    pthread_once(&pool_once, pool_start);
    return P.helpers + 1;
}

void fg_pool_for(int n, void (*fn)(void *ctx, int i, int tid), void *ctx) {
    int alone = n <= 1 || n > FG_POOL_MAX_CHUNKS;
#ifdef _OPENMP
    alone |= omp_get_max_threads() <= 1 || omp_in_parallel();
#else
    alone = 1;
#endif
    if (!alone) {
        pthread_once(&pool_once, pool_start);
        alone = P.helpers == 0 || pthread_mutex_trylock(&P.busy) != 0;
    }
    if (alone) {
        for (int i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    P.fn = fn;
    P.ctx = ctx;
    atomic_store_explicit(&P.done, 0, memory_order_relaxed);
    uint32_t g = atomic_load_explicit(&P.gen, memory_order_relaxed) + 1;
    if (g == 0) g = 1; // 0 is a helper's initial "seen"
    atomic_store_explicit(&P.word, (uint64_t)g << 32 | (uint64_t)n << 16, memory_order_release);
    atomic_store(&P.gen, g); // seq_cst: pairs with the helpers' sleepers increment
    if (atomic_load(&P.sleepers)) {
        pthread_mutex_lock(&P.mu);
        pthread_cond_broadcast(&P.cv);
        pthread_mutex_unlock(&P.mu);
    }
    run_chunks(g, 0);
    // Only chunks a helper has claimed (it is running them) are left to wait for.
    for (int spins = 0; atomic_load_explicit(&P.done, memory_order_acquire) < n; spins++) {
        if (spins < 1000) CPU_RELAX();
        else sched_yield();
    }
    pthread_mutex_unlock(&P.busy);
}

int fg_pool_chunk_rows(size_t rb, int OUT) {
    size_t bytes = rb * (size_t)OUT, chunk_bytes = FG_MIN((size_t)256 << 10, FG_MAX((size_t)16 << 10, bytes / 16));
    int chunk = (int)FG_MIN((size_t)OUT, FG_MAX((size_t)4, (chunk_bytes / rb) & ~(size_t)3));
    if ((OUT + chunk - 1) / chunk > FG_POOL_MAX_CHUNKS) chunk = (OUT + FG_POOL_MAX_CHUNKS - 1) / FG_POOL_MAX_CHUNKS;
    return chunk;
}
