// cmd_cost.c: `frugal cost MODEL`: parameters, FLOPs, KV cache, training memory and what a token
// budget costs on an accelerator; `frugal cost ledger RUN_DIR...`: what training runs measured;
// `frugal cost peaks`: this machine's measured peaks. Conventions: docs/cost.md.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"

static void warn_cb(const char *msg) { fprintf(stderr, "frugal: warning: %s\n", msg); }

#define SI(v) fg_si_format((char[32]){0}, 32, (v), 0)
#define SIB(v) fg_si_format((char[32]){0}, 32, (v), 1)

static int fail_err(const char *what) { return cli_fail("cost", what, NULL); }

// "auto" or an SI number > 0 (and <= max when max > 0).
static int parse_pos(const char *opt, const char *s, double max, double *out) {
    if (!strcmp(s, "auto")) return 0;
    char msg[512];
    if (fg_si_parse(s, out)) {
        snprintf(msg, sizeof msg, "--%s: %s", opt, fg_last_error());
        return fail_err(msg);
    }
    if (!(*out > 0) || (max > 0 && *out > max)) {
        if (max > 0) snprintf(msg, sizeof msg, "--%s must be in (0, %g] (got %s)", opt, max, s);
        else snprintf(msg, sizeof msg, "--%s must be > 0 (got %s)", opt, s);
        return fail_err(msg);
    }
    return 0;
}

static const char *attn_desc(const fg_config *c, char *buf, size_t cap) {
    if (c->attn_type == FG_ATTN_MLA)
        snprintf(buf, cap, "MLA (H %d, Rkv %d, Rq %d, Dn/Dr/Dv %d/%d/%d)", c->num_attention_heads, c->kv_lora_rank,
                 c->q_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim, c->v_head_dim);
    else
        snprintf(buf, cap, "GQA (H %d, Hkv %d, Dh %d)", c->num_attention_heads, c->num_key_value_heads, c->head_dim);
    return buf;
}

static int cost_ledger(int argc, char **argv);

// "2, ep 1, zero" for a distributed run's last layout; "-" for one process.
static const char *layout_text(const fg_ledger_info *li, char *buf, size_t cap) {
    if (li->ranks < 2) return "-";
    snprintf(buf, cap, "%d, ep %d%s", li->ranks, li->ep, li->zero ? ", zero" : "");
    return buf;
}
static int cost_peaks(int argc, char **argv);

