// server.h: `frugal serve`'s HTTP transport (server/server.c, docs/serve.md): libmicrohttpd, one
// thread per connection, the OpenAI-shaped endpoints over an fg_engine. Sees only the public
// headers. Built only when libmicrohttpd is present (the Makefile says so); otherwise
// fg_server_run reports how to get it.
#ifndef FG_SERVER_H
#define FG_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "frugal_serve.h"

typedef struct {
    const char *host;           // numeric IPv4 address to bind ("127.0.0.1")
    int port;                   // 0: any free port (the one chosen is printed)
    const char *api_key;        // NULL/"": no auth; else "Authorization: Bearer KEY" on /v1/*
    const char *model_name;     // id in /v1/models and responses
    size_t max_body;            // bytes; larger bodies get 413
    int max_conn;               // connections at once
    int timeout_s;              // idle connection timeout
    double drain_s;             // on stop: seconds running requests may finish in
    volatile sig_atomic_t *stop; // set (by a signal handler) to stop serving
} fg_server_opts;

// Serves until *o->stop is set, then drains and returns 0; -1 with an error when the server cannot
// start (port taken, bad host). Prints one line "frugal serve: listening on http://HOST:PORT" to
// stdout once ready.
int fg_server_run(fg_engine *e, const fg_server_opts *o);

#endif
