// cost.h: internals of src/cost/ that the trainer and the tests use (the public part is the
// "cost" section of include/frugal.h).
//
// The ledger (ledger.c) is OUT/ledger.json, rewritten atomically beside every checkpoint. A
// resumed run adds to it: wall and CPU time of earlier segments are read back at the start of
// the new one; tokens and FLOPs come from the checkpoint's token count, so they never drift.
// Layout: docs/cost.md.
#ifndef FG_COST_H
#define FG_COST_H

#include "frugal.h"
#include "frugal_tools.h"

#define FG_LEDGER_MAGIC "frugal-ledger"
#define FG_LEDGER_VERSION 1
#define FG_LEDGER_MFU 0.40 // the MFU at which a ledger projects a run onto each accelerator

typedef struct {
    char dir[1024];
    double base_wall, base_cpu; // earlier segments (from an existing ledger when resuming)
    int base_segments;
    double t0, cpu0;            // this segment's start: fg_now() and process CPU seconds
    double comm_base[FG_COMM_KINDS];   // bytes sent in earlier segments, by kind (distributed runs)
    uint64_t comm0[FG_COMM_KINDS];     // this process's counters at this segment's start
} fg_ledger;

// Starts (or, resumed != 0, continues) the ledger of out_dir. Never fails: a missing or
// unreadable ledger on resume starts from zero time (the ledger then says "partial").
void fg_ledger_begin(fg_ledger *lg, const char *out_dir, int resumed);
// Writes out_dir/ledger.json for the state after st->step steps (call after each checkpoint).
// Measures this machine's peaks on first use (fg_peaks_get, cached). Returns 0 or -1.
int fg_ledger_save(fg_ledger *lg, const fg_config *c, const fg_train_state *st, const fg_train_opts *o);
// Lower level (tests): writes dir/ledger.json from li, computing li->mfu from its FLOPs, wall
// time and fp32_gflops, with projections at FG_LEDGER_MFU. c: the model (component split).
int fg_ledger_write(const char *dir, fg_ledger_info *li, const fg_config *c, const fg_peaks *pk, int partial);

// Process CPU seconds (user + system) from getrusage.
double fg_cpu_seconds(void);

// Microbenchmarks behind fg_peaks_get (peaks.c).
double fg_peak_fp32_measure(double seconds);
double fg_peak_mem_measure(int mb);

#endif
