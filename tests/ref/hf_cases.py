#!/usr/bin/env python3
# Run with Debian's interpreter, which has torch and numpy:   /usr/bin/python3 tests/ref/hf_cases.py OUTDIR
"""
Tiny random checkpoints in the Hugging Face layout, one per architecture frugal imports, with the
reference logits of ref.py's model code (written from the papers; see ref.py's docstring).

  hf_cases.py OUTDIR        writes OUTDIR/<case>/ (config.json, safetensors, index, tokenizer.json)
                            and OUTDIR/<case>.expected.safetensors (input_ids, logits[, logits_fp32,
                            mtp_logits.<k>])

Cases (vocab 320, 2 x 16 tokens):
  dsv2_softmax   DeepseekV2ForCausalLM: MLA without q compression, softmax greedy top-3, 2 shared
                 experts, F32, sharded in two files with model.safetensors.index.json; config.json
                 announces an MTP layer of which the files hold 3 tensors (frugal must skip it)
  dsv3_yarn_bf16 DeepseekV3ForCausalLM: q compression, sigmoid noaux_tc with 4 groups keep 2,
                 YaRN (factor 4, original 16, max 64), BF16 (routing bias F32), a whole MTP layer
                 (num_nextn_predict_layers 1: layer L with V3's embed_tokens / shared_head.head
                 copies) and its reference logits mtp_logits.1 (2 x 15), tokenizer.json
  dsv3_fp8       as V3 with hidden 160: matrices F8_E4M3 with 128x128 block scales
                 (weight_scale_inv, partial edge blocks); logits from the dequantised weights, and
                 logits_fp32 from the weights before quantisation (the FP8 budget)
  qwen2_f16      Qwen2ForCausalLM: GQA 4/2 heads, q/k/v biases, tied embeddings, F16, tokenizer.json
  llama3         LlamaForCausalLM: GQA 4/1 heads, rope_scaling llama3 (factor 8, low 1, high 4,
                 original 32), F32
Weights follow ref.py's random_weights (seeded); routing margins are not searched: a tie that
flips a routing decision would show up as a large logit error, never as a silent pass.
"""
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))

# ---- llama3 RoPE (Llama 3.1's published frequency rule) ------------------------------------
_orig_inv_freq = ref.inv_freq


def _inv_freq(cfg):
    l3 = getattr(cfg, "llama3", None)
    if not l3:
        return _orig_inv_freq(cfg)
    dim = cfg.rot_dim()
    f = 1.0 / cfg.theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    lo_wl = l3["orig"] / l3["low"]
    hi_wl = l3["orig"] / l3["high"]
    out = []
    for x in f:
        wl = 2 * math.pi / x
        if wl < hi_wl:
            out.append(x)
        elif wl > lo_wl:
            out.append(x / l3["factor"])
        else:
            s = (l3["orig"] / wl - l3["low"]) / (l3["high"] - l3["low"])
            out.append((1 - s) * x / l3["factor"] + s * x)
    return np.array(out)


ref.inv_freq = _inv_freq

# ---- dtypes --------------------------------------------------------------------------------


