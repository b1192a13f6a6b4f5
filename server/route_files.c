/*
 * File downloads: GET /v1/images/{name}/{version}/files/{file}. Conditional requests
 * (ETag = the file's SHA-256, If-None-Match, If-Range), one byte range (206, 416), immutable
 * caching headers, and the bytes themselves, which are never sent unverified:
 *
 * - from the verified cache (cache.c) with sendfile when the file fits the cache: the first
 *   request fills it, a damaged store object fails the fill and the answer is a 500 before
 *   any byte is sent;
 * - otherwise streamed chunk by chunk from the store, each chunk checked by the store before
 *   its first byte is copied out; a damaged chunk aborts the connection mid-body (the client
 *   sees a short body, never a wrong one). Streams hold at most one chunk (<= 4 MiB) each and
 *   are capped by stream_concurrency.
 */
#include "server/server_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STREAM_WAIT_SECS 30

typedef struct {
    imgstore_server__job job; /* loads the next chunk on a worker */
    imgstore_server *server;
    struct MHD_Connection *conn; /* suspended while a chunk loads */
    imgstore_store *store;
    imgstore_manifest *manifest;
    const imgstore_manifest_file *file;
    uint64_t start, end; /* the file range sent: [start, end) */
    char *buf;           /* one verified chunk */
    size_t buf_len, buf_cap;
    uint64_t buf_offset; /* file offset of buf[0] */
    size_t chunk_index;
    uint64_t chunk_start;
    uint64_t load_at; /* the offset the worker was asked for */
    bool loaded;      /* ...and it has been loaded (or failed) */
    bool failed;
} stream;

static int stream_take(const void *buf, size_t len, void *payload)
{
    stream *s = payload;

    if (len > s->buf_cap - s->buf_len)
        return imgstore_error_set(IMGSTORE_ERROR, "chunk larger than its manifest entry");
    memcpy(s->buf + s->buf_len, buf, len);
    s->buf_len += len;
    return 0;
}

/* Load (and so verify) the chunk holding file offset `at` into s->buf. */
static int stream_load(stream *s, uint64_t at)
{
    const imgstore_manifest_file *file = s->file;

    if (at < s->chunk_start) {
        s->chunk_index = 0;
        s->chunk_start = 0;
    }
    while (s->chunk_index < file->chunk_count &&
           s->chunk_start + file->chunks[s->chunk_index].size <= at) {
        s->chunk_start += file->chunks[s->chunk_index].size;
        s->chunk_index++;
    }
    if (s->chunk_index >= file->chunk_count)
        return imgstore_error_set(IMGSTORE_EINVALID, "offset past the end of the file");
    s->buf_len = 0;
    s->buf_offset = s->chunk_start;
    return imgstore_store_file_read(s->store, s->manifest, file->path, s->chunk_start,
                                    file->chunks[s->chunk_index].size, stream_take, s);
}

/* On a worker, with the connection suspended: read and verify the chunk, then resume. */
static void stream_load_job(imgstore_server__job *job)
{
    stream *s = (stream *)job;
    imgstore_server *server = s->server;
    struct MHD_Connection *conn = s->conn;
    int err;

    if ((err = stream_load(s, s->load_at)) < 0) {
        s->failed = true;
        imgstore_log(IMGSTORE_LOG_ERROR, "server",
                     "download aborted name=%s version=%s file=%s offset=%llu error=%s "
                     "message=\"%s\"",
                     s->manifest->name, s->manifest->version, s->file->path,
                     (unsigned long long)s->load_at, imgstore_error_name(err),
                     imgstore_error_last());
        if (err == IMGSTORE_EVERIFY)
            imgstore_server__metrics_count(server->metrics, "verification_failures");
        imgstore_server__metrics_count(server->metrics, "stream_aborts");
    }
    s->loaded = true;
    imgstore_server__resume(server, conn);
}

