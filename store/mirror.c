/*
 * A read replica's sync (issue #12): fetch the primary store's refs/heads/main with libgit2
 * into a quarantine ref, refs/imgstore-mirror/main, check everything new
 * (imgstore_store_verify_range, mirror_verify.c), and only then move the replica's own
 * refs/heads/main to it, by compare-and-swap under the writers' lock, durably. Readers go by
 * refs/heads/main only, so what was fetched but not yet checked, or refused, is never
 * served: it stays behind the quarantine ref as unreferenced objects (gc packs them).
 *
 * The transport is not trusted: everything is checked against the policy chain the replica
 * pinned, so a host key or certificate proves nothing the signatures do not. libgit2 1.5 does
 * not check ssh host keys itself; this file accepts them for that reason (docs/security.md).
 *
 * Not here: scheduling syncs and reporting their status (server/mirror.c).
 */
#include "store/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUARANTINE_REF "refs/imgstore-mirror/main"
#define PACKS_MAX      50
#define CHUNK_PACK_MIN                                                                             \
    (64 * 1024) /* blobs this large go to the chunk pack, as in gc.c */ /* every fetch adds a      \
                                                                           pack; past this many,   \
                                                                           combine them (gc.c) */

/* ssh: a key from the agent, as git would offer it. */
static int credentials(git_credential **out, const char *url, const char *username_from_url,
                       unsigned int allowed_types, void *payload)
{
    (void)url;
    (void)payload;
    if (allowed_types & GIT_CREDENTIAL_SSH_KEY)
        return git_credential_ssh_key_from_agent(out,
                                                 username_from_url ? username_from_url : "git");
    if (allowed_types & GIT_CREDENTIAL_USERNAME)
        return git_credential_username_new(out, username_from_url ? username_from_url : "git");
    return GIT_PASSTHROUGH;
}

/* TLS certificates are checked by libgit2 as usual; ssh host keys it cannot check (1.5), and
 * the replica trusts none of the bytes it fetches without their signatures anyway. */
static int certificate_check(git_cert *cert, int valid, const char *host, void *payload)
{
    (void)host;
    (void)payload;
    if (cert->cert_type == GIT_CERT_HOSTKEY_LIBSSH2)
        return 0;
    return valid ? 0 : GIT_PASSTHROUGH;
}

static int open_or_create(imgstore_store **out, const char *path)
{
    git_repository *repo = NULL;
    struct stat st;
    int rc;

    if (stat(path, &st) < 0 && errno == ENOENT) {
        if (git_libgit2_init() < 0)
            return imgstore_store__git_error(-1, "libgit2 init");
        rc = git_repository_init(&repo, path, 1);
        /* HEAD names the branch a clone of the replica checks out */
        if (rc == 0)
            rc = git_repository_set_head(repo, IMGSTORE_STORE_REF);
        git_repository_free(repo);
        git_libgit2_shutdown();
        if (rc < 0)
            return imgstore_store__git_error(rc, "cannot create the replica %s", path);
    }
    return imgstore_store__open_repo(out, path);
}

static int fetch(git_oid *out, imgstore_store *store, const char *url)
{
    git_remote *remote = NULL;
    git_fetch_options fetch_opts;
    char *refspec = "+" IMGSTORE_STORE_REF ":" QUARANTINE_REF;
    git_strarray refspecs = {&refspec, 1};
    int err = 0, rc;

    git_fetch_options_init(&fetch_opts, GIT_FETCH_OPTIONS_VERSION);
    fetch_opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    fetch_opts.update_fetchhead = 0;
    fetch_opts.callbacks.credentials = credentials;
    fetch_opts.callbacks.certificate_check = certificate_check;
    if ((rc = git_remote_create_anonymous(&remote, store->repo, url)) < 0) {
        err = imgstore_store__git_error(rc == GIT_EINVALIDSPEC ? GIT_EINVALID : rc, "primary %s",
                                        url);
        goto done;
    }
    if ((rc = git_remote_fetch(remote, &refspecs, &fetch_opts, "imgstore mirror: fetch")) < 0) {
        err = imgstore_store__git_error(rc, "cannot fetch from the primary %s", url);
        if (err == IMGSTORE_ENOTFOUND || err == IMGSTORE_EINVALID)
            err = imgstore_error_set(IMGSTORE_ERROR, "%s", imgstore_error_last());
        goto done;
    }
    if ((rc = git_reference_name_to_id(out, store->repo, QUARANTINE_REF)) < 0)
        err = imgstore_error_set(IMGSTORE_ERROR, "the primary %s has no %s: not an imgstore store",
                                 url, IMGSTORE_STORE_REF);
done:
    git_remote_free(remote);
    return err;
}

