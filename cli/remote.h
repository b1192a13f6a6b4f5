/*
 * Remote mode: the CLI against `imgstore serve` over HTTP (libcurl). Shared by the
 * cli/remote*.c files only; the rest of the CLI sees cli_remote_selected() and the
 * cli_remote_cmd_* entry points declared in cli/cli.h.
 *
 * Nothing the server says is trusted: every signed document it hands out is checked here
 * against the policy chain this machine pinned (docs/security.md, "What a client checks").
 */
#ifndef IMGSTORE_CLI_REMOTE_H
#define IMGSTORE_CLI_REMOTE_H

#include "cli/cli.h"

#include <curl/curl.h>
#include <signal.h>

/* Caps on what the client accepts from a server, so a hostile one cannot exhaust memory. */
#define CLI_REMOTE_JSON_MAX     (8u * 1024 * 1024)
#define CLI_REMOTE_ERROR_MAX    (64u * 1024)
#define CLI_REMOTE_POLICIES_MAX 4096

typedef struct {
    char *url;              /* base URL, no trailing slash */
    char *token;            /* bearer token, NULL for none */
    const char *pin;        /* --trust-policy-sha256 / $IMGSTORE_TRUST_POLICY_SHA256, or NULL */
    CURL *curl;             /* one handle, so connections are kept alive between requests */
    cli_progress *progress; /* drawn during uploads and downloads, may be NULL */
    uint64_t progress_base, progress_total;
    const volatile sig_atomic_t *stop; /* abort the transfer when it becomes nonzero */
    CURLcode last_result; /* libcurl's result of the last request (CURLE_PARTIAL_FILE: cut) */
} cli_remote;

/** Resolve server, token and pin (flags, environment, config file) and set up libcurl. */
int cli_remote_open(cli_remote *out, const cli_remote_args *args);
void cli_remote_close(cli_remote *remote);

typedef struct {
    long status;
    char *body; /* NUL-terminated, free() */
    size_t len;
} cli_remote_response;

/**
 * One request: `method` on `path` (from /v1...), with a JSON body (NULL for none). The answer
 * is read into resp (at most `cap` bytes: IMGSTORE_EINVALID past it). Returns 0 when an
 * answer arrived, whatever its status; IMGSTORE_ERROR when the server could not be reached.
 */
int cli_remote_call(cli_remote *remote, const char *method, const char *path, const char *json,
                    size_t cap, cli_remote_response *resp);

/** 0 for a 2xx answer, else the error its status maps to, with the server's message. */
int cli_remote_status_error(const cli_remote *remote, const char *path,
                            const cli_remote_response *resp);

void cli_remote_response_free(cli_remote_response *resp);

/** GET a JSON object (2xx only). *out is a new reference. */
int cli_remote_get_json(json_t **out, cli_remote *remote, const char *path);

/** Request with a JSON body (stolen; NULL for none) and parse the JSON answer (2xx only);
 * *status_out (may be NULL) gets the status even on failure. */
int cli_remote_send_json(json_t **out, long *status_out, cli_remote *remote, const char *method,
                         const char *path, json_t *body);

/** GET raw bytes (2xx only), at most `cap`. *out is NUL-terminated, free(). */
int cli_remote_get_bytes(char **out, size_t *len_out, cli_remote *remote, const char *path,
                         size_t cap);

/* Receives a download's body; `status` is the answer's (200 or 206). */
typedef int (*cli_remote_body_fn)(long status, const void *buf, size_t len, void *payload);

/** GET `path` from byte `offset` on (a Range request when offset > 0), streaming the body to
 * `body`. Non-2xx answers are errors as cli_remote_status_error() says. */
int cli_remote_download(cli_remote *remote, const char *path, uint64_t offset,
                        cli_remote_body_fn body, void *payload);

typedef struct {
    const char *path;   /* local file */
    const char *name;   /* file name in the version */
    const char *sha256; /* its digest, computed in a first pass */
    const char *kind;   /* NULL: let the server detect */
    uint64_t size;
} cli_remote_upload_file;

/* A form field sent before every file part (the provenance fields "label" and "source"). */
typedef struct {
    const char *name;
    const char *value;
} cli_remote_form_field;

/** POST a multipart upload to `path`: the `fields` first, then each file streamed from disk. */
int cli_remote_upload(json_t **out, cli_remote *remote, const char *path,
                      const cli_remote_form_field *fields, size_t field_count,
                      const cli_remote_upload_file *files, size_t count);

