// frugal.h: the public API of the frugal engine (the CLI and tests see only this header).
//
// frugal trains and runs DeepSeek-style models: Multi-head Latent Attention (MLA) or grouped-query
// attention (GQA) for dense baselines, DeepSeekMoE feed-forward layers (fine-grained routed experts
// plus shared experts, aux-loss-free balancing). The exact math is in docs/model.md.
//
// Shapes use one alphabet (docs/model.md): B batch, T time, N = B*T tokens, C model dim, V vocab,
// L layers, H heads, Hkv key/value heads, Dn nope head dim, Dr rope dim, Dv value head dim,
// Dh GQA head dim, Rq q-LoRA rank, Rkv kv-LoRA rank, E routed experts, K experts per token,
// F dense FFN width, Fe expert width, Fs shared-expert width (n_shared * Fe).
//
// Errors: functions return 0 / non-NULL on success and -1 / NULL on failure; fg_last_error()
// then returns a one-line reason (thread-local). The library never exits.
#ifndef FRUGAL_H
#define FRUGAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FG_VERSION "0.1.0"

const char *fg_last_error(void);

// ---- config --------------------------------------------------------------------------------
enum { FG_ATTN_MLA = 0, FG_ATTN_GQA = 1 };
enum { FG_SCORE_SOFTMAX = 0, FG_SCORE_SIGMOID = 1 };
enum { FG_TOPK_GREEDY = 0, FG_TOPK_GROUP_LIMITED_GREEDY = 1, FG_TOPK_NOAUX_TC = 2 };

// Hyperparameters. Field names follow Hugging Face config.json (DeepSeek-V2/V3, Qwen2/Llama).
typedef struct fg_config {
    int vocab_size;               // V
    int hidden_size;              // C
    int num_hidden_layers;        // L
    int intermediate_size;        // F (dense FFN)
    int moe_intermediate_size;    // Fe
    int first_k_dense_replace;    // layers [0, k) use the dense FFN
    int moe_layer_freq;           // layer l >= k is MoE when (l % freq) == 0
    int num_attention_heads;      // H
    int num_key_value_heads;      // Hkv (GQA only; MLA ignores it)
    int attn_type;                // FG_ATTN_MLA | FG_ATTN_GQA  (json "attention_type": "mla"|"gqa")
    int q_lora_rank;              // Rq; 0 means null (no q compression)
    int kv_lora_rank;             // Rkv
    int qk_nope_head_dim;         // Dn
    int qk_rope_head_dim;         // Dr
    int v_head_dim;               // Dv
    int head_dim;                 // Dh (GQA; default C/H)
    int attention_bias;           // GQA q/k/v biases (Qwen2)
    int n_routed_experts;         // E (0: every FFN is dense)
    int n_shared_experts;
    int num_experts_per_tok;      // K
    int scoring_func;             // FG_SCORE_*
    int topk_method;              // FG_TOPK_*
    int n_group, topk_group;
    int norm_topk_prob;
    float routed_scaling_factor;
    float rms_norm_eps;
    float rope_theta;
    int max_position_embeddings;
    int rope_interleave;          // 1: DeepSeek interleaved pairs; 0: HF rotate-half
    // rope_scaling {type: "yarn", ...}; rope_yarn = 0 means null
    int rope_yarn;
    float rope_factor;
    int rope_original_max_position_embeddings;
    float rope_beta_fast, rope_beta_slow, rope_mscale, rope_mscale_all_dim;
    int tie_word_embeddings;
} fg_config;

// Fills *c with a named preset: "tiny", "demo", "bench-moe". Returns -1 for an unknown name.
int fg_config_preset(fg_config *c, const char *name);
// Parses a Hugging Face style config.json text. Unknown fields are reported through warn (may be
// NULL) one per call. Then validates (fg_config_validate). `where` names the source in errors.
int fg_config_from_json(fg_config *c, const char *json, size_t len, const char *where,
                        void (*warn)(const char *msg));
int fg_config_load(fg_config *c, const char *path, void (*warn)(const char *msg));
// Checks every field and every cross-field constraint; the error names the field.
int fg_config_validate(const fg_config *c);
// Writes the config as JSON (HF names); returns malloc'd text, caller frees.
char *fg_config_to_json(const fg_config *c);
// Parameter counts: total and active per token (experts counted K of E).
void fg_config_param_counts(const fg_config *c, int64_t *total, int64_t *active);
static inline int fg_config_is_moe_layer(const fg_config *c, int l) {
    return c->n_routed_experts > 0 && l >= c->first_k_dense_replace &&
           (c->moe_layer_freq <= 1 || l % c->moe_layer_freq == 0);
}

// ---- model ---------------------------------------------------------------------------------
typedef struct fg_model fg_model;
// Allocates a model for c (validated first; weights zeroed). Free with fg_model_free.
fg_model *fg_model_create(const fg_config *c);
void fg_model_free(fg_model *m);

#ifdef __cplusplus
}
#endif
#endif
