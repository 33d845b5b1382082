// wstore.c: the typed weight store (contracts in wstore.h): building one over given tensors, over
// an fp32 model (in place or converted), and resolving the per-layer view sessions read.
#include "infer/wstore.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util.h"

int fg_wstore_policy(const fg_tensor *t, int weights) {
    if (weights == FG_F32 || t->ndim != 2 || (t->flags & FG_TENSOR_BUFFER) || strstr(t->name, "kv_b_proj") ||
        strstr(t->name, "mlp.gate.weight")) // the router: a flipped expert choice costs more than its bytes save
        return FG_F32;
    int block = fg_dtype_info(weights)->block;
    if (t->shape[1] % block == 0) return weights;
    return t->shape[1] % FG_Q8_BLOCK == 0 ? FG_Q8_0 : FG_F32; // K types: rows of 32-value blocks only
}

const char *fg_wstore_type_check(const fg_tensor *t, int type) {
    if (type == FG_F8_E4M3) return t->ndim == 2 ? NULL : "needs a matrix (FP8 with block scales)";
    if (type < 0 || type >= 32 || !(FG_STORE_TYPES & 1u << type)) return "is not a type a weight store holds";
    int block = fg_dtype_info(type)->block;
    if (block > 1 && (t->ndim != 2 || t->shape[1] % block))
        return block == 32 ? "needs a matrix whose rows are whole blocks of 32 values" : "needs a matrix whose rows are whole blocks of 256 values";
    return NULL;
}

size_t fg_wstore_tensor_bytes(const fg_tensor *t, int type) {
    size_t rows = t->ndim == 2 ? (size_t)t->shape[0] : 1, cols = t->ndim == 2 ? (size_t)t->shape[1] : t->numel;
    return rows * fg_qrow_bytes(type, (int)cols);
}

int fg_wstore_keep_mapping(fg_wstore *ws, void *map, size_t len) {
    void **m = realloc(ws->maps, sizeof *m * (size_t)(ws->n_maps + 1));
    if (m) ws->maps = m;
    size_t *l = realloc(ws->map_lens, sizeof *l * (size_t)(ws->n_maps + 1));
    if (l) ws->map_lens = l;
    if (!m || !l) return fg_set_error("out of memory");
    ws->maps[ws->n_maps] = map;
    ws->map_lens[ws->n_maps++] = len;
    return 0;
}

size_t fg_wstore_owned_bytes(const fg_wstore *ws) { return ws->owned_bytes; }

int fg_wstore_keep(fg_wstore *ws, void *buf) {
    if (ws->n_owned == ws->cap_owned) {
        int cap = ws->cap_owned ? 2 * ws->cap_owned : 16;
        void **o = realloc(ws->owned, sizeof(void *) * (size_t)cap);
        if (!o) return fg_set_error("out of memory");
        ws->owned = o;
        ws->cap_owned = cap;
    }
    ws->owned[ws->n_owned++] = buf;
    return 0;
}

void fg_wstore_free(fg_wstore *ws) {
    if (!ws) return;
    for (int i = 0; i < ws->n_owned; i++) free(ws->owned[i]);
    free(ws->owned);
    for (int i = 0; i < ws->n_maps; i++) munmap(ws->maps[i], ws->map_lens[i]);
    free(ws->maps); free(ws->map_lens);
    rope_table_free(&ws->own_rope);
    free(ws->t); free(ws->type); free(ws->data); free(ws->vec); free(ws->scale);
    free(ws->v.layers); free(ws->v.experts); free(ws->tok);
    fg_packs_free(ws->packs);
    free(ws);
}

const fg_config *fg_wstore_config(const fg_wstore *ws) { return &ws->cfg; }

int fg_wstore_weights(const fg_wstore *ws) { // the type of the largest matrices (what a user asked for)
    size_t best = 0;
    int type = FG_F32;
    for (int i = 0; i < ws->n; i++)
        if (ws->t[i].ndim == 2 && ws->t[i].numel > best) { best = ws->t[i].numel; type = ws->type[i]; }
    return type;
}

// The layer view, bound in fg_tensor_table's order by the model's own binder (layers.c).
static void bind(fg_wstore *ws) {
    fg_wview_bind(&ws->v, &ws->cfg, ws->n, ws->type, (const void *const *)ws->data, (const float *const *)ws->vec,
                  (const float *const *)ws->scale);
}

// Everything but the tensor pointers: config, table, arrays, layer view storage. rope: the model's
// table, or NULL to build one.
// Only the shape is validated: a store need not hold fp32 weights (a bf16 mapping of a model
// larger than memory is fine); what it does allocate is checked by its builder.
static fg_wstore *store_alloc(const fg_config *c, const rope_table *rope, float softmax_scale) {
    if (fg_config_validate_shape(c)) return NULL;
    fg_wstore *ws = calloc(1, sizeof *ws);
    if (!ws) { fg_set_error("out of memory"); return NULL; }
    ws->cfg = *c;
    size_t total;
    if (!(ws->t = fg_tensor_table(c, &ws->n, &total))) { free(ws); return NULL; }
    int L = fg_config_n_blocks(c), E = FG_MAX(1, c->n_routed_experts);
    ws->type = calloc(ws->n, sizeof *ws->type);
    ws->data = calloc(ws->n, sizeof *ws->data);
    ws->vec = calloc(ws->n, sizeof *ws->vec);
    ws->scale = calloc(ws->n, sizeof *ws->scale);
    ws->v.layers = calloc(L, sizeof *ws->v.layers);
    ws->v.experts = calloc((size_t)L * 3 * E, sizeof *ws->v.experts);
    if (!ws->type || !ws->data || !ws->vec || !ws->scale || !ws->v.layers || !ws->v.experts) {
        fg_wstore_free(ws);
        fg_set_error("out of memory");
        return NULL;
    }
    if (rope) {
        ws->rope = rope;
        ws->softmax_scale = softmax_scale;
    } else {
        if (fg_model_rope_init(&ws->own_rope, &ws->softmax_scale, c)) { fg_wstore_free(ws); return NULL; }
        ws->rope = &ws->own_rope;
    }
    return ws;
}

