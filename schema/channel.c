/*
 * Channel states: which version of an image a channel points at, who moved it there and why,
 * as canonical JSON (the same rules and canonical form as manifests; see manifest.c). Like
 * manifests, encode runs the parser's checks on what it returns, so every encoded state
 * parses. The shape is documented in schema/channel.schema.json. How states are stored, and
 * whether a sequence number really increases, is the store's business.
 */
#include "schema/schema_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A state is a few names and two short texts; anything near this size is not one. */
#define CHANNEL_MAX_BYTES (64u * 1024)

#define TEXT_LEN_MAX (IMGSTORE_TEXT_MAX - 1)

static const char *const channel_keys[] = {
    "schema",  "name",  "channel", "version", "manifest_sha256",  "sequence", "time",
    "expires", "actor", "action",  "reason",  "previous_version", "stack",    NULL,
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
    for (size_t i = 0; i < state->stack_count && i < IMGSTORE_CHANNEL_STACK_MAX; i++)
        free(state->stack[i]);
    free(state);
}

/* "stack": absent in a legacy state; else at most IMGSTORE_CHANNEL_STACK_MAX versions. */
static int read_stack(imgstore_channel_state *state, const json_t *root,
                      const imgstore_schema__at *at)
{
    imgstore_schema__at item;
    json_t *stack, *value;
    char prefix[256];
    size_t i;
    int err;

    if ((err = imgstore_schema__field(&stack, root, at, "stack", JSON_ARRAY, false)) < 0 || !stack)
        return err;
    if (json_array_size(stack) > IMGSTORE_CHANNEL_STACK_MAX)
        return imgstore_schema__fail(at, "stack", "must hold at most %d versions, found %zu",
                                     IMGSTORE_CHANNEL_STACK_MAX, json_array_size(stack));
    state->has_stack = true;
    json_array_foreach(stack, i, value)
    {
        imgstore_schema__at_index(&item, at, "stack", i);
        if (!json_is_string(value))
            return imgstore_schema__fail(&item, NULL, "expected a string");
        if ((err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, json_string_value(value))) <
            0) {
            snprintf(prefix, sizeof(prefix), "channel: %s: ", item.path);
            return imgstore_error_wrap(err, "%s", prefix);
        }
        if (!(state->stack[i] = strdup(json_string_value(value))))
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        state->stack_count = i + 1;
    }
    return 0;
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
                                     IMGSTORE_NAME_VERSION, false)) < 0 ||
        (err = read_stack(state, root, &at)) < 0)
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

static int build_stack(json_t *root, const imgstore_schema__at *at,
                       const imgstore_channel_state *state)
{
    json_t *stack;
    int err;

    if (!state->has_stack)
        return 0;
    /* the reader refuses too many; stop here before walking a bogus count */
    if (state->stack_count > IMGSTORE_CHANNEL_STACK_MAX)
        return imgstore_schema__fail(at, "stack", "must hold at most %d versions, found %zu",
                                     IMGSTORE_CHANNEL_STACK_MAX, state->stack_count);
    if (!(stack = json_array()))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t i = 0; i < state->stack_count; i++) {
        imgstore_schema__at item;

        imgstore_schema__at_index(&item, at, "stack", i);
        if (!state->stack[i] ||
            !imgstore_schema__utf8_valid(state->stack[i], strlen(state->stack[i]))) {
            json_decref(stack);
            return imgstore_schema__fail(&item, NULL, "missing or not valid UTF-8");
        }
        if ((err = imgstore_schema__append_new(stack, json_string(state->stack[i]))) < 0) {
            json_decref(stack);
            return err;
        }
    }
    return imgstore_schema__set_new(root, "stack", stack);
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
                                           state->previous_version)) < 0 ||
        (err = build_stack(root, &at, state)) < 0)
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
