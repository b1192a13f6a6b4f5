/*
 * The HTTP plumbing of remote mode: where the server is and which token to send (flags,
 * environment, the user config file), one libcurl handle per command, requests with bounded
 * answers, streamed downloads and multipart uploads, and the one mapping from HTTP status to
 * the error codes the CLI turns into exit codes. What the answers mean, and whether to
 * believe them, is remote_trust.c's business.
 */
#include "cli/remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_MAX (64u * 1024)

/* ---- settings ------------------------------------------------------------------------- */

static char *config_path(void)
{
    const char *config = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");

    if (config && *config)
        return imgstore_strfmt("%s/imgstore/config", config);
    return imgstore_strfmt("%s/.config/imgstore/config", home && *home ? home : ".");
}

/* The value of `key = value` in the user config file (free()), or NULL. A missing or
 * unreadable file is no error: the file is optional. */
static char *config_value(const char *key)
{
    char *path = config_path(), line[4096], *found = NULL;
    size_t total = 0;
    FILE *f = path ? fopen(path, "r") : NULL;

    free(path);
    if (!f)
        return NULL;
    while (!found && total < CONFIG_MAX && fgets(line, sizeof(line), f)) {
        char *at = line, *eq, *end;

        total += strlen(line);
        at += strspn(at, " \t");
        if (*at == '#' || !(eq = strchr(at, '=')))
            continue;
        end = eq;
        while (end > at && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - at) != strlen(key) || strncmp(at, key, strlen(key)) != 0)
            continue;
        eq++;
        eq += strspn(eq, " \t");
        eq[strcspn(eq, "\r\n")] = '\0';
        end = eq + strlen(eq);
        while (end > eq && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*eq)
            found = strdup(eq);
    }
    fclose(f);
    return found;
}

static bool has_option(int argc, char **argv, const char *name)
{
    size_t len = strlen(name);

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strncmp(argv[i], name, len) == 0 && (argv[i][len] == '\0' || argv[i][len] == '='))
            return true;
    }
    return false;
}

bool cli_remote_selected(int argc, char **argv)
{
    const char *env;
    char *configured;

    if (has_option(argc, argv, "--server"))
        return true;
    if (has_option(argc, argv, "--repo"))
        return false;
    if ((env = getenv("IMGSTORE_SERVER")) && *env)
        return true;
    if ((env = getenv("IMGSTORE_REPO")) && *env)
        return false;
    configured = config_value("server");
    free(configured);
    return configured != NULL;
}

bool cli_remote_option(cli_remote_args *args, int opt, const char *arg)
{
    switch (opt) {
    case OPT_REMOTE_SERVER:
        args->server = arg;
        return true;
    case OPT_REMOTE_TOKEN:
        args->token = arg;
        return true;
    case OPT_REMOTE_PIN:
        args->pin = arg;
        return true;
    default:
        return false;
    }
}

static char *setting(const char *flag, const char *env_name, const char *config_key)
{
    const char *env = getenv(env_name);

    if (flag)
        return strdup(flag);
    if (env && *env)
        return strdup(env);
    return config_value(config_key);
}

static bool is_hex64(const char *text)
{
    if (strlen(text) != 64)
        return false;
    for (const char *c = text; *c; c++) {
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    }
    return true;
}

int cli_remote_open(cli_remote *out, const cli_remote_args *args)
{
    const char *pin_env = getenv("IMGSTORE_TRUST_POLICY_SHA256");
    int err = 0;

    memset(out, 0, sizeof(*out));
    out->url = setting(args->server, "IMGSTORE_SERVER", "server");
    out->token = setting(args->token, "IMGSTORE_TOKEN", "token");
    out->pin = args->pin ? args->pin : (pin_env && *pin_env ? pin_env : NULL);
    if (!out->url || !*out->url) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "no server: give --server URL");
        goto done;
    }
    if (strncmp(out->url, "http://", 7) != 0 && strncmp(out->url, "https://", 8) != 0) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "server '%s': expected an http:// or https:// URL", out->url);
        goto done;
    }
    for (size_t len = strlen(out->url); len > 0 && out->url[len - 1] == '/'; len--)
        out->url[len - 1] = '\0';
    /* the token goes into a header line: a newline in it would forge other headers */
    if (out->token && out->token[strcspn(out->token, "\r\n")]) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "token: contains a line break");
        goto done;
    }
    if (out->pin && !is_hex64(out->pin)) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "--trust-policy-sha256: expected 64 lower-case hex digits");
        goto done;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(out->curl = curl_easy_init()))
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot initialise libcurl");
done:
    if (err < 0)
        cli_remote_close(out);
    return err;
}

