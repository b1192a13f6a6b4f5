/*
 * imgstore's entry point: picks the subcommand, prints help, and nothing else. Each
 * subcommand parses its own options in cmd_*.c.
 */
#include "cli/cli.h"
#include "imgstore_version.h" /* generated at build time: cmake/version.cmake */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a command does with the options every command accepts (CLI_COMMON_OPTIONS), so that
 * its --help says it (issue #10: every option the parser takes is in --help). */
enum {
    USES_KEY = 1u << 0,      /* signs: --key, --agent */
    USES_ACTOR = 1u << 1,    /* records who acts: --actor */
    USES_JSON = 1u << 2,     /* --json */
    USES_REMOTE = 1u << 3,   /* --server, --token, --trust-policy-sha256 */
    USES_PROGRESS = 1u << 4, /* draws progress on a terminal: -q, --quiet */
};

typedef struct {
    const char *name;
    cli_command_fn fn;
    const char *synopsis; /* one line of imgstore --help */
    const char *help;     /* what it does, its own options, an example */
    unsigned uses;
} command;

#define WRITES (USES_KEY | USES_ACTOR | USES_JSON)

static const command commands[] = {
    {"init", cli_cmd_init, "init [--repo PATH] [--key FILE]",
     "Create a store (a bare git repository with trust policy 1, naming the key in every\n"
     "role) and print its path. Without --key/--agent/$IMGSTORE_KEY the default key is used,\n"
     "created (mode 0600, with .pub) when absent. Local only: with a server set, give --repo.\n"
     "\n"
     "Example:\n"
     "  imgstore init --repo /srv/imgstore/store.git",
     WRITES},
    {"push", cli_cmd_push,
     "push FILE... [--name N] [--version V] [--label K=V]... [--source URL@COMMIT] [--kind KIND]",
     "Store the files as one immutable version and print NAME@VERSION.\n"
     "\n"
     "  --name N            image name; default: made from the first file's name\n"
     "  --version V         version; default: the version in the first file's name, else\n"
     "                      c- and 16 hex digits of the files' names and bytes\n"
     "  --label K=V         a label (repeatable); part of the immutable manifest\n"
     "  --source URL@COMMIT\n"
     "                      where the image was built from\n"
     "  --kind KIND         override format detection for every file: unikernel, kernel,\n"
     "                      initrd, disk, efi, archive, config, cmdline, unknown\n"
     "\n"
     "Re-pushing the same bytes, labels and source is a no-op; anything else under an existing\n"
     "version is refused (exit 1): versions are immutable.\n"
     "\n"
     "Example:\n"
     "  imgstore push --name app --version 1.4.0 --label ci.job=812 \\\n"
     "      --source https://git.example/app@3f2a9c0 build/app.xen",
     WRITES | USES_REMOTE},
    {"pull", cli_cmd_pull, "pull NAME[@VERSION] [--channel C] [--file F] [-o DIR|FILE|-]",
     "Write a version's files (default: the newest version), verifying every chunk and file\n"
     "before any of them is renamed into place: all of the version's files, or none.\n"
     "\n"
     "  --channel C         the version channel C runs (its signed state is checked)\n"
     "  --file F            only the file F of the version\n"
     "  -o, --output DIR|FILE|-\n"
     "                      a directory (default .), a file name for a one-file version, or -\n"
     "                      for stdout (exit 3 if the stream fails verification)\n"
     "\n"
     "Example:\n"
     "  imgstore pull app --channel prod -o /srv/images/",
     USES_JSON | USES_REMOTE | USES_PROGRESS},
    {"ls", cli_cmd_ls, "ls [NAME] [--limit N] [--before CURSOR] [--all] [--sort time|name]",
     "List images (versions, newest, what each channel runs), or the versions of NAME,\n"
     "newest first or by name, a page at a time.\n"
     "\n"
     "  --limit N           a page of N versions (default: a screenful on a terminal, else all)\n"
     "  --before CURSOR     the page after the one that ended at CURSOR (stderr names it): a\n"
     "                      row, or with --sort name a version\n"
     "  --all               every version\n"
     "  --sort time|name    newest first (the default), or by name in bytewise order (1.10\n"
     "                      before 1.9, as the OCI tag list)\n"
     "\n"
     "Example:\n"
     "  imgstore ls app --json\n"
     "  imgstore ls app --sort name --limit 50",
     USES_JSON | USES_REMOTE},
    {"show", cli_cmd_show, "show NAME@VERSION",
     "Print a version's manifest: files, kinds, digests, provenance, release signatures.\n"
     "\n"
     "Example:\n"
     "  imgstore show app@1.4.0",
     USES_JSON | USES_REMOTE},
    {"deploy", cli_cmd_deploy, "deploy NAME VERSION --channel C [--reason TEXT]",
     "Point channel C at an existing, fully signed version (signed with deploy keys).\n"
     "\n"
     "  --channel C         the channel to move (required)\n"
     "  --reason TEXT       why, recorded in the state (one line of printable text)\n"
     "\n"
     "Example:\n"
     "  imgstore deploy app 1.4.0 --channel prod --reason \"release 1.4\"",
     WRITES | USES_REMOTE},
    {"rollback", cli_cmd_rollback, "rollback NAME --channel C [--to VERSION] [--reason TEXT]",
     "Point channel C back at the version it ran before (again: further back).\n"
     "\n"
     "  --channel C         the channel to move (required)\n"
     "  --to VERSION        this version instead of the one before\n"
     "  --reason TEXT       why, recorded in the state and the commit (one line of text)\n"
     "\n"
     "Example:\n"
     "  imgstore rollback app --channel prod --reason \"boot loop on 1.4.0\"",
     WRITES | USES_REMOTE},
    {"history", cli_cmd_history, "history NAME [--channel C] [--at TIME] [--limit N] [--before OP]",
     "Pushes, signatures and channel moves of an image, newest first.\n"
     "\n"
     "  --channel C         only the moves of channel C\n"
     "  --at TIME           with --channel: the version live at TIME (RFC 3339 UTC like\n"
     "                      2026-11-25T03:12:00Z, or @unix-seconds)\n"
     "  --limit N           at most N entries (stderr says how to ask for older ones)\n"
     "  --before OP         entries older than operation OP (the \"next\" a page ended with)\n"
     "\n"
     "Example:\n"
     "  imgstore history app --channel prod --at 2026-11-25T03:12:00Z",
     USES_JSON | USES_REMOTE},
    {"diff", cli_cmd_diff, "diff NAME@V1 NAME@V2",
     "Compare two versions: files, sizes, shared chunks, provenance.\n"
     "\n"
     "Example:\n"
     "  imgstore diff app@1.3.2 app@1.4.0",
     USES_JSON | USES_REMOTE},
    {"verify", cli_cmd_verify, "verify [NAME[@VERSION]] [--deep]",
     "Re-hash every chunk and file against the manifests and check every signature, channel\n"
     "state and the policy chain; exit 3 if anything fails.\n"
     "\n"
     "  --deep              with --server: also download and hash every file (locally the\n"
     "                      bytes are always read)\n"
     "\n"
     "Example:\n"
     "  imgstore verify app --deep --server https://images.example",
     USES_JSON | USES_REMOTE},
    {"key", cli_cmd_key,
     "key generate [--out FILE] [--comment C] [--passphrase-file F] | key show [FILE]",
     "Make an Ed25519 signing key and FILE.pub (mode 0600), or print the public line and id\n"
     "of the key the other commands sign with. $IMGSTORE_KEY_PASSPHRASE encrypts it.\n"
     "\n"
     "  --out FILE          where to write the key (default ~/.config/imgstore/key)\n"
     "  --comment C         the public key's comment (default: the actor)\n"
     "  --passphrase-file F\n"
     "                      encrypt the key with the passphrase in F (Argon2id)\n"
     "\n"
     "Example:\n"
     "  imgstore key generate --out ci.key --comment ci@build-7",
     WRITES},
    {"trust", cli_cmd_trust,
     "trust show | trust add-key|remove-key ROLE PUBKEY | trust set-threshold ROLE N |\n"
     "      trust set-channel-ttl SECONDS",
     "Show or change the trust policy; a change is signed with root keys (--key) meeting the\n"
     "current root threshold. ROLE: root, release, deploy; PUBKEY: a .pub file or a line.\n"
     "Only 'trust show' runs against a server.\n"
     "\n"
     "Example:\n"
     "  imgstore trust add-key release ci.key.pub --key root.key",
     WRITES | USES_REMOTE},
    {"sign", cli_cmd_sign, "sign NAME@VERSION [--key FILE]...",
     "Add release signatures to a stored version until its release threshold is met.\n"
     "\n"
     "Example:\n"
     "  imgstore sign app@1.4.0 --key release2.key",
     WRITES | USES_REMOTE},
    {"fsck", cli_cmd_fsck, "fsck",
     "Check the store's structure without reading image bytes; exit 3 on problems. Local\n"
     "only: with a server set, give --repo.\n"
     "\n"
     "Example:\n"
     "  imgstore fsck --repo /srv/imgstore/store.git",
     USES_JSON},
    {"reindex", cli_cmd_reindex, "reindex [--check]",
     "Rebuild the store's indexes (docs/format.md) from its history and manifests, in one\n"
     "signed commit; nothing when they already match. Needed once on a store an older\n"
     "imgstore wrote; fsck says when.\n"
     "\n"
     "  --check             only compare: exit 3 if they differ\n"
     "\n"
     "Example:\n"
     "  imgstore reindex --check || imgstore reindex",
     WRITES},
    {"gc", cli_cmd_gc, "gc [--all] [--prune[=now|DAYS]]",
     "Pack loose objects (chunks stored, the rest with deltas) and remove the loose copies.\n"
     "Safe while the store is in use; a second gc skips. Pushes run it by themselves past\n"
     "$IMGSTORE_GC_AUTO (else gc.auto, else 6700) loose objects (docs/format.md, Packing).\n"
     "Local only: with a server set, give --repo.\n"
     "\n"
     "  --all               also combine every pack into two\n"
     "  --prune[=now|DAYS]  also remove objects no ref reaches that nothing wrote or reused\n"
     "                      for DAYS (default 14, git's gc.pruneExpire), loose or packed:\n"
     "                      after a prune's history cut, the pruned versions' bytes\n"
     "                      (docs/format.md, Retention)\n"
     "\n"
     "Example:\n"
     "  imgstore gc --all",
     USES_JSON},
    {"prune", cli_cmd_prune,
     "prune [NAME] --keep N [--older-than DAYS] [--dry-run] [--keep-history | --archive FILE]",
     "Remove old versions in one signed commit (a release or root key): all but the newest N\n"
     "of each image (or of NAME), except what a channel runs, what its rollback stack holds,\n"
     "and what it ran within the rollback window (--older-than DAYS, else 30 days). Prints\n"
     "what goes, what a rule keeps and why, and what it frees. Then cuts the history: a new\n"
     "signed root commit carries the tree, the old channel moves and policy steps (in\n"
     "archive/), so that 'imgstore gc --prune' frees the removed versions' bytes; clones made\n"
     "before must fetch and reset. Local only. Never during an incident (docs/runbook.md).\n"
     "\n"
     "  --keep N            the newest N versions of each image stay (at least 1)\n"
     "  --older-than DAYS   only versions created more than DAYS ago go; also the window\n"
     "  --dry-run           print the plan and what the cut would archive, change nothing\n"
     "  --keep-history      no cut: history keeps the removed versions (and their bytes)\n"
     "  --archive FILE      first write the history the cut drops as a git bundle\n"
     "                      ('git clone FILE' restores it)\n"
     "\n"
     "Example:\n"
     "  imgstore prune app --keep 20 --older-than 90 --dry-run",
     WRITES},
    {"which", cli_cmd_which, "which FILE|SHA256 [--no-history]",
     "Every image and version that held these bytes (FILE is hashed first), whether it is\n"
     "still stored or was pruned, and the channels that run it, can roll back to it, or ran\n"
     "it. Exit 1 when no version ever held them. Local only.\n"
     "\n"
     "  --no-history        skip the channels' histories (only what they run and stack now)\n"
     "\n"
     "Example:\n"
     "  imgstore which build/app.xen",
     USES_JSON},
    {"serve", cli_cmd_serve,
     "serve [--listen ADDR:PORT] [--config FILE] [--tls-cert PEM --tls-key PEM] [--set K=V]...\n"
     "       [--mirror-of URL [--trust-policy-sha256 HEX]]",
     "Serve the store over HTTP (docs/api.md), signing what is pushed and deployed through it\n"
     "with --key; stops, draining requests, on SIGTERM or SIGINT. With --mirror-of, serve a\n"
     "read replica of another store instead: it follows the primary by git fetch, verifies\n"
     "everything new before it serves it, and refuses writes (docs/server.md).\n"
     "\n"
     "  --listen ADDR:PORT  where to listen (default 127.0.0.1:8080; port 0: any free one)\n"
     "  --config FILE       the config file (docs/server.md)\n"
     "  --tls-cert PEM      serve HTTPS with this certificate chain ...\n"
     "  --tls-key PEM       ... and this private key\n"
     "  --set K=V           any config key, as in the file (repeatable)\n"
     "  --mirror-of URL     be a read replica of the store at URL: a path, file://, git://,\n"
     "                      ssh:// or https:// git remote (config mirror_of)\n"
     "  --trust-policy-sha256 HEX\n"
     "                      the primary's policy 1 must hash to HEX (else trusted on the\n"
     "                      first sync; config mirror_policy_sha256)\n"
     "\n"
     "Example:\n"
     "  imgstore serve --listen 0.0.0.0:8080 --config /etc/imgstore/serve.conf\n"
     "  imgstore serve --repo /srv/replica.git --mirror-of git://primary/store.git",
     USES_KEY | USES_ACTOR},
    {"watch", cli_cmd_watch, "watch NAME --channel C --server URL",
     "Follow a channel on a server (long-poll): one line per move,\n"
     "\"NAME CHANNEL SEQUENCE VERSION ACTION\", each state verified; retries while the\n"
     "server is unreachable, ends on SIGINT or SIGTERM.\n"
     "\n"
     "  --channel C         the channel to follow (required)\n"
     "\n"
     "Example:\n"
     "  imgstore watch app --channel prod --server https://images.example",
     USES_JSON | USES_REMOTE},
    {"agent", cli_cmd_agent,
     "agent --image N --channel C --dir DIR --server URL [--exec-restart CMD]\n"
     "      [--health CMD|URL] [--health-timeout 60s] [--keep 3] | agent status --dir DIR |\n"
     "      agent reports --image N --channel C",
     "Follow channel C on a server and replace the whole image on this host when it moves\n"
     "(docs/agent.md): pull the version verified into DIR/versions/V (all files or none),\n"
     "flip DIR/current (DIR/previous keeps the one before), run the restart hook, then the\n"
     "health check; when it fails within the timeout, flip back, restart, and roll the channel\n"
     "back signed (with --key, or the server's key with a deploy-scope token) or report it.\n"
     "Retries while the server is away; a restart after a crash finishes a half-done swap.\n"
     "\n"
     "  --image N           the image to run\n"
     "  --channel C         the channel to follow\n"
     "  --dir DIR           the state directory (versions/, current, previous, state.json)\n"
     "  --exec-restart CMD  run (sh -c) after each flip; IMGSTORE_VERSION, IMGSTORE_KERNEL,\n"
     "                      IMGSTORE_INITRD, IMGSTORE_CMDLINE, IMGSTORE_UNIKERNEL... set\n"
     "  --health CMD|URL    healthy when CMD exits 0, or the URL answers 2xx (retried)\n"
     "  --health-timeout T  how long a new version has to become healthy (default 60s)\n"
     "  --keep N            old versions kept besides current and previous (default 3)\n"
     "  --host NAME         this host's name in reports (default: the hostname); a token\n"
     "                      bound to it (token create --host) makes them verified\n"
     "  --once              one round (wait at most 1 s for a move), then exit\n"
     "  --wait T            long-poll length, at most 60s (default 60s)\n"
     "\n"
     "agent status --dir DIR [--json]: what runs, since when, the last check and error.\n"
     "agent reports --image N --channel C [--json]: what each host reported (unsigned),\n"
     "and whether its host name was verified.\n"
     "\n"
     "Example:\n"
     "  imgstore agent --server https://images.example --image app --channel prod \\\n"
     "      --dir /var/lib/imgstore/app --exec-restart 'systemctl restart app-vm' \\\n"
     "      --health http://127.0.0.1:8080/healthz --health-timeout 60s",
     USES_KEY | USES_ACTOR | USES_JSON | USES_REMOTE},
    {"token", cli_cmd_token, "token create --scope SCOPES [--name N] [--host HOST [--image N]]",
     "Print a new bearer token for imgstore serve, once, and the config line granting it.\n"
     "A token bound to a host posts agent reports for that host only (docs/agent.md).\n"
     "\n"
     "  --scope SCOPES      read, push, deploy, report, admin, comma-separated (required)\n"
     "  --name N            the name the server logs and commits for it (default token)\n"
     "  --host HOST         bind its reports to this host: the server marks them verified\n"
     "                      and refuses (403) reports for any other host\n"
     "  --image N           with --host: and to this image's channels\n"
     "\n"
     "Example:\n"
     "  imgstore token create --scope read,report --name agent-web-1 --host web-1",
     USES_JSON},
    {"version", cli_cmd_version, "version",
     "Print imgstore's version: the release, and the git commit it was built from when the\n"
     "build had one (as imgstore --version does).\n"
     "\n"
     "Example:\n"
     "  imgstore version --json",
     USES_JSON},
};

#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

static void print_help(FILE *out)
{
    fprintf(out,
            "usage: imgstore COMMAND [OPTIONS]\n\n"
            "Immutable, verified delivery of unikernel and Linux boot images, stored in git.\n\n"
            "Commands (imgstore COMMAND --help for every option and an example):\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %s\n", commands[i].synopsis);
    fprintf(out,
            "\nEvery command takes --repo PATH (default: $IMGSTORE_REPO, else\n"
            "~/.local/share/imgstore/store.git), --actor NAME (default: $IMGSTORE_ACTOR,\n"
            "else user@host) and --help. Exit codes: 0 ok, 1 failure, 2 usage,\n"
            "3 verification failed.\n"
            "Signing commands (init, push, sign, deploy, rollback, trust, prune) take\n"
            "--key FILE (repeatable) or --agent; default $IMGSTORE_KEY, else\n"
            "~/.config/imgstore/key.\n"
            "push, pull, ls, show, diff, history, sign, deploy, rollback, verify, trust show,\n"
            "watch and agent run against a server with --server URL (or $IMGSTORE_SERVER, or\n"
            "server = URL in ~/.config/imgstore/config), with --token T (or\n"
            "$IMGSTORE_TOKEN, token = T); everything the server hands out is verified here\n"
            "(docs/cli.md, Remote mode). push and pull draw progress on a terminal\n"
            "(-q, --quiet: none). imgstore --version prints the version; man imgstore-COMMAND\n"
            "has each command's page.\n");
}

/* The options every command accepts, said as they apply to `c`. */
static void print_common_options(const command *c, FILE *out)
{
    char unused[96] = "";

    fprintf(out, "\nCommon options:\n"
                 "  --repo PATH         the store (default $IMGSTORE_REPO, else\n"
                 "                      ~/.local/share/imgstore/store.git)\n");
    if (c->uses & USES_JSON)
        fprintf(out, "  --json              machine-readable output (shapes: docs/cli.md)\n");
    if (c->uses & USES_KEY)
        fprintf(out, "  --key FILE          a signing key, repeatable (default $IMGSTORE_KEY,\n"
                     "                      else ~/.config/imgstore/key)\n"
                     "  --agent             sign with the ssh-agent's first Ed25519 key\n");
    if (c->uses & USES_ACTOR)
        fprintf(out, "  --actor NAME        who acts, recorded in commits (default\n"
                     "                      $IMGSTORE_ACTOR, else user@host)\n");
    if (c->uses & USES_PROGRESS)
        fprintf(out, "  -q, --quiet         no progress line on stderr (drawn only on a terminal,\n"
                     "                      and never with --json)\n");
    if (!(c->uses & USES_JSON))
        strcat(unused, ", --json");
    if (!(c->uses & USES_KEY))
        strcat(unused, ", --key FILE, --agent");
    if (!(c->uses & USES_ACTOR))
        strcat(unused, ", --actor NAME");
    if (!(c->uses & USES_PROGRESS))
        strcat(unused, ", -q, --quiet");
    if (*unused)
        fprintf(out, "  %s: taken by every command, unused by %s\n", unused + 2, c->name);
    fprintf(out, "  --help              this help\n");
    if (c->uses & USES_REMOTE)
        fprintf(out, "\nAgainst a server (docs/cli.md, Remote mode):\n"
                     "  --server URL        imgstore serve at URL (else $IMGSTORE_SERVER, else\n"
                     "                      server = URL in ~/.config/imgstore/config)\n"
                     "  --token T           bearer token (else $IMGSTORE_TOKEN, else token = T)\n"
                     "  --trust-policy-sha256 HEX\n"
                     "                      pin the store's policy 1 instead of trusting the\n"
                     "                      first answer\n");
}

void cli_usage(const cli_ctx *ctx, FILE *out)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, ctx->command) != 0)
            continue;
        fprintf(out, "usage: imgstore %s\n\n%s\n", commands[i].synopsis, commands[i].help);
        print_common_options(&commands[i], out);
    }
}

