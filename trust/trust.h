/*
 * The checks on signed documents that need no git repository (docs/security.md): counting a
 * role's signatures against a threshold, verifying a policy chain from a pinned policy 1,
 * the rollback stack a move derives and its replay over a signed history, the highest channel
 * sequence this machine saw (replay protection), and the one SHA-256. The store runs them on
 * what it holds, the remote client (client/) on what a server sent: one piece of code, so a
 * local and a remote verification cannot disagree.
 *
 * A module of its own rather than part of sign/: these checks read policies and channel
 * states (schema/), while sign/ knows only keys and signatures. Uses sign, schema, common
 * and libcrypto; never libgit2, HTTP or argv.
 */
#ifndef IMGSTORE_TRUST_H
#define IMGSTORE_TRUST_H

#include "common/common.h"
#include "schema/schema.h"
#include "sign/sign.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How many signatures of a role's keys a signed document carries (docs/security.md). */
typedef struct {
    size_t valid;       /* distinct keys of the role whose signatures verify */
    uint32_t threshold; /* the role's threshold in the current policy */
    size_t invalid;     /* signature files that are damaged or do not verify; sound signatures
                           by keys outside the role (revoked) are simply not counted */
    bool trusted;       /* valid >= threshold */
} imgstore_trust_status;

/**
 * Count `armored` SSH signatures (namespace "imgstore") over `msg` by distinct keys of `role`
 * in `policy`: out->valid, out->trusted; signatures that are malformed or do not verify are
 * out->invalid (the first one's problem is left in imgstore_error_last()); sound signatures by
 * keys outside the role do not count. Pure: what a remote client runs on what a server sent.
 * Returns 0 or IMGSTORE_EINVALID (bad arguments).
 */
int imgstore_trust_signatures_count(imgstore_trust_status *out, const imgstore_policy *policy,
                                    imgstore_role role, const char *const *armored, size_t count,
                                    const void *msg, size_t len);

/* One policy of the chain: its exact bytes and the root signatures stored beside it. */
typedef struct {
    uint64_t version; /* 0 when the bytes do not parse */
    char *policy;     /* canonical bytes, NUL-terminated */
    size_t policy_len;
    char **signatures; /* armored */
    size_t signature_count;
} imgstore_policy_link;

/** Free a chain's links (each policy's bytes and signatures). NULL-safe. */
void imgstore_policy_chain_free(imgstore_policy_link *links, size_t count);

/**
 * Check a chain (from a store or a server): canonical policies numbered 1, 2, ...; policy
 * 1 signed by a threshold of its own root keys, each later one by a threshold of its
 * predecessor's; no damaged signature. With `pinned_first_sha256` (hex), policy 1's bytes
 * must hash to it (trust on first use). *current_out (may be NULL) gets the last policy.
 * Returns 0 or IMGSTORE_EVERIFY naming the break.
 */
int imgstore_trust_policy_chain_verify(imgstore_policy **current_out,
                                       const imgstore_policy_link *links, size_t count,
                                       const char *pinned_first_sha256);

/* ---- rollback stack (stack.c) ----------------------------------------------------------- */

/**
 * The rollback stack of the state a move writes (docs/format.md, "Rollback stack"): from the
 * current version `current` (NULL for a new channel) and the versions below it, `below`
 * (nearest first, at most IMGSTORE_CHANNEL_STACK_MAX), for `action` ("deploy" or "rollback")
 * to `version`. `out` (room for IMGSTORE_CHANNEL_STACK_MAX; it may be `below` itself) gets
 * pointers borrowed from `current` and `below`, *count_out how many. The one derivation that
 * the store's moves, its check of a client-signed state and the remote client all use. Pure.
 * Returns 0 or IMGSTORE_EINVALID (bad arguments, unknown action).
 */
int imgstore_trust_stack_next(const char **out, size_t *count_out, const char *current,
                              const char *const *below, size_t below_count, const char *action,
                              const char *version);

/**
 * The stack below the newest of a channel's `states` (newest first, as
 * imgstore_store_history lists them): imgstore_trust_stack_next applied oldest first from
 * an empty channel, ignoring the stacks the states carry. What a legacy state's stack is, and
 * what a carried stack must equal. `out` (room for IMGSTORE_CHANNEL_STACK_MAX) gets pointers
 * into `states`. Pure. Returns 0 or IMGSTORE_EINVALID.
 */
int imgstore_trust_stack_replay(const char **out, size_t *count_out,
                                const imgstore_channel_state *const *states, size_t count);

/**
 * The version a rollback without a target goes back to: stack[0] of
 * imgstore_trust_stack_replay over the channel's states (newest first), pointing into
 * `states`, or NULL when there is none. 0, or IMGSTORE_EINVALID (bad arguments).
 */
int imgstore_trust_rollback_target(const char **out, const imgstore_channel_state *const *states,
                                   size_t count);

/* ---- what this machine saw (seen.c) ----------------------------------------------------- */

/**
 * The directory a client keeps its state in (pins/, seen/): $XDG_STATE_HOME/imgstore, else
 * $HOME/.local/state/imgstore. *out is freed with free(). 0 or IMGSTORE_ERROR.
 */
int imgstore_trust_state_dir(char **out);

/**
 * Refuse a channel state older than the highest sequence this machine saw for its store and
 * channel (a replayed or rolled-back state), and remember a higher one (one small JSON file
 * per store under `state_dir`/seen, replaced atomically). `state_dir` NULL: the default of
 * imgstore_trust_state_dir. Returns 0, IMGSTORE_EVERIFY (older than seen), IMGSTORE_ERROR.
 */
int imgstore_trust_seen_update(const char *state_dir, const char *store_id,
                               const imgstore_channel_state *state);

/* ---- hashing (sha256.c: shared by store, server, client and CLI: one SHA-256) ----------- */

typedef struct imgstore_sha256 imgstore_sha256;
int imgstore_sha256_new(imgstore_sha256 **out);
void imgstore_sha256_update(imgstore_sha256 *ctx, const void *buf, size_t len);
/** Write 64 hex digits and a NUL into hex (65 bytes) and reset the context. */
void imgstore_sha256_final_hex(imgstore_sha256 *ctx, char *hex);
void imgstore_sha256_free(imgstore_sha256 *ctx);

/** sha256 of a buffer, 64 hex digits and a NUL. 0 or IMGSTORE_ERROR. */
int imgstore_sha256_hex(char out[65], const void *buf, size_t len);

#endif