// After ws->type/data are set: fp32 views of the vectors (converted into owned buffers when stored
// in another type), then the layer view.
static int store_finish(fg_wstore *ws) {
    for (int i = 0; i < ws->n; i++) {
        const fg_tensor *t = &ws->t[i];
        if (t->ndim == 2) continue;
        if (ws->type[i] == FG_F32 && (uintptr_t)ws->data[i] % 4 == 0) { ws->vec[i] = ws->data[i]; continue; }
        float *v = malloc(sizeof(float) * t->numel); // another type, or a misaligned f32 vector
        if (!v || fg_wstore_keep(ws, v)) { free(v); return fg_set_error("out of memory"); }
        ws->owned_bytes += sizeof(float) * t->numel;
        fg_dequantize_row(v, ws->data[i], (int)t->numel, ws->type[i]);
        ws->vec[i] = v;
    }
    bind(ws);
    return 0;
}

fg_wstore *fg_wstore_create(const fg_config *c, const fg_tensor *t, int n, const int *types, const void *const *data) {
    return fg_wstore_create_scaled(c, t, n, types, data, NULL);
}

fg_wstore *fg_wstore_create_scaled(const fg_config *c, const fg_tensor *t, int n, const int *types, const void *const *data,
                                   const float *const *scales) {
    if (!c || !t || !types || !data) { fg_set_error("weight store: missing argument"); return NULL; }
    fg_wstore *ws = store_alloc(c, NULL, 0);
    if (!ws) return NULL;
    if (n != ws->n) {
        fg_set_error("weight store: %d tensors given, the config's table has %d", n, ws->n);
        fg_wstore_free(ws);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const fg_tensor *a = &t[i], *b = &ws->t[i];
        int ty = types[i];
        if (strcmp(a->name, b->name) || a->ndim != b->ndim || a->shape[0] != b->shape[0] || a->shape[1] != b->shape[1]) {
            fg_set_error("weight store: tensor %d is '%s' [%d, %d], the config's table has '%s' [%d, %d]", i, a->name,
                         a->shape[0], a->shape[1], b->name, b->shape[0], b->shape[1]);
            fg_wstore_free(ws);
            return NULL;
        }
        const char *why = fg_wstore_type_check(b, ty);
        if (!why && !data[i]) why = "has no data";
        if (!why && ty == FG_F8_E4M3 && !(scales && scales[i])) why = "has no block scales";
        if (!why && b->ndim == 2 && (uintptr_t)data[i] % (ty == FG_F32 ? 4 : ty == FG_BF16 || ty == FG_F16 ? 2 : 1))
            why = "has misaligned data";
        if (why) {
            fg_set_error("weight store: tensor '%s' (%s) %s", b->name, fg_dtype_name(ty), why);
            fg_wstore_free(ws);
            return NULL;
        }
        ws->type[i] = ty;
        ws->data[i] = data[i];
        ws->scale[i] = ty == FG_F8_E4M3 ? scales[i] : NULL;
    }
    if (store_finish(ws)) { fg_wstore_free(ws); return NULL; }
    return ws;
}

fg_wstore *fg_wstore_from_model(const fg_model *m, int weights) {
    if (!m) { fg_set_error("weight store: no model"); return NULL; }
    if (weights < 0 || weights >= 32 || !(FG_WEIGHT_TYPES & 1u << weights)) {
        fg_set_error("weight store: %s is not a weight type to convert to", fg_dtype_name(weights));
        return NULL;
    }
    fg_wstore *ws = store_alloc(&m->cfg, &m->rope, m->softmax_scale);
    if (!ws) return NULL;
    // Converted tensors share one 64-byte aligned arena.
    size_t bytes = 0;
    for (int i = 0; i < ws->n; i++) {
        int ty = fg_wstore_policy(&m->tensors[i], weights);
        if (ty != FG_F32) bytes += (fg_wstore_tensor_bytes(&m->tensors[i], ty) + 63) & ~(size_t)63;
    }
    uint8_t *arena = bytes ? aligned_alloc(64, bytes) : NULL;
    if (bytes && (!arena || fg_wstore_keep(ws, arena))) {
        free(arena);
        fg_wstore_free(ws);
        fg_set_error("out of memory converting the weights (%.1f MiB)", bytes / 1048576.0);
        return NULL;
    }
    ws->owned_bytes += bytes;
    size_t off = 0;
    for (int i = 0; i < ws->n; i++) {
        const fg_tensor *t = &m->tensors[i];
        const float *src = m->params + t->offset;
        int ty = fg_wstore_policy(t, weights);
        ws->type[i] = ty;
        if (ty == FG_F32) { ws->data[i] = src; continue; }
        uint8_t *dst = arena + off;
        size_t rows = (size_t)t->shape[0], rb = fg_qrow_bytes(ty, t->shape[1]);
#pragma omp parallel for schedule(static) if (rows * t->shape[1] > 65536)
        for (size_t r = 0; r < rows; r++) fg_quantize_row(dst + r * rb, src + r * t->shape[1], t->shape[1], ty);
        ws->data[i] = dst;
        off += (rows * rb + 63) & ~(size_t)63;
    }
    if (store_finish(ws)) { fg_wstore_free(ws); return NULL; }
    return ws;
}
