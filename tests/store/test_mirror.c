/*
 * Read replicas (store/mirror.c, store/mirror_verify.c): a range of commits is checked for
 * what is new only, a history that does not descend is refused, and a sync copies a primary
 * on a path, takes what checks out and refuses a damaged chunk or the wrong policy 1.
 */
#include "store_test_util.h"

#include <time.h>

static void push(fixture *f, const char *version, char fill)
{
    push_filled(f, version, fill, 5000);
}

static void deploy(fixture *f, const char *version)
{
    imgstore_channel_opts opts = {.signers = TEST_SIGNERS};
    imgstore_channel_state *s = NULL;

    assert_int_equal(imgstore_store_deploy(&s, f->store, "app", version, "prod", &opts), 0);
    imgstore_channel_state_free(s);
}

static void tip(char out[41], fixture *f)
{
    assert_int_equal(imgstore_store_tip_id(out, f->store), 0);
}

static void verify_range_checks_only_what_is_new(void **state)
{
    fixture *f = *state;
    imgstore_mirror_stats stats;
    char first[41], deployed[41], last[41];

    push(f, "1", 'a');
    tip(first, f);
    deploy(f, "1");
    tip(deployed, f);
    push(f, "2", 'b');
    tip(last, f);
    /* from nothing: init, two pushes, a deploy; policy 1; both versions hashed */
    assert_int_equal(imgstore_store_verify_range(&stats, f->store, NULL, last, NULL), 0);
    assert_int_equal(stats.commits, 4);
    assert_int_equal(stats.policies, 1);
    assert_int_equal(stats.versions, 2);
    assert_int_equal(stats.states, 1);
    assert_int_equal(stats.bytes_hashed, 10000);
    assert_int_equal(stats.unsigned_commits, 0);
    /* from the deploy: one commit, one version, nothing else read */
    assert_int_equal(imgstore_store_verify_range(&stats, f->store, deployed, last, NULL), 0);
    assert_int_equal(stats.commits, 1);
    assert_int_equal(stats.versions, 1);
    assert_int_equal(stats.states, 0);
    assert_int_equal(stats.policies, 0);
    assert_int_equal(stats.bytes_hashed, 5000);
    /* nothing new */
    assert_int_equal(imgstore_store_verify_range(&stats, f->store, last, last, NULL), 0);
    assert_int_equal(stats.commits, 0);
    (void)first;
}

static void verify_range_refuses_a_history_that_does_not_descend(void **state)
{
    fixture *f = *state;
    char first[41], last[41];

    push(f, "1", 'a');
    tip(first, f);
    push(f, "2", 'b');
    tip(last, f);
    /* going back is a rewrite too: the replica's tip is not in the fetched history */
    assert_int_equal(imgstore_store_verify_range(NULL, f->store, last, first, NULL),
                     IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "rewritten"));
}

static void verify_range_refuses_the_wrong_policy_one(void **state)
{
    fixture *f = *state;
    char last[41];

    tip(last, f);
    assert_int_equal(imgstore_store_verify_range(NULL, f->store, NULL, last,
                                                 "0000000000000000000000000000000000000000000000"
                                                 "000000000000000000"),
                     IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "not the pinned"));
}

/* A commit on the primary's main holding version `version` with its first chunk swapped for
 * other bytes of the same size: what a damaged or malicious primary would serve. */
