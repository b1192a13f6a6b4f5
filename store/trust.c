/*
 * Trust: the policy at trust/policy.json (which keys hold which role, and how many of them
 * must sign), the detached SSH signatures stored beside what they sign, and the checks that
 * count them (docs/security.md).
 *
 * A signature is an armored SSHSIG in namespace "imgstore" over the exact bytes of the JSON
 * file it signs, stored as <dir>/<fingerprint>.sig where <fingerprint> is the signer's
 * OpenSSH SHA256 fingerprint in base64url (file-name safe). Signatures count only for keys
 * the *current* policy lists in the role, so removing a key revokes its signatures
 * everywhere at once. Policies form a chain: policy N+1 counts only when a threshold of
 * policy N's root keys signed it; policy 1 is self-signed by its own root keys.
 *
 * Not here: reading image bytes (read.c), what a channel move writes (channel.c).
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLICY_PATH    "trust/policy.json"
#define POLICY_SIG_DIR "trust/signatures"
#define POLICY_MAX     (64u * 1024)

void imgstore_store__sig_file_name(char out[IMGSTORE_STORE__SIG_NAME_MAX],
                                   const imgstore_sign_pubkey *pubkey)
{
    char fingerprint[IMGSTORE_SIGN_KEYID_MAX];
    const char *b64;
    size_t i;

    imgstore_sign_pubkey_fingerprint(fingerprint, pubkey);
    b64 = strchr(fingerprint, ':') ? strchr(fingerprint, ':') + 1 : fingerprint;
    for (i = 0; b64[i] && i + 5 < IMGSTORE_STORE__SIG_NAME_MAX; i++)
        out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    memcpy(out + i, ".sig", 5);
}

int imgstore_store__policy_load(imgstore_policy **out, char *digest_out, imgstore_store *store,
                                const git_tree *root)
{
    return imgstore_store__policy_load_in(out, digest_out, store, root, "trust");
}

int imgstore_store__policy_load_in(imgstore_policy **out, char *digest_out, imgstore_store *store,
                                   const git_tree *root, const char *dir)
{
    imgstore_sha256 *sha = NULL;
    char *bytes = NULL, path[256];
    size_t len = 0;
    int err;

    *out = NULL;
    snprintf(path, sizeof(path), "%s/policy.json", dir);
    if ((err = imgstore_store__read_small_blob(&bytes, &len, store, root, path, POLICY_MAX)) < 0) {
        if (err == IMGSTORE_ENOTFOUND)
            err = imgstore_error_set(IMGSTORE_ENOTFOUND,
                                     "%s has no trust policy (%s); create the store with "
                                     "imgstore init and a signing key",
                                     store->path, path);
        return err;
    }
    if (!imgstore_schema_policy_is_canonical(bytes, len)) {
        err = imgstore_schema_policy_parse(out, bytes, len);
        imgstore_policy_free(*out);
        *out = NULL;
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s is damaged or not canonical%s%s", path,
                                 err < 0 ? ": " : "", err < 0 ? imgstore_error_last() : "");
        goto done;
    }
    if ((err = imgstore_schema_policy_parse(out, bytes, len)) < 0)
        goto done;
    if (digest_out) {
        if ((err = imgstore_sha256_new(&sha)) < 0)
            goto done;
        imgstore_sha256_update(sha, bytes, len);
        imgstore_sha256_final_hex(sha, digest_out);
    }
done:
    if (err < 0) {
        imgstore_policy_free(*out);
        *out = NULL;
    }
    imgstore_sha256_free(sha);
    free(bytes);
    return err;
}

int imgstore_store__role_index(const imgstore_policy *policy, imgstore_role role,
                               const imgstore_sign_pubkey *signer)
{
    const imgstore_policy_role *r = &policy->roles[role];

    for (size_t i = 0; i < r->key_count; i++) {
        imgstore_sign_pubkey key;

        if (imgstore_sign_pubkey_parse(&key, r->keys[i]) == 0 &&
            imgstore_sign_pubkey_equal(&key, signer))
            return (int)i;
    }
    return -1;
}

int imgstore_store__key_check_role(const imgstore_policy *policy, imgstore_role role,
                                   const imgstore_sign_key *key)
{
    imgstore_sign_pubkey pub;

    imgstore_sign_key_public(&pub, key);
    if (imgstore_store__role_index(policy, role, &pub) >= 0)
        return 0;
    return imgstore_error_set(IMGSTORE_EVERIFY,
                              "key %s is not a %s key of trust policy %llu (imgstore trust show "
                              "lists them)",
                              imgstore_sign_key_id(key), imgstore_schema_role_name(role),
                              (unsigned long long)policy->version);
}

int imgstore_store__signatures_check(imgstore_trust_status *out, imgstore_store *store,
                                     const git_tree *root, const char *dir,
                                     const imgstore_policy *policy, imgstore_role role,
                                     const void *msg, size_t len)
{
    const imgstore_policy_role *r = &policy->roles[role];
    bool seen[IMGSTORE_POLICY_KEYS_MAX] = {false};
    git_tree_entry *dir_entry = NULL;
    git_tree *sigs = NULL;
    char first_problem[2048] = "";
    int err = 0, rc;

    memset(out, 0, sizeof(*out));
    out->threshold = r->threshold;
    rc = git_tree_entry_bypath(&dir_entry, root, dir);
    if (rc == GIT_ENOTFOUND)
        goto done;
    if (rc < 0 || git_tree_entry_type(dir_entry) != GIT_OBJECT_TREE ||
        (rc = git_tree_lookup(&sigs, store->repo, git_tree_entry_id(dir_entry))) < 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s: not a directory of signatures", dir);
        goto done;
    }
    for (size_t i = 0; i < git_tree_entrycount(sigs); i++) {
        const char *file = git_tree_entry_name(git_tree_entry_byindex(sigs, i));
        char path[1024], expect_name[IMGSTORE_STORE__SIG_NAME_MAX];
        imgstore_sign_pubkey signer;
        char *armored = NULL;
        size_t armored_len = 0;
        int index = -1, check;

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        check = imgstore_store__read_small_blob(&armored, &armored_len, store, root, path,
                                                IMGSTORE_SIGN_ARMOR_MAX);
        if (check == 0)
            check = imgstore_sign_sshsig_verify(&signer, armored, armored_len,
                                                IMGSTORE_SIGN_NAMESPACE, msg, len);
        free(armored);
        if (check == 0) {
            imgstore_store__sig_file_name(expect_name, &signer);
            if (strcmp(expect_name, file) != 0)
                check = imgstore_error_set(IMGSTORE_EVERIFY,
                                           "signed by another key than its name says");
            else if ((index = imgstore_store__role_index(policy, role, &signer)) < 0)
                continue; /* a sound signature by a key the policy no longer trusts: revoked,
                             not damage; it just does not count */
        }
        if (check < 0) {
            out->invalid++;
            if (!first_problem[0])
                snprintf(first_problem, sizeof(first_problem), "signature %s: %s", path,
                         imgstore_error_last());
            continue;
        }
        seen[index] = true;
    }
    for (size_t i = 0; i < r->key_count && i < IMGSTORE_POLICY_KEYS_MAX; i++)
        out->valid += seen[i];
