/*
 * The host agent (issue #11): follows one channel of one image and replaces the whole image
 * on this host when the channel moves. Everything it keeps lives in one directory:
 *
 *   DIR/versions/<version>/     the files of a version, complete and verified, and
 *                               .manifest.json (the exact signed manifest bytes)
 *   DIR/versions/.partial-<v>/  a pull in progress (resumed or removed on restart)
 *   DIR/current -> versions/<v> what runs (a symlink, replaced with rename)
 *   DIR/previous -> versions/<v> what ran before, the fallback
 *   DIR/state.json              what the agent knows (imgstore agent status shows it)
 *   DIR/lock                    one agent per directory (flock)
 *
 * The agent talks to the server only through imgstore_agent_ops, so its state machine is
 * tested with fakes (tests/agent) and the CLI supplies the real operations (cli/cmd_agent.c).
 * It never trusts what the ops return beyond what the ops verified: they hand over a channel
 * state and manifest already checked against the pinned trust policy.
 */
#ifndef IMGSTORE_AGENT_H
#define IMGSTORE_AGENT_H

#include "common/common.h"
#include "schema/schema.h"

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* What a channel runs, as the ops verified it. */
typedef struct {
    imgstore_channel_state *state; /* signed state, threshold met, for this image and channel */
    imgstore_manifest *manifest;   /* the version's manifest, release threshold met */
    char *manifest_bytes;          /* its exact canonical bytes (kept in the version's dir) */
    size_t manifest_len;
} imgstore_agent_target;

void imgstore_agent_target_free(imgstore_agent_target *target); /* NULL-safe */

/* What the host says about itself: an unsigned claim (docs/agent.md). */
typedef struct {
    const char *host;
    const char *version;   /* the version running now, NULL when none */
    const char *state;     /* "ok", "failed", "rolled-back" */
    const char *message;   /* one line, may be NULL */
    const char *attempted; /* the version it tried, when it failed or went back; may be NULL */
} imgstore_agent_report;

/* The outcome of one health or hook attempt. */
#define IMGSTORE_AGENT_HEALTHY 0

typedef struct {
    /**
     * Wait up to `wait_seconds` for the channel to be at a sequence above `after`. *out gets
     * the verified state and manifest, or NULL when nothing moved in time. Returns 0,
     * IMGSTORE_EVERIFY (a state or manifest that does not check out), IMGSTORE_ENOTFOUND (no
     * such channel yet), IMGSTORE_ERROR (the server could not be reached: retried).
     */
    int (*wait_move)(imgstore_agent_target **out, uint64_t after, unsigned wait_seconds,
                     void *payload);
    /**
     * Write the bytes of `file` of the target's version to `path`, verified against its
     * sha256; a file already at `path` is a partial earlier pull to resume. 0,
     * IMGSTORE_EVERIFY, IMGSTORE_ERROR (with errno ENOSPC when the disk is full).
     */
    int (*pull_file)(const imgstore_agent_target *target, const imgstore_manifest_file *file,
                     const char *path, void *payload);
    /**
     * Move the channel back from `failed_version` (only while it is still the live state with
     * `failed_sequence`: a rollback posted twice after a crash must not go back twice) to
     * `to_version`, signed, with `reason`. IMGSTORE_ENOTFOUND when this agent may not (no
     * deploy scope, no key): the caller reports instead. NULL: never.
     */
    int (*rollback)(const char *failed_version, uint64_t failed_sequence, const char *to_version,
                    const char *reason, void *payload);
    /** Post a per-host report. Errors are logged and retried with the next report. */
    int (*report)(const imgstore_agent_report *report, void *payload);
    /**
     * Run a hook: `command` with the environment `env` (NULL-terminated "K=V" strings, added
     * to the agent's), killed after `timeout_seconds`. 0 when it exited 0, IMGSTORE_ERROR
     * otherwise (the message says how it ended).
     */
    int (*run)(const char *command, char *const *env, unsigned timeout_seconds, void *payload);
    /** One health attempt: a command (via run) or an http(s) URL that must answer 2xx within
     * `timeout_seconds`. 0 healthy, IMGSTORE_ERROR not (yet). */
    int (*health)(const char *check, char *const *env, unsigned timeout_seconds, void *payload);
    /** Sleep `seconds` (or less when stopping). NULL: nanosleep. Tests make it free. */
    void (*sleep)(unsigned seconds, void *payload);
    /** Called before each step of a swap with the step's name; nonzero makes the agent stop
     * right there, as if killed (tests only; NULL in production). */
    int (*checkpoint)(const char *step, void *payload);
    void *payload;
} imgstore_agent_ops;

