/*
 * The daemon: listening (libmicrohttpd, a pool of epoll threads that never block; work that
 * may block runs on the worker pool of workers.c while its connection is suspended),
 * routing a request to its handler and to the thread it runs on, request bodies, the
 * per-request log line and metrics, the pool of store handles, and the drain on stop. What
 * each route answers lives in route_*.c.
 */
#include "server/server_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

double imgstore_server__now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- store handles ---------------------------------------------------------------------- */

int imgstore_server__store(imgstore_store **out, imgstore_server__request *req)
{
    imgstore_server *server = req->server;
    int err = 0;

    if (!req->store) {
        pthread_mutex_lock(&server->pool_lock);
        if (server->pool_count)
            req->store = server->pool[--server->pool_count];
        pthread_mutex_unlock(&server->pool_lock);
        if (!req->store && (err = imgstore_store_open(&req->store, server->config->repo)) == 0)
            imgstore_store_set_auto_gc(req->store, false); /* maintenance.c packs */
    }
    *out = req->store;
    return err;
}

void imgstore_server__store_put(imgstore_server *server, imgstore_store *store)
{
    if (!store)
        return;
    pthread_mutex_lock(&server->pool_lock);
    if (server->pool_count < IMGSTORE_SERVER_POOL_MAX) {
        server->pool[server->pool_count++] = store;
        store = NULL;
    }
    pthread_mutex_unlock(&server->pool_lock);
    imgstore_store_free(store);
}

void imgstore_server__channels_changed(imgstore_server *server)
{
    pthread_mutex_lock(&server->lock);
    server->generation++;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
}

bool imgstore_server__suspend(imgstore_server *server, struct MHD_Connection *conn)
{
    bool ok;

    pthread_mutex_lock(&server->lock);
    ok = !server->closing;
    if (ok)
        server->suspended++;
    pthread_mutex_unlock(&server->lock);
    if (ok)
        MHD_suspend_connection(conn);
    return ok;
}

void imgstore_server__resume(imgstore_server *server, struct MHD_Connection *conn)
{
    MHD_resume_connection(conn);
    pthread_mutex_lock(&server->lock);
    server->suspended--;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
}

const char *imgstore_server__actor(const imgstore_server__request *req)
{
    return req->token ? req->token->name : "anonymous";
}

/* ---- routing ---------------------------------------------------------------------------- */

/* BODY_SIGNED: a JSON body carrying signatures the client made; a signature the store
 * refuses is the request's fault there (403 untrusted_key, not 500: http.c) */
/* BODY_BLOB: bytes of an OCI blob upload, staged to its session's file (oci.c);
 * BODY_MANIFEST: an OCI manifest, gathered as JSON bodies are, up to its own cap;
 * BODY_FORM: the status page's login form, gathered as JSON bodies are */
typedef enum {
    BODY_NONE,
    BODY_JSON,
    BODY_SIGNED,
    BODY_UPLOAD,
    BODY_BLOB,
    BODY_MANIFEST,
    BODY_FORM
} body_kind;

typedef struct {
    imgstore_server__route route;
    const char *method; /* NULL: GET or HEAD */
    unsigned scope;     /* any one of these scopes; 0: no token needed */
    body_kind body;
    enum MHD_Result (*handler)(imgstore_server__request *req);
} route_entry;

static enum MHD_Result route_healthz(imgstore_server__request *req)
{
    return imgstore_server__reply_json(req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

static enum MHD_Result route_readyz(imgstore_server__request *req)
{
    imgstore_store *store;
    char **names = NULL;
    size_t count = 0;
    int err;

    if (req->server->stopping)
        return imgstore_server__reply_status(req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                                             "the server is shutting down");
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_list_images(&names, &count, store)) < 0)
        return imgstore_server__reply_status(req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                                             "store not readable: %s", imgstore_error_last());
    imgstore_strings_free(names, count);
    return imgstore_server__reply_json(req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ready"));
}

/* GET /v1/mirror: what a read replica last did (docs/server.md, "Read replicas"). */
static enum MHD_Result route_mirror(imgstore_server__request *req)
{
    if (!req->server->mirror)
        return imgstore_server__reply_status(req, MHD_HTTP_NOT_FOUND, "not_found",
                                             "this server is not a read replica (mirror_of)");
    return imgstore_server__reply_json(req, MHD_HTTP_OK,
                                       imgstore_server__mirror_status(req->server->mirror));
}

/*
 * A replica takes nothing but its primary's verified commits: every write (all of them are
 * POSTs) is sent to the primary with a 307 when mirror_primary_http names it, which keeps
 * the method and body as curl and libcurl clients follow it, else refused with 403 naming
 * the primary. Before auth: the primary decides who may write.
 */
static enum MHD_Result refuse_write(imgstore_server__request *req)
{
    const imgstore_server_config *config = req->server->config;
    const char *base = config->mirror_primary_http;

    if (base) {
        size_t base_len = strlen(base);

        while (base_len > 0 && base[base_len - 1] == '/')
            base_len--;
        if (base_len + strlen(req->url) < sizeof(req->extra_header_value)) {
            memcpy(req->extra_header_value, base, base_len);
            strcpy(req->extra_header_value + base_len, req->url); /* fits: checked above */
            req->extra_header_name = MHD_HTTP_HEADER_LOCATION;
            return imgstore_server__reply_status(
                req, MHD_HTTP_TEMPORARY_REDIRECT, "read_only",
                "this server is a read replica of %s: write to the primary at %s",
                config->mirror_of, req->extra_header_value);
        }
    }
    return imgstore_server__reply_status(req, MHD_HTTP_FORBIDDEN, "read_only",
                                         "this server is a read replica of %s: write to the "
                                         "primary%s%s",
                                         config->mirror_of, base ? " at " : "", base ? base : "");
}

static enum MHD_Result route_metrics(imgstore_server__request *req)
{
    char *text = NULL;
    struct MHD_Response *response;
    size_t len;

