/*
 * Retention (issue #12): which versions `prune --keep N` removes, which it must keep and why,
 * what the removal frees, and the removal itself as one signed commit (docs/format.md,
 * "Retention").
 *
 * A version older than the newest N of its image is removed unless a rule keeps it: a channel
 * runs it now, it is on a channel's signed rollback stack (a rollback without --to can reach
 * it), or a channel ran it within the rollback window (its states newer than the window, read
 * newest first from the channel's history). The plan is computed again inside the commit edit,
 * on the tip the commit is built on and under the writers' lock, so a deploy that lands
 * between a dry run and the removal is honoured.
 *
 * Not here: packing and removing unreachable objects (gc.c), the index logs (index.c).
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One row of an image's version index, parsed. */
typedef struct {
    char created[64];
    char version[IMGSTORE_NAME_MAX + 1];
    unsigned long long files, size;
} version_row;

static int row_parse(version_row *out, const char *name, const char *row)
{
    int end = 0;

    if (sscanf(row, "%63[^\t]\t%128[^\t]\t%llu\t%llu\t%*40[0-9a-f]%n", out->created, out->version,
               &out->files, &out->size, &end) != 4 ||
        row[end] != '\0')
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "index/%s/versions: the index is damaged (a row does not "
                                  "parse); run imgstore reindex",
                                  name);
    return 0;
}

/* ---- the protection rules -------------------------------------------------------------- */

typedef struct {
    char *version;
    char *reason;
} protection;

typedef struct {
    protection *items;
    size_t count;
} protections;

static void protections_free(protections *p)
{
    for (size_t i = 0; i < p->count; i++) {
        free(p->items[i].version);
        free(p->items[i].reason);
    }
    free(p->items);
    memset(p, 0, sizeof(*p));
}

static const char *protected_by(const protections *p, const char *version)
{
    for (size_t i = 0; i < p->count; i++)
        if (strcmp(p->items[i].version, version) == 0)
            return p->items[i].reason;
    return NULL;
}

