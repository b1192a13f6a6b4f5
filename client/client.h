/*
 * The remote client: `imgstore serve` over HTTP(S) through libcurl, as a library that the CLI
 * (`imgstore ... --server URL`) and a host agent share. It believes nothing the server says
 * until it checked it (docs/security.md, "What a client checks"): the policy chain from a
 * pinned policy 1, release signatures on the exact manifest bytes, deploy signatures, expiry
 * and the sequence this machine last saw on channel states, and the rollback stack replayed
 * over a signed history. The checks themselves are trust/'s, shared with the store.
 *
 * Same shapes as store/store.h: an opaque handle, results through out-parameters, failures
 * as IMGSTORE_E* codes with a one-line message in imgstore_error_last(). Knows nothing of
 * argv, stdout or exit codes, and never links libgit2. One handle is used by one thread at a
 * time (it keeps one connection alive between requests).
 */
#ifndef IMGSTORE_CLIENT_H
#define IMGSTORE_CLIENT_H

#include "common/common.h"
#include "schema/schema.h"
#include "sign/sign.h"
#include "trust/trust.h"

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct imgstore_client imgstore_client;

/* How to reach a server and where to remember what it showed. Copied by open. */
typedef struct {
    const char *server_url;          /* required: http://HOST[:PORT] or https://... */
    const char *token;               /* bearer token, NULL for none */
    const char *trust_policy_sha256; /* policy 1's sha256 (64 hex); NULL: the one pinned for
                                        the store id in state_dir, else pin on first use */
    const char *state_dir;           /* pins/ and seen/ live here; NULL: the default of
                                        imgstore_trust_state_dir() */
    const char *tls_ca_file;         /* CA bundle for https; NULL: the system's */
    imgstore_progress_fn progress;   /* uploads and downloads report here; may be NULL */
    void *progress_payload;
    const volatile sig_atomic_t *stop; /* a transfer is abandoned when it becomes nonzero
                                          (IMGSTORE_ERROR, "interrupted"); may be NULL */
} imgstore_client_opts;

/**
 * Check the options and set up a handle; nothing is sent yet. *out belongs to the caller
 * (imgstore_client_free()). Returns 0, IMGSTORE_EINVALID (no URL, not http(s), a line break
 * in the token, a pin that is not 64 lower-case hex digits), IMGSTORE_ERROR.
 */
int imgstore_client_open(imgstore_client **out, const imgstore_client_opts *opts);

/** Close the connection and free. NULL-safe. */
void imgstore_client_free(imgstore_client *client);

/** The server's base URL, without a trailing slash. Borrowed from `client`. */
const char *imgstore_client_url(const imgstore_client *client);

/**
 * Whether the last request failed before any answer arrived (refused, unreachable, timed
 * out, cut): worth a retry later, unlike an answer that said no.
 */
bool imgstore_client_offline(const imgstore_client *client);

/**
 * Change what progress reports go to (NULL: none) and the total to report against (0: what
 * the server announces); `base` is added to every count, for several transfers under one bar.
 */
void imgstore_client_set_progress(imgstore_client *client, imgstore_progress_fn progress,
                                  void *payload, uint64_t base, uint64_t total);

/** Change the flag that abandons a transfer when it becomes nonzero (NULL: none). */
void imgstore_client_set_stop(imgstore_client *client, const volatile sig_atomic_t *stop);

/* ---- trust ---------------------------------------------------------------------------- */

/**
 * Fetch the policy chain and verify it: policy 1 against the pin (the option, else the one
 * remembered for the store id, else pinned now: trust on first use), each later policy signed
 * by its predecessor's roots. The handle keeps the verified policy; every call below that
 * needs it loads it first when it is not loaded yet. Calling again reloads it (a policy
 * update). Returns 0, IMGSTORE_EVERIFY (a break in the chain, a pin mismatch, a malformed
 * answer), IMGSTORE_EINVALID (a damaged pin file), transport and HTTP errors.
 */
int imgstore_client_policy_load(imgstore_client *client);

/** The verified current policy, NULL before imgstore_client_policy_load(). Borrowed. */
const imgstore_policy *imgstore_client_policy(const imgstore_client *client);

