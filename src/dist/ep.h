// ep.h: expert parallelism, the communication half (docs/distributed.md). The model's MoE layer
// (model.c) routes its rows as always, then instead of running every routed expert itself:
//
//   fg_ep_route   exchanges how many slots each rank sends to each expert (counts first),
//   fg_ep_send    sends each slot's row to the rank holding its expert (MPI_Alltoallv) and lays
//                 the rows received out expert by expert (expert-major: expert j's rows from
//                 group rank 0, then from rank 1, ...), so each held expert runs one batch,
//   fg_ep_recv    the inverse: expert-major rows back to the ranks and slots they came from.
//
// The backward sends d(expert output) with fg_ep_send and returns d(expert input) with fg_ep_recv
// over the same counts. Experts are split evenly: group rank q holds experts [q*E/ep, (q+1)*E/ep).
// The group is src/dist/comm.h's expert-parallel group (fg_comm_set_ep).
//
// Not done here: the memory saving. Every rank still allocates every expert's weights (only the
// held ones are computed and updated; fg_ep_gather brings the others' to rank 0 for checkpoints
// and evaluation). Device-limited routing (V2: each token's experts on at most M ranks) is not
// built either.
#ifndef FG_EP_H
#define FG_EP_H

#include <stddef.h>

#include "frugal.h"

typedef struct {
    int R;                         // rows received for the held experts (this forward)
    int *scnt, *rcnt;              // (E) slots sent per expert; (ep * El) received per (source, held expert)
    int *eoff;                     // (El + 1) expert-major offsets of the held experts' rows
    float *xr, *y, *dy, *dx;       // (R, C): received rows, expert outputs; their gradients (backward)
    float *h1, *h3, *a, *tmp;      // (R, Fe) x3 saved activations; (3 R Fe) backward scratch
    size_t cap;                    // rows allocated
} fg_ep_layer;

typedef struct fg_ep {
    int size, rank;                // the group's size (ep) and this rank's place in it
    int e_lo, e_hi;                // held experts [e_lo, e_hi)
    int E, C, Fe, n_layers;
    fg_ep_layer *layers;           // (L + D) blocks (MoE ones used)
    float *stage;                  // (stage_cap floats) exchange staging
    size_t stage_cap;
    double comm_s;                 // seconds in the exchanges (waiting for the group included) so far
    int max_ranks;                 // the most ranks one token's experts were on (since reset by the caller)
    double rows_out, rows_in;      // slots sent to / received from other ranks by forwards so far
                                   //   (each goes and returns twice per step: forward and backward)
} fg_ep;

// NULL with an error if E is not a multiple of size (ep).
fg_ep *fg_ep_create(const fg_config *c, int size, int rank);
void fg_ep_free(fg_ep *ep);

// Counts for block l from the slots grouped by expert (expert_off, E + 1): exchanges them, sizes
// the layer's buffers for the rows to come. 0 or -1.
int fg_ep_route(fg_ep *ep, int l, const int *expert_off);
// rows (slots, width) in slot order -> out (R, width) expert-major, on the holders.
int fg_ep_send(fg_ep *ep, int l, const float *rows, int width, float *out);
// rows (R, width) expert-major -> out (slots, width) in slot order, back on the senders.
int fg_ep_recv(fg_ep *ep, int l, const float *rows, int width, float *out);

// The held experts' parameters (and, opt != NULL, their AdamW moments: a full, unsharded state) of
// every rank of group 0 onto world rank 0, in place, for its checkpoints and evaluations.
// Collective over every rank. 0 or -1.
int fg_ep_gather(fg_ep *ep, fg_model *m, fg_adamw *opt);

#endif
