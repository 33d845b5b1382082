#!/usr/bin/env python3
# Run with Debian's interpreter (torch):  /usr/bin/python3 tests/ref/distill_ref.py IN OUT DIV T ALPHA LAMBDA BETA K
"""
PyTorch reference for frugal's distillation losses (src/distill/loss.c), written from the papers'
definitions with autograd for the gradient, in float64:
  loss = mean over rows with target >= 0 of alpha * CE(z, y) + (1 - alpha) * T^2 * D(p_T, q_T)
  fkl  KL(p||q); rkl KL(q||p); skl KL(p || lam p + (1-lam) q)  (DistiLLM);
  srkl KL(q || (1-lam) p + lam q) (DistiLLM);  jsd beta KL(p||m) + (1-beta) KL(q||m), m = beta p + (1-beta) q (GKD)
K = 0: the teacher is full logits (p_T = softmax(t / T)). K > 0: the teacher is its top-K tokens at
temperature T (log-probs) plus one tail bucket; the student is collapsed onto the same K+1 buckets.
IN (little-endian float64): N, V, then z (N*V), y (N), and either t (N*V) or ids (N*K), logp (N*K), logtail (N).
OUT (float64): loss, then dloss/dz (N*V).
"""
import struct
import sys

import torch


def kl(a, la, lb):  # sum a (log a - log b), 0 log 0 = 0
    return torch.where(a > 0, a * (la - lb), torch.zeros_like(a)).sum(-1)


def divergence(div, lp, lq, lam, beta):
    p, q = lp.exp(), lq.exp()
    if div == "fkl":
        return kl(p, lp, lq)
    if div == "rkl":
        return kl(q, lq, lp.clamp(min=-1000.0))
    if div == "skl":
        lm = torch.log(lam * p + (1 - lam) * q)
        return kl(p, lp, lm)
    if div == "srkl":
        lm = torch.log((1 - lam) * p + lam * q)
        return kl(q, lq, lm)
    if div == "jsd":
        lm = torch.log(beta * p + (1 - beta) * q)
        return beta * kl(p, lp, lm) + (1 - beta) * kl(q, lq, lm)
    raise SystemExit("unknown divergence " + div)


def main():
    inp, outp, div = sys.argv[1], sys.argv[2], sys.argv[3]
    T, alpha, lam, beta = (float(x) for x in sys.argv[4:8])
    K = int(sys.argv[8])
    raw = open(inp, "rb").read()
    vals = torch.tensor(struct.unpack("<%dd" % (len(raw) // 8), raw), dtype=torch.float64)
    N, V = int(vals[0]), int(vals[1])
    o = 2
    z = vals[o:o + N * V].reshape(N, V).clone().requires_grad_(True); o += N * V
    y = vals[o:o + N].long(); o += N
    lq_full = torch.log_softmax(z / T, -1)
    if K == 0:
        t = vals[o:o + N * V].reshape(N, V)
        lp, lq = torch.log_softmax(t / T, -1), lq_full
    else:
        ids = vals[o:o + N * K].reshape(N, K).long(); o += N * K
        logp = vals[o:o + N * K].reshape(N, K); o += N * K
        logtail = vals[o:o + N]
        q = lq_full.exp()
        tail_mask = torch.ones(N, V, dtype=torch.bool)
        tail_mask.scatter_(1, ids, False)
        q_tail = (q * tail_mask).sum(-1, keepdim=True)
        lq = torch.cat([torch.gather(lq_full, 1, ids), torch.log(q_tail)], -1)
        lp = torch.cat([logp, logtail[:, None]], -1)
    d = divergence(div, lp, lq, lam, beta)
    ce = torch.nn.functional.cross_entropy(z, y.clamp(min=0), reduction="none")
    keep = (y >= 0).double()
    loss = ((alpha * ce + (1 - alpha) * T * T * d) * keep).sum() / keep.sum()
    loss.backward()
    with open(outp, "wb") as f:
        f.write(struct.pack("<d", loss.item()))
        f.write(struct.pack("<%dd" % (N * V), *z.grad.reshape(-1).tolist()))


if __name__ == "__main__":
    main()
