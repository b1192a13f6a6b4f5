/*
 * The image store: every image version, channel state and policy lives in one bare git
 * repository on refs/heads/main, one commit per operation (docs/format.md). Image bytes are
 * split into content-defined chunks, one git blob each, written before the ref moves so that
 * readers see the previous state or the new one and never a partial version.
 *
 * Knows nothing of HTTP, argv or stdout: results come back through out-parameters, failures
 * as IMGSTORE_E* codes with a message in imgstore_error_last().
 */
#ifndef IMGSTORE_STORE_H
#define IMGSTORE_STORE_H

#include "common/common.h"
#include "schema/schema.h"
#include "sign/sign.h"
#include "trust/trust.h"

#include <stdbool.h>
#include <stdint.h>

/* Content-defined chunking bounds (FastCDC); see docs/format.md for the measurement. */
#define IMGSTORE_CHUNK_MIN (256u * 1024)
#define IMGSTORE_CHUNK_AVG (1024u * 1024)
#define IMGSTORE_CHUNK_MAX (4u * 1024 * 1024)

typedef struct imgstore_store imgstore_store;

/* The keys that sign an operation: its manifest or channel state signatures and its git
 * commit (the first key). Borrowed for the call. */
typedef struct {
    const imgstore_sign_key *const *keys;
    size_t count;
} imgstore_signers;

/**
 * Create a new store (a bare git repository with an initial commit) at `path`, or open it
 * if it is already an imgstore store. Returns 0, IMGSTORE_EEXISTS if `path` exists and is
 * not an imgstore store, IMGSTORE_ERROR.
 */
int imgstore_store_init(imgstore_store **out, const char *path);

/**
 * Create a new signed store at `path`: its first commit holds the marker and trust policy 1,
 * which names `key` as the only root, release and deploy key (threshold 1), signed by it, and
 * the commit is signed by it too. An existing store is opened instead, and given a policy
 * (one commit) if it has none. Returns 0, IMGSTORE_EEXISTS (not a store), IMGSTORE_ERROR.
 */
int imgstore_store_init_trusted(imgstore_store **out, const char *path,
                                const imgstore_sign_key *key, const char *actor);

/** Open an existing store. Returns 0, IMGSTORE_ENOTFOUND, IMGSTORE_EINVALID (not a store). */
int imgstore_store_open(imgstore_store **out, const char *path);

/** Close a store. NULL-safe. */
void imgstore_store_free(imgstore_store *store);

/** The repository path the store was opened with. Borrowed from `store`. */
const char *imgstore_store_path(const imgstore_store *store);

/** The default store path: $IMGSTORE_REPO, else $XDG_DATA_HOME/imgstore/store.git, else
 * $HOME/.local/share/imgstore/store.git. *out is freed with free(). */
int imgstore_store_default_path(char **out);

/* ---- push ----------------------------------------------------------------------------- */

typedef struct {
    const char *name;              /* required, IMGSTORE_NAME_IMAGE */
    const char *version;           /* NULL: derived from the files' digests ("c-" + 16 hex) */
    const char *actor;             /* commit author and manifest builder; NULL: "imgstore" */
    const char *source_repository; /* provenance, may be NULL */
    const char *source_commit;     /* provenance, may be NULL */
    const imgstore_label *labels;  /* copied */
    size_t label_count;
    int64_t created;               /* unix seconds; 0: now */
    imgstore_progress_fn progress; /* bytes written so far, may be NULL */
    void *progress_payload;
    imgstore_signers signers; /* release keys that sign the manifest; at least one, unless */
    bool allow_unsigned;      /* true: none is fine, the version is stored pending until
                                 signatures are added (imgstore_store_add_signature) */
} imgstore_push_opts;

typedef struct imgstore_push imgstore_push;

/** Start a push. Nothing is visible to readers until imgstore_store_push_commit(). */
int imgstore_store_push_begin(imgstore_push **out, imgstore_store *store,
                              const imgstore_push_opts *opts);

/**
 * Start the next file of the version. `kind` overrides detection (NULL: detect; "unknown":
 * store without looking at the bytes). `size_hint` is for progress only (0: unknown).
 * Returns IMGSTORE_EINVALID for a bad or duplicate file name.
 */
int imgstore_store_push_file_begin(imgstore_push *push, const char *path, const char *kind,
                                   uint64_t size_hint);

/** Feed the current file's bytes, any amount at a time. Memory stays bounded by chunk size. */
int imgstore_store_push_write(imgstore_push *push, const void *buf, size_t len);