static void damage_tip_chunk(fixture *f, const char *version)
{
    git_repository *repo = f->store->repo;
    git_reference *head = NULL, *moved = NULL;
    git_commit *tip_commit = NULL, *parent = NULL;
    git_tree *tree = NULL;
    git_signature *sig = NULL;
    git_oid blob, tree_id, commit;
    char path[256], bytes[5000];

    memset(bytes, 'z', sizeof(bytes));
    imgstore_store__version_path(path, sizeof(path), f->store, "app", version,
                                 "files/app.img/000000");
    assert_int_equal(git_reference_lookup(&head, repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(git_commit_lookup(&tip_commit, repo, git_reference_target(head)), 0);
    assert_int_equal(git_commit_parent(&parent, tip_commit, 0), 0);
    assert_int_equal(git_commit_tree(&tree, tip_commit), 0);
    assert_int_equal(git_blob_create_from_buffer(&blob, repo, bytes, sizeof(bytes)), 0);
    assert_int_equal(
        imgstore_store__tree_update(&tree_id, repo, tree, path, &blob, GIT_FILEMODE_BLOB), 0);
    git_tree_free(tree);
    assert_int_equal(git_tree_lookup(&tree, repo, &tree_id), 0);
    assert_int_equal(git_signature_now(&sig, "evil", "evil@example"), 0);
    assert_int_equal(imgstore_store__commit_create(&commit, f->store, repo, sig, "push app 2\n",
                                                   tree, parent, NULL),
                     0);
    assert_int_equal(git_reference_create(&moved, repo, IMGSTORE_STORE_REF, &commit, 1, "evil"), 0);
    git_reference_free(moved);
    git_signature_free(sig);
    git_tree_free(tree);
    git_commit_free(parent);
    git_commit_free(tip_commit);
    git_reference_free(head);
}

static void sync_takes_a_good_history_and_refuses_a_damaged_chunk(void **state)
{
    fixture *f = *state;
    imgstore_mirror_opts opts = {f->path, NULL};
    imgstore_mirror_stats stats;
    imgstore_store *replica = NULL;
    char replica_path[600], good[41], served[41];

    snprintf(replica_path, sizeof(replica_path), "%s/replica.git", f->dir);
    push(f, "1", 'a');
    deploy(f, "1");
    tip(good, f);
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), 0);
    assert_true(stats.advanced);
    assert_string_equal(stats.to, good);
    assert_int_equal(imgstore_store_open(&replica, replica_path), 0);
    assert_int_equal(imgstore_store_tip_id(served, replica), 0);
    assert_string_equal(served, good);
    /* nothing new: nothing moves */
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), 0);
    assert_false(stats.advanced);

    push(f, "2", 'b');
    damage_tip_chunk(f, "2");
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "app.img"));
    assert_false(stats.advanced);
    assert_int_equal(imgstore_store_tip_id(served, replica), 0);
    assert_string_equal(served, good);
    imgstore_store_free(replica);
}

/* ---- the layout (docs/format.md "Tree layout") ---------------------------------------- */

/* A signed commit that moves the entry at `from` to `to` (or, `from` NULL, writes the bytes
 * `blob` at `to`): a primary that misplaces a version or changes the store's format. */
typedef struct {
    imgstore_store *store;
    const char *from, *to, *blob;
} relocate;

static int relocate_edit(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    relocate *e = payload;
    git_oid id;
    git_filemode_t mode = GIT_FILEMODE_TREE;

    git_oid_cpy(tree_out, git_tree_id(tip));
    if (e->blob) {
        assert_int_equal(imgstore_store__write_blob(&id, e->store, e->blob, strlen(e->blob)), 0);
        mode = GIT_FILEMODE_BLOB;
    } else {
        id = imgstore_store__id_at(tip, e->from);
        assert_false(git_oid_is_zero(&id));
        assert_int_equal(imgstore_store__tree_set(tree_out, e->store, e->from, NULL, 0), 0);
    }
    assert_int_equal(imgstore_store__tree_set(tree_out, e->store, e->to, &id, mode), 0);
    *message_out = strdup("push app by hand\n");
    return 0;
}

static void refused_then_undone(fixture *f, const char *replica_path, relocate *e,
                                const char *needle, const char *needle2)
{
    imgstore_mirror_opts opts = {f->path, NULL};
    imgstore_mirror_stats stats;
    git_reference *ref = NULL;
    git_oid good;
    char hex[41];

    tip(hex, f);
    git_oid_fromstr(&good, hex);
    e->store = f->store;
    assert_int_equal(imgstore_store__commit(f->store, "test", test_key, relocate_edit, e), 0);
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), needle));
    assert_non_null(strstr(imgstore_error_last(), needle2));
    assert_null(strchr(imgstore_error_last(), '\n'));
    assert_false(stats.advanced);
    assert_int_equal(
        git_reference_create(&ref, f->store->repo, IMGSTORE_STORE_REF, &good, 1, "undo"), 0);
    git_reference_free(ref);
}

