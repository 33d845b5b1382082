// hf.c: Hugging Face checkpoint directories in and out (docs/formats.md "Hugging Face directory").
//
// In: config.json (its "architectures" entry picks the conventions: DeepSeek-V2/V3 = MLA with
// interleaved RoPE, Qwen2 = GQA with q/k/v biases and rotate-half RoPE, Llama = GQA, rotate-half,
// optional llama3 RoPE scaling), model.safetensors or the shards named by
// model.safetensors.index.json, and tokenizer.json. Every tensor of frugal's table must be present
// with the table's shape; F32/F16/BF16 are converted, FP8 E4M3 matrices are dequantised with their
// block scales (`<name>_scale_inv`, one float per block of quantization_config.weight_block_size,
// 128x128 in DeepSeek-V3). MTP layers (num_nextn_predict_layers, index >= num_hidden_layers) are
// loaded when complete (their embed_tokens / shared_head.head copies of the shared embedding and
// head are not kept twice), else skipped with a notice; other unused tensors are listed in one notice.
// Out: config.json (fg_config_to_json plus "architectures"), model.safetensors in table order and
// tokenizer.json, each written atomically.
// Mapped: fg_wstore_open_hf builds a typed weight store whose BF16 and F32 tensors, and FP8
// matrices in 128x128 blocks (with their scales, ops/fp8.c), point straight into the read-only
// shard mappings (no copy; pages are read from disk as the session touches them), so a model larger
// than RAM starts in seconds; only F16/F64 tensors, FP8's kv_b_proj and router (to fp32) and
// misaligned matrices (copied) take memory, refused up front when they would not fit.
// What it does not do: read tokenizer_config.json (frugal's chat layouts are built in).
#include "formats/checkpoint.h"
#include "formats/interop.h"
#include "formats/json.h"
#include "formats/safetensors.h"
#include "ops/dtype.h"
#include "infer/wstore.h"
#include "model/model.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { ARCH_DSV2, ARCH_DSV3, ARCH_QWEN2, ARCH_LLAMA, ARCH_COUNT };
static const char *const ARCH_NAMES[ARCH_COUNT] = {"DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM",
                                                   "Qwen2ForCausalLM", "LlamaForCausalLM"};
static const char *const ARCH_MODEL_TYPES[ARCH_COUNT] = {"deepseek_v2", "deepseek_v3", "qwen2", "llama"};

