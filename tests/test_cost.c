// test_cost.c: src/cost: parameter counts of the presets against their model cards, the analytic
// forward FLOPs against multiply-adds counted inside frugal's own forward pass (exact), DeepSeek's
// 250 GFLOP/token, SI numbers, the accelerator table and its JSON overrides, the ledger's MFU on a
// synthetic run of known work, and a real run's ledger accumulating across a resume.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cost/cost.h"
#include "formats/checkpoint.h"
#include "model/model.h"
#include "test.h"
#include "train/train.h"

static double rel(double a, double b) { return fabs(a - b) / fabs(b); }

static void check_params(const char *name, double total, double active, double tol_t, double tol_a) {
    fg_config c;
    int mtp;
    CHECK_MSG(fg_cost_config(&c, &mtp, name, NULL) == 0, "%s: %s", name, fg_last_error());
    fg_cost_opts o = {mtp, 4096, 1, 4096, FG_BF16, 1};
    fg_cost_model r;
    CHECK(fg_cost_model_compute(&r, &c, &o) == 0);
    CHECK_MSG(rel(r.total, total) < tol_t, "%s total %.4g vs %.4g", name, r.total, total);
    // DeepSeek's model cards count activated parameters without the embedding lookup (V2-Lite:
    // 2.45B without, 2.66B with; "2.4B"); Llama's totals count everything.
    double act = strncmp(name, "deepseek", 8) ? r.total_active : r.total_active - r.params[FG_COMP_EMBED];
    CHECK_MSG(rel(act, active) < tol_a, "%s active %.4g vs %.4g", name, act, active);
    int64_t t, a;
    fg_config_param_counts(&c, &t, &a);
    CHECK_MSG(r.total == (double)t && r.total_active == (double)a, "%s: components do not add up to fg_config_param_counts", name);
}

// 2 x MACs counted in matmul_forward + attention_forward == analytic forward FLOPs x B*T.
static void check_flops(const fg_config *c, const char *what) {
    int B = 2, T = 16;
    fg_model *m = fg_model_create(c);
    CHECK_MSG(m != NULL, "%s: %s", what, fg_last_error());
    if (!m) return;
    fg_model_init_weights(m, 3);
    int32_t in[32], tg[32];
    for (int i = 0; i < B * T; i++) { in[i] = (i * 7 + 3) % c->vocab_size; tg[i] = (i * 5 + 1) % c->vocab_size; }
    fg_ops_macs = 0;
    fg_ops_count_macs = 1;
    CHECK(fg_model_forward(m, in, tg, B, T, NULL) == 0);
    fg_ops_count_macs = 0;
    fg_cost_opts o = {0, T, 1, T, FG_F32, 1};
    fg_cost_model r;
    CHECK(fg_cost_model_compute(&r, c, &o) == 0);
    double want = r.fwd_per_token * B * T, got = 2.0 * (double)fg_ops_macs;
    CHECK_MSG(fabs(want - got) < 0.5, "%s: analytic %.17g vs counted %.17g FLOPs", what, want, got);
    fg_model_free(m);
}

