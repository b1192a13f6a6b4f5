/*
 * The server's configuration and its small parsers: every key of docs/server.md, tokens kept
 * as digests only, bad values refused with the key named, the one error-to-status table,
 * and path segments decoded one by one (so an encoded '/' or NUL can never pass as a name).
 */
#include "server/server_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define DIGEST "8d0f8c1c5f0e4b9d6b0a4ef0a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5"

static void defaults_listen_on_loopback_with_bounded_limits(void **state)
{
    imgstore_server_config *config = NULL;

    (void)state;
    assert_int_equal(imgstore_server_config_new(&config), 0);
    assert_string_equal(config->listen, "127.0.0.1:8080");
    assert_null(config->repo);
    assert_int_equal(config->anonymous_scopes, 0);
    assert_int_equal(config->token_count, 0);
    assert_true(config->max_json_bytes > 0 && config->max_json_bytes <= 1024 * 1024);
    assert_true(config->max_wait_seconds > 0 && config->max_waiters > 0);
    imgstore_server_config_free(config);
}

static void set_parses_sizes_numbers_and_booleans(void **state)
{
    imgstore_server_config *config = NULL;

    (void)state;
    assert_int_equal(imgstore_server_config_new(&config), 0);
    assert_int_equal(imgstore_server_config_set(config, "cache_max_bytes", "20G"), 0);
    assert_int_equal(config->cache_max_bytes, 20ull << 30);
    assert_int_equal(imgstore_server_config_set(config, "max_json_bytes", "8K"), 0);
    assert_int_equal(config->max_json_bytes, 8192);
    assert_int_equal(config->answer_cache_bytes, 8u << 20);
    assert_int_equal(imgstore_server_config_set(config, "answer_cache_bytes", "0"), 0);
    assert_int_equal(config->answer_cache_bytes, 0);
    assert_int_equal(imgstore_server_config_set(config, "connection_timeout", "15"), 0);
    assert_int_equal(config->connection_timeout, 15);
    assert_int_equal(imgstore_server_config_set(config, "read_public", "true"), 0);
    assert_int_equal(config->anonymous_scopes, IMGSTORE_SERVER_SCOPE_READ);
    assert_int_equal(imgstore_server_config_set(config, "read_public", "no"), 0);
    assert_int_equal(config->anonymous_scopes, 0);
    assert_int_equal(imgstore_server_config_set(config, "listen", "[::1]:0"), 0);
    assert_string_equal(config->listen, "[::1]:0");
    imgstore_server_config_free(config);
}

static void set_refuses_bad_values_naming_the_key(void **state)
{
    static const char *const bad[][2] = {
        {"max_json_bytes", "lots"},
        {"max_json_bytes", "1T"},
        {"max_json_bytes", "-1"},
        {"max_json_bytes", "1"},
        {"connection_timeout", "0"},
        {"read_public", "maybe"},
        {"cache_max_bytes", "99999999999999999999G"},
        {"no_such_key", "1"},
        {"repo", ""},
        {"anonymous_scopes", "root"},
        {"fill_concurrency", "1K"},
    };
    imgstore_server_config *config = NULL;

    (void)state;
    assert_int_equal(imgstore_server_config_new(&config), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(imgstore_server_config_set(config, bad[i][0], bad[i][1]),
                         IMGSTORE_EINVALID);
        if (strcmp(bad[i][0], "anonymous_scopes") != 0)
            assert_non_null(strstr(imgstore_error_last(), bad[i][0]));
    }
    imgstore_server_config_free(config);
}

static void token_lines_keep_the_digest_scopes_and_name(void **state)
{
    imgstore_server_config *config = NULL;

    (void)state;
    assert_int_equal(imgstore_server_config_new(&config), 0);
    assert_int_equal(
        imgstore_server_config_set(config, "token", DIGEST " scopes=read,push name=ci"), 0);
    assert_int_equal(imgstore_server_config_set(config, "token", DIGEST " scopes=admin"), 0);
    assert_int_equal(config->token_count, 2);
    assert_int_equal(config->tokens[0].scopes,
                     IMGSTORE_SERVER_SCOPE_READ | IMGSTORE_SERVER_SCOPE_PUSH);
    assert_string_equal(config->tokens[0].name, "ci");
    assert_int_equal(config->tokens[0].digest[0], 0x8d);
    assert_int_equal(config->tokens[0].digest[31], 0xd5);
    assert_int_equal(config->tokens[1].scopes, IMGSTORE_SERVER_SCOPE_ADMIN);
    /* refused: no scopes, short digest, non-hex, unknown scope, bad name, unknown attribute */
    assert_int_equal(imgstore_server_config_set(config, "token", DIGEST), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_server_config_set(config, "token", "abcd scopes=read"),
                     IMGSTORE_EINVALID);
    assert_int_equal(
        imgstore_server_config_set(config, "token",
                                   "zz0f8c1c5f0e4b9d6b0a4ef0a2b3c4d5e6f708192a3b4c5d6e7"
                                   "f8091a2b3c4d5 scopes=read"),
        IMGSTORE_EINVALID);
    assert_int_equal(imgstore_server_config_set(config, "token", DIGEST " scopes=read,sudo"),
                     IMGSTORE_EINVALID);
    assert_int_equal(imgstore_server_config_set(config, "token", DIGEST " scopes=read name=../x"),
                     IMGSTORE_EINVALID);
    assert_int_equal(imgstore_server_config_set(config, "token", DIGEST " scopes=read ttl=1"),
                     IMGSTORE_EINVALID);
    assert_int_equal(config->token_count, 2);
    imgstore_server_config_free(config);
}

