/*
 * Cutting history (issue #12, docs/format.md "Cutting history"): after a prune's removal
 * commit P, a root commit R whose tree is P's plus an archive of what readers still need
 * from the history R drops, so that nothing reaches the pruned versions' objects any more
 * and gc can free them:
 *
 *   index/oplog                                     + row op(P): P's id
 *   index/cuts                                      + "op(R) TAB P's id"
 *   archive/trust/<N>/{policy.json,signatures/}     every policy step before the current one
 *   archive/channels/<name>/<channel>/<group>/<segment>/<op>.json, <op>.sigs/
 *                                                   every channel move before R: the state
 *                                                   blob and signature tree it wrote
 *
 * Everything archived is an existing blob or tree, so a cut writes tree objects only, and a
 * second cut keeps the first one's archive and adds the moves and policy steps since: it
 * costs O(moves and policy steps since the last cut), never O(all commits).
 *
 * Here: the cut record (its message), writing a cut, what a cut would archive, and where
 * readers find the archive and the cut's op number. Not here: the removal (prune.c), the
 * readers themselves (history.c, index.c, trust_verify.c, signed.c).
 */
#include "store/store_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CUTS_LOG        "index/cuts"
#define OPLOG           "index/oplog"
#define ARCHIVE_TRUST   "archive/trust"
#define ARCHIVE_MOVES   "archive/channels"
#define POLICY_STEP_MAX 1000000 /* more policy steps than that is a damaged store */

/* ---- the record -------------------------------------------------------------------------- */

/* The value of the line "<key>: <value>" in `message`, copied into out (cap bytes); false
 * when absent. */
static bool message_field(char *out, size_t cap, const char *message, const char *key)
{
    size_t key_len = strlen(key);

    for (const char *line = message; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);

        if (len > key_len + 2 && strncmp(line, key, key_len) == 0 && line[key_len] == ':' &&
            line[key_len + 1] == ' ') {
            snprintf(out, cap, "%.*s", (int)(len - key_len - 2), line + key_len + 2);
            return true;
        }
        line = end ? end + 1 : NULL;
    }
    return false;
}

static bool is_hex_id(const char *text)
{
    return strlen(text) == GIT_OID_HEXSZ && strspn(text, "0123456789abcdef") == GIT_OID_HEXSZ;
}

int imgstore_store__cut_read(imgstore_store__cut_record *out, const git_commit *commit)
{
    const char *message = git_commit_message(commit);
    char previous[64] = "", op[32] = "", store_id[64] = "", *end = NULL;
    bool has_previous, has_op;
    unsigned long long value;

    memset(out, 0, sizeof(*out));
    if (git_commit_parentcount(commit) != 0 || !message)
        return IMGSTORE_ENOTFOUND;
    has_previous = message_field(previous, sizeof(previous), message, "previous");
    has_op = message_field(op, sizeof(op), message, "op");
    if (!has_previous || !has_op)
        return IMGSTORE_ENOTFOUND;
    value = strtoull(op, &end, 10);
    if (!message_field(store_id, sizeof(store_id), message, "store-id") || !is_hex_id(store_id) ||
        !is_hex_id(previous) || !end || *end || op[0] < '0' || op[0] > '9' || value == 0 ||
        git_oid_fromstr(&out->previous, previous) < 0)
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "commit %s: a cut whose record (store-id, previous, op) does "
                                  "not parse",
                                  git_oid_tostr_s(git_commit_id(commit)));
    memcpy(out->store_id, store_id, sizeof(out->store_id));
    out->op = value;
    return 0;
}

/* ---- what a cut archives --------------------------------------------------------------- */

typedef struct {
    imgstore_store *store;
    const git_tree *tip;    /* P's tree (a plan: the tip's) */
    const git_commit *last; /* P (a plan: the tip) */
    uint64_t ops;           /* P's op number */
    bool write;             /* false: count only (a dry run) */
    git_oid tree;           /* the cut's tree being built */
    size_t moves, policies;
} cut_ctx;

