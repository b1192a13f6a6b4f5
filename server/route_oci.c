/*
 * The OCI distribution API (a subset; docs/oci.md): GET /v2/, manifests by tag and digest
 * (GET, HEAD, PUT), blobs by digest (GET, HEAD, Range), blob upload sessions (POST, PATCH,
 * PUT, GET, DELETE) and the tag list, over the same store as /v1.
 *
 * A tag is a version. A version's OCI manifest is rendered from its trusted imgstore manifest
 * (schema/oci.c): its layers are the version's files, so a blob is a file, served by the same
 * verified path as /v1 downloads (route_files.c). A pushed manifest becomes a version through
 * the store's push, as a /v1 upload does: detected, chunked, signed by the server's key or
 * left pending. Digests are found through the store's digest index (which holds each
 * version's files, OCI config and OCI manifest), then the OCI area's lookup cache (oci.c);
 * every version either names is loaded trusted and must hold the digest. Tags come from the
 * store's name index in lexical order. Nothing walks all versions.
 */
#include "server/server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCAN_VERSIONS   16   /* versions a digest lookup that missed its hint looks through */
#define DIGEST_VERSIONS 16   /* stored versions holding a digest that a lookup tries */
#define TAGS_DEFAULT    1000 /* tags a page holds when the client asks no `n` (then Link) */
#define COPY_BUF        (1024 * 1024)

#define MANIFEST_UNKNOWN "MANIFEST_UNKNOWN"
#define BLOB_UNKNOWN     "BLOB_UNKNOWN"
#define MANIFEST_INVALID "MANIFEST_INVALID"

/* A version in its OCI form. */
typedef struct {
    imgstore_manifest *m;
    char *manifest, *config;
    size_t manifest_len, config_len;
    char manifest_hex[65], config_hex[65];
} oci_form;

static void form_clear(oci_form *f)
{
    imgstore_manifest_free(f->m);
    free(f->manifest);
    free(f->config);
    memset(f, 0, sizeof(*f));
}

/* The one SHA-256 (trust/); a failure (out of memory) leaves "" that matches nothing. */
static void sha256_hex(char *hex, const void *data, size_t len)
{
    if (imgstore_sha256_hex(hex, data, len) < 0)
        hex[0] = '\0';
}

/* The OCI form of a release-trusted version; its digests are noted for later lookups. */
static int form_load(oci_form *out, imgstore_server__request *req, const char *name,
                     const char *version)
{
    imgstore_store *store;
    char canonical_hex[65], *canonical = NULL;
    size_t canonical_len = 0;
    int err;

    memset(out, 0, sizeof(*out));
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_manifest_get_trusted(&out->m, canonical_hex, store, name, version)) <
            0 ||
        (err = imgstore_schema_manifest_encode(&canonical, &canonical_len, out->m)) < 0 ||
        (err = imgstore_schema_oci_config(&out->config, &out->config_len, canonical, canonical_len,
                                          canonical_hex)) < 0)
        goto done;
    sha256_hex(out->config_hex, out->config, out->config_len);
    if ((err = imgstore_schema_oci_manifest(&out->manifest, &out->manifest_len, out->m,
                                            canonical_hex, out->config_hex, out->config_len)) < 0)
        goto done;
    sha256_hex(out->manifest_hex, out->manifest, out->manifest_len);
    imgstore_server__oci_hint_put(req->server->oci, name, out->manifest_hex, version);
    imgstore_server__oci_hint_put(req->server->oci, name, out->config_hex, version);
    for (size_t i = 0; i < out->m->file_count; i++)
        imgstore_server__oci_hint_put(req->server->oci, name, out->m->files[i].sha256, version);
done:
    free(canonical);
    if (err < 0)
        form_clear(out);
    return err;
}

static const imgstore_manifest_file *file_with(const imgstore_manifest *m, const char *sha256)
{
    for (size_t i = 0; m && i < m->file_count; i++) {
        if (strcmp(m->files[i].sha256, sha256) == 0)
            return &m->files[i];
    }
    return NULL;
}

static bool form_has(const oci_form *f, const char *sha256)
{
    return strcmp(f->manifest_hex, sha256) == 0 || strcmp(f->config_hex, sha256) == 0 ||
           file_with(f->m, sha256);
}

/*
 * The version of `name` whose OCI form holds `sha256` (its manifest, config or a file): the
 * store's digest index, each version it names loaded trusted and checked; then the OCI
 * area's hint. Only a store without a digest index (reindex builds it) looks through the
 * newest SCAN_VERSIONS versions. ENOTFOUND when none does.
 */
