// frugal.h: the public API of the frugal engine: config, tokenizers, model, optimizer, training,
// checkpoints and formats, inference contexts and batches, sampling, distillation. The tools that
// feed and measure it (token shards, the data refinery, the BPE trainer, the arithmetic task, the
// cost model and ledger) are in frugal_tools.h; the scaling-law lab in frugal_scale.h.
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
double fg_now(void); // monotonic seconds
// Appends s[0..len) as a JSON string literal (with quotes) to buf at *pos (capacity cap; writes
// stop at cap - 1, always NUL-terminated when cap > 0, but *pos advances by the full length, so
// callers can size a second try; at most 6 * len + 2 bytes). Escapes '"', '\\' and control
// characters; bytes that are not valid UTF-8 become \ufffd (src/formats/json.c).
void fg_json_append_string(char *buf, size_t cap, size_t *pos, const char *s, size_t len);

// Progress and log lines: the library prints nothing itself; what a long call (fg_train) has to
// say goes to this process-wide callback (NULL, the default: nowhere). FG_LOG_PROGRESS is a
// transient status line (a terminal overwrites it in place), FG_LOG_PROGRESS_END ends a run of
// them, FG_LOG_INFO is a line of the run's record (with its newline).
enum { FG_LOG_PROGRESS = 0, FG_LOG_PROGRESS_END = 1, FG_LOG_INFO = 2 };
typedef void (*fg_log_fn)(void *ud, int level, const char *text);
void fg_set_log(fg_log_fn fn, void *ud);

// ---- distributed runs (src/dist/comm.c, docs/distributed.md) -----------------------------------
// Built with `make MPI=1`, fg_dist_init starts MPI (call it first, with main's arguments; every
// rank of `mpirun -np N` runs the same command) and `frugal train` splits its work over the ranks.
// Built without, it is one process; a launcher that started several is an error (the hint says
// how to rebuild). fg_dist_finalize ends MPI (call it once, before exit, on every path).
int fg_dist_init(int *argc, char ***argv);
void fg_dist_finalize(void);
int fg_dist_rank(void);
int fg_dist_size(void);
const char *fg_dist_backend(void); // "mpi" or "single process"
// Ends every rank of the job now (MPI_Abort); on one process, exit(code). For the CLI only: a rank
// that fails alone must not leave the others waiting in a collective.
void fg_dist_abort(int code);

// ---- runs that survive their users (src/util.c) ------------------------------------------------
// Output targets: 0 when path may be (re)written by a save that renames a temporary file over it
// (it does not exist, or it is a regular file); -1 with an error naming the path and what it is
// (a device, a directory, a FIFO, ...) otherwise. Every writer of a named output calls it first.
int fg_output_check(const char *path);
// An exclusive lock on a run folder: flock on dir/.lock, which then holds this process's PID.
// Returns the lock's descriptor (release with fg_dir_unlock, or at exit), or -1 with an error
// naming the holder's PID when another process holds it. Stale locks of dead processes do not
// count (the kernel drops a flock with its holder).
int fg_dir_lock(const char *dir);
void fg_dir_unlock(int fd);
// Asks running training loops (fg_train and everything built on it) to stop after the current
// step, save a checkpoint and return -1 with an error that says so. Async-signal-safe: meant to be
// called from a SIGINT/SIGTERM handler. fg_train_interrupted() returns the signal (0: none).
void fg_train_interrupt(int sig);
int fg_train_interrupted(void);

// ---- element types (src/ops/dtype.c) ----------------------------------------------------------
// One enum names every element type frugal reads, stores, writes or multiplies in: weights in
// memory (FG_WEIGHT_TYPES), export types (FG_EXPORT_TYPES: GGUF takes f32, bf16, q8_0, q4_0, q4_k,
// q5_k, q6_k, and the mixtures FG_GGUF_Q4_K_M / FG_GGUF_Q5_K_M below; safetensors f32, bf16, f16),
// matrix-product precisions (FG_PRECISIONS: training's mixed precision, the cost model's peaks),
// and the tensor types of GGUF and safetensors files, which map onto it through one traits table
// (src/ops/dtype.h). The first five values are what qmodel files and older APIs stored; they never
// change, and new types are appended before FG_DTYPE_COUNT.
typedef enum {
    FG_F32 = 0, FG_BF16 = 1, FG_Q8_0 = 2, FG_F16 = 3, FG_Q4_0 = 4, FG_F8_E4M3 = 5, FG_F8_E5M2, FG_F64,
    FG_I8, FG_U8, FG_I16, FG_U16, FG_I32, FG_U32, FG_I64, FG_U64, FG_BOOL,
    FG_Q4_1, FG_Q5_0, FG_Q5_1, FG_Q4_K, FG_Q5_K, FG_Q6_K, // GGUF blocks (weight stores hold them as stored)
    FG_Q2_K, FG_Q3_K, FG_IQ4_NL,
    FG_DTYPE_COUNT
} fg_dtype;
// Weight types a checkpoint converts to (--weights, frugal quantize): matrices whose rows are not
// whole blocks fall back to Q8_0 (rows of 32) or fp32 (fg_wstore_policy).
#define FG_WEIGHT_TYPES (1u << FG_F32 | 1u << FG_BF16 | 1u << FG_Q8_0 | 1u << FG_Q4_0 | 1u << FG_Q4_K | 1u << FG_Q5_K | 1u << FG_Q6_K)
#define FG_EXPORT_TYPES (FG_WEIGHT_TYPES | 1u << FG_F16)
// What a weight store holds and multiplies as stored (GGUF files run from their mapping): the
// weight types and every other block type the GGUF reader decodes. Q8_0 and the K types with
// kernels multiply with int8 activations (ops/quant.h); the others through decoded rows.
#define FG_STORE_TYPES (FG_EXPORT_TYPES | 1u << FG_Q4_1 | 1u << FG_Q5_0 | 1u << FG_Q5_1 | 1u << FG_Q2_K | 1u << FG_Q3_K | \
                        1u << FG_IQ4_NL)
#define FG_PRECISIONS (1u << FG_F32 | 1u << FG_BF16 | 1u << FG_F8_E4M3)
// What the GGUF reader decodes: the export types plus the legacy and K-quant blocks of the files
// people download (Q4_K_M and Q5_K_M mix Q4_K / Q5_K with Q6_K, and Q5_0 / Q5_1 / Q4_1 / Q8_0
// where rows do not hold 256-value super-blocks; Q2_K / Q3_K files fall back to IQ4_NL there).
#define FG_GGUF_READ_TYPES (FG_EXPORT_TYPES | 1u << FG_Q4_1 | 1u << FG_Q5_0 | 1u << FG_Q5_1 | 1u << FG_Q2_K | \
                            1u << FG_Q3_K | 1u << FG_IQ4_NL)
