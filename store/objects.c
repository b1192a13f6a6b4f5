/*
 * Writes chunk blobs in parallel while the caller keeps chunking: a small pool of threads,
 * each with its own libgit2 object databases (libgit2 handles are not shared across threads).
 *
 * Speed comes from not spending zlib effort where it buys nothing: git objects must be zlib
 * streams, but level 0 (stored blocks) is a valid one. Each chunk is sampled; incompressible
 * chunks (compressed images, random data) are written at level 0, the rest at level 1.
 *
 * Chunk blobs are written here as loose objects, exactly as git writes them (zlib stream of
 * "blob <len>\0<bytes>", temp file in objects/xx/, rename into place), instead of through
 * libgit2: libgit2 1.5's loose backend writes level 0 as raw uncompressed bytes that stock
 * git cannot read, and its SHA-1 (collision-detecting, ~340 MiB/s here) is 5x slower than
 * OpenSSL's (~1,700 MB/s with the CPU's SHA extensions). The blob id is still git's SHA-1
 * of the same bytes, and every other object goes through libgit2.
 *
 * Memory is bounded: at most `slots` chunk buffers of IMGSTORE_CHUNK_MAX exist at once; a
 * submit blocks until a worker frees one.
 */
#include "store/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <git2/sys/odb_backend.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define SAMPLE_LEN     8192
#define SAMPLE_COUNT   3
#define COMPRESS_RATIO 0.85 /* below this, a chunk is worth zlib's time */
#define MAX_WORKERS    4

typedef struct {
    uint8_t *buf;
    size_t len;
    size_t index;
    bool busy;  /* reserved by submit */
    bool ready; /* bytes copied in; a worker may take it */
} job;

struct imgstore_store__writer {
    imgstore_store *store;
    pthread_mutex_t lock;
    pthread_cond_t job_ready; /* a job was queued or the pool is stopping */
    pthread_cond_t slot_free; /* a job finished */
    job *jobs;
    size_t slots;
    size_t pending; /* submitted, not finished */
    bool stopping;
    int err; /* first worker error */
    char err_msg[1024];
    imgstore_store__chunk *results;
    size_t result_cap;
    pthread_t threads[MAX_WORKERS];
    size_t thread_count;
};

bool imgstore_store__worth_compressing(const uint8_t *buf, size_t len)
{
    uint8_t out[SAMPLE_LEN + 1024];
    size_t in_total = 0, out_total = 0;

    if (len < SAMPLE_LEN * SAMPLE_COUNT)
        return true; /* small chunks: cheap either way */
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        size_t at = (len - SAMPLE_LEN) / (SAMPLE_COUNT - 1) * (size_t)i;
        uLongf out_len = sizeof(out);

        if (compress2(out, &out_len, buf + at, SAMPLE_LEN, 1) != Z_OK)
            return true;
        in_total += SAMPLE_LEN;
        out_total += out_len;
    }
    return (double)out_total < (double)in_total * COMPRESS_RATIO;
}

/* Per-thread state for writing loose objects. */
typedef struct {
    char objects_dir[4096];
    EVP_MD_CTX *sha1;
    imgstore_store__packset *packs; /* objects/pack as it was when the thread started */
    z_stream z[2];                  /* [0]: level 0, [1]: level 1 */
    bool z_ready[2];
    uint8_t out[256 * 1024];
} loose_writer;

static int loose_init(loose_writer *lw, const char *objects_dir)
{
    char pack_dir[4200];
    int err;

    memset(lw, 0, sizeof(*lw));
    if (!objects_dir[0])
        return imgstore_error_set(IMGSTORE_ERROR, "no objects directory"); /* never "/" */
    snprintf(lw->objects_dir, sizeof(lw->objects_dir), "%s", objects_dir);
    if (!(lw->sha1 = EVP_MD_CTX_new()))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    snprintf(pack_dir, sizeof(pack_dir), "%s/pack", objects_dir);
    if ((err = imgstore_store__packset_open(&lw->packs, pack_dir, NULL, 0)) < 0)
        return err;
    for (int i = 0; i < 2; i++) {
        if (deflateInit(&lw->z[i], i == 0 ? Z_NO_COMPRESSION : Z_BEST_SPEED) != Z_OK)
            return imgstore_error_set(IMGSTORE_ERROR, "zlib: cannot start a stream");
        lw->z_ready[i] = true;
    }
    return 0;
}

static void loose_free(loose_writer *lw)
{
    for (int i = 0; i < 2; i++) {
        if (lw->z_ready[i])
            deflateEnd(&lw->z[i]);
    }
    EVP_MD_CTX_free(lw->sha1);
    imgstore_store__packset_free(lw->packs);
}

