// cache.c: the offline teacher cache (layout at the top of distill.h and in docs/formats.md):
// reading (mmap + full validation) and building (one teacher forward over the data).
//
// Invariants: a cache is written to PATH.tmp, fsynced and renamed, so a reader sees a whole
// file or none; every header field, offset and CRC and every token is checked before a pointer
// into the file is used. Not done here: the loss (loss.c) and the training loop (distill.c).
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "data/task.h"
#include "distill/distill.h"
#include "formats/checkpoint.h"
#include "ops/quant.h"
#include "model/model.h"
#include "util.h"

uint64_t fg_fnv64(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 0x100000001b3ull; }
    return h;
}

uint64_t fg_distill_teacher_hash(const fg_model *m) {
    char *json = fg_config_to_json(&m->cfg);
    uint64_t h = fg_fnv64(FG_FNV_OFFSET, json ? json : "", json ? strlen(json) : 0);
    free(json);
    return fg_fnv64(h, m->params, sizeof(float) * m->n_params);
}

static uint32_t rd32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

int fg_dcache_parse(fg_dcache *c, const uint8_t *buf, size_t len, const char *where) {
    memset(c, 0, sizeof *c);
    if (len < FG_DCACHE_HEADER) return fg_set_error("%s: %zu bytes is too short for a teacher cache header (128)", where, len);
    if (memcmp(buf, FG_DCACHE_MAGIC, 8)) return fg_set_error("%s: not a frugal teacher cache (magic)", where);
    if (rd32(buf + 8) != FG_DCACHE_VERSION)
        return fg_set_error("%s: version %u, this frugal reads version %d", where, rd32(buf + 8), FG_DCACHE_VERSION);
    if (rd32(buf + 124) != fg_crc32(0, buf, 124)) return fg_set_error("%s: header CRC mismatch (corrupted file)", where);
    if (rd32(buf + 12) != FG_DCACHE_HEADER) return fg_set_error("%s: header bytes %u, expected 128", where, rd32(buf + 12));
    uint32_t V = rd32(buf + 16), k = rd32(buf + 20), T = rd32(buf + 24);
    uint64_t S = rd64(buf + 32);
    if (V < 2 || V > (1u << 24)) return fg_set_error("%s: vocabulary %u outside [2, 2^24]", where, V);
    if (k < 1 || k >= V || k > FG_DISTILL_MAX_K) return fg_set_error("%s: k %u outside [1, min(V-1, %d)]", where, k, FG_DISTILL_MAX_K);
    if (T < 1 || T > (1u << 20)) return fg_set_error("%s: sequence length %u outside [1, 2^20]", where, T);
    if (rd32(buf + 28) != FG_DCACHE_ENTRY) return fg_set_error("%s: entry bytes %u, expected 5", where, rd32(buf + 28));
    if (S < 1 || S > ((uint64_t)1 << 40) / T) return fg_set_error("%s: sequence count %llu out of range", where, (unsigned long long)S);
    float temp;
    memcpy(&temp, buf + 40, 4);
    if (!(temp > 0) || !isfinite(temp)) return fg_set_error("%s: temperature %g must be > 0", where, temp);
    if (rd32(buf + 44) != 0) return fg_set_error("%s: unknown flags 0x%x", where, rd32(buf + 44));
    uint64_t ntok = S * T, tok_off = FG_DCACHE_HEADER, ent_off = tok_off + ntok * 8, rec = 5ull * k + 2;
    if (rd64(buf + 64) != tok_off) return fg_set_error("%s: tokens offset %llu, expected %llu", where, (unsigned long long)rd64(buf + 64), (unsigned long long)tok_off);
    if (rd64(buf + 72) != ent_off) return fg_set_error("%s: entries offset %llu, expected %llu", where, (unsigned long long)rd64(buf + 72), (unsigned long long)ent_off);
    uint64_t total = ent_off + ntok * rec;
    if (rd64(buf + 80) != total) return fg_set_error("%s: file bytes field %llu, expected %llu", where, (unsigned long long)rd64(buf + 80), (unsigned long long)total);
    if ((uint64_t)len != total)
        return fg_set_error("%s: file is %zu bytes, the header says %llu (truncated or appended)", where, len, (unsigned long long)total);
    double fl;
    memcpy(&fl, buf + 88, 8);
    if (!(fl >= 0) || !isfinite(fl)) return fg_set_error("%s: teacher FLOPs field is not a number >= 0", where);
    if (rd32(buf + 96) != fg_crc32(0, buf + FG_DCACHE_HEADER, len - FG_DCACHE_HEADER))
        return fg_set_error("%s: payload CRC mismatch (corrupted file)", where);
    for (uint64_t s = 0; s < S; s++)
        for (uint32_t t = 0; t < 2 * T; t++) {
            int32_t v = (int32_t)rd32(buf + tok_off + (s * 2 * T + t) * 4);
            if (v >= (int32_t)V || v < (t < T ? 0 : -1))
                return fg_set_error("%s: sequence %llu: %s token %d outside the vocabulary", where, (unsigned long long)s,
                                    t < T ? "input" : "target", v);
        }
    c->V = V; c->k = k; c->T = T; c->S = S; c->temperature = temp;
    c->data_hash = rd64(buf + 48); c->teacher_hash = rd64(buf + 56); c->teacher_flops = fl;
    c->base = buf; c->len = len; c->tokens = buf + tok_off; c->entries = buf + ent_off;
    return 0;
}

