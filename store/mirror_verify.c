/*
 * What a read replica checks before it takes commits from its primary (issue #12): every
 * commit between its own tip and the fetched one, oldest first, against the policy in force
 * at that commit. A replica trusts nothing the primary says beyond policy 1, which it pinned
 * on its first sync (or was given): so it checks what a reader would check, once, as the
 * commits arrive, using the same checks (policy steps from signed.c, signature counts from
 * trust.c, chunk and file digests from verify.c).
 *
 * Cost: proportional to what is new. Each commit's trees are compared with its parent's by
 * id, so only the directories a commit changed are opened: one image's versions directory
 * (the same tree a push parses and rewrites), one channel directory, trust/. Only new
 * versions are hashed. Nothing here walks all versions or all commits, except when the
 * fetched tip is not a descendant (the walk to the first commit proves the rewrite). A
 * fetched line that starts at a cut is checked as one commit whose parent is the replica's
 * tip, after mirror_cut.c has checked what the cut says about the history it dropped.
 *
 * Not here: fetching and moving the ref (mirror.c), HTTP (server/).
 */
#include "store/store_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    imgstore_store *store;
    imgstore_mirror_stats *stats;
    const char *pinned;
    imgstore_policy *policy; /* in force at the commit being checked; NULL before policy 1 */
    char commit[12];         /* short id of that commit, for messages */
    const git_oid *from;     /* the replica's tip; NULL for a first sync */
    git_tree *from_tree;
} range_ctx;

/* Every failure names the commit it was found in: "commit 1a2b3c4d5e6: ...". */
static int refuse(range_ctx *ctx, const char *fmt, const char *detail)
{
    char message[1536];

    snprintf(message, sizeof(message), fmt, detail ? detail : "");
    return imgstore_error_set(IMGSTORE_EVERIFY, "commit %s: %s", ctx->commit, message);
}