/**
 * Finish the current file: flush the last chunk, wait for its objects, detect its format.
 * `expected_sha256` (hex, may be NULL) is checked: a mismatch is IMGSTORE_EVERIFY.
 * A recognised but malformed image is IMGSTORE_EINVALID (unless its kind was overridden).
 */
int imgstore_store_push_file_end(imgstore_push *push, const char *expected_sha256);

/** A whole file from a reader: file_begin, write until end of stream, file_end. */
int imgstore_store_push_file_stream(imgstore_push *push, const char *path, const char *kind,
                                    uint64_t size_hint, imgstore_read_fn read, void *payload);

/**
 * Build the manifest, commit it (compare-and-swap on refs/heads/main, retried on a new tip)
 * and return it in *out (caller frees). *created_out is false when an identical version
 * (same files, same bytes) already existed: an idempotent success with no new commit.
 * Returns 0, IMGSTORE_EEXISTS (same name and version, different bytes), IMGSTORE_EINVALID,
 * IMGSTORE_ELOCKED, IMGSTORE_ERROR.
 */
int imgstore_store_push_commit(imgstore_push *push, imgstore_manifest **out, bool *created_out);

/** Abandon (if not committed) and free a push. Objects already written stay unreferenced. */
void imgstore_store_push_free(imgstore_push *push);

/* ---- read ----------------------------------------------------------------------------- */

/** Image names, sorted. *names_out is an array of *count_out strings; free with
 * imgstore_strings_free(). */
int imgstore_store_list_images(char ***names_out, size_t *count_out, imgstore_store *store);

/** Versions of an image, newest first (by manifest creation time, then name).
 * Returns IMGSTORE_ENOTFOUND if the image has no version. */
int imgstore_store_list_versions(char ***versions_out, size_t *count_out, imgstore_store *store,
                                 const char *name);

/* One row of an image's version index: what ls shows without loading the manifest. */
typedef struct {
    char *version;
    char *created; /* RFC 3339, the manifest's */
    size_t files;
    uint64_t size; /* bytes of all files */
    size_t row;    /* position in the image's versions, oldest 0: the paging cursor (SIZE_MAX
                    * in a page by name) */
} imgstore_version_row;

/**
 * A page of an image's versions, newest first (by manifest creation time, then version), from
 * its version index (docs/format.md): the rows before position `before` (SIZE_MAX: from the
 * newest), at most `limit` of them (0: all). *total_out (may be NULL) gets how many versions
 * the image has. Every row answered is checked against the manifest id stored for it; a stale
 * index (an older imgstore wrote the store) is passed over for the manifests themselves.
 * Returns 0, IMGSTORE_ENOTFOUND (no such image), IMGSTORE_EVERIFY (damaged index).
 */
int imgstore_store_versions_page(imgstore_version_row **out, size_t *count_out, size_t *total_out,
                                 imgstore_store *store, const char *name, size_t before,
                                 size_t limit);

void imgstore_version_rows_free(imgstore_version_row *rows, size_t count);

/**
 * The row of `version` in its image's version index (oldest 0, the order of
 * imgstore_store_versions_page): one light read of its manifest and a binary search of the
 * index (log2(N/64) segments). Returns 0, IMGSTORE_ENOTFOUND, IMGSTORE_EINVALID (a bad name),
 * IMGSTORE_EVERIFY (damaged index).
 */
int imgstore_store_version_position(size_t *out, imgstore_store *store, const char *name,
                                    const char *version);

/**
 * Up to `limit` version names of image `name` that sort bytewise after `after` (NULL: from
 * the first), in that order: the OCI tag list (docs/oci.md). From the name index
 * (docs/format.md, "Indexes": a segment or two, constant in N); a store whose index is
 * missing or stale sorts the names of images/<name> instead (linear) until `imgstore reindex`.
 * *more_out says whether more names follow. *out (imgstore_strings_free) belongs to the
 * caller. Returns 0, IMGSTORE_ENOTFOUND (no image), IMGSTORE_EINVALID (a bad name),
 * IMGSTORE_EVERIFY (damaged index: a listed name that is not stored).
 */
int imgstore_store_version_names(char ***out, size_t *count_out, bool *more_out,
                                 imgstore_store *store, const char *name, const char *after,
                                 size_t limit);

/**
 * A page of an image's versions in bytewise order of their names (ls --sort name): the
 * versions imgstore_store_version_names pages (the same name index and fallback, after
 * `after`, NULL: from the first), at most `limit` of them (0: all), each row from a light
 * read of its manifest (row is SIZE_MAX: the rows are not in the version index's order).
 * *total_out (may be NULL) gets how many versions the image has, *more_out whether more
 * follow the page. *out (imgstore_version_rows_free) belongs to the caller. Returns 0,
 * IMGSTORE_ENOTFOUND (no image), IMGSTORE_EINVALID (a bad name), IMGSTORE_EVERIFY (damaged
 * index or manifest).
 */
