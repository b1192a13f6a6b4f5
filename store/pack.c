/*
 * Writing a git packfile and its version 2 index ourselves, for the bulk of a store: chunk
 * blobs (issue #9).
 *
 * libgit2's packbuilder deflates every object again at zlib's default level and holds the
 * objects it considers for deltas in memory; for chunk blobs that is all cost and no gain
 * (their bytes are compressed kernels, initrds and disk images that zlib cannot shrink, and
 * content-defined chunking already removed what deltas could share). So they go into a pack
 * of their own, written here one object at a time: each entry is git's type/size header and
 * a zlib stream at the level the caller picks (0, stored blocks, for what does not compress),
 * the file ends in the SHA-1 of everything before it, and the .idx beside it lists the
 * sorted object ids with their CRC-32 and offsets, exactly as git's pack-format.txt says, so
 * stock `git verify-pack` and `git fsck --strict` accept it. Commits, trees and small blobs
 * still go through the packbuilder (gc.c), where deltas pay.
 *
 * Memory: one object at a time (a chunk is at most IMGSTORE_CHUNK_MAX) plus 32 bytes per
 * entry for the index. Not responsible for choosing objects or for putting the files in
 * place (gc.c): both files are written under temporary names in the directory given and
 * fsynced; imgstore_store__pack_finish names them.
 */
#include "store/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define OUT_BUF (256 * 1024)

typedef struct {
    git_oid oid;
    uint32_t crc;
    uint64_t offset;
} pack_entry;

struct imgstore_store__pack {
    char dir[4096];
    char pack_tmp[4200];
    int fd;
    uint64_t offset; /* bytes written so far */
    pack_entry *entries;
    size_t count, cap;
    z_stream z[2]; /* [0] level 0, [1] level 1 */
    bool z_ready[2];
    uint8_t out[OUT_BUF];
};

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int imgstore_store__pack_new(imgstore_store__pack **out, const char *dir)
{
    imgstore_store__pack *pack = calloc(1, sizeof(*pack));
    uint8_t header[12] = {'P', 'A', 'C', 'K', 0, 0, 0, 2, 0, 0, 0, 0};
    int err = 0;

    *out = NULL;
    if (!pack)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    pack->fd = -1;
    snprintf(pack->dir, sizeof(pack->dir), "%s", dir);
    snprintf(pack->pack_tmp, sizeof(pack->pack_tmp), "%s/tmp_pack_XXXXXX", dir);
    for (int i = 0; i < 2; i++) {
        if (deflateInit(&pack->z[i], i == 0 ? Z_NO_COMPRESSION : Z_BEST_SPEED) != Z_OK) {
            err = imgstore_error_set(IMGSTORE_ERROR, "zlib: cannot start a stream");
            goto done;
        }
        pack->z_ready[i] = true;
    }
    if ((pack->fd = mkstemp(pack->pack_tmp)) < 0) {
        pack->pack_tmp[0] = '\0';
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot create a pack in %s: %s", dir,
                                 strerror(errno));
        goto done;
    }
    /* the object count is filled in at the end, before the checksum is computed */
    if (imgstore_store__write_all(pack->fd, header, sizeof(header)) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", pack->pack_tmp,
                                 strerror(errno));
        goto done;
    }
    pack->offset = sizeof(header);
done:
    if (err) {
        imgstore_store__pack_free(pack);
        return err;
    }
    *out = pack;
    return 0;
}

size_t imgstore_store__pack_count(const imgstore_store__pack *pack)
{
    return pack->count;
}

