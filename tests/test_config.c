// test_config.c: presets, config.json parsing (HF field names), and rejection of inconsistent or
// impossible configs with the offending field named in the error.
#include <string.h>

#include "formats/json.h"
#include "model/model.h"
#include "test.h"

static int n_warn;
static char last_warn[256];
static void warn_cb(const char *m) { n_warn++; snprintf(last_warn, sizeof last_warn, "%s", m); }

static const char *BASE =
    "{\"vocab_size\":512,\"hidden_size\":64,\"intermediate_size\":128,\"moe_intermediate_size\":32,"
    "\"num_hidden_layers\":3,\"first_k_dense_replace\":1,\"num_attention_heads\":4,\"q_lora_rank\":null,"
    "\"kv_lora_rank\":32,\"qk_nope_head_dim\":16,\"qk_rope_head_dim\":8,\"v_head_dim\":16,"
    "\"n_routed_experts\":16,\"n_shared_experts\":2,\"num_experts_per_tok\":6,\"scoring_func\":\"softmax\","
    "\"topk_method\":\"greedy\",\"n_group\":1,\"topk_group\":1,\"norm_topk_prob\":false,"
    "\"routed_scaling_factor\":1.0,\"max_position_embeddings\":64%s}";

// Parses BASE with `extra` appended (",\"field\":value") and expects failure mentioning `field`.
static void expect_reject(const char *extra, const char *field) {
    char buf[2048];
    snprintf(buf, sizeof buf, BASE, extra);
    fg_config c;
    int rc = fg_config_from_json(&c, buf, strlen(buf), "cfg.json", NULL);
    CHECK_MSG(rc != 0, "accepted %s", extra);
    if (rc) CHECK_MSG(strstr(fg_last_error(), field) != NULL, "error for %s does not name %s: %s", extra, field, fg_last_error());
}

int main(void) {
    fg_config c;
    int64_t total, active;
    // bench-moe: the performance issue's exact shape, ~59.8M total and ~26.8M active parameters.
    CHECK(fg_config_preset(&c, "bench-moe") == 0);
    fg_config_param_counts(&c, &total, &active);
    CHECK_MSG(total > 59.75e6 && total < 59.85e6, "bench-moe total %lld", (long long)total);
    CHECK_MSG(active > 26.75e6 && active < 26.85e6, "bench-moe active %lld", (long long)active);
    CHECK(c.vocab_size == 4096 && c.hidden_size == 512 && c.num_hidden_layers == 8 && c.q_lora_rank == 256 &&
          c.kv_lora_rank == 128 && c.n_routed_experts == 16 && c.num_experts_per_tok == 4 && c.max_position_embeddings == 512);
    // the table agrees with the count
    fg_model *m = fg_model_create(&c);
    CHECK(m != NULL);
    if (m) {
        size_t trained = 0;
        for (int i = 0; i < m->n_tensors; i++) if (!(m->tensors[i].flags & FG_TENSOR_BUFFER)) trained += m->tensors[i].numel;
        CHECK_MSG((int64_t)trained == total, "table %zu vs count %lld", trained, (long long)total);
        fg_model_free(m);
    }
    CHECK(fg_config_preset(&c, "tiny") == 0 && fg_config_preset(&c, "demo") == 0);
    CHECK(fg_config_preset(&c, "nope") != 0 && strstr(fg_last_error(), "nope"));

    // A good config parses; unknown fields warn; q_lora_rank null means no compression.
    char buf[2048];
    snprintf(buf, sizeof buf, BASE, ",\"frobnicate\":3");
    n_warn = 0;
    CHECK(fg_config_from_json(&c, buf, strlen(buf), "cfg.json", warn_cb) == 0);
    CHECK(n_warn == 1 && strstr(last_warn, "frobnicate"));
    CHECK(c.q_lora_rank == 0 && c.attn_type == FG_ATTN_MLA && c.rope_interleave == 1 && c.n_shared_experts == 2);
    // Round trip through fg_config_to_json.
    char *json = fg_config_to_json(&c);
    fg_config c2;
    CHECK(fg_config_from_json(&c2, json, strlen(json), "roundtrip", warn_cb) == 0);
    CHECK(memcmp(&c, &c2, sizeof c) == 0);
    free(json);
    // YaRN and GQA conventions.
    snprintf(buf, sizeof buf, BASE, ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":40,\"original_max_position_embeddings\":16,"
             "\"beta_fast\":32,\"beta_slow\":1,\"mscale\":0.707,\"mscale_all_dim\":0.707}");
    CHECK(fg_config_from_json(&c, buf, strlen(buf), "cfg.json", NULL) == 0 && c.rope_yarn && fabsf(c.rope_mscale_all_dim - 0.707f) < 1e-6);
    snprintf(buf, sizeof buf, BASE, ",\"model_type\":\"qwen2\",\"num_key_value_heads\":2,\"attention_bias\":true,\"n_routed_experts\":0");
    CHECK(fg_config_from_json(&c, buf, strlen(buf), "cfg.json", NULL) == 0);
    CHECK(c.attn_type == FG_ATTN_GQA && c.rope_interleave == 0 && c.num_key_value_heads == 2 && c.head_dim == 16);

    // Inconsistent or impossible configs are rejected, naming the field.
    expect_reject(",\"num_experts_per_tok\":17", "num_experts_per_tok");
    expect_reject(",\"n_group\":3", "n_group");
    expect_reject(",\"topk_method\":\"group_limited_greedy\",\"n_group\":4,\"topk_group\":5", "topk_group");
    expect_reject(",\"topk_method\":\"group_limited_greedy\",\"n_group\":8,\"topk_group\":2", "num_experts_per_tok");
    expect_reject(",\"n_group\":4", "n_group"); // greedy with groups
    expect_reject(",\"qk_rope_head_dim\":7", "qk_rope_head_dim");
    expect_reject(",\"kv_lora_rank\":0", "kv_lora_rank");
    expect_reject(",\"hidden_size\":-4", "hidden_size");
    expect_reject(",\"scoring_func\":\"relu\"", "scoring_func");
    expect_reject(",\"topk_method\":\"best\"", "topk_method");
    expect_reject(",\"vocab_size\":\"big\"", "vocab_size");
    expect_reject(",\"norm_topk_prob\":1", "norm_topk_prob");
    expect_reject(",\"hidden_act\":\"gelu\"", "hidden_act");
    expect_reject(",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}", "rope_scaling");
    expect_reject(",\"first_k_dense_replace\":9", "first_k_dense_replace");
    expect_reject(",\"attention_type\":\"gqa\",\"num_key_value_heads\":3", "num_key_value_heads");
    expect_reject(",\"num_hidden_layers\":1000000", "num_hidden_layers");
    expect_reject(",\"vocab_size\":1000000,\"hidden_size\":8192", "GiB"); // cannot fit in memory
    expect_reject(",\"routed_scaling_factor\":0", "routed_scaling_factor");
    // Malformed JSON: the error carries the position.
    CHECK(fg_config_from_json(&c, "{\"vocab_size\": 5,", 17, "bad.json", NULL) != 0 && strstr(fg_last_error(), "bad.json:1:"));
    CHECK(fg_config_from_json(&c, "[1,2]", 5, "arr.json", NULL) != 0 && strstr(fg_last_error(), "object"));
    CHECK(fg_config_load(&c, "/nonexistent/config.json", NULL) != 0 && strstr(fg_last_error(), "/nonexistent/config.json"));
    return TEST_DONE();
}