static int form_find(oci_form *out, imgstore_server__request *req, const char *name,
                     const char *sha256)
{
    imgstore_version_row *rows = NULL;
    imgstore_store *store;
    size_t count = 0, found_count = 0;
    char version[IMGSTORE_NAME_MAX + 2], **found = NULL, *refused = NULL;
    bool indexed;
    int err, refused_code = 0;

    memset(out, 0, sizeof(*out));
    if ((err = imgstore_server__store(&store, req)) < 0)
        return err;
    indexed = imgstore_store_digest_versions(&found, &found_count, store, name, sha256,
                                             DIGEST_VERSIONS) == 0;
    for (size_t i = 0; i < found_count; i++) {
        int loaded = form_load(out, req, name, found[i]);

        if (loaded < 0) { /* pending or damaged: nothing of it is handed out, and why */
            refused = refused ? refused : imgstore_strfmt("%s", imgstore_error_last());
            refused_code = refused_code ? refused_code : loaded;
            continue;
        }
        if (form_has(out, sha256)) {
            imgstore_strings_free(found, found_count);
            free(refused);
            return 0;
        }
        form_clear(out);
    }
    imgstore_strings_free(found, found_count);
    /* a cache of what this server rendered: versions pushed before the digest index held
     * OCI rows, until a reindex adds them */
    if (imgstore_server__oci_hint_get(req->server->oci, name, sha256, version, sizeof(version)) &&
        form_load(out, req, name, version) == 0) {
        if (form_has(out, sha256))
            return 0;
        form_clear(out);
    }
    if (refused) /* only versions that may not be served hold it: say so, as by tag */
        err = imgstore_error_set(refused_code, "%s", refused);
    else
        err = imgstore_error_set(IMGSTORE_ENOTFOUND, "no blob or manifest sha256:%s in %s", sha256,
                                 name);
    free(refused);
    if (indexed || refused_code)
        return err;
    if ((err = imgstore_store_versions_page(&rows, &count, NULL, store, name, SIZE_MAX,
                                            SCAN_VERSIONS)) < 0)
        return err;
    err =
        imgstore_error_set(IMGSTORE_ENOTFOUND, "no blob or manifest sha256:%s in %s", sha256, name);
    for (size_t i = 0; i < count; i++) {
        if (form_load(out, req, name, rows[i].version) < 0)
            continue; /* pending or damaged: nothing of it is handed out */
        if (form_has(out, sha256)) {
            err = 0;
            break;
        }
        form_clear(out);
    }
    imgstore_version_rows_free(rows, count);
    if (err < 0)
        imgstore_error_set(IMGSTORE_ENOTFOUND, "no blob or manifest sha256:%s in %s", sha256, name);
    return err;
}

/* A query argument, percent-decoded (the server keeps the URL as sent: server.c); NULL when
 * absent or malformed. Freed with free(). */
/* A store error on a /v2 route, with the OCI code that says what was not found. */
static enum MHD_Result reply_store_error(imgstore_server__request *req, int err,
                                         const char *unknown_code, const char *invalid_code)
{
    if (req->oci_code) /* the failing step said more precisely what was wrong */
        return imgstore_server__reply_error(req, err);
    if (err == IMGSTORE_ENOTFOUND)
        req->oci_code = unknown_code;
    else if (err == IMGSTORE_EINVALID)
        req->oci_code = invalid_code;
    else if (err == IMGSTORE_EEXISTS || err == IMGSTORE_EVERIFY)
        req->oci_code = "DENIED";
    else if (err == IMGSTORE_ELOCKED)
        req->oci_code = "TOOMANYREQUESTS";
    return imgstore_server__reply_error(req, err);
}

static bool check_name(imgstore_server__request *req, const char *name, enum MHD_Result *result)
{
    if (imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name) == 0)
        return true;
    *result = imgstore_server__oci_error(req, MHD_HTTP_NOT_FOUND, "NAME_UNKNOWN", "%s",
                                         imgstore_error_last());
    return false;
}

static enum MHD_Result reply_bytes(imgstore_server__request *req, unsigned status,
                                   const char *bytes, size_t len, const char *type,
                                   const char *sha256, const char *location)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(len, (void *)bytes, MHD_RESPMEM_MUST_COPY);
    char digest[80];

    if (!response)
        return MHD_NO;
    if (type)
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (sha256) {
        snprintf(digest, sizeof(digest), "sha256:%s", sha256);
        MHD_add_response_header(response, "Docker-Content-Digest", digest);
        if (status == MHD_HTTP_OK) {
            char etag[84];

            snprintf(etag, sizeof(etag), "\"%s\"", digest);
            MHD_add_response_header(response, MHD_HTTP_HEADER_ETAG, etag);
        }
    }
    if (location)
        MHD_add_response_header(response, MHD_HTTP_HEADER_LOCATION, location);
    return imgstore_server__queue(req, status, response,
                                  strcmp(req->method, MHD_HTTP_METHOD_HEAD) == 0 ? 0 : len);
}

