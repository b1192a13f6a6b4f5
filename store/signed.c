/*
 * Signed documents crossing the store's boundary: handing out a document's exact bytes with
 * its signatures (so a remote client verifies them itself), taking in signatures and channel
 * states that were made and signed elsewhere, and the pure checks a client runs on what it
 * was handed. docs/security.md is the model; trust.c holds the same checks over a tree, and
 * the pure ones (signature counts, the policy chain) are trust/policy.c.
 *
 * Not here: HTTP (server/, cli/remote*.c), signing with local keys (trust.c, channel.c).
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATE_MAX      (64u * 1024)
#define CLOCK_SKEW_MAX 300 /* seconds a client-built state's time may differ from ours */
#define SIGNATURES_MAX IMGSTORE_POLICY_KEYS_MAX

int imgstore_store__signed_at(char **bytes_out, size_t *len_out, char ***sigs_out,
                              size_t *count_out, imgstore_store *store, const git_tree *root,
                              const char *path, const char *dir, size_t cap)
{
    char **names = NULL, **sigs = NULL;
    size_t name_count = 0, count = 0;
    int err;

    *bytes_out = NULL;
    *sigs_out = NULL;
    *count_out = 0;
    if ((err = imgstore_store__read_small_blob(bytes_out, len_out, store, root, path, cap)) < 0)
        return err;
    err = imgstore_store__list_tree(&names, &name_count, store, root, dir, ".sig");
    if (err == IMGSTORE_ENOTFOUND || (err < 0 && !names))
        err = 0; /* no signatures yet */
    if (err < 0)
        goto done;
    if (!(sigs = calloc(name_count + 1, sizeof(*sigs)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < name_count && i < SIGNATURES_MAX; i++) {
        char sig_path[1024];

        snprintf(sig_path, sizeof(sig_path), "%s/%s.sig", dir, names[i]);
        if ((err = imgstore_store__read_small_blob(&sigs[count], NULL, store, root, sig_path,
                                                   IMGSTORE_SIGN_ARMOR_MAX)) < 0)
            goto done;
        count++;
    }
    *sigs_out = sigs;
    *count_out = count;
    sigs = NULL;
done:
    if (err < 0) {
        free(*bytes_out);
        *bytes_out = NULL;
    }
    imgstore_strings_free(sigs, count);
    imgstore_strings_free(names, name_count);
    return err;
}

int imgstore_store_manifest_signed(char **bytes_out, size_t *len_out, char ***sigs_out,
                                   size_t *sig_count_out, imgstore_store *store, const char *name,
                                   const char *version)
{
    char path[512], dir[512];
    git_tree *tip = NULL;
    int err;

    *bytes_out = NULL;
    *sigs_out = NULL;
    *sig_count_out = 0;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0 ||
        (err = imgstore_store__tip_tree(&tip, store)) < 0)
        return err;
    imgstore_store__version_path(path, sizeof(path), store, name, version, "manifest.json");
    imgstore_store__version_path(dir, sizeof(dir), store, name, version, "signatures");
    err = imgstore_store__signed_at(bytes_out, len_out, sigs_out, sig_count_out, store, tip, path,
                                    dir, IMGSTORE_MANIFEST_MAX_BYTES);
    if (err == IMGSTORE_ENOTFOUND)
        err = imgstore_error_set(IMGSTORE_ENOTFOUND, "no version %s of image %s", version, name);
    git_tree_free(tip);
    return err;
}

int imgstore_store__channel_signed_at(char **bytes_out, size_t *len_out, char ***sigs_out,
                                      size_t *sig_count_out, imgstore_store *store,
                                      const git_tree *tree, const char *name, const char *channel)
{
    char path[512], dir[512];
    int err;

    snprintf(path, sizeof(path), "channels/%s/%s.json", name, channel);
    snprintf(dir, sizeof(dir), "channels/%s/%s.sigs", name, channel);
    err = imgstore_store__signed_at(bytes_out, len_out, sigs_out, sig_count_out, store, tree, path,
                                    dir, STATE_MAX);
    if (err == IMGSTORE_ENOTFOUND)
        err = imgstore_error_set(IMGSTORE_ENOTFOUND, "image %s has no channel %s", name, channel);
    return err;
}

int imgstore_store_channel_signed(char **bytes_out, size_t *len_out, char ***sigs_out,
                                  size_t *sig_count_out, imgstore_store *store, const char *name,
                                  const char *channel)
{
    git_tree *tip = NULL;
    int err;

    *bytes_out = NULL;
    *sigs_out = NULL;
    *sig_count_out = 0;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, channel)) < 0 ||
        (err = imgstore_store__tip_tree(&tip, store)) < 0)
        return err;
    err = imgstore_store__channel_signed_at(bytes_out, len_out, sigs_out, sig_count_out, store, tip,
                                            name, channel);
    git_tree_free(tip);
    return err;
}

