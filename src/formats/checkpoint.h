// checkpoint.h: frugal's own training checkpoint (.fgck): config, weights, the sticky "touched"
// flags, optional AdamW state and optional trainer state, in one file that resumes bit-exactly.
//
// Layout (all integers little-endian; floats are IEEE-754 binary32, little-endian):
//   offset 0    8 bytes   magic "FRUGALCK"
//   offset 8    u32       version, 1
//   offset 12   u32       flags: bit 0 (FG_CKPT_HAS_META) the file has a 'META' section, bit 1
//                         (FG_CKPT_HAS_ADAM) it has an 'ADAM' section; must agree with the sections
//                         present (so a damaged tag cannot silently drop optional state); other bits
//                         are rejected (new meaning needs a new version or a new section)
//   offset 16   sections, back to back, the last one 'END '; nothing may follow it. Each section:
//                 4 bytes   tag, four ASCII characters as they read ("CONF", "END ")
//                 u64       payload length in bytes
//                 payload
//                 u32       CRC-32 of the payload (IEEE 802.3 polynomial, reflected, as zlib crc32)
// Sections (each known tag at most once; any order; the writer uses this one):
//   'CONF' required  config.json text from fg_config_to_json (Hugging Face names), <= 1 MiB.
//   'META' optional  train state, a JSON object (written when a train state is saved), <= 64 MiB:
//                    {"step": "<decimal int64 >= 0>", "tokens_seen": "<decimal int64 >= 0>",
//                     "batches_drawn": "<decimal u64>", "rng": ["<hex u64>" x4],
//                     "data_rng": ["<hex u64>" x4], "tokenizer": "<name, < 32 bytes>",
//                     "train_json": "<the training options JSON as one string>" | null}
//                    64-bit values are strings so they survive JSON's doubles. Unknown members
//                    are ignored. Optional "stream": ["<hex u64>" x4], the shard stream position
//                    (fg_train_state.stream), written once a run has read shards.
//                    "tokenizer" is "bpe" exactly when the file has a 'TOKN' section.
//   'TOKN' optional  the run's BPE tokenizer: the bytes of its tokenizer.json or GGUF file, as
//                    given to fg_tokenizer_load_mem, <= 256 MiB; written with a train state whose
//                    tokenizer is "bpe". A byte-level checkpoint has none (old files never do).
//   'TTAB' required  tensor table: u32 count; per tensor: u32 name_len, name bytes (no NUL),
//                    u32 ndim, u64 shape[ndim], u64 numel, u32 flags (FG_TENSOR_*). Count, order,
//                    names, ndim, shapes and numel must equal the table built from CONF; flags
//                    are informational (a reader's own table decides decay and buffers).
//   'WGHT' required  the weight allocation: n_params float32 in table order (tensor i starts at
//                    the sum of the numel of tensors 0..i-1); length must be 4 * n_params.
//   'TUCH' required  n_tensors bytes, each 0 or 1 (fg_model.touched).
//   'ADAM' optional  AdamW state: m (n_params float32), v (n_params float32), then t (n_tensors
//                    int64, each in [0, 2^62)); length must be 8 * n_params + 8 * n_tensors.
//   'PAD '           (not special: an unknown tag) zero bytes the writer puts before 'WGHT' so the
//                    weights start at a 64-byte aligned offset, ready for mapping.
//   'END ' required  empty; its CRC is therefore 0.
// Unknown tags are skipped unread, CRC unchecked (forward compatibility: a newer frugal may add
// sections; it bumps the version only when an old reader would misread the file).
//
// What the reader validates, before anything is allocated from a length: the header, then every
// section header (each length against the bytes left in the file, duplicates, the size caps),
// the required sections, CONF (parsed and validated like a config.json), the sizes of WGHT, TUCH
// and ADAM against the model built from CONF (the parameter count is checked against the WGHT
// length before the model is allocated, so a hostile config cannot request a huge allocation),
// TTAB against that model's table, and every CRC it relies on. Errors name the file and the
// problem ("ckpt.bin: truncated: tensor data needs 123456 bytes at offset 789, file has 1000").
//
// What it does not do: no compression, no sharding, no big-endian hosts, no gradients (a
// checkpoint is taken between optimizer steps), no partial loads of some tensors. The writer
// always writes version 1. Assumes a little-endian host (checked at compile time).
#ifndef FG_CHECKPOINT_H
#define FG_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "train/optim.h"
#include "train/train.h"


// CRC-32 (IEEE, reflected, as zlib): fg_crc32(0, p, n) for a whole buffer; pass the previous
// result to continue over a following buffer. fg_crc32(0, "123456789", 9) == 0xCBF43926.
uint32_t fg_crc32(uint32_t crc, const void *p, size_t n);

// The raw bytes of a checkpoint's 'TOKN' section (tokenizer.json text or GGUF metadata), as given to
// fg_tokenizer_load_mem: 0 with *data malloc'd (caller frees) or NULL when the checkpoint is
// byte-level; -1 with an error when the file is unreadable or corrupted.
int fg_ckpt_read_tokenizer_bytes(const char *path, char **data, size_t *len);

#endif
