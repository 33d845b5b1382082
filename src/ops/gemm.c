// gemm.c: see gemm.h. The classic Goto/BLIS structure, kept small:
//
//   for each block of KC rows of op(B) (the reduction dimension):
//     pack op(A)[:, block] into MR-row panels and op(B)[block, :] into NR-column panels
//     (in parallel; fp32, or bf16 pairs for the bf16 kernels), then
//     for each (MC x NB) tile of C, in parallel: MR x NR micro-kernel over the packed panels.
//
// Packing makes every operand layout (transposed or not, fp32, bf16 or Q8_0 rows) look the same
// to the micro-kernel, which then streams both panels with unit stride: MR broadcasts and NR/16
// vector loads per k, MR*NR/16 FMAs. MR=8, NR=32 uses 16 of the 32 AVX-512 accumulator registers.
// The bf16 panels hold (k, k+1) pairs next to each other, the layout vdpbf16ps multiplies.
//
// One OpenMP region per call: the pack loops and the tile loop are work-shared `omp for`s with
// their implicit barriers, so a product costs one thread wake-up, not one per block. Packing
// buffers are thread-local to the caller and grow on demand (no malloc per call once warm).
//
// AMX (bf16 only, where the CPU and the OS allow it, src/ops/amx.h): the same B panels, A packed
// as 32 bf16 rows (row-major), K zero-padded to a multiple of 32 in both, and a 32 x 32 tile
// micro-kernel (4 fp32 accumulator tiles). The kernel is written once and built twice: on the tile
// instructions and on amx.c's C emulator of them (fg_gemm_amx_emulate), which is how it is tested
// on machines without AMX. Verified so far only through the emulator: the machine it was written
// on has no AMX.
#include "ops/gemm.h"

#include "frugal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ops/quant.h"
#include "ops/amx.h"
#include "ops/vec.h"
#include "util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FG_X86 1
#include <immintrin.h>
#endif

#define MR 8
#define NR 32
#define KC 1024                           // reduction block (even: bf16 pairs never straddle blocks)
#define MC 64                            // rows of C per tile (multiple of MR)
#define NB 128                           // columns of C per tile (multiple of NR)
#define AMR 32                           // AMX: rows of an A panel and of the C block (MC is a multiple)
#define AK 32                            // AMX: bf16 per tile row; K is padded to a multiple
// The avx512 kernels fetch the B panel this many bytes ahead of their loads (towards L1): a panel
// is one contiguous stream, usually from DRAM in a decode step's expert products, and the
// hardware prefetchers alone left the single-threaded 16 x 512 x 256 expert products at 104-107
// GFLOP/s on Zen 5 against 121-138 with 4-8 KB of lead (gmb microbenchmark, 112 cold experts).
#define PF_AHEAD 8192
// The two cache lines (128 bytes: NR floats or 2 * NR bf16) a kernel's k step reads from the B
// panel, `ahead` bytes on: PF_AHEAD, or, for pre-packed weights on the last row panel's pass over a
// B panel (the others read it from L2), the same k of the next B panel, so that panel streams in
// while this one is reused instead of after it (cold single-threaded 16 x 512 x 256 expert
// products side by side, 112 experts: 5.0-6.0 -> 4.7-5.4 ms).
#define prefetch_panel(b, ahead) do { _mm_prefetch((const char *)(b) + (ahead), _MM_HINT_T0); \
        _mm_prefetch((const char *)(b) + (ahead) + 64, _MM_HINT_T0); } while (0)

static int force_generic, force_avx2, amx_emulate;

int fg_gemm_force_generic(int on) { int old = force_generic; force_generic = on; return old; }
int fg_gemm_force_avx2(int on) { int old = force_avx2; force_avx2 = on; return old; }
int fg_gemm_amx_emulate(int on) { int old = amx_emulate; amx_emulate = on; return old; }

// The bf16 tile kernel to run: 0 none, 1 the AMX instructions, 2 their emulator.
static int amx_mode(void) {
    if (amx_emulate > 0) return 2;
    if (amx_emulate < 0 || force_generic) return 0;
    return fg_amx_usable(NULL);
}

static int cpu_avx512(void) {
#ifdef FG_X86
    static int v = -1;
    if (v < 0) v = __builtin_cpu_supports("avx512f");
    return v && !force_generic && !force_avx2;
#else
    return 0;
#endif
}
// AVX2 + FMA (Zen 1-3, Intel since Haswell): 16 ymm registers, so the 8 x 32 tile is run in
// passes over the same panels (kern_f32_avx2, kern_bf16_avx2).
static int cpu_avx2(void) {
#ifdef FG_X86
    static int v = -1;
    if (v < 0) v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return v && !force_generic;
#else
    return 0;
#endif
}
static int cpu_avx512bf16(void) {
#ifdef FG_X86
    static int v = -1;
    if (v < 0) v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    return v && !force_generic && !force_avx2;
#else
    return 0;
#endif
}

const char *fg_gemm_kernel_name(int prec) {
    if (prec == FG_BF16) {
        int amx = amx_mode();
        if (amx) return amx == 1 ? "amx-bf16" : "amx-bf16-emulated";
        return cpu_avx512bf16() ? "avx512-bf16" : cpu_avx2() ? "avx2-bf16" : "generic-bf16";
    }
    return cpu_avx512() ? "avx512" : cpu_avx2() ? "avx2" : "generic";
}

// ---- conversions -----------------------------------------------------------------------------


