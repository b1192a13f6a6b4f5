/*
 * Channel routes: the current state (optionally as a long-poll watch), the history (also
 * an image's, GET /v1/images/{name}/history, pushes and moves together), and
 * the two moves, deploy and rollback, which are one store call each, and the hosts' reports
 * (unsigned claims kept beside the store, store/reports.c). A long-poll holds its
 * connection's thread but not a store handle while it sleeps; it wakes on a move made
 * through this server at once and polls the store every second for moves made by other
 * writers (the CLI on the same store). Waits are capped in time (max_wait_seconds) and in
 * number (max_waiters).
 */
#include "server/server_internal.h"

#include <string.h>
#include <time.h>

#define POLL_SECS 1

static int check_names(imgstore_server__request *req)
{
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, req->segments[2])) < 0)
        return err;
    return imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, req->segments[3]);
}

static int read_state(imgstore_channel_state **out, imgstore_server__request *req)
{
    imgstore_store *store;
    int err;

    *out = NULL;
    if ((err = imgstore_server__store(&store, req)) < 0)
        return err;
    err = imgstore_store_channel_get(out, store, req->segments[2], req->segments[3]);
    /* a sleeping watcher must not pin a store handle */
    imgstore_server__store_put(req->server, req->store);
    req->store = NULL;
    return err;
}

static enum MHD_Result reply_state(imgstore_server__request *req, imgstore_channel_state *state)
{
    json_t *body = imgstore_schema_channel_to_json(state);

    imgstore_channel_state_free(state);
    return imgstore_server__reply_json(req, MHD_HTTP_OK, body);
}

static bool enter_wait(imgstore_server *server)
{
    bool ok;

    pthread_mutex_lock(&server->lock);
    ok = server->waiters < server->config->max_waiters && !server->stopping;
    if (ok)
        server->waiters++;
    pthread_mutex_unlock(&server->lock);
    if (ok)
        imgstore_server__metrics_gauge(server->metrics, "waiters", 1);
    return ok;
}

static void leave_wait(imgstore_server *server)
{
    pthread_mutex_lock(&server->lock);
    server->waiters--;
    pthread_mutex_unlock(&server->lock);
    imgstore_server__metrics_gauge(server->metrics, "waiters", -1);
}

/* GET /v1/channels/{name}/{channel}[?wait=SECONDS&after=SEQ] */
enum MHD_Result imgstore_server__route_channel(imgstore_server__request *req)
{
    imgstore_server *server = req->server;
    imgstore_channel_state *state = NULL;
    uint64_t wait = 0, after = 0;
    struct timespec deadline, tick;
    enum MHD_Result result;
    bool have_after;
    int err;

    if ((err = check_names(req)) < 0)
        return imgstore_server__reply_error(req, err);
    if ((err = imgstore_server__query_u64(&wait, req, "wait")) < 0 && err != IMGSTORE_ENOTFOUND)
        return imgstore_server__reply_error(req, err);
    if ((err = imgstore_server__query_u64(&after, req, "after")) < 0 && err != IMGSTORE_ENOTFOUND)
        return imgstore_server__reply_error(req, err);
    have_after = err == 0;
    /* a plain read is a function of the tip; a watch is not (it waits for the next one) */
    if (wait == 0 && imgstore_server__answer_cached(req, &result))
        return result;
    err = read_state(&state, req);
    if (wait == 0 || (err < 0 && err != IMGSTORE_ENOTFOUND))
        return err < 0 ? imgstore_server__reply_error(req, err) : reply_state(req, state);
    /* without after=, wait for the next move from what is live now */
    if (!have_after)
        after = state ? state->sequence : 0;
    if (state && state->sequence > after)
        return reply_state(req, state);
    if (!enter_wait(server)) {
        imgstore_channel_state_free(state);
        return imgstore_server__reply_status(req, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                                             "too many watchers, try again");
    }
    if (wait > server->config->max_wait_seconds)
        wait = server->config->max_wait_seconds;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)wait;
    for (;;) {
        uint64_t generation;
        bool timed_out;

        pthread_mutex_lock(&server->lock);
        generation = server->generation;
        clock_gettime(CLOCK_REALTIME, &tick);
        timed_out = server->stopping || tick.tv_sec > deadline.tv_sec ||
                    (tick.tv_sec == deadline.tv_sec && tick.tv_nsec >= deadline.tv_nsec);
        if (!timed_out) {
            tick.tv_sec += POLL_SECS;
            if (tick.tv_sec > deadline.tv_sec ||
                (tick.tv_sec == deadline.tv_sec && tick.tv_nsec > deadline.tv_nsec))
                tick = deadline;
            while (generation == server->generation && !server->stopping &&
                   pthread_cond_timedwait(&server->changed, &server->lock, &tick) == 0)
                ;
        }
        pthread_mutex_unlock(&server->lock);
        imgstore_channel_state_free(state);
        err = read_state(&state, req);
        if (err < 0 && err != IMGSTORE_ENOTFOUND)
            break;
        if ((state && state->sequence > after) || timed_out)
            break;
    }
    leave_wait(server);
    /* on timeout: 200 with the current state (the client compares sequences), 404 if none */
    if (err < 0)
        return imgstore_server__reply_error(req, err);
    return reply_state(req, state);
}

