// bytetok.h: the byte-level tokenizer, frugal's stand-in until BPE lands.
//
// Ids 0..255 are the raw bytes; five special tokens follow. Every byte sequence encodes and
// decodes exactly (no normalization, no UTF-8 requirement), so a model trained on byte ids can
// represent any text. It deliberately does no merging: sequences are ~4x longer than BPE's.
// Invariant: FG_BYTE_VOCAB is the smallest vocab_size a model using these ids may have.
#ifndef FG_BYTETOK_H
#define FG_BYTETOK_H

#include <stddef.h>
#include <stdint.h>

enum {
    FG_TOK_BOS = 256,       // "<|bos|>": starts every document / task example
    FG_TOK_EOS = 257,       // "<|eos|>": ends it
    FG_TOK_PAD = 258,       // "<|pad|>": filler input; its targets are -1 (ignored)
    FG_TOK_THINK = 259,     // "<think>": opens a reasoning trace
    FG_TOK_END_THINK = 260, // "</think>": closes it; the answer follows
    FG_BYTE_VOCAB = 261,
};

// Longest decoded form of any id, including the NUL that fg_bytetok_decode appends.
#define FG_BYTETOK_MAX_PIECE 16

// Encodes text[0..len) into out (capacity cap). Returns the number of ids the whole text needs,
// which may exceed cap: then only the first cap were written (call again with a bigger buffer).
// parse_special: nonzero maps each exact special string ("<think>", ...) to its id, scanning
// left to right; zero treats every byte as a byte (use this for untrusted training text).
// out may be NULL when cap == 0 (a pure length query).
size_t fg_bytetok_encode(const char *text, size_t len, int parse_special, int32_t *out, size_t cap);

// Writes the bytes of token id to buf and a NUL after them (buf needs FG_BYTETOK_MAX_PIECE
// bytes); returns the number of bytes, NUL not counted. An invalid id writes "" and returns 0.
// Byte ids decode to exactly one byte (which may itself be 0), so concatenating the pieces of
// an encoding with parse_special == 0 gives back the input byte for byte.
size_t fg_bytetok_decode(int32_t id, char *buf);

// The text of a special id ("<think>"), or NULL when id is not special.
const char *fg_bytetok_special_name(int32_t id);

#endif