int cli_cmd_version(cli_ctx *ctx, int argc, char **argv)
{
    int code, first = cli_parse_common(ctx, argc, argv, &code);

    if (first < 0)
        return code;
    if (first < argc)
        return cli_usage_error(ctx, "takes no arguments");
    if (ctx->json)
        return cli_print_json(json_pack("{s:s, s:s}", "version", IMGSTORE_VERSION, "git",
                                        IMGSTORE_GIT_DESCRIBE))
                   ? cli_fail(ctx, IMGSTORE_ERROR)
                   : CLI_EXIT_OK;
    printf("imgstore %s%s%s%s\n", IMGSTORE_VERSION, *IMGSTORE_GIT_DESCRIBE ? " (git " : "",
           IMGSTORE_GIT_DESCRIBE, *IMGSTORE_GIT_DESCRIBE ? ")" : "");
    return CLI_EXIT_OK;
}

/* ---- __complete: what the shell completions ask (contrib/completion) ------------------- */

/* The options of a command's --help, one a line with the value it takes ("--channel C",
 * "-o DIR|FILE|-"): every line of the help that starts with an option column. Read from the
 * help text itself so that completion, man pages and --help never disagree. */
static int complete_options(const command *c)
{
    cli_ctx ctx = {.command = c->name};
    char *text = NULL, *line, *save = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    if (!out)
        return CLI_EXIT_FAIL;
    cli_usage(&ctx, out);
    fclose(out);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *column, *end, *next;

        if (strncmp(line, "  -", 3) != 0 || strstr(line, "taken by every command"))
            continue;
        column = line + 2;
        end = strstr(column, "  "); /* the description, when on the same line */
        if (end)
            *end = '\0';
        for (char *opt = column; opt; opt = next) {
            next = strstr(opt, ", ");
            if (next) {
                *next = '\0';
                next += 2;
            }
            /* "-o, --output DIR": the short one takes the long one's value */
            if (next && opt[1] != '-' && strchr(next, ' '))
                printf("%s%s\n", opt, strchr(next, ' '));
            else
                printf("%s\n", opt);
        }
    }
    free(text);
    return CLI_EXIT_OK;
}

