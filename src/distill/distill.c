// distill.c: distillation training (fg_distill_train): fg_train with hooks that draw batches from
// a teacher cache (or leave them to the data source) and replace the model's cross-entropy by the
// distillation loss of loss.c, fed back through fg_model_backward_dlogits.
//
// Online mode runs the teacher's forward on every micro-batch; cache mode reads the teacher's
// top-k from an FRUGALDC file (cache.c) and never loads the teacher's activations. Validation
// stays the plain cross-entropy on the run's held-out data, so a distilled and a scratch run of the
// same student are compared on the same numbers. Not done here: tokenisation of new data (the
// trainer does it) or generation (generate.c).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "distill/distill.h"
#include "formats/checkpoint.h"
#include "model/model.h"
#include "train/train.h"
#include "util.h"

int fg_distill_check_tokenizers(int teacher_V, const char *tok_t, size_t len_t, int student_V, const char *tok_s,
                                size_t len_s) {
    if (teacher_V != student_V)
        return fg_set_error("teacher and student vocabularies differ: the teacher has %d tokens, the student %d "
                            "(hint: give the student the teacher's vocab_size and tokenizer)", teacher_V, student_V);
    if (!tok_t != !tok_s)
        return fg_set_error("teacher and student tokenizers differ: the %s is byte-level, the %s uses a BPE tokenizer "
                            "(hint: distil into a student trained with the teacher's tokenizer, or a fresh config)",
                            tok_t ? "student" : "teacher", tok_t ? "teacher" : "student");
    if (tok_t && (len_t != len_s || memcmp(tok_t, tok_s, len_t)))
        return fg_set_error("teacher and student tokenizers differ: same vocabulary size (%d) but different tokenizer files "
                            "(hint: both must be trained with the same tokenizer.json)", teacher_V);
    return 0;
}

typedef struct {
    fg_distill_loss_opts lo;
    fg_model *teacher;            // online mode
    fg_dcache cache;              // cache mode (cache.S > 0)
    uint64_t seed;
    uint64_t *rows;               // (B) cache sequence of each row of the current micro-batch
    int32_t *ids;                 // (N, k)
    float *logp, *logtail;        // (N, k), (N)
} dctx;

// A stride coprime with n, from a hash: the epoch's visiting order over the cached sequences.
static uint64_t gcd64(uint64_t a, uint64_t b) { while (b) { uint64_t t = a % b; a = b; b = t; } return a; }

static int cache_batch(void *ctx, int64_t index, int32_t *in, int32_t *tg, int B, int T) {
    dctx *d = ctx;
    if (index < 0) return 1; // validation: the run's own held-out data
    uint64_t S = d->cache.S;
    for (int b = 0; b < B; b++) {
        uint64_t r = (uint64_t)index * B + b, epoch = r / S, pos = r % S;
        uint64_t h = fg_fnv64(FG_FNV_OFFSET ^ d->seed, &epoch, sizeof epoch);
        uint64_t stride = S > 1 ? 1 + h % (S - 1) : 1, off = (h >> 32) % S;
        while (gcd64(stride, S) != 1) stride++;
        uint64_t s = (pos * stride + off) % S;
        d->rows[b] = s;
        fg_dcache_tokens(&d->cache, s, in + (size_t)b * T, tg + (size_t)b * T);
    }
    return 0;
}

static int distill_step(void *ctx, fg_model *m, const int32_t *in, const int32_t *tg, int B, int T, float grad_scale,
                        fg_step *st) {
    dctx *d = ctx;
    int N = B * T, V = m->cfg.vocab_size;
    if (d->teacher && fg_model_forward(d->teacher, in, NULL, B, T, NULL)) return fg_wrap_error("teacher forward");
    if (fg_model_forward(m, in, NULL, B, T, st)) return -1;
    fg_distill_loss_out out;
    int rc;
    if (d->teacher) {
        rc = fg_distill_loss(&d->lo, m->logits, d->teacher->logits, tg, N, V, grad_scale, m->logits, &out);
    } else {
        int k = (int)d->cache.k;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                size_t n = (size_t)b * T + t;
                fg_dcache_entry(&d->cache, d->rows[b], t, d->ids + n * k, d->logp + n * k, d->logtail + n);
            }
        rc = fg_distill_loss_topk(&d->lo, m->logits, d->ids, d->logp, d->logtail, k, tg, N, V, grad_scale, m->logits, &out);
    }
    if (rc) return fg_wrap_error("distillation loss");
    st->ce_loss = out.ce;
    st->loss = (float)(out.loss + st->bal_loss);
    return fg_model_backward_dlogits(m, m->logits, grad_scale);
}

