// test_serve_engine.c: the server's engine (src/serve/engine.c) against single-sequence generation.
//
// Oracle: fg_generate on a lone fg_infer session (greedy, what `frugal generate --temperature 0`
// runs), whose logits test_generate and test_batch check against the training forward and
// PyTorch. Checked: 16 completions submitted at once (parallel 16, and parallel 4 so that most
// wait in the queue and join running batches) give every one the same text and finish reason as
// alone; n = 3 greedy choices forked from one prefill equal it too; a repeated prompt is found in
// the cache (usage reports the hit; same text) and a prompt sharing a prefix reuses exactly that
// prefix; a stop string cuts the text before it; JSON mode on a random model returns text that
// the JSON parser reads as an object; a full queue says busy; a released job is cancelled and its
// cache blocks come back; the chat layout is the one fg_chat_render gives.
#include <string.h>
#include <unistd.h>

#include "formats/json.h"
#include "frugal_serve.h"
#include "model_fixture.h"
#include "test.h"
#include "train/train.h"

#define NP 16
#define MAXNEW 24

typedef struct { char text[4096]; int n, finish, ntok; } ref;

static int collect(int32_t id, void *ctx) {
    ref *r = ctx;
    if (id == FG_TOK_EOS) return 0;
    char buf[FG_BYTETOK_MAX_PIECE];
    size_t n = fg_bytetok_decode(id, buf);
    memcpy(r->text + r->n, buf, n);
    r->n += (int)n;
    r->text[r->n] = 0;
    return 0;
}

static void reference(const fg_wstore *ws, const char *prompt, int max_new, ref *r) {
    memset(r, 0, sizeof *r);
    int32_t ids[512];
    ids[0] = FG_TOK_BOS;
    int n = 1 + (int)fg_bytetok_encode(prompt, strlen(prompt), 1, ids + 1, 510);
    fg_infer *s = fg_infer_create_store(ws, fg_wstore_config(ws)->max_position_embeddings, FG_KV_AUTO, FG_F32);
    int32_t stop = FG_TOK_EOS, out[512];
    fg_sample_opts so = {.temperature = 0, .top_p = 1, .max_new_tokens = max_new, .stop_ids = &stop, .n_stop = 1};
    r->ntok = fg_generate(s, ids, n, &so, out, max_new + 1, collect, r);
    r->finish = r->ntok > 0 && out[r->ntok - 1] == FG_TOK_EOS ? FG_FINISH_STOP : FG_FINISH_LENGTH;
    fg_infer_free(s);
}

static fg_api_request completion(const char *prompt, int max_tokens) {
    fg_api_request q = {.kind = FG_API_COMPLETION, .prompt = prompt, .prompt_len = strlen(prompt), .max_tokens = max_tokens,
                        .temperature = 0, .top_p = 1, .n = 1};
    return q;
}

typedef struct { char text[FG_API_MAX_N][4096]; size_t n[FG_API_MAX_N]; int finish[FG_API_MAX_N]; fg_job_usage usage; } result;

static void run_to_end(fg_job *j, result *res) {
    memset(res, 0, sizeof *res);
    if (!j) { fprintf(stderr, "run_to_end: no job\n"); tst_failures++; return; }
    fg_job_update u = {0};
    for (int spins = 0; spins < 100000; spins++) {
        if (!fg_job_wait(j, 1000, &u)) continue;
        for (int i = 0; i < u.n; i++) {
            if (u.ch[i].n_content && res->n[i] + u.ch[i].n_content < sizeof res->text[i]) {
                memcpy(res->text[i] + res->n[i], u.ch[i].content, u.ch[i].n_content);
                res->n[i] += u.ch[i].n_content;
            }
            if (u.ch[i].finish) res->finish[i] = u.ch[i].finish;
        }
        if (u.done) { res->usage = u.usage; break; }
    }
    fg_job_update_free(&u);
    fg_job_release(j);
}

