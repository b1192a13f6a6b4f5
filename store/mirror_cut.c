/*
 * A read replica following its primary across a cut (issue #12, docs/security.md "Read
 * replicas"): `imgstore prune` may end the primary's history with a new root R that records
 * where it was cut (store/cut.c). The fetched line then does not descend from the replica's
 * tip X, and is taken only if R continues X: R's oplog holds X's rows and X itself, its
 * store-id is the replica's, the policy steps it archived are the chain the replica trusts
 * (then, new ones, each signed by its predecessor's roots), and every channel move it
 * archived is the one the replica saw, or a new one with its deploy signatures and a
 * sequence that grows. What R holds at its tip is then checked by mirror_verify.c as a
 * commit whose parent is X. A replica whose first sync meets a cut pins policy 1 through the
 * archived chain.
 *
 * Cost: the oplog comparison is by group and segment id; archived moves the replica already
 * holds archived (a second cut) are skipped by segment id; the rest is one commit read per
 * archived move the replica holds only in its history (a first cut), one signature check per
 * move the replica never saw, and the replica's own policy chain once.
 *
 * Not here: fetching, moving the ref (mirror.c), the checks of a commit's tree
 * (mirror_verify.c).
 */
#include "store/store_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPLOG        "index/oplog"
#define POLICIES_MAX 64 /* policy steps a cut may archive in one go */

typedef struct {
    imgstore_store *store;
    imgstore_mirror_stats *stats;
    const git_commit *cut;
    const git_tree *tree; /* R's */
    const git_oid *from;  /* the replica's tip; NULL: a first sync */
    const git_tree *from_tree;
    uint64_t from_ops;                       /* op number of the replica's tip */
    imgstore_policy *policies[POLICIES_MAX]; /* any of them may have signed a new move */
    size_t policy_count;
    char commit[12];
} cut_ctx;

