/*
 * Host reports (issue #11): what each host's agent says it runs on a channel. They are
 * unsigned claims, so they stay out of the signed, replicated git history on purpose: the
 * store keeps them in plain files beside the repository, <repo>/imgstore-reports/<image>/
 * <channel>/, the latest per host in hosts/<host>.json (replaced with rename) and every report
 * appended to events.log (one JSON line each; at 1 MiB it becomes events.log.1, so the log
 * stays bounded). A `git clone` does not carry them and `verify` does not check them: they
 * are what hosts say, shown as such (docs/agent.md). Listing a channel's reports reads one
 * file per reporting host and the log's tail: no walk of versions or commits. Whether the
 * host name was vouched for (the poster's token was bound to it) is the server's call, kept
 * in each record as "host_verified"; records from before that field read as unverified.
 */
#include "store/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REPORTS_DIR     "imgstore-reports"
#define EVENTS_MAX      (1u * 1024 * 1024)
#define HOSTS_MAX       10000
#define HOST_RECORD_MAX (16u * 1024)

static const char *const report_states[] = {"ok", "failed", "rolled-back", NULL};

static int mkdirs(char *path)
{
    for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
            int err = imgstore_error_set(IMGSTORE_ERROR, "mkdir %s: %s", path, strerror(errno));

            *slash = '/';
            return err;
        }
        *slash = '/';
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return imgstore_error_set(IMGSTORE_ERROR, "mkdir %s: %s", path, strerror(errno));
    return 0;
}

static int check_report(const imgstore_report *r)
{
    bool known = false;
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_HOST, r->host)) < 0)
        return imgstore_error_wrap(err, "host: ");
    for (size_t i = 0; report_states[i] && r->state; i++)
        known = known || strcmp(r->state, report_states[i]) == 0;
    if (!known)
        return imgstore_error_set(IMGSTORE_EINVALID, "state: expected ok, failed or rolled-back");
    if (r->version && (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, r->version)) < 0)
        return imgstore_error_wrap(err, "version: ");
    if (r->attempted && (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, r->attempted)) < 0)
        return imgstore_error_wrap(err, "attempted: ");
    if (r->message && (err = imgstore_schema_check_text("message", r->message)) < 0)
        return err;
    return 0;
}

static int write_host(const char *dir, const char *host, const char *bytes)
{
    char *path = imgstore_strfmt("%s/hosts/%s.json", dir, host);
    int err;

    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    err = imgstore_file_replace(path, bytes, strlen(bytes), 0644);
    free(path);
    return err;
}

/* One line onto events.log under its lock; past EVENTS_MAX the log becomes events.log.1. */
static int append_event(const char *dir, const char *line)
{
    char *path = imgstore_strfmt("%s/events.log", dir), *old = imgstore_strfmt("%s.1", path);
    struct stat st;
    int fd = -1, err = 0;

    if (!path || !old) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0 ||
        flock(fd, LOCK_EX) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > EVENTS_MAX) {
        rename(path, old); /* the lock moves with the file: reopen the new one */
        close(fd);
        if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0 ||
            flock(fd, LOCK_EX) < 0) {
            err = imgstore_error_set(IMGSTORE_ERROR, "%s: %s", path, strerror(errno));
            goto done;
        }
    }
    err = imgstore_store__write_all(fd, line, strlen(line));
done:
    if (fd >= 0)
        close(fd);
    free(old);
    free(path);
    return err;
}

static char *reports_dir(imgstore_store *store, const char *name, const char *channel)
{
    return imgstore_strfmt("%s/" REPORTS_DIR "/%s/%s", imgstore_store_path(store), name, channel);
}

static size_t host_count(const char *dir)
{
    char *hosts = imgstore_strfmt("%s/hosts", dir);
    DIR *d = hosts ? opendir(hosts) : NULL;
    struct dirent *e;
    size_t n = 0;

    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    free(hosts);
    return n;
}

