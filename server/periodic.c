/*
 * A thread that runs one job every `interval` seconds until it is stopped (the server's gc
 * in maintenance.c, a replica's sync in mirror.c). Stopping wakes it at once rather than at
 * the end of its wait, and waits for a run in progress to finish.
 */
#include "server/server_internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static void *periodic_main(void *payload)
{
    imgstore_server__periodic *p = payload;

    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        struct timespec deadline;

        pthread_mutex_unlock(&p->lock);
        p->run(p->payload);
        pthread_mutex_lock(&p->lock);
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += (time_t)p->interval;
        while (!p->stopping && pthread_cond_timedwait(&p->wake, &p->lock, &deadline) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int imgstore_server__periodic_start(imgstore_server__periodic *p, const char *what,
                                    void (*run)(void *payload), void *payload, uint64_t interval)
{
    memset(p, 0, sizeof(*p));
    p->run = run;
    p->payload = payload;
    p->interval = interval;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (pthread_create(&p->thread, NULL, periodic_main, p) != 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot start the %s thread", what);
    p->started = true;
    return 0;
}

void imgstore_server__periodic_stop(imgstore_server__periodic *p)
{
    if (!p->run)
        return; /* never started */
    if (p->started) {
        pthread_mutex_lock(&p->lock);
        p->stopping = true;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
    }
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    p->run = NULL;
}
