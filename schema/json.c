/*
 * The schema module's one contact with jansson: loading bytes (with the caps and strictness
 * every document needs), dumping canonical bytes, and the field readers and writers the
 * documents are built from. Every jansson failure and every broken rule is translated here
 * into IMGSTORE_EINVALID (or IMGSTORE_ERROR for allocation failure) with the JSON path of the
 * field in the message. What the fields mean belongs to manifest.c and channel.c.
 */
#include "schema/schema_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *type_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static const char *wanted_name(json_type type)
{
    switch (type) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    default:
        return "a boolean";
    }
}

bool imgstore_schema__utf8_valid(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t extra;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= extra)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF: jansson refuses
         * them too, so what we write is always what we can read back. */
        if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += extra + 1;
    }
    return true;
}

/* ---- locations ------------------------------------------------------------------------ */

void imgstore_schema__at_root(imgstore_schema__at *at, const char *doc)
{
    at->doc = doc;
    at->path[0] = '\0';
}

/* Paths only ever appear in messages, so a very deep one is cut rather than refused. */
static void path_set(imgstore_schema__at *child, const imgstore_schema__at *parent, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));

static void path_set(imgstore_schema__at *child, const imgstore_schema__at *parent, const char *fmt,
                     ...)
{
    char path[sizeof(child->path)];
    va_list ap;

    /* Through a copy: the parent's path is an argument and the child may be the parent. */
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    child->doc = parent->doc;
    memcpy(child->path, path, sizeof(path));
}

void imgstore_schema__at_key(imgstore_schema__at *child, const imgstore_schema__at *parent,
                             const char *key)
{
    char shown[IMGSTORE_SCHEMA__QUOTE_CAP];

    /* Label keys come from the document; quote them like any other untrusted value. */
    imgstore_schema__quote(shown, sizeof(shown), key, strlen(key));
    path_set(child, parent, "%s%s%s", parent->path, parent->path[0] ? "." : "", shown);
}

void imgstore_schema__at_index(imgstore_schema__at *child, const imgstore_schema__at *parent,
                               const char *key, size_t index)
{
    path_set(child, parent, "%s%s%s[%zu]", parent->path, parent->path[0] ? "." : "", key, index);
}

static void where(char *buf, size_t cap, const imgstore_schema__at *at, const char *key)
{
    imgstore_schema__at field;

    if (key) {
        imgstore_schema__at_key(&field, at, key);
        at = &field;
    }
    snprintf(buf, cap, "%s: %s%s", at->doc, at->path, at->path[0] ? ": " : "");
}

int imgstore_schema__fail(const imgstore_schema__at *at, const char *key, const char *fmt, ...)
{
    char prefix[256];
    char message[512];
    va_list ap;

    where(prefix, sizeof(prefix), at, key);
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return imgstore_error_set(IMGSTORE_EINVALID, "%s%s", prefix, message);
}

/* ---- loading and dumping -------------------------------------------------------------- */

int imgstore_schema__load(json_t **out, const char *doc, const char *buf, size_t len, size_t max)
{
    json_error_t jerr;
    json_t *root;

    *out = NULL;
    if (!buf && len > 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: no bytes given", doc);
    if (len > max)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: %zu bytes, more than the %zu allowed",
                                  doc, len, max);
    root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        /* jansson quotes the input near the error; keep the message one clean line. */
        for (char *c = jerr.text; *c; c++) {
            if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
                *c = '?';
        }
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return imgstore_error_set(IMGSTORE_ERROR, "%s: out of memory", doc);
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: not valid JSON at line %d, column %d: %s",
                                  doc, jerr.line, jerr.column, jerr.text);
    }
    if (!json_is_object(root)) {
        int err = imgstore_error_set(IMGSTORE_EINVALID, "%s: expected an object, found %s", doc,
                                     type_name(root));

        json_decref(root);
        return err;
    }
    *out = root;
    return 0;
}

int imgstore_schema__dump(char **out, size_t *len_out, const json_t *value, const char *doc,
                          size_t max)
{
    char *bytes;
    size_t len;

    *out = NULL;
    *len_out = 0;
    /* jansson sorts keys with memcmp (bytewise) and never appends a newline. */
    bytes = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
    if (!bytes)
        return imgstore_error_set(IMGSTORE_ERROR, "%s: out of memory", doc);
    len = strlen(bytes);
    if (len > max) {
        free(bytes);
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: %zu bytes, more than the %zu allowed",
                                  doc, len, max);
    }
    *out = bytes;
    *len_out = len;
    return 0;
}

