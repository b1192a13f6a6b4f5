/*
 * Signed documents across the store's boundary (store/signed.c): handing out exact bytes
 * with signatures, the pure checks a remote client runs on them, and taking in signatures
 * and channel states signed elsewhere.
 */
#include "trust_test_util.h"

#include <time.h>
#include <unistd.h>

static void push(fixture *f, const char *version, const imgstore_sign_key *key)
{
    const imgstore_sign_key *keys[1] = {key};
    imgstore_push_opts opts = {.name = "app",
                               .version = version,
                               .signers = {keys, key ? 1 : 0},
                               .allow_unsigned = key == NULL};
    imgstore_manifest *m = NULL;
    imgstore_push *p = NULL;
    bool created;
    char bytes[5000];

    memset(bytes, version[0], sizeof(bytes));
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
    const imgstore_sign_key *keys[1] = {f->root};
    imgstore_channel_opts opts = {.signers = {keys, 1}};
    imgstore_channel_state *s = NULL;

    assert_int_equal(imgstore_store_deploy(&s, f->store, "app", version, "prod", &opts), 0);
    imgstore_channel_state_free(s);
}

static void manifest_signed_hands_out_bytes_a_client_can_verify(void **state)
{
    fixture *f = *state;
    imgstore_trust_status status;
    imgstore_policy *policy = NULL;
    char *bytes = NULL, **sigs = NULL;
    size_t len = 0, count = 0;

    push(f, "1", f->root);
    assert_int_equal(
        imgstore_store_manifest_signed(&bytes, &len, &sigs, &count, f->store, "app", "1"), 0);
    assert_true(imgstore_schema_manifest_is_canonical(bytes, len));
    assert_int_equal(count, 1);
    assert_int_equal(imgstore_store_policy_get(&policy, NULL, f->store), 0);
    assert_int_equal(imgstore_trust_signatures_count(&status, policy, IMGSTORE_ROLE_RELEASE,
                                                     (const char *const *)sigs, count, bytes, len),
                     0);
    assert_true(status.trusted);
    /* one flipped byte of the document and the same signature no longer counts */
    bytes[len / 2] ^= 1;
    assert_int_equal(imgstore_trust_signatures_count(&status, policy, IMGSTORE_ROLE_RELEASE,
                                                     (const char *const *)sigs, count, bytes, len),
                     0);
    assert_false(status.trusted);
    assert_int_equal(status.invalid, 1);
    free(bytes);
    imgstore_strings_free(sigs, count);
    assert_int_equal(
        imgstore_store_manifest_signed(&bytes, &len, &sigs, &count, f->store, "app", "9"),
        IMGSTORE_ENOTFOUND);
    imgstore_policy_free(policy);
}

