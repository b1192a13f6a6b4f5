/*
 * `verify`'s trust half: the chain of trust policies through history, and every channel
 * state's signatures, expiry, version and rollback stack. The per-version signature check
 * lives with the byte check in verify.c; the counting itself in trust.c.
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    imgstore_store *store;
    imgstore_verify_fn report;
    void *payload;
    int failures;
} trust_ctx;

static void emit(trust_ctx *ctx, const char *kind, const char *name, const char *what, int status,
                 const char *message, const imgstore_trust_status *trust)
{
    imgstore_verify_result r = {name,
                                what,
                                status,
                                status ? message : "",
                                0,
                                kind,
                                trust ? trust->valid : 0,
                                trust ? trust->threshold : 0};

    if (status)
        ctx->failures++;
    if (ctx->report)
        ctx->report(&r, ctx->payload);
}

/* Keep the first failure's message (payload: char[2048]) for readers that only need yes/no. */
static void first_failure(const imgstore_verify_result *r, void *payload)
{
    char *message = payload;

    if (r->status && !message[0])
        snprintf(message, 2048, "policy %s: %s", r->version, r->message);
}

/* The trust/ tree of one commit. A new policy version is checked against its predecessor's
 * root keys (policy 1 against its own) and reported; the same policy seen again (its
 * signatures changed) is checked against the same signer and reported only if it fails. */
static void check_policy(trust_ctx *ctx, git_tree *tree, const char *dir, uint64_t expect,
                         imgstore_policy **before, imgstore_policy **current)
{
    imgstore_policy *policy = NULL;
    imgstore_trust_status status = {0};
    char what[32], *bytes = NULL, message[2048], path[256], sigs[256];
    size_t len = 0;
    bool again;
    int err;

    snprintf(path, sizeof(path), "%s/policy.json", dir);
    snprintf(sigs, sizeof(sigs), "%s/signatures", dir);
    if ((err = imgstore_store__policy_load_in(&policy, NULL, ctx->store, tree, dir)) < 0) {
        emit(ctx, "policy", "trust", "?", IMGSTORE_EVERIFY, imgstore_error_last(), NULL);
        return;
    }
    snprintf(what, sizeof(what), "%llu", (unsigned long long)policy->version);
    if (expect && policy->version != expect) {
        snprintf(message, sizeof(message), "%s holds policy %llu", dir,
                 (unsigned long long)policy->version);
        emit(ctx, "policy", "trust", what, IMGSTORE_EVERIFY, message, NULL);
        imgstore_policy_free(policy);
        return;
    }
    again = *current && (*current)->version == policy->version;
    const imgstore_policy *signer =
        again ? (*before ? *before : policy) : (*current ? *current : policy);

    if (*current && !again && policy->version != (*current)->version + 1) {
        snprintf(message, sizeof(message),
                 "policy %llu follows policy %llu; versions must grow by one",
                 (unsigned long long)policy->version, (unsigned long long)(*current)->version);
        emit(ctx, "policy", "trust", what, IMGSTORE_EVERIFY, message, NULL);
    } else if ((err = imgstore_store__read_small_blob(&bytes, &len, ctx->store, tree, path,
                                                      64 * 1024)) < 0 ||
               (err = imgstore_store__signatures_check(&status, ctx->store, tree, sigs, signer,
                                                       IMGSTORE_ROLE_ROOT, bytes, len)) < 0) {
        emit(ctx, "policy", "trust", what, IMGSTORE_EVERIFY, imgstore_error_last(), NULL);
    } else if (!status.trusted || status.invalid) {
        snprintf(message, sizeof(message),
                 "policy %s has %zu of the %u root signatures of policy %llu it needs%s%s", what,
                 status.valid, status.threshold, (unsigned long long)signer->version,
                 status.invalid ? "; " : "", status.invalid ? imgstore_error_last() : "");
        emit(ctx, "policy", "trust", what, IMGSTORE_EVERIFY, message, &status);
    } else if (!again) {
        emit(ctx, "policy", "trust", what, 0, "", &status);
    }
    free(bytes);
    if (again) {
        imgstore_policy_free(policy);
        return;
    }
    imgstore_policy_free(*before);
    *before = *current;
    *current = policy;
}

/* Walk main's first-parent history oldest first; check the policy and its signatures each
 * time the trust/ tree changes, so a signature damaged later is caught too. */
