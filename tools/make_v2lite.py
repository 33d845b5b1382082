#!/usr/bin/env python3
# make_v2lite.py: writes a Hugging Face checkpoint directory with DeepSeek-V2-Lite's shapes and
# random BF16 weights (15.7B parameters, 31 GB at the full 27 layers), for load and decode tests
# of models larger than RAM. Nothing it writes belongs in git: point it at /tmp or /work/.cache.
#
#   python3 tools/make_v2lite.py OUTDIR [--layers N] [--shard-gb G]
#
# --layers N keeps V2-Lite's widths with N layers (layer 0 dense, the rest MoE) so that a smaller
# copy fits in RAM as fp32 (N = 2: 1.3B parameters). Shards of about G GB (default 5) are named as
# released checkpoints are (model-0000k-of-0000n.safetensors + model.safetensors.index.json).
# Weights: normal(0, 0.02)-like BF16 values drawn once into a 64 Mi pool and copied from random
# offsets (generating 15.7e9 fresh normals would take minutes; the values' statistics do not matter
# for loading and speed tests). Norm weights are 1. Needs only numpy; writes at disk speed.
import argparse
import json
import os
import struct
import sys

import numpy as np

CONFIG = {
    "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "torch_dtype": "bfloat16",
    "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408,
    "num_hidden_layers": 27, "first_k_dense_replace": 1, "moe_layer_freq": 1, "num_attention_heads": 16,
    "num_key_value_heads": 16, "q_lora_rank": None, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64, "n_shared_experts": 2,
    "num_experts_per_tok": 6, "scoring_func": "softmax", "topk_method": "greedy", "n_group": 1, "topk_group": 1,
    "norm_topk_prob": False, "routed_scaling_factor": 1.0, "rms_norm_eps": 1e-6, "rope_theta": 10000,
    "max_position_embeddings": 163840, "hidden_act": "silu", "tie_word_embeddings": False,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                     "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
    "bos_token_id": 100000, "eos_token_id": 100001,
}


def tensors(c):
    C, V, H = c["hidden_size"], c["vocab_size"], c["num_attention_heads"]
    Dn, Dr, Dv, R = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    E, Fe, F = c["n_routed_experts"], c["moe_intermediate_size"], c["intermediate_size"]
    Fs = c["n_shared_experts"] * Fe
    yield "model.embed_tokens.weight", (V, C)
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", (C,)
        yield p + "self_attn.q_proj.weight", (H * (Dn + Dr), C)
        yield p + "self_attn.kv_a_proj_with_mqa.weight", (R + Dr, C)
        yield p + "self_attn.kv_a_layernorm.weight", (R,)
        yield p + "self_attn.kv_b_proj.weight", (H * (Dn + Dv), R)
        yield p + "self_attn.o_proj.weight", (C, H * Dv)
        yield p + "post_attention_layernorm.weight", (C,)
        if l < c["first_k_dense_replace"]:
            for n, s in (("gate_proj", (F, C)), ("up_proj", (F, C)), ("down_proj", (C, F))):
                yield p + f"mlp.{n}.weight", s
        else:
            yield p + "mlp.gate.weight", (E, C)
            for e in range(E):
                for n, s in (("gate_proj", (Fe, C)), ("up_proj", (Fe, C)), ("down_proj", (C, Fe))):
                    yield p + f"mlp.experts.{e}.{n}.weight", s
            for n, s in (("gate_proj", (Fs, C)), ("up_proj", (Fs, C)), ("down_proj", (C, Fs))):
                yield p + f"mlp.shared_experts.{n}.weight", s
    yield "model.norm.weight", (C,)
    yield "lm_head.weight", (V, C)


def main():
    ap = argparse.ArgumentParser(description="a V2-Lite-shaped random BF16 Hugging Face checkpoint")
    ap.add_argument("outdir")
    ap.add_argument("--layers", type=int, default=27)
    ap.add_argument("--shard-gb", type=float, default=5.0)
    a = ap.parse_args()
    c = dict(CONFIG, num_hidden_layers=a.layers)
    os.makedirs(a.outdir, exist_ok=True)
    rng = np.random.default_rng(0)
    pool_f = (rng.standard_normal(1 << 26) * 0.02).astype(np.float32)
    pool = (pool_f.view(np.uint32) >> 16).astype(np.uint16)  # truncation is fine for random data
    one = np.full(1, 0x3F80, np.uint16)  # bf16 1.0
    ts = list(tensors(c))
    limit = int(a.shard_gb * 1e9)
    shards, cur, size = [], [], 0
    for name, shape in ts:
        nb = int(np.prod(shape)) * 2
        if cur and size + nb > limit:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, shape))
        size += nb
    shards.append(cur)
    wm, total, n_params = {}, 0, 0
    for k, part in enumerate(shards):
        fn = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in part:
            nb = int(np.prod(shape)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + nb]}
            off += nb
            wm[name] = fn
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * ((8 - len(hb) % 8) % 8)
        path = os.path.join(a.outdir, fn)
        with open(path + ".tmp", "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for name, shape in part:
                n = int(np.prod(shape))
                n_params += n
                if len(shape) == 1:
                    f.write(np.repeat(one, n).tobytes())
                    continue
                done = 0
                while done < n:
                    k2 = min(n - done, 1 << 24)
                    o = int(rng.integers(0, len(pool) - k2 + 1))
                    f.write(pool[o:o + k2].tobytes())
                    done += k2
        os.replace(path + ".tmp", path)
        total += off
        print(f"{fn}: {len(part)} tensors, {off / 1e9:.2f} GB", file=sys.stderr)
    with open(os.path.join(a.outdir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f)
    with open(os.path.join(a.outdir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    print(f"{a.outdir}: {n_params / 1e9:.2f}B parameters, {total / 1e9:.1f} GB BF16 in {len(shards)} shards")


if __name__ == "__main__":
    main()
