// dp.c: data parallelism and ZeRO-1 (dp.h).
#include "dist/dp.h"

#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "dist/ep.h"

// Starts the sums of the gradients of tensors [t0, t1), in runs of consecutive tensors of one
// kind: shared (over every rank), a held expert (over its replicas), an expert held elsewhere
// (nothing: its gradient lives on its holder). Nonblocking (they complete in fg_comm_wait_all), or
// blocking: MPI's blocking all-reduce is the better tuned one (Open MPI 4.1 on shared memory: 20x
// faster than its nonblocking one when started all at once after the backward, measured).
static int start_tensors(fg_model *m, int t0, int t1, int async) {
    const fg_ep *ep = m->ep;
    int i = t0;
    while (i < t1) {
        const fg_tensor *t = &m->tensors[i];
#define KIND(u) ((u)->expert < 0 || !ep ? 0 : (u)->expert >= ep->e_lo && (u)->expert < ep->e_hi ? 1 : 2)
        int kind = KIND(t), j = i + 1;
        size_t lo = t->offset, hi = t->offset + t->numel;
        for (; j < t1 && KIND(&m->tensors[j]) == kind && m->tensors[j].offset == hi; j++) hi += m->tensors[j].numel;
#undef KIND
        for (size_t at = lo; kind < 2 && at < hi; at += FG_DP_BUCKET)
            if (async ? fg_comm_iallreduce_f32(m->grads + at, FG_MIN(FG_DP_BUCKET, hi - at), kind)
                      : kind ? fg_comm_allreduce_f32_replicas(m->grads + at, FG_MIN(FG_DP_BUCKET, hi - at))
                             : fg_comm_allreduce_f32(m->grads + at, FG_MIN(FG_DP_BUCKET, hi - at)))
                return -1;
        i = j;
    }
    return 0;
}

int fg_dp_overlap_init(fg_dp_overlap *ov, fg_model *m) {
    ov->m = m; ov->failed = 0;
    ov->started = calloc((size_t)fg_config_n_blocks(&m->cfg), 1);
    return ov->started ? 0 : fg_set_error("out of memory");
}

void fg_dp_overlap_free(fg_dp_overlap *ov) { free(ov->started); ov->started = NULL; }

// The tensors of block l: one contiguous run of the table (fg_tensor_table adds a block at once).
static void block_tensors(const fg_model *m, int l, int *t0, int *t1) {
    int i = 0;
    while (i < m->n_tensors && m->tensors[i].layer != l) i++;
    *t0 = i;
    while (i < m->n_tensors && m->tensors[i].layer == l) i++;
    *t1 = i;
}

void fg_dp_block_done(void *ctx, int block) {
    fg_dp_overlap *ov = ctx;
    if (ov->failed) return;
    int t0, t1;
    block_tensors(ov->m, block, &t0, &t1);
    if (start_tensors(ov->m, t0, t1, 1) || fg_comm_progress()) ov->failed = 1;
    ov->started[block] = 1;
}

int fg_dp_reduce_grads(fg_model *m, fg_dp_overlap *ov) {
    if (fg_dist_size() == 1) return 0;
    int rc = ov && ov->failed ? -1 : 0;
    if (!ov) rc = start_tensors(m, 0, m->n_tensors, 0); // the whole array, runs merged across blocks
    // what no block hook started: tensors outside blocks, and blocks whose hook did not run
    for (int i = 0; ov && i < m->n_tensors && !rc;) {
        int l = m->tensors[i].layer, j = i + 1;
        while (j < m->n_tensors && m->tensors[j].layer == l) j++;
        if (l < 0 || !ov->started[l]) rc = start_tensors(m, i, j, 0);
        i = j;
    }
    if (fg_comm_wait_all()) rc = -1;
    if (ov) { memset(ov->started, 0, (size_t)fg_config_n_blocks(&m->cfg)); ov->failed = 0; }
    if (rc) return -1;
    return fg_comm_allreduce_max_u8(m->touched, (size_t)m->n_tensors);
}

// Each rank's piece of n floats (fg_comm_split): counts and displacements for the gathers.
static int pieces(size_t n, size_t **count, size_t **displ) {
    int p = fg_dist_size();
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
    if (fg_dist_size() == 1) return 0;
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
    int rank = fg_dist_rank(), rc = 0;
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
