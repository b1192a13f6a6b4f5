/*
 * sign/: OpenSSH public key lines and SHA256 fingerprints. What imgstore prints must be what
 * ssh-keygen prints for the same key, and anything that is not an Ed25519 key line is refused
 * with a message saying what it is.
 */
#include "sign_test_util.h"

/* The public key line ssh-keygen wrote next to DIR/NAME, and its SHA256 fingerprint. */
static char *keygen_pub(char **fingerprint_out, const char *dir, const char *name, const char *args)
{
    char path[TEST_PATH_MAX], cmd[4 * TEST_PATH_MAX];
    char *line;

    test_keygen(path, dir, name, args);
    snprintf(cmd, sizeof(cmd), "cat '%s.pub'", path);
    line = test_capture(cmd);
    if (fingerprint_out != NULL) {
        snprintf(cmd, sizeof(cmd), "ssh-keygen -l -E sha256 -f '%s.pub' | cut -d' ' -f2", path);
        *fingerprint_out = test_capture(cmd);
    }
    return line;
}

static void pubkey_parse_and_format_round_trip(void **state)
{
    char dir[TEST_PATH_MAX];
    imgstore_sign_pubkey pub, again;
    char *line, *formatted = NULL, *reformatted = NULL;

    (void)state;
    test_tmp_dir(dir, "pub-round-trip");
    line = keygen_pub(NULL, dir, "id", "-t ed25519 -N '' -C 'release key 2026'");
    assert_int_equal(imgstore_sign_pubkey_parse(&pub, line), 0);
    assert_string_equal(pub.comment, "release key 2026");
    assert_int_equal(imgstore_sign_pubkey_format(&formatted, &pub), 0);
    assert_string_equal(formatted, line);
    assert_int_equal(imgstore_sign_pubkey_parse(&again, formatted), 0);
    assert_true(imgstore_sign_pubkey_equal(&pub, &again));
    assert_memory_equal(pub.ed25519, again.ed25519, sizeof(pub.ed25519));
    assert_string_equal(again.comment, pub.comment);

    /* Without a comment the line has no trailing blank. */
    again.comment[0] = '\0';
    assert_int_equal(imgstore_sign_pubkey_format(&reformatted, &again), 0);
    assert_int_equal(strlen(reformatted), strlen("ssh-ed25519 ") + 68);
    assert_int_equal(strncmp(reformatted, line, strlen(reformatted)), 0);
    free(reformatted);
    free(formatted);
    free(line);
}

static void pubkey_parse_tolerates_blanks_and_line_ends(void **state)
{
    char dir[TEST_PATH_MAX], text[1024];
    imgstore_sign_pubkey reference, pub;
    char *line, *b64;
    size_t b64_len;

    (void)state;
    test_tmp_dir(dir, "pub-blanks");
    line = keygen_pub(NULL, dir, "id", "-t ed25519 -N '' -C ''");
    assert_int_equal(imgstore_sign_pubkey_parse(&reference, line), 0);
    assert_string_equal(reference.comment, "");
    b64 = line + strlen("ssh-ed25519 ");
    b64_len = strcspn(b64, " ");

    snprintf(text, sizeof(text), "  ssh-ed25519\t%.*s  a comment \r\n", (int)b64_len, b64);
    assert_int_equal(imgstore_sign_pubkey_parse(&pub, text), 0);
    assert_true(imgstore_sign_pubkey_equal(&pub, &reference));
    assert_string_equal(pub.comment, "a comment");
    snprintf(text, sizeof(text), "ssh-ed25519 %.*s\n", (int)b64_len, b64);
    assert_int_equal(imgstore_sign_pubkey_parse(&pub, text), 0);
    assert_string_equal(pub.comment, "");
    snprintf(text, sizeof(text), "ssh-ed25519 %.*s two words", (int)b64_len, b64);
    assert_int_equal(imgstore_sign_pubkey_parse(&pub, text), 0);
    assert_string_equal(pub.comment, "two words");
    free(line);
}

