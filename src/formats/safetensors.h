// safetensors.h: a minimal reader and an F32 writer for Hugging Face safetensors files.
//
// Layout (https://github.com/huggingface/safetensors, all integers little-endian):
//   bytes [0, 8)        u64 N, the header length
//   bytes [8, 8+N)      header: a UTF-8 JSON object, possibly padded with trailing spaces:
//                         { "__metadata__": { "<k>": "<string>", ... },      (optional)
//                           "<tensor name>": { "dtype": "F32", "shape": [d0, d1, ...],
//                                              "data_offsets": [begin, end] }, ... }
//   bytes [8+N, size)   the data area; a tensor's bytes are data[begin, end), row-major,
//                       little-endian, end - begin == numel * dtype size.
// safetensors has no magic number or version; the header is the format.
//
// What the reader does: maps the file read-only (or borrows a buffer), validates every length,
// offset, shape and dtype before anything is exposed (see docs/formats.md for the exact rules),
// and hands out pointers into the mapping. It does not copy tensor data, does not require any
// alignment of the data area (read through memcpy or fg_safetensors_read_f32), and does not
// interpret __metadata__ beyond checking that it is an object of strings. Tensors may leave gaps
// in the data area but must not overlap. Assumes a little-endian host.
// What the writer does: F32, BF16 or F16 from float data, atomically (path.tmp, fsync, rename); the header is padded so
// the data area starts 8-byte aligned, and carries __metadata__ {"format": "pt"}.
#ifndef FG_SAFETENSORS_H
#define FG_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define FG_ST_MAX_DIMS 8
#define FG_ST_MAX_HEADER 100000000ull // header bytes; larger headers are rejected as hostile


typedef struct {
    char *name;                     // NUL-terminated, never contains NUL itself
    int dtype;                      // fg_dtype (frugal.h)
    int ndim;                       // 0 (a scalar) .. FG_ST_MAX_DIMS
    int64_t shape[FG_ST_MAX_DIMS];  // unused dims are 0
    int64_t numel;                  // product of shape (1 for a scalar)
    const uint8_t *data;            // into the mapping; no alignment guaranteed
    size_t nbytes;                  // numel * fg_dtype_info(dtype)->block_bytes
} fg_st_tensor;

typedef struct {
    uint8_t *map; size_t size;      // the whole file
    int n; fg_st_tensor *t;         // tensors in header order
    char *path;                     // for messages
    /* private: */ void *priv;
} fg_safetensors;

// Opens and validates path, mapping it read-only. Returns 0, or -1 with fg_last_error naming the
// file and the field. On failure *st is left zeroed (fg_safetensors_close on it is a no-op).
// The mapping lives until fg_safetensors_close; the file must not be truncated meanwhile.
int fg_safetensors_open(fg_safetensors *st, const char *path);
// Same over buf[0..size), which is borrowed, not copied: it must outlive st. `where` names the
// buffer in messages. For fuzzing and tests.
int fg_safetensors_open_mem(fg_safetensors *st, const uint8_t *buf, size_t size, const char *where);
// The tensor called name, or NULL. O(log n).
const fg_st_tensor *fg_safetensors_find(const fg_safetensors *st, const char *name);
// Unmaps and frees everything, then zeroes *st. Safe on a zeroed or already closed st.
void fg_safetensors_close(fg_safetensors *st);
// Hands the file mapping of an fg_safetensors_open'ed st over to the caller, who munmaps
// (st->map, st->size) when done; st stays usable until then (its tensors point into the mapping)
// and fg_safetensors_close no longer unmaps. Returns 0, or -1 when st does not own a mapping
// (opened over a borrowed buffer, or already taken).
int fg_safetensors_take_map(fg_safetensors *st);

// Reads tensor `name` into out (numel floats), converting from F32/F16/BF16/F64. Error if missing,
// if the tensor's numel differs from `numel`, or if the dtype is not convertible; the message names
// file + tensor + what.
int fg_safetensors_read_f32(const fg_safetensors *st, const char *name, float *out, int64_t numel);

// Writes an F32 safetensors file atomically (write path.tmp, fflush, fsync, rename, fsync of the
// directory). Names must be non-empty, distinct and contain no NUL; 0 <= ndim <= 8; dims >= 0;
// data may be NULL only for tensors with no elements. On error path is left untouched.
// dtype: FG_F32 (0, the default of a zeroed entry), FG_BF16 (rounded to nearest even) or
// FG_F16: data is always float and converted while writing.
typedef struct { const char *name; int ndim; int64_t shape[8]; const float *data; int dtype; } fg_st_out;
int fg_safetensors_write_f32(const char *path, const fg_st_out *tensors, int n);
// Names and sizes of the dtypes: fg_dtype_info(dtype)->st and ->block_bytes (ops/dtype.h).

#endif
