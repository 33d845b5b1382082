// train.c: the training loop: batches (a built-in task or file data), forward/backward with
// gradient accumulation, clipping, AdamW on a schedule, aux-loss-free bias updates, a JSON line
// per step, validation at intervals, atomic checkpoints.
//
// Reproducibility: every random draw comes from the two RNGs in fg_train_state and the kernels
// are deterministic, so a run resumed from a checkpoint continues bit-exactly.
#include "train/train.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/bytetok.h"
#include "data/data.h"
#include "data/shard.h"
#include "data/countdown.h"
#include "data/task.h"
#include "cost/cost.h"
#include "dist/comm.h"
#include "dist/dp.h"
#include "dist/ep.h"
#include "formats/checkpoint.h"
#include "formats/json.h"

void fg_train_opts_default(fg_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->val_fraction = 0.05;
    o->batch = 16; o->seq = 128; o->accum = 1;
    o->steps = 1000;
    o->lr = 1e-3f; o->min_lr = 1e-4f; o->decay_frac = 0.2f; o->warmup = 50;
    o->sched = FG_SCHED_COSINE;
    o->weight_decay = 0.1f; o->beta1 = 0.9f; o->beta2 = 0.95f; o->eps = 1e-8f; o->clip = 1.0f;
    o->balance_alpha = 0.0f; o->bias_gamma = 0.001f;
    o->mtp_lambda = 0.3f; o->mtp_lambda_late = 0.1f; o->mtp_late_frac = 10.0f / 14.8f;
    o->seed = 1337;
    o->eval_every = 100; o->eval_batches = 8;
    o->save_every = 500;
    o->out_dir = "runs/default";
    o->progress = 1;
}

// ---- the run's record (fg_train_state.train_json) -----------------------------------------------
// Everything `frugal train --resume CKPT` needs to continue the run without being told again: the
// options, the data sources (as absolute paths), the SFT file. (Not the output folder: that is
// where the checkpoint lies, so a run moved or copied elsewhere continues there.) Floats are
// written with 9 significant digits and doubles with 17, so every value reads back to the same bits.

static void json_path(FILE *f, const char *key, const char *path) {
    fprintf(f, ",\"%s\":", key);
    if (!path) { fputs("null", f); return; }
    char *abs = realpath(path, NULL);
    const char *p = abs ? abs : path;
    fg_json_write_string(f, p, strlen(p));
    free(abs);
}

char *fg_train_opts_to_json(const fg_train_opts *o, const char *sft) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) { fg_set_error("out of memory"); return NULL; }
    static const char *sched[] = {"cosine", "wsd", "constant"};
    fprintf(f, "{\"batch\":%d,\"seq\":%d,\"accum\":%d,\"steps\":%lld,\"lr\":%.9g,\"min_lr\":%.9g,\"warmup\":%lld,"
               "\"schedule\":\"%s\",\"decay_frac\":%.9g,\"weight_decay\":%.9g,\"beta1\":%.9g,\"beta2\":%.9g,\"eps\":%.9g,"
               "\"clip\":%.9g,\"balance_alpha\":%.9g,\"bias_gamma\":%.9g,\"seed\":%llu,\"val_fraction\":%.17g,"
               "\"eval_every\":%d,\"eval_batches\":%d,\"save_every\":%d,\"precision\":\"%s\",\"mtp_lambda\":%.9g,"
               "\"mtp_lambda_late\":%.9g,\"mtp_late_frac\":%.9g,\"data\":[",
            o->batch, o->seq, o->accum, (long long)o->steps, o->lr, o->min_lr, (long long)o->warmup,
            sched[o->sched >= 0 && o->sched <= 2 ? o->sched : 0], o->decay_frac, o->weight_decay, o->beta1, o->beta2, o->eps,
            o->clip, o->balance_alpha, o->bias_gamma, (unsigned long long)o->seed, o->val_fraction, o->eval_every,
            o->eval_batches, o->save_every, o->precision == FG_BF16 ? "bf16" : "fp32", o->mtp_lambda,
            o->mtp_lambda_late, o->mtp_late_frac);
    for (int i = 0; i < o->n_data; i++) {
        char *abs = realpath(o->data[i], NULL);
        const char *p = abs ? abs : o->data[i];
        if (i) fputc(',', f);
        fg_json_write_string(f, p, strlen(p));
        free(abs);
    }
    fputc(']', f);
    json_path(f, "shards", o->shards);
    json_path(f, "sft", sft);
    if (o->task == FG_TRAIN_COUNTDOWN) fprintf(f, ",\"task\":\"countdown\",\"task_level\":%d", o->task_level);
    fputc('}', f);
    int bad = ferror(f);
    if (fclose(f) || bad) { free(buf); fg_set_error("out of memory"); return NULL; }
    return buf;
}