/* ---- GET /v2/ ------------------------------------------------------------------------------ */

enum MHD_Result imgstore_server__route_oci_base(imgstore_server__request *req)
{
    const char *header =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    enum MHD_Result result;

    /*
     * Clients learn from this answer whether to send their token at all (containers/image
     * keeps the challenge of a 401 here and sends its --registry-token only then), so a
     * server with tokens challenges a request without one, even when reads are public.
     */
    if (!header && req->server->config->token_count > 0)
        return imgstore_server__oci_error(req, MHD_HTTP_UNAUTHORIZED, "UNAUTHORIZED",
                                          "this registry needs a bearer token");
    if (!imgstore_server__authorize(req, ~0u, &result))
        return result;
    return reply_bytes(req, MHD_HTTP_OK, "{}\n", 3, "application/json", NULL, NULL);
}

/*
 * The realm of the Bearer challenge (docs/oci.md, "Auth"). imgstore has no token service:
 * its tokens are made by `imgstore token create`. A client with credentials (docker login,
 * skopeo --creds USER:TOKEN) sends them here as Basic auth and gets its own token back,
 * once it is checked; one without is told how to give one, instead of failing on a realm
 * that is not a URL.
 */
enum MHD_Result imgstore_server__route_oci_token(imgstore_server__request *req)
{
    char *password = NULL, *user = MHD_basic_auth_get_username_password(req->conn, &password);
    const imgstore_server__token *token =
        password ? imgstore_server__token_find(req->server->config, password) : NULL;
    enum MHD_Result result;
    json_t *body;

    if (!token) {
        result = imgstore_server__oci_error(
            req, MHD_HTTP_UNAUTHORIZED, "UNAUTHORIZED",
            user ? "the password is not a token of this server"
                 : "imgstore hands out no tokens: give one made by `imgstore token create` "
                   "(skopeo --registry-token TOKEN, or --creds NAME:TOKEN)");
    } else {
        req->token = token;
        body = json_pack("{s:s, s:s}", "token", password, "access_token", password);
        result = imgstore_server__reply_json(req, MHD_HTTP_OK, body);
    }
    if (password)
        MHD_free(password);
    if (user)
        MHD_free(user);
    return result;
}

/* ---- manifests ----------------------------------------------------------------------------- */

/* A pushed manifest's exact bytes, when every layer it names is a file of the version. */
static bool pushed_fits(const char *bytes, size_t len, const imgstore_manifest *m)
{
    imgstore_oci_manifest *pushed = NULL;
    bool fits;

    if (imgstore_schema_oci_parse(&pushed, bytes, len) < 0)
        return false;
    fits = pushed->layer_count > 0;
    for (size_t i = 0; fits && i < pushed->layer_count; i++)
        fits = file_with(m, pushed->layers[i].sha256) != NULL;
    imgstore_oci_manifest_free(pushed);
    return fits;
}

enum MHD_Result imgstore_server__route_oci_manifest(imgstore_server__request *req)
{
    const char *name = req->segments[1], *reference = req->segments[3];
    char sha256[65], check[65], version[IMGSTORE_NAME_MAX + 2], *pushed = NULL;
    size_t pushed_len = 0;
    oci_form form;
    enum MHD_Result result;
    int err;

