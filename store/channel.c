/*
 * Deployment channels: channels/<name>/<channel>.json says which version a channel runs.
 * Deploy and rollback each write a new state with the next sequence number in one commit;
 * the state's history is the git history of that file.
 *
 * Rollback semantics: deploys stack up and a rollback pops, so on-call can roll back twice
 * to go back two releases instead of bouncing between the last two.
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int imgstore_store_channel_get(imgstore_channel_state **out, imgstore_store *store,
                               const char *name, const char *channel)
{
    git_tree *tip = NULL;
    int err;

    *out = NULL;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, channel)) < 0 ||
        (err = imgstore_store__tip_tree(&tip, store)) < 0)
        return err;
    err = imgstore_store__channel_load(out, store, tip, name, channel);
    git_tree_free(tip);
    return err;
}

int imgstore_store_channel_manifest_get(imgstore_manifest **out, char *digest_out,
                                        imgstore_channel_state **state_out, imgstore_store *store,
                                        const char *name, const char *channel)
{
    imgstore_channel_state *state = NULL;
    imgstore_manifest *manifest = NULL;
    git_tree *tip = NULL;
    char digest[65];
    int err;

    *out = NULL;
    if (state_out)
        *state_out = NULL;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, channel)) < 0 ||
        (err = imgstore_store__tip_tree(&tip, store)) < 0 ||
        (err = imgstore_store__channel_load(&state, store, tip, name, channel)) < 0)
        goto done;
    /* A version missing or replaced under a channel is damage, not "not found": the channel
     * state pinned the manifest's digest when it was written. */
    if ((err = imgstore_store__manifest_load(&manifest, digest, store, tip, name, state->version)) <
        0) {
        if (err == IMGSTORE_ENOTFOUND)
            err = imgstore_error_set(IMGSTORE_EVERIFY,
                                     "%s/%s points at %s %s, which is not in the store", name,
                                     channel, name, state->version);
        goto done;
    }
    if (strcmp(digest, state->manifest_sha256) != 0) {
        err =
            imgstore_error_set(IMGSTORE_EVERIFY,
                               "%s/%s pinned manifest sha256 %s for %s %s, but the stored "
                               "manifest has sha256 %s",
                               name, channel, state->manifest_sha256, name, state->version, digest);
        goto done;
    }
    if (digest_out)
        memcpy(digest_out, digest, sizeof(digest));
    *out = manifest;
    manifest = NULL;
    if (state_out) {
        *state_out = state;
        state = NULL;
    }
done:
    imgstore_manifest_free(manifest);
    imgstore_channel_state_free(state);
    git_tree_free(tip);
    return err;
}

typedef struct {
    imgstore_store *store;
    const char *name, *channel, *version, *action;
    const imgstore_channel_opts *opts;
    uint64_t expect_sequence;        /* rollback: the state the target was computed from; 0: any */
    imgstore_channel_state *written; /* the state committed, or the current one if unchanged */
} channel_edit;

static int channel_edit_fn(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    channel_edit *e = payload;
    imgstore_channel_state *current = NULL, next;
    imgstore_manifest *manifest = NULL;
    char digest[65], now[32], path[512];
    char *bytes = NULL;
    size_t len = 0;
    git_oid blob;
    int err;

    imgstore_channel_state_free(e->written);
    e->written = NULL;
    if ((err = imgstore_store__manifest_load(&manifest, digest, e->store, tip, e->name,
                                             e->version)) < 0)
        goto done;
    err = imgstore_store__channel_load(&current, e->store, tip, e->name, e->channel);
    if (err < 0 && err != IMGSTORE_ENOTFOUND)
        goto done;
    err = 0;
    if (e->expect_sequence && (!current || current->sequence != e->expect_sequence)) {
        err = imgstore_error_set(IMGSTORE_ELOCKED,
                                 "%s/%s moved while the rollback was prepared; run it again",
                                 e->name, e->channel);
        goto done;
    }
    if (current && strcmp(current->version, e->version) == 0 && strcmp(e->action, "deploy") == 0) {
        e->written = current;
        current = NULL;
        err = IMGSTORE_STORE_UNCHANGED;
        goto done;
    }
    imgstore_time_rfc3339(now, sizeof(now), (int64_t)time(NULL));
    memset(&next, 0, sizeof(next));
    next.name = (char *)e->name;
    next.channel = (char *)e->channel;
    next.version = (char *)e->version;
    memcpy(next.manifest_sha256, digest, sizeof(digest));
    next.sequence = current ? current->sequence + 1 : 1;
    next.time = now;
    next.actor = (char *)(e->opts && e->opts->actor ? e->opts->actor : "imgstore");
    next.action = (char *)e->action;
    next.reason = (char *)(e->opts ? e->opts->reason : NULL);
    next.previous_version = current ? current->version : NULL;
    if ((err = imgstore_schema_channel_encode(&bytes, &len, &next)) < 0 ||
        (err = imgstore_store__write_blob(&blob, e->store, bytes, len)) < 0)
        goto done;
    snprintf(path, sizeof(path), "channels/%s/%s.json", e->name, e->channel);
    if ((err = imgstore_store__tree_update(tree_out, e->store->repo, tip, path, &blob,
                                           GIT_FILEMODE_BLOB)) < 0)
        goto done;
    if (strcmp(e->action, "rollback") == 0)
        *message_out = imgstore_strfmt("rollback %s %s %s -> %s: %s\n", e->name, e->channel,
                                       current ? current->version : "-", e->version,
                                       next.reason ? next.reason : "no reason given");
    else
        *message_out = imgstore_strfmt("deploy %s %s %s\n", e->name, e->channel, e->version);
    if (!*message_out)
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    else
        err = imgstore_schema_channel_parse(&e->written, bytes, len);
done:
    free(bytes);
    imgstore_channel_state_free(current);
    imgstore_manifest_free(manifest);
    return err;
}

