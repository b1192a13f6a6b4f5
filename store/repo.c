/*
 * The repository underneath a store: creating and opening it, reading the tip, editing
 * nested trees, and the single commit path every operation goes through.
 *
 * Writers are serialised by an flock on <repo>/imgstore.lock, held only while the new commit
 * is built on the tip and the ref is moved; the kernel drops it when a writer dies, so a
 * killed push never wedges the store. The ref itself still moves by compare-and-swap, so a
 * writer that somehow sees a newer tip (another tool, a second machine on shared storage)
 * rebuilds its commit on it instead of losing the other update.
 *
 * Durability: image objects are written without fsync, then one syncfs() makes every object
 * durable before the ref points at them, and a second one after the ref moves. A crash at
 * any instant leaves the old tip or the new one.
 */
#define _GNU_SOURCE /* syncfs */
#include "store/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <git2/sys/repository.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_WAIT_MS   60000
#define COMMIT_RETRIES 100
#define EMPTY_TREE     "4b825dc642cb6eb9a060e54bf8d69288fbee4904" /* git's, for SHA-1 */
#define RACE_LOST      2 /* commit_once: the ref moved under us; rebuild on the new tip */

static int libgit2_up(void)
{
    static int done;

    if (git_libgit2_init() < 0)
        return imgstore_store__git_error(-1, "libgit2 init");
    if (!done) {
        /* Chunks are checked against their SHA-256 on every read, and small objects by
         * imgstore_store__read_small_blob; libgit2's SHA-1 re-check (SHA1DC, ~340 MiB/s)
         * would only halve read speed. */
        git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
        /* libgit2 caches parsed trees only up to 4 KiB, and images/<name> holds one entry
         * (~37 bytes) per version: past ~100 versions every lookup of one version read,
         * inflated and parsed the whole directory again, so ls of N versions cost N^2
         * (issue #9). Trees up to 16 MiB (~450,000 versions) stay parsed in the cache,
         * which libgit2 bounds as a whole (256 MiB by default). */
        git_libgit2_opts(GIT_OPT_SET_CACHE_OBJECT_LIMIT, GIT_OBJECT_TREE, (size_t)16 << 20);
        /* Packed objects are read through mmap windows of a pack, 1 GiB each and up to
         * 8 GiB mapped by default: pulling a packed 200 MiB image touched all of it and
         * peaked at 220 MiB RSS. Small windows under a small total keep a pull, verify or
         * gc --all of any size within the memory budget (CONVENTIONS section 5); a chunk
         * (at most 4 MiB) spans two windows at most. 64 MiB in all, not 32: the metadata
         * pack of 10,000 versions is ~50 MB, and reading its trees and manifests through
         * four windows remapped them on every row (ls --json: 2.85 s, now 0.44 s). */
        git_libgit2_opts(GIT_OPT_SET_MWINDOW_SIZE, (size_t)8 << 20);
        git_libgit2_opts(GIT_OPT_SET_MWINDOW_MAPPED_LIMIT, (size_t)64 << 20);
        done = 1;
    }
    return 0;
}

static int mkdir_parents(const char *path)
{
    char *copy = strdup(path);
    int err = 0;

    if (!copy)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
            err = imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", copy, strerror(errno));
            break;
        }
        *p = '/';
    }
    free(copy);
    return err;
}

int imgstore_store_default_path(char **out)
{
    const char *repo = getenv("IMGSTORE_REPO");
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    char *path = NULL;

    *out = NULL;
    if (repo && *repo)
        path = imgstore_strfmt("%s", repo);
    else if (xdg && *xdg == '/')
        path = imgstore_strfmt("%s/imgstore/store.git", xdg);
    else if (home && *home)
        path = imgstore_strfmt("%s/.local/share/imgstore/store.git", home);
    else
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "no store path: set IMGSTORE_REPO or HOME, or pass --repo");
    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    *out = path;
    return 0;
}

const char *imgstore_store_path(const imgstore_store *store)
{
    return store->path;
}

void imgstore_store_free(imgstore_store *store)
{
    if (!store)
        return;
    git_repository_free(store->repo);
    free(store->path);
    free(store);
    git_libgit2_shutdown();
}

