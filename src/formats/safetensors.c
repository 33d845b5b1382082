// safetensors.c: see safetensors.h. The reader parses the header with fg_json, checks it
// completely, then builds the tensor table (one array, one block of names, one name index for
// binary search) and drops the JSON tree. Nothing points into the data area until every offset has
// been checked against the real file size.
#include "formats/safetensors.h"
#include "formats/json.h"
#include "ops/dtype.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (safetensors data is little-endian)"
#endif

#define MAX_EXACT_INT 9007199254740992.0 // 2^53: JSON numbers above this are not exact doubles

typedef struct {
    int owns_map;  // 1: map came from mmap and is unmapped on close
    fg_st_tensor **by_name; // (n) the tensors sorted by name
    char *names;   // every tensor name, NUL-separated; fg_st_tensor.name points in here
} st_priv;

#define ST_NAME(t) (fg_dtype_info(t)->st)
#define ST_SIZE(t) ((uint64_t)fg_dtype_info(t)->block_bytes) // every safetensors type has blocks of one

static void shape_str(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

// A JSON number that is an integer in [0, max] (max <= 2^53), as uint64.
static int json_uint(const fg_json *v, double max, uint64_t *out) {
    if (!v || v->type != FG_JSON_NUMBER || !(v->num >= 0) || v->num > max || v->num != floor(v->num)) return -1;
    *out = (uint64_t)v->num;
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(fg_st_tensor *const *)a)->name, (*(fg_st_tensor *const *)b)->name);
}