/* The history of an image (channel NULL: pushes and channel moves) or of one channel. */
static enum MHD_Result reply_history(imgstore_server__request *req, const char *channel)
{
    imgstore_history_query q = {.channel = channel};
    imgstore_history_entry *entries = NULL;
    imgstore_store *store;
    size_t count = 0;
    uint64_t limit = 0, at = 0, next = 0;
    enum MHD_Result result;
    json_t *rows, *body;
    int err;

    /* ?limit=N&before=OP pages (the answer's "next" is the following page's before);
     * ?at=UNIX (with a channel) is the state live then: both read the indexes */
    if (((err = imgstore_server__query_u64(&limit, req, "limit")) < 0 &&
         err != IMGSTORE_ENOTFOUND) ||
        ((err = imgstore_server__query_u64(&q.before, req, "before")) < 0 &&
         err != IMGSTORE_ENOTFOUND) ||
        ((err = imgstore_server__query_u64(&at, req, "at")) < 0 && err != IMGSTORE_ENOTFOUND))
        return imgstore_server__reply_error(req, err);
    q.limit = (size_t)limit;
    q.has_at = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "at") != NULL;
    q.at = (int64_t)at;
    if (q.has_at && !channel)
        return imgstore_server__reply_error(
            req, imgstore_error_set(IMGSTORE_EINVALID, "query at: only a channel's history"));
    if (imgstore_server__answer_cached(req, &result))
        return result;
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_history_query(&entries, &count, &next, store, req->segments[2], &q)) <
            0)
        return imgstore_server__reply_error(req, err);
    rows = imgstore_store_history_to_json(entries, count);
    imgstore_history_free(entries, count);
    body = json_pack("{s:s, s:o, s:o}", "name", req->segments[2], "entries", rows, "next",
                     next ? json_integer((json_int_t)next) : json_null());
    if (body && channel)
        json_object_set_new(body, "channel", json_string(channel));
    return imgstore_server__reply_json(req, MHD_HTTP_OK, body);
}

/* GET /v1/channels/{name}/{channel}/history */
enum MHD_Result imgstore_server__route_history(imgstore_server__request *req)
{
    int err;

    if ((err = check_names(req)) < 0)
        return imgstore_server__reply_error(req, err);
    return reply_history(req, req->segments[3]);
}

/* GET /v1/images/{name}/history: every push of the image and every move of its channels */
enum MHD_Result imgstore_server__route_image_history(imgstore_server__request *req)
{
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, req->segments[2])) < 0)
        return imgstore_server__reply_error(req, err);
    return reply_history(req, NULL);
}

/*
 * The request body: a JSON object with only the keys in `allowed`, each a string. An
 * absent body is {} when `empty_ok`.
 */
static int parse_body(json_t **out, imgstore_server__request *req, const char *const *allowed,
                      bool empty_ok)
{
    json_error_t jerr;
    const char *key;
    json_t *body, *value;

    *out = NULL;
    if (!req->body_len && empty_ok) {
        *out = json_object();
        return 0;
    }
    if (!(body =
              json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &jerr)))
        return imgstore_error_set(IMGSTORE_EINVALID, "request body: %s (line %d)", jerr.text,
                                  jerr.line);
    if (!json_is_object(body)) {
        json_decref(body);
        return imgstore_error_set(IMGSTORE_EINVALID, "request body: expected a JSON object");
    }
    json_object_foreach(body, key, value)
    {
        bool known = false;

        for (size_t i = 0; allowed[i]; i++)
            known = known || strcmp(key, allowed[i]) == 0;
        if (!known || !json_is_string(value) || strlen(json_string_value(value)) == 0) {
            int err = imgstore_error_set(IMGSTORE_EINVALID,
                                         known ? "request body: %s must be a non-empty string"
                                               : "request body: unknown key %s",
                                         key);
            json_decref(body);
            return err;
        }
    }
    *out = body;
    return 0;
}

static const char *body_string(json_t *body, const char *key)
{
    return json_string_value(json_object_get(body, key));
}

static enum MHD_Result move(imgstore_server__request *req, bool rollback)
{
    static const char *const deploy_keys[] = {"version", "reason", NULL};
    static const char *const rollback_keys[] = {"to", "reason", NULL};
    imgstore_channel_state *state = NULL;
    imgstore_store *store;
    json_t *body = NULL;
    imgstore_channel_opts opts = {0};
    const char *version = NULL;
    int err;