// The arena holds, one after the other: the data pointer array, then the strings.
static char *arena_str(char **at, const fg_json *v) {
    if (!v || v->type != FG_JSON_STRING) return NULL;
    char *s = *at;
    memcpy(s, v->str, v->len + 1);
    *at += v->len + 1;
    return s;
}

int fg_train_opts_from_json(fg_train_opts *o, const char **sft, const char *json, void **arena) {
    *arena = NULL;
    if (sft) *sft = NULL;
    fg_json *root = fg_json_parse(json, strlen(json), "the checkpoint's train_json");
    if (!root) return -1;
    if (root->type != FG_JSON_OBJECT) { fg_json_free(root); return fg_set_error("the checkpoint's train_json is not an object"); }
    const fg_json *v;
#define NUM(key, field, T) if ((v = fg_json_get(root, key)) && v->type == FG_JSON_NUMBER) o->field = (T)v->num
    NUM("batch", batch, int); NUM("seq", seq, int); NUM("accum", accum, int); NUM("steps", steps, int64_t);
    NUM("lr", lr, float); NUM("min_lr", min_lr, float); NUM("warmup", warmup, int64_t); NUM("decay_frac", decay_frac, float);
    NUM("weight_decay", weight_decay, float); NUM("beta1", beta1, float); NUM("beta2", beta2, float); NUM("eps", eps, float);
    NUM("clip", clip, float); NUM("balance_alpha", balance_alpha, float); NUM("bias_gamma", bias_gamma, float);
    NUM("seed", seed, uint64_t); NUM("val_fraction", val_fraction, double); NUM("eval_every", eval_every, int);
    NUM("eval_batches", eval_batches, int); NUM("save_every", save_every, int);
    NUM("mtp_lambda", mtp_lambda, float); NUM("mtp_lambda_late", mtp_lambda_late, float);
    NUM("mtp_late_frac", mtp_late_frac, float); NUM("task_level", task_level, int);
#undef NUM
    if ((v = fg_json_get(root, "task")) && v->type == FG_JSON_STRING)
        o->task = !strcmp(v->str, "countdown") ? FG_TRAIN_COUNTDOWN : FG_TRAIN_ARITH;
    if ((v = fg_json_get(root, "schedule")) && v->type == FG_JSON_STRING)
        o->sched = !strcmp(v->str, "wsd") ? FG_SCHED_WSD : !strcmp(v->str, "constant") ? FG_SCHED_CONSTANT : FG_SCHED_COSINE;
    if ((v = fg_json_get(root, "precision")) && v->type == FG_JSON_STRING)
        o->precision = !strcmp(v->str, "bf16") ? FG_BF16 : FG_F32;
    const fg_json *data = fg_json_get(root, "data");
    int has_run = data && data->type == FG_JSON_ARRAY;
    if (has_run) {
        size_t need = sizeof(char *) * (size_t)(data->n + 1);
        for (const fg_json *e = data->child; e; e = e->next) need += e->type == FG_JSON_STRING ? e->len + 1 : 0;
        const char *keys[] = {"shards", "sft"};
        for (int i = 0; i < 2; i++)
            if ((v = fg_json_get(root, keys[i])) && v->type == FG_JSON_STRING) need += v->len + 1;
        char **ptrs = malloc(need);
        if (!ptrs) { fg_json_free(root); return fg_set_error("out of memory"); }
        char *at = (char *)(ptrs + data->n + 1);
        int n = 0;
        for (const fg_json *e = data->child; e; e = e->next)
            if (e->type == FG_JSON_STRING) ptrs[n++] = arena_str(&at, e);
        ptrs[n] = NULL;
        o->data = (const char *const *)ptrs; o->n_data = n;
        o->shards = arena_str(&at, fg_json_get(root, "shards"));
        const char *s = arena_str(&at, fg_json_get(root, "sft"));
        if (sft) *sft = s;
        *arena = ptrs;
    }
    fg_json_free(root);
    return has_run;
}

void fg_train_state_init(fg_train_state *st, uint64_t seed) {
    memset(st, 0, sizeof *st);
    fg_rng_seed(&st->rng, seed ^ 0x7461736bull);      // "task"
    fg_rng_seed(&st->data_rng, seed ^ 0x64617461ull); // "data"
    strcpy(st->tokenizer, "byte");
}

void fg_train_state_free(fg_train_state *st) {
    free(st->train_json);
    free(st->tokenizer_data);
    st->train_json = NULL;
    st->tokenizer_data = NULL;
    st->tokenizer_len = 0;
}

