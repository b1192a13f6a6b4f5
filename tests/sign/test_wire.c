/*
 * sign/: the byte-level layer under every format: bounded SSH wire readers and writers, the
 * PEM-style armour ssh-keygen writes, and quoting untrusted bytes for messages. These are
 * what keep a hostile key file or signature from reading past a buffer.
 */
#include "sign_test_util.h"

#define LABEL "SSH SIGNATURE"

static void reader_never_moves_on_a_short_read(void **state)
{
    static const uint8_t data[] = {0, 0, 0, 5, 'a', 'b', 'c'};
    imgstore_sign__reader reader;
    const uint8_t *bytes = NULL;
    size_t len = 0;
    uint64_t u64 = 0;
    uint32_t u32 = 0;
    uint8_t u8 = 0;

    (void)state;
    imgstore_sign__reader_init(&reader, data, sizeof(data));
    assert_false(imgstore_sign__take_string(&reader, &bytes, &len)); /* says 5, holds 3 */
    assert_int_equal(reader.off, 0);
    assert_false(imgstore_sign__take_u64(&reader, &u64)); /* 7 bytes: u32 fits, u64 does not */
    assert_int_equal(reader.off, 0);
    assert_false(imgstore_sign__take_bytes(&reader, &bytes, 8));
    assert_int_equal(reader.off, 0);
    assert_true(imgstore_sign__take_u32(&reader, &u32));
    assert_int_equal(u32, 5);
    assert_true(imgstore_sign__take_bytes(&reader, &bytes, 3));
    assert_memory_equal(bytes, "abc", 3);
    assert_int_equal(imgstore_sign__remaining(&reader), 0);
    assert_false(imgstore_sign__take_u8(&reader, &u8));
    assert_false(imgstore_sign__take_u32(&reader, &u32));
    assert_int_equal(reader.off, sizeof(data));
}

static void reader_refuses_a_string_length_near_4_gib(void **state)
{
    static const uint8_t data[] = {0xff, 0xff, 0xff, 0xff, 'x'};
    imgstore_sign__reader reader;
    const uint8_t *bytes = NULL;
    size_t len = 0;

    (void)state;
    imgstore_sign__reader_init(&reader, data, sizeof(data));
    assert_false(imgstore_sign__take_string(&reader, &bytes, &len));
    assert_int_equal(reader.off, 0);
    assert_null(bytes);
}

static void reader_and_writer_agree_on_big_endian_integers(void **state)
{
    uint8_t buf[32];
    imgstore_sign__writer writer;
    imgstore_sign__reader reader;
    const uint8_t *str;
    size_t str_len;
    uint64_t u64;
    uint32_t u32;
    uint8_t u8;

    (void)state;
    imgstore_sign__writer_init(&writer, buf, sizeof(buf));
    imgstore_sign__put_u8(&writer, 0xab);
    imgstore_sign__put_u32(&writer, 0x01020304);
    imgstore_sign__put_u64(&writer, 0x1122334455667788ULL);
    imgstore_sign__put_cstring(&writer, "none");
    assert_false(writer.overflow);
    assert_int_equal(writer.len, 1 + 4 + 8 + 8);
    assert_memory_equal(buf, "\xab\x01\x02\x03\x04\x11\x22\x33\x44\x55\x66\x77\x88\0\0\0\x04none",
                        writer.len);
    imgstore_sign__reader_init(&reader, buf, writer.len);
    assert_true(imgstore_sign__take_u8(&reader, &u8));
    assert_true(imgstore_sign__take_u32(&reader, &u32));
    assert_true(imgstore_sign__take_u64(&reader, &u64));
    assert_true(imgstore_sign__take_string(&reader, &str, &str_len));
    assert_int_equal(u8, 0xab);
    assert_int_equal(u32, 0x01020304);
    assert_true(u64 == 0x1122334455667788ULL);
    assert_true(imgstore_sign__string_is(str, str_len, "none"));
    assert_false(imgstore_sign__string_is(str, str_len, "non"));
    assert_false(imgstore_sign__string_is(str, str_len, "nones"));
}

static void writer_overflow_is_sticky(void **state)
{
    uint8_t buf[8] = {0};
    imgstore_sign__writer writer;

    (void)state;
    imgstore_sign__writer_init(&writer, buf, 6);
    imgstore_sign__put_u32(&writer, 7);
    imgstore_sign__put_u32(&writer, 8); /* does not fit */
    assert_true(writer.overflow);
    imgstore_sign__put_u8(&writer, 9); /* would fit, but the output is already wrong */
    assert_true(writer.overflow);
    assert_int_equal(writer.len, 4);
    assert_int_equal(buf[4], 0);
    assert_int_equal(buf[6], 0);
}