static int verify_policy_chain(trust_ctx *ctx)
{
    imgstore_policy *before = NULL, *current = NULL;
    git_revwalk *walk = NULL;
    git_oid oid, last_blob;
    bool have_last = false;
    int rc;

    if ((rc = git_revwalk_new(&walk, ctx->store->repo)) < 0 ||
        (rc = git_revwalk_push_ref(walk, IMGSTORE_STORE_REF)) < 0)
        goto done;
    git_revwalk_simplify_first_parent(walk);
    git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL | GIT_SORT_REVERSE);
    while ((rc = git_revwalk_next(&oid, walk)) == 0) {
        git_commit *commit = NULL;
        git_tree *tree = NULL;
        git_tree_entry *entry = NULL;

        uint64_t archived = 0;
        bool cut = false;

        if (git_commit_lookup(&commit, ctx->store->repo, &oid) == 0 &&
            git_commit_tree(&tree, commit) == 0 && !have_last && !current) {
            cut = git_commit_parentcount(commit) == 0 &&
                  imgstore_store__cut_read(&(imgstore_store__cut_record){0}, commit) !=
                      IMGSTORE_ENOTFOUND;
            /* a cut root: the steps before its policy come from its archive, checked exactly
             * as they were when their commits were walked (cut.c) */
            if (imgstore_store__cut_policy_steps(&archived, ctx->store, commit) < 0)
                emit(ctx, "policy", "trust", "?", IMGSTORE_EVERIFY, imgstore_error_last(), NULL);
            for (uint64_t n = 1; n <= archived; n++) {
                char dir[64];

                snprintf(dir, sizeof(dir), "archive/trust/%llu", (unsigned long long)n);
                check_policy(ctx, tree, dir, n, &before, &current);
            }
        }
        if (tree && git_tree_entry_bypath(&entry, tree, "trust") == 0 &&
            (!have_last || !git_oid_equal(&last_blob, git_tree_entry_id(entry)))) {
            git_oid_cpy(&last_blob, git_tree_entry_id(entry));
            have_last = true;
            /* a cut's own policy follows its archive: with none, it must be policy 1 */
            check_policy(ctx, tree, "trust", cut ? archived + 1 : 0, &before, &current);
        }
        git_tree_entry_free(entry);
        git_tree_free(tree);
        git_commit_free(commit);
    }
    if (rc == GIT_ITEROVER)
        rc = 0;
    if (rc == 0 && !have_last)
        emit(ctx, "policy", "trust", "-", IMGSTORE_EVERIFY,
             "the store has no trust policy (trust/policy.json)", NULL);
done:
    imgstore_policy_free(current);
    imgstore_policy_free(before);
    git_revwalk_free(walk);
    return rc < 0 ? imgstore_store__git_error(rc, "cannot walk the history") : 0;
}

static void verify_channel(trust_ctx *ctx, git_tree *tip, const imgstore_policy *policy,
                           const char *name, const char *channel)
{
    imgstore_trust_status status = {0};
    imgstore_manifest *manifest = NULL;
    imgstore_channel_state *state = NULL;
    char message[2048];

    /* one reader's check, so verify and pull can never disagree; then the carried stack
     * against the history it summarises */
    if (imgstore_store_channel_manifest_get(&manifest, NULL, &state, ctx->store, name, channel) <
            0 ||
        imgstore_store__stack_check(ctx->store, state) < 0) {
        snprintf(message, sizeof(message), "%s", imgstore_error_last());
        imgstore_store__channel_status(&status, ctx->store, tip, policy, name, channel);
        emit(ctx, "channel", name, channel, IMGSTORE_EVERIFY, message, &status);
    } else {
        imgstore_store__channel_status(&status, ctx->store, tip, policy, name, channel);
        emit(ctx, "channel", name, channel, 0, "", &status);
    }
    imgstore_channel_state_free(state);
    imgstore_manifest_free(manifest);
}

/* The id of the tip's trust/ tree (policy and its root signatures); false when absent. */
static bool trust_tree_id(git_oid *out, imgstore_store *store)
{
    git_tree *tip = NULL;
    git_tree_entry *entry = NULL;
    bool found = false;

    if (imgstore_store__tip_tree(&tip, store) == 0 &&
        git_tree_entry_bypath(&entry, tip, "trust") == 0) {
        git_oid_cpy(out, git_tree_entry_id(entry));
        found = true;
    }
    git_tree_entry_free(entry);
    git_tree_free(tip);
    return found;
}

/*
 * The verified-chain memo (issue #9): <store>/imgstore-trust-ok holds the id of a trust/ tree
 * that ended a policy chain which checked out. The chain walk reads every commit, so without
 * the memo every pull, show and deploy grew with the store's history. The tip's trust/ tree
 * equal to that one means the current policy and its root signatures are byte for byte the
 * ones already proven to descend from policy 1; any policy change writes a new trust/ tree
 * and walks again. The file is a cache beside the repository (never cloned); whoever can
 * write it can rewrite the repository too, so it grants nothing new (docs/security.md).
 */