int imgstore_store__tip_tree(git_tree **out, imgstore_store *store)
{
    git_object *tip = NULL;
    int rc;

    *out = NULL;
    if ((rc = git_revparse_single(&tip, store->repo, IMGSTORE_STORE_REF "^{tree}")) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read %s", store->path, IMGSTORE_STORE_REF);
    *out = (git_tree *)tip;
    return 0;
}

int imgstore_store__open_repo(imgstore_store **out, const char *path)
{
    imgstore_store *store = NULL;
    git_odb *odb = NULL;
    struct stat st;
    int err, rc;

    *out = NULL;
    if ((err = libgit2_up()) < 0)
        return err;
    if (!(store = calloc(1, sizeof(*store))) || !(store->path = strdup(path))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (stat(path, &st) < 0) {
        err = imgstore_error_set(IMGSTORE_ENOTFOUND,
                                 "no store at %s (create one with 'imgstore init')", path);
        goto done;
    }
    if ((rc = git_repository_open_ext(&store->repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL)) <
        0) {
        err = imgstore_store__git_error(rc == GIT_ENOTFOUND ? GIT_EINVALID : rc,
                                        "%s is not a git repository", path);
        goto done;
    }
    snprintf(store->objects_dir, sizeof(store->objects_dir), "%sobjects",
             git_repository_path(store->repo));
    if ((err = imgstore_store__odb_open(&odb, store)) < 0)
        goto done;
    git_repository_set_odb(store->repo, odb);
    /* a replica's tip, when it has one, says its layout; imgstore_store_open insists */
    store->layout = IMGSTORE_STORE__FLAT;
    {
        git_tree *tip = NULL;

        if (imgstore_store__tip_tree(&tip, store) == 0)
            (void)imgstore_store__layout_at(&store->layout, store, tip);
        git_tree_free(tip);
        imgstore_error_clear();
        git_error_clear();
    }
    *out = store;
    store = NULL;
done:
    git_odb_free(odb);
    if (store) {
        git_repository_free(store->repo);
        free(store->path);
        free(store);
    }
    if (err < 0)
        git_libgit2_shutdown();
    return err;
}

int imgstore_store_open(imgstore_store **out, const char *path)
{
    imgstore_store *store = NULL;
    git_tree *tip = NULL;
    int err;

    *out = NULL;
    if ((err = imgstore_store__open_repo(&store, path)) < 0)
        return err;
    if ((err = imgstore_store__tip_tree(&tip, store)) < 0 ||
        !git_tree_entry_byname(tip, IMGSTORE_STORE_MARKER)) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "%s is a git repository but not an imgstore store (no %s on %s)",
                                 path, IMGSTORE_STORE_MARKER, IMGSTORE_STORE_REF);
        goto done;
    }
    /* the format never changes under an open handle: read once, here */
    if ((err = imgstore_store__layout_at(&store->layout, store, tip)) < 0) {
        err =
            imgstore_error_wrap(err == IMGSTORE_ENOTFOUND ? IMGSTORE_EINVALID : err, "%s: ", path);
        goto done;
    }
    *out = store;
    store = NULL;
done:
    git_tree_free(tip);
    imgstore_store_free(store);
    return err;
}

int imgstore_store__commit_create(git_oid *out, imgstore_store *store, git_repository *repo,
                                  const git_signature *sig, const char *message,
                                  const git_tree *tree, const git_commit *parent,
                                  const imgstore_sign_key *key)
{
    git_buf content = {0};
    char *armored = NULL;
    size_t armored_len;
    int err = 0, rc;

    (void)store;
    if (!key) {
        rc = git_commit_create(out, repo, NULL, sig, sig, NULL, message, tree, parent ? 1 : 0,
                               parent ? &parent : NULL);
        return rc < 0 ? imgstore_store__git_error(rc, "cannot write the commit") : 0;
    }
    /* git signs the commit object without its gpgsig header, which is what this buffer is */
    if ((rc = git_commit_create_buffer(&content, repo, sig, sig, NULL, message, tree,
                                       parent ? 1 : 0, parent ? &parent : NULL)) < 0) {
        err = imgstore_store__git_error(rc, "cannot build the commit");
        goto done;
    }
    if ((err = imgstore_sign_sshsig(&armored, key, "git", content.ptr, content.size)) < 0)
        goto done;
    /* libgit2 indents the header's lines and ends it with a newline of its own */
    armored_len = strlen(armored);
    while (armored_len > 0 && armored[armored_len - 1] == '\n')
        armored[--armored_len] = '\0';
    if ((rc = git_commit_create_with_signature(out, repo, content.ptr, armored, "gpgsig")) < 0)
        err = imgstore_store__git_error(rc, "cannot write the signed commit");
done:
    free(armored);
    git_buf_dispose(&content);
    return err;
}

