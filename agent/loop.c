/*
 * The agent's life: open the state directory (lock it, finish what a crash interrupted),
 * then rounds of "wait for the channel to move, apply it" with backoff while the server is
 * away, until asked to stop. Also `imgstore agent status`'s reading of a directory, which
 * takes no lock: state.json and the links are replaced atomically. What a round does to the
 * host is agent.c's.
 */
#include "agent/agent_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define BACKOFF_MAX 60

static char *dup_or_null(const char *s, bool *failed)
{
    char *copy = s ? strdup(s) : NULL;

    if (s && !copy)
        *failed = true;
    return copy;
}

static int check_config(const imgstore_agent_config *config, const imgstore_agent_ops *ops)
{
    int err;

    if (!config->dir || !*config->dir)
        return imgstore_error_set(IMGSTORE_EINVALID, "agent: no state directory");
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, config->image)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, config->channel)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_HOST, config->host)) < 0)
        return err;
    if (!ops || !ops->wait_move || !ops->pull_file)
        return imgstore_error_set(IMGSTORE_EINVALID, "agent: wait_move and pull_file are needed");
    return 0;
}

/* The state directory names one image and channel: an agent pointed at another's refuses. */
static int check_owner(imgstore_agent *agent)
{
    const char *image = json_string_value(json_object_get(agent->state, "image"));
    const char *channel = json_string_value(json_object_get(agent->state, "channel"));

    if ((image && strcmp(image, agent->image) != 0) ||
        (channel && strcmp(channel, agent->channel) != 0))
        return imgstore_error_set(
            IMGSTORE_EINVALID, "%s belongs to the agent of %s/%s, not of %s/%s", agent->dir,
            image ? image : "?", channel ? channel : "?", agent->image, agent->channel);
    json_object_set_new(agent->state, "image", json_string(agent->image));
    json_object_set_new(agent->state, "channel", json_string(agent->channel));
    json_object_set_new(agent->state, "host", json_string(agent->host));
    return 0;
}

int imgstore_agent_open(imgstore_agent **out, const imgstore_agent_config *config,
                        const imgstore_agent_ops *ops)
{
    imgstore_agent *agent = NULL;
    char *versions = NULL, *lock = NULL;
    bool oom = false;
    int err;

    *out = NULL;
    if ((err = check_config(config, ops)) < 0)
        return err;
    if (!(agent = calloc(1, sizeof(*agent))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    agent->lock_fd = -1;
    agent->config = *config;
    agent->ops = *ops;
    agent->dir = dup_or_null(config->dir, &oom);
    agent->image = dup_or_null(config->image, &oom);
    agent->channel = dup_or_null(config->channel, &oom);
    agent->host = dup_or_null(config->host, &oom);
    agent->restart = dup_or_null(config->restart, &oom);
    agent->health = dup_or_null(config->health, &oom);
    if (!agent->config.health_timeout)
        agent->config.health_timeout = 60;
    if (!agent->config.hook_timeout)
        agent->config.hook_timeout = 300;
    if (!agent->config.wait_seconds)
        agent->config.wait_seconds = 60;
    if (oom || !(versions = imgstore_agent__path(agent, "versions")) ||
        !(lock = imgstore_agent__path(agent, "lock"))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((mkdir(agent->dir, 0755) < 0 && errno != EEXIST) ||
        (mkdir(versions, 0755) < 0 && errno != EEXIST)) {
        err = imgstore_error_set(IMGSTORE_ERROR, "mkdir %s: %s", versions, strerror(errno));
        goto done;
    }
    if ((agent->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "%s: %s", lock, strerror(errno));
        goto done;
    }
    if (flock(agent->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        err = imgstore_error_set(IMGSTORE_ELOCKED, "%s: another agent runs on this directory",
                                 agent->dir);
        goto done;
    }
    if ((err = imgstore_agent__state_load(&agent->state, agent->dir)) < 0 ||
        (err = check_owner(agent)) < 0 || (err = imgstore_agent__state_save(agent)) < 0)
        goto done;
    if ((err = imgstore_agent__recover(agent)) < 0 && agent->stopped)
        goto done;
    if (err < 0)
        imgstore_log(IMGSTORE_LOG_WARN, "agent", "recovery: %s", imgstore_error_last());
    err = 0;
    *out = agent;
    agent = NULL;
done:
    imgstore_agent_free(agent);
    free(lock);
    free(versions);
    return err;
}

void imgstore_agent_free(imgstore_agent *agent)
{
    if (!agent)
        return;
    if (agent->lock_fd >= 0)
        close(agent->lock_fd); /* releases the flock */
    json_decref(agent->state);
    free(agent->dir);
    free(agent->image);
    free(agent->channel);
    free(agent->host);
    free(agent->restart);
    free(agent->health);
    free(agent);
}

const char *imgstore_agent_current(const imgstore_agent *agent)
{
    return json_string_value(json_object_get(agent->state, "version"));
}

int imgstore_agent_step(imgstore_agent *agent)
{
    imgstore_agent_target *target = NULL;
    uint64_t after = (uint64_t)json_integer_value(json_object_get(agent->state, "sequence"));
    int err;

    imgstore_agent__tell_failure(agent); /* one a crash or the server's absence kept back */
    /* a move this host has not finished (a pull cut short) is asked for again from its
     * sequence: the server answers at once with the live state */
    err = agent->ops.wait_move(&target, after, agent->config.wait_seconds, agent->ops.payload);
    if (err == IMGSTORE_ENOTFOUND) {
        /* no such channel yet: the server answers that at once, so ask again in a while */
        imgstore_agent__sleep(agent, 5);
        return 0;
    }
    if (err < 0 || !target)
        return err;
    err = imgstore_agent_apply(agent, target);
    imgstore_agent_target_free(target);
    return err;
}

int imgstore_agent_run(imgstore_agent *agent)
{
    unsigned backoff = 1;

    while (!(agent->config.stop && *agent->config.stop) && !agent->stopped) {
        int err = imgstore_agent_step(agent);

        if (err == 0) {
            backoff = 1;
            continue;
        }
        if (agent->stopped)
            break;
        imgstore_agent__note_error(agent, imgstore_error_last());
        imgstore_agent__state_save(agent);
        imgstore_log(IMGSTORE_LOG_WARN, "agent", "%s; retrying in %u s", imgstore_error_last(),
                     backoff);
        imgstore_agent__sleep(agent, backoff);
        backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
    }
    return 0;
}

int imgstore_agent_status(json_t **out, const char *dir)
{
    json_t *state = NULL;
    char *path = imgstore_strfmt("%s/state.json", dir), *current = NULL, *previous = NULL;
    struct stat st;
    int err;

    *out = NULL;
    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (stat(path, &st) < 0) {
        err = imgstore_error_set(IMGSTORE_ENOTFOUND, "%s: no agent state here", dir);
        goto done;
    }
    if ((err = imgstore_agent__state_load(&state, dir)) < 0)
        goto done;
    current = imgstore_agent__link_get(dir, "current");
    previous = imgstore_agent__link_get(dir, "previous");
    json_object_set_new(state, "current", current ? json_string(current) : json_null());
    json_object_set_new(state, "previous", previous ? json_string(previous) : json_null());
    *out = state;
    state = NULL;
done:
    json_decref(state);
    free(previous);
    free(current);
    free(path);
    return err;
}
