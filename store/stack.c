/*
 * A store's side of the rollback stack (docs/format.md, "Rollback stack"): giving a legacy
 * state (written before the stack existed) the stack replayed from the store's history, and
 * checking that a state a client signed carries the stack its move derives. The derivation
 * and the replay themselves are pure and live in trust/stack.c (#11), shared with the remote
 * client.
 *
 * Not here: reading or signing states (channel.c, signed.c), walking the history
 * (history.c).
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

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
    err = imgstore_trust_stack_replay(below, depth_out, states, *count_out);
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
