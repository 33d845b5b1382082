// comm.c: the communicator layer (comm.h): MPI when built with FG_HAVE_MPI (`make MPI=1`), else a
// single process with the same interface. Byte counts follow comm.h's convention.
//
// MPI is initialised with MPI_THREAD_FUNNELED: OpenMP threads compute, only the main thread calls
// MPI. Errors return (MPI_ERRORS_RETURN) so the library can report them; a peer that dies is
// handled by the launcher (Open MPI's mpirun ends every rank of the job when one exits abnormally).
#include "dist/comm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifdef FG_HAVE_MPI
#include <mpi.h>
#endif

const char *const fg_comm_kind_name[FG_COMM_KINDS] = {"allreduce", "allgather", "alltoall"};
uint64_t fg_comm_bytes[FG_COMM_KINDS];

static int g_rank = 0, g_size = 1, g_init = 0;

int fg_dist_rank(void) { return g_rank; }
int fg_dist_size(void) { return g_size; }

#ifdef FG_HAVE_MPI

static MPI_Request *g_req; // the nonblocking all-reduces in flight
static int g_nreq, g_capreq;

static int mpi_fail(int err, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, msg, &len);
    return fg_set_error("MPI %s failed on rank %d of %d: %.*s", what, g_rank, g_size, len, msg);
}

int fg_dist_init(int *argc, char ***argv) {
    if (g_init) return 0;
    int provided = 0, err = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (err != MPI_SUCCESS) return fg_set_error("MPI_Init failed (hint: launch with mpirun, or run the binary alone)");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_init = 1;
    return 0;
}

void fg_dist_finalize(void) {
    if (g_init) fg_comm_set_ep(1);
    free(g_req);
    g_req = NULL; g_nreq = g_capreq = 0;
    if (g_init) MPI_Finalize();
    g_init = 0;
}

const char *fg_dist_backend(void) { return "mpi"; }