// ---- packing ---------------------------------------------------------------------------------
// A panel: for k in [0, kc): MR values of rows i0..i0+MR (zero beyond mc). bf16: for each pair
// kp: MR x {k=2kp, k=2kp+1} (zero beyond kc). B panel likewise with NR columns. AMX: the B panel
// as for bf16 with zero pairs up to kpad (a multiple of AK); the A panel is AMR rows of kpad bf16.

typedef struct {
    int ta, tb, M, N, K, prec;
    const float *A, *B;
    long lda, ldb;
    const void *W;                       // fg_gemm_qb: quantised rows
    long row_bytes;
    int btype;
    float *C;
    long ldc;
    int accumulate;
    const float *bias;
    const char *Bpre;                    // B already in panels (fg_gemm_packed): no B packing
} gemm_args;

// n floats to bf16, round to nearest even, NaN kept quiet; written branch-free so it vectorises.
static void row_bf16(uint16_t *restrict dst, const float *restrict src, int n) {
    for (int i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, src + i, 4);
        uint32_t r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16, q = (x >> 16) | 0x40u;
        dst[i] = (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? q : r);
    }
}

static inline uint32_t bf16_bits(uint32_t x) { // as row_bf16, one value, result in the low 16 bits
    uint32_t r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16, q = (x >> 16) | 0x40u;
    return (x & 0x7fffffffu) > 0x7f800000u ? q : r;
}

// d[c] = the bf16 pair (lo[c], hi[c]) for c < n: element k of a pair in the low half, k+1 in the
// high half (the layout vdpbf16ps multiplies). Vectorises (contiguous in, contiguous out).
static inline __attribute__((always_inline)) void pairs_bf16(uint32_t *restrict d, const float *restrict lo,
                                                             const float *restrict hi, int n) {
    for (int c = 0; c < n; c++) {
        uint32_t l, h;
        memcpy(&l, lo + c, 4);
        memcpy(&h, hi + c, 4);
        d[c] = bf16_bits(l) | bf16_bits(h) << 16;
    }
}
static const float zeros[NR > MR ? NR : MR];

#ifdef FG_X86
// dst[t * ldd + c] = src[c][k0 + t] for a 16 x 16 block: unpack pairs, then 64-bit pairs, then
// 128-bit lanes twice (the classic 4-stage in-register transpose, 64 shuffles per 256 floats).
// width 16 stores all 16 columns of each output row, width 8 only the first 8 (an 8-row A panel:
// rows 8..15 of src then only need to be readable). Moves 32-bit lanes, so it also transposes
// bf16 pairs.
__attribute__((target("avx512f"))) static void transpose16_avx512(float *dst, long ldd, const float *const *src, int k0,
                                                                  int width) {
    __m512 r[16], a[16], b[16], c[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src[i] + k0);
    for (int i = 0; i < 8; i++) { a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]); a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]); }
    for (int i = 0; i < 4; i++) {
        __m512d x0 = _mm512_castps_pd(a[4 * i]), x1 = _mm512_castps_pd(a[4 * i + 1]);
        __m512d x2 = _mm512_castps_pd(a[4 * i + 2]), x3 = _mm512_castps_pd(a[4 * i + 3]);
        b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, x2));
        b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, x2));
        b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(x1, x3));
        b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(x1, x3));
    }
    // b[4i + j], lane L: rows 4i..4i+3 of column 4L + j.
    for (int j = 0; j < 4; j++) {
        c[j] = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x88);
        c[4 + j] = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xdd);
        c[8 + j] = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x88);
        c[12 + j] = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xdd);
    }
    __mmask16 m = width == 16 ? 0xffff : 0x00ff;
    for (int j = 0; j < 4; j++) {
        _mm512_mask_storeu_ps(dst + (long)j * ldd, m, _mm512_shuffle_f32x4(c[j], c[8 + j], 0x88));
        _mm512_mask_storeu_ps(dst + (long)(8 + j) * ldd, m, _mm512_shuffle_f32x4(c[j], c[8 + j], 0xdd));
        _mm512_mask_storeu_ps(dst + (long)(4 + j) * ldd, m, _mm512_shuffle_f32x4(c[4 + j], c[12 + j], 0x88));
        _mm512_mask_storeu_ps(dst + (long)(12 + j) * ldd, m, _mm512_shuffle_f32x4(c[4 + j], c[12 + j], 0xdd));
    }
}
#endif

static void pack_a_f32(float *dst, const gemm_args *g, int i0, int mr, int p0, int kc) {
    if (g->ta) { // rows of op(A) are columns of A: k-major reads are contiguous
        if (mr == MR) {
            for (int k = 0; k < kc; k++) memcpy(dst + (size_t)k * MR, g->A + (long)(p0 + k) * g->lda + i0, sizeof(float) * MR);
            return;
        }
        for (int k = 0; k < kc; k++) {
            const float *src = g->A + (long)(p0 + k) * g->lda + i0;
            int r = 0;
            for (; r < mr; r++) dst[k * MR + r] = src[r];
            for (; r < MR; r++) dst[k * MR + r] = 0;
        }
        return;
    }
    for (int r = 0; r < MR; r++) {
        if (r >= mr) { for (int k = 0; k < kc; k++) dst[k * MR + r] = 0; continue; }
        const float *src = g->A + (long)(i0 + r) * g->lda + p0;
        for (int k = 0; k < kc; k++) dst[k * MR + r] = src[k];
    }
}

