/*
 * The request parsers the fuzzers of tests/fuzz also drive, with the answers fixed: one
 * Range against a file size, If-None-Match and If-Range against our ETag, and the
 * multipart/form-data parser of uploads, whose calls must not depend on how the body is cut.
 */
#include "server/server_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ETAG "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\""

static void range_forms_answer_as_rfc_9110_says(void **state)
{
    static const struct {
        const char *header;
        uint64_t size;
        int result;
        uint64_t start, end;
    } cases[] = {
        {"bytes=0-499", 1000, 1, 0, 500},
        {"bytes=500-", 1000, 1, 500, 1000},
        {"bytes=900-5000", 1000, 1, 900, 1000},
        {"bytes=-100", 1000, 1, 900, 1000},
        {"bytes=-5000", 1000, 1, 0, 1000},
        {"bytes=999-999", 1000, 1, 999, 1000},
        {"bytes=0-18446744073709551615", 10, 0, 0, 0}, /* 20 digits: not a number we read */
        {"bytes=1000-", 1000, -1, 0, 0},
        {"bytes=-0", 1000, -1, 0, 0},
        {"bytes=0-0", 0, -1, 0, 0},
        {"bytes=0-1,5-6", 1000, 0, 0, 0},
        {"bytes=9-3", 1000, 0, 0, 0},
        {"bytes=a-3", 1000, 0, 0, 0},
        {"bytes=+1-3", 1000, 0, 0, 0},
        {"bytes=", 1000, 0, 0, 0},
        {"items=0-10", 1000, 0, 0, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t start = 7, end = 7;
        int got = imgstore_server__parse_range(&start, &end, cases[i].header, cases[i].size);

        assert_int_equal(got, cases[i].result);
        if (got == 1) {
            assert_true(start == cases[i].start);
            assert_true(end == cases[i].end);
        }
    }
    assert_int_equal(imgstore_server__parse_range(NULL, NULL, NULL, 1000), 0);
}

static void conditional_headers_match_our_etag_only(void **state)
{
    (void)state;
    assert_false(imgstore_server__etag_matches(NULL, ETAG));
    assert_true(imgstore_server__etag_matches(ETAG, ETAG));
    assert_true(imgstore_server__etag_matches("\"x\", " ETAG, ETAG));
    assert_true(imgstore_server__etag_matches("*", ETAG));
    assert_false(imgstore_server__etag_matches("\"x\"", ETAG));
    assert_false(imgstore_server__etag_matches("*", ""));
    assert_false(imgstore_server__etag_matches("*", NULL));
    assert_true(imgstore_server__if_range_allows(NULL, ETAG));
    assert_true(imgstore_server__if_range_allows(ETAG, ETAG));
    assert_false(imgstore_server__if_range_allows("\"stale\"", ETAG));
    assert_false(imgstore_server__if_range_allows("W/" ETAG, ETAG));
}

/* ---- multipart ------------------------------------------------------------------------ */

typedef struct {
    char log[4096];
    size_t len;
} calls;

static void note(calls *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(calls *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    c->len += (size_t)vsnprintf(c->log + c->len, sizeof(c->log) - c->len, fmt, ap);
    va_end(ap);
    assert_true(c->len < sizeof(c->log));
}

static int on_file_begin(const char *filename, void *payload)
{
    note(payload, "[%s:", filename);
    return 0;
}

static int on_file_data(const char *data, size_t len, void *payload)
{
    assert_true(len > 0);
    note(payload, "%.*s", (int)len, data);
    return 0;
}

static int on_file_end(void *payload)
{
    note(payload, "]");
    return 0;
}

static int on_field(const char *name, const char *value, size_t len, void *payload)
{
    assert_int_equal(strlen(value), len);
    note(payload, "{%s=%s}", name, value);
    return 0;
}

static const imgstore_server__multipart_callbacks callbacks = {
    on_file_begin,
    on_file_data,
    on_file_end,
    on_field,
};

/* Feed body in pieces of `piece` bytes (0: whole); the result. */
static int feed(calls *c, const char *type, const char *body, size_t piece, bool *done_out)
{
    imgstore_server__multipart *mp = NULL;
    size_t len = strlen(body), at = 0;
    int err;

    memset(c, 0, sizeof(*c));
    if ((err = imgstore_server__multipart_new(&mp, type, &callbacks, c)) < 0)
        return err;
    while (err == 0 && at < len) {
        size_t n = piece && piece < len - at ? piece : len - at;

        err = imgstore_server__multipart_feed(mp, body + at, n);
        at += n;
    }
    *done_out = imgstore_server__multipart_done(mp);
    imgstore_server__multipart_free(mp);
    return err;
}

static void multipart_calls_do_not_depend_on_where_the_body_is_cut(void **state)
{
    static const char body[] = "preamble\r\n"
                               "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"label\"\r\n\r\n"
                               "ci.job=812\r\n"
                               "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"file\"; "
                               "filename=\"app.xen\"\r\n"
                               "Content-Type: application/octet-stream\r\n\r\n"
                               "\x7f"
                               "ELF\r\n--Xy\r\n--XyY-\r\n"
                               "--XyZ\r\n"
                               "content-disposition: form-data; name=f; filename=\"e\\\"q\"\r\n"
                               "\r\n"
                               "\r\n"
                               "--XyZ--\r\nepilogue";
    static const char expected[] = "{label=ci.job=812}[app.xen:\x7f"
                                   "ELF\r\n--Xy\r\n--XyY-][e\"q:]";
    calls c;
    bool done;

    (void)state;
    for (size_t piece = 0; piece <= 12; piece++) {
        assert_int_equal(feed(&c, "multipart/form-data; boundary=XyZ", body, piece, &done), 0);
        assert_true(done);
        assert_string_equal(c.log, expected);
    }
    assert_int_equal(feed(&c, "multipart/form-data; boundary=\"XyZ\"", body, 0, &done), 0);
    assert_string_equal(c.log, expected);
}

static void multipart_refuses_what_is_not_a_form(void **state)
{
    char long_boundary[128];
    calls c;
    bool done;

    (void)state;
    assert_int_equal(feed(&c, "multipart/form-data", "", 0, &done), IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), "without a boundary"));
    snprintf(long_boundary, sizeof(long_boundary), "multipart/form-data; boundary=%071d", 0);
    assert_int_equal(feed(&c, long_boundary, "", 0, &done), IMGSTORE_EINVALID);
    assert_int_equal(feed(&c, "multipart/form-data; boundary=B", "--BXX\r\n", 1, &done),
                     IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), "malformed"));
    assert_int_equal(
        feed(&c, "multipart/form-data; boundary=B", "--B\r\nX-Other: 1\r\n\r\nv", 0, &done),
        IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), "without a Content-Disposition name"));
    /* a body that stops before its close delimiter is not done (its last field is whole) */
    assert_int_equal(feed(&c, "multipart/form-data; boundary=B",
                          "--B\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--B", 3,
                          &done),
                     0);
    assert_false(done);
    assert_string_equal(c.log, "{a=v}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(range_forms_answer_as_rfc_9110_says),
        cmocka_unit_test(conditional_headers_match_our_etag_only),
        cmocka_unit_test(multipart_calls_do_not_depend_on_where_the_body_is_cut),
        cmocka_unit_test(multipart_refuses_what_is_not_a_form),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
