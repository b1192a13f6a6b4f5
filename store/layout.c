/*
 * Where a version lives (docs/format.md, "Tree layout"): images/<name>/<version>/ in an
 * imgstore/1 store, images/<name>/<xx>/<version>/ in an imgstore/2 store, <xx> the first byte
 * of SHA-256 of the version string in two lowercase hex digits. Every path to a version is
 * built here, and every listing of an image's versions walks its shards here.
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char marker_v1[] = "{\"format\":\"imgstore/1\"}";
static const char marker_v2[] = "{\"format\":\"imgstore/2\"}";

const char *imgstore_store__marker_bytes(imgstore_store__layout layout)
{
    return layout == IMGSTORE_STORE__SHARDED ? marker_v2 : marker_v1;
}

/* Drops JSON whitespace in place (the markers hold none inside their strings); the new
 * length. */
static size_t squeeze_whitespace(char *bytes, size_t len)
{
    size_t kept = 0;

    for (size_t i = 0; i < len; i++)
        if (!strchr(" \t\r\n", bytes[i]) || bytes[i] == '\0')
            bytes[kept++] = bytes[i];
    return kept;
}

int imgstore_store__layout_at(imgstore_store__layout *out, imgstore_store *store,
                              const git_tree *root)
{
    char *bytes = NULL;
    size_t len = 0;
    int err;

    *out = IMGSTORE_STORE__FLAT;
    if ((err = imgstore_store__read_small_blob(&bytes, &len, store, root, IMGSTORE_STORE_MARKER,
                                               4096)) < 0)
        return err;
    /* imgstore wrote exactly these bytes; whitespace (a marker written by hand, or with a
     * newline by `echo | git hash-object`) is let through. Anything else that names no
     * format this code knows is refused rather than read with the wrong layout. */
    len = squeeze_whitespace(bytes, len);
    if (len == strlen(marker_v2) && memcmp(bytes, marker_v2, len) == 0)
        *out = IMGSTORE_STORE__SHARDED;
    else if (!(len == strlen(marker_v1) && memcmp(bytes, marker_v1, len) == 0))
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "%s: unknown store format (this imgstore reads imgstore/1 and "
                                 "imgstore/2)",
                                 IMGSTORE_STORE_MARKER);
    free(bytes);
    return err;
}

void imgstore_store__version_shard(char out[3], const char *version)
{
    char hex[65];

    /* imgstore_sha256_hex fails only when out of memory: the shard is then "", and the path
     * ("images/<name>//<version>") is refused by every tree update and found by no lookup,
     * so the version is never written where no reader would find it */
    if (imgstore_sha256_hex(hex, version, strlen(version)) < 0) {
        out[0] = '\0';
        return;
    }
    out[0] = hex[0];
    out[1] = hex[1];
    out[2] = '\0';
}

void imgstore_store__version_path_in(char *out, size_t cap, imgstore_store__layout layout,
                                     const char *name, const char *version, const char *suffix)
{
    char shard[3];

    if (layout == IMGSTORE_STORE__SHARDED) {
        imgstore_store__version_shard(shard, version);
        snprintf(out, cap, "images/%s/%s/%s%s%s", name, shard, version, suffix ? "/" : "",
                 suffix ? suffix : "");
    } else {
        snprintf(out, cap, "images/%s/%s%s%s", name, version, suffix ? "/" : "",
                 suffix ? suffix : "");
    }
}

void imgstore_store__version_path(char *out, size_t cap, const imgstore_store *store,
                                  const char *name, const char *version, const char *suffix)
{
    imgstore_store__version_path_in(out, cap, store->layout, name, version, suffix);
}

bool imgstore_store__image_single_version(imgstore_store *store, const git_tree *root,
                                          const char *name)
{
    git_tree_entry *entry = NULL;
    git_tree *image = NULL, *shard = NULL;
    char path[256];
    bool one = false;

    snprintf(path, sizeof(path), "images/%s", name);
    if (git_tree_entry_bypath(&entry, root, path) == 0 &&
        git_tree_lookup(&image, store->repo, git_tree_entry_id(entry)) == 0 &&
        git_tree_entrycount(image) == 1) {
        one = store->layout != IMGSTORE_STORE__SHARDED;
        if (!one && git_tree_lookup(&shard, store->repo,
                                    git_tree_entry_id(git_tree_entry_byindex(image, 0))) == 0)
            one = git_tree_entrycount(shard) == 1;
    }
    git_tree_free(shard);
    git_tree_free(image);
    git_tree_entry_free(entry);
    git_error_clear();
    return one;
}