static void replica_refuses_misplaced_versions_bad_shards_and_a_new_format(void **state)
{
    fixture *f = *state;
    imgstore_mirror_opts opts = {f->path, NULL};
    imgstore_mirror_stats stats;
    relocate wrong = {NULL, "images/app/6b/1", "images/app/aa/1", NULL};
    relocate upper = {NULL, "images/app/6b", "images/app/6B", NULL};
    relocate blob = {NULL, NULL, "images/app/ab", "x"};
    relocate flat = {NULL, NULL, IMGSTORE_STORE_MARKER, "{\"format\":\"imgstore/1\"}"};
    char replica_path[600];

    snprintf(replica_path, sizeof(replica_path), "%s/replica.git", f->dir);
    push(f, "1", 'a');
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), 0);
    refused_then_undone(f, replica_path, &wrong, "images/app/aa/1", "wrong shard");
    refused_then_undone(f, replica_path, &upper, "images/app/6B", "two lowercase hex digits");
    refused_then_undone(f, replica_path, &blob, "images/app/ab", "not a directory");
    refused_then_undone(f, replica_path, &flat, "imgstore.json changed", "format");
    /* and what is right still goes through */
    push(f, "2", 'b');
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), 0);
    assert_true(stats.advanced);
}

/* A replica of an imgstore/1 primary reads and checks it flat. */
static void replica_of_an_imgstore_1_primary_is_flat(void **state)
{
    fixture *f = *state;
    imgstore_mirror_opts opts = {f->path, NULL};
    imgstore_mirror_stats stats;
    imgstore_store *replica = NULL;
    imgstore_manifest *m = NULL;
    char replica_path[600];

    snprintf(replica_path, sizeof(replica_path), "%s/replica.git", f->dir);
    push(f, "1", 'a');
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), 0);
    push(f, "2", 'b');
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), 0);
    assert_true(stats.advanced);
    assert_int_equal(imgstore_store_open(&replica, replica_path), 0);
    assert_int_equal(replica->layout, IMGSTORE_STORE__FLAT);
    assert_int_equal(imgstore_store_manifest_get(&m, NULL, replica, "app", "2"), 0);
    imgstore_manifest_free(m);
    imgstore_store_free(replica);
}

/* ---- following a cut (docs/format.md "Retention", docs/security.md "Read replicas") ---- */

/* A change to a cut's tree before it is committed: a forgery, or NULL for none. */
typedef void (*cut_edit_fn)(fixture *f, git_oid *tree, const git_tree *base);

static git_tree *tree_of(fixture *f, const git_oid *commit_id)
{
    git_commit *commit = NULL;
    git_tree *tree = NULL;

    assert_int_equal(git_commit_lookup(&commit, f->store->repo, commit_id), 0);
    assert_int_equal(git_commit_tree(&tree, commit), 0);
    git_commit_free(commit);
    return tree;
}

/* The trust/ tree of policy `version`, as the newest commit holding it had it. */
static git_oid trust_tree_of(fixture *f, uint64_t version)
{
    git_revwalk *walk = NULL;
    git_oid oid, found;

    memset(&found, 0, sizeof(found));
    assert_int_equal(git_revwalk_new(&walk, f->store->repo), 0);
    assert_int_equal(git_revwalk_push_ref(walk, IMGSTORE_STORE_REF), 0);
    git_revwalk_simplify_first_parent(walk);
    while (git_revwalk_next(&oid, walk) == 0) {
        git_tree *tree = tree_of(f, &oid);
        imgstore_policy *policy = NULL;

        if (imgstore_store__policy_load(&policy, NULL, f->store, tree) == 0 &&
            policy->version == version && git_oid_is_zero(&found))
            found = imgstore_store__id_at(tree, "trust");
        imgstore_policy_free(policy);
        git_tree_free(tree);
    }
    git_revwalk_free(walk);
    assert_false(git_oid_is_zero(&found));
    return found;
}

/* The cut of the primary's tip P as the design lays it out (store/cut.c writes it on a
 * prune): no parent, P's tree plus P's oplog row, archive/trust/<N> for every earlier policy
 * and archive/channels/... for every move; edited by `edit`, signed by `key` (NULL: not
 * signed), and made the primary's main. A tip that is a cut already is the base as it is. */
