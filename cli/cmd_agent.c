/*
 * imgstore agent: argv in, the agent module (agent/agent.h) run with its server operations
 * done by the client library (client/client.h: every state and manifest verified against the
 * pinned policy before the agent sees it; each file's bytes hashed against the signed
 * manifest by imgstore_client_file_pull_fd), and `imgstore agent status` printing a state
 * directory. The swap, its crash safety and its rollback are agent/'s; this file only wires.
 */
#include "agent/agent.h"
#include "cli/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    OPT_IMAGE = OPT_FIRST_LOCAL,
    OPT_CHANNEL_A,
    OPT_DIR,
    OPT_RESTART,
    OPT_HEALTH,
    OPT_HEALTH_TIMEOUT,
    OPT_KEEP,
    OPT_HOST,
    OPT_ONCE,
    OPT_WAIT,
};

typedef struct {
    const char *image, *channel, *dir, *restart, *health, *host;
    unsigned health_timeout, keep, wait;
    bool once;
    cli_remote_args remote;
} agent_args;

static volatile sig_atomic_t agent_stop;

static void on_signal(int sig)
{
    (void)sig;
    agent_stop = 1;
}

/* "60", "60s", "2m": seconds. */
static int parse_duration(unsigned *out, const char *text)
{
    uint64_t n = 0;
    char *copy = strdup(text ? text : "");
    size_t len = copy ? strlen(copy) : 0;
    unsigned scale = 1;
    int err;

    if (!copy)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (len > 1 && (copy[len - 1] == 's' || copy[len - 1] == 'm')) {
        scale = copy[len - 1] == 'm' ? 60 : 1;
        copy[len - 1] = '\0';
    }
    err = imgstore_parse_u64(&n, copy);
    free(copy);
    if (err < 0 || n == 0 || n * scale > 86400)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "'%s': expected 1 to 86400 seconds (60, 60s, 2m)", text);
    *out = (unsigned)(n * scale);
    return 0;
}

/* ---- the ops on the client library ---------------------------------------------------- */

typedef struct {
    imgstore_client *client;
    cli_signers signers;
    const char *image, *channel;
    char *actor;
    bool said_unverified; /* the note on an unbound token is logged once per run */
} agent_server;

static int op_wait(imgstore_agent_target **out, uint64_t after, unsigned wait, void *payload)
{
    agent_server *s = payload;
    imgstore_agent_target *t = NULL;
    imgstore_client_manifest m = {0};
    imgstore_channel_state *state = NULL;
    time_t began = time(NULL);
    int err;

    *out = NULL;
    if ((err = imgstore_client_watch(&state, s->client, s->image, s->channel, after, wait)) < 0)
        return err;
    if (!state) {
        /* nothing moved; a channel not there yet is answered at once: not a busy loop */
        if (time(NULL) - began < 1)
            sleep(1);
        return 0;
    }
    if (!(t = calloc(1, sizeof(*t)))) {
        imgstore_channel_state_free(state);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    t->state = state;
    err = imgstore_client_manifest_fetch(&m, s->client, s->image, state->version, true);
    if (err == 0 && strcmp(m.sha256, state->manifest_sha256) != 0)
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s@%s: the manifest has sha256 %s, the channel state pinned %s",
                                 s->image, state->version, m.sha256, state->manifest_sha256);
    if (err < 0) {
        imgstore_client_manifest_clear(&m);
        imgstore_agent_target_free(t);
        return err;
    }
    t->manifest = m.manifest;
    t->manifest_bytes = m.bytes;
    t->manifest_len = m.len;
    m.manifest = NULL;
    m.bytes = NULL;
    imgstore_client_manifest_clear(&m);
    *out = t;
    return 0;
}

/* FILE into PATH.part (resuming what is there), size and sha256 checked, renamed to PATH. */
static int op_pull(const imgstore_agent_target *t, const imgstore_manifest_file *file,
                   const char *path, void *payload)
{
    agent_server *s = payload;
    char *part = imgstore_strfmt("%s.part", path);
    int fd = -1, err = 0;

    if (!part)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", part, strerror(errno));
        goto done;
    }
    /* a cut download stays for the next round to resume; damaged bytes are removed */
    if ((err = imgstore_client_file_pull_fd(s->client, t->manifest, file, fd, part)) < 0)
        goto done;
    if (fsync(fd) < 0 || rename(part, path) < 0)
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", path, strerror(errno));
done:
    if (fd >= 0)
        close(fd);
    free(part);
    return err;
}

