/*
 * The verified download cache: "verify once, then serve at sendfile speed" (issue #5).
 *
 * Checking every chunk's SHA-256 on every read caps a download at hashing speed. Instead the
 * first download of a file copies it out of the store into <cache_dir>/<file sha256>: the
 * store checks every chunk against the manifest before handing its bytes over, this file
 * re-hashes the whole copy against the manifest's file digest, and only then is the copy
 * fsynced and renamed into place. A name in the cache therefore always holds bytes that
 * were verified, and later requests send it with sendfile(). The trust argument and its
 * limits are in docs/server.md ("Download cache").
 *
 * Bounded: at most max_bytes on disk (oldest-used files evicted first) and at most
 * fill_concurrency fills at once; concurrent requests for one file wait for a single fill.
 * Not responsible for ranges, headers or streaming: route_files.c is.
 */
#include "server/server_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILLS       64
#define FILL_WAIT_SECS  300
#define CACHE_NAME_HEXS 64

struct imgstore_server__cache {
    char *dir;
    uint64_t max_bytes;
    unsigned fill_concurrency;
    pthread_mutex_t lock;
    pthread_cond_t done;
    char filling[MAX_FILLS][65];
    size_t filling_count;
    uint64_t bytes;
    uint64_t tmp_counter;
};

static bool is_cache_name(const char *name)
{
    if (strlen(name) != CACHE_NAME_HEXS)
        return false;
    for (const char *c = name; *c; c++) {
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    }
    return true;
}

/* Sum what is there; drop temp files of fills a previous process did not finish. */
static int scan(imgstore_server__cache *cache)
{
    DIR *dir = opendir(cache->dir);
    struct dirent *entry;

    if (!dir)
        return imgstore_error_set(IMGSTORE_ERROR, "cache %s: %s", cache->dir, strerror(errno));
    while ((entry = readdir(dir))) {
        struct stat st;

        if (strncmp(entry->d_name, "tmp-", 4) == 0) {
            unlinkat(dirfd(dir), entry->d_name, 0);
            continue;
        }
        if (is_cache_name(entry->d_name) && fstatat(dirfd(dir), entry->d_name, &st, 0) == 0 &&
            S_ISREG(st.st_mode))
            cache->bytes += (uint64_t)st.st_size;
    }
    closedir(dir);
    return 0;
}

int imgstore_server__cache_new(imgstore_server__cache **out, const char *dir, uint64_t max_bytes,
                               unsigned fill_concurrency)
{
    imgstore_server__cache *cache = calloc(1, sizeof(*cache));
    int err = 0;

    *out = NULL;
    if (!cache || !(cache->dir = strdup(dir))) {
        free(cache);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    cache->max_bytes = max_bytes;
    cache->fill_concurrency = fill_concurrency < MAX_FILLS ? fill_concurrency : MAX_FILLS;
    pthread_mutex_init(&cache->lock, NULL);
    pthread_cond_init(&cache->done, NULL);
    if (max_bytes) {
        /* 0700: only this user may place files whose names the server trusts */
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            err = imgstore_error_set(IMGSTORE_ERROR, "cannot create cache %s: %s", dir,
                                     strerror(errno));
        else
            err = scan(cache);
    }
    if (err < 0) {
        imgstore_server__cache_free(cache);
        return err;
    }
    *out = cache;
    return 0;
}

void imgstore_server__cache_free(imgstore_server__cache *cache)
{
    if (!cache)
        return;
    pthread_cond_destroy(&cache->done);
    pthread_mutex_destroy(&cache->lock);
    free(cache->dir);
    free(cache);
}

bool imgstore_server__cache_enabled(const imgstore_server__cache *cache, uint64_t size)
{
    return cache && cache->max_bytes && size > 0 && size <= cache->max_bytes;
}

uint64_t imgstore_server__cache_bytes(imgstore_server__cache *cache)
{
    uint64_t bytes;

    if (!cache)
        return 0;
    pthread_mutex_lock(&cache->lock);
    bytes = cache->bytes;
    pthread_mutex_unlock(&cache->lock);
    return bytes;
}

/* The cached copy, if complete: a file of the wrong size is not ours and is removed. */
static int open_cached(imgstore_server__cache *cache, const char *sha256, uint64_t size)
{
    char path[4200];
    struct stat st;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", cache->dir, sha256);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
        close(fd);
        unlink(path);
        return -1;
    }
    futimens(fd, NULL); /* recency for eviction */
    return fd;
}

typedef struct {
    int fd;
    imgstore_sha256 *sha;
    uint64_t written;
} fill_sink;

