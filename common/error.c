/*
 * The thread-local error state: one code and one human message per thread, set at the point
 * of failure and read by the caller right after. Keeps no history and allocates nothing.
 */
#include "common/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERROR_MSG_CAP 1024

static _Thread_local char error_msg[ERROR_MSG_CAP];
static _Thread_local int error_code;

int imgstore_error_set(int code, const char *fmt, ...)
{
    char formatted[ERROR_MSG_CAP];
    va_list ap;

    /* Format aside first: callers may pass imgstore_error_last() itself as an argument. */
    va_start(ap, fmt);
    vsnprintf(formatted, sizeof(formatted), fmt, ap);
    va_end(ap);
    memcpy(error_msg, formatted, sizeof(error_msg));
    error_code = code;
    return code;
}

int imgstore_error_wrap(int code, const char *fmt, ...)
{
    char old[ERROR_MSG_CAP];
    size_t prefix_len, old_len;
    va_list ap;

    memcpy(old, error_msg, sizeof(old));
    va_start(ap, fmt); /* arguments may point into error_msg: it is only written below */
    vsnprintf(error_msg, sizeof(error_msg), fmt, ap);
    va_end(ap);
    /* Truncation is fine here: a message is one line for a human, capped at 1 KiB. */
    prefix_len = strlen(error_msg);
    old_len = strnlen(old, sizeof(old) - 1);
    if (old_len > sizeof(error_msg) - 1 - prefix_len)
        old_len = sizeof(error_msg) - 1 - prefix_len;
    memcpy(error_msg + prefix_len, old, old_len);
    error_msg[prefix_len + old_len] = '\0';
    error_code = code;
    return code;
}

const char *imgstore_error_last(void)
{
    return error_msg;
}

int imgstore_error_last_code(void)
{
    return error_code;
}

void imgstore_error_clear(void)
{
    error_msg[0] = '\0';
    error_code = IMGSTORE_OK;
}

const char *imgstore_error_name(int code)
{
    switch (code) {
    case IMGSTORE_OK:
        return "ok";
    case IMGSTORE_ENOTFOUND:
        return "not_found";
    case IMGSTORE_EEXISTS:
        return "conflict";
    case IMGSTORE_EINVALID:
        return "invalid";
    case IMGSTORE_EVERIFY:
        return "verification_failed";
    case IMGSTORE_ELOCKED:
        return "locked";
    default:
        return "internal";
    }
}
