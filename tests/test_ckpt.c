// test_ckpt.c: the .fgck checkpoint: bit-exact round trips (MLA+MoE preset, a GQA tied config,
// with and without optimizer and train state), load_into and its config check, every truncation,
// every single-byte corruption, header checks, forward compatibility (unknown sections), the
// atomic save (failed temp file, stale temp file, a writer killed mid-save), and the config
// hardening that hostile checkpoints reach.
// Run with `--write-seeds DIR` it writes the fuzz seeds (fuzz/seeds/ckpt/{tiny,gqa}.fgck) and exits.
#include "test.h"
#include "formats/checkpoint.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/train.h"
#include "util.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

// ---- temp files ------------------------------------------------------------------------------
static char tmp_dir[64];

static const char *tpath(const char *name) {
    static char bufs[8][160];
    static int k;
    char *p = bufs[k++ % 8];
    snprintf(p, 160, "%s/%s", tmp_dir, name);
    return p;
}

static uint8_t *slurp(const char *path, size_t *len) {
    uint8_t *b = (uint8_t *)fg_read_file(path, len);
    if (!b) { fprintf(stderr, "%s\n", fg_last_error()); exit(2); }
    return b;
}

static void spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f)) { perror(path); exit(2); }
}

static int exists(const char *path) { struct stat sb; return stat(path, &sb) == 0; }

#define CHECK_ERR(needle) do { const char *e_ = fg_last_error(); \
    CHECK_MSG(strstr(e_, (needle)) != NULL, "'%s' not in: %s", (needle), e_); } while (0)

// ---- state -----------------------------------------------------------------------------------

// A config small enough for every-byte tests and the fuzz seed, with every MLA/MoE feature on.
static void seed_config(fg_config *c) {
    fg_config_preset(c, "tiny");
    c->vocab_size = 16; c->hidden_size = 8; c->num_hidden_layers = 2; c->first_k_dense_replace = 1;
    c->intermediate_size = 8; c->moe_intermediate_size = 4; c->num_attention_heads = 2; c->num_key_value_heads = 2;
    c->q_lora_rank = 4; c->kv_lora_rank = 4; c->qk_nope_head_dim = 2; c->qk_rope_head_dim = 2; c->v_head_dim = 2;
    c->n_routed_experts = 4; c->n_shared_experts = 1; c->num_experts_per_tok = 2; c->n_group = 2; c->topk_group = 1;
    c->max_position_embeddings = 8; c->head_dim = c->hidden_size / c->num_attention_heads;
}

static void gqa_config(fg_config *c) {
    seed_config(c);
    c->attn_type = FG_ATTN_GQA; c->attention_bias = 1; c->tie_word_embeddings = 1; c->num_key_value_heads = 1;
    c->n_routed_experts = 0; c->first_k_dense_replace = 0; c->rope_interleave = 0;
}

// Weights, touched flags, AdamW moments and step counts, and a train state, all non-trivial.
static fg_model *make_model(const fg_config *c, fg_adamw *o, fg_train_state *st, uint64_t seed) {
    fg_model *m = fg_model_create(c);
    if (!m) { fprintf(stderr, "%s\n", fg_last_error()); exit(2); }
    fg_model_init_weights(m, seed);
    fg_rng r;
    fg_rng_seed(&r, seed * 7 + 1);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.001f * fg_rng_normal(&r); // norms, biases too
    for (int i = 0; i < m->n_tensors; i++) m->touched[i] = (unsigned char)(fg_rng_u64(&r) & 1);
    if (o) {
        if (fg_adamw_init(o, m->n_params, m->n_tensors)) { fprintf(stderr, "%s\n", fg_last_error()); exit(2); }
        for (size_t i = 0; i < o->n; i++) { o->m[i] = fg_rng_normal(&r); o->v[i] = fg_rng_uniform(&r) * 1e-3f; }
        for (int i = 0; i < o->n_tensors; i++) o->t[i] = m->touched[i] ? (int64_t)(fg_rng_u64(&r) >> 34) : 0;
    }
    if (st) {
        memset(st, 0, sizeof *st);
        st->step = 123456789012345;           // beyond float/int32 range, below 2^53
        st->tokens_seen = INT64_MAX - 5;       // beyond 2^53: must survive as a string
        fg_rng_seed(&st->rng, seed);
        fg_rng_seed(&st->data_rng, ~seed);
        st->data_rng.s[3] = UINT64_MAX;
        st->batches_drawn = UINT64_MAX - 1;
        strcpy(st->tokenizer, "byte");
        st->train_json = strdup("{\"lr\": 0.001, \"task\": \"arith\", \"note\": \"tab\\t quote\\\" \xc3\xa9\"}");
    }
    return m;
}

