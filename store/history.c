/*
 * History from git: every operation is one commit on refs/heads/main, so the first-parent
 * log is the audit trail. An image's history is the commits that changed images/<name> or
 * channels/<name>; a channel's is the commits that changed its state file.
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void free_rows(imgstore_history_entry *entries, size_t count)
{
    for (size_t i = 0; entries && i < count; i++) {
        free(entries[i].actor);
        free(entries[i].summary);
        free(entries[i].action);
        free(entries[i].version);
        free(entries[i].channel);
        imgstore_channel_state_free(entries[i].state);
        free(entries[i].state_bytes);
        imgstore_strings_free(entries[i].signatures, entries[i].signature_count);
    }
}

void imgstore_history_free(imgstore_history_entry *entries, size_t count)
{
    free_rows(entries, count);
    free(entries);
}

git_oid imgstore_store__id_at(const git_tree *tree, const char *path)
{
    git_tree_entry *entry = NULL;
    git_oid id;

    memset(&id, 0, sizeof(id));
    if (tree && git_tree_entry_bypath(&entry, tree, path) == 0) {
        id = *git_tree_entry_id(entry);
        git_tree_entry_free(entry);
    }
    return id;
}

/* Whether the root entry `name` is the same in both trees (both absent counts as same). */
static bool same_at(const git_tree *tree, const git_tree *parent, const char *name)
{
    const git_tree_entry *now = git_tree_entry_byname(tree, name);
    const git_tree_entry *before = git_tree_entry_byname(parent, name);

    if (!now || !before)
        return !now && !before;
    return git_oid_equal(git_tree_entry_id(now), git_tree_entry_id(before));
}

/* The first channel of `name` whose state differs between the two trees, or NULL. */
static char *moved_channel(imgstore_store *store, const git_tree *tree, const git_tree *parent,
                           const char *name)
{
    char dir[256], **channels = NULL, *moved = NULL;
    size_t count = 0;

    snprintf(dir, sizeof(dir), "channels/%s", name);
    if (imgstore_store__list_tree(&channels, &count, store, tree, dir, ".json") < 0)
        return NULL;
    for (size_t i = 0; i < count && !moved; i++) {
        char path[512];
        git_oid now, before;

        snprintf(path, sizeof(path), "%s/%s.json", dir, channels[i]);
        now = imgstore_store__id_at(tree, path);
        before = imgstore_store__id_at(parent, path);
        if (!git_oid_equal(&now, &before))
            moved = strdup(channels[i]);
    }
    imgstore_strings_free(channels, count);
    return moved;
}

/* Parse a stored state (`read_err`: how reading its bytes went) and check it is the one its
 * path says. A stored state that cannot be read within its cap is damage, as is one that
 * does not parse: IMGSTORE_EVERIFY. */
static int parse_state(imgstore_channel_state **out, int read_err, const char *bytes, size_t len,
                       const char *name, const char *channel)
{
    int err;

    *out = NULL;
    if (read_err < 0)
        return read_err == IMGSTORE_EINVALID ? IMGSTORE_EVERIFY : read_err;
    if ((err = imgstore_schema_channel_parse(out, bytes, len)) < 0)
        return imgstore_error_wrap(IMGSTORE_EVERIFY,
                                   "channels/%s/%s.json: stored channel state is damaged: ", name,
                                   channel);
    if (strcmp((*out)->name, name) != 0 || strcmp((*out)->channel, channel) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "channels/%s/%s.json: state is for %s/%s", name,
                                 channel, (*out)->name, (*out)->channel);
        imgstore_channel_state_free(*out);
        *out = NULL;
    }
    return err;
}

