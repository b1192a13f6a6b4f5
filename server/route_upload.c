/*
 * Uploads: POST /v1/images/{name}[/{version}] with a multipart/form-data body, one part per
 * file (its filename is the file's name in the version), each optionally preceded by a field
 * "sha256.<file>" declaring its digest and "kind.<file>" overriding detection, and before the
 * first file the provenance fields "label" (KEY=VALUE, repeatable) and "source" (URL@COMMIT).
 * The multipart parser is our own (multipart.c) and hands file bytes to the store's push in
 * place, from libmicrohttpd's read buffer: libmicrohttpd's post processor copied every byte
 * into a buffer of its own first. Nothing is buffered beyond that read buffer, a possible delimiter
 * prefix and the store's current chunk. The version becomes visible only when the whole body
 * has arrived and the commit succeeds; any failure, a digest that does not match, or a
 * client that goes away abandons the push, which leaves at most unreferenced blobs
 * (docs/format.md, "Writing").
 */
#include "server/server_internal.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_FIELDS  (2 * IMGSTORE_MAX_FILES)
#define FIELD_VALUE 72            /* a sha256 (64) or a kind name fits */
#define STAGE_MAX   (1024 * 1024) /* body bytes gathered before a worker stores them */

typedef struct {
    char key[IMGSTORE_SERVER_MULTIPART_NAME_MAX];
    char value[FIELD_VALUE];
} field;

struct imgstore_server__upload {
    imgstore_server *server;
    bool counted;          /* holds one of the max_uploads places */
    imgstore_store *store; /* borrowed from the request */
    imgstore_push_opts opts;
    imgstore_push *push; /* begun at the first file part, once provenance fields are known */
    char current[IMGSTORE_NAME_MAX + 1]; /* the file being received, "" between files */
    char done[IMGSTORE_MAX_FILES][IMGSTORE_NAME_MAX + 1];
    size_t done_count;
    field fields[MAX_FIELDS];
    size_t field_count;
    imgstore_label labels[IMGSTORE_MAX_LABELS];
    char *source; /* "URL@COMMIT", cut at the '@' once parsed */

    /* the multipart parser (multipart.c): file bytes are handed on in place, from
     * libmicrohttpd's buffer */
    imgstore_server__multipart *multipart;