static void pack_a_bf16(uint16_t *dst, const gemm_args *g, int i0, int mr, int p0, int kc, uint16_t *tmp) {
    int kp = (kc + 1) / 2;
    uint32_t *d = (uint32_t *)dst;
    if (g->ta) { // pair (k, k+1) of row r = A[k][i0+r], A[k+1][i0+r]: two contiguous rows per pair
        for (int q = 0; q < kp; q++) {
            const float *lo = g->A + (long)(p0 + 2 * q) * g->lda + i0;
            const float *hi = 2 * q + 1 < kc ? lo + g->lda : zeros;
            if (mr == MR) { pairs_bf16(d + (size_t)q * MR, lo, hi, MR); continue; } // constant width: inlined, vectorised
            pairs_bf16(d + (size_t)q * MR, lo, hi, mr);
            for (int r = mr; r < MR; r++) d[(size_t)q * MR + r] = 0;
        }
        return;
    }
    // Each row to bf16 (zero-padded to an even count), then a transpose of the 32-bit pairs.
    size_t hs = (size_t)KC + 2;
    const float *rows[16];
    for (int r = 0; r < MR; r++) {
        uint16_t *h = tmp + r * hs;
        if (r < mr) row_bf16(h, g->A + (long)(i0 + r) * g->lda + p0, kc);
        else memset(h, 0, sizeof(uint16_t) * kc);
        h[kc] = 0;
        rows[r] = rows[r + 8] = (const float *)h;
    }
    for (int q0 = 0; q0 < kp; q0 += 16) {
        int qq = FG_MIN(16, kp - q0);
#ifdef FG_X86
        if (qq == 16 && cpu_avx512()) { transpose16_avx512((float *)(d + (size_t)q0 * MR), MR, rows, q0, 8); continue; }
#endif
        for (int r = 0; r < MR; r++)
            for (int t = 0; t < qq; t++) memcpy(d + (size_t)(q0 + t) * MR + r, rows[r] + q0 + t, 4);
    }
}

// Reads op(B)[p0 .. p0+kc) of column j (a row of W or of B^T) into col: a pointer to kc floats.
static const float *b_column(float *col, const gemm_args *g, int j, int p0, int kc) {
    if (!g->W) return g->B + (long)j * g->ldb + p0; // tb = 1
    const uint8_t *row = (const uint8_t *)g->W + (long)j * g->row_bytes;
    if (g->btype == FG_F32) return (const float *)row + p0;
    if (g->btype == FG_BF16) {
        const uint16_t *h = (const uint16_t *)row + p0;
        for (int k = 0; k < kc; k++) { uint32_t x = (uint32_t)h[k] << 16; memcpy(col + k, &x, 4); }
        return col;
    }
    // block types: p0 and kc are multiples of the block (KC is a multiple of 256, the largest
    // block, and K of the row's block)
    const fg_dtype_traits *t = fg_dtype_info(g->btype);
    fg_dequantize_row(col, row + (long)(p0 / t->block) * t->block_bytes, kc, g->btype);
    return col;
}

// Per-thread scratch for packing: NR converted columns (fp32) and NR bf16 rows.
typedef struct { float *col; uint16_t *h; } pack_tmp;
#define TMP_FLOATS ((size_t)NR * KC + (size_t)NR * (KC + 2) / 2)

// Transposed sources (op(B) columns are rows of B or W): the NR source rows as fp32 pointers,
// converting quantised rows into tmp->col; missing columns (c >= nr) point at row 0 (never stored).
static void b_rows_f32(const float **src, const gemm_args *g, int j0, int nr, int p0, int kc, pack_tmp *tmp) {
    for (int c = 0; c < NR; c++) src[c] = b_column(tmp->col + (size_t)c * KC, g, j0 + (c < nr ? c : 0), p0, kc);
}

static void pack_b_f32(float *dst, const gemm_args *g, int j0, int nr, int p0, int kc, pack_tmp *tmp) {
    if (!g->W && !g->tb) { // rows of op(B) are contiguous
        const float *src = g->B + (long)p0 * g->ldb + j0;
        if (nr == NR) {
            for (int k = 0; k < kc; k++) memcpy(dst + (size_t)k * NR, src + (long)k * g->ldb, sizeof(float) * NR);
            return;
        }
        for (int k = 0; k < kc; k++) {
            int c = 0;
            for (; c < nr; c++) dst[k * NR + c] = src[(long)k * g->ldb + c];
            for (; c < NR; c++) dst[k * NR + c] = 0;
        }
        return;
    }
    const float *src[NR];
    b_rows_f32(src, g, j0, nr, p0, kc, tmp);
    // Transpose in blocks of 16 k so both the reads and the writes stay in L1.
    for (int k0 = 0; k0 < kc; k0 += 16) {
        int kk = FG_MIN(16, kc - k0);
#ifdef FG_X86
        if (kk == 16 && nr == NR && cpu_avx512()) {
            for (int c0 = 0; c0 < NR; c0 += 16) transpose16_avx512(dst + (size_t)k0 * NR + c0, NR, src + c0, k0, 16);
            continue;
        }
#endif
        for (int c = 0; c < NR; c++) {
            const float *sc = src[c] + k0;
            float *d = dst + (size_t)k0 * NR + c;
            if (c < nr) for (int t = 0; t < kk; t++) d[t * NR] = sc[t];
            else for (int t = 0; t < kk; t++) d[t * NR] = 0;
        }
    }
}

