/*
 * The rollback stack a channel state carries (docs/format.md, "Rollback stack"): the one
 * derivation of a move's stack from the state before it, which the store's own moves, its
 * check of a state a client signed, and the remote client all run, and the replay of a
 * channel's history through that same derivation, for states written before the stack
 * existed and for `imgstore verify`. Because the replay is a fold of the derivation, a
 * stack carried from move to move and a stack replayed from the history are equal by
 * construction (tests/store/test_stack.c checks it on random moves).
 *
 * Not here: reading or signing states (channel.c, signed.c), walking the history
 * (history.c).
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

int imgstore_store_stack_next(const char **out, size_t *count_out, const char *current,
                              const char *const *below, size_t below_count, const char *action,
                              const char *version)
{
    bool rollback;
    size_t count;

    *count_out = 0;
    if (!action || !version || below_count > IMGSTORE_CHANNEL_STACK_MAX ||
        (below_count && !below) || (!current && below_count))
        return imgstore_error_set(IMGSTORE_EINVALID, "stack: bad arguments");
    rollback = strcmp(action, "rollback") == 0;
    if (!rollback && strcmp(action, "deploy") != 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "stack: unknown move '%s'", action);
    if (!current)
        return 0; /* a new channel: nothing below its first version */
    /* a deploy of the live version only refreshes the state, and a rollback to the nearest
     * copy of its target pops everything above it: neither pushes the version it leaves */
    if (strcmp(version, current) == 0) {
        memmove(out, below, below_count * sizeof(*out));
        *count_out = below_count;
        return 0;
    }
    if (rollback) {
        for (size_t i = 0; i < below_count; i++) {
            if (strcmp(below[i], version) == 0) {
                memmove(out, below + i + 1, (below_count - i - 1) * sizeof(*out));
                *count_out = below_count - i - 1;
                return 0;
            }
        }
    }
    /* a deploy, or a rollback to a version not on the stack: the one left goes on top, and
     * the oldest falls off past the cap */
    count = below_count < IMGSTORE_CHANNEL_STACK_MAX ? below_count : IMGSTORE_CHANNEL_STACK_MAX - 1;
    memmove(out + 1, below, count * sizeof(*out));
    out[0] = current;
    *count_out = count + 1;
    return 0;
}

int imgstore_store_stack_replay(const char **out, size_t *count_out,
                                const imgstore_channel_state *const *states, size_t count)
{
    const char *below[IMGSTORE_CHANNEL_STACK_MAX];
    const char *current = NULL;
    size_t depth = 0;
    int err;

    *count_out = 0;
    if (count && !states)
        return imgstore_error_set(IMGSTORE_EINVALID, "stack: bad arguments");
    for (size_t i = count; i-- > 0;) {
        if (!states[i])
            return imgstore_error_set(IMGSTORE_EINVALID, "stack: bad arguments");
        if ((err = imgstore_store_stack_next(below, &depth, current, below, depth,
                                             states[i]->action, states[i]->version)) < 0)
            return err;
        current = states[i]->version;
    }
    memcpy(out, below, depth * sizeof(*out));
    *count_out = depth;
    return 0;
}

/* Replace `state`'s stack by copies of `versions`. */
static int stack_set(imgstore_channel_state *state, const char *const *versions, size_t count)
{
    char *copies[IMGSTORE_CHANNEL_STACK_MAX];

    for (size_t i = 0; i < count; i++) {
        if (!(copies[i] = strdup(versions[i]))) {
            while (i-- > 0)
                free(copies[i]);
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        }
    }
    for (size_t i = 0; i < state->stack_count; i++)
        free(state->stack[i]);
    memcpy(state->stack, copies, count * sizeof(*copies));
    state->stack_count = count;
    state->has_stack = true;
    return 0;
}

/* The stack replayed from the history of `state`'s channel, which must end at `state`:
 * `below` points into *history_out, which the caller frees. */
static int replay_history(const char **below, size_t *depth_out,
                          imgstore_history_entry **history_out, size_t *count_out,
                          imgstore_store *store, const imgstore_channel_state *state)
{
    const imgstore_channel_state **states = NULL;
    int err;

    *history_out = NULL;
    *count_out = 0;
    if ((err = imgstore_store_history(history_out, count_out, store, state->name, state->channel)) <
        0)
        return err;
    /* the history must end at the state given, or the replay answers for another one */
    if (*count_out == 0 || (*history_out)[0].state->sequence != state->sequence)
        return imgstore_error_set(IMGSTORE_ELOCKED, "%s/%s moved while its history was read",
                                  state->name, state->channel);
    if (!(states = calloc(*count_out, sizeof(*states))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t i = 0; i < *count_out; i++)
        states[i] = (*history_out)[i].state;
    err = imgstore_store_stack_replay(below, depth_out, states, *count_out);
    free(states);
    return err;
}

int imgstore_store__stack_replayed(imgstore_channel_state *current, imgstore_store *store)
{
    imgstore_history_entry *history = NULL;
    const char *below[IMGSTORE_CHANNEL_STACK_MAX];
    size_t count = 0, depth = 0;
    int err;

    if ((err = replay_history(below, &depth, &history, &count, store, current)) == 0)
        err = stack_set(current, below, depth);
    imgstore_history_free(history, count);
    return err;
}

int imgstore_store__stack_check(imgstore_store *store, const imgstore_channel_state *state)
{
    imgstore_history_entry *history = NULL;
    const char *below[IMGSTORE_CHANNEL_STACK_MAX];
    size_t count = 0, depth = 0;
    int err;

    if (!state->has_stack)
        return 0;
    if ((err = replay_history(below, &depth, &history, &count, store, state)) < 0)
        goto done;
    for (size_t i = 0; i < depth || i < state->stack_count; i++) {
        const char *carried = i < state->stack_count ? state->stack[i] : "(none)";
        const char *replayed = i < depth ? below[i] : "(none)";

        if (strcmp(carried, replayed) != 0) {
            err = imgstore_error_set(IMGSTORE_EVERIFY,
                                     "%s/%s: the state's stack[%zu] is %s but its history "
                                     "replays to %s",
                                     state->name, state->channel, i, carried, replayed);
            break;
        }
    }
done:
    imgstore_history_free(history, count);
    return err;
}
