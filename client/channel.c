/*
 * Channels over HTTP: deploy and rollback (signed here with the caller's deploy keys when
 * it gives any, else asked of the server, which signs with its own key), history pages, and
 * one long-poll of a watch. A state this client signs is built on the verified current one
 * with the next sequence and the stack derived from its own (trust/stack.c); a concurrent
 * move makes the server answer 409 and the move is rebuilt on the new state, a bounded
 * number of times. Moved from cli/remote_channel.c (#11); the loop, signals and printing of
 * `imgstore watch` stay in cli/.
 */
#include "client/client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOVE_ATTEMPTS 5
#define WATCH_WAIT    60

/* The channel's moves as served, newest first, each checked before it is believed: its
 * signed state carries a threshold of deploy signatures under the verified policy, and the
 * sequences run without a gap from the live state (itself checked for replay) down to 1. A
 * server can then neither invent, drop nor reorder a move. */
static int verified_history(imgstore_channel_state ***states_out, size_t *count_out,
                            imgstore_client *client, const imgstore_channel_state *live,
                            const char *name, const char *channel)
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
    if ((err = imgstore_client_get_json(&body, client, path)) < 0)
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
        if ((err = imgstore_client_state_check(
                 &states[checked], NULL, client,
                 json_object_get(json_array_get(entries, checked), "signed"), name, channel,
                 what)) < 0)
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
 * store would replay (imgstore_trust_stack_replay) over the verified history. */
