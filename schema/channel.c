/*
 * Channel states: which version of an image a channel points at, who moved it there and why,
 * as canonical JSON (the same rules and canonical form as manifests; see manifest.c). Like
 * manifests, encode runs the parser's checks on what it returns, so every encoded state
 * parses. The shape is documented in schema/channel.schema.json. How states are stored, and
 * whether a sequence number really increases, is the store's business.
 */
#include "schema/schema_internal.h"

#include <stdlib.h>
#include <string.h>

/* A state is a few names and two short texts; anything near this size is not one. */
#define CHANNEL_MAX_BYTES (64u * 1024)

#define TEXT_LEN_MAX (IMGSTORE_TEXT_MAX - 1)

static const char *const channel_keys[] = {
    "schema",  "name",  "channel", "version", "manifest_sha256",  "sequence", "time",
    "expires", "actor", "action",  "reason",  "previous_version", NULL,
};

static const char *const actions[] = {"deploy", "rollback", NULL};

void imgstore_channel_state_free(imgstore_channel_state *state)
{
    if (!state)
        return;
    free(state->name);
    free(state->channel);
    free(state->version);
    free(state->time);
    free(state->expires);
    free(state->actor);
    free(state->action);
    free(state->reason);
    free(state->previous_version);
    free(state);
}

static int read_channel(imgstore_channel_state **out, const json_t *root)
{
    imgstore_channel_state *state = NULL;
    imgstore_schema__at at;
    const char *schema;
    int err;

    *out = NULL;
    imgstore_schema__at_root(&at, "channel");
    if (!(state = calloc(1, sizeof(*state)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = imgstore_schema__keys(root, &at, channel_keys)) < 0 ||
        (err = imgstore_schema__string(&schema, root, &at, "schema", 0, SIZE_MAX, true)) < 0)
        goto done;
    if (strcmp(schema, IMGSTORE_CHANNEL_SCHEMA) != 0) {
        err = imgstore_schema__fail(&at, "schema", "expected '" IMGSTORE_CHANNEL_SCHEMA "'");
        goto done;
    }
    if ((err = imgstore_schema__name(&state->name, root, &at, "name", IMGSTORE_NAME_IMAGE, true)) <
            0 ||
        (err = imgstore_schema__name(&state->channel, root, &at, "channel", IMGSTORE_NAME_CHANNEL,
                                     true)) < 0 ||
        (err = imgstore_schema__name(&state->version, root, &at, "version", IMGSTORE_NAME_VERSION,
                                     true)) < 0 ||
        (err = imgstore_schema__sha256(state->manifest_sha256, root, &at, "manifest_sha256")) < 0 ||
        (err = imgstore_schema__uint(&state->sequence, root, &at, "sequence", 1,
                                     IMGSTORE_SCHEMA__INT_MAX, true)) < 0 ||
        (err = imgstore_schema__time(&state->time, root, &at, "time", true)) < 0 ||
        (err = imgstore_schema__time(&state->expires, root, &at, "expires", false)) < 0 ||
        (err = imgstore_schema__line(&state->actor, root, &at, "actor", 1, true)) < 0 ||
        (err = imgstore_schema__text(&state->action, root, &at, "action", 1, TEXT_LEN_MAX, true)) <
            0 ||
        (err = imgstore_schema__one_of(state->action, &at, "action", actions)) < 0 ||
        (err = imgstore_schema__line(&state->reason, root, &at, "reason", 1, false)) < 0 ||
        (err = imgstore_schema__name(&state->previous_version, root, &at, "previous_version",
                                     IMGSTORE_NAME_VERSION, false)) < 0)
        goto done;
    *out = state;
    state = NULL;
done:
    imgstore_channel_state_free(state);
    return err;
}

int imgstore_schema_channel_parse(imgstore_channel_state **out, const char *buf, size_t len)
{
    json_t *root = NULL;
    int err;

    if (!out)
        return imgstore_error_set(IMGSTORE_EINVALID, "channel: no place for the result");
    *out = NULL;
    if ((err = imgstore_schema__load(&root, "channel", buf, len, CHANNEL_MAX_BYTES)) < 0)
        return err;
    err = read_channel(out, root);
    json_decref(root);
    return err;
}

/* Builds without validating: the caller runs read_channel() on the result when it must. */
static int build_channel(json_t **out, const imgstore_channel_state *state)
{
    imgstore_schema__at at;
    json_t *root = NULL;
    int err;

    *out = NULL;
    imgstore_schema__at_root(&at, "channel");
    if (!state) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "channel: none given");
        goto done;
    }
    if (!(root = json_object())) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (!memchr(state->manifest_sha256, '\0', sizeof(state->manifest_sha256))) {
        err = imgstore_schema__fail(&at, "manifest_sha256", "not NUL-terminated");
        goto done;
    }
    if ((err = imgstore_schema__set_string(root, &at, "schema", IMGSTORE_CHANNEL_SCHEMA)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "name", state->name)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "channel", state->channel)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "version", state->version)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "manifest_sha256", state->manifest_sha256)) <
            0 ||
        (err = imgstore_schema__set_uint(root, &at, "sequence", state->sequence)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "time", state->time)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "expires", state->expires)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "actor", state->actor)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "action", state->action)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "reason", state->reason)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "previous_version",
                                           state->previous_version)) < 0)
        goto done;
    *out = root;
    root = NULL;
done:
    json_decref(root);
    return err;
}

json_t *imgstore_schema_channel_to_json(const imgstore_channel_state *state)
{
    json_t *root;

    if (build_channel(&root, state) < 0)
        return NULL;
    return root;
}

int imgstore_schema_channel_encode(char **out, size_t *len_out, const imgstore_channel_state *state)
{
    imgstore_channel_state *checked = NULL;
    json_t *root = NULL;
    int err;

    if (!out || !len_out)
        return imgstore_error_set(IMGSTORE_EINVALID, "channel: no place for the result");
    *out = NULL;
    *len_out = 0;
    if ((err = build_channel(&root, state)) < 0 || (err = read_channel(&checked, root)) < 0)
        goto done;
    err = imgstore_schema__dump(out, len_out, root, "channel", CHANNEL_MAX_BYTES);
done:
    imgstore_channel_state_free(checked);
    json_decref(root);
    return err;
}
