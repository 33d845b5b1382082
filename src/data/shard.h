// shard.h: token shards: the files `frugal data prepare` writes and the trainer streams.
//
// A shard directory holds manifest.json, train-NNNNN.fgsh and val-NNNNN.fgsh shards and, for BPE
// data, a copy of the tokenizer file. Shard layout (little-endian; docs/formats.md "Token shards"):
//   offset 0   8 bytes  magic "FRUGALSH"
//   offset 8   u32      version, 1
//   offset 12  u32      token width in bytes: 2 (vocabulary <= 65536) or 4
//   offset 16  u64      n_tokens
//   offset 24  u64      n_docs (documents in this shard; each lies wholly inside one shard)
//   offset 32  u32      flags: bit 0 = a loss mask follows the tokens; other bits must be 0
//   offset 36  u32      CRC-32 (as zlib) of the payload: the tokens, then the mask
//   offset 40  u32      vocab_size: every token id is below it
//   offset 44  u32      0
//   offset 48  u64      tokenizer identity: FNV-1a 64 of the tokenizer file's bytes; 0 = byte-level
//   offset 56  u64      0
//   offset 64  tokens   n_tokens ids of `width` bytes
//              mask     (flag bit 0) ceil(n_tokens / 8) bytes; bit (i % 8) of byte i / 8, LSB first,
//                       is 1 when token i is a trained target (SFT: assistant tokens)
// The file size must be exactly 64 + payload. Readers map the file read-only.
//
// The stream (fg_shard_stream_next) is a pure function of fg_train_state.stream and data_rng,
// so saving both in a checkpoint resumes the batch sequence bit for bit.
// Not done here: shards larger than the address space, remote storage, multi-process readers.
#ifndef FG_SHARD_H
#define FG_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "frugal.h"
#include "frugal_tools.h"

#define FG_SHARD_MAGIC "FRUGALSH"
#define FG_SHARD_VERSION 1
#define FG_SHARD_HDR 64
enum { FG_SHARD_HAS_MASK = 1 };

typedef struct {
    const uint8_t *base;      // the whole file (mapped or borrowed)
    size_t size;
    int mapped;               // 1: base is an mmap that fg_shard_close unmaps
    int width;                // 2 or 4
    uint64_t n_tokens, n_docs, tok_hash;
    uint32_t flags, crc, vocab_size;
    const uint8_t *tokens, *mask; // mask NULL without FG_SHARD_HAS_MASK
} fg_shard;

// Validates the header and size of buf[0..len) (borrowed: it must outlive sh) and, when
// verify_crc, the payload CRC and that every token id is below vocab_size. `where` names it in errors.
int fg_shard_parse(fg_shard *sh, const uint8_t *buf, size_t len, const char *where, int verify_crc);
// Maps path read-only and parses it with verify_crc. Close with fg_shard_close.
int fg_shard_open(fg_shard *sh, const char *path);
void fg_shard_close(fg_shard *sh);

static inline int32_t fg_shard_token(const fg_shard *sh, uint64_t i) {
    const uint8_t *p = sh->tokens + i * (uint64_t)sh->width;
    if (sh->width == 2) return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8);
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}
static inline int fg_shard_trained(const fg_shard *sh, uint64_t i) {
    return !sh->mask || (sh->mask[i >> 3] >> (i & 7) & 1);
}

// ---- manifest ------------------------------------------------------------------------------
typedef struct { char *file; uint64_t tokens, docs; uint32_t crc; } fg_manifest_shard;
typedef struct {
    int bpe;                  // 0: byte-level ids; 1: tokenizer_file in the directory
    char *tokenizer_file;     // bpe: file name inside the shard directory
    uint64_t tok_hash;        // FNV-1a 64 of the tokenizer file (0 for byte-level)
    int32_t vocab_size, bos, eos;
    int sft;
    uint64_t documents, tokens, skipped_lines;
    fg_manifest_shard *train, *val;
    int n_train, n_val;
} fg_manifest;

// Parses manifest.json text; every field is checked (file names must be plain names, no '/').
int fg_manifest_parse(fg_manifest *m, const char *text, size_t len, const char *where);
void fg_manifest_free(fg_manifest *m);

// ---- a directory of shards ------------------------------------------------------------------
typedef struct {
    fg_manifest man;
    fg_shard *train, *val;    // (man.n_train), (man.n_val), all open and verified
    char *tokenizer_data;     // bpe: the tokenizer file's bytes (malloc'd); NULL for byte-level
    size_t tokenizer_len;
} fg_shardset;

// Reads dir/manifest.json, opens every shard, checks each against its manifest entry (CRC,
// tokens, documents) and the manifest's tokenizer, reads the tokenizer file (bpe) and checks its
// hash. Errors name the shard. Close with fg_shardset_close.
int fg_shardset_open(fg_shardset *s, const char *dir);
void fg_shardset_close(fg_shardset *s);

// FNV-1a 64 of a tokenizer file's bytes: the identity manifests and shards record.
uint64_t fg_tokenizer_hash(const void *data, size_t len);

// Next training batch: inputs, targets (B, T). Rows are windows of T+1 tokens at offsets w*T of
// one shard; an epoch visits every window of every train shard once, shards in a shuffled order
// and windows of a shard in a shuffled order, both drawn from a seed taken from data_rng when the
// epoch starts. stream[4] = {epoch, seed, shard cursor, window cursor} advances; targets are -1
// where the mask says "not trained" and past a shard's end (inputs there: pad).
void fg_shard_stream_next(const fg_shardset *s, uint64_t stream[4], fg_rng *data_rng, int32_t pad,
                          int32_t *inputs, int32_t *targets, int B, int T);
// Deterministic validation batch i over the val shards (the train shards when there are none):
// row b holds window (i*B + b) mod (total windows), counted shard by shard.
void fg_shard_val_batch(const fg_shardset *s, size_t i, int32_t pad, int32_t *inputs, int32_t *targets, int B, int T);

#endif
