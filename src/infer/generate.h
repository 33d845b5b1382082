// generate.h: incremental decoding with a KV cache, token sampling, and a generation loop with
// streaming (the API is in frugal.h: fg_infer_*, fg_sample, fg_generate).
//
// A session reads every weight through a typed weight store (wstore.h): an fp32 model in place,
// converted bf16 / Q8_0 buffers, or a mapped quantised file. It owns its KV cache and scratch,
// both allocated once at creation; feeding tokens never allocates. Sessions only read the store,
// so several may decode from one store at once (one thread per session). If the weights change
// (training goes on), reset the session: its cache was computed from the old weights.
//
// Cache kinds: FG_KV_FULL (MLA: per-head keys H*(Dn+Dr), k_pe roped and repeated in every head,
// and values H*Dv; GQA: Hkv*Dh roped keys and Hkv*Dh values) and FG_KV_LATENT (MLA's absorbed
// form, Rkv+Dr per position and layer, docs/model.md); either holds fp32 or bf16 values.
//
// Not here: batching several sessions, speculative decoding, the tokenizer.
#ifndef FG_GENERATE_H
#define FG_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "util.h"


#endif