/* ---- a primary on this machine ------------------------------------------------------- */

/*
 * libgit2's local transport builds a pack with its packbuilder, which inflates, searches
 * deltas for and deflates again every object, chunks included: 11 s for a 14 MB store on
 * a loaded 2-core machine. A primary on a path is copied object by object instead, into two
 * packs per sync, split as gc splits them: chunk blobs through the store's own pack writer
 * (pack.c: stored when they do not compress, else zlib level 1, one zlib stream for all),
 * the rest through libgit2's packbuilder, whose deltas store each version of a growing
 * images/<name> tree as a few bytes against the previous one (whole, the 10,000 trees of a
 * 10,000-version history are ~1.9 GB). Loose writes cost a deflateInit and a file each: 23 s
 * for 128 commits, against 1.7 s. Each object is hashed again before it
 * goes in, so a damaged object in the primary is refused here and never lands under its
 * name. Only new commits are walked, and a tree the replica already has is not entered (it
 * is written only after everything under it), so the cost is what is new.
 */
typedef struct {
    git_odb *from, *to;
    const char *url;
    imgstore_store__pack *pack; /* chunk blobs */
    git_packbuilder *pb;        /* everything else: trees as deltas of their predecessors */
    git_oid *added;             /* open addressing set of the ids in `pack`; zero: empty slot */
    size_t added_count, added_cap;
} copier;

static size_t slot_of(const git_oid *id, size_t cap)
{
    size_t h;

    memcpy(&h, id->id, sizeof(h));
    return h & (cap - 1);
}

static bool added(const copier *c, const git_oid *id)
{
    for (size_t i = c->added_cap ? slot_of(id, c->added_cap) : 0; c->added_cap;
         i = (i + 1) & (c->added_cap - 1)) {
        if (git_oid_is_zero(&c->added[i]))
            return false;
        if (git_oid_equal(&c->added[i], id))
            return true;
    }
    return false;
}

static int add(copier *c, const git_oid *id)
{
    if (2 * (c->added_count + 1) > c->added_cap) {
        size_t cap = c->added_cap ? 2 * c->added_cap : 1024;
        git_oid *grown = calloc(cap, sizeof(*grown));

        if (!grown)
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        for (size_t i = 0; i < c->added_cap; i++) {
            if (!git_oid_is_zero(&c->added[i])) {
                size_t j = slot_of(&c->added[i], cap);

                while (!git_oid_is_zero(&grown[j]))
                    j = (j + 1) & (cap - 1);
                grown[j] = c->added[i];
            }
        }
        free(c->added);
        c->added = grown;
        c->added_cap = cap;
    }
    size_t i = slot_of(id, c->added_cap);

    while (!git_oid_is_zero(&c->added[i]))
        i = (i + 1) & (c->added_cap - 1);
    c->added[i] = *id;
    c->added_count++;
    return 0;
}

static bool have(const copier *c, const git_oid *id)
{
    return added(c, id) || git_odb_exists(c->to, id);
}

static int copy_object(copier *c, const git_oid *id, git_object_t expect)
{
    git_odb_object *object = NULL;
    git_oid check;
    const uint8_t *data;
    size_t len;
    char hex[GIT_OID_HEXSZ + 1];
    int err = 0, rc;

    git_oid_tostr(hex, sizeof(hex), id);
    if ((rc = git_odb_read(&object, c->from, id)) < 0)
        return imgstore_store__git_error(rc, "the primary %s: object %s", c->url, hex);
    data = git_odb_object_data(object);
    len = git_odb_object_size(object);
    if (git_odb_object_type(object) != expect)
        err = imgstore_error_set(IMGSTORE_EVERIFY, "the primary %s: object %s is a %s, not a %s",
                                 c->url, hex, git_object_type2string(git_odb_object_type(object)),
                                 git_object_type2string(expect));
    else if (git_odb_hash(&check, data, len, expect) < 0 || !git_oid_equal(&check, id))
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "the primary %s: object %s does not hash to its id: damaged",
                                 c->url, hex);
    else if (expect == GIT_OBJECT_BLOB && len >= CHUNK_PACK_MIN)
        err = imgstore_store__pack_add(c->pack, id, expect, data, len,
                                       imgstore_store__worth_compressing(data, len));
    else if ((rc = git_packbuilder_insert(c->pb, id, NULL)) < 0)
        err = imgstore_store__git_error(rc, "cannot pack object %s", hex);
    if (err == 0)
        err = add(c, id);
    git_odb_object_free(object);
    return err;
}

