/*
 * imgstore's entry point: picks the subcommand, prints help, and nothing else. Each
 * subcommand parses its own options in cmd_*.c.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    cli_command_fn fn;
    const char *usage;
} command;

static const command commands[] = {
    {"init", cli_cmd_init, "init [--repo PATH]\n  Create a store (a bare git repository)."},
    {"push", cli_cmd_push,
     "push FILE... [--name N] [--version V] [--label K=V]... [--source URL@COMMIT]\n"
     "             [--kind KIND] [--json]\n"
     "  Store the files as one immutable image version and print NAME@VERSION.\n"
     "  --name defaults to the first file's name without its extension; without --version\n"
     "  the version is derived from the content, so re-running a CI job is idempotent.\n"
     "  --kind overrides format detection (--kind unknown stores any bytes)."},
    {"pull", cli_cmd_pull,
     "pull NAME[@VERSION] [--channel C] [--file F] [-o DIR|FILE|-] [--json]\n"
     "  Write a version's files (default: the newest version, or the one --channel runs),\n"
     "  verifying every chunk and file digest before renaming each file into place.\n"
     "  -o - streams one file to stdout (exit 3 if it fails verification)."},
    {"ls", cli_cmd_ls, "ls [NAME] [--json]\n  List images, or the versions and channels of one."},
    {"show", cli_cmd_show,
     "show NAME@VERSION [--json]\n  Print a version's manifest: files, kinds, digests, "
     "provenance."},
    {"deploy", cli_cmd_deploy,
     "deploy NAME VERSION --channel C [--reason TEXT] [--json]\n"
     "  Point a channel at an existing version."},
    {"rollback", cli_cmd_rollback,
     "rollback NAME --channel C [--to VERSION] [--reason TEXT] [--json]\n"
     "  Point a channel back at the version it ran before (again: further back)."},
    {"history", cli_cmd_history,
     "history NAME [--channel C] [--at TIME] [--json]\n"
     "  Pushes and channel moves, newest first. --at TIME (RFC 3339, or @unix-seconds)\n"
     "  prints the version that was live on the channel at that moment."},
    {"diff", cli_cmd_diff,
     "diff NAME@V1 NAME@V2 [--json]\n  Compare two versions: files, sizes, shared chunks, "
     "provenance."},
    {"verify", cli_cmd_verify,
     "verify [NAME[@VERSION]] [--json]\n"
     "  Re-hash every chunk and file against the manifests; exit 3 if anything is damaged."},
    {"key", cli_cmd_key,
     "key generate [--out FILE] [--comment C] [--passphrase-file F] | key show [FILE]\n"
     "  Make an Ed25519 signing key (default ~/.config/imgstore/key, mode 0600, and .pub),\n"
     "  or print a key's public line and id. $IMGSTORE_KEY_PASSPHRASE encrypts it."},
    {"trust", cli_cmd_trust,
     "trust show | trust add-key|remove-key ROLE PUBKEY | trust set-threshold ROLE N |\n"
     "      trust set-channel-ttl SECONDS    [--key ROOTKEY]... [--json]\n"
     "  Show or change the trust policy; a change must be signed by root keys meeting the\n"
     "  current root threshold. ROLE: root, release, deploy."},
    {"sign", cli_cmd_sign,
     "sign NAME@VERSION [--key FILE]... [--json]\n"
     "  Add release signatures to a stored version until its release threshold is met."},
    {"fsck", cli_cmd_fsck,
     "fsck [--json]\n  Check the store's structure without reading image bytes; exit 3 on "
     "problems."},
    {"gc", cli_cmd_gc,
     "gc [--all] [--json]\n"
     "  Pack loose objects (chunks stored, the rest with deltas) and remove the loose copies;\n"
     "  --all also combines every pack into two. Safe while the store is in use; a second\n"
     "  gc skips. Pushes run it by themselves past $IMGSTORE_GC_AUTO (gc.auto, 6700) loose\n"
     "  objects (docs/format.md, Packing)."},
    {"serve", cli_cmd_serve,
     "serve [--listen ADDR:PORT] [--config FILE] [--tls-cert PEM --tls-key PEM] [--set K=V]...\n"
     "  Serve the store over HTTP (docs/api.md); default 127.0.0.1:8080. Settings and the\n"
     "  config file format: docs/server.md. Stops, draining requests, on SIGTERM or SIGINT."},
    {"watch", cli_cmd_watch,
     "watch NAME --channel C --server URL [--json]\n"
     "  Follow a channel on a server (long-poll): one line per move,\n"
     "  \"NAME CHANNEL SEQUENCE VERSION ACTION\", each state verified. Ends on SIGINT/SIGTERM."},
    {"token", cli_cmd_token,
     "token create --scope read|push|deploy|admin[,...] [--name N] [--json]\n"
     "  Print a new bearer token for imgstore serve, once, and the config line granting it."},
};

static void print_help(FILE *out)
{
    fprintf(out,
            "usage: imgstore COMMAND [OPTIONS]\n\n"
            "Immutable, verified delivery of unikernel and Linux boot images, stored in git.\n\n"
            "Commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %s\n", commands[i].usage);
    fprintf(out, "\nEvery command takes --repo PATH (default: $IMGSTORE_REPO, else\n"
                 "~/.local/share/imgstore/store.git), --actor NAME (default: $IMGSTORE_ACTOR,\n"
                 "else user@host) and --help. Exit codes: 0 ok, 1 failure, 2 usage,\n"
                 "3 verification failed.\n"
                 "Signing commands (init, push, sign, deploy, rollback, trust) take --key FILE\n"
                 "(repeatable) or --agent; default $IMGSTORE_KEY, else ~/.config/imgstore/key.\n"
                 "push, pull, ls, show, history, deploy, rollback and verify run against a\n"
                 "server with --server URL (or $IMGSTORE_SERVER, or server = URL in\n"
                 "~/.config/imgstore/config), with --token T (or $IMGSTORE_TOKEN, token = T);\n"
                 "everything the server hands out is verified here (docs/cli.md, Remote mode).\n");
}

void cli_usage(const cli_ctx *ctx, FILE *out)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, ctx->command) == 0)
            fprintf(out, "usage: imgstore %s\n", commands[i].usage);
    }
}

int main(int argc, char **argv)
{
    cli_ctx ctx = {0};

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("imgstore %s\n", IMGSTORE_VERSION);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, argv[1]) == 0) {
            ctx.command = commands[i].name;
            return commands[i].fn(&ctx, argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "imgstore: unknown command '%s' (see imgstore --help)\n", argv[1]);
    return CLI_EXIT_USAGE;
}
