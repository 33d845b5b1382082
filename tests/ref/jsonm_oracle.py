#!/usr/bin/env python3
# jsonm_oracle.py: Python's json module as the independent oracle of frugal's JSON-mode checker
# (src/serve/jsonmask.c; used by tests/test_serve_request.c). Needs only the standard library.
#
#   jsonm_oracle.py gen SEED N   N random JSON object documents, one per line, hex-encoded (they may
#                                hold raw newlines): nesting, every escape, \u escapes (pairs and
#                                lone surrogates), raw 1- to 4-byte UTF-8, numbers with fractions
#                                and exponents, literals, whitespace of all four kinds between tokens.
#   jsonm_oracle.py verdict FILE for each hex line of FILE prints 1 when the bytes are strict UTF-8
#                                and json.loads reads them as a dict (NaN / Infinity refused, as
#                                RFC 8259 refuses them), else 0.
import json
import random
import sys

WS = " \t\n\r"
PLAIN = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789_-:,.{}[]/'"
ESCAPES = ['\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"]
# Code points at the edges of each UTF-8 length, plus ordinary ones from each range.
EDGES = [0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFEFF, 0xFFFD, 0xFFFF, 0x10000, 0x10FFFF]


def ws(r):
    return "" if r.random() < 0.6 else "".join(r.choice(WS) for _ in range(r.randint(1, 3)))


def hex4(r, cp):
    s = "%04x" % cp
    return "".join(c.upper() if r.random() < 0.5 else c for c in s)


def gen_string(r):
    out = ['"']
    for _ in range(r.randint(0, 10)):
        k = r.random()
        if k < 0.45:
            out.append(r.choice(PLAIN))
        elif k < 0.55:
            out.append(r.choice(ESCAPES))
        elif k < 0.65:
            cp = r.choice([r.randint(0, 0x1F), r.randint(0x20, 0xD7FF), r.randint(0xE000, 0xFFFF)])
            out.append("\\u" + hex4(r, cp))
        elif k < 0.70:
            cp = r.randint(0x10000, 0x10FFFF) - 0x10000
            out.append("\\u" + hex4(r, 0xD800 + (cp >> 10)) + "\\u" + hex4(r, 0xDC00 + (cp & 0x3FF)))
        elif k < 0.72:
            out.append("\\u" + hex4(r, r.randint(0xD800, 0xDFFF)))  # lone surrogate: valid JSON syntax
        else:
            cp = r.choice([r.choice(EDGES), r.randint(0x80, 0x7FF), r.randint(0x800, 0xD7FF),
                           r.randint(0xE000, 0xFFFF), r.randint(0x10000, 0x10FFFF)])
            out.append(chr(cp))
    out.append('"')
    return "".join(out)


def gen_number(r):
    s = "-" if r.random() < 0.3 else ""
    s += "0" if r.random() < 0.2 else str(r.randint(1, 10 ** r.randint(1, 15)))
    if r.random() < 0.4:
        s += "." + "".join(r.choice("0123456789") for _ in range(r.randint(1, 6)))
    if r.random() < 0.3:
        s += r.choice("eE") + r.choice(["", "+", "-"]) + "".join(r.choice("0123456789") for _ in range(r.randint(1, 3)))
    return s


def gen_value(r, depth):
    k = r.random()
    if depth < 7 and k < 0.3:
        return gen_container(r, depth + 1, r.random() < 0.5)
    if k < 0.55:
        return gen_string(r)
    if k < 0.85:
        return gen_number(r)
    return r.choice(["true", "false", "null"])


def gen_container(r, depth, obj):
    items = []
    for _ in range(r.randint(0, 4)):
        v = gen_value(r, depth)
        items.append(ws(r) + (gen_string(r) + ws(r) + ":" + ws(r) if obj else "") + v + ws(r))
    body = ",".join(items) if items else ws(r)
    return ("{" if obj else "[") + body + ("}" if obj else "]")


def verdict(b):
    try:
        s = b.decode("utf-8")
        v = json.loads(s, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return 0
    return 1 if isinstance(v, dict) else 0


def main():
    if sys.argv[1] == "gen":
        r = random.Random(int(sys.argv[2]))
        for _ in range(int(sys.argv[3])):
            doc = (ws(r) + gen_container(r, 1, True) + ws(r)).encode("utf-8")
            assert verdict(doc) == 1, doc
            print(doc.hex())
    elif sys.argv[1] == "verdict":
        with open(sys.argv[2]) as f:
            out = [str(verdict(bytes.fromhex(line.strip()))) for line in f]
        print("\n".join(out))
    else:
        sys.exit("usage: jsonm_oracle.py gen SEED N | verdict FILE")


if __name__ == "__main__":
    main()