int cmd_cost(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "ledger")) return cost_ledger(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "peaks")) return cost_peaks(argc - 1, argv + 1);
    const char *tokens_s = "auto", *gpu = "h800", *price_s = "auto", *mfu_s = "auto", *devices_s = "auto";
    const char *precision_s = "bf16", *accel_file = NULL, *link_s = NULL;
    int context = 4096, batch = 1, seq = 4096, json = 0, ep = 1, zero = 0;
    cli_opt opts[] = {
        {"tokens", OPT_STR, &tokens_s, "training token budget, SI suffixes (14.8T); auto: the published budget, else 20 per parameter"},
        {"gpu", OPT_STR, &gpu, "accelerator: h800, h100-sxm, h200, a100, b200, mi300x, ascend-910b (or from --accelerators)"},
        {"price", OPT_STR, &price_s, "$ per accelerator-hour; auto: the table's default"},
        {"mfu", OPT_STR, &mfu_s, "model FLOPs utilisation in (0, 1]; auto: back-solved from published hours, else 0.40"},
        {"context", OPT_INT, &context, "context T for the attention FLOPs (causal: average window (T+1)/2)", "[1,inf)"},
        {"batch", OPT_INT, &batch, "micro-batch per device (activation memory)", "[1,inf)"},
        {"seq", OPT_INT, &seq, "sequence length (activation memory)", "[1,inf)"},
        {"precision", OPT_STR, &precision_s, "bf16, fp8 or fp32: the peak used and the training memory layout"},
        {"devices", OPT_STR, &devices_s, "devices the run is spread over; auto: the published cluster, else 1"},
        {"accelerators", OPT_STR, &accel_file, "JSON file that adds or overrides accelerators (docs/cost.md)"},
        {"link", OPT_STR, &link_s, "price the communication of a step over --devices ranks on this interconnect: "
                                   "ib-400g, ib-200g, roce-100g, eth-10g, nvlink-h800, nvlink4"},
        {"ep", OPT_INT, &ep, "with --link: expert-parallel group size (routed experts split over ep ranks)", "[1,inf)"},
        {"zero", OPT_FLAG, &zero, "with --link: ZeRO-1 (AdamW state sharded, parameters all-gathered after the step)"},
        {"json", OPT_FLAG, &json, "machine-readable output"},
        {NULL, 0, NULL, NULL},
    };
    const char *pos[1];
    int np = 0;
    int r = cli_parse("cost", "MODEL [options]   |   cost ledger RUN_DIR... [--target-loss X]   |   cost peaks\n"
                      "  MODEL: deepseek-v3, deepseek-v2, deepseek-v2-lite, llama3-405b, llama3-8b, tiny, demo, demo-student, bench-moe or config.json",
                      opts, argc, argv, pos, 1, &np);
    if (r) return r < 0 ? 1 : 0;
    if (np < 1) return cli_fail("cost", "which model? (for example: frugal cost deepseek-v3)", "frugal help cost");
    if (accel_file && fg_accel_load(accel_file)) return fail_err(fg_last_error());
    fg_config c;
    int mtp;
    if (fg_cost_config(&c, &mtp, pos[0], warn_cb)) return fail_err(fg_last_error());
    const fg_accel *acc = fg_accel_find(gpu);
    if (!acc) return fail_err(fg_last_error());
    int prec = fg_dtype_parse(precision_s, FG_PRECISIONS, "precision");
    if (prec < 0) return fail_err(fg_last_error());
    if (fg_accel_peak(acc, prec) <= 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s has no %s peak in the table", acc->name, precision_s);
        return cli_fail("cost", msg, "--precision bf16, or add it with --accelerators");
    }
    double tokens = 0, price = acc->price_hr, mfu = 0, devices = 0;
    if (parse_pos("tokens", tokens_s, 0, &tokens) || parse_pos("mfu", mfu_s, 1, &mfu) ||
        parse_pos("devices", devices_s, 1e9, &devices))
        return 1;
    if (strcmp(price_s, "auto")) {
        char *end;
        price = strtod(price_s, &end);
        if (*end || end == price_s || !(price >= 0) || !isfinite(price)) {
            char msg[128];
            snprintf(msg, sizeof msg, "--price must be a number >= 0 (got '%s')", price_s);
            return fail_err(msg);
        }
    }
    if (context < 1 || batch < 1 || seq < 1) return fail_err("--context, --batch and --seq must be >= 1");
    const fg_cost_published *pub = fg_cost_published_find(pos[0]);
    if (!strcmp(devices_s, "auto")) devices = pub && pub->devices ? pub->devices : 1;
    fg_cost_opts co = {mtp, context, batch, seq, prec, (int)devices};
    fg_cost_model cm;
    if (fg_cost_model_compute(&cm, &c, &co)) return fail_err(fg_last_error());
    const char *tokens_from = "given";
    if (!strcmp(tokens_s, "auto")) {
        if (pub) tokens = pub->tokens, tokens_from = "published";
        else tokens = 20 * cm.total, tokens_from = "20 per parameter (Chinchilla)";
    }
    // MFU: given, or back-solved from the published hours on the published accelerator (at the
    // same precision's peak), else 0.40.
    const char *mfu_from = "given";
    const fg_accel *pacc = pub ? fg_accel_find(pub->accel) : NULL;
    if (!strcmp(mfu_s, "auto")) {
        if (pub && pacc) {
            mfu = pub->tokens * cm.train_per_token / (pub->hours * 3600 * fg_accel_peak(pacc, prec > 0 ? prec : FG_BF16));
            mfu_from = "back-solved";
        } else mfu = 0.40, mfu_from = "default";
    }
    double flops = tokens * cm.train_per_token, peak = fg_accel_peak(acc, prec);
    double hours = flops / (peak * mfu) / 3600, dollars = hours * price, kwh = hours * acc->watts / 1000;
    double days = hours / devices / 24;
    // Communication of one optimizer step over the ranks (fg_cost_comm; frugal train logs the
    // same counts as comm_bytes): elements are fp32 at fp32 precision, else 2 bytes.
    const fg_link *link = NULL;
    fg_comm_plan plan;
    fg_comm_cost comm = {{0}};
    double step_s = 0, steps = 0;
    if (link_s) {
        if (!(link = fg_link_find(link_s))) return cli_fail("cost", fg_last_error(), "frugal help cost lists the links");
        if ((int)devices % ep) {
            char msg[160];
            snprintf(msg, sizeof msg, "--ep %d does not divide the %.0f devices", ep, devices);
            return cli_fail("cost", msg, "--devices a multiple of --ep");
        }
        fg_comm_plan_for(&plan, &c, (int)devices, ep, zero, (double)batch * seq, prec == FG_F32 ? 4 : 2);
        fg_cost_comm(&comm, &plan, link);
        steps = tokens / ((double)batch * seq * devices);
        step_s = hours * 3600 / devices / steps; // compute seconds per step at the MFU
    } else if (ep != 1 || zero) return cli_fail("cost", "--ep and --zero describe the layout of --link's communication", "add --link ib-400g");
    char ad[160];
    attn_desc(&c, ad, sizeof ad);

    if (json) {
        printf("{\n  \"model\": \"%s\",\n  \"convention\": \"2 FLOPs per multiply-add of every matmul a token passes (active "
               "experts, router, output head; not the embedding lookup, norms, softmax); attention at the causal average "
               "window (T+1)/2; training = 3 x forward; MTP apart\",\n", pos[0]);
        printf("  \"params\": {\"total\": %.17g, \"active\": %.17g, \"mtp_stored\": %.17g, \"mtp_unique\": %.17g, \"components\": {",
               cm.total, cm.total_active, cm.params[FG_COMP_MTP], cm.mtp_unique);
        for (int i = 0; i < FG_COMP_N; i++)
            printf("%s\"%s\": [%.17g, %.17g]", i ? ", " : "", fg_cost_component_name(i), cm.params[i], cm.active[i]);
        printf("}},\n  \"flops_per_token\": {\"context\": %d, \"forward\": %.17g, \"train\": %.17g, \"components_forward\": {",
               context, cm.fwd_per_token, cm.train_per_token);
        for (int i = 0; i < FG_COMP_N; i++) printf("%s\"%s\": %.17g", i ? ", " : "", fg_cost_component_name(i), cm.fwd[i]);
        printf("}},\n  \"kv_cache\": {\"bytes_per_token\": %.17g, \"mha_bytes_per_token\": %.17g, \"at_context_batch\": %.17g},\n",
               cm.kv_bytes_per_token, cm.kv_mha_bytes_per_token, cm.kv_bytes_per_token * context * batch);
        printf("  \"train_memory_per_device\": {\"precision\": \"%s\", \"devices\": %.0f, \"weights\": %.17g, \"grads\": %.17g, "
               "\"optimizer\": %.17g, \"activations\": %.17g, \"activations_recompute\": %.17g},\n", precision_s, devices,
               cm.mem_weights, cm.mem_grads, cm.mem_optim, cm.mem_acts, cm.mem_acts_recompute);
        printf("  \"budget\": {\"tokens\": %.17g, \"tokens_from\": \"%s\", \"accelerator\": \"%s\", \"peak_flops\": %.17g, "
               "\"mfu\": %.6g, \"mfu_from\": \"%s\", \"flops\": %.17g, \"hours\": %.17g, \"devices\": %.0f, \"days\": %.6g, "
               "\"price_hr\": %.6g, \"dollars\": %.17g, \"kwh\": %.17g}", tokens, tokens_from, acc->name, peak, mfu, mfu_from,
               flops, hours, devices, days, price, dollars, kwh);
        if (link)
            printf(",\n  \"communication\": {\"link\": \"%s\", \"link_gbs\": %.6g, \"ranks\": %.0f, \"ep\": %d, \"zero\": %s, "
                   "\"elem_bytes\": %g, \"tokens_per_rank\": %.17g, \"bytes_per_step\": {\"allreduce\": %.17g, \"allgather\": %.17g, "
                   "\"alltoall\": %.17g}, \"collectives_per_step\": %d, \"seconds_per_step\": %.6g, \"compute_seconds_per_step\": %.6g, "
                   "\"hours_not_overlapped\": %.17g}", link->name, link->gbs, devices, ep, zero ? "true" : "false", plan.elem_bytes,
                   plan.tokens_per_rank, comm.bytes[0], comm.bytes[1], comm.bytes[2], comm.collectives, comm.seconds, step_s,
                   hours + comm.seconds * steps * devices / 3600);
        if (pub) {
            double tot = pub->hours + pub->extra_hours[0] + pub->extra_hours[1];
            printf(",\n  \"published\": {\"accelerator\": \"%s\", \"tokens\": %.17g, \"pretrain_hours\": %.17g, "
                   "\"total_hours\": %.17g, \"price_hr\": %.6g, \"source\": \"%s\"}", pub->accel, pub->tokens, pub->hours, tot,
                   pub->price_hr, pub->source);
        }
        printf("\n}\n");
        return 0;
    }

    printf("model %s: %d layers, C %d, V %d, %s\n", pos[0], c.num_hidden_layers, c.hidden_size, c.vocab_size, ad);
    if (c.n_routed_experts)
        printf("  DeepSeekMoE: %d routed experts (top-%d, Fe %d) + %d shared, first %d layers dense (F %d)%s\n",
               c.n_routed_experts, c.num_experts_per_tok, c.moe_intermediate_size, c.n_shared_experts, c.first_k_dense_replace,
               c.intermediate_size, mtp ? ", MTP depth 1" : "");
    else printf("  dense SwiGLU FFN (F %d)\n", c.intermediate_size);

    printf("\nparameters                        total     active/token\n");
    for (int i = 0; i < FG_COMP_N; i++) {
        if (i == FG_COMP_SDPA || i == FG_COMP_MTP || (cm.params[i] == 0 && i != FG_COMP_HEAD)) continue;
        printf("  %-28s %9s %9s%s\n", fg_cost_component_name(i), SIB(cm.params[i]), SIB(cm.active[i]),
               i == FG_COMP_HEAD && c.tie_word_embeddings ? "   (tied to the embedding)" : "");
    }
    printf("  %-28s %9s %9s   (MTP excluded; embedding counted)\n", "total", SIB(cm.total), SIB(cm.total_active));
    printf("  %-28s %9s %9s   (the DeepSeek model cards' convention for activated)\n", "active without the embedding", "",
           SIB(cm.total_active - cm.params[FG_COMP_EMBED]));
    if (mtp) {
        printf("  %-28s %9s %9s   (as stored in the HF checkpoint, with its own embedding and head copies;\n"
               "  %-28s %9s             %s unique; checkpoint total %s)\n", "MTP module", SIB(cm.params[FG_COMP_MTP]),
               SIB(cm.active[FG_COMP_MTP]), "", "", SIB(cm.mtp_unique), SIB(cm.total + cm.params[FG_COMP_MTP]));
    }

    printf("\nFLOPs per token at context %d          forward  training (3x)\n", context);
    for (int i = 0; i < FG_COMP_N; i++) {
        if (i == FG_COMP_MTP || cm.fwd[i] == 0) continue;
        printf("  %-34s %9s %9s\n", fg_cost_component_name(i), SI(cm.fwd[i]), SI(3 * cm.fwd[i]));
    }
    printf("  %-34s %9s %9s\n", "total", SI(cm.fwd_per_token), SI(cm.train_per_token));
    if (mtp) printf("  %-34s %9s %9s   (not in the total)\n", "MTP module", SI(cm.fwd[FG_COMP_MTP]), SI(3 * cm.fwd[FG_COMP_MTP]));
    printf("  convention: 2 FLOPs per multiply-add of every matmul a token passes (active experts, router, output head;\n"
           "  not the embedding lookup, norms, softmax); attention scores+values at the causal average window (T+1)/2 =\n"
           "  %.1f positions; training = 3 x forward (= 6 x matmul weights + attention)\n", (context + 1) / 2.0);
    if (!strcmp(pos[0], "deepseek-v3"))
        printf("  DeepSeek's figure: about 250 GFLOP per training token (at 4K context): frugal %s (%+.1f%%)\n",
               SI(cm.train_per_token), 100 * (cm.train_per_token / 250e9 - 1));

    double kvp = prec == FG_F32 ? 4 : 2;
    printf("\nKV cache (%s): %sB per token%s vs %sB for a full multi-head cache (%.1fx)\n", kvp == 4 ? "fp32" : "bf16",
           SI(cm.kv_bytes_per_token), c.attn_type == FG_ATTN_MLA ? " (MLA latent + rope key)" : " (GQA)",
           SI(cm.kv_mha_bytes_per_token), cm.kv_mha_bytes_per_token / cm.kv_bytes_per_token);
    printf("  at context %d x batch %d: %sB vs %sB\n", context, batch, SI(cm.kv_bytes_per_token * context * batch),
           SI(cm.kv_mha_bytes_per_token * context * batch));

    printf("\ntraining memory per device (%s, AdamW, states sharded over %.0f devices; micro-batch %d x %d):\n", precision_s,
           devices, batch, seq);
    printf("  weights %sB  gradients %sB  optimizer %sB  activations %sB (%sB with full recomputation)\n", SI(cm.mem_weights),
           SI(cm.mem_grads), SI(cm.mem_optim), SI(cm.mem_acts), SI(cm.mem_acts_recompute));
    double per_dev = cm.mem_weights + cm.mem_grads + cm.mem_optim + cm.mem_acts_recompute;
    printf("  total with recomputation %sB of %.0f GB on %s%s\n", SI(per_dev), acc->mem_gb, acc->name,
           per_dev > acc->mem_gb * 1e9 ? "  (does not fit: more devices or less batch)" : "");

    printf("\ntraining %s tokens (%s) on %s: %s peak %.1f TFLOP/s, %.0f W, $%.2f/h\n", SIB(tokens), tokens_from, acc->name,
           precision_s, peak / 1e12, acc->watts, price);
    printf("  FLOPs %.4g (%s per token)\n", flops, SI(cm.train_per_token));
    if (!strcmp(mfu_from, "back-solved"))
        printf("  MFU %.4f, back-solved from the published %s %s-hours for %s tokens (%s)\n", mfu, SI(pub->hours), pub->accel,
               SIB(pub->tokens), pub->source);
    else printf("  MFU %.4f (%s)\n", mfu, mfu_from);
    printf("  %s-hours %s   days on %.0f devices %.1f   cost $%s   energy %sWh (accelerator power only)\n", acc->name,
           SI(hours), devices, days, SI(dollars), SI(kwh * 1000));
    if (link) {
        printf("\ncommunication per optimizer step on %s (%.0f GB/s per rank, %.0f us; %s): %.0f ranks, ep %d, ZeRO-1 %s,\n"
               "  %d x %d tokens per rank, %g-byte elements\n", link->name, link->gbs, link->latency_us, link->source, devices, ep,
               zero ? "on" : "off", batch, seq, plan.elem_bytes);
        printf("  per rank: all-reduce %sB  all-gather %sB  all-to-all %sB  (%d collectives)\n", SI(comm.bytes[0]),
               SI(comm.bytes[1]), SI(comm.bytes[2]), comm.collectives);
        printf("  on the link %.4g s per step; compute %.4g s per step at MFU %.2f: communication is %.0f%% of it\n",
               comm.seconds, step_s, mfu, 100 * comm.seconds / step_s);
        printf("  %.4g steps: %s-hours %s if it overlaps the compute, %s if it does not ($%s)\n", steps, acc->name, SI(hours),
               SI(hours + comm.seconds * steps * devices / 3600), SI((hours + comm.seconds * steps * devices / 3600) * price));
    }
    if (pub) {
        double tot = pub->hours + pub->extra_hours[0] + pub->extra_hours[1];
        double pp = pub->price_hr > 0 ? pub->price_hr : price;
        printf("\npublished (%s): pre-training %s %s-hours", pub->source, SI(pub->hours), pub->accel);
        for (int k = 0; k < 2; k++)
            if (pub->extra_hours[k] > 0) printf(", %s %s", pub->extra_names[k], SI(pub->extra_hours[k]));
        printf("\n  pre-training $%s, all stages %s hours = $%s at $%.2f/h\n", SI(pub->hours * pp), SI(tot), SI(tot * pp), pp);
    }
    return 0;
}