int imgstore_store_report_put(json_t **out, imgstore_store *store, const char *name,
                              const char *channel, const imgstore_report *report)
{
    imgstore_channel_state *state = NULL;
    char now[32], *dir = NULL, *hosts = NULL, *host_path = NULL, *bytes = NULL, *line = NULL;
    json_t *record = NULL;
    struct stat st;
    int err;

    *out = NULL;
    if ((err = check_report(report)) < 0 ||
        (err = imgstore_store_channel_get(&state, store, name, channel)) < 0)
        goto done;
    imgstore_time_rfc3339(now, sizeof(now), (int64_t)time(NULL));
    record = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s*, s:s*, s:s*, s:s*, s:b, s:b}", "host",
                       report->host, "image", name, "channel", channel, "state", report->state,
                       "time", now, "version", report->version, "attempted", report->attempted,
                       "message", report->message, "by", report->by, "signed", 0, "host_verified",
                       report->host_verified);
    if (!record || !(dir = reports_dir(store, name, channel)) ||
        !(hosts = imgstore_strfmt("%s/hosts", dir)) ||
        !(host_path = imgstore_strfmt("%s/%s.json", hosts, report->host)) ||
        !(bytes = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS)) ||
        !(line = imgstore_strfmt("%s\n", bytes))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = mkdirs(hosts)) < 0)
        goto done;
    /* a reporting token cannot fill the disk with made-up hosts */
    if (stat(host_path, &st) < 0 && host_count(dir) >= HOSTS_MAX) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "%s/%s already has reports from %d hosts", name,
                                 channel, HOSTS_MAX);
        goto done;
    }
    if ((err = write_host(dir, report->host, bytes)) < 0 || (err = append_event(dir, line)) < 0)
        goto done;
    *out = record;
    record = NULL;
done:
    imgstore_channel_state_free(state);
    json_decref(record);
    free(line);
    free(bytes);
    free(host_path);
    free(hosts);
    free(dir);
    return err;
}

/* A record kept before reports carried "host_verified" was posted by an unbound token. */
static json_t *with_host_verified(json_t *row)
{
    if (!json_is_boolean(json_object_get(row, "host_verified")))
        json_object_set_new(row, "host_verified", json_false());
    return row;
}

static int by_host(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "host")),
                  json_string_value(json_object_get(*(json_t *const *)b, "host")));
}

static json_t *read_hosts(const char *dir)
{
    char *hosts = imgstore_strfmt("%s/hosts", dir);
    DIR *d = hosts ? opendir(hosts) : NULL;
    json_t *list = json_array(), **rows = NULL;
    struct dirent *e;
    size_t n = 0, cap = 0;

    while (list && d && (e = readdir(d))) {
        char *path;
        json_t *row;

        if (e->d_name[0] == '.' || !strstr(e->d_name, ".json"))
            continue;
        if (!(path = imgstore_strfmt("%s/%s", hosts, e->d_name)))
            break;
        row = json_load_file(path, JSON_DISABLE_EOF_CHECK, NULL);
        free(path);
        if (!json_is_object(row) || !json_is_string(json_object_get(row, "host"))) {
            json_decref(row);
            continue;
        }
        if (n == cap) {
            json_t **grown = realloc(rows, (cap = cap ? cap * 2 : 16) * sizeof(*rows));

            if (!grown) {
                json_decref(row);
                break;
            }
            rows = grown;
        }
        rows[n++] = with_host_verified(row);
    }
    if (d)
        closedir(d);
    if (n)
        qsort(rows, n, sizeof(*rows), by_host);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, rows[i]);
    free(rows);
    free(hosts);
    return list;
}

/* The newest `limit` lines of events.log, newest first (the file is at most ~1 MiB). */
static json_t *read_events(const char *dir, size_t limit)
{
    char *path = imgstore_strfmt("%s/events.log", dir), *bytes = NULL;
    json_t *list = json_array();
    FILE *f = path ? fopen(path, "r") : NULL;
    size_t len = 0;

    if (f) {
        bytes = malloc(EVENTS_MAX + HOST_RECORD_MAX + 1);
        if (bytes)
            len = fread(bytes, 1, EVENTS_MAX + HOST_RECORD_MAX, f);
        fclose(f);
    }
    while (bytes && list && len > 0 && json_array_size(list) < limit) {
        size_t end = len, start;
        json_t *row;

        if (bytes[end - 1] == '\n')
            end--;
        start = end;
        while (start > 0 && bytes[start - 1] != '\n')
            start--;
        row = json_loadb(bytes + start, end - start, 0, NULL);
        if (json_is_object(row))
            json_array_append_new(list, with_host_verified(row));
        else
            json_decref(row);
        len = start;
    }
    free(bytes);
    free(path);
    return list;
}

int imgstore_store_reports_get(json_t **hosts_out, json_t **events_out, imgstore_store *store,
                               const char *name, const char *channel, size_t event_limit)
{
    char *dir = NULL;
    int err;

    *hosts_out = NULL;
    *events_out = NULL;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, channel)) < 0)
        return err;
    if (!(dir = reports_dir(store, name, channel)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    *hosts_out = read_hosts(dir);
    *events_out = read_events(dir, event_limit);
    free(dir);
    if (!*hosts_out || !*events_out) {
        json_decref(*hosts_out);
        json_decref(*events_out);
        *hosts_out = *events_out = NULL;
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    return 0;
}
