/*
 * The client library against a real `imgstore serve`: the test makes a store with the built
 * binary (`imgstore init`), starts the server on 127.0.0.1 (the kernel picks the port) with a
 * token, and drives it through client/client.h only. Links imgstore_client alone, so a call
 * into the store (libgit2) would not link.
 */
#include "client/client.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>

#include <cmocka.h>

#define TOKEN "imgstore_client_unit_test_token_0123456789abcdef"

static char tmp[4096], url[256], file_path[4200];
static pid_t server = -1;

static char *path_in(const char *name)
{
    char *path = imgstore_strfmt("%s/%s", tmp, name);

    assert_non_null(path);
    return path;
}

/* Run the built binary with the test's environment; its exit code. */
static int run_bin(const char *const *argv)
{
    pid_t pid = fork();
    int status = 0;

    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);

        dup2(null, STDOUT_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static int start_server(void **state)
{
    const char *bin = getenv("IMGSTORE_BIN");
    const char *base = getenv("IMGSTORE_TEST_TMP");
    char *repo, *config, *config_dir, *state_dir, *log_path, line[512] = "", token_sha[65];
    int out[2];
    size_t len = 0;

    (void)state;
    if (!bin || access(bin, X_OK) != 0) {
        fprintf(stderr, "IMGSTORE_BIN is not set to the built imgstore\n");
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s/imgstore-client-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp))
        return -1;
    config_dir = path_in("config");
    state_dir = path_in("home-state");
    setenv("XDG_CONFIG_HOME", config_dir, 1);
    setenv("XDG_STATE_HOME", state_dir, 1);
    setenv("HOME", tmp, 1);
    unsetenv("IMGSTORE_KEY");
    unsetenv("IMGSTORE_REPO");
    unsetenv("SSH_AUTH_SOCK");
    repo = path_in("store.git");
    {
        const char *argv[] = {bin, "init", "--repo", repo, NULL};

        if (run_bin(argv) != 0)
            return -1;
    }
    imgstore_sha256_hex(token_sha, TOKEN, strlen(TOKEN));
    config = path_in("server.conf");
    {
        char *text = imgstore_strfmt("token = %s scopes=admin name=unit\n", token_sha);

        write_text(config, text);
        free(text);
    }
    log_path = path_in("server.log");
    if (pipe(out) < 0)
        return -1;
    server = fork();
    if (server == 0) {
        int log = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        dup2(log, STDERR_FILENO); /* one line per request: kept beside the store */
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        execl(bin, bin, "serve", "--repo", repo, "--listen", "127.0.0.1:0", "--config", config,
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    /* "... listening on 127.0.0.1:PORT, ..." is its first line */
    while (len + 1 < sizeof(line) && read(out[0], line + len, 1) == 1 && line[len] != '\n')
        len++;
    line[len] = '\0';
    close(out[0]);
    {
        const char *at = strstr(line, "listening on ");
        size_t n;

        if (!at)
            return -1;
        at += strlen("listening on ");
        n = strcspn(at, ", \n");
        snprintf(url, sizeof(url), "http://%.*s", (int)n, at);
    }
    snprintf(file_path, sizeof(file_path), "%s/app.img", tmp);
    {
        FILE *f = fopen(file_path, "w");

        if (!f)
            return -1;
        for (int i = 0; i < 300000; i++)
            fputc((i * 7 + i / 251) & 0xff, f);
        fclose(f);
    }
    free(log_path);
    free(repo);
    free(config);
    free(config_dir);
    free(state_dir);
    return 0;
}

static int stop_server(void **state)
{
    char *cmd;

    (void)state;
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
    }
    if (tmp[0] && (cmd = imgstore_strfmt("rm -rf '%s'", tmp))) {
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmp);
        free(cmd);
    }
    return 0;
}

/* A client with its own state directory (pins and seen sequences). */
static imgstore_client *client_in(const char *state_name, const char *pin)
{
    imgstore_client_opts opts;
    imgstore_client *client = NULL;
    char *state_dir = path_in(state_name);

    memset(&opts, 0, sizeof(opts));
    opts.server_url = url;
    opts.token = TOKEN;
    opts.state_dir = state_dir;
    opts.trust_policy_sha256 = pin;
    assert_int_equal(imgstore_client_open(&client, &opts), 0);
    free(state_dir);
    return client;
}

static imgstore_sign_key *store_key(void)
{
    imgstore_sign_key *key = NULL;
    char *path = path_in("config/imgstore/key");

    assert_int_equal(imgstore_sign_key_load(&key, path, NULL), 0);
    free(path);
    return key;
}

