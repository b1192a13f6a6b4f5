/*
 * Uploads: POST /v1/images/{name}[/{version}] with a multipart/form-data body, one part per
 * file (its filename is the file's name in the version), each optionally preceded by a field
 * "sha256.<file>" declaring its digest and "kind.<file>" overriding detection. Bytes go
 * straight from the request body into the store's push, chunk by chunk: nothing is buffered
 * beyond libmicrohttpd's read buffer and the store's current chunk. The version becomes
 * visible only when the whole body has arrived and the commit succeeds; any failure, a
 * digest that does not match, or a client that goes away abandons the push, which leaves
 * at most unreferenced blobs (docs/format.md, "Writing").
 */
#include "server/server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS  (2 * IMGSTORE_MAX_FILES)
#define FIELD_VALUE 72 /* a sha256 (64) or a kind name fits */

typedef struct {
    char key[IMGSTORE_NAME_MAX + 8];
    char value[FIELD_VALUE];
    size_t len;
} field;

struct imgstore_server__upload {
    imgstore_server *server;
    imgstore_push *push;
    struct MHD_PostProcessor *post;
    char current[IMGSTORE_NAME_MAX + 1]; /* the file being received, "" between files */
    uint64_t current_bytes;
    char done[IMGSTORE_MAX_FILES][IMGSTORE_NAME_MAX + 1];
    size_t done_count;
    field fields[MAX_FIELDS];
    size_t field_count;
    int err; /* the first failure; its message is kept in req's thread error state */
    char message[1024];
};

static int fail(imgstore_server__upload *upload, int err)
{
    if (upload->err == 0) {
        upload->err = err;
        snprintf(upload->message, sizeof(upload->message), "%s", imgstore_error_last());
    }
    return err;
}

static const char *field_value(imgstore_server__upload *upload, const char *prefix,
                               const char *file)
{
    char key[sizeof(upload->fields[0].key)];

    snprintf(key, sizeof(key), "%s.%s", prefix, file);
    for (size_t i = 0; i < upload->field_count; i++) {
        if (strcmp(upload->fields[i].key, key) == 0)
            return upload->fields[i].value;
    }
    return NULL;
}

static bool file_seen(imgstore_server__upload *upload, const char *file)
{
    if (strcmp(upload->current, file) == 0)
        return true;
    for (size_t i = 0; i < upload->done_count; i++) {
        if (strcmp(upload->done[i], file) == 0)
            return true;
    }
    return false;
}

static int end_file(imgstore_server__upload *upload)
{
    const char *expected = field_value(upload, "sha256", upload->current);
    int err;

    if (!upload->current[0])
        return 0;
    if ((err = imgstore_store_push_file_end(upload->push, expected)) < 0) {
        /* the client's declared digest is its input: a mismatch is a bad request */
        if (err == IMGSTORE_EVERIFY)
            err = imgstore_error_wrap(IMGSTORE_EINVALID,
                                      "%s: declared sha256 does not match: ", upload->current);
        return err;
    }
    if (upload->done_count < IMGSTORE_MAX_FILES)
        memcpy(upload->done[upload->done_count++], upload->current, sizeof(upload->current));
    upload->current[0] = '\0';
    return 0;
}

static int take_field(imgstore_server__upload *upload, const char *key, const char *data,
                      uint64_t off, size_t size)
{
    const char *dot = strchr(key, '.');
    field *f = NULL;
    int err;

    if (!dot || !((dot - key == 6 && strncmp(key, "sha256", 6) == 0) ||
                  (dot - key == 4 && strncmp(key, "kind", 4) == 0)))
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "form field '%.64s': expected sha256.<file> or kind.<file>", key);
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, dot + 1)) < 0)
        return imgstore_error_wrap(err, "form field %.8s: ", key);
    if (file_seen(upload, dot + 1))
        return imgstore_error_set(IMGSTORE_EINVALID, "form field %s must come before its file",
                                  key);
    for (size_t i = 0; i < upload->field_count; i++) {
        if (strcmp(upload->fields[i].key, key) == 0)
            f = &upload->fields[i];
    }
    if (!f) {
        if (upload->field_count == MAX_FIELDS)
            return imgstore_error_set(IMGSTORE_EINVALID, "too many form fields");
        f = &upload->fields[upload->field_count++];
        snprintf(f->key, sizeof(f->key), "%s", key);
    }
    if (off == 0)
        f->len = 0;
    if (off != f->len || size >= sizeof(f->value) - f->len)
        return imgstore_error_set(IMGSTORE_EINVALID, "form field %s: value too long", key);
    memcpy(f->value + f->len, data, size);
    f->len += size;
    f->value[f->len] = '\0';
    return 0;
}

static int take_file_bytes(imgstore_server__upload *upload, const char *filename, const char *data,
                           uint64_t off, size_t size)
{
    int err;

    /* a new part starts at offset 0 (an empty first piece of the same part is not new) */
    if (off == 0 && !(upload->current[0] && strcmp(upload->current, filename) == 0 &&
                      upload->current_bytes == 0)) {
        if ((err = end_file(upload)) < 0)
            return err;
        if ((err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, filename)) < 0)
            return err;
        if (file_seen(upload, filename))
            return imgstore_error_set(IMGSTORE_EINVALID, "file %s sent twice", filename);
        if ((err = imgstore_store_push_file_begin(upload->push, filename,
                                                  field_value(upload, "kind", filename), 0)) < 0)
            return err;
        snprintf(upload->current, sizeof(upload->current), "%s", filename);
        upload->current_bytes = 0;
    }
    upload->current_bytes += size;
    return size ? imgstore_store_push_write(upload->push, data, size) : 0;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size)
{
    imgstore_server__upload *upload = cls;
    int err;

    (void)kind;
    (void)content_type;
    (void)transfer_encoding;
    if (upload->err)
        return MHD_NO;
    err = filename ? take_file_bytes(upload, filename, data, off, size)
                   : take_field(upload, key ? key : "", data, off, size);
    if (err < 0) {
        fail(upload, err);
        return MHD_NO;
    }
    return MHD_YES;
}