// kpad: the panel's k extent (even, >= kc); the pairs from kc up to kpad are zero.
static void pack_b_bf16(uint16_t *dst, const gemm_args *g, int j0, int nr, int p0, int kc, int kpad, pack_tmp *tmp) {
    int kp = (kc + 1) / 2;
    uint32_t *d = (uint32_t *)dst;
    memset(d + (size_t)kp * NR, 0, sizeof(uint32_t) * NR * (size_t)(kpad / 2 - kp));
    if (!g->W && !g->tb) { // pair (k, k+1) of column c: two contiguous rows of B
        for (int q = 0; q < kp; q++) {
            const float *lo = g->B + (long)(p0 + 2 * q) * g->ldb + j0;
            const float *hi = 2 * q + 1 < kc ? lo + g->ldb : zeros;
            if (nr == NR) { pairs_bf16(d + (size_t)q * NR, lo, hi, NR); continue; }
            pairs_bf16(d + (size_t)q * NR, lo, hi, nr);
            for (int c = nr; c < NR; c++) d[(size_t)q * NR + c] = 0;
        }
        return;
    }
    // NR bf16 rows of kc values (+1 zero for an odd count), then a transpose of the 32-bit pairs.
    size_t hs = (size_t)KC + 2;
    const float *rows[NR];
    for (int c = 0; c < NR; c++) {
        uint16_t *h = tmp->h + (size_t)c * hs;
        if (c >= nr) { memset(h, 0, sizeof(uint16_t) * (kc + 1)); rows[c] = (const float *)h; continue; }
        if (g->W && g->btype == FG_BF16) {
            const uint16_t *w = (const uint16_t *)((const uint8_t *)g->W + (long)(j0 + c) * g->row_bytes) + p0;
            if (!(kc & 1)) { rows[c] = (const float *)w; continue; }
            memcpy(h, w, sizeof(uint16_t) * kc);
        } else {
            row_bf16(h, b_column(tmp->col, g, j0 + c, p0, kc), kc);
        }
        h[kc] = 0;
        rows[c] = (const float *)h;
    }
    for (int q0 = 0; q0 < kp; q0 += 16) {
        int qq = FG_MIN(16, kp - q0);
#ifdef FG_X86
        if (qq == 16 && cpu_avx512()) {
            for (int c0 = 0; c0 < NR; c0 += 16) transpose16_avx512((float *)(d + (size_t)q0 * NR + c0), NR, rows + c0, q0, 16);
            continue;
        }
#endif
        for (int c = 0; c < NR; c++)
            for (int t = 0; t < qq; t++) memcpy(d + (size_t)(q0 + t) * NR + c, rows[c] + q0 + t, 4);
    }
}

// AMX A panel: rows i0 .. i0+AMR of op(A)[:, p0 .. p0+kc) as bf16, row r at dst + r * kpad (kpad a
// multiple of AK); zero beyond kc and in rows r >= mr.
static void pack_a_amx(uint16_t *dst, const gemm_args *g, int i0, int mr, int p0, int kc, int kpad) {
    if (g->ta) { // op(A) row r is column i0 + r of A: read along rows of A, write down the panel
        for (int k = 0; k < kc; k++) {
            const float *src = g->A + (long)(p0 + k) * g->lda + i0;
            for (int r = 0; r < mr; r++) {
                uint32_t x;
                memcpy(&x, src + r, 4);
                dst[(size_t)r * kpad + k] = (uint16_t)bf16_bits(x);
            }
        }
    } else {
        for (int r = 0; r < mr; r++) row_bf16(dst + (size_t)r * kpad, g->A + (long)(i0 + r) * g->lda + p0, kc);
    }
    for (int r = 0; r < AMR; r++) {
        int from = r < mr ? kc : 0;
        memset(dst + (size_t)r * kpad + from, 0, sizeof(uint16_t) * (size_t)(kpad - from));
    }
}

// ---- micro-kernels ---------------------------------------------------------------------------
// C[0:mr, 0:nr] (row stride ldc) = acc (+ bias) when first, else += acc. acc: rows of NR floats
// (MR of them for the register kernels, AMR for the tile kernel).


static void store_tile(float *c, long ldc, const float (*acc)[NR], int mr, int nr, int first, const float *bias) {
    for (int r = 0; r < mr; r++) {
        float *cr = c + (long)r * ldc;
        if (first) for (int j = 0; j < nr; j++) cr[j] = acc[r][j] + (bias ? bias[j] : 0.0f);
        else for (int j = 0; j < nr; j++) cr[j] += acc[r][j];
    }
}

static void kern_f32_generic(int kc, const float *a, const float *b, float *c, long ldc, int mr, int nr,
                             int first, const float *bias) {
    v16 acc[MR][2];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        v16 b0 = vload(b), b1 = vload(b + 16);
        for (int r = 0; r < MR; r++) { acc[r][0] += a[r] * b0; acc[r][1] += a[r] * b1; }
    }
    float out[MR][NR];
    memcpy(out, acc, sizeof out);
    store_tile(c, ldc, (const float(*)[NR])out, mr, nr, first, bias);
}

static void kern_bf16_generic(int kp, const uint16_t *a, const uint16_t *b, float *c, long ldc, int mr, int nr,
                              int first, const float *bias) {
    // The same sums vdpbf16ps forms: per pair, a0*b0 + a1*b1 added to the accumulator (products of
    // bf16 values are exact in fp32).
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int q = 0; q < kp; q++, a += 2 * MR, b += 2 * NR)
        for (int r = 0; r < MR; r++) {
            float a0 = fg_bf16_to_f32(a[2 * r]), a1 = fg_bf16_to_f32(a[2 * r + 1]);
            for (int j = 0; j < NR; j++) acc[r][j] += a0 * fg_bf16_to_f32(b[2 * j]) + a1 * fg_bf16_to_f32(b[2 * j + 1]);
        }
    store_tile(c, ldc, (const float(*)[NR])acc, mr, nr, first, bias);
}

