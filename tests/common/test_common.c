/*
 * common/: the thread-local error state and the RFC 3339 time helpers.
 */
#include "common/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void error_set_returns_code_and_keeps_message(void **state)
{
    (void)state;
    assert_int_equal(imgstore_error_set(IMGSTORE_EINVALID, "name '%s' is bad", "X"),
                     IMGSTORE_EINVALID);
    assert_string_equal(imgstore_error_last(), "name 'X' is bad");
    assert_int_equal(imgstore_error_last_code(), IMGSTORE_EINVALID);
    imgstore_error_clear();
    assert_string_equal(imgstore_error_last(), "");
}

static void error_wrap_prefixes_context(void **state)
{
    (void)state;
    imgstore_error_set(IMGSTORE_EVERIFY, "chunk damaged");
    assert_int_equal(imgstore_error_wrap(IMGSTORE_EVERIFY, "pull %s: ", "app"), IMGSTORE_EVERIFY);
    assert_string_equal(imgstore_error_last(), "pull app: chunk damaged");
}

static void error_set_may_reuse_the_last_message(void **state)
{
    (void)state;
    imgstore_error_set(IMGSTORE_ERROR, "blob 9b03 cannot be read");
    imgstore_error_set(IMGSTORE_EVERIFY, "%s", imgstore_error_last());
    assert_string_equal(imgstore_error_last(), "blob 9b03 cannot be read");
    assert_int_equal(imgstore_error_last_code(), IMGSTORE_EVERIFY);
}

static void error_messages_are_capped_not_overflowed(void **state)
{
    char big[4000];

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    imgstore_error_set(IMGSTORE_ERROR, "%s", big);
    imgstore_error_wrap(IMGSTORE_ERROR, "%s", big);
    assert_int_equal(strlen(imgstore_error_last()), 1023);
}

static void time_round_trips_rfc3339(void **state)
{
    char buf[32];
    int64_t t = 0;

    (void)state;
    imgstore_time_rfc3339(buf, sizeof(buf), 1764078660);
    assert_string_equal(buf, "2025-11-25T13:51:00Z");
    assert_int_equal(imgstore_time_parse(&t, buf), 0);
    assert_int_equal(t, 1764078660);
    assert_int_equal(imgstore_time_parse(&t, "@42"), 0);
    assert_int_equal(t, 42);
    assert_int_equal(imgstore_time_parse(&t, "1970-01-01T00:00:00+00:00"), 0);
    assert_int_equal(t, 0);
}

static void time_parse_refuses_garbage(void **state)
{
    int64_t t;

    (void)state;
    assert_int_equal(imgstore_time_parse(&t, "yesterday"), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_time_parse(&t, "2026-13-01T00:00:00Z"), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_time_parse(&t, "2026-01-01T00:00:00+02:00"), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_time_parse(&t, "@"), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_time_parse(&t, NULL), IMGSTORE_EINVALID);
}

static void strfmt_allocates_the_formatted_string(void **state)
{
    char *s = imgstore_strfmt("%s-%d", "v", 7);

    (void)state;
    assert_string_equal(s, "v-7");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(error_set_returns_code_and_keeps_message),
        cmocka_unit_test(error_wrap_prefixes_context),
        cmocka_unit_test(error_set_may_reuse_the_last_message),
        cmocka_unit_test(error_messages_are_capped_not_overflowed),
        cmocka_unit_test(time_round_trips_rfc3339),
        cmocka_unit_test(time_parse_refuses_garbage),
        cmocka_unit_test(strfmt_allocates_the_formatted_string),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