static void check_batched(const fg_wstore *ws, int parallel, char prompts[NP][128], ref *refs) {
    fg_engine_opts o;
    fg_engine_opts_default(&o);
    o.parallel = parallel;
    o.step_rows = 40; // prompts of ~60 tokens prefill in two chunks while others decode
    fg_engine *e = fg_engine_create(ws, NULL, &o);
    CHECK_MSG(e != NULL, "engine: %s", fg_last_error());
    if (!e) return;
    fg_job *jobs[NP];
    for (int i = 0; i < NP; i++) {
        fg_api_request q = completion(prompts[i], MAXNEW);
        int st;
        fg_api_error err;
        jobs[i] = fg_engine_submit(e, &q, &st, &err);
        CHECK_MSG(jobs[i] && st == FG_JOB_OK, "submit %d: status %d %s", i, st, err.message);
    }
    int same = 0;
    for (int i = 0; i < NP; i++) {
        if (!jobs[i]) continue;
        result res;
        run_to_end(jobs[i], &res);
        int ok = res.n[0] == (size_t)refs[i].n && !memcmp(res.text[0], refs[i].text, res.n[0]) && res.finish[0] == refs[i].finish &&
                 res.usage.completion_tokens == refs[i].ntok;
        CHECK_MSG(ok, "parallel %d, prompt %d: engine \"%.*s\" (%d, %d tokens) vs alone \"%s\" (%d, %d tokens)", parallel, i,
                  (int)res.n[0], res.text[0], res.finish[0], res.usage.completion_tokens, refs[i].text, refs[i].finish, refs[i].ntok);
        same += ok;
    }
    fg_engine_stats st;
    fg_engine_stats_get(e, &st);
    printf("  parallel %2d: %d/%d completions identical to generating alone; %llu steps, %.1f rows per step\n", parallel, same, NP,
           (unsigned long long)st.steps, st.steps ? (double)st.step_rows / (double)st.steps : 0.0);
    CHECK(st.steps > 0 && st.step_rows > st.steps); // rows were batched
    fg_engine_free(e);
}

