#!/usr/bin/python3
"""llama_keys.py LLAMA_CPP_SRC FILE.gguf...: the GGUF metadata llama.cpp requires, checked three ways.

REQUIRED below lists, per architecture frugal exports, the keys llama.cpp's loader refuses a file
without (read from llama.cpp's source: src/llama-model.cpp llama_model_base::load_hparams,
src/models/<arch>.cpp load_arch_hparams, src/llama-vocab.cpp). This script
  1. derives the same list from the source tree given (every ml.get_key / get_key_or_arr /
     get_arr / get_arr_n call without `false` as its `required` argument, outside blocks that apply
     to other architectures, plus the tokenizer arrays whose absence throws) and fails when the two
     differ, so a llama.cpp that requires a new key fails here rather than at a user's load;
  2. checks that each FILE carries every required key of its architecture;
  3. checks tokenizer.ggml.pre is a name llama.cpp's vocabulary loader knows, and that the router
     (blk.N.ffn_gate_inp.weight) is F32 (llama.cpp's converter and llama-quantize keep it F32).
Exit 0 when all hold; 1 with one line per problem. The last line of stdout is a summary.
"""
import os
import re
import struct
import sys

COMMON = ["general.architecture", "{a}.context_length", "{a}.embedding_length", "{a}.block_count",
          "{a}.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model", "tokenizer.ggml.tokens",
          "tokenizer.ggml.merges"]
REQUIRED = {
    "llama": COMMON,
    "qwen2": COMMON,
    # q_lora_rank: required unless the layer count is one of DeepSeek's Lite models (26, 27);
    # frugal writes 0 for an MLA model without q compression.
    "deepseek2": COMMON + ["{a}.attention.q_lora_rank", "{a}.attention.kv_lora_rank",
                           "{a}.expert_feed_forward_length", "{a}.expert_shared_count"],
}


def fail(msg, problems):
    problems.append(msg)


# ---- 1. what the source requires ------------------------------------------------------------
def kv_names(src):
    text = open(os.path.join(src, "src/llama-arch.cpp")).read()
    return dict(re.findall(r'\{\s*(LLM_KV_\w+)\s*,\s*"([^"]+)"\s*\}', text))


def function_body(text, signature):
    i = text.find(signature)
    if i < 0:
        return None
    j = text.index("{", i)
    depth = 0
    for k in range(j, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return text[j:k + 1]
    return None


CALL = re.compile(r"\bml\.(get_key_or_arr|get_key|get_arr_n|get_arr)\s*\(\s*(LLM_KV_\w+)")


def call_args(s, start):
    """The argument text of the call whose '(' is the first one at or after start."""
    i = s.index("(", start)
    depth = 0
    for k in range(i, len(s)):
        depth += {"(": 1, ")": -1}.get(s[k], 0)
        if depth == 0:
            return s[i + 1:k]
    return s[i + 1:]


def required_calls(body):
    """LLM_KV ids of calls that are required, outside `if (... arch ...)` blocks."""
    out = set()
    stack = []  # per open brace: does it belong to an arch-specific if?
    pending = ""
    for line in body.split("\n"):
        s = line.strip()
        # a call is judged before the braces of its own line are counted
        if not any(stack):
            for m in CALL.finditer(s):
                args = call_args(s, m.start())
                if not re.search(r",\s*false\s*$", args.strip()):
                    out.add(m.group(2))
        for ch in s:
            if ch == "{":
                head = pending + s[:s.find("{")]
                stack.append(bool(re.search(r"\bif\b.*\b(arch|LLM_ARCH_\w+|vocab_only)\b", head)))
                pending = ""
            elif ch == "}":
                if stack:
                    stack.pop()
        if "{" not in s and "}" not in s:
            pending = s if s.startswith("if") or s.startswith("} else") else ""
    return out


def derived(src):
    names = kv_names(src)
    model = open(os.path.join(src, "src/llama-model.cpp")).read()
    base = function_body(model, "void llama_model_base::load_hparams(")
    if base is None:
        sys.exit("llama_keys.py: llama_model_base::load_hparams not found in %s: the source layout changed" % src)
    common = required_calls(base) - {"LLM_KV_GENERAL_NAME"}
    vocab = open(os.path.join(src, "src/llama-vocab.cpp")).read()
    # tokenizer arrays: gguf_find_key(... kv(LLM_KV_X) ...) followed by `throw ... cannot find`
    toks = set()
    lines = vocab.split("\n")
    for i, l in enumerate(lines):
        m = re.search(r"gguf_find_key\(ctx, kv\((LLM_KV_TOKENIZER_\w+)\)", l)
        if m and any("throw std::runtime_error(\"cannot find" in x for x in lines[i + 1:i + 8]):
            toks.add(m.group(1))
    vbody = function_body(vocab, "void llama_vocab::impl::load(")
    toks |= {k for k in required_calls(vbody or "") if k.startswith("LLM_KV_TOKENIZER")}
    pres = set(re.findall(r'tokenizer_pre\s*==\s*"([^"]+)"', vocab))
    out = {}
    for arch in REQUIRED:
        body = function_body(open(os.path.join(src, "src/models/%s.cpp" % arch)).read(), "::load_arch_hparams(")
        ids = common | required_calls(body or "") | toks
        out[arch] = {"general.architecture"} | {names[i].replace("%s", "{a}") for i in ids if i in names}
    return out, pres


# ---- 2. what a file carries -----------------------------------------------------------------
def gguf_read(path):
    b = open(path, "rb").read()
    if b[:4] != b"GGUF":
        raise ValueError("not a GGUF file")
    ver, nt, nkv = struct.unpack_from("<IQQ", b, 4)
    o = 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def rstr(o):
        n, = struct.unpack_from("<Q", b, o)
        return b[o + 8:o + 8 + n].decode(), o + 8 + n

    def rval(t, o):
        if t == 8:
            return rstr(o)
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, o)
            o += 12
            vals = []
            for _ in range(n):
                v, o = rval(et, o)
                vals.append(v)
            return vals, o
        fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}[t]
        return struct.unpack_from("<" + fmt, b, o)[0], o + sizes[t]

    kv = {}
    for _ in range(nkv):
        k, o = rstr(o)
        t, = struct.unpack_from("<I", b, o)
        v, o = rval(t, o + 4)
        kv[k] = v
    tensors = {}
    for _ in range(nt):
        name, o = rstr(o)
        nd, = struct.unpack_from("<I", b, o)
        o += 4 + 8 * nd
        typ, off = struct.unpack_from("<IQ", b, o)
        o += 12
        tensors[name] = typ
    return kv, tensors


