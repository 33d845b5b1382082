#!/usr/bin/env python3
"""Builds a natural-language corpus (JSONL {"text": ...}, one document per line) of at least
MIN_MB megabytes from text that ships with this machine: Debian package documentation under
/usr/share/doc (copyright files, READMEs, changelogs, gzipped or not) and, if that is not
enough, the docstrings of the Python standard library. Deterministic (sorted walk). Never
committed: run by bench/distill_text.sh into a build directory.

usage: distill_corpus.py OUT.jsonl [MIN_MB] [MAX_MB]
"""
import ast
import gzip
import json
import os
import sys


def texts_from_doc():
    for root, dirs, files in os.walk("/usr/share/doc"):
        dirs.sort()
        for name in sorted(files):
            low = name.lower()
            if not (low == "copyright" or low.startswith("readme") or low.startswith("changelog") or low.endswith(".txt")
                    or low.startswith("news")):
                continue
            path = os.path.join(root, name)
            try:
                raw = gzip.open(path).read() if name.endswith(".gz") else open(path, "rb").read()
                yield raw.decode("utf-8")
            except (OSError, UnicodeDecodeError, EOFError):
                continue


def texts_from_python():
    base = "/usr/lib/python3.11"
    for root, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                tree = ast.parse(open(os.path.join(root, name), encoding="utf-8").read())
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
            docs = [ast.get_docstring(n) for n in ast.walk(tree)
                    if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
            text = "\n\n".join(d for d in docs if d)
            if text:
                yield text


def main():
    out = sys.argv[1]
    min_b = float(sys.argv[2] if len(sys.argv) > 2 else 5.5) * 1e6
    max_b = float(sys.argv[3] if len(sys.argv) > 3 else 6.0) * 1e6
    total, n, seen = 0, 0, set()
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for src in (texts_from_doc(), texts_from_python()):
            for text in src:
                text = text.strip()[:20000]
                if len(text) < 200 or hash(text) in seen:
                    continue
                seen.add(hash(text))
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                total += len(text.encode("utf-8"))
                n += 1
                if total >= max_b:
                    break
            if total >= min_b:
                break
    if total < min_b:
        sys.exit("distill_corpus: only %.1f MB of text found (need %.1f)" % (total / 1e6, min_b / 1e6))
    os.replace(out + ".tmp", out)
    print("corpus: %s: %d documents, %.2f MB of text" % (out, n, total / 1e6))


if __name__ == "__main__":
    main()
