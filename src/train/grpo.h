// grpo.h: the GRPO objective (DeepSeekMath, DeepSeek-R1) and its DAPO / Dr. GRPO variants, as
// math only: group-normalised advantages, the clipped surrogate + KL loss over per-token
// log-probabilities with its gradient, and the log-softmax gather that links log-probs to logits.
// The `frugal rl` loop (sampling, verifying, the training forward) lives elsewhere; it calls
//   fg_grpo_advantages -> (forward) -> fg_logp_rows -> fg_grpo_loss -> fg_logp_backward
//   -> fg_model_backward_dlogits (model/model.h).
// Internal header (not part of include/). Nothing here parses untrusted bytes: no fuzz target.
//
// Shapes: S sequences (completions) of T positions, S = ngroups * G (G completions per prompt,
// group g is sequences g*G .. g*G+G-1); N rows of V logits (N = S*T for the whole batch).
//
// The objective, per sequence i and completion token t (mask[i,t] != 0), A_i its advantage:
//   r_it   = exp(logp_it - logp_old_it)                       (policy ratio)
//   surr_it = min(r_it A_i, clip(r_it, 1 - clip_lo, 1 + clip_hi) A_i)
//   kl_it  = exp(ref_it - logp_it) - (ref_it - logp_it) - 1   (k3 estimator of KL(pi || pi_ref))
//   l_it   = -surr_it + beta * kl_it
// and the loss is a weighted sum  loss = sum_it w_it l_it  with, n_i = sum_t mask[i,t] the
// sequence's completion length, S' = #{i : n_i > 0} the non-empty sequences, M = sum_i n_i:
//   GRPO (default)      w_it = 1 / (S' n_i)        mean over tokens, then over sequences
//   token_level = 1     w_it = 1 / M               DAPO: every token of the batch weighs the same
//   no_len_norm = 1     w_it = 1 / (S' max_len)    Dr. GRPO: a constant instead of n_i (wins over
//                                                  token_level: with a constant there is no choice
//                                                  left between the two)
// Empty sequences (n_i = 0) contribute nothing and are not counted in S', so zeroing the mask of
// a group (DAPO's dynamic sampling) equals removing it from the batch. An empty batch (M = 0) has
// loss 0 and gradient 0. The gradient of min(.) follows the active branch: where the clipped
// branch is strictly smaller (A > 0 and r > 1 + clip_hi, or A < 0 and r < 1 - clip_lo) the token
// gets no surrogate gradient (PPO's standard one); elsewhere d surr / d logp = r A.
// Sums run in double; inputs and outputs are float.
#ifndef FG_GRPO_H
#define FG_GRPO_H

#include <stdint.h>

typedef struct {
    float clip_lo, clip_hi; // PPO ratio clip: [1 - clip_lo, 1 + clip_hi] (DAPO: asymmetric, e.g. 0.2 / 0.28)
    float beta;             // KL(pi || pi_ref) coefficient, k3 estimator: exp(ref - logp) - (ref - logp) - 1
    int token_level;        // 1: DAPO token-level normalisation (sum over all tokens / total tokens);
                            // 0: GRPO per-sequence mean, then mean over (non-empty) sequences
    int no_len_norm;        // Dr. GRPO: per-sequence sum / max_len (a constant), then mean over sequences
    int max_len;            // the constant for no_len_norm (> 0 when no_len_norm)
} fg_grpo_opts;

// The epsilon of the std-normalised advantage.
#define FG_GRPO_ADV_EPS 1e-4

// Group-normalised advantages. rewards (ngroups*G): the verifier's scores (finite), G per prompt.
//   std_norm = 1 (GRPO):     adv[g*G+i] = (r - mean_g) / (std_g + FG_GRPO_ADV_EPS), std_g the
//                            population standard deviation (divide by G, not G - 1)
//   std_norm = 0 (Dr. GRPO): adv[g*G+i] = r - mean_g
// A group whose rewards are all equal (always the case when G = 1) has zero variance and no
// learning signal: its advantages are exactly 0 and keep[g] = 0 (DAPO's dynamic sampling drops
// it); keep[g] = 1 otherwise. keep (ngroups) may be NULL. Returns the number of zero-variance groups.
// Writes adv (ngroups*G). Means and deviations are computed in double.
int fg_grpo_advantages(float *adv, uint8_t *keep, const float *rewards, int ngroups, int G, int std_norm);

typedef struct {
    double loss;       // the returned loss = pg_loss + beta * kl
    double pg_loss;    // sum w_it (-surr_it): the policy-gradient part, same weights as the loss
    double kl;         // sum w_it kl_it (without beta); 0 when beta == 0
    double clip_frac;  // fraction of completion tokens where the clipped branch is active and differs
    double ratio_mean; // mean of r_it over completion tokens (1 on the first step after sampling)
    long tokens;       // M: completion tokens in the batch
} fg_grpo_stats;

// The loss above. logp, logp_old, logp_ref, mask: (S, T); adv: (S). logp is the current policy's
// log-prob of the sampled token at each position, logp_old the sampling policy's, logp_ref the
// frozen reference's (read only when beta != 0; may be NULL then). mask != 0 on completion tokens.
// Writes dlogp (S, T) = d loss / d logp (0 where mask = 0); returns the loss; fills st when not
// NULL. Options out of range (negative clip, beta < 0, no_len_norm with max_len <= 0, beta != 0
// with logp_ref NULL) are programmer errors: asserted.
double fg_grpo_loss(float *dlogp, const float *logp, const float *logp_old, const float *logp_ref, const uint8_t *mask,
                    const float *adv, int S, int T, const fg_grpo_opts *o, fg_grpo_stats *st);

// Per-row log-softmax of logits (N, V) at tokens tok (N), tok < V (asserted):
// logp[i] = logits[i,tok[i]] - logsumexp(logits[i]) (N); a row without a token (tok[i] < 0, the
// -1 of an ignored target, e.g. a prompt position) gets logp 0. entropy (N, may be NULL) =
// -sum_v p log p of the row's softmax (every row). Max-subtracted, in double.
void fg_logp_rows(float *logp, float *entropy, const float *logits, const int32_t *tok, int N, int V);

// The chain rule to the logits: dlogits[i,v] = dlogp[i] * (onehot(tok[i])[v] - softmax(logits[i])[v]).
// Overwrites dlogits (N, V); rows with dlogp[i] == 0 become zeros (those are the only rows
// where tok[i] may be < 0). dlogits may be logits itself
// (in place, as fg_model_backward_dlogits(m, m->logits, ...) wants: no second (N, V) buffer).
void fg_logp_backward(float *dlogits, const float *logits, const int32_t *tok, const float *dlogp, int N, int V);

#endif
