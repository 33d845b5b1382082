// bytetok.h: the byte-level tokenizer, frugal's stand-in until BPE lands.
//
// Ids 0..255 are the raw bytes; five special tokens follow. Every byte sequence encodes and
// decodes exactly (no normalization, no UTF-8 requirement), so a model trained on byte ids can
// represent any text. It deliberately does no merging: sequences are ~4x longer than BPE's.
// Invariant: FG_BYTE_VOCAB is the smallest vocab_size a model using these ids may have.
#ifndef FG_BYTETOK_H
#define FG_BYTETOK_H

#include "frugal.h"


#endif
