// gguf.c: see gguf.h. A bounds-checked cursor walks the header and every metadata value once;
// arrays of strings are walked element by element so that their total size is known to fit.
#include "formats/gguf.h"
#include "formats/json.h"
#include "ops/dtype.h"
#include "util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c assumes a little-endian host"
#endif

static const char *type_names[FG_GGUF_NTYPES] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                                 "string", "array", "u64", "i64", "f64"};
static const size_t type_size[FG_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct { const uint8_t *p; size_t len, off; const char *where; } cur;

static int need(cur *c, size_t n, const char *what) {
    if (n > c->len - c->off)
        return fg_set_error("%s: GGUF %s at offset %zu needs %zu bytes but the file ends at %zu", c->where, what,
                            c->off, n, c->len);
    return 0;
}
static int rd_u32(cur *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return -1;
    memcpy(v, c->p + c->off, 4); c->off += 4; return 0;
}
static int rd_u64(cur *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return -1;
    memcpy(v, c->p + c->off, 8); c->off += 8; return 0;
}
static int rd_str(cur *c, fg_gguf_str *s, const char *what) {
    uint64_t n;
    if (rd_u64(c, &n, what)) return -1;
    if (n > c->len - c->off)
        return fg_set_error("%s: GGUF %s at offset %zu: string length %llu runs past the end of the file (%zu bytes)",
                            c->where, what, c->off - 8, (unsigned long long)n, c->len);
    s->s = (const char *)c->p + c->off; s->len = (size_t)n;
    if (fg_utf8_check(s->s, s->len) != s->len)
        return fg_set_error("%s: GGUF %s at offset %zu is not valid UTF-8 (byte %zu)", c->where, what, c->off - 8,
                            c->off + fg_utf8_check(s->s, s->len));
    c->off += (size_t)n;
    return 0;
}

// Skips one value of type t (arrays recursively, depth-limited).
static int skip_value(cur *c, int t, int depth, const char *key) {
    if (t < 0 || t >= FG_GGUF_NTYPES)
        return fg_set_error("%s: GGUF key '%s': unknown value type %d", c->where, key, t);
    if (t == FG_GGUF_STRING) { fg_gguf_str s; return rd_str(c, &s, "string value"); }
    if (t != FG_GGUF_ARRAY) {
        if (need(c, type_size[t], "value")) return -1;
        c->off += type_size[t];
        return 0;
    }
    uint32_t et; uint64_t n;
    if (rd_u32(c, &et, "array element type") || rd_u64(c, &n, "array length")) return -1;
    if (et >= FG_GGUF_NTYPES) return fg_set_error("%s: GGUF key '%s': unknown array element type %u", c->where, key, et);
    if (depth >= 3) return fg_set_error("%s: GGUF key '%s': arrays nested too deeply", c->where, key);
    if (type_size[et]) {
        if (n > (c->len - c->off) / type_size[et])
            return fg_set_error("%s: GGUF key '%s': array of %llu %s runs past the end of the file (%zu bytes)",
                                c->where, key, (unsigned long long)n, type_names[et], c->len);
        c->off += (size_t)n * type_size[et];
        return 0;
    }
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, (int)et, depth + 1, key)) return -1;
    return 0;
}