#ifdef FG_X86
__attribute__((target("avx512f"))) static inline void store_avx512(float *c, long ldc, __m512 acc[MR][2], int mr,
                                                                    int nr, int first, const float *bias) {
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    if (first && bias) { b0 = _mm512_maskz_loadu_ps(m0, bias); b1 = _mm512_maskz_loadu_ps(m1, bias + 16); }
    for (int r = 0; r < mr; r++) {
        float *cr = c + (long)r * ldc;
        __m512 v0 = acc[r][0], v1 = acc[r][1];
        if (first) { v0 = _mm512_add_ps(v0, b0); v1 = _mm512_add_ps(v1, b1); }
        else { v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr)); v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16)); }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

__attribute__((target("avx512f"))) static void kern_f32_avx512(int kc, const float *a, const float *b, float *c,
                                                               long ldc, int mr, int nr, int first, const float *bias,
                                                               long ahead) {
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        prefetch_panel(b, ahead);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[r]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    store_avx512(c, ldc, acc, mr, nr, first, bias);
}

// The same kernel reading A in place (row-major, row stride lda) instead of from a packed panel:
// op(A) = A needs no packing in fp32, which saves a pass over the activations for every product.
// Rows beyond mr read row 0 again; their results are never stored.
__attribute__((target("avx512f"))) static void kern_f32_avx512_rows(int kc, const float *a, long lda, const float *b,
                                                                    float *c, long ldc, int mr, int nr, int first,
                                                                    const float *bias, long ahead) {
    const float *ar[MR];
    for (int r = 0; r < MR; r++) ar[r] = a + (r < mr ? r : 0) * lda;
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++, b += NR) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        prefetch_panel(b, ahead);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(ar[r][k]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    store_avx512(c, ldc, acc, mr, nr, first, bias);
}

__attribute__((target("avx512f,avx512bf16"))) static void kern_bf16_avx512(int kp, const uint16_t *a, const uint16_t *b,
                                                                         float *c, long ldc, int mr, int nr, int first,
                                                                         const float *bias, long ahead) {
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int q = 0; q < kp; q++, a += 2 * MR, b += 2 * NR) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 32);
        prefetch_panel(b, ahead);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            uint32_t pair;
            memcpy(&pair, a + 2 * r, 4);
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
    store_avx512(c, ldc, acc, mr, nr, first, bias);
}
#endif

// AVX2 + FMA: 16 ymm registers. The 8 x 32 tile runs as three passes over the panels, each an
// R x 8*CV block: rows 0-5 x columns 0-15, rows 0-5 x 16-31 (12 accumulators, 2 B vectors, a
// broadcast) and rows 6-7 x 0-31 (8 accumulators, 4 B vectors). 12 independent chains cover the
// FMA latency (4 cycles x 2 pipes; the 4 x 16 block's 8 chains ran at 55% of peak), and per k the
// first two passes load 8 values for 12 FMAs. Each element is one FMA chain over k, as in the
// AVX-512 kernel, so the two give the same bits.
__attribute__((target("avx2,fma"), always_inline)) static inline void avx2_block(int kc, const float *a, const float *b,
                                                                                 float (*out)[NR], const int R, const int CV,
                                                                                 const char *pf) {
    __m256 acc[6][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < CV; v++) acc[r][v] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        __m256 bv[4];
        for (int v = 0; v < CV; v++) bv[v] = _mm256_loadu_ps(b + 8 * v);
        if (pf) _mm_prefetch(pf + (size_t)k * NR * sizeof(float), _MM_HINT_T0);
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_broadcast_ss(a + r);
            for (int v = 0; v < CV; v++) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < CV; v++) _mm256_storeu_ps(out[r] + 8 * v, acc[r][v]);
}

__attribute__((target("avx2,fma"))) static void kern_f32_avx2(int kc, const float *a, const float *b, float *c, long ldc,
                                                             int mr, int nr, int first, const float *bias, long ahead) {
    float out[MR][NR];
    const char *pf = (const char *)b + ahead;
    avx2_block(kc, a, b, out, 6, 2, pf);
    if (nr > 16) avx2_block(kc, a, b + 16, (float(*)[NR])(out[0] + 16), 6, 2, pf + 64);
    if (mr > 6) avx2_block(kc, a + 6, b, out + 6, 2, 4, NULL);
    store_tile(c, ldc, (const float(*)[NR])out, mr, nr, first, bias);
}

// bf16 panels on AVX2 (no bf16 arithmetic): a pair row of 8 columns is one 256-bit load whose
// 32-bit lanes hold (k, k+1); k+1 is the lane with its low half cleared, k the lane shifted left
// 16. Each pair adds a0*b0 + a1*b1 as the generic kernel does (both products exact in fp32, the
// sum rounded once: a multiply and an FMA), then to the accumulator: the same bits as the generic
// kernel.
__attribute__((target("avx2,fma"))) static void kern_bf16_avx2(int kp, const uint16_t *a, const uint16_t *b, float *c,
                                                              long ldc, int mr, int nr, int first, const float *bias) {
    float out[MR][NR];
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    for (int r0 = 0; r0 < mr; r0 += 4)
        for (int j0 = 0; j0 < nr; j0 += 16) {
            __m256 acc[4][2];
            for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
            const uint16_t *aq = a + 2 * r0, *bq = b + 2 * j0;
            for (int q = 0; q < kp; q++, aq += 2 * MR, bq += 2 * NR) {
                __m256i p0 = _mm256_loadu_si256((const __m256i *)bq), p1 = _mm256_loadu_si256((const __m256i *)(bq + 16));
                __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(p0, 16)), o0 = _mm256_castsi256_ps(_mm256_and_si256(p0, hi));
                __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(p1, 16)), o1 = _mm256_castsi256_ps(_mm256_and_si256(p1, hi));
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) {
                    __m256 a0 = _mm256_set1_ps(fg_bf16_to_f32(aq[2 * r])), a1 = _mm256_set1_ps(fg_bf16_to_f32(aq[2 * r + 1]));
                    acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_fmadd_ps(a1, o0, _mm256_mul_ps(a0, e0)));
                    acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_fmadd_ps(a1, o1, _mm256_mul_ps(a0, e1)));
                }
            }
            for (int r = 0; r < 4; r++) {
                _mm256_storeu_ps(out[r0 + r] + j0, acc[r][0]);
                _mm256_storeu_ps(out[r0 + r] + j0 + 8, acc[r][1]);
            }
        }
    store_tile(c, ldc, (const float(*)[NR])out, mr, nr, first, bias);
}

