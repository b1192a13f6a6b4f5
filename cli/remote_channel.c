/*
 * deploy, rollback, history and watch --server: argv, output and exit codes over the
 * client library (client/channel.c builds, signs and verifies the moves). A move is signed
 * here when this machine holds deploy keys, else asked of the server, which signs with its
 * own key; watch loops on the client's long-poll and prints one line per move, for scripts.
 */
#include "cli/remote.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WATCH_WAIT 60

static int move(cli_ctx *ctx, int argc, char **argv, bool rollback)
{
    imgstore_client *client = NULL;
    imgstore_channel_state *state = NULL;
    cli_signers signers = {0};
    imgstore_client_move how = {NULL, 0, NULL, NULL};
    cli_channel_args args;
    char *actor = NULL;
    const char *name, *version;
    const char *key_env = getenv("IMGSTORE_KEY");
    bool explicit_key;
    int code, err = 0;
    int first = cli_channel_parse(ctx, argc, argv, &args, &code);

    if (first < 0)
        return code;
    /* a key asked for must be used; only the default key falls back to the server's */
    explicit_key = ctx->key_path_count > 0 || ctx->agent || (key_env && *key_env);
    if (argc - first != (rollback ? 1 : 2))
        return cli_usage_error(ctx, rollback ? "expected NAME" : "expected NAME VERSION");
    if (!args.channel)
        return cli_usage_error(ctx, "--channel is required");
    if (args.at || args.limit || args.before || (args.to && !rollback))
        return cli_usage_error(ctx, "unexpected option for %s", ctx->command);
    name = argv[first];
    version = rollback ? args.to : argv[first + 1];
    how.reason = args.reason;
    if ((err = imgstore_client_check_names(name, version, args.channel)) < 0 ||
        (err = cli_client_open(&client, &args.remote)) < 0 ||
        (err = imgstore_client_policy_load(client)) < 0)
        goto done;
    /* sign here when this machine holds deploy keys; otherwise let the server sign */
    if (cli_signers_load(&signers, ctx) < 0 ||
        !imgstore_client_deploy_keys(client, (const imgstore_sign_key *const *)signers.keys,
                                     signers.count)) {
        if (explicit_key) {
            err = signers.count ? imgstore_error_set(IMGSTORE_EVERIFY,
                                                     "a signing key is not a deploy key of the "
                                                     "policy")
                                : imgstore_error_last_code();
            if (err == 0)
                err = IMGSTORE_ERROR;
            goto done;
        }
    } else {
        if (!(actor = cli_actor(ctx))) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
        how.keys = (const imgstore_sign_key *const *)signers.keys;
        how.key_count = signers.count;
        how.actor = actor;
    }
    err = rollback ? imgstore_client_rollback(&state, client, name, args.channel, version, &how)
                   : imgstore_client_deploy(&state, client, name, args.channel, version, &how);
    if (err == 0)
        err = cli_print_state(ctx, state);
done:
    imgstore_channel_state_free(state);
    cli_signers_free(&signers);
    imgstore_client_free(client);
    free(actor);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

int cli_remote_cmd_deploy(cli_ctx *ctx, int argc, char **argv)
{
    return move(ctx, argc, argv, false);
}

int cli_remote_cmd_rollback(cli_ctx *ctx, int argc, char **argv)
{
    return move(ctx, argc, argv, true);
}

/* History (or the channel) found nothing: whether the image exists says which name is
 * unknown (cli_history_unknown). */
static int remote_history_unknown(imgstore_client *client, const char *name, const char *channel)
{
    char *path = imgstore_strfmt("/v1/images/%s", name);
    json_t *body = NULL;
    int err;

    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    err = cli_history_unknown(imgstore_client_get_json(&body, client, path), name, channel);
    json_decref(body);
    free(path);
    return err;
}

int cli_remote_cmd_history(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_client *client = NULL;
    imgstore_client_history_query query;
    cli_channel_args args;
    json_t *entries = NULL;
    uint64_t next = 0;
    const char *name;
    int code, err = 0;

    if (cli_history_parse(ctx, argc, argv, &args, &name, &code) < 0)
        return code;
    query.limit = args.limit_n;
    query.before = args.query.before;
    query.has_at = args.at != NULL;
    query.at = args.query.at;
    if ((err = imgstore_client_check_names(name, NULL, args.channel)) < 0 ||
        (err = cli_client_open(&client, &args.remote)) < 0)
        goto done;
    if ((err = imgstore_client_history(&entries, &next, client, name, args.channel, &query)) == 0 &&
        json_array_size(entries) == 0 && !args.at && !args.before)
        err = remote_history_unknown(client, name, args.channel);
    if (err == 0)
        err = cli_print_history(ctx, &args, name, entries, next);
done:
    json_decref(entries);
    imgstore_client_free(client);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

/* ---- watch ---------------------------------------------------------------------------- */

static volatile sig_atomic_t watch_stop;

static void on_signal(int sig)
{
    (void)sig;
    watch_stop = 1;
}

/* Sleep `seconds`, waking early on SIGINT/SIGTERM. */
static void pause_for(int seconds)
{
    for (int i = 0; i < seconds * 10 && !watch_stop; i++) {
        struct timespec tick = {0, 100 * 1000 * 1000};

        nanosleep(&tick, NULL);
    }
}

static void print_move(const cli_ctx *ctx, const imgstore_channel_state *state)
{
    if (ctx->json) {
        json_t *row = imgstore_schema_channel_to_json(state);
        char *line = row ? json_dumps(row, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

        printf("%s\n", line ? line : "{}");
        free(line);
        json_decref(row);
    } else {
        printf("%s %s %llu %s %s\n", state->name, state->channel,
               (unsigned long long)state->sequence, state->version, state->action);
    }
    fflush(stdout);
}

int cli_cmd_watch(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_client *client = NULL;
    cli_channel_args args;
    struct sigaction sa;
    uint64_t seen = 0;
    int code, err = 0;
    int first = cli_channel_parse(ctx, argc, argv, &args, &code);

    if (first < 0)
        return code;
    if (argc - first != 1)
        return cli_usage_error(ctx, "expected NAME");
    if (!args.channel)
        return cli_usage_error(ctx, "--channel is required");
    if (args.reason || args.to || args.at || args.limit || args.before)
        return cli_usage_error(ctx, "unexpected option for watch");
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: a signal ends the wait */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if ((err = imgstore_client_check_names(argv[first], NULL, args.channel)) < 0 ||
        (err = cli_client_open(&client, &args.remote)) < 0)
        goto done;
    imgstore_client_set_stop(client, &watch_stop);
    /* a server that is down when the watch starts is waited for, as one that goes down later
     * (docs/cli.md; issue #10): a deployer started before its server must not die */
    while ((err = imgstore_client_policy_load(client)) == IMGSTORE_ERROR &&
           imgstore_client_offline(client) && !watch_stop) {
        fprintf(stderr, "imgstore watch: %s; retrying\n", cli_safe(imgstore_error_last()));
        pause_for(5);
    }
    if (watch_stop) {
        err = 0;
        goto done;
    }
    if (err < 0)
        goto done;
    /* start from what the channel runs now: only later moves are printed */
    {
        imgstore_channel_state *state = NULL;

        err = imgstore_client_channel_get(&state, NULL, client, argv[first], args.channel, true);
        if (err < 0 && err != IMGSTORE_ENOTFOUND)
            goto done;
        /* a typo would otherwise wait forever */
        if (err == IMGSTORE_ENOTFOUND &&
            (err = remote_history_unknown(client, argv[first], args.channel)) < 0)
            goto done;
        seen = state ? state->sequence : 0;
        imgstore_channel_state_free(state);
        err = 0;
    }
    while (!watch_stop) {
        imgstore_channel_state *state = NULL;

        err = imgstore_client_watch(&state, client, argv[first], args.channel, seen, WATCH_WAIT);
        if (err < 0 && imgstore_client_offline(client)) {
            if (watch_stop)
                break;
            /* the server restarting is no reason for a deployer loop to die */
            fprintf(stderr, "imgstore watch: %s; retrying\n", cli_safe(imgstore_error_last()));
            pause_for(5);
            continue;
        }
        if (err < 0)
            goto done;
        if (!state)
            continue; /* nothing moved in time, or the server was busy: ask again */
        seen = state->sequence;
        print_move(ctx, state);
        imgstore_channel_state_free(state);
    }
    err = 0;
done:
    imgstore_client_free(client);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