/* Append (or, for the same version again, replace) the policy held by `tree`. */
int imgstore_store__policy_link_at(imgstore_policy_link *out, imgstore_store *store,
                                   const git_tree *tree)
{
    return imgstore_store__policy_link_in(out, store, tree, "trust");
}

int imgstore_store__policy_link_in(imgstore_policy_link *out, imgstore_store *store,
                                   const git_tree *tree, const char *dir)
{
    imgstore_policy *policy = NULL;
    char path[256], sigs[256];
    int err;

    memset(out, 0, sizeof(*out));
    snprintf(path, sizeof(path), "%s/policy.json", dir);
    snprintf(sigs, sizeof(sigs), "%s/signatures", dir);
    if ((err = imgstore_store__signed_at(&out->policy, &out->policy_len, &out->signatures,
                                         &out->signature_count, store, tree, path, sigs,
                                         64 * 1024)) < 0)
        return err;
    /* an unparseable policy is still handed out: the verifier names it */
    out->version = imgstore_schema_policy_parse(&policy, out->policy, out->policy_len) == 0
                       ? policy->version
                       : 0;
    imgstore_policy_free(policy);
    return 0;
}

static int chain_add(imgstore_policy_link **links, size_t *count, imgstore_store *store,
                     const git_tree *tree, const char *dir)
{
    imgstore_policy_link link = {0};
    imgstore_policy_link *grown;
    int err;

    if ((err = imgstore_store__policy_link_in(&link, store, tree, dir)) < 0)
        return err;
    if (*count > 0 && (*links)[*count - 1].version == link.version && link.version != 0) {
        free((*links)[*count - 1].policy);
        imgstore_strings_free((*links)[*count - 1].signatures,
                              (*links)[*count - 1].signature_count);
        (*links)[*count - 1] = link;
        return 0;
    }
    if (!(grown = realloc(*links, (*count + 1) * sizeof(*grown)))) {
        free(link.policy);
        imgstore_strings_free(link.signatures, link.signature_count);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    *links = grown;
    (*links)[(*count)++] = link;
    return 0;
}

int imgstore_store_policy_chain(imgstore_policy_link **out, size_t *count_out,
                                imgstore_store *store)
{
    imgstore_policy_link *links = NULL;
    git_revwalk *walk = NULL;
    git_oid oid, last_trust;
    bool have_last = false;
    size_t count = 0;
    int err = 0, rc;

    *out = NULL;
    *count_out = 0;
    if ((rc = git_revwalk_new(&walk, store->repo)) < 0 ||
        (rc = git_revwalk_push_ref(walk, IMGSTORE_STORE_REF)) < 0) {
        err = imgstore_store__git_error(rc, "cannot walk the history");
        goto done;
    }
    git_revwalk_simplify_first_parent(walk);
    git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL | GIT_SORT_REVERSE);
    while (err == 0 && (rc = git_revwalk_next(&oid, walk)) == 0) {
        git_commit *commit = NULL;
        git_tree *tree = NULL;
        git_tree_entry *entry = NULL;

        uint64_t archived = 0;

        if (git_commit_lookup(&commit, store->repo, &oid) == 0 &&
            git_commit_tree(&tree, commit) == 0 && count == 0 && !have_last &&
            (err = imgstore_store__cut_policy_steps(&archived, store, commit)) == 0) {
            /* a cut root: the steps before its policy are in its archive (cut.c) */
            for (uint64_t n = 1; n <= archived && err == 0; n++) {
                char dir[64];

                snprintf(dir, sizeof(dir), "archive/trust/%llu", (unsigned long long)n);
                err = chain_add(&links, &count, store, tree, dir);
            }
        }
        if (err == 0 && tree && git_tree_entry_bypath(&entry, tree, "trust") == 0 &&
            (!have_last || !git_oid_equal(&last_trust, git_tree_entry_id(entry)))) {
            git_oid_cpy(&last_trust, git_tree_entry_id(entry));
            have_last = true;
            err = chain_add(&links, &count, store, tree, "trust");
        }
        git_tree_entry_free(entry);
        git_tree_free(tree);
        git_commit_free(commit);
    }
    if (err == 0 && rc < 0 && rc != GIT_ITEROVER)
        err = imgstore_store__git_error(rc, "cannot walk the history");
    if (err == 0 && count == 0)
        err = imgstore_error_set(IMGSTORE_ENOTFOUND, "%s has no trust policy", store->path);
    if (err == 0) {
        *out = links;
        *count_out = count;
        links = NULL;
    }
done:
    imgstore_policy_chain_free(links, count);
    git_revwalk_free(walk);
    return err;
}

