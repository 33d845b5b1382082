// countdown.h: frugal's second built-in task, Countdown: given 3 to 5 numbers and a target, write
// one expression with + - * / and parentheses that uses every number exactly once and equals the
// target. The public interface is the "Countdown" section of include/frugal_tools.h; docs/task.md
// has the format, the levels, the split and the verifier's rules.
//
//   <|bos|>25 7 3 2:52=<think>25-7=18 18*3=54 54-2=52</think>(25-7)*3-2<|eos|>
//
// Two kinds of code live in countdown.c. The generator and the solver only ever see problems
// frugal made or a caller validated (a few small numbers); the expression parser sees model
// output and any other bytes, so it is bounded everywhere: nesting depth, literal length, int64
// values with checked arithmetic, and it never reads outside expr[0..len) or gen[0..n).
// Not here: the training loop and the evaluation loop (src/train/train.c, cli/cmd_eval.c).
#ifndef FG_COUNTDOWN_H
#define FG_COUNTDOWN_H

#include "frugal.h"
#include "frugal_tools.h"
#include "util.h"

// Rules of the rendered (canonical) solution: every intermediate result is an integer in
// [1, FG_CD_MAX_VALUE]. The verifier is looser (any exact integer arithmetic), see
// fg_countdown_check_expr.
#define FG_CD_MAX_VALUE 999
#define FG_CD_MAX_NUM 100    // a problem's numbers are in [1, FG_CD_MAX_NUM]
#define FG_CD_MAX_DEPTH 64   // the parser refuses deeper parenthesis nesting
#define FG_CD_MAX_DIGITS 9   // ... and longer number literals

// The verifier's two verdicts on expr[0..len): returns 1 when the text is a syntactically valid
// expression (grammar in docs/task.md; numbers need not match), else 0. *correct (may be NULL)
// is set to 1 when it also uses each of p's numbers exactly once, every division is exact and
// nonzero and no int64 overflow happens, and its value is p->target. p may be NULL (syntax only).
int fg_countdown_parse(const fg_countdown *p, const char *expr, size_t len, int *correct);

#endif
