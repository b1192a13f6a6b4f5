/*
 * Answering: the one table from IMGSTORE_E* codes to HTTP status, the JSON error body every
 * failure carries, JSON responses, and the small parsers for path segments, query arguments
 * and the conditional (If-None-Match, If-Range) and Range headers. Routes decide what to
 * answer; this file decides how it looks on the wire.
 */
#include "server/server_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The one table (docs/api.md, "Errors"). EVERIFY means the store's own bytes failed their
 * digest: a fault of the server, not of the request, hence 500 (an upload whose declared
 * digest does not match is bad input and answered as EINVALID by the upload route).
 * ELOCKED is a writer that did not let go in time: 503, the client may retry.
 *
 * Routes that take signatures the client made (client_signed) read the last two columns:
 * there EVERIFY is the client's signature failing or its key not being trusted (403
 * untrusted_key), and ELOCKED is a channel that moved since the client built its state
 * (409 conflict: rebuild on the new state). NULL: the code's own name.
 */
static const struct {
    int err;
    unsigned status;
    unsigned client_signed_status;
    const char *client_signed_code;
} status_table[] = {
    {IMGSTORE_OK, MHD_HTTP_OK, MHD_HTTP_OK, NULL},
    {IMGSTORE_ENOTFOUND, MHD_HTTP_NOT_FOUND, MHD_HTTP_NOT_FOUND, NULL},
    {IMGSTORE_EINVALID, MHD_HTTP_BAD_REQUEST, MHD_HTTP_BAD_REQUEST, NULL},
    {IMGSTORE_EEXISTS, MHD_HTTP_CONFLICT, MHD_HTTP_CONFLICT, NULL},
    {IMGSTORE_EVERIFY, MHD_HTTP_INTERNAL_SERVER_ERROR, MHD_HTTP_FORBIDDEN, "untrusted_key"},
    {IMGSTORE_ELOCKED, MHD_HTTP_SERVICE_UNAVAILABLE, MHD_HTTP_CONFLICT, "conflict"},
    {IMGSTORE_ERROR, MHD_HTTP_INTERNAL_SERVER_ERROR, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL},
};

unsigned imgstore_server__status_for_route(int err, bool client_signed, const char **code_out)
{
    if (code_out)
        *code_out = imgstore_error_name(err);
    for (size_t i = 0; i < sizeof(status_table) / sizeof(status_table[0]); i++) {
        if (status_table[i].err != err)
            continue;
        if (!client_signed)
            return status_table[i].status;
        if (code_out && status_table[i].client_signed_code)
            *code_out = status_table[i].client_signed_code;
        return status_table[i].client_signed_status;
    }
    return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

unsigned imgstore_server__status_for(int err)
{
    return imgstore_server__status_for_route(err, false, NULL);
}

enum MHD_Result imgstore_server__queue(imgstore_server__request *req, unsigned status,
                                       struct MHD_Response *response, uint64_t body_bytes)
{
    enum MHD_Result result;

    if (!response)
        return MHD_NO;
    if (req->oci) /* what clients of the Docker registry API look for (spec: "/v2/") */
        MHD_add_response_header(response, "Docker-Distribution-API-Version", "registry/2.0");
    req->status = status;
    req->bytes_out = body_bytes;
    req->replied = true;
    /* a worker may not queue on a connection it does not own: the polling thread will */
    if (req->on_worker) {
        req->held_response = response;
        req->held_status = status;
        return MHD_YES;
    }
    result = MHD_queue_response(req->conn, status, response);
    MHD_destroy_response(response);
    return result;
}

/* Never called for a 304, which has no body: libmicrohttpd sends the headers only. */
static ssize_t no_content(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

struct MHD_Response *imgstore_server__not_modified(const char *etag, uint64_t representation_len)
{
    /* sized as the 200 would be, so that its Content-Length is that of the representation
     * (RFC 9110 8.6: a 304 may carry only that one, never a "0" for a non-empty body) */
    struct MHD_Response *response =
        MHD_create_response_from_callback(representation_len, 4096, no_content, NULL, NULL);

    if (!response)
        return NULL;
    if (MHD_add_response_header(response, MHD_HTTP_HEADER_ETAG, etag) != MHD_YES) {
        MHD_destroy_response(response);
        return NULL;
    }
    return response;
}

/*
 * /v1 names its realm; /v2 points it at its token endpoint (route_oci.c), as OCI clients
 * without a static token fetch one from the realm with the credentials they hold.
 */
static const char *challenge(imgstore_server__request *req)
{
    const char *host =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    bool safe = host && *host && strlen(host) < 200;

    for (const char *c = host; safe && *c; c++)
        safe = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
               strchr(".-:[]", *c);
    if (!req->oci || !safe)
        return "Bearer realm=\"imgstore\"";
    snprintf(req->challenge, sizeof(req->challenge),
             "Bearer realm=\"%s://%s/v2/token\",service=\"imgstore\"",
             req->server->tls_cert_pem ? "https" : "http", host);
    return req->challenge;
}

enum MHD_Result imgstore_server__reply_body(imgstore_server__request *req, unsigned status,
                                            const char *body, size_t len, const char *content_type,
                                            const char *cache_control, const char *etag)
{
    struct MHD_Response *response;
    const char *if_none_match;

    if (status == MHD_HTTP_OK)
        imgstore_server__answer_store(req, body, len, content_type, cache_control, etag);
    if_none_match =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (status == MHD_HTTP_OK && imgstore_server__etag_matches(if_none_match, etag)) {
        return imgstore_server__queue(req, MHD_HTTP_NOT_MODIFIED,
                                      imgstore_server__not_modified(etag, len), 0);
    }
    response = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!response)
        return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
    if (etag)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ETAG, etag);
    if (strncmp(content_type, "text/html", 9) == 0)
        imgstore_server__html_headers(response);
    if (req->extra_header_name)
        MHD_add_response_header(response, req->extra_header_name, req->extra_header_value);
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
        MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE, challenge(req));
    return imgstore_server__queue(req, status, response, len);
}

