/*
 * The multipart/form-data parser of uploads (RFC 7578, RFC 2046 5.1): finds the boundary in
 * the Content-Type, splits the body into parts however it arrives, and hands a file part's
 * bytes to its caller in place, from the buffer it was given; a field part's value (small,
 * capped) is gathered and handed over whole. Nothing is buffered beyond a possible delimiter
 * prefix and one part's header block. What the parts mean (files, digests, provenance) is
 * route_upload.c's; this file knows only the wire format.
 */
#include "server/server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BOUNDARY_MAX 70                 /* RFC 2046 */
#define DELIM_MAX    (4 + BOUNDARY_MAX) /* CRLF "--" boundary */
#define HEADERS_MAX  8192               /* one part's header block */

/* Where the parser is in the body. */
typedef enum {
    MP_PREAMBLE,    /* before the first delimiter: skipped */
    MP_AFTER_DELIM, /* a delimiter was read: CRLF (a part follows) or "--" (the end) */
    MP_HEADERS,     /* a part's header block, up to the empty line */
    MP_BODY,        /* a part's bytes, up to the next delimiter */
    MP_DONE         /* after the close delimiter: the epilogue is skipped */
} mp_state;

struct imgstore_server__multipart {
    imgstore_server__multipart_callbacks callbacks;
    void *payload;
    mp_state state;
    char delim[DELIM_MAX + 1];
    size_t delim_len;
    char carry[2 * DELIM_MAX]; /* bytes that may begin a delimiter, kept across calls */
    size_t carry_len;
    char *headers; /* HEADERS_MAX + 1 */
    size_t headers_len;
    char part_name[IMGSTORE_SERVER_MULTIPART_NAME_MAX];
    bool part_is_file;
    char *value; /* IMGSTORE_SERVER_MULTIPART_VALUE_MAX + 1: a field part's value */
    size_t value_len;
};

/* The boundary parameter of a Content-Type header, quoted or not. */
static int parse_boundary(imgstore_server__multipart *mp, const char *type)
{
    const char *at = type;
    size_t len;

    while ((at = strchr(at, ';'))) {
        at++;
        at += strspn(at, " \t");
        if (strncasecmp(at, "boundary=", 9) == 0)
            break;
    }
    if (!at)
        return imgstore_error_set(IMGSTORE_EINVALID, "multipart/form-data without a boundary");
    at += 9;
    if (*at == '"') {
        const char *end = strchr(++at, '"');

        len = end ? (size_t)(end - at) : 0;
    } else {
        len = strcspn(at, " \t;");
    }
    if (len == 0 || len > BOUNDARY_MAX)
        return imgstore_error_set(IMGSTORE_EINVALID, "multipart/form-data: bad boundary");
    /* the body's first delimiter has no CRLF before it: the parser starts as if it had */
    mp->delim_len = (size_t)snprintf(mp->delim, sizeof(mp->delim), "\r\n--%.*s", (int)len, at);
    memcpy(mp->carry, "\r\n", 2);
    mp->carry_len = 2;
    return 0;
}

