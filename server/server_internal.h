/*
 * What the server's files share (not API): the configuration and server structs, the
 * per-request state, and the helpers routes use to answer, authorise, borrow a store
 * handle, serve verified file bytes and count metrics.
 */
#ifndef IMGSTORE_SERVER_INTERNAL_H
#define IMGSTORE_SERVER_INTERNAL_H

#include "server/server.h"
#include "store/store.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- configuration (config.c) --------------------------------------------------------- */

#define IMGSTORE_SERVER_SCOPE_READ   1u
#define IMGSTORE_SERVER_SCOPE_PUSH   2u
#define IMGSTORE_SERVER_SCOPE_DEPLOY 4u
#define IMGSTORE_SERVER_SCOPE_ADMIN  8u  /* implies every other scope */
#define IMGSTORE_SERVER_SCOPE_REPORT 16u /* post host reports (agents); deploy implies it */

typedef struct {
    uint8_t digest[32]; /* SHA-256 of the token; the token itself is never kept */
    unsigned scopes;
    char name[65]; /* the actor recorded for its writes and logged for its requests */
    /* what its host reports may claim (issue #12, token create --host/--image); "": unbound */
    char host[IMGSTORE_NAME_MAX + 1];
    char image[IMGSTORE_NAME_MAX + 1];
} imgstore_server__token;

struct imgstore_server_config {
    char *repo;
    char *listen; /* ADDR:PORT */
    char *cache_dir;
    char *tls_cert, *tls_key;
    uint64_t cache_max_bytes; /* 0: no cache, every download streams from the store */
    uint64_t max_upload_bytes;
    uint64_t max_uploads;        /* uploads in progress at once; more are 503 */
    uint64_t upload_min_rate;    /* bytes a second an upload must average (0: any) */
    uint64_t upload_rate_window; /* seconds before that average is enforced */
    uint64_t oci_upload_timeout; /* seconds an idle /v2 upload session or staged blob is kept */
    uint64_t max_json_bytes;
    uint64_t max_header_bytes;
    uint64_t max_url_bytes;
    uint64_t connection_timeout; /* seconds */
    uint64_t header_timeout;     /* seconds from accept to a whole request head */
    uint64_t max_connections, max_connections_per_ip;
    uint64_t max_waiters, max_wait_seconds, drain_seconds;
    uint64_t fill_concurrency, stream_concurrency;
    uint64_t answer_cache_bytes; /* encoded read answers kept (answers.c); 0: none */
    uint64_t gc_interval;        /* seconds between checks for packing (maintenance.c); 0: never */
    char *mirror_of;             /* a read replica of this primary store (mirror.c); NULL: not */
    char *mirror_primary_http;   /* where writes are redirected (307); NULL: refused (403) */
    char *mirror_policy_sha256;  /* policy 1's pinned digest; NULL: trust on first sync */
    uint64_t mirror_interval;    /* seconds between syncs */
    unsigned anonymous_scopes;   /* what a request without a token may do */
    imgstore_server__token *tokens;
    size_t token_count;
};

/** A deep copy of `config` (*out freed with imgstore_server_config_free()). */
int imgstore_server__config_copy(imgstore_server_config **out,
                                 const imgstore_server_config *config);

/** Parse "read,push" into scope bits. Returns 0 or IMGSTORE_EINVALID. */
int imgstore_server__scopes_parse(unsigned *out, const char *text);

/* ---- metrics (metrics.c) -------------------------------------------------------------- */

typedef enum {
    ROUTE_OTHER = 0,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_METRICS,
    ROUTE_IMAGES,
    ROUTE_IMAGE,
    ROUTE_VERSION,
    ROUTE_FILE,
    ROUTE_UPLOAD,
    ROUTE_CHANNEL,
    ROUTE_HISTORY,
    ROUTE_DEPLOY,
    ROUTE_ROLLBACK,
    ROUTE_TRUST,
    ROUTE_MANIFEST,
    ROUTE_SIGNATURES,
    ROUTE_CHANNEL_SIGNED,
    ROUTE_MIRROR,
    ROUTE_REPORTS,
    ROUTE_OCI_BASE,
    ROUTE_OCI_TOKEN,
    ROUTE_OCI_MANIFEST,
    ROUTE_OCI_BLOB,
    ROUTE_OCI_UPLOAD,
    ROUTE_OCI_TAGS,
    ROUTE_UI,       /* the status page's pages (route_ui.c) */
    ROUTE_UI_LOGIN, /* its login, logout and stylesheet (ui_auth.c) */
    ROUTE_COUNT
} imgstore_server__route;

