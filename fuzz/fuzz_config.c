// fuzz_config.c: config.json parsing and validation on arbitrary bytes; a config that validates
// and is small is also instantiated (tensor table, weights, rope tables) to check the sizes agree.
#include <stdint.h>
#include <stdlib.h>

#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fg_config c;
    if (fg_config_from_json(&c, (const char *)data, size, "fuzz.json", NULL)) return 0;
    int64_t total, active;
    fg_config_param_counts(&c, &total, &active);
    if (active > total) abort();
    if (total > 2000000 || (int64_t)c.max_position_embeddings * c.qk_rope_head_dim > 1000000 ||
        (int64_t)c.max_position_embeddings * c.head_dim > 1000000)
        return 0;
    fg_model *m = fg_model_create(&c);
    if (!m) return 0;
    size_t trained = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (!(m->tensors[i].flags & FG_TENSOR_BUFFER)) trained += m->tensors[i].numel;
    if ((int64_t)trained != total) abort(); // the count and the table must agree
    fg_model_free(m);
    return 0;
}
