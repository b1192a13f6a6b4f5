/*
 * The agent's state machine (docs/agent.md): pull a version whole into versions/<v>, write
 * the trial into state.json, flip `previous` then `current`, restart, check health, and
 * either commit (the trial becomes what runs) or go back (flip to the version it came from,
 * restart, check it, then roll the channel back or report). Each step is written down before
 * it is taken, so a restart after kill -9 finds state.json saying which step to finish: a
 * trial is rolled forward and checked again, a way back is completed, a pull is resumed.
 * How files are fetched and verified, and how hooks run, is the ops' (agent.h); this file
 * decides order and meaning only.
 */
#include "agent/agent_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST_FILE ".manifest.json"
#define MANIFEST_MAX  (4u * 1024 * 1024)
#define CMDLINE_MAX   4096
#define ENV_MAX       16

void imgstore_agent_target_free(imgstore_agent_target *target)
{
    if (!target)
        return;
    imgstore_channel_state_free(target->state);
    imgstore_manifest_free(target->manifest);
    free(target->manifest_bytes);
    free(target);
}

/* ---- state.json fields ------------------------------------------------------------------- */

static const char *state_str(const imgstore_agent *agent, const char *key)
{
    return json_string_value(json_object_get(agent->state, key));
}

static void state_set_str(imgstore_agent *agent, const char *key, const char *value)
{
    json_object_set_new(agent->state, key, value ? json_string(value) : json_null());
}

static uint64_t state_sequence(const imgstore_agent *agent)
{
    return (uint64_t)json_integer_value(json_object_get(agent->state, "sequence"));
}

void imgstore_agent__note_error(imgstore_agent *agent, const char *message)
{
    char now[32];

    imgstore_agent__now(now);
    json_object_set_new(agent->state, "last_error",
                        json_pack("{s:s, s:s}", "time", now, "message", message));
}

static void note_check(imgstore_agent *agent, const char *version, bool ok, const char *message)
{
    char now[32];

    imgstore_agent__now(now);
    json_object_set_new(agent->state, "last_check",
                        json_pack("{s:s, s:s, s:b, s:s?}", "time", now, "version", version, "ok",
                                  ok, "message", message));
}

/* A step of a swap; false when a test asked to stop here as if killed. */
static bool step(imgstore_agent *agent, const char *name)
{
    if (agent->stopped)
        return false;
    if (agent->ops.checkpoint && agent->ops.checkpoint(name, agent->ops.payload) != 0)
        agent->stopped = true;
    return !agent->stopped;
}

#define STOPPED(agent) imgstore_error_set(IMGSTORE_ERROR, "stopped at a checkpoint")

static int set_phase(imgstore_agent *agent, const char *phase)
{
    state_set_str(agent, "phase", phase);
    return imgstore_agent__state_save(agent);
}

static void report(imgstore_agent *agent, const char *state, const char *attempted,
                   const char *message)
{
    imgstore_agent_report r = {agent->host, state_str(agent, "version"), state, message, attempted};

    if (agent->ops.report && agent->ops.report(&r, agent->ops.payload) < 0)
        imgstore_log(IMGSTORE_LOG_WARN, "agent", "report not sent: %s", imgstore_error_last());
}

void imgstore_agent__sleep(imgstore_agent *agent, unsigned seconds)
{
    if (agent->ops.sleep) {
        agent->ops.sleep(seconds, agent->ops.payload);
        return;
    }
    for (unsigned i = 0; i < seconds * 10 && !(agent->config.stop && *agent->config.stop); i++) {
        struct timespec tick = {0, 100 * 1000 * 1000};

        nanosleep(&tick, NULL);
    }
}

/* ---- hooks: the environment a version runs with -------------------------------------------- */

typedef struct {
    char *vars[ENV_MAX + 1];
    size_t count;
} hook_env;

static void env_free(hook_env *env)
{
    for (size_t i = 0; i < env->count; i++)
        free(env->vars[i]);
    env->count = 0;
}

