/*
 * The gate in front of libmicrohttpd: accepts connections itself and hands each one to the
 * daemon only once its request head has arrived, within header_timeout seconds of the
 * connection (issue #10: slowloris). libmicrohttpd's connection_timeout is an idle timeout, so
 * 200 clients each sending a header line every 3 s held every slot for ever and starved
 * /healthz. Here a slow head waits outside the daemon's connection slots, is closed (408) at
 * its deadline, and when the gate itself is full the oldest waiting connection makes room for
 * the newest, so a client that sends its request at once is always served.
 *
 * The head is watched with MSG_PEEK, so the daemon reads the request from the socket as
 * usual. Over TLS the head is encrypted: there the gate waits for the first bytes only, and
 * the daemon's idle timeout does the rest (put a TLS terminator in front to get the full
 * deadline). Later requests of a kept-alive connection are the daemon's to time.
 */
#include "server/server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd; /* -1: free */
    double deadline;
    struct sockaddr_storage addr;
    socklen_t addr_len;
} waiting;

struct imgstore_server__gate {
    int listener, epoll, wake;
    struct MHD_Daemon *daemon;
    double header_timeout;
    size_t head_max;
    bool tls;
    waiting *slots;
    size_t capacity, count;
    char *peek;
    pthread_t thread;
    uint64_t timed_out, evicted; /* for the log */
};

static const char TIMEOUT_REPLY[] = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                                    "Content-Length: 0\r\n\r\n";

/* A TLS handshake sent to a plain HTTP port: answered at once, so that a client that tries
 * HTTPS first (skopeo, containers/image) falls back to HTTP without waiting for a timeout. */
static const char TLS_REPLY[] = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
                                "Content-Length: 0\r\n\r\n";

