/*
 * Helpers shared between the store's own files (not API): the chunker, format detection,
 * libgit2 error translation, and the repository handle's layout.
 */
#ifndef IMGSTORE_STORE_INTERNAL_H
#define IMGSTORE_STORE_INTERNAL_H

#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* ---- format detection (detect*.c) ----------------------------------------------------- */

/*
 * Random access to the bytes of a file being detected: fill up to `len` bytes at `offset`,
 * set *out_len (short only at end of file). Detection reads only small windows (headers,
 * ELF notes, ISO descriptors, VHD footer), never the whole file.
 */
typedef int (*imgstore_store__read_at_fn)(size_t *out_len, void *buf, size_t len, uint64_t offset,
                                          void *payload);

/**
 * Work out what a file is from its bytes (and, for text files, its name: "cmdline",
 * "*.xl"). Fills *out (zeroed first). Unrecognised bytes are kind "unknown", format
 * "unknown" (or "text"), return 0. A recognised format that is malformed (truncated ELF,
 * ISO shorter than its volume, broken headers) returns IMGSTORE_EINVALID with a one-line
 * message naming the file, the format and the defect.
 */
int imgstore_store__detect(imgstore_file_info *out, const char *file_name, uint64_t size,
                           imgstore_store__read_at_fn read_at, void *payload);

/* ---- chunker (chunk.c) ---------------------------------------------------------------- */

/*
 * FastCDC over a byte stream. The caller keeps the bytes; the chunker only says where the
 * next cut is. Stateless between calls: cut points depend only on the bytes since the last
 * cut, which is what keeps boundaries stable under insertions.
 */

/** Length of the next chunk of `buf[0..len)`: a cut point, or `len` if `len` is at most the
 * minimum or no cut point was found and `at_end` is false (caller must supply more bytes
 * before cutting, up to IMGSTORE_CHUNK_MAX). Returns 0 only for len == 0. */
size_t imgstore_store__chunk_cut(const uint8_t *buf, size_t len, bool at_end);

/* ---- the repository (repo.c) ------------------------------------------------------- */

#include <git2.h>

#define IMGSTORE_STORE_REF    "refs/heads/main"
#define IMGSTORE_STORE_MARKER "imgstore.json"

/* Where versions live (layout.c, docs/format.md "Tree layout"): the marker's format. */
typedef enum {
    IMGSTORE_STORE__FLAT = 1,    /* imgstore/1: images/<name>/<version>/ */
    IMGSTORE_STORE__SHARDED = 2, /* imgstore/2: images/<name>/<xx>/<version>/ */
} imgstore_store__layout;

struct imgstore_store {
    git_repository *repo;
    char *path;
    imgstore_store__layout layout; /* read from the tip's marker when the store is opened */
    char objects_dir[4096];        /* <repo>/objects */
    git_oid chain_ok_tip; /* the tip whose policy chain last checked out (trust_verify.c) */
    bool chain_ok;
    bool tip_cached; /* tip_oid was read while the ref file looked like tip_stat */
    struct stat tip_stat;
    git_oid tip_oid;
    bool index_live;    /* the commit being written keeps the indexes (index.c) */
    bool index_rebuilt; /* its edit wrote the whole index itself (reindex) */
    bool no_auto_gc;    /* imgstore_store_set_auto_gc(store, false): the caller packs (server) */
};

/** The tip commit's tree (caller frees with git_tree_free). */
int imgstore_store__tip_tree(git_tree **out, imgstore_store *store);

/**
 * Return a new tree equal to `root` (may be NULL: empty) with the entry at `path`
 * ("images/app/1.0") set to `oid` with `mode`, or removed when `oid` is NULL. Intermediate
 * trees are created as needed and dropped when they become empty.
 */
int imgstore_store__tree_update(git_oid *out, git_repository *repo, const git_tree *root,
                                const char *path, const git_oid *oid, git_filemode_t mode);

/** tree_update on a tree given, and returned, by id: *tree_oid becomes the id of the tree
 * with `path` set to `oid` (NULL: removed). For edits that set several paths in a row. */
int imgstore_store__tree_set(git_oid *tree_oid, imgstore_store *store, const char *path,
                             const git_oid *oid, git_filemode_t mode);

/** Read a blob at `path` of `root` into a NUL-terminated buffer of at most `cap` bytes,
 * checking its git object id (libgit2's own check is off: chunks are checked by SHA-256).
 * Returns 0, IMGSTORE_ENOTFOUND, IMGSTORE_EINVALID (too large), IMGSTORE_EVERIFY. */
int imgstore_store__read_small_blob(char **out, size_t *len_out, imgstore_store *store,
                                    const git_tree *root, const char *path, size_t cap);

/** write(2) all of `len` bytes (retrying short writes and EINTR); 0 or -1 with errno. */
int imgstore_store__write_all(int fd, const void *data, size_t len);