int main(void) {
    char dir[] = "/tmp/fg_cost_XXXXXX";
    CHECK(mkdtemp(dir));
    setenv("FRUGAL_CACHE_DIR", dir, 1); // never the user's cache

    // --- parameters against model cards -------------------------------------------------------
    check_params("deepseek-v3", 671e9, 37e9, 0.002, 0.03);    // V3 card: 671B total, 37B activated
    check_params("deepseek-v2", 236e9, 21e9, 0.005, 0.03);    // V2: 236B / 21B
    check_params("deepseek-v2-lite", 15.7e9, 2.4e9, 0.01, 0.03);   // V2-Lite: 15.7B / 2.4B
    check_params("llama3-8b", 8.03e9, 8.03e9, 0.01, 0.01);    // Llama 3 8B: 8.03B
    check_params("llama3-405b", 405.85e9, 405.85e9, 0.01, 0.01); // Llama 3.1 405B: 405.85B
    {   // V3 FLOPs and MTP: 250 GFLOP/token (DeepSeek), checkpoint 685B with the 14B MTP module
        fg_config c;
        int mtp;
        CHECK(fg_cost_config(&c, &mtp, "deepseek-v3", NULL) == 0 && mtp == 1);
        fg_cost_opts o = {mtp, 4096, 1, 4096, FG_BF16, 2048};
        fg_cost_model r;
        CHECK(fg_cost_model_compute(&r, &c, &o) == 0);
        CHECK_MSG(rel(r.train_per_token, 250e9) < 0.03, "V3 %.4g FLOP/token", r.train_per_token);
        CHECK_MSG(rel(r.total + r.params[FG_COMP_MTP], 685e9) < 0.005, "V3 + MTP %.4g", r.total + r.params[FG_COMP_MTP]);
        CHECK(r.kv_bytes_per_token == 61 * 576 * 2 && r.kv_mha_bytes_per_token == 61 * 40960.0 * 2);
        double sum = 0;
        for (int i = 0; i < FG_COMP_N; i++) sum += i == FG_COMP_MTP ? 0 : r.fwd[i];
        CHECK(fabs(sum - r.fwd_per_token) < 1);
        // back-solved MFU reproduces the published hours
        const fg_cost_published *p = fg_cost_published_find("deepseek-v3");
        const fg_accel *h800 = fg_accel_find("h800");
        CHECK(p && h800);
        if (p && h800) {
            double mfu = p->tokens * r.train_per_token / (p->hours * 3600 * fg_accel_peak(h800, FG_BF16));
            CHECK_MSG(mfu > 0.3 && mfu < 0.5, "V3 MFU %.3f", mfu);
            CHECK(fabs(p->hours + p->extra_hours[0] + p->extra_hours[1] - 2.788e6) < 1);
            CHECK(fabs(p->hours * p->price_hr - 5.328e6) < 1);
        }
        CHECK(fg_cost_model_compute(&r, &c, &(fg_cost_opts){0, 0, 1, 1, 0, 1}) == -1);
    }

    // --- FLOPs against counted multiply-adds ----------------------------------------------------
    {
        fg_config c;
        CHECK(fg_config_preset(&c, "tiny") == 0); // MLA with q compression + MoE (sigmoid, groups) + a dense layer
        check_flops(&c, "tiny MLA+MoE");
        static const char gqa[] = "{\"attention_type\": \"gqa\", \"vocab_size\": 300, \"hidden_size\": 32, "
            "\"num_hidden_layers\": 2, \"intermediate_size\": 48, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
            "\"head_dim\": 8, \"attention_bias\": true, \"max_position_embeddings\": 64, \"rope_interleave\": false}";
        CHECK_MSG(fg_config_from_json(&c, gqa, sizeof gqa - 1, "gqa", NULL) == 0, "%s", fg_last_error());
        check_flops(&c, "tiny GQA");
        static const char mla[] = "{\"vocab_size\": 280, \"hidden_size\": 24, \"num_hidden_layers\": 3, "
            "\"first_k_dense_replace\": 1, \"intermediate_size\": 40, \"moe_intermediate_size\": 12, \"num_attention_heads\": 3, "
            "\"q_lora_rank\": null, \"kv_lora_rank\": 8, \"qk_nope_head_dim\": 4, \"qk_rope_head_dim\": 4, \"v_head_dim\": 6, "
            "\"n_routed_experts\": 6, \"n_shared_experts\": 2, \"num_experts_per_tok\": 3, \"max_position_embeddings\": 64}";
        CHECK_MSG(fg_config_from_json(&c, mla, sizeof mla - 1, "mla", NULL) == 0, "%s", fg_last_error());
        check_flops(&c, "tiny MLA (no q compression) + MoE softmax");
    }

    // --- SI numbers -------------------------------------------------------------------------------
    {
        double v;
        CHECK(fg_si_parse("14.8T", &v) == 0 && rel(v, 14.8e12) < 1e-15);
        CHECK(fg_si_parse("250G", &v) == 0 && v == 250e9);
        CHECK(fg_si_parse("37B", &v) == 0 && v == 37e9);
        CHECK(fg_si_parse("1.5K", &v) == 0 && v == 1500);
        CHECK(fg_si_parse("2M", &v) == 0 && v == 2e6);
        CHECK(fg_si_parse("2e9", &v) == 0 && v == 2e9);
        CHECK(fg_si_parse("4096", &v) == 0 && v == 4096);
        CHECK(fg_si_parse("14.8X", &v) == -1 && strstr(fg_last_error(), "14.8X"));
        CHECK(fg_si_parse("", &v) == -1 && fg_si_parse("T", &v) == -1 && fg_si_parse("1TT", &v) == -1);
        CHECK(fg_si_parse("nan", &v) == -1 && fg_si_parse("1e400", &v) == -1);
        char b[32];
        CHECK(!strcmp(fg_si_format(b, sizeof b, 671.026e9, 1), "671.0B"));
        CHECK(!strcmp(fg_si_format(b, sizeof b, 250.457e9, 0), "250.5G"));
        CHECK(!strcmp(fg_si_format(b, sizeof b, 2.664e6, 0), "2.664M"));
        CHECK(!strcmp(fg_si_format(b, sizeof b, 37.55e9, 1), "37.55B"));
        CHECK(!strcmp(fg_si_format(b, sizeof b, 1500, 0), "1.500K"));
        CHECK(!strcmp(fg_si_format(b, sizeof b, 980, 0), "980"));
        CHECK(!strcmp(fg_si_format(b, sizeof b, 14.8e12, 0), "14.80T"));
        CHECK(fg_dtype_parse("bf16", FG_PRECISIONS, "precision") == FG_BF16 && fg_dtype_parse("fp4", FG_PRECISIONS, "precision") == -1);
    }

    // --- accelerators -----------------------------------------------------------------------------
    {
        static const char *const need[] = {"h800", "H100-SXM", "h200", "a100", "b200", "mi300x", "ascend-910b"};
        for (int i = 0; i < 7; i++) {
            const fg_accel *a = fg_accel_find(need[i]);
            CHECK_MSG(a && a->bf16_tflops > 0 && a->mem_gb > 0 && a->bw_tbs > 0 && a->watts > 0 && a->price_hr > 0 && a->source[0],
                      "%s", need[i]);
        }
        CHECK(fg_accel_peak(fg_accel_find("a100"), FG_F8_E4M3) == 0);
        CHECK(fg_accel_find("h100sxm") == fg_accel_find("H100-SXM"));
        CHECK(fg_accel_find("tpu-v5") == NULL && strstr(fg_last_error(), "H800") && strstr(fg_last_error(), "MI300X"));
        char path[300];
        snprintf(path, sizeof path, "%s/acc.json", dir);
        FILE *f = fopen(path, "w");
        fputs("{\"accelerators\": [{\"name\": \"h800\", \"price_hr\": 3}, {\"name\": \"TPU-v5p\", \"bf16_tflops\": 459, "
              "\"fp8_tflops\": 0, \"mem_gb\": 95, \"bw_tbs\": 2.765, \"watts\": 0, \"price_hr\": 4.2, \"source\": \"test\"}]}", f);
        fclose(f);
        CHECK_MSG(fg_accel_load(path) == 0, "%s", fg_last_error());
        CHECK(fg_accel_find("h800")->price_hr == 3 && fg_accel_find("h800")->bf16_tflops == 989.5);
        CHECK(fg_accel_find("tpu-v5p") && fg_accel_find("tpu-v5p")->bf16_tflops == 459);
        f = fopen(path, "w");
        fputs("[{\"name\": \"x\", \"fp8_tflops\": 1}]", f);
        fclose(f);
        CHECK(fg_accel_load(path) == -1 && strstr(fg_last_error(), "bf16_tflops"));
        f = fopen(path, "w");
        fputs("[{\"name\": \"h800\", \"bf16_tflops\": -1}]", f);
        fclose(f);
        CHECK(fg_accel_load(path) == -1 && fg_accel_find("h800")->bf16_tflops == 989.5);
    }

    // --- bad models ---------------------------------------------------------------------------------
    {
        fg_config c;
        int mtp;
        CHECK(fg_cost_config(&c, &mtp, "deepseek-v4", NULL) == -1 && strstr(fg_last_error(), "deepseek-v3"));
        char path[300];
        snprintf(path, sizeof path, "%s/bad.json", dir);
        FILE *f = fopen(path, "w");
        fputs("{\"hidden_size\": 64, \"num_hidden_layers\": 2}", f);
        fclose(f);
        CHECK(fg_cost_config(&c, &mtp, path, NULL) == -1 && strstr(fg_last_error(), "vocab_size"));
    }

    // --- ledger: MFU of a synthetic run of known work ---------------------------------------------
    {
        fg_config c;
        fg_config_preset(&c, "tiny");
        fg_peaks pk;
        memset(&pk, 0, sizeof pk);
        strcpy(pk.cpu, "synthetic");
        pk.threads = 1; pk.fp32_gflops = 100; pk.mem_gbs = 10;
        fg_ledger_info li;
        memset(&li, 0, sizeof li);
        li.tokens = 1e6; li.steps = 10; li.seq = 64; li.segments = 1;
        li.train_flops = 5e11; li.eval_flops = 1e11; li.flops_per_token = 5e5;
        li.wall_s = 10; li.cpu_s = 19;
        li.best_val_loss = NAN; li.best_val_step = NAN; li.task_accuracy = NAN;
        CHECK_MSG(fg_ledger_write(dir, &li, &c, &pk, 0) == 0, "%s", fg_last_error());
        CHECK(fabs(li.mfu - 0.6) < 1e-12); // 6e11 FLOPs / (10 s x 100 GFLOP/s)
        fg_ledger_info back;
        CHECK_MSG(fg_ledger_read(dir, &back) == 0, "%s", fg_last_error());
        CHECK(fabs(back.mfu - 0.6) < 1e-5 && back.tokens == 1e6 && back.train_flops == 5e11 && isnan(back.best_val_loss));
        CHECK(isnan(back.task_accuracy) && back.cpu_s == 19);
    }

    // --- ledger of a real run, accumulated across a resume ----------------------------------------
    {
        char run[300];
        snprintf(run, sizeof run, "%s/run", dir);
        fg_config c;
        fg_config_preset(&c, "tiny");
        fg_model *m = fg_model_create(&c);
        fg_model_init_weights(m, 1);
        fg_adamw opt;
        fg_adamw_init_for(&opt, m);
        fg_train_state st;
        fg_train_state_init(&st, 1);
        fg_train_opts o;
        fg_train_opts_default(&o);
        o.batch = 2; o.seq = 70; o.steps = 4; o.stop_after = 2; o.eval_every = 2; o.eval_batches = 1;
        o.out_dir = run; o.progress = 0; o.quiet = 1;
        CHECK_MSG(fg_train(m, &opt, &st, &o) == 0, "%s", fg_last_error());
        fg_ledger_info a, b;
        CHECK_MSG(fg_ledger_read(run, &a) == 0, "%s", fg_last_error());
        fg_cost_model cm;
        CHECK(fg_cost_model_compute(&cm, &c, &(fg_cost_opts){0, 70, 1, 70, FG_F32, 1}) == 0);
        CHECK(a.tokens == 2 * 2 * 70 && a.steps == 2 && a.segments == 1);
        CHECK(rel(a.train_flops, a.tokens * cm.train_per_token) < 1e-12);
        CHECK(rel(a.eval_flops, 1 * 2 * 70 * cm.fwd_per_token) < 1e-12); // one validation at step 2
        CHECK(a.wall_s > 0 && a.cpu_s > 0 && a.fp32_gflops > 0 && !isnan(a.best_val_loss));
        CHECK(rel(a.mfu, (a.train_flops + a.eval_flops) / (a.wall_s * a.fp32_gflops * 1e9)) < 1e-4);
        o.stop_after = 0;
        CHECK_MSG(fg_train(m, &opt, &st, &o) == 0, "%s", fg_last_error()); // resume in process: st->step == 2
        CHECK_MSG(fg_ledger_read(run, &b) == 0, "%s", fg_last_error());
        CHECK(b.tokens == 4 * 2 * 70 && b.steps == 4 && b.segments == 2);
        CHECK(b.wall_s > a.wall_s && b.cpu_s >= a.cpu_s);
        CHECK(rel(b.eval_flops, 2 * 2 * 70 * cm.fwd_per_token) < 1e-12);
        double tok, step;
        CHECK(fg_ledger_reach(run, 1e9, &tok, &step) == 1 && step == 2 && tok == 2 * 2 * 70);
        CHECK(fg_ledger_reach(run, 0, &tok, &step) == 0);
        fg_adamw_free(&opt);
        fg_model_free(m);
        fg_train_state_free(&st);
    }
    // --- peaks are cached ------------------------------------------------------------------------
    {
        fg_peaks p;
        CHECK(fg_peaks_get(&p, 0) == 0 && p.cached && p.fp32_gflops > 0 && p.mem_gbs > 0);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    return TEST_DONE();
}
