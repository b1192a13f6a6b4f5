/*
 * The name-sorted version index (docs/format.md, "Indexes"): every stored version of an
 * image in bytewise order of its name, for the OCI tag list (spec: "Listing Tags", lexical
 * order with `n` and `last`) without a sort of all versions.
 *
 *   index/<name>/names/<group key>/<segment key>   sorted version names, one a line
 *
 * A two-level B-tree of git objects. A segment blob holds 1 to SEGMENT_CAP names; a group
 * tree holds 1 to GROUP_CAP segments; the names tree holds the groups. Every key is the hex
 * of the first name below it: hex keeps bytewise order, and git sorts tree entries bytewise
 * (a directory as if it ended in '/', which sorts below every hex digit, so prefixes still
 * come first). A name belongs to the last segment whose key is not above it (the first
 * segment when it is below all). An insert or a removal rewrites one segment, its group and
 * the names tree; a segment or group past its cap is cut in halves, one left empty goes.
 * The layout depends on the order of the edits; what it holds does not, and that is what
 * `fsck` compares with a rebuild.
 *
 * Not here: when the index is written (index.c on a push and a rebuild, prune.c), and what
 * the names are checked against before they are answered (imgstore_store_version_names).
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEGMENT_CAP   256 /* names a segment holds before it is cut in two */
#define GROUP_CAP     256 /* segments a group holds before it is cut in two */
#define KEY_MAX       (2 * IMGSTORE_NAME_MAX + 1)
#define NAMES_PATH    1024
#define SEGMENT_BYTES ((size_t)SEGMENT_CAP * (IMGSTORE_NAME_MAX + 1) + 1)

/* SEGMENT_CAP and GROUP_CAP, smaller in tests (imgstore_store__names_set_caps) */
static size_t segment_cap = SEGMENT_CAP, group_cap = GROUP_CAP;

void imgstore_store__names_set_caps(size_t segment, size_t group)
{
    segment_cap = segment >= 2 && segment <= SEGMENT_CAP ? segment : SEGMENT_CAP;
    group_cap = group >= 2 ? group : GROUP_CAP;
}

typedef struct {
    char key[KEY_MAX];
    git_oid id;
} node;

typedef struct {
    node *at;
    size_t count, cap;
} nodes;

static void hex_of(char out[KEY_MAX], const char *name)
{
    static const char digits[] = "0123456789abcdef";
    size_t n = 0;

    for (; *name && n + 2 < KEY_MAX; name++) {
        out[n++] = digits[(unsigned char)*name >> 4];
        out[n++] = digits[(unsigned char)*name & 15];
    }
    out[n] = '\0';
}

static int damaged(const char *dir, const char *what)
{
    return imgstore_error_set(IMGSTORE_EVERIFY,
                              "%s: the index is damaged (%s); run imgstore reindex", dir, what);
}

static int nodes_add(nodes *list, const char *key, const git_oid *id)
{
    int err =
        imgstore_array_grow((void **)&list->at, &list->cap, list->count + 1, sizeof(*list->at));

    if (err < 0)
        return err;
    snprintf(list->at[list->count].key, KEY_MAX, "%s", key);
    list->at[list->count++].id = *id;
    return 0;
}

