/*
 * The HTTP plumbing of the client: the handle (one libcurl handle, so connections are kept
 * alive between requests), requests with bounded answers, streamed downloads and multipart
 * uploads, and the one mapping from HTTP status to IMGSTORE_E* codes. What the answers mean,
 * and whether to believe them, is verify.c's business; where the server is and which token
 * to send is the caller's (cli/remote.c resolves flags, environment and config file).
 * Moved from cli/remote_http.c (#11).
 */
#include "client/client_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_MAX (64u * 1024)

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

static char *dup_or_null(const char *text, int *err)
{
    char *copy = text ? strdup(text) : NULL;

    if (text && !copy)
        *err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return copy;
}

int imgstore_client_open(imgstore_client **out, const imgstore_client_opts *opts)
{
    imgstore_client *client = NULL;
    int err = 0;

    *out = NULL;
    if (!opts)
        return imgstore_error_set(IMGSTORE_EINVALID, "client: no options");
    if (!(client = calloc(1, sizeof(*client))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    client->url = dup_or_null(opts->server_url, &err);
    client->token = dup_or_null(opts->token, &err);
    client->pin = dup_or_null(opts->trust_policy_sha256, &err);
    client->state_dir = dup_or_null(opts->state_dir, &err);
    client->ca_file = dup_or_null(opts->tls_ca_file, &err);
    client->progress = opts->progress;
    client->progress_payload = opts->progress_payload;
    client->stop = opts->stop;
    if (err < 0)
        goto done;
    if (!client->url || !*client->url) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "no server URL");
        goto done;
    }
    if (strncmp(client->url, "http://", 7) != 0 && strncmp(client->url, "https://", 8) != 0) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "server '%s': expected an http:// or https:// URL", client->url);
        goto done;
    }
    for (size_t len = strlen(client->url); len > 0 && client->url[len - 1] == '/'; len--)
        client->url[len - 1] = '\0';
    /* the token goes into a header line: a newline in it would forge other headers */
    if (client->token && client->token[strcspn(client->token, "\r\n")]) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "token: contains a line break");
        goto done;
    }
    if (client->pin && !is_hex64(client->pin)) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "trust policy pin: expected 64 lower-case hex digits");
        goto done;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(client->curl = curl_easy_init())) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot initialise libcurl");
        goto done;
    }
    *out = client;
    client = NULL;
done:
    imgstore_client_free(client);
    return err;
}

void imgstore_client_free(imgstore_client *client)
{
    if (!client)
        return;
    if (client->curl) {
        curl_easy_cleanup(client->curl);
        curl_global_cleanup();
    }
    imgstore_policy_free(client->policy);
    free(client->url);
    free(client->token);
    free(client->pin);
    free(client->state_dir);
    free(client->ca_file);
    free(client);
}

const char *imgstore_client_url(const imgstore_client *client)
{
    return client->url;
}

bool imgstore_client_offline(const imgstore_client *client)
{
    return client->last_result != CURLE_OK;
}

void imgstore_client_set_stop(imgstore_client *client, const volatile sig_atomic_t *stop)
{
    client->stop = stop;
}

void imgstore_client_set_progress(imgstore_client *client, imgstore_progress_fn progress,
                                  void *payload, uint64_t base, uint64_t total)
{
    client->progress = progress;
    client->progress_payload = payload;
    client->progress_base = base;
    client->progress_total = total;
}

/* ---- requests ------------------------------------------------------------------------- */

typedef struct {
    imgstore_client__response *resp;
    size_t cap;
    bool too_large;
    imgstore_client__body_fn body; /* streaming downloads: 2xx bodies go here */
    void *body_payload;
    int body_err;
    imgstore_client *client;
} transfer;

