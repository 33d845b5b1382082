// test_quant.c: inference weight formats. fp16 and bf16 conversions against exact references,
// Q8_0 error bounds, quantised products (matrix-matrix and the decode matrix-vector kernel, every
// type) against fp32 products on the dequantised weights, the quantised model file (round trip
// into a mapped store without fp32 matrices, bit-identical logits to an in-memory conversion, and
// a clear error for every kind of damage), and the quality check: the perplexity of bf16 and Q8_0
// models LOADED FROM THE FILE within 1% of fp32 on held-out data of the built-in task and of a
// text corpus, for models trained here.
#include <string.h>
#include <unistd.h>

#include "frugal_tools.h"
#include "formats/checkpoint.h"
#include "ops/quant.h"
#include "infer/wstore.h"
#include "test.h"
#include "train/train.h"

// Mean negative log-likelihood per predicted token of seq[0..n) through a session.
static double seq_nll(fg_infer *s, const int32_t *seq, int n, int V, int *count) {
    fg_infer_reset(s);
    double nll = 0;
    for (int t = 0; t + 1 < n; t++) {
        const float *lg = fg_infer_feed(s, &seq[t], 1);
        if (!lg) { fprintf(stderr, "%s\n", fg_last_error()); exit(1); }
        float mx = lg[0];
        for (int i = 1; i < V; i++) mx = lg[i] > mx ? lg[i] : mx;
        double z = 0;
        for (int i = 0; i < V; i++) z += exp((double)lg[i] - mx);
        nll += log(z) + mx - lg[seq[t + 1]];
        (*count)++;
    }
    return nll;
}

// Writes m as a quantised file of type w in dir, opens it (mapped) and checks that the store
// holds no converted copy: every tensor points into the mapping. Caller frees.
static fg_wstore *through_file(fg_model *m, int w, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/model-%d.fgq", dir, w);
    fg_wstore *conv = fg_wstore_from_model(m, w);
    CHECK_MSG(conv && fg_qmodel_save(path, conv) == 0, "%s", fg_last_error());
    fg_wstore_free(conv);
    fg_wstore *ws = fg_qmodel_open(path);
    CHECK_MSG(ws != NULL, "%s", fg_last_error());
    if (!ws) exit(1);
    CHECK(ws->n_maps == 1 && ws->n_owned == 0 && ws->owned_bytes == 0); // no fp32 copy, nothing converted at load
    for (int i = 0; i < ws->n; i++) // the MoE router stays fp32 in every type (as llama.cpp keeps ffn_gate_inp)
        if (strstr(ws->t[i].name, "mlp.gate.weight"))
            CHECK_MSG(ws->type[i] == FG_F32, "%s: router stored as type %d in a type-%d file", ws->t[i].name, ws->type[i], w);
    for (int i = 0; i < ws->n && ws->n_maps == 1; i++)
        CHECK((const uint8_t *)ws->data[i] >= (const uint8_t *)ws->maps[0] &&
              (const uint8_t *)ws->data[i] < (const uint8_t *)ws->maps[0] + ws->map_lens[0]);
    return ws;
}

