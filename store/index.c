/*
 * The indexes kept in the store (docs/format.md, "Indexes"): derived data committed with
 * every operation so that no command walks all versions or all commits (issue #9).
 *
 *   index/oplog                        row k: the id of the commit with op number k
 *   index/<name>/versions              one row per version, sorted by (created, version):
 *                                      "created TAB version TAB files TAB size TAB manifest-id"
 *   index/<name>/events                one row per commit that changed images/<name> or
 *                                      channels/<name>: "op TAB commit-time"
 *   index/<name>/channels/<channel>    one row per commit that changed the channel's state:
 *                                      "op TAB state-time"
 *   index/<name>/names                 the versions in bytewise order of their names: not a
 *                                      log but a B-tree of segments (names.c)
 *   index/digests/<xx>/<yy>            "sha256 TAB name TAB version TAB file": the files of
 *                                      every version ever pushed, and its OCI config and
 *                                      manifest ("@oci-config", "@oci-manifest")
 *
 * A commit's op number is its first-parent depth (the first commit is 0). The commit with op
 * k appends row k-1 of the oplog (its parent's id: a commit cannot name itself), so the tip's
 * oplog has one row per commit before it, and its last row is the tip's parent. That one
 * comparison tells whether the indexes are current: a commit written by anything else
 * (stock git, an older imgstore) breaks it, writers then leave the indexes alone and readers
 * walk as before until `imgstore reindex` rebuilds them.
 *
 * Every log is cut into segments of LOG_ROWS rows, LOG_SEGMENTS segments per group:
 * <log>/<group %05u>/<segment %03u>, so an append rewrites one small blob and three small
 * trees, and reading row i reads one segment.
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_ROWS        IMGSTORE_STORE__LOG_ROWS
#define LOG_SEGMENTS    256
#define LOG_SEGMENT_CAP (256u * 1024)
#define OPLOG           "index/oplog"

/* ---- segmented logs ------------------------------------------------------------------ */

void imgstore_store__log_segment_path(char *out, size_t cap, const char *log, size_t segment)
{
    snprintf(out, cap, "%s/%05zu/%03zu", log, segment / LOG_SEGMENTS, segment % LOG_SEGMENTS);
}

static int damaged(const char *log, const char *what)
{
    return imgstore_error_set(IMGSTORE_EVERIFY,
                              "%s: the index is damaged (%s); run imgstore reindex", log, what);
}

/* The tree at `path` of `root`, or NULL (0) when absent. */
static int subtree(git_tree **out, imgstore_store *store, const git_tree *root, const char *path)
{
    git_tree_entry *entry = NULL;
    int rc;

    *out = NULL;
    if ((rc = git_tree_entry_bypath(&entry, root, path)) == GIT_ENOTFOUND)
        return 0;
    if (rc == 0 && git_tree_entry_type(entry) != GIT_OBJECT_TREE)
        rc = GIT_EINVALID;
    if (rc == 0)
        rc = git_tree_lookup(out, store->repo, git_tree_entry_id(entry));
    git_tree_entry_free(entry);
    return rc < 0 ? imgstore_store__git_error(rc, "%s", path) : 0;
}

/* The last entry of `tree`, which must be named `index` in `width` digits: the entries of a
 * log directory are 0, 1, ... in order. Returns its position. */
static int last_numbered(size_t *out, const git_tree *tree, const char *log, int width)
{
    size_t count = git_tree_entrycount(tree);
    char expect[32];

    if (count == 0)
        return damaged(log, "empty directory");
    snprintf(expect, sizeof(expect), "%0*zu", width, count - 1);
    if (strcmp(git_tree_entry_name(git_tree_entry_byindex(tree, count - 1)), expect) != 0)
        return damaged(log, "segments out of sequence");
    *out = count - 1;
    return 0;
}

/* Split a segment's bytes into rows (pointers into `bytes`, which is modified). */
static size_t split_rows(char *rows[LOG_ROWS + 1], char *bytes)
{
    size_t n = 0;

    for (char *line = bytes; *line && n <= LOG_ROWS;) {
        char *nl = strchr(line, '\n');

        if (!nl)
            break;
        *nl = '\0';
        rows[n++] = line;
        line = nl + 1;
    }
    return n;
}

typedef struct {
    char *bytes; /* owns the rows */
    char *rows[LOG_ROWS + 1];
    size_t count;
} segment;

static void segment_clear(segment *s)
{
    free(s->bytes);
    memset(s, 0, sizeof(*s));
}

/* Read segment `n` of `log`; every segment but the last holds LOG_ROWS rows. */
static int segment_read(segment *out, imgstore_store *store, const git_tree *root, const char *log,
                        size_t n, bool last)
{
    char path[512];
    size_t len = 0;
    int err;

    memset(out, 0, sizeof(*out));
    imgstore_store__log_segment_path(path, sizeof(path), log, n);
    if ((err = imgstore_store__read_small_blob(&out->bytes, &len, store, root, path,
                                               LOG_SEGMENT_CAP)) < 0)
        return err == IMGSTORE_ENOTFOUND ? damaged(log, "a segment is missing") : err;
    if (len == 0 || out->bytes[len - 1] != '\n' || strlen(out->bytes) != len)
        return damaged(log, "a segment is not rows of text");
    out->count = split_rows(out->rows, out->bytes);
    if (out->count > LOG_ROWS || (!last && out->count != LOG_ROWS))
        return damaged(log, "a segment has the wrong number of rows");
    return 0;
}

int imgstore_store__log_count(size_t *out, imgstore_store *store, const git_tree *root,
                              const char *log)
{
    git_tree *dir = NULL, *group = NULL;
    segment last = {0};
    size_t groups = 0, segments = 0;
    char path[512];
    int err;

    *out = 0;
    if ((err = subtree(&dir, store, root, log)) < 0 || !dir)
        return err;
    if ((err = last_numbered(&groups, dir, log, 5)) < 0)
        goto done;
    snprintf(path, sizeof(path), "%s/%05zu", log, groups);
    if ((err = subtree(&group, store, root, path)) < 0)
        goto done;
    if (!group) {
        err = damaged(log, "a group is not a directory");
        goto done;
    }
    if ((err = last_numbered(&segments, group, log, 3)) < 0)
        goto done;
    if (groups > 0 && git_tree_entrycount(group) == 0) {
        err = damaged(log, "empty group");
        goto done;
    }
    if ((err = segment_read(&last, store, root, log, groups * LOG_SEGMENTS + segments, true)) < 0)
        goto done;
    if (last.count == 0) {
        err = damaged(log, "empty segment");
        goto done;
    }
    *out = (groups * LOG_SEGMENTS + segments) * LOG_ROWS + last.count;
done:
    segment_clear(&last);
    git_tree_free(group);
    git_tree_free(dir);
    return err;
}

