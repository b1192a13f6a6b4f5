/*
 * The naming rules of imgstore_schema_check_name(): what each kind accepts and refuses, and
 * that a refusal names the kind, shows the value safely and states the rule.
 */
#include "schema/schema.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    imgstore_name_kind kind;
    const char *value;
} name_case;

typedef struct {
    imgstore_name_kind kind;
    const char *value;
    const char *message; /* exact */
} refusal_case;

static const name_case accepted[] = {
    {IMGSTORE_NAME_IMAGE, "app"},
    {IMGSTORE_NAME_IMAGE, "linuxkit-sshd"},
    {IMGSTORE_NAME_IMAGE, "a"},
    {IMGSTORE_NAME_IMAGE, "0day"},
    {IMGSTORE_NAME_IMAGE, "my_app.v2"},
    {IMGSTORE_NAME_IMAGE, "a..b"},
    {IMGSTORE_NAME_CHANNEL, "prod"},
    {IMGSTORE_NAME_CHANNEL, "staging-eu_1"},
    {IMGSTORE_NAME_VERSION, "1.4.0"},
    {IMGSTORE_NAME_VERSION, "2026.11.25+g1a2b3c"},
    {IMGSTORE_NAME_VERSION, "V1-RC1"},
    {IMGSTORE_NAME_VERSION, "c-0123456789abcdef"},
    {IMGSTORE_NAME_FILE, "app.xen"},
    {IMGSTORE_NAME_FILE, "initrd.img"},
    {IMGSTORE_NAME_FILE, "Kernel+Debug_1"},
    {IMGSTORE_NAME_LABEL, "ci.job"},
    {IMGSTORE_NAME_LABEL, "Git-Commit"},
};

static const refusal_case refused[] = {
    {IMGSTORE_NAME_IMAGE, "App", "image name 'App': only a-z 0-9 . _ - are allowed"},
    {IMGSTORE_NAME_IMAGE, "a+b", "image name 'a+b': only a-z 0-9 . _ - are allowed"},
    {IMGSTORE_NAME_CHANNEL, "Prod", "channel name 'Prod': only a-z 0-9 . _ - are allowed"},
    {IMGSTORE_NAME_IMAGE, ".", "image name '.': must not start with '.'"},
    {IMGSTORE_NAME_IMAGE, "..", "image name '..': must not start with '.'"},
    {IMGSTORE_NAME_VERSION, "..", "version '..': must not start with '.'"},
    {IMGSTORE_NAME_FILE, ".hidden", "file name '.hidden': must not start with '.'"},
    {IMGSTORE_NAME_IMAGE, "-rf", "image name '-rf': must not start with '-'"},
    {IMGSTORE_NAME_VERSION, "+1", "version '+1': must not start with '+'"},
    {IMGSTORE_NAME_LABEL, "-x", "label key '-x': must not start with '-'"},
    {IMGSTORE_NAME_FILE, "", "file name '': must be 1 to 128 bytes"},
    {IMGSTORE_NAME_IMAGE, "", "image name '': must be 1 to 128 bytes"},
    {IMGSTORE_NAME_FILE, "a/b", "file name 'a/b': only A-Z a-z 0-9 . _ + - are allowed"},
    {IMGSTORE_NAME_IMAGE, "/", "image name '/': only a-z 0-9 . _ - are allowed"},
    {IMGSTORE_NAME_IMAGE, "a\\b", "image name 'a\\x5cb': only a-z 0-9 . _ - are allowed"},
    {IMGSTORE_NAME_FILE, "a b", "file name 'a b': only A-Z a-z 0-9 . _ + - are allowed"},
    {IMGSTORE_NAME_FILE, "a\x01", "file name 'a\\x01': only A-Z a-z 0-9 . _ + - are allowed"},
    {IMGSTORE_NAME_VERSION, "1\n2", "version '1\\x0a2': only A-Z a-z 0-9 . _ + - are allowed"},
    {IMGSTORE_NAME_VERSION, "a\x7f", "version 'a\\x7f': only A-Z a-z 0-9 . _ + - are allowed"},
    {IMGSTORE_NAME_IMAGE, "caf\xc3\xa9",
     "image name 'caf\\xc3\\xa9': only a-z 0-9 . _ - are allowed"},
    {IMGSTORE_NAME_LABEL, "it's", "label key 'it\\x27s': only A-Z a-z 0-9 . _ + - are allowed"},
    {IMGSTORE_NAME_CHANNEL, "a:b", "channel name 'a:b': only a-z 0-9 . _ - are allowed"},
};

