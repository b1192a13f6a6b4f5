/*
 * Prometheus metrics: requests by route and status, a latency histogram, bytes in and out,
 * verification failures, cache hits, and gauges for uploads, long-polls and store streams.
 * Fixed-size tables under one mutex: counting a request is a few additions, and a label
 * value can never come from the client (routes are templates, statuses are 100..599).
 */
#include "server/server_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                 0.5,   1,     2.5,  5,     10,   30,  60};
#define BUCKET_COUNT (sizeof(buckets) / sizeof(buckets[0]))

static const char *const counter_names[] = {
    "verification_failures", "cache_hits", "cache_misses", "stream_aborts", "answer_cache_hits",
    "answer_cache_misses",   "gc_runs",    "gc_failures",  "mirror_syncs",  "mirror_failures"};
static const char *const gauge_names[] = {"uploads_in_progress", "waiters", "streams"};
#define COUNTER_COUNT (sizeof(counter_names) / sizeof(counter_names[0]))
#define GAUGE_COUNT   (sizeof(gauge_names) / sizeof(gauge_names[0]))

struct imgstore_server__metrics {
    pthread_mutex_t lock;
    uint64_t requests[ROUTE_COUNT][500]; /* status - 100 */
    uint64_t latency[ROUTE_COUNT][BUCKET_COUNT + 1];
    double latency_sum[ROUTE_COUNT];
    uint64_t bytes_out, bytes_in;
    uint64_t counters[COUNTER_COUNT];
    int64_t gauges[GAUGE_COUNT];
};

const char *imgstore_server__route_name(imgstore_server__route route)
{
    static const char *const names[ROUTE_COUNT] = {
        [ROUTE_OTHER] = "other",
        [ROUTE_HEALTHZ] = "/healthz",
        [ROUTE_READYZ] = "/readyz",
        [ROUTE_METRICS] = "/metrics",
        [ROUTE_IMAGES] = "/v1/images",
        [ROUTE_IMAGE] = "/v1/images/{name}",
        [ROUTE_VERSION] = "/v1/images/{name}/{version}",
        [ROUTE_FILE] = "/v1/images/{name}/{version}/files/{file}",
        [ROUTE_UPLOAD] = "upload",
        [ROUTE_CHANNEL] = "/v1/channels/{name}/{channel}",
        [ROUTE_HISTORY] = "/v1/channels/{name}/{channel}/history",
        [ROUTE_DEPLOY] = "/v1/channels/{name}/{channel}/deploy",
        [ROUTE_ROLLBACK] = "/v1/channels/{name}/{channel}/rollback",
        [ROUTE_TRUST] = "/v1/trust",
        [ROUTE_MANIFEST] = "/v1/images/{name}/{version}/manifest",
        [ROUTE_SIGNATURES] = "/v1/images/{name}/{version}/signatures",
        [ROUTE_CHANNEL_SIGNED] = "/v1/channels/{name}/{channel}/signed",
        [ROUTE_MIRROR] = "/v1/mirror",
        [ROUTE_REPORTS] = "/v1/channels/{name}/{channel}/reports",
        [ROUTE_OCI_BASE] = "/v2/",
        [ROUTE_OCI_TOKEN] = "/v2/token",
        [ROUTE_OCI_MANIFEST] = "/v2/{name}/manifests/{reference}",
        [ROUTE_OCI_BLOB] = "/v2/{name}/blobs/{digest}",
        [ROUTE_OCI_UPLOAD] = "/v2/{name}/blobs/uploads/{id}",
        [ROUTE_OCI_TAGS] = "/v2/{name}/tags/list",
        [ROUTE_UI] = "/ui",
        [ROUTE_UI_LOGIN] = "/ui/login",
    };

    return route < ROUTE_COUNT ? names[route] : "other";
}

int imgstore_server__metrics_new(imgstore_server__metrics **out)
{
    imgstore_server__metrics *metrics = calloc(1, sizeof(*metrics));

    *out = NULL;
    if (!metrics)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    pthread_mutex_init(&metrics->lock, NULL);
    *out = metrics;
    return 0;
}

void imgstore_server__metrics_free(imgstore_server__metrics *metrics)
{
    if (!metrics)
        return;
    pthread_mutex_destroy(&metrics->lock);
    free(metrics);
}

void imgstore_server__metrics_request(imgstore_server__metrics *metrics,
                                      imgstore_server__route route, unsigned status, double seconds,
                                      uint64_t bytes_out, uint64_t bytes_in)
{
    size_t bucket = 0;

    if (route >= ROUTE_COUNT)
        route = ROUTE_OTHER;
    while (bucket < BUCKET_COUNT && seconds > buckets[bucket])
        bucket++;
    pthread_mutex_lock(&metrics->lock);
    if (status >= 100 && status < 600)
        metrics->requests[route][status - 100]++;
    metrics->latency[route][bucket]++;
    metrics->latency_sum[route] += seconds;
    metrics->bytes_out += bytes_out;
    metrics->bytes_in += bytes_in;
    pthread_mutex_unlock(&metrics->lock);
}

