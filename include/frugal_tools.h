// frugal_tools.h: the tools around the engine (include/frugal.h): text into token shards, the
// data refinery, the BPE trainer, the built-in arithmetic task, and the cost model with its
// hardware table, measured peaks and per-run ledger. Nothing here prints; errors go through
// fg_last_error().
#ifndef FRUGAL_TOOLS_H
#define FRUGAL_TOOLS_H

#include <stddef.h>
#include <stdint.h>

#include "frugal.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- token shards (src/data/shard.c; layout in docs/formats.md "Token shards") ----------------
// fg_data_prepare turns text files, JSONL pretraining data ({"text": ...}) or, with sft, chat
// JSONL ({"conversations": [{"role": ..., "content": ...}]}) into token shards plus manifest.json
// in out_dir. Documents are BOS + text + EOS (special strings in the text are not parsed);
// conversations are rendered with fg_chat_render (DeepSeek-V3 layout with a BPE tokenizer,
// FG_CHAT_FRUGAL with bytes) and carry a loss mask that trains only the assistant's tokens.
typedef struct {
    const char *tokenizer;        // tokenizer.json or GGUF path; NULL = byte-level ids
    int sft;                      // inputs are chat JSONL; shards get a loss mask
    int64_t shard_tokens;         // a shard is closed once it holds this many tokens (whole documents)
    double val_fraction;          // documents (by a hash of their content) into val shards, [0, 0.5]
    const char *out_dir;          // created if missing
    void (*warn)(const char *msg); // called for the first 20 skipped JSONL lines (may be NULL)
} fg_prepare_opts;
typedef struct {
    uint64_t documents, val_documents, tokens, train_shards, val_shards;
    uint64_t skipped_lines;       // JSONL lines that were not JSON or missed the field: skipped, counted
} fg_prepare_report;
// Returns 0, or -1 with an error naming the file (an empty file, invalid UTF-8 in a text file,
// no usable document at all, an unreadable tokenizer or one without DeepSeek's BOS/EOS tokens).
int fg_data_prepare(const fg_prepare_opts *o, const char *const *files, int n_files, fg_prepare_report *r);

// ---- BPE training (src/tokenizer/train.c, docs/tokenizer.md) ----------------------------------
// Learns a byte-level BPE with DeepSeek-V3's pre-tokenizer and writes a tokenizer.json that
// fg_tokenizer_load reads back. Streaming: feed documents or files, then train, then write.
typedef struct {
    int vocab_size;          // ids in total: 256 byte tokens + merges + special tokens
    int min_frequency;       // a pair seen fewer times is never merged (training stops there)
    const char **specials;   // added special tokens; NULL: the six DeepSeek-V3 ones
    int n_specials;          // entries in specials (ignored when specials is NULL)
    size_t max_words;        // bound on distinct pre-tokens kept while counting (rarest pruned)
} fg_bpe_train_opts;
#define FG_BPE_BAD_LINES_KEPT 8
typedef struct {
    uint64_t docs, bytes, pieces;      // documents and bytes fed, pre-tokens counted
    uint64_t long_pieces;              // pre-tokens longer than 256 bytes (not counted)
    uint64_t distinct_pieces;          // distinct pre-tokens at the start of merging
    uint64_t prunes, pruned_pieces, pruned_count; // table prunes, entries and occurrences dropped
    int64_t prune_threshold;           // pieces seen fewer times than this may have been dropped
    uint64_t bad_lines;                // JSONL lines skipped (not JSON, no string "text")
    char bad_line_msg[FG_BPE_BAD_LINES_KEPT][160]; // "file:line: why" for the first few
    int32_t merges, vocab_size;        // learned merges; final vocabulary size (with specials)
} fg_bpe_train_stats;
typedef struct fg_bpe_trainer fg_bpe_trainer;