static int refusef(range_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int refusef(range_ctx *ctx, const char *fmt, ...)
{
    char message[1536];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return refuse(ctx, "%s", message);
}

/* The commits after `from` up to `to`, newest first, through first parents. A merge, or
 * reaching a first commit that is not a cut without meeting `from`, is a history the
 * replica cannot take; *cut_out says the oldest one collected is a cut. */
static int collect(git_oid **out, size_t *count_out, bool *cut_out, imgstore_store *store,
                   const git_oid *from, const git_oid *to)
{
    git_oid *oids = NULL, at = *to;
    size_t count = 0, cap = 0;
    int err = 0, rc;

    *out = NULL;
    *count_out = 0;
    *cut_out = false;
    while (!from || !git_oid_equal(&at, from)) {
        git_commit *commit = NULL;
        imgstore_store__cut_record record;
        git_oid current = at;
        unsigned parents;
        char hex[GIT_OID_HEXSZ + 1];

        git_oid_tostr(hex, sizeof(hex), &current);
        if ((rc = git_commit_lookup(&commit, store->repo, &at)) < 0) {
            err = imgstore_store__git_error(rc, "commit %s", hex);
            goto done;
        }
        parents = git_commit_parentcount(commit);
        if (parents == 1)
            git_oid_cpy(&at, git_commit_parent_id(commit, 0));
        /* a cut is checked against the replica's tip as if that were its parent */
        *cut_out = parents == 0 && imgstore_store__cut_read(&record, commit) == 0;
        git_commit_free(commit);
        if (parents > 1) {
            err = imgstore_error_set(IMGSTORE_EVERIFY,
                                     "commit %.11s is a merge: a store's history is one line of "
                                     "commits (docs/format.md)",
                                     hex);
            goto done;
        }
        if (count == cap) {
            git_oid *grown = realloc(oids, (cap = cap ? cap * 2 : 64) * sizeof(*grown));

            if (!grown) {
                err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
                goto done;
            }
            oids = grown;
        }
        oids[count++] = current;
        if (parents == 0) {
            if (from && !*cut_out) {
                char from_hex[GIT_OID_HEXSZ + 1];

                git_oid_tostr(from_hex, sizeof(from_hex), from);
                err = imgstore_error_set(IMGSTORE_EVERIFY,
                                         "the primary's history does not contain this replica's "
                                         "tip %.11s and does not start at a cut: it was rewritten "
                                         "(or this replica follows another store); nothing taken",
                                         from_hex);
                goto done;
            }
            break;
        }
    }
    *out = oids;
    *count_out = count;
    oids = NULL;
done:
    free(oids);
    return err;
}

/* A commit's gpgsig, when it has one, must verify (namespace "git") and be made by a key of
 * the policy before or after it. A commit without one is taken: a keyless server writes them
 * (docs/server.md), and what they hold is trusted only through the signatures inside. */
static int check_commit_signature(range_ctx *ctx, const git_oid *oid, const imgstore_policy *before,
                                  const imgstore_policy *after, bool cut)
{
    git_buf signature = {0}, data = {0};
    imgstore_sign_pubkey signer;
    bool listed = false;
    int err = 0, rc;

    rc = git_commit_extract_signature(&signature, &data, ctx->store->repo, (git_oid *)oid, NULL);
    if (rc == GIT_ENOTFOUND && cut)
        return refuse(ctx, "a cut must be signed by a release or root key; this one is not%s", "");
    if (rc == GIT_ENOTFOUND) {
        ctx->stats->unsigned_commits++;
        return 0;
    }
    if (rc < 0)
        return imgstore_store__git_error(rc, "commit %s: cannot read its signature", ctx->commit);
    if (imgstore_sign_sshsig_verify(&signer, signature.ptr, signature.size, "git", data.ptr,
                                    data.size) < 0) {
        err = refuse(ctx, "its signature does not verify: %s", imgstore_error_last());
        goto done;
    }
    /* a cut removes history: only the keys that may remove versions (prune) may make one */
    for (int role = 0; role < IMGSTORE_ROLE_COUNT && !listed; role++) {
        if (cut && role == IMGSTORE_ROLE_DEPLOY)
            continue;
        listed = (before && imgstore_store__role_index(before, role, &signer) >= 0) ||
                 (after && imgstore_store__role_index(after, role, &signer) >= 0);
    }
    if (!listed) {
        char id[IMGSTORE_SIGN_KEYID_MAX];

        imgstore_sign_pubkey_fingerprint(id, &signer);
        err = refusef(ctx, "it is signed by %s, a key no trust policy in force lists%s", id,
                      cut ? " as a release or root key" : "");
    }
done:
    git_buf_dispose(&signature);
    git_buf_dispose(&data);
    return err;
}

/* trust/ changed: the next policy, signed by a threshold of the current one's root keys. */
static int check_policy(imgstore_policy **next_out, range_ctx *ctx, const git_tree *tree)
{
    imgstore_policy_link link;
    int err;

    *next_out = NULL;
    if ((err = imgstore_store__policy_link_at(&link, ctx->store, tree)) < 0)
        return refuse(ctx, "trust/: %s", imgstore_error_last());
    if (ctx->policy && link.version == ctx->policy->version)
        err = refusef(ctx,
                      "trust/ changed but policy %llu stayed policy %llu: a change to the "
                      "policy or its root signatures is a new policy version",
                      (unsigned long long)link.version, (unsigned long long)link.version);
    else if ((err = imgstore_trust_policy_link_verify(next_out, ctx->policy, &link,
                                                      ctx->policy ? NULL : ctx->pinned)) < 0)
        err = refuse(ctx, "%s", imgstore_error_last());
    else
        ctx->stats->policies++;
    free(link.policy);
    imgstore_strings_free(link.signatures, link.signature_count);
    return err;
}

static int subtree(git_tree **out, imgstore_store *store, const git_tree *root, const char *path)
{
    git_oid id = imgstore_store__id_at(root, path);
    int rc;

    *out = NULL;
    if (git_oid_is_zero(&id))
        return 0;
    if ((rc = git_tree_lookup(out, store->repo, &id)) < 0)
        return imgstore_store__git_error(rc, "%s: not a tree", path);
    return 0;
}

/* A version new in this commit: its manifest, its release signatures (below threshold is
 * pending, as the primary stores it; a signature that does not verify is damage) and every
 * chunk and file, hashed against the manifest. */
static int check_new_version(range_ctx *ctx, const git_tree *tree, const char *name,
                             const char *version)
{
    imgstore_manifest *m = NULL;
    imgstore_trust_status status;
    char path[512], *bytes = NULL;
    size_t len = 0;
    uint64_t hashed = 0;
    int err;

    imgstore_store__version_path(path, sizeof(path), ctx->store, name, version, "manifest.json");
    if ((err = imgstore_store__manifest_load(&m, NULL, ctx->store, tree, name, version)) < 0 ||
        (err = imgstore_store__read_small_blob(&bytes, &len, ctx->store, tree, path,
                                               IMGSTORE_MANIFEST_MAX_BYTES)) < 0) {
        err = refuse(ctx, "%s", imgstore_error_last());
        goto done;
    }
    if (!imgstore_schema_manifest_is_canonical(bytes, len)) {
        err = refuse(ctx, "%s is not canonical JSON", path);
        goto done;
    }
    if ((err = imgstore_store__version_status(&status, ctx->store, tree, ctx->policy, name,
                                              version)) < 0 ||
        status.invalid) {
        err = refusef(ctx, "%s %s: a release signature does not verify: %s", name, version,
                      imgstore_error_last());
        goto done;
    }
    if ((err = imgstore_store__verify_files_at(&hashed, ctx->store, tree, m)) < 0) {
        err = refuse(ctx, "%s", imgstore_error_last());
        goto done;
    }
    ctx->stats->versions++;
    ctx->stats->bytes_hashed += hashed;
done:
    ctx->stats->bytes_hashed += err < 0 ? hashed : 0;
    free(bytes);
    imgstore_manifest_free(m);
    return err;
}

/* A version that was there before: immutable, except that signatures may be added. */
static int check_changed_version(range_ctx *ctx, const git_tree *parent, const git_tree *tree,
                                 const char *name, const char *version)
{
    const char *parts[] = {"manifest.json", "files"};
    imgstore_trust_status status;

    for (size_t i = 0; i < 2; i++) {
        char path[512];
        git_oid was, is;

        imgstore_store__version_path(path, sizeof(path), ctx->store, name, version, parts[i]);
        was = imgstore_store__id_at(parent, path);
        is = imgstore_store__id_at(tree, path);
        if (!git_oid_equal(&was, &is))
            return refusef(ctx, "%s changed: stored versions are immutable", path);
    }
    if (imgstore_store__version_status(&status, ctx->store, tree, ctx->policy, name, version) < 0 ||
        status.invalid)
        return refusef(ctx, "%s %s: a release signature does not verify: %s", name, version,
                       imgstore_error_last());
    ctx->stats->signatures++;
    return 0;
}

/* The versions in `is` (images/<name>, or one of its shards) that this commit added or
 * changed against `was` (NULL: none before); removed ones are taken (a removal is a commit
 * like any other, and the replica serves what its primary keeps). Merged in git's tree
 * order: both directories are read once. `shard`: the shard they are in (NULL: flat). */
static int check_versions(range_ctx *ctx, const git_tree *parent, const git_tree *tree,
                          const char *name, const char *shard, const git_tree *was,
                          const git_tree *is)
{
    size_t i = 0, j = 0, was_count, is_count;
    int err = 0;

    was_count = was ? git_tree_entrycount(was) : 0;
    is_count = is ? git_tree_entrycount(is) : 0;
    while (err == 0 && j < is_count) {
        const git_tree_entry *b = git_tree_entry_byindex(is, j);
        const git_tree_entry *a = i < was_count ? git_tree_entry_byindex(was, i) : NULL;
        int order = a ? git_tree_entry_cmp(a, b) : 1;

        if (order < 0) {
            i++; /* removed */
            continue;
        }
        if (git_tree_entry_type(b) != GIT_OBJECT_TREE) {
            err = shard ? refusef(ctx, "images/%s/%s/%s is not a directory", name, shard,
                                  git_tree_entry_name(b))
                        : refusef(ctx, "images/%s/%s is not a directory", name,
                                  git_tree_entry_name(b));
            break;
        }
        if (shard && imgstore_store__shard_version_check(name, shard, git_tree_entry_name(b)) < 0) {
            err = refuse(ctx, "%s", imgstore_error_last());
            break;
        }
        if (order > 0)
            err = check_new_version(ctx, tree, name, git_tree_entry_name(b));
        else if (!git_oid_equal(git_tree_entry_id(a), git_tree_entry_id(b)))
            err = check_changed_version(ctx, parent, tree, name, git_tree_entry_name(b));
        i += order == 0;
        j++;
    }
    return err;
}

/* The versions of one image that this commit added or changed: in an imgstore/2 store, shard
 * by shard, each shard checked for its name and kind and read only when its id changed. */
static int check_image(range_ctx *ctx, const git_tree *parent, const git_tree *tree,
                       const char *name)
{
    git_tree *was = NULL, *is = NULL, *was_shard = NULL, *is_shard = NULL;
    char path[256];
    int err;

    snprintf(path, sizeof(path), "images/%s", name);
    if ((err = subtree(&was, ctx->store, parent, path)) < 0 ||
        (err = subtree(&is, ctx->store, tree, path)) < 0)
        goto done;
    if (ctx->store->layout != IMGSTORE_STORE__SHARDED) {
        err = check_versions(ctx, parent, tree, name, NULL, was, is);
        goto done;
    }
    for (size_t j = 0; is && err == 0 && j < git_tree_entrycount(is); j++) {
        const git_tree_entry *b = git_tree_entry_byindex(is, j);
        const char *shard = git_tree_entry_name(b);
        const git_tree_entry *a = was ? git_tree_entry_byname(was, shard) : NULL;
        char shard_path[300];

        if (imgstore_store__shard_check(name, shard, b) < 0) {
            err = refuse(ctx, "%s", imgstore_error_last());
            break;
        }
        if (a && git_oid_equal(git_tree_entry_id(a), git_tree_entry_id(b)))
            continue;
        snprintf(shard_path, sizeof(shard_path), "%s/%s", path, shard);
        if ((err = subtree(&was_shard, ctx->store, parent, shard_path)) < 0 ||
            (err = subtree(&is_shard, ctx->store, tree, shard_path)) < 0)
            break;
        err = check_versions(ctx, parent, tree, name, shard, was_shard, is_shard);
        git_tree_free(was_shard);
        git_tree_free(is_shard);
        was_shard = is_shard = NULL;
    }
done:
    git_tree_free(was_shard);
    git_tree_free(is_shard);
    git_tree_free(is);
    git_tree_free(was);
    return err;
}

/* The children of `path` in `tree` whose ids differ from those in `parent`, added ones
 * included: `fn` is called for each. Removed entries go to `removed` (may be NULL: taken). */
typedef int (*entry_fn)(range_ctx *ctx, const git_tree *parent, const git_tree *tree,
                        const char *dir, const char *entry);

static int changed_entries(range_ctx *ctx, const git_tree *parent, const git_tree *tree,
                           const char *path, entry_fn changed, entry_fn removed)
{
    git_tree *was = NULL, *is = NULL;
    int err;

    if ((err = subtree(&was, ctx->store, parent, path)) < 0 ||
        (err = subtree(&is, ctx->store, tree, path)) < 0)
        goto done;
    for (size_t j = 0; is && err == 0 && j < git_tree_entrycount(is); j++) {
        const git_tree_entry *b = git_tree_entry_byindex(is, j);
        const git_tree_entry *a = was ? git_tree_entry_byname(was, git_tree_entry_name(b)) : NULL;

        if (!a || !git_oid_equal(git_tree_entry_id(a), git_tree_entry_id(b)))
            err = changed(ctx, parent, tree, path, git_tree_entry_name(b));
    }
    for (size_t i = 0; removed && was && err == 0 && i < git_tree_entrycount(was); i++) {
        const char *entry = git_tree_entry_name(git_tree_entry_byindex(was, i));

        if (!is || !git_tree_entry_byname(is, entry))
            err = removed(ctx, parent, tree, path, entry);
    }
done:
    git_tree_free(is);
    git_tree_free(was);
    return err;
}

static int image_changed(range_ctx *ctx, const git_tree *parent, const git_tree *tree,
                         const char *dir, const char *entry)
{
    (void)dir;
    if (!ctx->policy)
        return refusef(ctx, "images/%s before any trust policy", entry);
    if (imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, entry) < 0)
        return refuse(ctx, "%s", imgstore_error_last());
    return check_image(ctx, parent, tree, entry);
}