    if (!check_name(req, name, &result))
        return result;
    if (strchr(reference, ':')) {
        if ((err = imgstore_schema_oci_digest(sha256, reference)) < 0)
            return imgstore_server__oci_error(req, MHD_HTTP_BAD_REQUEST, "DIGEST_INVALID", "%s",
                                              imgstore_error_last());
        /* a manifest pushed with other bytes than the version's own form: its hint names
         * the version, the bytes are kept in the OCI area and checked against the version */
        if (imgstore_server__oci_hint_get(req->server->oci, name, sha256, version,
                                          sizeof(version)) &&
            imgstore_server__oci_pushed_get(req->server->oci, sha256, &pushed, &pushed_len) == 0) {
            sha256_hex(check, pushed, pushed_len);
            if (strcmp(check, sha256) == 0 && form_load(&form, req, name, version) == 0) {
                bool fits = pushed_fits(pushed, pushed_len, form.m);

                form_clear(&form);
                if (fits) {
                    /* the spec wants a pushed manifest back byte for byte by its digest */
                    result = reply_bytes(req, MHD_HTTP_OK, pushed, pushed_len,
                                         IMGSTORE_OCI_MANIFEST_TYPE, sha256, NULL);
                    free(pushed);
                    return result;
                }
            }
        }
        free(pushed);
        if ((err = form_find(&form, req, name, sha256)) < 0)
            return reply_store_error(req, err, MANIFEST_UNKNOWN, MANIFEST_UNKNOWN);
        if (strcmp(form.manifest_hex, sha256) == 0)
            result = reply_bytes(req, MHD_HTTP_OK, form.manifest, form.manifest_len,
                                 IMGSTORE_OCI_MANIFEST_TYPE, sha256, NULL);
        else /* a file or the config: a blob, not a manifest */
            result = imgstore_server__oci_error(req, MHD_HTTP_NOT_FOUND, MANIFEST_UNKNOWN,
                                                "no manifest sha256:%s in %s", sha256, name);
        form_clear(&form);
        return result;
    }
    if (imgstore_schema_check_name(IMGSTORE_NAME_VERSION, reference) < 0)
        return imgstore_server__oci_error(req, MHD_HTTP_NOT_FOUND, MANIFEST_UNKNOWN,
                                          "no tag %.128s in %s", reference, name);
    if ((err = form_load(&form, req, name, reference)) < 0)
        return reply_store_error(req, err, MANIFEST_UNKNOWN, MANIFEST_INVALID);
    result = reply_bytes(req, MHD_HTTP_OK, form.manifest, form.manifest_len,
                         IMGSTORE_OCI_MANIFEST_TYPE, form.manifest_hex, NULL);
    form_clear(&form);
    return result;
}

/* ---- blobs ----------------------------------------------------------------------------------- */

