/*
 * Cutting history (store/cut.c, issue #12): a prune with a cut ends in a signed root commit
 * that records the removal and archives the channel moves and policy steps before it; every
 * reader still answers on the cut store (deploy, rollback, history, verify, reindex --check),
 * tampering with the archive is caught, and a second cut keeps the first one's archive.
 */
#include "store_test_util.h"

static const imgstore_signers signers = {test_keys, 1};

static void push_one(fixture *f, const char *name, const char *version, int64_t created)
{
    imgstore_push_opts opts = {.name = name,
                               .version = version,
                               .actor = "test <t@example>",
                               .created = created,
                               .signers = {test_keys, 1}};
    imgstore_push *p = NULL;
    imgstore_manifest *m = NULL;
    char bytes[128];
    bool made = false;

    snprintf(bytes, sizeof(bytes), "%s %s bytes", name, version);
    assert_int_equal(imgstore_store_push_begin(&p, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(p, "f.bin", "unknown", 0), 0);
    assert_int_equal(imgstore_store_push_write(p, bytes, strlen(bytes)), 0);
    assert_int_equal(imgstore_store_push_file_end(p, NULL), 0);
    assert_int_equal(imgstore_store_push_commit(p, &m, &made), 0);
    imgstore_manifest_free(m);
    imgstore_store_push_free(p);
}

static void push_many(fixture *f, const char *name, int first, int last)
{
    for (int i = first; i <= last; i++) {
        char version[32];

        snprintf(version, sizeof(version), "%d", i);
        push_one(f, name, version, 1600000000 + i * 60);
    }
}

static void deploy(fixture *f, const char *name, const char *channel, const char *version)
{
    imgstore_channel_opts opts = {.actor = "test", .signers = {test_keys, 1}};
    imgstore_channel_state *state = NULL;

    if (imgstore_store_deploy(&state, f->store, name, version, channel, &opts) != 0)
        fail_msg("deploy %s: %s", version, imgstore_error_last());
    imgstore_channel_state_free(state);
}

static void change_policy(fixture *f)
{
    imgstore_policy *policy = NULL;

    assert_int_equal(imgstore_store_policy_get(&policy, NULL, f->store), 0);
    policy->channel_ttl_seconds = policy->channel_ttl_seconds == 86400 ? 172800 : 86400;
    assert_int_equal(imgstore_store_policy_update(NULL, f->store, policy, &signers, "test"), 0);
    imgstore_policy_free(policy);
}

static imgstore_prune_plan *prune_cut(fixture *f, size_t keep)
{
    imgstore_prune_opts opts = {.keep = keep, .cut = true};
    imgstore_prune_plan *plan = NULL;

    if (imgstore_store_prune(&plan, f->store, &opts, &signers, "test") != 0)
        fail_msg("prune: %s", imgstore_error_last());
    return plan;
}

static git_commit *tip_commit(fixture *f)
{
    git_commit *commit = NULL;
    git_oid id;

    assert_int_equal(git_reference_name_to_id(&id, f->store->repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(git_commit_lookup(&commit, f->store->repo, &id), 0);
    return commit;
}

static bool tree_has(fixture *f, const char *path)
{
    git_tree *tip = NULL;
    git_oid id;

    assert_int_equal(imgstore_store__tip_tree(&tip, f->store), 0);
    id = imgstore_store__id_at(tip, path);
    git_tree_free(tip);
    return !git_oid_iszero(&id);
}

/* A store with history worth cutting: policy 3, two channels moved, 12 versions. */
static void history_worth_cutting(fixture *f)
{
    push_many(f, "app", 1, 6);
    deploy(f, "app", "prod", "2");
    change_policy(f);
    deploy(f, "app", "prod", "4");
    deploy(f, "app", "beta", "5");
    change_policy(f);
    push_many(f, "app", 7, 12);
    deploy(f, "app", "prod", "6");
}

static void prune_cut_writes_a_signed_root_that_records_the_removal(void **state)
{
    fixture *f = *state;
    imgstore_store__cut_record record;
    imgstore_prune_plan *plan = NULL;
    git_commit *tip = NULL;
    char id[41], first[41], previous[41];

    history_worth_cutting(f);
    assert_int_equal(imgstore_store_id(first, f->store), 0);
    plan = prune_cut(f, 3);
    assert_true(plan->removed_count > 0);
    assert_true(plan->cut);
    assert_int_equal(plan->cut_moves, 4);
    assert_int_equal(plan->cut_policies, 2);
    tip = tip_commit(f);
    git_oid_tostr(id, sizeof(id), git_commit_id(tip));
    assert_string_equal(id, plan->cut_commit);
    assert_int_equal(git_commit_parentcount(tip), 0);
    assert_int_equal(imgstore_store__cut_read(&record, tip), 0);
    git_oid_tostr(previous, sizeof(previous), &record.previous);
    assert_string_equal(previous, plan->commit);
    assert_string_equal(record.store_id, first);
    assert_int_equal(record.op, plan->cut_op);
    /* init, 12 pushes, 4 moves, 2 policies, the removal: the cut is op 20 */
    assert_int_equal(record.op, 20);
    assert_non_null(strstr(git_commit_message(tip), "cut history at "));
    {
        git_buf sig = {0}, data = {0};

        assert_int_equal(git_commit_extract_signature(&sig, &data, f->store->repo,
                                                      (git_oid *)git_commit_id(tip), NULL),
                         0);
        assert_non_null(strstr(sig.ptr, "BEGIN SSH SIGNATURE"));
        git_buf_dispose(&sig);
        git_buf_dispose(&data);
    }
    /* the archive: policies 1 and 2, and each move where its log row puts it */
    assert_true(tree_has(f, "archive/trust/1/policy.json"));
    assert_true(tree_has(f, "archive/trust/2/signatures"));
    assert_false(tree_has(f, "archive/trust/3"));
    assert_true(tree_has(f, "archive/channels/app/prod/00000/000/7.json"));
    assert_true(tree_has(f, "archive/channels/app/prod/00000/000/7.sigs"));
    assert_true(tree_has(f, "archive/channels/app/prod/00000/000/18.json"));
    assert_true(tree_has(f, "archive/channels/app/beta/00000/000/10.json"));
    assert_true(tree_has(f, "index/cuts/00000/000"));
    git_commit_free(tip);
    imgstore_prune_plan_free(plan);
}

static void prune_dry_run_says_what_the_cut_would_archive(void **state)
{
    fixture *f = *state;
    imgstore_prune_opts opts = {.keep = 3, .cut = true};
    imgstore_prune_plan *plan = NULL;
    char before[41], after[41];

    history_worth_cutting(f);
    assert_int_equal(imgstore_store_tip_id(before, f->store), 0);
    assert_int_equal(imgstore_store_prune_plan(&plan, f->store, &opts), 0);
    assert_true(plan->cut);
    assert_int_equal(plan->cut_op, 20);
    assert_int_equal(plan->cut_moves, 4);
    assert_int_equal(plan->cut_policies, 2);
    assert_string_equal(plan->cut_commit, "");
    assert_int_equal(imgstore_store_tip_id(after, f->store), 0);
    assert_string_equal(before, after);
    imgstore_prune_plan_free(plan);
}

static void cut_read_tells_a_cut_from_a_first_commit(void **state)
{
    fixture *f = *state;
    imgstore_store__cut_record record;
    git_commit *tip = tip_commit(f);

    assert_int_equal(imgstore_store__cut_read(&record, tip), IMGSTORE_ENOTFOUND);
    git_commit_free(tip);
}

static void report_failure(const imgstore_verify_result *result, void *payload)
{
    (void)payload;
    if (result->status != 0)
        print_message("%s %s: %s\n", result->name ? result->name : "",
                      result->version ? result->version : "", result->message);
}

static void rollback(fixture *f, const char *to, const char *expect)
{
    imgstore_channel_opts opts = {
        .actor = "test", .reason = "test", .to_version = to, .signers = {test_keys, 1}};
    imgstore_channel_state *state = NULL;

    if (imgstore_store_rollback(&state, f->store, "app", "prod", &opts) != 0)
        fail_msg("rollback: %s", imgstore_error_last());
    assert_string_equal(state->version, expect);
    imgstore_channel_state_free(state);
}

/* Every reader that must hold on a cut store. */
static void check_readers(fixture *f)
{
    if (imgstore_store_index_check(f->store) != 0)
        fail_msg("index: %s", imgstore_error_last());
    if (imgstore_store_verify_trust(f->store, report_failure, NULL) != 0)
        fail_msg("verify_trust: %s", imgstore_error_last());
    if (imgstore_store_fsck(f->store, report_failure, NULL) != 0)
        fail_msg("fsck: %s", imgstore_error_last());
    if (imgstore_store_verify(f->store, NULL, NULL, report_failure, NULL) != 0)
        fail_msg("verify: %s", imgstore_error_last());
}

/* The versions of app/prod's history, newest first, paged `limit` at a time. */
static size_t channel_history(fixture *f, char out[][32], size_t cap, size_t limit)
{
    imgstore_history_query q = {.channel = "prod", .limit = limit};
    size_t n = 0;

    for (;;) {
        imgstore_history_entry *entries = NULL;
        size_t count = 0;
        uint64_t next = 0;

        if (imgstore_store_history_query(&entries, &count, &next, f->store, "app", &q) != 0)
            fail_msg("history: %s", imgstore_error_last());
        for (size_t i = 0; i < count && n < cap; i++) {
            assert_non_null(entries[i].state);
            assert_true(entries[i].commit[0] != '\0');
            assert_true(entries[i].signature_count > 0);
            snprintf(out[n++], 32, "%s@%llu", entries[i].version,
                     (unsigned long long)entries[i].op);
        }
        imgstore_history_free(entries, count);
        if (!next)
            return n;
        q.before = next;
    }
}

static void readers_hold_after_a_cut(void **state)
{
    fixture *f = *state;
    imgstore_prune_plan *plan = NULL;
    imgstore_history_entry *entries = NULL;
    char first[41], id[41], moves[16][32];
    size_t count = 0;
    bool changed = true;

    history_worth_cutting(f);
    assert_int_equal(imgstore_store_id(first, f->store), 0);
    plan = prune_cut(f, 3);
    imgstore_prune_plan_free(plan);
    check_readers(f);
    assert_int_equal(imgstore_store_id(id, f->store), 0);
    assert_string_equal(id, first);
    /* the channel's moves before the cut come from the archive, paged one at a time */
    assert_int_equal(channel_history(f, moves, 16, 1), 3);
    assert_string_equal(moves[0], "6@18");
    assert_string_equal(moves[1], "4@9");
    assert_string_equal(moves[2], "2@7");
    /* the image's history ends at the cut */
    assert_int_equal(imgstore_store_history(&entries, &count, f->store, "app", NULL), 0);
    assert_int_equal(count, 1);
    assert_string_equal(entries[0].action, "cut");
    assert_int_equal(entries[0].op, 20);
    imgstore_history_free(entries, count);
    /* writes go on from the cut: op numbers continue */
    deploy(f, "app", "prod", "12");
    push_one(f, "app", "13", 1600000000 + 13 * 60);
    check_readers(f);
    assert_int_equal(channel_history(f, moves, 16, 2), 4);
    assert_string_equal(moves[0], "12@21");
    assert_string_equal(moves[3], "2@7");
    assert_int_equal(imgstore_store_history(&entries, &count, f->store, "app", NULL), 0);
    assert_int_equal(count, 3);
    assert_string_equal(entries[0].action, "push");
    assert_int_equal(entries[0].op, 22);
    assert_string_equal(entries[2].action, "cut");
    imgstore_history_free(entries, count);
    /* the stack carried across the cut: rollback pops to 6, then 4; --to reaches 2 */
    rollback(f, NULL, "6");
    rollback(f, NULL, "4");
    rollback(f, "2", "2");
    check_readers(f);
    /* reindex agrees: nothing to change */
    assert_int_equal(imgstore_store_reindex(&changed, f->store, "test", test_key), 0);
    assert_false(changed);
}

static void a_second_cut_keeps_the_first_archive(void **state)
{
    fixture *f = *state;
    imgstore_prune_plan *plan = NULL;
    char moves[16][32];

    history_worth_cutting(f);
    plan = prune_cut(f, 3);
    imgstore_prune_plan_free(plan);
    push_many(f, "app", 13, 20);
    deploy(f, "app", "prod", "19");
    change_policy(f);
    deploy(f, "app", "beta", "20");
    plan = prune_cut(f, 2);
    assert_true(plan->cut);
    assert_int_equal(plan->cut_moves, 2);    /* only the moves since the first cut */
    assert_int_equal(plan->cut_policies, 1); /* policy 3 */
    imgstore_prune_plan_free(plan);
    assert_true(tree_has(f, "archive/channels/app/prod/00000/000/7.json"));
    assert_true(tree_has(f, "archive/channels/app/beta/00000/000/10.json"));
    assert_true(tree_has(f, "archive/trust/1/policy.json"));
    assert_true(tree_has(f, "archive/trust/3/policy.json"));
    check_readers(f);
    assert_int_equal(channel_history(f, moves, 16, 3), 4);
    assert_string_equal(moves[0], "19@29");
    assert_string_equal(moves[3], "2@7");
}

/* Replace `path` of the tip's tree by the blob at `with` (NULL: remove it) in a new root
 * commit with the tip's message: what someone rewriting the store by hand would make. */
static void tamper(fixture *f, const char *path, const char *with)
{
    git_commit *tip = tip_commit(f);
    git_tree *tree = NULL, *tampered = NULL;
    git_signature *sig = NULL;
    git_reference *ref = NULL;
    git_oid tree_oid = *git_commit_tree_id(tip), blob, commit;

    assert_int_equal(git_commit_tree(&tree, tip), 0);
    if (with) {
        blob = imgstore_store__id_at(tree, with);
        assert_false(git_oid_iszero(&blob));
    }
    assert_int_equal(
        imgstore_store__tree_set(&tree_oid, f->store, path, with ? &blob : NULL, GIT_FILEMODE_BLOB),
        0);
    assert_int_equal(git_tree_lookup(&tampered, f->store->repo, &tree_oid), 0);
    assert_int_equal(imgstore_store__actor_signature(&sig, "mallory"), 0);
    assert_int_equal(imgstore_store__commit_create(&commit, f->store, f->store->repo, sig,
                                                   git_commit_message(tip), tampered, NULL,
                                                   test_key),
                     0);
    assert_int_equal(
        git_reference_create(&ref, f->store->repo, IMGSTORE_STORE_REF, &commit, 1, "tamper"), 0);
    git_reference_free(ref);
    git_signature_free(sig);
    git_tree_free(tampered);
    git_tree_free(tree);
    git_commit_free(tip);
}

static void verify_catches_a_tampered_archived_policy_step(void **state)
{
    fixture *f = *state;
    imgstore_prune_plan *plan = NULL;

    history_worth_cutting(f);
    plan = prune_cut(f, 3);
    imgstore_prune_plan_free(plan);
    /* policy 2 replaced by policy 1's bytes: its signatures no longer match */
    tamper(f, "archive/trust/2/policy.json", "archive/trust/1/policy.json");
    assert_int_equal(imgstore_store_verify_trust(f->store, NULL, NULL), IMGSTORE_EVERIFY);
    assert_int_equal(imgstore_store__policy_chain_check(f->store), IMGSTORE_EVERIFY);
}

static void verify_catches_a_dropped_archived_policy_step(void **state)
{
    fixture *f = *state;
    imgstore_prune_plan *plan = NULL;

    history_worth_cutting(f);
    plan = prune_cut(f, 3);
    imgstore_prune_plan_free(plan);
    tamper(f, "archive/trust/1/policy.json", NULL);
    tamper(f, "archive/trust/1/signatures", NULL);
    tamper(f, "archive/trust/2/policy.json", NULL);
    tamper(f, "archive/trust/2/signatures", NULL);
    /* policy 3 with nothing before it is not policy 1 */
    assert_int_equal(imgstore_store_verify_trust(f->store, NULL, NULL), IMGSTORE_EVERIFY);
}

static void verify_catches_a_tampered_archived_state(void **state)
{
    fixture *f = *state;
    imgstore_prune_plan *plan = NULL;

    history_worth_cutting(f);
    plan = prune_cut(f, 3);
    imgstore_prune_plan_free(plan);
    /* beta's state filed as a prod move */
    tamper(f, "archive/channels/app/prod/00000/000/9.json",
           "archive/channels/app/beta/00000/000/10.json");
    assert_int_equal(imgstore_store_verify_trust(f->store, NULL, NULL), IMGSTORE_EVERIFY);
}

/* An image's history paged one entry at a time reaches the cut's entry last, and the cursor
 * stops there. */
static void image_history_pages_end_at_the_cut(void **state)
{
    fixture *f = *state;
    imgstore_prune_plan *plan = NULL;
    imgstore_history_query q = {.limit = 1};
    char actions[8][16];
    size_t n = 0;

    history_worth_cutting(f);
    plan = prune_cut(f, 3);
    imgstore_prune_plan_free(plan);
    push_one(f, "app", "13", 1600000000 + 13 * 60);
    deploy(f, "app", "prod", "13");
    for (;;) {
        imgstore_history_entry *entries = NULL;
        size_t count = 0;
        uint64_t next = 0;

        assert_int_equal(imgstore_store_history_query(&entries, &count, &next, f->store, "app", &q),
                         0);
        assert_int_equal(count, 1);
        snprintf(actions[n++], 16, "%s@%llu", entries[0].action, (unsigned long long)entries[0].op);
        imgstore_history_free(entries, count);
        if (!next || n == 8)
            break;
        q.before = next;
    }
    assert_int_equal(n, 3);
    assert_string_equal(actions[0], "deploy@22");
    assert_string_equal(actions[1], "push@21");
    assert_string_equal(actions[2], "cut@20");
}

/* A cut needs current indexes; without them the prune fails whole: nothing removed. */
static void a_cut_that_cannot_be_made_leaves_the_store_as_it_was(void **state)
{
    fixture *f = *state;
    imgstore_prune_opts opts = {.keep = 3, .cut = true};
    imgstore_prune_plan *plan = NULL;
    git_commit *tip = NULL;
    git_tree *tree = NULL;
    git_signature *sig = NULL;
    git_reference *ref = NULL;
    git_oid stale;
    char before[41], after[41];

    history_worth_cutting(f);
    /* a commit by another tool: the indexes are stale from here on */
    tip = tip_commit(f);
    assert_int_equal(git_commit_tree(&tree, tip), 0);
    assert_int_equal(imgstore_store__actor_signature(&sig, "git"), 0);
    assert_int_equal(imgstore_store__commit_create(&stale, f->store, f->store->repo, sig,
                                                   "by hand\n", tree, tip, test_key),
                     0);
    assert_int_equal(
        git_reference_create(&ref, f->store->repo, IMGSTORE_STORE_REF, &stale, 1, "stale"), 0);
    assert_int_equal(imgstore_store_tip_id(before, f->store), 0);
    assert_int_equal(imgstore_store_prune(&plan, f->store, &opts, &signers, "test"),
                     IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), "reindex"));
    assert_int_equal(imgstore_store_tip_id(after, f->store), 0);
    assert_string_equal(before, after);
    assert_int_equal(imgstore_store_version_position(&(size_t){0}, f->store, "app", "1"), 0);
    git_reference_free(ref);
    git_signature_free(sig);
    git_tree_free(tree);
    git_commit_free(tip);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(prune_cut_writes_a_signed_root_that_records_the_removal,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(prune_dry_run_says_what_the_cut_would_archive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(cut_read_tells_a_cut_from_a_first_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(readers_hold_after_a_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(a_second_cut_keeps_the_first_archive, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_catches_a_tampered_archived_policy_step, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(verify_catches_a_dropped_archived_policy_step, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(verify_catches_a_tampered_archived_state, setup, teardown),
        cmocka_unit_test_setup_teardown(image_history_pages_end_at_the_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(a_cut_that_cannot_be_made_leaves_the_store_as_it_was, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
