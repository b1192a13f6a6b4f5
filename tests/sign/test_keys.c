/*
 * sign/: generating, saving and loading unencrypted Ed25519 keys, checked against OpenSSH
 * itself: a key imgstore writes must be one ssh-keygen reads, and a key ssh-keygen writes must
 * load with the fingerprint ssh-keygen prints.
 */
#include "sign_test_util.h"

#include <dirent.h>

/* Ed25519 is deterministic: equal signatures over the same bytes mean equal secret keys. */
static void assert_same_secret(const imgstore_sign_key *a, const imgstore_sign_key *b)
{
    static const uint8_t data[] = "imgstore same-secret probe";
    uint8_t sig_a[IMGSTORE_SIGN__SIG_LEN], sig_b[IMGSTORE_SIGN__SIG_LEN];

    assert_int_equal(imgstore_sign__sign_raw(sig_a, a, data, sizeof(data)), 0);
    assert_int_equal(imgstore_sign__sign_raw(sig_b, b, data, sizeof(data)), 0);
    assert_memory_equal(sig_a, sig_b, sizeof(sig_a));
}

/* The names in `dir` other than "." and ".."; a leftover temp file shows up here. */
static int count_entries(const char *dir)
{
    DIR *handle = opendir(dir);
    struct dirent *entry;
    int count = 0;

    assert_non_null(handle);
    while ((entry = readdir(handle)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
            count++;
    }
    closedir(handle);
    return count;
}

static void generate_save_load_round_trips_the_key(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL, *loaded = NULL;
    imgstore_sign_pubkey pub, loaded_pub;

    (void)state;
    test_tmp_dir(dir, "keys-round-trip");
    test_path(path, dir, "id_ed25519");
    assert_int_equal(imgstore_sign_key_generate(&key, "release@ci.example"), 0);
    assert_int_equal(imgstore_sign_key_save(key, path, NULL), 0);
    assert_int_equal(imgstore_sign_key_load(&loaded, path, NULL), 0);

    imgstore_sign_key_public(&pub, key);
    imgstore_sign_key_public(&loaded_pub, loaded);
    assert_memory_equal(pub.ed25519, loaded_pub.ed25519, sizeof(pub.ed25519));
    assert_string_equal(loaded_pub.comment, "release@ci.example");
    assert_string_equal(imgstore_sign_key_id(loaded), imgstore_sign_key_id(key));
    assert_int_equal(strncmp(imgstore_sign_key_id(key), "SHA256:", 7), 0);
    assert_int_equal(strlen(imgstore_sign_key_id(key)), 7 + 43);
    assert_same_secret(key, loaded);
    imgstore_sign_key_free(loaded);
    imgstore_sign_key_free(key);
}

static void generate_makes_a_different_key_each_time(void **state)
{
    imgstore_sign_key *a = NULL, *b = NULL;

    (void)state;
    assert_int_equal(imgstore_sign_key_generate(&a, NULL), 0);
    assert_int_equal(imgstore_sign_key_generate(&b, NULL), 0);
    assert_false(test_same_key(a, b));
    assert_string_not_equal(imgstore_sign_key_id(a), imgstore_sign_key_id(b));
    imgstore_sign_key_free(a);
    imgstore_sign_key_free(b);
}

static void generate_refuses_bad_comments(void **state)
{
    char comment[IMGSTORE_SIGN_COMMENT_MAX + 1];
    imgstore_sign_key *key = (imgstore_sign_key *)&key; /* must be reset to NULL */
    imgstore_sign_pubkey pub;

    (void)state;
    assert_error(imgstore_sign_key_generate(&key, "two\nlines"), IMGSTORE_EINVALID,
                 "control character");
    assert_null(key);
    assert_error(imgstore_sign_key_generate(&key, "tab\there"), IMGSTORE_EINVALID,
                 "control character");
    memset(comment, 'c', sizeof(comment) - 1);
    comment[IMGSTORE_SIGN_COMMENT_MAX] = '\0'; /* 256 bytes: one too many */
    assert_error(imgstore_sign_key_generate(&key, comment), IMGSTORE_EINVALID, "longer than 255");
    comment[IMGSTORE_SIGN_COMMENT_MAX - 1] = '\0';
    assert_int_equal(imgstore_sign_key_generate(&key, comment), 0);
    imgstore_sign_key_public(&pub, key);
    assert_string_equal(pub.comment, comment);
    imgstore_sign_key_free(key);
    assert_int_equal(imgstore_sign_key_generate(NULL, NULL), IMGSTORE_EINVALID);
}

static void save_writes_mode_0600_and_no_temp_files(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX], enc_path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL;
    struct stat st;
    mode_t old_umask = umask(0); /* the mode must not depend on a lax umask */

    (void)state;
    test_tmp_dir(dir, "keys-mode");
    test_path(path, dir, "plain");
    test_path(enc_path, dir, "encrypted");
    assert_int_equal(imgstore_sign_key_generate(&key, NULL), 0);
    assert_int_equal(imgstore_sign_key_save(key, path, NULL), 0);
    assert_int_equal(imgstore_sign_key_save(key, enc_path, "pass phrase"), 0);
    umask(old_umask);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(enc_path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(count_entries(dir), 2);
    imgstore_sign_key_free(key);
}

static void save_refuses_an_existing_path_and_leaves_it_untouched(void **state)
{
    static const char precious[] = "not a key, but someone's file\n";
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX], link_path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL;
    size_t len = 0;
    char *text;

    (void)state;
    test_tmp_dir(dir, "keys-exists");
    test_path(path, dir, "id_ed25519");
    test_write_file(path, precious, strlen(precious));
    assert_int_equal(imgstore_sign_key_generate(&key, NULL), 0);

    assert_error(imgstore_sign_key_save(key, path, NULL), IMGSTORE_EEXISTS, path);
    assert_error(imgstore_sign_key_save(key, path, "secret"), IMGSTORE_EEXISTS, "already exists");
    text = test_read_file(path, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(precious));
    assert_string_equal(text, precious);
    free(text);

    /* A dangling symlink is an existing path too: writing through it could land anywhere. */
    test_path(link_path, dir, "dangling");
    assert_int_equal(symlink("/nonexistent/imgstore-key-target", link_path), 0);
    assert_error(imgstore_sign_key_save(key, link_path, NULL), IMGSTORE_EEXISTS, link_path);
    assert_int_equal(count_entries(dir), 2);
    imgstore_sign_key_free(key);
}

