// test_quant.c: inference weight formats. fp16 and bf16 conversions against exact references,
// Q8_0 error bounds, quantised products against fp32 products on the dequantised weights, and
// the quality check: the perplexity of bf16 and Q8_0 sessions within 1% of fp32 on held-out
// data of the built-in task and of a text corpus, for models trained here.
#include <string.h>
#include <unistd.h>

#include "infer/quant.h"
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

// Perplexity of each weight type on the given sequences; checks bf16 and Q8_0 within 1% of fp32.
static void check_ppl(const char *label, fg_model *m, int32_t *const *seqs, const int *lens, int nseq) {
    double ppl[3], mb[3];
    int V = fg_model_config(m)->vocab_size;
    for (int w = 0; w < 3; w++) {
        fg_infer *s = fg_infer_create_ex(m, fg_model_config(m)->max_position_embeddings, FG_KV_LATENT, w);
        CHECK_MSG(s != NULL, "%s", fg_last_error());
        double nll = 0;
        int cnt = 0;
        for (int i = 0; i < nseq; i++) nll += seq_nll(s, seqs[i], lens[i], V, &cnt);
        ppl[w] = exp(nll / cnt);
        mb[w] = fg_infer_weight_bytes(s) / 1e6;
        fg_infer_free(s);
    }
    printf("%s: weights fp32 %.3f MB, bf16 %.3f MB, q8_0 %.3f MB\n", label, mb[0], mb[1], mb[2]);
    printf("%s: perplexity fp32 %.5f  bf16 %.5f (%+.3f%%)  q8_0 %.5f (%+.3f%%)\n", label, ppl[0], ppl[1],
           100 * (ppl[1] / ppl[0] - 1), ppl[2], 100 * (ppl[2] / ppl[0] - 1));
    CHECK_MSG(fabs(ppl[1] / ppl[0] - 1) < 0.01, "%s: bf16 perplexity off by more than 1%%", label);
    CHECK_MSG(fabs(ppl[2] / ppl[0] - 1) < 0.01, "%s: q8_0 perplexity off by more than 1%%", label);
    CHECK(ppl[0] < 0.5 * V); // the model learned something, so the comparison means something
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
    fg_quantize_row(buf, x, 256, FG_WEIGHTS_BF16);
    fg_dequantize_row(y, buf, 256, FG_WEIGHTS_BF16);
    for (int i = 0; i < 256; i++) CHECK(fabsf(x[i] - y[i]) <= fabsf(x[i]) * (1.0f / 256));
    fg_quantize_row(buf, x, 256, FG_WEIGHTS_Q8_0);
    fg_dequantize_row(y, buf, 256, FG_WEIGHTS_Q8_0);
    CHECK(fg_qrow_bytes(FG_WEIGHTS_Q8_0, 256) == 8 * 34);
    for (int b = 0; b < 8; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        for (int i = 0; i < 32; i++) CHECK(fabsf(x[b * 32 + i] - y[b * 32 + i]) <= amax / 127 * 0.5f * 1.002f + 1e-7f);
    }
    // Quantised products == fp32 products on the dequantised rows (both the per-row and the
    // dequantise-then-multiply paths).
    for (int type = FG_WEIGHTS_BF16; type <= FG_WEIGHTS_Q8_0; type++) {
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
            else matmul_forward(o2, in, wd, bias, N, IN, OUT);
            CHECK_MSG(tst_rel_err(o1, o2, (size_t)N * OUT) < 1e-6, "type %d N %d: %g", type, N, tst_rel_err(o1, o2, (size_t)N * OUT));
        }
        free(w); free(wd); free(in); free(o1); free(o2); free(q); free(inr); free(wr);
    }
    CHECK(fg_weights_type_parse("q8_0") == FG_WEIGHTS_Q8_0 && fg_weights_type_parse("bf16") == FG_WEIGHTS_BF16);
    CHECK(fg_weights_type_parse("q4") == -1 && strstr(fg_last_error(), "q4"));

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
        check_ppl("task (held-out problems)", m, seqs, lens, 16);
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
        check_ppl("text (held-out document)", m, seqs, lens, 16);
        for (int i = 0; i < 16; i++) free(seqs[i]);
        free(text);
        fg_model_free(m);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return TEST_DONE();
}