int imgstore_store_versions_by_name(imgstore_version_row **out, size_t *count_out,
                                    size_t *total_out, bool *more_out, imgstore_store *store,
                                    const char *name, const char *after, size_t limit);

/** A row as JSON (schema/api_image.schema.json's "versions" items): what `ls NAME --json`
 * prints and the server sends. New reference; NULL when out of memory. */
json_t *imgstore_store_version_row_to_json(const imgstore_version_row *row);

/** Channel names of an image, sorted (may be empty). */
int imgstore_store_list_channels(char ***channels_out, size_t *count_out, imgstore_store *store,
                                 const char *name);

/**
 * Load a version's manifest from the current tip. `digest_out` (may be NULL, 65 bytes)
 * receives the SHA-256 of its canonical bytes. Returns 0, IMGSTORE_ENOTFOUND,
 * IMGSTORE_EINVALID (stored manifest damaged).
 */
int imgstore_store_manifest_get(imgstore_manifest **out, char *digest_out, imgstore_store *store,
                                const char *name, const char *version);

/**
 * Stream bytes [offset, offset+length) of one file of a version to `write`, chunk by chunk,
 * in order, loading and verifying chunks ahead on all cores. Every chunk's SHA-256 is
 * checked against the manifest before any of its bytes are written. length UINT64_MAX
 * means to the end. Returns 0, IMGSTORE_ENOTFOUND, IMGSTORE_EINVALID (range), IMGSTORE_EVERIFY
 * (damaged store object: the message names it), or the writer's error.
 */
int imgstore_store_file_read(imgstore_store *store, const imgstore_manifest *manifest,
                             const char *path, uint64_t offset, uint64_t length,
                             imgstore_write_fn write, void *payload);

/* ---- channels ------------------------------------------------------------------------- */

typedef struct {
    const char *actor;        /* NULL: "imgstore" */
    const char *reason;       /* may be NULL */
    const char *to_version;   /* rollback only: target; NULL: the version before the current one */
    imgstore_signers signers; /* deploy keys that sign the new state; at least one */
} imgstore_channel_opts;

/** Current state of a channel. Returns 0 or IMGSTORE_ENOTFOUND. */
int imgstore_store_channel_get(imgstore_channel_state **out, imgstore_store *store,
                               const char *name, const char *channel);

/**
 * The manifest a channel runs, read from one tip: the channel state's version, checked
 * against the manifest digest the state pinned. `digest_out` (may be NULL, 65 bytes) gets
 * that digest; `state_out` (may be NULL) the state, freed by the caller. Returns 0,
 * IMGSTORE_ENOTFOUND (no such channel), IMGSTORE_EVERIFY (the version is missing or its
 * manifest differs from the pinned one), IMGSTORE_EINVALID.
 */
int imgstore_store_channel_manifest_get(imgstore_manifest **out, char *digest_out,
                                        imgstore_channel_state **state_out, imgstore_store *store,
                                        const char *name, const char *channel);

/** Point `channel` at an existing version (one commit). Deploying the version the channel
 * already points at is an idempotent success with no commit. */
int imgstore_store_deploy(imgstore_channel_state **out, imgstore_store *store, const char *name,
                          const char *version, const char *channel,
                          const imgstore_channel_opts *opts);

/**
 * Point `channel` back: to opts->to_version, or to the version that was live before the
 * current one (repeated rollbacks walk further back: deploys form a stack, a rollback pops
 * it). Returns IMGSTORE_ENOTFOUND when there is nothing to roll back to.
 */
int imgstore_store_rollback(imgstore_channel_state **out, imgstore_store *store, const char *name,
                            const char *channel, const imgstore_channel_opts *opts);

/* ---- host reports (reports.c) ------------------------------------------------------------ */

/* What a host's agent says about itself on a channel: an unsigned claim (docs/agent.md). */
typedef struct {
    const char *host;      /* IMGSTORE_NAME_HOST */
    const char *state;     /* "ok", "failed", "rolled-back" */
    const char *version;   /* the version it runs, NULL for none */
    const char *attempted; /* the version it tried and left, may be NULL */
    const char *message;   /* one line of text, may be NULL */
    const char *by;        /* who posted it (the token's name), may be NULL */
    bool host_verified;    /* the poster was bound to this host (and image) */
} imgstore_report;

/**
 * Keep a host's report on an existing channel: it replaces that host's latest record and is
 * appended to the channel's report log (outside git: reports are claims, not releases). *out
 * gets the record stored (schema/api_report.schema.json; new reference). Returns 0,
 * IMGSTORE_EINVALID (a field breaks its rule; too many hosts), IMGSTORE_ENOTFOUND (no such
 * image or channel), IMGSTORE_ERROR.
 */