/* Keep `version` for `reason` (the first reason found is the one reported). */
static int protect(protections *p, const char *version, char *reason)
{
    protection *grown;

    if (!reason)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (protected_by(p, version)) {
        free(reason);
        return 0;
    }
    if (!(grown = realloc(p->items, (p->count + 1) * sizeof(*grown)))) {
        free(reason);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    p->items = grown;
    if (!(p->items[p->count].version = strdup(version))) {
        free(reason);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    p->items[p->count++].reason = reason;
    return 0;
}

/* The versions a channel ran since `since`: its history newest first, a page at a time, up to
 * the first state older than the window (the moves within it, one commit each). */
static int protect_window(protections *p, imgstore_store *store, const char *name,
                          const char *channel, int64_t since)
{
    imgstore_history_query q = {.channel = channel, .limit = 64};
    bool more = true;
    int err = 0;

    while (more && err == 0) {
        imgstore_history_entry *entries = NULL;
        size_t count = 0;
        uint64_t next = 0;

        if ((err = imgstore_store_history_query(&entries, &count, &next, store, name, &q)) < 0)
            break;
        for (size_t i = 0; i < count && more && err == 0; i++) {
            int64_t when = 0;

            if (!entries[i].state || imgstore_time_parse(&when, entries[i].state->time) < 0)
                continue;
            if (when < since) {
                more = false;
                break;
            }
            err = protect(p, entries[i].state->version,
                          imgstore_strfmt("channel %s ran it within the rollback window", channel));
        }
        imgstore_history_free(entries, count);
        more = more && next != 0;
        q.before = next;
    }
    return err;
}

/* Every version of `name` a rule keeps, at `root` (the tip the plan is made on). */
static int protections_of(protections *out, imgstore_store *store, const git_tree *root,
                          const char *name, int64_t since)
{
    char path[256], **channels = NULL;
    size_t count = 0;
    int err;

    snprintf(path, sizeof(path), "channels/%s", name);
    err = imgstore_store__list_tree(&channels, &count, store, root, path, ".json");
    if (err == IMGSTORE_ENOTFOUND) {
        imgstore_error_clear();
        return 0;
    }
    for (size_t i = 0; i < count && err == 0; i++) {
        imgstore_channel_state *state = NULL;

        if ((err = imgstore_store__channel_load(&state, store, root, name, channels[i])) < 0)
            break;
        /* a legacy state carries no stack: replay it once from the history */
        if (!state->has_stack && (err = imgstore_store__stack_replayed(state, store)) < 0) {
            imgstore_channel_state_free(state);
            break;
        }
        err = protect(out, state->version, imgstore_strfmt("channel %s runs it", channels[i]));
        for (size_t k = 0; k < state->stack_count && err == 0; k++)
            err = protect(out, state->stack[k],
                          imgstore_strfmt("on channel %s's rollback stack", channels[i]));
        imgstore_channel_state_free(state);
        if (err == 0)
            err = protect_window(out, store, name, channels[i], since);
    }
    imgstore_strings_free(channels, count);
    return err;
}

/* ---- the plan ------------------------------------------------------------------------- */

static int item_set(imgstore_prune_item *item, const char *name, const version_row *row,
                    const char *reason)
{
    item->name = strdup(name);
    item->version = strdup(row->version);
    item->created = strdup(row->created);
    item->files = (size_t)row->files;
    item->size = row->size;
    item->reason = reason ? strdup(reason) : NULL;
    if (!item->name || !item->version || !item->created || (reason && !item->reason))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return 0;
}

static int items_grow(imgstore_prune_item **items, size_t count)
{
    imgstore_prune_item *grown = realloc(*items, (count + 1) * sizeof(*grown));

    if (!grown)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    memset(&grown[count], 0, sizeof(*grown));
    *items = grown;
    return 0;
}

void imgstore_prune_plan_free(imgstore_prune_plan *plan)
{
    if (!plan)
        return;
    for (size_t i = 0; i < plan->removed_count; i++) {
        free(plan->removed[i].name);
        free(plan->removed[i].version);
        free(plan->removed[i].created);
        free(plan->removed[i].reason);
    }
    for (size_t i = 0; i < plan->kept_count; i++) {
        free(plan->kept[i].name);
        free(plan->kept[i].version);
        free(plan->kept[i].created);
        free(plan->kept[i].reason);
    }
    free(plan->removed);
    free(plan->kept);
    free(plan);
}

/* Decide for the versions of one image. */
static int plan_image(imgstore_prune_plan *plan, imgstore_store *store, const git_tree *root,
                      const char *name, const imgstore_prune_opts *opts, int64_t now)
{
    protections prot = {0};
    char **rows = NULL;
    size_t count = 0;
    bool indexed = false;
    int64_t cutoff = opts->older_than > 0 ? now - opts->older_than : INT64_MAX;
    int err;

    if ((err = imgstore_store__index_version_rows(&rows, &count, &indexed, store, root, name)) < 0)
        return err;
    if (count <= opts->keep)
        goto done;
    if ((err = protections_of(&prot, store, root, name, now - plan->window)) < 0)
        goto done;
    for (size_t i = 0; i < count - opts->keep && err == 0; i++) {
        version_row row;
        const char *reason;
        int64_t created = 0;

        if ((err = row_parse(&row, name, rows[i])) < 0 ||
            (err = imgstore_time_parse(&created, row.created)) < 0)
            break;
        if (created >= cutoff)
            continue; /* younger than --older-than: not a candidate */
        if ((reason = protected_by(&prot, row.version))) {
            if ((err = items_grow(&plan->kept, plan->kept_count)) == 0)
                err = item_set(&plan->kept[plan->kept_count++], name, &row, reason);
        } else if ((err = items_grow(&plan->removed, plan->removed_count)) == 0) {
            err = item_set(&plan->removed[plan->removed_count++], name, &row, NULL);
        }
    }
done:
    protections_free(&prot);
    imgstore_strings_free(rows, count);
    return err;
}

/* ---- what it frees ------------------------------------------------------------------- */

typedef struct {
    char sha256[65];
    uint64_t size;
} digest_item;

typedef struct {
    digest_item *items;
    size_t count, cap;
} digest_set;

static int set_add(digest_set *s, const char *sha256, uint64_t size)
{
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        digest_item *grown = realloc(s->items, cap * sizeof(*grown));

        if (!grown)
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        s->items = grown;
        s->cap = cap;
    }
    memcpy(s->items[s->count].sha256, sha256, 65);
    s->items[s->count++].size = size;
    return 0;
}

static int cmp_digest(const void *a, const void *b)
{
    return memcmp(a, b, 64);
}

/* Sort and drop duplicates (the same digest is the same bytes, so the same size). */
static void set_seal(digest_set *s)
{
    size_t n = 0;

    if (s->count == 0)
        return;
    qsort(s->items, s->count, sizeof(*s->items), cmp_digest);
    for (size_t i = 0; i < s->count; i++)
        if (n == 0 || memcmp(s->items[n - 1].sha256, s->items[i].sha256, 64) != 0)
            s->items[n++] = s->items[i];
    s->count = n;
}

static bool set_has(const digest_set *s, const char *sha256)
{
    return s->count && bsearch(sha256, s->items, s->count, sizeof(*s->items), cmp_digest);
}

static void set_free(digest_set *s)
{
    free(s->items);
    memset(s, 0, sizeof(*s));
}

/* The versions of one image the plan removes, sorted: looked up once per version of the
 * image, so a prune of N versions costs N log N, not N squared. */
typedef struct {
    const char **versions;
    size_t count;
} removed_set;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int removed_set_of(removed_set *out, const imgstore_prune_plan *plan, const char *name)
{
    out->count = 0;
    if (!(out->versions = calloc(plan->removed_count + 1, sizeof(*out->versions))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t i = 0; i < plan->removed_count; i++)
        if (strcmp(plan->removed[i].name, name) == 0)
            out->versions[out->count++] = plan->removed[i].version;
    qsort(out->versions, out->count, sizeof(*out->versions), cmp_str);
    return 0;
}

static bool is_removed(const removed_set *set, const char *version)
{
    return set->count &&
           bsearch(&version, set->versions, set->count, sizeof(*set->versions), cmp_str);
}

/* Whether another image, stored at `root`, holds a file with these bytes (the digest
 * index: one segment read). */
static bool held_elsewhere(imgstore_prune_plan *plan, imgstore_store *store, const git_tree *root,
                           const char *name, const char *sha256)
{
    char **rows = NULL;
    size_t count = 0;
    bool held = false;

    if (imgstore_store__digest_rows(&rows, &count, store, root, sha256) < 0) {
        imgstore_error_clear();
        plan->files_unchecked++; /* said, so that a "0 B" is not taken for a fact */
        return true; /* cannot tell: count it as shared, never overstate what is freed */
    }
    for (size_t i = 0; i < count && !held; i++) {
        char image[IMGSTORE_NAME_MAX + 1], version[IMGSTORE_NAME_MAX + 1], path[512];
        git_oid id;

        if (sscanf(rows[i] + 65, "%128[^\t]\t%128[^\t]", image, version) != 2 ||
            strcmp(image, name) == 0)
            continue;
        imgstore_store__version_path(path, sizeof(path), store, image, version, NULL);
        id = imgstore_store__id_at(root, path);
        held = !git_oid_iszero(&id);
    }
    imgstore_strings_free(rows, count);
    return held;
}

/* Files, chunks and bytes that only the removed versions hold: every manifest of the images
 * in question is read once (removed + kept); files shared with an image not in question are
 * found through the digest index. */
static int plan_freed(imgstore_prune_plan *plan, imgstore_store *store, const git_tree *root,
                      char **images, size_t image_count, bool every_image)
{
    digest_set kept_chunks = {0}, kept_files = {0}, gone_chunks = {0}, gone_files = {0};
    int err = 0;

    for (size_t i = 0; i < image_count && err == 0; i++) {
        char **versions = NULL;
        size_t count = 0;

        removed_set gone_set = {0};

        if ((err = imgstore_store__versions_list(&versions, &count, store, root, images[i])) < 0 ||
            (err = removed_set_of(&gone_set, plan, images[i])) < 0) {
            imgstore_strings_free(versions, count);
            break;
        }
        for (size_t v = 0; v < count && err == 0; v++) {
            bool gone = is_removed(&gone_set, versions[v]);
            imgstore_manifest *m = NULL;

            if (!gone && plan->removed_count == 0)
                continue;
            if ((err = imgstore_store__manifest_load(&m, NULL, store, root, images[i],
                                                     versions[v])) < 0)
                break;
            plan->manifests_read++;
            for (size_t f = 0; f < m->file_count && err == 0; f++) {
                const imgstore_manifest_file *file = &m->files[f];
                bool shared = gone && !every_image &&
                              held_elsewhere(plan, store, root, images[i], file->sha256);

                err =
                    set_add(gone && !shared ? &gone_files : &kept_files, file->sha256, file->size);
                for (size_t c = 0; c < file->chunk_count && err == 0; c++)
                    err = set_add(gone && !shared ? &gone_chunks : &kept_chunks,
                                  file->chunks[c].sha256, file->chunks[c].size);
            }
            imgstore_manifest_free(m);
        }
        free(gone_set.versions);
        imgstore_strings_free(versions, count);
    }
    if (err == 0) {
        set_seal(&kept_chunks), set_seal(&kept_files), set_seal(&gone_chunks),
            set_seal(&gone_files);
        for (size_t i = 0; i < gone_files.count; i++)
            plan->files_freed += !set_has(&kept_files, gone_files.items[i].sha256);
        for (size_t i = 0; i < gone_chunks.count; i++) {
            if (set_has(&kept_chunks, gone_chunks.items[i].sha256))
                continue;
            plan->chunks_freed++;
            plan->bytes_freed += gone_chunks.items[i].size;
        }
    }
    set_free(&kept_chunks), set_free(&kept_files), set_free(&gone_chunks), set_free(&gone_files);
    return err;
}

/* Whether `name` is the store's one image: then no other image can share its files. */
static bool only_image(imgstore_store *store, const git_tree *root, const char *name)
{
    git_tree_entry *entry = NULL;
    git_tree *images = NULL;
    bool only = false;

    if (git_tree_entry_bypath(&entry, root, "images") == 0 &&
        git_tree_lookup(&images, store->repo, git_tree_entry_id(entry)) == 0)
        only = git_tree_entrycount(images) == 1 && git_tree_entry_byname(images, name);
    git_tree_free(images);
    git_tree_entry_free(entry);
    git_error_clear();
    return only;
}

/* The whole plan at `root`. */
static int plan_at(imgstore_prune_plan **out, imgstore_store *store, const git_tree *root,
                   const imgstore_prune_opts *opts)
{
    imgstore_prune_plan *plan = calloc(1, sizeof(*plan));
    char **images = NULL;
    size_t image_count = 0;
    int64_t now = opts->now ? opts->now : (int64_t)time(NULL);
    int err = 0;

    *out = NULL;
    if (!plan)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    plan->window = opts->older_than > 0 ? opts->older_than : IMGSTORE_PRUNE_WINDOW_DEFAULT;
    if (opts->name) {
        if (!(images = calloc(1, sizeof(*images))) || !(images[0] = strdup(opts->name)))
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        image_count = 1;
    } else if ((err = imgstore_store__list_tree(&images, &image_count, store, root, "images",
                                                NULL)) == IMGSTORE_ENOTFOUND) {
        imgstore_error_clear();
        err = 0;
    }
    for (size_t i = 0; i < image_count && err == 0; i++)
        err = plan_image(plan, store, root, images[i], opts, now);
    if (err == 0)
        err = plan_freed(plan, store, root, images, image_count,
                         !opts->name || only_image(store, root, opts->name));
    imgstore_strings_free(images, image_count);
    if (err < 0) {
        imgstore_prune_plan_free(plan);
        return err;
    }
    *out = plan;
    return 0;
}

static int opts_check(const imgstore_prune_opts *opts)
{
    if (!opts || opts->keep < 1)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "prune keeps at least the newest version of each image");
    if (opts->older_than < 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "prune: a negative age");
    if (opts->name)
        return imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, opts->name);
    return 0;
}