// Perplexity of each weight type on the given sequences; checks bf16 and Q8_0 within 1% of fp32.
// bf16 and Q8_0 run from quantised files (through_file).
static void check_ppl(const char *label, fg_model *m, int32_t *const *seqs, const int *lens, int nseq, const char *dir) {
    double ppl[3], mb[3];
    int V = fg_model_config(m)->vocab_size;
    for (int w = 0; w < 3; w++) {
        fg_wstore *ws = w == FG_F32 ? fg_wstore_from_model(m, w) : through_file(m, w, dir);
        fg_infer *s = fg_infer_create_store(ws, fg_model_config(m)->max_position_embeddings, FG_KV_LATENT, FG_F32);
        CHECK_MSG(s != NULL, "%s", fg_last_error());
        double nll = 0;
        int cnt = 0;
        for (int i = 0; i < nseq; i++) nll += seq_nll(s, seqs[i], lens[i], V, &cnt);
        ppl[w] = exp(nll / cnt);
        mb[w] = fg_infer_weight_bytes(s) / 1e6;
        fg_infer_free(s);
        fg_wstore_free(ws);
    }
    printf("%s: weights fp32 %.3f MB, bf16 %.3f MB, q8_0 %.3f MB\n", label, mb[0], mb[1], mb[2]);
    printf("%s: perplexity fp32 %.5f  bf16 %.5f (%+.3f%%)  q8_0 %.5f (%+.3f%%)\n", label, ppl[0], ppl[1],
           100 * (ppl[1] / ppl[0] - 1), ppl[2], 100 * (ppl[2] / ppl[0] - 1));
    CHECK_MSG(fabs(ppl[1] / ppl[0] - 1) < 0.01, "%s: bf16 perplexity off by more than 1%%", label);
    CHECK_MSG(fabs(ppl[2] / ppl[0] - 1) < 0.01, "%s: q8_0 perplexity off by more than 1%%", label);
    CHECK(ppl[0] < 0.5 * V); // the model learned something, so the comparison means something
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

// Finds section tag in a .fgq image: payload offset and length (0 when absent).
static size_t find_sec(const uint8_t *b, size_t n, const char *tag, uint64_t *len) {
    for (size_t off = 16; off + 12 <= n;) {
        uint64_t l = get64(b + off + 4);
        if (!memcmp(b + off, tag, 4)) { *len = l; return off + 12; }
        off += 12 + (size_t)l + 4;
    }
    return 0;
}
static void fix_crc(uint8_t *b, size_t off, uint64_t len) { put32(b + off + len, fg_crc32(0, b + off, (size_t)len)); }

// Expects opening the damaged image b to fail with an error containing want.
static void expect_bad(const char *what, const uint8_t *b, size_t n, const char *want) {
    fg_wstore *ws = fg_qmodel_open_mem(b, n, "bad.fgq");
    CHECK_MSG(ws == NULL, "%s: accepted", what);
    fg_wstore_free(ws);
    CHECK_MSG(ws != NULL || strstr(fg_last_error(), want), "%s: error '%s' lacks '%s'", what, fg_last_error(), want);
}

// The file: logits from the mapped file equal those of the in-memory conversion bit for bit;
// every kind of damage is refused with a clear error.
static void check_file(fg_model *m, const char *dir, const int32_t *seq, int n) {
    for (int w = FG_BF16; w <= FG_Q8_0; w++) {
        fg_wstore *ws = through_file(m, w, dir);
        fg_infer *a = fg_infer_create_store(ws, n, FG_KV_AUTO, FG_F32), *b = fg_infer_create_ex(m, n, FG_KV_AUTO, w);
        CHECK(a && b);
        const float *la = fg_infer_feed(a, seq, n), *lb = fg_infer_feed(b, seq, n);
        CHECK(la && lb && !memcmp(la, lb, sizeof(float) * fg_model_config(m)->vocab_size));
        CHECK(fg_wstore_weights(ws) == w && fg_wstore_config(ws)->hidden_size == fg_model_config(m)->hidden_size);
        fg_infer_free(a); fg_infer_free(b);
        fg_wstore_free(ws);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model-%d.fgq", dir, FG_Q8_0);
    size_t n_img;
    uint8_t *img = (uint8_t *)fg_read_file(path, &n_img), *b = malloc(n_img);
    CHECK(img && b && fg_file_is_qmodel(path) && !fg_file_is_qmodel("README.md"));
    if (!img || !b) exit(1);
    uint64_t qlen = 0, dlen = 0;
    size_t qtab = find_sec(img, n_img, "QTAB", &qlen), qdat = find_sec(img, n_img, "QDAT", &dlen);
    CHECK(qtab && qdat && qdat % 64 == 0);
    // A Q8_0 tensor whose byte count is not its header's blocks (CRC fixed: only the count is wrong).
    // The first tensor is the embedding (V, C): name_len, name, ndim 2, 2 shapes, type, offset, nbytes.
    size_t e = qtab + 4, nl = img[e] | img[e + 1] << 8;
    size_t type_at = e + 4 + nl + 4 + 16, nbytes_at = type_at + 4 + 8;
    CHECK(img[type_at] == FG_Q8_0);
    memcpy(b, img, n_img);
    put32(b + nbytes_at, (uint32_t)get64(b + nbytes_at) - 34);
    fix_crc(b, qtab, qlen);
    expect_bad("blocks do not match the header", b, n_img, "blocks do not match the header");
    // The same tensor claiming bf16 while its bytes are Q8_0 blocks.
    memcpy(b, img, n_img);
    b[type_at] = FG_BF16;
    fix_crc(b, qtab, qlen);
    expect_bad("type does not match the bytes", b, n_img, "bf16 data");
    // An offset past the data.
    memcpy(b, img, n_img);
    put32(b + type_at + 4, (uint32_t)dlen);
    fix_crc(b, qtab, qlen);
    expect_bad("offset outside the data", b, n_img, "outside");
    // An unknown type; a flipped data byte (CRC); truncation at several places; a newer version.
    memcpy(b, img, n_img);
    b[type_at] = 7;
    fix_crc(b, qtab, qlen);
    expect_bad("unknown type", b, n_img, "not a type a weight store holds");
    memcpy(b, img, n_img);
    b[qdat + 100] ^= 0x40;
    expect_bad("corrupted data", b, n_img, "checksum mismatch in section 'QDAT'");
    for (size_t cut = 0; cut < n_img; cut += n_img / 7 + 1) expect_bad("truncated", img, cut, cut < 8 ? "bad magic" : "truncated");
    memcpy(b, img, n_img);
    b[8] = 9;
    expect_bad("newer version", b, n_img, "version 9");
    // The config in the file describes another model (a different width): the table disagrees.
    uint64_t clen = 0;
    size_t conf = find_sec(img, n_img, "CONF", &clen);
    memcpy(b, img, n_img);
    char *hs = memmem(b + conf, (size_t)clen, "\"hidden_size\": 64", 17);
    CHECK(hs != NULL);
    if (hs) { memcpy(hs, "\"hidden_size\": 32", 17); fix_crc(b, conf, clen); expect_bad("another model's config", b, n_img, "dimension"); }
    // Everything intact, through the unaligned-buffer path: accepted.
    uint8_t *odd = malloc(n_img + 1);
    memcpy(odd + 1, img, n_img);
    fg_wstore *ok = fg_qmodel_open_mem(odd + 1, n_img, "odd.fgq");
    CHECK_MSG(ok != NULL, "%s", fg_last_error());
    fg_wstore_free(ok);
    printf("quantised file: %zu bytes (q8_0), mapped logits == converted logits, damaged copies refused\n", n_img);
    free(odd); free(b); free(img);
}

static fg_model *train_tiny(const char *dir, const char *const *files, int nf, int steps) {
    fg_config c;
    fg_config_preset(&c, "tiny");
    c.hidden_size = 64; c.head_dim = 32; // rows of 64: Q8_0 blocks of 32 everywhere
    fg_model *m = fg_model_create(&c);
    fg_model_init_weights(m, 3);
    fg_adamw opt;
    fg_adamw_init_for(&opt, m);
    fg_train_state st;
    fg_train_state_init(&st, 3);
    fg_train_opts o;
    fg_train_opts_default(&o);
    o.data = files; o.n_data = nf; o.batch = 8; o.seq = nf ? 64 : FG_TASK_LONGEST; o.steps = steps; o.warmup = 10;
    o.lr = 3e-3f; o.eval_every = 0; o.save_every = 0; o.out_dir = dir; o.progress = 0; o.quiet = 1; o.val_fraction = 0.2;
    CHECK_MSG(fg_train(m, &opt, &st, &o) == 0, "%s", fg_last_error());
    fg_adamw_free(&opt);
    fg_train_state_free(&st);
    return m;
}

static float bf16_round_trip(float f) { // nearest even, as the GEMM's packing rounds
    uint32_t x;
    memcpy(&x, &f, 4);
    x = (x + 0x7fff + ((x >> 16) & 1)) & 0xffff0000u;
    memcpy(&f, &x, 4);
    return f;
}

// x as the int8 products see it (ops/quant.h): quantised per activation block, then back to fp32.
static void int8_round_trip(float *dst, const float *x, int IN, int type) {
    uint8_t *buf = aligned_alloc(64, (fg_xq_bytes(type, IN) + 63) & ~(size_t)63);
    fg_xq v;
    fg_xq_view(&v, buf, type, IN);
    fg_xq_quantize(&v, x);
    for (int i = 0; i < IN; i++) dst[i] = v.d[i / fg_xq_block(type)] * v.q[i]; // Q8_0: natural order
    free(buf);
}

int main(void) {
    // fp16: every half round-trips through float; a few exact values.
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; // NaN payloads
        if (fg_f32_to_fp16(fg_fp16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d halves do not round-trip", bad);
    CHECK(fg_f32_to_fp16(1.0f) == 0x3c00 && fg_f32_to_fp16(-2.0f) == 0xc000 && fg_f32_to_fp16(65504.0f) == 0x7bff);
    CHECK(fg_f32_to_fp16(1e6f) == 0x7c00 && fg_fp16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(fg_f32_to_fp16(1.0f + 1.0f / 2048) == 0x3c00);          // tie to even
    CHECK(fg_f32_to_fp16(1.0f + 3.0f / 2048) == 0x3c02);          // tie to even (up)
    // bf16 and Q8_0 rows: error bounds.
    fg_rng r;
    fg_rng_seed(&r, 1);
    float x[256], y[256];
    uint8_t buf[1024];
    for (int i = 0; i < 256; i++) x[i] = fg_rng_normal(&r) * (i % 7 == 0 ? 10.0f : 0.5f);
    fg_quantize_row(buf, x, 256, FG_BF16);
    fg_dequantize_row(y, buf, 256, FG_BF16);
    for (int i = 0; i < 256; i++) CHECK(fabsf(x[i] - y[i]) <= fabsf(x[i]) * (1.0f / 256));
    fg_quantize_row(buf, x, 256, FG_Q8_0);
    fg_dequantize_row(y, buf, 256, FG_Q8_0);
    CHECK(fg_qrow_bytes(FG_Q8_0, 256) == 8 * 34);
    for (int b = 0; b < 8; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        for (int i = 0; i < 32; i++) CHECK(fabsf(x[b * 32 + i] - y[b * 32 + i]) <= amax / 127 * 0.5f * 1.002f + 1e-7f);
    }
    // Quantised products == fp32 products on the dequantised rows (both the per-row and the
    // dequantise-then-multiply paths).
    for (int type = FG_BF16; type <= FG_Q8_0; type++) {
        int IN = 96, OUT = 40;
        float *w = malloc(sizeof(float) * IN * OUT), *wd = malloc(sizeof(float) * IN * OUT), *in = malloc(sizeof(float) * 20 * IN);
        float *o1 = malloc(sizeof(float) * 20 * OUT), *o2 = malloc(sizeof(float) * 20 * OUT), bias[40];
        uint8_t *q = malloc(fg_qrow_bytes(type, IN) * OUT);
        for (int i = 0; i < IN * OUT; i++) w[i] = fg_rng_normal(&r);
        for (int i = 0; i < 20 * IN; i++) in[i] = fg_rng_normal(&r);
        for (int i = 0; i < OUT; i++) bias[i] = fg_rng_normal(&r);
        for (int o = 0; o < OUT; o++) {
            fg_quantize_row(q + o * fg_qrow_bytes(type, IN), w + o * IN, IN, type);
            fg_dequantize_row(wd + o * IN, q + o * fg_qrow_bytes(type, IN), IN, type);
        }
        // Prefill (N >= 8) multiplies bf16 panels: its oracle is the fp32 product of the
        // bf16-rounded activations and dequantised rows; decode (N < 8) is exact fp32.
        float *inr = malloc(sizeof(float) * 20 * IN), *wr = malloc(sizeof(float) * IN * OUT);
        for (int i = 0; i < 20 * IN; i++) inr[i] = bf16_round_trip(in[i]);
        for (int i = 0; i < IN * OUT; i++) wr[i] = bf16_round_trip(wd[i]);
        for (int N = 1; N <= 20; N += 19) {
            fg_qmatmul_forward(o1, in, q, type, bias, N, IN, OUT);
            if (N >= 8) matmul_forward(o2, inr, wr, bias, N, IN, OUT);
            else if (type == FG_Q8_0) { // decode rows with x rounded to int8 (quant.h's int8 products)
                float *xr = malloc(sizeof(float) * (size_t)N * IN);
                for (int n = 0; n < N; n++) int8_round_trip(xr + (size_t)n * IN, in + (size_t)n * IN, IN, type);
                matmul_forward(o2, xr, wd, bias, N, IN, OUT);
                free(xr);
            } else matmul_forward(o2, in, wd, bias, N, IN, OUT);
            CHECK_MSG(tst_rel_err(o1, o2, (size_t)N * OUT) < 1e-6, "type %d N %d: %g", type, N, tst_rel_err(o1, o2, (size_t)N * OUT));
        }
        free(w); free(wd); free(in); free(o1); free(o2); free(q); free(inr); free(wr);
    }
    // The decode kernel (fg_qmatvec, every type; widths that take the AVX-512 path and widths that
    // do not; row counts that leave tails) against the fp32 product on the dequantised rows (for
    // Q8_0, of x as its int8 product rounds it).
    for (int type = FG_F32; type <= FG_Q8_0; type++) {
        static const int ins[] = {32, 96, 48, 40, 1024}, outs[] = {1, 5, 64, 67, 301};
        for (int a = 0; a < 5; a++)
            for (int bo = 0; bo < 5; bo++) {
                int IN = ins[a], OUT = outs[bo];
                if (type == FG_Q8_0 && IN % 32) continue;
                size_t rb = fg_qrow_bytes(type, IN);
                float *w = malloc(sizeof(float) * IN * OUT), *wd = malloc(sizeof(float) * IN * OUT), *x = malloc(sizeof(float) * IN);
                float *o1 = malloc(sizeof(float) * OUT), *o2 = malloc(sizeof(float) * OUT), *bias = malloc(sizeof(float) * OUT);
                uint8_t *q = malloc(rb * OUT);
                for (int i = 0; i < IN * OUT; i++) w[i] = fg_rng_normal(&r);
                for (int i = 0; i < IN; i++) x[i] = fg_rng_normal(&r);
                for (int i = 0; i < OUT; i++) bias[i] = fg_rng_normal(&r);
                for (int o = 0; o < OUT; o++) {
                    if (type == FG_F32) memcpy(q + o * rb, w + (size_t)o * IN, rb);
                    else fg_quantize_row(q + o * rb, w + (size_t)o * IN, IN, type);
                    fg_dequantize_row(wd + (size_t)o * IN, q + o * rb, IN, type);
                }
                fg_qmatvec(o1, x, q, type, a % 2 ? bias : NULL, IN, OUT);
                if (type == FG_Q8_0) int8_round_trip(x, x, IN, type);
                matmul_forward(o2, x, wd, a % 2 ? bias : NULL, 1, IN, OUT);
                double e = tst_rel_err(o1, o2, OUT);
                CHECK_MSG(e < 1e-6, "qmatvec type %d IN %d OUT %d: rel err %g", type, IN, OUT, e);
                free(w); free(wd); free(x); free(o1); free(o2); free(bias); free(q);
            }
    }
    CHECK(fg_dtype_parse("q8_0", FG_WEIGHT_TYPES, "weight type") == FG_Q8_0 && fg_dtype_parse("bf16", FG_WEIGHT_TYPES, "weight type") == FG_BF16);
    CHECK(fg_dtype_parse("q3", FG_WEIGHT_TYPES, "weight type") == -1 && strstr(fg_last_error(), "q3"));
    CHECK(fg_dtype_parse("q4", FG_WEIGHT_TYPES, "weight type") == FG_Q4_0 && fg_dtype_parse("q4_k", FG_WEIGHT_TYPES, "weight type") == FG_Q4_K);

    // Quality: held-out perplexity within 1% for a model trained on the task and one on text.
    char dir[] = "/tmp/fg_quant_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    {
        fg_model *m = train_tiny(dir, NULL, 0, 150);
        int32_t *seqs[16], lens[16], tg[FG_TASK_MAX_TOKENS];
        fg_rng rr;
        fg_rng_seed(&rr, 77);
        for (int i = 0; i < 16; i++) { // held-out problems, full examples up to EOS
            seqs[i] = malloc(sizeof(int32_t) * FG_TASK_MAX_TOKENS);
            fg_task_problem p;
            fg_task_sample(&rr, 1, &p);
            int pl;
            lens[i] = fg_task_render(&p, seqs[i], &pl);
        }
        (void)tg;
        check_ppl("task (held-out problems)", m, seqs, lens, 16, dir);
        check_file(m, dir, seqs[0], lens[0]);
        for (int i = 0; i < 16; i++) free(seqs[i]);
        fg_model_free(m);
    }
    {
        char path[256];
        snprintf(path, sizeof path, "%s/corpus.txt", dir);
        FILE *f = fopen(path, "w");
        const char *srcs[] = {"README.md", "docs/model.md", "docs/formats.md", "docs/task.md"};
        size_t total = 0;
        for (int i = 0; i < 4; i++) {
            size_t len;
            char *t = fg_read_file(srcs[i], &len);
            if (t) { fwrite(t, 1, len, f); total += len; free(t); }
        }
        fclose(f);
        CHECK(total > 20000);
        const char *files[] = {path};
        fg_model *m = train_tiny(dir, files, 1, 150);
        // held-out text: the last 16 x 64 bytes of a document the model never saw as a whole
        size_t len;
        char *text = fg_read_file("docs/tokenizer.md", &len);
        int32_t *seqs[16], lens[16];
        for (int i = 0; i < 16; i++) {
            seqs[i] = malloc(sizeof(int32_t) * 64);
            for (int t = 0; t < 64; t++) seqs[i][t] = (unsigned char)text[(len / 16) * i + t];
            lens[i] = 64;
        }
        check_ppl("text (held-out document)", m, seqs, lens, 16, dir);
        for (int i = 0; i < 16; i++) free(seqs[i]);
        free(text);
        fg_model_free(m);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return TEST_DONE();
}