// Defaults: vocab_size 32000, min_frequency 2, DeepSeek-V3 specials, max_words 8M.
void fg_bpe_train_opts_default(fg_bpe_train_opts *o);
// NULL with an error when vocab_size < 256 + specials or a special is empty or repeated.
// o->specials is copied. Free with fg_bpe_trainer_free.
fg_bpe_trainer *fg_bpe_trainer_new(const fg_bpe_train_opts *o);
void fg_bpe_trainer_free(fg_bpe_trainer *t);               // NULL is fine
// Counts the pre-tokens of one document (any bytes). -1 with an error when memory runs out.
int fg_bpe_trainer_feed(fg_bpe_trainer *t, const char *text, size_t len);
// Feeds a file: .jsonl = one {"text": ...} document per line (bad lines are counted in the stats
// with their line numbers and skipped), anything else = one text document. -1 if unreadable.
int fg_bpe_trainer_add_file(fg_bpe_trainer *t, const char *path);
// Runs the merges (once). The vocabulary may end up smaller than vocab_size when no pair reaches
// min_frequency any more; the stats say how big it is.
int fg_bpe_trainer_train(fg_bpe_trainer *t);
// Writes tokenizer.json atomically (path.tmp, then rename).
int fg_bpe_trainer_write(const fg_bpe_trainer *t, const char *path);
const fg_bpe_train_stats *fg_bpe_trainer_stats(const fg_bpe_trainer *t);

// ---- data refinery (src/data/refine.c, docs/data.md) ------------------------------------------
// Streams documents (.jsonl: {"text": ...} per line; any other file: one document) and keeps
// those that pass every rule, in this order: quality heuristics, exact duplicate, near duplicate
// (MinHash + LSH), perplexity. Memory: the text of one document at a time plus, per kept
// document, its MinHash signature, its LSH band keys and a 64-bit hash (docs/data.md).
enum {
    FG_REFINE_INVALID_UTF8, FG_REFINE_CONTROL, FG_REFINE_TOO_SHORT, FG_REFINE_TOO_LONG,
    FG_REFINE_SYMBOLS, FG_REFINE_DIGITS, FG_REFINE_REPEATED_LINES, FG_REFINE_REPEATED_NGRAMS,
    FG_REFINE_EXACT_DUP, FG_REFINE_NEAR_DUP, FG_REFINE_PERPLEXITY, FG_REFINE_NRULES
};
typedef struct {
    double jaccard;             // near duplicate when estimated Jaccard of 5-word shingles >= this
    int num_perm;               // MinHash signature length
    int bands;                  // LSH bands (0: chosen so that P(candidate | J = jaccard) >= 0.95)
    int min_chars, max_chars;   // length bounds in characters (code points)
    double max_symbols;         // ASCII punctuation/symbols / non-space characters
    double max_digits;          // ASCII digits / non-space characters
    double max_repeated_lines;  // repeated non-blank lines / non-blank lines (>= 3 lines)
    double max_repeated_ngrams; // repeated 5-word shingles / shingles (>= 10 shingles)
    double max_control;         // control bytes (not \t \n \r) / bytes
    const char *ppl_model;      // checkpoint for the perplexity rule (NULL: rule off)
    double max_perplexity;      // drop when per-byte-token perplexity is above
    int ppl_tokens;             // tokens of each document scored (from its start)
    int examples;               // examples kept per rule for the report
} fg_refine_opts;
typedef struct {
    uint64_t docs_in, bytes_in, docs_kept, bytes_kept;
    uint64_t removed[FG_REFINE_NRULES], removed_bytes[FG_REFINE_NRULES];
    uint64_t bad_lines;         // JSONL lines that are not JSON objects with a string "text"
    uint64_t candidates;        // LSH candidate pairs verified
    int bands, rows;            // LSH layout in use
} fg_refine_stats;
typedef struct fg_refine fg_refine;

