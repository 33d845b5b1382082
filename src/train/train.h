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

#endif
