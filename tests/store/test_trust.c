/*
 * The store's trust rules through its API (docs/security.md): who may push, sign, deploy
 * and change the policy, thresholds, revocation, and what verify_trust reports. Stock
 * ssh-keygen and git checks of the same stores are in tests/integration/test_trust.py.
 */
#include "trust_test_util.h"

#include <time.h>
#include <unistd.h>

static void tip_id(char out[41], imgstore_store *store)
{
    git_oid oid;

    assert_int_equal(git_reference_name_to_id(&oid, store->repo, IMGSTORE_STORE_REF), 0);
    git_oid_tostr(out, 41, &oid);
}

static int push_as(imgstore_store *store, const char *version, const imgstore_sign_key *key)
{
    const imgstore_sign_key *keys[1] = {key};
    imgstore_push_opts opts = {
        .name = "app", .version = version, .actor = "ci", .signers = {keys, key ? 1 : 0}};
    imgstore_manifest *m = NULL;
    imgstore_push *push = NULL;
    bool created = false;
    char bytes[3000];
    int err;

    memset(bytes, version[0], sizeof(bytes));
    if ((err = imgstore_store_push_begin(&push, store, &opts)) == 0 &&
        (err = imgstore_store_push_file_begin(push, "app.img", "unknown", 0)) == 0 &&
        (err = imgstore_store_push_write(push, bytes, sizeof(bytes))) == 0 &&
        (err = imgstore_store_push_file_end(push, NULL)) == 0)
        err = imgstore_store_push_commit(push, &m, &created);
    imgstore_manifest_free(m);
    imgstore_store_push_free(push);
    return err;
}

static int deploy_as(imgstore_store *store, const char *version, const imgstore_sign_key *key)
{
    const imgstore_sign_key *keys[1] = {key};
    imgstore_channel_opts opts = {.actor = "ops", .signers = {keys, 1}};
    imgstore_channel_state *s = NULL;
    int err = imgstore_store_deploy(&s, store, "app", version, "prod", &opts);

    imgstore_channel_state_free(s);
    return err;
}

/* Edit the current policy with `edit` and commit it signed by `key`. */
static int change_policy(fixture *f, const imgstore_sign_key *key, imgstore_role role,
                         const char *action, const imgstore_sign_key *subject, uint32_t n)
{
    imgstore_policy *policy = NULL;
    imgstore_sign_pubkey pub;
    const imgstore_sign_key *keys[1] = {key};
    imgstore_signers signers = {keys, 1};
    char *line = NULL;
    int err;

    assert_int_equal(imgstore_store_policy_get(&policy, NULL, f->store), 0);
    if (subject) {
        imgstore_sign_key_public(&pub, subject);
        assert_int_equal(imgstore_sign_pubkey_format(&line, &pub), 0);
    }
    if (strcmp(action, "add") == 0)
        assert_int_equal(imgstore_schema_policy_add_key(policy, role, line), 0);
    else if (strcmp(action, "remove") == 0)
        assert_int_equal(imgstore_schema_policy_remove_key(policy, role, line), 0);
    else
        assert_int_equal(imgstore_schema_policy_set_threshold(policy, role, n), 0);
    err = imgstore_store_policy_update(NULL, f->store, policy, &signers, "admin");
    imgstore_policy_free(policy);
    free(line);
    return err;
}

static void new_store_has_policy_one_with_its_key_in_every_role(void **state)
{
    fixture *f = *state;
    imgstore_policy *policy = NULL;
    imgstore_sign_pubkey pub, listed;

    assert_int_equal(imgstore_store_policy_get(&policy, NULL, f->store), 0);
    assert_int_equal(policy->version, 1);
    assert_int_equal(policy->channel_ttl_seconds, IMGSTORE_POLICY_TTL_DEFAULT);
    imgstore_sign_key_public(&pub, f->root);
    for (int role = 0; role < IMGSTORE_ROLE_COUNT; role++) {
        assert_int_equal(policy->roles[role].key_count, 1);
        assert_int_equal(policy->roles[role].threshold, 1);
        assert_int_equal(imgstore_sign_pubkey_parse(&listed, policy->roles[role].keys[0]), 0);
        assert_true(imgstore_sign_pubkey_equal(&listed, &pub));
    }
    imgstore_policy_free(policy);
}

