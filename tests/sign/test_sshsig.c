/*
 * sign/: SSH signatures (PROTOCOL.sshsig). imgstore must write exactly what `ssh-keygen -Y
 * sign` writes, so that operators and git verify imgstore's signatures with stock OpenSSH, and
 * must accept what ssh-keygen writes. Every tampered signature, message or namespace fails.
 */
#include "sign_test_util.h"

#include <pthread.h>

#define NS "imgstore"

/* A scratch dir holding a fresh key saved as DIR/key, for both imgstore and ssh-keygen. */
typedef struct {
    char dir[TEST_PATH_MAX];
    char key_path[TEST_PATH_MAX];
    imgstore_sign_key *key;
} fixture;

static int fixture_setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));

    if (fx == NULL)
        return -1;
    test_tmp_dir(fx->dir, "sshsig");
    test_path(fx->key_path, fx->dir, "key");
    if (imgstore_sign_key_generate(&fx->key, "signer@test") != 0 ||
        imgstore_sign_key_save(fx->key, fx->key_path, NULL) != 0)
        return -1;
    *state = fx;
    return 0;
}

static int fixture_teardown(void **state)
{
    fixture *fx = *state;

    imgstore_sign_key_free(fx->key);
    free(fx);
    return 0;
}

/* Write `msg` as DIR/NAME and return its path in `out`. */
static void write_msg(char out[TEST_PATH_MAX], const fixture *fx, const char *name, const void *msg,
                      size_t len)
{
    test_path(out, fx->dir, name);
    unlink(out);
    test_write_file(out, msg, len);
}

/* `ssh-keygen -Y verify` of SIG_PATH over MSG_PATH with the key in an allowed_signers file. */
static int keygen_verify(const fixture *fx, const imgstore_sign_key *key, const char *ns,
                         const char *sig_path, const char *msg_path)
{
    char signers[TEST_PATH_MAX];
    char *line = test_pubkey_line(key);
    char *entry = imgstore_strfmt("release@imgstore %s\n", line);
    int rc;

    test_path(signers, fx->dir, "allowed_signers");
    unlink(signers);
    test_write_file(signers, entry, strlen(entry));
    rc = test_run("ssh-keygen -Y verify -f '%s' -I release@imgstore -n '%s' -s '%s' < '%s' "
                  ">/dev/null 2>&1",
                  signers, ns, sig_path, msg_path);
    free(entry);
    free(line);
    return rc;
}

/* Sign MSG_PATH with ssh-keygen (extra options in `opts`); returns the armoured text. */
static char *keygen_sign(size_t *len_out, const char *key_path, const char *ns, const char *opts,
                         const char *msg_path)
{
    char sig_path[TEST_PATH_MAX];
    char *text;

    snprintf(sig_path, sizeof(sig_path), "%.*s.sig", TEST_PATH_MAX - 5, msg_path);
    unlink(sig_path);
    assert_int_equal(test_run("ssh-keygen -q -Y sign -n '%s' %s -f '%s' '%s' >/dev/null 2>&1", ns,
                              opts, key_path, msg_path),
                     0);
    text = test_read_file(sig_path, len_out);
    assert_non_null(text);
    return text;
}

static void sshsig_verifies_with_ssh_keygen(void **state)
{
    fixture *fx = *state;
    char msg_path[TEST_PATH_MAX], sig_path[TEST_PATH_MAX];
    static const char msg[] = "{\"name\":\"app\",\"version\":\"1.4.0\"}\n";
    char *sig = NULL;

    assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, NS, msg, strlen(msg)), 0);
    write_msg(msg_path, fx, "manifest.json", msg, strlen(msg));
    test_path(sig_path, fx->dir, "manifest.json.imgsig");
    test_write_file(sig_path, sig, strlen(sig));
    assert_int_equal(keygen_verify(fx, fx->key, NS, sig_path, msg_path), 0);
    /* The same check must be able to fail: another namespace, another message. */
    assert_int_not_equal(keygen_verify(fx, fx->key, "git", sig_path, msg_path), 0);
    write_msg(msg_path, fx, "manifest.json", "{}", 2);
    assert_int_not_equal(keygen_verify(fx, fx->key, NS, sig_path, msg_path), 0);
    free(sig);
}