void cli_remote_close(cli_remote *remote)
{
    if (remote->curl) {
        curl_easy_cleanup(remote->curl);
        curl_global_cleanup();
    }
    free(remote->url);
    free(remote->token);
    memset(remote, 0, sizeof(*remote));
}

/* ---- requests ------------------------------------------------------------------------- */

typedef struct {
    cli_remote_response *resp;
    size_t cap;
    bool too_large;
    cli_remote_body_fn body; /* streaming downloads: 2xx bodies go here */
    void *body_payload;
    int body_err;
    cli_remote *remote;
} transfer;

static int xferinfo(void *payload, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                    curl_off_t ulnow)
{
    cli_remote *remote = payload;

    if (remote->stop && *remote->stop)
        return 1;
    if (remote->progress) {
        uint64_t now = (uint64_t)(ulnow > 0 ? ulnow : dlnow);
        uint64_t total = remote->progress_total ? remote->progress_total
                                                : (uint64_t)(ultotal > 0 ? ultotal : dltotal);

        cli_progress_update(remote->progress_base + now, total, remote->progress);
    }
    return 0;
}

static bool is_success(long status)
{
    return status >= 200 && status < 300;
}

static size_t on_data(char *data, size_t size, size_t n, void *payload)
{
    transfer *t = payload;
    size_t len = size * n;
    long status = 0;

    curl_easy_getinfo(t->remote->curl, CURLINFO_RESPONSE_CODE, &status);
    if (t->body && is_success(status)) {
        if ((t->body_err = t->body(status, data, len, t->body_payload)) < 0)
            return 0;
        return len;
    }
    /* an error body (or a small answer): kept, bounded */
    if (t->resp->len + len > t->cap) {
        t->too_large = true;
        return 0;
    }
    char *grown = realloc(t->resp->body, t->resp->len + len + 1);

    if (!grown)
        return 0;
    memcpy(grown + t->resp->len, data, len);
    t->resp->body = grown;
    t->resp->len += len;
    grown[t->resp->len] = '\0';
    return len;
}

