// test_shards.c: token shards: prepare (text, JSONL with bad lines, SFT masks), the reader's
// checks (corrupted shard named), bit-exact resume on shards (20 steps == 10 + resume + 10),
// and checkpoints with and without a tokenizer ('TOKN'), old byte-level ones unchanged.
#include <string.h>
#include <unistd.h>

#include "data/shard.h"
#include "formats/checkpoint.h"
#include "test.h"
#include "train/train.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void base_opts(fg_train_opts *o, const char *out, const char *shards) {
    fg_train_opts_default(o);
    o->batch = 2; o->seq = 16; o->steps = 20; o->warmup = 2; o->eval_every = 5; o->eval_batches = 1;
    o->save_every = 0; o->out_dir = out; o->progress = 0; o->quiet = 1; o->shards = shards;
}

static fg_model *fresh(fg_adamw *opt, fg_train_state *st) {
    fg_config c;
    fg_config_preset(&c, "tiny");
    fg_model *m = fg_model_create(&c);
    fg_model_init_weights(m, 7);
    fg_adamw_init_for(opt, m);
    fg_train_state_init(st, 7);
    return m;
}

int main(void) {
    char dir[] = "/tmp/fg_shards_XXXXXX", p[700], q[512];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(p, sizeof p, "%s/a.txt", dir);
    write_file(p, "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.\n");
    snprintf(q, sizeof q, "%s/b.jsonl", dir);
    write_file(q, "{\"text\": \"first document of the jsonl file\"}\nnot json at all\n{\"nope\": 1}\n"
                  "{\"text\": \"second document, a little longer than the first one\"}\n");
    const char *files[] = {p, q};
    char out[512];
    snprintf(out, sizeof out, "%s/sh", dir);
    fg_prepare_opts po = {.shard_tokens = 64, .val_fraction = 0.0, .out_dir = out};
    fg_prepare_report rep;
    CHECK_MSG(fg_data_prepare(&po, files, 2, &rep) == 0, "%s", fg_last_error());
    CHECK(rep.documents == 3 && rep.skipped_lines == 2 && rep.train_shards >= 2);
    fg_shardset ss;
    CHECK_MSG(fg_shardset_open(&ss, out) == 0, "%s", fg_last_error());
    CHECK(ss.man.n_train == (int)rep.train_shards && !ss.man.bpe && ss.train[0].width == 2);
    CHECK(fg_shard_token(&ss.train[0], 0) == FG_TOK_BOS && fg_shard_token(&ss.train[0], 1) == 'T');
    fg_shardset_close(&ss);

    // --- empty input and all-malformed input are errors -----------------------------------------
    snprintf(p, sizeof p, "%s/empty.txt", dir);
    write_file(p, "");
    const char *bad1[] = {p};
    CHECK(fg_data_prepare(&po, bad1, 1, &rep) != 0 && strstr(fg_last_error(), "empty"));
    snprintf(p, sizeof p, "%s/bad.jsonl", dir);
    write_file(p, "nope\n[1]\n");
    CHECK(fg_data_prepare(&po, bad1, 1, &rep) != 0 && rep.skipped_lines == 2);

    // --- SFT: only the assistant's tokens are targets ---------------------------------------------
    snprintf(p, sizeof p, "%s/chat.jsonl", dir);
    write_file(p, "{\"conversations\": [{\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\"}]}\n");
    char sft[512];
    snprintf(sft, sizeof sft, "%s/sft", dir);
    fg_prepare_opts so = {.shard_tokens = 1 << 20, .sft = 1, .out_dir = sft};
    CHECK_MSG(fg_data_prepare(&so, bad1, 1, &rep) == 0, "%s", fg_last_error());
    CHECK_MSG(fg_shardset_open(&ss, sft) == 0, "%s", fg_last_error());
    if (ss.man.n_train == 1) {
        const fg_shard *sh = &ss.train[0];
        char text[256] = "", trained[256] = "";
        size_t k = 0, n = 0;
        for (uint64_t i = 0; i < sh->n_tokens && k < 200; i++) {
            char piece[FG_BYTETOK_MAX_PIECE];
            size_t len = fg_bytetok_decode(fg_shard_token(sh, i), piece);
            memcpy(text + k, piece, len); k += len;
            if (fg_shard_trained(sh, i)) { memcpy(trained + n, piece, len); n += len; }
        }
        text[k] = trained[n] = 0;
        CHECK_MSG(!strcmp(text, "<|bos|><|user|>2+2?<|eos|>\n<|assistant|>4<|eos|>\n"), "rendered '%s'", text);
        CHECK_MSG(!strcmp(trained, "4<|eos|>\n"), "trained '%s'", trained);
        int32_t in[16], tg[16];
        uint64_t pos[4] = {0};
        fg_rng r;
        fg_rng_seed(&r, 1);
        fg_shard_stream_next(&ss, pos, &r, FG_TOK_PAD, in, tg, 1, 16);
        int n_tg = 0;
        for (int t = 0; t < 16; t++) n_tg += tg[t] >= 0;
        CHECK(n_tg <= 3);
    }
    fg_shardset_close(&ss);

    // --- resume on shards: 20 steps == 10 + resume + 10, byte-identical weights --------------------
    char ra[512], rb[512], ck[600];
    snprintf(ra, sizeof ra, "%s/ra", dir);
    snprintf(rb, sizeof rb, "%s/rb", dir);
    fg_adamw oa, ob;
    fg_train_state sa, sb;
    fg_train_opts o;
    fg_model *ma = fresh(&oa, &sa), *mb = fresh(&ob, &sb);
    base_opts(&o, ra, out);
    CHECK_MSG(fg_train(ma, &oa, &sa, &o) == 0, "%s", fg_last_error());
    base_opts(&o, rb, out);
    o.stop_after = 10;
    CHECK_MSG(fg_train(mb, &ob, &sb, &o) == 0, "%s", fg_last_error());
    fg_model_free(mb); fg_adamw_free(&ob); fg_train_state_free(&sb);
    snprintf(ck, sizeof ck, "%s/ckpt.fgck", rb);
    mb = fg_ckpt_load(ck, &ob, &sb);
    CHECK_MSG(mb != NULL, "%s", fg_last_error());
    if (mb) {
        CHECK(sb.step == 10 && sb.stream[0] >= 1);
        o.stop_after = 0;
        CHECK_MSG(fg_train(mb, &ob, &sb, &o) == 0, "%s", fg_last_error());
        CHECK_MSG(memcmp(ma->params, mb->params, sizeof(float) * ma->n_params) == 0, "weights differ after resume on shards");
        CHECK(memcmp(sa.stream, sb.stream, sizeof sa.stream) == 0);
        fg_model_free(mb); fg_adamw_free(&ob); fg_train_state_free(&sb);
    }

    // --- old byte-level checkpoints: no tokenizer, load as before ----------------------------------
    fg_tokenizer *tok = (fg_tokenizer *)1;
    snprintf(ck, sizeof ck, "%s/ckpt.fgck", ra);
    CHECK(fg_ckpt_read_tokenizer(ck, &tok) == 0 && tok == NULL);
    snprintf(ck, sizeof ck, "%s/old.fgck", dir);
    fg_train_state st0;
    fg_train_state_init(&st0, 3); // what main wrote: "byte", no tokenizer bytes, no stream
    CHECK(fg_ckpt_save(ck, ma, &oa, &st0) == 0);
    fg_train_state st1;
    fg_model *m1 = fg_ckpt_load(ck, NULL, &st1);
    CHECK(m1 && !strcmp(st1.tokenizer, "byte") && !st1.tokenizer_data && st1.stream[0] == 0);
    CHECK(m1 && memcmp(m1->params, ma->params, sizeof(float) * ma->n_params) == 0);
    CHECK(fg_ckpt_read_tokenizer(ck, &tok) == 0 && tok == NULL);
    fg_model_free(m1); fg_train_state_free(&st1);

    // --- a BPE tokenizer travels in 'TOKN' -------------------------------------------------------------
    const char *gguf = "../shared/testdata/tokenizer/ggml-vocab-deepseek-coder.gguf";
    size_t len;
    char *bytes = fg_read_file(gguf, &len);
    if (!bytes) printf("note: %s absent: TOKN round trip not checked\n", gguf);
    else {
        st0.tokenizer_data = bytes; st0.tokenizer_len = len;
        strcpy(st0.tokenizer, "bpe");
        CHECK_MSG(fg_ckpt_save(ck, ma, NULL, &st0) == 0, "%s", fg_last_error());
        CHECK_MSG(fg_ckpt_read_tokenizer(ck, &tok) == 0 && tok, "%s", fg_last_error());
        if (tok) { CHECK(fg_tokenizer_vocab_size(tok) > 30000); fg_tokenizer_free(tok); }
        m1 = fg_ckpt_load(ck, NULL, &st1);
        CHECK(m1 && st1.tokenizer_len == len && !memcmp(st1.tokenizer_data, bytes, len) && !strcmp(st1.tokenizer, "bpe"));
        fg_model_free(m1); fg_train_state_free(&st1);
    }
    fg_train_state_free(&st0);

    // --- a corrupted shard is named ------------------------------------------------------------------
    snprintf(p, sizeof p, "%s/train-00000.fgsh", out);
    FILE *f = fopen(p, "r+b");
    fseek(f, FG_SHARD_HDR + 3, SEEK_SET);
    fputc('Z', f);
    fclose(f);
    CHECK(fg_shardset_open(&ss, out) != 0 && strstr(fg_last_error(), "train-00000.fgsh") && strstr(fg_last_error(), "checksum"));
    fg_model_free(ma); fg_adamw_free(&oa); fg_train_state_free(&sa);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return TEST_DONE();
}
