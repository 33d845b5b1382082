// test_safetensors.c: write -> open -> read_f32 round trip, dtype conversion, the real oracle
// checkpoint in ../shared/testdata (skipped with a note when absent), and malformed files: every
// truncation of a valid file, hostile header lengths, bad offsets, sizes, dtypes and shapes must
// fail cleanly with a message that names the file and the field.
#include "test.h"
#include "formats/safetensors.h"
#include "util.h"

#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static char tmp_path[256];

static void make_tmp_path(void) {
    const char *dir = getenv("TMPDIR");
    snprintf(tmp_path, sizeof tmp_path, "%s/fg_test_st_%d.safetensors", dir && *dir ? dir : "/tmp", (int)getpid());
}

// A small valid file: 3 tensors (2-D, scalar, empty) written by our own writer, loaded to memory.
static uint8_t *small_file(size_t *size) {
    static float a[6] = {1, -2, 3.5f, 0, 1e-8f, -0.0f}, s[1] = {42};
    fg_st_out outs[3] = {
        {.name = "a.weight", .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "scalar", .ndim = 0, .data = s},
        {.name = "empty", .ndim = 2, .shape = {0, 4}, .data = NULL},
    };
    CHECK_MSG(fg_safetensors_write_f32(tmp_path, outs, 3) == 0, "%s", fg_last_error());
    uint8_t *buf = (uint8_t *)fg_read_file(tmp_path, size);
    CHECK_MSG(buf, "%s", fg_last_error());
    return buf;
}

static void test_roundtrip(void) {
    enum { R = 7, C = 5 };
    float w[R * C], b[C], out[R * C];
    fg_rng rng;
    fg_rng_seed(&rng, 1);
    for (int i = 0; i < R * C; i++) w[i] = fg_rng_normal(&rng);
    for (int i = 0; i < C; i++) b[i] = (float)i - 2;
    fg_st_out outs[2] = {
        {.name = "layer.w", .ndim = 2, .shape = {R, C}, .data = w},
        {.name = "layer.b \"quoted\" \xc3\xa9", .ndim = 1, .shape = {C}, .data = b},
    };
    CHECK_MSG(fg_safetensors_write_f32(tmp_path, outs, 2) == 0, "%s", fg_last_error());
    CHECK(access(tmp_path, F_OK) == 0);
    char tmp2[300];
    snprintf(tmp2, sizeof tmp2, "%s.tmp", tmp_path);
    CHECK(access(tmp2, F_OK) != 0); // renamed away

    fg_safetensors st;
    CHECK_MSG(fg_safetensors_open(&st, tmp_path) == 0, "%s", fg_last_error());
    CHECK(st.n == 2 && st.t && !strcmp(st.path, tmp_path));
    const fg_st_tensor *t = fg_safetensors_find(&st, "layer.w");
    CHECK(t && t->dtype == FG_F32 && t->ndim == 2 && t->shape[0] == R && t->shape[1] == C && t->numel == R * C &&
          t->nbytes == sizeof w);
    CHECK(t && ((uintptr_t)t->data % 8) == 0); // the writer pads the header
    CHECK(fg_safetensors_read_f32(&st, "layer.w", out, R * C) == 0 && !memcmp(out, w, sizeof w));
    CHECK(fg_safetensors_read_f32(&st, outs[1].name, out, C) == 0 && !memcmp(out, b, sizeof b));
    CHECK(fg_safetensors_find(&st, "nope") == NULL);
    CHECK(fg_safetensors_read_f32(&st, "nope", out, 1) == -1 && strstr(fg_last_error(), "'nope': not found") &&
          strstr(fg_last_error(), tmp_path));
    CHECK(fg_safetensors_read_f32(&st, "layer.w", out, R * C - 1) == -1 &&
          strstr(fg_last_error(), "has 35 elements (shape [7, 5]) but 34 were expected"));
    fg_safetensors_close(&st);
    fg_safetensors_close(&st); // idempotent
    CHECK(st.map == NULL && st.t == NULL);

    // writer input errors leave no file behind
    unlink(tmp_path);
    fg_st_out dup[2] = {outs[0], outs[0]};
    CHECK(fg_safetensors_write_f32(tmp_path, dup, 2) == -1 && strstr(fg_last_error(), "duplicate tensor name"));
    fg_st_out bad = {.name = "x", .ndim = 9, .data = b};
    CHECK(fg_safetensors_write_f32(tmp_path, &bad, 1) == -1 && strstr(fg_last_error(), "ndim 9"));
    bad = (fg_st_out){.name = "x", .ndim = 1, .shape = {-1}, .data = b};
    CHECK(fg_safetensors_write_f32(tmp_path, &bad, 1) == -1 && strstr(fg_last_error(), "dimension 0 is -1"));
    bad = (fg_st_out){.name = "x", .ndim = 1, .shape = {3}, .data = NULL};
    CHECK(fg_safetensors_write_f32(tmp_path, &bad, 1) == -1 && strstr(fg_last_error(), "data is NULL"));
    bad = (fg_st_out){.name = "__metadata__", .ndim = 1, .shape = {1}, .data = b};
    CHECK(fg_safetensors_write_f32(tmp_path, &bad, 1) == -1 && strstr(fg_last_error(), "reserved"));
    CHECK(access(tmp_path, F_OK) != 0);
    CHECK(fg_safetensors_write_f32("/nonexistent-dir/x.safetensors", outs, 1) == -1 &&
          strstr(fg_last_error(), "cannot create"));
    CHECK(fg_safetensors_open(&st, "/nonexistent-dir/x.safetensors") == -1 && strstr(fg_last_error(), "cannot open"));
    // zero tensors is a valid file
    CHECK(fg_safetensors_write_f32(tmp_path, NULL, 0) == 0);
    CHECK(fg_safetensors_open(&st, tmp_path) == 0 && st.n == 0);
    fg_safetensors_close(&st);
    unlink(tmp_path);
}