static int refusef(cut_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int refusef(cut_ctx *ctx, const char *fmt, ...)
{
    char message[1536];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return imgstore_error_set(IMGSTORE_EVERIFY, "cut %s: %s", ctx->commit, message);
}

/* ---- the oplog: R continues the replica's line ------------------------------------- */

static int check_oplog(cut_ctx *ctx, uint64_t op, const git_oid *previous, const char *store_id)
{
    char **rows = NULL, hex[GIT_OID_HEXSZ + 1];
    size_t total = 0;
    bool same = false;
    int err;

    if ((err = imgstore_store__log_count(&total, ctx->store, ctx->tree, OPLOG)) < 0)
        return refusef(ctx, "%s", imgstore_error_last());
    if (total != op || op == 0)
        return refusef(ctx, "its oplog has %zu rows but it says it is operation %" PRIu64, total,
                       op);
    if ((err = imgstore_store__log_rows(&rows, ctx->store, ctx->tree, OPLOG, total, total - 1, 1)) <
        0)
        return refusef(ctx, "%s", imgstore_error_last());
    git_oid_tostr(hex, sizeof(hex), previous);
    same = strcmp(rows[0], hex) == 0;
    imgstore_strings_free(rows, 1);
    if (!same)
        return refusef(ctx, "its oplog does not end at the commit it says it cut (%.12s)", hex);
    /* the store's id is its first commit's: oplog row 0, which R and the replica share */
    if ((err = imgstore_store__log_rows(&rows, ctx->store, ctx->tree, OPLOG, total, 0, 1)) < 0)
        return refusef(ctx, "%s", imgstore_error_last());
    same = strcmp(rows[0], store_id) == 0;
    imgstore_strings_free(rows, 1);
    if (!same)
        return refusef(ctx, "its store-id %s is not this store's",
                       store_id[0] ? store_id : "(none)");
    if (!ctx->from)
        return 0;
    if (ctx->from_ops >= op)
        return refusef(ctx,
                       "it is operation %" PRIu64 ", not after this replica's tip (%" PRIu64 ")",
                       op, ctx->from_ops);
    if ((err = imgstore_store__log_prefix_equal(&same, ctx->store, ctx->from_tree, ctx->from_ops,
                                                ctx->tree, total, OPLOG, ctx->from_ops)) < 0)
        return refusef(ctx, "%s", imgstore_error_last());
    if (same) {
        if ((err = imgstore_store__log_rows(&rows, ctx->store, ctx->tree, OPLOG, total,
                                            ctx->from_ops, 1)) < 0)
            return refusef(ctx, "%s", imgstore_error_last());
        git_oid_tostr(hex, sizeof(hex), ctx->from);
        same = strcmp(rows[0], hex) == 0;
        imgstore_strings_free(rows, 1);
    }
    if (!same) {
        git_oid_tostr(hex, sizeof(hex), ctx->from);
        return refusef(ctx, "the history it cut does not contain this replica's tip %.11s", hex);
    }
    return 0;
}

/* ---- archived policy steps --------------------------------------------------------- */

static int archived_link(imgstore_policy_link *out, cut_ctx *ctx, size_t step)
{
    char dir[64];

    snprintf(dir, sizeof(dir), "archive/trust/%zu", step);
    if (imgstore_store__policy_link_in(out, ctx->store, ctx->tree, dir) < 0)
        return refusef(ctx, "%s: %s", dir, imgstore_error_last());
    return 0;
}

static bool same_link(const imgstore_policy_link *a, const imgstore_policy_link *b)
{
    if (a->policy_len != b->policy_len || memcmp(a->policy, b->policy, a->policy_len) != 0 ||
        a->signature_count != b->signature_count)
        return false;
    for (size_t i = 0; i < a->signature_count; i++) {
        if (strcmp(a->signatures[i], b->signatures[i]) != 0)
            return false;
    }
    return true;
}

static int keep_policy(cut_ctx *ctx, imgstore_policy *policy)
{
    if (ctx->policy_count == POLICIES_MAX) {
        imgstore_policy_free(policy);
        return refusef(ctx, "more than %d policy steps", POLICIES_MAX);
    }
    ctx->policies[ctx->policy_count++] = policy;
    return 0;
}

/* archive/trust/1 .. N-1 for R's policy N: the replica's own steps byte for byte, then each
 * new one signed by its predecessor's roots (policy 1 by its own, hashing to the pin).
 * *policy_io, the policy in force at the replica's tip, becomes the last archived one. */
static int check_policies(cut_ctx *ctx, imgstore_policy **policy_io, const char *pinned)
{
    imgstore_policy_link *chain = NULL, link = {0}, current = {0};
    size_t chain_count = 0, steps;
    uint64_t trusted; /* the replica's policy version: steps up to it are ones it has */
    int err;

    if ((err = imgstore_store__policy_link_at(&current, ctx->store, ctx->tree)) < 0) {
        err = refusef(ctx, "trust/: %s", imgstore_error_last());
        goto done;
    }
    if (current.version == 0 || current.version > POLICIES_MAX) {
        err = refusef(ctx, "trust/policy.json does not parse or is past policy %d", POLICIES_MAX);
        goto done;
    }
    steps = current.version - 1;
    {
        char past[64];

        snprintf(past, sizeof(past), "archive/trust/%zu", steps + 1);
        git_oid extra = imgstore_store__id_at(ctx->tree, past);

        if (!git_oid_is_zero(&extra)) {
            err = refusef(ctx, "%s archives a policy that is not before the current one", past);
            goto done;
        }
    }
    trusted = *policy_io ? (*policy_io)->version : 0;
    for (size_t step = 1; step <= steps && err == 0; step++) {
        imgstore_policy *next = NULL;
        const imgstore_policy_link *mine = NULL;
        char path[64];
        git_oid was, is;

        snprintf(path, sizeof(path), "archive/trust/%zu", step);
        was = imgstore_store__id_at(ctx->from_tree, path);
        is = imgstore_store__id_at(ctx->tree, path);
        if (step <= trusted && !git_oid_is_zero(&was)) {
            /* an earlier cut archived it here too: the same step is the same tree */
            if (!git_oid_equal(&was, &is))
                err = refusef(ctx,
                              "%s is not the policy %zu this replica trusts: a policy step was "
                              "changed",
                              path, step);
            continue;
        }
        if ((err = archived_link(&link, ctx, step)) < 0)
            break;
        if (step <= trusted && !chain &&
            (err = imgstore_store_policy_chain(&chain, &chain_count, ctx->store)) < 0)
            err = refusef(ctx, "this replica's policy chain: %s", imgstore_error_last());
        for (size_t i = 0; step <= trusted && err == 0 && i < chain_count && !mine; i++)
            mine = chain[i].version == step ? &chain[i] : NULL;
        if (err < 0) {
        } else if (link.version != step) {
            err = refusef(ctx, "%s/policy.json is not a policy %zu", path, step);
        } else if (step <= trusted) {
            if (!mine || !same_link(&link, mine))
                err = refusef(ctx,
                              "%s is not the policy %zu this replica trusts: a policy step was "
                              "changed",
                              path, step);
        } else if (imgstore_trust_policy_link_verify(&next, *policy_io, &link,
                                                     step == 1 ? pinned : NULL) < 0) {
            err = refusef(ctx, "%s: %s", path, imgstore_error_last());
        } else if ((err = keep_policy(ctx, next)) == 0) {
            imgstore_policy_free(*policy_io);
            if ((err = imgstore_schema_policy_parse(policy_io, link.policy, link.policy_len)) < 0)
                err = refusef(ctx, "%s: %s", path, imgstore_error_last());
        }
        free(link.policy);
        imgstore_strings_free(link.signatures, link.signature_count);
        memset(&link, 0, sizeof(link));
    }
    if (err == 0 && trusted > steps + 1)
        err = refusef(ctx, "it holds policy %" PRIu64 ", older than this replica's policy %" PRIu64,
                      current.version, trusted);
    if (err == 0) {
        /* R's own policy (checked as a step by mirror_verify.c) may sign new moves too */
        imgstore_policy *policy = NULL;

        if (imgstore_schema_policy_parse(&policy, current.policy, current.policy_len) == 0)
            err = keep_policy(ctx, policy);
    }
done:
    free(current.policy);
    imgstore_strings_free(current.signatures, current.signature_count);
    imgstore_policy_chain_free(chain, chain_count);
    return err;
}

/* ---- archived channel moves -------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The state blob and signature tree that operation `op` wrote for <name>/<channel>, as the
 * replica holds them: archived by an earlier cut, else in the commit itself. */
static int replica_move(git_oid *state_out, git_oid *sigs_out, cut_ctx *ctx, const char *segdir,
                        const char *name, const char *channel, uint64_t op)
{
    git_commit *commit = NULL;
    git_tree *tree = NULL;
    git_oid id;
    char path[700];
    int err, rc;

    snprintf(path, sizeof(path), "%s/%" PRIu64 ".json", segdir, op);
    *state_out = imgstore_store__id_at(ctx->from_tree, path);
    if (!git_oid_is_zero(state_out)) {
        snprintf(path, sizeof(path), "%s/%" PRIu64 ".sigs", segdir, op);
        *sigs_out = imgstore_store__id_at(ctx->from_tree, path);
        return 0;
    }
    if ((err = imgstore_store__index_commit_id(&id, ctx->store, ctx->from_tree, ctx->from,
                                               ctx->from_ops, op)) < 0)
        return err;
    if ((rc = git_commit_lookup(&commit, ctx->store->repo, &id)) < 0 ||
        (rc = git_commit_tree(&tree, commit)) < 0) {
        err = imgstore_store__git_error(rc, "operation %" PRIu64, op);
        goto done;
    }
    snprintf(path, sizeof(path), "channels/%s/%s.json", name, channel);
    *state_out = imgstore_store__id_at(tree, path);
    snprintf(path, sizeof(path), "channels/%s/%s.sigs", name, channel);
    *sigs_out = imgstore_store__id_at(tree, path);
done:
    git_tree_free(tree);
    git_commit_free(commit);
    return err;
}

/* A move the replica never saw: a state of this channel, signed by a threshold of deploy
 * keys of a policy in force between the replica's tip and R, its sequence past *sequence_io. */
static int check_new_move(cut_ctx *ctx, const char *segdir, const char *name, const char *channel,
                          uint64_t op, uint64_t *sequence_io)
{
    imgstore_channel_state *state = NULL;
    char path[700], dir[700], *bytes = NULL, **sigs = NULL;
    size_t len = 0, count = 0;
    bool trusted = false;
    int err;

    snprintf(path, sizeof(path), "%s/%" PRIu64 ".json", segdir, op);
    snprintf(dir, sizeof(dir), "%s/%" PRIu64 ".sigs", segdir, op);
    if ((err = imgstore_store__signed_at(&bytes, &len, &sigs, &count, ctx->store, ctx->tree, path,
                                         dir, 64 * 1024)) < 0 ||
        (err = imgstore_schema_channel_parse(&state, bytes, len)) < 0) {
        err = refusef(ctx, "%s: %s", path, imgstore_error_last());
        goto done;
    }
    if (strcmp(state->name, name) != 0 || strcmp(state->channel, channel) != 0) {
        err = refusef(ctx, "%s is a state of %s/%s", path, state->name, state->channel);
        goto done;
    }
    if (state->sequence <= *sequence_io) {
        err = refusef(ctx,
                      "%s: %s/%s went from sequence %" PRIu64 " to %" PRIu64
                      ": a channel's sequence only grows",
                      path, name, channel, *sequence_io, state->sequence);
        goto done;
    }
    for (size_t i = 0; i < ctx->policy_count && !trusted; i++) {
        imgstore_trust_status status;

        trusted =
            imgstore_trust_signatures_count(&status, ctx->policies[i], IMGSTORE_ROLE_DEPLOY,
                                            (const char *const *)sigs, count, bytes, len) == 0 &&
            status.trusted && !status.invalid;
    }
    if (!trusted) {
        err = refusef(ctx, "%s: %s/%s sequence %" PRIu64 " lacks the deploy signatures it needs",
                      path, name, channel, state->sequence);
        goto done;
    }
    *sequence_io = state->sequence;
    ctx->stats->states++;
done:
    imgstore_channel_state_free(state);
    imgstore_strings_free(sigs, count);
    free(bytes);
    return err;
}

/* The sequence of the archived state `op` (the replica's last move before the new ones). */
static int archived_sequence(uint64_t *out, cut_ctx *ctx, const char *segdir, uint64_t op)
{
    imgstore_channel_state *state = NULL;
    char path[700], *bytes = NULL;
    size_t len = 0;
    int err;

    snprintf(path, sizeof(path), "%s/%" PRIu64 ".json", segdir, op);
    if ((err = imgstore_store__read_small_blob(&bytes, &len, ctx->store, ctx->tree, path,
                                               64 * 1024)) < 0 ||
        (err = imgstore_schema_channel_parse(&state, bytes, len)) < 0)
        err = refusef(ctx, "%s: %s", path, imgstore_error_last());
    else
        *out = state->sequence;
    imgstore_channel_state_free(state);
    free(bytes);
    return err;
}

/* The archived ops of one segment directory of R, sorted; every "<op>.json" has its
 * "<op>.sigs" and nothing else is there. */
static int segment_ops(uint64_t **out, size_t *count_out, cut_ctx *ctx, const char *segdir)
{
    char **names = NULL;
    size_t count = 0, n = 0;
    uint64_t *ops = NULL;
    int err;

    *out = NULL;
    *count_out = 0;
    err = imgstore_store__list_tree(&names, &count, ctx->store, ctx->tree, segdir, NULL);
    if (err == IMGSTORE_ENOTFOUND)
        return 0;
    if (err < 0)
        return refusef(ctx, "%s: %s", segdir, imgstore_error_last());
    if (count > 2 * IMGSTORE_STORE__LOG_ROWS || !(ops = calloc(count + 1, sizeof(*ops)))) {
        err = refusef(ctx, "%s holds %zu entries", segdir, count);
        goto done;
    }
    for (size_t i = 0; i < count && err == 0; i++) {
        unsigned long long op;
        char kind[8];
        int end = 0;

        if (sscanf(names[i], "%llu.%4s%n", &op, kind, &end) != 2 || names[i][end] != '\0' ||
            names[i][0] == '0' || (strcmp(kind, "json") != 0 && strcmp(kind, "sigs") != 0)) {
            err = refusef(ctx, "unexpected entry %s/%s", segdir, names[i]);
            break;
        }
        if (strcmp(kind, "sigs") == 0)
            continue;
        ops[n++] = op; /* its .sigs may be absent: no signatures, which a new move needs */
    }
    qsort(ops, n, sizeof(*ops), cmp_u64);
    if (err == 0) {
        *out = ops;
        *count_out = n;
        ops = NULL;
    }
done:
    free(ops);
    imgstore_strings_free(names, count);
    return err;
}

static void segment_dir(char *out, size_t cap, const char *name, const char *channel, size_t seg)
{
    char dir[400];

    snprintf(dir, sizeof(dir), "archive/channels/%s/%s", name, channel);
    imgstore_store__log_segment_path(out, cap, dir, seg);
}

/* One channel's archived moves: row i of the replica's channel log is archived in segment
 * i/64 as the state that move wrote; after them come the moves the replica never saw. */
static int check_channel(cut_ctx *ctx, const char *name, const char *channel, uint64_t cut_op)
{
    char log[400], segdir[600];
    size_t rows = 0, seg;
    uint64_t sequence = 0, last_op = 0, *ops = NULL;
    size_t op_count = 0;
    bool have_sequence = false;
    int err = 0;

    if (imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name) < 0 ||
        imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, channel) < 0)
        return refusef(ctx, "archive/channels: %s", imgstore_error_last());
    snprintf(log, sizeof(log), "index/%s/channels/%s", name, channel);
    if (ctx->from && (err = imgstore_store__log_count(&rows, ctx->store, ctx->from_tree, log)) < 0)
        return err;
    for (seg = 0; seg * IMGSTORE_STORE__LOG_ROWS < rows && err == 0; seg++) {
        size_t first = seg * IMGSTORE_STORE__LOG_ROWS, n = rows - first < IMGSTORE_STORE__LOG_ROWS
                                                               ? rows - first
                                                               : IMGSTORE_STORE__LOG_ROWS;
        char **log_rows = NULL;
        git_oid was, is;

        segment_dir(segdir, sizeof(segdir), name, channel, seg);
        was = imgstore_store__id_at(ctx->from_tree, segdir);
        is = imgstore_store__id_at(ctx->tree, segdir);
        if (git_oid_is_zero(&is)) {
            err = refusef(ctx, "it does not archive the moves of %s/%s this replica has", name,
                          channel);
            break;
        }
        if ((err = segment_ops(&ops, &op_count, ctx, segdir)) < 0)
            break;
        if (op_count < n || (n == IMGSTORE_STORE__LOG_ROWS && op_count != n)) {
            err =
                refusef(ctx, "%s holds %zu moves where this replica has %zu", segdir, op_count, n);
            break;
        }
        if (!git_oid_equal(&was, &is) &&
            (err = imgstore_store__log_rows(&log_rows, ctx->store, ctx->from_tree, log, rows, first,
                                            n)) == 0) {
            for (size_t i = 0; i < n && err == 0; i++) {
                uint64_t op;
                int64_t when;
                git_oid state, sigs;
                char path[700];

                if ((err = imgstore_store__index_row_numbers(&op, &when, log, log_rows[i])) < 0 ||
                    (err = replica_move(&state, &sigs, ctx, segdir, name, channel, op)) < 0)
                    break;
                snprintf(path, sizeof(path), "%s/%" PRIu64 ".json", segdir, op);
                git_oid a = imgstore_store__id_at(ctx->tree, path);
                snprintf(path, sizeof(path), "%s/%" PRIu64 ".sigs", segdir, op);
                git_oid b = imgstore_store__id_at(ctx->tree, path);

                if (ops[i] != op || !git_oid_equal(&a, &state) || !git_oid_equal(&b, &sigs))
                    err = refusef(ctx,
                                  "%s/%s: the archived move of operation %" PRIu64
                                  " is not the one this replica has",
                                  name, channel, op);
            }
            imgstore_strings_free(log_rows, n);
        }
        last_op = ops[n - 1];
        if (err == 0 && n < op_count) {
            /* new moves in the replica's last segment: they continue it */
            if ((err = archived_sequence(&sequence, ctx, segdir, last_op)) < 0)
                break;
            have_sequence = true;
            for (size_t i = n; i < op_count && err == 0; i++) {
                if (ops[i] <= ctx->from_ops || ops[i] >= cut_op)
                    err = refusef(ctx,
                                  "%s/%" PRIu64 ".json: an operation this replica had "
                                  "or not before the cut",
                                  segdir, ops[i]);
                else
                    err = check_new_move(ctx, segdir, name, channel, ops[i], &sequence);
            }
            last_op = ops[op_count - 1];
            seg++;
            free(ops);
            ops = NULL;
            break;
        }
        free(ops);
        ops = NULL;
    }
    if (err == 0 && rows > 0 && !have_sequence)
        err = archived_sequence(&sequence, ctx, segdir, last_op);
    /* segments past the replica's rows: moves it never saw */
    for (; err == 0; seg++) {
        segment_dir(segdir, sizeof(segdir), name, channel, seg);
        if ((err = segment_ops(&ops, &op_count, ctx, segdir)) < 0 || op_count == 0)
            break;
        for (size_t i = 0; i < op_count && err == 0; i++) {
            if (ops[i] <= last_op || (ctx->from && ops[i] <= ctx->from_ops) || ops[i] >= cut_op)
                err =
                    refusef(ctx, "%s/%" PRIu64 ".json: an operation out of order", segdir, ops[i]);
            else
                err = check_new_move(ctx, segdir, name, channel, ops[i], &sequence);
            last_op = ops[i];
        }
        free(ops);
        ops = NULL;
    }
    free(ops);
    return err;
}