    if (imgstore_server__metrics_render(&text, req->server->metrics,
                                        imgstore_server__cache_bytes(req->server->cache),
                                        imgstore_server__answers_bytes(req->server->answers)) < 0)
        return imgstore_server__reply_error(req, IMGSTORE_ERROR);
    len = strlen(text);
    response = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    return imgstore_server__queue(req, MHD_HTTP_OK, response, len);
}

/*
 * Which route a path is: literal segments must match exactly, parameter segments ("*") are
 * decoded and checked by the route (a bad name is 400, not 404).
 */
/* What a deploy reads before it writes (the trust policy, the manifest and its signatures,
 * the channel's state): a deploy token may read these without the read scope. */
#define READ_FOR_DEPLOY (IMGSTORE_SERVER_SCOPE_READ | IMGSTORE_SERVER_SCOPE_DEPLOY)

static const struct {
    const char *pattern[IMGSTORE_SERVER_MAX_SEGMENTS];
    size_t count;
    route_entry get, post, put, patch, del;
} routes[] = {
    {{"healthz"}, 1, {ROUTE_HEALTHZ, NULL, 0, BODY_NONE, route_healthz}, {0}, {0}, {0}, {0}},
    {{"readyz"}, 1, {ROUTE_READYZ, NULL, 0, BODY_NONE, route_readyz}, {0}, {0}, {0}, {0}},
    {{"metrics"},
     1,
     {ROUTE_METRICS, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE, route_metrics},
     {0},
     {0},
     {0},
     {0}},
    {{"v1", "images"},
     2,
     {ROUTE_IMAGES, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE, imgstore_server__route_images},
     {0},
     {0},
     {0},
     {0}},
    {{"v1", "images", "*"},
     3,
     {ROUTE_IMAGE, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE, imgstore_server__route_image},
     {ROUTE_UPLOAD, "POST", IMGSTORE_SERVER_SCOPE_PUSH, BODY_UPLOAD, NULL},
     {0},
     {0},
     {0}},
    /* before {version, {0}, {0}, {0}}: GET of a version named "history" is its .../manifest
       (docs/api.md) */
    {{"v1", "images", "*", "history"},
     4,
     {ROUTE_HISTORY, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE,
      imgstore_server__route_image_history},
     {ROUTE_UPLOAD, "POST", IMGSTORE_SERVER_SCOPE_PUSH, BODY_UPLOAD, NULL},
     {0},
     {0},
     {0}},
    {{"v1", "images", "*", "*"},
     4,
     {ROUTE_VERSION, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE, imgstore_server__route_version},
     {ROUTE_UPLOAD, "POST", IMGSTORE_SERVER_SCOPE_PUSH, BODY_UPLOAD, NULL},
     {0},
     {0},
     {0}},
    {{"v1", "images", "*", "*", "files", "*"},
     6,
     {ROUTE_FILE, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE, imgstore_server__route_file},
     {0},
     {0},
     {0},
     {0}},
    {{"v1", "channels", "*", "*"},
     4,
     {ROUTE_CHANNEL, NULL, READ_FOR_DEPLOY, BODY_NONE, imgstore_server__route_channel},
     {0},
     {0},
     {0},
     {0}},
    {{"v1", "channels", "*", "*", "history"},
     5,
     {ROUTE_HISTORY, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE, imgstore_server__route_history},
     {0},
     {0},
     {0},
     {0}},
    {{"v1", "channels", "*", "*", "deploy"},
     5,
     {0},
     {ROUTE_DEPLOY, "POST", IMGSTORE_SERVER_SCOPE_DEPLOY, BODY_JSON, imgstore_server__route_deploy},
     {0},
     {0},
     {0}},
    {{"v1", "channels", "*", "*", "rollback"},
     5,
     {0},
     {ROUTE_ROLLBACK, "POST", IMGSTORE_SERVER_SCOPE_DEPLOY, BODY_JSON,
      imgstore_server__route_rollback},
     {0},
     {0},
     {0}},
    {{"v1", "mirror"},
     2,
     {ROUTE_MIRROR, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE, route_mirror},
     {0},
     {0},
     {0},
     {0}},
    /* reports: a deploy token may post them too (an agent that may roll back) */
    {{"v1", "channels", "*", "*", "reports"},
     5,
     {ROUTE_REPORTS, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE, imgstore_server__route_reports},
     {ROUTE_REPORTS, "POST", IMGSTORE_SERVER_SCOPE_REPORT | IMGSTORE_SERVER_SCOPE_DEPLOY, BODY_JSON,
      imgstore_server__route_report_post},
     {0},
     {0},
     {0}},
    {{"v1", "trust"},
     2,
     {ROUTE_TRUST, NULL, READ_FOR_DEPLOY, BODY_NONE, imgstore_server__route_trust},
     {0},
     {0},
     {0},
     {0}},
    {{"v1", "images", "*", "*", "manifest"},
     5,
     {ROUTE_MANIFEST, NULL, READ_FOR_DEPLOY, BODY_NONE, imgstore_server__route_manifest},
     {0},
     {0},
     {0},
     {0}},
    {{"v1", "images", "*", "*", "signatures"},
     5,
     {ROUTE_SIGNATURES, NULL, READ_FOR_DEPLOY, BODY_NONE, imgstore_server__route_signatures},
     {ROUTE_SIGNATURES, "POST", IMGSTORE_SERVER_SCOPE_PUSH, BODY_SIGNED,
      imgstore_server__route_sign},
     {0},
     {0},
     {0}},
    {{"v1", "channels", "*", "*", "signed"},
     5,
     {ROUTE_CHANNEL_SIGNED, NULL, READ_FOR_DEPLOY, BODY_NONE,
      imgstore_server__route_channel_signed},
     {ROUTE_CHANNEL_SIGNED, "POST", IMGSTORE_SERVER_SCOPE_DEPLOY, BODY_SIGNED,
      imgstore_server__route_channel_put_signed},
     {0},
     {0},
     {0}},
    /* the OCI distribution API (route_oci.c, docs/oci.md); a ping checks the token itself */
    {{"v2"},
     1,
     {ROUTE_OCI_BASE, NULL, 0, BODY_NONE, imgstore_server__route_oci_base},
     {0},
     {0},
     {0},
     {0}},
    {{"v2", ""},
     2,
     {ROUTE_OCI_BASE, NULL, 0, BODY_NONE, imgstore_server__route_oci_base},
     {0},
     {0},
     {0},
     {0}},
    {{"v2", "token"},
     2,
     {ROUTE_OCI_TOKEN, NULL, 0, BODY_NONE, imgstore_server__route_oci_token},
     {0},
     {0},
     {0},
     {0}},
    {{"v2", "*", "manifests", "*"},
     4,
     {ROUTE_OCI_MANIFEST, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE,
      imgstore_server__route_oci_manifest},
     {0},
     {ROUTE_OCI_MANIFEST, "PUT", IMGSTORE_SERVER_SCOPE_PUSH, BODY_MANIFEST,
      imgstore_server__route_oci_manifest_put},
     {0},
     {0}},
    {{"v2", "*", "tags", "list"},
     4,
     {ROUTE_OCI_TAGS, NULL, IMGSTORE_SERVER_SCOPE_READ, BODY_NONE, imgstore_server__route_oci_tags},
     {0},
     {0},
     {0},
     {0}},
    /* HEAD of a blob is how a pushing client asks whether to send it: push may ask too */
    {{"v2", "*", "blobs", "uploads"},
     4,
     {0},
     {ROUTE_OCI_UPLOAD, "POST", IMGSTORE_SERVER_SCOPE_PUSH, BODY_BLOB,
      imgstore_server__route_oci_upload},
     {0},
     {0},
     {0}},
    {{"v2", "*", "blobs", "*"},
     4,
     {ROUTE_OCI_BLOB, NULL, IMGSTORE_SERVER_SCOPE_READ | IMGSTORE_SERVER_SCOPE_PUSH, BODY_NONE,
      imgstore_server__route_oci_blob},
     {0},
     {0},
     {0},
     {0}},
    {{"v2", "*", "blobs", "uploads", "*"},
     5,
     {ROUTE_OCI_UPLOAD, NULL, IMGSTORE_SERVER_SCOPE_PUSH, BODY_NONE,
      imgstore_server__route_oci_upload},
     {ROUTE_OCI_UPLOAD, "POST", IMGSTORE_SERVER_SCOPE_PUSH, BODY_BLOB,
      imgstore_server__route_oci_upload},
     {ROUTE_OCI_UPLOAD, "PUT", IMGSTORE_SERVER_SCOPE_PUSH, BODY_BLOB,
      imgstore_server__route_oci_upload},
     {ROUTE_OCI_UPLOAD, "PATCH", IMGSTORE_SERVER_SCOPE_PUSH, BODY_BLOB,
      imgstore_server__route_oci_upload},
     {ROUTE_OCI_UPLOAD, "DELETE", IMGSTORE_SERVER_SCOPE_PUSH, BODY_NONE,
      imgstore_server__route_oci_upload}},
    /* the status page (route_ui.c): its handlers authorise themselves (a cookie, or a
     * redirect to the login form), so scope 0 here; a form body is capped as JSON is */
    {{""}, 1, {ROUTE_UI, NULL, 0, BODY_NONE, imgstore_server__route_ui}, {0}, {0}, {0}, {0}},
    {{"ui"}, 1, {ROUTE_UI, NULL, 0, BODY_NONE, imgstore_server__route_ui}, {0}, {0}, {0}, {0}},
    {{"ui", ""}, 2, {ROUTE_UI, NULL, 0, BODY_NONE, imgstore_server__route_ui}, {0}, {0}, {0}, {0}},
    {{"ui", "style.css"},
     2,
     {ROUTE_UI_LOGIN, NULL, 0, BODY_NONE, imgstore_server__route_ui_style},
     {0},
     {0},
     {0},
     {0}},
    {{"ui", "login"},
     2,
     {ROUTE_UI_LOGIN, NULL, 0, BODY_NONE, imgstore_server__route_ui_login_form},
     {ROUTE_UI_LOGIN, "POST", 0, BODY_FORM, imgstore_server__route_ui_login},
     {0},
     {0},
     {0}},
    {{"ui", "logout"},
     2,
     {0},
     {ROUTE_UI_LOGIN, "POST", 0, BODY_FORM, imgstore_server__route_ui_logout},
     {0},
     {0},
     {0}},
    {{"ui", "images", "*"},
     3,
     {ROUTE_UI, NULL, 0, BODY_NONE, imgstore_server__route_ui},
     {0},
     {0},
     {0},
     {0}},
    {{"ui", "images", "*", "*"},
     4,
     {ROUTE_UI, NULL, 0, BODY_NONE, imgstore_server__route_ui},
     {0},
     {0},
     {0},
     {0}},
    {{"ui", "channels", "*", "*"},
     4,
     {ROUTE_UI, NULL, 0, BODY_NONE, imgstore_server__route_ui},
     {0},
     {0},
     {0},
     {0}},
};

/* Split the raw path into segments; literal ones are compared raw, parameters decoded. */
static int split_path(imgstore_server__request *req, const char *url)
{
    const char *at = url;

    if (*at != '/')
        return -1;
    at++;
    while (true) {
        size_t len = strcspn(at, "/");

        if (req->segment_count == IMGSTORE_SERVER_MAX_SEGMENTS)
            return -1;
        if (!(req->segments[req->segment_count] = imgstore_server__decode_segment(at, len)))
            return -2;
        req->segment_count++;
        at += len;
        if (!*at)
            return 0;
        at++;
    }
}

static const route_entry *match_route(imgstore_server__request *req, bool *method_ok)
{
    bool get = strcmp(req->method, MHD_HTTP_METHOD_GET) == 0 ||
               strcmp(req->method, MHD_HTTP_METHOD_HEAD) == 0;

    *method_ok = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        bool match = routes[i].count == req->segment_count;

        for (size_t s = 0; match && s < routes[i].count; s++) {
            if (strcmp(routes[i].pattern[s], "*") != 0 &&
                strcmp(routes[i].pattern[s], req->segments[s]) != 0)
                match = false;
        }
        if (!match)
            continue;
        if (get && routes[i].get.route) {
            *method_ok = true;
            return &routes[i].get;
        }
        const route_entry *others[] = {&routes[i].post, &routes[i].put, &routes[i].patch,
                                       &routes[i].del};
        for (size_t m = 0; m < sizeof(others) / sizeof(others[0]); m++) {
            if (others[m]->route && strcmp(others[m]->method, req->method) == 0) {
                *method_ok = true;
                return others[m];
            }
        }
        if (routes[i].get.route)
            return &routes[i].get;
        for (size_t m = 0; m < sizeof(others) / sizeof(others[0]); m++) {
            if (others[m]->route)
                return others[m];
        }
    }
    return NULL;
}

