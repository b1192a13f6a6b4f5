/*
 * Turning a finished push into a committed version: the manifest (with the derived version
 * when none was given, and the boot set), the version's tree, and the commit edit that
 * enforces immutability (same name and version, other bytes, labels or source: refused;
 * the same: success with no new commit).
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The version a re-run CI job derives again: it depends on file names and bytes only. */
static int derive_version(char **out, const imgstore_manifest *m)
{
    imgstore_sha256 *sha = NULL;
    char hex[65];
    int err;

    if ((err = imgstore_sha256_new(&sha)) < 0)
        return err;
    for (size_t i = 0; i < m->file_count; i++) {
        imgstore_sha256_update(sha, m->files[i].path, strlen(m->files[i].path) + 1);
        imgstore_sha256_update(sha, m->files[i].sha256, 64);
    }
    imgstore_sha256_final_hex(sha, hex);
    imgstore_sha256_free(sha);
    if (!(*out = imgstore_strfmt("c-%.16s", hex)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return 0;
}

static void find_boot_set(imgstore_manifest *m)
{
    for (size_t i = 0; i < m->file_count; i++) {
        const imgstore_file_info *info = &m->files[i].info;
        char **slot = NULL;

        if (strcmp(info->kind, "kernel") == 0)
            slot = &m->boot.kernel;
        else if (strcmp(info->kind, "initrd") == 0)
            slot = &m->boot.initrd;
        else if (strcmp(info->kind, "cmdline") == 0)
            slot = &m->boot.cmdline;
        if (slot && !*slot)
            *slot = strdup(m->files[i].path);
    }
    m->boot.complete = m->boot.kernel && m->boot.initrd && m->boot.cmdline;
}

bool imgstore_store__same_files(const imgstore_manifest *a, const imgstore_manifest *b)
{
    if (a->file_count != b->file_count)
        return false;
    for (size_t i = 0; i < a->file_count; i++) {
        if (strcmp(a->files[i].path, b->files[i].path) != 0 ||
            a->files[i].size != b->files[i].size ||
            strcmp(a->files[i].sha256, b->files[i].sha256) != 0)
            return false;
    }
    return true;
}

/* "{ci.job=812, team=os}": a version's labels, for the conflict message (cut at `cap`). */
static void labels_text(char *buf, size_t cap, const imgstore_manifest *m)
{
    size_t n = (size_t)snprintf(buf, cap, "{");

    for (size_t i = 0; i < m->label_count && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s=%s", i ? ", " : "", m->labels[i].key,
                              m->labels[i].value);
    if (n < cap)
        snprintf(buf + n, cap - n, "}");
}

/* "URL@COMMIT", or "none" (cut at `cap`). */
static void source_text(char *buf, size_t cap, const imgstore_manifest *m)
{
    if (!m->source_repository && !m->source_commit)
        snprintf(buf, cap, "none");
    else
        snprintf(buf, cap, "%s@%s", m->source_repository ? m->source_repository : "",
                 m->source_commit ? m->source_commit : "");
}

static bool same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/*
 * Labels and source are part of the signed, immutable manifest (issue #10): pushing the same
 * bytes with other ones is a different version, not a no-op that drops them. The builder
 * and the time are not compared: they say who pushed when, and a CI job re-run elsewhere is
 * still the same push. Both manifests' labels are sorted by key.
 */
static int check_same_provenance(const imgstore_manifest *stored, const imgstore_manifest *m)
{
    bool same_labels = stored->label_count == m->label_count;
    char had[512], wants[512];

    for (size_t i = 0; i < m->label_count && same_labels; i++)
        same_labels = strcmp(stored->labels[i].key, m->labels[i].key) == 0 &&
                      strcmp(stored->labels[i].value, m->labels[i].value) == 0;
    if (!same_labels) {
        labels_text(had, sizeof(had), stored);
        labels_text(wants, sizeof(wants), m);
        return imgstore_error_set(IMGSTORE_EEXISTS,
                                  "%s %s already exists with labels %s, not %s; versions are "
                                  "immutable and labels are part of the manifest: push the new "
                                  "labels as a new version",
                                  m->name, m->version, had, wants);
    }
    if (!same_text(stored->source_repository, m->source_repository) ||
        !same_text(stored->source_commit, m->source_commit)) {
        source_text(had, sizeof(had), stored);
        source_text(wants, sizeof(wants), m);
        return imgstore_error_set(IMGSTORE_EEXISTS,
                                  "%s %s already exists with source %s, not %s; versions are "
                                  "immutable and the source is part of the manifest: push it as "
                                  "a new version",
                                  m->name, m->version, had, wants);
    }
    return 0;
}

/* Everything the commit edit needs; it may run more than once (a lost race). */
typedef struct {
    imgstore_store *store;
    const imgstore_manifest *manifest;
    const imgstore_signers *signers;
    git_oid version_tree;
    imgstore_manifest *existing; /* set when an identical version was already stored */
} push_edit;

static int push_edit_fn(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    push_edit *e = payload;
    const imgstore_manifest *m = e->manifest;
    imgstore_manifest *stored = NULL;
    imgstore_policy *policy = NULL;
    char path[512];
    int err;

    imgstore_manifest_free(e->existing);
    e->existing = NULL;
    err = imgstore_store__manifest_load(&stored, NULL, e->store, tip, m->name, m->version);
    if (err == 0) {
        if (!imgstore_store__same_files(stored, m)) {
            imgstore_manifest_free(stored);
            return imgstore_error_set(IMGSTORE_EEXISTS,
                                      "%s %s already exists with different content; versions "
                                      "are immutable, push it as a new version",
                                      m->name, m->version);
        }
        if ((err = check_same_provenance(stored, m)) < 0) {
            imgstore_manifest_free(stored);
            return err;
        }
        e->existing = stored;
        return IMGSTORE_STORE_UNCHANGED;
    }
    if (err != IMGSTORE_ENOTFOUND)
        return err;
    /* the policy may have changed since push_begin checked the keys */
    if ((err = imgstore_store__policy_load(&policy, NULL, e->store, tip)) < 0)
        return err;
    for (size_t i = 0; i < e->signers->count && err == 0; i++)
        err = imgstore_store__key_check_role(policy, IMGSTORE_ROLE_RELEASE, e->signers->keys[i]);
    imgstore_policy_free(policy);
    if (err < 0)
        return err;
    imgstore_store__version_path(path, sizeof(path), e->store, m->name, m->version, NULL);
    if ((err = imgstore_store__tree_update(tree_out, e->store->repo, tip, path, &e->version_tree,
                                           GIT_FILEMODE_TREE)) < 0 ||
        (err = imgstore_store__index_add_version(tree_out, e->store, m)) < 0)
        return err;
    if (!(*message_out = imgstore_strfmt("push %s %s\n", m->name, m->version)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return 0;
}

/* signatures/<key>.sig for each signer, over the manifest bytes (trust.c names them) */
static int build_signature_tree(git_oid *out, imgstore_store *store, const char *manifest_bytes,
                                size_t manifest_len, const imgstore_signers *signers)
{
    git_treebuilder *sigs = NULL;
    int err = 0, rc;

    if ((rc = git_treebuilder_new(&sigs, store->repo, NULL)) < 0)
        goto git_failed;
    for (size_t i = 0; i < signers->count; i++) {
        char name[IMGSTORE_STORE__SIG_NAME_MAX], *armored = NULL;
        imgstore_sign_pubkey pub;
        git_oid blob;

        imgstore_sign_key_public(&pub, signers->keys[i]);
        imgstore_store__sig_file_name(name, &pub);
        if ((err = imgstore_sign_sshsig(&armored, signers->keys[i], IMGSTORE_SIGN_NAMESPACE,
                                        manifest_bytes, manifest_len)) < 0)
            goto done;
        rc = git_blob_create_from_buffer(&blob, store->repo, armored, strlen(armored));
        free(armored);
        if (rc < 0 || (rc = git_treebuilder_insert(NULL, sigs, name, &blob, GIT_FILEMODE_BLOB)) < 0)
            goto git_failed;
    }
    if ((rc = git_treebuilder_write(out, sigs)) < 0)
        goto git_failed;
    goto done;
git_failed:
    err = imgstore_store__git_error(rc, "cannot write the signatures");
done:
    git_treebuilder_free(sigs);
    return err;
}

static int build_version_tree(git_oid *out, imgstore_store *store, const char *manifest_bytes,
                              size_t manifest_len, const imgstore_manifest *m,
                              const git_oid *file_trees, const imgstore_signers *signers)
{
    git_treebuilder *root = NULL, *files = NULL;
    git_oid manifest_oid, files_oid, sigs_oid;
    int rc, err;

    if ((err = build_signature_tree(&sigs_oid, store, manifest_bytes, manifest_len, signers)) < 0)
        return err;

    if ((rc = git_blob_create_from_buffer(&manifest_oid, store->repo, manifest_bytes,
                                          manifest_len)) < 0 ||
        (rc = git_treebuilder_new(&files, store->repo, NULL)) < 0)
        goto done;
    /* a zero-byte file has no chunks and so no directory: git does not keep empty trees */
    for (size_t i = 0; i < m->file_count && rc >= 0; i++) {
        if (m->files[i].chunk_count > 0)
            rc = git_treebuilder_insert(NULL, files, m->files[i].path, &file_trees[i],
                                        GIT_FILEMODE_TREE);
    }
    if (rc < 0 || (rc = git_treebuilder_write(&files_oid, files)) < 0 ||
        (rc = git_treebuilder_new(&root, store->repo, NULL)) < 0 ||
        (rc = git_treebuilder_insert(NULL, root, "manifest.json", &manifest_oid,
                                     GIT_FILEMODE_BLOB)) < 0 ||
        (rc = git_treebuilder_insert(NULL, root, "files", &files_oid, GIT_FILEMODE_TREE)) < 0 ||
        (signers->count > 0 &&
         (rc = git_treebuilder_insert(NULL, root, "signatures", &sigs_oid, GIT_FILEMODE_TREE)) < 0))
        goto done;
    rc = git_treebuilder_write(out, root);
done:
    git_treebuilder_free(files);
    git_treebuilder_free(root);
    return rc < 0 ? imgstore_store__git_error(rc, "%s %s: cannot write the version tree", m->name,
                                              m->version)
                  : 0;
}

int imgstore_store__commit_version(imgstore_manifest **out, bool *created_out,
                                   imgstore_store *store, imgstore_manifest *m,
                                   const git_oid *file_trees, const char *actor,
                                   const imgstore_signers *signers)
{
    push_edit edit = {store, m, signers, {{0}}, NULL};
    char *derived = NULL;
    char *bytes = NULL;
    size_t len = 0;
    int err;

    *out = NULL;
    if (m->file_count == 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "push %s: no files", m->name);
    if (!m->version) {
        if ((err = derive_version(&derived, m)) < 0)
            return err;
        m->version = derived;
    }
    find_boot_set(m);
    if ((err = imgstore_schema_manifest_encode(&bytes, &len, m)) < 0 ||
        (err = build_version_tree(&edit.version_tree, store, bytes, len, m, file_trees, signers)) <
            0)
        goto done;
    err = imgstore_store__commit(store, actor, signers->count ? signers->keys[0] : NULL,
                                 push_edit_fn, &edit);
    if (err == IMGSTORE_STORE_UNCHANGED) {
        *out = edit.existing;
        edit.existing = NULL;
        *created_out = false;
        err = 0;
    } else if (err == 0) {
        err = imgstore_store_manifest_get(out, NULL, store, m->name, m->version);
        *created_out = true;
    }
done:
    if (derived)
        m->version = NULL;
    free(derived);
    free(m->boot.kernel);
    free(m->boot.initrd);
    free(m->boot.cmdline);
    memset(&m->boot, 0, sizeof(m->boot));
    imgstore_manifest_free(edit.existing);
    free(bytes);
    return err;
}
