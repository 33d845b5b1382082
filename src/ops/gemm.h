// gemm.h: the packed matrix multiplication every matmul of frugal goes through.
//
//     C (M, N) = op(A) (M, K) @ op(B) (K, N) [+ C when accumulate] [+ bias (N) when not]
//
// Row-major operands given by a pointer, a leading dimension (elements between rows) and a
// transpose flag: op(A)[i][k] = ta ? A[k*lda + i] : A[i*lda + k], op(B)[k][j] likewise. So
// out = inp @ w^T is (ta=0, tb=1), dinp += dout @ w is (0, 0) and dw += dout^T @ inp is (1, 0).
//
// Precision: FG_F32 multiplies in fp32; FG_BF16 rounds both operands to bf16 while
// packing (round to nearest even) and accumulates in fp32 (AMX tdpbf16ps tiles where the CPU and
// the OS allow them, else AVX512-BF16 vdpbf16ps where the CPU has it, else an exact emulation of
// the same products). Inputs and outputs are fp32 either way, so bf16 mixed precision is one flag
// away for every product. The AMX path has been verified only through its C emulator so far.
//
// B may also be a matrix of quantised rows (inference weights, always transposed: w (N, K) rows
// of K values): see fg_gemm_qb. Kernels are picked at run time from the CPU's features
// (fg_gemm_kernel_name says which); the portable path uses GCC vector extensions only.
#ifndef FG_GEMM_H
#define FG_GEMM_H

#include <stddef.h>
#include <stdint.h>

// prec: FG_F32 or FG_BF16 (fg_dtype, frugal.h); fg_gemm_qb's B rows: FG_F32, FG_BF16 or FG_Q8_0.

void fg_gemm(int ta, int tb, int M, int N, int K, const float *A, long lda, const float *B, long ldb,
             float *C, long ldc, int accumulate, const float *bias, int prec);

// C (M, N) = A (M, K) @ dequant(W)^T + bias, W being N rows of K values stored as btype
// (FG_F32, FG_BF16, FG_Q8_0), row r at W + r * row_bytes. prec as for fg_gemm (Q8_0 and BF16 rows are exact in
// bf16 only for BF16; Q8_0 with FG_BF16 rounds d * q to bf16).
void fg_gemm_qb(int M, int N, int K, const float *A, long lda, const void *W, long row_bytes, int btype,
                float *C, long ldc, const float *bias, int prec);

// Weights packed once for many products (inference prefill): B = dequant(W)^T as fg_gemm_qb
// takes it, converted and laid out in the GEMM's panels (bf16 for FG_BF16: 2 bytes per
// value; fp32: 4), so each product skips packing B. W must outlive the packed copy (a product run
// under other kernels than the packing, after fg_gemm_force_generic / fg_gemm_amx_emulate,
// repacks from W). fg_gemm_pack returns NULL when out of memory.
typedef struct fg_gemm_packed fg_gemm_packed;
fg_gemm_packed *fg_gemm_pack(int N, int K, const void *W, long row_bytes, int btype, int prec);
size_t fg_gemm_packed_bytes(const fg_gemm_packed *p);
void fg_gemm_packed_free(fg_gemm_packed *p); // NULL is fine
// C (M, N) = A (M, K) @ B + bias, as fg_gemm_qb with B's N, K, W and precision.
void fg_gemm_qb_packed(int M, const float *A, long lda, const fg_gemm_packed *B, float *C, long ldc, const float *bias);

// "avx512" / "generic" (fp32), "amx-bf16" / "amx-bf16-emulated" / "avx512-bf16" / "generic-bf16"
// (bf16): the kernels this CPU runs, for reports.
const char *fg_gemm_kernel_name(int prec);
// Forces the portable kernels (tests compare them against the fast ones), AMX included. Returns the
// old value.
int fg_gemm_force_generic(int on);
// Runs the AVX2 kernels where the CPU also has AVX-512 (tests: both vector widths on one machine).
// Returns the old value.
int fg_gemm_force_avx2(int on);
// The bf16 AMX tile kernel: 1 runs it on amx.c's C emulator of the tile instructions on any CPU
// (tests: the packing, tiling and tails of the AMX path everywhere); 0 (default) runs it on the
// hardware where fg_amx_usable() says so; -1 turns it off (the AVX512-BF16 kernel even on an AMX
// CPU). Returns the old value.
int fg_gemm_amx_emulate(int on);

#endif
