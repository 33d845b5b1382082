// dp.c: data parallelism and ZeRO-1 (dp.h).
#include "dist/dp.h"

#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"

int fg_dp_reduce_grads(fg_model *m) {
    if (fg_comm_size() == 1) return 0;
    for (size_t at = 0; at < m->n_params; at += FG_DP_BUCKET)
        if (fg_comm_allreduce_f32(m->grads + at, FG_MIN(FG_DP_BUCKET, m->n_params - at))) return -1;
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
