// shard.c: token shards: the writer (fg_data_prepare), the reader, the manifest and the stream
// the trainer draws batches from (layout in shard.h and docs/formats.md "Token shards").
//
// The writer keeps one shard's worth of tokens per split in memory and writes whole documents;
// the reader maps shards read-only and verifies each CRC once, when the directory is opened.
// Invariant of the reader: no token is read before fg_shard_parse has checked that the file
// holds the whole payload the header announces.
#include "data/shard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "formats/checkpoint.h"
#include "formats/json.h"
#include "util.h"

#define BOS_TEXT FG_DS_BOS
#define EOS_TEXT FG_DS_EOS
#define MAX_WARN 20 // skipped lines reported one by one; the rest only counted

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) { return get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }
static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

uint64_t fg_tokenizer_hash(const void *data, size_t len) {
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) { h ^= p[i]; h *= 0x100000001b3ull; }
    return h ? h : 1; // 0 means byte-level
}

// ---- reader --------------------------------------------------------------------------------

int fg_shard_parse(fg_shard *sh, const uint8_t *buf, size_t len, const char *where, int verify_crc) {
    memset(sh, 0, sizeof *sh);
    if (len < 8 || memcmp(buf, FG_SHARD_MAGIC, 8))
        return fg_set_error("%s: not a frugal token shard (bad magic)", where);
    if (len < FG_SHARD_HDR) return fg_set_error("%s: truncated: header needs %d bytes, file has %zu", where, FG_SHARD_HDR, len);
    uint32_t version = get_u32(buf + 8), width = get_u32(buf + 12);
    if (version != FG_SHARD_VERSION)
        return fg_set_error("%s: version %" PRIu32 " is not supported (this frugal reads %d)", where, version, FG_SHARD_VERSION);
    if (width != 2 && width != 4) return fg_set_error("%s: field 'token width' is %" PRIu32 ", must be 2 or 4", where, width);
    sh->width = (int)width;
    sh->n_tokens = get_u64(buf + 16);
    sh->n_docs = get_u64(buf + 24);
    sh->flags = get_u32(buf + 32);
    sh->crc = get_u32(buf + 36);
    sh->vocab_size = get_u32(buf + 40);
    sh->tok_hash = get_u64(buf + 48);
    if (sh->flags & ~(uint32_t)FG_SHARD_HAS_MASK) return fg_set_error("%s: unknown flags 0x%08" PRIx32, where, sh->flags);
    if (get_u32(buf + 44) || get_u64(buf + 56)) return fg_set_error("%s: reserved header fields are not 0 (file is corrupted)", where);
    if (sh->vocab_size < 1 || (width == 2 && sh->vocab_size > 65536))
        return fg_set_error("%s: field 'vocab_size' %" PRIu32 " does not fit %" PRIu32 "-byte tokens", where, sh->vocab_size, width);
    uint64_t avail = len - FG_SHARD_HDR;
    if (sh->n_tokens < 1 || sh->n_tokens > avail / width)
        return fg_set_error("%s: field 'n_tokens' %" PRIu64 " does not fit the file (%zu bytes)", where, sh->n_tokens, len);
    uint64_t need = sh->n_tokens * width + (sh->flags & FG_SHARD_HAS_MASK ? (sh->n_tokens + 7) / 8 : 0);
    if (need != avail)
        return fg_set_error("%s: size is %zu bytes, the header implies %" PRIu64 " (file is truncated or corrupted)", where,
                            len, need + FG_SHARD_HDR);
    if (sh->n_docs < 1 || sh->n_docs > sh->n_tokens) return fg_set_error("%s: field 'n_docs' %" PRIu64 " is out of range", where, sh->n_docs);
    sh->base = buf; sh->size = len;
    sh->tokens = buf + FG_SHARD_HDR;
    sh->mask = sh->flags & FG_SHARD_HAS_MASK ? sh->tokens + sh->n_tokens * width : NULL;
    if (verify_crc) {
        if (fg_crc32(0, sh->tokens, (size_t)need) != sh->crc)
            return fg_set_error("%s: checksum mismatch (the shard is corrupted; hint: run frugal data prepare again)", where);
        for (uint64_t i = 0; i < sh->n_tokens; i++)
            if ((uint32_t)fg_shard_token(sh, i) >= sh->vocab_size)
                return fg_set_error("%s: token %" PRIu64 " is id %" PRIu32 ", outside the vocabulary (%" PRIu32 ")", where, i,
                                    (uint32_t)fg_shard_token(sh, i), sh->vocab_size);
    }
    return 0;
}