done:
    out->trusted = err == 0 && out->valid >= out->threshold;
    if (err == 0 && first_problem[0])
        imgstore_error_set(IMGSTORE_EVERIFY, "%s", first_problem);
    else if (err == 0)
        imgstore_error_clear();
    git_tree_free(sigs);
    git_tree_entry_free(dir_entry);
    return err;
}

int imgstore_store__signatures_write(git_oid *tree_oid, imgstore_store *store, const char *dir,
                                     const imgstore_signers *signers, const void *msg, size_t len)
{
    int err = 0;

    for (size_t i = 0; i < signers->count && err == 0; i++) {
        imgstore_sign_pubkey pub;
        char name[IMGSTORE_STORE__SIG_NAME_MAX], path[1024], *armored = NULL;
        git_oid blob;

        imgstore_sign_key_public(&pub, signers->keys[i]);
        imgstore_store__sig_file_name(name, &pub);
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        if ((err = imgstore_sign_sshsig(&armored, signers->keys[i], IMGSTORE_SIGN_NAMESPACE, msg,
                                        len)) < 0)
            break;
        if ((err = imgstore_store__write_blob(&blob, store, armored, strlen(armored))) == 0)
            err = imgstore_store__tree_set(tree_oid, store, path, &blob, GIT_FILEMODE_BLOB);
        free(armored);
    }
    return err;
}