static void env_add(hook_env *env, const char *key, const char *value)
{
    if (value && env->count < ENV_MAX)
        env->vars[env->count] = imgstore_strfmt("%s=%s", key, value);
    if (value && env->count < ENV_MAX && env->vars[env->count])
        env->count++;
    env->vars[env->count] = NULL;
}

static void env_add_file(hook_env *env, const char *key, const char *vdir, const char *file)
{
    char *path = file ? imgstore_strfmt("%s/%s", vdir, file) : NULL;

    env_add(env, key, path);
    free(path);
}

/* The cmdline file's text on one line, for hooks that pass it straight to a hypervisor. */
static void env_add_cmdline(hook_env *env, const char *vdir, const char *file)
{
    char *path = file ? imgstore_strfmt("%s/%s", vdir, file) : NULL, *text = NULL;

    if (path && imgstore_agent__read_file(&text, NULL, path, CMDLINE_MAX) == 0) {
        for (char *c = text; *c; c++)
            if (*c == '\n' || *c == '\r')
                *c = ' ';
        for (size_t n = strlen(text); n > 0 && text[n - 1] == ' '; n--)
            text[n - 1] = '\0';
        env_add(env, "IMGSTORE_CMDLINE", text);
    }
    imgstore_error_clear();
    free(text);
    free(path);
}

static imgstore_manifest *load_manifest(imgstore_agent *agent, const char *version)
{
    char *path = imgstore_strfmt("%s/versions/%s/" MANIFEST_FILE, agent->dir, version);
    imgstore_manifest *m = NULL;
    char *bytes = NULL;
    size_t len = 0;

    if (path && imgstore_agent__read_file(&bytes, &len, path, MANIFEST_MAX) == 0)
        imgstore_schema_manifest_parse(&m, bytes, len);
    free(bytes);
    free(path);
    return m;
}

/* IMGSTORE_* variables for a version: what docs/agent.md promises a hook. */
static void env_for(hook_env *env, imgstore_agent *agent, const char *version, const char *why)
{
    imgstore_manifest *m = version ? load_manifest(agent, version) : NULL;
    char *vdir = version ? imgstore_strfmt("%s/versions/%s", agent->dir, version) : NULL;

    env->count = 0;
    env->vars[0] = NULL;
    env_add(env, "IMGSTORE_IMAGE", agent->image);
    env_add(env, "IMGSTORE_CHANNEL", agent->channel);
    env_add(env, "IMGSTORE_HOST", agent->host);
    env_add(env, "IMGSTORE_AGENT_DIR", agent->dir);
    env_add(env, "IMGSTORE_AGENT_EVENT", why);
    env_add(env, "IMGSTORE_VERSION", version);
    env_add(env, "IMGSTORE_VERSION_DIR", vdir);
    if (m && vdir) {
        env_add_file(env, "IMGSTORE_KERNEL", vdir, m->boot.kernel);
        env_add_file(env, "IMGSTORE_INITRD", vdir, m->boot.initrd);
        env_add_file(env, "IMGSTORE_CMDLINE_FILE", vdir, m->boot.cmdline);
        env_add_cmdline(env, vdir, m->boot.cmdline);
        for (size_t i = 0; i < m->file_count; i++) {
            if (strcmp(m->files[i].info.kind, "unikernel") == 0) {
                env_add_file(env, "IMGSTORE_UNIKERNEL", vdir, m->files[i].path);
                break;
            }
        }
    }
    free(vdir);
    imgstore_manifest_free(m);
}

