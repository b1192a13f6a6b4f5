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
#include <unistd.h>

typedef struct {
    git_odb_backend *one; /* this pack alone (owned by the set's odb) */
    char *path;           /* <pack_dir>/<name>.pack */
    int64_t mtime;        /* the .pack's mtime when the set was opened */
    bool freshened;       /* touched by this set already */
} pack_entry;

struct imgstore_store__packset {
    git_odb *odb; /* every pack of the set, for lookups */
    pack_entry *packs;
    size_t count, cap;
};

static int add_pack(imgstore_store__packset *set, const char *pack_dir, const char *name)
{
    git_odb_backend *backend = NULL;
    pack_entry *e;
    char path[4200];
    struct stat st;
    int rc;

    if (imgstore_array_grow((void **)&set->packs, &set->cap, set->count + 1, sizeof(pack_entry)) <
        0)
        return IMGSTORE_ERROR;
    if (snprintf(path, sizeof(path), "%s/%s.idx", pack_dir, name) >= (int)sizeof(path))
        return imgstore_error_set(IMGSTORE_ERROR, "%s/%s: path too long", pack_dir, name);
    if ((rc = git_odb_backend_one_pack(&backend, path)) < 0)
        return imgstore_store__git_error(rc, "cannot open the pack %s", path);
    if ((rc = git_odb_add_backend(set->odb, backend, 1)) < 0) {
        backend->free(backend);
        return imgstore_store__git_error(rc, "cannot open the pack %s", path);
    }
    snprintf(path, sizeof(path), "%s/%s.pack", pack_dir, name);
    e = &set->packs[set->count];
    if (!(e->path = strdup(path)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    e->one = backend;
    e->mtime = stat(path, &st) == 0 ? (int64_t)st.st_mtime : 0;
    e->freshened = false;
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
            if ((err = add_pack(set, pack_dir, name)) < 0 &&
                faccessat(dirfd(dir), de->d_name, F_OK, 0) < 0 && errno == ENOENT) {
                imgstore_error_clear(); /* a gc combined it away meanwhile: not ours to read */
                err = 0;
            }
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
    return set->packs[i].mtime;
}

bool imgstore_store__packset_changed(const imgstore_store__packset *set, size_t i)
{
    struct stat st;

    return stat(set->packs[i].path, &st) < 0 || (int64_t)st.st_mtime != set->packs[i].mtime;
}

static bool holds(const imgstore_store__packset *set, size_t i, const git_oid *oid)
{
    return set->packs[i].one->exists(set->packs[i].one, oid) != 0;
}

int imgstore_store__packset_foreach(imgstore_store__packset *set, size_t i, git_odb_foreach_cb cb,
                                    void *payload)
{
    return set->packs[i].one->foreach (set->packs[i].one, cb, payload);
}

bool imgstore_store__packset_freshen(imgstore_store__packset *set, const git_oid *oid)
{
    bool fresh = false;

    for (size_t i = 0; i < set->count; i++) {
        if (!holds(set, i, oid))
            continue;
        /* as libgit2 freshens a pack on reuse. A pack gc removed since this set was opened
         * still answers (it stays mapped) but cannot be touched: it does not count */
        if (!set->packs[i].freshened && utimensat(AT_FDCWD, set->packs[i].path, NULL, 0) == 0)
            set->packs[i].freshened = true;
        fresh = fresh || set->packs[i].freshened;
    }
    git_error_clear();
    return fresh;
}

void imgstore_store__packset_free(imgstore_store__packset *set)
{
    if (!set)
        return;
    git_odb_free(set->odb);
    for (size_t i = 0; i < set->count; i++)
        free(set->packs[i].path);
    free(set->packs);
    free(set);
}