// GGUF export mixtures, llama-quantize's Q4_K_M and Q5_K_M: not element types but a per-tensor
// choice (docs/formats.md "GGUF models"), passed to fg_gguf_export in place of a type. Their values
// lie above every fg_dtype; `frugal export --gguf --type q4_k_m|q5_k_m` names them.
enum { FG_GGUF_Q4_K_M = 64, FG_GGUF_Q5_K_M = 65 };
// name ("f32", "bf16", "q8_0", "f16", "q4_0", "f8_e4m3", ... or an alias: "fp32", "q8", "fp8")
// -> the type when it is in the set `allowed` (a mask of 1u << type); else -1 with "unknown
// <what> 'name' (use ...)" listing the set.
int fg_dtype_parse(const char *name, unsigned allowed, const char *what);
const char *fg_dtype_name(int t); // "f32", ...; "?" outside the enum

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
    // rope_scaling {rope_type: "llama3", factor, low_freq_factor, high_freq_factor,
    // original_max_position_embeddings} (Llama 3.1+): per-frequency rule, no attention scaling.
    // Shares rope_factor and rope_original_max_position_embeddings with YaRN; 0 means not llama3.
    int rope_llama3;
    float rope_low_freq_factor, rope_high_freq_factor;
    // Multi-token prediction (DeepSeek-V3; docs/model.md "Multi-token prediction"): D sequential
    // modules after the main model, module k stored as layer L+k-1 (its block plus enorm, hnorm,
    // eh_proj and shared_head.norm); 0 = none.
    int num_nextn_predict_layers;
} fg_config;
#define FG_MTP_MAX 4 // deepest MTP frugal builds (V3 uses 1)

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
// Parameters of the MTP blocks (num_nextn_predict_layers) besides the shared embedding and head;
// not in fg_config_param_counts, as DeepSeek counts them apart (V3: 671B + 14B with its copies).
int64_t fg_config_mtp_params(const fg_config *c);
// Blocks the weights hold: the main model's L plus one per MTP depth.
static inline int fg_config_n_blocks(const fg_config *c) { return c->num_hidden_layers + c->num_nextn_predict_layers; }
static inline int fg_config_is_moe_layer(const fg_config *c, int l) {
    return c->n_routed_experts > 0 && l >= c->first_k_dense_replace &&
           (c->moe_layer_freq <= 1 || l % c->moe_layer_freq == 0);
}

// ---- model ---------------------------------------------------------------------------------
typedef struct fg_model fg_model;
// One training micro-batch's settings and what its forward measured: the trainer's, not the
// model's (an fg_model holds weights, gradients and the activations of its last batch).
typedef struct {
    float balance_alpha;        // in: sequence-wise balance loss weight (0 = off)
    float mtp_lambda;           // in: MTP loss weight lambda (models with MTP modules; 0 = the modules are not run)
    double loss;                // out: what the step minimised (cross-entropy or a distillation loss, + balance + MTP)
    double ce_loss, bal_loss;   // out: mean cross-entropy over the counted targets (0 without), balance loss
    double mtp_ce[FG_MTP_MAX];  // out: mean cross-entropy of MTP depth k+1 (loss adds lambda/D times their sum)
} fg_step;
// Allocates a model for c (validated first; weights zeroed). Free with fg_model_free.
fg_model *fg_model_create(const fg_config *c);
void fg_model_free(fg_model *m);
const fg_config *fg_model_config(const fg_model *m);
// Random initialisation (deterministic for a seed): matrices N(0, 0.02), output projections
// scaled by 1/sqrt(2L), norms 1, biases and routing bias 0.
void fg_model_init_weights(fg_model *m, uint64_t seed);
// Loads every table tensor from a Hugging Face safetensors file (F32/BF16/F16 converted). Shapes
// must match; missing tensors are an error that names the tensor; extra tensors are ignored.
int fg_model_load_safetensors(fg_model *m, const char *path);
int fg_model_save_safetensors(const fg_model *m, const char *path);

// ---- RNG -----------------------------------------------------------------------------------
// splitmix64-seeded xoshiro256**; the full state is 4 words so checkpoints can store it.
typedef struct { uint64_t s[4]; } fg_rng;
void fg_rng_seed(fg_rng *r, uint64_t seed);
uint64_t fg_rng_u64(fg_rng *r);
float fg_rng_uniform(fg_rng *r);          // [0, 1)
float fg_rng_normal(fg_rng *r);           // N(0, 1), Box-Muller
uint64_t fg_rng_below(fg_rng *r, uint64_t n); // [0, n), unbiased

// ---- byte-level tokenizer (src/data/bytetok.c) ----------------------------------------------
enum {
    FG_TOK_BOS = 256,       // "<|bos|>": starts every document / task example
    FG_TOK_EOS = 257,       // "<|eos|>": ends it
    FG_TOK_PAD = 258,       // "<|pad|>": filler input; its targets are -1 (ignored)
    FG_TOK_THINK = 259,     // "<think>": opens a reasoning trace
    FG_TOK_END_THINK = 260, // "</think>": closes it; the answer follows
    FG_BYTE_VOCAB = 261,
};

// Longest decoded form of any id, including the NUL that fg_bytetok_decode appends.
#define FG_BYTETOK_MAX_PIECE 16

// Encodes text[0..len) into out (capacity cap). Returns the number of ids the whole text needs,
// which may exceed cap: then only the first cap were written (call again with a bigger buffer).
// parse_special: nonzero maps each exact special string ("<think>", ...) to its id, scanning
// left to right; zero treats every byte as a byte (use this for untrusted training text).
// out may be NULL when cap == 0 (a pure length query).
size_t fg_bytetok_encode(const char *text, size_t len, int parse_special, int32_t *out, size_t cap);

// Writes the bytes of token id to buf and a NUL after them (buf needs FG_BYTETOK_MAX_PIECE
// bytes); returns the number of bytes, NUL not counted. An invalid id writes "" and returns 0.
// Byte ids decode to exactly one byte (which may itself be 0), so concatenating the pieces of
// an encoding with parse_special == 0 gives back the input byte for byte.
size_t fg_bytetok_decode(int32_t id, char *buf);

// The text of a special id ("<think>"), or NULL when id is not special.
const char *fg_bytetok_special_name(int32_t id);

// ---- BPE tokenizer (src/tokenizer/, docs/tokenizer.md) ---------------------------------------
// Byte-level BPE as in Hugging Face tokenizers: DeepSeek-V3/R1, DeepSeek-LLM/V2, DeepSeek-Coder,
// Qwen2 vocabularies, loaded from a tokenizer.json or from the tokenizer metadata of a GGUF file.
// Encoding matches the Hugging Face reference token for token (docs/tokenizer.md says how this is
// checked); every byte string, valid UTF-8 or not, encodes and decodes back exactly.
// A loaded tokenizer is read-only: one may be shared by many threads.
typedef struct fg_tokenizer fg_tokenizer;

// Loads path: a GGUF file (by its magic) or a tokenizer.json. NULL with a one-line error naming
// the file and the field (an unknown pre-tokenizer or regex is quoted). Free with fg_tokenizer_free.
fg_tokenizer *fg_tokenizer_load(const char *path);
// The same from memory (text or GGUF bytes); `where` names the source in errors.
fg_tokenizer *fg_tokenizer_load_mem(const char *data, size_t len, const char *where);
void fg_tokenizer_free(fg_tokenizer *t);
// Largest id + 1 (ids without a token decode to "").
int32_t fg_tokenizer_vocab_size(const fg_tokenizer *t);
// Id of a token given by its text: an added/special token's content ("<｜User｜>") or a vocabulary
// entry in its byte-level spelling ("Ġthe"). -1 if there is none.
int32_t fg_tokenizer_token_id(const fg_tokenizer *t, const char *text);
// Like fg_bytetok_encode: encodes text[0..len) into out (capacity cap) and returns the number of
// ids the whole text needs (only the first cap are written; out may be NULL when cap == 0).
// parse_special: nonzero splits out added tokens (leftmost-longest) before pre-tokenization, as
// Hugging Face does; zero treats all text as text (use this for untrusted training data).
// No BOS is added. Returns SIZE_MAX with an error only when memory runs out.
size_t fg_tokenizer_encode(const fg_tokenizer *t, const char *text, size_t len, int parse_special,
                           int32_t *out, size_t cap);