/*
 * Called on a polling thread, which must not read git: when the buffer does not hold `pos`,
 * the connection is suspended, a worker loads the chunk, and libmicrohttpd asks again once
 * it is resumed.
 */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream *s = cls;
    uint64_t at = s->start + pos;
    size_t n;

    if (s->failed)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (at >= s->end)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (at < s->buf_offset || at >= s->buf_offset + s->buf_len) {
        if (s->loaded && s->load_at == at)
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the load did not cover it */
        if (!imgstore_server__suspend(s->server, s->conn))
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the drain is over */
        s->load_at = at;
        s->loaded = false;
        s->job.run = stream_load_job;
        imgstore_server__workers_run(s->server->workers, &s->job);
        return 0;
    }
    n = (size_t)(s->buf_offset + s->buf_len - at);
    if (n > max)
        n = max;
    if (n > s->end - at)
        n = (size_t)(s->end - at);
    memcpy(buf, s->buf + (at - s->buf_offset), n);
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream *s = cls;
    imgstore_server *server = s->server;

    imgstore_server__store_put(server, s->store);
    imgstore_manifest_free(s->manifest);
    free(s->buf);
    free(s);
    pthread_mutex_lock(&server->lock);
    server->streams--;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
    imgstore_server__metrics_gauge(server->metrics, "streams", -1);
}

/* Wait for a stream slot (streams hold a chunk buffer each: memory stays bounded). */
static bool stream_slot(imgstore_server *server)
{
    struct timespec deadline;
    bool ok = true;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += STREAM_WAIT_SECS;
    pthread_mutex_lock(&server->lock);
    /* stopping: the drain must not wait for this wait */
    while (ok && server->streams >= server->config->stream_concurrency)
        ok = !server->stopping &&
             pthread_cond_timedwait(&server->changed, &server->lock, &deadline) == 0;
    if (ok)
        server->streams++;
    pthread_mutex_unlock(&server->lock);
    if (ok)
        imgstore_server__metrics_gauge(server->metrics, "streams", 1);
    return ok;
}

static void add_file_headers(struct MHD_Response *response, const char *etag)
{
    MHD_add_response_header(response, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL,
                            "public, max-age=31536000, immutable");
    MHD_add_response_header(response, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
}

static const imgstore_manifest_file *find_file(const imgstore_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->file_count; i++) {
        if (strcmp(m->files[i].path, path) == 0)
            return &m->files[i];
    }
    return NULL;
}

/* The body as a verified stream from the store (takes the manifest and the store handle). */
static struct MHD_Response *stream_response(imgstore_server__request *req,
                                            imgstore_manifest **manifest,
                                            const imgstore_manifest_file *file, uint64_t start,
                                            uint64_t end)
{
    stream *s = calloc(1, sizeof(*s));
    struct MHD_Response *response;
    size_t cap = 0;

    if (!s)
        return NULL;
    for (size_t i = 0; i < file->chunk_count; i++) {
        if (file->chunks[i].size > cap)
            cap = (size_t)file->chunks[i].size;
    }
    if (!(s->buf = malloc(cap ? cap : 1))) {
        free(s);
        return NULL;
    }
    s->server = req->server;
    s->conn = req->conn;
    s->buf_cap = cap;
    s->file = file;
    s->start = start;
    s->end = end;
    response =
        MHD_create_response_from_callback(end - start, 256 * 1024, stream_read, s, stream_free);
    if (!response) {
        free(s->buf);
        free(s);
        return NULL;
    }
    /* the response owns them now: it may outlive this request's bookkeeping */
    s->manifest = *manifest;
    *manifest = NULL;
    s->store = req->store;
    req->store = NULL;
    return response;
}

