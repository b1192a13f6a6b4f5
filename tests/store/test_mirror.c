/*
 * Read replicas (store/mirror.c, store/mirror_verify.c): a range of commits is checked for
 * what is new only, a history that does not descend is refused, and a sync copies a primary
 * on a path, takes what checks out and refuses a damaged chunk or the wrong policy 1.
 */
#include "store_test_util.h"

static void push(fixture *f, const char *version, char fill)
{
    imgstore_signers signers = TEST_SIGNERS;
    imgstore_push_opts opts = {.name = "app", .version = version, .signers = signers};
    imgstore_manifest *m = NULL;
    imgstore_push *p = NULL;
    bool created;
    char bytes[5000];

    memset(bytes, fill, sizeof(bytes));
    assert_int_equal(imgstore_store_push_begin(&p, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(p, "app.img", "unknown", 0), 0);
    assert_int_equal(imgstore_store_push_write(p, bytes, sizeof(bytes)), 0);
    assert_int_equal(imgstore_store_push_file_end(p, NULL), 0);
    assert_int_equal(imgstore_store_push_commit(p, &m, &created), 0);
    imgstore_manifest_free(m);
    imgstore_store_push_free(p);
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
    snprintf(path, sizeof(path), "images/app/%s/files/app.img/000000", version);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(verify_range_checks_only_what_is_new, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_range_refuses_a_history_that_does_not_descend, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(verify_range_refuses_the_wrong_policy_one, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_takes_a_good_history_and_refuses_a_damaged_chunk,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