/** The id at `path` in `tree` (zero when absent, or when `tree` is NULL). */
git_oid imgstore_store__id_at(const git_tree *tree, const char *path);

/** Write a small blob through the repository's object database. */
int imgstore_store__write_blob(git_oid *out, imgstore_store *store, const void *buf, size_t len);

/*
 * One store operation = one commit. `edit` receives the current tip tree and returns the new
 * tree and the commit message (malloc'd), or IMGSTORE_STORE_UNCHANGED when there is nothing to
 * do (idempotent success), or an error. It may be called again on a newer tip when another
 * writer won the race, so it must derive everything from the tree it is given.
 */
#define IMGSTORE_STORE_UNCHANGED 1
typedef int (*imgstore_store__edit_fn)(git_oid *tree_out, char **message_out, git_tree *tip,
                                       void *payload);

/** Run `edit` on the tip and move refs/heads/main with compare-and-swap, retrying on a lost
 * race. Returns 0 (committed), IMGSTORE_STORE_UNCHANGED, or the edit's / an IMGSTORE_E* code. */
int imgstore_store__commit(imgstore_store *store, const char *actor, const imgstore_sign_key *key,
                           imgstore_store__edit_fn edit, void *payload);

/* Called under the writers' lock once the edit's commit is written, before the ref moves: it
 * may replace *commit_oid by a commit built from it (prune's cut, cut.c), which the ref then
 * moves to instead, so both land or neither does. */
typedef int (*imgstore_store__then_fn)(git_oid *commit_oid, const git_signature *sig,
                                       const imgstore_sign_key *key, void *payload);

/** imgstore_store__commit with `then` (may be NULL) run on each commit written. */
int imgstore_store__commit_then(imgstore_store *store, const char *actor,
                                const imgstore_sign_key *key, imgstore_store__edit_fn edit,
                                imgstore_store__then_fn then, void *payload);

/** Take the writers' flock on <repo>/imgstore.lock (waits up to a minute): *out is the fd
 * to close. 0, IMGSTORE_ELOCKED, IMGSTORE_ERROR. */
int imgstore_store__lock(int *out, imgstore_store *store);

/** syncfs() the file system holding the store. 0 or IMGSTORE_ERROR. */
int imgstore_store__sync(imgstore_store *store);

/** Open the git repository at `path` as a store handle without asking for a tip: a replica
 * before its first sync is an empty repository (mirror.c). */
int imgstore_store__open_repo(imgstore_store **out, const char *path);

/** The git author/committer for `actor` ("Name <email>", "user@host" or a plain name). */
int imgstore_store__actor_signature(git_signature **out, const char *actor);

/** Write a commit object (not moving any ref), signed in git's SSH form (a gpgsig header,
 * namespace "git") when `key` is not NULL, so `git verify-commit` checks it. */
int imgstore_store__commit_create(git_oid *out, imgstore_store *store, git_repository *repo,
                                  const git_signature *sig, const char *message,
                                  const git_tree *tree, const git_commit *parent,
                                  const imgstore_sign_key *key);

/* ---- where versions live (layout.c) ------------------------------------------------- */

/** imgstore_store_init (`key` NULL) or imgstore_store_init_trusted with a chosen layout:
 * tests make imgstore/1 stores, as an older imgstore made them, with it. */
int imgstore_store__init_layout(imgstore_store **out, const char *path,
                                const imgstore_sign_key *key, const char *actor,
                                imgstore_store__layout layout);

/** The marker blob's bytes for a layout ({"format":"imgstore/N"}). */
const char *imgstore_store__marker_bytes(imgstore_store__layout layout);

/** The layout named by the marker in `root`: ENOTFOUND without one, EINVALID for a format
 * this code does not know. One small blob read. */
int imgstore_store__layout_at(imgstore_store__layout *out, imgstore_store *store,
                              const git_tree *root);

/** A version's shard: the first byte of SHA-256 of its name, two lowercase hex digits. */
void imgstore_store__version_shard(char out[3], const char *version);

/** "images/<name>/<version>[/<suffix>]" (imgstore/1) or "images/<name>/<xx>/<version>[/<suffix>]"
 * (imgstore/2): THE way to name a version's path (`suffix` may be NULL). */
void imgstore_store__version_path_in(char *out, size_t cap, imgstore_store__layout layout,
                                     const char *name, const char *version, const char *suffix);

/** version_path_in with the store's own layout. */
void imgstore_store__version_path(char *out, size_t cap, const imgstore_store *store,
                                  const char *name, const char *version, const char *suffix);

/** 0 when `shard`, the entry `entry` of images/<name>, is a shard: two lowercase hex digits, a
 * directory. Else IMGSTORE_EVERIFY naming the path. */
int imgstore_store__shard_check(const char *name, const char *shard, const git_tree_entry *entry);

/** 0 when `version` belongs in `shard`, else IMGSTORE_EVERIFY naming the path and the right
 * shard. */
int imgstore_store__shard_version_check(const char *name, const char *shard, const char *version);

