/*
 * Free texts shown as one line (label values, source, builder, actor, reason) refuse the
 * characters that drive a terminal or forge a line (issue #10): at the rule itself, in
 * manifests and channel states read or written, and imgstore_schema_text_escape() shows
 * what older stores or a server hold without passing any of them on.
 */
#include "schema/schema.h"
#include "schema_test_util.h"

#include <stdio.h>

static const char *const refused_texts[] = {
    "\x1b[2J",        /* clear the screen */
    "ok\a",           /* BEL */
    "a\rforged",      /* carriage return */
    "a\nforged line", /* a second line */
    "tab\there",      /* tabs shift columns */
    "del\x7f",        /* DEL */
    "c1 \xc2\x9b"
    "2J", /* CSI as one C1 character */
    "bidi \xe2\x80\xae"
    "evil", /* U+202E RIGHT-TO-LEFT OVERRIDE */
    "iso \xe2\x81\xa6"
    "x", /* U+2066 LEFT-TO-RIGHT ISOLATE */
    "ls \xe2\x80\xa8"
    "x", /* U+2028 LINE SEPARATOR */
};

static void check_text_refuses_control_characters(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refused_texts) / sizeof(refused_texts[0]); i++) {
        if (imgstore_schema_check_text("reason", refused_texts[i]) != IMGSTORE_EINVALID)
            fail_msg("accepted text %zu", i);
        assert_non_null(strstr(imgstore_error_last(), "reason: control character U+"));
        assert_non_null(strstr(imgstore_error_last(), "one line of printable characters"));
    }
    assert_int_equal(imgstore_schema_check_text("reason", "\x1b[2J"), IMGSTORE_EINVALID);
    assert_string_equal(imgstore_error_last(),
                        "reason: control character U+001B at byte 0: a text is one line of "
                        "printable characters, without control, line separator or bidi "
                        "characters");
    assert_int_equal(imgstore_schema_check_text("label ci.job", "x\xff"), IMGSTORE_EINVALID);
    assert_string_equal(imgstore_error_last(), "label ci.job: not UTF-8 text");
}

static void check_text_accepts_printable_utf8(void **state)
{
    (void)state;
    assert_int_equal(imgstore_schema_check_text("reason", "boot loop on 1.4.0 (see #812)"), 0);
    assert_int_equal(imgstore_schema_check_text("reason", "caf\xc3\xa9 \xe2\x9c\x93 \\e[2J"), 0);
    assert_int_equal(imgstore_schema_check_text("label x", ""), 0);
}

static void check_text_refuses_4096_bytes(void **state)
{
    char text[IMGSTORE_TEXT_MAX + 1];

    (void)state;
    memset(text, 'a', sizeof(text));
    text[IMGSTORE_TEXT_MAX - 1] = '\0';
    assert_int_equal(imgstore_schema_check_text("reason", text), 0);
    text[IMGSTORE_TEXT_MAX - 1] = 'a';
    text[IMGSTORE_TEXT_MAX] = '\0';
    assert_int_equal(imgstore_schema_check_text("reason", text), IMGSTORE_EINVALID);
}

static void escape_shows_every_refused_character(void **state)
{
    char *shown;

    (void)state;
    for (size_t i = 0; i < sizeof(refused_texts) / sizeof(refused_texts[0]); i++) {
        assert_non_null(shown = imgstore_schema_text_escape(refused_texts[i]));
        if (imgstore_schema_check_text("shown", shown) != 0)
            fail_msg("escaped text %zu still unsafe: %s", i, imgstore_error_last());
        free(shown);
    }
    assert_non_null(shown = imgstore_schema_text_escape("\x1b[2Jok\r\n\xc2\x9b\xe2\x80\xae\xff\xe2"
                                                        "caf\xc3\xa9"));
    assert_string_equal(shown, "\\x1b[2Jok\\x0d\\x0a\\x9b\\u202e\\xff\\xe2caf\xc3\xa9");
    free(shown);
}

static void manifest_and_state_refuse_control_characters(void **state)
{
    static const struct {
        const char *find, *with, *message;
    } cases[] = {
        {"\"ci.job\":\"42\"", "\"ci.job\":\"\\u001b[2J\"",
         "manifest: provenance.labels.ci.job: control character U+001B"},
        {"\"builder\":\"ci@example\"", "\"builder\":\"ci\\r\\nforged\"",
         "manifest: provenance.builder: control character U+000D"},
        {"\"commit\":\"1a2b3c\"", "\"commit\":\"1a2b3c\\u0007\"",
         "manifest: provenance.source.commit: control character U+0007"},
    };
    imgstore_manifest *m = NULL;
    imgstore_channel_state *s = NULL;

    (void)state;
    assert_int_equal(imgstore_schema_manifest_parse(&m, golden_manifest, strlen(golden_manifest)),
                     0);
    imgstore_manifest_free(m);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *text = replaced(golden_manifest, cases[i].find, cases[i].with);

        m = NULL;
        assert_int_equal(imgstore_schema_manifest_parse(&m, text, strlen(text)), IMGSTORE_EINVALID);
        if (!strstr(imgstore_error_last(), cases[i].message))
            fail_msg("%s", imgstore_error_last());
        free(text);
    }
    {
        char *text = replaced("{\"action\":\"deploy\",\"actor\":\"alice\",\"channel\":\"prod\","
                              "\"manifest_sha256\":\"" SHA_A "\",\"name\":\"app\",\"reason\":"
                              "\"REASON\",\"schema\":\"imgstore.channel/1\",\"sequence\":2,"
                              "\"time\":\"2026-11-25T13:51:00Z\",\"version\":\"1.0.0\"}",
                              "REASON", "boot loop\\n2026-11-25 deploy app prod 6.6.6");

        assert_int_equal(imgstore_schema_channel_parse(&s, text, strlen(text)), IMGSTORE_EINVALID);
        assert_non_null(strstr(imgstore_error_last(), "channel: reason: control character U+000A"));
        free(text);
    }
}

static void encode_refuses_what_parse_refuses(void **state)
{
    imgstore_channel_state s = {0};
    char *bytes = NULL;
    size_t len = 0;

    (void)state;
    s.name = "app";
    s.channel = "prod";
    s.version = "1.0.0";
    strcpy(s.manifest_sha256, SHA_A);
    s.sequence = 1;
    s.time = "2026-11-25T13:51:00Z";
    s.actor = "alice\x1b]0;pwned\a";
    s.action = "deploy";
    assert_int_equal(imgstore_schema_channel_encode(&bytes, &len, &s), IMGSTORE_EINVALID);
    assert_null(bytes);
    assert_non_null(strstr(imgstore_error_last(), "channel: actor: control character U+001B"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_text_refuses_control_characters),
        cmocka_unit_test(check_text_accepts_printable_utf8),
        cmocka_unit_test(check_text_refuses_4096_bytes),
        cmocka_unit_test(escape_shows_every_refused_character),
        cmocka_unit_test(manifest_and_state_refuse_control_characters),
        cmocka_unit_test(encode_refuses_what_parse_refuses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