// The AMX micro-kernel, written once against OP##_ZERO / _LOAD / _DP / _STORE and built below for
// the tile instructions (OP = HW) and for amx.c's emulator of them (OP = EMU):
//     out (AMR x NR fp32) = A (AMR rows of kpad bf16, row stride lda) @ B (an NR-column bf16 panel)
// kpad is a multiple of AK and both operands are zero up to it, so every tile has the one shape of
// tile_cfg: 16 rows of 64 bytes. Tiles 0..3: the 2 x 2 accumulators (16 x 16 fp32 each); 4, 5: A
// rows 0..15 / 16..31 (16 x 32 bf16); 6, 7: B columns 0..15 / 16..31 (16 pair rows = 32 k; a pair
// row of the panel is NR words, 128 bytes).
#define AMX_KERNEL(OP)                                                                               \
    static void kern_bf16_amx_##OP(int kpad, const uint16_t *a, long lda, const uint16_t *b,         \
                                   float out[AMR][NR]) {                                             \
        OP##_ZERO(0); OP##_ZERO(1); OP##_ZERO(2); OP##_ZERO(3);                                      \
        for (int k = 0; k < kpad; k += AK, a += AK, b += (size_t)AK * NR) {                          \
            OP##_LOAD(4, a, 2 * lda);                                                                \
            OP##_LOAD(5, a + 16 * lda, 2 * lda);                                                     \
            OP##_LOAD(6, b, 4 * NR);                                                                 \
            OP##_LOAD(7, b + 32, 4 * NR);                                                            \
            OP##_DP(0, 4, 6); OP##_DP(1, 4, 7); OP##_DP(2, 5, 6); OP##_DP(3, 5, 7);                  \
        }                                                                                            \
        OP##_STORE(0, &out[0][0], 4 * NR); OP##_STORE(1, &out[0][16], 4 * NR);                       \
        OP##_STORE(2, &out[16][0], 4 * NR); OP##_STORE(3, &out[16][16], 4 * NR);                     \
    }