typedef struct imgstore_server__metrics imgstore_server__metrics;

int imgstore_server__metrics_new(imgstore_server__metrics **out);
void imgstore_server__metrics_free(imgstore_server__metrics *metrics);
void imgstore_server__metrics_request(imgstore_server__metrics *metrics,
                                      imgstore_server__route route, unsigned status, double seconds,
                                      uint64_t bytes_out, uint64_t bytes_in);
/* Counters by name: "verification_failures", "cache_hits", "cache_misses",
 * "stream_aborts", "answer_cache_hits", "answer_cache_misses", "gc_runs", "gc_failures". */
void imgstore_server__metrics_count(imgstore_server__metrics *metrics, const char *counter);
/* Gauges moved by +1/-1: "uploads_in_progress", "waiters", "streams". */
void imgstore_server__metrics_gauge(imgstore_server__metrics *metrics, const char *gauge,
                                    int delta);
/** Prometheus text exposition (*out freed with free()). */
int imgstore_server__metrics_render(char **out, imgstore_server__metrics *metrics,
                                    uint64_t cache_bytes, uint64_t answer_cache_bytes);
const char *imgstore_server__route_name(imgstore_server__route route);

/* ---- the download cache (cache.c) ----------------------------------------------------- */

typedef struct imgstore_server__cache imgstore_server__cache;

int imgstore_server__cache_new(imgstore_server__cache **out, const char *dir, uint64_t max_bytes,
                               unsigned fill_concurrency);
void imgstore_server__cache_free(imgstore_server__cache *cache);
bool imgstore_server__cache_enabled(const imgstore_server__cache *cache, uint64_t size);
uint64_t imgstore_server__cache_bytes(imgstore_server__cache *cache);

/**
 * An open fd on the verified copy of `file` (read-only, the caller closes it), filling the
 * cache from the store first when it is cold: every chunk checked by the store, the whole
 * file re-hashed, fsync, rename. Concurrent requests for one file wait for a single fill.
 * *hit_out says whether the copy was already there. Returns 0, IMGSTORE_EVERIFY (the store
 * is damaged: nothing was cached), IMGSTORE_ELOCKED (too many fills, gave up waiting),
 * IMGSTORE_ERROR.
 */
int imgstore_server__cache_open(int *out, bool *hit_out, imgstore_server__cache *cache,
                                imgstore_store *store, const imgstore_manifest *manifest,
                                const imgstore_manifest_file *file);

/* ---- the cache of encoded answers (answers.c) ------------------------------------------ */

typedef struct imgstore_server__answers imgstore_server__answers;

int imgstore_server__answers_new(imgstore_server__answers **out, uint64_t max_bytes);
void imgstore_server__answers_free(imgstore_server__answers *answers);
uint64_t imgstore_server__answers_bytes(imgstore_server__answers *answers);

/* ---- the worker pool (workers.c) ------------------------------------------------------ */

/* A unit of blocking work, embedded in what it works for (a request, a stream). */
typedef struct imgstore_server__job {
    struct imgstore_server__job *next;
    void (*run)(struct imgstore_server__job *job);
} imgstore_server__job;

typedef struct imgstore_server__workers imgstore_server__workers;

/** A pool of min_threads threads that grows on demand up to max_threads. */
int imgstore_server__workers_new(imgstore_server__workers **out, unsigned min_threads,
                                 unsigned max_threads);

/** Queue `job` (not copied: it must stay alive until its run() returns). Never fails: when
 * no further thread can start, the job waits for a busy one. */
void imgstore_server__workers_run(imgstore_server__workers *workers, imgstore_server__job *job);

/** Wait for every queued and running job, stop the threads, free the pool. NULL-safe. */
void imgstore_server__workers_free(imgstore_server__workers *workers);

/* ---- the server and its requests (server.c) ------------------------------------------- */

#define IMGSTORE_SERVER_POOL_MAX 32 /* idle store handles kept open */

/** Seconds on the monotonic clock. */
double imgstore_server__now(void);

/* ---- the gate (gate.c): request heads arrive before the daemon sees a connection ---- */

typedef struct imgstore_server__gate imgstore_server__gate;

/**
 * Accept connections on `listener` (owned from now on) and hand each to `daemon` once its
 * request head has arrived (over TLS: its first bytes), closing with 408 any that take more
 * than `header_timeout` seconds. At most `capacity` wait at once; the oldest makes room.
 */
