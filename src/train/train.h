// train.h: the trainer: options, resumable state, and the training loop.
#ifndef FG_TRAIN_H
#define FG_TRAIN_H

#include "model/model.h"
#include "train/optim.h"

// Everything besides weights and optimizer moments that a bit-exact resume needs.
typedef struct {
    int64_t step;            // optimizer steps completed
    int64_t tokens_seen;     // tokens consumed by training (inputs, all positions)
    fg_rng rng;              // trainer RNG (built-in task batches)
    fg_rng data_rng;         // data sampler RNG (file data)
    uint64_t batches_drawn;  // batches drawn from the sampler
    char tokenizer[32];      // "byte" (the byte-level stand-in) until BPE lands
    char *train_json;        // the training options as JSON text (informational); malloc'd or NULL
} fg_train_state;

// Training options (CLI flags map 1:1; defaults from fg_train_opts_default).
typedef struct {
    const char *const *data; int n_data;   // text/JSONL files; none = the built-in task
    double val_fraction;                   // of file data held out for validation
    int batch, seq, accum;                 // micro-batch B x T, accumulated accum times per step
    int64_t steps;                         // total optimizer steps of the schedule
    int64_t stop_after;                    // stop this run after this many steps (0 = run to the end)
    float lr, min_lr, decay_frac;          // peak, floor, WSD decay fraction
    int64_t warmup;
    int sched;                             // FG_SCHED_*
    float weight_decay, beta1, beta2, eps, clip;
    float balance_alpha;                   // sequence-wise balance loss (0 = off)
    float bias_gamma;                      // aux-loss-free bias update speed (0 = off)
    uint64_t seed;
    int eval_every, eval_batches;          // validation loss / bits-per-byte every N steps
    int save_every;                        // checkpoint every N steps (and always at the end)
    const char *out_dir;                   // ckpt.fgck and log.jsonl go here
    int progress;                          // progress bar on stderr
    int quiet;                             // no per-eval lines on stdout
} fg_train_opts;

void fg_train_opts_default(fg_train_opts *o);
// Trains m (already initialised or loaded). opt and st carry the optimizer and trainer state
// (fresh or from a checkpoint). Writes checkpoints and the log into o->out_dir. Returns 0 or -1.
int fg_train(fg_model *m, fg_adamw *opt, fg_train_state *st, const fg_train_opts *o);
// Validation: mean loss and bits per byte over o->eval_batches batches of held-out data.
int fg_train_eval(fg_model *m, const fg_train_opts *o, const void *dataset, double *loss, double *bpb);
// Per-layer routed-expert load statistics over a (L, E) count array.
typedef struct { int layer; int min, max; double cv; } fg_load_stats;
int fg_load_stats_compute(const fg_config *c, const int *load, fg_load_stats *out);

#endif