int fg_shard_open(fg_shard *sh, const char *path) {
    memset(sh, 0, sizeof *sh);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fg_set_error("cannot open shard '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode) || sb.st_size <= 0) {
        close(fd);
        return fg_set_error("%s: not a regular non-empty file", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return fg_set_error("%s: cannot map: %s", path, strerror(errno));
    if (fg_shard_parse(sh, p, (size_t)sb.st_size, path, 1)) { munmap(p, (size_t)sb.st_size); return -1; }
    sh->mapped = 1;
    return 0;
}

void fg_shard_close(fg_shard *sh) {
    if (sh->mapped) munmap((void *)sh->base, sh->size);
    memset(sh, 0, sizeof *sh);
}

// ---- manifest ------------------------------------------------------------------------------

static int man_u64(const char *where, const fg_json *o, const char *key, uint64_t *out) {
    const fg_json *v = fg_json_get(o, key);
    if (!v || v->type != FG_JSON_NUMBER || !(v->num >= 0 && v->num <= 9007199254740992.0) || v->num != (double)(uint64_t)v->num)
        return fg_set_error("%s: field '%s' must be a non-negative integer", where, key);
    *out = (uint64_t)v->num;
    return 0;
}

static int man_hex(const char *where, const fg_json *o, const char *key, uint64_t *out) {
    const fg_json *v = fg_json_get(o, key);
    uint64_t x = 0;
    if (!v || v->type != FG_JSON_STRING || v->len < 1 || v->len > 16)
        return fg_set_error("%s: field '%s' must be a string of 1 to 16 hex digits", where, key);
    for (size_t i = 0; i < v->len; i++) {
        int c = v->str[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return fg_set_error("%s: field '%s' must be a string of 1 to 16 lower-case hex digits", where, key);
        x = x << 4 | (uint64_t)d;
    }
    *out = x;
    return 0;
}

static char *plain_name(const char *where, const fg_json *v, const char *key) {
    if (!v || v->type != FG_JSON_STRING || v->len == 0 || v->len > 255 || strlen(v->str) != v->len || strchr(v->str, '/') ||
        !strcmp(v->str, ".") || !strcmp(v->str, "..")) {
        fg_set_error("%s: field '%s' must be a plain file name (no '/')", where, key);
        return NULL;
    }
    char *s = strdup(v->str);
    if (!s) fg_set_error("%s: out of memory", where);
    return s;
}

static int man_list(const char *where, const fg_json *root, const char *key, fg_manifest_shard **out, int *n) {
    const fg_json *a = fg_json_get(root, key);
    if (!a || a->type != FG_JSON_ARRAY) return fg_set_error("%s: field '%s' must be an array of shards", where, key);
    *out = calloc((size_t)a->n + 1, sizeof **out);
    if (!*out) return fg_set_error("%s: out of memory", where);
    for (const fg_json *e = a->child; e; e = e->next) {
        fg_manifest_shard *s = &(*out)[*n];
        uint64_t crc;
        if (e->type != FG_JSON_OBJECT) return fg_set_error("%s: '%s' entry %d is not an object", where, key, *n);
        if (!(s->file = plain_name(where, fg_json_get(e, "file"), "file"))) return -1;
        (*n)++;
        if (man_u64(where, e, "tokens", &s->tokens) || man_u64(where, e, "documents", &s->docs) ||
            man_hex(where, e, "crc32", &crc))
            return -1;
        if (crc > UINT32_MAX) return fg_set_error("%s: field 'crc32' of '%s' is wider than 32 bits", where, s->file);
        s->crc = (uint32_t)crc;
    }
    return 0;
}

int fg_manifest_parse(fg_manifest *m, const char *text, size_t len, const char *where) {
    memset(m, 0, sizeof *m);
    fg_json *root = fg_json_parse(text, len, where);
    if (!root) return -1;
    int rc = -1;
    uint64_t version = 0, vocab = 0, bos = 0, eos = 0;
    const fg_json *fmt = fg_json_get(root, "format"), *tok, *kind, *sft;
    if (root->type != FG_JSON_OBJECT || !fmt || fmt->type != FG_JSON_STRING || strcmp(fmt->str, "frugal-shards")) {
        fg_set_error("%s: not a frugal shard manifest (field 'format' must be \"frugal-shards\")", where);
        goto done;
    }
    if (man_u64(where, root, "version", &version)) goto done;
    if (version != 1) { fg_set_error("%s: manifest version %" PRIu64 " is not supported (this frugal reads 1)", where, version); goto done; }
    tok = fg_json_get(root, "tokenizer");
    if (!tok || tok->type != FG_JSON_OBJECT) { fg_set_error("%s: field 'tokenizer' must be an object", where); goto done; }
    kind = fg_json_get(tok, "kind");
    if (!kind || kind->type != FG_JSON_STRING || (strcmp(kind->str, "byte") && strcmp(kind->str, "bpe"))) {
        fg_set_error("%s: field 'tokenizer.kind' must be \"byte\" or \"bpe\"", where);
        goto done;
    }
    m->bpe = !strcmp(kind->str, "bpe");
    if (man_u64(where, tok, "vocab_size", &vocab) || man_u64(where, tok, "bos", &bos) || man_u64(where, tok, "eos", &eos)) goto done;
    if (vocab < 1 || vocab > INT32_MAX || bos >= vocab || eos >= vocab) {
        fg_set_error("%s: tokenizer vocab_size, bos or eos out of range", where);
        goto done;
    }
    m->vocab_size = (int32_t)vocab; m->bos = (int32_t)bos; m->eos = (int32_t)eos;
    if (m->bpe) {
        if (!(m->tokenizer_file = plain_name(where, fg_json_get(tok, "file"), "tokenizer.file")) ||
            man_hex(where, tok, "hash", &m->tok_hash))
            goto done;
    }
    sft = fg_json_get(root, "sft");
    if (!sft || sft->type != FG_JSON_BOOL) { fg_set_error("%s: field 'sft' must be true or false", where); goto done; }
    m->sft = sft->boolean;
    if (man_u64(where, root, "documents", &m->documents) || man_u64(where, root, "tokens", &m->tokens) ||
        man_u64(where, root, "skipped_lines", &m->skipped_lines) ||
        man_list(where, root, "train", &m->train, &m->n_train) || man_list(where, root, "val", &m->val, &m->n_val))
        goto done;
    if (m->n_train < 1) { fg_set_error("%s: no train shards", where); goto done; }
    rc = 0;
done:
    fg_json_free(root);
    if (rc) fg_manifest_free(m);
    return rc;
}

void fg_manifest_free(fg_manifest *m) {
    for (int i = 0; m->train && i < m->n_train; i++) free(m->train[i].file);
    for (int i = 0; m->val && i < m->n_val; i++) free(m->val[i].file);
    free(m->train); free(m->val); free(m->tokenizer_file);
    memset(m, 0, sizeof *m);
}

// ---- shard directory -----------------------------------------------------------------------

static int open_list(const char *dir, const fg_manifest *man, const fg_manifest_shard *ms, int n, fg_shard *out) {
    char path[4096];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, ms[i].file);
        if (fg_shard_open(&out[i], path)) return -1;
        const fg_shard *sh = &out[i];
        if (sh->crc != ms[i].crc)
            return fg_set_error("%s: checksum %08" PRIx32 " does not match the manifest's %08" PRIx32
                                " (the shard was changed or replaced; hint: run frugal data prepare again)", path, sh->crc, ms[i].crc);
        if (sh->n_tokens != ms[i].tokens || sh->n_docs != ms[i].docs)
            return fg_set_error("%s: holds %" PRIu64 " tokens in %" PRIu64 " documents, the manifest says %" PRIu64 " in %" PRIu64,
                                path, sh->n_tokens, sh->n_docs, ms[i].tokens, ms[i].docs);
        if (sh->tok_hash != man->tok_hash || sh->vocab_size != (uint32_t)man->vocab_size)
            return fg_set_error("%s: was written with a different tokenizer than the manifest names", path);
        if (!!sh->mask != !!man->sft)
            return fg_set_error("%s: %s a loss mask but the manifest says sft %s", path, sh->mask ? "has" : "lacks",
                                man->sft ? "true" : "false");
    }
    return 0;
}

int fg_shardset_open(fg_shardset *s, const char *dir) {
    memset(s, 0, sizeof *s);
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    size_t len;
    char *text = fg_read_file(path, &len);
    if (!text) return fg_wrap_error("shards: hint: --shards takes a directory written by frugal data prepare");
    int rc = fg_manifest_parse(&s->man, text, len, path);
    free(text);
    if (rc) return -1;
    s->train = calloc((size_t)s->man.n_train, sizeof *s->train);
    s->val = calloc((size_t)s->man.n_val + 1, sizeof *s->val);
    if (!s->train || !s->val) { fg_shardset_close(s); return fg_set_error("out of memory"); }
    if (open_list(dir, &s->man, s->man.train, s->man.n_train, s->train) ||
        open_list(dir, &s->man, s->man.val, s->man.n_val, s->val)) {
        fg_shardset_close(s);
        return -1;
    }
    if (s->man.bpe) {
        snprintf(path, sizeof path, "%s/%s", dir, s->man.tokenizer_file);
        if (!(s->tokenizer_data = fg_read_file(path, &s->tokenizer_len))) { fg_shardset_close(s); return -1; }
        if (fg_tokenizer_hash(s->tokenizer_data, s->tokenizer_len) != s->man.tok_hash) {
            fg_shardset_close(s);
            return fg_set_error("%s: the tokenizer file's hash does not match the manifest (it was changed after the shards were written)", path);
        }
    }
    return 0;
}

void fg_shardset_close(fg_shardset *s) {
    for (int i = 0; s->train && i < s->man.n_train; i++) fg_shard_close(&s->train[i]);
    for (int i = 0; s->val && i < s->man.n_val; i++) fg_shard_close(&s->val[i]);
    free(s->train); free(s->val); free(s->tokenizer_data);
    fg_manifest_free(&s->man);
    memset(s, 0, sizeof *s);
}

// ---- the stream ----------------------------------------------------------------------------

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// A keyed bijection of [0, n): a 4-round Feistel network on the smallest even number of bits
// covering n, cycle-walking until the value falls inside [0, n). Shuffles without memory.
static uint64_t permute(uint64_t i, uint64_t n, uint64_t key) {
    if (n <= 1) return 0;
    int bits = 2;
    while (bits < 64 && (n - 1) >> bits) bits += 2;
    int h = bits / 2;
    uint64_t mask = (1ull << h) - 1;
    do {
        uint64_t l = i >> h, r = i & mask;
        for (int k = 0; k < 4; k++) {
            uint64_t f = mix64(r ^ key ^ (uint64_t)k * 0x9e3779b97f4a7c15ull) & mask;
            uint64_t nl = r;
            r = l ^ f;
            l = nl;
        }
        i = l << h | r;
    } while (i >= n);
    return i;
}

static uint64_t n_windows(const fg_shard *sh, int T) {
    return sh->n_tokens >= (uint64_t)T + 1 ? (sh->n_tokens - 1) / (uint64_t)T : 1;
}

static void fill_row(const fg_shard *sh, uint64_t start, int32_t pad, int32_t *in, int32_t *tg, int T) {
    for (int t = 0; t < T; t++) {
        uint64_t p = start + (uint64_t)t;
        in[t] = p < sh->n_tokens ? fg_shard_token(sh, p) : pad;
        tg[t] = p + 1 < sh->n_tokens && fg_shard_trained(sh, p + 1) ? fg_shard_token(sh, p + 1) : -1;
    }
}

void fg_shard_stream_next(const fg_shardset *s, uint64_t st[4], fg_rng *data_rng, int32_t pad, int32_t *in, int32_t *tg,
                          int B, int T) {
    uint64_t ns = (uint64_t)s->man.n_train;
    for (int b = 0; b < B; b++) {
        if (st[0] == 0 || st[2] >= ns) { st[0]++; st[1] = fg_rng_u64(data_rng); st[2] = 0; st[3] = 0; }
        const fg_shard *sh = &s->train[permute(st[2], ns, st[1])];
        uint64_t nw = n_windows(sh, T);
        if (st[3] >= nw) st[3] = 0; // only after a change of --seq between resumes
        uint64_t w = permute(st[3], nw, mix64(st[1] ^ (st[2] + 1)));
        fill_row(sh, w * (uint64_t)T, pad, in + (size_t)b * T, tg + (size_t)b * T, T);
        if (++st[3] == nw) { st[2]++; st[3] = 0; }
    }
}

void fg_shard_val_batch(const fg_shardset *s, size_t i, int32_t pad, int32_t *in, int32_t *tg, int B, int T) {
    const fg_shard *list = s->man.n_val ? s->val : s->train;
    int n = s->man.n_val ? s->man.n_val : s->man.n_train;
    uint64_t total = 0;
    for (int k = 0; k < n; k++) total += n_windows(&list[k], T);
    for (int b = 0; b < B; b++) {
        uint64_t w = (uint64_t)(((unsigned __int128)i * (unsigned)B + (unsigned)b) % total);
        int k = 0;
        while (w >= n_windows(&list[k], T)) w -= n_windows(&list[k++], T);
        fill_row(&list[k], w * (uint64_t)T, pad, in + (size_t)b * T, tg + (size_t)b * T, T);
    }
}

// ---- writer: fg_data_prepare ---------------------------------------------------------------

typedef struct {
    int32_t *tok; uint8_t *trained; size_t n, cap; // one pending shard: tokens and per-token mask
    uint64_t docs;
    fg_manifest_shard *list; int n_list, cap_list;
} split_buf;

typedef struct {
    const fg_prepare_opts *o;
    const char *dir;               // where files are written: the staging folder inside out_dir
    const fg_tokenizer *tok;       // NULL: byte-level
    uint64_t tok_hash;
    int32_t vocab, bos, eos;
    int width;
    split_buf split[2];            // train, val
    int32_t *scratch; size_t scratch_cap;
    fg_prepare_report *r;
} prep;

static int buf_reserve(split_buf *b, size_t more) {
    if (b->n + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more) cap *= 2;
    int32_t *t = realloc(b->tok, cap * sizeof *t);
    if (t) b->tok = t;
    uint8_t *m = realloc(b->trained, cap);
    if (m) b->trained = m;
    if (!t || !m) return fg_set_error("out of memory holding a shard of %zu tokens", cap);
    b->cap = cap;
    return 0;
}

// Writes the pending shard of split k (0 train, 1 val) and records it for the manifest.
static int flush_shard(prep *p, int k) {
    split_buf *b = &p->split[k];
    if (!b->n) return 0;
    if (b->n_list == b->cap_list) {
        int cap = b->cap_list ? 2 * b->cap_list : 16;
        fg_manifest_shard *nl = realloc(b->list, (size_t)cap * sizeof *nl);
        if (!nl) return fg_set_error("out of memory");
        b->list = nl; b->cap_list = cap;
    }
    char name[64], path[4096];
    snprintf(name, sizeof name, "%s-%05d.fgsh", k ? "val" : "train", b->n_list);
    snprintf(path, sizeof path, "%s/%s", p->dir, name);
    size_t tok_bytes = b->n * (size_t)p->width, mask_bytes = p->o->sft ? (b->n + 7) / 8 : 0;
    uint8_t *pay = calloc(tok_bytes + mask_bytes + 1, 1);
    if (!pay) return fg_set_error("out of memory writing '%s'", path);
    for (size_t i = 0; i < b->n; i++) {
        uint32_t v = (uint32_t)b->tok[i];
        for (int j = 0; j < p->width; j++) pay[i * p->width + j] = (uint8_t)(v >> (8 * j));
        if (mask_bytes && b->trained[i]) pay[tok_bytes + i / 8] |= (uint8_t)(1u << (i % 8));
    }
    uint8_t h[FG_SHARD_HDR] = {0};
    memcpy(h, FG_SHARD_MAGIC, 8);
    put_u32(h + 8, FG_SHARD_VERSION);
    put_u32(h + 12, (uint32_t)p->width);
    put_u64(h + 16, b->n);
    put_u64(h + 24, b->docs);
    put_u32(h + 32, mask_bytes ? FG_SHARD_HAS_MASK : 0);
    uint32_t crc = fg_crc32(0, pay, tok_bytes + mask_bytes);
    put_u32(h + 36, crc);
    put_u32(h + 40, (uint32_t)p->vocab);
    put_u64(h + 48, p->tok_hash);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(h, 1, sizeof h, f) == sizeof h && fwrite(pay, 1, tok_bytes + mask_bytes, f) == tok_bytes + mask_bytes;
    if (f && fclose(f)) ok = 0;
    free(pay);
    if (!ok) return fg_set_error("cannot write shard '%s': %s", path, strerror(errno));
    fg_manifest_shard *e = &b->list[b->n_list++];
    e->file = strdup(name);
    e->tokens = b->n; e->docs = b->docs; e->crc = crc;
    if (!e->file) return fg_set_error("out of memory");
    if (k) p->r->val_shards++; else p->r->train_shards++;
    b->n = 0; b->docs = 0;
    return 0;
}

// Appends text[0..len) encoded (parse_special as given), every token marked `trained`.
static int put_text(prep *p, split_buf *b, const char *text, size_t len, int parse_special, int trained) {
    size_t need = p->tok ? fg_tokenizer_encode(p->tok, text, len, parse_special, NULL, 0)
                         : fg_bytetok_encode(text, len, parse_special, NULL, 0);
    if (need == SIZE_MAX) return -1;
    if (buf_reserve(b, need)) return -1;
    if (p->tok) fg_tokenizer_encode(p->tok, text, len, parse_special, b->tok + b->n, need);
    else fg_bytetok_encode(text, len, parse_special, b->tok + b->n, need);
    memset(b->trained + b->n, trained, need);
    b->n += need;
    return 0;
}

static int put_id(split_buf *b, int32_t id) {
    if (buf_reserve(b, 1)) return -1;
    b->tok[b->n] = id; b->trained[b->n] = 1; b->n++;
    return 0;
}

static uint64_t text_hash(const char *s, size_t n) { return mix64(fg_tokenizer_hash(s, n)); }

static split_buf *pick_split(prep *p, const char *key, size_t len) {
    int val = p->o->val_fraction > 0 && (double)(text_hash(key, len) >> 11) * 0x1p-53 < p->o->val_fraction;
    return &p->split[val];
}

static int doc_done(prep *p, split_buf *b) {
    b->docs++;
    p->r->documents++;
    if (b == &p->split[1]) p->r->val_documents++;
    return b->n >= (size_t)p->o->shard_tokens ? flush_shard(p, b == &p->split[1]) : 0;
}

// A pretraining document: BOS, the text (special strings not parsed), EOS.
static int add_text_doc(prep *p, const char *text, size_t len) {
    split_buf *b = pick_split(p, text, len);
    if (put_id(b, p->bos) || put_text(p, b, text, len, 0, 1) || put_id(b, p->eos)) return -1;
    return doc_done(p, b);
}

// A conversation: rendered with the chat layout; only what the assistant says (its content and
// end-of-turn marker, not the opener) is trained. Pieces are encoded with special strings parsed,
// as Hugging Face tokenizes a rendered chat template.
static int add_chat_doc(prep *p, const fg_chat_msg *msgs, int n, const char *key, size_t key_len) {
    int style = p->tok ? FG_CHAT_DEEPSEEK_V3 : FG_CHAT_FRUGAL;
    split_buf *b = pick_split(p, key, key_len);
    size_t start = b->n;
    char *prev = NULL, *cur = NULL;
    size_t prev_len = 0;
    int rc = 0, any = 0;
    for (int i = 1; i <= n && !rc; i++) {
        int asst = !strcmp(msgs[i - 1].role, "assistant");
        any |= asst;
        // prefix before message i-1, with the assistant opener when it is an assistant turn
        size_t l0 = fg_chat_render(style, msgs, i - 1, asst, NULL, 0);
        size_t l1 = fg_chat_render(style, msgs, i, 0, NULL, 0);
        if (l0 == SIZE_MAX || l1 == SIZE_MAX) { rc = -1; break; }
        char *a = malloc(l0 + 1);
        free(cur);
        cur = malloc(l1 + 1);
        if (!a || !cur) { free(a); rc = fg_set_error("out of memory rendering a conversation"); break; }
        fg_chat_render(style, msgs, i - 1, asst, a, l0 + 1);
        fg_chat_render(style, msgs, i, 0, cur, l1 + 1);
        if (l0 < prev_len || memcmp(a, prev ? prev : "", prev_len) || l1 < l0 || memcmp(a, cur, l0)) {
            free(a);
            rc = fg_set_error("chat layout does not render prefix by prefix (internal error)");
            break;
        }
        if (l0 > prev_len) rc = put_text(p, b, a + prev_len, l0 - prev_len, 1, 0); // opener: not trained
        if (!rc && l1 > l0) rc = put_text(p, b, cur + l0, l1 - l0, 1, asst);
        free(a);
        free(prev);
        prev = cur; prev_len = l1; cur = NULL;
    }
    free(prev); free(cur);
    if (rc) { b->n = start; return -1; }
    if (!any) { b->n = start; return 1; } // nothing to train: skipped by the caller
    return doc_done(p, b);
}

static void skip_line(prep *p, const char *path, size_t lineno, const char *why) {
    p->r->skipped_lines++;
    if (p->o->warn && p->r->skipped_lines <= MAX_WARN) {
        char msg[1024];
        snprintf(msg, sizeof msg, "'%s' line %zu skipped: %s", path, lineno, why);
        p->o->warn(msg);
    }
}

// Parses {"conversations": [{"role": ..., "content": ...}, ...]} into msgs (borrowing j's strings).
static const char *parse_chat(const fg_json *j, fg_chat_msg **msgs, int *n) {
    const fg_json *c = j->type == FG_JSON_OBJECT ? fg_json_get(j, "conversations") : NULL;
    if (!c) return "missing field \"conversations\"";
    if (c->type != FG_JSON_ARRAY || c->n < 1) return "field \"conversations\" must be a non-empty array";
    *msgs = calloc((size_t)c->n, sizeof **msgs);
    if (!*msgs) return "out of memory";
    *n = 0;
    for (const fg_json *m = c->child; m; m = m->next) {
        const fg_json *r = m->type == FG_JSON_OBJECT ? fg_json_get(m, "role") : NULL;
        const fg_json *t = m->type == FG_JSON_OBJECT ? fg_json_get(m, "content") : NULL;
        if (!r || !t || r->type != FG_JSON_STRING || t->type != FG_JSON_STRING)
            return "each message needs string fields \"role\" and \"content\"";
        if (strcmp(r->str, "system") && strcmp(r->str, "user") && strcmp(r->str, "assistant") && strcmp(r->str, "tool"))
            return "a role is not system, user, assistant or tool";
        if (fg_json_dup_key(m)) return "a message has a duplicate key";
        if (!fg_utf8_validate(t->str, t->len, NULL)) return "a content is not valid UTF-8 text";
        // the chat layout is rendered from C strings: a NUL would cut the content short
        if (strlen(t->str) != t->len) return "a content holds a NUL character (\\u0000), which the chat layout cannot carry";
        (*msgs)[(*n)++] = (fg_chat_msg){r->str, t->str};
    }
    return NULL;
}

static int prepare_jsonl(prep *p, const char *path, const char *buf, size_t len) {
    size_t lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(buf + pos, '\n', len - pos), *line = buf + pos;
        size_t end = nl ? (size_t)(nl - buf) : len, n = end - pos;
        pos = nl ? end + 1 : len;
        lineno++;
        while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == n) continue;
        fg_json *j = fg_json_parse(line, n, path);
        if (!j) { skip_line(p, path, lineno, "not valid JSON"); continue; }
        int rc = 0;
        const fg_json *dup = fg_json_dup_key(j);
        if (j->type != FG_JSON_OBJECT) skip_line(p, path, lineno, "not a JSON object");
        else if (dup) {
            char why[160];
            snprintf(why, sizeof why, "duplicate key \"%.*s\"", (int)FG_MIN(dup->key_len, 64), dup->key);
            skip_line(p, path, lineno, why);
        } else if (p->o->sft) {
            fg_chat_msg *msgs = NULL;
            int nm = 0;
            const char *why = parse_chat(j, &msgs, &nm);
            if (why) skip_line(p, path, lineno, why);
            else if ((rc = add_chat_doc(p, msgs, nm, line, n)) == 1) { skip_line(p, path, lineno, "no assistant message"); rc = 0; }
            free(msgs);
        } else {
            // NUL (\u0000) is text like any other character, as in .txt files, refine and
            // tokenizer train: the tokenizers encode it and the shards hold it.
            const fg_json *t = fg_json_get(j, "text");
            if (!t) skip_line(p, path, lineno, "missing field \"text\"");
            else if (t->type != FG_JSON_STRING) skip_line(p, path, lineno, "field \"text\" is not a string");
            else if (!fg_utf8_validate(t->str, t->len, NULL)) skip_line(p, path, lineno, "field \"text\" is not valid UTF-8");
            else if (t->len) rc = add_text_doc(p, t->str, t->len);
        }
        fg_json_free(j);
        if (rc) return fg_wrap_error("'%s' line %zu", path, lineno);
    }
    return 0;
}

