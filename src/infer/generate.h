// generate.h: inference over a KV cache (the API is in frugal.h): the batched context (ctx.c:
// many sequences in one paged cache, one forward per batch of rows), the single-sequence session
// built on it (fg_infer), token sampling and a generation loop with streaming (generate.c).
//
// A context reads every weight through a typed weight store (wstore.h): an fp32 model in place,
// converted bf16 / Q8_0 buffers, or a mapped quantised file. It owns its KV cache and scratch,
// both allocated once at creation; decoding never allocates. Contexts only read the store (its
// packed GEMM panels are shared and locked), so several may decode from one store at once (one
// thread per context). If the weights change (training goes on), rebuild the store and its
// contexts: the caches and the packed panels were computed from the old weights.
//
// Cache kinds: FG_KV_FULL (MLA: per-head keys H*(Dn+Dr), k_pe roped and repeated in every head,
// and values H*Dv; GQA: Hkv*Dh roped keys and Hkv*Dh values) and FG_KV_LATENT (MLA's absorbed
// form, Rkv+Dr per position and layer, docs/model.md); either holds fp32 or bf16 values.
//
// Not here: speculative decoding, the tokenizer.
#ifndef FG_GENERATE_H
#define FG_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "util.h"


#endif
