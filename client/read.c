/*
 * Reading a version's file bytes: one streamed GET, resumed at an offset with an HTTP Range
 * request, and asked once more when the server cuts it (docs/api.md: a chunk that fails its
 * digest is never sent). What the bytes are worth is the caller's check against a verified
 * manifest. Moved from cli/remote_pull.c (#11).
 */
#include "client/client_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    imgstore_client_write_fn write;
    void *payload;
    uint64_t asked; /* the offset this request asked for */
    uint64_t at;    /* the next byte the caller gets */
    bool started;   /* this request's first bytes arrived */
} read_sink;

static int sink_body(long status, const void *buf, size_t len, void *payload)
{
    read_sink *sink = payload;
    bool restarted = false;
    int err;

    /* asked for a range, got the whole file: the caller starts its copy over */
    if (!sink->started && status == 200 && sink->asked > 0) {
        restarted = true;
        sink->at = 0;
    }
    sink->started = true;
    if ((err = sink->write(restarted, buf, len, sink->payload)) < 0)
        return err;
    sink->at += len;
    return 0;
}

static int file_read(imgstore_client *client, const char *name, const char *version,
                     const char *file, uint64_t offset, imgstore_client_write_fn write,
                     void *payload, bool retry_cut)
{
    read_sink sink = {write, payload, offset, offset, false};
    char *path = NULL;
    uint64_t cut;
    int err;

    if (!write)
        return imgstore_error_set(IMGSTORE_EINVALID, "file_read: no write function");
    if ((err = imgstore_client_check_names(name, version, NULL)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, file)) < 0)
        return err;
    if (!(path = imgstore_strfmt("/v1/images/%s/%s/files/%s", name, version, file)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    err = imgstore_client__download(client, path, offset, sink_body, &sink);
    /* The server closed before Content-Length: streaming from the store (no cache), it does
     * so when a chunk fails its digest, sending nothing of it, which the client cannot tell
     * from a lost connection by itself. So ask once more from where it stopped: a lost
     * connection resumes, while a server that again closes without sending one more byte at
     * the same offset refuses that chunk: a damaged store object. */
    if (retry_cut && err < 0 && client->last_result == CURLE_PARTIAL_FILE) {
        cut = sink.at;
        sink.asked = cut;
        sink.started = false;
        err = imgstore_client__download(client, path, cut, sink_body, &sink);
        if (err < 0 && client->last_result == CURLE_PARTIAL_FILE && sink.at == cut)
            err = imgstore_error_set(IMGSTORE_EVERIFY,
                                     "%s %s: the server stopped twice at byte %llu of %s without "
                                     "sending it: it refuses that chunk (damaged store object)",
                                     name, version, (unsigned long long)cut, file);
    }
    free(path);
    return err;
}

int imgstore_client_file_read(imgstore_client *client, const char *name, const char *version,
                              const char *file, uint64_t offset, imgstore_client_write_fn write,
                              void *payload)
{
    return file_read(client, name, version, file, offset, write, payload, true);
}

int imgstore_client_file_read_once(imgstore_client *client, const char *name, const char *version,
                                   const char *file, uint64_t offset,
                                   imgstore_client_write_fn write, void *payload)
{
    return file_read(client, name, version, file, offset, write, payload, false);
}