// Writes up to cap bytes of id's text to buf (no NUL) and returns its full length (may exceed
// cap). Concatenating the pieces of an encoding gives back the input exactly. Invalid id: 0.
size_t fg_tokenizer_decode(const fg_tokenizer *t, int32_t id, char *buf, size_t cap);

// Chat layouts. DEEPSEEK_V3: <｜begin▁of▁sentence｜>{system prompts joined by "\n\n"} then
// <｜User｜>{user} / <｜Assistant｜>{assistant}<｜end▁of▁sentence｜> / tool outputs, exactly as the
// chat_template of DeepSeek-V3's tokenizer_config.json. DEEPSEEK_R1: the same, but an
// assistant message keeps only the text after its last "</think>" and the generation prompt is
// "<｜Assistant｜><think>\n". FRUGAL: frugal's own layout (docs/tokenizer.md).
enum { FG_CHAT_DEEPSEEK_V3, FG_CHAT_DEEPSEEK_R1, FG_CHAT_FRUGAL };
// DeepSeek's special tokens, spelled as in its tokenizer.json (UTF-8 escapes of the fullwidth bar
// and the lower-one-eighth block).
#define FG_DS_BOS "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"       // <｜begin▁of▁sentence｜>
#define FG_DS_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"           // <｜end▁of▁sentence｜>
#define FG_DS_USER "<\xef\xbd\x9c" "User\xef\xbd\x9c>"                                // <｜User｜>
#define FG_DS_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"                      // <｜Assistant｜>
typedef struct { const char *role; const char *content; } fg_chat_msg; // role: system|user|assistant|tool
// Renders n messages into buf (capacity cap, NUL-terminated when it fits) and returns the length
// of the whole rendering (excluding the NUL; may exceed cap). add_generation_prompt appends the
// assistant opener. SIZE_MAX with an error for an unknown role or style or a NULL content.
size_t fg_chat_render(int style, const fg_chat_msg *msgs, int n, int add_generation_prompt, char *buf, size_t cap);


// ---- optimizer (src/train/optim.c) -----------------------------------------------------------
typedef struct {
    float beta1, beta2, eps, weight_decay;
} fg_adamw_opts;

typedef struct {
    float *m, *v;   // (n) moments of parameters [lo, lo + n), owned: all of them (lo = 0, n = n_params)
    size_t n;       //   unless sharded by ZeRO-1 (fg_adamw_shard), when each rank keeps its own piece
    int64_t *t;     // (n_tensors) steps taken per tensor: an untouched expert keeps its count
    int n_tensors;
    size_t lo;
} fg_adamw;

int fg_adamw_init(fg_adamw *o, size_t n_params, int n_tensors);
int fg_adamw_init_for(fg_adamw *o, const fg_model *m); // sized for m's tensors
void fg_adamw_free(fg_adamw *o);
// ZeRO-1: keeps only the moments of parameters [lo, hi) (a piece of a full state); 0 or -1.
int fg_adamw_shard(fg_adamw *o, size_t lo, size_t hi);
// One AdamW step with learning rate lr over every trained tensor of m (torch.optim.AdamW math).
// Tensors that never received a gradient (m->touched) are skipped entirely, as torch does.
// A sharded state updates only its parameters [lo, lo + n) (the step counts all advance).
void fg_adamw_step(fg_adamw *o, fg_model *m, float lr, const fg_adamw_opts *opts);
// Global L2 norm of all trained gradients; if clip > 0 and norm > clip, scales them by clip/norm.
// Returns the norm before clipping.
float fg_grad_clip(fg_model *m, float clip);

enum { FG_SCHED_COSINE = 0, FG_SCHED_WSD = 1, FG_SCHED_CONSTANT = 2 };
// Learning rate at step (0-based) of total: linear warmup to lr over `warmup` steps, then cosine to
// min_lr, or (WSD) stable at lr until the last decay_frac of the steps, then linear to min_lr.
float fg_lr_at(int sched, int64_t step, int64_t total, int64_t warmup, float lr, float min_lr, float decay_frac);

// ---- training (src/train/train.c) -----------------------------------------------------------
// Everything besides weights and optimizer moments that a bit-exact resume needs.
typedef struct {
    int64_t step;            // optimizer steps completed
    int64_t tokens_seen;     // tokens consumed by training (inputs, all positions)
    fg_rng rng;              // trainer RNG (built-in task batches)
    fg_rng data_rng;         // data sampler RNG (file data)
    uint64_t batches_drawn;  // batches drawn from the sampler
    char tokenizer[32];      // "byte" (the byte-level ids of fg_bytetok_*) or "bpe" (tokenizer_data)
    char *tokenizer_data;    // "bpe": the tokenizer file's bytes (tokenizer.json or GGUF), saved in the
    size_t tokenizer_len;    //   checkpoint's 'TOKN' section; malloc'd, freed by fg_train_state_free
    uint64_t stream[4];      // shard stream position: epoch (0 = not started), epoch seed, shard
                             //   cursor, window cursor (fg_train with o->shards; docs/formats.md)
    char *train_json;        // the run's record (fg_train_opts_to_json): what --resume restores; malloc'd or NULL
} fg_train_state;

// A fresh state for a run with this seed (RNG streams derived from it, byte tokenizer).
void fg_train_state_init(fg_train_state *st, uint64_t seed);
void fg_train_state_free(fg_train_state *st); // frees train_json and tokenizer_data

// Training options (CLI flags map 1:1; defaults from fg_train_opts_default).
typedef struct {
    const char *const *data; int n_data;   // text/JSONL files; none = the built-in task named by task
    const char *tokenizer;                 // with data files: encode them with this BPE tokenizer (NULL: bytes,
                                           //   or the checkpoint's tokenizer on resume); embedded in checkpoints
    const char *shards;                    // a directory from fg_data_prepare: stream its shards instead
    double val_fraction;                   // of file data held out for validation
    int batch, seq, accum;                 // micro-batch B x T, accumulated accum times per step (in all:
                                           //   over several ranks each runs accum / ranks of them)
    int64_t steps;                         // total optimizer steps of the schedule
    int64_t stop_after;                    // stop this run after this many steps (0 = run to the end)
    float lr, min_lr, decay_frac;          // peak, floor, WSD decay fraction
    int64_t warmup;
    int sched;                             // FG_SCHED_*
    float weight_decay, beta1, beta2, eps, clip;
    float balance_alpha;                   // sequence-wise balance loss (0 = off)
    float bias_gamma;                      // aux-loss-free bias update speed (0 = off)
    // MTP loss weight (models with num_nextn_predict_layers > 0): lambda until the fraction
    // mtp_late_frac of the steps, mtp_lambda_late after (V3: 0.3 for 10T tokens, then 0.1 for 4.8T)
    float mtp_lambda, mtp_lambda_late, mtp_late_frac;
    uint64_t seed;
    int eval_every, eval_batches;          // validation loss / bits-per-byte every N steps
    int save_every;                        // checkpoint every N steps (and always at the end)
    const char *out_dir;                   // ckpt.fgck and log.jsonl go here
    int progress;                          // progress bar on stderr
    int quiet;                             // no per-eval lines on stdout
    int precision;                         // FG_F32 or FG_BF16 (mixed precision, see below)
    int task;                              // without data: FG_TRAIN_ARITH (default) or FG_TRAIN_COUNTDOWN
    int task_level;                        // countdown: level 1..FG_CD_LEVELS, 0 = every level mixed
    int zero;                              // over several ranks: ZeRO-1, the AdamW state sharded (dp.h)
    int ep;                                // over several ranks: expert-parallel group size (ep.h; 0, 1: off)
    int overlap;                           // over several ranks: start the gradient reductions block by block
                                           //   during the backward (nonblocking) instead of after it
    // Distillation hooks (fg_distill_train sets them; NULL: the data source and the model's own
    // cross-entropy). batch_fn supplies every training micro-batch (index = micro-batches drawn so
    // far, from tokens_seen, so a resume continues the sequence); step_fn runs forward + backward
    // of one micro-batch, gradients accumulating scaled by grad_scale, and fills st's outputs
// (st->balance_alpha is the run's).
    int (*batch_fn)(void *ctx, int64_t index, int32_t *inputs, int32_t *targets, int B, int T);
    int (*step_fn)(void *ctx, fg_model *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                   float grad_scale, fg_step *st);
    void *hook_ctx;
    double teacher_flops_per_token;        // ledger: teacher forward FLOPs per trained token (online)
    double teacher_flops_base;             // ledger: teacher FLOPs spent before this run (the cache)
    double cache_bytes;                    // ledger: size of the teacher cache read (0 = none)
    double rollout_flops, reference_flops; // ledger: reinforcement learning's sampling and reference
                                           //   forward FLOPs so far (fg_rl_train keeps them)
} fg_train_opts;