int imgstore_store_report_put(json_t **out, imgstore_store *store, const char *name,
                              const char *channel, const imgstore_report *report);

/**
 * A channel's reports: the latest record of every host, by host name, and the newest
 * `event_limit` reports, newest first. Both new references (empty arrays when none). A
 * record kept before reports said whether their host was verified says it was not.
 */
int imgstore_store_reports_get(json_t **hosts_out, json_t **events_out, imgstore_store *store,
                               const char *name, const char *channel, size_t event_limit);

/* ---- history -------------------------------------------------------------------------- */

typedef struct {
    char commit[41];
    int64_t time;                  /* commit time, unix seconds */
    char *actor;                   /* commit author name */
    char *summary;                 /* commit message's first line */
    char *action;                  /* "push", "deploy", "rollback", "init", "other" */
    char *version;                 /* version pushed or deployed; NULL if none */
    char *channel;                 /* channel moved; NULL for a push */
    imgstore_channel_state *state; /* the channel state written; NULL for a push */
    char *state_bytes;             /* its exact stored bytes, which the signatures sign */
    size_t state_len;
    char **signatures; /* the armored deploy signatures stored beside it at that commit */
    size_t signature_count;
    uint64_t op; /* the commit's operation number: its first-parent depth, the first is 0 */
} imgstore_history_entry;

/* Which part of a history to read (docs/format.md says what each costs). */
typedef struct {
    const char *channel; /* NULL: the image's history (pushes and moves) */
    uint64_t before;     /* only operations numbered below this; 0: from the newest */
    size_t limit;        /* at most this many entries; 0: all */
    bool has_at;         /* channel only: just the newest move whose state time is not after */
    int64_t at;
} imgstore_history_query;

/**
 * A page of history, newest first: from the indexes when they are current (a binary search
 * and one commit per entry), else from a walk of the first-parent history. *next_out (may be
 * NULL) gets the `before` of the next page, 0 when this one reaches the first entry.
 */
int imgstore_store_history_query(imgstore_history_entry **out, size_t *count_out,
                                 uint64_t *next_out, imgstore_store *store, const char *name,
                                 const imgstore_history_query *query);

/**
 * History of an image (channel NULL: pushes and channel moves) or of one channel, newest
 * first, from the first-parent git history of refs/heads/main.
 */
int imgstore_store_history(imgstore_history_entry **out, size_t *count_out, imgstore_store *store,
                           const char *name, const char *channel);

void imgstore_history_free(imgstore_history_entry *entries, size_t count);

/**
 * History entries as JSON rows (schema/api_history.schema.json's "entries"): what
 * `imgstore history --json` prints and the server sends. A channel move's row carries its
 * state both parsed ("state") and as stored with its signatures ("signed"), so a reader can
 * verify every move itself. New reference; NULL when out of memory.
 */
json_t *imgstore_store_history_to_json(const imgstore_history_entry *entries, size_t count);

/* ---- indexes -------------------------------------------------------------------------- */

/**
 * Compare the tip's indexes with ones rebuilt from the whole history and every manifest.
 * Returns 0 when they are the same, IMGSTORE_EVERIFY naming what differs (missing, stale or
 * damaged: run imgstore_store_reindex).
 */
int imgstore_store_index_check(imgstore_store *store);

/**
 * Rebuild the indexes from the history and the manifests, in one commit signed by `key` (may
 * be NULL); nothing when they already match. *changed_out (may be NULL) says whether.
 */
int imgstore_store_reindex(bool *changed_out, imgstore_store *store, const char *actor,
                           const imgstore_sign_key *key);

/* ---- retention (prune.c, docs/format.md "Retention") ---------------------------------- */

/* How far back the versions a channel ran stay protected when no --older-than is given: the
 * default channel_ttl_seconds, so a version stays while a state naming it could be live. */
#define IMGSTORE_PRUNE_WINDOW_DEFAULT (30 * 86400)

typedef struct {
    const char *name;    /* one image; NULL: every image */
    size_t keep;         /* the newest versions of each image always stay; at least 1 */
    int64_t older_than;  /* seconds: only versions created longer ago are removed, and the
                            rollback window is this long; 0: any age, a 30-day window */
    int64_t now;         /* the time ages count from; 0: the clock */
    bool cut;            /* also cut the history after the removal (cut.c, docs/format.md
                            "Cutting history"), so that gc frees the removed versions' bytes */
    const char *archive; /* with cut: first write the history it drops as a git bundle here */
} imgstore_prune_opts;

