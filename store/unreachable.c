/*
 * `gc --prune` (issue #12): remove loose objects that no ref reaches and that nobody wrote or
 * reused within a grace period, as git's gc.pruneExpire (two weeks by default) does.
 *
 * What it can remove: the residue of killed or refused pushes (chunks written, never
 * committed), the intermediate trees a commit wrote and replaced, tmp_obj_* files, and, once
 * a prune has cut the history (store/cut.c), the pruned versions' objects and the old commits.
 *
 * Safety against a concurrent push: a push writes its objects before the commit that
 * references them, so they are unreachable for a while; they are also new, and a push that
 * reuses an old loose object freshens its mtime (objects.c, as libgit2 does for the rest), so
 * only objects untouched for the whole grace period go.
 *
 * Here: the reachable set and the loose objects. Unreachable packed objects are left out of
 * the packs gc combines (gc.c, with the pack's mtime as their age: packset.c).
 */
#include "store/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An open-addressing set of object ids. */
typedef struct imgstore_store__oidset {
    git_oid *slots;
    bool *used;
    size_t cap, count;
} oid_set;

static size_t oid_hash(const git_oid *oid, size_t cap)
{
    size_t h;

    memcpy(&h, oid->id, sizeof(h)); /* SHA-1 bytes are uniform */
    return h & (cap - 1);
}

static int set_grow(oid_set *s);

/* 1 when added, 0 when already there. */
static int set_add(oid_set *s, const git_oid *oid)
{
    size_t i;
    int err;

    if ((s->count + 1) * 2 > s->cap && (err = set_grow(s)) < 0)
        return err;
    for (i = oid_hash(oid, s->cap); s->used[i]; i = (i + 1) & (s->cap - 1))
        if (git_oid_equal(&s->slots[i], oid))
            return 0;
    s->used[i] = true;
    s->slots[i] = *oid;
    s->count++;
    return 1;
}

static bool set_has(const oid_set *s, const git_oid *oid)
{
    if (!s->cap)
        return false;
    for (size_t i = oid_hash(oid, s->cap); s->used[i]; i = (i + 1) & (s->cap - 1))
        if (git_oid_equal(&s->slots[i], oid))
            return true;
    return false;
}

static int set_grow(oid_set *s)
{
    oid_set bigger = {0};

    bigger.cap = s->cap ? s->cap * 2 : 4096;
    bigger.slots = malloc(bigger.cap * sizeof(*bigger.slots));
    bigger.used = calloc(bigger.cap, sizeof(*bigger.used));
    if (!bigger.slots || !bigger.used) {
        free(bigger.slots);
        free(bigger.used);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    for (size_t i = 0; i < s->cap; i++)
        if (s->used[i])
            set_add(&bigger, &s->slots[i]);
    free(s->slots);
    free(s->used);
    *s = bigger;
    return 0;
}

static void set_free(oid_set *s)
{
    free(s->slots);
    free(s->used);
    memset(s, 0, sizeof(*s));
}

/* Mark a tree and everything below it (trees already marked were walked). */
static int mark_tree(oid_set *seen, git_repository *repo, const git_oid *id)
{
    git_tree *tree = NULL;
    int err, rc;

    if ((err = set_add(seen, id)) <= 0)
        return err;
    if ((rc = git_tree_lookup(&tree, repo, id)) < 0)
        return imgstore_store__git_error(rc, "cannot read tree %s", git_oid_tostr_s(id));
    for (size_t i = 0; i < git_tree_entrycount(tree) && err >= 0; i++) {
        const git_tree_entry *e = git_tree_entry_byindex(tree, i);

        if (git_tree_entry_type(e) == GIT_OBJECT_TREE)
            err = mark_tree(seen, repo, git_tree_entry_id(e));
        else
            err = set_add(seen, git_tree_entry_id(e));
    }
    git_tree_free(tree);
    return err < 0 ? err : 0;
}

int imgstore_store__reachable(imgstore_store__oidset **out, imgstore_store *store)
{
    git_repository *repo = store->repo;
    oid_set *seen = calloc(1, sizeof(*seen));
    git_revwalk *walk = NULL;
    git_oid id;
    int err = 0, rc;

    *out = NULL;
    if (!seen)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((rc = git_revwalk_new(&walk, repo)) < 0 || (rc = git_revwalk_push_glob(walk, "refs/*")) < 0)
        goto done;
    while (err == 0 && (rc = git_revwalk_next(&id, walk)) == 0) {
        git_commit *commit = NULL;

        if ((err = set_add(seen, &id)) < 0)
            break;
        if ((rc = git_commit_lookup(&commit, repo, &id)) < 0)
            break;
        err = mark_tree(seen, repo, git_commit_tree_id(commit));
        git_commit_free(commit);
    }
    if (rc == GIT_ITEROVER)
        rc = 0;
done:
    git_revwalk_free(walk);
    if (err == 0 && rc < 0)
        err = imgstore_store__git_error(rc, "cannot walk the history");
    if (err < 0) {
        imgstore_store__oidset_free(seen);
        return err;
    }
    *out = seen;
    return 0;
}

bool imgstore_store__oidset_has(const imgstore_store__oidset *set, const git_oid *oid)
{
    return set_has(set, oid);
}

void imgstore_store__oidset_free(imgstore_store__oidset *set)
{
    if (set) {
        set_free(set);
        free(set);
    }
}

int imgstore_store__prune_unreachable(uint64_t *count_out, uint64_t *bytes_out,
                                      imgstore_store *store, const oid_set *seen,
                                      int64_t expire_before)
{
    *count_out = 0;
    *bytes_out = 0;
    for (unsigned fanout = 0; fanout < 256; fanout++) {
        char dir_path[4200];
        struct dirent *de;
        DIR *dir;

        snprintf(dir_path, sizeof(dir_path), "%s/%02x", store->objects_dir, fanout);
        if (!(dir = opendir(dir_path)))
            continue;
        while ((de = readdir(dir))) {
            char hex[GIT_OID_HEXSZ + 1];
            bool temp = strncmp(de->d_name, "tmp_obj_", 8) == 0;
            struct stat st;
            git_oid oid;

            if (!temp && (strlen(de->d_name) != GIT_OID_HEXSZ - 2 ||
                          (snprintf(hex, sizeof(hex), "%02x%s", fanout, de->d_name),
                           git_oid_fromstr(&oid, hex) < 0) ||
                          set_has(seen, &oid)))
                continue;
            /* checked again just before the unlink: an object a push reused since the walk
             * has a fresh mtime */
            if (fstatat(dirfd(dir), de->d_name, &st, 0) < 0 ||
                (int64_t)st.st_mtime >= expire_before)
                continue;
            if (unlinkat(dirfd(dir), de->d_name, 0) == 0) {
                (*count_out)++;
                *bytes_out += (uint64_t)st.st_size;
            }
        }
        closedir(dir);
    }
    return 0;
}