// The built-in tasks (include/frugal_tools.h): 4-digit arithmetic, or Countdown (validation on
// its held-out split, sequences of fg_countdown_max_len(task_level) tokens).
enum { FG_TRAIN_ARITH = 0, FG_TRAIN_COUNTDOWN = 1 };

void fg_train_opts_default(fg_train_opts *o);
// The run's record a checkpoint keeps (fg_train_state.train_json): every option above that
// shapes the run, the data files, --shards and sft (the SFT file, or NULL) as absolute paths, and
// the output folder; "task" and "task_level" only for a Countdown run (an arithmetic run's record
// is as before). Returns a malloc'd JSON object (caller frees), NULL on out of memory.
char *fg_train_opts_to_json(const fg_train_opts *o, const char *sft);
// Reads such a record into *o (fields it lacks keep their values). Strings (o->data, o->shards,
// *sft) point into *arena, which the caller frees with free() after the run. Returns 1
// when the record names the run's data sources (written by this version), 0 for an
// older record of options only, -1 on malformed JSON.
int fg_train_opts_from_json(fg_train_opts *o, const char **sft, const char *json, void **arena);
// Matrix products in fp32 (default) or bf16 mixed precision: operands rounded to bf16 (nearest
// even) as they are packed, products accumulated in fp32; weights, gradients, attention and the
// optimizer stay fp32 (docs/model.md, "Mixed precision"). A setting of the model m (two models
// in one process train at their own precisions); fg_train sets it from opts.precision for the run
// and restores it. prec: FG_F32 or FG_BF16 (below, with fg_precision_parse); anything
// else means fp32. Returns the previous value.
int fg_model_set_precision(fg_model *m, int prec);
// Trains m (already initialised or loaded). opt and st carry the optimizer and trainer state
// (fresh or from a checkpoint). Writes checkpoints and the log into o->out_dir, holding its lock
// (fg_dir_lock) for the run; a resumed run (st->step > 0) first cuts the log back to the
// checkpoint's step. After fg_train_interrupt it finishes the step, saves and returns -1 with an
// error saying so (fg_train_interrupted() tells it from a failure). Returns 0 or -1.
int fg_train(fg_model *m, fg_adamw *opt, fg_train_state *st, const fg_train_opts *o);
// Validation: mean loss and bits per byte over o->eval_batches batches of held-out data (dataset:
// an internal fg_dataset of byte-level ids, or NULL for the built-in task; fg_train itself also
// evaluates shards and BPE data, where bits per byte count the UTF-8 bytes of each target's text).
int fg_train_eval(fg_model *m, const fg_train_opts *o, const void *dataset, double *loss, double *bpb);
// Per-layer routed-expert load statistics over a (L, E) count array.
typedef struct { int layer; int min, max; double cv; } fg_load_stats;
int fg_load_stats_compute(const fg_config *c, const int *load, fg_load_stats *out);

// ---- checkpoints (src/formats/checkpoint.c; layout in docs/formats.md) ----------------------
#define FG_CKPT_MAGIC "FRUGALCK"
#define FG_CKPT_VERSION 1
enum { FG_CKPT_HAS_META = 1, FG_CKPT_HAS_ADAM = 2 }; // header flags

// Saves atomically: writes <path>.tmp, fflush + fsync, renames it over path, fsyncs the directory.
// A crash at any point leaves either the old file or the new one, never a mix (a stale <path>.tmp
// may remain after a crash; the next save overwrites it). opt may be NULL (no 'ADAM' section); if
// given, its sizes must match m. st may be NULL (no 'META' section); st->step and st->tokens_seen
// must be >= 0. Two processes saving to the same path at once is not supported.
int fg_ckpt_save(const char *path, const fg_model *m, const fg_adamw *opt, const fg_train_state *st);

// Loads a checkpoint: creates the model from the stored config (caller frees with fg_model_free)
// and fills its weights and touched flags.
// opt: if NULL, optimizer state is not read. Otherwise *opt is an output (its old contents are
//   ignored, not freed): if the file has an 'ADAM' section it is initialised with fg_adamw_init and
//   filled (caller frees with fg_adamw_free); if not, *opt is zeroed (opt->m == NULL tells).
// st: if NULL, train state is not read. Otherwise the file must have a 'META' section (error if
//   not) and *st is overwritten; st->train_json is malloc'd (or NULL), caller frees.
// Returns NULL on any error, with fg_last_error naming the file and the problem; nothing leaks and
// *opt / *st are then zeroed.
fg_model *fg_ckpt_load(const char *path, fg_adamw *opt, fg_train_state *st);
// The same from a buffer (for fuzzing and tests); `where` names it in errors. buf is only read.
fg_model *fg_ckpt_load_mem(const uint8_t *buf, size_t len, const char *where, fg_adamw *opt, fg_train_state *st);

// Reads just the config: checks the header and every section header (so a truncated file is
// reported), then reads, CRC-checks and parses 'CONF'. No tensor data is read.
int fg_ckpt_read_config(const char *path, fg_config *c);

// Loads into an EXISTING model whose config must match the file's (resume into a model built from
// a config). The configs are compared after a JSON round trip of both, so fields that do not
// change the math (rope_* without yarn) do not count; the error names the first differing field:
// "ckpt.bin: checkpoint config differs from the model's: hidden_size 64 vs 128" (file's value
// first). opt: NULL, or zeroed (then it is initialised as in fg_ckpt_load), or already initialised
// by fg_adamw_init with this model's sizes; left unchanged if the file has no 'ADAM' section.
// st: as in fg_ckpt_load (*st is overwritten; an old train_json is not freed).
// Everything, every CRC included, is validated before m, *opt or *st change, so a corrupt file
// leaves them as they were. (Only an I/O error, or the file changing while it is read, can fail
// after copying began; m's weights are then unspecified.)
int fg_ckpt_load_into(const char *path, fg_model *m, fg_adamw *opt, fg_train_state *st);

// The tokenizer a checkpoint carries ('TOKN' section, written when the run used a BPE tokenizer):
// returns 0 with *tok set (caller frees with fg_tokenizer_free), or 0 with *tok = NULL for a
// byte-level checkpoint (no such section: encode and decode with fg_bytetok_*); -1 with an error
// when the file is unreadable or corrupted.
int fg_ckpt_read_tokenizer(const char *path, fg_tokenizer **tok);
// The raw bytes of that section: 0 with *data (malloc'd, caller frees) and *len, or *data = NULL
// for a byte-level checkpoint; -1 with an error.
int fg_ckpt_read_tokenizer_bytes(const char *path, char **data, size_t *len);