static void cut(git_oid *out, fixture *f, const imgstore_sign_key *key, cut_edit_fn edit)
{
    git_repository *repo = f->store->repo;
    git_reference *head = NULL, *moved = NULL;
    git_commit *p_commit = NULL;
    git_tree *base = NULL, *tree = NULL;
    git_signature *sig = NULL;
    git_oid tree_id, p_id;
    imgstore_policy *policy = NULL;
    char **names = NULL, **channels = NULL, **rows = NULL, message[512], p_hex[41], first[41];
    size_t name_count = 0, channel_count = 0, ops = 0;
    bool current = false;

    assert_int_equal(git_reference_name_to_id(&p_id, repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(git_commit_lookup(&p_commit, repo, &p_id), 0);
    assert_int_equal(git_commit_tree(&base, p_commit), 0);
    tree_id = *git_tree_id(base);
    git_oid_tostr(p_hex, sizeof(p_hex), &p_id);
    if (git_commit_parentcount(p_commit) == 0) {
        snprintf(message, sizeof(message), "%s", git_commit_message(p_commit));
    } else {
        assert_int_equal(imgstore_store__index_current(&current, &ops, f->store, p_commit, base),
                         0);
        assert_true(current);
        /* the oplog: P's row */
        {
            size_t first_row = ops / IMGSTORE_STORE__LOG_ROWS * IMGSTORE_STORE__LOG_ROWS;
            char **tail = calloc(ops - first_row + 2, sizeof(*tail));

            if (ops > first_row)
                assert_int_equal(imgstore_store__log_rows(&rows, f->store, base, "index/oplog", ops,
                                                          first_row, ops - first_row),
                                 0);
            for (size_t i = 0; i < ops - first_row; i++)
                tail[i] = rows[i];
            tail[ops - first_row] = p_hex;
            assert_int_equal(imgstore_store__log_replace_tail(&tree_id, f->store, "index/oplog",
                                                              ops, first_row, tail,
                                                              ops - first_row + 1),
                             0);
            imgstore_strings_free(rows, ops - first_row);
            rows = NULL;
            free(tail);
            assert_int_equal(
                imgstore_store__log_rows(&rows, f->store, base, "index/oplog", ops, 0, 1), 0);
            snprintf(first, sizeof(first), "%s", rows[0]);
            imgstore_strings_free(rows, 1);
            rows = NULL;
        }
        /* earlier policies */
        assert_int_equal(imgstore_store__policy_load(&policy, NULL, f->store, base), 0);
        for (uint64_t n = 1; n < policy->version; n++) {
            char path[64];
            git_oid id = trust_tree_of(f, n);

            snprintf(path, sizeof(path), "archive/trust/%llu", (unsigned long long)n);
            assert_int_equal(
                imgstore_store__tree_set(&tree_id, f->store, path, &id, GIT_FILEMODE_TREE), 0);
        }
        imgstore_policy_free(policy);
        /* every move of every channel */
        if (imgstore_store__list_tree(&names, &name_count, f->store, base, "channels", NULL) == 0) {
            for (size_t i = 0; i < name_count; i++) {
                char dir[300];

                snprintf(dir, sizeof(dir), "channels/%s", names[i]);
                assert_int_equal(imgstore_store__list_tree(&channels, &channel_count, f->store,
                                                           base, dir, ".json"),
                                 0);
                for (size_t j = 0; j < channel_count; j++) {
                    char log[300];
                    size_t total = 0;

                    snprintf(log, sizeof(log), "index/%s/channels/%s", names[i], channels[j]);
                    assert_int_equal(imgstore_store__log_count(&total, f->store, base, log), 0);
                    assert_int_equal(
                        imgstore_store__log_rows(&rows, f->store, base, log, total, 0, total), 0);
                    for (size_t r = 0; r < total; r++) {
                        uint64_t op;
                        int64_t when;
                        git_oid at, state, sigs;
                        git_tree *then;
                        char path[600];

                        assert_int_equal(
                            imgstore_store__index_row_numbers(&op, &when, log, rows[r]), 0);
                        assert_int_equal(
                            imgstore_store__index_commit_id(&at, f->store, base, &p_id, ops, op),
                            0);
                        then = tree_of(f, &at);
                        snprintf(path, sizeof(path), "channels/%s/%s.json", names[i], channels[j]);
                        state = imgstore_store__id_at(then, path);
                        snprintf(path, sizeof(path), "channels/%s/%s.sigs", names[i], channels[j]);
                        sigs = imgstore_store__id_at(then, path);
                        git_tree_free(then);
                        snprintf(path, sizeof(path), "archive/channels/%s/%s/%05zu/%03zu/%llu.json",
                                 names[i], channels[j], r / 64 / 256, r / 64 % 256,
                                 (unsigned long long)op);
                        assert_int_equal(imgstore_store__tree_set(&tree_id, f->store, path, &state,
                                                                  GIT_FILEMODE_BLOB),
                                         0);
                        snprintf(path, sizeof(path), "archive/channels/%s/%s/%05zu/%03zu/%llu.sigs",
                                 names[i], channels[j], r / 64 / 256, r / 64 % 256,
                                 (unsigned long long)op);
                        assert_int_equal(imgstore_store__tree_set(&tree_id, f->store, path, &sigs,
                                                                  GIT_FILEMODE_TREE),
                                         0);
                    }
                    imgstore_strings_free(rows, total);
                    rows = NULL;
                }
                imgstore_strings_free(channels, channel_count);
            }
            imgstore_strings_free(names, name_count);
        }
        snprintf(message, sizeof(message),
                 "cut history at %.12s\n\nstore-id: %s\nprevious: %s\nop: %zu\n", p_hex, first,
                 p_hex, ops + 1);
    }
    if (edit)
        edit(f, &tree_id, base);
    assert_int_equal(git_tree_lookup(&tree, repo, &tree_id), 0);
    assert_int_equal(git_signature_now(&sig, "test", "test@example"), 0);
    assert_int_equal(
        imgstore_store__commit_create(out, f->store, repo, sig, message, tree, NULL, key), 0);
    assert_int_equal(git_reference_create(&moved, repo, IMGSTORE_STORE_REF, out, 1, "cut"), 0);
    git_reference_free(moved);
    git_signature_free(sig);
    git_tree_free(tree);
    git_tree_free(base);
    git_commit_free(p_commit);
    git_reference_free(head);
}

static void prune_to(fixture *f, size_t keep)
{
    /* two days on, a one-day window: only the channels' stacks and current versions stay */
    imgstore_prune_opts opts = {.name = "app",
                                .keep = keep,
                                .older_than = 86400,
                                .now = time(NULL) + 2 * 86400,
                                .cut = true};
    imgstore_signers signers = TEST_SIGNERS;
    imgstore_prune_plan *plan = NULL;

    assert_int_equal(imgstore_store_prune(&plan, f->store, &opts, &signers, "test"), 0);
    imgstore_prune_plan_free(plan);
}

/* A replica at `path` of the fixture's store, synced once. */
static void replica_sync(const char *replica_path, fixture *f, const char *pin)
{
    imgstore_mirror_opts opts = {f->path, pin};
    imgstore_mirror_stats stats;

    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), 0);
}