/* What ssh-keygen writes: BEGIN, base64 in 70-column lines, END, each ending in "\n". */
static void armor_wraps_at_70_columns_and_round_trips(void **state)
{
    uint8_t blob[300], decoded[300];

    (void)state;
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof(blob); len++) {
        size_t text_len, decoded_len = 0, line_len = 0, lines = 0;
        char *text = test_armor(blob, len, LABEL, &text_len);
        const char *body = text + strlen("-----BEGIN SSH SIGNATURE-----\n");
        const char *end = strstr(text, "-----END SSH SIGNATURE-----\n");

        assert_int_equal(strncmp(text, "-----BEGIN SSH SIGNATURE-----\n", 30), 0);
        assert_non_null(end);
        assert_int_equal(end + strlen("-----END SSH SIGNATURE-----\n"), text + text_len);
        for (const char *p = body; p < end; p++) {
            if (*p != '\n') {
                line_len++;
                continue;
            }
            lines++;
            /* Every line but the last is full. */
            if (p + 1 < end)
                assert_int_equal(line_len, 70);
            assert_in_range(line_len, 1, 70);
            line_len = 0;
        }
        assert_int_equal(line_len, 0);
        assert_int_equal(lines, (((len + 2) / 3 * 4) + 69) / 70);
        assert_int_equal(imgstore_sign__dearmor(decoded, sizeof(decoded), &decoded_len, text,
                                                text_len, LABEL, "test"),
                         0);
        assert_int_equal(decoded_len, len);
        if (len > 0)
            assert_memory_equal(decoded, blob, len);
        free(text);
    }
}