/** How many policies the verified chain holds (0 before loading). */
uint64_t imgstore_client_policy_count(const imgstore_client *client);

/** The server's store id (40 hex), "" before loading. Borrowed. */
const char *imgstore_client_store_id(const imgstore_client *client);

/* ---- manifests and files -------------------------------------------------------------- */

/* A manifest as checked: its exact signed bytes and its release signatures under the
 * verified policy. Owned by the caller; imgstore_client_manifest_clear() frees the members. */
typedef struct {
    imgstore_manifest *manifest;
    char *bytes; /* the exact canonical bytes signed, NUL-terminated */
    size_t len;
    char sha256[65];
    imgstore_trust_status status;
} imgstore_client_manifest;

/**
 * Fetch NAME@VERSION's manifest bytes and signatures; check the bytes are canonical, name
 * this very version, and count the release signatures. With `require_trusted`, fewer than the
 * threshold is IMGSTORE_EVERIFY. Returns 0, IMGSTORE_ENOTFOUND, IMGSTORE_EVERIFY,
 * IMGSTORE_EINVALID (bad names), transport and HTTP errors.
 */
int imgstore_client_manifest_fetch(imgstore_client_manifest *out, imgstore_client *client,
                                   const char *name, const char *version, bool require_trusted);
void imgstore_client_manifest_clear(imgstore_client_manifest *m);

/**
 * A version's manifest, refused unless a threshold of release keys signed it: the remote
 * twin of imgstore_store_manifest_get_trusted. `digest_out` (may be NULL, 65 bytes) gets the
 * sha256 of its bytes. Returns as imgstore_client_manifest_fetch.
 */
int imgstore_client_manifest_get_trusted(imgstore_manifest **out, char *digest_out,
                                         imgstore_client *client, const char *name,
                                         const char *version);

/* Receives a file's bytes; `restarted` is true when the server ignored the resume offset and
 * sends the file from byte 0 (the caller starts its copy over). */
typedef int (*imgstore_client_write_fn)(bool restarted, const void *buf, size_t len, void *payload);

/**
 * Stream FILE of NAME@VERSION from byte `offset` on (an HTTP Range request when offset > 0)
 * into `write`. A transfer the server cuts before its end (it does so when a chunk fails its
 * digest, and a connection can be lost) is asked once more from where it stopped; a server
 * that stops again without sending one more byte refuses that chunk: IMGSTORE_EVERIFY. The
 * bytes are not checked here: the caller hashes the whole file (its resumed prefix included)
 * and compares it with a verified manifest's digest. Returns 0, IMGSTORE_ENOTFOUND,
 * IMGSTORE_EINVALID (bad names, offset past the end), IMGSTORE_EVERIFY, the write function's
 * error, transport and HTTP errors.
 */
int imgstore_client_file_read(imgstore_client *client, const char *name, const char *version,
                              const char *file, uint64_t offset, imgstore_client_write_fn write,
                              void *payload);

/**
 * imgstore_client_file_read without the second request after a cut: a transfer the server
 * cuts is IMGSTORE_ERROR. For callers that stream to where nothing can be resumed (a pipe).
 */
int imgstore_client_file_read_once(imgstore_client *client, const char *name, const char *version,
                                   const char *file, uint64_t offset,
                                   imgstore_client_write_fn write, void *payload);

/**
 * Pull FILE (an entry of the verified manifest M) into `fd`, a partial file opened read-write
 * at `path`, resuming: the bytes an earlier, interrupted pull left in it are kept and hashed
 * (a file longer than FILE starts over), the rest is read from there on (progress reports
 * count the kept bytes as done), and the whole is checked against FILE's size and sha256.
 * Returns 0 (fd holds exactly FILE, not yet synced); IMGSTORE_EVERIFY with `path` removed
 * when the bytes do not match; the errors of imgstore_client_file_read (the partial file stays
 * for a later pull to resume; the caller decides); IMGSTORE_ERROR for local I/O.
 */
int imgstore_client_file_pull_fd(imgstore_client *client, const imgstore_manifest *m,
                                 const imgstore_manifest_file *file, int fd, const char *path);