static int load_state(imgstore_channel_state **out, imgstore_store *store, const git_tree *tree,
                      const char *name, const char *channel)
{
    char path[512], *bytes = NULL;
    size_t len = 0;
    int err;

    *out = NULL;
    snprintf(path, sizeof(path), "channels/%s/%s.json", name, channel);
    err = imgstore_store__read_small_blob(&bytes, &len, store, tree, path, 1024 * 1024);
    err = parse_state(out, err, bytes, len, name, channel);
    free(bytes);
    return err;
}

/* A channel move's entry: the state as stored at that commit, with its signatures. */
static int load_move(imgstore_history_entry *e, imgstore_store *store, const git_tree *tree,
                     const char *name)
{
    int err = imgstore_store__channel_signed_at(&e->state_bytes, &e->state_len, &e->signatures,
                                                &e->signature_count, store, tree, name, e->channel);

    err = parse_state(&e->state, err, e->state_bytes, e->state_len, name, e->channel);
    if (err == 0 && !(e->version = strdup(e->state->version)))
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return err;
}

int imgstore_store__channel_load(imgstore_channel_state **out, imgstore_store *store,
                                 const git_tree *tree, const char *name, const char *channel)
{
    int err = load_state(out, store, tree, name, channel);

    if (err == IMGSTORE_ENOTFOUND)
        imgstore_error_set(err, "image %s has no channel %s", name, channel);
    return err;
}

/* The third space-separated word of a commit subject when it is a legal version (a new
 * string), else NULL: subjects are whatever a git-level writer wrote. */
static char *third_word(const char *summary)
{
    char *word;

    for (int skip = 0; skip < 2 && summary; skip++)
        summary = (summary = strchr(summary, ' ')) ? summary + 1 : NULL;
    if (!summary || !(word = strndup(summary, strcspn(summary, " "))))
        return NULL;
    if (imgstore_schema_check_name(IMGSTORE_NAME_VERSION, word) < 0) {
        imgstore_error_clear();
        free(word);
        return NULL;
    }
    return word;
}

/* A zeroed entry at the end of the list; NULL when out of memory (the error is set). */
static imgstore_history_entry *entry_new(imgstore_history_entry **entries, size_t *count,
                                         size_t *cap)
{
    imgstore_history_entry *e;

    if (imgstore_array_grow((void **)entries, cap, *count + 1, sizeof(**entries)) < 0)
        return NULL;
    e = &(*entries)[(*count)++];
    memset(e, 0, sizeof(*e));
    return e;
}

static int add_entry(imgstore_history_entry **entries, size_t *count, size_t *cap,
                     const git_commit *commit)
{
    const git_signature *author = git_commit_author(commit);
    const char *summary = git_commit_summary((git_commit *)commit);
    imgstore_history_entry *e;
    size_t word;

    if (!(e = entry_new(entries, count, cap)))
        return IMGSTORE_ERROR;
    git_oid_tostr(e->commit, sizeof(e->commit), git_commit_id(commit));
    e->time = (int64_t)git_commit_time(commit);
    e->actor = strdup(author && author->name ? author->name : "");
    e->summary = strdup(summary ? summary : "");
    word = summary ? strcspn(summary, " ") : 0;
    e->action = strndup(summary ? summary : "", word);
    if (!e->actor || !e->summary || !e->action)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return 0;
}

/* The entry `commit` (first parent `parent`, NULL for the first commit) adds to the history
 * of `name` (`channel`: of that channel only), appended to entries; *added says whether. */
