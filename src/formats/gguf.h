// gguf.h: a minimal reader for the metadata of GGUF files (llama.cpp's model format), enough to
// load a tokenizer (tokenizer.ggml.*). Layout (little-endian, versions 2 and 3):
//   u32 magic "GGUF", u32 version, u64 n_tensors, u64 n_kv,
//   n_kv x { string key, u32 type, value },  string = u64 length + bytes,
//   value by type: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
//   9 array = u32 element type, u64 count, elements; 10 u64, 11 i64, 12 f64.
// Tensor infos are read on request (fg_gguf_read_tensors); strings must be valid UTF-8.
// Invariant: after fg_gguf_parse succeeds, every key, string and array lies inside the buffer.
#ifndef FG_GGUF_H
#define FG_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum { FG_GGUF_U8, FG_GGUF_I8, FG_GGUF_U16, FG_GGUF_I16, FG_GGUF_U32, FG_GGUF_I32, FG_GGUF_F32,
       FG_GGUF_BOOL, FG_GGUF_STRING, FG_GGUF_ARRAY, FG_GGUF_U64, FG_GGUF_I64, FG_GGUF_F64, FG_GGUF_NTYPES };

typedef struct { const char *s; size_t len; } fg_gguf_str;
typedef struct {
    fg_gguf_str key;
    int type;            // FG_GGUF_*
    const uint8_t *val;  // the value's bytes (for an array: its first element)
    int elem_type;       // arrays: element type
    uint64_t n;          // arrays: element count
    const uint8_t *raw;  // the whole entry as stored (key length, key, type, value), for copying
    size_t raw_len;
} fg_gguf_kv;
// One tensor info (fg_gguf_read_tensors). ne[0] is the innermost (contiguous) dimension: a
// PyTorch (rows, cols) matrix is stored with ne = {cols, rows}.
typedef struct {
    fg_gguf_str name;
    uint32_t n_dims;     // 1..4
    uint64_t ne[4];      // unused dims are 1
    uint32_t type;       // GGML type id (fg_ggml_type_name)
    uint64_t offset;     // from the start of the data area
    const uint8_t *data; // into the buffer; NULL for a type whose size this reader does not know
    uint64_t nbytes;
} fg_gguf_tensor;
typedef struct {
    const char *where;   // file name for errors (owned)
    uint32_t version;
    uint64_t n_tensors;
    fg_gguf_kv *kv; size_t n_kv;
    uint8_t *owned;      // file contents when opened from a path (freed by fg_gguf_free)
    size_t owned_len;
    const uint8_t *buf; size_t len; // the parsed bytes
    size_t kv_end;       // offset just after the metadata (where tensor infos start)
    fg_gguf_tensor *tensors; // after fg_gguf_read_tensors: n_tensors entries
    uint32_t alignment;
    size_t data_off;     // start of the data area
} fg_gguf;

// Parses the metadata of buf[0..len); buf must outlive the result. NULL with an error naming
// `where` and the field on failure. Free with fg_gguf_free.
fg_gguf *fg_gguf_parse(const uint8_t *buf, size_t len, const char *where);
// Maps path read-only and parses it; the mapping is owned by the result.
fg_gguf *fg_gguf_open(const char *path);
void fg_gguf_free(fg_gguf *g);
// The entry for key, or NULL.
const fg_gguf_kv *fg_gguf_find(const fg_gguf *g, const char *key);
// Typed getters: 0 on success; -1 with an error naming the key if absent or of another type.
int fg_gguf_get_str(const fg_gguf *g, const char *key, fg_gguf_str *out);
int fg_gguf_get_int(const fg_gguf *g, const char *key, int64_t *out); // any integer type
// Element i of an array of strings (i < kv->n); walks the array (linear in i).
// fg_gguf_str_array fills a malloc'd array of all n strings (caller frees), NULL with an error.
fg_gguf_str *fg_gguf_str_array(const fg_gguf *g, const fg_gguf_kv *kv);
// Integer element i of an integer array.
int64_t fg_gguf_int_at(const fg_gguf_kv *kv, uint64_t i);
int fg_gguf_get_f32(const fg_gguf *g, const char *key, float *out); // f32 or f64 (or an integer)

// Reads the tensor infos that follow the metadata (the tokenizer loader never needs them):
// names (valid UTF-8, distinct), 1..4 dims, element counts that do not overflow, general.alignment
// (u32, a power of two, default 32), offsets that are multiples of it and, for the types of frugal's
// dtype table (ops/dtype.h: every type it decodes, and the integer ones), data inside the file
// (t->data, t->nbytes; NULL / 0 for any other type). 0 or -1 with an error naming the tensor.
int fg_gguf_read_tensors(fg_gguf *g);
const fg_gguf_tensor *fg_gguf_find_tensor(const fg_gguf *g, const char *name);
// "F32", "Q4_K", ... or "type N" for an id this reader does not know (buf of 16 bytes for that case).
const char *fg_ggml_type_name(uint32_t type, char *buf);

#endif
