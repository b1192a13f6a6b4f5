/*
 * sign/: key files that are damaged, foreign or hostile. Every truncation and every flipped
 * byte must end in a clean error, never a crash and never a different key; keys of other
 * types, passphrase-protected OpenSSH keys and oversized files are refused with a message
 * that tells the operator what they gave.
 */
#include "sign_test_util.h"

#define KEYFILE_CAP (64 * 1024)

/* A fresh unencrypted key saved by imgstore; the caller frees key and text. */
static char *saved_key_text(imgstore_sign_key **key_out, size_t *len_out, const char *dir)
{
    char path[TEST_PATH_MAX];
    char *text;

    test_path(path, dir, "original");
    assert_int_equal(imgstore_sign_key_generate(key_out, "damage@test"), 0);
    assert_int_equal(imgstore_sign_key_save(*key_out, path, NULL), 0);
    text = test_read_file(path, len_out);
    assert_non_null(text);
    return text;
}

/* A damaged file either fails with EINVALID or, if the damage missed the key, is the same key. */
static void assert_clean_outcome(int rc, imgstore_sign_key *loaded, const imgstore_sign_key *key,
                                 const char *what, size_t at)
{
    if (rc == 0) {
        if (loaded == NULL || !test_same_key(loaded, key))
            fail_msg("%s at %zu: loaded a different key", what, at);
        imgstore_sign_key_free(loaded);
        return;
    }
    if (loaded != NULL)
        fail_msg("%s at %zu: failed (%d) but handed out a key", what, at, rc);
    if (rc != IMGSTORE_EINVALID)
        fail_msg("%s at %zu: got %d '%s', expected IMGSTORE_EINVALID", what, at, rc,
                 imgstore_error_last());
    if (imgstore_error_last()[0] == '\0')
        fail_msg("%s at %zu: failed without a message", what, at);
}

static void every_truncation_of_a_key_file_fails_cleanly(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL, *loaded;
    size_t len = 0;
    char *text;
    int successes = 0;

    (void)state;
    test_tmp_dir(dir, "damage-truncate-text");
    text = saved_key_text(&key, &len, dir);
    for (size_t cut = 0; cut < len; cut++) {
        int rc;

        loaded = NULL;
        rc = test_load_bytes(&loaded, path, dir, "cut", text, cut, NULL);
        successes += rc == 0;
        assert_clean_outcome(rc, loaded, key, "text truncated", cut);
    }
    /* Only dropping the final newline leaves the key whole. */
    assert_int_equal(successes, 1);
    free(text);
    imgstore_sign_key_free(key);
}

static void every_truncation_of_the_key_blob_fails_cleanly(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    uint8_t blob[IMGSTORE_SIGN__KEYBLOB_MAX];
    imgstore_sign_key *key = NULL, *loaded;
    size_t len = 0, blob_len, text_len;
    char *text, *armored;
    int rc;

    (void)state;
    test_tmp_dir(dir, "damage-truncate-blob");
    text = saved_key_text(&key, &len, dir);
    test_path(path, dir, "original");
    blob_len = test_dearmor_file(blob, sizeof(blob), path, IMGSTORE_SIGN__OPENSSH_LABEL);
    assert_in_range(blob_len, 200, 400);
    for (size_t cut = 0; cut < blob_len; cut++) {
        armored = test_armor(blob, cut, IMGSTORE_SIGN__OPENSSH_LABEL, &text_len);
        loaded = NULL;
        rc = test_load_bytes(&loaded, path, dir, "cut", armored, text_len, NULL);
        assert_int_not_equal(rc, 0);
        assert_clean_outcome(rc, loaded, key, "blob truncated", cut);
        free(armored);
    }
    free(text);
    imgstore_sign_key_free(key);
}

static void every_flipped_byte_of_the_key_blob_fails_or_keeps_the_key(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    uint8_t blob[IMGSTORE_SIGN__KEYBLOB_MAX];
    imgstore_sign_key *key = NULL, *loaded;
    size_t len = 0, blob_len, text_len;
    char *text, *armored;
    int successes = 0;

    (void)state;
    test_tmp_dir(dir, "damage-flip-blob");
    text = saved_key_text(&key, &len, dir);
    test_path(path, dir, "original");
    blob_len = test_dearmor_file(blob, sizeof(blob), path, IMGSTORE_SIGN__OPENSSH_LABEL);
    for (size_t at = 0; at < blob_len; at++) {
        static const uint8_t masks[] = {0x01, 0x80, 0xff};

        for (size_t m = 0; m < sizeof(masks); m++) {
            int rc;

            blob[at] ^= masks[m];
            armored = test_armor(blob, blob_len, IMGSTORE_SIGN__OPENSSH_LABEL, &text_len);
            loaded = NULL;
            rc = test_load_bytes(&loaded, path, dir, "flipped", armored, text_len, NULL);
            successes += rc == 0;
            assert_clean_outcome(rc, loaded, key, "blob byte flipped", at);
            free(armored);
            blob[at] ^= masks[m];
        }
    }
    /* Only bytes of the comment ("damage@test", 11 bytes) are not integrity-checked. */
    assert_in_range(successes, 1, 3 * 11);
    free(text);
    imgstore_sign_key_free(key);
}

