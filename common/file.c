/*
 * Small file helpers every module writes with: a whole buffer to an fd, and a file replaced
 * atomically (temp file, fsync, rename).
 */
#include "common/common.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int imgstore_write_all(int fd, const void *buf, size_t len)
{
    const char *bytes = buf;

    while (len > 0) {
        ssize_t n = write(fd, bytes, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return imgstore_error_set(IMGSTORE_ERROR, "write failed: %s", strerror(errno));
        bytes += n;
        len -= (size_t)n;
    }
    return 0;
}

int imgstore_file_replace(const char *path, const void *bytes, size_t len, unsigned mode)
{
    char *dir_copy = strdup(path), *base_copy = strdup(path), *tmp = NULL;
    int fd = -1, err = 0;

    if (!dir_copy || !base_copy ||
        !(tmp = imgstore_strfmt("%s/.%s.XXXXXX", dirname(dir_copy), basename(base_copy)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((fd = mkstemp(tmp)) < 0 || imgstore_write_all(fd, bytes, len) < 0 ||
        fchmod(fd, (mode_t)mode) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
    }
done:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(base_copy);
    free(dir_copy);
    return err;
}