static void check_same_model(const fg_model *a, const fg_model *b) {
    CHECK(memcmp(&a->cfg, &b->cfg, sizeof a->cfg) == 0);
    CHECK(a->n_params == b->n_params && a->n_tensors == b->n_tensors);
    if (a->n_params != b->n_params || a->n_tensors != b->n_tensors) return;
    CHECK(memcmp(a->params, b->params, sizeof(float) * a->n_params) == 0);
    CHECK(memcmp(a->touched, b->touched, (size_t)a->n_tensors) == 0);
}

static void check_same_opt(const fg_adamw *a, const fg_adamw *b) {
    CHECK(a->n == b->n && a->n_tensors == b->n_tensors && b->m && b->v && b->t);
    if (a->n != b->n || a->n_tensors != b->n_tensors || !b->m) return;
    CHECK(memcmp(a->m, b->m, sizeof(float) * a->n) == 0);
    CHECK(memcmp(a->v, b->v, sizeof(float) * a->n) == 0);
    CHECK(memcmp(a->t, b->t, sizeof(int64_t) * (size_t)a->n_tensors) == 0);
}

static void check_same_state(const fg_train_state *a, const fg_train_state *b) {
    CHECK(a->step == b->step && a->tokens_seen == b->tokens_seen && a->batches_drawn == b->batches_drawn);
    CHECK(memcmp(&a->rng, &b->rng, sizeof a->rng) == 0 && memcmp(&a->data_rng, &b->data_rng, sizeof a->rng) == 0);
    CHECK(strcmp(a->tokenizer, b->tokenizer) == 0);
    CHECK(a->train_json && b->train_json && strcmp(a->train_json, b->train_json) == 0);
}

// ---- raw section walking (the test's own reader of the layout) -------------------------------

typedef struct { char tag[5]; size_t hdr, off, len; } sec_info;

static uint64_t rd64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void wr64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

static int walk(const uint8_t *b, size_t n, sec_info *out, int cap) {
    size_t off = 16;
    int k = 0;
    while (off + 12 <= n && k < cap) {
        sec_info *s = &out[k++];
        memcpy(s->tag, b + off, 4); s->tag[4] = 0;
        s->hdr = off; s->off = off + 12; s->len = (size_t)rd64(b + off + 4);
        off = s->off + s->len + 4;
        if (!strcmp(s->tag, "END ")) break;
    }
    return k;
}

static const sec_info *find_sec(const sec_info *s, int n, const char *tag) {
    for (int i = 0; i < n; i++) if (!strcmp(s[i].tag, tag)) return &s[i];
    return NULL;
}

// One section, serialised: tag, length, payload, CRC (bad_crc: CRC off by one).
static size_t make_sec(uint8_t *out, const char *tag, const void *p, size_t n, int bad_crc) {
    memcpy(out, tag, 4);
    wr64(out + 4, n);
    memcpy(out + 12, p, n);
    wr32(out + 12 + n, fg_crc32(0, p, n) + (bad_crc ? 1 : 0));
    return 12 + n + 4;
}

// b with the payload of section `tag` replaced (CRC recomputed) into out; returns the new length.
static size_t replace_sec(const uint8_t *b, size_t n, const sec_info *s, int ns, const char *tag, const char *payload,
                          uint8_t *out) {
    const sec_info *r = find_sec(s, ns, tag);
    size_t k = r->hdr, end = r->off + r->len + 4;
    memcpy(out, b, k);
    k += make_sec(out + k, tag, payload, strlen(payload), 0);
    memcpy(out + k, b + end, n - end);
    return k + n - end;
}

// ---- tests -----------------------------------------------------------------------------------

static void test_crc(void) {
    CHECK(fg_crc32(0, "123456789", 9) == 0xCBF43926u);
    CHECK(fg_crc32(0, "", 0) == 0);
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (uint8_t)(i * 31 + 7);
    uint32_t whole = fg_crc32(0, buf, 1000);
    for (size_t cut = 0; cut <= 1000; cut += 37) CHECK(fg_crc32(fg_crc32(0, buf, cut), buf + cut, 1000 - cut) == whole);
}

