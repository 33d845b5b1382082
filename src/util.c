// util.c: see util.h.
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char err_buf[1024];

const char *fg_last_error(void) { return err_buf[0] ? err_buf : "unknown error"; }

int fg_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

static fg_log_fn log_fn;
static void *log_ud;

void fg_set_log(fg_log_fn fn, void *ud) { log_fn = fn; log_ud = ud; }

void fg_log(int level, const char *fmt, ...) {
    if (!log_fn) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_fn(log_ud, level, line);
}

int fg_wrap_error(const char *fmt, ...) {
    char old[sizeof err_buf], pre[256];
    memcpy(old, err_buf, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    size_t n = strlen(pre);
    if (n + 2 < sizeof err_buf) {
        memcpy(err_buf, pre, n);
        memcpy(err_buf + n, ": ", 2);
        size_t rest = sizeof err_buf - n - 3;
        size_t olen = strnlen(old, rest);
        memcpy(err_buf + n + 2, old, olen);
        err_buf[n + 2 + olen] = 0;
    }
    return -1;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void fg_rng_seed(fg_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t fg_rng_u64(fg_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
}

float fg_rng_uniform(fg_rng *r) { return (float)(fg_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float fg_rng_normal(fg_rng *r) {
    double u1 = ((fg_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0); // (0, 1]
    double u2 = (fg_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t fg_rng_below(fg_rng *r, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = fg_rng_u64(r); while (x >= lim);
    return x % n;
}

double fg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

char *fg_next_line(char **at, char *end, size_t *len) {
    char *s = *at;
    if (s >= end) return NULL;
    char *e = memchr(s, '\n', (size_t)(end - s));
    if (!e) e = end;
    size_t l = (size_t)(e - s);
    while (l && (s[l - 1] == '\r' || s[l - 1] == ' ')) l--;
    *len = l;
    *at = e < end ? e + 1 : end;
    return s;
}

char *fg_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { fg_set_error("cannot open '%s': %s", path, strerror(errno)); return NULL; }
    struct stat sb;
    if (!fstat(fileno(f), &sb) && S_ISDIR(sb.st_mode)) {
        fclose(f);
        fg_set_error("'%s' is a directory, not a file", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) { free(buf); buf = NULL; break; }
        buf = nb; cap *= 2;
    }
    int rerr = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (!buf) { fg_set_error("out of memory reading '%s'", path); return NULL; }
    if (rerr) { free(buf); fg_set_error("read error on '%s': %s", path, strerror(rerr)); return NULL; }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

void *fg_calloc(size_t n, size_t size, const char *what) {
    void *p = (n && size) ? calloc(n, size) : calloc(1, 1);
    if (!p) fg_set_error("out of memory allocating %s (%zu x %zu bytes)", what, n, size);
    return p;
}

double fg_phys_mem_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && psz > 0 ? (double)pages * psz : 0;
}

// ---- runs that survive their users ------------------------------------------------------------

static const char *file_kind(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

int fg_output_check(const char *path) {
    struct stat sb;
    if (!path || !*path) return fg_set_error("no output path given");
    if (stat(path, &sb)) return 0; // absent (or unreachable: the write itself reports that)
    if (S_ISREG(sb.st_mode)) return 0;
    return fg_set_error("'%s' exists and is %s: frugal writes only regular files and will not replace it "
                        "(hint: choose a file path)", path, file_kind(sb.st_mode));
}

int fg_mkdir_p(const char *dir) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(tmp, 0755); *p = '/'; }
    if (mkdir(tmp, 0755) && errno != EEXIST)
        return fg_set_error("cannot create output directory '%s': %s", dir, strerror(errno));
    return 0;
}

int fg_dir_lock(const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return fg_set_error("cannot create the run lock '%s': %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int e = errno;
        char buf[32] = {0};
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        close(fd);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        if (e == EWOULDBLOCK) {
            if (pid > 0)
                return fg_set_error("run folder '%s' is in use by another frugal run (PID %ld) (hint: wait for it, "
                                    "stop it with kill %ld, or pass another --out)", dir, pid, pid);
            return fg_set_error("run folder '%s' is in use by another frugal run (hint: wait for it, or pass another --out)", dir);
        }
        return fg_set_error("cannot lock '%s': %s", path, strerror(e));
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, buf, (size_t)n, 0) != n) { /* the lock holds without the PID */ }
    return fd;
}

void fg_dir_unlock(int fd) {
    if (fd < 0) return;
    if (ftruncate(fd, 0)) { /* a stale PID in an unlocked file is harmless */ }
    flock(fd, LOCK_UN);
    close(fd);
}

static volatile sig_atomic_t interrupted;

void fg_train_interrupt(int sig) { interrupted = sig > 0 ? sig : 1; }
int fg_train_interrupted(void) { return interrupted; }