/* The largest N of archive/trust/<N> (0: none). */
static int archived_policy_max(uint64_t *out, imgstore_store *store, const git_tree *root)
{
    char **steps = NULL;
    size_t count = 0;
    int err;

    *out = 0;
    if ((err = imgstore_store__list_tree(&steps, &count, store, root, ARCHIVE_TRUST, NULL)) ==
        IMGSTORE_ENOTFOUND) {
        imgstore_error_clear();
        return 0;
    }
    for (size_t i = 0; i < count && err == 0; i++) {
        char *end = NULL;
        unsigned long long n = strtoull(steps[i], &end, 10);

        if (!end || *end || n == 0)
            err = imgstore_error_set(IMGSTORE_EVERIFY, "%s/%s: not a policy step", ARCHIVE_TRUST,
                                     steps[i]);
        else if (n > *out)
            *out = n;
    }
    imgstore_strings_free(steps, count);
    return err;
}

/* Archive the last trust/ tree of every policy step after the archived ones and before the
 * current one, found walking back from P to the oldest step still needed (no walk when none
 * is: the usual case of a cut after a cut). */
static int archive_policies(cut_ctx *c)
{
    imgstore_policy *current = NULL;
    git_oid *found = NULL, seen;
    git_commit *commit = NULL;
    uint64_t archived = 0, need = 0, first;
    bool have_seen = false;
    int err, rc = 0;

    if ((err = imgstore_store__policy_load(&current, NULL, c->store, c->tip)) < 0 ||
        (err = archived_policy_max(&archived, c->store, c->tip)) < 0)
        goto done;
    first = archived + 1;
    if (current->version <= first)
        goto done; /* nothing between the archive and the current policy */
    need = current->version - first;
    if (need > POLICY_STEP_MAX) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "trust policy %llu: too many steps to archive",
                                 (unsigned long long)current->version);
        goto done;
    }
    c->policies = (size_t)need;
    if (!c->write)
        goto done;
    if (!(found = calloc((size_t)need, sizeof(*found)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((rc = git_commit_dup(&commit, (git_commit *)c->last)) < 0)
        goto git_failed;
    while (commit && err == 0) {
        git_tree *tree = NULL;
        git_commit *parent = NULL;
        git_oid trust;

        if ((rc = git_commit_tree(&tree, commit)) < 0)
            goto git_failed;
        trust = imgstore_store__id_at(tree, "trust");
        if (!git_oid_iszero(&trust) && (!have_seen || !git_oid_equal(&trust, &seen))) {
            imgstore_policy *policy = NULL;

            seen = trust;
            have_seen = true;
            if ((err = imgstore_store__policy_load(&policy, NULL, c->store, tree)) == 0) {
                uint64_t v = policy->version;

                if (v >= first && v < current->version && git_oid_iszero(&found[v - first]))
                    found[v - first] = trust; /* newest first: the step's last signatures */
                if (v == first) {
                    imgstore_policy_free(policy);
                    git_tree_free(tree);
                    break;
                }
            }
            imgstore_policy_free(policy);
        }
        git_tree_free(tree);
        if (err == 0 && git_commit_parentcount(commit) > 0 &&
            (rc = git_commit_parent(&parent, commit, 0)) < 0)
            goto git_failed;
        git_commit_free(commit);
        commit = parent;
    }
    for (uint64_t i = 0; i < need && err == 0; i++) {
        char path[64];

        if (git_oid_iszero(&found[i])) {
            err = imgstore_error_set(IMGSTORE_EVERIFY,
                                     "trust policy %llu is not in the history: the chain is broken",
                                     (unsigned long long)(first + i));
            break;
        }
        snprintf(path, sizeof(path), "%s/%llu", ARCHIVE_TRUST, (unsigned long long)(first + i));
        err = imgstore_store__tree_set(&c->tree, c->store, path, &found[i], GIT_FILEMODE_TREE);
    }
    goto done;
git_failed:
    err = imgstore_store__git_error(rc, "cut: cannot read the history");
done:
    git_commit_free(commit);
    free(found);
    imgstore_policy_free(current);
    return err;
}

/* The last name of the listing at `path` (ENOTFOUND when absent or empty). */
static int last_entry(char **out, imgstore_store *store, const git_tree *root, const char *path,
                      const char *suffix, size_t *count_out)
{
    char **names = NULL;
    size_t count = 0;
    int err;

    *out = NULL;
    if ((err = imgstore_store__list_tree(&names, &count, store, root, path, suffix)) < 0)
        return err;
    if (count_out)
        *count_out = count;
    if (count == 0 || !(*out = strdup(names[count - 1])))
        err = count == 0 ? IMGSTORE_ENOTFOUND : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    imgstore_strings_free(names, count);
    return err;
}

/* How many moves of the channel whose archive is at `dir` are archived: its rows 0..k-1 (the
 * archive shards like the log: row i in segment i / 64). */
static int archived_moves(size_t *out, imgstore_store *store, const git_tree *root, const char *dir)
{
    char *group = NULL, *segment = NULL, path[1024], **states = NULL;
    size_t in_segment = 0;
    unsigned g = 0, s = 0;
    int err;

    *out = 0;
    if ((err = last_entry(&group, store, root, dir, NULL, NULL)) == IMGSTORE_ENOTFOUND) {
        imgstore_error_clear();
        return 0;
    }
    if (err < 0)
        return err;
    snprintf(path, sizeof(path), "%s/%s", dir, group);
    if ((err = last_entry(&segment, store, root, path, NULL, NULL)) == 0) {
        snprintf(path, sizeof(path), "%s/%s/%s", dir, group, segment);
        err = imgstore_store__list_tree(&states, &in_segment, store, root, path, ".json");
        imgstore_strings_free(states, in_segment);
    }
    if (err == 0 && (sscanf(group, "%5u", &g) != 1 || sscanf(segment, "%3u", &s) != 1 ||
                     in_segment == 0 || in_segment > IMGSTORE_STORE__LOG_ROWS))
        err = IMGSTORE_ENOTFOUND;
    if (err == IMGSTORE_ENOTFOUND)
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s: the archive is damaged", dir);
    if (err == 0)
        *out = ((size_t)g * 256 + s) * IMGSTORE_STORE__LOG_ROWS + in_segment;
    free(group);
    free(segment);
    return err;
}

/* The state blob and signature tree (zero: none) channels/<name>/<channel> had at op `op`. */
static int move_at(git_oid *state_out, git_oid *sigs_out, const cut_ctx *c, const char *name,
                   const char *channel, uint64_t op)
{
    git_commit *commit = NULL;
    git_tree *tree = NULL;
    char path[512];
    git_oid id;
    int err, rc;

    if ((err = imgstore_store__index_commit_id(&id, c->store, c->tip, git_commit_id(c->last),
                                               c->ops, op)) < 0)
        return err;
    if ((rc = git_commit_lookup(&commit, c->store->repo, &id)) < 0 ||
        (rc = git_commit_tree(&tree, commit)) < 0) {
        err = imgstore_store__git_error(rc, "cut: operation %llu (%s)", (unsigned long long)op,
                                        git_oid_tostr_s(&id));
        goto done;
    }
    snprintf(path, sizeof(path), "channels/%s/%s.json", name, channel);
    *state_out = imgstore_store__id_at(tree, path);
    snprintf(path, sizeof(path), "channels/%s/%s.sigs", name, channel);
    *sigs_out = imgstore_store__id_at(tree, path);
    if (git_oid_iszero(state_out))
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "index/%s/channels/%s: the index is damaged (operation %llu "
                                 "wrote no state); run imgstore reindex",
                                 name, channel, (unsigned long long)op);
done:
    git_tree_free(tree);
    git_commit_free(commit);
    return err;
}

/* Write one segment directory of a channel's archive: `bld` holds it. */
static int segment_flush(cut_ctx *c, git_treebuilder *bld, const char *dir, size_t segment)
{
    char path[1024];
    git_oid id;
    int rc;

    if ((rc = git_treebuilder_write(&id, bld)) < 0)
        return imgstore_store__git_error(rc, "cut: cannot write a tree");
    imgstore_store__log_segment_path(path, sizeof(path), dir, segment);
    return imgstore_store__tree_set(&c->tree, c->store, path, &id, GIT_FILEMODE_TREE);
}

/* Archive the moves of one channel since the last cut: rows k..n-1 of its log. */
static int archive_channel(cut_ctx *c, const char *name, const char *channel)
{
    git_treebuilder *bld = NULL;
    git_tree *existing = NULL, *built = NULL;
    char log[512], dir[512], **rows = NULL;
    size_t total = 0, archived = 0, open_segment = SIZE_MAX;
    int err, rc = 0;

    snprintf(log, sizeof(log), "index/%s/channels/%s", name, channel);
    snprintf(dir, sizeof(dir), "%s/%s/%s", ARCHIVE_MOVES, name, channel);
    if ((err = imgstore_store__log_count(&total, c->store, c->tip, log)) < 0 ||
        (err = archived_moves(&archived, c->store, c->tip, dir)) < 0)
        return err;
    if (archived > total)
        return imgstore_error_set(IMGSTORE_EVERIFY, "%s: archives more moves than %s has", dir,
                                  log);
    c->moves += total - archived;
    if (!c->write || archived == total)
        return 0;
    if ((rc = git_tree_lookup(&built, c->store->repo, &c->tree)) < 0)
        goto git_failed;
    if ((err = imgstore_store__log_rows(&rows, c->store, c->tip, log, total, archived,
                                        total - archived)) < 0)
        goto done;
    for (size_t i = archived; i < total && err == 0; i++) {
        size_t segment = i / IMGSTORE_STORE__LOG_ROWS;
        char entry[64];
        git_oid state, sigs;
        uint64_t op = 0;
        int64_t when = 0;

        if (segment != open_segment) {
            char path[1024];
            git_oid at;

            if (bld && (err = segment_flush(c, bld, dir, open_segment)) < 0)
                break;
            git_treebuilder_free(bld);
            git_tree_free(existing);
            bld = NULL;
            existing = NULL;
            imgstore_store__log_segment_path(path, sizeof(path), dir, segment);
            at = imgstore_store__id_at(built, path); /* a segment the last cut began */
            if ((!git_oid_iszero(&at) &&
                 (rc = git_tree_lookup(&existing, c->store->repo, &at)) < 0) ||
                (rc = git_treebuilder_new(&bld, c->store->repo, existing)) < 0)
                goto git_failed;
            open_segment = segment;
        }
        if ((err = imgstore_store__index_row_numbers(&op, &when, log, rows[i - archived])) < 0 ||
            (err = move_at(&state, &sigs, c, name, channel, op)) < 0)
            break;
        snprintf(entry, sizeof(entry), "%" PRIu64 ".json", op);
        if ((rc = git_treebuilder_insert(NULL, bld, entry, &state, GIT_FILEMODE_BLOB)) < 0)
            goto git_failed;
        snprintf(entry, sizeof(entry), "%" PRIu64 ".sigs", op);
        if (!git_oid_iszero(&sigs) &&
            (rc = git_treebuilder_insert(NULL, bld, entry, &sigs, GIT_FILEMODE_TREE)) < 0)
            goto git_failed;
    }
    if (err == 0 && bld)
        err = segment_flush(c, bld, dir, open_segment);
    goto done;
git_failed:
    err = imgstore_store__git_error(rc, "%s: cannot write the archive", dir);
done:
    imgstore_strings_free(rows, total - archived);
    git_treebuilder_free(bld);
    git_tree_free(existing);
    git_tree_free(built);
    return err;
}

/* Archive every channel's moves since the last cut: the channels are those the index has a
 * log for (a channel whose log is empty has no moves). */
static int archive_channels(cut_ctx *c)
{
    char **names = NULL;
    size_t count = 0;
    int err;

    if ((err = imgstore_store__list_tree(&names, &count, c->store, c->tip, "index", NULL)) < 0)
        return err;
    for (size_t i = 0; i < count && err == 0; i++) {
        char path[512], **channels = NULL;
        size_t channel_count = 0;

        if (strcmp(names[i], "oplog") == 0 || strcmp(names[i], "digests") == 0 ||
            strcmp(names[i], "cuts") == 0)
            continue;
        snprintf(path, sizeof(path), "index/%s/channels", names[i]);
        if ((err = imgstore_store__list_tree(&channels, &channel_count, c->store, c->tip, path,
                                             NULL)) == IMGSTORE_ENOTFOUND) {
            imgstore_error_clear();
            err = 0;
            continue;
        }
        for (size_t k = 0; k < channel_count && err == 0; k++)
            err = archive_channel(c, names[i], channels[k]);
        imgstore_strings_free(channels, channel_count);
    }
    imgstore_strings_free(names, count);
    return err;
}

/* ---- writing a cut ----------------------------------------------------------------------- */

/* The context of a cut after `last` (tree `tip`), whose indexes must be current. */
static int cut_begin(cut_ctx *c, imgstore_store *store, const git_commit *last, const git_tree *tip,
                     bool write)
{
    bool current = false;
    int err;

    memset(c, 0, sizeof(*c));
    c->store = store;
    c->tip = tip;
    c->last = last;
    c->write = write;
    c->tree = *git_tree_id(tip);
    if ((err = imgstore_store__index_current(&current, &c->ops, store, last, tip)) < 0)
        return err;
    if (!current || c->ops == 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "cutting history needs current indexes: run imgstore reindex "
                                  "first");
    return 0;
}

/* The store's id: row 0 of the oplog, the first commit (a cut keeps the oplog's rows). */
static int first_id(char out[GIT_OID_HEXSZ + 1], const cut_ctx *c)
{
    char **rows = NULL;
    git_oid id;
    int err;

    if ((err = imgstore_store__log_rows(&rows, c->store, c->tip, OPLOG, c->ops, 0, 1)) < 0)
        return err;
    if (strlen(rows[0]) != GIT_OID_HEXSZ || git_oid_fromstr(&id, rows[0]) < 0)
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s: the index is damaged; run imgstore reindex",
                                 OPLOG);
    else
        memcpy(out, rows[0], GIT_OID_HEXSZ + 1);
    imgstore_strings_free(rows, 1);
    return err;
}

