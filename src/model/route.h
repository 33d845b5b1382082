// route.h: DeepSeekMoE token routing (docs/model.md), shared by the training forward (model.c) and
// the decoder (infer/generate.c) so both pick the same experts with the same weights, bit for bit.
//
// Internal header. Routing here is selection plus weights; the expert FFNs and the weighted sum
// are the caller's. Not differentiated: model.c's backward uses the saved scores, idx and weights.
#ifndef FG_ROUTE_H
#define FG_ROUTE_H

#include "frugal.h"

// Routes one token. On entry s (E) holds the gate logits x @ W_gate^T; on exit it holds the scores
// (softmax or sigmoid, without the bias). idx (K) receives the chosen experts in selection order,
// wts (K) their final weights (original scores, normalised if norm_topk_prob, times
// routed_scaling_factor). bias (E) is the noaux_tc selection bias or NULL; it steers the choice
// only. Group-limited selection (n_group > 1) as in DeepSeek-V2/V3. Needs E <= 1024 (validated).
void fg_moe_route(int *idx, float *wts, float *s, const float *bias, const fg_config *c);

#endif
