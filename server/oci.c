/*
 * The OCI area of a served store (docs/oci.md, "Staging and lookups"): <repo>/imgstore-oci,
 * 0700, beside the git repository and never in it.
 *
 *   uploads/<id>             an upload session's bytes so far (one file each)
 *   blobs/<sha256>           a finished upload whose bytes matched that digest, waiting for
 *                            the manifest that names it
 *   manifests/<sha256>       the exact bytes of a pushed manifest (the spec wants them back
 *                            by their digest)
 *   lookup/<name>/<xx>/<yy>  lines "<sha256> <version>": the version of <name> that a
 *                            digest starting xxyy (file, config, OCI manifest) was seen in
 *                            by this server: a cache beside the store's digest index (for
 *                            versions pushed before it held OCI rows), checked against the
 *                            version before any byte is served, so a wrong or stale line is
 *                            a miss
 *
 * Sessions live in memory (an id, the file, the bytes so far and their running SHA-256);
 * each holds one of the server's max_uploads places until it is finished, cancelled or idle
 * for oci_upload_timeout seconds. Memory per session is its hash state: bytes go to disk through
 * the request's 1 MiB stage. What the routes answer is route_oci.c's business.
 */
#include "server/server_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PATH_CAP 4200

struct imgstore_server__oci_session {
    struct imgstore_server__oci_session *next;
    char id[33];
    char name[IMGSTORE_NAME_MAX + 1];
    int fd;
    uint64_t size;
    imgstore_sha256 *hash;
    double touched;
    bool busy; /* a request is writing or finishing it */
};

struct imgstore_server__oci {
    char *dir;
    pthread_mutex_t lock;
    imgstore_server__oci_session *sessions;
    double swept;
};

static void path_of(char *out, const imgstore_server__oci *oci, const char *sub, const char *name)
{
    snprintf(out, PATH_CAP, "%s/%s/%s", oci->dir, sub, name);
}

static void clear_dir(const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *entry;

    if (!dir)
        return;
    while ((entry = readdir(dir))) {
        if (entry->d_name[0] != '.')
            unlinkat(dirfd(dir), entry->d_name, 0);
    }
    closedir(dir);
}