static void load_reads_the_file_and_names_the_bad_line(void **state)
{
    char path[] = "/tmp/imgstore-config-XXXXXX";
    int fd = mkstemp(path);
    imgstore_server_config *config = NULL;
    FILE *file;

    (void)state;
    assert_true(fd >= 0);
    file = fdopen(fd, "w");
    fprintf(file, "# comment\n\n  listen = 0.0.0.0:9000  \nrepo=/srv/store.git\n"
                  "token = " DIGEST " scopes=deploy name=ops\nbogus line\n");
    fclose(file);
    assert_int_equal(imgstore_server_config_new(&config), 0);
    assert_int_equal(imgstore_server_config_load(config, path), IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), ":6:"));
    assert_string_equal(config->listen, "0.0.0.0:9000");
    assert_string_equal(imgstore_server_config_repo(config), "/srv/store.git");
    assert_int_equal(config->token_count, 1);
    unlink(path);
    assert_int_equal(imgstore_server_config_load(config, path), IMGSTORE_ENOTFOUND);
    imgstore_server_config_free(config);
}

static void status_table_maps_every_error_code(void **state)
{
    (void)state;
    assert_int_equal(imgstore_server__status_for(IMGSTORE_OK), 200);
    assert_int_equal(imgstore_server__status_for(IMGSTORE_ENOTFOUND), 404);
    assert_int_equal(imgstore_server__status_for(IMGSTORE_EINVALID), 400);
    assert_int_equal(imgstore_server__status_for(IMGSTORE_EEXISTS), 409);
    assert_int_equal(imgstore_server__status_for(IMGSTORE_EVERIFY), 500);
    assert_int_equal(imgstore_server__status_for(IMGSTORE_ELOCKED), 503);
    assert_int_equal(imgstore_server__status_for(IMGSTORE_ERROR), 500);
    assert_int_equal(imgstore_server__status_for(-99), 500);
}

/* Where the client supplied the signatures, a refused one is its fault, not the store's. */
static void client_signed_routes_answer_refused_signatures_with_403(void **state)
{
    const char *code = NULL;

    (void)state;
    assert_int_equal(imgstore_server__status_for_route(IMGSTORE_EVERIFY, true, &code), 403);
    assert_string_equal(code, "untrusted_key");
    assert_int_equal(imgstore_server__status_for_route(IMGSTORE_ELOCKED, true, &code), 409);
    assert_string_equal(code, "conflict");
    assert_int_equal(imgstore_server__status_for_route(IMGSTORE_EINVALID, true, &code), 400);
    assert_string_equal(code, imgstore_error_name(IMGSTORE_EINVALID));
    assert_int_equal(imgstore_server__status_for_route(IMGSTORE_ENOTFOUND, true, &code), 404);
    assert_int_equal(imgstore_server__status_for_route(IMGSTORE_EVERIFY, false, &code), 500);
    assert_string_equal(code, imgstore_error_name(IMGSTORE_EVERIFY));
}

static void segments_decode_without_letting_separators_or_nul_through(void **state)
{
    static const char *const refused[] = {"%", "%2", "%zz", "a%00b", "%0"};
    char *out;

    (void)state;
    out = imgstore_server__decode_segment("a%2Fb", 5);
    assert_string_equal(out, "a/b"); /* stays one segment: the name check refuses it */
    assert_int_equal(imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, out), IMGSTORE_EINVALID);
    free(out);
    out = imgstore_server__decode_segment("%2e%2E", 6);
    assert_string_equal(out, "..");
    free(out);
    out = imgstore_server__decode_segment("1.0+x", 5);
    assert_string_equal(out, "1.0+x");
    free(out);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_null(imgstore_server__decode_segment(refused[i], strlen(refused[i])));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_listen_on_loopback_with_bounded_limits),
        cmocka_unit_test(set_parses_sizes_numbers_and_booleans),
        cmocka_unit_test(set_refuses_bad_values_naming_the_key),
        cmocka_unit_test(token_lines_keep_the_digest_scopes_and_name),
        cmocka_unit_test(load_reads_the_file_and_names_the_bad_line),
        cmocka_unit_test(status_table_maps_every_error_code),
        cmocka_unit_test(client_signed_routes_answer_refused_signatures_with_403),
        cmocka_unit_test(segments_decode_without_letting_separators_or_nul_through),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
