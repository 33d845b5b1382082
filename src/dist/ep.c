// ep.c: expert parallelism's exchanges (ep.h).
#include "dist/ep.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "model/model.h"

fg_ep *fg_ep_create(const fg_config *c, int size, int rank) {
    int E = c->n_routed_experts;
    if (E < 1) { fg_set_error("--ep needs a MoE model (this config has no routed experts)"); return NULL; }
    if (E % size) { fg_set_error("--ep %d does not divide the %d routed experts (hint: --ep a divisor of %d)", size, E, E); return NULL; }
    fg_ep *ep = calloc(1, sizeof *ep);
    int nb = fg_config_n_blocks(c);
    if (!ep || !(ep->layers = calloc((size_t)nb, sizeof *ep->layers))) { free(ep); fg_set_error("out of memory"); return NULL; }
    ep->size = size; ep->rank = rank; ep->E = E; ep->C = c->hidden_size; ep->Fe = c->moe_intermediate_size;
    ep->e_lo = E / size * rank; ep->e_hi = ep->e_lo + E / size; ep->n_layers = nb;
    return ep;
}

static void layer_free(fg_ep_layer *L) {
    free(L->scnt); free(L->rcnt); free(L->eoff);
    free(L->xr); free(L->y); free(L->dy); free(L->dx); free(L->h1); free(L->h3); free(L->a); free(L->tmp);
    memset(L, 0, sizeof *L);
}

void fg_ep_free(fg_ep *ep) {
    if (!ep) return;
    for (int l = 0; l < ep->n_layers; l++) layer_free(&ep->layers[l]);
    free(ep->layers); free(ep->stage); free(ep);
}

static int grow(float **p, size_t n) {
    float *q = realloc(*p, sizeof(float) * (n ? n : 1));
    if (!q) return fg_set_error("out of memory (expert-parallel buffers, %zu floats)", n);
    *p = q;
    return 0;
}

static int stage(fg_ep *ep, size_t n) {
    if (n <= ep->stage_cap) return 0;
    if (grow(&ep->stage, n)) return -1;
    ep->stage_cap = n;
    return 0;
}

int fg_ep_route(fg_ep *ep, int l, const int *expert_off) {
    fg_ep_layer *L = &ep->layers[l];
    int E = ep->E, El = E / ep->size, P = ep->size;
    if (!L->scnt) {
        L->scnt = malloc(sizeof(int) * (size_t)E); L->rcnt = malloc(sizeof(int) * (size_t)P * El);
        L->eoff = malloc(sizeof(int) * (size_t)(El + 1));
        if (!L->scnt || !L->rcnt || !L->eoff) return fg_set_error("out of memory");
    }
    for (int e = 0; e < E; e++) L->scnt[e] = expert_off[e + 1] - expert_off[e];
    double t0 = fg_now();
    if (fg_comm_alltoall_i32(L->scnt, L->rcnt, El)) return -1;
    ep->comm_s += fg_now() - t0;
    L->eoff[0] = 0;
    for (int j = 0; j < El; j++) {
        int n = 0;
        for (int s = 0; s < P; s++) n += L->rcnt[s * El + j];
        L->eoff[j + 1] = L->eoff[j] + n;
    }
    L->R = L->eoff[El];
    for (int q = 0; q < P; q++)
        if (q != ep->rank) {
            ep->rows_out += expert_off[(q + 1) * El] - expert_off[q * El];
            for (int j = 0; j < El; j++) ep->rows_in += L->rcnt[q * El + j];
        }
    if ((size_t)L->R > L->cap) {
        size_t R = (size_t)L->R, C = (size_t)ep->C, F = (size_t)ep->Fe;
        if (grow(&L->xr, R * C) || grow(&L->y, R * C) || grow(&L->dy, R * C) || grow(&L->dx, R * C) ||
            grow(&L->h1, R * F) || grow(&L->h3, R * F) || grow(&L->a, R * F) || grow(&L->tmp, 3 * R * F))
            return -1;
        L->cap = R;
    }
    return 0;
}

// The exchange's sizes in bytes: what goes to (and comes back from) each group rank.
typedef struct { size_t *sc, *sd, *rc, *rd; } sizes;

