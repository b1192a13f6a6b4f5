/*
 * Content-defined chunking: sizes stay within bounds, boundaries are a pure function of the
 * bytes, and an insertion disturbs only the chunks around it (which is what makes version 2
 * of an image cost little more than the bytes that changed).
 */
#include "store/store_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define IMAGE_LEN (48u * 1024 * 1024)

static uint8_t *random_bytes(size_t len, uint64_t seed)
{
    uint8_t *buf = malloc(len);

    for (size_t i = 0; i < len; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        buf[i] = (uint8_t)(seed >> 56);
    }
    return buf;
}

/* Cut `buf` the way a push does and return the chunk lengths. */
static size_t chunk_all(const uint8_t *buf, size_t len, size_t *lens, size_t cap)
{
    size_t count = 0, off = 0;

    while (off < len && count < cap) {
        size_t avail = len - off;
        size_t cut = imgstore_store__chunk_cut(buf + off, avail, avail <= IMGSTORE_CHUNK_MAX);

        lens[count++] = cut;
        off += cut;
    }
    return count;
}

static void chunks_respect_min_and_max(void **state)
{
    uint8_t *buf = random_bytes(IMAGE_LEN, 1);
    size_t lens[1024], count = chunk_all(buf, IMAGE_LEN, lens, 1024), total = 0;

    (void)state;
    for (size_t i = 0; i < count; i++) {
        assert_true(lens[i] <= IMGSTORE_CHUNK_MAX);
        if (i + 1 < count)
            assert_true(lens[i] >= IMGSTORE_CHUNK_MIN);
        total += lens[i];
    }
    assert_int_equal(total, IMAGE_LEN);
    /* normalised chunking keeps the mean near 1 MiB */
    assert_in_range(IMAGE_LEN / count, 512 * 1024, 2 * 1024 * 1024);
    free(buf);
}

static void chunk_cut_is_deterministic(void **state)
{
    uint8_t *buf = random_bytes(8 * 1024 * 1024, 7);

    (void)state;
    assert_int_equal(imgstore_store__chunk_cut(buf, 8 * 1024 * 1024, false),
                     imgstore_store__chunk_cut(buf, 8 * 1024 * 1024, false));
    free(buf);
}

static void short_input_is_one_chunk(void **state)
{
    uint8_t buf[100] = {0};

    (void)state;
    assert_int_equal(imgstore_store__chunk_cut(buf, sizeof(buf), true), sizeof(buf));
    assert_int_equal(imgstore_store__chunk_cut(buf, 0, true), 0);
}

static void zeros_cut_at_max(void **state)
{
    uint8_t *buf = calloc(1, 2 * IMGSTORE_CHUNK_MAX);

    (void)state;
    /* no content variation: no cut point, so chunks are max-sized (and dedupe perfectly) */
    assert_int_equal(imgstore_store__chunk_cut(buf, 2 * IMGSTORE_CHUNK_MAX, false),
                     IMGSTORE_CHUNK_MAX);
    free(buf);
}

/* Count chunks of `b` whose bytes also appear as a chunk of `a` at the same content. */
static size_t shared_chunks(const uint8_t *a, const size_t *la, size_t ca, const uint8_t *b,
                            const size_t *lb, size_t cb)
{
    size_t shared = 0, ob = 0;

    for (size_t j = 0; j < cb; j++) {
        size_t oa = 0;

        for (size_t i = 0; i < ca; i++) {
            if (la[i] == lb[j] && memcmp(a + oa, b + ob, la[i]) == 0) {
                shared++;
                break;
            }
            oa += la[i];
        }
        ob += lb[j];
    }
    return shared;
}

static void insertion_moves_only_nearby_boundaries(void **state)
{
    const size_t insert_at = IMAGE_LEN / 2, insert_len = 4096;
    uint8_t *a = random_bytes(IMAGE_LEN, 3);
    uint8_t *b = malloc(IMAGE_LEN + insert_len);
    uint8_t *extra = random_bytes(insert_len, 99);
    size_t la[1024], lb[1024], ca, cb, shared;

    (void)state;
    memcpy(b, a, insert_at);
    memcpy(b + insert_at, extra, insert_len);
    memcpy(b + insert_at + insert_len, a + insert_at, IMAGE_LEN - insert_at);
    ca = chunk_all(a, IMAGE_LEN, la, 1024);
    cb = chunk_all(b, IMAGE_LEN + insert_len, lb, 1024);
    shared = shared_chunks(a, la, ca, b, lb, cb);
    /* at most two chunks of version 2 are new: the one holding the insertion and maybe the
     * next one, until the boundaries fall back in step */
    assert_true(cb - shared <= 2);
    free(a);
    free(b);
    free(extra);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chunks_respect_min_and_max),
        cmocka_unit_test(chunk_cut_is_deterministic),
        cmocka_unit_test(short_input_is_one_chunk),
        cmocka_unit_test(zeros_cut_at_max),
        cmocka_unit_test(insertion_moves_only_nearby_boundaries),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