/* channels/<name>/<channel>.json or .sigs changed: the state at this commit must carry a
 * threshold of deploy signatures, pin the manifest stored for a trusted version, and move
 * its sequence forward (the same state may gain signatures; it may not go back). */
static int check_state(range_ctx *ctx, const git_tree *parent, const git_tree *tree,
                       const char *name, const char *channel)
{
    imgstore_channel_state *state = NULL, *before = NULL;
    imgstore_manifest *manifest = NULL;
    imgstore_trust_status status;
    char *bytes = NULL, *before_bytes = NULL, **sigs = NULL, **before_sigs = NULL, digest[65];
    size_t len = 0, before_len = 0, sig_count = 0, before_count = 0;
    int err;

    if ((err = imgstore_store__channel_signed_at(&bytes, &len, &sigs, &sig_count, ctx->store, tree,
                                                 name, channel)) < 0 ||
        (err = imgstore_store__channel_load(&state, ctx->store, tree, name, channel)) < 0) {
        err = refuse(ctx, "%s", imgstore_error_last());
        goto done;
    }
    err = parent
              ? imgstore_store__channel_signed_at(&before_bytes, &before_len, &before_sigs,
                                                  &before_count, ctx->store, parent, name, channel)
              : IMGSTORE_ENOTFOUND;
    if (err == 0)
        err = imgstore_store__channel_load(&before, ctx->store, parent, name, channel);
    if (err == IMGSTORE_ENOTFOUND)
        err = 0;
    else if (err < 0) {
        err = refuse(ctx, "%s", imgstore_error_last());
        goto done;
    }
    if (before && (state->sequence < before->sequence ||
                   (state->sequence == before->sequence &&
                    (len != before_len || memcmp(bytes, before_bytes, len) != 0)))) {
        err = refusef(ctx, "%s/%s went from sequence %llu to %llu: a channel's sequence only grows",
                      name, channel, (unsigned long long)before->sequence,
                      (unsigned long long)state->sequence);
        goto done;
    }
    if ((err = imgstore_trust_signatures_count(&status, ctx->policy, IMGSTORE_ROLE_DEPLOY,
                                               (const char *const *)sigs, sig_count, bytes, len)) <
            0 ||
        !status.trusted || status.invalid) {
        err = refusef(ctx, "%s/%s sequence %llu has %zu of the %u deploy signatures it needs%s%s",
                      name, channel, (unsigned long long)state->sequence, status.valid,
                      status.threshold, status.invalid ? "; " : "",
                      status.invalid ? imgstore_error_last() : "");
        goto done;
    }
    if (imgstore_store__manifest_load(&manifest, digest, ctx->store, tree, name, state->version) <
            0 ||
        strcmp(digest, state->manifest_sha256) != 0) {
        err = refusef(ctx, "%s/%s points at %s, which is missing or whose manifest differs", name,
                      channel, state->version);
        goto done;
    }
    if ((err = imgstore_store__version_status(&status, ctx->store, tree, ctx->policy, name,
                                              state->version)) < 0 ||
        !status.trusted) {
        err = refusef(ctx, "%s/%s runs %s, which has %zu of the %u release signatures it needs",
                      name, channel, state->version, status.valid, status.threshold);
        goto done;
    }
    /* the stack is signed, but a deploy key must not plant a target: derive it as the
     * primary had to (imgstore_trust_stack_next), when both states carry one */
    if (before && before->has_stack && state->has_stack &&
        state->sequence == before->sequence + 1) {
        const char *expected[IMGSTORE_CHANNEL_STACK_MAX];
        size_t count = 0;

        if (imgstore_trust_stack_next(expected, &count, before->version,
                                      (const char *const *)before->stack, before->stack_count,
                                      state->action, state->version) < 0 ||
            count != state->stack_count) {
            err = refusef(ctx, "%s/%s: its rollback stack is not the one its move derives", name,
                          channel);
            goto done;
        }
        for (size_t i = 0; i < count; i++) {
            if (strcmp(expected[i], state->stack[i]) != 0) {
                err = refusef(ctx, "%s/%s: its rollback stack is not the one its move derives",
                              name, channel);
                goto done;
            }
        }
    }
    ctx->stats->states++;
done:
    imgstore_manifest_free(manifest);
    imgstore_channel_state_free(before);
    imgstore_channel_state_free(state);
    imgstore_strings_free(before_sigs, before_count);
    imgstore_strings_free(sigs, sig_count);
    free(before_bytes);
    free(bytes);
    return err;
}

