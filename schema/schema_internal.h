/*
 * Helpers shared by the schema module's documents (manifest.c, channel.c): the one place that
 * talks to jansson for loading and dumping, and the field readers and writers that turn every
 * rule violation into IMGSTORE_EINVALID with a message naming the JSON path of the field
 * ("manifest: files[2].chunks[7].sha256: expected 64 lower-case hex digits"). Not API.
 */
#ifndef IMGSTORE_SCHEMA_INTERNAL_H
#define IMGSTORE_SCHEMA_INTERNAL_H

#include "schema/schema.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest integer a JSON number keeps exactly in every common parser (2^53). */
#define IMGSTORE_SCHEMA__INT_MAX (UINT64_C(1) << 53)

/* Bytes imgstore_schema__quote() may write, NUL included. */
#define IMGSTORE_SCHEMA__QUOTE_CAP 200

/* Where a value sits in a document, so that every error names it. */
typedef struct {
    const char *doc; /* "manifest", "channel" */
    char path[128];  /* "files[2].chunks[7]"; "" for the document itself */
} imgstore_schema__at;

/**
 * Write `value` (at most `len` bytes of it) into `buf` for an error message: bytes outside
 * printable ASCII, quotes and backslashes become \xNN, and long values are cut with "...",
 * so that hostile input cannot forge or flood a message or a terminal.
 */
void imgstore_schema__quote(char *buf, size_t cap, const char *value, size_t len);

/** True when `len` bytes of `text` are valid UTF-8 (no overlong forms, no surrogates). */
bool imgstore_schema__utf8_valid(const char *text, size_t len);

/* ---- locations ------------------------------------------------------------------------ */

void imgstore_schema__at_root(imgstore_schema__at *at, const char *doc);

/** `child` becomes parent.key (or key at the top). */
void imgstore_schema__at_key(imgstore_schema__at *child, const imgstore_schema__at *parent,
                             const char *key);

/** `child` becomes parent.key[index]. */
void imgstore_schema__at_index(imgstore_schema__at *child, const imgstore_schema__at *parent,
                               const char *key, size_t index);

/**
 * Set IMGSTORE_EINVALID with "doc: path.key: message" (`key` may be NULL) and return it.
 */
int imgstore_schema__fail(const imgstore_schema__at *at, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- loading and dumping -------------------------------------------------------------- */

/**
 * Parse at most `max` bytes of JSON whose top level must be an object. Duplicate keys, NUL
 * in strings, invalid UTF-8 and trailing bytes are refused. *out is a new reference.
 * Returns 0, IMGSTORE_EINVALID (message has jansson's text and position) or IMGSTORE_ERROR.
 */
int imgstore_schema__load(json_t **out, const char *doc, const char *buf, size_t len, size_t max);

/**
 * The canonical bytes of `value`: sorted keys (bytewise), no whitespace, no newline.
 * *out is freed with free(). Returns 0, IMGSTORE_EINVALID (longer than `max`), IMGSTORE_ERROR.
 */
int imgstore_schema__dump(char **out, size_t *len_out, const json_t *value, const char *doc,
                          size_t max);

/* ---- reading fields ------------------------------------------------------------------- */

/** Refuse any key of `obj` not in the NULL-terminated `allowed`. */
int imgstore_schema__keys(const json_t *obj, const imgstore_schema__at *at,
                          const char *const *allowed);

/**
 * The member `key` of `obj`, borrowed, checked to be of `type` (JSON_TRUE stands for any
 * boolean). An absent member gives *out == NULL, or an error when `required`.
 */
int imgstore_schema__field(json_t **out, const json_t *obj, const imgstore_schema__at *at,
                           const char *key, json_type type, bool required);

/** A string member of min_len..max_len bytes, borrowed from `obj`; NULL when absent. */
int imgstore_schema__string(const char **out, const json_t *obj, const imgstore_schema__at *at,
                            const char *key, size_t min_len, size_t max_len, bool required);

/** Like imgstore_schema__string, copied into a new string (*out NULL when absent). */
int imgstore_schema__text(char **out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, size_t min_len, size_t max_len, bool required);

/** Like imgstore_schema__text for a text shown as one line (at most IMGSTORE_TEXT_MAX - 1
 * bytes), checked with imgstore_schema_check_text(). */
int imgstore_schema__line(char **out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, size_t min_len, bool required);

/** A string member of 1..cap-1 bytes copied into `buf`; "" when absent. */
int imgstore_schema__text_buf(char *buf, size_t cap, const json_t *obj,
                              const imgstore_schema__at *at, const char *key, bool required);

/** A name member checked with imgstore_schema_check_name(); a new string. */
int imgstore_schema__name(char **out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, imgstore_name_kind kind, bool required);

/** An RFC 3339 UTC time in the one stored form "YYYY-MM-DDTHH:MM:SSZ"; a new string. */
int imgstore_schema__time(char **out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, bool required);

/** A required string of exactly 64 lower-case hex digits into `out` (65 bytes). */
int imgstore_schema__sha256(char *out, const json_t *obj, const imgstore_schema__at *at,
                            const char *key);

/** An integer member in min..max (max at most IMGSTORE_SCHEMA__INT_MAX); *out 0 when absent. */
int imgstore_schema__uint(uint64_t *out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, uint64_t min, uint64_t max, bool required);

/** A boolean member; *out false when absent. */
int imgstore_schema__bool(bool *out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, bool required);

/** Refuse `value` unless it is one of the NULL-terminated `allowed`. */
int imgstore_schema__one_of(const char *value, const imgstore_schema__at *at, const char *key,
                            const char *const *allowed);

/* ---- writing fields ------------------------------------------------------------------- */

/*
 * Writers leave a NULL `value` out, so that the readers (run on every encode) report a
 * missing required field in one place. They return IMGSTORE_EINVALID for text that is not
 * UTF-8 or an integer over IMGSTORE_SCHEMA__INT_MAX, IMGSTORE_ERROR when out of memory.
 */
int imgstore_schema__set_string(json_t *obj, const imgstore_schema__at *at, const char *key,
                                const char *value);
int imgstore_schema__set_uint(json_t *obj, const imgstore_schema__at *at, const char *key,
                              uint64_t value);
int imgstore_schema__set_bool(json_t *obj, const char *key, bool value);

/** Attach `value` (a new reference, stolen even on failure); NULL is out of memory. */
int imgstore_schema__set_new(json_t *obj, const char *key, json_t *value);

/** Append `value` (stolen even on failure); NULL is out of memory. */
int imgstore_schema__append_new(json_t *array, json_t *value);

/* ---- manifest file details (manifest_details.c) --------------------------------------- */

/** Read "kind", "format" and "details" of the file object `file` into `info`. */
int imgstore_schema__file_info_read(imgstore_file_info *info, const json_t *file,
                                    const imgstore_schema__at *at);

/** Write "kind", "format" and "details" (known fields only) into the file object `file`. */
int imgstore_schema__file_info_write(json_t *file, const imgstore_file_info *info,
                                     const imgstore_schema__at *at);

#endif