/* ---- push and sign -------------------------------------------------------------------- */

typedef struct {
    const char *name;         /* required */
    const char *version;      /* NULL: the server derives it from the files' digests */
    const char *kind;         /* NULL: the server detects each file's kind */
    const char *const *files; /* local paths; each is sent under its base name */
    size_t file_count;
    const char *const *labels; /* "key=value", may be NULL */
    size_t label_count;
    const char *source; /* "REPOSITORY@COMMIT", may be NULL */
} imgstore_client_push_opts;

/**
 * Upload files as one version: each file is hashed from disk first, then streamed as a
 * multipart part after its digest (never held in memory). Then the stored manifest is fetched
 * and checked to hold exactly the files, sizes, digests and provenance sent. *out gets it
 * (with its release signatures: not trusted when the server holds no release key; sign it
 * with imgstore_client_sign). *created_out (may be NULL) says whether the version is new.
 * Returns 0, IMGSTORE_EINVALID, IMGSTORE_ENOTFOUND (a file), IMGSTORE_EEXISTS (the version
 * exists with other files), IMGSTORE_EVERIFY (the server stored something else), transport
 * and HTTP errors.
 */
int imgstore_client_push(imgstore_client_manifest *out, bool *created_out, imgstore_client *client,
                         const imgstore_client_push_opts *opts);

/**
 * Sign `m`'s bytes (fetched and checked by this client, never refetched for signing) with
 * each of `keys` that is a release key of the policy, hand the signatures to the server,
 * then refetch `m` (the same bytes, now with the new signatures counted). Returns 0,
 * IMGSTORE_EVERIFY (no key is a release key, or the server's bytes changed), transport and
 * HTTP errors.
 */
int imgstore_client_sign(imgstore_client_manifest *m, imgstore_client *client,
                         const imgstore_sign_key *const *keys, size_t key_count);

/* ---- channels ------------------------------------------------------------------------- */

/**
 * A channel's live state, checked: a threshold of deploy signatures, this image and channel,
 * not expired (unless `allow_expired`, for writers and watchers), not older than the sequence
 * this machine saw (which is then updated). `status_out` (may be NULL) gets the deploy
 * signatures counted. Returns 0, IMGSTORE_ENOTFOUND (no such channel), IMGSTORE_EVERIFY,
 * transport and HTTP errors.
 */
int imgstore_client_channel_get(imgstore_channel_state **out, imgstore_trust_status *status_out,
                                imgstore_client *client, const char *name, const char *channel,
                                bool allow_expired);

/**
 * Check a signed channel state as the server sends it ({"state": exact bytes, "signatures":
 * [...]}): it parses, is for this image and channel, and carries a threshold of deploy
 * signatures under the verified policy; no expiry or replay check. `what` names it in errors.
 * `status_out` may be NULL. Returns 0, IMGSTORE_EVERIFY.
 */
int imgstore_client_state_check(imgstore_channel_state **out, imgstore_trust_status *status_out,
                                imgstore_client *client, json_t *signed_state, const char *name,
                                const char *channel, const char *what);

/* Who moves a channel: with keys (all deploy keys of the policy), the client builds and signs
 * the next state itself; without (count 0), it asks the server to sign with its own key. */
typedef struct {
    const imgstore_sign_key *const *keys;
    size_t key_count;
    const char *actor;  /* the state's actor when signing here; required then */
    const char *reason; /* may be NULL */
} imgstore_client_move;

/** Whether every key is a deploy key of the verified policy (false for none). */
bool imgstore_client_deploy_keys(const imgstore_client *client,
                                 const imgstore_sign_key *const *keys, size_t key_count);

/**
 * Put VERSION (release-trusted) on a channel. With keys: build the next state on the verified
 * live one (next sequence, the stack derived by imgstore_trust_stack_next) and post it,
 * rebuilding on 409 a bounded number of times; a live, fresh state of that version is left
 * as it is. Without: the server's deploy. *out (caller frees) is the verified state written.
 * Returns 0, IMGSTORE_ENOTFOUND, IMGSTORE_EVERIFY, IMGSTORE_ELOCKED, transport and HTTP errors.
 */