    if ((err = check_names(req)) < 0 ||
        (err = parse_body(&body, req, rollback ? rollback_keys : deploy_keys, rollback)) < 0)
        return imgstore_server__reply_error(req, err);
    opts.actor = imgstore_server__actor(req);
    opts.signers = req->server->signers;
    opts.reason = body_string(body, "reason");
    opts.to_version = body_string(body, "to");
    version = body_string(body, "version");
    if (!rollback && !version)
        err = imgstore_error_set(IMGSTORE_EINVALID, "request body: version is required");
    if (err == 0 && version)
        err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version);
    if (err == 0 && opts.to_version)
        err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, opts.to_version);
    if (err == 0 && opts.signers.count == 0)
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "this server holds no signing key, so it cannot sign a channel "
                                 "move: sign the state with a deploy key on the client and post "
                                 "it to /v1/channels/%s/%s/signed (imgstore %s with a key does)",
                                 req->segments[2], req->segments[3],
                                 rollback ? "rollback" : "deploy");
    if (err == 0 && opts.reason && strlen(opts.reason) >= IMGSTORE_TEXT_MAX)
        err = imgstore_error_set(IMGSTORE_EINVALID, "request body: reason is longer than %d bytes",
                                 IMGSTORE_TEXT_MAX - 1);
    if (err == 0)
        err = imgstore_server__store(&store, req);
    if (err == 0)
        err = rollback ? imgstore_store_rollback(&state, store, req->segments[2], req->segments[3],
                                                 &opts)
                       : imgstore_store_deploy(&state, store, req->segments[2], version,
                                               req->segments[3], &opts);
    json_decref(body);
    if (err < 0)
        return imgstore_server__reply_error(req, err);
    imgstore_server__channels_changed(req->server);
    return reply_state(req, state);
}

enum MHD_Result imgstore_server__route_deploy(imgstore_server__request *req)
{
    return move(req, false);
}

enum MHD_Result imgstore_server__route_rollback(imgstore_server__request *req)
{
    return move(req, true);
}

#define REPORT_EVENTS_DEFAULT 50
#define REPORT_EVENTS_MAX     1000

/* POST /v1/channels/{name}/{channel}/reports: a host says what it runs. */
enum MHD_Result imgstore_server__route_report_post(imgstore_server__request *req)
{
    static const char *const keys[] = {"host", "state", "version", "attempted", "message", NULL};
    imgstore_report report = {0};
    imgstore_store *store;
    json_t *body = NULL, *record = NULL;
    int err;

    if ((err = check_names(req)) < 0 || (err = parse_body(&body, req, keys, false)) < 0)
        return imgstore_server__reply_error(req, err);
    report.host = body_string(body, "host");
    report.state = body_string(body, "state");
    report.version = body_string(body, "version");
    report.attempted = body_string(body, "attempted");
    report.message = body_string(body, "message");
    report.by = imgstore_server__actor(req);
    if (!report.host || !report.state)
        err = imgstore_error_set(IMGSTORE_EINVALID, "request body: host and state are required");
    /* a malformed host name is a bad request (400) before it is someone else's host (403) */
    if (err == 0 && (err = imgstore_schema_check_name(IMGSTORE_NAME_HOST, report.host)) < 0)
        err = imgstore_error_wrap(err, "host: ");
    if (err == 0 && !imgstore_server__report_allowed(&report.host_verified, req->token,
                                                     req->segments[2], report.host)) {
        json_decref(body);
        return imgstore_server__reply_status(req, MHD_HTTP_FORBIDDEN, "forbidden", "%s",
                                             imgstore_error_last());
    }
    if (err == 0)
        err = imgstore_server__store(&store, req);
    if (err == 0)
        err =
            imgstore_store_report_put(&record, store, req->segments[2], req->segments[3], &report);
    json_decref(body);
    if (err < 0)
        return imgstore_server__reply_error(req, err);
    return imgstore_server__reply_json(req, MHD_HTTP_CREATED, record);
}

/* GET /v1/channels/{name}/{channel}/reports[?limit=N]: the latest report of each host and
 * the newest reports. */
enum MHD_Result imgstore_server__route_reports(imgstore_server__request *req)
{
    imgstore_store *store;
    json_t *hosts = NULL, *events = NULL;
    uint64_t limit = 0;
    int err;

    if ((err = check_names(req)) < 0)
        return imgstore_server__reply_error(req, err);
    if ((err = imgstore_server__query_u64(&limit, req, "limit")) < 0 && err != IMGSTORE_ENOTFOUND)
        return imgstore_server__reply_error(req, err);
    if (err == IMGSTORE_ENOTFOUND || limit == 0)
        limit = REPORT_EVENTS_DEFAULT;
    if (limit > REPORT_EVENTS_MAX)
        limit = REPORT_EVENTS_MAX;
    if ((err = imgstore_server__store(&store, req)) < 0 ||
        (err = imgstore_store_reports_get(&hosts, &events, store, req->segments[2],
                                          req->segments[3], (size_t)limit)) < 0)
        return imgstore_server__reply_error(req, err);
    return imgstore_server__reply_json(req, MHD_HTTP_OK,
                                       json_pack("{s:s, s:s, s:b, s:o, s:o}", "image",
                                                 req->segments[2], "channel", req->segments[3],
                                                 "signed", 0, "hosts", hosts, "events", events));
}