int imgstore_server__oci_new(imgstore_server__oci **out, const char *repo)
{
    static const char *const subs[] = {"uploads", "blobs", "manifests", "lookup"};
    imgstore_server__oci *oci = calloc(1, sizeof(*oci));
    char path[PATH_CAP];

    *out = NULL;
    if (!oci || !(oci->dir = imgstore_strfmt("%s/imgstore-oci", repo))) {
        free(oci);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    pthread_mutex_init(&oci->lock, NULL);
    /* 0700: a staged blob's name is a digest the server checked; nobody else places one */
    if (mkdir(oci->dir, 0700) < 0 && errno != EEXIST) {
        int err =
            imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", oci->dir, strerror(errno));
        imgstore_server__oci_free(oci);
        return err;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", oci->dir, subs[i]);
        mkdir(path, 0700);
    }
    /* sessions do not outlive their process: their clients start over */
    snprintf(path, sizeof(path), "%s/uploads", oci->dir);
    clear_dir(path);
    oci->swept = imgstore_server__now();
    *out = oci;
    return 0;
}

static void session_free(imgstore_server__oci *oci, imgstore_server__oci_session *s)
{
    char path[PATH_CAP];

    if (s->fd >= 0)
        close(s->fd);
    path_of(path, oci, "uploads", s->id);
    unlink(path);
    imgstore_sha256_free(s->hash);
    free(s);
}

void imgstore_server__oci_free(imgstore_server__oci *oci)
{
    if (!oci)
        return;
    while (oci->sessions) {
        imgstore_server__oci_session *next = oci->sessions->next;

        session_free(oci, oci->sessions);
        oci->sessions = next;
    }
    pthread_mutex_destroy(&oci->lock);
    free(oci->dir);
    free(oci);
}

static void release_place(imgstore_server *server)
{
    pthread_mutex_lock(&server->lock);
    server->uploads--;
    pthread_mutex_unlock(&server->lock);
    imgstore_server__metrics_gauge(server->metrics, "uploads_in_progress", -1);
}

/* Under oci->lock: drop idle sessions; every minute, staged blobs nobody claimed. */
static void sweep(imgstore_server *server, double now)
{
    imgstore_server__oci *oci = server->oci;
    imgstore_server__oci_session **link = &oci->sessions;
    double idle = (double)server->config->oci_upload_timeout;
    char path[PATH_CAP];

    while (*link) {
        imgstore_server__oci_session *s = *link;

        if (!s->busy && now - s->touched > idle) {
            *link = s->next;
            imgstore_log(IMGSTORE_LOG_INFO, "server", "oci upload expired id=%s name=%s bytes=%llu",
                         s->id, s->name, (unsigned long long)s->size);
            session_free(oci, s);
            release_place(server);
            continue;
        }
        link = &s->next;
    }
    if (now - oci->swept < (idle < 60 ? idle : 60))
        return;
    oci->swept = now;
    snprintf(path, sizeof(path), "%s/blobs", oci->dir);
    DIR *dir = opendir(path);
    struct dirent *entry;
    struct stat st;

    while (dir && (entry = readdir(dir))) {
        if (entry->d_name[0] != '.' && fstatat(dirfd(dir), entry->d_name, &st, 0) == 0 &&
            (double)(time(NULL) - st.st_mtime) > idle)
            unlinkat(dirfd(dir), entry->d_name, 0);
    }
    if (dir)
        closedir(dir);
}

int imgstore_server__oci_session_open(imgstore_server__oci_session **out, imgstore_server *server,
                                      const char *name)
{
    imgstore_server__oci *oci = server->oci;
    imgstore_server__oci_session *s = NULL;
    unsigned char random[16];
    char path[PATH_CAP];
    bool counted;

    *out = NULL;
    pthread_mutex_lock(&oci->lock);
    sweep(server, imgstore_server__now());
    pthread_mutex_unlock(&oci->lock);
    /* a session holds a place as an upload does (docs/server.md, max_uploads) */
    pthread_mutex_lock(&server->lock);
    counted = server->uploads < server->config->max_uploads;
    server->uploads += counted;
    pthread_mutex_unlock(&server->lock);
    if (!counted)
        return imgstore_error_set(IMGSTORE_ELOCKED,
                                  "too many uploads at once (max_uploads = %llu); retry shortly",
                                  (unsigned long long)server->config->max_uploads);
    imgstore_server__metrics_gauge(server->metrics, "uploads_in_progress", 1);
    if (!(s = calloc(1, sizeof(*s))) || imgstore_sha256_new(&s->hash) < 0 ||
        getrandom(random, sizeof(random), 0) != (ssize_t)sizeof(random)) {
        if (s)
            imgstore_sha256_free(s->hash);
        free(s);
        release_place(server);
        return imgstore_error_set(IMGSTORE_ERROR, "cannot start an upload session");
    }
    for (size_t i = 0; i < sizeof(random); i++)
        snprintf(s->id + 2 * i, 3, "%02x", random[i]);
    snprintf(s->name, sizeof(s->name), "%s", name);
    path_of(path, oci, "uploads", s->id);
    if ((s->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        int err = imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", path, strerror(errno));

        imgstore_sha256_free(s->hash);
        free(s);
        release_place(server);
        return err;
    }
    s->touched = imgstore_server__now();
    s->busy = true;
    pthread_mutex_lock(&oci->lock);
    s->next = oci->sessions;
    oci->sessions = s;
    pthread_mutex_unlock(&oci->lock);
    *out = s;
    return 0;
}

int imgstore_server__oci_session_take(imgstore_server__oci_session **out, imgstore_server *server,
                                      const char *name, const char *id)
{
    imgstore_server__oci *oci = server->oci;
    imgstore_server__oci_session *s;
    int err = 0;

    *out = NULL;
    pthread_mutex_lock(&oci->lock);
    sweep(server, imgstore_server__now());
    for (s = oci->sessions; s; s = s->next) {
        if (strcmp(s->id, id) == 0 && strcmp(s->name, name) == 0)
            break;
    }
    if (!s)
        err =
            imgstore_error_set(IMGSTORE_ENOTFOUND, "no upload %.64s in progress for %s", id, name);
    else if (s->busy)
        err = imgstore_error_set(IMGSTORE_ELOCKED, "upload %s is busy with another request", id);
    else
        s->busy = true;
    pthread_mutex_unlock(&oci->lock);
    if (err == 0)
        *out = s;
    return err;
}

void imgstore_server__oci_session_put(imgstore_server *server, imgstore_server__oci_session *s,
                                      bool keep)
{
    imgstore_server__oci *oci = server->oci;
    imgstore_server__oci_session **link;

    if (!s)
        return;
    pthread_mutex_lock(&oci->lock);
    s->busy = false;
    s->touched = imgstore_server__now();
    if (!keep) {
        for (link = &oci->sessions; *link && *link != s; link = &(*link)->next)
            ;
        if (*link)
            *link = s->next;
    }
    pthread_mutex_unlock(&oci->lock);
    if (!keep) {
        session_free(oci, s);
        release_place(server);
    }
}

const char *imgstore_server__oci_session_id(const imgstore_server__oci_session *s)
{
    return s->id;
}

uint64_t imgstore_server__oci_session_size(const imgstore_server__oci_session *s)
{
    return s->size;
}

int imgstore_server__oci_session_write(imgstore_server__oci_session *s, const void *data,
                                       size_t len, uint64_t max_bytes)
{
    const char *at = data;
    size_t left = len;

    if (s->size + len > max_bytes)
        return imgstore_error_set(IMGSTORE_EINVALID, "the upload is larger than %llu bytes",
                                  (unsigned long long)max_bytes);
    while (left) {
        ssize_t n = pwrite(s->fd, at, left, (off_t)(s->size + (uint64_t)(at - (const char *)data)));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return imgstore_error_set(IMGSTORE_ERROR, "cannot stage upload %s: %s", s->id,
                                      strerror(errno));
        at += n;
        left -= (size_t)n;
    }
    imgstore_sha256_update(s->hash, data, len);
    s->size += len;
    return 0;
}

int imgstore_server__oci_session_finish(imgstore_server__oci *oci, imgstore_server__oci_session *s,
                                        const char *sha256)
{
    char got[65], from[PATH_CAP], to[PATH_CAP];

    imgstore_sha256_final_hex(s->hash, got);
    if (strcmp(got, sha256) != 0)
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "the upload's bytes have digest sha256:%s, not sha256:%s", got,
                                  sha256);
    /* a staged blob is only ever a name the bytes hashed to; it waits for its manifest,
     * which copies it into the store (crash: the client pushes it again) */
    path_of(from, oci, "uploads", s->id);
    path_of(to, oci, "blobs", sha256);
    if (rename(from, to) < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot stage blob %s: %s", sha256,
                                  strerror(errno));
    return 0;
}

int imgstore_server__oci_staged_open(imgstore_server__oci *oci, const char *sha256,
                                     uint64_t *size_out)
{
    char path[PATH_CAP];
    struct stat st;
    int fd;

    path_of(path, oci, "blobs", sha256);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return -1;
    }
    *size_out = (uint64_t)st.st_size;
    return fd;
}