/* A staged blob (an upload whose bytes matched its digest, not yet in a version). */
static enum MHD_Result reply_staged(imgstore_server__request *req, int fd, uint64_t size,
                                    const char *sha256)
{
    bool head = strcmp(req->method, MHD_HTTP_METHOD_HEAD) == 0;
    struct MHD_Response *response;
    char digest[80];

    if (head) {
        close(fd);
        response = imgstore_server__head_response(size);
    } else if (size == 0) {
        close(fd);
        response = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else if (!(response = MHD_create_response_from_fd64(size, fd))) {
        close(fd);
    }
    if (!response)
        return MHD_NO;
    snprintf(digest, sizeof(digest), "sha256:%s", sha256);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    MHD_add_response_header(response, "Docker-Content-Digest", digest);
    return imgstore_server__queue(req, MHD_HTTP_OK, response, head ? 0 : size);
}

enum MHD_Result imgstore_server__route_oci_blob(imgstore_server__request *req)
{
    const char *name = req->segments[1];
    const imgstore_manifest_file *file;
    char sha256[65], digest[80];
    uint64_t size = 0;
    oci_form form;
    enum MHD_Result result;
    int err, fd;

    if (!check_name(req, name, &result))
        return result;
    /* HEAD tells a pushing client whether to send a blob; its bytes need the read scope */
    if (strcmp(req->method, MHD_HTTP_METHOD_GET) == 0 &&
        !imgstore_server__authorize(req, IMGSTORE_SERVER_SCOPE_READ, &result))
        return result;
    if (imgstore_schema_oci_digest(sha256, req->segments[3]) < 0)
        return imgstore_server__oci_error(req, MHD_HTTP_BAD_REQUEST, "DIGEST_INVALID", "%s",
                                          imgstore_error_last());
    if ((err = form_find(&form, req, name, sha256)) < 0) {
        if ((fd = imgstore_server__oci_staged_open(req->server->oci, sha256, &size)) >= 0)
            return reply_staged(req, fd, size, sha256);
        return reply_store_error(req, err, BLOB_UNKNOWN, BLOB_UNKNOWN);
    }
    snprintf(digest, sizeof(digest), "sha256:%s", sha256);
    if ((file = file_with(form.m, sha256)))
        result = imgstore_server__send_file(req, &form.m, file, "application/octet-stream", digest);
    else if (strcmp(form.config_hex, sha256) == 0)
        result = reply_bytes(req, MHD_HTTP_OK, form.config, form.config_len,
                             IMGSTORE_OCI_CONFIG_TYPE, sha256, NULL);
    else /* a manifest is not a blob */
        result = imgstore_server__oci_error(req, MHD_HTTP_NOT_FOUND, BLOB_UNKNOWN,
                                            "no blob sha256:%s in %s", sha256, name);
    form_clear(&form);
    return result;
}

/* ---- tags ------------------------------------------------------------------------------------ */

enum MHD_Result imgstore_server__route_oci_tags(imgstore_server__request *req)
{
    const char *name = req->segments[1];
    imgstore_store *store;
    char **names = NULL, *last = NULL;
    size_t count = 0;
    uint64_t n = TAGS_DEFAULT;
    bool more = false;
    json_t *tags = NULL;
    enum MHD_Result result;
    int err;

    if (!check_name(req, name, &result))
        return result;
    if ((err = imgstore_server__query_u64(&n, req, "n")) == IMGSTORE_EINVALID)
        return imgstore_server__oci_error(req, MHD_HTTP_BAD_REQUEST, "UNSUPPORTED",
                                          "n must be a non-negative integer");
    if (err == IMGSTORE_ENOTFOUND)
        n = TAGS_DEFAULT;
    if (n > TAGS_DEFAULT) /* fewer than asked, with a Link header: the spec allows it */
        n = TAGS_DEFAULT;
    if ((err = imgstore_server__store(&store, req)) < 0)
        return reply_store_error(req, err, "NAME_UNKNOWN", "NAME_INVALID");
    /* spec, "Listing Tags": lexical order, the tags after `last` (which need not be a tag);
     * a page is read from the name index (docs/oci.md, "Cost") */
    last = imgstore_server__query_string(req, "last");
    err = imgstore_store_version_names(&names, &count, &more, store, name,
                                       last && *last ? last : NULL, (size_t)n);
    free(last);
    if (err < 0)
        return reply_store_error(req, err, "NAME_UNKNOWN", "NAME_INVALID");
    if (!(tags = json_array())) {
        imgstore_strings_free(names, count);
        return MHD_NO;
    }
    for (size_t i = 0; i < count; i++)
        json_array_append_new(tags, json_string(names[i]));
    if (more && count > 0) {
        /* the next page starts after this one's last tag (RFC 5988 Link, rel="next") */
        char escaped[3 * IMGSTORE_NAME_MAX + 1], *at = escaped;

        /* '+' would read as a space to a form decoder */
        for (const char *c = names[count - 1]; *c; c++)
            at += *c == '+' ? (size_t)sprintf(at, "%%2B") : (size_t)sprintf(at, "%c", *c);
        snprintf(req->extra_header_value, sizeof(req->extra_header_value),
                 "</v2/%s/tags/list?n=%llu&last=%s>; rel=\"next\"", name, (unsigned long long)n,
                 escaped);
        req->extra_header_name = "Link";
    }
    imgstore_strings_free(names, count);
    return imgstore_server__reply_json(req, MHD_HTTP_OK,
                                       json_pack("{s:s, s:o}", "name", name, "tags", tags));
}

/* ---- blob uploads ---------------------------------------------------------------------------- */

static const char *upload_id(const imgstore_server__request *req)
{
    return req->segment_count > 4 ? req->segments[4] : "";
}

/* Content-Range of a PATCH: "<start>-<end>" (the spec's form; "bytes " tolerated). */
static bool range_start(const char *header, uint64_t *start)
{
    char *end;

    if (strncmp(header, "bytes ", 6) == 0)
        header += 6;
    *start = strtoull(header, &end, 10);
    return end != header && *end == '-';
}

enum MHD_Result imgstore_server__oci_blob_begin(imgstore_server__request *req)
{
    const char *name = req->segments[1], *range;
    imgstore_server__oci_session *s = NULL;
    enum MHD_Result result;
    uint64_t start;
    int err;

    if (!check_name(req, name, &result))
        return result;
    if (strcmp(req->method, MHD_HTTP_METHOD_POST) == 0) {
        if (*upload_id(req))
            return imgstore_server__oci_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "UNSUPPORTED",
                                              "POST starts an upload at /v2/%s/blobs/uploads/",
                                              name);
        /* a mount (?mount=&from=) is answered as the spec allows: a new session */
        err = imgstore_server__oci_session_open(&s, req->server, name);
    } else {
        err = imgstore_server__oci_session_take(&s, req->server, name, upload_id(req));
    }
    if (err == IMGSTORE_ELOCKED && strcmp(req->method, MHD_HTTP_METHOD_POST) == 0)
        return imgstore_server__oci_error(req, 429, "TOOMANYREQUESTS", "%s", imgstore_error_last());
    if (err == IMGSTORE_ENOTFOUND)
        return imgstore_server__oci_error(req, MHD_HTTP_NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "%s",
                                          imgstore_error_last());
    if (err < 0)
        return imgstore_server__oci_error(req, MHD_HTTP_CONFLICT, "BLOB_UPLOAD_INVALID", "%s",
                                          imgstore_error_last());
    req->oci_session = s;
    range = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_RANGE);
    /* chunks come in order: one that does not start where the upload stands is refused
     * (spec: "Pushing a blob in chunks", 416), the session kept as it was */
    if (range && strcmp(req->method, "PATCH") == 0 &&
        (!range_start(range, &start) || start != imgstore_server__oci_session_size(s))) {
        uint64_t size = imgstore_server__oci_session_size(s);

        snprintf(req->extra_header_value, sizeof(req->extra_header_value), "0-%llu",
                 (unsigned long long)(size ? size - 1 : 0));
        req->extra_header_name = "Range";
        /* as reply_session: free for the client's next chunk before this reply goes out,
         * not when its completion is noted (a client retrying at once got 409 "busy") */
        imgstore_server__oci_session_put(req->server, s, true);
        req->oci_session = NULL;
        return imgstore_server__oci_error(
            req, MHD_HTTP_RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID",
            "chunk starts at %.40s, the upload holds %llu bytes", range, (unsigned long long)size);
    }
    if (!(req->blob_stage = malloc(IMGSTORE_SERVER_OCI_STAGE)))
        return MHD_NO;
    return MHD_YES;
}