static void say(void (*notice)(const char *), const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void say(void (*notice)(const char *), const char *fmt, ...) {
    if (!notice) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    notice(msg);
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p) { fg_set_error("out of memory"); return NULL; }
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

// ---- config ----------------------------------------------------------------------------------

typedef struct {
    fg_config cfg;
    int arch;
    int block[2];   // FP8 weight_block_size (rows, cols); 0 = not quantised
} hf_config;

// check_memory: refuse a config whose fp32 weights exceed this machine's memory (the fp32 loader);
// the mapped store checks what it allocates itself.
static int read_config(const char *dir, hf_config *h, int check_memory, void (*notice)(const char *)) {
    memset(h, 0, sizeof *h);
    char *path = path_join(dir, "config.json");
    if (!path) return -1;
    size_t len;
    char *text = fg_read_file(path, &len);
    fg_json *root = NULL;
    int rc = -1;
    if (!text) { fg_wrap_error("%s: not a Hugging Face checkpoint directory", dir); goto done; }
    if (!(root = fg_json_parse(text, len, path))) goto done;
    if (root->type != FG_JSON_OBJECT) { fg_set_error("%s: config must be a JSON object", path); goto done; }
    const fg_json *archs = fg_json_get(root, "architectures"), *mt = fg_json_get(root, "model_type");
    const char *arch = NULL;
    if (archs && archs->type == FG_JSON_ARRAY && archs->n >= 1 && archs->child->type == FG_JSON_STRING) arch = archs->child->str;
    else if (archs) { fg_set_error("%s:%d: 'architectures' must be a list of strings", path, archs->line); goto done; }
    h->arch = -1;
    for (int a = 0; a < ARCH_COUNT; a++) {
        if (arch && !strcmp(arch, ARCH_NAMES[a])) h->arch = a;
        if (!arch && mt && mt->type == FG_JSON_STRING && !strcmp(mt->str, ARCH_MODEL_TYPES[a])) h->arch = a;
    }
    if (h->arch < 0) {
        fg_set_error("%s: architecture '%s' is not supported (known: DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, "
                     "Qwen2ForCausalLM, LlamaForCausalLM)", path,
                     arch ? arch : mt && mt->type == FG_JSON_STRING ? mt->str : "(none: no 'architectures' or 'model_type')");
        goto done;
    }
    // config.c picks GQA from model_type: the architecture and model_type must agree.
    if (!mt || mt->type != FG_JSON_STRING || strcmp(mt->str, ARCH_MODEL_TYPES[h->arch])) {
        fg_set_error("%s: model_type must be \"%s\" for %s", path, ARCH_MODEL_TYPES[h->arch], ARCH_NAMES[h->arch]);
        goto done;
    }
    const fg_json *q = fg_json_get(root, "quantization_config");
    if (q && q->type != FG_JSON_NULL) {
        const fg_json *qm = q->type == FG_JSON_OBJECT ? fg_json_get(q, "quant_method") : NULL;
        if (!qm || qm->type != FG_JSON_STRING || strcmp(qm->str, "fp8")) {
            fg_set_error("%s:%d: quantization_config.quant_method must be \"fp8\" (block-scaled FP8 is the only quantisation "
                         "frugal reads from safetensors)", path, q->line);
            goto done;
        }
        const fg_json *fmt = fg_json_get(q, "fmt");
        if (fmt && (fmt->type != FG_JSON_STRING || strcmp(fmt->str, "e4m3"))) {
            fg_set_error("%s:%d: quantization_config.fmt must be \"e4m3\"", path, fmt->line);
            goto done;
        }
        const fg_json *bs = fg_json_get(q, "weight_block_size");
        h->block[0] = h->block[1] = 128;
        if (bs) {
            if (bs->type != FG_JSON_ARRAY || bs->n != 2 || bs->child->type != FG_JSON_NUMBER || bs->child->next->type != FG_JSON_NUMBER ||
                !(bs->child->num >= 1 && bs->child->num <= 65536) || !(bs->child->next->num >= 1 && bs->child->next->num <= 65536)) {
                fg_set_error("%s:%d: quantization_config.weight_block_size must be [rows, cols] in [1, 65536]", path, bs->line);
                goto done;
            }
            h->block[0] = (int)bs->child->num;
            h->block[1] = (int)bs->child->next->num;
        }
    }
    if (fg_config_from_json_ex(&h->cfg, text, len, path, notice, check_memory)) goto done;
    if (h->arch == ARCH_QWEN2 && !h->cfg.attention_bias) {
        h->cfg.attention_bias = 1; // Qwen2 always has q/k/v biases; its config.json has no field for them
        if (check_memory ? fg_config_validate(&h->cfg) : fg_config_validate_shape(&h->cfg)) { fg_wrap_error("%s", path); goto done; }
    }
    rc = 0;
done:
    fg_json_free(root);
    free(text);
    free(path);
    return rc;
}

// ---- tensors ---------------------------------------------------------------------------------

typedef struct {
    const char *dir;
    int n;                   // files
    char **file;             // (n) file names inside dir
    fg_safetensors *st;      // (n) opened files
    fg_json *index;          // model.safetensors.index.json, or NULL for a single file
    const fg_json *weight_map;
    struct wm_entry { const char *name; int file; } *wm; // weight_map sorted by name (V3: ~90k entries)
    size_t n_wm;
    unsigned char **used;    // (n) per file, per tensor: consumed
} hf_src;

static void src_close(hf_src *s) {
    for (int i = 0; i < s->n; i++) {
        fg_safetensors_close(&s->st[i]);
        free(s->file[i]);
        free(s->used ? s->used[i] : NULL);
    }
    free(s->st); free(s->file); free(s->used); free(s->wm);
    fg_json_free(s->index);
    memset(s, 0, sizeof *s);
}

static int cmp_wm(const void *a, const void *b) { return strcmp(((const struct wm_entry *)a)->name, ((const struct wm_entry *)b)->name); }

static int file_ok(const char *name) { return name[0] && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, ".."); }

static int src_add(hf_src *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->file[i], name)) return 0;
    char **f = realloc(s->file, sizeof *f * (s->n + 1));
    if (f) s->file = f;
    fg_safetensors *st = realloc(s->st, sizeof *st * (s->n + 1));
    if (st) s->st = st;
    unsigned char **u = realloc(s->used, sizeof *u * (s->n + 1));
    if (u) s->used = u;
    if (!f || !st || !u || !(s->file[s->n] = strdup(name))) return fg_set_error("out of memory");
    memset(&s->st[s->n], 0, sizeof *s->st);
    s->used[s->n] = NULL;
    s->n++;
    char *path = path_join(s->dir, name);
    if (!path) return -1;
    int rc = 0;
    struct stat sb;
    if (stat(path, &sb)) rc = fg_set_error("%s: shard is missing (%s)", path, strerror(errno));
    else if (fg_safetensors_open(&s->st[s->n - 1], path)) rc = -1;
    else if (!(s->used[s->n - 1] = calloc((size_t)s->st[s->n - 1].n + 1, 1))) rc = fg_set_error("out of memory");
    free(path);
    return rc;
}

