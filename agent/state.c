/*
 * The agent's crash-safe file system steps: state.json replaced atomically, the `current` and
 * `previous` symlinks flipped with rename(2) (a reader, or the restart hook after a crash,
 * finds the old or the new target and never none), and version directories removed. Every
 * step that must survive power loss ends with an fsync of the file and of its directory. What
 * the steps mean, in which order they run and how a restart finishes them is agent.c's.
 */
#include "agent/agent_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *imgstore_agent__path(const imgstore_agent *agent, const char *rel)
{
    return imgstore_strfmt("%s/%s", agent->dir, rel);
}

void imgstore_agent__now(char *buf)
{
    imgstore_time_rfc3339(buf, 32, (int64_t)time(NULL));
}

int imgstore_agent__sync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int err = 0;

    if (fd < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "%s: %s", path, strerror(errno));
    if (fsync(fd) < 0 && errno != EINVAL)
        err = imgstore_error_set(IMGSTORE_ERROR, "fsync %s: %s", path, strerror(errno));
    close(fd);
    return err;
}

static int sync_parent(const char *path)
{
    char *parent = strdup(path), *slash;
    int err;

    if (!parent)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(parent, ".");
    err = imgstore_agent__sync_path(parent);
    free(parent);
    return err;
}

int imgstore_agent__write_file(const char *path, const void *buf, size_t len)
{
    char *tmp = imgstore_strfmt("%s.tmp", path);
    const char *at = buf;
    int fd = -1, err = 0;

    if (!tmp)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    while (len > 0) {
        ssize_t n = write(fd, at, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = imgstore_error_set(IMGSTORE_ERROR, "write %s: %s", tmp, strerror(errno));
            goto done;
        }
        at += n;
        len -= (size_t)n;
    }
    if (fsync(fd) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "fsync %s: %s", tmp, strerror(errno));
        goto done;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "rename %s: %s", tmp, strerror(errno));
        goto done;
    }
    err = sync_parent(path);
done:
    if (fd >= 0)
        close(fd);
    if (err < 0)
        unlink(tmp);
    free(tmp);
    return err;
}

int imgstore_agent__read_file(char **out, size_t *len_out, const char *path, size_t cap)
{
    char *buf = NULL;
    size_t len = 0;
    int fd, err = 0;

    *out = NULL;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT
                   ? imgstore_error_set(IMGSTORE_ENOTFOUND, "%s: no such file", path)
                   : imgstore_error_set(IMGSTORE_ERROR, "%s: %s", path, strerror(errno));
    if (!(buf = malloc(cap + 1))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, cap + 1 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = imgstore_error_set(IMGSTORE_ERROR, "read %s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > cap) {
            err = imgstore_error_set(IMGSTORE_EINVALID, "%s: larger than %zu bytes", path, cap);
            goto done;
        }
    }
    buf[len] = '\0';
    *out = buf;
    if (len_out)
        *len_out = len;
    buf = NULL;
done:
    free(buf);
    close(fd);
    return err;
}

int imgstore_agent__state_load(json_t **out, const char *dir)
{
    char *path = imgstore_strfmt("%s/state.json", dir), *bytes = NULL;
    json_error_t jerr;
    size_t len = 0;
    int err;

    *out = NULL;
    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    err = imgstore_agent__read_file(&bytes, &len, path, AGENT_STATE_MAX);
    if (err == IMGSTORE_ENOTFOUND) {
        *out = json_object();
        err = *out ? 0 : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    } else if (err == 0 && !(*out = json_loadb(bytes, len, 0, &jerr))) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "%s: not JSON (%s)", path, jerr.text);
    } else if (err == 0 && !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        err = imgstore_error_set(IMGSTORE_EINVALID, "%s: not an object", path);
    }
    free(bytes);
    free(path);
    return err;
}

int imgstore_agent__state_save(imgstore_agent *agent)
{
    char *path = imgstore_agent__path(agent, "state.json");
    char *bytes = json_dumps(agent->state, JSON_INDENT(2) | JSON_SORT_KEYS);
    int err;

    if (!path || !bytes)
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    else
        err = imgstore_agent__write_file(path, bytes, strlen(bytes));
    free(bytes);
    free(path);
    return err;
}

int imgstore_agent__link_set(imgstore_agent *agent, const char *link, const char *version)
{
    char *path = imgstore_agent__path(agent, link), *tmp = NULL, *target = NULL;
    int err = 0;

    if (!path) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (!version) {
        if (unlink(path) < 0 && errno != ENOENT)
            err = imgstore_error_set(IMGSTORE_ERROR, "unlink %s: %s", path, strerror(errno));
        else
            err = imgstore_agent__sync_path(agent->dir);
        goto done;
    }
    if (!(tmp = imgstore_strfmt("%s.tmp", path)) ||
        !(target = imgstore_strfmt("versions/%s", version))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    unlink(tmp); /* left by a crash between symlink and rename */
    if (symlink(target, tmp) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "symlink %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    err = imgstore_agent__sync_path(agent->dir);
done:
    free(target);
    free(tmp);
    free(path);
    return err;
}

char *imgstore_agent__link_get(const char *dir, const char *link)
{
    char *path = imgstore_strfmt("%s/%s", dir, link), target[PATH_MAX];
    ssize_t n;

    if (!path)
        return NULL;
    n = readlink(path, target, sizeof(target) - 1);
    free(path);
    if (n <= 9 || strncmp(target, "versions/", 9) != 0)
        return NULL;
    target[n] = '\0';
    return strdup(target + 9);
}

int imgstore_agent__remove_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *entry;
    int err = 0;

    if (!d)
        return errno == ENOENT
                   ? 0
                   : imgstore_error_set(IMGSTORE_ERROR, "%s: %s", path, strerror(errno));
    while ((entry = readdir(d))) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), entry->d_name, 0) < 0 && err == 0)
            err = imgstore_error_set(IMGSTORE_ERROR, "unlink %s/%s: %s", path, entry->d_name,
                                     strerror(errno));
    }
    closedir(d);
    if (err == 0 && rmdir(path) < 0)
        err = imgstore_error_set(IMGSTORE_ERROR, "rmdir %s: %s", path, strerror(errno));
    return err;
}
