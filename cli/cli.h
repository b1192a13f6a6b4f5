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
enum {
    OPT_REPO = 1000,
    OPT_JSON,
    OPT_HELP,
    OPT_ACTOR,
    OPT_KEY,
    OPT_AGENT,
    OPT_QUIET,
    OPT_FIRST_LOCAL
};

#define CLI_COMMON_OPTIONS                                                                         \
    {"repo", required_argument, NULL, OPT_REPO}, {"json", no_argument, NULL, OPT_JSON},            \
        {"help", no_argument, NULL, OPT_HELP}, {"key", required_argument, NULL, OPT_KEY},          \
        {"agent", no_argument, NULL, OPT_AGENT}, {"quiet", no_argument, NULL, OPT_QUIET},          \
    {                                                                                              \
        "actor", required_argument, NULL, OPT_ACTOR                                                \
    }

#define CLI_KEYS_MAX 8

typedef struct {
    const char *repo;  /* --repo, else IMGSTORE_REPO, else the default data directory */
    const char *actor; /* --actor, else IMGSTORE_ACTOR, else $USER@host */
    bool json;
    const char *command;                 /* subcommand name, for messages */
    const char *key_paths[CLI_KEYS_MAX]; /* --key FILE, in order */
    size_t key_path_count;
    bool agent; /* --agent: sign with the ssh-agent's first Ed25519 key */
    bool quiet; /* -q, --quiet: no progress on stderr */
} cli_ctx;