static bool is_shard_name(const char *s)
{
    for (int i = 0; i < 2; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[2] == '\0';
}

int imgstore_store__shard_check(const char *name, const char *shard, const git_tree_entry *entry)
{
    if (!is_shard_name(shard))
        return imgstore_error_set(
            IMGSTORE_EVERIFY, "images/%s/%s: not a shard (two lowercase hex digits)", name, shard);
    if (git_tree_entry_type(entry) != GIT_OBJECT_TREE)
        return imgstore_error_set(IMGSTORE_EVERIFY, "images/%s/%s: a shard that is not a directory",
                                  name, shard);
    return 0;
}

int imgstore_store__shard_version_check(const char *name, const char *shard, const char *version)
{
    char want[3];

    imgstore_store__version_shard(want, version);
    if (strcmp(want, shard) != 0)
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "images/%s/%s/%s: version in the wrong shard (belongs in "
                                  "images/%s/%s/)",
                                  name, shard, version, name, want);
    return 0;
}

int imgstore_store__versions_foreach(imgstore_store *store, const git_tree *root,
                                     imgstore_store__layout layout, const char *name,
                                     imgstore_store__version_fn fn,
                                     imgstore_store__damage_fn damaged, void *payload)
{
    git_tree_entry *dir = NULL;
    git_tree *image = NULL, *shard = NULL;
    char path[256];
    int err = 0, rc;

    snprintf(path, sizeof(path), "images/%s", name);
    if ((rc = git_tree_entry_bypath(&dir, root, path)) < 0 ||
        (rc = git_tree_lookup(&image, store->repo, git_tree_entry_id(dir))) < 0) {
        err = imgstore_store__git_error(rc, "%s", path);
        goto done;
    }
    for (size_t i = 0; err == 0 && i < git_tree_entrycount(image); i++) {
        const git_tree_entry *e = git_tree_entry_byindex(image, i);
        const char *shard_name = git_tree_entry_name(e);

        if (layout != IMGSTORE_STORE__SHARDED) {
            err = fn(git_tree_entry_name(e), e, payload);
            continue;
        }
        if ((err = imgstore_store__shard_check(name, shard_name, e)) < 0) {
            if (damaged && (err = damaged(imgstore_error_last(), payload)) == 0)
                continue;
            break;
        }
        if ((rc = git_tree_lookup(&shard, store->repo, git_tree_entry_id(e))) < 0) {
            err = imgstore_store__git_error(rc, "images/%s/%s", name, shard_name);
            break;
        }
        for (size_t j = 0; err == 0 && j < git_tree_entrycount(shard); j++) {
            const git_tree_entry *v = git_tree_entry_byindex(shard, j);

            if ((err = imgstore_store__shard_version_check(name, shard_name,
                                                           git_tree_entry_name(v))) == 0)
                err = fn(git_tree_entry_name(v), v, payload);
            else if (damaged)
                err = damaged(imgstore_error_last(), payload);
        }
        git_tree_free(shard);
        shard = NULL;
    }
done:
    git_tree_free(shard);
    git_tree_free(image);
    git_tree_entry_free(dir);
    return err;
}

typedef struct {
    char **names;
    size_t count, cap;
} version_list;

static int collect(const char *version, const git_tree_entry *entry, void *payload)
{
    version_list *list = payload;
    int err;

    (void)entry;
    /* room for the version and the NULL after it */
    if ((err = imgstore_array_grow((void **)&list->names, &list->cap, list->count + 2,
                                   sizeof(*list->names))) < 0)
        return err;
    if (!(list->names[list->count] = strdup(version)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    list->names[++list->count] = NULL;
    return 0;
}

/* git's tree order for directories: each name compared as if it ended in '/', so that a
 * sharded listing comes out in the order a flat images/<name> tree lists it */
static int tree_order(const void *pa, const void *pb)
{
    const unsigned char *a = *(const unsigned char *const *)pa;
    const unsigned char *b = *(const unsigned char *const *)pb;
    size_t i = 0;

    while (a[i] && a[i] == b[i])
        i++;
    return (a[i] ? a[i] : '/') - (b[i] ? b[i] : '/');
}

int imgstore_store__versions_list(char ***out, size_t *count_out, imgstore_store *store,
                                  const git_tree *root, const char *name)
{
    version_list list = {NULL, 0, 0};
    int err;

    *out = NULL;
    *count_out = 0;
    if ((err = imgstore_store__versions_foreach(store, root, store->layout, name, collect, NULL,
                                                &list)) < 0) {
        imgstore_strings_free(list.names, list.count);
        return err;
    }
    if (!list.names && !(list.names = calloc(1, sizeof(char *))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    /* the flat tree is already in tree order; shards are in hash order */
    if (store->layout == IMGSTORE_STORE__SHARDED)
        qsort(list.names, list.count, sizeof(*list.names), tree_order);
    *out = list.names;
    *count_out = list.count;
    return 0;
}