void fg_dist_abort(int code) {
    if (g_init) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

// MPI counts are ints: big buffers go in pieces of at most 2^30 elements.
#define CHUNK ((size_t)1 << 30)

// Expert parallelism's groups: ep consecutive ranks (rank / ep) exchange tokens; the ranks holding
// the same experts in different groups (rank % ep) reduce those experts' gradients.
static MPI_Comm g_ep_comm = MPI_COMM_NULL, g_rep_comm = MPI_COMM_NULL;
static int g_ep = 1;

static MPI_Comm ep_comm(void) { return g_ep > 1 ? g_ep_comm : MPI_COMM_WORLD; }

int fg_comm_set_ep(int ep) {
    if (ep < 1 || g_size % ep) return fg_set_error("--ep %d does not divide the %d ranks (hint: -np a multiple of --ep)", ep, g_size);
    if (g_ep_comm != MPI_COMM_NULL) { MPI_Comm_free(&g_ep_comm); MPI_Comm_free(&g_rep_comm); }
    g_ep = 1;
    if (ep == 1) return 0;
    if (MPI_Comm_split(MPI_COMM_WORLD, g_rank / ep, g_rank, &g_ep_comm) != MPI_SUCCESS ||
        MPI_Comm_split(MPI_COMM_WORLD, g_rank % ep, g_rank, &g_rep_comm) != MPI_SUCCESS)
        return fg_set_error("MPI_Comm_split failed for --ep %d", ep);
    MPI_Comm_set_errhandler(g_ep_comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(g_rep_comm, MPI_ERRORS_RETURN);
    g_ep = ep;
    return 0;
}

static int allreduce(MPI_Comm comm, int p, void *buf, size_t n, size_t size, MPI_Datatype t, MPI_Op op) {
    if (p > 1) fg_comm_bytes[FG_COMM_ALLREDUCE] += 2 * (uint64_t)(p - 1) * n * size / (uint64_t)p;
    if (p == 1) return 0;
    for (size_t at = 0; at < n; at += CHUNK) {
        int cnt = (int)FG_MIN(CHUNK, n - at);
        int err = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + at * size, cnt, t, op, comm);
        if (err != MPI_SUCCESS) return mpi_fail(err, "all-reduce");
    }
    return 0;
}

int fg_comm_allreduce_f32(float *buf, size_t n) { return allreduce(MPI_COMM_WORLD, g_size, buf, n, 4, MPI_FLOAT, MPI_SUM); }
int fg_comm_allreduce_f64(double *buf, size_t n) { return allreduce(MPI_COMM_WORLD, g_size, buf, n, 8, MPI_DOUBLE, MPI_SUM); }
int fg_comm_allreduce_i32(int *buf, size_t n) { return allreduce(MPI_COMM_WORLD, g_size, buf, n, 4, MPI_INT, MPI_SUM); }
int fg_comm_allreduce_max_u8(unsigned char *buf, size_t n) {
    return allreduce(MPI_COMM_WORLD, g_size, buf, n, 1, MPI_UNSIGNED_CHAR, MPI_MAX);
}
int fg_comm_allreduce_f32_replicas(float *buf, size_t n) {
    return allreduce(g_ep > 1 ? g_rep_comm : MPI_COMM_WORLD, g_size / g_ep, buf, n, 4, MPI_FLOAT, MPI_SUM);
}
int fg_comm_allreduce_f64_ep(double *buf, size_t n) { return allreduce(ep_comm(), g_ep, buf, n, 8, MPI_DOUBLE, MPI_SUM); }


int fg_comm_iallreduce_f32(float *buf, size_t n, int replicas) {
    MPI_Comm comm = replicas && g_ep > 1 ? g_rep_comm : MPI_COMM_WORLD;
    int p = replicas ? g_size / g_ep : g_size;
    if (p == 1) return 0;
    fg_comm_bytes[FG_COMM_ALLREDUCE] += 2 * (uint64_t)(p - 1) * n * 4 / (uint64_t)p;
    for (size_t at = 0; at < n; at += CHUNK) {
        if (g_nreq == g_capreq) {
            int cap = g_capreq ? 2 * g_capreq : 64;
            MPI_Request *r = realloc(g_req, sizeof *r * (size_t)cap);
            if (!r) return fg_set_error("out of memory");
            g_req = r; g_capreq = cap;
        }
        int err = MPI_Iallreduce(MPI_IN_PLACE, buf + at, (int)FG_MIN(CHUNK, n - at), MPI_FLOAT, MPI_SUM, comm, &g_req[g_nreq]);
        if (err != MPI_SUCCESS) return mpi_fail(err, "all-reduce (nonblocking)");
        g_nreq++;
    }
    return 0;
}

int fg_comm_progress(void) {
    int done = 0;
    if (!g_nreq) return 0;
    int err = MPI_Testall(g_nreq, g_req, &done, MPI_STATUSES_IGNORE);
    if (err != MPI_SUCCESS) return mpi_fail(err, "all-reduce (progress)");
    if (done) g_nreq = 0;
    return 0;
}

int fg_comm_wait_all(void) {
    if (!g_nreq) return 0;
    int err = MPI_Waitall(g_nreq, g_req, MPI_STATUSES_IGNORE);
    g_nreq = 0;
    return err == MPI_SUCCESS ? 0 : mpi_fail(err, "all-reduce (wait)");
}

// Counts and displacements (in elements) as the ints MPI takes; -1 when one does not fit.
static int to_ints(int *ic, int *id, const size_t *count, const size_t *displ, int p) {
    for (int r = 0; r < p; r++) {
        if (count[r] > INT_MAX || displ[r] > INT_MAX)
            return fg_set_error("a piece of %zu elements at %zu is too big for one MPI call (hint: more ranks)", count[r], displ[r]);
        ic[r] = (int)count[r]; id[r] = (int)displ[r];
    }
    return 0;
}

static int gather(float *buf, const float *mine, const size_t *count, const size_t *displ, int all) {
    if (g_size == 1) return 0;
    int *ic = malloc(sizeof(int) * 2 * (size_t)g_size);
    if (!ic) return fg_set_error("out of memory");
    int *id = ic + g_size, rc = to_ints(ic, id, count, displ, g_size), err = MPI_SUCCESS;
    uint64_t total = 0;
    for (int r = 0; r < g_size; r++) total += count[r];
    if (!rc && all) {
        fg_comm_bytes[FG_COMM_ALLGATHER] += (uint64_t)(g_size - 1) * total * 4 / (uint64_t)g_size;
        err = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, ic, id, MPI_FLOAT, MPI_COMM_WORLD);
    } else if (!rc) { // a gather to rank 0 is counted with the all-gathers: each rank sends its piece once
        fg_comm_bytes[FG_COMM_ALLGATHER] += g_rank ? (uint64_t)count[g_rank] * 4 : 0;
        err = g_rank ? MPI_Gatherv(mine, ic[g_rank], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0, MPI_COMM_WORLD)
                     : MPI_Gatherv(MPI_IN_PLACE, 0, MPI_FLOAT, buf, ic, id, MPI_FLOAT, 0, MPI_COMM_WORLD);
    }
    free(ic);
    if (rc) return rc;
    return err == MPI_SUCCESS ? 0 : mpi_fail(err, all ? "all-gather" : "gather");
}

