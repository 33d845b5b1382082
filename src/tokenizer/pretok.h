// pretok.h: the pre-tokenizer: splits text into the pieces BPE then encodes one by one.
//
// What it is: the Hugging Face pre-tokenizers DeepSeek-V3/R1, DeepSeek-LLM/V2, DeepSeek-Coder,
// Qwen2 and Llama-3 use (Sequence, Split with behavior "Isolated", Digits, ByteLevel), with the
// regular expressions matched by a small purpose-built matcher instead of a regex library.
// Supported Split patterns (docs/tokenizer.md lists them verbatim):
//   - the simple form  [\s?] ATOM [+ | {1,k}] [$]  where ATOM is a bracket class ([...] with
//     literals, ranges, escapes, \p{L|N|P|S|M} and \s inside, optionally negated), \p{X} or \s:
//     this covers [\r\n], \p{N}{1,3}, \p{N}+, \s?\p{L}+, \s+$, the CJK ranges and DeepSeek-LLM's
//     long letter class;
//   - three alternations recognised verbatim: DeepSeek-V3's main pattern, Qwen2's and Llama-3's
//     (and GPT-2's, used by ByteLevel with use_regex).
// Anything else fails to compile with an error that quotes the pattern.
// Matching follows Oniguruma/Perl leftmost-first semantics with backtracking on pieces that
// are independent strings (so $ and (?!\S) see the end of the piece).
// Invariant: the pieces of a text cover it exactly, in order, without overlap or empty pieces.
#ifndef FG_PRETOK_H
#define FG_PRETOK_H

#include <stddef.h>
#include <stdint.h>

typedef struct fg_pretok fg_pretok;

// A new empty pre-tokenizer (no steps: the whole text is one piece). Free with fg_pretok_free.
fg_pretok *fg_pretok_new(void);
void fg_pretok_free(fg_pretok *p);
// Appends a Split(Regex, Isolated) step; -1 with an error quoting the pattern if unsupported.
int fg_pretok_add_split(fg_pretok *p, const char *pattern, size_t len);
// Appends a Digits step (individual: each digit its own piece, else runs of digits).
int fg_pretok_add_digits(fg_pretok *p, int individual);
// Appends the GPT-2 regex split that ByteLevel(use_regex=true) performs.
int fg_pretok_add_gpt2(fg_pretok *p);
// Adds the steps of a llama.cpp pre-tokenizer name ("deepseek-llm", "deepseek-coder",
// "deepseek-v3", "qwen2", "llama-bpe", "gpt2"); -1 with an error naming it if unknown.
int fg_pretok_add_named(fg_pretok *p, const char *name);
int fg_pretok_nsteps(const fg_pretok *p);
// Copies s[0..n) into out (capacity cap >= 8) for an error message: control characters become
// \r, \n, \t or \xHH so that the message stays on one line; cut with "..." past cap. Returns out.
const char *fg_quote(char *out, size_t cap, const char *s, size_t n);

// Callback per piece: text[start..end) in bytes. Returns 0 to go on, nonzero to stop.
typedef int (*fg_pretok_fn)(void *ctx, size_t start, size_t end);
// Splits text[0..len) and calls fn on every piece in order. Returns 0, or -1 with an error if
// memory runs out (or fn's nonzero value). Thread-safe for one p shared by many threads.
int fg_pretok_run(const fg_pretok *p, const char *text, size_t len, fg_pretok_fn fn, void *ctx);

// llama.cpp's name (GGUF tokenizer.ggml.pre) for the pre-tokenizer made of these Split regexes in
// order, followed by GPT-2's regex when bytelevel_regex (a ByteLevel step with use_regex); NULL when
// none matches exactly.
const char *fg_pretok_name_of(const char *const *patterns, int n, int bytelevel_regex);

#endif