    /* body bytes gathered by the polling thread: libmicrohttpd reads ~16 KiB at a time (its
     * connection memory is max_header_bytes), and a hand-off to a worker per read cost more
     * than the storing itself */
    char *stage; /* STAGE_MAX */
    size_t stage_len;
    /* the feeder: a job on the worker pool that parses and stores a full stage while the
     * polling thread gathers the next one (suspending the connection for it would make
     * receiving and storing take turns). A job, not a thread of the upload's own: a slow
     * upload holds no thread between stages (issue #10.3) */
    imgstore_server__job feed_job;
    bool feeder_started, sync_ready;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char *work; /* STAGE_MAX: the stage handed over */
    size_t work_len;
    bool busy; /* under lock: a feed job is queued or running */

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

static int end_file(void *payload)
{
    imgstore_server__upload *upload = payload;
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

/* "label" = "KEY=VALUE" and "source" = "URL@COMMIT", split as `imgstore push` splits its
 * --label and --source; the store checks the parts (names, lengths, UTF-8) as for a local
 * push. They shape the manifest, so they must come before the first file. */
static int take_provenance(imgstore_server__upload *upload, const char *key, const char *value)
{
    imgstore_push_opts *opts = &upload->opts;

    if (upload->push)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "form field %s must come before the first file", key);
    if (strcmp(key, "source") == 0) {
        const char *at = strrchr(value, '@');

        if (upload->source)
            return imgstore_error_set(IMGSTORE_EINVALID, "form field source given twice");
        if (!at || at == value || !at[1])
            return imgstore_error_set(
                IMGSTORE_EINVALID, "form field source: expected URL@COMMIT, got '%.200s'", value);
        if (!(upload->source = strdup(value)))
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        upload->source[at - value] = '\0';
        opts->source_repository = upload->source;
        opts->source_commit = upload->source + (at - value) + 1;
        return 0;
    }
    const char *eq = strchr(value, '=');
    imgstore_label *label;

    if (!eq || eq == value)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "form field label: expected KEY=VALUE, got '%.200s'", value);
    if (opts->label_count == IMGSTORE_MAX_LABELS)
        return imgstore_error_set(IMGSTORE_EINVALID, "form field label: at most %d labels",
                                  IMGSTORE_MAX_LABELS);
    label = &upload->labels[opts->label_count];
    if (!(label->key = strdup(value)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    label->key[eq - value] = '\0';
    label->value = label->key + (eq - value) + 1;
    opts->label_count++;
    return 0;
}

static int take_field(const char *key, const char *value, size_t len, void *payload)
{
    imgstore_server__upload *upload = payload;
    const char *dot = strchr(key, '.');
    field *f = NULL;
    int err;

    if (memchr(value, '\0', len))
        return imgstore_error_set(IMGSTORE_EINVALID, "form field %.64s: holds a NUL byte", key);
    if (strcmp(key, "label") == 0 || strcmp(key, "source") == 0)
        return take_provenance(upload, key, value);
    if (!dot || !((dot - key == 6 && strncmp(key, "sha256", 6) == 0) ||
                  (dot - key == 4 && strncmp(key, "kind", 4) == 0)))
        return imgstore_error_set(
            IMGSTORE_EINVALID,
            "form field '%.64s': expected sha256.<file>, kind.<file>, label or source", key);
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, dot + 1)) < 0)
        return imgstore_error_wrap(err, "form field %.8s: ", key);
    if (file_seen(upload, dot + 1))
        return imgstore_error_set(IMGSTORE_EINVALID, "form field %s must come before its file",
                                  key);
    if (len >= sizeof(f->value))
        return imgstore_error_set(IMGSTORE_EINVALID, "form field %s: value too long", key);
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
    memcpy(f->value, value, len + 1);
    return 0;
}

static int begin_file(const char *filename, void *payload)
{
    imgstore_server__upload *upload = payload;
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, filename)) < 0)
        return err;
    if (file_seen(upload, filename))
        return imgstore_error_set(IMGSTORE_EINVALID, "file %s sent twice", filename);
    if (!upload->push &&
        (err = imgstore_store_push_begin(&upload->push, upload->store, &upload->opts)) < 0)
        return err;
    if ((err = imgstore_store_push_file_begin(upload->push, filename,
                                              field_value(upload, "kind", filename), 0)) < 0)
        return err;
    /* checked: at most IMGSTORE_NAME_MAX bytes */
    memcpy(upload->current, filename, strlen(filename) + 1);
    return 0;
}

static int file_data(const char *data, size_t len, void *payload)
{
    imgstore_server__upload *upload = payload;

    return imgstore_store_push_write(upload->push, data, len);
}

static const imgstore_server__multipart_callbacks upload_callbacks = {
    .file_begin = begin_file,
    .file_data = file_data,
    .file_end = end_file,
    .field = take_field,
};

static int feed(imgstore_server__upload *upload, const char *data, size_t len)
{
    return imgstore_server__multipart_feed(upload->multipart, data, len);
}

static enum MHD_Result reply_failure(imgstore_server__request *req)
{
    imgstore_server__upload *upload = req->upload;

    imgstore_error_set(upload->err, "%s", upload->message);
    return imgstore_server__reply_error(req, upload->err);
}

static void feed_run(imgstore_server__job *job);