fg_gguf *fg_gguf_parse(const uint8_t *buf, size_t len, const char *where) {
    cur c = {buf, len, 0, where};
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    if (rd_u32(&c, &magic, "magic")) return NULL;
    if (memcmp(buf, "GGUF", 4)) { fg_set_error("%s: not a GGUF file (magic is not \"GGUF\")", where); return NULL; }
    if (rd_u32(&c, &version, "version")) return NULL;
    if (version != 2 && version != 3) {
        fg_set_error("%s: GGUF version %u is not supported (2 and 3 are)", where, version);
        return NULL;
    }
    if (rd_u64(&c, &n_tensors, "tensor count") || rd_u64(&c, &n_kv, "metadata count")) return NULL;
    if (n_kv > (len - c.off) / 12) { // each entry is at least 8 (key length) + 4 (type) bytes
        fg_set_error("%s: GGUF metadata count %llu is larger than the file could hold", where, (unsigned long long)n_kv);
        return NULL;
    }
    fg_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv)) || !(g->where = strdup(where))) {
        if (g) { free(g->kv); free(g); }
        fg_set_error("%s: out of memory for the GGUF metadata", where);
        return NULL;
    }
    g->version = version; g->n_tensors = n_tensors; g->n_kv = (size_t)n_kv;
    for (size_t i = 0; i < g->n_kv; i++) {
        fg_gguf_kv *kv = &g->kv[i];
        kv->raw = buf + c.off;
        uint32_t t;
        if (rd_str(&c, &kv->key, "metadata key") || rd_u32(&c, &t, "metadata value type")) goto fail;
        char key[128];
        size_t o = 0;
        for (size_t k = 0; k < kv->key.len && o < 100; k++) { char ch = kv->key.s[k]; key[o++] = (unsigned char)ch < 32 || ch == 127 ? '?' : ch; }
        key[o] = 0;
        if (t >= FG_GGUF_NTYPES) {
            fg_set_error("%s: GGUF key '%s' (#%zu): unknown value type %u", where, key, i, t);
            goto fail;
        }
        kv->type = (int)t;
        size_t start = c.off;
        if (t == FG_GGUF_ARRAY) {
            uint32_t et; uint64_t n;
            if (rd_u32(&c, &et, "array element type") || rd_u64(&c, &n, "array length")) goto fail;
            kv->elem_type = (int)et; kv->n = n;
            kv->val = buf + c.off;
            c.off = start;
        } else kv->val = buf + c.off;
        if (skip_value(&c, (int)t, 0, key)) goto fail;
        kv->raw_len = (size_t)(buf + c.off - kv->raw);
    }
    g->buf = buf; g->len = len; g->kv_end = c.off;
    return g;
fail:
    fg_gguf_free(g);
    return NULL;
}

fg_gguf *fg_gguf_open(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { fg_set_error("cannot open '%s'", path); return NULL; }
    struct stat st;
    if (fstat(fd, &st) || st.st_size <= 0) { close(fd); fg_set_error("%s: empty or unreadable GGUF file", path); return NULL; }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) { fg_set_error("%s: cannot map the file", path); return NULL; }
    fg_gguf *g = fg_gguf_parse(m, (size_t)st.st_size, path);
    if (!g) { munmap(m, (size_t)st.st_size); return NULL; }
    g->owned = m; g->owned_len = (size_t)st.st_size;
    return g;
}

void fg_gguf_free(fg_gguf *g) {
    if (!g) return;
    if (g->owned) munmap(g->owned, g->owned_len);
    free((void *)g->where);
    free(g->kv);
    free(g->tensors);
    free(g);
}

const fg_gguf_kv *fg_gguf_find(const fg_gguf *g, const char *key) {
    size_t n = strlen(key);
    for (size_t i = g->n_kv; i-- > 0;)
        if (g->kv[i].key.len == n && !memcmp(g->kv[i].key.s, key, n)) return &g->kv[i];
    return NULL;
}

int fg_gguf_get_str(const fg_gguf *g, const char *key, fg_gguf_str *out) {
    const fg_gguf_kv *kv = fg_gguf_find(g, key);
    if (!kv) return fg_set_error("%s: GGUF key '%s' is missing", g->where, key);
    if (kv->type != FG_GGUF_STRING) return fg_set_error("%s: GGUF key '%s' must be a string (is %s)", g->where, key, type_names[kv->type]);
    uint64_t n;
    memcpy(&n, kv->val, 8);
    out->s = (const char *)kv->val + 8; out->len = (size_t)n;
    return 0;
}

static int64_t int_val(int t, const uint8_t *p) {
    switch (t) {
    case FG_GGUF_U8: case FG_GGUF_BOOL: return p[0];
    case FG_GGUF_I8: return (int8_t)p[0];
    case FG_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case FG_GGUF_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case FG_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case FG_GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case FG_GGUF_U64: { uint64_t v; memcpy(&v, p, 8); return v > INT64_MAX ? INT64_MAX : (int64_t)v; }
    case FG_GGUF_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return 0;
    }
}
static int is_int_type(int t) { return t <= FG_GGUF_I32 ? t != FG_GGUF_F32 : (t == FG_GGUF_U64 || t == FG_GGUF_I64 || t == FG_GGUF_BOOL); }