static double now_seconds(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Restart with `version`, then health attempts until one passes or health_timeout is spent
 * (retry delays as mollymawk's: 1 1 1 2 3 3 4 5, then 5). 0 healthy; IMGSTORE_ERROR with the
 * last failure's message. */
static int restart_and_check(imgstore_agent *agent, const char *version, const char *why)
{
    static const unsigned delays[] = {1, 1, 1, 2, 3, 3, 4, 5};
    unsigned slept = 0, attempt = 0, timeout = agent->config.health_timeout;
    double begun;
    hook_env env;
    int err = 0;

    env_for(&env, agent, version, why);
    if (agent->restart && agent->ops.run &&
        (err = agent->ops.run(agent->restart, env.vars, agent->config.hook_timeout,
                              agent->ops.payload)) < 0) {
        imgstore_error_wrap(err, "restart hook for %s: ", version ? version : "(none)");
        note_check(agent, version, false, imgstore_error_last());
        goto done;
    }
    if (!agent->health || !agent->ops.health || !version) {
        note_check(agent, version, true, NULL);
        goto done;
    }
    /* the budget is wall time from the restart's end; a fake sleep (tests) adds its own */
    begun = now_seconds();
    for (;;) {
        unsigned delay = delays[attempt < 8 ? attempt : 7], spent;

        spent = (unsigned)(now_seconds() - begun) + slept;
        err = agent->ops.health(agent->health, env.vars, timeout > spent ? timeout - spent : 1,
                                agent->ops.payload);
        if (err == 0)
            break;
        attempt++;
        spent = (unsigned)(now_seconds() - begun) + slept;
        if (agent->config.stop && *agent->config.stop) {
            /* asked to stop (systemctl stop): not the version's fault; the trial stays in
             * state.json and the next start checks it again */
            agent->stopped = true;
            err = imgstore_error_set(IMGSTORE_ERROR, "stopped during the health check");
            break;
        }
        if (spent + delay > timeout) {
            imgstore_error_wrap(IMGSTORE_ERROR,
                                "health check failed on %s after %u attempts: ", version, attempt);
            err = IMGSTORE_ERROR;
            break;
        }
        imgstore_agent__sleep(agent, delay);
        if (agent->ops.sleep)
            slept += delay;
    }
    if (!agent->stopped)
        note_check(agent, version, err == 0, err < 0 ? imgstore_error_last() : NULL);
done:
    env_free(&env);
    return err;
}

/* ---- pulling a version whole --------------------------------------------------------------- */

static bool version_complete(imgstore_agent *agent, const imgstore_agent_target *target)
{
    char *path =
        imgstore_strfmt("%s/versions/%s/" MANIFEST_FILE, agent->dir, target->state->version);
    char *bytes = NULL;
    size_t len = 0;
    bool same = false;

    if (path && imgstore_agent__read_file(&bytes, &len, path, MANIFEST_MAX) == 0)
        same = len == target->manifest_len && memcmp(bytes, target->manifest_bytes, len) == 0;
    imgstore_error_clear();
    free(bytes);
    free(path);
    return same;
}

/* All files into versions/.partial-<v>, each verified by the op and fsynced, the manifest
 * last, then one rename makes versions/<v>: a version directory is whole or absent. */
static int pull(imgstore_agent *agent, const imgstore_agent_target *target)
{
    const char *version = target->state->version;
    char *versions = imgstore_agent__path(agent, "versions");
    char *partial = imgstore_strfmt("%s/versions/.partial-%s", agent->dir, version);
    char *final = imgstore_strfmt("%s/versions/%s", agent->dir, version);
    char *manifest = NULL;
    int err = 0;

    if (!versions || !partial || !final) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (version_complete(agent, target))
        goto done;
    /* a directory of that name that is not this manifest's (a tampered or older copy) goes */
    if ((err = imgstore_agent__remove_dir(final)) < 0)
        goto done;
    if ((mkdir(partial, 0755) < 0 && errno != EEXIST)) {
        err = imgstore_error_set(IMGSTORE_ERROR, "mkdir %s: %s", partial, strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < target->manifest->file_count; i++) {
        const imgstore_manifest_file *file = &target->manifest->files[i];
        char *path = imgstore_strfmt("%s/%s", partial, file->path);

        if (!path) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
        if (!step(agent, "pull-file")) {
            free(path);
            err = STOPPED(agent);
            goto done;
        }
        if ((err = agent->ops.pull_file(target, file, path, agent->ops.payload)) == 0)
            err = imgstore_agent__sync_path(path);
        free(path);
        if (err < 0) {
            imgstore_error_wrap(err, "pull %s@%s: ", agent->image, version);
            goto done;
        }
    }
    if (!(manifest = imgstore_strfmt("%s/" MANIFEST_FILE, partial))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = imgstore_agent__write_file(manifest, target->manifest_bytes, target->manifest_len)) <
        0)
        goto done;
    if (!step(agent, "pull-rename")) {
        err = STOPPED(agent);
        goto done;
    }
    if (rename(partial, final) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "rename %s: %s", partial, strerror(errno));
        goto done;
    }
    err = imgstore_agent__sync_path(versions);
done:
    /* a verification failure or a full disk is not resumed: start clean next time */
    if (err < 0 && !agent->stopped && err == IMGSTORE_EVERIFY)
        imgstore_agent__remove_dir(partial);
    free(manifest);
    free(final);
    free(partial);
    free(versions);
    return err;
}

/* ---- swapping, committing, going back ------------------------------------------------------ */

static void installed_add(imgstore_agent *agent, const char *version)
{
    json_t *list = json_object_get(agent->state, "installed");
    size_t i;
    json_t *v;

    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(agent->state, "installed", list);
    }
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), version) == 0) {
            json_array_remove(list, i);
            break;
        }
    }
    json_array_append_new(list, json_string(version));
}