static int is_jsonl(const char *path) {
    size_t n = strlen(path);
    return n >= 6 && !strcasecmp(path + n - 6, ".jsonl");
}

// Writes manifest.json (atomically enough: a temporary file renamed over it).
static int write_manifest(prep *p, const char *tok_name, const char *const *files, int n_files) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/manifest.json", p->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return fg_set_error("cannot write '%s': %s", tmp, strerror(errno));
    fprintf(f, "{\n  \"format\": \"frugal-shards\",\n  \"version\": 1,\n  \"tokenizer\": {\"kind\": \"%s\", ", p->tok ? "bpe" : "byte");
    if (p->tok) { fputs("\"file\": ", f); fg_json_write_string(f, tok_name, strlen(tok_name)); fprintf(f, ", \"hash\": \"%016" PRIx64 "\", ", p->tok_hash); }
    fprintf(f, "\"vocab_size\": %d, \"bos\": %d, \"eos\": %d},\n  \"sft\": %s,\n", p->vocab, p->bos, p->eos, p->o->sft ? "true" : "false");
    fprintf(f, "  \"documents\": %" PRIu64 ",\n  \"tokens\": %" PRIu64 ",\n  \"skipped_lines\": %" PRIu64 ",\n", p->r->documents,
            p->r->tokens, p->r->skipped_lines);
    for (int k = 0; k < 2; k++) {
        fprintf(f, "  \"%s\": [", k ? "val" : "train");
        for (int i = 0; i < p->split[k].n_list; i++) {
            const fg_manifest_shard *e = &p->split[k].list[i];
            fprintf(f, "%s\n    {\"file\": \"%s\", \"tokens\": %" PRIu64 ", \"documents\": %" PRIu64 ", \"crc32\": \"%08" PRIx32 "\"}",
                    i ? "," : "", e->file, e->tokens, e->docs, e->crc);
        }
        fputs(p->split[k].n_list ? "\n  ],\n" : "],\n", f);
    }
    fputs("  \"sources\": [", f);
    for (int i = 0; i < n_files; i++) { fputs(i ? ", " : "", f); fg_json_write_string(f, files[i], strlen(files[i])); }
    fputs("]\n}\n", f);
    int bad = ferror(f);
    if (fclose(f) || bad || rename(tmp, path)) return fg_set_error("cannot write '%s': %s", path, strerror(errno));
    return 0;
}

