// route.c: DeepSeekMoE routing for one token (see route.h for the contract).
//
// Deliberately scalar and per token: E and K are small, and the caller parallelises over tokens.
// Ties keep the lowest expert index (strict > in every argmax), so routing is deterministic.
#include "model/route.h"

#include <math.h>

// Picks the experts of one token. s: scores (E); bias: selection bias or NULL; idx (K) out.
// sel (E): scratch, ends as the biased (and group-masked) selection scores.
static void route_select(int *idx, const float *s, const float *bias, const fg_config *c, float *sel) {
    int E = c->n_routed_experts, K = c->num_experts_per_tok, G = c->n_group;
    for (int e = 0; e < E; e++) sel[e] = s[e] + (bias ? bias[e] : 0.0f);
    if (G > 1) {
        int per = E / G;
        float gs[64];
        int keep[64];
        for (int g = 0; g < G; g++) {
            const float *x = sel + g * per;
            if (c->topk_method == FG_TOPK_NOAUX_TC) { // sum of the top-2 in the group
                float m1 = -INFINITY, m2 = -INFINITY;
                for (int i = 0; i < per; i++) {
                    if (x[i] > m1) { m2 = m1; m1 = x[i]; } else if (x[i] > m2) m2 = x[i];
                }
                gs[g] = per > 1 ? m1 + m2 : m1;
            } else {
                float m1 = -INFINITY;
                for (int i = 0; i < per; i++) m1 = x[i] > m1 ? x[i] : m1;
                gs[g] = m1;
            }
            keep[g] = 0;
        }
        for (int j = 0; j < c->topk_group; j++) {
            int best = -1;
            for (int g = 0; g < G; g++) if (!keep[g] && (best < 0 || gs[g] > gs[best])) best = g;
            keep[best] = 1;
        }
        for (int g = 0; g < G; g++)
            if (!keep[g]) for (int i = 0; i < per; i++) sel[g * per + i] = -INFINITY;
    }
    for (int k = 0; k < K; k++) { // K passes of argmax: K and E are small
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= idx[j] == e;
            if (!taken && (best < 0 || sel[e] > sel[best])) best = e;
        }
        idx[k] = best;
    }
}

void fg_moe_route(int *idx, float *wts, float *s, const float *bias, const fg_config *c) {
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    float sel[1024];
    if (c->scoring_func == FG_SCORE_SOFTMAX) {
        float mx = -INFINITY, sum = 0;
        for (int e = 0; e < E; e++) mx = s[e] > mx ? s[e] : mx;
        for (int e = 0; e < E; e++) { s[e] = expf(s[e] - mx); sum += s[e]; }
        for (int e = 0; e < E; e++) s[e] /= sum;
    } else {
        for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-s[e]));
    }
    route_select(idx, s, bias, c, sel);
    float sum = 0;
    for (int k = 0; k < K; k++) { wts[k] = s[idx[k]]; sum += wts[k]; }
    for (int k = 0; k < K; k++)
        wts[k] = (c->norm_topk_prob ? wts[k] / sum : wts[k]) * c->routed_scaling_factor;
}