static void every_flipped_character_of_a_key_file_fails_or_keeps_the_key(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL, *loaded;
    size_t len = 0;
    char *text;
    int rc;

    (void)state;
    test_tmp_dir(dir, "damage-flip-text");
    text = saved_key_text(&key, &len, dir);
    for (size_t at = 0; at < len; at++) {
        static const char swaps[] = {'A', '/', '=', '\0', '\n', '-'};

        for (size_t s = 0; s < sizeof(swaps); s++) {
            char saved = text[at];

            if (saved == swaps[s])
                continue;
            text[at] = swaps[s];
            loaded = NULL;
            rc = test_load_bytes(&loaded, path, dir, "flipped", text, len, NULL);
            assert_clean_outcome(rc, loaded, key, "text char changed", at);
            text[at] = saved;
        }
    }
    free(text);
    imgstore_sign_key_free(key);
}

static void rsa_and_ecdsa_keys_are_refused_naming_the_type(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = (imgstore_sign_key *)&key;

    (void)state;
    test_tmp_dir(dir, "damage-types");
    test_keygen(path, dir, "id_rsa", "-t rsa -b 2048 -N ''");
    assert_error(imgstore_sign_key_load(&key, path, NULL), IMGSTORE_EINVALID, "ssh-rsa");
    assert_null(key);
    assert_non_null(strstr(imgstore_error_last(), "Ed25519"));

    test_keygen(path, dir, "id_ecdsa", "-t ecdsa -b 256 -N ''");
    assert_error(imgstore_sign_key_load(&key, path, NULL), IMGSTORE_EINVALID,
                 "ecdsa-sha2-nistp256");
    assert_null(key);

    /* The old PEM encodings ssh-keygen still writes on request. */
    test_keygen(path, dir, "id_rsa_pem", "-t rsa -b 2048 -m PEM -N ''");
    assert_error(imgstore_sign_key_load(&key, path, NULL), IMGSTORE_EINVALID, "RSA");
    test_keygen(path, dir, "id_ecdsa_pem", "-t ecdsa -b 256 -m PEM -N ''");
    assert_error(imgstore_sign_key_load(&key, path, NULL), IMGSTORE_EINVALID, "ECDSA");
    test_keygen(path, dir, "id_ecdsa_pkcs8", "-t ecdsa -b 256 -m PKCS8 -N ''");
    assert_error(imgstore_sign_key_load(&key, path, NULL), IMGSTORE_EINVALID, "PKCS#8");
    assert_null(key);
}

static void encrypted_openssh_keys_are_refused(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = (imgstore_sign_key *)&key;

    (void)state;
    test_tmp_dir(dir, "damage-openssh-encrypted");
    test_keygen(path, dir, "id_ed25519", "-t ed25519 -N 'openssh pass'");
    assert_error(imgstore_sign_key_load(&key, path, NULL), IMGSTORE_EINVALID,
                 "passphrase-protected");
    assert_null(key);
    assert_error(imgstore_sign_key_load(&key, path, "openssh pass"), IMGSTORE_EINVALID,
                 "passphrase-protected");
    assert_null(strstr(imgstore_error_last(), "openssh pass"));

    /* An encrypted RSA key: its type is the more useful complaint. */
    test_keygen(path, dir, "id_rsa", "-t rsa -b 2048 -N 'openssh pass'");
    assert_error(imgstore_sign_key_load(&key, path, "openssh pass"), IMGSTORE_EINVALID, "ssh-rsa");
    assert_null(key);
}

static void public_keys_and_junk_are_refused_as_private_keys(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX], pub_path[TEST_PATH_MAX];
    imgstore_sign_key *key = (imgstore_sign_key *)&key;

    (void)state;
    test_tmp_dir(dir, "damage-junk");
    test_keygen(path, dir, "id_ed25519", "-t ed25519 -N ''");
    test_path(pub_path, dir, "id_ed25519.pub");
    assert_error(imgstore_sign_key_load(&key, pub_path, NULL), IMGSTORE_EINVALID,
                 "holds a public key");
    assert_null(key);
    assert_error(test_load_bytes(&key, path, dir, "empty", "", 0, NULL), IMGSTORE_EINVALID,
                 "not a private key file");
    assert_error(test_load_bytes(&key, path, dir, "junk", "hello\n", 6, NULL), IMGSTORE_EINVALID,
                 "not a private key file");
    assert_error(test_load_bytes(&key, path, dir, "nul", "\0\0\0\0", 4, NULL), IMGSTORE_EINVALID,
                 "not a private key file");
    assert_null(key);
}