int imgstore_store__cut_write(git_oid *commit_oid, imgstore_prune_plan *counts,
                              imgstore_store *store, const git_signature *sig,
                              const imgstore_sign_key *key)
{
    git_commit *removal = NULL;
    git_tree *tip = NULL, *tree = NULL;
    char store_id[GIT_OID_HEXSZ + 1], previous[GIT_OID_HEXSZ + 1], row[128], *message = NULL;
    cut_ctx c;
    int err, rc;

    if ((rc = git_commit_lookup(&removal, store->repo, commit_oid)) < 0 ||
        (rc = git_commit_tree(&tip, removal)) < 0) {
        err = imgstore_store__git_error(rc, "cut: cannot read the removal commit");
        goto done;
    }
    /* the removal commit carries the indexes up to its parent; it is op c.ops */
    if ((err = cut_begin(&c, store, removal, tip, true)) < 0 ||
        (err = first_id(store_id, &c)) < 0 || (err = archive_policies(&c)) < 0 ||
        (err = archive_channels(&c)) < 0)
        goto done;
    git_oid_tostr(previous, sizeof(previous), commit_oid);
    snprintf(row, sizeof(row), "%" PRIu64 "\t%s", c.ops + 1, previous);
    if ((err = imgstore_store__log_append(&c.tree, store, OPLOG, previous)) < 0 ||
        (err = imgstore_store__log_append(&c.tree, store, CUTS_LOG, row)) < 0)
        goto done;
    if (!(message = imgstore_strfmt("cut history at %.12s\n\nstore-id: %s\nprevious: %s\n"
                                    "op: %" PRIu64 "\n",
                                    previous, store_id, previous, c.ops + 1))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((rc = git_tree_lookup(&tree, store->repo, &c.tree)) < 0) {
        err = imgstore_store__git_error(rc, "cut: cannot read the new tree");
        goto done;
    }
    if ((err = imgstore_store__commit_create(commit_oid, store, store->repo, sig, message, tree,
                                             NULL, key)) < 0)
        goto done;
    if (counts) {
        counts->cut = true;
        git_oid_tostr(counts->cut_commit, sizeof(counts->cut_commit), commit_oid);
        counts->cut_op = c.ops + 1;
        counts->cut_moves = c.moves;
        counts->cut_policies = c.policies;
    }
done:
    free(message);
    git_tree_free(tree);
    git_tree_free(tip);
    git_commit_free(removal);
    return err;
}

int imgstore_store__cut_plan(imgstore_prune_plan *out, imgstore_store *store)
{
    git_commit *head = NULL;
    git_tree *tip = NULL;
    git_oid id;
    cut_ctx c;
    int err, rc;

    if ((rc = git_reference_name_to_id(&id, store->repo, IMGSTORE_STORE_REF)) < 0 ||
        (rc = git_commit_lookup(&head, store->repo, &id)) < 0 ||
        (rc = git_commit_tree(&tip, head)) < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot read the tip", store->path);
        goto done;
    }
    /* the removal adds no move or policy step: what the tip has is what the cut archives */
    if ((err = cut_begin(&c, store, head, tip, false)) < 0 || (err = archive_policies(&c)) < 0 ||
        (err = archive_channels(&c)) < 0)
        goto done;
    out->cut = true;
    out->cut_op = c.ops + 2; /* the tip, the removal, then the cut */
    out->cut_moves = c.moves;
    out->cut_policies = c.policies;
done:
    git_tree_free(tip);
    git_commit_free(head);
    return err;
}

/* ---- what readers take from a cut ------------------------------------------------------- */

/* Feed every row of every log under `dir` of `root` (relative names: `dir` minus "index/"),
 * but the version logs, which a rebuild takes from the manifests. */
static int feed_logs(imgstore_store *store, const git_tree *root, const char *dir,
                     imgstore_store__row_fn fn, void *payload)
{
    git_oid id = imgstore_store__id_at(root, dir);
    git_tree *tree = NULL;
    const char *log = strncmp(dir, "index/", 6) == 0 ? dir + 6 : "";
    int err = 0, rc;

    const char *slash = strchr(log, '/');

    /* the name index (index/<name>/names) is rebuilt from the tip, like the version logs */
    if (git_oid_iszero(&id) || (slash && strcmp(slash, "/names") == 0))
        return 0;
    if ((rc = git_tree_lookup(&tree, store->repo, &id)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read the index", dir);
    if (git_tree_entrycount(tree) > 0 &&
        strcmp(git_tree_entry_name(git_tree_entry_byindex(tree, 0)), "00000") == 0) {
        char **rows = NULL;
        size_t total = 0;

        git_tree_free(tree);
        if (slash && strcmp(slash, "/versions") == 0)
            return 0;
        if ((err = imgstore_store__log_count(&total, store, root, dir)) < 0 ||
            (err = imgstore_store__log_rows(&rows, store, root, dir, total, 0, total)) < 0)
            return err;
        for (size_t i = 0; i < total && err == 0; i++)
            err = fn(log, rows[i], payload);
        imgstore_strings_free(rows, total);
        return err;
    }
    for (size_t i = 0; i < git_tree_entrycount(tree) && err == 0; i++) {
        const git_tree_entry *e = git_tree_entry_byindex(tree, i);
        char path[1024];

        if (git_tree_entry_type(e) != GIT_OBJECT_TREE)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, git_tree_entry_name(e));
        err = feed_logs(store, root, path, fn, payload);
    }
    git_tree_free(tree);
    return err;
}

/* A root's cut record and tree: 1, or 0 when the root is no cut, or an error. */
static int cut_tree(git_tree **tree_out, imgstore_store__cut_record *record, const git_commit *root)
{
    int err, rc;

    *tree_out = NULL;
    if ((err = imgstore_store__cut_read(record, root)) == IMGSTORE_ENOTFOUND)
        return 0;
    if (err < 0)
        return err;
    if ((rc = git_commit_tree(tree_out, root)) < 0)
        return imgstore_store__git_error(rc, "cannot read the cut's tree");
    return 1;
}

int imgstore_store__cut_index_base(uint64_t *base_out, imgstore_store *store,
                                   const git_commit *root, imgstore_store__row_fn fn, void *payload)
{
    imgstore_store__cut_record record;
    git_tree *tree = NULL;
    int err;

    *base_out = 0;
    if ((err = cut_tree(&tree, &record, root)) <= 0)
        return err;
    err = feed_logs(store, tree, "index", fn, payload);
    git_tree_free(tree);
    *base_out = record.op;
    return err;
}

int imgstore_store__cut_base(uint64_t *out, imgstore_store *store, const git_tree *tip_tree)
{
    char **rows = NULL;
    size_t total = 0;
    unsigned long long op = 0;
    int err;

    *out = 0;
    if ((err = imgstore_store__log_count(&total, store, tip_tree, CUTS_LOG)) < 0 || total == 0)
        return err;
    if ((err = imgstore_store__log_rows(&rows, store, tip_tree, CUTS_LOG, total, total - 1, 1)) < 0)
        return err;
    if (sscanf(rows[0], "%llu\t", &op) != 1 || op == 0)
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s: the index is damaged (a row does not parse); run imgstore "
                                 "reindex",
                                 CUTS_LOG);
    imgstore_strings_free(rows, 1);
    *out = op;
    return err;
}

int imgstore_store__cut_policy_steps(uint64_t *count_out, imgstore_store *store,
                                     const git_commit *root)
{
    imgstore_store__cut_record record;
    git_tree *tree = NULL;
    char **steps = NULL;
    size_t count = 0;
    uint64_t max = 0;
    int err;

    *count_out = 0;
    if ((err = cut_tree(&tree, &record, root)) <= 0)
        return err;
    if ((err = imgstore_store__list_tree(&steps, &count, store, tree, ARCHIVE_TRUST, NULL)) ==
        IMGSTORE_ENOTFOUND) {
        imgstore_error_clear();
        err = 0;
    }
    /* names are 1..k exactly: a step left out would let the next one pass as the first */
    if (err == 0 && (err = archived_policy_max(&max, store, tree)) == 0 && max != count)
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s: the archived policy steps are not 1..%zu (a step is "
                                 "missing)",
                                 ARCHIVE_TRUST, count);
    if (err == 0)
        *count_out = count;
    imgstore_strings_free(steps, count);
    git_tree_free(tree);
    return err;
}

/* ---- verifying the archive ---------------------------------------------------------------- */

typedef struct {
    imgstore_store *store;
    const git_tree *tip;
    imgstore_policy **policies; /* the archived steps and the current policy */
    size_t policy_count;
    size_t checked;
} archive_check;

/* One archived state: it parses, is the state of the channel it is filed under, and carries
 * a threshold of deploy signatures under one of the policies of the chain (which one was in
 * force at the move is not recorded; each was checked in its own time). */
static int check_archived_state(archive_check *a, const char *name, const char *channel,
                                const char *segment, const char *op)
{
    imgstore_channel_state *state = NULL;
    char path[1024], sigs[1024], *bytes = NULL;
    size_t len = 0;
    bool trusted = false;
    int err;

    snprintf(path, sizeof(path), "%s/%s.json", segment, op);
    snprintf(sigs, sizeof(sigs), "%s/%s.sigs", segment, op);
    if ((err = imgstore_store__read_small_blob(&bytes, &len, a->store, a->tip, path, 64 * 1024)) <
        0)
        return err;
    if (imgstore_schema_channel_parse(&state, bytes, len) < 0)
        err = imgstore_error_wrap(IMGSTORE_EVERIFY, "%s: ", path);
    else if (strcmp(state->name, name) != 0 || strcmp(state->channel, channel) != 0)
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s: the state is for %s/%s", path, state->name,
                                 state->channel);
    for (size_t i = 0; err == 0 && !trusted && i < a->policy_count; i++) {
        imgstore_trust_status status = {0};

        if ((err = imgstore_store__signatures_check(&status, a->store, a->tip, sigs, a->policies[i],
                                                    IMGSTORE_ROLE_DEPLOY, bytes, len)) == 0)
            trusted = status.trusted && !status.invalid;
    }
    if (err == 0 && !trusted)
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s: not signed by enough deploy keys of any policy in the chain",
                                 path);
    imgstore_channel_state_free(state);
    free(bytes);
    a->checked++;
    return err;
}

