/*
 * sign/: imgstore's passphrase-protected key files (Argon2id + XSalsa20-Poly1305). A wrong
 * passphrase is IMGSTORE_EVERIFY, a missing one IMGSTORE_EINVALID, damage a clean error, and
 * the passphrase never shows up in an error message. Each Argon2id run costs ~64 MiB and a
 * fraction of a second, so the damage tests flip every header byte but sample the ciphertext.
 */
#include "sign_test_util.h"

#include <sodium.h>

#define PASSPHRASE "correct horse battery staple"
#define LABEL      IMGSTORE_SIGN__ENCRYPTED_LABEL

/* Offsets in the blob (see sign/encrypted_key.c): magic 13, version 4, "argon2id13" 14. */
#define OPSLIMIT_AT (13 + 4 + 14)
#define MEMLIMIT_AT (OPSLIMIT_AT + 8)

/* memmem() is a GNU extension; the build is plain POSIX. */
static uint8_t *find_bytes(uint8_t *haystack, size_t len, const void *needle, size_t needle_len)
{
    for (size_t at = 0; at + needle_len <= len; at++) {
        if (memcmp(haystack + at, needle, needle_len) == 0)
            return haystack + at;
    }
    return NULL;
}

/* Where the sealed box starts: after every header field (see sign/encrypted_key.c). */
static size_t box_offset(const uint8_t *blob, size_t len)
{
    imgstore_sign__reader reader;
    const uint8_t *field;
    size_t field_len;
    uint64_t u64;
    uint32_t u32;

    imgstore_sign__reader_init(&reader, blob, len);
    assert_true(imgstore_sign__take_bytes(&reader, &field, 13));
    assert_true(imgstore_sign__take_u32(&reader, &u32));
    assert_true(imgstore_sign__take_string(&reader, &field, &field_len)); /* kdf */
    assert_true(imgstore_sign__take_u64(&reader, &u64));
    assert_true(imgstore_sign__take_u64(&reader, &u64));
    for (int i = 0; i < 4; i++) /* salt, cipher, nonce, public key */
        assert_true(imgstore_sign__take_string(&reader, &field, &field_len));
    assert_true(imgstore_sign__take_u32(&reader, &u32));
    assert_int_equal(u32, imgstore_sign__remaining(&reader));
    return reader.off;
}

static void assert_no_passphrase_in_message(void)
{
    if (strstr(imgstore_error_last(), PASSPHRASE) != NULL ||
        strstr(imgstore_error_last(), "correct horse") != NULL)
        fail_msg("error message leaks the passphrase: '%s'", imgstore_error_last());
}

/* A fresh key saved encrypted under PASSPHRASE; the blob inside the armour goes to `blob`. */
static size_t saved_encrypted_blob(imgstore_sign_key **key_out, uint8_t *blob, size_t cap,
                                   const char *dir)
{
    char path[TEST_PATH_MAX];

    test_path(path, dir, "original");
    assert_int_equal(imgstore_sign_key_generate(key_out, "vault@test"), 0);
    assert_int_equal(imgstore_sign_key_save(*key_out, path, PASSPHRASE), 0);
    return test_dearmor_file(blob, cap, path, LABEL);
}

/* Armour `blob`, write it as DIR/NAME and load it with PASSPHRASE. */
static int load_blob(imgstore_sign_key **out, const char *dir, const uint8_t *blob, size_t len)
{
    char path[TEST_PATH_MAX];
    size_t text_len;
    char *text = test_armor(blob, len, LABEL, &text_len);
    int rc;

    rc = test_load_bytes(out, path, dir, "candidate", text, text_len, PASSPHRASE);
    free(text);
    return rc;
}

