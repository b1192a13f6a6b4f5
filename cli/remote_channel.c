/*
 * Channels over HTTP: deploy and rollback (signed here with local deploy keys when there are
 * any, else asked of the server, which signs with its own key), history, and watch (a
 * long-poll loop printing one line per move, for scripts). A state this client signs is
 * built on the verified current one with the next sequence and the stack derived from its
 * own (store/stack.c); a concurrent move makes the server answer 409 and the move is rebuilt
 * on the new state, a bounded number of times.
 */
#include "cli/remote.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MOVE_ATTEMPTS 5
#define WATCH_WAIT    60

/* The channel's moves as served, newest first, each checked before it is believed: its
 * signed state carries a threshold of deploy signatures under the verified policy, and the
 * sequences run without a gap from the live state (itself checked for replay) down to 1. A
 * server can then neither invent, drop nor reorder a move. */
static int verified_history(imgstore_channel_state ***states_out, size_t *count_out,
                            cli_remote *remote, const cli_remote_trust *trust,
                            const imgstore_channel_state *live, const char *name,
                            const char *channel)
{
    imgstore_channel_state **states = NULL;
    json_t *body = NULL, *entries;
    char *path = NULL;
    size_t count = 0, checked;
    int err;

    *states_out = NULL;
    *count_out = 0;
    if (!(path = imgstore_strfmt("/v1/channels/%s/%s/history", name, channel))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = cli_remote_get_json(&body, remote, path)) < 0)
        goto done;
    entries = json_object_get(body, "entries");
    count = json_array_size(entries);
    if (count != live->sequence) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s/%s: the server's history has %zu moves but the live state "
                                 "is move %llu",
                                 name, channel, count, (unsigned long long)live->sequence);
        goto done;
    }
    if (!(states = calloc(count, sizeof(*states)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (checked = 0; checked < count; checked++) {
        char what[64];

        snprintf(what, sizeof(what), "history move %llu",
                 (unsigned long long)(live->sequence - checked));
        if ((err =
                 cli_remote_state_check(&states[checked], trust,
                                        json_object_get(json_array_get(entries, checked), "signed"),
                                        name, channel, what)) < 0)
            goto done;
        if (states[checked]->sequence != live->sequence - checked) {
            err = imgstore_error_set(IMGSTORE_EVERIFY,
                                     "%s/%s: the server's history has move %llu where move %llu "
                                     "is due",
                                     name, channel, (unsigned long long)states[checked]->sequence,
                                     (unsigned long long)(live->sequence - checked));
            goto done;
        }
    }
    if (strcmp(states[0]->version, live->version) != 0 ||
        strcmp(states[0]->manifest_sha256, live->manifest_sha256) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s/%s: the server's history does not end at the live state", name,
                                 channel);
        goto done;
    }
    *states_out = states;
    *count_out = count;
    states = NULL;
done:
    for (size_t i = 0; states && i < count; i++)
        imgstore_channel_state_free(states[i]);
    free(states);
    json_decref(body);
    free(path);
    return err;
}

/* Give the verified live state the stack its next move derives from. A state that carries
 * one is signed with it (issue #9): nothing more to fetch. A legacy one gets the stack the
 * store would replay (imgstore_store_stack_replay) over the verified history. */
static int stack_of_live(imgstore_channel_state *live, cli_remote *remote,
                         const cli_remote_trust *trust, const char *name, const char *channel)
{
    imgstore_channel_state **states = NULL;
    const char *below[IMGSTORE_CHANNEL_STACK_MAX];
    size_t count = 0, depth = 0;
    int err;

    if (live->has_stack)
        return 0;
    if ((err = verified_history(&states, &count, remote, trust, live, name, channel)) < 0 ||
        (err = imgstore_store_stack_replay(
             below, &depth, (const imgstore_channel_state *const *)states, count)) < 0)
        goto done;
    for (size_t i = 0; i < depth && err == 0; i++) {
        if (!(live->stack[i] = strdup(below[i])))
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        else
            live->stack_count = i + 1;
    }
    live->has_stack = err == 0;
done:
    for (size_t i = 0; states && i < count; i++)
        imgstore_channel_state_free(states[i]);
    free(states);
    return err;
}

/* The target of a rollback without --to: the top of the verified live state's stack. */
static int rollback_target(char **out, cli_remote *remote, const cli_remote_trust *trust,
                           const char *name, const char *channel)
{
    imgstore_channel_state *live = NULL;
    int err;

    *out = NULL;
    if ((err = cli_remote_channel_fetch(&live, NULL, NULL, remote, trust, name, channel, true)) < 0)
        return err;
    if ((err = stack_of_live(live, remote, trust, name, channel)) < 0) {
        if (err == IMGSTORE_EVERIFY)
            imgstore_error_wrap(err, "cannot trust the history to find the rollback "
                                     "target (give it with --to VERSION): ");
    } else if (live->stack_count == 0) {
        err = imgstore_error_set(IMGSTORE_ENOTFOUND,
                                 "%s/%s runs %s and has no earlier version to roll back to; use "
                                 "--to VERSION",
                                 name, channel, live->version);
    } else if (!(*out = strdup(live->stack[0]))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    imgstore_channel_state_free(live);
    return err;
}

/* Whether these keys may sign channel states under the policy (all of them must). */
static bool all_deploy_keys(const cli_signers *signers, const imgstore_policy *policy)
{
    const imgstore_policy_role *deploy = &policy->roles[IMGSTORE_ROLE_DEPLOY];

    for (size_t i = 0; i < signers->count; i++) {
        imgstore_sign_pubkey pub, listed;
        bool member = false;

        imgstore_sign_key_public(&pub, signers->keys[i]);
        for (size_t k = 0; k < deploy->key_count && !member; k++)
            member = imgstore_sign_pubkey_parse(&listed, deploy->keys[k]) == 0 &&
                     imgstore_sign_pubkey_equal(&listed, &pub);
        if (!member)
            return false;
    }
    return signers->count > 0;
}

static bool needs_refresh(const imgstore_channel_state *state, const imgstore_policy *policy)
{
    int64_t expires = 0;

    if (!state->expires || imgstore_time_parse(&expires, state->expires) < 0)
        return true;
    return expires - (int64_t)time(NULL) < policy->channel_ttl_seconds / 2;
}

/* Build, sign and post the next state; retried on 409 (someone moved the channel first). */
static int signed_move(imgstore_channel_state **out, cli_remote *remote,
                       const cli_remote_trust *trust, const cli_signers *signers, const char *name,
                       const char *channel, const char *version, const char *action,
                       const char *actor, const char *reason)
{
    cli_remote_manifest m = {0};
    char *path = imgstore_strfmt("/v1/channels/%s/%s/signed", name, channel);
    int err;

    *out = NULL;
    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    /* a version below its release threshold never goes on a channel */
    if ((err = cli_remote_manifest_fetch(&m, remote, trust, name, version, true)) < 0)
        goto done;
    for (int attempt = 0; attempt < MOVE_ATTEMPTS; attempt++) {
        imgstore_channel_state *current = NULL, next;
        char now[32], expires[32], *bytes = NULL;
        size_t len = 0;
        int64_t now_s = (int64_t)time(NULL);
        json_t *sigs = json_array(), *answer = NULL;
        long status = 0;

        err = cli_remote_channel_fetch(&current, NULL, NULL, remote, trust, name, channel, true);
        if (err < 0 && err != IMGSTORE_ENOTFOUND) {
            json_decref(sigs);
            goto done;
        }
        if (current && strcmp(current->version, version) == 0 && strcmp(action, "deploy") == 0 &&
            !needs_refresh(current, trust->policy)) {
            *out = current; /* already live and fresh: nothing to write */
            json_decref(sigs);
            err = 0;
            goto done;
        }
        /* a legacy state whose history does not verify (a move by a key since removed) is
         * built on without a stack, as an older client would; the server takes that */
        if (current && (err = stack_of_live(current, remote, trust, name, channel)) < 0 &&
            err != IMGSTORE_EVERIFY) {
            imgstore_channel_state_free(current);
            json_decref(sigs);
            goto done;
        }
        err = 0;
        imgstore_time_rfc3339(now, sizeof(now), now_s);
        imgstore_time_rfc3339(expires, sizeof(expires), now_s + trust->policy->channel_ttl_seconds);
        memset(&next, 0, sizeof(next));
        next.name = (char *)name;
        next.channel = (char *)channel;
        next.version = (char *)version;
        memcpy(next.manifest_sha256, m.sha256, sizeof(m.sha256));
        next.sequence = current ? current->sequence + 1 : 1;
        next.time = now;
        next.expires = expires;
        next.actor = (char *)actor;
        next.action = (char *)action;
        next.reason = (char *)reason;
        next.previous_version = current ? current->version : NULL;
        next.has_stack = !current || current->has_stack;
        err = imgstore_store_stack_next((const char **)next.stack, &next.stack_count,
                                        current ? current->version : NULL,
                                        current ? (const char *const *)current->stack : NULL,
                                        current ? current->stack_count : 0, action, version);
        if (err == 0)
            err = imgstore_schema_channel_encode(&bytes, &len, &next);
        for (size_t i = 0; i < signers->count && err == 0; i++) {
            char *sig = NULL;

            if ((err = imgstore_sign_sshsig(&sig, signers->keys[i], IMGSTORE_SIGN_NAMESPACE, bytes,
                                            len)) == 0)
                json_array_append_new(sigs, json_string(sig));
            free(sig);
        }
        if (err == 0)
            err = cli_remote_send_json(
                &answer, &status, remote, "POST", path,
                json_pack("{s:s%, s:o}", "state", bytes, len, "signatures", sigs));
        else
            json_decref(sigs);
        json_decref(answer);
        if (err == 0)
            err = imgstore_schema_channel_parse(out, bytes, len);
        free(bytes);
        imgstore_channel_state_free(current);
        if (err == 0 || status != 409)
            goto done;
    }
    err =
        imgstore_error_wrap(err, "%s/%s kept moving (%d attempts): ", name, channel, MOVE_ATTEMPTS);
done:
    cli_remote_manifest_free(&m);
    free(path);
    return err;
}

/* No local deploy key: the server moves the channel with its own key. The result is then
 * fetched signed and checked like any state. */
static int server_move(imgstore_channel_state **out, cli_remote *remote,
                       const cli_remote_trust *trust, const char *name, const char *channel,
                       const char *version, bool rollback, const char *reason)
{
    char *path =
        imgstore_strfmt("/v1/channels/%s/%s/%s", name, channel, rollback ? "rollback" : "deploy");
    json_t *body = json_object(), *answer = NULL;
    int err;

    *out = NULL;
    if (!path || !body) {
        free(path);
        json_decref(body);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    if (version)
        json_object_set_new(body, rollback ? "to" : "version", json_string(version));
    if (reason)
        json_object_set_new(body, "reason", json_string(reason));
    if ((err = cli_remote_send_json(&answer, NULL, remote, "POST", path, body)) == 0)
        err = cli_remote_channel_fetch(out, NULL, NULL, remote, trust, name, channel, false);
    json_decref(answer);
    free(path);
    return err;
}

int cli_remote_channel_move(imgstore_channel_state **out, cli_remote *remote,
                            const cli_remote_trust *trust, const cli_signers *signers,
                            const char *name, const char *channel, const char *version,
                            bool rollback, const char *actor, const char *reason)
{
    if (signers && all_deploy_keys(signers, trust->policy))
        return signed_move(out, remote, trust, signers, name, channel, version,
                           rollback ? "rollback" : "deploy", actor, reason);
    return server_move(out, remote, trust, name, channel, version, rollback, reason);
}

static int move(cli_ctx *ctx, int argc, char **argv, bool rollback)
{
    cli_remote remote = {0};
    cli_remote_trust trust = {0};
    imgstore_channel_state *state = NULL;
    cli_signers signers = {0};
    cli_channel_args args;
    char *actor = NULL, *target = NULL;
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
    if ((err = cli_remote_check_names(name, version, args.channel)) < 0 ||
        (err = cli_remote_open(&remote, &args.remote)) < 0 ||
        (err = cli_remote_trust_load(&trust, &remote)) < 0)
        goto done;
    /* sign here when this machine holds deploy keys; otherwise let the server sign */
    if (cli_signers_load(&signers, ctx) < 0 || !all_deploy_keys(&signers, trust.policy)) {
        if (explicit_key) {
            err = signers.count ? imgstore_error_set(IMGSTORE_EVERIFY,
                                                     "a signing key is not a deploy key of the "
                                                     "policy")
                                : imgstore_error_last_code();
            if (err == 0)
                err = IMGSTORE_ERROR;
            goto done;
        }
        err = server_move(&state, &remote, &trust, name, args.channel, version, rollback,
                          args.reason);
        goto print;
    }
    if (!(actor = cli_actor(ctx))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (rollback && !version) {
        if ((err = rollback_target(&target, &remote, &trust, name, args.channel)) < 0)
            goto done;
        version = target;
    }
    err = signed_move(&state, &remote, &trust, &signers, name, args.channel, version,
                      rollback ? "rollback" : "deploy", actor, args.reason);
print:
    if (err == 0)
        err = cli_print_state(ctx, state);
done:
    imgstore_channel_state_free(state);
    cli_signers_free(&signers);
    cli_remote_trust_free(&trust);
    cli_remote_close(&remote);
    free(target);
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
static int remote_history_unknown(cli_remote *remote, const char *name, const char *channel)
{
    char *path = imgstore_strfmt("/v1/images/%s", name);
    json_t *body = NULL;
    int err;

    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    err = cli_history_unknown(cli_remote_get_json(&body, remote, path), name, channel);
    json_decref(body);
    free(path);
    return err;
}

int cli_remote_cmd_history(cli_ctx *ctx, int argc, char **argv)
{
    cli_remote remote = {0};
    cli_channel_args args;
    json_t *body = NULL;
    const char *name;
    char *path = NULL;
    int code, err = 0;

    if (cli_history_parse(ctx, argc, argv, &args, &name, &code) < 0)
        return code;
    if ((err = cli_remote_check_names(name, NULL, args.channel)) < 0 ||
        (err = cli_remote_open(&remote, &args.remote)) < 0)
        goto done;
    /* without --channel: the image's pushes and channel moves; the server pages and
     * searches --at with the same indexes as a local store */
    if (!(path = args.channel
                     ? imgstore_strfmt("/v1/channels/%s/%s/history?limit=%llu&before=%llu", name,
                                       args.channel, (unsigned long long)args.limit_n,
                                       (unsigned long long)args.query.before)
                     : imgstore_strfmt("/v1/images/%s/history?limit=%llu&before=%llu", name,
                                       (unsigned long long)args.limit_n,
                                       (unsigned long long)args.query.before))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (args.at) {
        char *with_at = imgstore_strfmt("%s&at=%lld", path, (long long)args.query.at);

        free(path);
        if (!(path = with_at)) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
    }
    if ((err = cli_remote_get_json(&body, &remote, path)) == 0 &&
        json_array_size(json_object_get(body, "entries")) == 0 && !args.at && !args.before)
        err = remote_history_unknown(&remote, name, args.channel);
    if (err == 0)
        err = cli_print_history(ctx, &args, name, json_object_get(body, "entries"),
                                (uint64_t)json_integer_value(json_object_get(body, "next")));
done:
    json_decref(body);
    free(path);
    cli_remote_close(&remote);
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

int cli_cmd_watch(cli_ctx *ctx, int argc, char **argv)
{
    cli_remote remote = {0};
    cli_remote_trust trust = {0};
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
    if ((err = cli_remote_check_names(argv[first], NULL, args.channel)) < 0 ||
        (err = cli_remote_open(&remote, &args.remote)) < 0)
        goto done;
    remote.stop = &watch_stop;
    /* a server that is down when the watch starts is waited for, as one that goes down later
     * (docs/cli.md; issue #10): a deployer started before its server must not die */
    while ((err = cli_remote_trust_load(&trust, &remote)) == IMGSTORE_ERROR &&
           remote.last_result != CURLE_OK && !watch_stop) {
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

        err = cli_remote_channel_fetch(&state, NULL, NULL, &remote, &trust, argv[first],
                                       args.channel, true);
        if (err < 0 && err != IMGSTORE_ENOTFOUND)
            goto done;
        /* a typo would otherwise wait forever */
        if (err == IMGSTORE_ENOTFOUND &&
            (err = remote_history_unknown(&remote, argv[first], args.channel)) < 0)
            goto done;
        seen = state ? state->sequence : 0;
        imgstore_channel_state_free(state);
        err = 0;
    }
    while (!watch_stop) {
        char path[512];
        cli_remote_response resp;
        json_t *body;
        imgstore_channel_state *state = NULL;
        json_int_t sequence;

        snprintf(path, sizeof(path), "/v1/channels/%s/%s?wait=%d&after=%llu", argv[first],
                 args.channel, WATCH_WAIT, (unsigned long long)seen);
        if ((err = cli_remote_call(&remote, "GET", path, NULL, CLI_REMOTE_JSON_MAX, &resp)) < 0) {
            if (watch_stop)
                break;
            /* the server restarting is no reason for a deployer loop to die */
            fprintf(stderr, "imgstore watch: %s; retrying\n", cli_safe(imgstore_error_last()));
            pause_for(5);
            continue;
        }
        if (resp.status == 404 || resp.status >= 500) {
            long status = resp.status;

            cli_remote_response_free(&resp);
            if (status != 404)
                pause_for(1); /* busy or restarting: ask again soon */
            continue;
        }
        if ((err = cli_remote_status_error(&remote, path, &resp)) < 0) {
            cli_remote_response_free(&resp);
            goto done;
        }
        body = json_loadb(resp.body ? resp.body : "", resp.len, 0, NULL);
        sequence = json_integer_value(json_object_get(body, "sequence"));
        json_decref(body);
        cli_remote_response_free(&resp);
        if (sequence <= (json_int_t)seen)
            continue;
        /* the long-poll only says something moved; what moved is believed once verified */
        err = cli_remote_channel_fetch(&state, NULL, NULL, &remote, &trust, argv[first],
                                       args.channel, false);
        if (err == IMGSTORE_EVERIFY) {
            /* the policy may have changed since the watch began: verify against the new one */
            cli_remote_trust_free(&trust);
            if ((err = cli_remote_trust_load(&trust, &remote)) == 0)
                err = cli_remote_channel_fetch(&state, NULL, NULL, &remote, &trust, argv[first],
                                               args.channel, false);
        }
        if (err < 0)
            goto done;
        if (state->sequence > seen) {
            seen = state->sequence;
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
        imgstore_channel_state_free(state);
    }
    err = 0;
done:
    cli_remote_trust_free(&trust);
    cli_remote_close(&remote);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