static void policy_chain_verifies_and_refuses_a_broken_link(void **state)
{
    fixture *f = *state;
    const imgstore_sign_key *keys[1] = {f->root};
    imgstore_signers signers = {keys, 1};
    imgstore_policy *policy = NULL, *current = NULL;
    imgstore_policy_link *links = NULL;
    imgstore_sign_pubkey pub;
    char *line = NULL, *swap;
    size_t count = 0;

    imgstore_sign_key_public(&pub, f->other);
    assert_int_equal(imgstore_sign_pubkey_format(&line, &pub), 0);
    assert_int_equal(imgstore_store_policy_get(&policy, NULL, f->store), 0);
    assert_int_equal(imgstore_schema_policy_add_key(policy, IMGSTORE_ROLE_ROOT, line), 0);
    assert_int_equal(imgstore_store_policy_update(NULL, f->store, policy, &signers, "a"), 0);
    assert_int_equal(imgstore_schema_policy_set_threshold(policy, IMGSTORE_ROLE_ROOT, 2), 0);
    assert_int_equal(imgstore_store_policy_update(NULL, f->store, policy, &signers, "a"), 0);
    assert_int_equal(imgstore_store_policy_chain(&links, &count, f->store), 0);
    assert_int_equal(count, 3);
    assert_int_equal(links[2].version, 3);
    assert_int_equal(imgstore_trust_policy_chain_verify(&current, links, count, NULL), 0);
    assert_int_equal(current->roles[IMGSTORE_ROLE_ROOT].threshold, 2);
    /* a pin that is not policy 1's digest */
    assert_int_equal(imgstore_trust_policy_chain_verify(NULL, links, count,
                                                        "00000000000000000000000000000000"
                                                        "00000000000000000000000000000000"),
                     IMGSTORE_EVERIFY);
    /* policy 2's signature moved onto policy 3: it signs other bytes */
    swap = links[2].signatures[0];
    links[2].signatures[0] = links[1].signatures[0];
    links[1].signatures[0] = swap;
    assert_int_equal(imgstore_trust_policy_chain_verify(NULL, links, count, NULL),
                     IMGSTORE_EVERIFY);
    /* a gap in the versions */
    assert_int_equal(imgstore_trust_policy_chain_verify(NULL, links + 1, count - 1, NULL),
                     IMGSTORE_EVERIFY);
    imgstore_policy_chain_free(links, count);
    imgstore_policy_free(current);
    imgstore_policy_free(policy);
    free(line);
}

static void signature_made_elsewhere_turns_a_pending_version_trusted(void **state)
{
    fixture *f = *state;
    imgstore_trust_status status;
    char *bytes = NULL, **sigs = NULL, *mine = NULL, *stranger = NULL;
    size_t len = 0, count = 0;

    push(f, "1", NULL); /* a server without a key stores it pending */
    assert_int_equal(imgstore_store_version_trust(&status, f->store, "app", "1"), 0);
    assert_int_equal(status.valid, 0);
    assert_false(status.trusted);
    assert_int_equal(
        imgstore_store_manifest_signed(&bytes, &len, &sigs, &count, f->store, "app", "1"), 0);
    assert_int_equal(count, 0);
    assert_int_equal(imgstore_sign_sshsig(&stranger, f->other, "imgstore", bytes, len), 0);
    assert_int_equal(imgstore_store_add_signature(&status, f->store, "app", "1", stranger,
                                                  strlen(stranger), NULL, "x"),
                     IMGSTORE_EVERIFY);
    assert_int_equal(
        imgstore_store_add_signature(&status, f->store, "app", "1", "junk", 4, NULL, "x"),
        IMGSTORE_EINVALID);
    assert_int_equal(imgstore_sign_sshsig(&mine, f->root, "imgstore", bytes, len), 0);
    assert_int_equal(
        imgstore_store_add_signature(&status, f->store, "app", "1", mine, strlen(mine), NULL, "ci"),
        0);
    assert_true(status.trusted);
    /* again: no change, still trusted */
    assert_int_equal(
        imgstore_store_add_signature(&status, f->store, "app", "1", mine, strlen(mine), NULL, "ci"),
        0);
    assert_true(status.trusted);
    free(mine);
    free(stranger);
    free(bytes);
    imgstore_strings_free(sigs, count);
}

/* Build the next state of app/prod the way a remote client does, and sign it. */
static void next_state(char **bytes_out, size_t *len_out, char **sig_out, fixture *f,
                       const char *version, int64_t ttl, int64_t skew, const imgstore_sign_key *key)
{
    imgstore_channel_state *current = NULL, next;
    imgstore_manifest *m = NULL;
    char digest[65], now[32], expires[32];
    int64_t t = (int64_t)time(NULL) + skew;

    assert_int_equal(imgstore_store_channel_get(&current, f->store, "app", "prod"), 0);
    assert_int_equal(imgstore_store_manifest_get(&m, digest, f->store, "app", version), 0);
    imgstore_time_rfc3339(now, sizeof(now), t);
    imgstore_time_rfc3339(expires, sizeof(expires), t + ttl);
    next = (imgstore_channel_state){.name = "app",
                                    .channel = "prod",
                                    .version = (char *)version,
                                    .sequence = current->sequence + 1,
                                    .time = now,
                                    .expires = expires,
                                    .actor = "remote",
                                    .action = "rollback",
                                    .reason = "bad",
                                    .previous_version = current->version};
    memcpy(next.manifest_sha256, digest, sizeof(digest));
    assert_int_equal(imgstore_schema_channel_encode(bytes_out, len_out, &next), 0);
    assert_int_equal(imgstore_sign_sshsig(sig_out, key, "imgstore", *bytes_out, *len_out), 0);
    imgstore_manifest_free(m);
    imgstore_channel_state_free(current);
}