static int src_open(hf_src *s, const char *dir) {
    memset(s, 0, sizeof *s);
    s->dir = dir;
    char *ipath = path_join(dir, "model.safetensors.index.json");
    if (!ipath) return -1;
    int rc = -1;
    struct stat sb;
    if (!stat(ipath, &sb)) {
        size_t len;
        char *text = fg_read_file(ipath, &len);
        if (!text) goto done;
        s->index = fg_json_parse(text, len, ipath);
        free(text);
        if (!s->index) goto done;
        s->weight_map = s->index->type == FG_JSON_OBJECT ? fg_json_get(s->index, "weight_map") : NULL;
        if (!s->weight_map || s->weight_map->type != FG_JSON_OBJECT) {
            fg_set_error("%s: 'weight_map' must be an object {tensor name: shard file}", ipath);
            goto done;
        }
        for (const fg_json *e = s->weight_map->child; e; e = e->next) {
            if (e->type != FG_JSON_STRING || !file_ok(e->str)) {
                fg_set_error("%s:%d: weight_map: the shard of '%.200s' must be a file name in the directory", ipath, e->line, e->key);
                goto done;
            }
            if (src_add(s, e->str)) goto done;
        }
        if (!s->n) { fg_set_error("%s: weight_map names no tensors", ipath); goto done; }
        if (!(s->wm = calloc((size_t)s->weight_map->n + 1, sizeof *s->wm))) { fg_set_error("out of memory"); goto done; }
        for (const fg_json *e = s->weight_map->child; e; e = e->next) { // every entry must be where the index says
            int f = 0;
            while (strcmp(s->file[f], e->str)) f++; // src_add registered every file named
            if (!fg_safetensors_find(&s->st[f], e->key)) {
                fg_set_error("%s/%s: model.safetensors.index.json puts tensor '%.200s' in this shard, but it is not there", dir,
                             e->str, e->key);
                goto done;
            }
            s->wm[s->n_wm++] = (struct wm_entry){e->key, f};
        }
        qsort(s->wm, s->n_wm, sizeof *s->wm, cmp_wm);
        for (size_t i = 1; i < s->n_wm; i++)
            if (!strcmp(s->wm[i - 1].name, s->wm[i].name)) {
                fg_set_error("%s: weight_map names tensor '%.200s' twice", ipath, s->wm[i].name);
                goto done;
            }
    } else {
        char *mpath = path_join(dir, "model.safetensors");
        int have = mpath && !stat(mpath, &sb);
        free(mpath);
        if (!have) {
            fg_set_error("%s: neither model.safetensors nor model.safetensors.index.json is there", dir);
            goto done;
        }
        if (src_add(s, "model.safetensors")) goto done;
    }
    rc = 0;
done:
    free(ipath);
    if (rc) src_close(s);
    return rc;
}

// Finds a tensor by name: through the index when there is one (the shard it names must hold it).
// Returns NULL (no error set) when the checkpoint has no such tensor; *err is set on a broken index.
static const fg_st_tensor *src_find(hf_src *s, const char *name, int *err) {
    *err = 0;
    if (s->wm) { // entries were checked against their shards when the index was read
        struct wm_entry key = {name, 0}, *e = bsearch(&key, s->wm, s->n_wm, sizeof *s->wm, cmp_wm);
        if (!e) return NULL;
        const fg_st_tensor *t = fg_safetensors_find(&s->st[e->file], name);
        s->used[e->file][t - s->st[e->file].t] = 1;
        return t;
    }
    for (int i = 0; i < s->n; i++) {
        const fg_st_tensor *t = fg_safetensors_find(&s->st[i], name);
        if (t) { s->used[i][t - s->st[i].t] = 1; return t; }
    }
    return NULL;
}

// The opened file that holds t.
static const fg_safetensors *src_st_of(const hf_src *s, const fg_st_tensor *t) {
    for (int i = 0; i < s->n; i++)
        if (t >= s->st[i].t && t < s->st[i].t + s->st[i].n) return &s->st[i];
    return &s->st[0];
}
static const char *src_file_of(const hf_src *s, const fg_st_tensor *t) { return src_st_of(s, t)->path; }