/** Whether `root` holds exactly one version of image `name` (at most two small trees read). */
bool imgstore_store__image_single_version(imgstore_store *store, const git_tree *root,
                                          const char *name);

typedef int (*imgstore_store__version_fn)(const char *version, const git_tree_entry *entry,
                                          void *payload);

/* A bad shard or misplaced version met by versions_foreach, as a one-line message naming the
 * path: return 0 to skip it and go on (fsck), or an error to stop. */
typedef int (*imgstore_store__damage_fn)(const char *message, void *payload);

/** Call `fn` for every version of image `name` in `root` (its entry in images/<name> or in
 * its shard), shard by shard in tree order; a nonzero return stops the walk and is returned.
 * A bad shard or a version in the wrong shard goes to `damaged`, or when it is NULL stops the
 * walk with IMGSTORE_EVERIFY naming the path. IMGSTORE_ENOTFOUND when the image is absent.
 * Linear in the image's versions: for fsck, reindex and prune, never for a lookup of one. */
int imgstore_store__versions_foreach(imgstore_store *store, const git_tree *root,
                                     imgstore_store__layout layout, const char *name,
                                     imgstore_store__version_fn fn,
                                     imgstore_store__damage_fn damaged, void *payload);

/** Every version of image `name` in `root` (store's layout), in the order a flat images/<name>
 * tree lists them (git's tree order), whatever the layout; imgstore_strings_free. */
int imgstore_store__versions_list(char ***out, size_t *count_out, imgstore_store *store,
                                  const git_tree *root, const char *name);

/* ---- versions (version.c, read.c) ---------------------------------------------------- */

/** Load and check the manifest at images/<name>/<version>/manifest.json of `root`: its git
 * id, schema, and that it names the image and version it is stored under. */
int imgstore_store__manifest_load(imgstore_manifest **out, char *digest_out, imgstore_store *store,
                                  const git_tree *root, const char *name, const char *version);

/** imgstore_store_file_read on the version as stored in `root` rather than at the tip: what
 * a replica checks in a commit it has fetched but not yet taken (mirror_verify.c). */
int imgstore_store__file_read_at(imgstore_store *store, const git_tree *root,
                                 const imgstore_manifest *manifest, const char *path,
                                 uint64_t offset, uint64_t length, imgstore_write_fn write,
                                 void *payload);

/** Re-hash every chunk and every whole file of `manifest` as stored in `root` (verify.c);
 * *bytes_out (may be NULL) gets the bytes hashed. 0, IMGSTORE_EVERIFY naming the file. */
int imgstore_store__verify_files_at(uint64_t *bytes_out, imgstore_store *store,
                                    const git_tree *root, const imgstore_manifest *manifest);

/* A chunk's bytes in memory, from whichever reader produced them (chunk_read.c). */
typedef struct {
    const uint8_t *data;
    size_t len;
    git_odb_object *object; /* read through libgit2 */
    uint8_t *owned;         /* read by the stored-object fast path */
} imgstore_store__chunk_buf;

/** Release a chunk's bytes and zero it. */
void imgstore_store__chunk_buf_clear(imgstore_store__chunk_buf *chunk);

/** Read one chunk blob and check its size and SHA-256 against `expect` (IMGSTORE_EVERIFY).
 * Threads pass their own odb: libgit2 serialises reads of a shared one. */
int imgstore_store__chunk_load(imgstore_store__chunk_buf *out, imgstore_store *store, git_odb *odb,
                               const git_oid *oid, const imgstore_chunk_ref *expect);

/**
 * Read a loose object of at most `max_size` bytes without libgit2, which hangs on truncated
 * loose objects (loose.c). Returns 1 with *out and *type_out filled, 0 when the object is not
 * loose (packed: read it through libgit2), IMGSTORE_EVERIFY when the file is damaged. The
 * caller still checks the content against its digest.
 */
int imgstore_store__loose_read_any(imgstore_store__chunk_buf *out, git_object_t *type_out,
                                   const char *objects_dir, const git_oid *oid, uint64_t max_size);

/** An object database on the store's objects directory whose loose reads go through the
 * bounded reader: the repository's own, and one per reader thread. */
int imgstore_store__odb_open(git_odb **out, imgstore_store *store);

/** Same paths, sizes and SHA-256 digests, in the same order. */
bool imgstore_store__same_files(const imgstore_manifest *a, const imgstore_manifest *b);

/** Commit a version described by `m` (files sorted by path, file_trees parallel to them). */
int imgstore_store__commit_version(imgstore_manifest **out, bool *created_out,
                                   imgstore_store *store, imgstore_manifest *m,
                                   const git_oid *file_trees, const char *actor,
                                   const imgstore_signers *signers);

/** Sorted names of the entries of the tree at `path` of `root` (ENOTFOUND if absent). With
 * `suffix`, only entries ending in it, with the suffix cut off. */