static int check_channels(cut_ctx *ctx, uint64_t cut_op)
{
    char **names = NULL, **channels = NULL, path[400];
    size_t name_count = 0, channel_count = 0;
    int err;

    err = imgstore_store__list_tree(&names, &name_count, ctx->store, ctx->tree, "archive/channels",
                                    NULL);
    if (err == IMGSTORE_ENOTFOUND)
        err = 0;
    for (size_t i = 0; i < name_count && err == 0; i++) {
        snprintf(path, sizeof(path), "archive/channels/%s", names[i]);
        if ((err = imgstore_store__list_tree(&channels, &channel_count, ctx->store, ctx->tree, path,
                                             NULL)) < 0)
            break;
        for (size_t j = 0; j < channel_count && err == 0; j++)
            err = check_channel(ctx, names[i], channels[j], cut_op);
        imgstore_strings_free(channels, channel_count);
        channels = NULL;
    }
    imgstore_strings_free(names, name_count);
    names = NULL;
    if (err < 0 || !ctx->from)
        return err;
    /* every channel the replica has moved is archived (check_channel refuses missing rows) */
    err = imgstore_store__list_tree(&names, &name_count, ctx->store, ctx->from_tree, "channels",
                                    NULL);
    if (err == IMGSTORE_ENOTFOUND)
        return 0;
    for (size_t i = 0; i < name_count && err == 0; i++) {
        snprintf(path, sizeof(path), "channels/%s", names[i]);
        if ((err = imgstore_store__list_tree(&channels, &channel_count, ctx->store, ctx->from_tree,
                                             path, ".json")) < 0)
            break;
        for (size_t j = 0; j < channel_count && err == 0; j++) {
            char dir[600];
            git_oid id;

            snprintf(dir, sizeof(dir), "archive/channels/%s/%s", names[i], channels[j]);
            id = imgstore_store__id_at(ctx->tree, dir);
            if (git_oid_is_zero(&id))
                err = check_channel(ctx, names[i], channels[j], cut_op);
        }
        imgstore_strings_free(channels, channel_count);
        channels = NULL;
    }
    imgstore_strings_free(names, name_count);
    return err;
}