static void replica_tip(char out[41], const char *replica_path)
{
    imgstore_store *replica = NULL;

    assert_int_equal(imgstore_store_open(&replica, replica_path), 0);
    assert_int_equal(imgstore_store_tip_id(out, replica), 0);
    imgstore_store_free(replica);
}

static void add_deployer(fixture *f, imgstore_sign_key **out);

static bool tip_is_cut(fixture *f)
{
    imgstore_store__cut_record record;
    git_commit *commit = NULL;
    git_oid id;
    bool is_cut;

    assert_int_equal(git_reference_name_to_id(&id, f->store->repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(git_commit_lookup(&commit, f->store->repo, &id), 0);
    is_cut = imgstore_store__cut_read(&record, commit) == 0;
    git_commit_free(commit);
    return is_cut;
}

/* prod's state for version 2: what a forgery puts back */
static git_oid old_state, old_sigs;

/* Versions 1..3 of app, prod through 2 and 3 (1 never ran), a replica following. */
static void start(fixture *f, char replica_path[600])
{
    snprintf(replica_path, 600, "%s/replica.git", f->dir);
    push(f, "1", 'a');
    push(f, "2", 'b');
    deploy(f, "2");
    {
        git_tree *tip = NULL;

        assert_int_equal(imgstore_store__tip_tree(&tip, f->store), 0);
        old_state = imgstore_store__id_at(tip, "channels/app/prod.json");
        old_sigs = imgstore_store__id_at(tip, "channels/app/prod.sigs");
        git_tree_free(tip);
    }
    push(f, "3", 'c');
    deploy(f, "3");
    replica_sync(replica_path, f, NULL);
}

/* Sync expecting a refusal whose message holds `reason`; the replica keeps `good`. */
static void refused(fixture *f, const char *replica_path, const char *good, const char *reason)
{
    imgstore_mirror_opts opts = {f->path, NULL};
    imgstore_mirror_stats stats;
    char served[41];

    if (imgstore_store_mirror_sync(&stats, replica_path, &opts) != IMGSTORE_EVERIFY)
        fail_msg("not refused (expected: %s): %s", reason, imgstore_error_last());
    print_message("refused: %s\n", imgstore_error_last());
    if (!strstr(imgstore_error_last(), reason))
        fail_msg("refused for '%s', not for '%s'", imgstore_error_last(), reason);
    assert_null(strchr(imgstore_error_last(), '\n'));
    assert_false(stats.advanced);
    replica_tip(served, replica_path);
    assert_string_equal(served, good);
}

static void sync_follows_a_cut(void **state)
{
    fixture *f = *state;
    imgstore_mirror_opts opts = {f->path, NULL};
    imgstore_mirror_stats stats;
    imgstore_store *replica = NULL;
    imgstore_manifest *m = NULL;
    char replica_path[600], served[41], cut_hex[41];

    start(f, replica_path);
    prune_to(f, 1); /* the removal, and the cut after it (store/cut.c) */
    tip(cut_hex, f);
    assert_true(tip_is_cut(f));
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), 0);
    assert_true(stats.advanced);
    replica_tip(served, replica_path);
    assert_string_equal(served, cut_hex);
    assert_int_equal(imgstore_store_open(&replica, replica_path), 0);
    assert_int_equal(imgstore_store_manifest_get(&m, NULL, replica, "app", "1"),
                     IMGSTORE_ENOTFOUND);
    assert_int_equal(imgstore_store_manifest_get(&m, NULL, replica, "app", "3"), 0);
    imgstore_manifest_free(m);
    imgstore_store_free(replica);
    /* and goes on from the cut as from any commit */
    push(f, "4", 'd');
    deploy(f, "4");
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), 0);
    assert_true(stats.advanced);
    assert_int_equal(stats.commits, 2);
}