// Builds "<u64 len><header><data>" in a malloc'd buffer of exactly the right size.
static uint8_t *build(const char *header, size_t data_bytes, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_bytes;
    uint8_t *buf = malloc(*size);
    uint64_t h64 = h;
    memcpy(buf, &h64, 8);
    memcpy(buf + 8, header, h);
    for (size_t i = 0; i < data_bytes; i++) buf[8 + h + i] = (uint8_t)i;
    return buf;
}

// Opens header+data from memory; expects success when want_err is NULL.
static void expect(const char *header, size_t data_bytes, const char *want_err) {
    size_t size;
    uint8_t *buf = build(header, data_bytes, &size);
    fg_safetensors st;
    int rc = fg_safetensors_open_mem(&st, buf, size, "m.safetensors");
    if (!want_err) CHECK_MSG(rc == 0, "header %s: %s", header, fg_last_error());
    else CHECK_MSG(rc == -1 && strstr(fg_last_error(), want_err) && !strncmp(fg_last_error(), "m.safetensors: ", 15),
                   "header %s: got '%s', want '%s'", header, rc ? fg_last_error() : "success", want_err);
    fg_safetensors_close(&st);
    free(buf);
}

static void test_conversions(void) {
    // F16: 1, -2, 0.5, 65504, smallest subnormal 2^-24, -0, inf; BF16: 1, -3; F64: 0.1, -1e300 -> -inf
    const char *h = "{\"h\":{\"dtype\":\"F16\",\"shape\":[7],\"data_offsets\":[0,14]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[14,18]},"
                    "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[18,34]},"
                    "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[34,38]},"
                    "\"__metadata__\":{\"format\":\"pt\"}}";
    size_t size;
    uint8_t *buf = build(h, 38, &size);
    uint8_t *data = buf + size - 38;
    const uint16_t f16[7] = {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x8000, 0x7C00};
    const uint16_t bf16[2] = {0x3F80, 0xC040};
    const double f64[2] = {0.1, -1e300};
    memcpy(data, f16, 14);
    memcpy(data + 14, bf16, 4);
    memcpy(data + 18, f64, 16); // unaligned on purpose
    fg_safetensors st;
    CHECK_MSG(fg_safetensors_open_mem(&st, buf, size, "conv") == 0, "%s", fg_last_error());
    float out[7];
    CHECK(fg_safetensors_read_f32(&st, "h", out, 7) == 0);
    CHECK(out[0] == 1 && out[1] == -2 && out[2] == 0.5f && out[3] == 65504 && out[4] == 0x1p-24f && out[5] == 0 &&
          signbit(out[5]) && isinf(out[6]) && out[6] > 0);
    CHECK(fg_safetensors_read_f32(&st, "b", out, 2) == 0 && out[0] == 1 && out[1] == -3);
    CHECK(fg_safetensors_read_f32(&st, "d", out, 2) == 0 && out[0] == 0.1f && isinf(out[1]) && out[1] < 0);
    CHECK(fg_safetensors_read_f32(&st, "i", out, 1) == -1 && strstr(fg_last_error(), "conv: tensor 'i': dtype I32"));
    const fg_st_tensor *t = fg_safetensors_find(&st, "i");
    CHECK(t && t->dtype == FG_I32 && t->nbytes == 4 && t->data == data + 34);
    CHECK(st.n == 4 && !strcmp(st.t[0].name, "h") && !strcmp(st.t[3].name, "i")); // header order
    fg_safetensors_close(&st);
    free(buf);
}