int imgstore_store__mirror_cut_check(imgstore_policy **policy_io, imgstore_mirror_stats *stats,
                                     imgstore_store *store, const git_commit *cut,
                                     const git_tree *tree, const git_oid *from,
                                     const git_tree *from_tree, const char *pinned)
{
    cut_ctx ctx = {store, stats, cut, tree, from, from_tree, 0, {NULL}, 0, ""};
    imgstore_store__cut_record record;
    git_commit *from_commit = NULL;
    bool current = false;
    int err = 0, rc;

    git_oid_tostr(ctx.commit, sizeof(ctx.commit), git_commit_id(cut));
    if ((err = imgstore_store__cut_read(&record, cut)) < 0)
        return refusef(&ctx, "%s",
                       err == IMGSTORE_ENOTFOUND
                           ? "a root commit that is not a cut (no previous: and op: lines)"
                           : imgstore_error_last());
    if (from) {
        if ((rc = git_commit_lookup(&from_commit, store->repo, from)) < 0)
            return imgstore_store__git_error(rc, "this replica's tip");
        err = imgstore_store__index_current(&current, &ctx.from_ops, store, from_commit, from_tree);
        git_commit_free(from_commit);
        if (err < 0)
            return err;
        if (!current)
            return refusef(&ctx, "this replica's indexes are not current, so it cannot tell "
                                 "that the cut continues its history; seed it again");
    }
    if ((err = check_oplog(&ctx, record.op, &record.previous, record.store_id)) < 0)
        goto done;
    if (*policy_io) {
        imgstore_policy *copy = NULL;

        if ((err = imgstore_store__policy_load(&copy, NULL, store, from_tree)) < 0 ||
            (err = keep_policy(&ctx, copy)) < 0)
            goto done;
    }
    if ((err = check_policies(&ctx, policy_io, pinned)) < 0 ||
        (err = check_channels(&ctx, record.op)) < 0)
        goto done;
done:
    for (size_t i = 0; i < ctx.policy_count; i++)
        imgstore_policy_free(ctx.policies[i]);
    return err;
}
