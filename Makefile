# frugal: one Makefile. `make` builds ./frugal and build/libfrugal.a; `make test` runs the suite.
# Options: DEBUG=1, SANITIZE=address|undefined, ARCH= (default -march=native), WERROR=1, MPI=1.
# Every core by default (the first build on 2 cores: ~30 s instead of ~55); a -j given on the
# command line wins.
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 1)
CC      ?= cc
ARCH    ?= -march=native
OPT     ?= -O3
CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-psabi -Iinclude -Isrc -I. $(ARCH)
LDLIBS  := -lm -lpthread

ifeq ($(DEBUG),1)
  OPT := -O0 -g
endif
ifneq ($(SANITIZE),)
  OPT := -O1 -g -fno-omit-frame-pointer
  CFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -DFG_SANITIZED
  LDFLAGS += -fsanitize=$(SANITIZE)
  BUILD := build/$(SANITIZE)
endif
ifeq ($(WERROR),1)
  CFLAGS += -Werror
endif
BUILD ?= build
CFLAGS += $(OPT)

# MPI=1: the same frugal over MPI (Debian: openmpi-bin, libopenmpi-dev), for `mpirun -np N ./frugal
# train ...` (docs/distributed.md). Without it, a single-process layer with the same interface.
ifeq ($(MPI),1)
  MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
  MPI_LIBS := $(shell mpicc --showme:link 2>/dev/null)
  ifeq ($(MPI_LIBS),)
    $(error MPI=1 needs Open MPI's mpicc (Debian: apt install openmpi-bin libopenmpi-dev))
  endif
  CFLAGS += -DFG_HAVE_MPI $(MPI_CFLAGS)
  LDLIBS += $(MPI_LIBS)
endif

# OpenMP: used when the compiler has it; everything also runs single-threaded without it.
HAVE_OMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo 1)
ifeq ($(HAVE_OMP),1)
  CFLAGS += -fopenmp
  LDFLAGS += -fopenmp
endif

# libmicrohttpd: `frugal serve`'s HTTP layer (Debian: libmicrohttpd-dev). Without it everything
# else builds and `frugal serve` says how to get it.
HAVE_MHD := $(shell printf '\043include <microhttpd.h>\nint main(void){return MHD_is_feature_supported(MHD_FEATURE_THREADS);}\n' | $(CC) -x c - -lmicrohttpd -o /dev/null 2>/dev/null && echo 1)
ifeq ($(HAVE_MHD),1)
  SERVER_CFLAGS := -DFG_HAVE_MHD
  SERVER_LIBS := -lmicrohttpd
endif

# A build tree remembers the flags it was built with: when they change (make, then make WERROR=1),
# everything is rebuilt instead of passing unchecked.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW := $(CC) $(CFLAGS) $(LDFLAGS) $(LDLIBS) $(SERVER_CFLAGS) $(SERVER_LIBS)
$(shell mkdir -p $(BUILD) && (echo '$(FLAGS_NOW)' | cmp -s - $(FLAGS_STAMP) || echo '$(FLAGS_NOW)' >$(FLAGS_STAMP)))