/* ---- taking in ------------------------------------------------------------------------ */

/* Verify one armored signature over msg and name its file after the signer; `id_out` (may be
 * NULL) gets the signer's key id as `imgstore key show` and ssh-keygen -l spell it. */
static int signature_file(char name_out[IMGSTORE_STORE__SIG_NAME_MAX],
                          char id_out[IMGSTORE_SIGN_KEYID_MAX], const imgstore_policy *policy,
                          imgstore_role role, const char *armored, size_t len, const void *msg,
                          size_t msg_len)
{
    imgstore_sign_pubkey signer;
    imgstore_trust_status one;
    const char *list[1] = {armored};
    int err;

    if ((err = imgstore_sign_sshsig_verify(&signer, armored, len, IMGSTORE_SIGN_NAMESPACE, msg,
                                           msg_len)) < 0)
        return err;
    if ((err = imgstore_trust_signatures_count(&one, policy, role, list, 1, msg, msg_len)) < 0)
        return err;
    if (one.valid == 0) {
        char id[IMGSTORE_SIGN_KEYID_MAX];

        imgstore_sign_pubkey_fingerprint(id, &signer);
        return imgstore_error_set(IMGSTORE_EVERIFY, "key %s is not a %s key of trust policy %llu",
                                  id, imgstore_schema_role_name(role),
                                  (unsigned long long)policy->version);
    }
    imgstore_store__sig_file_name(name_out, &signer);
    if (id_out)
        imgstore_sign_pubkey_fingerprint(id_out, &signer);
    return 0;
}

typedef struct {
    imgstore_store *store;
    const char *name, *version;
    const char *armored;
    size_t len;
    imgstore_trust_status status;
} add_edit;

