#!/usr/bin/env python3
# gguf_dequant.py GGUF_PY_DIR MODEL.gguf OUT.bin: every tensor of MODEL.gguf dequantised to float32
# by llama.cpp's own reference code (gguf-py's GGUFReader and gguf.quants.dequantize, from the
# llama.cpp source tree tests/llama_cpp.sh fetched): the oracle of test_llama_cpp.c's bit-exact
# block check. OUT.bin: per tensor, u32 name length, the name, u32 GGML type, u64 element count,
# that many float32 (row-major as stored).
import struct
import sys

import numpy as np

sys.path.insert(0, sys.argv[1])
import gguf  # noqa: E402

r = gguf.GGUFReader(sys.argv[2])
with open(sys.argv[3], "wb") as f:
    for t in r.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        name = t.name.encode()
        f.write(struct.pack("<I", len(name)) + name + struct.pack("<IQ", int(t.tensor_type), x.size))
        f.write(x.tobytes())