static int find(const char *const *names, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(names[i], name) == 0)
            return (int)i;
    }
    return -1;
}

void imgstore_server__metrics_count(imgstore_server__metrics *metrics, const char *counter)
{
    int i = find(counter_names, COUNTER_COUNT, counter);

    if (i < 0)
        return;
    pthread_mutex_lock(&metrics->lock);
    metrics->counters[i]++;
    pthread_mutex_unlock(&metrics->lock);
}

void imgstore_server__metrics_gauge(imgstore_server__metrics *metrics, const char *gauge, int delta)
{
    int i = find(gauge_names, GAUGE_COUNT, gauge);

    if (i < 0)
        return;
    pthread_mutex_lock(&metrics->lock);
    metrics->gauges[i] += delta;
    pthread_mutex_unlock(&metrics->lock);
}

typedef struct {
    char *text;
    size_t len, cap;
    bool failed;
} text_buf;

static void append(text_buf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void append(text_buf *buf, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (buf->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(buf->text + buf->len, buf->cap - buf->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            buf->failed = true;
            return;
        }
        if ((size_t)n < buf->cap - buf->len) {
            buf->len += (size_t)n;
            return;
        }
        char *grown = realloc(buf->text, buf->cap * 2 + (size_t)n);

        if (!grown) {
            buf->failed = true;
            return;
        }
        buf->text = grown;
        buf->cap = buf->cap * 2 + (size_t)n;
    }
}

int imgstore_server__metrics_render(char **out, imgstore_server__metrics *metrics,
                                    uint64_t cache_bytes, uint64_t answer_cache_bytes)
{
    text_buf buf = {malloc(16384), 0, 16384, false};

    *out = NULL;
    if (!buf.text)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    buf.text[0] = '\0';
    pthread_mutex_lock(&metrics->lock);
    append(&buf, "# HELP imgstore_http_requests_total HTTP requests by route and status.\n"
                 "# TYPE imgstore_http_requests_total counter\n");
    for (int route = 0; route < ROUTE_COUNT; route++) {
        for (unsigned status = 0; status < 500; status++) {
            if (metrics->requests[route][status])
                append(&buf, "imgstore_http_requests_total{route=\"%s\",code=\"%u\"} %llu\n",
                       imgstore_server__route_name(route), status + 100,
                       (unsigned long long)metrics->requests[route][status]);
        }
    }
    append(&buf, "# HELP imgstore_http_request_duration_seconds Time to answer, by route.\n"
                 "# TYPE imgstore_http_request_duration_seconds histogram\n");
    for (int route = 0; route < ROUTE_COUNT; route++) {
        uint64_t total = 0;

        for (size_t b = 0; b <= BUCKET_COUNT; b++)
            total += metrics->latency[route][b];
        if (total == 0)
            continue;
        uint64_t cumulative = 0;
        for (size_t b = 0; b < BUCKET_COUNT; b++) {
            cumulative += metrics->latency[route][b];
            append(&buf,
                   "imgstore_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                   imgstore_server__route_name(route), buckets[b], (unsigned long long)cumulative);
        }
        append(&buf,
               "imgstore_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
               "imgstore_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
               "imgstore_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
               imgstore_server__route_name(route), (unsigned long long)total,
               imgstore_server__route_name(route), metrics->latency_sum[route],
               imgstore_server__route_name(route), (unsigned long long)total);
    }
    append(&buf,
           "# HELP imgstore_http_response_bytes_total Response body bytes queued.\n"
           "# TYPE imgstore_http_response_bytes_total counter\n"
           "imgstore_http_response_bytes_total %llu\n"
           "# HELP imgstore_http_request_bytes_total Request body bytes received.\n"
           "# TYPE imgstore_http_request_bytes_total counter\n"
           "imgstore_http_request_bytes_total %llu\n",
           (unsigned long long)metrics->bytes_out, (unsigned long long)metrics->bytes_in);
    for (size_t i = 0; i < COUNTER_COUNT; i++)
        append(&buf, "# TYPE imgstore_%s_total counter\nimgstore_%s_total %llu\n", counter_names[i],
               counter_names[i], (unsigned long long)metrics->counters[i]);
    for (size_t i = 0; i < GAUGE_COUNT; i++)
        append(&buf, "# TYPE imgstore_%s gauge\nimgstore_%s %lld\n", gauge_names[i], gauge_names[i],
               (long long)metrics->gauges[i]);
    append(&buf, "# TYPE imgstore_cache_bytes gauge\nimgstore_cache_bytes %llu\n",
           (unsigned long long)cache_bytes);
    append(&buf, "# TYPE imgstore_answer_cache_bytes gauge\nimgstore_answer_cache_bytes %llu\n",
           (unsigned long long)answer_cache_bytes);
    pthread_mutex_unlock(&metrics->lock);
    if (buf.failed) {
        free(buf.text);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    *out = buf.text;
    return 0;
}