/* ---- reading fields ------------------------------------------------------------------- */

int imgstore_schema__keys(const json_t *obj, const imgstore_schema__at *at,
                          const char *const *allowed)
{
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)obj, key, value)
    {
        size_t i = 0;

        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (!allowed[i])
            return imgstore_schema__fail(at, key, "unknown field");
    }
    return 0;
}

int imgstore_schema__field(json_t **out, const json_t *obj, const imgstore_schema__at *at,
                           const char *key, json_type type, bool required)
{
    json_t *value = json_object_get(obj, key);
    bool ok;

    *out = NULL;
    if (!value) {
        if (required)
            return imgstore_schema__fail(at, key, "missing");
        return 0;
    }
    if (type == JSON_TRUE || type == JSON_FALSE)
        ok = json_is_boolean(value);
    else
        ok = json_typeof(value) == type;
    if (!ok)
        return imgstore_schema__fail(at, key, "expected %s, found %s", wanted_name(type),
                                     type_name(value));
    *out = value;
    return 0;
}

int imgstore_schema__string(const char **out, const json_t *obj, const imgstore_schema__at *at,
                            const char *key, size_t min_len, size_t max_len, bool required)
{
    json_t *value;
    size_t len;
    int err;

    *out = NULL;
    if ((err = imgstore_schema__field(&value, obj, at, key, JSON_STRING, required)) < 0 || !value)
        return err;
    len = json_string_length(value);
    if (len < min_len || len > max_len) {
        if (min_len == max_len)
            return imgstore_schema__fail(at, key, "must be %zu bytes, found %zu", min_len, len);
        return imgstore_schema__fail(at, key, "must be %zu to %zu bytes, found %zu", min_len,
                                     max_len, len);
    }
    *out = json_string_value(value);
    return 0;
}

int imgstore_schema__text(char **out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, size_t min_len, size_t max_len, bool required)
{
    const char *value;
    int err;

    *out = NULL;
    if ((err = imgstore_schema__string(&value, obj, at, key, min_len, max_len, required)) < 0 ||
        !value)
        return err;
    if (!(*out = strdup(value)))
        return imgstore_error_set(IMGSTORE_ERROR, "%s: out of memory", at->doc);
    return 0;
}

int imgstore_schema__line(char **out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, size_t min_len, bool required)
{
    imgstore_schema__at field;
    char name[256];
    int err;

    if ((err = imgstore_schema__text(out, obj, at, key, min_len, IMGSTORE_TEXT_MAX - 1, required)) <
            0 ||
        !*out)
        return err;
    imgstore_schema__at_key(&field, at, key);
    snprintf(name, sizeof(name), "%s: %s", field.doc, field.path);
    if ((err = imgstore_schema_check_text(name, *out)) < 0) {
        free(*out);
        *out = NULL;
    }
    return err;
}

int imgstore_schema__text_buf(char *buf, size_t cap, const json_t *obj,
                              const imgstore_schema__at *at, const char *key, bool required)
{
    const char *value;
    int err;

    buf[0] = '\0';
    if ((err = imgstore_schema__string(&value, obj, at, key, 1, cap - 1, required)) < 0 || !value)
        return err;
    memcpy(buf, value, strlen(value) + 1);
    return 0;
}

int imgstore_schema__name(char **out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, imgstore_name_kind kind, bool required)
{
    char prefix[256];
    const char *value;
    int err;

    *out = NULL;
    if ((err = imgstore_schema__string(&value, obj, at, key, 0, SIZE_MAX, required)) < 0 || !value)
        return err;
    if ((err = imgstore_schema_check_name(kind, value)) < 0) {
        where(prefix, sizeof(prefix), at, key);
        return imgstore_error_wrap(err, "%s", prefix);
    }
    if (!(*out = strdup(value)))
        return imgstore_error_set(IMGSTORE_ERROR, "%s: out of memory", at->doc);
    return 0;
}

/* "YYYY-MM-DDTHH:MM:SSZ": the only form stored, so a time has exactly one spelling. */
static bool time_shape_ok(const char *text)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";

    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd' ? (text[i] < '0' || text[i] > '9') : text[i] != shape[i])
            return false;
    }
    return true;
}

