// wstore.h: the typed weight store every decoding session reads its weights through, and the
// quantised model file (.fgq) that maps straight into one.
//
// A store is a model's config plus, for each tensor of the config's table (fg_tensor_table order,
// Hugging Face names), a type (FG_STORE_TYPES: F32, BF16, Q8_0, the K-quants, ...) and a pointer to its rows. Rows are
// laid out as the fp32 model's (row r of a (rows, cols) matrix at r * fg_qrow_bytes(type, cols)).
// The pointers may lead into an fp32 fg_model (not owned), into buffers converted from one
// (owned), or into read-only mappings of a quantised model file or of the safetensors shards of a
// Hugging Face directory (fg_wstore_open_hf in formats/hf.c; the mappings are owned). Vectors
// (norms, biases, the routing bias) are read as fp32: a vector stored in another type is
// converted into an owned fp32 buffer when the store is built. Nothing here makes an fp32 copy of
// a matrix: sessions multiply the typed rows directly and dequantise one embedding row per token.
//
// Invariants after creation: every tensor pointer is non-NULL and typed as fg_wstore_type_check
// allows (block types only for 2-D tensors whose columns are whole blocks); F32 pointers are
// 4-byte aligned (BF16 / F16 2-byte);
// a store is read-only and may be shared by any number of sessions and threads.
//
// Not here: the fp32 training model (src/model), the kernels (quant.h), the decoding loop
// (generate.c). The file layout is documented below and in docs/formats.md.
//
// Quantised model file (.fgq), all integers little-endian:
//   offset 0    8 bytes   magic "FRUGALQM"
//   offset 8    u32       version, 1
//   offset 12   u32       flags, 0 (other bits are rejected)
//   offset 16   sections as in .fgck (checkpoint.h): 4-byte tag, u64 payload length, payload,
//               u32 CRC-32 of the payload; the last one 'END ' (empty); nothing may follow it.
//   'CONF' required  config.json text (fg_config_to_json), <= 1 MiB, validated like a config file.
//   'TOKN' optional  the tokenizer.json / GGUF bytes of a BPE model (absent: byte-level ids).
//   'QTAB' required  u32 count, then per tensor: u32 name_len, name bytes, u32 ndim, u64
//                    shape[ndim], u32 type (fg_dtype: 0 f32, 1 bf16, 2 q8_0, 4 q4_0, 20 q4_k, ...: any of FG_STORE_TYPES), u64 offset, u64 nbytes.
//                    Count, names, ndim and shapes must equal the table built from CONF; nbytes
//                    must equal rows * fg_qrow_bytes(type, cols) (a vector is one row); offset is
//                    relative to the QDAT payload, a multiple of 64, tensors in table order
//                    without overlap, inside the payload.
//   'PAD '           zero bytes so that the QDAT payload starts at a 64-byte aligned file offset.
//   'QDAT' required  the tensor data; its payload offset in the file must be a multiple of 64.
//   'END ' required
// Unknown tags are skipped (CRC unchecked). Every known section's CRC is checked at open,
// QDAT's included (the open reads the whole file once).
#ifndef FG_WSTORE_H
#define FG_WSTORE_H

#include "model/layers.h"
#include "model/model.h"
#include "ops/backend.h"
#include "ops/quant.h"

#define FG_QMODEL_VERSION 1


struct fg_wstore {
    fg_config cfg;
    int n;                      // tensors in the table
    fg_tensor *t;               // (n) the config's table (owned)
    int *type;                  // (n) any of FG_STORE_TYPES (block types for matrices of whole blocks)
    const void **data;          // (n) first byte of each tensor
    const float **vec;          // (n) fp32 view of 1-D tensors (NULL for matrices)
    const float **scale;        // (n) FG_F8_E4M3 matrices: their 128 x 128 block scales (fg_wref); else NULL
    fg_wview v;                 // the typed view of every tensor (layers.h)
    fg_packs *packs;            // matrices packed once for the GEMM, shared by every context (backend.h)
    const rope_table *rope;     // the model's, or own_rope
    rope_table own_rope;
    float softmax_scale;
    char *tok;                  // tokenizer bytes ('TOKN') or NULL; owned
    size_t tok_len;
    void **owned;               // buffers freed with the store
    int n_owned, cap_owned;
    size_t owned_bytes;         // bytes of tensor data in owned buffers (converted or copied)
    void **maps;                // (n_maps) read-only file mappings, munmap'd with the store
    size_t *map_lens;           // (n_maps)
    int n_maps;
};

// Builds a store over caller-owned tensors: c is validated; t (n entries) must equal
// fg_tensor_table(c) in names and shapes; types[i] is tensor i's weight type and data[i] its
// bytes (rows as in wstore.h's header), which must stay valid and unchanged for the store's life
// (hand ownership over with fg_wstore_keep / fg_wstore_keep_mapping). Matrices must be aligned to
// their element (f32 4, bf16 2 bytes); vectors may be anything (copied to fp32 when not aligned
// f32). NULL with an error naming the tensor otherwise. Example, a bf16 safetensors file mapped
// read-only: t = fg_tensor_table(c), types[i] = FG_BF16, data[i] = map + offset of
// t[i].name, then fg_wstore_keep_mapping(ws, map, len).
fg_wstore *fg_wstore_create(const fg_config *c, const fg_tensor *t, int n, const int *types, const void *const *data);
// As fg_wstore_create, with scales[i] the 128 x 128 block scales of each FG_F8_E4M3 matrix (fg_wref;
// NULL for the others), which must stay valid as data does. FP8 matrices are held and multiplied
// as stored (src/ops/fp8.c).
fg_wstore *fg_wstore_create_scaled(const fg_config *c, const fg_tensor *t, int n, const int *types, const void *const *data,
                                   const float *const *scales);
// The store frees buf (free()) when it is freed. -1 (buf not taken) when out of memory.
int fg_wstore_keep(fg_wstore *ws, void *buf);
// The store munmaps [map, map + len) when it is freed (any number of mappings: one per shard of a
// Hugging Face checkpoint). -1 (mapping not taken) when out of memory.
int fg_wstore_keep_mapping(fg_wstore *ws, void *map, size_t len);
// Bytes of tensor data the store holds in memory of its own (converted vectors, tensors converted
// or copied at open), as opposed to pointing into a model or a mapping.
size_t fg_wstore_owned_bytes(const fg_wstore *ws);

// The type tensor t gets when a model is converted to `weights`: matrices become bf16 / Q8_0
// (Q8_0 only when the columns are a multiple of 32); vectors, buffers, MLA's wkv_b (which
// absorbed attention reads row by row) and the MoE router (mlp.gate, as llama.cpp keeps
// ffn_gate_inp) stay fp32.
int fg_wstore_policy(const fg_tensor *t, int weights);
// NULL when tensor t may be stored as type (FG_STORE_TYPES; block types only for matrices whose
// rows are whole blocks), else why not ("needs ...", "is not ...").
const char *fg_wstore_type_check(const fg_tensor *t, int type);
// Bytes of tensor t stored as type.
size_t fg_wstore_tensor_bytes(const fg_tensor *t, int type);

#endif