static void encrypted_save_load_round_trips_the_key(void **state)
{
    static const uint8_t data[] = "manifest bytes";
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    uint8_t sig_a[IMGSTORE_SIGN__SIG_LEN], sig_b[IMGSTORE_SIGN__SIG_LEN];
    imgstore_sign_key *key = NULL, *loaded = NULL;
    imgstore_sign_pubkey pub;
    size_t len = 0;
    char *text;

    (void)state;
    test_tmp_dir(dir, "enc-round-trip");
    test_path(path, dir, "id_imgstore");
    assert_int_equal(imgstore_sign_key_generate(&key, "vault@test"), 0);
    assert_int_equal(imgstore_sign_key_save(key, path, PASSPHRASE), 0);
    text = test_read_file(path, &len);
    assert_non_null(text);
    assert_int_equal(strncmp(text, "-----BEGIN IMGSTORE ENCRYPTED PRIVATE KEY-----\n", 47), 0);
    assert_null(strstr(text, "OPENSSH"));
    free(text);

    assert_int_equal(imgstore_sign_key_load(&loaded, path, PASSPHRASE), 0);
    assert_true(test_same_key(loaded, key));
    assert_string_equal(imgstore_sign_key_id(loaded), imgstore_sign_key_id(key));
    imgstore_sign_key_public(&pub, loaded);
    assert_string_equal(pub.comment, "vault@test");
    assert_int_equal(imgstore_sign__sign_raw(sig_a, key, data, sizeof(data)), 0);
    assert_int_equal(imgstore_sign__sign_raw(sig_b, loaded, data, sizeof(data)), 0);
    assert_memory_equal(sig_a, sig_b, sizeof(sig_a));
    imgstore_sign_key_free(loaded);
    imgstore_sign_key_free(key);
}

static void encrypted_file_does_not_hold_the_seed_in_the_clear(void **state)
{
    char dir[TEST_PATH_MAX];
    uint8_t blob[2 * IMGSTORE_SIGN__KEYBLOB_MAX];
    imgstore_sign_key *key = NULL;
    size_t len;

    (void)state;
    test_tmp_dir(dir, "enc-no-seed");
    len = saved_encrypted_blob(&key, blob, sizeof(blob), dir);
    /* The seed is the first half of libsodium's secret key. */
    for (size_t at = 0; at + IMGSTORE_SIGN__SEED_LEN <= len; at++)
        assert_false(memcmp(blob + at, key->secret, IMGSTORE_SIGN__SEED_LEN) == 0);
    assert_null(find_bytes(blob, len, "openssh-key-v1", 14));
    imgstore_sign_key_free(key);
}

static void wrong_passphrase_is_a_verify_error_without_the_passphrase(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL, *loaded = (imgstore_sign_key *)&loaded;

    (void)state;
    test_tmp_dir(dir, "enc-wrong");
    test_path(path, dir, "id_imgstore");
    assert_int_equal(imgstore_sign_key_generate(&key, NULL), 0);
    assert_int_equal(imgstore_sign_key_save(key, path, "the right one"), 0);
    assert_error(imgstore_sign_key_load(&loaded, path, PASSPHRASE), IMGSTORE_EVERIFY,
                 "wrong passphrase");
    assert_null(loaded);
    assert_no_passphrase_in_message();
    assert_null(strstr(imgstore_error_last(), "the right one"));
    assert_error(imgstore_sign_key_load(&loaded, path, "the right on"), IMGSTORE_EVERIFY, path);
    assert_int_equal(imgstore_sign_key_load(&loaded, path, "the right one"), 0);
    assert_true(test_same_key(loaded, key));
    imgstore_sign_key_free(loaded);
    imgstore_sign_key_free(key);
}

static void missing_passphrase_is_invalid(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL, *loaded = (imgstore_sign_key *)&loaded;

    (void)state;
    test_tmp_dir(dir, "enc-missing");
    test_path(path, dir, "id_imgstore");
    assert_int_equal(imgstore_sign_key_generate(&key, NULL), 0);
    assert_int_equal(imgstore_sign_key_save(key, path, PASSPHRASE), 0);
    assert_error(imgstore_sign_key_load(&loaded, path, NULL), IMGSTORE_EINVALID,
                 "passphrase is required");
    assert_null(loaded);
    assert_error(imgstore_sign_key_load(&loaded, path, ""), IMGSTORE_EINVALID,
                 "passphrase is required");
    assert_null(loaded);
    imgstore_sign_key_free(key);
}

static void failed_encrypted_save_does_not_leak_the_passphrase(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL;

    (void)state;
    test_tmp_dir(dir, "enc-save-fail");
    test_path(path, dir, "missing/id_imgstore");
    assert_int_equal(imgstore_sign_key_generate(&key, NULL), 0);
    assert_error(imgstore_sign_key_save(key, path, PASSPHRASE), IMGSTORE_ERROR, path);
    assert_no_passphrase_in_message();
    test_path(path, dir, "id_imgstore");
    assert_int_equal(imgstore_sign_key_save(key, path, PASSPHRASE), 0);
    assert_error(imgstore_sign_key_save(key, path, PASSPHRASE), IMGSTORE_EEXISTS, path);
    assert_no_passphrase_in_message();
    imgstore_sign_key_free(key);
}

