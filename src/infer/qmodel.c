// qmodel.c: the quantised model file (.fgq, layout in wstore.h and docs/formats.md): writing a
// store, and opening a file as a store whose tensors point into a read-only mapping of it.
//
// Reader invariant: no byte is read at an offset before the section scan has shown that it lies
// inside the file, no allocation is sized from a length not bounded by the file size, and every
// QTAB entry (type, length in blocks, offset) is checked against the table built from CONF before
// the store is built. Errors name the file, the section or tensor, and the numbers that disagree.
#include "infer/wstore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/checkpoint.h"
#include "util.h"

#define Q_HDR 16
#define Q_SEC_HDR 12
#define Q_CONF_MAX (1u << 20)
#define Q_TOKN_MAX (256u << 20)
#define Q_MAX_SECTIONS 65536
#define Q_ALIGN 64


static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) { return get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

// ---- reader ----------------------------------------------------------------------------------

enum { Q_CONF, Q_TOKN, Q_QTAB, Q_QDAT, Q_END, Q_COUNT };
static const char QTAG[Q_COUNT][5] = {"CONF", "TOKN", "QTAB", "QDAT", "END "};
typedef struct { int present; uint64_t off, len; } q_sec;

static int q_scan(const uint8_t *b, uint64_t size, const char *where, q_sec *sec) {
    memset(sec, 0, sizeof(q_sec) * Q_COUNT);
    if (size < 8 || memcmp(b, FG_QMODEL_MAGIC, 8))
        return fg_set_error("%s: not a frugal quantised model (bad magic)", where);
    if (size < Q_HDR) return fg_set_error("%s: truncated: header needs %d bytes, file has %" PRIu64, where, Q_HDR, size);
    uint32_t version = get_u32(b + 8), flags = get_u32(b + 12);
    if (version == 0) return fg_set_error("%s: version 0 is invalid (file is corrupted)", where);
    if (version > FG_QMODEL_VERSION)
        return fg_set_error("%s: version %" PRIu32 " is newer than this frugal (reads %d) (hint: upgrade frugal)", where,
                            version, FG_QMODEL_VERSION);
    if (flags) return fg_set_error("%s: unknown header flags 0x%08" PRIx32 " (file is corrupted)", where, flags);
    uint64_t off = Q_HDR;
    for (int count = 0;; count++) {
        if (size - off < Q_SEC_HDR)
            return fg_set_error("%s: truncated: section header needs %d bytes at offset %" PRIu64 ", file has %" PRIu64, where,
                                Q_SEC_HDR, off, size);
        if (count == Q_MAX_SECTIONS) return fg_set_error("%s: more than %d sections (file is corrupted)", where, Q_MAX_SECTIONS);
        const uint8_t *h = b + off;
        uint64_t len = get_u64(h + 4), avail = size - off - Q_SEC_HDR;
        char tag[5];
        for (int i = 0; i < 4; i++) tag[i] = h[i] >= 0x20 && h[i] < 0x7f ? (char)h[i] : '?';
        tag[4] = 0;
        int k = -1;
        for (int i = 0; i < Q_COUNT; i++) if (!memcmp(h, QTAG[i], 4)) k = i;
        if (avail < 4 || len > avail - 4)
            return fg_set_error("%s: truncated: section '%s' needs %" PRIu64 " bytes at offset %" PRIu64 ", file has %" PRIu64,
                                where, tag, len > UINT64_MAX - 4 ? UINT64_MAX : len + 4, off + Q_SEC_HDR, size);
        if (k >= 0) {
            if (sec[k].present) return fg_set_error("%s: section '%s' appears twice (file is corrupted)", where, tag);
            uint64_t cap = k == Q_CONF ? Q_CONF_MAX : k == Q_TOKN ? Q_TOKN_MAX : k == Q_END ? 0 : UINT64_MAX;
            if (len > cap)
                return fg_set_error("%s: section '%s' is %" PRIu64 " bytes, more than the %" PRIu64 " allowed (file is corrupted)",
                                    where, tag, len, cap);
            sec[k] = (q_sec){1, off + Q_SEC_HDR, len};
            if (fg_crc32(0, b + off + Q_SEC_HDR, (size_t)len) != get_u32(b + off + Q_SEC_HDR + len))
                return fg_set_error("%s: checksum mismatch in section '%s' (file is corrupted)", where, tag);
        }
        off += Q_SEC_HDR + len + 4;
        if (k == Q_END) {
            if (off != size) return fg_set_error("%s: %" PRIu64 " unexpected bytes after the 'END ' section (file is corrupted)",
                                                 where, size - off);
            break;
        }
    }
    static const int required[] = {Q_CONF, Q_QTAB, Q_QDAT};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++)
        if (!sec[required[i]].present) return fg_set_error("%s: missing required section '%s'", where, QTAG[required[i]]);
    if (sec[Q_QDAT].off % Q_ALIGN)
        return fg_set_error("%s: tensor data starts at offset %" PRIu64 ", not a multiple of %d (file is corrupted)", where,
                            sec[Q_QDAT].off, Q_ALIGN);
    if (sec[Q_TOKN].present && !sec[Q_TOKN].len) return fg_set_error("%s: section 'TOKN' (tokenizer) is empty (file is corrupted)", where);
    return 0;
}