// The checkpoint's tensor for table entry t, with the table's shape; NULL with an error otherwise.
static const fg_st_tensor *find_tensor(hf_src *s, const fg_tensor *t) {
    int err;
    const fg_st_tensor *st = src_find(s, t->name, &err);
    if (err) return NULL;
    if (!st) {
        fg_set_error("%s: tensor '%s' is missing (hint: the checkpoint does not match its config.json)", s->dir, t->name);
        return NULL;
    }
    const char *file = src_file_of(s, st);
    int ok = st->ndim == t->ndim && st->shape[0] == t->shape[0] && (t->ndim == 1 || st->shape[1] == t->shape[1]);
    if (!ok) {
        char got[128] = "[";
        for (int d = 0; d < st->ndim; d++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)st->shape[d]);
        strcat(got, "]");
        if (t->ndim == 1) fg_set_error("%s: tensor '%s' has shape %s, the config expects [%d]", file, t->name, got, t->shape[0]);
        else fg_set_error("%s: tensor '%s' has shape %s, the config expects [%d,%d]", file, t->name, got, t->shape[0], t->shape[1]);
        return NULL;
    }
    return st;
}

// A dtype the loader reads (checked before anything is allocated); the error names file and tensor.
static int check_dtype(const hf_src *s, const hf_config *h, const fg_tensor *t, const fg_st_tensor *st) {
    const char *file = src_file_of(s, st);
    switch (st->dtype) {
    case FG_F32: case FG_F16: case FG_BF16: case FG_F64: return 0;
    case FG_F8_E4M3:
        if (t->ndim != 2) return fg_set_error("%s: tensor '%s': F8_E4M3 is only read for matrices", file, t->name);
        if (!h->block[0]) return fg_set_error("%s: tensor '%s' is F8_E4M3 but config.json has no fp8 quantization_config", file, t->name);
        return 0;
    default:
        return fg_set_error("%s: tensor '%s': dtype %s is not supported (F32, F16, BF16, F8_E4M3 with weight_scale_inv)", file,
                            t->name, fg_dtype_info(st->dtype)->st);
    }
}

// The block scales of FP8 matrix t (`<name>_scale_inv`, one float per block of the config's
// weight_block_size, row-major) as a malloc'd array, or NULL with an error naming file.
static float *fp8_scales(hf_src *s, const hf_config *h, const fg_tensor *t, const char *file) {
    int err;
    char sname[128];
    snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
    const fg_st_tensor *sc = src_find(s, sname, &err);
    if (err) return NULL;
    if (!sc) { fg_set_error("%s: F8_E4M3 tensor '%s' has no block scales '%s'", file, t->name, sname); return NULL; }
    int R = t->shape[0], C = t->shape[1], br = h->block[0], bc = h->block[1];
    int64_t nbr = (R + br - 1) / br, nbc = (C + bc - 1) / bc;
    if (sc->ndim != 2 || sc->shape[0] != nbr || sc->shape[1] != nbc) {
        fg_set_error("%s: tensor '%s' must have shape [%lld,%lld] (one scale per %dx%d block of '%s')", src_file_of(s, sc), sname,
                     (long long)nbr, (long long)nbc, br, bc, t->name);
        return NULL;
    }
    float *scale = malloc(sizeof(float) * (size_t)(nbr * nbc));
    if (!scale) { fg_set_error("out of memory"); return NULL; }
    if (fg_safetensors_read_f32(src_st_of(s, sc), sname, scale, nbr * nbc)) { free(scale); return NULL; }
    return scale;
}

// Reads table tensor t into dst (t->numel floats), checking shape and dtype.
static int load_tensor(hf_src *s, const hf_config *h, const fg_tensor *t, float *dst) {
    const fg_st_tensor *st = find_tensor(s, t);
    if (!st || check_dtype(s, h, t, st)) return -1;
    const char *file = src_file_of(s, st);
    switch (st->dtype) {
    case FG_F32: case FG_F16: case FG_BF16: case FG_F64:
        return fg_safetensors_read_f32(src_st_of(s, st), t->name, dst, (int64_t)t->numel);
    default: break; // F8_E4M3 (check_dtype refused the rest)
    }
    float *scale = fp8_scales(s, h, t, file);
    if (!scale) return -1;
    int R = t->shape[0], C = t->shape[1], br = h->block[0], bc = h->block[1];
    int64_t nbc = (C + bc - 1) / bc;
    float lut[256];
    uint8_t all[256];
    for (int b = 0; b < 256; b++) all[b] = (uint8_t)b;
    fg_dequantize_row(lut, all, 256, FG_F8_E4M3);
    const uint8_t *q = st->data;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) dst[(size_t)r * C + c] = lut[q[(size_t)r * C + c]] * scale[(r / br) * nbc + c / bc];
    free(scale);
    return 0;
}