/* Every entry of the listing at `path`: `fn(a, name, channel, path/entry)`. */
static int check_archived_channel(archive_check *a, const char *name, const char *channel)
{
    char dir[512], **groups = NULL;
    size_t group_count = 0;
    int err;

    snprintf(dir, sizeof(dir), "%s/%s/%s", ARCHIVE_MOVES, name, channel);
    if ((err = imgstore_store__list_tree(&groups, &group_count, a->store, a->tip, dir, NULL)) < 0)
        return err;
    for (size_t g = 0; g < group_count && err == 0; g++) {
        char group[600], **segments = NULL;
        size_t segment_count = 0;

        snprintf(group, sizeof(group), "%s/%s", dir, groups[g]);
        if ((err = imgstore_store__list_tree(&segments, &segment_count, a->store, a->tip, group,
                                             NULL)) < 0)
            break;
        for (size_t s = 0; s < segment_count && err == 0; s++) {
            char segment[700], **ops = NULL;
            size_t op_count = 0;

            snprintf(segment, sizeof(segment), "%s/%s", group, segments[s]);
            if ((err = imgstore_store__list_tree(&ops, &op_count, a->store, a->tip, segment,
                                                 ".json")) < 0)
                break;
            for (size_t k = 0; k < op_count && err == 0; k++)
                err = check_archived_state(a, name, channel, segment, ops[k]);
            imgstore_strings_free(ops, op_count);
        }
        imgstore_strings_free(segments, segment_count);
    }
    imgstore_strings_free(groups, group_count);
    return err;
}