// Checks QTAB against ws's table (built from CONF) and points ws's tensors into the QDAT payload.
static int q_table(fg_wstore *ws, const uint8_t *b, const q_sec *sec, const char *where) {
    const uint8_t *p = b + sec[Q_QTAB].off, *qd = b + sec[Q_QDAT].off;
    uint64_t n = sec[Q_QTAB].len, pos = 0, dlen = sec[Q_QDAT].len, prev_end = 0;
#define NEED(k) do { if (n - pos < (uint64_t)(k)) return fg_set_error("%s: tensor table (QTAB) ends early at byte %" PRIu64 " (file is corrupted)", where, pos); } while (0)
    NEED(4);
    uint32_t count = get_u32(p);
    pos = 4;
    if (count != (uint32_t)ws->n)
        return fg_set_error("%s: the tensor table lists %" PRIu32 " tensors but the config (%s attention, %d layers) describes a "
                            "model with %d: config and tensors are of different models (file is corrupted)", where, count,
                            ws->cfg.attn_type == FG_ATTN_MLA ? "MLA" : "GQA", ws->cfg.num_hidden_layers, ws->n);
    for (int i = 0; i < ws->n; i++) {
        const fg_tensor *t = &ws->t[i];
        NEED(4);
        uint32_t nl = get_u32(p + pos);
        pos += 4;
        NEED(nl);
        if (nl != strlen(t->name) || memcmp(p + pos, t->name, nl))
            return fg_set_error("%s: tensor %d of the table is not '%s' (file is corrupted or from another model)", where, i, t->name);
        pos += nl;
        NEED(4);
        uint32_t ndim = get_u32(p + pos);
        pos += 4;
        if (ndim != (uint32_t)t->ndim) return fg_set_error("%s: tensor '%s' has %" PRIu32 " dimensions, the config says %d", where, t->name, ndim, t->ndim);
        NEED(8 * (uint64_t)ndim + 20);
        for (int d = 0; d < t->ndim; d++)
            if (get_u64(p + pos + 8 * d) != (uint64_t)t->shape[d])
                return fg_set_error("%s: tensor '%s' dimension %d is %" PRIu64 ", the config says %d", where, t->name, d,
                                    get_u64(p + pos + 8 * d), t->shape[d]);
        pos += 8 * (uint64_t)ndim;
        uint32_t type = get_u32(p + pos);
        uint64_t off = get_u64(p + pos + 4), nbytes = get_u64(p + pos + 12);
        pos += 20;
        int cols = t->ndim == 2 ? t->shape[1] : (int)t->numel;
        const char *why = fg_wstore_type_check(t, type < 32 ? (int)type : -1);
        if (why) return fg_set_error("%s: tensor '%s' of type %" PRIu32 " (%s) %s (file is corrupted)", where, t->name, type,
                                     fg_dtype_name(type < 32 ? (int)type : -1), why);
        uint64_t want = fg_wstore_tensor_bytes(t, (int)type);
        if (nbytes != want) {
            if (type == FG_Q8_0)
                return fg_set_error("%s: tensor '%s' holds %" PRIu64 " bytes of q8_0 blocks; its header shape [%d, %d] needs %d rows x "
                                    "%d blocks x %zu bytes = %" PRIu64 " (blocks do not match the header; file is corrupted)",
                                    where, t->name, nbytes, t->shape[0], cols, t->shape[0], cols / FG_Q8_BLOCK,
                                    sizeof(fg_block_q8_0), want);
            return fg_set_error("%s: tensor '%s' holds %" PRIu64 " bytes of %s data; its header shape needs %" PRIu64
                                " (file is corrupted)", where, t->name, nbytes, fg_dtype_name((int)type), want);
        }
        if (off % Q_ALIGN || off < prev_end || off > dlen || nbytes > dlen - off)
            return fg_set_error("%s: tensor '%s' data at offset %" PRIu64 " (+%" PRIu64 " bytes) is misaligned, overlaps the "
                                "previous tensor or lies outside the %" PRIu64 " bytes of tensor data (file is corrupted)",
                                where, t->name, off, nbytes, dlen);
        prev_end = off + nbytes;
        ws->type[i] = (int)type;
        ws->data[i] = qd + off;
    }
    if (pos != n) return fg_set_error("%s: %" PRIu64 " unexpected bytes at the end of the tensor table (file is corrupted)", where, n - pos);
#undef NEED
    return 0;
}