void fg_refine_opts_default(fg_refine_opts *o);
const char *fg_refine_rule_name(int rule); // "too_short", ...
// out_path: where kept documents go as JSONL (written to out_path.tmp, renamed by
// fg_refine_finish); NULL keeps nothing. Loads the perplexity model if asked. NULL with an error
// on bad options or an unreadable model. Free with fg_refine_free.
fg_refine *fg_refine_new(const fg_refine_opts *o, const char *out_path);
void fg_refine_free(fg_refine *r); // NULL is fine; an unfinished output is removed
// Processes a file: -1 only when it cannot be read or written (bad lines are counted, not fatal).
int fg_refine_add_file(fg_refine *r, const char *path);
// The same from memory; where names it in the report; jsonl selects the format.
int fg_refine_add_mem(fg_refine *r, const char *data, size_t len, const char *where, int jsonl);
int fg_refine_finish(fg_refine *r); // flushes and renames the output
const fg_refine_stats *fg_refine_get_stats(const fg_refine *r);
// Examples ("file:line: \"snippet...\"") for a rule, and bad-line messages ("file:line: why"):
// index k from 0; NULL past the last one kept.
const char *fg_refine_example(const fg_refine *r, int rule, int k);
const char *fg_refine_bad_line(const fg_refine *r, int k);
// Writes the JSON report (options, counts and bytes per rule, examples, bad lines) to path.
int fg_refine_write_report(const fg_refine *r, const char *path);

// ---- the built-in arithmetic task (src/data/task.c, docs/task.md) ---------------------------
#define FG_TASK_MAX_TOKENS 96  // capacity callers give fg_task_render
#define FG_TASK_LONGEST 70     // tokens in the longest example (subtraction); batch T must be >= this
#define FG_TASK_PROMPT_LEN 11  // BOS + "AAAA" + op + "BBBB" + "="
#define FG_TASK_ANSWER_LEN 6   // sign + 5 digits

typedef struct { int a, b; char op; } fg_task_problem; // a, b in [0, 9999]; op '+' or '-'

// Renders the full example into out (capacity FG_TASK_MAX_TOKENS): prompt, <think>, trace,
// </think>, answer, EOS. Returns the token count and sets *prompt_len (may be NULL) to the
// number of prompt tokens (FG_TASK_PROMPT_LEN); returns -1 with an error for an invalid problem.
int fg_task_render(const fg_task_problem *p, int32_t *out, int *prompt_len);

// The same example as text, special ids written by name ("<|bos|>0123+4567=<think>..."),
// NUL-terminated. Returns its length, or -1 with an error if the problem is invalid or cap is
// too small (256 is always enough).
int fg_task_render_text(const fg_task_problem *p, char *buf, size_t cap);

// 1 if the problem belongs to the held-out split (~10% of all problems), else 0. Pure function.
int fg_task_is_heldout(const fg_task_problem *p);

// Draws a problem uniformly from one split (heldout 0: training, 1: held-out): op uniform,
// a and b uniform in [0, 9999], redrawn until the split matches. Consumes a variable number of
// rng draws (about 1.1 for training, 10 for held-out).
void fg_task_sample(fg_rng *r, int heldout, fg_task_problem *p);

// Training batch of B fresh training-split problems. inputs, targets: (B, T), T >= FG_TASK_LONGEST.
// Row b holds one example from position 0, inputs padded with FG_TOK_PAD. targets[t] = the
// token at t+1, except -1 where that token is part of the prompt (t+1 < prompt_len) and from
// the EOS position on: the loss covers <think>, trace, </think>, answer and EOS. (With a
// smaller T an example is cut at T inputs; avoid that.)
void fg_task_batch(fg_rng *r, int32_t *inputs, int32_t *targets, int B, int T);
// The same from either split (heldout 1: validation batches; never mixes the splits).
void fg_task_batch_split(fg_rng *r, int heldout, int32_t *inputs, int32_t *targets, int B, int T);

// gen[0..n): ids generated after the prompt. Finds the first </think> and compares the 6 ids
// after it with the true answer; returns 1 on an exact match, 0 otherwise (also when there is
// no </think> or fewer than 6 ids follow it). What follows the answer is not checked.
int fg_task_check(const fg_task_problem *p, const int32_t *gen, int n);

// The integer result, a + b or a - b.
long fg_task_answer(const fg_task_problem *p);

