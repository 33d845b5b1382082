// peaks.c: this machine's measured peaks (fp32 FMA, bf16 dot products, AMX tiles, memory
// bandwidth), cached per CPU model string and thread count in a small JSON file.
//
// BF16 is measured with AVX512-BF16 (vdpbf16ps) when CPUID and the OS's saved register state
// (XCR0) both say it works; otherwise bf16_gflops is 0. AMX: amx_present is the CPUID bits;
// amx_gflops is measured with a tdpbf16ps loop when the tiles are usable in this process
// (fg_amx_usable: CPUID, XCR0 and Linux's permission), else 0. The AMX loop has never run: the
// machines frugal was developed on have no AMX (the GEMM's tile kernel is tested there through
// an emulator, which cannot time anything).
// Invariants: every loop keeps its result live (a sink) so the compiler cannot drop it; the cache
// is written atomically (tmp + rename) and a corrupt or foreign cache is ignored, never fatal.
// A busy machine measures a low peak (and an MFU above 100% follows): each entry records when it
// was taken, the load average then and the CPU share the fp32 loop got, and a run that beats the
// cached peak has it measured again (fg_peaks_beaten), so no MFU above 100% is ever reported.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "cost/cost.h"
#include "formats/json.h"
#include "ops/amx.h"
#include "ops/vec.h"
#include "util.h"


static int n_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Runs kernel(iters) on every thread (it returns a value that keeps its work alive) and returns the
// best of three runs long enough to time, as GFLOP/s for flops_per_iter per thread and iteration.
static double best_rate(double seconds, long iters, double flops_per_iter, float (*kernel)(long iters)) {
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = fg_now();
        float sink = 0;
#pragma omp parallel reduction(+ : sink)
        sink += kernel(iters);
        double dt = fg_now() - t0;
        double g = flops_per_iter * (double)iters * n_threads() / dt / 1e9;
        if (g > best) best = g;
        if (sink == 12345.0f) fputc(' ', stderr);
        if (dt < seconds / 3) iters *= 2, rep--; // too short to time: grow first
        if (iters > ((long)1 << 40)) break;
    }
    return best;
}

// fp32 peak: 12 independent FMA chains of 16 lanes per thread (enough to cover FMA latency).
static float fma_chains(long iters) {
    v16 a[12], x = {0}, y = {0};
    float sink = 0;
    for (int i = 0; i < 16; i++) { x[i] = 1.0f + 1e-7f * i; y[i] = 1e-8f; }
    for (int j = 0; j < 12; j++) a[j] = x * (float)(j + 1) * 1e-3f;
    for (long it = 0; it < iters; it++)
        for (int j = 0; j < 12; j++) a[j] = vfma(a[j], x, y); // fused: -std=c11 would not contract a * x + y
    for (int j = 0; j < 12; j++) sink += a[j][0];
    return sink;
}

#if defined(__x86_64__)
// The same on AVX2 + FMA without AVX-512: 12 chains of 8 lanes (16 ymm registers; 12 v16 chains
// would be 24 and spill).
__attribute__((target("avx2,fma"))) static float fma_chains_avx2(long iters) {
    __m256 a[12], x = _mm256_set1_ps(1.0f + 1e-7f), y = _mm256_set1_ps(1e-8f);
    float sink = 0;
    for (int j = 0; j < 12; j++) a[j] = _mm256_set1_ps((float)(j + 1) * 1e-3f);
    for (long it = 0; it < iters; it++)
        for (int j = 0; j < 12; j++) a[j] = _mm256_fmadd_ps(a[j], x, y);
    for (int j = 0; j < 12; j++) sink += _mm256_cvtss_f32(a[j]);
    return sink;
}
#endif