static int move_channel(imgstore_channel_state **out, channel_edit *edit)
{
    const char *actor = edit->opts && edit->opts->actor ? edit->opts->actor : NULL;
    int err;

    *out = NULL;
    if (edit->opts && edit->opts->reason && strlen(edit->opts->reason) > IMGSTORE_TEXT_MAX)
        return imgstore_error_set(IMGSTORE_EINVALID, "reason: longer than %d bytes",
                                  IMGSTORE_TEXT_MAX);
    err = imgstore_store__commit(edit->store, actor, channel_edit_fn, edit);
    if (err == 0 || err == IMGSTORE_STORE_UNCHANGED) {
        *out = edit->written;
        edit->written = NULL;
        err = 0;
    }
    imgstore_channel_state_free(edit->written);
    return err;
}

int imgstore_store_deploy(imgstore_channel_state **out, imgstore_store *store, const char *name,
                          const char *version, const char *channel,
                          const imgstore_channel_opts *opts)
{
    channel_edit edit = {store, name, channel, version, "deploy", opts, 0, NULL};
    int err;

    *out = NULL;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, channel)) < 0)
        return err;
    return move_channel(out, &edit);
}

/* Replay the channel's history (oldest first) as a stack of versions: a deploy pushes, a
 * rollback pops back down to its target (or pushes it when it was never below). */
static int rollback_target(char **out, uint64_t *sequence_out, imgstore_store *store,
                           const char *name, const char *channel)
{
    imgstore_history_entry *history = NULL;
    const char **stack = NULL;
    size_t count = 0, depth = 0;
    int err;

    *out = NULL;
    if ((err = imgstore_store_history(&history, &count, store, name, channel)) < 0)
        return err;
    if (count == 0) {
        err = imgstore_error_set(IMGSTORE_ENOTFOUND, "image %s has no channel %s", name, channel);
        goto done;
    }
    if (!(stack = calloc(count, sizeof(*stack)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = count; i-- > 0;) {
        const imgstore_channel_state *s = history[i].state;
        size_t below = depth;

        if (strcmp(s->action, "rollback") == 0) {
            while (below > 0 && strcmp(stack[below - 1], s->version) != 0)
                below--;
        }
        if (strcmp(s->action, "rollback") == 0 && below > 0)
            depth = below;
        else
            stack[depth++] = s->version;
    }
    *sequence_out = history[0].state->sequence;
    if (depth < 2) {
        err = imgstore_error_set(IMGSTORE_ENOTFOUND,
                                 "%s/%s runs %s and has no earlier version to roll back to; "
                                 "use --to VERSION",
                                 name, channel, history[0].state->version);
        goto done;
    }
    if (!(*out = strdup(stack[depth - 2])))
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
done:
    free(stack);
    imgstore_history_free(history, count);
    return err;
}

int imgstore_store_rollback(imgstore_channel_state **out, imgstore_store *store, const char *name,
                            const char *channel, const imgstore_channel_opts *opts)
{
    channel_edit edit = {store, name, channel, NULL, "rollback", opts, 0, NULL};
    imgstore_channel_state *current = NULL;
    char *target = NULL;
    int err;

    *out = NULL;
    if ((err = imgstore_store_channel_get(&current, store, name, channel)) < 0)
        return err;
    if (opts && opts->to_version) {
        if ((err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, opts->to_version)) < 0)
            goto done;
        target = strdup(opts->to_version);
        edit.expect_sequence = current->sequence;
    } else if ((err = rollback_target(&target, &edit.expect_sequence, store, name, channel)) < 0)
        goto done;
    if (!target) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (strcmp(target, current->version) == 0) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "%s/%s already runs %s", name, channel, target);
        goto done;
    }
    edit.version = target;
    err = move_channel(out, &edit);
done:
    free(target);
    imgstore_channel_state_free(current);
    return err;
}
