/*
 * One-line logging to stderr for the programs (server, cli). Libraries do not call this
 * except at debug level. A line is: time, level, module, message.
 */
#include "common/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int log_level = -1;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void imgstore_log_set_level(imgstore_log_level level)
{
    log_level = (int)level;
}

static int current_level(void)
{
    if (log_level < 0) {
        const char *env = getenv("IMGSTORE_LOG_LEVEL");

        log_level = IMGSTORE_LOG_INFO;
        for (int i = 0; env && i < 4; i++) {
            if (strcmp(env, level_names[i]) == 0)
                log_level = i;
        }
    }
    return log_level;
}

void imgstore_log(imgstore_log_level level, const char *module, const char *fmt, ...)
{
    char line[2048];
    char when[32];
    va_list ap;
    int n;

    if ((int)level < current_level())
        return;
    imgstore_time_rfc3339(when, sizeof(when), (int64_t)time(NULL));
    n = snprintf(line, sizeof(line), "%s %s %s ", when, level_names[level], module);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line keeps concurrent threads' lines whole. */
    fprintf(stderr, "%s\n", line);
}
