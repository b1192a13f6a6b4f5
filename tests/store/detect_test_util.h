/*
 * Shared by the detection tests: run imgstore_store__detect over bytes in memory.
 */
#ifndef IMGSTORE_DETECT_TEST_UTIL_H
#define IMGSTORE_DETECT_TEST_UTIL_H

#include "store/store_internal.h"

#include <string.h>

typedef struct {
    const uint8_t *data;
    uint64_t len;
} mem_source;

static inline int mem_read_at(size_t *out_len, void *buf, size_t len, uint64_t offset,
                              void *payload)
{
    const mem_source *src = payload;
    size_t n = 0;

    if (offset < src->len)
        n = src->len - offset < len ? (size_t)(src->len - offset) : len;
    if (n > 0)
        memcpy(buf, src->data + offset, n);
    *out_len = n;
    return 0;
}

static inline int detect(imgstore_file_info *info, const char *name, const void *data, size_t len)
{
    mem_source src = {data, len};

    imgstore_error_clear();
    return imgstore_store__detect(info, name, len, mem_read_at, &src);
}

#endif