int imgstore_store__log_rows(char ***out, imgstore_store *store, const git_tree *root,
                             const char *log, size_t total, size_t first, size_t count)
{
    char **rows = calloc(count + 1, sizeof(*rows));
    segment seg = {0};
    size_t loaded = SIZE_MAX;
    int err = 0;

    *out = NULL;
    if (!rows)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (first + count > total || first + count < first)
        err = imgstore_error_set(IMGSTORE_EINVALID, "%s: rows %zu..%zu of %zu", log, first,
                                 first + count, total);
    for (size_t i = 0; i < count && err == 0; i++) {
        size_t row = first + i, n = row / LOG_ROWS;

        if (n != loaded) {
            segment_clear(&seg);
            if ((err = segment_read(&seg, store, root, log, n, n == (total - 1) / LOG_ROWS)) < 0)
                break;
            loaded = n;
        }
        if (row % LOG_ROWS >= seg.count) {
            err = damaged(log, "a segment is short");
            break;
        }
        if (!(rows[i] = strdup(seg.rows[row % LOG_ROWS])))
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    segment_clear(&seg);
    if (err < 0) {
        imgstore_strings_free(rows, count);
        return err;
    }
    *out = rows;
    return 0;
}

int imgstore_store__log_prefix_equal(bool *out, imgstore_store *store, const git_tree *a,
                                     size_t a_total, const git_tree *b, size_t b_total,
                                     const char *log, size_t count)
{
    const size_t group_rows = (size_t)LOG_SEGMENTS * LOG_ROWS;
    char path[512], **a_rows = NULL, **b_rows = NULL;
    size_t row = 0;
    int err = 0;

    *out = false;
    if (count > a_total || count > b_total)
        return 0;
    /* whole groups, then whole segments, by id: equal rows are equal blobs */
    while (row + group_rows <= count) {
        git_oid x, y;

        snprintf(path, sizeof(path), "%s/%05zu", log, row / group_rows);
        x = imgstore_store__id_at(a, path);
        y = imgstore_store__id_at(b, path);
        if (git_oid_is_zero(&x) || !git_oid_equal(&x, &y))
            break;
        row += group_rows;
    }
    while (row + LOG_ROWS <= count) {
        git_oid x, y;

        imgstore_store__log_segment_path(path, sizeof(path), log, row / LOG_ROWS);
        x = imgstore_store__id_at(a, path);
        y = imgstore_store__id_at(b, path);
        if (git_oid_is_zero(&x) || !git_oid_equal(&x, &y))
            return 0;
        row += LOG_ROWS;
    }
    if (row == count) {
        *out = true;
        return 0;
    }
    if ((err = imgstore_store__log_rows(&a_rows, store, a, log, a_total, row, count - row)) < 0 ||
        (err = imgstore_store__log_rows(&b_rows, store, b, log, b_total, row, count - row)) < 0)
        goto done;
    *out = true;
    for (size_t i = 0; i < count - row; i++)
        *out = *out && strcmp(a_rows[i], b_rows[i]) == 0;
done:
    imgstore_strings_free(a_rows, a_rows ? count - row : 0);
    imgstore_strings_free(b_rows, b_rows ? count - row : 0);
    return err;
}

/* Write rows [first, first+count) of `log` into the tree *tree_oid, replacing what was there
 * from `first` (a multiple of LOG_ROWS) on. Logs only grow, so nothing after them is left. */
static int log_write(git_oid *tree_oid, imgstore_store *store, const char *log, size_t first,
                     char *const *rows, size_t count)
{
    int err = 0;

    for (size_t at = 0; at < count && err == 0; at += LOG_ROWS) {
        size_t n = count - at < LOG_ROWS ? count - at : LOG_ROWS, len = 0;
        char path[512], *bytes;
        git_oid blob;

        for (size_t i = 0; i < n; i++)
            len += strlen(rows[at + i]) + 1;
        if (!(bytes = malloc(len + 1)))
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        len = 0;
        for (size_t i = 0; i < n; i++)
            len += (size_t)sprintf(bytes + len, "%s\n", rows[at + i]);
        err = imgstore_store__write_blob(&blob, store, bytes, len);
        free(bytes);
        imgstore_store__log_segment_path(path, sizeof(path), log, (first + at) / LOG_ROWS);
        if (err == 0)
            err = imgstore_store__tree_set(tree_oid, store, path, &blob, GIT_FILEMODE_BLOB);
    }
    return err;
}

int imgstore_store__log_replace_tail(git_oid *tree_oid, imgstore_store *store, const char *log,
                                     size_t total, size_t first, char *const *rows, size_t count)
{
    size_t old_segments = (total + LOG_ROWS - 1) / LOG_ROWS;
    size_t new_segments = (first + count + LOG_ROWS - 1) / LOG_ROWS;
    int err;

    if (first % LOG_ROWS != 0 || first > total)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: a rewrite starts at row %zu", log, first);
    err = log_write(tree_oid, store, log, first, rows, count);
    /* a log that shrank (prune) drops its segments past the new end; tree_set removes a
     * group directory with its last segment */
    for (size_t n = new_segments; n < old_segments && err == 0; n++) {
        char path[512];

        imgstore_store__log_segment_path(path, sizeof(path), log, n);
        err = imgstore_store__tree_set(tree_oid, store, path, NULL, 0);
    }
    return err;
}

/* Rows of the segment holding row `total - 1` onwards: [*first_out, total) */
static int log_tail(char ***rows_out, size_t *count_out, size_t *first_out, imgstore_store *store,
                    const git_tree *root, const char *log, size_t total)
{
    *first_out = total ? (total - 1) / LOG_ROWS * LOG_ROWS : 0;
    *count_out = total - *first_out;
    return imgstore_store__log_rows(rows_out, store, root, log, total, *first_out, *count_out);
}

/* Insert `row` at position `at` of a log of `total` rows held in the tree *tree_oid. Costs the
 * segments from `at` to the end: one for an append. */
static int log_insert(git_oid *tree_oid, imgstore_store *store, const char *log, size_t total,
                      size_t at, const char *row)
{
    git_tree *root = NULL;
    char **rows = NULL, **grown = NULL;
    size_t first = at / LOG_ROWS * LOG_ROWS, count = total - first;
    int err, rc;

    if ((rc = git_tree_lookup(&root, store->repo, tree_oid)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the tree", log);
    if ((err = imgstore_store__log_rows(&rows, store, root, log, total, first, count)) < 0)
        goto done;
    if (!(grown = calloc(count + 2, sizeof(*grown)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    memcpy(grown, rows, (at - first) * sizeof(*grown));
    grown[at - first] = (char *)row;
    memcpy(grown + at - first + 1, rows + at - first, (total - at) * sizeof(*grown));
    err = log_write(tree_oid, store, log, first, grown, count + 1);
done:
    free(grown);
    imgstore_strings_free(rows, count);
    git_tree_free(root);
    return err;
}

int imgstore_store__log_append(git_oid *tree_oid, imgstore_store *store, const char *log,
                               const char *row)
{
    git_tree *root = NULL;
    size_t total = 0;
    int err, rc;

    if ((rc = git_tree_lookup(&root, store->repo, tree_oid)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the tree", log);
    err = imgstore_store__log_count(&total, store, root, log);
    git_tree_free(root);
    return err < 0 ? err : log_insert(tree_oid, store, log, total, total, row);
}

/* ---- what a commit changed ------------------------------------------------------------ */

/* Where a log's rows go: appended to a tree (a commit) or collected (a rebuild). */
typedef int (*row_sink)(const char *log, const char *row, void *payload);

/* Names in the directory `path` of either tree whose entries differ (or exist in one only),
 * each passed to `fn`. Both listings are sorted, so one merge. */
typedef int (*name_fn)(const char *entry, void *payload);

static int changed_names(imgstore_store *store, const git_tree *before, const git_tree *after,
                         const char *path, name_fn fn, void *payload)
{
    git_tree *a = NULL, *b = NULL;
    size_t i = 0, j = 0, na, nb;
    int err;

    if ((err = before ? subtree(&a, store, before, path) : 0) < 0 ||
        (err = subtree(&b, store, after, path)) < 0)
        goto done;
    if (a && b && git_oid_equal(git_tree_id(a), git_tree_id(b)))
        goto done;
    na = a ? git_tree_entrycount(a) : 0;
    nb = b ? git_tree_entrycount(b) : 0;
    while ((i < na || j < nb) && err == 0) {
        const git_tree_entry *x = i < na ? git_tree_entry_byindex(a, i) : NULL;
        const git_tree_entry *y = j < nb ? git_tree_entry_byindex(b, j) : NULL;
        int c = !x ? 1 : !y ? -1 : strcmp(git_tree_entry_name(x), git_tree_entry_name(y));

        if (c < 0)
            err = fn(git_tree_entry_name(x), payload), i++;
        else if (c > 0)
            err = fn(git_tree_entry_name(y), payload), j++;
        else {
            if (!git_oid_equal(git_tree_entry_id(x), git_tree_entry_id(y)))
                err = fn(git_tree_entry_name(x), payload);
            i++, j++;
        }
    }
done:
    git_tree_free(a);
    git_tree_free(b);
    return err;
}

typedef struct {
    imgstore_store *store;
    const git_tree *before, *after;
    uint64_t op;
    int64_t time;
    row_sink sink;
    void *payload;
    const char *prefix; /* of every log path: "index/" in a commit, "" in a rebuild */
    char **names;       /* images changed, sorted, distinct */
    size_t name_count;
    const char *image;   /* while walking its channels */
    size_t moves;        /* channel states of `image` it wrote */
    const char *summary; /* the commit's subject (a rebuild), NULL when unknown */
    bool digests;        /* also the digest rows of the versions a prune removed (a rebuild) */
} commit_diff;

static int note_image(const char *entry, void *payload)
{
    commit_diff *d = payload;
    char **grown;

    for (size_t i = 0; i < d->name_count; i++)
        if (strcmp(d->names[i], entry) == 0)
            return 0;
    if (!(grown = realloc(d->names, (d->name_count + 1) * sizeof(*grown))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    d->names = grown;
    if (!(d->names[d->name_count] = strdup(entry)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    d->name_count++;
    return 0;
}

static int note_move(const char *entry, void *payload)
{
    commit_diff *d = payload;
    size_t len = strlen(entry);
    imgstore_channel_state *state = NULL;
    char channel[IMGSTORE_NAME_MAX + 1], log[512], row[64];
    int64_t when = 0;
    int err;

    if (len <= 5 || strcmp(entry + len - 5, ".json") != 0 || len - 5 > IMGSTORE_NAME_MAX)
        return 0; /* signature directories change with their state */
    snprintf(channel, sizeof(channel), "%.*s", (int)(len - 5), entry);
    if ((err = imgstore_store__channel_load(&state, d->store, d->after, d->image, channel)) ==
        IMGSTORE_ENOTFOUND)
        return 0; /* removed: not a move */
    if (err < 0)
        return err;
    err = imgstore_time_parse(&when, state->time);
    imgstore_channel_state_free(state);
    if (err < 0)
        return err;
    snprintf(log, sizeof(log), "%s%s/channels/%s", d->prefix, d->image, channel);
    snprintf(row, sizeof(row), "%llu\t%lld", (unsigned long long)d->op, (long long)when);
    d->moves++;
    return d->sink(log, row, d->payload);
}

/* ---- the digest index ------------------------------------------------------------------ */

/* index/digests/<xx>/<yy>: "file-sha256 TAB image TAB version TAB file" for every file of
 * every version ever pushed, in push order; rows stay after a prune (history is history). */
static void digest_log(char *out, size_t cap, const char *prefix, const char *sha256)
{
    snprintf(out, cap, "%sdigests/%.2s/%.2s", prefix, sha256, sha256 + 2);
}

static int digest_row(const char *sha256, const imgstore_manifest *m, const char *file,
                      const char *prefix, row_sink sink, void *payload)
{
    char log[512], *row = imgstore_strfmt("%s\t%s\t%s\t%s", sha256, m->name, m->version, file);
    int err;

    if (!row)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    digest_log(log, sizeof(log), prefix, sha256);
    err = sink(log, row, payload);
    free(row);
    return err;
}

/* A version's rows: one per file, and its OCI config and manifest ("@oci-config",
 * "@oci-manifest": no file name starts with '@'), which the /v2 API looks up by digest. */
static int digest_rows_of(const imgstore_manifest *m, const char *prefix, row_sink sink,
                          void *payload)
{
    char config[65], manifest[65];
    int err = imgstore_store__oci_digests(config, manifest, m);

    if (err == 0)
        err = digest_row(config, m, "@oci-config", prefix, sink, payload);
    if (err == 0)
        err = digest_row(manifest, m, "@oci-manifest", prefix, sink, payload);
    for (size_t i = 0; i < m->file_count && err == 0; i++)
        err = digest_row(m->files[i].sha256, m, m->files[i].path, prefix, sink, payload);
    return err;
}

static bool has_entry(const git_tree *root, const char *path)
{
    git_oid id = imgstore_store__id_at(root, path);

    return !git_oid_iszero(&id);
}

typedef struct {
    commit_diff *d;
    const char *name;
} removed_versions;

static int note_removed_version(const char *entry, void *payload)
{
    removed_versions *r = payload;
    imgstore_manifest *m = NULL;
    char path[512];
    int err;

    imgstore_store__version_path(path, sizeof(path), r->d->store, r->name, entry, NULL);
    if (!has_entry(r->d->before, path) || has_entry(r->d->after, path))
        return 0;
    if ((err = imgstore_store__manifest_load(&m, NULL, r->d->store, r->d->before, r->name,
                                             entry)) == 0)
        err = digest_rows_of(m, r->d->prefix, r->d->sink, r->d->payload);
    imgstore_manifest_free(m);
    return err;
}

/* imgstore/2: a shard of images/<name> that changed, whose versions are compared in turn */
static int note_removed_shard(const char *entry, void *payload)
{
    removed_versions *r = payload;
    char path[512];

    snprintf(path, sizeof(path), "images/%s/%s", r->name, entry);
    return changed_names(r->d->store, r->d->before, r->d->after, path, note_removed_version, r);
}

/* A rebuild's digest rows of versions no longer at the tip: those a prune commit removed,
 * read from its parent's tree (the tip's own versions are added from their manifests). Only
 * prunes remove versions, so only they cost a merge of two listings of images/<name> (of
 * the shards that changed, in an imgstore/2 store). */

static int digest_rows_removed(commit_diff *d, const char *name)
{
    removed_versions r = {d, name};
    char path[512];

    if (!d->summary || strncmp(d->summary, "prune ", 6) != 0)
        return 0;
    snprintf(path, sizeof(path), "images/%s", name);
    return changed_names(d->store, d->before, d->after, path,
                         d->store->layout == IMGSTORE_STORE__SHARDED ? note_removed_shard
                                                                     : note_removed_version,
                         &r);
}

/* The rows commit `op` (tree `after`, its parent's tree `before`) adds to the logs: exactly
 * the commits history.c turns into entries (a push, or a channel state written). */
static int diff_commit(commit_diff *d)
{
    char log[512], row[64], path[512];
    int err;

    if ((err = changed_names(d->store, d->before, d->after, "images", note_image, d)) < 0 ||
        (err = changed_names(d->store, d->before, d->after, "channels", note_image, d)) < 0)
        goto done;
    for (size_t i = 0; i < d->name_count && err == 0; i++) {
        git_oid now, was;

        d->image = d->names[i];
        d->moves = 0;
        snprintf(path, sizeof(path), "channels/%s", d->names[i]);
        if ((err = changed_names(d->store, d->before, d->after, path, note_move, d)) < 0)
            break;
        snprintf(path, sizeof(path), "images/%s", d->names[i]);
        now = imgstore_store__id_at(d->after, path);
        was = imgstore_store__id_at(d->before, path);
        if (git_oid_equal(&now, &was) && d->moves == 0)
            continue;
        snprintf(log, sizeof(log), "%s%s/events", d->prefix, d->names[i]);
        snprintf(row, sizeof(row), "%llu\t%lld", (unsigned long long)d->op, (long long)d->time);
        if ((err = d->sink(log, row, d->payload)) == 0 && d->digests &&
            !git_oid_equal(&now, &was) && !git_oid_iszero(&was))
            err = digest_rows_removed(d, d->names[i]);
    }
done:
    imgstore_strings_free(d->names, d->name_count);
    d->names = NULL;
    d->name_count = 0;
    return err;
}

/* ---- the oplog and whether the indexes are current ----------------------------------- */

static int oid_row(git_oid *out, const char *row)
{
    if (strlen(row) != GIT_OID_HEXSZ || git_oid_fromstr(out, row) < 0)
        return damaged(OPLOG, "a row is not a commit id");
    return 0;
}

int imgstore_store__index_current(bool *out, uint64_t *ops_out, imgstore_store *store,
                                  const git_commit *commit, const git_tree *tree)
{
    imgstore_store__cut_record cut;
    char **rows = NULL;
    size_t total = 0;
    git_oid last;
    int err;

    *out = false;
    *ops_out = 0;
    if ((err = imgstore_store__log_count(&total, store, tree, OPLOG)) < 0)
        return err == IMGSTORE_EVERIFY ? 0 : err; /* damaged: not current */
    if (git_commit_parentcount(commit) == 0 && (err = imgstore_store__cut_read(&cut, commit)) < 0) {
        *out = total == 0; /* the first commit */
        return err == IMGSTORE_ENOTFOUND || err == IMGSTORE_EVERIFY ? 0 : err;
    }
    if (total == 0)
        return 0; /* written before indexes, or by something else */
    if ((err = imgstore_store__log_rows(&rows, store, tree, OPLOG, total, total - 1, 1)) < 0) {
        return err == IMGSTORE_EVERIFY ? 0 : err;
    }
    /* a cut's oplog ends at the removal it was made after (cut.c) */
    if (oid_row(&last, rows[0]) == 0 &&
        git_oid_equal(&last, git_commit_parentcount(commit) ? git_commit_parent_id(commit, 0)
                                                            : &cut.previous) &&
        (git_commit_parentcount(commit) > 0 || total == cut.op)) {
        *out = true;
        *ops_out = total;
    }
    imgstore_strings_free(rows, 1);
    return 0;
}

typedef struct {
    imgstore_store *store;
    git_oid *tree_oid;
} appender;

static int sink_append(const char *log, const char *row, void *payload)
{
    appender *a = payload;

    return imgstore_store__log_append(a->tree_oid, a->store, log, row);
}

int imgstore_store__index_commit(git_oid *tree_oid, imgstore_store *store, const git_commit *parent,
                                 const git_tree *parent_tree, int64_t time)
{
    appender a = {store, tree_oid};
    commit_diff d = {0};
    git_tree *after = NULL;
    char row[GIT_OID_HEXSZ + 1];
    bool current = false;
    uint64_t ops = 0;
    int err, rc;

    if (store->index_rebuilt)
        return 0; /* the edit wrote the whole index itself (reindex) */
    if ((err = imgstore_store__index_current(&current, &ops, store, parent, parent_tree)) < 0 ||
        !current)
        return err;
    if ((rc = git_tree_lookup(&after, store->repo, tree_oid)) < 0)
        return imgstore_store__git_error(rc, "cannot read the new tree");
    d = (commit_diff){store,    parent_tree, after, ops + 1, time, sink_append, &a,
                      "index/", NULL,        0,     NULL,    0,    NULL,        false};
    git_oid_tostr(row, sizeof(row), git_commit_id(parent));
    if ((err = imgstore_store__log_append(tree_oid, store, OPLOG, row)) == 0)
        err = diff_commit(&d);
    git_tree_free(after);
    return err;
}

/* ---- the version index --------------------------------------------------------------- */

/* Rows sort by (created, version): compare up to the second tab. */
static int version_key_cmp(const char *a, const char *b)
{
    for (int tabs = 0;; a++, b++) {
        if (*a != *b)
            return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        if (*a == '\0' || (*a == '\t' && ++tabs == 2))
            return 0;
    }
}

static int qsort_rows(const void *a, const void *b)
{
    return version_key_cmp(*(char *const *)a, *(char *const *)b);
}

static char *row_format(const char *created, const char *version, size_t files, uint64_t size,
                        const git_oid *manifest_oid)
{
    char hex[GIT_OID_HEXSZ + 1];

    git_oid_tostr(hex, sizeof(hex), manifest_oid);
    return imgstore_strfmt("%s\t%s\t%zu\t%llu\t%s", created, version, files,
                           (unsigned long long)size, hex);
}

static char *version_row(const imgstore_manifest *m, const git_oid *manifest_oid)
{
    uint64_t size = 0;

    for (size_t i = 0; i < m->file_count; i++)
        size += m->files[i].size;
    return row_format(m->created, m->version, m->file_count, size, manifest_oid);
}

/* What a row says of the manifest at `path` of `root` (*created_out is the caller's), from a
 * light read of its stored bytes (it was checked in full when it was stored; here only the
 * row is in question). */
static int manifest_light_read(char **created_out, size_t *files_out, uint64_t *size_out,
                               imgstore_store *store, const git_tree *root, const char *path)
{
    char *bytes = NULL;
    size_t len = 0, index;
    json_t *doc = NULL, *file;
    const char *created;
    uint64_t size = 0;
    int err;

    *created_out = NULL;
    if ((err = imgstore_store__read_small_blob(&bytes, &len, store, root, path,
                                               IMGSTORE_MANIFEST_MAX_BYTES)) < 0)
        return err;
    doc = json_loadb(bytes, len, 0, NULL);
    free(bytes);
    if (!doc || !(created = json_string_value(json_object_get(doc, "created"))) ||
        !json_is_array(json_object_get(doc, "files"))) {
        json_decref(doc);
        return imgstore_error_set(IMGSTORE_EVERIFY, "%s: stored manifest is damaged", path);
    }
    json_array_foreach(json_object_get(doc, "files"), index, file)
    {
        size += (uint64_t)json_integer_value(json_object_get(file, "size"));
    }
    *files_out = json_array_size(json_object_get(doc, "files"));
    *size_out = size;
    *created_out = strdup(created);
    json_decref(doc);
    return *created_out ? 0 : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
}

/* The row the manifest at `path` of `root` gives. */
static int row_from_manifest(char **out, imgstore_store *store, const git_tree *root,
                             const char *path, const char *version, const git_oid *manifest_oid)
{
    char *created = NULL;
    size_t files = 0;
    uint64_t size = 0;
    int err;

    *out = NULL;
    if ((err = manifest_light_read(&created, &files, &size, store, root, path)) < 0)
        return err;
    *out = row_format(created, version, files, size, manifest_oid);
    free(created);
    return *out ? 0 : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
}

/* The manifest blob id of images/<name>/<version> in `root` (ENOTFOUND). */
static int manifest_id(git_oid *out, const imgstore_store *store, const git_tree *root,
                       const char *name, const char *version)
{
    git_tree_entry *entry = NULL;
    char path[512];
    int rc;

    imgstore_store__version_path(path, sizeof(path), store, name, version, "manifest.json");
    if ((rc = git_tree_entry_bypath(&entry, root, path)) < 0)
        return rc == GIT_ENOTFOUND ? IMGSTORE_ENOTFOUND : imgstore_store__git_error(rc, "%s", path);
    *out = *git_tree_entry_id(entry);
    git_tree_entry_free(entry);
    return 0;
}

/* A digest log's rows are sorted and distinct, so that a rebuild (which meets the versions in
 * another order than their pushes) gives the same log; it is about one segment. */
static int sink_insert_sorted(const char *log, const char *row, void *payload)
{
    appender *a = payload;
    git_tree *root = NULL;
    char **rows = NULL;
    size_t total = 0, at = 0;
    int err, rc, c = 1;

    if ((rc = git_tree_lookup(&root, a->store->repo, a->tree_oid)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the tree", log);
    if ((err = imgstore_store__log_count(&total, a->store, root, log)) == 0 &&
        (err = imgstore_store__log_rows(&rows, a->store, root, log, total, 0, total)) == 0) {
        while (at < total && (c = strcmp(rows[at], row)) < 0)
            at++;
        imgstore_strings_free(rows, total);
    }
    git_tree_free(root);
    if (err < 0 || (at < total && c == 0))
        return err; /* the same bytes pushed again under a pruned version's name */
    return log_insert(a->tree_oid, a->store, log, total, at, row);
}

/* Whether the store keeps a digest index that covers every version ever pushed: it has
 * one, or `root` (with the new version in it) holds no other version. A store whose indexes
 * an older imgstore wrote has none until imgstore reindex builds it from the history, so that
 * `which` never answers from one that misses the older pushes. */
static bool digests_kept(imgstore_store *store, const git_tree *root)
{
    git_tree *images = NULL;
    bool first = false;

    if (has_entry(root, "index/digests"))
        return true;
    if (subtree(&images, store, root, "images") == 0 && images && git_tree_entrycount(images) == 1)
        first = imgstore_store__image_single_version(
            store, root, git_tree_entry_name(git_tree_entry_byindex(images, 0)));
    git_tree_free(images);
    imgstore_error_clear();
    return first;
}

/* Whether image `name` keeps a name index: it has one, or `root` (with the new version in
 * it) holds no other version of it. An image pushed by an older imgstore has none until
 * imgstore reindex builds it; its tag list sorts the names instead (names.c). */
static bool names_kept(imgstore_store *store, const git_tree *root, const char *name)
{
    char path[512];
    bool first = false;

    snprintf(path, sizeof(path), "index/%s/names", name);
    if (has_entry(root, path))
        return true;
    first = imgstore_store__image_single_version(store, root, name);
    imgstore_error_clear();
    return first;
}

int imgstore_store__index_add_version(git_oid *tree_oid, imgstore_store *store,
                                      const imgstore_manifest *m)
{
    git_tree *root = NULL;
    char log[512], *row = NULL, **rows = NULL;
    size_t total = 0, at, first = 0, count = 0;
    git_oid manifest;
    bool log_failed = false;
    int err, rc;

    snprintf(log, sizeof(log), "index/%s/versions", m->name);
    if (!store->index_live) /* imgstore/2: see versions_counted */
        return store->layout == IMGSTORE_STORE__SHARDED
                   ? imgstore_store__tree_set(tree_oid, store, log, NULL, 0)
                   : 0;
    if ((rc = git_tree_lookup(&root, store->repo, tree_oid)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the tree", log);
    if ((err = manifest_id(&manifest, store, root, m->name, m->version)) < 0)
        goto done;
    if ((err = imgstore_store__log_count(&total, store, root, log)) < 0) {
        log_failed = err == IMGSTORE_EVERIFY;
        goto done;
    }
    if (!(row = version_row(m, &manifest))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    /* usually the newest: it goes at the end; a back-dated one moves later rows up */
    at = total;
    while (at > 0 && err == 0) {
        if ((err = log_tail(&rows, &count, &first, store, root, log, at)) < 0)
            break;
        while (at > first && version_key_cmp(rows[at - first - 1], row) > 0)
            at--;
        imgstore_strings_free(rows, count);
        rows = NULL;
        if (at > first)
            break; /* row at-1 sorts before the new one; otherwise look one segment back */
    }
    /* imgstore/2: a version log that went (damaged, or not kept by a commit while the
     * indexes were stale) is not begun again by a later push but by reindex: holding only
     * the new rows, it would be taken for the image's whole count */
    if (err == 0 && (total > 0 || store->layout != IMGSTORE_STORE__SHARDED ||
                     imgstore_store__image_single_version(store, root, m->name)))
        err = log_insert(tree_oid, store, log, total, at, row);
    log_failed = err == IMGSTORE_EVERIFY;
    if (err == 0 && digests_kept(store, root)) {
        appender a = {store, tree_oid};
        imgstore_manifest *stored = NULL;

        /* the manifest as stored (and as a rebuild reads it): its OCI rendering is what
         * the /v2 API serves, and the push's copy lacks what the commit filled in */
        if ((err = imgstore_store__manifest_load(&stored, NULL, store, root, m->name,
                                                 m->version)) == 0)
            err = digest_rows_of(stored, "index/", sink_insert_sorted, &a);
        imgstore_manifest_free(stored);
    }
    if (err == 0 && names_kept(store, root, m->name)) {
        char dir[512], *add[] = {m->version};

        snprintf(dir, sizeof(dir), "index/%s/names", m->name);
        err = imgstore_store__names_edit(tree_oid, store, dir, add, 1, NULL, 0);
    }
done:
    free(row);
    git_tree_free(root);
    /* a damaged version index never blocks a push: left as it is, it no longer counts every
     * version, so readers sort the manifests and fsck says to reindex. In an imgstore/2
     * store readers take the index's count as the image's (the shards are not counted), so
     * it goes: without one, they read the manifests. A damaged digest or name index leaves
     * the version log alone. */
    if (err == IMGSTORE_EVERIFY && log_failed && store->layout == IMGSTORE_STORE__SHARDED) {
        imgstore_error_clear();
        snprintf(log, sizeof(log), "index/%s/versions", m->name);
        err = imgstore_store__tree_set(tree_oid, store, log, NULL, 0);
    }
    return err == IMGSTORE_EVERIFY ? 0 : err;
}

/* Every version of `name` in `root` as index rows, sorted: what the index must hold, read
 * from the manifests themselves (a rebuild, or a reader that found the index stale). */
static int versions_from_manifests_each(char ***rows_out, size_t *count_out, imgstore_store *store,
                                        const git_tree *root, const char *name,
                                        int (*each)(const imgstore_manifest *m, void *payload),
                                        void *payload);

static int versions_from_manifests(char ***rows_out, size_t *count_out, imgstore_store *store,
                                   const git_tree *root, const char *name)
{
    return versions_from_manifests_each(rows_out, count_out, store, root, name, NULL, NULL);
}

/* The same, handing each manifest to `each` (a rebuild's digest rows) while it is loaded. */
static int versions_from_manifests_each(char ***rows_out, size_t *count_out, imgstore_store *store,
                                        const git_tree *root, const char *name,
                                        int (*each)(const imgstore_manifest *m, void *payload),
                                        void *payload)
{
    char **versions = NULL;
    size_t count = 0;
    int err;

    *rows_out = NULL;
    *count_out = 0;
    if ((err = imgstore_store__versions_list(&versions, &count, store, root, name)) < 0)
        return err;
    for (size_t i = 0; i < count && err == 0; i++) {
        imgstore_manifest *m = NULL;
        git_oid id;
        char *row = NULL;

        if ((err = imgstore_store__manifest_load(&m, NULL, store, root, name, versions[i])) == 0 &&
            (err = manifest_id(&id, store, root, name, versions[i])) == 0 &&
            !(row = version_row(m, &id)))
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        if (err == 0 && each && (err = each(m, payload)) < 0)
            free(row);
        imgstore_manifest_free(m);
        if (err == 0) {
            free(versions[i]);
            versions[i] = row;
        }
    }
    if (err < 0) {
        imgstore_strings_free(versions, count);
        return err;
    }
    qsort(versions, count, sizeof(*versions), qsort_rows);
    *rows_out = versions;
    *count_out = count;
    return 0;
}

void imgstore_version_rows_free(imgstore_version_row *rows, size_t count)
{
    for (size_t i = 0; rows && i < count; i++) {
        free(rows[i].version);
        free(rows[i].created);
    }
    free(rows);
}

/* Parse an index row and check it against the tree: the version is stored there with the
 * manifest the row was made from. A row that does not is never answered. */
static int version_row_parse(imgstore_version_row *out, imgstore_store *store, const git_tree *root,
                             const char *log, const char *name, const char *row)
{
    char created[64], version[IMGSTORE_NAME_MAX + 1], oid_hex[GIT_OID_HEXSZ + 1];
    unsigned long long files, size;
    char path[512], *expect = NULL;
    git_oid want, have;
    bool same;
    int end = 0, err;

    if (sscanf(row, "%63[^\t]\t%128[^\t]\t%llu\t%llu\t%40[0-9a-f]%n", created, version, &files,
               &size, oid_hex, &end) != 5 ||
        row[end] != '\0' || git_oid_fromstr(&want, oid_hex) < 0)
        return damaged(log, "a row does not parse");
    if (manifest_id(&have, store, root, name, version) < 0 || !git_oid_equal(&want, &have))
        return damaged(log, "a row names a version or manifest that is not stored");
    /* and it says what that manifest says: the index orders and pages, it never answers for
     * a manifest (about 30 us a row) */
    imgstore_store__version_path(path, sizeof(path), store, name, version, "manifest.json");
    if ((err = row_from_manifest(&expect, store, root, path, version, &have)) < 0)
        return err;
    same = strcmp(expect, row) == 0;
    free(expect);
    if (!same)
        return damaged(log, "a row differs from its manifest");
    if (!(out->version = strdup(version)) || !(out->created = strdup(created)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    out->files = (size_t)files;
    out->size = size;
    return 0;
}

int imgstore_store__version_row_read(imgstore_version_row *out, imgstore_store *store,
                                     const git_tree *root, const char *name, const char *version)
{
    char path[512];
    int err;

    memset(out, 0, sizeof(*out));
    out->row = SIZE_MAX;
    imgstore_store__version_path(path, sizeof(path), store, name, version, "manifest.json");
    if ((err = manifest_light_read(&out->created, &out->files, &out->size, store, root, path)) < 0)
        return err == IMGSTORE_ENOTFOUND
                   ? imgstore_error_set(err, "no version %s of image %s", version, name)
                   : err;
    if (!(out->version = strdup(version))) {
        free(out->created);
        out->created = NULL;
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    return 0;
}

/* Image NAME's versions at the tip: the tip tree (*tip_out, the caller frees it, also on an
 * error), how many versions are stored (IMGSTORE_ENOTFOUND when none), and whether the index
 * `log` counts every one of them. One that does not is stale (written by an older imgstore):
 * the manifests answer instead, and imgstore reindex repairs it. */
static int image_versions_at_tip(git_tree **tip_out, size_t *stored_out, bool *indexed_out,
                                 imgstore_store *store, const char *name, const char *log)
{
    int err;

    *stored_out = 0;
    *indexed_out = false;
    if ((err = imgstore_store__tip_tree(tip_out, store)) < 0)
        return err;
    return imgstore_store__versions_counted(stored_out, indexed_out, store, *tip_out, name, log);
}

static int count_one(const char *version, const git_tree_entry *entry, void *payload)
{
    (void)version;
    (void)entry;
    ++*(size_t *)payload;
    return 0;
}

/* Whether the indexes in `root` are current, when `root` is the tip's tree (a commit by
 * anything else leaves them stale); true for any other tree (an edit's, built on the tip by
 * imgstore itself). The oplog's last segment and the tip commit: a few small reads. */
static bool tip_indexes_current(imgstore_store *store, const git_tree *root)
{
    git_commit *tip = NULL;
    git_oid id;
    uint64_t ops = 0;
    bool current = true;

    /* fails closed: a tip that cannot be read leaves readers on the manifests */
    if (git_reference_name_to_id(&id, store->repo, IMGSTORE_STORE_REF) < 0 ||
        git_commit_lookup(&tip, store->repo, &id) < 0)
        current = false;
    else if (git_oid_equal(git_commit_tree_id(tip), git_tree_id(root)) &&
             imgstore_store__index_current(&current, &ops, store, tip, root) < 0)
        current = false;
    git_commit_free(tip);
    git_error_clear();
    imgstore_error_clear();
    return current;
}

int imgstore_store__versions_counted(size_t *stored_out, bool *indexed_out, imgstore_store *store,
                                     const git_tree *root, const char *name, const char *log)
{
    git_tree *dir = NULL;
    char path[256];
    size_t indexed = 0, stored = 0;
    bool log_ok;
    int err;

    *stored_out = 0;
    *indexed_out = false;
    snprintf(path, sizeof(path), "images/%s", name);
    if ((err = subtree(&dir, store, root, path)) < 0)
        return err;
    if (!dir || git_tree_entrycount(dir) == 0) {
        git_tree_free(dir);
        return imgstore_error_set(IMGSTORE_ENOTFOUND, "no image named %s", name);
    }
    stored = git_tree_entrycount(dir);
    git_tree_free(dir);
    log_ok = imgstore_store__log_count(&indexed, store, root, log) == 0;
    imgstore_error_clear();
    if (store->layout != IMGSTORE_STORE__SHARDED) {
        *stored_out = stored;
        *indexed_out = log_ok && indexed == stored;
        return 0;
    }
    /* imgstore/2: images/<name> holds shards, and counting the versions would read every
     * one. A push or prune that does not keep the version index (the indexes are not
     * current, or it is damaged) drops it instead (index_add_version, prune.c): a version
     * index present in current indexes counts every version, each row checked against the
     * tree as it is read. Without one, or after a commit by anything else, the manifests
     * answer, which reads every version in any case. */
    if (log_ok && indexed > 0 && tip_indexes_current(store, root)) {
        *stored_out = indexed;
        *indexed_out = true;
        return 0;
    }
    stored = 0;
    if ((err = imgstore_store__versions_foreach(store, root, store->layout, name, count_one, NULL,
                                                &stored)) < 0)
        return err;
    *stored_out = stored;
    return 0;
}

int imgstore_store_versions_page(imgstore_version_row **out, size_t *count_out, size_t *total_out,
                                 imgstore_store *store, const char *name, size_t before,
                                 size_t limit)
{
    imgstore_version_row *page = NULL;
    git_tree *tip = NULL;
    char log[512], **rows = NULL;
    size_t stored = 0, start = 0, end = 0, n = 0, row_count = 0;
    bool from_index = false;
    int err;

    *out = NULL;
    *count_out = 0;
    if (total_out)
        *total_out = 0;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0)
        return err;
    snprintf(log, sizeof(log), "index/%s/versions", name);
    if ((err = image_versions_at_tip(&tip, &stored, &from_index, store, name, log)) < 0)
        goto done;
    end = before < stored ? before : stored;
    start = limit && end > limit ? end - limit : 0;
    if (from_index)
        err = imgstore_store__log_rows(&rows, store, tip, log, stored, start, end - start);
    else
        err = versions_from_manifests(&rows, &row_count, store, tip, name);
    if (err < 0 || !(page = calloc(end - start + 1, sizeof(*page)))) {
        err = err < 0 ? err : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = end; i-- > start && err == 0; n++) {
        page[n].row = i;
        err = version_row_parse(&page[n], store, tip, log, name, rows[from_index ? i - start : i]);
    }
    if (err < 0)
        goto done;
    *out = page;
    *count_out = n;
    if (total_out)
        *total_out = stored;
    page = NULL;
done:
    imgstore_version_rows_free(page, n + (err < 0 ? 1 : 0));
    imgstore_strings_free(rows, from_index ? end - start : row_count);
    git_tree_free(tip);
    return err;
}

int imgstore_store_version_position(size_t *out, imgstore_store *store, const char *name,
                                    const char *version)
{
    imgstore_manifest *m = NULL;
    git_tree *tip = NULL;
    char log[512], *key = NULL, **rows = NULL;
    size_t stored = 0, lo = 0, hi, row_count = 0;
    bool indexed = false;
    int err;

    *out = 0;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0)
        return err;
    snprintf(log, sizeof(log), "index/%s/versions", name);
    if ((err = image_versions_at_tip(&tip, &stored, &indexed, store, name, log)) < 0)
        goto done;
    if ((err = imgstore_store__manifest_load(&m, NULL, store, tip, name, version)) < 0)
        goto done;
    if (!(key = imgstore_strfmt("%s\t%s\t", m->created, m->version))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (!indexed) { /* stale: as versions_page, the manifests answer */
        if ((err = versions_from_manifests(&rows, &row_count, store, tip, name)) < 0)
            goto done;
        for (hi = row_count; lo < hi && version_key_cmp(rows[lo], key) != 0; lo++)
            ;
        if (lo == row_count)
            err =
                imgstore_error_set(IMGSTORE_ENOTFOUND, "no version %s of image %s", version, name);
        *out = lo;
        goto done;
    }
    /* the rows sort by (created, version): a binary search, one segment a probe */
    for (hi = stored; lo < hi && err == 0;) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp;

        if ((err = imgstore_store__log_rows(&rows, store, tip, log, stored, mid, 1)) < 0)
            break;
        cmp = version_key_cmp(rows[0], key);
        imgstore_strings_free(rows, 1);
        rows = NULL;
        if (cmp == 0) {
            *out = mid;
            goto done;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (err == 0)
        err = damaged(log, "a stored version has no row");
done:
    imgstore_strings_free(rows, row_count);
    free(key);
    imgstore_manifest_free(m);
    git_tree_free(tip);
    return err;
}

/* ---- reading the logs of history ----------------------------------------------------- */

int imgstore_store__index_row_numbers(uint64_t *op_out, int64_t *time_out, const char *log,
                                      const char *row)
{
    unsigned long long op;
    long long when;
    int end = 0;

    if (sscanf(row, "%llu\t%lld%n", &op, &when, &end) != 2 || row[end] != '\0')
        return damaged(log, "a row does not parse");
    *op_out = op;
    *time_out = when;
    return 0;
}

int imgstore_store__index_commit_id(git_oid *out, imgstore_store *store, const git_tree *tip_tree,
                                    const git_oid *tip, uint64_t ops, uint64_t op)
{
    char **rows = NULL;
    int err;

    if (op == ops) {
        *out = *tip;
        return 0;
    }
    if (op > ops)
        return damaged(OPLOG, "a row names an operation after the tip");
    if ((err = imgstore_store__log_rows(&rows, store, tip_tree, OPLOG, ops, op, 1)) < 0)
        return err;
    err = oid_row(out, rows[0]);
    imgstore_strings_free(rows, 1);
    return err;
}

/* ---- rebuilding ---------------------------------------------------------------------- */

typedef struct {
    char *log;
    char **rows;
    size_t count, cap;
} mem_log;

/* The logs of a rebuild, found by name through a hash: a store has one log per image,
 * channel and digest prefix (up to 65,536 of those), and every row looks its log up. */
typedef struct {
    mem_log *logs;
    size_t count, cap;
    size_t *slots; /* 1 + the log's position, 0: empty */
    size_t slot_cap;
} mem_logs;

static void mem_logs_free(mem_logs *m)
{
    for (size_t i = 0; i < m->count; i++) {
        free(m->logs[i].log);
        imgstore_strings_free(m->logs[i].rows, m->logs[i].count);
    }
    free(m->logs);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static size_t name_hash(const char *name)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ULL;
    return (size_t)h;
}

static const mem_log *mem_log_find(const mem_logs *m, const char *log)
{
    if (!m->slot_cap)
        return NULL;
    for (size_t i = name_hash(log) & (m->slot_cap - 1); m->slots[i];
         i = (i + 1) & (m->slot_cap - 1))
        if (strcmp(m->logs[m->slots[i] - 1].log, log) == 0)
            return &m->logs[m->slots[i] - 1];
    return NULL;
}

/* Put logs[0..count) into a table of `cap` slots (a power of two). */
static int mem_logs_rehash(mem_logs *m, size_t cap)
{
    size_t *slots = calloc(cap, sizeof(*slots));

    if (!slots)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t k = 0; k < m->count; k++) {
        size_t i = name_hash(m->logs[k].log) & (cap - 1);

        while (slots[i])
            i = (i + 1) & (cap - 1);
        slots[i] = k + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->slot_cap = cap;
    return 0;
}

static int mem_log_take(mem_logs *m, const char *log, char *row)
{
    mem_log *l = (mem_log *)mem_log_find(m, log);

    if (!l) {
        if (m->count == m->cap) {
            size_t cap = m->cap ? m->cap * 2 : 64;
            mem_log *grown = realloc(m->logs, cap * sizeof(*grown));

            if (!grown)
                goto oom;
            m->logs = grown;
            m->cap = cap;
        }
        l = &m->logs[m->count];
        memset(l, 0, sizeof(*l));
        if (!(l->log = strdup(log)))
            goto oom;
        m->count++;
        if (m->count * 2 > m->slot_cap) {
            if (mem_logs_rehash(m, m->slot_cap ? m->slot_cap * 2 : 128) < 0) {
                free(row);
                return IMGSTORE_ERROR;
            }
        } else {
            size_t i = name_hash(log) & (m->slot_cap - 1);

            while (m->slots[i])
                i = (i + 1) & (m->slot_cap - 1);
            m->slots[i] = m->count;
        }
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **grown = realloc(l->rows, cap * sizeof(*grown));

        if (!grown)
            goto oom;
        l->rows = grown;
        l->cap = cap;
    }
    l->rows[l->count++] = row;
    return 0;
oom:
    free(row);
    return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
}

static int sink_collect(const char *log, const char *row, void *payload)
{
    char *copy = strdup(row);

    return copy ? mem_log_take(payload, log, copy)
                : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
}

/* Every commit id from the first to `last`, oldest first, along first parents. */
static int first_parent_chain(git_oid **out, size_t *count_out, imgstore_store *store,
                              const git_oid *last)
{
    git_revwalk *walk = NULL;
    git_oid *ids = NULL, id;
    size_t count = 0, cap = 0;
    int rc;

    *out = NULL;
    *count_out = 0;
    if ((rc = git_revwalk_new(&walk, store->repo)) < 0 || (rc = git_revwalk_push(walk, last)) < 0)
        goto done;
    git_revwalk_simplify_first_parent(walk);
    git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL | GIT_SORT_REVERSE);
    while ((rc = git_revwalk_next(&id, walk)) == 0) {
        if (count == cap) {
            git_oid *grown = realloc(ids, (cap = cap ? cap * 2 : 1024) * sizeof(*grown));

            if (!grown) {
                free(ids);
                git_revwalk_free(walk);
                return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            }
            ids = grown;
        }
        ids[count++] = id;
    }
    if (rc == GIT_ITEROVER)
        rc = 0;
done:
    git_revwalk_free(walk);
    if (rc < 0) {
        free(ids);
        return imgstore_store__git_error(rc, "%s: cannot walk the history", store->path);
    }
    *out = ids;
    *count_out = count;
    return 0;
}

/* One commit's rows: tree `after` at op `op` (time `time`) over the tree of commit `prev`. */
static int collect_commit(mem_logs *logs, imgstore_store *store, const git_oid *prev,
                          const git_tree *after, uint64_t op, int64_t time, const char *summary)
{
    git_commit *before_commit = NULL;
    git_tree *before = NULL;
    commit_diff d;
    int rc, err;

    if ((rc = git_commit_lookup(&before_commit, store->repo, prev)) < 0 ||
        (rc = git_commit_tree(&before, before_commit)) < 0) {
        git_commit_free(before_commit);
        return imgstore_store__git_error(rc, "cannot read commit %s", git_oid_tostr_s(prev));
    }
    d = (commit_diff){store, before, after, op,   time, sink_collect, logs,
                      "",    NULL,   0,     NULL, 0,    summary,      true};
    err = diff_commit(&d);
    git_tree_free(before);
    git_commit_free(before_commit);
    return err;
}

static int collect_digests(const imgstore_manifest *m, void *payload)
{
    return digest_rows_of(m, "", sink_collect, payload);
}

static int strcmp_rows(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every row of the index a commit with first parent `parent`, tree `after` and time `time`
 * must carry, built from nothing (log paths relative to index/): the walk a reindex or fsck
 * does once. */
static int index_collect(mem_logs *logs, imgstore_store *store, const git_commit *parent,
                         const git_commit *cut_tip, const git_tree *after, int64_t time,
                         const char *summary)
{
    git_commit *root = NULL;
    git_oid *chain = NULL;
    char **images = NULL;
    size_t chain_len = 0, image_count = 0;
    uint64_t base = 0; /* the op of the cut the chain starts at (cut.c), else 0 */
    int err, rc;

    if (cut_tip) { /* the tip is a cut: all its history is what it kept */
        if ((err = imgstore_store__cut_index_base(&base, store, cut_tip, sink_collect, logs)) < 0)
            goto done;
    } else if ((err = first_parent_chain(&chain, &chain_len, store, git_commit_id(parent))) < 0 ||
               (rc = git_commit_lookup(&root, store->repo, &chain[0])) < 0 ||
               (err = imgstore_store__cut_index_base(&base, store, root, sink_collect, logs)) < 0) {
        err = err < 0 ? err : imgstore_store__git_error(rc, "cannot read the first commit");
        goto done;
    }
    for (size_t i = 0; i < chain_len && err == 0; i++) {
        char *row = strdup(git_oid_tostr_s(&chain[i]));

        if ((err = row ? mem_log_take(logs, "oplog", row)
                       : imgstore_error_set(IMGSTORE_ERROR, "out of memory")) < 0)
            break;
        if (i > 0) {
            git_commit *commit = NULL;
            git_tree *tree = NULL;

            if ((rc = git_commit_lookup(&commit, store->repo, &chain[i])) < 0 ||
                (rc = git_commit_tree(&tree, commit)) < 0)
                err = imgstore_store__git_error(rc, "cannot read commit %s",
                                                git_oid_tostr_s(&chain[i]));
            else
                err = collect_commit(logs, store, &chain[i - 1], tree, base + i,
                                     (int64_t)git_commit_time(commit), git_commit_summary(commit));
            git_tree_free(tree);
            git_commit_free(commit);
        }
    }
    if (err == 0 && !cut_tip)
        err = collect_commit(logs, store, git_commit_id(parent), after, base + chain_len, time,
                             summary);
    if (err < 0)
        goto done;
    err = imgstore_store__list_tree(&images, &image_count, store, after, "images", NULL);
    if (err == IMGSTORE_ENOTFOUND)
        err = 0;
    for (size_t i = 0; i < image_count && err == 0; i++) {
        char log[256], **rows = NULL;
        size_t count = 0;

        snprintf(log, sizeof(log), "%s/versions", images[i]);
        if ((err = versions_from_manifests_each(&rows, &count, store, after, images[i],
                                                collect_digests, logs)) < 0)
            break;
        for (size_t k = 0; k < count && err == 0; k++) {
            err = mem_log_take(logs, log, rows[k]);
            rows[k] = NULL;
        }
        imgstore_strings_free(rows, count);
        /* the name index (names.c): the same versions in bytewise order of their names */
        snprintf(log, sizeof(log), "%s/names", images[i]);
        if (err < 0 ||
            (err = imgstore_store__versions_list(&rows, &count, store, after, images[i])) < 0)
            break;
        qsort(rows, count, sizeof(*rows), strcmp_rows);
        for (size_t k = 0; k < count && err == 0; k++) {
            err = mem_log_take(logs, log, rows[k]);
            rows[k] = NULL;
        }
        imgstore_strings_free(rows, count);
    }
    /* digest logs are sorted and distinct (sink_insert_sorted) */
    for (size_t i = 0; i < logs->count && err == 0; i++) {
        mem_log *l = &logs->logs[i];
        size_t n = 0;

        if (strncmp(l->log, "digests/", 8) != 0)
            continue;
        qsort(l->rows, l->count, sizeof(*l->rows), strcmp_rows);
        for (size_t k = 0; k < l->count; k++) {
            if (n > 0 && strcmp(l->rows[n - 1], l->rows[k]) == 0)
                free(l->rows[k]);
            else
                l->rows[n++] = l->rows[k];
        }
        l->count = n;
    }
done:
    imgstore_strings_free(images, image_count);
    git_commit_free(root);
    free(chain);
    return err;
}

/* The index tree holding `logs` (written to the object database: a reindex). */
static int cmp_log_names(const void *a, const void *b)
{
    return strcmp((*(const mem_log *const *)a)->log, (*(const mem_log *const *)b)->log);
}

/* index/digests built bottom up: one small tree per log, one treebuilder per <xx> directory,
 * instead of rewriting the index from its root for each of up to 65,536 logs. */
static int digests_write(git_oid *out, imgstore_store *store, const mem_logs *logs,
                         const git_oid *empty)
{
    const mem_log **digest = calloc(logs->count + 1, sizeof(*digest));
    git_treebuilder *top = NULL, *mid = NULL;
    size_t n = 0;
    int err = 0, rc = 0;

    if (!digest)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t i = 0; i < logs->count; i++)
        if (strncmp(logs->logs[i].log, "digests/", 8) == 0)
            digest[n++] = &logs->logs[i];
    qsort(digest, n, sizeof(*digest), cmp_log_names);
    if (n > 0 && (rc = git_treebuilder_new(&top, store->repo, NULL)) < 0)
        goto done;
    for (size_t i = 0; i < n && err == 0 && rc >= 0; i++) {
        const char *name = digest[i]->log + 8; /* "xx/yy" */
        git_oid log_tree = *empty, sub;

        if (!mid && (rc = git_treebuilder_new(&mid, store->repo, NULL)) < 0)
            break;
        if ((err = log_write(&log_tree, store, "l", 0, digest[i]->rows, digest[i]->count)) < 0)
            break;
        {
            git_tree *t = NULL;

            if ((rc = git_tree_lookup(&t, store->repo, &log_tree)) < 0)
                break;
            sub = imgstore_store__id_at(t, "l");
            git_tree_free(t);
        }
        if ((rc = git_treebuilder_insert(NULL, mid, name + 3, &sub, GIT_FILEMODE_TREE)) < 0)
            break;
        if (i + 1 == n || strncmp(digest[i + 1]->log + 8, name, 2) != 0) {
            char dir[3] = {name[0], name[1], '\0'};

            if ((rc = git_treebuilder_write(&sub, mid)) < 0 ||
                (rc = git_treebuilder_insert(NULL, top, dir, &sub, GIT_FILEMODE_TREE)) < 0)
                break;
            git_treebuilder_free(mid);
            mid = NULL;
        }
    }
    if (err == 0 && rc >= 0 && n > 0) {
        git_oid top_id;

        if ((rc = git_treebuilder_write(&top_id, top)) >= 0)
            err = imgstore_store__tree_set(out, store, "digests", &top_id, GIT_FILEMODE_TREE);
    }
done:
    if (err == 0 && rc < 0)
        err = imgstore_store__git_error(rc, "cannot write the digest index");
    git_treebuilder_free(mid);
    git_treebuilder_free(top);
    free(digest);
    return err;
}

/* "<image>/names": a name index (names.c), not a segmented log. */
static bool is_names_log(const char *log)
{
    const char *slash = strchr(log, '/');

    return slash && strcmp(slash, "/names") == 0 && strncmp(log, "digests/", 8) != 0;
}

static int index_write(git_oid *out, imgstore_store *store, const mem_logs *logs)
{
    git_treebuilder *bld = NULL;
    git_oid empty;
    int err = 0, rc;

    if ((rc = git_treebuilder_new(&bld, store->repo, NULL)) < 0 ||
        (rc = git_treebuilder_write(out, bld)) < 0)
        err = imgstore_store__git_error(rc, "cannot write a tree");
    git_treebuilder_free(bld);
    empty = *out;
    for (size_t i = 0; i < logs->count && err == 0; i++)
        if (is_names_log(logs->logs[i].log))
            err = imgstore_store__names_edit(out, store, logs->logs[i].log, logs->logs[i].rows,
                                             logs->logs[i].count, NULL, 0);
        else if (strncmp(logs->logs[i].log, "digests/", 8) != 0)
            err = log_write(out, store, logs->logs[i].log, 0, logs->logs[i].rows,
                            logs->logs[i].count);
    return err < 0 ? err : digests_write(out, store, logs, &empty);
}

/* Whether every log under the stored `dir` (index/...) is one of `logs`: the walk of the
 * stored index's directories, for logs a rebuild would not have. A log directory is one
 * whose entries are groups ("00000"). */
static bool only_known_logs(imgstore_store *store, const git_tree *root, const char *dir,
                            const mem_logs *logs)
{
    git_tree *tree = NULL;
    bool ok = true;

    if (subtree(&tree, store, root, dir) < 0 || !tree)
        return false;
    if (strncmp(dir, "index/", 6) == 0 && is_names_log(dir + 6)) {
        git_tree_free(tree);
        return mem_log_find(logs, dir + strlen("index/")) != NULL;
    }
    if (git_tree_entrycount(tree) > 0 &&
        strcmp(git_tree_entry_name(git_tree_entry_byindex(tree, 0)), "00000") == 0) {
        ok = mem_log_find(logs, dir + strlen("index/")) != NULL;
        git_tree_free(tree);
        return ok;
    }
    for (size_t i = 0; i < git_tree_entrycount(tree) && ok; i++) {
        const git_tree_entry *e = git_tree_entry_byindex(tree, i);
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", dir, git_tree_entry_name(e));
        ok = git_tree_entry_type(e) == GIT_OBJECT_TREE && only_known_logs(store, root, path, logs);
    }
    git_tree_free(tree);
    return ok;
}

/* Whether the index stored in `root` holds exactly `logs`: read, never written (fsck). */
static int index_compare(bool *same_out, imgstore_store *store, const git_tree *root,
                         const mem_logs *logs)
{
    int err = 0;

    *same_out = only_known_logs(store, root, "index", logs);
    for (size_t i = 0; i < logs->count && *same_out && err == 0; i++) {
        char path[512], **rows = NULL;
        size_t total = 0;

        snprintf(path, sizeof(path), "index/%s", logs->logs[i].log);
        if (is_names_log(logs->logs[i].log)) {
            if ((err = imgstore_store__names_all(&rows, &total, store, root, path)) ==
                IMGSTORE_EVERIFY)
                err = 0, *same_out = false;
            *same_out = *same_out && err == 0 && total == logs->logs[i].count;
            for (size_t k = 0; k < total && *same_out; k++)
                *same_out = strcmp(rows[k], logs->logs[i].rows[k]) == 0;
            imgstore_strings_free(rows, total);
            continue;
        }
        if ((err = imgstore_store__log_count(&total, store, root, path)) == IMGSTORE_EVERIFY)
            err = 0, total = SIZE_MAX;
        if (err < 0 || total != logs->logs[i].count) {
            *same_out = false;
            break;
        }
        if ((err = imgstore_store__log_rows(&rows, store, root, path, total, 0, total)) ==
            IMGSTORE_EVERIFY) {
            err = 0;
            *same_out = false;
            break;
        }
        for (size_t k = 0; k < total && err == 0 && *same_out; k++)
            *same_out = strcmp(rows[k], logs->logs[i].rows[k]) == 0;
        imgstore_strings_free(rows, total);
    }
    return err;
}

int imgstore_store_index_check(imgstore_store *store)
{
    git_commit *tip = NULL, *parent = NULL;
    git_tree *tree = NULL;
    mem_logs logs = {0};
    bool same = false;
    git_oid head, kept;
    int err = 0, rc;

    if ((rc = git_reference_name_to_id(&head, store->repo, IMGSTORE_STORE_REF)) < 0 ||
        (rc = git_commit_lookup(&tip, store->repo, &head)) < 0 ||
        (rc = git_commit_tree(&tree, tip)) < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot read %s", store->path, IMGSTORE_STORE_REF);
        goto done;
    }
    kept = imgstore_store__id_at(tree, "index");
    if (git_commit_parentcount(tip) == 0 &&
        (err = imgstore_store__cut_read(&(imgstore_store__cut_record){0}, tip)) < 0) {
        if (err == IMGSTORE_ENOTFOUND && !git_oid_iszero(&kept))
            err = imgstore_error_set(IMGSTORE_EVERIFY, "index: the first commit has an index");
        else if (err == IMGSTORE_ENOTFOUND)
            err = 0;
        goto done;
    }
    if (git_commit_parentcount(tip) > 0 && (rc = git_commit_parent(&parent, tip, 0)) < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot read the tip's parent", store->path);
        goto done;
    }
    if (git_oid_iszero(&kept)) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "index: missing (written by an older imgstore); run imgstore "
                                 "reindex");
        goto done;
    }
    if ((err = index_collect(&logs, store, parent, parent ? NULL : tip, tree,
                             (int64_t)git_commit_time(tip), git_commit_summary(tip))) < 0 ||
        (err = index_compare(&same, store, tree, &logs)) < 0)
        goto done;
    if (!same)
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "index: differs from one rebuilt from the history and the "
                                 "manifests (stale or damaged); run imgstore reindex");
done:
    mem_logs_free(&logs);
    git_tree_free(tree);
    git_commit_free(parent);
    git_commit_free(tip);
    return err;
}

typedef struct {
    imgstore_store *store;
    int64_t time;
} reindex_edit;

static int reindex_edit_fn(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    reindex_edit *e = payload;
    git_commit *head = NULL;
    mem_logs logs = {0};
    git_oid head_id, index;
    int err, rc;

    if ((rc = git_reference_name_to_id(&head_id, e->store->repo, IMGSTORE_STORE_REF)) < 0 ||
        (rc = git_commit_lookup(&head, e->store->repo, &head_id)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the tip", e->store->path);
    if (!git_oid_equal(git_tree_id(tip), git_commit_tree_id(head))) {
        git_commit_free(head);
        return imgstore_error_set(IMGSTORE_ELOCKED, "the tip moved; try again");
    }
    if ((err = index_collect(&logs, e->store, head, NULL, tip, e->time, NULL)) == 0)
        err = index_write(&index, e->store, &logs);
    mem_logs_free(&logs);
    git_commit_free(head);
    if (err < 0)
        return err;
    *tree_out = *git_tree_id(tip);
    if ((err = imgstore_store__tree_set(tree_out, e->store, "index", &index, GIT_FILEMODE_TREE)) <
        0)
        return err;
    e->store->index_rebuilt = true;
    if (!(*message_out = strdup("reindex\n")))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return 0;
}

int imgstore_store_reindex(bool *changed_out, imgstore_store *store, const char *actor,
                           const imgstore_sign_key *key)
{
    reindex_edit e = {store, 0};
    int err;

    if (changed_out)
        *changed_out = false;
    if (imgstore_store_index_check(store) == 0)
        return 0; /* already what a rebuild gives */
    e.time = (int64_t)time(NULL);
    err = imgstore_store__commit(store, actor, key, reindex_edit_fn, &e);
    store->index_rebuilt = false;
    if (err == IMGSTORE_STORE_UNCHANGED)
        err = 0;
    else if (err == 0 && changed_out)
        *changed_out = true;
    return err;
}

json_t *imgstore_store_version_row_to_json(const imgstore_version_row *row)
{
    return json_pack("{s:s, s:s, s:I, s:I}", "version", row->version, "created", row->created,
                     "files", (json_int_t)row->files, "size", (json_int_t)row->size);
}

/* ---- what prune and which read -------------------------------------------------------- */

int imgstore_store__index_version_rows(char ***rows_out, size_t *count_out, bool *indexed_out,
                                       imgstore_store *store, const git_tree *root,
                                       const char *name)
{
    char log[512];
    size_t stored = 0;
    bool indexed = false;
    int err;

    *rows_out = NULL;
    *count_out = 0;
    *indexed_out = false;
    snprintf(log, sizeof(log), "index/%s/versions", name);
    if ((err = imgstore_store__versions_counted(&stored, &indexed, store, root, name, log)) < 0)
        return err;
    if (indexed) {
        *indexed_out = true;
        *count_out = stored;
        return imgstore_store__log_rows(rows_out, store, root, log, stored, 0, stored);
    }
    return versions_from_manifests(rows_out, count_out, store, root, name);
}

int imgstore_store__digest_rows(char ***out, size_t *count_out, imgstore_store *store,
                                const git_tree *root, const char *sha256)
{
    char log[512], **rows = NULL, **match = NULL;
    size_t total = 0, n = 0;
    int err;

    *out = NULL;
    *count_out = 0;
    if (!has_entry(root, "index/digests") && has_entry(root, "images"))
        return imgstore_error_set(IMGSTORE_ENOTFOUND,
                                  "the store has no digest index (an older imgstore wrote it); "
                                  "run imgstore reindex");
    digest_log(log, sizeof(log), "index/", sha256);
    if ((err = imgstore_store__log_count(&total, store, root, log)) < 0 ||
        (err = imgstore_store__log_rows(&rows, store, root, log, total, 0, total)) < 0)
        return err;
    if (!(match = calloc(total + 1, sizeof(*match))))
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t i = 0; i < total && err == 0; i++) {
        if (strncmp(rows[i], sha256, 64) == 0 && rows[i][64] == '\t') {
            match[n++] = rows[i];
            rows[i] = NULL;
        }
    }
    imgstore_strings_free(rows, total);
    if (err < 0) {
        imgstore_strings_free(match, n);
        return err;
    }
    *out = match;
    *count_out = n;
    return 0;
}