static int cmp_offset(const void *a, const void *b) {
    const fg_st_tensor *x = *(fg_st_tensor *const *)a, *y = *(fg_st_tensor *const *)b;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

// Checks one header entry and fills *t (except name). data/data_size: the data area.
static int load_entry(fg_st_tensor *t, const fg_json *e, const uint8_t *data, uint64_t data_size,
                      const char *where) {
    const char *nm = t->name;
    if (e->type != FG_JSON_OBJECT)
        return fg_set_error("%s: tensor '%s': entry must be an object (got %s)", where, nm, fg_json_type_name(e->type));
    // dtype
    const fg_json *v = fg_json_get(e, "dtype");
    if (!v) return fg_set_error("%s: tensor '%s': field 'dtype' is missing", where, nm);
    if (v->type != FG_JSON_STRING)
        return fg_set_error("%s: tensor '%s': field 'dtype' must be a string (got %s)", where, nm, fg_json_type_name(v->type));
    t->dtype = fg_dtype_from_st(v->str, v->len);
    if (t->dtype < 0)
        return fg_set_error("%s: tensor '%s': field 'dtype': unknown dtype \"%.32s\"", where, nm, v->str);
    // shape
    v = fg_json_get(e, "shape");
    if (!v) return fg_set_error("%s: tensor '%s': field 'shape' is missing", where, nm);
    if (v->type != FG_JSON_ARRAY)
        return fg_set_error("%s: tensor '%s': field 'shape' must be a list of non-negative integers (got %s)",
                            where, nm, fg_json_type_name(v->type));
    if (v->n > FG_ST_MAX_DIMS)
        return fg_set_error("%s: tensor '%s': field 'shape' has %d dimensions (at most %d supported)",
                            where, nm, v->n, FG_ST_MAX_DIMS);
    t->ndim = v->n;
    t->numel = 1;
    int d = 0;
    for (const fg_json *x = v->child; x; x = x->next, d++) {
        uint64_t dim;
        if (json_uint(x, MAX_EXACT_INT, &dim))
            return fg_set_error("%s: tensor '%s': field 'shape': dimension %d is not a non-negative integer",
                                where, nm, d);
        t->shape[d] = (int64_t)dim;
        if (__builtin_mul_overflow(t->numel, t->shape[d], &t->numel))
            return fg_set_error("%s: tensor '%s': field 'shape': element count overflows", where, nm);
    }
    char sh[160];
    shape_str(sh, sizeof sh, t->shape, t->ndim);
    uint64_t need;
    if (__builtin_mul_overflow((uint64_t)t->numel, (uint64_t)ST_SIZE(t->dtype), &need) || need > SIZE_MAX)
        return fg_set_error("%s: tensor '%s': field 'shape': %s of %s overflows the byte count", where, nm, sh,
                            ST_NAME(t->dtype));
    // data_offsets
    v = fg_json_get(e, "data_offsets");
    if (!v) return fg_set_error("%s: tensor '%s': field 'data_offsets' is missing", where, nm);
    uint64_t begin, end;
    if (v->type != FG_JSON_ARRAY || v->n != 2 || json_uint(v->child, MAX_EXACT_INT, &begin) ||
        json_uint(v->child->next, MAX_EXACT_INT, &end))
        return fg_set_error("%s: tensor '%s': field 'data_offsets' must be [begin, end] with non-negative integers",
                            where, nm);
    if (begin > end || end > data_size)
        return fg_set_error("%s: tensor '%s': field 'data_offsets' [%" PRIu64 ", %" PRIu64 "] is not within the "
                            "data area (%" PRIu64 " bytes)", where, nm, begin, end, data_size);
    if (end - begin != need)
        return fg_set_error("%s: tensor '%s': field 'data_offsets' spans %" PRIu64 " bytes but shape %s of %s needs %"
                            PRIu64, where, nm, end - begin, sh, ST_NAME(t->dtype), need);
    t->data = data + begin;
    t->nbytes = (size_t)need;
    return 0;
}

static int check_metadata(const fg_json *m, const char *where) {
    if (m->type != FG_JSON_OBJECT)
        return fg_set_error("%s: field '__metadata__' must be an object of strings (got %s)", where,
                            fg_json_type_name(m->type));
    for (const fg_json *c = m->child; c; c = c->next)
        if (c->type != FG_JSON_STRING)
            return fg_set_error("%s: field '__metadata__': value of '%s' must be a string (got %s)", where, c->key,
                                fg_json_type_name(c->type));
    return 0;
}

static int is_metadata(const fg_json *c) { return c->key_len == 12 && !memcmp(c->key, "__metadata__", 12); }

// Validates map[0..size) and fills st. On failure frees what it built; the caller owns map.
static int load(fg_safetensors *st, uint8_t *map, size_t size, const char *where) {
    if (size < 8)
        return fg_set_error("%s: file is %zu bytes, shorter than the 8-byte header length field", where, size);
    uint64_t hlen;
    memcpy(&hlen, map, 8);
    if (hlen > FG_ST_MAX_HEADER)
        return fg_set_error("%s: header length %" PRIu64 " exceeds the %llu-byte limit", where, hlen, FG_ST_MAX_HEADER);
    if (hlen > size - 8)
        return fg_set_error("%s: header length %" PRIu64 " is larger than the file (%zu bytes after the length field)",
                            where, hlen, size - 8);
    const uint8_t *data = map + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;
    fg_json *root = fg_json_parse((const char *)map + 8, (size_t)hlen, "header");
    if (!root) return fg_wrap_error("%s: header is not valid JSON", where);
    if (root->type != FG_JSON_OBJECT) {
        fg_set_error("%s: header must be a JSON object (got %s)", where, fg_json_type_name(root->type));
        fg_json_free(root);
        return -1;
    }
    int n = 0;
    size_t name_bytes = 0;
    for (const fg_json *c = root->child; c; c = c->next) {
        if (is_metadata(c)) {
            if (check_metadata(c, where)) { fg_json_free(root); return -1; }
            continue;
        }
        if (memchr(c->key, 0, c->key_len)) {
            fg_set_error("%s: tensor name '%s...' contains a NUL byte", where, c->key);
            fg_json_free(root);
            return -1;
        }
        n++;
        name_bytes += c->key_len + 1;
    }
    st_priv *pv = calloc(1, sizeof *pv);
    fg_st_tensor *t = calloc((size_t)n + 1, sizeof *t);
    fg_st_tensor **by_name = calloc((size_t)n + 1, sizeof *by_name), **by_off = calloc((size_t)n + 1, sizeof *by_off);
    char *names = malloc(name_bytes + 1), *path = strdup(where);
    int rc = -1;
    if (!pv || !t || !by_name || !by_off || !names || !path) {
        fg_set_error("%s: out of memory for %d tensor entries", where, n);
        goto done;
    }
    int i = 0;
    char *np = names;
    for (const fg_json *c = root->child; c; c = c->next) {
        if (is_metadata(c)) continue;
        memcpy(np, c->key, c->key_len + 1);
        t[i].name = np;
        np += c->key_len + 1;
        if (load_entry(&t[i], c, data, data_size, where)) goto done;
        by_name[i] = by_off[i] = &t[i];
        i++;
    }
    qsort(by_name, (size_t)n, sizeof *by_name, cmp_name);
    for (i = 1; i < n; i++)
        if (!strcmp(by_name[i - 1]->name, by_name[i]->name)) {
            fg_set_error("%s: duplicate tensor name '%s' in header", where, by_name[i]->name);
            goto done;
        }
    qsort(by_off, (size_t)n, sizeof *by_off, cmp_offset);
    const fg_st_tensor *prev = NULL; // the non-empty tensor that ends last so far
    for (i = 0; i < n; i++) {
        const fg_st_tensor *x = by_off[i];
        if (!x->nbytes) continue; // an empty tensor occupies no bytes, whatever its offset
        if (prev && x->data < prev->data + prev->nbytes) {
            fg_set_error("%s: tensors '%s' and '%s' overlap in the data area", where, prev->name, x->name);
            goto done;
        }
        prev = x;
    }
    pv->by_name = by_name;
    pv->names = names;
    st->map = map;
    st->size = size;
    st->n = n;
    st->t = t;
    st->path = path;
    st->priv = pv;
    rc = 0;
done:
    fg_json_free(root);
    free(by_off);
    if (rc) { free(pv); free(t); free(by_name); free(names); free(path); }
    return rc;
}

int fg_safetensors_open_mem(fg_safetensors *st, const uint8_t *buf, size_t size, const char *where) {
    memset(st, 0, sizeof *st);
    if (!where) where = "<memory>";
    if (!buf && size) return fg_set_error("%s: no buffer", where);
    // The mapping is only ever read; map is non-const for the mmap case.
    return load(st, (uint8_t *)(uintptr_t)buf, buf ? size : 0, where);
}

int fg_safetensors_open(fg_safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fg_set_error("cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb)) {
        int e = errno;
        close(fd);
        return fg_set_error("cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) { close(fd); return fg_set_error("%s: not a regular file", path); }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return fg_set_error("%s: file is %zu bytes, shorter than the 8-byte header length field", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return fg_set_error("cannot map '%s' (%zu bytes): %s", path, size, strerror(e));
    if (load(st, map, size, path)) { munmap(map, size); return -1; }
    ((st_priv *)st->priv)->owns_map = 1;
    return 0;
}

const fg_st_tensor *fg_safetensors_find(const fg_safetensors *st, const char *name) {
    if (!st || !st->priv || !name) return NULL;
    fg_st_tensor *const *by_name = ((const st_priv *)st->priv)->by_name;
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(name, by_name[mid]->name);
        if (!c) return by_name[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

int fg_safetensors_take_map(fg_safetensors *st) {
    st_priv *pv = st ? st->priv : NULL;
    if (!pv || !pv->owns_map) return -1;
    pv->owns_map = 0;
    return 0;
}

void fg_safetensors_close(fg_safetensors *st) {
    if (!st) return;
    st_priv *pv = st->priv;
    if (pv) {
        if (pv->owns_map && st->map) munmap(st->map, st->size);
        free(pv->by_name);
        free(pv->names);
        free(pv);
    }
    free(st->t);
    free(st->path);
    memset(st, 0, sizeof *st);
}

int fg_safetensors_read_f32(const fg_safetensors *st, const char *name, float *out, int64_t numel) {
    const char *where = st && st->path ? st->path : "<safetensors>";
    if (!st || !st->priv) return fg_set_error("%s: reading tensor '%s': file is not open", where, name ? name : "?");
    if (!name) return fg_set_error("%s: reading a tensor with no name", where);
    const fg_st_tensor *t = fg_safetensors_find(st, name);
    if (!t) return fg_set_error("%s: tensor '%s': not found in the file", where, name);
    char sh[160];
    shape_str(sh, sizeof sh, t->shape, t->ndim);
    if (t->numel != numel)
        return fg_set_error("%s: tensor '%s': has %" PRId64 " elements (shape %s) but %" PRId64 " were expected",
                            where, name, t->numel, sh, numel);
    if (numel && !out) return fg_set_error("%s: tensor '%s': no output buffer", where, name);
    const uint8_t *p = t->data;
    if (t->dtype == FG_F32 || t->dtype == FG_F16 || t->dtype == FG_BF16 || t->dtype == FG_F64) {
        const fg_dtype_traits *d = fg_dtype_info(t->dtype);
        const int64_t chunk = 1 << 16;
#pragma omp parallel for schedule(static) if (numel > (1 << 18))
        for (int64_t i = 0; i < numel; i += chunk)
            d->to_f32(out + i, p + i * d->block_bytes, (size_t)FG_MIN(chunk, numel - i));
        return 0;
    }
    return fg_set_error("%s: tensor '%s': dtype %s cannot be read as F32 (supported: F32, F16, BF16, F64)", where,
                        name, ST_NAME(t->dtype));
}

// ---- writer --------------------------------------------------------------------------------
static int cmp_out_name(const void *a, const void *b) {
    return strcmp((*(const fg_st_out *const *)a)->name, (*(const fg_st_out *const *)b)->name);
}

// Checks the caller's tensors; the per-tensor byte counts go to bytes[i].
static int check_out(const char *path, const fg_st_out *ts, int n, uint64_t *bytes) {
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        const fg_st_out *o = &ts[i];
        if (!o->name || !o->name[0]) return fg_set_error("%s: writing tensor %d: empty name", path, i);
        size_t k = strlen(o->name);
        if (fg_utf8_check(o->name, k) != k)
            return fg_set_error("%s: writing tensor '%s': name is not valid UTF-8", path, o->name);
        if (!strcmp(o->name, "__metadata__"))
            return fg_set_error("%s: writing tensor '__metadata__': the name is reserved", path);
        if (o->ndim < 0 || o->ndim > FG_ST_MAX_DIMS)
            return fg_set_error("%s: writing tensor '%s': ndim %d is outside [0, %d]", path, o->name, o->ndim,
                                FG_ST_MAX_DIMS);
        int64_t numel = 1;
        for (int d = 0; d < o->ndim; d++) {
            if (o->shape[d] < 0 || (double)o->shape[d] > MAX_EXACT_INT)
                return fg_set_error("%s: writing tensor '%s': dimension %d is %" PRId64, path, o->name, d, o->shape[d]);
            if (__builtin_mul_overflow(numel, o->shape[d], &numel))
                return fg_set_error("%s: writing tensor '%s': element count overflows", path, o->name);
        }
        if (numel > 0 && !o->data) return fg_set_error("%s: writing tensor '%s': data is NULL", path, o->name);
        if (o->dtype != FG_F32 && o->dtype != FG_BF16 && o->dtype != FG_F16)
            return fg_set_error("%s: writing tensor '%s': dtype %d cannot be written (F32, BF16, F16)", path, o->name, o->dtype);
        if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)ST_SIZE(o->dtype), &bytes[i]) ||
            __builtin_add_overflow(total, bytes[i], &total) || (double)total > MAX_EXACT_INT)
            return fg_set_error("%s: writing tensor '%s': total size overflows", path, o->name);
    }
    const fg_st_out **sorted = malloc(((size_t)n + 1) * sizeof *sorted);
    if (!sorted) return fg_set_error("%s: out of memory", path);
    for (int i = 0; i < n; i++) sorted[i] = &ts[i];
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_out_name);
    for (int i = 1; i < n; i++)
        if (!strcmp(sorted[i - 1]->name, sorted[i]->name)) {
            fg_set_error("%s: writing: duplicate tensor name '%s'", path, sorted[i]->name);
            free(sorted);
            return -1;
        }
    free(sorted);
    return 0;
}