/* The first commit: the marker, and with a key, trust policy 1 naming that key in every
 * role, signed by it (and the commit signed too). */
static int init_first_commit(git_repository *repo, const char *path, const imgstore_sign_key *key,
                             const char *actor, imgstore_store__layout layout)
{
    const char *marker_json = imgstore_store__marker_bytes(layout);
    imgstore_policy policy;
    imgstore_sign_pubkey pub;
    char sig_name[IMGSTORE_STORE__SIG_NAME_MAX], *key_line = NULL, *policy_bytes = NULL;
    char *armored = NULL;
    size_t policy_len = 0;
    git_oid blob, tree_oid, commit, ref_target;
    git_treebuilder *bld = NULL, *trust = NULL, *sigs = NULL;
    git_tree *tree = NULL;
    git_signature *sig = NULL;
    git_reference *ref = NULL;
    unsigned char nonce[16];
    char nonce_hex[33], message[128];
    int err = 0, rc;

    if ((rc = git_blob_create_from_buffer(&blob, repo, marker_json, strlen(marker_json))) < 0 ||
        (rc = git_treebuilder_new(&bld, repo, NULL)) < 0 ||
        (rc = git_treebuilder_insert(NULL, bld, IMGSTORE_STORE_MARKER, &blob, GIT_FILEMODE_BLOB)) <
            0)
        goto git_failed;
    if (key) {
        git_oid policy_oid, sig_oid, sigs_oid, trust_oid;

        imgstore_sign_key_public(&pub, key);
        imgstore_store__sig_file_name(sig_name, &pub);
        if ((err = imgstore_store__policy_first(&policy, &pub, &key_line)) < 0 ||
            (err = imgstore_schema_policy_encode(&policy_bytes, &policy_len, &policy)) < 0 ||
            (err = imgstore_sign_sshsig(&armored, key, IMGSTORE_SIGN_NAMESPACE, policy_bytes,
                                        policy_len)) < 0)
            goto done;
        if ((rc = git_blob_create_from_buffer(&policy_oid, repo, policy_bytes, policy_len)) < 0 ||
            (rc = git_blob_create_from_buffer(&sig_oid, repo, armored, strlen(armored))) < 0 ||
            (rc = git_treebuilder_new(&sigs, repo, NULL)) < 0 ||
            (rc = git_treebuilder_insert(NULL, sigs, sig_name, &sig_oid, GIT_FILEMODE_BLOB)) < 0 ||
            (rc = git_treebuilder_write(&sigs_oid, sigs)) < 0 ||
            (rc = git_treebuilder_new(&trust, repo, NULL)) < 0 ||
            (rc = git_treebuilder_insert(NULL, trust, "policy.json", &policy_oid,
                                         GIT_FILEMODE_BLOB)) < 0 ||
            (rc = git_treebuilder_insert(NULL, trust, "signatures", &sigs_oid, GIT_FILEMODE_TREE)) <
                0 ||
            (rc = git_treebuilder_write(&trust_oid, trust)) < 0 ||
            (rc = git_treebuilder_insert(NULL, bld, "trust", &trust_oid, GIT_FILEMODE_TREE)) < 0)
            goto git_failed;
    }
    if ((rc = git_treebuilder_write(&tree_oid, bld)) < 0 ||
        (rc = git_tree_lookup(&tree, repo, &tree_oid)) < 0)
        goto git_failed;
    /* A random nonce makes the first commit, and so the store id that clients remember
     * channel sequences by, unique even for stores made by one key in the same second. */
    if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce)) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot read random bytes");
        goto done;
    }
    for (size_t i = 0; i < sizeof(nonce); i++)
        snprintf(nonce_hex + 2 * i, 3, "%02x", nonce[i]);
    snprintf(message, sizeof(message), "init imgstore store\n\nstore-id: %s\n", nonce_hex);
    if ((err = imgstore_store__actor_signature(&sig, actor ? actor : "imgstore")) < 0 ||
        (err = imgstore_store__commit_create(&commit, NULL, repo, sig, message, tree, NULL, key)) <
            0)
        goto done;
    git_oid_cpy(&ref_target, &commit);
    if ((rc = git_reference_create(&ref, repo, IMGSTORE_STORE_REF, &ref_target, 0,
                                   "init imgstore store")) < 0)
        goto git_failed;
    goto done;
