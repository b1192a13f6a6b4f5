/*
 * Who may speak for a host in an agent report (issue #12): a token bound to a host (config
 * `host=`, optionally `image=`) is verified for that host and refused for any other; an
 * unbound token, an admin token without a binding and anonymous requests are taken as
 * unverified claims, as before. The HTTP side (403, the stored record) is in
 * tests/integration/test_report_auth.py.
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

#define DIGEST "8d0f8c1c5f0e4b9d6b0a4ef0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5"

static imgstore_server_config *config_with(const char *line)
{
    imgstore_server_config *config = NULL;

    assert_int_equal(imgstore_server_config_new(&config), 0);
    assert_int_equal(imgstore_server_config_set(config, "token", line), 0);
    return config;
}

static void token_lines_keep_the_host_and_image_binding(void **state)
{
    imgstore_server_config *config = config_with(DIGEST " scopes=report name=a host=web-1");

    (void)state;
    assert_string_equal(config->tokens[0].host, "web-1");
    assert_string_equal(config->tokens[0].image, "");
    assert_int_equal(
        imgstore_server_config_set(config, "token",
                                   DIGEST " scopes=read,report name=b host=Web-2.fra1 image=app"),
        0);
    assert_string_equal(config->tokens[1].host, "Web-2.fra1");
    assert_string_equal(config->tokens[1].image, "app");
    /* an unbound line (the format before binding) still reads, bound to nothing */
    assert_int_equal(imgstore_server_config_set(config, "token", DIGEST " scopes=report"), 0);
    assert_string_equal(config->tokens[2].host, "");
    assert_int_equal(config->token_count, 3);
    imgstore_server_config_free(config);
}

static void token_lines_refuse_bad_bindings(void **state)
{
    imgstore_server_config *config = NULL;

    (void)state;
    assert_int_equal(imgstore_server_config_new(&config), 0);
    assert_int_equal(imgstore_server_config_set(config, "token", DIGEST " scopes=report host=../x"),
                     IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), "host name"));
    assert_int_equal(imgstore_server_config_set(config, "token", DIGEST " scopes=report host="),
                     IMGSTORE_EINVALID);
    assert_int_equal(
        imgstore_server_config_set(config, "token", DIGEST " scopes=report host=h image=Bad/x"),
        IMGSTORE_EINVALID);
    /* an image binding alone would vouch for no host */
    assert_int_equal(imgstore_server_config_set(config, "token", DIGEST " scopes=report image=app"),
                     IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), "image= needs host="));
    assert_int_equal(config->token_count, 0);
    imgstore_server_config_free(config);
}

static void a_bound_token_is_verified_for_its_host_only(void **state)
{
    imgstore_server_config *config = config_with(DIGEST " scopes=report name=agent-web-1 "
                                                        "host=web-1");
    bool verified = false;

    (void)state;
    assert_true(imgstore_server__report_allowed(&verified, &config->tokens[0], "app", "web-1"));
    assert_true(verified);
    assert_true(imgstore_server__report_allowed(&verified, &config->tokens[0], "db", "web-1"));
    assert_true(verified); /* no image binding: any image */
    verified = true;
    assert_false(imgstore_server__report_allowed(&verified, &config->tokens[0], "app", "web-2"));
    assert_false(verified);
    assert_string_equal(imgstore_error_last(),
                        "token 'agent-web-1' is bound to host 'web-1' and may not report for "
                        "'web-2'");
    /* names are compared exactly, as the server stores them */
    assert_false(imgstore_server__report_allowed(&verified, &config->tokens[0], "app", "WEB-1"));
    imgstore_server_config_free(config);
}

static void an_image_binding_narrows_the_host(void **state)
{
    imgstore_server_config *config = config_with(DIGEST " scopes=report name=t host=h image=app");
    bool verified = false;

    (void)state;
    assert_true(imgstore_server__report_allowed(&verified, &config->tokens[0], "app", "h"));
    assert_true(verified);
    assert_false(imgstore_server__report_allowed(&verified, &config->tokens[0], "db", "h"));
    assert_false(verified);
    assert_string_equal(imgstore_error_last(),
                        "token 't' is bound to image 'app' and may not report on 'db'");
    assert_false(imgstore_server__report_allowed(&verified, &config->tokens[0], "app", "h2"));
    imgstore_server_config_free(config);
}

static void unbound_and_anonymous_reports_are_unverified_claims(void **state)
{
    imgstore_server_config *config = config_with(DIGEST " scopes=admin name=ops");
    bool verified = true;

    (void)state;
    assert_true(imgstore_server__report_allowed(&verified, &config->tokens[0], "app", "any"));
    assert_false(verified); /* admin may post, but vouches for no host name */
    verified = true;
    assert_true(imgstore_server__report_allowed(&verified, NULL, "app", "any"));
    assert_false(verified);
    imgstore_server_config_free(config);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_lines_keep_the_host_and_image_binding),
        cmocka_unit_test(token_lines_refuse_bad_bindings),
        cmocka_unit_test(a_bound_token_is_verified_for_its_host_only),
        cmocka_unit_test(an_image_binding_narrows_the_host),
        cmocka_unit_test(unbound_and_anonymous_reports_are_unverified_claims),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
