/*
 * What this machine remembers about channels: the highest sequence number it has seen per
 * store and channel, so a replayed or rolled-back channel state (an attacker serving an old,
 * validly signed state) is refused (docs/security.md, "replay"). One small JSON file per
 * store, replaced atomically.
 */
#include "trust/trust.h"

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int imgstore_trust_state_dir(char **out)
{
    const char *state = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");

    if (state && *state)
        *out = imgstore_strfmt("%s/imgstore", state);
    else
        *out = imgstore_strfmt("%s/.local/state/imgstore", home && *home ? home : ".");
    return *out ? 0 : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
}

static int mkdir_p(const char *path)
{
    char buf[4096];

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0700) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(buf, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

int imgstore_trust_seen_update(const char *state_dir, const char *store_id,
                               const imgstore_channel_state *state)
{
    char *base = NULL, *dir = NULL, *path = NULL, *tmp = NULL, key[300];
    json_t *seen = NULL;
    json_error_t jerr;
    int err = 0, fd = -1;

    if (!state_dir && (err = imgstore_trust_state_dir(&base)) < 0)
        return err;
    if (!(dir = imgstore_strfmt("%s/seen", state_dir ? state_dir : base)) ||
        !(path = imgstore_strfmt("%s/%s.json", dir, store_id)) ||
        !(tmp = imgstore_strfmt("%s/.%s.json.XXXXXX", dir, store_id))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    snprintf(key, sizeof(key), "%s/%s", state->name, state->channel);
    if (!(seen = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr)) || !json_is_object(seen)) {
        json_decref(seen);
        seen = json_object();
    }
    json_int_t highest = json_integer_value(json_object_get(seen, key));

    if ((json_int_t)state->sequence < highest) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s: the store offers sequence %llu, but this machine already "
                                 "saw sequence %lld; refusing an old channel state (replay or "
                                 "rollback attack; see docs/security.md)",
                                 key, (unsigned long long)state->sequence, (long long)highest);
        goto done;
    }
    if ((json_int_t)state->sequence == highest)
        goto done;
    json_object_set_new(seen, key, json_integer((json_int_t)state->sequence));
    if (mkdir_p(dir) < 0 || (fd = mkstemp(tmp)) < 0 ||
        json_dumpfd(seen, fd, JSON_SORT_KEYS | JSON_COMPACT) < 0 || fsync(fd) < 0 ||
        rename(tmp, path) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot remember channel sequences in %s: %s",
                                 path, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
    }
done:
    if (fd >= 0)
        close(fd);
    json_decref(seen);
    free(tmp);
    free(path);
    free(dir);
    free(base);
    return err;
}