static int add_edit_fn(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    add_edit *e = payload;
    imgstore_policy *policy = NULL;
    char path[512], dir[512], sig_path[1024], file[IMGSTORE_STORE__SIG_NAME_MAX];
    char key_id[IMGSTORE_SIGN_KEYID_MAX];
    char *bytes = NULL;
    size_t len = 0;
    git_oid blob;
    int err;

    imgstore_store__version_path(path, sizeof(path), e->store, e->name, e->version,
                                 "manifest.json");
    imgstore_store__version_path(dir, sizeof(dir), e->store, e->name, e->version, "signatures");
    if ((err = imgstore_store__policy_load(&policy, NULL, e->store, tip)) < 0)
        goto done;
    if ((err = imgstore_store__read_small_blob(&bytes, &len, e->store, tip, path,
                                               IMGSTORE_MANIFEST_MAX_BYTES)) < 0) {
        if (err == IMGSTORE_ENOTFOUND)
            err = imgstore_error_set(IMGSTORE_ENOTFOUND, "no version %s of image %s", e->version,
                                     e->name);
        goto done;
    }
    if ((err = signature_file(file, key_id, policy, IMGSTORE_ROLE_RELEASE, e->armored, e->len,
                              bytes, len)) < 0)
        goto done;
    snprintf(sig_path, sizeof(sig_path), "%s/%s", dir, file);
    git_oid_cpy(tree_out, git_tree_id(tip));
    if ((err = imgstore_store__write_blob(&blob, e->store, e->armored, e->len)) < 0 ||
        (err = imgstore_store__tree_set(tree_out, e->store, sig_path, &blob, GIT_FILEMODE_BLOB)) <
            0 ||
        (err = imgstore_store__signatures_check_at(&e->status, e->store, tree_out, dir, policy,
                                                   IMGSTORE_ROLE_RELEASE, bytes, len)) < 0)
        goto done;
    /* the subject local signing writes too (trust.c): one spelling of a key id (issue #10) */
    if (!(*message_out = imgstore_strfmt("sign %s %s by %s\n", e->name, e->version, key_id)))
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
done:
    free(bytes);
    imgstore_policy_free(policy);
    return err;
}

int imgstore_store_add_signature(imgstore_trust_status *status_out, imgstore_store *store,
                                 const char *name, const char *version, const char *armored,
                                 size_t len, const imgstore_sign_key *commit_key, const char *actor)
{
    add_edit edit = {store, name, version, armored, len, {0}};
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0)
        return err;
    if (!armored || len == 0 || len > IMGSTORE_SIGN_ARMOR_MAX)
        return imgstore_error_set(IMGSTORE_EINVALID, "signature: empty or over %d bytes",
                                  IMGSTORE_SIGN_ARMOR_MAX);
    err = imgstore_store__commit(store, actor, commit_key, add_edit_fn, &edit);
    if (err == IMGSTORE_STORE_UNCHANGED) /* that key's signature was already there */
        err = imgstore_store_version_trust(&edit.status, store, name, version);
    if (err == 0 && status_out)
        *status_out = edit.status;
    return err;
}

typedef struct {
    imgstore_store *store;
    const imgstore_channel_state *state;
    const char *bytes;
    size_t len;
    const char *const *armored;
    size_t sig_count;
} put_edit;

/* A client-built state's stack must be the one this move derives from the current state
 * (imgstore_trust_stack_next, as the client ran it): it is signed, so a deploy key could
 * otherwise plant a rollback target the channel never ran. A state without one (an older
 * client) is taken; the move after it replays the history once. */
static int check_stack(const put_edit *e, imgstore_channel_state *current)
{
    const imgstore_channel_state *s = e->state;
    const char *expected[IMGSTORE_CHANNEL_STACK_MAX];
    size_t count = 0;
    int err;

    if (current && !current->has_stack &&
        (err = imgstore_store__stack_replayed(current, e->store)) < 0)
        return err;
    if ((err = imgstore_trust_stack_next(expected, &count, current ? current->version : NULL,
                                         current ? (const char *const *)current->stack : NULL,
                                         current ? current->stack_count : 0, s->action,
                                         s->version)) < 0)
        return err;
    if (s->stack_count != count)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "state: stack holds %zu versions where this %s from sequence "
                                  "%llu leaves %zu below %s (docs/format.md)",
                                  s->stack_count, s->action,
                                  (unsigned long long)(current ? current->sequence : 0), count,
                                  s->version);
    for (size_t i = 0; i < count; i++) {
        if (strcmp(s->stack[i], expected[i]) != 0)
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      "state: stack[%zu] is %s where this %s from sequence %llu "
                                      "leaves %s (docs/format.md)",
                                      i, s->stack[i], s->action,
                                      (unsigned long long)(current ? current->sequence : 0),
                                      expected[i]);
    }
    return 0;
}