// The MTP layers config.json announces (num_nextn_predict_layers) are loaded when the files hold
// every tensor of them; checkpoints that dropped them (many conversions do) load the main model
// alone, with a notice. Each MTP layer's embed_tokens and shared_head.head are copies of the
// main model's embedding and head, which frugal shares instead of storing twice.
static int check_mtp(hf_src *s, hf_config *h, void (*notice)(const char *)) {
    int D = h->cfg.num_nextn_predict_layers, n, missing = 0;
    if (!D) return 0;
    size_t total;
    fg_tensor *t = fg_tensor_table(&h->cfg, &n, &total);
    if (!t) return -1;
    const char *first = NULL;
    for (int i = 0; i < n; i++) {
        if (t[i].layer < h->cfg.num_hidden_layers) continue;
        int err;
        const fg_st_tensor *st = src_find(s, t[i].name, &err);
        if (err) { free(t); return -1; }
        if (!st) { missing++; if (!first) first = t[i].name; }
    }
    if (missing) {
        say(notice, "%s: config.json has %d multi-token-prediction layer%s but the files lack %d of their tensors "
            "(first: '%s'): loading the main model only", s->dir, D, D > 1 ? "s" : "", missing, first);
        h->cfg.num_nextn_predict_layers = 0;
    }
    free(t);
    return 0;
}

// Tensors no table entry took: MTP layers get a notice of their own, the rest one notice.
static void report_unused(hf_src *s, const hf_config *h, void (*notice)(const char *)) {
    int mtp = 0, other = 0, mtp_lo = 1 << 30, mtp_hi = -1;
    const char *first = NULL;
    for (int i = 0; i < s->n; i++)
        for (int k = 0; k < s->st[i].n; k++) {
            if (s->used[i][k]) continue;
            const char *name = s->st[i].t[k].name;
            int layer, past = sscanf(name, "model.layers.%d.", &layer) == 1 && layer >= h->cfg.num_hidden_layers;
            if (past && h->cfg.num_nextn_predict_layers && (strstr(name, ".embed_tokens.weight") || strstr(name, ".shared_head.head.weight")))
                continue; // an MTP layer's copy of the shared embedding or head
            if (past) {
                mtp++;
                mtp_lo = FG_MIN(mtp_lo, layer);
                mtp_hi = FG_MAX(mtp_hi, layer);
            } else if (!strstr(name, "_scale_inv")) { // scales belong to the tensors they scale
                other++;
                if (!first) first = name;
            }
        }
    if (mtp)
        say(notice, "%s: skipping the multi-token-prediction layer%s %d%s%.0d (%d tensors): frugal runs the main model only",
            s->dir, mtp_hi > mtp_lo ? "s" : "", mtp_lo, mtp_hi > mtp_lo ? "-" : "", mtp_hi > mtp_lo ? mtp_hi : 0, mtp);
    if (other) say(notice, "%s: ignoring %d tensor%s frugal does not use (first: '%s')", s->dir, other, other > 1 ? "s" : "", first);
}

static int read_tokenizer(const char *dir, char **tok_data, size_t *tok_len, void (*notice)(const char *)) {
    char *path = path_join(dir, "tokenizer.json");
    if (!path) return -1;
    struct stat sb;
    int rc = 0;
    if (stat(path, &sb)) {
        say(notice, "%s: no tokenizer.json: prompts and output use byte-level ids", dir);
    } else {
        size_t len;
        char *data = fg_read_file(path, &len);
        fg_tokenizer *t = data ? fg_tokenizer_load_mem(data, len, path) : NULL;
        if (!t) rc = -1;
        fg_tokenizer_free(t);
        if (!rc && tok_data) { *tok_data = data; data = NULL; if (tok_len) *tok_len = len; }
        free(data);
    }
    free(path);
    return rc;
}

// A config far beyond the files is refused before anything model-sized is allocated.
static int check_param_count(const hf_src *s, const hf_config *h) {
    int64_t total, active, have = 0;
    fg_config_param_counts(&h->cfg, &total, &active);
    for (int i = 0; i < s->n; i++)
        for (int k = 0; k < s->st[i].n; k++) have += s->st[i].t[k].numel;
    if (total > have)
        return fg_set_error("%s: config.json describes %lld parameters but the safetensors files hold %lld values", s->dir,
                            (long long)total, (long long)have);
    return 0;
}

fg_model *fg_hf_load(const char *dir, char **tok_data, size_t *tok_len, void (*notice)(const char *)) {
    if (tok_data) *tok_data = NULL;
    if (tok_len) *tok_len = 0;
    hf_config h;
    if (read_config(dir, &h, 1, notice)) return NULL;
    hf_src s;
    if (src_open(&s, dir)) return NULL;
    if (check_mtp(&s, &h, notice) || check_param_count(&s, &h)) { src_close(&s); return NULL; }
    fg_model *m = fg_model_create(&h.cfg);
    if (!m) { fg_wrap_error("%s", dir); src_close(&s); return NULL; }
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        if (load_tensor(&s, &h, t, m->params + t->offset)) { fg_model_free(m); src_close(&s); return NULL; }
    }
    report_unused(&s, &h, notice);
    src_close(&s);
    if (read_tokenizer(dir, tok_data, tok_len, notice)) { fg_model_free(m); return NULL; }
    return m;
}