/*
 * libmicrohttpd hands the path over as a C string, so a raw NUL in the request line cuts it
 * short ("/v1/images/demo\0/1.0" would be read as "/v1/images/demo"). The request line is
 * parsed in place: the path runs from url to the '?' just before the first query argument,
 * or else to the space before the version string. A NUL as the very last byte of a path without
 * a query looks like an empty query ("?") here; nothing is cut off then.
 */
static enum MHD_Result note_first_argument(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value)
{
    const char **first = cls;

    (void)kind;
    (void)value;
    if (!*first || (uintptr_t)key < (uintptr_t)*first)
        *first = key;
    return MHD_YES;
}

static bool path_has_nul(struct MHD_Connection *conn, const char *url, const char *version)
{
    uintptr_t start = (uintptr_t)url, end = (uintptr_t)version;
    size_t len = strlen(url);
    const char *first = NULL;

    if (!version || !*version || end <= start + len)
        return false; /* the version is not in the request line's buffer: nothing to compare */
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, note_first_argument, &first);
    if (first && (uintptr_t)first > start && (uintptr_t)first < end)
        return (uintptr_t)first - 1 != start + len;
    /* no query arguments: at most an empty query ("?") follows the path */
    return end - 1 - start > len + 1;
}

/* Headers that decide how a request is framed or who sends it must not be ambiguous. */
struct header_counts {
    unsigned content_length;
    unsigned authorization;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct header_counts *counts = cls;