// Builds the header text; *hdr is malloc'd (caller frees), its length a multiple of 8.
static int build_header(const char *path, const fg_st_out *ts, int n, const uint64_t *bytes, char **hdr,
                        size_t *hlen) {
    *hdr = NULL;
    FILE *m = open_memstream(hdr, hlen);
    if (!m) return fg_set_error("%s: out of memory building the header", path);
    fputs("{\"__metadata__\":{\"format\":\"pt\"}", m);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        fputc(',', m);
        fg_json_write_string(m, ts[i].name, strlen(ts[i].name));
        fprintf(m, ":{\"dtype\":\"%s\",\"shape\":[", ST_NAME(ts[i].dtype));
        for (int d = 0; d < ts[i].ndim; d++) fprintf(m, "%s%" PRId64, d ? "," : "", ts[i].shape[d]);
        fprintf(m, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + bytes[i]);
        off += bytes[i];
    }
    fputc('}', m);
    long pos = ftell(m);
    while (pos >= 0 && pos % 8) { fputc(' ', m); pos++; } // data area starts 8-aligned
    int bad = ferror(m) || pos < 0;
    if (fclose(m) || bad) {
        free(*hdr);
        *hdr = NULL;
        return fg_set_error("%s: out of memory building the header", path);
    }
    return 0;
}

