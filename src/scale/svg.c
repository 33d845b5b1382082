// svg.c: a dependency-free SVG plotter for the scaling lab and `frugal plot`: one set of axes
// (linear or log10 each) with ticks, grid, axis labels, a title and a note, series as lines and/or
// markers, shaded interval bands, labelled markers, reference lines, and a legend.
//
// What it deliberately does not do: no multiple panels, no text measurement (labels are placed
// with fixed offsets for a 12-14 px sans-serif font), no fonts embedded. Invariants: every number
// written is finite (points that are not, or not > 0 on a log axis, are skipped); text is
// XML-escaped; the file is written atomically.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frugal_scale.h"
#include "util.h"

enum { W = 860, H = 540, ML = 80, MR = 210, MT = 62, MB = 62 };
static const char *PALETTE[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define NPAL 8

typedef struct { char *name; double *x, *y, *y2; int n, style, color, band; } series;
typedef struct { double x, y; char *label; int color, kind; } mark; // kind 0: point, 1: hline, 2: vline

struct fg_plot {
    char *title, *xlabel, *ylabel, *note;
    int logx, logy, next_color;
    series *s; int ns;
    mark *m; int nm;
};

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

fg_plot *fg_plot_new(const char *title, const char *xlabel, const char *ylabel, int logx, int logy) {
    fg_plot *p = calloc(1, sizeof *p);
    if (!p) { fg_set_error("out of memory"); return NULL; }
    p->title = dup_or_null(title); p->xlabel = dup_or_null(xlabel); p->ylabel = dup_or_null(ylabel);
    p->logx = logx; p->logy = logy;
    return p;
}

void fg_plot_free(fg_plot *p) {
    if (!p) return;
    for (int i = 0; i < p->ns; i++) { free(p->s[i].name); free(p->s[i].x); free(p->s[i].y); free(p->s[i].y2); }
    for (int i = 0; i < p->nm; i++) free(p->m[i].label);
    free(p->s); free(p->m); free(p->title); free(p->xlabel); free(p->ylabel); free(p->note);
    free(p);
}

void fg_plot_note(fg_plot *p, const char *note) {
    free(p->note);
    p->note = dup_or_null(note);
}

static int add_series(fg_plot *p, const char *name, const double *x, const double *y, const double *y2, int n, int style,
                      int color, int band) {
    if (n < 0) return fg_set_error("a plot series needs n >= 0");
    series *ns = realloc(p->s, sizeof *ns * (size_t)(p->ns + 1));
    if (!ns) return fg_set_error("out of memory");
    p->s = ns;
    series *s = &p->s[p->ns];
    memset(s, 0, sizeof *s);
    size_t b = sizeof(double) * (size_t)(n ? n : 1);
    s->x = malloc(b); s->y = malloc(b); s->y2 = y2 ? malloc(b) : NULL;
    s->name = dup_or_null(name);
    if (!s->x || !s->y || (y2 && !s->y2) || (name && !s->name)) {
        free(s->x); free(s->y); free(s->y2); free(s->name);
        return fg_set_error("out of memory");
    }
    memcpy(s->x, x, sizeof(double) * (size_t)n);
    memcpy(s->y, y, sizeof(double) * (size_t)n);
    if (y2) memcpy(s->y2, y2, sizeof(double) * (size_t)n);
    s->n = n; s->style = style; s->band = band;
    s->color = color >= 0 ? color : p->next_color++;
    p->ns++;
    return 0;
}

int fg_plot_add(fg_plot *p, const char *name, const double *x, const double *y, int n, int style, int color) {
    return add_series(p, name, x, y, NULL, n, style, color, 0);
}

int fg_plot_band(fg_plot *p, const double *x, const double *lo, const double *hi, int n, int color) {
    return add_series(p, NULL, x, lo, hi, n, 0, color < 0 ? 0 : color, 1);
}

static int add_mark(fg_plot *p, double x, double y, const char *label, int color, int kind) {
    mark *nm = realloc(p->m, sizeof *nm * (size_t)(p->nm + 1));
    if (!nm) return fg_set_error("out of memory");
    p->m = nm;
    p->m[p->nm] = (mark){x, y, dup_or_null(label), color, kind};
    p->nm++;
    return 0;
}

int fg_plot_mark(fg_plot *p, double x, double y, const char *label, int color) { return add_mark(p, x, y, label, color, 0); }
int fg_plot_hline(fg_plot *p, double y, const char *label) { return add_mark(p, NAN, y, label, -1, 1); }
int fg_plot_vline(fg_plot *p, double x, const char *label) { return add_mark(p, x, NAN, label, -1, 2); }

// ---- writing ----------------------------------------------------------------------------------
static void xml_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
        }
    }
}

