// cmd_bench.c: `frugal bench`: inference speed of a model (random weights from a config, or a
// checkpoint): prefill tokens/s at several prompt lengths, decode tokens/s at several contexts,
// KV cache bytes per token, and the memory bandwidth decode achieves against this machine's
// measured streaming bandwidth. Benchmarks live here and in bench/, never in the unit tests.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "frugal_scale.h"
#include "cli/opts.h"

#define BENCH_MAX 4 // lengths per list

static int parse_list(const char *s, int *out) {
    int n = 0;
    while (*s && n < BENCH_MAX) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 1 << 20) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return *s ? -1 : n;
}

// Resident memory of this process from /proc/self/status (Linux), in kB: peak, anonymous (heap,
// cache, scratch) and file-backed (mapped weights: pages the kernel may drop and re-read). 0 where
// unavailable.
static void rss_kb(long *hwm, long *anon, long *file) {
    *hwm = *anon = *file = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "VmHWM: %ld", hwm);
        sscanf(line, "RssAnon: %ld", anon);
        sscanf(line, "RssFile: %ld", file);
    }
    fclose(f);
}

// Seconds to feed n tokens in one call (prefill), after reset.
static double time_prefill(fg_infer *s, const int32_t *tok, int n) {
    fg_infer_reset(s);
    double t0 = fg_now();
    if (!fg_infer_feed(s, tok, n)) return -1;
    return fg_now() - t0;
}

// Aggregate decode tokens/s of B sequences decoded together, for every B of bat[]: each sequence
// prefilled with its own `context` random tokens (distinct caches: no shared blocks flatter the
// cache reads), then rounds of `steps` steps of one row per sequence, every batch size once per
// round; after each round the sequences are cut back to `context`, so every round decodes at the
// same context. tps[i]: the median over the rounds; ratio[i]: the median over the rounds of size
// i's tokens/s over the first size's in the same round. On a shared host whose memory bandwidth
// drifts within seconds (the same binary measured 125 to 220 tokens/s at B = 1 minutes apart,
// the FMA peak unchanged), timing the sizes one after the other made one build's B = 64 ratio
// swing from 6.9x to 10.1x; a ratio within a round compares sizes under the same conditions.
#define BATCH_ROUNDS 7
static double median(double *v, int n) { double m, m2; fg_scale_percentiles(v, n, 0, &m, &m2); return m; } // sorts v