// ---- mapped store ----------------------------------------------------------------------------

// The store type tensor st can be read as in place: BF16 (2-byte aligned) stays BF16, F32 (4-byte
// aligned, or any vector: the store copies misaligned vectors itself) stays F32; -1 when it must
// be converted or copied into memory.
static int mapped_type(const fg_st_tensor *st, const hf_config *h, const fg_tensor *t) {
    int ndim = t->ndim;
    // FP8 in DeepSeek-V3's 128 x 128 blocks: the linear layers' matrices stay FP8 (ops/fp8.c);
    // MLA's kv_b (read per head by attention) and the router become fp32 as before
    if (st->dtype == FG_F8_E4M3 && ndim == 2 && h->block[0] == FG_FP8_BLOCK && h->block[1] == FG_FP8_BLOCK &&
        !strstr(t->name, "kv_b_proj") && !strstr(t->name, "mlp.gate.weight"))
        return FG_F8_E4M3;
    if (st->dtype == FG_BF16 && (uintptr_t)st->data % 2 == 0) return FG_BF16;
    if (st->dtype == FG_F32 && (ndim == 1 || (uintptr_t)st->data % 4 == 0)) return FG_F32;
    return -1;
}

fg_wstore *fg_wstore_open_hf(const char *dir, void (*notice)(const char *)) {
    if (!dir) { fg_set_error("no checkpoint directory"); return NULL; }
    hf_config h;
    if (read_config(dir, &h, 0, notice)) return NULL;
    hf_src s;
    if (src_open(&s, dir)) return NULL;
    fg_wstore *ws = NULL;
    fg_tensor *t = NULL;
    int *types = NULL, n = 0;
    const void **data = NULL;
    const fg_st_tensor **sts = NULL;
    const float **scales = NULL;   // FP8 matrices' block scales (owned by the store once it exists)
    uint8_t *arena = NULL;
    unsigned char *pointed = NULL; // per shard: a tensor of the store points into it
    size_t total;
    if (check_mtp(&s, &h, notice) || check_param_count(&s, &h) || !(t = fg_tensor_table(&h.cfg, &n, &total))) goto fail;
    types = calloc((size_t)n, sizeof *types);
    data = calloc((size_t)n, sizeof *data);
    sts = calloc((size_t)n, sizeof *sts);
    scales = calloc((size_t)n, sizeof *scales);
    pointed = calloc((size_t)s.n, 1);
    if (!types || !data || !sts || !scales || !pointed) { fg_set_error("out of memory"); goto fail; }
    // Pass 1: every tensor found with its shape and a readable dtype; what cannot be read in place
    // (F16, F64, FP8 -> fp32; misaligned BF16 / F32 matrices -> copied) is sized before anything
    // model-sized is allocated.
    size_t own = 0, mapped = 0;
    int n_own = 0;
    for (int i = 0; i < n; i++) {
        if (!(sts[i] = find_tensor(&s, &t[i])) || check_dtype(&s, &h, &t[i], sts[i])) goto fail;
        int ty = mapped_type(sts[i], &h, &t[i]);
        if (ty == FG_F8_E4M3 && !(scales[i] = fp8_scales(&s, &h, &t[i], src_file_of(&s, sts[i])))) goto fail;
        if (ty >= 0) {
            types[i] = ty;
            data[i] = sts[i]->data;
            mapped += sts[i]->nbytes;
            pointed[src_st_of(&s, sts[i]) - s.st] = 1;
        } else {
            types[i] = sts[i]->dtype == FG_BF16 ? FG_BF16 : FG_F32;
            own += (fg_wstore_tensor_bytes(&t[i], types[i]) + 63) & ~(size_t)63;
            n_own++;
        }
    }
    double mem = fg_phys_mem_bytes();
    if (mem > 0 && own > 0.8 * mem) {
        fg_set_error("%s: %d tensors are not BF16 or F32 in place (F16, FP8 or misaligned) and must be converted into %.1f GiB "
                     "of memory, but this machine has %.1f GiB (hint: a BF16 checkpoint is mapped without copying)",
                     dir, n_own, own / 1073741824.0, mem / 1073741824.0);
        goto fail;
    }
    if (own && !(arena = aligned_alloc(64, own))) {
        fg_set_error("%s: out of memory converting %d tensors (%.1f MiB)", dir, n_own, own / 1048576.0);
        goto fail;
    }
    // Pass 2: convert or copy into the arena.
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (data[i]) continue;
        uint8_t *dst = arena + off;
        if (sts[i]->dtype == FG_BF16 || sts[i]->dtype == FG_F32)
            memcpy(dst, sts[i]->data, sts[i]->nbytes); // a misaligned BF16 / F32 matrix: copied as stored
        else if (load_tensor(&s, &h, &t[i], (float *)dst)) goto fail;
        data[i] = dst;
        off += (fg_wstore_tensor_bytes(&t[i], types[i]) + 63) & ~(size_t)63;
    }
    if (!(ws = fg_wstore_create_scaled(&h.cfg, t, n, types, data, scales))) { fg_wrap_error("%s", dir); goto fail; }
    for (int i = 0; i < n; i++) { // the scales go with the store
        if (scales[i] && fg_wstore_keep(ws, (void *)scales[i])) goto fail;
        scales[i] = NULL;
    }
    if (arena && fg_wstore_keep(ws, arena)) goto fail;
    arena = NULL;
    ws->owned_bytes += own;
    // The shards the store points into stay mapped for its lifetime; the others are closed.
    int n_maps = 0;
    for (int k = 0; k < s.n; k++) {
        if (!pointed[k] || fg_safetensors_take_map(&s.st[k])) continue;
        if (fg_wstore_keep_mapping(ws, s.st[k].map, s.st[k].size)) { munmap(s.st[k].map, s.st[k].size); goto fail; }
        n_maps++;
    }
    report_unused(&s, &h, notice);
    say(notice, "%s: %.2f GiB of weights mapped from %d file%s (read from disk as used), %.1f MiB in memory", dir,
        mapped / 1073741824.0, n_maps, n_maps == 1 ? "" : "s", ws->owned_bytes / 1048576.0);
    if (read_tokenizer(dir, &ws->tok, &ws->tok_len, notice)) goto fail;
    src_close(&s);
    free(t); free(types); free(data); free(sts); free(scales); free(pointed);
    return ws;
