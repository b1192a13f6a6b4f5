/*
 * The status page's helpers (issue #12): HTML escaping of hostile stored text, the format
 * whose %s arguments are always text, the size cap, the session cookie (made, checked,
 * refused when forged, expired or its token removed), the login form's body, and the
 * targets a login may return to.
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

static char *text_as_html(const char *text)
{
    imgstore_server__html html = {0};

    imgstore_server__html_text(&html, text);
    assert_int_equal(html.err, 0);
    return html.data ? html.data : strdup("");
}

static void text_is_escaped_for_elements_and_attributes(void **state)
{
    static const struct {
        const char *text, *html;
    } cases[] = {
        {"plain 1.0", "plain 1.0"},
        {"<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"},
        {"\"><img src=x onerror=alert(1)>", "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"},
        {"a & b 'q'", "a &amp; b &#39;q&#39;"},
        {"&amp;", "&amp;amp;"},
        /* what a terminal is shown escaped is shown escaped here too */
        {"\x1b[2J\x07", "\\x1b[2J\\x07"},
        {"line\r\nforged", "line\\x0d\\x0aforged"},
        {"evil\xe2\x80\xaetxt.exe", "evil\\u202etxt.exe"},
        {"\xc2\x9b"
         "2J",
         "\\x9b2J"},
        {"not utf-8 \xff", "not utf-8 \\xff"},
        {"caf\xc3\xa9 \xc2\xb7", "caf\xc3\xa9 \xc2\xb7"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = text_as_html(cases[i].text);

        assert_string_equal(got, cases[i].html);
        free(got);
    }
}

static void format_escapes_every_string_argument(void **state)
{
    imgstore_server__html html = {0};

    (void)state;
    imgstore_server__html_fmt(&html, "<a href=\"/ui/images/%s\">%s</a> %zu %llu %d %u 100%%",
                              "a\"b", "<b>", (size_t)7, 18446744073709551615ull, -3, 4u);
    assert_int_equal(html.err, 0);
    assert_string_equal(html.data,
                        "<a href=\"/ui/images/a&quot;b\">&lt;b&gt;</a> 7 18446744073709551615 -3 4 "
                        "100%");
    imgstore_server__html_text(&html, NULL); /* NULL: nothing */
    imgstore_server__html_raw(&html, "|");
    assert_string_equal(html.data + html.len - 2, "%|");
    imgstore_server__html_free(&html);
}

static void format_refuses_conversions_it_does_not_escape(void **state)
{
    imgstore_server__html html = {0};
    const char *fmt = "%x"; /* not a literal: what a careless caller could pass */

    (void)state;
    imgstore_server__html_fmt(&html, fmt, 1u);
    assert_int_equal(html.err, IMGSTORE_EINVALID);
    imgstore_server__html_raw(&html, "ignored once failed");
    assert_true(html.data == NULL || strstr(html.data, "ignored") == NULL);
    imgstore_server__html_free(&html);
}

static void a_page_is_capped(void **state)
{
    imgstore_server__html html = {0};
    char *big = malloc(1024 * 1024 + 1);

    (void)state;
    assert_non_null(big);
    memset(big, '<', 1024 * 1024); /* 4 bytes each as an entity: past the 4 MiB cap */
    big[1024 * 1024] = '\0';
    for (int i = 0; i < 2 && !html.err; i++)
        imgstore_server__html_text(&html, big);
    assert_int_equal(html.err, IMGSTORE_EINVALID);
    assert_true(html.len <= IMGSTORE_SERVER_HTML_MAX);
    imgstore_server__html_free(&html);
    free(big);
}

static void a_page_frame_escapes_its_title_and_user(void **state)
{
    imgstore_server__html html = {0};

    (void)state;
    imgstore_server__html_begin(&html, "<t>", "<u>");
    imgstore_server__html_end(&html);
    assert_int_equal(html.err, 0);
    assert_non_null(strstr(html.data, "<title>&lt;t&gt; · imgstore</title>"));
    assert_non_null(strstr(html.data, "signed in as <b id=\"user\">&lt;u&gt;</b>"));
    assert_non_null(strstr(html.data, "href=\"/ui/style.css\""));
    assert_null(strstr(html.data, "<script"));
    assert_non_null(strstr(html.data, "</html>"));
    imgstore_server__html_free(&html);
    imgstore_server__html_begin(&html, "x", NULL); /* anonymous: no logout button */
    assert_null(strstr(html.data, "logout"));
    imgstore_server__html_free(&html);
}

/* ---- the session cookie ------------------------------------------------------------------ */

static imgstore_server__token tokens[2];
static imgstore_server_config config = {.tokens = tokens, .token_count = 2};
static const uint8_t key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

static void setup_tokens(void)
{
    memset(tokens, 0, sizeof(tokens));
    assert_int_equal(imgstore_server__token_digest(tokens[0].digest, "imgstore_alice"), 0);
    assert_int_equal(imgstore_server__token_digest(tokens[1].digest, "imgstore_bob"), 0);
    snprintf(tokens[0].name, sizeof(tokens[0].name), "alice");
    snprintf(tokens[1].name, sizeof(tokens[1].name), "bob");
    tokens[0].scopes = IMGSTORE_SERVER_SCOPE_READ;
    tokens[1].scopes = IMGSTORE_SERVER_SCOPE_PUSH;
    config.token_count = 2;
}

