// generate.c: sequence-level distillation (fg_distill_generate): sample n teacher completions per
// prompt, keep those a verifier accepts, write SFT JSONL ({"prompt", "completion", "prompt_ids",
// "completion_ids"}) and the acceptance statistics (OUT.stats.json).
//
// Verifiers: the built-in task's answer check, or an external command run with /bin/sh -c in its own
// process group, the completion on its stdin: exit 0 accepts, exit 1 rejects; any other status, a
// signal, or a run longer than the timeout (the group is then killed with SIGKILL) is an error that
// stops the run, so a broken verifier never silently turns into "everything rejected". Outputs are
// written to PATH.tmp and renamed: a failed run leaves an earlier file untouched. Not done here:
// training on the result (fg_train_sft in sft.c).
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/task.h"
#include "distill/distill.h"
#include "formats/checkpoint.h"
#include "formats/json.h"
#include "model/model.h"
#include "util.h"

// (distill.h)
int fg_run_verifier(const char *cmd, const char *text, size_t len, double timeout) {
    int in[2];
    if (pipe(in)) return fg_set_error("verifier: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) { close(in[0]); close(in[1]); return fg_set_error("verifier: fork: %s", strerror(errno)); }
    if (pid == 0) {
        setpgid(0, 0);
        dup2(in[0], 0);
        close(in[0]); close(in[1]);
        int dn = open("/dev/null", O_WRONLY);
        if (dn >= 0) { dup2(dn, 1); close(dn); }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    close(in[0]);
    signal(SIGPIPE, SIG_IGN); // a verifier that does not read its stdin must not kill us
    size_t off = 0;
    int fl = fcntl(in[1], F_GETFL);
    fcntl(in[1], F_SETFL, fl | O_NONBLOCK);
    double t0 = fg_now();
    int status = 0, done = 0;
    while (!done) {
        if (off < len) {
            ssize_t w = write(in[1], text + off, len - off);
            if (w > 0) off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR) off = len; // reader gone
            if (off >= len) { close(in[1]); in[1] = -1; }
        } else if (in[1] >= 0) { close(in[1]); in[1] = -1; }
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) { done = 1; break; }
        if (fg_now() - t0 > timeout) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            if (in[1] >= 0) close(in[1]);
            return fg_set_error("verifier '%s' did not finish within %g s and was killed (hint: fix the verifier or raise "
                                "--verifier-timeout)", cmd, timeout);
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    if (in[1] >= 0) close(in[1]);
    if (WIFEXITED(status) && WEXITSTATUS(status) <= 1) return WEXITSTATUS(status);
    if (WIFEXITED(status))
        return fg_set_error("verifier '%s' failed with exit status %d (0 accepts, 1 rejects; anything else is an error%s)", cmd,
                            WEXITSTATUS(status), WEXITSTATUS(status) == 127 ? ": command not found?" : "");
    return fg_set_error("verifier '%s' was killed by signal %d", cmd, WTERMSIG(status));
}

// Decodes ids to text (specials by name for the byte tokenizer); stops before an EOS-like stop id.
static size_t ids_text(const fg_tokenizer *tok, const int32_t *ids, int n, char **buf, size_t *cap) {
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        char piece[64];
        size_t l;
        if (tok) {
            l = fg_tokenizer_decode(tok, ids[i], NULL, 0);
            if (k + l + 1 > *cap) { *cap = 2 * (k + l + 1); *buf = realloc(*buf, *cap); if (!*buf) return 0; }
            fg_tokenizer_decode(tok, ids[i], *buf + k, l);
        } else {
            l = fg_bytetok_decode(ids[i], piece);
            if (k + l + 1 > *cap) { *cap = 2 * (k + l + 64); *buf = realloc(*buf, *cap); if (!*buf) return 0; }
            memcpy(*buf + k, piece, l);
        }
        k += l;
    }
    (*buf)[k] = 0;
    return k;
}

static void write_ids(FILE *f, const int32_t *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", ids[i]);
    fputc(']', f);
}

// task: 0 a prompt file's line, 1 an arithmetic problem, 2 a Countdown problem
typedef struct { int32_t *ids; int n; fg_task_problem p; fg_countdown cd; int task; } prompt_t;

