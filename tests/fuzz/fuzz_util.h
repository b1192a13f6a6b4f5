/*
 * Shared by the libFuzzer targets: a check that aborts with a message (so libFuzzer keeps the
 * input as a crash), and a temp file that holds the current input for APIs that read a path.
 */
#ifndef IMGSTORE_FUZZ_UTIL_H
#define IMGSTORE_FUZZ_UTIL_H

#include "common/common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__,      \
                    #cond, imgstore_error_last());                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A failure must say why: every error path sets a message (CONVENTIONS.md, "Errors"). */
#define FUZZ_CHECK_FAILURE_SAYS_WHY(err) FUZZ_CHECK((err) >= 0 || imgstore_error_last()[0] != '\0')

/*
 * Write data to one temp file per process (made on first use, removed at exit) and return
 * its path; the file holds exactly these bytes afterwards.
 */
static char fuzz_temp_path[64];
static int fuzz_temp_fd = -1;

static void fuzz_temp_remove(void)
{
    if (fuzz_temp_path[0])
        unlink(fuzz_temp_path);
}

static inline const char *fuzz_temp_file(const uint8_t *data, size_t len)
{
    size_t done = 0;

    if (fuzz_temp_fd < 0) {
        const char *dir = getenv("TMPDIR");

        /* memory-backed when there is one: a file is rewritten on every run */
        if (access("/dev/shm", W_OK) == 0)
            dir = "/dev/shm";
        snprintf(fuzz_temp_path, sizeof(fuzz_temp_path), "%.40s/imgstore-fuzz-XXXXXX",
                 dir && dir[0] ? dir : "/tmp");
        FUZZ_CHECK((fuzz_temp_fd = mkstemp(fuzz_temp_path)) >= 0);
        atexit(fuzz_temp_remove);
    }
    FUZZ_CHECK(ftruncate(fuzz_temp_fd, 0) == 0);
    while (done < len) {
        ssize_t n = pwrite(fuzz_temp_fd, data + done, len - done, (off_t)done);

        FUZZ_CHECK(n > 0);
        done += (size_t)n;
    }
    return fuzz_temp_path;
}

#endif