/* Everything a state built elsewhere must satisfy against the tip it lands on. */
static int check_state(const put_edit *e, git_tree *tip, const imgstore_policy *policy)
{
    const imgstore_channel_state *s = e->state;
    imgstore_channel_state *current = NULL;
    imgstore_manifest *manifest = NULL;
    imgstore_trust_status status;
    char digest[65];
    int64_t at = 0, expires = 0, now = (int64_t)time(NULL);
    int err;

    err = imgstore_store__channel_load(&current, e->store, tip, s->name, s->channel);
    if (err < 0 && err != IMGSTORE_ENOTFOUND)
        goto done;
    err = 0;
    if (s->sequence != (current ? current->sequence + 1 : 1)) {
        err = imgstore_error_set(IMGSTORE_ELOCKED,
                                 "%s/%s is at sequence %llu; a new state must carry %llu, not "
                                 "%llu (fetch the current state and build on it)",
                                 s->name, s->channel,
                                 (unsigned long long)(current ? current->sequence : 0),
                                 (unsigned long long)(current ? current->sequence + 1 : 1),
                                 (unsigned long long)s->sequence);
        goto done;
    }
    if ((current && (!s->previous_version || strcmp(s->previous_version, current->version))) ||
        (!current && s->previous_version)) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "state: previous_version must be %s",
                                 current ? current->version : "absent for a new channel");
        goto done;
    }
    if (s->has_stack && (err = check_stack(e, current)) < 0)
        goto done;
    if ((err = imgstore_store__manifest_load(&manifest, digest, e->store, tip, s->name,
                                             s->version)) < 0)
        goto done;
    if (strcmp(digest, s->manifest_sha256) != 0) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "state: manifest_sha256 %s is not the digest of %s %s (%s)",
                                 s->manifest_sha256, s->name, s->version, digest);
        goto done;
    }
    if ((err = imgstore_store__version_status(&status, e->store, tip, policy, s->name,
                                              s->version)) < 0)
        goto done;
    if (!status.trusted) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s %s has %zu of the %u release signatures it needs", s->name,
                                 s->version, status.valid, status.threshold);
        goto done;
    }
    if (imgstore_time_parse(&at, s->time) < 0 || at > now + CLOCK_SKEW_MAX ||
        at < now - CLOCK_SKEW_MAX) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "state: time %s is more than %d s from the server's clock",
                                 s->time, CLOCK_SKEW_MAX);
        goto done;
    }
    if (!s->expires || imgstore_time_parse(&expires, s->expires) < 0 || expires <= at ||
        expires - at > policy->channel_ttl_seconds) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "state: expires must be after time and at most %lld s later",
                                 (long long)policy->channel_ttl_seconds);
        goto done;
    }
    if ((err = imgstore_trust_signatures_count(&status, policy, IMGSTORE_ROLE_DEPLOY, e->armored,
                                               e->sig_count, e->bytes, e->len)) < 0)
        goto done;
    if (!status.trusted || status.invalid)
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s/%s: the state has %zu of the %u deploy signatures it "
                                 "needs%s%s",
                                 s->name, s->channel, status.valid, status.threshold,
                                 status.invalid ? "; " : "",
                                 status.invalid ? imgstore_error_last() : "");
done:
    imgstore_manifest_free(manifest);
    imgstore_channel_state_free(current);
    return err;
}