int imgstore_store_prune_plan(imgstore_prune_plan **out, imgstore_store *store,
                              const imgstore_prune_opts *opts)
{
    git_tree *tip = NULL;
    int err;

    *out = NULL;
    if ((err = opts_check(opts)) < 0 || (err = imgstore_store__tip_tree(&tip, store)) < 0)
        return err;
    err = plan_at(out, store, tip, opts);
    git_tree_free(tip);
    if (err == 0 && opts->cut && (*out)->removed_count > 0 &&
        (err = imgstore_store__cut_plan(*out, store)) < 0) {
        imgstore_prune_plan_free(*out);
        *out = NULL;
    }
    return err;
}

/* ---- the removal ----------------------------------------------------------------------- */

typedef struct {
    imgstore_store *store;
    const imgstore_prune_opts *opts;
    const imgstore_signers *signers;
    imgstore_prune_plan *plan; /* the plan of the last attempt */
} prune_edit;

/* Prune is for the keys that may release or govern (docs/security.md). */
static int signers_check(imgstore_store *store, const git_tree *tip,
                         const imgstore_signers *signers)
{
    imgstore_policy *policy = NULL;
    int err;

    if ((err = imgstore_store__policy_load(&policy, NULL, store, tip)) < 0)
        return err;
    for (size_t i = 0; i < signers->count && err == 0; i++) {
        if (imgstore_store__key_check_role(policy, IMGSTORE_ROLE_RELEASE, signers->keys[i]) == 0)
            continue;
        err = imgstore_store__key_check_role(policy, IMGSTORE_ROLE_ROOT, signers->keys[i]);
        if (err < 0)
            imgstore_error_set(err, "%s; prune is signed by a release or root key",
                               imgstore_error_last());
    }
    imgstore_policy_free(policy);
    return err;
}

