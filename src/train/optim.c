// optim.c: see optim.h.
#include "train/optim.h"

#include "dist/comm.h"
#include "dist/ep.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int fg_adamw_init(fg_adamw *o, size_t n, int n_tensors) {
    memset(o, 0, sizeof *o);
    o->t = fg_calloc(n_tensors, sizeof(int64_t), "AdamW step counts");
    o->n_tensors = n_tensors;
    o->m = fg_calloc(n, sizeof(float), "AdamW first moments");
    o->v = fg_calloc(n, sizeof(float), "AdamW second moments");
    if (!o->m || !o->v || !o->t) { fg_adamw_free(o); return -1; }
    o->n = n;
    return 0;
}

int fg_adamw_init_for(fg_adamw *o, const fg_model *m) { return fg_adamw_init(o, m->n_params, m->n_tensors); }

void fg_adamw_free(fg_adamw *o) {
    free(o->m); free(o->v); free(o->t);
    o->m = o->v = NULL;
    o->t = NULL;
}

int fg_adamw_shard(fg_adamw *o, size_t lo, size_t hi) {
    if (lo < o->lo || hi > o->lo + o->n || lo > hi)
        return fg_set_error("optimizer shard [%zu, %zu) lies outside the state's [%zu, %zu)", lo, hi, o->lo, o->lo + o->n);
    size_t n = hi - lo;
    float *m = malloc(sizeof(float) * (n ? n : 1)), *v = malloc(sizeof(float) * (n ? n : 1));
    if (!m || !v) { free(m); free(v); return fg_set_error("out of memory (optimizer shard of %zu floats)", n); }
    memcpy(m, o->m + (lo - o->lo), sizeof(float) * n);
    memcpy(v, o->v + (lo - o->lo), sizeof(float) * n);
    free(o->m); free(o->v);
    o->m = m; o->v = v; o->lo = lo; o->n = n;
    return 0;
}

void fg_adamw_step(fg_adamw *o, fg_model *m, float lr, const fg_adamw_opts *p) {
    size_t lo = o->lo, hi = o->lo + o->n;
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        if ((t->flags & FG_TENSOR_BUFFER) || !m->touched[i]) continue;
        int64_t k = ++o->t[i];
        if (t->expert >= 0 && m->ep && (t->expert < m->ep->e_lo || t->expert >= m->ep->e_hi)) continue; // held elsewhere
        size_t a = FG_MAX(t->offset, lo), b = FG_MIN(t->offset + t->numel, hi); // the part this state holds
        if (a >= b) continue;
        float bc1 = 1.0f - powf(p->beta1, (float)k), bc2 = 1.0f - powf(p->beta2, (float)k);
        float step = lr / bc1, bc2_sqrt = sqrtf(bc2);
        float decay = (t->flags & FG_TENSOR_NO_DECAY) ? 1.0f : 1.0f - lr * p->weight_decay;
        fg_adamw_k kk = {p->beta1, p->beta2, p->eps, step, bc2_sqrt, decay};
        m->be->adamw(m->params + a, o->m + (a - lo), o->v + (a - lo), m->grads + a, b - a, &kk);
    }
}

float fg_grad_clip(fg_model *m, float clip) {
    double ss = 0, held = 0; // held: the experts this rank holds under expert parallelism
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        if (t->flags & FG_TENSOR_BUFFER) continue;
        const float *g = m->grads + t->offset;
        double *acc = m->ep && t->expert >= 0 ? &held : &ss;
        for (size_t j = 0; j < t->numel; j++) *acc += (double)g[j] * g[j];
    }
    // Each expert's gradient lives on its holder: the norm sums them over the group.
    if (m->ep && fg_comm_allreduce_f64_ep(&held, 1)) held = NAN;
    ss += held;
    float norm = (float)sqrt(ss);
    if (clip > 0 && norm > clip) {
        float s = clip / norm;
        for (int i = 0; i < m->n_tensors; i++) {
            const fg_tensor *t = &m->tensors[i];
            if (t->flags & FG_TENSOR_BUFFER) continue;
            float *g = m->grads + t->offset;
            for (size_t j = 0; j < t->numel; j++) g[j] *= s;
        }
    }
    return norm;
}

float fg_lr_at(int sched, int64_t step, int64_t total, int64_t warmup, float lr, float min_lr, float decay_frac) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    if (sched == FG_SCHED_CONSTANT || total <= warmup) return lr;
    if (sched == FG_SCHED_WSD) {
        int64_t decay = (int64_t)(decay_frac * total), start = total - decay;
        if (step < start || decay <= 0) return lr;
        float frac = (float)(step - start) / (float)decay;
        return lr + (min_lr - lr) * frac;
    }
    float frac = (float)(step - warmup) / (float)(total - warmup);
    return min_lr + 0.5f * (lr - min_lr) * (1.0f + cosf((float)M_PI * frac));
}