    (void)kind;
    (void)value;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        counts->content_length++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0)
        counts->authorization++;
    return MHD_YES;
}

static enum MHD_Result begin_request(imgstore_server__request *req, const char *url,
                                     const route_entry **entry_out)
{
    const imgstore_server_config *config = req->server->config;
    const route_entry *entry;
    enum MHD_Result result = MHD_YES;
    const char *length_header;
    bool method_ok;
    int split;

    struct header_counts counts = {0, 0};

    *entry_out = NULL;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_header, &counts);
    if (counts.content_length > 1)
        return imgstore_server__reply_status(req, MHD_HTTP_BAD_REQUEST, "invalid",
                                             "more than one Content-Length header");
    if (counts.authorization > 1)
        return imgstore_server__reply_status(req, MHD_HTTP_BAD_REQUEST, "invalid",
                                             "more than one Authorization header");
    if (req->path_has_nul)
        return imgstore_server__reply_status(req, MHD_HTTP_BAD_REQUEST, "invalid",
                                             "a NUL byte in the path");
    if (strlen(url) > config->max_url_bytes)
        return imgstore_server__reply_status(req, MHD_HTTP_URI_TOO_LONG, "too_large",
                                             "the URL is longer than %llu bytes",
                                             (unsigned long long)config->max_url_bytes);
    /* /v2 answers its errors in the OCI format, from the first one on */
    req->oci = strncmp(url, "/v2/", 4) == 0 || strcmp(url, "/v2") == 0;
    if ((split = split_path(req, url)) < 0)
        return split == -2 ? imgstore_server__reply_status(req, MHD_HTTP_BAD_REQUEST, "invalid",
                                                           "malformed percent-encoding in the path")
                           : imgstore_server__reply_status(req, MHD_HTTP_NOT_FOUND, "not_found",
                                                           "no such resource");
    if (!(entry = match_route(req, &method_ok)))
        return imgstore_server__reply_status(req, MHD_HTTP_NOT_FOUND, "not_found",
                                             "no such resource");
    req->route = entry->route;
    req->client_signed = entry->body == BODY_SIGNED;
    if (!method_ok)
        return imgstore_server__reply_status(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                                             "%s is not allowed here", req->method);
    if (req->server->mirror && entry->method)
        return refuse_write(req);
    if (entry->scope && !imgstore_server__authorize(req, entry->scope, &result))
        return result;
    /* refuse an oversize body before reading a byte of it */
    length_header =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    req->body_cap =
        entry->body == BODY_MANIFEST ? IMGSTORE_OCI_MANIFEST_MAX_BYTES : config->max_json_bytes;
    if (length_header && entry->body != BODY_NONE) {
        unsigned long long length = strtoull(length_header, NULL, 10);
        uint64_t cap = entry->body == BODY_UPLOAD || entry->body == BODY_BLOB
                           ? config->max_upload_bytes
                           : req->body_cap;

        if (length > cap)
            return imgstore_server__reply_status(req, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
                                                 "the request body is larger than %llu bytes",
                                                 (unsigned long long)cap);
    }
    req->handler = entry->handler;
    *entry_out = entry;
    return MHD_YES;
}