/* 202 or 204 for a session in progress: where to send the next chunk, what it holds. */
static enum MHD_Result reply_session(imgstore_server__request *req, unsigned status)
{
    imgstore_server__oci_session *s = req->oci_session;
    struct MHD_Response *response =
        MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    char location[256], range[64];
    uint64_t size = imgstore_server__oci_session_size(s);

    if (!response)
        return MHD_NO;
    snprintf(location, sizeof(location), "/v2/%s/blobs/uploads/%s", req->segments[1],
             imgstore_server__oci_session_id(s));
    snprintf(range, sizeof(range), "0-%llu", (unsigned long long)(size ? size - 1 : 0));
    MHD_add_response_header(response, MHD_HTTP_HEADER_LOCATION, location);
    MHD_add_response_header(response, "Range", range);
    MHD_add_response_header(response, "Docker-Upload-UUID", imgstore_server__oci_session_id(s));
    /* free for the client's next request at once: it may come on another connection before
     * this one's completion is noted */
    imgstore_server__oci_session_put(req->server, s, true);
    req->oci_session = NULL;
    return imgstore_server__queue(req, status, response, 0);
}

/* PUT ?digest= (or POST ?digest=): the bytes must hash to it; then the blob is staged. */
static enum MHD_Result finish_upload(imgstore_server__request *req, const char *digest)
{
    char sha256[65], location[256];
    int err;

    if (!digest || imgstore_schema_oci_digest(sha256, digest) < 0) {
        imgstore_server__oci_session_put(req->server, req->oci_session, false);
        req->oci_session = NULL;
        return imgstore_server__oci_error(req, MHD_HTTP_BAD_REQUEST, "DIGEST_INVALID", "%s",
                                          digest ? imgstore_error_last()
                                                 : "closing an upload needs ?digest=");
    }
    err = imgstore_server__oci_session_finish(req->server->oci, req->oci_session, sha256);
    imgstore_server__oci_session_put(req->server, req->oci_session, false);
    req->oci_session = NULL;
    if (err < 0)
        return imgstore_server__oci_error(req, MHD_HTTP_BAD_REQUEST, "DIGEST_INVALID", "%s",
                                          imgstore_error_last());
    snprintf(location, sizeof(location), "/v2/%s/blobs/%s", req->segments[1], digest);
    return reply_bytes(req, MHD_HTTP_CREATED, "", 0, NULL, sha256, location);
}

enum MHD_Result imgstore_server__route_oci_upload(imgstore_server__request *req)
{
    const char *name = req->segments[1];
    imgstore_server__oci_session *s = NULL;
    enum MHD_Result result;
    char *digest = NULL;
    int err;

    if (!check_name(req, name, &result))
        return result;
    if (req->oci_session) { /* a body was received: POST, PATCH, PUT */
        if (imgstore_server__oci_blob_flush(req) != MHD_YES) {
            imgstore_server__oci_session_put(req->server, req->oci_session, false);
            req->oci_session = NULL;
            return imgstore_server__oci_error(req, MHD_HTTP_CONTENT_TOO_LARGE, "SIZE_INVALID", "%s",
                                              imgstore_error_last());
        }
        digest = imgstore_server__query_string(req, "digest");
        if (strcmp(req->method, MHD_HTTP_METHOD_PUT) == 0 ||
            (strcmp(req->method, MHD_HTTP_METHOD_POST) == 0 && digest))
            result = finish_upload(req, digest);
        else
            result = reply_session(req, MHD_HTTP_ACCEPTED);
        free(digest);
        return result;
    }
    /* GET (where does it stand) and DELETE (cancel) */
    if ((err = imgstore_server__oci_session_take(&s, req->server, name, upload_id(req))) < 0)
        return imgstore_server__oci_error(
            req, err == IMGSTORE_ENOTFOUND ? MHD_HTTP_NOT_FOUND : MHD_HTTP_CONFLICT,
            "BLOB_UPLOAD_UNKNOWN", "%s", imgstore_error_last());
    req->oci_session = s;
    if (strcmp(req->method, "DELETE") == 0) {
        imgstore_server__oci_session_put(req->server, s, false);
        req->oci_session = NULL;
        return reply_bytes(req, MHD_HTTP_NO_CONTENT, "", 0, NULL, NULL, NULL);
    }
    return reply_session(req, MHD_HTTP_NO_CONTENT);
}