// ---- other checkpoint formats (src/formats/hf.c, src/formats/gguf_model.c; docs/formats.md) ---
// Opens a model wherever a checkpoint is accepted: a directory in the Hugging Face layout, a GGUF
// file (recognised by its magic) or a frugal checkpoint. tok_data/tok_len (may be NULL) receive the
// model's tokenizer as bytes for fg_tokenizer_load_mem (tokenizer.json text, or a GGUF holding only
// metadata), malloc'd, caller frees; *tok_data = NULL when it has none (byte-level ids). notice
// receives informational lines (a skipped MTP layer, ignored tensors, unknown config fields) and
// may be NULL. The weights are converted to fp32 in memory (the model must fit in RAM; a larger
// one is refused before anything big is allocated). NULL with a one-line error naming the file
// and the tensor or field.
fg_model *fg_model_open(const char *path, char **tok_data, size_t *tok_len, void (*notice)(const char *msg));
// A Hugging Face directory: config.json (architectures DeepseekV2ForCausalLM, DeepseekV3ForCausalLM,
// Qwen2ForCausalLM, LlamaForCausalLM), model.safetensors or shards named by
// model.safetensors.index.json, tokenizer.json (optional). dtypes F32, F16, BF16 and F8_E4M3 with
// block scales (weight_scale_inv), dequantised on load. MTP layers (num_nextn_predict_layers,
// index >= num_hidden_layers) are loaded when the files hold them whole, else skipped with a notice.
fg_model *fg_hf_load(const char *dir, char **tok_data, size_t *tok_len, void (*notice)(const char *msg));
// A GGUF file of architecture deepseek2, llama or qwen2; tensor types FG_GGUF_READ_TYPES.
fg_model *fg_gguf_load(const char *path, char **tok_data, size_t *tok_len, void (*notice)(const char *msg));
// Writes dir/config.json (architectures + model_type for the model's kind), dir/model.safetensors
// (table order, F32, BF16 or F16) and, when tok_data is tokenizer.json text, dir/tokenizer.json;
// each file atomically. dir is created when missing.
int fg_hf_export(const char *dir, const fg_model *m, int type, const char *tok_data, size_t tok_len);
// Writes a GGUF v3 file atomically: MLA models as deepseek2, GQA models as qwen2 (rotate-half RoPE
// with q/k/v biases) or llama; matrices in type (F32, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K, or per
// tensor by the mixture FG_GGUF_Q4_K_M / FG_GGUF_Q5_K_M; K-quant rows that hold no 256-value
// super-block fall back to Q8_0, other rows that blocks cannot hold stay F32; the router stays F32),
// vectors F32; the tokenizer's metadata from tok_data (required: llama.cpp needs a vocabulary).
int fg_gguf_export(const char *path, const fg_model *m, int type, const char *tok_data, size_t tok_len);

// ---- generation with a KV cache (src/infer/generate.c) -------------------------------------
typedef struct fg_infer fg_infer;

// Creates a decoding session for m with room for max_T positions, 1 <= max_T <=
// max_position_embeddings. m must outlive the session. Returns NULL with an error on a bad
// max_T or out of memory. Caller frees with fg_infer_free.
fg_infer *fg_infer_create(const fg_model *m, int max_T);
// Cache kinds: FG_KV_LATENT (MLA's default: (Rkv + Dr) floats per position and layer, absorbed
// attention) or FG_KV_FULL (per-head keys and values; GQA's only kind).
enum { FG_KV_AUTO = -1, FG_KV_FULL = 0, FG_KV_LATENT = 1 }; // AUTO: latent for MLA, full for GQA
fg_infer *fg_infer_create_kind(const fg_model *m, int max_T, int kind);
// Weight formats for inference: fp32 (the model's own), bf16, or 8-bit blocks (Q8_0: 32 int8
// values sharing an fp16 scale). A session with bf16/Q8_0 weights holds a converted copy of the
// matrices, embedding included (norms, biases, the routing bias and MLA's wkv_b stay fp32;
// docs/model.md); the session owns that store (fg_wstore_from_model).
fg_infer *fg_infer_create_ex(const fg_model *m, int max_T, int kind, int weights);
// Bytes of the weights a session reads for its matrix products (after conversion).
size_t fg_infer_weight_bytes(const fg_infer *s);
// The share of those a single decode step reads (routed experts count K/E of their bytes), plus
// one row of an untied embedding table (its lookup).
double fg_infer_decode_weight_bytes(const fg_infer *s);

// Typed weight stores (src/infer/wstore.h): a config plus, per tensor of its table, a type
// (FG_F32, FG_BF16, FG_Q8_0) and a pointer, into an fp32 model, into converted buffers, or into a read-only
// mapping of a quantised model file. Sessions read every weight through one; a store is
// read-only once built and may serve several sessions.
typedef struct fg_wstore fg_wstore;
// A store over m: fp32 reads m's weights in place (m must outlive the store); bf16 / Q8_0 convert
// the matrices into an owned arena (vectors, the routing bias and MLA's wkv_b stay fp32, read
// from m). NULL with an error.
fg_wstore *fg_wstore_from_model(const fg_model *m, int weights);
void fg_wstore_free(fg_wstore *ws);                // NULL is fine
const fg_config *fg_wstore_config(const fg_wstore *ws);
int fg_wstore_weights(const fg_wstore *ws);        // the type of its largest matrix (FG_STORE_TYPES)
// The tokenizer a store carries (from a quantised file's 'TOKN' section, or set below): 0 with
// *tok (caller frees) or *tok = NULL for byte-level ids; -1 with an error.
int fg_wstore_tokenizer(const fg_wstore *ws, fg_tokenizer **tok);
int fg_wstore_set_tokenizer(fg_wstore *ws, const void *data, size_t len); // copies; NULL clears
// A Hugging Face directory (as fg_hf_load) as a typed weight store for inference, without copying the weights: every
// BF16 or F32 tensor points into a read-only mapping of its shard (pages are read from disk as
// sessions touch them and can be dropped again by the kernel, so a model larger than RAM runs
// instead of failing or swapping; the store keeps the mappings until fg_wstore_free). F16, F64
// and FP8 tensors are converted to fp32 and misaligned matrices copied, into memory the store
// owns: refused with a one-line error (GiB needed and available) when that would not fit. Vectors
// become fp32 (small). The tokenizer.json bytes go with the store (fg_wstore_tokenizer). notice as
// for fg_model_open (plus one line: bytes mapped and bytes in memory). NULL with an error naming
// the file and the tensor or field.
fg_wstore *fg_wstore_open_hf(const char *dir, void (*notice)(const char *msg));
size_t fg_wstore_owned_bytes(const fg_wstore *ws);  // tensor bytes the store holds in its own memory
// A GGUF file (as fg_gguf_load reads it) as a typed weight store whose tensors point into a
// read-only mapping of the file, as stored: Q4_K, Q6_K, Q8_0, BF16, ... are multiplied natively,
// never expanded (FG_STORE_TYPES). Copied instead: tensors of a type the store does not hold
// (decoded to fp32), MLA's kv_b in llama.cpp's split form (rebuilt, fp32), and a GQA model's
// q / k projections (rows put back in Hugging Face order). The tokenizer goes with the store.
// notice: one line, bytes mapped and bytes in memory. NULL with an error naming the file.
fg_wstore *fg_wstore_open_gguf(const char *path, void (*notice)(const char *msg));