static void sshsig_is_byte_identical_to_ssh_keygen(void **state)
{
    fixture *fx = *state;
    char msg_path[TEST_PATH_MAX];
    size_t sizes[] = {0, 1, 63, 4096, 1 << 20};
    uint8_t *msg = malloc(1 << 20);

    assert_non_null(msg);
    for (size_t i = 0; i < (size_t)(1 << 20); i++)
        msg[i] = (uint8_t)(i * 131 + (i >> 9));
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        const char *namespaces[] = {NS, "git", "file"};

        write_msg(msg_path, fx, "msg", msg, sizes[i]);
        for (size_t n = 0; n < 3; n++) {
            size_t expected_len = 0;
            char *expected = keygen_sign(&expected_len, fx->key_path, namespaces[n], "", msg_path);
            char *sig = NULL;

            assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, namespaces[n], msg, sizes[i]), 0);
            assert_int_equal(strlen(sig), expected_len);
            assert_string_equal(sig, expected);
            free(sig);
            free(expected);
        }
    }
    free(msg);
}

static void ssh_keygen_signature_verifies_and_names_the_signer(void **state)
{
    fixture *fx = *state;
    char msg_path[TEST_PATH_MAX], keygen_key[TEST_PATH_MAX], cmd[4 * TEST_PATH_MAX];
    static const char msg[] = "channel prod -> app@1.4.0";
    const char *opts[] = {"", "-O hashalg=sha512", "-O hashalg=sha256"};
    imgstore_sign_pubkey signer;
    char *expected_line;

    /* A key ssh-keygen made itself, so nothing of imgstore's writing is involved. */
    test_keygen(keygen_key, fx->dir, "id_ed25519", "-t ed25519 -N '' -C 'ops@host'");
    snprintf(cmd, sizeof(cmd), "cut -d' ' -f1,2 '%s.pub'", keygen_key);
    expected_line = test_capture(cmd);
    write_msg(msg_path, fx, "state", msg, strlen(msg));
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        size_t sig_len = 0;
        char *sig = keygen_sign(&sig_len, keygen_key, NS, opts[i], msg_path);
        char *line = NULL;

        memset(&signer, 0xa5, sizeof(signer));
        assert_int_equal(imgstore_sign_sshsig_verify(&signer, sig, sig_len, NS, msg, strlen(msg)),
                         0);
        assert_int_equal(imgstore_sign_pubkey_format(&line, &signer), 0);
        assert_string_equal(line, expected_line);
        assert_string_equal(signer.comment, "");
        assert_int_equal(imgstore_sign_sshsig_verify(&signer, sig, sig_len, NS, msg, 5),
                         IMGSTORE_EVERIFY);
        free(line);
        free(sig);
    }
    free(expected_line);
}

static void sshsig_round_trips_and_reports_the_signer(void **state)
{
    fixture *fx = *state;
    imgstore_sign_pubkey signer, expected;
    char *sig = NULL;

    imgstore_sign_key_public(&expected, fx->key);
    assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, NS, "", 0), 0);
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), NS, "", 0), 0);
    assert_true(imgstore_sign_pubkey_equal(&signer, &expected));
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), NS, NULL, 0), 0);
    free(sig);
}

