// model_io.c: weights in and out of Hugging Face safetensors files (names from the tensor table).
// This is the minimal importer the foundation needs (fp32/bf16/fp16 tensors, one file); sharded
// checkpoints and FP8 blocks belong to the interop work.
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "model/model.h"

int fg_model_load_safetensors(fg_model *m, const char *path) {
    fg_safetensors st;
    if (fg_safetensors_open(&st, path)) return -1;
    int rc = 0;
    for (int i = 0; i < m->n_tensors && !rc; i++) {
        const fg_tensor *t = &m->tensors[i];
        const fg_st_tensor *s = fg_safetensors_find(&st, t->name);
        if (!s) {
            rc = fg_set_error("%s: tensor '%s' is missing (hint: the checkpoint does not match this config)", path, t->name);
            break;
        }
        int ok = s->ndim == t->ndim && s->shape[0] == t->shape[0] && (t->ndim == 1 || s->shape[1] == t->shape[1]);
        if (!ok) {
            rc = fg_set_error("%s: tensor '%s' has shape [%lld%s%lld], the config expects [%d%s%d]", path, t->name,
                              (long long)s->shape[0], s->ndim > 1 ? "," : "", s->ndim > 1 ? (long long)s->shape[1] : 0LL,
                              t->shape[0], t->ndim > 1 ? "," : "", t->ndim > 1 ? t->shape[1] : 0);
            break;
        }
        rc = fg_safetensors_read_f32(&st, t->name, m->params + t->offset, (int64_t)t->numel);
    }
    fg_safetensors_close(&st);
    return rc;
}

int fg_model_save_safetensors(const fg_model *m, const char *path) {
    fg_st_out *out = calloc(m->n_tensors, sizeof *out);
    if (!out) return fg_set_error("out of memory");
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        out[i].name = t->name;
        out[i].ndim = t->ndim;
        out[i].shape[0] = t->shape[0];
        out[i].shape[1] = t->shape[1];
        out[i].data = m->params + t->offset;
    }
    int rc = fg_safetensors_write_f32(path, out, m->n_tensors);
    free(out);
    return rc;
}