static const fg_amx_config tile_cfg = { // palette 1, tiles 0..7 all 16 rows x 64 bytes
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

#define EMU_ZERO(t) fg_amx_emu_zero(t)
#define EMU_LOAD(t, p, stride) fg_amx_emu_load(t, p, stride)
#define EMU_DP(c, a, b) fg_amx_emu_dpbf16ps(c, a, b)
#define EMU_STORE(t, p, stride) fg_amx_emu_store(t, p, stride)
AMX_KERNEL(EMU)

#ifdef FG_X86
// GCC's tile-load intrinsic does not tell the compiler that it reads memory: the empty asm does.
#define HW_ZERO(t) _tile_zero(t)
#define HW_LOAD(t, p, stride) do { __asm__ volatile("" ::: "memory"); _tile_loadd(t, p, stride); } while (0)
#define HW_DP(c, a, b) _tile_dpbf16ps(c, a, b)
#define HW_STORE(t, p, stride) _tile_stored(t, p, stride)
__attribute__((target("amx-tile,amx-bf16"))) AMX_KERNEL(HW)
#endif

// ---- driver ----------------------------------------------------------------------------------

typedef struct { void *p; size_t cap; } tbuf;
static _Thread_local tbuf buf_a, buf_b, buf_col;

// A thread's buffers are freed when it exits (threads come and go: a server's engine thread and
// its OpenMP team, say): a key whose destructor runs in the exiting thread, set at its first grow.
static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;
static void buf_release(void *unused) {
    (void)unused;
    free(buf_a.p); free(buf_b.p); free(buf_col.p);
    buf_a = buf_b = buf_col = (tbuf){0};
}
static void buf_key_make(void) { pthread_key_create(&buf_key, buf_release); }

static void *grow(tbuf *t, size_t bytes) {
    if (bytes <= t->cap) return t->p;
    if (!buf_a.p && !buf_b.p && !buf_col.p) { // this thread's first buffer
        pthread_once(&buf_once, buf_key_make);
        pthread_setspecific(buf_key, (void *)1);
    }
    free(t->p);
    t->cap = bytes + bytes / 4;
    t->p = aligned_alloc(64, (t->cap + 63) & ~(size_t)63);
    if (!t->p) t->cap = 0;
    return t->p;
}

// The packed k extent of a block of kc: whole bf16 pairs; whole AK steps for the tile kernel.
static int k_extent(int kc, int bf, int amx) { return amx ? (kc + AK - 1) / AK * AK : bf ? (kc + 1) & ~1 : kc; }

static void gemm_run(const gemm_args *g) {
    int M = g->M, N = g->N, K = g->K, bf = g->prec == FG_BF16;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { // C = bias (or unchanged when accumulating)
        if (!g->accumulate)
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) g->C[(long)i * g->ldc + j] = g->bias ? g->bias[j] : 0.0f;
        return;
    }
    int amx = bf ? amx_mode() : 0, mr_step = amx ? AMR : MR; // amx: A in AMR-row panels
    int mp = (M + mr_step - 1) / mr_step, np = (N + NR - 1) / NR, kcmax = FG_MIN(K, KC);
    size_t esz = bf ? 2 : 4, kstride = (size_t)k_extent(kcmax, bf, amx);
    char *Ap = grow(&buf_a, (size_t)mp * mr_step * kstride * esz);
    char *Bp = g->Bpre ? NULL : grow(&buf_b, (size_t)np * NR * kstride * esz);
#ifdef _OPENMP
    int nthr = omp_get_max_threads();
#else
    int nthr = 1;
#endif
    float *cols = grow(&buf_col, (size_t)nthr * TMP_FLOATS * sizeof(float)); // per-thread pack_tmp
    if (!Ap || !(Bp || g->Bpre) || !cols) abort(); // out of memory for a few MB: nothing sane to do
    int use_bf = bf && !amx && cpu_avx512bf16(), use_f = !bf && cpu_avx512(), direct_a = use_f && !g->ta;
    int use_bf2 = bf && !amx && !use_bf && cpu_avx2(), use_f2 = !bf && !use_f && cpu_avx2();
    int mt = (M + MC - 1) / MC, nt = (N + NB - 1) / NB;
    double work = (double)M * N * K;
#pragma omp parallel if (work > 65536.0 && !omp_in_parallel())
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        pack_tmp pt = {cols + (size_t)tid * TMP_FLOATS, (uint16_t *)(cols + (size_t)tid * TMP_FLOATS + (size_t)NR * KC)};
        uint16_t *tmp = pt.h;
        // one tile configuration per thread and call (the emulator's state is per thread too)
        if (amx == 1) fg_amx_hw_config(&tile_cfg);
        if (amx == 2) fg_amx_emu_config(&tile_cfg);
        for (int p0 = 0; p0 < K; p0 += KC) {
            int kc = FG_MIN(KC, K - p0), first = p0 == 0 && !g->accumulate;
            size_t kpad = (size_t)k_extent(kc, bf, amx);
            // this block's B panels: packed here, or block p0 / KC of the pre-packed ones
            const char *Bk = g->Bpre ? g->Bpre + (size_t)(p0 / KC) * np * NR * kstride * esz : Bp;
#pragma omp for schedule(static) nowait
            for (int jp = 0; jp < (g->Bpre ? 0 : np); jp++) {
                int j0 = jp * NR, nr = FG_MIN(NR, N - j0);
                if (bf) pack_b_bf16((uint16_t *)Bp + (size_t)jp * NR * kpad, g, j0, nr, p0, kc, (int)kpad, &pt);
                else pack_b_f32((float *)Bp + (size_t)jp * NR * kpad, g, j0, nr, p0, kc, &pt);
            }
#pragma omp for schedule(static)
            for (int ip = 0; ip < (direct_a ? 0 : mp); ip++) {
                int i0 = ip * mr_step, mr = FG_MIN(mr_step, M - i0);
                if (amx) pack_a_amx((uint16_t *)Ap + (size_t)ip * AMR * kpad, g, i0, mr, p0, kc, (int)kpad);
                else if (bf) pack_a_bf16((uint16_t *)Ap + (size_t)ip * MR * kpad, g, i0, mr, p0, kc, tmp);
                else pack_a_f32((float *)Ap + (size_t)ip * MR * kpad, g, i0, mr, p0, kc);
            }
#pragma omp for collapse(2) schedule(dynamic)
            for (int ti = 0; ti < mt; ti++)
                for (int tj = 0; tj < nt; tj++) {
                    int i1 = FG_MIN(M, (ti + 1) * MC), j1 = FG_MIN(N, (tj + 1) * NB);
                    for (int j0 = tj * NB; j0 < j1; j0 += NR)
                        for (int i0 = ti * MC; i0 < i1; i0 += mr_step) {
                            int mr = FG_MIN(mr_step, M - i0), nr = FG_MIN(NR, N - j0);
                            // pre-packed weights stream from memory: the last row panel's pass fetches the next B
                            // panel (products that pack B per call find it in L2 and keep PF_AHEAD)
                            long ahead = g->Bpre && i0 > ti * MC && i0 + mr_step >= i1 && j0 + NR < N ? (long)(NR * kpad * esz) : PF_AHEAD;
                            float *c = g->C + (long)i0 * g->ldc + j0;
                            const float *bias = first && g->bias ? g->bias + j0 : NULL;
                            size_t ao = (size_t)i0 * kpad, bo = (size_t)j0 * kpad; // panel starts
                            if (amx) {
                                const uint16_t *a = (const uint16_t *)Ap + ao, *b = (const uint16_t *)Bk + bo;
                                float out[AMR][NR];
#ifdef FG_X86
                                if (amx == 1) kern_bf16_amx_HW((int)kpad, a, (long)kpad, b, out);
#endif
                                if (amx == 2) kern_bf16_amx_EMU((int)kpad, a, (long)kpad, b, out);
                                store_tile(c, g->ldc, (const float(*)[NR])out, mr, nr, first, bias);
                            } else if (bf) {
                                const uint16_t *a = (const uint16_t *)Ap + ao, *b = (const uint16_t *)Bk + bo;
#ifdef FG_X86
                                if (use_bf) { kern_bf16_avx512((int)kpad / 2, a, b, c, g->ldc, mr, nr, first, bias, ahead); continue; }
                                if (use_bf2) { kern_bf16_avx2((int)kpad / 2, a, b, c, g->ldc, mr, nr, first, bias); continue; }
#endif
                                kern_bf16_generic((int)kpad / 2, a, b, c, g->ldc, mr, nr, first, bias);
                            } else {
                                const float *a = (const float *)Ap + ao, *b = (const float *)Bk + bo;
#ifdef FG_X86
                                if (direct_a) {
                                    kern_f32_avx512_rows(kc, g->A + (long)i0 * g->lda + p0, g->lda, b, c, g->ldc, mr, nr, first, bias, ahead);
                                    continue;
                                }
                                if (use_f) { kern_f32_avx512(kc, a, b, c, g->ldc, mr, nr, first, bias, ahead); continue; }
                                if (use_f2) { kern_f32_avx2(kc, a, b, c, g->ldc, mr, nr, first, bias, ahead); continue; }
#endif
                                kern_f32_generic(kc, a, b, c, g->ldc, mr, nr, first, bias);
                                (void)ahead; // read by the AVX-512 kernels only
                            }
                        }
                }
        }
        if (amx == 1) fg_amx_hw_release();
        if (amx == 2) fg_amx_emu_release();
    }
    (void)use_bf; (void)use_f; (void)use_bf2; (void)use_f2; (void)work; // work: read only by the OpenMP pragma
}

