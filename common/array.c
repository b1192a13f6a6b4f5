/*
 * Growing arrays: the one doubling realloc every module's lists use.
 */
#include "common/common.h"

#include <stdint.h>
#include <stdlib.h>

int imgstore_array_grow(void **array, size_t *cap, size_t need, size_t item_size)
{
    size_t bigger = *cap ? *cap : 16;
    void *grown;

    if (need <= *cap)
        return 0;
    while (bigger < need)
        bigger *= 2;
    if (bigger > SIZE_MAX / item_size || !(grown = realloc(*array, bigger * item_size)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    *array = grown;
    *cap = bigger;
    return 0;
}
