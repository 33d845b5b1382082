// checkpoint.c: the .fgck writer and reader (layout and contracts in checkpoint.h).
//
// The reader works on a "source" that is either a buffer or a file descriptor (pread), so the
// fuzzed path and the file path are the same code and a file is never read whole into memory:
// small sections (CONF, META, TTAB, TUCH) are copied out, the big ones (WGHT, ADAM) are read
// straight into their destination while their CRC is computed. Invariant of the reader: no byte
// at an offset is read before a scan has shown that offset + length lies inside the source, and
// no allocation is sized from a length the scan has not bounded by the source size.
// The writer streams sections through stdio; CRCs are computed while writing, so saving needs no
// memory beyond the small sections.
#include "formats/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/json.h"
#include "util.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c stores raw float32/int64 arrays and assumes a little-endian host"
#endif

#define CK_HDR 16                       // magic + version + flags
#define CK_SEC_HDR 12                   // tag + length
#define CK_CONF_MAX (1u << 20)
#define CK_META_MAX (64u << 20)
#define CK_TOKN_MAX (256u << 20)        // a tokenizer.json or GGUF vocabulary (DeepSeek-V3: ~8 MB)
#define CK_MAX_SECTIONS 65536           // unknown sections included; bounds the scan's work
#define CK_T_MAX ((int64_t)1 << 62)     // AdamW step counts: far from overflow in ++t

// ---- CRC-32 (slicing by 8) -------------------------------------------------------------------

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
        crc_tab[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t fg_crc32(uint32_t crc, const void *p, size_t n) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *b = p;
    uint32_t c = ~crc;
    for (; n >= 8; n -= 8, b += 8) {
        uint32_t lo = c ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
        c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^
            crc_tab[3][b[4]] ^ crc_tab[2][b[5]] ^ crc_tab[1][b[6]] ^ crc_tab[0][b[7]];
    }
    while (n--) c = (c >> 8) ^ crc_tab[0][(c ^ *b++) & 0xff];
    return ~c;
}

// ---- little-endian helpers -------------------------------------------------------------------

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) { return get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }
static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

// ---- sections --------------------------------------------------------------------------------

enum { S_CONF, S_META, S_TTAB, S_WGHT, S_TUCH, S_ADAM, S_TOKN, S_END, S_COUNT };
static const char SEC_TAG[S_COUNT][5] = {"CONF", "META", "TTAB", "WGHT", "TUCH", "ADAM", "TOKN", "END "};
static const char *const SEC_WHAT[S_COUNT] = {"config", "train state", "tensor table", "tensor data",
                                              "touched flags", "optimizer state", "tokenizer", "end marker"};

typedef struct { int present; uint64_t off, len; } ck_sec; // off: first payload byte

// A checkpoint being read: a buffer (mem != NULL) or a file descriptor.
typedef struct {
    const char *where;
    const uint8_t *mem;
    int fd;
    uint64_t size;
    ck_sec sec[S_COUNT];
} ck_src;