// Prompts: the task's training problems, or JSONL {"prompt": ...} encoded as BOS + text.
static int load_prompts(const fg_distill_gen_opts *o, const fg_tokenizer *tok, prompt_t **out, int *n_out) {
    *out = NULL; *n_out = 0;
    if (!o->prompts) {
        if (o->n_prompts < 1) return fg_set_error("--n-prompts must be >= 1 (got %d)", o->n_prompts);
        if (tok) return fg_set_error("the built-in task is byte-level but the teacher uses a BPE tokenizer (hint: --prompts FILE.jsonl)");
        prompt_t *p = calloc((size_t)o->n_prompts, sizeof *p);
        if (!p) return fg_set_error("out of memory");
        fg_rng r;
        fg_rng_seed(&r, o->seed ^ 0x70726f6dull);
        for (int i = 0; i < o->n_prompts; i++) {
            int32_t ids[FG_CD_MAX_TOKENS];
            if (o->task == FG_TRAIN_COUNTDOWN) {
                fg_countdown_sample(&r, o->task_level, 0, &p[i].cd);
                p[i].n = fg_countdown_prompt(&p[i].cd, ids);
                p[i].task = 2;
            } else {
                fg_task_sample(&r, 0, &p[i].p);
                fg_task_render(&p[i].p, ids, &p[i].n);
                p[i].task = 1;
            }
            p[i].ids = malloc(sizeof(int32_t) * p[i].n);
            if (!p[i].ids) { *out = p; *n_out = i; return fg_set_error("out of memory"); }
            memcpy(p[i].ids, ids, sizeof(int32_t) * p[i].n);
        }
        *out = p; *n_out = o->n_prompts;
        return 0;
    }
    size_t len;
    char *text = fg_read_file(o->prompts, &len);
    if (!text) return -1;
    int cap = 64, n = 0, line = 0, rc = 0;
    prompt_t *p = calloc((size_t)cap, sizeof *p);
    size_t l;
    for (char *at = text, *s; p && !rc && (s = fg_next_line(&at, text + len, &l));) {
        line++;
        if (!l) continue;
        fg_json *j = fg_json_parse(s, l, o->prompts);
        const fg_json *pr = j ? fg_json_get(j, "prompt") : NULL;
        if (!pr || pr->type != FG_JSON_STRING) {
            fg_json_free(j);
            rc = fg_set_error("%s:%d: expected a JSON object with a string \"prompt\"", o->prompts, line);
            break;
        }
        if (n == cap) { cap *= 2; prompt_t *q = realloc(p, sizeof *p * cap); if (!q) { fg_json_free(j); rc = fg_set_error("out of memory"); break; } p = q; }
        size_t need = tok ? fg_tokenizer_encode(tok, pr->str, pr->len, 0, NULL, 0) : fg_bytetok_encode(pr->str, pr->len, 0, NULL, 0);
        p[n].ids = malloc(sizeof(int32_t) * (need + 1));
        if (!p[n].ids) { fg_json_free(j); rc = fg_set_error("out of memory"); break; }
        p[n].ids[0] = tok ? fg_tokenizer_token_id(tok, FG_DS_BOS) : FG_TOK_BOS;
        if (tok) fg_tokenizer_encode(tok, pr->str, pr->len, 0, p[n].ids + 1, need);
        else fg_bytetok_encode(pr->str, pr->len, 0, p[n].ids + 1, need);
        p[n].n = (int)need + 1;
        p[n].task = 0;
        n++;
        fg_json_free(j);
    }
    free(text);
    *out = p; *n_out = n;
    if (!rc && n == 0) rc = fg_set_error("%s: no prompts (expected JSONL lines {\"prompt\": \"...\"})", o->prompts);
    return rc;
}

