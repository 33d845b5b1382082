// opts.h: one table-driven option parser for every command, so usage text and defaults can
// never drift from what the parser accepts. `frugal help <cmd>` prints the table.
#ifndef FG_CLI_OPTS_H
#define FG_CLI_OPTS_H

#include <stddef.h>
#include <stdint.h>

// Option tables leave `range` out where any value goes: that is not a missing initializer.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

enum { OPT_INT, OPT_I64, OPT_FLOAT, OPT_DOUBLE, OPT_STR, OPT_FLAG, OPT_U64 };
typedef struct {
    const char *name;   // without the leading "--"
    int type;
    void *dst;
    const char *help;
    // Numeric options: the values accepted, in interval notation ("[1,inf)", "(0,1]", "[0,0.5]");
    // NULL = any. A value outside is refused with the value and the limit. Every option named
    // "threads" is checked against this machine instead: 0 (all cores) or 1 .. 4 x cores.
    const char *range;
} cli_opt;

// Parses argv[1..argc) against opts. Non-option words go to positional (up to max_pos; count in
// *n_pos). Prints a one-line error with a hint and returns -1 on a bad option or value; returns 1
// when --help was given (after printing usage). Defaults are whatever dst holds on entry.
int cli_parse(const char *cmd, const char *usage, const cli_opt *opts, int argc, char **argv,
              const char **positional, int max_pos, int *n_pos);
void cli_usage(const char *cmd, const char *usage, const cli_opt *opts);
// Whether --name (or --name=...) appears in argv[1..argc).
int cli_given(int argc, char **argv, const char *name);
// The value at dst, of o's type, as the usage text shows it.
void cli_opt_format(const cli_opt *o, const void *dst, char *buf, size_t cap);
// One-line error: "frugal <cmd>: <what>" + optional hint, to stderr. Returns exit code 1.
int cli_fail(const char *cmd, const char *what, const char *hint);

#endif