static int usable(double v, int logaxis) { return isfinite(v) && (!logaxis || v > 0); }

static int band_ok(const series *s, int j, int logx, int logy) {
    return usable(s->x[j], logx) && usable(s->y[j], logy) && (usable(s->y2[j], logy) || (isinf(s->y2[j]) && s->y2[j] > 0));
}

typedef struct { double lo, hi; int log; double px0, px1; } axis;

static double tr(const axis *a, double v) {
    double t = a->log ? (log10(v) - a->lo) / (a->hi - a->lo) : (v - a->lo) / (a->hi - a->lo);
    return a->px0 + t * (a->px1 - a->px0);
}

static void extend(double *lo, double *hi, double v, int logaxis) {
    if (!usable(v, logaxis)) return;
    double t = logaxis ? log10(v) : v;
    if (t < *lo) *lo = t;
    if (t > *hi) *hi = t;
}

// Pads a range and widens a degenerate one.
static void finish_range(axis *a) {
    if (a->hi - a->lo < 1e-12) { double c = a->lo; a->lo = c - (a->log ? 0.5 : fabs(c) * 0.1 + 1); a->hi = c + (a->log ? 0.5 : fabs(c) * 0.1 + 1); }
    double pad = (a->hi - a->lo) * 0.04;
    a->lo -= pad; a->hi += pad;
}

static void fmt_num(char *buf, size_t cap, double v) {
    double a = fabs(v);
    if (v != 0 && (a >= 1e4 || a < 1e-3)) {
        int e = (int)floor(log10(a) + 1e-9);
        double m = v / pow(10, e);
        if (fabs(m - 1) < 1e-9) snprintf(buf, cap, "1e%d", e);
        else snprintf(buf, cap, "%.3ge%d", m, e);
    } else {
        snprintf(buf, cap, "%g", v);
    }
}