static void key_file_data_after_the_end_line_is_refused(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL, *loaded = NULL;
    size_t len = 0;
    char *text, *extended;

    (void)state;
    test_tmp_dir(dir, "damage-trailing");
    text = saved_key_text(&key, &len, dir);
    extended = imgstore_strfmt("%sssh-ed25519 AAAA\n", text);
    assert_non_null(extended);
    assert_error(test_load_bytes(&loaded, path, dir, "trailing", extended, strlen(extended), NULL),
                 IMGSTORE_EINVALID, "after");
    assert_null(loaded);
    free(extended);
    free(text);
    imgstore_sign_key_free(key);
}

static void key_files_over_64_kib_are_refused(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL, *loaded = NULL;
    size_t len = 0;
    char *text, *padded;

    (void)state;
    test_tmp_dir(dir, "damage-big");
    text = saved_key_text(&key, &len, dir);
    padded = malloc(KEYFILE_CAP + 2);
    assert_non_null(padded);
    /* Trailing newlines are harmless, so the key itself is fine at exactly the cap... */
    memcpy(padded, text, len);
    memset(padded + len, '\n', KEYFILE_CAP + 1 - len);
    assert_int_equal(test_load_bytes(&loaded, path, dir, "at-cap", padded, KEYFILE_CAP, NULL), 0);
    assert_true(test_same_key(loaded, key));
    imgstore_sign_key_free(loaded);
    loaded = NULL;
    /* ...and refused one byte past it. */
    assert_error(test_load_bytes(&loaded, path, dir, "over-cap", padded, KEYFILE_CAP + 1, NULL),
                 IMGSTORE_EINVALID, "larger than 64 KiB");
    assert_null(loaded);
    free(padded);

    /* A large file that is not a key at all stops at the cap too, not at its end. */
    assert_int_equal(
        test_run("head -c 10485760 /dev/zero > '%s/huge' && chmod 600 '%s/huge'", dir, dir), 0);
    test_path(path, dir, "huge");
    assert_error(imgstore_sign_key_load(&loaded, path, NULL), IMGSTORE_EINVALID,
                 "larger than 64 KiB");
    free(text);
    imgstore_sign_key_free(key);
}

static void key_file_with_two_keys_is_refused(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    uint8_t blob[IMGSTORE_SIGN__KEYBLOB_MAX];
    imgstore_sign_key *key = NULL, *loaded = NULL;
    size_t len = 0, blob_len, text_len;
    char *text, *armored;

    (void)state;
    test_tmp_dir(dir, "damage-two-keys");
    text = saved_key_text(&key, &len, dir);
    test_path(path, dir, "original");
    blob_len = test_dearmor_file(blob, sizeof(blob), path, IMGSTORE_SIGN__OPENSSH_LABEL);
    /* The key count follows the magic (15) and three empty-ish strings ("none", "none", ""). */
    assert_int_equal(blob[15 + 8 + 8 + 4 + 3], 1);
    blob[15 + 8 + 8 + 4 + 3] = 2;
    armored = test_armor(blob, blob_len, IMGSTORE_SIGN__OPENSSH_LABEL, &text_len);
    assert_error(test_load_bytes(&loaded, path, dir, "two", armored, text_len, NULL),
                 IMGSTORE_EINVALID, "holds 2 keys");
    assert_null(loaded);
    free(armored);
    free(text);
    imgstore_sign_key_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_truncation_of_a_key_file_fails_cleanly),
        cmocka_unit_test(every_truncation_of_the_key_blob_fails_cleanly),
        cmocka_unit_test(every_flipped_byte_of_the_key_blob_fails_or_keeps_the_key),
        cmocka_unit_test(every_flipped_character_of_a_key_file_fails_or_keeps_the_key),
        cmocka_unit_test(rsa_and_ecdsa_keys_are_refused_naming_the_type),
        cmocka_unit_test(encrypted_openssh_keys_are_refused),
        cmocka_unit_test(public_keys_and_junk_are_refused_as_private_keys),
        cmocka_unit_test(key_file_data_after_the_end_line_is_refused),
        cmocka_unit_test(key_files_over_64_kib_are_refused),
        cmocka_unit_test(key_file_with_two_keys_is_refused),
    };

    test_require_tool("ssh-keygen");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