/* ---- polling threads and workers --------------------------------------------------------- */

/*
 * Where a request's handler runs. The polling threads serve many connections each, so
 * they only do what cannot block: answers from the answer cache, health and metrics.
 * Everything that reads git on a miss, waits (long-polls, cache fills, stream slots) or
 * writes (uploads, moves, signatures) runs on a worker while its connection is suspended.
 */
typedef enum { RUN_INLINE, RUN_CACHED_INLINE, RUN_WORKER } run_mode;

static run_mode mode_for(const imgstore_server__request *req)
{
    if (strcmp(req->method, MHD_HTTP_METHOD_POST) == 0)
        return RUN_WORKER;
    switch (req->route) {
    case ROUTE_HEALTHZ:
    case ROUTE_METRICS:
    case ROUTE_MIRROR:
    case ROUTE_OCI_BASE:
    case ROUTE_UI_LOGIN: /* the form and the stylesheet: no store read */
        return RUN_INLINE;
    case ROUTE_CHANNEL: /* a watch waits: never on a polling thread */
        if (MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "wait"))
            return RUN_WORKER;
        return RUN_CACHED_INLINE;
    case ROUTE_IMAGES:
    case ROUTE_IMAGE:
    case ROUTE_VERSION:
    case ROUTE_HISTORY:
    case ROUTE_TRUST:
    case ROUTE_MANIFEST:
    case ROUTE_SIGNATURES:
    case ROUTE_CHANNEL_SIGNED:
    case ROUTE_UI:
        return RUN_CACHED_INLINE;
    default:
        return RUN_WORKER;
    }
}

static void run_job(imgstore_server__job *job)
{
    imgstore_server__request *req =
        (imgstore_server__request *)((char *)job - offsetof(imgstore_server__request, job));
    imgstore_server *server = req->server;
    struct MHD_Connection *conn = req->conn;
    enum MHD_Result result;

    imgstore_error_clear();
    if (req->blob_flush)
        result = imgstore_server__oci_blob_flush(req);
    else if (req->held_data)
        result = imgstore_server__upload_data(req, req->held_data, req->held_size);
    else if (req->upload)
        result = imgstore_server__upload_finish(req);
    else
        result = req->handler(req);
    req->held_result = result;
    req->held = true;
    /* from here the polling thread owns req again (and may free it) */
    imgstore_server__resume(server, conn);
}

/* Hand the request to a worker; the polling thread picks its answer up in pick_up(). */
static enum MHD_Result defer(imgstore_server__request *req)
{
    if (!imgstore_server__suspend(req->server, req->conn))
        return MHD_NO; /* the drain is over: the connection is being closed */
    req->on_worker = true;
    req->job.run = run_job;
    imgstore_server__workers_run(req->server->workers, &req->job);
    return MHD_YES;
}

static enum MHD_Result run(imgstore_server__request *req)
{
    enum MHD_Result result;

    switch (mode_for(req)) {
    case RUN_INLINE:
        return req->handler(req);
    case RUN_CACHED_INLINE:
        req->cached_only = true;
        result = req->handler(req);
        req->cached_only = false;
        if (!req->defer)
            return result;
        req->defer = false;
        return defer(req);
    default:
        return defer(req);
    }
}