// ---- the output folder: a run writes into a staging folder inside it, then replaces the files
// of the previous run (if any) only once everything is written; a failed run leaves the folder as
// it was (and removes it if the run created it).
#define STAGE_DIR ".prepare-partial"

// A file a prepare run writes (what a rerun replaces).
static int is_prepare_file(const char *name) {
    size_t n = strlen(name);
    int shard = (!strncmp(name, "train-", 6) || !strncmp(name, "val-", 4)) && n > 5 && !strcmp(name + n - 5, ".fgsh");
    return shard || !strcmp(name, "manifest.json") || !strcmp(name, "tokenizer.json") || !strcmp(name, "tokenizer.gguf");
}

// Removes the plain files of dir and dir itself (cleanup: errors are ignored).
static void remove_stage(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[4400];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                unlink(path);
            }
        closedir(d);
    }
    rmdir(dir);
}

// out_dir may be new, empty, or a previous run's folder (its manifest.json says frugal-shards);
// anything else is refused so that a rerun never deletes files it did not write.
static int check_out_dir(const char *out_dir, int *created) {
    *created = 0;
    if (!mkdir(out_dir, 0755)) { *created = 1; return 0; }
    if (errno != EEXIST) return fg_set_error("cannot create '%s': %s", out_dir, strerror(errno));
    struct stat st;
    if (stat(out_dir, &st) || !S_ISDIR(st.st_mode)) return fg_set_error("'%s' exists and is not a folder; hint: choose another -o", out_dir);
    DIR *d = opendir(out_dir);
    if (!d) return fg_set_error("cannot read '%s': %s", out_dir, strerror(errno));
    int others = 0, manifest = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, STAGE_DIR)) continue;
        if (!strcmp(e->d_name, "manifest.json")) manifest = 1;
        else if (!is_prepare_file(e->d_name)) others++;
    }
    closedir(d);
    if (!manifest && !others) return 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", out_dir);
    size_t len = 0;
    char *m = manifest ? fg_read_file(path, &len) : NULL;
    int ours = m && strstr(m, "\"frugal-shards\"") != NULL;
    free(m);
    if (!ours || others)
        return fg_set_error("'%s' is not empty and not a folder written by data prepare (%s); hint: choose a new or empty -o folder",
                            out_dir, ours ? "it holds other files" : "no frugal-shards manifest.json");
    return 0;
}

