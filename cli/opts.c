// opts.c: see opts.h.
#include "cli/opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int in_range(const char *r, double x, char *why, size_t cap);

static void show_default(const cli_opt *o, char *buf, size_t cap) {
    switch (o->type) {
    case OPT_INT: snprintf(buf, cap, "%d", *(int *)o->dst); break;
    case OPT_I64: snprintf(buf, cap, "%lld", (long long)*(int64_t *)o->dst); break;
    case OPT_U64: snprintf(buf, cap, "%llu", (unsigned long long)*(uint64_t *)o->dst); break;
    case OPT_FLOAT: snprintf(buf, cap, "%g", *(float *)o->dst); break;
    case OPT_DOUBLE: snprintf(buf, cap, "%g", *(double *)o->dst); break;
    case OPT_STR: snprintf(buf, cap, "%s", *(const char **)o->dst ? *(const char **)o->dst : "(none)"); break;
    case OPT_FLAG: snprintf(buf, cap, "%s", *(int *)o->dst ? "on" : "off"); break;
    }
}

void cli_usage(const char *cmd, const char *usage, const cli_opt *opts) {
    printf("usage: frugal %s %s\n\noptions (default in brackets):\n", cmd, usage);
    for (const cli_opt *o = opts; o->name; o++) {
        char def[256], left[64];
        show_default(o, def, sizeof def);
        snprintf(left, sizeof left, "--%s%s", o->name, o->type == OPT_FLAG ? "" : " X");
        char lim[96] = "";
        if (o->range) { char why[80]; in_range(o->range, 0, why, sizeof why); snprintf(lim, sizeof lim, " (%s)", why); }
        printf("  %-22s %s%s [%s]\n", left, o->help, lim, def);
    }
}

int cli_fail(const char *cmd, const char *what, const char *hint) {
    if (hint) fprintf(stderr, "frugal %s: %s (hint: %s)\n", cmd, what, hint);
    else fprintf(stderr, "frugal %s: %s\n", cmd, what);
    return 1;
}

// Whether x lies in the interval r ("[lo,hi]", "(lo,hi)", hi may be "inf"); *why gets the limit in
// words ("> 0", "in [0, 1]") either way.
static int in_range(const char *r, double x, char *why, size_t cap) {
    char *e;
    double lo = strtod(r + 1, &e), hi = INFINITY;
    if (*e == ',') e++;
    if (strncmp(e, "inf", 3)) hi = strtod(e, NULL);
    int lc = r[0] == '[', hc = r[strlen(r) - 1] == ']';
    if (isinf(hi)) snprintf(why, cap, "%s %g", lc ? ">=" : ">", lo);
    else snprintf(why, cap, "in %c%g, %g%c", r[0], lo, hi, r[strlen(r) - 1]);
    return (lc ? x >= lo : x > lo) && (hc ? x <= hi : x < hi);
}

int cli_max_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return 4 * (int)(n > 0 ? n : 1);
}

// The option's limit check after a successful conversion; prints the error.
static int check_range(const char *cmd, const cli_opt *o, double x, const char *v) {
    char msg[400], why[96];
    if (!strcmp(o->name, "threads")) {
        int hi = cli_max_threads();
        if (x == 0 || (x >= 1 && x <= hi)) return 0;
        snprintf(msg, sizeof msg, "--threads %s is out of range: must be 0 (all cores) or 1 to %d (4 x this machine's %d cores)",
                 v, hi, hi / 4);
        cli_fail(cmd, msg, "--threads 0 uses every core");
        return -1;
    }
    if (!o->range || in_range(o->range, x, why, sizeof why)) return 0;
    snprintf(msg, sizeof msg, "--%s %s is out of range: must be %s", o->name, v, why);
    char hint[64];
    snprintf(hint, sizeof hint, "frugal help %s shows every option's limits", cmd);
    cli_fail(cmd, msg, hint);
    return -1;
}

static int parse_value(const char *cmd, const cli_opt *o, const char *v) {
    char *end;
    errno = 0;
    char msg[300];
    switch (o->type) {
    case OPT_INT: case OPT_I64: case OPT_U64: {
        long long x = strtoll(v, &end, 10);
        if (errno || *end || end == v || (o->type == OPT_INT && (x > 2147483647LL || x < -2147483647LL)) ||
            (o->type == OPT_U64 && x < 0))
            goto bad;
        if (check_range(cmd, o, (double)x, v)) return -1;
        if (o->type == OPT_INT) *(int *)o->dst = (int)x;
        else if (o->type == OPT_I64) *(int64_t *)o->dst = x;
        else *(uint64_t *)o->dst = (uint64_t)x;
        return 0;
    }
    case OPT_FLOAT: case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || *end || end == v || !isfinite(x)) goto bad;
        if (check_range(cmd, o, x, v)) return -1;
        if (o->type == OPT_FLOAT) *(float *)o->dst = (float)x; else *(double *)o->dst = x;
        return 0;
    }
    case OPT_STR: *(const char **)o->dst = v; return 0;
    }
bad:
    snprintf(msg, sizeof msg, "--%s expects %s, got '%s'", o->name,
             o->type == OPT_FLOAT || o->type == OPT_DOUBLE ? "a number" : "an integer", v);
    cli_fail(cmd, msg, "see frugal help for the option list");
    return -1;
}

int cli_parse(const char *cmd, const char *usage, const cli_opt *opts, int argc, char **argv,
              const char **positional, int max_pos, int *n_pos) {
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { cli_usage(cmd, usage, opts); return 1; }
        if (strncmp(a, "--", 2) || !a[2]) {
            if (np >= max_pos) {
                char msg[300];
                snprintf(msg, sizeof msg, "unexpected argument '%s'", a);
                return cli_fail(cmd, msg, "options start with --; see frugal help"), -1;
            }
            positional[np++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = NULL;
        for (const cli_opt *p = opts; p->name; p++)
            if (strlen(p->name) == nl && !strncmp(p->name, name, nl)) o = p;
        if (!o) {
            char msg[300];
            snprintf(msg, sizeof msg, "unknown option '--%.*s'", (int)nl, name);
            char hint[64];
            snprintf(hint, sizeof hint, "frugal help %s lists every option", cmd);
            return cli_fail(cmd, msg, hint), -1;
        }
        if (o->type == OPT_FLAG) {
            if (eq) { *(int *)o->dst = strcmp(eq + 1, "0") && strcmp(eq + 1, "false") && strcmp(eq + 1, "off"); }
            else *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            char msg[300];
            snprintf(msg, sizeof msg, "--%s needs a value", o->name);
            return cli_fail(cmd, msg, NULL), -1;
        }
        if (parse_value(cmd, o, v)) return -1;
    }
    if (n_pos) *n_pos = np;
    return 0;
}

int cli_given(int argc, char **argv, const char *name) {
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "--", 2) && !strncmp(argv[i] + 2, name, n) && (!argv[i][2 + n] || argv[i][2 + n] == '='))
            return 1;
    return 0;
}

void cli_opt_format(const cli_opt *o, const void *dst, char *buf, size_t cap) {
    cli_opt c = *o;
    c.dst = (void *)dst;
    show_default(&c, buf, cap);
}