/* Copy the tree `id` and what under it the replica lacks. `was` (may be NULL) is the same
 * directory in the parent commit: its entries with the same id are skipped without asking
 * the object database, so a commit that adds one version to a directory of a million costs
 * one pass over two parsed trees, not a million lookups. */
static int copy_tree(copier *c, git_repository *primary, const git_oid *id, const git_oid *was)
{
    git_tree *tree = NULL, *old = NULL;
    int err = 0, rc;

    if ((was && git_oid_equal(id, was)) || have(c, id))
        return 0;
    if ((rc = git_tree_lookup(&tree, primary, id)) < 0)
        return imgstore_store__git_error(rc, "the primary %s: tree", c->url);
    if (was && git_tree_lookup(&old, primary, was) < 0)
        old = NULL;
    for (size_t i = 0; i < git_tree_entrycount(tree) && err == 0; i++) {
        const git_tree_entry *entry = git_tree_entry_byindex(tree, i);
        const git_tree_entry *before =
            old ? git_tree_entry_byname(old, git_tree_entry_name(entry)) : NULL;

        if (before && git_oid_equal(git_tree_entry_id(before), git_tree_entry_id(entry)))
            continue;
        if (git_tree_entry_type(entry) == GIT_OBJECT_TREE)
            err = copy_tree(c, primary, git_tree_entry_id(entry),
                            before && git_tree_entry_type(before) == GIT_OBJECT_TREE
                                ? git_tree_entry_id(before)
                                : NULL);
        else if (git_tree_entry_type(entry) == GIT_OBJECT_BLOB &&
                 !have(c, git_tree_entry_id(entry)))
            err = copy_object(c, git_tree_entry_id(entry), GIT_OBJECT_BLOB);
    }
    git_tree_free(old);
    git_tree_free(tree);
    return err ? err : copy_object(c, id, GIT_OBJECT_TREE);
}