int imgstore_store__list_tree(char ***out, size_t *count_out, imgstore_store *store,
                              const git_tree *root, const char *path, const char *suffix);

/** The commit message of a channel move: "deploy NAME CHANNEL VERSION" or "rollback NAME
 * CHANNEL FROM -> TO: REASON" (docs/format.md). NULL when out of memory. */
char *imgstore_store__move_message(const imgstore_channel_state *state);

/** A channel's state as stored in `tree`: its exact bytes and the armored signatures beside
 * it (imgstore_store_channel_signed at any tree). 0, IMGSTORE_ENOTFOUND. */
int imgstore_store__channel_signed_at(char **bytes_out, size_t *len_out, char ***sigs_out,
                                      size_t *sig_count_out, imgstore_store *store,
                                      const git_tree *tree, const char *name, const char *channel);

/** The channel state stored in `tree` (ENOTFOUND with a message if the channel is absent). */
int imgstore_store__channel_load(imgstore_channel_state **out, imgstore_store *store,
                                 const git_tree *tree, const char *name, const char *channel);

/* ---- indexes (index.c) ------------------------------------------------------------- */

/* Rows per segment of an index log (docs/format.md, "Indexes"). */
#define IMGSTORE_STORE__LOG_ROWS 64

/** Rows in the segmented log at `log` of `root` (0 when absent; EVERIFY when damaged). */
int imgstore_store__log_count(size_t *out, imgstore_store *store, const git_tree *root,
                              const char *log);

/** "<log>/<group>/<segment>": where segment `segment` of a log is (and the archive of a
 * channel's moves, cut.c, shards the same way). */
void imgstore_store__log_segment_path(char *out, size_t cap, const char *log, size_t segment);

/** Append `row` to the log at `log` of the tree *tree_oid (one segment rewritten). */
int imgstore_store__log_append(git_oid *tree_oid, imgstore_store *store, const char *log,
                               const char *row);

/** Rows [first, first+count) of a log of `total` rows (strings; imgstore_strings_free). */
int imgstore_store__log_rows(char ***out, imgstore_store *store, const git_tree *root,
                             const char *log, size_t total, size_t first, size_t count);

/** Whether the indexes in `tree`, the tree of `commit`, are current (their oplog ends at the
 * commit's parent); *ops_out gets the commit's op number then. */
int imgstore_store__index_current(bool *out, uint64_t *ops_out, imgstore_store *store,
                                  const git_commit *commit, const git_tree *tree);

/** Update the indexes in the tree *tree_oid for the commit about to be written on `parent`
 * at `time` (nothing when they are not current): the oplog, events and channel moves. */
int imgstore_store__index_commit(git_oid *tree_oid, imgstore_store *store, const git_commit *parent,
                                 const git_tree *parent_tree, int64_t time);

/** Add the version of `m`, already at images/<name>/<version> of *tree_oid, to its image's
 * version index (when the commit keeps the indexes). */
int imgstore_store__index_add_version(git_oid *tree_oid, imgstore_store *store,
                                      const imgstore_manifest *m);

/** Whether rows [0, count) of the log `log` are the same in `a` (a_total rows) and `b`
 * (b_total rows); false when either has fewer. Whole groups and segments are compared by id,
 * so the cost is count / 16,384 tree entries plus at most one segment read from each. */
int imgstore_store__log_prefix_equal(bool *out, imgstore_store *store, const git_tree *a,
                                     size_t a_total, const git_tree *b, size_t b_total,
                                     const char *log, size_t count);

/** Replace the rows of the log at `log` of *tree_oid (`total` rows) from row `first` (a
 * multiple of the segment size) on with `rows`, dropping the segments past the new end: a
 * log that shrinks (prune) or changes inside (a back-dated push) rewrites only its tail. */
int imgstore_store__log_replace_tail(git_oid *tree_oid, imgstore_store *store, const char *log,
                                     size_t total, size_t first, char *const *rows, size_t count);

/** How many versions of `name` `root` stores (*stored_out) and whether the version index
 * `log` counts every one (*indexed_out); IMGSTORE_ENOTFOUND when there is no such image.
 * imgstore/1: the entries of images/<name> (one parse). imgstore/2: the index's count when it
 * has one and the indexes are current at the tip (the shards are not read), else the shards
 * are walked (a stale index: the caller reads every manifest anyway). */
int imgstore_store__versions_counted(size_t *stored_out, bool *indexed_out, imgstore_store *store,
                                     const git_tree *root, const char *name, const char *log);

/** Every version row of `name` in `root` ("created TAB version TAB files TAB size TAB
 * manifest-id"), oldest first: from the version index when it counts every stored version
 * (*indexed_out true), else built from the manifests. ENOTFOUND when there is no image. */
int imgstore_store__index_version_rows(char ***rows_out, size_t *count_out, bool *indexed_out,
                                       imgstore_store *store, const git_tree *root,
                                       const char *name);