void imgstore_server__oci_staged_remove(imgstore_server__oci *oci, const char *sha256)
{
    char path[PATH_CAP];

    path_of(path, oci, "blobs", sha256);
    unlink(path);
}

/* Write `len` bytes to `path` by a temp file and a rename: readers see all or nothing. A
 * lookup or a pushed manifest that is lost is a miss, not damage: no fsync. */
static void write_small(const char *path, const char *bytes, size_t len)
{
    char tmp[PATH_CAP + 16];
    FILE *file;

    snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
    if (!(file = fopen(tmp, "w")))
        return;
    if (fwrite(bytes, 1, len, file) != len || fclose(file) != 0) {
        unlink(tmp);
        return;
    }
    if (rename(tmp, path) < 0)
        unlink(tmp);
}

/* lookup/<name>/<xx>/<yy>: the lines "<sha256> <version>" of the digests starting xxyy */
static void lookup_path(char *out, imgstore_server__oci *oci, const char *name, const char *sha256)
{
    snprintf(out, PATH_CAP, "%s/lookup/%s/%.2s/%.2s", oci->dir, name, sha256, sha256 + 2);
}

void imgstore_server__oci_hint_put(imgstore_server__oci *oci, const char *name, const char *sha256,
                                   const char *version)
{
    char path[PATH_CAP], have[IMGSTORE_NAME_MAX + 2], line[64 + IMGSTORE_NAME_MAX + 3];
    int fd, len;

    if (imgstore_server__oci_hint_get(oci, name, sha256, have, sizeof(have)) &&
        strcmp(have, version) == 0)
        return;
    snprintf(path, sizeof(path), "%s/lookup/%s", oci->dir, name);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/lookup/%s/%.2s", oci->dir, name, sha256);
    mkdir(path, 0700);
    lookup_path(path, oci, name, sha256);
    /* one write of a whole line with O_APPEND: concurrent writers never interleave inside
     * a line; a line lost in a crash is a miss */
    len = snprintf(line, sizeof(line), "%s %s\n", sha256, version);
    if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return;
    (void)!write(fd, line, (size_t)len);
    close(fd);
}

