/*
 * A read replica's sync thread (issue #12): every `mirror_interval` seconds it runs one
 * imgstore_store_mirror_sync (fetch, verify what is new, advance) and keeps what happened
 * for GET /v1/mirror and the metrics. Everything about fetching and checking is the
 * store's (store/mirror.c); this file only schedules it and reports.
 *
 * The answer cache needs no flush: answers are keyed by the tip, and a sync moves it. Long
 * polls are woken at once when the tip moved, so a watcher of a replica sees a move as soon
 * as the replica has checked it.
 */
#include "server/server_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct imgstore_server__mirror {
    imgstore_server *server; /* borrowed: wakes long-polls, counts metrics */
    char *repo, *url, *pin;
    uint64_t interval;
    imgstore_server__periodic thread;
    pthread_mutex_t lock; /* the status below */
    /* the status, under lock */
    int64_t last_attempt, last_success; /* unix seconds; 0: never */
    double last_duration;               /* seconds the last sync took */
    char tip[41];                       /* the last good tip: what is served */
    char refused[41];                   /* the fetched tip last refused ("" when none) */
    char *last_error;                   /* NULL after a good sync */
    uint64_t syncs, failures;
    imgstore_mirror_stats last_advance; /* what the last sync that moved the tip checked */
    double last_advance_duration;       /* and the seconds it took */
};

static int sync_once(imgstore_server__mirror *m)
{
    imgstore_mirror_opts opts = {m->url, m->pin};
    imgstore_mirror_stats stats;
    double start = imgstore_server__now(), seconds;
    char *error = NULL;
    int err;

    err = imgstore_store_mirror_sync(&stats, m->repo, &opts);
    seconds = imgstore_server__now() - start;
    if (err < 0) {
        error = strdup(imgstore_error_last());
        imgstore_server__metrics_count(m->server->metrics, "mirror_failures");
        imgstore_log(IMGSTORE_LOG_WARN, "server", "mirror sync failed primary=%s: %s", m->url,
                     imgstore_error_last());
    } else {
        imgstore_server__metrics_count(m->server->metrics, "mirror_syncs");
        if (stats.advanced)
            imgstore_log(IMGSTORE_LOG_INFO, "server",
                         "mirror synced from=%.12s to=%.12s commits=%llu versions=%llu "
                         "states=%llu policies=%llu bytes_hashed=%llu duration_ms=%.1f",
                         stats.from[0] ? stats.from : "none", stats.to,
                         (unsigned long long)stats.commits, (unsigned long long)stats.versions,
                         (unsigned long long)stats.states, (unsigned long long)stats.policies,
                         (unsigned long long)stats.bytes_hashed, seconds * 1000);
    }
    pthread_mutex_lock(&m->lock);
    m->last_attempt = (int64_t)time(NULL);
    m->last_duration = seconds;
    if (err < 0) {
        m->failures++;
        free(m->last_error);
        m->last_error = error;
        error = NULL;
        snprintf(m->refused, sizeof(m->refused), "%s", err == IMGSTORE_EVERIFY ? stats.to : "");
    } else {
        m->syncs++;
        m->last_success = m->last_attempt;
        free(m->last_error);
        m->last_error = NULL;
        m->refused[0] = '\0';
        snprintf(m->tip, sizeof(m->tip), "%s", stats.to);
        if (stats.advanced) {
            m->last_advance = stats;
            m->last_advance_duration = seconds;
        }
    }
    pthread_mutex_unlock(&m->lock);
    free(error);
    if (err == 0 && stats.advanced)
        imgstore_server__channels_changed(m->server);
    return err;
}

static void sync_run(void *payload)
{
    sync_once(payload);
}

void imgstore_server__mirror_stop(imgstore_server__mirror *m)
{
    if (!m)
        return;
    imgstore_server__periodic_stop(&m->thread);
    pthread_mutex_destroy(&m->lock);
    free(m->last_error);
    free(m->repo);
    free(m->url);
    free(m->pin);
    free(m);
}

int imgstore_server__mirror_start(imgstore_server__mirror **out, imgstore_server *server,
                                  bool first_sync)
{
    const imgstore_server_config *config = server->config;
    imgstore_server__mirror *m = NULL;
    int err = 0;

    *out = NULL;
    if (!(m = calloc(1, sizeof(*m))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    pthread_mutex_init(&m->lock, NULL);
    if (!(m->repo = strdup(config->repo)) || !(m->url = strdup(config->mirror_of)) ||
        (config->mirror_policy_sha256 && !(m->pin = strdup(config->mirror_policy_sha256)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto fail;
    }
    m->server = server;
    m->interval = config->mirror_interval;
    /* a replica with nothing to serve yet takes its first state before it listens */
    if (first_sync && (err = sync_once(m)) < 0) {
        err = imgstore_error_wrap(err, "first sync from %s: ", m->url);
        goto fail;
    }
    if ((err = imgstore_server__periodic_start(&m->thread, "mirror", sync_run, m, m->interval)) < 0)
        goto fail;
    *out = m;
    return 0;
fail:
    imgstore_server__mirror_stop(m);
    return err;
}

static json_t *time_or_null(int64_t t)
{
    char text[32];

    if (!t)
        return json_null();
    imgstore_time_rfc3339(text, sizeof(text), t);
    return json_string(text);
}

json_t *imgstore_server__mirror_status(imgstore_server__mirror *m)
{
    json_t *status;

    pthread_mutex_lock(&m->lock);
    status = json_pack(
        "{s:s, s:s?, s:I, s:o, s:o, s:f, s:s?, s:s?, s:s?, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, "
        "s:f}}",
        "primary", m->url, "primary_http", m->server->config->mirror_primary_http, "interval",
        (json_int_t)m->interval, "last_sync", time_or_null(m->last_attempt), "last_success",
        time_or_null(m->last_success), "last_duration_seconds", m->last_duration, "tip",
        m->tip[0] ? m->tip : NULL, "error", m->last_error, "refused_tip",
        m->refused[0] ? m->refused : NULL, "syncs", (json_int_t)m->syncs, "failures",
        (json_int_t)m->failures, "last_advance", "commits", (json_int_t)m->last_advance.commits,
        "versions", (json_int_t)m->last_advance.versions, "states",
        (json_int_t)m->last_advance.states, "policies", (json_int_t)m->last_advance.policies,
        "bytes_hashed", (json_int_t)m->last_advance.bytes_hashed, "duration_seconds",
        m->last_advance_duration);
    pthread_mutex_unlock(&m->lock);
    return status;
}
