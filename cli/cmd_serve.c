// cmd_serve.c: `frugal serve`: an OpenAI-compatible HTTP server over the batched engine
// (docs/serve.md). Opens the model as `generate` does (checkpoint, .fgq, GGUF, Hugging Face
// directory) or builds random weights of a config (--config, for benchmarks), starts the engine and
// the HTTP server, and serves until SIGTERM or SIGINT, which drain running requests (--drain
// seconds) and exit 0.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "server/server.h"

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *config = NULL, *host = "127.0.0.1", *api_key = NULL, *weights_s = NULL, *kv_s = "f32", *name = NULL;
    int port = 8080, threads = 0, max_conn = 1024, timeout_s = 30, max_body_kib = 1024;
    double drain_s = 10;
    fg_engine_opts eo;
    fg_engine_opts_default(&eo);
    cli_opt opts[] = {
        {"model", OPT_STR, &model, "checkpoint, quantised model (.fgq), GGUF file or Hugging Face directory to serve"},
        {"config", OPT_STR, &config, "serve random weights of a preset or config.json instead (benchmarks)"},
        {"host", OPT_STR, &host, "IPv4 address to listen on (0.0.0.0: every interface)"},
        {"port", OPT_INT, &port, "TCP port (0: any free one; the chosen one is printed)", "[0,65535]"},
        {"parallel", OPT_INT, &eo.parallel, "sequences decoded together", "[1,1024]"},
        {"ctx", OPT_INT, &eo.max_len, "positions one request may use, prompt and answer (0: the model's context, at most 4096)", "[0,inf)"},
        {"cache", OPT_INT, &eo.n_ctx, "KV cache positions in all (0: parallel x ctx plus room for reused prefixes)", "[0,inf)"},
        {"max-queue", OPT_INT, &eo.max_queue, "requests waiting for a slot before new ones get 429", "[0,inf)"},
        {"max-tokens", OPT_INT, &eo.max_tokens, "max_tokens of a request that names none (0: what the context allows)", "[0,inf)"},
        {"step-rows", OPT_INT, &eo.step_rows, "rows one engine step carries: decode rows, then prompt chunks", "[1,65536]"},
        {"speculative", OPT_INT, &eo.speculative, "draft up to N tokens per choice and step with the model's MTP depths, verified in the batch (same output; 0 = off)", "[0,4]"},
        {"api-key", OPT_STR, &api_key, "require Authorization: Bearer KEY on /v1/* (default: $FRUGAL_API_KEY, else none)"},
        {"name", OPT_STR, &name, "model id in responses and /v1/models (default: the file name)"},
        {"max-body", OPT_INT, &max_body_kib, "largest request body in KiB (larger: 413)", "[1,1048576]"},
        {"max-conn", OPT_INT, &max_conn, "connections at once", "[1,65536]"},
        {"timeout", OPT_INT, &timeout_s, "seconds an idle connection is kept", "[1,86400]"},
        {"drain", OPT_DOUBLE, &drain_s, "on SIGTERM: seconds running requests may finish in", "[0,inf)"},
        {"weights", OPT_STR, &weights_s, "weight format for a checkpoint: f32 (default), bf16 or q8_0 (converted at load)"},
        {"kv-type", OPT_STR, &kv_s, "KV cache values: f32, bf16 or q8_0 (32-value blocks with an fp16 scale, 1.06 bytes per value)"},
        {"threads", OPT_INT, &threads, "OpenMP threads (0 = all cores)"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("serve", "--model PATH | --config NAME [options]", opts, argc, argv, NULL, 0, NULL);
    if (r) return r < 0 ? 1 : 0;
    cli_set_threads(threads);
    if (!model == !config) return cli_fail("serve", "give one of --model PATH or --config NAME", "frugal serve --model runs/demo/ckpt.fgck");
    if (!api_key) api_key = getenv("FRUGAL_API_KEY");
    if ((eo.kv_type = cli_kv_type("serve", kv_s)) < 0) return 1;
    cli_weights cw = {0};
    if (model) {
        if (cli_open_weights("serve", model, weights_s, &cw)) return 1;
        if (!name) { name = strrchr(model, '/'); name = name && name[1] ? name + 1 : model; }
    } else {
        int weights = weights_s ? fg_dtype_parse(weights_s, FG_WEIGHT_TYPES, "weight type") : FG_F32;
        if (weights < 0) return cli_fail("serve", fg_last_error(), NULL);
        if (cli_random_weights("serve", config, weights, eo.max_len, &cw)) return 1;
        if (!name) name = config;
    }
    if (eo.speculative && !fg_wstore_config(cw.ws)->num_nextn_predict_layers) {
        cli_weights_close(&cw);
        return cli_fail("serve", "--speculative needs a model with multi-token prediction (num_nextn_predict_layers > 0)",
                        "train one with frugal train --mtp 1, or drop --speculative");
    }
    fg_engine *e = fg_engine_create(cw.ws, cw.tok, &eo);
    if (!e) { cli_weights_close(&cw); return cli_fail("serve", fg_last_error(), eo.speculative ? NULL : "a smaller --parallel, --ctx or --cache needs less memory"); }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    fg_server_opts so = {.host = host, .port = port, .api_key = api_key, .model_name = name, .max_body = (size_t)max_body_kib * 1024,
                         .max_conn = max_conn, .timeout_s = timeout_s, .drain_s = drain_s, .stop = &stop_flag};
    int rc = fg_server_run(e, &so);
    fg_engine_free(e);
    cli_weights_close(&cw);
    if (rc == 0) fprintf(stderr, "frugal serve: stopped\n");
    return rc ? 1 : 0;
}