/** The digest index's rows for a file SHA-256 (64 lowercase hex): "sha256 TAB image TAB
 * version TAB file", oldest push first, including versions since pruned. ENOTFOUND when the
 * store has versions but no digest index (reindex builds it). */
int imgstore_store__digest_rows(char ***out, size_t *count_out, imgstore_store *store,
                                const git_tree *root, const char *sha256);

/** "op TAB time" of an events or channel row. */
int imgstore_store__index_row_numbers(uint64_t *op_out, int64_t *time_out, const char *log,
                                      const char *row);

/** The id of the commit numbered `op` in a store whose tip (`tip`, tree `tip_tree`) is op
 * number `ops`. */
int imgstore_store__index_commit_id(git_oid *out, imgstore_store *store, const git_tree *tip_tree,
                                    const git_oid *tip, uint64_t ops, uint64_t op);

/* ---- cutting history (cut.c) ------------------------------------------------------- */

/* What a cut commit records in its message (docs/format.md, "Cutting history"). */
typedef struct {
    char store_id[GIT_OID_HEXSZ + 1]; /* the store's id, kept across cuts */
    git_oid previous;                 /* the removal commit the cut was made after */
    uint64_t op;                      /* the cut's op number */
} imgstore_store__cut_record;

/** Whether `commit` is a cut: no parent, and a message with `store-id:`, `previous:` and
 * `op:` lines. 0 and *out filled when it is; IMGSTORE_ENOTFOUND (no message set) when it is
 * not; IMGSTORE_EVERIFY when a root's message has the lines but they do not parse. */
int imgstore_store__cut_read(imgstore_store__cut_record *out, const git_commit *commit);

/** Make the cut after the removal commit `*commit_oid` (not yet on any ref): a root commit
 * whose tree is the removal's plus the archive, signed by `key`; *commit_oid becomes its id.
 * `counts` (may be NULL) gets what was archived. IMGSTORE_EINVALID when the indexes are not
 * current (a cut needs them), IMGSTORE_EVERIFY, IMGSTORE_ERROR. */
int imgstore_store__cut_write(git_oid *commit_oid, imgstore_prune_plan *counts,
                              imgstore_store *store, const git_signature *sig,
                              const imgstore_sign_key *key);

/* Where a rebuild's rows go: `log` relative to index/ ("oplog", "app/events"). */
typedef int (*imgstore_store__row_fn)(const char *log, const char *row, void *payload);

/** The rows a rebuild of the indexes keeps from a cut, because their commits are gone: when
 * `root` (the first commit of the first-parent chain) is a cut, every row of every log of
 * its index but the version logs, fed to `fn` in order, and *base_out its op number; else
 * nothing and 0. Linear in the rows, as a rebuild is. */
int imgstore_store__cut_index_base(uint64_t *base_out, imgstore_store *store,
                                   const git_commit *root, imgstore_store__row_fn fn,
                                   void *payload);

/** The op number of the newest cut in the history of `tip` (tree `tip_tree`, indexes
 * current): the last row of index/cuts, 0 when the store was never cut. Rows of a log with
 * a smaller op are of commits a cut dropped. */
int imgstore_store__cut_base(uint64_t *out, imgstore_store *store, const git_tree *tip_tree);

/** The policy steps a cut at `root` archived: *count_out = k when archive/trust holds
 * exactly 1..k (0 when root is not a cut or archived none); IMGSTORE_EVERIFY when the
 * archive has holes or strays. Readers then take "archive/trust/<N>" for N = 1..k before the
 * root's own trust/ (cut.c). */
int imgstore_store__cut_policy_steps(uint64_t *count_out, imgstore_store *store,
                                     const git_commit *root);

/** Check every archived channel state in `tip` (verify; linear in the archive, as verify
 * is): it parses, names the channel it is filed under, and carries a threshold of deploy
 * signatures under a policy of the chain. *checked_out: states checked. 0, EVERIFY. */
int imgstore_store__cut_verify_archive(size_t *checked_out, imgstore_store *store,
                                       const git_tree *tip);

/** Write everything reachable from `last` (the removal commit a cut is about to drop) as a
 * git bundle v2 at `path` (temp file, fsync, rename), ref refs/heads/main = `last`, so that
 * stock `git bundle verify` and `git clone` restore the old history. Streams the pack. */
int imgstore_store__cut_bundle(imgstore_store *store, const git_oid *last, const char *path);

/** What a cut made on the tip now would archive (prune --dry-run): counts in *out. */
int imgstore_store__cut_plan(imgstore_prune_plan *out, imgstore_store *store);

/* ---- the name index (names.c) ------------------------------------------------------- */

/** Apply `add` and `remove` (each sorted bytewise and distinct) to the name index at `dir`
 * ("index/<name>/names") of the tree *tree_oid: one segment, group and names tree rewritten
 * per segment touched. The index is created by the first add and dropped with its last name. */