// Tick values of an axis into t (cap entries); returns the count.
static int ticks(const axis *a, double *t, int cap) {
    int n = 0;
    if (a->log) {
        double span = a->hi - a->lo;
        int step = span > 12 ? 2 : 1;
        static const double sub[] = {1, 2, 5};
        int nsub = span < 1.5 ? 3 : 1;
        for (int e = (int)floor(a->lo); e <= (int)ceil(a->hi) && n < cap; e += step)
            for (int k = 0; k < nsub && n < cap; k++) {
                double v = log10(sub[k]) + e;
                if (v >= a->lo && v <= a->hi) t[n++] = pow(10, v);
            }
        if (n < 2 && span < 1) { // less than a decade without a 1-2-5 tick inside: use linear ticks
            axis lin = {pow(10, a->lo), pow(10, a->hi), 0, 0, 0};
            return ticks(&lin, t, cap);
        }
    } else {
        double span = a->hi - a->lo, raw = span / 6, mag = pow(10, floor(log10(raw))), r = raw / mag;
        double step = (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
        for (double v = ceil(a->lo / step) * step; v <= a->hi + 1e-9 * step && n < cap; v += step)
            t[n++] = fabs(v) < 1e-12 * step ? 0 : v;
    }
    return n;
}

int fg_plot_write(const fg_plot *p, const char *path) {
    axis ax = {INFINITY, -INFINITY, p->logx, ML, W - MR}, ay = {INFINITY, -INFINITY, p->logy, H - MB, MT};
    for (int i = 0; i < p->ns; i++)
        for (int j = 0; j < p->s[i].n; j++) {
            const series *s = &p->s[i];
            if (!usable(s->x[j], p->logx) || !usable(s->y[j], p->logy)) continue;
            if (s->band && !usable(s->y2[j], p->logy) && !(isinf(s->y2[j]) && s->y2[j] > 0)) continue;
            extend(&ax.lo, &ax.hi, s->x[j], p->logx);
            extend(&ay.lo, &ay.hi, s->y[j], p->logy);
            if (s->band && isfinite(s->y2[j])) extend(&ay.lo, &ay.hi, s->y2[j], p->logy);
        }
    for (int i = 0; i < p->nm; i++) {
        if (p->m[i].kind != 1) extend(&ax.lo, &ax.hi, p->m[i].x, p->logx);
        if (p->m[i].kind != 2) extend(&ay.lo, &ay.hi, p->m[i].y, p->logy);
    }
    if (!(ax.lo <= ax.hi) || !(ay.lo <= ay.hi))
        return fg_set_error("plot '%s': no finite point to draw", p->title ? p->title : "");
    finish_range(&ax);
    finish_range(&ay);
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return fg_set_error("cannot write '%s': %s", tmp, strerror(errno));
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", ML);
    xml_text(f, p->title);
    fprintf(f, "</text>\n");
    if (p->note) { fprintf(f, "<text x=\"%d\" y=\"44\" font-size=\"11\" fill=\"#555\">", ML); xml_text(f, p->note); fprintf(f, "</text>\n"); }
    // grid and ticks
    double t[64];
    int nt = ticks(&ax, t, 64);
    char buf[64];
    fprintf(f, "<g stroke=\"#ddd\" stroke-width=\"1\">\n");
    for (int i = 0; i < nt; i++) fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>\n", tr(&ax, t[i]), MT, tr(&ax, t[i]), H - MB);
    double ty[64];
    int nty = ticks(&ay, ty, 64);
    for (int i = 0; i < nty; i++) fprintf(f, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>\n", ML, tr(&ay, ty[i]), W - MR, tr(&ay, ty[i]));
    fprintf(f, "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", ML, MT, W - MR - ML, H - MB - MT);
    for (int i = 0; i < nt; i++) {
        fmt_num(buf, sizeof buf, t[i]);
        fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", tr(&ax, t[i]), H - MB + 16, buf);
    }
    for (int i = 0; i < nty; i++) {
        fmt_num(buf, sizeof buf, ty[i]);
        fprintf(f, "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\" dominant-baseline=\"middle\">%s</text>\n", ML - 6, tr(&ay, ty[i]), buf);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\">", (ML + W - MR) / 2, H - 18);
    xml_text(f, p->xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(20,%d) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">", (MT + H - MB) / 2);
    xml_text(f, p->ylabel);
    fprintf(f, "</text>\n");
    fprintf(f, "<defs><clipPath id=\"area\"><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/></clipPath></defs>\n<g clip-path=\"url(#area)\">\n",
            ML, MT, W - MR - ML, H - MB - MT);
    // bands first, then series, then marks
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < p->ns; i++) {
            const series *s = &p->s[i];
            const char *col = PALETTE[s->color % NPAL];
            if (pass == 0 && s->band) { // an upper edge of +inf (no bound) is drawn at the top of the axes
                fprintf(f, "<path fill=\"%s\" fill-opacity=\"0.18\" stroke=\"none\" d=\"", col);
                int first = 1;
                for (int j = 0; j < s->n; j++) {
                    if (!band_ok(s, j, p->logx, p->logy)) continue;
                    fprintf(f, "%s%.2f %.2f ", first ? "M" : "L", tr(&ax, s->x[j]), isinf(s->y2[j]) ? (double)MT : tr(&ay, s->y2[j]));
                    first = 0;
                }
                for (int j = s->n - 1; j >= 0; j--) {
                    if (!band_ok(s, j, p->logx, p->logy)) continue;
                    fprintf(f, "L%.2f %.2f ", tr(&ax, s->x[j]), tr(&ay, s->y[j]));
                }
                fprintf(f, "Z\"/>\n");
            }
            if (pass == 1 && !s->band) {
                if (s->style & (FG_PLOT_LINE | FG_PLOT_DASHED)) {
                    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", col,
                            s->style & FG_PLOT_DASHED ? " stroke-dasharray=\"6 4\"" : "");
                    for (int j = 0; j < s->n; j++)
                        if (usable(s->x[j], p->logx) && usable(s->y[j], p->logy))
                            fprintf(f, "%.2f,%.2f ", tr(&ax, s->x[j]), tr(&ay, s->y[j]));
                    fprintf(f, "\"/>\n");
                }
                if (s->style & FG_PLOT_POINTS)
                    for (int j = 0; j < s->n; j++)
                        if (usable(s->x[j], p->logx) && usable(s->y[j], p->logy))
                            fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\" fill=\"%s\" fill-opacity=\"0.8\"/>\n", tr(&ax, s->x[j]),
                                    tr(&ay, s->y[j]), col);
            }
        }
    fprintf(f, "</g>\n");
    for (int i = 0; i < p->nm; i++) {
        const mark *m = &p->m[i];
        if (m->kind == 1 && usable(m->y, p->logy)) {
            double y = tr(&ay, m->y);
            if (y < MT || y > H - MB) continue;
            fprintf(f, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#666\" stroke-dasharray=\"3 3\"/>\n", ML, y, W - MR, y);
            fprintf(f, "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\" font-size=\"11\" fill=\"#444\">", W - MR - 4, y - 4);
            xml_text(f, m->label);
            fprintf(f, "</text>\n");
        } else if (m->kind == 2 && usable(m->x, p->logx)) {
            double x = tr(&ax, m->x);
            if (x < ML || x > W - MR) continue;
            fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#666\" stroke-dasharray=\"3 3\"/>\n", x, MT, x, H - MB);
            fprintf(f, "<text x=\"%.2f\" y=\"%d\" font-size=\"11\" fill=\"#444\">", x + 4, MT + 14);
            xml_text(f, m->label);
            fprintf(f, "</text>\n");
        } else if (m->kind == 0 && usable(m->x, p->logx) && usable(m->y, p->logy)) {
            const char *col = PALETTE[(m->color < 0 ? 0 : m->color) % NPAL];
            double x = tr(&ax, m->x), y = tr(&ay, m->y);
            fprintf(f, "<path d=\"M%.2f %.2f l6 6 l-6 6 l-6 -6 Z\" transform=\"translate(0,-6)\" fill=\"white\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                    x, y, col);
            if (m->label) {
                fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"10\" fill=\"%s\">", x + 8, y - 8, col);
                xml_text(f, m->label);
                fprintf(f, "</text>\n");
            }
        }
    }
    // legend
    int ly = MT + 8;
    for (int i = 0; i < p->ns; i++) {
        const series *s = &p->s[i];
        if (!s->name || s->band) continue;
        const char *col = PALETTE[s->color % NPAL];
        int lx = W - MR + 12;
        if (s->style & (FG_PLOT_LINE | FG_PLOT_DASHED))
            fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", lx, ly, lx + 22, ly, col,
                    s->style & FG_PLOT_DASHED ? " stroke-dasharray=\"6 4\"" : "");
        if (s->style & FG_PLOT_POINTS) fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"3.5\" fill=\"%s\"/>\n", lx + 11, ly, col);
        fprintf(f, "<text x=\"%d\" y=\"%d\" dominant-baseline=\"middle\" font-size=\"11\">", lx + 28, ly);
        xml_text(f, s->name);
        fprintf(f, "</text>\n");
        ly += 18;
    }
    fprintf(f, "</svg>\n");
    int err = fflush(f) || ferror(f);
    if (fclose(f) || err) { unlink(tmp); return fg_set_error("cannot write '%s'", tmp); }
    if (rename(tmp, path)) { unlink(tmp); return fg_set_error("cannot rename '%s' over '%s': %s", tmp, path, strerror(errno)); }
    return 0;
}
