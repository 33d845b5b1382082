// ledger.c: the measured ledger of a training run (OUT/ledger.json; layout in docs/cost.md).
//
// What a run cost: tokens, model FLOPs by component (the analytic formula of cost.c at the run's
// sequence length, times the tokens), wall and CPU time summed over resumed segments, this
// machine's measured peaks, the achieved MFU, the best validation loss (read back from
// OUT/log.jsonl, which the trainer has flushed before each checkpoint) and projections onto
// every accelerator at FG_LEDGER_MFU.
// What it deliberately does not do: task accuracy (the trainer does not measure it; the field is
// null until `frugal eval` or `frugal demo` records one with fg_ledger_record_accuracy). The teacher's
// share (distillation) is what the trainer's options say: a fixed part (the cache) plus a per-token part
// (an online teacher forward), with the cache's size. Invariant: tokens and FLOPs derive from the checkpoint's tokens_seen, so a
// resumed run can never double count them; only time is carried over from the old ledger.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cost/cost.h"
#include "dist/comm.h"
#include "formats/json.h"
#include "util.h"

double fg_cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static double jnum(const fg_json *o, const char *k, double def) {
    const fg_json *v = fg_json_get(o, k);
    return v && v->type == FG_JSON_NUMBER ? v->num : def;
}

// A count from the ledger: a number in [lo, hi], else def (a damaged or hostile file must not
// overflow an int conversion).
static int jint(const fg_json *o, const char *k, int def, int lo, int hi) {
    double v = jnum(o, k, def);
    return v >= lo && v <= hi ? (int)v : def;
}

int fg_ledger_read(const char *run_dir, fg_ledger_info *li) {
    memset(li, 0, sizeof *li);
    char path[1100];
    snprintf(path, sizeof path, "%s/ledger.json", run_dir);
    size_t len;
    char *text = fg_read_file(path, &len);
    if (!text) return fg_wrap_error("no ledger in '%s' (it is written by frugal train at each checkpoint)", run_dir);
    int rc = fg_ledger_parse(li, text, len, path);
    free(text);
    return rc;
}

int fg_ledger_parse(fg_ledger_info *li, const char *text, size_t len, const char *path) {
    memset(li, 0, sizeof *li);
    fg_json *root = fg_json_parse(text, len, path);
    if (!root) return -1;
    const fg_json *mg = fg_json_get(root, "magic"), *run = fg_json_get(root, "run"), *fl = fg_json_get(root, "flops");
    const fg_json *t = fg_json_get(root, "time"), *q = fg_json_get(root, "quality"), *md = fg_json_get(root, "model");
    int rc = 0;
    if (!mg || mg->type != FG_JSON_STRING || strcmp(mg->str, FG_LEDGER_MAGIC))
        rc = fg_set_error("%s: not a frugal ledger (magic \"%s\" missing)", path, FG_LEDGER_MAGIC);
    else if (jnum(root, "version", 0) != FG_LEDGER_VERSION)
        rc = fg_set_error("%s: unsupported ledger version %g (this frugal reads %d)", path, jnum(root, "version", 0), FG_LEDGER_VERSION);
    else if (!run || !fl || !t || !q || !md)
        rc = fg_set_error("%s: a section is missing (run, model, flops, time, quality)", path);
    else {
        li->tokens = jnum(run, "tokens", 0); li->steps = jnum(run, "steps", 0); li->seq = jint(run, "seq", 0, 0, 1 << 30);
        li->segments = jint(run, "segments", 0, 0, 1 << 30); li->cache_bytes = jnum(run, "cache_bytes", 0);
        li->params_total = jnum(md, "params_total", 0); li->params_active = jnum(md, "params_active", 0);
        li->train_flops = jnum(fl, "train", 0); li->eval_flops = jnum(fl, "eval", 0);
        li->teacher_flops = jnum(fl, "teacher", 0); li->flops_per_token = jnum(fl, "train_per_token", 0);
        li->rollout_flops = jnum(fl, "rollout", 0); li->reference_flops = jnum(fl, "reference", 0);
        li->wall_s = jnum(t, "wall_s", 0); li->cpu_s = jnum(t, "cpu_s", 0);
        li->mfu = jnum(t, "mfu", 0);
        if (li->mfu > 1) li->mfu = NAN; // written against a peak measured under load
        li->fp32_gflops = jnum(t, "fp32_peak_gflops", 0);
        li->best_val_loss = jnum(q, "best_val_loss", NAN); li->best_val_step = jnum(q, "best_val_step", NAN);
        li->task_accuracy = jnum(q, "task_accuracy", NAN);
        const fg_json *cm = fg_json_get(root, "communication"), *b = cm ? fg_json_get(cm, "bytes") : NULL;
        const fg_json *an = cm ? fg_json_get(cm, "analytic_per_step") : NULL;
        if (cm && b) {
            li->ranks = jint(cm, "ranks", 0, 0, 1 << 24); li->ep = jint(cm, "ep", 1, 1, 1 << 24); li->zero = jint(cm, "zero", 0, 0, 1);
            for (int k = 0; k < FG_COMM_KINDS; k++) {
                li->comm_bytes[k] = jnum(b, fg_comm_kind_name[k], 0);
                li->comm_analytic_step[k] = an ? jnum(an, fg_comm_kind_name[k], 0) : 0;
            }
        }
    }
    fg_json_free(root);
    return rc;
}

