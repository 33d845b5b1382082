// gguf.c: see gguf.h. A bounds-checked cursor walks the header and every metadata value once;
// arrays of strings are walked element by element so that their total size is known to fit.
#include "formats/gguf.h"
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
    }
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