static bool changed(const git_tree *parent, const git_tree *tree, const char *path)
{
    git_oid was = imgstore_store__id_at(parent, path), is = imgstore_store__id_at(tree, path);

    return !git_oid_equal(&was, &is);
}

/* "<channel>.json" or "<channel>.sigs" in channels/<name>. */
static int channel_entry_changed(range_ctx *ctx, const git_tree *parent, const git_tree *tree,
                                 const char *dir, const char *entry)
{
    const char *name = dir + strlen("channels/");
    size_t len = strlen(entry);
    char channel[256];

    if (len > 5 && len - 5 < sizeof(channel) &&
        (strcmp(entry + len - 5, ".json") == 0 || strcmp(entry + len - 5, ".sigs") == 0)) {
        snprintf(channel, sizeof(channel), "%.*s", (int)(len - 5), entry);
        if (imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, channel) < 0)
            return refuse(ctx, "%s", imgstore_error_last());
        if (strcmp(entry + len - 5, ".sigs") == 0) {
            char json[300];

            /* a move changes both: its .json entry checks the state once */
            snprintf(json, sizeof(json), "%s/%s.json", dir, channel);
            if (changed(parent, tree, json))
                return 0;
        }
        return check_state(ctx, parent, tree, name, channel);
    }
    return refusef(ctx, "unexpected entry %s/%s", dir, entry);
}

