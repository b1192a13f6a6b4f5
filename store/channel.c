/*
 * Deployment channels: channels/<name>/<channel>.json says which version a channel runs.
 * Deploy and rollback each write a new state with the next sequence number in one commit;
 * the state's history is the git history of that file.
 *
 * Rollback semantics: deploys stack up and a rollback pops, so on-call can roll back twice
 * to go back two releases instead of bouncing between the last two. Each state carries its
 * stack (stack.c), so a move reads the current state and no history (issue #9).
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
    imgstore_policy *policy = NULL;
    imgstore_trust_status status;
    git_tree *tip = NULL;
    int64_t expires = 0;
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
    if ((err = imgstore_store__policy_load(&policy, NULL, store, tip)) < 0 ||
        (err = imgstore_store__policy_chain_check(store)) < 0 ||
        (err = imgstore_store__channel_status(&status, store, tip, policy, name, channel)) < 0)
        goto done;
    if (!status.trusted) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s/%s: the channel state has %zu of the %u deploy signatures "
                                 "it needs%s%s",
                                 name, channel, status.valid, status.threshold,
                                 status.invalid ? "; " : "",
                                 status.invalid ? imgstore_error_last() : "");
        goto done;
    }
    if (!state->expires || imgstore_time_parse(&expires, state->expires) < 0 ||
        expires <= (int64_t)time(NULL)) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s/%s: the channel state (sequence %llu) expired at %s; a "
                                 "deploy key must deploy it again",
                                 name, channel, (unsigned long long)state->sequence,
                                 state->expires ? state->expires : "(no expiry)");
        goto done;
    }
    if ((err = imgstore_store__version_status(&status, store, tip, policy, name, state->version)) <
        0)
        goto done;
    if (!status.trusted) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s %s has %zu of the %u release signatures it needs", name,
                                 state->version, status.valid, status.threshold);
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
    imgstore_policy_free(policy);
    imgstore_manifest_free(manifest);
    imgstore_channel_state_free(state);
    git_tree_free(tip);
    return err;
}

typedef struct {
    imgstore_store *store;
    const char *name, *channel, *action;
    const char *version; /* NULL: a rollback to the top of the current state's stack */
    const imgstore_channel_opts *opts;
    uint64_t expect_sequence;        /* rollback --to: the state it was checked against; 0: any */
    imgstore_channel_state *written; /* the state committed, or the current one if unchanged */
} channel_edit;

char *imgstore_store__move_message(const imgstore_channel_state *state)
{
    if (strcmp(state->action, "rollback") == 0)
        return imgstore_strfmt("rollback %s %s %s -> %s: %s\n", state->name, state->channel,
                               state->previous_version ? state->previous_version : "-",
                               state->version, state->reason ? state->reason : "no reason given");
    return imgstore_strfmt("deploy %s %s %s\n", state->name, state->channel, state->version);
}

/* A redeploy of the live version writes a fresh state (new sequence, new expiry) once the
 * current one has lived half its time, so a channel that does not move can be kept fresh
 * by deploying it again before it expires (docs/security.md, "freeze"). */
static bool needs_refresh(const imgstore_channel_state *state, const imgstore_policy *policy)
{
    int64_t expires = 0;

    if (!state->expires || imgstore_time_parse(&expires, state->expires) < 0)
        return true;
    return expires - (int64_t)time(NULL) < policy->channel_ttl_seconds / 2;
}

/* Make current->stack the one this move derives from: the state's own when a threshold of
 * deploy keys signed it, read from this one file (issue #9); else a replay of the history,
 * once: for a legacy state, and for one whose signatures no longer vouch for its bytes
 * (a key since removed, a signature file gone), since the replay ignores carried stacks. A
 * signature that fails over the bytes means they changed after signing: a rollback that
 * would follow them is refused rather than steered, and one with a target still goes on. */
static int stack_of_current(imgstore_channel_state *current, const channel_edit *e,
                            const git_tree *tip, const imgstore_policy *policy)
{
    imgstore_trust_status status;
    int err;

    if (current->has_stack) {
        if ((err = imgstore_store__channel_status(&status, e->store, tip, policy, e->name,
                                                  e->channel)) < 0)
            return err;
        if (status.trusted)
            return 0;
        if (status.invalid && !e->version)
            return imgstore_error_set(IMGSTORE_EVERIFY,
                                      "%s/%s: the channel state's rollback stack is not what "
                                      "its deploy key signed (%s); give the target with --to "
                                      "VERSION",
                                      e->name, e->channel, imgstore_error_last());
    }
    return imgstore_store__stack_replayed(current, e->store);
}