bool imgstore_server__oci_hint_get(imgstore_server__oci *oci, const char *name, const char *sha256,
                                   char *version, size_t cap)
{
    char path[PATH_CAP], line[64 + IMGSTORE_NAME_MAX + 3];
    bool found = false;
    FILE *file;

    lookup_path(path, oci, name, sha256);
    if (!(file = fopen(path, "r")))
        return false;
    /* the last line for the digest wins; a torn or foreign line matches nothing */
    while (fgets(line, sizeof(line), file)) {
        char *end = strchr(line, '\n');

        if (!end || strncmp(line, sha256, 64) != 0 || line[64] != ' ')
            continue;
        *end = '\0';
        if ((size_t)(end - line - 65) < cap &&
            imgstore_schema_check_name(IMGSTORE_NAME_VERSION, line + 65) == 0) {
            memcpy(version, line + 65, (size_t)(end - line - 64));
            found = true;
        }
    }
    fclose(file);
    return found;
}

void imgstore_server__oci_pushed_put(imgstore_server__oci *oci, const char *sha256,
                                     const char *bytes, size_t len)
{
    char path[PATH_CAP];

    path_of(path, oci, "manifests", sha256);
    write_small(path, bytes, len);
}

int imgstore_server__oci_pushed_get(imgstore_server__oci *oci, const char *sha256, char **out,
                                    size_t *len_out)
{
    char path[PATH_CAP], *bytes = NULL;
    struct stat st;
    FILE *file;

    *out = NULL;
    path_of(path, oci, "manifests", sha256);
    if (!(file = fopen(path, "r")))
        return IMGSTORE_ENOTFOUND;
    if (fstat(fileno(file), &st) < 0 || (uint64_t)st.st_size > IMGSTORE_OCI_MANIFEST_MAX_BYTES ||
        !(bytes = malloc((size_t)st.st_size + 1)) ||
        fread(bytes, 1, (size_t)st.st_size, file) != (size_t)st.st_size) {
        fclose(file);
        free(bytes);
        return IMGSTORE_ENOTFOUND;
    }
    fclose(file);
    bytes[st.st_size] = '\0';
    *out = bytes;
    *len_out = (size_t)st.st_size;
    return 0;
}

/* ---- the request side: a body of blob bytes --------------------------------------------- */

enum MHD_Result imgstore_server__oci_error(imgstore_server__request *req, unsigned status,
                                           const char *code, const char *fmt, ...)
{
    enum MHD_Result result;
    va_list ap;

    req->oci_code = code;
    va_start(ap, fmt);
    result = imgstore_server__reply_vstatus(req, status, "invalid", fmt, ap);
    va_end(ap);
    return result;
}

enum MHD_Result imgstore_server__oci_blob_flush(imgstore_server__request *req)
{
    int err;

    if (req->blob_stage_len && req->oci_session &&
        (err = imgstore_server__oci_session_write(req->oci_session, req->blob_stage,
                                                  req->blob_stage_len,
                                                  req->server->config->max_upload_bytes)) < 0) {
        req->blob_stage_len = 0;
        imgstore_log(IMGSTORE_LOG_WARN, "server", "oci upload cut off path=%s error=\"%s\"",
                     req->url, imgstore_error_last());
        return MHD_NO; /* no answer is possible mid-body: the connection is closed */
    }
    req->blob_stage_len = 0;
    return MHD_YES;
}

void imgstore_server__oci_request_done(imgstore_server__request *req, bool completed)
{
    /* a request cut off mid-body leaves the session's bytes in doubt: it is dropped, and the
     * client starts the blob over */
    imgstore_server__oci_session_put(req->server, req->oci_session, completed);
    req->oci_session = NULL;
}