int fg_gguf_get_int(const fg_gguf *g, const char *key, int64_t *out) {
    const fg_gguf_kv *kv = fg_gguf_find(g, key);
    if (!kv) return fg_set_error("%s: GGUF key '%s' is missing", g->where, key);
    if (!is_int_type(kv->type)) return fg_set_error("%s: GGUF key '%s' must be an integer (is %s)", g->where, key, type_names[kv->type]);
    *out = int_val(kv->type, kv->val);
    return 0;
}

int64_t fg_gguf_int_at(const fg_gguf_kv *kv, uint64_t i) {
    if (kv->type != FG_GGUF_ARRAY || !is_int_type(kv->elem_type) || i >= kv->n) return 0;
    return int_val(kv->elem_type, kv->val + i * type_size[kv->elem_type]);
}

fg_gguf_str *fg_gguf_str_array(const fg_gguf *g, const fg_gguf_kv *kv) {
    if (kv->type != FG_GGUF_ARRAY || kv->elem_type != FG_GGUF_STRING) {
        fg_set_error("%s: GGUF key #%zu must be an array of strings", g->where, (size_t)(kv - g->kv));
        return NULL;
    }
    fg_gguf_str *a = fg_calloc(kv->n ? (size_t)kv->n : 1, sizeof *a, "GGUF string array");
    if (!a) return NULL;
    const uint8_t *p = kv->val;
    for (uint64_t i = 0; i < kv->n; i++) { // lengths were validated by fg_gguf_parse
        uint64_t n;
        memcpy(&n, p, 8);
        a[i].s = (const char *)p + 8; a[i].len = (size_t)n;
        p += 8 + n;
    }
    return a;
}

int fg_gguf_get_f32(const fg_gguf *g, const char *key, float *out) {
    const fg_gguf_kv *kv = fg_gguf_find(g, key);
    if (!kv) return fg_set_error("%s: GGUF key '%s' is missing", g->where, key);
    if (kv->type == FG_GGUF_F32) { memcpy(out, kv->val, 4); return 0; }
    if (kv->type == FG_GGUF_F64) { double d; memcpy(&d, kv->val, 8); *out = (float)d; return 0; }
    if (is_int_type(kv->type)) { *out = (float)int_val(kv->type, kv->val); return 0; }
    return fg_set_error("%s: GGUF key '%s' must be a number (is %s)", g->where, key, type_names[kv->type]);
}

