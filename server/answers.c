/*
 * The cache of encoded answers: the exact bytes (and headers) of a read route's 200 answer,
 * keyed by (store tip, route, path parameters), shared by every connection thread.
 *
 * Everything a read answers is a function of the tip commit (manifests, signatures, the
 * trust status under the tip's policy, channel states), so an answer stored under tip T is
 * valid for as long as the tip is T, and a move of the tip invalidates every answer at once
 * without any bookkeeping: the next request reads the new tip (one ref read) and misses.
 * Answers of old tips age out of the LRU. Without it the manifest of a 1 GiB version
 * (~1,000 chunks, ~85 KiB of JSON) was read from git, its signatures checked and the JSON
 * re-encoded on every request (~450 req/s, bench/README.md).
 *
 * Bounded: at most max_bytes of keys and bodies; one answer may take at most an eighth of
 * it. A hit hands the entry to libmicrohttpd without copying: the response holds a
 * reference, dropped by its free callback, so an entry evicted while being sent stays alive
 * until the send is done. Not responsible for deciding what is cacheable (routes opt in
 * with imgstore_server__answer_cached) nor for file bytes (cache.c).
 */
#include "server/server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096 /* a power of two */

typedef struct answer {
    struct answer *newer, *older; /* the LRU list: newest at answers->newest */
    struct answer *chain;         /* the hash bucket's next entry */
    imgstore_server__answers *owner;
    uint64_t hash;
    size_t cost;
    unsigned refs; /* 1 while in the table, +1 per response not yet freed */
    char etag[100];
    char cache_control[48];
    char content_type[48];
    size_t key_len, body_len;
    char *key;  /* inside data[] */
    char *body; /* inside data[] */
    char data[];
} answer;

struct imgstore_server__answers {
    pthread_mutex_t lock;
    uint64_t max_bytes, bytes;
    answer *buckets[BUCKETS];
    answer *newest, *oldest;
};

/* FNV-1a: keys are short and not chosen by an attacker beyond path names we checked. */
static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    return h;
}

int imgstore_server__answers_new(imgstore_server__answers **out, uint64_t max_bytes)
{
    imgstore_server__answers *answers = calloc(1, sizeof(*answers));

    *out = NULL;
    if (!answers)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    pthread_mutex_init(&answers->lock, NULL);
    answers->max_bytes = max_bytes;
    *out = answers;
    return 0;
}

/* Called with the lock held. */
static void release_locked(answer *a)
{
    if (--a->refs == 0)
        free(a);
}

static void unlink_locked(imgstore_server__answers *answers, answer *a)
{
    answer **at = &answers->buckets[a->hash & (BUCKETS - 1)];

    while (*at != a)
        at = &(*at)->chain;
    *at = a->chain;
    if (a->newer)
        a->newer->older = a->older;
    else
        answers->newest = a->older;
    if (a->older)
        a->older->newer = a->newer;
    else
        answers->oldest = a->newer;
    a->newer = a->older = a->chain = NULL;
    answers->bytes -= a->cost;
    release_locked(a);
}

void imgstore_server__answers_free(imgstore_server__answers *answers)
{
    if (!answers)
        return;
    /* the daemon is stopped: no response holds a reference any more */
    while (answers->oldest)
        unlink_locked(answers, answers->oldest);
    pthread_mutex_destroy(&answers->lock);
    free(answers);
}

static void on_response_freed(void *payload)
{
    answer *a = payload;
    imgstore_server__answers *answers = a->owner;

    pthread_mutex_lock(&answers->lock);
    release_locked(a);
    pthread_mutex_unlock(&answers->lock);
}

/* The query arguments that select part of an answer (pages of lists and history). */
static const char *const PAGE_ARGS[] = {"limit", "before", "at", "sort"};

/* (tip, route, decoded path segments, page arguments, variant): segments are names we
 * checked, without NUL; the page arguments are whatever the client sent (the route checks
 * them); the variant is what else the answer shows (a status page's signed-in name). */
static char *make_key(size_t *len_out, const char *tip, const imgstore_server__request *req)
{
    const char *page[sizeof(PAGE_ARGS) / sizeof(PAGE_ARGS[0])];
    size_t len = strlen(tip) + 8;
    char *key, *at;

    for (size_t i = 0; i < req->segment_count; i++)
        len += strlen(req->segments[i]) + 1;
    for (size_t i = 0; i < sizeof(page) / sizeof(page[0]); i++) {
        page[i] = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, PAGE_ARGS[i]);
        len += page[i] ? strlen(PAGE_ARGS[i]) + strlen(page[i]) + 2 : 0;
    }
    len += req->answer_variant ? strlen(req->answer_variant) + 2 : 0;
    if (!(key = malloc(len + 1)))
        return NULL;
    at = key + sprintf(key, "%s %d", tip, (int)req->route);
    for (size_t i = 0; i < req->segment_count; i++)
        at += sprintf(at, "/%s", req->segments[i]);
    for (size_t i = 0; i < sizeof(page) / sizeof(page[0]); i++)
        if (page[i])
            at += sprintf(at, "?%s=%s", PAGE_ARGS[i], page[i]);
    if (req->answer_variant)
        at += sprintf(at, "#%s", req->answer_variant);
    *len_out = (size_t)(at - key);
    return key;
}

static enum MHD_Result reply_hit(imgstore_server__request *req, answer *a)
{
    const char *if_none_match =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    struct MHD_Response *response;
    unsigned status = MHD_HTTP_OK;
    uint64_t bytes = a->body_len;

