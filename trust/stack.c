/*
 * The rollback stack a channel state carries (docs/format.md, "Rollback stack"): the one
 * derivation of a move's stack from the state before it, which the store's own moves, its
 * check of a state a client signed, and the remote client all run, and the replay of a
 * channel's history through that same derivation, for states written before the stack
 * existed and for `imgstore verify`. Because the replay is a fold of the derivation, a
 * stack carried from move to move and a stack replayed from the history are equal by
 * construction (tests/store/test_stack.c checks it on random moves). Moved here from
 * store/stack.c (#11): the remote client replays a signed history without a repository.
 *
 * Not here: reading or signing states (store/channel.c, store/signed.c), walking the history
 * (store/history.c), giving a store's legacy state its stack (store/stack.c).
 */
#include "trust/trust.h"

#include <stdlib.h>
#include <string.h>

int imgstore_trust_stack_next(const char **out, size_t *count_out, const char *current,
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

int imgstore_trust_stack_replay(const char **out, size_t *count_out,
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
        if ((err = imgstore_trust_stack_next(below, &depth, current, below, depth,
                                             states[i]->action, states[i]->version)) < 0)
            return err;
        current = states[i]->version;
    }
    memcpy(out, below, depth * sizeof(*out));
    *count_out = depth;
    return 0;
}

int imgstore_trust_rollback_target(const char **out, const imgstore_channel_state *const *states,
                                   size_t count)
{
    const char *stack[IMGSTORE_CHANNEL_STACK_MAX];
    size_t depth = 0;
    int err;

    *out = NULL;
    if ((err = imgstore_trust_stack_replay(stack, &depth, states, count)) < 0)
        return err;
    if (depth > 0)
        *out = stack[0];
    return 0;
}