// Self-speculative decoding in the engine: a tiny model with two MTP depths, trained briefly on
// the built-in task so that its drafts are sometimes right, gives the same text, finish reason and
// token count with drafts (1 and 2 per step) as without, for greedy and seeded sampling with
// penalties, JSON mode, n = 2 choices, a stop string and a prompt reused from the cache; the
// drafts of each depth are both accepted and rejected along the way.
static void check_speculative(void) {
    fg_config c;
    fg_config_preset(&c, "tiny");
    c.num_nextn_predict_layers = 2;
    fg_model *m = fg_model_create(&c);
    fg_model_init_weights(m, 7);
    fg_adamw opt;
    fg_adamw_init(&opt, m->n_params, m->n_tensors);
    fg_train_state ts;
    memset(&ts, 0, sizeof ts);
    fg_rng_seed(&ts.rng, 8);
    fg_rng_seed(&ts.data_rng, 9);
    strcpy(ts.tokenizer, "byte");
    char dir[] = "/tmp/fg_serve_spec_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    fg_train_opts to;
    fg_train_opts_default(&to);
    to.batch = 8; to.seq = 70; to.steps = 150; to.warmup = 10; to.lr = 3e-3f; to.eval_every = 0; to.save_every = 0;
    to.out_dir = dir; to.progress = 0; to.quiet = 1;
    CHECK_MSG(fg_train(m, &opt, &ts, &to) == 0, "%s", fg_last_error());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    fg_wstore *ws = fg_wstore_from_model(m, FG_F32);
    enum { NQ = 9 };
    const char *prompts[NQ] = {"12+34=", "905-17=", "0123+4567=", "77*3=", "12+34=", "5+5=", "31-4=", "246+135=", "8*8="};
    fg_api_request qs[NQ];
    for (int i = 0; i < NQ; i++) {
        qs[i] = completion(prompts[i], 40);
        qs[i].has_seed = 1; qs[i].seed = (uint64_t)(100 + i);
    }
    qs[1].temperature = 1; // sampling
    qs[2].temperature = 0.7f; qs[2].top_p = 0.9f; qs[2].frequency_penalty = 0.5f; qs[2].presence_penalty = 0.3f;
    qs[3].temperature = 1; qs[3].json_mode = 1;
    qs[5].n = 2; qs[5].temperature = 1;
    qs[6].max_tokens = 7; // ends by length, mid-draft
    // qs[4] repeats qs[0]: its prompt is found in the cache; qs[7] stops at 3 bytes from the middle
    // of its greedy answer
    ref r7;
    reference(ws, prompts[7], 40, &r7);
    char stop[4] = "";
    if (r7.n >= 8) memcpy(stop, r7.text + r7.n / 2, 3);
    qs[7].stop[0] = stop; qs[7].stop_len[0] = strlen(stop); qs[7].n_stop = stop[0] != 0;
    result plain[NQ], spec[NQ];
    fg_engine_stats st[3];
    for (int S = 0; S <= 2; S++) {
        fg_engine_opts o;
        fg_engine_opts_default(&o);
        o.parallel = 4;
        o.speculative = S;
        fg_engine *e = fg_engine_create(ws, NULL, &o);
        CHECK_MSG(e != NULL, "speculative %d: %s", S, fg_last_error());
        if (!e) break;
        for (int i = 0; i < NQ; i++) {
            int status;
            fg_api_error err;
            run_to_end(fg_engine_submit(e, &qs[i], &status, &err), S ? &spec[i] : &plain[i]);
            if (!S) continue;
            for (int k = 0; k < qs[i].n; k++)
                CHECK_MSG(spec[i].n[k] == plain[i].n[k] && !memcmp(spec[i].text[k], plain[i].text[k], plain[i].n[k]) &&
                          spec[i].finish[k] == plain[i].finish[k], "speculative %d, request %d choice %d: \"%.*s\" (finish %d) vs \"%.*s\" (finish %d)",
                          S, i, k, (int)spec[i].n[k], spec[i].text[k], spec[i].finish[k], (int)plain[i].n[k], plain[i].text[k], plain[i].finish[k]);
            CHECK_MSG(spec[i].usage.completion_tokens == plain[i].usage.completion_tokens && spec[i].usage.cache_hit_tokens == plain[i].usage.cache_hit_tokens,
                      "speculative %d, request %d: %d tokens (%d cached) vs %d (%d)", S, i, spec[i].usage.completion_tokens,
                      spec[i].usage.cache_hit_tokens, plain[i].usage.completion_tokens, plain[i].usage.cache_hit_tokens);
        }
        fg_engine_stats_get(e, &st[S]);
        fg_engine_free(e);
    }
    CHECK_MSG(plain[7].finish[0] == FG_FINISH_STOP && plain[4].usage.cache_hit_tokens > 0, "the stop string and the reuse cases did not happen");
    for (int S = 1; S <= 2; S++) {
        printf("  speculative %d: every request as without drafts; depth 1 accepted %llu of %llu", S,
               (unsigned long long)st[S].spec_accepted[0], (unsigned long long)st[S].spec_proposed[0]);
        if (S == 2) printf(", depth 2 %llu of %llu", (unsigned long long)st[S].spec_accepted[1], (unsigned long long)st[S].spec_proposed[1]);
        printf("; %llu steps for %llu tokens (without: %llu)\n", (unsigned long long)st[S].steps, (unsigned long long)st[S].completion_tokens,
               (unsigned long long)st[0].steps);
        for (int k = 0; k < S; k++)
            CHECK_MSG(st[S].spec_accepted[k] > 0 && st[S].spec_accepted[k] < st[S].spec_proposed[k],
                      "speculative %d depth %d: %llu of %llu accepted (the test needs both)", S, k + 1,
                      (unsigned long long)st[S].spec_accepted[k], (unsigned long long)st[S].spec_proposed[k]);
        CHECK(st[S].completion_tokens == st[0].completion_tokens && st[S].steps < st[0].steps);
    }
    // a model without MTP depths is refused
    fg_engine_opts o;
    fg_engine_opts_default(&o);
    o.speculative = 3;
    CHECK(fg_engine_create(ws, NULL, &o) == NULL && strstr(fg_last_error(), "speculative must be in [0, 2]"));
    fg_wstore_free(ws);
    fg_adamw_free(&opt);
    fg_model_free(m);
}

