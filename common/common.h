/*
 * Shared ground for every imgstore module: error codes and the thread-local error message,
 * logging for the programs (server, cli), and the streaming callback types that move image
 * bytes between modules. No business logic lives here.
 */
#ifndef IMGSTORE_COMMON_H
#define IMGSTORE_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Error codes: every fallible function returns 0 or one of these (negative). */
#define IMGSTORE_OK        0
#define IMGSTORE_ERROR     -1 /* anything else: I/O, allocation, library failure */
#define IMGSTORE_ENOTFOUND -2 /* the named image, version, channel or file does not exist */
#define IMGSTORE_EEXISTS   -3 /* conflicts with something already stored (immutability) */
#define IMGSTORE_EINVALID  -4 /* bad input; the message names the field and the rule */
#define IMGSTORE_EVERIFY   -5 /* a digest or signature does not match */
#define IMGSTORE_ELOCKED   -6 /* another writer holds the store and did not let go in time */

/**
 * Record `code` with a printf-style message for this thread and return `code`, so that a
 * failure site reads `return imgstore_error_set(IMGSTORE_EINVALID, "...", ...);`.
 * The message is truncated at 1 KiB.
 */
int imgstore_error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** This thread's last error message; "" if none. Borrowed until the next error call. */
const char *imgstore_error_last(void);

/** The code recorded with the last message (IMGSTORE_OK if none). */
int imgstore_error_last_code(void);

/** Forget this thread's last error. */
void imgstore_error_clear(void);

/**
 * Prefix this thread's last message with more context ("push app 1.0: " + message), keeping
 * the code. Returns `code`.
 */
int imgstore_error_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** A short stable name for an error code ("not_found", "invalid", ...). */
const char *imgstore_error_name(int code);

/*
 * Streaming. A reader fills at most `cap` bytes of `buf` and sets *out_len; *out_len == 0
 * means end of stream. It returns 0 or a negative IMGSTORE_E* code (and sets the message).
 */
typedef int (*imgstore_read_fn)(size_t *out_len, void *buf, size_t cap, void *payload);

/* A writer consumes exactly `len` bytes or fails. */
typedef int (*imgstore_write_fn)(const void *buf, size_t len, void *payload);

/* Progress: `done` of `total` bytes (total 0 when unknown). Never fails. */
typedef void (*imgstore_progress_fn)(uint64_t done, uint64_t total, void *payload);

/* Logging, for server/ and cli/ only; store, sign and schema log at debug at most. */
typedef enum {
    IMGSTORE_LOG_DEBUG = 0,
    IMGSTORE_LOG_INFO = 1,
    IMGSTORE_LOG_WARN = 2,
    IMGSTORE_LOG_ERROR = 3,
} imgstore_log_level;

/** Lines below `level` are dropped. Default: INFO, or IMGSTORE_LOG_LEVEL=debug|info|warn|error. */
void imgstore_log_set_level(imgstore_log_level level);

/**
 * One line to stderr: time, level, module, message; the message carries its own key=value
 * pairs. Never pass secrets or image bytes.
 */
void imgstore_log(imgstore_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** printf into a new string (free() it); NULL when out of memory. asprintf is not POSIX. */
char *imgstore_strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Write all `len` bytes to fd (retrying short writes and EINTR). IMGSTORE_ERROR, "write
 * failed: ..." when it cannot. */
int imgstore_write_all(int fd, const void *buf, size_t len);

/**
 * Replace the file at `path` with `len` bytes, atomically: written to a temporary file beside
 * it (".NAME.XXXXXX"), given `mode`, synced, renamed over `path`. A reader sees the old bytes
 * or the new ones, never a part. IMGSTORE_ERROR "cannot write PATH: ..." and nothing changed
 * when it cannot. The directory must exist.
 */
int imgstore_file_replace(const char *path, const void *bytes, size_t len, unsigned mode);

/** Make room for `need` items of `item_size` bytes in *array (capacity *cap items, doubled
 * from 16 as needed; both updated). 0, or IMGSTORE_ERROR "out of memory" (*array intact). */
int imgstore_array_grow(void **array, size_t *cap, size_t need, size_t item_size);

/** Free an array of `count` strings and the array. NULL-safe. */
void imgstore_strings_free(char **strings, size_t count);

/** Current UTC time as RFC 3339 "YYYY-MM-DDTHH:MM:SSZ" into buf (at least 21 bytes). */
void imgstore_time_rfc3339(char *buf, size_t cap, int64_t unix_seconds);

/** Parse RFC 3339 UTC ("...Z" or "+00:00") or "@<unix seconds>"; IMGSTORE_EINVALID if bad. */
int imgstore_time_parse(int64_t *out, const char *text);

/** `bytes` for people ("512 B", "14.2 MiB") into buf; returns buf. The CLI and the status page. */
const char *imgstore_size_human(char *buf, size_t cap, uint64_t bytes);

/** Parse a decimal count: 1 to 19 digits, nothing else. 0 or IMGSTORE_EINVALID (no message). */
int imgstore_parse_u64(uint64_t *out, const char *text);

#endif