// ---- the built-in Countdown task (src/data/countdown.c, docs/task.md "Countdown") ----------
// Numbers and a target; the answer is one expression with + - * / and parentheses that uses each
// number exactly once and equals the target (exact integer arithmetic). Any correct expression
// is accepted, so the task grades like a verifier-based RL task. Byte-level ids, as the
// arithmetic task:
//   <|bos|>25 7 3 2:52=<think>25-7=18 18*3=54 54-2=52</think>(25-7)*3-2<|eos|>
// Levels: 1 = 3 numbers in [1, 20], target in [1, 199]; 2 = 4 numbers in [1, 20], target in
// [1, 499]; 3 = four numbers in [1, 20] and one of 25/50/75/100, target in [100, 999].
#define FG_CD_MAX_NUMS 6
#define FG_CD_MAX_TOKENS 128   // capacity callers give the render functions; every valid problem fits
#define FG_CD_LEVELS 3         // difficulty levels 1..FG_CD_LEVELS (3, 4, 5 numbers)

// A problem: nums[0..n) in prompt order. Valid for rendering: 2 <= n <= FG_CD_MAX_NUMS, each
// number in [1, 100], target in [1, 999]. level is the level it was drawn from (information only).
typedef struct { int n, nums[FG_CD_MAX_NUMS], target, level; } fg_countdown;

// Draws a solvable problem of a level (1..FG_CD_LEVELS; 0 = a level drawn uniformly) from one
// split (heldout 0: training, 1: held-out): numbers drawn in the level's ranges, combined by a
// random expression tree whose intermediate results are integers in [1, 999]; its value is the
// target, redrawn while it is outside the level's range, equals the sum of the numbers (all '+'
// would solve it), or falls in the other split. Numbers are in random order. Deterministic in r.
void fg_countdown_sample(fg_rng *r, int level, int heldout, fg_countdown *p);
// 1 if the problem belongs to the held-out split (~10% of problems: a fixed hash of the sorted
// numbers and the target, so every permutation of a held-out problem is held out), else 0.
int fg_countdown_is_heldout(const fg_countdown *p);
// Prompt ids (BOS, "25 7 3 2:52=") into out (capacity FG_CD_MAX_TOKENS); returns the count, or
// -1 with an error if the problem is invalid.
int fg_countdown_prompt(const fg_countdown *p, int32_t *out);
// Full SFT example into out (capacity FG_CD_MAX_TOKENS): prompt, <think>, the canonical
// solution's steps ("x op y=z", x >= y, separated by spaces), </think>, that solution as one
// expression with the fewest parentheses, EOS. The canonical solution is the first one of a
// fixed search over the sorted numbers whose intermediate results are integers in [1, 999], so
// it depends only on the multiset of numbers and the target. Returns the count and sets
// *prompt_len (may be NULL); -1 with an error if the problem is invalid or has no such solution.
int fg_countdown_render(const fg_countdown *p, int32_t *out, int *prompt_len);
// Rewards of a completion gen[0..n) (ids generated after the prompt). Returns 1 when the text
// after the first </think> up to the first EOS after it (or the end) is an expression using each
// number exactly once that evaluates to the target (fg_countdown_check_expr), else 0 (also with
// no </think>, or a special id in that span). *format_ok (may be NULL) = 1 when the completion is
// <think>, text without special ids, </think>, a syntactically valid expression, <|eos|>
// (anything after that EOS is ignored), regardless of correctness; else 0.
int fg_countdown_check(const fg_countdown *p, const int32_t *gen, int n, int *format_ok);
// Text verifier: expr[0..len) (no special tokens) -> 1 correct, 0 wrong (also for an invalid
// problem). Grammar: numbers (decimal, no sign, no leading zero, <= 9 digits), + - * /,
// parentheses (nested <= 64 deep), spaces between tokens; no unary minus or plus. Correct: the
// number literals are exactly p's numbers as a multiset, every division is exact with a nonzero
// divisor, nothing overflows int64, and the value is p->target (negative intermediates are fine).
int fg_countdown_check_expr(const fg_countdown *p, const char *expr, size_t len);
// Training batches like fg_task_batch_split: B fresh problems of a level (0: each row its own
// level, drawn uniformly) from one split. inputs, targets: (B, T), T >= fg_countdown_max_len(level)
// (a longer example is cut at T inputs); inputs padded with FG_TOK_PAD; targets[t] = the id at
// t+1, -1 on the prompt and from the EOS position on.
void fg_countdown_batch(fg_rng *r, int level, int heldout, int32_t *inputs, int32_t *targets, int B, int T);
// Upper bound on the tokens of any example of a level (0: of every level): 50, 70, 92.
int fg_countdown_max_len(int level);