    if (imgstore_server__etag_matches(if_none_match, a->etag)) {
        response = imgstore_server__not_modified(a->etag, a->body_len);
        on_response_freed(a);
        return imgstore_server__queue(req, MHD_HTTP_NOT_MODIFIED, response, 0);
    }
    response = MHD_create_response_from_buffer_with_free_callback_cls(a->body_len, a->body,
                                                                      on_response_freed, a);
    if (!response) {
        on_response_freed(a);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, a->cache_control);
    if (a->etag[0])
        MHD_add_response_header(response, MHD_HTTP_HEADER_ETAG, a->etag);
    if (strncmp(a->content_type, "text/html", 9) == 0)
        imgstore_server__html_headers(response);
    return imgstore_server__queue(req, status, response, bytes);
}

bool imgstore_server__answer_cached(imgstore_server__request *req, enum MHD_Result *result_out)
{
    imgstore_server__answers *answers = req->server->answers;
    imgstore_store *store;
    char tip[41];
    answer *a;
    uint64_t hash;

    if (!answers || !answers->max_bytes || imgstore_server__store(&store, req) < 0 ||
        imgstore_store_tip_id(tip, store) < 0) {
        imgstore_error_clear();
        if (req->cached_only) { /* no cache, or no tip: the route's own path, on a worker */
            req->defer = true;
            *result_out = MHD_YES;
            return true;
        }
        return false;
    }
    free(req->answer_key);
    if (!(req->answer_key = make_key(&req->answer_key_len, tip, req))) {
        req->defer = req->cached_only;
        *result_out = MHD_YES;
        return req->cached_only;
    }
    memcpy(req->answer_tip, tip, sizeof(tip));
    hash = key_hash(req->answer_key, req->answer_key_len);
    pthread_mutex_lock(&answers->lock);
    for (a = answers->buckets[hash & (BUCKETS - 1)]; a; a = a->chain) {
        if (a->hash == hash && a->key_len == req->answer_key_len &&
            memcmp(a->key, req->answer_key, a->key_len) == 0)
            break;
    }
    if (a) {
        a->refs++;
        if (answers->newest != a) { /* to the front of the LRU list */
            a->newer->older = a->older;
            if (a->older)
                a->older->newer = a->newer;
            else
                answers->oldest = a->newer;
            a->older = answers->newest;
            a->newer = NULL;
            answers->newest->newer = a;
            answers->newest = a;
        }
    }
    pthread_mutex_unlock(&answers->lock);
    if (!a && req->cached_only) {
        /* building the answer reads git: not on a polling thread (server.c runs the
         * handler again on a worker, which counts the miss) */
        req->defer = true;
        *result_out = MHD_YES;
        return true;
    }
    imgstore_server__metrics_count(req->server->metrics,
                                   a ? "answer_cache_hits" : "answer_cache_misses");
    if (!a)
        return false;
    *result_out = reply_hit(req, a);
    return true;
}

void imgstore_server__answer_store(imgstore_server__request *req, const char *body, size_t len,
                                   const char *content_type, const char *cache_control,
                                   const char *etag)
{
    imgstore_server__answers *answers = req->server->answers;
    size_t cost = sizeof(answer) + req->answer_key_len + len;
    imgstore_store *store;
    char tip[41];
    answer *a, *old;

    if (!req->answer_key || !answers || cost > answers->max_bytes / 8)
        return;
    /* the answer was built from the tip read before it, or a newer one: keep it only if the
     * tip did not move meanwhile, so an entry never holds another tip's answer */
    if (imgstore_server__store(&store, req) < 0 || imgstore_store_tip_id(tip, store) < 0 ||
        strcmp(tip, req->answer_tip) != 0) {
        imgstore_error_clear();
        return;
    }
    if (!(a = calloc(1, cost)))
        return;
    a->owner = answers;
    a->cost = cost;
    a->refs = 1;
    a->key = a->data;
    a->key_len = req->answer_key_len;
    memcpy(a->key, req->answer_key, a->key_len);
    a->body = a->data + a->key_len;
    a->body_len = len;
    memcpy(a->body, body, len);
    a->hash = key_hash(a->key, a->key_len);
    snprintf(a->content_type, sizeof(a->content_type), "%s", content_type);
    snprintf(a->cache_control, sizeof(a->cache_control), "%s", cache_control);
    snprintf(a->etag, sizeof(a->etag), "%s", etag ? etag : "");
    pthread_mutex_lock(&answers->lock);
    for (old = answers->buckets[a->hash & (BUCKETS - 1)]; old; old = old->chain) {
        if (old->hash == a->hash && old->key_len == a->key_len &&
            memcmp(old->key, a->key, a->key_len) == 0)
            break;
    }
    if (old) /* another thread stored the same answer first */
        unlink_locked(answers, old);
    while (answers->oldest && answers->bytes + cost > answers->max_bytes)
        unlink_locked(answers, answers->oldest);
    a->chain = answers->buckets[a->hash & (BUCKETS - 1)];
    answers->buckets[a->hash & (BUCKETS - 1)] = a;
    a->older = answers->newest;
    if (answers->newest)
        answers->newest->newer = a;
    answers->newest = a;
    if (!answers->oldest)
        answers->oldest = a;
    answers->bytes += cost;
    pthread_mutex_unlock(&answers->lock);
}

uint64_t imgstore_server__answers_bytes(imgstore_server__answers *answers)
{
    uint64_t bytes;

    if (!answers)
        return 0;
    pthread_mutex_lock(&answers->lock);
    bytes = answers->bytes;
    pthread_mutex_unlock(&answers->lock);
    return bytes;
}
