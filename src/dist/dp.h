// dp.h: data parallelism and ZeRO-1 over the communicator (comm.h), for the trainer's step.
//
// A step on p data-parallel ranks: each rank runs its share of the step's micro-batches (the
// seeded global order, micro-batch j on rank j % p), gradients scaled by 1/(accum * p); then
// fg_dp_reduce_grads sums the gradients (in buckets) and the touched flags over the ranks, so every
// rank clips and steps on the same gradient. Plain DP: every rank runs the whole AdamW step on a
// full optimizer state. ZeRO-1: each rank holds the moments of one contiguous piece of the flat
// parameter array (fg_comm_split), updates that piece, and fg_dp_allgather_params assembles the
// updated parameters on every rank. A checkpoint always holds the full state (fg_dp_gather_adamw
// to rank 0), so it resumes on any number of ranks.
//
// Not sharded: the fp32 weights. frugal trains with fp32 weights (bf16 mixed precision casts the
// products, not the stored weights), so there is no separate master copy; what ZeRO-1 shards is the
// AdamW state, 8 of the 16 bytes per parameter that training holds.
#ifndef FG_DP_H
#define FG_DP_H

#include "model/model.h"

// Floats per all-reduce bucket: 4 Mi floats (16 MiB), the size at which the per-call cost of a
// collective is paid back (docs/distributed.md).
#define FG_DP_BUCKET ((size_t)1 << 22)

// Overlap with the backward: for the step's last micro-batch on this rank, fg_dp_block_done is the
// model's block_done hook (ctx: an fg_dp_overlap): as soon as a block's backward has finished, its
// gradients start reducing (nonblocking, bucketed) while the blocks below run their backward; each
// call also lets MPI progress the ones in flight. fg_dp_reduce_grads then starts what is left (the
// embedding, the final norm, the head: written last, or twice when tied) and waits.
typedef struct {
    fg_model *m;
    unsigned char *started;    // (n_blocks) reductions begun for the block
    int failed;
} fg_dp_overlap;
int fg_dp_overlap_init(fg_dp_overlap *ov, fg_model *m);  // 0 or -1; all blocks not started
void fg_dp_overlap_free(fg_dp_overlap *ov);
void fg_dp_block_done(void *ov, int block);

// Sums m->grads over every rank (buckets of FG_DP_BUCKET floats) and ORs m->touched: whatever ov
// (NULL: none) has not started yet, then waits for all. Resets ov for the next step. 0 or -1.
int fg_dp_reduce_grads(fg_model *m, fg_dp_overlap *ov);
// ZeRO-1: every rank's piece of m->params (its optimizer shard's range) to every rank. 0 or -1.
int fg_dp_allgather_params(fg_model *m);
// ZeRO-1: fills full (allocated here on rank 0 with the whole state; elsewhere left empty) with the
// moments of every rank's shard. Collective: every rank calls it. Free with fg_adamw_free.
int fg_dp_gather_adamw(const fg_model *m, const fg_adamw *shard, fg_adamw *full);

#endif
