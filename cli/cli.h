/*
 * The imgstore command line: argv in, store calls, results out (stdout: data, stderr: one-line
 * diagnostics), exit codes from one table. Each subcommand lives in its own cmd_*.c file.
 */
#ifndef IMGSTORE_CLI_H
#define IMGSTORE_CLI_H

#include "common/common.h"
#include "schema/schema.h"
#include "store/store.h"

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>

/* Exit codes (docs/cli.md). */
#define CLI_EXIT_OK     0
#define CLI_EXIT_FAIL   1
#define CLI_EXIT_USAGE  2
#define CLI_EXIT_VERIFY 3

/* Options every subcommand takes; their getopt_long values. */
enum { OPT_REPO = 1000, OPT_JSON, OPT_HELP, OPT_ACTOR, OPT_FIRST_LOCAL };

#define CLI_COMMON_OPTIONS                                                                         \
    {"repo", required_argument, NULL, OPT_REPO}, {"json", no_argument, NULL, OPT_JSON},            \
        {"help", no_argument, NULL, OPT_HELP},                                                     \
    {                                                                                              \
        "actor", required_argument, NULL, OPT_ACTOR                                                \
    }

typedef struct {
    const char *repo;  /* --repo, else IMGSTORE_REPO, else the default data directory */
    const char *actor; /* --actor, else IMGSTORE_ACTOR, else $USER@host */
    bool json;
    const char *command; /* subcommand name, for messages */
} cli_ctx;

typedef int (*cli_command_fn)(cli_ctx *ctx, int argc, char **argv);

int cli_cmd_init(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_push(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_pull(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_ls(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_show(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_deploy(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_rollback(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_history(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_diff(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_verify(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_fsck(cli_ctx *ctx, int argc, char **argv);

/**
 * Handle a common option (returns true if `opt` was one). Sets *exit_out to CLI_EXIT_OK
 * after printing --help, or CLI_EXIT_USAGE for an unknown option ('?').
 */
bool cli_common_option(cli_ctx *ctx, int opt, const char *arg, int *exit_out);

/** Parse only the common options. Returns the index of the first positional argument, or
 * -1 with *code set when the command must end now (after --help, or a usage error). */
int cli_parse_common(cli_ctx *ctx, int argc, char **argv, int *code);

/** Print the usage of ctx->command to `out`. */
void cli_usage(const cli_ctx *ctx, FILE *out);

/** One line "imgstore: <message>" to stderr for a usage error; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** One line "imgstore <command>: <last error message>" to stderr; returns the exit code. */
int cli_fail(const cli_ctx *ctx, int err);

/** The one table from error codes to exit codes. */
int cli_exit_code(int err);

/** Open the store named by ctx (creating it when `create`). */
int cli_open_store(imgstore_store **out, const cli_ctx *ctx, bool create);

/** The actor recorded for writes: --actor, else $IMGSTORE_ACTOR, else $USER@host (free()). */
char *cli_actor(const cli_ctx *ctx);

/** Split "NAME@VERSION" (version NULL when absent). Both are freed with free(). */
int cli_split_ref(char **name_out, char **version_out, const char *ref);

/** Print a JSON value (stealing the reference) on stdout, one document, newline-terminated. */
int cli_print_json(json_t *value);

/** Human size: "14.2 MiB". */
const char *cli_human_size(char *buf, size_t cap, uint64_t bytes);

/* Progress bar on stderr, only when it is a terminal and output is not --json. */
typedef struct {
    const char *label;
    bool enabled;
    double start, last_draw;
} cli_progress;

void cli_progress_init(cli_progress *p, const char *label, bool json);
void cli_progress_update(uint64_t done, uint64_t total, void *payload); /* imgstore_progress_fn */
void cli_progress_done(cli_progress *p);

#endif