int imgstore_store__signatures_check_at(imgstore_trust_status *out, imgstore_store *store,
                                        const git_oid *tree_oid, const char *dir,
                                        const imgstore_policy *policy, imgstore_role role,
                                        const void *msg, size_t len)
{
    git_tree *tree = NULL;
    int rc, err;

    if ((rc = git_tree_lookup(&tree, store->repo, tree_oid)) < 0)
        return imgstore_store__git_error(rc, "cannot read tree %s", git_oid_tostr_s(tree_oid));
    err = imgstore_store__signatures_check(out, store, tree, dir, policy, role, msg, len);
    git_tree_free(tree);
    return err;
}

/* ---- public: the policy ---------------------------------------------------------------- */

int imgstore_store_policy_get(imgstore_policy **out, char *digest_out, imgstore_store *store)
{
    git_tree *tip = NULL;
    int err;

    *out = NULL;
    if ((err = imgstore_store__tip_tree(&tip, store)) < 0)
        return err;
    err = imgstore_store__policy_load(out, digest_out, store, tip);
    git_tree_free(tip);
    return err;
}

int imgstore_store__policy_first(imgstore_policy *out, imgstore_sign_pubkey *pub,
                                 char **key_line_out)
{
    *key_line_out = NULL;
    memset(out, 0, sizeof(*out));
    if (imgstore_sign_pubkey_format(key_line_out, pub) < 0)
        return IMGSTORE_ERROR;
    out->version = 1;
    out->channel_ttl_seconds = IMGSTORE_POLICY_TTL_DEFAULT;
    for (int role = 0; role < IMGSTORE_ROLE_COUNT; role++) {
        out->roles[role].key_count = 1;
        out->roles[role].keys = key_line_out;
        out->roles[role].threshold = 1;
    }
    return 0;
}

typedef struct {
    imgstore_store *store;
    const imgstore_policy *next;
    const imgstore_signers *signers;
    uint64_t version_written;
} policy_edit;

static int policy_edit_fn(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    policy_edit *e = payload;
    imgstore_policy *current = NULL, *next = NULL;
    imgstore_trust_status status;
    git_oid blob, tree_oid;
    char *bytes = NULL;
    size_t len = 0;
    int err;

    if ((err = imgstore_store__policy_load(&current, NULL, e->store, tip)) < 0 ||
        (err = imgstore_schema_policy_copy(&next, e->next)) < 0)
        goto done;
    next->version = current->version + 1;
    if ((err = imgstore_schema_policy_encode(&bytes, &len, next)) < 0)
        goto done;
    /* Only current root keys may sign: a key the new policy adds cannot vouch for itself. */
    for (size_t i = 0; i < e->signers->count; i++) {
        if ((err = imgstore_store__key_check_role(current, IMGSTORE_ROLE_ROOT,
                                                  e->signers->keys[i])) < 0)
            goto done;
    }
    /* the old policy's signatures go: they sign other bytes */
    git_oid_cpy(&tree_oid, git_tree_id(tip));
    if ((err = imgstore_store__write_blob(&blob, e->store, bytes, len)) < 0 ||
        (err = imgstore_store__tree_set(&tree_oid, e->store, POLICY_SIG_DIR, NULL,
                                        GIT_FILEMODE_TREE)) < 0 ||
        (err = imgstore_store__tree_set(&tree_oid, e->store, POLICY_PATH, &blob,
                                        GIT_FILEMODE_BLOB)) < 0 ||
        (err = imgstore_store__signatures_write(&tree_oid, e->store, POLICY_SIG_DIR, e->signers,
                                                bytes, len)) < 0 ||
        (err = imgstore_store__signatures_check_at(&status, e->store, &tree_oid, POLICY_SIG_DIR,
                                                   current, IMGSTORE_ROLE_ROOT, bytes, len)) < 0)
        goto done;
    if (!status.trusted) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "trust policy %llu needs %u signatures of root keys of policy "
                                 "%llu, got %zu; give more --key",
                                 (unsigned long long)next->version, status.threshold,
                                 (unsigned long long)current->version, status.valid);
        goto done;
    }
    git_oid_cpy(tree_out, &tree_oid);
    e->version_written = next->version;
    if (!(*message_out = imgstore_strfmt("trust policy %llu\n", (unsigned long long)next->version)))
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
done:
    free(bytes);
    imgstore_policy_free(next);
    imgstore_policy_free(current);
    return err;
}