static int commit_entry(bool *added, imgstore_history_entry **entries, size_t *count, size_t *cap,
                        imgstore_store *store, git_commit *commit, git_commit *parent,
                        const char *name, const char *channel)
{
    git_tree *tree = NULL, *parent_tree = NULL;
    char images_path[256], channels_path[512];
    git_oid img_now, img_before, ch_now, ch_before;
    int err = 0, rc;

    *added = false;
    snprintf(images_path, sizeof(images_path), "images/%s", name);
    if (channel)
        snprintf(channels_path, sizeof(channels_path), "channels/%s/%s.json", name, channel);
    else
        snprintf(channels_path, sizeof(channels_path), "channels/%s", name);
    if ((rc = git_commit_tree(&tree, commit)) < 0 ||
        (parent && (rc = git_commit_tree(&parent_tree, parent)) < 0)) {
        err = imgstore_store__git_error(rc, "history: cannot read a tree");
        goto done;
    }
    /* most commits touch neither this image nor its channels: two root entries say so
     * without reading the trees below them (issue #9) */
    if (parent_tree && (channel || same_at(tree, parent_tree, "images")) &&
        same_at(tree, parent_tree, "channels"))
        goto done;
    img_now = imgstore_store__id_at(tree, images_path);
    img_before = imgstore_store__id_at(parent_tree, images_path);
    ch_now = imgstore_store__id_at(tree, channels_path);
    ch_before = imgstore_store__id_at(parent_tree, channels_path);
    if (!channel && !git_oid_equal(&img_now, &img_before)) {
        /* "push NAME VERSION", "sign NAME VERSION by KEY...": the third word (the last one
         * is a key id for a sign, issue #10) */
        if ((err = add_entry(entries, count, cap, commit)) == 0) {
            imgstore_history_entry *e = &(*entries)[*count - 1];

            /* a prune names its versions in the body, not one in the subject (issue #12) */
            if (strcmp(e->action, "prune") != 0)
                e->version = third_word(e->summary);
            *added = true;
        }
    } else if (!git_oid_equal(&ch_now, &ch_before) && !git_oid_iszero(&ch_now)) {
        char *moved = channel ? strdup(channel) : moved_channel(store, tree, parent_tree, name);

        if (moved && (err = add_entry(entries, count, cap, commit)) == 0) {
            imgstore_history_entry *e = &(*entries)[*count - 1];

            e->channel = moved;
            moved = NULL;
            *added = true;
            err = load_move(e, store, tree, name);
        }
        free(moved);
    }
done:
    git_tree_free(parent_tree);
    git_tree_free(tree);
    return err;
}

/* ---- across a cut (cut.c) --------------------------------------------------------------- */

/* A channel move a cut dropped the commit of: its state and signatures from the cut's
 * archive, at the segment the move's row `row` of the channel log shards to. Its time and
 * actor are the state's; `commit` (may be NULL) the dropped commit's id, from the oplog. */
static int archived_move(imgstore_history_entry **entries, size_t *count, size_t *cap,
                         imgstore_store *store, const git_tree *tree, const char *name,
                         const char *channel, const char *segment_dir, uint64_t op,
                         const git_oid *commit)
{
    imgstore_history_entry *e;
    char path[1024], sigs[1024];
    int err;

    if (!(e = entry_new(entries, count, cap)))
        return IMGSTORE_ERROR;
    e->op = op;
    if (commit)
        git_oid_tostr(e->commit, sizeof(e->commit), commit);
    snprintf(path, sizeof(path), "%s/%llu.json", segment_dir, (unsigned long long)op);
    snprintf(sigs, sizeof(sigs), "%s/%llu.sigs", segment_dir, (unsigned long long)op);
    err = imgstore_store__signed_at(&e->state_bytes, &e->state_len, &e->signatures,
                                    &e->signature_count, store, tree, path, sigs, 1024 * 1024);
    if (err == IMGSTORE_ENOTFOUND)
        return imgstore_error_set(IMGSTORE_EVERIFY, "%s: the cut's archive has no move %llu",
                                  segment_dir, (unsigned long long)op);
    if ((err = parse_state(&e->state, err, e->state_bytes, e->state_len, name, channel)) < 0 ||
        (err = imgstore_time_parse(&e->time, e->state->time)) < 0)
        return err;
    e->channel = strdup(channel);
    e->version = strdup(e->state->version);
    e->actor = strdup(e->state->actor);
    e->summary = imgstore_store__move_message(e->state);
    e->action = e->summary ? strndup(e->summary, strcspn(e->summary, " ")) : NULL;
    if (!e->channel || !e->version || !e->actor || !e->summary || !e->action)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return 0;
}