int imgstore_schema__time(char **out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, bool required)
{
    char shown[IMGSTORE_SCHEMA__QUOTE_CAP];
    char again[32];
    const char *value;
    int64_t seconds;
    int err;

    *out = NULL;
    if ((err = imgstore_schema__string(&value, obj, at, key, 0, SIZE_MAX, required)) < 0 || !value)
        return err;
    /* Rendering the parsed time again catches dates that do not exist (02-30, 24:00). */
    if (strlen(value) != 20 || !time_shape_ok(value) || imgstore_time_parse(&seconds, value) < 0 ||
        (imgstore_time_rfc3339(again, sizeof(again), seconds), strcmp(again, value) != 0)) {
        imgstore_schema__quote(shown, sizeof(shown), value, strlen(value));
        return imgstore_schema__fail(at, key, "'%s': expected a UTC time like 2026-01-31T12:00:00Z",
                                     shown);
    }
    if (!(*out = strdup(value)))
        return imgstore_error_set(IMGSTORE_ERROR, "%s: out of memory", at->doc);
    return 0;
}

int imgstore_schema__sha256(char *out, const json_t *obj, const imgstore_schema__at *at,
                            const char *key)
{
    const char *value;
    json_t *field;
    int err;

    out[0] = '\0';
    if ((err = imgstore_schema__field(&field, obj, at, key, JSON_STRING, true)) < 0)
        return err;
    value = json_string_value(field);
    if (json_string_length(field) != 64 || strspn(value, "0123456789abcdef") != 64)
        return imgstore_schema__fail(at, key, "expected 64 lower-case hex digits");
    memcpy(out, value, 65);
    return 0;
}

int imgstore_schema__uint(uint64_t *out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, uint64_t min, uint64_t max, bool required)
{
    json_t *value;
    json_int_t n;
    int err;

    *out = 0;
    if ((err = imgstore_schema__field(&value, obj, at, key, JSON_INTEGER, required)) < 0 || !value)
        return err;
    n = json_integer_value(value);
    if (n < 0 || (uint64_t)n < min || (uint64_t)n > max)
        return imgstore_schema__fail(at, key, "must be from %" PRIu64 " to %" PRIu64, min, max);
    *out = (uint64_t)n;
    return 0;
}

int imgstore_schema__bool(bool *out, const json_t *obj, const imgstore_schema__at *at,
                          const char *key, bool required)
{
    json_t *value;
    int err;

    *out = false;
    if ((err = imgstore_schema__field(&value, obj, at, key, JSON_TRUE, required)) < 0 || !value)
        return err;
    *out = json_is_true(value);
    return 0;
}

int imgstore_schema__one_of(const char *value, const imgstore_schema__at *at, const char *key,
                            const char *const *allowed)
{
    char shown[IMGSTORE_SCHEMA__QUOTE_CAP];
    char list[256] = "";
    size_t used = 0;

    for (size_t i = 0; allowed[i]; i++) {
        if (strcmp(value, allowed[i]) == 0)
            return 0;
    }
    for (size_t i = 0; allowed[i] && used < sizeof(list); i++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", allowed[i]);

        if (n < 0)
            break;
        used += (size_t)n;
    }
    imgstore_schema__quote(shown, sizeof(shown), value, strlen(value));
    return imgstore_schema__fail(at, key, "'%s' is not one of: %s", shown, list);
}

/* ---- writing fields ------------------------------------------------------------------- */

int imgstore_schema__set_new(json_t *obj, const char *key, json_t *value)
{
    if (json_object_set_new(obj, key, value) < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return 0;
}

int imgstore_schema__append_new(json_t *array, json_t *value)
{
    if (json_array_append_new(array, value) < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    return 0;
}

int imgstore_schema__set_string(json_t *obj, const imgstore_schema__at *at, const char *key,
                                const char *value)
{
    if (!value)
        return 0;
    if (!imgstore_schema__utf8_valid(value, strlen(value)))
        return imgstore_schema__fail(at, key, "not valid UTF-8");
    return imgstore_schema__set_new(obj, key, json_string(value));
}

int imgstore_schema__set_uint(json_t *obj, const imgstore_schema__at *at, const char *key,
                              uint64_t value)
{
    if (value > IMGSTORE_SCHEMA__INT_MAX)
        return imgstore_schema__fail(at, key, "must be at most %" PRIu64, IMGSTORE_SCHEMA__INT_MAX);
    return imgstore_schema__set_new(obj, key, json_integer((json_int_t)value));
}

int imgstore_schema__set_bool(json_t *obj, const char *key, bool value)
{
    return imgstore_schema__set_new(obj, key, json_boolean(value));
}