int fg_comm_allgatherv_f32(float *buf, const size_t *count, const size_t *displ) { return gather(buf, NULL, count, displ, 1); }
int fg_comm_gatherv_f32(float *all, const float *mine, const size_t *count, const size_t *displ) {
    return gather(all, mine, count, displ, 0);
}

int fg_comm_alltoallv(const void *send, const size_t *send_count, const size_t *send_displ, void *recv,
                      const size_t *recv_count, const size_t *recv_displ) {
    int p = g_ep > 1 ? g_ep : g_size, me = g_ep > 1 ? g_rank % g_ep : g_rank;
    int *ic = malloc(sizeof(int) * 4 * (size_t)p);
    if (!ic) return fg_set_error("out of memory");
    int *id = ic + p, *oc = ic + 2 * p, *od = ic + 3 * p;
    int rc = to_ints(ic, id, send_count, send_displ, p) || to_ints(oc, od, recv_count, recv_displ, p) ? -1 : 0;
    if (!rc) {
        for (int r = 0; r < p; r++)
            if (r != me) fg_comm_bytes[FG_COMM_ALLTOALL] += send_count[r];
        int err = MPI_Alltoallv(send, ic, id, MPI_BYTE, recv, oc, od, MPI_BYTE, ep_comm());
        if (err != MPI_SUCCESS) rc = mpi_fail(err, "all-to-all");
    }
    free(ic);
    return rc;
}

int fg_comm_alltoall_i32(const int *send, int *recv, int n) {
    int p = g_ep > 1 ? g_ep : g_size;
    fg_comm_bytes[FG_COMM_ALLTOALL] += (uint64_t)(p - 1) * (uint64_t)n * 4;
    int err = MPI_Alltoall(send, n, MPI_INT, recv, n, MPI_INT, ep_comm());
    return err == MPI_SUCCESS ? 0 : mpi_fail(err, "all-to-all (counts)");
}

#else // one process: every collective is the identity

// Ranks a launcher says it started (0: none). mpirun/srun set these in every process they start,
// whatever the program was built with: a build without MPI under `mpirun -np 4` would otherwise
// run four independent copies that overwrite each other's output.
static int launcher_size(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

int fg_dist_init(int *argc, char ***argv) {
    (void)argc; (void)argv;
    int n = launcher_size();
    if (n > 1)
        return fg_set_error("this frugal was built without MPI but a launcher started it as one of %d ranks "
                            "(hint: rebuild with make MPI=1, or run it without mpirun)", n);
    g_init = 1;
    return 0;
}

void fg_dist_finalize(void) { g_init = 0; }
const char *fg_dist_backend(void) { return "single process"; }
void fg_dist_abort(int code) { exit(code); }

int fg_comm_allreduce_f32(float *buf, size_t n) { (void)buf; (void)n; return 0; }
int fg_comm_allreduce_f64(double *buf, size_t n) { (void)buf; (void)n; return 0; }
int fg_comm_allreduce_i32(int *buf, size_t n) { (void)buf; (void)n; return 0; }
int fg_comm_allreduce_max_u8(unsigned char *buf, size_t n) { (void)buf; (void)n; return 0; }
int fg_comm_allreduce_f32_replicas(float *buf, size_t n) { (void)buf; (void)n; return 0; }
int fg_comm_allreduce_f64_ep(double *buf, size_t n) { (void)buf; (void)n; return 0; }
int fg_comm_iallreduce_f32(float *buf, size_t n, int replicas) { (void)buf; (void)n; (void)replicas; return 0; }
int fg_comm_progress(void) { return 0; }
int fg_comm_wait_all(void) { return 0; }
int fg_comm_set_ep(int ep) { return ep == 1 ? 0 : fg_set_error("--ep %d needs %d ranks at least: this is one process", ep, ep); }
int fg_comm_allgatherv_f32(float *buf, const size_t *count, const size_t *displ) { (void)buf; (void)count; (void)displ; return 0; }
int fg_comm_gatherv_f32(float *all, const float *mine, const size_t *count, const size_t *displ) {
    (void)all; (void)mine; (void)count; (void)displ;
    return 0;
}

int fg_comm_alltoallv(const void *send, const size_t *send_count, const size_t *send_displ, void *recv,
                      const size_t *recv_count, const size_t *recv_displ) {
    if (send_count[0] != recv_count[0]) return fg_set_error("all-to-all on one rank: %zu bytes sent, %zu expected", send_count[0], recv_count[0]);
    memmove((char *)recv + recv_displ[0], (const char *)send + send_displ[0], send_count[0]);
    return 0;
}

int fg_comm_alltoall_i32(const int *send, int *recv, int n) {
    memmove(recv, send, sizeof(int) * (size_t)n);
    return 0;
}

#endif