static void push_needs_a_release_key_and_writes_nothing_otherwise(void **state)
{
    fixture *f = *state;
    char before[41], after[41];

    tip_id(before, f->store);
    assert_int_equal(push_as(f->store, "1", NULL), IMGSTORE_EINVALID);
    assert_int_equal(push_as(f->store, "1", f->other), IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "is not a release key"));
    tip_id(after, f->store);
    assert_string_equal(before, after);
    assert_int_equal(push_as(f->store, "1", f->root), 0);
}

static void below_threshold_version_is_pending_until_signed(void **state)
{
    fixture *f = *state;
    const imgstore_sign_key *keys[1] = {f->other};
    imgstore_signers other = {keys, 1};
    imgstore_trust_status status;
    imgstore_manifest *m = NULL;

    assert_int_equal(change_policy(f, f->root, IMGSTORE_ROLE_RELEASE, "add", f->other, 0), 0);
    assert_int_equal(change_policy(f, f->root, IMGSTORE_ROLE_RELEASE, "threshold", NULL, 2), 0);
    assert_int_equal(push_as(f->store, "1", f->root), 0);
    assert_int_equal(imgstore_store_version_trust(&status, f->store, "app", "1"), 0);
    assert_int_equal(status.valid, 1);
    assert_int_equal(status.threshold, 2);
    assert_false(status.trusted);
    assert_int_equal(imgstore_store_manifest_get_trusted(&m, NULL, f->store, "app", "1"),
                     IMGSTORE_EVERIFY);
    assert_null(m);
    assert_int_equal(deploy_as(f->store, "1", f->root), IMGSTORE_EVERIFY);
    assert_int_equal(imgstore_store_sign_version(&status, f->store, "app", "1", &other, "qa"), 0);
    assert_int_equal(status.valid, 2);
    assert_true(status.trusted);
    assert_int_equal(imgstore_store_manifest_get_trusted(&m, NULL, f->store, "app", "1"), 0);
    imgstore_manifest_free(m);
    assert_int_equal(deploy_as(f->store, "1", f->root), 0);
}

static void policy_change_needs_current_root_keys(void **state)
{
    fixture *f = *state;
    imgstore_policy *policy = NULL;
    char before[41], after[41];

    tip_id(before, f->store);
    /* a key cannot add itself */
    assert_int_equal(change_policy(f, f->other, IMGSTORE_ROLE_ROOT, "add", f->other, 0),
                     IMGSTORE_EVERIFY);
    tip_id(after, f->store);
    assert_string_equal(before, after);
    assert_int_equal(change_policy(f, f->root, IMGSTORE_ROLE_ROOT, "add", f->other, 0), 0);
    assert_int_equal(change_policy(f, f->root, IMGSTORE_ROLE_ROOT, "threshold", NULL, 2), 0);
    /* now one root key alone is not enough */
    assert_int_equal(change_policy(f, f->root, IMGSTORE_ROLE_DEPLOY, "add", f->other, 0),
                     IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "needs 2 signatures"));
    assert_int_equal(imgstore_store_policy_get(&policy, NULL, f->store), 0);
    assert_int_equal(policy->version, 3);
    imgstore_policy_free(policy);
}

static void removed_release_key_stops_counting(void **state)
{
    fixture *f = *state;
    imgstore_trust_status status;

    assert_int_equal(change_policy(f, f->root, IMGSTORE_ROLE_RELEASE, "add", f->other, 0), 0);
    assert_int_equal(push_as(f->store, "1", f->other), 0);
    assert_int_equal(imgstore_store_version_trust(&status, f->store, "app", "1"), 0);
    assert_true(status.trusted);
    assert_int_equal(change_policy(f, f->root, IMGSTORE_ROLE_RELEASE, "remove", f->other, 0), 0);
    assert_int_equal(imgstore_store_version_trust(&status, f->store, "app", "1"), 0);
    assert_int_equal(status.valid, 0);
    assert_int_equal(status.invalid, 0); /* revoked, not damaged */
    assert_false(status.trusted);
}