int fg_dcache_open(fg_dcache *c, const char *path) {
    memset(c, 0, sizeof *c);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fg_set_error("cannot open teacher cache '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || sb.st_size < 1) { close(fd); return fg_set_error("%s: empty or unreadable teacher cache", path); }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return fg_set_error("cannot map '%s': %s", path, strerror(errno));
    if (fg_dcache_parse(c, p, (size_t)sb.st_size, path)) { munmap(p, (size_t)sb.st_size); return -1; }
    c->mapped = 1;
    return 0;
}

void fg_dcache_close(fg_dcache *c) {
    if (c->mapped && c->base) munmap((void *)c->base, c->len);
    memset(c, 0, sizeof *c);
}

void fg_dcache_tokens(const fg_dcache *c, uint64_t s, int32_t *inputs, int32_t *targets) {
    const uint8_t *p = c->tokens + s * 2 * c->T * 4;
    for (uint32_t t = 0; t < c->T; t++) { inputs[t] = (int32_t)rd32(p + 4 * t); targets[t] = (int32_t)rd32(p + 4 * (c->T + t)); }
}

void fg_dcache_entry(const fg_dcache *c, uint64_t s, int t, int32_t *ids, float *logp, float *logtail) {
    const uint8_t *p = c->entries + (s * c->T + (uint64_t)t) * (5ull * c->k + 2);
    for (uint32_t i = 0; i < c->k; i++, p += 5) {
        ids[i] = p[0] | p[1] << 8 | p[2] << 16;
        logp[i] = fg_fp16_to_f32((uint16_t)(p[3] | p[4] << 8));
    }
    *logtail = fg_fp16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

// ---- building ------------------------------------------------------------------------------

// Hash of the data a cache's windows come from: the train stream's tokens (they depend on the
// files, the tokenizer and the val fraction) or, for the built-in task, the task's name.
int fg_distill_data_hash(const fg_train_opts *o, const char *tok_bytes, size_t tok_len, uint64_t *hash, void *ds_out) {
    fg_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (!o->n_data) {
        if (o->shards) return fg_set_error("teacher caches are built from data files or the built-in task, not --shards");
        *hash = fg_fnv64(FG_FNV_OFFSET, "frugal built-in task v1", 23);
        return 0;
    }
    int rc;
    if (tok_bytes) {
        fg_tokenizer *tok = fg_tokenizer_load_mem(tok_bytes, tok_len, "the teacher's tokenizer");
        if (!tok) return -1;
        rc = fg_dataset_load_tok(&ds, o->data, o->n_data, o->val_fraction, tok, fg_tokenizer_token_id(tok, FG_DS_BOS),
                                 fg_tokenizer_token_id(tok, FG_DS_EOS));
        fg_tokenizer_free(tok);
    } else {
        rc = fg_dataset_load(&ds, o->data, o->n_data, o->val_fraction);
    }
    if (rc) return -1;
    uint64_t h = fg_fnv64(FG_FNV_OFFSET, "frugal data v1", 14);
    h = fg_fnv64(h, &ds.train.n_tokens, sizeof ds.train.n_tokens);
    *hash = fg_fnv64(h, ds.train.tokens, sizeof(int32_t) * ds.train.n_tokens);
    if (ds_out) memcpy(ds_out, &ds, sizeof ds);
    else fg_dataset_free(&ds);
    return 0;
}

// Min-heap of (logit, id) keeping the k largest; ties keep the lower id.
typedef struct { float v; int32_t id; } hent;
static int hless(hent a, hent b) { return a.v < b.v || (a.v == b.v && a.id > b.id); }
static void sift(hent *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && hless(h[l], h[m])) m = l;
        if (r < n && hless(h[r], h[m])) m = r;
        if (m == i) return;
        hent t = h[i]; h[i] = h[m]; h[m] = t; i = m;
    }
}
static int hcmp_desc(const void *a, const void *b) {
    hent x = *(const hent *)a, y = *(const hent *)b;
    return hless(x, y) ? 1 : hless(y, x) ? -1 : 0;
}