/* Settings a command parsed from argv; NULL: environment, then config file. */
typedef struct {
    const char *server, *token, *pin;
} cli_remote_args;

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
int cli_cmd_reindex(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_gc(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_key(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_trust(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_sign(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_serve(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_token(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_agent(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_prune(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_which(cli_ctx *ctx, int argc, char **argv);
int cli_cmd_version(cli_ctx *ctx, int argc, char **argv);

/**
 * The hidden `imgstore __complete images|channels NAME|versions NAME` of the shell
 * completions (contrib/completion): names from the store's trees and version index, one a
 * line, never a walk of all versions. Prints nothing (exit 0) when there is no store.
 */
int cli_complete_store(cli_ctx *ctx, int argc, char **argv);

/** Generate a key, save it unencrypted at `path` (0600) with `path`.pub beside it. */
int cli_key_create(imgstore_sign_key **out, const char *path, const char *comment);

/**
 * Handle a common option (returns true if `opt` was one). Sets *exit_out to CLI_EXIT_OK
 * after printing --help, or CLI_EXIT_USAGE for an unknown option ('?').
 */
bool cli_common_option(cli_ctx *ctx, int opt, const char *arg, int *exit_out);

/**
 * The next option of a command's own, after handling the common ones (and, with `remote`,
 * the remote ones). -1 at the end of the options, or when the command must end now: then
 * *code (which the caller sets to -1 first) is the exit code. In local mode, a remote option
 * given is a usage error.
 */
int cli_next_option(cli_ctx *ctx, int argc, char **argv, const char *short_options,
                    const struct option *options, cli_remote_args *remote, int *code);

/** Parse only the common options. Returns the index of the first positional argument, or
 * -1 with *code set when the command must end now (after --help, or a usage error). */
int cli_parse_common(cli_ctx *ctx, int argc, char **argv, int *code);

/** Print the usage of ctx->command to `out`. */
void cli_usage(const cli_ctx *ctx, FILE *out);

/** One line "imgstore: <message>" to stderr for a usage error; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** One line "imgstore <command>: <last error message>" to stderr; returns the exit code. */
int cli_fail(const cli_ctx *ctx, int err);

/**
 * `text` as it may be printed on a terminal (imgstore_schema_text_escape): stored free texts
 * were checked when written, but old stores, a git-level writer or a server may hold
 * anything, and an escape sequence must not clear or rewrite the user's screen (issue #10).
 * Borrowed: valid until the eighth next call. NULL gives "".
 */
const char *cli_safe(const char *text);

/** The one table from error codes to exit codes. */
int cli_exit_code(int err);

/** Open the store named by ctx (creating it when `create`). */
int cli_open_store(imgstore_store **out, const cli_ctx *ctx, bool create);

/** The actor recorded for writes: --actor, else $IMGSTORE_ACTOR, else $USER@host (free()). */
char *cli_actor(const cli_ctx *ctx);

/** Split "NAME@VERSION" (version NULL when absent). Both are freed with free(). */
int cli_split_ref(char **name_out, char **version_out, const char *ref);

/** fsync the directory holding `path`, so a rename into it is durable. */
int cli_sync_dir_of(const char *path);

/**
 * The one NAME@VERSION argument of show and sign: exactly one positional argument from
 * `first` on, with a version. -1 when fine (both out-parameters set, free() them), else the
 * exit code after a one-line error.
 */
int cli_version_arg(const cli_ctx *ctx, int argc, char **argv, int first, char **name_out,
                    char **version_out);

/** Print the outcome of sign as both modes do: signatures against the release threshold. */
int cli_print_signed(const cli_ctx *ctx, const char *name, const char *version,
                     const imgstore_trust_status *status);

/** Print a JSON value (stealing the reference) on stdout, one document, newline-terminated. */
int cli_print_json(json_t *value);

/* ---- signing keys (keys.c) ------------------------------------------------------------ */

/* The keys an operation signs with, loaded from --key, --agent, $IMGSTORE_KEY or the
 * default key file, in that order of preference (docs/cli.md, "Keys"). */
typedef struct {
    imgstore_sign_key *keys[CLI_KEYS_MAX];
    size_t count;
} cli_signers;

/** Load the signing keys ctx names. At least one, or IMGSTORE_ENOTFOUND saying how to make
 * one. Passphrases come from $IMGSTORE_KEY_PASSPHRASE, else a prompt on a terminal. */
int cli_signers_load(cli_signers *out, const cli_ctx *ctx);

/** The loaded keys as the store takes them (borrowed from `signers`). */
imgstore_signers cli_signers_view(const cli_signers *signers);

/** Wipe and free the keys. */
void cli_signers_free(cli_signers *signers);

/** The default private key path: $IMGSTORE_KEY, else $XDG_CONFIG_HOME/imgstore/key, else
 * ~/.config/imgstore/key (free()). */
char *cli_default_key_path(void);

/** Read a public key given as an OpenSSH line or the path of a .pub file. */
int cli_pubkey_arg(imgstore_sign_pubkey *out, const char *arg);

/* ---- remembered channel sequences (seen.c) -------------------------------------------- */

/** The last component of a path (borrowed from `path`). */
const char *cli_base_name(const char *path);

/**
 * The image name a file gives when --name is absent (docs/cli.md, push): its base name without
 * known image extensions and without a trailing version, lower-cased, other bytes than
 * a-z 0-9 . _ - made '-' ("build/app.xen" -> "app", "memtest86+ia32.iso" -> "memtest86-ia32",
 * "vmlinuz-6.1.0-55-cloud-amd64" -> "vmlinuz" and *version_out "6.1.0-55-cloud-amd64").
 * *version_out is NULL when the name has no trailing version; free() both. 0, or
 * IMGSTORE_EINVALID (no legal name: the message says to pass --name) or IMGSTORE_ERROR.
 */
int cli_default_image_name(char **name_out, char **version_out, const char *path);

/** Human size: "14.2 MiB". */
const char *cli_human_size(char *buf, size_t cap, uint64_t bytes);

/* Progress on stderr: bytes, percent, rate and time left, only when stderr is a terminal and
 * neither --json nor --quiet was given (docs/cli.md, "Progress"). */
typedef struct {
    const char *label;
    bool enabled;
    double start, last_draw;
} cli_progress;

/** Start a progress line for `label` (borrowed); `ctx` NULL: never drawn. */
void cli_progress_init(cli_progress *p, const char *label, const cli_ctx *ctx);
void cli_progress_update(uint64_t done, uint64_t total, void *payload); /* imgstore_progress_fn */
void cli_progress_done(cli_progress *p);

/* ---- remote mode (remote*.c, docs/cli.md "Remote mode") -------------------------------- */

/* The options that pick and reach a server, taken by every command that has a remote mode;
 * values clear of every command's own options. */
enum { OPT_REMOTE_SERVER = 1100, OPT_REMOTE_TOKEN, OPT_REMOTE_PIN, OPT_DEEP };
enum { OPT_LIMIT = 1200, OPT_BEFORE, OPT_ALL, OPT_SORT };

#define CLI_REMOTE_OPTIONS                                                                         \
    {"server", required_argument, NULL, OPT_REMOTE_SERVER},                                        \
        {"token", required_argument, NULL, OPT_REMOTE_TOKEN},                                      \
    {                                                                                              \
        "trust-policy-sha256", required_argument, NULL, OPT_REMOTE_PIN                             \
    }

/** Handle a remote option; true if `opt` was one. */
bool cli_remote_option(cli_remote_args *args, int opt, const char *arg);

/* ls, show, diff, sign, verify and trust show: the common and remote options, and --deep. */
typedef struct {
    bool deep; /* verify --server: hash every file's bytes too */
    cli_remote_args remote;
} cli_read_args;

/** Parse them (--deep only when `deep_ok`). Returns the index of the first positional
 * argument, or -1 with *code set when the command must end now. */
int cli_read_parse(cli_ctx *ctx, int argc, char **argv, cli_read_args *args, bool deep_ok,
                   int *code);

/* ls NAME's page: --limit N, --before CURSOR (the cursor the last page ended with: a row in
 * time order, a version with --sort name), --all, --sort time|name. */
typedef struct {
    size_t limit;      /* SIZE_MAX: not given; 0: --all */
    size_t before;     /* time order: SIZE_MAX from the newest */
    const char *after; /* --sort name: the versions after this one (argv's); NULL: from the first */
    bool by_name;      /* --sort name */
} cli_ls_page;

/** ls's: the read options and the page. Returns the index of the first positional argument,
 * or -1 with *code set when the command must end now (a bad value is a usage error). */
int cli_ls_parse(cli_ctx *ctx, int argc, char **argv, cli_read_args *args, cli_ls_page *page,
                 int *code);

/* deploy, rollback, history and watch: one set of options for both modes. */
typedef struct {
    const char *channel, *reason, *to, *at;
    const char *limit, *before;   /* history only */
    imgstore_history_query query; /* history: set by cli_history_parse */
    uint64_t limit_n;
    cli_remote_args remote;
} cli_channel_args;

/** Parse them. Returns the index of the first positional argument, or -1 with *code set
 * when the command must end now (after --help, or a usage error). */
int cli_channel_parse(cli_ctx *ctx, int argc, char **argv, cli_channel_args *args, int *code);

/** history's argv (one NAME, --at only with --channel). 0, or -1 with *code set. */
int cli_history_parse(cli_ctx *ctx, int argc, char **argv, cli_channel_args *args,
                      const char **name_out, int *code);

/** When history found nothing, which name is unknown: `image_err` is what looking the image up
 * gave (IMGSTORE_ENOTFOUND: no such image). IMGSTORE_ENOTFOUND with "no image named NAME" or
 * "image NAME has no channel C", image_err if the lookup failed otherwise, else 0. */
int cli_history_unknown(int image_err, const char *name, const char *channel);

/** Print history rows (schema/api_history.schema.json "entries", borrowed) as `history`
 * does: a line each, the --json document, or with --at the state live at that time. */
int cli_print_history(const cli_ctx *ctx, const cli_channel_args *args, const char *name,
                      json_t *entries, uint64_t next);

/**
 * Whether a command runs against a server: --server in argv, else (unless --repo is given)
 * $IMGSTORE_SERVER, else (unless $IMGSTORE_REPO is set) `server =` in the user config file.
 */
bool cli_remote_selected(int argc, char **argv);

/** For commands with no remote mode (init, fsck, reindex, gc, prune, which): with a server
 * set they would quietly act on the default local store, so they ask for --repo. -1 when
 * local, else the usage exit code after a one-line error. */
int cli_local_only(const cli_ctx *ctx, int argc, char **argv);

int cli_remote_cmd_push(cli_ctx *ctx, int argc, char **argv);
int cli_remote_cmd_pull(cli_ctx *ctx, int argc, char **argv);
int cli_remote_cmd_ls(cli_ctx *ctx, int argc, char **argv);
int cli_remote_cmd_show(cli_ctx *ctx, int argc, char **argv);
int cli_remote_cmd_history(cli_ctx *ctx, int argc, char **argv);
int cli_remote_cmd_deploy(cli_ctx *ctx, int argc, char **argv);
int cli_remote_cmd_rollback(cli_ctx *ctx, int argc, char **argv);
int cli_remote_cmd_verify(cli_ctx *ctx, int argc, char **argv);
int cli_remote_cmd_sign(cli_ctx *ctx, int argc, char **argv);
int cli_remote_cmd_diff(cli_ctx *ctx, int argc, char **argv);
int cli_remote_cmd_trust(cli_ctx *ctx, int argc, char **argv);

/** Print a trust policy as `trust show` does, for local and remote mode alike. */
int cli_print_policy(const cli_ctx *ctx, const imgstore_policy *policy, const char *digest);

/** Print a version as `show` does (text, or the --json shape of docs/cli.md), for local and
 * remote mode alike. */
int cli_print_version(const cli_ctx *ctx, const imgstore_manifest *m, const char *digest,
                      const imgstore_trust_status *trust);

/* push: one set of options for both modes (cmd_push.c). */
typedef struct {
    char *name; /* --name, else derived from the first FILE; free() */
    const char *version, *kind;
    char *file_version; /* the version in the first FILE's name, when no --version; free() */
    const char *source; /* --source URL@COMMIT, checked */
    const char *labels[IMGSTORE_MAX_LABELS]; /* --label KEY=VALUE, checked */
    size_t label_count;
    char **files; /* the FILE arguments (into argv) */
    size_t file_count;
    cli_remote_args remote;
} cli_push_args;

/** Parse push's argv. 0, or -1 with *code set when the command must end now. */
int cli_push_parse(cli_ctx *ctx, int argc, char **argv, cli_push_args *args, int *code);

/** Print what push stored (NAME@VERSION, or the --json document), with a line on stderr when
 * it is pending signatures or was already stored. */
int cli_print_pushed(const cli_ctx *ctx, const imgstore_manifest *m, bool created,
                     const imgstore_trust_status *status);

/* pull: one set of options and one way of writing files for both modes (cmd_pull.c). */
typedef struct {
    const char *channel, *output, *only;
    char *name, *version; /* NAME[@VERSION]; version NULL when absent */
    cli_remote_args remote;
} cli_pull_args;

/** Parse pull's argv. 0, or -1 with *code set when the command must end now. */
int cli_pull_parse(cli_ctx *ctx, int argc, char **argv, cli_pull_args *args, int *code);
void cli_pull_args_free(cli_pull_args *args);

typedef struct {
    cli_progress *bar;
    uint64_t done, total; /* bytes of the files written before this one; of all of them */
} cli_pull_progress;

/* Where the bytes come from: the local store or a server. */
typedef struct {
    /* write one file into a staging file beside `dest` (*staged_out, free()), fsynced, once
     * every byte verified; cli_pull_write renames it into place with the version's others */
    int (*stage)(char **staged_out, const imgstore_manifest_file *file, const char *dest,
                 const cli_pull_progress *progress, void *payload);
    /* -o -: stream the only file to stdout, never a chunk that failed its check */
    int (*to_stdout)(const imgstore_manifest *m, void *payload);
    void *payload;
    /* staged files survive a failure other than a verification failure, for the next pull
     * to resume (remote mode); else every staging file goes when the pull fails */
    bool resumable;
} cli_pull_source;

/**
 * The part of pull after the manifest is verified, the same in both modes: narrow it to
 * --file, then write every file where -o says (one file to a path, else into a directory,
 * "DIR/" even before it exists, or to stdout with "-"), printing each path, or the --json
 * summary (with `sequence` when pulled from a channel). `m` may be narrowed in place.
 * All or nothing (issue #10): every file is staged and verified before any is renamed into
 * place, and a rename failing halfway puts the earlier destinations back.
 */
int cli_pull_write(const cli_ctx *ctx, const cli_pull_args *args, imgstore_manifest *m,
                   const char *digest, uint64_t sequence, const cli_pull_source *source);

/** Print a channel state as deploy and rollback do, for local and remote mode alike. */
int cli_print_state(const cli_ctx *ctx, const imgstore_channel_state *s);

/** Print the comparison of two versions as `diff` does, for local and remote mode alike. */
int cli_print_diff(const cli_ctx *ctx, const imgstore_manifest *a, const imgstore_manifest *b);
/* watch exists only remotely: it follows a server's long-poll */
int cli_cmd_watch(cli_ctx *ctx, int argc, char **argv);

#endif