int fg_distill_generate(const fg_distill_gen_opts *o, fg_distill_gen_stats *st) {
    memset(st, 0, sizeof *st);
    double t0 = fg_now();
    if (!o->teacher || !o->out) return fg_set_error("generation needs a teacher checkpoint and an output path");
    if (o->n_samples < 1) return fg_set_error("--n must be >= 1 (got %d)", o->n_samples);
    if (o->max_new_tokens < 1) return fg_set_error("--max-new-tokens must be >= 1 (got %d)", o->max_new_tokens);
    if (!(o->temperature >= 0) || !isfinite(o->temperature)) return fg_set_error("temperature must be >= 0 (got %g)", o->temperature);
    if (!(o->verifier_timeout > 0)) return fg_set_error("--verifier-timeout must be > 0 (got %g)", o->verifier_timeout);
    fg_train_state tst;
    fg_model *tm = fg_ckpt_load(o->teacher, NULL, &tst);
    if (!tm) return -1;
    fg_tokenizer *tok = NULL;
    if (tst.tokenizer_data && !(tok = fg_tokenizer_load_mem(tst.tokenizer_data, tst.tokenizer_len, o->teacher))) {
        fg_train_state_free(&tst); fg_model_free(tm); return -1;
    }
    prompt_t *pr = NULL;
    int np = 0, rc = -1;
    FILE *f = NULL;
    fg_infer *s = NULL;
    int32_t *gen = NULL;
    char *text = NULL, *ptext = NULL;
    size_t tcap = 256, pcap = 256;
    char tmp[1100], spath[1100], stmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", o->out);
    snprintf(spath, sizeof spath, "%s.stats.json", o->out);
    snprintf(stmp, sizeof stmp, "%s.tmp", spath);
    if (load_prompts(o, tok, &pr, &np)) goto done;
    int maxT = tm->cfg.max_position_embeddings;
    s = fg_infer_create(tm, maxT);
    gen = malloc(sizeof(int32_t) * (size_t)o->max_new_tokens);
    text = malloc(tcap); ptext = malloc(pcap);
    if (!s || !gen || !text || !ptext) { if (s) fg_set_error("out of memory"); goto done; }
    int32_t eos = tok ? fg_tokenizer_token_id(tok, FG_DS_EOS) : FG_TOK_EOS;
    f = fopen(tmp, "w");
    if (!f) { fg_set_error("cannot write '%s': %s", tmp, strerror(errno)); goto done; }
    int64_t tt, ta;
    fg_config_param_counts(&tm->cfg, &tt, &ta);
    for (int i = 0; i < np; i++) {
        if (pr[i].n >= maxT) { fg_set_error("prompt %d has %d tokens, the teacher's context is %d", i + 1, pr[i].n, maxT); goto done; }
        int any = 0;
        size_t pl = ids_text(tok, pr[i].ids + 1, pr[i].n - 1, &ptext, &pcap); // without BOS
        for (int k = 0; k < o->n_samples; k++) {
            fg_sample_opts so = {.temperature = o->temperature, .top_p = 1, .seed = o->seed * 1000003u + (uint64_t)i * 1009u + (uint64_t)k,
                                 .max_new_tokens = FG_MIN(o->max_new_tokens, maxT - pr[i].n), .stop_ids = &eos, .n_stop = 1};
            fg_infer_reset(s);
            int ng = fg_generate(s, pr[i].ids, pr[i].n, &so, gen, o->max_new_tokens, NULL, NULL);
            if (ng < 0) goto done;
            st->samples++;
            st->tokens += pr[i].n + ng;
            int nt = ng && gen[ng - 1] == eos ? ng - 1 : ng; // the completion's text excludes the stop id
            size_t cl = ids_text(tok, gen, nt, &text, &tcap);
            int ok;
            if (o->verifier) {
                ok = fg_run_verifier(o->verifier, text, cl, o->verifier_timeout);
                if (ok < 0) { fg_wrap_error("prompt %d sample %d", i + 1, k + 1); goto done; }
                ok = ok == 0;
            } else {
                ok = pr[i].task == 1 ? fg_task_check(&pr[i].p, gen, ng) : pr[i].task == 2 ? fg_countdown_check(&pr[i].cd, gen, ng, NULL) : 1;
            }
            if (!ok) { st->rejected++; continue; }
            st->accepted++;
            any = 1;
            fputs("{\"prompt\":", f);
            fg_json_write_string(f, ptext, pl);
            fputs(",\"completion\":", f);
            fg_json_write_string(f, text, cl);
            fputs(",\"prompt_ids\":", f);
            write_ids(f, pr[i].ids, pr[i].n);
            fputs(",\"completion_ids\":", f);
            write_ids(f, gen, ng);
            fputs("}\n", f);
        }
        st->prompts++;
        st->prompts_with_one += any;
    }
    st->teacher_flops = 2.0 * (double)ta * st->tokens;
    st->wall_s = fg_now() - t0;
    if (st->accepted == 0) {
        fg_set_error("the verifier accepted none of the %lld samples: nothing written (hint: check the verifier, raise --n or "
                     "--temperature, or use a stronger teacher)", (long long)st->samples);
        goto done;
    }
    int err = fflush(f) || ferror(f) || fsync(fileno(f));
    if (fclose(f) || err) { f = NULL; fg_set_error("cannot write '%s'", tmp); goto done; }
    f = NULL;
    FILE *sf = fopen(stmp, "w");
    if (!sf) { fg_set_error("cannot write '%s': %s", stmp, strerror(errno)); goto done; }
    fprintf(sf, "{\"teacher\": ");
    fg_json_write_string(sf, o->teacher, strlen(o->teacher));
    fprintf(sf, ", \"prompts\": %lld, \"samples_per_prompt\": %d, \"samples\": %lld, \"accepted\": %lld, \"rejected\": %lld, "
                "\"acceptance\": %.6f, \"prompts_with_one_accepted\": %lld, \"temperature\": %g, \"verifier\": ",
            (long long)st->prompts, o->n_samples, (long long)st->samples, (long long)st->accepted, (long long)st->rejected,
            (double)st->accepted / (double)st->samples, (long long)st->prompts_with_one, o->temperature);
    if (o->verifier) fg_json_write_string(sf, o->verifier, strlen(o->verifier));
    else fputs(o->prompts ? "null" : "\"task answer check\"", sf);
    fprintf(sf, ", \"teacher_tokens\": %.17g, \"teacher_flops\": %.17g, \"wall_s\": %.3f}\n", st->tokens, st->teacher_flops, st->wall_s);
    err = fflush(sf) || ferror(sf) || fsync(fileno(sf));
    if (fclose(sf) || err || rename(stmp, spath) || rename(tmp, o->out)) {
        fg_set_error("cannot write '%s' / '%s': %s", spath, o->out, strerror(errno));
        unlink(stmp);
        goto done;
    }
    rc = 0;
done:
    if (f) fclose(f);
    if (rc) unlink(tmp);
    for (int i = 0; i < np; i++) free(pr[i].ids);
    free(pr); free(gen); free(text); free(ptext);
    fg_infer_free(s);
    fg_tokenizer_free(tok);
    fg_train_state_free(&tst);
    fg_model_free(tm);
    return rc;
}