static void passphrases_are_compared_whole_not_up_to_a_prefix(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL, *loaded = NULL;
    char long_pass[1001];

    (void)state;
    test_tmp_dir(dir, "enc-long");
    test_path(path, dir, "id_imgstore");
    memset(long_pass, 'p', sizeof(long_pass) - 1);
    long_pass[sizeof(long_pass) - 1] = '\0';
    assert_int_equal(imgstore_sign_key_generate(&key, NULL), 0);
    assert_int_equal(imgstore_sign_key_save(key, path, long_pass), 0);
    long_pass[sizeof(long_pass) - 2] = 'q';
    assert_int_equal(imgstore_sign_key_load(&loaded, path, long_pass), IMGSTORE_EVERIFY);
    long_pass[sizeof(long_pass) - 2] = 'p';
    assert_int_equal(imgstore_sign_key_load(&loaded, path, long_pass), 0);
    assert_true(test_same_key(loaded, key));
    imgstore_sign_key_free(loaded);
    imgstore_sign_key_free(key);
}

static void every_truncation_of_an_encrypted_key_fails_cleanly(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    uint8_t blob[2 * IMGSTORE_SIGN__KEYBLOB_MAX];
    imgstore_sign_key *key = NULL, *loaded;
    size_t len, text_len = 0;
    char *text;

    (void)state;
    test_tmp_dir(dir, "enc-truncate");
    len = saved_encrypted_blob(&key, blob, sizeof(blob), dir);
    for (size_t cut = 0; cut < len; cut++) {
        loaded = NULL;
        assert_error(load_blob(&loaded, dir, blob, cut), IMGSTORE_EINVALID, "candidate");
        assert_null(loaded);
        assert_no_passphrase_in_message();
    }
    /* The armoured text cut anywhere before its final newline loses the END line. */
    test_path(path, dir, "original");
    text = test_read_file(path, &text_len);
    for (size_t cut = 0; cut + 1 < text_len; cut += 7) {
        loaded = NULL;
        assert_int_equal(test_load_bytes(&loaded, path, dir, "cut", text, cut, PASSPHRASE),
                         IMGSTORE_EINVALID);
        assert_null(loaded);
    }
    free(text);
    imgstore_sign_key_free(key);
}

static void flipped_bytes_of_an_encrypted_key_fail_cleanly(void **state)
{
    char dir[TEST_PATH_MAX];
    uint8_t blob[2 * IMGSTORE_SIGN__KEYBLOB_MAX];
    imgstore_sign_key *key = NULL, *loaded;
    size_t len, box_at;
    int verify_errors = 0;

    (void)state;
    test_tmp_dir(dir, "enc-flip");
    len = saved_encrypted_blob(&key, blob, sizeof(blob), dir);
    box_at = box_offset(blob, len);
    assert_in_range(box_at, 150, 200);
    for (size_t at = 0; at < len; at++) {
        int rc;

        /* Every header byte, then a sample of the ciphertext: Argon2id is not cheap. */
        if (at >= box_at && (at - box_at) % 29 != 0 && at + 1 != len)
            continue;
        blob[at] ^= 0x80;
        loaded = NULL;
        rc = load_blob(&loaded, dir, blob, len);
        blob[at] ^= 0x80;
        /*
         * Argon2id counts memory in KiB, so the low bits of memlimit do not change the derived
         * key: that flip may load, but only ever the same key.
         */
        if (rc == 0) {
            if (at < MEMLIMIT_AT + 6 || at >= MEMLIMIT_AT + 8 || !test_same_key(loaded, key))
                fail_msg("flipped byte %zu of %zu: loaded a key", at, len);
            imgstore_sign_key_free(loaded);
            continue;
        }
        assert_null(loaded);
        if (rc != IMGSTORE_EINVALID && rc != IMGSTORE_EVERIFY)
            fail_msg("flipped byte %zu: got %d '%s'", at, rc, imgstore_error_last());
        if (at >= box_at && rc != IMGSTORE_EVERIFY)
            fail_msg("flipped ciphertext byte %zu: got %d '%s', want EVERIFY", at, rc,
                     imgstore_error_last());
        verify_errors += rc == IMGSTORE_EVERIFY;
        assert_no_passphrase_in_message();
    }
    assert_true(verify_errors > 10);
    imgstore_sign_key_free(key);
}