static int xferinfo(void *payload, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                    curl_off_t ulnow)
{
    imgstore_client *client = payload;

    if (client->stop && *client->stop)
        return 1;
    if (client->progress) {
        uint64_t now = (uint64_t)(ulnow > 0 ? ulnow : dlnow);
        uint64_t total = client->progress_total ? client->progress_total
                                                : (uint64_t)(ultotal > 0 ? ultotal : dltotal);

        client->progress(client->progress_base + now, total, client->progress_payload);
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

    curl_easy_getinfo(t->client->curl, CURLINFO_RESPONSE_CODE, &status);
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
static int prepare(imgstore_client *client, struct curl_slist **headers, const char *path,
                   transfer *t)
{
    char *url = imgstore_strfmt("%s%s", client->url, path), *auth = NULL;

    if (!url)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    curl_easy_reset(client->curl);
    curl_easy_setopt(client->curl, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(client->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(client->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(client->curl, CURLOPT_USERAGENT, "imgstore/" IMGSTORE_VERSION);
    curl_easy_setopt(client->curl, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a server that stops sending for two minutes is gone (long-polls answer within 60 s) */
    curl_easy_setopt(client->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(client->curl, CURLOPT_LOW_SPEED_TIME, 120L);
    curl_easy_setopt(client->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(client->curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(client->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(client->curl, CURLOPT_XFERINFOFUNCTION, xferinfo);
    curl_easy_setopt(client->curl, CURLOPT_XFERINFODATA, client);
    if (client->ca_file)
        curl_easy_setopt(client->curl, CURLOPT_CAINFO, client->ca_file);
    if (client->token) {
        if (!(auth = imgstore_strfmt("Authorization: Bearer %s", client->token)))
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        *headers = curl_slist_append(*headers, auth);
        free(auth);
    }
    return 0;
}

static int perform(imgstore_client *client, const char *method, const char *path, transfer *t)
{
    CURLcode rc = curl_easy_perform(client->curl);

    client->last_result = rc;

    curl_easy_getinfo(client->curl, CURLINFO_RESPONSE_CODE, &t->resp->status);
    if (t->body_err < 0)
        return t->body_err;
    if (t->too_large)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s %s: the server's answer is over %zu bytes",
                                  method, path, t->cap);
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        return imgstore_error_set(IMGSTORE_ERROR, "%s %s: interrupted", method, path);
    if (rc != CURLE_OK)
        return imgstore_error_set(IMGSTORE_ERROR, "%s %s%s: %s", method, client->url, path,
                                  curl_easy_strerror(rc));
    return 0;
}

int imgstore_client__call(imgstore_client *client, const char *method, const char *path,
                          const char *json, size_t cap, imgstore_client__response *resp)
{
    struct curl_slist *headers = NULL;
    transfer t = {resp, cap, false, NULL, NULL, 0, client};
    int err;

    memset(resp, 0, sizeof(*resp));
    if ((err = prepare(client, &headers, path, &t)) < 0)
        goto done;
    if (json) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(client->curl, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(client->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json));
    }
    if (strcmp(method, "GET") != 0)
        curl_easy_setopt(client->curl, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0 && !json) {
        curl_easy_setopt(client->curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(client->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    curl_easy_setopt(client->curl, CURLOPT_HTTPHEADER, headers);
    err = perform(client, method, path, &t);
done:
    curl_slist_free_all(headers);
    if (err < 0)
        imgstore_client__response_free(resp);
    return err;
}

void imgstore_client__response_free(imgstore_client__response *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

/* The server's error message, made one printable line. */
static void server_message(char *out, size_t cap, const imgstore_client__response *resp)
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

int imgstore_client__status_error(const imgstore_client *client, const char *path,
                                  const imgstore_client__response *resp)
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
                                  client->url, *msg ? ": " : "", msg);
    case 403:
        return imgstore_error_set(IMGSTORE_ERROR, "%s: forbidden (HTTP 403)%s%s", client->url,
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
    return imgstore_error_set(code, "%s%s: HTTP %ld", client->url, path, resp->status);
}

int imgstore_client__get_bytes(char **out, size_t *len_out, imgstore_client *client,
                               const char *path, size_t cap)
{
    imgstore_client__response resp;
    int err;

    *out = NULL;
    *len_out = 0;
    if ((err = imgstore_client__call(client, "GET", path, NULL, cap, &resp)) < 0)
        return err;
    if ((err = imgstore_client__status_error(client, path, &resp)) == 0) {
        if (!resp.body && !(resp.body = calloc(1, 1)))
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        *out = resp.body;
        *len_out = resp.len;
        resp.body = NULL;
    }
    imgstore_client__response_free(&resp);
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

int imgstore_client_get_json(json_t **out, imgstore_client *client, const char *path)
{
    char *body = NULL;
    size_t len = 0;
    int err;

    *out = NULL;
    if ((err = imgstore_client__get_bytes(&body, &len, client, path, IMGSTORE_CLIENT__JSON_MAX)) ==
        0)
        err = parse_json(out, path, body, len);
    free(body);
    return err;
}

int imgstore_client__send_json(json_t **out, long *status_out, imgstore_client *client,
                               const char *method, const char *path, json_t *body)
{
    imgstore_client__response resp;
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int err;

    json_decref(body);

    *out = NULL;
    if (body && !text)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    err = imgstore_client__call(client, method, path, text, IMGSTORE_CLIENT__JSON_MAX, &resp);
    free(text);
    if (err < 0)
        return err;
    if (status_out)
        *status_out = resp.status;
    if ((err = imgstore_client__status_error(client, path, &resp)) == 0)
        err = parse_json(out, path, resp.body, resp.len);
    imgstore_client__response_free(&resp);
    return err;
}

int imgstore_client__download(imgstore_client *client, const char *path, uint64_t offset,
                              imgstore_client__body_fn body, void *payload)
{
    struct curl_slist *headers = NULL;
    imgstore_client__response resp;
    transfer t = {&resp, IMGSTORE_CLIENT__ERROR_MAX, false, body, payload, 0, client};
    char range[64];
    int err;

    memset(&resp, 0, sizeof(resp));
    if ((err = prepare(client, &headers, path, &t)) < 0)
        goto done;
    if (offset > 0) {
        snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)offset);
        headers = curl_slist_append(headers, range);
    }
    curl_easy_setopt(client->curl, CURLOPT_HTTPHEADER, headers);
    if ((err = perform(client, "GET", path, &t)) == 0)
        err = imgstore_client__status_error(client, path, &resp);
done:
    curl_slist_free_all(headers);
    imgstore_client__response_free(&resp);
    return err;
}

int imgstore_client__upload(json_t **out, imgstore_client *client, const char *path,
                            const imgstore_client__form_field *fields, size_t field_count,
                            const imgstore_client__upload_file *files, size_t count)
{
    struct curl_slist *headers = NULL;
    imgstore_client__response resp;
    transfer t = {&resp, IMGSTORE_CLIENT__JSON_MAX, false, NULL, NULL, 0, client};
    curl_mime *mime = NULL;
    int err;

    *out = NULL;
    memset(&resp, 0, sizeof(resp));
    if ((err = prepare(client, &headers, path, &t)) < 0)
        goto done;
    if (!(mime = curl_mime_init(client->curl))) {
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
    curl_easy_setopt(client->curl, CURLOPT_MIMEPOST, mime);
    /* no "Expect: 100-continue" round trip: the server reads or refuses the body as it comes */
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(client->curl, CURLOPT_HTTPHEADER, headers);
    if ((err = perform(client, "POST", path, &t)) == 0 &&
        (err = imgstore_client__status_error(client, path, &resp)) == 0)
        err = parse_json(out, path, resp.body, resp.len);
done:
    curl_mime_free(mime);
    curl_slist_free_all(headers);
    imgstore_client__response_free(&resp);
    return err;
}

/* ---- small shared helpers ------------------------------------------------------------- */

int imgstore_client_check_names(const char *image, const char *version, const char *channel)
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

int imgstore_client__mkdirs(const char *path)
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