int imgstore_store__write_all(int fd, const void *data, size_t len)
{
    const uint8_t *buf = data;

    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Deflate `len` bytes of `in` (flush at the end when `finish`) into the file. */
static int deflate_to(loose_writer *lw, z_stream *z, int fd, const uint8_t *in, size_t len,
                      bool finish)
{
    int zrc;

    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)len;
    do {
        z->next_out = lw->out;
        z->avail_out = sizeof(lw->out);
        zrc = deflate(z, finish ? Z_FINISH : Z_NO_FLUSH);
        if (zrc == Z_STREAM_ERROR)
            return -1;
        if (imgstore_store__write_all(fd, lw->out, sizeof(lw->out) - z->avail_out) < 0)
            return -1;
    } while (z->avail_out == 0 || (finish && zrc != Z_STREAM_END));
    return 0;
}

static int loose_write(git_oid *out, loose_writer *lw, const uint8_t *buf, size_t len,
                       bool compress)
{
    char header[32], hex[GIT_OID_HEXSZ + 1], path[4200], tmp[4200];
    z_stream *z = &lw->z[compress ? 1 : 0];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    int header_len = snprintf(header, sizeof(header), "blob %zu", len) + 1;
    struct stat st;
    int fd;

    if (EVP_DigestInit_ex(lw->sha1, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(lw->sha1, header, (size_t)header_len) != 1 ||
        EVP_DigestUpdate(lw->sha1, buf, len) != 1 ||
        EVP_DigestFinal_ex(lw->sha1, digest, &digest_len) != 1)
        return imgstore_error_set(IMGSTORE_ERROR, "sha1 failed");
    git_oid_fromraw(out, digest);
    git_oid_fmt(hex, out);
    hex[GIT_OID_HEXSZ] = '\0';
    snprintf(path, sizeof(path), "%s/%.2s/%s", lw->objects_dir, hex, hex + 2);
    if (stat(path, &st) == 0) {
        /* already stored: this is where identical chunks dedupe. Freshen it as git does, so
         * that gc --prune, which removes only unreachable objects untouched for its grace
         * period, never removes one this push is about to reference (issue #12) */
        utimensat(AT_FDCWD, path, NULL, 0);
        return 0;
    }
    /* or packed by a gc (issue #9): without this look, every push after a gc wrote all of
     * its image's chunks loose again, shared or not. A pack made since the thread started is
     * not seen, and the chunk is written loose once more: harmless, the next gc drops it.
     * The pack is freshened, as git does, so gc --prune keeps it for its grace period; one
     * that cannot be (gc --prune removed it since) does not count as storing the chunk. */
    if (git_odb_exists_ext(imgstore_store__packset_odb(lw->packs), out,
                           GIT_ODB_LOOKUP_NO_REFRESH) &&
        imgstore_store__packset_freshen(lw->packs, out))
        return 0;
    snprintf(tmp, sizeof(tmp), "%s/%.2s", lw->objects_dir, hex);
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", tmp, strerror(errno));
    snprintf(tmp, sizeof(tmp), "%s/%.2s/tmp_obj_XXXXXX", lw->objects_dir, hex);
    if ((fd = mkstemp(tmp)) < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot create an object file in %s: %s",
                                  lw->objects_dir, strerror(errno));
    deflateReset(z);
    if (deflate_to(lw, z, fd, (const uint8_t *)header, (size_t)header_len, false) < 0 ||
        deflate_to(lw, z, fd, buf, len, true) < 0 || fchmod(fd, 0444) < 0 || close(fd) < 0) {
        int saved = errno;

        close(fd);
        unlink(tmp);
        return imgstore_error_set(IMGSTORE_ERROR, "cannot write object %s: %s", hex,
                                  strerror(saved));
    }
    if (rename(tmp, path) < 0) {
        int saved = errno;

        unlink(tmp);
        return imgstore_error_set(IMGSTORE_ERROR, "cannot store object %s: %s", hex,
                                  strerror(saved));
    }
    return 0;
}

static void *worker_main(void *arg)
{
    imgstore_store__writer *w = arg;
    loose_writer *lw = malloc(sizeof(*lw));
    imgstore_sha256 *sha = NULL;
    int err;

    err = lw ? loose_init(lw, w->store->objects_dir)
             : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (!err)
        err = imgstore_sha256_new(&sha);
    pthread_mutex_lock(&w->lock);
    if (err && !w->err) {
        w->err = err;
        snprintf(w->err_msg, sizeof(w->err_msg), "%s", imgstore_error_last());
    }
    for (;;) {
        job *j = NULL;
        imgstore_store__chunk result;
        int rc;

        while (!w->stopping && !err) {
            for (size_t i = 0; i < w->slots && !j; i++) {
                if (w->jobs[i].ready)
                    j = &w->jobs[i];
            }
            if (j)
                break;
            pthread_cond_wait(&w->job_ready, &w->lock);
        }
        if (!j)
            break;
        j->ready = false;
        pthread_mutex_unlock(&w->lock);

        memset(&result, 0, sizeof(result));
        result.size = j->len;
        imgstore_sha256_update(sha, j->buf, j->len);
        imgstore_sha256_final_hex(sha, result.sha256);
        rc = loose_write(&result.oid, lw, j->buf, j->len,
                         imgstore_store__worth_compressing(j->buf, j->len));

        pthread_mutex_lock(&w->lock);
        if (rc < 0 && !w->err) {
            w->err = rc;
            snprintf(w->err_msg, sizeof(w->err_msg), "%s", imgstore_error_last());
        }
        w->results[j->index] = result;
        j->busy = false;
        w->pending--;
        pthread_cond_broadcast(&w->slot_free);
    }
    pthread_mutex_unlock(&w->lock);
    imgstore_sha256_free(sha);
    if (lw)
        loose_free(lw);
    free(lw);
    return NULL;
}

int imgstore_store__writer_new(imgstore_store__writer **out, imgstore_store *store)
{
    imgstore_store__writer *w = calloc(1, sizeof(*w));
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int err = 0;

    *out = NULL;
    if (!w)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    w->store = store;
    w->thread_count = cpus < 1 ? 1 : cpus > MAX_WORKERS ? MAX_WORKERS : (size_t)cpus;
    w->slots = w->thread_count + 1; /* one being filled while every worker is busy */
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->job_ready, NULL);
    pthread_cond_init(&w->slot_free, NULL);
    if (!(w->jobs = calloc(w->slots, sizeof(*w->jobs)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < w->slots; i++) {
        if (!(w->jobs[i].buf = malloc(IMGSTORE_CHUNK_MAX))) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
    }
    for (size_t i = 0; i < w->thread_count; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
            w->thread_count = i;
            err = imgstore_error_set(IMGSTORE_ERROR, "cannot start a writer thread");
            goto done;
        }
    }
done:
    if (err) {
        imgstore_store__writer_free(w);
        return err;
    }
    *out = w;
    return 0;
}

int imgstore_store__writer_submit(imgstore_store__writer *w, const uint8_t *data, size_t len,
                                  size_t index)
{
    job *slot = NULL;
    int err;

    pthread_mutex_lock(&w->lock);
    if (index >= w->result_cap) {
        size_t cap = w->result_cap ? w->result_cap * 2 : 64;
        imgstore_store__chunk *grown = realloc(w->results, cap * sizeof(*grown));

        if (!grown) {
            pthread_mutex_unlock(&w->lock);
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        }
        w->results = grown;
        w->result_cap = cap;
    }
    while (!w->err) {
        for (size_t i = 0; i < w->slots && !slot; i++) {
            if (!w->jobs[i].busy)
                slot = &w->jobs[i];
        }
        if (slot)
            break;
        pthread_cond_wait(&w->slot_free, &w->lock);
    }
    if ((err = w->err) < 0) {
        imgstore_error_set(err, "%s", w->err_msg);
        pthread_mutex_unlock(&w->lock);
        return err;
    }
    slot->busy = true;
    slot->index = index;
    slot->len = len;
    w->pending++;
    pthread_mutex_unlock(&w->lock);

    /* The copy happens outside the lock: the slot is reserved but not ready yet. */
    memcpy(slot->buf, data, len);
    pthread_mutex_lock(&w->lock);
    slot->ready = true;
    pthread_cond_signal(&w->job_ready);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int imgstore_store__writer_wait(imgstore_store__writer *w,
                                const imgstore_store__chunk **results_out)
{
    int err;

    pthread_mutex_lock(&w->lock);
    while (w->pending > 0 && !w->err)
        pthread_cond_wait(&w->slot_free, &w->lock);
    while (w->pending > 0) /* let in-flight writes finish even after an error */
        pthread_cond_wait(&w->slot_free, &w->lock);
    if ((err = w->err) < 0)
        imgstore_error_set(err, "%s", w->err_msg);
    *results_out = w->results;
    pthread_mutex_unlock(&w->lock);
    return err;
}

void imgstore_store__writer_free(imgstore_store__writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_broadcast(&w->job_ready);
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < w->thread_count; i++)
        pthread_join(w->threads[i], NULL);
    for (size_t i = 0; w->jobs && i < w->slots; i++)
        free(w->jobs[i].buf);
    free(w->jobs);
    free(w->results);
    pthread_cond_destroy(&w->slot_free);
    pthread_cond_destroy(&w->job_ready);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