/* Push FILE as app@VERSION (the server signs it: it holds the store's key). */
static void push_version(imgstore_client *client, const char *version)
{
    const char *files[] = {file_path};
    imgstore_client_push_opts opts = {"app", version, NULL, files, 1, NULL, 0, NULL};
    imgstore_client_manifest m;

    assert_int_equal(imgstore_client_push(&m, NULL, client, &opts), 0);
    imgstore_client_manifest_clear(&m);
}

static void open_rejects_bad_options(void **state)
{
    imgstore_client_opts opts;
    imgstore_client *client = NULL;

    (void)state;
    memset(&opts, 0, sizeof(opts));
    assert_int_equal(imgstore_client_open(&client, &opts), IMGSTORE_EINVALID);
    opts.server_url = "ftp://example.com";
    assert_int_equal(imgstore_client_open(&client, &opts), IMGSTORE_EINVALID);
    opts.server_url = url;
    opts.token = "a\r\nX-Forged: 1";
    assert_int_equal(imgstore_client_open(&client, &opts), IMGSTORE_EINVALID);
    opts.token = NULL;
    opts.trust_policy_sha256 = "not hex";
    assert_int_equal(imgstore_client_open(&client, &opts), IMGSTORE_EINVALID);
    assert_null(client);
}

static void policy_load_pins_on_first_use_and_refuses_another_pin(void **state)
{
    imgstore_client *client = client_in("pin-state", NULL);
    char *pin_path;
    struct stat st;

    (void)state;
    assert_null(imgstore_client_policy(client));
    assert_int_equal(imgstore_client_policy_load(client), 0);
    assert_non_null(imgstore_client_policy(client));
    assert_int_equal(imgstore_client_policy_count(client), 1);
    assert_int_equal(strlen(imgstore_client_store_id(client)), 40);
    pin_path = imgstore_strfmt("%s/pin-state/pins/%s", tmp, imgstore_client_store_id(client));
    assert_int_equal(stat(pin_path, &st), 0); /* trust on first use: remembered */
    free(pin_path);
    imgstore_client_free(client);

    /* the same state directory, again: the remembered pin matches */
    client = client_in("pin-state", NULL);
    assert_int_equal(imgstore_client_policy_load(client), 0);
    imgstore_client_free(client);

    /* a pin of another policy 1: the server's chain is refused */
    client =
        client_in("pin-other", "0000000000000000000000000000000000000000000000000000000000000000");
    assert_int_equal(imgstore_client_policy_load(client), IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "not the pinned"));
    assert_null(imgstore_client_policy(client));
    imgstore_client_free(client);
}

static void push_then_manifest_get_trusted(void **state)
{
    imgstore_client *client = client_in("push-state", NULL);
    const char *files[] = {file_path};
    const char *labels[] = {"team=unit"};
    imgstore_client_push_opts opts = {"app", "0.9", NULL, files, 1, labels, 1, NULL};
    imgstore_client_manifest m;
    imgstore_manifest *manifest = NULL;
    char digest[65];
    bool created = false;

    (void)state;
    assert_int_equal(imgstore_client_push(&m, &created, client, &opts), 0);
    assert_true(created);
    assert_true(m.status.trusted);
    assert_string_equal(m.manifest->version, "0.9");
    assert_int_equal(m.manifest->file_count, 1);
    assert_int_equal(m.manifest->files[0].size, 300000);
    assert_int_equal(imgstore_client_manifest_get_trusted(&manifest, digest, client, "app", "0.9"),
                     0);
    assert_string_equal(manifest->name, "app");
    assert_string_equal(digest, m.sha256);
    imgstore_manifest_free(manifest);
    imgstore_client_manifest_clear(&m);
    assert_int_equal(
        imgstore_client_manifest_get_trusted(&manifest, NULL, client, "app", "no-such"),
        IMGSTORE_ENOTFOUND);
    imgstore_client_free(client);
}

typedef struct {
    char *buf;
    size_t len, cap;
    int restarts;
} collect;

static int collect_write(bool restarted, const void *buf, size_t len, void *payload)
{
    collect *c = payload;

    if (restarted) {
        c->len = 0;
        c->restarts++;
    }
    if (c->len + len > c->cap)
        return imgstore_error_set(IMGSTORE_EINVALID, "too much");
    memcpy(c->buf + c->len, buf, len);
    c->len += len;
    return 0;
}