LIB_SRC  := $(wildcard src/*.c src/*/*.c)
CLI_SRC  := $(wildcard cli/*.c) $(wildcard server/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o) $(BUILD)/server/page_html.o
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BIN      := $(if $(filter build,$(BUILD)),frugal,$(BUILD)/frugal)

.PHONY: all test demo demo-rl bench bench-dist bench-gemm bench-attn bench-decode bench-tokenizer bench-distill bench-quant bench-serve fuzz clean info
all: info $(BIN)

info:
	@echo "frugal: CC=$(CC) OpenMP=$(if $(HAVE_OMP),yes,no) libmicrohttpd=$(if $(HAVE_MHD),yes,no) MPI=$(if $(filter 1,$(MPI)),yes,no) ARCH=$(ARCH) build=$(BUILD)"

$(BUILD)/%.o: %.c $(wildcard include/*.h src/*.h src/*/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The CLI sees only the public header: it is compiled without -Isrc.
$(BUILD)/cli/%.o: cli/%.c $(wildcard include/*.h) $(wildcard cli/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Isrc,$(CFLAGS)) -c $< -o $@

# The server, like the CLI, sees only the public headers; the chat page is compiled in as bytes.
$(BUILD)/server/%.o: server/%.c $(wildcard include/*.h) $(wildcard server/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Isrc,$(CFLAGS)) $(SERVER_CFLAGS) -c $< -o $@

$(BUILD)/server/page_html.c: server/page.html
	@mkdir -p $(dir $@)
	{ echo '#include <stddef.h>'; echo 'const unsigned char fg_page_html[] = {'; od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '0};'; echo "const size_t fg_page_html_len = sizeof fg_page_html - 1;"; } >$@

$(BUILD)/server/page_html.o: $(BUILD)/server/page_html.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libfrugal.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(BUILD)/libfrugal.a $(FLAGS_STAMP)
	$(CC) $(LDFLAGS) $(CLI_OBJ) $(BUILD)/libfrugal.a -o $@ $(LDLIBS) $(SERVER_LIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/libfrugal.a $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libfrugal.a -o $@ $(LDLIBS)

# bench_serve is built for tests/cli_serve_clients.sh (its HTTP/SSE client, against a mock server).
test: $(BIN) $(TESTS) $(BUILD)/bench/bench_serve
	@BUILD=$(BUILD) BIN=$(BIN) sh tests/run.sh

demo: $(BIN)
	./$(BIN) demo

# The R1 pipeline on Countdown: SFT base -> GRPO -> verified samples -> distilled student, with the
# accuracy and cost of every stage in one table (tools/demo_rl.sh, docs/rl.md; ~25 minutes on 2 cores).
demo-rl: $(BIN)
	BIN=./$(BIN) sh tools/demo_rl.sh

# Throughput benchmark with a same-run PyTorch peer and the measured machine peak (bench/).
$(BUILD)/bench/%: bench/%.c $(BUILD)/libfrugal.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libfrugal.a -o $@ $(LDLIBS)

bench: $(BUILD)/bench/bench_train $(BUILD)/bench/bench_gemm $(BIN)
	@mkdir -p build/bench
	./$(BUILD)/bench/bench_gemm
	./$(BUILD)/bench/bench_train $(BENCH_ARGS)
	@echo "inference (frugal bench, bench-moe, random weights):"
	for w in f32 bf16 q8_0; do ./$(BIN) bench --weights $$w --prefill 128,512 --decode 0,1024 || exit 1; done

# Data / expert parallelism over MPI: 2 ranks x 1 thread against 1 rank x 2 threads (bench/dist.sh).
bench-dist:
	sh bench/dist.sh

bench-gemm: $(BUILD)/bench/bench_gemm
	./$(BUILD)/bench/bench_gemm $(BENCH_ARGS)

# The batched decode step's latent attention against the fp32 peak and streaming bandwidth (B=64, T=512).
bench-attn: $(BUILD)/bench/bench_attn
	./$(BUILD)/bench/bench_attn $(BENCH_ARGS)

# Decode matrix-vector GB/s per weight type against the streaming bandwidth of the same run.
bench-decode: $(BUILD)/bench/bench_decode
	./$(BUILD)/bench/bench_decode $(BENCH_ARGS)

# BPE encode MB/s (1 thread, all threads) with the JavaScript reference as the same-run peer.
bench-tokenizer: $(BUILD)/bench/bench_tokenizer
	./$(BUILD)/bench/bench_tokenizer $(BENCH_ARGS)

# Logit distillation vs. training from scratch on a >= 5 MB natural-language corpus built from this
# machine's docs (bench/distill_text.sh; about 10 minutes on 2 cores; not part of `make test`).
bench-distill: $(BIN)
	sh bench/distill_text.sh

# GGUF weight types, frugal against llama.cpp on the same files: prefill/decode tokens/s on
# bench-moe's shape and held-out perplexity / top-1 agreement of two small trained models; writes
# docs/quant.md (bench/bench_quant.sh; about 15 minutes on 2 cores, plus llama.cpp's build the first
# time; not part of `make test`).
bench-quant: $(BIN)
	sh bench/bench_quant.sh

# `frugal serve` under load (bench/bench_serve.c): bench-moe's random weights, streaming clients
# 1, 4, 16 and 64 for 10 s each (64 tokens), then 4 x --max-queue clients of non-streamed overload
# that must see only 200 and 429, a live server and a 200 within 1 s after. SERVE_CMD can point the
# run at another server on SERVE_PORT (tests/mock_openai.py, say); its log: $(BUILD)/bench/serve.log.
SERVE_PORT  ?= 18080
SERVE_QUEUE ?= 64
SERVE_CMD   ?= ./$(BIN) serve --config bench-moe --port $(SERVE_PORT) --parallel 64 --max-queue $(SERVE_QUEUE)
# prefix reuse needs a context past 1,000 tokens: bench-moe's random weights stretched to 2048
SERVE_PREFIX_CMD ?= ./$(BIN) serve --config bench-moe --ctx 2048 --port $(SERVE_PORT) --parallel 4
$(BUILD)/bench/bench_serve: LDLIBS += -lpthread
bench-serve: $(BIN) $(BUILD)/bench/bench_serve
	@B=./$(BUILD)/bench/bench_serve; \
	if $$B --port $(SERVE_PORT) --wait-health 0 >/dev/null 2>&1; then \
	    echo "bench-serve: a server already answers on port $(SERVE_PORT); hint: stop it or set SERVE_PORT"; exit 1; fi; \
	$(SERVE_CMD) >$(BUILD)/bench/serve.log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	$$B --port $(SERVE_PORT) --pid $$pid --wait-health 300 || { tail -n 20 $(BUILD)/bench/serve.log; exit 1; }; \
	$$B --port $(SERVE_PORT) --clients 1,4,16,64 --seconds 10 --max-tokens 64; sweep=$$?; \
	$$B --port $(SERVE_PORT) --overload $$((4 * $(SERVE_QUEUE))) --seconds 10 --max-tokens 16 --pid $$pid; over=$$?; \
	kill $$pid; wait $$pid 2>/dev/null; \
	$(SERVE_PREFIX_CMD) >$(BUILD)/bench/serve.log 2>&1 & pid=$$!; \
	$$B --port $(SERVE_PORT) --pid $$pid --wait-health 300 --prefix 1000; pre=$$?; \
	[ $$sweep = 0 ] && [ $$over = 0 ] && [ $$pre = 0 ] || { tail -n 20 $(BUILD)/bench/serve.log; exit 1; }

clean:
	rm -rf build frugal

# ---- fuzz ----------------------------------------------------------------------------------
# libFuzzer targets for the parsers of untrusted bytes (fuzz/README.md). Needs clang with
# libFuzzer (Debian: apt-get install libclang-rt-14-dev). `make fuzz FUZZ_SECONDS=10` builds every
# fuzz/fuzz_<t>.c into build/fuzz/ and runs each for FUZZ_SECONDS on fuzz/seeds/<t>/, keeping what
# it finds in fuzz/corpus-<t>/ (git-ignored) and crash reproducers in build/fuzz/.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-psabi -g -O1 -fno-omit-frame-pointer -Iinclude -Isrc -I. \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_TARGETS := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
# The library is compiled once for every target (instrumented for coverage and the sanitizers,
# without libFuzzer's main), each target links it with its own entry point.
FUZZ_OBJ     := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
.SECONDARY: $(FUZZ_OBJ)

build/fuzz/obj/%.o: %.c $(wildcard include/*.h src/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(subst fuzzer,fuzzer-no-link,$(FUZZ_CFLAGS)) -c $< -o $@

build/fuzz/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJ) $(wildcard include/*.h src/*.h src/*/*.h fuzz/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_OBJ) -o $@ -lm -lpthread

fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p fuzz/corpus-$$t; \
	    dict=; [ -f fuzz/$$t.dict ] && dict=-dict=fuzz/$$t.dict; \
	    echo "fuzz: $$t for $(FUZZ_SECONDS) s (log: build/fuzz/$$t.log)"; \
	    if ./build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/$$t- $$dict fuzz/corpus-$$t fuzz/seeds/$$t >build/fuzz/$$t.log 2>&1; \
	    then grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done)' build/fuzz/$$t.log | sed 's/^/    /'; \
	    else tail -n 40 build/fuzz/$$t.log; echo "fuzz: $$t FAILED"; exit 1; fi; \
	done