static enum MHD_Result reply_text(imgstore_server__request *req, unsigned status, char *text,
                                  size_t len, const char *content_type)
{
    enum MHD_Result result =
        imgstore_server__reply_body(req, status, text, len, content_type, "no-store", NULL);

    free(text);
    return result;
}

enum MHD_Result imgstore_server__reply_json(imgstore_server__request *req, unsigned status,
                                            json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    size_t len;

    json_decref(body);
    if (!text)
        return imgstore_server__reply_status(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                                             "cannot encode the response");
    len = strlen(text);
    /* newline-terminated, like the CLI's --json, so that curl output ends cleanly */
    char *grown = realloc(text, len + 2);
    if (!grown) {
        free(text);
        return MHD_NO;
    }
    grown[len++] = '\n';
    grown[len] = '\0';
    return reply_text(req, status, grown, len, "application/json");
}

/*
 * /v2 answers errors in the OCI distribution format (spec, "Error Codes"): the route's own
 * code when it set one, else the one that says the same as our code name.
 */
static const char *oci_code_for(const imgstore_server__request *req, const char *code)
{
    static const struct {
        const char *ours, *oci;
    } codes[] = {
        {"unauthorized", "UNAUTHORIZED"},
        {"forbidden", "DENIED"},
        {"not_found", "NAME_UNKNOWN"},
        {"invalid", "NAME_INVALID"},
        {"conflict", "DENIED"},
        {"too_large", "SIZE_INVALID"},
        {"unavailable", "TOOMANYREQUESTS"},
        {"method_not_allowed", "UNSUPPORTED"},
        {"range_not_satisfiable", "BLOB_UPLOAD_INVALID"},
    };

    if (req->oci_code)
        return req->oci_code;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (strcmp(codes[i].ours, code) == 0)
            return codes[i].oci;
    }
    return "UNKNOWN";
}

static json_t *error_doc(const imgstore_server__request *req, const char *code, const char *message)
{
    if (req->oci)
        return json_pack("{s:[{s:s, s:s}]}", "errors", "code", oci_code_for(req, code), "message",
                         message);
    return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
}

static enum MHD_Result reply_error_body(imgstore_server__request *req, unsigned status,
                                        const char *code, const char *message)
{
    json_t *body = error_doc(req, code, message);
    char *text;
    size_t len;

    /* A message may quote client bytes that are not UTF-8: jansson refuses those. */
    if (!body)
        body = error_doc(req, code, "(message not representable)");
    text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(body);
    if (!text)
        return MHD_NO;
    len = strlen(text);
    char *grown = realloc(text, len + 2);
    if (!grown) {
        free(text);
        return MHD_NO;
    }
    grown[len++] = '\n';
    grown[len] = '\0';
    return reply_text(req, status, grown, len, "application/json");
}

