// cli.h: shared pieces of the command line (dispatch table entry, option parsing helpers).
#ifndef FG_CLI_H
#define FG_CLI_H

#include "frugal.h"
#include "frugal_tools.h"

#define CLI_MIN(a, b) ((a) < (b) ? (a) : (b))

typedef struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv); // argv[0] is the command name; returns the exit code
} fg_command;

const fg_command *cli_commands(int *n);
int cmd_help(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_cost(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_data(int argc, char **argv);        // cli/cmd_data.c: `frugal data prepare|refine`
int cmd_data_refine(int argc, char **argv); // cli/cmd_refine.c; `frugal data refine`
int cmd_tokenizer(int argc, char **argv);
int cmd_quantize(int argc, char **argv);     // cli/cmd_quantize.c
int cmd_distill(int argc, char **argv);     // cli/cmd_distill.c: `frugal distill [cache|generate]`
int cmd_convert(int argc, char **argv);     // cli/cmd_convert.c: `frugal convert`
int cmd_export(int argc, char **argv);      // cli/cmd_convert.c: `frugal export`
int cmd_scale(int argc, char **argv);       // cli/cmd_scale.c: `frugal scale`
int cmd_plot(int argc, char **argv);        // cli/cmd_plot.c: `frugal plot`
int cmd_rl(int argc, char **argv);          // cli/cmd_rl.c: `frugal rl`

// Shared helpers (cmd_train.c, cmd_eval.c, main.c).
struct fg_model;
int cli_load_config(fg_config *c, const char *spec);           // preset name or config.json path
// A frugal checkpoint, Hugging Face directory or GGUF file; *tok (may be NULL) its tokenizer or NULL.
struct fg_model *cli_open_ckpt(const char *cmd, const char *path, fg_tokenizer **tok); // prints the error itself
// Greedy-decodes n held-out problems of a built-in task (FG_TRAIN_ARITH, or FG_TRAIN_COUNTDOWN at
// level 1..FG_CD_LEVELS), drawn with seed; prints the first `show` answers. *accuracy: the share
// solved; *format_rate (may be NULL): countdown, the share of well-formed completions
// (fg_countdown_check's format_ok); NAN for arith. Returns 0 or -1 with an error (prints nothing else).
int cli_task_eval(const fg_wstore *ws, int task, int level, int n, uint64_t seed, int show, double *accuracy,
                  double *format_rate);
void cli_set_threads(int threads);                             // 0 = leave OpenMP's default
int cli_max_threads(void);                                     // 4 x this machine's cores (opts.c)
// SIGINT/SIGTERM during training (main.c): on = 1 installs handlers that ask the training loop
// to finish its step and save (fg_train_interrupt; a second signal exits at once with 128 + the
// signal); on = 0 restores the defaults. main exits 130/143 when a command failed after one.
void cli_trap_signals(int on);
// Refuses an output path that exists and is not a regular file (fg_output_check); prints the
// error and returns nonzero.
int cli_output_ok(const char *cmd, const char *path);
int cmd_version(int argc, char **argv);
// What an inference command runs (cmd_quantize.c): a checkpoint, its weights converted to
// weights_s ("f32", "bf16", "q8_0"; NULL = f32), or a quantised model file (weights_s NULL or its
// stored type), told apart by magic; a Hugging Face directory with weights_s NULL (or "bf16" over
// BF16 shards) is mapped as stored (fg_wstore_open_hf), otherwise converted like a checkpoint;
// plus the tokenizer any of them carries (NULL: byte-level).
// Returns 0, or prints the one-line error itself and returns nonzero.
typedef struct { struct fg_model *m; fg_wstore *ws; fg_tokenizer *tok; } cli_weights;
int cli_open_weights(const char *cmd, const char *path, const char *weights_s, cli_weights *w);
void cli_weights_close(cli_weights *w);
// Random weights of a config (preset or config.json) in the given weight type, for benchmarks: the
// context stretched to min_ctx positions when the config's is shorter (RoPE tables only; the
// weights and per-token work are the same model). Prints and returns -1 on error.
int cli_random_weights(const char *cmd, const char *config, int weights, int min_ctx, cli_weights *w);
int cli_kv_type(const char *cmd, const char *s); // "f32" | "bf16" | "q8_0" -> FG_F32 / FG_BF16 / FG_Q8_0, or prints and returns -1
// The demo's distillation stage (cmd_distill.c): teacher in teacher_dir, student in teacher_dir/student.
int cli_demo_distill(const char *teacher_dir, double teacher_acc, int n, int64_t steps, int64_t cache_seqs);

#endif
