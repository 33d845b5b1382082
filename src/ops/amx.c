// amx.c: see amx.h. Detection, the hardware's configuration calls, and the emulator.
//
// The emulator's TDPBF16PS follows the Intel SDM (Vol. 2, "TDPBF16PS", Operation) to the rounding:
// for each row m of the destination, two fp32 partial sums per output column n start at 0,
//     even[n] = fma(A[m].bf16[2k],   B[k].bf16[2n],   even[n])   for k = 0, 1, ... in order
//     odd[n]  = fma(A[m].bf16[2k+1], B[k].bf16[2n+1], odd[n])
// (each one fp32 FMA, round to nearest even), then C[m][n] = C[m][n] + (even[n] + odd[n]). Input
// denormals are read as zero (DAZ) and every result that is denormal is flushed to zero (FTZ); MXCSR
// plays no part. Note the Intrinsics Guide's shorter pseudo-code for _tile_dpbf16ps (both products
// added straight into C, even first) and VDPBF16PS (into C, odd first) round differently; the SDM's
// is the one followed here. Whether the silicon rounds exactly so is what test_gemm's bit-for-bit
// comparison checks on an AMX machine; none was available where this was written.
#include "ops/amx.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AMX_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(AMX_X86) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023 // linux/arch/x86/include/uapi/asm/prctl.h
#define XFEATURE_XTILEDATA 18
#endif

// ---- detection -------------------------------------------------------------------------------

static int detect(const char **reason) {
#ifndef AMX_X86
    *reason = "not an x86-64 build";
    return 0;
#else
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 24) & 1) || !((d >> 22) & 1)) {
        *reason = "the CPU has no AMX-TILE / AMX-BF16";
        return 0;
    }
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !((c >> 27) & 1)) { *reason = "no OSXSAVE"; return 0; }
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (((lo >> 17) & 3) != 3) { *reason = "the OS does not enable the tile state (XCR0 bits 17, 18)"; return 0; }
#ifdef __linux__
    // Linux (5.16+) keeps the 8 KiB tile state off until a process asks; without it the first tile
    // instruction kills the process with SIGILL.
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        *reason = "Linux refused the tile data permission (arch_prctl ARCH_REQ_XCOMP_PERM)";
        return 0;
    }
    *reason = "usable";
    return 1;
#else
    *reason = "tile permission is only requested on Linux";
    return 0;
#endif
#endif
}

int fg_amx_usable(const char **reason) {
    static int usable = -1;
    static const char *why;
    if (usable < 0) { const char *w; int u = detect(&w); why = w; usable = u; }
    if (reason) *reason = why;
    return usable;
}

#ifdef AMX_X86
__attribute__((target("amx-tile"))) void fg_amx_hw_config(const fg_amx_config *cfg) {
    __asm__ volatile("" ::: "memory"); // GCC's _tile_loadconfig tells the compiler it reads 8 bytes only
    _tile_loadconfig(cfg);
}
__attribute__((target("amx-tile"))) void fg_amx_hw_release(void) { _tile_release(); }
#else
void fg_amx_hw_config(const fg_amx_config *cfg) { (void)cfg; assert(!"AMX on a non-x86 build"); }
void fg_amx_hw_release(void) {}
#endif

// ---- emulator --------------------------------------------------------------------------------

typedef struct {
    fg_amx_config cfg;
    int configured;
    uint8_t t[8][16][64]; // tile, row, byte
} emu_state;
static _Thread_local emu_state emu;

void fg_amx_emu_config(const fg_amx_config *cfg) {
    // LDTILECFG's checks (#GP on the hardware): palette 0 releases; palette 1 has 8 tiles of at most
    // 16 rows x 64 bytes, rows == 0 exactly when colsb == 0, every other byte 0.
    if (cfg->palette == 0) { fg_amx_emu_release(); return; }
    assert(cfg->palette == 1 && cfg->start_row == 0);
    for (int i = 0; i < 14; i++) assert(cfg->reserved[i] == 0);
    for (int t = 0; t < 16; t++) {
        if (t >= 8) { assert(cfg->rows[t] == 0 && cfg->colsb[t] == 0); continue; }
        assert(cfg->rows[t] <= 16 && cfg->colsb[t] <= 64 && (cfg->rows[t] == 0) == (cfg->colsb[t] == 0));
    }
    emu.cfg = *cfg;
    emu.configured = 1;
    memset(emu.t, 0, sizeof emu.t);
}

void fg_amx_emu_release(void) { memset(&emu, 0, sizeof emu); }

// A tile instruction on tile t needs a loaded configuration that gives t a shape (#UD otherwise).
static void emu_check(int t) { assert(emu.configured && t >= 0 && t < 8 && emu.cfg.rows[t] > 0); }

void fg_amx_emu_zero(int t) {
    emu_check(t);
    memset(emu.t[t], 0, sizeof emu.t[t]);
}