def main(argv):
    if len(argv) < 2:
        sys.exit("usage: llama_keys.py LLAMA_CPP_SRC FILE.gguf...")
    problems = []
    want, pres = derived(argv[1])
    for arch, keys in REQUIRED.items():
        listed = set(keys)
        for k in sorted(want[arch] - listed):
            fail("llama.cpp requires %s of %s files, which REQUIRED does not list (and frugal may not write)" % (k, arch), problems)
        for k in sorted(listed - want[arch]):
            fail("REQUIRED lists %s for %s, which llama.cpp's source no longer requires (or the parser missed it)" % (k, arch), problems)
    if not pres or "gpt-2" not in pres:
        fail("no pre-tokenizer names found in llama-vocab.cpp (parser out of date?)", problems)
    seen = {}
    for path in argv[2:]:
        try:
            kv, tensors = gguf_read(path)
        except Exception as e:  # noqa: BLE001 - any parse error is a failure of the file
            fail("%s: cannot read: %s" % (path, e), problems)
            continue
        arch = kv.get("general.architecture")
        if arch not in REQUIRED:
            fail("%s: architecture %r is not one frugal exports" % (path, arch), problems)
            continue
        seen[arch] = seen.get(arch, 0) + 1
        for k in REQUIRED[arch]:
            if k.format(a=arch) not in kv:
                fail("%s: required key %s is missing" % (path, k.format(a=arch)), problems)
        pre = kv.get("tokenizer.ggml.pre")
        if pre is not None and pre not in pres:
            fail("%s: tokenizer.ggml.pre %r is not a name llama.cpp knows" % (path, pre), problems)
        for name, typ in tensors.items():
            if name.endswith("ffn_gate_inp.weight") and typ != 0:
                fail("%s: router %s has ggml type %d, not F32" % (path, name, typ), problems)
    for p in problems:
        print("FAIL: " + p)
    summary = ", ".join("%s %d keys" % (a, len(k)) for a, k in REQUIRED.items())
    files = ", ".join("%d %s" % (n, a) for a, n in sorted(seen.items()))
    print("%s: required keys (%s) match llama.cpp's source; %s file(s) (%s) carry them, known pre-tokenizer, F32 router"
          % ("FAILED" if problems else "ok", summary, len(argv) - 2, files or "none"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