int fg_load_stats_compute(const fg_config *c, const int *load, fg_load_stats *out) {
    int n = 0, E = c->n_routed_experts;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        if (!fg_config_is_moe_layer(c, l)) continue;
        const int *x = load + (size_t)l * E;
        fg_load_stats *s = &out[n++];
        s->layer = l; s->min = x[0]; s->max = x[0];
        double mean = 0, var = 0;
        for (int e = 0; e < E; e++) { s->min = FG_MIN(s->min, x[e]); s->max = FG_MAX(s->max, x[e]); mean += x[e]; }
        mean /= E;
        for (int e = 0; e < E; e++) var += (x[e] - mean) * (x[e] - mean);
        s->cv = mean > 0 ? sqrt(var / E) / mean : 0;
    }
    return n;
}

// Where batches come from: the built-in task (both NULL), file data or shards. tok_bytes (V
// entries, NULL for byte-level ids) gives the UTF-8 bytes each target id stands for (bits per byte).
typedef struct { const fg_dataset *ds; const fg_shardset *sh; const uint32_t *tok_bytes; int32_t pad; int V; } data_src;

// Validation batch i (deterministic): held-out task problems, or the i-th windows of val data.
static void val_batch(const fg_train_opts *o, const data_src *src, int i, int32_t *in, int32_t *tg) {
    const fg_dataset *ds = src->ds;
    // a hook's own validation data (index -1 - i); it returns 1 to leave validation to the source
    if (o->batch_fn && o->batch_fn(o->hook_ctx, -1 - (int64_t)i, in, tg, o->batch, o->seq) == 0) return;
    if (src->sh) {
        fg_shard_val_batch(src->sh, (size_t)i, src->pad, in, tg, o->batch, o->seq);
    } else if (!ds) {
        fg_rng r;
        fg_rng_seed(&r, 0x5eed0000u + (uint64_t)i);
        if (o->task == FG_TRAIN_COUNTDOWN) fg_countdown_batch(&r, o->task_level, 1, in, tg, o->batch, o->seq);
        else fg_task_batch_split(&r, 1, in, tg, o->batch, o->seq);
    } else {
        const fg_token_stream *s = ds->val.n_tokens > (size_t)o->seq ? &ds->val : &ds->train;
        fg_stream_window(s, (size_t)i, in, tg, o->batch, o->seq);
    }
}

static int eval_src(fg_model *m, const fg_train_opts *o, const data_src *src, double *loss, double *bpb) {
    int N = o->batch * o->seq;
    int32_t *in = malloc(sizeof(int32_t) * N), *tg = malloc(sizeof(int32_t) * N);
    if (!in || !tg) { free(in); free(tg); return fg_set_error("out of memory"); }
    double nats = 0;
    long count = 0, bytes = 0;
    int rc = 0;
    for (int i = 0; i < o->eval_batches && !rc; i++) {
        val_batch(o, src, i, in, tg);
        fg_step es = {0};
        rc = fg_model_forward(m, in, tg, o->batch, o->seq, &es);
        nats += es.ce_loss * m->n_counted;
        count += m->n_counted;
        for (int n = 0; n < N; n++)
            bytes += src->tok_bytes ? (tg[n] >= 0 && tg[n] < src->V ? (long)src->tok_bytes[tg[n]] : 0) : tg[n] >= 0 && tg[n] < 256;
    }
    m->n_counted = 0; // no backward after an eval forward
    free(in); free(tg);
    if (rc) return -1;
    *loss = count ? nats / count : 0;
    *bpb = bytes ? nats / log(2.0) / bytes : 0;
    return 0;
}

int fg_train_eval(fg_model *m, const fg_train_opts *o, const void *dataset, double *loss, double *bpb) {
    data_src src = {.ds = dataset, .pad = FG_TOK_PAD};
    return eval_src(m, o, &src, loss, bpb);
}

