#!/usr/bin/env python3
# Run with Debian's interpreter:  /usr/bin/python3 tests/ref/countdown_ref.py DUMP
"""
Independent oracle for frugal's Countdown task (src/data/countdown.c), written from the rules in
docs/task.md, not from the C code. Plain Python: the expression is parsed by Python's own parser
(ast) and evaluated with fractions.Fraction; solvability is decided by dynamic programming over
subsets of the numbers, not by the C solver's pairwise search.

DUMP is written by `build/tests/test_countdown --dump DUMP`; one case per line, fields separated
by ';', expressions hex-encoded (they may hold any byte):
  E;n1 n2 ...;target;hex(expr);verdict   C's fg_countdown_check_expr verdict (1 correct, 0 wrong)
  S;n1 n2 ...;target;solvable;hex(answer)
      solvable: 1 when C rendered the problem (it found a solution whose intermediate results are
      all integers in [1, 999]), 0 when it refused; answer: the rendered expression (empty if 0).
Exit 0 when every verdict agrees, 1 otherwise (the first disagreements are printed).

Rules (docs/task.md, "Verifier"): the text may hold digits, + - * / ( ) and spaces only; numbers
are decimal without a leading zero and at most 9 digits; parentheses nest at most 64 deep; no
unary minus or plus; each given number is used exactly once (as a multiset); every division is
exact with a nonzero divisor; the value equals the target. Intermediate values may be negative.
"""
import ast
import re
import sys
from fractions import Fraction

ALLOWED = set("0123456789+-*/() ")
MAX_DEPTH = 64
MAX_DIGITS = 9
MAX_VALUE = 999  # the generator's and renderer's bound on intermediate results


class Wrong(Exception):
    pass


def evaluate(node, lits):
    """Value of an ast node under the rules; literals are appended to lits."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        lits.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp):
        a = evaluate(node.left, lits)
        b = evaluate(node.right, lits)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.Div):
            if b == 0:
                raise Wrong("division by zero")
            q = a / b
            if q.denominator != 1:
                raise Wrong("inexact division")
            return q
    raise Wrong("not allowed: " + type(node).__name__)


def syntax_ok(text):
    """Lexical rules Python's parser does not enforce (or enforces differently)."""
    if any(c not in ALLOWED for c in text):
        return False
    for run in re.findall(r"[0-9]+", text):
        if len(run) > MAX_DIGITS or (len(run) > 1 and run[0] == "0"):
            return False
    depth = 0
    for c in text:
        depth += c == "("
        depth -= c == ")"
        if depth > MAX_DEPTH:
            return False
    return True


def correct(nums, target, text):
    if not syntax_ok(text):
        return 0
    try:
        tree = ast.parse(text.strip(" "), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return 0
    lits = []
    try:
        value = evaluate(tree.body, lits)
    except (Wrong, RecursionError):
        return 0
    # int64 overflow: C refuses any intermediate beyond it; with <= 6 literals of <= 9 digits
    # only a product can get there, and then the value cannot be a target <= 999 anyway
    return int(sorted(lits) == sorted(nums) and value == target)


def reachable(nums):
    """Values in [1, MAX_VALUE] of every expression tree over all of nums whose intermediate
    results are all integers in [1, MAX_VALUE]: DP over subsets (bitmasks)."""
    n = len(nums)
    vals = {}
    for i in range(n):
        vals[1 << i] = {nums[i]} if 1 <= nums[i] <= MAX_VALUE else set()
    for mask in range(1, 1 << n):
        if mask in vals:
            continue
        out = set()
        sub = (mask - 1) & mask
        while sub:
            rest = mask ^ sub
            if sub < rest:  # each split once
                for a in vals[sub]:
                    for b in vals[rest]:
                        x, y = max(a, b), min(a, b)
                        for z in (x + y, x - y, x * y, x // y if x % y == 0 else 0):
                            if 1 <= z <= MAX_VALUE:
                                out.add(z)
            sub = (sub - 1) & mask
        vals[mask] = out
    return vals[(1 << n) - 1]


def main():
    bad = 0
    counts = {"E": 0, "S": 0, "E1": 0, "S1": 0}
    for lineno, line in enumerate(open(sys.argv[1]), 1):
        parts = line.rstrip("\n").split(";")
        kind, nums, target = parts[0], [int(x) for x in parts[1].split()], int(parts[2])
        counts[kind] += 1
        if kind == "E":
            text = bytes.fromhex(parts[3]).decode("latin-1")
            want, got = correct(nums, target, text), int(parts[4])
            counts["E1"] += want
            if want != got:
                bad += 1
                if bad <= 10:
                    print(f"line {lineno}: {nums} -> {target}: {text!r}: oracle {want}, C {got}")
        else:
            solvable = int(target in reachable(nums))
            got = int(parts[3])
            counts["S1"] += solvable
            if solvable != got:
                bad += 1
                if bad <= 10:
                    print(f"line {lineno}: {nums} -> {target}: oracle solvable {solvable}, C {got}")
            elif got:
                answer = bytes.fromhex(parts[4]).decode("latin-1")
                if not correct(nums, target, answer):
                    bad += 1
                    if bad <= 10:
                        print(f"line {lineno}: {nums} -> {target}: C's answer {answer!r} is wrong")
    print(f"countdown_ref: {counts['E']} expressions ({counts['E1']} correct), {counts['S']} problems "
          f"({counts['S1']} solvable), {bad} disagreements")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