/* <store>/imgstore-mirror.tmp, emptied: what a sync killed mid-copy left is never used. */
static int staging(char *dir, size_t cap, imgstore_store *store)
{
    struct dirent *entry;
    DIR *d;

    snprintf(dir, cap, "%s/imgstore-mirror.tmp", store->path);
    if ((d = opendir(dir))) {
        while ((entry = readdir(d))) {
            char path[4600];

            if (entry->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
            unlink(path);
        }
        closedir(d);
        return 0;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", dir, strerror(errno));
    return 0;
}

/* The finished pack into objects/pack, .pack first and .idx last (readers find packs by
 * their index), as gc installs its own. */
static int install(const char *name, const char *tmp_dir, imgstore_store *store)
{
    static const char *const exts[] = {".pack", ".idx"};
    char from[4400], to[4400];
    int fd;

    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof(from), "%s/pack-%s%s", tmp_dir, name, exts[i]);
        snprintf(to, sizeof(to), "%s/pack/pack-%s%s", store->objects_dir, name, exts[i]);
        if (rename(from, to) < 0)
            return imgstore_error_set(IMGSTORE_ERROR, "cannot move %s into place: %s", from,
                                      strerror(errno));
    }
    snprintf(to, sizeof(to), "%s/pack", store->objects_dir);
    if ((fd = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

static int fetch_local(git_oid *out, imgstore_store *store, const char *url, const char *path)
{
    git_repository *primary = NULL;
    git_reference *moved = NULL;
    copier c = {NULL, NULL, url, NULL, NULL, NULL, 0, 0};
    char tmp_dir[4200];
    git_oid *pending = NULL, at;
    size_t count = 0, cap = 0;
    int err = 0, rc;

    if ((rc = git_repository_open_ext(&primary, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL)) < 0 ||
        (rc = git_repository_odb(&c.from, primary)) < 0 ||
        (rc = git_repository_odb(&c.to, store->repo)) < 0) {
        err = imgstore_store__git_error(rc, "cannot open the primary %s", url);
        goto done;
    }
    if ((rc = git_reference_name_to_id(out, primary, IMGSTORE_STORE_REF)) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "the primary %s has no %s: not an imgstore store",
                                 url, IMGSTORE_STORE_REF);
        goto done;
    }
    if ((err = staging(tmp_dir, sizeof(tmp_dir), store)) < 0 ||
        (err = imgstore_store__pack_new(&c.pack, tmp_dir)) < 0)
        goto done;
    if ((rc = git_packbuilder_new(&c.pb, primary)) < 0) {
        err = imgstore_store__git_error(rc, "cannot start a pack");
        goto done;
    }
    git_packbuilder_set_threads(c.pb, 0); /* one per core, as gc */
    /* the new commits, newest first, down to one the replica has (or the first) */
    at = *out;
    while (!git_odb_exists(c.to, &at)) {
        git_commit *commit = NULL;
        unsigned parents;

        if (count == cap) {
            git_oid *grown = realloc(pending, (cap = cap ? cap * 2 : 64) * sizeof(*grown));

            if (!grown) {
                err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
                goto done;
            }
            pending = grown;
        }
        pending[count++] = at;
        if ((rc = git_commit_lookup(&commit, primary, &at)) < 0) {
            err = imgstore_store__git_error(rc, "the primary %s: commit", url);
            goto done;
        }
        parents = git_commit_parentcount(commit);
        if (parents > 0)
            git_oid_cpy(&at, git_commit_parent_id(commit, 0));
        git_commit_free(commit);
        if (parents != 1)
            break; /* the first commit, or a merge: verify_range refuses the latter */
    }
    for (size_t i = count; i-- > 0 && err == 0;) {
        git_commit *commit = NULL, *parent = NULL;

        if ((rc = git_commit_lookup(&commit, primary, &pending[i])) < 0) {
            err = imgstore_store__git_error(rc, "the primary %s: commit", url);
            break;
        }
        if (git_commit_parentcount(commit) == 1 && git_commit_parent(&parent, commit, 0) == 0)
            err = copy_tree(&c, primary, git_commit_tree_id(commit), git_commit_tree_id(parent));
        else
            err = copy_tree(&c, primary, git_commit_tree_id(commit), NULL);
        git_commit_free(parent);
        git_commit_free(commit);
        if (err == 0)
            err = copy_object(&c, &pending[i], GIT_OBJECT_COMMIT);
    }
    if (err == 0 && imgstore_store__pack_count(c.pack) > 0) {
        char name[GIT_OID_HEXSZ + 1];

        if ((err = imgstore_store__pack_finish(c.pack, name)) == 0)
            err = install(name, tmp_dir, store);
    }
    if (err == 0 && git_packbuilder_object_count(c.pb) > 0) {
        if ((rc = git_packbuilder_write(c.pb, tmp_dir, 0444, NULL, NULL)) < 0)
            err = imgstore_store__git_error(rc, "cannot write a pack in %s", tmp_dir);
        else
            err = install(git_packbuilder_name(c.pb), tmp_dir, store);
    }
    if (err == 0)
        git_odb_refresh(c.to);
    if (err == 0 && (rc = git_reference_create(&moved, store->repo, QUARANTINE_REF, out, 1,
                                               "imgstore mirror: copied")) < 0)
        err = imgstore_store__git_error(rc, "cannot write %s", QUARANTINE_REF);
done:
    git_packbuilder_free(c.pb);
    imgstore_store__pack_free(c.pack);
    free(c.added);
    free(pending);
    git_reference_free(moved);
    git_odb_free(c.to);
    git_odb_free(c.from);
    git_repository_free(primary);
    return err;
}

/* A path or file:// URL names a store on this machine; anything else goes to libgit2's
 * transports (git://, ssh://, https://, host:path). */
static const char *local_path(const char *url)
{
    if (strncmp(url, "file://", 7) == 0)
        return url + 7;
    if (strstr(url, "://"))
        return NULL;
    if (url[0] == '/' || url[0] == '.' || !strchr(url, ':'))
        return url;
    return NULL;
}

/* One sync at a time per replica: a second one (another server on the same store) waits
 * for nothing and says so. */
static int lock_sync(int *out, imgstore_store *store)
{
    char path[4200];
    int fd;

    *out = -1;
    snprintf(path, sizeof(path), "%s/imgstore-mirror.lock", store->path);
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return imgstore_error_set(IMGSTORE_ELOCKED, "%s: another sync of this replica is running",
                                  store->path);
    }
    *out = fd;
    return 0;
}

/* Move refs/heads/main from `from` (NULL: absent) to `to`, as a commit would. */
static int advance(imgstore_store *store, const git_oid *from, const git_oid *to)
{
    git_reference *moved = NULL;
    int lock_fd = -1, err, rc;

    if ((err = imgstore_store__lock(&lock_fd, store)) < 0)
        return err;
    if ((err = imgstore_store__sync(store)) < 0)
        goto done;
    rc = from ? git_reference_create_matching(&moved, store->repo, IMGSTORE_STORE_REF, to, 1, from,
                                              "imgstore mirror: verified")
              : git_reference_create(&moved, store->repo, IMGSTORE_STORE_REF, to, 0,
                                     "imgstore mirror: verified");
    if (rc == GIT_EMODIFIED || rc == GIT_EEXISTS) {
        err = imgstore_error_set(IMGSTORE_ELOCKED,
                                 "%s: %s moved during the sync (a write to a replica?); the next "
                                 "sync checks from there",
                                 store->path, IMGSTORE_STORE_REF);
        goto done;
    }
    if (rc < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot move %s", store->path, IMGSTORE_STORE_REF);
        goto done;
    }
    err = imgstore_store__sync(store);
done:
    git_reference_free(moved);
    close(lock_fd);
    return err;
}

/*
 * Each sync brings a pack or two (fetched, or copied from a path), and a replica writes no
 * loose objects, so the gc that packs a primary past gc.auto never runs on it: past
 * PACKS_MAX packs one gc combines them (store/gc.c). Best effort: a failure leaves the packs
 * as they are, all readable.
 */
static void combine_packs(imgstore_store *store)
{
    char dir[4200];
    struct dirent *entry;
    imgstore_gc_stats stats;
    size_t packs = 0;
    DIR *d;

    snprintf(dir, sizeof(dir), "%s/pack", store->objects_dir);
    if (!(d = opendir(dir)))
        return;
    while ((entry = readdir(d))) {
        size_t len = strlen(entry->d_name);

        packs += len > 4 && strcmp(entry->d_name + len - 4, ".idx") == 0;
    }
    closedir(d);
    if (packs > PACKS_MAX)
        imgstore_store_gc(&stats, store, &(imgstore_gc_opts){.all = true});
    imgstore_error_clear();
}

int imgstore_store_mirror_sync(imgstore_mirror_stats *out, const char *repo_path,
                               const imgstore_mirror_opts *opts)
{
    imgstore_mirror_stats stats;
    imgstore_store *store = NULL;
    git_oid from, to;
    bool have_from;
    int sync_fd = -1, err;
    char to_hex[GIT_OID_HEXSZ + 1], from_hex[GIT_OID_HEXSZ + 1];

    memset(&stats, 0, sizeof(stats));
    if (!repo_path || !opts || !opts->url || !*opts->url)
        return imgstore_error_set(IMGSTORE_EINVALID, "mirror: no primary url");
    if (opts->policy_sha256 && strlen(opts->policy_sha256) != 64)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "mirror: the pinned policy sha256 must be 64 hex digits");
    if ((err = open_or_create(&store, repo_path)) < 0 || (err = lock_sync(&sync_fd, store)) < 0)
        goto done;
    have_from = git_reference_name_to_id(&from, store->repo, IMGSTORE_STORE_REF) == 0;
    if (have_from)
        git_oid_tostr(from_hex, sizeof(from_hex), &from);
    snprintf(stats.from, sizeof(stats.from), "%s", have_from ? from_hex : "");
    snprintf(stats.to, sizeof(stats.to), "%s", stats.from);
    if ((err = local_path(opts->url) ? fetch_local(&to, store, opts->url, local_path(opts->url))
                                     : fetch(&to, store, opts->url)) < 0)
        goto done;
    git_oid_tostr(to_hex, sizeof(to_hex), &to);
    if (have_from && git_oid_equal(&from, &to))
        goto done; /* nothing new */
    if ((err = imgstore_store_verify_range(&stats, store, have_from ? from_hex : NULL, to_hex,
                                           opts->policy_sha256)) < 0)
        goto done;
    if ((err = advance(store, have_from ? &from : NULL, &to)) < 0)
        goto done;
    stats.advanced = true;
    {
        /* every policy up to this tip checked out, step by step, since policy 1 was pinned:
         * readers need not walk the chain again (trust_verify.c) */
        git_commit *commit = NULL;
        git_tree *tree = NULL;

        if (git_commit_lookup(&commit, store->repo, &to) == 0 &&
            git_commit_tree(&tree, commit) == 0) {
            git_oid trust = imgstore_store__id_at(tree, "trust");

            if (!git_oid_is_zero(&trust))
                imgstore_store__policy_chain_memo(store, &trust);
        }
        git_tree_free(tree);
        git_commit_free(commit);
    }
    combine_packs(store);
done:
    if (out)
        *out = stats;
    if (sync_fd >= 0)
        close(sync_fd);
    imgstore_store_free(store);
    return err;
}