// Sets up the run's tokenizer and data: the tokenizer the state already carries (resume), the
// one --tokenizer names, or the one shards were prepared with; they must agree. On success
// src (and *tok, *ds, *sh when used) are ready and the caller frees them.
static int setup_data(const fg_config *c, fg_train_state *st, const fg_train_opts *o, data_src *src, fg_tokenizer **tok,
                      fg_dataset *ds, fg_shardset *sh) {
    char *bytes = NULL;
    size_t len = 0;
    src->pad = FG_TOK_PAD;
    if (o->shards) {
        if (fg_shardset_open(sh, o->shards)) return -1;
        src->sh = sh;
        if (sh->tokenizer_data) { bytes = malloc(sh->tokenizer_len + 1); len = sh->tokenizer_len; if (bytes) memcpy(bytes, sh->tokenizer_data, len); }
        if (sh->tokenizer_data && !bytes) return fg_set_error("out of memory");
        if (!sh->tokenizer_data && st->tokenizer_data)
            return fg_set_error("%s: the shards are byte-level but the checkpoint was trained with a BPE tokenizer "
                                "(hint: prepare the shards with --tokenizer)", o->shards);
    } else if (o->tokenizer) {
        if (!o->n_data) return fg_set_error("--tokenizer needs data files or --shards (the built-in task is byte-level)");
        if (!(bytes = fg_read_file(o->tokenizer, &len))) return -1;
    } else if (st->tokenizer_data && o->n_data) { // resume of a BPE run: keep its tokenizer
        if (!(bytes = malloc(st->tokenizer_len + 1))) return fg_set_error("out of memory");
        len = st->tokenizer_len;
        memcpy(bytes, st->tokenizer_data, len);
    } else if (st->tokenizer_data && !o->batch_fn) { // a batch hook brings its own token ids
        return fg_set_error("the checkpoint was trained with a BPE tokenizer: the built-in task (byte-level) cannot continue it "
                            "(hint: pass its data files or --shards)");
    }
    if (bytes) {
        if (st->tokenizer_data && (st->tokenizer_len != len || memcmp(st->tokenizer_data, bytes, len))) {
            free(bytes);
            return fg_set_error("tokenizer mismatch: the %s differs from the tokenizer stored in the checkpoint "
                                "(hint: use the run's own tokenizer, or start a new run)", o->shards ? "shards' tokenizer" : "--tokenizer file");
        }
        if (!st->tokenizer_data && st->step > 0) {
            free(bytes);
            return fg_set_error("tokenizer mismatch: the checkpoint is byte-level but the %s a BPE tokenizer",
                                o->shards ? "shards use" : "run names");
        }
        const char *where = o->shards ? o->shards : o->tokenizer ? o->tokenizer : "the checkpoint's tokenizer";
        if (!(*tok = fg_tokenizer_load_mem(bytes, len, where))) { free(bytes); return -1; }
        if (!st->tokenizer_data) { st->tokenizer_data = bytes; st->tokenizer_len = len; strcpy(st->tokenizer, "bpe"); }
        else free(bytes);
        int32_t tv = fg_tokenizer_vocab_size(*tok);
        if (c->vocab_size < tv)
            return fg_set_error("the model's vocab_size %d is smaller than the tokenizer's vocabulary (%d tokens) "
                                "(hint: --config with a config.json whose vocab_size >= %d)", c->vocab_size, tv, tv);
        int32_t bos = fg_tokenizer_token_id(*tok, FG_DS_BOS);
        int32_t eos = fg_tokenizer_token_id(*tok, FG_DS_EOS);
        if (bos < 0 || eos < 0)
            return fg_set_error("the tokenizer has no DeepSeek begin/end-of-sentence tokens, which frugal uses as document markers");
        src->pad = eos;
        src->V = tv;
        uint32_t *tb = calloc((size_t)tv, sizeof *tb);
        if (!tb) return fg_set_error("out of memory");
        for (int32_t id = 0; id < tv; id++) tb[id] = (uint32_t)fg_tokenizer_decode(*tok, id, NULL, 0);
        tb[bos] = tb[eos] = 0; // document markers are not text
        src->tok_bytes = tb;
        if (!o->shards) {
            if (fg_dataset_load_tok(ds, o->data, o->n_data, o->val_fraction, *tok, bos, eos)) return -1;
            src->ds = ds;
        }
    } else if (o->n_data && !o->shards) {
        if (fg_dataset_load(ds, o->data, o->n_data, o->val_fraction)) return -1;
        src->ds = ds;
    }
    if (src->sh && src->sh->man.vocab_size > c->vocab_size)
        return fg_set_error("the model's vocab_size %d is smaller than the shards' vocabulary (%d tokens) "
                            "(hint: --config with a config.json whose vocab_size >= %d)", c->vocab_size,
                            src->sh->man.vocab_size, src->sh->man.vocab_size);
    if (src->ds && src->ds->train.n_tokens < 2) return fg_set_error("training data has fewer than 2 tokens");
    return 0;
}


static void progress_bar(int64_t step, int64_t total, float loss, float lr, double tps, double eta) {
    int width = 30, fill = (int)(width * (double)step / (double)total);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = 0;
    fg_log(FG_LOG_PROGRESS, "  step %lld/%lld [%s] loss %.4f lr %.2e %.1fk tok/s eta %dm%02ds ", (long long)step,
           (long long)total, bar, loss, lr, tps / 1000, (int)(eta / 60), (int)eta % 60);
}

