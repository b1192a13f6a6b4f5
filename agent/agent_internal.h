/*
 * What the agent's files share (not API): the agent struct, and the crash-safe file system
 * steps of state.c (state.json, symlink flips, version directories).
 */
#ifndef IMGSTORE_AGENT_INTERNAL_H
#define IMGSTORE_AGENT_INTERNAL_H

#include "agent/agent.h"

#include <stdbool.h>

#define AGENT_STATE_MAX (1u * 1024 * 1024) /* state.json is small; a bigger one is not ours */

struct imgstore_agent {
    imgstore_agent_config config; /* strings copied below */
    char *dir, *image, *channel, *host, *restart, *health;
    imgstore_agent_ops ops;
    int lock_fd;
    json_t *state; /* state.json as last written */
    bool stopped;  /* a checkpoint asked to stop as if killed (tests) */
};

/** DIR/<rel> (free()). */
char *imgstore_agent__path(const imgstore_agent *agent, const char *rel);

/** Load DIR/state.json into *out (an empty object when absent). */
int imgstore_agent__state_load(json_t **out, const char *dir);

/** Replace DIR/state.json with `state`: temp file, fsync, rename, fsync DIR. */
int imgstore_agent__state_save(imgstore_agent *agent);

/** Point DIR/<link> at versions/<version> (NULL: remove the link): a temp symlink renamed over
 * the old one, so a reader sees the old or the new target, never none. fsyncs DIR. */
int imgstore_agent__link_set(imgstore_agent *agent, const char *link, const char *version);

/** The version DIR/<link> points at (free()), NULL when there is no link. */
char *imgstore_agent__link_get(const char *dir, const char *link);

/** Remove a flat directory and what it holds (version directories are flat). */
int imgstore_agent__remove_dir(const char *path);

/** fsync a directory, or the file at `path`. */
int imgstore_agent__sync_path(const char *path);

/** Write `len` bytes to `path` crash-safely (temp, fsync, rename, fsync the directory). */
int imgstore_agent__write_file(const char *path, const void *buf, size_t len);

/** Read a whole small file (at most `cap` bytes) into *out (NUL-terminated, free()). */
int imgstore_agent__read_file(char **out, size_t *len_out, const char *path, size_t cap);

/** Finish what state.json says a crash interrupted (agent.c). */
int imgstore_agent__recover(imgstore_agent *agent);

/** Record `message` as state.json's last_error (not saved). */
void imgstore_agent__note_error(imgstore_agent *agent, const char *message);

/** Sleep `seconds` through ops.sleep, else in steps that notice config.stop. */
void imgstore_agent__sleep(imgstore_agent *agent, unsigned seconds);

/** Send the rollback or report state.json's "failed" still has pending (agent.c). */
void imgstore_agent__tell_failure(imgstore_agent *agent);

/** Now as RFC 3339 UTC into buf (32 bytes). */
void imgstore_agent__now(char *buf);

#endif
