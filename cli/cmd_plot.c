// cmd_plot.c: `frugal plot RUN_DIR...`: SVG figures of training runs from their log.jsonl:
// loss curves (training loss smoothed, validation loss as points and line) and, for MoE runs,
// the per-layer coefficient of variation of routed-expert load over training. Same SVG module as
// `frugal scale` (include/frugal_scale.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "frugal_scale.h"

static const char *base(const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    const char *s = p + n;
    while (s > p && s[-1] != '/') s--;
    return s;
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL;
    double smooth = 0.9;
    cli_opt opts[] = {
        {"out", OPT_STR, &out, "directory for loss.svg and expert_load.svg (default: the first run directory)"},
        {"smooth", OPT_DOUBLE, &smooth, "exponential smoothing of the training loss, in [0, 1) (0 = raw)"},
        {NULL, 0, NULL, NULL},
    };
    const char *dirs[64];
    int nd = 0;
    int r = cli_parse("plot", "RUN_DIR...  (directories written by frugal train / frugal scale)", opts, argc, argv, dirs, 64, &nd);
    if (r) return r < 0 ? 1 : 0;
    if (nd == 0) return cli_fail("plot", "no run directory given", "frugal plot runs/demo [more runs...]");
    if (!(smooth >= 0 && smooth < 1)) return cli_fail("plot", "--smooth must be in [0, 1)", NULL);
    if (!out) out = dirs[0];
    mkdir(out, 0755);
    fg_plot *pl = fg_plot_new("Loss curves", "optimizer step", "loss (nats/token)", 0, 0);
    fg_plot *pe = fg_plot_new("Routed-expert load balance per MoE layer", "optimizer step",
                              "coefficient of variation of expert load (0 = balanced)", 0, 0);
    if (!pl || !pe) { fg_plot_free(pl); fg_plot_free(pe); return cli_fail("plot", fg_last_error(), NULL); }
    fg_plot_note(pl, "lines: training loss (smoothed); points and dashed line: validation loss");
    fg_plot_note(pe, "one line per MoE layer and run");
    int n_load = 0, rc = 0;
    for (int d = 0; d < nd && !rc; d++) {
        fg_scale_curves c;
        if (fg_scale_curves_read(dirs[d], &c)) { rc = cli_fail("plot", fg_last_error(), NULL); break; }
        char nm[160];
        if (c.n_train) {
            double ema = c.train_loss[0];
            for (int i = 0; i < c.n_train; i++) { ema = smooth * ema + (1 - smooth) * c.train_loss[i]; c.train_loss[i] = ema; }
            snprintf(nm, sizeof nm, "%s train", base(dirs[d]));
            rc |= fg_plot_add(pl, nm, c.train_step, c.train_loss, c.n_train, FG_PLOT_LINE, d);
        }
        if (c.n_val) {
            snprintf(nm, sizeof nm, "%s val", base(dirs[d]));
            rc |= fg_plot_add(pl, nm, c.val_step, c.val_loss, c.n_val, FG_PLOT_POINTS | FG_PLOT_DASHED, d);
        }
        for (int l = 0; l < c.n_layers; l++) {
            snprintf(nm, sizeof nm, "%s layer %d", base(dirs[d]), c.layer[l]);
            rc |= fg_plot_add(pe, nm, c.load_step, c.load_cv + (size_t)l * c.n_load, c.n_load, FG_PLOT_LINE, -1);
            n_load++;
        }
        fg_scale_curves_free(&c);
        if (rc) cli_fail("plot", fg_last_error(), NULL);
    }
    char path[1200];
    if (!rc) {
        snprintf(path, sizeof path, "%s/loss.svg", out);
        if (fg_plot_write(pl, path)) rc = cli_fail("plot", fg_last_error(), NULL);
        else printf("loss curves: %s\n", path);
    }
    if (!rc && n_load) {
        snprintf(path, sizeof path, "%s/expert_load.svg", out);
        if (fg_plot_write(pe, path)) rc = cli_fail("plot", fg_last_error(), NULL);
        else printf("expert load: %s\n", path);
    } else if (!rc) {
        printf("expert load: none (no MoE layer in these runs)\n");
    }
    fg_plot_free(pl);
    fg_plot_free(pe);
    return rc ? 1 : 0;
}