fail:
    fg_wstore_free(ws);
    src_close(&s);
    for (int i = 0; scales && i < n; i++) free((void *)scales[i]);
    free(arena); free(t); free(types); free(data); free(sts); free(scales); free(pointed);
    return NULL;
}

// ---- dispatch --------------------------------------------------------------------------------

fg_model *fg_model_open(const char *path, char **tok_data, size_t *tok_len, void (*notice)(const char *)) {
    if (tok_data) *tok_data = NULL;
    if (tok_len) *tok_len = 0;
    if (!path) { fg_set_error("no model path"); return NULL; }
    struct stat sb;
    if (stat(path, &sb)) { fg_set_error("cannot open '%s': %s", path, strerror(errno)); return NULL; }
    if (S_ISDIR(sb.st_mode)) return fg_hf_load(path, tok_data, tok_len, notice);
    char magic[8] = {0};
    int fd = open(path, O_RDONLY);
    if (fd >= 0) { ssize_t r = read(fd, magic, 8); (void)r; close(fd); }
    if (!memcmp(magic, "GGUF", 4)) return fg_gguf_load(path, tok_data, tok_len, notice);
    if (memcmp(magic, FG_CKPT_MAGIC, 8)) { // name what was found and what each format starts with
        char seen[40] = "";
        for (int i = 0; i < 4; i++)
            snprintf(seen + strlen(seen), sizeof seen - strlen(seen), (unsigned char)magic[i] >= 32 && (unsigned char)magic[i] < 127 ? "%c" : "\\x%02x",
                     (unsigned char)magic[i]);
        size_t n = strlen(path);
        if (n > 5 && !strcasecmp(path + n - 5, ".gguf"))
            fg_set_error("%s: not a GGUF file (bad magic: it starts with '%s', a GGUF file with 'GGUF'; damaged, or not GGUF)", path, seen);
        else
            fg_set_error("%s: not a model frugal reads (bad magic: it starts with '%s'; a frugal checkpoint starts with '%s', a "
                         "GGUF file with 'GGUF')", path, seen, FG_CKPT_MAGIC);
        return NULL;
    }
    fg_model *m = fg_ckpt_load(path, NULL, NULL);
    if (m && tok_data) {
        size_t len = 0;
        if (fg_ckpt_read_tokenizer_bytes(path, tok_data, &len)) { fg_model_free(m); return NULL; }
        if (tok_len) *tok_len = len;
    }
    return m;
}

// ---- export ----------------------------------------------------------------------------------