static void test_malformed(void) {
    // every truncation of a valid file fails cleanly (exact-size copies so ASan sees overreads)
    size_t size = 0;
    uint8_t *full = small_file(&size);
    if (full) {
        fg_safetensors st;
        CHECK_MSG(fg_safetensors_open_mem(&st, full, size, "small") == 0, "%s", fg_last_error());
        CHECK(st.n == 3 && fg_safetensors_find(&st, "empty")->numel == 0 && fg_safetensors_find(&st, "scalar")->ndim == 0);
        float v;
        CHECK(fg_safetensors_read_f32(&st, "scalar", &v, 1) == 0 && v == 42);
        fg_safetensors_close(&st);
        for (size_t len = 0; len < size; len++) {
            uint8_t *cut = malloc(len ? len : 1);
            memcpy(cut, full, len);
            CHECK_MSG(fg_safetensors_open_mem(&st, cut, len, "cut") == -1, "truncated to %zu of %zu bytes opened", len, size);
            CHECK(st.t == NULL && st.n == 0);
            free(cut);
        }
        free(full);
    }
    // the file on disk, truncated
    FILE *f = fopen(tmp_path, "wb");
    fwrite("\x10\0\0", 1, 3, f);
    fclose(f);
    fg_safetensors st;
    CHECK(fg_safetensors_open(&st, tmp_path) == -1 && strstr(fg_last_error(), "file is 3 bytes, shorter than"));
    unlink(tmp_path);

    // hostile header lengths
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CHECK(fg_safetensors_open_mem(&st, huge, sizeof huge, "h") == -1 && strstr(fg_last_error(), "exceeds the 100000000-byte limit"));
    uint8_t big[16] = {0x00, 0x01, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(fg_safetensors_open_mem(&st, big, sizeof big, "h") == -1 && strstr(fg_last_error(), "header length 256 is larger than the file"));
    uint8_t zero[8] = {0};
    CHECK(fg_safetensors_open_mem(&st, zero, 8, "h") == -1 && strstr(fg_last_error(), "header is not valid JSON"));

    const char *T = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    expect(T, 24, NULL);
    expect(T, 30, NULL); // trailing unused bytes are allowed
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}    ", 24, NULL); // space padding
    expect(T, 23, "field 'data_offsets' [0, 24] is not within the data area (23 bytes)");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24, "spans 20 bytes but shape [2, 3] of F32 needs 24");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,4]}}", 24, "not within the data area");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0]}}", 24, "field 'data_offsets' must be [begin, end]");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24.5]}}", 24, "field 'data_offsets' must be");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[-8,16]}}", 24, "field 'data_offsets' must be");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,1e300]}}", 24, "field 'data_offsets' must be");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3]}}", 24, "field 'data_offsets' is missing");
    expect("{\"t\":{\"dtype\":\"F33\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, "tensor 't': field 'dtype': unknown dtype \"F33\"");
    expect("{\"t\":{\"dtype\":4,\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, "field 'dtype' must be a string");
    expect("{\"t\":{\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, "field 'dtype' is missing");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,24]}}", 24, "dimension 1 is not a non-negative integer");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,\"3\"],\"data_offsets\":[0,24]}}", 24, "dimension 1 is not");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,24]}}", 24, "dimension 0 is not");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":6,\"data_offsets\":[0,24]}}", 24, "field 'shape' must be a list");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,6],\"data_offsets\":[0,24]}}", 24, "has 9 dimensions");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,2,3],\"data_offsets\":[0,24]}}", 24, NULL);
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,24]}}", 24, "overflows");
    expect("{\"t\":{\"dtype\":\"F64\",\"shape\":[4294967296,536870912],\"data_offsets\":[0,24]}}", 24, "overflows");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[9007199254740992],\"data_offsets\":[0,24]}}", 24, "needs");
    expect("{\"t\":[]}", 24, "tensor 't': entry must be an object (got array)");
    expect("[]", 0, "header must be a JSON object (got array)");
    expect("{\"t\":", 0, "header is not valid JSON: header:1:6: expected a value");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 24, "tensors 'a' and 'b' overlap");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", 24, NULL); // empty tensors occupy nothing
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 24, "duplicate tensor name 'a'");
    expect("{\"__metadata__\":{\"format\":\"pt\",\"n\":1}}", 0, "field '__metadata__': value of 'n' must be a string");
    expect("{\"__metadata__\":[]}", 0, "field '__metadata__' must be an object of strings");
    expect("{\"__metadata__\":{}}", 0, NULL);
    expect("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "contains a NUL byte");
    expect("{\"t\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]},"
           "\"u\":{\"dtype\":\"F8_E5M2\",\"shape\":[],\"data_offsets\":[3,4]}}", 24, NULL);
}