static void first_sync_after_a_cut_pins_policy_one_through_the_archive(void **state)
{
    fixture *f = *state;
    imgstore_policy_link *chain = NULL;
    size_t count = 0;
    imgstore_sign_key *deployer = NULL;
    char replica_path[600], pin[65], served[41], cut_hex[41];

    snprintf(replica_path, sizeof(replica_path), "%s/late.git", f->dir);
    assert_int_equal(imgstore_store_policy_chain(&chain, &count, f->store), 0);
    imgstore_sha256_hex(pin, chain[0].policy, chain[0].policy_len);
    imgstore_policy_chain_free(chain, count);
    add_deployer(f, &deployer); /* policy 2: policy 1 only in archive/trust/1 after the cut */
    push(f, "1", 'a');
    push(f, "2", 'b');
    deploy(f, "2");
    prune_to(f, 1);
    assert_true(tip_is_cut(f));
    tip(cut_hex, f);
    replica_sync(replica_path, f, pin);
    replica_tip(served, replica_path);
    assert_string_equal(served, cut_hex);
    imgstore_sign_key_free(deployer);
}

static void set_blob(fixture *f, git_oid *tree, const char *path, const char *bytes)
{
    git_oid blob;

    assert_int_equal(imgstore_store__write_blob(&blob, f->store, bytes, strlen(bytes)), 0);
    assert_int_equal(imgstore_store__tree_set(tree, f->store, path, &blob, GIT_FILEMODE_BLOB), 0);
}

static void state_goes_back(fixture *f, git_oid *tree, const git_tree *base)
{
    (void)base;
    assert_int_equal(imgstore_store__tree_set(tree, f->store, "channels/app/prod.json", &old_state,
                                              GIT_FILEMODE_BLOB),
                     0);
    assert_int_equal(imgstore_store__tree_set(tree, f->store, "channels/app/prod.sigs", &old_sigs,
                                              GIT_FILEMODE_TREE),
                     0);
}

static void policy_step_changed(fixture *f, git_oid *tree, const git_tree *base)
{
    (void)base;
    set_blob(f, tree, "archive/trust/1/policy.json", "{\"schema\":\"forged\"}");
}

static void policy_signatures_dropped(fixture *f, git_oid *tree, const git_tree *base)
{
    (void)base;
    assert_int_equal(
        imgstore_store__tree_set(tree, f->store, "archive/trust/1/signatures", NULL, 0), 0);
}