int imgstore_server__multipart_new(imgstore_server__multipart **out, const char *content_type,
                                   const imgstore_server__multipart_callbacks *callbacks,
                                   void *payload)
{
    imgstore_server__multipart *mp = NULL;
    int err;

    *out = NULL;
    if (!(mp = calloc(1, sizeof(*mp))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    mp->callbacks = *callbacks;
    mp->payload = payload;
    if ((err = parse_boundary(mp, content_type)) < 0)
        goto done;
    if (!(mp->headers = malloc(HEADERS_MAX + 1)) ||
        !(mp->value = malloc(IMGSTORE_SERVER_MULTIPART_VALUE_MAX + 1))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    *out = mp;
    mp = NULL;
done:
    imgstore_server__multipart_free(mp);
    return err;
}

void imgstore_server__multipart_free(imgstore_server__multipart *mp)
{
    if (!mp)
        return;
    free(mp->headers);
    free(mp->value);
    free(mp);
}

bool imgstore_server__multipart_done(const imgstore_server__multipart *mp)
{
    return mp->state == MP_DONE;
}

/*
 * A parameter of a Content-Disposition header ("name", "filename") into out: 0, 1 when
 * absent, IMGSTORE_EINVALID when longer than out.
 */
static int disposition_param(char *out, size_t cap, const char *header, const char *param)
{
    size_t param_len = strlen(param), n = 0;
    const char *at = header;

    while ((at = strchr(at, ';'))) {
        at++;
        at += strspn(at, " \t");
        if (strncasecmp(at, param, param_len) == 0 && at[param_len] == '=')
            break;
    }
    if (!at)
        return 1;
    at += param_len + 1;
    if (*at == '"') {
        for (at++; *at && *at != '"'; at++) {
            if (*at == '\\' && at[1])
                at++;
            if (n + 1 == cap)
                return imgstore_error_set(IMGSTORE_EINVALID, "a form part's %s is too long", param);
            out[n++] = *at;
        }
    } else {
        for (; *at && *at != ';' && *at != ' ' && *at != '\t'; at++) {
            if (n + 1 == cap)
                return imgstore_error_set(IMGSTORE_EINVALID, "a form part's %s is too long", param);
            out[n++] = *at;
        }
    }
    out[n] = '\0';
    return 0;
}

/* The part's header block is complete: a file part begins a file, a field part a value. */
static int part_begin(imgstore_server__multipart *mp)
{
    char filename[IMGSTORE_NAME_MAX + 2];
    char *line = mp->headers, *end = mp->headers + mp->headers_len;
    int name_rc = 1, file_rc = 1;

    if (memchr(mp->headers, '\0', mp->headers_len))
        return imgstore_error_set(IMGSTORE_EINVALID, "a form part's headers hold a NUL byte");
    *end = '\0';
    mp->part_name[0] = '\0';
    while (line < end) {
        size_t len = strcspn(line, "\r\n");
        char *next = line + len + strspn(line + len, "\r\n");

        line[len] = '\0';
        if (strncasecmp(line, "Content-Disposition:", 20) == 0) {
            if ((name_rc = disposition_param(mp->part_name, sizeof(mp->part_name), line, "name")) <
                0)
                return name_rc;
            if ((file_rc = disposition_param(filename, sizeof(filename), line, "filename")) < 0)
                return file_rc;
        }
        line = next;
    }
    if (name_rc != 0 && file_rc != 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "a form part without a Content-Disposition name");
    mp->part_is_file = file_rc == 0;
    mp->value_len = 0;
    return mp->part_is_file ? mp->callbacks.file_begin(filename, mp->payload) : 0;
}

static int part_data(imgstore_server__multipart *mp, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    if (mp->part_is_file)
        return mp->callbacks.file_data(data, len, mp->payload);
    if (len > IMGSTORE_SERVER_MULTIPART_VALUE_MAX - mp->value_len)
        return imgstore_error_set(IMGSTORE_EINVALID, "form field %.64s: value too long",
                                  mp->part_name);
    memcpy(mp->value + mp->value_len, data, len);
    mp->value_len += len;
    return 0;
}

static int part_end(imgstore_server__multipart *mp)
{
    if (mp->part_is_file)
        return mp->callbacks.file_end(mp->payload);
    mp->value[mp->value_len] = '\0';
    return mp->callbacks.field(mp->part_name, mp->value, mp->value_len, mp->payload);
}

/* Where a delimiter may begin in the last bytes of buf: the undecided tail's start. */
static size_t undecided_from(const imgstore_server__multipart *mp, const char *buf, size_t len)
{
    size_t from = len >= mp->delim_len ? len - mp->delim_len + 1 : 0;

    for (; from < len; from++) {
        if (buf[from] == '\r' && memcmp(buf + from, mp->delim, len - from) == 0)
            return from;
    }
    return len;
}

/* The first whole delimiter in buf (memmem is not POSIX). */
static const char *find_delim(const imgstore_server__multipart *mp, const char *buf, size_t len)
{
    const char *at = buf, *end = buf + len;

    while ((size_t)(end - at) >= mp->delim_len &&
           (at = memchr(at, '\r', (size_t)(end - at) - mp->delim_len + 1))) {
        if (memcmp(at, mp->delim, mp->delim_len) == 0)
            return at;
        at++;
    }
    return NULL;
}

/*
 * Consume what can be decided of buf; returns how many bytes were used (the rest is a
 * possible delimiter prefix, fewer than delim_len bytes) or a negative error.
 */
static long parse(imgstore_server__multipart *mp, const char *buf, size_t len)
{
    size_t at = 0;
    int err;

    while (at < len) {
        const char *rest = buf + at;
        size_t left = len - at;

        switch (mp->state) {
        case MP_PREAMBLE:
        case MP_BODY: {
            const char *hit = find_delim(mp, rest, left);
            size_t take = hit ? (size_t)(hit - rest) : undecided_from(mp, rest, left);

            if (mp->state == MP_BODY && (err = part_data(mp, rest, take)) < 0)
                return err;
            at += take;
            if (!hit)
                return (long)at;
            if (mp->state == MP_BODY && (err = part_end(mp)) < 0)
                return err;
            at += mp->delim_len;
            mp->state = MP_AFTER_DELIM;
            break;
        }
        case MP_AFTER_DELIM:
            if (left < 2)
                return (long)at;
            if (memcmp(rest, "--", 2) == 0) {
                mp->state = MP_DONE;
            } else if (memcmp(rest, "\r\n", 2) == 0) {
                mp->state = MP_HEADERS;
                mp->headers_len = 0;
            } else {
                return imgstore_error_set(IMGSTORE_EINVALID, "malformed multipart/form-data body");
            }
            at += 2;
            break;
        case MP_HEADERS: {
            /* headers arrive a few bytes at a time at worst: copied, they are small */
            size_t n = 0;

            while (n < left && mp->state == MP_HEADERS) {
                if (mp->headers_len == HEADERS_MAX)
                    return imgstore_error_set(IMGSTORE_EINVALID,
                                              "a form part's headers are too long");
                mp->headers[mp->headers_len++] = rest[n++];
                if (mp->headers_len >= 2 &&
                    memcmp(mp->headers + mp->headers_len - 2, "\r\n", 2) == 0 &&
                    (mp->headers_len == 2 ||
                     (mp->headers_len >= 4 &&
                      memcmp(mp->headers + mp->headers_len - 4, "\r\n\r\n", 4) == 0))) {
                    mp->headers_len -= mp->headers_len == 2 ? 2 : 4;
                    if ((err = part_begin(mp)) < 0)
                        return err;
                    mp->state = MP_BODY;
                }
            }
            at += n;
            break;
        }
        case MP_DONE:
            return (long)len;
        }
    }
    return (long)at;
}

/*
 * Part bytes are handed on from `data` itself; only a possible delimiter prefix at the end of
 * one call (rare, and at most delim_len - 1 bytes) is copied, and resolved with the first
 * bytes of the next call.
 */
int imgstore_server__multipart_feed(imgstore_server__multipart *mp, const char *data, size_t len)
{
    while (len > 0) {
        long used;

        if (mp->carry_len > 0) {
            size_t take = len < mp->delim_len ? len : mp->delim_len;
            size_t left;

            memcpy(mp->carry + mp->carry_len, data, take);
            mp->carry_len += take;
            data += take;
            len -= take;
            if ((used = parse(mp, mp->carry, mp->carry_len)) < 0)
                return (int)used;
            left = mp->carry_len - (size_t)used;
            if (left <= take) {
                /* what is left came from data: parse it from there */
                data -= left;
                len += left;
                mp->carry_len = 0;
            } else {
                memmove(mp->carry, mp->carry + used, left);
                mp->carry_len = left;
            }
            continue;
        }
        if ((used = parse(mp, data, len)) < 0)
            return (int)used;
        mp->carry_len = len - (size_t)used;
        memcpy(mp->carry, data + used, mp->carry_len);
        return 0;
    }
    return 0;
}
