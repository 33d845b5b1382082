// data.h: training data from files: loading, train/val split, batch sampling, eval windows.
//
// A dataset is two token streams (train, val). Each document becomes BOS + its bytes + EOS
// (byte-level ids from bytetok.h, special strings in the text are NOT parsed: file text is plain
// bytes), and documents are concatenated in file order. Batches are windows of T+1 consecutive
// tokens, so a window may span documents; BOS/EOS mark the seams.
//
// Inputs:
//   *.jsonl      one JSON object per line with a string field "text"; blank lines are skipped,
//                other fields ignored, "text": "" contributes nothing.
//   anything else UTF-8 text; the whole file is one document (a leading UTF-8 BOM is dropped).
// Every file must be non-empty and valid UTF-8 (checked on the raw bytes and, for JSONL, on the
// decoded "text" too, which catches lone-surrogate escapes).
//
// Split: a document goes to val when a 64-bit hash of its content, read as a fraction in [0,1),
// is below val_fraction. So the split is stable across runs, machines and file order, and
// duplicate documents always land on the same side. With >= 2 documents and val_fraction > 0
// each side gets at least one document. With a single document its last val_fraction of tokens
// form the val stream instead. val_fraction == 0 gives an empty val stream.
//
// Not done here (see shard.h for both): streaming data larger than memory, shuffling at
// load time (the sampler draws random windows instead).
#ifndef FG_DATA_H
#define FG_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "util.h"

typedef struct {
    int32_t *tokens;   // (n_tokens,) owned; for each document BOS + bytes + EOS
    size_t n_tokens;
    size_t n_docs;     // documents (a split single document counts once on each side)
    size_t n_bytes;    // text bytes, BOS/EOS not counted
} fg_token_stream;

typedef struct { fg_token_stream train, val; } fg_dataset;

// Returns 1 when s[0..len) is valid UTF-8, else 0 and (if bad_offset) the offset of the first
// byte of the offending sequence. Rejects overlong forms, surrogates (U+D800..DFFF), code points
// above U+10FFFF, stray continuation bytes and sequences truncated by the end or by another lead.
int fg_utf8_validate(const char *s, size_t len, size_t *bad_offset);

// Loads paths[0..n_paths) into *ds (zeroed first). val_fraction must be in [0, 0.5].
// Returns 0, or -1 with a one-line error naming the file, its line / byte offset and a hint;
// on error *ds is left empty (fg_dataset_free on it is harmless). Free with fg_dataset_free.
int fg_dataset_load(fg_dataset *ds, const char *const *paths, int n_paths, double val_fraction);
// The same with a BPE tokenizer (NULL: bytes, as fg_dataset_load): each document becomes
// bos + its BPE ids (special strings not parsed) + eos. A single document is split by tokens.
int fg_dataset_load_tok(fg_dataset *ds, const char *const *paths, int n_paths, double val_fraction, const fg_tokenizer *tok,
                        int32_t bos, int32_t eos);
// The same from bytes already in memory (tests, fuzzing); `name` plays the file's role (a name
// ending in .jsonl is parsed as JSONL).
int fg_dataset_load_mem(fg_dataset *ds, const char *buf, size_t len, const char *name, double val_fraction);
void fg_dataset_free(fg_dataset *ds);

// ---- batches -------------------------------------------------------------------------------
// Random windows of T+1 tokens: inputs = the first T, targets = the next T. Everything it
// draws is a function of rng, so saving rng (4 words) in a checkpoint and restoring it
// reproduces the following batches bit for bit. s is borrowed and must outlive the sampler.
typedef struct { const fg_token_stream *s; fg_rng rng; uint64_t batches_drawn; } fg_sampler;

void fg_sampler_init(fg_sampler *sp, const fg_token_stream *s, uint64_t seed);

// inputs, targets: (B, T) int32, B, T >= 1. Each row's window start is uniform over
// [0, n_tokens - T - 1]. If the stream has fewer than T+1 tokens, every row is the whole stream
// padded: inputs FG_TOK_PAD and targets -1 (ignored by the loss) past its end.
void fg_sampler_next(fg_sampler *sp, int32_t *inputs, int32_t *targets, int B, int T);

// Number of non-overlapping windows of T inputs (+1 target) the stream holds: (n_tokens-1)/T,
// or 1 (a padded one) for a stream shorter than T+1 tokens; 0 for an empty stream.
size_t fg_stream_n_windows(const fg_token_stream *s, int T);

// Deterministic evaluation batch i: row b holds window w = (i*B + b) mod n_windows, which starts
// at token w*T (inputs tokens[w*T, w*T+T), targets shifted by one). Batches
// 0 .. ceil(n_windows/B)-1 cover every window once (the last batch wraps around to the start).
// Padding as in fg_sampler_next for short streams; an empty stream gives PAD / -1 everywhere.
void fg_stream_window(const fg_token_stream *s, size_t i, int32_t *inputs, int32_t *targets, int B, int T);

#endif