static enum MHD_Result reply_failure(imgstore_server__request *req)
{
    imgstore_server__upload *upload = req->upload;

    imgstore_error_set(upload->err, "%s", upload->message);
    return imgstore_server__reply_error(req, upload->err);
}

enum MHD_Result imgstore_server__upload_begin(imgstore_server__request *req)
{
    const char *name = req->segments[2];
    const char *version = req->segment_count > 3 ? req->segments[3] : NULL;
    const char *type =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    imgstore_server__upload *upload;
    imgstore_push_opts opts = {0};
    imgstore_store *store;
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (version && (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0))
        return imgstore_server__reply_error(req, err);
    if (!type || strncmp(type, "multipart/form-data", 19) != 0)
        return imgstore_server__reply_status(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "invalid",
                                             "an upload is a multipart/form-data body");
    if (!(upload = calloc(1, sizeof(*upload))))
        return MHD_NO;
    upload->server = req->server;
    req->upload = upload;
    imgstore_server__metrics_gauge(req->server->metrics, "uploads_in_progress", 1);
    opts.name = name;
    opts.version = version;
    opts.actor = imgstore_server__actor(req);
    opts.signers = req->server->signers;
    /* without a key of its own the server stores the version pending: the client adds its
     * release signatures with POST .../signatures (docs/api.md) */
    opts.allow_unsigned = req->server->signers.count == 0;
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_push_begin(&upload->push, store, &opts)) < 0)
        return imgstore_server__reply_error(req, err);
    if (!(upload->post = MHD_create_post_processor(req->conn, 64 * 1024, on_part, upload)))
        return imgstore_server__reply_status(req, MHD_HTTP_BAD_REQUEST, "invalid",
                                             "malformed multipart/form-data header");
    return MHD_YES;
}

enum MHD_Result imgstore_server__upload_data(imgstore_server__request *req, const char *data,
                                             size_t size)
{
    imgstore_server__upload *upload = req->upload;
    uint64_t cap = req->server->config->max_upload_bytes;

    /* libmicrohttpd cannot answer before the body has been read: a body past the cap is cut
     * off (connection closed); any other failure is answered once the body has arrived. */
    if (req->bytes_in > cap) {
        imgstore_log(IMGSTORE_LOG_WARN, "server", "upload cut off path=%s limit=%llu", req->url,
                     (unsigned long long)cap);
        req->status = MHD_HTTP_CONTENT_TOO_LARGE;
        return MHD_NO;
    }
    if (upload->err == 0 && MHD_post_process(upload->post, data, size) != MHD_YES &&
        upload->err == 0)
        fail(upload, imgstore_error_set(IMGSTORE_EINVALID, "malformed multipart/form-data body"));
    return MHD_YES;
}

enum MHD_Result imgstore_server__upload_finish(imgstore_server__request *req)
{
    imgstore_server__upload *upload = req->upload;
    imgstore_manifest *manifest = NULL, *stored = NULL;
    char digest[65];
    bool created = false;
    enum MHD_Result result;
    int err;

    if (MHD_destroy_post_processor(upload->post) != MHD_YES && upload->err == 0)
        fail(upload, imgstore_error_set(IMGSTORE_EINVALID, "truncated multipart/form-data body"));
    upload->post = NULL;
    if (upload->err)
        return reply_failure(req);
    if ((err = end_file(upload)) < 0)
        return imgstore_server__reply_error(req, err);
    if (upload->done_count == 0)
        return imgstore_server__reply_status(req, MHD_HTTP_BAD_REQUEST, "invalid",
                                             "the upload holds no file part");
    if ((err = imgstore_store_push_commit(upload->push, &manifest, &created)) < 0)
        return imgstore_server__reply_error(req, err);
    /* the digest a channel would pin: of the stored canonical bytes */
    err =
        imgstore_store_manifest_get(&stored, digest, req->store, manifest->name, manifest->version);
    if (err == 0)
        result = imgstore_server__reply_json(
            req, created ? MHD_HTTP_CREATED : MHD_HTTP_OK,
            json_pack("{s:s, s:s, s:s, s:b}", "name", manifest->name, "version", manifest->version,
                      "manifest_sha256", digest, "created", created));
    else
        result = imgstore_server__reply_error(req, err);
    imgstore_manifest_free(stored);
    imgstore_manifest_free(manifest);
    return result;
}

void imgstore_server__upload_free(imgstore_server *server, imgstore_server__upload *upload)
{
    if (!upload)
        return;
    if (upload->post)
        MHD_destroy_post_processor(upload->post);
    /* a file begun but not ended (the client went away) is released by push_free: its
     * chunks stay unreferenced blobs and nothing becomes visible */
    imgstore_store_push_free(upload->push);
    imgstore_server__metrics_gauge(server->metrics, "uploads_in_progress", -1);
    free(upload);
}