static void first_entry(char out[300], fixture *f, const git_oid *tree_id, const char *dir,
                        const char *suffix)
{
    git_tree *tree = NULL;
    char **names = NULL;
    size_t count = 0;

    assert_int_equal(git_tree_lookup(&tree, f->store->repo, tree_id), 0);
    assert_int_equal(imgstore_store__list_tree(&names, &count, f->store, tree, dir, suffix), 0);
    assert_true(count > 0);
    snprintf(out, 300, "%s/%s%s", dir, names[0], suffix ? suffix : "");
    imgstore_strings_free(names, count);
    git_tree_free(tree);
}

static void new_version_badly_signed(fixture *f, git_oid *tree, const git_tree *base)
{
    char path[300], dir[200];

    (void)base;
    imgstore_store__version_path(dir, sizeof(dir), f->store, "app", "4", "signatures");
    first_entry(path, f, tree, dir, NULL);
    set_blob(f, tree, path,
             "-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQ==\n-----END SSH SIGNATURE-----\n");
}

static void archived_move_changed(fixture *f, git_oid *tree_id, const git_tree *base)
{
    git_tree *tree = NULL;
    char **names = NULL, path[2][300];
    const char *dir = "archive/channels/app/prod/00000/000";
    git_oid ids[2];
    size_t count = 0;

    (void)base;
    /* two signed moves swapped: each is a valid state, neither where the replica had it */
    assert_int_equal(git_tree_lookup(&tree, f->store->repo, tree_id), 0);
    assert_int_equal(imgstore_store__list_tree(&names, &count, f->store, tree, dir, ".json"), 0);
    assert_true(count >= 2);
    for (int i = 0; i < 2; i++) {
        snprintf(path[i], sizeof(path[i]), "%s/%s.json", dir, names[i]);
        ids[i] = imgstore_store__id_at(tree, path[i]);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(
            imgstore_store__tree_set(tree_id, f->store, path[i], &ids[1 - i], GIT_FILEMODE_BLOB),
            0);
    imgstore_strings_free(names, count);
    git_tree_free(tree);
}

static void move_back_to(fixture *f, const git_oid *to)
{
    git_reference *moved = NULL;

    assert_int_equal(
        git_reference_create(&moved, f->store->repo, IMGSTORE_STORE_REF, to, 1, "test"), 0);
    git_reference_free(moved);
}

/* Policy 2: a deploy-only key (*out, caller frees) beside the test key, so that policy 1 is
 * an archived step of a cut. */
static void add_deployer(fixture *f, imgstore_sign_key **out)
{
    imgstore_signers signers = TEST_SIGNERS;
    imgstore_policy *policy = NULL;
    imgstore_sign_pubkey pub;
    char *line = NULL;

    assert_int_equal(imgstore_sign_key_generate(out, "deployer"), 0);
    imgstore_sign_key_public(&pub, *out);
    assert_int_equal(imgstore_sign_pubkey_format(&line, &pub), 0);
    assert_int_equal(imgstore_store_policy_get(&policy, NULL, f->store), 0);
    assert_int_equal(imgstore_schema_policy_add_key(policy, IMGSTORE_ROLE_DEPLOY, line), 0);
    assert_int_equal(imgstore_store_policy_update(NULL, f->store, policy, &signers, "admin"), 0);
    imgstore_policy_free(policy);
    free(line);
}

static void forged_cuts_are_refused(void **state)
{
    fixture *f = *state;
    imgstore_mirror_opts opts = {f->path, NULL};
    imgstore_mirror_stats stats;
    imgstore_sign_key *deployer = NULL;
    char replica_path[600], good[41], hex[41];
    git_oid r, p;

    add_deployer(f, &deployer);
    start(f, replica_path);
    replica_tip(good, replica_path);
    push(f, "4", 'd');
    prune_to(f, 1);
    assert_int_equal(git_reference_name_to_id(&p, f->store->repo, IMGSTORE_STORE_REF), 0);

    cut(&r, f, NULL, NULL);
    refused(f, replica_path, good, "must be signed by a release or root key");
    move_back_to(f, &p);
    cut(&r, f, deployer, NULL);
    refused(f, replica_path, good, "as a release or root key");
    move_back_to(f, &p);
    cut(&r, f, test_key, state_goes_back);
    refused(f, replica_path, good, "a channel's sequence only grows");
    move_back_to(f, &p);
    cut(&r, f, test_key, policy_step_changed);
    refused(f, replica_path, good, "archive/trust/1");
    move_back_to(f, &p);
    cut(&r, f, test_key, policy_signatures_dropped);
    refused(f, replica_path, good, "is not the policy 1 this replica trusts");
    move_back_to(f, &p);
    cut(&r, f, test_key, new_version_badly_signed);
    refused(f, replica_path, good, "app 4: a release signature does not verify");
    move_back_to(f, &p);
    cut(&r, f, test_key, archived_move_changed);
    refused(f, replica_path, good, "is not the one this replica has");
    /* a cut of a history that is not the replica's: from before its tip */
    {
        git_oid older;
        git_commit *c = NULL;
        git_commit *parent = NULL;

        assert_int_equal(git_oid_fromstr(&older, good), 0);
        assert_int_equal(git_commit_lookup(&c, f->store->repo, &older), 0);
        assert_int_equal(git_commit_parent(&parent, c, 0), 0);
        move_back_to(f, git_commit_id(parent));
        git_commit_free(parent);
        git_commit_free(c);
    }
    cut(&r, f, test_key, NULL);
    refused(f, replica_path, good, "not after this replica's tip");
    /* the real one is taken after all that */
    move_back_to(f, &p);
    assert_true(tip_is_cut(f));
    assert_int_equal(imgstore_store_mirror_sync(&stats, replica_path, &opts), 0);
    assert_true(stats.advanced);
    replica_tip(good, replica_path);
    git_oid_tostr(hex, sizeof(hex), &p);
    assert_string_equal(good, hex);
    imgstore_sign_key_free(deployer);
}

static void first_sync_refuses_a_cut_that_replaces_policy_one(void **state)
{
    fixture *f = *state;
    imgstore_sign_key *deployer = NULL;
    imgstore_policy_link *chain = NULL;
    imgstore_mirror_opts opts = {f->path, NULL};
    size_t count = 0;
    char replica_path[600], pin[65];
    git_oid r;

    snprintf(replica_path, sizeof(replica_path), "%s/late.git", f->dir);
    assert_int_equal(imgstore_store_policy_chain(&chain, &count, f->store), 0);
    imgstore_sha256_hex(pin, chain[0].policy, chain[0].policy_len);
    imgstore_policy_chain_free(chain, count);
    opts.policy_sha256 = pin;
    add_deployer(f, &deployer);
    push(f, "1", 'a');
    cut(&r, f, test_key, policy_step_changed);
    assert_int_equal(imgstore_store_mirror_sync(NULL, replica_path, &opts), IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "archive/trust/1"));
    imgstore_sign_key_free(deployer);
}

