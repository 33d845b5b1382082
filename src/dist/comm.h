// comm.h: the communicator layer under distributed training (docs/distributed.md).
//
// One interface, two implementations in comm.c: MPI (built with `make MPI=1`, FG_HAVE_MPI) and a
// single process (every collective is the identity on one rank). The trainer calls these and never
// MPI itself, so the same code runs on one process and on N ranks.
//
// Every collective counts the bytes this rank sends, by kind, with the convention used by NCCL's
// "bus bandwidth" and by the cost model (cost.c, fg_cost_comm): for p ranks and a payload of S
// bytes, an all-reduce sends 2(p-1)/p * S (ring: reduce-scatter then all-gather), an all-gather of a
// total of S bytes sends (p-1)/p * S, an all-to-all sends exactly the bytes addressed to other
// ranks (a gather to rank 0 counts with the all-gathers: each rank sends its piece). The counts
// are what the algorithm must move, not a trace of the wire (MPI may pick other algorithms for
// small messages).
//
// Errors: a failed collective returns -1 with the error set. A dead peer is caught by the MPI
// runtime: mpirun ends every rank of the job when one exits abnormally.
#ifndef FG_COMM_H
#define FG_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "frugal_tools.h" // FG_COMM_ALLREDUCE .. FG_COMM_KINDS

extern const char *const fg_comm_kind_name[FG_COMM_KINDS]; // "allreduce", "allgather", "alltoall"

// Bytes this rank has sent per kind since the start.
extern uint64_t fg_comm_bytes[FG_COMM_KINDS];

// Rank and size: fg_dist_rank / fg_dist_size (include/frugal.h).

// Sums (or maxes) n values over every rank, in place; all ranks get the result.
int fg_comm_allreduce_f32(float *buf, size_t n);
int fg_comm_allreduce_f64(double *buf, size_t n);
int fg_comm_allreduce_i32(int *buf, size_t n);
int fg_comm_allreduce_max_u8(unsigned char *buf, size_t n);
// Expert parallelism: groups of ep consecutive ranks (ep divides the size). The all-to-alls run
// within a rank's group (their counts and displacements have ep entries, indexed by the rank in
// the group, rank % ep); _replicas sums over the ranks with the same rank % ep (the copies of the
// same experts); _ep sums within the group. ep = 1 (the default) restores the whole world.
int fg_comm_set_ep(int ep);
int fg_comm_allreduce_f32_replicas(float *buf, size_t n);
int fg_comm_allreduce_f64_ep(double *buf, size_t n);
// Nonblocking all-reduce (sum, in place) over every rank (replicas = 0) or over the replicas
// (replicas = 1); it completes in fg_comm_wait_all, and fg_comm_progress lets MPI advance the
// outstanding ones (MPI moves data only inside MPI calls unless the network offloads it). Counted
// like the blocking ones. Every rank must start the same reductions in the same order.
int fg_comm_iallreduce_f32(float *buf, size_t n, int replicas);
int fg_comm_progress(void);
int fg_comm_wait_all(void);
// Rank r contributes buf[displ[r] .. displ[r] + count[r]) (floats); afterwards every rank holds
// all of buf. count/displ have one entry per rank.
int fg_comm_allgatherv_f32(float *buf, const size_t *count, const size_t *displ);
// Rank 0 receives every rank's piece into all[displ[r] ..] (its own piece must already be there);
// rank r > 0 sends mine (count[r] floats; all is not read there). For checkpoints.
int fg_comm_gatherv_f32(float *all, const float *mine, const size_t *count, const size_t *displ);
// Personalised exchange within the expert-parallel group (the world when ep = 1): send_count[r]
// bytes from send + send_displ[r] go to group rank r; recv_count[r] bytes from it land at recv +
// recv_displ[r]. Counts are exchanged first by the caller (fg_comm_alltoall_i32, same group).
int fg_comm_alltoallv(const void *send, const size_t *send_count, const size_t *send_displ, void *recv,
                      const size_t *recv_count, const size_t *recv_displ);
// Each rank sends n ints to every rank: send[r*n ..] to rank r; recv[r*n ..] from rank r.
int fg_comm_alltoall_i32(const int *send, int *recv, int n);

// The piece [lo, hi) of n items that rank r of p owns when n is split into p contiguous pieces.
static inline void fg_comm_split(size_t n, int p, int r, size_t *lo, size_t *hi) {
    *lo = n / (size_t)p * (size_t)r + ((size_t)r < n % (size_t)p ? (size_t)r : n % (size_t)p);
    *hi = *lo + n / (size_t)p + ((size_t)r < n % (size_t)p);
}

#endif
