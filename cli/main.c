// main.c: the frugal command line. One dispatch table; each command lives in cli/<command>.c
// and sees only include/frugal.h plus the internal headers it documents.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const fg_command COMMANDS[] = {
    {"help", "show commands, or every option of one command", cmd_help},
};

const fg_command *cli_commands(int *n) {
    *n = (int)(sizeof COMMANDS / sizeof *COMMANDS);
    return COMMANDS;
}

int cmd_help(int argc, char **argv) {
    int n;
    const fg_command *cmds = cli_commands(&n);
    if (argc > 1) {
        for (int i = 0; i < n; i++)
            if (!strcmp(cmds[i].name, argv[1])) {
                char *sub[] = {argv[1], "--help"};
                return cmds[i].run(2, sub);
            }
        fprintf(stderr, "frugal: unknown command '%s' (hint: frugal help)\n", argv[1]);
        return 2;
    }
    printf("frugal %s: train, distill, run and price DeepSeek-style models\n\nusage: frugal <command> [options]\n\ncommands:\n", FG_VERSION);
    for (int i = 0; i < n; i++) printf("  %-10s %s\n", cmds[i].name, cmds[i].summary);
    printf("\n`frugal help <command>` lists every option of a command with its default.\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return cmd_help(1, argv);
    int n;
    const fg_command *cmds = cli_commands(&n);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return cmd_help(1, argv);
    if (!strcmp(argv[1], "--version")) { printf("frugal %s\n", FG_VERSION); return 0; }
    for (int i = 0; i < n; i++)
        if (!strcmp(cmds[i].name, argv[1])) return cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "frugal: unknown command '%s' (hint: frugal help lists the commands)\n", argv[1]);
    return 2;
}