int imgstore_server__gate_start(imgstore_server__gate **out, int listener,
                                struct MHD_Daemon *daemon, unsigned header_timeout, size_t head_max,
                                size_t capacity, bool tls);

/** Stop accepting; close the listener and every connection still waiting. NULL-safe. */
void imgstore_server__gate_stop(imgstore_server__gate *gate);

/* ---- periodic threads (periodic.c) ---------------------------------------------------- */

/* A thread that runs one job now and then every `interval` seconds until stopped; the
 * maintenance (gc) and mirror (sync) threads are two of them. Fields are periodic.c's. */
typedef struct {
    void (*run)(void *payload);
    void *payload;
    uint64_t interval; /* seconds between the end of one run and the start of the next */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool started, stopping;
} imgstore_server__periodic;

/** Start `run(payload)` on a thread of its own, at once and then every `interval` seconds.
 * `what` names the thread in the error. Returns 0 or IMGSTORE_ERROR ("cannot start the WHAT
 * thread"); stop `p` either way. */
int imgstore_server__periodic_start(imgstore_server__periodic *p, const char *what,
                                    void (*run)(void *payload), void *payload, uint64_t interval);

/** Stop the thread, waiting for a run in progress, and free what start made. Safe on a zeroed
 * `p` that was never started, and after a failed start. */
void imgstore_server__periodic_stop(imgstore_server__periodic *p);

/* ---- maintenance (maintenance.c) ------------------------------------------------------ */

typedef struct imgstore_server__maintenance imgstore_server__maintenance;

/** Start the thread that packs the store at `repo` when it is due, checking every `interval`
 * seconds (0: start nothing, *out NULL), counting gcs in `metrics` (borrowed). */
int imgstore_server__maintenance_start(imgstore_server__maintenance **out, const char *repo,
                                       uint64_t interval, imgstore_server__metrics *metrics);

/** Stop the thread, waiting for a gc in progress. NULL-safe. */
void imgstore_server__maintenance_stop(imgstore_server__maintenance *m);

/* ---- read replicas (mirror.c) ------------------------------------------------------- */

typedef struct imgstore_server__mirror imgstore_server__mirror;

/** Start the thread that syncs the replica config->repo from config->mirror_of every
 * mirror_interval seconds; with `first_sync`, one sync runs before this returns and its
 * failure is the start's (a replica with nothing to serve). */
int imgstore_server__mirror_start(imgstore_server__mirror **out, imgstore_server *server,
                                  bool first_sync);

/** Stop the thread, waiting for a sync in progress. NULL-safe. */
void imgstore_server__mirror_stop(imgstore_server__mirror *m);

/** The replica's status (GET /v1/mirror): primary, last sync and success, tip, last error.
 * New reference; NULL when out of memory. */
json_t *imgstore_server__mirror_status(imgstore_server__mirror *m);

struct imgstore_server {
    imgstore_server_config *config;
    imgstore_signers signers; /* borrowed from the program */
    struct MHD_Daemon *daemon;
    imgstore_server__gate *gate;
    char address[96];
    char *tls_cert_pem, *tls_key_pem;
    imgstore_server__metrics *metrics;
    imgstore_server__cache *cache;
    imgstore_server__answers *answers;
    imgstore_server__workers *workers;
    imgstore_server__maintenance *maintenance;
    imgstore_server__mirror *mirror;  /* NULL unless this server is a read replica */
    struct imgstore_server__oci *oci; /* /v2 upload sessions, staged blobs, lookups (oci.c) */

    /* libgit2 objects are not thread-safe: each request borrows a handle of its own */
    pthread_mutex_t pool_lock;
    imgstore_store *pool[IMGSTORE_SERVER_POOL_MAX];
    size_t pool_count;

    /* channel moves wake long-polls; stopping wakes them all */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    uint64_t generation; /* bumped by every deploy and rollback made through this server */
    uint64_t waiters, streams, inflight;
    uint64_t uploads;        /* in progress, at most config->max_uploads */
    uint64_t suspended;      /* connections handed to a worker: all resumed before MHD stops */
    uint8_t session_key[32]; /* signs the status page's session cookies (ui_auth.c) */
    bool stopping;
    bool closing; /* the drain is over: nothing is suspended any more */
};

typedef struct imgstore_server__upload imgstore_server__upload;

#define IMGSTORE_SERVER_MAX_SEGMENTS 8

