/*
 * Reading loose git objects without trusting their bytes, and the libgit2 object-database
 * backend built on it.
 *
 * libgit2 1.5 loops forever inflating a truncated loose object: a 1,000-byte file claiming a
 * 1 MiB blob hung `verify`, a truncated tree hung `pull` and `fsck`. A store with one damaged
 * file must fail with a message, not hang, so every odb the store opens puts this backend
 * first: it reads loose objects with a bounded inflate that must end exactly at the size the
 * object's header declares, and otherwise reports the object as damaged. libgit2's own loose
 * backend stays behind it for writes, and its pack backend for objects a `git gc` packed.
 *
 * Objects written as zlib stored blocks (chunks: objects.c) are not inflated at all: their
 * 5-byte block headers are stripped in place, which skips the zeroing, double copy and
 * adler32 that made inflating cost more than the SHA-256 check (perf: 39% of a pull's CPU).
 * Every caller checks the content against a digest afterwards.
 */
#include "store/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <git2/sys/odb_backend.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define HEADER_MAX 32 /* "commit 18446744073709551615\0" fits */

static int read_fully(int fd, uint8_t *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = read(fd, buf + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* Strip stored-block headers in place. The payload length, or -1 (buffer untouched) if the
 * stream is not made only of stored blocks or is damaged. The first pass only looks: zlib
 * mixes stored and compressed blocks in one stream, and a buffer half rewritten before the
 * first compressed block is met could no longer be inflated. */
static long long unstore_in_place(uint8_t *buf, size_t file_len)
{
    size_t pos, used = 0;
    bool last = false;

    for (pos = 2; !last;) {
        size_t block_len;

        if (pos + 5 > file_len - 4 || ((buf[pos] >> 1) & 3) != 0) /* not a stored block */
            return -1;
        last = buf[pos] & 1;
        block_len = (size_t)buf[pos + 1] | (size_t)buf[pos + 2] << 8;
        if ((block_len ^ ((size_t)buf[pos + 3] | (size_t)buf[pos + 4] << 8)) != 0xffff ||
            pos + 5 + block_len > file_len - 4)
            return -1;
        pos += 5 + block_len;
    }
    for (pos = 2, last = false; !last;) {
        size_t block_len = (size_t)buf[pos + 1] | (size_t)buf[pos + 2] << 8;

        last = buf[pos] & 1;
        memmove(buf + used, buf + pos + 5, block_len); /* used <= pos: safe in place */
        used += block_len;
        pos += 5 + block_len;
    }
    return (long long)used;
}

/* Inflate into a new buffer of at most `cap` bytes. With `whole`, the stream must end within
 * it; without, only the first `cap` bytes are wanted (headers). */
static int inflate_bounded(uint8_t **out, size_t *len_out, const uint8_t *in, size_t in_len,
                           size_t cap, bool whole)
{
    z_stream z;
    uint8_t *buf = malloc(cap + 1);
    int zrc;

    *out = NULL;
    memset(&z, 0, sizeof(z));
    if (!buf || inflateInit(&z) != Z_OK) {
        free(buf);
        return -1;
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_len;
    z.next_out = buf;
    z.avail_out = (uInt)cap + (whole ? 1 : 0); /* a spare byte catches an overlong stream */
    zrc = inflate(&z, Z_FINISH);
    *len_out = (size_t)z.total_out;
    inflateEnd(&z);
    if (whole ? (zrc != Z_STREAM_END || *len_out > cap)
              : (zrc != Z_STREAM_END && zrc != Z_BUF_ERROR && zrc != Z_OK)) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* "<type> <size>\0" at the start of `payload`: its length, the type and the size. */
static int parse_header(size_t *header_len, git_object_t *type, unsigned long long *size,
                        const uint8_t *payload, size_t len)
{
    char name[8];
    size_t n = strnlen((const char *)payload, len < HEADER_MAX ? len : HEADER_MAX);

    if (n >= len || n >= HEADER_MAX || sscanf((const char *)payload, "%7s %llu", name, size) != 2)
        return -1;
    *type = git_object_string2type(name);
    *header_len = n + 1;
    return *type == GIT_OBJECT_INVALID ? -1 : 0;
}

static int loose_path(char *path, size_t cap, const char *objects_dir, const git_oid *oid)
{
    char hex[GIT_OID_HEXSZ + 1];

    git_oid_tostr(hex, sizeof(hex), oid);
    return snprintf(path, cap, "%s/%.2s/%s", objects_dir, hex, hex + 2) >= (int)cap ? -1 : 0;
}

int imgstore_store__loose_read_any(imgstore_store__chunk_buf *out, git_object_t *type_out,
                                   const char *objects_dir, const git_oid *oid, uint64_t max_size)
{
    char path[4200], hex[GIT_OID_HEXSZ + 1];
    uint8_t *file = NULL, *payload = NULL;
    size_t file_len, payload_len = 0, header_len;
    unsigned long long declared;
    long long stored;
    struct stat st;
    int fd, err = 0;

    memset(out, 0, sizeof(*out));
    git_oid_tostr(hex, sizeof(hex), oid);
    if (loose_path(path, sizeof(path), objects_dir, oid) < 0 ||
        (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT
                   ? 0
                   : imgstore_error_set(IMGSTORE_EVERIFY, "object %s: %s", hex, strerror(errno));
    /* zlib never makes data more than ~0.03% larger; allow generous slack, refuse the absurd */
    if (fstat(fd, &st) < 0 || st.st_size < 8 ||
        (uint64_t)st.st_size > max_size + max_size / 8 + 4096) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "object %s is damaged (%lld bytes on disk)", hex,
                                 (long long)st.st_size);
        goto done;
    }
    file_len = (size_t)st.st_size;
    if (!(file = malloc(file_len))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (read_fully(fd, file, file_len) < 0 || (file[0] & 0x0f) != 8 || (file[1] & 0x20) ||
        ((file[0] << 8) | file[1]) % 31 != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "object %s is damaged (not a zlib stream)", hex);
        goto done;
    }
    if ((stored = unstore_in_place(file, file_len)) >= 0) {
        payload = file;
        payload_len = (size_t)stored;
        file = NULL;
    } else {
        /* Size the buffer by the object's own header, not by `max_size`: a 64 MiB buffer
         * per tree or commit read (the odb backend's bound) cost an mmap, page faults and a
         * munmap with a TLB flush on every core each time (perf: 40% of a gc's time) */
        uint8_t *head = NULL;
        size_t head_len = 0;
        git_object_t head_type;
        int bad = inflate_bounded(&head, &head_len, file, file_len, HEADER_MAX, false) < 0 ||
                  parse_header(&header_len, &head_type, &declared, head, head_len) < 0 ||
                  declared > max_size;

        free(head);
        if (bad) {
            err = imgstore_error_set(IMGSTORE_EVERIFY, "object %s is damaged (bad header)", hex);
            goto done;
        }
        if (inflate_bounded(&payload, &payload_len, file, file_len, (size_t)declared + header_len,
                            true) < 0) {
            err = imgstore_error_set(
                IMGSTORE_EVERIFY, "object %s is damaged (truncated or corrupt zlib stream)", hex);
            goto done;
        }
    }
    if (parse_header(&header_len, type_out, &declared, payload, payload_len) < 0 ||
        declared != payload_len - header_len || declared > max_size) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "object %s is damaged (bad header)", hex);
        goto done;
    }
    out->owned = payload;
    out->data = payload + header_len;
    out->len = payload_len - header_len;
    payload = NULL;
    err = 1;
done:
    free(payload);
    free(file);
    close(fd);
    return err;
}

/* ---- the odb backend ------------------------------------------------------------------ */

#define BACKEND_MAX_OBJECT (64u * 1024 * 1024) /* larger than any manifest, tree or chunk */

typedef struct {
    git_odb_backend parent;
    char objects_dir[4096];
} safe_backend;

static int report(int err)
{
    git_error_set_str(GIT_ERROR_ODB, imgstore_error_last());
    return err == 0 ? GIT_ENOTFOUND : GIT_ERROR;
}

static int backend_read(void **data, size_t *len, git_object_t *type, git_odb_backend *backend,
                        const git_oid *oid)
{
    safe_backend *b = (safe_backend *)backend;
    imgstore_store__chunk_buf obj;
    int rc = imgstore_store__loose_read_any(&obj, type, b->objects_dir, oid, BACKEND_MAX_OBJECT);

    if (rc <= 0)
        return rc == 0 ? GIT_ENOTFOUND : report(rc);
    if (!(*data = git_odb_backend_data_alloc(backend, obj.len + 1))) {
        imgstore_store__chunk_buf_clear(&obj);
        return GIT_ERROR;
    }
    memcpy(*data, obj.data, obj.len);
    ((char *)*data)[obj.len] = '\0'; /* as libgit2's own backends: its parsers may rely on it */
    *len = obj.len;
    imgstore_store__chunk_buf_clear(&obj);
    return 0;
}

/* Only the object header is inflated: checking sizes (fsck) must not read whole chunks. */
static int backend_read_header(size_t *len, git_object_t *type, git_odb_backend *backend,
                               const git_oid *oid)
{
    safe_backend *b = (safe_backend *)backend;
    char path[4200];
    uint8_t head[512], *payload = NULL;
    size_t payload_len = 0, header_len;
    unsigned long long declared;
    ssize_t n;
    int fd, rc = GIT_ERROR;

    if (loose_path(path, sizeof(path), b->objects_dir, oid) < 0 ||
        (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return GIT_ENOTFOUND;
    n = read(fd, head, sizeof(head));
    close(fd);
    if (n > 2 && inflate_bounded(&payload, &payload_len, head, (size_t)n, HEADER_MAX, false) == 0 &&
        parse_header(&header_len, type, &declared, payload, payload_len) == 0) {
        *len = (size_t)declared;
        rc = 0;
    } else {
        imgstore_error_set(IMGSTORE_EVERIFY, "object %s is damaged (bad header)",
                           git_oid_tostr_s(oid));
        report(IMGSTORE_EVERIFY);
    }
    free(payload);
    return rc;
}

static int backend_exists(git_odb_backend *backend, const git_oid *oid)
{
    safe_backend *b = (safe_backend *)backend;
    char path[4200];
    struct stat st;

    return loose_path(path, sizeof(path), b->objects_dir, oid) == 0 && stat(path, &st) == 0;
}

static void backend_free(git_odb_backend *backend)
{
    free(backend);
}

int imgstore_store__odb_open(git_odb **out, imgstore_store *store)
{
    safe_backend *safe = calloc(1, sizeof(*safe));
    git_odb_backend *loose = NULL, *packs = NULL;
    git_odb *odb = NULL;
    int rc;

    *out = NULL;
    if (!safe)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    git_odb_init_backend(&safe->parent, GIT_ODB_BACKEND_VERSION);
    snprintf(safe->objects_dir, sizeof(safe->objects_dir), "%s", store->objects_dir);
    safe->parent.read = backend_read;
    safe->parent.read_header = backend_read_header;
    safe->parent.exists = backend_exists;
    safe->parent.free = backend_free;
    /* Higher priority is asked first; writes go to the first backend that can write. */
    if ((rc = git_odb_new(&odb)) < 0 || (rc = git_odb_add_backend(odb, &safe->parent, 3)) < 0) {
        free(safe);
        goto done;
    }
    if ((rc = git_odb_backend_pack(&packs, safe->objects_dir)) < 0 ||
        (rc = git_odb_add_backend(odb, packs, 2)) < 0)
        goto done;
    packs = NULL;
    if ((rc = git_odb_backend_loose(&loose, safe->objects_dir, -1, 0, 0, 0)) < 0 ||
        (rc = git_odb_add_backend(odb, loose, 1)) < 0)
        goto done;
    loose = NULL;
    *out = odb;
    odb = NULL;
done:
    if (packs)
        packs->free(packs);
    if (loose)
        loose->free(loose);
    git_odb_free(odb);
    return rc < 0 ? imgstore_store__git_error(rc, "cannot open the object database") : 0;
}
