// fuzz_ledger.c: a run's ledger.json (`frugal cost ledger RUN_DIR`, a resumed run's time and
// communication carried over) on arbitrary bytes: parse, then use every field read.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "frugal_tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fg_ledger_info li;
    if (fg_ledger_parse(&li, (const char *)data, size, "fuzz/ledger.json")) return 0;
    if (li.seq < 0 || li.segments < 0 || li.ranks < 0 || (li.ranks > 0 && li.ep < 1) || li.zero < 0 || li.zero > 1) abort();
    volatile double sum = li.tokens + li.steps + li.train_flops + li.eval_flops + li.wall_s + li.cpu_s + li.mfu;
    for (int k = 0; k < FG_COMM_KINDS; k++) sum += li.comm_bytes[k] + li.comm_analytic_step[k];
    (void)sum;
    return 0;
}