static int channel_edit_fn(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    channel_edit *e = payload;
    imgstore_channel_state *current = NULL, next;
    imgstore_manifest *manifest = NULL;
    imgstore_policy *policy = NULL;
    imgstore_trust_status release;
    const char *version = e->version;
    const char *stack[IMGSTORE_CHANNEL_STACK_MAX];
    char digest[65], now[32], expires[32], path[512], dir[512];
    char *bytes = NULL;
    size_t len = 0, stack_count = 0;
    git_oid blob;
    int64_t now_s = (int64_t)time(NULL);
    int err;

    imgstore_channel_state_free(e->written);
    e->written = NULL;
    if ((err = imgstore_store__policy_load(&policy, NULL, e->store, tip)) < 0)
        goto done;
    for (size_t i = 0; i < e->opts->signers.count; i++) {
        if ((err = imgstore_store__key_check_role(policy, IMGSTORE_ROLE_DEPLOY,
                                                  e->opts->signers.keys[i])) < 0)
            goto done;
    }
    err = imgstore_store__channel_load(&current, e->store, tip, e->name, e->channel);
    if (err < 0 && (err != IMGSTORE_ENOTFOUND || !version))
        goto done;
    err = 0;
    if (e->expect_sequence && (!current || current->sequence != e->expect_sequence)) {
        err = imgstore_error_set(IMGSTORE_ELOCKED,
                                 "%s/%s moved while the rollback was prepared; run it again",
                                 e->name, e->channel);
        goto done;
    }
    if (current && strcmp(e->action, "deploy") == 0 && strcmp(current->version, version) == 0 &&
        !needs_refresh(current, policy)) {
        e->written = current;
        current = NULL;
        err = IMGSTORE_STORE_UNCHANGED;
        goto done;
    }
    if (current && (err = stack_of_current(current, e, tip, policy)) < 0)
        goto done;
    if (!version) {
        if (current->stack_count == 0) {
            err = imgstore_error_set(IMGSTORE_ENOTFOUND,
                                     "%s/%s runs %s and has no earlier version to roll back to; "
                                     "use --to VERSION",
                                     e->name, e->channel, current->version);
            goto done;
        }
        version = current->stack[0];
    }
    if ((err = imgstore_store__manifest_load(&manifest, digest, e->store, tip, e->name, version)) <
        0)
        goto done;
    if ((err = imgstore_store__version_status(&release, e->store, tip, policy, e->name, version)) <
        0)
        goto done;
    if (!release.trusted) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s %s has %zu of the %u release signatures it needs; it "
                                 "cannot go on a channel until imgstore sign adds them",
                                 e->name, version, release.valid, release.threshold);
        goto done;
    }
    if ((err = imgstore_trust_stack_next(stack, &stack_count, current ? current->version : NULL,
                                         current ? (const char *const *)current->stack : NULL,
                                         current ? current->stack_count : 0, e->action, version)) <
        0)
        goto done;
    imgstore_time_rfc3339(now, sizeof(now), now_s);
    imgstore_time_rfc3339(expires, sizeof(expires), now_s + policy->channel_ttl_seconds);
    memset(&next, 0, sizeof(next));
    next.name = (char *)e->name;
    next.channel = (char *)e->channel;
    next.version = (char *)version;
    memcpy(next.manifest_sha256, digest, sizeof(digest));
    next.sequence = current ? current->sequence + 1 : 1;
    next.time = now;
    next.expires = expires;
    next.actor = (char *)(e->opts->actor ? e->opts->actor : "imgstore");
    next.action = (char *)e->action;
    next.reason = (char *)e->opts->reason;
    next.previous_version = current ? current->version : NULL;
    next.has_stack = true;
    next.stack_count = stack_count;
    for (size_t i = 0; i < stack_count; i++)
        next.stack[i] = (char *)stack[i];
    snprintf(path, sizeof(path), "channels/%s/%s.json", e->name, e->channel);
    snprintf(dir, sizeof(dir), "channels/%s/%s.sigs", e->name, e->channel);
    /* the previous state's signatures go: they sign other bytes */
    git_oid_cpy(tree_out, git_tree_id(tip));
    if ((err = imgstore_schema_channel_encode(&bytes, &len, &next)) < 0 ||
        (err = imgstore_store__write_blob(&blob, e->store, bytes, len)) < 0 ||
        (err = imgstore_store__tree_set(tree_out, e->store, dir, NULL, GIT_FILEMODE_TREE)) < 0 ||
        (err = imgstore_store__tree_set(tree_out, e->store, path, &blob, GIT_FILEMODE_BLOB)) < 0 ||
        (err = imgstore_store__signatures_write(tree_out, e->store, dir, &e->opts->signers, bytes,
                                                len)) < 0)
        goto done;
    if (!(*message_out = imgstore_store__move_message(&next)))
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    else
        err = imgstore_schema_channel_parse(&e->written, bytes, len);
done:
    free(bytes);
    imgstore_channel_state_free(current);
    imgstore_manifest_free(manifest);
    imgstore_policy_free(policy);
    return err;
}

static int move_channel(imgstore_channel_state **out, channel_edit *edit)
{
    int err;

    *out = NULL;
    if (!edit->opts || edit->opts->signers.count == 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "%s/%s: a deploy key must sign the channel state (--key)",
                                  edit->name, edit->channel);
    if ((edit->opts->reason &&
         (err = imgstore_schema_check_text("reason", edit->opts->reason)) < 0) ||
        (edit->opts->actor && (err = imgstore_schema_check_text("actor", edit->opts->actor)) < 0))
        return err;
    err = imgstore_store__commit(edit->store, edit->opts->actor, edit->opts->signers.keys[0],
                                 channel_edit_fn, edit);
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
    channel_edit edit = {store, name, channel, "deploy", version, opts, 0, NULL};
    int err;

    *out = NULL;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, channel)) < 0)
        return err;
    return move_channel(out, &edit);
}

int imgstore_store_rollback(imgstore_channel_state **out, imgstore_store *store, const char *name,
                            const char *channel, const imgstore_channel_opts *opts)
{
    channel_edit edit = {store, name, channel, "rollback", NULL, opts, 0, NULL};
    imgstore_channel_state *current = NULL;
    int err;

    *out = NULL;
    if ((err = imgstore_store_channel_get(&current, store, name, channel)) < 0)
        return err;
    /* without a target, the target is the top of the stack the locked move reads */
    if (opts && opts->to_version) {
        if ((err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, opts->to_version)) < 0)
            goto done;
        if (strcmp(opts->to_version, current->version) == 0) {
            err = imgstore_error_set(IMGSTORE_EINVALID, "%s/%s already runs %s", name, channel,
                                     opts->to_version);
            goto done;
        }
        edit.version = opts->to_version;
        edit.expect_sequence = current->sequence;
    }
    err = move_channel(out, &edit);
done:
    imgstore_channel_state_free(current);
    return err;
}