static void sshsig_verify_fails_for_another_namespace(void **state)
{
    fixture *fx = *state;
    char msg_path[TEST_PATH_MAX];
    imgstore_sign_pubkey signer;
    size_t len = 0;
    char *sig = NULL, *git_sig;

    assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, NS, "m", 1), 0);
    assert_error(imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), "git", "m", 1),
                 IMGSTORE_EVERIFY, "namespace 'imgstore', not 'git'");
    assert_error(imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), "imgstor", "m", 1),
                 IMGSTORE_EVERIFY, "namespace");
    /* A git commit signature by the same key must not pass as a manifest signature. */
    write_msg(msg_path, fx, "commit", "m", 1);
    git_sig = keygen_sign(&len, fx->key_path, "git", "", msg_path);
    assert_error(imgstore_sign_sshsig_verify(&signer, git_sig, len, NS, "m", 1), IMGSTORE_EVERIFY,
                 "namespace 'git'");
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, git_sig, len, "git", "m", 1), 0);
    free(git_sig);
    free(sig);
}

static void sshsig_verify_fails_for_every_flipped_message_byte(void **state)
{
    fixture *fx = *state;
    uint8_t msg[97];
    imgstore_sign_pubkey signer;
    char *sig = NULL;

    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)i;
    assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, NS, msg, sizeof(msg)), 0);
    for (size_t at = 0; at < sizeof(msg); at++) {
        msg[at] ^= 0x01;
        assert_error(imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), NS, msg, sizeof(msg)),
                     IMGSTORE_EVERIFY, "does not verify");
        msg[at] ^= 0x01;
    }
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), NS, msg, sizeof(msg)),
                     0);
    assert_int_equal(
        imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), NS, msg, sizeof(msg) - 1),
        IMGSTORE_EVERIFY);
    free(sig);
}

/* Decode, flip every byte of the blob in turn, re-armour: nothing may verify. */
static void sshsig_verify_fails_for_every_flipped_signature_byte(void **state)
{
    fixture *fx = *state;
    static const char msg[] = "payload";
    uint8_t blob[IMGSTORE_SIGN_ARMOR_MAX];
    imgstore_sign_pubkey signer;
    size_t blob_len = 0, text_len;
    char *sig = NULL;
    int verify_errors = 0;

    assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, NS, msg, strlen(msg)), 0);
    assert_int_equal(imgstore_sign__dearmor(blob, sizeof(blob), &blob_len, sig, strlen(sig),
                                            "SSH SIGNATURE", "sig"),
                     0);
    for (size_t at = 0; at < blob_len; at++) {
        blob[at] ^= 0x04;
        char *tampered = test_armor(blob, blob_len, "SSH SIGNATURE", &text_len);
        int rc = imgstore_sign_sshsig_verify(&signer, tampered, text_len, NS, msg, strlen(msg));

        if (rc != IMGSTORE_EVERIFY && rc != IMGSTORE_EINVALID)
            fail_msg("flipped blob byte %zu: got %d '%s'", at, rc, imgstore_error_last());
        /* The last 64 bytes are the Ed25519 signature itself. */
        if (at >= blob_len - IMGSTORE_SIGN__SIG_LEN && rc != IMGSTORE_EVERIFY)
            fail_msg("flipped signature byte %zu: got %d", at, rc);
        verify_errors += rc == IMGSTORE_EVERIFY;
        blob[at] ^= 0x04;
        free(tampered);
    }
    /* Key, namespace, digest name length and signature bytes all end in EVERIFY. */
    assert_true(verify_errors >= IMGSTORE_SIGN__SIG_LEN + IMGSTORE_SIGN__PUB_LEN);
    free(sig);
}