static void file_read_resumes_at_an_offset(void **state)
{
    imgstore_client *client = client_in("read-state", NULL);
    collect whole = {malloc(400000), 0, 400000, 0}, tail = {malloc(400000), 0, 400000, 0};

    (void)state;
    push_version(client, "1.0");
    assert_int_equal(
        imgstore_client_file_read(client, "app", "1.0", "app.img", 0, collect_write, &whole), 0);
    assert_int_equal(whole.len, 300000);
    assert_int_equal(
        imgstore_client_file_read(client, "app", "1.0", "app.img", 123456, collect_write, &tail),
        0);
    assert_int_equal(tail.restarts, 0);
    assert_int_equal(tail.len, 300000 - 123456);
    assert_memory_equal(tail.buf, whole.buf + 123456, tail.len);
    assert_int_equal(
        imgstore_client_file_read(client, "app", "1.0", "../etc", 0, collect_write, &tail),
        IMGSTORE_EINVALID);
    free(whole.buf);
    free(tail.buf);
    imgstore_client_free(client);
}

static void deploy_rollback_and_history(void **state)
{
    imgstore_client *client = client_in("deploy-state", NULL);
    imgstore_sign_key *key = store_key();
    const imgstore_sign_key *keys[] = {key};
    imgstore_client_move by_server = {NULL, 0, NULL, "first"};
    imgstore_client_move by_us = {keys, 1, "unit@test", "health check failed on 2.0"};
    imgstore_client_history_query page = {1, 0, false, 0};
    imgstore_channel_state *moved = NULL, *live = NULL;
    json_t *entries = NULL;
    uint64_t next = 0;

    (void)state;
    push_version(client, "1.0");
    push_version(client, "2.0");
    assert_int_equal(imgstore_client_deploy(&moved, client, "app", "prod", "1.0", &by_server), 0);
    assert_string_equal(moved->version, "1.0");
    imgstore_channel_state_free(moved);
    assert_true(imgstore_client_deploy_keys(client, keys, 1));
    assert_int_equal(imgstore_client_deploy(&moved, client, "app", "prod", "2.0", &by_us), 0);
    assert_string_equal(moved->version, "2.0");
    assert_string_equal(moved->actor, "unit@test");
    imgstore_channel_state_free(moved);
    /* no target: the top of the rollback stack, signed here with the reason */
    assert_int_equal(imgstore_client_rollback(&moved, client, "app", "prod", NULL, &by_us), 0);
    assert_string_equal(moved->version, "1.0");
    assert_string_equal(moved->action, "rollback");
    assert_string_equal(moved->reason, "health check failed on 2.0");
    assert_int_equal(moved->sequence, 3);
    imgstore_channel_state_free(moved);
    assert_int_equal(imgstore_client_channel_get(&live, NULL, client, "app", "prod", false), 0);
    assert_int_equal(live->sequence, 3);
    imgstore_channel_state_free(live);
    /* one entry per page, newest first, and a cursor to the next */
    assert_int_equal(imgstore_client_history(&entries, &next, client, "app", "prod", &page), 0);
    assert_int_equal(json_array_size(entries), 1);
    assert_true(next > 0);
    json_decref(entries);
    page.limit = 10;
    page.before = next;
    assert_int_equal(imgstore_client_history(&entries, &next, client, "app", "prod", &page), 0);
    assert_int_equal(json_array_size(entries), 2);
    assert_int_equal(next, 0);
    json_decref(entries);
    assert_int_equal(imgstore_client_channel_get(&live, NULL, client, "app", "nosuch", false),
                     IMGSTORE_ENOTFOUND);
    imgstore_sign_key_free(key);
    imgstore_client_free(client);
}

static void watch_times_out_then_sees_a_move(void **state)
{
    imgstore_client *client = client_in("watch-state", NULL);
    imgstore_channel_state *live = NULL, *moved = NULL;
    imgstore_client_move by_server = {NULL, 0, NULL, NULL};
    time_t started;

    (void)state;
    push_version(client, "1.0");
    push_version(client, "2.0");
    assert_int_equal(imgstore_client_deploy(&moved, client, "app", "watched", "1.0", &by_server),
                     0);
    imgstore_channel_state_free(moved);
    assert_int_equal(imgstore_client_channel_get(&live, NULL, client, "app", "watched", false), 0);
    started = time(NULL);
    assert_int_equal(imgstore_client_watch(&moved, client, "app", "watched", live->sequence, 1), 0);
    assert_null(moved); /* nothing moved within the timeout */
    assert_true(time(NULL) - started <= 5);
    assert_int_equal(imgstore_client_watch(&moved, client, "app", "watched", 0, 0),
                     IMGSTORE_EINVALID);
    assert_int_equal(imgstore_client_deploy(&moved, client, "app", "watched", "2.0", &by_server),
                     0);
    imgstore_channel_state_free(moved);
    assert_int_equal(imgstore_client_watch(&moved, client, "app", "watched", live->sequence, 5), 0);
    assert_non_null(moved);
    assert_string_equal(moved->version, "2.0");
    assert_int_equal(moved->sequence, live->sequence + 1);
    imgstore_channel_state_free(moved);
    imgstore_channel_state_free(live);
    imgstore_client_free(client);
}