static bool chain_memo_matches(imgstore_store *store, const git_oid *trust)
{
    char path[4200], hex[GIT_OID_HEXSZ + 2] = "";
    git_oid memo;
    FILE *f;
    bool match = false;

    snprintf(path, sizeof(path), "%s/imgstore-trust-ok", store->path);
    if (!(f = fopen(path, "r")))
        return false;
    if (fgets(hex, sizeof(hex), f) && strlen(hex) >= GIT_OID_HEXSZ &&
        git_oid_fromstrn(&memo, hex, GIT_OID_HEXSZ) == 0)
        match = git_oid_equal(&memo, trust);
    fclose(f);
    return match;
}

/* Best effort: a store that cannot be written (a read-only mount) just walks every time. */
static void chain_memo_write(imgstore_store *store, const git_oid *trust)
{
    char path[4200], tmp[4300], hex[GIT_OID_HEXSZ + 1];
    FILE *f;

    snprintf(path, sizeof(path), "%s/imgstore-trust-ok", store->path);
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    git_oid_tostr(hex, sizeof(hex), trust);
    if (!(f = fopen(tmp, "w")))
        return;
    if (fprintf(f, "%s\n", hex) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        unlink(tmp);
}

void imgstore_store__policy_chain_memo(imgstore_store *store, const git_oid *trust)
{
    chain_memo_write(store, trust);
}

int imgstore_store__policy_chain_check(imgstore_store *store)
{
    trust_ctx ctx = {store, first_failure, NULL, 0};
    char message[2048] = "";
    git_oid tip, trust;
    bool have_trust;
    int err, rc;

    /* History only grows by commits whose own policy was checked when they were read, but a
     * ref can be reset to anything: the memo is per tip, so any other tip walks again. */
    if ((rc = git_reference_name_to_id(&tip, store->repo, IMGSTORE_STORE_REF)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the tip", store->path);
    if (store->chain_ok && git_oid_equal(&tip, &store->chain_ok_tip))
        return 0;
    have_trust = trust_tree_id(&trust, store);
    if (!have_trust || !chain_memo_matches(store, &trust)) {
        ctx.payload = message;
        if ((err = verify_policy_chain(&ctx)) < 0)
            return err;
        if (ctx.failures)
            return imgstore_error_set(IMGSTORE_EVERIFY, "trust policy chain is broken: %s",
                                      message);
        if (have_trust)
            chain_memo_write(store, &trust);
    }
    git_oid_cpy(&store->chain_ok_tip, &tip);
    store->chain_ok = true;
    return 0;
}

int imgstore_store_verify_trust(imgstore_store *store, imgstore_verify_fn report, void *payload)
{
    trust_ctx ctx = {store, report, payload, 0};
    imgstore_policy *policy = NULL;
    git_tree *tip = NULL;
    char **names = NULL;
    size_t count = 0;
    int err;

    if ((err = verify_policy_chain(&ctx)) < 0 || (err = imgstore_store__tip_tree(&tip, store)) < 0)
        goto done;
    if (imgstore_store__policy_load(&policy, NULL, store, tip) < 0)
        goto done; /* reported by the chain */
    {
        /* the moves a cut archived (cut.c): each state as signed as when it was written */
        size_t archived = 0;

        if (imgstore_store__cut_verify_archive(&archived, store, tip) < 0)
            emit(&ctx, "channel", "archive", "moves", IMGSTORE_EVERIFY, imgstore_error_last(),
                 NULL);
    }
    if ((err = imgstore_store__list_tree(&names, &count, store, tip, "channels", NULL)) < 0) {
        err = err == IMGSTORE_ENOTFOUND ? 0 : err;
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        char dir[256], **channels = NULL;
        size_t channel_count = 0;

        snprintf(dir, sizeof(dir), "channels/%s", names[i]);
        if (imgstore_store__list_tree(&channels, &channel_count, store, tip, dir, ".json") < 0)
            continue;
        for (size_t j = 0; j < channel_count; j++)
            verify_channel(&ctx, tip, policy, names[i], channels[j]);
        imgstore_strings_free(channels, channel_count);
    }
done:
    imgstore_strings_free(names, count);
    imgstore_policy_free(policy);
    git_tree_free(tip);
    if (err == 0 && ctx.failures)
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%d trust check(s) failed", ctx.failures);
    return err;
}
