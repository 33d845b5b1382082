// util.h: errors, deterministic RNG, timing and small helpers shared by every module.
// Not public API: the CLI sees only include/frugal.h (which re-exports fg_last_error).
#ifndef FG_UTIL_H
#define FG_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "frugal.h"

// ---- errors --------------------------------------------------------------------------------
// Library code never exits. It records a one-line reason and returns -1 (or NULL).
// fg_set_error formats into a thread-local buffer and returns -1 so callers can write
//     if (bad) return fg_set_error("%s: field 'x' must be > 0 (got %d)", path, x);
int fg_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Formats one line for the log callback (fg_set_log); nothing when none is set.
void fg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Prefix the current error with more context ("loading ckpt.bin: <old reason>"); returns -1.
int fg_wrap_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));


// ---- misc ----------------------------------------------------------------------------------
// Reads a whole file; returns malloc'd buffer (caller frees) NUL-terminated, *len = size.
// On failure returns NULL with fg_last_error set ("cannot open 'p': No such file").
char *fg_read_file(const char *path, size_t *len);
// Line by line over [*at, end) (a JSONL file read whole): returns the line at *at, its length
// without the '\n' and trailing '\r' / spaces in *len (0: a blank line), and moves *at past it;
// NULL once *at reaches end.
char *fg_next_line(char **at, char *end, size_t *len);
// Calloc that records an error with the size instead of returning silently.
void *fg_calloc(size_t n, size_t size, const char *what);

// Physical memory of this machine in bytes (0 if unknown): the budget for up-front size checks.
double fg_phys_mem_bytes(void);
// Creates dir and its missing parents (mode 0755); 0, or -1 with an error naming it.
int fg_mkdir_p(const char *dir);

#define FG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FG_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