static int channel_entry_removed(range_ctx *ctx, const git_tree *parent, const git_tree *tree,
                                 const char *dir, const char *entry)
{
    (void)parent;
    (void)tree;
    return refusef(ctx,
                   "%s/%s was removed: a channel's states only move forward, it is never "
                   "deleted",
                   dir, entry);
}

static int channel_dir_changed(range_ctx *ctx, const git_tree *parent, const git_tree *tree,
                               const char *dir, const char *entry)
{
    char path[256];

    (void)dir;
    if (!ctx->policy)
        return refusef(ctx, "channels/%s before any trust policy", entry);
    if (imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, entry) < 0)
        return refuse(ctx, "%s", imgstore_error_last());
    snprintf(path, sizeof(path), "channels/%s", entry);
    return changed_entries(ctx, parent, tree, path, channel_entry_changed, channel_entry_removed);
}

/* `cut`: the commit is a cut root, checked as if the replica's tip were its parent (what
 * the replica serves moves from that tip's tree to the cut's), after mirror_cut.c has checked
 * what it archived. */
static int check_commit(range_ctx *ctx, const git_oid *oid, bool cut)
{
    static const char *const known[] = {
        IMGSTORE_STORE_MARKER, "images", "channels", "trust", "index", "archive"};
    git_commit *commit = NULL, *parent_commit = NULL;
    git_tree *tree = NULL, *parent = NULL;
    imgstore_policy *next = NULL;
    int err = 0, rc;

    git_oid_tostr(ctx->commit, sizeof(ctx->commit), oid);
    if ((rc = git_commit_lookup(&commit, ctx->store->repo, oid)) < 0 ||
        (rc = git_commit_tree(&tree, commit)) < 0 ||
        (git_commit_parentcount(commit) == 1 &&
         ((rc = git_commit_parent(&parent_commit, commit, 0)) < 0 ||
          (rc = git_commit_tree(&parent, parent_commit)) < 0))) {
        err = imgstore_store__git_error(rc, "commit %s", ctx->commit);
        goto done;
    }
    if (cut) {
        if (ctx->from_tree && (rc = git_tree_dup(&parent, ctx->from_tree)) < 0) {
            err = imgstore_store__git_error(rc, "commit %s", ctx->commit);
            goto done;
        }
        if ((err = imgstore_store__mirror_cut_check(&ctx->policy, ctx->stats, ctx->store, commit,
                                                    tree, ctx->from, ctx->from_tree, ctx->pinned)) <
            0)
            goto done;
    } else if (changed(parent, tree, "archive")) {
        err = refusef(ctx, "archive/ changed: only a cut writes it");
        goto done;
    }
    for (size_t i = 0; i < git_tree_entrycount(tree); i++) {
        const char *entry = git_tree_entry_name(git_tree_entry_byindex(tree, i));
        bool ok = false;

        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
            ok = ok || strcmp(entry, known[k]) == 0;
        if (!ok) {
            err = refusef(ctx, "unexpected top-level entry '%s'", entry);
            goto done;
        }
    }
    if (!git_tree_entry_byname(tree, IMGSTORE_STORE_MARKER)) {
        err = refusef(ctx, "no %s: not an imgstore store", IMGSTORE_STORE_MARKER);
        goto done;
    }
    /* the layout the replica reads with is the one its store began with */
    if (parent && changed(parent, tree, IMGSTORE_STORE_MARKER)) {
        err = refusef(ctx, "%s changed: a replica takes no change of the store's format",
                      IMGSTORE_STORE_MARKER);
        goto done;
    }
    if (changed(parent, tree, "trust")) {
        git_oid trust = imgstore_store__id_at(tree, "trust");

        if (git_oid_is_zero(&trust)) {
            err = refusef(ctx, "the trust policy was removed");
            goto done;
        }
        if ((err = check_policy(&next, ctx, tree)) < 0)
            goto done;
    }
    if ((err = check_commit_signature(ctx, oid, ctx->policy, next ? next : ctx->policy, cut)) < 0)
        goto done;
    if (next) {
        imgstore_policy_free(ctx->policy);
        ctx->policy = next;
        next = NULL;
    }
    /* index/ is derived and carries no trust: readers check every row they use */
    if (changed(parent, tree, "images") &&
        (err = changed_entries(ctx, parent, tree, "images", image_changed, NULL)) < 0)
        goto done;
    if (changed(parent, tree, "channels") &&
        (err = changed_entries(ctx, parent, tree, "channels", channel_dir_changed,
                               channel_entry_removed)) < 0)
        goto done;
    ctx->stats->commits++;
done:
    imgstore_policy_free(next);
    git_tree_free(parent);
    git_tree_free(tree);
    git_commit_free(parent_commit);
    git_commit_free(commit);
    return err;
}