git_failed:
    err = imgstore_store__git_error(rc, "%s: cannot write the first commit", path);
done:
    git_reference_free(ref);
    git_signature_free(sig);
    git_tree_free(tree);
    git_treebuilder_free(trust);
    git_treebuilder_free(sigs);
    git_treebuilder_free(bld);
    free(armored);
    free(policy_bytes);
    free(key_line);
    return err;
}

static int store_create(imgstore_store **out, const char *path, const imgstore_sign_key *key,
                        const char *actor, imgstore_store__layout layout)
{
    git_repository_init_options opts;
    git_repository *repo = NULL;
    struct stat st;
    int err, rc;

    *out = NULL;
    git_repository_init_options_init(&opts, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    if (stat(path, &st) == 0) {
        if ((err = imgstore_store_open(out, path)) == 0)
            return 0;
        return imgstore_error_set(IMGSTORE_EEXISTS, "%s exists and is not an imgstore store", path);
    }
    if ((err = libgit2_up()) < 0)
        return err;
    if ((err = mkdir_parents(path)) < 0)
        goto done;
    opts.flags =
        GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
    opts.initial_head = "main";
    opts.description = "imgstore image store\n";
    if ((rc = git_repository_init_ext(&repo, path, &opts)) < 0) {
        err = imgstore_store__git_error(rc, "cannot create a repository at %s", path);
        goto done;
    }
    if ((err = init_first_commit(repo, path, key, actor, layout)) < 0)
        goto done;
    git_repository_free(repo);
    repo = NULL;
    err = imgstore_store_open(out, path);
done:
    git_repository_free(repo);
    git_libgit2_shutdown();
    return err;
}

int imgstore_store_init(imgstore_store **out, const char *path)
{
    return store_create(out, path, NULL, NULL, IMGSTORE_STORE__SHARDED);
}

/* A store made before it had a policy gets policy 1 in a commit of its own. */
static int add_first_policy(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    const imgstore_sign_key *key = ((void **)payload)[1];
    imgstore_store *store = ((void **)payload)[0];
    imgstore_policy *existing = NULL, policy;
    imgstore_sign_pubkey pub;
    imgstore_signers signers = {&key, 1};
    char *key_line = NULL, *bytes = NULL;
    size_t len = 0;
    git_oid blob;
    int err;

    if ((err = imgstore_store__policy_load(&existing, NULL, store, tip)) != IMGSTORE_ENOTFOUND) {
        imgstore_policy_free(existing);
        return err == 0 ? IMGSTORE_STORE_UNCHANGED : err;
    }
    imgstore_sign_key_public(&pub, key);
    if ((err = imgstore_store__policy_first(&policy, &pub, &key_line)) < 0 ||
        (err = imgstore_schema_policy_encode(&bytes, &len, &policy)) < 0 ||
        (err = imgstore_store__write_blob(&blob, store, bytes, len)) < 0)
        goto done;
    git_oid_cpy(tree_out, git_tree_id(tip));
    if ((err = imgstore_store__tree_set(tree_out, store, "trust/policy.json", &blob,
                                        GIT_FILEMODE_BLOB)) < 0 ||
        (err = imgstore_store__signatures_write(tree_out, store, "trust/signatures", &signers,
                                                bytes, len)) < 0)
        goto done;
    if (!(*message_out = imgstore_strfmt("trust policy 1\n")))
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
done:
    free(bytes);
    free(key_line);
    return err;
}

static int init_trusted(imgstore_store **out, const char *path, const imgstore_sign_key *key,
                        const char *actor, imgstore_store__layout layout)
{
    imgstore_store *store = NULL;
    void *payload[2];
    int err;

    *out = NULL;
    if (!key)
        return imgstore_error_set(IMGSTORE_EINVALID, "a new store needs a signing key");
    if ((err = store_create(&store, path, key, actor, layout)) < 0)
        return err;
    payload[0] = store;
    payload[1] = (void *)key;
    err = imgstore_store__commit(store, actor, key, add_first_policy, payload);
    if (err < 0) {
        imgstore_store_free(store);
        return err;
    }
    *out = store;
    return 0;
}

int imgstore_store_init_trusted(imgstore_store **out, const char *path,
                                const imgstore_sign_key *key, const char *actor)
{
    return init_trusted(out, path, key, actor, IMGSTORE_STORE__SHARDED);
}

int imgstore_store__init_layout(imgstore_store **out, const char *path,
                                const imgstore_sign_key *key, const char *actor,
                                imgstore_store__layout layout)
{
    return key ? init_trusted(out, path, key, actor, layout)
               : store_create(out, path, NULL, actor, layout);
}

int imgstore_store_tip_id(char out[41], imgstore_store *store)
{
    char path[4200];
    struct stat st;
    bool have_stat;
    git_oid tip;
    int rc;

    /* A server asks this on every request (it keys its answer cache): while the loose ref
     * file is the same file, unchanged, the tip is the one read last. Every writer replaces
     * the file by rename, so a move always changes its inode or times. The stat comes before
     * the read, so a move in between is seen at the next call. */
    snprintf(path, sizeof(path), "%s/%s", store->path, IMGSTORE_STORE_REF);
    have_stat = stat(path, &st) == 0;
    if (have_stat && store->tip_cached && st.st_ino == store->tip_stat.st_ino &&
        st.st_size == store->tip_stat.st_size &&
        st.st_mtim.tv_sec == store->tip_stat.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == store->tip_stat.st_mtim.tv_nsec &&
        st.st_ctim.tv_sec == store->tip_stat.st_ctim.tv_sec &&
        st.st_ctim.tv_nsec == store->tip_stat.st_ctim.tv_nsec) {
        git_oid_tostr(out, 41, &store->tip_oid);
        return 0;
    }
    if ((rc = git_reference_name_to_id(&tip, store->repo, IMGSTORE_STORE_REF)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the tip", store->path);
    store->tip_cached = have_stat; /* packed refs (after git pack-refs): read every time */
    store->tip_stat = st;
    git_oid_cpy(&store->tip_oid, &tip);
    git_oid_tostr(out, 41, &tip);
    return 0;
}

/* A root that is a cut (cut.c) is not the first commit: it records the store's id. */
static int cut_store_id(char out[41], imgstore_store *store, const git_oid *root)
{
    imgstore_store__cut_record record;
    git_commit *commit = NULL;
    int rc, err;

    if ((rc = git_commit_lookup(&commit, store->repo, root)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the first commit", store->path);
    if ((err = imgstore_store__cut_read(&record, commit)) == 0)
        memcpy(out, record.store_id, 41);
    git_commit_free(commit);
    return err == IMGSTORE_ENOTFOUND ? 0 : err;
}

int imgstore_store_id(char out[41], imgstore_store *store)
{
    git_revwalk *walk = NULL;
    git_oid oid;
    int rc;

    if ((rc = git_revwalk_new(&walk, store->repo)) < 0 ||
        (rc = git_revwalk_push_ref(walk, IMGSTORE_STORE_REF)) < 0)
        goto done;
    git_revwalk_simplify_first_parent(walk);
    git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL | GIT_SORT_REVERSE);
    rc = git_revwalk_next(&oid, walk);
done:
    git_revwalk_free(walk);
    if (rc < 0)
        return imgstore_store__git_error(rc, "%s: cannot find the first commit", store->path);
    git_oid_tostr(out, 41, &oid);
    return cut_store_id(out, store, &oid);
}

int imgstore_store__tree_update(git_oid *out, git_repository *repo, const git_tree *root,
                                const char *path, const git_oid *oid, git_filemode_t mode)
{
    const char *slash = strchr(path, '/');
    git_treebuilder *bld = NULL;
    git_tree *sub = NULL;
    int rc;

    if ((rc = git_treebuilder_new(&bld, repo, root)) < 0)
        goto done;
    if (!slash) {
        if (oid)
            rc = git_treebuilder_insert(NULL, bld, path, oid, mode);
        else if (git_treebuilder_get(bld, path))
            rc = git_treebuilder_remove(bld, path);
    } else {
        char head[IMGSTORE_NAME_MAX + 1];
        size_t head_len = (size_t)(slash - path);
        const git_tree_entry *entry;
        git_oid sub_oid, empty;

        if (head_len == 0 || head_len > IMGSTORE_NAME_MAX) {
            rc = GIT_EINVALID;
            goto done;
        }
        memcpy(head, path, head_len);
        head[head_len] = '\0';
        entry = root ? git_tree_entry_byname(root, head) : NULL;
        if (entry && git_tree_entry_type(entry) == GIT_OBJECT_TREE &&
            (rc = git_tree_lookup(&sub, repo, git_tree_entry_id(entry))) < 0)
            goto done;
        if ((rc = imgstore_store__tree_update(&sub_oid, repo, sub, slash + 1, oid, mode)) < 0)
            goto done;
        git_oid_fromstr(&empty, EMPTY_TREE);
        if (git_oid_equal(&sub_oid, &empty))
            rc = git_treebuilder_get(bld, head) ? git_treebuilder_remove(bld, head) : 0;
        else
            rc = git_treebuilder_insert(NULL, bld, head, &sub_oid, GIT_FILEMODE_TREE);
    }
    if (rc >= 0)
        rc = git_treebuilder_write(out, bld);
done:
    git_tree_free(sub);
    git_treebuilder_free(bld);
    if (rc < 0)
        return imgstore_store__git_error(rc, "cannot update tree at %s", path);
    return 0;
}

int imgstore_store__tree_set(git_oid *tree_oid, imgstore_store *store, const char *path,
                             const git_oid *oid, git_filemode_t mode)
{
    git_tree *tree = NULL;
    int rc, err;

    if ((rc = git_tree_lookup(&tree, store->repo, tree_oid)) < 0)
        return imgstore_store__git_error(rc, "cannot read tree %s", git_oid_tostr_s(tree_oid));
    err = imgstore_store__tree_update(tree_oid, store->repo, tree, path, oid, mode);
    git_tree_free(tree);
    return err;
}

int imgstore_store__read_small_blob(char **out, size_t *len_out, imgstore_store *store,
                                    const git_tree *root, const char *path, size_t cap)
{
    imgstore_store__chunk_buf blob = {0};
    git_tree_entry *entry = NULL;
    git_odb *odb = NULL;
    git_oid check;
    char *buf = NULL;
    int err = 0, rc;

    *out = NULL;
    if ((rc = git_tree_entry_bypath(&entry, root, path)) < 0) {
        err = rc == GIT_ENOTFOUND ? imgstore_error_set(IMGSTORE_ENOTFOUND, "%s not found", path)
                                  : imgstore_store__git_error(rc, "%s", path);
        goto done;
    }
    git_object_t type;

    if ((err = imgstore_store__loose_read_any(&blob, &type, store->objects_dir,
                                              git_tree_entry_id(entry), cap)) < 0) {
        imgstore_error_wrap(err, "%s: ", path);
        goto done;
    }
    if (err == 0) { /* packed */
        if ((rc = git_repository_odb(&odb, store->repo)) < 0 ||
            (rc = git_odb_read(&blob.object, odb, git_tree_entry_id(entry))) < 0) {
            err = imgstore_store__git_error(rc, "%s: cannot read blob", path);
            goto done;
        }
        blob.data = git_odb_object_data(blob.object);
        blob.len = git_odb_object_size(blob.object);
    }
    if (blob.len > cap) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "%s: %zu bytes, more than the %zu allowed",
                                 path, blob.len, cap);
        goto done;
    }
    if (git_odb_hash(&check, blob.data, blob.len, GIT_OBJECT_BLOB) < 0 ||
        !git_oid_equal(&check, git_tree_entry_id(entry))) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s: damaged object %s (content hash differs)",
                                 path, git_oid_tostr_s(git_tree_entry_id(entry)));
        goto done;
    }
    if (!(buf = malloc(blob.len + 1))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    memcpy(buf, blob.data, blob.len);
    buf[blob.len] = '\0';
    *out = buf;
    if (len_out)
        *len_out = blob.len;
    err = 0;
done:
    imgstore_store__chunk_buf_clear(&blob);
    git_odb_free(odb);
    git_tree_entry_free(entry);
    return err;
}

int imgstore_store__write_blob(git_oid *out, imgstore_store *store, const void *buf, size_t len)
{
    int rc = git_blob_create_from_buffer(out, store->repo, buf, len);

    return rc < 0 ? imgstore_store__git_error(rc, "cannot write a blob") : 0;
}

int imgstore_store__lock(int *out, imgstore_store *store)
{
    char path[4096];
    int fd;

    *out = -1;
    snprintf(path, sizeof(path), "%s/imgstore.lock", store->path);
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot open %s: %s", path, strerror(errno));
    for (int waited = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; waited += 10) {
        struct timespec ten_ms = {0, 10 * 1000 * 1000};

        if (errno != EWOULDBLOCK || waited >= LOCK_WAIT_MS) {
            close(fd);
            return imgstore_error_set(IMGSTORE_ELOCKED,
                                      "%s: another writer held the store for %d s; try again",
                                      store->path, LOCK_WAIT_MS / 1000);
        }
        nanosleep(&ten_ms, NULL);
    }
    *out = fd;
    return 0;
}

/* Under our flock no live imgstore writer can hold the ref lock, so a leftover one is from a
 * writer killed between lock and rename: remove it rather than refuse every later write. */
static void remove_stale_ref_lock(imgstore_store *store)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s.lock", store->path, IMGSTORE_STORE_REF);
    unlink(path);
}