enum MHD_Result imgstore_server__upload_begin(imgstore_server__request *req)
{
    const char *name = req->segments[2];
    const char *version = req->segment_count > 3 ? req->segments[3] : NULL;
    const char *type =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    imgstore_server__upload *upload;
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (version && (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0))
        return imgstore_server__reply_error(req, err);
    if (!type || strncasecmp(type, "multipart/form-data", 19) != 0)
        return imgstore_server__reply_status(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "invalid",
                                             "an upload is a multipart/form-data body");
    if (!(upload = calloc(1, sizeof(*upload))))
        return MHD_NO;
    upload->server = req->server;
    req->upload = upload;
    /* each upload holds the store's writer threads and its chunk buffers, and a worker while
     * a stage is stored (docs/server.md): their number is bounded, the rest retry */
    pthread_mutex_lock(&req->server->lock);
    upload->counted = req->server->uploads < req->server->config->max_uploads;
    req->server->uploads += upload->counted;
    pthread_mutex_unlock(&req->server->lock);
    if (!upload->counted)
        return imgstore_server__reply_status(
            req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
            "too many uploads at once (max_uploads = %llu); retry shortly",
            (unsigned long long)req->server->config->max_uploads);
    imgstore_server__metrics_gauge(req->server->metrics, "uploads_in_progress", 1);
    if ((err = imgstore_server__multipart_new(&upload->multipart, type, &upload_callbacks,
                                              upload)) < 0)
        return err == IMGSTORE_EINVALID ? imgstore_server__reply_error(req, err) : MHD_NO;
    if (!(upload->stage = malloc(STAGE_MAX)) || !(upload->work = malloc(STAGE_MAX)))
        return MHD_NO;
    upload->opts.name = name;
    upload->opts.version = version;
    upload->opts.actor = imgstore_server__actor(req);
    upload->opts.signers = req->server->signers;
    upload->opts.labels = upload->labels;
    /* without a key of its own the server stores the version pending: the client adds its
     * release signatures with POST .../signatures (docs/api.md) */
    upload->opts.allow_unsigned = req->server->signers.count == 0;
    if ((err = imgstore_server__store(&upload->store, req)) < 0)
        return imgstore_server__reply_error(req, err);
    if (pthread_mutex_init(&upload->lock, NULL) != 0)
        return MHD_NO;
    if (pthread_cond_init(&upload->changed, NULL) != 0) {
        pthread_mutex_destroy(&upload->lock);
        return MHD_NO;
    }
    upload->sync_ready = true;
    upload->feed_job.run = feed_run;
    upload->feeder_started = true;
    return MHD_YES;
}

/* The feed job: store the stage handed over. upload->err is written by it only, and read by
 * others once it is idle (busy false). */
static void feed_run(imgstore_server__job *job)
{
    imgstore_server__upload *upload =
        (imgstore_server__upload *)((char *)job - offsetof(imgstore_server__upload, feed_job));
    int err;

    if (upload->err == 0 && (err = feed(upload, upload->work, upload->work_len)) < 0)
        fail(upload, err);
    pthread_mutex_lock(&upload->lock);
    upload->busy = false;
    pthread_cond_broadcast(&upload->changed);
    pthread_mutex_unlock(&upload->lock);
}

/* Hand the stage to the feeder, waiting for it to be idle or not; false if it was busy. */
static bool hand_over(imgstore_server__upload *upload, bool wait)
{
    char *swap;

    pthread_mutex_lock(&upload->lock);
    while (wait && upload->busy)
        pthread_cond_wait(&upload->changed, &upload->lock);
    if (upload->busy) {
        pthread_mutex_unlock(&upload->lock);
        return false;
    }
    swap = upload->work;
    upload->work = upload->stage;
    upload->work_len = upload->stage_len;
    upload->stage = swap;
    upload->stage_len = 0;
    upload->busy = true;
    pthread_mutex_unlock(&upload->lock);
    /* the pool is elastic up to max_connections + max_uploads threads (server.c), so this
     * job never waits behind jobs that block, one of which may be waiting for it */
    imgstore_server__workers_run(upload->server->workers, &upload->feed_job);
    return true;
}

/* Let the feed job store what it holds; no more are queued after this. */
static void feeder_stop(imgstore_server__upload *upload)
{
    if (!upload->feeder_started)
        return;
    pthread_mutex_lock(&upload->lock);
    while (upload->busy)
        pthread_cond_wait(&upload->changed, &upload->lock);
    pthread_mutex_unlock(&upload->lock);
    upload->feeder_started = false;
}

/* A trickle keeps a connection from ever being idle: past the window, an upload must
 * average upload_min_rate or it gives its place back (issue #10.3). */
static bool too_slow(const imgstore_server__request *req)
{
    const imgstore_server_config *config = req->server->config;
    double elapsed = imgstore_server__now() - req->start;

    return config->upload_min_rate && elapsed > (double)config->upload_rate_window &&
           (double)req->bytes_in < (double)config->upload_min_rate * elapsed;
}

