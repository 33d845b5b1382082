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


#endif