typedef struct {
    char *name, *version, *created; /* created: the manifest's, RFC 3339 */
    size_t files;
    uint64_t size;
    char *reason; /* kept: the rule that keeps it; NULL for a removed version */
} imgstore_prune_item;

typedef struct {
    imgstore_prune_item *removed; /* oldest first per image */
    size_t removed_count;
    imgstore_prune_item *kept; /* past the newest N and old enough, but kept by a rule */
    size_t kept_count;
    uint64_t files_freed;     /* distinct files (by SHA-256) only the removed versions hold */
    uint64_t chunks_freed;    /* distinct chunks no version left in the store shares ... */
    uint64_t bytes_freed;     /* ... and their bytes (docs/format.md: how exact) */
    uint64_t files_unchecked; /* removed files no digest index could say another image does
                                 not hold: counted as shared, so not in the figures above */
    uint64_t manifests_read;  /* the cost: removed plus kept versions of the images in question */
    int64_t window;           /* the rollback window applied, seconds */
    char commit[41];          /* the prune commit; "" for a plan or when nothing was removed */
    /* with opts->cut, what the cut does (a plan: would do) when versions are removed */
    bool cut;            /* a cut is (would be) made */
    char cut_commit[41]; /* the cut, the new root and tip; "" for a plan */
    uint64_t cut_op;     /* its op number */
    size_t cut_moves;    /* channel moves archived now (since the last cut) */
    size_t cut_policies; /* policy steps archived now */
} imgstore_prune_plan;

/**
 * What imgstore_store_prune would remove now, and why the others stay. *out (free with
 * imgstore_prune_plan_free). Writes nothing. Returns 0, IMGSTORE_EINVALID (keep 0, a bad
 * name), IMGSTORE_ENOTFOUND (no such image), IMGSTORE_EVERIFY (a damaged index or state).
 */
int imgstore_store_prune_plan(imgstore_prune_plan **out, imgstore_store *store,
                              const imgstore_prune_opts *opts);

/**
 * Remove the versions the plan names, in one commit signed by signers->keys[0]; every signer
 * must hold the release or root role. The plan is made again on the tip the commit is built
 * on, under the writers' lock, and *out is that plan (commit set; "" when there was nothing
 * to remove: no commit). The versions' objects stay until imgstore_store_gc with prune_expire.
 * Returns as imgstore_store_prune_plan, plus IMGSTORE_EVERIFY (a signer may not prune),
 * IMGSTORE_ELOCKED.
 */
int imgstore_store_prune(imgstore_prune_plan **out, imgstore_store *store,
                         const imgstore_prune_opts *opts, const imgstore_signers *signers,
                         const char *actor);

void imgstore_prune_plan_free(imgstore_prune_plan *plan);

/** A plan as JSON (what `prune --json` prints). New reference; NULL when out of memory. */
json_t *imgstore_store_prune_plan_to_json(const imgstore_prune_plan *plan);

/* Where a file's bytes were: one version that held them. */
typedef struct {
    char *name, *version, *path; /* path: the file's name in the version */
    bool stored;                 /* still in the store (false: pruned since) */
    char **running;              /* channels that run the version now */
    size_t running_count;
    char **stacked; /* channels whose rollback stack holds it (rollback without --to) */
    size_t stacked_count;
    char **ran; /* channels whose history ever pointed at it (with history) */
    size_t ran_count;
} imgstore_where;

/**
 * Every version, of any image, that held a file whose SHA-256 is `sha256` (64 hex digits),
 * oldest push first, from the digest index (docs/format.md), with the channels that run it,
 * can roll back to it, and (with `history`) ever ran it. Never walks all versions; with
 * `history`, reads the moves of the channels of the images found. Returns 0 (count 0: never
 * stored), IMGSTORE_EINVALID (not a digest), IMGSTORE_ENOTFOUND (no digest index: reindex).
 */
int imgstore_store_which(imgstore_where **out, size_t *count_out, imgstore_store *store,
                         const char *sha256, bool history);

void imgstore_where_free(imgstore_where *rows, size_t count);

/**
 * Up to `limit` stored versions of image `name` that hold `sha256` (64 hex digits) as a
 * file, as their OCI config blob or as their OCI manifest (the rendering of docs/oci.md),
 * from the digest index: a binary search of one digest log, constant in N. Not a trust
 * check: the caller loads the version trusted. *out (imgstore_strings_free) belongs to the
 * caller. Returns 0 (count 0: none), IMGSTORE_EINVALID (not a digest), IMGSTORE_ENOTFOUND (no
 * digest index: reindex).
 */