typedef struct {
    char shard[3];
    const char *version;
} shard_version;

static int by_shard(const void *a, const void *b)
{
    return strcmp(((const shard_version *)a)->shard, ((const shard_version *)b)->shard);
}

/* imgstore/2: the removed versions of `name`, shard by shard: each shard they are in is
 * rewritten once (one that empties goes), then images/<name> once: at most 256 shard writes
 * however many versions go. */
static int remove_sharded(git_oid *tree_oid, imgstore_store *store, const git_tree *tip,
                          const imgstore_prune_plan *plan, const char *name)
{
    shard_version *gone = calloc(plan->removed_count + 1, sizeof(*gone));
    git_treebuilder *image = NULL, *shard = NULL;
    git_tree *image_tree = NULL, *shard_tree = NULL;
    char path[300];
    size_t n = 0;
    git_oid id;
    int err = 0, rc = 0;

    if (!gone)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t i = 0; i < plan->removed_count; i++)
        if (strcmp(plan->removed[i].name, name) == 0) {
            imgstore_store__version_shard(gone[n].shard, plan->removed[i].version);
            gone[n++].version = plan->removed[i].version;
        }
    qsort(gone, n, sizeof(*gone), by_shard);
    snprintf(path, sizeof(path), "images/%s", name);
    id = imgstore_store__id_at(tip, path);
    if ((rc = git_tree_lookup(&image_tree, store->repo, &id)) < 0 ||
        (rc = git_treebuilder_new(&image, store->repo, image_tree)) < 0)
        goto git_failed;
    for (size_t i = 0; i < n;) {
        const git_tree_entry *entry = git_tree_entry_byname(image_tree, gone[i].shard);
        char current[3];

        memcpy(current, gone[i].shard, sizeof(current));
        snprintf(path, sizeof(path), "images/%s/%s", name, current);
        if (!entry) {
            rc = GIT_ENOTFOUND;
            goto git_failed;
        }
        if ((rc = git_tree_lookup(&shard_tree, store->repo, git_tree_entry_id(entry))) < 0 ||
            (rc = git_treebuilder_new(&shard, store->repo, shard_tree)) < 0)
            goto git_failed;
        for (; i < n && strcmp(gone[i].shard, current) == 0; i++)
            if ((rc = git_treebuilder_remove(shard, gone[i].version)) < 0)
                goto git_failed;
        if (git_treebuilder_entrycount(shard) == 0)
            rc = git_treebuilder_remove(image, current);
        else if ((rc = git_treebuilder_write(&id, shard)) == 0)
            rc = git_treebuilder_insert(NULL, image, current, &id, GIT_FILEMODE_TREE);
        if (rc < 0)
            goto git_failed;
        git_treebuilder_free(shard);
        git_tree_free(shard_tree);
        shard = NULL;
        shard_tree = NULL;
    }
    snprintf(path, sizeof(path), "images/%s", name);
    if ((rc = git_treebuilder_write(&id, image)) < 0)
        goto git_failed;
    err = imgstore_store__tree_set(tree_oid, store, path, &id, GIT_FILEMODE_TREE);
    goto done;