static int put(fixture *f, const char *bytes, size_t len, const char *sig)
{
    const char *sigs[1] = {sig};
    imgstore_channel_state *out = NULL;
    int err = imgstore_store_channel_put_signed(&out, f->store, bytes, len, sigs, 1, NULL, NULL);

    imgstore_channel_state_free(out);
    return err;
}

static void channel_state_signed_elsewhere_is_checked_then_committed(void **state)
{
    fixture *f = *state;
    imgstore_channel_state *s = NULL;
    imgstore_manifest *m = NULL;
    char *bytes = NULL, *sig = NULL, *spaced = NULL;
    size_t len = 0;

    push(f, "1", f->root);
    push(f, "2", f->root);
    deploy(f, "1");
    deploy(f, "2");
    /* signed by a key outside the deploy role */
    next_state(&bytes, &len, &sig, f, "1", 3600, 0, f->other);
    assert_int_equal(put(f, bytes, len, sig), IMGSTORE_EVERIFY);
    free(bytes);
    free(sig);
    /* expires further out than the policy allows */
    next_state(&bytes, &len, &sig, f, "1", IMGSTORE_POLICY_TTL_DEFAULT + 1, 0, f->root);
    assert_int_equal(put(f, bytes, len, sig), IMGSTORE_EINVALID);
    free(bytes);
    free(sig);
    /* a clock an hour off */
    next_state(&bytes, &len, &sig, f, "1", 3600, 3600, f->root);
    assert_int_equal(put(f, bytes, len, sig), IMGSTORE_EINVALID);
    free(bytes);
    free(sig);
    /* the real thing */
    next_state(&bytes, &len, &sig, f, "1", 3600, 0, f->root);
    spaced = imgstore_strfmt(" %s", bytes);
    assert_int_equal(put(f, spaced, len + 1, sig), IMGSTORE_EINVALID); /* not canonical */
    assert_int_equal(put(f, bytes, len, sig), 0);
    assert_int_equal(imgstore_store_channel_manifest_get(&m, NULL, &s, f->store, "app", "prod"), 0);
    assert_string_equal(s->version, "1");
    assert_int_equal(s->sequence, 3);
    /* the same state again is a stale sequence: the channel has moved */
    assert_int_equal(put(f, bytes, len, sig), IMGSTORE_ELOCKED);
    imgstore_channel_state_free(s);
    imgstore_manifest_free(m);
    free(spaced);
    free(bytes);
    free(sig);
}