int imgstore_store__names_edit(git_oid *tree_oid, imgstore_store *store, const char *dir,
                               char *const *add, size_t add_count, char *const *remove,
                               size_t remove_count);

/** Tests only: smaller caps of names a segment and segments a group hold, so that a few
 * names exercise the splits (0: the defaults, 256 and 256). */
void imgstore_store__names_set_caps(size_t segment, size_t group);

/** The row of `version` of image `name` in `root`, from a light read of its manifest (index.c;
 * no index is read): out->row is SIZE_MAX. The strings are the caller's (free them as
 * imgstore_version_rows_free does). Returns 0, IMGSTORE_ENOTFOUND, IMGSTORE_EVERIFY (a
 * damaged manifest). */
int imgstore_store__version_row_read(imgstore_version_row *out, imgstore_store *store,
                                     const git_tree *root, const char *name, const char *version);

/** Every name in the name index at `dir` of `root`, in order (fsck). EVERIFY when damaged. */
int imgstore_store__names_all(char ***out, size_t *count_out, imgstore_store *store,
                              const git_tree *root, const char *dir);

/** The SHA-256 digests of the OCI config blob and OCI manifest rendered for `m`
 * (docs/oci.md): what the digest index holds for them. */
int imgstore_store__oci_digests(char config_hex[65], char manifest_hex[65],
                                const imgstore_manifest *m);

/* ---- trust (trust.c) ----------------------------------------------------------------- */

#define IMGSTORE_STORE__SIG_NAME_MAX 64

/** "<base64url of the SHA256 fingerprint>.sig": where a key's signature of a document goes. */
void imgstore_store__sig_file_name(char out[IMGSTORE_STORE__SIG_NAME_MAX],
                                   const imgstore_sign_pubkey *pubkey);

/** The policy in `root` (ENOTFOUND, EVERIFY when damaged or not canonical). */
int imgstore_store__policy_load(imgstore_policy **out, char *digest_out, imgstore_store *store,
                                const git_tree *root);

/** The same, from `dir`/policy.json ("trust", or an archived step "archive/trust/<N>"). */
int imgstore_store__policy_load_in(imgstore_policy **out, char *digest_out, imgstore_store *store,
                                   const git_tree *root, const char *dir);

/** Policy 1 for a new store: `pub` holds every role. The roles borrow *key_line_out (free()
 * it; never pass this policy to imgstore_policy_free). */
int imgstore_store__policy_first(imgstore_policy *out, imgstore_sign_pubkey *pub,
                                 char **key_line_out);

/** Index of `signer` among `role`'s keys in `policy`, or -1. Unparseable policy keys never
 * match. */
int imgstore_store__role_index(const imgstore_policy *policy, imgstore_role role,
                               const imgstore_sign_pubkey *signer);

/** 0 when `key` holds `role` in `policy`, else IMGSTORE_EVERIFY naming the key. */
int imgstore_store__key_check_role(const imgstore_policy *policy, imgstore_role role,
                                   const imgstore_sign_key *key);

/** Count the signatures in the tree at `dir` of `root` over `msg` by keys of `role`. Invalid
 * signature files are counted in out->invalid, the first one's problem left in the error
 * message; a missing directory is no signatures. */
int imgstore_store__signatures_check(imgstore_trust_status *out, imgstore_store *store,
                                     const git_tree *root, const char *dir,
                                     const imgstore_policy *policy, imgstore_role role,
                                     const void *msg, size_t len);

/** Sign `msg` with every signer and add the signatures under `dir` of the tree *tree_oid
 * (which becomes the new tree's id). */
int imgstore_store__signatures_write(git_oid *tree_oid, imgstore_store *store, const char *dir,
                                     const imgstore_signers *signers, const void *msg, size_t len);

/** signatures_check on a tree given by id: what is about to be committed, counted exactly as
 * every later reader will count it. */
int imgstore_store__signatures_check_at(imgstore_trust_status *out, imgstore_store *store,
                                        const git_oid *tree_oid, const char *dir,
                                        const imgstore_policy *policy, imgstore_role role,
                                        const void *msg, size_t len);

/** Release status of images/<name>/<version> in `root` under `policy`. */
int imgstore_store__version_status(imgstore_trust_status *out, imgstore_store *store,
                                   const git_tree *root, const imgstore_policy *policy,
                                   const char *name, const char *version);

/** The policy stored in `tree` with its root signatures, as imgstore_store_policy_chain
 * lists each (signed.c). *out's members are freed as imgstore_policy_chain_free does. */
int imgstore_store__policy_link_at(imgstore_policy_link *out, imgstore_store *store,
                                   const git_tree *tree);

/** The same for the policy in `dir` of `tree` ("trust", "archive/trust/<N>"). */
int imgstore_store__policy_link_in(imgstore_policy_link *out, imgstore_store *store,
                                   const git_tree *tree, const char *dir);

/** A document at `path` of `root` and the armored signatures in the tree `dir` (none when
 * absent), at most `cap` bytes: what a reader hands out to be verified elsewhere. */