static void a_session_names_its_token_until_it_expires(void **state)
{
    const imgstore_server__token *who = NULL;
    char cookie[160];

    (void)state;
    setup_tokens();
    imgstore_server__session_make(cookie, sizeof(cookie), key, tokens[1].digest, 2000);
    assert_int_equal(strlen(cookie), 3 + 4 + 1 + 64 + 1 + 64);
    assert_null(strstr(cookie, "imgstore_bob")); /* the token itself is not in it */
    assert_int_equal(imgstore_server__session_check(&who, &config, key, cookie, 1999), 0);
    assert_ptr_equal(who, &tokens[1]);
    assert_int_equal(imgstore_server__session_check(&who, &config, key, cookie, 2000),
                     IMGSTORE_ENOTFOUND);
    assert_null(who);
    /* the token removed from the config: its sessions end */
    config.token_count = 1;
    assert_int_equal(imgstore_server__session_check(&who, &config, key, cookie, 1000),
                     IMGSTORE_ENOTFOUND);
    config.token_count = 2;
}

static void a_forged_or_malformed_session_is_refused(void **state)
{
    const imgstore_server__token *who = NULL;
    uint8_t other_key[32] = {9};
    char cookie[160], forged[160];

    (void)state;
    setup_tokens();
    imgstore_server__session_make(cookie, sizeof(cookie), key, tokens[1].digest, 2000);
    /* another server's key (or this one's before a restart) */
    assert_int_equal(imgstore_server__session_check(&who, &config, other_key, cookie, 1000),
                     IMGSTORE_EINVALID);
    /* a later expiry, or another token's digest, under the old MAC */
    snprintf(forged, sizeof(forged), "v1.9000%s", strchr(cookie + 3, '.'));
    assert_int_equal(imgstore_server__session_check(&who, &config, key, forged, 1000),
                     IMGSTORE_EINVALID);
    memcpy(forged, cookie, sizeof(cookie));
    memcpy(strchr(forged + 3, '.') + 1, "00", 2);
    assert_int_equal(imgstore_server__session_check(&who, &config, key, forged, 1000),
                     IMGSTORE_EINVALID);
    /* one flipped MAC digit */
    memcpy(forged, cookie, sizeof(cookie));
    forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == '0' ? '1' : '0';
    assert_int_equal(imgstore_server__session_check(&who, &config, key, forged, 1000),
                     IMGSTORE_EINVALID);
    static const char *const malformed[] = {
        "", "v1", "v1.", "v2.2000.aa.bb", "v1.x.aa.bb", "imgstore_bob", "v1.2000..", NULL};
    for (size_t i = 0; malformed[i]; i++)
        assert_int_equal(imgstore_server__session_check(&who, &config, key, malformed[i], 1000),
                         IMGSTORE_EINVALID);
    assert_null(who);
}

static void the_login_form_body_is_decoded(void **state)
{
    static const char body[] = "next=%2Fui%2Fimages%2Fapp&token=imgstore_a+b%21&x=1";
    char *value = NULL;

    (void)state;
    assert_int_equal(imgstore_server__form_value(&value, body, strlen(body), "token"), 0);
    assert_string_equal(value, "imgstore_a b!");
    free(value);
    assert_int_equal(imgstore_server__form_value(&value, body, strlen(body), "next"), 0);
    assert_string_equal(value, "/ui/images/app");
    free(value);
    assert_int_equal(imgstore_server__form_value(&value, body, strlen(body), "tok"),
                     IMGSTORE_ENOTFOUND);
    assert_int_equal(imgstore_server__form_value(&value, "token=%00", 9, "token"),
                     IMGSTORE_EINVALID);
    assert_int_equal(imgstore_server__form_value(&value, "token=%4", 8, "token"),
                     IMGSTORE_EINVALID);
    assert_int_equal(imgstore_server__form_value(&value, "token=", 6, "token"), 0);
    assert_string_equal(value, "");
    free(value);
}

static void a_login_returns_only_to_our_own_paths(void **state)
{
    (void)state;
    assert_true(imgstore_server__ui_next_ok("/ui/"));
    assert_true(imgstore_server__ui_next_ok("/"));
    assert_true(imgstore_server__ui_next_ok("/ui/images/app?before=50"));
    assert_false(imgstore_server__ui_next_ok(NULL));
    assert_false(imgstore_server__ui_next_ok("https://evil.example/"));
    assert_false(imgstore_server__ui_next_ok("//evil.example/"));
    assert_false(imgstore_server__ui_next_ok("/\\evil.example/"));
    assert_false(imgstore_server__ui_next_ok("/ui/\r\nSet-Cookie: x=1"));
    assert_false(imgstore_server__ui_next_ok("/ui/\"><script>"));
    assert_false(imgstore_server__ui_next_ok("javascript:alert(1)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_is_escaped_for_elements_and_attributes),
        cmocka_unit_test(format_escapes_every_string_argument),
        cmocka_unit_test(format_refuses_conversions_it_does_not_escape),
        cmocka_unit_test(a_page_is_capped),
        cmocka_unit_test(a_page_frame_escapes_its_title_and_user),
        cmocka_unit_test(a_session_names_its_token_until_it_expires),
        cmocka_unit_test(a_forged_or_malformed_session_is_refused),
        cmocka_unit_test(the_login_form_body_is_decoded),
        cmocka_unit_test(a_login_returns_only_to_our_own_paths),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