static void test_round_trip(const fg_config *c, const char *name) {
    const char *path = tpath(name);
    char tmp[200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fg_adamw o;
    fg_train_state st;
    fg_model *m = make_model(c, &o, &st, 42);
    CHECK_MSG(fg_ckpt_save(path, m, &o, &st) == 0, "%s", fg_last_error());
    CHECK(!exists(tmp));

    fg_adamw o2;
    fg_train_state st2;
    fg_model *m2 = fg_ckpt_load(path, &o2, &st2);
    CHECK_MSG(m2 != NULL, "%s", fg_last_error());
    if (m2) {
        check_same_model(m, m2);
        check_same_opt(&o, &o2);
        check_same_state(&st, &st2);
        fg_model_free(m2); fg_adamw_free(&o2); free(st2.train_json);
    }
    fg_config c2;
    CHECK(fg_ckpt_read_config(path, &c2) == 0 && memcmp(&c2, c, sizeof c2) == 0);

    // Weights only.
    m2 = fg_ckpt_load(path, NULL, NULL);
    CHECK(m2 != NULL);
    if (m2) check_same_model(m, m2);
    fg_model_free(m2);

    // WGHT is 64-byte aligned; the file is what the layout says.
    size_t n;
    uint8_t *b = slurp(path, &n);
    sec_info s[16];
    int ns = walk(b, n, s, 16);
    const sec_info *w = find_sec(s, ns, "WGHT");
    CHECK(w && w->off % 64 == 0 && w->len == 4 * m->n_params);
    CHECK(ns == 8 && !strcmp(s[0].tag, "CONF") && !strcmp(s[ns - 1].tag, "END ") && s[ns - 1].off + 4 == n);
    free(b);

    // Saved without optimizer or train state.
    CHECK(fg_ckpt_save(path, m, NULL, NULL) == 0);
    memset(&o2, 0xAB, sizeof o2);
    m2 = fg_ckpt_load(path, &o2, NULL);
    CHECK(m2 && o2.m == NULL && o2.v == NULL && o2.t == NULL);
    if (m2) check_same_model(m, m2);
    fg_model_free(m2);
    CHECK(fg_ckpt_load(path, NULL, &st2) == NULL);
    CHECK_ERR(path); CHECK_ERR("section 'META' is missing");
    CHECK(st2.train_json == NULL);

    // load_into: zeroed optimizer, then a pre-initialised one; model starts different.
    CHECK(fg_ckpt_save(path, m, &o, &st) == 0);
    fg_model *m3 = fg_model_create(c);
    fg_adamw o3;
    memset(&o3, 0, sizeof o3);
    CHECK_MSG(fg_ckpt_load_into(path, m3, &o3, &st2) == 0, "%s", fg_last_error());
    check_same_model(m, m3);
    check_same_opt(&o, &o3);
    check_same_state(&st, &st2);
    free(st2.train_json);
    memset(o3.m, 0, sizeof(float) * o3.n);
    memset(m3->params, 0, sizeof(float) * m3->n_params);
    CHECK(fg_ckpt_load_into(path, m3, &o3, NULL) == 0);
    check_same_model(m, m3);
    check_same_opt(&o, &o3);
    fg_adamw_free(&o3);
    fg_adamw_init(&o3, 3, 1); // wrong sizes are refused
    CHECK(fg_ckpt_load_into(path, m3, &o3, NULL) == -1);
    CHECK_ERR("optimizer passed in");
    fg_adamw_free(&o3);
    fg_model_free(m3);

    // Saving refuses inconsistent inputs.
    fg_adamw bad = o;
    bad.n = 1;
    CHECK(fg_ckpt_save(path, m, &bad, NULL) == -1);
    fg_train_state neg = st;
    neg.step = -1;
    CHECK(fg_ckpt_save(path, m, NULL, &neg) == -1);
    CHECK_ERR("negative step");

    unlink(path);
    fg_model_free(m); fg_adamw_free(&o); free(st.train_json);
}

static void test_load_into_mismatch(void) {
    fg_config c, c2;
    fg_config_preset(&c, "tiny");
    const char *path = tpath("tiny_into.fgck");
    fg_model *m = make_model(&c, NULL, NULL, 3);
    CHECK(fg_ckpt_save(path, m, NULL, NULL) == 0);

    c2 = c;
    c2.hidden_size = 64;
    c2.head_dim = 32;
    fg_model *other = make_model(&c2, NULL, NULL, 4);
    float first = other->params[0];
    CHECK(fg_ckpt_load_into(path, other, NULL, NULL) == -1);
    CHECK_ERR(path);
    CHECK_ERR("checkpoint config differs from the model's: hidden_size 32 vs 64");
    CHECK(other->params[0] == first);
    fg_model_free(other);

    c2 = c;
    c2.rms_norm_eps = 1e-5f;
    other = fg_model_create(&c2);
    CHECK(fg_ckpt_load_into(path, other, NULL, NULL) == -1);
    CHECK_ERR("rms_norm_eps 9.99999997e-07 vs 9.99999975e-06");
    fg_model_free(other);

    c2 = c;
    c2.topk_method = FG_TOPK_GROUP_LIMITED_GREEDY;
    other = fg_model_create(&c2);
    CHECK(fg_ckpt_load_into(path, other, NULL, NULL) == -1);
    CHECK_ERR("topk_method 2 vs 1");
    fg_model_free(other);

    // Fields that JSON does not carry (rope_* without yarn) do not count.
    c2 = c;
    c2.rope_factor = 4.0f;
    other = fg_model_create(&c2);
    CHECK_MSG(fg_ckpt_load_into(path, other, NULL, NULL) == 0, "%s", fg_last_error());
    fg_model_free(other);

    // A corrupt file leaves the model untouched (validated before anything is copied).
    size_t n;
    uint8_t *b = slurp(path, &n);
    sec_info s[16];
    int ns = walk(b, n, s, 16);
    const sec_info *w = find_sec(s, ns, "WGHT");
    b[w->off + w->len - 1] ^= 0x40;
    spit(path, b, n);
    free(b);
    other = fg_model_create(&c);
    CHECK(fg_ckpt_load_into(path, other, NULL, NULL) == -1);
    CHECK_ERR("checksum mismatch in section 'WGHT'");
    int zero = 1;
    for (size_t i = 0; i < other->n_params; i++) zero &= other->params[i] == 0;
    CHECK(zero);
    fg_model_free(other);
    unlink(path);
    fg_model_free(m);
}

// Every prefix of a valid file is refused with "truncated" and the path, by every entry point.
static void test_truncation(void) {
    fg_config c;
    fg_config_preset(&c, "tiny");
    fg_adamw o;
    fg_train_state st;
    fg_model *m = make_model(&c, &o, &st, 5);
    const char *path = tpath("trunc.fgck");
    CHECK(fg_ckpt_save(path, m, &o, &st) == 0);
    size_t n;
    uint8_t *b = slurp(path, &n);
    // lengths in descending order, so the file is shrunk in place
    size_t lens[8192];
    int nl = 0;
    for (size_t L = 0; L < n && L < 4096; L++) lens[nl++] = L;
    for (size_t L = 4096; L < n && nl < 8192; L += 997) lens[nl++] = L;
    lens[nl++] = n - 1;
    int bad = 0;
    fg_model *into = fg_model_create(&c);
    for (int i = nl - 1; i >= 0; i--) {
        size_t L = lens[i];
        if (truncate(path, (off_t)L)) { perror("truncate"); exit(2); }
        fg_adamw o2;
        fg_train_state st2;
        fg_config c2;
        fg_model *m2 = fg_ckpt_load(path, &o2, &st2);
        const char *e = fg_last_error();
        if (m2 || !strstr(e, path) || !strstr(e, "truncated")) {
            if (bad++ < 5) fprintf(stderr, "length %zu: %s\n", L, m2 ? "loaded" : e);
        }
        if (m2) { fg_model_free(m2); fg_adamw_free(&o2); free(st2.train_json); }
        if (o2.m || st2.train_json) bad++;
        if (fg_ckpt_read_config(path, &c2) == 0 || !strstr(fg_last_error(), "truncated")) bad++;
        if (i % 16 == 0 && fg_ckpt_load_into(path, into, &o2, NULL) == 0) bad++;
        m2 = fg_ckpt_load_mem(b, L, "mem.fgck", NULL, NULL);
        if (m2 || !strstr(fg_last_error(), "mem.fgck: truncated")) bad++;
        fg_model_free(m2);
    }
    CHECK_MSG(bad == 0, "%d truncations were not refused cleanly (of %d)", bad, nl);
    // the message the brief promises, on a cut inside the weights
    sec_info s[16];
    int ns = walk(b, n, s, 16);
    const sec_info *w = find_sec(s, ns, "WGHT");
    CHECK(fg_ckpt_load_mem(b, w->off + 100, "ckpt.bin", NULL, NULL) == NULL);
    char want[200];
    snprintf(want, sizeof want, "ckpt.bin: truncated: tensor data ('WGHT') needs %zu bytes at offset %zu, file has %zu",
             w->len + 4, w->off, w->off + 100);
    CHECK_ERR(want);
    fg_model_free(into);
    free(b);
    unlink(path);
    fg_model_free(m); fg_adamw_free(&o); free(st.train_json);
}

// Every single-byte change of a small checkpoint is refused (except inside unknown sections, which
// the reader skips unread), and a change inside a known payload is blamed on its checksum.
static void test_corruption(void) {
    fg_config c;
    seed_config(&c);
    fg_adamw o;
    fg_train_state st;
    fg_model *m = make_model(&c, &o, &st, 9);
    const char *path = tpath("flip.fgck");
    CHECK(fg_ckpt_save(path, m, &o, &st) == 0);
    size_t n;
    uint8_t *b = slurp(path, &n);
    sec_info s[16];
    int ns = walk(b, n, s, 16);
    int undetected = 0, wrong_blame = 0, checked = 0;
    for (size_t i = 0; i < n; i++) {
        const sec_info *in = NULL;
        for (int k = 0; k < ns; k++) if (i >= s[k].hdr && i < s[k].off + s[k].len + 4) in = &s[k];
        int unknown = in && strcmp(in->tag, "PAD ") == 0;
        if (unknown && (i < in->hdr + 4 || i >= in->off)) continue; // tag, payload, CRC of a skipped section
        for (int bit = 0; bit < 8; bit += 7) {
            b[i] ^= (uint8_t)(1u << bit);
            fg_adamw o2;
            fg_train_state st2;
            fg_model *m2 = fg_ckpt_load_mem(b, n, "flip.fgck", &o2, &st2);
            checked++;
            if (m2) {
                if (undetected++ < 5) fprintf(stderr, "flip of byte %zu bit %d not detected\n", i, bit);
                fg_model_free(m2); fg_adamw_free(&o2); free(st2.train_json);
            } else if (!strstr(fg_last_error(), "flip.fgck")) {
                wrong_blame++;
            } else if (in && i >= in->off && i < in->off + in->len) {
                char want[64];
                snprintf(want, sizeof want, "checksum mismatch in section '%.4s'", in->tag);
                if (!strstr(fg_last_error(), want) && wrong_blame++ < 5)
                    fprintf(stderr, "byte %zu of '%s': %s\n", i, in->tag, fg_last_error());
            }
            b[i] ^= (uint8_t)(1u << bit);
        }
    }
    CHECK_MSG(undetected == 0 && wrong_blame == 0, "%d undetected, %d misreported of %d flips", undetected, wrong_blame, checked);

    // one flip per section through the file path too
    for (int k = 0; k < ns; k++) {
        if (!s[k].len || !strcmp(s[k].tag, "PAD ")) continue;
        b[s[k].off + s[k].len / 2] ^= 1;
        spit(path, b, n);
        b[s[k].off + s[k].len / 2] ^= 1;
        fg_model *m2 = fg_ckpt_load(path, NULL, NULL); // META and ADAM are not read when not asked for
        CHECK(m2 == NULL || !strcmp(s[k].tag, "META") || !strcmp(s[k].tag, "ADAM"));
        fg_model_free(m2);
        fg_adamw o2;
        fg_train_state st2;
        CHECK(fg_ckpt_load(path, &o2, &st2) == NULL);
        char want[128];
        snprintf(want, sizeof want, "checksum mismatch in section '%.4s' (file is corrupted)", s[k].tag);
        CHECK_ERR(want); CHECK_ERR(path);
    }
    free(b);
    unlink(path);
    fg_model_free(m); fg_adamw_free(&o); free(st.train_json);
}

static void test_header_and_sections(void) {
    fg_config c;
    seed_config(&c);
    fg_adamw o;
    fg_train_state st;
    fg_model *m = make_model(&c, &o, &st, 11);
    const char *path = tpath("hdr.fgck");
    CHECK(fg_ckpt_save(path, m, &o, &st) == 0);
    size_t n;
    uint8_t *b = slurp(path, &n);
    uint8_t *x = malloc(n + 4096);
    sec_info s[16];
    int ns = walk(b, n, s, 16);

    memcpy(x, b, n);
    x[7] = 'X';
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("ckpt.bin: not a frugal checkpoint (bad magic)");
    CHECK(fg_ckpt_load_mem((const uint8_t *)"{\"a\": 1}", 8, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("bad magic");
    CHECK(fg_ckpt_load_mem(NULL, 0, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("ckpt.bin: truncated");

    memcpy(x, b, n);
    wr32(x + 8, 2);
    spit(path, x, n);
    CHECK(fg_ckpt_load(path, NULL, NULL) == NULL);
    char want[300];
    snprintf(want, sizeof want, "%s: version 2 is newer than this frugal (reads 1) (hint: upgrade frugal)", path);
    CHECK_ERR(want);
    fg_config c2;
    CHECK(fg_ckpt_read_config(path, &c2) == -1);
    CHECK_ERR("version 2 is newer");
    wr32(x + 8, 7);
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("ckpt.bin: version 7 is newer than this frugal (reads 1) (hint: upgrade frugal)");
    wr32(x + 8, 0);
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("version 0 is invalid");
    wr32(x + 8, 1);
    wr32(x + 12, 4);
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("unknown header flags");
    wr32(x + 12, FG_CKPT_HAS_META);
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("ckpt.bin: the file has a 'ADAM' section that the header does not announce");

    // Unknown sections are skipped, wherever they are, whatever their CRC.
    size_t at = s[1].hdr, k = 0; // before META
    memcpy(x, b, at); k = at;
    k += make_sec(x + k, "XTRA", "future data", 11, 0);
    k += make_sec(x + k, "BAD!", "bad crc", 7, 1);
    k += make_sec(x + k, "ZERO", "", 0, 0);
    memcpy(x + k, b + at, s[ns - 1].hdr - at); k += s[ns - 1].hdr - at;
    k += make_sec(x + k, "LAST", "x", 1, 0);
    memcpy(x + k, b + s[ns - 1].hdr, 16); k += 16;
    fg_adamw o2;
    fg_train_state st2;
    fg_model *m2 = fg_ckpt_load_mem(x, k, "extra.fgck", &o2, &st2);
    CHECK_MSG(m2 != NULL, "%s", fg_last_error());
    if (m2) { check_same_model(m, m2); check_same_opt(&o, &o2); check_same_state(&st, &st2); }
    fg_model_free(m2); fg_adamw_free(&o2); free(st2.train_json);

    // A required section renamed becomes unknown: then it is missing.
    const char *req[] = {"CONF", "TTAB", "WGHT", "TUCH"};
    for (int r = 0; r < 4; r++) {
        memcpy(x, b, n);
        x[find_sec(s, ns, req[r])->hdr + 3] = '~';
        CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
        snprintf(want, sizeof want, "ckpt.bin: missing required section '%s'", req[r]);
        CHECK_ERR(want);
    }
    // A damaged optional tag is caught by the header flags; when the flags agree, opt is zeroed.
    memcpy(x, b, n);
    x[find_sec(s, ns, "ADAM")->hdr + 3] = '~';
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("ckpt.bin: the header announces a 'ADAM' section that the file lacks");
    x[find_sec(s, ns, "META")->hdr + 3] = '~';
    wr32(x + 12, FG_CKPT_HAS_META);
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("ckpt.bin: the header announces a 'META' section that the file lacks");
    wr32(x + 12, 0);
    memset(&o2, 0x5A, sizeof o2);
    m2 = fg_ckpt_load_mem(x, n, "ckpt.bin", &o2, NULL);
    CHECK(m2 && o2.m == NULL && o2.t == NULL);
    fg_model_free(m2);
    memcpy(x, b, s[ns - 1].hdr); k = s[ns - 1].hdr;
    k += make_sec(x + k, "TUCH", b + find_sec(s, ns, "TUCH")->off, find_sec(s, ns, "TUCH")->len, 0);
    memcpy(x + k, b + s[ns - 1].hdr, 16); k += 16;
    CHECK(fg_ckpt_load_mem(x, k, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("section 'TUCH' appears twice");
    memcpy(x, b, n); x[n] = 0;
    CHECK(fg_ckpt_load_mem(x, n + 1, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("1 unexpected bytes after the 'END ' section");

    // A section length beyond the file: refused by the scan, before any allocation.
    memcpy(x, b, n);
    wr64(x + find_sec(s, ns, "WGHT")->hdr + 4, UINT64_MAX - 2);
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("ckpt.bin: truncated: tensor data ('WGHT') needs 18446744073709551615 bytes");
    // A valid CRC over wrong content: a TTAB name that differs, a touched flag of 2, a negative t.
    memcpy(x, b, n);
    const sec_info *tt = find_sec(s, ns, "TTAB");
    x[tt->off + 8] ^= 0x20; // first letter of the first name
    wr32(x + tt->off + tt->len, fg_crc32(0, x + tt->off, tt->len));
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("tensor 0 is 'Model.embed_tokens.weight' in the file but 'model.embed_tokens.weight' in the model");
    memcpy(x, b, n);
    const sec_info *tu = find_sec(s, ns, "TUCH");
    x[tu->off + 1] = 2;
    wr32(x + tu->off + tu->len, fg_crc32(0, x + tu->off, tu->len));
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL) == NULL);
    CHECK_ERR("is 2 (must be 0 or 1");
    memcpy(x, b, n);
    const sec_info *ad = find_sec(s, ns, "ADAM");
    wr64(x + ad->off + ad->len - 8, UINT64_MAX);
    wr32(x + ad->off + ad->len, fg_crc32(0, x + ad->off, ad->len));
    CHECK(fg_ckpt_load_mem(x, n, "ckpt.bin", &o2, NULL) == NULL);
    CHECK_ERR("AdamW step count of tensor 'lm_head.weight' is -1");
    CHECK(o2.m == NULL);
    CHECK((m2 = fg_ckpt_load_mem(x, n, "ckpt.bin", NULL, NULL)) != NULL); // not read when not asked for
    fg_model_free(m2);
    // META with a valid CRC but bad content: named field, nothing leaked, *st zeroed.
    const char *metas[][2] = {
        {"{\"step\": \"-5\", \"tokens_seen\": \"1\", \"batches_drawn\": \"1\", \"rng\": [\"1\",\"2\",\"3\",\"4\"], "
         "\"data_rng\": [\"1\",\"2\",\"3\",\"4\"], \"tokenizer\": \"byte\"}", "field 'step' must be a string of decimal digits"},
        {"{\"step\": \"9223372036854775808\", \"tokens_seen\": \"1\"}", "field 'step'"},
        {"{\"step\": \"5\", \"tokens_seen\": \"1\", \"batches_drawn\": \"1\", \"rng\": [\"1\",\"2\",\"3\"], "
         "\"data_rng\": [\"1\",\"2\",\"3\",\"4\"], \"tokenizer\": \"byte\"}", "field 'rng' must be an array of 4 hex strings"},
        {"{\"step\": \"5\", \"tokens_seen\": \"1\", \"batches_drawn\": \"1\", \"rng\": [\"1\",\"2\",\"3\",\"4\"], "
         "\"data_rng\": [\"1\",\"2\",\"3\",\"12345678901234567\"], \"tokenizer\": \"byte\"}", "field 'data_rng' element 3"},
        {"{\"step\": \"5\", \"tokens_seen\": \"1\", \"batches_drawn\": \"1\", \"rng\": [\"1\",\"2\",\"3\",\"4\"], "
         "\"data_rng\": [\"1\",\"2\",\"3\",\"4\"]}", "missing field 'tokenizer'"},
        {"{\"step\": \"5\", \"tokens_seen\": \"1\", \"batches_drawn\": \"1\", \"rng\": [\"1\",\"2\",\"3\",\"4\"], "
         "\"data_rng\": [\"1\",\"2\",\"3\",\"4\"], \"tokenizer\": \"byte\", \"train_json\": \"a\\u0000b\"}",
         "field 'train_json' must be null or a string without NUL"},
        {"[1, 2]", "train state must be a JSON object"},
        {"{\"step\": ", "ckpt.bin[META]:1:"},
    };
    for (size_t i = 0; i < sizeof metas / sizeof *metas; i++) {
        k = replace_sec(b, n, s, ns, "META", metas[i][0], x);
        memset(&st2, 0x5A, sizeof st2);
        CHECK(fg_ckpt_load_mem(x, k, "ckpt.bin", NULL, &st2) == NULL);
        CHECK_ERR(metas[i][1]);
        CHECK(st2.train_json == NULL && st2.step == 0);
        CHECK((m2 = fg_ckpt_load_mem(x, k, "ckpt.bin", NULL, NULL)) != NULL); // META is not read when not asked for
        fg_model_free(m2);
    }
    // Unknown META members are ignored; train_json null is NULL.
    k = replace_sec(b, n, s, ns, "META",
                    "{\"step\": \"5\", \"tokens_seen\": \"1\", \"batches_drawn\": \"1\", \"rng\": [\"1\",\"2\",\"3\",\"Ff\"], "
                    "\"data_rng\": [\"1\",\"2\",\"3\",\"4\"], \"tokenizer\": \"bpe-v2\", \"train_json\": null, \"future\": [1]}", x);
    m2 = fg_ckpt_load_mem(x, k, "ckpt.bin", NULL, &st2);
    CHECK_MSG(m2 && st2.step == 5 && st2.rng.s[3] == 255 && !strcmp(st2.tokenizer, "bpe-v2") && !st2.train_json, "%s",
              fg_last_error());
    fg_model_free(m2);
    // CONF that is valid JSON but names a bigger model than WGHT holds: refused before allocating.
    {
        fg_config big = c;
        big.hidden_size = 256; big.vocab_size = 65536;
        char *js = fg_config_to_json(&big);
        const sec_info *cf = find_sec(s, ns, "CONF");
        memcpy(x, b, 16); k = 16;
        k += make_sec(x + k, "CONF", js, strlen(js), 0);
        memcpy(x + k, b + cf->off + cf->len + 4, n - (cf->off + cf->len + 4)); k += n - (cf->off + cf->len + 4);
        CHECK(fg_ckpt_load_mem(x, k, "ckpt.bin", NULL, NULL) == NULL);
        CHECK_ERR("the config needs at least");
        free(js);
    }
    free(x); free(b);
    unlink(path);
    fg_model_free(m); fg_adamw_free(&o); free(st.train_json);
}

static void test_atomic_save(void) {
    fg_config c;
    seed_config(&c);
    fg_model *a = make_model(&c, NULL, NULL, 1), *bm = make_model(&c, NULL, NULL, 2);
    const char *path = tpath("atomic.fgck");
    char tmp[200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(fg_ckpt_save(path, a, NULL, NULL) == 0);
    size_t na, nb;
    uint8_t *old = slurp(path, &na);

    // The temp file cannot be created (a directory is in the way): error, old file intact.
    CHECK(mkdir(tmp, 0700) == 0);
    CHECK(fg_ckpt_save(path, bm, NULL, NULL) == -1);
    CHECK_ERR("cannot create"); CHECK_ERR(tmp);
    uint8_t *now = slurp(path, &nb);
    CHECK(na == nb && memcmp(old, now, na) == 0);
    free(now);
    rmdir(tmp);

    // A read-only directory (only meaningful when not root: root ignores permissions).
    if (geteuid() != 0) {
        const char *ro = tpath("ro");
        char p2[200];
        snprintf(p2, sizeof p2, "%s/x.fgck", ro);
        mkdir(ro, 0700);
        CHECK(fg_ckpt_save(p2, a, NULL, NULL) == 0);
        chmod(ro, 0500);
        CHECK(fg_ckpt_save(p2, bm, NULL, NULL) == -1);
        chmod(ro, 0700);
        uint8_t *q = slurp(p2, &nb);
        CHECK(na == nb && memcmp(old, q, na) == 0);
        free(q);
        unlink(p2);
        rmdir(ro);
    }
    // A directory that does not exist.
    CHECK(fg_ckpt_save(tpath("no/such/dir/x.fgck"), a, NULL, NULL) == -1);
    CHECK_ERR("no/such/dir/x.fgck.tmp");

    // A stale temp file from a crashed save is overwritten; none is left behind.
    spit(tmp, "garbage", 7);
    CHECK(fg_ckpt_save(path, bm, NULL, NULL) == 0);
    CHECK(!exists(tmp));
    fg_model *l = fg_ckpt_load(path, NULL, NULL);
    CHECK(l != NULL);
    if (l) check_same_model(bm, l);
    fg_model_free(l);

    // A writer killed at random moments leaves the old or the new checkpoint, whole.
    CHECK(fg_ckpt_save(path, a, NULL, NULL) == 0);
    uint8_t *fb = NULL;
    fg_ckpt_save(tpath("b.fgck"), bm, NULL, NULL);
    fb = slurp(tpath("b.fgck"), &nb);
    for (int round = 0; round < 6; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0;; i++) fg_ckpt_save(path, i % 2 ? a : bm, NULL, NULL);
        }
        usleep(2000 + 1500 * round);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        size_t nn;
        uint8_t *cur = slurp(path, &nn);
        CHECK((nn == na && !memcmp(cur, old, na)) || (nn == nb && !memcmp(cur, fb, nb)));
        free(cur);
    }
    unlink(tmp);
    unlink(tpath("b.fgck"));
    free(fb); free(old);
    unlink(path);
    fg_model_free(a); fg_model_free(bm);
}

// Config hardening reached through a checkpoint's CONF (regressions: signed overflow in
// fg_config_param_counts, float conversion overflow in the JSON reader).
static void test_config_hardening(void) {
    fg_config c;
    seed_config(&c);
    char *js = fg_config_to_json(&c), buf[8192];
    const char *edits[][3] = {
        {"\"qk_nope_head_dim\": 2", "\"qk_nope_head_dim\": 2147483647", "qk_nope_head_dim must be in [0, 262144]"},
        {"\"q_lora_rank\": 4", "\"q_lora_rank\": 2000000000", "q_lora_rank must be in [0, 262144]"},
        {"\"n_shared_experts\": 1", "\"n_shared_experts\": 100000", "n_shared_experts must be in [0, 1024]"},
        {"\"rope_theta\": 10000", "\"rope_theta\": 1e300", "field 'rope_theta' is out of the float range"},
        {"\"rms_norm_eps\"", "\"rms_norm_eps\": -1e300, \"x\"", "out of the float range"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        const char *at = strstr(js, edits[i][0]);
        CHECK_MSG(at != NULL, "%s", edits[i][0]);
        if (!at) continue;
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - js), js, edits[i][1], at + strlen(edits[i][0]));
        fg_config c2;
        CHECK(fg_config_from_json(&c2, buf, strlen(buf), "cfg", NULL) == -1);
        CHECK_ERR(edits[i][2]);
    }
    free(js);
}

// The committed fuzz seeds still load (they are worthless to the fuzzer if they do not).
static void test_seed_files(void) {
    const char *seeds[] = {"fuzz/seeds/ckpt/tiny.fgck", "fuzz/seeds/ckpt/gqa.fgck"};
    for (int i = 0; i < 2; i++) {
        if (!exists(seeds[i])) continue; // run from elsewhere than the repository root
        size_t n;
        uint8_t *b = slurp(seeds[i], &n);
        CHECK(n < 65536);
        fg_adamw o;
        fg_train_state st;
        fg_model *m = fg_ckpt_load_mem(b, n, seeds[i], &o, i == 0 ? &st : NULL);
        CHECK_MSG(m && (i == 1 || (o.m && st.train_json)), "the fuzz seed %s no longer loads: %s", seeds[i], fg_last_error());
        fg_model_free(m); fg_adamw_free(&o);
        if (i == 0) free(st.train_json);
        free(b);
    }
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-seeds")) { // DIR: tiny.fgck (everything), gqa.fgck (weights only)
        char p[4096];
        fg_config c;
        seed_config(&c);
        fg_adamw o;
        fg_train_state st;
        fg_model *m = make_model(&c, &o, &st, 2024);
        snprintf(p, sizeof p, "%s/tiny.fgck", argv[2]);
        int rc = fg_ckpt_save(p, m, &o, &st);
        fg_model_free(m); fg_adamw_free(&o); free(st.train_json);
        gqa_config(&c);
        m = make_model(&c, NULL, NULL, 2025);
        snprintf(p, sizeof p, "%s/gqa.fgck", argv[2]);
        rc = rc || fg_ckpt_save(p, m, NULL, NULL);
        fg_model_free(m);
        if (rc) fprintf(stderr, "%s\n", fg_last_error());
        return rc ? 1 : 0;
    }
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/fg_test_ckpt_XXXXXX");
    if (!mkdtemp(tmp_dir)) SKIP("cannot create a temp directory under /tmp");
    fg_config c;
    test_crc();
    fg_config_preset(&c, "tiny");
    test_round_trip(&c, "tiny.fgck");
    seed_config(&c);
    test_round_trip(&c, "seed.fgck");
    gqa_config(&c);
    test_round_trip(&c, "gqa.fgck");
    test_load_into_mismatch();
    test_truncation();
    test_corruption();
    test_header_and_sections();
    test_atomic_save();
    test_config_hardening();
    test_seed_files();
    rmdir(tmp_dir);
    return TEST_DONE();
}