static int op_rollback(const char *failed, uint64_t failed_sequence, const char *to,
                       const char *reason, void *payload)
{
    agent_server *s = payload;
    imgstore_channel_state *live = NULL, *moved = NULL;
    const imgstore_sign_key *keys[CLI_KEYS_MAX];
    imgstore_client_move move = {keys, 0, s->actor, reason};
    int err;

    if ((err = imgstore_client_channel_get(&live, NULL, s->client, s->image, s->channel, true)) < 0)
        return err;
    /* someone (another host's agent, on-call) moved it already: nothing to undo */
    if (live->sequence != failed_sequence || strcmp(live->version, failed) != 0) {
        imgstore_channel_state_free(live);
        return 0;
    }
    imgstore_channel_state_free(live);
    for (size_t i = 0; i < s->signers.count; i++)
        keys[i] = s->signers.keys[i];
    /* sign here with deploy keys; without them the server signs (deploy scope) */
    if (imgstore_client_deploy_keys(s->client, keys, s->signers.count))
        move.key_count = s->signers.count;
    err = imgstore_client_rollback(&moved, s->client, s->image, s->channel, to, &move);
    imgstore_channel_state_free(moved);
    if (err < 0 && !imgstore_client_offline(s->client)) {
        /* an answer that said no (no deploy scope, no key): report instead */
        imgstore_log(IMGSTORE_LOG_INFO, "agent", "no signed rollback: %s", imgstore_error_last());
        return IMGSTORE_ENOTFOUND;
    }
    if (err == 0)
        imgstore_log(IMGSTORE_LOG_WARN, "agent", "rolled %s/%s back to %s: %s", s->image,
                     s->channel, to, reason);
    return err;
}

static int op_report(const imgstore_agent_report *r, void *payload)
{
    agent_server *s = payload;
    imgstore_client_report_opts report = {r->host, r->state, r->version, r->attempted, r->message};
    bool verified = false;
    int err = imgstore_client_report(&verified, s->client, s->image, s->channel, &report);

    if (err == 0 && !verified && !s->said_unverified) {
        imgstore_log(IMGSTORE_LOG_INFO, "agent",
                     "the server took the report for host %s as unverified: its token is bound "
                     "to no host (imgstore token create --host %s)",
                     r->host, r->host);
        s->said_unverified = true;
    }
    return err;
}

/* ---- argv -------------------------------------------------------------------------------- */

static int agent_parse(cli_ctx *ctx, int argc, char **argv, agent_args *args, int *code)
{
    static const struct option options[] = {
        CLI_COMMON_OPTIONS,
        CLI_REMOTE_OPTIONS,
        {"image", required_argument, NULL, OPT_IMAGE},
        {"channel", required_argument, NULL, OPT_CHANNEL_A},
        {"dir", required_argument, NULL, OPT_DIR},
        {"exec-restart", required_argument, NULL, OPT_RESTART},
        {"health", required_argument, NULL, OPT_HEALTH},
        {"health-timeout", required_argument, NULL, OPT_HEALTH_TIMEOUT},
        {"keep", required_argument, NULL, OPT_KEEP},
        {"host", required_argument, NULL, OPT_HOST},
        {"once", no_argument, NULL, OPT_ONCE},
        {"wait", required_argument, NULL, OPT_WAIT},
        {NULL, 0, NULL, 0}};
    uint64_t n;
    int opt;

    *code = -1;
    memset(args, 0, sizeof(*args));
    args->health_timeout = 60;
    args->keep = 3;
    args->wait = 60;
    while ((opt = cli_next_option(ctx, argc, argv, "", options, &args->remote, code)) != -1) {
        switch (opt) {
        case OPT_IMAGE:
            args->image = optarg;
            break;
        case OPT_CHANNEL_A:
            args->channel = optarg;
            break;
        case OPT_DIR:
            args->dir = optarg;
            break;
        case OPT_RESTART:
            args->restart = optarg;
            break;
        case OPT_HEALTH:
            args->health = optarg;
            break;
        case OPT_HOST:
            args->host = optarg;
            break;
        case OPT_ONCE:
            args->once = true;
            break;
        case OPT_HEALTH_TIMEOUT:
            if (parse_duration(&args->health_timeout, optarg) < 0) {
                *code = cli_usage_error(ctx, "--health-timeout %s", imgstore_error_last());
                return -1;
            }
            break;
        case OPT_WAIT:
            if (parse_duration(&args->wait, optarg) < 0 || args->wait > 60) {
                *code = cli_usage_error(ctx, "--wait: 1 to 60 seconds");
                return -1;
            }
            break;
        case OPT_KEEP:
            if (imgstore_parse_u64(&n, optarg) < 0 || n > 1000) {
                *code = cli_usage_error(ctx, "--keep: a number from 0 to 1000");
                return -1;
            }
            args->keep = (unsigned)n;
            break;
        default:
            break;
        }
    }
    return *code >= 0 ? -1 : optind;
}