static void deploy_writes_signed_state_with_expiry_and_growing_sequence(void **state)
{
    fixture *f = *state;
    imgstore_channel_state *s = NULL;
    imgstore_trust_status status;
    imgstore_manifest *m = NULL;
    int64_t time_s = 0, expires_s = 0;

    assert_int_equal(push_as(f->store, "1", f->root), 0);
    assert_int_equal(push_as(f->store, "2", f->root), 0);
    assert_int_equal(deploy_as(f->store, "1", f->other), IMGSTORE_EVERIFY); /* not deploy */
    assert_int_equal(deploy_as(f->store, "1", f->root), 0);
    assert_int_equal(deploy_as(f->store, "2", f->root), 0);
    assert_int_equal(imgstore_store_channel_trust(&status, f->store, "app", "prod"), 0);
    assert_true(status.trusted);
    assert_int_equal(imgstore_store_channel_manifest_get(&m, NULL, &s, f->store, "app", "prod"), 0);
    assert_string_equal(m->version, "2");
    assert_int_equal(s->sequence, 2);
    assert_non_null(s->expires);
    assert_int_equal(imgstore_time_parse(&time_s, s->time), 0);
    assert_int_equal(imgstore_time_parse(&expires_s, s->expires), 0);
    assert_int_equal(expires_s - time_s, IMGSTORE_POLICY_TTL_DEFAULT);
    imgstore_channel_state_free(s);
    imgstore_manifest_free(m);
}

static int count_failures;
static void count_report(const imgstore_verify_result *r, void *payload)
{
    (void)payload;
    count_failures += r->status != 0;
}

static void verify_trust_passes_then_names_a_forged_policy(void **state)
{
    fixture *f = *state;
    git_tree *tip = NULL;
    git_oid blob, tree, commit;
    git_commit *parent = NULL;
    git_signature *sig = NULL;
    const char *forged = "{\"channel_ttl_seconds\":60}";

    assert_int_equal(push_as(f->store, "1", f->root), 0);
    assert_int_equal(deploy_as(f->store, "1", f->root), 0);
    count_failures = 0;
    assert_int_equal(imgstore_store_verify_trust(f->store, count_report, NULL), 0);
    assert_int_equal(count_failures, 0);
    /* replace the policy without root signatures, as a compromised server could */
    assert_int_equal(imgstore_store__tip_tree(&tip, f->store), 0);
    assert_int_equal(git_blob_create_from_buffer(&blob, f->store->repo, forged, strlen(forged)), 0);
    assert_int_equal(imgstore_store__tree_update(&tree, f->store->repo, tip, "trust/policy.json",
                                                 &blob, GIT_FILEMODE_BLOB),
                     0);
    git_tree_free(tip);
    assert_int_equal(git_tree_lookup(&tip, f->store->repo, &tree), 0);
    assert_int_equal(git_reference_name_to_id(&commit, f->store->repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(git_commit_lookup(&parent, f->store->repo, &commit), 0);
    assert_int_equal(git_signature_now(&sig, "mallory", "m@example"), 0);
    assert_int_equal(git_commit_create(&commit, f->store->repo, IMGSTORE_STORE_REF, sig, sig, NULL,
                                       "forged\n", tip, 1, (const git_commit **)&parent),
                     0);
    count_failures = 0;
    assert_int_equal(imgstore_store_verify_trust(f->store, count_report, NULL), IMGSTORE_EVERIFY);
    assert_true(count_failures > 0);
    imgstore_manifest *m = NULL;

    assert_int_equal(imgstore_store_manifest_get_trusted(&m, NULL, f->store, "app", "1"),
                     IMGSTORE_EVERIFY);
    git_signature_free(sig);
    git_commit_free(parent);
    git_tree_free(tip);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(new_store_has_policy_one_with_its_key_in_every_role, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(push_needs_a_release_key_and_writes_nothing_otherwise,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(below_threshold_version_is_pending_until_signed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(policy_change_needs_current_root_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(removed_release_key_stops_counting, setup, teardown),
        cmocka_unit_test_setup_teardown(deploy_writes_signed_state_with_expiry_and_growing_sequence,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(verify_trust_passes_then_names_a_forged_policy, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