/* The entry that ends an image's history at a cut (action "cut"), op `base`. */
static int cut_entry(imgstore_history_entry **entries, size_t *count, size_t *cap,
                     imgstore_store *store, const git_oid *cut, uint64_t base)
{
    git_commit *commit = NULL;
    int err, rc;

    if ((rc = git_commit_lookup(&commit, store->repo, cut)) < 0)
        return imgstore_store__git_error(rc, "history: cannot read the cut %s",
                                         git_oid_tostr_s(cut));
    if ((err = add_entry(entries, count, cap, commit)) == 0)
        (*entries)[*count - 1].op = base;
    git_commit_free(commit);
    return err;
}

/* A walk's end at a cut root: an image's history gets the cut entry, a channel's the moves
 * archived under archive/channels/<name>/<channel>, newest first (a listing of the archive:
 * a walk reads everything anyway). */
static int walk_cut_root(imgstore_history_entry **entries, size_t *count, size_t *cap,
                         imgstore_store *store, git_commit *root, uint64_t base, const char *name,
                         const char *channel)
{
    git_tree *tree = NULL;
    char dir[512], **groups = NULL;
    size_t group_count = 0;
    int err, rc;

    if (!channel)
        return cut_entry(entries, count, cap, store, git_commit_id(root), base);
    if ((rc = git_commit_tree(&tree, root)) < 0)
        return imgstore_store__git_error(rc, "history: cannot read the cut's tree");
    snprintf(dir, sizeof(dir), "archive/channels/%s/%s", name, channel);
    if ((err = imgstore_store__list_tree(&groups, &group_count, store, tree, dir, NULL)) ==
        IMGSTORE_ENOTFOUND) {
        imgstore_error_clear();
        err = 0;
    }
    for (size_t g = group_count; g-- > 0 && err == 0;) {
        char group_dir[600], **segments = NULL;
        size_t segment_count = 0;

        snprintf(group_dir, sizeof(group_dir), "%s/%s", dir, groups[g]);
        if ((err = imgstore_store__list_tree(&segments, &segment_count, store, tree, group_dir,
                                             NULL)) < 0)
            break;
        for (size_t k = segment_count; k-- > 0 && err == 0;) {
            char segment_dir[700], **moves = NULL;
            size_t move_count = 0;
            uint64_t ops[IMGSTORE_STORE__LOG_ROWS];
            size_t n = 0;

            snprintf(segment_dir, sizeof(segment_dir), "%s/%s", group_dir, segments[k]);
            if ((err = imgstore_store__list_tree(&moves, &move_count, store, tree, segment_dir,
                                                 ".json")) < 0)
                break;
            for (size_t m = 0; m < move_count && n < IMGSTORE_STORE__LOG_ROWS; m++)
                ops[n++] = strtoull(moves[m], NULL, 10);
            imgstore_strings_free(moves, move_count);
            /* names sort as text ("10" < "9"): newest first by number */
            for (size_t a = 1; a < n; a++)
                for (size_t b = a; b > 0 && ops[b - 1] < ops[b]; b--) {
                    uint64_t t = ops[b];

                    ops[b] = ops[b - 1];
                    ops[b - 1] = t;
                }
            for (size_t m = 0; m < n && err == 0; m++)
                err = archived_move(entries, count, cap, store, tree, name, channel, segment_dir,
                                    ops[m], NULL);
        }
        imgstore_strings_free(segments, segment_count);
    }
    imgstore_strings_free(groups, group_count);
    git_tree_free(tree);
    return err;
}

/* The whole first-parent history, newest first: what a store without current indexes
 * answers from (op numbers counted from the root once the walk ends). */