// Reads n bytes at off. Caller has checked off + n <= size; a short read means the file shrank.
static int src_read(const ck_src *s, uint64_t off, void *dst, size_t n) {
    if (s->mem) { if (n) memcpy(dst, s->mem + off, n); return 0; }
    uint8_t *d = dst;
    while (n) {
        size_t want = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t got = pread(s->fd, d, want, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return fg_set_error("%s: read error at offset %" PRIu64 ": %s", s->where, off, strerror(errno));
        if (got == 0) return fg_set_error("%s: file shrank while being read (at offset %" PRIu64 ")", s->where, off);
        d += got; off += (uint64_t)got; n -= (size_t)got;
    }
    return 0;
}

static int sec_index(const uint8_t tag[4]) {
    for (int i = 0; i < S_COUNT; i++)
        if (!memcmp(tag, SEC_TAG[i], 4)) return i;
    return -1;
}

// Checks the header and walks every section header up to 'END '. Records the known sections.
static int scan(ck_src *s) {
    uint8_t h[CK_HDR];
    memset(s->sec, 0, sizeof s->sec);
    size_t have = s->size < CK_HDR ? (size_t)s->size : CK_HDR;
    if (src_read(s, 0, h, have)) return -1;
    if (memcmp(h, FG_CKPT_MAGIC, have < 8 ? have : 8))
        return fg_set_error("%s: not a frugal checkpoint (bad magic)", s->where);
    if (have < CK_HDR)
        return fg_set_error("%s: truncated: header needs %d bytes at offset 0, file has %" PRIu64, s->where, CK_HDR, s->size);
    uint32_t version = get_u32(h + 8), flags = get_u32(h + 12);
    if (version == 0) return fg_set_error("%s: version 0 is invalid (file is corrupted)", s->where);
    if (version > FG_CKPT_VERSION)
        return fg_set_error("%s: version %" PRIu32 " is newer than this frugal (reads %d) (hint: upgrade frugal)",
                            s->where, version, FG_CKPT_VERSION);
    if (flags & ~(uint32_t)(FG_CKPT_HAS_META | FG_CKPT_HAS_ADAM))
        return fg_set_error("%s: unknown header flags 0x%08" PRIx32 " (file is corrupted, or from a newer frugal)", s->where, flags);
    uint64_t off = CK_HDR;
    for (int count = 0;; count++) {
        if (off == s->size)
            return fg_set_error("%s: truncated: file ends at offset %" PRIu64 " before the 'END ' section", s->where, off);
        if (s->size - off < CK_SEC_HDR)
            return fg_set_error("%s: truncated: section header needs %d bytes at offset %" PRIu64 ", file has %" PRIu64,
                                s->where, CK_SEC_HDR, off, s->size);
        if (count == CK_MAX_SECTIONS) return fg_set_error("%s: more than %d sections (file is corrupted)", s->where, CK_MAX_SECTIONS);
        uint8_t sh[CK_SEC_HDR];
        if (src_read(s, off, sh, CK_SEC_HDR)) return -1;
        uint64_t len = get_u64(sh + 4), avail = s->size - off - CK_SEC_HDR;
        int k = sec_index(sh);
        char tag[5];
        for (int i = 0; i < 4; i++) tag[i] = sh[i] >= 0x20 && sh[i] < 0x7f ? (char)sh[i] : '?';
        tag[4] = 0;
        if (avail < 4 || len > avail - 4)
            return fg_set_error("%s: truncated: %s ('%s') needs %" PRIu64 " bytes at offset %" PRIu64 ", file has %" PRIu64,
                                s->where, k >= 0 ? SEC_WHAT[k] : "section", tag,
                                len > UINT64_MAX - 4 ? UINT64_MAX : len + 4, off + CK_SEC_HDR, s->size);
        if (k >= 0) {
            if (s->sec[k].present) return fg_set_error("%s: section '%s' appears twice (file is corrupted)", s->where, tag);
            uint64_t cap = k == S_CONF ? CK_CONF_MAX : k == S_META ? CK_META_MAX : k == S_TOKN ? CK_TOKN_MAX : k == S_END ? 0 : UINT64_MAX;
            if (len > cap)
                return fg_set_error("%s: section '%s' is %" PRIu64 " bytes, more than the %" PRIu64 " allowed (file is corrupted)",
                                    s->where, tag, len, cap);
            s->sec[k] = (ck_sec){1, off + CK_SEC_HDR, len};
        }
        off += CK_SEC_HDR + len + 4;
        if (k == S_END) {
            uint8_t c[4];
            if (src_read(s, off - 4, c, 4)) return -1;
            if (get_u32(c) != 0) return fg_set_error("%s: checksum mismatch in section 'END ' (file is corrupted)", s->where);
            if (off != s->size)
                return fg_set_error("%s: %" PRIu64 " unexpected bytes after the 'END ' section (file is corrupted)", s->where, s->size - off);
            break;
        }
    }
    // The header says which optional sections exist, so a damaged tag cannot silently drop one.
    static const struct { int k; uint32_t flag; } optional[] = {{S_META, FG_CKPT_HAS_META}, {S_ADAM, FG_CKPT_HAS_ADAM}};
    for (size_t i = 0; i < sizeof optional / sizeof *optional; i++)
        if (!(flags & optional[i].flag) != !s->sec[optional[i].k].present)
            return fg_set_error(flags & optional[i].flag ? "%s: the header announces a '%s' section that the file lacks (file is corrupted)"
                                                         : "%s: the file has a '%s' section that the header does not announce (file is corrupted)",
                                s->where, SEC_TAG[optional[i].k]);
    static const int required[] = {S_CONF, S_TTAB, S_WGHT, S_TUCH};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++)
        if (!s->sec[required[i]].present)
            return fg_set_error("%s: missing required section '%s' (%s)", s->where, SEC_TAG[required[i]], SEC_WHAT[required[i]]);
    return 0;
}

// Sequential reader of one section's payload that accumulates its CRC.
typedef struct { const ck_src *s; int k; uint64_t pos; uint32_t crc; } ck_rd;

static ck_rd rd_open(const ck_src *s, int k) { return (ck_rd){s, k, 0, 0}; }
// Reads the next n payload bytes into dst. Caller has checked that the payload holds them.
static int rd_take(ck_rd *r, void *dst, size_t n) {
    if (src_read(r->s, r->s->sec[r->k].off + r->pos, dst, n)) return -1;
    r->crc = fg_crc32(r->crc, dst, n);
    r->pos += n;
    return 0;
}
// Checks that the whole payload was read and that its CRC matches the stored one.
static int rd_close(ck_rd *r) {
    const ck_sec *sec = &r->s->sec[r->k];
    uint8_t c[4];
    if (r->pos != sec->len) return fg_set_error("%s: internal error: section '%s' read partly", r->s->where, SEC_TAG[r->k]);
    if (src_read(r->s, sec->off + sec->len, c, 4)) return -1;
    if (get_u32(c) != r->crc)
        return fg_set_error("%s: checksum mismatch in section '%s' (file is corrupted)", r->s->where, SEC_TAG[r->k]);
    return 0;
}

// CRC-checks a whole section without keeping it (load_into validates before it overwrites).
static int sec_verify(const ck_src *s, int k) {
    ck_rd r = rd_open(s, k);
    uint64_t len = s->sec[k].len;
    if (s->mem) {
        r.crc = fg_crc32(0, s->mem + s->sec[k].off, (size_t)len);
        r.pos = len;
        return rd_close(&r);
    }
    size_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk);
    if (!buf) return fg_set_error("%s: out of memory", s->where);
    int rc = 0;
    while (!rc && r.pos < len) rc = rd_take(&r, buf, (size_t)FG_MIN((uint64_t)chunk, len - r.pos));
    free(buf);
    return rc ? rc : rd_close(&r);
}