static int time_batches(const fg_wstore *ws, int kind, int kv_type, const int *bat, int nbat, int context, int steps,
                        const int32_t *tok, int ntok, double *tps, double *ratio) {
    double r_tps[BENCH_MAX][BATCH_ROUNDS], r_ratio[BENCH_MAX][BATCH_ROUNDS];
    int V = fg_wstore_config(ws)->vocab_size, chunk = 512, total = 0, maxb = 0, rc = -1;
    for (int i = 0; i < nbat; i++) { total += bat[i]; maxb = bat[i] > maxb ? bat[i] : maxb; }
    fg_ctx_params p = {.n_ctx = total * (context + steps + FG_KV_BLOCK), .max_len = context + steps + 1,
                       .max_seqs = total, .max_batch = maxb > chunk ? maxb : chunk, .kind = kind, .kv_type = kv_type};
    fg_ctx *c = fg_ctx_create(ws, &p);
    int32_t *t = malloc(sizeof(int32_t) * (size_t)p.max_batch), *sq = malloc(sizeof(int32_t) * (size_t)p.max_batch);
    float *logits = malloc(sizeof(float) * (size_t)V * maxb);
    uint8_t *want = malloc((size_t)maxb);
    if (!c || !t || !sq || !logits || !want) goto out;
    for (int b = 0; b < total; b++) {
        if (fg_ctx_seq_new(c) != b) goto out;
        for (int at = 0; at < context; at += chunk) { // each sequence its own slice of the token stream
            int n = context - at < chunk ? context - at : chunk;
            for (int i = 0; i < n; i++) { t[i] = tok[((size_t)b * 7919 + at + i) % ntok]; sq[i] = b; }
            fg_batch bt = {.n = n, .token = t, .seq = sq};
            if (fg_ctx_decode(c, &bt, NULL)) goto out;
        }
    }
    memset(want, 1, (size_t)maxb);
    for (int rep = 0; rep < BATCH_ROUNDS; rep++)
        for (int i = 0, seq0 = 0; i < nbat; seq0 += bat[i++]) {
            double t0 = fg_now();
            for (int k = 0; k < steps; k++) {
                for (int b = 0; b < bat[i]; b++) { t[b] = tok[((size_t)b * 31 + k + rep * steps) % ntok]; sq[b] = seq0 + b; }
                fg_batch bt = {.n = bat[i], .token = t, .seq = sq, .logits = want};
                if (fg_ctx_decode(c, &bt, logits)) goto out;
            }
            r_tps[i][rep] = (double)bat[i] * steps / (fg_now() - t0);
            r_ratio[i][rep] = r_tps[i][rep] / r_tps[0][rep];
            for (int b = 0; b < bat[i]; b++)
                if (fg_ctx_seq_truncate(c, seq0 + b, context)) goto out;
        }
    for (int i = 0; i < nbat; i++) { tps[i] = median(r_tps[i], BATCH_ROUNDS); ratio[i] = median(r_ratio[i], BATCH_ROUNDS); }
    rc = 0;
out:
    fg_ctx_free(c);
    free(t); free(sq); free(logits); free(want);
    return rc;
}

