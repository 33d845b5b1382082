// test_reference.c: frugal against our independent PyTorch reference (tests/ref/ref.py, written
// from the papers and docs/model.md). The reference generates case directories (random weights,
// a batch, expected logits/loss/gradients and a 10-step AdamW trajectory with weight decay,
// clipping, the balance loss and bias updates); frugal must match them within the oracle budgets.
// Needs python3 with torch (Debian: python3-torch); skipped with a note otherwise.
#include <stdlib.h>

#include "oracle_case.h"

static const char *find_python(void) {
    static const char *cands[] = {"/usr/bin/python3", "python3"};
    for (int i = 0; i < 2; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import torch, numpy' >/dev/null 2>&1", cands[i]);
        if (system(cmd) == 0) return cands[i];
    }
    return NULL;
}

int main(void) {
    const char *py = find_python();
    if (!py) SKIP("python3 with torch and numpy not found: PyTorch reference comparison not run (apt install python3-torch python3-numpy)");
    const char *out = "build/refcases";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s tests/ref/ref.py make-all %s >/dev/null", py, out);
    if (system(cmd) != 0) { fprintf(stderr, "reference generation failed: %s\n", cmd); return 1; }
    // mla_mscale: YaRN with only rope_scaling.mscale given (Hugging Face scales cos/sin by
    // yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim = 0) = 1.369)
    // mla_moe_mtp2 / gqa_dense_mtp1: multi-token prediction, D = 2 over MLA + MoE (the MTP blocks
    // MoE, with balance loss and bias updates) and D = 1 over a dense GQA model with a tied head
    // (the embedding then has three uses); the loss includes lambda/D * sum of the depths' CE.
    const char *cases[] = {"mla_moe_sigmoid", "mla_moe_softmax", "gqa_dense", "gqa_tied", "mla_mscale",
                           "mla_moe_mtp2", "gqa_dense_mtp1"};
    for (int i = 0; i < 7; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", out, cases[i]);
        check_case(dir, 1);
    }
    return TEST_DONE();
}