static void fsync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) { fsync(fd); close(fd); } // best effort: the rename itself already happened
    free(dir);
}

// Writes one tensor's data (bytes long in its dtype), converting from float in chunks.
static int write_data(FILE *f, const fg_st_out *o, uint64_t bytes) {
    if (o->dtype == FG_F32) return fwrite(o->data, 1, (size_t)bytes, f) == bytes;
    const fg_dtype_traits *d = fg_dtype_info(o->dtype); // BF16 or F16 (checked by the caller)
    uint8_t buf[8192];
    size_t n = (size_t)(bytes / (uint64_t)d->block_bytes), per = sizeof buf / (size_t)d->block_bytes;
    for (size_t i = 0; i < n; i += per) {
        size_t k = FG_MIN(n - i, per);
        d->from_f32(buf, o->data + i, k);
        if (fwrite(buf, (size_t)d->block_bytes, k, f) != k) return 0;
    }
    return 1;
}

int fg_safetensors_write_f32(const char *path, const fg_st_out *tensors, int n) {
    if (!path) return fg_set_error("safetensors write: no path");
    if (n < 0 || (n > 0 && !tensors)) return fg_set_error("%s: writing: bad tensor list (n = %d)", path, n);
    uint64_t *bytes = calloc((size_t)n + 1, sizeof *bytes);
    char *tmp = malloc(strlen(path) + 5), *hdr = NULL;
    size_t hlen = 0;
    FILE *f = NULL;
    int rc = -1;
    if (!bytes || !tmp) { fg_set_error("%s: out of memory", path); goto done; }
    if (check_out(path, tensors, n, bytes) || build_header(path, tensors, n, bytes, &hdr, &hlen)) goto done;
    sprintf(tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) { fg_set_error("cannot create '%s': %s", tmp, strerror(errno)); goto done; }
    uint64_t hlen64 = hlen;
    int ok = fwrite(&hlen64, 8, 1, f) == 1 && fwrite(hdr, 1, hlen, f) == hlen;
    for (int i = 0; ok && i < n; i++)
        if (bytes[i]) ok = write_data(f, &tensors[i], bytes[i]);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) && ok) { ok = 0; e = errno; }
    f = NULL;
    if (!ok) { fg_set_error("cannot write '%s': %s", tmp, strerror(e)); unlink(tmp); goto done; }
    if (rename(tmp, path)) {
        fg_set_error("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    fsync_parent_dir(path);
    rc = 0;
done:
    free(bytes);
    free(tmp);
    free(hdr);
    return rc;
}
