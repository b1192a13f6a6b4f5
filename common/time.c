/*
 * Timestamps in the one form imgstore stores and prints: RFC 3339 in UTC with a "Z".
 */
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void imgstore_time_rfc3339(char *buf, size_t cap, int64_t unix_seconds)
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int days_from_civil(int64_t *out, int y, int m, int d)
{
    /* Howard Hinnant's algorithm: no timegm() in POSIX, and TZ must not matter. */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    *out = era * 146097 + doe - 719468;
    return 0;
}

int imgstore_time_parse(int64_t *out, const char *text)
{
    int y, mo, d, h, mi, s, consumed = 0;
    int64_t days;

    if (text && text[0] == '@') {
        char *end = NULL;
        long long v = strtoll(text + 1, &end, 10);

        if (end == text + 1 || *end != '\0')
            return imgstore_error_set(IMGSTORE_EINVALID, "time '%s': expected @<unix seconds>",
                                      text);
        *out = (int64_t)v;
        return 0;
    }
    if (!text ||
        sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &consumed) != 6 ||
        (strcmp(text + consumed, "Z") != 0 && strcmp(text + consumed, "+00:00") != 0) || mo < 1 ||
        mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 || h < 0 || mi < 0 || s < 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "time '%s': expected RFC 3339 UTC like 2026-01-31T12:00:00Z",
                                  text ? text : "");
    days_from_civil(&days, y, mo, d);
    *out = days * 86400 + h * 3600 + mi * 60 + s;
    return 0;
}
