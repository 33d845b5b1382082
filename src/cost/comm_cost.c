// comm_cost.c: the communication term of the cost model (frugal_tools.h, docs/distributed.md):
// bytes per rank per optimizer step for a layout, with src/dist/comm.h's convention, so that what
// `frugal cost --link` predicts is what `frugal train` under mpirun logs as comm_bytes.
//
// What it counts: the gradient all-reduce (every stored fp32 parameter, buffers included, as the
// trainer reduces the whole gradient array), ZeRO-1's parameter all-gather, and with expert
// parallelism the MoE all-to-all (dispatch and combine in the forward, their transposes in the
// backward) at uniform routing: each token's K choices land on a rank other than its own with
// probability (ep-1)/ep. What it leaves out: the trainer's few small all-reduces per step (the
// losses, expert loads and touched flags: tens of bytes per layer), checkpoint gathers.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "frugal_tools.h"
#include "dist/dp.h"
#include "model/model.h"

// Per rank, one direction. Sources: DeepSeek-V3 technical report (arXiv 2412.19437, section 3.2.2:
// "IB (50 GB/s)", "NVLink (160 GB/s)" as achieved on H800 nodes); NVIDIA's ConnectX-7 (NDR 400
// Gb/s), ConnectX-6 (HDR 200 Gb/s) and H100 SXM NVLink 4 (900 GB/s both directions) data sheets;
// latencies are typical end-to-end small-message figures of the same sources' generation.
static const fg_link LINKS[] = {
    {"ib-400g", 50, 5, "InfiniBand NDR 400 Gb/s (ConnectX-7); DeepSeek-V3 report: IB 50 GB/s"},
    {"ib-200g", 25, 5, "InfiniBand HDR 200 Gb/s (ConnectX-6)"},
    {"roce-100g", 12.5, 10, "RoCE / Ethernet 100 Gb/s"},
    {"eth-10g", 1.25, 50, "Ethernet 10 Gb/s"},
    {"nvlink-h800", 160, 3, "DeepSeek-V3 report: NVLink 160 GB/s achieved within an H800 node"},
    {"nvlink4", 450, 3, "H100 SXM NVLink 4: 900 GB/s both directions"},
};
#define N_LINKS (int)(sizeof LINKS / sizeof *LINKS)

int fg_link_count(void) { return N_LINKS; }
const fg_link *fg_link_get(int i) { return i >= 0 && i < N_LINKS ? &LINKS[i] : NULL; }

const fg_link *fg_link_find(const char *name) {
    for (int i = 0; i < N_LINKS; i++)
        if (!strcasecmp(LINKS[i].name, name)) return &LINKS[i];
    char names[256] = "";
    for (int i = 0, at = 0; i < N_LINKS && at < (int)sizeof names; i++)
        at += snprintf(names + at, sizeof names - (size_t)at, "%s%s", i ? ", " : "", LINKS[i].name);
    fg_set_error("unknown link '%s' (known: %s)", name, names);
    return NULL;
}

void fg_comm_plan_for(fg_comm_plan *p, const fg_config *c, int ranks, int ep, int zero, double tokens_per_rank,
                      double elem_bytes) {
    memset(p, 0, sizeof *p);
    p->ranks = ranks; p->ep = ep; p->zero = zero; p->tokens_per_rank = tokens_per_rank; p->elem_bytes = elem_bytes;
    int n = 0;
    size_t total = 0;
    fg_tensor *t = fg_tensor_table(c, &n, &total);
    p->params = (double)total;
    for (int i = 0; t && i < n; i++)
        if (t[i].expert >= 0) p->expert_params += (double)t[i].numel;
    free(t);
    for (int l = 0; l < fg_config_n_blocks(c); l++) p->moe_layers += fg_config_is_moe_layer(c, l);
    p->K = c->num_experts_per_tok; p->C = c->hidden_size;
}

void fg_cost_comm(fg_comm_cost *o, const fg_comm_plan *p, const fg_link *link) {
    memset(o, 0, sizeof *o);
    double P = p->ranks, ep = p->ep > 1 ? p->ep : 1, rep = P / ep, b = p->elem_bytes;
    if (P <= 1) return;
    // Gradients: the non-expert part over every rank; an expert's over the ranks / ep replicas of it.
    double dense = ep > 1 ? p->params - p->expert_params : p->params, experts = ep > 1 ? p->expert_params / ep : 0;
    o->bytes[0] = 2 * (P - 1) / P * dense * b + (rep > 1 ? 2 * (rep - 1) / rep * experts * b : 0);
    if (p->zero) o->bytes[1] = (P - 1) / P * dense * b + (rep > 1 ? (rep - 1) / rep * experts * b : 0);
    if (ep > 1) o->bytes[2] = 4.0 * p->moe_layers * p->tokens_per_rank * p->K * (ep - 1) / ep * p->C * b;
    double bucket = (double)FG_DP_BUCKET * 4; // the trainer's all-reduce buckets (fp32)
    int ar = (int)ceil(dense * b / bucket) + (experts > 0 && rep > 1 ? (int)ceil(experts * b / bucket) : 0);
    o->collectives = ar + (p->zero ? 1 : 0) + (ep > 1 ? 4 * p->moe_layers : 0);
    double hops = ar * 2 * (P - 1) + (p->zero ? P - 1 : 0) + (ep > 1 ? 4.0 * p->moe_layers * (ep - 1) : 0);
    double bytes = 0;
    for (int k = 0; k < FG_COMM_KINDS; k++) bytes += o->bytes[k];
    if (link) o->seconds = bytes / (link->gbs * 1e9) + hops * link->latency_us * 1e-6;
}