/* libmicrohttpd calls again after the resume: queue what the worker answered. */
static enum MHD_Result pick_up(imgstore_server__request *req, const char *upload_data,
                               size_t *upload_data_size)
{
    struct MHD_Response *response = req->held_response;
    enum MHD_Result result = req->held_result;

    req->held = false;
    req->on_worker = false;
    req->held_response = NULL;
    if (req->blob_flush) {
        /* the stage is written: the bytes that did not fit go into it now (they are not
         * offered again unless more arrive) */
        req->blob_flush = false;
        if (result == MHD_YES && !req->replied && *upload_data_size &&
            *upload_data_size <= IMGSTORE_SERVER_OCI_STAGE) {
            memcpy(req->blob_stage, upload_data, *upload_data_size);
            req->blob_stage_len = *upload_data_size;
            req->bytes_in += *upload_data_size;
            *upload_data_size = 0;
        }
    }
    if (req->held_data) {
        /* the same bytes are offered again (perhaps with more behind them): the worker
         * consumed held_size of them */
        req->held_data = NULL;
        if (*upload_data_size < req->held_size)
            return MHD_NO;
        *upload_data_size -= req->held_size;
    }
    if (response) {
        if (MHD_queue_response(req->conn, req->held_status, response) != MHD_YES)
            result = MHD_NO;
        MHD_destroy_response(response);
    }
    return result;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    imgstore_server *server = cls;
    imgstore_server__request *req = *con_cls;
    const route_entry *entry = NULL;
    enum MHD_Result result;

    if (!req) {
        if (!(req = calloc(1, sizeof(*req))) || !(req->url = strdup(url))) {
            free(req);
            return MHD_NO;
        }
        req->path_has_nul = path_has_nul(conn, url, version);
        req->server = server;
        req->conn = conn;
        req->method = method;
        req->start = imgstore_server__now();
        *con_cls = req;
        pthread_mutex_lock(&server->lock);
        server->inflight++;
        pthread_mutex_unlock(&server->lock);
        /*
         * libmicrohttpd closes the connection after an answer queued on this first call (it
         * may not have read the body). Only requests with a body are decided now, so that a
         * refused upload is not read at all; the rest are answered on the next call and
         * keep their connection alive.
         */
        if (strcmp(method, MHD_HTTP_METHOD_POST) != 0 && strcmp(method, MHD_HTTP_METHOD_PUT) != 0 &&
            strcmp(method, "PATCH") != 0)
            return MHD_YES;
        imgstore_error_clear();
        req->begun = true;
        result = begin_request(req, url, &entry);
        if (req->replied || !entry)
            return result;
        if (entry->body == BODY_UPLOAD)
            return imgstore_server__upload_begin(req);
        if (entry->body == BODY_BLOB)
            return imgstore_server__oci_blob_begin(req);
        return MHD_YES; /* BODY_JSON, BODY_SIGNED, BODY_MANIFEST, BODY_FORM: wait for the body */
    }
    if (req->held)
        return pick_up(req, upload_data, upload_data_size);
    if (*upload_data_size && req->oci_session && !req->replied) {
        size_t size = *upload_data_size;

        if (req->blob_stage_len + size > IMGSTORE_SERVER_OCI_STAGE) {
            if (req->blob_stage_len == 0)
                return MHD_NO;      /* more than a stage at once: not what libmicrohttpd does */
            req->blob_flush = true; /* a worker writes the stage; these bytes wait */
            return defer(req);
        }
        memcpy(req->blob_stage + req->blob_stage_len, upload_data, size);
        req->blob_stage_len += size;
        req->bytes_in += size;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t size = *upload_data_size;

        if (req->upload && !req->replied &&
            imgstore_server__upload_buffer(req, upload_data, upload_data_size))
            return MHD_YES;
        if (req->upload && !req->replied) {
            /* stored (hashed, compressed, written) on a worker; the bytes stay in
             * libmicrohttpd's buffer, untouched while the connection is suspended */
            req->bytes_in += size;
            req->held_data = upload_data;
            req->held_size = size;
            return defer(req);
        }
        *upload_data_size = 0;
        req->bytes_in += size;
        if (req->replied || !req->begun)
            return MHD_YES; /* answered, or a body nobody asked for: dropped */
        /* past the cap without a Content-Length: no answer is possible mid-body, cut it off */
        if (req->body_len + size > req->body_cap) {
            req->status = MHD_HTTP_CONTENT_TOO_LARGE;
            return MHD_NO;
        }
        char *grown = realloc(req->body, req->body_len + size + 1);
        if (!grown)
            return MHD_NO;
        req->body = grown;
        memcpy(req->body + req->body_len, upload_data, size);
        req->body_len += size;
        req->body[req->body_len] = '\0';
        return MHD_YES;
    }
    if (req->replied)
        return MHD_YES;
    if (!req->begun) {
        imgstore_error_clear();
        req->begun = true;
        result = begin_request(req, url, &entry);
        if (req->replied || !entry)
            return result;
        return run(req);
    }
    return defer(req); /* the whole body has arrived: upload_finish or a JSON handler */
}

