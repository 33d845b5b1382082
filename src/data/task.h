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

#include "frugal.h"
#include "frugal_tools.h"
#include "util.h"


#endif