// ---- cost (src/cost/, docs/cost.md) ---------------------------------------------------------
// What a model and a run cost: parameters, FLOPs, memory, hardware time, money and energy,
// analytic (fg_cost_model_compute) and measured (the ledger every training run writes).
//
// FLOP convention (stated in every report): a multiply-add is 2 FLOPs. Forward FLOPs per token =
// 2 * (matmul weights the token multiplies: active experts only, router and output head included,
// the embedding lookup, norms and biases not) + attention scores and values
// 2 * L * H * (Dqk + Dv) * (T+1)/2 for a causal window of T (the average context of a token).
// Training = 3 * forward (backward is twice the forward). The MTP module is reported apart.

// SI numbers: "14.8T", "250G", "37B" (B = G), "1.5K", "2e9", plain "4096". K M G/B T P E = 1e3..1e18.
// Returns 0 and *out, or -1 with "'14.8X' is not a number (...)" as the error.
int fg_si_parse(const char *s, double *out);
// Writes v with an SI suffix and 4 significant digits ("671.0B", "250.5G", "2.664M", "980") into
// buf and returns buf. billions: 1 writes B for 1e9 (counts of parameters), 0 writes G.
char *fg_si_format(char *buf, size_t cap, double v, int billions);


// One accelerator: dense (no sparsity) peaks, memory, power and a default rental price.
typedef struct {
    char name[32];
    double bf16_tflops;  // dense BF16 tensor peak
    double fp8_tflops;   // dense FP8 peak; 0 = no FP8 support
    double fp32_tflops;  // non-tensor FP32 peak (0 = unknown)
    double mem_gb, bw_tbs, watts, price_hr;
    char source[256];
} fg_accel;
int fg_accel_count(void);
const fg_accel *fg_accel_get(int i);
// Case-insensitive lookup ("h800", "H100-SXM"); NULL with an error that lists the known names.
const fg_accel *fg_accel_find(const char *name);
// Adds or overrides entries from a JSON file: {"accelerators": [{"name": ..., "bf16_tflops": ...,
// ...}]} or a bare array; missing fields of an existing entry keep their value; a new entry needs
// name and bf16_tflops. Process-wide table; not thread-safe against concurrent lookups.
int fg_accel_load(const char *path);
// Peak FLOP/s of a for a precision (TFLOP/s * 1e12); 0 when a lacks it (FP8 on A100).
double fg_accel_peak(const fg_accel *a, int precision);

// Resolves a model for costing: a cost preset (deepseek-v3, deepseek-v2, deepseek-v2-lite,
// llama3-405b, llama3-8b), a frugal preset (tiny, demo, bench-moe) or a config.json path. Unlike
// fg_config_load it does not refuse configs too big for this machine. *mtp_layers gets
// num_nextn_predict_layers (0 when absent). Errors list the known presets.
int fg_cost_config(fg_config *c, int *mtp_layers, const char *spec, void (*warn)(const char *msg));

// Published training figures of a preset (NULL when there are none).
typedef struct {
    const char *preset, *accel;     // accel: fg_accel name
    double tokens;                  // pre-training tokens
    double hours;                   // pre-training accelerator-hours
    double extra_hours[2];          // later stages (0 = none)
    const char *extra_names[2];
    double price_hr;                // $ per accelerator-hour the publisher assumed (0 = none)
    int devices;                    // cluster size
    const char *source;
} fg_cost_published;
const fg_cost_published *fg_cost_published_find(const char *preset);