// Moves the staged files into out_dir, replacing the previous run's, manifest.json last.
static int commit_stage(const char *out_dir, const char *stage) {
    char from[4800], to[4800];
    DIR *d = opendir(out_dir);
    if (!d) return fg_set_error("cannot read '%s': %s", out_dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)))
        if (is_prepare_file(e->d_name) && strcmp(e->d_name, "manifest.json")) {
            snprintf(to, sizeof to, "%s/%s", out_dir, e->d_name);
            unlink(to);
        }
    closedir(d);
    if (!(d = opendir(stage))) return fg_set_error("cannot read '%s': %s", stage, strerror(errno));
    int rc = 0;
    while (!rc && (e = readdir(d)))
        if (is_prepare_file(e->d_name) && strcmp(e->d_name, "manifest.json")) {
            snprintf(from, sizeof from, "%s/%s", stage, e->d_name);
            snprintf(to, sizeof to, "%s/%s", out_dir, e->d_name);
            if (rename(from, to)) rc = fg_set_error("cannot move '%s' to '%s': %s", from, to, strerror(errno));
        }
    closedir(d);
    snprintf(from, sizeof from, "%s/manifest.json", stage);
    snprintf(to, sizeof to, "%s/manifest.json", out_dir);
    if (!rc && rename(from, to)) rc = fg_set_error("cannot move '%s' to '%s': %s", from, to, strerror(errno));
    if (!rc) rmdir(stage);
    return rc;
}