double fg_peak_fp32_measure(double seconds) {
#if defined(__x86_64__)
    if (!__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return best_rate(seconds, 2000000, 2.0 * 8 * 12, fma_chains_avx2);
#endif
    return best_rate(seconds, 2000000, 2.0 * 16 * 12, fma_chains);
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double load_average(void) {
    double l[1];
    return getloadavg(l, 1) == 1 ? l[0] : -1;
}

#if defined(__x86_64__)
static int cpu_has_bf16(int *amx) {
    unsigned a, b, c, d;
    *amx = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    *amx = (d >> 24) & 1 && (d >> 22) & 1; // AMX-TILE and AMX-BF16
    int avx512f = (b >> 16) & 1;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !((c >> 27) & 1)) return 0; // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xE6) != 0xE6) return 0; // XMM, YMM, opmask, ZMM state enabled by the OS
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return avx512f && ((a >> 5) & 1); // AVX512_BF16
}

// bf16 peak: 12 independent vdpbf16ps chains per thread. One vdpbf16ps: 16 lanes x 2 bf16
// products accumulated = 32 multiply-adds = 64 FLOPs.
__attribute__((target("avx512f,avx512bf16"))) static float dpbf16_chains(long iters) {
    __m512 acc[12];
    float sink = 0;
    __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3380); // 1.0, ~6e-8
    for (int j = 0; j < 12; j++) acc[j] = _mm512_set1_ps((float)j);
    for (long it = 0; it < iters; it++)
        for (int j = 0; j < 12; j++) acc[j] = _mm512_dpbf16_ps(acc[j], x, y);
    for (int j = 0; j < 12; j++) sink += _mm512_reduce_add_ps(acc[j]);
    return sink;
}

// AMX peak: 6 independent tdpbf16ps chains per thread into 16 x 16 fp32 tiles (0..5) from one A
// and one B tile (6, 7) of 16 rows x 32 bf16, enough to cover the instruction's latency. Only
// called when fg_amx_usable() says 1.
// One tdpbf16ps: 16 x 16 outputs x 32 bf16 products = 8192 multiply-adds = 16384 FLOPs.
__attribute__((target("amx-tile,amx-bf16"))) static float tile_chains(long iters) {
    static const fg_amx_config cfg = {.palette = 1, .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
                                      .rows = {16, 16, 16, 16, 16, 16, 16, 16}};
    uint16_t a[16 * 32], b[16 * 32];
    float out[16 * 16];
    for (int i = 0; i < 16 * 32; i++) { a[i] = 0x3f80; b[i] = 0x3380; } // 1.0, ~6e-8
    fg_amx_hw_config(&cfg);
    __asm__ volatile("" ::: "memory"); // GCC's tile loads do not say they read memory
    _tile_loadd(6, a, 64);
    _tile_loadd(7, b, 64);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3); _tile_zero(4); _tile_zero(5);
    for (long it = 0; it < iters; it++) {
        _tile_dpbf16ps(0, 6, 7); _tile_dpbf16ps(1, 6, 7); _tile_dpbf16ps(2, 6, 7);
        _tile_dpbf16ps(3, 6, 7); _tile_dpbf16ps(4, 6, 7); _tile_dpbf16ps(5, 6, 7);
    }
    _tile_stored(5, out, 64);
    fg_amx_hw_release();
    return out[0];
}
#endif

// Streaming read bandwidth: sum a buffer of `mb` MiB (far beyond the last-level cache) on every
// thread; best of 3 after one pass that faults the pages in.
double fg_peak_mem_measure(int mb) {
    size_t n = (size_t)mb * 1048576 / sizeof(float);
    float *buf = malloc(n * sizeof(float));
    if (!buf) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    double best = 0, sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = fg_now(), s = 0;
#pragma omp parallel reduction(+ : s)
        { // four vector sums per thread hide the add latency; one horizontal sum at the end
#if defined(FG_V16_AVX2) // (a loop-carried v16 stays in memory there: vec.h)
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
#pragma omp for schedule(static)
            for (size_t i = 0; i < n; i += 32) { // n is a multiple of 32
                a0 = _mm256_add_ps(a0, _mm256_loadu_ps(buf + i));
                a1 = _mm256_add_ps(a1, _mm256_loadu_ps(buf + i + 8));
                a2 = _mm256_add_ps(a2, _mm256_loadu_ps(buf + i + 16));
                a3 = _mm256_add_ps(a3, _mm256_loadu_ps(buf + i + 24));
            }
            s += hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#else
            v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
#pragma omp for schedule(static)
            for (size_t i = 0; i < n; i += 64) { // n is a multiple of 64
                a0 += vload(buf + i); a1 += vload(buf + i + 16); a2 += vload(buf + i + 32); a3 += vload(buf + i + 48);
            }
            s += vsum((a0 + a1) + (a2 + a3));
#endif
        }
        double dt = fg_now() - t0, g = (double)n * sizeof(float) / dt / 1e9;
        if (g > best) best = g;
        sink += s;
    }
    if (sink == 1.5) fputc(' ', stderr);
    free(buf);
    return best;
}

