// interop.h: helpers shared by the Hugging Face (hf.c) and GGUF (gguf_model.c) importers and
// exporters. The public entry points are in include/frugal.h.
#ifndef FG_INTEROP_H
#define FG_INTEROP_H

#include <stddef.h>

#include "formats/gguf.h"
#include "frugal.h"

// Writes len bytes to path atomically: path.tmp, fflush, fsync, rename over path. On error path
// is untouched and the temporary file removed.
int fg_write_file_atomic(const char *path, const void *data, size_t len);

// The model of an already parsed GGUF (fg_gguf_load without the file; for fuzzing). g stays the
// caller's; its tensor infos are read here.
fg_model *fg_gguf_model_from(fg_gguf *g, char **tok_data, size_t *tok_len, void (*notice)(const char *msg));

#endif