static void sshsig_verify_refuses_malformed_armour(void **state)
{
    fixture *fx = *state;
    imgstore_sign_pubkey signer;
    char *sig = NULL, *broken, *big;
    size_t len;

    assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, NS, "m", 1), 0);
    len = strlen(sig);
    broken = strdup(sig);
    assert_non_null(broken);

    /* Missing END line. */
    *strstr(broken, "-----END") = '\0';
    assert_error(imgstore_sign_sshsig_verify(&signer, broken, strlen(broken), NS, "m", 1),
                 IMGSTORE_EINVALID, "no '-----END SSH SIGNATURE-----' line");
    /* Missing BEGIN line. */
    assert_error(imgstore_sign_sshsig_verify(&signer, strchr(sig, '\n') + 1,
                                             strlen(strchr(sig, '\n') + 1), NS, "m", 1),
                 IMGSTORE_EINVALID, "does not start with");
    /* Bad base64. */
    strcpy(broken, sig);
    broken[40] = '%';
    assert_error(imgstore_sign_sshsig_verify(&signer, broken, len, NS, "m", 1), IMGSTORE_EINVALID,
                 "bad base64");
    /* Truncated blob: every prefix of the decoded signature, re-armoured. */
    {
        uint8_t blob[IMGSTORE_SIGN_ARMOR_MAX];
        size_t blob_len = 0, text_len;

        assert_int_equal(
            imgstore_sign__dearmor(blob, sizeof(blob), &blob_len, sig, len, "SSH SIGNATURE", "sig"),
            0);
        for (size_t cut = 0; cut < blob_len; cut++) {
            char *text = test_armor(blob, cut, "SSH SIGNATURE", &text_len);

            assert_int_equal(imgstore_sign_sshsig_verify(&signer, text, text_len, NS, "m", 1),
                             IMGSTORE_EINVALID);
            free(text);
        }
    }
    /* Oversize: valid armour padded past the cap with whitespace. */
    big = malloc(IMGSTORE_SIGN_ARMOR_MAX + 2);
    assert_non_null(big);
    memcpy(big, sig, len);
    memset(big + len, '\n', IMGSTORE_SIGN_ARMOR_MAX + 1 - len);
    big[IMGSTORE_SIGN_ARMOR_MAX + 1] = '\0';
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, big, IMGSTORE_SIGN_ARMOR_MAX, NS, "m", 1),
                     0);
    assert_error(imgstore_sign_sshsig_verify(&signer, big, IMGSTORE_SIGN_ARMOR_MAX + 1, NS, "m", 1),
                 IMGSTORE_EINVALID, "more than the 4096");
    /* Trailing garbage after the END line. */
    strcpy(broken, sig);
    assert_error(imgstore_sign_sshsig_verify(&signer, broken, len + 1, NS, "m", 1),
                 IMGSTORE_EINVALID, "unexpected data after");
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, "", 0, NS, "m", 1), IMGSTORE_EINVALID);
    free(big);
    free(broken);
    free(sig);
}

static void sshsig_verify_refuses_an_rsa_signature_from_ssh_keygen(void **state)
{
    fixture *fx = *state;
    char msg_path[TEST_PATH_MAX], rsa_key[TEST_PATH_MAX];
    imgstore_sign_pubkey signer;
    size_t len = 0;
    char *sig;

    test_keygen(rsa_key, fx->dir, "id_rsa", "-t rsa -b 2048 -N ''");
    write_msg(msg_path, fx, "rsa-msg", "m", 1);
    sig = keygen_sign(&len, rsa_key, NS, "", msg_path);
    assert_error(imgstore_sign_sshsig_verify(&signer, sig, len, NS, "m", 1), IMGSTORE_EINVALID,
                 "ssh-rsa");
    free(sig);
}

static void sshsig_verify_accepts_crlf_armour(void **state)
{
    fixture *fx = *state;
    imgstore_sign_pubkey signer;
    char *sig = NULL, *crlf;
    size_t used = 0;

    assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, NS, "m", 1), 0);
    crlf = malloc(2 * strlen(sig) + 1);
    assert_non_null(crlf);
    for (const char *p = sig; *p != '\0'; p++) {
        if (*p == '\n')
            crlf[used++] = '\r';
        crlf[used++] = *p;
    }
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, crlf, used, NS, "m", 1), 0);
    free(crlf);
    free(sig);
}

