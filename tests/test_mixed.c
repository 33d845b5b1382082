// test_mixed.c: bf16 mixed-precision training (fg_train_opts.precision = FG_BF16) tracks fp32.
//
// The demo preset is trained twice for 300 steps on the built-in task from the same seed and data
// order (B=16, T=70, lr 5e-4), once with fp32 matrix products and once with bf16 products (fp32
// accumulation, fp32 master weights and optimizer; the output head, gating and attention stay
// fp32). The documented tolerance (docs/model.md, "Mixed precision"): every 25-step window mean
// of the bf16 training loss within 5% of the fp32 one (measured 2.3%; the worst window from step
// 100 on: 1.3%). For scale, the same fp32 run on the portable kernels instead of the AVX-512 ones
// (summation order the only difference) drifts up to 1.8% from it per window: the two runs leave
// the task's plateaus a few steps apart, so below ~2% a gap is trajectory divergence, not
// precision. The oracle is the fp32 run; the test also checks that the run learned (the loss fell
// by more than half) and that the precision switch is restored after the run.
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "train/train.h"

// Under the sanitizers (10-50x slower) the suite checks the machinery on a short run only.
#ifdef FG_SANITIZED
#define STEPS 50
#define BATCH 8
#else
#define BATCH 16
#define STEPS 300
#endif
#define WIN 25
#define LATE 100 // reported apart: the worst window from here on

static int run(int precision, double *loss, char *dir) {
    fg_config c;
    fg_config_preset(&c, "demo");
    fg_model *m = fg_model_create(&c);
    fg_adamw opt;
    fg_train_state st;
    if (!m) return -1;
    fg_model_init_weights(m, 11);
    fg_adamw_init(&opt, m->n_params, m->n_tensors);
    memset(&st, 0, sizeof st);
    fg_rng_seed(&st.rng, 12);
    fg_rng_seed(&st.data_rng, 13);
    strcpy(st.tokenizer, "byte");
    fg_train_opts o;
    fg_train_opts_default(&o);
    o.batch = BATCH; o.seq = 70; o.steps = STEPS; o.warmup = 30; o.lr = 5e-4f; o.eval_every = 0; o.save_every = 0;
    o.out_dir = dir; o.progress = 0; o.quiet = 1; o.precision = precision;
    int rc = fg_train(m, &opt, &st, &o);
    CHECK(fg_model_set_precision(m, FG_F32) == FG_F32); // restored by fg_train
    fg_adamw_free(&opt);
    fg_model_free(m);
    if (rc) return rc;
    char path[300];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < STEPS) {
        char *k = strstr(line, "\"loss\":");
        if (k && !strstr(line, "val_loss")) loss[n++] = atof(k + 7);
    }
    fclose(f);
    return n == STEPS ? 0 : -1;
}

int main(void) {
    static double l32[STEPS], l16[STEPS];
    char d32[] = "/tmp/fg_mixed32_XXXXXX", d16[] = "/tmp/fg_mixed16_XXXXXX";
    CHECK(mkdtemp(d32) && mkdtemp(d16));
    CHECK_MSG(run(FG_F32, l32, d32) == 0, "fp32 run: %s", fg_last_error());
    CHECK_MSG(run(FG_BF16, l16, d16) == 0, "bf16 run: %s", fg_last_error());
    double worst = 0, worst_late = 0;
    for (int w = 0; w < STEPS / WIN; w++) {
        double a = 0, b = 0;
        for (int i = w * WIN; i < (w + 1) * WIN; i++) { a += l32[i]; b += l16[i]; }
        double rel = fabs(b - a) / a;
        if (rel > worst) worst = rel;
        if (w * WIN >= LATE && rel > worst_late) worst_late = rel;
#ifndef FG_SANITIZED
        CHECK_MSG(rel <= 0.05, "steps %d-%d: fp32 mean loss %.4f, bf16 %.4f (%.2f%%)", w * WIN, (w + 1) * WIN - 1,
                  a / WIN, b / WIN, 100 * rel);
#endif
    }
    double first = 0, last = 0;
    for (int i = 0; i < WIN; i++) { first += l32[i]; last += l32[STEPS - WIN + i]; }
    CHECK_MSG(last < (STEPS >= 300 ? 0.5 : 0.9) * first, "fp32 run did not learn: %.3f -> %.3f", first / WIN, last / WIN);
    printf("mixed precision: %d steps of demo (B=%d, T=70, lr 5e-4): fp32 loss %.4f -> %.4f, bf16 %.4f -> %.4f; worst "
           "%d-step window difference %.2f%% (tolerance 5%%), from step %d on %.2f%%\n", STEPS, BATCH, l32[0],
           l32[STEPS - 1], l16[0], l16[STEPS - 1], WIN, 100 * worst, LATE, 100 * worst_late);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", d32, d16);
    CHECK(system(cmd) == 0);
    return TEST_DONE();
}