/* Options every request shares; the caller adds its own after. */
static int prepare(cli_remote *remote, struct curl_slist **headers, const char *path, transfer *t)
{
    char *url = imgstore_strfmt("%s%s", remote->url, path), *auth = NULL;

    if (!url)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    curl_easy_reset(remote->curl);
    curl_easy_setopt(remote->curl, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(remote->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(remote->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(remote->curl, CURLOPT_USERAGENT, "imgstore/" IMGSTORE_VERSION);
    curl_easy_setopt(remote->curl, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a server that stops sending for two minutes is gone (long-polls answer within 60 s) */
    curl_easy_setopt(remote->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(remote->curl, CURLOPT_LOW_SPEED_TIME, 120L);
    curl_easy_setopt(remote->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(remote->curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(remote->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(remote->curl, CURLOPT_XFERINFOFUNCTION, xferinfo);
    curl_easy_setopt(remote->curl, CURLOPT_XFERINFODATA, remote);
    if (remote->token) {
        if (!(auth = imgstore_strfmt("Authorization: Bearer %s", remote->token)))
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        *headers = curl_slist_append(*headers, auth);
        free(auth);
    }
    return 0;
}

static int perform(cli_remote *remote, const char *method, const char *path, transfer *t)
{
    CURLcode rc = curl_easy_perform(remote->curl);

    remote->last_result = rc;

    curl_easy_getinfo(remote->curl, CURLINFO_RESPONSE_CODE, &t->resp->status);
    if (t->body_err < 0)
        return t->body_err;
    if (t->too_large)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s %s: the server's answer is over %zu bytes",
                                  method, path, t->cap);
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        return imgstore_error_set(IMGSTORE_ERROR, "%s %s: interrupted", method, path);
    if (rc != CURLE_OK)
        return imgstore_error_set(IMGSTORE_ERROR, "%s %s%s: %s", method, remote->url, path,
                                  curl_easy_strerror(rc));
    return 0;
}

int cli_remote_call(cli_remote *remote, const char *method, const char *path, const char *json,
                    size_t cap, cli_remote_response *resp)
{
    struct curl_slist *headers = NULL;
    transfer t = {resp, cap, false, NULL, NULL, 0, remote};
    int err;

    memset(resp, 0, sizeof(*resp));
    if ((err = prepare(remote, &headers, path, &t)) < 0)
        goto done;
    if (json) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(remote->curl, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(remote->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json));
    }
    if (strcmp(method, "GET") != 0)
        curl_easy_setopt(remote->curl, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0 && !json) {
        curl_easy_setopt(remote->curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(remote->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    curl_easy_setopt(remote->curl, CURLOPT_HTTPHEADER, headers);
    err = perform(remote, method, path, &t);
done:
    curl_slist_free_all(headers);
    if (err < 0)
        cli_remote_response_free(resp);
    return err;
}

void cli_remote_response_free(cli_remote_response *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

/* The server's error message, made one printable line. */
static void server_message(char *out, size_t cap, const cli_remote_response *resp)
{
    json_t *body = resp->body ? json_loadb(resp->body, resp->len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(json_object_get(body, "error"), "message"));

    snprintf(out, cap, "%s", msg ? msg : "");
    for (char *c = out; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    }
    json_decref(body);
}

int cli_remote_status_error(const cli_remote *remote, const char *path,
                            const cli_remote_response *resp)
{
    char msg[1024];
    int code;

    if (is_success(resp->status))
        return 0;
    server_message(msg, sizeof(msg), resp);
    switch (resp->status) {
    case 401:
        return imgstore_error_set(IMGSTORE_ERROR,
                                  "%s: unauthorized (HTTP 401)%s%s; give a token with --token or "
                                  "IMGSTORE_TOKEN",
                                  remote->url, *msg ? ": " : "", msg);
    case 403:
        return imgstore_error_set(IMGSTORE_ERROR, "%s: forbidden (HTTP 403)%s%s", remote->url,
                                  *msg ? ": " : "", msg);
    case 404:
        code = IMGSTORE_ENOTFOUND;
        break;
    case 409:
        code = IMGSTORE_EEXISTS;
        break;
    case 400:
    case 413:
    case 414:
    case 415:
    case 416:
        code = IMGSTORE_EINVALID;
        break;
    case 503:
        code = IMGSTORE_ELOCKED;
        break;
    default:
        /* the server found its own store damaged: a verification failure, as locally */
        code = resp->body && strstr(resp->body, "\"verification_failed\"") ? IMGSTORE_EVERIFY
                                                                           : IMGSTORE_ERROR;
        break;
    }
    if (*msg)
        return imgstore_error_set(code, "%s (HTTP %ld)", msg, resp->status);
    return imgstore_error_set(code, "%s%s: HTTP %ld", remote->url, path, resp->status);
}

int cli_remote_get_bytes(char **out, size_t *len_out, cli_remote *remote, const char *path,
                         size_t cap)
{
    cli_remote_response resp;
    int err;

    *out = NULL;
    *len_out = 0;
    if ((err = cli_remote_call(remote, "GET", path, NULL, cap, &resp)) < 0)
        return err;
    if ((err = cli_remote_status_error(remote, path, &resp)) == 0) {
        if (!resp.body && !(resp.body = calloc(1, 1)))
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        *out = resp.body;
        *len_out = resp.len;
        resp.body = NULL;
    }
    cli_remote_response_free(&resp);
    return err;
}

static int parse_json(json_t **out, const char *path, const char *body, size_t len)
{
    json_error_t jerr;

    if (!(*out = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr)) ||
        !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: the server's answer is not a JSON object",
                                  path);
    }
    return 0;
}

int cli_remote_get_json(json_t **out, cli_remote *remote, const char *path)
{
    char *body = NULL;
    size_t len = 0;
    int err;

    *out = NULL;
    if ((err = cli_remote_get_bytes(&body, &len, remote, path, CLI_REMOTE_JSON_MAX)) == 0)
        err = parse_json(out, path, body, len);
    free(body);
    return err;
}

int cli_remote_send_json(json_t **out, long *status_out, cli_remote *remote, const char *method,
                         const char *path, json_t *body)
{
    cli_remote_response resp;
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int err;

    json_decref(body);

    *out = NULL;
    if (body && !text)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    err = cli_remote_call(remote, method, path, text, CLI_REMOTE_JSON_MAX, &resp);
    free(text);
    if (err < 0)
        return err;
    if (status_out)
        *status_out = resp.status;
    if ((err = cli_remote_status_error(remote, path, &resp)) == 0)
        err = parse_json(out, path, resp.body, resp.len);
    cli_remote_response_free(&resp);
    return err;
}

int cli_remote_download(cli_remote *remote, const char *path, uint64_t offset,
                        cli_remote_body_fn body, void *payload)
{
    struct curl_slist *headers = NULL;
    cli_remote_response resp;
    transfer t = {&resp, CLI_REMOTE_ERROR_MAX, false, body, payload, 0, remote};
    char range[64];
    int err;

    memset(&resp, 0, sizeof(resp));
    if ((err = prepare(remote, &headers, path, &t)) < 0)
        goto done;
    if (offset > 0) {
        snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)offset);
        headers = curl_slist_append(headers, range);
    }
    curl_easy_setopt(remote->curl, CURLOPT_HTTPHEADER, headers);
    if ((err = perform(remote, "GET", path, &t)) == 0)
        err = cli_remote_status_error(remote, path, &resp);
done:
    curl_slist_free_all(headers);
    cli_remote_response_free(&resp);
    return err;
}

int cli_remote_upload(json_t **out, cli_remote *remote, const char *path,
                      const cli_remote_form_field *fields, size_t field_count,
                      const cli_remote_upload_file *files, size_t count)
{
    struct curl_slist *headers = NULL;
    cli_remote_response resp;
    transfer t = {&resp, CLI_REMOTE_JSON_MAX, false, NULL, NULL, 0, remote};
    curl_mime *mime = NULL;
    int err;

    *out = NULL;
    memset(&resp, 0, sizeof(resp));
    if ((err = prepare(remote, &headers, path, &t)) < 0)
        goto done;
    if (!(mime = curl_mime_init(remote->curl))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    /* provenance shapes the manifest, which the server begins with the first file */
    for (size_t i = 0; i < field_count; i++) {
        curl_mimepart *part = curl_mime_addpart(mime);

        curl_mime_name(part, fields[i].name);
        curl_mime_data(part, fields[i].value, CURL_ZERO_TERMINATED);
    }
    /* each file's digest and kind go before its bytes, so the server can check them as the
     * last byte arrives (docs/api.md); curl_mime_filedata reads the file as it is sent */
    for (size_t i = 0; i < count; i++) {
        char field[IMGSTORE_NAME_MAX + 16];
        curl_mimepart *part;

        snprintf(field, sizeof(field), "sha256.%s", files[i].name);
        part = curl_mime_addpart(mime);
        curl_mime_name(part, field);
        curl_mime_data(part, files[i].sha256, CURL_ZERO_TERMINATED);
        if (files[i].kind) {
            snprintf(field, sizeof(field), "kind.%s", files[i].name);
            part = curl_mime_addpart(mime);
            curl_mime_name(part, field);
            curl_mime_data(part, files[i].kind, CURL_ZERO_TERMINATED);
        }
        part = curl_mime_addpart(mime);
        curl_mime_name(part, "file");
        if (curl_mime_filedata(part, files[i].path) != CURLE_OK) {
            err = imgstore_error_set(IMGSTORE_ERROR, "cannot read %s", files[i].path);
            goto done;
        }
        curl_mime_filename(part, files[i].name);
        curl_mime_type(part, "application/octet-stream");
    }
    curl_easy_setopt(remote->curl, CURLOPT_MIMEPOST, mime);
    /* no "Expect: 100-continue" round trip: the server reads or refuses the body as it comes */
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(remote->curl, CURLOPT_HTTPHEADER, headers);
    if ((err = perform(remote, "POST", path, &t)) == 0 &&
        (err = cli_remote_status_error(remote, path, &resp)) == 0)
        err = parse_json(out, path, resp.body, resp.len);
done:
    curl_mime_free(mime);
    curl_slist_free_all(headers);
    cli_remote_response_free(&resp);
    return err;
}

/* ---- small shared helpers ------------------------------------------------------------- */

int cli_remote_check_names(const char *image, const char *version, const char *channel)
{
    int err = 0;

    if (image)
        err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, image);
    if (err == 0 && version)
        err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version);
    if (err == 0 && channel)
        err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, channel);
    return err;
}

int cli_remote_mkdirs(const char *path)
{
    char buf[4096];

    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return imgstore_error_set(IMGSTORE_EINVALID, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0700) < 0 && errno != EEXIST)
                return imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", buf,
                                          strerror(errno));
            *p = '/';
        }
    }
    if (mkdir(buf, 0700) < 0 && errno != EEXIST)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", buf, strerror(errno));
    return 0;
}