/* Keep `keep` old versions besides current and previous; the oldest installed go first. */
static void prune(imgstore_agent *agent)
{
    json_t *list = json_object_get(agent->state, "installed");
    char *current = imgstore_agent__link_get(agent->dir, "current");
    char *previous = imgstore_agent__link_get(agent->dir, "previous");
    size_t old = 0;

    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *v = json_string_value(json_array_get(list, i));

        if (v && !(current && strcmp(v, current) == 0) && !(previous && strcmp(v, previous) == 0))
            old++;
    }
    for (size_t i = 0; i < json_array_size(list) && old > agent->config.keep;) {
        const char *v = json_string_value(json_array_get(list, i));
        char *path;

        if (!v || (current && strcmp(v, current) == 0) || (previous && strcmp(v, previous) == 0)) {
            i++;
            continue;
        }
        if ((path = imgstore_strfmt("%s/versions/%s", agent->dir, v)) &&
            imgstore_agent__remove_dir(path) == 0) {
            json_array_remove(list, i);
            old--;
        } else {
            i++;
        }
        free(path);
    }
    imgstore_agent__state_save(agent);
    free(previous);
    free(current);
}

static int commit(imgstore_agent *agent)
{
    json_t *trial = json_object_get(agent->state, "trial");
    const char *to = json_string_value(json_object_get(trial, "to"));
    char now[32], *version = to ? strdup(to) : NULL;
    int err;

    if (!version)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    imgstore_agent__now(now);
    state_set_str(agent, "version", version);
    state_set_str(agent, "since", now);
    json_object_set(agent->state, "sequence", json_object_get(trial, "sequence"));
    installed_add(agent, version);
    json_object_del(agent->state, "trial");
    state_set_str(agent, "phase", "running");
    if ((err = imgstore_agent__state_save(agent)) < 0 || !step(agent, "commit")) {
        free(version);
        return err < 0 ? err : STOPPED(agent);
    }
    imgstore_log(IMGSTORE_LOG_INFO, "agent", "%s@%s running and healthy", agent->image, version);
    report(agent, "ok", NULL, NULL);
    prune(agent);
    free(version);
    return 0;
}

/* Tell the channel: a signed rollback when this agent may move it, else (and also) a report.
 * Written down first as pending, so that a crash after going back still tells. */