int main(void) {
    fg_config c;
    fg_config_preset(&c, "tiny");
    fg_model *m = make_model(&c, 11);
    fg_wstore *ws = fg_wstore_from_model(m, FG_F32);
    char prompts[NP][128];
    ref refs[NP];
    for (int i = 0; i < NP; i++) { // different lengths (10 .. 70 bytes), some sharing a start
        int len = 10 + (i * 37) % 61;
        for (int k = 0; k < len; k++) prompts[i][k] = (char)('a' + (i * 7 + k * (k % 3 + i % 2 + 1)) % 26);
        prompts[i][len] = 0;
        reference(ws, prompts[i], MAXNEW, &refs[i]);
    }
    printf("self-speculative decoding (a tiny MTP model trained 150 steps on the task):\n");
    check_speculative();
    printf("16 greedy completions in one engine vs each generated alone (fg_generate):\n");
    check_batched(ws, 16, prompts, refs);
    check_batched(ws, 4, prompts, refs);

    fg_engine_opts o;
    fg_engine_opts_default(&o);
    o.parallel = 4;
    fg_engine *e = fg_engine_create(ws, NULL, &o);
    CHECK(e != NULL);
    int st;
    fg_api_error err;
    result res;
    // n = 3 greedy choices: one prefill, three forks, all equal to the lone answer
    fg_api_request q = completion(prompts[3], MAXNEW);
    q.n = 3;
    run_to_end(fg_engine_submit(e, &q, &st, &err), &res);
    for (int i = 0; i < 3; i++)
        CHECK_MSG(res.n[i] == (size_t)refs[3].n && !memcmp(res.text[i], refs[3].text, res.n[i]), "n=3 choice %d: \"%.*s\" vs \"%s\"", i,
                  (int)res.n[i], res.text[i], refs[3].text);
    CHECK(res.usage.completion_tokens == 3 * refs[3].ntok);
    // prefix reuse: the same prompt again is all cached but its last token
    int np = 1 + (int)strlen(prompts[3]);
    q.n = 1;
    run_to_end(fg_engine_submit(e, &q, &st, &err), &res);
    CHECK_MSG(res.usage.cache_hit_tokens == np - 1, "repeat: hit %d of %d", res.usage.cache_hit_tokens, np);
    CHECK(res.n[0] == (size_t)refs[3].n && !memcmp(res.text[0], refs[3].text, res.n[0]));
    // a prompt sharing its first 30 bytes with prompt 3 (plus BOS): a 31-token hit, same answer as alone
    char shared[128];
    memcpy(shared, prompts[3], 30);
    strcpy(shared + 30, "zzzzyyyyxxxx");
    ref rs;
    reference(ws, shared, 16, &rs);
    q = completion(shared, 16);
    run_to_end(fg_engine_submit(e, &q, &st, &err), &res);
    CHECK_MSG(res.usage.cache_hit_tokens == 31, "shared prefix: hit %d, want 31", res.usage.cache_hit_tokens);
    CHECK_MSG(res.n[0] == (size_t)rs.n && !memcmp(res.text[0], rs.text, res.n[0]), "shared prefix: \"%.*s\" vs \"%s\"", (int)res.n[0],
              res.text[0], rs.text);
    printf("  n=3 forks equal the lone answer; a repeated prompt hits %d of %d tokens; a shared 31-token prefix is reused\n", np - 1, np);
    // a stop string: the text ends right before its first occurrence
    int found = 0;
    for (int i = 0; i < NP && !found; i++) {
        if (refs[i].n < 8) continue;
        char stop[4];
        memcpy(stop, refs[i].text + refs[i].n / 2, 3);
        stop[3] = 0;
        if (strlen(stop) < 3) continue;
        const char *at = strstr(refs[i].text, stop);
        q = completion(prompts[i], MAXNEW);
        q.stop[0] = stop; q.stop_len[0] = 3; q.n_stop = 1;
        run_to_end(fg_engine_submit(e, &q, &st, &err), &res);
        CHECK_MSG(res.n[0] == (size_t)(at - refs[i].text) && !memcmp(res.text[0], refs[i].text, res.n[0]) && res.finish[0] == FG_FINISH_STOP,
                  "stop \"%s\": got \"%.*s\" from \"%s\"", stop, (int)res.n[0], res.text[0], refs[i].text);
        found = 1;
    }
    CHECK(found);
    // JSON mode at temperature 1 on random weights: the grammar alone makes it an object
    for (int s = 0; s < 4; s++) {
        q = completion(prompts[s], 30 + 5 * s);
        q.json_mode = 1; q.temperature = 1; q.has_seed = 1; q.seed = (uint64_t)s;
        run_to_end(fg_engine_submit(e, &q, &st, &err), &res);
        fg_json *j = fg_json_parse(res.text[0], res.n[0], "json mode");
        CHECK_MSG(j && j->type == FG_JSON_OBJECT, "json mode %d: \"%.*s\": %s", s, (int)res.n[0], res.text[0], fg_last_error());
        if (s == 0) printf("  JSON mode (random weights, temperature 1): %.*s\n", (int)FG_MIN(res.n[0], 80), res.text[0]);
        fg_json_free(j);
    }
    // a prompt beyond the context is refused with the field named
    char *longp = malloc(300);
    memset(longp, 'a', 299); longp[299] = 0;
    q = completion(longp, 4);
    CHECK(!fg_engine_submit(e, &q, &st, &err) && st == FG_JOB_INVALID && !strcmp(err.param, "prompt"));
    q = completion(prompts[0], 200);
    CHECK(!fg_engine_submit(e, &q, &st, &err) && st == FG_JOB_INVALID && !strcmp(err.param, "max_tokens"));
    free(longp);
    // chat: the prompt is fg_chat_render's layout (usage counts its tokens)
    fg_chat_msg msgs[2] = {{"system", "be brief"}, {"user", "hello"}};
    char text[256];
    size_t tl = fg_chat_render(FG_CHAT_FRUGAL, msgs, 2, 1, text, sizeof text);
    q = (fg_api_request){.kind = FG_API_CHAT, .msgs = msgs, .n_msgs = 2, .max_tokens = 4, .temperature = 0, .top_p = 1, .n = 1};
    run_to_end(fg_engine_submit(e, &q, &st, &err), &res);
    CHECK_MSG(res.usage.prompt_tokens == (int)fg_bytetok_encode(text, tl, 1, NULL, 0), "chat prompt %d tokens", res.usage.prompt_tokens);
    // a message's text is text: "<|eos|>" typed by a user is 7 byte tokens, not the control token
    int plain = res.usage.prompt_tokens;
    msgs[1].content = "hell<|eos|>";
    run_to_end(fg_engine_submit(e, &q, &st, &err), &res);
    CHECK_MSG(res.usage.prompt_tokens == plain + 6, "special string in a message: %d tokens, want %d", res.usage.prompt_tokens, plain + 6);
    fg_engine_free(e);

    // reasoning: DeepSeek-R1's layout ends its generation prompt inside <think>, so everything the
    // (random) model writes before a </think> is reasoning_content; it is the text fg_generate
    // continues the same token ids with.
    o.chat_style = FG_CHAT_DEEPSEEK_R1;
    e = fg_engine_create(ws, NULL, &o);
    fg_chat_msg um[1] = {{"user", "think first"}};
    tl = fg_chat_render(FG_CHAT_DEEPSEEK_R1, um, 1, 1, text, sizeof text);
    int32_t rids[256];
    int nr = (int)fg_bytetok_encode(text, tl, 1, rids, 256);
    q = (fg_api_request){.kind = FG_API_CHAT, .msgs = um, .n_msgs = 1, .max_tokens = 12, .temperature = 0, .top_p = 1, .n = 1};
    fg_job *rj = fg_engine_submit(e, &q, &st, &err);
    char reasoning[4096] = "";
    size_t nreason = 0;
    memset(&res, 0, sizeof res);
    fg_job_update ru = {0};
    while (rj && fg_job_wait(rj, 1000, &ru) >= 0) {
        if (ru.ch[0].n_reasoning && nreason + ru.ch[0].n_reasoning < sizeof reasoning) {
            memcpy(reasoning + nreason, ru.ch[0].reasoning, ru.ch[0].n_reasoning);
            nreason += ru.ch[0].n_reasoning;
        }
        res.n[0] += ru.ch[0].n_content;
        if (ru.done) break;
    }
    fg_job_update_free(&ru);
    fg_job_release(rj);
    fg_infer *rsess = fg_infer_create_store(ws, 128, FG_KV_AUTO, FG_F32);
    int32_t stop = FG_TOK_EOS, rout[64];
    ref rr = {0};
    fg_sample_opts rso = {.temperature = 0, .top_p = 1, .max_new_tokens = 12, .stop_ids = &stop, .n_stop = 1};
    fg_generate(rsess, rids, nr, &rso, rout, 13, collect, &rr);
    fg_infer_free(rsess);
    int has_end = strstr(rr.text, "</think>") != NULL;
    CHECK_MSG(has_end || (res.n[0] == 0 && nreason == (size_t)rr.n && !memcmp(reasoning, rr.text, nreason)),
              "R1 layout: content %zu bytes, reasoning \"%.*s\" vs generate \"%s\"", res.n[0], (int)nreason, reasoning, rr.text);
    printf("  R1 layout: the answer starts inside <think>: %zu bytes of reasoning_content, no content\n", nreason);
    fg_engine_free(e);
    o.chat_style = -1;

    // busy and cancel: parallel 1, queue 1
    o.parallel = 1; o.max_queue = 1;
    e = fg_engine_create(ws, NULL, &o);
    // The tiny model writes a's 100 tokens in about 4 ms: a test thread descheduled for that long
    // (a busy machine) sees a finish before the queue fills, and the scenario is tried again.
    q = completion(prompts[0], 100);
    fg_job *a = NULL, *b = NULL, *c2 = NULL;
    fg_job_update u = {0};
    for (int attempt = 0; attempt < 20; attempt++) {
        a = fg_engine_submit(e, &q, &st, &err);
        while (a && fg_job_wait(a, 1000, &u) && !u.ch[0].n_content && !u.done) {} // running now
        b = fg_engine_submit(e, &q, &st, &err); // waits in the queue
        c2 = fg_engine_submit(e, &q, &st, &err);
        int st2 = st;
        fg_job_update ua = {0};
        int a_ended = u.done || (a && fg_job_wait(a, 0, &ua) && ua.done);
        fg_job_update_free(&ua);
        st = st2;
        if (!a_ended) break;
        fg_job_release(c2); fg_job_release(b); fg_job_release(a); // NULL is fine
        a = b = c2 = NULL;
        fg_job_update_free(&u);
        memset(&u, 0, sizeof u);
        fg_engine_stats es0;
        for (int t = 0; t < 200; t++) { fg_engine_stats_get(e, &es0); if (es0.running == 0 && es0.queued == 0) break; usleep(10000); }
    }
    CHECK_MSG(a && b && !c2 && st == FG_JOB_BUSY, "queue of 1: a %p b %p c %p status %d", (void *)a, (void *)b, (void *)c2, st);
    fg_job_release(b);
    fg_job_release(a);
    fg_job_update_free(&u);
    fg_engine_stats es;
    for (int t = 0; t < 200; t++) { fg_engine_stats_get(e, &es); if (es.cancelled >= 1 && es.running == 0 && es.queued == 0) break; usleep(10000); }
    CHECK_MSG(es.cancelled >= 1 && es.running == 0 && es.queued == 0, "cancel: %llu cancelled, %d running, %d queued",
              (unsigned long long)es.cancelled, es.running, es.queued);
    printf("  stop string, JSON mode, context errors, chat layout, busy queue and cancellation checked\n");
    fg_engine_free(e);
    fg_wstore_free(ws);
    fg_model_free(m);
    return TEST_DONE();
}