int imgstore_store_policy_update(uint64_t *version_out, imgstore_store *store,
                                 const imgstore_policy *next, const imgstore_signers *signers,
                                 const char *actor)
{
    policy_edit edit = {store, next, signers, 0};
    int err;

    if (!next || !signers || signers->count == 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "a new trust policy must be signed by root keys (--key)");
    err = imgstore_store__commit(store, actor, signers->keys[0], policy_edit_fn, &edit);
    if (err == 0 && version_out)
        *version_out = edit.version_written;
    return err == IMGSTORE_STORE_UNCHANGED ? 0 : err;
}

/* ---- public: trust status of versions and channels ----------------------------------- */

/* The signatures in `dir` over the document at `path`, counted for `role`. */
static int document_status(imgstore_trust_status *out, imgstore_store *store, const git_tree *root,
                           const imgstore_policy *policy, imgstore_role role, const char *path,
                           const char *dir, size_t cap)
{
    char *bytes = NULL;
    size_t len = 0;
    int err;

    memset(out, 0, sizeof(*out));
    if ((err = imgstore_store__read_small_blob(&bytes, &len, store, root, path, cap)) < 0)
        return err;
    err = imgstore_store__signatures_check(out, store, root, dir, policy, role, bytes, len);
    free(bytes);
    return err;
}

int imgstore_store__version_status(imgstore_trust_status *out, imgstore_store *store,
                                   const git_tree *root, const imgstore_policy *policy,
                                   const char *name, const char *version)
{
    char path[512], dir[512];
    int err;

    imgstore_store__version_path(path, sizeof(path), store, name, version, "manifest.json");
    imgstore_store__version_path(dir, sizeof(dir), store, name, version, "signatures");
    err = document_status(out, store, root, policy, IMGSTORE_ROLE_RELEASE, path, dir,
                          IMGSTORE_MANIFEST_MAX_BYTES);
    if (err == IMGSTORE_ENOTFOUND)
        err = imgstore_error_set(IMGSTORE_ENOTFOUND, "no version %s of image %s", version, name);
    return err;
}

int imgstore_store__channel_status(imgstore_trust_status *out, imgstore_store *store,
                                   const git_tree *root, const imgstore_policy *policy,
                                   const char *name, const char *channel)
{
    char path[512], dir[512];

    snprintf(path, sizeof(path), "channels/%s/%s.json", name, channel);
    snprintf(dir, sizeof(dir), "channels/%s/%s.sigs", name, channel);
    return document_status(out, store, root, policy, IMGSTORE_ROLE_DEPLOY, path, dir, 64 * 1024);
}

typedef int (*status_fn)(imgstore_trust_status *out, imgstore_store *store, const git_tree *root,
                         const imgstore_policy *policy, const char *name, const char *what);

static int status_at_tip(imgstore_trust_status *out, imgstore_store *store, const char *name,
                         const char *what, status_fn fn)
{
    imgstore_policy *policy = NULL;
    git_tree *tip = NULL;
    int err;

    memset(out, 0, sizeof(*out));
    if ((err = imgstore_store__tip_tree(&tip, store)) < 0 ||
        (err = imgstore_store__policy_load(&policy, NULL, store, tip)) < 0)
        goto done;
    err = fn(out, store, tip, policy, name, what);
done:
    imgstore_policy_free(policy);
    git_tree_free(tip);
    return err;
}

int imgstore_store_version_trust(imgstore_trust_status *out, imgstore_store *store,
                                 const char *name, const char *version)
{
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0)
        return err;
    return status_at_tip(out, store, name, version, imgstore_store__version_status);
}

int imgstore_store_channel_trust(imgstore_trust_status *out, imgstore_store *store,
                                 const char *name, const char *channel)
{
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, channel)) < 0)
        return err;
    return status_at_tip(out, store, name, channel, imgstore_store__channel_status);
}

/* ---- public: adding signatures to a stored version ------------------------------------ */

typedef struct {
    imgstore_store *store;
    const char *name, *version;
    const imgstore_signers *signers;
    imgstore_trust_status status;
} sign_edit;