static void print_status(const cli_ctx *ctx, json_t *st)
{
    json_t *check = json_object_get(st, "last_check"), *error = json_object_get(st, "last_error");
    json_t *failed = json_object_get(st, "failed");
    const char *v;

    if (ctx->json) {
        cli_print_json(json_incref(st));
        return;
    }
#define S(obj, key) cli_safe(json_string_value(json_object_get(obj, key)))
    printf("image      %s/%s on %s\n", S(st, "image"), S(st, "channel"), S(st, "host"));
    v = json_string_value(json_object_get(st, "current"));
    printf("running    %s", v ? cli_safe(v) : "nothing");
    if (v)
        printf(" since %s", S(st, "since"));
    printf(" (move %lld)\n", (long long)json_integer_value(json_object_get(st, "sequence")));
    v = json_string_value(json_object_get(st, "previous"));
    printf("previous   %s\n", v ? cli_safe(v) : "none");
    printf("phase      %s\n", S(st, "phase"));
    if (json_is_object(json_object_get(st, "trial")))
        printf("trying     %s since %s\n", S(json_object_get(st, "trial"), "to"),
               S(json_object_get(st, "trial"), "started"));
    if (json_is_object(check))
        printf("last check %s %s %s%s%s\n", S(check, "time"), S(check, "version"),
               json_is_true(json_object_get(check, "ok")) ? "ok" : "failed",
               json_string_value(json_object_get(check, "message")) ? ": " : "",
               S(check, "message"));
    if (json_is_object(error))
        printf("last error %s %s\n", S(error, "time"), S(error, "message"));
    if (json_is_object(failed))
        printf("failed     %s (move %lld) at %s: %s; %s\n", S(failed, "version"),
               (long long)json_integer_value(json_object_get(failed, "sequence")),
               S(failed, "time"), S(failed, "reason"),
               json_is_true(json_object_get(failed, "pending")) ? "not yet told to the server"
               : json_is_true(json_object_get(failed, "channel_rolled_back"))
                   ? "channel rolled back (signed)"
                   : "reported");
#undef S
}

static int agent_status(cli_ctx *ctx, int argc, char **argv)
{
    agent_args args;
    json_t *st = NULL;
    int code, err;
    int first = agent_parse(ctx, argc, argv, &args, &code);

    if (first < 0)
        return code;
    if (first != argc)
        return cli_usage_error(ctx, "agent status takes no arguments");
    if (!args.dir)
        return cli_usage_error(ctx, "--dir is required");
    if ((err = imgstore_agent_status(&st, args.dir)) < 0)
        return cli_fail(ctx, err);
    print_status(ctx, st);
    json_decref(st);
    return CLI_EXIT_OK;
}