typedef struct imgstore_server__request {
    imgstore_server *server;
    struct MHD_Connection *conn;
    const char *method;
    char *url; /* as received (still percent-encoded), for the log */
    char *segments[IMGSTORE_SERVER_MAX_SEGMENTS]; /* decoded path segments */
    size_t segment_count;
    imgstore_server__route route;
    double start;
    unsigned status;
    uint64_t bytes_out, bytes_in;
    const imgstore_server__token *token; /* NULL: anonymous */
    imgstore_store *store;               /* borrowed from the pool, returned on completion */
    char *body;                          /* JSON request body, at most max_json_bytes */
    size_t body_len;
    imgstore_server__upload *upload;
    enum MHD_Result (*handler)(
        struct imgstore_server__request *req); /* run when the request body has arrived */
    char *answer_key; /* set by a miss in the answer cache: a 200 answer is stored under it */
    size_t answer_key_len;
    char answer_tip[41];           /* the tip the answer is built from */
    const char *answer_variant;    /* what else the answer depends on (the page's signed-in
                                      name), part of the key; NULL: nothing */
    const char *extra_header_name; /* one more header on an error answer (416's Content-Range,
                                      a replica's 307 Location, a Link header with two names) */
    char extra_header_value[4096];
    bool client_signed; /* the route takes signatures made by the client: errors.client_signed */
    bool begun;         /* routed and authorised */
    bool path_has_nul;  /* a raw NUL cut the path short (path_has_nul in server.c) */
    bool replied;

    /* /v2 (route_oci.c): errors are answered in the OCI format, with this code if set */
    bool oci;
    const char *oci_code;
    char challenge[320];                              /* the WWW-Authenticate of a /v2 401 */
    struct imgstore_server__oci_session *oci_session; /* the upload this request writes */
    char *blob_stage; /* body bytes gathered for the session, written by a worker */
    size_t blob_stage_len;
    bool blob_flush;   /* the worker writes the stage (the request body is not done) */
    uint64_t body_cap; /* JSON bodies: max_json_bytes, or an OCI manifest's cap */

    /*
     * Work that may block runs on a worker while the connection is suspended (server.c).
     * On a worker, an answer is held here and queued by the polling thread when libmicrohttpd
     * calls again after the resume; the handler's result travels with it.
     */
    imgstore_server__job job;
    bool on_worker;   /* the handler runs on a worker: answers are held */
    bool cached_only; /* on a polling thread: a miss in the answer cache defers the request */
    bool defer;       /* set by a miss under cached_only: run the handler again on a worker */
    bool held;        /* the worker is done: held_* are ready for the polling thread */
    struct MHD_Response *held_response; /* NULL: the handler answered nothing */
    unsigned held_status;
    enum MHD_Result held_result;
    const char *held_data; /* upload bytes handed to the worker (libmicrohttpd's buffer) */
    size_t held_size;
} imgstore_server__request;

/** Borrow a store handle for this request (returned when the request completes). */
int imgstore_server__store(imgstore_store **out, imgstore_server__request *req);

/** Give a handle back to the pool (or close it). NULL-safe. */
void imgstore_server__store_put(imgstore_server *server, imgstore_store *store);

/**
 * Suspend `conn` (from its access handler or content reader) so that a worker may do what
 * would block the polling thread; the worker calls imgstore_server__resume() when done.
 * Returns false, suspending nothing, once the server is closing its connections.
 */
bool imgstore_server__suspend(imgstore_server *server, struct MHD_Connection *conn);

/** Resume a connection suspended by imgstore_server__suspend() (any thread). */
void imgstore_server__resume(imgstore_server *server, struct MHD_Connection *conn);

/** Wake every long-poll after a channel moved. */
void imgstore_server__channels_changed(imgstore_server *server);

/** The actor recorded for a write: the token's name, else "anonymous". Borrowed. */
const char *imgstore_server__actor(const imgstore_server__request *req);

/* ---- answering (http.c) --------------------------------------------------------------- */

/** Queue `response` with `status` (destroying our reference) and record both for the log. */
/* A 304 carrying ETAG and no body; its Content-Length is the 200's, REPRESENTATION_LEN
 * (RFC 9110 8.6): never 0 unless the 200 is empty. NULL when out of memory. */
struct MHD_Response *imgstore_server__not_modified(const char *etag, uint64_t representation_len);
enum MHD_Result imgstore_server__queue(imgstore_server__request *req, unsigned status,
                                       struct MHD_Response *response, uint64_t body_bytes);

/** Answer with a JSON document (steals `body`; NULL answers 500). */
enum MHD_Result imgstore_server__reply_json(imgstore_server__request *req, unsigned status,
                                            json_t *body);

