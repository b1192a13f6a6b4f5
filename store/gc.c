/*
 * Packing a store's loose objects (issue #9): `imgstore gc`, the check after every commit,
 * and the server's maintenance thread all come here.
 *
 * Every push leaves its objects loose, and a tree per version rewritten in full, so a store
 * of 10,000 versions of 64 KiB was 2.2 GB of loose files for 640 MB of image bytes. A gc
 * writes what is loose into at most two packs: chunk blobs (blobs of BULK_MIN bytes or more)
 * into one written by pack.c, at zlib level 0 when they do not compress, and everything
 * else (commits, trees, manifests, signatures, small files) through libgit2's packbuilder,
 * whose deltas shrink the per-version trees to a few bytes each.
 *
 * Safety, in order (docs/format.md, "Packing"):
 *  - gc has its own lock (<store>/imgstore-gc.lock, non-blocking: a second gc skips). It
 *    never takes the writers' imgstore.lock, so pushes, deploys and reads go on meanwhile.
 *  - The loose objects are listed once at the start; only those are packed, and only those
 *    are ever unlinked, so an object written after the list was taken stays loose.
 *  - Packs are written under temporary names in <store>/imgstore-gc.tmp, fsynced, renamed
 *    into objects/pack (.pack first, .idx last: readers find packs by their .idx), and the
 *    directory fsynced. Only then, and only for objects a fresh look at objects/pack finds,
 *    are loose files removed. A reader that missed an object it saw loose a moment ago
 *    finds it in the new pack: libgit2 rescans objects/pack on a miss (tested).
 *  - Past PACKS_MAX packs, all packs are combined into new ones; an old pack is deleted
 *    only when every object of it is found in the new ones.
 * A gc killed at any point leaves the loose objects, the old packs, or both with the new
 * ones: never a missing object. Its leftovers (temporary files, a .pack without .idx) are
 * removed by the next gc. Unreferenced objects are packed too; only gc --prune removes
 * them, loose and past a grace period (unreachable.c, issue #12).
 */
#include "store/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BULK_MIN        (64u * 1024)        /* blobs this big are chunks: packed by pack.c */
#define OBJECT_MAX      (64u * 1024 * 1024) /* larger than any object a store writes */
#define PACKS_MAX       50                  /* more than this, and packs are combined */
#define GC_AUTO_DEFAULT 6700                /* git's gc.auto */
#define AUTO_EXACT      2560                /* below this threshold, count every loose object */

typedef struct {
    git_oid *oids;
    size_t count, cap;
} oid_list;

typedef struct {
    char **items;
    size_t count, cap;
} name_list;

static int oid_push(oid_list *list, const git_oid *oid)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 1024;
        git_oid *grown = realloc(list->oids, cap * sizeof(*grown));

        if (!grown)
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        list->oids = grown;
        list->cap = cap;
    }
    git_oid_cpy(&list->oids[list->count++], oid);
    return 0;
}