/* Printable ASCII only in the log: a path is client bytes (no log-line injection). */
static void sanitize(char *text)
{
    for (; *text; text++) {
        if (*text < 0x21 || *text > 0x7e || *text == '"')
            *text = '?';
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    imgstore_server *server = cls;
    imgstore_server__request *req = *con_cls;
    double seconds;

    (void)conn;
    if (!req)
        return;
    seconds = imgstore_server__now() - req->start;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && req->status < 400) {
        /* the client went away or the stream aborted: the status sent is not the outcome */
        if (!req->status)
            req->status = 499;
    }
    sanitize(req->url);
    imgstore_log(IMGSTORE_LOG_INFO, "server",
                 "request method=%s path=%s status=%u bytes=%llu bytes_in=%llu "
                 "duration_ms=%.1f actor=%s%s",
                 req->method, req->url, req->status, (unsigned long long)req->bytes_out,
                 (unsigned long long)req->bytes_in, seconds * 1000, imgstore_server__actor(req),
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=true");
    imgstore_server__metrics_request(server->metrics, req->route, req->status, seconds,
                                     req->bytes_out, req->bytes_in);
    if (req->held_response) /* resumed, but the client was gone before it was queued */
        MHD_destroy_response(req->held_response);
    /* an upload not committed is abandoned here: nothing of it becomes visible */
    imgstore_server__upload_free(server, req->upload);
    imgstore_server__oci_request_done(req, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    free(req->blob_stage);
    imgstore_server__store_put(server, req->store);
    for (size_t i = 0; i < req->segment_count; i++)
        free(req->segments[i]);
    free(req->answer_key);
    free(req->body);
    free(req->url);
    free(req);
    *con_cls = NULL;
    pthread_mutex_lock(&server->lock);
    server->inflight--;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
}

/* Keep the path percent-encoded: segments are decoded one by one, so that "%2F" stays
 * inside its segment (and fails the name check) instead of becoming a separator. */
static size_t keep_escaped(void *cls, struct MHD_Connection *conn, char *uri)
{
    (void)cls;
    (void)conn;
    return strlen(uri);
}

/* ---- start and stop --------------------------------------------------------------------- */

static int read_pem(char **out, const char *path)
{
    FILE *file = fopen(path, "r");
    char *text = NULL;
    size_t len;

    *out = NULL;
    if (!file)
        return imgstore_error_set(IMGSTORE_EINVALID, "cannot read %s: %s", path, strerror(errno));
    text = calloc(1, 1024 * 1024 + 1);
    len = text ? fread(text, 1, 1024 * 1024, file) : 0;
    fclose(file);
    if (!text)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (len == 0 || len == 1024 * 1024) {
        free(text);
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: empty or larger than 1 MiB", path);
    }
    *out = text;
    return 0;
}

static int parse_listen(struct sockaddr_storage *out, socklen_t *len_out, const char *listen)
{
    struct addrinfo hints = {0}, *found = NULL;
    char host[256];
    const char *port, *colon = strrchr(listen, ':');
    size_t host_len;
    int rc;

    if (!colon || !colon[1] || strlen(listen) >= sizeof(host))
        return imgstore_error_set(IMGSTORE_EINVALID, "listen '%s': expected ADDR:PORT", listen);
    host_len = (size_t)(colon - listen);
    port = colon + 1;
    if (host_len >= 2 && listen[0] == '[' && listen[host_len - 1] == ']') {
        memcpy(host, listen + 1, host_len - 2);
        host[host_len - 2] = '\0';
    } else {
        memcpy(host, listen, host_len);
        host[host_len] = '\0';
    }
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &found)) != 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "listen '%s': %s", listen, gai_strerror(rc));
    memcpy(out, found->ai_addr, found->ai_addrlen);
    *len_out = found->ai_addrlen;
    freeaddrinfo(found);
    return 0;
}

/*
 * Bind and listen here rather than inside libmicrohttpd, so that a busy or forbidden address
 * is reported with its reason. No SO_REUSEPORT: a second server on a port in use must fail,
 * not share the traffic; SO_REUSEADDR only lets a restart bind over TIME_WAIT connections.
 */