static int fill_write(const void *buf, size_t len, void *payload)
{
    fill_sink *sink = payload;
    const char *at = buf;

    imgstore_sha256_update(sink->sha, buf, len);
    while (len > 0) {
        ssize_t n = write(sink->fd, at, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return imgstore_error_set(IMGSTORE_ERROR, "cache write: %s", strerror(errno));
        at += n;
        len -= (size_t)n;
        sink->written += (uint64_t)n;
    }
    return 0;
}

typedef struct {
    char name[65];
    time_t used;
    uint64_t size;
} cached_file;

static int oldest_first(const void *a, const void *b)
{
    const cached_file *x = a, *y = b;

    return x->used < y->used ? -1 : x->used > y->used;
}

/* Called with the lock held, after a fill pushed the total over the bound. */
static void evict(imgstore_server__cache *cache, const char *keep)
{
    DIR *dir = opendir(cache->dir);
    cached_file *files = NULL;
    size_t count = 0, cap = 0;
    struct dirent *entry;

    if (!dir)
        return;
    while ((entry = readdir(dir))) {
        struct stat st;

        if (!is_cache_name(entry->d_name) || strcmp(entry->d_name, keep) == 0 ||
            fstatat(dirfd(dir), entry->d_name, &st, 0) < 0)
            continue;
        if (count == cap) {
            cached_file *grown = realloc(files, (cap = cap * 2 + 16) * sizeof(*files));

            if (!grown)
                break;
            files = grown;
        }
        memcpy(files[count].name, entry->d_name, 65);
        files[count].used = st.st_mtime;
        files[count].size = (uint64_t)st.st_size;
        count++;
    }
    qsort(files, count, sizeof(*files), oldest_first);
    /* a file being sent stays readable through its open fd after the unlink */
    for (size_t i = 0; i < count && cache->bytes > cache->max_bytes; i++) {
        if (unlinkat(dirfd(dir), files[i].name, 0) == 0)
            cache->bytes -= files[i].size < cache->bytes ? files[i].size : cache->bytes;
    }
    closedir(dir);
    free(files);
}

static int fill(imgstore_server__cache *cache, imgstore_store *store,
                const imgstore_manifest *manifest, const imgstore_manifest_file *file,
                uint64_t counter)
{
    fill_sink sink = {-1, NULL, 0};
    char tmp[4200], final[4200], digest[65];
    int err, dir_fd = -1;

    snprintf(tmp, sizeof(tmp), "%s/tmp-%s-%ld-%llu", cache->dir, file->sha256, (long)getpid(),
             (unsigned long long)counter);
    snprintf(final, sizeof(final), "%s/%s", cache->dir, file->sha256);
    if ((err = imgstore_sha256_new(&sink.sha)) < 0)
        goto done;
    if ((sink.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cache %s: %s", tmp, strerror(errno));
        goto done;
    }
    if ((err = imgstore_store_file_read(store, manifest, file->path, 0, UINT64_MAX, fill_write,
                                        &sink)) < 0)
        goto done;
    imgstore_sha256_final_hex(sink.sha, digest);
    if (sink.written != file->size || strcmp(digest, file->sha256) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s %s %s: read back %llu bytes with sha256 %s, manifest says "
                                 "%llu bytes with %s",
                                 manifest->name, manifest->version, file->path,
                                 (unsigned long long)sink.written, digest,
                                 (unsigned long long)file->size, file->sha256);
        goto done;
    }
    if (fsync(sink.fd) < 0 || close(sink.fd) < 0) {
        sink.fd = -1;
        err = imgstore_error_set(IMGSTORE_ERROR, "cache %s: %s", tmp, strerror(errno));
        goto done;
    }
    sink.fd = -1;
    if (rename(tmp, final) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cache %s: %s", final, strerror(errno));
        goto done;
    }
    if ((dir_fd = open(cache->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0)
        fsync(dir_fd);
done:
    if (dir_fd >= 0)
        close(dir_fd);
    if (sink.fd >= 0)
        close(sink.fd);
    if (err < 0)
        unlink(tmp);
    imgstore_sha256_free(sink.sha);
    return err;
}

static bool is_filling(imgstore_server__cache *cache, const char *sha256)
{
    for (size_t i = 0; i < cache->filling_count; i++) {
        if (strcmp(cache->filling[i], sha256) == 0)
            return true;
    }
    return false;
}

static void fill_done(imgstore_server__cache *cache, const char *sha256)
{
    for (size_t i = 0; i < cache->filling_count; i++) {
        if (strcmp(cache->filling[i], sha256) == 0) {
            memcpy(cache->filling[i], cache->filling[--cache->filling_count], 65);
            break;
        }
    }
    pthread_cond_broadcast(&cache->done);
}

int imgstore_server__cache_open(int *out, bool *hit_out, imgstore_server__cache *cache,
                                imgstore_store *store, const imgstore_manifest *manifest,
                                const imgstore_manifest_file *file)
{
    struct timespec deadline;
    bool filled = false;
    int fd, err = 0;

    *out = -1;
    *hit_out = false;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += FILL_WAIT_SECS;
    pthread_mutex_lock(&cache->lock);
    for (;;) {
        if ((fd = open_cached(cache, file->sha256, file->size)) >= 0)
            break;
        if (filled) {
            /* evicted between our rename and this open: only if the cache is tiny */
            err = imgstore_error_set(IMGSTORE_ERROR, "cache: %s vanished after its fill",
                                     file->sha256);
            break;
        }
        if (is_filling(cache, file->sha256) || cache->filling_count >= cache->fill_concurrency) {
            if (pthread_cond_timedwait(&cache->done, &cache->lock, &deadline) != 0) {
                err = imgstore_error_set(IMGSTORE_ELOCKED, "cache: too many downloads being "
                                                           "verified, try again");
                break;
            }
            continue;
        }
        memcpy(cache->filling[cache->filling_count++], file->sha256, 65);
        uint64_t counter = ++cache->tmp_counter;
        pthread_mutex_unlock(&cache->lock);
        err = fill(cache, store, manifest, file, counter);
        pthread_mutex_lock(&cache->lock);
        fill_done(cache, file->sha256);
        if (err < 0)
            break;
        filled = true;
        cache->bytes += file->size;
        if (cache->bytes > cache->max_bytes)
            evict(cache, file->sha256);
    }
    pthread_mutex_unlock(&cache->lock);
    if (err < 0)
        return err;
    *out = fd;
    *hit_out = !filled;
    return 0;
}