static int cost_peaks(int argc, char **argv) {
    int remeasure = 0, threads = 0;
    cli_opt opts[] = {
        {"remeasure", OPT_FLAG, &remeasure, "ignore the cache and measure again"},
        {"threads", OPT_INT, &threads, "OpenMP threads (0 = all cores); peaks are cached per thread count"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("cost peaks", "[--remeasure]", opts, argc, argv, NULL, 0, NULL);
    if (r) return r < 0 ? 1 : 0;
    cli_set_threads(threads);
    fg_peaks p;
    if (fg_peaks_get(&p, remeasure)) return fail_err(fg_last_error());
    printf("%s, %d threads (%s)\n", p.cpu, p.threads, p.cached ? "cached" : "measured now");
    printf("  fp32 FMA        %8.1f GFLOP/s\n", p.fp32_gflops);
    if (p.bf16_gflops > 0) printf("  bf16 AVX512-BF16 %7.1f GFLOP/s\n", p.bf16_gflops);
    else printf("  bf16            not present (no AVX512-BF16)\n");
    if (p.amx_gflops > 0) printf("  bf16 AMX tiles  %8.1f GFLOP/s\n", p.amx_gflops);
    else printf("  AMX             %s\n", p.amx_present ? "present, not usable (OS support or permission)" : "not present");
    printf("  memory read     %8.1f GB/s\n", p.mem_gbs);
    return 0;
}

static int cost_ledger(int argc, char **argv) {
    double target = -1, mfu = 0.40;
    const char *gpu = "h800";
    int json = 0;
    cli_opt opts[] = {
        {"target-loss", OPT_DOUBLE, &target, "also show the cost to reach this validation loss (-1 = off)"},
        {"gpu", OPT_STR, &gpu, "accelerator for the projected hours and dollars"},
        {"mfu", OPT_DOUBLE, &mfu, "MFU of the projection", "(0,1]"},
        {"json", OPT_FLAG, &json, "machine-readable output"},
        {NULL, 0, NULL, NULL},
    };
    const char *dirs[16];
    int nd = 0;
    int r = cli_parse("cost ledger", "RUN_DIR... [--target-loss X]", opts, argc, argv, dirs, 16, &nd);
    if (r) return r < 0 ? 1 : 0;
    if (nd < 1) return cli_fail("cost ledger", "which run? (a directory written by frugal train)", "frugal cost ledger runs/demo");
    if (!(mfu > 0 && mfu <= 1)) return cli_fail("cost ledger", "--mfu must be in (0, 1]", NULL);
    const fg_accel *acc = fg_accel_find(gpu);
    if (!acc) return cli_fail("cost ledger", fg_last_error(), NULL);
    fg_ledger_info li[16];
    double rt[16], rs[16];
    int reached[16];
    for (int i = 0; i < nd; i++) {
        if (fg_ledger_read(dirs[i], &li[i])) return cli_fail("cost ledger", fg_last_error(), NULL);
        reached[i] = target >= 0 ? fg_ledger_reach(dirs[i], target, &rt[i], &rs[i]) : 0;
        if (reached[i] < 0) return cli_fail("cost ledger", fg_last_error(), NULL);
    }
    double peak = fg_accel_peak(acc, FG_BF16);
    if (json) {
        printf("[\n");
        for (int i = 0; i < nd; i++) {
            double w = li[i].train_flops + li[i].eval_flops + li[i].teacher_flops + li[i].rollout_flops + li[i].reference_flops;
            double h = w / (peak * mfu) / 3600;
            printf("  {\"run\": \"%s\", \"tokens\": %.17g, \"steps\": %.17g, \"train_flops\": %.17g, \"eval_flops\": %.17g, "
                   "\"teacher_flops\": %.17g, \"rollout_flops\": %.17g, \"reference_flops\": %.17g, \"cache_bytes\": %.17g, \"wall_s\": %.6g, \"cpu_s\": %.6g, \"mfu\": %.6g, \"best_val_loss\": %.6g, "
                   "\"projected_hours\": %.6g, \"projected_dollars\": %.6g", dirs[i], li[i].tokens, li[i].steps, li[i].train_flops,
                   li[i].eval_flops, li[i].teacher_flops, li[i].rollout_flops, li[i].reference_flops, li[i].cache_bytes, li[i].wall_s, li[i].cpu_s,
                   isnan(li[i].mfu) ? -1 : li[i].mfu, isnan(li[i].best_val_loss) ? -1 : li[i].best_val_loss, h, h * acc->price_hr);
            if (target >= 0) {
                if (reached[i]) printf(", \"reach\": {\"target_loss\": %g, \"tokens\": %.17g, \"step\": %.17g, \"flops\": %.17g}",
                                       target, rt[i], rs[i], rt[i] * li[i].flops_per_token);
                else printf(", \"reach\": null");
            }
            printf("}%s\n", i + 1 < nd ? "," : "");
        }
        printf("]\n");
        return 0;
    }
    printf("%-30s", "run");
    for (int i = 0; i < nd; i++) printf(" %16.16s", dirs[i]);
    printf("\n");
#define ROW(label, ...) do { printf("%-30s", label); for (int i = 0; i < nd; i++) { char b_[64]; snprintf(b_, sizeof b_, __VA_ARGS__); printf(" %16s", b_); } printf("\n"); } while (0)
    ROW("parameters (total/active)", "%s/%s", SIB(li[i].params_total), SIB(li[i].params_active));
    ROW("tokens", "%s", SIB(li[i].tokens));
    ROW("steps", "%.0f", li[i].steps);
    ROW("train FLOPs", "%s", SI(li[i].train_flops));
    ROW("eval FLOPs", "%s", SI(li[i].eval_flops));
    ROW("teacher FLOPs", "%s", SI(li[i].teacher_flops));
    ROW("teacher cache bytes", "%s", SI(li[i].cache_bytes));
    ROW("rollout FLOPs (rl)", "%s", SI(li[i].rollout_flops));
    ROW("reference FLOPs (rl)", "%s", SI(li[i].reference_flops));
    int any_comm = 0;
    for (int i = 0; i < nd; i++) any_comm |= li[i].ranks > 1;
    if (any_comm) { // distributed runs: rank 0's bytes per step, measured over the run, and analytic
        ROW("ranks, ep, ZeRO-1", "%s", layout_text(&li[i], (char[48]){0}, 48));
        static const char *kind[] = {"all-reduce / step (meas.)", "all-gather / step (meas.)", "all-to-all / step (meas.)"};
        for (int k = 0; k < 3; k++) {
            ROW(kind[k], "%sB", SI(li[i].steps > 0 ? li[i].comm_bytes[k] / li[i].steps : 0));
            ROW("  analytic (frugal cost)", "%sB", SI(li[i].comm_analytic_step[k]));
        }
    }
    ROW("wall time", "%.1f s", li[i].wall_s);
    ROW("CPU time", "%.1f s", li[i].cpu_s);
    ROW("fp32 peak (measured)", "%.1f GFLOP/s", li[i].fp32_gflops);
    ROW("MFU (vs fp32 peak)", isnan(li[i].mfu) ? "unknown" : "%.1f%%", 100 * li[i].mfu);
    ROW("best val loss", isnan(li[i].best_val_loss) ? "-" : "%.4f @%.0f", li[i].best_val_loss, li[i].best_val_step);
    ROW("task accuracy", isnan(li[i].task_accuracy) ? "-" : "%.1f%%", 100 * li[i].task_accuracy);
    char lab[64];
    snprintf(lab, sizeof lab, "%s-hours at MFU %.2f", acc->name, mfu);
#define ALL_FLOPS(x) ((x).train_flops + (x).eval_flops + (x).teacher_flops + (x).rollout_flops + (x).reference_flops)
    ROW(lab, "%s", SI(ALL_FLOPS(li[i]) / (peak * mfu) / 3600));
    ROW("  dollars", "$%s", SI(ALL_FLOPS(li[i]) / (peak * mfu) / 3600 * acc->price_hr));
#undef ALL_FLOPS
    if (target >= 0) {
        snprintf(lab, sizeof lab, "to reach val loss %g: tokens", target);
        ROW(lab, "%s", reached[i] ? SIB(rt[i]) : "not reached");
        ROW("  train FLOPs", "%s", reached[i] ? SI(rt[i] * li[i].flops_per_token) : "-");
        ROW("  wall time (pro rata)", reached[i] ? "%.1f s" : "-", li[i].tokens > 0 ? li[i].wall_s * rt[i] / li[i].tokens : 0);
        snprintf(lab, sizeof lab, "  %s-hours", acc->name);
        ROW(lab, "%s", reached[i] ? SI(rt[i] * li[i].flops_per_token / (peak * mfu) / 3600) : "-");
    }
#undef ROW
    return 0;
}