static void check_name_accepts_valid_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        if (imgstore_schema_check_name(accepted[i].kind, accepted[i].value) != 0)
            fail_msg("refused '%s': %s", accepted[i].value, imgstore_error_last());
    }
}

static void check_name_refuses_with_kind_value_and_rule(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        imgstore_error_clear();
        assert_int_equal(imgstore_schema_check_name(refused[i].kind, refused[i].value),
                         IMGSTORE_EINVALID);
        assert_int_equal(imgstore_error_last_code(), IMGSTORE_EINVALID);
        assert_string_equal(imgstore_error_last(), refused[i].message);
    }
}

static void check_name_accepts_128_bytes_and_refuses_129(void **state)
{
    char name[IMGSTORE_NAME_MAX + 2];

    (void)state;
    memset(name, 'a', sizeof(name));
    name[IMGSTORE_NAME_MAX] = '\0';
    assert_int_equal(imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name), 0);
    assert_int_equal(imgstore_schema_check_name(IMGSTORE_NAME_FILE, name), 0);
    name[IMGSTORE_NAME_MAX] = 'a';
    name[IMGSTORE_NAME_MAX + 1] = '\0';
    assert_int_equal(imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name), IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), "must be 1 to 128 bytes"));
}

static void check_name_truncates_long_values_in_messages(void **state)
{
    char name[400];

    (void)state;
    memset(name, 'A', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name), IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), "...'"));
    assert_true(strlen(imgstore_error_last()) < 120);
}

static void check_name_refuses_null_and_unknown_kind(void **state)
{
    (void)state;
    assert_int_equal(imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, NULL), IMGSTORE_EINVALID);
    assert_string_equal(imgstore_error_last(), "channel name: missing");
    assert_int_equal(imgstore_schema_check_name((imgstore_name_kind)99, "app"), IMGSTORE_EINVALID);
}

static void check_name_upper_case_and_plus_only_where_allowed(void **state)
{
    static const imgstore_name_kind strict[] = {IMGSTORE_NAME_IMAGE, IMGSTORE_NAME_CHANNEL};
    static const imgstore_name_kind loose[] = {IMGSTORE_NAME_VERSION, IMGSTORE_NAME_FILE,
                                               IMGSTORE_NAME_LABEL};

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(imgstore_schema_check_name(strict[i], "Ab"), IMGSTORE_EINVALID);
        assert_int_equal(imgstore_schema_check_name(strict[i], "a+b"), IMGSTORE_EINVALID);
    }
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(imgstore_schema_check_name(loose[i], "Ab"), 0);
        assert_int_equal(imgstore_schema_check_name(loose[i], "a+b"), 0);
    }
}

static void check_name_refuses_every_byte_outside_the_allow_list(void **state)
{
    char name[3] = {'a', 0, 0};

    (void)state;
    for (int c = 1; c < 256; c++) {
        bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-' || c == '+';

        name[1] = (char)c;
        assert_int_equal(imgstore_schema_check_name(IMGSTORE_NAME_VERSION, name) == 0, allowed);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_name_accepts_valid_names),
        cmocka_unit_test(check_name_refuses_with_kind_value_and_rule),
        cmocka_unit_test(check_name_accepts_128_bytes_and_refuses_129),
        cmocka_unit_test(check_name_truncates_long_values_in_messages),
        cmocka_unit_test(check_name_refuses_null_and_unknown_kind),
        cmocka_unit_test(check_name_upper_case_and_plus_only_where_allowed),
        cmocka_unit_test(check_name_refuses_every_byte_outside_the_allow_list),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