// The oracle checkpoint produced by PyTorch/safetensors in ../shared/testdata. Returns 0 if skipped.
static int test_oracle(void) {
    const char *path = "../shared/testdata/oracle/v3-tiny/model.safetensors";
    if (access(path, R_OK) != 0) {
        printf("SKIP: oracle checks only: %s not found (the other checks in this test ran)\n", path);
        return 0;
    }
    fg_safetensors st;
    CHECK_MSG(fg_safetensors_open(&st, path) == 0, "%s", fg_last_error());
    if (!st.t) return 1;
    // 139 tensors; the header has 140 entries counting "__metadata__" ({"format": "pt"}).
    CHECK_MSG(st.n == 139, "n = %d", st.n);
    const fg_st_tensor *e = fg_safetensors_find(&st, "model.embed_tokens.weight");
    CHECK(e && e->dtype == FG_F32 && e->ndim == 2 && e->shape[0] == 512 && e->shape[1] == 64);
    const fg_st_tensor *g = fg_safetensors_find(&st, "model.layers.1.mlp.gate.weight");
    CHECK(g && g->dtype == FG_F32 && g->ndim == 2 && g->shape[0] == 16 && g->shape[1] == 64);
    // Raw bytes, located independently: u64 header length, then the offsets that Python's
    // json.loads reports for these tensors ([0, 131072] and [378496, 382592]).
    size_t len;
    uint8_t *raw = (uint8_t *)fg_read_file(path, &len);
    CHECK(raw && len == st.size);
    if (raw && e && g) {
        uint64_t h;
        memcpy(&h, raw, 8);
        const uint8_t *data = raw + 8 + h;
        float *w = malloc(512 * 64 * sizeof *w), want;
        CHECK_MSG(fg_safetensors_read_f32(&st, "model.embed_tokens.weight", w, 512 * 64) == 0, "%s", fg_last_error());
        memcpy(&want, data + 0 + 4 * (5 * 64 + 7), 4);
        CHECK(!memcmp(&w[5 * 64 + 7], &want, 4) && want != 0);
        memcpy(&want, data + 131072 - 4, 4);
        CHECK(!memcmp(&w[512 * 64 - 1], &want, 4));
        CHECK_MSG(fg_safetensors_read_f32(&st, "model.layers.1.mlp.gate.weight", w, 16 * 64) == 0, "%s", fg_last_error());
        memcpy(&want, data + 378496 + 4 * (3 * 64 + 5), 4);
        CHECK(!memcmp(&w[3 * 64 + 5], &want, 4));
        CHECK(g->data == st.map + 8 + h + 378496);
        CHECK(fg_safetensors_read_f32(&st, "model.layers.1.mlp.gate.weight", w, 16 * 65) == -1 &&
              strstr(fg_last_error(), path) && strstr(fg_last_error(), "has 1024 elements (shape [16, 64])"));
        free(w);
    }
    free(raw);
    int64_t total = 0;
    for (int i = 0; i < st.n; i++) total += (int64_t)st.t[i].nbytes;
    printf("oracle: %d tensors, %" PRId64 " data bytes\n", st.n, total);
    fg_safetensors_close(&st);
    const char *exp = "../shared/testdata/oracle/v3-tiny/expected.safetensors";
    if (access(exp, R_OK) == 0) {
        CHECK_MSG(fg_safetensors_open(&st, exp) == 0, "%s", fg_last_error());
        CHECK(st.n == 142);
        fg_safetensors_close(&st);
    }
    return 1;
}

int main(void) {
    make_tmp_path();
    test_roundtrip();
    test_conversions();
    test_malformed();
    test_oracle();
    return TEST_DONE();
}