static int history_walk(imgstore_history_entry **entries, size_t *count, size_t *cap,
                        imgstore_store *store, const char *name, const char *channel)
{
    imgstore_store__cut_record cut = {0};
    git_commit *commit = NULL;
    uint64_t depth = 0;
    size_t walked = SIZE_MAX;
    git_oid head;
    int err = 0, rc;

    if ((rc = git_reference_name_to_id(&head, store->repo, IMGSTORE_STORE_REF)) < 0 ||
        (rc = git_commit_lookup(&commit, store->repo, &head)) < 0)
        return imgstore_store__git_error(rc, "%s: cannot read %s", store->path, IMGSTORE_STORE_REF);
    while (commit && err == 0) {
        git_commit *parent = NULL;
        bool added = false;
        int is_cut;

        if (git_commit_parentcount(commit) > 0 && (rc = git_commit_parent(&parent, commit, 0)) < 0)
            err = imgstore_store__git_error(rc, "history: missing parent commit");
        is_cut = !err && !parent ? imgstore_store__cut_read(&cut, commit) : IMGSTORE_ENOTFOUND;
        if (!err && is_cut == 0) {
            walked = *count; /* the root is a cut: ops count from its own */
            err = walk_cut_root(entries, count, cap, store, commit, cut.op, name, channel);
        } else if (!err && is_cut != IMGSTORE_ENOTFOUND) {
            err = is_cut;
        } else if (!err &&
                   (err = commit_entry(&added, entries, count, cap, store, commit, parent, name,
                                       channel)) == 0 &&
                   added) {
            (*entries)[*count - 1].op = depth; /* from the tip, for now */
        }
        git_commit_free(commit);
        commit = parent;
        depth++;
    }
    git_commit_free(commit);
    if (walked == SIZE_MAX)
        walked = *count;
    /* a cut root is op cut.op and is not itself walked as an entry: depth - 1 steps above */
    for (size_t i = 0; i < walked; i++)
        (*entries)[i].op = cut.op + depth - 1 - (*entries)[i].op;
    return err;
}

/* Whether a move's state time is after `at`. */
static bool after_at(const imgstore_history_entry *e, int64_t at)
{
    int64_t when;

    return !e->state || imgstore_time_parse(&when, e->state->time) < 0 || when > at;
}

/* Apply the query to a whole history (newest first), in place. */
static void history_filter(imgstore_history_entry *entries, size_t *count, uint64_t *next_out,
                           const imgstore_history_query *q)
{
    size_t from = 0, kept;

    while (from < *count && q->before && entries[from].op >= q->before)
        from++;
    while (from < *count && q->has_at && after_at(&entries[from], q->at))
        from++;
    free_rows(entries, from);
    kept = *count - from;
    if (q->has_at && kept > 1)
        kept = 1;
    if (q->limit && kept > q->limit)
        kept = q->limit;
    *next_out = !q->has_at && from + kept < *count && kept > 0 ? entries[from + kept - 1].op : 0;
    free_rows(entries + from + kept, *count - from - kept);
    memmove(entries, entries + from, kept * sizeof(*entries));
    *count = kept;
}

/* How many of the first `end` rows of `log` have op < before (by_time false) or time <= at:
 * rows are in op order, and a channel's state times do not go back, so a binary search. */
static int rows_below(size_t *out, imgstore_store *store, const git_tree *tree, const char *log,
                      size_t total, size_t end, bool by_time, int64_t bound)
{
    size_t lo = 0, hi = end;
    int err = 0;

    while (lo < hi && err == 0) {
        size_t mid = lo + (hi - lo) / 2;
        char **row = NULL;
        uint64_t op = 0;
        int64_t when = 0;

        if ((err = imgstore_store__log_rows(&row, store, tree, log, total, mid, 1)) == 0 &&
            (err = imgstore_store__index_row_numbers(&op, &when, log, row[0])) == 0) {
            if (by_time ? when <= bound : op < (uint64_t)bound)
                lo = mid + 1;
            else
                hi = mid;
        }
        imgstore_strings_free(row, 1);
    }
    *out = lo;
    return err;
}