git_failed:
    err = imgstore_store__git_error(rc, "%s: cannot rewrite the tree", path);
done:
    git_treebuilder_free(shard);
    git_tree_free(shard_tree);
    git_treebuilder_free(image);
    git_tree_free(image_tree);
    free(gone);
    return err;
}

/* Remove the versions of `name` the plan removes from images/<name> (one tree write) and
 * from its version index (the segments from the first removed row on). */
static int remove_image_versions(git_oid *tree_oid, imgstore_store *store, const git_tree *tip,
                                 const imgstore_prune_plan *plan, const char *name)
{
    git_treebuilder *bld = NULL;
    git_tree *dir = NULL;
    char path[256], log[512], **rows = NULL;
    size_t count = 0, first = SIZE_MAX;
    removed_set gone = {0};
    bool indexed = false;
    git_oid dir_oid;
    int err = 0, rc;

    snprintf(path, sizeof(path), "images/%s", name);
    if ((err = removed_set_of(&gone, plan, name)) < 0)
        return err;
    if (store->layout == IMGSTORE_STORE__SHARDED) {
        if ((err = remove_sharded(tree_oid, store, tip, plan, name)) < 0)
            goto done;
        goto indexes;
    }
    dir_oid = imgstore_store__id_at(tip, path);
    if ((rc = git_tree_lookup(&dir, store->repo, &dir_oid)) < 0 ||
        (rc = git_treebuilder_new(&bld, store->repo, dir)) < 0)
        goto git_failed;
    for (size_t i = 0; i < plan->removed_count; i++)
        if (strcmp(plan->removed[i].name, name) == 0 &&
            (rc = git_treebuilder_remove(bld, plan->removed[i].version)) < 0)
            goto git_failed;
    if ((rc = git_treebuilder_write(&dir_oid, bld)) < 0)
        goto git_failed;
    if ((err = imgstore_store__tree_set(tree_oid, store, path, &dir_oid, GIT_FILEMODE_TREE)) < 0)
        goto done;
indexes:
    if (!store->index_live) {
        /* imgstore/2: a version index that is not kept goes (index.c, versions_counted) */
        snprintf(log, sizeof(log), "index/%s/versions", name);
        if (store->layout == IMGSTORE_STORE__SHARDED)
            err = imgstore_store__tree_set(tree_oid, store, log, NULL, 0);
        goto done;
    }
    /* the name index loses the removed names: one segment rewritten per segment they are in */
    snprintf(log, sizeof(log), "index/%s/names", name);
    if ((err = imgstore_store__names_edit(tree_oid, store, log, NULL, 0,
                                          (char *const *)gone.versions, gone.count)) < 0)
        goto done;
    if ((err = imgstore_store__index_version_rows(&rows, &count, &indexed, store, tip, name)) < 0)
        goto done;
    if (!indexed)
        goto done; /* a stale version index stays stale: readers sort the manifests */
    for (size_t i = 0; i < count && err == 0 && first == SIZE_MAX; i++) {
        version_row row;

        if ((err = row_parse(&row, name, rows[i])) == 0 && is_removed(&gone, row.version))
            first = i / IMGSTORE_STORE__LOG_ROWS *
                    IMGSTORE_STORE__LOG_ROWS; /* the segment holding the first removed row */
    }
    /* the segments before the first removed row's stay as they are; from it on, the rows
     * that stay are written again and the segments past the new end dropped */
    if (err == 0 && first != SIZE_MAX) {
        size_t head = 0;
        char **tail = calloc(count + 1, sizeof(*tail));

        if (!tail) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
        for (size_t i = first; i < count; i++) {
            version_row row;

            if (row_parse(&row, name, rows[i]) == 0 && !is_removed(&gone, row.version))
                tail[head++] = rows[i];
        }
        snprintf(log, sizeof(log), "index/%s/versions", name);
        err = imgstore_store__log_replace_tail(tree_oid, store, log, count, first, tail, head);
        free(tail);
    }
    goto done;
git_failed:
    err = imgstore_store__git_error(rc, "%s: cannot rewrite the tree", path);
done:
    free(gone.versions);
    imgstore_strings_free(rows, count);
    git_treebuilder_free(bld);
    git_tree_free(dir);
    return err;
}