// Cuts a run's log back to the lines of steps <= step (the checkpoint a resume starts from): the
// steps after it, a kill -9 or a failed save left behind, are trained again and logged anew. A
// torn last line is dropped too. Written to a temporary file and renamed over the log.
static int log_truncate(const char *path, int64_t step) {
    size_t len;
    FILE *probe = fopen(path, "rb");
    if (!probe) return 0; // no log yet
    fclose(probe);
    char *text = fg_read_file(path, &len);
    if (!text) return -1;
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) { free(text); return fg_set_error("cannot write '%s': %s", tmp, strerror(errno)); }
    size_t kept = 0, dropped = 0;
    for (char *at = text, *end = text + len, *line; (line = fg_next_line(&at, end, &len));) {
        long long s = -1;
        int complete = at <= end && at > line && at[-1] == '\n';
        if (complete && !strncmp(line, "{\"step\":", 8)) s = strtoll(line + 8, NULL, 10);
        if (s >= 0 && s <= step && len && line[len - 1] == '}') { fwrite(line, 1, len, f); fputc('\n', f); kept++; }
        else if (len) dropped++;
    }
    free(text);
    int bad = ferror(f) != 0;
    if (fclose(f) || bad || rename(tmp, path)) { unlink(tmp); return fg_set_error("cannot rewrite the log '%s'", path); }
    (void)kept; (void)dropped;
    return 0;
}

// Over several ranks: whether any rank's rc is an error. The ranks that did not fail get an error
// that points at the one that did (its own message is printed by its CLI). Returns 1 if any failed.
static int agree_failed(int *rc, const char *what) {
    int bad = *rc != 0;
    if (fg_comm_allreduce_i32(&bad, 1)) { *rc = -1; return 1; }
    if (bad && !*rc) *rc = fg_set_error("rank 0 could not %s (its error is printed above)", what);
    return bad > 0;
}

