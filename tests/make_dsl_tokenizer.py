#!/usr/bin/env python3
# make_dsl_tokenizer.py OUT.json: a small tokenizer.json (the vocabulary of
# fuzz/seeds/tokenizer_json/v3_small.json) with DeepSeek-LLM's pre-tokenizer spelled as the released
# files spell it: raw characters where src/tokenizer/pretok.c writes \uXXXX escapes. Its regexes
# then differ from frugal's named set as strings, so GGUF export must recognise it by how it splits
# (tests/cli_interop.sh).
import json
import re
import sys

src = open("src/tokenizer/pretok.c", encoding="utf-8").read()
body = re.search(r"static const char \*DSL_STEPS\[\] = \{(.*?)NULL\};", src, re.S).group(1)
elems, cur = [], ""
for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|,', body):  # adjacent C literals form one element
    if m.group(0) == ",":
        elems.append(cur)
        cur = ""
    else:
        cur += m.group(1)


def unescape(s):
    s = s.replace("\\\\", "\x00").replace("\\r", "\r").replace("\\n", "\n").replace("\x00", "\\")
    return re.sub(r"\\u([0-9A-Fa-f]{4})", lambda m: chr(int(m.group(1), 16)), s)


regs = [unescape(e) for e in elems if e]
assert len(regs) == 6 and all("\\u" not in r for r in regs), regs
tj = json.load(open("fuzz/seeds/tokenizer_json/v3_small.json", encoding="utf-8"))
tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False} for r in regs] + [
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(tj, f, ensure_ascii=False)