/* ---- what the client checks (remote_trust.c) ------------------------------------------ */

typedef struct {
    char store_id[41];
    char tip[41];
    imgstore_policy *policy; /* the current (last) policy of a verified chain */
    uint64_t policy_count;
} cli_remote_trust;

/**
 * Fetch the policy chain and verify it: policy 1 against the pin (explicit, else the one
 * remembered for the store id, else pinned now: trust on first use), each later policy
 * signed by its predecessor's roots. Returns 0, IMGSTORE_EVERIFY, transport errors.
 */
int cli_remote_trust_load(cli_remote_trust *out, cli_remote *remote);
void cli_remote_trust_free(cli_remote_trust *trust);

typedef struct {
    imgstore_manifest *manifest;
    char *bytes; /* the exact canonical bytes signed */
    size_t len;
    char sha256[65];
    imgstore_trust_status status; /* release signatures under the current policy */
} cli_remote_manifest;

/**
 * Fetch NAME@VERSION's manifest bytes and signatures; check the bytes parse, name this very
 * version, and count the release signatures. With `require_trusted`, fewer than the
 * threshold is IMGSTORE_EVERIFY.
 */
int cli_remote_manifest_fetch(cli_remote_manifest *out, cli_remote *remote,
                              const cli_remote_trust *trust, const char *name, const char *version,
                              bool require_trusted);
void cli_remote_manifest_free(cli_remote_manifest *m);

/**
 * Fetch a channel's signed state and check it: deploy signatures meet the threshold, it is
 * for this image and channel, not expired, not older than one this machine saw (the seen
 * sequence is updated). IMGSTORE_ENOTFOUND when the channel does not exist. `allow_expired`
 * is for writers building the next state on top of an expired one.
 */
int cli_remote_channel_fetch(imgstore_channel_state **out, char **bytes_out, size_t *len_out,
                             cli_remote *remote, const cli_remote_trust *trust, const char *name,
                             const char *channel, bool allow_expired);

/** cli_remote_channel_fetch, also giving the deploy signatures it counted (`status_out`, may
 * be NULL), for verify to show. */
int cli_remote_channel_fetch_counted(imgstore_channel_state **out, char **bytes_out,
                                     size_t *len_out, imgstore_trust_status *status_out,
                                     cli_remote *remote, const cli_remote_trust *trust,
                                     const char *name, const char *channel, bool allow_expired);

/**
 * Check a signed channel state as the server sent it ({"state": exact bytes, "signatures":
 * [armored, ...]}, schema/api_channel_signed.schema.json): the bytes parse, are for this
 * image and channel, and carry a threshold of deploy signatures under the verified policy.
 * No expiry or replay check (cli_remote_channel_fetch adds those for the live state). `what`
 * names it in errors. 0, IMGSTORE_EVERIFY.
 */
int cli_remote_state_check(imgstore_channel_state **out, const cli_remote_trust *trust,
                           json_t *signed_state, const char *name, const char *channel,
                           const char *what);

/**
 * Download one file of a verified manifest into its staging file beside `dest` (resuming what
 * an earlier, interrupted download left there, HTTP Range) and check its size and sha256;
 * *staged_out names it (free()), for the caller to rename into place. 0, IMGSTORE_EVERIFY
 * (nothing is kept to resume), IMGSTORE_ELOCKED, transport errors (kept to resume).
 */
int cli_remote_stage_file(char **staged_out, cli_remote *remote, const imgstore_manifest *m,
                          const imgstore_manifest_file *file, const char *dest);

/**
 * Move a channel to `version` (a deploy, or with `rollback` a rollback to it): built and
 * signed here when `signers` holds keys that are all deploy keys of the policy, else asked
 * of the server, which signs with its own key. *out is the verified state written.
 */
int cli_remote_channel_move(imgstore_channel_state **out, cli_remote *remote,
                            const cli_remote_trust *trust, const cli_signers *signers,
                            const char *name, const char *channel, const char *version,
                            bool rollback, const char *actor, const char *reason);

/** Check a name before it goes into a URL (so no escaping is ever needed). */
int cli_remote_check_names(const char *image, const char *version, const char *channel);

/** sha256 of a buffer, hex. */
int cli_remote_sha256(char out[65], const void *buf, size_t len);

/** mkdir -p with mode 0700. */
int cli_remote_mkdirs(const char *path);

#endif
