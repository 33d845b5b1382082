// cli.h: shared pieces of the command line (dispatch table entry, option parsing helpers).
#ifndef FG_CLI_H
#define FG_CLI_H

#include "frugal.h"

typedef struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv); // argv[0] is the command name; returns the exit code
} fg_command;

const fg_command *cli_commands(int *n);
int cmd_help(int argc, char **argv);

#endif
