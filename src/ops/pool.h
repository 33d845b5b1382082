// pool.h: the helper threads of the decode products (fg_qmatvec).
//
// Decode runs ~10 matrix-vector products per layer, each a few milliseconds. An OpenMP parallel
// region ends in a barrier that needs every thread of the team to have run: on a machine shared
// with other jobs, a helper the OS has not scheduled stalls the caller, and decode with 2 threads
// fell well below decode with 1 (measured 2-3 against 15 tokens/s on the 1 GB benchmark model
// with two other jobs running). Here the caller never waits for a helper that has not started:
// chunks are claimed one at a time from a shared counter, the caller claims them too, and it
// waits only for chunks a helper has already claimed (and is therefore running).
//
// Contract: fg_pool_for(n, fn, ctx) calls fn(ctx, i, tid) exactly once for each i in [0, n), from
// the calling thread (tid 0) or a helper (tid 1 .. fg_pool_threads() - 1), and returns after all
// have returned; per-thread scratch indexed by tid needs fg_pool_threads() rows. fn must not call
// fg_pool_for. The pool has omp_get_max_threads() - 1 helpers (read once, at first use; threads
// never exit; helpers spin briefly after a job, then sleep). One job at a time: a caller that
// finds the pool busy (another session's thread), is inside an OpenMP parallel region, or has
// more than FG_POOL_MAX_CHUNKS chunks runs them alone, in order.
#ifndef FG_POOL_H
#define FG_POOL_H

#include <stddef.h>

#define FG_POOL_MAX_CHUNKS 65535
// A decode product over fewer weight bytes than this runs on the calling thread alone: waking a
// helper and joining it costs more than it saves on a cache-resident matrix. Measured on a 2-core
// Zen 3 (the demo model, whose matrices are 98-196 KiB; 128 KiB before): 2-thread greedy decoding
// 4566-5040 -> 5360-6249 tokens/s (1 thread: 6443), speculative 2979-3547 -> 4467-5156; bench-moe
// (matrices of 327 KiB and up, still pooled) unchanged within the machine's noise.
#ifndef FG_POOL_MIN_BYTES
#define FG_POOL_MIN_BYTES (256u << 10)
#endif

// The calling OpenMP thread's number and the team size a parallel region gets (0 and 1 in a build
// without OpenMP): for indexing per-thread scratch.
#ifdef _OPENMP
#include <omp.h>
static inline int fg_thread_id(void) { return omp_get_thread_num(); }
static inline int fg_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int fg_thread_id(void) { return 0; }
static inline int fg_max_threads(void) { return 1; }
#endif

void fg_pool_for(int n, void (*fn)(void *ctx, int i, int tid), void *ctx);
// Threads a job may run on (caller included); starts the helpers.
int fg_pool_threads(void);
// Rows per chunk of a pooled product over OUT weight rows of rb bytes: chunks of 16-256 KiB (at
// least 16 of them: sequential streams the prefetchers like), a multiple of 4 rows, at most
// FG_POOL_MAX_CHUNKS chunks.
int fg_pool_chunk_rows(size_t rb, int OUT);

#endif
