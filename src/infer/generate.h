// generate.h: incremental decoding with a KV cache over an fg_model, token sampling, and a
// generation loop with streaming.
//
// A session (fg_infer) reads the model's weights in place (no copy) and owns its KV cache and
// scratch, both allocated once at creation; feeding tokens never allocates. Sessions only read the
// model, so several may decode from one model at once (one thread per session). If the weights
// change (training goes on), reset the session: its cache was computed from the old weights.
//
// The cache kept here is the straightforward one: for MLA, per layer and position, the full
// per-head keys H*(Dn+Dr) (k_pe roped, repeated in every head) and values H*Dv decompressed from
// the latent; for GQA, Hkv*Dh roped keys and Hkv*Dh values. The absorbed latent-only MLA cache
// (Rkv+Dr per position, docs/model.md) is a second cache kind, not built yet.
//
// Not here: batching several sessions, speculative decoding, the tokenizer.
#ifndef FG_GENERATE_H
#define FG_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "util.h"

typedef struct fg_infer fg_infer;

// Creates a decoding session for m with room for max_T positions, 1 <= max_T <=
// max_position_embeddings. m must outlive the session. Returns NULL with an error on a bad
// max_T or out of memory. Caller frees with fg_infer_free.
fg_infer *fg_infer_create(const fg_model *m, int max_T);
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
// Bytes held by the KV cache: L * max_T * (keys + values) * sizeof(float), with keys + values =
// H*(Dn+Dr) + H*Dv for MLA and 2*Hkv*Dh for GQA.
size_t fg_infer_cache_bytes(const fg_infer *s);

typedef struct {
    float temperature;      // 0 = greedy; otherwise > 0 and finite
    int top_k;              // keep the k most probable (0 = all)
    float top_p;            // then the smallest prefix with probability >= top_p, in [0, 1] (1 = all)
    uint64_t seed;          // fg_generate seeds its rng from this
    int max_new_tokens;     // >= 0
    const int32_t *stop_ids;
    int n_stop;
} fg_sample_opts;

// Picks one token from logits (V). temperature 0 is greedy: argmax, lowest id on ties (top_k 1
// is the same at any temperature). Otherwise p = softmax(logits / temperature); keep the top_k
// most probable (ties to the lower id); then, measured on those kept and renormalised (the
// Hugging Face order), the smallest most-probable prefix whose probability >= top_p; renormalise
// and draw one with rng (one fg_rng_uniform per draw; greedy and top_k 1 draw nothing).
// scratch: 2*V floats (unused when greedy).
// Returns the id, or -1 with an error for bad options (temperature < 0 or not finite, top_k < 0,
// top_p outside [0, 1], V outside [1, 2^24]).
int32_t fg_sample(const float *logits, int V, const fg_sample_opts *o, fg_rng *rng, float *scratch);

// Feeds the prompt (n_prompt >= 1), then samples up to min(max_new_tokens, cap) tokens into out,
// feeding each one back before sampling the next; stops after a stop id (included in out) and
// when the cache is full (fg_infer_pos == max_T). Calls on_token (may be NULL) with each token as
// soon as it is sampled. The last generated token is NOT fed: on return the cache holds the prompt
// and out[0 .. n-2]; to continue, start the next prompt with out[n-1]. Deterministic for o->seed.
// Returns the number generated, or -1 with an error (bad options, overflow, bad prompt id).
int fg_generate(fg_infer *s, const int32_t *prompt, int n_prompt, const fg_sample_opts *o, int32_t *out,
                int cap, void (*on_token)(int32_t id, void *ctx), void *ctx);

#endif