enum MHD_Result imgstore_server__send_file(imgstore_server__request *req,
                                           imgstore_manifest **manifest,
                                           const imgstore_manifest_file *file,
                                           const char *content_type, const char *digest_header)
{
    imgstore_server *server = req->server;
    const char *if_none_match, *if_range, *range_header;
    struct MHD_Response *response = NULL;
    imgstore_store *store;
    uint64_t start = 0, end = 0;
    unsigned status = MHD_HTTP_OK;
    bool head = strcmp(req->method, MHD_HTTP_METHOD_HEAD) == 0;
    char etag[80], content_range[96];
    int err, range;

    if ((err = imgstore_server__store(&store, req)) < 0)
        return imgstore_server__reply_error(req, err);
    snprintf(etag, sizeof(etag), "\"%s\"", file->sha256);
    if_none_match =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (imgstore_server__etag_matches(if_none_match, etag)) {
        response = imgstore_server__not_modified(etag, file->size);
        if (response) {
            MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL,
                                    "public, max-age=31536000, immutable");
            MHD_add_response_header(response, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
        }
        return imgstore_server__queue(req, MHD_HTTP_NOT_MODIFIED, response, 0);
    }
    range_header = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    if_range = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_RANGE);
    /* If-Range with anything but our (strong, eternal) ETag: send the whole file */
    if (!imgstore_server__if_range_allows(if_range, etag))
        range_header = NULL;
    range = imgstore_server__parse_range(&start, &end, range_header, file->size);
    if (range < 0) {
        snprintf(req->extra_header_value, sizeof(req->extra_header_value), "bytes */%llu",
                 (unsigned long long)file->size);
        req->extra_header_name = MHD_HTTP_HEADER_CONTENT_RANGE;
        return imgstore_server__reply_status(req, MHD_HTTP_RANGE_NOT_SATISFIABLE,
                                             "range_not_satisfiable", "%s is %llu bytes long",
                                             file->path, (unsigned long long)file->size);
    }
    if (range == 0) {
        start = 0;
        end = file->size;
    } else {
        status = MHD_HTTP_PARTIAL_CONTENT;
        snprintf(content_range, sizeof(content_range), "bytes %llu-%llu/%llu",
                 (unsigned long long)start, (unsigned long long)end - 1,
                 (unsigned long long)file->size);
    }
    if (end == start) {
        response = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else if (head) {
        response = imgstore_server__head_response(end - start);
    } else if (imgstore_server__cache_enabled(server->cache, file->size)) {
        bool hit;
        int fd;

        if ((err = imgstore_server__cache_open(&fd, &hit, server->cache, store, *manifest, file)) <
            0) {
            if (err == IMGSTORE_EVERIFY)
                imgstore_server__metrics_count(server->metrics, "verification_failures");
            return imgstore_server__reply_error(req, err);
        }
        imgstore_server__metrics_count(server->metrics, hit ? "cache_hits" : "cache_misses");
        response = MHD_create_response_from_fd_at_offset64(end - start, fd, (int64_t)start);
        if (!response)
            close(fd);
    } else {
        if (!stream_slot(server))
            return imgstore_server__reply_status(req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                                                 "too many downloads streaming, try again");
        if (!(response = stream_response(req, manifest, file, start, end))) {
            pthread_mutex_lock(&server->lock);
            server->streams--;
            pthread_mutex_unlock(&server->lock);
            imgstore_server__metrics_gauge(server->metrics, "streams", -1);
        }
    }
    if (!response)
        return MHD_NO;
    add_file_headers(response, etag);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (digest_header)
        MHD_add_response_header(response, "Docker-Content-Digest", digest_header);
    if (status == MHD_HTTP_PARTIAL_CONTENT)
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
    return imgstore_server__queue(req, status, response, head ? 0 : end - start);
}

enum MHD_Result imgstore_server__route_file(imgstore_server__request *req)
{
    const char *name = req->segments[2], *version = req->segments[3], *path = req->segments[5];
    const imgstore_manifest_file *file;
    imgstore_manifest *m = NULL;
    imgstore_store *store;
    enum MHD_Result result;
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, path)) < 0 ||
        (err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_manifest_get_trusted(&m, NULL, store, name, version)) < 0)
        return imgstore_server__reply_error(req, err);
    if (!(file = find_file(m, path))) {
        imgstore_error_set(IMGSTORE_ENOTFOUND, "%s %s has no file %s", name, version, path);
        result = imgstore_server__reply_error(req, IMGSTORE_ENOTFOUND);
    } else {
        result = imgstore_server__send_file(req, &m, file, "application/octet-stream", NULL);
    }
    imgstore_manifest_free(m);
    return result;
}