static int stack_of_live(imgstore_channel_state *live, imgstore_client *client, const char *name,
                         const char *channel)
{
    imgstore_channel_state **states = NULL;
    const char *below[IMGSTORE_CHANNEL_STACK_MAX];
    size_t count = 0, depth = 0;
    int err;

    if (live->has_stack)
        return 0;
    if ((err = verified_history(&states, &count, client, live, name, channel)) < 0 ||
        (err = imgstore_trust_stack_replay(
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

/* The target of a rollback without --to: the top of the verified live state's stack, and
 * that state's sequence (*sequence_out), which the rollback must then be built on. */
static int rollback_target(char **out, uint64_t *sequence_out, imgstore_client *client,
                           const char *name, const char *channel)
{
    imgstore_channel_state *live = NULL;
    int err;

    *out = NULL;
    *sequence_out = 0;
    if ((err = imgstore_client_channel_get(&live, NULL, client, name, channel, true)) < 0)
        return err;
    if ((err = stack_of_live(live, client, name, channel)) < 0) {
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
    } else {
        *sequence_out = live->sequence;
    }
    imgstore_channel_state_free(live);
    return err;
}

bool imgstore_client_deploy_keys(const imgstore_client *client,
                                 const imgstore_sign_key *const *keys, size_t key_count)
{
    const imgstore_policy_role *deploy;

    if (!client->policy)
        return false;
    deploy = &client->policy->roles[IMGSTORE_ROLE_DEPLOY];
    for (size_t i = 0; i < key_count; i++) {
        imgstore_sign_pubkey pub, listed;
        bool member = false;

        imgstore_sign_key_public(&pub, keys[i]);
        for (size_t k = 0; k < deploy->key_count && !member; k++)
            member = imgstore_sign_pubkey_parse(&listed, deploy->keys[k]) == 0 &&
                     imgstore_sign_pubkey_equal(&listed, &pub);
        if (!member)
            return false;
    }
    return key_count > 0;
}

static bool needs_refresh(const imgstore_channel_state *state, const imgstore_policy *policy)
{
    int64_t expires = 0;

    if (!state->expires || imgstore_time_parse(&expires, state->expires) < 0)
        return true;
    return expires - (int64_t)time(NULL) < policy->channel_ttl_seconds / 2;
}

/* Build, sign and post the next state; retried on 409 (someone moved the channel first).
 * With `built_on` (a rollback whose target came from the state of that sequence), a channel
 * that moved since is refused as the store refuses it: the target may no longer be what the
 * operator meant to go back to. */
static int signed_move(imgstore_channel_state **out, imgstore_client *client,
                       const imgstore_client_move *signers, const char *name, const char *channel,
                       const char *version, const char *action, uint64_t built_on)
{
    const char *actor = signers->actor, *reason = signers->reason;
    const imgstore_policy *policy = client->policy;
    imgstore_client_manifest m = {0};
    char *path = imgstore_strfmt("/v1/channels/%s/%s/signed", name, channel);
    int err;

    *out = NULL;
    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    /* a version below its release threshold never goes on a channel */
    if ((err = imgstore_client_manifest_fetch(&m, client, name, version, true)) < 0)
        goto done;
    for (int attempt = 0; attempt < MOVE_ATTEMPTS; attempt++) {
        imgstore_channel_state *current = NULL, next;
        char now[32], expires[32], *bytes = NULL;
        size_t len = 0;
        int64_t now_s = (int64_t)time(NULL);
        json_t *sigs = json_array(), *answer = NULL;
        long status = 0;

        err = imgstore_client_channel_get(&current, NULL, client, name, channel, true);
        if (err < 0 && err != IMGSTORE_ENOTFOUND) {
            json_decref(sigs);
            goto done;
        }
        if (built_on && (!current || current->sequence != built_on)) {
            err = imgstore_error_set(IMGSTORE_ELOCKED,
                                     "%s/%s moved while the rollback was prepared; run it again",
                                     name, channel);
            imgstore_channel_state_free(current);
            json_decref(sigs);
            goto done;
        }
        if (current && strcmp(current->version, version) == 0 && strcmp(action, "deploy") == 0 &&
            !needs_refresh(current, policy)) {
            *out = current; /* already live and fresh: nothing to write */
            json_decref(sigs);
            err = 0;
            goto done;
        }
        /* a legacy state whose history does not verify (a move by a key since removed) is
         * built on without a stack, as an older client would; the server takes that */
        if (current && (err = stack_of_live(current, client, name, channel)) < 0 &&
            err != IMGSTORE_EVERIFY) {
            imgstore_channel_state_free(current);
            json_decref(sigs);
            goto done;
        }
        err = 0;
        imgstore_time_rfc3339(now, sizeof(now), now_s);
        imgstore_time_rfc3339(expires, sizeof(expires), now_s + policy->channel_ttl_seconds);
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
        err = imgstore_trust_stack_next((const char **)next.stack, &next.stack_count,
                                        current ? current->version : NULL,
                                        current ? (const char *const *)current->stack : NULL,
                                        current ? current->stack_count : 0, action, version);
        if (err == 0)
            err = imgstore_schema_channel_encode(&bytes, &len, &next);
        for (size_t i = 0; i < signers->key_count && err == 0; i++) {
            char *sig = NULL;

            if ((err = imgstore_sign_sshsig(&sig, signers->keys[i], IMGSTORE_SIGN_NAMESPACE, bytes,
                                            len)) == 0)
                json_array_append_new(sigs, json_string(sig));
            free(sig);
        }
        if (err == 0)
            err = imgstore_client__send_json(
                &answer, &status, client, "POST", path,
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
    imgstore_client_manifest_clear(&m);
    free(path);
    return err;
}

/* No local deploy key: the server moves the channel with its own key. The result is then
 * fetched signed and checked like any state. */
static int server_move(imgstore_channel_state **out, imgstore_client *client, const char *name,
                       const char *channel, const char *version, bool rollback, const char *reason)
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
    if ((err = imgstore_client__send_json(&answer, NULL, client, "POST", path, body)) == 0)
        err = imgstore_client_channel_get(out, NULL, client, name, channel, false);
    json_decref(answer);
    free(path);
    return err;
}

static int move(imgstore_channel_state **out, imgstore_client *client, const char *name,
                const char *channel, const char *version, bool rollback,
                const imgstore_client_move *how)
{
    static const imgstore_client_move server_signs = {NULL, 0, NULL, NULL};
    const imgstore_policy *policy = NULL;
    char *target = NULL;
    uint64_t built_on = 0;
    int err;

    *out = NULL;
    if (!how)
        how = &server_signs;
    if ((err = imgstore_client_check_names(name, version, channel)) < 0 ||
        (err = imgstore_client__policy(&policy, client)) < 0)
        return err;
    if (how->key_count == 0)
        return server_move(out, client, name, channel, version, rollback, how->reason);
    if (!imgstore_client_deploy_keys(client, how->keys, how->key_count))
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "a signing key is not a deploy key of the policy");
    if (!how->actor)
        return imgstore_error_set(IMGSTORE_EINVALID, "a signed move needs an actor");
    if (rollback && !version) {
        if ((err = rollback_target(&target, &built_on, client, name, channel)) < 0)
            return err;
        version = target;
    }
    err = signed_move(out, client, how, name, channel, version, rollback ? "rollback" : "deploy",
                      built_on);
    free(target);
    return err;
}

int imgstore_client_deploy(imgstore_channel_state **out, imgstore_client *client, const char *name,
                           const char *channel, const char *version,
                           const imgstore_client_move *how)
{
    if (!version) {
        *out = NULL;
        return imgstore_error_set(IMGSTORE_EINVALID, "deploy: no version");
    }
    return move(out, client, name, channel, version, false, how);
}

int imgstore_client_rollback(imgstore_channel_state **out, imgstore_client *client,
                             const char *name, const char *channel, const char *to,
                             const imgstore_client_move *how)
{
    return move(out, client, name, channel, to, true, how);
}

int imgstore_client_history(json_t **entries_out, uint64_t *next_out, imgstore_client *client,
                            const char *name, const char *channel,
                            const imgstore_client_history_query *query)
{
    static const imgstore_client_history_query newest = {0, 0, false, 0};
    json_t *body = NULL;
    char *path = NULL;
    int err;

    *entries_out = NULL;
    if (next_out)
        *next_out = 0;
    if (!query)
        query = &newest;
    if ((err = imgstore_client_check_names(name, NULL, channel)) < 0)
        return err;
    /* without a channel: the image's pushes and channel moves; the server pages and
     * searches `at` with the same indexes as a local store */
    path =
        channel
            ? imgstore_strfmt("/v1/channels/%s/%s/history?limit=%llu&before=%llu", name, channel,
                              (unsigned long long)query->limit, (unsigned long long)query->before)
            : imgstore_strfmt("/v1/images/%s/history?limit=%llu&before=%llu", name,
                              (unsigned long long)query->limit, (unsigned long long)query->before);
    if (path && query->has_at) {
        char *with_at = imgstore_strfmt("%s&at=%lld", path, (long long)query->at);

        free(path);
        path = with_at;
    }
    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((err = imgstore_client_get_json(&body, client, path)) == 0) {
        json_t *entries = json_object_get(body, "entries");

        *entries_out = json_incref(json_is_array(entries) ? entries : NULL);
        if (!*entries_out)
            *entries_out = json_array();
        if (next_out)
            *next_out = (uint64_t)json_integer_value(json_object_get(body, "next"));
    }
    json_decref(body);
    free(path);
    return err;
}

/* ---- watch ---------------------------------------------------------------------------- */

int imgstore_client_watch(imgstore_channel_state **out, imgstore_client *client, const char *name,
                          const char *channel, uint64_t after, unsigned timeout_seconds)
{
    const imgstore_policy *policy = NULL;
    imgstore_client__response resp;
    json_t *body;
    json_int_t sequence;
    char path[512];
    int err;

    *out = NULL;
    if (timeout_seconds < 1 || timeout_seconds > WATCH_WAIT)
        return imgstore_error_set(IMGSTORE_EINVALID, "watch: the timeout must be 1 to %d seconds",
                                  WATCH_WAIT);
    if ((err = imgstore_client_check_names(name, NULL, channel)) < 0 ||
        (err = imgstore_client__policy(&policy, client)) < 0)
        return err;
    snprintf(path, sizeof(path), "/v1/channels/%s/%s?wait=%u&after=%llu", name, channel,
             timeout_seconds, (unsigned long long)after);
    if ((err = imgstore_client__call(client, "GET", path, NULL, IMGSTORE_CLIENT__JSON_MAX, &resp)) <
        0)
        return err;
    /* no such channel yet, or a server busy or restarting: nothing moved, ask again (soon,
     * not at once, when the server is struggling) */
    if (resp.status == 404 || resp.status >= 500) {
        long status = resp.status;

        imgstore_client__response_free(&resp);
        for (int i = 0; status != 404 && i < 10 && !(client->stop && *client->stop); i++) {
            struct timespec tick = {0, 100 * 1000 * 1000};

            nanosleep(&tick, NULL);
        }
        return 0;
    }
    if ((err = imgstore_client__status_error(client, path, &resp)) < 0) {
        imgstore_client__response_free(&resp);
        return err;
    }
    body = json_loadb(resp.body ? resp.body : "", resp.len, 0, NULL);
    sequence = json_integer_value(json_object_get(body, "sequence"));
    json_decref(body);
    imgstore_client__response_free(&resp);
    if (sequence <= (json_int_t)after)
        return 0;
    /* the long-poll only says something moved; what moved is believed once verified */
    err = imgstore_client_channel_get(out, NULL, client, name, channel, false);
    if (err == IMGSTORE_EVERIFY) {
        /* the policy may have changed since the watch began: verify against the new one */
        if ((err = imgstore_client_policy_load(client)) == 0)
            err = imgstore_client_channel_get(out, NULL, client, name, channel, false);
    }
    if (err == 0 && (*out)->sequence <= after) {
        imgstore_channel_state_free(*out);
        *out = NULL;
    }
    return err;
}