static int name_push(name_list *list, const char *name)
{
    int err;

    if ((err = imgstore_array_grow((void **)&list->items, &list->cap, list->count + 1,
                                   sizeof(*list->items))) < 0)
        return err;
    if (!(list->items[list->count] = strdup(name)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    list->count++;
    return 0;
}

static bool name_has(const name_list *list, const char *name)
{
    for (size_t i = 0; i < list->count; i++) {
        if (strcmp(list->items[i], name) == 0)
            return true;
    }
    return false;
}

static void name_list_free(name_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
}

static bool is_loose_name(const char *name)
{
    size_t n = 0;

    for (; name[n]; n++) {
        if (!((name[n] >= '0' && name[n] <= '9') || (name[n] >= 'a' && name[n] <= 'f')))
            return false;
    }
    return n == GIT_OID_HEXSZ - 2;
}

/* Loose objects in one fan-out directory: appended to `list` (may be NULL: only counted). */
static int scan_fanout(oid_list *list, uint64_t *count, uint64_t *bytes, const char *objects_dir,
                       unsigned fanout)
{
    char path[4200], hex[GIT_OID_HEXSZ + 1];
    struct dirent *de;
    DIR *dir;
    int err = 0;

    snprintf(path, sizeof(path), "%s/%02x", objects_dir, fanout);
    if (!(dir = opendir(path)))
        return errno == ENOENT ? 0
                               : imgstore_error_set(IMGSTORE_ERROR, "cannot read %s: %s", path,
                                                    strerror(errno));
    while ((de = readdir(dir)) && !err) {
        struct stat st;
        git_oid oid;

        if (!is_loose_name(de->d_name))
            continue;
        if (bytes && fstatat(dirfd(dir), de->d_name, &st, 0) == 0)
            *bytes += (uint64_t)st.st_size;
        (*count)++;
        snprintf(hex, sizeof(hex), "%02x%.38s", fanout & 0xffu, de->d_name);
        if (list && git_oid_fromstr(&oid, hex) == 0)
            err = oid_push(list, &oid);
    }
    closedir(dir);
    return err;
}

static int scan_loose(oid_list *list, uint64_t *count, uint64_t *bytes, const char *objects_dir)
{
    int err = 0;

    *count = 0;
    for (unsigned i = 0; i < 256 && !err; i++)
        err = scan_fanout(list, count, bytes, objects_dir, i);
    return err;
}

/* The packs in objects/pack (names without extension, from their .idx) and the bytes of every
 * file there. A .pack without its .idx is what a gc killed between the two renames (or while
 * deleting an old pack) leaves: invisible to readers, removed here under the gc lock. */
static int scan_packs(name_list *names, uint64_t *bytes, const char *pack_dir, bool clean)
{
    char path[4200];
    struct dirent *de;
    DIR *dir;
    int err = 0;

    if (!(dir = opendir(pack_dir)))
        return errno == ENOENT ? 0
                               : imgstore_error_set(IMGSTORE_ERROR, "cannot read %s: %s", pack_dir,
                                                    strerror(errno));
    while ((de = readdir(dir)) && !err) {
        size_t len = strlen(de->d_name);
        struct stat st;

        if (strncmp(de->d_name, "pack-", 5) != 0 || len < 10)
            continue;
        if (clean && strcmp(de->d_name + len - 5, ".pack") == 0) {
            snprintf(path, sizeof(path), "%s/%.*s.idx", pack_dir, (int)(len - 5), de->d_name);
            if (access(path, F_OK) < 0 && errno == ENOENT) {
                unlinkat(dirfd(dir), de->d_name, 0);
                continue;
            }
        }
        if (bytes && fstatat(dirfd(dir), de->d_name, &st, 0) == 0)
            *bytes += (uint64_t)st.st_size;
        if (names && strcmp(de->d_name + len - 4, ".idx") == 0) {
            snprintf(path, sizeof(path), "%.*s", (int)(len - 4), de->d_name);
            err = name_push(names, path);
        }
    }
    closedir(dir);
    return err;
}

/* "a/bc" into out; false when it does not fit (no path of a store comes near 4 KiB) */
static bool join(char *out, size_t cap, const char *dir, const char *name, const char *ext)
{
    return snprintf(out, cap, "%s/%s%s", dir, name, ext) < (int)cap;
}

static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int sync_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* Empty the staging directory (a killed gc's files) and make sure it exists. */
static int staging_reset(const char *tmp_dir)
{
    struct dirent *de;
    DIR *dir = opendir(tmp_dir);

    if (dir) {
        while ((de = readdir(dir))) {
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                unlinkat(dirfd(dir), de->d_name, 0);
        }
        closedir(dir);
    } else if (mkdir(tmp_dir, 0755) < 0 && errno != EEXIST) {
        return imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", tmp_dir, strerror(errno));
    }
    return 0;
}

/* The content of a loose or packed object must hash to its name before it goes into a pack:
 * a damaged object stays where it is (for fsck to report), never copied as if sound. */
static bool object_hash_ok(const git_oid *oid, git_object_t type, const uint8_t *data, size_t len)
{
    EVP_MD_CTX *sha1 = EVP_MD_CTX_new();
    char header[64];
    int header_len = snprintf(header, sizeof(header), "%s %zu", git_object_type2string(type), len);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    bool ok = sha1 && EVP_DigestInit_ex(sha1, EVP_sha1(), NULL) == 1 &&
              EVP_DigestUpdate(sha1, header, (size_t)header_len + 1) == 1 &&
              EVP_DigestUpdate(sha1, data, len) == 1 &&
              EVP_DigestFinal_ex(sha1, digest, &digest_len) == 1 && digest_len == GIT_OID_RAWSZ &&
              memcmp(digest, oid->id, GIT_OID_RAWSZ) == 0;

    EVP_MD_CTX_free(sha1);
    return ok;
}

/* An object for the packbuilder, and where it goes in the order it is given there. */
typedef struct {
    git_oid oid;
    uint32_t order; /* the hints' walk order (newest first); UINT32_MAX without one */
} pending_object;

/* An object of the old packs, when they are combined. */
typedef struct {
    git_oid oid;
    int64_t newest; /* the newest mtime of the packs holding it (gc --prune) */
    bool left_out;  /* unreachable: not copied into the new packs (dropped, or made loose) */
} old_object;

typedef struct {
    imgstore_store *store;
    imgstore_gc_stats *stats;
    imgstore_store__pack *bulk;
    git_packbuilder *pb;
    git_repository *pb_repo;      /* the packbuilder's own: its object cache goes with it */
    imgstore_store__packset *old; /* objects/pack only, as it was when gc started */
    git_odb *packs;               /* the same, as one odb */
    oid_list unlink_list;         /* loose objects to remove once they are found packed */
    old_object *old_objects;      /* with combine: every object of the old packs */
    size_t old_count, old_cap;
    bool old_listed;   /* old_objects holds them */
    bool old_complete; /* every object of the old packs went into the new ones, or left out */
    const imgstore_store__oidset *reachable; /* gc --prune: what the refs reach */
    const imgstore_store__oidset *hints;     /* the objects' paths, for the packbuilder */
    pending_object *pending;                 /* for the packbuilder, given all at once */
    size_t pending_count, pending_cap;
    int64_t expire_before;        /* gc --prune: unused since before this (unix seconds) may go */
    git_odb_backend *loose;       /* gc --prune: where unreachable objects of young packs go */
    const oid_list *loose_listed; /* the loose objects when gc started, sorted */
} gc_run;

/* Put one sound object into the pack where it belongs. */
static int pack_object(gc_run *run, const git_oid *oid, git_object_t type, const uint8_t *data,
                       size_t len)
{
    char path[17];
    uint32_t order = UINT32_MAX;
    int err;

    if (type == GIT_OBJECT_BLOB && len >= BULK_MIN)
        return imgstore_store__pack_add(run->bulk, oid, type, data, len,
                                        imgstore_store__worth_compressing(data, len));
    imgstore_store__oidset_hint(path, &order, run->hints, oid);
    if ((err = imgstore_array_grow((void **)&run->pending, &run->pending_cap,
                                   run->pending_count + 1, sizeof(*run->pending))) < 0)
        return err;
    run->pending[run->pending_count++] = (pending_object){*oid, order};
    return 0;
}

static int pending_cmp(const void *pa, const void *pb)
{
    const pending_object *a = pa, *b = pb;

    if (a->order != b->order)
        return a->order < b->order ? -1 : 1;
    return git_oid_cmp(&a->oid, &b->oid);
}

/* The packbuilder compares for deltas the objects of one type and path hash, by size, and
 * among equal sizes in the order they were given: newest first, as git gives them, so that
 * a tree is compared with the versions just before it (a shard's, an index segment's), not
 * with a random one of the same size that differs everywhere. */
static int insert_pending(gc_run *run)
{
    char path[17];
    uint32_t order;
    int rc;

    if (run->pending_count)
        qsort(run->pending, run->pending_count, sizeof(*run->pending), pending_cmp);
    for (size_t i = 0; i < run->pending_count; i++) {
        const git_oid *oid = &run->pending[i].oid;

        if ((rc = git_packbuilder_insert(
                 run->pb, oid,
                 imgstore_store__oidset_hint(path, &order, run->hints, oid) ? path : NULL)) < 0)
            return imgstore_store__git_error(rc, "cannot pack object %s", git_oid_tostr_s(oid));
    }
    return 0;
}

static int pack_loose(gc_run *run, const oid_list *loose)
{
    int err = 0;

    for (size_t i = 0; i < loose->count && !err; i++) {
        const git_oid *oid = &loose->oids[i];
        imgstore_store__chunk_buf obj;
        git_object_t type;
        int rc;

        /* a copy already packed: only unlink. No rescan of objects/pack on each miss (most
         * loose objects are in no pack): the packs were read when this odb was made */
        /* with --prune, an unreachable one stays loose, its file's mtime its age (its
         * packed copy, if any, is left out below): packed, it would look new again */
        if (run->reachable && !imgstore_store__oidset_has(run->reachable, oid))
            continue;
        if (git_odb_exists_ext(run->packs, oid, GIT_ODB_LOOKUP_NO_REFRESH)) {
            err = oid_push(&run->unlink_list, oid);
            continue;
        }
        rc = imgstore_store__loose_read_any(&obj, &type, run->store->objects_dir, oid, OBJECT_MAX);
        if (rc == 0)
            continue; /* gone since the listing: not ours to worry about */
        if (rc < 0 || !object_hash_ok(oid, type, obj.data, obj.len)) {
            run->stats->damaged++;
            imgstore_store__chunk_buf_clear(&obj);
            imgstore_error_clear();
            continue;
        }
        err = pack_object(run, oid, type, obj.data, obj.len);
        imgstore_store__chunk_buf_clear(&obj);
        if (!err) {
            run->stats->objects_packed++;
            err = oid_push(&run->unlink_list, oid);
        }
    }
    return err;
}

typedef struct {
    gc_run *run;
    int64_t mtime;
} collect_ctx;

static int collect_old(const git_oid *oid, void *payload)
{
    collect_ctx *c = payload;
    gc_run *run = c->run;

    if (imgstore_array_grow((void **)&run->old_objects, &run->old_cap, run->old_count + 1,
                            sizeof(old_object)) < 0)
        return GIT_EUSER;
    run->old_objects[run->old_count++] = (old_object){*oid, c->mtime, false};
    return 0;
}

static int oid_cmp(const void *a, const void *b)
{
    return git_oid_cmp(a, b);
}

static int old_cmp(const void *a, const void *b)
{
    return git_oid_cmp(&((const old_object *)a)->oid, &((const old_object *)b)->oid);
}

/* Every object of the old packs once, with the newest mtime of the packs that hold it. */
static int list_old(gc_run *run)
{
    size_t kept = 0;
    int rc;

    for (size_t i = 0; i < imgstore_store__packset_count(run->old); i++) {
        collect_ctx c = {run, imgstore_store__packset_mtime(run->old, i)};

        if ((rc = imgstore_store__packset_foreach(run->old, i, collect_old, &c)) < 0)
            return rc == GIT_EUSER
                       ? imgstore_error_set(IMGSTORE_ERROR, "out of memory")
                       : imgstore_store__git_error(rc, "cannot list the packed objects");
    }
    if (run->old_count)
        qsort(run->old_objects, run->old_count, sizeof(*run->old_objects), old_cmp);
    for (size_t i = 0; i < run->old_count; i++) { /* an object may be in several packs */
        old_object *o = &run->old_objects[i];

        if (kept > 0 && git_oid_equal(&run->old_objects[kept - 1].oid, &o->oid)) {
            if (o->newest > run->old_objects[kept - 1].newest)
                run->old_objects[kept - 1].newest = o->newest;
            continue;
        }
        run->old_objects[kept++] = *o;
    }
    run->old_count = kept;
    run->old_listed = true;
    return 0;
}

/* gc --prune, an old object no ref reaches: whether to leave it out of the new packs. One
 * whose packs went unused for the grace period goes (counted as pruned); a younger one is
 * written loose with its pack's mtime, to age on its own as git's --unpack-unreachable does
 * (left in a new pack it would look new again at every gc); one also loose already is
 * simply left out. */
static bool leave_out(gc_run *run, const old_object *o)
{
    char hex[GIT_OID_HEXSZ + 1], path[4200];
    git_odb_object *obj = NULL;
    struct timespec times[2];

    if (!run->reachable || imgstore_store__oidset_has(run->reachable, &o->oid))
        return false;
    git_oid_tostr(hex, sizeof(hex), &o->oid);
    snprintf(path, sizeof(path), "%s/%.2s/%s", run->store->objects_dir, hex, hex + 2);
    times[0] = times[1] = (struct timespec){.tv_sec = (time_t)o->newest, .tv_nsec = 0};
    /* looked up in the listing (sorted), not with a stat each: after a cut, hundreds of
     * thousands of old trees and commits come here */
    if (run->loose_listed->count && bsearch(&o->oid, run->loose_listed->oids,
                                            run->loose_listed->count, sizeof(git_oid), oid_cmp)) {
        struct stat st;

        /* the loose copy stays, and must be as young as the packed one was */
        if (stat(path, &st) == 0 && (int64_t)st.st_mtime < o->newest)
            utimensat(AT_FDCWD, path, times, 0);
        return true;
    }
    if (o->newest < run->expire_before) {
        run->stats->objects_pruned++; /* what it frees shows in bytes_before -> bytes_after */
        return true;
    }
    if (git_odb_read(&obj, run->packs, &o->oid) < 0 ||
        run->loose->write(run->loose, &o->oid, git_odb_object_data(obj), git_odb_object_size(obj),
                          git_odb_object_type(obj)) < 0) {
        git_odb_object_free(obj);
        git_error_clear();
        return false; /* keep it packed: nothing is lost, it is tried again next time */
    }
    git_odb_object_free(obj);
    utimensat(AT_FDCWD, path, times, 0);
    return true;
}

/* gc --prune: whether an old pack holds an object no ref reaches (the listing is kept). */
static int packs_hold_unreachable(bool *out, gc_run *run)
{
    int err;

    *out = false;
    if ((err = list_old(run)) < 0)
        return err;
    for (size_t i = 0; i < run->old_count && !*out; i++)
        *out = !imgstore_store__oidset_has(run->reachable, &run->old_objects[i].oid);
    return 0;
}

/* Combining: every object of the old packs into the new ones (with --prune, those a ref
 * reaches, and the young unreachable ones made loose). */
static int pack_old(gc_run *run)
{
    int err;

    if (!run->old_listed && (err = list_old(run)) < 0)
        return err;
    run->old_complete = true;
    for (size_t i = 0; i < run->old_count; i++) {
        old_object *o = &run->old_objects[i];
        const git_oid *oid = &o->oid;
        git_odb_object *obj = NULL;
        git_object_t type;
        size_t len;

        /* before the header: a delta's header costs its whole chain */
        if ((o->left_out = leave_out(run, o)))
            continue;
        if (git_odb_read_header(&len, &type, run->packs, oid) < 0) {
            run->old_complete = false;
            continue;
        }
        if (!(type == GIT_OBJECT_BLOB && len >= BULK_MIN)) {
            if ((err = pack_object(run, oid, type, NULL, len)) < 0)
                return err;
            continue;
        }
        if (len > OBJECT_MAX || git_odb_read(&obj, run->packs, oid) < 0 ||
            !object_hash_ok(oid, type, git_odb_object_data(obj), git_odb_object_size(obj))) {
            run->stats->damaged++;
            run->old_complete = false;
            git_odb_object_free(obj);
            continue;
        }
        err = pack_object(run, oid, type, git_odb_object_data(obj), git_odb_object_size(obj));
        git_odb_object_free(obj);
        if (err < 0)
            return err;
    }
    git_error_clear();
    return 0;
}

/* Move a finished pack from the staging directory into objects/pack: .pack, then .idx. */
static int install_pack(const char *tmp_dir, const char *pack_dir, const char *name)
{
    static const char *const exts[] = {".pack", ".idx"};
    char from[4200], to[4200];

    for (int i = 0; i < 2; i++) {
        if (!join(from, sizeof(from), tmp_dir, name, exts[i]) ||
            !join(to, sizeof(to), pack_dir, name, exts[i]) || sync_file(from) < 0 ||
            rename(from, to) < 0)
            return imgstore_error_set(IMGSTORE_ERROR, "cannot move %s into %s: %s", from, pack_dir,
                                      strerror(errno));
    }
    return 0;
}

static int write_packs(gc_run *run, name_list *new_packs, const char *tmp_dir)
{
    char name[GIT_OID_HEXSZ + 1], pack_name[64];
    int rc, err;

    if (git_packbuilder_object_count(run->pb) > 0) {
        if ((rc = git_packbuilder_write(run->pb, tmp_dir, 0444, NULL, NULL)) < 0)
            return imgstore_store__git_error(rc, "cannot write a pack in %s", tmp_dir);
        snprintf(pack_name, sizeof(pack_name), "pack-%s", git_packbuilder_name(run->pb));
        if ((err = name_push(new_packs, pack_name)) < 0)
            return err;
    }
    if (imgstore_store__pack_count(run->bulk) > 0) {
        if ((err = imgstore_store__pack_finish(run->bulk, name)) < 0)
            return err;
        snprintf(pack_name, sizeof(pack_name), "pack-%s", name);
        if ((err = name_push(new_packs, pack_name)) < 0)
            return err;
    }
    return 0;
}

static void remove_old_packs(gc_run *run, const char *pack_dir, const name_list *old_packs,
                             const name_list *new_packs)
{
    imgstore_store__packset *fresh = NULL;
    char path[4200];

    if (!run->old_complete ||
        imgstore_store__packset_open(&fresh, pack_dir, (const char *const *)new_packs->items,
                                     new_packs->count) < 0) {
        imgstore_error_clear();
        return;
    }
    for (size_t i = 0; i < run->old_count; i++) {
        if (!run->old_objects[i].left_out &&
            !git_odb_exists_ext(imgstore_store__packset_odb(fresh), &run->old_objects[i].oid,
                                GIT_ODB_LOOKUP_NO_REFRESH)) {
            imgstore_store__packset_free(fresh);
            return; /* keep every old pack: something of them is not in a new one */
        }
    }
    imgstore_store__packset_free(fresh);
    /* a pack a push reused an object of since the listing (packset.c) may hold what that
     * push references: with --prune, keep them all, and leave it to the next gc */
    for (size_t i = 0; run->reachable && i < old_packs->count; i++) {
        if (!name_has(new_packs, old_packs->items[i]) && /* not the one we just wrote */
            imgstore_store__packset_changed(run->old, i))
            return;
    }
    for (size_t i = 0; i < old_packs->count; i++) {
        if (name_has(new_packs, old_packs->items[i]))
            continue; /* the same objects, written again under the same name */
        if (join(path, sizeof(path), pack_dir, old_packs->items[i], ".idx"))
            unlink(path); /* .idx first: without it no reader opens the pack */
        if (join(path, sizeof(path), pack_dir, old_packs->items[i], ".pack"))
            unlink(path);
        run->stats->packs_removed++;
    }
}

typedef struct {
    const oid_list *doomed;
    const char *objects_dir;
    size_t first, step;
} unlink_share;

static void *unlink_main(void *payload)
{
    const unlink_share *share = payload;
    char path[4200], hex[GIT_OID_HEXSZ + 1];

    for (size_t i = share->first; i < share->doomed->count; i += share->step) {
        git_oid_tostr(hex, sizeof(hex), &share->doomed->oids[i]);
        snprintf(path, sizeof(path), "%s/%.2s/%s", share->objects_dir, hex, hex + 2);
        unlink(path); /* one that stays is harmless: the next gc removes it */
    }
    return NULL;
}

/* Remove the loose copies of objects a fresh look at objects/pack finds. unlink(2) waits on
 * the file system's journal, ~1 ms a file on this machine's disk (most of a gc's time), and
 * waits overlap: UNLINK_THREADS threads remove 4,000 files 5x faster than one. */
#define UNLINK_THREADS 4

static int remove_loose(gc_run *run)
{
    git_odb_backend *packs = NULL;
    git_odb *fresh = NULL;
    oid_list doomed = {0};
    unlink_share shares[UNLINK_THREADS];
    pthread_t threads[UNLINK_THREADS];
    size_t started = 0;
    int rc, err = 0;

    if ((rc = git_odb_new(&fresh)) < 0 ||
        (rc = git_odb_backend_pack(&packs, run->store->objects_dir)) < 0 ||
        (rc = git_odb_add_backend(fresh, packs, 1)) < 0) {
        if (packs)
            packs->free(packs);
        git_odb_free(fresh);
        return imgstore_store__git_error(rc, "cannot read the packs of %s",
                                         run->store->objects_dir);
    }
    for (size_t i = 0; i < run->unlink_list.count && !err; i++) {
        const git_oid *oid = &run->unlink_list.oids[i];

        if (git_odb_exists_ext(fresh, oid, GIT_ODB_LOOKUP_NO_REFRESH))
            err = oid_push(&doomed, oid); /* else not found packed: it stays loose */
    }
    git_odb_free(fresh);
    for (size_t t = 0; t < UNLINK_THREADS; t++)
        shares[t] = (unlink_share){&doomed, run->store->objects_dir, t, UNLINK_THREADS};
    for (; started < UNLINK_THREADS && !err; started++) {
        if (pthread_create(&threads[started], NULL, unlink_main, &shares[started]) != 0)
            break;
    }
    for (size_t t = started; t < UNLINK_THREADS && !err; t++)
        unlink_main(&shares[t]); /* the shares of threads that could not start */
    for (size_t t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    free(doomed.oids);
    return err;
}

int imgstore_store_gc(imgstore_gc_stats *out, imgstore_store *store, const imgstore_gc_opts *opts)
{
    gc_run run = {0};
    name_list old_packs = {0}, new_packs = {0}, now_packs = {0};
    oid_list loose = {0};
    imgstore_store__oidset *reachable = NULL, *hints = NULL;
    git_odb *pb_odb = NULL;
    char lock_path[4200], tmp_dir[4200], pack_dir[4200];
    uint64_t loose_bytes = 0, pack_bytes = 0;
    bool combine;
    int lock_fd = -1, err = 0, rc;

    if (!out || !store)
        return imgstore_error_set(IMGSTORE_EINVALID, "gc: no store");
    memset(out, 0, sizeof(*out));
    run.store = store;
    run.stats = out;
    snprintf(lock_path, sizeof(lock_path), "%s/imgstore-gc.lock", store->path);
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/imgstore-gc.tmp", store->path);
    snprintf(pack_dir, sizeof(pack_dir), "%s/pack", store->objects_dir);
    if ((lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot open %s: %s", lock_path, strerror(errno));
    if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        close(lock_fd);
        if (errno != EWOULDBLOCK)
            return imgstore_error_set(IMGSTORE_ERROR, "cannot lock %s: %s", lock_path,
                                      strerror(errno));
        out->skipped = true; /* another gc is at work: it packs what we would have */
        return 0;
    }
    if (mkdir(pack_dir, 0755) < 0 && errno != EEXIST) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", pack_dir, strerror(errno));
        goto done;
    }
    if (opts && opts->prune) {
        run.expire_before =
            opts->prune_expire > 0 ? (int64_t)time(NULL) - opts->prune_expire : INT64_MAX;
        if ((err = imgstore_store__reachable(&reachable, store->repo)) < 0 ||
            (err = imgstore_store__prune_unreachable(&out->objects_pruned, &out->bytes_pruned,
                                                     store, reachable, run.expire_before)) < 0)
            goto done;
        run.reachable = reachable;
    }
    if ((err = staging_reset(tmp_dir)) < 0 ||
        (err = scan_loose(&loose, &out->loose_before, &loose_bytes, store->objects_dir)) < 0 ||
        (err = scan_packs(&old_packs, &pack_bytes, pack_dir, true)) < 0 ||
        (err = imgstore_store__packset_open(
             &run.old, pack_dir, (const char *const *)old_packs.items, old_packs.count)) < 0)
        goto done;
    run.packs = imgstore_store__packset_odb(run.old);
    if (loose.count)
        qsort(loose.oids, loose.count, sizeof(*loose.oids), oid_cmp);
    run.loose_listed = &loose;
    out->bytes_before = loose_bytes + pack_bytes;
    /* --all: everything into (at most) two packs, unless that is what there is already */
    combine = (opts && opts->all) ? old_packs.count > 2 || (old_packs.count > 0 && loose.count)
                                  : old_packs.count + 2 > PACKS_MAX;
    /* --prune: also when a pack holds what no ref reaches (after a cut, store/cut.c) */
    if (reachable && !combine && (err = packs_hold_unreachable(&combine, &run)) < 0)
        goto done;
    if (loose.count == 0 && !combine) {
        out->loose_after = out->loose_before;
        out->bytes_after = out->bytes_before;
        out->packs = old_packs.count;
        goto done;
    }
    if (reachable &&
        (rc = git_odb_backend_loose(&run.loose, store->objects_dir, -1, 1, 0, 0)) < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot write loose objects", store->path);
        goto done;
    }
    if ((rc = git_repository_open_ext(&run.pb_repo, store->path, GIT_REPOSITORY_OPEN_NO_SEARCH,
                                      NULL)) < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot start packing", store->path);
        goto done;
    }
    /* The packbuilder reads every tree it packs, and trees stay in a repository's object
     * cache (repo.c keeps trees up to 16 MiB there): on the store's own handle a gc of 2,000
     * versions left ~75 MB of trees cached for the handle's life. Its own repository, freed
     * below, takes them away with it; reads still go through the bounded loose reader. */
    if ((err = imgstore_store__odb_open(&pb_odb, store)) < 0)
        goto done;
    git_repository_set_odb(run.pb_repo, pb_odb);
    if ((rc = git_packbuilder_new(&run.pb, run.pb_repo)) < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot start packing", store->path);
        goto done;
    }
    git_packbuilder_set_threads(run.pb, 0); /* one per core */
    /* The packbuilder looks for a delta among objects of one type and one path (the hash of
     * its last characters), then of near sizes: without paths it compared each tree with
     * trees of its size only, and the successive versions of a shard or an index segment
     * rarely met (docs/format.md, "Packing"). The paths: --prune's walk; when combining, a
     * walk of everything (the combine reads every object anyway); else the commits and trees
     * not yet packed. A store whose walk fails is packed without them. */
    if (reachable)
        run.hints = reachable;
    else if ((combine
                  ? imgstore_store__reachable(&hints, run.pb_repo)
                  : imgstore_store__loose_paths(&hints, run.pb_repo, loose.oids, loose.count)) == 0)
        run.hints = hints;
    else
        imgstore_error_clear();
    if ((err = imgstore_store__pack_new(&run.bulk, tmp_dir)) < 0 ||
        (err = pack_loose(&run, &loose)) < 0 || (combine && (err = pack_old(&run)) < 0) ||
        (err = insert_pending(&run)) < 0 || (err = write_packs(&run, &new_packs, tmp_dir)) < 0)
        goto done;
    for (size_t i = 0; i < new_packs.count && !err; i++)
        err = install_pack(tmp_dir, pack_dir, new_packs.items[i]);
    if (err < 0)
        goto done;
    if (sync_dir(pack_dir) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot sync %s: %s", pack_dir, strerror(errno));
        goto done;
    }
    out->packs_written = new_packs.count;
    if (combine)
        remove_old_packs(&run, pack_dir, &old_packs, &new_packs);
    if ((err = remove_loose(&run)) < 0)
        goto done;
    loose_bytes = pack_bytes = 0;
    if ((err = scan_loose(NULL, &out->loose_after, &loose_bytes, store->objects_dir)) < 0 ||
        (err = scan_packs(&now_packs, &pack_bytes, pack_dir, false)) < 0)
        goto done;
    out->bytes_after = loose_bytes + pack_bytes;
    out->packs = now_packs.count;
done:
    if (run.loose)
        run.loose->free(run.loose);
    imgstore_store__packset_free(run.old);
    imgstore_store__oidset_free(reachable);
    imgstore_store__oidset_free(hints);
    imgstore_store__pack_free(run.bulk);
    git_packbuilder_free(run.pb);
    git_repository_free(run.pb_repo);
    git_odb_free(pb_odb);
    free(run.unlink_list.oids);
    free(run.pending);
    free(run.old_objects);
    free(loose.oids);
    name_list_free(&old_packs);
    name_list_free(&new_packs);
    name_list_free(&now_packs);
    staging_reset(tmp_dir);
    rmdir(tmp_dir);
    close(lock_fd); /* releases the gc lock */
    return err;
}

/* ---- when to run ---------------------------------------------------------------------- */

static long gc_threshold(imgstore_store *store)
{
    const char *env = getenv("IMGSTORE_GC_AUTO");
    git_config *config = NULL;
    int32_t value = GC_AUTO_DEFAULT;

    if (env && *env) {
        char *end;
        long parsed = strtol(env, &end, 10);

        return *end == '\0' ? parsed : GC_AUTO_DEFAULT;
    }
    if (git_repository_config_snapshot(&config, store->repo) == 0 &&
        git_config_get_int32(&value, config, "gc.auto") < 0)
        value = GC_AUTO_DEFAULT;
    git_config_free(config);
    git_error_clear();
    return value;
}

int imgstore_store_gc_due(bool *out, imgstore_store *store)
{
    long threshold = gc_threshold(store);
    uint64_t count = 0;
    int err;

    *out = false;
    if (threshold <= 0)
        return 0; /* 0 turns automatic packing off, as git's gc.auto does */
    if (threshold < AUTO_EXACT) {
        err = scan_loose(NULL, &count, NULL, store->objects_dir);
        *out = err == 0 && count > (uint64_t)threshold;
        return err;
    }
    /* git's estimate: one fan-out directory of 256 holds about 1/256 of the loose objects */
    if ((err = scan_fanout(NULL, &count, NULL, store->objects_dir, 0x17)) < 0)
        return err;
    *out = count > ((uint64_t)threshold + 255) / 256;
    return 0;
}

void imgstore_store_set_auto_gc(imgstore_store *store, bool enabled)
{
    store->no_auto_gc = !enabled;
}

void imgstore_store__gc_after_commit(imgstore_store *store)
{
    imgstore_gc_stats stats;
    bool due = false;

    /* the commit has landed; a gc that cannot run now is tried again after the next one */
    if (!store->no_auto_gc && imgstore_store_gc_due(&due, store) == 0 && due)
        imgstore_store_gc(&stats, store, NULL);
    imgstore_error_clear();
}