int imgstore_store_digest_versions(char ***out, size_t *count_out, imgstore_store *store,
                                   const char *name, const char *sha256, size_t limit);

/** Rows as JSON (what `which --json` prints). New reference; NULL when out of memory. */
json_t *imgstore_store_where_to_json(const imgstore_where *rows, size_t count);

/* ---- verification --------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *version;
    int status;          /* 0 ok, else the IMGSTORE_E* code */
    const char *message; /* "" when ok */
    uint64_t bytes;      /* bytes hashed */
    const char *kind;    /* NULL or "version"; "channel" (version holds the channel name),
                            "policy" (name "trust", version the policy number) */
    size_t signatures;   /* valid signatures of the role that signs this kind */
    uint32_t threshold;  /* how many that role needs; fewer is "pending", not a failure */
} imgstore_verify_result;

typedef void (*imgstore_verify_fn)(const imgstore_verify_result *result, void *payload);

/**
 * Re-hash every chunk and file of the selected versions (name/version NULL: all) and check
 * them against their manifests; report each version to `report`. Returns 0 when all are
 * intact, IMGSTORE_EVERIFY when any is not, IMGSTORE_ENOTFOUND for an unknown selection.
 */
int imgstore_store_verify(imgstore_store *store, const char *name, const char *version,
                          imgstore_verify_fn report, void *payload);

/**
 * Check everything that is signed (docs/security.md): the policy chain from policy 1 to the
 * current one (each signed by a threshold of its predecessor's root keys, policy 1 by its
 * own), and every channel state (deploy signatures, expiry, a trusted version, and a stack
 * equal to the replay of its history). Reports each policy and channel to `report`. Returns
 * 0 or IMGSTORE_EVERIFY.
 */
int imgstore_store_verify_trust(imgstore_store *store, imgstore_verify_fn report, void *payload);

/**
 * Structural check of the tip and history: layout, canonical manifests and channel states,
 * chunk blobs present with the sizes the manifests say, channels pointing at stored versions.
 * Each problem goes to `report` (version may be NULL). Returns 0 or IMGSTORE_EVERIFY.
 */
int imgstore_store_fsck(imgstore_store *store, imgstore_verify_fn report, void *payload);

/* ---- trust ---------------------------------------------------------------------------- */

/**
 * The current trust policy (trust/policy.json at the tip). `digest_out` (may be NULL, 65
 * bytes) gets the SHA-256 of its bytes. Returns 0, IMGSTORE_ENOTFOUND (no policy),
 * IMGSTORE_EVERIFY (damaged).
 */
int imgstore_store_policy_get(imgstore_policy **out, char *digest_out, imgstore_store *store);

/**
 * Replace the policy with `next` (its version is set to the current one + 1), signed by
 * `signers`, which must all be root keys of the *current* policy and meet its root threshold;
 * otherwise nothing is written. *version_out (may be NULL) gets the new version. Returns 0,
 * IMGSTORE_EINVALID, IMGSTORE_EVERIFY (a signer is not a root key, or too few signed).
 */
int imgstore_store_policy_update(uint64_t *version_out, imgstore_store *store,
                                 const imgstore_policy *next, const imgstore_signers *signers,
                                 const char *actor);

/** Release signatures of a version under the current policy. 0, IMGSTORE_ENOTFOUND. */
int imgstore_store_version_trust(imgstore_trust_status *out, imgstore_store *store,
                                 const char *name, const char *version);

/** Deploy signatures of a channel's current state under the current policy. */
int imgstore_store_channel_trust(imgstore_trust_status *out, imgstore_store *store,
                                 const char *name, const char *channel);

/**
 * Add release signatures by `signers` to a stored version (one commit; none when every
 * signer had signed). *status_out (may be NULL) gets the version's status afterwards.
 * Returns 0, IMGSTORE_ENOTFOUND, IMGSTORE_EVERIFY (a signer is not a release key).
 */
int imgstore_store_sign_version(imgstore_trust_status *status_out, imgstore_store *store,
                                const char *name, const char *version,
                                const imgstore_signers *signers, const char *actor);

/**
 * Load a version's manifest and refuse it unless a threshold of release keys signed it:
 * what every reader that hands bytes out uses. Returns as imgstore_store_manifest_get, plus
 * IMGSTORE_EVERIFY (too few valid signatures: the message says how many).
 */
int imgstore_store_manifest_get_trusted(imgstore_manifest **out, char *digest_out,
                                        imgstore_store *store, const char *name,
                                        const char *version);

/**
 * The current tip of refs/heads/main (40 hex + NUL): cheap, one ref read. Everything a
 * reader sees is a function of it, so it is the key for caching encoded answers.
 */