void fg_gemm(int ta, int tb, int M, int N, int K, const float *A, long lda, const float *B, long ldb,
             float *C, long ldc, int accumulate, const float *bias, int prec) {
    gemm_args g = {ta, tb, M, N, K, prec, A, B, lda, ldb, NULL, 0, 0, C, ldc, accumulate, bias, NULL};
    gemm_run(&g);
}

void fg_gemm_qb(int M, int N, int K, const float *A, long lda, const void *W, long row_bytes, int btype,
                float *C, long ldc, const float *bias, int prec) {
    gemm_args g = {0, 1, M, N, K, prec, A, NULL, lda, 0, W, row_bytes, btype, C, ldc, 0, bias, NULL};
    gemm_run(&g);
}

// ---- weights packed once ---------------------------------------------------------------------
// The B panels of every KC block, block after block, exactly as gemm_run's pack loop leaves them
// in its buffer (so a product with Bpre set only skips that loop). The layout depends on the
// kernel (AMX pads K to 32): recorded, and a product under other kernels packs from W instead.

struct fg_gemm_packed {
    int N, K, prec, amx;
    const void *W;
    long row_bytes;
    int btype;
    size_t bytes;
    char *data;
};

fg_gemm_packed *fg_gemm_pack(int N, int K, const void *W, long row_bytes, int btype, int prec) {
    int bf = prec == FG_BF16, amx = bf ? amx_mode() : 0, np = (N + NR - 1) / NR;
    size_t esz = bf ? 2 : 4, block = (size_t)np * NR * k_extent(FG_MIN(K, KC), bf, amx) * esz;
    size_t nblocks = (size_t)(K + KC - 1) / KC;
    fg_gemm_packed *p = calloc(1, sizeof *p);
    if (!p || N < 1 || K < 1) { free(p); return NULL; }
    *p = (fg_gemm_packed){N, K, prec, amx, W, row_bytes, btype, nblocks * block, NULL};
    p->data = aligned_alloc(64, (p->bytes + 63) & ~(size_t)63);
    float *cols = malloc(TMP_FLOATS * sizeof(float)); // one pack_tmp
    if (!p->data || !cols) { free(cols); fg_gemm_packed_free(p); return NULL; }
    gemm_args g = {0, 1, 0, N, K, prec, NULL, NULL, 0, 0, W, row_bytes, btype, NULL, 0, 0, NULL, NULL};
    pack_tmp pt = {cols, (uint16_t *)(cols + (size_t)NR * KC)};
    for (int p0 = 0; p0 < K; p0 += KC) {
        int kc = FG_MIN(KC, K - p0), kpad = k_extent(kc, bf, amx);
        char *dst = p->data + (size_t)(p0 / KC) * block;
        for (int jp = 0; jp < np; jp++) {
            int j0 = jp * NR, nr = FG_MIN(NR, N - j0);
            if (bf) pack_b_bf16((uint16_t *)dst + (size_t)jp * NR * kpad, &g, j0, nr, p0, kc, kpad, &pt);
            else pack_b_f32((float *)dst + (size_t)jp * NR * kpad, &g, j0, nr, p0, kc, &pt);
        }
    }
    free(cols);
    return p;
}

size_t fg_gemm_packed_bytes(const fg_gemm_packed *p) { return p ? p->bytes : 0; }

void fg_gemm_packed_free(fg_gemm_packed *p) {
    if (!p) return;
    free(p->data);
    free(p);
}

void fg_gemm_qb_packed(int M, const float *A, long lda, const fg_gemm_packed *B, float *C, long ldc, const float *bias) {
    int bf = B->prec == FG_BF16;
    gemm_args g = {0, 1, M, B->N, B->K, B->prec, A, NULL, lda, 0, B->W, B->row_bytes, B->btype, C, ldc, 0, bias, B->data};
    if ((bf ? amx_mode() : 0) != B->amx) g.Bpre = NULL; // packed for other kernels (a test switched them)
    gemm_run(&g);
}