static void tampered_and_replayed_states_are_refused(void **state)
{
    imgstore_client *client = client_in("tamper-state", NULL);
    imgstore_channel_state *checked = NULL, *moved = NULL;
    imgstore_client_move by_server = {NULL, 0, NULL, NULL};
    json_t *signed_state = NULL;
    char *text, *seen_path;

    (void)state;
    push_version(client, "1.0");
    assert_int_equal(imgstore_client_deploy(&moved, client, "app", "staging", "1.0", &by_server),
                     0);
    imgstore_channel_state_free(moved);
    assert_int_equal(
        imgstore_client_get_json(&signed_state, client, "/v1/channels/app/staging/signed"), 0);
    assert_int_equal(
        imgstore_client_state_check(&checked, NULL, client, signed_state, "app", "staging", "test"),
        0);
    imgstore_channel_state_free(checked);
    /* the same signatures over other bytes: 1.0 swapped for 1.1 */
    text = strdup(json_string_value(json_object_get(signed_state, "state")));
    assert_non_null(strstr(text, "\"1.0\""));
    strstr(text, "\"1.0\"")[3] = '1';
    json_object_set_new(signed_state, "state", json_string(text));
    assert_int_equal(
        imgstore_client_state_check(&checked, NULL, client, signed_state, "app", "staging", "test"),
        IMGSTORE_EVERIFY);
    assert_null(checked);
    free(text);
    json_decref(signed_state);
    /* this machine saw a later move than the server now shows: a replay */
    seen_path =
        imgstore_strfmt("%s/tamper-state/seen/%s.json", tmp, imgstore_client_store_id(client));
    write_text(seen_path, "{\"app/staging\": 99}");
    assert_int_equal(imgstore_client_channel_get(&checked, NULL, client, "app", "staging", false),
                     IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "already saw sequence 99"));
    free(seen_path);
    imgstore_client_free(client);
}

static void report_is_posted_and_listed(void **state)
{
    imgstore_client *client = client_in("report-state", NULL);
    imgstore_channel_state *moved = NULL;
    imgstore_client_move by_server = {NULL, 0, NULL, NULL};
    imgstore_client_report_opts ok = {"web-3", "rolled-back", "1.0", "2.0", "agent web-3: x"};
    imgstore_client_report_opts bad = {"../x", "ok", NULL, NULL, NULL};
    json_t *body = NULL, *host;
    bool verified = true;

    (void)state;
    push_version(client, "1.0");
    assert_int_equal(imgstore_client_deploy(&moved, client, "app", "reported", "1.0", &by_server),
                     0);
    imgstore_channel_state_free(moved);
    assert_int_equal(imgstore_client_report(&verified, client, "app", "reported", &ok), 0);
    assert_false(verified); /* the test's token is bound to no host */
    assert_int_equal(imgstore_client_report(NULL, client, "app", "reported", &bad),
                     IMGSTORE_EINVALID);
    assert_int_equal(imgstore_client_report(NULL, client, "app", "nosuch", &ok),
                     IMGSTORE_ENOTFOUND);
    assert_int_equal(imgstore_client_get_json(&body, client, "/v1/channels/app/reported/reports"),
                     0);
    host = json_array_get(json_object_get(body, "hosts"), 0);
    assert_string_equal(json_string_value(json_object_get(host, "host")), "web-3");
    assert_string_equal(json_string_value(json_object_get(host, "attempted")), "2.0");
    assert_true(json_is_false(json_object_get(host, "signed")));
    assert_true(json_is_false(json_object_get(host, "host_verified")));
    json_decref(body);
    imgstore_client_free(client);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_rejects_bad_options),
        cmocka_unit_test(policy_load_pins_on_first_use_and_refuses_another_pin),
        cmocka_unit_test(push_then_manifest_get_trusted),
        cmocka_unit_test(file_read_resumes_at_an_offset),
        cmocka_unit_test(deploy_rollback_and_history),
        cmocka_unit_test(watch_times_out_then_sees_a_move),
        cmocka_unit_test(tampered_and_replayed_states_are_refused),
        cmocka_unit_test(report_is_posted_and_listed),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