/* The entries of tree `id` (a names tree or a group), in order; none for a zero id. */
static int nodes_of(nodes *out, imgstore_store *store, const git_oid *id, const char *dir)
{
    git_tree *tree = NULL;
    int err = 0, rc;

    memset(out, 0, sizeof(*out));
    if (git_oid_iszero(id))
        return 0;
    if ((rc = git_tree_lookup(&tree, store->repo, id)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the tree", dir);
    if (git_tree_entrycount(tree) == 0)
        err = damaged(dir, "an empty directory");
    for (size_t i = 0; i < git_tree_entrycount(tree) && err == 0; i++) {
        const git_tree_entry *e = git_tree_entry_byindex(tree, i);

        if (strlen(git_tree_entry_name(e)) >= KEY_MAX)
            err = damaged(dir, "a key is too long");
        else
            err = nodes_add(out, git_tree_entry_name(e), git_tree_entry_id(e));
    }
    git_tree_free(tree);
    return err;
}

/* The last of `list` whose key is not above `hex` (0 when all are). */
static size_t node_for(const nodes *list, const char *hex)
{
    size_t at = 0;

    while (at + 1 < list->count && strcmp(list->at[at + 1].key, hex) <= 0)
        at++;
    return at;
}

/* A segment's names: pointers into *bytes_out (the caller frees it). Checked: sorted,
 * distinct, the first one the segment's key. */
static int segment_read(char ***names_out, size_t *count_out, char **bytes_out,
                        imgstore_store *store, const git_oid *id, const char *dir, const char *key)
{
    git_blob *blob = NULL;
    char **names = NULL, *bytes = NULL, first[KEY_MAX];
    size_t len, count = 0;
    int err = 0, rc;

    *names_out = NULL;
    *count_out = 0;
    *bytes_out = NULL;
    if ((rc = git_blob_lookup(&blob, store->repo, id)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read segment %s", dir, key);
    len = (size_t)git_blob_rawsize(blob);
    if (len == 0 || len > SEGMENT_BYTES ||
        ((const char *)git_blob_rawcontent(blob))[len - 1] != '\n' ||
        memchr(git_blob_rawcontent(blob), '\0', len)) /* else a line could end before its \n */
        err = damaged(dir, "a segment is not lines of names");
    else if (!(bytes = malloc(len + 1)) || !(names = calloc(SEGMENT_CAP + 1, sizeof(*names))))
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (err == 0) {
        memcpy(bytes, git_blob_rawcontent(blob), len);
        bytes[len] = '\0';
    }
    for (char *line = bytes; err == 0 && *line;) {
        char *nl = strchr(line, '\n');

        *nl = '\0';
        if (count == SEGMENT_CAP || !*line || (count > 0 && strcmp(names[count - 1], line) >= 0))
            err = damaged(dir, "a segment is not sorted names");
        names[count++] = line;
        line = nl + 1;
    }
    if (err == 0) {
        hex_of(first, names[0]);
        if (strcmp(first, key) != 0)
            err = damaged(dir, "a segment's key is not its first name");
    }
    git_blob_free(blob);
    if (err < 0) {
        free(names);
        free(bytes);
        return err;
    }
    *names_out = names;
    *count_out = count;
    *bytes_out = bytes;
    return 0;
}

/* Pieces of at most `cap`: one when it fits, else halves of a full one, so that the next
 * inserts do not cut again at once. */
static size_t piece_len(size_t left, size_t cap)
{
    return left <= cap ? left : cap / 2;
}

/* Write `names` as one or more segments into `out`. */
static int segments_write(nodes *out, imgstore_store *store, const char *const *names, size_t count)
{
    int err = 0;

    for (size_t at = 0; at < count && err == 0;) {
        size_t n = piece_len(count - at, segment_cap), len = 0;
        char *bytes = malloc(SEGMENT_BYTES), key[KEY_MAX];
        git_oid id;

        if (!bytes)
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        for (size_t i = 0; i < n; i++)
            len += (size_t)snprintf(bytes + len, SEGMENT_BYTES - len, "%s\n", names[at + i]);
        err = imgstore_store__write_blob(&id, store, bytes, len);
        free(bytes);
        hex_of(key, names[at]);
        if (err == 0)
            err = nodes_add(out, key, &id);
        at += n;
    }
    return err;
}

/* Write `list` as trees of entries of `mode` into `out`, cut as segments are. */
static int trees_write(nodes *out, imgstore_store *store, const nodes *list, git_filemode_t mode,
                       size_t cap)
{
    int rc = 0, err = 0;

    for (size_t at = 0; at < list->count && err == 0 && rc >= 0;) {
        size_t n = piece_len(list->count - at, cap);
        git_treebuilder *bld = NULL;
        git_oid id;

        if ((rc = git_treebuilder_new(&bld, store->repo, NULL)) < 0)
            break;
        for (size_t i = 0; i < n && rc >= 0; i++)
            rc =
                git_treebuilder_insert(NULL, bld, list->at[at + i].key, &list->at[at + i].id, mode);
        if (rc >= 0 && (rc = git_treebuilder_write(&id, bld)) >= 0)
            err = nodes_add(out, list->at[at].key, &id);
        git_treebuilder_free(bld);
        at += n;
    }
    return rc < 0 ? imgstore_store__git_error(rc, "cannot write the name index") : err;
}

/* (names + add) - remove, all sorted and distinct. */
static int merge(const char ***out, size_t *count_out, char *const *names, size_t count,
                 char *const *add, size_t add_count, char *const *remove, size_t remove_count)
{
    const char **merged = calloc(count + add_count + 1, sizeof(*merged));
    size_t i = 0, j = 0, k = 0, n = 0;

    if (!merged)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    while (i < count || j < add_count) {
        int c = i == count ? 1 : j == add_count ? -1 : strcmp(names[i], add[j]);
        const char *next = c <= 0 ? names[i] : add[j];

        i += c <= 0;
        j += c >= 0;
        while (k < remove_count && strcmp(remove[k], next) < 0)
            k++;
        if (k == remove_count || strcmp(remove[k], next) != 0)
            merged[n++] = next;
    }
    *out = merged;
    *count_out = n;
    return 0;
}

/* How many of `list` (sorted) sort below the key `upper` (all when it is NULL). */
static size_t count_below(char *const *list, size_t count, const char *upper)
{
    size_t n = 0;
    char hex[KEY_MAX];

    for (; n < count && upper; n++) {
        hex_of(hex, list[n]);
        if (strcmp(hex, upper) >= 0)
            break;
    }
    return upper ? n : count;
}

/* One group with its share of the edits: its segments, rewritten where they change. */
static int group_edit(nodes *segments_out, imgstore_store *store, const char *dir,
                      const git_oid *group, const char *upper, char *const *add, size_t add_count,
                      char *const *remove, size_t remove_count)
{
    nodes old = {0};
    size_t a = 0, r = 0, slots;
    int err;

    if ((err = nodes_of(&old, store, group, dir)) < 0)
        return err;
    slots = old.count ? old.count : 1; /* a new index: one empty segment */
    for (size_t s = 0; s < slots && err == 0; s++) {
        const char *next = s + 1 < old.count ? old.at[s + 1].key : upper;
        size_t an = count_below(add + a, add_count - a, next);
        size_t rn = count_below(remove + r, remove_count - r, next);
        char **names = NULL, *bytes = NULL;
        const char **merged = NULL;
        size_t count = 0, merged_count = 0;

        if (an == 0 && rn == 0 && old.count) {
            err = nodes_add(segments_out, old.at[s].key, &old.at[s].id);
            continue;
        }
        if ((!old.count || (err = segment_read(&names, &count, &bytes, store, &old.at[s].id, dir,
                                               old.at[s].key)) == 0) &&
            (err = merge(&merged, &merged_count, names, count, add + a, an, remove + r, rn)) == 0)
            err = segments_write(segments_out, store, merged, merged_count);
        free(merged);
        free(names);
        free(bytes);
        a += an;
        r += rn;
    }
    free(old.at);
    return err;
}

int imgstore_store__names_edit(git_oid *tree_oid, imgstore_store *store, const char *dir,
                               char *const *add, size_t add_count, char *const *remove,
                               size_t remove_count)
{
    git_tree *root = NULL;
    nodes groups = {0}, top = {0};
    size_t a = 0, r = 0, slots;
    git_oid top_id;
    int err, rc;

    if ((rc = git_tree_lookup(&root, store->repo, tree_oid)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the tree", dir);
    top_id = imgstore_store__id_at(root, dir);
    git_tree_free(root);
    if ((err = nodes_of(&groups, store, &top_id, dir)) < 0)
        return err;
    if (groups.count == 0 && add_count == 0)
        goto done;
    slots = groups.count ? groups.count : 1;
    for (size_t g = 0; g < slots && err == 0; g++) {
        const char *upper = g + 1 < groups.count ? groups.at[g + 1].key : NULL;
        size_t an = count_below(add + a, add_count - a, upper);
        size_t rn = count_below(remove + r, remove_count - r, upper);
        nodes segments = {0};
        git_oid none = {{0}};

        if (an == 0 && rn == 0 && groups.count) {
            err = nodes_add(&top, groups.at[g].key, &groups.at[g].id);
            continue;
        }
        if ((err = group_edit(&segments, store, dir, groups.count ? &groups.at[g].id : &none, upper,
                              add + a, an, remove + r, rn)) == 0)
            err = trees_write(&top, store, &segments, GIT_FILEMODE_BLOB, group_cap);
        free(segments.at);
        a += an;
        r += rn;
    }
    if (err < 0)
        goto done;
    if (top.count == 0) {
        err = imgstore_store__tree_set(tree_oid, store, dir, NULL, 0);
    } else {
        nodes one = {0};

        /* the names tree itself is never cut: it holds N / (SEGMENT_CAP * GROUP_CAP / 4)
         * groups at most (about 60 at a million versions) */
        if ((err = trees_write(&one, store, &top, GIT_FILEMODE_TREE, SIZE_MAX)) == 0)
            err = imgstore_store__tree_set(tree_oid, store, dir, &one.at[0].id, GIT_FILEMODE_TREE);
        free(one.at);
    }
done:
    free(top.at);
    free(groups.at);
    return err;
}

/* Walk the names above `after` (NULL: from the first) in order, handing each to `fn` until
 * it returns 1 (stop) or an error. */
static int names_walk(imgstore_store *store, const git_tree *root, const char *dir,
                      const char *after, int (*fn)(const char *name, void *payload), void *payload)
{
    nodes groups = {0}, segments = {0};
    git_oid top_id = imgstore_store__id_at(root, dir);
    char hex[KEY_MAX];
    size_t g = 0, s = 0;
    int err;

    if (after)
        hex_of(hex, after);
    if ((err = nodes_of(&groups, store, &top_id, dir)) < 0)
        return err;
    if (after && groups.count)
        g = node_for(&groups, hex);
    for (bool first = true; g < groups.count && err == 0; g++, first = false) {
        free(segments.at);
        if ((err = nodes_of(&segments, store, &groups.at[g].id, dir)) < 0)
            break;
        s = after && first ? node_for(&segments, hex) : 0;
        for (; s < segments.count && err == 0; s++) {
            char **names = NULL, *bytes = NULL;
            size_t count = 0;

            if ((err = segment_read(&names, &count, &bytes, store, &segments.at[s].id, dir,
                                    segments.at[s].key)) < 0)
                break;
            for (size_t i = 0; i < count && err == 0; i++)
                if (!after || strcmp(names[i], after) > 0)
                    err = fn(names[i], payload);
            free(names);
            free(bytes);
        }
    }
    free(segments.at);
    free(groups.at);
    return err < 0 ? err : 0;
}

typedef struct {
    char **names;
    size_t count, limit, cap; /* cap: the array's room; limit: SIZE_MAX for all names */
    bool more;
} collected;

static int collect(const char *name, void *payload)
{
    collected *c = payload;
    int err;

    if (c->count == c->limit) {
        c->more = true;
        return 1;
    }
    if ((err = imgstore_array_grow((void **)&c->names, &c->cap, c->count + 2, sizeof(*c->names))) <
        0)
        return err;
    if (!(c->names[c->count] = strdup(name)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    c->names[++c->count] = NULL;
    return 0;
}

int imgstore_store__names_all(char ***out, size_t *count_out, imgstore_store *store,
                              const git_tree *root, const char *dir)
{
    collected c = {.limit = SIZE_MAX};
    int err = names_walk(store, root, dir, NULL, collect, &c);

    if (err < 0) {
        imgstore_strings_free(c.names, c.count);
        return err;
    }
    *out = c.names;
    *count_out = c.count;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The page of image `name`'s version names after `after` at the tip `tip` into `c`: the one
 * pager of the OCI tag list and of ls --sort name. *stored_out: how many versions the image
 * has. */
static int names_page(collected *c, size_t *stored_out, imgstore_store *store, const git_tree *tip,
                      const char *name, const char *after)
{
    char path[NAMES_PATH], dir[NAMES_PATH], **all = NULL;
    size_t stored = 0, all_count = 0;
    bool indexed = false;
    git_oid id;
    int err = 0;

    *stored_out = 0;
    snprintf(dir, sizeof(dir), "index/%s/names", name);
    snprintf(path, sizeof(path), "index/%s/versions", name);
    if ((err = imgstore_store__versions_counted(&stored, &indexed, store, tip, name, path)) < 0)
        goto done;
    *stored_out = stored;
    id = imgstore_store__id_at(tip, dir);
    if (!git_oid_iszero(&id) && indexed) {
        err = names_walk(store, tip, dir, after, collect, c);
        /* the index orders, the tree answers: a name that is not stored is never listed */
        for (size_t i = 0; i < c->count && err == 0; i++) {
            imgstore_store__version_path(path, sizeof(path), store, name, c->names[i], NULL);
            id = imgstore_store__id_at(tip, path);
            if (git_oid_iszero(&id))
                err = damaged(dir, "a name is not a stored version");
        }
        goto done;
    }
    /* written before this index, or stale (the version index does not count every
     * version): sort the names of images/<name>, as a reindex would (linear in N) */
    imgstore_error_clear();
    if ((err = imgstore_store__versions_list(&all, &all_count, store, tip, name)) < 0)
        goto done;
    qsort(all, all_count, sizeof(*all), cmp_names);
    for (size_t i = 0; i < all_count && err == 0; i++)
        if (!after || strcmp(all[i], after) > 0)
            if ((err = collect(all[i], c)) == 1) {
                err = 0;
                break;
            }
done:
    imgstore_strings_free(all, all_count);
    return err;
}

/* The checks and the start shared by the two readers of names_page: *tip_out is the
 * caller's, also on an error. */
static int names_begin(git_tree **tip_out, collected *c, imgstore_store *store, const char *name,
                       const char *after, size_t limit)
{
    int err;

    *tip_out = NULL;
    memset(c, 0, sizeof(*c));
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0)
        return err;
    if (after && strlen(after) > IMGSTORE_NAME_MAX)
        return imgstore_error_set(IMGSTORE_EINVALID, "'%.40s...' is longer than a version name",
                                  after);
    if ((err = imgstore_array_grow((void **)&c->names, &c->cap, 1, sizeof(*c->names))) < 0)
        return err;
    c->names[0] = NULL;
    c->limit = limit;
    return imgstore_store__tip_tree(tip_out, store);
}

int imgstore_store_version_names(char ***out, size_t *count_out, bool *more_out,
                                 imgstore_store *store, const char *name, const char *after,
                                 size_t limit)
{
    collected c = {0};
    git_tree *tip = NULL;
    size_t stored = 0;
    int err;

    *out = NULL;
    *count_out = 0;
    *more_out = false;
    if ((err = names_begin(&tip, &c, store, name, after, limit)) == 0)
        err = names_page(&c, &stored, store, tip, name, after);
    git_tree_free(tip);
    if (err < 0) {
        imgstore_strings_free(c.names, c.count);
        return err;
    }
    *out = c.names;
    *count_out = c.count;
    *more_out = c.more;
    return 0;
}

int imgstore_store_versions_by_name(imgstore_version_row **out, size_t *count_out,
                                    size_t *total_out, bool *more_out, imgstore_store *store,
                                    const char *name, const char *after, size_t limit)
{
    collected c = {0};
    git_tree *tip = NULL;
    imgstore_version_row *rows = NULL;
    size_t stored = 0, n = 0;
    int err;

    *out = NULL;
    *count_out = 0;
    *more_out = false;
    if (total_out)
        *total_out = 0;
    if ((err = names_begin(&tip, &c, store, name, after, limit ? limit : SIZE_MAX)) < 0 ||
        (err = names_page(&c, &stored, store, tip, name, after)) < 0)
        goto done;
    if (!(rows = calloc(c.count + 1, sizeof(*rows)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    /* each row from its manifest at the same tip as the names: a light read, as ls's rows
     * by time are checked against (no binary search of the version index for a row number
     * nobody pages by here) */
    for (; n < c.count && err == 0; n++)
        err = imgstore_store__version_row_read(&rows[n], store, tip, name, c.names[n]);
    if (err < 0)
        goto done;
    *out = rows;
    *count_out = n;
    *more_out = c.more;
    if (total_out)
        *total_out = stored;
    rows = NULL;
done:
    imgstore_version_rows_free(rows, n);
    imgstore_strings_free(c.names, c.count);
    git_tree_free(tip);
    return err;
}