static void cpu_name(char *out, size_t cap) {
    snprintf(out, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (!p) break;
            p++;
            while (*p == ' ' || *p == '\t') p++;
            p[strcspn(p, "\n")] = 0;
            for (char *q = p; *q; q++)
                if (*q == '"' || *q == '\\' || (unsigned char)*q < 32) *q = ' ';
            snprintf(out, cap, "%s", p);
            break;
        }
    fclose(f);
    // A virtual machine may name every EPYC "AMD EPYC": the vector width keys the cache too, so
    // a host moved to another CPU generation measures again instead of reusing the old peaks.
#if defined(__x86_64__)
    const char *isa = __builtin_cpu_supports("avx512f") ? "avx512" : __builtin_cpu_supports("avx2") ? "avx2" : "sse";
    size_t l = strlen(out);
    snprintf(out + l, cap - l, " (%s)", isa);
#endif
}

static int cache_path(char *out, size_t cap, char *dir, size_t dcap) {
    const char *d = getenv("FRUGAL_CACHE_DIR");
    if (d && *d) snprintf(dir, dcap, "%s", d);
    else {
        const char *home = getenv("HOME");
        if (!home || !*home) return -1;
        snprintf(dir, dcap, "%s/.cache/frugal", home);
    }
    snprintf(out, cap, "%s/peaks.json", dir);
    return 0;
}

static void mkdirs(const char *dir) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(tmp, 0755); *p = '/'; }
    mkdir(tmp, 0755);
}

static double num(const fg_json *o, const char *k) {
    const fg_json *v = fg_json_get(o, k);
    return v && v->type == FG_JSON_NUMBER ? v->num : -1;
}

// Reads the entry for (cpu, threads) from the cache: 1 found, 0 not. Other entries go to keep
// (the text to write back) so machines sharing a home directory keep their own numbers.
static int cache_read(const char *path, fg_peaks *p, char *keep, size_t cap) {
    keep[0] = 0;
    size_t len;
    char *text = fg_read_file(path, &len);
    if (!text) return 0;
    fg_json *root = fg_json_parse(text, len, path);
    free(text);
    const fg_json *m = root ? fg_json_get(root, "machines") : NULL;
    const fg_json *mg = root ? fg_json_get(root, "magic") : NULL;
    int found = 0;
    if (m && m->type == FG_JSON_ARRAY && mg && mg->type == FG_JSON_STRING && !strcmp(mg->str, "frugal-peaks"))
        for (const fg_json *e = m->child; e; e = e->next) {
            const fg_json *cpu = fg_json_get(e, "cpu");
            if (!cpu || cpu->type != FG_JSON_STRING) continue;
            double fp32 = num(e, "fp32_gflops"), bf16 = num(e, "bf16_gflops"), mem = num(e, "mem_gbs");
            double thr = num(e, "threads"), amx = num(e, "amx_present");
            double amxg = fg_json_get(e, "amx_gflops") ? num(e, "amx_gflops") : 0; // absent before AMX was measured
            if (!(fp32 > 0) || bf16 < 0 || !(mem > 0) || thr < 1 || amx < 0 || amxg < 0) continue;
            if (!strcmp(cpu->str, p->cpu) && (int)thr == p->threads) {
                p->fp32_gflops = fp32; p->bf16_gflops = bf16; p->mem_gbs = mem; p->amx_present = amx > 0;
                p->amx_gflops = amxg;
                p->measured_at = fg_json_get(e, "measured_at") ? num(e, "measured_at") : 0;
                p->load1 = fg_json_get(e, "load1") ? num(e, "load1") : -1;
                p->cpu_share = fg_json_get(e, "cpu_share") ? num(e, "cpu_share") : -1;
                // an entry written before AMX was measured, on an AMX machine: measure again
                found = !(amx > 0 && !fg_json_get(e, "amx_gflops"));
            } else {
                size_t l = strlen(keep);
                snprintf(keep + l, cap - l, "    {\"cpu\": \"%s\", \"threads\": %d, \"fp32_gflops\": %.6g, \"bf16_gflops\": %.6g, "
                         "\"amx_present\": %d, \"amx_gflops\": %.6g, \"mem_gbs\": %.6g, \"measured_at\": %.0f, \"load1\": %.3g, "
                         "\"cpu_share\": %.3g},\n", cpu->str, (int)thr, fp32, bf16, amx > 0, amxg, mem,
                         fmax(0, num(e, "measured_at")), num(e, "load1"), num(e, "cpu_share"));
            }
        }
    fg_json_free(root);
    return found;
}