bool imgstore_server__upload_buffer(imgstore_server__request *req, const char *data, size_t *size)
{
    imgstore_server__upload *upload = req->upload;

    /* past the cap or too slow: the worker cuts the body off; full while the feeder is busy:
     * a worker waits for it, and the connection is suspended meanwhile (back-pressure) */
    if (req->bytes_in + *size > req->server->config->max_upload_bytes || too_slow(req) ||
        (upload->stage_len + *size > STAGE_MAX &&
         (!upload->feeder_started || !hand_over(upload, false))))
        return false;
    memcpy(upload->stage + upload->stage_len, data, *size);
    upload->stage_len += *size;
    req->bytes_in += *size;
    *size = 0;
    return true;
}

enum MHD_Result imgstore_server__upload_data(imgstore_server__request *req, const char *data,
                                             size_t size)
{
    imgstore_server__upload *upload = req->upload;
    uint64_t cap = req->server->config->max_upload_bytes;
    int err;

    /* libmicrohttpd cannot answer before the body has been read: a body past the cap is cut
     * off (connection closed); any other failure is answered once the body has arrived. */
    if (req->bytes_in > cap) {
        imgstore_log(IMGSTORE_LOG_WARN, "server", "upload cut off path=%s limit=%llu", req->url,
                     (unsigned long long)cap);
        req->status = MHD_HTTP_CONTENT_TOO_LARGE;
        return MHD_NO;
    }
    if (too_slow(req)) {
        imgstore_log(IMGSTORE_LOG_WARN, "server",
                     "upload too slow, cut off path=%s bytes=%llu seconds=%.0f min_rate=%llu",
                     req->url, (unsigned long long)req->bytes_in,
                     imgstore_server__now() - req->start,
                     (unsigned long long)req->server->config->upload_min_rate);
        req->status = MHD_HTTP_REQUEST_TIMEOUT;
        return MHD_NO;
    }
    if (upload->feeder_started && size <= STAGE_MAX) {
        if (upload->stage_len + size > STAGE_MAX)
            hand_over(upload, true);
        memcpy(upload->stage + upload->stage_len, data, size);
        upload->stage_len += size;
        return MHD_YES;
    }
    /* more than a stage at once (not what libmicrohttpd does): stored here, in order */
    feeder_stop(upload);
    if (upload->err == 0 && upload->stage_len &&
        (err = feed(upload, upload->stage, upload->stage_len)) < 0)
        fail(upload, err);
    upload->stage_len = 0;
    if (upload->err == 0 && (err = feed(upload, data, size)) < 0)
        fail(upload, err);
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

    if (upload->feeder_started && upload->stage_len)
        hand_over(upload, true);
    feeder_stop(upload);
    if (upload->err == 0 && upload->stage_len &&
        (err = feed(upload, upload->stage, upload->stage_len)) < 0)
        fail(upload, err);
    upload->stage_len = 0;
    if (upload->err == 0 && !imgstore_server__multipart_done(upload->multipart))
        fail(upload, imgstore_error_set(IMGSTORE_EINVALID, "truncated multipart/form-data body"));
    if (upload->err)
        return reply_failure(req);
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
    feeder_stop(upload);
    if (upload->sync_ready) {
        pthread_cond_destroy(&upload->changed);
        pthread_mutex_destroy(&upload->lock);
    }
    /* a file begun but not ended (the client went away) is released by push_free: its
     * chunks stay unreferenced blobs and nothing becomes visible */
    imgstore_store_push_free(upload->push);
    for (size_t i = 0; i < upload->opts.label_count; i++)
        free(upload->labels[i].key);
    free(upload->source);
    imgstore_server__multipart_free(upload->multipart);
    free(upload->stage);
    free(upload->work);
    imgstore_server__metrics_gauge(server->metrics, "uploads_in_progress", -1);
    if (upload->counted) {
        pthread_mutex_lock(&server->lock);
        server->uploads--;
        pthread_mutex_unlock(&server->lock);
    }
    free(upload);
}