/* The next state of app/prod carrying `stack` ("" for [], NULL for none), signed by root. */
static void stacked_state(char **bytes_out, size_t *len_out, char **sig_out, fixture *f,
                          const char *version, const char *action, const char *stack)
{
    imgstore_channel_state *current = NULL, next;
    imgstore_manifest *m = NULL;
    char digest[65], now[32], expires[32], words[256];
    int64_t t = (int64_t)time(NULL);

    assert_int_equal(imgstore_store_channel_get(&current, f->store, "app", "prod"), 0);
    assert_int_equal(imgstore_store_manifest_get(&m, digest, f->store, "app", version), 0);
    imgstore_time_rfc3339(now, sizeof(now), t);
    imgstore_time_rfc3339(expires, sizeof(expires), t + 3600);
    next = (imgstore_channel_state){.name = "app",
                                    .channel = "prod",
                                    .version = (char *)version,
                                    .sequence = current->sequence + 1,
                                    .time = now,
                                    .expires = expires,
                                    .actor = "remote",
                                    .action = (char *)action,
                                    .previous_version = current->version,
                                    .has_stack = stack != NULL};
    memcpy(next.manifest_sha256, digest, sizeof(digest));
    snprintf(words, sizeof(words), "%s", stack ? stack : "");
    for (char *w = strtok(words, " "); w; w = strtok(NULL, " "))
        next.stack[next.stack_count++] = w;
    assert_int_equal(imgstore_schema_channel_encode(bytes_out, len_out, &next), 0);
    assert_int_equal(imgstore_sign_sshsig(sig_out, f->root, "imgstore", *bytes_out, *len_out), 0);
    imgstore_manifest_free(m);
    imgstore_channel_state_free(current);
}

/* The stack is signed by the client, so the store checks it is the one the move derives
 * from the current state: a client cannot plant a rollback target the history never had. */
static void client_signed_state_must_carry_the_derived_stack(void **state)
{
    fixture *f = *state;
    imgstore_channel_state *s = NULL;
    char *bytes = NULL, *sig = NULL;
    size_t len = 0;

    push(f, "1", f->root);
    push(f, "2", f->root);
    push(f, "3", f->root);
    deploy(f, "1");
    deploy(f, "2"); /* prod runs 2 over [1] */
    static const char *const wrong[] = {"", "3 1", "1", "2 1 1"};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        stacked_state(&bytes, &len, &sig, f, "3", "deploy", wrong[i]);
        assert_int_equal(put(f, bytes, len, sig), IMGSTORE_EINVALID);
        if (!strstr(imgstore_error_last(), "state: stack"))
            fail_msg("message '%s' lacks 'state: stack'", imgstore_error_last());
        assert_null(strchr(imgstore_error_last(), '\n'));
        free(bytes);
        free(sig);
    }
    stacked_state(&bytes, &len, &sig, f, "3", "deploy", "2 1");
    assert_int_equal(put(f, bytes, len, sig), 0);
    free(bytes);
    free(sig);
    /* a rollback pops: to 1 leaves nothing below */
    stacked_state(&bytes, &len, &sig, f, "1", "rollback", "2 1");
    assert_int_equal(put(f, bytes, len, sig), IMGSTORE_EINVALID);
    free(bytes);
    free(sig);
    stacked_state(&bytes, &len, &sig, f, "1", "rollback", "");
    assert_int_equal(put(f, bytes, len, sig), 0);
    free(bytes);
    free(sig);
    /* an older client's state without a stack is still taken; the next move replays once */
    stacked_state(&bytes, &len, &sig, f, "2", "deploy", NULL);
    assert_int_equal(put(f, bytes, len, sig), 0);
    free(bytes);
    free(sig);
    stacked_state(&bytes, &len, &sig, f, "3", "deploy", "1");
    assert_int_equal(put(f, bytes, len, sig), IMGSTORE_EINVALID);
    free(bytes);
    free(sig);
    stacked_state(&bytes, &len, &sig, f, "3", "deploy", "2 1");
    assert_int_equal(put(f, bytes, len, sig), 0);
    assert_int_equal(imgstore_store_channel_get(&s, f->store, "app", "prod"), 0);
    assert_int_equal(s->stack_count, 2);
    imgstore_channel_state_free(s);
    free(bytes);
    free(sig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(manifest_signed_hands_out_bytes_a_client_can_verify, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(policy_chain_verifies_and_refuses_a_broken_link, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(signature_made_elsewhere_turns_a_pending_version_trusted,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(channel_state_signed_elsewhere_is_checked_then_committed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(client_signed_state_must_carry_the_derived_stack, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