// Parses b[0..size) (64-byte aligned) into a store pointing into it.
static fg_wstore *q_parse(const uint8_t *b, uint64_t size, const char *where) {
    q_sec sec[Q_COUNT];
    if (q_scan(b, size, where, sec)) return NULL;
    fg_config c;
    char *conf = malloc(sec[Q_CONF].len + 1);
    if (!conf) { fg_set_error("out of memory"); return NULL; }
    memcpy(conf, b + sec[Q_CONF].off, sec[Q_CONF].len);
    conf[sec[Q_CONF].len] = 0;
    char cwhere[1100];
    snprintf(cwhere, sizeof cwhere, "%s[CONF]", where);
    // Not checked against fp32 memory: the store maps the file, the bound below ties the size to it.
    int rc = fg_config_from_json_ex(&c, conf, sec[Q_CONF].len, cwhere, NULL, 0);
    free(conf);
    if (rc) return NULL;
    // The table's byte sizes must fit the data before a model-sized table is even built: a bound
    // on the parameter count from the data length and the densest type a store holds.
    int64_t total, active;
    fg_config_param_counts(&c, &total, &active);
    double dense = 4;
    for (int ty = 0; ty < FG_DTYPE_COUNT; ty++)
        if (FG_STORE_TYPES & 1u << ty) dense = fmin(dense, (double)fg_dtype_info(ty)->block_bytes / fg_dtype_info(ty)->block);
    if ((double)total * dense > (double)sec[Q_QDAT].len * 1.0001 + 4096.0 * 64)
        return fg_set_error("%s: the config describes %" PRId64 " parameters, more than %" PRIu64 " bytes of tensor data can hold "
                            "(file is corrupted)", where, total, sec[Q_QDAT].len), NULL;
    fg_wstore *ws;
    {
        // store without tensors yet: fg_wstore_create needs pointers; build through the same path
        // with placeholders filled by q_table.
        int n;
        size_t tot;
        fg_tensor *t = fg_tensor_table(&c, &n, &tot);
        if (!t) return NULL;
        int *types = calloc(n, sizeof *types);
        const void **data = calloc(n, sizeof *data);
        if (!types || !data) { free(t); free(types); free(data); fg_set_error("out of memory"); return NULL; }
        fg_wstore probe = {.cfg = c, .n = n, .t = t, .type = types, .data = data};
        if (q_table(&probe, b, sec, where)) { free(t); free(types); free(data); return NULL; }
        ws = fg_wstore_create(&c, t, n, types, data);
        free(t); free(types); free(data);
        if (!ws) { fg_wrap_error("%s", where); return NULL; }
    }
    if (sec[Q_TOKN].present) {
        if (!(ws->tok = malloc(sec[Q_TOKN].len))) { fg_wstore_free(ws); fg_set_error("out of memory"); return NULL; }
        memcpy(ws->tok, b + sec[Q_TOKN].off, sec[Q_TOKN].len);
        ws->tok_len = sec[Q_TOKN].len;
    }
    return ws;
}

