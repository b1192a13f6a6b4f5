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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* libgit2's packbuilder hashes the last 16 characters of an object's path (git's
 * pack_name_hash) to choose what to compare for deltas: a set that keeps paths keeps those. */
#define PATH_HINT 16

/* An open-addressing set of object ids, each with its path's last characters and the order
 * it was added in (a walk from the refs: newest first). */
typedef struct imgstore_store__oidset {
    git_oid *slots;
    bool *used;
    char (*paths)[PATH_HINT];
    uint32_t *order;
    size_t cap, count;
} oid_set;

static size_t oid_hash(const git_oid *oid, size_t cap)
{
    size_t h;

    memcpy(&h, oid->id, sizeof(h)); /* SHA-1 bytes are uniform */
    return h & (cap - 1);
}

/* Where `oid` is, or the free slot where it would go. */
static size_t set_slot(const oid_set *s, const git_oid *oid)
{
    size_t i;

    for (i = oid_hash(oid, s->cap); s->used[i]; i = (i + 1) & (s->cap - 1))
        if (git_oid_equal(&s->slots[i], oid))
            break;
    return i;
}

static int set_grow(oid_set *s)
{
    oid_set bigger = {0};

    bigger.cap = s->cap ? s->cap * 2 : 4096;
    bigger.slots = malloc(bigger.cap * sizeof(*bigger.slots));
    bigger.used = calloc(bigger.cap, sizeof(*bigger.used));
    bigger.paths = malloc(bigger.cap * sizeof(*bigger.paths));
    bigger.order = malloc(bigger.cap * sizeof(*bigger.order));
    if (!bigger.slots || !bigger.used || !bigger.paths || !bigger.order) {
        free(bigger.slots);
        free(bigger.used);
        free(bigger.paths);
        free(bigger.order);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    for (size_t i = 0; i < s->cap; i++) {
        size_t j;

        if (!s->used[i])
            continue;
        j = set_slot(&bigger, &s->slots[i]);
        bigger.used[j] = true;
        bigger.slots[j] = s->slots[i];
        memcpy(bigger.paths[j], s->paths[i], PATH_HINT);
        bigger.order[j] = s->order[i];
        bigger.count++;
    }
    free(s->slots);
    free(s->used);
    free(s->paths);
    free(s->order);
    *s = bigger;
    return 0;
}

/* 1 when added (with the end of `path`, NULL for none), 0 when already there. */
static int set_add(oid_set *s, const git_oid *oid, const char *path)
{
    size_t i, len = path ? strlen(path) : 0;
    int err;

    if ((s->count + 1) * 2 > s->cap && (err = set_grow(s)) < 0)
        return err;
    if (s->used[i = set_slot(s, oid)])
        return 0;
    s->used[i] = true;
    s->slots[i] = *oid;
    s->order[i] = s->count < UINT32_MAX ? (uint32_t)s->count : UINT32_MAX;
    memset(s->paths[i], 0, PATH_HINT);
    if (len > PATH_HINT) {
        path += len - PATH_HINT;
        len = PATH_HINT;
    }
    if (len)
        memcpy(s->paths[i], path, len);
    s->count++;
    return 1;
}

static bool set_has(const oid_set *s, const git_oid *oid)
{
    return s->cap && s->used[set_slot(s, oid)];
}

static void set_free(oid_set *s)
{
    free(s->slots);
    free(s->used);
    free(s->paths);
    free(s->order);
    memset(s, 0, sizeof(*s));
}

static int oid_cmp(const void *a, const void *b)
{
    return git_oid_cmp(a, b);
}

/* One walk of commits and trees: everything, or (`only`, sorted) just those objects, and only
 * the trees among them are read. `path` is the tree being read's path. */
typedef struct {
    oid_set *seen;
    git_repository *repo;
    const git_oid *only;
    size_t only_count;
    char path[4096];
} tree_walk;

static bool wanted(const tree_walk *w, const git_oid *id)
{
    return !w->only ||
           (w->only_count && bsearch(id, w->only, w->only_count, sizeof(git_oid), oid_cmp));
}

/* Mark a tree (at w->path, `len` bytes) and everything below it (trees already marked were
 * walked). */
static int mark_tree(tree_walk *w, const git_oid *id, size_t len)
{
    git_tree *tree = NULL;
    int err, rc;

    if (!wanted(w, id))
        return 0;
    if ((err = set_add(w->seen, id, w->path)) <= 0)
        return err;
    if ((rc = git_tree_lookup(&tree, w->repo, id)) < 0)
        return imgstore_store__git_error(rc, "cannot read tree %s", git_oid_tostr_s(id));
    for (size_t i = 0; i < git_tree_entrycount(tree) && err >= 0; i++) {
        const git_tree_entry *e = git_tree_entry_byindex(tree, i);
        const char *name = git_tree_entry_name(e);
        size_t at = len ? len + 1 : 0, name_len = strlen(name), child = len;

        /* a path too long for the buffer (none a store writes) hints with its parent's */
        if (at + name_len < sizeof(w->path)) {
            if (len)
                w->path[len] = '/';
            memcpy(w->path + at, name, name_len + 1);
            child = at + name_len;
        }
        if (git_tree_entry_type(e) == GIT_OBJECT_TREE)
            err = mark_tree(w, git_tree_entry_id(e), child);
        else if (wanted(w, git_tree_entry_id(e)))
            err = set_add(w->seen, git_tree_entry_id(e), w->path);
        w->path[len] = '\0';
    }
    git_tree_free(tree);
    return err < 0 ? err : 0;
}

static int mark_commit(tree_walk *w, const git_commit *commit)
{
    w->path[0] = '\0';
    return mark_tree(w, git_commit_tree_id(commit), 0);
}

int imgstore_store__reachable(imgstore_store__oidset **out, git_repository *repo)
{
    oid_set *seen = calloc(1, sizeof(*seen));
    git_revwalk *walk = NULL;
    git_oid id;
    tree_walk w;
    int err = 0, rc;

    *out = NULL;
    if (!seen)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    w = (tree_walk){.seen = seen, .repo = repo};
    if ((rc = git_revwalk_new(&walk, repo)) < 0 || (rc = git_revwalk_push_glob(walk, "refs/*")) < 0)
        goto done;
    while (err == 0 && (rc = git_revwalk_next(&id, walk)) == 0) {
        git_commit *commit = NULL;

        if ((err = set_add(seen, &id, NULL)) < 0)
            break;
        err = 0; /* a commit that cannot be read fails the walk below, never shortens it */
        if ((rc = git_commit_lookup(&commit, repo, &id)) < 0)
            break;
        err = mark_commit(&w, commit);
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

int imgstore_store__loose_paths(imgstore_store__oidset **out, git_repository *repo,
                                const git_oid *loose, size_t count)
{
    oid_set *seen = calloc(1, sizeof(*seen));
    git_reference_iterator *refs = NULL;
    git_reference *ref = NULL;
    git_oid *todo = NULL;
    size_t todo_count = 0, todo_cap = 0;
    tree_walk w;
    int err = 0, rc;

    *out = NULL;
    if (!seen)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (count == 0) { /* nothing loose: nothing to name (an empty `only` would mean all) */
        *out = seen;
        return 0;
    }
    w = (tree_walk){.seen = seen, .repo = repo, .only = loose, .only_count = count};
    if ((rc = git_reference_iterator_glob_new(&refs, repo, "refs/*")) < 0) {
        err = imgstore_store__git_error(rc, "cannot list the refs");
        goto done;
    }
    while (err == 0 && (rc = git_reference_next(&ref, refs)) == 0) {
        if (git_reference_type(ref) == GIT_REFERENCE_DIRECT &&
            (err = imgstore_array_grow((void **)&todo, &todo_cap, todo_count + 1, sizeof(*todo))) ==
                0)
            todo[todo_count++] = *git_reference_target(ref);
        git_reference_free(ref);
    }
    if (err == 0 && rc != GIT_ITEROVER)
        err = imgstore_store__git_error(rc, "cannot list the refs");
    /* from each ref back through the commits not packed yet (a gc packs every loose one) */
    while (err == 0 && todo_count > 0) {
        git_oid id = todo[--todo_count];
        git_commit *commit = NULL;

        if (!wanted(&w, &id) || (err = set_add(seen, &id, NULL)) <= 0)
            continue;
        if (git_commit_lookup(&commit, repo, &id) < 0) {
            git_error_clear(); /* a ref to a tag or a blob, or a damaged commit: no hints there */
            continue;
        }
        err = mark_commit(&w, commit);
        for (unsigned i = 0; err == 0 && i < git_commit_parentcount(commit); i++)
            if ((err = imgstore_array_grow((void **)&todo, &todo_cap, todo_count + 1,
                                           sizeof(*todo))) == 0)
                todo[todo_count++] = *git_commit_parent_id(commit, i);
        git_commit_free(commit);
    }
done:
    git_reference_iterator_free(refs);
    free(todo);
    if (err < 0) {
        imgstore_store__oidset_free(seen);
        return err;
    }
    *out = seen;
    return 0;
}

bool imgstore_store__oidset_hint(char path[17], uint32_t *order, const imgstore_store__oidset *set,
                                 const git_oid *oid)
{
    size_t i;

    if (!set || !set->cap || !set->used[i = set_slot(set, oid)])
        return false;
    memcpy(path, set->paths[i], PATH_HINT);
    path[PATH_HINT] = '\0';
    *order = set->order[i];
    return true;
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
