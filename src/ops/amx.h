// amx.h: Intel AMX tiles for the GEMM's bf16 kernel (src/ops/gemm.c): run-time detection with the
// Linux permission request, the hardware's tile configuration, and a C emulator of exactly the tile
// instructions frugal uses, so the tiled kernel (packing, tiling, tails, stores) is tested on any
// machine, AMX or not.
//
// What it deliberately does not do: emulate anything but palette 1, TILEZERO, TILELOADD, TILESTORED
// and TDPBF16PS; model timing; fault like the hardware (misuse that would #GP or #UD there is an
// assert here: it is a programmer error).
//
// Verified on: no AMX hardware so far. The emulator follows the Intel SDM's pseudo-code of each
// instruction (see amx.c); test_gemm compares it bit for bit with the real instructions when it runs
// on an AMX machine.
#ifndef FG_AMX_H
#define FG_AMX_H

#include <stdint.h>

// The 64-byte operand of LDTILECFG. Palette 1: 8 tiles of at most 16 rows of 64 bytes; rows[t] and
// colsb[t] (bytes per row) configure tile t; every other byte must be 0.
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} fg_amx_config;

// 1 when the tile instructions can run in this process: the CPU has AMX-TILE and AMX-BF16 (CPUID
// leaf 7: EDX bits 24 and 22), the OS enables the tile state in XCR0, and Linux granted this process
// the tile data permission (arch_prctl ARCH_REQ_XCOMP_PERM, asked once, on the first call, for the
// whole process). 0 otherwise. reason (may be NULL) receives a static string saying what is missing.
int fg_amx_usable(const char **reason);

// LDTILECFG / TILERELEASE on the calling thread. Only when fg_amx_usable() says 1.
void fg_amx_hw_config(const fg_amx_config *cfg);
void fg_amx_hw_release(void);

// The emulator: the calling thread's 8 tiles and configuration, in C (thread-local, so OpenMP
// threads each have their own, as on the hardware). Tile numbers are 0..7; strides are in bytes.
void fg_amx_emu_config(const fg_amx_config *cfg);      // LDTILECFG (zeroes every tile)
void fg_amx_emu_release(void);                          // TILERELEASE
void fg_amx_emu_zero(int t);                            // TILEZERO
void fg_amx_emu_load(int t, const void *base, long stride); // TILELOADD
void fg_amx_emu_store(int t, void *base, long stride);  // TILESTORED
void fg_amx_emu_dpbf16ps(int c, int a, int b);          // TDPBF16PS tmm_c, tmm_a, tmm_b

// One TDPBF16PS on operands in memory, for tests: c (m x n fp32, row stride n) += a (m rows of kp
// bf16 pairs, row stride kp pairs) . b (kp rows of n bf16 pairs, row stride n pairs), pairs as 32-bit
// words (element 2k in the low half). m, kp <= 16, n <= 16. hw = 1: the real instruction (returns -1
// when fg_amx_usable() is 0); hw = 0: the emulator. Returns 0 when done.
int fg_amx_dp_once(float *c, const uint32_t *a, const uint32_t *b, int m, int n, int kp, int hw);

#endif