typedef struct {
    const char *dir;         /* the state directory, created when absent */
    const char *image;       /* image name */
    const char *channel;     /* channel followed */
    const char *host;        /* how this host names itself in reports and rollback reasons */
    const char *restart;     /* restart hook command, NULL for none */
    const char *health;      /* health command or http(s) URL, NULL for none (always healthy) */
    unsigned health_timeout; /* seconds the new version has to become healthy (default 60) */
    unsigned hook_timeout;   /* seconds a restart hook may take (default 300) */
    unsigned keep;           /* old versions kept besides current and previous' (default 3) */
    unsigned wait_seconds;   /* long-poll length (default 60) */
    const volatile sig_atomic_t *stop; /* run() ends when it becomes nonzero; may be NULL */
} imgstore_agent_config;

typedef struct imgstore_agent imgstore_agent;

/**
 * Open the state directory (creating it), lock it against a second agent, load state.json
 * and finish whatever a crash interrupted: a partial pull is kept for resuming, a swap half
 * done is rolled forward and its version checked again, a rollback half done is completed.
 * The config's strings are copied. Returns 0, IMGSTORE_ELOCKED (another agent holds the
 * directory), IMGSTORE_EINVALID (bad config or a state.json that is not ours), IMGSTORE_ERROR.
 */
int imgstore_agent_open(imgstore_agent **out, const imgstore_agent_config *config,
                        const imgstore_agent_ops *ops);

/** Unlock and free. NULL-safe. */
void imgstore_agent_free(imgstore_agent *agent);

/**
 * One round: wait for a move (up to config.wait_seconds) and apply it. Returns 0 (nothing
 * moved, or it was applied: healthy, or gone back), IMGSTORE_EVERIFY (refused a state),
 * IMGSTORE_ERROR (server unreachable, pull failed: the old version keeps running).
 */
int imgstore_agent_step(imgstore_agent *agent);

/**
 * Apply a verified target now: pull into versions/<v> (all files or none), flip current,
 * restart, health check; on failure flip back, restart, and roll the channel back or report.
 * 0 when the target runs or the host went back cleanly, else the error that stopped it.
 */
int imgstore_agent_apply(imgstore_agent *agent, const imgstore_agent_target *target);

/** Rounds until config.stop, with backoff (1 s doubling to 60 s) after errors. Returns 0. */
int imgstore_agent_run(imgstore_agent *agent);

/** The version `current` points at (borrowed; NULL when nothing was installed yet). */
const char *imgstore_agent_current(const imgstore_agent *agent);

/**
 * What `imgstore agent status` shows: DIR/state.json read without taking the lock (it is
 * replaced atomically), plus what `current` and `previous` point at. *out is a new
 * reference. IMGSTORE_ENOTFOUND when DIR holds no agent state.
 */
int imgstore_agent_status(json_t **out, const char *dir);

/* ---- real hooks (hooks.c), what the CLI puts in imgstore_agent_ops ----------------------- */

/** fork + /bin/sh -c command, env added, process group killed at the timeout. */
int imgstore_agent_run_command(const char *command, char *const *env, unsigned timeout_seconds,
                               void *payload);

/** A command through imgstore_agent_run_command, or a GET on an http(s) URL (libcurl). */
int imgstore_agent_health_check(const char *check, char *const *env, unsigned timeout_seconds,
                                void *payload);

#endif