enum { FG_COMP_EMBED, FG_COMP_ATTN, FG_COMP_SDPA, FG_COMP_DENSE_FFN, FG_COMP_ROUTED, FG_COMP_SHARED,
       FG_COMP_ROUTER, FG_COMP_NORM, FG_COMP_HEAD, FG_COMP_MTP, FG_COMP_N };
const char *fg_cost_component_name(int comp); // "attention projections", ...

typedef struct {
    int mtp_layers;        // MTP modules (V3: 1); reported apart, not in the totals
    int context;           // T of the attention term (causal: average window (T+1)/2)
    int batch, seq;        // per-device micro-batch for activation memory
    int precision;         // FG_F32, FG_BF16 or FG_F8_E4M3
    int devices;           // weights, gradients and optimizer states sharded over them (ZeRO-3)
} fg_cost_opts;

typedef struct {
    double params[FG_COMP_N];  // per component (SDPA has none; MTP as stored in HF checkpoints,
                               // i.e. with its own copies of the embedding and output head)
    double active[FG_COMP_N];  // activated per token (experts K of E)
    double total, total_active;     // main model: every component but MTP
    double mtp_unique;              // MTP parameters not shared with the main model
    double fwd[FG_COMP_N];          // forward FLOPs per token at opts.context
    double fwd_per_token, train_per_token; // main model (MTP excluded); train = 3 * forward
    double kv_bytes_per_token;      // what is cached: MLA L*(Rkv+Dr), GQA L*2*Hkv*Dh elements
    double kv_mha_bytes_per_token;  // the equivalent full multi-head cache L*H*(Dqk+Dv)
    double mem_weights, mem_grads, mem_optim;  // training bytes per device
    double mem_acts, mem_acts_recompute;       // activations without / with full recomputation
} fg_cost_model;

// Fills r for c. Returns -1 with an error for bad options (context, batch, seq, devices < 1).
int fg_cost_model_compute(fg_cost_model *r, const fg_config *c, const fg_cost_opts *o);

// ---- communication of a distributed step (src/cost/comm_cost.c, docs/distributed.md) ---------
// Bytes each rank sends per optimizer step, by kind, with src/dist/comm.h's convention (ring
// all-reduce 2(p-1)/p * S, all-gather (p-1)/p * S, all-to-all the bytes addressed to other ranks),
// and the time they take on a link. The same counts frugal train measures and logs (comm_bytes).
// The kinds of collective counted, in this order wherever bytes are given per kind.
enum { FG_COMM_ALLREDUCE, FG_COMM_ALLGATHER, FG_COMM_ALLTOALL, FG_COMM_KINDS };

typedef struct {
    char name[32];
    double gbs;          // bandwidth per rank, one direction, GB/s
    double latency_us;   // per message hop
    const char *source;
} fg_link;
int fg_link_count(void);
const fg_link *fg_link_get(int i);
const fg_link *fg_link_find(const char *name); // NULL with an error listing the names

typedef struct {
    int ranks, ep, zero;     // ranks (all data-parallel), expert-parallel group size, ZeRO-1 on
    double params;           // floats in the gradient all-reduce: every stored parameter
    double expert_params;    // of which routed experts (with ep > 1: reduced over ranks / ep only)
    double tokens_per_rank;  // tokens one rank runs per step (its micro-batches x B x T)
    int moe_layers, K, C;    // the MoE layers' all-to-all: tokens x K choices of C values
    double elem_bytes;       // bytes per element communicated (frugal's CPU trainer: 4)
} fg_comm_plan;

typedef struct {
    double bytes[FG_COMM_KINDS]; // per rank per step, by kind
    double seconds;          // on the link: bytes / bandwidth + hops x latency
    int collectives;         // calls per step (buckets of 16 MiB for the all-reduce)
} fg_comm_cost;

