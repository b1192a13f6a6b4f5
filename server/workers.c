/*
 * The worker pool: where request work that may block runs, so that libmicrohttpd's
 * polling threads (a few epoll loops, each serving many connections) never wait on the
 * store, a long-poll, a cache fill or the disk. A connection whose work is handed over is
 * suspended first and resumed by the job when it is done (server.c, route_files.c).
 *
 * The pool is elastic: it keeps `min_threads` threads, starts another whenever a job would
 * otherwise wait for a busy thread, and lets the extra ones exit after IDLE_SECS without
 * work. Every job belongs to one suspended connection (at most one each), so with
 * `max_threads` at the connection limit no job can wait behind others that block (a
 * long-poll waits for a deploy whose job must run): the worst case is one thread per
 * connection, the old model, and only for connections that block. The queue needs no cap
 * of its own for the same reason: it holds at most one job per connection, and jobs are
 * embedded in their request, so queueing never allocates. Not responsible for what a job
 * does, nor for resuming its connection.
 *
 * Threads are joined, never detached: a thread's thread-local state (libgit2 keeps its error
 * state there) is freed by destructors that run after the thread function returns, so a
 * pool that only counted its threads down could let the process exit, and LeakSanitizer
 * report, while one was still unwinding. Threads that exit when idle are reaped by the next
 * spawn or by workers_free.
 */
#include "server/server_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#define IDLE_SECS 10

typedef struct worker_thread {
    pthread_t id;
    struct imgstore_server__workers *workers;
    bool exited; /* worker_main is returning: join it */
    struct worker_thread *next;
} worker_thread;

struct imgstore_server__workers {
    pthread_mutex_t lock;
    pthread_cond_t work;    /* a job was queued, or the pool is stopping */
    pthread_cond_t stopped; /* a thread exited */
    imgstore_server__job *head, *tail;
    unsigned queued, threads, idle, min_threads, max_threads;
    bool stopping;
    worker_thread *all; /* every thread started and not yet joined */
};

static void *worker_main(void *payload)
{
    worker_thread *self = payload;
    imgstore_server__workers *workers = self->workers;
    struct timespec deadline;

    pthread_mutex_lock(&workers->lock);
    for (;;) {
        imgstore_server__job *job = workers->head;

        if (job) {
            workers->head = job->next;
            if (!workers->head)
                workers->tail = NULL;
            job->next = NULL;
            workers->queued--;
            pthread_mutex_unlock(&workers->lock);
            job->run(job);
            pthread_mutex_lock(&workers->lock);
            continue;
        }
        if (workers->stopping)
            break;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += IDLE_SECS;
        workers->idle++;
        int rc = pthread_cond_timedwait(&workers->work, &workers->lock, &deadline);
        workers->idle--;
        if (rc == ETIMEDOUT && !workers->head && workers->threads > workers->min_threads)
            break;
    }
    workers->threads--;
    self->exited = true;
    pthread_cond_broadcast(&workers->stopped);
    pthread_mutex_unlock(&workers->lock);
    return NULL;
}

/* Join the threads that have exited. Called with the lock held; an exited thread no longer
 * needs the lock, so joining it here cannot deadlock. */
static void reap_locked(imgstore_server__workers *workers)
{
    for (worker_thread **at = &workers->all; *at;) {
        worker_thread *t = *at;

        if (!t->exited) {
            at = &t->next;
            continue;
        }
        pthread_join(t->id, NULL);
        *at = t->next;
        free(t);
    }
}

/* Called with the lock held. */
static int spawn_locked(imgstore_server__workers *workers)
{
    worker_thread *t;
    pthread_attr_t attr;
    int rc;

    reap_locked(workers);
    if (!(t = calloc(1, sizeof(*t))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    t->workers = workers;
    pthread_attr_init(&attr);
    /* jobs run store and route code only: no deep recursion, no large stack buffers */
    pthread_attr_setstacksize(&attr, 1024 * 1024);
    rc = pthread_create(&t->id, &attr, worker_main, t);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(t);
        return imgstore_error_set(IMGSTORE_ERROR, "cannot start a worker thread: error %d", rc);
    }
    t->next = workers->all;
    workers->all = t;
    workers->threads++;
    return 0;
}

int imgstore_server__workers_new(imgstore_server__workers **out, unsigned min_threads,
                                 unsigned max_threads)
{
    imgstore_server__workers *workers = calloc(1, sizeof(*workers));
    int err = 0;

    *out = NULL;
    if (!workers)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    pthread_mutex_init(&workers->lock, NULL);
    pthread_cond_init(&workers->work, NULL);
    pthread_cond_init(&workers->stopped, NULL);
    workers->min_threads = min_threads ? min_threads : 1;
    workers->max_threads = max_threads > workers->min_threads ? max_threads : workers->min_threads;
    pthread_mutex_lock(&workers->lock);
    for (unsigned i = 0; i < workers->min_threads && err == 0; i++)
        err = spawn_locked(workers);
    pthread_mutex_unlock(&workers->lock);
    if (err < 0) {
        imgstore_server__workers_free(workers);
        return err;
    }
    *out = workers;
    return 0;
}

void imgstore_server__workers_run(imgstore_server__workers *workers, imgstore_server__job *job)
{
    pthread_mutex_lock(&workers->lock);
    job->next = NULL;
    if (workers->tail)
        workers->tail->next = job;
    else
        workers->head = job;
    workers->tail = job;
    workers->queued++;
    /* a thread that cannot start is no failure while another will take the job later */
    if (workers->queued > workers->idle && workers->threads < workers->max_threads)
        spawn_locked(workers);
    pthread_cond_signal(&workers->work);
    pthread_mutex_unlock(&workers->lock);
    imgstore_error_clear();
}

void imgstore_server__workers_free(imgstore_server__workers *workers)
{
    if (!workers)
        return;
    pthread_mutex_lock(&workers->lock);
    workers->stopping = true;
    pthread_cond_broadcast(&workers->work);
    while (workers->threads > 0)
        pthread_cond_wait(&workers->stopped, &workers->lock);
    reap_locked(workers); /* every thread has exited: this waits out their destructors */
    pthread_mutex_unlock(&workers->lock);
    pthread_cond_destroy(&workers->stopped);
    pthread_cond_destroy(&workers->work);
    pthread_mutex_destroy(&workers->lock);
    free(workers);
}