void fg_amx_emu_load(int t, const void *base, long stride) {
    // rows x colsb bytes from memory; the rest of the tile (beyond colsb, beyond rows) becomes 0
    emu_check(t);
    memset(emu.t[t], 0, sizeof emu.t[t]);
    for (int r = 0; r < emu.cfg.rows[t]; r++) memcpy(emu.t[t][r], (const uint8_t *)base + (long)r * stride, emu.cfg.colsb[t]);
}

void fg_amx_emu_store(int t, void *base, long stride) {
    emu_check(t);
    for (int r = 0; r < emu.cfg.rows[t]; r++) memcpy((uint8_t *)base + (long)r * stride, emu.t[t][r], emu.cfg.colsb[t]);
}

static inline float bf16_daz(const uint8_t *p) { // make_fp32 of the bf16 at p, denormal inputs read as 0
    uint16_t h;
    memcpy(&h, p, 2);
    if (!(h & 0x7f80)) h &= 0x8000;
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}
static inline float ftz(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; } // NaN passes

void fg_amx_emu_dpbf16ps(int c, int a, int b) {
    emu_check(c); emu_check(a); emu_check(b);
    const fg_amx_config *g = &emu.cfg;
    // #UD cases of the SDM: distinct registers, whole dwords, matching shapes
    assert(c != a && c != b && a != b);
    assert(g->colsb[c] % 4 == 0 && g->colsb[a] % 4 == 0 && g->colsb[b] % 4 == 0);
    assert(g->colsb[c] == g->colsb[b] && g->colsb[a] / 4 == g->rows[b] && g->rows[c] == g->rows[a]);
    int rows = g->rows[c], nn = g->colsb[c] / 4, kk = g->colsb[a] / 4;
    for (int m = 0; m < rows; m++) {
        float even[16] = {0}, odd[16] = {0};
        for (int k = 0; k < kk; k++) {
            float a0 = bf16_daz(emu.t[a][m] + 4 * k), a1 = bf16_daz(emu.t[a][m] + 4 * k + 2);
            for (int n = 0; n < nn; n++) {
                even[n] = ftz(fmaf(a0, bf16_daz(emu.t[b][k] + 4 * n), even[n]));
                odd[n] = ftz(fmaf(a1, bf16_daz(emu.t[b][k] + 4 * n + 2), odd[n]));
            }
        }
        for (int n = 0; n < nn; n++) {
            float acc;
            memcpy(&acc, emu.t[c][m] + 4 * n, 4);
            acc = ftz(ftz(acc) + ftz(even[n] + odd[n])); // ftz(acc): DAZ on the accumulator input
            memcpy(emu.t[c][m] + 4 * n, &acc, 4);
        }
    }
    // the bytes of each row beyond colsb and the rows beyond rows are zero already: loads, TILEZERO
    // and this instruction only ever write the configured shape of the destination.
}

// ---- one instruction on memory operands (tests) ----------------------------------------------

static fg_amx_config once_config(int m, int n, int kp) {
    fg_amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    cfg.rows[0] = (uint8_t)m; cfg.colsb[0] = (uint16_t)(4 * n); // C
    cfg.rows[1] = (uint8_t)m; cfg.colsb[1] = (uint16_t)(4 * kp); // A
    cfg.rows[2] = (uint8_t)kp; cfg.colsb[2] = (uint16_t)(4 * n); // B
    return cfg;
}

#ifdef AMX_X86
__attribute__((target("amx-tile,amx-bf16"))) static void dp_once_hw(float *c, const uint32_t *a, const uint32_t *b,
                                                                     int n, int kp) {
    __asm__ volatile("" ::: "memory"); // GCC's tile loads do not tell the compiler they read memory
    _tile_loadd(0, c, 4L * n);
    _tile_loadd(1, a, 4L * kp);
    _tile_loadd(2, b, 4L * n);
    _tile_dpbf16ps(0, 1, 2);
    _tile_stored(0, c, 4L * n);
}
#endif

int fg_amx_dp_once(float *c, const uint32_t *a, const uint32_t *b, int m, int n, int kp, int hw) {
    assert(m >= 1 && m <= 16 && n >= 1 && n <= 16 && kp >= 1 && kp <= 16);
    fg_amx_config cfg = once_config(m, n, kp);
    if (hw) {
#ifdef AMX_X86
        if (!fg_amx_usable(NULL)) return -1;
        fg_amx_hw_config(&cfg);
        dp_once_hw(c, a, b, n, kp);
        fg_amx_hw_release();
        return 0;
#else
        return -1;
#endif
    }
    fg_amx_emu_config(&cfg);
    fg_amx_emu_load(0, c, 4L * n);
    fg_amx_emu_load(1, a, 4L * kp);
    fg_amx_emu_load(2, b, 4L * n);
    fg_amx_emu_dpbf16ps(0, 1, 2);
    fg_amx_emu_store(0, c, 4L * n);
    fg_amx_emu_release();
    return 0;
}
