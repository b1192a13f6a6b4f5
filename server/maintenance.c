/*
 * The server's maintenance thread: packs the store (issue #9) so that no request ever waits
 * for a gc. The server's store handles have the store's own post-commit gc turned off;
 * instead this thread looks every `gc_interval` seconds (one directory read, as git's
 * estimate) and runs imgstore_store_gc when the loose objects passed the threshold.
 *
 * A gc blocks neither readers nor writers (store/gc.c), so requests go on while it runs.
 * Stopping waits for a gc in progress to end; killing the process instead is safe too.
 * Not responsible for how packing works or when it is due: that is the store's.
 */
#include "server/server_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct imgstore_server__maintenance {
    char *repo;
    uint64_t interval; /* seconds */
    imgstore_server__metrics *metrics;
    imgstore_server__periodic thread;
};

static void gc_run_if_due(imgstore_server__maintenance *m, imgstore_store *store)
{
    imgstore_gc_stats s;
    bool due = false;
    int err;

    if ((err = imgstore_store_gc_due(&due, store)) < 0 || !due) {
        if (err < 0)
            imgstore_log(IMGSTORE_LOG_WARN, "server", "gc: %s", imgstore_error_last());
        return;
    }
    if ((err = imgstore_store_gc(&s, store, NULL)) < 0) {
        imgstore_server__metrics_count(m->metrics, "gc_failures");
        imgstore_log(IMGSTORE_LOG_WARN, "server", "gc failed: %s", imgstore_error_last());
        return;
    }
    if (s.skipped) {
        imgstore_log(IMGSTORE_LOG_INFO, "server", "gc skipped: another gc is packing the store");
        return;
    }
    imgstore_server__metrics_count(m->metrics, "gc_runs");
    imgstore_log(IMGSTORE_LOG_INFO, "server",
                 "gc packed=%llu loose_before=%llu loose_after=%llu bytes_before=%llu "
                 "bytes_after=%llu packs=%llu damaged=%llu",
                 (unsigned long long)s.objects_packed, (unsigned long long)s.loose_before,
                 (unsigned long long)s.loose_after, (unsigned long long)s.bytes_before,
                 (unsigned long long)s.bytes_after, (unsigned long long)s.packs,
                 (unsigned long long)s.damaged);
}

/* A handle of its own for each look, freed after: nothing it read stays cached between
 * gcs, minutes apart. */
static void gc_once(void *payload)
{
    imgstore_server__maintenance *m = payload;
    imgstore_store *store = NULL;

    if (imgstore_store_open(&store, m->repo) < 0) {
        imgstore_log(IMGSTORE_LOG_WARN, "server", "gc: cannot open the store: %s",
                     imgstore_error_last());
        return;
    }
    gc_run_if_due(m, store);
    imgstore_store_free(store);
}

int imgstore_server__maintenance_start(imgstore_server__maintenance **out, const char *repo,
                                       uint64_t interval, imgstore_server__metrics *metrics)
{
    imgstore_server__maintenance *m = NULL;

    *out = NULL;
    if (interval == 0)
        return 0; /* gc_interval = 0: the server never packs; run imgstore gc yourself */
    if (!(m = calloc(1, sizeof(*m))) || !(m->repo = strdup(repo))) {
        free(m);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    m->interval = interval;
    m->metrics = metrics;
    if (imgstore_server__periodic_start(&m->thread, "maintenance", gc_once, m, interval) < 0) {
        imgstore_server__maintenance_stop(m);
        return IMGSTORE_ERROR;
    }
    *out = m;
    return 0;
}

void imgstore_server__maintenance_stop(imgstore_server__maintenance *m)
{
    if (!m)
        return;
    imgstore_server__periodic_stop(&m->thread);
    free(m->repo);
    free(m);
}