// Writes the cache: the other machines' entries (keep) and p's.
static void cache_write(const char *path, const char *dir, const char *keep, const fg_peaks *p) {
    mkdirs(dir);
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return; // a read-only home is not an error: the numbers are just not cached
    fprintf(f, "{\n  \"magic\": \"frugal-peaks\",\n  \"version\": 1,\n  \"machines\": [\n%s", keep);
    fprintf(f, "    {\"cpu\": \"%s\", \"threads\": %d, \"fp32_gflops\": %.6g, \"bf16_gflops\": %.6g, \"amx_present\": %d, "
            "\"amx_gflops\": %.6g, \"mem_gbs\": %.6g, \"measured_at\": %.0f, \"load1\": %.3g, \"cpu_share\": %.3g}\n  ]\n}\n",
            p->cpu, p->threads, p->fp32_gflops, p->bf16_gflops, p->amx_present, p->amx_gflops, p->mem_gbs, p->measured_at,
            p->load1, p->cpu_share);
    int bad = fclose(f) != 0;
    if (bad || rename(tmp, path)) unlink(tmp);
}

// Measures every peak into p (cpu and threads already set).
static int measure(fg_peaks *p) {
    p->measured_at = (double)time(NULL);
    p->load1 = load_average();
    double w0 = fg_now(), c0 = cpu_seconds();
    p->fp32_gflops = fg_peak_fp32_measure(0.3);
    double wall = fg_now() - w0;
    p->cpu_share = wall > 0 ? (cpu_seconds() - c0) / (wall * p->threads) : -1;
#if defined(__x86_64__)
    int amx = 0;
    if (cpu_has_bf16(&amx)) p->bf16_gflops = best_rate(0.3, 1000000, 64.0 * 12, dpbf16_chains);
    p->amx_present = amx;
    p->amx_gflops = 0;
    if (fg_amx_usable(NULL)) p->amx_gflops = best_rate(0.3, 100000, 16384.0 * 6, tile_chains);
#endif
    p->mem_gbs = fg_peak_mem_measure(256);
    if (!(p->fp32_gflops > 0) || !(p->mem_gbs > 0)) return fg_set_error("peaks: measurement failed (out of memory?)");
    return 0;
}

int fg_peaks_get(fg_peaks *p, int remeasure) {
    memset(p, 0, sizeof *p);
    cpu_name(p->cpu, sizeof p->cpu);
    p->threads = n_threads();
    p->load1 = p->cpu_share = -1;
    char path[1100], dir[1024], keep[8192];
    int have_path = !cache_path(path, sizeof path, dir, sizeof dir);
    keep[0] = 0;
    if (have_path && cache_read(path, p, keep, sizeof keep) && !remeasure) { p->cached = 1; return 0; }
    p->cached = 0;
    if (measure(p)) return -1;
    if (have_path) cache_write(path, dir, keep, p);
    return 0;
}

int fg_peaks_beaten(fg_peaks *p, double gflops) {
    fg_peaks now;
    memset(&now, 0, sizeof now);
    snprintf(now.cpu, sizeof now.cpu, "%s", p->cpu);
    now.threads = p->threads;
    if (measure(&now)) return -1;
    now.fp32_gflops = fmax(now.fp32_gflops, fmax(p->fp32_gflops, gflops)); // a machine does at least what a run did
    char path[1100], dir[1024], keep[8192];
    keep[0] = 0;
    if (!cache_path(path, sizeof path, dir, sizeof dir) && now.threads == n_threads()) {
        fg_peaks old = now;
        cache_read(path, &old, keep, sizeof keep);
        cache_write(path, dir, keep, &now);
    }
    *p = now;
    return 0;
}