/* A second cut keeps the first's archive: a replica that took the first compares it by
 * segment id; one that slept through both compares the moves it saw with its history and
 * checks the ones it missed, and a policy step it never saw, against their signatures. */
static void sync_follows_two_cuts(void **state)
{
    fixture *f = *state;
    imgstore_sign_key *deployer = NULL;
    char awake[600], asleep[600], served[41], cut_hex[41];

    start(f, awake);
    snprintf(asleep, sizeof(asleep), "%s/asleep.git", f->dir);
    replica_sync(asleep, f, NULL);
    prune_to(f, 1);
    assert_true(tip_is_cut(f));
    replica_sync(awake, f, NULL);
    add_deployer(f, &deployer);
    push(f, "5", 'e'); /* never runs: the second prune removes it */
    push(f, "6", 'f');
    deploy(f, "6");
    push(f, "7", 'g');
    prune_to(f, 1);
    assert_true(tip_is_cut(f));
    tip(cut_hex, f);
    replica_sync(awake, f, NULL);
    replica_tip(served, awake);
    assert_string_equal(served, cut_hex);
    replica_sync(asleep, f, NULL);
    replica_tip(served, asleep);
    assert_string_equal(served, cut_hex);
    imgstore_sign_key_free(deployer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(verify_range_checks_only_what_is_new, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_range_refuses_a_history_that_does_not_descend, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(verify_range_refuses_the_wrong_policy_one, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_takes_a_good_history_and_refuses_a_damaged_chunk,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            replica_refuses_misplaced_versions_bad_shards_and_a_new_format, setup, teardown),
        cmocka_unit_test_setup_teardown(replica_of_an_imgstore_1_primary_is_flat, setup_flat,
                                        teardown),
        cmocka_unit_test_setup_teardown(sync_follows_a_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_follows_two_cuts, setup, teardown),
        cmocka_unit_test_setup_teardown(first_sync_after_a_cut_pins_policy_one_through_the_archive,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(forged_cuts_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(first_sync_refuses_a_cut_that_replaces_policy_one, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
