// dp.c: data parallelism and ZeRO-1 (dp.h).
#include "dist/dp.h"

#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "dist/ep.h"

// Sums grads [lo, hi) over every rank (replicas = 0) or over the replicas of the held experts.
static int reduce_range(fg_model *m, size_t lo, size_t hi, int replicas) {
    for (size_t at = lo; at < hi; at += FG_DP_BUCKET) {
        size_t n = FG_MIN(FG_DP_BUCKET, hi - at);
        if (replicas ? fg_comm_allreduce_f32_replicas(m->grads + at, n) : fg_comm_allreduce_f32(m->grads + at, n)) return -1;
    }
    return 0;
}

int fg_dp_reduce_grads(fg_model *m) {
    if (fg_comm_size() == 1) return 0;
    if (!m->ep) {
        if (reduce_range(m, 0, m->n_params, 0)) return -1;
    } else {
        // Runs of consecutive tensors of one kind: shared (over every rank), a held expert (over its
        // replicas), an expert held elsewhere (nothing: its gradient lives on its holder).
        const fg_ep *ep = m->ep;
        int i = 0;
        while (i < m->n_tensors) {
            const fg_tensor *t = &m->tensors[i];
            int kind = t->expert < 0 ? 0 : t->expert >= ep->e_lo && t->expert < ep->e_hi ? 1 : 2, j = i + 1;
            size_t lo = t->offset, hi = t->offset + t->numel;
            for (; j < m->n_tensors; j++) {
                const fg_tensor *u = &m->tensors[j];
                int k2 = u->expert < 0 ? 0 : u->expert >= ep->e_lo && u->expert < ep->e_hi ? 1 : 2;
                if (k2 != kind || u->offset != hi) break;
                hi = u->offset + u->numel;
            }
            if (kind < 2 && reduce_range(m, lo, hi, kind)) return -1;
            i = j;
        }
    }
    return fg_comm_allreduce_max_u8(m->touched, (size_t)m->n_tensors);
}

// Each rank's piece of n floats (fg_comm_split): counts and displacements for the gathers.
static int pieces(size_t n, size_t **count, size_t **displ) {
    int p = fg_comm_size();
    *count = malloc(sizeof(size_t) * 2 * (size_t)p);
    if (!*count) return fg_set_error("out of memory");
    *displ = *count + p;
    for (int r = 0; r < p; r++) {
        size_t lo, hi;
        fg_comm_split(n, p, r, &lo, &hi);
        (*count)[r] = hi - lo; (*displ)[r] = lo;
    }
    return 0;
}

int fg_dp_allgather_params(fg_model *m) {
    if (fg_comm_size() == 1) return 0;
    size_t *count, *displ = NULL;
    if (pieces(m->n_params, &count, &displ)) return -1;
    int rc = fg_comm_allgatherv_f32(m->params, count, displ);
    free(count);
    return rc;
}

int fg_dp_gather_adamw(const fg_model *m, const fg_adamw *shard, fg_adamw *full) {
    memset(full, 0, sizeof *full);
    size_t *count, *displ = NULL;
    if (pieces(m->n_params, &count, &displ)) return -1;
    int rank = fg_comm_rank(), rc = 0;
    if (shard->lo != displ[rank] || shard->n != count[rank]) {
        rc = fg_set_error("rank %d holds optimizer shard [%zu, %zu), expected [%zu, %zu)", rank, shard->lo,
                          shard->lo + shard->n, displ[rank], displ[rank] + count[rank]);
        free(count);
        return rc;
    }
    if (rank == 0) { // rank 0's own piece is at the start of the full state
        if (fg_adamw_init(full, m->n_params, m->n_tensors)) { free(count); return -1; }
        memcpy(full->t, shard->t, sizeof(int64_t) * (size_t)m->n_tensors);
        memcpy(full->m, shard->m, sizeof(float) * shard->n);
        memcpy(full->v, shard->v, sizeof(float) * shard->n);
    }
    rc = fg_comm_gatherv_f32(full->m, shard->m, count, displ) || fg_comm_gatherv_f32(full->v, shard->v, count, displ) ? -1 : 0;
    free(count);
    if (rc) fg_adamw_free(full);
    return rc;
}