int imgstore_store__sync(imgstore_store *store)
{
    int fd = open(store->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot open %s: %s", store->path,
                                  strerror(errno));
    rc = syncfs(fd);
    close(fd);
    if (rc < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "%s: sync failed: %s", store->path,
                                  strerror(errno));
    return 0;
}

int imgstore_store__actor_signature(git_signature **out, const char *actor)
{
    const char *lt = actor ? strchr(actor, '<') : NULL;
    char name[256], email[256];
    int rc;

    if (!actor || !*actor)
        actor = "imgstore";
    if (lt && lt > actor && strchr(lt, '>')) {
        snprintf(name, sizeof(name), "%.*s", (int)(lt - actor), actor);
        for (size_t n = strlen(name); n > 0 && name[n - 1] == ' '; n--)
            name[n - 1] = '\0';
        snprintf(email, sizeof(email), "%.*s", (int)(strchr(lt, '>') - lt - 1), lt + 1);
    } else {
        snprintf(name, sizeof(name), "%s", actor);
        snprintf(email, sizeof(email), "%s", strchr(actor, '@') ? actor : "imgstore@localhost");
    }
    if ((rc = git_signature_now(out, name, email)) < 0)
        return imgstore_store__git_error(GIT_EINVALID, "actor '%s'", actor);
    return 0;
}

