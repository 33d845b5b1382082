// distill.h: internals of src/distill/ (the public part is the "distillation" section of frugal.h):
// the offline teacher cache reader and writer, and the hashes that tie a cache to its data and teacher.
//
// Teacher cache file (little-endian; docs/formats.md "Teacher cache"):
//   offset size  field
//   0      8     magic "FRUGALDC"
//   8      4     u32 version (1)
//   12     4     u32 header bytes (128)
//   16     4     u32 V, vocabulary (2 <= V <= 2^24)
//   20     4     u32 k, entries per token (1 <= k < V, k <= FG_DISTILL_MAX_K)
//   24     4     u32 T, tokens per sequence (>= 1)
//   28     4     u32 entry bytes (5: u24 token id + fp16 log-probability)
//   32     8     u64 S, sequences (>= 1)
//   40     4     f32 temperature the log-probabilities were taken at (> 0)
//   44     4     u32 flags (0)
//   48     8     u64 data hash (FNV-1a 64 of the data the windows came from; fg_distill_data_hash)
//   56     8     u64 teacher hash (FNV-1a 64 of the teacher's config JSON and weights)
//   64     8     u64 tokens offset (128)
//   72     8     u64 entries offset (128 + S*T*8)
//   80     8     u64 file bytes (entries offset + S*T*(5k+2))
//   88     8     f64 teacher forward FLOPs spent building the cache (2 x active params x S*T)
//   96     4     u32 CRC-32 of the payload (bytes 128 .. file end)
//   100    24    zero
//   124    4     u32 CRC-32 of header bytes 0..124
//   windows: the data's non-overlapping training windows of T+1 tokens, or S of them spread evenly;
//   tokens:  per sequence, T i32 inputs then T i32 targets (-1 = not trained; else in [0, V))
//   entries: per sequence and position, k entries (u24 id, fp16 log p at temperature) sorted by
//            descending probability, then an fp16 log of the remaining mass (-inf when none):
//            5k + 2 bytes per token.
// The reader validates every field, offset and CRC and every token before use; entry ids are
// checked (range, duplicates) when the loss reads them. Files are mapped read-only.
#ifndef FG_DISTILL_H
#define FG_DISTILL_H

#include <stddef.h>
#include <stdint.h>

#include "frugal.h"

#define FG_DCACHE_MAGIC "FRUGALDC"
#define FG_DCACHE_VERSION 1
#define FG_DCACHE_HEADER 128
#define FG_DCACHE_ENTRY 5

typedef struct {
    uint32_t V, k, T;
    uint64_t S;
    float temperature;
    uint64_t data_hash, teacher_hash;
    double teacher_flops;
    const uint8_t *tokens, *entries; // into base
    const uint8_t *base;
    size_t len;
    int mapped;                      // 1: base is an mmap of the file (fg_dcache_close unmaps)
} fg_dcache;

// Validates a cache image buf[0..len) (where names it in errors) and points c into it (buf must
// outlive c). Returns 0, or -1 with "where: field: problem".
int fg_dcache_parse(fg_dcache *c, const uint8_t *buf, size_t len, const char *where);
// Maps path read-only and validates it. Close with fg_dcache_close.
int fg_dcache_open(fg_dcache *c, const char *path);
void fg_dcache_close(fg_dcache *c);
// Sequence s: inputs and targets (T each).
void fg_dcache_tokens(const fg_dcache *c, uint64_t s, int32_t *inputs, int32_t *targets);
// Position t of sequence s: ids (k), logp (k) and the tail log mass.
void fg_dcache_entry(const fg_dcache *c, uint64_t s, int t, int32_t *ids, float *logp, float *logtail);

// FNV-1a 64 over n bytes continuing from h (start with FG_FNV_OFFSET).
#define FG_FNV_OFFSET 0xcbf29ce484222325ull
uint64_t fg_fnv64(uint64_t h, const void *p, size_t n);
// Teacher identity: its config JSON and every weight.
uint64_t fg_distill_teacher_hash(const fg_model *m);

// Hash of the data a cache's windows come from (o: data files, val_fraction; no files: the built-in
// task). tok_bytes: the tokenizer (NULL: bytes). ds_out: NULL, or an fg_dataset that receives the
// loaded data (caller frees with fg_dataset_free).
int fg_distill_data_hash(const fg_train_opts *o, const char *tok_bytes, size_t tok_len, uint64_t *hash, void *ds_out);

// Runs the shell command cmd (/bin/sh -c, its own process group) with text on its stdin. Returns 0
// when it exits 0 (accept), 1 when it exits 1 (reject); -1 with an error for any other status, a
// signal, or a run longer than timeout seconds (the group is then killed). Shared by sequence-level
// distillation and reinforcement learning.
int fg_run_verifier(const char *cmd, const char *text, size_t len, double timeout);

#endif