/* ---- pushing a manifest: a new version ------------------------------------------------------- */

typedef struct {
    imgstore_push *push;
} push_sink;

static int push_write(const void *buf, size_t len, void *payload)
{
    return imgstore_store_push_write(((push_sink *)payload)->push, buf, len);
}

/* Feed one layer's bytes to the push: a staged upload, or a file of a version of the same
 * image (a client that was told by HEAD that the blob is there did not send it again). */
static int feed_layer(imgstore_server__request *req, imgstore_push *push, const char *name,
                      const imgstore_oci_descriptor *layer, char *buf)
{
    imgstore_server__oci *oci = req->server->oci;
    uint64_t size = 0;
    oci_form form;
    int fd, err = 0;

    if ((fd = imgstore_server__oci_staged_open(oci, layer->sha256, &size)) >= 0) {
        ssize_t n;

        if (size != layer->size) {
            close(fd);
            return imgstore_error_set(
                IMGSTORE_EINVALID, "layer %s: sha256:%s is %llu bytes, not %llu", layer->title,
                layer->sha256, (unsigned long long)size, (unsigned long long)layer->size);
        }
        while (err == 0 && (n = read(fd, buf, COPY_BUF)) > 0)
            err = imgstore_store_push_write(push, buf, (size_t)n);
        close(fd);
        return err;
    }
    if (form_find(&form, req, name, layer->sha256) == 0 && file_with(form.m, layer->sha256)) {
        push_sink sink = {push};
        const imgstore_manifest_file *file = file_with(form.m, layer->sha256);
        imgstore_store *store;

        if ((err = imgstore_server__store(&store, req)) == 0)
            err = imgstore_store_file_read(store, form.m, file->path, 0, UINT64_MAX, push_write,
                                           &sink);
        form_clear(&form);
        return err;
    }
    req->oci_code = "MANIFEST_BLOB_UNKNOWN";
    return imgstore_error_set(IMGSTORE_EINVALID, "layer %s: blob sha256:%s was not uploaded",
                              layer->title, layer->sha256);
}

static bool blob_known(imgstore_server__request *req, const char *name, const char *sha256)
{
    uint64_t size;
    oci_form form;
    int fd = imgstore_server__oci_staged_open(req->server->oci, sha256, &size);

    if (fd >= 0) {
        close(fd);
        return true;
    }
    if (form_find(&form, req, name, sha256) < 0)
        return false;
    form_clear(&form);
    return true;
}

/* Check what imgstore can store before a byte is read: named, valid, known layers. */
static int check_pushed(imgstore_server__request *req, const char *name,
                        const imgstore_oci_manifest *pushed)
{
    int err;

    if (pushed->layer_count == 0)
        return imgstore_error_set(
            IMGSTORE_EINVALID, "manifest: no layers; an imgstore version holds at least one file");
    if (!blob_known(req, name, pushed->config.sha256)) {
        req->oci_code = "MANIFEST_BLOB_UNKNOWN";
        return imgstore_error_set(IMGSTORE_EINVALID, "config blob sha256:%s was not uploaded",
                                  pushed->config.sha256);
    }
    for (size_t i = 0; i < pushed->layer_count; i++) {
        const char *title = pushed->layers[i].title;

        if (!title)
            return imgstore_error_set(
                IMGSTORE_EINVALID,
                "manifest: layers[%zu] has no " IMGSTORE_OCI_TITLE
                " annotation: imgstore stores named files (as oras pushes them)",
                i);
        if ((err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, title)) < 0)
            return imgstore_error_wrap(err, "manifest: layers[%zu]: ", i);
    }
    return 0;
}