int fg_data_prepare(const fg_prepare_opts *o, const char *const *files, int n_files, fg_prepare_report *r) {
    memset(r, 0, sizeof *r);
    if (n_files < 1) return fg_set_error("no input files; hint: pass .txt or .jsonl files");
    if (!(o->val_fraction >= 0 && o->val_fraction <= 0.5)) return fg_set_error("val_fraction must be in [0, 0.5] (got %g)", o->val_fraction);
    if (o->shard_tokens < 1) return fg_set_error("shard_tokens must be >= 1 (got %" PRId64 ")", o->shard_tokens);
    if (!o->out_dir) return fg_set_error("no output directory");
    prep p = {.o = o, .r = r, .vocab = FG_BYTE_VOCAB, .bos = FG_TOK_BOS, .eos = FG_TOK_EOS};
    char *tok_bytes = NULL;
    size_t tok_len = 0;
    const char *tok_name = NULL;
    fg_tokenizer *tok = NULL;
    int rc = -1, created = 0;
    char stage[4200];
    snprintf(stage, sizeof stage, "%s/%s", o->out_dir, STAGE_DIR);
    p.dir = stage;
    if (check_out_dir(o->out_dir, &created)) return -1;
    remove_stage(stage); // left by a run that was killed
    if (mkdir(stage, 0755)) { fg_set_error("cannot create '%s': %s", stage, strerror(errno)); goto done; }
    if (o->tokenizer) {
        if (!(tok_bytes = fg_read_file(o->tokenizer, &tok_len)) || !(tok = fg_tokenizer_load_mem(tok_bytes, tok_len, o->tokenizer)))
            goto done;
        p.tok = tok;
        p.tok_hash = fg_tokenizer_hash(tok_bytes, tok_len);
        p.vocab = fg_tokenizer_vocab_size(tok);
        p.bos = fg_tokenizer_token_id(tok, BOS_TEXT);
        p.eos = fg_tokenizer_token_id(tok, EOS_TEXT);
        if (p.bos < 0 || p.eos < 0) {
            fg_set_error("%s: the tokenizer has no %s token; hint: frugal needs the DeepSeek document markers %s and %s",
                         o->tokenizer, p.bos < 0 ? BOS_TEXT : EOS_TEXT, BOS_TEXT, EOS_TEXT);
            goto done;
        }
        // The copy trainers load, named by kind so a GGUF stays a GGUF.
        tok_name = tok_len >= 4 && !memcmp(tok_bytes, "GGUF", 4) ? "tokenizer.gguf" : "tokenizer.json";
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", stage, tok_name);
        FILE *f = fopen(path, "wb");
        int ok = f && fwrite(tok_bytes, 1, tok_len, f) == tok_len;
        if (f && fclose(f)) ok = 0;
        if (!ok) { fg_set_error("cannot write '%s': %s", path, strerror(errno)); goto done; }
    }
    p.width = p.vocab <= 65536 ? 2 : 4;
    for (int i = 0; i < n_files; i++) {
        size_t len;
        char *buf = fg_read_file(files[i], &len);
        if (!buf) goto done;
        int frc = 0;
        size_t bad;
        if (len == 0) frc = fg_set_error("'%s' is empty; hint: remove it from the input list", files[i]);
        else if (is_jsonl(files[i])) frc = prepare_jsonl(&p, files[i], buf, len);
        else if (o->sft) frc = fg_set_error("'%s': --sft takes .jsonl files of {\"conversations\": [...]}", files[i]);
        else if (!fg_utf8_validate(buf, len, &bad)) frc = fg_set_error("'%s': invalid UTF-8 at byte offset %zu; hint: convert the file to UTF-8", files[i], bad);
        else {
            size_t skip = len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3) ? 3 : 0;
            if (skip < len) frc = add_text_doc(&p, buf + skip, len - skip);
        }
        free(buf);
        if (frc) goto done;
    }
    if (flush_shard(&p, 0) || flush_shard(&p, 1)) goto done;
    for (int k = 0; k < 2; k++) for (int i = 0; i < p.split[k].n_list; i++) r->tokens += p.split[k].list[i].tokens;
    if (r->documents == 0) {
        fg_set_error("no documents: the %d input file(s) hold no usable document (%" PRIu64 " line(s) skipped)", n_files, r->skipped_lines);
        goto done;
    }
    if (p.split[0].n_list == 0) {
        fg_set_error("every document went to validation; hint: lower --val-fraction or add documents");
        goto done;
    }
    rc = write_manifest(&p, tok_name, files, n_files) || commit_stage(o->out_dir, stage) ? -1 : 0;
done:
    if (rc) {
        remove_stage(stage);
        if (created) rmdir(o->out_dir);
    }
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < p.split[k].n_list; i++) free(p.split[k].list[i].file);
        free(p.split[k].list); free(p.split[k].tok); free(p.split[k].trained);
    }
    fg_tokenizer_free(tok);
    free(tok_bytes);
    return rc;
}