int imgstore_store__pack_add(imgstore_store__pack *pack, const git_oid *oid, git_object_t type,
                             const uint8_t *data, size_t len, bool compress)
{
    z_stream *z = &pack->z[compress ? 1 : 0];
    uint8_t header[16];
    size_t header_len = 0;
    uint64_t size = len;
    uint8_t c = (uint8_t)((type & 7) << 4 | (size & 15));
    uint32_t crc;
    int zrc;

    if (pack->count == pack->cap) {
        size_t cap = pack->cap ? pack->cap * 2 : 1024;
        pack_entry *grown = realloc(pack->entries, cap * sizeof(*grown));

        if (!grown)
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        pack->entries = grown;
        pack->cap = cap;
    }
    /* git's entry header: type and the size's low 4 bits, then 7 bits a byte, MSB = more */
    for (size >>= 4; size; size >>= 7) {
        header[header_len++] = c | 0x80;
        c = size & 0x7f;
    }
    header[header_len++] = c;
    crc = (uint32_t)crc32(0, header, (uInt)header_len);
    if (imgstore_store__write_all(pack->fd, header, header_len) < 0)
        goto write_failed;
    deflateReset(z);
    z->next_in = (Bytef *)data;
    z->avail_in = (uInt)len;
    uint64_t written = header_len;
    do {
        size_t produced;

        z->next_out = pack->out;
        z->avail_out = sizeof(pack->out);
        zrc = deflate(z, Z_FINISH);
        if (zrc == Z_STREAM_ERROR)
            return imgstore_error_set(IMGSTORE_ERROR, "zlib failed on object %s",
                                      git_oid_tostr_s(oid));
        produced = sizeof(pack->out) - z->avail_out;
        crc = (uint32_t)crc32(crc, pack->out, (uInt)produced);
        if (imgstore_store__write_all(pack->fd, pack->out, produced) < 0)
            goto write_failed;
        written += produced;
    } while (zrc != Z_STREAM_END);
    git_oid_cpy(&pack->entries[pack->count].oid, oid);
    pack->entries[pack->count].crc = crc;
    pack->entries[pack->count].offset = pack->offset;
    pack->count++;
    pack->offset += written;
    return 0;
write_failed:
    return imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", pack->pack_tmp,
                              strerror(errno));
}

static int entry_cmp(const void *a, const void *b)
{
    return git_oid_cmp(&((const pack_entry *)a)->oid, &((const pack_entry *)b)->oid);
}

/* SHA-1 of the whole pack as it is on disk: the count in the header was only known at the
 * end, so the checksum is taken by reading the file back (from the page cache). */
static int pack_checksum(uint8_t sum[20], int fd, uint8_t *buf, size_t cap)
{
    EVP_MD_CTX *sha1 = EVP_MD_CTX_new();
    unsigned int sum_len = 0;
    off_t at = 0;
    int rc = -1;

    if (!sha1 || EVP_DigestInit_ex(sha1, EVP_sha1(), NULL) != 1)
        goto done;
    for (;;) {
        ssize_t n = pread(fd, buf, cap, at);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto done;
        if (n == 0)
            break;
        if (EVP_DigestUpdate(sha1, buf, (size_t)n) != 1)
            goto done;
        at += n;
    }
    rc = EVP_DigestFinal_ex(sha1, sum, &sum_len) == 1 && sum_len == 20 ? 0 : -1;
done:
    EVP_MD_CTX_free(sha1);
    return rc;
}

/* A buffered writer that hashes what passes, for the index. */
typedef struct {
    int fd;
    EVP_MD_CTX *sha1;
    uint8_t *buf;
    size_t len, cap;
    int failed;
} hashed_out;

static void out_put(hashed_out *o, const void *data, size_t len)
{
    const uint8_t *p = data;

    if (o->failed)
        return;
    if (EVP_DigestUpdate(o->sha1, p, len) != 1) {
        o->failed = 1;
        return;
    }
    while (len > 0) {
        size_t n = len < o->cap - o->len ? len : o->cap - o->len;

        memcpy(o->buf + o->len, p, n);
        o->len += n;
        p += n;
        len -= n;
        if (o->len == o->cap) {
            if (imgstore_store__write_all(o->fd, o->buf, o->len) < 0) {
                o->failed = 1;
                return;
            }
            o->len = 0;
        }
    }
}

