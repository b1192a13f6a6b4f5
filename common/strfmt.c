/*
 * Formatting into a freshly allocated string, for the few places that build paths and
 * messages of unbounded length.
 */
#include "common/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *imgstore_strfmt(const char *fmt, ...)
{
    va_list ap;
    char *out;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0 || !(out = malloc((size_t)len + 1)))
        return NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return out;
}

int imgstore_parse_u64(uint64_t *out, const char *text)
{
    uint64_t number = 0;

    *out = 0;
    if (!text || !*text || strlen(text) > 19)
        return IMGSTORE_EINVALID;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9')
            return IMGSTORE_EINVALID;
        number = number * 10 + (uint64_t)(*c - '0');
    }
    *out = number;
    return 0;
}

void imgstore_strings_free(char **strings, size_t count)
{
    for (size_t i = 0; strings && i < count; i++)
        free(strings[i]);
    free(strings);
}