int fg_train(fg_model *m, fg_adamw *opt, fg_train_state *st, const fg_train_opts *o) {
    const fg_config *c = &m->cfg;
    int B = o->batch, T = o->seq, N = B * T, L = fg_config_n_blocks(c), E = FG_MAX(1, c->n_routed_experts);
    int D = c->num_nextn_predict_layers;
    if (B < 1 || T < 2) return fg_set_error("batch must be >= 1 and seq >= 2 (got %d, %d)", B, T);
    if (st->step >= o->steps)
        return fg_set_error("the run is already at step %lld of %lld: nothing to train (hint: raise --steps)",
                            (long long)st->step, (long long)o->steps);
    if (T > c->max_position_embeddings)
        return fg_set_error("seq %d exceeds the model's max_position_embeddings %d (hint: --seq %d)", T,
                            c->max_position_embeddings, c->max_position_embeddings);
    int task = !o->n_data && !o->shards && !o->batch_fn; // a batch hook brings its own rows
    int countdown = o->task == FG_TRAIN_COUNTDOWN;
    if (countdown && (o->task_level < 0 || o->task_level > FG_CD_LEVELS))
        return fg_set_error("countdown level %d is out of range (hint: --level 1 to %d, or 0 for every level)", o->task_level, FG_CD_LEVELS);
    if (countdown && !task)
        return fg_set_error("the countdown task trains on its own problems (hint: drop the data files or --shards, or the task)");
    if (task && !countdown && T < FG_TASK_LONGEST - 1)
        return fg_set_error("the built-in task needs --seq >= %d (got %d)", FG_TASK_LONGEST - 1, T);
    if (task && countdown && T < fg_countdown_max_len(o->task_level) - 1)
        return fg_set_error("the countdown task (level %d) needs --seq >= %d (got %d) (hint: leave --seq out for the "
                            "level's longest example)", o->task_level, fg_countdown_max_len(o->task_level) - 1, T);
    if (!o->tokenizer && !st->tokenizer_data && c->vocab_size < FG_BYTE_VOCAB)
        return fg_set_error("the byte tokenizer needs vocab_size >= %d (got %d)", FG_BYTE_VOCAB, c->vocab_size);
    // Everything training holds at once: weights, gradients, two AdamW moments, activations.
    double need = 16.0 * m->n_params + (double)fg_model_acts_bytes(m, B, T), mem = fg_phys_mem_bytes();
    if (mem > 0 && need > 0.9 * mem)
        return fg_set_error("training needs %.1f GiB (weights, gradients, AdamW state and activations for batch %d x %d) "
                            "but this machine has %.1f GiB (hint: lower --batch or --seq, or use a smaller config)",
                            need / 1073741824.0, B, T, mem / 1073741824.0);
    data_src src = {0};
    fg_tokenizer *tok = NULL;
    fg_dataset ds_mem;
    fg_shardset sh_mem;
    memset(&ds_mem, 0, sizeof ds_mem);
    memset(&sh_mem, 0, sizeof sh_mem);
#define FREE_DATA() do { fg_dataset_free(&ds_mem); fg_shardset_close(&sh_mem); fg_tokenizer_free(tok); free((void *)src.tok_bytes); } while (0)
    // Over several ranks (dist/dp.h), rank 0 alone owns the run folder: it logs, evaluates and saves.
    int rank = fg_dist_rank(), dp = fg_dist_size(), lead = rank == 0;
    if (setup_data(c, st, o, &src, &tok, &ds_mem, &sh_mem) || (lead && fg_mkdir_p(o->out_dir))) { FREE_DATA(); return -1; }
    int lock = lead ? fg_dir_lock(o->out_dir) : -1;
    if (lead && lock < 0) { FREE_DATA(); return -1; }
#undef FREE_DATA
#define FREE_DATA() do { fg_dataset_free(&ds_mem); fg_shardset_close(&sh_mem); fg_tokenizer_free(tok); free((void *)src.tok_bytes); \
                         if (lock >= 0) fg_dir_unlock(lock); } while (0)
    const fg_dataset *ds = src.ds;
    fg_ledger ledger; // OUT/ledger.json: what this run cost (src/cost/ledger.c)
    if (lead) fg_ledger_begin(&ledger, o->out_dir, st->step > 0);
    char path_ckpt[1100], path_log[1100];
    snprintf(path_ckpt, sizeof path_ckpt, "%s/ckpt.fgck", o->out_dir);
    snprintf(path_log, sizeof path_log, "%s/log.jsonl", o->out_dir);
    if (lead && (fg_output_check(path_ckpt) || (st->step > 0 && log_truncate(path_log, st->step)))) { FREE_DATA(); return -1; }
    FILE *log = lead ? fopen(path_log, st->step > 0 ? "a" : "w") : fopen("/dev/null", "w"); // other ranks: no log
    if (!log) { FREE_DATA(); return fg_set_error("cannot write log '%s': %s", path_log, strerror(errno)); }
    int32_t *in = malloc(sizeof(int32_t) * N), *tg = malloc(sizeof(int32_t) * N);
    int *load = calloc((size_t)L * E, sizeof(int));
    fg_load_stats *ls = calloc(L, sizeof *ls);
    fg_sampler sp;
    if (ds) { fg_sampler_init(&sp, &ds->train, 0); sp.rng = st->data_rng; sp.batches_drawn = st->batches_drawn; }
    int rc = (in && tg && load && ls) ? 0 : fg_set_error("out of memory");
    fg_adamw_opts ao = {o->beta1, o->beta2, o->eps, o->weight_decay};
    int tty = o->progress && lead; // the log callback decides whether a terminal shows it
    // ZeRO-1: this rank keeps the AdamW moments of its piece of the parameters only.
    size_t shard_lo = 0, shard_hi = m->n_params;
    int zero = o->zero && dp > 1;
    if (zero) fg_comm_split(m->n_params, dp, rank, &shard_lo, &shard_hi);
    if (zero && fg_adamw_shard(opt, shard_lo, shard_hi)) rc = -1;
    // Expert parallelism: groups of ep ranks; this one holds experts [e_lo, e_hi) (dist/ep.h).
    int ep = o->ep > 1 ? o->ep : 1;
    if (!rc && ep > 1) {
        if (o->zero) rc = fg_set_error("ZeRO-1 with expert parallelism is not built yet (hint: drop --zero or --ep)");
        else if (dp % ep) rc = fg_set_error("--ep %d does not divide the %d ranks (hint: mpirun -np a multiple of %d)", ep, dp, ep);
        else if (fg_comm_set_ep(ep) || !(m->ep = fg_ep_create(c, ep, rank % ep))) rc = -1;
    }
    uint64_t comm0[FG_COMM_KINDS];
    double ep_rows0 = 0;
    fg_dp_overlap ov = {0}; // the gradient all-reduce overlapped with the backward (dist/dp.h)
    if (!rc && dp > 1 && o->overlap && fg_dp_overlap_init(&ov, m)) rc = -1;
    int64_t end = o->stop_after > 0 ? FG_MIN(o->steps, st->step + o->stop_after) : o->steps;
    double t_start = fg_now(), t_tokens = 0;
    int old_prec = fg_model_set_precision(m, o->precision);
    int64_t first = st->step;
    if (!rc && o->accum % dp)
        rc = fg_set_error("the run takes %d micro-batch%s per step, which %d ranks cannot split evenly (hint: mpirun -np N "
                          "with N dividing %d, or start a run with --accum a multiple of %d)", o->accum, o->accum > 1 ? "es" : "",
                          dp, o->accum, dp);
    while (!rc && st->step < end) {
        double t0 = fg_now();
        float lr = fg_lr_at(o->sched, st->step, o->steps, o->warmup, o->lr, o->min_lr, o->decay_frac);
        fg_model_zero_grad(m);
        memset(load, 0, sizeof(int) * (size_t)L * E);
        memcpy(comm0, fg_comm_bytes, sizeof comm0);
        if (m->ep) { ep_rows0 = m->ep->rows_out + m->ep->rows_in; m->ep->max_ranks = 0; m->ep->comm_s = 0; }
        double loss = 0, ce = 0, bal = 0, mtp[FG_MTP_MAX] = {0};
        float lambda = st->step < o->mtp_late_frac * o->steps ? o->mtp_lambda : o->mtp_lambda_late;
        // The step's accum micro-batches in the seeded order; micro-batch j runs on rank j % dp (every
        // rank draws all of them, so the order, the RNG streams and the math do not depend on dp).
        int n_mb = o->accum;
        float scale = 1.0f / (float)n_mb;
        for (int j = 0; j < n_mb && !rc; j++) {
            int mine = j % dp == rank;
            if (o->batch_fn) rc = mine && o->batch_fn(o->hook_ctx, st->tokens_seen / N, in, tg, B, T) ? -1 : 0;
            else if (src.sh) { fg_shard_stream_next(src.sh, st->stream, &st->data_rng, src.pad, in, tg, B, T); st->batches_drawn++; }
            else if (ds) fg_sampler_next(&sp, in, tg, B, T);
            else if (countdown) fg_countdown_batch(&st->rng, o->task_level, 0, in, tg, B, T);
            else fg_task_batch(&st->rng, in, tg, B, T);
            fg_step ms = {.balance_alpha = o->balance_alpha, .mtp_lambda = lambda};
            if (rc) break;
            st->tokens_seen += N;
            if (!mine) continue;
            // The step's last micro-batch here: its backward starts the gradient reductions block by block.
            m->block_done = ov.started && j + dp >= n_mb ? fg_dp_block_done : NULL;
            m->block_ctx = &ov;
            if (o->step_fn) rc = o->step_fn(o->hook_ctx, m, in, tg, B, T, scale, &ms);
            else {
                rc = fg_model_forward(m, in, tg, B, T, &ms);
                if (!rc) rc = fg_model_backward(m, scale);
            }
            loss += (float)ms.loss * scale; ce += ms.ce_loss * scale; bal += ms.bal_loss * scale;
            for (int k = 0; k < D; k++) mtp[k] += ms.mtp_ce[k] * scale;
            for (int i = 0; i < L * E; i++) load[i] += m->expert_load[i];
        }
        int sig = fg_train_interrupted();
        if (dp > 1) { // one small all-reduce: failures, signals and the step's losses
            double red[5 + FG_MTP_MAX] = {rc != 0, sig, loss, ce, bal};
            for (int k = 0; k < D; k++) red[5 + k] = mtp[k];
            if (fg_comm_allreduce_f64(red, 5 + (size_t)D)) { rc = -1; break; }
            if (red[0] > 0 && !rc) rc = fg_set_error("another rank failed at step %lld (its error is printed above)", (long long)st->step + 1);
            sig = red[1] > 0 ? (sig ? sig : SIGTERM) : 0;
            loss = red[2]; ce = red[3]; bal = red[4];
            for (int k = 0; k < D; k++) mtp[k] = red[5 + k];
        }
        if (rc) break;
        if (!isfinite(loss)) { rc = fg_set_error("loss became %f at step %lld (hint: lower --lr)", loss, (long long)st->step); break; }
        double t_comm = fg_now();
        m->block_done = NULL;
        if (dp > 1 && (fg_comm_allreduce_i32(load, (size_t)L * E) || fg_dp_reduce_grads(m, ov.started ? &ov : NULL))) { rc = -1; break; }
        t_comm = fg_now() - t_comm;
        float gnorm = fg_grad_clip(m, o->clip);
        fg_adamw_step(opt, m, lr, &ao);
        double t_gather = fg_now();
        if (zero && fg_dp_allgather_params(m)) { rc = -1; break; }
        t_comm += fg_now() - t_gather;
        fg_model_update_routing_bias(m, load, o->bias_gamma);
        st->step++;
        if (ds) { st->data_rng = sp.rng; st->batches_drawn = sp.batches_drawn; }
        double dt = fg_now() - t0;
        t_tokens += (double)N * n_mb;
        double tps = (double)N * n_mb / dt;
        fprintf(log, "{\"step\":%lld,\"loss\":%.6f,\"ce\":%.6f,\"bal\":%.6g,\"lr\":%.6g,\"grad_norm\":%.5g,"
                     "\"tok_per_s\":%.1f,\"tokens\":%lld,",
                (long long)st->step, loss, ce, bal, lr, gnorm, tps, (long long)st->tokens_seen);
        if (D) { // MTP: the loss of each depth, and the weight it had
            fprintf(log, "\"mtp_lambda\":%.6g,\"mtp_ce\":[", lambda);
            for (int k = 0; k < D; k++) fprintf(log, "%s%.6f", k ? "," : "", mtp[k]);
            fprintf(log, "],");
        }
        if (dp > 1) { // bytes rank 0 sent this step, by kind (comm.h's convention; fg_cost_comm's analytic twin)
            fprintf(log, "\"comm_bytes\":{");
            for (int k = 0; k < FG_COMM_KINDS; k++)
                fprintf(log, "%s\"%s\":%llu", k ? "," : "", fg_comm_kind_name[k], (unsigned long long)(fg_comm_bytes[k] - comm0[k]));
            fprintf(log, "},\"comm_s\":%.4f,", t_comm); // the gradient all-reduce and parameter all-gather (not the all-to-alls)
        }
        if (m->ep) // rows this rank sent to and received from other ranks (each crosses twice a step)
            fprintf(log, "\"ep_rows\":%.0f,\"ep_max_ranks\":%d,\"ep_s\":%.4f,", m->ep->rows_out + m->ep->rows_in - ep_rows0,
                    m->ep->max_ranks, m->ep->comm_s);
        fprintf(log, "\"expert_load\":[");
        int nl = c->n_routed_experts ? fg_load_stats_compute(c, load, ls) : 0;
        for (int i = 0; i < nl; i++)
            fprintf(log, "%s{\"layer\":%d,\"min\":%d,\"max\":%d,\"cv\":%.4f}", i ? "," : "", ls[i].layer, ls[i].min,
                    ls[i].max, ls[i].cv);
        fprintf(log, "]}\n");
        double elapsed = fg_now() - t_start;
        if (tty) progress_bar(st->step, o->steps, (float)loss, lr, t_tokens / elapsed,
                              elapsed / (double)(st->step - first) * (double)(end - st->step));
        int last = st->step == end;
        int evaluate = (o->eval_every > 0 && st->step % o->eval_every == 0) || last;
        // Rank 0 evaluates alone: under expert parallelism with every expert brought to it first.
        if (evaluate && m->ep && fg_ep_gather(m->ep, m, NULL)) rc = -1;
        if (!rc && lead && evaluate) {
            double vl, bpb;
            fg_ep *held = m->ep;
            m->ep = NULL;
            rc = eval_src(m, o, &src, &vl, &bpb);
            m->ep = held;
            if (!rc) fprintf(log, "{\"step\":%lld,\"val_loss\":%.6f,\"val_bpb\":%.5f}\n", (long long)st->step, vl, bpb);
            if (!rc && !o->quiet) {
                char cv[128] = "";
                for (int i = 0, at = 0; i < nl && i < 4 && at < (int)sizeof cv; i++)
                    at += snprintf(cv + at, sizeof cv - (size_t)at, "  L%d cv %.2f", ls[i].layer, ls[i].cv);
                fg_log(FG_LOG_INFO, "step %6lld  loss %.4f  val %.4f  bpb %.4f  lr %.2e  %.1fk tok/s%s\n", (long long)st->step,
                       loss, vl, bpb, lr, t_tokens / elapsed / 1000, cv);
            }
        }
        if (!rc && (fflush(log) || ferror(log))) rc = fg_set_error("cannot write the log '%s': %s", path_log, strerror(errno));
        if (dp == 1) sig = fg_train_interrupted(); // (over ranks: the one agreed on with the step's losses)
        int save = (o->save_every > 0 && st->step % o->save_every == 0) || last || sig;
        if (dp > 1 && (evaluate || save) && agree_failed(&rc, "evaluate or write the log")) break;
        if (rc) break;
        if (save) {
            fg_adamw full, *state = opt; // a checkpoint holds the whole optimizer state, whatever the layout
            if (zero) { rc = fg_dp_gather_adamw(m, opt, &full); state = &full; }
            if (m->ep) rc = fg_ep_gather(m->ep, m, opt);
            if (!rc && lead) rc = fg_ckpt_save(path_ckpt, m, state, st) || fg_ledger_save(&ledger, c, st, o) ? -1 : 0;
            if (zero) fg_adamw_free(&full);
            if (dp > 1 && agree_failed(&rc, "write the checkpoint")) break;
        }
        if (sig && !rc && !last) {
            rc = fg_set_error("interrupted by %s at step %lld of %lld: checkpoint saved to %s",
                              sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal",
                              (long long)st->step, (long long)o->steps, path_ckpt);
            break;
        }
    }
    if (tty) fg_log(FG_LOG_PROGRESS_END, "%s", "");
    if (m->ep) { fg_ep_free(m->ep); m->ep = NULL; fg_comm_set_ep(1); }
    fg_dp_overlap_free(&ov);
    m->block_done = NULL;
    fg_model_set_precision(m, old_prec);
    if (fclose(log) && !rc) rc = fg_set_error("cannot write the log '%s': %s", path_log, strerror(errno));
    free(in); free(tg); free(load); free(ls);
    FREE_DATA();
#undef FREE_DATA
    return rc;
}