static int write_index(int fd, const pack_entry *entries, size_t count, const uint8_t pack_sum[20],
                       uint8_t *buf, size_t cap)
{
    hashed_out o = {fd, EVP_MD_CTX_new(), buf, 0, cap, 0};
    uint8_t word[8], sum[20];
    unsigned int sum_len = 0;
    uint32_t large = 0;
    size_t i;
    int rc = -1;

    if (!o.sha1 || EVP_DigestInit_ex(o.sha1, EVP_sha1(), NULL) != 1)
        goto done;
    out_put(&o, "\377tOc\0\0\0\2", 8);
    for (unsigned b = 0, at = 0; b < 256; b++) { /* fanout: objects whose first byte <= b */
        while (at < count && entries[at].oid.id[0] <= b)
            at++;
        put_be32(word, at);
        out_put(&o, word, 4);
    }
    for (i = 0; i < count; i++)
        out_put(&o, entries[i].oid.id, GIT_OID_RAWSZ);
    for (i = 0; i < count; i++) {
        put_be32(word, entries[i].crc);
        out_put(&o, word, 4);
    }
    for (i = 0; i < count; i++) { /* offsets past 2 GiB go in the 8-byte table below */
        put_be32(word, entries[i].offset < 0x80000000u ? (uint32_t)entries[i].offset
                                                       : 0x80000000u | large++);
        out_put(&o, word, 4);
    }
    for (i = 0; i < count; i++) {
        if (entries[i].offset >= 0x80000000u) {
            put_be32(word, (uint32_t)(entries[i].offset >> 32));
            put_be32(word + 4, (uint32_t)entries[i].offset);
            out_put(&o, word, 8);
        }
    }
    out_put(&o, pack_sum, 20);
    if (o.failed || EVP_DigestFinal_ex(o.sha1, sum, &sum_len) != 1 || sum_len != 20)
        goto done;
    if (imgstore_store__write_all(fd, o.buf, o.len) < 0 ||
        imgstore_store__write_all(fd, sum, 20) < 0)
        goto done;
    rc = 0;
done:
    EVP_MD_CTX_free(o.sha1);
    return rc;
}

int imgstore_store__pack_finish(imgstore_store__pack *pack, char name_out[41])
{
    char idx_tmp[4200], final_path[4200], hex[41];
    uint8_t count_be[4], sum[20];
    int idx_fd = -1, err = 0;

    idx_tmp[0] = '\0';
    put_be32(count_be, (uint32_t)pack->count);
    if (pwrite(pack->fd, count_be, 4, 8) != 4 ||
        pack_checksum(sum, pack->fd, pack->out, sizeof(pack->out)) < 0 ||
        imgstore_store__write_all(pack->fd, sum, 20) < 0 || fsync(pack->fd) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", pack->pack_tmp,
                                 strerror(errno));
        goto done;
    }
    qsort(pack->entries, pack->count, sizeof(*pack->entries), entry_cmp);
    snprintf(idx_tmp, sizeof(idx_tmp), "%s/tmp_idx_XXXXXX", pack->dir);
    if ((idx_fd = mkstemp(idx_tmp)) < 0) {
        idx_tmp[0] = '\0';
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot create an index in %s: %s", pack->dir,
                                 strerror(errno));
        goto done;
    }
    if (write_index(idx_fd, pack->entries, pack->count, sum, pack->out, sizeof(pack->out)) < 0 ||
        fchmod(idx_fd, 0444) < 0 || fchmod(pack->fd, 0444) < 0 || fsync(idx_fd) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", idx_tmp, strerror(errno));
        goto done;
    }
    for (int i = 0; i < 20; i++)
        snprintf(hex + 2 * i, 3, "%02x", sum[i]);
    snprintf(final_path, sizeof(final_path), "%s/pack-%s.pack", pack->dir, hex);
    if (rename(pack->pack_tmp, final_path) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot rename %s: %s", pack->pack_tmp,
                                 strerror(errno));
        goto done;
    }
    pack->pack_tmp[0] = '\0';
    snprintf(final_path, sizeof(final_path), "%s/pack-%s.idx", pack->dir, hex);
    if (rename(idx_tmp, final_path) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot rename %s: %s", idx_tmp, strerror(errno));
        goto done;
    }
    idx_tmp[0] = '\0';
    memcpy(name_out, hex, 41);
done:
    if (idx_fd >= 0)
        close(idx_fd);
    if (idx_tmp[0] && err)
        unlink(idx_tmp);
    return err;
}

void imgstore_store__pack_free(imgstore_store__pack *pack)
{
    if (!pack)
        return;
    if (pack->fd >= 0)
        close(pack->fd);
    if (pack->pack_tmp[0])
        unlink(pack->pack_tmp); /* not finished: nothing of it may stay */
    for (int i = 0; i < 2; i++) {
        if (pack->z_ready[i])
            deflateEnd(&pack->z[i]);
    }
    free(pack->entries);
    free(pack);
}