// Self-speculative decoding (--speculative N): greedy generation on the same prompts by two
// sessions, plain and with up to N MTP drafts per step, alternated (which goes first flips every
// round), best round of each; the outputs must be identical. A byte-level model gets the built-in
// task's held-out problems (a model trained by frugal demo / train on the task), any other model
// prompts of random tokens. Prints tokens/s of both, the speed-up, the tokens per verification
// step and each draft depth's acceptance (draft k verified only when drafts 1..k-1 were accepted).
static int bench_spec(const fg_wstore *ws, int bytelevel, int drafts, int problems, int kv_type, int json) {
    const fg_config *c = fg_wstore_config(ws);
    if (!c->num_nextn_predict_layers)
        return cli_fail("bench", "--speculative needs a model with multi-token prediction (num_nextn_predict_layers > 0)",
                        "train one with frugal train --mtp 1");
    int task = bytelevel && c->vocab_size >= FG_BYTE_VOCAB, max_T = CLI_MIN(c->max_position_embeddings, 128);
    int new_tokens = task ? FG_TASK_LONGEST : 64, rounds = 3, rc = 0;
    fg_infer *s[2] = {fg_infer_create_store(ws, max_T, FG_KV_AUTO, kv_type), fg_infer_create_store(ws, max_T, FG_KV_AUTO, kv_type)};
    int32_t *prompts = malloc(sizeof(int32_t) * (size_t)problems * FG_TASK_MAX_TOKENS), *plen = malloc(sizeof(int32_t) * (size_t)problems);
    int32_t *outs[2] = {malloc(sizeof(int32_t) * (size_t)problems * 128), malloc(sizeof(int32_t) * (size_t)problems * 128)};
    int *nout[2] = {calloc((size_t)problems, sizeof(int)), calloc((size_t)problems, sizeof(int))};
    if (!s[0] || !s[1] || !prompts || !plen || !outs[0] || !outs[1] || !nout[0] || !nout[1]) { rc = cli_fail("bench", fg_last_error(), NULL); goto done; }
    fg_rng r;
    fg_rng_seed(&r, 2024);
    for (int i = 0; i < problems; i++) {
        int32_t *pr = prompts + (size_t)i * FG_TASK_MAX_TOKENS;
        if (task) {
            fg_task_problem p;
            fg_task_sample(&r, 1, &p);
            fg_task_render(&p, pr, &plen[i]);
        } else {
            plen[i] = 16;
            for (int k = 0; k < 16; k++) pr[k] = (int32_t)fg_rng_below(&r, (uint64_t)c->vocab_size);
        }
    }
    int32_t stop = FG_TOK_EOS;
    double best[2] = {0, 0};
    long long tokens[2] = {0, 0};
    for (int round = 0; round < rounds && !rc; round++)
        for (int o = 0; o < 2 && !rc; o++) {
            int mode = (round + o) % 2; // 0 plain, 1 speculative
            fg_sample_opts so = {.temperature = 0, .top_p = 1, .stop_ids = &stop, .n_stop = task, .speculative = mode ? drafts : 0};
            long long n = 0;
            double t0 = fg_now();
            for (int i = 0; i < problems && !rc; i++) {
                fg_infer_reset(s[mode]);
                so.max_new_tokens = CLI_MIN(new_tokens, max_T - plen[i] - 1);
                int ng = fg_generate(s[mode], prompts + (size_t)i * FG_TASK_MAX_TOKENS, plen[i], &so, outs[mode] + (size_t)i * 128, 128, NULL, NULL);
                if (ng < 0) rc = cli_fail("bench", fg_last_error(), NULL);
                else { nout[mode][i] = ng; n += ng; }
            }
            double tps = n / (fg_now() - t0);
            if (tps > best[mode]) best[mode] = tps;
            tokens[mode] = n;
        }
    if (rc) goto done;
    int same = 1;
    for (int i = 0; i < problems; i++)
        same &= nout[0][i] == nout[1][i] && !memcmp(outs[0] + (size_t)i * 128, outs[1] + (size_t)i * 128, sizeof(int32_t) * (size_t)nout[0][i]);
    fg_spec_stats st;
    fg_infer_spec_stats(s[1], &st);
    double per_step = st.rounds ? (double)st.tokens / (double)st.rounds : 0;
    int depths = CLI_MIN(drafts, c->num_nextn_predict_layers);
    if (json) {
        printf("{\"speculative\": %d, \"mtp_depths\": %d, \"prompts\": \"%s\", \"problems\": %d, \"tokens\": %lld, "
               "\"plain_tok_s\": %.1f, \"speculative_tok_s\": %.1f, \"speedup\": %.3f, \"tokens_per_step\": %.4f, "
               "\"identical\": %s, \"acceptance\": [", drafts, c->num_nextn_predict_layers, task ? "task" : "random", problems,
               tokens[0], best[0], best[1], best[1] / best[0], per_step, same ? "true" : "false");
        for (int k = 0; k < depths; k++)
            printf("%s%.4f", k ? ", " : "", st.proposed[k] ? (double)st.accepted[k] / (double)st.proposed[k] : 0.0);
        printf("]}\n");
    } else {
        printf("self-speculative decoding, greedy, %d %s prompts (%lld tokens), best of %d alternated rounds:\n", problems,
               task ? "task" : "random", tokens[0], rounds);
        printf("  plain        %8.1f tokens/s\n  speculative  %8.1f tokens/s  (%.2fx), %.3f tokens per step, output %s\n",
               best[0], best[1], best[1] / best[0], per_step, same ? "identical" : "DIFFERENT");
        for (int k = 0; k < depths; k++)
            printf("  draft %d: accepted %.1f%% of %lld verified\n", k + 1,
                   st.proposed[k] ? 100.0 * (double)st.accepted[k] / (double)st.proposed[k] : 0.0, st.proposed[k]);
    }
    if (!same) rc = cli_fail("bench", "speculative greedy output differs from plain greedy decoding", NULL);
done:
    fg_infer_free(s[0]); fg_infer_free(s[1]);
    free(prompts); free(plen); free(outs[0]); free(outs[1]); free(nout[0]); free(nout[1]);
    return rc;
}