static void oversized_argon2id_cost_is_refused_before_any_work(void **state)
{
    char dir[TEST_PATH_MAX];
    uint8_t blob[2 * IMGSTORE_SIGN__KEYBLOB_MAX], saved[8];
    imgstore_sign_key *key = NULL, *loaded = NULL;
    size_t len;

    (void)state;
    test_tmp_dir(dir, "enc-cost");
    len = saved_encrypted_blob(&key, blob, sizeof(blob), dir);
    /* opslimit 2^32 and memlimit 1 TiB: either would make loading a denial of service. */
    memcpy(saved, blob + OPSLIMIT_AT, 8);
    assert_int_equal(blob[OPSLIMIT_AT + 7], crypto_pwhash_OPSLIMIT_INTERACTIVE);
    blob[OPSLIMIT_AT + 3] = 1;
    assert_error(load_blob(&loaded, dir, blob, len), IMGSTORE_EINVALID, "cost out of range");
    memcpy(blob + OPSLIMIT_AT, saved, 8);
    blob[MEMLIMIT_AT + 3] = 1;
    assert_error(load_blob(&loaded, dir, blob, len), IMGSTORE_EINVALID, "cost out of range");
    assert_null(loaded);
    imgstore_sign_key_free(key);
}

static void encrypted_key_with_another_public_key_in_the_clear_is_refused(void **state)
{
    char dir[TEST_PATH_MAX];
    uint8_t blob[2 * IMGSTORE_SIGN__KEYBLOB_MAX];
    imgstore_sign_key *key = NULL, *other = NULL, *loaded = NULL;
    uint8_t *pub_at;
    size_t len;

    (void)state;
    test_tmp_dir(dir, "enc-swap-pub");
    len = saved_encrypted_blob(&key, blob, sizeof(blob), dir);
    assert_int_equal(imgstore_sign_key_generate(&other, NULL), 0);
    /* The clear public key labels the file; it must not be able to lie about the key. */
    pub_at = find_bytes(blob, len, key->pub.ed25519, IMGSTORE_SIGN__PUB_LEN);
    assert_non_null(pub_at);
    memcpy(pub_at, other->pub.ed25519, IMGSTORE_SIGN__PUB_LEN);
    assert_error(load_blob(&loaded, dir, blob, len), IMGSTORE_EINVALID, "public key differs");
    assert_null(loaded);
    imgstore_sign_key_free(other);
    imgstore_sign_key_free(key);
}

static void encrypted_key_of_an_unknown_version_is_refused(void **state)
{
    char dir[TEST_PATH_MAX];
    uint8_t blob[2 * IMGSTORE_SIGN__KEYBLOB_MAX];
    imgstore_sign_key *key = NULL, *loaded = NULL;
    size_t len;

    (void)state;
    test_tmp_dir(dir, "enc-version");
    len = saved_encrypted_blob(&key, blob, sizeof(blob), dir);
    assert_int_equal(blob[13 + 3], 1);
    blob[13 + 3] = 2;
    assert_error(load_blob(&loaded, dir, blob, len), IMGSTORE_EINVALID, "version 2");
    blob[13 + 3] = 1;
    assert_int_equal(load_blob(&loaded, dir, blob, len), 0);
    assert_true(test_same_key(loaded, key));
    imgstore_sign_key_free(loaded);
    imgstore_sign_key_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encrypted_save_load_round_trips_the_key),
        cmocka_unit_test(encrypted_file_does_not_hold_the_seed_in_the_clear),
        cmocka_unit_test(wrong_passphrase_is_a_verify_error_without_the_passphrase),
        cmocka_unit_test(missing_passphrase_is_invalid),
        cmocka_unit_test(failed_encrypted_save_does_not_leak_the_passphrase),
        cmocka_unit_test(passphrases_are_compared_whole_not_up_to_a_prefix),
        cmocka_unit_test(every_truncation_of_an_encrypted_key_fails_cleanly),
        cmocka_unit_test(flipped_bytes_of_an_encrypted_key_fail_cleanly),
        cmocka_unit_test(oversized_argon2id_cost_is_refused_before_any_work),
        cmocka_unit_test(encrypted_key_with_another_public_key_in_the_clear_is_refused),
        cmocka_unit_test(encrypted_key_of_an_unknown_version_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
