// bpe.h: internals of the byte-level BPE tokenizer (the public API is in include/frugal.h).
//
// What it is: a vocabulary (id -> byte-level spelling and decoded bytes), the merge table
// ((left id, right id) -> rank and merged id), added tokens in a byte trie, and a pre-tokenizer
// (pretok.h). Encoding: added tokens are split out first (leftmost-longest), the rest goes
// through the pre-tokenizer, and each piece is mapped byte by byte to the GPT-2 byte-level
// alphabet and merged by rank (lowest rank first, leftmost first among equals), exactly like
// Hugging Face tokenizers' BPE model with no dropout.
// What it does not do: normalizers other than an empty Sequence, byte_fallback, subword
// prefixes/suffixes, lstrip/rstrip/single_word added tokens: each is a load error naming it.
// Invariant: every one of the 256 byte tokens exists, so any byte string can be encoded.
#ifndef FG_BPE_H
#define FG_BPE_H

#include "frugal.h"
#include "tokenizer/pretok.h"

// GPT-2's bytes_to_unicode: byte b is spelled as code point fg_byte_char[b] in vocabularies.
extern uint16_t fg_byte_char_tab[256]; // filled by fg_byte_chars_init
void fg_byte_chars_init(void);

// Internal builders shared by the tokenizer.json and GGUF loaders (bpe.c).
fg_tokenizer *fg_tok_new(int32_t n_vocab, const char *where);
int fg_tok_set_token(fg_tokenizer *t, int32_t id, const char *s, size_t len);
int fg_tok_add_merge(fg_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank);
int fg_tok_add_added(fg_tokenizer *t, int32_t id, const char *s, size_t len, int special);
int fg_tok_finish(fg_tokenizer *t); // builds the byte table; checks the 256 byte tokens exist
fg_pretok *fg_tok_pretok(fg_tokenizer *t);
void fg_tok_set_ignore_merges(fg_tokenizer *t, int on);

fg_tokenizer *fg_tok_from_json(const char *text, size_t len, const char *where);
fg_tokenizer *fg_tok_from_gguf(const char *data, size_t len, const char *where);

#endif