// Scans log.jsonl: counts validation lines (each one eval of o->eval_batches batches) up to
// max_step, skipping the repeats a resume after a crash can leave, and finds the best loss.
// target >= 0: stops at the first loss <= target and returns its tokens and step.
static int log_scan(const char *dir, double max_step, double target, int *n_val, double *best, double *best_step,
                    double *tok_at, double *step_at) {
    char path[1100];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "r");
    *n_val = 0; *best = NAN; *best_step = NAN;
    if (!f) return target >= 0 ? fg_set_error("cannot open '%s': %s", path, strerror(errno)) : 0;
    size_t cap = 0;
    char *line = NULL;
    ssize_t len;
    double last_val_step = -1, tokens = 0;
    int found = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (!strstr(line, "\"val_loss\"") && !strstr(line, "\"tokens\"")) continue;
        fg_json *j = fg_json_parse(line, (size_t)len, path);
        if (!j) continue; // a torn last line after a crash
        double step = jnum(j, "step", -1), vl = jnum(j, "val_loss", NAN), tk = jnum(j, "tokens", -1);
        fg_json_free(j);
        if (tk >= 0) { tokens = tk; continue; }
        if (isnan(vl) || step <= last_val_step || (max_step >= 0 && step > max_step)) continue;
        last_val_step = step;
        (*n_val)++;
        if (isnan(*best) || vl < *best) { *best = vl; *best_step = step; }
        if (target >= 0 && vl <= target) { *tok_at = tokens; *step_at = step; found = 1; break; }
    }
    free(line);
    fclose(f);
    return found;
}

int fg_ledger_reach(const char *run_dir, double target_loss, double *tokens, double *step) {
    int n;
    double b, bs;
    return log_scan(run_dir, -1, target_loss, &n, &b, &bs, tokens, step);
}

void fg_ledger_begin(fg_ledger *lg, const char *out_dir, int resumed) {
    memset(lg, 0, sizeof *lg);
    snprintf(lg->dir, sizeof lg->dir, "%s", out_dir);
    fg_ledger_info li;
    if (resumed && !fg_ledger_read(out_dir, &li)) {
        lg->base_wall = li.wall_s; lg->base_cpu = li.cpu_s; lg->base_segments = li.segments;
        memcpy(lg->comm_base, li.comm_bytes, sizeof lg->comm_base);
    } else if (resumed) {
        lg->base_segments = -1000; // marks the ledger partial: earlier time unknown
    }
    lg->t0 = fg_now();
    lg->cpu0 = fg_cpu_seconds();
    memcpy(lg->comm0, fg_comm_bytes, sizeof lg->comm0);
}