// ggml tensor type names, for messages; the block geometry of the types frugal has comes from the
// one traits table (ops/dtype.h), so a type frugal decodes is always one whose data it locates.
static const char *const GGML_TYPES[] = {
    [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [6] = "Q5_0", [7] = "Q5_1", [8] = "Q8_0", [9] = "Q8_1",
    [10] = "Q2_K", [11] = "Q3_K", [12] = "Q4_K", [13] = "Q5_K", [14] = "Q6_K", [15] = "Q8_K", [16] = "IQ2_XXS",
    [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S", [23] = "IQ4_XS",
    [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64", [29] = "IQ1_M", [30] = "BF16", [34] = "TQ1_0",
    [35] = "TQ2_0", [39] = "MXFP4",
};
#define N_GGML_TYPES (sizeof GGML_TYPES / sizeof *GGML_TYPES)

const char *fg_ggml_type_name(uint32_t type, char *buf) {
    if (type < N_GGML_TYPES && GGML_TYPES[type]) return GGML_TYPES[type];
    snprintf(buf, 16, "type %u", type);
    return buf;
}

int fg_gguf_read_tensors(fg_gguf *g) {
    if (g->tensors) return 0;
    cur c = {g->buf, g->len, g->kv_end, g->where};
    // each info takes at least 8 (name length) + 4 (n_dims) + 8 (ne) + 4 (type) + 8 (offset) bytes
    if (g->n_tensors > (g->len - c.off) / 32)
        return fg_set_error("%s: GGUF tensor count %llu is larger than the file could hold", g->where, (unsigned long long)g->n_tensors);
    g->alignment = 32;
    const fg_gguf_kv *al = fg_gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != FG_GGUF_U32) return fg_set_error("%s: GGUF key 'general.alignment' must be a u32", g->where);
        uint32_t a;
        memcpy(&a, al->val, 4);
        if (a == 0 || (a & (a - 1)) || a > (1u << 30))
            return fg_set_error("%s: GGUF general.alignment %u is not a power of two in [1, 2^30]", g->where, a);
        g->alignment = a;
    }
    fg_gguf_tensor *ts = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *ts);
    if (!ts) return fg_set_error("%s: out of memory for %llu tensor infos", g->where, (unsigned long long)g->n_tensors);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        fg_gguf_tensor *t = &ts[i];
        if (rd_str(&c, &t->name, "tensor name") || rd_u32(&c, &t->n_dims, "tensor dimension count")) goto fail;
        char nm[80];
        snprintf(nm, sizeof nm, "%.*s", (int)FG_MIN(t->name.len, 64), t->name.s);
        if (t->name.len == 0 || t->name.len > 256 || memchr(t->name.s, 0, t->name.len)) {
            fg_set_error("%s: GGUF tensor #%llu: name must be 1..256 bytes without NUL", g->where, (unsigned long long)i);
            goto fail;
        }
        if (t->n_dims < 1 || t->n_dims > 4) { fg_set_error("%s: GGUF tensor '%s': %u dimensions (1..4 allowed)", g->where, nm, t->n_dims); goto fail; }
        uint64_t numel = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (rd_u64(&c, &t->ne[d], "tensor dimension")) goto fail;
            if (t->ne[d] == 0 || __builtin_mul_overflow(numel, t->ne[d], &numel) || numel > ((uint64_t)1 << 48)) {
                fg_set_error("%s: GGUF tensor '%s': dimension %u is %llu (element count must be in [1, 2^48])", g->where, nm, d,
                             (unsigned long long)t->ne[d]);
                goto fail;
            }
        }
        if (rd_u32(&c, &t->type, "tensor type") || rd_u64(&c, &t->offset, "tensor offset")) goto fail;
        if (t->offset % g->alignment) {
            fg_set_error("%s: GGUF tensor '%s': offset %llu is not a multiple of the alignment %u", g->where, nm,
                         (unsigned long long)t->offset, g->alignment);
            goto fail;
        }
        for (uint64_t k = 0; k < i; k++)
            if (ts[k].name.len == t->name.len && !memcmp(ts[k].name.s, t->name.s, t->name.len)) {
                fg_set_error("%s: GGUF tensor '%s' appears twice", g->where, nm);
                goto fail;
            }
    }
    size_t data_off = c.off + (g->alignment - c.off % g->alignment) % g->alignment;
    if (data_off > g->len) data_off = g->len;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        fg_gguf_tensor *t = &ts[i];
        const fg_dtype_traits *dt = fg_dtype_info(fg_dtype_from_ggml(t->type));
        if (!dt) continue; // refused by name at import
        uint64_t numel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3], blk = (uint64_t)dt->block;
        char nm[80];
        snprintf(nm, sizeof nm, "%.*s", (int)FG_MIN(t->name.len, 64), t->name.s);
        if (t->ne[0] % blk) {
            fg_set_error("%s: GGUF tensor '%s': %llu columns is not a multiple of the %s block (%llu)", g->where, nm,
                         (unsigned long long)t->ne[0], GGML_TYPES[t->type], (unsigned long long)blk);
            goto fail;
        }
        t->nbytes = numel / blk * (uint64_t)dt->block_bytes;
        if (t->offset > g->len - data_off || t->nbytes > g->len - data_off - t->offset) {
            fg_set_error("%s: GGUF tensor '%s': %llu bytes at data offset %llu run past the end of the file (%zu bytes)", g->where,
                         nm, (unsigned long long)t->nbytes, (unsigned long long)t->offset, g->len);
            goto fail;
        }
        t->data = g->buf + data_off + t->offset;
    }
    g->tensors = ts;
    g->data_off = data_off;
    return 0;
fail:
    free(ts);
    return -1;
}

const fg_gguf_tensor *fg_gguf_find_tensor(const fg_gguf *g, const char *name) {
    size_t n = strlen(name);
    for (uint64_t i = 0; g->tensors && i < g->n_tensors; i++)
        if (g->tensors[i].name.len == n && !memcmp(g->tensors[i].name.s, name, n)) return &g->tensors[i];
    return NULL;
}