fg_wstore *fg_qmodel_open_mem(const uint8_t *buf, size_t len, const char *where) {
    if (!buf && len) { fg_set_error("quantised model: no buffer"); return NULL; }
    // Tensors must sit at their file alignment: copy a misaligned buffer (the file path maps pages).
    uint8_t *copy = NULL;
    if ((uintptr_t)buf % Q_ALIGN) {
        if (!(copy = aligned_alloc(Q_ALIGN, (len + Q_ALIGN - 1) / Q_ALIGN * Q_ALIGN + Q_ALIGN))) { fg_set_error("out of memory"); return NULL; }
        memcpy(copy, buf, len);
        buf = copy;
    }
    fg_wstore *ws = q_parse(buf ? buf : (const uint8_t *)"", len, where);
    if (copy && (!ws || fg_wstore_keep(ws, copy))) { free(copy); fg_wstore_free(ws); return NULL; }
    return ws;
}

fg_wstore *fg_qmodel_open(const char *path) {
    if (!path) { fg_set_error("quantised model: no path"); return NULL; }
    int fd = open(path, O_RDONLY);
    if (fd < 0) { fg_set_error("cannot open '%s': %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fd, &st) || st.st_size <= 0) {
        close(fd);
        fg_set_error("%s: %s", path, st.st_size == 0 ? "empty file (not a frugal quantised model)" : strerror(errno));
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) { fg_set_error("%s: cannot map the file: %s", path, strerror(errno)); return NULL; }
    fg_wstore *ws = q_parse(map, len, path);
    if (!ws) { munmap(map, len); return NULL; }
    if (fg_wstore_keep_mapping(ws, map, len)) { fg_wstore_free(ws); munmap(map, len); return NULL; }
    return ws;
}

int fg_file_is_qmodel(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[8];
    int yes = fread(m, 1, 8, f) == 8 && !memcmp(m, FG_QMODEL_MAGIC, 8);
    fclose(f);
    return yes;
}

int fg_wstore_tokenizer(const fg_wstore *ws, fg_tokenizer **tok) {
    *tok = NULL;
    if (!ws->tok) return 0;
    return (*tok = fg_tokenizer_load_mem(ws->tok, ws->tok_len, "quantised model [TOKN]")) ? 0 : -1;
}

int fg_wstore_set_tokenizer(fg_wstore *ws, const void *data, size_t len) {
    free(ws->tok);
    ws->tok = NULL;
    ws->tok_len = 0;
    if (!data || !len) return 0;
    if (len > Q_TOKN_MAX) return fg_set_error("tokenizer of %zu bytes is larger than the %u allowed", len, Q_TOKN_MAX);
    if (!(ws->tok = malloc(len))) return fg_set_error("out of memory");
    memcpy(ws->tok, data, len);
    ws->tok_len = len;
    return 0;
}

// ---- writer ----------------------------------------------------------------------------------

typedef struct { FILE *f; uint32_t crc; uint64_t pos; int err; } q_w;

static void w_raw(q_w *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) w->err = 1;
    w->pos += n;
}
static void w_u32(q_w *w, uint32_t v) { uint8_t b[4]; for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i)); w_raw(w, b, 4); }
static void w_u64(q_w *w, uint64_t v) { uint8_t b[8]; for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i)); w_raw(w, b, 8); }
static void w_begin(q_w *w, const char *tag, uint64_t len) { w_raw(w, tag, 4); w_u64(w, len); w->crc = 0; }
static void w_data(q_w *w, const void *p, size_t n) { w->crc = fg_crc32(w->crc, p, n); w_raw(w, p, n); }
static void w_data_u32(q_w *w, uint32_t v) { uint8_t b[4]; for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i)); w_data(w, b, 4); }
static void w_data_u64(q_w *w, uint64_t v) { uint8_t b[8]; for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i)); w_data(w, b, 8); }
static void w_end(q_w *w) { uint32_t c = w->crc; w_u32(w, c); }