// Copies a small section out (NUL-terminated, malloc'd, caller frees) after checking its CRC.
static char *sec_read_small(const ck_src *s, int k, size_t *len) {
    uint64_t n = s->sec[k].len; // bounded by the source size (scan)
    char *buf = malloc((size_t)n + 1);
    if (!buf) { fg_set_error("%s: out of memory reading section '%s'", s->where, SEC_TAG[k]); return NULL; }
    ck_rd r = rd_open(s, k);
    if (rd_take(&r, buf, (size_t)n) || rd_close(&r)) { free(buf); return NULL; }
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static int read_conf(const ck_src *s, fg_config *c) {
    size_t len;
    char *text = sec_read_small(s, S_CONF, &len);
    if (!text) return -1;
    char where[512];
    snprintf(where, sizeof where, "%s[CONF]", s->where);
    int rc = fg_config_from_json(c, text, len, where, NULL);
    free(text);
    return rc;
}

// ---- config comparison -----------------------------------------------------------------------

enum { CF_INT, CF_FLOAT };
typedef struct { const char *name; int kind; size_t off; } cfg_field;
#define CF(field, name, kind) {name, kind, offsetof(fg_config, field)}
static const cfg_field CFG_FIELDS[] = {
    CF(vocab_size, "vocab_size", CF_INT), CF(hidden_size, "hidden_size", CF_INT),
    CF(num_hidden_layers, "num_hidden_layers", CF_INT), CF(intermediate_size, "intermediate_size", CF_INT),
    CF(moe_intermediate_size, "moe_intermediate_size", CF_INT),
    CF(first_k_dense_replace, "first_k_dense_replace", CF_INT), CF(moe_layer_freq, "moe_layer_freq", CF_INT),
    CF(num_attention_heads, "num_attention_heads", CF_INT), CF(num_key_value_heads, "num_key_value_heads", CF_INT),
    CF(attn_type, "attention_type", CF_INT), CF(q_lora_rank, "q_lora_rank", CF_INT),
    CF(kv_lora_rank, "kv_lora_rank", CF_INT), CF(qk_nope_head_dim, "qk_nope_head_dim", CF_INT),
    CF(qk_rope_head_dim, "qk_rope_head_dim", CF_INT), CF(v_head_dim, "v_head_dim", CF_INT),
    CF(head_dim, "head_dim", CF_INT), CF(attention_bias, "attention_bias", CF_INT),
    CF(n_routed_experts, "n_routed_experts", CF_INT), CF(n_shared_experts, "n_shared_experts", CF_INT),
    CF(num_experts_per_tok, "num_experts_per_tok", CF_INT), CF(scoring_func, "scoring_func", CF_INT),
    CF(topk_method, "topk_method", CF_INT), CF(n_group, "n_group", CF_INT), CF(topk_group, "topk_group", CF_INT),
    CF(norm_topk_prob, "norm_topk_prob", CF_INT), CF(routed_scaling_factor, "routed_scaling_factor", CF_FLOAT),
    CF(rms_norm_eps, "rms_norm_eps", CF_FLOAT), CF(rope_theta, "rope_theta", CF_FLOAT),
    CF(max_position_embeddings, "max_position_embeddings", CF_INT), CF(rope_interleave, "rope_interleave", CF_INT),
    CF(rope_yarn, "rope_scaling (yarn)", CF_INT), CF(rope_factor, "rope_scaling.factor", CF_FLOAT),
    CF(rope_original_max_position_embeddings, "rope_scaling.original_max_position_embeddings", CF_INT),
    CF(rope_beta_fast, "rope_scaling.beta_fast", CF_FLOAT), CF(rope_beta_slow, "rope_scaling.beta_slow", CF_FLOAT),
    CF(rope_mscale, "rope_scaling.mscale", CF_FLOAT), CF(rope_mscale_all_dim, "rope_scaling.mscale_all_dim", CF_FLOAT),
    CF(tie_word_embeddings, "tie_word_embeddings", CF_INT), CF(rope_llama3, "rope_scaling (llama3)", CF_INT),
    CF(rope_low_freq_factor, "rope_scaling.low_freq_factor", CF_FLOAT),
    CF(rope_high_freq_factor, "rope_scaling.high_freq_factor", CF_FLOAT),
    CF(num_nextn_predict_layers, "num_nextn_predict_layers", CF_INT),
};
#undef CF

// The model's config as the file would store it (fields that JSON does not carry reset).
static int normalise_config(const fg_config *in, fg_config *out) {
    char *json = fg_config_to_json(in);
    if (!json) return -1;
    int rc = fg_config_from_json(out, json, strlen(json), "model config", NULL);
    free(json);
    return rc;
}

// Compares the file's config with the model's; the error names the first differing field.
static int compare_config(const char *where, const fg_config *file, const fg_config *model) {
    fg_config norm;
    if (normalise_config(model, &norm)) norm = *model;
    for (size_t i = 0; i < sizeof CFG_FIELDS / sizeof *CFG_FIELDS; i++) {
        const cfg_field *f = &CFG_FIELDS[i];
        const char *a = (const char *)file + f->off, *b = (const char *)&norm + f->off;
        if (f->kind == CF_INT) {
            int x, y;
            memcpy(&x, a, sizeof x); memcpy(&y, b, sizeof y);
            if (x != y) return fg_set_error("%s: checkpoint config differs from the model's: %s %d vs %d", where, f->name, x, y);
        } else {
            float x, y;
            memcpy(&x, a, sizeof x); memcpy(&y, b, sizeof y);
            if (memcmp(&x, &y, sizeof x))
                return fg_set_error("%s: checkpoint config differs from the model's: %s %.9g vs %.9g", where, f->name, x, y);
        }
    }
    if (memcmp(file, &norm, sizeof norm)) // a field added to fg_config but not to CFG_FIELDS
        return fg_set_error("%s: checkpoint config differs from the model's in a field this reader cannot name", where);
    return 0;
}

// ---- tensor table ----------------------------------------------------------------------------

typedef struct { const uint8_t *p; size_t n, pos; } cursor;
static int cur_need(cursor *c, uint64_t n) { return n <= c->n - c->pos; }

// Prints up to 60 bytes of a file-supplied name, non-printable bytes as '?'.
static void safe_name(char *out, const uint8_t *p, size_t n) {
    size_t k = n < 60 ? n : 60;
    for (size_t i = 0; i < k; i++) out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    strcpy(out + k, n > k ? "..." : "");
}

static void shape_str(char *out, size_t cap, const uint64_t *shape, uint32_t ndim) {
    int k = snprintf(out, cap, "(");
    for (uint32_t d = 0; d < ndim && k > 0 && (size_t)k < cap; d++)
        k += snprintf(out + k, cap - (size_t)k, "%s%" PRIu64, d ? ", " : "", shape[d]);
    if (k > 0 && (size_t)k < cap) snprintf(out + k, cap - (size_t)k, ")");
}

// Checks TTAB against the table of the model built from CONF: count, order, names, shapes, numel.
static int check_ttab(const ck_src *s, const fg_model *m) {
    size_t len;
    char *buf = sec_read_small(s, S_TTAB, &len);
    if (!buf) return -1;
    cursor c = {(const uint8_t *)buf, len, 0};
    int rc = -1;
#define TRUNC(what) do { fg_set_error("%s: tensor table: %s runs past the end of section 'TTAB' (file is corrupted)", s->where, what); goto done; } while (0)
    if (!cur_need(&c, 4)) TRUNC("the count");
    uint32_t n = get_u32(c.p);
    c.pos = 4;
    if (n != (uint32_t)m->n_tensors) {
        fg_set_error("%s: tensor table has %" PRIu32 " tensors but the model built from its config has %d "
                     "(hint: written by a different frugal version?)", s->where, n, m->n_tensors);
        goto done;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        if (!cur_need(&c, 4)) TRUNC("a name length");
        uint32_t nl = get_u32(c.p + c.pos);
        c.pos += 4;
        if (!cur_need(&c, nl)) TRUNC("a name");
        const uint8_t *name = c.p + c.pos;
        c.pos += nl;
        if (nl != strlen(t->name) || memcmp(name, t->name, nl)) {
            char nm[64];
            safe_name(nm, name, nl);
            fg_set_error("%s: tensor %d is '%s' in the file but '%s' in the model built from its config "
                         "(hint: written by a different frugal version?)", s->where, i, nm, t->name);
            goto done;
        }
        if (!cur_need(&c, 4)) TRUNC("an ndim");
        uint32_t ndim = get_u32(c.p + c.pos);
        c.pos += 4;
        if (ndim != (uint32_t)t->ndim) {
            fg_set_error("%s: tensor '%s' has %" PRIu32 " dimensions in the file, %d in the model", s->where, t->name, ndim, t->ndim);
            goto done;
        }
        if (!cur_need(&c, 8 * (uint64_t)ndim + 12)) TRUNC("a shape");
        uint64_t shape[2], mshape[2];
        for (uint32_t d = 0; d < ndim; d++) {
            shape[d] = get_u64(c.p + c.pos);
            c.pos += 8;
            mshape[d] = (uint64_t)t->shape[d];
        }
        uint64_t numel = get_u64(c.p + c.pos);
        c.pos += 12; // numel, flags (informational)
        if (memcmp(shape, mshape, 8 * ndim) || numel != t->numel) {
            char a[80], b[80];
            shape_str(a, sizeof a, shape, ndim);
            shape_str(b, sizeof b, mshape, ndim);
            fg_set_error("%s: tensor '%s' is %s (numel %" PRIu64 ") in the file, %s (numel %zu) in the model",
                         s->where, t->name, a, numel, b, t->numel);
            goto done;
        }
    }
    if (c.pos != c.n) {
        fg_set_error("%s: tensor table has %zu unexpected trailing bytes (file is corrupted)", s->where, c.n - c.pos);
        goto done;
    }
#undef TRUNC
    rc = 0;
done:
    free(buf);
    return rc;
}

// ---- train state (META) ----------------------------------------------------------------------

// Parses 1..20 decimal digits into a value <= max.
static int parse_dec(const char *p, size_t n, uint64_t max, uint64_t *out) {
    if (n < 1 || n > 20) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (max - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_hex(const char *p, size_t n, uint64_t *out) {
    if (n < 1 || n > 16) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int c = p[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

static int meta_u64(const char *where, const fg_json *root, const char *key, uint64_t max, uint64_t *out) {
    const fg_json *v = fg_json_get(root, key);
    if (!v) return fg_set_error("%s: missing field '%s'", where, key);
    if (v->type != FG_JSON_STRING || parse_dec(v->str, v->len, max, out))
        return fg_set_error("%s:%d: field '%s' must be a string of decimal digits, at most %" PRIu64, where, v->line, key, max);
    return 0;
}

static int meta_rng(const char *where, const fg_json *root, const char *key, fg_rng *r) {
    const fg_json *v = fg_json_get(root, key);
    if (!v) return fg_set_error("%s: missing field '%s'", where, key);
    if (v->type != FG_JSON_ARRAY || v->n != 4)
        return fg_set_error("%s:%d: field '%s' must be an array of 4 hex strings", where, v->line, key);
    int i = 0;
    for (const fg_json *e = v->child; e; e = e->next, i++)
        if (e->type != FG_JSON_STRING || parse_hex(e->str, e->len, &r->s[i]))
            return fg_set_error("%s:%d: field '%s' element %d must be a string of 1 to 16 hex digits", where, e->line, key, i);
    return 0;
}

// Parses META into *st (train_json malloc'd). On error *st is zeroed.
static int read_meta(const ck_src *s, fg_train_state *st) {
    memset(st, 0, sizeof *st);
    if (!s->sec[S_META].present)
        return fg_set_error("%s: no train state in this checkpoint (section 'META' is missing; "
                            "hint: it was saved without one: load weights only)", s->where);
    size_t len;
    char *text = sec_read_small(s, S_META, &len);
    if (!text) return -1;
    char where[512];
    snprintf(where, sizeof where, "%s[META]", s->where);
    fg_json *root = fg_json_parse(text, len, where);
    free(text);
    if (!root) return -1;
    int rc = -1;
    uint64_t step, tokens;
    if (root->type != FG_JSON_OBJECT) { fg_set_error("%s: train state must be a JSON object", where); goto done; }
    if (meta_u64(where, root, "step", INT64_MAX, &step) || meta_u64(where, root, "tokens_seen", INT64_MAX, &tokens) ||
        meta_u64(where, root, "batches_drawn", UINT64_MAX, &st->batches_drawn) ||
        meta_rng(where, root, "rng", &st->rng) || meta_rng(where, root, "data_rng", &st->data_rng))
        goto done;
    st->step = (int64_t)step;
    st->tokens_seen = (int64_t)tokens;
    const fg_json *tok = fg_json_get(root, "tokenizer");
    if (!tok) { fg_set_error("%s: missing field 'tokenizer'", where); goto done; }
    if (tok->type != FG_JSON_STRING || tok->len >= sizeof st->tokenizer || strlen(tok->str) != tok->len) {
        fg_set_error("%s:%d: field 'tokenizer' must be a string of at most %zu bytes without NUL", where, tok->line,
                     sizeof st->tokenizer - 1);
        goto done;
    }
    memcpy(st->tokenizer, tok->str, tok->len + 1);
    const fg_json *sp = fg_json_get(root, "stream");
    if (sp) { // shard stream position (absent in checkpoints of runs that did not read shards)
        fg_rng pos;
        if (meta_rng(where, root, "stream", &pos)) goto done;
        memcpy(st->stream, pos.s, sizeof st->stream);
    }
    if (s->sec[S_TOKN].present) {
        if (!s->sec[S_TOKN].len) { fg_set_error("%s: section 'TOKN' (tokenizer) is empty (file is corrupted)", s->where); goto done; }
        if (strcmp(st->tokenizer, "bpe")) {
            fg_set_error("%s: the file carries a tokenizer but its train state says tokenizer '%s' (file is corrupted)",
                         s->where, st->tokenizer);
            goto done;
        }
        if (!(st->tokenizer_data = sec_read_small(s, S_TOKN, &st->tokenizer_len))) goto done;
    } else if (!strcmp(st->tokenizer, "bpe")) {
        fg_set_error("%s: train state says tokenizer 'bpe' but section 'TOKN' is missing (file is corrupted)", s->where);
        goto done;
    }
    const fg_json *tj = fg_json_get(root, "train_json");
    if (tj && tj->type != FG_JSON_NULL) {
        if (tj->type != FG_JSON_STRING || strlen(tj->str) != tj->len) {
            fg_set_error("%s:%d: field 'train_json' must be null or a string without NUL", where, tj->line);
            goto done;
        }
        if (!(st->train_json = malloc(tj->len + 1))) { fg_set_error("%s: out of memory", where); goto done; }
        memcpy(st->train_json, tj->str, tj->len + 1);
    }
    rc = 0;
done:
    fg_json_free(root);
    if (rc) { free(st->train_json); free(st->tokenizer_data); memset(st, 0, sizeof *st); }
    return rc;
}

// ---- loading ---------------------------------------------------------------------------------

// Section sizes implied by the model; checked against the file before anything big is read.
static int check_sizes(const ck_src *s, const fg_model *m) {
    uint64_t np = m->n_params, nt = (uint64_t)m->n_tensors;
    size_t sum = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        if (m->tensors[i].offset != sum)
            return fg_set_error("%s: internal error: tensor table does not tile the weights", s->where);
        sum += m->tensors[i].numel;
    }
    if (sum != m->n_params) return fg_set_error("%s: internal error: tensor table does not tile the weights", s->where);
    if (s->sec[S_WGHT].len != 4 * np)
        return fg_set_error("%s: section 'WGHT' (tensor data) is %" PRIu64 " bytes, the config needs %" PRIu64 " (file is corrupted)",
                            s->where, s->sec[S_WGHT].len, 4 * np);
    if (s->sec[S_TUCH].len != nt)
        return fg_set_error("%s: section 'TUCH' (touched flags) is %" PRIu64 " bytes, the config has %" PRIu64 " tensors (file is corrupted)",
                            s->where, s->sec[S_TUCH].len, nt);
    if (s->sec[S_ADAM].present && s->sec[S_ADAM].len != 8 * np + 8 * nt)
        return fg_set_error("%s: section 'ADAM' (optimizer state) is %" PRIu64 " bytes, the config needs %" PRIu64 " (file is corrupted)",
                            s->where, s->sec[S_ADAM].len, 8 * np + 8 * nt);
    return 0;
}

// Reads and checks TUCH into touched (n_tensors bytes).
static int read_touched(const ck_src *s, const fg_model *m, unsigned char *touched) {
    ck_rd r = rd_open(s, S_TUCH);
    if (rd_take(&r, touched, (size_t)m->n_tensors) || rd_close(&r)) return -1;
    for (int i = 0; i < m->n_tensors; i++)
        if (touched[i] > 1)
            return fg_set_error("%s: touched flag of tensor '%s' is %d (must be 0 or 1; file is corrupted)",
                                s->where, m->tensors[i].name, touched[i]);
    return 0;
}

// Checks ADAM's step counts: t (n_tensors) if given, else read raw from the file (load_into,
// after sec_verify, before anything is overwritten).
static int check_adam_t(const ck_src *s, const fg_model *m, const int64_t *t) {
    size_t n = (size_t)m->n_tensors;
    int64_t *raw = NULL;
    if (!t) {
        if (!(raw = malloc(8 * n + 1))) return fg_set_error("%s: out of memory", s->where);
        if (src_read(s, s->sec[S_ADAM].off + 8 * (uint64_t)m->n_params, raw, 8 * n)) { free(raw); return -1; }
        t = raw;
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++)
        if (t[i] < 0 || t[i] >= CK_T_MAX)
            rc = fg_set_error("%s: AdamW step count of tensor '%s' is %" PRId64 " (file is corrupted)", s->where, m->tensors[i].name, t[i]);
    free(raw);
    return rc;
}

// Reads WGHT into m->params and (opt != NULL) ADAM into opt, checking both CRCs.
static int read_big(const ck_src *s, fg_model *m, fg_adamw *opt) {
    ck_rd r = rd_open(s, S_WGHT);
    if (rd_take(&r, m->params, sizeof(float) * m->n_params) || rd_close(&r)) return -1;
    if (!opt) return 0;
    r = rd_open(s, S_ADAM);
    if (rd_take(&r, opt->m, sizeof(float) * m->n_params) || rd_take(&r, opt->v, sizeof(float) * m->n_params) ||
        rd_take(&r, opt->t, sizeof(int64_t) * (size_t)m->n_tensors) || rd_close(&r))
        return -1;
    return 0;
}

static fg_model *load_src(ck_src *s, fg_adamw *opt, fg_train_state *st) {
    if (opt) memset(opt, 0, sizeof *opt);
    if (st) memset(st, 0, sizeof *st);
    fg_config c;
    if (scan(s) || read_conf(s, &c)) return NULL;
    // The config's parameter count must fit the WGHT section (which fits the file) before the
    // model is allocated: a hostile config cannot ask for more memory than the file's size.
    int64_t total, active;
    fg_config_param_counts(&c, &total, &active);
    if (total < 0 || (uint64_t)total > s->sec[S_WGHT].len / 4) {
        fg_set_error("%s: section 'WGHT' (tensor data) is %" PRIu64 " bytes, the config needs at least %" PRId64
                     " floats (file is corrupted)", s->where, s->sec[S_WGHT].len, total);
        return NULL;
    }
    fg_model *m = fg_model_create(&c);
    if (!m) { fg_wrap_error("%s", s->where); return NULL; }
    int want_adam = opt && s->sec[S_ADAM].present;
    if (check_sizes(s, m) || check_ttab(s, m) || read_touched(s, m, m->touched) || (st && read_meta(s, st)))
        goto fail;
    if (want_adam && fg_adamw_init(opt, m->n_params, m->n_tensors)) { fg_wrap_error("%s", s->where); goto fail; }
    if (read_big(s, m, want_adam ? opt : NULL) || (want_adam && check_adam_t(s, m, opt->t))) goto fail;
    return m;
fail:
    if (opt) { fg_adamw_free(opt); memset(opt, 0, sizeof *opt); }
    if (st) { free(st->train_json); free(st->tokenizer_data); memset(st, 0, sizeof *st); }
    fg_model_free(m);
    return NULL;
}

static int src_open(ck_src *s, const char *path) {
    memset(s, 0, sizeof *s);
    s->where = path;
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) return fg_set_error("cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(s->fd, &sb)) { int e = errno; close(s->fd); return fg_set_error("%s: cannot stat: %s", path, strerror(e)); }
    if (!S_ISREG(sb.st_mode)) { close(s->fd); return fg_set_error("%s: not a regular file", path); }
    s->size = (uint64_t)sb.st_size;
    return 0;
}

fg_model *fg_ckpt_load(const char *path, fg_adamw *opt, fg_train_state *st) {
    ck_src s;
    if (opt) memset(opt, 0, sizeof *opt);
    if (st) memset(st, 0, sizeof *st);
    if (!path) { fg_set_error("checkpoint load: no path"); return NULL; }
    if (src_open(&s, path)) return NULL;
    fg_model *m = load_src(&s, opt, st);
    close(s.fd);
    return m;
}

fg_model *fg_ckpt_load_mem(const uint8_t *buf, size_t len, const char *where, fg_adamw *opt, fg_train_state *st) {
    ck_src s = {.where = where ? where : "<memory>", .mem = buf, .fd = -1, .size = len};
    static const uint8_t empty[1];
    if (!buf) s.mem = empty, s.size = 0;
    return load_src(&s, opt, st);
}

int fg_ckpt_read_config(const char *path, fg_config *c) {
    ck_src s;
    if (!path) return fg_set_error("checkpoint read: no path");
    if (src_open(&s, path)) return -1;
    int rc = scan(&s) || read_conf(&s, c) ? -1 : 0;
    close(s.fd);
    return rc;
}

int fg_ckpt_read_tokenizer(const char *path, fg_tokenizer **tok) {
    *tok = NULL;
    ck_src s;
    if (!path) return fg_set_error("checkpoint read: no path");
    if (src_open(&s, path)) return -1;
    int rc = scan(&s);
    if (!rc && s.sec[S_TOKN].present) {
        size_t len;
        char *bytes = sec_read_small(&s, S_TOKN, &len);
        char where[1100];
        snprintf(where, sizeof where, "%s[TOKN]", path);
        if (!bytes || !(*tok = fg_tokenizer_load_mem(bytes, len, where))) rc = -1;
        free(bytes);
    }
    close(s.fd);
    return rc;
}

int fg_ckpt_read_tokenizer_bytes(const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    ck_src s;
    if (!path) return fg_set_error("checkpoint read: no path");
    if (src_open(&s, path)) return -1;
    int rc = scan(&s);
    if (!rc && s.sec[S_TOKN].present && !(*data = sec_read_small(&s, S_TOKN, len))) rc = -1;
    close(s.fd);
    return rc;
}

static int load_into_src(ck_src *s, fg_model *m, fg_adamw *opt, fg_train_state *st) {
    fg_config c;
    if (scan(s) || read_conf(s, &c) || compare_config(s->where, &c, &m->cfg) || check_sizes(s, m) || check_ttab(s, m))
        return -1;
    int want_adam = opt && s->sec[S_ADAM].present;
    if (want_adam && opt->m && (opt->n != m->n_params || opt->n_tensors != m->n_tensors || !opt->v || !opt->t))
        return fg_set_error("%s: the optimizer passed in has %zu moments and %d step counts, the model needs %zu and %d",
                            s->where, opt->n, opt->n_tensors, m->n_params, m->n_tensors);
    unsigned char *touched = malloc((size_t)m->n_tensors + 1);
    fg_train_state tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc = -1, ours = 0;
    if (!touched) { fg_set_error("%s: out of memory", s->where); goto done; }
    if (read_touched(s, m, touched) || (st && read_meta(s, &tmp)) || sec_verify(s, S_WGHT) ||
        (want_adam && (sec_verify(s, S_ADAM) || check_adam_t(s, m, NULL))))
        goto done;
    if (want_adam && !opt->m) {
        if (fg_adamw_init(opt, m->n_params, m->n_tensors)) { fg_wrap_error("%s", s->where); goto done; }
        ours = 1;
    }
    // From here on only an I/O error or a file changing under us can fail.
    if (read_big(s, m, want_adam ? opt : NULL)) {
        fg_wrap_error("%s: loading failed after validation (weights are now unspecified)", s->where);
        goto done;
    }
    memcpy(m->touched, touched, (size_t)m->n_tensors);
    if (st) { *st = tmp; memset(&tmp, 0, sizeof tmp); }
    rc = 0;
done:
    if (rc && ours) { fg_adamw_free(opt); memset(opt, 0, sizeof *opt); }
    free(tmp.train_json);
    free(tmp.tokenizer_data);
    free(touched);
    return rc;
}

int fg_ckpt_load_into(const char *path, fg_model *m, fg_adamw *opt, fg_train_state *st) {
    if (!path || !m) return fg_set_error("checkpoint load: no path or no model");
    ck_src s;
    if (src_open(&s, path)) return -1;
    int rc = load_into_src(&s, m, opt, st);
    close(s.fd);
    return rc;
}

// ---- saving ----------------------------------------------------------------------------------

typedef struct {
    FILE *f;
    uint64_t off;       // bytes written so far
    uint64_t left;      // payload bytes still due in the open section
    uint32_t crc;
    int err;            // errno of the first failure, or -1 for a layout bug; 0 while fine
} ck_w;

static void w_raw(ck_w *w, const void *p, size_t n) {
    if (w->err || !n) return;
    errno = 0;
    if (fwrite(p, 1, n, w->f) != n) { w->err = errno ? errno : EIO; return; }
    w->off += n;
}
static void w_begin(ck_w *w, const char *tag, uint64_t len) {
    uint8_t h[CK_SEC_HDR];
    memcpy(h, tag, 4);
    put_u64(h + 4, len);
    w_raw(w, h, sizeof h);
    w->left = len;
    w->crc = 0;
}
static void w_data(ck_w *w, const void *p, size_t n) {
    if (n > w->left) { if (!w->err) w->err = -1; return; }
    w->left -= n;
    w->crc = fg_crc32(w->crc, p, n);
    w_raw(w, p, n);
}
static void w_end(ck_w *w) {
    uint8_t c[4];
    if (w->left && !w->err) w->err = -1;
    put_u32(c, w->crc);
    w_raw(w, c, 4);
}

static char *meta_json(const fg_train_state *st, size_t *len) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return NULL;
    fprintf(f, "{\n  \"step\": \"%" PRId64 "\",\n  \"tokens_seen\": \"%" PRId64 "\",\n  \"batches_drawn\": \"%" PRIu64 "\",\n",
            st->step, st->tokens_seen, st->batches_drawn);
    for (int k = 0; k < 2; k++) {
        const fg_rng *r = k ? &st->data_rng : &st->rng;
        fprintf(f, "  \"%s\": [", k ? "data_rng" : "rng");
        for (int i = 0; i < 4; i++) fprintf(f, "%s\"%016" PRIx64 "\"", i ? ", " : "", r->s[i]);
        fputs("],\n", f);
    }
    if (st->stream[0]) {
        fputs("  \"stream\": [", f);
        for (int i = 0; i < 4; i++) fprintf(f, "%s\"%016" PRIx64 "\"", i ? ", " : "", st->stream[i]);
        fputs("],\n", f);
    }
    fputs("  \"tokenizer\": ", f);
    fg_json_write_string(f, st->tokenizer, strnlen(st->tokenizer, sizeof st->tokenizer));
    fputs(",\n  \"train_json\": ", f);
    if (st->train_json) fg_json_write_string(f, st->train_json, strlen(st->train_json));
    else fputs("null", f);
    fputs("\n}\n", f);
    int bad = ferror(f);
    if (fclose(f) || bad) { free(buf); return NULL; }
    *len = n;
    return buf;
}

// The TTAB payload (malloc'd, caller frees).
static uint8_t *ttab_bytes(const fg_model *m, size_t *len) {
    size_t n = 4;
    for (int i = 0; i < m->n_tensors; i++) n += 4 + strlen(m->tensors[i].name) + 4 + 8 * (size_t)m->tensors[i].ndim + 8 + 4;
    uint8_t *b = malloc(n), *p = b;
    if (!b) return NULL;
    put_u32(p, (uint32_t)m->n_tensors); p += 4;
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor *t = &m->tensors[i];
        size_t nl = strlen(t->name);
        put_u32(p, (uint32_t)nl); p += 4;
        memcpy(p, t->name, nl); p += nl;
        put_u32(p, (uint32_t)t->ndim); p += 4;
        for (int d = 0; d < t->ndim; d++) { put_u64(p, (uint64_t)t->shape[d]); p += 8; }
        put_u64(p, t->numel); p += 8;
        put_u32(p, (uint32_t)t->flags); p += 4;
    }
    *len = n;
    return b;
}

// fsyncs the directory holding path so the rename itself is durable. Filesystems that cannot
// sync a directory (EINVAL) or a directory we cannot open are tolerated; a real I/O error is not.
static int fsync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return fg_set_error("%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (fd >= 0) {
        if (fsync(fd) && errno != EINVAL && errno != ENOTSUP && errno != EROFS)
            rc = fg_set_error("%s: saved, but syncing directory '%s' failed: %s (the new file may not survive a crash)",
                              path, dir, strerror(errno));
        close(fd);
    }
    free(dir);
    return rc;
}

int fg_ckpt_save(const char *path, const fg_model *m, const fg_adamw *opt, const fg_train_state *st) {
    if (!path || !m) return fg_set_error("checkpoint save: no path or no model");
    size_t sum = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        if (m->tensors[i].offset != sum) return fg_set_error("%s: internal error: tensor table does not tile the weights", path);
        sum += m->tensors[i].numel;
    }
    if (sum != m->n_params) return fg_set_error("%s: internal error: tensor table does not tile the weights", path);
    if (opt && (opt->n != m->n_params || opt->n_tensors != m->n_tensors || !opt->m || !opt->v || !opt->t))
        return fg_set_error("%s: optimizer state has %zu moments and %d step counts, the model has %zu and %d", path, opt->n,
                            opt->n_tensors, m->n_params, m->n_tensors);
    if (st && (st->tokenizer_data != NULL) != !strcmp(st->tokenizer, "bpe"))
        return fg_set_error("%s: train state says tokenizer '%s' but %s tokenizer bytes", path, st->tokenizer,
                            st->tokenizer_data ? "carries" : "has no");
    if (st && (st->step < 0 || st->tokens_seen < 0))
        return fg_set_error("%s: train state has a negative step (%" PRId64 ") or tokens_seen (%" PRId64 ")", path, st->step,
                            st->tokens_seen);
    if (fg_output_check(path)) return -1;
    char *conf = fg_config_to_json(&m->cfg), *meta = NULL, *tmp = malloc(strlen(path) + 5);
    size_t meta_len = 0, ttab_len = 0;
    uint8_t *ttab = ttab_bytes(m, &ttab_len);
    FILE *f = NULL;
    int rc = -1;
    if (!conf || !tmp || !ttab || (st && !(meta = meta_json(st, &meta_len)))) { fg_set_error("%s: out of memory", path); goto done; }
    sprintf(tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) { fg_set_error("%s: cannot create '%s': %s", path, tmp, strerror(errno)); goto done; }

    ck_w w = {.f = f};
    uint8_t hdr[CK_HDR];
    memcpy(hdr, FG_CKPT_MAGIC, 8);
    put_u32(hdr + 8, FG_CKPT_VERSION);
    put_u32(hdr + 12, (meta ? FG_CKPT_HAS_META : 0) | (opt ? FG_CKPT_HAS_ADAM : 0));
    w_raw(&w, hdr, sizeof hdr);
    w_begin(&w, "CONF", strlen(conf)); w_data(&w, conf, strlen(conf)); w_end(&w);
    if (meta) { w_begin(&w, "META", meta_len); w_data(&w, meta, meta_len); w_end(&w); }
    if (st && st->tokenizer_data) {
        w_begin(&w, "TOKN", st->tokenizer_len); w_data(&w, st->tokenizer_data, st->tokenizer_len); w_end(&w);
    }
    w_begin(&w, "TTAB", ttab_len); w_data(&w, ttab, ttab_len); w_end(&w);
    // 'PAD ' so that WGHT's payload (after a 12-byte PAD header, its payload and CRC, then WGHT's
    // own 12-byte header) starts on a 64-byte boundary.
    static const uint8_t zeros[64];
    size_t pad = (size_t)((64 - (w.off + 2 * CK_SEC_HDR + 4) % 64) % 64);
    w_begin(&w, "PAD ", pad); w_data(&w, zeros, pad); w_end(&w);
    w_begin(&w, "WGHT", 4 * (uint64_t)m->n_params); w_data(&w, m->params, sizeof(float) * m->n_params); w_end(&w);
    w_begin(&w, "TUCH", (uint64_t)m->n_tensors); w_data(&w, m->touched, (size_t)m->n_tensors); w_end(&w);
    if (opt) {
        w_begin(&w, "ADAM", 8 * (uint64_t)m->n_params + 8 * (uint64_t)m->n_tensors);
        w_data(&w, opt->m, sizeof(float) * m->n_params);
        w_data(&w, opt->v, sizeof(float) * m->n_params);
        w_data(&w, opt->t, sizeof(int64_t) * (size_t)m->n_tensors);
        w_end(&w);
    }
    w_begin(&w, "END ", 0); w_end(&w);
    errno = 0;
    if (!w.err && fflush(f)) w.err = errno ? errno : EIO;
    if (!w.err && fsync(fileno(f))) w.err = errno ? errno : EIO;
    if (fclose(f) && !w.err) w.err = errno ? errno : EIO;
    f = NULL;
    if (w.err) {
        if (w.err < 0) fg_set_error("%s: internal error: section length and payload disagree", path);
        else fg_set_error("%s: cannot write '%s': %s", path, tmp, strerror(w.err));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path)) {
        fg_set_error("%s: cannot rename '%s' over it: %s", path, tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = fsync_dir(path);
done:
    free(conf); free(meta); free(ttab); free(tmp);
    return rc;
}