static void sshsig_refuses_bad_namespaces_and_arguments(void **state)
{
    fixture *fx = *state;
    char long_ns[300], msg_path[TEST_PATH_MAX], sig_path[TEST_PATH_MAX];
    imgstore_sign_pubkey signer;
    char *sig = (char *)&sig;

    assert_error(imgstore_sign_sshsig(&sig, fx->key, "", "m", 1), IMGSTORE_EINVALID,
                 "empty namespace");
    assert_null(sig);
    assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, NULL, "m", 1), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_sign_sshsig(&sig, NULL, NS, "m", 1), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_sign_sshsig(NULL, fx->key, NS, "m", 1), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, NS, NULL, 1), IMGSTORE_EINVALID);
    memset(long_ns, 'n', 256);
    long_ns[256] = '\0';
    assert_error(imgstore_sign_sshsig(&sig, fx->key, long_ns, "m", 1), IMGSTORE_EINVALID,
                 "longer than 255");
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, "x", 1, long_ns, "m", 1),
                     IMGSTORE_EINVALID);
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, "x", 1, "", "m", 1), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_sign_sshsig_verify(NULL, "x", 1, NS, "m", 1), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, NULL, 0, NS, "m", 1), IMGSTORE_EINVALID);

    /* The longest namespace still signs, verifies here and with ssh-keygen. */
    long_ns[255] = '\0';
    assert_int_equal(imgstore_sign_sshsig(&sig, fx->key, long_ns, "m", 1), 0);
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), long_ns, "m", 1), 0);
    write_msg(msg_path, fx, "long-ns", "m", 1);
    test_path(sig_path, fx->dir, "long-ns.imgsig");
    test_write_file(sig_path, sig, strlen(sig));
    assert_int_equal(keygen_verify(fx, fx->key, long_ns, sig_path, msg_path), 0);
    free(sig);
}

typedef struct {
    const imgstore_sign_key *key;
    const char *expected;
    int mismatches;
} thread_job;

static void *sign_many(void *payload)
{
    thread_job *job = payload;
    imgstore_sign_pubkey signer;

    for (int i = 0; i < 50; i++) {
        char *sig = NULL;

        if (imgstore_sign_sshsig(&sig, job->key, NS, "shared", 6) != 0 ||
            strcmp(sig, job->expected) != 0 ||
            imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), NS, "shared", 6) != 0 ||
            imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), NS, "shareD", 6) !=
                IMGSTORE_EVERIFY)
            job->mismatches++;
        free(sig);
    }
    return NULL;
}

/* store/ and server/ sign and verify from several threads with one key handle. */
static void sshsig_is_the_same_from_many_threads(void **state)
{
    fixture *fx = *state;
    pthread_t threads[4];
    thread_job jobs[4];
    char *expected = NULL;

    assert_int_equal(imgstore_sign_sshsig(&expected, fx->key, NS, "shared", 6), 0);
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){.key = fx->key, .expected = expected, .mismatches = 0};
        assert_int_equal(pthread_create(&threads[i], NULL, sign_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(jobs[i].mismatches, 0);
    }
    free(expected);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sshsig_verifies_with_ssh_keygen, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(sshsig_is_byte_identical_to_ssh_keygen, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(ssh_keygen_signature_verifies_and_names_the_signer,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(sshsig_round_trips_and_reports_the_signer, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(sshsig_verify_fails_for_another_namespace, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(sshsig_verify_fails_for_every_flipped_message_byte,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(sshsig_verify_fails_for_every_flipped_signature_byte,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(sshsig_verify_refuses_malformed_armour, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(sshsig_verify_refuses_an_rsa_signature_from_ssh_keygen,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(sshsig_verify_accepts_crlf_armour, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(sshsig_refuses_bad_namespaces_and_arguments, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(sshsig_is_the_same_from_many_threads, fixture_setup,
                                        fixture_teardown),
    };

    test_require_tool("ssh-keygen");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