enum MHD_Result imgstore_server__reply_error(imgstore_server__request *req, int err)
{
    const char *message = imgstore_error_last(), *code;
    unsigned status = imgstore_server__status_for_route(err, req->client_signed, &code);

    if (status >= 500)
        imgstore_log(IMGSTORE_LOG_ERROR, "server", "request failed path=%s error=%s message=\"%s\"",
                     req->url, imgstore_error_name(err), message);
    return reply_error_body(req, status, code, *message ? message : imgstore_error_name(err));
}

/* HEAD: libmicrohttpd sends the headers (with Content-Length) and never asks for the body. */
static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

struct MHD_Response *imgstore_server__head_response(uint64_t size)
{
    return MHD_create_response_from_callback(size, 4096, no_body, NULL, NULL);
}

enum MHD_Result imgstore_server__reply_vstatus(imgstore_server__request *req, unsigned status,
                                               const char *code, const char *fmt, va_list ap)
{
    char message[1024];

    vsnprintf(message, sizeof(message), fmt, ap);
    return reply_error_body(req, status, code, message);
}

enum MHD_Result imgstore_server__reply_status(imgstore_server__request *req, unsigned status,
                                              const char *code, const char *fmt, ...)
{
    enum MHD_Result result;
    va_list ap;

    va_start(ap, fmt);
    result = imgstore_server__reply_vstatus(req, status, code, fmt, ap);
    va_end(ap);
    return result;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

char *imgstore_server__decode_segment(const char *raw, size_t len)
{
    char *out = malloc(len + 1);
    size_t n = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (raw[i] == '%') {
            int h = i + 2 < len ? hex_value((unsigned char)raw[i + 1]) : -1;
            int l = i + 2 < len ? hex_value((unsigned char)raw[i + 2]) : -1;

            /* a truncated escape, a non-hex digit or an encoded NUL: never a valid name */
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            out[n++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[n++] = raw[i];
        }
    }
    out[n] = '\0';
    return out;
}

char *imgstore_server__query_string(imgstore_server__request *req, const char *key)
{
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);

    return raw ? imgstore_server__decode_segment(raw, strlen(raw)) : NULL;
}

int imgstore_server__query_u64(uint64_t *out, imgstore_server__request *req, const char *key)
{
    const char *value = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);

    *out = 0;
    if (!value)
        return IMGSTORE_ENOTFOUND;
    if (imgstore_parse_u64(out, value) < 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "query %s: expected a number", key);
    return 0;
}

/* ---- conditional and range requests ---------------------------------------------------- */

bool imgstore_server__etag_matches(const char *if_none_match, const char *etag)
{
    return if_none_match && etag && etag[0] &&
           (strstr(if_none_match, etag) || strcmp(if_none_match, "*") == 0);
}

bool imgstore_server__if_range_allows(const char *if_range, const char *etag)
{
    return !if_range || (etag && strcmp(if_range, etag) == 0);
}

/* A strict decimal; false on anything else (Range values that do not parse are ignored). */
static bool parse_range_u64(uint64_t *out, const char *text, size_t len)
{
    uint64_t value = 0;

    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)text[i]))
            return false;
        value = value * 10 + (uint64_t)(text[i] - '0');
    }
    *out = value;
    return true;
}

int imgstore_server__parse_range(uint64_t *start, uint64_t *end, const char *header, uint64_t size)
{
    const char *spec, *dash;
    uint64_t a, b;

    if (!header || strncmp(header, "bytes=", 6) != 0 || strchr(header, ','))
        return 0;
    spec = header + 6;
    if (!(dash = strchr(spec, '-')))
        return 0;
    if (dash == spec) {
        if (!parse_range_u64(&b, dash + 1, strlen(dash + 1)))
            return 0;
        if (b == 0 || size == 0)
            return -1;
        *start = b < size ? size - b : 0;
        *end = size;
        return 1;
    }
    if (!parse_range_u64(&a, spec, (size_t)(dash - spec)))
        return 0;
    if (dash[1] == '\0') {
        b = UINT64_MAX;
    } else if (!parse_range_u64(&b, dash + 1, strlen(dash + 1)) || b < a) {
        return 0;
    }
    if (a >= size)
        return -1;
    *start = a;
    *end = b >= size - 1 ? size : b + 1;
    return 1;
}