int fg_write_file_atomic(const char *path, const void *data, size_t len) {
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    if (!tmp) return fg_set_error("out of memory");
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) { fg_set_error("cannot create '%s': %s", tmp, strerror(errno)); free(tmp); return -1; }
    int ok = fwrite(data, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f)) ok = 0;
    if (!ok || rename(tmp, path)) {
        fg_set_error("cannot write '%s': %s", path, strerror(ok ? errno : e));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

// HF architecture of a frugal model: DeepSeek-V3 for noaux_tc routing, else V2 for MLA; GQA with
// rotate-half RoPE and biases is Qwen2, every other GQA model Llama (config.json keeps frugal's
// rope_interleave and attention_bias fields, so frugal reads it back exactly).
static int model_arch(const fg_config *c) {
    if (c->attn_type == FG_ATTN_MLA) return c->topk_method == FG_TOPK_NOAUX_TC ? ARCH_DSV3 : ARCH_DSV2;
    return c->attention_bias && !c->rope_interleave ? ARCH_QWEN2 : ARCH_LLAMA;
}

int fg_hf_export(const char *dir, const fg_model *m, int type, const char *tok_data, size_t tok_len) {
    if (type != FG_F32 && type != FG_BF16 && type != FG_F16)
        return fg_set_error("safetensors export: type must be f32, bf16 or f16");
    if (mkdir(dir, 0755) && errno != EEXIST) return fg_set_error("cannot create directory '%s': %s", dir, strerror(errno));
    const fg_config *c = &m->cfg;
    int arch = model_arch(c);
    char *json = fg_config_to_json(c);
    if (!json) return -1;
    // Replace the model_type line and add architectures and torch_dtype.
    const char *rest = strstr(json, "\"attention_type\"");
    static const char *const dt[] = {"float32", "bfloat16", "", "float16"};
    size_t cap = strlen(json) + 256;
    char *out = malloc(cap);
    if (!out || !rest) { free(json); free(out); return fg_set_error("out of memory"); }
    int n = snprintf(out, cap, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n  \"torch_dtype\": \"%s\",\n  %s",
                     ARCH_NAMES[arch], ARCH_MODEL_TYPES[arch], dt[type], rest);
    free(json);
    char *p = path_join(dir, "config.json");
    int rc = p ? fg_write_file_atomic(p, out, (size_t)n) : -1;
    free(p);
    free(out);
    if (rc) return -1;
    // DeepSeek-V3's layout stores each MTP layer's embedding and head as copies of the shared
    // ones (model.layers.<L+k-1>.embed_tokens / shared_head.head): written for other readers.
    int D = c->num_nextn_predict_layers, nt = m->n_tensors + 2 * D;
    fg_st_out *ts = calloc((size_t)nt, sizeof *ts);
    char (*names)[96] = calloc((size_t)FG_MAX(1, 2 * D), sizeof *names);
    if (!ts || !names) { free(ts); free(names); return fg_set_error("out of memory"); }
    for (int k = 0; k < 2 * D; k++) {
        fg_st_out *o = &ts[m->n_tensors + k];
        int head = k % 2;
        snprintf(names[k], sizeof names[k], "model.layers.%d.%s", c->num_hidden_layers + k / 2,
                 head ? "shared_head.head.weight" : "embed_tokens.weight");
        o->name = names[k];
        o->ndim = 2;
        o->shape[0] = c->vocab_size;
        o->shape[1] = c->hidden_size;
        o->data = head && !c->tie_word_embeddings ? m->w.lm_head : m->w.embed;
        o->dtype = type == FG_F32 ? FG_F32 : type == FG_BF16 ? FG_BF16 : FG_F16;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        ts[i].name = t->name;
        ts[i].ndim = t->ndim;
        ts[i].shape[0] = t->shape[0];
        ts[i].shape[1] = t->shape[1];
        ts[i].data = m->params + t->offset;
        // DeepSeek-V3 keeps its routing bias in fp32; norms follow the checkpoint's dtype.
        ts[i].dtype = (t->flags & FG_TENSOR_BUFFER) || type == FG_F32 ? FG_F32 : type == FG_BF16 ? FG_BF16 : FG_F16;
    }
    p = path_join(dir, "model.safetensors");
    rc = p ? fg_safetensors_write_f32(p, ts, nt) : -1;
    free(p);
    free(ts);
    free(names);
    if (rc) return -1;
    if (tok_data && tok_len && !(tok_len >= 4 && !memcmp(tok_data, "GGUF", 4))) {
        p = path_join(dir, "tokenizer.json");
        rc = p ? fg_write_file_atomic(p, tok_data, tok_len) : -1;
        free(p);
        if (rc) return -1;
        static const char tc[] = "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"add_bos_token\": false\n}\n";
        p = path_join(dir, "tokenizer_config.json");
        rc = p ? fg_write_file_atomic(p, tc, sizeof tc - 1) : -1;
        free(p);
    }
    return rc;
}