int imgstore_store__signed_at(char **bytes_out, size_t *len_out, char ***sigs_out,
                              size_t *count_out, imgstore_store *store, const git_tree *root,
                              const char *path, const char *dir, size_t cap);

/** Remember that the policy chain ending in the trust/ tree `trust` checked out, so that
 * readers do not walk it again (trust_verify.c, the memo): for a caller that has checked
 * every step of it, as a replica does before it takes a commit. Best effort. */
void imgstore_store__policy_chain_memo(imgstore_store *store, const git_oid *trust);

/** Walk the policy chain (trust_verify.c): 0 when every policy in history is signed by a
 * threshold of its predecessor's root keys, else IMGSTORE_EVERIFY naming the first break.
 * Every reader that hands bytes out calls it before it trusts the current policy. */
int imgstore_store__policy_chain_check(imgstore_store *store);

/**
 * Give `current` (the newest state of its channel at the tip) the stack replayed from its
 * channel's history (stack.c): the slow path, for a state that carries none (legacy) or
 * whose own cannot be trusted. Returns 0, IMGSTORE_ELOCKED (the history ends elsewhere),
 * IMGSTORE_ERROR.
 */
int imgstore_store__stack_replayed(imgstore_channel_state *current, imgstore_store *store);

/** 0 when `state` (the newest of its channel at the tip) carries no stack or the one its
 * history replays to; else IMGSTORE_EVERIFY naming the first difference. Reads the whole
 * history: for `imgstore verify`, never for a move. */
int imgstore_store__stack_check(imgstore_store *store, const imgstore_channel_state *state);

/** Deploy status of channels/<name>/<channel>.json in `root` under `policy`. */
int imgstore_store__channel_status(imgstore_trust_status *out, imgstore_store *store,
                                   const git_tree *root, const imgstore_policy *policy,
                                   const char *name, const char *channel);

/* ---- read replicas across a cut (mirror_cut.c) ---------------------------------------- */

/**
 * What a replica checks of a cut `cut` (tree `tree`) beyond its tree, before it takes it in
 * place of its tip `from` (tree `from_tree`; NULL for a first sync): the oplog continues the
 * replica's, the store-id is its, archive/trust holds the replica's policy steps and then new
 * ones that verify (policy 1 hashing to `pinned`), archive/channels the replica's moves and
 * then new signed ones. *policy_io (the policy in force at `from`; NULL for a first sync)
 * becomes the last archived policy. 0 or IMGSTORE_EVERIFY with a one-line reason.
 */
int imgstore_store__mirror_cut_check(imgstore_policy **policy_io, imgstore_mirror_stats *stats,
                                     imgstore_store *store, const git_commit *cut,
                                     const git_tree *tree, const git_oid *from,
                                     const git_tree *from_tree, const char *pinned);

/* ---- parallel chunk reader (readahead.c) -------------------------------------------- */

typedef struct imgstore_store__readahead imgstore_store__readahead;

/** Start loading and verifying chunks [first, end) of a file (oids and chunks parallel). */
int imgstore_store__readahead_new(imgstore_store__readahead **out, imgstore_store *store,
                                  const git_oid *oids, const imgstore_chunk_ref *chunks,
                                  size_t first, size_t end);

/** Take chunk `index` (called in order, first to end-1), waiting until it is verified.
 * *out belongs to the caller. Returns the chunk's load or verification error. */
int imgstore_store__readahead_next(imgstore_store__chunk_buf *out, imgstore_store__readahead *ra,
                                   size_t index);

/** Stop the threads and drop unconsumed chunks. NULL-safe. */
void imgstore_store__readahead_free(imgstore_store__readahead *ra);

/* ---- parallel chunk writer (objects.c) ------------------------------------------------ */

typedef struct {
    char sha256[65];
    git_oid oid; /* the chunk's git blob */
    uint64_t size;
} imgstore_store__chunk;

typedef struct imgstore_store__writer imgstore_store__writer;

/** Start writer threads for one file's chunks. */
int imgstore_store__writer_new(imgstore_store__writer **out, imgstore_store *store);

/** Copy `len` bytes (at most IMGSTORE_CHUNK_MAX) as chunk number `index` and queue it;
 * blocks while every buffer is in use. Returns a worker's earlier error if one failed. */
int imgstore_store__writer_submit(imgstore_store__writer *w, const uint8_t *data, size_t len,
                                  size_t index);

/** Wait for every submitted chunk; *results_out (borrowed from w) is indexed by chunk number. */
int imgstore_store__writer_wait(imgstore_store__writer *w,
                                const imgstore_store__chunk **results_out);

/** Stop the threads and free. NULL-safe. */
void imgstore_store__writer_free(imgstore_store__writer *w);

/** Whether a chunk is worth zlib's effort: a sample of it compresses below 85%. The same
 * choice decides a chunk's loose form (objects.c) and its form in a pack (gc.c). */