void imgstore_agent__tell_failure(imgstore_agent *agent)
{
    json_t *failed = json_object_get(agent->state, "failed");
    const char *version = json_string_value(json_object_get(failed, "version"));
    const char *reason = json_string_value(json_object_get(failed, "reason"));
    const char *to = state_str(agent, "version");
    uint64_t sequence = (uint64_t)json_integer_value(json_object_get(failed, "sequence"));
    const char *outcome = "rolled-back";
    int err = IMGSTORE_ENOTFOUND;

    if (!json_is_true(json_object_get(failed, "pending")) || !version)
        return;
    if (agent->ops.rollback && to)
        err = agent->ops.rollback(version, sequence, to, reason, agent->ops.payload);
    if (err < 0 && err != IMGSTORE_ENOTFOUND)
        imgstore_log(IMGSTORE_LOG_WARN, "agent", "channel not rolled back: %s",
                     imgstore_error_last());
    if (!to)
        outcome = "failed";
    report(agent, outcome, version, reason);
    if (err == 0 || err == IMGSTORE_ENOTFOUND) {
        json_object_set_new(failed, "pending", json_false());
        json_object_set_new(failed, "channel_rolled_back", json_boolean(err == 0));
        imgstore_agent__state_save(agent);
    }
}

/* Flip back to the version the trial came from, restart it and check it. */
static int go_back(imgstore_agent *agent, const char *why)
{
    json_t *trial = json_object_get(agent->state, "trial");
    const char *to = json_string_value(json_object_get(trial, "to"));
    const char *from = json_string_value(json_object_get(trial, "from"));
    const char *prev = json_string_value(json_object_get(trial, "previous"));
    char now[32], *reason = NULL;
    int err;

    if (!to)
        return imgstore_error_set(IMGSTORE_EINVALID, "state.json: a trial without a version");
    if (!(reason = imgstore_strfmt("agent %s: health check failed on %s", agent->host, to)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (why)
        imgstore_agent__note_error(agent, why);
    if ((err = set_phase(agent, "rolling-back")) < 0 || !step(agent, "back-current"))
        goto done;
    if ((err = imgstore_agent__link_set(agent, "current", from)) < 0 ||
        !step(agent, "back-previous"))
        goto done;
    /* `previous` goes back to what it was: never the version that just failed */
    if (prev && (err = imgstore_agent__link_set(agent, "previous", prev)) < 0)
        goto done;
    if (!step(agent, "back-restart"))
        goto done;
    imgstore_log(IMGSTORE_LOG_WARN, "agent", "%s@%s failed (%s); back to %s", agent->image, to,
                 why ? why : "interrupted", from ? from : "nothing");
    /* with nothing to go back to, the hook runs without IMGSTORE_VERSION: stop the image */
    err = restart_and_check(agent, from, "rollback");
    if (agent->stopped)
        goto done;
    if (err < 0)
        imgstore_agent__note_error(agent, imgstore_error_last());
    imgstore_agent__now(now);
    json_object_set_new(agent->state, "failed",
                        json_pack("{s:s, s:O, s:s, s:s, s:b}", "version", to, "sequence",
                                  json_object_get(trial, "sequence"), "time", now, "reason", reason,
                                  "pending", 1));
    json_object_set(agent->state, "sequence", json_object_get(trial, "sequence"));
    state_set_str(agent, "version", from);
    state_set_str(agent, "since", now);
    json_object_del(agent->state, "trial");
    /* the fallback unhealthy too: stop looping, say so, wait for a person or a new move */
    state_set_str(agent, "phase", err < 0 ? "degraded" : from ? "running" : "idle");
    if ((err = imgstore_agent__state_save(agent)) < 0 || !step(agent, "back-tell"))
        goto done;
    imgstore_agent__tell_failure(agent);
done:
    if (agent->stopped && err == 0)
        err = STOPPED(agent);
    free(reason);
    return err;
}

/* From a trial written in state.json on: flip, restart, check, commit or go back. Also what
 * a restart after a crash in the middle runs again (every step is idempotent). */
static int run_trial(imgstore_agent *agent, const char *why)
{
    json_t *trial = json_object_get(agent->state, "trial");
    const char *to = json_string_value(json_object_get(trial, "to"));
    const char *from = json_string_value(json_object_get(trial, "from"));
    int err;

    if (!to)
        return imgstore_error_set(IMGSTORE_EINVALID, "state.json: a trial without a version");
    if ((err = set_phase(agent, "swapping")) < 0)
        return err;
    if (!step(agent, "swap-previous"))
        return STOPPED(agent);
    if (from && (err = imgstore_agent__link_set(agent, "previous", from)) < 0)
        return err;
    if (!step(agent, "swap-current"))
        return STOPPED(agent);
    if ((err = imgstore_agent__link_set(agent, "current", to)) < 0)
        return err;
    if ((err = set_phase(agent, "checking")) < 0)
        return err;
    if (!step(agent, "restart"))
        return STOPPED(agent);
    if (restart_and_check(agent, to, why) == 0)
        return commit(agent);
    if (agent->stopped)
        return STOPPED(agent);
    return go_back(agent, imgstore_error_last());
}

int imgstore_agent_apply(imgstore_agent *agent, const imgstore_agent_target *target)
{
    const imgstore_channel_state *state = target->state;
    json_t *failed = json_object_get(agent->state, "failed");
    const char *current = state_str(agent, "version");
    char now[32], *previous;
    int err;

    if (state->sequence < state_sequence(agent))
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "%s/%s: the server offers move %llu, older than move %llu this "
                                  "host already ran",
                                  agent->image, agent->channel, (unsigned long long)state->sequence,
                                  (unsigned long long)state_sequence(agent));
    if (strcmp(state->name, agent->image) != 0 || strcmp(state->channel, agent->channel) != 0 ||
        strcmp(target->manifest->version, state->version) != 0)
        return imgstore_error_set(IMGSTORE_EVERIFY, "the target is not %s/%s's version",
                                  agent->image, agent->channel);
    /* the move that just failed here is not tried again; a new move to it is */
    if (json_is_object(failed) && json_string_value(json_object_get(failed, "version")) &&
        strcmp(json_string_value(json_object_get(failed, "version")), state->version) == 0 &&
        (uint64_t)json_integer_value(json_object_get(failed, "sequence")) == state->sequence)
        return 0;
    if (current && strcmp(current, state->version) == 0 && version_complete(agent, target)) {
        json_object_set_new(agent->state, "sequence", json_integer((json_int_t)state->sequence));
        return imgstore_agent__state_save(agent);
    }
    if ((err = set_phase(agent, "pulling")) < 0)
        return err;
    if ((err = pull(agent, target)) < 0) {
        /* killed (tests) or asked to stop: the pull resumes on the next start */
        if (agent->stopped || (agent->config.stop && *agent->config.stop))
            return err;
        imgstore_agent__note_error(agent, imgstore_error_last());
        state_set_str(agent, "phase", current ? "running" : "idle");
        imgstore_agent__state_save(agent);
        report(agent, "failed", state->version, imgstore_error_last());
        return err;
    }
    imgstore_agent__now(now);
    previous = imgstore_agent__link_get(agent->dir, "previous");
    json_object_set_new(agent->state, "trial",
                        json_pack("{s:s, s:s?, s:s?, s:I, s:s}", "to", state->version, "from",
                                  current, "previous", previous, "sequence",
                                  (json_int_t)state->sequence, "started", now));
    free(previous);
    /* a crash from here on is finished by imgstore_agent_open: the trial is on disk */
    if ((err = imgstore_agent__state_save(agent)) < 0 || !step(agent, "trial-written"))
        return err < 0 ? err : STOPPED(agent);
    return run_trial(agent, "deploy");
}

int imgstore_agent__recover(imgstore_agent *agent)
{
    const char *phase = state_str(agent, "phase");

    if (json_is_object(json_object_get(agent->state, "trial"))) {
        imgstore_log(IMGSTORE_LOG_WARN, "agent", "finishing a swap a restart interrupted (%s)",
                     phase ? phase : "?");
        if (phase && strcmp(phase, "rolling-back") == 0)
            return go_back(agent, NULL);
        return run_trial(agent, "recover");
    }
    if (phase && strcmp(phase, "pulling") == 0)
        set_phase(agent, state_str(agent, "version") ? "running" : "idle");
    imgstore_agent__tell_failure(agent); /* a rollback or report a crash kept from being sent */
    return 0;
}