def to_bf16(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def from_bf16(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def _fp8_table():
    vals = []
    for b in range(256):
        e, m = (b >> 3) & 15, b & 7
        if e == 15 and m == 7:
            v = float("nan")
        elif e == 0:
            v = m / 8 * 2.0 ** -6
        else:
            v = (1 + m / 8) * 2.0 ** (e - 7)
        vals.append(-v if b & 0x80 else v)
    return np.array(vals, dtype=np.float64)


FP8 = _fp8_table()
_POS = np.arange(0, 127)  # codes 0x00..0x7e: the finite non-negative values, increasing


def to_fp8(x):
    """Round to the nearest E4M3 value (|x| <= 448 assumed)."""
    a = np.abs(x.astype(np.float64)).reshape(-1)
    pv = FP8[_POS]
    i = np.clip(np.searchsorted(pv, a), 1, len(pv) - 1)
    lo, hi = pv[i - 1], pv[i]
    code = np.where(a - lo <= hi - a, i - 1, i).astype(np.uint8)
    code = np.where(x.reshape(-1) < 0, code | 0x80, code).astype(np.uint8)
    return code.reshape(x.shape)


def quant_fp8_blocks(w, block=128):
    R, C = w.shape
    nbr, nbc = -(-R // block), -(-C // block)
    scale = np.zeros((nbr, nbc), np.float32)
    q = np.zeros((R, C), np.uint8)
    deq = np.zeros((R, C), np.float32)
    for i in range(nbr):
        for j in range(nbc):
            blk = w[i * block:(i + 1) * block, j * block:(j + 1) * block]
            s = np.float32(np.abs(blk).max() / 448.0)
            scale[i, j] = s
            qb = to_fp8(blk / s)
            q[i * block:(i + 1) * block, j * block:(j + 1) * block] = qb
            deq[i * block:(i + 1) * block, j * block:(j + 1) * block] = (FP8[qb] * s).astype(np.float32)
    return q, scale, deq


# ---- safetensors with any dtype ------------------------------------------------------------


def st_write(path, entries):
    """entries: [(name, dtype, shape, bytes)] written in order."""
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape, b in entries:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for e in entries:
            f.write(e[3])


# ---- cases ---------------------------------------------------------------------------------
BASE = dict(vocab_size=320, hidden_size=64, num_hidden_layers=3, rms_norm_eps=1e-6, rope_theta=10000.0,
            max_position_embeddings=64, hidden_act="silu", tie_word_embeddings=False)

CASES = {
    "dsv2_softmax": dict(arch="DeepseekV2ForCausalLM", model_type="deepseek_v2", dtype="F32", shards=2, mtp_partial=True, cfg=dict(
        BASE, intermediate_size=128, moe_intermediate_size=32, first_k_dense_replace=1, moe_layer_freq=1,
        num_attention_heads=4, num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16,
        qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=3,
        scoring_func="softmax", topk_method="greedy", n_group=1, topk_group=1, norm_topk_prob=False,
        routed_scaling_factor=1.0, rope_scaling=None, num_nextn_predict_layers=1)),
    "dsv3_yarn_bf16": dict(arch="DeepseekV3ForCausalLM", model_type="deepseek_v3", dtype="BF16",
                           tokenizer="v3_small.json", cfg=dict(
        BASE, intermediate_size=128, moe_intermediate_size=32, first_k_dense_replace=1, moe_layer_freq=1,
        num_attention_heads=4, num_key_value_heads=4, q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16,
        qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4,
        scoring_func="sigmoid", topk_method="noaux_tc", n_group=4, topk_group=2, norm_topk_prob=True,
        routed_scaling_factor=2.5, num_nextn_predict_layers=1,
        rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=16, beta_fast=32, beta_slow=1,
                          mscale=1.0, mscale_all_dim=1.0))),
    "dsv3_fp8": dict(arch="DeepseekV3ForCausalLM", model_type="deepseek_v3", dtype="FP8", cfg=dict(
        BASE, hidden_size=160, intermediate_size=320, moe_intermediate_size=144, first_k_dense_replace=1,
        moe_layer_freq=1, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=136,
        kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=8,
        n_shared_experts=1, num_experts_per_tok=2, scoring_func="sigmoid", topk_method="noaux_tc", n_group=2,
        topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5, rope_scaling=None,
        quantization_config=dict(activation_scheme="dynamic", fmt="e4m3", quant_method="fp8",
                                 weight_block_size=[128, 128]))),
    "qwen2_f16": dict(arch="Qwen2ForCausalLM", model_type="qwen2", dtype="F16", tokenizer="qwen_arrays.json", cfg=dict(
        BASE, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        use_sliding_window=False, sliding_window=64, max_window_layers=3, rope_scaling=None)),
    "llama3": dict(arch="LlamaForCausalLM", model_type="llama", dtype="F32", cfg=dict(
        BASE, intermediate_size=128, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
        attention_bias=False, mlp_bias=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=32))),
}


def ref_cfg(case):
    """ref.Cfg for a case: the HF fields plus what the architecture implies."""
    d = dict(case["cfg"])
    d["model_type"] = case["model_type"]
    llama3 = None
    if case["arch"] == "Qwen2ForCausalLM":
        d["attention_bias"] = True
    rs = d.get("rope_scaling")
    if rs and rs.get("rope_type") == "llama3":
        llama3 = dict(factor=rs["factor"], low=rs["low_freq_factor"], high=rs["high_freq_factor"],
                      orig=rs["original_max_position_embeddings"])
        d["rope_scaling"] = None
    d.pop("quantization_config", None)
    if case.get("mtp_partial"):  # config.json announces an MTP layer the files hold only in part
        d.pop("num_nextn_predict_layers", None)
    cfg = ref.Cfg(d)
    cfg.llama3 = llama3
    return cfg


def make(name, case, outdir, seed):
    cfg = ref_cfg(case)
    rng = np.random.default_rng([seed, 0])
    w = ref.random_weights(cfg, rng)
    specs = {n: k for n, _, k in ref.param_specs(cfg)}
    ids = rng.integers(0, cfg.V, size=(2, 16))
    d = os.path.join(outdir, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    entries, used, orig = [], {}, None
    dt = case["dtype"]
    if dt == "FP8":
        orig = dict(w)
    for n, a in w.items():
        if dt == "F32" or specs[n] == "rbias":
            entries.append((n, "F32", a.shape, a.astype("<f4").tobytes()))
            used[n] = a
        elif dt == "BF16":
            b = to_bf16(a)
            entries.append((n, "BF16", a.shape, b.tobytes()))
            used[n] = from_bf16(b).reshape(a.shape)
        elif dt == "F16":
            h = a.astype("<f2")
            entries.append((n, "F16", a.shape, h.tobytes()))
            used[n] = h.astype(np.float32)
        else:  # FP8: matrices other than the embedding, head and router; the rest BF16 as released
            if specs[n] == "mat" and n != "lm_head.weight":
                q, s, deq = quant_fp8_blocks(a)
                entries.append((n, "F8_E4M3", a.shape, q.tobytes()))
                entries.append((n + "_scale_inv", "F32", s.shape, s.astype("<f4").tobytes()))
                used[n] = deq
            else:
                b = to_bf16(a)
                entries.append((n, "BF16", a.shape, b.tobytes()))
                used[n] = from_bf16(b).reshape(a.shape)
    if cfg.D:  # V3's layout: each MTP layer also stores copies of the embedding and the head
        for l in range(cfg.L, cfg.L + cfg.D):
            for suffix, src in (("embed_tokens.weight", "model.embed_tokens.weight"),
                                ("shared_head.head.weight", "model.embed_tokens.weight" if cfg.tie else "lm_head.weight")):
                e = next(x for x in entries if x[0] == src)
                entries.append((f"model.layers.{l}.{suffix}", e[1], e[2], e[3]))
    if case.get("mtp_partial"):  # an MTP layer the files hold in part (a conversion that dropped most of it)
        L, C = cfg.L, cfg.C
        for suffix, shape in (("enorm.weight", (C,)), ("hnorm.weight", (C,)), ("eh_proj.weight", (C, 2 * C))):
            entries.append((f"model.layers.{L}.{suffix}", "F32", shape,
                            rng.normal(0, 0.1, size=shape).astype("<f4").tobytes()))
    shards = case.get("shards", 1)
    if shards == 1:
        st_write(os.path.join(d, "model.safetensors"), entries)
    else:
        per = -(-len(entries) // shards)
        wm, total = {}, 0
        for k in range(shards):
            fn = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            part = entries[k * per:(k + 1) * per]
            st_write(os.path.join(d, fn), part)
            for e in part:
                wm[e[0]] = fn
                total += len(e[3])
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
    hf = {"architectures": [case["arch"]], "model_type": case["model_type"], "torch_dtype": "bfloat16"}
    hf.update(case["cfg"])
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
    if case.get("tokenizer"):
        with open(os.path.join(ROOT, "fuzz", "seeds", "tokenizer_json", case["tokenizer"]), encoding="utf-8") as f:
            tj = json.load(f)
        if case["model_type"] == "qwen2":  # Qwen2's released pre-tokenizer: its Split, then ByteLevel without regex
            split = tj["pre_tokenizer"]["pretokenizers"][0]
            tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
                split, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
    P, rb = ref.split_weights(cfg, used)
    with torch.no_grad():
        res = ref.forward(cfg, ref.to_torch(P, torch.float32), ref.to_torch(rb, torch.float32),
                          torch.tensor(ids, dtype=torch.long), mtp=bool(cfg.D))
    exp = {"input_ids": ids.astype(np.float32), "logits": res[0].numpy().astype(np.float32)}
    for k, lg in enumerate(res[2] if cfg.D else [], 1):  # depth k's logits at positions 0 .. T-k-1
        exp[f"mtp_logits.{k}"] = lg.numpy().astype(np.float32)
    if orig is not None:
        P0, rb0 = ref.split_weights(cfg, orig)
        with torch.no_grad():
            l0, _ = ref.forward(cfg, ref.to_torch(P0, torch.float32), ref.to_torch(rb0, torch.float32),
                                torch.tensor(ids, dtype=torch.long))
        exp["logits_fp32"] = l0.numpy().astype(np.float32)
        err = float(np.linalg.norm(exp["logits"] - exp["logits_fp32"]) / np.linalg.norm(exp["logits_fp32"]))
        print(f"{name}: FP8 dequantised vs fp32 weights: logits relative error {err:.3e}")
    ref.st_save(os.path.join(outdir, name + ".expected.safetensors"), exp, {"format": "pt", "case": name})


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    os.makedirs(argv[1], exist_ok=True)
    for i, (name, case) in enumerate(CASES.items()):
        make(name, case, argv[1], 100 + i)
    print(f"hf_cases: {len(CASES)} cases in {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
