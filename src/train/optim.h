// optim.h: AdamW with decoupled weight decay, global-norm gradient clipping, LR schedules.
// The optimizer walks the model's tensor table: BUFFER tensors (the routing bias) are never
// updated; NO_DECAY tensors (norms, biases) get no weight decay.
#ifndef FG_OPTIM_H
#define FG_OPTIM_H

#include "model/model.h"

typedef struct {
    float beta1, beta2, eps, weight_decay;
} fg_adamw_opts;

typedef struct {
    float *m, *v;   // (n_params) moments, owned
    size_t n;
    int64_t *t;     // (n_tensors) steps taken per tensor: an untouched expert keeps its count
    int n_tensors;
} fg_adamw;

int fg_adamw_init(fg_adamw *o, size_t n_params, int n_tensors);
void fg_adamw_free(fg_adamw *o);
// One AdamW step with learning rate lr over every trained tensor of m (torch.optim.AdamW math).
// Tensors that never received a gradient (m->touched) are skipped entirely, as torch does.
void fg_adamw_step(fg_adamw *o, fg_model *m, float lr, const fg_adamw_opts *opts);
// Global L2 norm of all trained gradients; if clip > 0 and norm > clip, scales them by clip/norm.
// Returns the norm before clipping.
float fg_grad_clip(fg_model *m, float clip);

enum { FG_SCHED_COSINE = 0, FG_SCHED_WSD = 1, FG_SCHED_CONSTANT = 2 };
// Learning rate at step (0-based) of total: linear warmup to lr over `warmup` steps, then cosine to
// min_lr, or (WSD) stable at lr until the last decay_frac of the steps, then linear to min_lr.
float fg_lr_at(int sched, int64_t step, int64_t total, int64_t warmup, float lr, float min_lr, float decay_frac);

#endif