int imgstore_client_deploy(imgstore_channel_state **out, imgstore_client *client, const char *name,
                           const char *channel, const char *version,
                           const imgstore_client_move *move);

/**
 * Move a channel back to `to`, or (NULL) to the top of the live state's rollback stack, found
 * by replaying the verified signed history for a state that carries none. `move->reason` is
 * signed into the state. *out (caller frees) is the signed result. Returns as
 * imgstore_client_deploy, plus IMGSTORE_ENOTFOUND (nothing to go back to).
 */
int imgstore_client_rollback(imgstore_channel_state **out, imgstore_client *client,
                             const char *name, const char *channel, const char *to,
                             const imgstore_client_move *move);

/* One page of history; the server pages and searches with its indexes. */
typedef struct {
    uint64_t limit;  /* at most this many entries; 0: the server's default */
    uint64_t before; /* entries below this row; 0: from the newest */
    bool has_at;     /* only the entry in effect at `at` */
    int64_t at;      /* unix seconds */
} imgstore_client_history_query;

/**
 * A page of an image's history (channel NULL: pushes and moves) or a channel's, newest first,
 * as the server lists it (schema/api_history.schema.json): *entries_out a new reference to the
 * "entries" array, *next_out (may be NULL) the `before` of the next page, 0 at the end. Listing
 * only: rows are not verified (imgstore_client_channel_get and the rollback path verify what
 * they act on). Returns 0, IMGSTORE_EINVALID, transport and HTTP errors.
 */
int imgstore_client_history(json_t **entries_out, uint64_t *next_out, imgstore_client *client,
                            const char *name, const char *channel,
                            const imgstore_client_history_query *query);

/**
 * Wait up to `timeout_seconds` (1..60, the server's long-poll) for the channel to move past
 * sequence `after`. *out is then the new state, verified as imgstore_client_channel_get does
 * (the policy is reloaded once if it no longer verifies), or NULL when nothing moved in time,
 * the channel does not exist yet, or the server was busy (after a pause of a second: call
 * again). Returns 0,
 * IMGSTORE_EVERIFY, IMGSTORE_EINVALID, transport errors (imgstore_client_offline() then says
 * whether to retry).
 */
int imgstore_client_watch(imgstore_channel_state **out, imgstore_client *client, const char *name,
                          const char *channel, uint64_t after, unsigned timeout_seconds);

/**
 * Check names before they go into a URL (each may be NULL), so none ever needs escaping:
 * the schema's rules for image, version and channel names. 0 or IMGSTORE_EINVALID.
 */
int imgstore_client_check_names(const char *image, const char *version, const char *channel);

/* ---- host reports (report.c) ------------------------------------------------------------ */

/* What a host's agent says about itself (docs/agent.md): an unsigned claim. */
typedef struct {
    const char *host;      /* required */
    const char *state;     /* required: "ok", "failed", "rolled-back" */
    const char *version;   /* what runs now, may be NULL */
    const char *attempted; /* what it tried and left, may be NULL */
    const char *message;   /* one line, may be NULL */
} imgstore_client_report_opts;

/**
 * POST a host report to the channel (scope report, deploy or admin). *host_verified_out (may
 * be NULL) says whether the server vouched for the host name: true when the token is bound
 * to that host (imgstore token create --host). Returns 0, IMGSTORE_EINVALID,
 * IMGSTORE_ENOTFOUND (no such channel), transport and HTTP errors (a token bound to another
 * host or image: HTTP 403).
 */
int imgstore_client_report(bool *host_verified_out, imgstore_client *client, const char *name,
                           const char *channel, const imgstore_client_report_opts *report);

/* ---- unverified reads --------------------------------------------------------------------- */

/**
 * GET an API path ("/v1/...") whose answer is a JSON object: listings and image summaries
 * that are shown, never acted on. *out is a new reference. Returns 0, IMGSTORE_EINVALID
 * (not a JSON object, over 8 MiB), transport and HTTP errors.
 */
int imgstore_client_get_json(json_t **out, imgstore_client *client, const char *path);

#endif