int fg_distill_train(fg_model *m, fg_adamw *opt, fg_train_state *st, const fg_train_opts *o_in, const fg_distill_opts *dopt) {
    if (fg_distill_loss_opts_check(&dopt->loss)) return -1;
    if (!dopt->teacher) return fg_set_error("distillation needs --teacher (online forward, or the cache's checksum)");
    fg_train_opts o = *o_in;
    dctx d;
    memset(&d, 0, sizeof d);
    d.lo = dopt->loss;
    d.seed = o.seed;
    fg_train_state tst;
    fg_model *tm = fg_ckpt_load(dopt->teacher, NULL, &tst);
    if (!tm) return -1;
    int rc = -1;
    if (fg_distill_check_tokenizers(tm->cfg.vocab_size, tst.tokenizer_data, tst.tokenizer_len, m->cfg.vocab_size,
                                    st->tokenizer_data, st->tokenizer_len)) {
        // a student that has not trained yet adopts a BPE teacher's tokenizer
        if (!dopt->student_trained && st->step == 0 && !st->tokenizer_data && tst.tokenizer_data && tm->cfg.vocab_size == m->cfg.vocab_size) {
            st->tokenizer_data = tst.tokenizer_data; st->tokenizer_len = tst.tokenizer_len;
            strcpy(st->tokenizer, "bpe");
            tst.tokenizer_data = NULL; tst.tokenizer_len = 0;
        } else {
            goto done;
        }
    }
    int64_t tt, ta;
    fg_config_param_counts(&tm->cfg, &tt, &ta);
    if (dopt->cache) {
        if (fg_dcache_open(&d.cache, dopt->cache)) goto done;
        const fg_dcache *c = &d.cache;
        if ((int)c->V != m->cfg.vocab_size) {
            fg_set_error("%s: the cache's vocabulary has %u tokens, the student %d (hint: a cache serves students with the teacher's "
                         "vocabulary)", dopt->cache, c->V, m->cfg.vocab_size);
            goto done;
        }
        if (c->teacher_hash != fg_distill_teacher_hash(tm)) {
            fg_set_error("%s: the cache was made by a different teacher than %s (teacher checksum mismatch) "
                         "(hint: rebuild it with frugal distill cache --teacher %s)", dopt->cache, dopt->teacher, dopt->teacher);
            goto done;
        }
        uint64_t dh;
        if (fg_distill_data_hash(&o, st->tokenizer_data, st->tokenizer_len, &dh, NULL)) goto done;
        if (dh != c->data_hash) {
            fg_set_error("%s: the cache was made from different data than this run's (data checksum mismatch) "
                         "(hint: pass the same data files and --val-fraction as frugal distill cache, or rebuild the cache)",
                         dopt->cache);
            goto done;
        }
        if (c->temperature != d.lo.temperature) {
            fg_set_error("%s: the cache holds teacher log-probabilities at temperature %g, the run asks for %g "
                         "(hint: --temperature %g, or rebuild the cache)", dopt->cache, c->temperature, d.lo.temperature,
                         c->temperature);
            goto done;
        }
        if (o.seq != 0 && o.seq != (int)c->T) {
            fg_set_error("%s: the cache holds sequences of %u tokens, the run asks for --seq %d (hint: drop --seq)", dopt->cache,
                         c->T, o.seq);
            goto done;
        }
        o.seq = (int)c->T;
        size_t N = (size_t)o.batch * o.seq;
        d.rows = malloc(sizeof(uint64_t) * o.batch);
        d.ids = malloc(sizeof(int32_t) * N * c->k);
        d.logp = malloc(sizeof(float) * N * c->k);
        d.logtail = malloc(sizeof(float) * N);
        if (!d.rows || !d.ids || !d.logp || !d.logtail) { fg_set_error("out of memory"); goto done; }
        o.batch_fn = cache_batch;
        o.teacher_flops_base = c->teacher_flops;
        o.teacher_flops_per_token = 0;
        o.cache_bytes = (double)c->len;
        fg_model_free(tm); // the cache replaces the teacher
        tm = NULL;
    } else {
        d.teacher = tm;
        o.teacher_flops_per_token = 2.0 * (double)ta;
        o.teacher_flops_base = 0;
        o.cache_bytes = 0;
    }
    o.step_fn = distill_step;
    o.hook_ctx = &d;
    rc = fg_train(m, opt, st, &o);
done:
    fg_dcache_close(&d.cache);
    free(d.rows); free(d.ids); free(d.logp); free(d.logtail);
    fg_train_state_free(&tst);
    fg_model_free(tm);
    return rc;
}
