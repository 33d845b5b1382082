// task.h: frugal's built-in synthetic reasoning task: 4-digit addition and subtraction answered
// after a digit-by-digit carry / borrow trace inside <think> ... </think>. docs/task.md has the
// format, examples and the reasons behind it.
//
//   <|bos|>0123+4567=<think>3+7+0=10 2+6+1=09 1+5+0=06 0+4+0=04</think>+04690<|eos|>
//   <|bos|>0123-4567=<think><<<< 4567-0123 7-3-0=04 6-2-0=04 5-1-0=04 4-0-0=04</think>-04444<|eos|>
//
// Ids are bytetok ids (bytes plus BOS/EOS/<think>/</think>), so the task trains any model with
// vocab_size >= FG_BYTE_VOCAB. Every example of one op has the same length (55 tokens for '+',
// 70 for '-'), so each digit sits at a fixed offset.
// Held-out split: a fixed hash of (op, min(a,b), max(a,b)) holds out ~10% of problems; hashing
// the unordered pair keeps a+b and b+a (and a-b, b-a, whose traces share X-Y) on the same side,
// so a held-out problem is not just a training problem with its operands swapped.
// Not here: other operations, variable digit counts, the evaluation loop (the trainer runs it).
#ifndef FG_TASK_H
#define FG_TASK_H

#include <stddef.h>
#include <stdint.h>
#include "util.h"

#define FG_TASK_MAX_TOKENS 96  // capacity callers give fg_task_render
#define FG_TASK_LONGEST 70     // tokens in the longest example (subtraction); batch T must be >= this
#define FG_TASK_PROMPT_LEN 11  // BOS + "AAAA" + op + "BBBB" + "="
#define FG_TASK_ANSWER_LEN 6   // sign + 5 digits

typedef struct { int a, b; char op; } fg_task_problem; // a, b in [0, 9999]; op '+' or '-'

// Renders the full example into out (capacity FG_TASK_MAX_TOKENS): prompt, <think>, trace,
// </think>, answer, EOS. Returns the token count and sets *prompt_len (may be NULL) to the
// number of prompt tokens (FG_TASK_PROMPT_LEN); returns -1 with an error for an invalid problem.
int fg_task_render(const fg_task_problem *p, int32_t *out, int *prompt_len);

// The same example as text, special ids written by name ("<|bos|>0123+4567=<think>..."),
// NUL-terminated. Returns its length, or -1 with an error if the problem is invalid or cap is
// too small (256 is always enough).
int fg_task_render_text(const fg_task_problem *p, char *buf, size_t cap);

// 1 if the problem belongs to the held-out split (~10% of all problems), else 0. Pure function.
int fg_task_is_heldout(const fg_task_problem *p);

// Draws a problem uniformly from one split (heldout 0: training, 1: held-out): op uniform,
// a and b uniform in [0, 9999], redrawn until the split matches. Consumes a variable number of
// rng draws (about 1.1 for training, 10 for held-out).
void fg_task_sample(fg_rng *r, int heldout, fg_task_problem *p);

// Training batch of B fresh training-split problems. inputs, targets: (B, T), T >= FG_TASK_LONGEST.
// Row b holds one example from position 0, inputs padded with FG_TOK_PAD. targets[t] = the
// token at t+1, except -1 where that token is part of the prompt (t+1 < prompt_len) and from
// the EOS position on: the loss covers <think>, trace, </think>, answer and EOS. (With a
// smaller T an example is cut at T inputs; avoid that.)
void fg_task_batch(fg_rng *r, int32_t *inputs, int32_t *targets, int B, int T);
// The same from either split (heldout 1: validation batches; never mixes the splits).
void fg_task_batch_split(fg_rng *r, int heldout, int32_t *inputs, int32_t *targets, int B, int T);

// gen[0..n): ids generated after the prompt. Finds the first </think> and compares the 6 ids
// after it with the true answer; returns 1 on an exact match, 0 otherwise (also when there is
// no </think> or fewer than 6 ids follow it). What follows the answer is not checked.
int fg_task_check(const fg_task_problem *p, const int32_t *gen, int n);

// The integer result, a + b or a - b.
long fg_task_answer(const fg_task_problem *p);

#endif