// The plan of training c over ranks (fills params, expert_params, moe_layers, K, C from c).
void fg_comm_plan_for(fg_comm_plan *p, const fg_config *c, int ranks, int ep, int zero, double tokens_per_rank,
                      double elem_bytes);
// link NULL: the bytes and collectives only (seconds 0).
void fg_cost_comm(fg_comm_cost *out, const fg_comm_plan *p, const fg_link *link);

// This machine's measured peaks (src/cost/peaks.c), cached per CPU model and thread count in
// $FRUGAL_CACHE_DIR/peaks.json (default ~/.cache/frugal/peaks.json).
typedef struct {
    char cpu[128];
    int threads;
    double fp32_gflops;     // FMA on every thread
    double bf16_gflops;     // AVX512-BF16 dot products (0: not present)
    double amx_gflops;      // AMX tdpbf16ps tiles (0: not usable here; never measured on real AMX hardware so far)
    int amx_present;        // the CPU reports AMX-TILE and AMX-BF16 (usable or not)
    double mem_gbs;         // streaming read bandwidth over a buffer far beyond the caches
    int cached;             // 1: read from the cache file
    double measured_at;     // when (Unix seconds; 0: unknown, an older cache)
    double load1;           // the 1-minute load average then (-1: unknown)
    double cpu_share;       // CPU time the fp32 measurement got / (wall x threads): < 1 means other work ran
} fg_peaks;
// Reads the cache, or measures (about a second) and writes it, with when and under what load.
// remeasure: ignore the cache.
int fg_peaks_get(fg_peaks *p, int remeasure);
// A run achieved `gflops` fp32 FLOP/s, more than p->fp32_gflops: the peak was measured under
// load. Measures again and caches the larger of the two; if the run still beats it, the run's
// rate itself becomes the peak. *p is updated either way, so p->fp32_gflops >= gflops after.
int fg_peaks_beaten(fg_peaks *p, double gflops);

// The measured ledger a training run writes beside its checkpoint (OUT/ledger.json, docs/cost.md).
typedef struct {
    double tokens, steps;
    double train_flops, eval_flops, teacher_flops; // model FLOPs (formula above); teacher: distill
    double flops_per_token;                         // training, at the run's seq
    double wall_s, cpu_s;                           // summed over every segment of a resumed run
    double mfu;                                     // (train + eval FLOPs) / (wall_s * fp32 peak), <= 1;
                                                    //   NAN when a ledger records more (a peak measured under load)
    double fp32_gflops;                             // the peak used
    double best_val_loss;                           // NAN when no validation ran
    double best_val_step;
    double task_accuracy;                           // NAN until `frugal eval` records one
    double params_total, params_active;
    int seq, segments;
    double cache_bytes;                             // distill: teacher cache size (0 = none)
    double rollout_flops, reference_flops;          // rl: sampling (+ the sampling policy's log-probs) and reference forwards
    // Over MPI (docs/distributed.md): the last segment's layout, the bytes rank 0 sent over the run
    // by kind (FG_COMM_*: all-reduce, all-gather, all-to-all; every segment), and the cost model's
    // count per step for the layout (fg_cost_comm). ranks 0: one process, no section.
    int ranks, ep, zero;
    double comm_bytes[FG_COMM_KINDS], comm_analytic_step[FG_COMM_KINDS];
} fg_ledger_info;
int fg_ledger_read(const char *run_dir, fg_ledger_info *li);
// The same from the bytes of a ledger.json (path names it in errors). 0, or -1 with the error.
int fg_ledger_parse(fg_ledger_info *li, const char *text, size_t len, const char *path);
// Records a held-out task accuracy in run_dir/ledger.json (which must exist), rewriting it atomically.
int fg_ledger_record_accuracy(const char *run_dir, const fg_config *c, double accuracy);
// First validation loss <= target in run_dir/log.jsonl: returns 1 and the tokens and step trained
// by then, 0 when never reached, -1 on error.
int fg_ledger_reach(const char *run_dir, double target_loss, double *tokens, double *step);

#ifdef __cplusplus
}
#endif
#endif