// Quantised model files (.fgq; docs/formats.md "Quantised models"): what `frugal quantize`
// writes. Saved atomically (path.tmp, fsync, rename). Opening maps the file read-only and checks
// its header, every section CRC, and every tensor's type, byte count (in Q8_0 blocks) and offset
// against the table its config implies; the store's tensors point into the mapping (no copy).
#define FG_QMODEL_MAGIC "FRUGALQM"
int fg_qmodel_save(const char *path, const fg_wstore *ws);
fg_wstore *fg_qmodel_open(const char *path);       // free with fg_wstore_free (unmaps)
// The same over a buffer that must outlive the store (copied when not 64-byte aligned); for fuzzing.
fg_wstore *fg_qmodel_open_mem(const uint8_t *buf, size_t len, const char *where);
int fg_file_is_qmodel(const char *path);           // 1 when path starts with FG_QMODEL_MAGIC

// A session over a store (which must outlive it). kv_type: FG_F32 or FG_BF16, the
// element type of the KV cache (both cache kinds; bf16 halves its bytes, docs/model.md gives the
// accuracy). NULL with an error, also when the KV cache for max_T positions, the scratch and the
// store's owned bytes (fg_wstore_owned_bytes) together exceed 90% of this machine's memory (a
// mapped file's weights do not count: their pages are dropped and re-read by the kernel).
fg_infer *fg_infer_create_store(const fg_wstore *ws, int max_T, int kind, int kv_type);
int fg_infer_cache_kind(const fg_infer *s);
// How a latent-cache session runs the attention of a batched feed (prefill; docs/model.md):
// FG_MLA_ABSORBED scores against the cached latents directly (wkv_b folded into the queries),
// FG_MLA_EXPANDED rebuilds per-head keys and values from the latents first and runs ordinary
// attention (fewer multiply-adds for long chunks, DeepSeek's choice for prefill), FG_MLA_AUTO
// (default) picks the one with fewer multiply-adds per chunk. The logits agree within fp32
// rounding. Returns the previous setting; ignored by sessions with a full cache.
enum { FG_MLA_AUTO = 0, FG_MLA_ABSORBED = 1, FG_MLA_EXPANDED = 2 };
int fg_infer_set_mla_prefill(fg_infer *s, int form);
void fg_infer_free(fg_infer *s);                   // NULL is fine
void fg_infer_reset(fg_infer *s);                  // empties the cache (position 0)
int fg_infer_pos(const fg_infer *s);               // tokens in the cache
// Feeds n >= 1 tokens at positions pos .. pos+n-1: one batched (matrix-matrix) pass over the chunk,
// causal within it and attending to everything cached (long feeds run as consecutive batches of
// up to 64 tokens, same result). Appends their keys and values to the cache and returns the
// logits (V) of the LAST token; the pointer is owned by the session and valid until the next
// feed, reset or free. Returns NULL with an error, leaving the session unchanged, when the cache
// would overflow or a token id is outside [0, V). Per-token work at decode is matrix-vector; MoE
// layers run only the experts their router picks (same routing code as training).
const float *fg_infer_feed(fg_infer *s, const int32_t *tokens, int n);
// The batched context under the session (fg_ctx_*, below).
typedef struct fg_ctx fg_ctx;
fg_ctx *fg_infer_ctx(fg_infer *s);
// Bytes held by the KV cache: L * max_T * values per position * bytes per value (4, or 2 for a bf16
// cache), with values per
// position = Rkv + Dr for the MLA latent cache, H*(Dn+Dr) + H*Dv for MLA's expanded cache and
// 2*Hkv*Dh for GQA.
size_t fg_infer_cache_bytes(const fg_infer *s);
// Self-speculative decoding's counts (fg_generate with speculative > 0), summed over the session's
// calls: verification rounds, tokens they produced, and per draft depth k how often draft k was
// verified (every draft before it accepted) and how often it was accepted.
typedef struct {
    long long rounds, tokens;
    long long proposed[FG_MTP_MAX], accepted[FG_MTP_MAX];
} fg_spec_stats;
void fg_infer_spec_stats(const fg_infer *s, fg_spec_stats *st);
int fg_infer_mtp_depths(const fg_infer *s); // the model's MTP depths (0: it drafts nothing)

// ---- the batched inference context (src/infer/ctx.c, docs/architecture.md) -----------------
// Many sequences share one context: one paged latent (or full) KV cache of blocks of
// FG_KV_BLOCK positions with a block table per sequence, and one forward per batch of rows
// (every weight is read once per step for the whole batch). Sequences can be added, removed,
// truncated to a position and forked: a fork shares its parent's blocks and copies a block only
// when it writes into a shared one, so G samples of one prompt cost one prefill. A context reads
// a weight store (which must outlive it); several contexts may share one store and its packed
// GEMM panels. A context is used by one thread at a time.
#define FG_KV_BLOCK 32
typedef struct {
    int n_ctx;       // positions the cache holds for all sequences together (rounded up to whole blocks)
    int max_len;     // positions one sequence may reach (0: min(n_ctx, max_position_embeddings))
    int max_seqs;    // sequences alive at once
    int max_batch;   // rows one fg_ctx_decode may carry
    int kind;        // FG_KV_AUTO / FG_KV_FULL / FG_KV_LATENT
    int kv_type;     // FG_F32 or FG_BF16
    int mtp;         // 1: also cache the model's MTP depths (fg_ctx_mtp; speculative decoding)
} fg_ctx_params;
// NULL with an error (bad parameters, or cache + scratch + the store's owned bytes above 90% of
// this machine's memory).
fg_ctx *fg_ctx_create(const fg_wstore *ws, const fg_ctx_params *p);
void fg_ctx_free(fg_ctx *c);                       // NULL is fine
int fg_ctx_seq_new(fg_ctx *c);                     // a new empty sequence's id, or -1 with an error
int fg_ctx_seq_fork(fg_ctx *c, int seq);           // a new sequence holding seq's positions (shared blocks)
int fg_ctx_seq_truncate(fg_ctx *c, int seq, int len); // keeps positions [0, len); 0 or -1
int fg_ctx_seq_remove(fg_ctx *c, int seq);         // frees its blocks and its id
int fg_ctx_seq_len(const fg_ctx *c, int seq);      // positions cached, or -1
int fg_ctx_free_positions(const fg_ctx *c);        // free blocks * FG_KV_BLOCK
int fg_ctx_set_mla_prefill(fg_ctx *c, int form);   // FG_MLA_* as fg_infer_set_mla_prefill
int fg_ctx_cache_kind(const fg_ctx *c);
int fg_ctx_max_len(const fg_ctx *c);
const fg_wstore *fg_ctx_store(const fg_ctx *c);
size_t fg_ctx_position_bytes(const fg_ctx *c);     // cache bytes per position (all layers)
// A batch: n rows, row i appends token[i] to sequence seq[i]. Rows of one sequence are taken in
// order and continue it: pos (may be NULL) must then be the sequence's length plus the rows of it
// before i. logits (may be NULL) marks the rows whose logits are wanted.
typedef struct {
    int n;
    const int32_t *token, *seq, *pos;
    const uint8_t *logits;
} fg_batch;
// Runs the batch: appends every row's keys and values, writes the logits of the marked rows to
// logits (one row of V per marked row, in batch order). -1 with an error, changing nothing, for a
// bad token, sequence or position, more than max_batch rows, a sequence past max_len, or a cache
// without the free blocks the batch needs.
int fg_ctx_decode(fg_ctx *c, const fg_batch *b, float *logits);
// As fg_ctx_decode, and hidden (n, C), when given, receives every row's normed final state (what
// the head reads: h^0, the input of MTP depth 1).
int fg_ctx_decode_h(fg_ctx *c, const fg_batch *b, float *logits, float *hidden);
// Multi-token prediction (docs/model.md): runs MTP depth `depth` (1..D; the context created with
// mtp = 1) over the batch: row i is position pos[i] (required) of sequence seq[i], with token[i]
// the token at position pos[i] + depth and h_in (n, C) the previous depth's state at pos[i] (depth
// 1: fg_ctx_decode_h's hidden). The rows of a sequence are consecutive positions starting at most
// at the depth's cached length (fg_ctx_mtp_len; rewriting later positions is allowed) and below the
// sequence's length. Writes the depth's cache rows, h_out (n, C) the depth's states (may be NULL)
// and the logits of the marked rows (the prediction of the token at pos + depth + 1). -1 with an
// error, changing nothing, on bad rows.
int fg_ctx_mtp(fg_ctx *c, int depth, const fg_batch *b, const float *h_in, float *h_out, float *logits);
int fg_ctx_mtp_len(const fg_ctx *c, int seq, int depth); // positions depth's cache holds, or -1