/**
 * Answer with a body (copied): Content-Type, Cache-Control, and ETag unless NULL. A 200
 * answer of a request that missed the answer cache is stored there.
 */
enum MHD_Result imgstore_server__reply_body(imgstore_server__request *req, unsigned status,
                                            const char *body, size_t len, const char *content_type,
                                            const char *cache_control, const char *etag);

/**
 * For a read route whose answer is a function of the store's tip and the request path:
 * answer from the cache of encoded answers (true; *result_out is the handler's result), or
 * return false and remember the key so that the route's 200 answer, made through
 * imgstore_server__reply_body() or _reply_json(), is stored for the next request.
 */
bool imgstore_server__answer_cached(imgstore_server__request *req, enum MHD_Result *result_out);

/** Store what a request that missed the answer cache answers (called by reply_body). */
void imgstore_server__answer_store(imgstore_server__request *req, const char *body, size_t len,
                                   const char *content_type, const char *cache_control,
                                   const char *etag);

/** Answer an IMGSTORE_E* code through the one status table, with imgstore_error_last(). */
enum MHD_Result imgstore_server__reply_error(imgstore_server__request *req, int err);

/** Answer an HTTP-level error (401, 405, 413, ...) with its own code name and message. */
enum MHD_Result imgstore_server__reply_status(imgstore_server__request *req, unsigned status,
                                              const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** A response for HEAD: headers with Content-Length `size`, and no body. NULL when out of
 * memory. */
struct MHD_Response *imgstore_server__head_response(uint64_t size);

/** imgstore_server__reply_status with a va_list (for other formatting replies). */
enum MHD_Result imgstore_server__reply_vstatus(imgstore_server__request *req, unsigned status,
                                               const char *code, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/** The HTTP status for an IMGSTORE_E* code: the one table. */
unsigned imgstore_server__status_for(int err);

/**
 * The status and error code for an IMGSTORE_E* code on a route that takes signatures made
 * by the client, where a signature the store refuses is the request's fault: the same table,
 * its client_signed columns.
 */
unsigned imgstore_server__status_for_route(int err, bool client_signed, const char **code_out);

/** Percent-decode one path segment into a new string; NULL when malformed or holding NUL. */
char *imgstore_server__decode_segment(const char *raw, size_t len);

/** A query argument percent-decoded into a new string (the caller frees it); NULL when
 * absent or malformed (as decode_segment). */
char *imgstore_server__query_string(imgstore_server__request *req, const char *key);

/** A query argument as an unsigned integer; returns 0, IMGSTORE_ENOTFOUND, IMGSTORE_EINVALID. */
int imgstore_server__query_u64(uint64_t *out, imgstore_server__request *req, const char *key);

/**
 * If-None-Match: true when the header (NULL when absent) lists `etag` or is "*", so a 304
 * answers. A NULL or empty `etag` matches nothing.
 */
bool imgstore_server__etag_matches(const char *if_none_match, const char *etag);

/**
 * If-Range: true when a Range header may be honoured, that is when there is no If-Range
 * (NULL) or it is exactly `etag` (ours are strong and never change); otherwise the whole
 * representation is sent.
 */
bool imgstore_server__if_range_allows(const char *if_range, const char *etag);

/**
 * One "bytes=" range of a Range header (RFC 9110 14.1.2) against a representation of `size`
 * bytes: 1 with [*start, *end) set (start < end <= size), 0 to ignore the header (NULL,
 * malformed, several ranges: the whole file is sent), -1 when unsatisfiable (416).
 */
int imgstore_server__parse_range(uint64_t *start, uint64_t *end, const char *header, uint64_t size);

/* ---- auth (auth.c) -------------------------------------------------------------------- */

/**
 * Check the request's bearer token (once; sets req->token) and that it grants `scope`.
 * Returns true, or answers 401/403 itself and returns false.
 */
bool imgstore_server__authorize(imgstore_server__request *req, unsigned scope,
                                enum MHD_Result *result_out);

/**
 * May `token` (NULL: anonymous) post a report for `host` on image `image`, and does the
 * server vouch for the host name? A token bound to a host (config `host=`) speaks only for
 * that host, and when bound to an image (`image=`) only on that image: true with
 * *verified_out set; any other token's report is taken as an unverified claim (true,
 * *verified_out false). False when the binding forbids it, with the one-line reason in
 * imgstore_error_last() (the caller answers 403). The scope is checked before, by
 * imgstore_server__authorize().
 */
bool imgstore_server__report_allowed(bool *verified_out, const imgstore_server__token *token,
                                     const char *image, const char *host);

/** The configured token `token` is (compared in constant time), or NULL. Borrowed. */
const imgstore_server__token *imgstore_server__token_find(const imgstore_server_config *config,
                                                          const char *token);

/* ---- OCI distribution (oci.c: sessions and staging; route_oci.c: the routes) ---------- */

typedef struct imgstore_server__oci imgstore_server__oci;
typedef struct imgstore_server__oci_session imgstore_server__oci_session;

/* Body bytes of a blob upload gathered before a worker writes them to the staging file. */
#define IMGSTORE_SERVER_OCI_STAGE (1024 * 1024)

/**
 * The OCI area of the store at `repo`: <repo>/imgstore-oci (0700) holding upload sessions'
 * files, finished blobs not yet in a version, pushed manifests and the digest lookups
 * (docs/oci.md). Sessions left by an earlier process are removed. Returns 0, IMGSTORE_ERROR.
 */
int imgstore_server__oci_new(imgstore_server__oci **out, const char *repo);

/** Drop every session and free. NULL-safe. */
void imgstore_server__oci_free(imgstore_server__oci *oci);

/** Start the body of a blob upload (POST, PATCH, PUT on .../blobs/uploads/...): find or
 * open its session and check its Content-Range; answers itself on failure. */
enum MHD_Result imgstore_server__oci_blob_begin(imgstore_server__request *req);

/** On a worker: write the gathered stage to the request's session. */
enum MHD_Result imgstore_server__oci_blob_flush(imgstore_server__request *req);

/** When the request is done: hand its session back (kept only if every byte was written). */
void imgstore_server__oci_request_done(imgstore_server__request *req, bool completed);

/** Answer an OCI error: `status`, the OCI `code` (BLOB_UNKNOWN...), the message. */
enum MHD_Result imgstore_server__oci_error(imgstore_server__request *req, unsigned status,
                                           const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sessions (oci.c), for route_oci.c. */
int imgstore_server__oci_session_open(imgstore_server__oci_session **out, imgstore_server *server,
                                      const char *name);
int imgstore_server__oci_session_take(imgstore_server__oci_session **out, imgstore_server *server,
                                      const char *name, const char *id);
void imgstore_server__oci_session_put(imgstore_server *server, imgstore_server__oci_session *s,
                                      bool keep);
const char *imgstore_server__oci_session_id(const imgstore_server__oci_session *s);
uint64_t imgstore_server__oci_session_size(const imgstore_server__oci_session *s);
int imgstore_server__oci_session_write(imgstore_server__oci_session *s, const void *data,
                                       size_t len, uint64_t max_bytes);
/** Check the bytes against `sha256` (hex) and make them the staged blob of that digest. */
int imgstore_server__oci_session_finish(imgstore_server__oci *oci, imgstore_server__oci_session *s,
                                        const char *sha256);

/** An fd on the staged blob `sha256` (and its size), or -1 when there is none. */
int imgstore_server__oci_staged_open(imgstore_server__oci *oci, const char *sha256,
                                     uint64_t *size_out);
void imgstore_server__oci_staged_remove(imgstore_server__oci *oci, const char *sha256);

/* Digest lookups (hints, checked by the caller against the version before use). */
void imgstore_server__oci_hint_put(imgstore_server__oci *oci, const char *name, const char *sha256,
                                   const char *version);
bool imgstore_server__oci_hint_get(imgstore_server__oci *oci, const char *name, const char *sha256,
                                   char *version, size_t cap);
/* Exact pushed manifest bytes, by their digest. */
void imgstore_server__oci_pushed_put(imgstore_server__oci *oci, const char *sha256,
                                     const char *bytes, size_t len);
int imgstore_server__oci_pushed_get(imgstore_server__oci *oci, const char *sha256, char **out,
                                    size_t *len_out);

/**
 * Serve one file of a version as a download (GET /v1 .../files/{file}, GET /v2 .../blobs/):
 * conditional requests, one range, from the verified cache or streamed, never an unchecked
 * byte. Takes *manifest when it streams (sets it NULL). The answer carries `content_type` and,
 * when not NULL, Docker-Content-Digest: `digest_header`.
 */
enum MHD_Result imgstore_server__send_file(imgstore_server__request *req,
                                           imgstore_manifest **manifest,
                                           const imgstore_manifest_file *file,
                                           const char *content_type, const char *digest_header);

/**
 * The token whose SHA-256 is `digest`, compared with every configured digest in constant
 * time without stopping at a match; NULL when none. Borrowed from `config`.
 */
const imgstore_server__token *
imgstore_server__token_find_digest(const imgstore_server_config *config, const uint8_t digest[32]);

/** SHA-256 of a presented token (the form the config holds). 0 or IMGSTORE_ERROR. */
int imgstore_server__token_digest(uint8_t out[32], const char *token);

/** The scopes `token` grants (NULL: the anonymous ones), admin widened to every scope. */
unsigned imgstore_server__scopes_granted(const imgstore_server_config *config,
                                         const imgstore_server__token *token);

/* ---- the status page (html.c, ui_auth.c, route_ui.c) ---------------------------------- */

/* An HTML document being built. Every helper is a no-op once `err` is set, so a page is
 * built without checking each call and checked once at the end. */
typedef struct {
    char *data; /* NUL-terminated */
    size_t len, cap;
    int err; /* 0, IMGSTORE_ERROR (out of memory) or IMGSTORE_EINVALID (past the cap) */
} imgstore_server__html;

#define IMGSTORE_SERVER_HTML_MAX (4u << 20) /* a page is paged well below this */

/** Append trusted markup (a literal of ours), unescaped. */
void imgstore_server__html_raw(imgstore_server__html *html, const char *markup);

/**
 * Append text as HTML: stored text may be hostile, so control characters, bidi overrides
 * and bytes that are not UTF-8 are shown as the CLI shows them (\x1b, \u202e:
 * imgstore_schema_text_escape) and & < > " ' become entities, safe in element content and
 * in quoted attribute values. NULL appends nothing.
 */
void imgstore_server__html_text(imgstore_server__html *html, const char *text);

/**
 * Append markup from a format of ours whose %s arguments are text, each escaped as by
 * imgstore_server__html_text(). Conversions: %s %d %u %zu %llu %%; any other sets
 * IMGSTORE_EINVALID (a programming error the unit tests catch).
 */
void imgstore_server__html_fmt(imgstore_server__html *html, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** The document's head, the site header (with `user` signed in and a logout button, or
 * none: NULL) and the opening of <main>; `title` is text. */
void imgstore_server__html_begin(imgstore_server__html *html, const char *title, const char *user);

/** Close <main>, the footer and the document. */
void imgstore_server__html_end(imgstore_server__html *html);

/** Free the document's bytes. NULL-safe; the struct may be reused after. */
void imgstore_server__html_free(imgstore_server__html *html);

/** The status page's stylesheet (served at /ui/style.css). */
extern const char imgstore_server__html_stylesheet[];

/**
 * The headers every HTML answer carries: a Content-Security-Policy that allows our own
 * stylesheet and forms and nothing else (no script, no frame, no outside fetch), nosniff,
 * no referrer, no framing. Called for every text/html answer, cached ones included.
 */
void imgstore_server__html_headers(struct MHD_Response *response);

/** Answer a built page (`html` freed) with `status`; an error in it answers 500. */
enum MHD_Result imgstore_server__reply_html(imgstore_server__request *req, unsigned status,
                                            imgstore_server__html *html);

#define IMGSTORE_SERVER_SESSION_SECONDS (12 * 3600)
#define IMGSTORE_SERVER_SESSION_COOKIE  "imgstore_session"

/**
 * A session cookie value for the token of `digest` that ends at `expires` (unix seconds):
 * "v1.<expires>.<digest hex>.<HMAC-SHA256 under key, hex>". `out` holds 150 bytes.
 */
void imgstore_server__session_make(char *out, size_t cap, const uint8_t key[32],
                                   const uint8_t digest[32], int64_t expires);

/**
 * The configured token a session cookie names, if its MAC is ours, it has not expired at
 * `now` and the token is still configured. Returns 0 (*out set), IMGSTORE_EINVALID
 * (malformed or forged) or IMGSTORE_ENOTFOUND (expired, or the token was removed).
 */
int imgstore_server__session_check(const imgstore_server__token **out,
                                   const imgstore_server_config *config, const uint8_t key[32],
                                   const char *cookie, int64_t now);

/**
 * The value of `key` in an application/x-www-form-urlencoded body of `len` bytes, decoded
 * ('+' is a space, %XX a byte); *out freed with free(). Returns 0, IMGSTORE_ENOTFOUND,
 * IMGSTORE_EINVALID (malformed escape, NUL).
 */
int imgstore_server__form_value(char **out, const char *body, size_t len, const char *key);

/** True when `target` is a path of ours to return to after the login (no other origin). */
bool imgstore_server__ui_next_ok(const char *target);

/**
 * Who may see a status page: a bearer token (as the API: 401/403 in JSON), else the session
 * cookie, else the anonymous scopes; `read` is needed. Returns true with req->token set, or
 * answers itself (a redirect to the login page, or a 403 page) and returns false.
 */
bool imgstore_server__ui_authorize(imgstore_server__request *req, enum MHD_Result *result_out);

/* ---- routes (route_*.c) --------------------------------------------------------------- */

enum MHD_Result imgstore_server__route_images(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_image(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_version(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_file(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_channel(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_history(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_image_history(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_deploy(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_rollback(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_reports(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_report_post(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_trust(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_manifest(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_signatures(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_sign(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_channel_signed(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_channel_put_signed(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_oci_base(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_oci_token(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_oci_manifest(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_oci_manifest_put(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_oci_blob(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_oci_tags(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_oci_upload(imgstore_server__request *req);
/* the status page: GET /, /ui/, /ui/images/{name}[/{version}], /ui/channels/{name}/{channel} */
enum MHD_Result imgstore_server__route_ui(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_ui_style(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_ui_login_form(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_ui_login(imgstore_server__request *req);
enum MHD_Result imgstore_server__route_ui_logout(imgstore_server__request *req);

/* ---- multipart/form-data (multipart.c) ------------------------------------------------ */

/* A field part's name, and its value: a label "key=value" (key a name, value a text). */
#define IMGSTORE_SERVER_MULTIPART_NAME_MAX  (IMGSTORE_NAME_MAX + 8)
#define IMGSTORE_SERVER_MULTIPART_VALUE_MAX (IMGSTORE_NAME_MAX + 1 + IMGSTORE_TEXT_MAX)

/*
 * What the parser hands on, in body order. A part with a filename is a file: file_begin,
 * file_data any number of times with its bytes in place (borrowed for the call), file_end. A
 * part without is a field: field once with its name and whole value (NUL-terminated, `len`
 * bytes, which may hold NULs), both borrowed for the call. A negative return stops the parse
 * and is what imgstore_server__multipart_feed() returns.
 */
typedef struct {
    int (*file_begin)(const char *filename, void *payload);
    int (*file_data)(const char *data, size_t len, void *payload);
    int (*file_end)(void *payload);
    int (*field)(const char *name, const char *value, size_t len, void *payload);
} imgstore_server__multipart_callbacks;

typedef struct imgstore_server__multipart imgstore_server__multipart;

/**
 * A parser for a body of `content_type` (its boundary parameter), calling `callbacks`
 * (copied) with `payload`. *out is freed with imgstore_server__multipart_free(). Returns 0,
 * IMGSTORE_EINVALID (no boundary, or one longer than RFC 2046's 70 bytes) or IMGSTORE_ERROR.
 */
int imgstore_server__multipart_new(imgstore_server__multipart **out, const char *content_type,
                                   const imgstore_server__multipart_callbacks *callbacks,
                                   void *payload);

/**
 * Feed the next `len` bytes of the body, split anywhere: the same body in any split makes
 * the same calls with the same bytes (file data may come in other pieces). Returns 0,
 * IMGSTORE_EINVALID (malformed body, headers over 8 KiB, a field value too long) or a
 * callback's error; after an error the parser must not be fed again.
 */
int imgstore_server__multipart_feed(imgstore_server__multipart *mp, const char *data, size_t len);

/** True once the close delimiter has been read (a body that ends before is truncated). */
bool imgstore_server__multipart_done(const imgstore_server__multipart *mp);

/** Free a parser. NULL-safe. */
void imgstore_server__multipart_free(imgstore_server__multipart *mp);

/* Uploads: begin on the first call (headers known), feed body bytes, finish at the end. */
enum MHD_Result imgstore_server__upload_begin(imgstore_server__request *req);
/* On the polling thread: gather body bytes (true, *size set to 0) or leave them to upload_data. */
bool imgstore_server__upload_buffer(imgstore_server__request *req, const char *data, size_t *size);
enum MHD_Result imgstore_server__upload_data(imgstore_server__request *req, const char *data,
                                             size_t size);
enum MHD_Result imgstore_server__upload_finish(imgstore_server__request *req);
void imgstore_server__upload_free(imgstore_server *server, imgstore_server__upload *upload);

#endif
