/*
 * The HTTP service (`imgstore serve`): the REST API of docs/api.md over one store, with
 * bearer-token auth, streamed verified downloads, streamed uploads, long-poll channel watches
 * and Prometheus metrics. A thin layer over store/store.h: it owns sockets, threads, the
 * verified download cache and the mapping of IMGSTORE_E* codes to HTTP status; the store
 * owns every byte and every commit.
 *
 * The program (cli/cmd_serve.c) builds a configuration, starts the server, waits for a
 * signal and stops it. Signals, argv and exit codes are not this module's business.
 */
#ifndef IMGSTORE_SERVER_H
#define IMGSTORE_SERVER_H

#include "common/common.h"
#include "store/store.h"

typedef struct imgstore_server_config imgstore_server_config;
typedef struct imgstore_server imgstore_server;

/**
 * A configuration holding the defaults of docs/server.md (listen 127.0.0.1:8080, no tokens,
 * reads need a token). *out is freed with imgstore_server_config_free(). Returns 0 or
 * IMGSTORE_ERROR (out of memory).
 */
int imgstore_server_config_new(imgstore_server_config **out);

/**
 * Set one configuration key ("listen", "repo", "token", "read_public", ...; the list is in
 * docs/server.md) from its text form, exactly as a `key = value` line of the config file
 * would. "token" adds a token; every other key replaces the previous value. Values are
 * copied. Returns 0 or IMGSTORE_EINVALID naming the key and the rule.
 */
int imgstore_server_config_set(imgstore_server_config *config, const char *key, const char *value);

/**
 * Read a config file of `key = value` lines ('#' starts a comment line) into `config`, each
 * line as imgstore_server_config_set(). Returns 0, IMGSTORE_ENOTFOUND (no such file),
 * IMGSTORE_EINVALID (the message names the file, line and key) or IMGSTORE_ERROR.
 */
int imgstore_server_config_load(imgstore_server_config *config, const char *path);

/** The configured repository path, or NULL when none was set. Borrowed from `config`. */
const char *imgstore_server_config_repo(const imgstore_server_config *config);

/** The primary store a read replica follows ("mirror_of"), or NULL when this server is not
 * a replica. Borrowed from `config`. */
const char *imgstore_server_config_mirror_of(const imgstore_server_config *config);

/** Free a configuration. NULL-safe. */
void imgstore_server_config_free(imgstore_server_config *config);

/**
 * Open the store named by config's "repo" (which must exist), prepare the download cache and
 * start listening; requests are served on the server's own threads until
 * imgstore_server_stop(). The configuration is copied. `signers` (may be NULL) are the keys
 * that sign uploads (release) and channel moves (deploy) made through the server; they are
 * borrowed and must outlive the server (without them the store refuses those writes).
 * Returns 0, IMGSTORE_EINVALID (bad configuration, e.g. no repo or unreadable TLS files),
 * IMGSTORE_ENOTFOUND (no store), IMGSTORE_ERROR (cannot listen: the message names the
 * address).
 */
int imgstore_server_start(imgstore_server **out, const imgstore_server_config *config,
                          const imgstore_signers *signers);

/** The address actually listened on ("127.0.0.1:8080"; the real port when 0 was asked).
 * Borrowed from `server`. */
const char *imgstore_server_address(const imgstore_server *server);

/**
 * Stop accepting connections, let in-flight requests finish (long-polls answer at once,
 * at most "drain_seconds" in all), close everything and free the server. An upload cut off
 * by the deadline is abandoned and leaves nothing visible. NULL-safe.
 */
void imgstore_server_stop(imgstore_server *server);

#endif