static int commit_once(imgstore_store *store, git_signature *sig, const imgstore_sign_key *key,
                       imgstore_store__edit_fn edit, imgstore_store__then_fn then, void *payload)
{
    git_reference *head = NULL, *moved = NULL;
    git_commit *parent = NULL;
    git_tree *tip = NULL, *tree = NULL;
    git_oid tree_oid, commit_oid, before_index;
    char *message = NULL;
    uint64_t ops = 0;
    int err = 0, rc;

    if ((rc = git_reference_lookup(&head, store->repo, IMGSTORE_STORE_REF)) < 0 ||
        (rc = git_commit_lookup(&parent, store->repo, git_reference_target(head))) < 0 ||
        (rc = git_commit_tree(&tip, parent)) < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot read the tip", store->path);
        goto done;
    }
    if ((err = imgstore_store__index_current(&store->index_live, &ops, store, parent, tip)) < 0)
        goto done;
    store->index_rebuilt = false;
    if ((err = edit(&tree_oid, &message, tip, payload)) != 0)
        goto done;
    if (git_oid_equal(&tree_oid, git_tree_id(tip))) {
        err = IMGSTORE_STORE_UNCHANGED;
        goto done;
    }
    /* the indexes move with every commit, in the same tree (issue #9). A damaged index
     * never blocks a write: the commit goes without it, and fsck says to reindex. */
    before_index = tree_oid;
    if ((err = imgstore_store__index_commit(&tree_oid, store, parent, tip,
                                            (int64_t)sig->when.time)) == IMGSTORE_EVERIFY) {
        tree_oid = before_index;
        err = 0;
    }
    if (err < 0)
        goto done;
    if ((rc = git_tree_lookup(&tree, store->repo, &tree_oid)) < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot write the commit", store->path);
        goto done;
    }
    if ((err = imgstore_store__commit_create(&commit_oid, store, store->repo, sig, message, tree,
                                             parent, key)) < 0)
        goto done;
    if (then && (err = then(&commit_oid, sig, key, payload)) < 0)
        goto done;
    if ((err = imgstore_store__sync(store)) < 0)
        goto done;
    rc = git_reference_create_matching(&moved, store->repo, IMGSTORE_STORE_REF, &commit_oid, 1,
                                       git_reference_target(head), message);
    if (rc == GIT_ELOCKED) {
        remove_stale_ref_lock(store);
        rc = git_reference_create_matching(&moved, store->repo, IMGSTORE_STORE_REF, &commit_oid, 1,
                                           git_reference_target(head), message);
    }
    if (rc == GIT_EMODIFIED) {
        err = RACE_LOST;
        goto done;
    }
    if (rc < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot move %s", store->path, IMGSTORE_STORE_REF);
        goto done;
    }
    err = imgstore_store__sync(store);
done:
    free(message);
    git_reference_free(moved);
    git_tree_free(tree);
    git_tree_free(tip);
    git_commit_free(parent);
    git_reference_free(head);
    return err;
}