/* `imgstore agent reports`: which hosts run what, as they say (unsigned). */
static int agent_reports(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_client *client = NULL;
    agent_args args;
    json_t *body = NULL, *row;
    char *path = NULL;
    size_t i;
    int code, err;
    int first = agent_parse(ctx, argc, argv, &args, &code);

    if (first < 0)
        return code;
    if (first != argc)
        return cli_usage_error(ctx, "agent reports takes no arguments");
    if (!args.image || !args.channel)
        return cli_usage_error(ctx, "--image and --channel are required");
    if ((err = imgstore_client_check_names(args.image, NULL, args.channel)) < 0 ||
        (err = cli_client_open(&client, &args.remote)) < 0)
        goto done;
    if (!(path = imgstore_strfmt("/v1/channels/%s/%s/reports", args.image, args.channel))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = imgstore_client_get_json(&body, client, path)) < 0)
        goto done;
    if (ctx->json) {
        cli_print_json(json_incref(body));
        goto done;
    }
    json_array_foreach(json_object_get(body, "hosts"), i, row)
    {
#define S(key) cli_safe(json_string_value(json_object_get(row, key)))
        printf("%s %s %s %s %s", S("host"),
               json_is_string(json_object_get(row, "version")) ? S("version") : "-", S("state"),
               S("time"),
               json_is_true(json_object_get(row, "host_verified")) ? "verified" : "unverified");
        if (json_is_string(json_object_get(row, "attempted")))
            printf(" attempted %s", S("attempted"));
        if (json_is_string(json_object_get(row, "message")))
            printf(": %s", S("message"));
        printf("\n");
#undef S
    }
    fprintf(stderr, "(what hosts say about themselves: unsigned; 'verified' means posted with "
                    "a token bound to that host)\n");
done:
    json_decref(body);
    free(path);
    imgstore_client_free(client);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

int cli_cmd_agent(cli_ctx *ctx, int argc, char **argv)
{
    agent_server server = {0};
    imgstore_agent *agent = NULL;
    imgstore_agent_ops ops = {0};
    imgstore_agent_config config = {0};
    agent_args args;
    struct sigaction sa;
    char hostname[256] = "";
    int code, err = 0;
    int first;

    if (argc > 1 && strcmp(argv[1], "status") == 0)
        return agent_status(ctx, argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "reports") == 0)
        return agent_reports(ctx, argc - 1, argv + 1);
    if ((first = agent_parse(ctx, argc, argv, &args, &code)) < 0)
        return code;
    if (first != argc)
        return cli_usage_error(ctx, "unexpected argument '%s'", argv[first]);
    if (!args.image || !args.channel || !args.dir)
        return cli_usage_error(ctx, "--image, --channel and --dir are required");
    if (!args.host) {
        gethostname(hostname, sizeof(hostname) - 1);
        args.host = hostname;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: a signal ends a long-poll */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    server.image = args.image;
    server.channel = args.channel;
    if ((err = imgstore_client_check_names(args.image, NULL, args.channel)) < 0 ||
        (err = cli_client_open(&server.client, &args.remote)) < 0)
        goto done;
    imgstore_client_set_stop(server.client, &agent_stop);
    /* a key is optional: without one, a rollback is asked of the server (deploy scope) */
    if (ctx->key_path_count || ctx->agent || getenv("IMGSTORE_KEY"))
        if ((err = cli_signers_load(&server.signers, ctx)) < 0)
            goto done;
    if (!(server.actor =
              ctx->actor ? strdup(ctx->actor) : imgstore_strfmt("imgstore-agent@%s", args.host))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    ops.wait_move = op_wait;
    ops.pull_file = op_pull;
    ops.rollback = op_rollback;
    ops.report = op_report;
    ops.run = imgstore_agent_run_command;
    ops.health = imgstore_agent_health_check;
    ops.payload = &server;
    config.dir = args.dir;
    config.image = args.image;
    config.channel = args.channel;
    config.host = args.host;
    config.restart = args.restart;
    config.health = args.health;
    config.health_timeout = args.health_timeout;
    config.keep = args.keep;
    config.wait_seconds = args.once ? 1 : args.wait;
    config.stop = &agent_stop;
    if ((err = imgstore_agent_open(&agent, &config, &ops)) < 0)
        goto done;
    imgstore_log(IMGSTORE_LOG_INFO, "agent", "following %s/%s from %s into %s as %s", args.image,
                 args.channel, imgstore_client_url(server.client), args.dir, args.host);
    err = args.once ? imgstore_agent_step(agent) : imgstore_agent_run(agent);
done:
    imgstore_agent_free(agent);
    cli_signers_free(&server.signers);
    imgstore_client_free(server.client);
    free(server.actor);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