// One position: top-k of logits (V) at temperature T, written as a 5k+2 byte record.
static void encode_row(uint8_t *rec, const float *z, int V, int k, double T, hent *h, unsigned char *mark) {
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < V; j++) mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < V; j++) sum += exp(((double)z[j] - mx) / T);
    double lse = mx / T + log(sum);
    int n = 0;
    for (int j = 0; j < V; j++) {
        hent e = {z[j], j};
        if (n < k) {
            h[n++] = e;
            if (n == k) for (int i = k / 2 - 1; i >= 0; i--) sift(h, k, i);
        } else if (hless(h[0], e)) { h[0] = e; sift(h, k, 0); }
    }
    qsort(h, (size_t)k, sizeof *h, hcmp_desc);
    double top = 0;
    for (int i = 0; i < k; i++) {
        double lp = h[i].v / T - lse;
        top += exp(lp);
        uint16_t f = fg_f32_to_fp16((float)lp);
        uint8_t *p = rec + 5 * i;
        p[0] = (uint8_t)h[i].id; p[1] = (uint8_t)(h[i].id >> 8); p[2] = (uint8_t)(h[i].id >> 16);
        p[3] = (uint8_t)f; p[4] = (uint8_t)(f >> 8);
    }
    // the tail directly (not 1 - top, which cancels when the top-k hold nearly everything)
    double tail = 0;
    for (int i = 0; i < k; i++) mark[h[i].id] = 1;
    for (int j = 0; j < V; j++) if (!mark[j]) tail += exp((double)z[j] / T - lse);
    for (int i = 0; i < k; i++) mark[h[i].id] = 0;
    (void)top;
    double lt = tail > 1e-300 ? log(tail) : -INFINITY;
    uint16_t f = fg_f32_to_fp16((float)lt);
    rec[5 * k] = (uint8_t)f; rec[5 * k + 1] = (uint8_t)(f >> 8);
}