static void armor_matches_coreutils_base64(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX], cmd[4 * TEST_PATH_MAX];
    uint8_t blob[211];
    size_t text_len, expected_len = 0;
    char *text, *expected;

    (void)state;
    if (!test_have_tool("base64"))
        skip();
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)(i * 101 + 7);
    test_tmp_dir(dir, "wire-base64");
    test_path(path, dir, "blob");
    test_write_file(path, blob, sizeof(blob));
    snprintf(cmd, sizeof(cmd),
             "{ echo '-----BEGIN SSH SIGNATURE-----'; base64 -w 70 '%s'; "
             "echo '-----END SSH SIGNATURE-----'; } > '%s.armored'",
             path, path);
    assert_int_equal(test_run("%s", cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s.armored", path);
    expected = test_read_file(cmd, &expected_len);
    assert_non_null(expected);
    text = test_armor(blob, sizeof(blob), LABEL, &text_len);
    assert_int_equal(text_len, expected_len);
    assert_string_equal(text, expected);
    free(text);
    free(expected);
}

static int dearmor_text(const char *text, size_t text_len)
{
    uint8_t out[64];
    size_t out_len = 0;

    return imgstore_sign__dearmor(out, sizeof(out), &out_len, text, text_len, LABEL, "sig");
}

static void dearmor_accepts_crlf_and_surrounding_whitespace(void **state)
{
    static const char crlf[] = "\r\n  -----BEGIN SSH SIGNATURE-----\r\naGVsbG8=\r\n"
                               "-----END SSH SIGNATURE-----\r\n\n";
    static const char bare[] = "-----BEGIN SSH SIGNATURE-----\naGVs\nbG8=\n"
                               "-----END SSH SIGNATURE-----";
    uint8_t out[16];
    size_t out_len = 0;

    (void)state;
    assert_int_equal(
        imgstore_sign__dearmor(out, sizeof(out), &out_len, crlf, strlen(crlf), LABEL, "sig"), 0);
    assert_int_equal(out_len, 5);
    assert_memory_equal(out, "hello", 5);
    assert_int_equal(dearmor_text(bare, strlen(bare)), 0);
}

static void dearmor_refuses_anything_but_base64_lines(void **state)
{
    static const struct {
        const char *text;
        const char *fragment;
    } cases[] = {
        {"", "does not start with"},
        {"aGVsbG8=\n", "does not start with"},
        {"-----BEGIN SSH SIGNATURE-----\naGVsbG8=\n", "no '-----END SSH SIGNATURE-----' line"},
        {"-----BEGIN SSH SIGNATURE-----\naGVsbG8=\n-----END SSH SIGNATURE---",
         "no '-----END SSH SIGNATURE-----' line"},
        {"-----BEGIN SSH SIGNATURE-----aGVsbG8=\n-----END SSH SIGNATURE-----\n",
         "not on a line of its own"},
        {"-----BEGIN OPENSSH PRIVATE KEY-----\naGVsbG8=\n-----END OPENSSH PRIVATE KEY-----\n",
         "does not start with"},
        {"-----BEGIN SSH SIGNATURE-----\naGVsbG8=\n-----END SSH SIGNATURE-----\nmore\n",
         "unexpected data after"},
        {"-----BEGIN SSH SIGNATURE-----\naGVs bG8=\n-----END SSH SIGNATURE-----\n", "bad base64"},
        {"-----BEGIN SSH SIGNATURE-----\naGVsbG8\n-----END SSH SIGNATURE-----\n", "bad base64"},
        {"-----BEGIN SSH SIGNATURE-----\naGVs!G8=\n-----END SSH SIGNATURE-----\n", "bad base64"},
        {"-----BEGIN SSH SIGNATURE-----\n-----BEGIN SSH SIGNATURE-----\n"
         "-----END SSH SIGNATURE-----\n",
         "bad base64"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_error(dearmor_text(cases[i].text, strlen(cases[i].text)), IMGSTORE_EINVALID,
                     cases[i].fragment);
}

/* NUL is no base64 character: an armour carrying one is not what ssh-keygen wrote. */
static void dearmor_refuses_nul_bytes_between_base64_lines(void **state)
{
    static const char text[] = "-----BEGIN SSH SIGNATURE-----\naGVs\0bG8=\n"
                               "-----END SSH SIGNATURE-----\n";
    static const char trailing[] = "-----BEGIN SSH SIGNATURE-----\naGVsbG8=\n"
                                   "-----END SSH SIGNATURE-----\n\0";

    (void)state;
    assert_error(dearmor_text(text, sizeof(text) - 1), IMGSTORE_EINVALID, "bad base64");
    assert_error(dearmor_text(trailing, sizeof(trailing) - 1), IMGSTORE_EINVALID,
                 "unexpected data after");
}

static void dearmor_refuses_a_blob_larger_than_the_buffer(void **state)
{
    uint8_t blob[100], out[64];
    size_t text_len, out_len = 0;
    char *text = NULL;

    (void)state;
    memset(blob, 0x5a, sizeof(blob));
    text = test_armor(blob, sizeof(blob), LABEL, &text_len);
    assert_error(
        imgstore_sign__dearmor(out, sizeof(out), &out_len, text, text_len, LABEL, "big sig"),
        IMGSTORE_EINVALID, "big sig");
    free(text);
}

static void quote_escapes_and_cuts_untrusted_bytes(void **state)
{
    char out[300], small[8];
    uint8_t long_input[100];

    (void)state;
    imgstore_sign__quote(out, sizeof(out), (const uint8_t *)"ok\n\x1b[31m\\\xff", 10);
    assert_string_equal(out, "ok\\x0a\\x1b[31m\\x5c\\xff");
    memset(long_input, 'a', sizeof(long_input));
    imgstore_sign__quote(out, sizeof(out), long_input, sizeof(long_input));
    assert_int_equal(strlen(out), 64 + 3);
    assert_string_equal(out + 64, "...");
    /* A small buffer truncates, always NUL-terminated, never written past. */
    for (size_t cap = 4; cap <= sizeof(small); cap++) {
        memset(small, '#', sizeof(small));
        imgstore_sign__quote(small, cap, (const uint8_t *)"\x01\x02\x03\x04", 4);
        assert_true(strlen(small) < cap);
        for (size_t i = cap; i < sizeof(small); i++)
            assert_int_equal(small[i], '#');
    }
}

static void pubkey_blob_parse_refuses_extra_or_missing_bytes(void **state)
{
    uint8_t pub[IMGSTORE_SIGN__PUB_LEN], blob[IMGSTORE_SIGN__PUBBLOB_LEN + 1], parsed[32];
    imgstore_sign__writer writer;

    (void)state;
    for (size_t i = 0; i < sizeof(pub); i++)
        pub[i] = (uint8_t)i;
    imgstore_sign__pubkey_blob(blob, pub);
    assert_int_equal(imgstore_sign__pubkey_from_blob(parsed, blob, IMGSTORE_SIGN__PUBBLOB_LEN, "k"),
                     0);
    assert_memory_equal(parsed, pub, sizeof(pub));
    blob[IMGSTORE_SIGN__PUBBLOB_LEN] = 0;
    assert_error(imgstore_sign__pubkey_from_blob(parsed, blob, sizeof(blob), "k"),
                 IMGSTORE_EINVALID, "malformed ssh-ed25519");
    for (size_t len = 0; len < IMGSTORE_SIGN__PUBBLOB_LEN; len++)
        assert_int_equal(imgstore_sign__pubkey_from_blob(parsed, blob, len, "k"),
                         IMGSTORE_EINVALID);

    imgstore_sign__writer_init(&writer, blob, sizeof(blob));
    imgstore_sign__put_cstring(&writer, "ssh-rsa");
    imgstore_sign__put_string(&writer, pub, 3);
    assert_error(imgstore_sign__pubkey_from_blob(parsed, blob, writer.len, "my key"),
                 IMGSTORE_EINVALID, "my key is an ssh-rsa key");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reader_never_moves_on_a_short_read),
        cmocka_unit_test(reader_refuses_a_string_length_near_4_gib),
        cmocka_unit_test(reader_and_writer_agree_on_big_endian_integers),
        cmocka_unit_test(writer_overflow_is_sticky),
        cmocka_unit_test(armor_wraps_at_70_columns_and_round_trips),
        cmocka_unit_test(armor_matches_coreutils_base64),
        cmocka_unit_test(dearmor_accepts_crlf_and_surrounding_whitespace),
        cmocka_unit_test(dearmor_refuses_anything_but_base64_lines),
        cmocka_unit_test(dearmor_refuses_nul_bytes_between_base64_lines),
        cmocka_unit_test(dearmor_refuses_a_blob_larger_than_the_buffer),
        cmocka_unit_test(quote_escapes_and_cuts_untrusted_bytes),
        cmocka_unit_test(pubkey_blob_parse_refuses_extra_or_missing_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