/* The words that may follow a command with subcommands, read from its synopsis:
 * "key generate [...] | key show [FILE]" gives generate and show. */
static int complete_subcommands(const command *c)
{
    char *synopsis = strdup(c->synopsis), *part, *save = NULL;

    if (!synopsis)
        return CLI_EXIT_FAIL;
    for (part = strtok_r(synopsis, "|", &save); part; part = strtok_r(NULL, "|", &save)) {
        size_t skip = strspn(part, " \n"), len;

        part += skip;
        if (strncmp(part, c->name, strlen(c->name)) == 0 && part[strlen(c->name)] == ' ')
            part += strlen(c->name) + 1;
        len = strspn(part, "abcdefghijklmnopqrstuvwxyz-");
        if (len > 0 && part[0] != '-' && (part[len] == ' ' || part[len] == '\0'))
            printf("%.*s\n", (int)len, part);
    }
    free(synopsis);
    return CLI_EXIT_OK;
}

static const command *find_command(const char *name)
{
    for (size_t i = 0; name && i < COMMAND_COUNT; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

/* imgstore __complete commands | options CMD | subcommands CMD | images | channels NAME |
 * versions NAME: hidden, for the completions; never an error message on a terminal. */
static int complete(cli_ctx *ctx, int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    const command *c = find_command(argc > 2 ? argv[2] : NULL);

    if (strcmp(what, "commands") == 0) {
        for (size_t i = 0; i < COMMAND_COUNT; i++)
            printf("%s\n", commands[i].name);
        printf("help\n");
        return CLI_EXIT_OK;
    }
    if (strcmp(what, "options") == 0)
        return c ? complete_options(c) : CLI_EXIT_USAGE;
    if (strcmp(what, "subcommands") == 0)
        return c ? complete_subcommands(c) : CLI_EXIT_USAGE;
    ctx->command = "__complete";
    return cli_complete_store(ctx, argc, argv);
}

int main(int argc, char **argv)
{
    cli_ctx ctx = {0};

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc > 2 && strcmp(argv[1], "help") == 0 && find_command(argv[2])) {
            ctx.command = find_command(argv[2])->name; /* git's "help COMMAND" */
            cli_usage(&ctx, stdout);
            return CLI_EXIT_OK;
        }
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        ctx.command = "version";
        return cli_cmd_version(&ctx, 1, argv + 1);
    }
    if (strcmp(argv[1], "__complete") == 0)
        return complete(&ctx, argc - 1, argv + 1);
    if ((ctx.command = find_command(argv[1]) ? find_command(argv[1])->name : NULL))
        return find_command(argv[1])->fn(&ctx, argc - 1, argv + 1);
    fprintf(stderr, "imgstore: unknown command '%s' (see imgstore --help)\n", argv[1]);
    return CLI_EXIT_USAGE;
}