static int sizes_make(const fg_ep *ep, const fg_ep_layer *L, int width, sizes *z) {
    int P = ep->size, El = ep->E / P;
    size_t row = sizeof(float) * (size_t)width;
    z->sc = malloc(sizeof(size_t) * 4 * (size_t)P);
    if (!z->sc) return fg_set_error("out of memory");
    z->sd = z->sc + P; z->rc = z->sc + 2 * P; z->rd = z->sc + 3 * P;
    size_t so = 0, ro = 0;
    for (int q = 0; q < P; q++) {
        size_t n = 0, m = 0;
        for (int j = 0; j < El; j++) { n += (size_t)L->scnt[q * El + j]; m += (size_t)L->rcnt[q * El + j]; }
        z->sc[q] = n * row; z->sd[q] = so; so += n * row;
        z->rc[q] = m * row; z->rd[q] = ro; ro += m * row;
    }
    return 0;
}

// Moves rows between source-major (as they arrive: from group rank 0 all its rows for held
// expert 0, 1, ...; then rank 1's) and expert-major (held expert 0's rows from every source, ...).
static void permute(const fg_ep *ep, const fg_ep_layer *L, float *dst, const float *src, int width, int to_expert) {
    int P = ep->size, El = ep->E / P;
    size_t at = 0; // source-major position
    for (int s = 0; s < P; s++)
        for (int j = 0; j < El; j++) {
            int n = L->rcnt[s * El + j];
            size_t e = (size_t)L->eoff[j]; // expert-major position: expert j's start + earlier sources'
            for (int t = 0; t < s; t++) e += (size_t)L->rcnt[t * El + j];
            size_t bytes = sizeof(float) * (size_t)n * width;
            if (to_expert) memcpy(dst + e * width, src + at * width, bytes);
            else memcpy(dst + at * width, src + e * width, bytes);
            at += (size_t)n;
        }
}

int fg_ep_send(fg_ep *ep, int l, const float *rows, int width, float *out) {
    fg_ep_layer *L = &ep->layers[l];
    sizes z;
    if (stage(ep, (size_t)L->R * width) || sizes_make(ep, L, width, &z)) return -1;
    double t0 = fg_now();
    int rc = fg_comm_alltoallv(rows, z.sc, z.sd, ep->stage, z.rc, z.rd);
    ep->comm_s += fg_now() - t0;
    free(z.sc);
    if (!rc) permute(ep, L, out, ep->stage, width, 1);
    return rc;
}

int fg_ep_recv(fg_ep *ep, int l, const float *rows, int width, float *out) {
    fg_ep_layer *L = &ep->layers[l];
    sizes z;
    if (stage(ep, (size_t)L->R * width) || sizes_make(ep, L, width, &z)) return -1;
    permute(ep, L, ep->stage, rows, width, 0);
    double t0 = fg_now();
    int rc = fg_comm_alltoallv(ep->stage, z.rc, z.rd, out, z.sc, z.sd); // the same exchange, reversed
    ep->comm_s += fg_now() - t0;
    free(z.sc);
    return rc;
}

int fg_ep_gather(fg_ep *ep, fg_model *m, fg_adamw *opt) {
    int W = fg_dist_size(), El = ep->E / ep->size;
    size_t *count = calloc((size_t)W * 2, sizeof(size_t));
    if (!count) return fg_set_error("out of memory");
    size_t *displ = count + W;
    int rc = 0;
    // Each (block, matrix) stack of E experts is contiguous (fg_tensor_table): group rank q's held
    // experts are the piece [q*El, (q+1)*El) of it.
    for (int i = 0; i < m->n_tensors && !rc; i++) {
        const fg_tensor *t = &m->tensors[i];
        if (t->expert != 0) continue;
        assert(i + ep->E <= m->n_tensors && m->tensors[i + ep->E - 1].offset == t->offset + (size_t)(ep->E - 1) * t->numel);
        size_t piece = (size_t)El * t->numel;
        for (int r = 0; r < W; r++) {
            count[r] = r < ep->size ? piece : 0;
            displ[r] = r < ep->size ? (size_t)r * piece : 0;
        }
        size_t mine = t->offset + (size_t)ep->rank * piece;
        rc = fg_comm_gatherv_f32(m->params + t->offset, m->params + mine, count, displ);
        if (!rc && opt)
            rc = fg_comm_gatherv_f32(opt->m + t->offset, opt->m + mine, count, displ) ||
                 fg_comm_gatherv_f32(opt->v + t->offset, opt->v + mine, count, displ) ? -1 : 0;
    }
    free(count);
    return rc;
}