static void save_into_a_missing_directory_fails_without_a_file(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL;

    (void)state;
    test_tmp_dir(dir, "keys-nodir");
    test_path(path, dir, "missing/id_ed25519");
    assert_int_equal(imgstore_sign_key_generate(&key, NULL), 0);
    assert_error(imgstore_sign_key_save(key, path, NULL), IMGSTORE_ERROR, path);
    assert_int_equal(count_entries(dir), 0);
    assert_int_equal(imgstore_sign_key_save(NULL, path, NULL), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_sign_key_save(key, NULL, NULL), IMGSTORE_EINVALID);
    imgstore_sign_key_free(key);
}

static void saved_key_is_read_by_ssh_keygen_with_the_same_public_key(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX], cmd[4 * TEST_PATH_MAX];
    imgstore_sign_key *key = NULL;
    char *expected, *derived, *fingerprint;

    (void)state;
    test_tmp_dir(dir, "keys-ssh-keygen-reads");
    test_path(path, dir, "id_ed25519");
    assert_int_equal(imgstore_sign_key_generate(&key, "deploy@imgstore"), 0);
    assert_int_equal(imgstore_sign_key_save(key, path, NULL), 0);
    expected = test_pubkey_line(key);

    snprintf(cmd, sizeof(cmd), "ssh-keygen -y -f '%s' 2>&1", path);
    derived = test_capture(cmd);
    assert_string_equal(derived, expected);

    /* "256 SHA256:... deploy@imgstore (ED25519)" */
    snprintf(cmd, sizeof(cmd), "ssh-keygen -l -E sha256 -f '%s' 2>&1 | cut -d' ' -f2", path);
    fingerprint = test_capture(cmd);
    assert_string_equal(fingerprint, imgstore_sign_key_id(key));
    free(fingerprint);
    free(derived);
    free(expected);
    imgstore_sign_key_free(key);
}

static void ssh_keygen_key_loads_with_the_fingerprint_ssh_keygen_prints(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX], cmd[4 * TEST_PATH_MAX];
    imgstore_sign_key *key = NULL;
    imgstore_sign_pubkey pub;
    char *fingerprint, *pub_file, *line;

    (void)state;
    test_tmp_dir(dir, "keys-from-ssh-keygen");
    test_keygen(path, dir, "id_ed25519", "-t ed25519 -N '' -C 'ops@build-host'");
    assert_int_equal(imgstore_sign_key_load(&key, path, NULL), 0);

    snprintf(cmd, sizeof(cmd), "ssh-keygen -l -f '%s' | cut -d' ' -f2", path);
    fingerprint = test_capture(cmd);
    assert_string_equal(imgstore_sign_key_id(key), fingerprint);

    snprintf(cmd, sizeof(cmd), "cat '%s.pub'", path);
    pub_file = test_capture(cmd);
    line = test_pubkey_line(key);
    assert_string_equal(line, pub_file);
    imgstore_sign_key_public(&pub, key);
    assert_string_equal(pub.comment, "ops@build-host");
    free(line);
    free(pub_file);
    free(fingerprint);
    imgstore_sign_key_free(key);
}