static int put_edit_fn(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    put_edit *e = payload;
    const imgstore_channel_state *s = e->state;
    imgstore_policy *policy = NULL;
    git_oid blob;
    char path[512], dir[512];
    int err;

    if ((err = imgstore_store__policy_load(&policy, NULL, e->store, tip)) < 0 ||
        (err = check_state(e, tip, policy)) < 0)
        goto done;
    snprintf(path, sizeof(path), "channels/%s/%s.json", s->name, s->channel);
    snprintf(dir, sizeof(dir), "channels/%s/%s.sigs", s->name, s->channel);
    git_oid_cpy(tree_out, git_tree_id(tip));
    if ((err = imgstore_store__write_blob(&blob, e->store, e->bytes, e->len)) < 0 ||
        (err = imgstore_store__tree_set(tree_out, e->store, dir, NULL, GIT_FILEMODE_TREE)) < 0 ||
        (err = imgstore_store__tree_set(tree_out, e->store, path, &blob, GIT_FILEMODE_BLOB)) < 0)
        goto done;
    /* keep the sound signatures by deploy keys (check_state counted them), named by signer */
    for (size_t i = 0; i < e->sig_count && err == 0; i++) {
        char file[IMGSTORE_STORE__SIG_NAME_MAX], sig_path[1024];
        git_oid sig_blob;

        if (signature_file(file, NULL, policy, IMGSTORE_ROLE_DEPLOY, e->armored[i],
                           strlen(e->armored[i]), e->bytes, e->len) < 0)
            continue;
        snprintf(sig_path, sizeof(sig_path), "%s/%s", dir, file);
        if ((err = imgstore_store__write_blob(&sig_blob, e->store, e->armored[i],
                                              strlen(e->armored[i]))) == 0)
            err = imgstore_store__tree_set(tree_out, e->store, sig_path, &sig_blob,
                                           GIT_FILEMODE_BLOB);
    }
    if (err < 0)
        goto done;
    if (!(*message_out = imgstore_store__move_message(s)))
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
done:
    imgstore_policy_free(policy);
    return err;
}

int imgstore_store_channel_put_signed(imgstore_channel_state **out, imgstore_store *store,
                                      const char *bytes, size_t len, const char *const *armored,
                                      size_t sig_count, const imgstore_sign_key *commit_key,
                                      const char *actor)
{
    imgstore_channel_state *state = NULL;
    put_edit edit;
    int err;

    *out = NULL;
    if (!bytes || len == 0 || len > STATE_MAX || sig_count > SIGNATURES_MAX ||
        (sig_count && !armored))
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "state: empty, over %u bytes, or over %d signatures", STATE_MAX,
                                  SIGNATURES_MAX);
    for (size_t i = 0; i < sig_count; i++) {
        if (!armored[i] || strlen(armored[i]) > IMGSTORE_SIGN_ARMOR_MAX)
            return imgstore_error_set(IMGSTORE_EINVALID, "signature %zu: empty or too long", i + 1);
    }
    if ((err = imgstore_schema_channel_parse(&state, bytes, len)) < 0)
        return err;
    /* the bytes signed must be the bytes stored, so only the canonical form is taken */
    {
        char *canonical = NULL;
        size_t canonical_len = 0;

        if ((err = imgstore_schema_channel_encode(&canonical, &canonical_len, state)) == 0 &&
            (canonical_len != len || memcmp(canonical, bytes, len) != 0))
            err = imgstore_error_set(IMGSTORE_EINVALID,
                                     "state: not in canonical form (sorted keys, no spaces)");
        free(canonical);
        if (err < 0)
            goto done;
    }
    edit = (put_edit){store, state, bytes, len, armored, sig_count};
    if ((err = imgstore_store__commit(store, actor ? actor : state->actor, commit_key, put_edit_fn,
                                      &edit)) == 0) {
        *out = state;
        state = NULL;
    } else if (err == IMGSTORE_STORE_UNCHANGED) {
        err = imgstore_error_set(IMGSTORE_ELOCKED, "%s/%s already holds this state", state->name,
                                 state->channel);
    }
done:
    imgstore_channel_state_free(state);
    return err;
}