int imgstore_store_tip_id(char out[41], imgstore_store *store);

/**
 * The store's identity: its first commit's id (40 hex + NUL), the same in every clone.
 * Clients key what they remember about a store (highest channel sequence seen) by it.
 */
int imgstore_store_id(char out[41], imgstore_store *store);

/* ---- signed documents across the store's boundary (signed.c) ------------------------ */

/**
 * The policy chain as stored: every policy in first-parent history, oldest first, each with
 * the signatures of the newest commit holding that version. Free with
 * imgstore_policy_chain_free(). Returns 0, IMGSTORE_ENOTFOUND (no policy).
 */
int imgstore_store_policy_chain(imgstore_policy_link **out, size_t *count_out,
                                imgstore_store *store);

/**
 * A version's exact manifest bytes (*bytes_out, free()) and its armored signatures
 * (*sigs_out, imgstore_strings_free()), for a client that verifies them itself. Returns 0,
 * IMGSTORE_ENOTFOUND, IMGSTORE_EINVALID.
 */
int imgstore_store_manifest_signed(char **bytes_out, size_t *len_out, char ***sigs_out,
                                   size_t *sig_count_out, imgstore_store *store, const char *name,
                                   const char *version);

/** The same for a channel's current state. */
int imgstore_store_channel_signed(char **bytes_out, size_t *len_out, char ***sigs_out,
                                  size_t *sig_count_out, imgstore_store *store, const char *name,
                                  const char *channel);

/**
 * Add a release signature made elsewhere (an armored SSHSIG over the version's manifest
 * bytes), after checking it verifies and its key is a release key of the current policy.
 * One commit, signed by `commit_key` when not NULL; none when that key had signed already.
 * *status_out (may be NULL) gets the version's status afterwards. Returns 0,
 * IMGSTORE_ENOTFOUND, IMGSTORE_EINVALID (malformed armour), IMGSTORE_EVERIFY (does not verify,
 * or not a release key).
 */
int imgstore_store_add_signature(imgstore_trust_status *status_out, imgstore_store *store,
                                 const char *name, const char *version, const char *armored,
                                 size_t len, const imgstore_sign_key *commit_key,
                                 const char *actor);

/**
 * Commit a channel state built and signed elsewhere (a client with a deploy key). The bytes
 * must be the canonical encoding, with sequence = current + 1 (1 for a new channel),
 * previous_version = the current version, manifest_sha256 = the stored manifest's digest of
 * a release-trusted version, time within 5 minutes of this clock, 0 < expires - time <= the
 * policy's channel_ttl_seconds, a stack (when it carries one) equal to
 * imgstore_trust_stack_next from the current state, and signatures meeting the deploy
 * threshold. One commit,
 * signed by `commit_key` when not NULL. *out (caller frees) is the state committed. Returns
 * 0, IMGSTORE_EINVALID, IMGSTORE_EVERIFY (signatures), IMGSTORE_ELOCKED (the channel moved:
 * build on its new state), IMGSTORE_ENOTFOUND (no such version).
 */
int imgstore_store_channel_put_signed(imgstore_channel_state **out, imgstore_store *store,
                                      const char *bytes, size_t len, const char *const *armored,
                                      size_t sig_count, const imgstore_sign_key *commit_key,
                                      const char *actor);

/* ---- packing (gc.c, docs/format.md "Packing") --------------------------------------- */

/* gc --prune's default grace period: git's gc.pruneExpire, two weeks. */
#define IMGSTORE_GC_PRUNE_EXPIRE_DEFAULT (14 * 86400)

typedef struct {
    bool all;             /* combine every pack and loose object into at most two packs */
    bool prune;           /* first remove loose objects no ref reaches ... */
    int64_t prune_expire; /* ... and none wrote or reused for this many seconds (0: any) */
} imgstore_gc_opts;

typedef struct {
    bool skipped;                       /* another gc held the store's gc lock: nothing was done */
    uint64_t objects_packed;            /* loose objects written into the new packs */
    uint64_t loose_before, loose_after; /* loose objects in objects/ */
    uint64_t bytes_before, bytes_after; /* bytes of every object file (loose and packs) */
    uint64_t packs_written, packs_removed, packs; /* packs made, combined away, there now */
    uint64_t damaged;        /* objects left where they were because they do not hash to their id */
    uint64_t objects_pruned; /* unreachable objects removed (prune), loose or packed */
    uint64_t bytes_pruned;   /* the loose files' bytes among them (packed ones show in
                                bytes_before -> bytes_after) */
} imgstore_gc_stats;