static void drop_saying(imgstore_server__gate *gate, waiting *w, const char *reply, size_t len)
{
    if (reply) /* best effort: the peer may not read it */
        (void)!send(w->fd, reply, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    epoll_ctl(gate->epoll, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    w->fd = -1;
    gate->count--;
}

static void drop(imgstore_server__gate *gate, waiting *w, bool say_timeout)
{
    drop_saying(gate, w, say_timeout ? TIMEOUT_REPLY : NULL, sizeof(TIMEOUT_REPLY) - 1);
}

/* The daemon takes the connection (and closes it if it cannot). */
static void hand_over(imgstore_server__gate *gate, waiting *w)
{
    epoll_ctl(gate->epoll, EPOLL_CTL_DEL, w->fd, NULL);
    (void)MHD_add_connection(gate->daemon, w->fd, (const struct sockaddr *)&w->addr, w->addr_len);
    w->fd = -1;
    gate->count--;
}

/* Whether the head has arrived (or the peer is gone, or it can only be the daemon's to
 * refuse: more than the head limit): peeked, never consumed. */
static bool head_ready(imgstore_server__gate *gate, waiting *w, bool *gone)
{
    ssize_t n = recv(w->fd, gate->peek, gate->head_max, MSG_PEEK | MSG_DONTWAIT);

    *gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    if (n <= 0)
        return false;
    if (!gate->tls && (unsigned char)gate->peek[0] == 0x16) { /* a TLS record: handshake */
        drop_saying(gate, w, TLS_REPLY, sizeof(TLS_REPLY) - 1);
        *gone = true;
        return false;
    }
    if (gate->tls || (size_t)n >= gate->head_max)
        return true;
    /* the blank line that ends the head: "\r\n\r\n", or "\n\n" from a lax client */
    for (ssize_t i = 1; i < n; i++) {
        if (gate->peek[i] == '\n' &&
            (gate->peek[i - 1] == '\n' ||
             (i >= 2 && gate->peek[i - 1] == '\r' && gate->peek[i - 2] == '\n')))
            return true;
    }
    return false;
}

static void accept_all(imgstore_server__gate *gate)
{
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof(addr);
        int fd = accept(gate->listener, (struct sockaddr *)&addr, &addr_len);
        waiting *w = NULL;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET};

        if (fd < 0)
            return; /* EAGAIN, or out of descriptors: the backlog keeps them */
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (gate->count == gate->capacity) { /* the oldest waiter makes room */
            waiting *oldest = NULL;

            for (size_t i = 0; i < gate->capacity; i++)
                if (gate->slots[i].fd >= 0 &&
                    (!oldest || gate->slots[i].deadline < oldest->deadline))
                    oldest = &gate->slots[i];
            drop(gate, oldest, true);
            gate->evicted++;
        }
        for (size_t i = 0; i < gate->capacity && !w; i++)
            if (gate->slots[i].fd < 0)
                w = &gate->slots[i];
        w->fd = fd;
        w->deadline = imgstore_server__now() + gate->header_timeout;
        w->addr = addr;
        w->addr_len = addr_len;
        gate->count++;
        ev.data.ptr = w;
        if (epoll_ctl(gate->epoll, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            w->fd = -1;
            gate->count--;
            continue;
        }
        /* the head may be there already (a client that writes at once) */
        bool gone;

        if (head_ready(gate, w, &gone))
            hand_over(gate, w);
        else if (gone)
            drop(gate, w, false);
    }
}

static void *gate_thread(void *payload)
{
    imgstore_server__gate *gate = payload;
    struct epoll_event events[64];

    for (;;) {
        double t = imgstore_server__now(), next = t + 1.0;
        int n;

        for (size_t i = 0; i < gate->capacity; i++) {
            waiting *w = &gate->slots[i];

            if (w->fd >= 0 && w->deadline <= t) {
                drop(gate, w, true);
                gate->timed_out++;
            } else if (w->fd >= 0 && w->deadline < next) {
                next = w->deadline;
            }
        }
        n = epoll_wait(gate->epoll, events, 64, (int)((next - t) * 1000) + 1);
        for (int i = 0; i < n; i++) {
            waiting *w = events[i].data.ptr;
            bool gone;

            if (w == NULL) { /* the listener */
                accept_all(gate);
            } else if (w == (waiting *)gate) { /* imgstore_server__gate_stop */
                return NULL;
            } else if (w->fd >= 0) {
                if (head_ready(gate, w, &gone))
                    hand_over(gate, w);
                else if (w->fd >= 0 && (gone || (events[i].events & (EPOLLERR | EPOLLHUP))))
                    drop(gate, w, false);
            }
        }
    }
    return NULL;
}

int imgstore_server__gate_start(imgstore_server__gate **out, int listener,
                                struct MHD_Daemon *daemon, unsigned header_timeout, size_t head_max,
                                size_t capacity, bool tls)
{
    imgstore_server__gate *gate = calloc(1, sizeof(*gate));
    struct epoll_event ev = {.events = EPOLLIN};

    *out = NULL;
    if (!gate || !(gate->slots = calloc(capacity, sizeof(*gate->slots))) ||
        !(gate->peek = malloc(head_max))) {
        if (gate)
            free(gate->slots);
        free(gate);
        close(listener);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    for (size_t i = 0; i < capacity; i++)
        gate->slots[i].fd = -1;
    gate->listener = listener;
    gate->daemon = daemon;
    gate->header_timeout = header_timeout;
    gate->head_max = head_max;
    gate->capacity = capacity;
    gate->tls = tls;
    gate->epoll = epoll_create1(EPOLL_CLOEXEC);
    gate->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ev.data.ptr = NULL;
    if (gate->epoll < 0 || gate->wake < 0 ||
        epoll_ctl(gate->epoll, EPOLL_CTL_ADD, listener, &ev) < 0 ||
        (ev.data.ptr = gate, epoll_ctl(gate->epoll, EPOLL_CTL_ADD, gate->wake, &ev) < 0) ||
        pthread_create(&gate->thread, NULL, gate_thread, gate) != 0) {
        int saved = errno;

        if (gate->epoll >= 0)
            close(gate->epoll);
        if (gate->wake >= 0)
            close(gate->wake);
        free(gate->peek);
        free(gate->slots);
        free(gate);
        close(listener);
        return imgstore_error_set(IMGSTORE_ERROR, "cannot start accepting: %s", strerror(saved));
    }
    *out = gate;
    return 0;
}

void imgstore_server__gate_stop(imgstore_server__gate *gate)
{
    uint64_t one = 1;

    if (!gate)
        return;
    (void)!write(gate->wake, &one, sizeof(one));
    pthread_join(gate->thread, NULL);
    for (size_t i = 0; i < gate->capacity; i++)
        if (gate->slots[i].fd >= 0)
            close(gate->slots[i].fd);
    if (gate->timed_out || gate->evicted)
        imgstore_log(IMGSTORE_LOG_INFO, "server",
                     "slow request heads closed timed_out=%llu evicted=%llu",
                     (unsigned long long)gate->timed_out, (unsigned long long)gate->evicted);
    close(gate->listener);
    close(gate->epoll);
    close(gate->wake);
    free(gate->peek);
    free(gate->slots);
    free(gate);
}