int imgstore_store__commit(imgstore_store *store, const char *actor, const imgstore_sign_key *key,
                           imgstore_store__edit_fn edit, void *payload)
{
    return imgstore_store__commit_then(store, actor, key, edit, NULL, payload);
}

int imgstore_store__commit_then(imgstore_store *store, const char *actor,
                                const imgstore_sign_key *key, imgstore_store__edit_fn edit,
                                imgstore_store__then_fn then, void *payload)
{
    git_signature *sig = NULL;
    int lock_fd = -1;
    int err;

    if ((err = imgstore_store__actor_signature(&sig, actor)) < 0)
        return err;
    if ((err = imgstore_store__lock(&lock_fd, store)) < 0)
        goto done;
    err = RACE_LOST;
    for (int attempt = 0; attempt < COMMIT_RETRIES && err == RACE_LOST; attempt++)
        err = commit_once(store, sig, key, edit, then, payload);
    if (err == RACE_LOST)
        err = imgstore_error_set(IMGSTORE_ELOCKED, "%s: %s kept moving under us; try again",
                                 store->path, IMGSTORE_STORE_REF);
done:
    if (lock_fd >= 0)
        close(lock_fd); /* releases the flock */
    git_signature_free(sig);
    if (err == 0)
        imgstore_store__gc_after_commit(store); /* outside the lock: writers go on */
    return err;
}