/* "prune 2 versions", with one "NAME VERSION" line each in the body (docs/format.md). */
static char *prune_message(const imgstore_prune_plan *plan)
{
    size_t cap = 256 + plan->removed_count * (2 * IMGSTORE_NAME_MAX + 4), len;
    char *msg = malloc(cap);

    if (!msg)
        return NULL;
    len = (size_t)snprintf(msg, cap, "prune %zu version%s\n\n", plan->removed_count,
                           plan->removed_count == 1 ? "" : "s");
    for (size_t i = 0; i < plan->removed_count; i++)
        len += (size_t)snprintf(msg + len, cap - len, "%s %s\n", plan->removed[i].name,
                                plan->removed[i].version);
    return msg;
}

static int prune_edit_fn(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    prune_edit *e = payload;
    char **done_images = NULL;
    size_t done_count = 0;
    int err;

    imgstore_prune_plan_free(e->plan);
    e->plan = NULL;
    if ((err = signers_check(e->store, tip, e->signers)) < 0 ||
        (err = plan_at(&e->plan, e->store, tip, e->opts)) < 0)
        return err;
    if (e->plan->removed_count == 0)
        return IMGSTORE_STORE_UNCHANGED;
    *tree_out = *git_tree_id(tip);
    if (!(done_images = calloc(e->plan->removed_count, sizeof(*done_images))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t i = 0; i < e->plan->removed_count && err == 0; i++) {
        const char *name = e->plan->removed[i].name;
        bool seen = false;

        for (size_t k = 0; k < done_count && !seen; k++)
            seen = strcmp(done_images[k], name) == 0;
        if (seen)
            continue;
        done_images[done_count++] = (char *)name;
        err = remove_image_versions(tree_out, e->store, tip, e->plan, name);
    }
    free(done_images);
    if (err < 0)
        return err;
    if (!(*message_out = prune_message(e->plan)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return 0;
}

/* With opts->cut, the removal commit is followed by the cut (cut.c) before the ref moves:
 * the ref goes from the old tip to the cut in one step, so a failed cut leaves the store as
 * it was, never pruned without the cut that was asked for. */
static int prune_cut_fn(git_oid *commit_oid, const git_signature *sig, const imgstore_sign_key *key,
                        void *payload)
{
    prune_edit *e = payload;

    int err;

    git_oid_tostr(e->plan->commit, sizeof(e->plan->commit), commit_oid);
    if (e->opts->archive &&
        (err = imgstore_store__cut_bundle(e->store, commit_oid, e->opts->archive)) < 0)
        return err;
    return imgstore_store__cut_write(commit_oid, e->plan, e->store, sig, key);
}

int imgstore_store_prune(imgstore_prune_plan **out, imgstore_store *store,
                         const imgstore_prune_opts *opts, const imgstore_signers *signers,
                         const char *actor)
{
    prune_edit e = {store, opts, signers, NULL};
    int err;

    *out = NULL;
    if ((err = opts_check(opts)) < 0)
        return err;
    if (!signers || signers->count == 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "prune is signed: give a release or root key");
    if (opts->archive && !opts->cut)
        return imgstore_error_set(IMGSTORE_EINVALID, "an archive is of the history a cut drops");
    err = imgstore_store__commit_then(store, actor, signers->keys[0], prune_edit_fn,
                                      opts->cut ? prune_cut_fn : NULL, &e);
    if (err == IMGSTORE_STORE_UNCHANGED)
        err = 0;
    else if (err == 0 && !opts->cut)
        err = imgstore_store_tip_id(e.plan->commit, store);
    if (err < 0) {
        imgstore_prune_plan_free(e.plan);
        return err;
    }
    *out = e.plan;
    return 0;
}

static json_t *items_json(const imgstore_prune_item *items, size_t count)
{
    json_t *array = json_array();

    for (size_t i = 0; array && i < count; i++) {
        json_t *row = json_pack("{s:s, s:s, s:s, s:I, s:I}", "name", items[i].name, "version",
                                items[i].version, "created", items[i].created, "files",
                                (json_int_t)items[i].files, "size", (json_int_t)items[i].size);

        if (row && items[i].reason)
            json_object_set_new(row, "reason", json_string(items[i].reason));
        if (!row || json_array_append_new(array, row) < 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

json_t *imgstore_store_prune_plan_to_json(const imgstore_prune_plan *plan)
{
    json_t *doc =
        json_pack("{s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:s*}", "removed",
                  items_json(plan->removed, plan->removed_count), "kept",
                  items_json(plan->kept, plan->kept_count), "freed", "versions",
                  (json_int_t)plan->removed_count, "files", (json_int_t)plan->files_freed, "chunks",
                  (json_int_t)plan->chunks_freed, "bytes", (json_int_t)plan->bytes_freed,
                  "unchecked_files", (json_int_t)plan->files_unchecked, "window_seconds",
                  (json_int_t)plan->window, "manifests_read", (json_int_t)plan->manifests_read,
                  "commit", plan->commit[0] ? plan->commit : NULL);

    if (doc && plan->cut)
        json_object_set_new(doc, "cut",
                            json_pack("{s:s*, s:I, s:I, s:I}", "commit",
                                      plan->cut_commit[0] ? plan->cut_commit : NULL, "op",
                                      (json_int_t)plan->cut_op, "moves_archived",
                                      (json_int_t)plan->cut_moves, "policies_archived",
                                      (json_int_t)plan->cut_policies));
    return doc;
}