/* The query answered from the indexes: the rows it selects, each turned into its entry from
 * its own commit. IMGSTORE_STORE_UNCHANGED when the indexes are not current. */
static int history_indexed(imgstore_history_entry **entries, size_t *count, size_t *cap,
                           uint64_t *next_out, imgstore_store *store, const char *name,
                           const imgstore_history_query *q)
{
    git_commit *tip = NULL;
    git_tree *tree = NULL;
    char log[512];
    size_t total = 0, end, start, lowest = 0;
    uint64_t ops = 0, op = 0, base = 0;
    bool current = false, cut_fits;
    git_oid head;
    int err, rc;

    if ((rc = git_reference_name_to_id(&head, store->repo, IMGSTORE_STORE_REF)) < 0 ||
        (rc = git_commit_lookup(&tip, store->repo, &head)) < 0 ||
        (rc = git_commit_tree(&tree, tip)) < 0) {
        err = imgstore_store__git_error(rc, "%s: cannot read %s", store->path, IMGSTORE_STORE_REF);
        goto done;
    }
    if ((err = imgstore_store__index_current(&current, &ops, store, tip, tree)) < 0)
        goto done;
    if (!current) {
        err = IMGSTORE_STORE_UNCHANGED;
        goto done;
    }
    if (q->channel)
        snprintf(log, sizeof(log), "index/%s/channels/%s", name, q->channel);
    else
        snprintf(log, sizeof(log), "index/%s/events", name);
    if ((err = imgstore_store__log_count(&total, store, tree, log)) < 0)
        goto done;
    end = total;
    if (q->before &&
        (err = rows_below(&end, store, tree, log, total, end, false, (int64_t)q->before)) < 0)
        goto done;
    if (q->has_at && (err = rows_below(&end, store, tree, log, total, end, true, q->at)) < 0)
        goto done;
    /* an image's rows before the last cut are of commits it dropped: its history ends with
     * the cut's entry instead; a channel's are answered from the cut's archive (cut.c) */
    if ((err = imgstore_store__cut_base(&base, store, tree)) < 0 ||
        (base && !q->channel &&
         (err = rows_below(&lowest, store, tree, log, total, total, false, (int64_t)base)) < 0))
        goto done;
    end = end < lowest ? lowest : end;
    start = q->has_at ? (end ? end - 1 : 0) : q->limit && end > q->limit ? end - q->limit : 0;
    start = start < lowest ? lowest : start;
    cut_fits = base && !q->channel && !q->has_at && (!q->before || base < q->before) &&
               (!q->limit || end - start < q->limit);
    for (size_t i = end; i-- > start && err == 0;) {
        git_commit *commit = NULL, *parent = NULL;
        char **row = NULL;
        int64_t when = 0;
        bool added = false;
        git_oid id;

        if ((err = imgstore_store__log_rows(&row, store, tree, log, total, i, 1)) == 0 &&
            (err = imgstore_store__index_row_numbers(&op, &when, log, row[0])) == 0 &&
            (err = imgstore_store__index_commit_id(&id, store, tree, &head, ops, op)) == 0 &&
            op < base) {
            char dir[512], segment[600];

            snprintf(dir, sizeof(dir), "archive/channels/%s/%s", name, q->channel);
            imgstore_store__log_segment_path(segment, sizeof(segment), dir,
                                             i / IMGSTORE_STORE__LOG_ROWS);
            err =
                archived_move(entries, count, cap, store, tree, name, q->channel, segment, op, &id);
        } else if (err == 0) {
            if ((rc = git_commit_lookup(&commit, store->repo, &id)) < 0 ||
                (git_commit_parentcount(commit) > 0 &&
                 (rc = git_commit_parent(&parent, commit, 0)) < 0))
                err = imgstore_store__git_error(rc, "%s: operation %llu", log,
                                                (unsigned long long)op);
            else
                err = commit_entry(&added, entries, count, cap, store, commit, parent, name,
                                   q->channel);
            if (err == 0 && !added)
                err = imgstore_error_set(IMGSTORE_EVERIFY,
                                         "%s: the index is damaged (operation %llu did not "
                                         "change it); run imgstore reindex",
                                         log, (unsigned long long)op);
            if (err == 0)
                (*entries)[*count - 1].op = op;
        }
        imgstore_strings_free(row, 1);
        git_commit_free(parent);
        git_commit_free(commit);
    }
    if (err == 0 && !q->has_at &&
        (start > lowest || (base && !q->channel && !cut_fits && (!q->before || base < q->before))))
        *next_out = op; /* the oldest answered: pass it as `before` for the next page */
    if (err == 0 && cut_fits) {
        git_oid id;

        if ((err = imgstore_store__index_commit_id(&id, store, tree, &head, ops, base)) == 0)
            err = cut_entry(entries, count, cap, store, &id, base);
    }
done:
    git_tree_free(tree);
    git_commit_free(tip);
    return err;
}