static void pubkey_parse_refuses_junk(void **state)
{
    static const struct {
        const char *line;
        const char *fragment;
    } cases[] = {
        {"", "empty line"},
        {"   \n", "empty line"},
        {"hello world", "'hello' is not a key type"},
        {"ssh-ed25519", "bad base64"},
        {"ssh-ed25519 ", "bad base64"},
        {"ssh-ed25519 !!!!", "bad base64"},
        {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA", "bad base64"},          /* unpadded */
        {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA", "malformed ssh-ed25519"}, /* no key bytes */
        {"ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB", "ssh-rsa"},               /* an RSA blob */
        {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== x", "malformed ssh-ed25519"},
        {"SSH-ED25519 AAAA", "not a key type"},
        {"\x1b[31mssh-ed25519", "\\x1b"},
    };
    imgstore_sign_pubkey pub;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_error(imgstore_sign_pubkey_parse(&pub, cases[i].line), IMGSTORE_EINVALID,
                     cases[i].fragment);
    assert_int_equal(imgstore_sign_pubkey_parse(&pub, NULL), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_sign_pubkey_parse(NULL, "ssh-ed25519 AAAA"), IMGSTORE_EINVALID);
}

static void pubkey_parse_refuses_bad_base64_in_a_real_line(void **state)
{
    char dir[TEST_PATH_MAX];
    imgstore_sign_pubkey pub;
    char *line;
    size_t b64_at = strlen("ssh-ed25519 ");

    (void)state;
    test_tmp_dir(dir, "pub-b64");
    line = keygen_pub(NULL, dir, "id", "-t ed25519 -N '' -C x");
    /* Each base64 character in turn becomes one that is not base64. */
    for (size_t at = b64_at; at < b64_at + 68; at++) {
        char saved = line[at];

        line[at] = '*';
        assert_error(imgstore_sign_pubkey_parse(&pub, line), IMGSTORE_EINVALID, "bad base64");
        line[at] = saved;
    }
    /* Dropping a character, or adding one, breaks the length. */
    memmove(line + b64_at + 10, line + b64_at + 11, strlen(line + b64_at + 11) + 1);
    assert_int_equal(imgstore_sign_pubkey_parse(&pub, line), IMGSTORE_EINVALID);
    free(line);
}

static void pubkey_parse_refuses_other_key_types_by_name(void **state)
{
    static const struct {
        const char *name;
        const char *args;
        const char *type;
    } types[] = {
        {"rsa", "-t rsa -b 2048 -N ''", "ssh-rsa"},
        {"ecdsa", "-t ecdsa -b 256 -N ''", "ecdsa-sha2-nistp256"},
    };
    char dir[TEST_PATH_MAX];
    imgstore_sign_pubkey pub;

    (void)state;
    test_tmp_dir(dir, "pub-types");
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        char *line = keygen_pub(NULL, dir, types[i].name, types[i].args);
        char *b64 = strchr(line, ' ');
        char *relabelled;

        assert_error(imgstore_sign_pubkey_parse(&pub, line), IMGSTORE_EINVALID, types[i].type);
        assert_non_null(strstr(imgstore_error_last(), "Ed25519"));
        /* Relabelling the line does not help: the blob names its own type. */
        relabelled = imgstore_strfmt("ssh-ed25519%s", b64);
        assert_error(imgstore_sign_pubkey_parse(&pub, relabelled), IMGSTORE_EINVALID,
                     types[i].type);
        free(relabelled);
        free(line);
    }
}

static void pubkey_parse_refuses_control_characters_in_comments(void **state)
{
    char dir[TEST_PATH_MAX], text[1024], comment[300];
    imgstore_sign_pubkey pub;
    char *line;

    (void)state;
    test_tmp_dir(dir, "pub-comment");
    line = keygen_pub(NULL, dir, "id", "-t ed25519 -N '' -C ''");
    snprintf(text, sizeof(text), "%s evil\x1b[2Jcomment", line);
    assert_error(imgstore_sign_pubkey_parse(&pub, text), IMGSTORE_EINVALID, "control character");
    snprintf(text, sizeof(text), "%s two\nlines", line);
    assert_error(imgstore_sign_pubkey_parse(&pub, text), IMGSTORE_EINVALID, "control character");
    memset(comment, 'c', 256);
    comment[256] = '\0';
    snprintf(text, sizeof(text), "%s %s", line, comment);
    assert_error(imgstore_sign_pubkey_parse(&pub, text), IMGSTORE_EINVALID, "longer than 255");
    comment[255] = '\0';
    snprintf(text, sizeof(text), "%s %s", line, comment);
    assert_int_equal(imgstore_sign_pubkey_parse(&pub, text), 0);
    assert_string_equal(pub.comment, comment);
    free(line);
}

static void fingerprint_equals_ssh_keygen_sha256(void **state)
{
    char dir[TEST_PATH_MAX], name[16], fingerprint[IMGSTORE_SIGN_KEYID_MAX];
    imgstore_sign_pubkey pub;

    (void)state;
    test_tmp_dir(dir, "pub-fingerprint");
    for (int i = 0; i < 5; i++) {
        char *expected = NULL, *line;

        snprintf(name, sizeof(name), "id%d", i);
        line = keygen_pub(&expected, dir, name, "-t ed25519 -N ''");
        assert_int_equal(imgstore_sign_pubkey_parse(&pub, line), 0);
        memset(fingerprint, 'X', sizeof(fingerprint));
        imgstore_sign_pubkey_fingerprint(fingerprint, &pub);
        assert_string_equal(fingerprint, expected);
        assert_int_equal(strlen(fingerprint), 50);
        free(expected);
        free(line);
    }
}

/* A fixed vector (computed with Python's hashlib), so a wrong fingerprint cannot hide behind a
 * wrong reading of ssh-keygen's output. */
static void fingerprint_matches_a_known_vector(void **state)
{
    /* RFC 8032 section 7.1, test 1: the public key. */
    static const uint8_t rfc8032[32] = {0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7,
                                        0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
                                        0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25,
                                        0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a};
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX], cmd[4 * TEST_PATH_MAX];
    char fingerprint[IMGSTORE_SIGN_KEYID_MAX];
    imgstore_sign_pubkey pub;
    char *line = NULL, *expected;

    (void)state;
    memset(&pub, 0, sizeof(pub));
    memcpy(pub.ed25519, rfc8032, sizeof(rfc8032));
    imgstore_sign_pubkey_fingerprint(fingerprint, &pub);
    assert_string_equal(fingerprint, "SHA256:bbXpuKG6zhzdmnxq256TlqzFBzRl2f6OOg722cYNbU8");
    assert_int_equal(imgstore_sign_pubkey_format(&line, &pub), 0);
    assert_string_equal(
        line, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea");

    test_tmp_dir(dir, "pub-vector");
    test_path(path, dir, "rfc8032.pub");
    test_write_file(path, line, strlen(line));
    snprintf(cmd, sizeof(cmd), "ssh-keygen -l -E sha256 -f '%s' | cut -d' ' -f2", path);
    expected = test_capture(cmd);
    assert_string_equal(fingerprint, expected);
    free(expected);
    free(line);
}

static void pubkey_equal_compares_keys_not_comments(void **state)
{
    imgstore_sign_pubkey a, b;

    (void)state;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(a.ed25519, 7, sizeof(a.ed25519));
    memcpy(b.ed25519, a.ed25519, sizeof(a.ed25519));
    strcpy(a.comment, "laptop");
    strcpy(b.comment, "ci");
    assert_true(imgstore_sign_pubkey_equal(&a, &b));
    b.ed25519[31] ^= 1;
    assert_false(imgstore_sign_pubkey_equal(&a, &b));
    b.ed25519[31] ^= 1;
    b.ed25519[0] ^= 0x80;
    assert_false(imgstore_sign_pubkey_equal(&a, &b));
}

static void pubkey_format_refuses_unterminated_or_multiline_comments(void **state)
{
    imgstore_sign_pubkey pub;
    char *line = (char *)&line;

    (void)state;
    memset(&pub, 'c', sizeof(pub));
    assert_error(imgstore_sign_pubkey_format(&line, &pub), IMGSTORE_EINVALID, "not terminated");
    assert_null(line);

    /*
     * The struct is a plain value callers may fill in; a newline in its comment must not turn
     * one allowed_signers or authorized_keys line into two.
     */
    memset(&pub, 0, sizeof(pub));
    strcpy(pub.comment, "ci\nci ssh-ed25519 AAAAinjected");
    line = (char *)&line;
    assert_error(imgstore_sign_pubkey_format(&line, &pub), IMGSTORE_EINVALID, "control character");
    assert_null(line);
    assert_int_equal(imgstore_sign_pubkey_format(NULL, &pub), IMGSTORE_EINVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pubkey_parse_and_format_round_trip),
        cmocka_unit_test(pubkey_parse_tolerates_blanks_and_line_ends),
        cmocka_unit_test(pubkey_parse_refuses_junk),
        cmocka_unit_test(pubkey_parse_refuses_bad_base64_in_a_real_line),
        cmocka_unit_test(pubkey_parse_refuses_other_key_types_by_name),
        cmocka_unit_test(pubkey_parse_refuses_control_characters_in_comments),
        cmocka_unit_test(fingerprint_equals_ssh_keygen_sha256),
        cmocka_unit_test(fingerprint_matches_a_known_vector),
        cmocka_unit_test(pubkey_equal_compares_keys_not_comments),
        cmocka_unit_test(pubkey_format_refuses_unterminated_or_multiline_comments),
    };

    test_require_tool("ssh-keygen");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