typedef struct {
    float temperature;      // 0 = greedy; otherwise > 0 and finite
    int top_k;              // keep the k most probable (0 = all)
    float top_p;            // then the smallest prefix with probability >= top_p, in [0, 1] (1 = all)
    uint64_t seed;          // fg_generate seeds its rng from this
    int max_new_tokens;     // >= 0
    const int32_t *stop_ids;
    int n_stop;
    float min_p;            // then drop tokens below min_p * (probability of the best); 0 = off
    float repetition_penalty; // fg_generate: logits of ids already in the context are divided by
                            // it when positive, multiplied when negative (CTRL); 0 or 1 = off
    int speculative;        // fg_generate: up to this many tokens drafted per step by the model's MTP
                            // depths and verified in one batched forward (0 = off; docs/model.md).
                            // Greedy output is identical; sampled output has exactly the model's
                            // distribution (after temperature, top_k, top_p, min_p). Not with a
                            // repetition penalty (that runs the plain loop).
} fg_sample_opts;

// Picks one token from logits (V). temperature 0 is greedy: argmax, lowest id on ties (top_k 1
// is the same at any temperature). Otherwise p = softmax(logits / temperature); keep the top_k
// most probable (ties to the lower id); then, measured on those kept and renormalised (the
// Hugging Face order), the smallest most-probable prefix whose probability >= top_p; renormalise
// and draw one with rng (one fg_rng_uniform per draw; greedy and top_k 1 draw nothing). min_p
// then keeps only the candidates whose probability is at least min_p times the best one's.
// scratch: 2*V floats (unused when greedy).
// Returns the id, or -1 with an error for bad options (temperature < 0 or not finite, top_k < 0,
// top_p or min_p outside [0, 1], V outside [1, 2^24]).
int32_t fg_sample(const float *logits, int V, const fg_sample_opts *o, fg_rng *rng, float *scratch);

// Feeds the prompt (n_prompt >= 1), then samples up to min(max_new_tokens, cap) tokens into out,
// feeding each one back before sampling the next; stops after a stop id (included in out) and
// when the cache is full (fg_infer_pos == max_T). Calls on_token (may be NULL) with each token as
// soon as it is sampled (for streaming); a nonzero return stops generation after that token (how
// callers implement stop strings). The repetition penalty covers the prompt and every generated
// token. The last generated token is NOT fed: on return the cache holds the prompt
// and out[0 .. n-2]; to continue, start the next prompt with out[n-1]. Deterministic for o->seed.
// Returns the number generated, or -1 with an error (bad options, overflow, bad prompt id).
int fg_generate(fg_infer *s, const int32_t *prompt, int n_prompt, const fg_sample_opts *o, int32_t *out,
                int cap, int (*on_token)(int32_t id, void *ctx), void *ctx);

// ---- reinforcement learning: GRPO with verifiable rewards (src/train/rl.c, docs/rl.md) ----------
// The R1-Zero step: completions sampled in groups from the policy, scored by a verifier, and the
// policy moved towards the better ones of each group (GRPO: group-normalised advantages, the
// clipped ratio to the sampling policy, k3 KL to a frozen reference), with DAPO's and Dr. GRPO's
// variants as options.
enum { FG_RL_TASK_COUNTDOWN = 0, FG_RL_TASK_ARITH = 1 };
typedef struct {
    const char *ref;          // the frozen reference policy's checkpoint (the starting policy); beta > 0 needs it
    int task;                 // FG_RL_TASK_*: the prompts and the built-in verifier
    int level;                // Countdown difficulty, 1..FG_CD_LEVELS
    int prompts, group;       // P prompts per rollout, G completions of each: the batch is P*G sequences
    int mu;                   // policy updates per rollout (each a step of the trainer)
    int max_new;              // completion tokens at most
    float temperature;        // sampling temperature (> 0); log-probabilities are taken at it
    float format_reward;      // added to the correctness reward (0 or 1) for a well-formed completion
    float clip_lo, clip_hi;   // ratio clipped to [1 - clip_lo, 1 + clip_hi] (DAPO: clip_hi > clip_lo)
    float beta;               // KL(policy || reference) coefficient (k3 estimator); 0: no reference
    int token_level;          // 1: the loss averaged over all completion tokens of the batch (DAPO)
    int std_norm;             // 1: advantages divided by the group's reward spread (0: Dr. GRPO)
    int no_len_norm;          // 1: a completion's sum divided by max_new, not its length (Dr. GRPO)
    int drop_zero_var;        // 1: zero-variance groups replaced by more sampled ones, up to 8 rounds (DAPO dynamic sampling)
    const char *verifier;     // shell command instead of the built-in check: prompt + completion text on
    double verifier_timeout;  //   stdin, exit 0 correct, 1 wrong (as fg_distill_generate's); seconds
    int eval_every, eval_n;   // held-out accuracy (greedy, eval_n problems) every eval_every updates
} fg_rl_opts;
void fg_rl_opts_default(fg_rl_opts *r); // Countdown level 1, P 8, G 8, mu 1, max_new 64, T 1, beta 0.04, clip 0.2
int fg_rl_opts_check(const fg_rl_opts *r);
// GRPO training of policy m (loaded; opt and st fresh or resumed) on fg_train: o's schedule,
// clipping, output folder, checkpoints and ledger; o->batch and o->seq are set from r (P*G
// sequences of prompt + max_new tokens), accumulation is 1. Writes OUT/rl.jsonl (per update:
// rollout reward mean and spread, accuracy, format rate, completion length, loss, KL, entropy,
// clip fraction, rollout and update tokens/s, held-out accuracy when measured) and OUT/rl.svg.
int fg_rl_train(fg_model *m, fg_adamw *opt, fg_train_state *st, const fg_train_opts *o, const fg_rl_opts *r);
// Group sampling: G completions of each of P prompts (prompts: (P, maxp) rows, plen[p] <= maxp ids
// used, maxp = the longest plen) in one batched context: the prompts prefilled together, each
// forked G - 1 times (the forks share its cache blocks), then one decode step per token for all
// live samples. Sample s = p*G + g gets out[s*max_new ...] and out_len[s] tokens (a stop id
// included). temperature 0 is greedy. Deterministic for seed. 0, or -1 with an error.
int fg_rl_rollout(const fg_wstore *ws, const int32_t *prompts, const int *plen, int P, int G, int max_new,
                  float temperature, const int32_t *stop, int nstop, uint64_t seed, int32_t *out, int *out_len);
// Held-out accuracy of greedy completions on n problems of a task (and the well-formed share).
int fg_rl_eval(const fg_wstore *ws, int task, int level, int n, uint64_t seed, double *accuracy, double *format);

