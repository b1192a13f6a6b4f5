/*
 * The packs of a store, one libgit2 backend each, so that a caller can tell which pack holds
 * an object: to freshen that pack when a push reuses one of its objects (git's
 * odb freshening), and for gc --prune to know how long a pack has gone unused (issue #12).
 *
 * A pack's mtime is the last time a writer reused one of its objects, or wrote it. gc
 * --prune drops an unreachable packed object only when every pack holding it is older than
 * the grace period, so an object a push just chose to reuse instead of writing stays.
 */
#include "store/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2/sys/odb_backend.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct imgstore_store__packset {
    git_odb *odb;          /* every pack of the set, for lookups */
    git_odb_backend **one; /* the same packs one by one (owned by odb) */
    char **paths;          /* <pack_dir>/<name>.pack */
    int64_t *mtimes;       /* each .pack's mtime when the set was opened */
    bool *freshened;       /* touched by this set already */
    size_t count, cap;
};

static bool grow(void **array, size_t cap, size_t size)
{
    void *bigger = realloc(*array, cap * size);

    if (bigger)
        *array = bigger;
    return bigger != NULL;
}

static int add_pack(imgstore_store__packset *set, const char *pack_dir, const char *name)
{
    git_odb_backend *backend = NULL;
    char path[4200];
    struct stat st;
    int rc;

    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;

        if (!grow((void **)&set->one, cap, sizeof(*set->one)) ||
            !grow((void **)&set->paths, cap, sizeof(*set->paths)) ||
            !grow((void **)&set->mtimes, cap, sizeof(*set->mtimes)) ||
            !grow((void **)&set->freshened, cap, sizeof(*set->freshened)))
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        set->cap = cap;
    }
    if (snprintf(path, sizeof(path), "%s/%s.idx", pack_dir, name) >= (int)sizeof(path))
        return imgstore_error_set(IMGSTORE_ERROR, "%s/%s: path too long", pack_dir, name);
    if ((rc = git_odb_backend_one_pack(&backend, path)) < 0)
        return imgstore_store__git_error(rc, "cannot open the pack %s", path);
    if ((rc = git_odb_add_backend(set->odb, backend, 1)) < 0) {
        backend->free(backend);
        return imgstore_store__git_error(rc, "cannot open the pack %s", path);
    }
    snprintf(path, sizeof(path), "%s/%s.pack", pack_dir, name);
    if (!(set->paths[set->count] = strdup(path)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    set->one[set->count] = backend;
    set->mtimes[set->count] = stat(path, &st) == 0 ? (int64_t)st.st_mtime : 0;
    set->freshened[set->count] = false;
    set->count++;
    return 0;
}

int imgstore_store__packset_open(imgstore_store__packset **out, const char *pack_dir,
                                 const char *const *names, size_t count)
{
    imgstore_store__packset *set = calloc(1, sizeof(*set));
    DIR *dir = NULL;
    int err = 0, rc;

    *out = NULL;
    if (!set)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((rc = git_odb_new(&set->odb)) < 0) {
        err = imgstore_store__git_error(rc, "cannot open the packs in %s", pack_dir);
        goto done;
    }
    if (names) {
        for (size_t i = 0; i < count && !err; i++)
            err = add_pack(set, pack_dir, names[i]);
    } else if ((dir = opendir(pack_dir))) {
        struct dirent *de;

        while (!err && (de = readdir(dir))) {
            size_t len = strlen(de->d_name);
            char name[256];

            if (strncmp(de->d_name, "pack-", 5) != 0 || len < 9 || len >= sizeof(name) ||
                strcmp(de->d_name + len - 4, ".idx") != 0)
                continue;
            snprintf(name, sizeof(name), "%.*s", (int)(len - 4), de->d_name);
            err = add_pack(set, pack_dir, name);
        }
        closedir(dir);
    } else if (errno != ENOENT) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot read %s: %s", pack_dir, strerror(errno));
    }
done:
    if (err < 0) {
        imgstore_store__packset_free(set);
        return err;
    }
    *out = set;
    return 0;
}

git_odb *imgstore_store__packset_odb(const imgstore_store__packset *set)
{
    return set->odb;
}

size_t imgstore_store__packset_count(const imgstore_store__packset *set)
{
    return set->count;
}

int64_t imgstore_store__packset_mtime(const imgstore_store__packset *set, size_t i)
{
    return set->mtimes[i];
}

bool imgstore_store__packset_changed(const imgstore_store__packset *set, size_t i)
{
    struct stat st;

    return stat(set->paths[i], &st) < 0 || (int64_t)st.st_mtime != set->mtimes[i];
}

bool imgstore_store__packset_holds(const imgstore_store__packset *set, size_t i, const git_oid *oid)
{
    return set->one[i]->exists(set->one[i], oid) != 0;
}

int imgstore_store__packset_foreach(imgstore_store__packset *set, size_t i, git_odb_foreach_cb cb,
                                    void *payload)
{
    return set->one[i]->foreach (set->one[i], cb, payload);
}

void imgstore_store__packset_freshen(imgstore_store__packset *set, const git_oid *oid)
{
    for (size_t i = 0; i < set->count; i++) {
        if (set->freshened[i] || !imgstore_store__packset_holds(set, i, oid))
            continue;
        /* as libgit2 freshens a pack on reuse; a failure only shortens the grace period */
        utimensat(AT_FDCWD, set->paths[i], NULL, 0);
        set->freshened[i] = true;
    }
    git_error_clear();
}

void imgstore_store__packset_free(imgstore_store__packset *set)
{
    if (!set)
        return;
    git_odb_free(set->odb);
    for (size_t i = 0; i < set->count; i++)
        free(set->paths[i]);
    free(set->paths);
    free(set->one);
    free(set->mtimes);
    free(set->freshened);
    free(set);
}