static int push_pushed(imgstore_manifest **out, bool *created_out, imgstore_server__request *req,
                       const char *name, const char *version, const imgstore_oci_manifest *pushed)
{
    imgstore_push_opts opts = {0};
    imgstore_push *push = NULL;
    imgstore_store *store;
    char *buf = NULL;
    int err;

    opts.name = name;
    opts.version = version;
    opts.actor = imgstore_server__actor(req);
    opts.signers = req->server->signers;
    /* as a /v1 upload: signed by the server's key, or pending until clients sign it */
    opts.allow_unsigned = req->server->signers.count == 0;
    opts.labels = pushed->labels;
    opts.label_count = pushed->label_count;
    if (pushed->source && pushed->revision) {
        opts.source_repository = pushed->source;
        opts.source_commit = pushed->revision;
    }
    if (pushed->created && imgstore_time_parse(&opts.created, pushed->created) < 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "manifest: org.opencontainers.image.created '%.64s' is not "
                                  "an RFC 3339 time",
                                  pushed->created);
    if (!(buf = malloc(COPY_BUF)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_push_begin(&push, store, &opts)) < 0)
        goto done;
    for (size_t i = 0; i < pushed->layer_count && err == 0; i++) {
        const imgstore_oci_descriptor *layer = &pushed->layers[i];

        /* detected from the bytes, as any push: the layer's media type is not trusted */
        if ((err = imgstore_store_push_file_begin(push, layer->title, NULL, layer->size)) < 0 ||
            (err = feed_layer(req, push, name, layer, buf)) < 0)
            break;
        if ((err = imgstore_store_push_file_end(push, layer->sha256)) == IMGSTORE_EVERIFY)
            err = imgstore_error_wrap(IMGSTORE_EINVALID, "layer %s: ", layer->title);
    }
    if (err == 0)
        err = imgstore_store_push_commit(push, out, created_out);
done:
    imgstore_store_push_free(push);
    free(buf);
    return err;
}

enum MHD_Result imgstore_server__route_oci_manifest_put(imgstore_server__request *req)
{
    const char *name = req->segments[1], *reference = req->segments[3];
    imgstore_oci_manifest *pushed = NULL;
    imgstore_manifest *stored = NULL;
    char sha256[65], want[65], location[256];
    const char *version = NULL;
    bool created = false;
    oci_form form;
    enum MHD_Result result;
    int err;

    if (!check_name(req, name, &result))
        return result;
    sha256_hex(sha256, req->body ? req->body : "", req->body_len);
    if (strchr(reference, ':')) {
        if (imgstore_schema_oci_digest(want, reference) < 0 || strcmp(want, sha256) != 0)
            return imgstore_server__oci_error(req, MHD_HTTP_BAD_REQUEST, "DIGEST_INVALID",
                                              "the manifest's digest is sha256:%s, not %.80s",
                                              sha256, reference);
    } else if (imgstore_schema_check_name(IMGSTORE_NAME_VERSION, reference) < 0) {
        return imgstore_server__oci_error(req, MHD_HTTP_BAD_REQUEST, MANIFEST_INVALID,
                                          "tag %.128s: %s", reference, imgstore_error_last());
    } else {
        version = reference; /* a tag is a version; by digest, the store derives one */
    }
    if ((err = imgstore_schema_oci_parse(&pushed, req->body ? req->body : "", req->body_len)) < 0 ||
        (err = check_pushed(req, name, pushed)) < 0 ||
        (err = push_pushed(&stored, &created, req, name, version, pushed)) < 0) {
        result = reply_store_error(req, err, MANIFEST_INVALID, MANIFEST_INVALID);
        goto done;
    }
    /* the exact bytes, for GET by this digest (spec: "Pushing Manifests") */
    imgstore_server__oci_pushed_put(req->server->oci, sha256, req->body, req->body_len);
    imgstore_server__oci_hint_put(req->server->oci, name, sha256, stored->version);
    if (form_load(&form, req, name, stored->version) == 0) /* pending: nothing to note yet */
        form_clear(&form);
    for (size_t i = 0; i < pushed->layer_count; i++)
        imgstore_server__oci_staged_remove(req->server->oci, pushed->layers[i].sha256);
    imgstore_server__oci_staged_remove(req->server->oci, pushed->config.sha256);
    imgstore_log(IMGSTORE_LOG_INFO, "server",
                 "oci push name=%s version=%s created=%s digest=sha256:%s", name, stored->version,
                 created ? "true" : "false", sha256);
    snprintf(location, sizeof(location), "/v2/%s/manifests/sha256:%s", name, sha256);
    result = reply_bytes(req, MHD_HTTP_CREATED, "", 0, NULL, sha256, location);
done:
    imgstore_manifest_free(stored);
    imgstore_oci_manifest_free(pushed);
    return result;
}