// ---- distillation (src/distill/, docs/distill.md) ------------------------------------------
// Logit distillation (online teacher or an offline top-k cache) and sequence-level distillation
// (verified teacher samples written as SFT JSONL). Loss, per row with target >= 0:
//   alpha * CE(student, target) + (1 - alpha) * T^2 * D(teacher_T, student_T),   averaged.
enum { FG_DIV_FKL = 0, FG_DIV_RKL = 1, FG_DIV_SKL = 2, FG_DIV_SRKL = 3, FG_DIV_JSD = 4 };
#define FG_DISTILL_MAX_K 256 // most teacher entries a cache stores per token

// "fkl" | "rkl" | "skl" (DistiLLM skew KL) | "srkl" (skew reverse KL) | "jsd" (GKD's generalised
// JSD) -> FG_DIV_*, or -1 with an error.
int fg_divergence_parse(const char *name);
const char *fg_divergence_name(int div);

typedef struct {
    int div;            // FG_DIV_*
    float temperature;  // T > 0 (both distributions)
    float alpha;        // weight of the label cross-entropy, in [0, 1]
    float lambda;       // skl/srkl skew, in [0, 1)
    float beta;         // jsd mixture weight, in (0, 1)
} fg_distill_loss_opts;
void fg_distill_loss_opts_default(fg_distill_loss_opts *o); // fkl, T 1, alpha 0.5, lambda 0.1, beta 0.5
int fg_distill_loss_opts_check(const fg_distill_loss_opts *o);

typedef struct { double loss, ce, div; int count; } fg_distill_loss_out; // means over counted rows

// Full-vocabulary loss over N rows of V logits: student (N, V), teacher (N, V) raw logits,
// targets (N) (< 0: row ignored, its dlogits zero). Writes dlogits (N, V) = scale * d(loss)/d(student)
// (may alias student: each row is read before it is written). Computed per row in double.
// Returns 0, or -1 with an error (bad options or sizes, target >= V).
int fg_distill_loss(const fg_distill_loss_opts *o, const float *student, const float *teacher, const int32_t *targets,
                    int N, int V, float scale, float *dlogits, fg_distill_loss_out *out);
// The same against a top-k teacher: ids (N, k) distinct token ids, logp (N, k) and logtail (N) the
// teacher's log-probabilities AT TEMPERATURE T of those ids and of everything else (one tail
// bucket; -inf when empty). The student's distribution is collapsed onto the same k + 1 buckets.
// 1 <= k < V, k <= FG_DISTILL_MAX_K; a repeated or out-of-range id is an error.
int fg_distill_loss_topk(const fg_distill_loss_opts *o, const float *student, const int32_t *ids, const float *logp,
                         const float *logtail, int k, const int32_t *targets, int N, int V, float scale, float *dlogits,
                         fg_distill_loss_out *out);

// Teacher and student must share the tokenizer: the same vocab_size and, for BPE, the same tokenizer
// bytes. Returns 0 or -1 with a one-line error naming both sides. tok_*: tokenizer bytes (NULL = byte-level).
int fg_distill_check_tokenizers(int teacher_V, const char *tok_t, size_t len_t, int student_V, const char *tok_s,
                                size_t len_s);

// Offline teacher cache ("FGDC" file, docs/formats.md): per token the teacher's top-k log-probs at
// temperature T as (u24 id, fp16 log-prob) entries of 5 bytes plus an fp16 log tail mass.
typedef struct {
    const char *teacher;        // teacher checkpoint (required)
    const char *out;            // cache path, written atomically
    int k;                      // entries per token, 1 <= k < V, <= FG_DISTILL_MAX_K
    float temperature;          // the teacher's temperature (training must use the same)
    int64_t max_seqs;           // windows cached (0 = every training window of the data; task: 4096)
    uint64_t seed;              // task problems drawn from this seed
    int batch;                  // teacher forward batch
} fg_distill_cache_opts;
typedef struct {
    int64_t seqs; int seq, k, V;
    double tokens, bytes, bytes_per_token, teacher_flops, wall_s;
    uint64_t data_hash, teacher_hash;
} fg_distill_cache_info;
// Runs the teacher over the data of o (files, tokenizer, val_fraction, seq; no files: the built-in
// task; shards are not supported) and writes the cache. Returns 0 and *info, or -1 with an error.
int fg_distill_cache_build(const fg_distill_cache_opts *co, const fg_train_opts *o, fg_distill_cache_info *info);
// Reads a cache's header (validated like a load) into *info.
int fg_distill_cache_stat(const char *path, fg_distill_cache_info *info);

typedef struct {
    fg_distill_loss_opts loss;
    const char *teacher;        // teacher checkpoint (required: online forward, or the cache's checksum)
    const char *cache;          // NULL: online (a teacher forward per micro-batch); else a cache file
    int student_trained;        // 1: the student comes from a checkpoint, its tokenizer is fixed
} fg_distill_opts;
// Distillation training of student m (fresh or loaded; st fresh): fg_train with the distillation
// loss. Checks tokenizers (a byte-level student of a BPE teacher adopts the teacher's tokenizer
// into st), the cache's data and teacher checksums against o's data and d->teacher, and the
// cache's temperature and vocabulary. The ledger records teacher FLOPs and cache bytes.
int fg_distill_train(fg_model *m, fg_adamw *opt, fg_train_state *st, const fg_train_opts *o, const fg_distill_opts *d);

// Sequence-level distillation: sample n teacher completions per prompt, keep the verified ones.
typedef struct {
    const char *teacher;        // checkpoint
    const char *prompts;        // JSONL {"prompt": "..."} (one per line), or NULL: built-in task problems
    int n_prompts;              // task: problems drawn (training split)
    int n_samples;              // completions per prompt
    float temperature;          // sampling temperature (0 = greedy: n_samples should be 1)
    int max_new_tokens;
    uint64_t seed;
    const char *verifier;       // shell command: completion on stdin, exit 0 = accept (NULL: task check,
                                //   or accept everything for prompt files)
    double verifier_timeout;    // seconds; a verifier still running then is killed and the run stops
    const char *out;            // SFT JSONL {"prompt": ..., "completion": ...}, written atomically
    int task, task_level;       // without prompts: FG_TRAIN_ARITH (default) or FG_TRAIN_COUNTDOWN problems
                                //   (of this level, 0: mixed), checked by that task's verifier
} fg_distill_gen_opts;
typedef struct {
    int64_t prompts, samples, accepted, rejected, prompts_with_one;
    double tokens, teacher_flops, wall_s;
} fg_distill_gen_stats;
// Returns 0 with the statistics (also written as OUT.stats.json), or -1 with an error: unreadable
// teacher/prompts; a verifier that times out, exits with a status other than 0 or 1, or dies of a
// signal; or nothing accepted. On error nothing is written (an earlier OUT stays as it was).
int fg_distill_generate(const fg_distill_gen_opts *o, fg_distill_gen_stats *st);

// Supervised fine-tuning on prompt/completion pairs (`frugal train --sft`, src/distill/sft.c): JSONL
// lines with "prompt_ids" and "completion_ids" (exact ids, as fg_distill_generate writes them) or
// "prompt" and "completion" text (encoded with st's BPE tokenizer, else bytes; BOS before the
// prompt, EOS after the completion). Each example is one row from position 0 with targets -1 on
// the prompt, so only completion tokens are trained; rows longer than o->seq are cut. A share
// o->val_fraction of the examples (by a hash of their ids) is held out for validation.
// o must name no data files or shards. Returns 0 or -1 (bad file: the line and the problem).
int fg_train_sft(fg_model *m, fg_adamw *opt, fg_train_state *st, const fg_train_opts *o, const char *path);

#ifdef __cplusplus
}
#endif
#endif