int imgstore_store_history_query(imgstore_history_entry **out, size_t *count_out,
                                 uint64_t *next_out, imgstore_store *store, const char *name,
                                 const imgstore_history_query *q)
{
    imgstore_history_entry *entries = NULL;
    size_t count = 0, cap = 0;
    uint64_t next = 0;
    int err;

    *out = NULL;
    *count_out = 0;
    if (next_out)
        *next_out = 0;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (q->channel && (err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, q->channel)) < 0))
        return err;
    if (q->has_at && !q->channel)
        return imgstore_error_set(IMGSTORE_EINVALID, "a time needs a channel");
    err = history_indexed(&entries, &count, &cap, &next, store, name, q);
    if (err == IMGSTORE_STORE_UNCHANGED) { /* no current index: walk */
        if ((err = history_walk(&entries, &count, &cap, store, name, q->channel)) == 0)
            history_filter(entries, &count, &next, q);
    }
    if (err < 0) {
        imgstore_history_free(entries, count);
        return err;
    }
    *out = entries;
    *count_out = count;
    if (next_out)
        *next_out = next;
    return 0;
}

int imgstore_store_history(imgstore_history_entry **out, size_t *count_out, imgstore_store *store,
                           const char *name, const char *channel)
{
    imgstore_history_query q = {.channel = channel};

    return imgstore_store_history_query(out, count_out, NULL, store, name, &q);
}

json_t *imgstore_store_history_to_json(const imgstore_history_entry *entries, size_t count)
{
    json_t *rows = json_array();

    for (size_t i = 0; rows && i < count; i++) {
        const imgstore_history_entry *e = &entries[i];
        json_t *row, *sigs = NULL;
        char when[32];

        imgstore_time_rfc3339(when, sizeof(when), e->time);
        row = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s}", "commit", e->commit, "op",
                        (json_int_t)e->op, "time", when, "actor", e->actor, "action", e->action,
                        "summary", e->summary);
        if (row && e->version)
            json_object_set_new(row, "version", json_string(e->version));
        if (row && e->channel)
            json_object_set_new(row, "channel", json_string(e->channel));
        if (row && e->state) {
            json_object_set_new(row, "state", imgstore_schema_channel_to_json(e->state));
            sigs = json_array();
            for (size_t k = 0; sigs && k < e->signature_count; k++)
                json_array_append_new(sigs, json_string(e->signatures[k]));
            json_object_set_new(row, "signed",
                                json_pack("{s:s%, s:o*}", "state", e->state_bytes, e->state_len,
                                          "signatures", sigs));
        }
        if (!row || json_array_append_new(rows, row) < 0) {
            json_decref(rows);
            return NULL;
        }
    }
    return rows;
}