int imgstore_store_verify_range(imgstore_mirror_stats *out, imgstore_store *store, const char *from,
                                const char *to, const char *policy_sha256)
{
    imgstore_mirror_stats stats;
    range_ctx ctx = {store, &stats, policy_sha256, NULL, "", NULL, NULL};
    git_oid from_oid, to_oid, *oids = NULL;
    git_commit *from_commit = NULL;
    git_tree *from_tree = NULL;
    size_t count = 0;
    bool cut = false;
    int err = 0, rc;

    memset(&stats, 0, sizeof(stats));
    if (!store || !to || git_oid_fromstr(&to_oid, to) < 0 ||
        (from && git_oid_fromstr(&from_oid, from) < 0))
        return imgstore_error_set(IMGSTORE_EINVALID, "verify_range: bad arguments");
    snprintf(stats.from, sizeof(stats.from), "%s", from ? from : "");
    snprintf(stats.to, sizeof(stats.to), "%s", to);
    if (from) {
        /* the policy in force at the replica's tip: checked when that tip was taken */
        if ((rc = git_commit_lookup(&from_commit, store->repo, &from_oid)) < 0 ||
            (rc = git_commit_tree(&from_tree, from_commit)) < 0) {
            err = imgstore_store__git_error(rc, "commit %s", from);
            goto done;
        }
        err = imgstore_store__policy_load(&ctx.policy, NULL, store, from_tree);
        if (err == IMGSTORE_ENOTFOUND)
            err = 0;
        if (err < 0)
            goto done;
        ctx.from = &from_oid;
        ctx.from_tree = from_tree;
    }
    if ((err = collect(&oids, &count, &cut, store, from ? &from_oid : NULL, &to_oid)) < 0)
        goto done;
    /* the layout: the replica's tip's, else that of the oldest commit fetched (the
     * primary's); no commit may change it (check_commit) */
    if (from_tree || count > 0) {
        git_commit *first = NULL;
        git_tree *first_tree = NULL;

        if (!from_tree && ((rc = git_commit_lookup(&first, store->repo, &oids[count - 1])) < 0 ||
                           (rc = git_commit_tree(&first_tree, first)) < 0))
            err = imgstore_store__git_error(rc, "commit %s", git_oid_tostr_s(&oids[count - 1]));
        else if ((err = imgstore_store__layout_at(&store->layout, store,
                                                  from_tree ? from_tree : first_tree)) < 0 &&
                 err != IMGSTORE_ENOTFOUND)
            err = imgstore_error_wrap(IMGSTORE_EVERIFY, "refused: ");
        else
            err = 0; /* no marker: check_commit refuses it with its reason */
        git_tree_free(first_tree);
        git_commit_free(first);
        if (err < 0)
            goto done;
    }
    for (size_t i = count; i-- > 0 && err == 0;)
        err = check_commit(&ctx, &oids[i], cut && i == count - 1);
done:
    if (out)
        *out = stats;
    free(oids);
    imgstore_policy_free(ctx.policy);
    git_tree_free(from_tree);
    git_commit_free(from_commit);
    return err;
}