int imgstore_store__cut_verify_archive(size_t *checked_out, imgstore_store *store,
                                       const git_tree *tip)
{
    archive_check a = {store, tip, NULL, 0, 0};
    char **names = NULL;
    size_t name_count = 0;
    uint64_t steps = 0;
    int err;

    *checked_out = 0;
    if ((err = archived_policy_max(&steps, store, tip)) < 0)
        return err;
    if (!(a.policies = calloc((size_t)steps + 1, sizeof(*a.policies))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (uint64_t n = 0; n <= steps && err == 0; n++) {
        char dir[64];

        snprintf(dir, sizeof(dir), "%s/%llu", ARCHIVE_TRUST, (unsigned long long)n);
        err = imgstore_store__policy_load_in(&a.policies[a.policy_count], NULL, store, tip,
                                             n == 0 ? "trust" : dir);
        a.policy_count += err == 0;
    }
    if (err == 0 && (err = imgstore_store__list_tree(&names, &name_count, store, tip, ARCHIVE_MOVES,
                                                     NULL)) == IMGSTORE_ENOTFOUND) {
        imgstore_error_clear();
        err = 0;
    }
    for (size_t i = 0; i < name_count && err == 0; i++) {
        char dir[512], **channels = NULL;
        size_t channel_count = 0;

        snprintf(dir, sizeof(dir), "%s/%s", ARCHIVE_MOVES, names[i]);
        if ((err = imgstore_store__list_tree(&channels, &channel_count, store, tip, dir, NULL)) < 0)
            break;
        for (size_t k = 0; k < channel_count && err == 0; k++)
            err = check_archived_channel(&a, names[i], channels[k]);
        imgstore_strings_free(channels, channel_count);
    }
    imgstore_strings_free(names, name_count);
    for (size_t i = 0; i < a.policy_count; i++)
        imgstore_policy_free(a.policies[i]);
    free(a.policies);
    *checked_out = a.checked;
    return err;
}

/* ---- the bundle of what a cut drops (prune --archive) ---------------------------------- */

typedef struct {
    int fd;
    int err;
} bundle_out;

static int bundle_write(void *buf, size_t size, void *payload)
{
    bundle_out *out = payload;

    if (imgstore_store__write_all(out->fd, buf, size) < 0) {
        out->err =
            imgstore_error_set(IMGSTORE_ERROR, "cannot write the archive: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int imgstore_store__cut_bundle(imgstore_store *store, const git_oid *last, const char *path)
{
    git_packbuilder *pb = NULL;
    git_revwalk *walk = NULL;
    char *tmp = imgstore_strfmt("%s.XXXXXX", path), header[128];
    bundle_out out = {-1, 0};
    int err = 0, rc;

    if (!tmp)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((out.fd = mkstemp(tmp)) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    /* git's bundle v2: no prerequisites, one ref, then a pack of everything it reaches */
    snprintf(header, sizeof(header), "# v2 git bundle\n%s %s\n\n", git_oid_tostr_s(last),
             IMGSTORE_STORE_REF);
    if ((err = bundle_write(header, strlen(header), &out)) < 0)
        goto done;
    if ((rc = git_packbuilder_new(&pb, store->repo)) < 0 ||
        (rc = git_revwalk_new(&walk, store->repo)) < 0 || (rc = git_revwalk_push(walk, last)) < 0 ||
        (rc = git_packbuilder_insert_walk(pb, walk)) < 0 ||
        (rc = git_packbuilder_foreach(pb, bundle_write, &out)) < 0) {
        err =
            out.err ? out.err : imgstore_store__git_error(rc, "%s: cannot pack the history", path);
        goto done;
    }
    if (fsync(out.fd) < 0 || close(out.fd) < 0 || (out.fd = -1, rename(tmp, path) < 0))
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", path, strerror(errno));
done:
    if (out.fd >= 0)
        close(out.fd);
    if (err < 0)
        unlink(tmp);
    git_revwalk_free(walk);
    git_packbuilder_free(pb);
    free(tmp);
    return err;
}