static int open_listener(int *out, const struct sockaddr_storage *addr, socklen_t addr_len,
                         const char *listen_text)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int on = 1;

    *out = -1;
    if (fd < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot listen on %s: %s", listen_text,
                                  strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (addr->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (bind(fd, (const struct sockaddr *)addr, addr_len) < 0 || listen(fd, SOMAXCONN) < 0) {
        int saved = errno;

        close(fd);
        return imgstore_error_set(IMGSTORE_ERROR, "cannot listen on %s: %s", listen_text,
                                  strerror(saved));
    }
    *out = fd;
    return 0;
}

int imgstore_server_start(imgstore_server **out, const imgstore_server_config *config,
                          const imgstore_signers *signers)
{
    imgstore_server *server = NULL;
    imgstore_store *store = NULL;
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    /* the gate (gate.c) accepts and hands connections over with MHD_add_connection */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned polling_threads = cores > 0 ? (unsigned)cores : 1;
    char host[INET6_ADDRSTRLEN] = "?";
    char *cache_dir = NULL;
    int listener = -1;
    int err;

    *out = NULL;
    if (!config->repo)
        return imgstore_error_set(IMGSTORE_EINVALID, "no repository configured");
    /* chunk and upload buffers (1-4 MiB) from mmap, so that they go back to the system when
     * freed: glibc's sliding threshold kept them in its arenas, and 341 MB stayed resident
     * after slow uploads had closed (issue #10.3) */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    if ((err = parse_listen(&addr, &addr_len, config->listen)) < 0)
        return err;
    if (!(server = calloc(1, sizeof(*server))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    pthread_mutex_init(&server->pool_lock, NULL);
    pthread_mutex_init(&server->lock, NULL);
    pthread_cond_init(&server->changed, NULL);
    if (signers)
        server->signers = *signers;
    /* the status page's session cookies are signed with a key no restart keeps (ui_auth.c) */
    if (getrandom(server->session_key, sizeof(server->session_key), 0) !=
        (ssize_t)sizeof(server->session_key)) {
        err = imgstore_error_set(IMGSTORE_ERROR, "getrandom: %s", strerror(errno));
        goto done;
    }
    if ((err = imgstore_server__config_copy(&server->config, config)) < 0 ||
        (err = imgstore_server__metrics_new(&server->metrics)) < 0)
        goto done;
    if (config->mirror_of) {
        /* a replica with no store yet takes its first state before it listens; one that has
         * a store serves it at once and syncs in the background */
        bool first = imgstore_store_open(&store, config->repo) < 0;

        imgstore_store_free(store);
        store = NULL;
        if ((err = imgstore_server__mirror_start(&server->mirror, server, first)) < 0)
            goto done;
    }
    if ((err = imgstore_store_open(&store, config->repo)) < 0)
        goto done;
    imgstore_store_set_auto_gc(store, false); /* no request waits for a gc: maintenance.c */
    imgstore_server__store_put(server, store);
    store = NULL;
    cache_dir =
        config->cache_dir ? strdup(config->cache_dir) : imgstore_strfmt("%s-cache", config->repo);
    if (!cache_dir) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = imgstore_server__cache_new(&server->cache, cache_dir, config->cache_max_bytes,
                                          (unsigned)config->fill_concurrency)) < 0 ||
        (err = imgstore_server__answers_new(&server->answers, config->answer_cache_bytes)) < 0 ||
        /* one job per connection at most, plus one feed job per upload (route_upload.c) */
        (err = imgstore_server__workers_new(
             &server->workers, polling_threads,
             (unsigned)(config->max_connections + config->max_uploads + 1))) < 0 ||
        (err = imgstore_server__maintenance_start(&server->maintenance, config->repo,
                                                  config->gc_interval, server->metrics)) < 0 ||
        (err = imgstore_server__oci_new(&server->oci, config->repo)) < 0)
        goto done;
    if (config->tls_cert || config->tls_key) {
        if (!config->tls_cert || !config->tls_key) {
            err = imgstore_error_set(IMGSTORE_EINVALID, "TLS needs both tls_cert and tls_key");
            goto done;
        }
        if ((err = read_pem(&server->tls_cert_pem, config->tls_cert)) < 0 ||
            (err = read_pem(&server->tls_key_pem, config->tls_key)) < 0)
            goto done;
        flags |= MHD_USE_TLS;
    }
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem tls[] = {
        {server->tls_cert_pem ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0,
         server->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, server->tls_key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    if ((err = open_listener(&listener, &addr, addr_len, config->listen)) < 0)
        goto done;
    if (getsockname(listener, (struct sockaddr *)&addr, &addr_len) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot listen on %s: %s", config->listen,
                                 strerror(errno));
        goto done;
    }
    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, server, MHD_OPTION_NOTIFY_COMPLETED, on_completed, server,
        MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)config->max_header_bytes, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)config->connection_timeout, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)config->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)config->max_connections_per_ip, MHD_OPTION_THREAD_POOL_SIZE, polling_threads,
        MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (!server->daemon) {
        err =
            imgstore_error_set(IMGSTORE_ERROR, "cannot listen on %s%s", config->listen,
                               server->tls_cert_pem ? " (or the TLS key pair is not usable)" : "");
        goto done;
    }
    err = imgstore_server__gate_start(
        &server->gate, listener, server->daemon, (unsigned)config->header_timeout,
        (size_t)config->max_header_bytes, (size_t)config->max_connections,
        server->tls_cert_pem != NULL);
    listener = -1; /* the gate's now, whatever happened */
    if (err < 0)
        goto done;
    if (addr.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host, sizeof(host));
        snprintf(server->address, sizeof(server->address), "[%s]:%u", host,
                 ntohs(((struct sockaddr_in6 *)&addr)->sin6_port));
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof(host));
        snprintf(server->address, sizeof(server->address), "%s:%u", host,
                 ntohs(((struct sockaddr_in *)&addr)->sin_port));
    }
    imgstore_log(IMGSTORE_LOG_INFO, "server",
                 "listening address=%s scheme=%s repo=%s cache=%s tokens=%zu%s%s", server->address,
                 server->tls_cert_pem ? "https" : "http", config->repo,
                 config->cache_max_bytes ? cache_dir : "off", config->token_count,
                 config->mirror_of ? " mirror_of=" : "",
                 config->mirror_of ? config->mirror_of : "");
    *out = server;
    server = NULL;
done:
    if (listener >= 0)
        close(listener);
    free(cache_dir);
    imgstore_store_free(store);
    imgstore_server_stop(server);
    return err;
}

const char *imgstore_server_address(const imgstore_server *server)
{
    return server->address;
}

void imgstore_server_stop(imgstore_server *server)
{
    struct timespec deadline;
    uint64_t left;

    if (!server)
        return;
    imgstore_server__gate_stop(server->gate); /* no new connection from here */
    server->gate = NULL;
    if (server->daemon) {
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += (time_t)server->config->drain_seconds;
        pthread_mutex_lock(&server->lock);
        server->stopping = true;
        pthread_cond_broadcast(&server->changed);
        while (server->inflight > 0 &&
               pthread_cond_timedwait(&server->changed, &server->lock, &deadline) == 0)
            ;
        left = server->inflight;
        pthread_mutex_unlock(&server->lock);
        imgstore_log(IMGSTORE_LOG_INFO, "server", "stopping drained=%s in_flight=%llu",
                     left ? "false" : "true", (unsigned long long)left);
        /* libmicrohttpd must not stop with a suspended connection: let the jobs still
         * running hand theirs back (long-polls answer at once, stream slots give up), and
         * suspend nothing more */
        pthread_mutex_lock(&server->lock);
        server->closing = true;
        while (server->suspended > 0)
            pthread_cond_wait(&server->changed, &server->lock);
        pthread_mutex_unlock(&server->lock);
        MHD_stop_daemon(server->daemon);
    }
    imgstore_server__workers_free(server->workers);
    imgstore_server__mirror_stop(server->mirror);
    imgstore_server__maintenance_stop(server->maintenance);
    imgstore_server__oci_free(server->oci);
    for (size_t i = 0; i < server->pool_count; i++)
        imgstore_store_free(server->pool[i]);
    imgstore_server__cache_free(server->cache);
    imgstore_server__answers_free(server->answers);
    imgstore_server__metrics_free(server->metrics);
    imgstore_server_config_free(server->config);
    free(server->tls_cert_pem);
    free(server->tls_key_pem);
    pthread_cond_destroy(&server->changed);
    pthread_mutex_destroy(&server->lock);
    pthread_mutex_destroy(&server->pool_lock);
    free(server);
}