static int sign_edit_fn(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    sign_edit *e = payload;
    imgstore_policy *policy = NULL;
    char path[512], dir[512], *bytes = NULL;
    size_t len = 0;
    int err;

    imgstore_store__version_path(path, sizeof(path), e->store, e->name, e->version,
                                 "manifest.json");
    imgstore_store__version_path(dir, sizeof(dir), e->store, e->name, e->version, "signatures");
    if ((err = imgstore_store__policy_load(&policy, NULL, e->store, tip)) < 0)
        goto done;
    for (size_t i = 0; i < e->signers->count; i++) {
        if ((err = imgstore_store__key_check_role(policy, IMGSTORE_ROLE_RELEASE,
                                                  e->signers->keys[i])) < 0)
            goto done;
    }
    if ((err = imgstore_store__read_small_blob(&bytes, &len, e->store, tip, path,
                                               IMGSTORE_MANIFEST_MAX_BYTES)) < 0) {
        if (err == IMGSTORE_ENOTFOUND)
            err = imgstore_error_set(IMGSTORE_ENOTFOUND, "no version %s of image %s", e->version,
                                     e->name);
        goto done;
    }
    git_oid_cpy(tree_out, git_tree_id(tip));
    if ((err = imgstore_store__signatures_write(tree_out, e->store, dir, e->signers, bytes, len)) <
            0 ||
        (err = imgstore_store__signatures_check_at(&e->status, e->store, tree_out, dir, policy,
                                                   IMGSTORE_ROLE_RELEASE, bytes, len)) < 0)
        goto done;
    /* "sign NAME VERSION by SHA256:... [SHA256:...]": the key ids as `imgstore key show`
     * prints them, as the server's signing (signed.c) writes them too (issue #10) */
    *message_out = imgstore_strfmt("sign %s %s by", e->name, e->version);
    for (size_t i = 0; *message_out && i <= e->signers->count; i++) {
        char *longer =
            i < e->signers->count
                ? imgstore_strfmt("%s %s", *message_out, imgstore_sign_key_id(e->signers->keys[i]))
                : imgstore_strfmt("%s\n", *message_out);

        free(*message_out);
        *message_out = longer;
    }
    if (!*message_out)
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
done:
    free(bytes);
    imgstore_policy_free(policy);
    return err;
}

int imgstore_store_sign_version(imgstore_trust_status *status_out, imgstore_store *store,
                                const char *name, const char *version,
                                const imgstore_signers *signers, const char *actor)
{
    sign_edit edit = {store, name, version, signers, {0}};
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0)
        return err;
    if (!signers || signers->count == 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "signing %s %s needs a release key (--key)",
                                  name, version);
    err = imgstore_store__commit(store, actor, signers->keys[0], sign_edit_fn, &edit);
    if (err == IMGSTORE_STORE_UNCHANGED) /* every signer had signed already */
        err = imgstore_store_version_trust(&edit.status, store, name, version);
    if (err == 0 && status_out)
        *status_out = edit.status;
    return err;
}

int imgstore_store_manifest_get_trusted(imgstore_manifest **out, char *digest_out,
                                        imgstore_store *store, const char *name,
                                        const char *version)
{
    imgstore_trust_status status;
    imgstore_manifest *manifest = NULL;
    imgstore_policy *policy = NULL;
    git_tree *tip = NULL;
    int err;

    *out = NULL;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0 ||
        (err = imgstore_store__tip_tree(&tip, store)) < 0 ||
        (err = imgstore_store__manifest_load(&manifest, digest_out, store, tip, name, version)) <
            0 ||
        (err = imgstore_store__policy_load(&policy, NULL, store, tip)) < 0 ||
        (err = imgstore_store__policy_chain_check(store)) < 0 ||
        (err = imgstore_store__version_status(&status, store, tip, policy, name, version)) < 0)
        goto done;
    if (!status.trusted) {
        err = imgstore_error_set(
            IMGSTORE_EVERIFY, "%s %s has %zu of the %u release signatures it needs%s%s", name,
            version, status.valid, status.threshold, status.invalid ? "; " : "",
            status.invalid ? imgstore_error_last() : "");
        goto done;
    }
    *out = manifest;
    manifest = NULL;
done:
    imgstore_policy_free(policy);
    imgstore_manifest_free(manifest);
    git_tree_free(tip);
    return err;
}
