// refine.h: the data refinery (public API: "data refinery" in include/frugal.h; docs/data.md).
//
// What it is: one streaming pass over documents that drops low-quality ones (documented
// heuristics), exact duplicates (64-bit hash of the normalised text) and near duplicates
// (MinHash over 5-word shingles of the normalised text, LSH banding, candidates verified by the
// signatures' estimated Jaccard), optionally by perplexity under a frugal checkpoint.
// Normalised text: ASCII letters lowercased, every run of whitespace one space, trimmed.
// What it does not do: fuzzy matching across documents that were dropped (only kept documents
// are indexed, so the first occurrence is kept), language identification, PII removal.
// Invariant: a document is kept iff no rule fires; each dropped document counts under the first
// rule that fires, in enum order (quality, exact, near, perplexity).
#ifndef FG_REFINE_H
#define FG_REFINE_H

#include "frugal.h"
#include "frugal_tools.h"

#define FG_REFINE_SHINGLE 5 // words per shingle

// Shingle hashes of text[0..len) (normalised as above): appends to *out (malloc'd, grown; caller
// frees) and returns the count, or -1 when memory runs out. Fewer than 5 words: one shingle.
// Exposed for the tests' planted-duplicate benchmark.
long fg_refine_shingles(const char *text, size_t len, uint64_t **out, size_t *cap);

#endif