/**
 * Pack the store's loose objects: chunk blobs into a pack of their own (stored, not deflated
 * again, when they do not compress), everything else through libgit2's packbuilder (deltas),
 * then remove the loose copies now packed. Past 50 packs (or with opts->all) the packs are
 * combined. Never blocks or is blocked by writers and readers, never removes an object that
 * is not in a pack on disk, and a process killed at any point leaves a sound store. Another
 * gc at work is not an error: *out says skipped. With opts->prune, objects that no ref reaches
 * and that were not written or reused for opts->prune_expire are removed: loose ones by their
 * mtime, packed ones by their pack's (the packs are combined without them; a whole walk of
 * what the refs reach: store/unreachable.c). `opts` may be NULL. Fills *out; returns 0,
 * IMGSTORE_EINVALID, IMGSTORE_ERROR (disk full, I/O: nothing is lost, loose objects stay).
 */
int imgstore_store_gc(imgstore_gc_stats *out, imgstore_store *store, const imgstore_gc_opts *opts);

/**
 * Whether the loose objects passed the automatic threshold: $IMGSTORE_GC_AUTO, else the
 * store's git config gc.auto, else 6700 (0 or less: never). Estimated as git does, from one
 * of the 256 fan-out directories (counted exactly below 2,560). 0 or IMGSTORE_ERROR.
 */
int imgstore_store_gc_due(bool *out, imgstore_store *store);

/**
 * Every commit made through `store` checks imgstore_store_gc_due() afterwards and packs when
 * it is due (on by default). A server turns this off on its handles and packs from a thread
 * of its own instead, so no request waits for a gc.
 */
void imgstore_store_set_auto_gc(imgstore_store *store, bool enabled);

/* ---- read replicas (mirror.c, mirror_verify.c; docs/server.md "Read replicas") -------- */

typedef struct {
    const char *url;           /* the primary's store: a path, file://, git://, ssh://, https:// */
    const char *policy_sha256; /* hex: policy 1 must hash to it; NULL: trust on first use */
} imgstore_mirror_opts;

/* What one sync found and checked. */
typedef struct {
    bool advanced;             /* refs/heads/main moved */
    char from[41];             /* the replica's tip before ("" when it was empty) */
    char to[41];               /* the tip it serves now (on failure: the fetched one refused) */
    uint64_t commits;          /* new commits checked */
    uint64_t unsigned_commits; /* of them, without a commit signature (a keyless server's) */
    uint64_t policies;         /* new policies checked against their predecessor */
    uint64_t versions;         /* new versions: manifest, signatures, every chunk and file hashed */
    uint64_t signatures;       /* versions whose signatures changed, checked again */
    uint64_t states;           /* channel states checked */
    uint64_t bytes_hashed;     /* image bytes re-hashed */
} imgstore_mirror_stats;

/**
 * Check every commit after `from` (40 hex; NULL: from the first commit) up to `to` before a
 * replica takes them (docs/security.md, "Read replicas"): one line of single-parent commits
 * descending from `from` (anything else is a rewritten history), commit signatures by keys of
 * the policy when present (a cut, whose line replaces the replica's when it continues it,
 * by a release or root key: docs/security.md "Following a cut"), each new policy signed by
 * its predecessor's roots (policy 1
 * hashing to `policy_sha256` when given), every new version's manifest, release signatures
 * and every chunk and file digest, existing versions unchanged, every new channel state's
 * deploy signatures, pinned manifest and a sequence that never goes backwards. Costs what
 * is new, never the whole store. Counts in *out (may be NULL). Returns 0 or IMGSTORE_EVERIFY
 * naming the commit and what is wrong, IMGSTORE_ENOTFOUND (no such commit), IMGSTORE_ERROR.
 */
int imgstore_store_verify_range(imgstore_mirror_stats *out, imgstore_store *store, const char *from,
                                const char *to, const char *policy_sha256);

/**
 * One sync of the replica at `repo_path` (created as an empty bare repository when missing)
 * from its primary: fetch the primary's refs/heads/main into refs/imgstore-mirror/main,
 * imgstore_store_verify_range from the replica's tip to the fetched one, and only then move
 * refs/heads/main (compare-and-swap, durable). A refused fetch leaves the replica as it was;
 * the objects fetched stay unreferenced. *out (may be NULL) says what was checked. Returns 0,
 * IMGSTORE_EVERIFY (the primary's new history does not check out: nothing taken),
 * IMGSTORE_ELOCKED (another sync of this replica is running), IMGSTORE_EINVALID (bad url),
 * IMGSTORE_ERROR (the fetch failed: the message has libgit2's).
 */
int imgstore_store_mirror_sync(imgstore_mirror_stats *out, const char *repo_path,
                               const imgstore_mirror_opts *opts);

#endif
