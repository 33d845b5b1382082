// fuzz_gguf.c: libFuzzer target for the GGUF reader: metadata, the tokenizer loader, the tensor
// table (fg_gguf_read_tensors) and the model importer behind it (fg_gguf_model_from: config from
// metadata, names, shapes, dequantisation, llama row order, the split attn_k_b/attn_v_b), and
// the block decoders of every tensor type frugal reads (K-quants included), tensor by tensor.
// Every accepted file's keys, strings, arrays and tensor data must lie inside the buffer.
#include "formats/gguf.h"
#include "formats/interop.h"
#include "ops/dtype.h"
#include "frugal.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fg_gguf *g = fg_gguf_parse(data, size, "fuzz");
    if (!g) {
        if (strncmp(fg_last_error(), "fuzz", 4)) abort();
    } else {
        for (size_t i = 0; i < g->n_kv; i++) {
            const fg_gguf_kv *kv = &g->kv[i];
            if ((const uint8_t *)kv->key.s < data || (const uint8_t *)kv->key.s + kv->key.len > data + size) abort();
            if (kv->raw < data || kv->raw + kv->raw_len > data + size) abort();
            if (kv->type == FG_GGUF_ARRAY && kv->elem_type == FG_GGUF_STRING) {
                fg_gguf_str *a = fg_gguf_str_array(g, kv);
                for (uint64_t k = 0; a && k < kv->n; k++)
                    if ((const uint8_t *)a[k].s < data || (const uint8_t *)a[k].s + a[k].len > data + size) abort();
                free(a);
            }
        }
        if (fg_gguf_read_tensors(g) == 0) {
            for (uint64_t i = 0; i < g->n_tensors; i++) {
                const fg_gguf_tensor *t = &g->tensors[i];
                if (t->data && (t->data < data || t->nbytes > size || t->data + t->nbytes > data + size)) abort();
                int dt = fg_dtype_from_ggml(t->type);
                if (t->data && dt >= 0 && (FG_GGUF_READ_TYPES >> dt & 1) && t->nbytes <= (1u << 22)) {
                    const fg_dtype_traits *d = fg_dtype_info(dt);
                    size_t n = (size_t)(t->nbytes / (uint64_t)d->block_bytes) * (size_t)d->block;
                    float *x = malloc(sizeof(float) * (n ? n : 1));
                    if (x) d->to_f32(x, t->data, n);
                    free(x);
                }
            }
            char *tok = NULL;
            size_t tl = 0;
            fg_model *m = fg_gguf_model_from(g, &tok, &tl, NULL);
            if (m) {
                int32_t ids[2] = {0, 1 % fg_model_config(m)->vocab_size};
                if (fg_model_config(m)->max_position_embeddings >= 2) {
                    fg_infer *s = fg_infer_create(m, 2);
                    if (s) fg_infer_feed(s, ids, 2);
                    fg_infer_free(s);
                }
            }
            fg_model_free(m);
            free(tok);
        }
        fg_gguf_free(g);
    }
    fg_tokenizer *t = fg_tokenizer_load_mem((const char *)data, size, "fuzz");
    if (t) {
        int32_t ids[64];
        fg_tokenizer_encode(t, "Hello world 123 你好", 22, 1, ids, 64);
        fg_tokenizer_free(t);
    }
    return 0;
}
