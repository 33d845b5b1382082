// model_fixture.h: the random models of the decoding tests (test_generate, test_batch): weights
// scaled up, norms, biases and the routing bias perturbed so that no path is an identity and
// routing varies between tokens.
#ifndef FG_MODEL_FIXTURE_H
#define FG_MODEL_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static inline fg_model *make_model(const fg_config *c, uint64_t seed) {
    fg_model *m = fg_model_create(c);
    if (!m) { fprintf(stderr, "fg_model_create: %s\n", fg_last_error()); exit(1); }
    fg_model_init_weights(m, seed);
    fg_rng r;
    fg_rng_seed(&r, seed + 1);
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        for (size_t j = 0; j < t->numel; j++) {
            if (t->ndim == 2) p[j] *= 5.0f; // larger activations: peaked attention, varied routing
            else if (strstr(t->name, "e_score_correction_bias")) p[j] = 0.05f * fg_rng_normal(&r);
            else if (strstr(t->name, ".bias")) p[j] = 0.3f * fg_rng_normal(&r);
            else p[j] = 1.0f + 0.3f * fg_rng_normal(&r);
        }
    }
    return m;
}

#endif