// Group sampling (--group G): P prompts of 16 random tokens, G completions of max_new tokens each
// (temperature 1, no stop id, so both sides produce the same tokens), sampled by fg_rl_rollout
// (each prompt prefilled once and forked, one batched step for all samples) and by fg_generate
// one sample at a time; alternated, best of 3 rounds each. GRPO's rollouts are the first kind.
static int bench_group(const fg_wstore *ws, int G, int P, int max_new, int json) {
    const fg_config *c = fg_wstore_config(ws);
    int pl = 16, S = P * G, rounds = 3, rc = 0;
    if (pl + max_new > c->max_position_embeddings) max_new = c->max_position_embeddings - pl;
    if (max_new < 1) return cli_fail("bench", "--group: the model's context is too short for 16 prompt tokens", NULL);
    int32_t *pr = malloc(sizeof(int32_t) * (size_t)P * pl), *out = malloc(sizeof(int32_t) * (size_t)S * max_new);
    int *plen = malloc(sizeof(int) * (size_t)P), *olen = malloc(sizeof(int) * (size_t)S);
    fg_infer *s = fg_infer_create_store(ws, pl + max_new, FG_KV_AUTO, FG_F32);
    if (!pr || !out || !plen || !olen || !s) { rc = cli_fail("bench", s ? "out of memory" : fg_last_error(), NULL); goto done; }
    fg_rng r;
    fg_rng_seed(&r, 11);
    for (int i = 0; i < P * pl; i++) pr[i] = (int32_t)fg_rng_below(&r, (uint64_t)c->vocab_size);
    for (int p = 0; p < P; p++) plen[p] = pl;
    double best[2] = {0, 0};
    for (int round = 0; round < rounds && !rc; round++)
        for (int o = 0; o < 2 && !rc; o++) {
            int mode = (round + o) % 2; // 0: one at a time, 1: grouped
            long long n = 0;
            double t0 = fg_now();
            if (mode) {
                if (fg_rl_rollout(ws, pr, plen, P, G, max_new, 1.0f, NULL, 0, 1234 + (uint64_t)round, out, olen)) { rc = cli_fail("bench", fg_last_error(), NULL); break; }
                for (int i = 0; i < S; i++) n += olen[i];
            } else {
                for (int i = 0; i < S && !rc; i++) {
                    fg_sample_opts so = {.temperature = 1.0f, .top_p = 1, .seed = 99 + (uint64_t)i, .max_new_tokens = max_new};
                    fg_infer_reset(s);
                    int ng = fg_generate(s, pr + (size_t)(i / G) * pl, pl, &so, out, max_new, NULL, NULL);
                    if (ng < 0) rc = cli_fail("bench", fg_last_error(), NULL);
                    else n += ng;
                }
            }
            double tps = n / (fg_now() - t0);
            if (tps > best[mode]) best[mode] = tps;
        }
    if (rc) goto done;
    if (json)
        printf("{\"group\": %d, \"prompts\": %d, \"max_new\": %d, \"single_tok_s\": %.1f, \"group_tok_s\": %.1f, \"speedup\": %.3f}\n",
               G, P, max_new, best[0], best[1], best[1] / best[0]);
    else
        printf("group sampling, %d prompts x G %d, %d new tokens each (temperature 1), best of %d alternated rounds:\n"
               "  one sample at a time  %8.1f tokens/s\n  grouped (forks)       %8.1f tokens/s  (%.2fx)\n",
               P, G, max_new, rounds, best[0], best[1], best[1] / best[0]);
done:
    fg_infer_free(s);
    free(pr); free(out); free(plen); free(olen);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *config = "bench-moe", *ckpt = NULL, *prefill_s = "128,512,2048", *decode_s = "0,1024,4096", *weights_s = NULL, *kv_s = "f32";
    const char *batch_s = NULL;
    int json = 0, threads = 0, decode_tokens = 32, kind_full = 0, batch_ctx = 512, spec = 0, spec_n = 100;
    int group = 0, group_prompts = 8, group_new = 64;
    cli_opt opts[] = {
        {"config", OPT_STR, &config, "model with random weights: preset or config.json"},
        {"ckpt", OPT_STR, &ckpt, "benchmark a checkpoint or quantised model (.fgq) instead of --config"},
        {"prefill", OPT_STR, &prefill_s, "prompt lengths for prefill tokens/s (comma-separated)"},
        {"decode", OPT_STR, &decode_s, "contexts for decode tokens/s (comma-separated)"},
        {"decode-tokens", OPT_INT, &decode_tokens, "tokens timed per decode measurement", "[1,inf)"},
        {"batch", OPT_STR, &batch_s, "batched decode: aggregate tokens/s of B sequences decoded together (comma-separated, e.g. 1,4,16,64)"},
        {"batch-context", OPT_INT, &batch_ctx, "context of each sequence in the batched decode (default 512)", "[1,1048576]"},
        {"full-cache", OPT_FLAG, &kind_full, "MLA: use the expanded per-head cache instead of the latent one"},
        {"speculative", OPT_INT, &spec, "self-speculative decoding with up to N MTP drafts per step against plain decoding (greedy; a model with MTP)", "[0,4]"},
        {"spec-prompts", OPT_INT, &spec_n, "--speculative: prompts generated per round (held-out task problems for a byte-level model)", "[1,100000]"},
        {"group", OPT_INT, &group, "group sampling (GRPO rollouts): G samples per prompt, forked and batched, against one at a time", "[0,1024]"},
        {"group-prompts", OPT_INT, &group_prompts, "--group: prompts per round", "[1,4096]"},
        {"group-new", OPT_INT, &group_new, "--group: tokens generated per sample", "[1,inf)"},
        {"json", OPT_FLAG, &json, "print JSON instead of a table"},
        {"weights", OPT_STR, &weights_s, "weight format: f32 (default), bf16 or q8_0 (converted at load; a quantised model runs as stored)"},
        {"kv-type", OPT_STR, &kv_s, "KV cache values: f32, bf16 or q8_0 (32-value blocks with an fp16 scale, 1.06 bytes per value)"},
        {"threads", OPT_INT, &threads, "OpenMP threads (0 = all cores)"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("bench", "[--config NAME|PATH | --ckpt PATH] [options]", opts, argc, argv, NULL, 0, NULL);
    if (r) return r < 0 ? 1 : 0;
    cli_set_threads(threads);
    int weights = weights_s ? fg_dtype_parse(weights_s, FG_WEIGHT_TYPES, "weight type") : FG_F32;
    if (weights < 0) return cli_fail("bench", fg_last_error(), NULL);
    int kv_type = cli_kv_type("bench", kv_s);
    if (kv_type < 0) return 1;
    int pre[BENCH_MAX], dec[BENCH_MAX];
    int npre = parse_list(prefill_s, pre), ndec = parse_list(decode_s, dec), bat[BENCH_MAX], nbat = 0;
    if (batch_s && (nbat = parse_list(batch_s, bat)) < 1) return cli_fail("bench", "--batch takes up to 4 comma-separated batch sizes", "e.g. --batch 1,4,16,64");
    for (int i = 0; i < nbat; i++)
        if (bat[i] < 1 || bat[i] > 4096) return cli_fail("bench", "a --batch size is outside [1, 4096]", "e.g. --batch 1,4,16,64");
    if (nbat && (batch_ctx < 1 || batch_ctx > 1 << 20)) return cli_fail("bench", "--batch-context must be in [1, 1048576]", NULL);
    if (npre < 1 || ndec < 1) return cli_fail("bench", "--prefill and --decode take up to 4 comma-separated lengths", "e.g. --prefill 128,512");
    if (decode_tokens < 1) return cli_fail("bench", "--decode-tokens must be >= 1", NULL);
    int need = 0;
    for (int i = 0; i < npre; i++) need = pre[i] > need ? pre[i] : need;
    for (int i = 0; i < ndec; i++) need = dec[i] + decode_tokens > need ? dec[i] + decode_tokens : need;
    if (nbat && batch_ctx + decode_tokens + 1 > need) need = batch_ctx + decode_tokens + 1;
    cli_weights cw = {0};
    fg_config c;
    double open_s = 0;
    if (ckpt) {
        double t0 = fg_now();
        if (cli_open_weights("bench", ckpt, weights_s, &cw)) return 1;
        open_s = fg_now() - t0;
        c = *fg_wstore_config(cw.ws);
        if (need > c.max_position_embeddings && !spec && !group) { // --speculative and --group size their own
            int lim = c.max_position_embeddings;
            char msg[300], hint[160];
            cli_weights_close(&cw);
            for (int i = 0; i < npre; i++)
                if (pre[i] > lim) {
                    snprintf(msg, sizeof msg, "--prefill %d exceeds the checkpoint's context (max_position_embeddings %d)", pre[i], lim);
                    snprintf(hint, sizeof hint, "--prefill lengths <= %d", lim);
                    return cli_fail("bench", msg, hint);
                }
            for (int i = 0; i < ndec; i++)
                if (dec[i] + decode_tokens > lim) {
                    snprintf(msg, sizeof msg, "--decode %d needs %d + %d timed tokens = %d positions, beyond the checkpoint's context "
                             "(max_position_embeddings %d)", dec[i], dec[i], decode_tokens, dec[i] + decode_tokens, lim);
                    snprintf(hint, sizeof hint, "--decode contexts <= %d, or fewer --decode-tokens", lim - decode_tokens);
                    return cli_fail("bench", msg, hint);
                }
        }
    } else {
        if (cli_random_weights("bench", config, weights, spec ? 128 : group ? 16 + group_new : need, &cw)) return 1;
        c = *fg_wstore_config(cw.ws);
    }
    if (group) {
        int rs = bench_group(cw.ws, group, group_prompts, group_new, json);
        cli_weights_close(&cw);
        return rs;
    }
    if (spec) {
        int rs = bench_spec(cw.ws, cw.tok == NULL, spec, spec_n, kv_type, json);
        cli_weights_close(&cw);
        return rs;
    }
    int stored = fg_wstore_weights(cw.ws);
    weights_s = fg_dtype_name(stored);
    int kind = c.attn_type == FG_ATTN_MLA && !kind_full ? FG_KV_LATENT : FG_KV_FULL;
    fg_infer *s = fg_infer_create_store(cw.ws, need, kind, kv_type);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)need);
    if (!s || !tok) { free(tok); fg_infer_free(s); cli_weights_close(&cw); return cli_fail("bench", fg_last_error(), NULL); }
    fg_rng rng;
    fg_rng_seed(&rng, 7);
    for (int i = 0; i < need; i++) tok[i] = (int32_t)fg_rng_below(&rng, (uint64_t)c.vocab_size);
    fg_peaks pk;
    if (fg_peaks_get(&pk, 0)) memset(&pk, 0, sizeof pk);
    int64_t total, active;
    fg_config_param_counts(&c, &total, &active);
    // Bytes a decode step reads: every active weight once in the session's format (routed experts
    // only K of E; the embedding only one row).
    double wbytes = fg_infer_decode_weight_bytes(s);
    double kv_tok = (double)fg_infer_cache_bytes(s) / need;
    double pre_tps[BENCH_MAX], pre_gf[BENCH_MAX], dec_tps[BENCH_MAX], dec_bw[BENCH_MAX];
    // Prefill FLOPs: the cost model's forward FLOPs per token at the prompt's causal window
    // (docs/cost.md), for every token but the output head, which only the last token runs. The
    // peak is that of the kernels the weight type multiplies with: fp32 FMA for f32 weights, bf16
    // dot products for bf16 and Q8_0 (their rows are converted to bf16 panels as they are packed).
    int bf_peak = stored != FG_F32 && pk.bf16_gflops > 0;
    double peak = bf_peak ? pk.bf16_gflops : pk.fp32_gflops;
    int rc = 0;
    for (int i = 0; i < npre && !rc; i++) {
        // Warm up with the same prompt: the session packs each weight matrix at its first batched
        // product (docs/model.md, "Prefill"), which a steady-state figure should not include.
        if (pre[i] && time_prefill(s, tok, pre[i]) < 0) { rc = 1; break; }
        double best = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            double t = pre[i] ? time_prefill(s, tok, pre[i]) : 0;
            if (t < 0) { rc = 1; break; }
            best = t < best ? t : best;
        }
        pre_tps[i] = pre[i] && best > 0 ? pre[i] / best : 0;
        fg_cost_model cm;
        fg_cost_opts co = {.context = pre[i] > 0 ? pre[i] : 1, .batch = 1, .seq = 1, .devices = 1};
        double flops = 0;
        if (pre[i] && !fg_cost_model_compute(&cm, &c, &co))
            flops = pre[i] * (cm.fwd_per_token - cm.fwd[FG_COMP_HEAD]) + cm.fwd[FG_COMP_HEAD];
        pre_gf[i] = pre[i] && best > 0 ? flops / best / 1e9 : 0;
    }
    for (int i = 0; i < ndec && !rc; i++) {
        fg_infer_reset(s);
        if (dec[i] > 0 && !fg_infer_feed(s, tok, dec[i])) { rc = 1; break; }
        double t0 = fg_now();
        for (int k = 0; k < decode_tokens; k++)
            if (!fg_infer_feed(s, &tok[dec[i] + k], 1)) { rc = 1; break; }
        double dt = fg_now() - t0;
        dec_tps[i] = decode_tokens / dt;
        double avg_ctx = dec[i] + decode_tokens / 2.0;
        dec_bw[i] = (wbytes + kv_tok * avg_ctx) * dec_tps[i] / 1e9;
    }
    double bat_tps[BENCH_MAX], bat_x[BENCH_MAX];
    if (nbat && !rc && time_batches(cw.ws, kind, kv_type, bat, nbat, batch_ctx, decode_tokens, tok, need, bat_tps, bat_x)) rc = 1;
    if (rc) {
        free(tok); fg_infer_free(s); cli_weights_close(&cw);
        return cli_fail("bench", fg_last_error(), NULL);
    }
    const char *name = ckpt ? ckpt : config;
    long hwm, anon, file;
    rss_kb(&hwm, &anon, &file);
    double expanded = c.attn_type == FG_ATTN_MLA
        ? (kv_type == FG_Q8_0 ? 34.0 / 32 : kv_type == FG_BF16 ? 2.0 : 4.0) * c.num_hidden_layers * c.num_attention_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim) : kv_tok;
    if (json) {
        printf("{\"model\": \"%s\", \"params_total\": %lld, \"params_active\": %lld, \"threads\": %d, "
               "\"weights\": \"%s\", \"kv_cache\": \"%s\", \"kv_type\": \"%s\", \"kv_bytes_per_token\": %.0f, \"kv_bytes_per_token_expanded\": %.0f, "
               "\"weight_bytes_per_decode_token\": %.0f, \"machine_mem_gbs\": %.3f, \"matmul_peak_gflops\": %.2f, \"open_s\": %.3f, "
               "\"weights_in_memory_bytes\": %zu, \"rss_peak_kb\": %ld, \"rss_anon_kb\": %ld, \"rss_file_kb\": %ld, \"prefill\": [",
               name, (long long)total, (long long)active, pk.threads, weights_s, kind == FG_KV_LATENT ? "latent" : "full", kv_s, kv_tok,
               expanded, wbytes, pk.mem_gbs, peak, open_s, fg_wstore_owned_bytes(cw.ws), hwm, anon, file);
        for (int i = 0; i < npre; i++)
            printf("%s{\"prompt\": %d, \"tok_per_s\": %.2f, \"gflops\": %.2f, \"fraction_of_matmul_peak\": %.4f}", i ? ", " : "",
                   pre[i], pre_tps[i], pre_gf[i], peak > 0 ? pre_gf[i] / peak : 0);
        printf("], \"decode\": [");
        for (int i = 0; i < ndec; i++)
            printf("%s{\"context\": %d, \"tok_per_s\": %.2f, \"gb_per_s\": %.3f, \"fraction_of_bandwidth\": %.4f}", i ? ", " : "",
                   dec[i], dec_tps[i], dec_bw[i], pk.mem_gbs > 0 ? dec_bw[i] / pk.mem_gbs : 0);
        printf("], \"batch\": [");
        for (int i = 0; i < nbat; i++)
            printf("%s{\"batch\": %d, \"context\": %d, \"tok_per_s\": %.2f, \"x_batch1\": %.3f}", i ? ", " : "", bat[i],
                   batch_ctx, bat_tps[i], bat[0] == 1 ? bat_x[i] : 0);
        printf("]}\n");
    } else {
        printf("frugal bench: %s, %.1fM parameters (%.1fM active), %s weights, %d threads\n", name, total / 1e6,
               active / 1e6, weights_s, pk.threads);
        printf("KV cache (%s, %s): %.0f bytes per token", kind == FG_KV_LATENT ? "MLA latent" : "full", kv_s, kv_tok);
        if (kind == FG_KV_LATENT) printf(" (expanded multi-head cache: %.0f, %.1fx larger)", expanded, expanded / kv_tok);
        printf("\nmachine: streaming read bandwidth %.1f GB/s (measured by frugal)\n", pk.mem_gbs);
        if (ckpt) printf("weights opened in %.2f s; %.1f MiB of them held in memory (the rest read in place)\n", open_s,
                         fg_wstore_owned_bytes(cw.ws) / 1048576.0);
        printf("\n");
        printf("  %-24s %12s %12s %14s\n", "prefill", "tokens/s", "GFLOP/s", "of peak");
        for (int i = 0; i < npre; i++)
            printf("  prompt %-17d %12.1f %12.1f %13.1f%%\n", pre[i], pre_tps[i], pre_gf[i], peak > 0 ? 100 * pre_gf[i] / peak : 0);
        printf("\n  %-24s %12s %12s %14s\n", "decode", "tokens/s", "GB/s read", "of bandwidth");
        for (int i = 0; i < ndec; i++)
            printf("  context %-16d %12.1f %12.2f %13.1f%%\n", dec[i], dec_tps[i], dec_bw[i],
                   pk.mem_gbs > 0 ? 100 * dec_bw[i] / pk.mem_gbs : 0);
        if (nbat) {
            printf("\n  %-24s %12s %12s\n", "batched decode", "tokens/s", "x batch 1");
            for (int i = 0; i < nbat; i++) {
                printf("  batch %-4d context %-7d %12.1f", bat[i], batch_ctx, bat_tps[i]);
                if (bat[0] == 1) printf(" %11.2fx", bat_x[i]);
                printf("\n");
            }
        }
        printf("\n(prefill GFLOP/s: forward FLOPs per token at the prompt's causal window (docs/cost.md), over this\n"
               " machine's measured %s peak, %.1f GFLOP/s: the kernels %s weights multiply with)\n",
               bf_peak ? "bf16 dot-product" : "fp32 FMA", peak, weights_s);
        printf("(bytes read per decode token = active weights as stored (%.1f MB) + KV cache up to the context)\n", wbytes / 1e6);
        if (hwm) printf("resident: peak %.2f GB; now %.2f GB anonymous (cache, scratch, weights held in memory) + %.2f GB of "
                        "mapped file pages (dropped and re-read by the kernel as needed)\n", hwm / 1e6, anon / 1e6, file / 1e6);
    }
    free(tok);
    fg_infer_free(s);
    cli_weights_close(&cw);
    return 0;
}