int fg_ledger_write(const char *dir, fg_ledger_info *li, const fg_config *c, const fg_peaks *pk, int partial) {
    double work = li->train_flops + li->eval_flops;
    // A run cannot beat the machine's peak: if it does, the cached peak was measured under load.
    fg_peaks fresh;
    if (li->wall_s > 0 && pk->fp32_gflops > 0 && work / li->wall_s / 1e9 > pk->fp32_gflops) {
        fresh = *pk;
        fg_peaks_beaten(&fresh, work / li->wall_s / 1e9);
        pk = &fresh;
    }
    li->fp32_gflops = pk->fp32_gflops;
    li->mfu = li->wall_s > 0 && pk->fp32_gflops > 0 ? work / (li->wall_s * pk->fp32_gflops * 1e9) : 0;
    fg_cost_model cm;
    fg_cost_opts co = {0, li->seq > 0 ? li->seq : 1, 1, li->seq > 0 ? li->seq : 1, FG_F32, 1};
    if (fg_cost_model_compute(&cm, c, &co)) return -1;
    char path[1100], tmp[1200];
    snprintf(path, sizeof path, "%s/ledger.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return fg_set_error("cannot write ledger '%s': %s", tmp, strerror(errno));
    fprintf(f, "{\n  \"magic\": \"%s\",\n  \"version\": %d,\n", FG_LEDGER_MAGIC, FG_LEDGER_VERSION);
    fprintf(f, "  \"convention\": \"model FLOPs: 2 per multiply-add of every matmul (active experts, router, head; not the "
               "embedding lookup, norms, softmax); attention at the causal average window (T+1)/2; training = 3 x forward; "
               "mfu = (train + eval FLOPs) / (wall_s x fp32 peak)\",\n");
    fprintf(f, "  \"run\": {\"tokens\": %.17g, \"steps\": %.17g, \"seq\": %d, \"segments\": %d, \"partial\": %s, "
               "\"cache_bytes\": %.17g},\n", li->tokens, li->steps, li->seq, li->segments, partial ? "true" : "false",
            li->cache_bytes);
    fprintf(f, "  \"model\": {\"params_total\": %.17g, \"params_active\": %.17g},\n", cm.total, cm.total_active);
    fprintf(f, "  \"flops\": {\"train\": %.17g, \"eval\": %.17g, \"teacher\": %.17g, \"rollout\": %.17g, \"reference\": %.17g, "
               "\"train_per_token\": %.17g,\n            \"train_by_component\": {", li->train_flops, li->eval_flops,
            li->teacher_flops, li->rollout_flops, li->reference_flops, li->flops_per_token);
    int first = 1;
    for (int i = 0; i < FG_COMP_N; i++) {
        if (i == FG_COMP_MTP || cm.fwd[i] == 0) continue;
        fprintf(f, "%s\"%s\": %.17g", first ? "" : ", ", fg_cost_component_name(i), 3 * cm.fwd[i] * li->tokens);
        first = 0;
    }
    fprintf(f, "}},\n");
    fprintf(f, "  \"time\": {\"wall_s\": %.6f, \"cpu_s\": %.6f, \"mfu\": %.6g, \"fp32_peak_gflops\": %.6g},\n", li->wall_s,
            li->cpu_s, li->mfu, pk->fp32_gflops);
    char amxg[32] = "null"; // not measured (no usable AMX)
    if (pk->amx_gflops > 0) snprintf(amxg, sizeof amxg, "%.6g", pk->amx_gflops);
    fprintf(f, "  \"machine\": {\"cpu\": \"%s\", \"threads\": %d, \"fp32_gflops\": %.6g, \"bf16_gflops\": %.6g, "
               "\"amx_present\": %s, \"amx_gflops\": %s, \"mem_gbs\": %.6g},\n", pk->cpu, pk->threads, pk->fp32_gflops,
            pk->bf16_gflops, pk->amx_present ? "true" : "false", amxg, pk->mem_gbs);
    fprintf(f, "  \"quality\": {");
    if (isnan(li->best_val_loss)) fprintf(f, "\"best_val_loss\": null, \"best_val_step\": null");
    else fprintf(f, "\"best_val_loss\": %.6f, \"best_val_step\": %.17g", li->best_val_loss, li->best_val_step);
    if (isnan(li->task_accuracy)) fprintf(f, ", \"task_accuracy\": null},\n");
    else fprintf(f, ", \"task_accuracy\": %.6f},\n", li->task_accuracy);
    if (li->ranks > 1) {
        fprintf(f, "  \"communication\": {\"ranks\": %d, \"ep\": %d, \"zero\": %d, \"convention\": \"bytes rank 0 sent: "
                   "all-reduce 2(p-1)/p x payload, all-gather (p-1)/p x total, all-to-all the bytes to other ranks "
                   "(docs/distributed.md)\", \"bytes\": {", li->ranks, li->ep, li->zero);
        for (int k = 0; k < FG_COMM_KINDS; k++) fprintf(f, "%s\"%s\": %.17g", k ? ", " : "", fg_comm_kind_name[k], li->comm_bytes[k]);
        fprintf(f, "}, \"analytic_per_step\": {");
        for (int k = 0; k < FG_COMM_KINDS; k++)
            fprintf(f, "%s\"%s\": %.17g", k ? ", " : "", fg_comm_kind_name[k], li->comm_analytic_step[k]);
        fprintf(f, "}},\n");
    }
    fprintf(f, "  \"projections\": {\"mfu\": %.2f, \"precision\": \"bf16\", \"accelerators\": [\n", FG_LEDGER_MFU);
    for (int i = 0; i < fg_accel_count(); i++) {
        const fg_accel *a = fg_accel_get(i);
        double h = work / (fg_accel_peak(a, FG_BF16) * FG_LEDGER_MFU) / 3600;
        fprintf(f, "    {\"name\": \"%s\", \"hours\": %.6g, \"dollars\": %.6g, \"kwh\": %.6g}%s\n", a->name, h, h * a->price_hr,
                h * a->watts / 1000, i + 1 < fg_accel_count() ? "," : "");
    }
    fprintf(f, "  ]}\n}\n");
    int err = fflush(f) || ferror(f) || fsync(fileno(f));
    if (fclose(f) || err) { unlink(tmp); return fg_set_error("cannot write ledger '%s'", tmp); }
    if (rename(tmp, path)) { unlink(tmp); return fg_set_error("cannot rename '%s' over '%s': %s", tmp, path, strerror(errno)); }
    return 0;
}

int fg_ledger_save(fg_ledger *lg, const fg_config *c, const fg_train_state *st, const fg_train_opts *o) {
    fg_peaks pk;
    if (fg_peaks_get(&pk, 0)) memset(&pk, 0, sizeof pk); // no peak: MFU 0, the rest still useful
    fg_cost_model cm;
    // MTP depths are trained (and counted) when their loss has a weight at some point of the run
    int mtp = o->mtp_lambda > 0 || o->mtp_lambda_late > 0 ? c->num_nextn_predict_layers : 0;
    fg_cost_opts co = {mtp, o->seq, 1, o->seq, FG_F32, 1};
    if (fg_cost_model_compute(&cm, c, &co)) return -1;
    fg_ledger_info li;
    memset(&li, 0, sizeof li);
    int n_val;
    double ta, sa;
    log_scan(lg->dir, (double)st->step, -1, &n_val, &li.best_val_loss, &li.best_val_step, &ta, &sa);
    li.tokens = (double)st->tokens_seen;
    li.steps = (double)st->step;
    li.seq = o->seq;
    li.segments = FG_MAX(0, lg->base_segments) + 1;
    li.flops_per_token = cm.train_per_token + 3 * cm.fwd[FG_COMP_MTP]; // the MTP modules' share apart from the components
    li.train_flops = li.tokens * cm.train_per_token;
    li.eval_flops = (double)n_val * o->eval_batches * o->batch * o->seq * cm.fwd_per_token;
    li.teacher_flops = o->teacher_flops_base + o->teacher_flops_per_token * (double)st->tokens_seen;
    li.cache_bytes = o->cache_bytes;
    li.rollout_flops = o->rollout_flops;
    li.reference_flops = o->reference_flops;
    li.task_accuracy = NAN;
    li.wall_s = lg->base_wall + (fg_now() - lg->t0);
    li.cpu_s = lg->base_cpu + (fg_cpu_seconds() - lg->cpu0);
    li.ranks = fg_dist_size();
    if (li.ranks > 1) { // what rank 0 sent, and what the cost model says a step of this layout sends
        li.ep = o->ep > 1 ? o->ep : 1; li.zero = o->zero;
        for (int k = 0; k < FG_COMM_KINDS; k++) li.comm_bytes[k] = lg->comm_base[k] + (double)(fg_comm_bytes[k] - lg->comm0[k]);
        fg_comm_plan plan;
        fg_comm_cost cc;
        fg_comm_plan_for(&plan, c, li.ranks, li.ep, li.zero, (double)o->accum / li.ranks * o->batch * o->seq, 4);
        fg_cost_comm(&cc, &plan, NULL);
        memcpy(li.comm_analytic_step, cc.bytes, sizeof cc.bytes);
    }
    return fg_ledger_write(lg->dir, &li, c, &pk, lg->base_segments < 0);
}

int fg_ledger_record_accuracy(const char *run_dir, const fg_config *c, double accuracy) {
    fg_ledger_info li;
    if (fg_ledger_read(run_dir, &li)) return -1;
    fg_peaks pk;
    if (fg_peaks_get(&pk, 0)) memset(&pk, 0, sizeof pk);
    li.task_accuracy = accuracy;
    return fg_ledger_write(run_dir, &li, c, &pk, 0);
}