bool imgstore_store__worth_compressing(const uint8_t *buf, size_t len);

/* ---- packs (pack.c, gc.c) -------------------------------------------------------------- */

/* A git packfile and its v2 index, written one object at a time under temporary names in a
 * directory (pack.c). */
typedef struct imgstore_store__pack imgstore_store__pack;

/** Start a pack in `dir`. */
int imgstore_store__pack_new(imgstore_store__pack **out, const char *dir);

/** Append one whole object (the caller has checked it hashes to `oid`), deflated at zlib
 * level 1 when `compress`, else as stored blocks. Each oid at most once per pack. */
int imgstore_store__pack_add(imgstore_store__pack *pack, const git_oid *oid, git_object_t type,
                             const uint8_t *data, size_t len, bool compress);

/** Objects added so far. */
size_t imgstore_store__pack_count(const imgstore_store__pack *pack);

/** Write the trailer and the index, fsync both, and name them `dir`/pack-<name_out>.pack and
 * .idx (name_out: the pack's SHA-1 in hex). */
int imgstore_store__pack_finish(imgstore_store__pack *pack, char name_out[41]);

/** Free; a pack not finished leaves no file behind. NULL-safe. */
void imgstore_store__pack_free(imgstore_store__pack *pack);

/* ---- the packs one by one (packset.c) ---- */

typedef struct imgstore_store__packset imgstore_store__packset;

/** Open the packs `names` (without extension) of `pack_dir`, or every pack there when `names`
 * is NULL, each as a backend of its own. 0 or IMGSTORE_ERROR. */
int imgstore_store__packset_open(imgstore_store__packset **out, const char *pack_dir,
                                 const char *const *names, size_t count);
/** All the packs of the set as one odb (borrowed). */
git_odb *imgstore_store__packset_odb(const imgstore_store__packset *set);
size_t imgstore_store__packset_count(const imgstore_store__packset *set);
/** Pack i's mtime when the set was opened; whether it changed (or went) since. */
int64_t imgstore_store__packset_mtime(const imgstore_store__packset *set, size_t i);
bool imgstore_store__packset_changed(const imgstore_store__packset *set, size_t i);
/** Every object id of pack i (libgit2 foreach callback convention). */
int imgstore_store__packset_foreach(imgstore_store__packset *set, size_t i, git_odb_foreach_cb cb,
                                    void *payload);
/** Touch the .pack of every pack that holds `oid` (once per pack per set): a writer reused
 * it, so gc --prune must count its grace period from now, as git's freshening does. False
 * when no pack holding it could be touched (gc removed it since): write the object anew. */
bool imgstore_store__packset_freshen(imgstore_store__packset *set, const git_oid *oid);
void imgstore_store__packset_free(imgstore_store__packset *set);

/* ---- reachability (unreachable.c) ---- */

typedef struct imgstore_store__oidset imgstore_store__oidset;

/** Every object reachable from any ref of `repo`: each commit once, each tree once (a whole
 * walk, as git's own prune does: its cost is what the refs reach), with the path each tree
 * and blob was first met at. 0 or IMGSTORE_ERROR. */
int imgstore_store__reachable(imgstore_store__oidset **out, git_repository *repo);
/** The objects of `loose` (sorted) that the refs reach through commits and trees of `loose`
 * alone, with their paths: from each ref back to the first commit already packed, so it costs
 * what is loose, never the history. */
int imgstore_store__loose_paths(imgstore_store__oidset **out, git_repository *repo,
                                const git_oid *loose, size_t count);
bool imgstore_store__oidset_has(const imgstore_store__oidset *set, const git_oid *oid);
/** What the packbuilder needs to put the versions of one path side by side, newest first, for
 * deltas: the last 16 characters of the path `oid` was met at (NUL-terminated: what libgit2
 * hashes) and the order the walk met it in. False when `set` is NULL or does not hold
 * `oid`. */
bool imgstore_store__oidset_hint(char path[17], uint32_t *order, const imgstore_store__oidset *set,
                                 const git_oid *oid);
void imgstore_store__oidset_free(imgstore_store__oidset *set);

/** Remove the loose objects (and tmp_obj_* files) not in `reachable` whose mtime is before
 * `expire_before` (unix seconds): *count_out of them, *bytes_out bytes (unreachable.c). */
int imgstore_store__prune_unreachable(uint64_t *count_out, uint64_t *bytes_out,
                                      imgstore_store *store,
                                      const imgstore_store__oidset *reachable,
                                      int64_t expire_before);

/** After a commit landed (and the write lock is released): pack when loose objects passed
 * the threshold, unless automatic packing is off. Never fails the caller. */
void imgstore_store__gc_after_commit(imgstore_store *store);

/* ---- libgit2 errors (git_error.c) ----------------------------------------------------- */

/** Translate a libgit2 return code into an IMGSTORE_E* code with `what` + libgit2's message. */
int imgstore_store__git_error(int git_rc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