static void ssh_keygen_key_with_empty_comment_loads(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX], cmd[4 * TEST_PATH_MAX];
    imgstore_sign_key *key = NULL;
    imgstore_sign_pubkey pub;
    char *pub_file, *line;

    (void)state;
    test_tmp_dir(dir, "keys-no-comment");
    test_keygen(path, dir, "id_ed25519", "-t ed25519 -N '' -C ''");
    assert_int_equal(imgstore_sign_key_load(&key, path, NULL), 0);
    imgstore_sign_key_public(&pub, key);
    assert_string_equal(pub.comment, "");
    snprintf(cmd, sizeof(cmd), "cut -d' ' -f1,2 '%s.pub'", path);
    pub_file = test_capture(cmd);
    line = test_pubkey_line(key);
    assert_string_equal(line, pub_file);
    free(line);
    free(pub_file);
    imgstore_sign_key_free(key);
}

static void unencrypted_key_ignores_a_passphrase(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL, *loaded = NULL;

    (void)state;
    test_tmp_dir(dir, "keys-ignore-pass");
    test_path(path, dir, "id_ed25519");
    assert_int_equal(imgstore_sign_key_generate(&key, NULL), 0);
    assert_int_equal(imgstore_sign_key_save(key, path, ""), 0); /* "" means unencrypted */
    assert_int_equal(imgstore_sign_key_load(&loaded, path, "whatever"), 0);
    assert_same_secret(key, loaded);
    imgstore_sign_key_free(loaded);
    imgstore_sign_key_free(key);
}

static void load_reports_missing_files_and_non_files(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = (imgstore_sign_key *)&key;

    (void)state;
    test_tmp_dir(dir, "keys-missing");
    test_path(path, dir, "nope");
    assert_error(imgstore_sign_key_load(&key, path, NULL), IMGSTORE_ENOTFOUND, path);
    assert_null(key);
    assert_error(imgstore_sign_key_load(&key, dir, NULL), IMGSTORE_EINVALID, "not a regular file");
    assert_null(key);
    assert_int_equal(imgstore_sign_key_load(&key, NULL, NULL), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_sign_key_load(NULL, path, NULL), IMGSTORE_EINVALID);
}

/* A FIFO given as the key path must be refused, not block until someone writes to it. */
static void load_refuses_a_fifo_without_blocking(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX];
    imgstore_sign_key *key = (imgstore_sign_key *)&key;

    (void)state;
    test_tmp_dir(dir, "keys-fifo");
    test_path(path, dir, "fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(10); /* a hang fails this test quickly instead of at ctest's timeout */
    assert_error(imgstore_sign_key_load(&key, path, NULL), IMGSTORE_EINVALID, "not a regular file");
    alarm(0);
    assert_null(key);
    assert_error(imgstore_sign_key_load(&key, "/dev/zero", NULL), IMGSTORE_EINVALID,
                 "not a regular file");
}

static void loaded_key_survives_crlf_line_endings(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX], crlf_path[TEST_PATH_MAX];
    imgstore_sign_key *key = NULL, *loaded = NULL;
    size_t len = 0, out_len = 0;
    char *text, *crlf;

    (void)state;
    test_tmp_dir(dir, "keys-crlf");
    test_path(path, dir, "id_ed25519");
    assert_int_equal(imgstore_sign_key_generate(&key, "crlf"), 0);
    assert_int_equal(imgstore_sign_key_save(key, path, NULL), 0);
    text = test_read_file(path, &len);
    crlf = malloc(2 * len);
    assert_non_null(crlf);
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n')
            crlf[out_len++] = '\r';
        crlf[out_len++] = text[i];
    }
    assert_int_equal(test_load_bytes(&loaded, crlf_path, dir, "crlf", crlf, out_len, NULL), 0);
    assert_same_secret(key, loaded);
    imgstore_sign_key_free(loaded);
    free(crlf);
    free(text);
    imgstore_sign_key_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generate_save_load_round_trips_the_key),
        cmocka_unit_test(generate_makes_a_different_key_each_time),
        cmocka_unit_test(generate_refuses_bad_comments),
        cmocka_unit_test(save_writes_mode_0600_and_no_temp_files),
        cmocka_unit_test(save_refuses_an_existing_path_and_leaves_it_untouched),
        cmocka_unit_test(save_into_a_missing_directory_fails_without_a_file),
        cmocka_unit_test(saved_key_is_read_by_ssh_keygen_with_the_same_public_key),
        cmocka_unit_test(ssh_keygen_key_loads_with_the_fingerprint_ssh_keygen_prints),
        cmocka_unit_test(ssh_keygen_key_with_empty_comment_loads),
        cmocka_unit_test(unencrypted_key_ignores_a_passphrase),
        cmocka_unit_test(load_reports_missing_files_and_non_files),
        cmocka_unit_test(load_refuses_a_fifo_without_blocking),
        cmocka_unit_test(loaded_key_survives_crlf_line_endings),
    };

    test_require_tool("ssh-keygen");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