static int fsync_dir_of(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) { if (slash == dir) slash[1] = 0; else *slash = 0; } else strcpy(dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int fg_qmodel_save(const char *path, const fg_wstore *ws) {
    if (!path || !ws) return fg_set_error("quantised model save: no path or store");
    for (int i = 0; i < ws->n; i++)
        if (ws->type[i] == FG_F8_E4M3)
            return fg_set_error("quantised model save: tensor '%s' is FP8 with block scales, which .fgq files do not hold "
                                "(hint: run the Hugging Face directory itself, or convert it and quantize the checkpoint)", ws->t[i].name);
    char *conf = fg_config_to_json(&ws->cfg);
    if (!conf) return fg_set_error("out of memory");
    size_t conf_len = strlen(conf);
    // Tensor offsets inside QDAT, each 64-aligned.
    uint64_t *offs = malloc(sizeof(uint64_t) * (size_t)ws->n), dlen = 0, qtab = 4;
    if (!offs) { free(conf); return fg_set_error("out of memory"); }
    for (int i = 0; i < ws->n; i++) {
        offs[i] = dlen;
        dlen = (dlen + fg_wstore_tensor_bytes(&ws->t[i], ws->type[i]) + Q_ALIGN - 1) / Q_ALIGN * Q_ALIGN;
        qtab += 4 + strlen(ws->t[i].name) + 4 + 8 * (uint64_t)ws->t[i].ndim + 20;
    }
    size_t tmp_len = strlen(path) + 5;
    char *tmp = malloc(tmp_len);
    if (!tmp) { free(conf); free(offs); return fg_set_error("out of memory"); }
    snprintf(tmp, tmp_len, "%s.tmp", path);
    q_w w = {.f = fopen(tmp, "wb")};
    if (!w.f) {
        int e = errno;
        free(conf); free(offs); free(tmp);
        return fg_set_error("cannot create '%s.tmp': %s", path, strerror(e));
    }
    w_raw(&w, FG_QMODEL_MAGIC, 8);
    w_u32(&w, FG_QMODEL_VERSION);
    w_u32(&w, 0);
    w_begin(&w, "CONF", conf_len); w_data(&w, conf, conf_len); w_end(&w);
    if (ws->tok) { w_begin(&w, "TOKN", ws->tok_len); w_data(&w, ws->tok, ws->tok_len); w_end(&w); }
    w_begin(&w, "QTAB", qtab);
    w_data_u32(&w, (uint32_t)ws->n);
    for (int i = 0; i < ws->n; i++) {
        const fg_tensor *t = &ws->t[i];
        size_t nl = strlen(t->name);
        w_data_u32(&w, (uint32_t)nl);
        w_data(&w, t->name, nl);
        w_data_u32(&w, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) w_data_u64(&w, (uint64_t)t->shape[d]);
        w_data_u32(&w, (uint32_t)ws->type[i]);
        w_data_u64(&w, offs[i]);
        w_data_u64(&w, fg_wstore_tensor_bytes(t, ws->type[i]));
    }
    w_end(&w);
    // 'PAD ' so that QDAT's payload starts at a multiple of 64: header 12 + pad + crc 4, then 12.
    uint64_t at = w.pos + Q_SEC_HDR + 4 + Q_SEC_HDR, pad = (Q_ALIGN - at % Q_ALIGN) % Q_ALIGN;
    static const uint8_t zeros[Q_ALIGN];
    w_begin(&w, "PAD ", pad); w_data(&w, zeros, (size_t)pad); w_end(&w);
    w_begin(&w, "QDAT", dlen);
    for (int i = 0; i < ws->n; i++) {
        size_t nb = fg_wstore_tensor_bytes(&ws->t[i], ws->type[i]);
        w_data(&w, ws->data[i], nb);
        uint64_t end = i + 1 < ws->n ? offs[i + 1] : dlen;
        w_data(&w, zeros, (size_t)(end - offs[i] - nb));
    }
    w_end(&w);
    w_begin(&w, "END ", 0); w_end(&w);
    int err = w.err || fflush(w.f) || fsync(fileno(w.f));
    err |= fclose(w.f) != 0;
    free(conf); free(offs);
    if (err) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return fg_set_error("writing '%s' failed: %s", path, strerror(e));
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return fg_set_error("cannot rename '%s.tmp' to '%s': %s", path, path, strerror(e));
    }
    free(tmp);
    fsync_dir_of(path);
    return 0;
}
