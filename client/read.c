/*
 * Reading a version's file bytes: one streamed GET, resumed at an offset with an HTTP Range
 * request, and asked once more when the server cuts it (docs/api.md: a chunk that fails its
 * digest is never sent). What the bytes are worth is the caller's check against a verified
 * manifest. Moved from cli/remote_pull.c (#11). imgstore_client_file_pull_fd is that check
 * for a file pulled into a partial file (pull --server and the agent).
 */
#include "client/client_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ---- one file into a partial file, resumed and checked --------------------------------- */

typedef struct {
    int fd;
    uint64_t offset, expect; /* bytes in the partial file; the manifest's size */
    imgstore_sha256 *sha;
    const char *file;
} partial_sink;

static int partial_write(bool restarted, const void *buf, size_t len, void *payload)
{
    partial_sink *sink = payload;
    int err;

    /* asked for a range, got the whole file: start the partial file over */
    if (restarted) {
        if (ftruncate(sink->fd, 0) < 0 || lseek(sink->fd, 0, SEEK_SET) < 0)
            return imgstore_error_set(IMGSTORE_ERROR, "cannot restart %s: %s", sink->file,
                                      strerror(errno));
        imgstore_sha256_free(sink->sha);
        sink->sha = NULL;
        if ((err = imgstore_sha256_new(&sink->sha)) < 0)
            return err;
        sink->offset = 0;
    }
    if (len > sink->expect - sink->offset)
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "%s: the server sent more than the %llu bytes the manifest "
                                  "says",
                                  sink->file, (unsigned long long)sink->expect);
    if ((err = imgstore_write_all(sink->fd, buf, len)) < 0)
        return err;
    imgstore_sha256_update(sink->sha, buf, len);
    sink->offset += len;
    return 0;
}

/* Hash what an earlier, interrupted pull left in the partial file (it is checked with the rest
 * at the end, so bytes left by anyone else only cost a failed pull, never a bad file). */
static int hash_existing(partial_sink *sink)
{
    char buf[65536];
    uint64_t left = sink->offset;

    while (left > 0) {
        ssize_t n = read(sink->fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return imgstore_error_set(IMGSTORE_ERROR, "cannot read %s: %s", sink->file,
                                      n < 0 ? strerror(errno) : "short file");
        imgstore_sha256_update(sink->sha, buf, (size_t)n);
        left -= (uint64_t)n;
    }
    return 0;
}

int imgstore_client_file_pull_fd(imgstore_client *client, const imgstore_manifest *m,
                                 const imgstore_manifest_file *file, int fd, const char *path)
{
    partial_sink sink = {fd, 0, file->size, NULL, file->path};
    char digest[65];
    struct stat st;
    int err = 0;

    if (fstat(fd, &st) < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot read %s: %s", path, strerror(errno));
    if ((uint64_t)st.st_size > file->size && ftruncate(fd, 0) < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot truncate %s: %s", path, strerror(errno));
    sink.offset = (uint64_t)st.st_size > file->size ? 0 : (uint64_t)st.st_size;
    if ((err = imgstore_sha256_new(&sink.sha)) < 0 || (err = hash_existing(&sink)) < 0)
        goto done;
    if (lseek(fd, (off_t)sink.offset, SEEK_SET) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot seek in %s: %s", path, strerror(errno));
        goto done;
    }
    if (sink.offset < file->size) {
        uint64_t base = client->progress_base;

        client->progress_base += sink.offset; /* the kept prefix is done */
        err = imgstore_client_file_read(client, m->name, m->version, file->path, sink.offset,
                                        partial_write, &sink);
        client->progress_base = base;
        if (err < 0)
            goto done;
    }
    imgstore_sha256_final_hex(sink.sha, digest);
    if (sink.offset != file->size || strcmp(digest, file->sha256) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s %s: %s does not match the signed manifest (%llu bytes, "
                                 "sha256 %.16s..., expected %llu bytes, %.16s...); nothing "
                                 "written",
                                 m->name, m->version, file->path, (unsigned long long)sink.offset,
                                 digest, (unsigned long long)file->size, file->sha256);
        unlink(path); /* damaged bytes are not worth resuming */
    }
done:
    imgstore_sha256_free(sink.sha);
    return err;
}