int fg_distill_cache_build(const fg_distill_cache_opts *co, const fg_train_opts *o, fg_distill_cache_info *info) {
    memset(info, 0, sizeof *info);
    double t0 = fg_now();
    if (!co->teacher || !co->out) return fg_set_error("a teacher cache needs a teacher checkpoint and an output path");
    int B = co->batch > 0 ? co->batch : 16, T = o->seq;
    if (T < 1) return fg_set_error("sequence length %d must be >= 1", T);
    if (!o->n_data && T < FG_TASK_LONGEST - 1) return fg_set_error("the built-in task needs --seq >= %d (got %d)", FG_TASK_LONGEST - 1, T);
    fg_train_state tst;
    fg_model *tm = fg_ckpt_load(co->teacher, NULL, &tst);
    if (!tm) return -1;
    int V = tm->cfg.vocab_size, k = co->k, rc = -1;
    float temp = co->temperature;
    fg_dataset ds;
    memset(&ds, 0, sizeof ds);
    int32_t *toks = NULL;
    uint8_t *rec = NULL;
    hent *heap = NULL;
    unsigned char *mark = NULL;
    FILE *f = NULL;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", co->out);
    if (k < 1 || k >= V || k > FG_DISTILL_MAX_K) {
        fg_set_error("--k %d must be in [1, %d]: the teacher's vocabulary has %d tokens%s", k, FG_MIN(V - 1, FG_DISTILL_MAX_K), V,
                     k >= V ? " (k must be smaller than the vocabulary)" : "");
        goto done;
    }
    if (!(temp > 0) || !isfinite(temp)) { fg_set_error("temperature must be > 0 (got %g)", temp); goto done; }
    if (T > tm->cfg.max_position_embeddings) {
        fg_set_error("seq %d exceeds the teacher's max_position_embeddings %d", T, tm->cfg.max_position_embeddings);
        goto done;
    }
    uint64_t dhash;
    if (fg_distill_data_hash(o, tst.tokenizer_data, tst.tokenizer_len, &dhash, &ds)) goto done;
    int64_t S, n_win = 0;
    if (o->n_data) {
        S = n_win = (int64_t)fg_stream_n_windows(&ds.train, T);
        if (S < 1) { fg_set_error("the training data holds no window of %d tokens", T); goto done; }
        if (co->max_seqs > 0 && co->max_seqs < S) S = co->max_seqs;
    } else {
        S = co->max_seqs > 0 ? co->max_seqs : 4096;
    }
    size_t ntok = (size_t)S * T, recb = 5 * (size_t)k + 2;
    toks = malloc(ntok * 2 * sizeof(int32_t));
    rec = malloc(recb * (size_t)B * T);
    heap = malloc(sizeof(hent) * k);
    mark = calloc((size_t)V, 1);
    if (!toks || !rec || !heap || !mark) { fg_set_error("out of memory for a cache of %lld sequences", (long long)S); goto done; }
    fg_rng r;
    fg_rng_seed(&r, co->seed ^ 0x64636163ull);
    for (int64_t s = 0; s < S; s++) {
        int32_t *in = toks + (size_t)s * 2 * T, *tg = in + T;
        // fewer sequences than windows: spread evenly over the whole stream, not its first documents
        if (o->n_data) fg_stream_window(&ds.train, (size_t)((__int128)s * n_win / S), in, tg, 1, T);
        else fg_task_batch(&r, in, tg, 1, T);
    }
    int64_t act_total, act;
    fg_config_param_counts(&tm->cfg, &act_total, &act);
    double flops = 2.0 * (double)act * (double)ntok;
    f = fopen(tmp, "wb");
    if (!f) { fg_set_error("cannot write '%s': %s", tmp, strerror(errno)); goto done; }
    uint8_t hdr[FG_DCACHE_HEADER];
    memset(hdr, 0, sizeof hdr);
    int ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr;
    uint8_t *tb = malloc(ntok * 8);
    if (!tb) { fg_set_error("out of memory"); goto done; }
    for (size_t i = 0; i < ntok * 2; i++) wr32(tb + 4 * i, (uint32_t)toks[i]);
    uint32_t crc = fg_crc32(0, tb, ntok * 8);
    ok = ok && fwrite(tb, 1, ntok * 8, f) == ntok * 8;
    free(tb);
    int32_t *bin = malloc(sizeof(int32_t) * (size_t)B * T);
    if (!bin) { fg_set_error("out of memory"); goto done; }
    for (int64_t s0 = 0; s0 < S && ok; s0 += B) {
        int nb = (int)FG_MIN((int64_t)B, S - s0);
        for (int b = 0; b < nb; b++) memcpy(bin + (size_t)b * T, toks + (size_t)(s0 + b) * 2 * T, sizeof(int32_t) * T);
        if (fg_model_forward(tm, bin, NULL, nb, T, NULL)) { free(bin); goto done; }
#pragma omp parallel
        {
            hent *hp = malloc(sizeof(hent) * k);
            unsigned char *mk = calloc((size_t)V, 1);
#pragma omp for schedule(static)
            for (int n = 0; n < nb * T; n++)
                if (hp && mk) encode_row(rec + (size_t)n * recb, tm->logits + (size_t)n * V, V, k, temp, hp, mk);
            free(hp); free(mk);
        }
        size_t nbytes = (size_t)nb * T * recb;
        crc = fg_crc32(crc, rec, nbytes);
        ok = fwrite(rec, 1, nbytes, f) == nbytes;
    }
    free(bin);
    memcpy(hdr, FG_DCACHE_MAGIC, 8);
    wr32(hdr + 8, FG_DCACHE_VERSION); wr32(hdr + 12, FG_DCACHE_HEADER);
    wr32(hdr + 16, (uint32_t)V); wr32(hdr + 20, (uint32_t)k); wr32(hdr + 24, (uint32_t)T); wr32(hdr + 28, FG_DCACHE_ENTRY);
    wr64(hdr + 32, (uint64_t)S); memcpy(hdr + 40, &temp, 4); wr32(hdr + 44, 0);
    uint64_t thash = fg_distill_teacher_hash(tm);
    wr64(hdr + 48, dhash); wr64(hdr + 56, thash);
    uint64_t ent_off = FG_DCACHE_HEADER + (uint64_t)ntok * 8, total = ent_off + (uint64_t)ntok * recb;
    wr64(hdr + 64, FG_DCACHE_HEADER); wr64(hdr + 72, ent_off); wr64(hdr + 80, total);
    memcpy(hdr + 88, &flops, 8);
    wr32(hdr + 96, crc);
    wr32(hdr + 124, fg_crc32(0, hdr, 124));
    ok = ok && fseek(f, 0, SEEK_SET) == 0 && fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f)) ok = 0;
    f = NULL;
    if (!ok || rename(tmp, co->out)) { fg_set_error("cannot write teacher cache '%s': %s", co->out, strerror(errno)); unlink(tmp); goto done; }
    info->seqs = S; info->seq = T; info->k = k; info->V = V;
    info->tokens = (double)ntok; info->bytes = (double)total; info->bytes_per_token = (double)total / (double)ntok;
    info->teacher_flops = flops; info->wall_s = fg_now() - t0;
    info->data_hash = dhash; info->teacher_hash = thash;
    rc = 0;
done:
    if (f) { fclose(f); unlink(tmp); }
    free(toks); free(rec); free(heap); free(mark);
    fg_dataset_free(&ds);
    fg_train_state_free(&tst);
    fg_model_free(tm);
    return rc;
}

int fg_distill_cache_stat(const char *path, fg_distill_cache_info *info) {
    memset(info, 0, sizeof *info);
    fg_dcache c;
    if (fg_dcache_open(&c, path)) return -1;
    info->seqs = (int64_t)c.S; info->seq = (int)c.T; info->k = (int)c.k; info->V = (int)c.V;
    info->tokens = (double)c.S * c.T; info->bytes = (double)c.len; info->bytes_per_token = info->bytes / info->tokens;
    info->teacher_flops = c.teacher_flops; info->data_hash = c.data_hash; info->teacher_hash = c.teacher_hash;
    fg_dcache_close(&c);
    return 0;
}
