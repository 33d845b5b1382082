// gguf.h: a minimal reader for the metadata of GGUF files (llama.cpp's model format), enough to
// load a tokenizer (tokenizer.ggml.*). Layout (little-endian, versions 2 and 3):
//   u32 magic "GGUF", u32 version, u64 n_tensors, u64 n_kv,
//   n_kv x { string key, u32 type, value },  string = u64 length + bytes,
//   value by type: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
//   9 array = u32 element type, u64 count, elements; 10 u64, 11 i64, 12 f64.
// What it deliberately does not do: tensor infos and tensor data are not read.
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
} fg_gguf_kv;
typedef struct {
    const char *where;   // file name for errors (owned)
    uint32_t version;
    uint64_t n_tensors;
    fg_gguf_kv *kv; size_t n_kv;
    uint8_t *owned;      // file contents when opened from a path (freed by fg_gguf_free)
    size_t owned_len;
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

#endif
