// fuzz_safetensors.c: libFuzzer target for the safetensors reader.
// Each input is tried twice: as a whole file, and as a header whose u64 length prefix is
// supplied here (the input up to and including its last '}' is the header, the rest is data), so
// mutations of the JSON reach the semantic checks without first having to guess the length field.
// For an accepted file it checks that every tensor lies inside the buffer with the size its dtype
// and shape say, that find() returns it, and it reads every convertible tensor as F32.
#include "formats/safetensors.h"
#include "ops/dtype.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(const uint8_t *buf, size_t size) {
    fg_safetensors st;
    if (fg_safetensors_open_mem(&st, buf, size, "fuzz")) {
        if (strncmp(fg_last_error(), "fuzz: ", 6) || st.t || st.n) abort();
        return;
    }
    for (int i = 0; i < st.n; i++) {
        const fg_st_tensor *t = &st.t[i];
        if (t->data < buf + 8 || t->nbytes > size || t->data + t->nbytes > buf + size) abort();
        if ((uint64_t)t->numel * (uint64_t)fg_dtype_info(t->dtype)->block_bytes != t->nbytes) abort();
        const fg_st_tensor *f = fg_safetensors_find(&st, t->name);
        if (!f || strcmp(f->name, t->name)) abort();
        float *out = malloc((size_t)t->numel * sizeof *out + 1);
        if (!out) abort();
        int convertible = t->dtype == FG_F32 || t->dtype == FG_F16 || t->dtype == FG_BF16 || t->dtype == FG_F64;
        int rc = fg_safetensors_read_f32(&st, t->name, out, t->numel);
        if (rc != (convertible ? 0 : -1)) abort();
        if (fg_safetensors_read_f32(&st, t->name, out, t->numel + 1) != -1) abort();
        free(out);
    }
    fg_safetensors_close(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check(data, size);
    size_t h = size;
    while (h > 0 && data[h - 1] != '}') h--;
    uint8_t *buf = malloc(size + 8);
    if (!buf) return 0;
    uint64_t h64 = h;
    memcpy(buf, &h64, 8);
    if (size) memcpy(buf + 8, data, size);
    check(buf, size + 8);
    free(buf);
    return 0;
}
