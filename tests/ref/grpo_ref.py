#!/usr/bin/env python3
# Run with Debian's interpreter (torch):
#   /usr/bin/python3 tests/ref/grpo_ref.py IN OUT CLIP_LO CLIP_HI BETA TOKEN_LEVEL NO_LEN_NORM MAX_LEN STD_NORM
#   /usr/bin/python3 tests/ref/grpo_ref.py --batch FILE    (one line of the nine arguments per case:
#                                                           torch is imported once)
"""
PyTorch reference for frugal's GRPO objective (src/train/grpo.c), written from the papers with
autograd for the gradient, in float64.

Advantages (DeepSeekMath sec. 4.1.2, outcome supervision; Dr. GRPO drops the std):
  A_i = (r_i - mean(r_group)) / (std(r_group) + 1e-4)     std: population (divide by G)
  A_i = r_i - mean(r_group)                               STD_NORM = 0
  a group whose rewards are all equal gets A = 0.
Objective (DeepSeekMath eq. 3, with DAPO's asymmetric clip), per completion token t of sequence i:
  logp   = log_softmax(logits)[token]
  ratio  = exp(logp - logp_old)
  surr   = min(ratio A_i, clamp(ratio, 1 - CLIP_LO, 1 + CLIP_HI) A_i)
  kl     = exp(ref - logp) - (ref - logp) - 1                (k3, DeepSeekMath eq. 4)
  l      = -surr + BETA kl
  loss   = mean over non-empty sequences of (sum_t l) / |o_i|     GRPO
         = (sum over all tokens of l) / (number of tokens)        DAPO, TOKEN_LEVEL = 1
         = mean over non-empty sequences of (sum_t l) / MAX_LEN   Dr. GRPO, NO_LEN_NORM = 1 (wins)
Sequences with no completion token are left out of every mean.
IN (little-endian float64): S, T, V, G, logits (S*T*V), tokens (S*T; -1 = none, only off the
mask), logp_old (S*T), logp_ref (S*T), mask (S*T, 0/1), rewards (S).
OUT (float64): loss, pg_loss, kl (without BETA), clip_frac, advantages (S), entropy (S*T),
d loss / d logits (S*T*V).
"""
import struct
import sys

import torch


def advantages(r, G, std_norm):
    g = r.reshape(-1, G)
    mean = g.mean(-1, keepdim=True)
    std = g.std(-1, unbiased=False, keepdim=True)
    a = g - mean
    if std_norm:
        a = a / (std + 1e-4)
    flat = (g == g[:, :1]).all(-1, keepdim=True)
    return torch.where(flat, torch.zeros_like(a), a).reshape(-1)


def run(args):
    inp, outp = args[0], args[1]
    clip_lo, clip_hi, beta = (float(x) for x in args[2:5])
    token_level, no_len_norm, max_len, std_norm = (int(x) for x in args[5:9])
    raw = open(inp, "rb").read()
    vals = torch.tensor(struct.unpack("<%dd" % (len(raw) // 8), raw), dtype=torch.float64)
    S, T, V, G = (int(x) for x in vals[:4])
    o = 4

    def take(n):
        nonlocal o
        x = vals[o:o + n]
        o += n
        return x

    logits = take(S * T * V).reshape(S, T, V).clone().requires_grad_(True)
    tok = take(S * T).reshape(S, T).long()
    logp_old = take(S * T).reshape(S, T)
    logp_ref = take(S * T).reshape(S, T)
    mask = take(S * T).reshape(S, T)
    rewards = take(S)

    adv = advantages(rewards, G, std_norm)
    lsm = torch.log_softmax(logits, -1)
    entropy = -(lsm.exp() * lsm).sum(-1)
    logp = torch.gather(lsm, 2, tok.clamp(min=0)[..., None])[..., 0]
    A = adv[:, None]
    ratio = torch.exp(logp - logp_old)
    unclipped, clipped = ratio * A, torch.clamp(ratio, 1 - clip_lo, 1 + clip_hi) * A
    surr = torch.min(unclipped, clipped)
    x = logp_ref - logp
    kl = torch.exp(x) - x - 1 if beta != 0 else torch.zeros_like(logp)
    n = mask.sum(-1)
    live = n > 0

    def reduce(per_token):
        per_token = per_token * mask
        if no_len_norm:
            return (per_token.sum(-1)[live] / max_len).mean() if live.any() else per_token.sum()
        if token_level:
            return per_token.sum() / n.sum() if live.any() else per_token.sum()
        return (per_token.sum(-1)[live] / n[live]).mean() if live.any() else per_token.sum()

    pg, klv = reduce(-surr), reduce(kl)
    loss = pg + beta * klv
    loss.backward()
    clip_frac = (((clipped < unclipped).double() * mask).sum() / mask.sum()).item() if live.any() else 0.0
    with open(outp, "wb") as f:
        f.write(struct.pack("<4d", loss.item(), pg.item(), klv.item(), clip_frac))
        f.write(struct.pack("<%dd" % S, *adv.tolist()))
        f.write(struct.pack("<%dd" % (S * T), *entropy.detach().reshape(-1).tolist()))
        f.write(struct.pack("<%dd" % (S * T * V), *logits.grad.reshape(-1).tolist()))


def main():
    if sys.argv[1] == "--batch":
        for line in open(sys.argv[2]):
            if line.strip():
                run(line.split())
    else:
        run(sys.argv[1:])


if __name__ == "__main__":
    main()
